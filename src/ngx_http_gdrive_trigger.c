
/*
 * nginx-gdrive-worker: the trigger location (gdrive_trigger).
 *
 * Locations layer: reads a POSTed trigger or batch without blocking,
 * validates it with the schema the consumer uses, produces every trigger
 * to the trigger topic keyed by integration_id, and answers 202 only from
 * the delivery reports: 202 means "acknowledged by Kafka".
 *
 * The state of one POST outlives the request when the client goes away
 * first: it is heap-allocated, the request's pool cleanup only detaches
 * it, and the last delivery report frees it.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_gdrive.h"
#include "ngx_gdrive_kafka.h"
#include "ngx_gdrive_metrics.h"
#include "ngx_gdrive_trace.h"
#include "ngx_http_gdrive.h"


typedef struct ngx_http_gdrive_post_s  ngx_http_gdrive_post_t;


/* a trigger body as it arrives: grown with what came, up to max */
typedef struct {
    u_char                      *data;
    size_t                       len;
    size_t                       cap;
    size_t                       max;
} ngx_http_gdrive_body_t;

typedef struct {
    ngx_gdrive_kafka_dr_t     dr;
    ngx_http_gdrive_post_t   *post;
    rd_kafka_resp_err_t       err;
    int32_t                   partition;
    int64_t                   offset;
    u_char                    id[NGX_GDRIVE_ID_MAX_LEN + 1];
    char                      trace_id[NGX_GDRIVE_TRACE_ID_LEN + 1];
} ngx_http_gdrive_item_t;


struct ngx_http_gdrive_post_s {
    ngx_http_request_t       *request;    /* NULL once detached */
    ngx_pool_cleanup_t       *cleanup;
    ngx_event_t               timer;
    ngx_queue_t               queue;      /* all posts awaiting reports */
    ngx_uint_t                pending;
    ngx_uint_t                count;
    rd_kafka_resp_err_t       err;        /* first failure */
    unsigned                  batch:1;
    ngx_http_gdrive_item_t    items[1];
};


static void ngx_http_gdrive_trigger_read(ngx_http_request_t *r);
static void ngx_http_gdrive_trigger_body_mark(void *data);
static void ngx_http_gdrive_trigger_body(ngx_http_request_t *r,
    ngx_http_gdrive_body_t *body);
static ngx_int_t ngx_http_gdrive_trigger_produce(ngx_http_request_t *r,
    ngx_gdrive_trigger_t *triggers, size_t n, ngx_uint_t batch);
static ngx_uint_t ngx_http_gdrive_trigger_trace(ngx_http_request_t *r,
    ngx_gdrive_trace_t *t);
static rd_kafka_resp_err_t ngx_http_gdrive_trigger_send(
    ngx_http_gdrive_item_t *item, ngx_gdrive_trace_t *trace, ngx_str_t *key,
    char *value, size_t len, ngx_uint_t free_value);
static void ngx_http_gdrive_trigger_delivered(void *data,
    rd_kafka_resp_err_t err, int32_t partition, int64_t offset);
static void ngx_http_gdrive_trigger_done(ngx_http_gdrive_post_t *post);
static ngx_int_t ngx_http_gdrive_trigger_respond(ngx_http_request_t *r,
    ngx_http_gdrive_post_t *post);
static void ngx_http_gdrive_trigger_timeout(ngx_event_t *ev);
static void ngx_http_gdrive_trigger_cleanup(void *data);
static void ngx_http_gdrive_post_detach(ngx_http_gdrive_post_t *post);
static ngx_int_t ngx_http_gdrive_trigger_invalid(ngx_http_request_t *r,
    ngx_gdrive_msg_error_t *err);
static ngx_int_t ngx_http_gdrive_unavailable(ngx_http_request_t *r,
    const char *detail);


static ngx_queue_t  ngx_http_gdrive_posts;
static ngx_uint_t   ngx_http_gdrive_posts_init;

/* what init gave this worker; no producer: triggers get 503 */
static ngx_http_gdrive_main_conf_t  *ngx_http_gdrive_trigger_conf;
static ngx_gdrive_kafka_t           *ngx_http_gdrive_trigger_producer;
static rd_kafka_topic_t             *ngx_http_gdrive_trigger_topic;


void
ngx_http_gdrive_trigger_init(ngx_http_gdrive_main_conf_t *gmcf,
    ngx_gdrive_kafka_t *producer, rd_kafka_topic_t *topic)
{
    ngx_http_gdrive_trigger_conf = gmcf;
    ngx_http_gdrive_trigger_producer = producer;
    ngx_http_gdrive_trigger_topic = topic;
}


ngx_int_t
ngx_http_gdrive_trigger_handler(ngx_http_request_t *r)
{
    ngx_int_t                    rc;
    ngx_str_t                   *ct;
    ngx_pool_cleanup_t          *cln;
    ngx_http_gdrive_body_t      *body;
    ngx_http_gdrive_loc_conf_t  *glcf;

    if (r->method != NGX_HTTP_POST) {
        if (ngx_http_gdrive_add_header(r, "Allow", "POST") != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_http_gdrive_send_error(r, NGX_HTTP_NOT_ALLOWED,
                                          "method_not_allowed",
                                          "triggers are POSTed");
    }

    if (r->headers_in.content_type == NULL) {
        return ngx_http_gdrive_send_error(r,
                                          NGX_HTTP_UNSUPPORTED_MEDIA_TYPE,
                                          "unsupported_media_type",
                                          "Content-Type must be "
                                          "application/json");
    }

    ct = &r->headers_in.content_type->value;

    if (ct->len < sizeof("application/json") - 1
        || ngx_strncasecmp(ct->data, (u_char *) "application/json",
                           sizeof("application/json") - 1) != 0
        || (ct->len > sizeof("application/json") - 1
            && ct->data[sizeof("application/json") - 1] != ';'
            && ct->data[sizeof("application/json") - 1] != ' '))
    {
        return ngx_http_gdrive_send_error(r,
                                          NGX_HTTP_UNSUPPORTED_MEDIA_TYPE,
                                          "unsupported_media_type",
                                          "Content-Type must be "
                                          "application/json");
    }

    glcf = ngx_http_get_module_loc_conf(r, ngx_http_gdrive_worker_module);

    if (r->headers_in.content_length_n > (off_t) glcf->trigger_max_body) {
        r->keepalive = 0;
        r->lingering_close = 1;
        return ngx_http_gdrive_send_error(r,
                                          NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                          "payload_too_large",
                                          "the body is larger than this "
                                          "location accepts");
    }

    if (ngx_http_gdrive_trigger_producer == NULL) {
        return ngx_http_gdrive_unavailable(r, "the Kafka producer of this "
                                              "worker is not running");
    }

    /*
     * The body is read unbuffered, through nginx's client_body_buffer_size
     * buffer, into one of ours that grows with what arrived, up to the
     * location's limit: a chunked body that stalls after its first chunk
     * costs what it sent, not the limit.  Nothing goes to a temporary
     * file, which would have to be read back with a blocking read.
     */

    body = ngx_pcalloc(r->pool, sizeof(ngx_http_gdrive_body_t));
    if (body == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    body->max = glcf->trigger_max_body;

    /*
     * Found again through the request pool's cleanups, not the module's
     * context: that slot is the error filter's, which must still turn
     * whatever nginx answers meanwhile (HTTP/2 finalizes on its own) into
     * the module's JSON.
     */

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln->handler = ngx_http_gdrive_trigger_body_mark;
    cln->data = body;

    r->request_body_no_buffering = 1;

    rc = ngx_http_read_client_request_body(r, ngx_http_gdrive_trigger_read);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        /* nginx's answer goes out as the module's JSON error */
        return rc;
    }

    return NGX_DONE;
}


/* marks the request pool's cleanup that holds the body being read */

static void
ngx_http_gdrive_trigger_body_mark(void *data)
{
}


/*
 * The body's post handler and then its read handler: what arrived is
 * taken out of nginx's buffers (which frees them for more), until the
 * body is whole.
 */

static void
ngx_http_gdrive_trigger_read(ngx_http_request_t *r)
{
    size_t                   n, cap;
    u_char                  *p;
    ngx_int_t                rc;
    ngx_chain_t             *cl;
    ngx_pool_cleanup_t      *cln;
    ngx_http_gdrive_body_t  *body;

    body = NULL;

    for (cln = r->pool->cleanup; cln; cln = cln->next) {
        if (cln->handler == ngx_http_gdrive_trigger_body_mark) {
            body = cln->data;
            break;
        }
    }

    if (body == NULL || r->request_body == NULL || r != r->main) {
        /* a body nginx discarded, or a subrequest's: nothing to read */
        ngx_http_finalize_request(r,
            ngx_http_gdrive_send_error(r, NGX_HTTP_BAD_REQUEST,
                                       "invalid_request",
                                       "the trigger location takes its "
                                       "own requests' bodies only"));
        return;
    }

    for ( ;; ) {

        for (cl = r->request_body->bufs; cl; cl = cl->next) {
            n = cl->buf->last - cl->buf->pos;

            if (n == 0) {
                continue;
            }

            if (body->len + n > body->max) {
                r->keepalive = 0;
                r->lingering_close = 1;
                ngx_http_finalize_request(r,
                    ngx_http_gdrive_send_error(r,
                                       NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                       "payload_too_large",
                                       "the body is larger than this "
                                       "location accepts"));
                return;
            }

            if (body->len + n > body->cap) {
                cap = ngx_max(body->cap * 2, body->len + n);
                cap = ngx_min(ngx_max(cap, 4096), body->max);

                p = ngx_pnalloc(r->pool, cap);
                if (p == NULL) {
                    ngx_http_finalize_request(r,
                                         NGX_HTTP_INTERNAL_SERVER_ERROR);
                    return;
                }

                if (body->len) {
                    ngx_memcpy(p, body->data, body->len);
                    ngx_pfree(r->pool, body->data);
                }

                body->data = p;
                body->cap = cap;
            }

            body->len = ngx_cpymem(body->data + body->len, cl->buf->pos, n)
                        - body->data;
            cl->buf->pos = cl->buf->last;
        }

        r->request_body->bufs = NULL;

        if (!r->reading_body) {
            break;
        }

        rc = ngx_http_read_unbuffered_request_body(r);

        if (rc == NGX_HTTP_REQUEST_TIME_OUT) {
            /*
             * nginx would close the connection without a word: the
             * client is told why, as JSON, and the connection closes
             */
            r->connection->timedout = 0;
            r->reading_body = 0;
            r->keepalive = 0;
            r->lingering_close = 0;
            ngx_http_finalize_request(r,
                ngx_http_gdrive_send_error(r, NGX_HTTP_REQUEST_TIME_OUT,
                                           "request_timeout",
                                           "the body did not arrive within "
                                           "client_body_timeout"));
            return;
        }

        if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
            /* 400 for a bad chunk and the like: JSON, by the filter */
            ngx_http_finalize_request(r, rc);
            return;
        }

        if (rc == NGX_AGAIN && r->request_body->bufs == NULL) {
            r->read_event_handler = ngx_http_gdrive_trigger_read;
            return;
        }
    }

    r->read_event_handler = ngx_http_block_reading;

    ngx_http_gdrive_trigger_body(r, body);
}


static void
ngx_http_gdrive_trigger_body(ngx_http_request_t *r,
    ngx_http_gdrive_body_t *body)
{
    int                          batch;
    size_t                       n, i;
    ngx_int_t                    rc;
    ngx_gdrive_trigger_t        *triggers;
    ngx_gdrive_msg_error_t       err;
    ngx_http_gdrive_loc_conf_t  *glcf;

    glcf = ngx_http_get_module_loc_conf(r, ngx_http_gdrive_worker_module);

    if (ngx_gdrive_trigger_parse_body(body->data ? body->data
                                                 : (u_char *) "",
                                      body->len,
                                      glcf->trigger_max_batch,
                                      &triggers, &n, &batch, &err)
        != 0)
    {
        ngx_http_finalize_request(r, ngx_http_gdrive_trigger_invalid(r, &err));
        return;
    }

    /*
     * Drive's metadata in a trigger is what the worker's own listings
     * hand to their children; from outside it could name any revision.
     * With gdrive_integrations, only those integrations are synced.
     */

    for (i = 0; i < n; i++) {
        if (!ngx_gdrive_integration_allowed(ngx_http_gdrive_trigger_conf,
                                            triggers[i].integration_id.data,
                                            triggers[i].integration_id.len))
        {
            ngx_gdrive_triggers_free(triggers, n);
            ngx_http_finalize_request(r,
                ngx_http_gdrive_send_error(r, NGX_HTTP_FORBIDDEN,
                                           "integration_not_allowed",
                                           "the integration is not one of "
                                           "gdrive_integrations"));
            return;
        }

        if (triggers[i].drive_file) {
            err.code = "invalid_message";
            err.field = "drive_file";
            err.index = batch ? (long) i : -1;
            ngx_cpystrn((u_char *) err.detail,
                        (u_char *) "field \"drive_file\" is made by the "
                        "worker's own listings, not accepted over HTTP",
                        sizeof(err.detail));

            ngx_gdrive_triggers_free(triggers, n);
            ngx_http_finalize_request(r,
                                      ngx_http_gdrive_trigger_invalid(r, &err));
            return;
        }
    }

    rc = ngx_http_gdrive_trigger_produce(r, triggers, n, batch);

    ngx_gdrive_triggers_free(triggers, n);

    if (rc != NGX_DONE) {
        ngx_http_finalize_request(r, rc);
    }
}


static ngx_int_t
ngx_http_gdrive_trigger_produce(ngx_http_request_t *r,
    ngx_gdrive_trigger_t *triggers, size_t n, ngx_uint_t batch)
{
    char                    uuid[NGX_GDRIVE_UUID_LEN + 1], *dump;
    u_char                 *q;
    size_t                  i, len;
    const u_char           *p, *last;
    ngx_str_t               key;
    ngx_uint_t              free_value, traced;
    rd_kafka_resp_err_t     err;
    ngx_gdrive_trace_t      trace;
    ngx_pool_cleanup_t     *cln;
    ngx_http_gdrive_item_t  *item;
    ngx_http_gdrive_post_t  *post;
    ngx_http_gdrive_main_conf_t  *gmcf;

    gmcf = ngx_http_gdrive_trigger_conf;
    traced = ngx_http_gdrive_trigger_trace(r, &trace);

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    post = ngx_calloc(sizeof(ngx_http_gdrive_post_t)
                      + (n - 1) * sizeof(ngx_http_gdrive_item_t),
                      r->connection->log);
    if (post == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    post->request = r;
    post->cleanup = cln;
    post->count = n;
    post->batch = batch;

    for (i = 0; i < n; i++) {
        item = &post->items[i];
        item->post = post;
        item->dr.handler = ngx_http_gdrive_trigger_delivered;
        item->dr.data = item;
        item->offset = -1;
        item->partition = -1;

        if (triggers[i].trigger_id.data == NULL) {

            /*
             * The server names a trigger that came without an id: the id
             * goes in first, and the rest follows byte for byte.
             */

            if (ngx_gdrive_uuid(uuid) != 0) {
                post->err = RD_KAFKA_RESP_ERR__FAIL;
                break;
            }

            ngx_cpystrn(item->id, (u_char *) uuid, sizeof(item->id));

            p = triggers[i].raw;
            last = p + triggers[i].raw_len;

            while (p < last && *p != '{') {
                p++;
            }

            len = sizeof("{\"trigger_id\":\"\",") - 1 + NGX_GDRIVE_UUID_LEN
                  + (last - p - 1);

            dump = malloc(len);
            if (dump == NULL) {
                post->err = RD_KAFKA_RESP_ERR__FAIL;
                break;
            }

            q = ngx_sprintf((u_char *) dump, "{\"trigger_id\":\"%s\",", uuid);
            ngx_memcpy(q, p + 1, last - p - 1);

            free_value = 1;

        } else {
            ngx_cpystrn(item->id, (u_char *) triggers[i].trigger_id.data,
                        ngx_min(sizeof(item->id),
                                triggers[i].trigger_id.len + 1));
            dump = (char *) triggers[i].raw;
            len = triggers[i].raw_len;
            free_value = 0;
        }

        key.data = (u_char *) triggers[i].integration_id.data;
        key.len = triggers[i].integration_id.len;

        /* without the caller's trace, each trigger starts one */

        if (!traced) {
            ngx_gdrive_trace_start(&trace);
        }

        err = ngx_http_gdrive_trigger_send(item, &trace, &key, dump, len,
                                           free_value);

        if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            if (free_value) {
                free(dump);
            }

            /* the rest is not produced: the client retries the batch */
            post->err = err;
            break;
        }

        post->pending++;
    }

    if (post->pending == 0) {
        ngx_free(post);
        return ngx_http_gdrive_unavailable(r, "Kafka does not take "
                                              "triggers now");
    }

    cln->handler = ngx_http_gdrive_trigger_cleanup;
    cln->data = post;

    if (!ngx_http_gdrive_posts_init) {
        ngx_queue_init(&ngx_http_gdrive_posts);
        ngx_http_gdrive_posts_init = 1;
    }

    ngx_queue_insert_tail(&ngx_http_gdrive_posts, &post->queue);

    /*
     * librdkafka reports every message within message.timeout.ms; the
     * timer is a guard, and it keeps a gracefully exiting worker alive
     * until the client has its answer.
     */

    post->timer.handler = ngx_http_gdrive_trigger_timeout;
    post->timer.data = post;
    post->timer.log = r->connection->log;
    ngx_add_timer(&post->timer, gmcf->kafka_delivery_timeout + 5000);

    /* notice a client that goes away while Kafka acknowledges */
    r->read_event_handler = ngx_http_test_reading;
    r->write_event_handler = ngx_http_request_empty_handler;

    return NGX_DONE;
}


/*
 * The caller's trace context: exactly one traceparent header, valid (W3C
 * says several are invalid), and the tracestate headers, one list, when
 * valid and at most 512 bytes together.  0: none, or not valid: the
 * trigger starts a trace, and nothing of the headers is carried on.
 */

static ngx_uint_t
ngx_http_gdrive_trigger_trace(ngx_http_request_t *r, ngx_gdrive_trace_t *t)
{
    u_char           *p;
    ngx_uint_t        i, n, bad_state;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h, *tp;

    tp = NULL;
    n = 0;
    bad_state = 0;
    t->state_len = 0;

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len == sizeof("traceparent") - 1
            && ngx_strncasecmp(h[i].key.data, (u_char *) "traceparent",
                               sizeof("traceparent") - 1) == 0)
        {
            tp = &h[i];
            n++;
            continue;
        }

        if (h[i].key.len != sizeof("tracestate") - 1
            || ngx_strncasecmp(h[i].key.data, (u_char *) "tracestate",
                               sizeof("tracestate") - 1) != 0
            || h[i].value.len == 0 || bad_state)
        {
            continue;
        }

        if (t->state_len + (t->state_len ? 1 : 0) + h[i].value.len
            > NGX_GDRIVE_TRACESTATE_MAX
            || !ngx_gdrive_tracestate_valid(h[i].value.data,
                                            h[i].value.len))
        {
            bad_state = 1;
            continue;
        }

        p = (u_char *) t->state + t->state_len;

        if (t->state_len) {
            *p++ = ',';
        }

        p = ngx_cpymem(p, h[i].value.data, h[i].value.len);
        *p = '\0';
        t->state_len = p - (u_char *) t->state;
    }

    if (bad_state) {
        t->state_len = 0;
    }

    if (n == 1
        && ngx_gdrive_traceparent_parse(t, tp->value.data, tp->value.len)
           == 0)
    {
        return 1;
    }

    if (n) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "gdrive: the traceparent header is not valid, "
                      "a trace is started");
    }

    return 0;
}


/* one trigger to Kafka, its trace context in the record's headers */

static rd_kafka_resp_err_t
ngx_http_gdrive_trigger_send(ngx_http_gdrive_item_t *item,
    ngx_gdrive_trace_t *trace, ngx_str_t *key, char *value, size_t len,
    ngx_uint_t free_value)
{
    char                  tp[NGX_GDRIVE_TRACEPARENT_LEN + 1];
    rd_kafka_headers_t   *hdrs;
    rd_kafka_resp_err_t   err;

    /* the caller's span stays the parent: the location makes no span */

    ngx_gdrive_traceparent_print(trace, trace->parent_id, tp);
    ngx_gdrive_trace_id_print(trace, item->trace_id);

    hdrs = ngx_gdrive_kafka_trace_headers(tp, trace->state_len
                                              ? trace->state : NULL);
    if (hdrs == NULL) {
        return RD_KAFKA_RESP_ERR__FAIL;
    }

    err = ngx_gdrive_kafka_produce(ngx_http_gdrive_trigger_producer,
                                   ngx_http_gdrive_trigger_topic, key,
                                   (u_char *) value, len, free_value, hdrs,
                                   &item->dr);

    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        ngx_gdrive_kafka_headers_free(hdrs);
    }

    return err;
}


static void
ngx_http_gdrive_trigger_delivered(void *data, rd_kafka_resp_err_t err,
    int32_t partition, int64_t offset)
{
    ngx_http_gdrive_item_t  *item = data;

    ngx_http_gdrive_post_t  *post;

    post = item->post;

    item->err = err;
    item->partition = partition;
    item->offset = offset;

    if (err != RD_KAFKA_RESP_ERR_NO_ERROR && post->err == 0) {
        post->err = err;
    }

    if (--post->pending == 0) {
        ngx_http_gdrive_trigger_done(post);
    }
}


static void
ngx_http_gdrive_trigger_done(ngx_http_gdrive_post_t *post)
{
    ngx_int_t            rc;
    ngx_connection_t    *c;
    ngx_http_request_t  *r;

    r = post->request;

    ngx_http_gdrive_post_detach(post);

    if (r != NULL) {
        c = r->connection;
        rc = ngx_http_gdrive_trigger_respond(r, post);
        ngx_http_finalize_request(r, rc);
        ngx_http_run_posted_requests(c);
    }

    ngx_free(post);
}


static ngx_int_t
ngx_http_gdrive_trigger_respond(ngx_http_request_t *r,
    ngx_http_gdrive_post_t *post)
{
    u_char                  *json, *p;
    size_t                   len;
    ngx_uint_t               i;
    ngx_str_t               *topic;
    ngx_http_gdrive_item_t  *item;

    if (post->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "gdrive: trigger not accepted: %s",
                      rd_kafka_err2str(post->err));

        return ngx_http_gdrive_unavailable(r,
                                           rd_kafka_err2str(post->err));
    }

    topic = &ngx_http_gdrive_trigger_conf->kafka_topic;

    len = 2 + post->count
              * (sizeof("{\"trigger_id\":\"\",\"topic\":\"\",\"partition\":"
                        ",\"offset\":,\"trace_id\":\"\"},") - 1
                 + NGX_GDRIVE_ID_MAX_LEN + topic->len + NGX_INT32_LEN
                 + NGX_INT64_LEN + NGX_GDRIVE_TRACE_ID_LEN);

    json = ngx_pnalloc(r->pool, len);
    if (json == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = json;

    if (post->batch) {
        *p++ = '[';
    }

    for (i = 0; i < post->count; i++) {
        item = &post->items[i];

        if (i) {
            *p++ = ',';
        }

        p = ngx_sprintf(p, "{\"trigger_id\":\"%s\",\"topic\":\"%V\","
                           "\"partition\":%D,\"offset\":%L,"
                           "\"trace_id\":\"%s\"}",
                        item->id, topic, item->partition, item->offset,
                        item->trace_id);
    }

    if (post->batch) {
        *p++ = ']';
    }

    /* refusals are counted by the status filter, one per request */
    ngx_gdrive_metric_trigger(NGX_HTTP_ACCEPTED, post->count);

    return ngx_http_gdrive_send_json(r, NGX_HTTP_ACCEPTED, json, p - json);
}


static void
ngx_http_gdrive_trigger_timeout(ngx_event_t *ev)
{
    ngx_http_gdrive_post_t  *post = ev->data;

    ngx_connection_t    *c;
    ngx_http_request_t  *r;

    r = post->request;

    ngx_log_error(NGX_LOG_ERR, ev->log, 0,
                  "gdrive: no delivery report for a trigger in time");

    /* the reports still come; the last one frees the post */
    ngx_http_gdrive_post_detach(post);

    if (r != NULL) {
        c = r->connection;
        ngx_http_finalize_request(r,
            ngx_http_gdrive_unavailable(r, "Kafka did not acknowledge "
                                           "in time"));
        ngx_http_run_posted_requests(c);
    }
}


static void
ngx_http_gdrive_trigger_cleanup(void *data)
{
    ngx_http_gdrive_post_t  *post = data;

    /* the request is gone before the reports: they free the post */
    post->cleanup = NULL;
    post->request = NULL;

    ngx_http_gdrive_post_detach(post);
}


static void
ngx_http_gdrive_post_detach(ngx_http_gdrive_post_t *post)
{
    if (post->cleanup) {
        post->cleanup->handler = NULL;
        post->cleanup = NULL;
    }

    post->request = NULL;

    if (post->timer.timer_set) {
        ngx_del_timer(&post->timer);
    }

    if (post->queue.next) {
        ngx_queue_remove(&post->queue);
        post->queue.next = NULL;
    }
}


/* at exit: reports served by the final flush must not touch requests */

void
ngx_http_gdrive_trigger_detach_all(void)
{
    ngx_queue_t             *q;
    ngx_http_gdrive_post_t  *post;

    if (!ngx_http_gdrive_posts_init) {
        return;
    }

    while (!ngx_queue_empty(&ngx_http_gdrive_posts)) {
        q = ngx_queue_head(&ngx_http_gdrive_posts);
        post = ngx_queue_data(q, ngx_http_gdrive_post_t, queue);
        ngx_http_gdrive_post_detach(post);
    }
}


static ngx_int_t
ngx_http_gdrive_trigger_invalid(ngx_http_request_t *r,
    ngx_gdrive_msg_error_t *err)
{
    u_char     *json, *p;
    size_t      len, dlen;
    uintptr_t   escape;

    dlen = ngx_strlen(err->detail);
    escape = ngx_escape_json(NULL, (u_char *) err->detail, dlen);

    len = sizeof("{\"error\":\"\",\"detail\":\"\",\"index\":,\"field\":\"\"}")
          + ngx_strlen(err->code) + dlen + escape + NGX_INT64_LEN
          + (err->field ? ngx_strlen(err->field) : 0) + 32;

    json = ngx_pnalloc(r->pool, len);
    if (json == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_sprintf(json, "{\"error\":\"%s\",\"detail\":\"", err->code);

    if (err->index >= 0) {
        p = ngx_sprintf(p, "item %l: ", err->index);
    }

    p = (u_char *) ngx_escape_json(p, (u_char *) err->detail, dlen);
    *p++ = '"';

    if (err->index >= 0) {
        p = ngx_sprintf(p, ",\"index\":%l", err->index);
    }

    if (err->field) {
        p = ngx_sprintf(p, ",\"field\":\"%s\"", err->field);
    }

    *p++ = '}';

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "gdrive: trigger rejected: %s: %s", err->code, err->detail);

    return ngx_http_gdrive_send_json(r, NGX_HTTP_BAD_REQUEST, json,
                                     p - json);
}


static ngx_int_t
ngx_http_gdrive_unavailable(ngx_http_request_t *r, const char *detail)
{
    if (ngx_http_gdrive_add_header(r, "Retry-After", "5") != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_gdrive_send_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                      "kafka_unavailable", detail);
}
