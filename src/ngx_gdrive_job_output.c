
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


/* a result larger than this is not written (an internal error) */
#define NGX_GDRIVE_RESULT_MAX     (4 * 1024 * 1024)

/* a dead letter refused whole is cut in half down to this */
#define NGX_GDRIVE_DLQ_MIN_VALUE  1024


static char *ngx_gdrive_job_result_json(ngx_gdrive_job_t *job,
    size_t *len);
static void ngx_gdrive_job_json_str(ngx_gdrive_json_t *j, const char *key,
    const char *s);
static void ngx_gdrive_job_json_value(ngx_gdrive_json_t *j,
    const char *key, json_t *v);
static void ngx_gdrive_job_output_failed(ngx_gdrive_job_t *job,
    rd_kafka_resp_err_t err);
static void ngx_gdrive_job_output_retry(ngx_gdrive_job_t *job);


/* the result event: what the pipeline reached, keyed by integration */

void
ngx_gdrive_job_result(ngx_gdrive_job_t *job)
{
    char                 *json;
    size_t                len;
    ngx_str_t             key;
    rd_kafka_headers_t   *hdrs;
    rd_kafka_resp_err_t   err;

    ngx_gdrive_job_set_stage(job, NGX_GDRIVE_STAGE_RESULT);

    json = ngx_gdrive_job_result_json(job, &len);

    hdrs = json ? ngx_gdrive_job_trace_headers(job) : NULL;

    if (hdrs == NULL) {
        free(json);
        job->error = "internal_error";
        ngx_gdrive_job_retry(job, 1000);
        return;
    }

    key.data = (u_char *) job->trigger.integration_id.data;
    key.len = job->trigger.integration_id.len;

    /* librdkafka frees the JSON once delivered */

    err = ngx_gdrive_kafka_produce(ngx_gdrive_job_engine()->producer,
                                   ngx_gdrive_job_engine()->result_topic, &key,
                                   (u_char *) json, len, 1,
                                   hdrs, &job->dr);

    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        free(json);
        ngx_gdrive_kafka_headers_free(hdrs);
        ngx_gdrive_job_output_failed(job, err);
        return;
    }

    job->in_flight = 1;
}


/*
 * The result, written as it goes: a tree of jansson objects and its dump
 * were an eighth of a 4 KiB file's CPU.  Member order is the one it had.
 */

static char *
ngx_gdrive_job_result_json(ngx_gdrive_job_t *job, size_t *len)
{
    u_char                        worker[NGX_MAXHOSTNAMELEN + 32], *p;
    json_t                       *v;
    ngx_str_t                    *bucket;
    ngx_uint_t                    i;
    ngx_gdrive_json_t             j;
    ngx_gdrive_s3_upload_t       *u;
    ngx_http_gdrive_main_conf_t  *gmcf;

    static const char  *meta_fields[] = {
        "name", "mimeType", "size", "md5Checksum", "version",
        "modifiedTime", "headRevisionId", "driveId", NULL
    };

    gmcf = ngx_gdrive_job_engine()->gmcf;
    u = &job->upload;

    ngx_gdrive_json_init(&j, 1024, NGX_GDRIVE_RESULT_MAX);
    ngx_gdrive_json_open(&j, NULL);

    ngx_gdrive_job_json_str(&j, "trigger_id", (char *) job->id);
    ngx_gdrive_json_string(&j, "integration_id",
                           job->trigger.integration_id.data,
                           job->trigger.integration_id.len);
    ngx_gdrive_job_json_str(&j, "action",
                            ngx_gdrive_action_name(job->trigger.action));
    ngx_gdrive_job_json_str(&j, "status",
                            job->outcome ? job->outcome : "completed");

    if (job->meta) {
        ngx_gdrive_json_open(&j, "file");
        ngx_gdrive_json_string(&j, "id", (char *) job->file_id.data,
                               job->file_id.len);

        for (i = 0; meta_fields[i]; i++) {
            v = json_object_get(job->meta, meta_fields[i]);

            if (v) {
                ngx_gdrive_job_json_value(&j, meta_fields[i], v);
            }
        }

        if (job->shortcut_id.len) {
            ngx_gdrive_json_string(&j, "shortcut_id",
                                   (char *) job->shortcut_id.data,
                                   job->shortcut_id.len);
        }

        ngx_gdrive_json_close(&j);
    }

    if (job->pruned) {
        ngx_gdrive_json_int(&j, "deleted_objects",
                            (long long) job->prune.deleted);
    }

    if (u->key.len) {
        bucket = &gmcf->s3_bucket;

        ngx_gdrive_json_open(&j, "payload");
        ngx_gdrive_json_string(&j, "bucket", (char *) bucket->data,
                               bucket->len);
        ngx_gdrive_json_string(&j, "key", (char *) u->key.data, u->key.len);

        p = ngx_pnalloc(job->pool, bucket->len + u->key.len + 8);
        if (p) {
            ngx_gdrive_json_string(&j, "uri", (char *) p,
                                   ngx_sprintf(p, "s3://%V/%V", bucket,
                                               &u->key) - p);
        }

        ngx_gdrive_json_string(&j, "content_type",
                               (char *) u->content_type.data,
                               u->content_type.len);

        if (!u->unchanged) {
            ngx_gdrive_json_int(&j, "bytes", (long long) u->bytes);
            ngx_gdrive_json_string(&j, "sha256", (char *) u->sha256, 64);
            ngx_gdrive_json_string(&j, "md5", (char *) u->md5_hex, 32);
            ngx_gdrive_json_int(&j, "parts", (long long) u->parts);

        } else if (u->size >= 0) {
            ngx_gdrive_json_int(&j, "bytes", (long long) u->size);
        }

        ngx_gdrive_json_close(&j);
    }

    if (job->trigger.action != NGX_GDRIVE_SYNC_FILE) {
        ngx_gdrive_json_int(&j, "children", (long long) job->children);
        ngx_gdrive_json_int(&j, "pages", (long long) job->pages);
    }

    if (job->trigger.action == NGX_GDRIVE_SYNC_CHANGES) {
        ngx_gdrive_json_int(&j, "deleted", (long long) job->deleted);

        if (job->start_token.len) {
            ngx_gdrive_json_string(&j, "new_start_page_token",
                                   (char *) job->start_token.data,
                                   job->start_token.len);
        }
    }

    ngx_gdrive_json_int(&j, "attempts", (long long) job->attempt + 1);

    /* the job's cost in Google's quota: every attempt's requests */
    ngx_gdrive_json_int(&j, "google_requests",
                        (long long) (job->drive.requests
                                     + job->token.requests));
    ngx_gdrive_json_int(&j, "duration_ms",
                        (long long) (ngx_current_msec - job->started));

    p = ngx_snprintf(worker, sizeof(worker), "%V/%P", &gmcf->instance,
                     ngx_pid);
    ngx_gdrive_json_string(&j, "worker", (char *) worker, p - worker);
    ngx_gdrive_job_json_str(&j, "trace_id", job->trace_id);

    ngx_gdrive_json_open(&j, "source");
    ngx_gdrive_job_json_str(&j, "topic", ngx_gdrive_job_engine()->topic);
    ngx_gdrive_json_int(&j, "partition", (long long) job->msg->partition);
    ngx_gdrive_json_int(&j, "offset", (long long) job->msg->offset);
    ngx_gdrive_json_close(&j);

    ngx_gdrive_json_close(&j);

    return ngx_gdrive_json_done(&j, len);
}


static void
ngx_gdrive_job_json_str(ngx_gdrive_json_t *j, const char *key,
    const char *s)
{
    ngx_gdrive_json_string(j, key, s, ngx_strlen(s));
}


/* a value of Drive's metadata, whatever its type (it is Drive's word) */

static void
ngx_gdrive_job_json_value(ngx_gdrive_json_t *j, const char *key, json_t *v)
{
    char  *dump;

    switch (json_typeof(v)) {

    case JSON_STRING:
        ngx_gdrive_json_string(j, key, json_string_value(v),
                               json_string_length(v));
        break;

    case JSON_INTEGER:
        ngx_gdrive_json_int(j, key, (long long) json_integer_value(v));
        break;

    case JSON_TRUE:
        ngx_gdrive_json_raw(j, key, "true", 4);
        break;

    case JSON_FALSE:
        ngx_gdrive_json_raw(j, key, "false", 5);
        break;

    case JSON_NULL:
        ngx_gdrive_json_raw(j, key, "null", 4);
        break;

    default:
        dump = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);

        if (dump) {
            ngx_gdrive_json_raw(j, key, dump, ngx_strlen(dump));
            free(dump);
        }
    }
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
    dlq.traceparent = job->traceparent;
    dlq.tracestate = job->trace.state_len ? job->trace.state : NULL;

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
