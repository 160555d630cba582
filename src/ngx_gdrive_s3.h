
/*
 * nginx-gdrive-worker: what the S3 clients share.
 *
 * Client layer: the uploader (ngx_gdrive_s3.c) and the deleter of a
 * file's objects (ngx_gdrive_s3_delete.c) address, sign and start their
 * requests the same way.  Include after ngx_gdrive.h.
 */


#ifndef _NGX_GDRIVE_S3_H_INCLUDED_
#define _NGX_GDRIVE_S3_H_INCLUDED_


#include "ngx_gdrive_sigv4.h"


/* where requests about one key (or the bucket) go */
typedef struct {
    ngx_str_t                base;        /* scheme://host */
    ngx_str_t                host;
    ngx_str_t                path;        /* canonical path, not encoded */
} ngx_gdrive_s3_target_t;


ngx_http_gdrive_main_conf_t *ngx_gdrive_s3_conf(void);
ngx_int_t ngx_gdrive_s3_target(ngx_pool_t *pool,
    ngx_http_gdrive_main_conf_t *gmcf, ngx_str_t *key,
    ngx_gdrive_s3_target_t *t);
size_t ngx_gdrive_s3_url_size(ngx_gdrive_s3_target_t *t, size_t query);
ngx_int_t ngx_gdrive_s3_sign_start(ngx_gdrive_http_t *h,
    ngx_http_gdrive_main_conf_t *gmcf, ngx_gdrive_s3_target_t *t,
    const char *method, ngx_gdrive_sigv4_pair_t *q, size_t nq,
    ngx_gdrive_sigv4_pair_t *extra, size_t nextra, const char *hash,
    u_char *url);
ngx_int_t ngx_gdrive_s3_xml(u_char *body, size_t len, char *tag,
    ngx_str_t *value);
size_t ngx_gdrive_s3_xml_unescape(u_char *dst, ngx_str_t *src);
u_char *ngx_gdrive_s3_xml_escape(u_char *dst, ngx_str_t *src);


/*
 * Every object under a prefix deleted (ngx_gdrive_s3_delete.c): pages of
 * ListObjectsV2, each followed by one DeleteObjects, until the prefix is
 * empty.  done() comes once, from the event loop, never from inside
 * start(); after cancel() none comes.  Destroying the pool cancels.
 */
typedef struct ngx_gdrive_s3_delete_s  ngx_gdrive_s3_delete_t;

struct ngx_gdrive_s3_delete_s {
    ngx_pool_t              *pool;
    ngx_log_t               *log;
    ngx_str_t                prefix;      /* ends with '/' */
    void                   (*done)(ngx_gdrive_s3_delete_t *d);
    void                    *data;

    /* the outcome */
    ngx_int_t                rc;
    const char              *code;
    const char              *detail;
    ngx_uint_t               permanent;
    ngx_uint_t               deleted;     /* objects */

    void                    *state;
};


void ngx_gdrive_s3_delete_start(ngx_gdrive_s3_delete_t *d);
void ngx_gdrive_s3_delete_cancel(ngx_gdrive_s3_delete_t *d);


#endif /* _NGX_GDRIVE_S3_H_INCLUDED_ */
