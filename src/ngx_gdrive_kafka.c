
/*
 * nginx-gdrive-worker: Kafka on nginx's event loop.
 *
 * Client layer: librdkafka runs its own threads; this file is the only
 * place that talks to them.  Every queue the worker serves signals
 * readiness by writing to a pipe (rd_kafka_queue_io_event_enable) whose
 * read end is an nginx connection; the read handler drains the queue with
 * zero timeouts.  Delivery reports, errors and librdkafka's own log lines
 * are all served there, on the worker's thread, so callbacks may touch
 * nginx structures.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_gdrive.h"


static ngx_int_t ngx_gdrive_kafka_conf_set(ngx_log_t *log,
    rd_kafka_conf_t *conf, const char *name, const char *value);
static void ngx_gdrive_kafka_read_handler(ngx_event_t *rev);
static void ngx_gdrive_kafka_dr_cb(rd_kafka_t *rk,
    const rd_kafka_message_t *msg, void *opaque);
static void ngx_gdrive_kafka_error_cb(rd_kafka_t *rk, int err,
    const char *reason, void *opaque);
static void ngx_gdrive_kafka_log_cb(const rd_kafka_t *rk, int level,
    const char *fac, const char *buf);


/* librdkafka's syslog levels to nginx's */
static ngx_uint_t  ngx_gdrive_kafka_log_levels[] = {
    NGX_LOG_ALERT, NGX_LOG_ALERT, NGX_LOG_CRIT, NGX_LOG_ERR,
    NGX_LOG_WARN, NGX_LOG_NOTICE, NGX_LOG_INFO, NGX_LOG_DEBUG
};


/*
 * The configuration every client of the worker shares: brokers, the
 * operator's gdrive_kafka_option lines (last, so that they win), and the
 * callbacks that route everything to the event loop.
 */

rd_kafka_conf_t *
ngx_gdrive_kafka_conf(ngx_log_t *log, ngx_http_gdrive_main_conf_t *gmcf,
    ngx_gdrive_kafka_t *k, char **defaults)
{
    u_char           *brokers;
    ngx_uint_t        i;
    ngx_keyval_t     *kv;
    rd_kafka_conf_t  *conf;

    conf = rd_kafka_conf_new();
    if (conf == NULL) {
        return NULL;
    }

    brokers = ngx_alloc(gmcf->kafka_brokers.len + 1, log);
    if (brokers == NULL) {
        goto failed;
    }

    ngx_memcpy(brokers, gmcf->kafka_brokers.data, gmcf->kafka_brokers.len);
    brokers[gmcf->kafka_brokers.len] = '\0';

    if (ngx_gdrive_kafka_conf_set(log, conf, "bootstrap.servers",
                                  (char *) brokers)
        != NGX_OK)
    {
        ngx_free(brokers);
        goto failed;
    }

    ngx_free(brokers);

    /* small requests go out at once: HTTP clients wait for the acks */

    if (ngx_gdrive_kafka_conf_set(log, conf, "client.id",
                                  "nginx-gdrive-worker") != NGX_OK
        || ngx_gdrive_kafka_conf_set(log, conf, "log.queue", "true")
           != NGX_OK
        || ngx_gdrive_kafka_conf_set(log, conf, "socket.nagle.disable",
                                     "true") != NGX_OK)
    {
        goto failed;
    }

    for (i = 0; defaults && defaults[i]; i += 2) {
        if (ngx_gdrive_kafka_conf_set(log, conf, defaults[i], defaults[i + 1])
            != NGX_OK)
        {
            goto failed;
        }
    }

    if (gmcf->kafka_options) {
        kv = gmcf->kafka_options->elts;

        for (i = 0; i < gmcf->kafka_options->nelts; i++) {
            /* checked at configuration time; values are NUL-terminated */
            if (ngx_gdrive_kafka_conf_set(log, conf, (char *) kv[i].key.data,
                                          (char *) kv[i].value.data)
                != NGX_OK)
            {
                goto failed;
            }
        }
    }

    rd_kafka_conf_set_opaque(conf, k);
    rd_kafka_conf_set_error_cb(conf, ngx_gdrive_kafka_error_cb);
    rd_kafka_conf_set_log_cb(conf, ngx_gdrive_kafka_log_cb);

    return conf;

failed:

    rd_kafka_conf_destroy(conf);

    return NULL;
}


static ngx_int_t
ngx_gdrive_kafka_conf_set(ngx_log_t *log, rd_kafka_conf_t *conf,
    const char *name, const char *value)
{
    char  errstr[512];

    if (rd_kafka_conf_set(conf, name, value, errstr, sizeof(errstr))
        != RD_KAFKA_CONF_OK)
    {
        ngx_log_error(NGX_LOG_EMERG, log, 0,
                      "gdrive: kafka property \"%s\": %s", name, errstr);
        return NGX_ERROR;
    }

    return NGX_OK;
}


ngx_gdrive_kafka_t *
ngx_gdrive_kafka_producer(ngx_cycle_t *cycle,
    ngx_http_gdrive_main_conf_t *gmcf)
{
    char                 errstr[512], value[32];
    ngx_gdrive_kafka_t  *k;
    rd_kafka_conf_t     *conf;

    /*
     * A batch lingers 1 ms, not librdkafka's 5 ms: an HTTP client waits
     * for the acknowledgement.  Measured with make bench: 2.5 times the
     * acknowledged triggers per second at the same CPU per trigger.
     */
    static char  *defaults[] = { "linger.ms", "1", NULL };

    k = ngx_pcalloc(cycle->pool, sizeof(ngx_gdrive_kafka_t));
    if (k == NULL) {
        return NULL;
    }

    k->log = cycle->log;
    k->pipe[0] = -1;
    k->pipe[1] = -1;

    conf = ngx_gdrive_kafka_conf(cycle->log, gmcf, k, defaults);
    if (conf == NULL) {
        return NULL;
    }

    /*
     * 202 means "acknowledged by all in-sync replicas": idempotence gives
     * acks=all and retries without duplicates or reordering.
     */

    ngx_sprintf((u_char *) value, "%M%Z", gmcf->kafka_delivery_timeout);

    if (ngx_gdrive_kafka_conf_set(cycle->log, conf, "enable.idempotence",
                                  "true") != NGX_OK
        || ngx_gdrive_kafka_conf_set(cycle->log, conf, "message.timeout.ms",
                                     value) != NGX_OK)
    {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }

    rd_kafka_conf_set_dr_msg_cb(conf, ngx_gdrive_kafka_dr_cb);

    k->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));

    if (k->rk == NULL) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                      "gdrive: kafka producer not created: %s", errstr);
        rd_kafka_conf_destroy(conf);
        return NULL;
    }

    if (ngx_gdrive_kafka_watch(k, rd_kafka_queue_get_main(k->rk))
        != NGX_OK)
    {
        ngx_gdrive_kafka_destroy(k, 0);
        return NULL;
    }

    return k;
}


/*
 * Makes queue signal the event loop.  The queue's reference is kept and
 * released by ngx_gdrive_kafka_destroy().
 */

ngx_int_t
ngx_gdrive_kafka_watch(ngx_gdrive_kafka_t *k, rd_kafka_queue_t *queue)
{
    ngx_event_t       *rev;
    ngx_connection_t  *c;

    k->queue = queue;

    if (rd_kafka_set_log_queue(k->rk, NULL) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        ngx_log_error(NGX_LOG_ALERT, k->log, 0,
                      "gdrive: kafka log queue not set");
        return NGX_ERROR;
    }

    if (pipe(k->pipe) == -1) {
        ngx_log_error(NGX_LOG_ALERT, k->log, ngx_errno, "pipe() failed");
        return NGX_ERROR;
    }

    /* librdkafka's threads must never block on a full pipe */

    if (ngx_nonblocking(k->pipe[0]) == -1
        || ngx_nonblocking(k->pipe[1]) == -1)
    {
        ngx_log_error(NGX_LOG_ALERT, k->log, ngx_errno,
                      ngx_nonblocking_n " failed");
        return NGX_ERROR;
    }

    c = ngx_get_connection(k->pipe[0], k->log);
    if (c == NULL) {
        return NGX_ERROR;
    }

    k->conn = c;
    c->data = k;

    rev = c->read;
    rev->handler = ngx_gdrive_kafka_read_handler;
    rev->log = k->log;

    if (ngx_add_event(rev, NGX_READ_EVENT, 0) != NGX_OK) {
        return NGX_ERROR;
    }

    rd_kafka_queue_io_event_enable(queue, k->pipe[1], "1", 1);

    /* whatever was queued before the pipe existed */
    ngx_post_event(rev, &ngx_posted_events);

    return NGX_OK;
}


static void
ngx_gdrive_kafka_read_handler(ngx_event_t *rev)
{
    u_char               buf[256];
    ssize_t              n;
    ngx_connection_t    *c;
    ngx_gdrive_kafka_t  *k;

    c = rev->data;
    k = c->data;

    /*
     * Empty the pipe first: librdkafka writes only when a queue turns
     * non-empty, so anything queued after this read writes again.
     */

    do {
        n = read(k->pipe[0], buf, sizeof(buf));
    } while (n > 0);

    if (n == -1 && ngx_errno != NGX_EAGAIN) {
        ngx_log_error(NGX_LOG_ALERT, k->log, ngx_errno,
                      "gdrive: kafka event pipe read() failed");
    }

    if (k->serve) {
        k->serve(k);

    } else {
        while (rd_kafka_poll(k->rk, 0) > 0) { /* void */ }
    }

    if (ngx_handle_read_event(rev, 0) != NGX_OK) {
        ngx_log_error(NGX_LOG_ALERT, k->log, 0,
                      "gdrive: kafka event pipe not watched");
    }
}


ngx_int_t
ngx_gdrive_kafka_produce(ngx_gdrive_kafka_t *k, rd_kafka_topic_t *rkt,
    ngx_str_t *key, u_char *value, size_t len, ngx_uint_t free_value,
    rd_kafka_headers_t *headers, ngx_gdrive_kafka_dr_t *dr)
{
    rd_kafka_resp_err_t  err;

    if (k->fatal) {
        return RD_KAFKA_RESP_ERR__FATAL;
    }

    err = rd_kafka_producev(k->rk,
                            RD_KAFKA_V_RKT(rkt),
                            RD_KAFKA_V_KEY(key->data, key->len),
                            RD_KAFKA_V_VALUE(value, len),
                            RD_KAFKA_V_MSGFLAGS(free_value
                                                ? RD_KAFKA_MSG_F_FREE
                                                : RD_KAFKA_MSG_F_COPY),
                            RD_KAFKA_V_HEADERS(headers),
                            RD_KAFKA_V_OPAQUE(dr),
                            RD_KAFKA_V_END);

    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        ngx_log_error(NGX_LOG_WARN, k->log, 0,
                      "gdrive: kafka produce to \"%s\" failed: %s",
                      rd_kafka_topic_name(rkt), rd_kafka_err2str(err));
    }

    return err;
}


static void
ngx_gdrive_kafka_dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *msg,
    void *opaque)
{
    ngx_gdrive_kafka_dr_t  *dr;

    dr = msg->_private;

    if (dr == NULL) {
        return;
    }

    dr->handler(dr->data, msg->err, msg->partition, msg->offset);
}


static void
ngx_gdrive_kafka_error_cb(rd_kafka_t *rk, int err, const char *reason,
    void *opaque)
{
    char                 errstr[512];
    ngx_gdrive_kafka_t  *k = opaque;

    if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN) {
        k->brokers_down = 1;
        k->brokers_down_since = ngx_current_msec;

    } else if (err == RD_KAFKA_RESP_ERR__FATAL) {
        k->fatal = 1;
        err = rd_kafka_fatal_error(rk, errstr, sizeof(errstr));
        ngx_log_error(NGX_LOG_ALERT, k->log, 0,
                      "gdrive: kafka client %s failed for good: %s: %s",
                      rd_kafka_name(rk), rd_kafka_err2name(err), errstr);
        return;
    }

    ngx_log_error(NGX_LOG_ERR, k->log, 0, "gdrive: kafka %s: %s: %s",
                  rd_kafka_name(rk), rd_kafka_err2name(err), reason);
}


static void
ngx_gdrive_kafka_log_cb(const rd_kafka_t *rk, int level, const char *fac,
    const char *buf)
{
    ngx_gdrive_kafka_t  *k;

    k = rd_kafka_opaque(rk);

    if (level < 0) {
        level = 0;

    } else if (level > 7) {
        level = 7;
    }

    ngx_log_error(ngx_gdrive_kafka_log_levels[level], k->log, 0,
                  "gdrive: kafka %s %s: %s", rd_kafka_name(rk), fac, buf);
}


rd_kafka_topic_t *
ngx_gdrive_kafka_topic(ngx_gdrive_kafka_t *k, ngx_str_t *name)
{
    u_char            *z;
    rd_kafka_topic_t  *rkt;

    z = ngx_alloc(name->len + 1, k->log);
    if (z == NULL) {
        return NULL;
    }

    ngx_cpystrn(z, name->data, name->len + 1);

    rkt = rd_kafka_topic_new(k->rk, (char *) z, NULL);

    if (rkt == NULL) {
        ngx_log_error(NGX_LOG_ALERT, k->log, 0,
                      "gdrive: kafka topic \"%V\": %s", name,
                      rd_kafka_err2str(rd_kafka_last_error()));
    }

    ngx_free(z);

    return rkt;
}


/* as far as the client knows: it says so when every broker is down */

ngx_int_t
ngx_gdrive_kafka_brokers_up(ngx_gdrive_kafka_t *k)
{
    return !k->brokers_down && !k->fatal;
}


/*
 * Called from exit_process only, when the event loop has ended: the
 * flush waits a bounded time for reports of messages still in flight.
 */

void
ngx_gdrive_kafka_destroy(ngx_gdrive_kafka_t *k, ngx_msec_t flush)
{
    if (k->rk && flush) {
        rd_kafka_flush(k->rk, (int) flush);
    }

    if (k->queue) {
        rd_kafka_queue_io_event_enable(k->queue, -1, NULL, 0);
        rd_kafka_queue_destroy(k->queue);
        k->queue = NULL;
    }

    if (k->rk) {
        rd_kafka_destroy(k->rk);
        k->rk = NULL;
    }

    if (k->conn) {
        ngx_close_connection(k->conn);
        k->conn = NULL;
        k->pipe[0] = -1;
    }

    if (k->pipe[0] != -1) {
        close(k->pipe[0]);
    }

    if (k->pipe[1] != -1) {
        close(k->pipe[1]);
    }

    k->pipe[0] = -1;
    k->pipe[1] = -1;
}
