
/*
 * nginx-gdrive-worker: Kafka on nginx's event loop.
 *
 * Client layer: librdkafka runs its own threads; this file is the only
 * place that talks to them on the event loop (the job engine's results,
 * dead letters, offsets and lag go through its functions), and, with
 * ngx_gdrive_kafka_admin.c for the DLQ tools' blocking client in the
 * thread pool, the only one that uses librdkafka at all.  Every
 * queue the worker serves signals readiness by writing to a pipe
 * (rd_kafka_queue_io_event_enable) whose read end is an nginx connection;
 * the read handler drains the queue with zero timeouts.  Delivery
 * reports, errors and librdkafka's own log lines are all served there, on
 * the worker's thread, so callbacks may touch nginx structures.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <pthread.h>

#include <jansson.h>

#include "ngx_gdrive.h"
#include "ngx_gdrive_kafka.h"


/*
 * How long a consumer's rd_kafka_destroy() is waited for.  librdkafka 2.0
 * can keep a broker thread of a consumer for good once the cluster behind
 * its brokers' addresses was replaced (a toppar reference is not given
 * back; librdkafka issue 4674), and its destroy() waits for that thread
 * forever: the worker process would never exit.
 */
#define NGX_GDRIVE_KAFKA_END_TIMEOUT  10


typedef struct {
    pthread_mutex_t          mutex;
    pthread_cond_t           cond;
    rd_kafka_t              *rk;
    int                      flags;
    ngx_uint_t               done;
    ngx_uint_t               refs;     /* the waiter's and the thread's */
} ngx_gdrive_kafka_end_t;


static ngx_int_t ngx_gdrive_kafka_conf_set(ngx_log_t *log,
    rd_kafka_conf_t *conf, const char *name, const char *value);
static void ngx_gdrive_kafka_read_handler(ngx_event_t *rev);
static void ngx_gdrive_kafka_dr_cb(rd_kafka_t *rk,
    const rd_kafka_message_t *msg, void *opaque);
static void ngx_gdrive_kafka_error_cb(rd_kafka_t *rk, int err,
    const char *reason, void *opaque);
static int ngx_gdrive_kafka_stats_cb(rd_kafka_t *rk, char *json,
    size_t len, void *opaque);
static void ngx_gdrive_kafka_count_partitions(ngx_gdrive_kafka_t *k,
    json_t *root);
static void ngx_gdrive_kafka_log_cb(const rd_kafka_t *rk, int level,
    const char *fac, const char *buf);
static ngx_int_t ngx_gdrive_kafka_start(ngx_gdrive_kafka_t *k,
    rd_kafka_type_t type, rd_kafka_conf_t *conf);
static void ngx_gdrive_kafka_consumer_serve(ngx_gdrive_kafka_t *k);
static void ngx_gdrive_kafka_rebalance_cb(rd_kafka_t *rk,
    rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t *parts,
    void *opaque);
static void ngx_gdrive_kafka_rebalance(ngx_gdrive_kafka_t *k,
    rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t *parts,
    int cooperative);
static void ngx_gdrive_kafka_revoke_now(ngx_gdrive_kafka_t *k,
    rd_kafka_topic_partition_list_t *parts, int cooperative);
static void ngx_gdrive_kafka_revoke_finish(ngx_gdrive_kafka_t *k);
static void ngx_gdrive_kafka_drain_handler(ngx_event_t *ev);
static ngx_uint_t ngx_gdrive_kafka_revoking(ngx_gdrive_kafka_t *k,
    int32_t partition);
static void ngx_gdrive_kafka_tick(ngx_event_t *ev);
static void ngx_gdrive_kafka_end(ngx_gdrive_kafka_t *k, int flags);
static void *ngx_gdrive_kafka_end_thread(void *data);
static void ngx_gdrive_kafka_end_release(ngx_gdrive_kafka_end_t *end);


/* a client left to its threads: the process must end without exit() */
static ngx_uint_t  ngx_gdrive_kafka_abandoned;


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
    u_char            client_id[NGX_MAXHOSTNAMELEN];
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

    /*
     * The client is named after the instance (its members' ids start so,
     * and brokers log it); small requests go out at once: HTTP clients
     * wait for the acks.
     */

    ngx_cpystrn(client_id, gmcf->instance.data,
                ngx_min(gmcf->instance.len + 1, sizeof(client_id)));

    if (ngx_gdrive_kafka_conf_set(log, conf, "client.id", (char *) client_id)
        != NGX_OK
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
    ngx_http_gdrive_main_conf_t *gmcf, ngx_uint_t output)
{
    char                 value[32];
    ngx_gdrive_kafka_t  *k;
    rd_kafka_conf_t     *conf;

    /*
     * HTTP clients wait for the acknowledgement, so a batch lingers
     * 0.25 ms, not librdkafka's 5 ms; and at most two requests are in
     * flight on a broker connection, not five: what comes while they are
     * out waits and goes in the next, larger, request.  librdkafka sends
     * one partition per ProduceRequest, so under load five in flight
     * meant many small requests, each costing a wakeup of librdkafka's
     * broker thread and of the worker.  Measured with make bench, 64
     * connections, 4 partitions: 1 ms and 5 in flight gave 35k
     * acknowledged triggers/s; 0.25 ms and 2 in flight give 63-72k at the
     * same CPU per trigger.  One in flight batches still more with few
     * partitions, but with 8 its p99 reached 50 ms.
     */
    static char  *defaults[] = { "linger.ms", "0.25",
                                 "max.in.flight", "2",
                                 "statistics.interval.ms", "5000", NULL };

    /*
     * The job engine's output (results, dead letters, a folder's child
     * triggers) has its own producer: nobody waits for those records, and
     * sent alone each cost a wakeup of librdkafka's broker thread and of
     * the worker, plus a request and its response.  Measured with make
     * bench (python mode, 4 KiB files, one worker): with every record on
     * the triggers' producer the broker thread took a quarter of the
     * worker's CPU, 0.58-0.68 ms per file in all; lingering 5 ms, 0.42;
     * 20 ms, 0.36.  The linger is gdrive_kafka_output_linger's, set after
     * the operator's gdrive_kafka_option lines; it needs no statistics.
     */

    static char  *output_defaults[] = { "max.in.flight", "2", NULL };

    k = ngx_pcalloc(cycle->pool, sizeof(ngx_gdrive_kafka_t));
    if (k == NULL) {
        return NULL;
    }

    k->log = cycle->log;
    k->pipe[0] = -1;
    k->pipe[1] = -1;

    if (!output) {
        /* the trigger topic's partitions are counted from the statistics */
        k->counted = ngx_pcalloc(cycle->pool, gmcf->kafka_topic.len + 1);
        if (k->counted == NULL) {
            return NULL;
        }

        ngx_memcpy(k->counted, gmcf->kafka_topic.data,
                   gmcf->kafka_topic.len);
    }

    conf = ngx_gdrive_kafka_conf(cycle->log, gmcf, k,
                                 output ? output_defaults : defaults);
    if (conf == NULL) {
        return NULL;
    }

    if (output) {
        *ngx_snprintf((u_char *) value, sizeof(value) - 1, "%M",
                      gmcf->kafka_output_linger) = '\0';

        if (ngx_gdrive_kafka_conf_set(cycle->log, conf, "linger.ms", value)
            != NGX_OK)
        {
            rd_kafka_conf_destroy(conf);
            return NULL;
        }
    }

    /*
     * 202 means "acknowledged by all in-sync replicas": idempotence gives
     * acks=all and retries without duplicates or reordering.
     */

    *ngx_snprintf((u_char *) value, sizeof(value) - 1, "%M",
                  gmcf->kafka_delivery_timeout) = '\0';

    if (ngx_gdrive_kafka_conf_set(cycle->log, conf, "enable.idempotence",
                                  "true") != NGX_OK
        || ngx_gdrive_kafka_conf_set(cycle->log, conf, "message.timeout.ms",
                                     value) != NGX_OK)
    {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }

    rd_kafka_conf_set_dr_msg_cb(conf, ngx_gdrive_kafka_dr_cb);
    rd_kafka_conf_set_stats_cb(conf, ngx_gdrive_kafka_stats_cb);

    if (ngx_gdrive_kafka_start(k, RD_KAFKA_PRODUCER, conf) != NGX_OK) {
        return NULL;
    }

    return k;
}


/* the client, its queue watched by the event loop; conf is consumed */

static ngx_int_t
ngx_gdrive_kafka_start(ngx_gdrive_kafka_t *k, rd_kafka_type_t type,
    rd_kafka_conf_t *conf)
{
    char               errstr[512];
    rd_kafka_queue_t  *queue;

    k->rk = rd_kafka_new(type, conf, errstr, sizeof(errstr));

    if (k->rk == NULL) {
        ngx_log_error(NGX_LOG_EMERG, k->log, 0,
                      "gdrive: kafka %s not created: %s",
                      type == RD_KAFKA_PRODUCER ? "producer" : "consumer",
                      errstr);
        rd_kafka_conf_destroy(conf);
        return NGX_ERROR;
    }

    if (type == RD_KAFKA_CONSUMER) {
        /* one queue, one pipe: rebalances, errors, logs come with messages */
        rd_kafka_poll_set_consumer(k->rk);
        queue = rd_kafka_queue_get_consumer(k->rk);

    } else {
        queue = rd_kafka_queue_get_main(k->rk);
    }

    if (ngx_gdrive_kafka_watch(k, queue) != NGX_OK) {
        ngx_gdrive_kafka_destroy(k, 0);
        return NGX_ERROR;
    }

    return NGX_OK;
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
     * non-empty, so anything queued after this read writes again.  A read
     * that did not fill the buffer emptied the pipe: no second read to
     * learn so.
     */

    do {
        n = read(k->pipe[0], buf, sizeof(buf));
    } while (n == (ssize_t) sizeof(buf));

    /* level-triggered methods (poll, select) must not drop the event */
    rev->ready = 0;

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


/*
 * A produce error that no retry mends: the record is too large or
 * invalid for the topic, or the worker may not write to it.
 */

ngx_uint_t
ngx_gdrive_kafka_permanent(rd_kafka_resp_err_t err)
{
    switch (err) {

    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_INVALID_MSG_SIZE:
    case RD_KAFKA_RESP_ERR_INVALID_RECORD:
    case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_POLICY_VIOLATION:
    case RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION:
        return 1;

    default:
        return 0;
    }
}


/* a record the topic takes only smaller */

ngx_uint_t
ngx_gdrive_kafka_too_large(rd_kafka_resp_err_t err)
{
    return err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE
           || err == RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE
           || err == RD_KAFKA_RESP_ERR_INVALID_MSG_SIZE;
}


rd_kafka_resp_err_t
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

        /*
         * A client in this state takes nothing more.  The worker exits
         * gracefully (jobs are redelivered, waiting clients get 503) and
         * the master starts a fresh one with fresh clients.
         */

        ngx_log_error(NGX_LOG_ALERT, k->log, 0,
                      "gdrive: kafka client %s failed for good: %s: %s; "
                      "the worker process restarts",
                      rd_kafka_name(rk), rd_kafka_err2name(err), errstr);
        ngx_quit = 1;
        return;
    }

    ngx_log_error(NGX_LOG_ERR, k->log, 0, "gdrive: kafka %s: %s: %s",
                  rd_kafka_name(rk), rd_kafka_err2name(err), reason);
}


/*
 * The producer's statistics say which brokers it is connected to: "all
 * brokers down" has no "up again" event of its own, so gdrive_health
 * learns of a broker's return here, within statistics.interval.ms.  They
 * also give the trigger topic's partitions as the producer's metadata
 * has them, refreshed by librdkafka's own requests: how many there are
 * is learned without a metadata request from the event loop.
 */

static int
ngx_gdrive_kafka_stats_cb(rd_kafka_t *rk, char *json, size_t len,
    void *opaque)
{
    ngx_gdrive_kafka_t *k = opaque;

    json_t        *root, *brokers, *b;
    ngx_uint_t     up, known;
    const char    *name, *source, *state;
    json_error_t   jerr;

    root = json_loadb(json, len, 0, &jerr);
    brokers = json_object_get(root, "brokers");

    if (!json_is_object(brokers)) {
        json_decref(root);
        return 0;
    }

    up = 0;
    known = 0;

    json_object_foreach(brokers, name, b) {
        source = json_string_value(json_object_get(b, "source"));
        state = json_string_value(json_object_get(b, "state"));

        /* the "internal" and "logical" brokers are no connections */

        if (source == NULL || state == NULL
            || (ngx_strcmp(source, "configured") != 0
                && ngx_strcmp(source, "learned") != 0))
        {
            continue;
        }

        known++;

        if (ngx_strcmp(state, "UP") == 0) {
            up++;
        }
    }

    ngx_gdrive_kafka_count_partitions(k, root);

    json_decref(root);

    k->brokers_known = known;
    k->brokers_seen_up = up;

    if (up) {
        if (k->brokers_down) {
            ngx_log_error(NGX_LOG_NOTICE, k->log, 0,
                          "gdrive: kafka %s: %ui of %ui brokers up again",
                          rd_kafka_name(rk), up, known);
        }

        k->brokers_down = 0;

    } else if (known && !k->brokers_down) {
        k->brokers_down = 1;
        k->brokers_down_since = ngx_current_msec;
    }

    /* 0: librdkafka frees the JSON */
    return 0;
}


/*
 * "topics": {"<name>": {"partitions": {"0": {..}, .., "-1": {..}}}}: the
 * partitions of the metadata, and -1, librdkafka's "unassigned" one.  A
 * topic not (yet) in the metadata keeps the count it had.
 */

static void
ngx_gdrive_kafka_count_partitions(ngx_gdrive_kafka_t *k, json_t *root)
{
    json_t      *parts, *p;
    ngx_int_t    id;
    ngx_uint_t   n;
    const char  *key;

    if (k->counted == NULL) {
        return;
    }

    parts = json_object_get(json_object_get(json_object_get(root, "topics"),
                                            k->counted),
                            "partitions");

    if (!json_is_object(parts)) {
        return;
    }

    n = 0;

    json_object_foreach(parts, key, p) {
        id = ngx_atoi((u_char *) key, ngx_strlen(key));

        if (id >= 0) {
            n++;
        }
    }

    if (n) {
        k->topic_partitions = n;
    }
}


/* the trigger topic's partitions, as the producer last learned: 0 unknown */

ngx_uint_t
ngx_gdrive_kafka_partitions(ngx_gdrive_kafka_t *k)
{
    return k ? k->topic_partitions : 0;
}


/* the consumer's member id in its group, cut to fit; "" before it joins */

void
ngx_gdrive_kafka_member_id(ngx_gdrive_kafka_t *k, u_char *buf, size_t size)
{
    char  *id;

    buf[0] = '\0';

    if (k == NULL || k->rk == NULL || k->closed) {
        return;
    }

    id = rd_kafka_memberid(k->rk);

    if (id == NULL) {
        return;
    }

    ngx_cpystrn(buf, (u_char *) id, size);

    rd_kafka_mem_free(k->rk, id);
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


/*
 * The consumer: one group member per worker process.  Offsets are stored
 * by the job engine only (enable.auto.offset.store=false) and committed by
 * librdkafka every gdrive_kafka_commit_interval and on revocation.
 */

ngx_gdrive_kafka_t *
ngx_gdrive_kafka_consumer(ngx_cycle_t *cycle,
    ngx_http_gdrive_main_conf_t *gmcf, ngx_gdrive_consumer_cb_t *cb)
{
    char                             *group, *topic;
    char                              poll_ms[32], session_ms[32];
    char                              fetch_min[32], fetch_wait[32];
    char                              commit_ms[32];
    ngx_gdrive_kafka_t               *k;
    rd_kafka_conf_t                  *conf;
    rd_kafka_resp_err_t               err;
    rd_kafka_topic_partition_list_t  *topics;

    char  *defaults[] = {
        "auto.offset.reset", "earliest",
        "max.poll.interval.ms", poll_ms,
        "session.timeout.ms", session_ms,
        "fetch.min.bytes", fetch_min,
        "fetch.wait.max.ms", fetch_wait,
        "auto.commit.interval.ms", commit_ms,
        NULL
    };

    *ngx_snprintf((u_char *) poll_ms, sizeof(poll_ms) - 1, "%M",
                  gmcf->kafka_max_poll_interval) = '\0';
    *ngx_snprintf((u_char *) session_ms, sizeof(session_ms) - 1, "%M",
                  gmcf->kafka_session_timeout) = '\0';
    *ngx_snprintf((u_char *) fetch_min, sizeof(fetch_min) - 1, "%ui",
                  gmcf->kafka_fetch_min_bytes) = '\0';
    *ngx_snprintf((u_char *) fetch_wait, sizeof(fetch_wait) - 1, "%M",
                  gmcf->kafka_fetch_max_wait) = '\0';
    ngx_sprintf((u_char *) commit_ms, "%M%Z", gmcf->kafka_commit_interval);

    k = ngx_pcalloc(cycle->pool, sizeof(ngx_gdrive_kafka_t));
    if (k == NULL) {
        return NULL;
    }

    k->log = cycle->log;
    k->pipe[0] = -1;
    k->pipe[1] = -1;
    k->cb = *cb;
    k->max_poll = gmcf->kafka_max_poll_records;

    /*
     * A revoke waits for its partitions' running jobs at most this long:
     * the grace period of a shutdown, and never more than half of what
     * librdkafka gives the unassign (max.poll.interval.ms) before it
     * leaves the group on its own.
     */

    k->drain_timeout = ngx_min(gmcf->shutdown_timeout,
                               gmcf->kafka_max_poll_interval / 2);

    group = ngx_pcalloc(cycle->pool, gmcf->kafka_group.len + 1);
    topic = ngx_pcalloc(cycle->pool, gmcf->kafka_topic.len + 1);
    if (group == NULL || topic == NULL) {
        return NULL;
    }

    ngx_memcpy(group, gmcf->kafka_group.data, gmcf->kafka_group.len);
    ngx_memcpy(topic, gmcf->kafka_topic.data, gmcf->kafka_topic.len);

    conf = ngx_gdrive_kafka_conf(cycle->log, gmcf, k, defaults);
    if (conf == NULL) {
        return NULL;
    }

    /* what delivery rests on is set after the operator's options */

    if (ngx_gdrive_kafka_conf_set(cycle->log, conf, "group.id", group)
        != NGX_OK
        || ngx_gdrive_kafka_conf_set(cycle->log, conf,
                                     "enable.auto.offset.store", "false")
           != NGX_OK
        || ngx_gdrive_kafka_conf_set(cycle->log, conf, "enable.auto.commit",
                                     "true") != NGX_OK)
    {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }

    rd_kafka_conf_set_rebalance_cb(conf, ngx_gdrive_kafka_rebalance_cb);

    if (ngx_gdrive_kafka_start(k, RD_KAFKA_CONSUMER, conf) != NGX_OK) {
        return NULL;
    }

    k->serve = ngx_gdrive_kafka_consumer_serve;

    topics = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(topics, topic, RD_KAFKA_PARTITION_UA);

    err = rd_kafka_subscribe(k->rk, topics);

    rd_kafka_topic_partition_list_destroy(topics);

    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                      "gdrive: kafka subscribe to \"%s\" failed: %s",
                      topic, rd_kafka_err2str(err));
        ngx_gdrive_kafka_destroy(k, 0);
        return NULL;
    }

    /*
     * A periodic poll keeps the member alive (max.poll.interval.ms) while
     * its partitions are paused and no event arrives.  It is not
     * cancelable: on quit or reload it keeps the worker until the jobs in
     * flight are done and the consumer has left the group.
     */

    k->tick.handler = ngx_gdrive_kafka_tick;
    k->tick.data = k;
    k->tick.log = k->log;
    ngx_add_timer(&k->tick, 1000);

    return k;
}


static void
ngx_gdrive_kafka_consumer_serve(ngx_gdrive_kafka_t *k)
{
    ngx_uint_t           i;
    rd_kafka_message_t  *msg;

    if (k->rk == NULL) {
        return;
    }

    if (k->closing) {
        /* rebalance events of the close, then the end */
        while ((msg = rd_kafka_consumer_poll(k->rk, 0)) != NULL) {
            rd_kafka_message_destroy(msg);
        }

        if (rd_kafka_consumer_closed(k->rk)) {
            k->closed = 1;
            if (k->cb.closed) {
                k->cb.closed(k->cb.data);
            }
        }

        return;
    }

    for (i = 0; i < k->max_poll; i++) {

        if (!k->paused && k->cb.room(k->cb.data) == 0) {
            ngx_gdrive_kafka_consumer_pause(k, 1);
        }

        msg = rd_kafka_consumer_poll(k->rk, 0);

        if (msg == NULL) {
            return;
        }

        if (msg->err) {
            if (msg->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                ngx_log_error(NGX_LOG_ERR, k->log, 0,
                              "gdrive: kafka consumer: %s",
                              rd_kafka_message_errstr(msg));
            }

            rd_kafka_message_destroy(msg);
            continue;
        }

        /*
         * One fetched for a revoked partition before it was paused is
         * left untaken: nothing after it is taken either, its offset is
         * not stored, and the next owner gets it.
         */

        if (k->revoking && ngx_gdrive_kafka_revoking(k, msg->partition)) {
            rd_kafka_message_destroy(msg);
            continue;
        }

        /*
         * A message is never dropped, even past the in-flight limit: its
         * offset would never be stored and its partition would stall.
         */

        k->cb.message(k->cb.data, msg);
    }

    /* more may be waiting: let other events in first */
    ngx_post_event(k->conn->read, &ngx_posted_events);
}


void
ngx_gdrive_kafka_consumer_pause(ngx_gdrive_kafka_t *k, ngx_uint_t pause)
{
    int                               i;
    rd_kafka_resp_err_t               err;
    rd_kafka_topic_partition_list_t  *parts;

    if (k->paused == pause || k->rk == NULL) {
        return;
    }

    k->paused = pause;

    err = rd_kafka_assignment(k->rk, &parts);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        return;
    }

    /* revoked partitions being drained stay paused */

    if (!pause && k->revoking) {
        for (i = parts->cnt - 1; i >= 0; i--) {
            if (ngx_gdrive_kafka_revoking(k, parts->elems[i].partition)) {
                rd_kafka_topic_partition_list_del_by_idx(parts, i);
            }
        }
    }

    if (parts->cnt) {
        err = pause ? rd_kafka_pause_partitions(k->rk, parts)
                    : rd_kafka_resume_partitions(k->rk, parts);
    }

    ngx_log_debug2(NGX_LOG_DEBUG_EVENT, k->log, 0,
                   "gdrive: kafka %s %d partitions",
                   pause ? "paused" : "resumed", parts->cnt);

    rd_kafka_topic_partition_list_destroy(parts);

    if (!pause) {
        /* messages fetched again after the pause */
        ngx_post_event(k->conn->read, &ngx_posted_events);
    }
}


static void
ngx_gdrive_kafka_rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
    rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    ngx_gdrive_kafka_t *k = opaque;

    int                               i, cooperative;
    rd_kafka_topic_partition_list_t  *rest;

    rest = NULL;
    cooperative = (ngx_strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE")
                   == 0);

    ngx_log_error(NGX_LOG_INFO, k->log, 0,
                  "gdrive: kafka rebalance: %s %d partitions (%s)",
                  err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS
                  ? "assigned" : "revoked",
                  parts->cnt, cooperative ? "cooperative" : "eager");

    /*
     * A revoke still draining ends first: what is left is cancelled.  A
     * revoke that comes meanwhile (a lost assignment, a close) may name
     * its partitions again: they are let go once, by the first.
     */

    if (k->revoking) {
        ngx_log_error(NGX_LOG_NOTICE, k->log, 0,
                      "gdrive: kafka rebalance before the revoked "
                      "partitions drained");

        if (err != RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
            rest = rd_kafka_topic_partition_list_copy(parts);

            if (rest) {
                for (i = rest->cnt - 1; i >= 0; i--) {
                    if (ngx_gdrive_kafka_revoking(k,
                                                  rest->elems[i].partition))
                    {
                        rd_kafka_topic_partition_list_del_by_idx(rest, i);
                    }
                }
            }
        }

        ngx_gdrive_kafka_revoke_finish(k);

        if (rest) {
            if (rest->cnt) {
                ngx_gdrive_kafka_rebalance(k, err, rest, cooperative);
            }

            rd_kafka_topic_partition_list_destroy(rest);
            return;
        }
    }

    ngx_gdrive_kafka_rebalance(k, err, parts, cooperative);
}


static void
ngx_gdrive_kafka_rebalance(ngx_gdrive_kafka_t *k, rd_kafka_resp_err_t err,
    rd_kafka_topic_partition_list_t *parts, int cooperative)
{
    rd_kafka_t        *rk;
    ngx_uint_t         jobs;
    rd_kafka_error_t  *error;

    rk = k->rk;

    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        k->cb.assigned(k->cb.data, parts);

        if (cooperative) {
            error = rd_kafka_incremental_assign(rk, parts);
            if (error) {
                ngx_log_error(NGX_LOG_ERR, k->log, 0,
                              "gdrive: kafka incremental assign: %s",
                              rd_kafka_error_string(error));
                rd_kafka_error_destroy(error);
            }

        } else {
            rd_kafka_assign(rk, parts);
        }

        /* a partition drained here before comes back unpaused */

        if (k->paused) {
            rd_kafka_pause_partitions(rk, parts);

        } else {
            rd_kafka_resume_partitions(rk, parts);
        }

        return;
    }

    /*
     * Revoked.  A lost assignment is someone else's already, and a
     * closing consumer lets go at once: the jobs of these partitions are
     * cancelled (their messages go to the new owner).  Otherwise the
     * partitions are paused, the jobs that did not start are handed back,
     * and those running end first, within the drain deadline: their
     * offsets are committed and not done again by the next owner.
     * librdkafka waits for the unassign, not for this callback.
     */

    jobs = 0;

    if (!k->closing && k->drain_timeout && k->cb.draining
        && !rd_kafka_assignment_lost(rk))
    {
        jobs = k->cb.draining(k->cb.data, parts);
    }

    if (jobs == 0) {
        ngx_gdrive_kafka_revoke_now(k, parts, cooperative);
        return;
    }

    k->revoking = rd_kafka_topic_partition_list_copy(parts);

    if (k->revoking == NULL) {
        ngx_gdrive_kafka_revoke_now(k, parts, cooperative);
        return;
    }

    k->revoke_cooperative = cooperative;

    rd_kafka_pause_partitions(rk, parts);

    ngx_log_error(NGX_LOG_NOTICE, k->log, 0,
                  "gdrive: kafka revoke of %d partitions waits for %ui jobs, "
                  "at most %M ms", parts->cnt, jobs, k->drain_timeout);

    k->drain.handler = ngx_gdrive_kafka_drain_handler;
    k->drain.data = k;
    k->drain.log = k->log;
    ngx_add_timer(&k->drain, k->drain_timeout);
}


/*
 * The jobs of revoked partitions are cancelled, what is terminal was
 * stored as it happened and is committed now (asynchronously, issued
 * before the partitions are let go), and the partitions are let go.
 */

static void
ngx_gdrive_kafka_revoke_now(ngx_gdrive_kafka_t *k,
    rd_kafka_topic_partition_list_t *parts, int cooperative)
{
    rd_kafka_error_t  *error;

    k->cb.revoked(k->cb.data, parts);

    rd_kafka_commit(k->rk, NULL, 1);

    if (cooperative) {
        error = rd_kafka_incremental_unassign(k->rk, parts);
        if (error) {
            ngx_log_error(NGX_LOG_ERR, k->log, 0,
                          "gdrive: kafka incremental unassign: %s",
                          rd_kafka_error_string(error));
            rd_kafka_error_destroy(error);
        }

    } else {
        rd_kafka_assign(k->rk, NULL);
    }
}


/* a deferred revoke ends: drained, past its deadline, or cut short */

static void
ngx_gdrive_kafka_revoke_finish(ngx_gdrive_kafka_t *k)
{
    rd_kafka_topic_partition_list_t  *parts;

    if (k->drain.timer_set) {
        ngx_del_timer(&k->drain);
    }

    if (k->drain.posted) {
        ngx_delete_posted_event(&k->drain);
    }

    parts = k->revoking;

    if (parts == NULL) {
        return;
    }

    k->revoking = NULL;

    if (k->rk) {
        ngx_gdrive_kafka_revoke_now(k, parts, k->revoke_cooperative);
    }

    rd_kafka_topic_partition_list_destroy(parts);
}


static void
ngx_gdrive_kafka_drain_handler(ngx_event_t *ev)
{
    ngx_gdrive_kafka_t *k = ev->data;

    if (ev->timedout) {
        ev->timedout = 0;
        ngx_log_error(NGX_LOG_NOTICE, k->log, 0,
                      "gdrive: kafka revoke: drain deadline of %M ms "
                      "passed, the jobs left are cancelled",
                      k->drain_timeout);

    } else {
        ngx_log_error(NGX_LOG_INFO, k->log, 0,
                      "gdrive: kafka revoke: the revoked partitions' jobs "
                      "ended, they are committed and let go");
    }

    ngx_gdrive_kafka_revoke_finish(k);
}


/* the job engine: the revoked partitions have no jobs left */

void
ngx_gdrive_kafka_revoke_drained(ngx_gdrive_kafka_t *k)
{
    if (k->revoking == NULL || k->drain.posted) {
        return;
    }

    if (k->drain.timer_set) {
        ngx_del_timer(&k->drain);
    }

    /* after the caller's handler: no unassign from inside a job's end */
    ngx_post_event(&k->drain, &ngx_posted_events);
}


static ngx_uint_t
ngx_gdrive_kafka_revoking(ngx_gdrive_kafka_t *k, int32_t partition)
{
    int  i;

    if (k->revoking == NULL) {
        return 0;
    }

    for (i = 0; i < k->revoking->cnt; i++) {
        if (k->revoking->elems[i].partition == partition) {
            return 1;
        }
    }

    return 0;
}


static void
ngx_gdrive_kafka_tick(ngx_event_t *ev)
{
    ngx_gdrive_kafka_t *k = ev->data;

    if (k->rk == NULL || k->closed) {
        return;
    }

    /* re-armed first, until the consumer is closed */
    ngx_add_timer(ev, (k->closing || ngx_exiting) ? 100 : 1000);

    if (ngx_exiting && !k->closing && k->cb.exiting) {
        k->cb.exiting(k->cb.data);
    }

    k->serve(k);

    if (k->cb.tick && k->rk && !k->closing) {
        k->cb.tick(k->cb.data);
    }
}


/*
 * Leaves the group without blocking: rd_kafka_consumer_close_queue()
 * revokes, commits and leaves in librdkafka's threads while the event
 * loop serves the queue until rd_kafka_consumer_closed().
 */

void
ngx_gdrive_kafka_consumer_close(ngx_gdrive_kafka_t *k)
{
    rd_kafka_error_t  *error;

    if (k->closing || k->rk == NULL) {
        return;
    }

    /* a revoke still draining ends first: the close revokes the rest */
    ngx_gdrive_kafka_revoke_finish(k);

    k->closing = 1;

    error = rd_kafka_consumer_close_queue(k->rk, k->queue);

    if (error) {
        ngx_log_error(NGX_LOG_ERR, k->log, 0,
                      "gdrive: kafka consumer close: %s",
                      rd_kafka_error_string(error));
        rd_kafka_error_destroy(error);
        k->closed = 1;
        return;
    }

    if (k->tick.timer_set) {
        ngx_del_timer(&k->tick);
    }

    ngx_add_timer(&k->tick, 100);
}


rd_kafka_resp_err_t
ngx_gdrive_kafka_store_offset(ngx_gdrive_kafka_t *k, const char *topic,
    int32_t partition, int64_t offset)
{
    rd_kafka_resp_err_t               err;
    rd_kafka_topic_partition_list_t  *list;

    if (k->rk == NULL) {
        /* at exit, reports served by the producer's flush come late */
        return RD_KAFKA_RESP_ERR__STATE;
    }

    list = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(list, topic, partition)->offset =
                                                                     offset;

    err = rd_kafka_offsets_store(k->rk, list);

    if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        err = list->elems[0].err;
    }

    rd_kafka_topic_partition_list_destroy(list);

    return err;
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


/* brokers connected and known at the last statistics; NGX_OK when up */

ngx_int_t
ngx_gdrive_kafka_brokers_state(ngx_gdrive_kafka_t *k, ngx_uint_t *up,
    ngx_uint_t *known)
{
    *up = k->brokers_seen_up;
    *known = k->brokers_known;

    return ngx_gdrive_kafka_brokers_up(k) ? NGX_OK : NGX_DECLINED;
}


/*
 * Called from exit_process only, when the event loop has ended: the
 * flush waits a bounded time for reports of messages still in flight.
 */

void
ngx_gdrive_kafka_destroy(ngx_gdrive_kafka_t *k, ngx_msec_t flush)
{
    if (k->tick.timer_set) {
        ngx_del_timer(&k->tick);
    }

    if (k->drain.timer_set) {
        ngx_del_timer(&k->drain);
    }

    if (k->drain.posted) {
        ngx_delete_posted_event(&k->drain);
    }

    if (k->revoking) {
        rd_kafka_topic_partition_list_destroy(k->revoking);
        k->revoking = NULL;
    }

    if (k->rk && flush) {
        rd_kafka_flush(k->rk, (int) flush);
    }

    if (k->queue) {
        rd_kafka_queue_io_event_enable(k->queue, -1, NULL, 0);
        rd_kafka_queue_destroy(k->queue);
        k->queue = NULL;
    }

    if (k->rk && k->serve) {
        /* a consumer that did not finish its close must not block here */
        ngx_gdrive_kafka_end(k, k->closed
                                ? 0 : RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
        k->rk = NULL;

    } else if (k->rk) {
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


/* called from exit_process, before the producer that made it goes */

void
ngx_gdrive_kafka_topic_destroy(rd_kafka_topic_t *rkt)
{
    rd_kafka_topic_destroy(rkt);
}


void
ngx_gdrive_kafka_message_free(rd_kafka_message_t *msg)
{
    rd_kafka_message_destroy(msg);
}


const char *
ngx_gdrive_kafka_strerror(rd_kafka_resp_err_t err)
{
    return rd_kafka_err2str(err);
}


/*
 * A partition's high watermark and the consumer's lag on it, -1 where not
 * known: the cached watermark, no request to the broker from here.  The
 * lag counts from the offset stored, else from the consumer's position.
 */

void
ngx_gdrive_kafka_lag(ngx_gdrive_kafka_t *k, const char *topic,
    int32_t partition, int64_t stored, int64_t *high, int64_t *lag)
{
    int64_t                           lo, hi, done;
    rd_kafka_topic_partition_list_t  *pos;

    *high = -1;
    *lag = -1;

    if (k == NULL || k->rk == NULL
        || rd_kafka_get_watermark_offsets(k->rk, topic, partition, &lo, &hi)
           != RD_KAFKA_RESP_ERR_NO_ERROR
        || hi < 0)
    {
        return;
    }

    *high = hi;
    done = stored;

    if (done < 0) {
        pos = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(pos, topic, partition);

        if (rd_kafka_position(k->rk, pos) == RD_KAFKA_RESP_ERR_NO_ERROR) {
            done = pos->elems[0].offset;
        }

        rd_kafka_topic_partition_list_destroy(pos);
    }

    if (done >= 0) {
        *lag = ngx_max(hi - done, 0);

    } else if (hi == 0 || (lo >= 0 && hi <= lo)) {
        /* nothing in the partition to be behind on */
        *lag = 0;
    }
}


/*
 * The original headers, byte for byte, with the failure in Kafka
 * Connect's header names (for existing DLQ tooling) and ours.  NULL: no
 * memory.  The produce owns the headers only when it succeeds.
 */

rd_kafka_headers_t *
ngx_gdrive_kafka_dlq_headers(rd_kafka_message_t *msg,
    ngx_gdrive_kafka_dlq_t *dlq)
{
    u_char               buf[NGX_MAXHOSTNAMELEN + NGX_INT64_LEN + 2];
    size_t               len;
    rd_kafka_headers_t  *hdrs, *orig;

    /* a record being cut leaves the original headers out: they may be
     * what the topic refuses */

    if (!dlq->cut
        && rd_kafka_message_headers(msg, &orig) == RD_KAFKA_RESP_ERR_NO_ERROR)
    {
        hdrs = rd_kafka_headers_copy(orig);

    } else {
        hdrs = rd_kafka_headers_new(12);
    }

    if (hdrs == NULL) {
        return NULL;
    }

    rd_kafka_header_add(hdrs, "__connect.errors.topic", -1, dlq->topic, -1);

    len = ngx_snprintf(buf, sizeof(buf), "%D", msg->partition) - buf;
    rd_kafka_header_add(hdrs, "__connect.errors.partition", -1, buf, len);

    len = ngx_snprintf(buf, sizeof(buf), "%O", (off_t) msg->offset) - buf;
    rd_kafka_header_add(hdrs, "__connect.errors.offset", -1, buf, len);

    rd_kafka_header_add(hdrs, "__connect.errors.exception.class.name", -1,
                        dlq->code, -1);
    rd_kafka_header_add(hdrs, "__connect.errors.exception.message", -1,
                        dlq->detail, -1);
    rd_kafka_header_add(hdrs, "gdrive.error.code", -1, dlq->code, -1);
    rd_kafka_header_add(hdrs, "gdrive.error.message", -1, dlq->detail, -1);

    len = ngx_snprintf(buf, sizeof(buf), "%ui", dlq->attempts) - buf;
    rd_kafka_header_add(hdrs, "gdrive.error.attempts", -1, buf, len);

    rd_kafka_header_add(hdrs, "gdrive.error.time", -1,
                        ngx_cached_http_log_iso8601.data,
                        ngx_cached_http_log_iso8601.len);

    len = ngx_snprintf(buf, sizeof(buf), "%V/%P", dlq->instance, ngx_pid)
          - buf;
    rd_kafka_header_add(hdrs, "gdrive.error.worker", -1, buf, len);

    /* a value the dead-letter topic refused whole goes cut, and says so */

    if (dlq->value_len < msg->len) {
        len = ngx_snprintf(buf, sizeof(buf), "%uz", msg->len) - buf;
        rd_kafka_header_add(hdrs, "gdrive.error.truncated", -1, buf, len);
    }

    if (dlq->trigger_id) {
        rd_kafka_header_add(hdrs, "gdrive.trigger_id", -1, dlq->trigger_id,
                            -1);
    }

    /* the job's trace context, not what came (which may be invalid) */

    if (dlq->traceparent) {
        (void) rd_kafka_header_remove(hdrs, "traceparent");
        (void) rd_kafka_header_remove(hdrs, "tracestate");

        rd_kafka_header_add(hdrs, "traceparent", -1, dlq->traceparent, -1);

        if (dlq->tracestate) {
            rd_kafka_header_add(hdrs, "tracestate", -1, dlq->tracestate, -1);
        }
    }

    return hdrs;
}


void
ngx_gdrive_kafka_headers_free(rd_kafka_headers_t *hdrs)
{
    rd_kafka_headers_destroy(hdrs);
}


/*
 * A message's header when it has exactly one of that name, with a value.
 * NGX_DECLINED: none; NGX_ERROR: several, or one without a value.
 */

ngx_int_t
ngx_gdrive_kafka_header(rd_kafka_message_t *msg, const char *name,
    const u_char **value, size_t *len)
{
    size_t               n;
    const void          *v, *other;
    rd_kafka_headers_t  *hdrs;

    if (rd_kafka_message_headers(msg, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR
        || rd_kafka_header_get(hdrs, 0, name, &v, len)
           != RD_KAFKA_RESP_ERR_NO_ERROR)
    {
        return NGX_DECLINED;
    }

    if (v == NULL
        || rd_kafka_header_get(hdrs, 1, name, &other, &n)
           == RD_KAFKA_RESP_ERR_NO_ERROR)
    {
        return NGX_ERROR;
    }

    *value = v;

    return NGX_OK;
}


/* the headers of a record made with a trace context; NULL: no memory */

rd_kafka_headers_t *
ngx_gdrive_kafka_trace_headers(const char *traceparent,
    const char *tracestate)
{
    rd_kafka_headers_t  *hdrs;

    hdrs = rd_kafka_headers_new(2);
    if (hdrs == NULL) {
        return NULL;
    }

    rd_kafka_header_add(hdrs, "traceparent", -1, traceparent, -1);

    if (tracestate) {
        rd_kafka_header_add(hdrs, "tracestate", -1, tracestate, -1);
    }

    return hdrs;
}


ngx_int_t
ngx_gdrive_kafka_option_check(const char *name, const char *value,
    char *err, size_t size)
{
    rd_kafka_conf_t      *kconf;
    rd_kafka_conf_res_t   res;

    kconf = rd_kafka_conf_new();
    if (kconf == NULL) {
        ngx_cpystrn((u_char *) err, (u_char *) "out of memory", size);
        return NGX_ERROR;
    }

    res = rd_kafka_conf_set(kconf, name, value, err, size);

    rd_kafka_conf_destroy(kconf);

    return res == RD_KAFKA_CONF_OK ? NGX_OK : NGX_ERROR;
}


const char *
ngx_gdrive_kafka_version(void)
{
    return rd_kafka_version_str();
}


/*
 * A consumer's rd_kafka_destroy(), in a thread of its own, waited for at
 * most NGX_GDRIVE_KAFKA_END_TIMEOUT seconds (the worker is exiting: its
 * loop has ended).  Past that the worker goes on without it and the
 * process's exit ends the thread; offsets were committed by the close.
 */

static void
ngx_gdrive_kafka_end(ngx_gdrive_kafka_t *k, int flags)
{
    int                      rc;
    sigset_t                 all, old;
    pthread_t                tid;
    pthread_attr_t           attr;
    struct timespec          deadline;
    u_char                   name[128];
    ngx_gdrive_kafka_end_t  *end;

    end = malloc(sizeof(ngx_gdrive_kafka_end_t));

    if (end == NULL
        || pthread_mutex_init(&end->mutex, NULL) != 0)
    {
        free(end);
        rd_kafka_destroy_flags(k->rk, flags);
        return;
    }

    if (pthread_cond_init(&end->cond, NULL) != 0) {
        pthread_mutex_destroy(&end->mutex);
        free(end);
        rd_kafka_destroy_flags(k->rk, flags);
        return;
    }

    /* the name, while the handle is certainly there to ask */
    ngx_cpystrn(name, (u_char *) rd_kafka_name(k->rk), sizeof(name));

    end->rk = k->rk;
    end->flags = flags;
    end->done = 0;
    end->refs = 2;

    /* signals stay the worker's thread's */
    sigfillset(&all);
    (void) pthread_sigmask(SIG_SETMASK, &all, &old);

    rc = pthread_attr_init(&attr);

    if (rc == 0) {
        (void) pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        rc = pthread_create(&tid, &attr, ngx_gdrive_kafka_end_thread, end);
        (void) pthread_attr_destroy(&attr);
    }

    (void) pthread_sigmask(SIG_SETMASK, &old, NULL);

    if (rc != 0) {
        end->refs = 1;
        ngx_gdrive_kafka_end_release(end);
        rd_kafka_destroy_flags(k->rk, flags);
        return;
    }

    (void) clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += NGX_GDRIVE_KAFKA_END_TIMEOUT;

    rc = 0;

    pthread_mutex_lock(&end->mutex);

    while (!end->done && rc != ETIMEDOUT) {
        rc = pthread_cond_timedwait(&end->cond, &end->mutex, &deadline);
    }

    if (!end->done) {
        ngx_gdrive_kafka_abandoned = 1;

        ngx_log_error(NGX_LOG_WARN, k->log, 0,
                      "gdrive: kafka %s not destroyed within %ds (librdkafka "
                      "keeps a broker thread after the cluster behind its "
                      "brokers changed): the worker exits without it",
                      name, NGX_GDRIVE_KAFKA_END_TIMEOUT);
    }

    pthread_mutex_unlock(&end->mutex);

    ngx_gdrive_kafka_end_release(end);
}


static void *
ngx_gdrive_kafka_end_thread(void *data)
{
    ngx_gdrive_kafka_end_t *end = data;

    rd_kafka_destroy_flags(end->rk, end->flags);

    pthread_mutex_lock(&end->mutex);
    end->done = 1;
    pthread_cond_signal(&end->cond);
    pthread_mutex_unlock(&end->mutex);

    ngx_gdrive_kafka_end_release(end);

    return NULL;
}


/* the last of the two frees it */

static void
ngx_gdrive_kafka_end_release(ngx_gdrive_kafka_end_t *end)
{
    ngx_uint_t  last;

    pthread_mutex_lock(&end->mutex);
    last = (--end->refs == 0);
    pthread_mutex_unlock(&end->mutex);

    if (last) {
        pthread_cond_destroy(&end->cond);
        pthread_mutex_destroy(&end->mutex);
        free(end);
    }
}


/*
 * Whether a client was left running at exit: its threads may still call
 * back into memory that exit() and the cycle's pool would free.
 */

ngx_uint_t
ngx_gdrive_kafka_left_running(void)
{
    return ngx_gdrive_kafka_abandoned;
}
