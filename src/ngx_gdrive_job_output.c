
/*
 * nginx-gdrive-worker: a job's outputs.
 *
 * Pipeline layer: the result event (what the pipeline reached, keyed by
 * the integration) and the dead letter (the original record with the
 * failure in its headers, cut when the topic refuses it whole); their
 * delivery reports make the job terminal, or retry what Kafka did not
 * take.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <jansson.h>

#include "ngx_gdrive_job_private.h"
#include "ngx_gdrive_kafka.h"
#include "ngx_gdrive_metrics.h"
#include "ngx_gdrive_s3.h"


/* a dead letter refused whole is cut in half down to this */
#define NGX_GDRIVE_DLQ_MIN_VALUE  1024


static json_t *ngx_gdrive_job_result_json(ngx_gdrive_job_t *job);
static void ngx_gdrive_job_output_failed(ngx_gdrive_job_t *job,
    rd_kafka_resp_err_t err);
static void ngx_gdrive_job_output_retry(ngx_gdrive_job_t *job);


/* the result event: what the pipeline reached, keyed by integration */

void
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

    err = ngx_gdrive_kafka_produce(ngx_gdrive_job_engine()->producer,
                                   ngx_gdrive_job_engine()->result_topic, &key,
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

    gmcf = ngx_gdrive_job_engine()->gmcf;
    u = &job->upload;

    p = ngx_snprintf((u_char *) worker, sizeof(worker) - 1, "%V/%P",
                     &gmcf->instance, ngx_pid);
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

    /* the job's cost in Google's quota: every attempt's requests */
    json_object_set_new(root, "google_requests",
                        json_integer((json_int_t) (job->drive.requests
                                                   + job->token.requests)));
    json_object_set_new(root, "duration_ms",
                        json_integer((json_int_t)
                                     (ngx_current_msec - job->started)));
    json_object_set_new(root, "worker", json_string(worker));

    v = json_object();
    json_object_set_new(v, "topic",
                        json_string(ngx_gdrive_job_engine()->topic));
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

void
ngx_gdrive_job_dlq(ngx_gdrive_job_t *job)
{
    ngx_str_t                key;
    rd_kafka_headers_t      *hdrs;
    rd_kafka_resp_err_t      err;
    ngx_gdrive_kafka_dlq_t   dlq;

    ngx_gdrive_job_set_stage(job, NGX_GDRIVE_STAGE_DLQ);

    dlq.topic = ngx_gdrive_job_engine()->topic;
    dlq.instance = &ngx_gdrive_job_engine()->gmcf->instance;
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

    err = ngx_gdrive_kafka_produce(ngx_gdrive_job_engine()->producer,
                                   ngx_gdrive_job_engine()->dlq_topic, &key,
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


void
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
