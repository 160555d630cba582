
/*
 * nginx-gdrive-worker: S3, every object of a file deleted.
 *
 * Client layer: with gdrive_s3_on_delete delete, a file removed or
 * trashed in Drive loses its objects, {prefix}{integration}/{file}/...
 * A page of ListObjectsV2 (s3:ListBucket) is followed by one
 * DeleteObjects of its keys (s3:DeleteObject), until a listing comes
 * back empty or complete: memory is one page, whatever the number of
 * revisions stored.  A listed key outside the prefix is S3's answer
 * gone wrong and is never deleted.  Failures are not retried here: the
 * job retries them (transient) or dead-letters them (403, other 4xx).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>

#include "ngx_gdrive.h"
#include "ngx_gdrive_http.h"
#include "ngx_gdrive_metrics.h"
#include "ngx_gdrive_sigv4.h"
#include "ngx_gdrive_s3.h"


#define NGX_GDRIVE_S3_DELETE_PAGE      100          /* keys per page */
#define NGX_GDRIVE_S3_DELETE_MAX_BODY  (512 * 1024) /* a listing page */
#define NGX_GDRIVE_S3_DELETE_MAX_KEY   1024


typedef struct {
    ngx_gdrive_s3_delete_t       *d;
    ngx_http_gdrive_main_conf_t  *gmcf;
    ngx_gdrive_http_t            *http;
    ngx_gdrive_s3_target_t        bucket;
    u_char                       *url;
    ngx_event_t                   post;
    u_char                       *xml;        /* DeleteObjects' body */
    size_t                        xml_len;
    ngx_uint_t                    keys;       /* in xml */
    char                          hash[NGX_GDRIVE_SHA256_HEX_LEN + 1];
    char                          md5[NGX_GDRIVE_MD5_BASE64_LEN + 1];
    u_char                        detail[256];
    ngx_event_t                   wait;     /* for AWS credentials */
    unsigned                      deleting:1;
    unsigned                      truncated:1;
    unsigned                      reported:1;
} ngx_gdrive_s3_deleter_t;


static void ngx_gdrive_s3_delete_list(ngx_event_t *ev);
static void ngx_gdrive_s3_delete_handler(ngx_gdrive_http_t *h);
static ngx_int_t ngx_gdrive_s3_delete_page(ngx_gdrive_s3_deleter_t *s);
static void ngx_gdrive_s3_delete_objects(ngx_gdrive_s3_deleter_t *s);
static void ngx_gdrive_s3_delete_fail(ngx_gdrive_s3_deleter_t *s,
    const char *code, ngx_uint_t permanent);
static void ngx_gdrive_s3_delete_end(ngx_gdrive_s3_deleter_t *s);
static void ngx_gdrive_s3_delete_done(ngx_event_t *ev);
static void ngx_gdrive_s3_delete_cleanup(void *data);
static void ngx_gdrive_s3_delete_stop(ngx_gdrive_s3_deleter_t *s);
static ngx_int_t ngx_gdrive_s3_delete_busy(ngx_gdrive_s3_deleter_t *s,
    ngx_int_t rc);
static void ngx_gdrive_s3_delete_wait(ngx_event_t *ev);


void
ngx_gdrive_s3_delete_start(ngx_gdrive_s3_delete_t *d)
{
    ngx_str_t                 empty;
    ngx_pool_cleanup_t       *cln;
    ngx_gdrive_s3_deleter_t  *s;

    d->rc = NGX_ERROR;
    d->code = "internal_error";
    d->detail = "out of memory";
    d->permanent = 0;
    d->deleted = 0;

    s = ngx_pcalloc(d->pool, sizeof(ngx_gdrive_s3_deleter_t));
    cln = ngx_pool_cleanup_add(d->pool, 0);

    if (s == NULL || cln == NULL) {
        d->state = NULL;
        return;
    }

    d->state = s;
    s->d = d;
    s->gmcf = ngx_gdrive_s3_conf();

    cln->handler = ngx_gdrive_s3_delete_cleanup;
    cln->data = s;

    s->post.data = s;
    s->post.log = d->log;
    s->post.handler = ngx_gdrive_s3_delete_list;

    s->wait.data = s;
    s->wait.log = d->log;
    s->wait.handler = ngx_gdrive_s3_delete_wait;

    ngx_str_null(&empty);

    if (s->gmcf->s3_bucket.len == 0
        || (!s->gmcf->s3_web_identity
            && (s->gmcf->s3_access_key.len == 0
                || s->gmcf->s3_secret_key.len == 0)))
    {
        d->code = "s3_rejected";
        d->detail = "the S3 bucket or its credentials are not configured";
        d->permanent = 1;
        ngx_gdrive_s3_delete_end(s);
        return;
    }

    if (d->prefix.len == 0 || d->prefix.len > NGX_GDRIVE_S3_DELETE_MAX_KEY
        || d->prefix.data[d->prefix.len - 1] != '/')
    {
        d->detail = "a file's prefix must end with '/'";
        d->permanent = 1;
        ngx_gdrive_s3_delete_end(s);
        return;
    }

    if (ngx_gdrive_s3_target(d->pool, s->gmcf, &empty, &s->bucket) != NGX_OK)
    {
        d->code = "s3_rejected";
        d->detail = "gdrive_s3_endpoint is not a URL";
        d->permanent = 1;
        ngx_gdrive_s3_delete_end(s);
        return;
    }

    s->url = ngx_pnalloc(d->pool,
                         ngx_gdrive_s3_url_size(&s->bucket,
                                                3 * d->prefix.len + 64));
    s->http = ngx_gdrive_http_create_lean(d->pool, d->log,
                                     NGX_GDRIVE_S3_DELETE_MAX_BODY);

    if (s->url == NULL || s->http == NULL) {
        ngx_gdrive_s3_delete_end(s);
        return;
    }

    s->http->data = s;

    /* the first request starts from the event loop, as done() would */
    ngx_post_event(&s->post, &ngx_posted_events);
}


void
ngx_gdrive_s3_delete_cancel(ngx_gdrive_s3_delete_t *d)
{
    if (d->state) {
        ngx_gdrive_s3_delete_stop(d->state);
    }
}


/* this deleter's requests stopped: another may own d by now (a retry) */

static void
ngx_gdrive_s3_delete_stop(ngx_gdrive_s3_deleter_t *s)
{
    if (s->reported) {
        return;
    }

    s->reported = 1;

    if (s->http) {
        ngx_gdrive_http_cancel(s->http);
    }

    if (s->post.posted) {
        ngx_delete_posted_event(&s->post);
    }

    if (s->wait.timer_set) {
        ngx_del_timer(&s->wait);
    }

    if (s->xml) {
        ngx_free(s->xml);
        s->xml = NULL;
    }
}


static void
ngx_gdrive_s3_delete_cleanup(void *data)
{
    ngx_gdrive_s3_deleter_t  *s = data;

    ngx_gdrive_s3_delete_stop(s);
}


/* ListObjectsV2 of the prefix, from its start: what was deleted is gone */

static void
ngx_gdrive_s3_delete_list(ngx_event_t *ev)
{
    ngx_gdrive_s3_deleter_t *s = ev->data;

    ngx_gdrive_s3_delete_t   *d;
    ngx_gdrive_sigv4_pair_t   q[3];

    d = s->d;

    if (s->reported) {
        return;
    }

    s->deleting = 0;

    q[0] = (ngx_gdrive_sigv4_pair_t) { "list-type", 9, "2", 1 };
    q[1] = (ngx_gdrive_sigv4_pair_t) { "max-keys", 8, "100", 3 };
    q[2] = (ngx_gdrive_sigv4_pair_t) {
        "prefix", 6, (char *) d->prefix.data, d->prefix.len };

    ngx_gdrive_http_reset(s->http);

    s->http->handler = ngx_gdrive_s3_delete_handler;
    s->http->data = s;
    s->http->method = "GET";
    s->http->what = "s3 list";

    if (ngx_gdrive_s3_delete_busy(s,
            ngx_gdrive_s3_sign_start(s->http, s->gmcf, &s->bucket, "GET",
                                     q, 3, NULL, 0,
                                     NGX_GDRIVE_SIGV4_EMPTY_SHA256, s->url))
        != NGX_OK)
    {
        d->detail = "the S3 listing could not be started";
        ngx_gdrive_s3_delete_end(s);
    }
}


static void
ngx_gdrive_s3_delete_handler(ngx_gdrive_http_t *h)
{
    ngx_gdrive_s3_deleter_t *s = h->data;

    ngx_str_t  v;

    if (s->reported) {
        return;
    }

    ngx_gdrive_metric_s3_request(s->deleting ? "delete" : "list",
                                 h->result == CURLE_OK ? h->status : 0);

    if (h->result != CURLE_OK) {
        ngx_snprintf(s->detail, sizeof(s->detail) - 1, "%s: %s%Z",
                     s->deleting ? "DeleteObjects" : "ListObjectsV2",
                     h->error[0] ? h->error : curl_easy_strerror(h->result));
        ngx_gdrive_s3_delete_fail(s, "s3_error", 0);
        return;
    }

    if (h->status < 200 || h->status > 299) {
        ngx_str_null(&v);
        (void) ngx_gdrive_s3_xml(h->body, h->len, "Code", &v);

        ngx_snprintf(s->detail, sizeof(s->detail) - 1, "%s: HTTP %l %*s%s%Z",
                     s->deleting ? "DeleteObjects" : "ListObjectsV2",
                     h->status, ngx_min(v.len, 64), v.data,
                     h->status != 403 ? ""
                     : s->deleting ? " (s3:DeleteObject is needed)"
                                   : " (s3:ListBucket is needed)");

        if (h->status == 403) {
            ngx_gdrive_s3_delete_fail(s, "s3_access_denied", 1);

        } else if (h->status >= 500 || h->status == 429 || h->status == 408)
        {
            ngx_gdrive_s3_delete_fail(s, "s3_error", 0);

        } else {
            ngx_gdrive_s3_delete_fail(s, "s3_rejected", 1);
        }

        return;
    }

    if (s->deleting) {

        /* Quiet mode: the answer names only the keys that failed */

        if (ngx_gdrive_s3_xml(h->body, h->len, "Error", &v) == NGX_OK) {
            ngx_str_null(&v);
            (void) ngx_gdrive_s3_xml(h->body, h->len, "Code", &v);

            ngx_snprintf(s->detail, sizeof(s->detail) - 1,
                         "DeleteObjects: a key was not deleted: %*s%Z",
                         ngx_min(v.len, 64), v.data);

            ngx_gdrive_s3_delete_fail(s,
                                      (v.len == 12
                                       && ngx_strncmp(v.data, "AccessDenied",
                                                      12) == 0)
                                      ? "s3_access_denied" : "s3_error",
                                      v.len == 12);
            return;
        }

        s->d->deleted += s->keys;

        ngx_free(s->xml);
        s->xml = NULL;

        if (s->truncated) {
            ngx_post_event(&s->post, &ngx_posted_events);
            return;
        }

        s->d->rc = NGX_OK;
        ngx_gdrive_s3_delete_end(s);
        return;
    }

    switch (ngx_gdrive_s3_delete_page(s)) {

    case NGX_OK:
        ngx_gdrive_s3_delete_objects(s);
        return;

    case NGX_DONE:
        s->d->rc = NGX_OK;
        ngx_gdrive_s3_delete_end(s);
        return;

    default:
        /* s->d says why */
        ngx_gdrive_s3_delete_end(s);
        return;
    }
}


/*
 * The listing page's keys into DeleteObjects' XML: NGX_DONE when the
 * page has none, NGX_ERROR for an answer that cannot be S3's.
 */

static ngx_int_t
ngx_gdrive_s3_delete_page(ngx_gdrive_s3_deleter_t *s)
{
    u_char                  *p, *last, *k, *e, *out;
    size_t                   size;
    ngx_str_t                key, v;
    ngx_gdrive_s3_delete_t  *d;
    u_char                   raw[NGX_GDRIVE_S3_DELETE_MAX_KEY];

    static const char  head[] = "<Delete xmlns=\"http://s3.amazonaws.com/"
                                "doc/2006-03-01/\"><Quiet>true</Quiet>";
    static const char  tail[] = "</Delete>";

    d = s->d;
    s->keys = 0;

    s->truncated = (ngx_gdrive_s3_xml(s->http->body, s->http->len,
                                      "IsTruncated", &v) == NGX_OK
                    && v.len == 4 && ngx_strncmp(v.data, "true", 4) == 0);

    /* the body holds at most this many keys' bytes: escaped, 6 times */
    size = sizeof(head) + sizeof(tail)
           + 6 * s->http->len
           + NGX_GDRIVE_S3_DELETE_PAGE * sizeof("<Object><Key></Key></Object>");

    s->xml = ngx_alloc(size, d->log);
    if (s->xml == NULL) {
        return NGX_ERROR;
    }

    out = ngx_cpymem(s->xml, head, sizeof(head) - 1);

    p = s->http->body;
    last = p + s->http->len;

    while (p && p < last) {
        k = ngx_strlcasestrn(p, last, (u_char *) "<Key>", 5 - 1);
        if (k == NULL) {
            break;
        }

        k += 5;
        e = ngx_strlcasestrn(k, last, (u_char *) "</Key>", 6 - 1);

        if (e == NULL || e - k > NGX_GDRIVE_S3_DELETE_MAX_KEY
            || s->keys == NGX_GDRIVE_S3_DELETE_PAGE)
        {
            d->code = "s3_error";
            d->detail = "ListObjectsV2 answered a page that is not S3's";
            return NGX_ERROR;
        }

        v.data = k;
        v.len = e - k;
        key.data = raw;
        key.len = ngx_gdrive_s3_xml_unescape(raw, &v);

        if (key.len < d->prefix.len
            || ngx_strncmp(key.data, d->prefix.data, d->prefix.len) != 0)
        {
            d->code = "s3_error";
            d->detail = "ListObjectsV2 listed a key outside the file's "
                        "prefix";
            return NGX_ERROR;
        }

        out = ngx_cpymem(out, "<Object><Key>", 13);
        out = ngx_gdrive_s3_xml_escape(out, &key);
        out = ngx_cpymem(out, "</Key></Object>", 15);

        s->keys++;
        p = e + 6;
    }

    if (s->keys == 0) {
        ngx_free(s->xml);
        s->xml = NULL;
        return NGX_DONE;
    }

    out = ngx_cpymem(out, tail, sizeof(tail) - 1);
    s->xml_len = out - s->xml;

    return NGX_OK;
}


/* DeleteObjects: S3 requires the body's Content-MD5 */

static void
ngx_gdrive_s3_delete_objects(ngx_gdrive_s3_deleter_t *s)
{
    u_char                    md5[NGX_GDRIVE_MD5_LEN];
    ngx_gdrive_sigv4_pair_t   q[1], hdr[2];

    if (ngx_gdrive_md5(s->xml, s->xml_len, md5) != 0
        || ngx_gdrive_sha256_hex(s->xml, s->xml_len, s->hash) != 0)
    {
        s->d->detail = "digest failed";
        ngx_gdrive_s3_delete_end(s);
        return;
    }

    ngx_gdrive_base64(s->md5, md5, NGX_GDRIVE_MD5_LEN);

    q[0] = (ngx_gdrive_sigv4_pair_t) { "delete", 6, NULL, 0 };
    hdr[0] = (ngx_gdrive_sigv4_pair_t) {
        "Content-MD5", 11, s->md5, NGX_GDRIVE_MD5_BASE64_LEN };
    hdr[1] = (ngx_gdrive_sigv4_pair_t) {
        "Content-Type", 12, "application/xml", 15 };

    s->deleting = 1;

    ngx_gdrive_http_reset(s->http);

    s->http->handler = ngx_gdrive_s3_delete_handler;
    s->http->data = s;
    s->http->method = "POST";
    s->http->what = "s3 delete";
    s->http->request_body = s->xml;
    s->http->request_len = s->xml_len;

    if (ngx_gdrive_s3_delete_busy(s,
            ngx_gdrive_s3_sign_start(s->http, s->gmcf, &s->bucket, "POST",
                                     q, 1, hdr, 2, s->hash, s->url))
        != NGX_OK)
    {
        s->d->detail = "DeleteObjects could not be started";
        ngx_gdrive_s3_delete_end(s);
    }
}


/*
 * No AWS credentials yet (web identity): the request waits a second and
 * is made again, as often as it takes; nothing is counted as a failure.
 */

static ngx_int_t
ngx_gdrive_s3_delete_busy(ngx_gdrive_s3_deleter_t *s, ngx_int_t rc)
{
    if (rc != NGX_BUSY) {
        return rc;
    }

    ngx_add_timer(&s->wait, 1000);

    return NGX_OK;
}


static void
ngx_gdrive_s3_delete_wait(ngx_event_t *ev)
{
    ngx_gdrive_s3_deleter_t *s = ev->data;

    if (s->reported) {
        return;
    }

    if (s->deleting) {
        ngx_gdrive_s3_delete_objects(s);

    } else {
        ngx_gdrive_s3_delete_list(&s->post);
    }
}


static void
ngx_gdrive_s3_delete_fail(ngx_gdrive_s3_deleter_t *s, const char *code,
    ngx_uint_t permanent)
{
    ngx_uint_t  level;

    s->d->code = code;
    s->d->detail = (char *) s->detail;
    s->d->permanent = permanent;

    level = permanent ? NGX_LOG_ERR : NGX_LOG_WARN;

    ngx_log_error(level, s->d->log, 0,
                  "gdrive: s3 objects under \"%V\" not deleted (%s): %s",
                  &s->d->prefix, code, s->detail);

    ngx_gdrive_s3_delete_end(s);
}


/* done() from a posted event of its own: never inside start() */

static void
ngx_gdrive_s3_delete_end(ngx_gdrive_s3_deleter_t *s)
{
    if (s->xml) {
        ngx_free(s->xml);
        s->xml = NULL;
    }

    if (s->post.posted) {
        ngx_delete_posted_event(&s->post);
    }

    s->post.handler = ngx_gdrive_s3_delete_done;
    ngx_post_event(&s->post, &ngx_posted_events);
}


static void
ngx_gdrive_s3_delete_done(ngx_event_t *ev)
{
    ngx_gdrive_s3_deleter_t *s = ev->data;

    if (s->reported) {
        return;
    }

    s->reported = 1;

    if (s->d->rc == NGX_OK) {
        ngx_log_error(NGX_LOG_INFO, s->d->log, 0,
                      "gdrive: s3 objects under \"%V\" deleted: %ui",
                      &s->d->prefix, s->d->deleted);
    }

    s->d->done(s->d);
}
