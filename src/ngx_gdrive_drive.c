
/*
 * nginx-gdrive-worker: the Google Drive v3 client.
 *
 * Client layer: one Drive call at a time per request object, under the
 * shared rate limiter (a call over the limit waits on a timer), with
 * partial responses (fields=) and shared drives always on.  An answer is
 * parsed JSON, or content handed to a sink that may pause the download.
 * Failures are classified into the error codes of DESIGN §4; a 429 or a
 * Retry-After holds the whole integration, quota errors open its
 * circuit.  The job engine decides what to do with them.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include <jansson.h>

#include "ngx_gdrive.h"


#define NGX_GDRIVE_DRIVE_MAX_JSON    (8 * 1024 * 1024)
#define NGX_GDRIVE_DRIVE_MAX_ERROR   (64 * 1024)


static void ngx_gdrive_drive_go(ngx_event_t *ev);
static void ngx_gdrive_drive_done(ngx_gdrive_http_t *h);
static size_t ngx_gdrive_drive_sink(ngx_gdrive_http_t *h, u_char *p,
    size_t len);
static void ngx_gdrive_drive_fail(ngx_gdrive_drive_t *d, const char *code,
    ngx_uint_t permanent, const char *detail);
static void ngx_gdrive_drive_classify(ngx_gdrive_drive_t *d);
static void ngx_gdrive_drive_cleanup(void *data);
static ngx_int_t ngx_gdrive_drive_redirect(ngx_gdrive_drive_t *d);
static ngx_int_t ngx_gdrive_drive_authority(const char *url, ngx_str_t *scheme,
    ngx_str_t *authority, ngx_str_t *host, ngx_str_t *port);


/*
 * Starts a call: the answer comes through d->handler, never from inside
 * this function.  With d->sink set, a 2xx body goes to the sink and
 * anything else is kept as an error body.
 */

void
ngx_gdrive_drive_call(ngx_gdrive_drive_t *d, const char *endpoint, char *url)
{
    ngx_pool_cleanup_t  *cln;

    if (!d->cleanup_set) {
        cln = ngx_pool_cleanup_add(d->pool, 0);

        if (cln) {
            cln->handler = ngx_gdrive_drive_cleanup;
            cln->data = d;
            d->cleanup_set = 1;
        }
    }

    if (d->json) {
        json_decref((json_t *) d->json);
        d->json = NULL;
    }

    d->endpoint = endpoint;
    d->url = url;
    d->rc = NGX_ERROR;
    d->status = 0;
    d->code = NULL;
    d->reason = "";
    d->detail[0] = '\0';
    d->permanent = 0;
    d->retry_after = -1;
    d->bytes = 0;
    d->waited = 0;
    d->redirects = 0;
    d->active = 1;

    d->wait.handler = ngx_gdrive_drive_go;
    d->wait.data = d;
    d->wait.log = d->log;

    ngx_post_event(&d->wait, &ngx_posted_events);
}


/* the rate limiter first; a call over it waits on the timer */

static void
ngx_gdrive_drive_go(ngx_event_t *ev)
{
    ngx_gdrive_drive_t *d = ev->data;

    char              line[NGX_GDRIVE_TOKEN_MAX_LEN + 32];
    ngx_uint_t        global;
    ngx_msec_t        wait;
    ngx_gdrive_http_t *h;

    wait = ngx_gdrive_rate_take(&d->integration, &global);

    if (wait) {
        if (d->waited == 0 && d->waiting) {
            d->waiting(d, 1);
        }

        d->waited += wait;
        d->wait_global = global;
        ngx_add_timer(&d->wait, wait);
        return;
    }

    if (d->waited) {
        if (d->waiting) {
            d->waiting(d, 0);
        }

        /* one wait per request, counted with its length once it is over */
        ngx_gdrive_metric_ratelimit_wait(d->wait_global, d->waited);
    }

    if (d->http == NULL) {
        d->http = ngx_gdrive_http_create(d->pool, d->log,
                                         NGX_GDRIVE_DRIVE_MAX_JSON);
        if (d->http == NULL) {
            ngx_gdrive_drive_fail(d, "internal_error", 0,
                                  "no memory for a Drive request");
            return;
        }

    } else {
        ngx_gdrive_http_reset(d->http);
    }

    h = d->http;
    h->handler = ngx_gdrive_drive_done;
    h->data = d;
    h->what = d->endpoint;
    h->max_body = d->sink ? NGX_GDRIVE_DRIVE_MAX_ERROR
                          : NGX_GDRIVE_DRIVE_MAX_JSON;

    if (d->sink) {
        h->sink = ngx_gdrive_drive_sink;
    }

    if (d->token.len > NGX_GDRIVE_TOKEN_MAX_LEN
        || !ngx_gdrive_header_safe(&d->token))
    {
        ngx_gdrive_drive_fail(d, "auth_invalid", 0,
                              "the access token is too long or holds a "
                              "line break");
        return;
    }

    /*
     * The bearer token goes to trusted hosts only: an export link or a
     * redirect comes from Drive's data, and is refused before anything
     * is sent when its host is not one of them.
     */

    if (!ngx_gdrive_drive_trusted(d->url)) {
        ngx_gdrive_drive_fail(d, "untrusted_link", 1,
                              "a link to a host that is not trusted with "
                              "the Google token (gdrive_google_trusted_hosts)"
                              ": refused, nothing was sent");
        return;
    }

    *ngx_snprintf((u_char *) line, sizeof(line) - 1,
                  "Authorization: Bearer %V", &d->token) = '\0';

    if (ngx_gdrive_http_header_add(h, line) != NGX_OK
        || ngx_gdrive_http_header_add(h, d->sink ? "Accept: */*"
                                      : "Accept: application/json")
           != NGX_OK
        || (d->header && ngx_gdrive_http_header_add(h, d->header) != NGX_OK))
    {
        ngx_explicit_memzero(line, sizeof(line));
        ngx_gdrive_drive_fail(d, "internal_error", 0,
                              "no memory for a Drive request");
        return;
    }

    ngx_explicit_memzero(line, sizeof(line));

    d->started = ngx_current_msec;

    if (ngx_gdrive_http_start(h, d->url) != NGX_OK) {
        ngx_gdrive_drive_fail(d, "internal_error", 0,
                              "the HTTP client failed");
    }
}


void
ngx_gdrive_drive_resume(ngx_gdrive_drive_t *d)
{
    if (d->active && d->http && d->paused) {
        d->paused = 0;
        ngx_gdrive_http_resume(d->http);
    }
}


void
ngx_gdrive_drive_cancel(ngx_gdrive_drive_t *d)
{
    if (d->wait.timer_set) {
        ngx_del_timer(&d->wait);

        if (d->waited && d->waiting) {
            d->waiting(d, 0);
        }
    }

    if (d->wait.posted) {
        ngx_delete_posted_event(&d->wait);
    }

    if (d->http) {
        ngx_gdrive_http_cancel(d->http);
    }

    d->active = 0;
    d->paused = 0;
}


static void
ngx_gdrive_drive_cleanup(void *data)
{
    ngx_gdrive_drive_t *d = data;

    ngx_gdrive_drive_cancel(d);

    if (d->json) {
        json_decref((json_t *) d->json);
        d->json = NULL;
    }
}


/*
 * Content goes to the owner's sink only with a 2xx status: an error's
 * body is kept to classify it.
 */

static size_t
ngx_gdrive_drive_sink(ngx_gdrive_http_t *h, u_char *p, size_t len)
{
    ngx_gdrive_drive_t *d = h->data;

    long    status;
    size_t  n;

    status = 0;
    curl_easy_getinfo(h->easy, CURLINFO_RESPONSE_CODE, &status);

    if (status < 200 || status > 299) {
        n = ngx_min(len, h->max_body - h->len);

        if (ngx_gdrive_http_body_room(h, h->max_body) != NGX_OK) {
            return 0;
        }

        ngx_memcpy(h->body + h->len, p, n);
        h->len += n;

        return len;
    }

    n = d->sink(d, p, len);

    if (n == CURL_WRITEFUNC_PAUSE) {
        d->paused = 1;
        return n;
    }

    if (n == len) {
        d->bytes += len;
    }

    return n;
}


static void
ngx_gdrive_drive_done(ngx_gdrive_http_t *h)
{
    ngx_gdrive_drive_t *d = h->data;

    json_t        *json;
    json_error_t   jerr;

    d->active = 0;
    d->paused = 0;
    d->status = h->status;
    d->retry_after = h->retry_after;

    ngx_gdrive_metric_google_request(d->endpoint,
                                     h->result == CURLE_OK ? h->status : 0,
                                     ngx_current_msec - d->started);

    if (h->result != CURLE_OK) {
        if (h->result == CURLE_WRITE_ERROR && d->sink_failed) {
            ngx_gdrive_drive_fail(d, "sink_failed", 0,
                                  "the content was not taken");
            return;
        }

        ngx_gdrive_drive_fail(d, "upstream_error", 0,
                              h->error[0] ? h->error
                                          : curl_easy_strerror(h->result));
        return;
    }

    if (d->follow && (h->status == 301 || h->status == 302
                      || h->status == 303 || h->status == 307
                      || h->status == 308))
    {
        if (ngx_gdrive_drive_redirect(d) == NGX_OK) {
            return;
        }

        /* d says why */
        d->handler(d);
        return;
    }

    if (h->status < 200 || h->status > 299) {
        ngx_gdrive_drive_classify(d);
        return;
    }

    if (d->sink == NULL) {
        json = json_loadb((char *) h->body, h->len, JSON_ALLOW_NUL, &jerr);

        if (json == NULL || !json_is_object(json)) {
            if (json) {
                json_decref(json);
            }

            ngx_gdrive_drive_fail(d, "upstream_error", 0,
                                  "Drive answered with invalid JSON");
            return;
        }

        d->json = json;
    }

    d->rc = NGX_OK;
    d->handler(d);
}


/*
 * An export link's redirect (Google's links answer with one to a content
 * host): at most 5, each checked as the link was before anything is sent
 * to it.  NGX_OK: the next request is under way.
 */

static ngx_int_t
ngx_gdrive_drive_redirect(ngx_gdrive_drive_t *d)
{
    char    *location;
    size_t   len;

    location = NULL;
    (void) curl_easy_getinfo(d->http->easy, CURLINFO_REDIRECT_URL, &location);

    if (location == NULL || *location == '\0') {
        ngx_snprintf(d->detail, sizeof(d->detail) - 1,
                     "%s: HTTP %l without a Location%Z", d->endpoint,
                     d->status);
        d->rc = NGX_ERROR;
        d->code = "upstream_error";
        d->permanent = 0;
        return NGX_ERROR;
    }

    if (++d->redirects > 5) {
        ngx_snprintf(d->detail, sizeof(d->detail) - 1,
                     "%s: more than 5 redirects%Z", d->endpoint);
        d->rc = NGX_ERROR;
        d->code = "upstream_error";
        d->permanent = 0;
        return NGX_ERROR;
    }

    len = ngx_strlen(location);

    if (len > 8192) {
        ngx_snprintf(d->detail, sizeof(d->detail) - 1,
                     "%s: a redirect of %uz bytes%Z", d->endpoint, len);
        d->rc = NGX_ERROR;
        d->code = "upstream_error";
        d->permanent = 1;
        return NGX_ERROR;
    }

    d->url = ngx_pnalloc(d->pool, len + 1);
    if (d->url == NULL) {
        d->rc = NGX_ERROR;
        d->code = "internal_error";
        d->permanent = 0;
        return NGX_ERROR;
    }

    ngx_memcpy(d->url, location, len + 1);

    ngx_log_debug2(NGX_LOG_DEBUG_EVENT, d->log, 0,
                   "gdrive: Drive %s redirected (%ui)", d->endpoint,
                   d->redirects);

    d->active = 1;
    d->rc = NGX_ERROR;
    d->status = 0;
    d->waited = 0;

    ngx_post_event(&d->wait, &ngx_posted_events);

    return NGX_OK;
}


/*
 * May a URL have the Google token?  The scheme and authority of
 * gdrive_google_api_url exactly (so a local stack works), or https on
 * the default port to a host of gdrive_google_trusted_hosts ("*.domain":
 * any name below it).  A URL with user information never.
 */

ngx_uint_t
ngx_gdrive_drive_trusted(const char *url)
{
    size_t                        n;
    ngx_str_t                     scheme, auth, host, port;
    ngx_str_t                     api_scheme, api_auth, api_host, api_port;
    ngx_str_t                    *pat;
    ngx_uint_t                    i;
    ngx_http_gdrive_main_conf_t  *gmcf;

    gmcf = ngx_gdrive_worker.gmcf;

    if (ngx_gdrive_drive_authority(url, &scheme, &auth, &host, &port)
        != NGX_OK)
    {
        return 0;
    }

    if (ngx_gdrive_drive_authority((char *) gmcf->google_api_url.data,
                                   &api_scheme, &api_auth, &api_host,
                                   &api_port)
        == NGX_OK
        && scheme.len == api_scheme.len
        && ngx_strncasecmp(scheme.data, api_scheme.data, scheme.len) == 0
        && auth.len == api_auth.len
        && ngx_strncasecmp(auth.data, api_auth.data, auth.len) == 0)
    {
        return 1;
    }

    if (scheme.len != 5 || ngx_strncasecmp(scheme.data, (u_char *) "https", 5)
                           != 0
        || (port.len && !(port.len == 3
                          && ngx_strncmp(port.data, "443", 3) == 0)))
    {
        return 0;
    }

    if (gmcf->google_trusted_hosts == NULL) {
        return 0;
    }

    pat = gmcf->google_trusted_hosts->elts;

    for (i = 0; i < gmcf->google_trusted_hosts->nelts; i++) {

        if (pat[i].len > 2 && pat[i].data[0] == '*' && pat[i].data[1] == '.')
        {
            /* ".domain" at the end of a longer host */
            n = pat[i].len - 1;

            if (host.len > n
                && ngx_strncasecmp(host.data + host.len - n,
                                   pat[i].data + 1, n)
                   == 0)
            {
                return 1;
            }

            continue;
        }

        if (host.len == pat[i].len
            && ngx_strncasecmp(host.data, pat[i].data, host.len) == 0)
        {
            return 1;
        }
    }

    return 0;
}


static ngx_int_t
ngx_gdrive_drive_authority(const char *url, ngx_str_t *scheme,
    ngx_str_t *authority, ngx_str_t *host, ngx_str_t *port)
{
    u_char  *p, *start, *last, *colon;

    if (url == NULL) {
        return NGX_ERROR;
    }

    start = (u_char *) url;
    last = start + ngx_strlen(url);

    p = ngx_strlcasestrn(start, last, (u_char *) "://", 3 - 1);
    if (p == NULL || p == start) {
        return NGX_ERROR;
    }

    scheme->data = start;
    scheme->len = p - start;

    authority->data = p + 3;

    for (p = authority->data; p < last && *p != '/' && *p != '?'
                              && *p != '#'; p++)
    {
        if (*p == '@' || *p == '\\' || *p <= 0x20 || *p >= 0x7f) {
            /* user information, or what curl would read another way */
            return NGX_ERROR;
        }
    }

    authority->len = p - authority->data;

    if (authority->len == 0) {
        return NGX_ERROR;
    }

    colon = NULL;

    if (authority->data[0] != '[') {
        colon = ngx_strlchr(authority->data, p, ':');
    }

    host->data = authority->data;
    host->len = colon ? (size_t) (colon - host->data) : authority->len;

    if (colon) {
        port->data = colon + 1;
        port->len = p - port->data;

    } else {
        ngx_str_null(port);
    }

    /* a trailing dot names the same host: not one a pattern is for */
    if (host->len == 0 || host->data[host->len - 1] == '.') {
        return NGX_ERROR;
    }

    return NGX_OK;
}


static void
ngx_gdrive_drive_fail(ngx_gdrive_drive_t *d, const char *code,
    ngx_uint_t permanent, const char *detail)
{
    d->active = 0;
    d->rc = NGX_ERROR;
    d->code = code;
    d->permanent = permanent;
    ngx_cpystrn(d->detail, (u_char *) detail, sizeof(d->detail));

    d->handler(d);
}


/*
 * Google's error body: {"error":{"code","message","errors":[{"reason"}]}}.
 * The reason decides between a rate limit, a quota, abuse and a plain
 * permission problem; a 429 or a Retry-After holds the integration.
 */

static void
ngx_gdrive_drive_classify(ngx_gdrive_drive_t *d)
{
    long                          status;
    json_t                       *body, *err, *errors, *first, *v;
    ngx_uint_t                    i, level;
    const char                   *message, *reason;
    ngx_gdrive_http_t            *h;
    ngx_http_gdrive_main_conf_t  *gmcf;

    static const char  *rate_reasons[] = {
        "rateLimitExceeded", "userRateLimitExceeded",
        "sharingRateLimitExceeded", NULL
    };

    static const char  *quota_reasons[] = {
        "dailyLimitExceeded", "downloadQuotaExceeded", "quotaExceeded",
        "dailyLimitExceededUnreg", NULL
    };

    h = d->http;
    status = h->status;
    gmcf = ngx_gdrive_worker.gmcf;

    message = "";
    reason = "";

    body = json_loadb((char *) h->body, h->len, 0, NULL);
    err = body ? json_object_get(body, "error") : NULL;

    if (json_is_object(err)) {
        v = json_object_get(err, "message");
        if (json_is_string(v)) {
            message = json_string_value(v);
        }

        errors = json_object_get(err, "errors");
        first = json_is_array(errors) ? json_array_get(errors, 0) : NULL;
        v = first ? json_object_get(first, "reason") : NULL;

        if (json_is_string(v)) {
            reason = json_string_value(v);
        }
    }

    ngx_snprintf(d->detail, sizeof(d->detail) - 1, "%s: HTTP %l %s%s%s%Z",
                 d->endpoint, status, reason, *reason ? ": " : "", message);
    d->detail[sizeof(d->detail) - 1] = '\0';

    /* the reason is kept as one of ours: the body is freed below */

    d->reason = "";
    d->code = NULL;

    for (i = 0; rate_reasons[i]; i++) {
        if (ngx_strcmp(reason, rate_reasons[i]) == 0) {
            d->reason = rate_reasons[i];
            d->code = "rate_limited";
        }
    }

    for (i = 0; quota_reasons[i]; i++) {
        if (ngx_strcmp(reason, quota_reasons[i]) == 0) {
            d->reason = quota_reasons[i];
            d->code = "quota_exhausted";
        }
    }

    if (ngx_strcmp(reason, "fileNotDownloadable") == 0) {
        /* alt=media on a Docs editors file: metadata that said binary
         * is out of date, and the retry asks Drive afresh */
        d->reason = "fileNotDownloadable";
        d->code = "not_downloadable";

    } else if (ngx_strcmp(reason, "cannotDownloadAbusiveFile") == 0) {
        d->reason = "cannotDownloadAbusiveFile";
        d->code = "abusive_file";

    } else if (ngx_strcmp(reason, "exportSizeLimitExceeded") == 0) {
        d->reason = "exportSizeLimitExceeded";
        d->code = "export_too_large";
    }

    if (body) {
        json_decref(body);
    }

    d->rc = NGX_ERROR;
    d->permanent = 0;

    if (status == 429) {
        d->code = "rate_limited";

    } else if (status == 401) {
        d->code = "auth_invalid";

    } else if (status == 403) {

        if (d->code == NULL) {
            d->code = "permission_denied";
            d->permanent = 1;

        } else if (ngx_strcmp(d->code, "abusive_file") == 0
                   || ngx_strcmp(d->code, "export_too_large") == 0)
        {
            d->permanent = 1;
        }

    } else if (status == 404) {
        d->code = "not_found";
        d->permanent = 1;

    } else if (status == 408 || status >= 500) {
        d->code = "upstream_error";

    } else {
        /* 400, 416 and the like: asking again changes nothing */
        d->code = "bad_request";
        d->permanent = 1;
    }

    if (ngx_strcmp(d->code, "rate_limited") == 0 && d->retry_after > 0) {
        /* every job of the integration waits, not only this one */
        ngx_gdrive_rate_hold(&d->integration,
                             (ngx_msec_t) d->retry_after * 1000, 0);

    } else if (ngx_strcmp(d->code, "quota_exhausted") == 0) {
        ngx_gdrive_rate_hold(&d->integration, gmcf->quota_pause, 1);

        if (d->retry_after < 0 || (ngx_msec_t) d->retry_after * 1000
                                  < gmcf->quota_pause)
        {
            d->retry_after = gmcf->quota_pause / 1000;
        }
    }

    level = d->permanent ? NGX_LOG_WARN : NGX_LOG_INFO;

    ngx_log_error(level, d->log, 0, "gdrive: Drive %s failed: %s (%s)",
                  d->endpoint, d->detail, d->code);

    d->handler(d);
}


/*
 * A Drive URL: the API base, a path and query made of printf directives
 * whose string arguments are already escaped or of safe characters.
 */

char *
ngx_gdrive_drive_url(ngx_pool_t *pool, size_t len, const char *fmt, ...)
{
    u_char                       *url, *p;
    va_list                       args;
    ngx_http_gdrive_main_conf_t  *gmcf;

    gmcf = ngx_gdrive_worker.gmcf;

    url = ngx_pnalloc(pool, gmcf->google_api_url.len + len + 1);
    if (url == NULL) {
        return NULL;
    }

    p = ngx_cpymem(url, gmcf->google_api_url.data, gmcf->google_api_url.len);

    va_start(args, fmt);
    p = ngx_vslprintf(p, url + gmcf->google_api_url.len + len, fmt, args);
    va_end(args);

    *p = '\0';

    return (char *) url;
}


/* a query parameter's value, escaped, in pool */

ngx_int_t
ngx_gdrive_drive_escape(ngx_pool_t *pool, const char *data, size_t len,
    ngx_str_t *out)
{
    char  *e;

    e = curl_easy_escape(NULL, data, (int) len);
    if (e == NULL) {
        return NGX_ERROR;
    }

    out->len = ngx_strlen(e);
    out->data = ngx_pnalloc(pool, out->len + 1);

    if (out->data == NULL) {
        curl_free(e);
        return NGX_ERROR;
    }

    ngx_memcpy(out->data, e, out->len + 1);
    curl_free(e);

    return NGX_OK;
}
