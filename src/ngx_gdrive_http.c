
/*
 * nginx-gdrive-worker: outbound HTTP on nginx's event loop.
 *
 * Infrastructure: one curl multi handle per worker process, driven by the
 * multi socket API.  curl's sockets become nginx connections whose events
 * call curl_multi_socket_action(); curl's timer is one nginx timer.  DNS
 * runs in curl's threaded resolver, off the loop.  Connection limits, DNS
 * cache, timeouts and TLS verification come from the configuration.  No
 * knowledge of Google or S3 here.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>

#include "ngx_gdrive.h"
#include "ngx_gdrive_http.h"


/* easy handles kept for the next request (see create()) */
#define NGX_GDRIVE_HTTP_FREE_HANDLES    64


/* curl's receive and send buffers while content moves (see start()) */
#define NGX_GDRIVE_HTTP_CONTENT_BUFFER  (256 * 1024)
/* curl's own upload buffer (its UPLOADBUFFER_DEFAULT) */
#define NGX_GDRIVE_HTTP_UPLOAD_DEFAULT  (64 * 1024)

/* hosts with requests in flight or waiting, at once (see host()) */
#define NGX_GDRIVE_HTTP_HOSTS           16


struct ngx_gdrive_http_host_s {
    u_char                        name[NGX_GDRIVE_HTTP_HOST_LEN];
    size_t                        len;       /* 0: a free entry */
    ngx_uint_t                    active;    /* requests given to curl */
    ngx_queue_t                   waiting;   /* held back, in order */
};


typedef struct {
    CURLM                        *multi;
    ngx_event_t                   timer;
    ngx_log_t                    *log;
    ngx_http_gdrive_main_conf_t  *gmcf;
    ngx_uint_t                    debug;     /* a line per request */
    ngx_uint_t                    running;
    ngx_uint_t                    in_curl;   /* inside socket_action() */
    ngx_queue_t                   pending;   /* started from a callback */
    ngx_event_t                   kick;
    ngx_uint_t                    nfree;
    CURL                         *free[NGX_GDRIVE_HTTP_FREE_HANDLES];
    ngx_queue_t                   idle;      /* sockets between transfers */
    ngx_uint_t                    nidle;
    u_char                       *ours;      /* by fd: opened by open() */
    size_t                        nours;
    ngx_gdrive_http_host_t        hosts[NGX_GDRIVE_HTTP_HOSTS];
    ngx_uint_t                    next;      /* the host admitted next */
    ngx_uint_t                    nwaiting;  /* requests held back */
    ngx_event_t                   admit;     /* some may go on */
    ngx_gdrive_worker_status_t   *status;
} ngx_gdrive_http_multi_t;


static int ngx_gdrive_http_socket(CURL *easy, curl_socket_t s, int what,
    void *userp, void *socketp);
static int ngx_gdrive_http_timer(CURLM *multi, long ms, void *userp);
static void ngx_gdrive_http_timer_handler(ngx_event_t *ev);
static void ngx_gdrive_http_event_handler(ngx_event_t *ev);
static void ngx_gdrive_http_check(void);
static void ngx_gdrive_http_report(ngx_gdrive_http_t *h);
static u_char *ngx_gdrive_http_value(u_char *p, u_char *last, u_char **end);
static size_t ngx_gdrive_http_write(char *ptr, size_t size, size_t n,
    void *data);
static size_t ngx_gdrive_http_read(char *ptr, size_t size, size_t n,
    void *data);
static size_t ngx_gdrive_http_header(char *ptr, size_t size, size_t n,
    void *data);
static void ngx_gdrive_http_cleanup(void *data);
static void ngx_gdrive_http_defaults(ngx_gdrive_http_t *h);
static ngx_int_t ngx_gdrive_http_easy(ngx_gdrive_http_t *h);
static ngx_int_t ngx_gdrive_http_curl(ngx_gdrive_http_t *h,
    const char *url);
static ngx_int_t ngx_gdrive_http_add(ngx_gdrive_http_t *h);
static ngx_int_t ngx_gdrive_http_go(ngx_gdrive_http_t *h);
static void ngx_gdrive_http_failed(ngx_gdrive_http_t *h);
static ngx_gdrive_http_host_t *ngx_gdrive_http_host(const char *url);
static ngx_uint_t ngx_gdrive_http_room(ngx_gdrive_http_host_t *host);
static void ngx_gdrive_http_take(ngx_gdrive_http_t *h);
static void ngx_gdrive_http_leave(ngx_gdrive_http_t *h);
static void ngx_gdrive_http_unwait(ngx_gdrive_http_t *h);
static void ngx_gdrive_http_show(ngx_uint_t waited);
static void ngx_gdrive_http_admit(ngx_event_t *ev);
static long ngx_gdrive_http_buffer(off_t len, long max);
static void ngx_gdrive_http_kick(ngx_event_t *ev);
static ngx_connection_t *ngx_gdrive_http_idle(curl_socket_t s);
static void ngx_gdrive_http_release(ngx_connection_t *c);
static int ngx_gdrive_http_close(void *data, curl_socket_t s);
static curl_socket_t ngx_gdrive_http_open(void *data, curlsocktype purpose,
    struct curl_sockaddr *a);


static ngx_gdrive_http_multi_t  ngx_gdrive_http_multi;


ngx_int_t
ngx_gdrive_http_init(ngx_cycle_t *cycle, ngx_http_gdrive_main_conf_t *gmcf,
    ngx_gdrive_worker_status_t *status)
{
    ngx_uint_t                i;
    ngx_gdrive_http_multi_t  *m;

    m = &ngx_gdrive_http_multi;

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        ngx_log_error(NGX_LOG_ALERT, cycle->log, 0,
                      "gdrive: curl_global_init() failed");
        return NGX_ERROR;
    }

    m->multi = curl_multi_init();
    if (m->multi == NULL) {
        return NGX_ERROR;
    }

    m->log = cycle->log;
    m->gmcf = gmcf;

    /*
     * The configuration calls the switch gdrive_google_api_debug; here it
     * is a line for every request made, to whatever host.
     */
    m->debug = gmcf->google_api_debug ? 1 : 0;

    m->timer.handler = ngx_gdrive_http_timer_handler;
    m->timer.data = m;
    m->timer.log = cycle->log;
    m->timer.cancelable = 1;

    ngx_queue_init(&m->pending);
    ngx_queue_init(&m->idle);
    m->kick.handler = ngx_gdrive_http_kick;
    m->kick.data = m;
    m->kick.log = cycle->log;

    for (i = 0; i < NGX_GDRIVE_HTTP_HOSTS; i++) {
        ngx_queue_init(&m->hosts[i].waiting);
    }

    m->admit.handler = ngx_gdrive_http_admit;
    m->admit.data = m;
    m->admit.log = cycle->log;
    m->status = status;

    curl_multi_setopt(m->multi, CURLMOPT_SOCKETFUNCTION,
                      ngx_gdrive_http_socket);
    curl_multi_setopt(m->multi, CURLMOPT_SOCKETDATA, m);
    curl_multi_setopt(m->multi, CURLMOPT_TIMERFUNCTION,
                      ngx_gdrive_http_timer);
    curl_multi_setopt(m->multi, CURLMOPT_TIMERDATA, m);
    curl_multi_setopt(m->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS,
                      (long) gmcf->max_connections);
    /* per host, requests wait in the worker (see host()) */
    curl_multi_setopt(m->multi, CURLMOPT_MAX_HOST_CONNECTIONS, 0L);
    curl_multi_setopt(m->multi, CURLMOPT_MAXCONNECTS,
                      (long) gmcf->max_connections);

    ngx_gdrive_h1_init(cycle, gmcf);

    return NGX_OK;
}


void
ngx_gdrive_http_done(void)
{
    ngx_gdrive_h1_done();

    while (ngx_gdrive_http_multi.nfree) {
        curl_easy_cleanup(
            ngx_gdrive_http_multi.free[--ngx_gdrive_http_multi.nfree]);
    }

    if (ngx_gdrive_http_multi.multi) {
        curl_multi_cleanup(ngx_gdrive_http_multi.multi);
        ngx_gdrive_http_multi.multi = NULL;
    }

    if (ngx_gdrive_http_multi.ours) {
        ngx_free(ngx_gdrive_http_multi.ours);
        ngx_gdrive_http_multi.ours = NULL;
        ngx_gdrive_http_multi.nours = 0;
    }

    if (ngx_gdrive_http_multi.timer.timer_set) {
        ngx_del_timer(&ngx_gdrive_http_multi.timer);
    }

    if (ngx_gdrive_http_multi.admit.posted) {
        ngx_delete_posted_event(&ngx_gdrive_http_multi.admit);
    }
}


/*
 * A request object lives in its owner's pool; destroying the pool cancels
 * the transfer and gives curl's handle back.  Up to
 * NGX_GDRIVE_HTTP_FREE_HANDLES handles are kept, reset, for the next
 * requests: a handle's allocations (its buffers, its state) are made once,
 * not for every request of every job.
 */

ngx_gdrive_http_t *
ngx_gdrive_http_create(ngx_pool_t *pool, ngx_log_t *log, size_t max_body)
{
    ngx_gdrive_http_t  *h;

    h = ngx_gdrive_http_create_lean(pool, log, max_body);

    if (h == NULL || ngx_gdrive_http_easy(h) != NGX_OK) {
        return NULL;
    }

    h->lean = 0;

    return h;
}


/*
 * A lean object gets curl's handle only when one of its requests goes to
 * curl: the Drive and S3 clients' requests to an origin of the worker's
 * own client never need one (see ngx_gdrive_http1.c).
 */

ngx_gdrive_http_t *
ngx_gdrive_http_create_lean(ngx_pool_t *pool, ngx_log_t *log,
    size_t max_body)
{
    ngx_gdrive_http_t   *h;
    ngx_pool_cleanup_t  *cln;

    if (ngx_gdrive_http_multi.gmcf == NULL) {
        return NULL;
    }

    cln = ngx_pool_cleanup_add(pool, 0);
    if (cln == NULL) {
        return NULL;
    }

    h = ngx_pcalloc(pool, sizeof(ngx_gdrive_http_t));
    if (h == NULL) {
        return NULL;
    }

    h->pool = pool;
    h->log = log;
    h->max_body = max_body;
    h->retry_after = -1;
    h->content_length = -1;
    h->expect = -1;
    h->lean = 1;

    cln->handler = ngx_gdrive_http_cleanup;
    cln->data = h;

    return h;
}


static ngx_int_t
ngx_gdrive_http_easy(ngx_gdrive_http_t *h)
{
    CURL  *easy;

    if (h->easy) {
        return NGX_OK;
    }

    if (ngx_gdrive_http_multi.nfree) {
        easy = ngx_gdrive_http_multi.free[--ngx_gdrive_http_multi.nfree];

    } else {
        easy = curl_easy_init();
        if (easy == NULL) {
            return NGX_ERROR;
        }
    }

    h->easy = easy;

    ngx_gdrive_http_defaults(h);

    return NGX_OK;
}


/*
 * One handle serves many requests in turn (an upload's parts): reset
 * forgets the options and headers of the last one, keeps the connection
 * cache of the multi handle.
 */

void
ngx_gdrive_http_reset(ngx_gdrive_http_t *h)
{
    ngx_gdrive_http_cancel(h);

    if (h->easy) {
        curl_easy_reset(h->easy);
    }

    curl_slist_free_all(h->headers);

    h->headers = NULL;
    h->method = NULL;
    h->request_body = NULL;
    h->request_len = 0;
    h->sink = NULL;
    h->source = NULL;
    h->source_len = 0;
    h->expect = -1;
    h->header_handler = NULL;
    h->len = 0;

    if (h->easy) {
        ngx_gdrive_http_defaults(h);
    }
}


static void
ngx_gdrive_http_defaults(ngx_gdrive_http_t *h)
{
    CURL                         *easy;
    ngx_http_gdrive_main_conf_t  *gmcf;

    gmcf = ngx_gdrive_http_multi.gmcf;
    easy = h->easy;

    curl_easy_setopt(easy, CURLOPT_PRIVATE, h);
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, h->error);
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, ngx_gdrive_http_write);
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, h);
    curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, ngx_gdrive_http_header);
    curl_easy_setopt(easy, CURLOPT_HEADERDATA, h);
    curl_easy_setopt(easy, CURLOPT_OPENSOCKETFUNCTION, ngx_gdrive_http_open);
    curl_easy_setopt(easy, CURLOPT_OPENSOCKETDATA, &ngx_gdrive_http_multi);
    curl_easy_setopt(easy, CURLOPT_CLOSESOCKETFUNCTION, ngx_gdrive_http_close);
    curl_easy_setopt(easy, CURLOPT_CLOSESOCKETDATA, &ngx_gdrive_http_multi);
    curl_easy_setopt(easy, CURLOPT_USERAGENT,
                     "nginx-gdrive-worker/" NGX_GDRIVE_VERSION);
    curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(easy, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(easy, CURLOPT_ACCEPT_ENCODING, "");
    curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS,
                     (long) gmcf->connect_timeout);
    /* a transfer that moves nothing for gdrive_read_timeout fails */
    curl_easy_setopt(easy, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(easy, CURLOPT_LOW_SPEED_TIME,
                     (long) (gmcf->read_timeout / 1000));
    curl_easy_setopt(easy, CURLOPT_DNS_CACHE_TIMEOUT,
                     (long) gmcf->dns_cache_ttl);
    curl_easy_setopt(easy, CURLOPT_SSL_VERIFYPEER,
                     gmcf->ssl_verify ? 1L : 0L);
    curl_easy_setopt(easy, CURLOPT_SSL_VERIFYHOST,
                     gmcf->ssl_verify ? 2L : 0L);

    if (gmcf->ca_file.len) {
        curl_easy_setopt(easy, CURLOPT_CAINFO, gmcf->ca_file.data);
    }
}


ngx_int_t
ngx_gdrive_http_header_add(ngx_gdrive_http_t *h, const char *line)
{
    struct curl_slist  *list;

    list = curl_slist_append(h->headers, line);
    if (list == NULL) {
        return NGX_ERROR;
    }

    h->headers = list;

    return NGX_OK;
}


ngx_uint_t
ngx_gdrive_header_safe(ngx_str_t *value)
{
    size_t  i;

    for (i = 0; i < value->len; i++) {
        if (value->data[i] == '\r' || value->data[i] == '\n'
            || value->data[i] == '\0')
        {
            return 0;
        }
    }

    return 1;
}


ngx_int_t
ngx_gdrive_http_start(ngx_gdrive_http_t *h, const char *url)
{
    ngx_int_t  rc;

    if (h->admitted || h->waiting || h->pending || h->removing) {
        ngx_log_error(NGX_LOG_ALERT, h->log, 0,
                      "gdrive: a request started before its last ended");
        return NGX_ERROR;
    }

    h->len = 0;
    h->status = 0;
    h->retry_after = -1;
    h->content_length = -1;
    h->location.len = 0;
    h->error[0] = '\0';
    h->started = ngx_current_msec;
    h->direct = 0;

    rc = h->lean ? ngx_gdrive_h1_prepare(h, url) : NGX_DECLINED;

    if (rc == NGX_OK) {
        h->direct = 1;

    } else if (rc == NGX_ERROR || ngx_gdrive_http_curl(h, url) != NGX_OK) {
        return NGX_ERROR;
    }

    h->host = ngx_gdrive_http_host(url);

    if (h->host && !h->no_wait
        && (!ngx_queue_empty(&h->host->waiting)
            || !ngx_gdrive_http_room(h->host)))
    {
        ngx_queue_insert_tail(&h->host->waiting, &h->queue);
        h->waiting = 1;
        ngx_gdrive_http_multi.nwaiting++;
        ngx_gdrive_http_show(1);

        return NGX_OK;
    }

    ngx_gdrive_http_take(h);

    if (ngx_gdrive_http_go(h) != NGX_OK) {
        ngx_gdrive_http_leave(h);
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* the request's options on curl's handle */

static ngx_int_t
ngx_gdrive_http_curl(ngx_gdrive_http_t *h, const char *url)
{
    long   size;
    off_t  len;

    if (ngx_gdrive_http_easy(h) != NGX_OK) {
        return NGX_ERROR;
    }

    curl_easy_setopt(h->easy, CURLOPT_URL, url);

    if (h->method) {
        if (ngx_strcmp(h->method, "HEAD") == 0) {
            curl_easy_setopt(h->easy, CURLOPT_NOBODY, 1L);

        } else {
            curl_easy_setopt(h->easy, CURLOPT_CUSTOMREQUEST, h->method);
        }
    }

    /*
     * Content (a sink's download, a part, a streamed PUT) moves in larger
     * pieces than curl's 16k and 64k: fewer system calls and callbacks
     * per byte: a fifth less worker CPU for a 1 GiB file here.  Only
     * while such a transfer runs, and no larger than the content: curl
     * 7.88 allocates its receive buffer for each transfer (and frees it
     * when the transfer is done); 256k for each file of 4k doubled the
     * worker's page faults and made malloc move its heap's top.  The
     * upload buffer stays with the handle until the size is set again:
     * it is never set below curl's default, and cleanup() gives it back.
     */

    if (h->sink && (h->expect < 0 || h->expect > CURL_MAX_WRITE_SIZE)) {
        size = ngx_gdrive_http_buffer(h->expect,
                                      NGX_GDRIVE_HTTP_CONTENT_BUFFER);
        curl_easy_setopt(h->easy, CURLOPT_BUFFERSIZE, size);
    }

    len = h->source ? h->source_len : (off_t) h->request_len;

    if (len > NGX_GDRIVE_HTTP_UPLOAD_DEFAULT) {
        size = ngx_gdrive_http_buffer(len, 2 * NGX_GDRIVE_HTTP_CONTENT_BUFFER);
        curl_easy_setopt(h->easy, CURLOPT_UPLOAD_BUFFERSIZE, size);
    }

    if (h->source) {
        /* read as it is sent; no "Expect: 100-continue" wait either */
        curl_easy_setopt(h->easy, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(h->easy, CURLOPT_INFILESIZE_LARGE,
                         (curl_off_t) h->source_len);
        curl_easy_setopt(h->easy, CURLOPT_READFUNCTION, ngx_gdrive_http_read);
        curl_easy_setopt(h->easy, CURLOPT_READDATA, h);

        if (ngx_gdrive_http_header_add(h, "Expect:") != NGX_OK) {
            return NGX_ERROR;
        }

    } else if (h->request_body || h->request_len) {
        /* sent from memory as it is; no "Expect: 100-continue" wait */
        curl_easy_setopt(h->easy, CURLOPT_POSTFIELDSIZE_LARGE,
                         (curl_off_t) h->request_len);
        curl_easy_setopt(h->easy, CURLOPT_POSTFIELDS,
                         h->request_body ? (char *) h->request_body : "");

        if (ngx_gdrive_http_header_add(h, "Expect:") != NGX_OK) {
            return NGX_ERROR;
        }
    }

    if (h->headers) {
        curl_easy_setopt(h->easy, CURLOPT_HTTPHEADER, h->headers);
    }

    return NGX_OK;
}


/* to curl now, or right after the callback it is started from */

static ngx_int_t
ngx_gdrive_http_go(ngx_gdrive_http_t *h)
{
    if (h->direct) {
        /* it goes from the loop anyway (ngx_gdrive_h1_launch()) */
        ngx_gdrive_h1_launch(h);
        h->active = 1;
        ngx_gdrive_http_multi.running++;
        return NGX_OK;
    }

    if (ngx_gdrive_http_multi.in_curl) {
        /*
         * Started from inside one of curl's callbacks (a sink that fills
         * a part buffer starts that part's upload): curl refuses a new
         * handle there, so it is added right after.
         */
        ngx_queue_insert_tail(&ngx_gdrive_http_multi.pending, &h->queue);
        h->pending = 1;

        if (!ngx_gdrive_http_multi.kick.posted) {
            ngx_post_event(&ngx_gdrive_http_multi.kick, &ngx_posted_events);
        }

        return NGX_OK;
    }

    return ngx_gdrive_http_add(h);
}


/* a buffer for len bytes of content: max, or less when len is less */

static long
ngx_gdrive_http_buffer(off_t len, long max)
{
    if (len < 0 || len >= max) {
        return max;
    }

    return (long) ngx_align(ngx_max(len, CURL_MAX_WRITE_SIZE),
                            CURL_MAX_WRITE_SIZE);
}


static ngx_int_t
ngx_gdrive_http_add(ngx_gdrive_http_t *h)
{
    CURLMcode  rc;

    rc = curl_multi_add_handle(ngx_gdrive_http_multi.multi, h->easy);

    if (rc != CURLM_OK) {
        ngx_log_error(NGX_LOG_ALERT, h->log, 0,
                      "gdrive: curl_multi_add_handle() failed: %s",
                      curl_multi_strerror(rc));
        return NGX_ERROR;
    }

    h->active = 1;
    ngx_gdrive_http_multi.running++;

    return NGX_OK;
}


static void
ngx_gdrive_http_kick(ngx_event_t *ev)
{
    ngx_gdrive_http_multi_t *m = ev->data;

    ngx_queue_t        *q;
    ngx_gdrive_http_t  *h;

    while (!ngx_queue_empty(&m->pending)) {
        q = ngx_queue_head(&m->pending);
        h = ngx_queue_data(q, ngx_gdrive_http_t, queue);
        ngx_queue_remove(q);

        if (h->removing) {
            h->removing = 0;
            ngx_gdrive_http_cancel(h);
            continue;
        }

        h->pending = 0;

        if (ngx_gdrive_http_add(h) != NGX_OK) {
            ngx_gdrive_http_failed(h);
        }
    }
}


static void
ngx_gdrive_http_failed(ngx_gdrive_http_t *h)
{
    ngx_gdrive_http_leave(h);

    h->result = CURLE_FAILED_INIT;
    h->status = 0;
    ngx_cpystrn((u_char *) h->error,
                (u_char *) "the request could not be started",
                CURL_ERROR_SIZE);
    h->handler(h);
}


/*
 * gdrive_max_connections' per_host is kept here, before curl: past it, a
 * request waits in the worker, behind the earlier ones of its host, until
 * one of them ends.  curl 7.88, handed it, would set its connection up
 * again (the URL parsed, a connection allocated and looked for) each time
 * any connection came free: a fifth more worker CPU per file with 64 jobs
 * in flight against 30 per host.  It counts requests, as the guide's
 * aiohttp connector does (over HTTP/1.1 a connection each; over HTTP/2
 * curl may carry them on fewer).  The total of connections stays curl's:
 * held back here, a download could keep the total from the upload that
 * drains it.  A probe is counted but never waits; a host beyond the
 * table's room is not limited here.  A host is the URL's
 * "scheme://authority" as spelled, in lower case.
 */

static ngx_gdrive_http_host_t *
ngx_gdrive_http_host(const char *url)
{
    size_t                   len;
    u_char                  *p, name[NGX_GDRIVE_HTTP_HOST_LEN];
    ngx_uint_t               i;
    ngx_gdrive_http_host_t  *host, *unused;

    p = (u_char *) ngx_strstr(url, "://");
    if (p == NULL) {
        return NULL;
    }

    p += 3;
    len = (p - (u_char *) url) + strcspn((char *) p, "/?#");

    if (len >= NGX_GDRIVE_HTTP_HOST_LEN) {
        return NULL;
    }

    ngx_strlow(name, (u_char *) url, len);

    unused = NULL;

    for (i = 0; i < NGX_GDRIVE_HTTP_HOSTS; i++) {
        host = &ngx_gdrive_http_multi.hosts[i];

        if (host->len == 0) {
            if (unused == NULL) {
                unused = host;
            }

            continue;
        }

        if (host->len == len && ngx_memcmp(host->name, name, len) == 0) {
            return host;
        }
    }

    if (unused) {
        ngx_memcpy(unused->name, name, len);
        unused->len = len;
    }

    return unused;
}


static ngx_uint_t
ngx_gdrive_http_room(ngx_gdrive_http_host_t *host)
{
    ngx_http_gdrive_main_conf_t  *gmcf;

    gmcf = ngx_gdrive_http_multi.gmcf;

    return host->active < gmcf->max_connections_per_host;
}


static void
ngx_gdrive_http_take(ngx_gdrive_http_t *h)
{
    h->admitted = 1;

    if (h->host) {
        h->host->active++;
    }
}


/* out of curl: its host's next request may go */

static void
ngx_gdrive_http_leave(ngx_gdrive_http_t *h)
{
    ngx_gdrive_http_host_t  *host;

    if (!h->admitted) {
        return;
    }

    h->admitted = 0;

    host = h->host;
    h->host = NULL;

    if (host) {
        host->active--;

        if (host->active == 0 && ngx_queue_empty(&host->waiting)) {
            host->len = 0;
        }
    }

    if (ngx_gdrive_http_multi.nwaiting && !ngx_gdrive_http_multi.admit.posted)
    {
        ngx_post_event(&ngx_gdrive_http_multi.admit, &ngx_posted_events);
    }
}


static void
ngx_gdrive_http_unwait(ngx_gdrive_http_t *h)
{
    ngx_gdrive_http_host_t  *host;

    ngx_queue_remove(&h->queue);
    h->waiting = 0;

    ngx_gdrive_http_multi.nwaiting--;
    ngx_gdrive_http_show(0);

    host = h->host;

    if (host->active == 0 && ngx_queue_empty(&host->waiting)) {
        host->len = 0;
    }
}


/* this worker's status slot, unless a newer worker has it (a reload) */

static void
ngx_gdrive_http_show(ngx_uint_t waited)
{
    ngx_gdrive_worker_status_t  *st;

    st = ngx_gdrive_http_multi.status;

    if (st == NULL || st->pid != (ngx_atomic_uint_t) ngx_pid) {
        return;
    }

    st->http_waiting = ngx_gdrive_http_multi.nwaiting;
    st->http_waited += waited;
}


/* posted when a request ends: the first waiting ones of hosts with room go,
 * the hosts in turn */

static void
ngx_gdrive_http_admit(ngx_event_t *ev)
{
    ngx_gdrive_http_multi_t *m = ev->data;

    ngx_uint_t               i, k;
    ngx_gdrive_http_t       *h;
    ngx_gdrive_http_host_t  *host;

    for ( ;; ) {
        h = NULL;

        for (i = 0; i < NGX_GDRIVE_HTTP_HOSTS; i++) {
            k = (m->next + i) % NGX_GDRIVE_HTTP_HOSTS;
            host = &m->hosts[k];

            if (host->len && !ngx_queue_empty(&host->waiting)
                && ngx_gdrive_http_room(host))
            {
                h = ngx_queue_data(ngx_queue_head(&host->waiting),
                                   ngx_gdrive_http_t, queue);
                m->next = (k + 1) % NGX_GDRIVE_HTTP_HOSTS;
                break;
            }
        }

        if (h == NULL) {
            return;
        }

        /* taken first: unwait() keeps the entry of a host with requests */
        ngx_gdrive_http_take(h);
        ngx_gdrive_http_unwait(h);

        if (ngx_gdrive_http_go(h) != NGX_OK) {
            ngx_gdrive_http_failed(h);
        }
    }
}


/* a sink that returned CURL_WRITEFUNC_PAUSE: deliver again; a source that
 * returned CURL_READFUNC_PAUSE: read again */

void
ngx_gdrive_http_resume(ngx_gdrive_http_t *h)
{
    if (h->active && h->direct) {
        ngx_gdrive_h1_resume(h);
        return;
    }

    if (h->active) {
        /* curl delivers what it held back and expires its timer at once */
        ngx_gdrive_http_multi.in_curl++;
        (void) curl_easy_pause(h->easy, CURLPAUSE_CONT);
        ngx_gdrive_http_multi.in_curl--;
    }
}


void
ngx_gdrive_http_cancel(ngx_gdrive_http_t *h)
{
    if (h->waiting) {
        /* never given to curl */
        ngx_gdrive_http_unwait(h);
        h->host = NULL;
        return;
    }

    if (h->pending) {
        ngx_queue_remove(&h->queue);
        h->pending = 0;
    }

    if (h->active && h->direct) {
        /* at once, even from a callback: its loop looks after each */
        ngx_gdrive_h1_cancel(h);
        h->active = 0;
        ngx_gdrive_http_multi.running--;
        ngx_gdrive_http_leave(h);
        return;
    }

    if (h->active && ngx_gdrive_http_multi.in_curl) {
        /*
         * Cancelled from inside one of curl's callbacks (an upload that
         * fails while the download feeds it): curl refuses to remove a
         * handle there, so it is removed right after, before anything
         * posted later (the owner's buffers stay until then).
         */

        if (!h->removing) {
            h->removing = 1;
            ngx_queue_insert_tail(&ngx_gdrive_http_multi.pending, &h->queue);

            if (!ngx_gdrive_http_multi.kick.posted) {
                ngx_post_event(&ngx_gdrive_http_multi.kick,
                               &ngx_posted_events);
            }
        }

        return;
    }

    if (h->removing) {
        ngx_queue_remove(&h->queue);
        h->removing = 0;
    }

    if (h->active) {
        curl_multi_remove_handle(ngx_gdrive_http_multi.multi, h->easy);
        h->active = 0;
        ngx_gdrive_http_multi.running--;
    }

    ngx_gdrive_http_leave(h);
}


static void
ngx_gdrive_http_cleanup(void *data)
{
    ngx_gdrive_http_t *h = data;

    ngx_gdrive_http_cancel(h);
    ngx_gdrive_h1_free(h);

    if (h->easy) {
        if (ngx_gdrive_http_multi.nfree < NGX_GDRIVE_HTTP_FREE_HANDLES
            && ngx_gdrive_http_multi.multi && !h->active)
        {
            /*
             * Options and pointers into this pool are forgotten here, and
             * an upload buffer larger than curl's own is given back (a
             * part's 512k would otherwise wait in the list).
             */
            curl_easy_reset(h->easy);
            curl_easy_setopt(h->easy, CURLOPT_UPLOAD_BUFFERSIZE,
                             (long) NGX_GDRIVE_HTTP_UPLOAD_DEFAULT);
            ngx_gdrive_http_multi.free[ngx_gdrive_http_multi.nfree++] =
                                                                     h->easy;

        } else {
            curl_easy_cleanup(h->easy);
        }
    }

    curl_slist_free_all(h->headers);

    if (h->body) {
        ngx_free(h->body);
    }

    h->easy = NULL;
    h->headers = NULL;
    h->body = NULL;
    h->cap = 0;
    h->len = 0;
}


/*
 * curl's sockets as nginx connections.  A connection that curl keeps for
 * the next request is told POLL_REMOVE at a transfer's end and POLL_IN
 * again when the next one starts: between the two it stays registered
 * for reading, idle, so that its reuse costs no epoll_ctl() either way.
 * An idle socket that becomes readable (the server closed it) is let go
 * of at once; one that curl closes is forgotten before it is closed (the
 * kernel drops a closed descriptor's registration; its number may come
 * back as another socket's).  Only connections that curl opened and will
 * close through open() and close() below are kept so: curl closes other
 * descriptors it watches (its resolver's socket pair) by itself.
 */

static int
ngx_gdrive_http_socket(CURL *easy, curl_socket_t s, int what, void *userp,
    void *socketp)
{
    ngx_gdrive_http_multi_t *m = userp;

    ngx_connection_t  *c;

    c = socketp;

    if (what == CURL_POLL_REMOVE) {
        if (c == NULL) {
            return 0;
        }

        curl_multi_assign(m->multi, s, NULL);

        if (c->read->active && !c->write->active
            && m->nidle < m->gmcf->max_connections
            && (size_t) s < m->nours && m->ours[s])
        {
            c->idle = 1;
            ngx_queue_insert_tail(&m->idle, &c->queue);
            m->nidle++;
            return 0;
        }

        ngx_gdrive_http_release(c);

        return 0;
    }

    if (c == NULL) {
        c = ngx_gdrive_http_idle(s);

        if (c) {
            ngx_queue_remove(&c->queue);
            m->nidle--;
            c->idle = 0;

        } else {
            c = ngx_get_connection(s, m->log);
            if (c == NULL) {
                return -1;
            }

            c->data = m;
            c->read->handler = ngx_gdrive_http_event_handler;
            c->write->handler = ngx_gdrive_http_event_handler;
            c->read->log = m->log;
            c->write->log = m->log;
        }

        curl_multi_assign(m->multi, s, c);
    }

    /* level-triggered: curl may leave data in the socket between calls */

    if (what & CURL_POLL_IN) {
        if (!c->read->active
            && ngx_add_event(c->read, NGX_READ_EVENT, NGX_LEVEL_EVENT)
               != NGX_OK)
        {
            return -1;
        }

    } else if (c->read->active) {
        ngx_del_event(c->read, NGX_READ_EVENT, 0);
    }

    if (what & CURL_POLL_OUT) {
        if (!c->write->active
            && ngx_add_event(c->write, NGX_WRITE_EVENT, NGX_LEVEL_EVENT)
               != NGX_OK)
        {
            return -1;
        }

    } else if (c->write->active) {
        ngx_del_event(c->write, NGX_WRITE_EVENT, 0);
    }

    return 0;
}


static ngx_connection_t *
ngx_gdrive_http_idle(curl_socket_t s)
{
    ngx_queue_t       *q;
    ngx_connection_t  *c;

    for (q = ngx_queue_head(&ngx_gdrive_http_multi.idle);
         q != ngx_queue_sentinel(&ngx_gdrive_http_multi.idle);
         q = ngx_queue_next(q))
    {
        c = ngx_queue_data(q, ngx_connection_t, queue);

        if (c->fd == (ngx_socket_t) s) {
            return c;
        }
    }

    return NULL;
}


/* curl still owns the socket: nginx lets go of it, not closes it */

static void
ngx_gdrive_http_release(ngx_connection_t *c)
{
    if (c->idle) {
        ngx_queue_remove(&c->queue);
        ngx_gdrive_http_multi.nidle--;
        c->idle = 0;
    }

    if (c->read->active) {
        ngx_del_event(c->read, NGX_READ_EVENT, 0);
    }

    if (c->write->active) {
        ngx_del_event(c->write, NGX_WRITE_EVENT, 0);
    }

    if (c->read->posted) {
        ngx_delete_posted_event(c->read);
    }

    if (c->write->posted) {
        ngx_delete_posted_event(c->write);
    }

    ngx_free_connection(c);
    c->fd = (ngx_socket_t) -1;
}


/* a connection's socket, as curl would open it, marked as one of ours */

static curl_socket_t
ngx_gdrive_http_open(void *data, curlsocktype purpose, struct curl_sockaddr *a)
{
    ngx_gdrive_http_multi_t *m = data;

    size_t          n;
    u_char         *ours;
    curl_socket_t   s;

    s = socket(a->family, a->socktype, a->protocol);

    if (s == CURL_SOCKET_BAD || s < 0) {
        return s;
    }

    if ((size_t) s >= m->nours && s < 65536) {
        /* grows with the largest descriptor seen, at most 64k bytes */
        n = ngx_max((size_t) s + 1, ngx_max(m->nours * 2, 256));

        ours = ngx_alloc(n, m->log);

        if (ours) {
            ngx_memzero(ours, n);

            if (m->nours) {
                ngx_memcpy(ours, m->ours, m->nours);
                ngx_free(m->ours);
            }

            m->ours = ours;
            m->nours = n;
        }
    }

    if ((size_t) s < m->nours) {
        m->ours[s] = 1;
    }

    return s;
}


static int
ngx_gdrive_http_close(void *data, curl_socket_t s)
{
    ngx_gdrive_http_multi_t *m = data;

    ngx_connection_t  *c;

    c = ngx_gdrive_http_idle(s);

    if (c) {
        ngx_gdrive_http_release(c);
    }

    if (s >= 0 && (size_t) s < m->nours) {
        m->ours[s] = 0;
    }

    return close(s);
}


static int
ngx_gdrive_http_timer(CURLM *multi, long ms, void *userp)
{
    ngx_gdrive_http_multi_t *m = userp;

    if (ms < 0) {
        if (m->timer.timer_set) {
            ngx_del_timer(&m->timer);
        }

        return 0;
    }

    if (ms == 0) {
        ms = 1;
    }

    /*
     * ngx_add_timer() keeps a set timer that is less than 300 ms off the
     * new time: harmless when it is due earlier (curl, run early, asks for
     * its time again), a stall when it is due later than curl's "now" (a
     * transfer just added would wait): an earlier time is always set.
     */

    if (m->timer.timer_set
        && (ngx_msec_int_t) (ngx_current_msec + ms - m->timer.timer.key) < 0)
    {
        ngx_del_timer(&m->timer);
    }

    /* never act from inside curl's callback: the timer runs it next */
    ngx_add_timer(&m->timer, (ngx_msec_t) ms);

    return 0;
}


static void
ngx_gdrive_http_timer_handler(ngx_event_t *ev)
{
    int  running;

    ngx_gdrive_http_multi.in_curl++;
    curl_multi_socket_action(ngx_gdrive_http_multi.multi, CURL_SOCKET_TIMEOUT,
                             0, &running);
    ngx_gdrive_http_multi.in_curl--;

    ngx_gdrive_http_check();
}


static void
ngx_gdrive_http_event_handler(ngx_event_t *ev)
{
    int                running;
    ngx_socket_t       fd;
    ngx_connection_t  *c;

    c = ev->data;
    fd = c->fd;

    if (c->idle) {
        /* between transfers: closed by the server, or junk */
        ngx_gdrive_http_release(c);
        return;
    }

    /* c may be freed by the socket callback inside this call */
    ngx_gdrive_http_multi.in_curl++;
    curl_multi_socket_action(ngx_gdrive_http_multi.multi, fd,
                             ev->write ? CURL_CSELECT_OUT : CURL_CSELECT_IN,
                             &running);
    ngx_gdrive_http_multi.in_curl--;

    ngx_gdrive_http_check();
}


static void
ngx_gdrive_http_check(void)
{
    int                 n;
    CURL               *easy;
    CURLMsg            *msg;
    ngx_gdrive_http_t  *h;

    while ((msg = curl_multi_info_read(ngx_gdrive_http_multi.multi, &n))) {

        if (msg->msg != CURLMSG_DONE) {
            continue;
        }

        easy = msg->easy_handle;
        h = NULL;
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **) &h);

        if (h->removing) {
            /* cancelled meanwhile: nobody waits for its end */
            ngx_gdrive_http_cancel(h);
            continue;
        }

        h->result = msg->data.result;
        curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &h->status);

        ngx_gdrive_http_cancel(h);
        ngx_gdrive_http_report(h);
    }
}


/* a request of the worker's own client ended */

void
ngx_gdrive_http_ended(ngx_gdrive_http_t *h)
{
    h->active = 0;
    ngx_gdrive_http_multi.running--;
    ngx_gdrive_http_leave(h);

    ngx_gdrive_http_report(h);
}


static void
ngx_gdrive_http_report(ngx_gdrive_http_t *h)
{
    if (ngx_gdrive_http_multi.debug) {
        ngx_log_error(NGX_LOG_NOTICE, h->log, 0,
                      "gdrive: http %s -> %l in %Mms by %s%s%s",
                      h->what ? h->what : "request", h->status,
                      ngx_current_msec - h->started,
                      h->direct ? "the worker" : "curl",
                      h->result ? ": " : "",
                      h->result ? (h->error[0] ? h->error
                                   : curl_easy_strerror(h->result))
                                : "");
    }

    h->handler(h);
}


/* the worker's own client calls a callback of the owner: starts and
 * cancels from there wait, as from curl's */

void
ngx_gdrive_http_callback(ngx_uint_t in)
{
    if (in) {
        ngx_gdrive_http_multi.in_curl++;

    } else {
        ngx_gdrive_http_multi.in_curl--;
    }
}


static size_t
ngx_gdrive_http_write(char *ptr, size_t size, size_t n, void *data)
{
    ngx_gdrive_http_t *h = data;

    if (h->status == 0) {
        /* a sink reads the status before the content */
        curl_easy_getinfo(h->easy, CURLINFO_RESPONSE_CODE, &h->status);
    }

    return ngx_gdrive_http_take_content(h, (u_char *) ptr, size * n);
}


/* content for the sink, else gathered up to max_body; curl's return */

size_t
ngx_gdrive_http_take_content(ngx_gdrive_http_t *h, u_char *ptr, size_t len)
{
    if (h->sink) {
        return h->sink(h, (u_char *) ptr, len);
    }

    if (h->len + len > h->max_body) {
        /* a response larger than expected is an error, not a big buffer */
        return 0;
    }

    if (ngx_gdrive_http_body_room(h, h->len + len) != NGX_OK) {
        return 0;
    }

    ngx_memcpy(h->body + h->len, ptr, len);
    h->len += len;

    return len;
}


/*
 * The body buffer grows on the heap, the old one freed, and is kept for
 * the object's next request: a listing of many pages costs the largest
 * page, not the sum of them (from the pool, every page's buffers stayed
 * until the job's end).  Freed with the object.
 */

ngx_int_t
ngx_gdrive_http_body_room(ngx_gdrive_http_t *h, size_t size)
{
    u_char  *body;
    size_t   cap;

    if (size <= h->cap) {
        return NGX_OK;
    }

    cap = ngx_max(h->cap * 2, size);
    cap = ngx_min(ngx_max(cap, 4096), ngx_max(h->max_body, size));

    body = ngx_alloc(cap, h->log);
    if (body == NULL) {
        return NGX_ERROR;
    }

    if (h->len) {
        ngx_memcpy(body, h->body, h->len);
    }

    if (h->body) {
        ngx_free(h->body);
    }

    h->body = body;
    h->cap = cap;

    return NGX_OK;
}


static size_t
ngx_gdrive_http_read(char *ptr, size_t size, size_t n, void *data)
{
    ngx_gdrive_http_t *h = data;

    return h->source(h, (u_char *) ptr, size * n);
}


static size_t
ngx_gdrive_http_header(char *ptr, size_t size, size_t n, void *data)
{
    ngx_gdrive_http_t *h = data;

    ngx_gdrive_http_line(h, (u_char *) ptr, size * n);

    return size * n;
}


/* a line of the answer's head, "\r\n" included: to the owner's handler,
 * and what this layer reads */

void
ngx_gdrive_http_line(ngx_gdrive_http_t *h, u_char *ptr, size_t len)
{
    u_char     *p, *last;
    ngx_int_t   v;
    ngx_str_t   origin;

    if (h->header_handler) {
        h->header_handler(h, ptr, len);
    }

    if (len > 15 && (ptr[0] | 0x20) == 'c'
        && ngx_strncasecmp(ptr, (u_char *) "content-length:", 15) == 0)
    {
        p = ngx_gdrive_http_value(ptr + 15, ptr + len, &last);
        h->content_length = ngx_atoof(p, last - p);
        return;
    }

    if (h->direct && len > 9
        && ngx_strncasecmp(ptr, (u_char *) "location:", 9) == 0)
    {
        p = ngx_gdrive_http_value(ptr + 9, ptr + len, &last);

        /* a path is on the request's origin */
        origin = ngx_gdrive_h1_origin_name(h);

        if (last - p < 2 || p[0] != '/' || p[1] == '/') {
            origin.len = 0;
        }

        h->location.data = ngx_pnalloc(h->pool, origin.len + (last - p) + 1);

        if (h->location.data) {
            h->location.len = origin.len + (last - p);
            *ngx_cpymem(ngx_cpymem(h->location.data, origin.data,
                                   origin.len), p, last - p) = '\0';
        }

        return;
    }

    if (len > 12 && ngx_strncasecmp(ptr, (u_char *) "retry-after:", 12) == 0)
    {
        p = ptr + 12;
        last = ptr + len;

        while (p < last && (*p == ' ' || *p == '\t')) {
            p++;
        }

        while (last > p && (last[-1] == '\r' || last[-1] == '\n'
                            || last[-1] == ' '))
        {
            last--;
        }

        /* seconds, at most an hour; an HTTP date is taken as a minute */
        v = ngx_atoi(p, last - p);
        h->retry_after = (v == NGX_ERROR) ? 60 : ngx_min(v, 3600);
    }
}


/* a header's value between p and last, without blanks and CRLF */

static u_char *
ngx_gdrive_http_value(u_char *p, u_char *last, u_char **end)
{
    while (p < last && (*p == ' ' || *p == '\t')) {
        p++;
    }

    while (last > p && (last[-1] == '\r' || last[-1] == '\n'
                        || last[-1] == ' ' || last[-1] == '\t'))
    {
        last--;
    }

    *end = last;

    return p;
}


/*
 * A redirect's URL: curl's, or the Location the worker's own client read,
 * absolute or a path on the request's origin.
 */

char *
ngx_gdrive_http_redirect_url(ngx_gdrive_http_t *h)
{
    char    *url;
    u_char  *p;

    if (!h->direct) {
        url = NULL;
        (void) curl_easy_getinfo(h->easy, CURLINFO_REDIRECT_URL, &url);
        return url;
    }

    p = h->location.data;

    if (h->location.len == 0
        || (ngx_strncasecmp(p, (u_char *) "http://", 7) != 0
            && ngx_strncasecmp(p, (u_char *) "https://", 8) != 0))
    {
        return NULL;
    }

    return (char *) p;
}
