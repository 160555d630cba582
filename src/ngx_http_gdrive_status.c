
/*
 * nginx-gdrive-worker: operator locations (health, and the JSON answers
 * that every location of the module shares).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_gdrive.h"


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
