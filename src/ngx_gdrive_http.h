
/*
 * nginx-gdrive-worker: outbound HTTP, curl multi on the event loop
 * (ngx_gdrive_http.c).
 *
 * Infrastructure.  ngx_gdrive.h includes this header after the
 * configuration's type, whose settings ngx_gdrive_http_init() takes.
 */


#ifndef _NGX_GDRIVE_HTTP_H_INCLUDED_
#define _NGX_GDRIVE_HTTP_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include <curl/curl.h>

#include "ngx_gdrive.h"


/* outbound HTTP (curl multi on the event loop) */

/* "scheme://host:port": a host name is at most 253 bytes */
#define NGX_GDRIVE_HTTP_HOST_LEN        288

typedef struct ngx_gdrive_http_s  ngx_gdrive_http_t;
/* a host whose requests wait for a connection (ngx_gdrive_http.c) */
typedef struct ngx_gdrive_http_host_s  ngx_gdrive_http_host_t;
/* a request's state in the worker's own client (ngx_gdrive_http1.c) */
typedef struct ngx_gdrive_h1_s  ngx_gdrive_h1_t;

struct ngx_gdrive_http_s {
    /* curl's handle, of a request that curl sends (a lean object has
     * none until one does) */
    CURL                    *easy;
    ngx_gdrive_h1_t         *h1;
    struct curl_slist       *headers;
    ngx_pool_t              *pool;
    ngx_log_t               *log;
    void                   (*handler)(ngx_gdrive_http_t *h);
    /* the response body, else it is gathered up to max_body; a sink may
     * return CURL_WRITEFUNC_PAUSE and later call ngx_gdrive_http_resume() */
    size_t                 (*sink)(ngx_gdrive_http_t *h, u_char *p,
                                   size_t len);
    /* every response header line as it arrives, "\r\n" included */
    void                   (*header_handler)(ngx_gdrive_http_t *h,
                                u_char *line, size_t len);
    /* a request body of source_len bytes read as it is sent, instead of
     * request_body; a source may return CURL_READFUNC_PAUSE and later
     * call ngx_gdrive_http_resume() */
    size_t                 (*source)(ngx_gdrive_http_t *h, u_char *p,
                                     size_t len);
    off_t                    source_len;
    /* the length a sink's content should have, a hint that sizes curl's
     * buffer (a small file needs no big one), or -1: not known */
    off_t                    expect;
    void                    *data;
    const char              *method;      /* NULL: GET, or POST with a body */
    u_char                  *request_body;
    size_t                   request_len;
    const char              *what;        /* for debug lines: no secrets */
    CURLcode                 result;
    long                     status;
    ngx_int_t                retry_after; /* seconds, -1: none */
    off_t                    content_length; /* the answer's, -1: none */
    ngx_str_t                location;    /* the worker's client's */
    u_char                  *body;
    size_t                   len;
    size_t                   cap;
    size_t                   max_body;
    ngx_msec_t               started;
    char                     error[CURL_ERROR_SIZE];
    ngx_queue_t              queue;       /* waiting to be added */
    ngx_gdrive_http_host_t  *host;        /* its connection limit */
    unsigned                 active:1;
    unsigned                 pending:1;   /* to be added */
    unsigned                 removing:1;  /* to be removed */
    unsigned                 admitted:1;  /* within the limits */
    unsigned                 waiting:1;   /* for a connection */
    /* never waits for a connection here: a probe, whose own timeout runs
     * from its start */
    unsigned                 no_wait:1;
    /* made by create_lean(): its requests may go by the worker's own
     * client; none of curl's options may be set on it */
    unsigned                 lean:1;
    unsigned                 direct:1;    /* this request does */
};

ngx_int_t ngx_gdrive_http_init(ngx_cycle_t *cycle,
    ngx_http_gdrive_main_conf_t *gmcf, ngx_gdrive_worker_status_t *status);
void ngx_gdrive_http_done(void);
ngx_gdrive_http_t *ngx_gdrive_http_create(ngx_pool_t *pool, ngx_log_t *log,
    size_t max_body);
ngx_gdrive_http_t *ngx_gdrive_http_create_lean(ngx_pool_t *pool,
    ngx_log_t *log, size_t max_body);
ngx_int_t ngx_gdrive_http_header_add(ngx_gdrive_http_t *h, const char *line);
ngx_int_t ngx_gdrive_http_body_room(ngx_gdrive_http_t *h, size_t size);
/* a value from outside may go into a header: no CR, LF or NUL */
ngx_uint_t ngx_gdrive_header_safe(ngx_str_t *value);
ngx_int_t ngx_gdrive_http_start(ngx_gdrive_http_t *h, const char *url);
void ngx_gdrive_http_resume(ngx_gdrive_http_t *h);
void ngx_gdrive_http_cancel(ngx_gdrive_http_t *h);
void ngx_gdrive_http_reset(ngx_gdrive_http_t *h);
/* a redirect's absolute URL, or NULL */
char *ngx_gdrive_http_redirect_url(ngx_gdrive_http_t *h);

/* between ngx_gdrive_http.c and the worker's own client */
void ngx_gdrive_http_callback(ngx_uint_t in);
void ngx_gdrive_http_line(ngx_gdrive_http_t *h, u_char *line, size_t len);
size_t ngx_gdrive_http_take_content(ngx_gdrive_http_t *h, u_char *p,
    size_t len);
void ngx_gdrive_http_ended(ngx_gdrive_http_t *h);

void ngx_gdrive_h1_init(ngx_cycle_t *cycle,
    ngx_http_gdrive_main_conf_t *gmcf);
void ngx_gdrive_h1_done(void);
ngx_int_t ngx_gdrive_h1_prepare(ngx_gdrive_http_t *h, const char *url);
void ngx_gdrive_h1_launch(ngx_gdrive_http_t *h);
void ngx_gdrive_h1_resume(ngx_gdrive_http_t *h);
void ngx_gdrive_h1_cancel(ngx_gdrive_http_t *h);
void ngx_gdrive_h1_free(ngx_gdrive_http_t *h);
ngx_str_t ngx_gdrive_h1_origin_name(ngx_gdrive_http_t *h);


#endif /* _NGX_GDRIVE_HTTP_H_INCLUDED_ */
