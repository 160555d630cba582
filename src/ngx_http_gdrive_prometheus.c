
/*
 * nginx-gdrive-worker: the metrics location (gdrive_metrics).
 *
 * Locations layer: Prometheus text exposition 0.0.4 of the counters and
 * histograms of ngx_gdrive_metrics.c and the workers' slots.  Counters
 * are the instance's (one copy in the zone for all workers); gauges of a
 * worker carry its number as "worker".  Each metric family is a row of
 * the table below: its name, type and help, and the function that
 * writes its samples.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_gdrive.h"
#include "ngx_gdrive_metrics.h"
#include "ngx_gdrive_ratelimit.h"
#include "ngx_http_gdrive.h"


/* what the families' samples are written from */
typedef struct {
    ngx_http_gdrive_out_t         out;
    ngx_gdrive_sh_t              *sh;
    ngx_gdrive_metrics_t         *m;
    ngx_http_gdrive_main_conf_t  *gmcf;
    /* S3 parts accepted, summed as their requests are written */
    ngx_uint_t                    parts;
} ngx_http_gdrive_prom_t;


typedef struct ngx_http_gdrive_family_s  ngx_http_gdrive_family_t;

typedef void (*ngx_http_gdrive_samples_pt)(ngx_http_gdrive_prom_t *p,
    ngx_http_gdrive_family_t *f);

struct ngx_http_gdrive_family_s {
    const char                   *name;
    const char                   *type;
    const char                   *help;
    ngx_http_gdrive_samples_pt    samples;
    /* an offset or an index, as the sampler reads it */
    size_t                        arg;
    /* NULL: always shown; else whether the family is shown now */
    ngx_uint_t                  (*shown)(ngx_http_gdrive_prom_t *p);
};


static void ngx_http_gdrive_prom_build(ngx_http_gdrive_prom_t *p,
    ngx_http_gdrive_family_t *f);
static void ngx_http_gdrive_prom_triggers(ngx_http_gdrive_prom_t *p,
    ngx_http_gdrive_family_t *f);
static void ngx_http_gdrive_prom_jobs(ngx_http_gdrive_prom_t *p,
    ngx_http_gdrive_family_t *f);
static void ngx_http_gdrive_prom_retries(ngx_http_gdrive_prom_t *p,
    ngx_http_gdrive_family_t *f);
static void ngx_http_gdrive_prom_job_duration(ngx_http_gdrive_prom_t *p,
    ngx_http_gdrive_family_t *f);
static void ngx_http_gdrive_prom_lag(ngx_http_gdrive_prom_t *p,
    ngx_http_gdrive_family_t *f);
static void ngx_http_gdrive_prom_gauge(ngx_http_gdrive_prom_t *p,
    ngx_http_gdrive_family_t *f);
static void ngx_http_gdrive_prom_rss(ngx_http_gdrive_prom_t *p,
    ngx_http_gdrive_family_t *f);
static void ngx_http_gdrive_prom_google(ngx_http_gdrive_prom_t *p,
    ngx_http_gdrive_family_t *f);
static void ngx_http_gdrive_prom_google_duration(ngx_http_gdrive_prom_t *p,
    ngx_http_gdrive_family_t *f);
static void ngx_http_gdrive_prom_rate_waits(ngx_http_gdrive_prom_t *p,
    ngx_http_gdrive_family_t *f);
static void ngx_http_gdrive_prom_rate_evictions(ngx_http_gdrive_prom_t *p,
    ngx_http_gdrive_family_t *f);
static void ngx_http_gdrive_prom_refreshes(ngx_http_gdrive_prom_t *p,
    ngx_http_gdrive_family_t *f);
static void ngx_http_gdrive_prom_cache(ngx_http_gdrive_prom_t *p,
    ngx_http_gdrive_family_t *f);
static void ngx_http_gdrive_prom_s3(ngx_http_gdrive_prom_t *p,
    ngx_http_gdrive_family_t *f);
static void ngx_http_gdrive_prom_s3_parts(ngx_http_gdrive_prom_t *p,
    ngx_http_gdrive_family_t *f);
static void ngx_http_gdrive_prom_value(ngx_http_gdrive_prom_t *p,
    ngx_http_gdrive_family_t *f);
static void ngx_http_gdrive_prom_probes(ngx_http_gdrive_prom_t *p,
    ngx_http_gdrive_family_t *f);
static ngx_uint_t ngx_http_gdrive_prom_probed(ngx_http_gdrive_prom_t *p);
static void ngx_http_gdrive_prom_member(ngx_http_gdrive_prom_t *p,
    ngx_http_gdrive_family_t *f);
static void ngx_http_gdrive_prom_label(ngx_http_gdrive_out_t *o, u_char *s,
    size_t len);
static void ngx_http_gdrive_prom_share(ngx_http_gdrive_prom_t *p,
    ngx_http_gdrive_family_t *f);
static void ngx_http_gdrive_prom_topic(ngx_http_gdrive_prom_t *p,
    ngx_http_gdrive_family_t *f);
static void ngx_http_gdrive_prom_histogram(ngx_http_gdrive_out_t *o,
    const char *name, const char *labels, ngx_gdrive_histogram_t *h);


#define ngx_http_gdrive_slot(field)                                           \
    offsetof(ngx_gdrive_worker_status_t, field)
#define ngx_http_gdrive_zone(field)                                           \
    offsetof(ngx_gdrive_sh_t, field)


static ngx_http_gdrive_family_t  ngx_http_gdrive_families[] = {

    { "gdrive_build_info", "gauge",
      "The module's version and nginx's.",
      ngx_http_gdrive_prom_build, 0, NULL },

    { "gdrive_triggers_received_total", "counter",
      "Triggers received over HTTP by the status of the answer: 202 counts "
      "each accepted trigger, a refusal counts its request once.",
      ngx_http_gdrive_prom_triggers, 0, NULL },

    { "gdrive_messages_processed_total", "counter",
      "Kafka messages that ended, by outcome and error code.",
      ngx_http_gdrive_prom_jobs, 0, NULL },

    { "gdrive_message_retries_total", "counter",
      "Transient failures retried with backoff, by error code.",
      ngx_http_gdrive_prom_retries, 0, NULL },

    { "gdrive_processing_duration_seconds", "histogram",
      "Time from a message's arrival to its end (result or DLQ record "
      "acknowledged).",
      ngx_http_gdrive_prom_job_duration, 0, NULL },

    { "gdrive_consumer_lag", "gauge",
      "Messages of a partition not yet processed (high watermark minus "
      "stored offset).",
      ngx_http_gdrive_prom_lag, 0, NULL },

    { "gdrive_jobs_in_flight", "gauge",
      "Messages a worker is processing (running, or waiting on a backoff "
      "or the rate limiter).",
      ngx_http_gdrive_prom_gauge, ngx_http_gdrive_slot(inflight), NULL },

    { "gdrive_jobs_queued", "gauge",
      "Messages a worker has taken and will start when a running job "
      "ends.",
      ngx_http_gdrive_prom_gauge, ngx_http_gdrive_slot(queued), NULL },

    { "gdrive_jobs_taken_bytes", "gauge",
      "Bytes of the messages a worker has taken (running and queued), "
      "held under gdrive_max_queued_bytes.",
      ngx_http_gdrive_prom_gauge, ngx_http_gdrive_slot(taken_bytes), NULL },

    { "gdrive_consumer_paused", "gauge",
      "Whether a worker's consumer is paused by backpressure (1) or "
      "fetching (0).",
      ngx_http_gdrive_prom_gauge, ngx_http_gdrive_slot(paused), NULL },

    { "gdrive_http_requests_waiting", "gauge",
      "Outbound requests a worker holds back: past the per_host of "
      "gdrive_max_connections, requests at once to one host.",
      ngx_http_gdrive_prom_gauge, ngx_http_gdrive_slot(http_waiting), NULL },

    { "gdrive_http_requests_waited_total", "counter",
      "Outbound requests that waited past per_host.",
      ngx_http_gdrive_prom_gauge, ngx_http_gdrive_slot(http_waited), NULL },

    { "gdrive_worker_resident_memory_bytes", "gauge",
      "Resident memory of a worker process.",
      ngx_http_gdrive_prom_rss, 0, NULL },

    { "gdrive_google_requests_total", "counter",
      "Requests to Google and the control plane by endpoint and HTTP "
      "status (0: not answered).",
      ngx_http_gdrive_prom_google, 0, NULL },

    { "gdrive_google_request_duration_seconds", "histogram",
      "Duration of requests to Google and the control plane, by endpoint.",
      ngx_http_gdrive_prom_google_duration, 0, NULL },

    { "gdrive_ratelimit_waits_total", "counter",
      "Drive requests that waited for a rate limit token, by the limit "
      "(integration or global).",
      ngx_http_gdrive_prom_rate_waits, 0, NULL },

    { "gdrive_ratelimit_wait_seconds_total", "counter",
      "Time spent waiting for rate limit tokens.",
      ngx_http_gdrive_prom_rate_waits, 1, NULL },

    { "gdrive_ratelimit_evictions_total", "counter",
      "Rate limit buckets dropped from the shared zone, by cause: expired "
      "(idle and empty), lru (a live bucket for a newcomer; held ones "
      "never are).",
      ngx_http_gdrive_prom_rate_evictions, 0, NULL },

    { "gdrive_ratelimit_refused_total", "counter",
      "Drive requests of an integration without a bucket told to wait: "
      "the zone's buckets all hold Retry-After waits or quota circuits.",
      ngx_http_gdrive_prom_value, ngx_http_gdrive_zone(rate.refused),
      NULL },

    { "gdrive_holds_relearned_total", "counter",
      "Retry-After holds and quota circuits learned again by this "
      "instance: the first hold learned on a partition after it was "
      "assigned here, within the hold's length of the assignment.",
      ngx_http_gdrive_prom_value,
      ngx_http_gdrive_zone(metrics.holds_relearned), NULL },

    { "gdrive_global_rate_share", "gauge",
      "Drive requests per second this instance may make under "
      "gdrive_global_rate_limit: all of it with scope=host, its share "
      "with scope=fleet.",
      ngx_http_gdrive_prom_share, 0, NULL },

    { "gdrive_topic_partitions", "gauge",
      "Partitions of the trigger topic, as the workers' producers last "
      "learned (absent: not known yet).",
      ngx_http_gdrive_prom_topic, 0, NULL },

    { "gdrive_partitions_assigned", "gauge",
      "Partitions of the trigger topic a worker holds in the consumer "
      "group.",
      ngx_http_gdrive_prom_gauge, ngx_http_gdrive_slot(held), NULL },

    { "gdrive_member_info", "gauge",
      "A worker's member id in the consumer group and its instance "
      "(gdrive_instance); 1 while it is a member.",
      ngx_http_gdrive_prom_member, 0, NULL },

    { "gdrive_token_refreshes_total", "counter",
      "OAuth access token refreshes by result.",
      ngx_http_gdrive_prom_refreshes, 0, NULL },

    { "gdrive_cache_hits_total", "counter",
      "Lookups answered by a shared cache.",
      ngx_http_gdrive_prom_cache, 0, NULL },

    { "gdrive_cache_misses_total", "counter",
      "Lookups a shared cache could not answer.",
      ngx_http_gdrive_prom_cache, 1, NULL },

    { "gdrive_cache_evictions_total", "counter",
      "Entries dropped to make room in a shared cache.",
      ngx_http_gdrive_prom_cache, 2, NULL },

    { "gdrive_s3_requests_total", "counter",
      "Requests to S3 by operation and HTTP status (0: not answered).",
      ngx_http_gdrive_prom_s3, 0, NULL },

    /* summed while gdrive_s3_requests_total is written: keep it after */
    { "gdrive_s3_parts_uploaded_total", "counter",
      "Multipart upload parts that S3 accepted.",
      ngx_http_gdrive_prom_s3_parts, 0, NULL },

    { "gdrive_s3_uploaded_bytes_total", "counter",
      "Bytes of content written to S3.",
      ngx_http_gdrive_prom_value, ngx_http_gdrive_zone(metrics.s3_bytes),
      NULL },

    { "gdrive_dlq_records_produced_total", "counter",
      "Messages sent to the dead-letter topic (acknowledged).",
      ngx_http_gdrive_prom_value, ngx_http_gdrive_zone(metrics.dlq[0]),
      NULL },

    { "gdrive_dlq_records_replayed_total", "counter",
      "Dead letters replayed onto the trigger topic (acknowledged).",
      ngx_http_gdrive_prom_value, ngx_http_gdrive_zone(metrics.dlq[1]),
      NULL },

    { "gdrive_dlq_records_dropped_total", "counter",
      "Messages whose dead letter the dead-letter topic refused even cut "
      "to 1 KiB (offset stored).",
      ngx_http_gdrive_prom_value, ngx_http_gdrive_zone(metrics.dlq[2]),
      NULL },

    { "gdrive_health_probe_up", "gauge",
      "Whether gdrive_health's last probe reached the service (any answer "
      "below 500).",
      ngx_http_gdrive_prom_probes, 0, ngx_http_gdrive_prom_probed },

    { NULL, NULL, NULL, NULL, 0, NULL }
};


ngx_int_t
ngx_http_gdrive_metrics_handler(ngx_http_request_t *r)
{
    ngx_http_gdrive_prom_t     p;
    ngx_http_gdrive_family_t  *f;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return ngx_http_gdrive_send_error(r, NGX_HTTP_NOT_ALLOWED,
                                          "method_not_allowed",
                                          "use GET or HEAD");
    }

    ngx_memzero(&p, sizeof(ngx_http_gdrive_prom_t));

    p.out.pool = r->pool;
    p.gmcf = ngx_http_get_module_main_conf(r, ngx_http_gdrive_worker_module);
    p.sh = ngx_gdrive_shm(p.gmcf);
    p.m = &p.sh->metrics;

    for (f = ngx_http_gdrive_families; f->name; f++) {
        if (f->shown && !f->shown(&p)) {
            continue;
        }

        ngx_http_gdrive_out_printf(&p.out, "# HELP %s %s\n# TYPE %s %s\n",
                                   f->name, f->help, f->name, f->type);
        f->samples(&p, f);
    }

    return ngx_http_gdrive_out_send(r, &p.out, NGX_HTTP_OK,
                                    "text/plain; version=0.0.4; "
                                    "charset=utf-8");
}


static void
ngx_http_gdrive_prom_build(ngx_http_gdrive_prom_t *p,
    ngx_http_gdrive_family_t *f)
{
    ngx_http_gdrive_out_printf(&p->out,
                               "%s{version=\"%s\",nginx=\"%s\"} 1\n",
                               f->name, NGX_GDRIVE_VERSION, NGINX_VERSION);
}


static void
ngx_http_gdrive_prom_triggers(ngx_http_gdrive_prom_t *p,
    ngx_http_gdrive_family_t *f)
{
    ngx_uint_t  i, s;

    for (i = 0; i < NGX_GDRIVE_M_TRIGGER_ST; i++) {
        s = ngx_gdrive_metric_trigger_st[i];

        if (s) {
            ngx_http_gdrive_out_printf(&p->out, "%s{status=\"%ui\"} %uA\n",
                                       f->name, s, p->m->triggers[i]);

        } else {
            ngx_http_gdrive_out_printf(&p->out,
                                       "%s{status=\"other\"} %uA\n",
                                       f->name, p->m->triggers[i]);
        }
    }
}


/* every outcome with "none" even at 0; error codes once they occurred */

static void
ngx_http_gdrive_prom_jobs(ngx_http_gdrive_prom_t *p,
    ngx_http_gdrive_family_t *f)
{
    ngx_uint_t         i, j;
    ngx_atomic_uint_t  v;

    for (i = 0; i < NGX_GDRIVE_M_OUTCOMES; i++) {
        for (j = 0; j < NGX_GDRIVE_M_CODES; j++) {
            v = p->m->jobs[i][j];

            if (v == 0 && j != 0) {
                continue;
            }

            ngx_http_gdrive_out_printf(&p->out,
                                       "%s{outcome=\"%s\",code=\"%s\"} %uA\n",
                                       f->name,
                                       ngx_gdrive_metric_outcomes[i],
                                       ngx_gdrive_metric_codes[j], v);
        }
    }
}


static void
ngx_http_gdrive_prom_retries(ngx_http_gdrive_prom_t *p,
    ngx_http_gdrive_family_t *f)
{
    ngx_uint_t  j;

    for (j = 0; j < NGX_GDRIVE_M_CODES; j++) {
        ngx_http_gdrive_out_printf(&p->out, "%s{code=\"%s\"} %uA\n",
                                   f->name, ngx_gdrive_metric_codes[j],
                                   p->m->retries[j]);
    }
}


static void
ngx_http_gdrive_prom_job_duration(ngx_http_gdrive_prom_t *p,
    ngx_http_gdrive_family_t *f)
{
    ngx_http_gdrive_prom_histogram(&p->out, f->name, "",
                                   &p->m->job_duration);
}


static void
ngx_http_gdrive_prom_lag(ngx_http_gdrive_prom_t *p,
    ngx_http_gdrive_family_t *f)
{
    ngx_uint_t                   i, j;
    ngx_atomic_uint_t            parts;
    ngx_gdrive_worker_status_t  *st;

    for (i = 0; i < NGX_GDRIVE_MAX_WORKERS; i++) {
        st = &p->sh->workers[i];

        if (!ngx_gdrive_status_live(st)) {
            continue;
        }

        parts = ngx_min(st->nparts, NGX_GDRIVE_MAX_PARTITIONS);

        for (j = 0; j < parts; j++) {
            if (st->lag[j] < 0) {
                continue;
            }

            ngx_http_gdrive_out_printf(&p->out,
                "%s{partition=\"%D\",worker=\"%ui\"} %L\n",
                f->name, st->partitions[j], i, st->lag[j]);
        }
    }
}


/* an ngx_atomic_t of each live worker's slot, at the offset arg */

static void
ngx_http_gdrive_prom_gauge(ngx_http_gdrive_prom_t *p,
    ngx_http_gdrive_family_t *f)
{
    ngx_uint_t                   i;
    ngx_gdrive_worker_status_t  *st;

    for (i = 0; i < NGX_GDRIVE_MAX_WORKERS; i++) {
        st = &p->sh->workers[i];

        if (ngx_gdrive_status_live(st)) {
            ngx_http_gdrive_out_printf(&p->out, "%s{worker=\"%ui\"} %uA\n",
                f->name, i, *(ngx_atomic_t *) ((u_char *) st + f->arg));
        }
    }
}


static void
ngx_http_gdrive_prom_rss(ngx_http_gdrive_prom_t *p,
    ngx_http_gdrive_family_t *f)
{
    size_t                       rss;
    ngx_uint_t                   i;
    ngx_gdrive_worker_status_t  *st;

    for (i = 0; i < NGX_GDRIVE_MAX_WORKERS; i++) {
        st = &p->sh->workers[i];

        if (!ngx_gdrive_status_live(st)) {
            continue;
        }

        rss = ngx_gdrive_process_rss((ngx_pid_t) st->pid);

        if (rss) {
            ngx_http_gdrive_out_printf(&p->out, "%s{worker=\"%ui\"} %uz\n",
                                       f->name, i, rss);
        }
    }
}


static void
ngx_http_gdrive_prom_google(ngx_http_gdrive_prom_t *p,
    ngx_http_gdrive_family_t *f)
{
    ngx_uint_t         i, j;
    ngx_atomic_uint_t  v;

    for (i = 0; i < NGX_GDRIVE_M_ENDPOINTS; i++) {
        for (j = 0; j < NGX_GDRIVE_M_HTTP_ST; j++) {
            v = p->m->google[i][j];

            if (v == 0) {
                continue;
            }

            if (j == NGX_GDRIVE_M_HTTP_ST - 1) {
                ngx_http_gdrive_out_printf(&p->out,
                    "%s{endpoint=\"%s\",status=\"other\"} %uA\n",
                    f->name, ngx_gdrive_metric_endpoints[i], v);

            } else {
                ngx_http_gdrive_out_printf(&p->out,
                    "%s{endpoint=\"%s\",status=\"%ui\"} %uA\n",
                    f->name, ngx_gdrive_metric_endpoints[i],
                    ngx_gdrive_metric_http_st[j], v);
            }
        }
    }
}


static void
ngx_http_gdrive_prom_google_duration(ngx_http_gdrive_prom_t *p,
    ngx_http_gdrive_family_t *f)
{
    u_char      labels[128];
    ngx_uint_t  i;

    for (i = 0; i < NGX_GDRIVE_M_ENDPOINTS; i++) {
        if (p->m->google_duration[i].count == 0) {
            continue;
        }

        *ngx_snprintf(labels, sizeof(labels) - 1, "endpoint=\"%s\",",
                      ngx_gdrive_metric_endpoints[i]) = '\0';
        ngx_http_gdrive_prom_histogram(&p->out, f->name, (char *) labels,
                                       &p->m->google_duration[i]);
    }
}


/* arg 0: the waits; 1: the time waited, in seconds */

static void
ngx_http_gdrive_prom_rate_waits(ngx_http_gdrive_prom_t *p,
    ngx_http_gdrive_family_t *f)
{
    ngx_uint_t         i;
    ngx_atomic_uint_t  v;

    static const char  *scopes[2] = { "integration", "global" };

    for (i = 0; i < 2; i++) {
        if (f->arg == 0) {
            ngx_http_gdrive_out_printf(&p->out, "%s{scope=\"%s\"} %uA\n",
                                       f->name, scopes[i],
                                       p->m->ratelimit_waits[i]);
            continue;
        }

        v = p->m->ratelimit_wait_ms[i];
        ngx_http_gdrive_out_printf(&p->out, "%s{scope=\"%s\"} %uA.%03uA\n",
                                   f->name, scopes[i], v / 1000, v % 1000);
    }
}


static void
ngx_http_gdrive_prom_rate_evictions(ngx_http_gdrive_prom_t *p,
    ngx_http_gdrive_family_t *f)
{
    ngx_http_gdrive_out_printf(&p->out,
                               "%s{cause=\"expired\"} %uA\n"
                               "%s{cause=\"lru\"} %uA\n",
                               f->name, p->sh->rate.expired,
                               f->name, p->sh->rate.evictions);
}


static void
ngx_http_gdrive_prom_refreshes(ngx_http_gdrive_prom_t *p,
    ngx_http_gdrive_family_t *f)
{
    ngx_uint_t  i;

    for (i = 0; i < NGX_GDRIVE_M_REFRESH; i++) {
        ngx_http_gdrive_out_printf(&p->out, "%s{result=\"%s\"} %uA\n",
                                   f->name, ngx_gdrive_metric_refresh[i],
                                   p->m->token_refresh[i]);
    }
}


/* the event arg (hit, miss, eviction) of each cache but "other" */

static void
ngx_http_gdrive_prom_cache(ngx_http_gdrive_prom_t *p,
    ngx_http_gdrive_family_t *f)
{
    ngx_uint_t  i;

    for (i = 0; i < NGX_GDRIVE_M_CACHES - 1; i++) {
        ngx_http_gdrive_out_printf(&p->out, "%s{cache=\"%s\"} %uA\n",
                                   f->name, ngx_gdrive_metric_caches[i],
                                   p->m->cache[i][f->arg]);
    }
}


static void
ngx_http_gdrive_prom_s3(ngx_http_gdrive_prom_t *p,
    ngx_http_gdrive_family_t *f)
{
    ngx_uint_t         i, j;
    ngx_atomic_uint_t  v;

    for (i = 0; i < NGX_GDRIVE_M_S3_OPS; i++) {
        for (j = 0; j < NGX_GDRIVE_M_HTTP_ST; j++) {
            v = p->m->s3[i][j];

            if (v == 0) {
                continue;
            }

            /* the parts counted from the same reads as their lines */
            if (ngx_strcmp(ngx_gdrive_metric_s3_ops[i], "part") == 0
                && ngx_gdrive_metric_http_st[j] >= 200
                && ngx_gdrive_metric_http_st[j] < 300)
            {
                p->parts += v;
            }

            if (j == NGX_GDRIVE_M_HTTP_ST - 1) {
                ngx_http_gdrive_out_printf(&p->out,
                    "%s{op=\"%s\",status=\"other\"} %uA\n",
                    f->name, ngx_gdrive_metric_s3_ops[i], v);

            } else {
                ngx_http_gdrive_out_printf(&p->out,
                    "%s{op=\"%s\",status=\"%ui\"} %uA\n",
                    f->name, ngx_gdrive_metric_s3_ops[i],
                    ngx_gdrive_metric_http_st[j], v);
            }
        }
    }
}


static void
ngx_http_gdrive_prom_s3_parts(ngx_http_gdrive_prom_t *p,
    ngx_http_gdrive_family_t *f)
{
    ngx_http_gdrive_out_printf(&p->out, "%s %ui\n", f->name, p->parts);
}


/* one sample without labels: an ngx_atomic_t of the zone at offset arg */

static void
ngx_http_gdrive_prom_value(ngx_http_gdrive_prom_t *p,
    ngx_http_gdrive_family_t *f)
{
    ngx_http_gdrive_out_printf(&p->out, "%s %uA\n", f->name,
                               *(ngx_atomic_t *) ((u_char *) p->sh + f->arg));
}


static void
ngx_http_gdrive_prom_share(ngx_http_gdrive_prom_t *p,
    ngx_http_gdrive_family_t *f)
{
    ngx_gdrive_rate_snapshot_t  snap;

    if (ngx_gdrive_rate_snapshot(p->out.pool, 0, &snap) == NGX_OK) {
        ngx_http_gdrive_out_printf(&p->out, "%s %uL.%03uL\n", f->name,
                                   snap.global_rate / 1000,
                                   snap.global_rate % 1000);
    }
}


static void
ngx_http_gdrive_prom_topic(ngx_http_gdrive_prom_t *p,
    ngx_http_gdrive_family_t *f)
{
    ngx_uint_t                   i;
    ngx_atomic_uint_t            n;
    ngx_gdrive_worker_status_t  *st;

    n = 0;

    for (i = 0; i < NGX_GDRIVE_MAX_WORKERS; i++) {
        st = &p->sh->workers[i];

        if (ngx_gdrive_status_live(st)) {
            n = ngx_max(n, st->topic_partitions);
        }
    }

    if (n) {
        ngx_http_gdrive_out_printf(&p->out, "%s %uA\n", f->name, n);
    }
}


static void
ngx_http_gdrive_prom_member(ngx_http_gdrive_prom_t *p,
    ngx_http_gdrive_family_t *f)
{
    u_char                       id[NGX_GDRIVE_MEMBER_ID_LEN];
    ngx_uint_t                   i;
    ngx_gdrive_worker_status_t  *st;

    for (i = 0; i < NGX_GDRIVE_MAX_WORKERS; i++) {
        st = &p->sh->workers[i];

        if (!ngx_gdrive_status_live(st) || st->member_id[0] == '\0') {
            continue;
        }

        /* a copy: the worker may rewrite its slot meanwhile */
        ngx_memcpy(id, st->member_id, NGX_GDRIVE_MEMBER_ID_LEN);
        id[NGX_GDRIVE_MEMBER_ID_LEN - 1] = '\0';

        ngx_http_gdrive_out_printf(&p->out, "%s{worker=\"%ui\",member_id=\"",
                                   f->name, i);
        ngx_http_gdrive_prom_label(&p->out, id, ngx_strlen(id));
        ngx_http_gdrive_out_printf(&p->out, "\",host=\"");
        ngx_http_gdrive_prom_label(&p->out, p->gmcf->instance.data,
                                   p->gmcf->instance.len);
        ngx_http_gdrive_out_printf(&p->out, "\"} 1\n");
    }
}


/* a label value: backslash, quote and newline escaped, as 0.0.4 wants */

static void
ngx_http_gdrive_prom_label(ngx_http_gdrive_out_t *o, u_char *s, size_t len)
{
    u_char  *p, *last, *start;

    start = s;
    last = s + len;

    for (p = s; p < last; p++) {
        if (*p != '\\' && *p != '"' && *p != '\n') {
            continue;
        }

        ngx_http_gdrive_out_printf(o, "%*s\\%c", (size_t) (p - start),
                                   start, *p == '\n' ? 'n' : *p);
        start = p + 1;
    }

    ngx_http_gdrive_out_printf(o, "%*s", (size_t) (last - start), start);
}


static void
ngx_http_gdrive_prom_probes(ngx_http_gdrive_prom_t *p,
    ngx_http_gdrive_family_t *f)
{
    ngx_uint_t               i;
    ngx_gdrive_health_sh_t  *hs;

    static const char  *probes[NGX_GDRIVE_PROBES] = {
        "token_endpoint", "drive_api", "s3_bucket"
    };

    hs = &p->sh->health;

    for (i = 0; i < NGX_GDRIVE_PROBES; i++) {
        ngx_http_gdrive_out_printf(&p->out, "%s{probe=\"%s\"} %ui\n",
                                   f->name, probes[i],
                                   hs->probe[i].ok ? 1 : 0);
    }
}


/* the probes' answers exist once gdrive_health has run a round */

static ngx_uint_t
ngx_http_gdrive_prom_probed(ngx_http_gdrive_prom_t *p)
{
    return p->gmcf->consumer && p->sh->health.checked;
}


static void
ngx_http_gdrive_prom_histogram(ngx_http_gdrive_out_t *o, const char *name,
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
