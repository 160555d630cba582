
/*
 * nginx-gdrive-worker: the status location (gdrive_status).
 *
 * Locations layer: HTML for people, JSON for tools, and the diagnostics
 * bundle.  Everything here reads the shared zone (the workers' slots,
 * the counters, the rate limiter's snapshot) and starts no request.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <jansson.h>
#include <openssl/crypto.h>

#include "ngx_gdrive.h"
#include "ngx_gdrive_kafka.h"
#include "ngx_gdrive_ratelimit.h"
#include "ngx_gdrive_metrics.h"
#include "ngx_http_gdrive.h"


static ngx_int_t ngx_http_gdrive_status_json(ngx_http_request_t *r);
static json_t *ngx_http_gdrive_rate_json(ngx_pool_t *pool);
static void ngx_http_gdrive_share_json(ngx_pool_t *pool, json_t *limits);
static json_t *ngx_http_gdrive_worker_json(ngx_gdrive_worker_status_t *st,
    ngx_uint_t i);
static void ngx_http_gdrive_rate_html(ngx_http_gdrive_out_t *o,
    ngx_pool_t *pool);
static void ngx_http_gdrive_share_html(ngx_http_gdrive_out_t *o,
    ngx_http_gdrive_main_conf_t *gmcf);
static ngx_int_t ngx_http_gdrive_status_html(ngx_http_request_t *r);
static void ngx_http_gdrive_html_workers(ngx_http_gdrive_out_t *o,
    ngx_gdrive_sh_t *sh);
static void ngx_http_gdrive_html_partitions(ngx_http_gdrive_out_t *o,
    ngx_gdrive_sh_t *sh, ngx_http_gdrive_main_conf_t *gmcf);
static void ngx_http_gdrive_html_jobs(ngx_http_gdrive_out_t *o,
    ngx_gdrive_sh_t *sh, uint64_t now);
static void ngx_http_gdrive_html_messages(ngx_http_gdrive_out_t *o,
    ngx_gdrive_metrics_t *m);
static void ngx_http_gdrive_html_limits(ngx_http_gdrive_out_t *o,
    ngx_gdrive_metrics_t *m, ngx_http_gdrive_main_conf_t *gmcf);
static void ngx_http_gdrive_html_probes(ngx_http_gdrive_out_t *o,
    ngx_gdrive_health_sh_t *hs, ngx_http_gdrive_main_conf_t *gmcf,
    uint64_t now);
static void ngx_http_gdrive_html_errors(ngx_http_gdrive_out_t *o,
    ngx_gdrive_sh_t *sh);
static ngx_int_t ngx_http_gdrive_diagnostics(ngx_http_request_t *r);
static json_t *ngx_http_gdrive_errors_json(ngx_gdrive_sh_t *sh);
static json_t *ngx_http_gdrive_redact_url(ngx_str_t *v);
static ngx_uint_t ngx_http_gdrive_secret_name(ngx_str_t *name);
static ngx_uint_t ngx_http_gdrive_wants_json(ngx_http_request_t *r);


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
    json_object_set_new(root, "instance",
                        ngx_http_gdrive_str_json(gmcf->instance.data,
                                                 gmcf->instance.len));
    json_object_set_new(root, "topic",
                        ngx_http_gdrive_str_json(gmcf->kafka_topic.data,
                                                 gmcf->kafka_topic.len));

    workers = json_array();
    json_object_set_new(root, "workers", workers);

    for (i = 0; i < NGX_GDRIVE_MAX_WORKERS; i++) {
        st = &sh->workers[i];

        if (!ngx_gdrive_status_live(st)) {
            continue;
        }

        w = ngx_http_gdrive_worker_json(st, i);
        json_object_set_new(w, "host",
                            ngx_http_gdrive_str_json(gmcf->instance.data,
                                                     gmcf->instance.len));

        parts = json_array();
        n = ngx_min(st->nparts, NGX_GDRIVE_MAX_PARTITIONS);

        for (j = 0; j < n; j++) {
            o = json_object();
            json_object_set_new(o, "topic",
                                ngx_http_gdrive_str_json(gmcf->kafka_topic.data,
                                    gmcf->kafka_topic.len));
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
    ngx_http_gdrive_share_json(r->pool, limits);
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


/* a worker's counters from its slot: the status page and diagnostics */

/* a copy of a worker's member id: the worker may rewrite its slot */

static size_t
ngx_http_gdrive_member_id(ngx_gdrive_worker_status_t *st, u_char *id)
{
    ngx_memcpy(id, st->member_id, NGX_GDRIVE_MEMBER_ID_LEN);
    id[NGX_GDRIVE_MEMBER_ID_LEN - 1] = '\0';

    return ngx_strlen(id);
}


static json_t *
ngx_http_gdrive_worker_json(ngx_gdrive_worker_status_t *st, ngx_uint_t i)
{
    size_t   len;
    json_t  *w;
    u_char   id[NGX_GDRIVE_MEMBER_ID_LEN];

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
    json_object_set_new(w, "partitions_held", json_integer(st->held));
    json_object_set_new(w, "http_waiting", json_integer(st->http_waiting));
    json_object_set_new(w, "http_waited", json_integer(st->http_waited));
    len = ngx_http_gdrive_member_id(st, id);
    json_object_set_new(w, "member_id", ngx_http_gdrive_str_json(id, len));
    json_object_set_new(w, "rss_bytes", json_integer(
                            ngx_gdrive_process_rss((ngx_pid_t) st->pid)));

    return w;
}


/*
 * What of the global rate this instance has: all of it (scope=host), or
 * its share (scope=fleet), the partitions held here of the topic's.
 */

static void
ngx_http_gdrive_share_json(ngx_pool_t *pool, json_t *limits)
{
    ngx_gdrive_rate_snapshot_t    snap;
    ngx_http_gdrive_main_conf_t  *gmcf;

    gmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                               ngx_http_gdrive_worker_module);

    if (ngx_gdrive_rate_snapshot(pool, 0, &snap) != NGX_OK) {
        return;
    }

    json_object_set_new(limits, "global_scope",
                        json_string(gmcf->global_scope
                                    == NGX_GDRIVE_SCOPE_FLEET
                                    ? "fleet" : "host"));
    json_object_set_new(limits, "global_share_per_second",
                        json_real(snap.global_rate / 1000.0));
    json_object_set_new(limits, "global_share_burst",
                        json_integer(snap.global_burst));

    if (gmcf->global_scope == NGX_GDRIVE_SCOPE_FLEET) {
        json_object_set_new(limits, "partitions_held",
                            json_integer(snap.held));
        json_object_set_new(limits, "partitions_total",
                            json_integer(snap.total));
    }
}


/*
 * The rate limiter's buckets, the global one first, then the integrations
 * most recently used: how full, how long until a request passes, and a
 * hold (Retry-After) or an open quota circuit.
 */

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


/*
 * The page for people: plain HTML, no script, refreshed by the browser
 * every 5 seconds.  Every value from a message or a peer is escaped.
 */

static ngx_int_t
ngx_http_gdrive_status_html(ngx_http_request_t *r)
{
    uint64_t                      now;
    ngx_gdrive_sh_t              *sh;
    ngx_http_gdrive_out_t         o;
    ngx_http_gdrive_main_conf_t  *gmcf;

    gmcf = ngx_http_get_module_main_conf(r, ngx_http_gdrive_worker_module);
    sh = ngx_gdrive_shm(gmcf);
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
        "<h1>nginx-gdrive-worker %s</h1>\n<p class=\"muted\">nginx %s, "
        "instance ", NGX_GDRIVE_VERSION, NGINX_VERSION);
    ngx_http_gdrive_out_html(&o, gmcf->instance.data, gmcf->instance.len);
    ngx_http_gdrive_out_printf(&o,
        ", %V &middot; refreshes every 5 s &middot; "
        "<a href=\"?format=json\">JSON</a> &middot; "
        "<a href=\"?diagnostics\">diagnostics</a></p>\n",
        &ngx_cached_http_log_iso8601);

    ngx_http_gdrive_html_workers(&o, sh);
    ngx_http_gdrive_html_partitions(&o, sh, gmcf);
    ngx_http_gdrive_html_jobs(&o, sh, now);
    ngx_http_gdrive_html_messages(&o, &sh->metrics);
    ngx_http_gdrive_html_limits(&o, &sh->metrics, gmcf);
    ngx_http_gdrive_html_probes(&o, &sh->health, gmcf, now);
    ngx_http_gdrive_html_errors(&o, sh);

    ngx_http_gdrive_out_printf(&o, "</body></html>\n");

    return ngx_http_gdrive_out_send(r, &o, NGX_HTTP_OK,
                                    "text/html; charset=utf-8");
}


static void
ngx_http_gdrive_html_workers(ngx_http_gdrive_out_t *o, ngx_gdrive_sh_t *sh)
{
    size_t                       rss, len;
    u_char                       id[NGX_GDRIVE_MEMBER_ID_LEN];
    ngx_uint_t                   i;
    ngx_gdrive_worker_status_t  *st;

    ngx_http_gdrive_out_printf(o,
        "<h2>Workers</h2>\n<table><tr><th>worker</th><th>pid</th>"
        "<th>up</th><th>in flight</th><th>queued</th><th>peak</th>"
        "<th>consumer</th>"
        "<th>results</th><th>dead letters</th><th>retries</th>"
        "<th>cancelled</th><th>memory (RSS)</th><th>partitions held</th>"
        "<th>Kafka member id</th></tr>\n");

    for (i = 0; i < NGX_GDRIVE_MAX_WORKERS; i++) {
        st = &sh->workers[i];

        if (!ngx_gdrive_status_live(st)) {
            continue;
        }

        rss = ngx_gdrive_process_rss((ngx_pid_t) st->pid);

        ngx_http_gdrive_out_printf(o,
            "<tr><td class=\"n\">%ui</td><td class=\"n\">%uA</td>"
            "<td class=\"n\">%T s</td><td class=\"n\">%uA</td>"
            "<td class=\"n\">%uA</td>"
            "<td class=\"n\">%uA</td><td>%s</td><td class=\"n\">%uA</td>"
            "<td class=\"n\">%uA</td><td class=\"n\">%uA</td>"
            "<td class=\"n\">%uA</td><td class=\"n\">%uz MiB</td>"
            "<td class=\"n\">%uA</td><td>",
            i, st->pid, ngx_time() - (time_t) st->started, st->inflight,
            st->queued, st->inflight_peak, st->paused ? "paused" : "fetching",
            st->results, st->dead_letters, st->retries, st->cancelled,
            rss / (1024 * 1024), st->held);

        len = ngx_http_gdrive_member_id(st, id);
        ngx_http_gdrive_out_html(o, id, len);
        ngx_http_gdrive_out_printf(o, "</td></tr>\n");
    }

    ngx_http_gdrive_out_printf(o, "</table>\n");
}


static void
ngx_http_gdrive_html_partitions(ngx_http_gdrive_out_t *o,
    ngx_gdrive_sh_t *sh, ngx_http_gdrive_main_conf_t *gmcf)
{
    ngx_uint_t                   i, j, n, any;
    ngx_gdrive_worker_status_t  *st;

    ngx_http_gdrive_out_printf(o,
        "<h2>Partitions</h2>\n<table><tr><th>topic</th><th>partition</th>"
        "<th>worker</th>"
        "<th>stored offset</th><th>high watermark</th><th>lag</th></tr>\n");

    any = 0;

    for (i = 0; i < NGX_GDRIVE_MAX_WORKERS; i++) {
        st = &sh->workers[i];

        if (!ngx_gdrive_status_live(st)) {
            continue;
        }

        n = ngx_min(st->nparts, NGX_GDRIVE_MAX_PARTITIONS);

        for (j = 0; j < n; j++) {
            any = 1;

            ngx_http_gdrive_out_printf(o, "<tr><td>");
            ngx_http_gdrive_out_html(o, gmcf->kafka_topic.data,
                                     gmcf->kafka_topic.len);
            ngx_http_gdrive_out_printf(o,
                "</td><td class=\"n\">%D</td><td class=\"n\">%ui</td>"
                "<td class=\"n\">%L</td><td class=\"n\">%L</td>",
                st->partitions[j], i, st->stored[j], st->high[j]);

            if (st->lag[j] < 0) {
                ngx_http_gdrive_out_printf(o,
                    "<td class=\"muted\">unknown</td></tr>\n");

            } else {
                ngx_http_gdrive_out_printf(o,
                    "<td class=\"n%s\">%L</td></tr>\n",
                    (ngx_uint_t) st->lag[j] >= gmcf->health_max_lag
                    ? " bad" : "", st->lag[j]);
            }
        }
    }

    if (!any) {
        ngx_http_gdrive_out_printf(o,
            "<tr><td colspan=\"6\" class=\"muted\">no partitions assigned"
            "</td></tr>\n");
    }

    ngx_http_gdrive_out_printf(o, "</table>\n");
}


static void
ngx_http_gdrive_html_jobs(ngx_http_gdrive_out_t *o, ngx_gdrive_sh_t *sh,
    uint64_t now)
{
    uint64_t                     started;
    ngx_uint_t                   i, j, any;
    ngx_gdrive_job_slot_t       *js;
    ngx_gdrive_worker_detail_t  *d;

    ngx_http_gdrive_out_printf(o,
        "<h2>Jobs in flight</h2>\n<table><tr><th>trigger id</th>"
        "<th>worker</th><th>partition</th><th>offset</th><th>stage</th>"
        "<th>age</th></tr>\n");

    any = 0;

    for (i = 0; i < NGX_GDRIVE_MAX_WORKERS; i++) {
        d = sh->details[i];

        if (d == NULL || !ngx_gdrive_status_live(&sh->workers[i])) {
            continue;
        }

        for (j = 0; j < NGX_GDRIVE_STATUS_JOBS; j++) {
            js = &d->jobs[j];
            started = js->started;

            if (started == 0) {
                continue;
            }

            any = 1;

            ngx_http_gdrive_out_printf(o, "<tr><td>");
            ngx_http_gdrive_out_html(o, js->id,
                                     ngx_min(js->id_len,
                                             NGX_GDRIVE_ID_MAX_LEN));
            ngx_http_gdrive_out_printf(o,
                "</td><td class=\"n\">%ui</td><td class=\"n\">%D</td>"
                "<td class=\"n\">%L</td><td>", i, js->partition, js->offset);
            ngx_http_gdrive_out_html(o, (u_char *) js->stage,
                                     ngx_strnlen((u_char *) js->stage,
                                                 sizeof(js->stage)));
            ngx_http_gdrive_out_printf(o,
                "</td><td class=\"n\">%uL.%01uL s</td></tr>\n",
                (now > started ? now - started : 0) / 1000,
                (now > started ? now - started : 0) % 1000 / 100);
        }
    }

    if (!any) {
        ngx_http_gdrive_out_printf(o,
            "<tr><td colspan=\"6\" class=\"muted\">none</td></tr>\n");
    }

    ngx_http_gdrive_out_printf(o, "</table>\n");
}


static void
ngx_http_gdrive_html_messages(ngx_http_gdrive_out_t *o, ngx_gdrive_metrics_t *m)
{
    ngx_uint_t  i, j, any;

    ngx_http_gdrive_out_printf(o,
        "<h2>Messages processed</h2>\n<table><tr><th>outcome</th>"
        "<th>code</th><th>messages</th></tr>\n");

    any = 0;

    for (i = 0; i < NGX_GDRIVE_M_OUTCOMES; i++) {
        for (j = 0; j < NGX_GDRIVE_M_CODES; j++) {
            if (m->jobs[i][j] == 0) {
                continue;
            }

            any = 1;

            ngx_http_gdrive_out_printf(o,
                "<tr><td>%s</td><td>%s</td><td class=\"n\">%uA</td></tr>\n",
                ngx_gdrive_metric_outcomes[i],
                j ? ngx_gdrive_metric_codes[j] : "", m->jobs[i][j]);
        }
    }

    if (!any) {
        ngx_http_gdrive_out_printf(o,
            "<tr><td colspan=\"3\" class=\"muted\">none yet</td></tr>\n");
    }

    ngx_http_gdrive_out_printf(o, "</table>\n");
}


/* the caches and the rate limits, with the limiter's buckets */

static void
ngx_http_gdrive_html_limits(ngx_http_gdrive_out_t *o,
    ngx_gdrive_metrics_t *m, ngx_http_gdrive_main_conf_t *gmcf)
{
    ngx_http_gdrive_out_printf(o,
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

    ngx_http_gdrive_out_printf(o,
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

    ngx_http_gdrive_share_html(o, gmcf);
    ngx_http_gdrive_rate_html(o, o->pool);
}


/* scope=fleet: this instance's share of the global rate */

static void
ngx_http_gdrive_share_html(ngx_http_gdrive_out_t *o,
    ngx_http_gdrive_main_conf_t *gmcf)
{
    ngx_gdrive_rate_snapshot_t  snap;

    if (gmcf->global_scope != NGX_GDRIVE_SCOPE_FLEET
        || ngx_gdrive_rate_snapshot(o->pool, 0, &snap) != NGX_OK)
    {
        return;
    }

    ngx_http_gdrive_out_printf(o,
        "<p>Global rate scope=fleet: this instance's share is "
        "<b>%uL.%03uL/s</b> burst %uL, for <b>%ui of %ui</b> partitions "
        "of the trigger topic held here%s.</p>\n",
        snap.global_rate / 1000, snap.global_rate % 1000, snap.global_burst,
        snap.held, snap.total,
        snap.total ? "" : " (the topic's partition count is not known yet)");
}


static void
ngx_http_gdrive_html_probes(ngx_http_gdrive_out_t *o,
    ngx_gdrive_health_sh_t *hs, ngx_http_gdrive_main_conf_t *gmcf,
    uint64_t now)
{
    ngx_uint_t  i;

    static const char  *probes[NGX_GDRIVE_PROBES] = {
        "token endpoint", "Drive API", "S3 bucket"
    };

    if (gmcf->consumer) {
        ngx_http_gdrive_out_printf(o,
            "<h2>Health probes</h2>\n<table><tr><th>probe</th>"
            "<th>result</th><th>answer</th><th>time</th></tr>\n");

        for (i = 0; i < NGX_GDRIVE_PROBES; i++) {
            if (hs->checked == 0) {
                ngx_http_gdrive_out_printf(o,
                    "<tr><td>%s</td><td class=\"muted\" colspan=\"3\">"
                    "not probed yet (GET the health location)</td></tr>\n",
                    probes[i]);
                continue;
            }

            ngx_http_gdrive_out_printf(o,
                "<tr><td>%s</td><td class=\"%s\">%s</td><td>",
                probes[i], hs->probe[i].ok ? "ok" : "bad",
                hs->probe[i].ok ? "reachable" : "failed");
            ngx_http_gdrive_out_html(o, hs->probe[i].detail,
                                     ngx_strnlen(hs->probe[i].detail,
                                               sizeof(hs->probe[i].detail)));
            ngx_http_gdrive_out_printf(o,
                "</td><td class=\"n\">%uA ms, %uL s ago</td></tr>\n",
                hs->probe[i].ms, (now - hs->checked) / 1000);
        }

        ngx_http_gdrive_out_printf(o, "</table>\n");
    }
}


static void
ngx_http_gdrive_html_errors(ngx_http_gdrive_out_t *o, ngx_gdrive_sh_t *sh)
{
    ngx_uint_t              i, n;
    ngx_http_gdrive_err_t  *all;

    ngx_http_gdrive_out_printf(o,
        "<h2>Recent errors</h2>\n<table><tr><th>time (UTC)</th>"
        "<th>worker</th><th>trigger id</th><th>code</th><th>detail</th>"
        "</tr>\n");

    all = ngx_palloc(o->pool, NGX_GDRIVE_MAX_WORKERS * NGX_GDRIVE_STATUS_ERRORS
                              * sizeof(ngx_http_gdrive_err_t));
    n = 0;

    if (all) {
        n = ngx_http_gdrive_errors_collect(sh, all, NGX_GDRIVE_MAX_WORKERS
                                                    * NGX_GDRIVE_STATUS_ERRORS);
    }

    for (i = 0; i < n; i++) {
        ngx_tm_t  tm;

        ngx_gmtime((time_t) (all[i].e.time / 1000), &tm);

        ngx_http_gdrive_out_printf(o,
            "<tr><td>%4d-%02d-%02d %02d:%02d:%02d</td>"
            "<td class=\"n\">%ui</td><td>",
            tm.ngx_tm_year, tm.ngx_tm_mon, tm.ngx_tm_mday, tm.ngx_tm_hour,
            tm.ngx_tm_min, tm.ngx_tm_sec, all[i].worker);
        ngx_http_gdrive_out_html(o, all[i].e.id, all[i].e.id_len);
        ngx_http_gdrive_out_printf(o, "</td><td>");
        ngx_http_gdrive_out_html(o, (u_char *) all[i].e.code,
                                 ngx_strlen(all[i].e.code));
        ngx_http_gdrive_out_printf(o, "</td><td>");
        ngx_http_gdrive_out_html(o, all[i].e.detail,
                                 ngx_strlen(all[i].e.detail));
        ngx_http_gdrive_out_printf(o, "</td></tr>\n");
    }

    if (n == 0) {
        ngx_http_gdrive_out_printf(o,
            "<tr><td colspan=\"5\" class=\"muted\">none</td></tr>\n");
    }

    ngx_http_gdrive_out_printf(o, "</table>\n");
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
    json_object_set_new(root, "instance",
                        ngx_http_gdrive_str_json(gmcf->instance.data,
                                                 gmcf->instance.len));
    json_object_set_new(root, "conf_file",
                        ngx_http_gdrive_str_json(ngx_cycle->conf_file.data,
                                                 ngx_cycle->conf_file.len));

    cv = curl_version_info(CURLVERSION_NOW);

    v = json_object();
    json_object_set_new(v, "nginx", json_string(NGINX_VERSION));
    json_object_set_new(v, "module", json_string(NGX_GDRIVE_VERSION));
    json_object_set_new(v, "librdkafka",
                        json_string(ngx_gdrive_kafka_version()));
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

        if (!ngx_gdrive_status_live(st)) {
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
