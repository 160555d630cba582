
/*
 * nginx-gdrive-worker: the DLQ location (gdrive_dlq).
 *
 * Locations layer: GET lists the most recent dead-letter records with
 * their headers decoded; POST replays records to the trigger topic.  Both
 * are rare operator requests that read a topic from its end or from a
 * committed position, which librdkafka only offers as blocking calls
 * (metadata, watermarks, consume with a timeout, commit): they run in an
 * nginx thread pool task with short-lived clients of their own, and the
 * event loop only posts the task and sends the answer.
 *
 * Replay commits its own position (group "<gdrive_kafka_group>.dlq-replay")
 * only after every replayed record is acknowledged by the trigger topic,
 * so a second call neither loses nor repeats records.  One replay runs at
 * a time across all workers (a lock in the shared zone).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <jansson.h>

#include "ngx_gdrive.h"


#if (NGX_THREADS)

#define NGX_HTTP_GDRIVE_DLQ_WAIT  10000     /* ms, per blocking call */
#define NGX_HTTP_GDRIVE_DLQ_MAX_VALUE  (64 * 1024)  /* bytes of a value shown */


typedef struct {
    ngx_http_request_t          *request;    /* NULL once detached */
    ngx_pool_cleanup_t          *cleanup;
    ngx_http_gdrive_main_conf_t *gmcf;
    ngx_gdrive_sh_t             *sh;

    /* what the task does */
    ngx_uint_t                   replay;
    long                         count;
    int32_t                      partition;  /* -1: all */
    int64_t                      from;
    int64_t                      to;

    /* what it found */
    ngx_uint_t                   status;
    char                        *json;      /* malloc()ed */
    ngx_uint_t                   delivered;
    ngx_uint_t                   failed;
} ngx_http_gdrive_dlq_ctx_t;


static void ngx_http_gdrive_dlq_body(ngx_http_request_t *r);
static ngx_int_t ngx_http_gdrive_dlq_post(ngx_http_request_t *r,
    ngx_http_gdrive_dlq_ctx_t *ctx);
static void ngx_http_gdrive_dlq_thread(void *data, ngx_log_t *log);
static void ngx_http_gdrive_dlq_done(ngx_event_t *ev);
static void ngx_http_gdrive_dlq_cleanup(void *data);
static rd_kafka_t *ngx_http_gdrive_dlq_client(ngx_http_gdrive_dlq_ctx_t *ctx,
    rd_kafka_type_t type, const char *group, char *err, size_t size);
/* a record kept for the listing: its place in time, and its JSON */
typedef struct {
    int64_t                      ts;
    int32_t                      partition;
    int64_t                      offset;
    json_t                      *rec;
} ngx_http_gdrive_dlq_kept_t;


static int ngx_http_gdrive_dlq_older(ngx_http_gdrive_dlq_kept_t *a,
    ngx_http_gdrive_dlq_kept_t *b);
static void ngx_http_gdrive_dlq_sift_up(ngx_http_gdrive_dlq_kept_t *heap,
    size_t i);
static void ngx_http_gdrive_dlq_sift_down(ngx_http_gdrive_dlq_kept_t *heap,
    size_t n, size_t i);
static ngx_int_t ngx_http_gdrive_dlq_int(json_t *root, const char *name,
    json_int_t min, json_int_t max, json_int_t *value);
static ngx_uint_t ngx_http_gdrive_dlq_json_type(ngx_http_request_t *r);
static int ngx_http_gdrive_dlq_partitions(rd_kafka_t *rk, const char *topic,
    int32_t **parts);
static json_t *ngx_http_gdrive_dlq_record(const rd_kafka_message_t *msg);
static void ngx_http_gdrive_dlq_list(ngx_http_gdrive_dlq_ctx_t *ctx);
static void ngx_http_gdrive_dlq_replay(ngx_http_gdrive_dlq_ctx_t *ctx);
static void ngx_http_gdrive_dlq_fail(ngx_http_gdrive_dlq_ctx_t *ctx,
    ngx_uint_t status, const char *code, const char *detail);
static void ngx_http_gdrive_dlq_dr(rd_kafka_t *rk,
    const rd_kafka_message_t *msg, void *opaque);
static char *ngx_http_gdrive_dlq_dump(json_t *obj);
static ngx_msec_t ngx_http_gdrive_dlq_now(void);


ngx_int_t
ngx_http_gdrive_dlq_handler(ngx_http_request_t *r)
{
    ngx_int_t                   rc;
    ngx_str_t                   value;
    ngx_http_gdrive_dlq_ctx_t   ctx;

    if (r->method == NGX_HTTP_POST) {
        rc = ngx_http_read_client_request_body(r, ngx_http_gdrive_dlq_body);

        if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
            return rc;
        }

        return NGX_DONE;
    }

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        if (ngx_http_gdrive_add_header(r, "Allow", "GET, POST") != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_http_gdrive_send_error(r, NGX_HTTP_NOT_ALLOWED,
                                          "method_not_allowed",
                                          "GET lists, POST replays");
    }

    ngx_memzero(&ctx, sizeof(ngx_http_gdrive_dlq_ctx_t));
    ctx.count = 20;
    ctx.partition = -1;

    if (ngx_http_arg(r, (u_char *) "limit", 5, &value) == NGX_OK) {
        ctx.count = ngx_atoi(value.data, value.len);

        if (ctx.count < 1 || ctx.count > 1000) {
            return ngx_http_gdrive_send_error(r, NGX_HTTP_BAD_REQUEST,
                                              "invalid_request",
                                              "limit must be from 1 to 1000");
        }
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    return ngx_http_gdrive_dlq_post(r, &ctx);
}


static void
ngx_http_gdrive_dlq_body(ngx_http_request_t *r)
{
    json_t                     *root;
    json_int_t                  count, partition, from, to;
    ngx_int_t                   rc;
    ngx_str_t                   body;
    json_error_t                jerr;
    ngx_http_gdrive_dlq_ctx_t   ctx;

    ngx_memzero(&ctx, sizeof(ngx_http_gdrive_dlq_ctx_t));
    ctx.replay = 1;
    ctx.count = 100;
    ctx.partition = -1;
    ctx.from = -1;
    ctx.to = -1;

    rc = ngx_http_gdrive_request_body(r, 64 * 1024, &body);

    if (rc != NGX_OK) {
        ngx_http_finalize_request(r, rc == NGX_ERROR
            ? NGX_HTTP_INTERNAL_SERVER_ERROR
            : ngx_http_gdrive_send_error(r, NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                         "payload_too_large",
                                         "a replay request is small JSON"));
        return;
    }

    /*
     * A state-changing request is JSON, said so in its Content-Type: a
     * form a web page posts (through a port-forward, say) is neither.
     */

    if (!ngx_http_gdrive_dlq_json_type(r) || body.len == 0) {
        ngx_http_finalize_request(r,
            ngx_http_gdrive_send_error(r, NGX_HTTP_UNSUPPORTED_MEDIA_TYPE,
                                       "unsupported_media_type",
                                       "a replay is a POST of "
                                       "Content-Type: application/json with "
                                       "a JSON object, {} for the defaults"));
        return;
    }

    root = json_loadb((char *) body.data, body.len, 0, &jerr);

    if (root == NULL || !json_is_object(root)
        || ngx_http_gdrive_dlq_int(root, "count", 1, 100000, &count)
           != NGX_OK
        || ngx_http_gdrive_dlq_int(root, "partition", 0, NGX_MAX_INT32_VALUE,
                                   &partition)
           != NGX_OK
        || ngx_http_gdrive_dlq_int(root, "from", 0, NGX_MAX_OFF_T_VALUE,
                                   &from)
           != NGX_OK
        || ngx_http_gdrive_dlq_int(root, "to", 0, NGX_MAX_OFF_T_VALUE, &to)
           != NGX_OK
        || (partition >= 0) != (from >= 0) || (from >= 0) != (to >= 0)
        || (count >= 0 && partition >= 0)
        || (partition >= 0 && (to < from || to - from >= 100000)))
    {
        json_decref(root);
        ngx_http_finalize_request(r,
            ngx_http_gdrive_send_error(r, NGX_HTTP_BAD_REQUEST,
                                       "invalid_request",
                                       "expected {\"count\":N} (N 1..100000) "
                                       "or {\"partition\":P,\"from\":O,"
                                       "\"to\":O} (whole numbers, from <= "
                                       "to, at most 100000 records)"));
        return;
    }

    json_decref(root);

    if (count >= 0) {
        ctx.count = (long) count;
    }

    if (partition >= 0) {
        ctx.partition = (int32_t) partition;
        ctx.from = from;
        ctx.to = to;
    }

    ngx_http_finalize_request(r, ngx_http_gdrive_dlq_post(r, &ctx));
}


/*
 * An optional member that must be a whole number in [min, max]: -1 when
 * absent; a float, a string, a negative or an overflow is NGX_ERROR.
 */

static ngx_int_t
ngx_http_gdrive_dlq_int(json_t *root, const char *name, json_int_t min,
    json_int_t max, json_int_t *value)
{
    json_t  *v;

    v = json_object_get(root, name);

    if (v == NULL) {
        *value = -1;
        return NGX_OK;
    }

    if (!json_is_integer(v) || json_integer_value(v) < min
        || json_integer_value(v) > max)
    {
        return NGX_ERROR;
    }

    *value = json_integer_value(v);

    return NGX_OK;
}


static ngx_uint_t
ngx_http_gdrive_dlq_json_type(ngx_http_request_t *r)
{
    ngx_str_t  *type;

    if (r->headers_in.content_type == NULL) {
        return 0;
    }

    type = &r->headers_in.content_type->value;

    return type->len >= sizeof("application/json") - 1
           && ngx_strncasecmp(type->data, (u_char *) "application/json",
                              sizeof("application/json") - 1)
              == 0
           && (type->len == sizeof("application/json") - 1
               || type->data[sizeof("application/json") - 1] == ';'
               || type->data[sizeof("application/json") - 1] == ' ');
}


static ngx_int_t
ngx_http_gdrive_dlq_post(ngx_http_request_t *r, ngx_http_gdrive_dlq_ctx_t *in)
{
    ngx_atomic_uint_t             holder;
    ngx_thread_task_t            *task;
    ngx_pool_cleanup_t           *cln;
    ngx_http_gdrive_dlq_ctx_t    *ctx;
    ngx_http_gdrive_main_conf_t  *gmcf;

    gmcf = ngx_http_get_module_main_conf(r, ngx_http_gdrive_worker_module);

    if (gmcf->thread_pool == NULL) {
        return ngx_http_gdrive_send_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                          "unavailable", "no thread pool");
    }

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    task = ngx_calloc(sizeof(ngx_thread_task_t)
                      + sizeof(ngx_http_gdrive_dlq_ctx_t),
                      r->connection->log);
    if (task == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx = (ngx_http_gdrive_dlq_ctx_t *) (task + 1);
    *ctx = *in;
    ctx->request = r;
    ctx->cleanup = cln;
    ctx->gmcf = gmcf;
    ctx->sh = ngx_gdrive_shm(gmcf);

    if (ctx->replay) {
        /* one replay at a time; a lock of a worker that died is taken over */
        holder = ctx->sh->dlq_replay;

        if (!ngx_atomic_cmp_set(&ctx->sh->dlq_replay, 0, ngx_pid)
            && !(holder && kill((ngx_pid_t) holder, 0) == -1
                 && ngx_atomic_cmp_set(&ctx->sh->dlq_replay, holder,
                                       ngx_pid)))
        {
            ngx_free(task);
            return ngx_http_gdrive_send_error(r, NGX_HTTP_CONFLICT,
                                              "replay_in_progress",
                                              "another replay is running");
        }
    }

    task->ctx = ctx;
    task->handler = ngx_http_gdrive_dlq_thread;
    task->event.handler = ngx_http_gdrive_dlq_done;
    task->event.data = task;

    if (ngx_thread_task_post(gmcf->thread_pool, task) != NGX_OK) {
        if (ctx->replay) {
            ngx_atomic_cmp_set(&ctx->sh->dlq_replay, ngx_pid, 0);
        }

        ngx_free(task);
        return ngx_http_gdrive_send_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                          "unavailable",
                                          "the thread pool queue is full");
    }

    cln->handler = ngx_http_gdrive_dlq_cleanup;
    cln->data = ctx;

    r->main->count++;
    r->read_event_handler = ngx_http_test_reading;
    r->write_event_handler = ngx_http_request_empty_handler;

    return NGX_DONE;
}


static void
ngx_http_gdrive_dlq_cleanup(void *data)
{
    ngx_http_gdrive_dlq_ctx_t *ctx = data;

    /* the task finishes on its own and frees itself */
    ctx->request = NULL;
    ctx->cleanup = NULL;
}


static void
ngx_http_gdrive_dlq_done(ngx_event_t *ev)
{
    ngx_thread_task_t *task = ev->data;

    u_char                     *json;
    size_t                      len;
    ngx_int_t                   rc;
    ngx_connection_t           *c;
    ngx_http_request_t         *r;
    ngx_http_gdrive_dlq_ctx_t  *ctx;

    ctx = task->ctx;
    r = ctx->request;

    if (ctx->replay) {
        ngx_atomic_cmp_set(&ctx->sh->dlq_replay, ngx_pid, 0);
    }

    if (r != NULL) {
        ctx->cleanup->handler = NULL;
        c = r->connection;

        len = ctx->json ? ngx_strlen(ctx->json) : 0;
        json = ngx_pnalloc(r->pool, len + 1);

        if (json == NULL) {
            rc = NGX_HTTP_INTERNAL_SERVER_ERROR;

        } else {
            ngx_memcpy(json, ctx->json, len);
            rc = ngx_http_gdrive_send_json(r, ctx->status, json, len);
        }

        ngx_http_finalize_request(r, rc);
        ngx_http_run_posted_requests(c);
    }

    free(ctx->json);
    ngx_free(task);
}


/* in a thread of the pool: blocking librdkafka calls are fine here */

static void
ngx_http_gdrive_dlq_thread(void *data, ngx_log_t *log)
{
    ngx_http_gdrive_dlq_ctx_t *ctx = data;

    if (ctx->replay) {
        ngx_http_gdrive_dlq_replay(ctx);

    } else {
        ngx_http_gdrive_dlq_list(ctx);
    }
}


static void
ngx_http_gdrive_dlq_list(ngx_http_gdrive_dlq_ctx_t *ctx)
{
    int                               i, n, open;
    char                              err[512], group[300];
    size_t                            k, kept;
    int32_t                          *parts;
    int64_t                           lo, hi, *end;
    json_t                           *out;
    rd_kafka_t                       *rk;
    ngx_http_gdrive_dlq_kept_t       *heap, e;
    const char                       *topic;
    rd_kafka_message_t               *msg;
    rd_kafka_topic_partition_list_t  *assign;
    ngx_msec_t                        deadline;

    topic = (char *) ctx->gmcf->kafka_dlq_topic.data;

    /* assigned, never joined nor committed: the group id is a formality */
    *ngx_snprintf((u_char *) group, sizeof(group) - 1, "%V.dlq-inspect",
                  &ctx->gmcf->kafka_group) = '\0';

    rk = ngx_http_gdrive_dlq_client(ctx, RD_KAFKA_CONSUMER, group, err,
                                    sizeof(err));
    if (rk == NULL) {
        ngx_http_gdrive_dlq_fail(ctx, NGX_HTTP_SERVICE_UNAVAILABLE,
                                 "kafka_unavailable", err);
        return;
    }

    n = ngx_http_gdrive_dlq_partitions(rk, topic, &parts);

    if (n < 0) {
        rd_kafka_destroy(rk);
        ngx_http_gdrive_dlq_fail(ctx, NGX_HTTP_SERVICE_UNAVAILABLE,
                                 "kafka_unavailable",
                                 "the DLQ topic's metadata did not come");
        return;
    }

    end = calloc(n + 1, sizeof(int64_t));
    assign = rd_kafka_topic_partition_list_new(n + 1);
    open = 0;

    /*
     * The newest "limit" records across partitions: a min-heap on time of
     * at most "limit" of them, so that memory is the limit, not the limit
     * times the partitions, and each record is a log step, not a scan.
     */

    heap = calloc(ctx->count + 1, sizeof(ngx_http_gdrive_dlq_kept_t));
    kept = 0;

    if (end == NULL || assign == NULL || heap == NULL) {
        free(end);
        free(heap);
        free(parts);

        if (assign) {
            rd_kafka_topic_partition_list_destroy(assign);
        }

        rd_kafka_destroy(rk);
        ngx_http_gdrive_dlq_fail(ctx, NGX_HTTP_SERVICE_UNAVAILABLE,
                                 "internal_error", "out of memory");
        return;
    }

    /* the last "limit" records of every partition, newest kept below */

    for (i = 0; i < n; i++) {
        if (rd_kafka_query_watermark_offsets(rk, topic, parts[i], &lo, &hi,
                                             NGX_HTTP_GDRIVE_DLQ_WAIT)
            != RD_KAFKA_RESP_ERR_NO_ERROR || hi <= lo)
        {
            continue;
        }

        end[i] = hi;
        rd_kafka_topic_partition_list_add(assign, topic, parts[i])->offset =
                                          ngx_max(lo, hi - ctx->count);
        open++;
    }

    if (open) {
        rd_kafka_assign(rk, assign);
    }

    deadline = ngx_http_gdrive_dlq_now() + NGX_HTTP_GDRIVE_DLQ_WAIT;

    while (open > 0 && (ngx_msec_int_t) (deadline - ngx_http_gdrive_dlq_now()) > 0) {
        msg = rd_kafka_consumer_poll(rk, 500);

        if (msg == NULL) {
            continue;
        }

        if (msg->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
            e.ts = rd_kafka_message_timestamp(msg, NULL);
            e.partition = msg->partition;
            e.offset = msg->offset;

            if (kept < (size_t) ctx->count) {
                e.rec = ngx_http_gdrive_dlq_record(msg);
                heap[kept++] = e;
                ngx_http_gdrive_dlq_sift_up(heap, kept - 1);

            } else if (ngx_http_gdrive_dlq_older(&heap[0], &e)) {
                json_decref(heap[0].rec);
                e.rec = ngx_http_gdrive_dlq_record(msg);
                heap[0] = e;
                ngx_http_gdrive_dlq_sift_down(heap, kept, 0);
            }

            for (i = 0; i < n; i++) {
                if (parts[i] == msg->partition && end[i]
                    && msg->offset + 1 >= end[i])
                {
                    end[i] = 0;
                    open--;
                }
            }
        }

        rd_kafka_message_destroy(msg);
    }

    rd_kafka_topic_partition_list_destroy(assign);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    free(parts);
    free(end);

    /* the newest first: the heap taken apart, oldest first, from the end */

    out = json_array();

    for (k = kept; k > 0; k--) {
        json_array_append_new(out, json_null());
    }

    while (kept) {
        e = heap[0];
        heap[0] = heap[--kept];
        ngx_http_gdrive_dlq_sift_down(heap, kept, 0);
        json_array_set_new(out, kept, e.rec);
    }

    free(heap);

    ctx->status = NGX_HTTP_OK;
    ctx->json = ngx_http_gdrive_dlq_dump(json_pack("{s:s,s:I,s:o}",
                              "topic", topic,
                              "count", (json_int_t) json_array_size(out),
                              "records", out));
}


/* is a older than b: by time, then partition and offset for a total order */

static int
ngx_http_gdrive_dlq_older(ngx_http_gdrive_dlq_kept_t *a,
    ngx_http_gdrive_dlq_kept_t *b)
{
    if (a->ts != b->ts) {
        return a->ts < b->ts;
    }

    if (a->partition != b->partition) {
        return a->partition > b->partition;
    }

    return a->offset < b->offset;
}


static void
ngx_http_gdrive_dlq_sift_up(ngx_http_gdrive_dlq_kept_t *heap, size_t i)
{
    size_t                      parent;
    ngx_http_gdrive_dlq_kept_t  t;

    while (i > 0) {
        parent = (i - 1) / 2;

        if (!ngx_http_gdrive_dlq_older(&heap[i], &heap[parent])) {
            return;
        }

        t = heap[i];
        heap[i] = heap[parent];
        heap[parent] = t;
        i = parent;
    }
}


static void
ngx_http_gdrive_dlq_sift_down(ngx_http_gdrive_dlq_kept_t *heap, size_t n,
    size_t i)
{
    size_t                      l, r, m;
    ngx_http_gdrive_dlq_kept_t  t;

    for ( ;; ) {
        l = 2 * i + 1;
        r = l + 1;
        m = i;

        if (l < n && ngx_http_gdrive_dlq_older(&heap[l], &heap[m])) {
            m = l;
        }

        if (r < n && ngx_http_gdrive_dlq_older(&heap[r], &heap[m])) {
            m = r;
        }

        if (m == i) {
            return;
        }

        t = heap[i];
        heap[i] = heap[m];
        heap[m] = t;
        i = m;
    }
}


static void
ngx_http_gdrive_dlq_replay(ngx_http_gdrive_dlq_ctx_t *ctx)
{
    int                               i, n, open;
    char                              err[512], group[300], from[300];
    size_t                            size, hlen;
    int32_t                          *parts;
    int64_t                           lo, hi, *end, *next;
    json_t                           *ranges;
    rd_kafka_t                       *rk, *pk;
    const char                       *topic, *name;
    const void                       *hval;
    ngx_msec_t                        deadline;
    ngx_uint_t                        produced;
    rd_kafka_headers_t               *orig, *hdrs;
    rd_kafka_message_t               *msg;
    rd_kafka_resp_err_t               rc;
    rd_kafka_topic_partition_list_t  *assign, *commit;

    topic = (char *) ctx->gmcf->kafka_dlq_topic.data;

    *ngx_snprintf((u_char *) group, sizeof(group) - 1, "%V.dlq-replay",
                  &ctx->gmcf->kafka_group) = '\0';

    rk = ngx_http_gdrive_dlq_client(ctx, RD_KAFKA_CONSUMER, group, err,
                                    sizeof(err));
    pk = rk ? ngx_http_gdrive_dlq_client(ctx, RD_KAFKA_PRODUCER, NULL, err,
                                         sizeof(err))
            : NULL;

    if (pk == NULL) {
        if (rk) {
            rd_kafka_destroy(rk);
        }

        ngx_http_gdrive_dlq_fail(ctx, NGX_HTTP_SERVICE_UNAVAILABLE,
                                 "kafka_unavailable", err);
        return;
    }

    n = ngx_http_gdrive_dlq_partitions(rk, topic, &parts);

    if (n < 0) {
        rd_kafka_destroy(pk);
        rd_kafka_destroy(rk);
        ngx_http_gdrive_dlq_fail(ctx, NGX_HTTP_SERVICE_UNAVAILABLE,
                                 "kafka_unavailable",
                                 "the DLQ topic's metadata did not come");
        return;
    }

    end = calloc(n + 1, sizeof(int64_t));
    next = calloc(n + 1, sizeof(int64_t));
    assign = rd_kafka_topic_partition_list_new(n + 1);
    open = 0;

    for (i = 0; i < n; i++) {
        next[i] = -1;

        if (ctx->partition >= 0 && parts[i] != ctx->partition) {
            continue;
        }

        if (rd_kafka_query_watermark_offsets(rk, topic, parts[i], &lo, &hi,
                                             NGX_HTTP_GDRIVE_DLQ_WAIT)
            != RD_KAFKA_RESP_ERR_NO_ERROR || hi <= lo)
        {
            continue;
        }

        if (ctx->partition >= 0) {
            /* an explicit range: replayed as asked, the position stays */
            if (ctx->from >= hi || ctx->to < lo) {
                continue;
            }

            end[i] = ngx_min(hi, ctx->to + 1);
            rd_kafka_topic_partition_list_add(assign, topic, parts[i])
                ->offset = ngx_max(lo, ctx->from);

        } else {
            /* from the replay group's committed position */
            end[i] = hi;
            rd_kafka_topic_partition_list_add(assign, topic, parts[i])
                ->offset = RD_KAFKA_OFFSET_STORED;
        }

        open++;
    }

    if (open) {
        rd_kafka_assign(rk, assign);
    }

    produced = 0;
    deadline = ngx_http_gdrive_dlq_now() + NGX_HTTP_GDRIVE_DLQ_WAIT;

    while (open > 0 && produced < (ngx_uint_t) ctx->count
           && (ngx_msec_int_t) (deadline - ngx_http_gdrive_dlq_now()) > 0)
    {
        msg = rd_kafka_consumer_poll(rk, 500);

        if (msg == NULL) {
            continue;
        }

        for (i = 0; i < n; i++) {
            if (parts[i] == msg->partition) {
                break;
            }
        }

        if (msg->err || i == n || end[i] == 0 || msg->offset >= end[i]) {
            rd_kafka_message_destroy(msg);
            continue;
        }

        /* the original headers; the failure's own are left behind */

        hdrs = rd_kafka_headers_new(8);

        if (rd_kafka_message_headers(msg, &orig)
            == RD_KAFKA_RESP_ERR_NO_ERROR)
        {
            for (size = 0;
                 rd_kafka_header_get_all(orig, size, &name, &hval, &hlen)
                 == RD_KAFKA_RESP_ERR_NO_ERROR;
                 size++)
            {
                if (ngx_strncmp(name, "__connect.errors.", 17) != 0
                    && ngx_strncmp(name, "gdrive.", 7) != 0)
                {
                    rd_kafka_header_add(hdrs, name, -1, hval, hlen);
                }
            }
        }

        *ngx_snprintf((u_char *) from, sizeof(from) - 1, "%s/%D/%L", topic,
                      msg->partition, msg->offset) = '\0';
        rd_kafka_header_add(hdrs, "gdrive.replayed_from", -1, from, -1);

        rc = rd_kafka_producev(pk,
                 RD_KAFKA_V_TOPIC((char *) ctx->gmcf->kafka_topic.data),
                 RD_KAFKA_V_KEY(msg->key, msg->key_len),
                 RD_KAFKA_V_VALUE(msg->payload, msg->len),
                 RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                 RD_KAFKA_V_HEADERS(hdrs),
                 RD_KAFKA_V_OPAQUE(ctx),
                 RD_KAFKA_V_END);

        if (rc != RD_KAFKA_RESP_ERR_NO_ERROR) {
            rd_kafka_headers_destroy(hdrs);
            rd_kafka_message_destroy(msg);
            break;
        }

        produced++;
        next[i] = msg->offset + 1;

        if (next[i] >= end[i]) {
            end[i] = 0;
            open--;
        }

        rd_kafka_message_destroy(msg);
    }

    /* acknowledged by the trigger topic before the position moves */
    rd_kafka_flush(pk, NGX_HTTP_GDRIVE_DLQ_WAIT * 3);

    ngx_gdrive_metric_dlq("replayed", ctx->delivered);

    ranges = json_object();
    commit = rd_kafka_topic_partition_list_new(n + 1);

    for (i = 0; i < n; i++) {
        if (next[i] >= 0) {
            rd_kafka_topic_partition_list_add(commit, topic, parts[i])
                ->offset = next[i];
            *ngx_snprintf((u_char *) from, sizeof(from) - 1, "%D",
                          parts[i]) = '\0';
            json_object_set_new(ranges, from, json_integer(next[i]));
        }
    }

    rc = RD_KAFKA_RESP_ERR_NO_ERROR;

    if (ctx->delivered == produced && ctx->failed == 0) {
        if (ctx->partition < 0 && commit->cnt) {
            rc = rd_kafka_commit(rk, commit, 0);
        }

        ctx->status = (rc == RD_KAFKA_RESP_ERR_NO_ERROR)
                      ? NGX_HTTP_OK : NGX_HTTP_SERVICE_UNAVAILABLE;
        ctx->json = ngx_http_gdrive_dlq_dump(json_pack(
                          "{s:s,s:s,s:I,s:o,s:b,s:s?}",
                          "from", topic,
                          "to", (char *) ctx->gmcf->kafka_topic.data,
                          "replayed", (json_int_t) produced,
                          "next_offsets", ranges,
                          "position_committed",
                          ctx->partition < 0
                          && rc == RD_KAFKA_RESP_ERR_NO_ERROR,
                          "error", rc ? rd_kafka_err2str(rc) : NULL));

    } else {
        json_decref(ranges);
        ngx_http_gdrive_dlq_fail(ctx, NGX_HTTP_SERVICE_UNAVAILABLE,
                                 "kafka_unavailable",
                                 "not every replayed record was "
                                 "acknowledged: the position did not move");
    }

    rd_kafka_topic_partition_list_destroy(commit);
    rd_kafka_topic_partition_list_destroy(assign);
    rd_kafka_destroy(pk);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    free(parts);
    free(end);
    free(next);
}


static void
ngx_http_gdrive_dlq_dr(rd_kafka_t *rk, const rd_kafka_message_t *msg,
    void *opaque)
{
    ngx_http_gdrive_dlq_ctx_t *ctx = msg->_private;

    /* served by rd_kafka_flush() in the task's own thread */

    if (msg->err) {
        ctx->failed++;

    } else {
        ctx->delivered++;
    }
}


/* a client of the task's own: no log queue, nobody serves one here */

static rd_kafka_t *
ngx_http_gdrive_dlq_client(ngx_http_gdrive_dlq_ctx_t *ctx,
    rd_kafka_type_t type, const char *group, char *err, size_t size)
{
    ngx_uint_t        i;
    rd_kafka_t       *rk;
    ngx_keyval_t     *kv;
    rd_kafka_conf_t  *conf;

    conf = rd_kafka_conf_new();

    if (rd_kafka_conf_set(conf, "bootstrap.servers",
                          (char *) ctx->gmcf->kafka_brokers.data, err, size)
        != RD_KAFKA_CONF_OK)
    {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }

    rd_kafka_conf_set(conf, "client.id", "nginx-gdrive-worker-dlq", err,
                      size);

    if (ctx->gmcf->kafka_options) {
        kv = ctx->gmcf->kafka_options->elts;

        for (i = 0; i < ctx->gmcf->kafka_options->nelts; i++) {
            rd_kafka_conf_set(conf, (char *) kv[i].key.data,
                              (char *) kv[i].value.data, err, size);
        }
    }

    if (type == RD_KAFKA_PRODUCER) {
        rd_kafka_conf_set(conf, "enable.idempotence", "true", err, size);
        rd_kafka_conf_set_dr_msg_cb(conf, ngx_http_gdrive_dlq_dr);

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


static int
ngx_http_gdrive_dlq_partitions(rd_kafka_t *rk, const char *topic,
    int32_t **parts)
{
    int                        i, n;
    rd_kafka_topic_t          *rkt;
    const rd_kafka_metadata_t *md;

    rkt = rd_kafka_topic_new(rk, topic, NULL);
    if (rkt == NULL) {
        return -1;
    }

    if (rd_kafka_metadata(rk, 0, rkt, &md, NGX_HTTP_GDRIVE_DLQ_WAIT)
        != RD_KAFKA_RESP_ERR_NO_ERROR)
    {
        rd_kafka_topic_destroy(rkt);
        return -1;
    }

    n = (md->topic_cnt == 1 && md->topics[0].err == 0)
        ? md->topics[0].partition_cnt : 0;

    *parts = calloc(n + 1, sizeof(int32_t));

    for (i = 0; i < n; i++) {
        (*parts)[i] = md->topics[0].partitions[i].id;
    }

    rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);

    return n;
}


/* a record as JSON: text where it is UTF-8, else base64 */

static json_t *
ngx_http_gdrive_dlq_record(const rd_kafka_message_t *msg)
{
    rd_kafka_timestamp_type_t  type;
    size_t               i, hlen, len;
    json_t              *rec, *headers, *s;
    ngx_str_t            src, dst;
    const char          *name;
    const void          *hval;
    rd_kafka_headers_t  *hdrs;

    rec = json_pack("{s:I,s:I,s:I}", "partition", (json_int_t) msg->partition,
                    "offset", (json_int_t) msg->offset,
                    "timestamp",
                    (json_int_t) rd_kafka_message_timestamp(msg, &type));

    if (msg->key) {
        s = json_stringn(msg->key, msg->key_len);
        json_object_set_new(rec, "key", s ? s : json_null());
    }

    /* a dead letter may be far larger than a trigger: show 64 KiB of it */

    len = ngx_min(msg->len, NGX_HTTP_GDRIVE_DLQ_MAX_VALUE);

    if (len < msg->len) {
        json_object_set_new(rec, "value_bytes", json_integer(msg->len));
        json_object_set_new(rec, "value_truncated", json_true());
    }

    s = json_stringn(msg->payload ? msg->payload : "", len);

    if (s) {
        json_object_set_new(rec, "value", s);

    } else {
        src.data = msg->payload;
        src.len = len;
        dst.len = ngx_base64_encoded_length(src.len);
        dst.data = malloc(dst.len + 1);

        if (dst.data) {
            ngx_encode_base64(&dst, &src);
            json_object_set_new(rec, "value_base64",
                                json_stringn((char *) dst.data, dst.len));
            free(dst.data);
        }
    }

    headers = json_object();

    if (rd_kafka_message_headers(msg, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        for (i = 0;
             rd_kafka_header_get_all(hdrs, i, &name, &hval, &hlen)
             == RD_KAFKA_RESP_ERR_NO_ERROR;
             i++)
        {
            s = hval ? json_stringn(hval, hlen) : json_null();
            json_object_set_new(headers, name, s ? s : json_null());
        }
    }

    json_object_set_new(rec, "headers", headers);

    return rec;
}


static void
ngx_http_gdrive_dlq_fail(ngx_http_gdrive_dlq_ctx_t *ctx, ngx_uint_t status,
    const char *code, const char *detail)
{
    ctx->status = status;
    ctx->json = ngx_http_gdrive_dlq_dump(json_pack("{s:s,s:s}",
                                   "error", code,
                                   "detail", detail[0] ? detail
                                                       : "Kafka error"));
}


static char *
ngx_http_gdrive_dlq_dump(json_t *obj)
{
    char  *text;

    text = obj ? json_dumps(obj, JSON_COMPACT|JSON_PRESERVE_ORDER) : NULL;
    json_decref(obj);

    return text;
}


/* the event loop's clock does not move for a thread */

static ngx_msec_t
ngx_http_gdrive_dlq_now(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);

    return (ngx_msec_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}


#else


ngx_int_t
ngx_http_gdrive_dlq_handler(ngx_http_request_t *r)
{
    return ngx_http_gdrive_send_error(r, NGX_HTTP_NOT_IMPLEMENTED,
                                      "not_implemented",
                                      "gdrive_dlq needs nginx built "
                                      "--with-threads");
}


#endif
