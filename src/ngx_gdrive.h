
/*
 * nginx-gdrive-worker: shared types.
 *
 * What every part of the module shares: the configuration
 * (ngx_gdrive_conf.h), the layout of the shared zone (the keyed tables of
 * ngx_gdrive_shm.h, the workers' slots, the metrics, the health window)
 * and the module itself.  Each client and layer has a header of its own,
 * which includes this one; a file includes the headers of what it uses
 * (the file map is in the README).
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
#include "ngx_gdrive_conf.h"


#define NGX_GDRIVE_VERSION            "0.2.0"

#define NGX_GDRIVE_S3_MAX_PUT         ((off_t) 5 * 1024 * 1024 * 1024)


/* the shared zone */

#define NGX_GDRIVE_MAX_WORKERS     64
#define NGX_GDRIVE_MAX_PARTITIONS  64
#define NGX_GDRIVE_MEMBER_ID_LEN   128     /* longer ones are cut */

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
    /* outbound requests held back by gdrive_max_connections: waiting
     * now, and all that waited */
    ngx_atomic_t         http_waiting;
    ngx_atomic_t         http_waited;
    ngx_atomic_t         held;           /* partitions assigned, all of
                                            them; 0 when the worker ends */
    ngx_atomic_t         topic_partitions;  /* of the trigger topic, 0:
                                               not known yet */
    u_char               member_id[NGX_GDRIVE_MEMBER_ID_LEN];  /* "": none */
    int32_t              partitions[NGX_GDRIVE_MAX_PARTITIONS];
    int64_t              stored[NGX_GDRIVE_MAX_PARTITIONS];
    int64_t              high[NGX_GDRIVE_MAX_PARTITIONS];  /* watermark */
    int64_t              lag[NGX_GDRIVE_MAX_PARTITIONS];   /* -1: unknown */
} ngx_gdrive_worker_status_t;


#include "ngx_gdrive_shm.h"
#include "ngx_gdrive_aws.h"


/* OAuth access tokens, a table keyed by integration */
typedef struct {
    ngx_gdrive_shm_table_t      table;
    ngx_atomic_t                refreshes;    /* token requests made */
    ngx_atomic_t                hits;
    ngx_atomic_t                evictions;
} ngx_gdrive_token_cache_t;


/* Drive API rate limits: a bucket per integration, plus the global one */
typedef struct {
    ngx_gdrive_shm_table_t      table;        /* of buckets, a quarter of
                                                 the zone at most */
    ngx_gdrive_bucket_t         global;
    ngx_atomic_t                passed;
    ngx_atomic_t                waited;       /* takes told to wait */
    ngx_atomic_t                holds;
    ngx_atomic_t                evictions;    /* live buckets, for room */
    ngx_atomic_t                expired;      /* idle buckets dropped */
    ngx_atomic_t                refused;      /* no room: told to wait */
    ngx_atomic_t                unlimited;    /* passed for want of room */
    /* scope=fleet: this instance's share, from its workers' slots */
    uint64_t                    share_rate;   /* as global_rate */
    uint64_t                    share_burst;
    ngx_atomic_t                share_held;   /* partitions held here */
    ngx_atomic_t                share_total;  /* of the topic, 0: unknown */
} ngx_gdrive_rate_zone_t;


/* Drive metadata (files.get JSON), keyed by integration and file id */
typedef struct {
    ngx_gdrive_shm_table_t      table;        /* half of the zone at most */
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
    ngx_atomic_t         holds_relearned;
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


struct ngx_gdrive_sh_s {
    ngx_atomic_t                generation;  /* bumped on every (re)start */
    ngx_gdrive_token_cache_t    tokens;
    ngx_gdrive_rate_zone_t      rate;
    ngx_gdrive_meta_cache_t     meta;
    ngx_msec_t                  started;
    ngx_atomic_t                dlq_replay;  /* pid of the replaying worker */
    ngx_gdrive_worker_status_t  workers[NGX_GDRIVE_MAX_WORKERS];
    ngx_gdrive_metrics_t        metrics;
    ngx_gdrive_health_sh_t      health;
    ngx_gdrive_aws_sh_t         aws;         /* web identity credentials */
    /* allocated by each worker number when it first starts */
    ngx_gdrive_worker_detail_t *details[NGX_GDRIVE_MAX_WORKERS];
};


/* locations */

ngx_int_t ngx_http_gdrive_dlq_handler(ngx_http_request_t *r);


extern ngx_module_t  ngx_http_gdrive_worker_module;



#endif /* _NGX_GDRIVE_H_INCLUDED_ */
