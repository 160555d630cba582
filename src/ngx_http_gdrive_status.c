
/*
 * nginx-gdrive-worker: operator locations.
 *
 * gdrive_health (liveness, readiness and the guide's monitoring
 * checklist), gdrive_metrics (Prometheus text), gdrive_status (HTML for
 * people, JSON for tools, and the diagnostics bundle), and the JSON
 * answers that every location of the module shares.  Everything here
 * reads the shared zone; only gdrive_health may start outbound requests,
 * through ngx_gdrive_probe.c.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <jansson.h>
#include <openssl/crypto.h>

#include "ngx_gdrive.h"
#include "ngx_http_gdrive.h"


typedef struct {
    const char                 *name;
    const char                 *help;
    size_t                      offset;   /* an ngx_atomic_t of the slot */
} ngx_http_gdrive_gauge_t;


static ngx_uint_t ngx_http_gdrive_worker_live(ngx_gdrive_worker_status_t *st);
static ngx_int_t ngx_http_gdrive_health_send(ngx_http_request_t *r);
static void ngx_http_gdrive_health_wait(ngx_event_t *ev);
static void ngx_http_gdrive_health_cleanup(void *data);
static json_t *ngx_http_gdrive_check(json_t *checks, const char *name,
    ngx_uint_t ok, ngx_uint_t *degraded);
static json_t *ngx_http_gdrive_probe_json(ngx_gdrive_probe_t *p);
static size_t ngx_http_gdrive_memory_limit(ngx_http_gdrive_main_conf_t *gmcf,
    const char **from);
static ngx_msec_t ngx_http_gdrive_p95(ngx_atomic_uint_t *bucket);
static void ngx_http_gdrive_window(ngx_http_gdrive_main_conf_t *gmcf,
    ngx_gdrive_snapshot_t *base, ngx_gdrive_snapshot_t *now);

static void ngx_http_gdrive_metrics_histogram(ngx_http_gdrive_out_t *o,
    const char *name, const char *labels, ngx_gdrive_histogram_t *h);

static ngx_int_t ngx_http_gdrive_status_json(ngx_http_request_t *r);
static json_t *ngx_http_gdrive_rate_json(ngx_pool_t *pool);
static json_t *ngx_http_gdrive_worker_json(ngx_gdrive_worker_status_t *st,
    ngx_uint_t i);
static void ngx_http_gdrive_rate_html(ngx_http_gdrive_out_t *o,
    ngx_pool_t *pool);
static ngx_int_t ngx_http_gdrive_status_html(ngx_http_request_t *r);
static ngx_int_t ngx_http_gdrive_diagnostics(ngx_http_request_t *r);
static json_t *ngx_http_gdrive_errors_json(ngx_gdrive_sh_t *sh);
static json_t *ngx_http_gdrive_redact_url(ngx_str_t *v);
static ngx_uint_t ngx_http_gdrive_secret_name(ngx_str_t *name);
static ngx_uint_t ngx_http_gdrive_wants_json(ngx_http_request_t *r);


/* a slot of a worker that is gone is not shown */

static ngx_uint_t
ngx_http_gdrive_worker_live(ngx_gdrive_worker_status_t *st)
{
    return st->pid != 0 && kill((ngx_pid_t) st->pid, 0) == 0;
}


/*
 * gdrive_health.  "?live" is liveness: the worker answers, so its loop
 * runs; always 200.  Without it, readiness: 503 "unhealthy" when this
 * worker's Kafka producer has no broker (triggers cannot be accepted);
 * 200 "degraded" when a probe of Google or S3 fails or a figure of the
 * guide's monitoring checklist is over its threshold; else 200
 * "healthy".  Probe answers older than gdrive_health_interval are renewed
 * first: the request waits on a timer, at most gdrive_health_timeout.
 */

typedef struct {
    ngx_event_t          wait;
    ngx_msec_t           deadline;
} ngx_http_gdrive_health_ctx_t;


ngx_int_t
ngx_http_gdrive_health_handler(ngx_http_request_t *r)
{
    ngx_pool_cleanup_t            *cln;
    ngx_http_gdrive_main_conf_t   *gmcf;
    ngx_http_gdrive_health_ctx_t  *ctx;

    static u_char  live[] = "{\"status\":\"healthy\","
                            "\"checks\":{\"loop\":{\"ok\":true}}}";

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return ngx_http_gdrive_send_error(r, NGX_HTTP_NOT_ALLOWED,
                                          "method_not_allowed",
                                          "use GET or HEAD");
    }

    if (r->args.len >= 4 && ngx_strncmp(r->args.data, "live", 4) == 0
        && (r->args.len == 4 || r->args.data[4] == '&'
            || r->args.data[4] == '='))
    {
        return ngx_http_gdrive_send_json(r, NGX_HTTP_OK, live,
                                         sizeof(live) - 1);
    }

    gmcf = ngx_http_get_module_main_conf(r, ngx_http_gdrive_worker_module);

    if (!gmcf->consumer || ngx_gdrive_probe_fresh(gmcf) == NGX_OK) {
        return ngx_http_gdrive_health_send(r);
    }

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_gdrive_health_ctx_t));
    cln = ngx_pool_cleanup_add(r->pool, 0);

    if (ctx == NULL || cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->wait.handler = ngx_http_gdrive_health_wait;
    ctx->wait.data = r;
    ctx->wait.log = r->connection->log;
    ctx->deadline = ngx_current_msec + gmcf->health_timeout + 500;

    cln->handler = ngx_http_gdrive_health_cleanup;
    cln->data = ctx;

    ngx_http_set_ctx(r, ctx, ngx_http_gdrive_worker_module);

    ngx_add_timer(&ctx->wait, 20);

    r->main->count++;
    r->read_event_handler = ngx_http_test_reading;
    r->write_event_handler = ngx_http_request_empty_handler;

    return NGX_DONE;
}


static void
ngx_http_gdrive_health_wait(ngx_event_t *ev)
{
    ngx_http_request_t *r = ev->data;

    ngx_connection_t              *c;
    ngx_http_gdrive_main_conf_t   *gmcf;
    ngx_http_gdrive_health_ctx_t  *ctx;

    c = r->connection;
    gmcf = ngx_http_get_module_main_conf(r, ngx_http_gdrive_worker_module);
    ctx = ngx_http_get_module_ctx(r, ngx_http_gdrive_worker_module);

    if (ngx_gdrive_probe_fresh(gmcf) == NGX_AGAIN
        && (ngx_msec_int_t) (ctx->deadline - ngx_current_msec) > 0)
    {
        ngx_add_timer(ev, 50);
        return;
    }

    /* the answer is the module's own, not a page for the error filter */
    ngx_http_set_ctx(r, NULL, ngx_http_gdrive_worker_module);

    ngx_http_finalize_request(r, ngx_http_gdrive_health_send(r));
    ngx_http_run_posted_requests(c);
}


static void
ngx_http_gdrive_health_cleanup(void *data)
{
    ngx_http_gdrive_health_ctx_t *ctx = data;

    if (ctx->wait.timer_set) {
        ngx_del_timer(&ctx->wait);
    }
}


static ngx_int_t
ngx_http_gdrive_health_send(ngx_http_request_t *r)
{
    json_t                       *root, *checks, *c, *w;
    size_t                        rss, limit;
    uint64_t                      now, used, base_used, rate;
    ngx_int_t                     rc;
    ngx_uint_t                    i, j, n, up, known, degraded, unhealthy;
    ngx_uint_t                    ok, ok2, pct;
    ngx_msec_t                    p95, span;
    const char                   *from;
    ngx_gdrive_sh_t              *sh;
    ngx_gdrive_kafka_t           *k;
    ngx_gdrive_snapshot_t         base, cur;
    ngx_gdrive_health_sh_t       *hs;
    ngx_gdrive_worker_status_t   *st;
    ngx_http_gdrive_main_conf_t  *gmcf;

    gmcf = ngx_http_get_module_main_conf(r, ngx_http_gdrive_worker_module);
    sh = ngx_gdrive_shm(gmcf);
    hs = &sh->health;
    now = ngx_gdrive_epoch_ms();

    degraded = 0;
    unhealthy = 0;

    root = json_object();
    checks = json_object();
    json_object_set_new(root, "checks", checks);

    c = ngx_http_gdrive_check(checks, "loop", 1, &degraded);

    /* Kafka: the broker state of this worker's producer */

    k = ngx_gdrive_worker.producer;

    if (gmcf->kafka_brokers.len == 0) {
        c = ngx_http_gdrive_check(checks, "kafka", 1, &degraded);
        json_object_set_new(c, "skipped",
                            json_string("no brokers are configured"));

    } else if (k == NULL) {
        c = ngx_http_gdrive_check(checks, "kafka", 0, &unhealthy);
        json_object_set_new(c, "detail",
                            json_string("this worker has no Kafka producer"));

    } else {
        ok = (ngx_gdrive_kafka_brokers_state(k, &up, &known) == NGX_OK);
        c = ngx_http_gdrive_check(checks, "kafka", ok, &unhealthy);
        json_object_set_new(c, "brokers_up", json_integer(up));
        json_object_set_new(c, "brokers_known", json_integer(known));

        if (!ok) {
            json_object_set_new(c, "detail",
                                json_string(k->fatal
                                            ? "the Kafka client failed"
                                            : "all brokers are down"));
            json_object_set_new(c, "down_for_seconds", json_integer(
                (ngx_current_msec - k->brokers_down_since) / 1000));
        }
    }

    /* Google and S3: the probes' cached answers */

    if (!gmcf->consumer) {
        c = ngx_http_gdrive_check(checks, "google_api", 1, &degraded);
        json_object_set_new(c, "skipped",
                            json_string("gdrive_consumer is off"));
        c = ngx_http_gdrive_check(checks, "s3", 1, &degraded);
        json_object_set_new(c, "skipped",
                            json_string("gdrive_consumer is off"));

    } else if (hs->checked == 0) {
        c = ngx_http_gdrive_check(checks, "google_api", 0, &degraded);
        json_object_set_new(c, "detail", json_string("no probe answered yet"));
        c = ngx_http_gdrive_check(checks, "s3", 0, &degraded);
        json_object_set_new(c, "detail", json_string("no probe answered yet"));

    } else {
        ok = hs->probe[NGX_GDRIVE_PROBE_TOKEN].ok;
        ok2 = hs->probe[NGX_GDRIVE_PROBE_DRIVE].ok;
        c = ngx_http_gdrive_check(checks, "google_api", ok && ok2, &degraded);
        json_object_set_new(c, "token_endpoint", ngx_http_gdrive_probe_json(
                                &hs->probe[NGX_GDRIVE_PROBE_TOKEN]));
        json_object_set_new(c, "drive_api", ngx_http_gdrive_probe_json(
                                &hs->probe[NGX_GDRIVE_PROBE_DRIVE]));
        json_object_set_new(c, "age_seconds",
                            json_integer((now - hs->checked) / 1000));

        c = ngx_http_gdrive_check(checks, "s3",
                                  hs->probe[NGX_GDRIVE_PROBE_S3].ok,
                                  &degraded);
        json_object_set_new(c, "bucket", ngx_http_gdrive_probe_json(
                                &hs->probe[NGX_GDRIVE_PROBE_S3]));
        json_object_set_new(c, "age_seconds",
                            json_integer((now - hs->checked) / 1000));
    }

    /* the monitoring checklist */

    rss = 0;
    n = 0;
    used = 0;

    for (i = 0; i < NGX_GDRIVE_MAX_WORKERS; i++) {
        st = &sh->workers[i];

        if (!ngx_http_gdrive_worker_live(st)) {
            continue;
        }

        n++;
        rss += ngx_gdrive_process_rss((ngx_pid_t) st->pid);

        for (j = 0; j < ngx_min(st->nparts, NGX_GDRIVE_MAX_PARTITIONS); j++) {
            if (st->lag[j] > 0) {
                used += st->lag[j];
            }
        }
    }

    limit = ngx_http_gdrive_memory_limit(gmcf, &from);

    pct = limit ? (ngx_uint_t) ((uint64_t) rss * 10000 / limit) : 0;
    c = ngx_http_gdrive_check(checks, "memory",
                              limit == 0 || pct < gmcf->health_max_memory,
                              &degraded);
    json_object_set_new(c, "workers", json_integer(n));
    json_object_set_new(c, "rss_bytes", json_integer(rss));
    json_object_set_new(c, "limit_bytes", limit ? json_integer(limit)
                                                : json_null());
    json_object_set_new(c, "limit_from", json_string(from));
    json_object_set_new(c, "used_percent", json_real(pct / 100.0));
    json_object_set_new(c, "threshold_percent",
                        json_real(gmcf->health_max_memory / 100.0));

    c = ngx_http_gdrive_check(checks, "consumer_lag",
                              used < gmcf->health_max_lag, &degraded);
    json_object_set_new(c, "value", json_integer(used));
    json_object_set_new(c, "threshold", json_integer(gmcf->health_max_lag));

    ngx_http_gdrive_window(gmcf, &base, &cur);
    span = (ngx_msec_t) (cur.time - base.time);

    /* the Drive requests of the window against the global rate limit */

    rate = span ? (cur.google - base.google) * 1000 * 1000 / span : 0;
    pct = gmcf->global_rate ? (ngx_uint_t) (rate * 10000 / gmcf->global_rate)
                            : 0;
    c = ngx_http_gdrive_check(checks, "rate_limit",
                              pct < gmcf->health_max_rate_use, &degraded);
    json_object_set_new(c, "requests_per_second", json_real(rate / 1000.0));
    json_object_set_new(c, "limit_per_second",
                        json_real(gmcf->global_rate / 1000.0));
    json_object_set_new(c, "used_percent", json_real(pct / 100.0));
    json_object_set_new(c, "threshold_percent",
                        json_real(gmcf->health_max_rate_use / 100.0));
    json_object_set_new(c, "window_seconds", json_integer(span / 1000));

    used = sh->metrics.dlq[0];
    base_used = sh->metrics.dlq[1];
    used = (used > base_used) ? used - base_used : 0;

    c = ngx_http_gdrive_check(checks, "dlq", used < gmcf->health_max_dlq,
                              &degraded);
    json_object_set_new(c, "value", json_integer(used));
    json_object_set_new(c, "threshold", json_integer(gmcf->health_max_dlq));

    n = cur.done - base.done;
    pct = n ? (ngx_uint_t) ((uint64_t) (cur.failed - base.failed) * 10000 / n)
            : 0;
    c = ngx_http_gdrive_check(checks, "error_rate",
                              n == 0 || pct < gmcf->health_max_error_rate
                              || gmcf->health_max_error_rate == 0,
                              &degraded);
    json_object_set_new(c, "messages", json_integer(n));
    json_object_set_new(c, "value_percent", json_real(pct / 100.0));
    json_object_set_new(c, "threshold_percent",
                        json_real(gmcf->health_max_error_rate / 100.0));
    json_object_set_new(c, "window_seconds", json_integer(span / 1000));

    for (i = 0; i < NGX_GDRIVE_M_BUCKETS; i++) {
        cur.bucket[i] -= base.bucket[i];
    }

    p95 = ngx_http_gdrive_p95(cur.bucket);
    c = ngx_http_gdrive_check(checks, "p95_processing",
                              p95 == 0 || p95 < gmcf->health_max_p95,
                              &degraded);
    json_object_set_new(c, "value_seconds", p95 ? json_real(p95 / 1000.0)
                                                : json_null());
    json_object_set_new(c, "threshold_seconds",
                        json_real(gmcf->health_max_p95 / 1000.0));
    json_object_set_new(c, "window_seconds", json_integer(span / 1000));

    json_object_set_new(root, "status",
                        json_string(unhealthy ? "unhealthy"
                                    : degraded ? "degraded" : "healthy"));

    w = json_object();
    json_object_set_new(w, "pid", json_integer(ngx_pid));
    json_object_set_new(w, "version", json_string(NGX_GDRIVE_VERSION));
    json_object_set_new(root, "worker", w);

    rc = ngx_http_gdrive_send_jansson(r, unhealthy
                                         ? NGX_HTTP_SERVICE_UNAVAILABLE
                                         : NGX_HTTP_OK,
                                      root);
    return rc;
}


static json_t *
ngx_http_gdrive_check(json_t *checks, const char *name, ngx_uint_t ok,
    ngx_uint_t *bad)
{
    json_t  *c;

    c = json_object();
    json_object_set_new(c, "ok", json_boolean(ok));
    json_object_set_new(checks, name, c);

    if (!ok) {
        *bad = 1;
    }

    return c;
}


static json_t *
ngx_http_gdrive_probe_json(ngx_gdrive_probe_t *p)
{
    json_t  *o;

    o = json_object();
    json_object_set_new(o, "ok", json_boolean(p->ok));
    json_object_set_new(o, "status", json_integer(p->status));
    json_object_set_new(o, "seconds", json_real(p->ms / 1000.0));
    json_object_set_new(o, "detail",
                        ngx_http_gdrive_str_json(p->detail,
                                                 ngx_strlen(p->detail)));

    return o;
}


/*
 * The memory limit: gdrive_health_memory_limit, else the cgroup's (v2,
 * then v1).  Small kernel files, read at once.  0: none known.
 */

static size_t
ngx_http_gdrive_memory_limit(ngx_http_gdrive_main_conf_t *gmcf,
    const char **from)
{
    u_char      buf[64];
    ssize_t     n;
    ngx_fd_t    fd;
    ngx_int_t   v;
    ngx_uint_t  i;

    static char  *files[] = {
        "/sys/fs/cgroup/memory.max",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes"
    };

    if (gmcf->health_memory_limit) {
        *from = "gdrive_health_memory_limit";
        return gmcf->health_memory_limit;
    }

    for (i = 0; i < 2; i++) {
        fd = ngx_open_file(files[i], NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
        if (fd == NGX_INVALID_FILE) {
            continue;
        }

        n = read(fd, buf, sizeof(buf));
        (void) ngx_close_file(fd);

        while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' ')) {
            n--;
        }

        v = (n > 0 && n < 19) ? ngx_atoi(buf, n) : NGX_ERROR;

        /* "max", or v1's "no limit" of nearly 2^63 */
        if (v > 0) {
            *from = files[i];
            return (size_t) v;
        }
    }

    *from = "none";

    return 0;
}


/* the upper bound of the bucket that holds the 95th percentile, ms */

static ngx_msec_t
ngx_http_gdrive_p95(ngx_atomic_uint_t *bucket)
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
 * The checklist's rates are over a window: the counters now against a
 * snapshot between one and two gdrive_health_window old (kept in the
 * zone, renewed under its mutex by whichever worker sees it expire).
 */

static void
ngx_http_gdrive_window(ngx_http_gdrive_main_conf_t *gmcf,
    ngx_gdrive_snapshot_t *base, ngx_gdrive_snapshot_t *cur)
{
    ngx_uint_t              i, j;
    ngx_gdrive_metrics_t   *m;
    ngx_gdrive_shm_ctx_t   *ctx;
    ngx_gdrive_health_sh_t *hs;

    ctx = ngx_gdrive_shm_ctx(gmcf);
    m = &ctx->sh->metrics;
    hs = &ctx->sh->health;

    ngx_memzero(cur, sizeof(ngx_gdrive_snapshot_t));

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

    } else if (cur->time - hs->snap[1].time >= gmcf->health_window) {
        hs->snap[0] = hs->snap[1];
        hs->snap[1] = *cur;
    }

    *base = hs->snap[0].time ? hs->snap[0] : hs->snap[1];

    ngx_shmtx_unlock(&ctx->shpool->mutex);
}


/*
 * gdrive_metrics: Prometheus text exposition 0.0.4.  Counters are the
 * instance's (one copy in the zone for all workers); gauges of a worker
 * carry its number as "worker".
 */

ngx_int_t
ngx_http_gdrive_metrics_handler(ngx_http_request_t *r)
{
    size_t                        rss;
    ngx_uint_t                    i, j, s, n;
    ngx_atomic_uint_t             v, parts;
    ngx_gdrive_sh_t              *sh;
    ngx_gdrive_metrics_t         *m;
    ngx_http_gdrive_out_t         o;
    ngx_gdrive_health_sh_t       *hs;
    ngx_gdrive_worker_status_t   *st;
    ngx_http_gdrive_main_conf_t  *gmcf;

    u_char                        labels[128];

    ngx_http_gdrive_gauge_t      *g;

    static const char  *scopes[2] = { "integration", "global" };
    static const char  *probes[NGX_GDRIVE_PROBES] = {
        "token_endpoint", "drive_api", "s3_bucket"
    };

    /* gauges of each worker's slot */
    static ngx_http_gdrive_gauge_t  gauges[] = {
        { "gdrive_jobs_in_flight",
          "Messages a worker is processing (running, or waiting on a "
          "backoff or the rate limiter).",
          offsetof(ngx_gdrive_worker_status_t, inflight) },
        { "gdrive_jobs_queued",
          "Messages a worker has taken and will start when a running job "
          "ends.",
          offsetof(ngx_gdrive_worker_status_t, queued) },
        { "gdrive_jobs_taken_bytes",
          "Bytes of the messages a worker has taken (running and queued), "
          "held under gdrive_max_queued_bytes.",
          offsetof(ngx_gdrive_worker_status_t, taken_bytes) },
        { "gdrive_consumer_paused",
          "Whether a worker's consumer is paused by backpressure (1) or "
          "fetching (0).",
          offsetof(ngx_gdrive_worker_status_t, paused) },
        { NULL, NULL, 0 }
    };

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return ngx_http_gdrive_send_error(r, NGX_HTTP_NOT_ALLOWED,
                                          "method_not_allowed",
                                          "use GET or HEAD");
    }

    gmcf = ngx_http_get_module_main_conf(r, ngx_http_gdrive_worker_module);
    sh = ngx_gdrive_shm(gmcf);
    m = &sh->metrics;
    hs = &sh->health;

    ngx_memzero(&o, sizeof(ngx_http_gdrive_out_t));
    o.pool = r->pool;

    ngx_http_gdrive_out_printf(&o,
        "# HELP gdrive_build_info The module's version and nginx's.\n"
        "# TYPE gdrive_build_info gauge\n"
        "gdrive_build_info{version=\"%s\",nginx=\"%s\"} 1\n",
        NGX_GDRIVE_VERSION, NGINX_VERSION);

    ngx_http_gdrive_out_printf(&o,
        "# HELP gdrive_triggers_received_total Triggers received over HTTP "
        "by the status of the answer: 202 counts each accepted trigger, "
        "a refusal counts its request once.\n"
        "# TYPE gdrive_triggers_received_total counter\n");

    for (i = 0; i < NGX_GDRIVE_M_TRIGGER_ST; i++) {
        s = ngx_gdrive_metric_trigger_st[i];

        if (s) {
            ngx_http_gdrive_out_printf(&o,
                "gdrive_triggers_received_total{status=\"%ui\"} %uA\n",
                s, m->triggers[i]);

        } else {
            ngx_http_gdrive_out_printf(&o,
                "gdrive_triggers_received_total{status=\"other\"} %uA\n",
                m->triggers[i]);
        }
    }

    ngx_http_gdrive_out_printf(&o,
        "# HELP gdrive_messages_processed_total Kafka messages that ended, "
        "by outcome and error code.\n"
        "# TYPE gdrive_messages_processed_total counter\n");

    for (i = 0; i < NGX_GDRIVE_M_OUTCOMES; i++) {
        for (j = 0; j < NGX_GDRIVE_M_CODES; j++) {
            v = m->jobs[i][j];

            if (v == 0 && j != 0) {
                continue;
            }

            ngx_http_gdrive_out_printf(&o,
                "gdrive_messages_processed_total"
                "{outcome=\"%s\",code=\"%s\"} %uA\n",
                ngx_gdrive_metric_outcomes[i], ngx_gdrive_metric_codes[j], v);
        }
    }

    ngx_http_gdrive_out_printf(&o,
        "# HELP gdrive_message_retries_total Transient failures retried "
        "with backoff, by error code.\n"
        "# TYPE gdrive_message_retries_total counter\n");

    for (j = 0; j < NGX_GDRIVE_M_CODES; j++) {
        ngx_http_gdrive_out_printf(&o,
            "gdrive_message_retries_total{code=\"%s\"} %uA\n",
            ngx_gdrive_metric_codes[j], m->retries[j]);
    }

    ngx_http_gdrive_out_printf(&o,
        "# HELP gdrive_processing_duration_seconds Time from a message's "
        "arrival to its end (result or DLQ record acknowledged).\n"
        "# TYPE gdrive_processing_duration_seconds histogram\n");
    ngx_http_gdrive_metrics_histogram(&o,
                                      "gdrive_processing_duration_seconds",
                                      "", &m->job_duration);

    ngx_http_gdrive_out_printf(&o,
        "# HELP gdrive_consumer_lag Messages of a partition not yet "
        "processed (high watermark minus stored offset).\n"
        "# TYPE gdrive_consumer_lag gauge\n");

    for (i = 0; i < NGX_GDRIVE_MAX_WORKERS; i++) {
        st = &sh->workers[i];

        if (!ngx_http_gdrive_worker_live(st)) {
            continue;
        }

        parts = ngx_min(st->nparts, NGX_GDRIVE_MAX_PARTITIONS);

        for (j = 0; j < parts; j++) {
            if (st->lag[j] < 0) {
                continue;
            }

            ngx_http_gdrive_out_printf(&o,
                "gdrive_consumer_lag{partition=\"%D\",worker=\"%ui\"} %L\n",
                st->partitions[j], i, st->lag[j]);
        }
    }

    for (g = gauges; g->name; g++) {
        ngx_http_gdrive_out_printf(&o, "# HELP %s %s\n# TYPE %s gauge\n",
                                   g->name, g->help, g->name);

        for (i = 0; i < NGX_GDRIVE_MAX_WORKERS; i++) {
            st = &sh->workers[i];

            if (ngx_http_gdrive_worker_live(st)) {
                ngx_http_gdrive_out_printf(&o, "%s{worker=\"%ui\"} %uA\n",
                    g->name, i,
                    *(ngx_atomic_t *) ((u_char *) st + g->offset));
            }
        }
    }

    ngx_http_gdrive_out_printf(&o,
        "# HELP gdrive_worker_resident_memory_bytes Resident memory of a "
        "worker process.\n"
        "# TYPE gdrive_worker_resident_memory_bytes gauge\n");

    for (i = 0; i < NGX_GDRIVE_MAX_WORKERS; i++) {
        st = &sh->workers[i];

        if (!ngx_http_gdrive_worker_live(st)) {
            continue;
        }

        rss = ngx_gdrive_process_rss((ngx_pid_t) st->pid);

        if (rss) {
            ngx_http_gdrive_out_printf(&o,
                "gdrive_worker_resident_memory_bytes{worker=\"%ui\"} %uz\n",
                i, rss);
        }
    }

    ngx_http_gdrive_out_printf(&o,
        "# HELP gdrive_google_requests_total Requests to Google and the "
        "control plane by endpoint and HTTP status (0: not answered).\n"
        "# TYPE gdrive_google_requests_total counter\n");

    for (i = 0; i < NGX_GDRIVE_M_ENDPOINTS; i++) {
        for (j = 0; j < NGX_GDRIVE_M_HTTP_ST; j++) {
            v = m->google[i][j];

            if (v == 0) {
                continue;
            }

            if (j == NGX_GDRIVE_M_HTTP_ST - 1) {
                ngx_http_gdrive_out_printf(&o,
                    "gdrive_google_requests_total"
                    "{endpoint=\"%s\",status=\"other\"} %uA\n",
                    ngx_gdrive_metric_endpoints[i], v);

            } else {
                ngx_http_gdrive_out_printf(&o,
                    "gdrive_google_requests_total"
                    "{endpoint=\"%s\",status=\"%ui\"} %uA\n",
                    ngx_gdrive_metric_endpoints[i],
                    ngx_gdrive_metric_http_st[j], v);
            }
        }
    }

    ngx_http_gdrive_out_printf(&o,
        "# HELP gdrive_google_request_duration_seconds Duration of requests "
        "to Google and the control plane, by endpoint.\n"
        "# TYPE gdrive_google_request_duration_seconds histogram\n");

    for (i = 0; i < NGX_GDRIVE_M_ENDPOINTS; i++) {
        if (m->google_duration[i].count == 0) {
            continue;
        }

        *ngx_snprintf(labels, sizeof(labels) - 1, "endpoint=\"%s\",",
                      ngx_gdrive_metric_endpoints[i]) = '\0';
        ngx_http_gdrive_metrics_histogram(&o,
            "gdrive_google_request_duration_seconds", (char *) labels,
            &m->google_duration[i]);
    }

    ngx_http_gdrive_out_printf(&o,
        "# HELP gdrive_ratelimit_waits_total Drive requests that waited for "
        "a rate limit token, by the limit (integration or global).\n"
        "# TYPE gdrive_ratelimit_waits_total counter\n");

    for (i = 0; i < 2; i++) {
        ngx_http_gdrive_out_printf(&o,
            "gdrive_ratelimit_waits_total{scope=\"%s\"} %uA\n",
            scopes[i], m->ratelimit_waits[i]);
    }

    ngx_http_gdrive_out_printf(&o,
        "# HELP gdrive_ratelimit_wait_seconds_total Time spent waiting for "
        "rate limit tokens.\n"
        "# TYPE gdrive_ratelimit_wait_seconds_total counter\n");

    for (i = 0; i < 2; i++) {
        v = m->ratelimit_wait_ms[i];
        ngx_http_gdrive_out_printf(&o,
            "gdrive_ratelimit_wait_seconds_total{scope=\"%s\"} %uA.%03uA\n",
            scopes[i], v / 1000, v % 1000);
    }

    ngx_http_gdrive_out_printf(&o,
        "# HELP gdrive_ratelimit_evictions_total Rate limit buckets dropped "
        "from the shared zone, by cause: expired (idle and empty), lru (a "
        "live bucket for a newcomer; held ones never are).\n"
        "# TYPE gdrive_ratelimit_evictions_total counter\n"
        "gdrive_ratelimit_evictions_total{cause=\"expired\"} %uA\n"
        "gdrive_ratelimit_evictions_total{cause=\"lru\"} %uA\n"
        "# HELP gdrive_ratelimit_refused_total Drive requests of an "
        "integration without a bucket told to wait: the zone's buckets "
        "all hold Retry-After waits or quota circuits.\n"
        "# TYPE gdrive_ratelimit_refused_total counter\n"
        "gdrive_ratelimit_refused_total %uA\n",
        sh->rate.expired, sh->rate.evictions, sh->rate.refused);

    ngx_http_gdrive_out_printf(&o,
        "# HELP gdrive_token_refreshes_total OAuth access token refreshes "
        "by result.\n"
        "# TYPE gdrive_token_refreshes_total counter\n");

    for (i = 0; i < NGX_GDRIVE_M_REFRESH; i++) {
        ngx_http_gdrive_out_printf(&o,
            "gdrive_token_refreshes_total{result=\"%s\"} %uA\n",
            ngx_gdrive_metric_refresh[i], m->token_refresh[i]);
    }

    {
        static const char  *names[NGX_GDRIVE_M_CACHE_EVENTS] = {
            "gdrive_cache_hits_total", "gdrive_cache_misses_total",
            "gdrive_cache_evictions_total"
        };
        static const char  *help[NGX_GDRIVE_M_CACHE_EVENTS] = {
            "Lookups answered by a shared cache.",
            "Lookups a shared cache could not answer.",
            "Entries dropped to make room in a shared cache."
        };

        for (j = 0; j < NGX_GDRIVE_M_CACHE_EVENTS; j++) {
            ngx_http_gdrive_out_printf(&o, "# HELP %s %s\n# TYPE %s counter\n",
                                       names[j], help[j], names[j]);

            for (i = 0; i < NGX_GDRIVE_M_CACHES - 1; i++) {
                ngx_http_gdrive_out_printf(&o, "%s{cache=\"%s\"} %uA\n",
                                           names[j],
                                           ngx_gdrive_metric_caches[i],
                                           m->cache[i][j]);
            }
        }
    }

    ngx_http_gdrive_out_printf(&o,
        "# HELP gdrive_s3_requests_total Requests to S3 by operation and "
        "HTTP status (0: not answered).\n"
        "# TYPE gdrive_s3_requests_total counter\n");

    n = 0;

    for (i = 0; i < NGX_GDRIVE_M_S3_OPS; i++) {
        for (j = 0; j < NGX_GDRIVE_M_HTTP_ST; j++) {
            v = m->s3[i][j];

            if (v == 0) {
                continue;
            }

            if (ngx_strcmp(ngx_gdrive_metric_s3_ops[i], "part") == 0
                && ngx_gdrive_metric_http_st[j] >= 200
                && ngx_gdrive_metric_http_st[j] < 300)
            {
                n += v;
            }

            if (j == NGX_GDRIVE_M_HTTP_ST - 1) {
                ngx_http_gdrive_out_printf(&o,
                    "gdrive_s3_requests_total{op=\"%s\",status=\"other\"} "
                    "%uA\n", ngx_gdrive_metric_s3_ops[i], v);

            } else {
                ngx_http_gdrive_out_printf(&o,
                    "gdrive_s3_requests_total{op=\"%s\",status=\"%ui\"} "
                    "%uA\n", ngx_gdrive_metric_s3_ops[i],
                    ngx_gdrive_metric_http_st[j], v);
            }
        }
    }

    ngx_http_gdrive_out_printf(&o,
        "# HELP gdrive_s3_parts_uploaded_total Multipart upload parts that "
        "S3 accepted.\n"
        "# TYPE gdrive_s3_parts_uploaded_total counter\n"
        "gdrive_s3_parts_uploaded_total %ui\n"
        "# HELP gdrive_s3_uploaded_bytes_total Bytes of content written "
        "to S3.\n"
        "# TYPE gdrive_s3_uploaded_bytes_total counter\n"
        "gdrive_s3_uploaded_bytes_total %uA\n",
        n, m->s3_bytes);

    ngx_http_gdrive_out_printf(&o,
        "# HELP gdrive_dlq_records_produced_total Messages sent to the "
        "dead-letter topic (acknowledged).\n"
        "# TYPE gdrive_dlq_records_produced_total counter\n"
        "gdrive_dlq_records_produced_total %uA\n"
        "# HELP gdrive_dlq_records_replayed_total Dead letters replayed "
        "onto the trigger topic (acknowledged).\n"
        "# TYPE gdrive_dlq_records_replayed_total counter\n"
        "gdrive_dlq_records_replayed_total %uA\n"
        "# HELP gdrive_dlq_records_dropped_total Messages whose dead letter "
        "the dead-letter topic refused even cut to 1 KiB (offset stored).\n"
        "# TYPE gdrive_dlq_records_dropped_total counter\n"
        "gdrive_dlq_records_dropped_total %uA\n",
        m->dlq[0], m->dlq[1], m->dlq[2]);

    if (gmcf->consumer && hs->checked) {
        ngx_http_gdrive_out_printf(&o,
            "# HELP gdrive_health_probe_up Whether gdrive_health's last "
            "probe reached the service (any answer below 500).\n"
            "# TYPE gdrive_health_probe_up gauge\n");

        for (i = 0; i < NGX_GDRIVE_PROBES; i++) {
            ngx_http_gdrive_out_printf(&o,
                "gdrive_health_probe_up{probe=\"%s\"} %ui\n",
                probes[i], hs->probe[i].ok ? 1 : 0);
        }
    }

    return ngx_http_gdrive_out_send(r, &o, NGX_HTTP_OK,
                                    "text/plain; version=0.0.4; "
                                    "charset=utf-8");
}


static void
ngx_http_gdrive_metrics_histogram(ngx_http_gdrive_out_t *o, const char *name,
    const char *labels, ngx_gdrive_histogram_t *h)
{
    size_t             len;
    ngx_uint_t         i;
    ngx_atomic_uint_t  total, sum;

    total = 0;

    /* the bounds of ngx_gdrive_metric_bounds as Prometheus writes them */
    static const char  *le[NGX_GDRIVE_M_BUCKETS - 1] = {
        "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "30",
        "60", "120", "300"
    };

    for (i = 0; i < NGX_GDRIVE_M_BUCKETS - 1; i++) {
        total += h->bucket[i];

        ngx_http_gdrive_out_printf(o, "%s_bucket{%sle=\"%s\"} %uA\n",
                                   name, labels, le[i], total);
    }

    /* +Inf and _count from the same reads: they must agree */
    total += h->bucket[NGX_GDRIVE_M_BUCKETS - 1];
    sum = h->sum_ms;

    ngx_http_gdrive_out_printf(o, "%s_bucket{%sle=\"+Inf\"} %uA\n",
                               name, labels, total);

    /* labels end with a comma for the buckets; not here */
    len = ngx_strlen(labels);

    if (len) {
        ngx_http_gdrive_out_printf(o, "%s_sum{%*s} %uA.%03uA\n"
                                      "%s_count{%*s} %uA\n",
                                   name, len - 1, labels, sum / 1000,
                                   sum % 1000, name, len - 1, labels, total);

    } else {
        ngx_http_gdrive_out_printf(o, "%s_sum %uA.%03uA\n%s_count %uA\n",
                                   name, sum / 1000, sum % 1000, name, total);
    }
}


/*
 * gdrive_status: HTML for people, JSON for tools ("Accept:
 * application/json" or "?format=json"), and with "?diagnostics" the
 * bundle to attach to a support request.  Slots are read without a lock:
 * each is written by one worker only, and a page that is a moment out of
 * date is fine.
 */

ngx_int_t
ngx_http_gdrive_status_handler(ngx_http_request_t *r)
{
    ngx_str_t  v;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return ngx_http_gdrive_send_error(r, NGX_HTTP_NOT_ALLOWED,
                                          "method_not_allowed",
                                          "use GET or HEAD");
    }

    if (ngx_http_arg(r, (u_char *) "diagnostics", 11, &v) == NGX_OK
        || (r->args.len >= 11
            && ngx_strncmp(r->args.data, "diagnostics", 11) == 0))
    {
        return ngx_http_gdrive_diagnostics(r);
    }

    if (ngx_http_gdrive_wants_json(r)) {
        return ngx_http_gdrive_status_json(r);
    }

    return ngx_http_gdrive_status_html(r);
}


static ngx_uint_t
ngx_http_gdrive_wants_json(ngx_http_request_t *r)
{
    ngx_str_t         v;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;
    ngx_uint_t        i;

    if (ngx_http_arg(r, (u_char *) "format", 6, &v) == NGX_OK) {
        return v.len == 4 && ngx_strncmp(v.data, "json", 4) == 0;
    }

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */ ; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len == 6
            && ngx_strncasecmp(h[i].key.data, (u_char *) "accept", 6) == 0
            && ngx_strlcasestrn(h[i].value.data,
                                h[i].value.data + h[i].value.len,
                                (u_char *) "application/json", 16 - 1))
        {
            return 1;
        }
    }

    return 0;
}


static ngx_int_t
ngx_http_gdrive_status_json(ngx_http_request_t *r)
{
    json_t                       *root, *workers, *w, *parts, *jobs, *o;
    json_t                       *caches, *limits;
    uint64_t                      now, started;
    ngx_uint_t                    i, j, n;
    ngx_gdrive_sh_t              *sh;
    ngx_gdrive_metrics_t         *m;
    ngx_gdrive_job_slot_t        *js;
    ngx_gdrive_worker_detail_t   *d;
    ngx_gdrive_worker_status_t   *st;
    ngx_http_gdrive_main_conf_t  *gmcf;

    gmcf = ngx_http_get_module_main_conf(r, ngx_http_gdrive_worker_module);
    sh = ngx_gdrive_shm(gmcf);
    m = &sh->metrics;
    now = ngx_gdrive_epoch_ms();

    root = json_object();
    json_object_set_new(root, "version", json_string(NGX_GDRIVE_VERSION));
    json_object_set_new(root, "nginx", json_string(NGINX_VERSION));

    workers = json_array();
    json_object_set_new(root, "workers", workers);

    for (i = 0; i < NGX_GDRIVE_MAX_WORKERS; i++) {
        st = &sh->workers[i];

        if (!ngx_http_gdrive_worker_live(st)) {
            continue;
        }

        w = ngx_http_gdrive_worker_json(st, i);

        parts = json_array();
        n = ngx_min(st->nparts, NGX_GDRIVE_MAX_PARTITIONS);

        for (j = 0; j < n; j++) {
            o = json_object();
            json_object_set_new(o, "partition",
                                json_integer(st->partitions[j]));
            json_object_set_new(o, "stored_offset",
                                json_integer(st->stored[j]));
            json_object_set_new(o, "high_watermark",
                                json_integer(st->high[j]));
            json_object_set_new(o, "lag", json_integer(st->lag[j]));
            json_array_append_new(parts, o);
        }

        json_object_set_new(w, "partitions", parts);

        jobs = json_array();
        d = sh->details[i];

        for (j = 0; d && j < NGX_GDRIVE_STATUS_JOBS; j++) {
            js = &d->jobs[j];
            started = js->started;

            if (started == 0) {
                continue;
            }

            o = json_object();
            json_object_set_new(o, "trigger_id",
                                ngx_http_gdrive_str_json(js->id,
                                    ngx_min(js->id_len,
                                            NGX_GDRIVE_ID_MAX_LEN)));
            json_object_set_new(o, "partition", json_integer(js->partition));
            json_object_set_new(o, "offset", json_integer(js->offset));
            json_object_set_new(o, "stage",
                                ngx_http_gdrive_str_json((u_char *) js->stage,
                                    ngx_strnlen((u_char *) js->stage,
                                                sizeof(js->stage))));
            json_object_set_new(o, "age_seconds", json_real(
                now > started ? (now - started) / 1000.0 : 0));
            json_array_append_new(jobs, o);
        }

        json_object_set_new(w, "jobs", jobs);
        json_array_append_new(workers, w);
    }

    caches = json_object();

    for (i = 0; i < NGX_GDRIVE_M_CACHES - 1; i++) {
        o = json_object();

        for (j = 0; j < NGX_GDRIVE_M_CACHE_EVENTS; j++) {
            json_object_set_new(o, j == 0 ? "hits"
                                   : j == 1 ? "misses" : "evictions",
                                json_integer(m->cache[i][j]));
        }

        json_object_set_new(caches, ngx_gdrive_metric_caches[i], o);
    }

    json_object_set_new(json_object_get(caches, "metadata"), "max_entries",
                        json_integer(gmcf->metadata_cache_entries));
    json_object_set_new(json_object_get(caches, "metadata"), "ttl_seconds",
                        json_integer(gmcf->metadata_cache_ttl));
    json_object_set_new(root, "caches", caches);

    limits = json_object();
    json_object_set_new(limits, "integration_per_second",
                        json_real(gmcf->rate / 1000.0));
    json_object_set_new(limits, "integration_burst",
                        json_integer(gmcf->burst));
    json_object_set_new(limits, "global_per_second",
                        json_real(gmcf->global_rate / 1000.0));
    json_object_set_new(limits, "global_burst",
                        json_integer(gmcf->global_burst));
    json_object_set_new(limits, "integration_waits",
                        json_integer(m->ratelimit_waits[0]));
    json_object_set_new(limits, "global_waits",
                        json_integer(m->ratelimit_waits[1]));
    json_object_set_new(limits, "buckets",
                        ngx_http_gdrive_rate_json(r->pool));
    json_object_set_new(root, "rate_limits", limits);

    json_object_set_new(root, "errors", ngx_http_gdrive_errors_json(sh));

    return ngx_http_gdrive_send_jansson(r, NGX_HTTP_OK, root);
}


/* the recent errors of every worker, newest first, at most 50 */

typedef struct {
    ngx_uint_t                worker;
    ngx_gdrive_error_slot_t   e;
} ngx_http_gdrive_err_t;


static int ngx_libc_cdecl
ngx_http_gdrive_err_cmp(const void *one, const void *two)
{
    const ngx_http_gdrive_err_t  *a = one, *b = two;

    return (a->e.time < b->e.time) ? 1 : (a->e.time > b->e.time) ? -1 : 0;
}


static ngx_uint_t
ngx_http_gdrive_errors_collect(ngx_gdrive_sh_t *sh, ngx_http_gdrive_err_t *out,
    ngx_uint_t max)
{
    ngx_uint_t                   i, j, n;
    ngx_gdrive_worker_detail_t  *d;

    n = 0;

    for (i = 0; i < NGX_GDRIVE_MAX_WORKERS; i++) {
        d = sh->details[i];

        if (d == NULL) {
            continue;
        }

        for (j = 0; j < NGX_GDRIVE_STATUS_ERRORS && n < max; j++) {
            if (d->errors[j].time == 0) {
                continue;
            }

            out[n].worker = i;
            out[n].e = d->errors[j];

            /* rewritten while copied: left out */
            if (out[n].e.time != d->errors[j].time || out[n].e.time == 0) {
                continue;
            }

            out[n].e.id_len = ngx_min(out[n].e.id_len, NGX_GDRIVE_ID_MAX_LEN);
            out[n].e.code[sizeof(out[n].e.code) - 1] = '\0';
            out[n].e.detail[sizeof(out[n].e.detail) - 1] = '\0';
            n++;
        }
    }

    ngx_qsort(out, n, sizeof(ngx_http_gdrive_err_t), ngx_http_gdrive_err_cmp);

    return ngx_min(n, 50);
}


static json_t *
ngx_http_gdrive_errors_json(ngx_gdrive_sh_t *sh)
{
    json_t                 *errors, *o;
    u_char                  iso[64];
    time_t                  sec;
    ngx_tm_t                tm;
    ngx_uint_t              i, n;
    ngx_http_gdrive_err_t  *all;

    errors = json_array();

    all = ngx_alloc(NGX_GDRIVE_MAX_WORKERS * NGX_GDRIVE_STATUS_ERRORS
                    * sizeof(ngx_http_gdrive_err_t), ngx_cycle->log);
    if (all == NULL) {
        return errors;
    }

    n = ngx_http_gdrive_errors_collect(sh, all, NGX_GDRIVE_MAX_WORKERS
                                                * NGX_GDRIVE_STATUS_ERRORS);

    for (i = 0; i < n; i++) {
        sec = (time_t) (all[i].e.time / 1000);
        ngx_gmtime(sec, &tm);
        ngx_sprintf(iso, "%4d-%02d-%02dT%02d:%02d:%02d.%03uDZ%Z",
                    tm.ngx_tm_year, tm.ngx_tm_mon, tm.ngx_tm_mday,
                    tm.ngx_tm_hour, tm.ngx_tm_min, tm.ngx_tm_sec,
                    (uint32_t) (all[i].e.time % 1000));

        o = json_object();
        json_object_set_new(o, "time", json_string((char *) iso));
        json_object_set_new(o, "worker", json_integer(all[i].worker));
        json_object_set_new(o, "trigger_id",
                            ngx_http_gdrive_str_json(all[i].e.id,
                                                     all[i].e.id_len));
        json_object_set_new(o, "code",
                            ngx_http_gdrive_str_json((u_char *) all[i].e.code,
                                ngx_strlen(all[i].e.code)));
        json_object_set_new(o, "detail",
                            ngx_http_gdrive_str_json(all[i].e.detail,
                                ngx_strlen(all[i].e.detail)));
        json_array_append_new(errors, o);
    }

    ngx_free(all);

    return errors;
}




/*
 * The page for people: plain HTML, no script, refreshed by the browser
 * every 5 seconds.  Every value from a message or a peer is escaped.
 */

/*
 * The rate limiter's buckets, the global one first, then the integrations
 * most recently used: how full, how long until a request passes, and a
 * hold (Retry-After) or an open quota circuit.
 */

/* a worker's counters from its slot: the status page and diagnostics */

static json_t *
ngx_http_gdrive_worker_json(ngx_gdrive_worker_status_t *st, ngx_uint_t i)
{
    json_t  *w;

    w = json_object();

    json_object_set_new(w, "worker", json_integer(i));
    json_object_set_new(w, "pid", json_integer(st->pid));
    json_object_set_new(w, "started", json_integer(st->started));
    json_object_set_new(w, "inflight", json_integer(st->inflight));
    json_object_set_new(w, "queued", json_integer(st->queued));
    json_object_set_new(w, "inflight_peak", json_integer(st->inflight_peak));
    json_object_set_new(w, "paused", json_boolean(st->paused));
    json_object_set_new(w, "results", json_integer(st->results));
    json_object_set_new(w, "dead_letters", json_integer(st->dead_letters));
    json_object_set_new(w, "retries", json_integer(st->retries));
    json_object_set_new(w, "cancelled", json_integer(st->cancelled));
    json_object_set_new(w, "rss_bytes", json_integer(
                            ngx_gdrive_process_rss((ngx_pid_t) st->pid)));

    return w;
}


static json_t *
ngx_http_gdrive_rate_json(ngx_pool_t *pool)
{
    json_t                      *list, *b;
    uint64_t                     now;
    ngx_uint_t                   i;
    ngx_gdrive_rate_entry_t     *e;
    ngx_gdrive_rate_snapshot_t   snap;

    list = json_array();

    if (list == NULL
        || ngx_gdrive_rate_snapshot(pool, 20, &snap) != NGX_OK)
    {
        return list;
    }

    now = ngx_gdrive_epoch_ms();
    e = snap.entries->elts;

    for (i = 0; i < snap.entries->nelts; i++) {
        b = json_object();

        json_object_set_new(b, "integration",
                            e[i].integration.len
                            ? json_stringn((char *) e[i].integration.data,
                                           e[i].integration.len)
                            : json_null());
        json_object_set_new(b, "use_percent", json_integer(e[i].use));
        json_object_set_new(b, "wait_ms", json_integer(e[i].wait));
        json_object_set_new(b, "held_ms",
                            json_integer(e[i].held_until > now
                                         ? e[i].held_until - now : 0));
        json_object_set_new(b, "quota_exhausted",
                            json_boolean(e[i].quota));
        json_array_append_new(list, b);
    }

    return list;
}


static void
ngx_http_gdrive_rate_html(ngx_http_gdrive_out_t *o, ngx_pool_t *pool)
{
    uint64_t                     now;
    ngx_uint_t                   i;
    ngx_gdrive_rate_entry_t     *e;
    ngx_gdrive_rate_snapshot_t   snap;

    if (ngx_gdrive_rate_snapshot(pool, 20, &snap) != NGX_OK) {
        return;
    }

    now = ngx_gdrive_epoch_ms();
    e = snap.entries->elts;

    ngx_http_gdrive_out_printf(o,
        "<h3>Buckets (%ui integrations)</h3>\n<table><tr>"
        "<th>integration</th><th>use</th><th>next request in</th>"
        "<th>held</th></tr>\n", snap.buckets);

    for (i = 0; i < snap.entries->nelts; i++) {
        ngx_http_gdrive_out_printf(o, "<tr><td>");

        if (e[i].integration.len) {
            ngx_http_gdrive_out_html(o, e[i].integration.data,
                                     e[i].integration.len);

        } else {
            ngx_http_gdrive_out_printf(o, "<i>global</i>");
        }

        ngx_http_gdrive_out_printf(o,
            "</td><td class=\"n\">%ui %%</td><td class=\"n\">%M ms</td>"
            "<td class=\"%s\">",
            e[i].use, e[i].wait,
            e[i].held_until > now ? "bad" : "muted");

        if (e[i].held_until > now) {
            ngx_http_gdrive_out_printf(o, "%uL s%s",
                                       (e[i].held_until - now + 999) / 1000,
                                       e[i].quota ? ", quota exhausted"
                                                  : ", Retry-After");

        } else {
            ngx_http_gdrive_out_printf(o, "no");
        }

        ngx_http_gdrive_out_printf(o, "</td></tr>\n");
    }

    ngx_http_gdrive_out_printf(o, "</table>\n");
}


static ngx_int_t
ngx_http_gdrive_status_html(ngx_http_request_t *r)
{
    size_t                        rss;
    uint64_t                      now, started;
    ngx_uint_t                    i, j, n, any;
    ngx_gdrive_sh_t              *sh;
    ngx_gdrive_metrics_t         *m;
    ngx_http_gdrive_out_t         o;
    ngx_gdrive_job_slot_t        *js;
    ngx_http_gdrive_err_t        *all;
    ngx_gdrive_health_sh_t       *hs;
    ngx_gdrive_worker_detail_t   *d;
    ngx_gdrive_worker_status_t   *st;
    ngx_http_gdrive_main_conf_t  *gmcf;

    static const char  *probes[NGX_GDRIVE_PROBES] = {
        "token endpoint", "Drive API", "S3 bucket"
    };

    gmcf = ngx_http_get_module_main_conf(r, ngx_http_gdrive_worker_module);
    sh = ngx_gdrive_shm(gmcf);
    m = &sh->metrics;
    hs = &sh->health;
    now = ngx_gdrive_epoch_ms();

    ngx_memzero(&o, sizeof(ngx_http_gdrive_out_t));
    o.pool = r->pool;

    ngx_http_gdrive_out_printf(&o,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta http-equiv=\"refresh\" content=\"5\">"
        "<link rel=\"icon\" href=\"data:,\">"
        "<title>gdrive worker status</title>\n<style>"
        "body{font:14px/1.4 sans-serif;margin:1.5em;color:#222}"
        "table{border-collapse:collapse;margin:.5em 0 1.5em}"
        "th,td{border:1px solid #ccc;padding:.2em .6em;text-align:left}"
        "th{background:#eee}td.n{text-align:right}"
        ".bad{color:#b00}.ok{color:#070}.muted{color:#777}"
        "</style></head><body>\n"
        "<h1>nginx-gdrive-worker %s</h1>\n<p class=\"muted\">nginx %s, ",
        NGX_GDRIVE_VERSION, NGINX_VERSION);
    ngx_http_gdrive_out_html(&o, ngx_cycle->hostname.data,
                             ngx_cycle->hostname.len);
    ngx_http_gdrive_out_printf(&o,
        ", %V &middot; refreshes every 5 s &middot; "
        "<a href=\"?format=json\">JSON</a> &middot; "
        "<a href=\"?diagnostics\">diagnostics</a></p>\n",
        &ngx_cached_http_log_iso8601);

    /* workers */

    ngx_http_gdrive_out_printf(&o,
        "<h2>Workers</h2>\n<table><tr><th>worker</th><th>pid</th>"
        "<th>up</th><th>in flight</th><th>queued</th><th>peak</th>"
        "<th>consumer</th>"
        "<th>results</th><th>dead letters</th><th>retries</th>"
        "<th>cancelled</th><th>memory (RSS)</th></tr>\n");

    for (i = 0; i < NGX_GDRIVE_MAX_WORKERS; i++) {
        st = &sh->workers[i];

        if (!ngx_http_gdrive_worker_live(st)) {
            continue;
        }

        rss = ngx_gdrive_process_rss((ngx_pid_t) st->pid);

        ngx_http_gdrive_out_printf(&o,
            "<tr><td class=\"n\">%ui</td><td class=\"n\">%uA</td>"
            "<td class=\"n\">%T s</td><td class=\"n\">%uA</td>"
            "<td class=\"n\">%uA</td>"
            "<td class=\"n\">%uA</td><td>%s</td><td class=\"n\">%uA</td>"
            "<td class=\"n\">%uA</td><td class=\"n\">%uA</td>"
            "<td class=\"n\">%uA</td><td class=\"n\">%uz MiB</td></tr>\n",
            i, st->pid, ngx_time() - (time_t) st->started, st->inflight,
            st->queued, st->inflight_peak, st->paused ? "paused" : "fetching",
            st->results, st->dead_letters, st->retries, st->cancelled,
            rss / (1024 * 1024));
    }

    ngx_http_gdrive_out_printf(&o, "</table>\n");

    /* partitions */

    ngx_http_gdrive_out_printf(&o,
        "<h2>Partitions</h2>\n<table><tr><th>partition</th><th>worker</th>"
        "<th>stored offset</th><th>high watermark</th><th>lag</th></tr>\n");

    any = 0;

    for (i = 0; i < NGX_GDRIVE_MAX_WORKERS; i++) {
        st = &sh->workers[i];

        if (!ngx_http_gdrive_worker_live(st)) {
            continue;
        }

        n = ngx_min(st->nparts, NGX_GDRIVE_MAX_PARTITIONS);

        for (j = 0; j < n; j++) {
            any = 1;

            ngx_http_gdrive_out_printf(&o,
                "<tr><td class=\"n\">%D</td><td class=\"n\">%ui</td>"
                "<td class=\"n\">%L</td><td class=\"n\">%L</td>",
                st->partitions[j], i, st->stored[j], st->high[j]);

            if (st->lag[j] < 0) {
                ngx_http_gdrive_out_printf(&o,
                    "<td class=\"muted\">unknown</td></tr>\n");

            } else {
                ngx_http_gdrive_out_printf(&o,
                    "<td class=\"n%s\">%L</td></tr>\n",
                    (ngx_uint_t) st->lag[j] >= gmcf->health_max_lag
                    ? " bad" : "", st->lag[j]);
            }
        }
    }

    if (!any) {
        ngx_http_gdrive_out_printf(&o,
            "<tr><td colspan=\"5\" class=\"muted\">no partitions assigned"
            "</td></tr>\n");
    }

    ngx_http_gdrive_out_printf(&o, "</table>\n");

    /* in-flight jobs */

    ngx_http_gdrive_out_printf(&o,
        "<h2>Jobs in flight</h2>\n<table><tr><th>trigger id</th>"
        "<th>worker</th><th>partition</th><th>offset</th><th>stage</th>"
        "<th>age</th></tr>\n");

    any = 0;

    for (i = 0; i < NGX_GDRIVE_MAX_WORKERS; i++) {
        d = sh->details[i];

        if (d == NULL || !ngx_http_gdrive_worker_live(&sh->workers[i])) {
            continue;
        }

        for (j = 0; j < NGX_GDRIVE_STATUS_JOBS; j++) {
            js = &d->jobs[j];
            started = js->started;

            if (started == 0) {
                continue;
            }

            any = 1;

            ngx_http_gdrive_out_printf(&o, "<tr><td>");
            ngx_http_gdrive_out_html(&o, js->id,
                                     ngx_min(js->id_len,
                                             NGX_GDRIVE_ID_MAX_LEN));
            ngx_http_gdrive_out_printf(&o,
                "</td><td class=\"n\">%ui</td><td class=\"n\">%D</td>"
                "<td class=\"n\">%L</td><td>", i, js->partition, js->offset);
            ngx_http_gdrive_out_html(&o, (u_char *) js->stage,
                                     ngx_strnlen((u_char *) js->stage,
                                                 sizeof(js->stage)));
            ngx_http_gdrive_out_printf(&o,
                "</td><td class=\"n\">%uL.%01uL s</td></tr>\n",
                (now > started ? now - started : 0) / 1000,
                (now > started ? now - started : 0) % 1000 / 100);
        }
    }

    if (!any) {
        ngx_http_gdrive_out_printf(&o,
            "<tr><td colspan=\"6\" class=\"muted\">none</td></tr>\n");
    }

    ngx_http_gdrive_out_printf(&o, "</table>\n");

    /* messages */

    ngx_http_gdrive_out_printf(&o,
        "<h2>Messages processed</h2>\n<table><tr><th>outcome</th>"
        "<th>code</th><th>messages</th></tr>\n");

    any = 0;

    for (i = 0; i < NGX_GDRIVE_M_OUTCOMES; i++) {
        for (j = 0; j < NGX_GDRIVE_M_CODES; j++) {
            if (m->jobs[i][j] == 0) {
                continue;
            }

            any = 1;

            ngx_http_gdrive_out_printf(&o,
                "<tr><td>%s</td><td>%s</td><td class=\"n\">%uA</td></tr>\n",
                ngx_gdrive_metric_outcomes[i],
                j ? ngx_gdrive_metric_codes[j] : "", m->jobs[i][j]);
        }
    }

    if (!any) {
        ngx_http_gdrive_out_printf(&o,
            "<tr><td colspan=\"3\" class=\"muted\">none yet</td></tr>\n");
    }

    ngx_http_gdrive_out_printf(&o, "</table>\n");

    /* caches and rate limits */

    ngx_http_gdrive_out_printf(&o,
        "<h2>Caches</h2>\n<table><tr><th>cache</th><th>hits</th>"
        "<th>misses</th><th>evictions</th><th>size</th></tr>\n"
        "<tr><td>access tokens</td><td class=\"n\">%uA</td>"
        "<td class=\"n\">%uA</td><td class=\"n\">%uA</td>"
        "<td class=\"muted\">one per integration</td></tr>\n"
        "<tr><td>Drive metadata</td><td class=\"n\">%uA</td>"
        "<td class=\"n\">%uA</td><td class=\"n\">%uA</td>"
        "<td>%ui entries, %T s</td></tr>\n</table>\n",
        m->cache[0][0], m->cache[0][1], m->cache[0][2],
        m->cache[1][0], m->cache[1][1], m->cache[1][2],
        gmcf->metadata_cache_entries, gmcf->metadata_cache_ttl);

    ngx_http_gdrive_out_printf(&o,
        "<h2>Rate limits</h2>\n<table><tr><th>limit</th><th>rate</th>"
        "<th>burst</th><th>waits</th><th>waited</th></tr>\n"
        "<tr><td>per integration</td><td class=\"n\">%ui.%03ui/s</td>"
        "<td class=\"n\">%ui</td><td class=\"n\">%uA</td>"
        "<td class=\"n\">%uA s</td></tr>\n"
        "<tr><td>global</td><td class=\"n\">%ui.%03ui/s</td>"
        "<td class=\"n\">%ui</td><td class=\"n\">%uA</td>"
        "<td class=\"n\">%uA s</td></tr>\n</table>\n",
        gmcf->rate / 1000, gmcf->rate % 1000, gmcf->burst,
        m->ratelimit_waits[0], m->ratelimit_wait_ms[0] / 1000,
        gmcf->global_rate / 1000, gmcf->global_rate % 1000,
        gmcf->global_burst, m->ratelimit_waits[1],
        m->ratelimit_wait_ms[1] / 1000);

    ngx_http_gdrive_rate_html(&o, r->pool);

    /* health probes */

    if (gmcf->consumer) {
        ngx_http_gdrive_out_printf(&o,
            "<h2>Health probes</h2>\n<table><tr><th>probe</th>"
            "<th>result</th><th>answer</th><th>time</th></tr>\n");

        for (i = 0; i < NGX_GDRIVE_PROBES; i++) {
            if (hs->checked == 0) {
                ngx_http_gdrive_out_printf(&o,
                    "<tr><td>%s</td><td class=\"muted\" colspan=\"3\">"
                    "not probed yet (GET the health location)</td></tr>\n",
                    probes[i]);
                continue;
            }

            ngx_http_gdrive_out_printf(&o,
                "<tr><td>%s</td><td class=\"%s\">%s</td><td>",
                probes[i], hs->probe[i].ok ? "ok" : "bad",
                hs->probe[i].ok ? "reachable" : "failed");
            ngx_http_gdrive_out_html(&o, hs->probe[i].detail,
                                     ngx_strnlen(hs->probe[i].detail,
                                               sizeof(hs->probe[i].detail)));
            ngx_http_gdrive_out_printf(&o,
                "</td><td class=\"n\">%uA ms, %uL s ago</td></tr>\n",
                hs->probe[i].ms, (now - hs->checked) / 1000);
        }

        ngx_http_gdrive_out_printf(&o, "</table>\n");
    }

    /* recent errors */

    ngx_http_gdrive_out_printf(&o,
        "<h2>Recent errors</h2>\n<table><tr><th>time (UTC)</th>"
        "<th>worker</th><th>trigger id</th><th>code</th><th>detail</th>"
        "</tr>\n");

    all = ngx_palloc(r->pool, NGX_GDRIVE_MAX_WORKERS * NGX_GDRIVE_STATUS_ERRORS
                              * sizeof(ngx_http_gdrive_err_t));
    n = 0;

    if (all) {
        n = ngx_http_gdrive_errors_collect(sh, all, NGX_GDRIVE_MAX_WORKERS
                                                    * NGX_GDRIVE_STATUS_ERRORS);
    }

    for (i = 0; i < n; i++) {
        ngx_tm_t  tm;

        ngx_gmtime((time_t) (all[i].e.time / 1000), &tm);

        ngx_http_gdrive_out_printf(&o,
            "<tr><td>%4d-%02d-%02d %02d:%02d:%02d</td>"
            "<td class=\"n\">%ui</td><td>",
            tm.ngx_tm_year, tm.ngx_tm_mon, tm.ngx_tm_mday, tm.ngx_tm_hour,
            tm.ngx_tm_min, tm.ngx_tm_sec, all[i].worker);
        ngx_http_gdrive_out_html(&o, all[i].e.id, all[i].e.id_len);
        ngx_http_gdrive_out_printf(&o, "</td><td>");
        ngx_http_gdrive_out_html(&o, (u_char *) all[i].e.code,
                                 ngx_strlen(all[i].e.code));
        ngx_http_gdrive_out_printf(&o, "</td><td>");
        ngx_http_gdrive_out_html(&o, all[i].e.detail,
                                 ngx_strlen(all[i].e.detail));
        ngx_http_gdrive_out_printf(&o, "</td></tr>\n");
    }

    if (n == 0) {
        ngx_http_gdrive_out_printf(&o,
            "<tr><td colspan=\"5\" class=\"muted\">none</td></tr>\n");
    }

    ngx_http_gdrive_out_printf(&o, "</table>\n</body></html>\n");

    return ngx_http_gdrive_out_send(r, &o, NGX_HTTP_OK,
                                    "text/html; charset=utf-8");
}


/*
 * The diagnostics bundle: versions, the effective configuration with
 * where each value came from, and recent errors.  Secrets never leave:
 * secret settings, Kafka options named like credentials, and the user
 * and query parts of URLs are replaced by "(redacted)".
 */

static ngx_int_t
ngx_http_gdrive_diagnostics(ngx_http_request_t *r)
{
    json_t                       *root, *v, *conf, *s, *kopts, *workers;
    ngx_uint_t                    i;
    ngx_keyval_t                 *kv;
    ngx_gdrive_sh_t              *sh;
    curl_version_info_data       *cv;
    ngx_gdrive_setting_info_t     info;
    ngx_gdrive_worker_status_t   *st;
    ngx_http_gdrive_main_conf_t  *gmcf;

    static const char  *from[] = { "unset", "directive", "environment",
                                   "default" };

    gmcf = ngx_http_get_module_main_conf(r, ngx_http_gdrive_worker_module);
    sh = ngx_gdrive_shm(gmcf);

    root = json_object();

    json_object_set_new(root, "generated_at",
                        json_stringn((char *) ngx_cached_http_log_iso8601.data,
                                     ngx_cached_http_log_iso8601.len));
    json_object_set_new(root, "hostname",
                        json_stringn((char *) ngx_cycle->hostname.data,
                                     ngx_cycle->hostname.len));
    json_object_set_new(root, "conf_file",
                        ngx_http_gdrive_str_json(ngx_cycle->conf_file.data,
                                                 ngx_cycle->conf_file.len));

    cv = curl_version_info(CURLVERSION_NOW);

    v = json_object();
    json_object_set_new(v, "nginx", json_string(NGINX_VERSION));
    json_object_set_new(v, "module", json_string(NGX_GDRIVE_VERSION));
    json_object_set_new(v, "librdkafka", json_string(rd_kafka_version_str()));
    json_object_set_new(v, "libcurl", json_string(cv->version));
    json_object_set_new(v, "libcurl_ssl",
                        cv->ssl_version ? json_string(cv->ssl_version)
                                        : json_null());
    json_object_set_new(v, "jansson", json_string(jansson_version_str()));
    json_object_set_new(v, "openssl",
                        json_string(OpenSSL_version(OPENSSL_VERSION)));
    json_object_set_new(root, "versions", v);

    conf = json_object();

    for (i = 0; ngx_http_gdrive_setting_info(gmcf, i, &info) == NGX_OK; i++) {
        s = json_object();

        json_object_set_new(s, "from",
                            json_string(from[info.from < 4 ? info.from : 0]));

        if (info.env) {
            json_object_set_new(s, "env", json_string(info.env));
        }

        if (info.from == NGX_GDRIVE_FROM_UNSET) {
            json_object_set_new(s, "value", json_null());

        } else if (info.secret) {
            json_object_set_new(s, "value", json_string("(redacted)"));

        } else if (ngx_strlcasestrn(info.value.data,
                                    info.value.data + info.value.len,
                                    (u_char *) "://", 3 - 1))
        {
            json_object_set_new(s, "value",
                                ngx_http_gdrive_redact_url(&info.value));

        } else {
            json_object_set_new(s, "value",
                                ngx_http_gdrive_str_json(info.value.data,
                                                         info.value.len));
        }

        json_object_set_new(conf, (char *) info.name.data, s);
    }

    json_object_set_new(root, "configuration", conf);

    kopts = json_object();

    if (gmcf->kafka_options) {
        kv = gmcf->kafka_options->elts;

        for (i = 0; i < gmcf->kafka_options->nelts; i++) {
            json_object_set_new(kopts, (char *) kv[i].key.data,
                                ngx_http_gdrive_secret_name(&kv[i].key)
                                ? json_string("(redacted)")
                                : ngx_http_gdrive_str_json(kv[i].value.data,
                                                           kv[i].value.len));
        }
    }

    json_object_set_new(root, "kafka_options", kopts);

    workers = json_array();

    for (i = 0; i < NGX_GDRIVE_MAX_WORKERS; i++) {
        st = &sh->workers[i];

        if (!ngx_http_gdrive_worker_live(st)) {
            continue;
        }

        json_array_append_new(workers, ngx_http_gdrive_worker_json(st, i));
    }

    json_object_set_new(root, "workers", workers);
    json_object_set_new(root, "zone_generation",
                        json_integer(sh->generation));
    json_object_set_new(root, "recent_errors",
                        ngx_http_gdrive_errors_json(sh));

    return ngx_http_gdrive_send_jansson(r, NGX_HTTP_OK, root);
}


/* "https://user:pw@host/p?key=v" -> "https://(redacted)@host/p?(redacted)" */

static json_t *
ngx_http_gdrive_redact_url(ngx_str_t *v)
{
    u_char  *p, *last, *host, *at, *q, *out, *o;
    json_t  *j;

    out = ngx_alloc(v->len + 2 * sizeof("(redacted)"), ngx_cycle->log);
    if (out == NULL) {
        return json_string("(redacted)");
    }

    p = v->data;
    last = v->data + v->len;

    host = ngx_strlcasestrn(p, last, (u_char *) "://", 3 - 1) + 3;

    at = NULL;

    for (q = host; q < last && *q != '/' && *q != '?' && *q != '#'; q++) {
        if (*q == '@') {
            at = q;
        }
    }

    o = ngx_cpymem(out, p, host - p);

    if (at) {
        o = ngx_cpymem(o, "(redacted)", sizeof("(redacted)") - 1);
        host = at;
    }

    q = ngx_strlchr(host, last, '?');

    if (q) {
        o = ngx_cpymem(o, host, q + 1 - host);
        o = ngx_cpymem(o, "(redacted)", sizeof("(redacted)") - 1);

    } else {
        o = ngx_cpymem(o, host, last - host);
    }

    j = ngx_http_gdrive_str_json(out, o - out);

    ngx_free(out);

    return j;
}


/* librdkafka properties that hold credentials */

static ngx_uint_t
ngx_http_gdrive_secret_name(ngx_str_t *name)
{
    ngx_uint_t  i;

    static char  *words[] = { "password", "secret", "key", "token",
                              "credential", "jaas", "oauthbearer", NULL };

    for (i = 0; words[i]; i++) {
        if (ngx_strlcasestrn(name->data, name->data + name->len,
                             (u_char *) words[i], ngx_strlen(words[i]) - 1))
        {
            return 1;
        }
    }

    return 0;
}
