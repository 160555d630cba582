
/*
 * nginx-gdrive-worker: metrics and the status page's tables.
 *
 * Counters layer, one shared table: counters and histograms of the whole
 * instance in the shared zone, added to with lock-free atomics by every
 * worker (and by gdrive_dlq's thread), summed by nobody: one copy per
 * instance.  Label values are looked up in fixed lists; anything else is
 * "other", so a metric never grows with the traffic.  Each worker also
 * owns a block of job slots and a ring of recent errors, which it alone
 * writes and the status page reads without a lock.  What a worker writes
 * to is given to it once, by ngx_gdrive_metrics_init_process().  The
 * arithmetic gdrive_health's checklist does over the counters (a window
 * of snapshots, the 95th percentile) is here too.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_gdrive.h"
#include "ngx_gdrive_metrics.h"


const char *const  ngx_gdrive_metric_outcomes[NGX_GDRIVE_M_OUTCOMES] = {
    "uploaded", "unchanged", "deleted", "fanned_out", "changes_listed",
    "dlq", "other"
};

/* the codes of the README's Error codes and the engine's own; index 0 is
 * "no error" */
const char *const  ngx_gdrive_metric_codes[NGX_GDRIVE_M_CODES] = {
    "none", "invalid_message", "missing_field", "auth_invalid",
    "auth_revoked", "rate_limited", "upstream_error", "not_found",
    "permission_denied", "export_too_large", "s3_access_denied", "s3_error",
    "quota_exhausted", "abusive_file", "kafka_error", "internal_error",
    "unsupported_type", "bad_request", "checksum_mismatch", "size_mismatch",
    "file_too_large", "s3_rejected", "integration_unknown",
    "control_plane_denied", "not_downloadable", "untrusted_link",
    "integration_not_allowed", "other"
};

/* the last entry of a status list stands for every other status */
const ngx_uint_t  ngx_gdrive_metric_trigger_st[NGX_GDRIVE_M_TRIGGER_ST] = {
    202, 400, 403, 404, 405, 408, 411, 413, 415, 500, 503, 0
};

const char *const  ngx_gdrive_metric_endpoints[NGX_GDRIVE_M_ENDPOINTS] = {
    "files.get", "files.media", "files.export", "files.exportLink",
    "files.list", "changes.list", "changes.startPageToken", "token",
    "cp.credentials", "cp.reauthorize", "other"
};

/* 0 is a transport failure; the last entry is "other" */
const ngx_uint_t  ngx_gdrive_metric_http_st[NGX_GDRIVE_M_HTTP_ST] = {
    0, 200, 201, 204, 206, 304, 400, 401, 403, 404, 409, 410, 412, 416,
    429, 500, 502, 503, 504, 1
};

const char *const  ngx_gdrive_metric_s3_ops[NGX_GDRIVE_M_S3_OPS] = {
    "head", "put", "create", "part", "complete", "abort", "list", "delete",
    "other"
};

const char *const  ngx_gdrive_metric_caches[NGX_GDRIVE_M_CACHES] = {
    "token", "metadata", "other"
};

const char *const  ngx_gdrive_metric_cache_events[NGX_GDRIVE_M_CACHE_EVENTS] = {
    "hit", "miss", "eviction"
};

const char *const  ngx_gdrive_metric_refresh[NGX_GDRIVE_M_REFRESH] = {
    "ok", "error", "revoked", "other"
};

/* upper bounds of the duration buckets, ms: 25 ms to 5 minutes */
const ngx_msec_t  ngx_gdrive_metric_bounds[NGX_GDRIVE_M_BUCKETS - 1] = {
    25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 120000,
    300000
};


static ngx_uint_t ngx_gdrive_metric_index(const char *const *list, ngx_uint_t n,
    const char *name);
static ngx_uint_t ngx_gdrive_metric_status(const ngx_uint_t *list, ngx_uint_t n,
    ngx_uint_t status);
static void ngx_gdrive_metric_observe(ngx_gdrive_histogram_t *h,
    ngx_msec_t ms);
static void ngx_gdrive_status_copy(u_char *dst, size_t size, const char *src);


/* what init gave this worker; NULL: not counted */
static ngx_gdrive_shm_ctx_t        *ngx_gdrive_metrics_zone;
static ngx_gdrive_metrics_t        *ngx_gdrive_metrics_counters;
static ngx_gdrive_worker_status_t  *ngx_gdrive_metrics_status;
static ngx_gdrive_worker_detail_t  *ngx_gdrive_metrics_detail;


#define ngx_gdrive_metric_add(a, n)                                           \
    (void) ngx_atomic_fetch_add(&(a), (ngx_atomic_int_t) (n))


ngx_int_t
ngx_gdrive_metrics_init_process(ngx_cycle_t *cycle,
    ngx_http_gdrive_main_conf_t *gmcf, ngx_gdrive_worker_status_t *status)
{
    ngx_uint_t                   i;
    ngx_gdrive_shm_ctx_t        *ctx;
    ngx_gdrive_worker_detail_t  *d;

    ctx = ngx_gdrive_shm_ctx(gmcf);

    ngx_gdrive_metrics_zone = ctx;
    ngx_gdrive_metrics_counters = &ctx->sh->metrics;
    ngx_gdrive_metrics_status = status;

    if (ngx_worker >= NGX_GDRIVE_MAX_WORKERS) {
        return NGX_OK;
    }

    ngx_shmtx_lock(&ctx->shpool->mutex);

    d = ctx->sh->details[ngx_worker];

    if (d == NULL) {
        d = ngx_slab_calloc_locked(ctx->shpool,
                                   sizeof(ngx_gdrive_worker_detail_t));
        ctx->sh->details[ngx_worker] = d;
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    if (d == NULL) {
        ngx_log_error(NGX_LOG_WARN, cycle->log, 0,
                      "gdrive: no room in the zone for the status page's "
                      "job slots of worker %i", ngx_worker);
        return NGX_OK;
    }

    /* jobs of the process this one replaces are gone; its errors stay */
    for (i = 0; i < NGX_GDRIVE_STATUS_JOBS; i++) {
        d->jobs[i].started = 0;
    }

    ngx_gdrive_metrics_detail = d;

    return NGX_OK;
}


void
ngx_gdrive_metric_job_done(const char *outcome, const char *code,
    ngx_msec_t duration)
{
    ngx_uint_t             o, c;
    ngx_gdrive_metrics_t  *m;

    m = ngx_gdrive_metrics_counters;

    if (m == NULL) {
        return;
    }

    o = ngx_gdrive_metric_index(ngx_gdrive_metric_outcomes,
                                NGX_GDRIVE_M_OUTCOMES, outcome);
    c = code ? ngx_gdrive_metric_index(ngx_gdrive_metric_codes,
                                       NGX_GDRIVE_M_CODES, code)
             : 0;

    ngx_gdrive_metric_add(m->jobs[o][c], 1);
    ngx_gdrive_metric_observe(&m->job_duration, duration);
}


void
ngx_gdrive_metric_hold_relearned(void)
{
    if (ngx_gdrive_metrics_counters) {
        ngx_gdrive_metric_add(ngx_gdrive_metrics_counters->holds_relearned,
                              1);
    }
}


void
ngx_gdrive_metric_job_retry(const char *code)
{
    ngx_uint_t             c;
    ngx_gdrive_metrics_t  *m;

    m = ngx_gdrive_metrics_counters;

    if (m == NULL) {
        return;
    }

    c = code ? ngx_gdrive_metric_index(ngx_gdrive_metric_codes,
                                       NGX_GDRIVE_M_CODES, code)
             : 0;

    ngx_gdrive_metric_add(m->retries[c], 1);
}


void
ngx_gdrive_metric_trigger(ngx_uint_t http_status, ngx_uint_t n)
{
    ngx_uint_t             s;
    ngx_gdrive_metrics_t  *m;

    m = ngx_gdrive_metrics_counters;

    if (m == NULL) {
        return;
    }

    s = ngx_gdrive_metric_status(ngx_gdrive_metric_trigger_st,
                                 NGX_GDRIVE_M_TRIGGER_ST, http_status);

    ngx_gdrive_metric_add(m->triggers[s], n);
}


void
ngx_gdrive_metric_google_request(const char *endpoint, long status,
    ngx_msec_t duration)
{
    ngx_uint_t             e, s;
    ngx_gdrive_metrics_t  *m;

    m = ngx_gdrive_metrics_counters;

    if (m == NULL) {
        return;
    }

    e = ngx_gdrive_metric_index(ngx_gdrive_metric_endpoints,
                                NGX_GDRIVE_M_ENDPOINTS, endpoint);
    s = ngx_gdrive_metric_status(ngx_gdrive_metric_http_st,
                                 NGX_GDRIVE_M_HTTP_ST,
                                 status < 0 ? 1 : (ngx_uint_t) status);

    ngx_gdrive_metric_add(m->google[e][s], 1);
    ngx_gdrive_metric_observe(&m->google_duration[e], duration);
}


void
ngx_gdrive_metric_ratelimit_wait(ngx_uint_t global, ngx_msec_t waited)
{
    ngx_gdrive_metrics_t  *m;

    m = ngx_gdrive_metrics_counters;

    if (m == NULL) {
        return;
    }

    global = global ? 1 : 0;

    ngx_gdrive_metric_add(m->ratelimit_waits[global], 1);
    ngx_gdrive_metric_add(m->ratelimit_wait_ms[global], waited);
}


void
ngx_gdrive_metric_cache(const char *cache, const char *event)
{
    ngx_uint_t             c, e;
    ngx_gdrive_metrics_t  *m;

    m = ngx_gdrive_metrics_counters;

    if (m == NULL) {
        return;
    }

    c = ngx_gdrive_metric_index(ngx_gdrive_metric_caches,
                                NGX_GDRIVE_M_CACHES, cache);

    for (e = 0; e < NGX_GDRIVE_M_CACHE_EVENTS; e++) {
        if (ngx_strcmp(event, ngx_gdrive_metric_cache_events[e]) == 0) {
            ngx_gdrive_metric_add(m->cache[c][e], 1);
            return;
        }
    }
}


void
ngx_gdrive_metric_s3_request(const char *op, long status)
{
    ngx_uint_t             o, s;
    ngx_gdrive_metrics_t  *m;

    m = ngx_gdrive_metrics_counters;

    if (m == NULL) {
        return;
    }

    o = ngx_gdrive_metric_index(ngx_gdrive_metric_s3_ops,
                                NGX_GDRIVE_M_S3_OPS, op);
    s = ngx_gdrive_metric_status(ngx_gdrive_metric_http_st,
                                 NGX_GDRIVE_M_HTTP_ST,
                                 status < 0 ? 1 : (ngx_uint_t) status);

    ngx_gdrive_metric_add(m->s3[o][s], 1);
}


void
ngx_gdrive_metric_s3_bytes(off_t bytes)
{
    if (ngx_gdrive_metrics_counters && bytes > 0) {
        ngx_gdrive_metric_add(ngx_gdrive_metrics_counters->s3_bytes, bytes);
    }
}


void
ngx_gdrive_metric_dlq(const char *event, ngx_uint_t n)
{
    ngx_gdrive_metrics_t  *m;

    m = ngx_gdrive_metrics_counters;

    if (m == NULL) {
        return;
    }

    /* "produced", "replayed", "dropped" */
    ngx_gdrive_metric_add(m->dlq[ngx_strcmp(event, "replayed") == 0 ? 1
                                 : ngx_strcmp(event, "dropped") == 0 ? 2
                                 : 0], n);
}


void
ngx_gdrive_metric_token_refresh(const char *result)
{
    ngx_uint_t             i;
    ngx_gdrive_metrics_t  *m;

    m = ngx_gdrive_metrics_counters;

    if (m == NULL) {
        return;
    }

    i = ngx_gdrive_metric_index(ngx_gdrive_metric_refresh,
                                NGX_GDRIVE_M_REFRESH, result);

    ngx_gdrive_metric_add(m->token_refresh[i], 1);
}


/* the index of name in a list whose last entry is "other" */

static ngx_uint_t
ngx_gdrive_metric_index(const char *const *list, ngx_uint_t n, const char *name)
{
    ngx_uint_t  i;

    if (name == NULL) {
        return n - 1;
    }

    for (i = 0; i < n - 1; i++) {
        if (ngx_strcmp(name, list[i]) == 0) {
            return i;
        }
    }

    return n - 1;
}


static ngx_uint_t
ngx_gdrive_metric_status(const ngx_uint_t *list, ngx_uint_t n,
    ngx_uint_t status)
{
    ngx_uint_t  i;

    for (i = 0; i < n - 1; i++) {
        if (list[i] == status) {
            return i;
        }
    }

    return n - 1;
}


static void
ngx_gdrive_metric_observe(ngx_gdrive_histogram_t *h, ngx_msec_t ms)
{
    ngx_uint_t  i;

    for (i = 0; i < NGX_GDRIVE_M_BUCKETS - 1; i++) {
        if (ms <= ngx_gdrive_metric_bounds[i]) {
            break;
        }
    }

    ngx_gdrive_metric_add(h->bucket[i], 1);
    ngx_gdrive_metric_add(h->sum_ms, ms);
    ngx_gdrive_metric_add(h->count, 1);
}


/* a slot of a worker that is gone is not shown */

ngx_uint_t
ngx_gdrive_status_live(ngx_gdrive_worker_status_t *st)
{
    return st->pid != 0 && kill((ngx_pid_t) st->pid, 0) == 0;
}


/*
 * The health checklist's rates are over a window: the counters now
 * against a snapshot between one and two gdrive_health_window old (kept
 * in the zone, renewed under its mutex by whichever worker sees it
 * expire).
 */

void
ngx_gdrive_metrics_window(ngx_msec_t window, ngx_gdrive_snapshot_t *base,
    ngx_gdrive_snapshot_t *cur)
{
    ngx_uint_t              i, j;
    ngx_gdrive_metrics_t   *m;
    ngx_gdrive_shm_ctx_t   *ctx;
    ngx_gdrive_health_sh_t *hs;

    ngx_memzero(cur, sizeof(ngx_gdrive_snapshot_t));

    ctx = ngx_gdrive_metrics_zone;

    if (ctx == NULL) {
        *base = *cur;
        return;
    }

    m = &ctx->sh->metrics;
    hs = &ctx->sh->health;

    cur->time = ngx_gdrive_epoch_ms();

    for (i = 0; i < NGX_GDRIVE_M_OUTCOMES; i++) {
        for (j = 0; j < NGX_GDRIVE_M_CODES; j++) {
            cur->done += m->jobs[i][j];

            if (ngx_strcmp(ngx_gdrive_metric_outcomes[i], "dlq") == 0) {
                cur->failed += m->jobs[i][j];
            }
        }
    }

    /* Drive's requests: every endpoint but OAuth's and the control plane's */

    for (i = 0; i < NGX_GDRIVE_M_ENDPOINTS; i++) {
        if (ngx_strncmp(ngx_gdrive_metric_endpoints[i], "files.", 6) != 0
            && ngx_strncmp(ngx_gdrive_metric_endpoints[i], "changes.", 8)
               != 0)
        {
            continue;
        }

        for (j = 0; j < NGX_GDRIVE_M_HTTP_ST; j++) {
            cur->google += m->google[i][j];
        }
    }

    for (i = 0; i < NGX_GDRIVE_M_BUCKETS; i++) {
        cur->bucket[i] = m->job_duration.bucket[i];
    }

    ngx_shmtx_lock(&ctx->shpool->mutex);

    if (hs->snap[1].time == 0) {
        hs->snap[1] = *cur;

    } else if (cur->time - hs->snap[1].time >= window) {
        hs->snap[0] = hs->snap[1];
        hs->snap[1] = *cur;
    }

    *base = hs->snap[0].time ? hs->snap[0] : hs->snap[1];

    ngx_shmtx_unlock(&ctx->shpool->mutex);
}


/* the upper bound of the bucket that holds the 95th percentile, ms */

ngx_msec_t
ngx_gdrive_metrics_p95(ngx_atomic_uint_t *bucket)
{
    ngx_uint_t         i;
    ngx_atomic_uint_t  total, seen;

    total = 0;

    for (i = 0; i < NGX_GDRIVE_M_BUCKETS; i++) {
        total += bucket[i];
    }

    if (total == 0) {
        return 0;
    }

    seen = 0;

    for (i = 0; i < NGX_GDRIVE_M_BUCKETS - 1; i++) {
        seen += bucket[i];

        if (seen * 100 >= total * 95) {
            return ngx_gdrive_metric_bounds[i];
        }
    }

    /* beyond the last bound: at least that */
    return ngx_gdrive_metric_bounds[NGX_GDRIVE_M_BUCKETS - 2] + 1;
}


/*
 * The status page's job slots.  A slot is taken by setting "started"
 * last (after a barrier), and freed by clearing it: a reader sees a slot
 * in use only once its fields are written.
 */

ngx_int_t
ngx_gdrive_status_job_begin(u_char *id, size_t len, int32_t partition,
    int64_t offset)
{
    ngx_uint_t              i;
    ngx_gdrive_job_slot_t  *s;

    if (ngx_gdrive_metrics_detail == NULL) {
        return -1;
    }

    for (i = 0; i < NGX_GDRIVE_STATUS_JOBS; i++) {
        s = &ngx_gdrive_metrics_detail->jobs[i];

        if (s->started) {
            continue;
        }

        len = ngx_min(len, NGX_GDRIVE_ID_MAX_LEN);
        ngx_memcpy(s->id, id, len);
        s->id_len = (u_char) len;
        s->partition = partition;
        s->offset = offset;
        ngx_gdrive_status_copy((u_char *) s->stage, sizeof(s->stage),
                               "received");

        ngx_memory_barrier();
        s->started = ngx_gdrive_epoch_ms();

        return i;
    }

    /* more jobs than slots: the page shows the first ones */
    return -1;
}


void
ngx_gdrive_status_job_stage(ngx_int_t slot, const char *stage)
{
    ngx_gdrive_job_slot_t  *s;

    if (slot < 0 || slot >= NGX_GDRIVE_STATUS_JOBS
        || ngx_gdrive_metrics_detail == NULL)
    {
        return;
    }

    s = &ngx_gdrive_metrics_detail->jobs[slot];

    ngx_gdrive_status_copy((u_char *) s->stage, sizeof(s->stage), stage);
}


void
ngx_gdrive_status_job_id(ngx_int_t slot, u_char *id, size_t len)
{
    ngx_gdrive_job_slot_t  *s;

    if (slot < 0 || slot >= NGX_GDRIVE_STATUS_JOBS
        || ngx_gdrive_metrics_detail == NULL)
    {
        return;
    }

    s = &ngx_gdrive_metrics_detail->jobs[slot];

    len = ngx_min(len, NGX_GDRIVE_ID_MAX_LEN);
    s->id_len = 0;
    ngx_memory_barrier();
    ngx_memcpy(s->id, id, len);
    ngx_memory_barrier();
    s->id_len = (u_char) len;
}


void
ngx_gdrive_status_job_end(ngx_int_t slot)
{
    if (slot < 0 || slot >= NGX_GDRIVE_STATUS_JOBS
        || ngx_gdrive_metrics_detail == NULL)
    {
        return;
    }

    ngx_gdrive_metrics_detail->jobs[slot].started = 0;
}


void
ngx_gdrive_status_error(u_char *id, size_t len, const char *code,
    const char *detail)
{
    ngx_atomic_uint_t           n;
    ngx_gdrive_error_slot_t    *e;
    ngx_gdrive_worker_detail_t  *d;

    d = ngx_gdrive_metrics_detail;

    if (d == NULL) {
        return;
    }

    n = d->nerrors;
    e = &d->errors[n % NGX_GDRIVE_STATUS_ERRORS];

    /* a reader skips an entry whose time is 0: being rewritten */
    e->time = 0;
    ngx_memory_barrier();

    len = (id == NULL) ? 0 : ngx_min(len, NGX_GDRIVE_ID_MAX_LEN);

    if (len) {
        ngx_memcpy(e->id, id, len);
    }

    e->id_len = (u_char) len;
    ngx_gdrive_status_copy((u_char *) e->code, sizeof(e->code),
                           code ? code : "unknown");
    ngx_gdrive_status_copy(e->detail, sizeof(e->detail),
                           detail ? detail : "");

    ngx_memory_barrier();
    e->time = ngx_gdrive_epoch_ms();
    d->nerrors = n + 1;
}


static void
ngx_gdrive_status_copy(u_char *dst, size_t size, const char *src)
{
    ngx_cpystrn(dst, (u_char *) src, size);
}


/*
 * A process's resident set from /proc/<pid>/statm: a small file of the
 * kernel's, read at once, which does not wait on a disk.  0 if unknown.
 */

size_t
ngx_gdrive_process_rss(ngx_pid_t pid)
{
    u_char     *p, *last;
    u_char      name[64], buf[128];
    ssize_t     n;
    ngx_fd_t    fd;
    ngx_uint_t  pages;

    *ngx_snprintf(name, sizeof(name) - 1, "/proc/%P/statm", pid) = '\0';

    fd = ngx_open_file(name, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
    if (fd == NGX_INVALID_FILE) {
        return 0;
    }

    n = read(fd, buf, sizeof(buf) - 1);

    (void) ngx_close_file(fd);

    if (n <= 0) {
        return 0;
    }

    /* "size resident shared ...", in pages */

    last = buf + n;

    for (p = buf; p < last && *p != ' '; p++) { /* void */ }

    p++;
    pages = 0;

    while (p < last && *p >= '0' && *p <= '9') {
        pages = pages * 10 + (*p++ - '0');
    }

    return pages * ngx_pagesize;
}
