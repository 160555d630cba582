
/*
 * nginx-gdrive-worker: metrics and the status page's slots
 * (ngx_gdrive_metrics.c).
 *
 * What any file reports.  Strings name fixed label values (see the lists
 * there); ids and details go only to the status page's job slots and
 * error ring, never into a metric label.  The counters, slots and health
 * snapshots themselves are structs of the shared zone (ngx_gdrive.h).
 */


#ifndef _NGX_GDRIVE_METRICS_H_INCLUDED_
#define _NGX_GDRIVE_METRICS_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_gdrive.h"


/*
 * Takes this worker's status slot, its job slots and error ring (none
 * for a worker beyond the status table) and the zone's counters; before
 * it nothing is counted.
 */
ngx_int_t ngx_gdrive_metrics_init_process(ngx_cycle_t *cycle,
    ngx_http_gdrive_main_conf_t *gmcf, ngx_gdrive_worker_status_t *status);

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
/* op: "head", "put", "create", "part", "complete", "abort", "list",
 * "delete" */
void ngx_gdrive_metric_s3_request(const char *op, long status);
void ngx_gdrive_metric_s3_bytes(off_t bytes);
/* event: "produced", "replayed", "dropped" */
void ngx_gdrive_metric_dlq(const char *event, ngx_uint_t n);
/* a hold learned again after a partition changed hands (ngx_gdrive_job.c) */
void ngx_gdrive_metric_hold_relearned(void);
/* result: "ok", "error", "revoked" */
void ngx_gdrive_metric_token_refresh(const char *result);

ngx_int_t ngx_gdrive_status_job_begin(u_char *id, size_t len,
    int32_t partition, int64_t offset);
void ngx_gdrive_status_job_stage(ngx_int_t slot, const char *stage);
void ngx_gdrive_status_job_id(ngx_int_t slot, u_char *id, size_t len);
void ngx_gdrive_status_job_end(ngx_int_t slot);
void ngx_gdrive_status_error(u_char *id, size_t len, const char *code,
    const char *detail);
/* a slot of a worker that is gone is not shown */
ngx_uint_t ngx_gdrive_status_live(ngx_gdrive_worker_status_t *st);

size_t ngx_gdrive_process_rss(ngx_pid_t pid);

/*
 * The health checklist's window: the counters now (cur) against a
 * snapshot between one and two windows old (base).
 */
void ngx_gdrive_metrics_window(ngx_msec_t window, ngx_gdrive_snapshot_t *base,
    ngx_gdrive_snapshot_t *cur);
/* the upper bound of the bucket that holds the 95th percentile, ms */
ngx_msec_t ngx_gdrive_metrics_p95(ngx_atomic_uint_t *bucket);

/* the fixed label values, for the exposition */
extern const char *const  ngx_gdrive_metric_outcomes[NGX_GDRIVE_M_OUTCOMES];
extern const char *const  ngx_gdrive_metric_codes[NGX_GDRIVE_M_CODES];
extern const ngx_uint_t   ngx_gdrive_metric_trigger_st[NGX_GDRIVE_M_TRIGGER_ST];
extern const char *const  ngx_gdrive_metric_endpoints[NGX_GDRIVE_M_ENDPOINTS];
extern const ngx_uint_t   ngx_gdrive_metric_http_st[NGX_GDRIVE_M_HTTP_ST];
extern const char *const  ngx_gdrive_metric_s3_ops[NGX_GDRIVE_M_S3_OPS];
extern const char *const  ngx_gdrive_metric_caches[NGX_GDRIVE_M_CACHES];
extern const char *const
    ngx_gdrive_metric_cache_events[NGX_GDRIVE_M_CACHE_EVENTS];
extern const char *const  ngx_gdrive_metric_refresh[NGX_GDRIVE_M_REFRESH];
extern const ngx_msec_t   ngx_gdrive_metric_bounds[NGX_GDRIVE_M_BUCKETS - 1];


#endif /* _NGX_GDRIVE_METRICS_H_INCLUDED_ */
