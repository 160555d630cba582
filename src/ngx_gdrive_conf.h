
/*
 * nginx-gdrive-worker: the configuration.
 *
 * The main and location configuration, the index of every setting, and
 * the functions of ngx_gdrive_conf.c: the module's hooks for creating,
 * checking and merging the configuration, the setter its directive table
 * names for value directives, and what other files ask of the settings.
 */


#ifndef _NGX_GDRIVE_CONF_H_INCLUDED_
#define _NGX_GDRIVE_CONF_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_gdrive_jwt.h"

#if (NGX_THREADS)
#include <ngx_thread_pool.h>
#endif


/* what a location serves */
#define NGX_HTTP_GDRIVE_LOC_NONE      0
#define NGX_HTTP_GDRIVE_LOC_TRIGGER   1
#define NGX_HTTP_GDRIVE_LOC_HEALTH    2
#define NGX_HTTP_GDRIVE_LOC_METRICS   3
#define NGX_HTTP_GDRIVE_LOC_STATUS    4
#define NGX_HTTP_GDRIVE_LOC_DLQ       5


/*
 * Settings that take a value from a directive, else from an environment
 * variable, else from a default.  One index per setting; the table that
 * describes them lives in ngx_gdrive_conf.c.
 */
typedef enum {
    NGX_GDRIVE_S_KAFKA_BROKERS = 0,
    NGX_GDRIVE_S_KAFKA_TOPIC,
    NGX_GDRIVE_S_KAFKA_DLQ_TOPIC,
    NGX_GDRIVE_S_KAFKA_RESULT_TOPIC,
    NGX_GDRIVE_S_KAFKA_GROUP,
    NGX_GDRIVE_S_INSTANCE,
    NGX_GDRIVE_S_KAFKA_MAX_POLL_RECORDS,
    NGX_GDRIVE_S_KAFKA_MAX_POLL_INTERVAL,
    NGX_GDRIVE_S_KAFKA_SESSION_TIMEOUT,
    NGX_GDRIVE_S_KAFKA_FETCH_MIN_BYTES,
    NGX_GDRIVE_S_KAFKA_FETCH_MAX_WAIT,
    NGX_GDRIVE_S_KAFKA_COMMIT_INTERVAL,
    NGX_GDRIVE_S_KAFKA_DELIVERY_TIMEOUT,
    NGX_GDRIVE_S_KAFKA_OUTPUT_LINGER,
    NGX_GDRIVE_S_CONSUMER,
    NGX_GDRIVE_S_GOOGLE_TOKEN_URL,
    NGX_GDRIVE_S_GOOGLE_API_URL,
    NGX_GDRIVE_S_GOOGLE_CLIENT_ID,
    NGX_GDRIVE_S_GOOGLE_CLIENT_SECRET,
    NGX_GDRIVE_S_GOOGLE_REFRESH_TOKEN,
    NGX_GDRIVE_S_GOOGLE_API_DEBUG,
    NGX_GDRIVE_S_GOOGLE_SERVICE_ACCOUNT,
    NGX_GDRIVE_S_GOOGLE_SCOPE,
    NGX_GDRIVE_S_CONTROL_PLANE_URL,
    NGX_GDRIVE_S_CONTROL_PLANE_TOKEN,
    NGX_GDRIVE_S_CONTROL_PLANE_CERTIFICATE,
    NGX_GDRIVE_S_CONTROL_PLANE_CERTIFICATE_KEY,
    NGX_GDRIVE_S_GOOGLE_TRUSTED_HOSTS,
    NGX_GDRIVE_S_INTEGRATIONS,
    NGX_GDRIVE_S_TOKEN_SKEW,
    NGX_GDRIVE_S_ACKNOWLEDGE_ABUSE,
    NGX_GDRIVE_S_QUOTA_PAUSE,
    NGX_GDRIVE_S_LIST_PAGE_SIZE,
    NGX_GDRIVE_S_S3_ENDPOINT,
    NGX_GDRIVE_S_S3_REGION,
    NGX_GDRIVE_S_S3_BUCKET,
    NGX_GDRIVE_S_S3_ACCESS_KEY,
    NGX_GDRIVE_S_S3_SECRET_KEY,
    NGX_GDRIVE_S_S3_SESSION_TOKEN,
    NGX_GDRIVE_S_S3_ROLE_ARN,
    NGX_GDRIVE_S_S3_WEB_IDENTITY_TOKEN_FILE,
    NGX_GDRIVE_S_S3_ROLE_SESSION_NAME,
    NGX_GDRIVE_S_STS_ENDPOINT,
    NGX_GDRIVE_S_STS_RENEW,
    NGX_GDRIVE_S_S3_PREFIX,
    NGX_GDRIVE_S_S3_PATH_STYLE,
    NGX_GDRIVE_S_S3_MULTIPART_THRESHOLD,
    NGX_GDRIVE_S_S3_SIGN_PARTS,
    NGX_GDRIVE_S_S3_ON_DELETE,
    NGX_GDRIVE_S_S3_SSE,
    NGX_GDRIVE_S_S3_STORAGE_CLASS,
    NGX_GDRIVE_S_RATE_LIMIT,
    NGX_GDRIVE_S_GLOBAL_RATE_LIMIT,
    NGX_GDRIVE_S_MAX_CONNECTIONS,
    NGX_GDRIVE_S_DNS_CACHE_TTL,
    NGX_GDRIVE_S_CONNECT_TIMEOUT,
    NGX_GDRIVE_S_READ_TIMEOUT,
    NGX_GDRIVE_S_SSL_VERIFY,
    NGX_GDRIVE_S_HTTP_CLIENT,
    NGX_GDRIVE_S_CA_FILE,
    NGX_GDRIVE_S_MAX_INFLIGHT,
    NGX_GDRIVE_S_MAX_QUEUED_BYTES,
    NGX_GDRIVE_S_RETRY,
    NGX_GDRIVE_S_METADATA_CACHE,
    NGX_GDRIVE_S_STREAM_BUFFERS,
    NGX_GDRIVE_S_SHUTDOWN_TIMEOUT,
    NGX_GDRIVE_S_HEALTH_INTERVAL,
    NGX_GDRIVE_S_HEALTH_TIMEOUT,
    NGX_GDRIVE_S_HEALTH_WINDOW,
    NGX_GDRIVE_S_HEALTH_MAX_LAG,
    NGX_GDRIVE_S_HEALTH_MEMORY_LIMIT,
    NGX_GDRIVE_S_HEALTH_MAX_MEMORY,
    NGX_GDRIVE_S_HEALTH_MAX_RATE_USE,
    NGX_GDRIVE_S_HEALTH_MAX_DLQ,
    NGX_GDRIVE_S_HEALTH_MAX_ERROR_RATE,
    NGX_GDRIVE_S_HEALTH_MAX_P95,
    NGX_GDRIVE_S_LAST
} ngx_gdrive_setting_e;


typedef struct {
    ngx_shm_zone_t      *shm_zone;
    ngx_command_t       *commands;      /* the module's directive table */

    /* which parts of the module the configuration uses */
    ngx_uint_t           locations;     /* bit per NGX_HTTP_GDRIVE_LOC_* */

    u_char               set[NGX_GDRIVE_S_LAST];   /* where each came from */
    ngx_str_t            origin[NGX_GDRIVE_S_LAST]; /* text for messages */

    /* Kafka */
    ngx_str_t            kafka_brokers;
    ngx_str_t            kafka_topic;
    ngx_str_t            kafka_dlq_topic;
    ngx_str_t            kafka_result_topic;
    ngx_str_t            kafka_group;
    ngx_str_t            instance;      /* this nginx's name in the fleet */
    ngx_array_t         *kafka_options;           /* of ngx_keyval_t */
    ngx_uint_t           kafka_max_poll_records;
    ngx_msec_t           kafka_max_poll_interval;
    ngx_msec_t           kafka_session_timeout;
    ngx_uint_t           kafka_fetch_min_bytes;
    ngx_msec_t           kafka_fetch_max_wait;
    ngx_msec_t           kafka_commit_interval;
    ngx_msec_t           kafka_delivery_timeout;
    ngx_msec_t           kafka_output_linger;
    ngx_flag_t           consumer;

    /* Google and the control plane */
    ngx_str_t            google_token_url;
    ngx_str_t            google_api_url;
    ngx_str_t            google_client_id;
    ngx_str_t            google_client_secret;
    ngx_str_t            google_refresh_token;
    ngx_str_t            google_service_account;  /* the key file */
    ngx_gdrive_jwt_key_t *google_sa_key;          /* read from it */
    ngx_str_t            google_scope;
    ngx_flag_t           google_api_debug;
    ngx_str_t            control_plane_url;
    ngx_str_t            control_plane_token;
    ngx_str_t            control_plane_certificate;
    ngx_str_t            control_plane_certificate_key;
    ngx_array_t         *google_trusted_hosts;    /* of ngx_str_t */
    ngx_array_t         *integrations;            /* allowed, or NULL */
    ngx_msec_t           token_skew;
    ngx_flag_t           acknowledge_abuse;
    ngx_msec_t           quota_pause;
    ngx_uint_t           list_page_size;

    /* S3 */
    ngx_str_t            s3_endpoint;
    ngx_str_t            s3_region;
    ngx_str_t            s3_bucket;
    ngx_str_t            s3_access_key;
    ngx_str_t            s3_secret_key;
    ngx_str_t            s3_session_token;   /* with static keys */
    ngx_str_t            s3_role_arn;        /* web identity */
    ngx_str_t            s3_web_identity_token_file;
    ngx_str_t            s3_role_session_name;
    ngx_str_t            sts_endpoint;
    ngx_msec_t           sts_renew;     /* renewed this long before expiry */
    ngx_flag_t           s3_web_identity;    /* role and token file set */
    ngx_str_t            s3_prefix;
    ngx_flag_t           s3_path_style;
    size_t               s3_multipart_threshold;
    ngx_flag_t           s3_sign_parts;
    ngx_flag_t           s3_on_delete;  /* 1: delete, 0: keep */
    ngx_str_t            s3_sse;        /* "", AES256 or aws:kms */
    ngx_str_t            s3_sse_key;    /* a KMS key's ARN or id */
    ngx_str_t            s3_storage_class;

    /* rates are in requests per 1000 seconds, as limit_req keeps them */
    ngx_uint_t           rate;
    ngx_uint_t           burst;
    ngx_uint_t           global_rate;
    ngx_uint_t           global_burst;
    ngx_uint_t           global_scope;  /* NGX_GDRIVE_SCOPE_* */

    /* outbound HTTP */
    ngx_uint_t           max_connections;
    ngx_uint_t           max_connections_per_host;
    time_t               dns_cache_ttl;
    ngx_msec_t           connect_timeout;
    ngx_msec_t           read_timeout;
    ngx_flag_t           ssl_verify;
    /* 1: the worker's own HTTP/1.1 client where it can, 0: curl only */
    ngx_flag_t           http_client;
    ngx_str_t            ca_file;

    /* jobs */
    ngx_uint_t           max_inflight;
    size_t               max_queued_bytes;
    ngx_uint_t           retry_attempts;
    ngx_msec_t           retry_base;
    ngx_msec_t           retry_max;
    ngx_uint_t           metadata_cache_entries;
    time_t               metadata_cache_ttl;
    ngx_bufs_t           stream_buffers;
    ngx_msec_t           shutdown_timeout;

    /* gdrive_health: probes and the guide's monitoring checklist */
    ngx_msec_t           health_interval;
    ngx_msec_t           health_timeout;
    ngx_msec_t           health_window;
    ngx_uint_t           health_max_lag;
    size_t               health_memory_limit;     /* 0: the cgroup's */
    ngx_uint_t           health_max_memory;       /* percent */
    ngx_uint_t           health_max_rate_use;     /* percent */
    ngx_uint_t           health_max_dlq;
    ngx_uint_t           health_max_error_rate;   /* hundredths of % */
    ngx_msec_t           health_max_p95;

#if (NGX_THREADS)
    ngx_thread_pool_t   *thread_pool;    /* for gdrive_dlq's Kafka reads */
#endif
} ngx_http_gdrive_main_conf_t;


typedef struct {
    ngx_uint_t           type;          /* NGX_HTTP_GDRIVE_LOC_* */
    ngx_uint_t           trigger_max_batch;
    size_t               trigger_max_body;
    ngx_uint_t           status_recent;
} ngx_http_gdrive_loc_conf_t;


/* what gdrive_global_rate_limit limits: this instance, or its share */
#define NGX_GDRIVE_SCOPE_HOST      0
#define NGX_GDRIVE_SCOPE_FLEET     1


/* where a setting's value came from */
#define NGX_GDRIVE_FROM_UNSET      0
#define NGX_GDRIVE_FROM_DIRECTIVE  1
#define NGX_GDRIVE_FROM_ENV        2
#define NGX_GDRIVE_FROM_DEFAULT    3


/*
 * A value directive of the module's directive table: its setter is
 * ngx_http_gdrive_set_setting(), and its post is the setting's index,
 * which the settings table of ngx_gdrive_conf.c describes.
 */
#define ngx_gdrive_value(name, args, field, id)                               \
    { ngx_string(name),                                                       \
      NGX_HTTP_MAIN_CONF|args,                                                \
      ngx_http_gdrive_set_setting,                                            \
      NGX_HTTP_MAIN_CONF_OFFSET,                                              \
      offsetof(ngx_http_gdrive_main_conf_t, field),                           \
      (void *) (uintptr_t) NGX_GDRIVE_S_##id }


/* the module's configuration hooks */
void *ngx_gdrive_conf_create_main(ngx_conf_t *cf, ngx_command_t *commands);
char *ngx_http_gdrive_init_main_conf(ngx_conf_t *cf, void *conf);
void *ngx_http_gdrive_create_loc_conf(ngx_conf_t *cf);
char *ngx_http_gdrive_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
char *ngx_http_gdrive_set_setting(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);

/* gdrive_integrations: may this integration be synced? */
ngx_uint_t ngx_gdrive_integration_allowed(ngx_http_gdrive_main_conf_t *gmcf,
    const char *id, size_t len);


/* the effective configuration, as the diagnostics show it */

typedef struct {
    ngx_str_t            name;           /* the directive */
    const char          *env;
    ngx_uint_t           from;           /* NGX_GDRIVE_FROM_* */
    ngx_str_t            value;          /* as given */
    ngx_uint_t           secret;
} ngx_gdrive_setting_info_t;

ngx_int_t ngx_http_gdrive_setting_info(ngx_http_gdrive_main_conf_t *gmcf,
    ngx_uint_t i, ngx_gdrive_setting_info_t *info);


#endif /* _NGX_GDRIVE_CONF_H_INCLUDED_ */
