
/*
 * nginx-gdrive-worker: shared types.
 *
 * The configuration of the module, the shared zone and the prototypes
 * that cross file boundaries.  Files include only this header and the
 * nginx headers; see the file map in the README.
 */


#ifndef _NGX_GDRIVE_H_INCLUDED_
#define _NGX_GDRIVE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#if (NGX_THREADS)
#include <ngx_thread_pool.h>
#endif

#include <librdkafka/rdkafka.h>
#include <curl/curl.h>

#include "ngx_gdrive_message.h"
#include "ngx_gdrive_bucket.h"


#define NGX_GDRIVE_VERSION            "0.2.0"

#define NGX_GDRIVE_S3_MAX_PUT         ((off_t) 5 * 1024 * 1024 * 1024)


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
 * describes them lives in ngx_http_gdrive_worker_module.c.
 */
typedef enum {
    NGX_GDRIVE_S_KAFKA_BROKERS = 0,
    NGX_GDRIVE_S_KAFKA_TOPIC,
    NGX_GDRIVE_S_KAFKA_DLQ_TOPIC,
    NGX_GDRIVE_S_KAFKA_RESULT_TOPIC,
    NGX_GDRIVE_S_KAFKA_GROUP,
    NGX_GDRIVE_S_KAFKA_MAX_POLL_RECORDS,
    NGX_GDRIVE_S_KAFKA_MAX_POLL_INTERVAL,
    NGX_GDRIVE_S_KAFKA_SESSION_TIMEOUT,
    NGX_GDRIVE_S_KAFKA_FETCH_MIN_BYTES,
    NGX_GDRIVE_S_KAFKA_FETCH_MAX_WAIT,
    NGX_GDRIVE_S_KAFKA_COMMIT_INTERVAL,
    NGX_GDRIVE_S_KAFKA_DELIVERY_TIMEOUT,
    NGX_GDRIVE_S_CONSUMER,
    NGX_GDRIVE_S_GOOGLE_TOKEN_URL,
    NGX_GDRIVE_S_GOOGLE_API_URL,
    NGX_GDRIVE_S_GOOGLE_CLIENT_ID,
    NGX_GDRIVE_S_GOOGLE_CLIENT_SECRET,
    NGX_GDRIVE_S_GOOGLE_REFRESH_TOKEN,
    NGX_GDRIVE_S_GOOGLE_API_DEBUG,
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
    ngx_array_t         *kafka_options;           /* of ngx_keyval_t */
    ngx_uint_t           kafka_max_poll_records;
    ngx_msec_t           kafka_max_poll_interval;
    ngx_msec_t           kafka_session_timeout;
    ngx_uint_t           kafka_fetch_min_bytes;
    ngx_msec_t           kafka_fetch_max_wait;
    ngx_msec_t           kafka_commit_interval;
    ngx_msec_t           kafka_delivery_timeout;
    ngx_flag_t           consumer;

    /* Google and the control plane */
    ngx_str_t            google_token_url;
    ngx_str_t            google_api_url;
    ngx_str_t            google_client_id;
    ngx_str_t            google_client_secret;
    ngx_str_t            google_refresh_token;
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

    /* outbound HTTP */
    ngx_uint_t           max_connections;
    ngx_uint_t           max_connections_per_host;
    time_t               dns_cache_ttl;
    ngx_msec_t           connect_timeout;
    ngx_msec_t           read_timeout;
    ngx_flag_t           ssl_verify;
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


/* where a setting's value came from */
#define NGX_GDRIVE_FROM_UNSET      0
#define NGX_GDRIVE_FROM_DIRECTIVE  1
#define NGX_GDRIVE_FROM_ENV        2
#define NGX_GDRIVE_FROM_DEFAULT    3


/* the shared zone */

#define NGX_GDRIVE_MAX_WORKERS     64
#define NGX_GDRIVE_MAX_PARTITIONS  64

/*
 * What one worker process shows the others (status page, metrics): a slot
 * per worker number, written only by that worker, read without a lock.
 */
typedef struct {
    ngx_atomic_t         pid;
    ngx_atomic_t         started;        /* seconds */
    ngx_atomic_t         inflight;
    ngx_atomic_t         inflight_peak;
    ngx_atomic_t         queued;         /* taken, waiting to start */
    ngx_atomic_t         taken_bytes;    /* of the messages taken */
    ngx_atomic_t         paused;
    ngx_atomic_t         results;        /* jobs ended with a result */
    ngx_atomic_t         dead_letters;   /* jobs ended in the DLQ */
    ngx_atomic_t         retries;
    ngx_atomic_t         cancelled;
    ngx_atomic_t         nparts;
    int32_t              partitions[NGX_GDRIVE_MAX_PARTITIONS];
    int64_t              stored[NGX_GDRIVE_MAX_PARTITIONS];
    int64_t              high[NGX_GDRIVE_MAX_PARTITIONS];  /* watermark */
    int64_t              lag[NGX_GDRIVE_MAX_PARTITIONS];   /* -1: unknown */
} ngx_gdrive_worker_status_t;


typedef struct {
    ngx_rbtree_t                rbtree;
    ngx_rbtree_node_t           sentinel;
    ngx_queue_t                 lru;
    ngx_atomic_t                refreshes;    /* token requests made */
    ngx_atomic_t                hits;
    ngx_atomic_t                evictions;
} ngx_gdrive_token_cache_t;


/* Drive API rate limits: a bucket per integration, plus the global one */
typedef struct {
    ngx_rbtree_t                rbtree;
    ngx_rbtree_node_t           sentinel;
    ngx_queue_t                 lru;
    ngx_gdrive_bucket_t         global;
    ngx_uint_t                  max_buckets;  /* a quarter of the zone */
    ngx_atomic_t                buckets;      /* integrations with one */
    ngx_atomic_t                passed;
    ngx_atomic_t                waited;       /* takes told to wait */
    ngx_atomic_t                holds;
    ngx_atomic_t                evictions;    /* live buckets, for room */
    ngx_atomic_t                expired;      /* idle buckets dropped */
    ngx_atomic_t                refused;      /* no room: told to wait */
    ngx_atomic_t                unlimited;    /* passed for want of room */
} ngx_gdrive_rate_zone_t;


/* Drive metadata (files.get JSON), keyed by integration and file id */
typedef struct {
    ngx_rbtree_t                rbtree;
    ngx_rbtree_node_t           sentinel;
    ngx_queue_t                 lru;
    size_t                      bytes;        /* slab memory held */
    size_t                      max_bytes;    /* half of the zone */
    ngx_atomic_t                entries;
    ngx_atomic_t                hits;
    ngx_atomic_t                misses;
    ngx_atomic_t                evictions;
} ngx_gdrive_meta_cache_t;


/*
 * Metrics: counters and histograms of the whole instance, lock-free atomic
 * adds into fixed arrays.  Every label value is an index into a fixed list
 * of ngx_gdrive_metrics.c (an unknown one counts as "other"), so the
 * number of series is bounded whatever the traffic.
 */

#define NGX_GDRIVE_M_OUTCOMES      7
#define NGX_GDRIVE_M_CODES         28
#define NGX_GDRIVE_M_TRIGGER_ST    12
#define NGX_GDRIVE_M_ENDPOINTS     11
#define NGX_GDRIVE_M_HTTP_ST       20
#define NGX_GDRIVE_M_S3_OPS        9
#define NGX_GDRIVE_M_CACHES        3
#define NGX_GDRIVE_M_CACHE_EVENTS  3
#define NGX_GDRIVE_M_REFRESH       4
#define NGX_GDRIVE_M_BUCKETS       14     /* the last one is +Inf */

typedef struct {
    ngx_atomic_t         bucket[NGX_GDRIVE_M_BUCKETS];   /* not cumulative */
    ngx_atomic_t         sum_ms;
    ngx_atomic_t         count;
} ngx_gdrive_histogram_t;

typedef struct {
    ngx_atomic_t         jobs[NGX_GDRIVE_M_OUTCOMES][NGX_GDRIVE_M_CODES];
    ngx_atomic_t         retries[NGX_GDRIVE_M_CODES];
    ngx_gdrive_histogram_t  job_duration;
    ngx_atomic_t         triggers[NGX_GDRIVE_M_TRIGGER_ST];
    ngx_atomic_t         google[NGX_GDRIVE_M_ENDPOINTS][NGX_GDRIVE_M_HTTP_ST];
    ngx_gdrive_histogram_t  google_duration[NGX_GDRIVE_M_ENDPOINTS];
    ngx_atomic_t         ratelimit_waits[2];        /* integration, global */
    ngx_atomic_t         ratelimit_wait_ms[2];
    ngx_atomic_t         cache[NGX_GDRIVE_M_CACHES][NGX_GDRIVE_M_CACHE_EVENTS];
    ngx_atomic_t         s3[NGX_GDRIVE_M_S3_OPS][NGX_GDRIVE_M_HTTP_ST];
    ngx_atomic_t         s3_bytes;
    ngx_atomic_t         dlq[3];          /* produced, replayed, dropped */
    ngx_atomic_t         token_refresh[NGX_GDRIVE_M_REFRESH];
} ngx_gdrive_metrics_t;


/* what the status page shows of a worker's jobs and errors */

#define NGX_GDRIVE_STATUS_JOBS     32
#define NGX_GDRIVE_STATUS_ERRORS   16

typedef struct {
    ngx_atomic_t         started;        /* epoch ms, 0: a free slot */
    int32_t              partition;
    int64_t              offset;
    u_char               id_len;
    u_char               id[NGX_GDRIVE_ID_MAX_LEN];
    char                 stage[24];
} ngx_gdrive_job_slot_t;

typedef struct {
    uint64_t             time;           /* epoch ms */
    u_char               id_len;
    u_char               id[NGX_GDRIVE_ID_MAX_LEN];
    char                 code[32];
    u_char               detail[160];
} ngx_gdrive_error_slot_t;

typedef struct {
    ngx_gdrive_job_slot_t    jobs[NGX_GDRIVE_STATUS_JOBS];
    ngx_atomic_t             nerrors;    /* ever written; ring position */
    ngx_gdrive_error_slot_t  errors[NGX_GDRIVE_STATUS_ERRORS];
} ngx_gdrive_worker_detail_t;


/* gdrive_health: probe answers shared by the workers, and a window */

#define NGX_GDRIVE_PROBE_TOKEN     0
#define NGX_GDRIVE_PROBE_DRIVE     1
#define NGX_GDRIVE_PROBE_S3        2
#define NGX_GDRIVE_PROBES          3

typedef struct {
    ngx_atomic_t         status;         /* HTTP status, 0: not reached */
    ngx_atomic_t         ok;
    ngx_atomic_t         ms;
    u_char               detail[96];
} ngx_gdrive_probe_t;

typedef struct {
    uint64_t             time;           /* epoch ms, 0: none */
    ngx_atomic_uint_t    done;
    ngx_atomic_uint_t    failed;
    ngx_atomic_uint_t    google;
    ngx_atomic_uint_t    bucket[NGX_GDRIVE_M_BUCKETS];
} ngx_gdrive_snapshot_t;

typedef struct {
    ngx_atomic_t         probing;        /* pid of the probing worker */
    ngx_atomic_t         generation;     /* bumped when a round ends */
    uint64_t             started;        /* epoch ms */
    uint64_t             checked;        /* epoch ms, 0: never */
    ngx_gdrive_probe_t   probe[NGX_GDRIVE_PROBES];
    ngx_gdrive_snapshot_t  snap[2];      /* older, newer */
} ngx_gdrive_health_sh_t;


typedef struct {
    ngx_atomic_t                generation;  /* bumped on every (re)start */
    ngx_gdrive_token_cache_t    tokens;
    ngx_gdrive_rate_zone_t      rate;
    ngx_gdrive_meta_cache_t     meta;
    ngx_msec_t                  started;
    ngx_atomic_t                dlq_replay;  /* pid of the replaying worker */
    ngx_gdrive_worker_status_t  workers[NGX_GDRIVE_MAX_WORKERS];
    ngx_gdrive_metrics_t        metrics;
    ngx_gdrive_health_sh_t      health;
    /* allocated by each worker number when it first starts */
    ngx_gdrive_worker_detail_t *details[NGX_GDRIVE_MAX_WORKERS];
} ngx_gdrive_sh_t;


typedef struct {
    ngx_gdrive_sh_t     *sh;
    ngx_slab_pool_t     *shpool;
} ngx_gdrive_shm_ctx_t;

ngx_gdrive_shm_ctx_t *ngx_gdrive_shm_ctx(ngx_http_gdrive_main_conf_t *gmcf);


ngx_int_t ngx_gdrive_shm_init_zone(ngx_shm_zone_t *shm_zone, void *data);
ngx_gdrive_sh_t *ngx_gdrive_shm(ngx_http_gdrive_main_conf_t *gmcf);
uint64_t ngx_gdrive_shm_now(void);


/*
 * Drive API rate limits across all workers (ngx_gdrive_ratelimit.c).
 *
 * ngx_gdrive_rate_take(): 0 when the integration's bucket and the global
 * one both let a request through now, and it is counted in both;
 * otherwise nothing is counted and the answer is the ms to wait (set a
 * timer, call again), which includes what is left of a hold.  Call it
 * right before each Drive request, retries included.  Among callers
 * waiting on one bucket, whoever asks first after the wait wins: none
 * waits for ever, but no order is kept.  An empty or over-long id, or no
 * room in the zone, leaves the global bucket only.
 * ngx_gdrive_rate_hold(): no request of the integration passes for ms
 * (Retry-After; quota = 1: the quota_exhausted circuit); a hold only
 * ever extends, and holds longer than a day are cut to one.
 * ngx_gdrive_rate_snapshot(): the global bucket first (integration
 * empty), then up to max (at most NGX_GDRIVE_RATE_SNAPSHOT_MAX)
 * integrations, most recently used first, copied out of the zone into
 * the pool with the table's counters.
 */

typedef struct {
    ngx_str_t                   integration;  /* empty: the global bucket */
    ngx_uint_t                  use;          /* % of burst + 1 in use,
                                                 100: requests wait */
    ngx_msec_t                  wait;         /* until one passes, hold
                                                 included */
    uint64_t                    held_until;   /* epoch ms, 0: not held */
    ngx_uint_t                  quota;        /* the hold is the quota
                                                 circuit */
} ngx_gdrive_rate_entry_t;

typedef struct {
    ngx_array_t                *entries;      /* ngx_gdrive_rate_entry_t */
    ngx_uint_t                  buckets;      /* integrations in the zone */
    ngx_uint_t                  passed;       /* takes that returned 0 */
    ngx_uint_t                  waited;       /* takes told to wait */
    ngx_uint_t                  holds;
    ngx_uint_t                  evictions;    /* buckets dropped for room */
    ngx_uint_t                  unlimited;    /* passed with no bucket */
} ngx_gdrive_rate_snapshot_t;

#define NGX_GDRIVE_RATE_SNAPSHOT_MAX  100

void ngx_gdrive_rate_init_zone(ngx_gdrive_shm_ctx_t *ctx);
ngx_msec_t ngx_gdrive_rate_take(ngx_str_t *integration,
    ngx_uint_t *global);
void ngx_gdrive_rate_hold(ngx_str_t *integration, ngx_msec_t ms,
    ngx_uint_t quota);
ngx_int_t ngx_gdrive_rate_snapshot(ngx_pool_t *pool, ngx_uint_t max,
    ngx_gdrive_rate_snapshot_t *snap);


/*
 * The Drive metadata cache (ngx_gdrive_cache.c): gdrive_metadata_cache
 * entries for its ttl, least recently used evicted first, in at most half
 * of the zone.  get() copies a fresh value into the pool (NGX_OK) or says
 * NGX_DECLINED (miss, expired, cache off, bad key, no pool memory);
 * put() stores or replaces a value of at most NGX_GDRIVE_CACHE_MAX_VALUE
 * bytes, or silently does nothing.  Keys: integration id (at most
 * NGX_GDRIVE_ID_MAX_LEN) and file id (at most NGX_GDRIVE_DRIVE_ID_MAX_LEN).
 * stats() reads the counters without the lock.
 */

#define NGX_GDRIVE_CACHE_MAX_VALUE    16384

void ngx_gdrive_cache_init_zone(ngx_gdrive_shm_ctx_t *ctx);
ngx_int_t ngx_gdrive_cache_get(ngx_str_t *integration, ngx_str_t *file_id,
    ngx_pool_t *pool, ngx_str_t *value);
void ngx_gdrive_cache_put(ngx_str_t *integration, ngx_str_t *file_id,
    u_char *value, size_t len);
void ngx_gdrive_cache_stats(ngx_uint_t *entries, ngx_uint_t *hits,
    ngx_uint_t *misses, ngx_uint_t *evictions);


/* outbound HTTP (curl multi on the event loop) */

typedef struct ngx_gdrive_http_s  ngx_gdrive_http_t;

struct ngx_gdrive_http_s {
    CURL                    *easy;
    struct curl_slist       *headers;
    ngx_pool_t              *pool;
    ngx_log_t               *log;
    void                   (*handler)(ngx_gdrive_http_t *h);
    /* the response body, else it is gathered up to max_body; a sink may
     * return CURL_WRITEFUNC_PAUSE and later call ngx_gdrive_http_resume() */
    size_t                 (*sink)(ngx_gdrive_http_t *h, u_char *p,
                                   size_t len);
    /* every response header line as it arrives, "\r\n" included */
    void                   (*header_handler)(ngx_gdrive_http_t *h,
                                u_char *line, size_t len);
    /* a request body of source_len bytes read as it is sent, instead of
     * request_body; a source may return CURL_READFUNC_PAUSE and later
     * call ngx_gdrive_http_resume() */
    size_t                 (*source)(ngx_gdrive_http_t *h, u_char *p,
                                     size_t len);
    off_t                    source_len;
    void                    *data;
    const char              *method;      /* NULL: GET, or POST with a body */
    u_char                  *request_body;
    size_t                   request_len;
    const char              *what;        /* for debug lines: no secrets */
    CURLcode                 result;
    long                     status;
    ngx_int_t                retry_after; /* seconds, -1: none */
    u_char                  *body;
    size_t                   len;
    size_t                   cap;
    size_t                   max_body;
    ngx_msec_t               started;
    char                     error[CURL_ERROR_SIZE];
    ngx_queue_t              queue;       /* waiting to be added */
    unsigned                 active:1;
    unsigned                 pending:1;   /* to be added */
    unsigned                 removing:1;  /* to be removed */
};

ngx_int_t ngx_gdrive_http_init(ngx_cycle_t *cycle,
    ngx_http_gdrive_main_conf_t *gmcf);
void ngx_gdrive_http_done(void);
ngx_gdrive_http_t *ngx_gdrive_http_create(ngx_pool_t *pool, ngx_log_t *log,
    size_t max_body);
ngx_int_t ngx_gdrive_http_header_add(ngx_gdrive_http_t *h, const char *line);
ngx_int_t ngx_gdrive_http_body_room(ngx_gdrive_http_t *h, size_t size);
/* a value from outside may go into a header: no CR, LF or NUL */
ngx_uint_t ngx_gdrive_header_safe(ngx_str_t *value);
/* gdrive_integrations: may this integration be synced? */
ngx_uint_t ngx_gdrive_integration_allowed(ngx_http_gdrive_main_conf_t *gmcf,
    const char *id, size_t len);
ngx_int_t ngx_gdrive_http_start(ngx_gdrive_http_t *h, const char *url);
void ngx_gdrive_http_resume(ngx_gdrive_http_t *h);
void ngx_gdrive_http_cancel(ngx_gdrive_http_t *h);
void ngx_gdrive_http_reset(ngx_gdrive_http_t *h);


/* OAuth access tokens, cached in the shared zone */

typedef struct ngx_gdrive_token_req_s  ngx_gdrive_token_req_t;

struct ngx_gdrive_token_req_s {
    ngx_pool_t              *pool;
    ngx_log_t               *log;
    ngx_str_t                integration;
    void                   (*handler)(ngx_gdrive_token_req_t *req);
    void                    *data;

    /* the answer */
    ngx_int_t                rc;          /* NGX_OK, NGX_ERROR */
    ngx_str_t                token;
    const char              *code;        /* error code of DESIGN §4 */
    const char              *detail;
    ngx_uint_t               permanent;
    ngx_int_t                retry_after; /* seconds, -1: none */

    /* its state */
    ngx_gdrive_http_t       *http;
    ngx_event_t              wait;
    ngx_uint_t               waited;
    ngx_str_t                client_id;
    ngx_str_t                client_secret;
    ngx_str_t                refresh_token;
    unsigned                 refreshing:1;
};

void ngx_gdrive_token_get(ngx_gdrive_token_req_t *req);
void ngx_gdrive_token_cancel(ngx_gdrive_token_req_t *req);
void ngx_gdrive_token_invalidate(ngx_str_t *integration, ngx_str_t *token);


/*
 * S3: one object written from a byte stream (ngx_gdrive_s3.c), signed
 * with SigV4 (ngx_gdrive_sigv4.c).
 *
 * start() asks whether the object already exists: if it does with the
 * same size (any size when the size is not known up front), done() comes
 * with unchanged set and nothing is written.  Otherwise ready() comes and
 * the owner writes the content in order.  write() takes all of the bytes
 * or none: NGX_AGAIN means every part buffer is full or uploading, and
 * resume() will be called when one is free (the owner pauses its
 * download meanwhile).  finish() ends the stream; done() reports.  Below
 * gdrive_s3_multipart_threshold bytes the object is one PUT (sent as it
 * is written when it is larger than a buffer), above it a multipart
 * upload of gdrive_stream_buffers-sized parts, at most
 * gdrive_stream_buffers buffers in memory either way.  A failed or
 * aborted multipart upload is aborted on S3.  After abort() no callback
 * comes.
 */

typedef struct ngx_gdrive_s3_upload_s  ngx_gdrive_s3_upload_t;

struct ngx_gdrive_s3_upload_s {
    ngx_pool_t              *pool;        /* the owner's */
    ngx_log_t               *log;
    ngx_str_t                key;         /* made of safe characters */
    ngx_str_t                content_type;
    off_t                    size;        /* -1: not known up front */
    ngx_str_t                md5;         /* expected hex md5, or empty */
    ngx_str_t                drive_id;    /* x-amz-meta-drive-file-id */
    ngx_str_t                version;     /* x-amz-meta-drive-version */
    ngx_str_t                integration; /* x-amz-meta-integration-id */
    ngx_str_t                trigger;     /* x-amz-meta-trigger-id */
    ngx_str_t                name;        /* x-amz-meta-drive-name, UTF-8 */

    void                   (*ready)(ngx_gdrive_s3_upload_t *u);
    void                   (*resume)(ngx_gdrive_s3_upload_t *u);
    void                   (*done)(ngx_gdrive_s3_upload_t *u);
    void                    *data;

    /* the answer, in done() */
    ngx_int_t                rc;          /* NGX_OK, NGX_ERROR */
    const char              *code;        /* error code of DESIGN §4 */
    const char              *detail;
    ngx_uint_t               permanent;
    ngx_int_t                retry_after; /* seconds, -1: none */
    off_t                    bytes;
    ngx_uint_t               parts;       /* 0: a single PUT */
    u_char                   sha256[64];  /* hex, of the bytes written */
    u_char                   md5_hex[32];
    unsigned                 unchanged:1;

    void                    *state;       /* the S3 client's */
};

void ngx_gdrive_s3_upload_start(ngx_gdrive_s3_upload_t *u);
ngx_int_t ngx_gdrive_s3_upload_write(ngx_gdrive_s3_upload_t *u, u_char *p,
    size_t len);
void ngx_gdrive_s3_upload_finish(ngx_gdrive_s3_upload_t *u);
void ngx_gdrive_s3_upload_abort(ngx_gdrive_s3_upload_t *u);


/* what one worker process runs */

typedef struct {
    ngx_http_gdrive_main_conf_t  *gmcf;
    struct ngx_gdrive_kafka_s    *producer;
    struct ngx_gdrive_kafka_s    *consumer;
    rd_kafka_topic_t             *trigger_topic;
    rd_kafka_topic_t             *result_topic;
    rd_kafka_topic_t             *dlq_topic;
    ngx_gdrive_worker_status_t   *status;    /* this worker's slot */
    ngx_gdrive_worker_detail_t   *detail;    /* its jobs, errors; or NULL */
    ngx_gdrive_metrics_t         *metrics;   /* NULL: not counted */
} ngx_gdrive_worker_t;

extern ngx_gdrive_worker_t  ngx_gdrive_worker;


/*
 * Metrics and status (ngx_gdrive_metrics.c): what any file reports.
 * Strings name fixed label values (see the lists there); ids and details
 * go only to the status page's job slots and error ring, never into a
 * metric label.
 */

/* outcome: "uploaded", "unchanged", "deleted", "fanned_out",
 * "changes_listed", "dlq"; code: error code or NULL */
void ngx_gdrive_metric_job_done(const char *outcome, const char *code,
    ngx_msec_t duration);
void ngx_gdrive_metric_job_retry(const char *code);
/* triggers received, by the HTTP status of their answer */
void ngx_gdrive_metric_trigger(ngx_uint_t http_status, ngx_uint_t n);
/* endpoint: "files.get", "files.media", "files.export",
 * "files.exportLink", "files.list", "changes.list",
 * "changes.startPageToken", "token", "cp.credentials", "cp.reauthorize";
 * status: HTTP status, 0 for a transport failure */
void ngx_gdrive_metric_google_request(const char *endpoint, long status,
    ngx_msec_t duration);
void ngx_gdrive_metric_ratelimit_wait(ngx_uint_t global, ngx_msec_t waited);
/* cache: "token", "metadata"; event: "hit", "miss", "eviction" */
void ngx_gdrive_metric_cache(const char *cache, const char *event);
/* op: "head", "put", "create", "part", "complete", "abort" */
void ngx_gdrive_metric_s3_request(const char *op, long status);
void ngx_gdrive_metric_s3_bytes(off_t bytes);
/* event: "produced", "replayed" */
void ngx_gdrive_metric_dlq(const char *event, ngx_uint_t n);
/* result: "ok", "error", "revoked" */
void ngx_gdrive_metric_token_refresh(const char *result);

ngx_int_t ngx_gdrive_status_job_begin(u_char *id, size_t len,
    int32_t partition, int64_t offset);
void ngx_gdrive_status_job_stage(ngx_int_t slot, const char *stage);
void ngx_gdrive_status_job_id(ngx_int_t slot, u_char *id, size_t len);
void ngx_gdrive_status_job_end(ngx_int_t slot);
void ngx_gdrive_status_error(u_char *id, size_t len, const char *code,
    const char *detail);

ngx_int_t ngx_gdrive_metrics_init_process(ngx_cycle_t *cycle,
    ngx_http_gdrive_main_conf_t *gmcf);
uint64_t ngx_gdrive_epoch_ms(void);
size_t ngx_gdrive_process_rss(ngx_pid_t pid);

/* the fixed label values, for the exposition */
extern const char  *ngx_gdrive_metric_outcomes[NGX_GDRIVE_M_OUTCOMES];
extern const char  *ngx_gdrive_metric_codes[NGX_GDRIVE_M_CODES];
extern ngx_uint_t   ngx_gdrive_metric_trigger_st[NGX_GDRIVE_M_TRIGGER_ST];
extern const char  *ngx_gdrive_metric_endpoints[NGX_GDRIVE_M_ENDPOINTS];
extern ngx_uint_t   ngx_gdrive_metric_http_st[NGX_GDRIVE_M_HTTP_ST];
extern const char  *ngx_gdrive_metric_s3_ops[NGX_GDRIVE_M_S3_OPS];
extern const char  *ngx_gdrive_metric_caches[NGX_GDRIVE_M_CACHES];
extern const char  *ngx_gdrive_metric_cache_events[NGX_GDRIVE_M_CACHE_EVENTS];
extern const char  *ngx_gdrive_metric_refresh[NGX_GDRIVE_M_REFRESH];
extern ngx_msec_t   ngx_gdrive_metric_bounds[NGX_GDRIVE_M_BUCKETS - 1];


/* gdrive_health's probes of Google and S3 (ngx_gdrive_probe.c) */

/* NGX_OK: the answers are fresh; NGX_AGAIN: a round runs, look later */
ngx_int_t ngx_gdrive_probe_fresh(ngx_http_gdrive_main_conf_t *gmcf);


/* the effective configuration (ngx_http_gdrive_worker_module.c) */

typedef struct {
    ngx_str_t            name;           /* the directive */
    const char          *env;
    ngx_uint_t           from;           /* NGX_GDRIVE_FROM_* */
    ngx_str_t            value;          /* as given */
    ngx_uint_t           secret;
} ngx_gdrive_setting_info_t;

ngx_int_t ngx_http_gdrive_setting_info(ngx_http_gdrive_main_conf_t *gmcf,
    ngx_uint_t i, ngx_gdrive_setting_info_t *info);


/* locations */

ngx_int_t ngx_http_gdrive_trigger_handler(ngx_http_request_t *r);
void ngx_http_gdrive_trigger_detach_all(void);
ngx_int_t ngx_http_gdrive_trigger_init(ngx_conf_t *cf);

ngx_int_t ngx_http_gdrive_health_handler(ngx_http_request_t *r);
ngx_int_t ngx_http_gdrive_metrics_handler(ngx_http_request_t *r);
ngx_int_t ngx_http_gdrive_status_handler(ngx_http_request_t *r);
ngx_int_t ngx_http_gdrive_dlq_handler(ngx_http_request_t *r);
ngx_int_t ngx_http_gdrive_unavailable_handler(ngx_http_request_t *r);
ngx_int_t ngx_http_gdrive_request_body(ngx_http_request_t *r, size_t max,
    ngx_str_t *body);
ngx_int_t ngx_http_gdrive_add_header(ngx_http_request_t *r, char *key,
    char *value);
ngx_int_t ngx_http_gdrive_send_error(ngx_http_request_t *r,
    ngx_uint_t status, const char *code, const char *detail);
ngx_int_t ngx_http_gdrive_error_filter_init(ngx_conf_t *cf);
ngx_int_t ngx_http_gdrive_send_json(ngx_http_request_t *r, ngx_uint_t status,
    u_char *json, size_t len);


extern ngx_module_t  ngx_http_gdrive_worker_module;


#include "ngx_gdrive_kafka.h"
#include "ngx_gdrive_drive.h"
#include "ngx_gdrive_job.h"


#endif /* _NGX_GDRIVE_H_INCLUDED_ */
