
/*
 * A test module, never installed: "gdrive_s3_test;" streams generated
 * bytes through the S3 uploader (src/ngx_gdrive_s3.c) of the loaded
 * gdrive module and answers the uploader's report as JSON, so that the
 * uploader is tested on the event loop against the real S3 server before
 * the job engine drives it.
 *
 * Arguments: key, size (bytes to stream), declared (the size announced,
 * -1: unknown; default: size), md5 (expected hex), chunk (bytes per
 * write).  Byte i of the content is i % 251.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_gdrive.h"
#include "ngx_gdrive_s3.h"


typedef struct {
    ngx_http_request_t      *r;
    ngx_gdrive_s3_upload_t   u;
    off_t                    size;
    off_t                    sent;
    size_t                   chunk;
    ngx_uint_t               again;
    ngx_uint_t               resumes;
    u_char                  *block;
} ngx_http_gdrive_s3_test_ctx_t;


static char *ngx_http_gdrive_s3_test(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_int_t ngx_http_gdrive_s3_test_handler(ngx_http_request_t *r);
static void ngx_http_gdrive_s3_test_pump(ngx_gdrive_s3_upload_t *u);
static void ngx_http_gdrive_s3_test_resume(ngx_gdrive_s3_upload_t *u);
static void ngx_http_gdrive_s3_test_done(ngx_gdrive_s3_upload_t *u);


static ngx_command_t  ngx_http_gdrive_s3_test_commands[] = {

    { ngx_string("gdrive_s3_test"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_gdrive_s3_test,
      0,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_gdrive_s3_test_module_ctx = {
    NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
};


ngx_module_t  ngx_http_gdrive_s3_test_module = {
    NGX_MODULE_V1,
    &ngx_http_gdrive_s3_test_module_ctx,
    ngx_http_gdrive_s3_test_commands,
    NGX_HTTP_MODULE,
    NULL, NULL, NULL, NULL, NULL, NULL, NULL,
    NGX_MODULE_V1_PADDING
};


ngx_module_t *ngx_modules[] = {
    &ngx_http_gdrive_s3_test_module,
    NULL
};

char *ngx_module_names[] = {
    "ngx_http_gdrive_s3_test_module",
    NULL
};

char *ngx_module_order[] = {
    NULL
};


static char *
ngx_http_gdrive_s3_test(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_gdrive_s3_test_handler;

    return NGX_CONF_OK;
}


static off_t
ngx_http_gdrive_s3_test_arg(ngx_http_request_t *r, char *name, off_t def)
{
    ngx_str_t  v;

    if (ngx_http_arg(r, (u_char *) name, ngx_strlen(name), &v) != NGX_OK) {
        return def;
    }

    if (v.len && v.data[0] == '-') {
        return -1;
    }

    return ngx_atoof(v.data, v.len);
}


static ngx_int_t
ngx_http_gdrive_s3_test_handler(ngx_http_request_t *r)
{
    size_t                          i;
    ngx_str_t                       key, md5;
    ngx_http_gdrive_s3_test_ctx_t  *ctx;

    if (ngx_http_arg(r, (u_char *) "key", 3, &key) != NGX_OK) {
        return NGX_HTTP_BAD_REQUEST;
    }

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_gdrive_s3_test_ctx_t));
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->r = r;
    ctx->size = ngx_http_gdrive_s3_test_arg(r, "size", 0);
    ctx->chunk = (size_t) ngx_http_gdrive_s3_test_arg(r, "chunk", 16384);
    ctx->block = ngx_pnalloc(r->pool, ctx->chunk + 251);

    if (ctx->block == NULL || ctx->chunk == 0) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    for (i = 0; i < ctx->chunk + 251; i++) {
        ctx->block[i] = (u_char) (i % 251);
    }

    if (ngx_http_arg(r, (u_char *) "md5", 3, &md5) != NGX_OK) {
        ngx_str_null(&md5);
    }

    ctx->u.pool = r->pool;
    ctx->u.log = r->connection->log;
    ctx->u.key = key;
    ngx_str_set(&ctx->u.content_type, "application/x-test");
    ctx->u.size = ngx_http_gdrive_s3_test_arg(r, "declared", ctx->size);
    ctx->u.md5 = md5;
    ngx_str_set(&ctx->u.drive_id, "test-file-id");
    ngx_str_set(&ctx->u.version, "7");
    ctx->u.ready = ngx_http_gdrive_s3_test_pump;
    ctx->u.resume = ngx_http_gdrive_s3_test_resume;
    ctx->u.done = ngx_http_gdrive_s3_test_done;
    ctx->u.data = ctx;

    r->main->count++;

    ngx_gdrive_s3_upload_start(&ctx->u);

    if (ctx->u.state == NULL) {
        r->main->count--;
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return NGX_DONE;
}


static void
ngx_http_gdrive_s3_test_pump(ngx_gdrive_s3_upload_t *u)
{
    ngx_http_gdrive_s3_test_ctx_t *ctx = u->data;

    size_t     n;
    ngx_int_t  rc;

    while (ctx->sent < ctx->size) {
        n = (size_t) ngx_min((off_t) ctx->chunk, ctx->size - ctx->sent);

        rc = ngx_gdrive_s3_upload_write(u, ctx->block + ctx->sent % 251, n);

        if (rc == NGX_AGAIN) {
            ctx->again++;
            return;
        }

        if (rc == NGX_ERROR) {
            return;
        }

        ctx->sent += n;
    }

    ngx_gdrive_s3_upload_finish(u);
}


static void
ngx_http_gdrive_s3_test_resume(ngx_gdrive_s3_upload_t *u)
{
    ngx_http_gdrive_s3_test_ctx_t *ctx = u->data;

    ctx->resumes++;
    ngx_http_gdrive_s3_test_pump(u);
}


static void
ngx_http_gdrive_s3_test_done(ngx_gdrive_s3_upload_t *u)
{
    ngx_http_gdrive_s3_test_ctx_t *ctx = u->data;

    size_t               len;
    ngx_buf_t           *b;
    ngx_chain_t          out;
    ngx_http_request_t  *r;

    r = ctx->r;
    len = 512 + (u->detail ? ngx_strlen(u->detail) : 0);

    b = ngx_create_temp_buf(r->pool, len);
    if (b == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    b->last = ngx_snprintf(b->pos, len,
                  "{\"rc\":%i,\"code\":\"%s\",\"permanent\":%ui,"
                  "\"unchanged\":%ui,\"bytes\":%O,\"parts\":%ui,"
                  "\"sha256\":\"%*s\",\"md5\":\"%*s\",\"again\":%ui,"
                  "\"resumes\":%ui,\"detail\":\"%s\"}\n",
                  u->rc, u->code ? u->code : "", u->permanent,
                  (ngx_uint_t) u->unchanged, u->bytes, u->parts,
                  (size_t) (u->rc == NGX_OK && !u->unchanged ? 64 : 0),
                  u->sha256,
                  (size_t) (u->rc == NGX_OK && !u->unchanged ? 32 : 0),
                  u->md5_hex, ctx->again, ctx->resumes,
                  u->detail ? u->detail : "");
    b->last_buf = 1;
    b->last_in_chain = 1;

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = b->last - b->pos;
    ngx_str_set(&r->headers_out.content_type, "application/json");

    out.buf = b;
    out.next = NULL;

    if (ngx_http_send_header(r) == NGX_ERROR) {
        ngx_http_finalize_request(r, NGX_ERROR);
        return;
    }

    ngx_http_finalize_request(r, ngx_http_output_filter(r, &out));
}
