
/*
 * nginx-gdrive-worker: S3, one object written from a byte stream.
 *
 * Client layer: HEAD (skip what is already there), then a single PUT
 * below gdrive_s3_multipart_threshold, else a multipart upload of
 * gdrive_stream_buffers-sized parts: a buffer fills while full ones
 * upload, at most gdrive_stream_buffers of them in memory, and the owner
 * is told to pause when none is free.  A single PUT of a known size
 * larger than one buffer is streamed: curl reads the buffers in the order
 * they fill while the owner writes, and frees each once it is sent.  It
 * carries Drive's md5 as Content-MD5, so S3 itself refuses (BadDigest)
 * content that is not what Drive reported, and the stream is not hashed
 * with md5 here; its last byte waits for finish(), so S3 stores nothing
 * of a download that did not end well.  Once it has sent bytes such a PUT
 * cannot be retried here, its job is.  Every request is signed with SigV4
 * (ngx_gdrive_sigv4.c) and goes through ngx_gdrive_http.c on the event
 * loop; failed requests are retried here on a timer a few times before
 * the upload fails.  A multipart upload that does not complete is
 * aborted on S3 by a request with a pool of its own, so that it outlives
 * its owner.
 *
 * The owner's contract.  Callbacks come from posted events, never from
 * inside start(), write(), finish() or abort(), and each is the last
 * thing the uploader does in that event, so a callback may call any of
 * the four functions or destroy the pool after done().  After start():
 * ready() or done(), once.  resume() comes once after each NGX_AGAIN of
 * write(), never after done().  done() comes exactly once unless abort()
 * came first; the buffers are freed before it.  u->sha256, u->md5_hex
 * and u->bytes are set from finish() on; with unchanged set, only
 * u->bytes (the object's size).  A failure found inside write() or
 * finish() (size_mismatch, checksum_mismatch) posts done(); write()
 * returns NGX_ERROR.  Destroying the pool without abort() is an abort().
 * Only if start() cannot allocate its state does no callback come:
 * u->state is then NULL and u->code "internal_error".
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>

#include "ngx_gdrive.h"
#include "ngx_gdrive_aws.h"
#include "ngx_gdrive_http.h"
#include "ngx_gdrive_metrics.h"
#include "ngx_gdrive_sigv4.h"
#include "ngx_gdrive_s3.h"


#define NGX_GDRIVE_S3_MAX_PARTS      10000    /* S3's limit */
#define NGX_GDRIVE_S3_ATTEMPTS       4        /* per request */
#define NGX_GDRIVE_S3_BACKOFF        500      /* ms, doubled per attempt */
#define NGX_GDRIVE_S3_MAX_WAIT       10000    /* ms; longer: the job's */
#define NGX_GDRIVE_S3_CREDENTIALS_WAIT  1000  /* ms, for AWS credentials */
#define NGX_GDRIVE_S3_MAX_BODY       (64 * 1024)
#define NGX_GDRIVE_S3_MAX_ETAG       128
#define NGX_GDRIVE_S3_MAX_UPLOAD_ID  1024
#define NGX_GDRIVE_S3_MAX_TYPE       255


typedef enum {
    NGX_GDRIVE_S3_HEAD = 0,
    NGX_GDRIVE_S3_PUT,
    NGX_GDRIVE_S3_CREATE,
    NGX_GDRIVE_S3_PART,
    NGX_GDRIVE_S3_COMPLETE,
    NGX_GDRIVE_S3_ABORT
} ngx_gdrive_s3_kind_e;


typedef enum {
    NGX_GDRIVE_S3_BUF_FREE = 0,
    NGX_GDRIVE_S3_BUF_FILLING,
    NGX_GDRIVE_S3_BUF_FULL,          /* waits for the upload id */
    NGX_GDRIVE_S3_BUF_UPLOADING
} ngx_gdrive_s3_buf_state_e;


typedef struct ngx_gdrive_s3_s  ngx_gdrive_s3_t;


typedef struct {
    ngx_gdrive_s3_t         *s3;
    ngx_gdrive_http_t       *http;
    ngx_event_t              retry;
    ngx_gdrive_s3_kind_e     kind;
    ngx_uint_t               attempts;
    ngx_uint_t               part;        /* its number, from 1 */
    u_char                  *body;
    size_t                   len;
    u_char                   hash[NGX_GDRIVE_SHA256_HEX_LEN + 1];
    u_char                   etag[NGX_GDRIVE_S3_MAX_ETAG + 1];
    size_t                   etag_len;
} ngx_gdrive_s3_req_t;


typedef struct {
    ngx_gdrive_s3_req_t      req;         /* this buffer as a part */
    u_char                  *start;
    size_t                   len;
    ngx_gdrive_digest_t     *sha256;      /* of the part */
    ngx_gdrive_s3_buf_state_e  state;
} ngx_gdrive_s3_buf_t;


struct ngx_gdrive_s3_s {
    ngx_gdrive_s3_upload_t  *u;
    ngx_http_gdrive_main_conf_t  *gmcf;

    ngx_gdrive_s3_req_t      ctl;         /* HEAD, PUT, create, complete */
    ngx_gdrive_s3_buf_t     *bufs;
    ngx_uint_t               nbufs;
    size_t                   cap;         /* of one buffer */
    ngx_gdrive_s3_buf_t     *fill;
    ngx_uint_t               parts;       /* numbered so far */
    ngx_uint_t               busy;        /* parts not yet uploaded */
    ngx_array_t             *etags;       /* ngx_str_t, by part number */

    ngx_gdrive_digest_t     *sha256;      /* of the whole stream */
    ngx_gdrive_digest_t     *md5;
    u_char                   md5_raw[NGX_GDRIVE_MD5_LEN];
    u_char                   sha256_hex[NGX_GDRIVE_SHA256_HEX_LEN + 1];
    off_t                    bytes;

    ngx_gdrive_s3_target_t   target;
    ngx_str_t                meta_name;   /* x-amz-meta-drive-name */
    ngx_str_t                upload_id;
    ngx_str_t                content_type;
    u_char                  *url;         /* scratch for each request */
    size_t                   url_size;

    ngx_event_t              post;        /* the callbacks */

    ngx_uint_t               fill_next;   /* stream: the buffer filled next */
    ngx_uint_t               send_buf;    /* stream: the buffer read from */
    size_t                   send_pos;    /* in it */
    off_t                    sent;
    ngx_event_t              unpause;     /* stream: the PUT reads again */
    u_char                   detail[256]; /* of the last failed request */

    unsigned                 single:1;    /* a known size below a buffer */
    unsigned                 stream:1;    /* a known size below threshold */
    unsigned                 streaming:1; /* its PUT started */
    unsigned                 send_paused:1;
    unsigned                 waited:1;    /* for credentials, logged */
    unsigned                 drive_md5:1; /* stream: S3 checks Drive's md5 */
    unsigned                 sign_parts:1;
    unsigned                 multipart:1;
    unsigned                 creating:1;
    unsigned                 completing:1;
    unsigned                 completed:1;
    unsigned                 ended:1;
    unsigned                 failed:1;
    unsigned                 reported:1;  /* done() called, or aborted */
    unsigned                 post_ready:1;
    unsigned                 post_resume:1;
    unsigned                 post_done:1;
    unsigned                 want_resume:1;
    unsigned                 wait_create:1;
};


/* what an abort that outlives its owner keeps */
typedef struct {
    ngx_pool_t              *pool;
    ngx_log_t                log;
    ngx_str_t                key;
} ngx_gdrive_s3_orphan_t;


static ngx_int_t ngx_gdrive_s3_prepare(ngx_gdrive_s3_upload_t *u,
    ngx_gdrive_s3_t *s3);
static ngx_int_t ngx_gdrive_s3_send(ngx_gdrive_s3_t *s3,
    ngx_gdrive_s3_req_t *req, ngx_gdrive_http_t *h,
    ngx_gdrive_s3_kind_e kind);
static void ngx_gdrive_s3_start_req(ngx_gdrive_s3_req_t *req,
    ngx_gdrive_s3_kind_e kind);
static void ngx_gdrive_s3_handler(ngx_gdrive_http_t *h);
static void ngx_gdrive_s3_header(ngx_gdrive_http_t *h, u_char *line,
    size_t len);
static void ngx_gdrive_s3_error(ngx_gdrive_s3_req_t *req,
    ngx_gdrive_http_t *h);
static void ngx_gdrive_s3_retry_handler(ngx_event_t *ev);
static void ngx_gdrive_s3_head_done(ngx_gdrive_s3_t *s3,
    ngx_gdrive_http_t *h);
static void ngx_gdrive_s3_create_done(ngx_gdrive_s3_t *s3,
    ngx_gdrive_http_t *h);
static void ngx_gdrive_s3_part_done(ngx_gdrive_s3_req_t *req);
static void ngx_gdrive_s3_buffer_full(ngx_gdrive_s3_t *s3,
    ngx_gdrive_s3_buf_t *b);
static void ngx_gdrive_s3_upload_part(ngx_gdrive_s3_t *s3,
    ngx_gdrive_s3_buf_t *b);
static void ngx_gdrive_s3_complete(ngx_gdrive_s3_t *s3);
static void ngx_gdrive_s3_stream_more(ngx_gdrive_s3_t *s3);
static size_t ngx_gdrive_s3_stream_read(ngx_gdrive_http_t *h, u_char *p,
    size_t len);
static void ngx_gdrive_s3_unpause_handler(ngx_event_t *ev);
static ngx_uint_t ngx_gdrive_s3_drive_md5(ngx_gdrive_s3_upload_t *u,
    u_char *raw);
static u_char *ngx_gdrive_s3_complete_xml(ngx_gdrive_s3_t *s3,
    size_t *len);
static void ngx_gdrive_s3_fail(ngx_gdrive_s3_t *s3, const char *code,
    const char *detail, ngx_uint_t permanent, ngx_int_t retry_after);
static void ngx_gdrive_s3_stop(ngx_gdrive_s3_t *s3, ngx_uint_t keep_ctl);
static size_t ngx_gdrive_s3_object_headers(ngx_gdrive_s3_t *s3,
    ngx_gdrive_sigv4_pair_t *hdr);
static ngx_int_t ngx_gdrive_s3_upload_id(ngx_gdrive_s3_t *s3,
    ngx_gdrive_http_t *h);
static void ngx_gdrive_s3_abort_multipart(ngx_gdrive_s3_t *s3);
static void ngx_gdrive_s3_abort_done(ngx_gdrive_http_t *h);
static void ngx_gdrive_s3_post(ngx_gdrive_s3_t *s3);
static void ngx_gdrive_s3_post_handler(ngx_event_t *ev);
static void ngx_gdrive_s3_free(ngx_gdrive_s3_t *s3);
static void ngx_gdrive_s3_cleanup(void *data);
static ngx_uint_t ngx_gdrive_s3_printable(ngx_str_t *s);
static const char *ngx_gdrive_s3_what(ngx_gdrive_s3_kind_e kind);


/* the S3 settings: set by ngx_gdrive_s3_init() only */
static ngx_http_gdrive_main_conf_t  *ngx_gdrive_s3_gmcf;


void
ngx_gdrive_s3_init(ngx_http_gdrive_main_conf_t *gmcf)
{
    ngx_gdrive_s3_gmcf = gmcf;
}


/* the deleter's settings are the uploader's */

ngx_http_gdrive_main_conf_t *
ngx_gdrive_s3_conf(void)
{
    return ngx_gdrive_s3_gmcf;
}


void
ngx_gdrive_s3_upload_start(ngx_gdrive_s3_upload_t *u)
{
    ngx_gdrive_s3_t     *s3;
    ngx_pool_cleanup_t  *cln;

    u->rc = NGX_ERROR;
    u->code = NULL;
    u->detail = NULL;
    u->permanent = 0;
    u->retry_after = -1;
    u->bytes = 0;
    u->parts = 0;
    u->unchanged = 0;

    s3 = ngx_pcalloc(u->pool, sizeof(ngx_gdrive_s3_t));
    cln = ngx_pool_cleanup_add(u->pool, 0);

    if (s3 == NULL || cln == NULL) {
        /* no state to post from: the owner learns it from u->state */
        u->state = NULL;
        u->code = "internal_error";
        u->detail = "out of memory";
        ngx_log_error(NGX_LOG_ALERT, u->log, 0,
                      "gdrive: s3 upload of \"%V\": out of memory", &u->key);
        return;
    }

    u->state = s3;

    s3->u = u;
    s3->gmcf = ngx_gdrive_s3_gmcf;

    s3->post.handler = ngx_gdrive_s3_post_handler;
    s3->post.data = s3;
    s3->post.log = u->log;

    s3->unpause.handler = ngx_gdrive_s3_unpause_handler;
    s3->unpause.data = s3;
    s3->unpause.log = u->log;

    cln->handler = ngx_gdrive_s3_cleanup;
    cln->data = s3;

    if (ngx_gdrive_s3_prepare(u, s3) != NGX_OK) {
        return;
    }

    ngx_gdrive_s3_start_req(&s3->ctl, NGX_GDRIVE_S3_HEAD);
}


static ngx_int_t
ngx_gdrive_s3_prepare(ngx_gdrive_s3_upload_t *u, ngx_gdrive_s3_t *s3)
{
    ngx_uint_t                    i;
    ngx_http_gdrive_main_conf_t  *gmcf;

    gmcf = s3->gmcf;

    if (gmcf->s3_bucket.len == 0
        || (!gmcf->s3_web_identity
            && (gmcf->s3_access_key.len == 0
                || gmcf->s3_secret_key.len == 0)))
    {
        ngx_gdrive_s3_fail(s3, "s3_rejected", "the S3 bucket or its "
                           "credentials are not configured", 1, -1);
        return NGX_ERROR;
    }

    if (u->key.len == 0 || u->key.len > 1024) {
        ngx_gdrive_s3_fail(s3, "internal_error", "an S3 key must have 1 to "
                           "1024 bytes", 1, -1);
        return NGX_ERROR;
    }

    switch (ngx_gdrive_s3_target(u->pool, gmcf, &u->key, &s3->target)) {

    case NGX_OK:
        break;

    case NGX_DECLINED:
        ngx_gdrive_s3_fail(s3, "s3_rejected", "gdrive_s3_endpoint is not "
                           "a URL", 1, -1);
        return NGX_ERROR;

    default:
        ngx_gdrive_s3_fail(s3, "internal_error", "out of memory", 0, -1);
        return NGX_ERROR;
    }

    s3->url_size = ngx_gdrive_s3_url_size(&s3->target,
                                         sizeof("?partNumber=10000"
                                                "&uploadId=")
                                         + 3 * NGX_GDRIVE_S3_MAX_UPLOAD_ID);
    s3->url = ngx_pnalloc(u->pool, s3->url_size);

    if (s3->url == NULL) {
        ngx_gdrive_s3_fail(s3, "internal_error", "out of memory", 0, -1);
        return NGX_ERROR;
    }

    /* a type Drive reports goes into a header: printable ASCII only */

    s3->content_type = u->content_type;

    if (s3->content_type.len == 0
        || s3->content_type.len > NGX_GDRIVE_S3_MAX_TYPE
        || !ngx_gdrive_s3_printable(&s3->content_type))
    {
        ngx_str_set(&s3->content_type, "application/octet-stream");
    }

    /* buffers: one of exactly the size for a small known size */

    if (u->size >= 0 && (size_t) u->size < gmcf->s3_multipart_threshold) {
        if ((size_t) u->size < gmcf->stream_buffers.size) {
            s3->single = 1;

        } else {
            /* the configuration allows this only with unsigned payloads */
            s3->stream = 1;
        }
    }

    s3->sign_parts = gmcf->s3_sign_parts ? 1 : 0;

    if (u->size >= 0 && (size_t) u->size < gmcf->stream_buffers.size) {
        s3->cap = (size_t) u->size;
        s3->nbufs = 1;

    } else {
        s3->cap = gmcf->stream_buffers.size;
        s3->nbufs = gmcf->stream_buffers.num;
    }

    /*
     * A file that would need more than S3's 10000 parts fails at once:
     * growing the parts would break the memory bound the buffers promise.
     */
    if (u->size >= 0 && !s3->single && !s3->stream
        && (u->size + (off_t) s3->cap - 1) / (off_t) s3->cap
           > NGX_GDRIVE_S3_MAX_PARTS)
    {
        ngx_gdrive_s3_fail(s3, "file_too_large", "the file needs more than "
                           "10000 parts of gdrive_stream_buffers' size", 1,
                           -1);
        return NGX_ERROR;
    }

    /* a streamed PUT leaves the md5 check to S3: md5 costs more than the
     * rest of the worker's work on the stream */
    s3->drive_md5 = (s3->stream && ngx_gdrive_s3_drive_md5(u, s3->md5_raw));

    s3->bufs = ngx_pcalloc(u->pool, s3->nbufs * sizeof(ngx_gdrive_s3_buf_t));
    s3->sha256 = ngx_gdrive_digest_create(NGX_GDRIVE_DIGEST_SHA256);
    s3->md5 = s3->drive_md5 ? NULL
                            : ngx_gdrive_digest_create(NGX_GDRIVE_DIGEST_MD5);
    s3->ctl.http = ngx_gdrive_http_create_lean(u->pool, u->log,
                                          NGX_GDRIVE_S3_MAX_BODY);

    if (s3->bufs == NULL || s3->sha256 == NULL
        || (s3->md5 == NULL && !s3->drive_md5) || s3->ctl.http == NULL)
    {
        ngx_gdrive_s3_fail(s3, "internal_error", "out of memory", 0, -1);
        return NGX_ERROR;
    }

    s3->ctl.s3 = s3;
    s3->ctl.retry.handler = ngx_gdrive_s3_retry_handler;
    s3->ctl.retry.data = &s3->ctl;
    s3->ctl.retry.log = u->log;

    for (i = 0; i < s3->nbufs; i++) {
        s3->bufs[i].req.s3 = s3;
        s3->bufs[i].req.retry.handler = ngx_gdrive_s3_retry_handler;
        s3->bufs[i].req.retry.data = &s3->bufs[i].req;
        s3->bufs[i].req.retry.log = u->log;
    }

    return NGX_OK;
}


/*
 * All of the bytes or none: NGX_AGAIN when no buffer has room (resume()
 * follows), NGX_ERROR once the upload has failed (done() follows, or
 * came).  len must not exceed one gdrive_stream_buffers buffer.
 */

ngx_int_t
ngx_gdrive_s3_upload_write(ngx_gdrive_s3_upload_t *u, u_char *p, size_t len)
{
    size_t                room, n;
    ngx_uint_t            i;
    ngx_gdrive_s3_t      *s3;
    ngx_gdrive_s3_buf_t  *b;

    s3 = u->state;

    if (s3 == NULL || s3->failed || s3->reported || s3->ended) {
        return NGX_ERROR;
    }

    if (len == 0) {
        return NGX_OK;
    }

    if (u->size >= 0 && s3->bytes + (off_t) len > u->size) {
        ngx_gdrive_s3_fail(s3, "size_mismatch", "the content is longer than "
                           "the size Drive reported", 0, -1);
        return NGX_ERROR;
    }

    if (len > s3->cap) {
        ngx_gdrive_s3_fail(s3, "internal_error", "a write larger than a "
                           "stream buffer", 0, -1);
        return NGX_ERROR;
    }

    room = s3->fill ? s3->cap - s3->fill->len : 0;

    for (i = 0; i < s3->nbufs && room < len; i++) {
        if (s3->bufs[i].state == NGX_GDRIVE_S3_BUF_FREE) {
            room += s3->cap;
        }
    }

    if (room < len) {
        s3->want_resume = 1;
        return NGX_AGAIN;
    }

    if (ngx_gdrive_digest_update(s3->sha256, p, len) != 0
        || (s3->md5 && ngx_gdrive_digest_update(s3->md5, p, len) != 0))
    {
        ngx_gdrive_s3_fail(s3, "internal_error", "digest failed", 0, -1);
        return NGX_ERROR;
    }

    while (len) {

        if (s3->fill == NULL) {
            if (s3->stream) {
                /* in turn: curl frees them in the order they filled */
                i = s3->fill_next;

            } else {
                for (i = 0; s3->bufs[i].state != NGX_GDRIVE_S3_BUF_FREE;
                     i++)
                {
                    /* void: room was counted above */
                }
            }

            b = &s3->bufs[i];

            if (b->start == NULL) {
                b->start = ngx_alloc(s3->cap, u->log);

                if (s3->sign_parts && !s3->single && b->sha256 == NULL) {
                    b->sha256 = ngx_gdrive_digest_create(
                                                   NGX_GDRIVE_DIGEST_SHA256);
                }

                if (b->start == NULL
                    || (s3->sign_parts && !s3->single && b->sha256 == NULL))
                {
                    ngx_gdrive_s3_fail(s3, "internal_error", "out of memory",
                                       0, -1);
                    return NGX_ERROR;
                }
            }

            b->len = 0;
            b->state = NGX_GDRIVE_S3_BUF_FILLING;
            s3->fill = b;
        }

        b = s3->fill;
        n = ngx_min(len, s3->cap - b->len);

        ngx_memcpy(b->start + b->len, p, n);

        if (b->sha256 && ngx_gdrive_digest_update(b->sha256, p, n) != 0) {
            ngx_gdrive_s3_fail(s3, "internal_error", "digest failed", 0, -1);
            return NGX_ERROR;
        }

        b->len += n;
        s3->bytes += n;
        p += n;
        len -= n;

        if (b->len == s3->cap && !s3->single) {
            s3->fill = NULL;

            if (s3->stream) {
                b->state = NGX_GDRIVE_S3_BUF_FULL;
                s3->fill_next = (s3->fill_next + 1) % s3->nbufs;
                continue;
            }

            ngx_gdrive_s3_buffer_full(s3, b);

            if (s3->failed) {
                return NGX_ERROR;
            }
        }
    }

    if (s3->stream) {
        ngx_gdrive_s3_stream_more(s3);
    }

    return NGX_OK;
}


void
ngx_gdrive_s3_upload_finish(ngx_gdrive_s3_upload_t *u)
{
    u_char            *expected;
    ngx_gdrive_s3_t   *s3;
    u_char             sha[32], md5_hex[32];
    ngx_gdrive_s3_buf_t  *b;

    s3 = u->state;

    if (s3 == NULL || s3->failed || s3->reported || s3->ended) {
        return;
    }

    s3->ended = 1;

    if (u->size >= 0 && s3->bytes != u->size) {
        ngx_gdrive_s3_fail(s3, "size_mismatch", "the content is shorter "
                           "than the size Drive reported", 0, -1);
        return;
    }

    if (ngx_gdrive_digest_final(s3->sha256, sha) != 0
        || (s3->md5 && ngx_gdrive_digest_final(s3->md5, s3->md5_raw) != 0))
    {
        ngx_gdrive_s3_fail(s3, "internal_error", "digest failed", 0, -1);
        return;
    }

    ngx_gdrive_hex((char *) s3->sha256_hex, sha, 32);

    if (s3->drive_md5) {
        /* Drive's, which S3 checks as the PUT's Content-MD5 */
        ngx_strlow(md5_hex, u->md5.data, 32);

    } else {
        ngx_gdrive_hex((char *) md5_hex, s3->md5_raw, NGX_GDRIVE_MD5_LEN);
    }

    ngx_memcpy(u->sha256, s3->sha256_hex, 64);
    ngx_memcpy(u->md5_hex, md5_hex, 32);
    u->bytes = s3->bytes;

    /* a stream that is not what Drive said it is must not complete */

    if (u->md5.len) {
        expected = u->md5.data;

        if (u->md5.len != 32 || ngx_strncasecmp(expected, md5_hex, 32) != 0) {
            ngx_gdrive_s3_fail(s3, "checksum_mismatch", "the content's md5 "
                               "is not the md5Checksum Drive reported", 0,
                               -1);
            return;
        }
    }

    b = s3->fill;
    s3->fill = NULL;

    if (s3->stream) {
        if (b) {
            /* the last buffer, partly filled: curl frees it once sent */
            b->state = NGX_GDRIVE_S3_BUF_FULL;
        }

        ngx_gdrive_s3_stream_more(s3);
        return;
    }

    if (!s3->multipart
        && (size_t) s3->bytes < s3->gmcf->s3_multipart_threshold)
    {
        s3->ctl.body = b ? b->start : (u_char *) "";
        s3->ctl.len = (size_t) s3->bytes;
        s3->ctl.attempts = 0;
        ngx_gdrive_s3_start_req(&s3->ctl, NGX_GDRIVE_S3_PUT);
        return;
    }

    if (b && b->len) {
        /* the last part, possibly the only one */
        ngx_gdrive_s3_buffer_full(s3, b);

    } else if (b) {
        b->state = NGX_GDRIVE_S3_BUF_FREE;
    }

    if (!s3->failed) {
        ngx_gdrive_s3_complete(s3);
    }
}


void
ngx_gdrive_s3_upload_abort(ngx_gdrive_s3_upload_t *u)
{
    ngx_gdrive_s3_t  *s3;

    s3 = u->state;

    if (s3 == NULL || s3->reported) {
        return;
    }

    s3->reported = 1;

    ngx_gdrive_s3_stop(s3, 0);
    ngx_gdrive_s3_abort_multipart(s3);
    ngx_gdrive_s3_free(s3);
}


/* the owner's pool goes: as abort(), if neither done() nor abort() came */

static void
ngx_gdrive_s3_cleanup(void *data)
{
    ngx_gdrive_s3_t  *s3 = data;

    ngx_gdrive_s3_upload_abort(s3->u);

    ngx_gdrive_digest_destroy(s3->sha256);
    ngx_gdrive_digest_destroy(s3->md5);
    s3->sha256 = NULL;
    s3->md5 = NULL;

    if (s3->post.posted) {
        ngx_delete_posted_event(&s3->post);
    }

    if (s3->unpause.posted) {
        ngx_delete_posted_event(&s3->unpause);
    }
}


static void
ngx_gdrive_s3_buffer_full(ngx_gdrive_s3_t *s3, ngx_gdrive_s3_buf_t *b)
{
    if (s3->parts == NGX_GDRIVE_S3_MAX_PARTS) {
        ngx_gdrive_s3_fail(s3, "file_too_large", "the content needs more "
                           "than 10000 parts of gdrive_stream_buffers' size",
                           1, -1);
        return;
    }

    s3->multipart = 1;
    s3->busy++;

    b->req.part = ++s3->parts;
    b->state = NGX_GDRIVE_S3_BUF_FULL;

    if (s3->upload_id.len) {
        ngx_gdrive_s3_upload_part(s3, b);
        return;
    }

    if (!s3->creating) {
        s3->creating = 1;
        s3->ctl.attempts = 0;
        ngx_gdrive_s3_start_req(&s3->ctl, NGX_GDRIVE_S3_CREATE);
    }
}


static void
ngx_gdrive_s3_upload_part(ngx_gdrive_s3_t *s3, ngx_gdrive_s3_buf_t *b)
{
    u_char  sha[32];

    /*
     * A part's payload is signed only with gdrive_s3_sign_parts: hashing
     * every byte once more (and S3 hashing it again) costs more than the
     * transfer here.  The bytes are checked all the same: the stream's
     * md5 against Drive's before the upload is completed, and TLS on the
     * way.
     */

    if (b->sha256 == NULL) {
        ngx_cpystrn(b->req.hash, (u_char *) "UNSIGNED-PAYLOAD",
                    sizeof(b->req.hash));

    } else {
        if (ngx_gdrive_digest_final(b->sha256, sha) != 0) {
            ngx_gdrive_s3_fail(s3, "internal_error", "digest failed", 0, -1);
            return;
        }

        ngx_gdrive_hex((char *) b->req.hash, sha, 32);
        b->req.hash[64] = '\0';
    }

    if (b->req.http == NULL) {
        b->req.http = ngx_gdrive_http_create_lean(s3->u->pool, s3->u->log,
                                             NGX_GDRIVE_S3_MAX_BODY);
        if (b->req.http == NULL) {
            ngx_gdrive_s3_fail(s3, "internal_error", "out of memory", 0, -1);
            return;
        }
    }

    b->state = NGX_GDRIVE_S3_BUF_UPLOADING;
    b->req.body = b->start;
    b->req.len = b->len;
    b->req.attempts = 0;

    ngx_gdrive_s3_start_req(&b->req, NGX_GDRIVE_S3_PART);
}


/* CompleteMultipartUpload once the stream ended and every part is up */

static void
ngx_gdrive_s3_complete(ngx_gdrive_s3_t *s3)
{
    if (!s3->ended || s3->busy || s3->upload_id.len == 0 || s3->completing
        || s3->failed)
    {
        return;
    }

    s3->completing = 1;

    s3->ctl.body = ngx_gdrive_s3_complete_xml(s3, &s3->ctl.len);

    if (s3->ctl.body == NULL) {
        ngx_gdrive_s3_fail(s3, "internal_error", "out of memory", 0, -1);
        return;
    }

    if (ngx_gdrive_sha256_hex(s3->ctl.body, s3->ctl.len,
                              (char *) s3->ctl.hash)
        != 0)
    {
        ngx_gdrive_s3_fail(s3, "internal_error", "digest failed", 0, -1);
        return;
    }

    s3->ctl.attempts = 0;
    ngx_gdrive_s3_start_req(&s3->ctl, NGX_GDRIVE_S3_COMPLETE);
}


/* a streamed PUT: started with the first bytes, read again with more */

static void
ngx_gdrive_s3_stream_more(ngx_gdrive_s3_t *s3)
{
    if (s3->failed) {
        return;
    }

    if (!s3->streaming) {
        s3->streaming = 1;
        s3->ctl.attempts = 0;
        ngx_gdrive_s3_start_req(&s3->ctl, NGX_GDRIVE_S3_PUT);
        return;
    }

    /* not from inside the download's callback: from the event loop */

    if (s3->send_paused && !s3->unpause.posted) {
        ngx_post_event(&s3->unpause, &ngx_posted_events);
    }
}


static void
ngx_gdrive_s3_unpause_handler(ngx_event_t *ev)
{
    ngx_gdrive_s3_t *s3 = ev->data;

    if (s3->failed || s3->reported || !s3->send_paused) {
        return;
    }

    s3->send_paused = 0;
    ngx_gdrive_http_resume(s3->ctl.http);
}


/*
 * curl asks for the next bytes of a streamed PUT: what the buffers hold,
 * in order, a buffer freed (and the owner resumed) once sent; a pause
 * when nothing is there yet.  The object's last byte waits for finish():
 * S3 stores nothing before the download has ended and been checked.
 */

static size_t
ngx_gdrive_s3_stream_read(ngx_gdrive_http_t *h, u_char *p, size_t len)
{
    ngx_gdrive_s3_req_t *req = h->data;

    off_t                 left;
    size_t                n, k;
    ngx_gdrive_s3_t      *s3;
    ngx_gdrive_s3_buf_t  *b;

    s3 = req->s3;

    if (s3->failed || s3->reported || s3->bufs == NULL) {
        return CURL_READFUNC_ABORT;
    }

    left = s3->u->size - s3->sent - (s3->ended ? 0 : 1);
    n = 0;

    while (n < len && left > 0) {
        b = &s3->bufs[s3->send_buf];

        if (b->state == NGX_GDRIVE_S3_BUF_FREE) {
            break;
        }

        k = ngx_min(b->len - s3->send_pos, len - n);

        if ((off_t) k > left) {
            k = (size_t) left;
        }

        ngx_memcpy(p + n, b->start + s3->send_pos, k);

        s3->send_pos += k;
        s3->sent += k;
        n += k;
        left -= k;

        if (s3->send_pos < b->len || b->state != NGX_GDRIVE_S3_BUF_FULL) {
            if (k == 0) {
                /* the buffer being filled has nothing more yet */
                break;
            }

            continue;
        }

        b->len = 0;
        b->state = NGX_GDRIVE_S3_BUF_FREE;
        s3->send_pos = 0;
        s3->send_buf = (s3->send_buf + 1) % s3->nbufs;

        if (s3->want_resume) {
            s3->want_resume = 0;
            s3->post_resume = 1;
            ngx_gdrive_s3_post(s3);
        }
    }

    if (n == 0) {
        if (s3->sent == s3->u->size) {
            return 0;
        }

        s3->send_paused = 1;
        return CURL_READFUNC_PAUSE;
    }

    return n;
}


/* Drive's md5Checksum as raw bytes, if it is an md5 */

static ngx_uint_t
ngx_gdrive_s3_drive_md5(ngx_gdrive_s3_upload_t *u, u_char *raw)
{
    ngx_int_t   v;
    ngx_uint_t  i;

    if (u->md5.len != 2 * NGX_GDRIVE_MD5_LEN) {
        return 0;
    }

    for (i = 0; i < NGX_GDRIVE_MD5_LEN; i++) {
        v = ngx_hextoi(u->md5.data + 2 * i, 2);

        if (v == NGX_ERROR) {
            return 0;
        }

        raw[i] = (u_char) v;
    }

    return 1;
}


static u_char *
ngx_gdrive_s3_complete_xml(ngx_gdrive_s3_t *s3, size_t *len)
{
    u_char      *xml, *p;
    size_t       n;
    ngx_str_t   *etag;
    ngx_uint_t   i;

    static const char  head[] = "<CompleteMultipartUpload>";
    static const char  tail[] = "</CompleteMultipartUpload>";

    etag = s3->etags->elts;
    n = sizeof(head) + sizeof(tail);

    for (i = 0; i < s3->parts; i++) {
        n += sizeof("<Part><PartNumber>10000</PartNumber><ETag></ETag>"
                    "</Part>") + 6 * etag[i].len;
    }

    xml = ngx_pnalloc(s3->u->pool, n);
    if (xml == NULL) {
        return NULL;
    }

    p = ngx_cpymem(xml, head, sizeof(head) - 1);

    for (i = 0; i < s3->parts; i++) {
        p = ngx_sprintf(p, "<Part><PartNumber>%ui</PartNumber><ETag>",
                        i + 1);

        /* an ETag comes quoted; XML wants the quotes as entities */
        p = ngx_gdrive_s3_xml_escape(p, &etag[i]);

        p = ngx_cpymem(p, "</ETag></Part>", sizeof("</ETag></Part>") - 1);
    }

    p = ngx_cpymem(p, tail, sizeof(tail) - 1);

    *len = p - xml;

    return xml;
}


/*
 * A request without credentials yet (web identity: the first STS answer
 * is on its way, or STS fails) waits on its retry timer without using
 * up an attempt: the job stays in flight, so the consumer pauses at
 * gdrive_max_inflight and the backlog stays in Kafka, and nothing goes
 * to the DLQ for want of credentials.
 */

static void
ngx_gdrive_s3_start_req(ngx_gdrive_s3_req_t *req, ngx_gdrive_s3_kind_e kind)
{
    ngx_int_t  rc;

    req->kind = kind;
    req->attempts++;

    rc = ngx_gdrive_s3_send(req->s3, req, req->http, kind);

    if (rc == NGX_BUSY) {
        req->attempts--;

        if (!req->s3->waited) {
            req->s3->waited = 1;
            ngx_log_error(NGX_LOG_INFO, req->s3->u->log, 0,
                          "gdrive: s3 %s of \"%V\" waits for AWS "
                          "credentials", ngx_gdrive_s3_what(kind),
                          &req->s3->u->key);
        }

        ngx_add_timer(&req->retry, NGX_GDRIVE_S3_CREDENTIALS_WAIT);
        return;
    }

    if (rc != NGX_OK) {
        ngx_gdrive_s3_fail(req->s3, "internal_error", "an S3 request could "
                           "not be started", 0, -1);
    }
}


/*
 * Signs and starts one request on h.  The URL and header lines are built
 * in scratch space: curl copies both.
 */

static ngx_int_t
ngx_gdrive_s3_send(ngx_gdrive_s3_t *s3, ngx_gdrive_s3_req_t *req,
    ngx_gdrive_http_t *h, ngx_gdrive_s3_kind_e kind)
{
    int                       n;
    char                      md5_b64[32];
    u_char                    num[NGX_INT_T_LEN];
    size_t                    nh, nq;
    ngx_int_t                 rc;
    const char               *hash, *method;
    ngx_gdrive_s3_upload_t   *u;
    ngx_gdrive_sigv4_pair_t   hdr[24], q[2];

    u = s3->u;

    nh = 0;
    nq = 0;
    hash = NGX_GDRIVE_SIGV4_EMPTY_SHA256;

    switch (kind) {

    case NGX_GDRIVE_S3_HEAD:
        method = "HEAD";
        break;

    case NGX_GDRIVE_S3_PUT:
    case NGX_GDRIVE_S3_CREATE:
        if (kind == NGX_GDRIVE_S3_PUT && s3->stream) {
            /* sent as it is read: the md5 known up front is Drive's */
            method = "PUT";
            hash = "UNSIGNED-PAYLOAD";

            if (s3->drive_md5) {
                ngx_gdrive_base64(md5_b64, s3->md5_raw, NGX_GDRIVE_MD5_LEN);

                hdr[nh++] = (ngx_gdrive_sigv4_pair_t) {
                    "Content-MD5", 11, md5_b64, NGX_GDRIVE_MD5_BASE64_LEN };
                hdr[nh++] = (ngx_gdrive_sigv4_pair_t) {
                    "x-amz-meta-md5", 14, (char *) u->md5.data, 32 };
            }

        } else if (kind == NGX_GDRIVE_S3_PUT) {
            method = "PUT";
            hash = (char *) s3->sha256_hex;

            ngx_gdrive_base64(md5_b64, s3->md5_raw, NGX_GDRIVE_MD5_LEN);

            hdr[nh++] = (ngx_gdrive_sigv4_pair_t) {
                "Content-MD5", 11, md5_b64, NGX_GDRIVE_MD5_BASE64_LEN };
            hdr[nh++] = (ngx_gdrive_sigv4_pair_t) {
                "x-amz-meta-md5", 14, (char *) u->md5_hex, 32 };

        } else {
            method = "POST";
            q[nq++] = (ngx_gdrive_sigv4_pair_t) { "uploads", 7, NULL, 0 };

            /* the whole stream's md5 is known here only from Drive */
            if (u->md5.len == 32 && ngx_gdrive_s3_printable(&u->md5)) {
                hdr[nh++] = (ngx_gdrive_sigv4_pair_t) {
                    "x-amz-meta-md5", 14, (char *) u->md5.data, 32 };
            }
        }

        hdr[nh++] = (ngx_gdrive_sigv4_pair_t) {
            "Content-Type", 12, (char *) s3->content_type.data,
            s3->content_type.len };

        if (u->drive_id.len && ngx_gdrive_s3_printable(&u->drive_id)) {
            hdr[nh++] = (ngx_gdrive_sigv4_pair_t) {
                "x-amz-meta-drive-file-id", 24, (char *) u->drive_id.data,
                u->drive_id.len };
        }

        if (u->version.len && ngx_gdrive_s3_printable(&u->version)) {
            hdr[nh++] = (ngx_gdrive_sigv4_pair_t) {
                "x-amz-meta-drive-version", 24, (char *) u->version.data,
                u->version.len };
        }

        nh += ngx_gdrive_s3_object_headers(s3, &hdr[nh]);

        break;

    case NGX_GDRIVE_S3_PART:
        method = "PUT";
        hash = (char *) req->hash;
        n = ngx_sprintf(num, "%ui", req->part) - num;
        q[nq++] = (ngx_gdrive_sigv4_pair_t) {
            "partNumber", 10, (char *) num, (size_t) n };
        q[nq++] = (ngx_gdrive_sigv4_pair_t) {
            "uploadId", 8, (char *) s3->upload_id.data, s3->upload_id.len };
        hdr[nh++] = (ngx_gdrive_sigv4_pair_t) {
            "Content-Type", 12, "application/octet-stream", 24 };
        break;

    case NGX_GDRIVE_S3_COMPLETE:
        method = "POST";
        hash = (char *) req->hash;
        q[nq++] = (ngx_gdrive_sigv4_pair_t) {
            "uploadId", 8, (char *) s3->upload_id.data, s3->upload_id.len };
        hdr[nh++] = (ngx_gdrive_sigv4_pair_t) {
            "Content-Type", 12, "application/xml", 15 };
        break;

    default: /* NGX_GDRIVE_S3_ABORT */
        method = "DELETE";
        q[nq++] = (ngx_gdrive_sigv4_pair_t) {
            "uploadId", 8, (char *) s3->upload_id.data, s3->upload_id.len };
        break;
    }

    ngx_gdrive_http_reset(h);

    h->handler = (kind == NGX_GDRIVE_S3_ABORT) ? ngx_gdrive_s3_abort_done
                                                : ngx_gdrive_s3_handler;
    h->header_handler = (kind == NGX_GDRIVE_S3_ABORT) ? NULL
                                                       : ngx_gdrive_s3_header;
    h->method = method;
    h->what = ngx_gdrive_s3_what(kind);

    if (req) {
        h->data = req;
        req->etag_len = 0;
    }

    if (kind == NGX_GDRIVE_S3_CREATE) {
        /* an empty body still gets its Content-Length: 0 */
        h->request_body = (u_char *) "";
        h->request_len = 0;

    } else if (kind == NGX_GDRIVE_S3_PUT && s3->stream) {
        h->source = ngx_gdrive_s3_stream_read;
        h->source_len = u->size;

    } else if (kind != NGX_GDRIVE_S3_HEAD && kind != NGX_GDRIVE_S3_ABORT) {
        h->request_body = req->body;
        h->request_len = req->len;
    }

    rc = ngx_gdrive_s3_sign_start(h, s3->gmcf, &s3->target, method, q, nq,
                                  hdr, nh, hash, s3->url);

    if (rc == NGX_BUSY) {
        return NGX_BUSY;
    }

    if (rc != NGX_OK) {
        ngx_log_error(NGX_LOG_ALERT, u->log, 0,
                      "gdrive: s3 %s of \"%V\" could not be started",
                      ngx_gdrive_s3_what(kind), &u->key);
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * What PutObject and CreateMultipartUpload carry besides the content:
 * server-side encryption and the storage class (never on parts), and
 * metadata that names the file's origin from S3 alone, within S3's 2 KB
 * of user metadata: the Drive name, percent-encoded UTF-8 (metadata is
 * ASCII), is cut to what is left.  At most 6 pairs.
 */

static size_t
ngx_gdrive_s3_object_headers(ngx_gdrive_s3_t *s3, ngx_gdrive_sigv4_pair_t *hdr)
{
    size_t                        n, used, room, len;
    u_char                       *p, *q, *last;
    ngx_gdrive_s3_upload_t       *u;
    ngx_http_gdrive_main_conf_t  *gmcf;

    static u_char  hex[] = "0123456789ABCDEF";

    u = s3->u;
    gmcf = s3->gmcf;
    n = 0;

    if (gmcf->s3_sse.len) {
        hdr[n++] = (ngx_gdrive_sigv4_pair_t) {
            "x-amz-server-side-encryption", 28, (char *) gmcf->s3_sse.data,
            gmcf->s3_sse.len };

        if (gmcf->s3_sse_key.len) {
            hdr[n++] = (ngx_gdrive_sigv4_pair_t) {
                "x-amz-server-side-encryption-aws-kms-key-id", 43,
                (char *) gmcf->s3_sse_key.data, gmcf->s3_sse_key.len };
        }
    }

    if (gmcf->s3_storage_class.len) {
        hdr[n++] = (ngx_gdrive_sigv4_pair_t) {
            "x-amz-storage-class", 19, (char *) gmcf->s3_storage_class.data,
            gmcf->s3_storage_class.len };
    }

    /* S3 counts user metadata as the sum of its names (after
     * "x-amz-meta-") and values; the md5, file id and version came first */

    used = sizeof("md5") - 1 + 32 + sizeof("drive-file-id") - 1
           + u->drive_id.len + sizeof("drive-version") - 1 + u->version.len;

    if (u->md5.len == 32 && ngx_gdrive_s3_printable(&u->md5)) {
        hdr[n++] = (ngx_gdrive_sigv4_pair_t) {
            "x-amz-meta-drive-md5", 20, (char *) u->md5.data, 32 };
        used += sizeof("drive-md5") - 1 + 32;
    }

    if (u->integration.len && ngx_gdrive_s3_printable(&u->integration)) {
        hdr[n++] = (ngx_gdrive_sigv4_pair_t) {
            "x-amz-meta-integration-id", 25, (char *) u->integration.data,
            u->integration.len };
        used += sizeof("integration-id") - 1 + u->integration.len;
    }

    if (u->trigger.len && ngx_gdrive_s3_printable(&u->trigger)) {
        hdr[n++] = (ngx_gdrive_sigv4_pair_t) {
            "x-amz-meta-trigger-id", 21, (char *) u->trigger.data,
            u->trigger.len };
        used += sizeof("trigger-id") - 1 + u->trigger.len;
    }

    room = 2048 - sizeof("drive-name") + 1;

    if (u->name.len == 0 || used >= room) {
        return n;
    }

    room -= used;

    if (s3->meta_name.data == NULL) {
        len = ngx_min(3 * u->name.len, room);

        s3->meta_name.data = ngx_pnalloc(u->pool, len);
        if (s3->meta_name.data == NULL) {
            return n;
        }

        /*
         * Unreserved bytes as they are, others as %XX; a name that does
         * not fit ends before the first byte of a character that does
         * not, never inside a %XX or a UTF-8 sequence.
         */

        p = s3->meta_name.data;
        last = p + len;

        for (q = u->name.data; q < u->name.data + u->name.len; q++) {

            if ((*q & 0xc0) != 0x80) {
                /* a character starts here: does it fit whole? */
                for (len = 1;
                     q + len < u->name.data + u->name.len
                     && (q[len] & 0xc0) == 0x80;
                     len++)
                { /* void */ }

                if ((size_t) (last - p) < 3 * len) {
                    break;
                }
            }

            if ((*q >= 'A' && *q <= 'Z') || (*q >= 'a' && *q <= 'z')
                || (*q >= '0' && *q <= '9') || *q == '-' || *q == '.'
                || *q == '_' || *q == '~')
            {
                *p++ = *q;

            } else {
                *p++ = '%';
                *p++ = hex[*q >> 4];
                *p++ = hex[*q & 0xf];
            }
        }

        s3->meta_name.len = p - s3->meta_name.data;
    }

    if (s3->meta_name.len) {
        hdr[n++] = (ngx_gdrive_sigv4_pair_t) {
            "x-amz-meta-drive-name", 21, (char *) s3->meta_name.data,
            s3->meta_name.len };
    }

    return n;
}


/*
 * Where requests about a key (or, with an empty key, the bucket) go:
 * gdrive_s3_endpoint is scheme://host[:port][/base path]; path-style
 * puts the bucket into the path, virtual-host style into the host name.
 * NGX_DECLINED: the endpoint is not a URL.
 */

ngx_int_t
ngx_gdrive_s3_target(ngx_pool_t *pool, ngx_http_gdrive_main_conf_t *gmcf,
    ngx_str_t *key, ngx_gdrive_s3_target_t *t)
{
    u_char     *p, *host, *last;
    size_t      len;
    ngx_str_t   scheme, base_path;

    p = gmcf->s3_endpoint.data;
    last = p + gmcf->s3_endpoint.len;

    host = ngx_strlcasestrn(p, last, (u_char *) "://", 3 - 1);

    if (host == NULL) {
        return NGX_DECLINED;
    }

    scheme.data = p;
    scheme.len = host - p;
    host += 3;

    for (p = host; p < last && *p != '/'; p++) { /* void */ }

    base_path.data = p;
    base_path.len = last - p;

    while (base_path.len && base_path.data[base_path.len - 1] == '/') {
        base_path.len--;
    }

    len = (p - host) + (gmcf->s3_path_style ? 0 : gmcf->s3_bucket.len + 1);
    t->host.data = ngx_pnalloc(pool, len);

    t->path.len = base_path.len + 1 + key->len
                  + (gmcf->s3_path_style ? gmcf->s3_bucket.len + 1 : 0);
    t->path.data = ngx_pnalloc(pool, t->path.len);

    t->base.len = scheme.len + 3 + len;
    t->base.data = ngx_pnalloc(pool, t->base.len);

    if (t->host.data == NULL || t->path.data == NULL
        || t->base.data == NULL)
    {
        return NGX_ERROR;
    }

    if (gmcf->s3_path_style) {
        t->host.len = ngx_cpymem(t->host.data, host, p - host)
                      - t->host.data;
        ngx_sprintf(t->path.data, "%V/%V/%V", &base_path, &gmcf->s3_bucket,
                    key);

    } else {
        t->host.len = ngx_sprintf(t->host.data, "%V.%*s",
                                  &gmcf->s3_bucket, p - host, host)
                      - t->host.data;
        ngx_sprintf(t->path.data, "%V/%V", &base_path, key);
    }

    ngx_sprintf(t->base.data, "%V://%V", &scheme, &t->host);

    return NGX_OK;
}


/* room for a URL of the target with a query of up to query bytes */

size_t
ngx_gdrive_s3_url_size(ngx_gdrive_s3_target_t *t, size_t query)
{
    return t->base.len + 3 * t->path.len + query + 1;
}


/*
 * Signs a request with SigV4 and starts it on h, whose handler and body
 * the caller has set: Host, x-amz-date and x-amz-content-sha256 are
 * added to the caller's headers, and x-amz-security-token with temporary
 * credentials; the URL is written into url (of ngx_gdrive_s3_url_size()
 * bytes) encoded as the canonical request is, and every header line is
 * built in scratch space (curl copies both).  NGX_BUSY: no credentials
 * yet (web identity, ngx_gdrive_aws.c): nothing is started and the
 * caller tries again on a timer.
 */

ngx_int_t
ngx_gdrive_s3_sign_start(ngx_gdrive_http_t *h,
    ngx_http_gdrive_main_conf_t *gmcf, ngx_gdrive_s3_target_t *t,
    const char *method, ngx_gdrive_sigv4_pair_t *q, size_t nq,
    ngx_gdrive_sigv4_pair_t *extra, size_t nextra, const char *hash,
    u_char *url)
{
    int                       n;
    char                      date[NGX_GDRIVE_SIGV4_DATE_LEN + 1];
    char                      auth[1024];
    u_char                    line[NGX_GDRIVE_STS_TOKEN_MAX + 64], *p, *last;
    size_t                    i, nh;
    ngx_gdrive_sigv4_t        s;
    ngx_gdrive_aws_creds_t    cr;
    ngx_gdrive_sigv4_pair_t   hdr[NGX_GDRIVE_SIGV4_MAX_PAIRS];

    if (nextra + 4 > NGX_GDRIVE_SIGV4_MAX_PAIRS) {
        return NGX_ERROR;
    }

    /* the credentials current now: each request, each part, asks again */

    if (ngx_gdrive_aws_credentials(gmcf, &cr) != NGX_OK) {
        return NGX_BUSY;
    }

    ngx_gdrive_sigv4_date(ngx_time(), date);

    nh = 0;

    hdr[nh++] = (ngx_gdrive_sigv4_pair_t) {
        "Host", 4, (char *) t->host.data, t->host.len };
    hdr[nh++] = (ngx_gdrive_sigv4_pair_t) {
        "x-amz-date", 10, date, NGX_GDRIVE_SIGV4_DATE_LEN };

    for (i = 0; i < nextra; i++) {
        hdr[nh++] = extra[i];
    }

    hdr[nh++] = (ngx_gdrive_sigv4_pair_t) {
        "x-amz-content-sha256", 20, hash, ngx_strlen(hash) };

    /* temporary credentials: S3 wants their token, and signed */

    if (cr.session_token.len) {
        hdr[nh++] = (ngx_gdrive_sigv4_pair_t) {
            "x-amz-security-token", 20, (char *) cr.session_token.data,
            cr.session_token.len };
    }

    ngx_memzero(&s, sizeof(ngx_gdrive_sigv4_t));

    s.method = method;
    s.path = (char *) t->path.data;
    s.path_len = t->path.len;
    s.query = q;
    s.nquery = nq;
    s.headers = hdr;
    s.nheaders = nh;
    s.payload_hash = hash;
    s.date = date;
    s.region = (char *) gmcf->s3_region.data;
    s.region_len = gmcf->s3_region.len;
    s.service = "s3";
    s.access_key = (char *) cr.access_key.data;
    s.access_key_len = cr.access_key.len;
    s.secret_key = (char *) cr.secret_key.data;
    s.secret_key_len = cr.secret_key.len;

    if (ngx_gdrive_sigv4_sign(&s, auth, sizeof(auth)) < 0) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(url, t->base.data, t->base.len);
    p += ngx_gdrive_sigv4_encode((char *) p, (char *) t->path.data,
                                 t->path.len, 1);

    for (i = 0; i < nq; i++) {
        *p++ = i ? '&' : '?';
        p += ngx_gdrive_sigv4_encode((char *) p, q[i].name, q[i].name_len,
                                     0);

        if (q[i].value) {
            *p++ = '=';
            p += ngx_gdrive_sigv4_encode((char *) p, q[i].value,
                                         q[i].value_len, 0);
        }
    }

    *p = '\0';

    last = line + sizeof(line) - 1;

    for (i = 0; i < nh; i++) {

        /* a header cut short would be a request refused for ever */

        if (hdr[i].name_len + 2 + hdr[i].value_len
            >= (size_t) (last - line))
        {
            return NGX_ERROR;
        }

        p = ngx_snprintf(line, last - line, "%*s: %*s",
                         hdr[i].name_len, hdr[i].name,
                         hdr[i].value_len, hdr[i].value);
        *p = '\0';

        if (ngx_gdrive_http_header_add(h, (char *) line) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    p = ngx_snprintf(line, last - line, "Authorization: %s", auth);
    *p = '\0';

    n = ngx_gdrive_http_header_add(h, (char *) line);

    /* the session token's line is in there too, partly overwritten */
    ngx_explicit_memzero(line, sizeof(line));
    ngx_explicit_memzero(auth, sizeof(auth));

    if (n != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_gdrive_http_start(h, (char *) url);
}


/* the response headers the uploader reads: a part's ETag */

static void
ngx_gdrive_s3_header(ngx_gdrive_http_t *h, u_char *line, size_t len)
{
    ngx_gdrive_s3_req_t *req = h->data;

    u_char  *p, *last;

    if (len > 5 && ngx_strncmp(line, "HTTP/", 5) == 0) {
        /* a new response (after a 100 Continue) forgets the last one's */
        req->etag_len = 0;
        return;
    }

    if (len <= 5 || ngx_strncasecmp(line, (u_char *) "etag:", 5) != 0) {
        return;
    }

    p = line + 5;
    last = line + len;

    while (p < last && (*p == ' ' || *p == '\t')) {
        p++;
    }

    while (last > p && (last[-1] == '\r' || last[-1] == '\n'
                        || last[-1] == ' '))
    {
        last--;
    }

    if (last - p > 0 && last - p <= NGX_GDRIVE_S3_MAX_ETAG) {
        req->etag_len = last - p;
        ngx_memcpy(req->etag, p, req->etag_len);
    }
}


static void
ngx_gdrive_s3_handler(ngx_gdrive_http_t *h)
{
    ngx_gdrive_s3_req_t *req = h->data;

    ngx_str_t         code;
    ngx_gdrive_s3_t  *s3;

    static const char  *ops[] = {
        "head", "put", "create", "part", "complete", "abort"
    };

    s3 = req->s3;

    ngx_gdrive_metric_s3_request(ops[req->kind],
                                 h->result == CURLE_OK ? h->status : 0);

    if (h->result == CURLE_OK && h->status >= 200 && h->status <= 299
        && (req->kind == NGX_GDRIVE_S3_PUT || req->kind == NGX_GDRIVE_S3_PART))
    {
        ngx_gdrive_metric_s3_bytes(h->source ? h->source_len
                                             : (off_t) h->request_len);
    }

    if (s3->wait_create) {
        s3->wait_create = 0;
        s3->creating = 0;

        if (h->result == CURLE_OK && h->status == 200
            && ngx_gdrive_s3_upload_id(s3, h) == NGX_OK)
        {
            ngx_gdrive_s3_abort_multipart(s3);
        }

        s3->post_done = 1;
        ngx_gdrive_s3_post(s3);
        return;
    }

    if (s3->failed || s3->reported) {
        return;
    }

    /*
     * HEAD: 404, nothing there.  AWS answers 403 instead when the caller
     * lacks s3:ListBucket (HeadObject's documentation), which the minimal
     * policy does not grant: unknown, so upload.  A 403 to the PUT is
     * s3_access_denied.
     */

    if (h->result == CURLE_OK && (h->status == 404 || h->status == 403)
        && req->kind == NGX_GDRIVE_S3_HEAD)
    {
        s3->post_ready = 1;
        ngx_gdrive_s3_post(s3);
        return;
    }

    /* S3 may answer 200 to a CompleteMultipartUpload that failed */

    if (h->result != CURLE_OK || h->status < 200 || h->status > 299
        || (req->kind == NGX_GDRIVE_S3_COMPLETE
            && ngx_gdrive_s3_xml(h->body, h->len, "Code", &code) == NGX_OK))
    {
        ngx_gdrive_s3_error(req, h);
        return;
    }

    switch (req->kind) {

    case NGX_GDRIVE_S3_HEAD:
        ngx_gdrive_s3_head_done(s3, h);
        return;

    case NGX_GDRIVE_S3_CREATE:
        ngx_gdrive_s3_create_done(s3, h);
        return;

    case NGX_GDRIVE_S3_PART:
        ngx_gdrive_s3_part_done(req);
        return;

    default: /* PUT, COMPLETE */
        s3->completed = 1;
        s3->u->rc = NGX_OK;
        s3->u->parts = s3->multipart ? s3->parts : 0;
        s3->post_done = 1;
        ngx_gdrive_s3_post(s3);
        return;
    }
}


static void
ngx_gdrive_s3_head_done(ngx_gdrive_s3_t *s3, ngx_gdrive_http_t *h)
{
    off_t                    length;
    ngx_gdrive_s3_upload_t  *u;

    u = s3->u;
    length = h->content_length;

    if (length >= 0 && (u->size < 0 || (off_t) length == u->size)) {
        ngx_log_error(NGX_LOG_INFO, u->log, 0,
                      "gdrive: s3 object \"%V\" exists with %O bytes, "
                      "not uploaded again", &u->key, (off_t) length);
        s3->completed = 1;
        u->rc = NGX_OK;
        u->unchanged = 1;
        u->bytes = (off_t) length;
        s3->post_done = 1;

    } else {
        s3->post_ready = 1;
    }

    ngx_gdrive_s3_post(s3);
}


static void
ngx_gdrive_s3_create_done(ngx_gdrive_s3_t *s3, ngx_gdrive_http_t *h)
{
    ngx_uint_t  i, part;

    s3->creating = 0;

    if (ngx_gdrive_s3_upload_id(s3, h) != NGX_OK) {
        ngx_gdrive_s3_fail(s3, "s3_error", "CreateMultipartUpload answered "
                           "no usable UploadId", 0, -1);
        return;
    }

    s3->etags = ngx_array_create(s3->u->pool, 16, sizeof(ngx_str_t));

    if (s3->etags == NULL) {
        ngx_gdrive_s3_fail(s3, "internal_error", "out of memory", 0, -1);
        return;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, s3->u->log, 0,
                   "gdrive: s3 multipart upload of \"%V\" is \"%V\"",
                   &s3->u->key, &s3->upload_id);

    /* the full buffers waited for the id: send them in part order */

    for (part = 1; part <= s3->parts && !s3->failed; part++) {
        for (i = 0; i < s3->nbufs; i++) {
            if (s3->bufs[i].state == NGX_GDRIVE_S3_BUF_FULL
                && s3->bufs[i].req.part == part)
            {
                ngx_gdrive_s3_upload_part(s3, &s3->bufs[i]);
                break;
            }
        }
    }

    ngx_gdrive_s3_complete(s3);
}


static ngx_int_t
ngx_gdrive_s3_upload_id(ngx_gdrive_s3_t *s3, ngx_gdrive_http_t *h)
{
    ngx_str_t   id;

    if (ngx_gdrive_s3_xml(h->body, h->len, "UploadId", &id) != NGX_OK
        || id.len == 0 || id.len > NGX_GDRIVE_S3_MAX_UPLOAD_ID)
    {
        return NGX_ERROR;
    }

    s3->upload_id.data = ngx_pnalloc(s3->u->pool, id.len);
    if (s3->upload_id.data == NULL) {
        return NGX_ERROR;
    }

    /* the XML escapes of an id are undone: it is signed as it is */

    s3->upload_id.len = ngx_gdrive_s3_xml_unescape(s3->upload_id.data, &id);

    return NGX_OK;
}


static void
ngx_gdrive_s3_part_done(ngx_gdrive_s3_req_t *req)
{
    ngx_str_t            *etag;
    ngx_gdrive_s3_t      *s3;
    ngx_gdrive_s3_buf_t  *b;

    s3 = req->s3;
    b = (ngx_gdrive_s3_buf_t *) req;      /* req is the buffer's first */

    if (req->etag_len == 0) {
        ngx_gdrive_s3_fail(s3, "s3_error", "UploadPart answered no ETag", 0,
                           -1);
        return;
    }

    while (s3->etags->nelts < req->part) {
        etag = ngx_array_push(s3->etags);
        if (etag == NULL) {
            ngx_gdrive_s3_fail(s3, "internal_error", "out of memory", 0, -1);
            return;
        }

        ngx_str_null(etag);
    }

    etag = (ngx_str_t *) s3->etags->elts + req->part - 1;
    etag->data = ngx_pnalloc(s3->u->pool, req->etag_len);

    if (etag->data == NULL) {
        ngx_gdrive_s3_fail(s3, "internal_error", "out of memory", 0, -1);
        return;
    }

    etag->len = req->etag_len;
    ngx_memcpy(etag->data, req->etag, req->etag_len);

    b->len = 0;
    b->state = NGX_GDRIVE_S3_BUF_FREE;
    s3->busy--;

    ngx_gdrive_s3_complete(s3);

    if (s3->want_resume && !s3->failed) {
        s3->want_resume = 0;
        s3->post_resume = 1;
        ngx_gdrive_s3_post(s3);
    }
}


static void
ngx_gdrive_s3_error(ngx_gdrive_s3_req_t *req, ngx_gdrive_http_t *h)
{
    u_char                  *detail, *p;
    ngx_msec_t               delay;
    ngx_str_t                code;
    ngx_uint_t               retry, permanent;
    const char              *what, *ecode;
    ngx_gdrive_s3_t         *s3;
    ngx_gdrive_s3_upload_t  *u;

    s3 = req->s3;
    u = s3->u;
    what = ngx_gdrive_s3_what(req->kind);

    detail = s3->detail;

    ngx_str_null(&code);
    retry = 0;
    permanent = 0;
    ecode = "s3_error";

    if (h->result != CURLE_OK) {
        p = ngx_snprintf(detail, sizeof(s3->detail) - 1, "%s: %s", what,
                         h->error[0] ? h->error
                                     : curl_easy_strerror(h->result));
        retry = 1;

    } else {
        (void) ngx_gdrive_s3_xml(h->body, h->len, "Code", &code);

        if (code.len > 64) {
            code.len = 64;
        }

        p = ngx_snprintf(detail, sizeof(s3->detail) - 1, "%s: HTTP %l%s%V",
                         what, h->status,
                         code.len ? " " : "", &code);

        if (code.len == sizeof("BadDigest") - 1
            && ngx_strncmp(code.data, "BadDigest", code.len) == 0)
        {
            /* not the content Drive reported (Content-MD5): the job, not
             * this request, tries again */
            ecode = "checksum_mismatch";

        } else if (h->status == 403) {
            ecode = "s3_access_denied";
            permanent = 1;

        } else if (h->status >= 500 || h->status == 429 || h->status == 408
                   || h->status < 300
                   || (code.len == sizeof("RequestTimeout") - 1
                       && ngx_strncmp(code.data, "RequestTimeout",
                                      code.len) == 0))
        {
            /* 5xx, SlowDown, a socket S3 found idle, a 200 with an error */
            retry = 1;

        } else if (h->status == 404 || h->status == 409) {
            /* NoSuchUpload, OperationAborted: a new attempt starts over */

        } else {
            ecode = "s3_rejected";
            permanent = 1;
        }
    }

    *p = '\0';

    /* a streamed PUT that has sent bytes cannot send them again: its job
     * tries again */

    if (retry && req->attempts < NGX_GDRIVE_S3_ATTEMPTS
        && !(req->kind == NGX_GDRIVE_S3_PUT && s3->stream && s3->sent))
    {
        if (h->retry_after >= 0) {
            delay = (ngx_msec_t) h->retry_after * 1000;

        } else {
            delay = NGX_GDRIVE_S3_BACKOFF << (req->attempts - 1);
            delay += ngx_random() % (delay / 2 + 1);
        }

        if (delay <= NGX_GDRIVE_S3_MAX_WAIT) {
            ngx_log_error(NGX_LOG_WARN, u->log, 0,
                          "gdrive: s3 \"%V\": %s, attempt %ui, again in "
                          "%Mms", &u->key, detail, req->attempts, delay);

            ngx_add_timer(&req->retry, delay);
            return;
        }
    }

    ngx_gdrive_s3_fail(s3, ecode, (char *) detail, permanent,
                       h->retry_after);
}


static void
ngx_gdrive_s3_retry_handler(ngx_event_t *ev)
{
    ngx_gdrive_s3_req_t *req = ev->data;

    if (req->s3->failed || req->s3->reported) {
        return;
    }

    ngx_gdrive_s3_start_req(req, req->kind);
}


/*
 * Ends the upload with an error: every request stops, an open multipart
 * upload is aborted on S3, and done() is posted.
 */

static void
ngx_gdrive_s3_fail(ngx_gdrive_s3_t *s3, const char *code, const char *detail,
    ngx_uint_t permanent, ngx_int_t retry_after)
{
    ngx_uint_t               level;
    ngx_gdrive_s3_upload_t  *u;

    if (s3->failed || s3->reported) {
        return;
    }

    u = s3->u;

    s3->failed = 1;

    u->rc = NGX_ERROR;
    u->code = code;
    u->detail = detail;
    u->permanent = permanent;
    u->retry_after = retry_after;
    u->unchanged = 0;

    level = permanent ? NGX_LOG_ERR : NGX_LOG_WARN;

    ngx_log_error(level, u->log, 0,
                  "gdrive: s3 upload of \"%V\" failed (%s%s): %s", &u->key,
                  code, permanent ? ", permanent" : "", detail);

    s3->post_ready = 0;
    s3->post_resume = 0;

    if (s3->creating && s3->ctl.http && s3->ctl.http->active) {
        /* S3 may be creating an upload now: its answer is awaited, so
         * that the upload is aborted; done() follows that answer */
        s3->wait_create = 1;
        ngx_gdrive_s3_stop(s3, 1);
        return;
    }

    ngx_gdrive_s3_stop(s3, 0);
    ngx_gdrive_s3_abort_multipart(s3);

    s3->post_done = 1;
    ngx_gdrive_s3_post(s3);
}


static void
ngx_gdrive_s3_stop(ngx_gdrive_s3_t *s3, ngx_uint_t keep_ctl)
{
    ngx_uint_t  i;

    if (s3->ctl.http && !keep_ctl) {
        ngx_gdrive_http_cancel(s3->ctl.http);
    }

    if (s3->ctl.retry.timer_set) {
        ngx_del_timer(&s3->ctl.retry);
    }

    for (i = 0; s3->bufs && i < s3->nbufs; i++) {
        if (s3->bufs[i].req.http) {
            ngx_gdrive_http_cancel(s3->bufs[i].req.http);
        }

        if (s3->bufs[i].req.retry.timer_set) {
            ngx_del_timer(&s3->bufs[i].req.retry);
        }
    }

    if (s3->reported && s3->post.posted) {
        ngx_delete_posted_event(&s3->post);
    }

    if (s3->unpause.posted) {
        ngx_delete_posted_event(&s3->unpause);
    }
}


/*
 * AbortMultipartUpload of an upload that will not complete.  Its owner
 * may be gone before the answer, so the request has a pool and a log of
 * its own.  An upload still being created is left to the bucket's
 * lifecycle rule (AbortIncompleteMultipartUpload).
 */

static void
ngx_gdrive_s3_abort_multipart(ngx_gdrive_s3_t *s3)
{
    ngx_pool_t              *pool;
    ngx_gdrive_http_t       *h;
    ngx_gdrive_s3_orphan_t  *o;
    ngx_gdrive_s3_upload_t  *u;

    u = s3->u;

    if (s3->upload_id.len == 0 || s3->completed) {
        if (s3->creating) {
            ngx_log_error(NGX_LOG_WARN, u->log, 0,
                          "gdrive: s3 multipart upload of \"%V\" stopped "
                          "while being created: the bucket's lifecycle "
                          "rule must remove it", &u->key);
        }

        return;
    }

    s3->completed = 1;      /* once */

    pool = ngx_create_pool(4096, ngx_cycle->log);
    if (pool == NULL) {
        goto failed;
    }

    o = ngx_palloc(pool, sizeof(ngx_gdrive_s3_orphan_t));
    if (o == NULL) {
        ngx_destroy_pool(pool);
        goto failed;
    }

    /* the owner's log without its handler, which reads the owner */
    o->pool = pool;
    o->log = *u->log;
    o->log.handler = NULL;
    o->log.data = NULL;
    o->log.action = NULL;

    o->key.len = u->key.len;
    o->key.data = ngx_pstrdup(pool, &u->key);

    h = ngx_gdrive_http_create_lean(pool, &o->log, NGX_GDRIVE_S3_MAX_BODY);

    if (o->key.data == NULL || h == NULL) {
        ngx_destroy_pool(pool);
        goto failed;
    }

    if (ngx_gdrive_s3_send(s3, NULL, h, NGX_GDRIVE_S3_ABORT) != NGX_OK) {
        ngx_destroy_pool(pool);
        goto failed;
    }

    h->data = o;

    return;

failed:

    ngx_log_error(NGX_LOG_WARN, u->log, 0,
                  "gdrive: s3 multipart upload of \"%V\" could not be "
                  "aborted: its parts stay until the bucket's lifecycle "
                  "rule removes them", &u->key);
}


static void
ngx_gdrive_s3_abort_done(ngx_gdrive_http_t *h)
{
    ngx_gdrive_s3_orphan_t *o = h->data;

    if (h->result != CURLE_OK || (h->status != 204 && h->status != 200
                                  && h->status != 404))
    {
        ngx_log_error(NGX_LOG_WARN, &o->log, 0,
                      "gdrive: s3 multipart upload of \"%V\" could not be "
                      "aborted (%s, HTTP %l): its parts stay until the "
                      "bucket's lifecycle rule removes them", &o->key,
                      h->result ? curl_easy_strerror(h->result) : "answered",
                      h->status);

    } else {
        ngx_log_error(NGX_LOG_INFO, &o->log, 0,
                      "gdrive: s3 multipart upload of \"%V\" aborted",
                      &o->key);
    }

    ngx_destroy_pool(o->pool);
}


static void
ngx_gdrive_s3_post(ngx_gdrive_s3_t *s3)
{
    if (!s3->post.posted) {
        ngx_post_event(&s3->post, &ngx_posted_events);
    }
}


/* one callback per event, and nothing of the upload touched after it */

static void
ngx_gdrive_s3_post_handler(ngx_event_t *ev)
{
    ngx_gdrive_s3_t *s3 = ev->data;

    ngx_gdrive_s3_upload_t  *u;

    u = s3->u;

    if (s3->reported) {
        return;
    }

    if (s3->post_done) {
        s3->post_done = 0;
        s3->reported = 1;
        ngx_gdrive_s3_stop(s3, 0);
        ngx_gdrive_s3_free(s3);
        u->done(u);
        return;
    }

    if (s3->post_ready) {
        s3->post_ready = 0;
        u->ready(u);
        return;
    }

    if (s3->post_resume) {
        s3->post_resume = 0;
        u->resume(u);
    }
}


/* the buffers go as soon as the upload is over, not with the pool */

static void
ngx_gdrive_s3_free(ngx_gdrive_s3_t *s3)
{
    ngx_uint_t            i;
    ngx_gdrive_s3_buf_t  *b;

    for (i = 0; s3->bufs && i < s3->nbufs; i++) {
        b = &s3->bufs[i];

        if (b->start) {
            ngx_free(b->start);
            b->start = NULL;
        }

        if (b->sha256) {
            ngx_gdrive_digest_destroy(b->sha256);
            b->sha256 = NULL;
        }

        b->len = 0;
        b->state = NGX_GDRIVE_S3_BUF_FREE;
    }

    s3->fill = NULL;
}


/* the text of the first <tag>...</tag> in an XML body */

/* the text of the first <tag> of an S3 answer, as it is (escaped) */

ngx_int_t
ngx_gdrive_s3_xml(u_char *body, size_t len, char *tag, ngx_str_t *value)
{
    u_char  *p, *q, *last;
    size_t   n;
    u_char   open[32], close[32];

    if (body == NULL || len == 0) {
        return NGX_DECLINED;
    }

    n = ngx_strlen(tag);
    last = body + len;

    ngx_sprintf(open, "<%s>", tag);
    ngx_sprintf(close, "</%s>", tag);

    p = ngx_strlcasestrn(body, last, open, n + 2 - 1);
    if (p == NULL) {
        return NGX_DECLINED;
    }

    p += n + 2;

    q = ngx_strlcasestrn(p, last, close, n + 3 - 1);
    if (q == NULL) {
        return NGX_DECLINED;
    }

    value->data = p;
    value->len = q - p;

    return NGX_OK;
}


/* text into XML: at most 6 bytes for each of src; returns the end */

u_char *
ngx_gdrive_s3_xml_escape(u_char *dst, ngx_str_t *src)
{
    u_char  *e, *last;

    last = src->data + src->len;

    for (e = src->data; e < last; e++) {
        switch (*e) {
        case '"':
            dst = ngx_cpymem(dst, "&quot;", 6);
            break;
        case '\'':
            dst = ngx_cpymem(dst, "&apos;", 6);
            break;
        case '&':
            dst = ngx_cpymem(dst, "&amp;", 5);
            break;
        case '<':
            dst = ngx_cpymem(dst, "&lt;", 4);
            break;
        case '>':
            dst = ngx_cpymem(dst, "&gt;", 4);
            break;
        default:
            *dst++ = *e;
        }
    }

    return dst;
}


/* XML's five entities undone into dst (at most src->len bytes) */

size_t
ngx_gdrive_s3_xml_unescape(u_char *dst, ngx_str_t *src)
{
    u_char      *p, *q, *last;
    ngx_uint_t   i;

    static const struct {
        const char  *entity;
        size_t       len;
        u_char       c;
    } entities[] = {
        { "&amp;", 5, '&' }, { "&lt;", 4, '<' }, { "&gt;", 4, '>' },
        { "&quot;", 6, '"' }, { "&apos;", 6, '\'' }
    };

    p = dst;
    last = src->data + src->len;

    for (q = src->data; q < last; q++) {
        if (*q == '&') {
            for (i = 0; i < sizeof(entities) / sizeof(entities[0]); i++) {
                if ((size_t) (last - q) >= entities[i].len
                    && ngx_strncmp(q, entities[i].entity, entities[i].len)
                       == 0)
                {
                    break;
                }
            }

            if (i < sizeof(entities) / sizeof(entities[0])) {
                *p++ = entities[i].c;
                q += entities[i].len - 1;
                continue;
            }
        }

        *p++ = *q;
    }

    return p - dst;
}


static ngx_uint_t
ngx_gdrive_s3_printable(ngx_str_t *s)
{
    size_t  i;

    for (i = 0; i < s->len; i++) {
        if (s->data[i] < 0x20 || s->data[i] > 0x7e) {
            return 0;
        }
    }

    return 1;
}


static const char *
ngx_gdrive_s3_what(ngx_gdrive_s3_kind_e kind)
{
    static const char  *what[] = {
        "s3 head", "s3 put", "s3 create multipart upload", "s3 upload part",
        "s3 complete multipart upload", "s3 abort multipart upload"
    };

    return what[kind];
}
