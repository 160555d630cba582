
/*
 * nginx-gdrive-worker: gdrive_health's probes of Google and S3.
 *
 * Client layer: one round of three requests (the token endpoint, the
 * Drive API, the S3 bucket) asks only whether each answers, without
 * credentials: any HTTP answer below 500 means "reachable" (401, 403,
 * 405 included).  The answers are kept in the shared zone for
 * gdrive_health_interval; when they are stale the worker serving a
 * health request runs the next round on its event loop, and no other
 * worker starts one meanwhile.  The requests are bounded by
 * gdrive_health_timeout.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>

#include "ngx_gdrive.h"
#include "ngx_gdrive_http.h"
#include "ngx_gdrive_probe.h"


typedef struct {
    ngx_pool_t              *pool;
    ngx_gdrive_http_t       *http[NGX_GDRIVE_PROBES];
    ngx_uint_t               pending;
    ngx_event_t              free;
    ngx_log_t               *log;
} ngx_gdrive_probe_round_t;


static ngx_int_t ngx_gdrive_probe_start(ngx_http_gdrive_main_conf_t *gmcf,
    ngx_gdrive_health_sh_t *hs);
static ngx_int_t ngx_gdrive_probe_send(ngx_gdrive_probe_round_t *round,
    ngx_http_gdrive_main_conf_t *gmcf, ngx_uint_t i, const char *method,
    ngx_str_t *url, const char *what);
static void ngx_gdrive_probe_done(ngx_gdrive_http_t *h);
static void ngx_gdrive_probe_set(ngx_gdrive_probe_t *p, long status,
    ngx_uint_t ok, ngx_msec_t ms, const char *detail);
static void ngx_gdrive_probe_end(ngx_gdrive_health_sh_t *hs);
static void ngx_gdrive_probe_free(ngx_event_t *ev);


static ngx_gdrive_probe_round_t      ngx_gdrive_probe_round;

/* what init gave this worker */
static ngx_http_gdrive_main_conf_t  *ngx_gdrive_probe_conf;
static ngx_gdrive_health_sh_t       *ngx_gdrive_probe_answers;


void
ngx_gdrive_probe_init(ngx_http_gdrive_main_conf_t *gmcf)
{
    ngx_gdrive_probe_conf = gmcf;
    ngx_gdrive_probe_answers = &ngx_gdrive_shm(gmcf)->health;
}


ngx_int_t
ngx_gdrive_probe_fresh(void)
{
    uint64_t                      now;
    ngx_pid_t                     pid;
    ngx_gdrive_health_sh_t       *hs;
    ngx_http_gdrive_main_conf_t  *gmcf;

    gmcf = ngx_gdrive_probe_conf;
    hs = ngx_gdrive_probe_answers;
    now = ngx_gdrive_epoch_ms();

    if (hs->checked && now - hs->checked < gmcf->health_interval) {
        return NGX_OK;
    }

    pid = (ngx_pid_t) hs->probing;

    if (pid) {
        if (pid == ngx_pid && ngx_gdrive_probe_round.pending) {
            return NGX_AGAIN;
        }

        /* a round of a worker that died, or that never ended, is over */

        if (pid != ngx_pid && kill(pid, 0) == 0
            && now - hs->started < 2 * gmcf->health_timeout + 1000)
        {
            return NGX_AGAIN;
        }

        if (!ngx_atomic_cmp_set(&hs->probing, pid, ngx_pid)) {
            return NGX_AGAIN;
        }

    } else if (!ngx_atomic_cmp_set(&hs->probing, 0, ngx_pid)) {
        return NGX_AGAIN;
    }

    hs->started = now;

    if (ngx_gdrive_probe_start(gmcf, hs) != NGX_OK) {
        ngx_gdrive_probe_end(hs);
        return NGX_OK;
    }

    return NGX_AGAIN;
}


static ngx_int_t
ngx_gdrive_probe_start(ngx_http_gdrive_main_conf_t *gmcf,
    ngx_gdrive_health_sh_t *hs)
{
    u_char                    *p, *host;
    ngx_str_t                  url;
    ngx_uint_t                 i;
    ngx_gdrive_probe_round_t  *round;

    round = &ngx_gdrive_probe_round;

    if (round->pool) {
        /* the last round's memory is still waiting for its posted free */
        ngx_gdrive_probe_free(&round->free);
    }

    round->log = ngx_cycle->log;
    round->pending = 0;

    round->pool = ngx_create_pool(4096, round->log);
    if (round->pool == NULL) {
        goto failed;
    }

    url.len = gmcf->google_token_url.len;
    url.data = gmcf->google_token_url.data;

    if (ngx_gdrive_probe_send(round, gmcf, NGX_GDRIVE_PROBE_TOKEN, NULL,
                              &url, "health probe: token endpoint")
        != NGX_OK)
    {
        goto failed;
    }

    url.len = gmcf->google_api_url.len + sizeof("/drive/v3/about?fields=kind");
    url.data = ngx_pnalloc(round->pool, url.len);
    if (url.data == NULL) {
        goto failed;
    }

    url.len = ngx_sprintf(url.data, "%V/drive/v3/about?fields=kind",
                          &gmcf->google_api_url) - url.data;

    if (ngx_gdrive_probe_send(round, gmcf, NGX_GDRIVE_PROBE_DRIVE, NULL,
                              &url, "health probe: Drive API")
        != NGX_OK)
    {
        goto failed;
    }

    if (gmcf->s3_bucket.len == 0) {
        ngx_gdrive_probe_set(&hs->probe[NGX_GDRIVE_PROBE_S3], 0, 1, 0,
                             "no bucket configured");
        return NGX_OK;
    }

    /* the bucket's URL as the S3 client makes it, path or host style */

    url.data = ngx_pnalloc(round->pool, gmcf->s3_endpoint.len
                                        + gmcf->s3_bucket.len + 2);
    if (url.data == NULL) {
        goto failed;
    }

    if (gmcf->s3_path_style) {
        p = ngx_sprintf(url.data, "%V/%V", &gmcf->s3_endpoint,
                        &gmcf->s3_bucket);

    } else {
        host = ngx_strlcasestrn(gmcf->s3_endpoint.data,
                                gmcf->s3_endpoint.data
                                + gmcf->s3_endpoint.len,
                                (u_char *) "://", 3 - 1);
        if (host == NULL) {
            goto failed;
        }

        host += 3;
        p = ngx_cpymem(url.data, gmcf->s3_endpoint.data,
                       host - gmcf->s3_endpoint.data);
        p = ngx_sprintf(p, "%V.", &gmcf->s3_bucket);
        p = ngx_cpymem(p, host,
                       gmcf->s3_endpoint.data + gmcf->s3_endpoint.len - host);
    }

    url.len = p - url.data;

    if (ngx_gdrive_probe_send(round, gmcf, NGX_GDRIVE_PROBE_S3, "HEAD",
                              &url, "health probe: S3 bucket")
        != NGX_OK)
    {
        goto failed;
    }

    return NGX_OK;

failed:

    for (i = 0; i < NGX_GDRIVE_PROBES; i++) {
        if (round->http[i]) {
            ngx_gdrive_http_cancel(round->http[i]);
            round->http[i] = NULL;
        }
    }

    round->pending = 0;

    ngx_gdrive_probe_set(&hs->probe[NGX_GDRIVE_PROBE_TOKEN], 0, 0, 0,
                         "the probe could not start");
    ngx_gdrive_probe_set(&hs->probe[NGX_GDRIVE_PROBE_DRIVE], 0, 0, 0,
                         "the probe could not start");
    ngx_gdrive_probe_set(&hs->probe[NGX_GDRIVE_PROBE_S3], 0, 0, 0,
                         "the probe could not start");

    if (round->pool) {
        ngx_destroy_pool(round->pool);
        round->pool = NULL;
    }

    return NGX_ERROR;
}


static ngx_int_t
ngx_gdrive_probe_send(ngx_gdrive_probe_round_t *round,
    ngx_http_gdrive_main_conf_t *gmcf, ngx_uint_t i, const char *method,
    ngx_str_t *url, const char *what)
{
    char               *u;
    ngx_gdrive_http_t  *h;

    u = ngx_pnalloc(round->pool, url->len + 1);
    h = ngx_gdrive_http_create(round->pool, round->log, 16 * 1024);

    if (u == NULL || h == NULL) {
        return NGX_ERROR;
    }

    ngx_cpystrn((u_char *) u, url->data, url->len + 1);

    h->handler = ngx_gdrive_probe_done;
    h->data = (void *) i;
    h->what = what;
    h->method = method;
    h->no_wait = 1;

    curl_easy_setopt(h->easy, CURLOPT_TIMEOUT_MS,
                     (long) gmcf->health_timeout);
    curl_easy_setopt(h->easy, CURLOPT_CONNECTTIMEOUT_MS,
                     (long) gmcf->health_timeout);

    if (ngx_gdrive_http_start(h, u) != NGX_OK) {
        return NGX_ERROR;
    }

    round->http[i] = h;
    round->pending++;

    return NGX_OK;
}


static void
ngx_gdrive_probe_done(ngx_gdrive_http_t *h)
{
    char                      detail[96];
    ngx_uint_t                i, ok;
    ngx_gdrive_health_sh_t   *hs;
    ngx_gdrive_probe_round_t *round;

    round = &ngx_gdrive_probe_round;
    hs = ngx_gdrive_probe_answers;
    i = (ngx_uint_t) h->data;

    if (h->result != CURLE_OK) {
        ngx_cpystrn((u_char *) detail,
                    (u_char *) (h->error[0] ? h->error
                                : curl_easy_strerror(h->result)),
                    sizeof(detail));
        ok = 0;

    } else {
        ngx_sprintf((u_char *) detail, "HTTP %l%Z", h->status);
        ok = (h->status > 0 && h->status < 500);
    }

    if (!ok) {
        ngx_log_error(NGX_LOG_WARN, round->log, 0,
                      "gdrive: %s failed: %s", h->what, detail);
    }

    ngx_gdrive_probe_set(&hs->probe[i], h->result == CURLE_OK ? h->status : 0,
                         ok, ngx_current_msec - h->started, detail);

    round->http[i] = NULL;

    if (--round->pending) {
        return;
    }

    ngx_gdrive_probe_end(hs);

    /* curl is inside its loop over this handle: free the pool later */
    round->free.handler = ngx_gdrive_probe_free;
    round->free.data = round;
    round->free.log = round->log;
    ngx_post_event(&round->free, &ngx_posted_events);
}


static void
ngx_gdrive_probe_set(ngx_gdrive_probe_t *p, long status, ngx_uint_t ok,
    ngx_msec_t ms, const char *detail)
{
    p->status = (ngx_atomic_uint_t) (status < 0 ? 0 : status);
    p->ok = ok;
    p->ms = ms;
    ngx_cpystrn(p->detail, (u_char *) detail, sizeof(p->detail));
}


static void
ngx_gdrive_probe_end(ngx_gdrive_health_sh_t *hs)
{
    hs->checked = ngx_gdrive_epoch_ms();
    ngx_memory_barrier();
    (void) ngx_atomic_fetch_add(&hs->generation, 1);
    (void) ngx_atomic_cmp_set(&hs->probing, ngx_pid, 0);
}


static void
ngx_gdrive_probe_free(ngx_event_t *ev)
{
    ngx_gdrive_probe_round_t *round = ev->data;

    if (ev->posted) {
        ngx_delete_posted_event(ev);
    }

    if (round->pool && round->pending == 0) {
        ngx_destroy_pool(round->pool);
        round->pool = NULL;
    }
}
