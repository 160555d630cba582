
/*
 * nginx-gdrive-worker: the job engine.
 *
 * Pipeline layer: one job per Kafka message.  A job runs its stages as
 * asynchronous steps on the event loop and ends terminal: its result
 * event acknowledged, or its DLQ record acknowledged.  A partition's
 * offset is stored only past a run of terminal jobs, so a crash, a
 * rebalance or a reload redelivers what was not finished and loses
 * nothing.  At gdrive_max_inflight jobs the consumer pauses; it resumes
 * at half of it.
 *
 * Stages: validate -> token -> result.  The Drive and S3 stages plug in
 * before the result as further steps of the same shape: start, and on
 * the answer go on, retry (transient, bounded by gdrive_retry), or send
 * the message to the DLQ (permanent, or attempts exhausted).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_gdrive.h"


typedef struct ngx_gdrive_part_s  ngx_gdrive_part_t;
typedef struct ngx_gdrive_job_s   ngx_gdrive_job_t;


typedef enum {
    NGX_GDRIVE_STAGE_VALIDATE = 0,
    NGX_GDRIVE_STAGE_TOKEN,
    NGX_GDRIVE_STAGE_RESULT,
    NGX_GDRIVE_STAGE_DLQ
} ngx_gdrive_stage_e;


struct ngx_gdrive_part_s {
    ngx_queue_t              queue;      /* in the engine's list */
    ngx_queue_t              jobs;       /* in offset order */
    int32_t                  partition;
    int64_t                  stored;     /* last offset stored, + 1 */
};


struct ngx_gdrive_job_s {
    ngx_queue_t              queue;      /* in its partition's jobs */
    ngx_gdrive_part_t       *part;       /* NULL once cancelled */
    rd_kafka_message_t      *msg;
    ngx_pool_t              *pool;
    ngx_log_t                log;
    ngx_gdrive_trigger_t     trigger;
    ngx_gdrive_stage_e       stage;
    ngx_gdrive_token_req_t   token;
    ngx_gdrive_kafka_dr_t    dr;
    ngx_event_t              timer;      /* backoff */
    ngx_msec_t               started;
    ngx_uint_t               attempt;
    const char              *error;      /* code of the last failure */
    u_char                   detail[256];
    u_char                   id[NGX_GDRIVE_ID_MAX_LEN + 1];
    ngx_int_t                status_slot; /* on the status page, or -1 */
    unsigned                 terminal:1;
    unsigned                 in_flight:1; /* a produce awaits its report */
    unsigned                 to_dlq:1;
    unsigned                 token_busy:1;
};


typedef struct {
    ngx_gdrive_kafka_t      *consumer;
    ngx_queue_t              parts;
    ngx_uint_t               inflight;
    ngx_uint_t               max_inflight;
    ngx_uint_t               low_watermark;
    ngx_event_t              shutdown;
    char                     topic[250];
    unsigned                 exiting:1;
} ngx_gdrive_engine_t;


static void ngx_gdrive_job_message(void *data, rd_kafka_message_t *msg);
static void ngx_gdrive_job_assigned(void *data,
    rd_kafka_topic_partition_list_t *parts);
static void ngx_gdrive_job_revoked(void *data,
    rd_kafka_topic_partition_list_t *parts);
static ngx_uint_t ngx_gdrive_job_room(void *data);
static void ngx_gdrive_job_exiting(void *data);
static void ngx_gdrive_job_closed(void *data);
static void ngx_gdrive_job_shutdown_handler(ngx_event_t *ev);
static ngx_gdrive_part_t *ngx_gdrive_job_part(int32_t partition,
    ngx_uint_t create);
static void ngx_gdrive_job_run(ngx_gdrive_job_t *job);
static void ngx_gdrive_job_token_done(ngx_gdrive_token_req_t *req);
static void ngx_gdrive_job_fail(ngx_gdrive_job_t *job, const char *code,
    const char *detail, ngx_uint_t permanent, ngx_int_t retry_after);
static void ngx_gdrive_job_result(ngx_gdrive_job_t *job);
static void ngx_gdrive_job_dlq(ngx_gdrive_job_t *job);
static void ngx_gdrive_job_delivered(void *data, rd_kafka_resp_err_t err,
    int32_t partition, int64_t offset);
static void ngx_gdrive_job_retry(ngx_gdrive_job_t *job, ngx_msec_t delay);
static void ngx_gdrive_job_timer(ngx_event_t *ev);
static void ngx_gdrive_job_terminal(ngx_gdrive_job_t *job);
static void ngx_gdrive_job_free(ngx_gdrive_job_t *job);
static u_char *ngx_gdrive_job_log_handler(ngx_log_t *log, u_char *buf,
    size_t len);
static void ngx_gdrive_job_status(ngx_gdrive_engine_t *e);
static void ngx_gdrive_job_tick(void *data);


static ngx_gdrive_engine_t  ngx_gdrive_engine;


ngx_int_t
ngx_gdrive_job_init(ngx_cycle_t *cycle, ngx_http_gdrive_main_conf_t *gmcf)
{
    ngx_gdrive_engine_t       *e;
    ngx_gdrive_consumer_cb_t   cb;

    e = &ngx_gdrive_engine;

    ngx_queue_init(&e->parts);
    e->max_inflight = gmcf->max_inflight;
    e->low_watermark = gmcf->max_inflight / 2;

    ngx_cpystrn((u_char *) e->topic, gmcf->kafka_topic.data,
                ngx_min(sizeof(e->topic), gmcf->kafka_topic.len + 1));

    cb.message = ngx_gdrive_job_message;
    cb.assigned = ngx_gdrive_job_assigned;
    cb.revoked = ngx_gdrive_job_revoked;
    cb.room = ngx_gdrive_job_room;
    cb.exiting = ngx_gdrive_job_exiting;
    cb.closed = ngx_gdrive_job_closed;
    cb.tick = ngx_gdrive_job_tick;
    cb.data = e;

    e->consumer = ngx_gdrive_kafka_consumer(cycle, gmcf, &cb);

    if (e->consumer == NULL) {
        return NGX_ERROR;
    }

    ngx_gdrive_worker.consumer = e->consumer;

    return NGX_OK;
}


ngx_uint_t
ngx_gdrive_job_inflight(void)
{
    return ngx_gdrive_engine.inflight;
}


static ngx_uint_t
ngx_gdrive_job_room(void *data)
{
    ngx_gdrive_engine_t *e = data;

    return (e->inflight < e->max_inflight && !e->exiting)
           ? e->max_inflight - e->inflight : 0;
}


static void
ngx_gdrive_job_message(void *data, rd_kafka_message_t *msg)
{
    ngx_gdrive_engine_t *e = data;

    ngx_pool_t         *pool;
    ngx_gdrive_job_t   *job;
    ngx_gdrive_part_t  *part;

    part = ngx_gdrive_job_part(msg->partition, 1);
    pool = ngx_create_pool(4096, ngx_cycle->log);
    job = pool ? ngx_pcalloc(pool, sizeof(ngx_gdrive_job_t)) : NULL;

    if (job == NULL || part == NULL) {
        /*
         * A message not taken must not be passed over by the offsets of
         * the ones after it: the worker leaves the group, and the
         * partitions are redelivered from their committed offsets.
         */
        ngx_log_error(NGX_LOG_ALERT, ngx_cycle->log, 0,
                      "gdrive: no memory for a job (partition %D offset %O), "
                      "the consumer leaves the group",
                      msg->partition, (off_t) msg->offset);
        if (pool) {
            ngx_destroy_pool(pool);
        }

        rd_kafka_message_destroy(msg);
        e->exiting = 1;
        ngx_gdrive_kafka_consumer_pause(e->consumer, 1);
        ngx_gdrive_kafka_consumer_close(e->consumer);
        return;
    }

    job->pool = pool;
    job->msg = msg;
    job->part = part;
    job->started = ngx_current_msec;
    job->log = *ngx_cycle->log;
    job->log.handler = ngx_gdrive_job_log_handler;
    job->log.data = job;
    job->log.action = "running a job";
    job->dr.handler = ngx_gdrive_job_delivered;
    job->dr.data = job;
    job->timer.handler = ngx_gdrive_job_timer;
    job->timer.data = job;
    job->timer.log = &job->log;
    ngx_cpystrn(job->id, (u_char *) "-", sizeof(job->id));
    job->status_slot = ngx_gdrive_status_job_begin(job->id, 1, msg->partition,
                                                   msg->offset);

    ngx_queue_insert_tail(&part->jobs, &job->queue);

    e->inflight++;
    ngx_gdrive_job_status(e);

    ngx_gdrive_job_run(job);
}


static void
ngx_gdrive_job_run(ngx_gdrive_job_t *job)
{
    ngx_gdrive_msg_error_t  err;

    switch (job->stage) {

    case NGX_GDRIVE_STAGE_VALIDATE:

        if (ngx_gdrive_trigger_parse(job->msg->payload, job->msg->len, 1,
                                     &job->trigger, &err)
            != 0)
        {
            /* a poison message goes to the DLQ at once */
            ngx_log_error(NGX_LOG_WARN, &job->log, 0,
                          "gdrive: invalid trigger: %s: %s",
                          err.code, err.detail);
            ngx_gdrive_job_fail(job, err.code, err.detail, 1, -1);
            return;
        }

        ngx_cpystrn(job->id, (u_char *) job->trigger.trigger_id.data,
                    ngx_min(sizeof(job->id),
                            job->trigger.trigger_id.len + 1));
        ngx_gdrive_status_job_id(job->status_slot, job->id,
                                 ngx_strlen(job->id));

        ngx_log_debug1(NGX_LOG_DEBUG_EVENT, &job->log, 0,
                       "gdrive: job %s started",
                       ngx_gdrive_action_name(job->trigger.action));

        job->stage = NGX_GDRIVE_STAGE_TOKEN;

        /* fall through */

    case NGX_GDRIVE_STAGE_TOKEN:

        ngx_gdrive_status_job_stage(job->status_slot, "token");
        job->token.pool = job->pool;
        job->token.log = &job->log;
        job->token.integration.data = (u_char *)
                                      job->trigger.integration_id.data;
        job->token.integration.len = job->trigger.integration_id.len;
        job->token.handler = ngx_gdrive_job_token_done;
        job->token.data = job;
        job->token_busy = 1;

        ngx_gdrive_token_get(&job->token);
        return;

    case NGX_GDRIVE_STAGE_RESULT:
        ngx_gdrive_job_result(job);
        return;

    case NGX_GDRIVE_STAGE_DLQ:
        ngx_gdrive_job_dlq(job);
        return;
    }
}


static void
ngx_gdrive_job_token_done(ngx_gdrive_token_req_t *req)
{
    ngx_gdrive_job_t *job = req->data;

    job->token_busy = 0;

    if (req->rc != NGX_OK) {
        ngx_gdrive_job_fail(job, req->code, req->detail, req->permanent,
                            req->retry_after);
        return;
    }

    job->stage = NGX_GDRIVE_STAGE_RESULT;
    ngx_gdrive_job_run(job);
}


/*
 * A failed stage: transient failures are retried by the backoff, up to
 * gdrive_retry attempts; permanent ones and the last attempt go to the
 * DLQ with the error.
 */

static void
ngx_gdrive_job_fail(ngx_gdrive_job_t *job, const char *code,
    const char *detail, ngx_uint_t permanent, ngx_int_t retry_after)
{
    job->error = code;
    ngx_cpystrn(job->detail, (u_char *) detail, sizeof(job->detail));
    ngx_gdrive_status_error(job->id, ngx_strlen(job->id), code, detail);

    if (!permanent
        && job->attempt + 1 < ngx_gdrive_worker.gmcf->retry_attempts)
    {
        ngx_gdrive_job_retry(job, retry_after > 0
                                  ? (ngx_msec_t) retry_after * 1000 : 0);
        return;
    }

    if (!permanent) {
        ngx_log_error(NGX_LOG_WARN, &job->log, 0,
                      "gdrive: giving up after %ui attempts: %s: %s",
                      job->attempt + 1, code, detail);
    }

    job->to_dlq = 1;
    job->stage = NGX_GDRIVE_STAGE_DLQ;
    ngx_gdrive_job_dlq(job);
}


/* the result event: what the pipeline reached, keyed by integration */

static void
ngx_gdrive_job_result(ngx_gdrive_job_t *job)
{
    u_char               *json, *p;
    size_t                len;
    ngx_str_t             key;
    rd_kafka_resp_err_t   err;

    ngx_gdrive_status_job_stage(job->status_slot, "result");

    len = sizeof("{\"trigger_id\":\"\",\"integration_id\":\"\","
                 "\"action\":\"\",\"status\":\"validated\",\"attempts\":,"
                 "\"duration_ms\":,\"source\":{\"topic\":\"\","
                 "\"partition\":,\"offset\":},\"worker\":}")
          + 2 * NGX_GDRIVE_ID_MAX_LEN + 32 + 4 * NGX_INT64_LEN
          + ngx_strlen(ngx_gdrive_engine.topic);

    json = ngx_pnalloc(job->pool, len);
    if (json == NULL) {
        ngx_gdrive_job_retry(job, 1000);
        return;
    }

    p = ngx_sprintf(json, "{\"trigger_id\":\"%s\",\"integration_id\":\"",
                    job->id);
    p = ngx_cpymem(p, job->trigger.integration_id.data,
                   job->trigger.integration_id.len);
    p = ngx_sprintf(p, "\",\"action\":\"%s\",\"status\":\"validated\","
                       "\"attempts\":%ui,\"duration_ms\":%M,"
                       "\"source\":{\"topic\":\"%s\",\"partition\":%D,"
                       "\"offset\":%O},\"worker\":%P}",
                    ngx_gdrive_action_name(job->trigger.action),
                    job->attempt + 1, ngx_current_msec - job->started,
                    ngx_gdrive_engine.topic, job->msg->partition,
                    (off_t) job->msg->offset, ngx_pid);

    key.data = (u_char *) job->trigger.integration_id.data;
    key.len = job->trigger.integration_id.len;

    err = ngx_gdrive_kafka_produce(ngx_gdrive_worker.producer,
                                   ngx_gdrive_worker.result_topic, &key,
                                   json, p - json, 0, NULL, &job->dr);

    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        job->error = "kafka_error";
        ngx_gdrive_job_retry(job, 0);
        return;
    }

    job->in_flight = 1;
}


/*
 * The original key, value and headers, byte for byte, with the failure in
 * Kafka Connect's header names (for existing DLQ tooling) and ours.
 */

static void
ngx_gdrive_job_dlq(ngx_gdrive_job_t *job)
{
    u_char                buf[64];
    size_t                len;
    ngx_str_t             key;
    rd_kafka_headers_t   *hdrs, *orig;
    rd_kafka_resp_err_t   err;

    ngx_gdrive_status_job_stage(job->status_slot, "dlq");

    if (rd_kafka_message_headers(job->msg, &orig)
        == RD_KAFKA_RESP_ERR_NO_ERROR)
    {
        hdrs = rd_kafka_headers_copy(orig);

    } else {
        hdrs = rd_kafka_headers_new(12);
    }

    if (hdrs == NULL) {
        ngx_gdrive_job_retry(job, 1000);
        return;
    }

    rd_kafka_header_add(hdrs, "__connect.errors.topic", -1,
                        ngx_gdrive_engine.topic, -1);

    len = ngx_sprintf(buf, "%D", job->msg->partition) - buf;
    rd_kafka_header_add(hdrs, "__connect.errors.partition", -1, buf, len);

    len = ngx_sprintf(buf, "%O", (off_t) job->msg->offset) - buf;
    rd_kafka_header_add(hdrs, "__connect.errors.offset", -1, buf, len);

    rd_kafka_header_add(hdrs, "__connect.errors.exception.class.name", -1,
                        job->error, -1);
    rd_kafka_header_add(hdrs, "__connect.errors.exception.message", -1,
                        job->detail, -1);
    rd_kafka_header_add(hdrs, "gdrive.error.code", -1, job->error, -1);
    rd_kafka_header_add(hdrs, "gdrive.error.message", -1, job->detail, -1);

    len = ngx_sprintf(buf, "%ui", job->attempt + 1) - buf;
    rd_kafka_header_add(hdrs, "gdrive.error.attempts", -1, buf, len);

    rd_kafka_header_add(hdrs, "gdrive.error.time", -1,
                        ngx_cached_http_log_iso8601.data,
                        ngx_cached_http_log_iso8601.len);

    len = ngx_sprintf(buf, "%V/%P", &ngx_cycle->hostname, ngx_pid) - buf;
    rd_kafka_header_add(hdrs, "gdrive.error.worker", -1, buf, len);

    if (job->id[0] != '-') {
        rd_kafka_header_add(hdrs, "gdrive.trigger_id", -1, job->id, -1);
    }

    key.data = job->msg->key;
    key.len = job->msg->key_len;

    err = ngx_gdrive_kafka_produce(ngx_gdrive_worker.producer,
                                   ngx_gdrive_worker.dlq_topic, &key,
                                   job->msg->payload, job->msg->len, 0,
                                   hdrs, &job->dr);

    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        /* producev owns the headers only when it succeeds */
        rd_kafka_headers_destroy(hdrs);
        ngx_gdrive_job_retry(job, 0);
        return;
    }

    job->in_flight = 1;
}


static void
ngx_gdrive_job_delivered(void *data, rd_kafka_resp_err_t err,
    int32_t partition, int64_t offset)
{
    ngx_gdrive_job_t *job = data;

    job->in_flight = 0;

    if (job->part == NULL) {
        /* cancelled by a revocation while the report was on its way */
        ngx_gdrive_job_free(job);
        return;
    }

    if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        if (job->to_dlq) {
            ngx_log_error(NGX_LOG_WARN, &job->log, 0,
                          "gdrive: job done: sent to the dead-letter topic "
                          "(%s)", job->error);

        } else {
            ngx_log_error(NGX_LOG_INFO, &job->log, 0,
                          "gdrive: job done: result published");
        }

        ngx_gdrive_job_terminal(job);
        return;
    }

    ngx_log_error(NGX_LOG_ERR, &job->log, 0,
                  "gdrive: job output not delivered: %s",
                  rd_kafka_err2str(err));

    job->error = "kafka_error";
    ngx_gdrive_job_retry(job, 0);
}


/*
 * Exponential backoff with full jitter: a uniform wait in
 * [0, min(max, base * 2^attempt)], or at least what the server asked.
 * Output that Kafka does not take is retried without end: dropping it
 * would lose the trigger, and the partition waits for it in order.
 */

static void
ngx_gdrive_job_retry(ngx_gdrive_job_t *job, ngx_msec_t at_least)
{
    ngx_msec_t                    cap, delay;
    ngx_http_gdrive_main_conf_t  *gmcf;

    gmcf = ngx_gdrive_worker.gmcf;

    cap = gmcf->retry_base << ngx_min(job->attempt, 20);

    if (cap > gmcf->retry_max || cap < gmcf->retry_base) {
        cap = gmcf->retry_max;
    }

    delay = (ngx_msec_t) ngx_random() % (cap + 1);

    if (delay < at_least) {
        delay = at_least;
    }

    job->attempt++;
    ngx_gdrive_worker.status->retries++;
    ngx_gdrive_metric_job_retry(job->error);
    ngx_gdrive_status_job_stage(job->status_slot, "backoff");

    ngx_log_error(NGX_LOG_INFO, &job->log, 0,
                  "gdrive: job retries in %Mms (attempt %ui): %s",
                  delay, job->attempt + 1, job->error);

    ngx_add_timer(&job->timer, delay);
}


static void
ngx_gdrive_job_timer(ngx_event_t *ev)
{
    ngx_gdrive_job_run(ev->data);
}


static void
ngx_gdrive_job_terminal(ngx_gdrive_job_t *job)
{
    int64_t               next;
    ngx_queue_t          *q;
    ngx_gdrive_job_t     *head;
    ngx_gdrive_part_t    *part;
    ngx_gdrive_engine_t  *e;
    rd_kafka_resp_err_t   err;

    e = &ngx_gdrive_engine;
    part = job->part;

    job->terminal = 1;
    e->inflight--;

    if (job->to_dlq) {
        ngx_gdrive_worker.status->dead_letters++;
        ngx_gdrive_metric_dlq("produced", 1);

    } else {
        ngx_gdrive_worker.status->results++;
    }

    ngx_gdrive_metric_job_done(job->to_dlq ? "dlq" : "validated",
                               job->to_dlq ? job->error : NULL,
                               ngx_current_msec - job->started);
    ngx_gdrive_status_job_end(job->status_slot);
    job->status_slot = -1;

    /* store past the run of terminal jobs at the head of the partition */

    next = -1;

    while (!ngx_queue_empty(&part->jobs)) {
        q = ngx_queue_head(&part->jobs);
        head = ngx_queue_data(q, ngx_gdrive_job_t, queue);

        if (!head->terminal) {
            break;
        }

        next = head->msg->offset + 1;
        ngx_queue_remove(q);
        ngx_gdrive_job_free(head);
    }

    if (next != -1) {
        err = ngx_gdrive_kafka_store_offset(e->consumer, e->topic,
                                            part->partition, next);
        if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            ngx_log_error(NGX_LOG_INFO, ngx_cycle->log, 0,
                          "gdrive: offset %L of partition %D not stored: %s",
                          next, part->partition, rd_kafka_err2str(err));

        } else {
            part->stored = next;
        }
    }

    ngx_gdrive_job_status(e);

    if (e->consumer->paused && !e->exiting
        && e->inflight <= e->low_watermark)
    {
        ngx_gdrive_kafka_consumer_pause(e->consumer, 0);
    }

    if (e->exiting && e->inflight == 0) {
        ngx_gdrive_kafka_consumer_close(e->consumer);
    }
}


static void
ngx_gdrive_job_assigned(void *data, rd_kafka_topic_partition_list_t *parts)
{
    int  i;

    for (i = 0; i < parts->cnt; i++) {
        (void) ngx_gdrive_job_part(parts->elems[i].partition, 1);
    }

    ngx_gdrive_job_status(data);
}


/* revoked: every job of those partitions is cancelled; none is stored */

static void
ngx_gdrive_job_revoked(void *data, rd_kafka_topic_partition_list_t *parts)
{
    ngx_gdrive_engine_t *e = data;

    int                 i;
    ngx_queue_t        *q;
    ngx_gdrive_job_t   *job;
    ngx_gdrive_part_t  *part;

    for (i = 0; i < parts->cnt; i++) {
        part = ngx_gdrive_job_part(parts->elems[i].partition, 0);

        if (part == NULL) {
            continue;
        }

        while (!ngx_queue_empty(&part->jobs)) {
            q = ngx_queue_head(&part->jobs);
            job = ngx_queue_data(q, ngx_gdrive_job_t, queue);
            ngx_queue_remove(q);

            if (!job->terminal) {
                e->inflight--;
                ngx_gdrive_worker.status->cancelled++;
                ngx_gdrive_status_job_end(job->status_slot);
                job->status_slot = -1;
                ngx_log_error(NGX_LOG_INFO, &job->log, 0,
                              "gdrive: job cancelled: partition revoked");
            }

            job->part = NULL;

            if (job->timer.timer_set) {
                ngx_del_timer(&job->timer);
            }

            if (job->token_busy) {
                ngx_gdrive_token_cancel(&job->token);
                job->token_busy = 0;
            }

            if (!job->in_flight) {
                ngx_gdrive_job_free(job);
            }
        }

        ngx_queue_remove(&part->queue);
        ngx_free(part);
    }

    ngx_gdrive_job_status(e);

    if (e->consumer->paused && !e->exiting
        && e->inflight <= e->low_watermark)
    {
        ngx_gdrive_kafka_consumer_pause(e->consumer, 0);
    }
}


static ngx_gdrive_part_t *
ngx_gdrive_job_part(int32_t partition, ngx_uint_t create)
{
    ngx_queue_t        *q;
    ngx_gdrive_part_t  *part;

    for (q = ngx_queue_head(&ngx_gdrive_engine.parts);
         q != ngx_queue_sentinel(&ngx_gdrive_engine.parts);
         q = ngx_queue_next(q))
    {
        part = ngx_queue_data(q, ngx_gdrive_part_t, queue);

        if (part->partition == partition) {
            return part;
        }
    }

    if (!create) {
        return NULL;
    }

    part = ngx_calloc(sizeof(ngx_gdrive_part_t), ngx_cycle->log);
    if (part == NULL) {
        return NULL;
    }

    part->partition = partition;
    part->stored = -1;
    ngx_queue_init(&part->jobs);
    ngx_queue_insert_tail(&ngx_gdrive_engine.parts, &part->queue);

    return part;
}


/*
 * Reload and quit: stop taking messages, give in-flight jobs the grace
 * period, then leave the group (committing what is terminal).
 */

static void
ngx_gdrive_job_exiting(void *data)
{
    ngx_gdrive_engine_t *e = data;

    if (e->exiting) {
        return;
    }

    e->exiting = 1;

    ngx_log_error(NGX_LOG_NOTICE, ngx_cycle->log, 0,
                  "gdrive: stopping the consumer, %ui jobs in flight",
                  e->inflight);

    ngx_gdrive_kafka_consumer_pause(e->consumer, 1);

    if (e->inflight == 0) {
        ngx_gdrive_kafka_consumer_close(e->consumer);
        return;
    }

    e->shutdown.handler = ngx_gdrive_job_shutdown_handler;
    e->shutdown.data = e;
    e->shutdown.log = ngx_cycle->log;
    ngx_add_timer(&e->shutdown, ngx_gdrive_worker.gmcf->shutdown_timeout);
}


static void
ngx_gdrive_job_shutdown_handler(ngx_event_t *ev)
{
    ngx_gdrive_engine_t *e = ev->data;

    ngx_log_error(NGX_LOG_NOTICE, ngx_cycle->log, 0,
                  "gdrive: grace period over, %ui jobs left for "
                  "redelivery", e->inflight);

    ngx_gdrive_kafka_consumer_close(e->consumer);
}


static void
ngx_gdrive_job_closed(void *data)
{
    ngx_gdrive_engine_t *e = data;

    if (e->shutdown.timer_set) {
        ngx_del_timer(&e->shutdown);
    }

    ngx_log_error(NGX_LOG_NOTICE, ngx_cycle->log, 0,
                  "gdrive: consumer left the group");
}


static void
ngx_gdrive_job_tick(void *data)
{
    ngx_gdrive_job_status(data);
}


/* this worker's slot in the shared zone, for the status page and metrics */

static void
ngx_gdrive_job_status(ngx_gdrive_engine_t *e)
{
    int64_t                           lo, hi, done;
    ngx_uint_t                        n;
    ngx_queue_t                      *q;
    ngx_gdrive_part_t                *part;
    ngx_gdrive_worker_status_t       *st;
    rd_kafka_topic_partition_list_t  *pos;

    st = ngx_gdrive_worker.status;

    st->inflight = e->inflight;

    if (e->inflight > st->inflight_peak) {
        st->inflight_peak = e->inflight;
    }

    st->paused = e->consumer ? e->consumer->paused : 0;

    n = 0;

    for (q = ngx_queue_head(&e->parts);
         q != ngx_queue_sentinel(&e->parts) && n < NGX_GDRIVE_MAX_PARTITIONS;
         q = ngx_queue_next(q))
    {
        part = ngx_queue_data(q, ngx_gdrive_part_t, queue);
        st->partitions[n] = part->partition;
        st->stored[n] = part->stored;
        st->high[n] = -1;
        st->lag[n] = -1;

        /* the cached watermark: no request to the broker from here */

        if (e->consumer && e->consumer->rk
            && rd_kafka_get_watermark_offsets(e->consumer->rk, e->topic,
                                              part->partition, &lo, &hi)
               == RD_KAFKA_RESP_ERR_NO_ERROR
            && hi >= 0)
        {
            st->high[n] = hi;
            done = part->stored;

            if (done < 0) {
                pos = rd_kafka_topic_partition_list_new(1);
                rd_kafka_topic_partition_list_add(pos, e->topic,
                                                  part->partition);

                if (rd_kafka_position(e->consumer->rk, pos)
                    == RD_KAFKA_RESP_ERR_NO_ERROR)
                {
                    done = pos->elems[0].offset;
                }

                rd_kafka_topic_partition_list_destroy(pos);
            }

            if (done >= 0) {
                st->lag[n] = ngx_max(hi - done, 0);

            } else if (lo >= 0 && hi <= lo) {
                /* nothing in the partition to be behind on */
                st->lag[n] = 0;
            }
        }

        n++;
    }

    st->nparts = n;
}


static void
ngx_gdrive_job_free(ngx_gdrive_job_t *job)
{
    if (job->timer.timer_set) {
        ngx_del_timer(&job->timer);
    }

    if (job->token_busy) {
        ngx_gdrive_token_cancel(&job->token);
    }

    ngx_gdrive_trigger_free(&job->trigger);
    rd_kafka_message_destroy(job->msg);
    ngx_destroy_pool(job->pool);
}


static u_char *
ngx_gdrive_job_log_handler(ngx_log_t *log, u_char *buf, size_t len)
{
    ngx_gdrive_job_t *job = log->data;

    return ngx_snprintf(buf, len, ", trigger: %s, partition: %D, offset: %O",
                        job->id, job->msg->partition,
                        (off_t) job->msg->offset);
}
