
/*
 * nginx-gdrive-worker: the DLQ location (gdrive_dlq).
 *
 * Locations layer: GET lists the most recent dead-letter records with
 * their headers decoded; POST replays records to the trigger topic.  Both
 * are rare operator requests that read a topic from its end or from a
 * committed position, which librdkafka only offers as blocking calls
 * (metadata, watermarks, consume with a timeout, commit): they run in an
 * nginx thread pool task with the blocking client of the Kafka layer
 * (ngx_gdrive_kafka_admin.c), and the event loop only posts the task and
 * sends the answer.  This file keeps the HTTP side: arguments, JSON and
 * the task.
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
#include "ngx_gdrive_metrics.h"
#include "ngx_http_gdrive.h"
#include "ngx_gdrive_kafka_admin.h"


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


/* a record kept for the listing: its place in time, and its JSON */
typedef struct {
    int64_t                      ts;
    int32_t                      partition;
    int64_t                      offset;
    json_t                      *rec;
} ngx_http_gdrive_dlq_kept_t;


static void ngx_http_gdrive_dlq_body(ngx_http_request_t *r);
static ngx_int_t ngx_http_gdrive_dlq_post(ngx_http_request_t *r,
    ngx_http_gdrive_dlq_ctx_t *ctx);
static void ngx_http_gdrive_dlq_thread(void *data, ngx_log_t *log);
static void ngx_http_gdrive_dlq_done(ngx_event_t *ev);
static void ngx_http_gdrive_dlq_cleanup(void *data);
static int ngx_http_gdrive_dlq_older(ngx_http_gdrive_dlq_kept_t *a,
    ngx_http_gdrive_dlq_kept_t *b);
static void ngx_http_gdrive_dlq_sift_up(ngx_http_gdrive_dlq_kept_t *heap,
    size_t i);
static void ngx_http_gdrive_dlq_sift_down(ngx_http_gdrive_dlq_kept_t *heap,
    size_t n, size_t i);
static ngx_int_t ngx_http_gdrive_dlq_int(json_t *root, const char *name,
    json_int_t min, json_int_t max, json_int_t *value);
static ngx_uint_t ngx_http_gdrive_dlq_json_type(ngx_http_request_t *r);
static json_t *ngx_http_gdrive_dlq_record(ngx_gdrive_kafka_admin_t *ka,
    ngx_gdrive_kafka_record_t *msg);
static void ngx_http_gdrive_dlq_list(ngx_http_gdrive_dlq_ctx_t *ctx,
    ngx_log_t *log);
static int ngx_http_gdrive_dlq_list_start(ngx_http_gdrive_dlq_ctx_t *ctx,
    ngx_gdrive_kafka_admin_t *ka, const char *topic, int32_t *parts, int n,
    int64_t *end, int64_t *start);
static size_t ngx_http_gdrive_dlq_list_read(ngx_http_gdrive_dlq_ctx_t *ctx,
    ngx_gdrive_kafka_admin_t *ka, int32_t *parts, int n, int64_t *end,
    int open, ngx_http_gdrive_dlq_kept_t *heap);
static char *ngx_http_gdrive_dlq_list_json(const char *topic,
    ngx_http_gdrive_dlq_kept_t *heap, size_t kept);
static void ngx_http_gdrive_dlq_replay(ngx_http_gdrive_dlq_ctx_t *ctx,
    ngx_log_t *log);
static int ngx_http_gdrive_dlq_replay_start(ngx_http_gdrive_dlq_ctx_t *ctx,
    ngx_gdrive_kafka_admin_t *ka, const char *topic, int32_t *parts, int n,
    int64_t *end, int64_t *next, int64_t *start);
static ngx_uint_t ngx_http_gdrive_dlq_replay_copy(
    ngx_http_gdrive_dlq_ctx_t *ctx, ngx_gdrive_kafka_admin_t *ka,
    const char *topic, int32_t *parts, int n, int64_t *end, int64_t *next,
    int open);
static void ngx_http_gdrive_dlq_replay_result(ngx_http_gdrive_dlq_ctx_t *ctx,
    ngx_gdrive_kafka_admin_t *ka, const char *topic, int32_t *parts, int n,
    int64_t *next, ngx_uint_t produced);
static void ngx_http_gdrive_dlq_fail(ngx_http_gdrive_dlq_ctx_t *ctx,
    ngx_uint_t status, const char *code, const char *detail);
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


/* in a thread of the pool: blocking Kafka calls are fine here */

static void
ngx_http_gdrive_dlq_thread(void *data, ngx_log_t *log)
{
    ngx_http_gdrive_dlq_ctx_t *ctx = data;

    if (ctx->replay) {
        ngx_http_gdrive_dlq_replay(ctx, log);

    } else {
        ngx_http_gdrive_dlq_list(ctx, log);
    }
}


static void
ngx_http_gdrive_dlq_list(ngx_http_gdrive_dlq_ctx_t *ctx, ngx_log_t *log)
{
    int                          n, open;
    char                         err[512], group[300];
    size_t                       kept;
    int32_t                     *parts;
    int64_t                     *end, *start;
    const char                  *topic;
    ngx_gdrive_kafka_admin_t    *ka;
    ngx_http_gdrive_dlq_kept_t  *heap;

    topic = (char *) ctx->gmcf->kafka_dlq_topic.data;

    /* assigned, never joined nor committed: the group id is a formality */
    *ngx_snprintf((u_char *) group, sizeof(group) - 1, "%V.dlq-inspect",
                  &ctx->gmcf->kafka_group) = '\0';

    ka = ngx_gdrive_kafka_admin_open(log, ctx->gmcf, group, 0, err,
                                     sizeof(err));
    if (ka == NULL) {
        ngx_http_gdrive_dlq_fail(ctx, NGX_HTTP_SERVICE_UNAVAILABLE,
                                 "kafka_unavailable", err);
        return;
    }

    n = ngx_gdrive_kafka_admin_partitions(ka, topic, &parts,
                                          NGX_HTTP_GDRIVE_DLQ_WAIT);

    if (n < 0) {
        ngx_gdrive_kafka_admin_close(ka);
        ngx_http_gdrive_dlq_fail(ctx, NGX_HTTP_SERVICE_UNAVAILABLE,
                                 "kafka_unavailable",
                                 "the DLQ topic's metadata did not come");
        return;
    }

    end = calloc(n + 1, sizeof(int64_t));
    start = calloc(n + 1, sizeof(int64_t));

    /*
     * The newest "limit" records across partitions: a min-heap on time of
     * at most "limit" of them, so that memory is the limit, not the limit
     * times the partitions, and each record is a log step, not a scan.
     */

    heap = calloc(ctx->count + 1, sizeof(ngx_http_gdrive_dlq_kept_t));

    if (parts == NULL || end == NULL || start == NULL || heap == NULL) {
        free(end);
        free(start);
        free(heap);
        free(parts);
        ngx_gdrive_kafka_admin_close(ka);
        ngx_http_gdrive_dlq_fail(ctx, NGX_HTTP_SERVICE_UNAVAILABLE,
                                 "internal_error", "out of memory");
        return;
    }

    open = ngx_http_gdrive_dlq_list_start(ctx, ka, topic, parts, n, end,
                                          start);

    kept = ngx_http_gdrive_dlq_list_read(ctx, ka, parts, n, end, open, heap);

    ngx_gdrive_kafka_admin_close(ka);
    free(parts);
    free(end);
    free(start);

    ctx->status = NGX_HTTP_OK;
    ctx->json = ngx_http_gdrive_dlq_list_json(topic, heap, kept);

    free(heap);
}


/* the last "limit" records of every partition: how many partitions */

static int
ngx_http_gdrive_dlq_list_start(ngx_http_gdrive_dlq_ctx_t *ctx,
    ngx_gdrive_kafka_admin_t *ka, const char *topic, int32_t *parts, int n,
    int64_t *end, int64_t *start)
{
    int      i, open;
    int64_t  lo, hi;

    open = 0;

    for (i = 0; i < n; i++) {
        start[i] = NGX_GDRIVE_KAFKA_ADMIN_SKIP;

        if (ngx_gdrive_kafka_admin_watermarks(ka, topic, parts[i], &lo, &hi,
                                              NGX_HTTP_GDRIVE_DLQ_WAIT)
            != NGX_OK || hi <= lo)
        {
            continue;
        }

        end[i] = hi;
        start[i] = ngx_max(lo, hi - ctx->count);
        open++;
    }

    if (open) {
        (void) ngx_gdrive_kafka_admin_assign(ka, topic, parts, start, n);
    }

    return open;
}


/* the newest records kept in the heap: how many */

static size_t
ngx_http_gdrive_dlq_list_read(ngx_http_gdrive_dlq_ctx_t *ctx,
    ngx_gdrive_kafka_admin_t *ka, int32_t *parts, int n, int64_t *end,
    int open, ngx_http_gdrive_dlq_kept_t *heap)
{
    int                          i;
    size_t                       kept;
    ngx_msec_t                   deadline;
    ngx_gdrive_kafka_record_t    rec;
    ngx_http_gdrive_dlq_kept_t   e;

    kept = 0;
    deadline = ngx_http_gdrive_dlq_now() + NGX_HTTP_GDRIVE_DLQ_WAIT;

    while (open > 0
           && (ngx_msec_int_t) (deadline - ngx_http_gdrive_dlq_now()) > 0)
    {
        if (ngx_gdrive_kafka_admin_read(ka, &rec, 500) != NGX_OK) {
            continue;
        }

        e.ts = rec.timestamp;
        e.partition = rec.partition;
        e.offset = rec.offset;

        if (kept < (size_t) ctx->count) {
            e.rec = ngx_http_gdrive_dlq_record(ka, &rec);
            heap[kept++] = e;
            ngx_http_gdrive_dlq_sift_up(heap, kept - 1);

        } else if (ngx_http_gdrive_dlq_older(&heap[0], &e)) {
            json_decref(heap[0].rec);
            e.rec = ngx_http_gdrive_dlq_record(ka, &rec);
            heap[0] = e;
            ngx_http_gdrive_dlq_sift_down(heap, kept, 0);
        }

        for (i = 0; i < n; i++) {
            if (parts[i] == rec.partition && end[i]
                && rec.offset + 1 >= end[i])
            {
                end[i] = 0;
                open--;
            }
        }
    }

    return kept;
}


/* the newest first: the heap taken apart, oldest first, from the end */

static char *
ngx_http_gdrive_dlq_list_json(const char *topic,
    ngx_http_gdrive_dlq_kept_t *heap, size_t kept)
{
    size_t                      k;
    json_t                     *out;
    ngx_http_gdrive_dlq_kept_t  e;

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

    return ngx_http_gdrive_dlq_dump(json_pack("{s:s,s:I,s:o}",
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
ngx_http_gdrive_dlq_replay(ngx_http_gdrive_dlq_ctx_t *ctx, ngx_log_t *log)
{
    int                        n, open;
    char                       err[512], group[300];
    int32_t                   *parts;
    int64_t                   *end, *next, *start;
    const char                *topic;
    ngx_uint_t                 produced;
    ngx_gdrive_kafka_admin_t  *ka;

    topic = (char *) ctx->gmcf->kafka_dlq_topic.data;

    *ngx_snprintf((u_char *) group, sizeof(group) - 1, "%V.dlq-replay",
                  &ctx->gmcf->kafka_group) = '\0';

    ka = ngx_gdrive_kafka_admin_open(log, ctx->gmcf, group, 1, err,
                                     sizeof(err));
    if (ka == NULL) {
        ngx_http_gdrive_dlq_fail(ctx, NGX_HTTP_SERVICE_UNAVAILABLE,
                                 "kafka_unavailable", err);
        return;
    }

    n = ngx_gdrive_kafka_admin_partitions(ka, topic, &parts,
                                          NGX_HTTP_GDRIVE_DLQ_WAIT);

    if (n < 0) {
        ngx_gdrive_kafka_admin_close(ka);
        ngx_http_gdrive_dlq_fail(ctx, NGX_HTTP_SERVICE_UNAVAILABLE,
                                 "kafka_unavailable",
                                 "the DLQ topic's metadata did not come");
        return;
    }

    end = calloc(n + 1, sizeof(int64_t));
    next = calloc(n + 1, sizeof(int64_t));
    start = calloc(n + 1, sizeof(int64_t));

    if (parts == NULL || end == NULL || next == NULL || start == NULL) {
        free(parts);
        free(end);
        free(next);
        free(start);
        ngx_gdrive_kafka_admin_close(ka);
        ngx_http_gdrive_dlq_fail(ctx, NGX_HTTP_SERVICE_UNAVAILABLE,
                                 "internal_error", "out of memory");
        return;
    }

    open = ngx_http_gdrive_dlq_replay_start(ctx, ka, topic, parts, n, end,
                                            next, start);

    produced = ngx_http_gdrive_dlq_replay_copy(ctx, ka, topic, parts, n, end,
                                               next, open);

    /* acknowledged by the trigger topic before the position moves */
    ngx_gdrive_kafka_admin_flush(ka, NGX_HTTP_GDRIVE_DLQ_WAIT * 3,
                                 &ctx->delivered, &ctx->failed);

    ngx_gdrive_metric_dlq("replayed", ctx->delivered);

    ngx_http_gdrive_dlq_replay_result(ctx, ka, topic, parts, n, next,
                                      produced);

    ngx_gdrive_kafka_admin_close(ka);
    free(parts);
    free(end);
    free(next);
    free(start);
}


/*
 * Where each partition is read from and up to: the range asked, or from
 * the replay group's committed position to the end.  How many are read.
 */

static int
ngx_http_gdrive_dlq_replay_start(ngx_http_gdrive_dlq_ctx_t *ctx,
    ngx_gdrive_kafka_admin_t *ka, const char *topic, int32_t *parts, int n,
    int64_t *end, int64_t *next, int64_t *start)
{
    int      i, open;
    int64_t  lo, hi;

    open = 0;

    for (i = 0; i < n; i++) {
        next[i] = NGX_GDRIVE_KAFKA_ADMIN_SKIP;
        start[i] = NGX_GDRIVE_KAFKA_ADMIN_SKIP;

        if (ctx->partition >= 0 && parts[i] != ctx->partition) {
            continue;
        }

        if (ngx_gdrive_kafka_admin_watermarks(ka, topic, parts[i], &lo, &hi,
                                              NGX_HTTP_GDRIVE_DLQ_WAIT)
            != NGX_OK || hi <= lo)
        {
            continue;
        }

        if (ctx->partition >= 0) {
            /* an explicit range: replayed as asked, the position stays */
            if (ctx->from >= hi || ctx->to < lo) {
                continue;
            }

            end[i] = ngx_min(hi, ctx->to + 1);
            start[i] = ngx_max(lo, ctx->from);

        } else {
            /* from the replay group's committed position */
            end[i] = hi;
            start[i] = NGX_GDRIVE_KAFKA_ADMIN_STORED;
        }

        open++;
    }

    if (open) {
        (void) ngx_gdrive_kafka_admin_assign(ka, topic, parts, start, n);
    }

    return open;
}


/* the records copied to the trigger topic: how many were produced */

static ngx_uint_t
ngx_http_gdrive_dlq_replay_copy(ngx_http_gdrive_dlq_ctx_t *ctx,
    ngx_gdrive_kafka_admin_t *ka, const char *topic, int32_t *parts, int n,
    int64_t *end, int64_t *next, int open)
{
    int                         i;
    char                        from[300];
    ngx_msec_t                  deadline;
    ngx_uint_t                  produced;
    ngx_gdrive_kafka_record_t   rec;

    /* the original headers; the failure's own are left behind */
    static const char  *skip[] = { "__connect.errors.", "gdrive.", NULL };

    produced = 0;
    deadline = ngx_http_gdrive_dlq_now() + NGX_HTTP_GDRIVE_DLQ_WAIT;

    while (open > 0 && produced < (ngx_uint_t) ctx->count
           && (ngx_msec_int_t) (deadline - ngx_http_gdrive_dlq_now()) > 0)
    {
        if (ngx_gdrive_kafka_admin_read(ka, &rec, 500) != NGX_OK) {
            continue;
        }

        for (i = 0; i < n; i++) {
            if (parts[i] == rec.partition) {
                break;
            }
        }

        if (i == n || end[i] == 0 || rec.offset >= end[i]) {
            continue;
        }

        *ngx_snprintf((u_char *) from, sizeof(from) - 1, "%s/%D/%L", topic,
                      rec.partition, rec.offset) = '\0';

        if (ngx_gdrive_kafka_admin_forward(ka,
                                   (char *) ctx->gmcf->kafka_topic.data,
                                   skip, "gdrive.replayed_from", from)
            != NGX_OK)
        {
            break;
        }

        produced++;
        next[i] = rec.offset + 1;

        if (next[i] >= end[i]) {
            end[i] = 0;
            open--;
        }
    }

    return produced;
}


/* the answer; the position moves only when every copy was acknowledged */

static void
ngx_http_gdrive_dlq_replay_result(ngx_http_gdrive_dlq_ctx_t *ctx,
    ngx_gdrive_kafka_admin_t *ka, const char *topic, int32_t *parts, int n,
    int64_t *next, ngx_uint_t produced)
{
    int          i;
    char         name[32];
    json_t      *ranges;
    const char  *error;

    if (ctx->delivered != produced || ctx->failed != 0) {
        ngx_http_gdrive_dlq_fail(ctx, NGX_HTTP_SERVICE_UNAVAILABLE,
                                 "kafka_unavailable",
                                 "not every replayed record was "
                                 "acknowledged: the position did not move");
        return;
    }

    ranges = json_object();

    for (i = 0; i < n; i++) {
        if (next[i] >= 0) {
            *ngx_snprintf((u_char *) name, sizeof(name) - 1, "%D",
                          parts[i]) = '\0';
            json_object_set_new(ranges, name, json_integer(next[i]));
        }
    }

    error = NULL;

    if (ctx->partition < 0) {
        error = ngx_gdrive_kafka_admin_commit(ka, topic, parts, next, n);
    }

    ctx->status = (error == NULL) ? NGX_HTTP_OK
                                  : NGX_HTTP_SERVICE_UNAVAILABLE;
    ctx->json = ngx_http_gdrive_dlq_dump(json_pack(
                      "{s:s,s:s,s:I,s:o,s:b,s:s?}",
                      "from", topic,
                      "to", (char *) ctx->gmcf->kafka_topic.data,
                      "replayed", (json_int_t) produced,
                      "next_offsets", ranges,
                      "position_committed",
                      ctx->partition < 0 && error == NULL,
                      "error", error));
}


/* a record as JSON: text where it is UTF-8, else base64 */

static json_t *
ngx_http_gdrive_dlq_record(ngx_gdrive_kafka_admin_t *ka,
    ngx_gdrive_kafka_record_t *msg)
{
    size_t       i, hlen, len;
    json_t      *rec, *headers, *s;
    ngx_str_t    src, dst;
    const char  *name;
    const void  *hval;

    rec = json_pack("{s:I,s:I,s:I}", "partition", (json_int_t) msg->partition,
                    "offset", (json_int_t) msg->offset,
                    "timestamp", (json_int_t) msg->timestamp);

    if (msg->key) {
        s = json_stringn((char *) msg->key, msg->key_len);
        json_object_set_new(rec, "key", s ? s : json_null());
    }

    /* a dead letter may be far larger than a trigger: show 64 KiB of it */

    len = ngx_min(msg->len, NGX_HTTP_GDRIVE_DLQ_MAX_VALUE);

    if (len < msg->len) {
        json_object_set_new(rec, "value_bytes", json_integer(msg->len));
        json_object_set_new(rec, "value_truncated", json_true());
    }

    s = json_stringn(msg->value ? (char *) msg->value : "", len);

    if (s) {
        json_object_set_new(rec, "value", s);

    } else {
        src.data = (u_char *) msg->value;
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

    for (i = 0;
         ngx_gdrive_kafka_admin_header(ka, i, &name, &hval, &hlen) == NGX_OK;
         i++)
    {
        s = hval ? json_stringn(hval, hlen) : json_null();
        json_object_set_new(headers, name, s ? s : json_null());
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
