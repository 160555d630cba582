
/*
 * nginx-gdrive-worker: the S3 client.
 *
 * Client layer: the uploader (ngx_gdrive_s3.c) and the deleter of a
 * file's objects (ngx_gdrive_s3_delete.c); both address, sign and start
 * their requests the same way, with the settings ngx_gdrive_s3_init()
 * hands the uploader.
 */


#ifndef _NGX_GDRIVE_S3_H_INCLUDED_
#define _NGX_GDRIVE_S3_H_INCLUDED_


#include "ngx_gdrive.h"
#include "ngx_gdrive_http.h"
#include "ngx_gdrive_sigv4.h"


/*
 * S3: one object written from a byte stream (ngx_gdrive_s3.c), signed
 * with SigV4 (ngx_gdrive_sigv4.c).
 *
 * start() asks whether the object already exists: if it does with the
 * same size (any size when the size is not known up front), done() comes
 * with unchanged set and nothing is written.  Otherwise ready() comes and
 * the owner writes the content in order.  write() takes all of the bytes
 * or none: NGX_AGAIN means every part buffer is full or uploading, and
 * resume() will be called when one is free (the owner pauses its
 * download meanwhile).  finish() ends the stream; done() reports.  Below
 * gdrive_s3_multipart_threshold bytes the object is one PUT (sent as it
 * is written when it is larger than a buffer), above it a multipart
 * upload of gdrive_stream_buffers-sized parts, at most
 * gdrive_stream_buffers buffers in memory either way.  A failed or
 * aborted multipart upload is aborted on S3.  After abort() no callback
 * comes.
 */

typedef struct ngx_gdrive_s3_upload_s  ngx_gdrive_s3_upload_t;

struct ngx_gdrive_s3_upload_s {
    ngx_pool_t              *pool;        /* the owner's */
    ngx_log_t               *log;
    ngx_str_t                key;         /* made of safe characters */
    ngx_str_t                content_type;
    off_t                    size;        /* -1: not known up front */
    ngx_str_t                md5;         /* expected hex md5, or empty */
    ngx_str_t                drive_id;    /* x-amz-meta-drive-file-id */
    ngx_str_t                version;     /* x-amz-meta-drive-version */
    ngx_str_t                integration; /* x-amz-meta-integration-id */
    ngx_str_t                trigger;     /* x-amz-meta-trigger-id */
    ngx_str_t                name;        /* x-amz-meta-drive-name, UTF-8 */

    void                   (*ready)(ngx_gdrive_s3_upload_t *u);
    void                   (*resume)(ngx_gdrive_s3_upload_t *u);
    void                   (*done)(ngx_gdrive_s3_upload_t *u);
    void                    *data;

    /* the answer, in done() */
    ngx_int_t                rc;          /* NGX_OK, NGX_ERROR */
    const char              *code;        /* README, Failures and retries */
    const char              *detail;
    ngx_uint_t               permanent;
    ngx_int_t                retry_after; /* seconds, -1: none */
    off_t                    bytes;
    ngx_uint_t               parts;       /* 0: a single PUT */
    u_char                   sha256[64];  /* hex, of the bytes written */
    u_char                   md5_hex[32];
    unsigned                 unchanged:1;

    void                    *state;       /* the S3 client's */
};

void ngx_gdrive_s3_init(ngx_http_gdrive_main_conf_t *gmcf);
void ngx_gdrive_s3_upload_start(ngx_gdrive_s3_upload_t *u);
ngx_int_t ngx_gdrive_s3_upload_write(ngx_gdrive_s3_upload_t *u, u_char *p,
    size_t len);
void ngx_gdrive_s3_upload_finish(ngx_gdrive_s3_upload_t *u);
void ngx_gdrive_s3_upload_abort(ngx_gdrive_s3_upload_t *u);


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
