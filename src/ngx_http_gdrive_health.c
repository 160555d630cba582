
/*
 * nginx-gdrive-worker: the health location (gdrive_health).
 *
 * Locations layer.  "?live" is liveness: the worker answers, so its loop
 * runs; always 200.  Without it, readiness: 503 "unhealthy" when this
 * worker's Kafka producer has no broker (triggers cannot be accepted);
 * 200 "degraded" when a probe of Google or S3 fails or a figure of the
 * guide's monitoring checklist is over its threshold; else 200
 * "healthy".  Probe answers older than gdrive_health_interval are renewed
 * first (ngx_gdrive_probe.c): the request waits on a timer, at most
 * gdrive_health_timeout.  The checklist's window and percentile are
 * ngx_gdrive_metrics.c's arithmetic over the shared counters.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <jansson.h>

#include "ngx_gdrive.h"
#include "ngx_gdrive_aws.h"
#include "ngx_gdrive_kafka.h"
#include "ngx_gdrive_metrics.h"
#include "ngx_gdrive_probe.h"
#include "ngx_http_gdrive.h"


typedef struct {
    ngx_event_t          wait;
    ngx_msec_t           deadline;
} ngx_http_gdrive_health_ctx_t;


static void ngx_http_gdrive_health_wait(ngx_event_t *ev);
static void ngx_http_gdrive_health_cleanup(void *data);
static ngx_int_t ngx_http_gdrive_health_send(ngx_http_request_t *r);
static void ngx_http_gdrive_health_kafka(json_t *checks,
    ngx_http_gdrive_main_conf_t *gmcf, ngx_uint_t *unhealthy);
static void ngx_http_gdrive_health_probes(json_t *checks,
    ngx_http_gdrive_main_conf_t *gmcf, ngx_gdrive_health_sh_t *hs,
    ngx_uint_t *degraded);
static void ngx_http_gdrive_health_credentials(json_t *checks,
    ngx_http_gdrive_main_conf_t *gmcf, ngx_uint_t *degraded);
static void ngx_http_gdrive_health_workers(json_t *checks,
    ngx_http_gdrive_main_conf_t *gmcf, ngx_gdrive_sh_t *sh,
    ngx_uint_t *degraded);
static void ngx_http_gdrive_health_window(json_t *checks,
    ngx_http_gdrive_main_conf_t *gmcf, ngx_gdrive_sh_t *sh,
    ngx_uint_t *degraded);
static json_t *ngx_http_gdrive_check(json_t *checks, const char *name,
    ngx_uint_t ok, ngx_uint_t *degraded);
static json_t *ngx_http_gdrive_probe_json(ngx_gdrive_probe_t *p);
static size_t ngx_http_gdrive_memory_limit(ngx_http_gdrive_main_conf_t *gmcf,
    const char **from);


/* this worker's producer, whose broker state is the Kafka check */
static ngx_gdrive_kafka_t  *ngx_http_gdrive_health_producer;


void
ngx_http_gdrive_health_init(ngx_gdrive_kafka_t *producer)
{
    ngx_http_gdrive_health_producer = producer;
}


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

    if (!gmcf->consumer || ngx_gdrive_probe_fresh() == NGX_OK) {
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
    ngx_http_gdrive_health_ctx_t  *ctx;

    c = r->connection;
    ctx = ngx_http_get_module_ctx(r, ngx_http_gdrive_worker_module);

    if (ngx_gdrive_probe_fresh() == NGX_AGAIN
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
    json_t                       *root, *checks, *w;
    ngx_uint_t                    degraded, unhealthy;
    ngx_gdrive_sh_t              *sh;
    ngx_http_gdrive_main_conf_t  *gmcf;

    gmcf = ngx_http_get_module_main_conf(r, ngx_http_gdrive_worker_module);
    sh = ngx_gdrive_shm(gmcf);

    degraded = 0;
    unhealthy = 0;

    root = json_object();
    checks = json_object();
    json_object_set_new(root, "checks", checks);

    (void) ngx_http_gdrive_check(checks, "loop", 1, &degraded);

    ngx_http_gdrive_health_kafka(checks, gmcf, &unhealthy);
    ngx_http_gdrive_health_probes(checks, gmcf, &sh->health, &degraded);
    ngx_http_gdrive_health_credentials(checks, gmcf, &degraded);

    /* the monitoring checklist */

    ngx_http_gdrive_health_workers(checks, gmcf, sh, &degraded);
    ngx_http_gdrive_health_window(checks, gmcf, sh, &degraded);

    json_object_set_new(root, "status",
                        json_string(unhealthy ? "unhealthy"
                                    : degraded ? "degraded" : "healthy"));

    w = json_object();
    json_object_set_new(w, "pid", json_integer(ngx_pid));
    json_object_set_new(w, "version", json_string(NGX_GDRIVE_VERSION));
    json_object_set_new(root, "worker", w);

    return ngx_http_gdrive_send_jansson(r, unhealthy
                                           ? NGX_HTTP_SERVICE_UNAVAILABLE
                                           : NGX_HTTP_OK,
                                        root);
}


/* Kafka: the broker state of this worker's producer */

static void
ngx_http_gdrive_health_kafka(json_t *checks,
    ngx_http_gdrive_main_conf_t *gmcf, ngx_uint_t *unhealthy)
{
    json_t              *c;
    ngx_uint_t           ok, up, known;
    ngx_gdrive_kafka_t  *k;

    k = ngx_http_gdrive_health_producer;

    if (gmcf->kafka_brokers.len == 0) {
        c = ngx_http_gdrive_check(checks, "kafka", 1, unhealthy);
        json_object_set_new(c, "skipped",
                            json_string("no brokers are configured"));

    } else if (k == NULL) {
        c = ngx_http_gdrive_check(checks, "kafka", 0, unhealthy);
        json_object_set_new(c, "detail",
                            json_string("this worker has no Kafka producer"));

    } else {
        ok = (ngx_gdrive_kafka_brokers_state(k, &up, &known) == NGX_OK);
        c = ngx_http_gdrive_check(checks, "kafka", ok, unhealthy);
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
}


/* Google and S3: the probes' cached answers */

static void
ngx_http_gdrive_health_probes(json_t *checks,
    ngx_http_gdrive_main_conf_t *gmcf, ngx_gdrive_health_sh_t *hs,
    ngx_uint_t *degraded)
{
    json_t      *c;
    uint64_t     now;
    ngx_uint_t   ok, ok2;

    now = ngx_gdrive_epoch_ms();

    if (!gmcf->consumer) {
        c = ngx_http_gdrive_check(checks, "google_api", 1, degraded);
        json_object_set_new(c, "skipped",
                            json_string("gdrive_consumer is off"));
        c = ngx_http_gdrive_check(checks, "s3", 1, degraded);
        json_object_set_new(c, "skipped",
                            json_string("gdrive_consumer is off"));

    } else if (hs->checked == 0) {
        c = ngx_http_gdrive_check(checks, "google_api", 0, degraded);
        json_object_set_new(c, "detail", json_string("no probe answered yet"));
        c = ngx_http_gdrive_check(checks, "s3", 0, degraded);
        json_object_set_new(c, "detail", json_string("no probe answered yet"));

    } else {
        ok = hs->probe[NGX_GDRIVE_PROBE_TOKEN].ok;
        ok2 = hs->probe[NGX_GDRIVE_PROBE_DRIVE].ok;
        c = ngx_http_gdrive_check(checks, "google_api", ok && ok2, degraded);
        json_object_set_new(c, "token_endpoint", ngx_http_gdrive_probe_json(
                                &hs->probe[NGX_GDRIVE_PROBE_TOKEN]));
        json_object_set_new(c, "drive_api", ngx_http_gdrive_probe_json(
                                &hs->probe[NGX_GDRIVE_PROBE_DRIVE]));
        json_object_set_new(c, "age_seconds",
                            json_integer((now - hs->checked) / 1000));

        c = ngx_http_gdrive_check(checks, "s3",
                                  hs->probe[NGX_GDRIVE_PROBE_S3].ok,
                                  degraded);
        json_object_set_new(c, "bucket", ngx_http_gdrive_probe_json(
                                &hs->probe[NGX_GDRIVE_PROBE_S3]));
        json_object_set_new(c, "age_seconds",
                            json_integer((now - hs->checked) / 1000));
    }
}


/*
 * s3.credentials: whether S3 can be signed for now.  With web identity it
 * fails until STS has answered, and while the credentials it gave are
 * past their use; the detail is the last failure (STS's Code and
 * Message), never a secret.
 */

static void
ngx_http_gdrive_health_credentials(json_t *checks,
    ngx_http_gdrive_main_conf_t *gmcf, ngx_uint_t *degraded)
{
    json_t                  *c;
    ngx_gdrive_aws_check_t   st;

    if (!gmcf->consumer) {
        c = ngx_http_gdrive_check(checks, "s3.credentials", 1, degraded);
        json_object_set_new(c, "skipped",
                            json_string("gdrive_consumer is off"));
        return;
    }

    ngx_gdrive_aws_check(gmcf, &st);

    c = ngx_http_gdrive_check(checks, "s3.credentials", st.ok, degraded);
    json_object_set_new(c, "mode", json_string(st.mode));

    if (gmcf->s3_web_identity) {
        json_object_set_new(c, "role",
                            json_stringn((char *) gmcf->s3_role_arn.data,
                                         gmcf->s3_role_arn.len));
        json_object_set_new(c, "sts_requests", json_integer(st.requests));
        json_object_set_new(c, "failures", json_integer(st.failures));

        if (st.expires_in >= 0) {
            json_object_set_new(c, "expires_in_seconds",
                                json_integer(st.expires_in));
        }
    }

    if (st.detail[0]) {
        json_object_set_new(c, "detail", json_string((char *) st.detail));
    }
}


/* the live workers' memory against the limit, and their consumer lag */

static void
ngx_http_gdrive_health_workers(json_t *checks,
    ngx_http_gdrive_main_conf_t *gmcf, ngx_gdrive_sh_t *sh,
    ngx_uint_t *degraded)
{
    json_t                      *c;
    size_t                       rss, limit;
    uint64_t                     used;
    ngx_uint_t                   i, j, n, pct;
    const char                  *from;
    ngx_gdrive_worker_status_t  *st;

    rss = 0;
    n = 0;
    used = 0;

    for (i = 0; i < NGX_GDRIVE_MAX_WORKERS; i++) {
        st = &sh->workers[i];

        if (!ngx_gdrive_status_live(st)) {
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
                              degraded);
    json_object_set_new(c, "workers", json_integer(n));
    json_object_set_new(c, "rss_bytes", json_integer(rss));
    json_object_set_new(c, "limit_bytes", limit ? json_integer(limit)
                                                : json_null());
    json_object_set_new(c, "limit_from", json_string(from));
    json_object_set_new(c, "used_percent", json_real(pct / 100.0));
    json_object_set_new(c, "threshold_percent",
                        json_real(gmcf->health_max_memory / 100.0));

    c = ngx_http_gdrive_check(checks, "consumer_lag",
                              used < gmcf->health_max_lag, degraded);
    json_object_set_new(c, "value", json_integer(used));
    json_object_set_new(c, "threshold", json_integer(gmcf->health_max_lag));
}


/*
 * The figures over gdrive_health_window: Drive's request rate, the dead
 * letters, the error rate and the 95th percentile of processing.
 */

static void
ngx_http_gdrive_health_window(json_t *checks,
    ngx_http_gdrive_main_conf_t *gmcf, ngx_gdrive_sh_t *sh,
    ngx_uint_t *degraded)
{
    json_t                 *c;
    uint64_t                used, base_used, rate, limit;
    ngx_uint_t              i, n, pct, fleet;
    ngx_msec_t              p95, span;
    ngx_gdrive_snapshot_t   base, cur;

    ngx_gdrive_metrics_window(gmcf->health_window, &base, &cur);
    span = (ngx_msec_t) (cur.time - base.time);

    /*
     * The Drive requests of the window against the global rate limit in
     * effect: with scope=fleet, this instance's share of it (read without
     * the lock: a figure a moment old is fine here).
     */

    fleet = (gmcf->global_scope == NGX_GDRIVE_SCOPE_FLEET);
    limit = fleet ? sh->rate.share_rate : gmcf->global_rate;
    rate = span ? (cur.google - base.google) * 1000 * 1000 / span : 0;
    pct = limit ? (ngx_uint_t) (rate * 10000 / limit) : (rate ? 10000 : 0);
    c = ngx_http_gdrive_check(checks, "rate_limit",
                              pct < gmcf->health_max_rate_use, degraded);
    json_object_set_new(c, "requests_per_second", json_real(rate / 1000.0));
    json_object_set_new(c, "limit_per_second", json_real(limit / 1000.0));
    json_object_set_new(c, "scope",
                        json_string(fleet ? "fleet" : "host"));

    if (fleet) {
        json_object_set_new(c, "global_per_second",
                            json_real(gmcf->global_rate / 1000.0));
        json_object_set_new(c, "partitions_held",
                            json_integer(sh->rate.share_held));
        json_object_set_new(c, "partitions_total",
                            json_integer(sh->rate.share_total));
    }

    json_object_set_new(c, "used_percent", json_real(pct / 100.0));
    json_object_set_new(c, "threshold_percent",
                        json_real(gmcf->health_max_rate_use / 100.0));
    json_object_set_new(c, "window_seconds", json_integer(span / 1000));

    used = sh->metrics.dlq[0];
    base_used = sh->metrics.dlq[1];
    used = (used > base_used) ? used - base_used : 0;

    c = ngx_http_gdrive_check(checks, "dlq", used < gmcf->health_max_dlq,
                              degraded);
    json_object_set_new(c, "value", json_integer(used));
    json_object_set_new(c, "threshold", json_integer(gmcf->health_max_dlq));

    n = cur.done - base.done;
    pct = n ? (ngx_uint_t) ((uint64_t) (cur.failed - base.failed) * 10000 / n)
            : 0;
    c = ngx_http_gdrive_check(checks, "error_rate",
                              n == 0 || pct < gmcf->health_max_error_rate
                              || gmcf->health_max_error_rate == 0,
                              degraded);
    json_object_set_new(c, "messages", json_integer(n));
    json_object_set_new(c, "value_percent", json_real(pct / 100.0));
    json_object_set_new(c, "threshold_percent",
                        json_real(gmcf->health_max_error_rate / 100.0));
    json_object_set_new(c, "window_seconds", json_integer(span / 1000));

    for (i = 0; i < NGX_GDRIVE_M_BUCKETS; i++) {
        cur.bucket[i] -= base.bucket[i];
    }

    p95 = ngx_gdrive_metrics_p95(cur.bucket);
    c = ngx_http_gdrive_check(checks, "p95_processing",
                              p95 == 0 || p95 < gmcf->health_max_p95,
                              degraded);
    json_object_set_new(c, "value_seconds", p95 ? json_real(p95 / 1000.0)
                                                : json_null());
    json_object_set_new(c, "threshold_seconds",
                        json_real(gmcf->health_max_p95 / 1000.0));
    json_object_set_new(c, "window_seconds", json_integer(span / 1000));
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
