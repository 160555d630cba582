
/*
 * nginx-gdrive-worker: a blocking Kafka client for rare operator requests.
 *
 * Clients layer, beside ngx_gdrive_kafka.c: gdrive_dlq reads a topic from
 * its end or from a committed position and replays records, which
 * librdkafka only offers as blocking calls (metadata, watermarks, consume
 * with a timeout, flush, commit).  They run in a thread of nginx's thread
 * pool with short-lived clients of their own, built on the same
 * configuration as the worker's clients (ngx_gdrive_kafka_conf()), less
 * what needs the event loop: nobody serves a log queue or the worker's
 * callbacks in that thread.
 *
 * A client is a consumer, assigned partitions (it never joins its group,
 * the group id only keeps a committed position), and for a replay an
 * idempotent producer whose deliveries are counted in flush().
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_gdrive.h"
#include "ngx_gdrive_kafka.h"
#include "ngx_gdrive_kafka_admin.h"


struct ngx_gdrive_kafka_admin_s {
    rd_kafka_t              *consumer;
    rd_kafka_t              *producer;    /* NULL: reads only */
    rd_kafka_message_t      *msg;         /* the record just read */
    ngx_uint_t               delivered;
    ngx_uint_t               failed;
};


static rd_kafka_t *ngx_gdrive_kafka_admin_client(ngx_log_t *log,
    ngx_http_gdrive_main_conf_t *gmcf, ngx_gdrive_kafka_admin_t *ka,
    rd_kafka_type_t type, const char *group, char *err, size_t size);
static void ngx_gdrive_kafka_admin_dr(rd_kafka_t *rk,
    const rd_kafka_message_t *msg, void *opaque);
static void ngx_gdrive_kafka_admin_release(ngx_gdrive_kafka_admin_t *ka);


/*
 * A consumer in the group given, and with "producer" an idempotent
 * producer too.  On failure "err" says why, when librdkafka said it.
 */

ngx_gdrive_kafka_admin_t *
ngx_gdrive_kafka_admin_open(ngx_log_t *log, ngx_http_gdrive_main_conf_t *gmcf,
    const char *group, ngx_uint_t producer, char *err, size_t size)
{
    ngx_gdrive_kafka_admin_t  *ka;

    err[0] = '\0';

    ka = ngx_calloc(sizeof(ngx_gdrive_kafka_admin_t), log);
    if (ka == NULL) {
        return NULL;
    }

    ka->consumer = ngx_gdrive_kafka_admin_client(log, gmcf, ka,
                                                 RD_KAFKA_CONSUMER, group,
                                                 err, size);
    if (ka->consumer == NULL) {
        ngx_free(ka);
        return NULL;
    }

    if (!producer) {
        return ka;
    }

    ka->producer = ngx_gdrive_kafka_admin_client(log, gmcf, ka,
                                                 RD_KAFKA_PRODUCER, NULL,
                                                 err, size);
    if (ka->producer == NULL) {
        rd_kafka_destroy(ka->consumer);
        ngx_free(ka);
        return NULL;
    }

    return ka;
}


void
ngx_gdrive_kafka_admin_close(ngx_gdrive_kafka_admin_t *ka)
{
    ngx_gdrive_kafka_admin_release(ka);

    if (ka->producer) {
        rd_kafka_destroy(ka->producer);
    }

    rd_kafka_consumer_close(ka->consumer);
    rd_kafka_destroy(ka->consumer);
    ngx_free(ka);
}


/*
 * The worker's client configuration, less its log queue and callbacks:
 * librdkafka logs to stderr (nginx's error log) on its own, and errors
 * are logged there, as no error callback takes them.  What replay and
 * listing rest on comes after the operator's options.
 */

static rd_kafka_t *
ngx_gdrive_kafka_admin_client(ngx_log_t *log,
    ngx_http_gdrive_main_conf_t *gmcf, ngx_gdrive_kafka_admin_t *ka,
    rd_kafka_type_t type, const char *group, char *err, size_t size)
{
    rd_kafka_t       *rk;
    rd_kafka_conf_t  *conf;

    static char  *defaults[] = {
        "client.id", "nginx-gdrive-worker-dlq",
        "log.queue", "false",
        NULL
    };

    conf = ngx_gdrive_kafka_conf(log, gmcf, NULL, defaults);
    if (conf == NULL) {
        return NULL;
    }

    rd_kafka_conf_set_opaque(conf, ka);
    rd_kafka_conf_set_error_cb(conf, NULL);
    rd_kafka_conf_set_log_cb(conf, rd_kafka_log_print);

    if (type == RD_KAFKA_PRODUCER) {
        rd_kafka_conf_set(conf, "enable.idempotence", "true", err, size);
        rd_kafka_conf_set_dr_msg_cb(conf, ngx_gdrive_kafka_admin_dr);

    } else {
        rd_kafka_conf_set(conf, "enable.auto.commit", "false", err, size);
        rd_kafka_conf_set(conf, "enable.auto.offset.store", "false", err,
                          size);
        rd_kafka_conf_set(conf, "auto.offset.reset", "earliest", err, size);
        rd_kafka_conf_set(conf, "group.id", group, err, size);
    }

    err[0] = '\0';

    rk = rd_kafka_new(type, conf, err, size);

    if (rk == NULL) {
        rd_kafka_conf_destroy(conf);
    }

    return rk;
}


/*
 * The partitions of a topic: their number, or -1 when no metadata came;
 * *parts is calloc()ed, for the caller to free().
 */

int
ngx_gdrive_kafka_admin_partitions(ngx_gdrive_kafka_admin_t *ka,
    const char *topic, int32_t **parts, ngx_msec_t timeout)
{
    int                        i, n;
    rd_kafka_topic_t          *rkt;
    const rd_kafka_metadata_t *md;

    rkt = rd_kafka_topic_new(ka->consumer, topic, NULL);
    if (rkt == NULL) {
        return -1;
    }

    if (rd_kafka_metadata(ka->consumer, 0, rkt, &md, timeout)
        != RD_KAFKA_RESP_ERR_NO_ERROR)
    {
        rd_kafka_topic_destroy(rkt);
        return -1;
    }

    n = (md->topic_cnt == 1 && md->topics[0].err == 0)
        ? md->topics[0].partition_cnt : 0;

    /* out of memory: *parts is NULL, the caller says so */

    *parts = calloc(n + 1, sizeof(int32_t));

    for (i = 0; *parts && i < n; i++) {
        (*parts)[i] = md->topics[0].partitions[i].id;
    }

    rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);

    return n;
}


ngx_int_t
ngx_gdrive_kafka_admin_watermarks(ngx_gdrive_kafka_admin_t *ka,
    const char *topic, int32_t partition, int64_t *lo, int64_t *hi,
    ngx_msec_t timeout)
{
    if (rd_kafka_query_watermark_offsets(ka->consumer, topic, partition,
                                         lo, hi, timeout)
        != RD_KAFKA_RESP_ERR_NO_ERROR)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * Reads the partitions from the offsets given: an offset, or
 * NGX_GDRIVE_KAFKA_ADMIN_STORED, or NGX_GDRIVE_KAFKA_ADMIN_SKIP for a
 * partition left out.
 */

ngx_int_t
ngx_gdrive_kafka_admin_assign(ngx_gdrive_kafka_admin_t *ka,
    const char *topic, int32_t *parts, int64_t *offsets, int n)
{
    int                               i;
    rd_kafka_topic_partition_list_t  *assign;

    assign = rd_kafka_topic_partition_list_new(n + 1);
    if (assign == NULL) {
        return NGX_ERROR;
    }

    for (i = 0; i < n; i++) {
        if (offsets[i] == NGX_GDRIVE_KAFKA_ADMIN_SKIP) {
            continue;
        }

        rd_kafka_topic_partition_list_add(assign, topic, parts[i])->offset =
                      (offsets[i] == NGX_GDRIVE_KAFKA_ADMIN_STORED)
                      ? RD_KAFKA_OFFSET_STORED : offsets[i];
    }

    if (assign->cnt) {
        rd_kafka_assign(ka->consumer, assign);
    }

    rd_kafka_topic_partition_list_destroy(assign);

    return NGX_OK;
}


/* NGX_OK: a record in "rec"; NGX_AGAIN: none came, or a read failed */

ngx_int_t
ngx_gdrive_kafka_admin_read(ngx_gdrive_kafka_admin_t *ka,
    ngx_gdrive_kafka_record_t *rec, ngx_msec_t timeout)
{
    rd_kafka_message_t  *msg;

    ngx_gdrive_kafka_admin_release(ka);

    msg = rd_kafka_consumer_poll(ka->consumer, (int) timeout);

    if (msg == NULL) {
        return NGX_AGAIN;
    }

    if (msg->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        rd_kafka_message_destroy(msg);
        return NGX_AGAIN;
    }

    ka->msg = msg;

    rec->partition = msg->partition;
    rec->offset = msg->offset;
    rec->timestamp = rd_kafka_message_timestamp(msg, NULL);
    rec->key = msg->key;
    rec->key_len = msg->key_len;
    rec->value = msg->payload;
    rec->len = msg->len;

    return NGX_OK;
}


static void
ngx_gdrive_kafka_admin_release(ngx_gdrive_kafka_admin_t *ka)
{
    if (ka->msg) {
        rd_kafka_message_destroy(ka->msg);
        ka->msg = NULL;
    }
}


/* the i-th header of the record just read; NGX_DONE past the last */

ngx_int_t
ngx_gdrive_kafka_admin_header(ngx_gdrive_kafka_admin_t *ka, size_t i,
    const char **name, const void **value, size_t *len)
{
    rd_kafka_headers_t  *hdrs;

    if (ka->msg == NULL
        || rd_kafka_message_headers(ka->msg, &hdrs)
           != RD_KAFKA_RESP_ERR_NO_ERROR
        || rd_kafka_header_get_all(hdrs, i, name, value, len)
           != RD_KAFKA_RESP_ERR_NO_ERROR)
    {
        return NGX_DONE;
    }

    return NGX_OK;
}


/*
 * Produces the record just read to "topic", with its key, its value and
 * its headers but those whose names start with one of "skip" (a NULL
 * ended list), and one header more.  Its delivery is counted by flush().
 */

ngx_int_t
ngx_gdrive_kafka_admin_forward(ngx_gdrive_kafka_admin_t *ka,
    const char *topic, const char **skip, const char *name,
    const char *value)
{
    size_t                i, hlen;
    ngx_uint_t            j;
    const char           *hname;
    const void           *hval;
    rd_kafka_headers_t   *orig, *hdrs;
    rd_kafka_message_t   *msg;
    rd_kafka_resp_err_t   rc;

    msg = ka->msg;

    if (msg == NULL || ka->producer == NULL) {
        return NGX_ERROR;
    }

    hdrs = rd_kafka_headers_new(8);

    if (rd_kafka_message_headers(msg, &orig) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        for (i = 0;
             rd_kafka_header_get_all(orig, i, &hname, &hval, &hlen)
             == RD_KAFKA_RESP_ERR_NO_ERROR;
             i++)
        {
            for (j = 0; skip[j]; j++) {
                if (ngx_strncmp(hname, skip[j], ngx_strlen(skip[j])) == 0) {
                    break;
                }
            }

            if (skip[j] == NULL) {
                rd_kafka_header_add(hdrs, hname, -1, hval, hlen);
            }
        }
    }

    rd_kafka_header_add(hdrs, name, -1, value, -1);

    rc = rd_kafka_producev(ka->producer,
                           RD_KAFKA_V_TOPIC(topic),
                           RD_KAFKA_V_KEY(msg->key, msg->key_len),
                           RD_KAFKA_V_VALUE(msg->payload, msg->len),
                           RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                           RD_KAFKA_V_HEADERS(hdrs),
                           RD_KAFKA_V_OPAQUE(ka),
                           RD_KAFKA_V_END);

    if (rc != RD_KAFKA_RESP_ERR_NO_ERROR) {
        rd_kafka_headers_destroy(hdrs);
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* waits for what forward() produced; counts what was and was not acked */

void
ngx_gdrive_kafka_admin_flush(ngx_gdrive_kafka_admin_t *ka,
    ngx_msec_t timeout, ngx_uint_t *delivered, ngx_uint_t *failed)
{
    if (ka->producer) {
        rd_kafka_flush(ka->producer, (int) timeout);
    }

    *delivered = ka->delivered;
    *failed = ka->failed;
}


static void
ngx_gdrive_kafka_admin_dr(rd_kafka_t *rk, const rd_kafka_message_t *msg,
    void *opaque)
{
    ngx_gdrive_kafka_admin_t *ka = msg->_private;

    /* served by rd_kafka_flush() in the caller's own thread */

    if (msg->err) {
        ka->failed++;

    } else {
        ka->delivered++;
    }
}


/*
 * Commits the group's position: the offsets given, those of
 * NGX_GDRIVE_KAFKA_ADMIN_SKIP left out.  NULL when it is committed (or
 * nothing was to be), else librdkafka's word for what went wrong.
 */

const char *
ngx_gdrive_kafka_admin_commit(ngx_gdrive_kafka_admin_t *ka,
    const char *topic, int32_t *parts, int64_t *offsets, int n)
{
    int                               i;
    rd_kafka_resp_err_t               rc;
    rd_kafka_topic_partition_list_t  *commit;

    commit = rd_kafka_topic_partition_list_new(n + 1);
    if (commit == NULL) {
        return "out of memory";
    }

    for (i = 0; i < n; i++) {
        if (offsets[i] != NGX_GDRIVE_KAFKA_ADMIN_SKIP) {
            rd_kafka_topic_partition_list_add(commit, topic, parts[i])
                ->offset = offsets[i];
        }
    }

    rc = commit->cnt ? rd_kafka_commit(ka->consumer, commit, 0)
                     : RD_KAFKA_RESP_ERR_NO_ERROR;

    rd_kafka_topic_partition_list_destroy(commit);

    return rc ? rd_kafka_err2str(rc) : NULL;
}
