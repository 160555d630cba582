
/*
 * nginx-gdrive-worker: the module's tables and lifecycle.
 *
 * Module layer: the directive table, the module context and the module
 * itself; postconfiguration, and the worker process's start and exit,
 * which bring up and tear down the clients.  The directives that are not
 * value settings (the shared zone, librdkafka options, the locations and
 * their handlers) are set here; every value setting goes through the
 * settings of ngx_gdrive_conf.c, which also creates, checks and merges
 * the configuration.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <librdkafka/rdkafka.h>

#include "ngx_gdrive.h"
#include "ngx_gdrive_aws.h"
#include "ngx_gdrive_cache.h"
#include "ngx_gdrive_drive.h"
#include "ngx_gdrive_http.h"
#include "ngx_gdrive_job.h"
#include "ngx_gdrive_kafka.h"
#include "ngx_gdrive_metrics.h"
#include "ngx_gdrive_oauth.h"
#include "ngx_gdrive_probe.h"
#include "ngx_gdrive_ratelimit.h"
#include "ngx_gdrive_s3.h"
#include "ngx_http_gdrive.h"


static ngx_int_t ngx_http_gdrive_postconfiguration(ngx_conf_t *cf);
static void *ngx_http_gdrive_create_main_conf(ngx_conf_t *cf);
static ngx_int_t ngx_http_gdrive_init_process(ngx_cycle_t *cycle);
static void ngx_http_gdrive_exit_process(ngx_cycle_t *cycle);

static char *ngx_http_gdrive_zone(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_gdrive_kafka_option(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_gdrive_location(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);


static ngx_command_t  ngx_http_gdrive_commands[] = {

    { ngx_string("gdrive_zone"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE2,
      ngx_http_gdrive_zone,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("gdrive_kafka_option"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE2,
      ngx_http_gdrive_kafka_option,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    ngx_gdrive_value("gdrive_kafka_brokers", NGX_CONF_TAKE1,
                     kafka_brokers, KAFKA_BROKERS),
    ngx_gdrive_value("gdrive_kafka_topic", NGX_CONF_TAKE1,
                     kafka_topic, KAFKA_TOPIC),
    ngx_gdrive_value("gdrive_kafka_dlq_topic", NGX_CONF_TAKE1,
                     kafka_dlq_topic, KAFKA_DLQ_TOPIC),
    ngx_gdrive_value("gdrive_kafka_result_topic", NGX_CONF_TAKE1,
                     kafka_result_topic, KAFKA_RESULT_TOPIC),
    ngx_gdrive_value("gdrive_kafka_group", NGX_CONF_TAKE1,
                     kafka_group, KAFKA_GROUP),
    ngx_gdrive_value("gdrive_instance", NGX_CONF_TAKE1,
                     instance, INSTANCE),
    ngx_gdrive_value("gdrive_kafka_max_poll_records", NGX_CONF_TAKE1,
                     kafka_max_poll_records, KAFKA_MAX_POLL_RECORDS),
    ngx_gdrive_value("gdrive_kafka_max_poll_interval", NGX_CONF_TAKE1,
                     kafka_max_poll_interval, KAFKA_MAX_POLL_INTERVAL),
    ngx_gdrive_value("gdrive_kafka_session_timeout", NGX_CONF_TAKE1,
                     kafka_session_timeout, KAFKA_SESSION_TIMEOUT),
    ngx_gdrive_value("gdrive_kafka_fetch_min_bytes", NGX_CONF_TAKE1,
                     kafka_fetch_min_bytes, KAFKA_FETCH_MIN_BYTES),
    ngx_gdrive_value("gdrive_kafka_fetch_max_wait", NGX_CONF_TAKE1,
                     kafka_fetch_max_wait, KAFKA_FETCH_MAX_WAIT),
    ngx_gdrive_value("gdrive_kafka_commit_interval", NGX_CONF_TAKE1,
                     kafka_commit_interval, KAFKA_COMMIT_INTERVAL),
    ngx_gdrive_value("gdrive_kafka_delivery_timeout", NGX_CONF_TAKE1,
                     kafka_delivery_timeout, KAFKA_DELIVERY_TIMEOUT),
    ngx_gdrive_value("gdrive_kafka_output_linger", NGX_CONF_TAKE1,
                     kafka_output_linger, KAFKA_OUTPUT_LINGER),
    ngx_gdrive_value("gdrive_consumer", NGX_CONF_FLAG,
                     consumer, CONSUMER),
    ngx_gdrive_value("gdrive_google_token_url", NGX_CONF_TAKE1,
                     google_token_url, GOOGLE_TOKEN_URL),
    ngx_gdrive_value("gdrive_google_api_url", NGX_CONF_TAKE1,
                     google_api_url, GOOGLE_API_URL),
    ngx_gdrive_value("gdrive_google_client_id", NGX_CONF_TAKE1,
                     google_client_id, GOOGLE_CLIENT_ID),
    ngx_gdrive_value("gdrive_google_client_secret", NGX_CONF_TAKE1,
                     google_client_secret, GOOGLE_CLIENT_SECRET),
    ngx_gdrive_value("gdrive_google_refresh_token", NGX_CONF_TAKE1,
                     google_refresh_token, GOOGLE_REFRESH_TOKEN),
    ngx_gdrive_value("gdrive_google_api_debug", NGX_CONF_FLAG,
                     google_api_debug, GOOGLE_API_DEBUG),
    ngx_gdrive_value("gdrive_google_service_account", NGX_CONF_TAKE1,
                     google_service_account, GOOGLE_SERVICE_ACCOUNT),
    ngx_gdrive_value("gdrive_google_scope", NGX_CONF_TAKE1,
                     google_scope, GOOGLE_SCOPE),
    ngx_gdrive_value("gdrive_control_plane_url", NGX_CONF_TAKE1,
                     control_plane_url, CONTROL_PLANE_URL),
    ngx_gdrive_value("gdrive_control_plane_token", NGX_CONF_TAKE1,
                     control_plane_token, CONTROL_PLANE_TOKEN),
    ngx_gdrive_value("gdrive_control_plane_certificate", NGX_CONF_TAKE1,
                     control_plane_certificate, CONTROL_PLANE_CERTIFICATE),
    ngx_gdrive_value("gdrive_control_plane_certificate_key", NGX_CONF_TAKE1,
                     control_plane_certificate_key,
                     CONTROL_PLANE_CERTIFICATE_KEY),
    ngx_gdrive_value("gdrive_google_trusted_hosts", NGX_CONF_1MORE,
                     google_trusted_hosts, GOOGLE_TRUSTED_HOSTS),
    ngx_gdrive_value("gdrive_integrations", NGX_CONF_1MORE,
                     integrations, INTEGRATIONS),
    ngx_gdrive_value("gdrive_token_skew", NGX_CONF_TAKE1,
                     token_skew, TOKEN_SKEW),
    ngx_gdrive_value("gdrive_acknowledge_abuse", NGX_CONF_FLAG,
                     acknowledge_abuse, ACKNOWLEDGE_ABUSE),
    ngx_gdrive_value("gdrive_quota_pause", NGX_CONF_TAKE1,
                     quota_pause, QUOTA_PAUSE),
    ngx_gdrive_value("gdrive_list_page_size", NGX_CONF_TAKE1,
                     list_page_size, LIST_PAGE_SIZE),
    ngx_gdrive_value("gdrive_s3_endpoint", NGX_CONF_TAKE1,
                     s3_endpoint, S3_ENDPOINT),
    ngx_gdrive_value("gdrive_s3_region", NGX_CONF_TAKE1,
                     s3_region, S3_REGION),
    ngx_gdrive_value("gdrive_s3_bucket", NGX_CONF_TAKE1,
                     s3_bucket, S3_BUCKET),
    ngx_gdrive_value("gdrive_s3_access_key", NGX_CONF_TAKE1,
                     s3_access_key, S3_ACCESS_KEY),
    ngx_gdrive_value("gdrive_s3_secret_key", NGX_CONF_TAKE1,
                     s3_secret_key, S3_SECRET_KEY),
    ngx_gdrive_value("gdrive_s3_session_token", NGX_CONF_TAKE1,
                     s3_session_token, S3_SESSION_TOKEN),
    ngx_gdrive_value("gdrive_s3_role_arn", NGX_CONF_TAKE1,
                     s3_role_arn, S3_ROLE_ARN),
    ngx_gdrive_value("gdrive_s3_web_identity_token_file", NGX_CONF_TAKE1,
                     s3_web_identity_token_file, S3_WEB_IDENTITY_TOKEN_FILE),
    ngx_gdrive_value("gdrive_s3_role_session_name", NGX_CONF_TAKE1,
                     s3_role_session_name, S3_ROLE_SESSION_NAME),
    ngx_gdrive_value("gdrive_sts_endpoint", NGX_CONF_TAKE1,
                     sts_endpoint, STS_ENDPOINT),
    ngx_gdrive_value("gdrive_sts_renew", NGX_CONF_TAKE1,
                     sts_renew, STS_RENEW),
    ngx_gdrive_value("gdrive_s3_prefix", NGX_CONF_TAKE1,
                     s3_prefix, S3_PREFIX),
    ngx_gdrive_value("gdrive_s3_path_style", NGX_CONF_FLAG,
                     s3_path_style, S3_PATH_STYLE),
    ngx_gdrive_value("gdrive_s3_multipart_threshold", NGX_CONF_TAKE1,
                     s3_multipart_threshold, S3_MULTIPART_THRESHOLD),
    ngx_gdrive_value("gdrive_s3_sign_parts", NGX_CONF_FLAG,
                     s3_sign_parts, S3_SIGN_PARTS),
    ngx_gdrive_value("gdrive_http_client", NGX_CONF_TAKE1,
                     http_client, HTTP_CLIENT),
    ngx_gdrive_value("gdrive_s3_on_delete", NGX_CONF_TAKE1,
                     s3_on_delete, S3_ON_DELETE),
    ngx_gdrive_value("gdrive_s3_sse", NGX_CONF_TAKE12,
                     s3_sse, S3_SSE),
    ngx_gdrive_value("gdrive_s3_storage_class", NGX_CONF_TAKE1,
                     s3_storage_class, S3_STORAGE_CLASS),
    ngx_gdrive_value("gdrive_rate_limit", NGX_CONF_TAKE12,
                     rate, RATE_LIMIT),
    ngx_gdrive_value("gdrive_global_rate_limit", NGX_CONF_TAKE123,
                     global_rate, GLOBAL_RATE_LIMIT),
    ngx_gdrive_value("gdrive_max_connections", NGX_CONF_TAKE12,
                     max_connections, MAX_CONNECTIONS),
    ngx_gdrive_value("gdrive_dns_cache_ttl", NGX_CONF_TAKE1,
                     dns_cache_ttl, DNS_CACHE_TTL),
    ngx_gdrive_value("gdrive_connect_timeout", NGX_CONF_TAKE1,
                     connect_timeout, CONNECT_TIMEOUT),
    ngx_gdrive_value("gdrive_read_timeout", NGX_CONF_TAKE1,
                     read_timeout, READ_TIMEOUT),
    ngx_gdrive_value("gdrive_ssl_verify", NGX_CONF_FLAG,
                     ssl_verify, SSL_VERIFY),
    ngx_gdrive_value("gdrive_ca_file", NGX_CONF_TAKE1,
                     ca_file, CA_FILE),
    ngx_gdrive_value("gdrive_max_inflight", NGX_CONF_TAKE1,
                     max_inflight, MAX_INFLIGHT),
    ngx_gdrive_value("gdrive_max_queued_bytes", NGX_CONF_TAKE1,
                     max_queued_bytes, MAX_QUEUED_BYTES),
    ngx_gdrive_value("gdrive_retry", NGX_CONF_TAKE123,
                     retry_attempts, RETRY),
    ngx_gdrive_value("gdrive_metadata_cache", NGX_CONF_TAKE12,
                     metadata_cache_entries, METADATA_CACHE),
    ngx_gdrive_value("gdrive_stream_buffers", NGX_CONF_TAKE2,
                     stream_buffers, STREAM_BUFFERS),
    ngx_gdrive_value("gdrive_shutdown_timeout", NGX_CONF_TAKE1,
                     shutdown_timeout, SHUTDOWN_TIMEOUT),
    ngx_gdrive_value("gdrive_health_interval", NGX_CONF_TAKE1,
                     health_interval, HEALTH_INTERVAL),
    ngx_gdrive_value("gdrive_health_timeout", NGX_CONF_TAKE1,
                     health_timeout, HEALTH_TIMEOUT),
    ngx_gdrive_value("gdrive_health_window", NGX_CONF_TAKE1,
                     health_window, HEALTH_WINDOW),
    ngx_gdrive_value("gdrive_health_max_lag", NGX_CONF_TAKE1,
                     health_max_lag, HEALTH_MAX_LAG),
    ngx_gdrive_value("gdrive_health_memory_limit", NGX_CONF_TAKE1,
                     health_memory_limit, HEALTH_MEMORY_LIMIT),
    ngx_gdrive_value("gdrive_health_max_memory", NGX_CONF_TAKE1,
                     health_max_memory, HEALTH_MAX_MEMORY),
    ngx_gdrive_value("gdrive_health_max_rate_use", NGX_CONF_TAKE1,
                     health_max_rate_use, HEALTH_MAX_RATE_USE),
    ngx_gdrive_value("gdrive_health_max_dlq", NGX_CONF_TAKE1,
                     health_max_dlq, HEALTH_MAX_DLQ),
    ngx_gdrive_value("gdrive_health_max_error_rate", NGX_CONF_TAKE1,
                     health_max_error_rate, HEALTH_MAX_ERROR_RATE),
    ngx_gdrive_value("gdrive_health_max_p95", NGX_CONF_TAKE1,
                     health_max_p95, HEALTH_MAX_P95),

    { ngx_string("gdrive_trigger"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_gdrive_location,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      (void *) NGX_HTTP_GDRIVE_LOC_TRIGGER },

    { ngx_string("gdrive_trigger_max_batch"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_gdrive_loc_conf_t, trigger_max_batch),
      NULL },

    { ngx_string("gdrive_health"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_gdrive_location,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      (void *) NGX_HTTP_GDRIVE_LOC_HEALTH },

    { ngx_string("gdrive_metrics"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_gdrive_location,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      (void *) NGX_HTTP_GDRIVE_LOC_METRICS },

    { ngx_string("gdrive_status"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_gdrive_location,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      (void *) NGX_HTTP_GDRIVE_LOC_STATUS },

    { ngx_string("gdrive_dlq"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_gdrive_location,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      (void *) NGX_HTTP_GDRIVE_LOC_DLQ },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_gdrive_worker_module_ctx = {
    NULL,                                  /* preconfiguration */
    ngx_http_gdrive_postconfiguration,     /* postconfiguration */

    ngx_http_gdrive_create_main_conf,      /* create main configuration */
    ngx_http_gdrive_init_main_conf,        /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_gdrive_create_loc_conf,       /* create location configuration */
    ngx_http_gdrive_merge_loc_conf         /* merge location configuration */
};


ngx_module_t  ngx_http_gdrive_worker_module = {
    NGX_MODULE_V1,
    &ngx_http_gdrive_worker_module_ctx,    /* module context */
    ngx_http_gdrive_commands,              /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_http_gdrive_init_process,          /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_gdrive_exit_process,          /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


/*
 * What this worker process runs, made by init_process and handed down to
 * each part at its init; only this file holds it.
 */

typedef struct {
    ngx_http_gdrive_main_conf_t  *gmcf;
    ngx_gdrive_kafka_t           *producer;  /* the trigger location's */
    rd_kafka_topic_t             *trigger_topic;
    ngx_gdrive_kafka_t           *output;    /* the job engine's */
    rd_kafka_topic_t             *child_topic;   /* the trigger topic */
    rd_kafka_topic_t             *result_topic;
    rd_kafka_topic_t             *dlq_topic;
    ngx_gdrive_worker_status_t   *status;    /* this worker's slot */
} ngx_http_gdrive_process_t;


static ngx_http_gdrive_process_t  ngx_http_gdrive_process;

/* how long an exiting worker waits for its records in flight */
#define NGX_HTTP_GDRIVE_EXIT_FLUSH  5000


static ngx_int_t ngx_http_gdrive_output_init(ngx_cycle_t *cycle,
    ngx_http_gdrive_process_t *w);


static ngx_int_t
ngx_http_gdrive_postconfiguration(ngx_conf_t *cf)
{
    ngx_http_gdrive_main_conf_t  *gmcf;

    gmcf = ngx_http_conf_get_module_main_conf(cf,
                                              ngx_http_gdrive_worker_module);

    /* without gdrive locations nginx's filter chain stays as it was */

    if (gmcf->locations == 0) {
        return NGX_OK;
    }

#if (NGX_THREADS)
    if (gmcf->locations & (1 << NGX_HTTP_GDRIVE_LOC_DLQ)) {
        /* nginx's "default" pool, made if no thread_pool names it */
        gmcf->thread_pool = ngx_thread_pool_add(cf, NULL);
        if (gmcf->thread_pool == NULL) {
            return NGX_ERROR;
        }
    }
#endif

    return ngx_http_gdrive_error_filter_init(cf);
}


/* the settings find their directives' names and places in the table */

static void *
ngx_http_gdrive_create_main_conf(ngx_conf_t *cf)
{
    return ngx_gdrive_conf_create_main(cf, ngx_http_gdrive_commands);
}


static ngx_int_t
ngx_http_gdrive_init_process(ngx_cycle_t *cycle)
{
    ngx_http_gdrive_process_t    *w;
    ngx_http_gdrive_main_conf_t  *gmcf;

    gmcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_gdrive_worker_module);

    if (gmcf == NULL || (gmcf->locations == 0 && !gmcf->consumer)) {
        return NGX_OK;
    }

    w = &ngx_http_gdrive_process;
    w->gmcf = gmcf;

    ngx_gdrive_token_init(gmcf);
    ngx_gdrive_rate_init(gmcf);
    ngx_gdrive_cache_init(gmcf);
    ngx_gdrive_s3_init(gmcf);

    if (ngx_worker < NGX_GDRIVE_MAX_WORKERS) {
        w->status = &ngx_gdrive_shm(gmcf)->workers[ngx_worker];

    } else {
        /* beyond the status table: counted nowhere, but still working */
        w->status = ngx_pcalloc(cycle->pool,
                                sizeof(ngx_gdrive_worker_status_t));
        if (w->status == NULL) {
            return NGX_ERROR;
        }
    }

    ngx_memzero(w->status, sizeof(ngx_gdrive_worker_status_t));
    w->status->pid = ngx_pid;
    w->status->started = ngx_time();

    (void) ngx_gdrive_metrics_init_process(cycle, gmcf, w->status);
    ngx_gdrive_probe_init(gmcf);

    /* gdrive_health asks this worker's producer whether brokers are up */

    if (!gmcf->consumer
        && !(gmcf->locations & ((1 << NGX_HTTP_GDRIVE_LOC_TRIGGER)
                                | (1 << NGX_HTTP_GDRIVE_LOC_DLQ)))
        && !((gmcf->locations & (1 << NGX_HTTP_GDRIVE_LOC_HEALTH))
             && gmcf->kafka_brokers.len))
    {
        return NGX_OK;
    }

    /*
     * A worker that cannot reach Kafka still starts: the trigger location
     * answers 503 and health says why, rather than nginx failing as a
     * whole.
     */

    w->producer = ngx_gdrive_kafka_producer(cycle, gmcf, 0);

    if (w->producer == NULL) {
        ngx_log_error(NGX_LOG_ALERT, cycle->log, 0,
                      "gdrive: worker runs without a Kafka producer");
        return NGX_OK;
    }

    w->trigger_topic = ngx_gdrive_kafka_topic(w->producer, &gmcf->kafka_topic);

    if (w->trigger_topic == NULL) {
        ngx_gdrive_kafka_destroy(w->producer, 0);
        w->producer = NULL;
        return NGX_OK;
    }

    ngx_http_gdrive_health_init(w->producer);
    ngx_http_gdrive_trigger_init(gmcf, w->producer, w->trigger_topic);

    if (gmcf->consumer
        && (ngx_http_gdrive_output_init(cycle, w) != NGX_OK
            || ngx_gdrive_http_init(cycle, gmcf, w->status) != NGX_OK
            || ngx_gdrive_drive_init(gmcf) != NGX_OK
            || ngx_gdrive_job_init(cycle, gmcf, &(ngx_gdrive_job_ctx_t) {
                   w->output, w->producer, w->child_topic, w->result_topic,
                   w->dlq_topic, w->status }) != NGX_OK))
    {
        ngx_log_error(NGX_LOG_ALERT, cycle->log, 0,
                      "gdrive: worker runs without a Kafka consumer");
    }

    if (gmcf->consumer) {
        (void) ngx_gdrive_aws_init(cycle, gmcf);
    }

    return NGX_OK;
}


/*
 * The job engine's own producer and its topics: what it writes, nobody
 * waits for, so it lingers (gdrive_kafka_output_linger) where the
 * trigger location's producer may not.
 */

static ngx_int_t
ngx_http_gdrive_output_init(ngx_cycle_t *cycle, ngx_http_gdrive_process_t *w)
{
    ngx_http_gdrive_main_conf_t  *gmcf;

    gmcf = w->gmcf;

    w->output = ngx_gdrive_kafka_producer(cycle, gmcf, 1);
    if (w->output == NULL) {
        return NGX_ERROR;
    }

    w->child_topic = ngx_gdrive_kafka_topic(w->output, &gmcf->kafka_topic);
    w->result_topic = ngx_gdrive_kafka_topic(w->output,
                                             &gmcf->kafka_result_topic);
    w->dlq_topic = ngx_gdrive_kafka_topic(w->output, &gmcf->kafka_dlq_topic);

    if (w->child_topic == NULL || w->result_topic == NULL
        || w->dlq_topic == NULL)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


static void
ngx_http_gdrive_exit_process(ngx_cycle_t *cycle)
{
    ngx_msec_t                  start, spent;
    ngx_http_gdrive_process_t  *w;

    w = &ngx_http_gdrive_process;

    if (w->producer == NULL) {
        return;
    }

    ngx_http_gdrive_trigger_detach_all();

    ngx_gdrive_job_exit();

    ngx_gdrive_http_done();

    if (w->trigger_topic) {
        ngx_gdrive_kafka_topic_destroy(w->trigger_topic);
    }

    if (w->child_topic) {
        ngx_gdrive_kafka_topic_destroy(w->child_topic);
    }

    if (w->result_topic) {
        ngx_gdrive_kafka_topic_destroy(w->result_topic);
    }

    if (w->dlq_topic) {
        ngx_gdrive_kafka_topic_destroy(w->dlq_topic);
    }

    /*
     * The loop has ended: a bounded wait for what is still in flight, the
     * two producers' records together (each sends in its own threads
     * while the other is waited for).
     */

    ngx_time_update();
    start = ngx_current_msec;

    if (w->output) {
        ngx_gdrive_kafka_destroy(w->output, NGX_HTTP_GDRIVE_EXIT_FLUSH);
        w->output = NULL;
    }

    ngx_time_update();
    spent = ngx_current_msec - start;

    ngx_gdrive_kafka_destroy(w->producer,
                             spent < NGX_HTTP_GDRIVE_EXIT_FLUSH
                             ? NGX_HTTP_GDRIVE_EXIT_FLUSH - spent : 1);
    w->producer = NULL;

    if (ngx_gdrive_kafka_left_running()) {
        /*
         * librdkafka's threads of a consumer it did not destroy may still
         * call back into the cycle's memory: the process ends here, before
         * nginx frees it and exit() runs the libraries' destructors.
         */
        ngx_log_error(NGX_LOG_NOTICE, cycle->log, 0, "gdrive: exit");
        _exit(0);
    }
}


static char *
ngx_http_gdrive_zone(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_gdrive_main_conf_t *gmcf = conf;

    ssize_t                size;
    ngx_str_t             *value;
    ngx_gdrive_shm_ctx_t  *ctx;

    if (gmcf->shm_zone) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (value[1].len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"gdrive_zone\": empty zone name");
        return NGX_CONF_ERROR;
    }

    size = ngx_parse_size(&value[2]);

    if (size == NGX_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid zone size \"%V\" in \"gdrive_zone\" "
                           "directive", &value[2]);
        return NGX_CONF_ERROR;
    }

    if (size < (ssize_t) (64 * ngx_pagesize)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "zone \"%V\" is too small in \"gdrive_zone\" "
                           "directive: %V, at least %uzk needed",
                           &value[1], &value[2], 64 * ngx_pagesize / 1024);
        return NGX_CONF_ERROR;
    }

    ctx = ngx_pcalloc(cf->pool, sizeof(ngx_gdrive_shm_ctx_t));
    if (ctx == NULL) {
        return NGX_CONF_ERROR;
    }

    gmcf->shm_zone = ngx_shared_memory_add(cf, &value[1], size,
                                           &ngx_http_gdrive_worker_module);
    if (gmcf->shm_zone == NULL) {
        return NGX_CONF_ERROR;
    }

    if (gmcf->shm_zone->data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "zone \"%V\" is already used", &value[1]);
        return NGX_CONF_ERROR;
    }

    gmcf->shm_zone->init = ngx_gdrive_shm_init_zone;
    gmcf->shm_zone->data = ctx;

    return NGX_CONF_OK;
}


static char *
ngx_http_gdrive_kafka_option(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_gdrive_main_conf_t *gmcf = conf;

    char           errstr[512];
    ngx_str_t     *value;
    ngx_keyval_t  *kv;

    value = cf->args->elts;

    if (ngx_gdrive_kafka_option_check((char *) value[1].data,
                                      (char *) value[2].data, errstr,
                                      sizeof(errstr))
        != NGX_OK)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid \"gdrive_kafka_option\" \"%V\": %s",
                           &value[1], errstr);
        return NGX_CONF_ERROR;
    }

    if (gmcf->kafka_options == NULL) {
        gmcf->kafka_options = ngx_array_create(cf->pool, 4,
                                               sizeof(ngx_keyval_t));
        if (gmcf->kafka_options == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    kv = ngx_array_push(gmcf->kafka_options);
    if (kv == NULL) {
        return NGX_CONF_ERROR;
    }

    kv->key = value[1];
    kv->value = value[2];

    return NGX_CONF_OK;
}


static char *
ngx_http_gdrive_location(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_gdrive_loc_conf_t *glcf = conf;

    ngx_uint_t                    type;
    ngx_http_core_loc_conf_t     *clcf;
    ngx_http_gdrive_main_conf_t  *gmcf;

    type = (ngx_uint_t) cmd->post;

    if (glcf->type != NGX_HTTP_GDRIVE_LOC_NONE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\": this location already has a gdrive "
                           "handler", &cmd->name);
        return NGX_CONF_ERROR;
    }

    glcf->type = type;

    gmcf = ngx_http_conf_get_module_main_conf(cf,
                                              ngx_http_gdrive_worker_module);
    gmcf->locations |= 1 << type;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    switch (type) {

    case NGX_HTTP_GDRIVE_LOC_TRIGGER:
        clcf->handler = ngx_http_gdrive_trigger_handler;
        break;

    case NGX_HTTP_GDRIVE_LOC_HEALTH:
        clcf->handler = ngx_http_gdrive_health_handler;
        break;

    case NGX_HTTP_GDRIVE_LOC_METRICS:
        clcf->handler = ngx_http_gdrive_metrics_handler;
        break;

    case NGX_HTTP_GDRIVE_LOC_STATUS:
        clcf->handler = ngx_http_gdrive_status_handler;
        break;

    case NGX_HTTP_GDRIVE_LOC_DLQ:
        clcf->handler = ngx_http_gdrive_dlq_handler;
        break;

    default:
        clcf->handler = ngx_http_gdrive_unavailable_handler;
    }

    return NGX_CONF_OK;
}
