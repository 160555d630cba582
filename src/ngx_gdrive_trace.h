
/*
 * nginx-gdrive-worker: W3C Trace Context (traceparent, tracestate).
 *
 * Infrastructure, free of nginx: parses a traceparent that came from
 * outside (an HTTP header or a Kafka record header), starts a trace or a
 * span with ids from OpenSSL's generator, and prints the traceparent of a
 * record made from a job; hands out that generator's bytes from a pool
 * (trigger ids too).  The unit tests link it alone.
 */


#ifndef _NGX_GDRIVE_TRACE_H_INCLUDED_
#define _NGX_GDRIVE_TRACE_H_INCLUDED_


#include <stddef.h>


#define NGX_GDRIVE_TRACEPARENT_LEN  55    /* version 00 */
#define NGX_GDRIVE_TRACE_ID_LEN     32    /* in hex */
#define NGX_GDRIVE_SPAN_ID_LEN      16    /* in hex */
#define NGX_GDRIVE_TRACESTATE_MAX   512

#define NGX_GDRIVE_TRACE_SAMPLED    0x01


typedef struct {
    unsigned char   trace_id[16];
    unsigned char   parent_id[8];    /* the span the trace came from */
    unsigned char   span_id[8];      /* this step's own span */
    unsigned char   flags;
    size_t          state_len;       /* 0: no tracestate */
    char            state[NGX_GDRIVE_TRACESTATE_MAX + 1];
} ngx_gdrive_trace_t;


int ngx_gdrive_traceparent_parse(ngx_gdrive_trace_t *t,
    const unsigned char *value, size_t len);
int ngx_gdrive_tracestate_valid(const unsigned char *value, size_t len);
void ngx_gdrive_trace_start(ngx_gdrive_trace_t *t);
void ngx_gdrive_trace_derive(ngx_gdrive_trace_t *t,
    const unsigned char *name, size_t len);
void ngx_gdrive_trace_span(ngx_gdrive_trace_t *t);
void ngx_gdrive_traceparent_print(const ngx_gdrive_trace_t *t,
    const unsigned char *parent, char *buf);
void ngx_gdrive_trace_id_print(const ngx_gdrive_trace_t *t, char *buf);
int ngx_gdrive_random_bytes(unsigned char *b, size_t n);
void ngx_gdrive_random_forget(void);


#endif /* _NGX_GDRIVE_TRACE_H_INCLUDED_ */
