
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
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <ngx_sha1.h>
#include <jansson.h>

#include "ngx_gdrive.h"
#include "ngx_gdrive_s3.h"


/* a child trigger carries its file's metadata only up to this size */
#define NGX_GDRIVE_CARRIED_MAX    (16 * 1024)

/* a dead letter refused whole is cut in half down to this */
#define NGX_GDRIVE_DLQ_MIN_VALUE  1024

/* quota circuit: how many pauses a job waits through before the DLQ */
#define NGX_GDRIVE_QUOTA_WAITS    96


typedef struct ngx_gdrive_part_s  ngx_gdrive_part_t;
typedef struct ngx_gdrive_job_s   ngx_gdrive_job_t;


/*
 * A job's stage; ngx_gdrive_job_stages names it on the status page.
 * queued and backoff are waits, not stages: shown, while the stage the
 * job resumes at stays.
 */

typedef enum {
    NGX_GDRIVE_STAGE_VALIDATE = 0,
    NGX_GDRIVE_STAGE_TOKEN,
    NGX_GDRIVE_STAGE_FILE,
    NGX_GDRIVE_STAGE_STORE,
    NGX_GDRIVE_STAGE_DELETE,
    NGX_GDRIVE_STAGE_CONTENT,
    NGX_GDRIVE_STAGE_LIST,
    NGX_GDRIVE_STAGE_CHANGES,
    NGX_GDRIVE_STAGE_RESULT,
    NGX_GDRIVE_STAGE_DLQ,
    NGX_GDRIVE_STAGE_QUEUED,
    NGX_GDRIVE_STAGE_BACKOFF
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
    ngx_uint_t               quota_waits;
    const char              *error;      /* code of the last failure */
    u_char                   detail[256];
    u_char                   id[NGX_GDRIVE_ID_MAX_LEN + 1];

    ngx_gdrive_drive_t       drive;
    ngx_gdrive_s3_upload_t   upload;
    ngx_gdrive_s3_delete_t   prune;      /* a gone file's objects */
    ngx_str_t                list_drive; /* a narrowed listing's drive */
    ngx_event_t              resume;     /* posted: unpause the download */
    json_t                  *meta;       /* the file's metadata */
    ngx_str_t                file_id;    /* synced: a shortcut's target */
    ngx_str_t                shortcut_id;
    ngx_str_t                export_type;
    ngx_str_t                page_token; /* the next page's, escaped */
    ngx_str_t                start_token;
    const char              *outcome;    /* the result's status */
    const char              *page_error; /* a page failed, once acked */

    /* child triggers and "deleted" results of a listing */
    ngx_gdrive_kafka_dr_t    child_dr;
    ngx_uint_t               pending;    /* produced, not yet acknowledged */
    ngx_uint_t               child_errors;
    ngx_uint_t               children;
    ngx_uint_t               deleted;
    ngx_uint_t               pages;

    ngx_queue_t              wait;       /* in the engine's waiting */
    ngx_int_t                status_slot; /* on the status page, or -1 */
    unsigned                 waiting:1;
    unsigned                 parked:1;
    unsigned                 terminal:1;
    unsigned                 in_flight:1; /* a produce awaits its report */
    unsigned                 to_dlq:1;
    unsigned                 token_busy:1;
    unsigned                 upload_busy:1;
    unsigned                 auth_retried:1;
    unsigned                 export_link:1;
    unsigned                 listed:1;   /* the last page is in */
    unsigned                 meta_carried:1;
    unsigned                 prune_busy:1;
    unsigned                 pruned:1;   /* objects deleted: say how many */
    unsigned                 narrow:1;   /* an incomplete listing */
    unsigned                 narrowed:1; /* listed in the folder's drive */
    size_t                   dlq_len;    /* the DLQ value, once cut */
};


typedef struct {
    ngx_http_gdrive_main_conf_t  *gmcf;
    ngx_gdrive_kafka_t      *producer;
    rd_kafka_topic_t        *trigger_topic;
    rd_kafka_topic_t        *result_topic;
    rd_kafka_topic_t        *dlq_topic;
    ngx_gdrive_worker_status_t  *status; /* this worker's slot */
    ngx_gdrive_kafka_t      *consumer;   /* the engine's own */
    ngx_queue_t              parts;
    ngx_uint_t               inflight;   /* taken: running, parked, queued */
    ngx_uint_t               running;
    ngx_uint_t               parked;     /* waiting on a timer */
    ngx_uint_t               max_inflight;
    ngx_uint_t               max_taken;
    ngx_uint_t               low_watermark;
    size_t                   bytes;      /* of the messages taken */
    size_t                   max_bytes;
    ngx_queue_t              waiting;    /* taken, to start in order */
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
static void ngx_gdrive_job_untake(ngx_gdrive_engine_t *e,
    ngx_gdrive_job_t *job);
static void ngx_gdrive_job_exiting(void *data);
static void ngx_gdrive_job_closed(void *data);
static void ngx_gdrive_job_shutdown_handler(ngx_event_t *ev);
static ngx_gdrive_part_t *ngx_gdrive_job_part(int32_t partition,
    ngx_uint_t create);
static void ngx_gdrive_job_start_waiting(ngx_gdrive_engine_t *e);
static void ngx_gdrive_job_park(ngx_gdrive_job_t *job, ngx_uint_t park);
static void ngx_gdrive_job_drive_waiting(ngx_gdrive_drive_t *d,
    ngx_uint_t waiting);
static void ngx_gdrive_job_run(ngx_gdrive_job_t *job);
static void ngx_gdrive_job_set_stage(ngx_gdrive_job_t *job,
    ngx_gdrive_stage_e stage);
static void ngx_gdrive_job_token_done(ngx_gdrive_token_req_t *req);
static void ngx_gdrive_job_action(ngx_gdrive_job_t *job);
static void ngx_gdrive_job_drive_done(ngx_gdrive_drive_t *d);
static void ngx_gdrive_job_file(ngx_gdrive_job_t *job);
static void ngx_gdrive_job_file_meta(ngx_gdrive_job_t *job);
static void ngx_gdrive_job_shortcut(ngx_gdrive_job_t *job);
static ngx_int_t ngx_gdrive_job_export_revision(ngx_gdrive_job_t *job,
    const char *mime, ngx_str_t *revision);
static ngx_int_t ngx_gdrive_job_content_revision(ngx_gdrive_job_t *job,
    const char *mime, ngx_str_t *revision);
static ngx_int_t ngx_gdrive_job_upload_key(ngx_gdrive_job_t *job,
    ngx_str_t *revision);
static ngx_int_t ngx_gdrive_job_carried(ngx_gdrive_job_t *job);
static void ngx_gdrive_job_gone(ngx_gdrive_job_t *job);
static void ngx_gdrive_job_pruned(ngx_gdrive_s3_delete_t *d);
static void ngx_gdrive_job_store(ngx_gdrive_job_t *job);
static void ngx_gdrive_job_upload_ready(ngx_gdrive_s3_upload_t *u);
static void ngx_gdrive_job_upload_resume(ngx_gdrive_s3_upload_t *u);
static void ngx_gdrive_job_upload_done(ngx_gdrive_s3_upload_t *u);
static void ngx_gdrive_job_resume_handler(ngx_event_t *ev);
static size_t ngx_gdrive_job_sink(ngx_gdrive_drive_t *d, u_char *p,
    size_t len);
static void ngx_gdrive_job_content_done(ngx_gdrive_job_t *job);
static void ngx_gdrive_job_list(ngx_gdrive_job_t *job);
static void ngx_gdrive_job_list_page(ngx_gdrive_job_t *job);
static void ngx_gdrive_job_list_drive(ngx_gdrive_job_t *job);
static void ngx_gdrive_job_list_drive_done(ngx_gdrive_job_t *job);
static void ngx_gdrive_job_changes(ngx_gdrive_job_t *job);
static void ngx_gdrive_job_changes_page(ngx_gdrive_job_t *job);
static ngx_int_t ngx_gdrive_job_change_gone(ngx_gdrive_job_t *job,
    ngx_gdrive_drive_entry_t *e);
static void ngx_gdrive_job_page_done(ngx_gdrive_job_t *job,
    const char *next, const char *start);
static void ngx_gdrive_job_next_page(ngx_gdrive_job_t *job);
static void ngx_gdrive_job_page_fail(ngx_gdrive_job_t *job,
    const char *code, const char *detail);
static void ngx_gdrive_job_page_failed(ngx_gdrive_job_t *job);
static ngx_int_t ngx_gdrive_job_child(ngx_gdrive_job_t *job,
    const char *action, const char *file_id, ngx_uint_t deleted,
    json_t *file);
static void ngx_gdrive_job_child_delivered(void *data,
    rd_kafka_resp_err_t err, int32_t partition, int64_t offset);
static json_t *ngx_gdrive_job_deleted_file(const char *file_id,
    json_t *meta);
static ngx_int_t ngx_gdrive_job_set_token(ngx_gdrive_job_t *job,
    const char *token, size_t len, ngx_uint_t start);
static void ngx_gdrive_job_stop_io(ngx_gdrive_job_t *job);
static json_t *ngx_gdrive_job_result_json(ngx_gdrive_job_t *job);
static void ngx_gdrive_job_fail(ngx_gdrive_job_t *job, const char *code,
    const char *detail, ngx_uint_t permanent, ngx_int_t retry_after);
static void ngx_gdrive_job_result(ngx_gdrive_job_t *job);
static void ngx_gdrive_job_dlq(ngx_gdrive_job_t *job);
static void ngx_gdrive_job_delivered(void *data, rd_kafka_resp_err_t err,
    int32_t partition, int64_t offset);
static void ngx_gdrive_job_retry(ngx_gdrive_job_t *job, ngx_msec_t delay);
static void ngx_gdrive_job_output_retry(ngx_gdrive_job_t *job);
static void ngx_gdrive_job_output_failed(ngx_gdrive_job_t *job,
    rd_kafka_resp_err_t err);
static void ngx_gdrive_job_timer(ngx_event_t *ev);
static void ngx_gdrive_job_terminal(ngx_gdrive_job_t *job);
static void ngx_gdrive_job_free(ngx_gdrive_job_t *job);
static u_char *ngx_gdrive_job_log_handler(ngx_log_t *log, u_char *buf,
    size_t len);
static void ngx_gdrive_job_status(ngx_gdrive_engine_t *e);
static void ngx_gdrive_job_tick(void *data);


static ngx_gdrive_engine_t  ngx_gdrive_engine;


/* the status page's names (README, The consumer and the job engine) */

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
    e->trigger_topic = ctx->trigger_topic;
    e->result_topic = ctx->result_topic;
    e->dlq_topic = ctx->dlq_topic;
    e->status = ctx->status;

    ngx_queue_init(&e->parts);
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
    cb.room = ngx_gdrive_job_room;
    cb.exiting = ngx_gdrive_job_exiting;
    cb.closed = ngx_gdrive_job_closed;
    cb.tick = ngx_gdrive_job_tick;
    cb.data = e;

    e->consumer = ngx_gdrive_kafka_consumer(cycle, gmcf, &cb);

    if (e->consumer == NULL) {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* exit_process: the loop has ended, the consumer goes at once */

void
ngx_gdrive_job_exit(void)
{
    ngx_gdrive_engine_t  *e;

    e = &ngx_gdrive_engine;

    if (e->consumer) {
        ngx_gdrive_kafka_destroy(e->consumer, 0);
        e->consumer = NULL;
    }
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

static void
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

        if (ngx_strcmp(d->code, "auth_invalid") == 0 && !job->auth_retried) {
            ngx_log_error(NGX_LOG_INFO, &job->log, 0,
                          "gdrive: access token refused, refreshing it");

            ngx_gdrive_job_stop_io(job);
            ngx_gdrive_token_invalidate(&job->token.integration,
                                        &job->drive.token);
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


/*
 * sync_file: the metadata.  A trigger means "look at this file now": the
 * metadata that the listing or changes page which made the trigger
 * carried is used on the first attempt, else Drive is asked.  No cache
 * decides here (README, "What a sync guarantees").
 */

static void
ngx_gdrive_job_file(ngx_gdrive_job_t *job)
{
    ngx_gdrive_job_set_stage(job, NGX_GDRIVE_STAGE_FILE);

    if (job->trigger.drive_file && job->shortcut_id.len == 0
        && ngx_gdrive_job_carried(job) == NGX_OK)
    {
        ngx_log_debug0(NGX_LOG_DEBUG_EVENT, &job->log, 0,
                       "gdrive: metadata carried by the trigger");
        ngx_gdrive_job_file_meta(job);
        return;
    }

    if (ngx_gdrive_drive_file_get(&job->drive, &job->file_id) != NGX_OK) {
        ngx_gdrive_job_fail(job, "internal_error", "out of memory", 0, -1);
    }
}


/*
 * The trigger's drive_file, from the worker's own listing or changes
 * page: Drive's answer of moments ago, and as untrusted as any answer.
 * A retry asks Drive afresh, except for a file the feed found removed or
 * trashed (only the deletion of its objects is retried).  An edit since
 * the page is caught by the content check (md5, size) and retried.
 */

static ngx_int_t
ngx_gdrive_job_carried(ngx_gdrive_job_t *job)
{
    json_t      *root, *file;
    ngx_uint_t   gone;
    const char  *id;

    root = json_loadb(job->msg->payload, job->msg->len, 0, NULL);
    file = json_object_get(root, "drive_file");
    id = ngx_gdrive_drive_meta_str(file, "id");

    if (!json_is_object(file) || id == NULL
        || ngx_strlen(id) != job->file_id.len
        || ngx_strncmp(id, job->file_id.data, job->file_id.len) != 0)
    {
        if (root) {
            json_decref(root);
        }

        return NGX_DECLINED;
    }

    gone = json_is_true(json_object_get(file, "removed"))
           || json_is_true(json_object_get(file, "trashed"));

    if (job->attempt && !gone) {
        json_decref(root);
        return NGX_DECLINED;
    }

    job->meta = json_incref(file);
    job->meta_carried = 1;
    json_decref(root);

    return NGX_OK;
}


/*
 * What the metadata says: a trashed file is gone, a shortcut is followed
 * once, a folder is not a file, a Google Workspace file is exported,
 * anything else downloaded.
 */

static void
ngx_gdrive_job_file_meta(ngx_gdrive_job_t *job)
{
    ngx_str_t                revision;
    const char              *mime;
    ngx_gdrive_s3_upload_t  *u;

    /* removed: only the changes feed says so, in a child's drive_file */

    if (json_is_true(json_object_get(job->meta, "trashed"))
        || json_is_true(json_object_get(job->meta, "removed")))
    {
        ngx_gdrive_job_gone(job);
        return;
    }

    mime = ngx_gdrive_drive_meta_str(job->meta, "mimeType");

    if (mime == NULL) {
        ngx_gdrive_job_fail(job, "upstream_error",
                            "Drive's metadata has no mimeType", 0, -1);
        return;
    }

    if (!job->meta_carried) {
        /* what the worker saw of the file last: names its deletion */
        ngx_gdrive_drive_meta_remember(&job->token.integration,
                                       &job->file_id, job->meta);
    }

    if (ngx_strcmp(mime, NGX_GDRIVE_SHORTCUT_MIME) == 0) {
        ngx_gdrive_job_shortcut(job);
        return;
    }

    u = &job->upload;
    ngx_memzero(u, sizeof(ngx_gdrive_s3_upload_t));
    u->size = -1;

    if (ngx_strcmp(mime, NGX_GDRIVE_FOLDER_MIME) == 0) {
        ngx_gdrive_job_fail(job, "unsupported_type",
                            "the file is a folder: use sync_folder", 1, -1);
        return;
    }

    if (ngx_strncmp(mime, NGX_GDRIVE_APPS_PREFIX,
                    sizeof(NGX_GDRIVE_APPS_PREFIX) - 1)
        == 0)
    {
        if (ngx_gdrive_job_export_revision(job, mime, &revision) != NGX_OK) {
            return;
        }

    } else if (ngx_gdrive_job_content_revision(job, mime, &revision)
               != NGX_OK)
    {
        return;
    }

    if (ngx_gdrive_job_upload_key(job, &revision) != NGX_OK) {
        return;
    }

    ngx_gdrive_job_store(job);
}


/* a shortcut: its target is synced, once (a shortcut to one is not) */

static void
ngx_gdrive_job_shortcut(ngx_gdrive_job_t *job)
{
    json_t      *details;
    const char  *target;

    details = json_object_get(job->meta, "shortcutDetails");
    target = ngx_gdrive_drive_meta_str(details, "targetId");

    if (job->shortcut_id.len || target == NULL
        || !ngx_gdrive_drive_id_valid(target, ngx_strlen(target)))
    {
        ngx_gdrive_job_fail(job, "not_found",
                            "the shortcut has no usable target", 1, -1);
        return;
    }

    job->shortcut_id = job->file_id;
    job->file_id.len = ngx_strlen(target);
    job->file_id.data = ngx_pstrdup(job->pool,
                                    &(ngx_str_t) { job->file_id.len,
                                                   (u_char *) target });
    json_decref(job->meta);
    job->meta = NULL;

    if (job->file_id.data == NULL) {
        ngx_gdrive_job_fail(job, "internal_error", "out of memory", 0, -1);
        return;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_EVENT, &job->log, 0,
                   "gdrive: shortcut to \"%V\"", &job->file_id);

    ngx_gdrive_job_file(job);
}


/*
 * A Google Workspace file: the export's type, and the revision part of
 * the key, "v{version}.{extension}".  NGX_ERROR: the job failed.
 */

static ngx_int_t
ngx_gdrive_job_export_revision(ngx_gdrive_job_t *job, const char *mime,
    ngx_str_t *revision)
{
    u_char                   ext[11];
    const char              *v;
    ngx_gdrive_s3_upload_t  *u;

    u = &job->upload;

    if (job->trigger.export_mime_type.data) {
        job->export_type.data = (u_char *) job->trigger.export_mime_type.data;
        job->export_type.len = job->trigger.export_mime_type.len;

    } else if (ngx_gdrive_drive_export_default(mime, &job->export_type)
               != NGX_OK)
    {
        ngx_gdrive_job_fail(job, "unsupported_type",
                            "Drive cannot export this kind of file", 1, -1);
        return NGX_ERROR;
    }

    v = ngx_gdrive_drive_meta_str(job->meta, "version");
    ngx_gdrive_drive_export_ext(&job->export_type, ext);

    revision->data = ngx_pnalloc(job->pool, 64);
    if (revision->data == NULL) {
        ngx_gdrive_job_fail(job, "internal_error", "out of memory", 0, -1);
        return NGX_ERROR;
    }

    revision->len = ngx_snprintf(revision->data, 64, "v%s.%s",
                                 (v && ngx_gdrive_drive_id_valid(v,
                                                ngx_strlen(v)))
                                 ? v : "0", ext)
                    - revision->data;

    u->content_type = job->export_type;

    return NGX_OK;
}


/*
 * A file downloaded as it is: its size and md5 to check the content by,
 * and the revision part of the key, "r{headRevisionId}", or
 * "v{version}" for a file without revisions.  NGX_ERROR: the job failed.
 */

static ngx_int_t
ngx_gdrive_job_content_revision(ngx_gdrive_job_t *job, const char *mime,
    ngx_str_t *revision)
{
    size_t                   len;
    ngx_int_t                size;
    const char              *rev, *v;
    ngx_gdrive_s3_upload_t  *u;

    u = &job->upload;

    rev = ngx_gdrive_drive_meta_str(job->meta, "headRevisionId");
    v = ngx_gdrive_drive_meta_str(job->meta, "size");

    if (v == NULL
        || (size = ngx_atoof((u_char *) v, ngx_strlen(v))) == NGX_ERROR)
    {
        ngx_gdrive_job_fail(job, "upstream_error",
                            "Drive's metadata has no size", 0, -1);
        return NGX_ERROR;
    }

    u->size = size;

    v = ngx_gdrive_drive_meta_str(job->meta, "md5Checksum");
    if (v && ngx_strlen(v) == 32) {
        u->md5.data = (u_char *) v;
        u->md5.len = 32;
    }

    if (rev == NULL || !ngx_gdrive_drive_id_valid(rev, ngx_strlen(rev))) {
        /* no revision of its own: the version identifies it */
        rev = ngx_gdrive_drive_meta_str(job->meta, "version");

        if (rev == NULL || !ngx_gdrive_drive_id_valid(rev, ngx_strlen(rev)))
        {
            rev = "0";
        }

        len = ngx_strlen(rev) + 2;
        revision->data = ngx_pnalloc(job->pool, len);
        if (revision->data == NULL) {
            ngx_gdrive_job_fail(job, "internal_error", "out of memory", 0,
                                -1);
            return NGX_ERROR;
        }

        revision->len = ngx_sprintf(revision->data, "v%s", rev)
                        - revision->data;

    } else {
        len = ngx_strlen(rev) + 2;
        revision->data = ngx_pnalloc(job->pool, len);
        if (revision->data == NULL) {
            ngx_gdrive_job_fail(job, "internal_error", "out of memory", 0,
                                -1);
            return NGX_ERROR;
        }

        revision->len = ngx_sprintf(revision->data, "r%s", rev)
                        - revision->data;
    }

    u->content_type.data = (u_char *) mime;
    u->content_type.len = ngx_strlen(mime);

    return NGX_OK;
}


/*
 * The S3 key is {prefix}{integration}/{file}/{revision}: the content's
 * identity, so that a redelivery finds the object it already wrote.
 * The object's metadata names the file.  NGX_ERROR: the job failed.
 */

static ngx_int_t
ngx_gdrive_job_upload_key(ngx_gdrive_job_t *job, ngx_str_t *revision)
{
    size_t                   len;
    ngx_str_t               *prefix;
    const char              *v;
    ngx_gdrive_s3_upload_t  *u;

    u = &job->upload;
    prefix = &ngx_gdrive_engine.gmcf->s3_prefix;

    len = prefix->len + job->token.integration.len + job->file_id.len
          + revision->len + 2;

    u->key.data = ngx_pnalloc(job->pool, len);
    if (u->key.data == NULL) {
        ngx_gdrive_job_fail(job, "internal_error", "out of memory", 0, -1);
        return NGX_ERROR;
    }

    u->key.len = ngx_sprintf(u->key.data, "%V%V/%V/%V", prefix,
                             &job->token.integration, &job->file_id,
                             revision)
                 - u->key.data;

    u->drive_id = job->file_id;
    u->integration = job->token.integration;
    u->trigger.data = job->id;
    u->trigger.len = ngx_strlen(job->id);

    v = ngx_gdrive_drive_meta_str(job->meta, "name");

    if (v) {
        u->name.data = (u_char *) v;
        u->name.len = ngx_strlen(v);
    }

    v = ngx_gdrive_drive_meta_str(job->meta, "version");

    if (v) {
        u->version.data = (u_char *) v;
        u->version.len = ngx_strlen(v);
    }

    return NGX_OK;
}


/*
 * Removed or trashed in Drive: nothing is downloaded; with
 * gdrive_s3_on_delete delete every object of the file leaves the bucket
 * first.  The result is "deleted".
 */

static void
ngx_gdrive_job_gone(ngx_gdrive_job_t *job)
{
    size_t                        len;
    ngx_str_t                    *prefix;
    ngx_gdrive_s3_delete_t       *d;
    ngx_http_gdrive_main_conf_t  *gmcf;

    gmcf = ngx_gdrive_engine.gmcf;

    ngx_memzero(&job->upload, sizeof(ngx_gdrive_s3_upload_t));

    if (!gmcf->s3_on_delete) {
        ngx_log_error(NGX_LOG_INFO, &job->log, 0,
                      "gdrive: \"%V\" is gone from Drive, its objects are "
                      "kept", &job->file_id);

        job->outcome = "deleted";
        ngx_gdrive_job_set_stage(job, NGX_GDRIVE_STAGE_RESULT);
        ngx_gdrive_job_run(job);
        return;
    }

    ngx_gdrive_job_set_stage(job, NGX_GDRIVE_STAGE_DELETE);

    d = &job->prune;
    ngx_memzero(d, sizeof(ngx_gdrive_s3_delete_t));

    prefix = &gmcf->s3_prefix;
    len = prefix->len + job->token.integration.len + job->file_id.len + 2;

    d->prefix.data = ngx_pnalloc(job->pool, len);
    if (d->prefix.data == NULL) {
        ngx_gdrive_job_fail(job, "internal_error", "out of memory", 0, -1);
        return;
    }

    d->prefix.len = ngx_sprintf(d->prefix.data, "%V%V/%V/", prefix,
                                &job->token.integration, &job->file_id)
                    - d->prefix.data;
    d->pool = job->pool;
    d->log = &job->log;
    d->done = ngx_gdrive_job_pruned;
    d->data = job;

    ngx_gdrive_s3_delete_start(d);

    if (d->state == NULL) {
        ngx_gdrive_job_fail(job, "internal_error", "out of memory", 0, -1);
        return;
    }

    job->prune_busy = 1;
}


static void
ngx_gdrive_job_pruned(ngx_gdrive_s3_delete_t *d)
{
    ngx_gdrive_job_t *job = d->data;

    job->prune_busy = 0;

    if (d->rc != NGX_OK) {
        ngx_gdrive_job_fail(job, d->code, d->detail, d->permanent, -1);
        return;
    }

    job->pruned = 1;
    job->outcome = "deleted";
    ngx_gdrive_job_set_stage(job, NGX_GDRIVE_STAGE_RESULT);
    ngx_gdrive_job_run(job);
}


/* is the object there already?  The upload's start() tells */

static void
ngx_gdrive_job_store(ngx_gdrive_job_t *job)
{
    ngx_gdrive_s3_upload_t  *u;

    u = &job->upload;

    u->pool = job->pool;
    u->log = &job->log;
    u->ready = ngx_gdrive_job_upload_ready;
    u->resume = ngx_gdrive_job_upload_resume;
    u->done = ngx_gdrive_job_upload_done;
    u->data = job;
    u->rc = NGX_ERROR;
    u->unchanged = 0;
    u->state = NULL;

    ngx_gdrive_job_set_stage(job, NGX_GDRIVE_STAGE_STORE);
    job->upload_busy = 1;

    ngx_gdrive_s3_upload_start(u);

    if (u->state == NULL) {
        /* not started at all: no callback will come */
        job->upload_busy = 0;
        ngx_gdrive_job_fail(job, "internal_error",
                            "the upload could not be started", 0, -1);
    }
}


/* the object is not there: download into it */

static void
ngx_gdrive_job_upload_ready(ngx_gdrive_s3_upload_t *u)
{
    ngx_gdrive_job_t *job = u->data;

    ngx_int_t            rc;
    ngx_gdrive_drive_t  *d;

    d = &job->drive;

    ngx_gdrive_job_set_stage(job, NGX_GDRIVE_STAGE_CONTENT);
    d->sink = ngx_gdrive_job_sink;
    d->sink_failed = 0;

    if (job->export_type.len == 0) {
        rc = ngx_gdrive_drive_media(d, &job->file_id, job->meta);

    } else if (!job->export_link) {
        rc = ngx_gdrive_drive_export(d, &job->file_id, job->meta,
                                     &job->export_type);

    } else {
        rc = ngx_gdrive_drive_export_link(d, &job->file_id, job->meta,
                                          &job->export_type);
    }

    if (rc == NGX_OK) {
        return;
    }

    ngx_gdrive_job_stop_io(job);

    if (rc == NGX_DECLINED) {
        ngx_gdrive_job_fail(job, "export_too_large",
                            "the export is over Drive's limit and the file "
                            "has no export link for the type", 1, -1);
        return;
    }

    ngx_gdrive_job_fail(job, "internal_error", "out of memory", 0, -1);
}


static size_t
ngx_gdrive_job_sink(ngx_gdrive_drive_t *d, u_char *p, size_t len)
{
    ngx_gdrive_job_t *job = d->data;

    switch (ngx_gdrive_s3_upload_write(&job->upload, p, len)) {

    case NGX_OK:
        return len;

    case NGX_AGAIN:
        /* every part buffer is busy: the download waits for resume() */
        return CURL_WRITEFUNC_PAUSE;

    default:
        d->sink_failed = 1;
        return 0;
    }
}


/*
 * A buffer is free again.  The download resumes from a posted event:
 * curl hands over the bytes it held back from inside curl_easy_pause(),
 * which must not happen inside the uploader's own callback.
 */

static void
ngx_gdrive_job_upload_resume(ngx_gdrive_s3_upload_t *u)
{
    ngx_gdrive_job_t *job = u->data;

    if (!job->resume.posted) {
        ngx_post_event(&job->resume, &ngx_posted_events);
    }
}


static void
ngx_gdrive_job_resume_handler(ngx_event_t *ev)
{
    ngx_gdrive_job_t *job = ev->data;

    ngx_gdrive_drive_resume(&job->drive);
}


/* the download is complete: the upload ends the stream */

static void
ngx_gdrive_job_content_done(ngx_gdrive_job_t *job)
{
    if (job->upload.size >= 0 && job->drive.bytes != job->upload.size) {
        ngx_gdrive_job_stop_io(job);
        ngx_gdrive_job_fail(job, "upstream_error",
                            "the download's length is not the file's size",
                            0, -1);
        return;
    }

    ngx_gdrive_s3_upload_finish(&job->upload);
}


static void
ngx_gdrive_job_upload_done(ngx_gdrive_s3_upload_t *u)
{
    ngx_gdrive_job_t *job = u->data;

    job->upload_busy = 0;

    if (u->rc != NGX_OK) {
        ngx_gdrive_job_stop_io(job);
        ngx_gdrive_job_fail(job, u->code, u->detail, u->permanent,
                            u->retry_after);
        return;
    }

    if (u->unchanged) {
        ngx_log_error(NGX_LOG_INFO, &job->log, 0,
                      "gdrive: \"%V\" is stored already", &u->key);
        job->outcome = "unchanged";

    } else {
        ngx_log_error(NGX_LOG_INFO, &job->log, 0,
                      "gdrive: stored \"%V\", %O bytes in %ui parts",
                      &u->key, u->bytes, u->parts);
        job->outcome = "uploaded";
    }

    ngx_gdrive_job_set_stage(job, NGX_GDRIVE_STAGE_RESULT);
    ngx_gdrive_job_run(job);
}


/* sync_folder: the folder's children, a page at a time */

static void
ngx_gdrive_job_list(ngx_gdrive_job_t *job)
{
    ngx_str_t              folder, given, *drive;
    ngx_gdrive_trigger_t  *t;

    t = &job->trigger;

    ngx_gdrive_job_set_stage(job, NGX_GDRIVE_STAGE_LIST);

    folder.data = (u_char *) t->folder_id.data;
    folder.len = t->folder_id.len;

    /*
     * All drives at first; a listing Drive says is incomplete is listed
     * again in the folder's own drive (or the user's corpus).
     */

    drive = NULL;

    if (t->drive_id.data) {
        given.data = (u_char *) t->drive_id.data;
        given.len = t->drive_id.len;
        drive = &given;

    } else if (job->narrowed) {
        drive = &job->list_drive;
    }

    if (ngx_gdrive_drive_list(&job->drive, &folder, drive, &job->page_token)
        != NGX_OK)
    {
        ngx_gdrive_job_fail(job, "internal_error", "out of memory", 0, -1);
    }
}


static void
ngx_gdrive_job_list_page(ngx_gdrive_job_t *job)
{
    ngx_int_t                  rc;
    ngx_gdrive_drive_page_t    page;
    ngx_gdrive_drive_entry_t   e;

    rc = ngx_gdrive_drive_page_open(&job->drive, 0, &page);

    if (rc == NGX_ERROR) {
        ngx_gdrive_job_fail(job, "upstream_error", page.detail, 0, -1);
        return;
    }

    if (rc == NGX_DECLINED) {

        if (job->trigger.drive_id.data == NULL && !job->narrowed) {
            ngx_log_error(NGX_LOG_INFO, &job->log, 0,
                          "gdrive: the listing of all drives is incomplete, "
                          "listing the folder's drive");

            job->narrow = 1;
            ngx_str_null(&job->page_token);

            if (job->pending == 0) {
                ngx_gdrive_job_next_page(job);
            }

            return;
        }

        ngx_gdrive_job_page_fail(job, "upstream_error",
                                 "Drive's listing of the folder's drive is "
                                 "incomplete (incompleteSearch)");
        return;
    }

    job->pages++;

    while ((rc = ngx_gdrive_drive_page_next(&page, &e)) == NGX_OK) {

        if (e.folder) {
            if (!job->trigger.recursive) {
                continue;
            }

            if (ngx_gdrive_job_child(job, "sync_folder", e.id, 0, NULL)
                != NGX_OK)
            {
                return;
            }

            continue;
        }

        if (ngx_gdrive_job_child(job, "sync_file", e.id, 0, e.file)
            != NGX_OK)
        {
            return;
        }
    }

    if (rc == NGX_ERROR) {
        ngx_gdrive_job_page_fail(job, "upstream_error", page.detail);
        return;
    }

    ngx_gdrive_job_page_done(job, page.next, NULL);
}


/* an incomplete listing: in which drive is the folder? */

static void
ngx_gdrive_job_list_drive(ngx_gdrive_job_t *job)
{
    ngx_str_t  folder;

    folder.data = (u_char *) job->trigger.folder_id.data;
    folder.len = job->trigger.folder_id.len;

    if (ngx_gdrive_drive_folder_drive(&job->drive, &folder) != NGX_OK) {
        ngx_gdrive_job_fail(job, "internal_error", "out of memory", 0, -1);
    }
}


static void
ngx_gdrive_job_list_drive_done(ngx_gdrive_job_t *job)
{
    size_t       len;
    const char  *drive;

    ngx_str_null(&job->list_drive);

    if (ngx_gdrive_drive_folder_drive_id(&job->drive, &drive) != NGX_OK) {
        ngx_gdrive_job_fail(job, "upstream_error",
                            "Drive named the folder's drive with an "
                            "unusable id", 0, -1);
        return;
    }

    if (drive) {
        len = ngx_strlen(drive);

        job->list_drive.data = ngx_pnalloc(job->pool, len);
        if (job->list_drive.data == NULL) {
            ngx_gdrive_job_fail(job, "internal_error", "out of memory", 0,
                                -1);
            return;
        }

        ngx_memcpy(job->list_drive.data, drive, len);
        job->list_drive.len = len;
    }

    /* the listing starts over: children of earlier pages come again with
     * the same ids, and the result counts the complete listing */
    job->narrowed = 1;
    job->children = 0;
    job->pages = 0;

    ngx_gdrive_job_list(job);
}


/* sync_changes: a fresh start token, or the feed from the given one */

static void
ngx_gdrive_job_changes(ngx_gdrive_job_t *job)
{
    ngx_int_t              rc;
    ngx_str_t              drive;
    ngx_gdrive_trigger_t  *t;

    t = &job->trigger;

    ngx_gdrive_job_set_stage(job, NGX_GDRIVE_STAGE_CHANGES);

    ngx_str_null(&drive);

    if (t->drive_id.data) {
        drive.data = (u_char *) t->drive_id.data;
        drive.len = t->drive_id.len;
    }

    if (job->page_token.len == 0) {
        rc = ngx_gdrive_drive_changes_start(&job->drive, &drive);

    } else {
        rc = ngx_gdrive_drive_changes(&job->drive, &drive, &job->page_token);
    }

    if (rc != NGX_OK) {
        ngx_gdrive_job_fail(job, "internal_error", "out of memory", 0, -1);
    }
}


static void
ngx_gdrive_job_changes_page(ngx_gdrive_job_t *job)
{
    ngx_int_t                  rc;
    const char                *start;
    ngx_gdrive_drive_page_t    page;
    ngx_gdrive_drive_entry_t   e;

    if (job->page_token.len == 0) {
        /* a fresh start: nothing has changed since */

        if (ngx_gdrive_drive_start_token(&job->drive, &start) != NGX_OK) {
            ngx_gdrive_job_fail(job, "upstream_error",
                                "Drive gave no start page token", 0, -1);
            return;
        }

        ngx_gdrive_job_page_done(job, NULL, start);
        return;
    }

    if (ngx_gdrive_drive_page_open(&job->drive, 1, &page) != NGX_OK) {
        ngx_gdrive_job_fail(job, "upstream_error", page.detail, 0, -1);
        return;
    }

    job->pages++;

    while ((rc = ngx_gdrive_drive_page_next(&page, &e)) == NGX_OK) {

        if (e.gone) {
            if (e.folder) {
                /* its files come as changes of their own */
                continue;
            }

            if (ngx_gdrive_job_change_gone(job, &e) != NGX_OK) {
                return;
            }

            continue;
        }

        if (e.folder) {
            continue;
        }

        if (ngx_gdrive_job_child(job, "sync_file", e.id, 0, e.file)
            != NGX_OK)
        {
            return;
        }
    }

    if (rc == NGX_ERROR) {
        ngx_gdrive_job_page_fail(job, "upstream_error", page.detail);
        return;
    }

    ngx_gdrive_job_page_done(job, page.next, page.start);
}


/*
 * A removed or trashed file of the feed.  keep: a "deleted" event at
 * once; delete: a child whose job deletes the file's objects (and
 * retries that alone).
 */

static ngx_int_t
ngx_gdrive_job_change_gone(ngx_gdrive_job_t *job,
    ngx_gdrive_drive_entry_t *e)
{
    json_t     *gone;
    ngx_int_t   rc;

    if (!ngx_gdrive_engine.gmcf->s3_on_delete) {
        return ngx_gdrive_job_child(job, NULL, e->id, 1, e->file);
    }

    gone = e->file ? json_incref(e->file)
                   : json_pack("{sssb}", "id", e->id, "removed", 1);

    if (gone == NULL) {
        ngx_gdrive_job_page_fail(job, "internal_error", "out of memory");
        return NGX_ERROR;
    }

    rc = ngx_gdrive_job_child(job, "sync_file", e->id, 0, gone);

    json_decref(gone);

    return rc;
}


/*
 * A page is in: the listing goes on from the next page's token, or it is
 * complete (with the feed's new start token); once the page's children
 * are acknowledged, the next step.
 */

static void
ngx_gdrive_job_page_done(ngx_gdrive_job_t *job, const char *next,
    const char *start)
{
    if (next) {
        if (ngx_gdrive_job_set_token(job, next, ngx_strlen(next), 0)
            != NGX_OK)
        {
            goto nomem;
        }

    } else {
        if (start
            && ngx_gdrive_job_set_token(job, start, ngx_strlen(start), 1)
               != NGX_OK)
        {
            goto nomem;
        }

        job->listed = 1;
    }

    if (job->pending == 0) {
        ngx_gdrive_job_next_page(job);
    }

    return;

nomem:

    ngx_gdrive_job_page_fail(job, "internal_error", "out of memory");
}


/*
 * Every child of the page is acknowledged: the next page, or the end.
 * A listing is complete only with its last page: one that fails half
 * way is retried whole (child ids are deterministic), never reported as
 * a success with fewer files.
 */

static void
ngx_gdrive_job_next_page(ngx_gdrive_job_t *job)
{
    if (!job->listed) {
        if (job->stage == NGX_GDRIVE_STAGE_LIST && job->narrow
            && !job->narrowed)
        {
            ngx_gdrive_job_list_drive(job);

        } else if (job->stage == NGX_GDRIVE_STAGE_LIST) {
            ngx_gdrive_job_list(job);

        } else {
            ngx_gdrive_job_changes(job);
        }

        return;
    }

    ngx_log_error(NGX_LOG_INFO, &job->log, 0,
                  "gdrive: listed %ui pages: %ui children, %ui deleted",
                  job->pages, job->children, job->deleted);

    job->outcome = (job->trigger.action == NGX_GDRIVE_SYNC_FOLDER)
                   ? "fanned_out" : "changes_listed";
    ngx_gdrive_job_set_stage(job, NGX_GDRIVE_STAGE_RESULT);
    ngx_gdrive_job_run(job);
}


/*
 * A child trigger to the trigger topic, or a "deleted" result to the
 * result topic, keyed by the integration.  The child's id is a hash of
 * the parent's id and the file's: the same on every redelivery, of
 * bounded length, in the trigger-id charset.
 */

static ngx_int_t
ngx_gdrive_job_child(ngx_gdrive_job_t *job, const char *action,
    const char *file_id, ngx_uint_t deleted, json_t *file)
{
    char                 *json;
    u_char                digest[20], id[41];
    json_t               *root, *last;
    ngx_uint_t            folder;
    ngx_str_t             key, fid;
    ngx_sha1_t            sha1;
    ngx_gdrive_trigger_t *t;
    rd_kafka_resp_err_t   err;

    t = &job->trigger;

    ngx_sha1_init(&sha1);
    ngx_sha1_update(&sha1, job->id, ngx_strlen(job->id));
    ngx_sha1_update(&sha1, "/", 1);
    ngx_sha1_update(&sha1, file_id, ngx_strlen(file_id));
    ngx_sha1_final(digest, &sha1);

    *ngx_hex_dump(id, digest, 20) = '\0';

    root = json_object();
    if (root == NULL) {
        goto failed;
    }

    json_object_set_new(root, "trigger_id", json_string((char *) id));
    json_object_set_new(root, "integration_id",
                        json_stringn(t->integration_id.data,
                                     t->integration_id.len));

    if (deleted) {
        json_object_set_new(root, "action", json_string("sync_changes"));
        json_object_set_new(root, "status", json_string("deleted"));

        /*
         * A removed file comes without metadata: what the worker saw of
         * it last (the metadata cache) names it, when it is there.
         */

        last = NULL;
        fid.data = (u_char *) file_id;
        fid.len = ngx_strlen(file_id);

        if (file == NULL) {
            last = ngx_gdrive_drive_meta_recall(&job->token.integration,
                                                &fid, job->pool);
        }

        json_object_set_new(root, "file",
                            ngx_gdrive_job_deleted_file(file_id,
                                                        file ? file : last));
        if (last) {
            json_decref(last);
        }

    } else {
        json_object_set_new(root, "action", json_string(action));
        folder = (ngx_strcmp(action, "sync_folder") == 0);

        json_object_set_new(root, folder ? "folder_id" : "file_id",
                            json_string(file_id));

        if (folder && t->recursive) {
            json_object_set_new(root, "recursive", json_true());
        }

        if (t->export_mime_type.data) {
            json_object_set_new(root, "export_mime_type",
                                json_stringn(t->export_mime_type.data,
                                             t->export_mime_type.len));
        }

        if (t->drive_id.data) {
            json_object_set_new(root, "drive_id",
                                json_stringn(t->drive_id.data,
                                             t->drive_id.len));
        }

        if (file && !folder) {
            json_object_set(root, "drive_file", file);
        }
    }

    json_object_set_new(root, "parent_trigger_id",
                        json_string((char *) job->id));

    json = json_dumps(root, JSON_COMPACT);

    if (json && ngx_strlen(json) > NGX_GDRIVE_CARRIED_MAX
        && json_object_get(root, "drive_file"))
    {
        /* metadata that large is not carried: the child asks Drive */
        free(json);
        json_object_del(root, "drive_file");
        json = json_dumps(root, JSON_COMPACT);
    }

    json_decref(root);

    if (json == NULL) {
        goto failed;
    }

    key.data = (u_char *) t->integration_id.data;
    key.len = t->integration_id.len;

    err = ngx_gdrive_kafka_produce(ngx_gdrive_engine.producer,
                                   deleted ? ngx_gdrive_engine.result_topic
                                           : ngx_gdrive_engine.trigger_topic,
                                   &key, (u_char *) json, ngx_strlen(json),
                                   1, NULL, &job->child_dr);

    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        free(json);
        ngx_log_error(NGX_LOG_ERR, &job->log, 0,
                      "gdrive: child not produced: %s",
                      ngx_gdrive_kafka_strerror(err));
        goto failed;
    }

    job->pending++;

    if (deleted) {
        job->deleted++;

    } else {
        job->children++;
    }

    return NGX_OK;

failed:

    ngx_gdrive_job_page_fail(job, "kafka_error",
                             "a child trigger was not produced");

    return NGX_ERROR;
}


/*
 * A page that cannot be taken whole: what is already produced is
 * acknowledged first, then the job fails once (the listing is retried
 * from its start; child ids are the same again).
 */

static void
ngx_gdrive_job_page_fail(ngx_gdrive_job_t *job, const char *code,
    const char *detail)
{
    if (job->page_error == NULL) {
        job->page_error = code;
        ngx_cpystrn(job->detail, (u_char *) detail, sizeof(job->detail));
    }

    job->listed = 1;

    if (job->pending == 0) {
        ngx_gdrive_job_page_failed(job);
    }
}


static void
ngx_gdrive_job_page_failed(ngx_gdrive_job_t *job)
{
    const char  *code;
    u_char       detail[256];

    code = job->page_error;
    ngx_memcpy(detail, job->detail, sizeof(detail));
    job->page_error = NULL;

    ngx_gdrive_job_fail(job, code, (char *) detail, 0, -1);
}


static void
ngx_gdrive_job_child_delivered(void *data, rd_kafka_resp_err_t err,
    int32_t partition, int64_t offset)
{
    ngx_gdrive_job_t *job = data;

    job->pending--;

    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        ngx_log_error(NGX_LOG_ERR, &job->log, 0,
                      "gdrive: child not delivered: %s",
                      ngx_gdrive_kafka_strerror(err));
        job->child_errors++;
    }

    if (job->pending) {
        return;
    }

    if (job->part == NULL) {
        /* cancelled by a revocation meanwhile */
        if (!job->in_flight) {
            ngx_gdrive_job_free(job);
        }

        return;
    }

    if (job->stage != NGX_GDRIVE_STAGE_LIST
        && job->stage != NGX_GDRIVE_STAGE_CHANGES)
    {
        /* the listing is over: nothing waits for these reports */
        return;
    }

    if (job->page_error) {
        ngx_gdrive_job_page_failed(job);
        return;
    }

    if (job->child_errors) {
        ngx_gdrive_job_fail(job, "kafka_error",
                            "a child trigger was not acknowledged", 0, -1);
        return;
    }

    ngx_gdrive_job_next_page(job);
}


/* a deleted event's file: its id, and its name and type when known */

static json_t *
ngx_gdrive_job_deleted_file(const char *file_id, json_t *meta)
{
    json_t      *file;
    const char  *v;

    file = json_pack("{ss}", "id", file_id);

    if (file == NULL || meta == NULL) {
        return file;
    }

    v = ngx_gdrive_drive_meta_str(meta, "name");
    if (v) {
        json_object_set_new(file, "name", json_string(v));
    }

    v = ngx_gdrive_drive_meta_str(meta, "mimeType");
    if (v) {
        json_object_set_new(file, "mimeType", json_string(v));
    }

    return file;
}


/* a page token: kept raw for the result, escaped for the next URL */

static ngx_int_t
ngx_gdrive_job_set_token(ngx_gdrive_job_t *job, const char *token,
    size_t len, ngx_uint_t start)
{
    ngx_str_t  raw;

    if (start) {
        raw.len = len;
        raw.data = ngx_pnalloc(job->pool, raw.len);

        if (raw.data == NULL) {
            return NGX_ERROR;
        }

        ngx_memcpy(raw.data, token, raw.len);
        job->start_token = raw;

        return NGX_OK;
    }

    return ngx_gdrive_drive_escape(job->pool, token, len, &job->page_token);
}


/* whatever the job has going on outside: stopped, an open upload aborted */

static void
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

static void
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


/* the result event: what the pipeline reached, keyed by integration */

static void
ngx_gdrive_job_result(ngx_gdrive_job_t *job)
{
    char                 *json;
    json_t               *root;
    ngx_str_t             key;
    rd_kafka_resp_err_t   err;

    ngx_gdrive_job_set_stage(job, NGX_GDRIVE_STAGE_RESULT);

    root = ngx_gdrive_job_result_json(job);
    json = root ? json_dumps(root, JSON_COMPACT) : NULL;

    if (root) {
        json_decref(root);
    }

    if (json == NULL) {
        job->error = "internal_error";
        ngx_gdrive_job_retry(job, 1000);
        return;
    }

    key.data = (u_char *) job->trigger.integration_id.data;
    key.len = job->trigger.integration_id.len;

    /* librdkafka frees the JSON once delivered */

    err = ngx_gdrive_kafka_produce(ngx_gdrive_engine.producer,
                                   ngx_gdrive_engine.result_topic, &key,
                                   (u_char *) json, ngx_strlen(json), 1,
                                   NULL, &job->dr);

    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        free(json);
        ngx_gdrive_job_output_failed(job, err);
        return;
    }

    job->in_flight = 1;
}


static json_t *
ngx_gdrive_job_result_json(ngx_gdrive_job_t *job)
{
    char                          worker[NGX_MAXHOSTNAMELEN + 32];
    u_char                       *p;
    json_t                       *root, *file, *payload, *v;
    ngx_str_t                    *bucket;
    ngx_uint_t                    i;
    ngx_gdrive_s3_upload_t       *u;
    ngx_http_gdrive_main_conf_t  *gmcf;

    static const char  *meta_fields[] = {
        "name", "mimeType", "size", "md5Checksum", "version",
        "modifiedTime", "headRevisionId", "driveId", NULL
    };

    gmcf = ngx_gdrive_engine.gmcf;
    u = &job->upload;

    p = ngx_snprintf((u_char *) worker, sizeof(worker) - 1, "%V/%P",
                     &ngx_cycle->hostname, ngx_pid);
    *p = '\0';

    root = json_object();
    if (root == NULL) {
        return NULL;
    }

    json_object_set_new(root, "trigger_id",
                        json_string((char *) job->id));
    json_object_set_new(root, "integration_id",
                        json_stringn(job->trigger.integration_id.data,
                                     job->trigger.integration_id.len));
    json_object_set_new(root, "action",
                        json_string(ngx_gdrive_action_name(
                                        job->trigger.action)));
    json_object_set_new(root, "status",
                        json_string(job->outcome ? job->outcome
                                                 : "completed"));

    if (job->meta) {
        file = json_object();

        json_object_set_new(file, "id",
                            json_stringn((char *) job->file_id.data,
                                         job->file_id.len));

        for (i = 0; meta_fields[i]; i++) {
            v = json_object_get(job->meta, meta_fields[i]);

            if (v) {
                json_object_set(file, meta_fields[i], v);
            }
        }

        if (job->shortcut_id.len) {
            json_object_set_new(file, "shortcut_id",
                                json_stringn((char *) job->shortcut_id.data,
                                             job->shortcut_id.len));
        }

        json_object_set_new(root, "file", file);
    }

    if (job->pruned) {
        json_object_set_new(root, "deleted_objects",
                            json_integer((json_int_t) job->prune.deleted));
    }

    if (u->key.len) {
        bucket = &gmcf->s3_bucket;
        payload = json_object();

        json_object_set_new(payload, "bucket",
                            json_stringn((char *) bucket->data, bucket->len));
        json_object_set_new(payload, "key",
                            json_stringn((char *) u->key.data, u->key.len));

        p = ngx_pnalloc(job->pool, bucket->len + u->key.len + 8);
        if (p) {
            json_object_set_new(payload, "uri",
                                json_stringn((char *) p,
                                    ngx_sprintf(p, "s3://%V/%V", bucket,
                                                &u->key) - p));
        }

        json_object_set_new(payload, "content_type",
                            json_stringn((char *) u->content_type.data,
                                         u->content_type.len));

        if (!u->unchanged) {
            json_object_set_new(payload, "bytes",
                                json_integer((json_int_t) u->bytes));
            json_object_set_new(payload, "sha256",
                                json_stringn((char *) u->sha256, 64));
            json_object_set_new(payload, "md5",
                                json_stringn((char *) u->md5_hex, 32));
            json_object_set_new(payload, "parts",
                                json_integer((json_int_t) u->parts));

        } else if (u->size >= 0) {
            json_object_set_new(payload, "bytes",
                                json_integer((json_int_t) u->size));
        }

        json_object_set_new(root, "payload", payload);
    }

    if (job->trigger.action != NGX_GDRIVE_SYNC_FILE) {
        json_object_set_new(root, "children",
                            json_integer((json_int_t) job->children));
        json_object_set_new(root, "pages",
                            json_integer((json_int_t) job->pages));
    }

    if (job->trigger.action == NGX_GDRIVE_SYNC_CHANGES) {
        json_object_set_new(root, "deleted",
                            json_integer((json_int_t) job->deleted));

        if (job->start_token.len) {
            json_object_set_new(root, "new_start_page_token",
                                json_stringn((char *) job->start_token.data,
                                             job->start_token.len));
        }
    }

    json_object_set_new(root, "attempts",
                        json_integer((json_int_t) job->attempt + 1));
    json_object_set_new(root, "duration_ms",
                        json_integer((json_int_t)
                                     (ngx_current_msec - job->started)));
    json_object_set_new(root, "worker", json_string(worker));

    v = json_object();
    json_object_set_new(v, "topic", json_string(ngx_gdrive_engine.topic));
    json_object_set_new(v, "partition",
                        json_integer(job->msg->partition));
    json_object_set_new(v, "offset", json_integer(job->msg->offset));
    json_object_set_new(root, "source", v);

    return root;
}


/*
 * The original key, value and headers, byte for byte, with the failure in
 * Kafka Connect's header names (for existing DLQ tooling) and ours.
 */

static void
ngx_gdrive_job_dlq(ngx_gdrive_job_t *job)
{
    ngx_str_t                key;
    rd_kafka_headers_t      *hdrs;
    rd_kafka_resp_err_t      err;
    ngx_gdrive_kafka_dlq_t   dlq;

    ngx_gdrive_job_set_stage(job, NGX_GDRIVE_STAGE_DLQ);

    dlq.topic = ngx_gdrive_engine.topic;
    dlq.code = job->error;
    dlq.detail = (char *) job->detail;
    dlq.attempts = job->attempt + 1;
    dlq.trigger_id = (job->id[0] != '-') ? (char *) job->id : NULL;
    dlq.cut = (job->dlq_len != 0);

    /* a value the dead-letter topic refused whole goes cut, and says so */

    dlq.value_len = job->msg->len;

    if (job->dlq_len && job->dlq_len < dlq.value_len) {
        dlq.value_len = job->dlq_len;
    }

    hdrs = ngx_gdrive_kafka_dlq_headers(job->msg, &dlq);

    if (hdrs == NULL) {
        ngx_gdrive_job_retry(job, 1000);
        return;
    }

    key.data = job->msg->key;
    key.len = job->msg->key_len;

    err = ngx_gdrive_kafka_produce(ngx_gdrive_engine.producer,
                                   ngx_gdrive_engine.dlq_topic, &key,
                                   job->msg->payload, dlq.value_len, 0,
                                   hdrs, &job->dr);

    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        /* producev owns the headers only when it succeeds */
        ngx_gdrive_kafka_headers_free(hdrs);
        ngx_gdrive_job_output_failed(job, err);
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
        if (job->pending == 0) {
            ngx_gdrive_job_free(job);
        }

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
                  ngx_gdrive_kafka_strerror(err));

    ngx_gdrive_job_output_failed(job, err);
}


/*
 * A result or DLQ record Kafka did not take.  A transient error is
 * retried until it is taken: the partition waits rather than lose the
 * message.  A permanent one (too large, invalid, not authorized) would
 * stall the partition for good: a refused result goes to the DLQ; a
 * refused dead letter goes again with its value cut in half, down to
 * 1 KiB, and only if even that is refused is the message dropped, with
 * an alert and a metric, and its offset stored.
 */

static void
ngx_gdrive_job_output_failed(ngx_gdrive_job_t *job, rd_kafka_resp_err_t err)
{
    size_t  len;

    if (!ngx_gdrive_kafka_permanent(err)) {
        ngx_gdrive_job_output_retry(job);
        return;
    }

    if (!job->to_dlq) {
        ngx_snprintf(job->detail, sizeof(job->detail) - 1,
                     "the result topic refused the result: %s%Z",
                     ngx_gdrive_kafka_strerror(err));
        job->error = "kafka_error";
        job->to_dlq = 1;
        ngx_gdrive_job_set_stage(job, NGX_GDRIVE_STAGE_DLQ);
        ngx_gdrive_job_retry(job, 0);
        job->attempt--;
        return;
    }

    len = job->dlq_len ? job->dlq_len : job->msg->len;

    if (len > NGX_GDRIVE_DLQ_MIN_VALUE && ngx_gdrive_kafka_too_large(err)) {
        job->dlq_len = ngx_max(len / 2, NGX_GDRIVE_DLQ_MIN_VALUE);

        ngx_log_error(NGX_LOG_WARN, &job->log, 0,
                      "gdrive: the dead-letter topic refused the record "
                      "(%s): sending its value cut to %uz of %uz bytes",
                      ngx_gdrive_kafka_strerror(err), job->dlq_len,
                      job->msg->len);

        /* at once: at most 10 halvings, each a produce */
        ngx_gdrive_job_dlq(job);
        return;
    }

    ngx_log_error(NGX_LOG_ALERT, &job->log, 0,
                  "gdrive: the dead-letter topic refuses the record of "
                  "%uz bytes (%s): the message is dropped, its offset "
                  "stored; it failed with %s: %s",
                  len, ngx_gdrive_kafka_strerror(err), job->error, job->detail);

    ngx_gdrive_metric_dlq("dropped", 1);
    ngx_gdrive_job_terminal(job);
}


/*
 * The output is produced again: not an attempt of the job, and a DLQ
 * record keeps the failure it reports.
 */

static void
ngx_gdrive_job_output_retry(ngx_gdrive_job_t *job)
{
    if (!job->to_dlq) {
        job->error = "kafka_error";
    }

    ngx_gdrive_job_retry(job, 0);
    job->attempt--;
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

    ngx_gdrive_job_start_waiting(e);
    ngx_gdrive_job_status(e);

    if (e->consumer->paused && !e->exiting
        && e->inflight <= e->low_watermark
        && e->bytes <= e->max_bytes / 2)
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
    ngx_uint_t                   n;
    ngx_queue_t                 *q;
    ngx_gdrive_part_t           *part;
    ngx_gdrive_worker_status_t  *st;

    st = ngx_gdrive_engine.status;

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


static void
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


static u_char *
ngx_gdrive_job_log_handler(ngx_log_t *log, u_char *buf, size_t len)
{
    ngx_gdrive_job_t *job = log->data;

    return ngx_snprintf(buf, len, ", trigger: %s, partition: %D, offset: %O",
                        job->id, job->msg->partition,
                        (off_t) job->msg->offset);
}
