
/*
 * nginx-gdrive-worker: the answers of the module's locations.
 *
 * Replies layer, shared by every location: JSON errors and bodies,
 * jansson's text, text built in a chain of buffers that grows as needed
 * (metrics, the HTML page), the request body as one piece of memory,
 * and the filter that turns the error pages nginx itself answers in a
 * gdrive location into the module's JSON errors.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <jansson.h>

#include "ngx_gdrive.h"
#include "ngx_gdrive_metrics.h"
#include "ngx_http_gdrive.h"


#define NGX_HTTP_GDRIVE_OUT_BUF   16384
#define NGX_HTTP_GDRIVE_OUT_LINE  1024


static ngx_int_t ngx_http_gdrive_error_header_filter(ngx_http_request_t *r);
static ngx_int_t ngx_http_gdrive_error_body_filter(ngx_http_request_t *r,
    ngx_chain_t *in);


/* the ctx of a response the module made itself */
static u_char  ngx_http_gdrive_own_response;


/* a location whose behaviour is not in this build */

ngx_int_t
ngx_http_gdrive_unavailable_handler(ngx_http_request_t *r)
{
    return ngx_http_gdrive_send_error(r, NGX_HTTP_NOT_IMPLEMENTED,
                                      "not_implemented",
                                      "this location is not available "
                                      "in this version of the module");
}


/*
 * The request body read by ngx_http_read_client_request_body() as one
 * piece of memory: NGX_DECLINED when it is larger than max or went to a
 * temporary file (which would need a blocking read).
 */

ngx_int_t
ngx_http_gdrive_request_body(ngx_http_request_t *r, size_t max,
    ngx_str_t *body)
{
    u_char       *p;
    size_t        len;
    ngx_chain_t  *cl, *bufs;

    ngx_str_null(body);

    bufs = r->request_body ? r->request_body->bufs : NULL;
    len = 0;

    for (cl = bufs; cl; cl = cl->next) {
        if (cl->buf->in_file) {
            return NGX_DECLINED;
        }

        len += cl->buf->last - cl->buf->pos;
    }

    if (len > max) {
        return NGX_DECLINED;
    }

    if (bufs == NULL || len == 0) {
        return NGX_OK;
    }

    if (bufs->next == NULL) {
        body->data = bufs->buf->pos;
        body->len = len;
        return NGX_OK;
    }

    body->data = ngx_pnalloc(r->pool, len);
    if (body->data == NULL) {
        return NGX_ERROR;
    }

    for (p = body->data, cl = bufs; cl; cl = cl->next) {
        p = ngx_cpymem(p, cl->buf->pos, cl->buf->last - cl->buf->pos);
    }

    body->len = len;

    return NGX_OK;
}


ngx_int_t
ngx_http_gdrive_add_header(ngx_http_request_t *r, char *key, char *value)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    h->key.data = (u_char *) key;
    h->key.len = ngx_strlen(key);
    h->value.data = (u_char *) value;
    h->value.len = ngx_strlen(value);

    return NGX_OK;
}


ngx_int_t
ngx_http_gdrive_send_error(ngx_http_request_t *r, ngx_uint_t status,
    const char *code, const char *detail)
{
    u_char     *p, *last;
    size_t      len;
    uintptr_t   escape;

    escape = ngx_escape_json(NULL, (u_char *) detail, ngx_strlen(detail));

    len = sizeof("{\"error\":\"\",\"detail\":\"\"}") - 1 + ngx_strlen(code)
          + ngx_strlen(detail) + escape;

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    last = ngx_sprintf(p, "{\"error\":\"%s\",\"detail\":\"", code);
    last = (u_char *) ngx_escape_json(last, (u_char *) detail,
                                      ngx_strlen(detail));
    last = ngx_cpymem(last, "\"}", 2);

    return ngx_http_gdrive_send_json(r, status, p, last - p);
}


ngx_int_t
ngx_http_gdrive_send_json(ngx_http_request_t *r, ngx_uint_t status,
    u_char *json, size_t len)
{
    ngx_int_t     rc;
    ngx_buf_t    *b;
    ngx_chain_t   out;

    ngx_http_set_ctx(r, &ngx_http_gdrive_own_response,
                     ngx_http_gdrive_worker_module);

    rc = ngx_http_discard_request_body(r);

    if (rc != NGX_OK) {
        return rc;
    }

    r->headers_out.status = status;
    r->headers_out.content_length_n = len;
    ngx_str_set(&r->headers_out.content_type, "application/json");
    r->headers_out.content_type_len = r->headers_out.content_type.len;

    if (r->method == NGX_HTTP_HEAD || len == 0) {
        r->header_only = 1;
        return ngx_http_send_header(r);
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->pos = json;
    b->last = json + len;
    b->memory = 1;
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    return ngx_http_output_filter(r, &out);
}


/*
 * Errors that nginx itself answers in a gdrive location (413 from
 * client_max_body_size, 400 on a bad chunked body, 408...) go out as the
 * module's JSON error body instead of nginx's HTML page.
 */

static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;
static ngx_http_output_body_filter_pt    ngx_http_next_body_filter;


typedef struct {
    ngx_buf_t          *buf;
    ngx_uint_t          sent;
} ngx_http_gdrive_error_ctx_t;


static ngx_int_t
ngx_http_gdrive_error_header_filter(ngx_http_request_t *r)
{
    u_char                       *p;
    size_t                        len;
    const char                   *code, *detail;
    ngx_http_gdrive_loc_conf_t   *glcf;
    ngx_http_gdrive_error_ctx_t  *ctx;

    glcf = ngx_http_get_module_loc_conf(r, ngx_http_gdrive_worker_module);

    /* accepted triggers are counted one by one where they are accepted */

    if (glcf->type == NGX_HTTP_GDRIVE_LOC_TRIGGER && r == r->main
        && r->headers_out.status != NGX_HTTP_ACCEPTED)
    {
        ngx_gdrive_metric_trigger(r->headers_out.status, 1);
    }

    if (glcf->type == NGX_HTTP_GDRIVE_LOC_NONE
        || r->headers_out.status < NGX_HTTP_BAD_REQUEST
        || r != r->main
        || ngx_http_get_module_ctx(r, ngx_http_gdrive_worker_module))
    {
        return ngx_http_next_header_filter(r);
    }

    detail = "nginx refused the request";

    switch (r->headers_out.status) {
    case NGX_HTTP_REQUEST_ENTITY_TOO_LARGE:
        code = "payload_too_large";
        detail = "the body is larger than client_max_body_size";
        break;
    case NGX_HTTP_REQUEST_TIME_OUT:
        code = "request_timeout";
        detail = "the body did not arrive in time";
        break;
    case NGX_HTTP_BAD_REQUEST:
        code = "bad_request";
        detail = "the request is malformed";
        break;
    case NGX_HTTP_LENGTH_REQUIRED:
        code = "length_required";
        break;
    case NGX_HTTP_FORBIDDEN:
        code = "forbidden";
        break;
    case NGX_HTTP_NOT_FOUND:
        code = "not_found";
        break;
    default:
        code = (r->headers_out.status >= NGX_HTTP_INTERNAL_SERVER_ERROR)
               ? "internal_error" : "http_error";
    }

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_gdrive_error_ctx_t));
    if (ctx == NULL) {
        return NGX_ERROR;
    }

    len = sizeof("{\"error\":\"\",\"detail\":\"\"}") + 128;

    ctx->buf = ngx_create_temp_buf(r->pool, len);
    if (ctx->buf == NULL) {
        return NGX_ERROR;
    }

    p = ngx_sprintf(ctx->buf->pos, "{\"error\":\"%s\",\"detail\":\"%s\"}",
                    code, detail);
    ctx->buf->last = p;
    ctx->buf->last_buf = 1;
    ctx->buf->last_in_chain = 1;

    ngx_http_set_ctx(r, ctx, ngx_http_gdrive_worker_module);

    ngx_str_set(&r->headers_out.content_type, "application/json");
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_type_lowcase = NULL;
    r->headers_out.charset.len = 0;
    r->headers_out.content_length_n = p - ctx->buf->pos;

    if (r->headers_out.content_length) {
        r->headers_out.content_length->hash = 0;
        r->headers_out.content_length = NULL;
    }

    return ngx_http_next_header_filter(r);
}


static ngx_int_t
ngx_http_gdrive_error_body_filter(ngx_http_request_t *r, ngx_chain_t *in)
{
    ngx_chain_t                   out, *cl;
    ngx_http_gdrive_error_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_gdrive_worker_module);

    if (ctx == NULL || (u_char *) ctx == &ngx_http_gdrive_own_response) {
        return ngx_http_next_body_filter(r, in);
    }

    /* nginx's page is dropped; the JSON body goes out once */

    for (cl = in; cl; cl = cl->next) {
        cl->buf->pos = cl->buf->last;
        cl->buf->file_pos = cl->buf->file_last;
    }

    if (ctx->sent || r->header_only) {
        return NGX_OK;
    }

    ctx->sent = 1;

    out.buf = ctx->buf;
    out.next = NULL;

    return ngx_http_next_body_filter(r, &out);
}


ngx_int_t
ngx_http_gdrive_error_filter_init(ngx_conf_t *cf)
{
    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_http_gdrive_error_header_filter;

    ngx_http_next_body_filter = ngx_http_top_body_filter;
    ngx_http_top_body_filter = ngx_http_gdrive_error_body_filter;

    return NGX_OK;
}


/*
 * Text answers (metrics, the HTML page) are written into a chain of
 * buffers that grows as needed; every write is bounded by what it
 * reserved.
 */

u_char *
ngx_http_gdrive_out_reserve(ngx_http_gdrive_out_t *o, size_t n)
{
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    if (o->error) {
        return NULL;
    }

    if (o->b && (size_t) (o->b->end - o->b->last) >= n) {
        return o->b->last;
    }

    b = ngx_create_temp_buf(o->pool, ngx_max(n, NGX_HTTP_GDRIVE_OUT_BUF));
    cl = ngx_alloc_chain_link(o->pool);

    if (b == NULL || cl == NULL) {
        o->error = 1;
        return NULL;
    }

    cl->buf = b;
    cl->next = NULL;

    if (o->last == NULL) {
        o->last = &o->first;
    }

    *o->last = cl;
    o->last = &cl->next;
    o->b = b;

    return b->last;
}


void
ngx_http_gdrive_out_printf(ngx_http_gdrive_out_t *o, const char *fmt, ...)
{
    u_char   *p;
    va_list   args;

    p = ngx_http_gdrive_out_reserve(o, NGX_HTTP_GDRIVE_OUT_LINE);
    if (p == NULL) {
        return;
    }

    va_start(args, fmt);
    o->b->last = ngx_vslprintf(p, o->b->end, fmt, args);
    va_end(args);
}


void
ngx_http_gdrive_out_html(ngx_http_gdrive_out_t *o, u_char *s, size_t len)
{
    u_char  *p;
    size_t   n;

    n = len + ngx_escape_html(NULL, s, len);

    p = ngx_http_gdrive_out_reserve(o, n);
    if (p == NULL) {
        return;
    }

    o->b->last = (u_char *) ngx_escape_html(p, s, len);
}


ngx_int_t
ngx_http_gdrive_out_send(ngx_http_request_t *r, ngx_http_gdrive_out_t *o,
    ngx_uint_t status, char *type)
{
    off_t         len;
    ngx_int_t     rc;
    ngx_chain_t  *cl;

    if (o->error) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_set_ctx(r, &ngx_http_gdrive_own_response,
                     ngx_http_gdrive_worker_module);

    rc = ngx_http_discard_request_body(r);

    if (rc != NGX_OK) {
        return rc;
    }

    len = 0;

    for (cl = o->first; cl; cl = cl->next) {
        len += cl->buf->last - cl->buf->pos;

        if (cl->next == NULL) {
            cl->buf->last_buf = (r == r->main) ? 1 : 0;
            cl->buf->last_in_chain = 1;
        }
    }

    r->headers_out.status = status;
    r->headers_out.content_length_n = len;
    r->headers_out.content_type.len = ngx_strlen(type);
    r->headers_out.content_type.data = (u_char *) type;
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.last_modified_time = -1;

    if (r->method == NGX_HTTP_HEAD || len == 0) {
        r->header_only = 1;
        return ngx_http_send_header(r);
    }

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    return ngx_http_output_filter(r, o->first);
}


/* jansson's text, copied into the request's pool; root is consumed */

ngx_int_t
ngx_http_gdrive_send_jansson(ngx_http_request_t *r, ngx_uint_t status,
    json_t *root)
{
    char    *dump;
    u_char  *json;
    size_t   len;

    dump = root ? json_dumps(root, JSON_COMPACT|JSON_REAL_PRECISION(6))
                : NULL;
    json_decref(root);

    if (dump == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    len = ngx_strlen(dump);
    json = ngx_pnalloc(r->pool, len);

    if (json) {
        ngx_memcpy(json, dump, len);
    }

    free(dump);

    if (json == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    r->headers_out.last_modified_time = -1;

    return ngx_http_gdrive_send_json(r, status, json, len);
}


/* bytes that may not be UTF-8 (a cut detail) still make a JSON string */

json_t *
ngx_http_gdrive_str_json(u_char *s, size_t len)
{
    json_t  *j;
    u_char   buf[512];
    size_t   i;

    j = json_stringn((char *) s, len);

    if (j) {
        return j;
    }

    len = ngx_min(len, sizeof(buf));

    for (i = 0; i < len; i++) {
        buf[i] = (s[i] < 0x20 || s[i] > 0x7e) ? '?' : s[i];
    }

    return json_stringn((char *) buf, len);
}
