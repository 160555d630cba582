
/*
 * nginx-gdrive-worker: the Google Drive v3 client.
 *
 * Client layer: one Drive call at a time per request object, under the
 * shared rate limiter (a call over the limit waits on a timer), with
 * partial responses (fields=) and shared drives always on.  The typed
 * calls (a file's metadata, its content, an export, a listing page, the
 * changes feed) own Drive's URLs and fields; listing and changes pages
 * are handed over parsed, entry by entry.  An answer is parsed JSON, or
 * content handed to a sink that may pause the download.  Failures are
 * classified into the error codes (see the README, Error codes); a 429 or
 * a Retry-After holds the whole integration, quota errors open its
 * circuit.  The job engine decides what to do with them.  The export
 * tables and the metadata cache around files live here too.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include <ngx_sha1.h>
#include <jansson.h>

#include "ngx_gdrive.h"
#include "ngx_gdrive_cache.h"
#include "ngx_gdrive_drive.h"
#include "ngx_gdrive_http.h"
#include "ngx_gdrive_metrics.h"
#include "ngx_gdrive_ratelimit.h"


#define NGX_GDRIVE_DRIVE_MAX_JSON    (8 * 1024 * 1024)
#define NGX_GDRIVE_DRIVE_MAX_ERROR   (64 * 1024)

/* what files.get asks for: what the key, the export and the result use */
#define NGX_GDRIVE_FILE_FIELDS                                                \
    "id,name,mimeType,size,md5Checksum,version,modifiedTime,"                 \
    "headRevisionId,driveId,trashed,shortcutDetails,exportLinks,resourceKey"

/* what a listing and the changes feed ask for each file: the same */
#define NGX_GDRIVE_LIST_FIELDS                                                \
    "nextPageToken,incompleteSearch,files(" NGX_GDRIVE_FILE_FIELDS ")"
#define NGX_GDRIVE_CHANGES_FIELDS                                             \
    "nextPageToken,newStartPageToken,changes(changeType,fileId,removed,"     \
    "file(" NGX_GDRIVE_FILE_FIELDS "))"


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
static char *ngx_gdrive_drive_url(ngx_pool_t *pool, size_t len,
    const char *fmt, ...);
static ngx_int_t ngx_gdrive_drive_files_get(ngx_gdrive_drive_t *d,
    ngx_str_t *id, const char *fields);
static ngx_int_t ngx_gdrive_drive_resource_key(ngx_gdrive_drive_t *d,
    ngx_str_t *id, json_t *meta);
static ngx_int_t ngx_gdrive_drive_entry(ngx_gdrive_drive_page_t *page,
    json_t *item, ngx_gdrive_drive_entry_t *entry);


/* the configuration, from init: what the calls and the trust check use */
static ngx_http_gdrive_main_conf_t  *ngx_gdrive_drive_gmcf;


ngx_int_t
ngx_gdrive_drive_init(ngx_http_gdrive_main_conf_t *gmcf)
{
    ngx_gdrive_drive_gmcf = gmcf;

    return NGX_OK;
}


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
    d->held = 0;
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
        d->http = ngx_gdrive_http_create_lean(d->pool, d->log,
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
        h->expect = d->expect;
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
    d->requests++;

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

    size_t  n;

    if (h->status < 200 || h->status > 299) {
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

    location = ngx_gdrive_http_redirect_url(d->http);

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

    gmcf = ngx_gdrive_drive_gmcf;

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
    gmcf = ngx_gdrive_drive_gmcf;

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
        d->held = (ngx_msec_t) d->retry_after * 1000;
        ngx_gdrive_rate_hold(&d->integration, d->held, 0);

    } else if (ngx_strcmp(d->code, "quota_exhausted") == 0) {
        d->held = gmcf->quota_pause;
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

static char *
ngx_gdrive_drive_url(ngx_pool_t *pool, size_t len, const char *fmt, ...)
{
    u_char                       *url, *p;
    va_list                       args;
    ngx_http_gdrive_main_conf_t  *gmcf;

    gmcf = ngx_gdrive_drive_gmcf;

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


/* a file's metadata: the fields the key, the export and the result use */

ngx_int_t
ngx_gdrive_drive_file_get(ngx_gdrive_drive_t *d, ngx_str_t *id)
{
    return ngx_gdrive_drive_files_get(d, id, NGX_GDRIVE_FILE_FIELDS);
}


/* an incomplete listing: in which drive is the folder? */

ngx_int_t
ngx_gdrive_drive_folder_drive(ngx_gdrive_drive_t *d, ngx_str_t *folder)
{
    return ngx_gdrive_drive_files_get(d, folder, "id,driveId");
}


/* files.get of a file or folder: its JSON metadata, the fields asked */

static ngx_int_t
ngx_gdrive_drive_files_get(ngx_gdrive_drive_t *d, ngx_str_t *id,
    const char *fields)
{
    char  *url;

    url = ngx_gdrive_drive_url(d->pool, id->len + ngx_strlen(fields) + 64,
                               "/drive/v3/files/%V?supportsAllDrives=true"
                               "&fields=%s", id, fields);
    if (url == NULL) {
        return NGX_ERROR;
    }

    d->sink = NULL;
    d->header = NULL;
    d->follow = 0;
    ngx_gdrive_drive_call(d, "files.get", url);

    return NGX_OK;
}


ngx_int_t
ngx_gdrive_drive_folder_drive_id(ngx_gdrive_drive_t *d, const char **id)
{
    const char  *drive;

    drive = ngx_gdrive_drive_meta_str(d->json, "driveId");

    if (drive && !ngx_gdrive_drive_id_valid(drive, ngx_strlen(drive))) {
        return NGX_ERROR;
    }

    *id = drive;

    return NGX_OK;
}


/*
 * A file shared by link behind a resource key (Drive's 2021 security
 * update) is read with X-Goog-Drive-Resource-Keys: {id}/{key}.  The key
 * comes from metadata, data from outside: Drive's charset only.
 */

static ngx_int_t
ngx_gdrive_drive_resource_key(ngx_gdrive_drive_t *d, ngx_str_t *id,
    json_t *meta)
{
    u_char      *line;
    size_t       len;
    const char  *key;

    d->header = NULL;

    key = ngx_gdrive_drive_meta_str(meta, "resourceKey");

    if (key == NULL || !ngx_gdrive_drive_id_valid(key, ngx_strlen(key))) {
        return NGX_OK;
    }

    len = sizeof("X-Goog-Drive-Resource-Keys: /") + id->len
          + ngx_strlen(key);

    line = ngx_pnalloc(d->pool, len);
    if (line == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(line, "X-Goog-Drive-Resource-Keys: %V/%s%Z", id, key);

    d->header = (char *) line;

    return NGX_OK;
}


/* a file's content as it is stored */

ngx_int_t
ngx_gdrive_drive_media(ngx_gdrive_drive_t *d, ngx_str_t *id, json_t *meta)
{
    char        *url;
    const char  *size;

    d->follow = 0;
    d->expect = -1;

    size = ngx_gdrive_drive_meta_str(meta, "size");
    if (size) {
        d->expect = ngx_atoof((u_char *) size, ngx_strlen(size));
    }

    if (ngx_gdrive_drive_resource_key(d, id, meta) != NGX_OK) {
        return NGX_ERROR;
    }

    url = ngx_gdrive_drive_url(d->pool, id->len + 128,
                               "/drive/v3/files/%V?alt=media"
                               "&supportsAllDrives=true%s", id,
                               ngx_gdrive_drive_gmcf->acknowledge_abuse
                               ? "&acknowledgeAbuse=true" : "");
    if (url == NULL) {
        return NGX_ERROR;
    }

    ngx_gdrive_drive_call(d, "files.media", url);

    return NGX_OK;
}


/* a Google Workspace file exported as type */

ngx_int_t
ngx_gdrive_drive_export(ngx_gdrive_drive_t *d, ngx_str_t *id, json_t *meta,
    ngx_str_t *type)
{
    char       *url;
    ngx_str_t   escaped;

    d->follow = 0;
    d->expect = -1;

    if (ngx_gdrive_drive_resource_key(d, id, meta) != NGX_OK
        || ngx_gdrive_drive_escape(d->pool, (char *) type->data, type->len,
                                   &escaped)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    url = ngx_gdrive_drive_url(d->pool, id->len + escaped.len + 64,
                               "/drive/v3/files/%V/export?mimeType=%V",
                               id, &escaped);
    if (url == NULL) {
        return NGX_ERROR;
    }

    ngx_gdrive_drive_call(d, "files.export", url);

    return NGX_OK;
}


/* Drive's own link for big exports; a link of another scheme is not */

ngx_int_t
ngx_gdrive_drive_export_link(ngx_gdrive_drive_t *d, ngx_str_t *id,
    json_t *meta, ngx_str_t *type)
{
    char        *url;
    json_t      *links;
    u_char      *name;
    const char  *link;

    d->follow = 0;
    d->expect = -1;

    if (ngx_gdrive_drive_resource_key(d, id, meta) != NGX_OK) {
        return NGX_ERROR;
    }

    links = json_object_get(meta, "exportLinks");
    link = NULL;

    if (json_is_object(links)) {
        name = ngx_pnalloc(d->pool, type->len + 1);
        if (name == NULL) {
            return NGX_ERROR;
        }

        ngx_cpystrn(name, type->data, type->len + 1);
        link = ngx_gdrive_drive_meta_str(links, (char *) name);
    }

    if (link == NULL
        || (ngx_strncmp(link, "https://", 8) != 0
            && ngx_strncmp(link, "http://", 7) != 0))
    {
        return NGX_DECLINED;
    }

    url = ngx_pnalloc(d->pool, ngx_strlen(link) + 1);
    if (url == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(url, link, ngx_strlen(link) + 1);

    /* Google's export links redirect to a content host */
    d->follow = 1;
    ngx_gdrive_drive_call(d, "files.exportLink", url);

    return NGX_OK;
}


/*
 * A page of a folder's children.  All drives at first; a listing Drive
 * says is incomplete is listed again in the folder's own drive (or the
 * user's corpus): Drive's advice for incompleteSearch.
 */

ngx_int_t
ngx_gdrive_drive_list(ngx_gdrive_drive_t *d, ngx_str_t *folder,
    ngx_str_t *drive, ngx_str_t *page_token)
{
    u_char      *p;
    char        *url;
    ngx_str_t    q, none;
    const char  *corpora;

    /* folder ids are of [A-Za-z0-9_-]: nothing to quote in the query */

    p = ngx_pnalloc(d->pool, folder->len + 64);
    if (p == NULL) {
        return NGX_ERROR;
    }

    q.data = p;
    q.len = ngx_sprintf(p, "'%V' in parents and trashed = false", folder)
            - p;

    if (ngx_gdrive_drive_escape(d->pool, (char *) q.data, q.len, &q)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    ngx_str_null(&none);

    if (drive == NULL) {
        corpora = "allDrives";
        drive = &none;

    } else {
        corpora = drive->len ? "drive" : "user";
    }

    url = ngx_gdrive_drive_url(d->pool,
                               q.len + drive->len + page_token->len + 512,
                               "/drive/v3/files?q=%V&pageSize=%ui"
                               "&fields=%s"
                               "&supportsAllDrives=true"
                               "&includeItemsFromAllDrives=true"
                               "&corpora=%s%s%V%s%V",
                               &q, ngx_gdrive_drive_gmcf->list_page_size,
                               NGX_GDRIVE_LIST_FIELDS, corpora,
                               drive->len ? "&driveId=" : "", drive,
                               page_token->len ? "&pageToken=" : "",
                               page_token);
    if (url == NULL) {
        return NGX_ERROR;
    }

    d->sink = NULL;
    d->header = NULL;
    d->follow = 0;
    ngx_gdrive_drive_call(d, "files.list", url);

    return NGX_OK;
}


/* the changes feed starts from a fresh token: nothing changed since */

ngx_int_t
ngx_gdrive_drive_changes_start(ngx_gdrive_drive_t *d, ngx_str_t *drive)
{
    char  *url;

    d->sink = NULL;
    d->header = NULL;
    d->follow = 0;

    url = ngx_gdrive_drive_url(d->pool, drive->len + 128,
                               "/drive/v3/changes/startPageToken"
                               "?supportsAllDrives=true%s%V",
                               drive->len ? "&driveId=" : "", drive);
    if (url == NULL) {
        return NGX_ERROR;
    }

    ngx_gdrive_drive_call(d, "changes.startPageToken", url);

    return NGX_OK;
}


ngx_int_t
ngx_gdrive_drive_start_token(ngx_gdrive_drive_t *d, const char **start)
{
    *start = ngx_gdrive_drive_meta_str(d->json, "startPageToken");

    return *start ? NGX_OK : NGX_ERROR;
}


/* page_token is escaped already */

ngx_int_t
ngx_gdrive_drive_changes(ngx_gdrive_drive_t *d, ngx_str_t *drive,
    ngx_str_t *page_token)
{
    char  *url;

    d->sink = NULL;
    d->header = NULL;
    d->follow = 0;

    url = ngx_gdrive_drive_url(d->pool,
                               drive->len + page_token->len + 384,
                               "/drive/v3/changes?pageToken=%V&pageSize=%ui"
                               "&includeRemoved=true&supportsAllDrives=true"
                               "&includeItemsFromAllDrives=true"
                               "&fields=%s%s%V",
                               page_token,
                               ngx_gdrive_drive_gmcf->list_page_size,
                               NGX_GDRIVE_CHANGES_FIELDS,
                               drive->len ? "&driveId=" : "", drive);
    if (url == NULL) {
        return NGX_ERROR;
    }

    ngx_gdrive_drive_call(d, "changes.list", url);

    return NGX_OK;
}


ngx_int_t
ngx_gdrive_drive_page_open(ngx_gdrive_drive_t *d, ngx_uint_t changes,
    ngx_gdrive_drive_page_t *page)
{
    json_t  *json;

    json = d->json;

    ngx_memzero(page, sizeof(ngx_gdrive_drive_page_t));
    page->changes = changes;

    page->items = json_object_get(json, changes ? "changes" : "files");

    if (!json_is_array(page->items)) {
        page->detail = changes ? "a changes page without changes"
                               : "a listing page without files";
        return NGX_ERROR;
    }

    /* files may be missing from an incomplete page: none of it is used */

    if (!changes
        && json_is_true(json_object_get(json, "incompleteSearch")))
    {
        return NGX_DECLINED;
    }

    page->next = ngx_gdrive_drive_meta_str(json, "nextPageToken");

    if (changes) {
        page->start = ngx_gdrive_drive_meta_str(json, "newStartPageToken");
    }

    return NGX_OK;
}


ngx_int_t
ngx_gdrive_drive_page_next(ngx_gdrive_drive_page_t *page,
    ngx_gdrive_drive_entry_t *entry)
{
    ngx_int_t  rc;

    while (page->i < json_array_size(page->items)) {
        rc = ngx_gdrive_drive_entry(page,
                                    json_array_get(page->items, page->i++),
                                    entry);
        if (rc != NGX_DECLINED) {
            return rc;
        }
    }

    if (page->changes && page->next == NULL && page->start == NULL) {
        page->detail = "a changes page with neither a next page nor a new "
                       "start token";
        return NGX_ERROR;
    }

    return NGX_DONE;
}


/* one listed file or one change; NGX_DECLINED: not a file's, passed over */

static ngx_int_t
ngx_gdrive_drive_entry(ngx_gdrive_drive_page_t *page, json_t *item,
    ngx_gdrive_drive_entry_t *entry)
{
    json_t      *f;
    const char  *id, *mime, *type;

    ngx_memzero(entry, sizeof(ngx_gdrive_drive_entry_t));

    if (!page->changes) {
        f = item;
        id = ngx_gdrive_drive_meta_str(f, "id");

        if (id == NULL || !ngx_gdrive_drive_id_valid(id, ngx_strlen(id))) {
            page->detail = "a listed file without a usable id";
            return NGX_ERROR;
        }

    } else {
        id = ngx_gdrive_drive_meta_str(item, "fileId");
        type = ngx_gdrive_drive_meta_str(item, "changeType");

        if (id == NULL && type && ngx_strcmp(type, "file") != 0) {
            /* a change of a shared drive itself, not of a file */
            return NGX_DECLINED;
        }

        if (id == NULL || !ngx_gdrive_drive_id_valid(id, ngx_strlen(id))) {
            page->detail = "a change without a usable file id";
            return NGX_ERROR;
        }

        f = json_object_get(item, "file");

        entry->gone = json_is_true(json_object_get(item, "removed"))
                      || (f && json_is_true(json_object_get(f, "trashed")))
                      || f == NULL;
    }

    mime = ngx_gdrive_drive_meta_str(f, "mimeType");

    entry->id = id;
    entry->file = f;
    entry->folder = (mime && ngx_strcmp(mime, NGX_GDRIVE_FOLDER_MIME) == 0);

    return NGX_OK;
}


/* what the worker saw of a file last: names its deletion */

void
ngx_gdrive_drive_meta_remember(ngx_str_t *integration, ngx_str_t *file_id,
    json_t *meta)
{
    u_char  *p;

    p = (u_char *) json_dumps(meta, JSON_COMPACT);

    if (p) {
        ngx_gdrive_cache_put(integration, file_id, p, ngx_strlen(p));
        free(p);
    }
}


/* a removed file comes without metadata: the last seen, or NULL */

json_t *
ngx_gdrive_drive_meta_recall(ngx_str_t *integration, ngx_str_t *file_id,
    ngx_pool_t *pool)
{
    ngx_str_t  cached;

    if (ngx_gdrive_cache_get(integration, file_id, pool, &cached) != NGX_OK) {
        return NULL;
    }

    return json_loadb((char *) cached.data, cached.len, 0, NULL);
}


const char *
ngx_gdrive_drive_meta_str(json_t *meta, const char *name)
{
    json_t  *v;

    v = meta ? json_object_get(meta, name) : NULL;

    return json_is_string(v) ? json_string_value(v) : NULL;
}


/* Google Workspace files: the export when the trigger names none */

ngx_int_t
ngx_gdrive_drive_export_default(const char *mime, ngx_str_t *type)
{
    ngx_uint_t  i;

    static struct {
        const char  *from;
        ngx_str_t    to;
    } defaults[] = {
        { "document", ngx_string("application/vnd.openxmlformats-"
                                 "officedocument.wordprocessingml.document") },
        { "spreadsheet", ngx_string("application/vnd.openxmlformats-"
                                    "officedocument.spreadsheetml.sheet") },
        { "presentation", ngx_string("application/vnd.openxmlformats-"
                                     "officedocument.presentationml."
                                     "presentation") },
        { "drawing", ngx_string("application/pdf") },
        { NULL, ngx_null_string }
    };

    mime += sizeof(NGX_GDRIVE_APPS_PREFIX) - 1;

    for (i = 0; defaults[i].from; i++) {
        if (ngx_strcmp(mime, defaults[i].from) == 0) {
            *type = defaults[i].to;
            return NGX_OK;
        }
    }

    return NGX_DECLINED;
}


/*
 * The key's suffix for an export, so that two formats never share a key:
 * every format Drive's "Export MIME types" lists has its extension, and
 * any other type a short stable hash of its name ("x" and 8 hex digits of
 * its SHA-1).  ext has room for 10 bytes and the NUL.
 */

void
ngx_gdrive_drive_export_ext(ngx_str_t *type, u_char *ext)
{
    u_char      digest[20];
    ngx_uint_t  i;
    ngx_sha1_t  sha1;

    static struct {
        ngx_str_t    type;
        const char  *ext;
    } exts[] = {
        { ngx_string("application/pdf"), "pdf" },
        { ngx_string("application/vnd.openxmlformats-officedocument."
                     "wordprocessingml.document"), "docx" },
        { ngx_string("application/vnd.openxmlformats-officedocument."
                     "spreadsheetml.sheet"), "xlsx" },
        { ngx_string("application/vnd.openxmlformats-officedocument."
                     "presentationml.presentation"), "pptx" },
        { ngx_string("application/vnd.oasis.opendocument.text"), "odt" },
        { ngx_string("application/vnd.oasis.opendocument.spreadsheet"),
          "ods" },
        { ngx_string("application/x-vnd.oasis.opendocument.spreadsheet"),
          "xods" },
        { ngx_string("application/vnd.oasis.opendocument.presentation"),
          "odp" },
        { ngx_string("application/rtf"), "rtf" },
        { ngx_string("application/epub+zip"), "epub" },
        { ngx_string("application/zip"), "zip" },
        { ngx_string("text/plain"), "txt" },
        { ngx_string("text/html"), "html" },
        { ngx_string("text/markdown"), "md" },
        { ngx_string("text/x-markdown"), "xmd" },
        { ngx_string("text/csv"), "csv" },
        { ngx_string("text/tab-separated-values"), "tsv" },
        { ngx_string("image/png"), "png" },
        { ngx_string("image/jpeg"), "jpg" },
        { ngx_string("image/svg+xml"), "svg" },
        { ngx_string("application/vnd.google-apps.script+json"), "json" },
        { ngx_string("video/mp4"), "mp4" },
        { ngx_null_string, NULL }
    };

    for (i = 0; exts[i].ext; i++) {
        if (exts[i].type.len == type->len
            && ngx_strncasecmp(exts[i].type.data, type->data, type->len)
               == 0)
        {
            ngx_cpystrn(ext, (u_char *) exts[i].ext, 11);
            return;
        }
    }

    ngx_sha1_init(&sha1);
    ngx_sha1_update(&sha1, type->data, type->len);
    ngx_sha1_final(digest, &sha1);

    ext[0] = 'x';
    *ngx_hex_dump(ext + 1, digest, 4) = '\0';
}
