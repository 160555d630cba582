
/*
 * nginx-gdrive-worker: what the job engine's files share.
 *
 * Pipeline layer, private: the job and the engine, the stages, and the
 * steps one file of the pipeline calls in another (ngx_gdrive_job.c the
 * engine, ngx_gdrive_job_file.c a file's sync, ngx_gdrive_job_list.c the
 * listings, ngx_gdrive_job_output.c the result and the dead letter).
 */


#ifndef _NGX_GDRIVE_JOB_PRIVATE_H_INCLUDED_
#define _NGX_GDRIVE_JOB_PRIVATE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include <jansson.h>

#include "ngx_gdrive_drive.h"
#include "ngx_gdrive_kafka.h"
#include "ngx_gdrive_oauth.h"

#include "ngx_gdrive.h"
#include "ngx_gdrive_s3.h"
#include "ngx_gdrive_trace.h"


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
    ngx_msec_t               assigned;   /* when it came to this worker */
    unsigned                 first_hold:1;  /* none learned since */
    unsigned                 draining:1; /* revoked, its jobs end first */
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

    /* the trace it is in; its records' traceparent has its span as parent */
    ngx_gdrive_trace_t       trace;
    char                     traceparent[NGX_GDRIVE_TRACEPARENT_LEN + 1];
    char                     trace_id[NGX_GDRIVE_TRACE_ID_LEN + 1];

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
    ngx_gdrive_kafka_t           *producer;  /* the engine's output */
    ngx_gdrive_kafka_t           *triggers;  /* counts the partitions */
    rd_kafka_topic_t             *trigger_topic;
    rd_kafka_topic_t             *result_topic;
    rd_kafka_topic_t             *dlq_topic;
    ngx_gdrive_worker_status_t   *status;    /* this worker's slot */
    ngx_gdrive_kafka_t           *consumer;  /* the engine's own */
    ngx_queue_t                   parts;
    ngx_uint_t                    inflight;  /* running, parked or queued */
    ngx_uint_t                    running;
    ngx_uint_t                    parked;    /* waiting on a timer */
    ngx_uint_t                    max_inflight;
    ngx_uint_t                    max_taken;
    ngx_uint_t                    low_watermark;
    size_t                        bytes;     /* of the messages taken */
    size_t                        max_bytes;
    ngx_queue_t                   waiting;   /* taken, to start in order */
    ngx_event_t                   shutdown;
    ngx_event_t                   leave;     /* posted: quitting, no jobs */
    char                          topic[250];
    unsigned                      exiting:1;
} ngx_gdrive_engine_t;


/* the engine, written only by ngx_gdrive_job.c; the other job files read */
const ngx_gdrive_engine_t *ngx_gdrive_job_engine(void);


void ngx_gdrive_job_run(ngx_gdrive_job_t *job);
void ngx_gdrive_job_set_stage(ngx_gdrive_job_t *job,
    ngx_gdrive_stage_e stage);
rd_kafka_headers_t *ngx_gdrive_job_trace_headers(ngx_gdrive_job_t *job);
void ngx_gdrive_job_file(ngx_gdrive_job_t *job);
void ngx_gdrive_job_file_meta(ngx_gdrive_job_t *job);
void ngx_gdrive_job_store(ngx_gdrive_job_t *job);
void ngx_gdrive_job_resume_handler(ngx_event_t *ev);
void ngx_gdrive_job_content_done(ngx_gdrive_job_t *job);
void ngx_gdrive_job_list(ngx_gdrive_job_t *job);
void ngx_gdrive_job_list_page(ngx_gdrive_job_t *job);
void ngx_gdrive_job_list_drive_done(ngx_gdrive_job_t *job);
void ngx_gdrive_job_changes(ngx_gdrive_job_t *job);
void ngx_gdrive_job_changes_page(ngx_gdrive_job_t *job);
void ngx_gdrive_job_child_delivered(void *data,
    rd_kafka_resp_err_t err, int32_t partition, int64_t offset);
ngx_int_t ngx_gdrive_job_set_token(ngx_gdrive_job_t *job,
    const char *token, size_t len, ngx_uint_t start);
void ngx_gdrive_job_stop_io(ngx_gdrive_job_t *job);
void ngx_gdrive_job_fail(ngx_gdrive_job_t *job, const char *code,
    const char *detail, ngx_uint_t permanent, ngx_int_t retry_after);
void ngx_gdrive_job_result(ngx_gdrive_job_t *job);
void ngx_gdrive_job_dlq(ngx_gdrive_job_t *job);
void ngx_gdrive_job_delivered(void *data, rd_kafka_resp_err_t err,
    int32_t partition, int64_t offset);
void ngx_gdrive_job_retry(ngx_gdrive_job_t *job, ngx_msec_t delay);
void ngx_gdrive_job_terminal(ngx_gdrive_job_t *job);
void ngx_gdrive_job_free(ngx_gdrive_job_t *job);


#endif /* _NGX_GDRIVE_JOB_PRIVATE_H_INCLUDED_ */
