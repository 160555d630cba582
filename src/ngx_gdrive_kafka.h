
/*
 * nginx-gdrive-worker: Kafka on nginx's event loop (ngx_gdrive_kafka.c).
 *
 * Client layer: the producer, the consumer that hands messages and
 * rebalances to the job engine, delivery reports, offsets, and the
 * helpers that keep librdkafka's API inside ngx_gdrive_kafka.c.
 */


#ifndef _NGX_GDRIVE_KAFKA_H_INCLUDED_
#define _NGX_GDRIVE_KAFKA_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include <librdkafka/rdkafka.h>

#include "ngx_gdrive.h"


typedef struct ngx_gdrive_kafka_s  ngx_gdrive_kafka_t;

typedef void (*ngx_gdrive_kafka_dr_pt)(void *data, rd_kafka_resp_err_t err,
    int32_t partition, int64_t offset);

/* a delivery report's receiver: must live until its report arrives */
typedef struct {
    ngx_gdrive_kafka_dr_pt   handler;
    void                    *data;
} ngx_gdrive_kafka_dr_t;

/* what a consumer hands to the job engine */
typedef struct {
    void                   (*message)(void *data, rd_kafka_message_t *msg);
    void                   (*assigned)(void *data,
                                rd_kafka_topic_partition_list_t *parts);
    void                   (*revoked)(void *data,
                                rd_kafka_topic_partition_list_t *parts);
    /* jobs of revoked partitions to let finish first; 0: none */
    ngx_uint_t             (*draining)(void *data,
                                rd_kafka_topic_partition_list_t *parts);
    ngx_uint_t             (*room)(void *data);
    void                   (*exiting)(void *data);
    void                   (*closed)(void *data);
    void                   (*tick)(void *data);
    void                    *data;
} ngx_gdrive_consumer_cb_t;

struct ngx_gdrive_kafka_s {
    rd_kafka_t              *rk;
    rd_kafka_queue_t        *queue;
    ngx_connection_t        *conn;       /* read end of the event pipe */
    int                      pipe[2];
    ngx_log_t               *log;
    void                   (*serve)(ngx_gdrive_kafka_t *k);
    void                    *data;
    ngx_msec_t               brokers_down_since;
    ngx_gdrive_consumer_cb_t  cb;
    ngx_uint_t               max_poll;
    ngx_event_t              tick;
    /* a revoke deferred until its partitions' jobs end, or the deadline */
    rd_kafka_topic_partition_list_t  *revoking;
    ngx_event_t              drain;
    ngx_msec_t               drain_timeout;
    ngx_uint_t               brokers_known;  /* from the statistics */
    ngx_uint_t               brokers_seen_up;
    char                    *counted;    /* the topic whose partitions */
    ngx_uint_t               topic_partitions;  /* are counted, 0: unknown */
    unsigned                 brokers_down:1;
    unsigned                 fatal:1;
    unsigned                 paused:1;
    unsigned                 closing:1;
    unsigned                 closed:1;
    unsigned                 revoke_cooperative:1;
};

rd_kafka_conf_t *ngx_gdrive_kafka_conf(ngx_log_t *log,
    ngx_http_gdrive_main_conf_t *gmcf, ngx_gdrive_kafka_t *k,
    char **defaults);
/* output: the job engine's producer, else the triggers' */
ngx_gdrive_kafka_t *ngx_gdrive_kafka_producer(ngx_cycle_t *cycle,
    ngx_http_gdrive_main_conf_t *gmcf, ngx_uint_t output);
ngx_gdrive_kafka_t *ngx_gdrive_kafka_consumer(ngx_cycle_t *cycle,
    ngx_http_gdrive_main_conf_t *gmcf, ngx_gdrive_consumer_cb_t *cb);
void ngx_gdrive_kafka_consumer_pause(ngx_gdrive_kafka_t *k,
    ngx_uint_t pause);
void ngx_gdrive_kafka_consumer_close(ngx_gdrive_kafka_t *k);
void ngx_gdrive_kafka_revoke_drained(ngx_gdrive_kafka_t *k);
rd_kafka_resp_err_t ngx_gdrive_kafka_store_offset(ngx_gdrive_kafka_t *k,
    const char *topic, int32_t partition, int64_t offset);
ngx_int_t ngx_gdrive_kafka_watch(ngx_gdrive_kafka_t *k,
    rd_kafka_queue_t *queue);
ngx_uint_t ngx_gdrive_kafka_permanent(rd_kafka_resp_err_t err);
ngx_uint_t ngx_gdrive_kafka_too_large(rd_kafka_resp_err_t err);
rd_kafka_resp_err_t ngx_gdrive_kafka_produce(ngx_gdrive_kafka_t *k,
    rd_kafka_topic_t *rkt, ngx_str_t *key, u_char *value, size_t len,
    ngx_uint_t free_value, rd_kafka_headers_t *headers,
    ngx_gdrive_kafka_dr_t *dr);
rd_kafka_topic_t *ngx_gdrive_kafka_topic(ngx_gdrive_kafka_t *k,
    ngx_str_t *name);
ngx_int_t ngx_gdrive_kafka_brokers_up(ngx_gdrive_kafka_t *k);
ngx_int_t ngx_gdrive_kafka_brokers_state(ngx_gdrive_kafka_t *k,
    ngx_uint_t *up, ngx_uint_t *known);
void ngx_gdrive_kafka_destroy(ngx_gdrive_kafka_t *k, ngx_msec_t flush);
ngx_uint_t ngx_gdrive_kafka_left_running(void);

/* librdkafka judges a property and its value (gdrive_kafka_option) */
ngx_int_t ngx_gdrive_kafka_option_check(const char *name, const char *value,
    char *err, size_t size);
const char *ngx_gdrive_kafka_version(void);
void ngx_gdrive_kafka_topic_destroy(rd_kafka_topic_t *rkt);
void ngx_gdrive_kafka_message_free(rd_kafka_message_t *msg);
const char *ngx_gdrive_kafka_strerror(rd_kafka_resp_err_t err);
ngx_uint_t ngx_gdrive_kafka_partitions(ngx_gdrive_kafka_t *k);
void ngx_gdrive_kafka_member_id(ngx_gdrive_kafka_t *k, u_char *buf,
    size_t size);
void ngx_gdrive_kafka_lag(ngx_gdrive_kafka_t *k, const char *topic,
    int32_t partition, int64_t stored, int64_t *high, int64_t *lag);


/*
 * A dead letter's headers: the original message's (unless the record is
 * cut), then the failure in Kafka Connect's header names and ours.
 */

typedef struct {
    const char              *topic;       /* where the message was taken */
    ngx_str_t               *instance;    /* gdrive_instance */
    const char              *code;
    const char              *detail;
    ngx_uint_t               attempts;
    size_t                   value_len;   /* sent of the value */
    const char              *trigger_id;  /* or NULL: none was read */
    const char              *traceparent; /* the job's, in place of the */
    const char              *tracestate;  /* original ones; or NULL */
    unsigned                 cut:1;       /* leave the original headers out */
} ngx_gdrive_kafka_dlq_t;

rd_kafka_headers_t *ngx_gdrive_kafka_dlq_headers(rd_kafka_message_t *msg,
    ngx_gdrive_kafka_dlq_t *dlq);
void ngx_gdrive_kafka_headers_free(rd_kafka_headers_t *hdrs);

/* W3C trace context on the records: read, and made for a produce */
ngx_int_t ngx_gdrive_kafka_header(rd_kafka_message_t *msg, const char *name,
    const u_char **value, size_t *len);
rd_kafka_headers_t *ngx_gdrive_kafka_trace_headers(const char *traceparent,
    const char *tracestate);


#endif /* _NGX_GDRIVE_KAFKA_H_INCLUDED_ */
