
/*
 * nginx-gdrive-worker: a blocking Kafka client for rare operator requests.
 *
 * The functions of ngx_gdrive_kafka_admin.c.  Every call blocks (up to the
 * timeout it is given): they are for a thread of nginx's thread pool,
 * never for the event loop.  One client is used by one thread at a time.
 */


#ifndef _NGX_GDRIVE_KAFKA_ADMIN_H_INCLUDED_
#define _NGX_GDRIVE_KAFKA_ADMIN_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_gdrive.h"

#include "ngx_gdrive_conf.h"


/* where ngx_gdrive_kafka_admin_assign() starts a partition */
#define NGX_GDRIVE_KAFKA_ADMIN_SKIP    -1     /* not read at all */
#define NGX_GDRIVE_KAFKA_ADMIN_STORED  -2     /* the group's committed offset */


typedef struct ngx_gdrive_kafka_admin_s  ngx_gdrive_kafka_admin_t;


/* a record just read: valid until the next read or the close */
typedef struct {
    int32_t                 partition;
    int64_t                 offset;
    int64_t                 timestamp;    /* ms; -1: none */
    const u_char           *key;          /* NULL: no key */
    size_t                  key_len;
    const u_char           *value;        /* NULL: no value */
    size_t                  len;
} ngx_gdrive_kafka_record_t;


ngx_gdrive_kafka_admin_t *ngx_gdrive_kafka_admin_open(ngx_log_t *log,
    ngx_http_gdrive_main_conf_t *gmcf, const char *group,
    ngx_uint_t producer, char *err, size_t size);
void ngx_gdrive_kafka_admin_close(ngx_gdrive_kafka_admin_t *ka);
int ngx_gdrive_kafka_admin_partitions(ngx_gdrive_kafka_admin_t *ka,
    const char *topic, int32_t **parts, ngx_msec_t timeout);
ngx_int_t ngx_gdrive_kafka_admin_watermarks(ngx_gdrive_kafka_admin_t *ka,
    const char *topic, int32_t partition, int64_t *lo, int64_t *hi,
    ngx_msec_t timeout);
ngx_int_t ngx_gdrive_kafka_admin_assign(ngx_gdrive_kafka_admin_t *ka,
    const char *topic, int32_t *parts, int64_t *offsets, int n);
ngx_int_t ngx_gdrive_kafka_admin_read(ngx_gdrive_kafka_admin_t *ka,
    ngx_gdrive_kafka_record_t *rec, ngx_msec_t timeout);
ngx_int_t ngx_gdrive_kafka_admin_header(ngx_gdrive_kafka_admin_t *ka,
    size_t i, const char **name, const void **value, size_t *len);
ngx_int_t ngx_gdrive_kafka_admin_forward(ngx_gdrive_kafka_admin_t *ka,
    const char *topic, const char **skip, const char *name,
    const char *value);
void ngx_gdrive_kafka_admin_flush(ngx_gdrive_kafka_admin_t *ka,
    ngx_msec_t timeout, ngx_uint_t *delivered, ngx_uint_t *failed);
const char *ngx_gdrive_kafka_admin_commit(ngx_gdrive_kafka_admin_t *ka,
    const char *topic, int32_t *parts, int64_t *offsets, int n);


#endif /* _NGX_GDRIVE_KAFKA_ADMIN_H_INCLUDED_ */
