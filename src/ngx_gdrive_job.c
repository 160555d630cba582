
/*
 * nginx-gdrive-worker: the job engine.
 *
 * Pipeline layer: one job per Kafka message.  A job runs its stages as
 * asynchronous steps on the event loop and ends terminal: its result
 * event acknowledged, or its DLQ record acknowledged.  A partition's
 * offset is stored only past a run of terminal jobs, so a crash, a
 * rebalance or a reload redelivers what was not finished and loses
 * nothing.  gdrive_max_inflight jobs run and up to
 * gdrive_kafka_max_poll_records more wait their turn; with both full the
 * consumer pauses, and it resumes once half of the waiting ones started.
 *
 * Stages: validate -> token -> the action -> result.  sync_file: file
 * metadata (shortcuts resolved) -> store (is the object there already?)
 * -> content streamed from Drive into S3.  sync_folder: listing pages,
 * a child trigger per file, each acknowledged before the next page.
 * sync_changes: the changes feed, child triggers and "deleted" results.
 * Every step starts, and on its answer goes on, retries from the token
 * (transient, bounded by gdrive_retry), or sends the message to the DLQ
 * (permanent, or attempts exhausted).
 *
 * This file is the engine: taking messages, running, parking and
 * retrying jobs, their failures, offsets, rebalances and shutdown.  The
 * steps of sync_file are in ngx_gdrive_job_file.c, the listings in
 * ngx_gdrive_job_list.c, the result and the dead letter in
 * ngx_gdrive_job_output.c.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <jansson.h>

#include "ngx_gdrive_job_private.h"
#include "ngx_gdrive_drive.h"
#include "ngx_gdrive_job.h"
#include "ngx_gdrive_kafka.h"
#include "ngx_gdrive_metrics.h"
#include "ngx_gdrive_oauth.h"
#include "ngx_gdrive_ratelimit.h"
#include "ngx_gdrive_s3.h"


/* quota circuit: how many pauses a job waits through before the DLQ */
#define NGX_GDRIVE_QUOTA_WAITS    96


static ngx_uint_t ngx_gdrive_job_room(void *data);
static void ngx_gdrive_job_untake(ngx_gdrive_engine_t *e,
    ngx_gdrive_job_t *job);
static void ngx_gdrive_job_message(void *data, rd_kafka_message_t *msg);
static void ngx_gdrive_job_start_waiting(ngx_gdrive_engine_t *e);
static void ngx_gdrive_job_park(ngx_gdrive_job_t *job, ngx_uint_t park);
static void ngx_gdrive_job_drive_waiting(ngx_gdrive_drive_t *d,
    ngx_uint_t waiting);
static void ngx_gdrive_job_token_done(ngx_gdrive_token_req_t *req);
static void ngx_gdrive_job_action(ngx_gdrive_job_t *job);
static void ngx_gdrive_job_drive_done(ngx_gdrive_drive_t *d);
static void ngx_gdrive_job_timer(ngx_event_t *ev);
static void ngx_gdrive_job_assigned(void *data,
    rd_kafka_topic_partition_list_t *parts);
static void ngx_gdrive_job_revoked(void *data,
    rd_kafka_topic_partition_list_t *parts);
static ngx_uint_t ngx_gdrive_job_draining(void *data,
    rd_kafka_topic_partition_list_t *parts);
static void ngx_gdrive_job_drained(ngx_gdrive_engine_t *e);
static void ngx_gdrive_job_leave_handler(ngx_event_t *ev);
static void ngx_gdrive_job_hold_learned(ngx_gdrive_part_t *part,
    ngx_msec_t held);
static ngx_gdrive_part_t *ngx_gdrive_job_part(int32_t partition,
    ngx_uint_t create);
static void ngx_gdrive_job_exiting(void *data);
static void ngx_gdrive_job_shutdown_handler(ngx_event_t *ev);
static void ngx_gdrive_job_closed(void *data);
static void ngx_gdrive_job_tick(void *data);
static void ngx_gdrive_job_status(ngx_gdrive_engine_t *e);
static void ngx_gdrive_job_trace(ngx_gdrive_job_t *job);
static void ngx_gdrive_job_fleet(ngx_gdrive_engine_t *e, ngx_uint_t gone);
static u_char *ngx_gdrive_job_log_handler(ngx_log_t *log, u_char *buf,
    size_t len);


static ngx_gdrive_engine_t  ngx_gdrive_engine;


static const char  *ngx_gdrive_job_stages[] = {
    "received",
    "token",
    "metadata",
    "store",
    "delete",
    "content",
    "listing",
    "changes",
    "result",
    "dlq",
    "queued",
    "backoff"
};


ngx_int_t
ngx_gdrive_job_init(ngx_cycle_t *cycle, ngx_http_gdrive_main_conf_t *gmcf,
    ngx_gdrive_job_ctx_t *ctx)
{
    ngx_gdrive_engine_t       *e;
    ngx_gdrive_consumer_cb_t   cb;

    e = &ngx_gdrive_engine;

    e->gmcf = gmcf;
    e->producer = ctx->producer;
    e->triggers = ctx->triggers;
    e->trigger_topic = ctx->trigger_topic;
    e->result_topic = ctx->result_topic;
    e->dlq_topic = ctx->dlq_topic;
    e->status = ctx->status;

    ngx_queue_init(&e->parts);
    e->leave.handler = ngx_gdrive_job_leave_handler;
    e->leave.data = e;
    e->leave.log = cycle->log;
    /*
     * gdrive_max_inflight jobs run; up to gdrive_kafka_max_poll_records
     * more wait their turn (a message and a small pool each).  The
     * consumer pauses only when both are full, and resumes when half of
     * the waiting ones have started: a paused partition drops what
     * librdkafka fetched ahead, and after a resume its first messages
     * come some hundreds of milliseconds later, which the queue covers.
     */

    ngx_queue_init(&e->waiting);
    e->max_inflight = gmcf->max_inflight;
    e->max_taken = gmcf->max_inflight + gmcf->kafka_max_poll_records;
    e->max_bytes = gmcf->max_queued_bytes;
    e->low_watermark = gmcf->max_inflight + gmcf->kafka_max_poll_records / 2;

    ngx_cpystrn((u_char *) e->topic, gmcf->kafka_topic.data,
                ngx_min(sizeof(e->topic), gmcf->kafka_topic.len + 1));

    cb.message = ngx_gdrive_job_message;
    cb.assigned = ngx_gdrive_job_assigned;
    cb.revoked = ngx_gdrive_job_revoked;
    cb.draining = ngx_gdrive_job_draining;
    cb.room = ngx_gdrive_job_room;
    cb.exiting = ngx_gdrive_job_exiting;
    cb.closed = ngx_gdrive_job_closed;
    cb.tick = ngx_gdrive_job_tick;
    cb.data = e;

    e->consumer = ngx_gdrive_kafka_consumer(cycle, gmcf, &cb);

    /* the slot was cleared for this process: what it held is no more */
    ngx_gdrive_job_fleet(e, e->consumer == NULL);

    if (e->consumer == NULL) {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * exit_process: the loop has ended, the consumer goes at once.  Its
 * structure stays, without a client: the producers' flush that follows
 * still serves delivery reports, whose jobs end and ask it to store
 * offsets or resume, and find it gone (no client) rather than NULL.
 */

void
ngx_gdrive_job_exit(void)
{
    ngx_gdrive_engine_t  *e;

    e = &ngx_gdrive_engine;

    if (e->consumer) {
        ngx_gdrive_kafka_destroy(e->consumer, 0);
    }

    if (e->status) {
        ngx_gdrive_job_fleet(e, 1);
    }
}


ngx_uint_t
ngx_gdrive_job_inflight(void)
{
    return ngx_gdrive_engine.inflight;
}


const ngx_gdrive_engine_t *
ngx_gdrive_job_engine(void)
{
    return &ngx_gdrive_engine;
}


static ngx_uint_t
ngx_gdrive_job_room(void *data)
{
    ngx_gdrive_engine_t *e = data;

    /*
     * Room by count and by bytes: up to 64 KiB a trigger, but a message
     * refused as too large may be megabytes, and waiting ones are whole.
     */

    return (e->inflight < e->max_taken && e->bytes < e->max_bytes
            && !e->exiting)
           ? e->max_taken - e->inflight : 0;
}


/* a message taken is given up: ended, cancelled or handed back */

static void
ngx_gdrive_job_untake(ngx_gdrive_engine_t *e, ngx_gdrive_job_t *job)
{
    e->inflight--;
    e->bytes -= job->msg->len + job->msg->key_len;
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

        ngx_gdrive_kafka_message_free(msg);
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
    job->child_dr.handler = ngx_gdrive_job_child_delivered;
    job->child_dr.data = job;
    job->resume.handler = ngx_gdrive_job_resume_handler;
    job->resume.data = job;
    job->resume.log = &job->log;
    ngx_cpystrn(job->id, (u_char *) "-", sizeof(job->id));
    ngx_gdrive_job_trace(job);
    job->status_slot = ngx_gdrive_status_job_begin(job->id, 1, msg->partition,
                                                   msg->offset);

    ngx_queue_insert_tail(&part->jobs, &job->queue);

    e->inflight++;
    e->bytes += msg->len + msg->key_len;

    if (e->running >= e->max_inflight) {
        ngx_gdrive_job_set_stage(job, NGX_GDRIVE_STAGE_QUEUED);
        job->waiting = 1;
        ngx_queue_insert_tail(&e->waiting, &job->wait);
        ngx_gdrive_job_status(e);
        return;
    }

    e->running++;
    ngx_gdrive_job_status(e);

    ngx_gdrive_job_run(job);
}


/* a running job ended: the next waiting ones start, in arrival order */

static void
ngx_gdrive_job_start_waiting(ngx_gdrive_engine_t *e)
{
    ngx_queue_t       *q;
    ngx_gdrive_job_t  *job;

    while (e->running < e->max_inflight && !ngx_queue_empty(&e->waiting)) {
        q = ngx_queue_head(&e->waiting);
        job = ngx_queue_data(q, ngx_gdrive_job_t, wait);
        ngx_queue_remove(q);

        job->waiting = 0;
        job->started = ngx_current_msec;
        e->running++;

        ngx_gdrive_job_run(job);
    }
}


/*
 * A job that waits on a timer (backoff, the rate limiter, a quota pause)
 * gives its place to a waiting one: an integration held back by Google
 * does not hold back the others of the worker.  The jobs taken stay
 * bounded all the same.
 */

static void
ngx_gdrive_job_park(ngx_gdrive_job_t *job, ngx_uint_t park)
{
    ngx_gdrive_engine_t  *e;

    e = &ngx_gdrive_engine;

    if (park == job->parked || job->part == NULL) {
        return;
    }

    job->parked = park;

    if (park) {
        e->running--;
        e->parked++;

        if (!e->exiting) {
            ngx_gdrive_job_start_waiting(e);
        }

    } else {
        e->running++;
        e->parked--;
    }
}


static void
ngx_gdrive_job_drive_waiting(ngx_gdrive_drive_t *d, ngx_uint_t waiting)
{
    ngx_gdrive_job_park(d->data, waiting);
}


void
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

        if (!ngx_gdrive_integration_allowed(ngx_gdrive_engine.gmcf,
                                            job->trigger.integration_id.data,
                                            job->trigger.integration_id.len))
        {
            ngx_gdrive_job_fail(job, "integration_not_allowed",
                                "the integration is not one of "
                                "gdrive_integrations", 1, -1);
            return;
        }
        ngx_gdrive_status_job_id(job->status_slot, job->id,
                                 ngx_strlen(job->id));

        ngx_log_debug1(NGX_LOG_DEBUG_EVENT, &job->log, 0,
                       "gdrive: job %s started",
                       ngx_gdrive_action_name(job->trigger.action));

        /* fall through */

    case NGX_GDRIVE_STAGE_TOKEN:

        ngx_gdrive_job_set_stage(job, NGX_GDRIVE_STAGE_TOKEN);
        job->token.pool = job->pool;
        job->token.log = &job->log;
        job->token.integration.data = (u_char *)
                                      job->trigger.integration_id.data;
        job->token.integration.len = job->trigger.integration_id.len;
        job->token.subject.data = (u_char *) job->trigger.subject.data;
        job->token.subject.len = job->trigger.subject.len;
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

    default:
        /* a Drive or S3 step is retried from the token */
        ngx_gdrive_job_set_stage(job, NGX_GDRIVE_STAGE_TOKEN);
        ngx_gdrive_job_run(job);
        return;
    }
}


/* the stage, and the status page's job slot shows it */

void
ngx_gdrive_job_set_stage(ngx_gdrive_job_t *job, ngx_gdrive_stage_e stage)
{
    if (stage < NGX_GDRIVE_STAGE_QUEUED) {
        job->stage = stage;
    }

    ngx_gdrive_status_job_stage(job->status_slot,
                                ngx_gdrive_job_stages[stage]);
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

    job->drive.pool = job->pool;
    job->drive.log = &job->log;
    job->drive.integration = job->token.integration;
    job->drive.token = req->token;
    job->drive.handler = ngx_gdrive_job_drive_done;
    job->drive.waiting = ngx_gdrive_job_drive_waiting;
    job->drive.data = job;

    ngx_gdrive_job_action(job);
}


/* every attempt starts the action afresh: its steps are idempotent */

static void
ngx_gdrive_job_action(ngx_gdrive_job_t *job)
{
    ngx_gdrive_trigger_t  *t;

    t = &job->trigger;

    if (job->meta) {
        json_decref(job->meta);
        job->meta = NULL;
    }

    ngx_str_null(&job->shortcut_id);
    ngx_str_null(&job->page_token);
    ngx_str_null(&job->start_token);
    ngx_str_null(&job->list_drive);
    ngx_memzero(&job->upload, sizeof(ngx_gdrive_s3_upload_t));
    job->export_link = 0;
    job->listed = 0;
    job->pruned = 0;
    job->narrow = 0;
    job->narrowed = 0;
    job->children = 0;
    job->deleted = 0;
    job->pages = 0;
    job->child_errors = 0;
    job->page_error = NULL;
    job->outcome = NULL;

    switch (t->action) {

    case NGX_GDRIVE_SYNC_FILE:
        job->file_id.data = (u_char *) t->file_id.data;
        job->file_id.len = t->file_id.len;
        ngx_gdrive_job_file(job);
        return;

    case NGX_GDRIVE_SYNC_FOLDER:
        ngx_gdrive_job_list(job);
        return;

    default: /* NGX_GDRIVE_SYNC_CHANGES */

        if (t->page_token.data
            && ngx_gdrive_job_set_token(job, t->page_token.data,
                                        t->page_token.len, 0)
               != NGX_OK)
        {
            ngx_gdrive_job_fail(job, "internal_error", "out of memory", 0,
                                -1);
            return;
        }

        ngx_gdrive_job_changes(job);
        return;
    }
}


/*
 * Every Drive answer of the job: failures first (a refused token is
 * dropped and asked for again once), then the step that waited for it.
 */

static void
ngx_gdrive_job_drive_done(ngx_gdrive_drive_t *d)
{
    ngx_gdrive_job_t *job = d->data;

    if (d->rc != NGX_OK) {

        if (d->held && job->part) {
            ngx_gdrive_job_hold_learned(job->part, d->held);
        }

        if (ngx_strcmp(d->code, "auth_invalid") == 0 && !job->auth_retried) {
            ngx_log_error(NGX_LOG_INFO, &job->log, 0,
                          "gdrive: access token refused, refreshing it");

            ngx_gdrive_job_stop_io(job);
            ngx_gdrive_token_invalidate(&job->token.key, &job->drive.token);
            job->auth_retried = 1;
            ngx_gdrive_job_set_stage(job, NGX_GDRIVE_STAGE_TOKEN);
            ngx_gdrive_job_run(job);
            return;
        }

        if (job->stage == NGX_GDRIVE_STAGE_CONTENT) {

            if (ngx_strcmp(d->code, "sink_failed") == 0) {
                /* the upload failed: its done() tells why */
                return;
            }

            if (ngx_strcmp(d->code, "export_too_large") == 0
                && !job->export_link)
            {
                ngx_log_error(NGX_LOG_INFO, &job->log, 0,
                              "gdrive: export over Drive's limit, "
                              "trying the file's export link");

                ngx_gdrive_job_stop_io(job);
                job->export_link = 1;
                ngx_gdrive_job_store(job);
                return;
            }
        }

        ngx_gdrive_job_stop_io(job);
        ngx_gdrive_job_fail(job, d->code, (char *) d->detail, d->permanent,
                            d->retry_after);
        return;
    }

    switch (job->stage) {

    case NGX_GDRIVE_STAGE_FILE:
        job->meta = d->json;
        job->meta_carried = 0;
        d->json = NULL;
        ngx_gdrive_job_file_meta(job);
        return;

    case NGX_GDRIVE_STAGE_CONTENT:
        ngx_gdrive_job_content_done(job);
        return;

    case NGX_GDRIVE_STAGE_LIST:
        if (job->narrow && !job->narrowed) {
            ngx_gdrive_job_list_drive_done(job);
            return;
        }

        ngx_gdrive_job_list_page(job);
        return;

    case NGX_GDRIVE_STAGE_CHANGES:
        ngx_gdrive_job_changes_page(job);
        return;

    default:
        return;
    }
}


/* whatever the job has going on outside: stopped, an open upload aborted */

void
ngx_gdrive_job_stop_io(ngx_gdrive_job_t *job)
{
    ngx_gdrive_drive_cancel(&job->drive);

    if (job->resume.posted) {
        ngx_delete_posted_event(&job->resume);
    }

    if (job->upload_busy) {
        job->upload_busy = 0;
        ngx_gdrive_s3_upload_abort(&job->upload);
    }

    if (job->prune_busy) {
        job->prune_busy = 0;
        ngx_gdrive_s3_delete_cancel(&job->prune);
    }
}


/*
 * A failed stage: transient failures are retried by the backoff, up to
 * gdrive_retry attempts; permanent ones and the last attempt go to the
 * DLQ with the error.
 */

void
ngx_gdrive_job_fail(ngx_gdrive_job_t *job, const char *code,
    const char *detail, ngx_uint_t permanent, ngx_int_t retry_after)
{
    job->error = code;
    ngx_cpystrn(job->detail, (u_char *) detail, sizeof(job->detail));
    ngx_gdrive_status_error(job->id, ngx_strlen(job->id), code, detail);

    if (ngx_strcmp(code, "quota_exhausted") == 0
        && job->quota_waits < NGX_GDRIVE_QUOTA_WAITS)
    {
        /* the integration's circuit is open: wait, burn no attempt */
        job->quota_waits++;
        ngx_gdrive_job_retry(job, retry_after > 0
                                  ? (ngx_msec_t) retry_after * 1000 : 0);
        job->attempt--;
        return;
    }

    if (!permanent
        && job->attempt + 1 < ngx_gdrive_engine.gmcf->retry_attempts)
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
    ngx_gdrive_job_set_stage(job, NGX_GDRIVE_STAGE_DLQ);
    ngx_gdrive_job_dlq(job);
}


/*
 * Exponential backoff with full jitter: a uniform wait in
 * [0, min(max, base * 2^attempt)], or at least what the server asked.
 * Output that Kafka does not take is retried without end: dropping it
 * would lose the trigger, and the partition waits for it in order.
 */

void
ngx_gdrive_job_retry(ngx_gdrive_job_t *job, ngx_msec_t at_least)
{
    ngx_msec_t                    cap, delay;
    ngx_http_gdrive_main_conf_t  *gmcf;

    gmcf = ngx_gdrive_engine.gmcf;

    cap = gmcf->retry_base << ngx_min(job->attempt, 20);

    if (cap > gmcf->retry_max || cap < gmcf->retry_base) {
        cap = gmcf->retry_max;
    }

    delay = (ngx_msec_t) ngx_random() % (cap + 1);

    /* a server's Retry-After is honoured up to the longest wait we know */

    if (at_least > ngx_max(gmcf->retry_max, gmcf->quota_pause)) {
        at_least = ngx_max(gmcf->retry_max, gmcf->quota_pause);
    }

    if (delay < at_least) {
        delay = at_least;
    }

    job->attempt++;
    ngx_gdrive_engine.status->retries++;
    ngx_gdrive_metric_job_retry(job->error);
    ngx_gdrive_job_set_stage(job, NGX_GDRIVE_STAGE_BACKOFF);

    ngx_log_error(NGX_LOG_INFO, &job->log, 0,
                  "gdrive: job retries in %Mms (attempt %ui): %s",
                  delay, job->attempt + 1, job->error);

    ngx_add_timer(&job->timer, delay);
    ngx_gdrive_job_park(job, 1);
}


static void
ngx_gdrive_job_timer(ngx_event_t *ev)
{
    ngx_gdrive_job_park(ev->data, 0);
    ngx_gdrive_job_run(ev->data);
}


void
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
    ngx_gdrive_job_untake(e, job);
    e->running--;

    if (job->to_dlq) {
        ngx_gdrive_engine.status->dead_letters++;
        ngx_gdrive_metric_dlq("produced", 1);

    } else {
        ngx_gdrive_engine.status->results++;
    }

    ngx_gdrive_metric_job_done(job->to_dlq ? "dlq"
                               : (job->outcome ? job->outcome : "other"),
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
                          next, part->partition,
                          ngx_gdrive_kafka_strerror(err));

        } else {
            part->stored = next;
        }
    }

    if (!e->exiting) {
        ngx_gdrive_job_start_waiting(e);
    }

    ngx_gdrive_job_status(e);

    if (e->consumer->paused && !e->exiting
        && e->inflight <= e->low_watermark
        && e->bytes <= e->max_bytes / 2)
    {
        ngx_gdrive_kafka_consumer_pause(e->consumer, 0);
    }

    if (part->draining && ngx_queue_empty(&part->jobs)) {
        ngx_gdrive_job_drained(e);
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
    ngx_gdrive_job_fleet(data, 0);
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
                ngx_gdrive_job_untake(e, job);
                ngx_gdrive_engine.status->cancelled++;
                ngx_gdrive_status_job_end(job->status_slot);
                job->status_slot = -1;
                ngx_log_error(NGX_LOG_INFO, &job->log, 0,
                              "gdrive: job cancelled: partition revoked");

                if (job->waiting) {
                    job->waiting = 0;
                    ngx_queue_remove(&job->wait);

                } else if (job->parked) {
                    job->parked = 0;
                    e->parked--;

                } else {
                    e->running--;
                }
            }

            job->part = NULL;

            if (job->timer.timer_set) {
                ngx_del_timer(&job->timer);
            }

            if (job->token_busy) {
                ngx_gdrive_token_cancel(&job->token);
                job->token_busy = 0;
            }

            ngx_gdrive_job_stop_io(job);

            if (!job->in_flight && job->pending == 0) {
                ngx_gdrive_job_free(job);
            }
        }

        ngx_queue_remove(&part->queue);
        ngx_free(part);
    }

    if (!e->exiting) {
        ngx_gdrive_job_start_waiting(e);
    }

    ngx_gdrive_job_status(e);
    ngx_gdrive_job_fleet(e, 0);

    if (e->consumer->paused && !e->exiting
        && e->inflight <= e->low_watermark
        && e->bytes <= e->max_bytes / 2)
    {
        ngx_gdrive_kafka_consumer_pause(e->consumer, 0);
    }

    /*
     * A quitting worker with nothing left leaves the group now (after the
     * rebalance callback): kept, it would be handed partitions it never
     * takes from, until gdrive_shutdown_timeout.
     */

    if (e->exiting && e->inflight == 0 && !e->consumer->closing
        && !e->leave.posted)
    {
        ngx_post_event(&e->leave, &ngx_posted_events);
    }
}


/*
 * Revoked, and the consumer lets the jobs of these partitions end first:
 * those that did not start are handed back (their messages go to the next
 * owner), the others run on.  The jobs that run on are returned; with
 * none, the revoke goes on at once.
 */

static ngx_uint_t
ngx_gdrive_job_draining(void *data, rd_kafka_topic_partition_list_t *parts)
{
    ngx_gdrive_engine_t *e = data;

    int                 i;
    ngx_uint_t          n, held;
    ngx_msec_t          deadline;
    ngx_queue_t        *q, *next;
    ngx_gdrive_job_t   *job;
    ngx_gdrive_part_t  *part;

    n = 0;

    /* the drain's deadline, as the consumer sets it */
    deadline = ngx_current_msec
               + ngx_min(e->gmcf->shutdown_timeout,
                         e->gmcf->kafka_max_poll_interval / 2);

    for (i = 0; i < parts->cnt; i++) {
        part = ngx_gdrive_job_part(parts->elems[i].partition, 0);

        if (part == NULL) {
            continue;
        }

        /*
         * A partition whose first job sleeps past the deadline (a
         * Retry-After hold, a quota pause) commits nothing more before
         * it: its jobs are not waited for, the revoke cancels them.
         */

        held = 0;

        if (!ngx_queue_empty(&part->jobs)) {
            job = ngx_queue_data(ngx_queue_head(&part->jobs),
                                 ngx_gdrive_job_t, queue);

            held = (job->parked && !job->terminal && job->timer.timer_set
                    && (ngx_msec_int_t) (job->timer.timer.key - deadline)
                       > 0);
        }

        /* waiting jobs start in arrival order: they are the last ones */

        for (q = ngx_queue_head(&part->jobs);
             q != ngx_queue_sentinel(&part->jobs);
             q = next)
        {
            next = ngx_queue_next(q);
            job = ngx_queue_data(q, ngx_gdrive_job_t, queue);

            if (!job->waiting) {
                if (!job->terminal && !held) {
                    n++;
                }

                continue;
            }

            ngx_queue_remove(q);
            ngx_queue_remove(&job->wait);
            job->waiting = 0;

            ngx_gdrive_job_untake(e, job);
            ngx_gdrive_engine.status->cancelled++;
            ngx_gdrive_status_job_end(job->status_slot);
            job->status_slot = -1;
            ngx_gdrive_job_free(job);
        }

        part->draining = !held && !ngx_queue_empty(&part->jobs);
    }

    if (n) {
        ngx_log_error(NGX_LOG_NOTICE, ngx_cycle->log, 0,
                      "gdrive: %ui jobs of revoked partitions end first",
                      n);
    }

    ngx_gdrive_job_status(e);

    return n;
}


/* a revoked partition's last job ended: are they all done? */

static void
ngx_gdrive_job_drained(ngx_gdrive_engine_t *e)
{
    ngx_queue_t        *q;
    ngx_gdrive_part_t  *part;

    for (q = ngx_queue_head(&e->parts);
         q != ngx_queue_sentinel(&e->parts);
         q = ngx_queue_next(q))
    {
        part = ngx_queue_data(q, ngx_gdrive_part_t, queue);

        if (part->draining && !ngx_queue_empty(&part->jobs)) {
            return;
        }
    }

    ngx_gdrive_kafka_revoke_drained(e->consumer);
}


static void
ngx_gdrive_job_leave_handler(ngx_event_t *ev)
{
    ngx_gdrive_engine_t *e = ev->data;

    if (e->exiting && e->inflight == 0 && e->consumer
        && !e->consumer->closing)
    {
        ngx_log_error(NGX_LOG_NOTICE, ngx_cycle->log, 0,
                      "gdrive: partitions revoked, no jobs left: "
                      "the consumer leaves the group");
        ngx_gdrive_kafka_consumer_close(e->consumer);
    }
}


/*
 * A Retry-After hold or an open quota circuit stays in the zone of the
 * instance that learned it; the next owner of the partition learns it
 * again from its first refused request.  Such a hold is "re-learned"
 * when it is the first hold learned on a partition since it was assigned
 * to this worker, and comes within the hold's length of the assignment:
 * a hold of that length learned by the former owner just before it gave
 * the partition up would still be in force.  Whether it was is not known
 * here; at most one is counted per assignment.
 */

static void
ngx_gdrive_job_hold_learned(ngx_gdrive_part_t *part, ngx_msec_t held)
{
    if (!part->first_hold) {
        return;
    }

    part->first_hold = 0;

    if ((ngx_msec_int_t) (ngx_current_msec - part->assigned)
        <= (ngx_msec_int_t) held)
    {
        ngx_gdrive_metric_hold_relearned();

        ngx_log_error(NGX_LOG_INFO, ngx_cycle->log, 0,
                      "gdrive: a hold of %M ms learned again on partition "
                      "%D, %M ms after it was assigned here", held,
                      part->partition, ngx_current_msec - part->assigned);
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
    part->assigned = ngx_current_msec;
    part->first_hold = 1;
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

    ngx_queue_t       *q;
    ngx_gdrive_job_t  *job;

    if (e->exiting) {
        return;
    }

    e->exiting = 1;

    ngx_log_error(NGX_LOG_NOTICE, ngx_cycle->log, 0,
                  "gdrive: stopping the consumer, %ui jobs in flight",
                  e->inflight);

    ngx_gdrive_kafka_consumer_pause(e->consumer, 1);

    /* jobs that did not start are left for redelivery at once */

    while (!ngx_queue_empty(&e->waiting)) {
        q = ngx_queue_head(&e->waiting);
        job = ngx_queue_data(q, ngx_gdrive_job_t, wait);

        ngx_queue_remove(q);
        ngx_queue_remove(&job->queue);

        ngx_gdrive_job_untake(e, job);
        ngx_gdrive_engine.status->cancelled++;
        ngx_gdrive_status_job_end(job->status_slot);
        ngx_gdrive_job_free(job);
    }

    ngx_gdrive_job_status(e);

    if (e->inflight == 0) {
        ngx_gdrive_kafka_consumer_close(e->consumer);
        return;
    }

    e->shutdown.handler = ngx_gdrive_job_shutdown_handler;
    e->shutdown.data = e;
    e->shutdown.log = ngx_cycle->log;
    ngx_add_timer(&e->shutdown, ngx_gdrive_engine.gmcf->shutdown_timeout);
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

    ngx_gdrive_job_fleet(e, 1);
}


static void
ngx_gdrive_job_tick(void *data)
{
    ngx_gdrive_job_status(data);
    ngx_gdrive_job_fleet(data, 0);
}


/*
 * What this worker holds of the trigger topic, for scope=fleet's share
 * and the status page: the partitions assigned, their topic's count, and
 * the member id.  A worker that ends (gone) holds nothing.  The slot is
 * written only while it is this process's: after a reload the new worker
 * of the same number owns it, and the old one, until it has left the
 * group, counts nowhere (a share too small, never too large).
 */

static void
ngx_gdrive_job_fleet(ngx_gdrive_engine_t *e, ngx_uint_t gone)
{
    ngx_uint_t                   n;
    ngx_queue_t                 *q;
    ngx_gdrive_worker_status_t  *st;

    st = e->status;

    if (st == NULL || st->pid != (ngx_atomic_uint_t) ngx_pid) {
        return;
    }

    n = 0;

    if (!gone) {
        for (q = ngx_queue_head(&e->parts);
             q != ngx_queue_sentinel(&e->parts);
             q = ngx_queue_next(q))
        {
            n++;
        }
    }

    st->held = n;
    st->topic_partitions = ngx_gdrive_kafka_partitions(e->triggers);

    if (gone) {
        st->member_id[0] = '\0';

    } else {
        ngx_gdrive_kafka_member_id(e->consumer, st->member_id,
                                   NGX_GDRIVE_MEMBER_ID_LEN);
    }

    ngx_gdrive_rate_share();
}


/* this worker's slot in the shared zone, for the status page and metrics */

static void
ngx_gdrive_job_status(ngx_gdrive_engine_t *e)
{
    ngx_uint_t                   n;
    ngx_queue_t                 *q;
    ngx_gdrive_part_t           *part;
    ngx_gdrive_worker_status_t  *st;

    st = e->status;

    st->inflight = e->running + e->parked;
    st->queued = e->inflight - e->running - e->parked;
    st->taken_bytes = e->bytes;

    if (e->running > st->inflight_peak) {
        st->inflight_peak = e->running;
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

        /* the cached watermark: no request to the broker from here */
        ngx_gdrive_kafka_lag(e->consumer, e->topic, part->partition,
                             part->stored, &st->high[n], &st->lag[n]);

        n++;
    }

    st->nparts = n;
}


void
ngx_gdrive_job_free(ngx_gdrive_job_t *job)
{
    if (job->timer.timer_set) {
        ngx_del_timer(&job->timer);
    }

    if (job->token_busy) {
        ngx_gdrive_token_cancel(&job->token);
    }

    ngx_gdrive_job_stop_io(job);

    if (job->meta) {
        json_decref(job->meta);
        job->meta = NULL;
    }

    ngx_gdrive_trigger_free(&job->trigger);
    ngx_gdrive_kafka_message_free(job->msg);
    ngx_destroy_pool(job->pool);
}


/*
 * The trace the job is in: the record's traceparent (and tracestate) when
 * it has one, valid; else, a trigger produced without one or with a bad
 * one, a trace started here.  The job is a span of its own, the parent of
 * every record it makes (children, results, its dead letter).
 */

static void
ngx_gdrive_job_trace(ngx_gdrive_job_t *job)
{
    size_t               len, n;
    u_char               name[256 + NGX_INT64_LEN * 2];
    ngx_int_t            rc;
    ngx_uint_t           invalid;
    const u_char        *v;
    ngx_gdrive_trace_t  *t;

    t = &job->trace;
    invalid = 0;

    rc = ngx_gdrive_kafka_header(job->msg, "traceparent", &v, &len);

    if (rc == NGX_OK && ngx_gdrive_traceparent_parse(t, v, len) == 0) {

        if (ngx_gdrive_kafka_header(job->msg, "tracestate", &v, &len)
            == NGX_OK
            && ngx_gdrive_tracestate_valid(v, len))
        {
            ngx_memcpy(t->state, v, len);
            t->state[len] = '\0';
            t->state_len = len;
        }

    } else {
        /* a redelivery, here or on another host, continues its trace */
        invalid = (rc != NGX_DECLINED);
        n = ngx_snprintf(name, sizeof(name), "%s/%D/%O",
                         ngx_gdrive_engine.topic, job->msg->partition,
                         (off_t) job->msg->offset)
            - name;
        ngx_gdrive_trace_derive(t, name, n);
    }

    ngx_gdrive_trace_span(t);
    ngx_gdrive_traceparent_print(t, t->span_id, job->traceparent);
    ngx_gdrive_trace_id_print(t, job->trace_id);

    if (invalid) {
        ngx_log_error(NGX_LOG_INFO, &job->log, 0,
                      "gdrive: the trigger's traceparent is not valid, "
                      "the job starts a trace");
    }
}


/* a record made from the job: its trace context; NULL: no memory */

rd_kafka_headers_t *
ngx_gdrive_job_trace_headers(ngx_gdrive_job_t *job)
{
    return ngx_gdrive_kafka_trace_headers(job->traceparent,
                                          job->trace.state_len
                                          ? job->trace.state : NULL);
}


static u_char *
ngx_gdrive_job_log_handler(ngx_log_t *log, u_char *buf, size_t len)
{
    ngx_gdrive_job_t *job = log->data;

    return ngx_snprintf(buf, len, ", trigger: %s, partition: %D, offset: %O, "
                        "trace: %s", job->id, job->msg->partition,
                        (off_t) job->msg->offset, job->trace_id);
}
