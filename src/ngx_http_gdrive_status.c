
/*
 * nginx-gdrive-worker: operator locations (health, and the JSON answers
 * that every location of the module shares).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_gdrive.h"


/* the ctx of a response the module made itself */
static u_char  ngx_http_gdrive_own_response;


ngx_int_t
ngx_http_gdrive_health_handler(ngx_http_request_t *r)
{
    static u_char  live[] = "{\"status\":\"healthy\",\"checks\":{\"loop\":true}}";

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return ngx_http_gdrive_send_error(r, NGX_HTTP_NOT_ALLOWED,
                                          "method_not_allowed",
                                          "use GET or HEAD");
    }

    return ngx_http_gdrive_send_json(r, NGX_HTTP_OK, live, sizeof(live) - 1);
}


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
 * gdrive_status as JSON: every worker's slot of the shared zone.  Slots
 * are read without a lock: each is written by one worker only, word by
 * word, and a page that is a moment out of date is fine.
 */

ngx_int_t
ngx_http_gdrive_status_handler(ngx_http_request_t *r)
{
    u_char                       *json, *p;
    size_t                        len;
    ngx_uint_t                    i, j, n, first;
    ngx_gdrive_sh_t              *sh;
    ngx_gdrive_worker_status_t   *st;
    ngx_http_gdrive_main_conf_t  *gmcf;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return ngx_http_gdrive_send_error(r, NGX_HTTP_NOT_ALLOWED,
                                          "method_not_allowed",
                                          "use GET or HEAD");
    }

    gmcf = ngx_http_get_module_main_conf(r, ngx_http_gdrive_worker_module);
    sh = ngx_gdrive_shm(gmcf);

    len = sizeof("{\"version\":\"\",\"nginx\":\"\",\"workers\":[]}")
          + sizeof(NGX_GDRIVE_VERSION) + sizeof(NGINX_VERSION)
          + NGX_GDRIVE_MAX_WORKERS
            * (sizeof("{\"worker\":,\"pid\":,\"started\":,\"inflight\":,"
                      "\"inflight_peak\":,\"paused\":false,\"results\":,"
                      "\"dead_letters\":,\"retries\":,\"cancelled\":,"
                      "\"partitions\":[]},")
               + 10 * NGX_ATOMIC_T_LEN
               + NGX_GDRIVE_MAX_PARTITIONS
                 * (sizeof("{\"partition\":,\"stored_offset\":,"
                           "\"high_watermark\":,\"lag\":},")
                    + NGX_INT32_LEN + 3 * NGX_INT64_LEN));

    json = ngx_pnalloc(r->pool, len);
    if (json == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_sprintf(json, "{\"version\":\"%s\",\"nginx\":\"%s\",\"workers\":[",
                    NGX_GDRIVE_VERSION, NGINX_VERSION);

    first = 1;

    for (i = 0; i < NGX_GDRIVE_MAX_WORKERS; i++) {
        st = &sh->workers[i];

        /* a slot of a worker that is gone is not shown */
        if (st->pid == 0 || kill((ngx_pid_t) st->pid, 0) == -1) {
            continue;
        }

        if (!first) {
            *p++ = ',';
        }

        first = 0;

        p = ngx_sprintf(p, "{\"worker\":%ui,\"pid\":%uA,\"started\":%uA,"
                           "\"inflight\":%uA,\"inflight_peak\":%uA,"
                           "\"paused\":%s,\"results\":%uA,"
                           "\"dead_letters\":%uA,\"retries\":%uA,"
                           "\"cancelled\":%uA,\"partitions\":[",
                        i, st->pid, st->started, st->inflight,
                        st->inflight_peak, st->paused ? "true" : "false",
                        st->results, st->dead_letters, st->retries,
                        st->cancelled);

        n = ngx_min(st->nparts, NGX_GDRIVE_MAX_PARTITIONS);

        for (j = 0; j < n; j++) {
            p = ngx_sprintf(p, "%s{\"partition\":%D,\"stored_offset\":%L,"
                               "\"high_watermark\":%L,\"lag\":%L}",
                            j ? "," : "", st->partitions[j], st->stored[j],
                            st->high[j], st->lag[j]);
        }

        p = ngx_cpymem(p, "]}", 2);
    }

    p = ngx_cpymem(p, "]}", 2);

    r->headers_out.last_modified_time = -1;

    return ngx_http_gdrive_send_json(r, NGX_HTTP_OK, json, p - json);
}
