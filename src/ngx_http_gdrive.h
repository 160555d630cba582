
/*
 * nginx-gdrive-worker: what the location files share.
 *
 * The handlers that the module's tables name and their per-worker init,
 * and the answers every location sends (ngx_http_gdrive_reply.c): JSON
 * errors and bodies, text written into a growing chain of buffers, and
 * the filter that makes nginx's own error pages JSON.
 */


#ifndef _NGX_HTTP_GDRIVE_H_INCLUDED_
#define _NGX_HTTP_GDRIVE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <jansson.h>

#include "ngx_gdrive.h"
#include "ngx_gdrive_kafka.h"


/* the locations */

/* the producer, its trigger topic, or none: triggers get 503 */
void ngx_http_gdrive_trigger_init(ngx_http_gdrive_main_conf_t *gmcf,
    ngx_gdrive_kafka_t *producer, rd_kafka_topic_t *topic);
ngx_int_t ngx_http_gdrive_trigger_handler(ngx_http_request_t *r);
void ngx_http_gdrive_trigger_detach_all(void);

/* the producer whose broker state is the Kafka check, or none */
void ngx_http_gdrive_health_init(ngx_gdrive_kafka_t *producer);
ngx_int_t ngx_http_gdrive_health_handler(ngx_http_request_t *r);
ngx_int_t ngx_http_gdrive_metrics_handler(ngx_http_request_t *r);
ngx_int_t ngx_http_gdrive_status_handler(ngx_http_request_t *r);
ngx_int_t ngx_http_gdrive_unavailable_handler(ngx_http_request_t *r);


/* answers (ngx_http_gdrive_reply.c) */

ngx_int_t ngx_http_gdrive_request_body(ngx_http_request_t *r, size_t max,
    ngx_str_t *body);
ngx_int_t ngx_http_gdrive_add_header(ngx_http_request_t *r, char *key,
    char *value);
ngx_int_t ngx_http_gdrive_send_error(ngx_http_request_t *r,
    ngx_uint_t status, const char *code, const char *detail);
ngx_int_t ngx_http_gdrive_send_json(ngx_http_request_t *r, ngx_uint_t status,
    u_char *json, size_t len);
/* jansson's text; root is consumed */
ngx_int_t ngx_http_gdrive_send_jansson(ngx_http_request_t *r,
    ngx_uint_t status, json_t *root);
/* bytes that may not be UTF-8 still make a JSON string */
json_t *ngx_http_gdrive_str_json(u_char *s, size_t len);
ngx_int_t ngx_http_gdrive_error_filter_init(ngx_conf_t *cf);


/* a text answer in a chain of buffers; a failed write sets error */

typedef struct {
    ngx_pool_t          *pool;
    ngx_chain_t         *first;
    ngx_chain_t        **last;
    ngx_buf_t           *b;
    off_t                len;
    ngx_uint_t           error;
} ngx_http_gdrive_out_t;

u_char *ngx_http_gdrive_out_reserve(ngx_http_gdrive_out_t *o, size_t n);
void ngx_http_gdrive_out_printf(ngx_http_gdrive_out_t *o, const char *fmt,
    ...);
void ngx_http_gdrive_out_html(ngx_http_gdrive_out_t *o, u_char *s,
    size_t len);
ngx_int_t ngx_http_gdrive_out_send(ngx_http_request_t *r,
    ngx_http_gdrive_out_t *o, ngx_uint_t status, char *type);


#endif /* _NGX_HTTP_GDRIVE_H_INCLUDED_ */
