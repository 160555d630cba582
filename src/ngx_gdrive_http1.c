
/*
 * nginx-gdrive-worker: the worker's own HTTP/1.1 client.
 *
 * Infrastructure, part of outbound HTTP: ngx_gdrive_http.c sends here the
 * requests of Drive and S3 clients (ngx_gdrive_http_create_lean()) whose
 * origin this client can reach, and everything else to curl.  A request
 * costs what HTTP/1.1 needs and no more: its head written once into a
 * buffer, nginx's own parsers for the status line, the header lines and
 * chunked bodies, and a connection of nginx's, kept per origin between
 * requests and registered with the event loop once.  curl 7.88, per
 * request, parses and rebuilds the URL, allocates and compares a
 * connection, and formats every line of the request one character at a
 * time: about half of the worker's CPU per file.
 *
 * The semantics are those of the curl path, which callers cannot tell
 * apart: h->status before the first byte of content reaches a sink; a
 * header handler that sees the status line, every header line with its
 * CRLF and the empty line; a sink or source that may pause (resume()
 * posts the handle's event) or refuse; errors as CURLcodes with a line in
 * h->error.  A connection kept by the client and found closed by the
 * server before any byte of the answer came is replaced once, as curl
 * does, when the request can be sent again (no source was read).
 *
 * Reached: "http://" and "https://" origins whose host is an IP address,
 * or a name when the http block has a resolver (nginx's "resolver"
 * directive): the name is resolved on the event loop for each new
 * connection, nginx's resolver caching its answers for their TTL (or
 * "valid=").  Names without a resolver stay curl's.  TLS is nginx's
 * (OpenSSL's), verified as curl verifies: gdrive_ssl_verify,
 * gdrive_ca_file or the system's store, the name (or address) checked
 * against the certificate, the name sent as SNI.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_event_connect.h>
#include <ngx_http.h>

#include "ngx_gdrive.h"
#include "ngx_gdrive_http.h"


/* origins reached at once (a Drive API and an S3 endpoint, typically) */
#define NGX_GDRIVE_H1_ORIGINS     8
/* a response's head must fit; a small body lands here too */
#define NGX_GDRIVE_H1_BUFFER      (16 * 1024)
/* larger content is read in larger pieces, up to this */
#define NGX_GDRIVE_H1_CONTENT     (256 * 1024)
/* a source's body is sent from a buffer of up to this */
#define NGX_GDRIVE_H1_UPLOAD      (512 * 1024)
/* response buffers of NGX_GDRIVE_H1_BUFFER kept for the next requests */
#define NGX_GDRIVE_H1_FREE        32
/* a TLS connection's pool: nginx's connection state, its 16k buffer */
#define NGX_GDRIVE_H1_POOL        1024


typedef struct {
    u_char                  name[NGX_GDRIVE_HTTP_HOST_LEN];
    size_t                  len;          /* "http[s]://authority" */
    ngx_str_t               authority;    /* for the Host header */
    ngx_addr_t              addr;         /* of an IP address */
    ngx_str_t               host;         /* a name, to resolve */
    in_port_t               port;
    ngx_uint_t              next;         /* the address used next */
    ngx_queue_t             idle;         /* connections kept */
    ngx_uint_t              nidle;
    ngx_str_t               tls_name;     /* checked and sent as SNI */
    unsigned                usable:1;     /* 0: curl's */
    unsigned                named:1;
    unsigned                tls:1;
} ngx_gdrive_h1_origin_t;


typedef struct {
    ngx_connection_t       *c;
    ngx_gdrive_h1_origin_t *origin;
    ngx_queue_t             queue;
    ngx_gdrive_http_t      *h;            /* NULL: idle */
    ngx_uint_t              requests;
} ngx_gdrive_h1_conn_t;


struct ngx_gdrive_h1_s {
    ngx_gdrive_http_t      *h;
    ngx_gdrive_h1_conn_t   *conn;
    ngx_gdrive_h1_origin_t *origin;
    ngx_http_request_t      r;            /* the parsers' state */
    ngx_http_status_t       status;
    ngx_http_chunked_t      chunked;
    ngx_event_t             resume;       /* posted by resume() */
    ngx_resolver_ctx_t     *resolving;
    ngx_sockaddr_t          sockaddr;     /* a named origin's, resolved */
    socklen_t               socklen;
    struct sockaddr        *sockaddr_p;   /* the one connected to */

    u_char                 *head;         /* the request's head, heap */
    size_t                  head_cap;
    ngx_buf_t               out;          /* the head as it is sent */
    ngx_buf_t               body;         /* a body from memory, or the
                                             source's buffer */
    u_char                 *up;           /* the source's buffer, heap */
    size_t                  up_size;
    off_t                   read;         /* bytes taken from the source */

    ngx_buf_t               in;           /* the response, heap */
    off_t                   rest;         /* content left, -1: unknown */

    unsigned                active:1;
    unsigned                queued:1;     /* to go from the loop */
    unsigned                connecting:1;
    unsigned                sent:1;       /* the whole request */
    unsigned                reused:1;     /* on a kept connection */
    unsigned                retried:1;
    unsigned                got:1;        /* a byte of the answer came */
    unsigned                status_done:1;
    unsigned                head_done:1;
    unsigned                is_chunked:1;
    unsigned                close:1;      /* not to be kept */
    unsigned                paused_in:1;
    unsigned                paused_out:1;
};


typedef struct {
    ngx_gdrive_h1_origin_t  origins[NGX_GDRIVE_H1_ORIGINS];
    ngx_uint_t              norigins;
    ngx_log_t              *log;
    ngx_http_gdrive_main_conf_t *gmcf;
    ngx_resolver_t         *resolver;     /* NULL: names are curl's */
    ngx_msec_t              resolver_timeout;
#if (NGX_SSL)
    ngx_ssl_t               ssl;          /* ssl.ctx NULL: https is curl's */
#endif
    u_char                 *free[NGX_GDRIVE_H1_FREE];
    ngx_uint_t              nfree;
} ngx_gdrive_h1_client_t;


static ngx_gdrive_h1_origin_t *ngx_gdrive_h1_origin(const char *url,
    size_t *path);
static ngx_int_t ngx_gdrive_h1_request(ngx_gdrive_h1_t *d, const char *url,
    size_t path);
static ngx_uint_t ngx_gdrive_h1_has(struct curl_slist *l, const char *name,
    size_t len);
static void ngx_gdrive_h1_go(ngx_gdrive_h1_t *d);
static void ngx_gdrive_h1_resolve(ngx_gdrive_h1_t *d);
static void ngx_gdrive_h1_connected(ngx_gdrive_h1_t *d);
#if (NGX_SSL)
static void ngx_gdrive_h1_handshaked(ngx_connection_t *c);
static ngx_int_t ngx_gdrive_h1_verify(ngx_gdrive_h1_t *d);
static ngx_int_t ngx_gdrive_h1_tls_init(ngx_log_t *log,
    ngx_http_gdrive_main_conf_t *gmcf);
#endif
static void ngx_gdrive_h1_resolved(ngx_resolver_ctx_t *ctx);
static ngx_int_t ngx_gdrive_h1_connect(ngx_gdrive_h1_t *d);
static void ngx_gdrive_h1_write_handler(ngx_event_t *wev);
static void ngx_gdrive_h1_read_handler(ngx_event_t *rev);
static void ngx_gdrive_h1_resume_handler(ngx_event_t *ev);
static void ngx_gdrive_h1_send(ngx_gdrive_h1_t *d);
static ngx_int_t ngx_gdrive_h1_fill(ngx_gdrive_h1_t *d);
static void ngx_gdrive_h1_recv(ngx_gdrive_h1_t *d);
static ngx_int_t ngx_gdrive_h1_process(ngx_gdrive_h1_t *d);
static ngx_int_t ngx_gdrive_h1_head(ngx_gdrive_h1_t *d);
static ngx_int_t ngx_gdrive_h1_header(ngx_gdrive_h1_t *d);
static ngx_int_t ngx_gdrive_h1_content(ngx_gdrive_h1_t *d);
static ngx_int_t ngx_gdrive_h1_deliver(ngx_gdrive_h1_t *d, size_t n);
static void ngx_gdrive_h1_timer(ngx_gdrive_h1_t *d);
static ngx_int_t ngx_gdrive_h1_retry(ngx_gdrive_h1_t *d);
static void ngx_gdrive_h1_fail(ngx_gdrive_h1_t *d, CURLcode rc,
    const char *what, ngx_err_t err);
static void ngx_gdrive_h1_finish(ngx_gdrive_h1_t *d, CURLcode rc);
static void ngx_gdrive_h1_detach(ngx_gdrive_h1_t *d, ngx_uint_t keep);
static void ngx_gdrive_h1_close(ngx_gdrive_h1_conn_t *conn);
static void ngx_gdrive_h1_idle_handler(ngx_event_t *ev);
static void ngx_gdrive_h1_dummy_handler(ngx_event_t *ev);


static ngx_gdrive_h1_client_t  ngx_gdrive_h1_client;


void
ngx_gdrive_h1_init(ngx_cycle_t *cycle, ngx_http_gdrive_main_conf_t *gmcf)
{
    ngx_http_conf_ctx_t       *ctx;
    ngx_http_core_loc_conf_t  *clcf;

    ngx_gdrive_h1_client.log = cycle->log;
    ngx_gdrive_h1_client.gmcf = gmcf;

    /* the http block's resolver, if it has one with servers */

    ctx = (ngx_http_conf_ctx_t *) cycle->conf_ctx[ngx_http_module.index];
    clcf = ctx ? ctx->loc_conf[ngx_http_core_module.ctx_index] : NULL;

    if (clcf && clcf->resolver && clcf->resolver->connections.nelts) {
        ngx_gdrive_h1_client.resolver = clcf->resolver;

        /* the http block's own is merged into nothing: unset, it is
         * nginx's default, as its servers would have it */
        ngx_gdrive_h1_client.resolver_timeout =
                            clcf->resolver_timeout == NGX_CONF_UNSET_MSEC
                            ? 30000 : clcf->resolver_timeout;
    }

#if (NGX_SSL)
    if (ngx_gdrive_h1_tls_init(cycle->log, gmcf) != NGX_OK) {
        /* logged; https stays curl's */
        ngx_gdrive_h1_client.ssl.ctx = NULL;
    }
#endif
}


#if (NGX_SSL)

/*
 * The TLS context of https origins: TLS 1.2 and 1.3, the chain checked
 * against gdrive_ca_file or the system's store.  The handshake itself
 * never fails on the chain (SSL_VERIFY_NONE): the result is read after it,
 * with the name, so that the error says which (see verify()).
 */

static ngx_int_t
ngx_gdrive_h1_tls_init(ngx_log_t *log, ngx_http_gdrive_main_conf_t *gmcf)
{
    ngx_ssl_t  *ssl;

    ssl = &ngx_gdrive_h1_client.ssl;
    ssl->log = log;

    if (ngx_ssl_create(ssl, NGX_SSL_TLSv1_2 | NGX_SSL_TLSv1_3, NULL)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    SSL_CTX_set_verify(ssl->ctx, SSL_VERIFY_NONE, NULL);

    if (gmcf->ca_file.len) {
        if (SSL_CTX_load_verify_locations(ssl->ctx,
                                          (char *) gmcf->ca_file.data, NULL)
            != 1)
        {
            ngx_ssl_error(NGX_LOG_ERR, log, 0,
                          "gdrive: SSL_CTX_load_verify_locations(\"%s\") "
                          "failed: https is curl's", gmcf->ca_file.data);
            SSL_CTX_free(ssl->ctx);
            return NGX_ERROR;
        }

    } else if (SSL_CTX_set_default_verify_paths(ssl->ctx) != 1) {
        ngx_ssl_error(NGX_LOG_ERR, log, 0,
                      "gdrive: SSL_CTX_set_default_verify_paths() failed: "
                      "https is curl's");
        SSL_CTX_free(ssl->ctx);
        return NGX_ERROR;
    }

    return NGX_OK;
}

#endif


/*
 * An origin is "http://" and an authority, looked up as spelled in lower
 * case; its address is parsed once.  A name, a user part, an origin past
 * the table's room: not usable, and left to curl.
 */

static ngx_gdrive_h1_origin_t *
ngx_gdrive_h1_origin(const char *url, size_t *path)
{
    size_t                   len, alen, skip;
    u_char                  *a, *last;
    in_port_t                port;
    ngx_uint_t               i;
    ngx_gdrive_h1_origin_t  *o;
    ngx_gdrive_h1_client_t  *cl;

    cl = &ngx_gdrive_h1_client;

    if (ngx_strncasecmp((u_char *) url, (u_char *) "http://", 7) == 0) {
        skip = 7;

    } else if (ngx_strncasecmp((u_char *) url, (u_char *) "https://", 8)
               == 0)
    {
        skip = 8;

    } else {
        return NULL;
    }

    alen = strcspn(url + skip, "/?#");
    len = skip + alen;

    if (alen == 0 || len >= NGX_GDRIVE_HTTP_HOST_LEN) {
        return NULL;
    }

    *path = len;

    for (i = 0; i < cl->norigins; i++) {
        o = &cl->origins[i];

        if (o->len == len && ngx_strncasecmp(o->name, (u_char *) url, len)
                             == 0)
        {
            return o;
        }
    }

    if (cl->norigins == NGX_GDRIVE_H1_ORIGINS) {
        return NULL;
    }

    o = &cl->origins[cl->norigins++];

    ngx_strlow(o->name, (u_char *) url, len);
    o->len = len;
    o->authority.data = o->name + skip;
    o->authority.len = alen;
    o->tls = (skip == 8);
    ngx_queue_init(&o->idle);

    port = o->tls ? 443 : 80;

#if (NGX_SSL)
    if (o->tls && cl->ssl.ctx == NULL) {
        return o;
    }
#else
    /* an nginx built without TLS: https is curl's */
    if (o->tls) {
        return o;
    }
#endif

    a = o->authority.data;

    if (ngx_strlchr(a, a + alen, '@') != NULL) {
        return o;
    }

    o->addr.name = o->authority;

    if (ngx_parse_addr_port(ngx_cycle->pool, &o->addr, a, alen) == NGX_OK) {
        if (ngx_inet_get_port(o->addr.sockaddr) == 0) {
            ngx_inet_set_port(o->addr.sockaddr, port);
        }

        /* the address as the certificate names it: no brackets, no port */
        last = a + alen;

        if (*a == '[') {
            a++;
            last = ngx_strlchr(a, last, ']');

        } else if (ngx_strlchr(a, last, ':')) {
            last = ngx_strlchr(a, last, ':');
        }

        o->tls_name.data = a;
        o->tls_name.len = last ? (size_t) (last - a) : 0;
        o->usable = 1;
        return o;
    }

    /* a name, and a port if any: resolved, with a resolver */

    o->host.data = o->name + skip;
    o->host.len = alen;
    o->port = port;

    a = ngx_strlchr(o->host.data, o->host.data + alen, ':');

    if (a) {
        o->host.len = a - o->host.data;
        o->port = (in_port_t) ngx_atoi(a + 1, o->host.data + alen - a - 1);

        if (o->port == (in_port_t) NGX_ERROR || o->port == 0) {
            return o;
        }
    }

    if (o->host.len == 0 || o->host.data[0] == '[') {
        return o;
    }

    o->named = 1;
    o->tls_name = o->host;
    o->usable = (cl->resolver != NULL);

    return o;
}


ngx_int_t
ngx_gdrive_h1_prepare(ngx_gdrive_http_t *h, const char *url)
{
    size_t                   path;
    ngx_gdrive_h1_t         *d;
    ngx_gdrive_h1_origin_t  *o;

    if (!ngx_gdrive_h1_client.gmcf->http_client) {
        return NGX_DECLINED;
    }

    o = ngx_gdrive_h1_origin(url, &path);

    if (o == NULL || !o->usable) {
        return NGX_DECLINED;
    }

    d = h->h1;

    if (d == NULL) {
        d = ngx_pcalloc(h->pool, sizeof(ngx_gdrive_h1_t));
        if (d == NULL) {
            return NGX_ERROR;
        }

        d->h = h;
        d->resume.handler = ngx_gdrive_h1_resume_handler;
        d->resume.data = d;
        d->resume.log = ngx_gdrive_h1_client.log;
        h->h1 = d;
    }

    if (d->active) {
        return NGX_ERROR;
    }

    d->origin = o;

    if (ngx_gdrive_h1_request(d, url, path) != NGX_OK) {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* the request's head, written while the caller's URL and headers are
 * there: a request that waits for a connection needs neither later */

static ngx_int_t
ngx_gdrive_h1_request(ngx_gdrive_h1_t *d, const char *url, size_t path)
{
    size_t               len, n;
    u_char              *p, *q;
    const char          *method, *target;
    ngx_gdrive_http_t   *h;
    struct curl_slist   *l;

    h = d->h;

    target = url + path;
    n = strcspn(target, "#");

    if (h->method) {
        method = h->method;

    } else if (h->source) {
        method = "PUT";

    } else if (h->request_body || h->request_len) {
        method = "POST";

    } else {
        method = "GET";
    }

    len = ngx_strlen(method) + 1 + (n ? n : 1) + sizeof(" HTTP/1.1\r\n") - 1
          + sizeof("Host: \r\n") - 1 + d->origin->authority.len
          + sizeof("User-Agent: nginx-gdrive-worker/" NGX_GDRIVE_VERSION
                   "\r\n") - 1
          + sizeof("Accept: */*\r\n") - 1
          + sizeof("Content-Length: \r\n") - 1 + NGX_OFF_T_LEN
          + 2;

    for (l = h->headers; l; l = l->next) {
        len += ngx_strlen(l->data) + 2;
    }

    if (len > d->head_cap) {
        p = ngx_alloc(ngx_max(len, 1024), ngx_gdrive_h1_client.log);
        if (p == NULL) {
            return NGX_ERROR;
        }

        if (d->head) {
            ngx_free(d->head);
        }

        d->head = p;
        d->head_cap = ngx_max(len, 1024);
    }

    p = d->head;
    p = ngx_cpymem(p, method, ngx_strlen(method));
    *p++ = ' ';

    if (n == 0 || *target != '/') {
        *p++ = '/';
    }

    p = ngx_cpymem(p, target, n);
    p = ngx_cpymem(p, " HTTP/1.1\r\n", 11);

    if (!ngx_gdrive_h1_has(h->headers, "Host", 4)) {
        p = ngx_cpymem(p, "Host: ", 6);
        p = ngx_cpymem(p, d->origin->authority.data,
                       d->origin->authority.len);
        *p++ = '\r'; *p++ = '\n';
    }

    if (!ngx_gdrive_h1_has(h->headers, "User-Agent", 10)) {
        p = ngx_cpymem(p, "User-Agent: nginx-gdrive-worker/"
                       NGX_GDRIVE_VERSION "\r\n",
                       sizeof("User-Agent: nginx-gdrive-worker/"
                              NGX_GDRIVE_VERSION "\r\n") - 1);
    }

    if (!ngx_gdrive_h1_has(h->headers, "Accept", 6)) {
        p = ngx_cpymem(p, "Accept: */*\r\n", 13);
    }

    /* curl's rules: "Name:" takes a header of curl's out, "Name;" is one
     * with an empty value */

    for (l = h->headers; l; l = l->next) {
        q = (u_char *) ngx_strchr(l->data, ':');
        n = ngx_strlen(l->data);

        if (q && q[1] == '\0') {
            continue;
        }

        if (q == NULL && n && l->data[n - 1] == ';') {
            p = ngx_cpymem(p, l->data, n - 1);
            *p++ = ':';

        } else {
            p = ngx_cpymem(p, l->data, n);
        }

        *p++ = '\r'; *p++ = '\n';
    }

    if (h->source) {
        p = ngx_sprintf(p, "Content-Length: %O\r\n", h->source_len);

    } else if (h->request_body || h->request_len
               || ngx_strcmp(method, "PUT") == 0
               || ngx_strcmp(method, "POST") == 0)
    {
        p = ngx_sprintf(p, "Content-Length: %uz\r\n", h->request_len);
    }

    *p++ = '\r'; *p++ = '\n';

    ngx_memzero(&d->out, sizeof(ngx_buf_t));
    d->out.start = d->head;
    d->out.pos = d->head;
    d->out.last = p;
    d->out.end = p;
    d->out.memory = 1;
    /* TLS copies what it is given into its buffer until told to send */
    d->out.flush = 1;

    ngx_memzero(&d->body, sizeof(ngx_buf_t));
    d->body.memory = 1;
    d->body.flush = 1;

    if (!h->source && h->request_len) {
        d->body.start = h->request_body;
        d->body.pos = h->request_body;
        d->body.last = h->request_body + h->request_len;
        d->body.end = d->body.last;
    }

    d->read = 0;
    d->sent = 0;
    d->reused = 0;
    d->retried = 0;

    return NGX_OK;
}


/*
 * The request goes from the loop, never from inside its caller: a
 * connection refused at once ends it from there, as curl would, not
 * before start() returns.
 */

void
ngx_gdrive_h1_launch(ngx_gdrive_http_t *h)
{
    ngx_gdrive_h1_t  *d;

    d = h->h1;

    d->active = 1;
    d->queued = 1;

    if (!d->resume.posted) {
        ngx_post_event(&d->resume, &ngx_posted_events);
    }
}


static ngx_uint_t
ngx_gdrive_h1_has(struct curl_slist *l, const char *name, size_t len)
{
    for ( /* void */ ; l; l = l->next) {
        if (ngx_strncasecmp((u_char *) l->data, (u_char *) name, len) == 0
            && (l->data[len] == ':' || l->data[len] == ';'))
        {
            return 1;
        }
    }

    return 0;
}


/* on a kept connection of the origin, else on a new one */

static void
ngx_gdrive_h1_go(ngx_gdrive_h1_t *d)
{
    ngx_queue_t             *q;
    ngx_gdrive_h1_conn_t    *conn;
    ngx_gdrive_h1_origin_t  *o;

    o = d->origin;

    d->active = 1;
    d->queued = 0;
    d->connecting = 0;
    d->got = 0;
    d->status_done = 0;
    d->head_done = 0;
    d->is_chunked = 0;
    d->close = 0;
    d->paused_in = 0;
    d->paused_out = 0;
    d->rest = -1;
    d->out.pos = d->out.start;

    if (d->body.start && !d->h->source) {
        d->body.pos = d->body.start;
    }

    /* the parsers start over from their state (the rest is theirs) */
    d->r.state = 0;
    ngx_memzero(&d->chunked, sizeof(ngx_http_chunked_t));
    ngx_memzero(&d->status, sizeof(ngx_http_status_t));

    if (!ngx_queue_empty(&o->idle)) {
        q = ngx_queue_head(&o->idle);
        ngx_queue_remove(q);
        o->nidle--;

        conn = ngx_queue_data(q, ngx_gdrive_h1_conn_t, queue);
        conn->c->idle = 0;
        conn->c->read->handler = ngx_gdrive_h1_read_handler;
        conn->c->write->handler = ngx_gdrive_h1_write_handler;
        conn->h = d->h;
        d->conn = conn;
        d->reused = 1;

        ngx_gdrive_h1_send(d);
        return;
    }

    if (o->named) {
        ngx_gdrive_h1_resolve(d);
        return;
    }

    d->sockaddr_p = o->addr.sockaddr;
    d->socklen = o->addr.socklen;

    if (ngx_gdrive_h1_connect(d) != NGX_OK) {
        return;
    }

    if (!d->connecting) {
        ngx_gdrive_h1_connected(d);
    }
}


static void
ngx_gdrive_h1_resolve(ngx_gdrive_h1_t *d)
{
    ngx_resolver_ctx_t  *ctx;

    ctx = ngx_resolve_start(ngx_gdrive_h1_client.resolver, NULL);

    if (ctx == NULL || ctx == NGX_NO_RESOLVER) {
        ngx_gdrive_h1_fail(d, CURLE_COULDNT_RESOLVE_HOST,
                           "the name could not be resolved", 0);
        return;
    }

    ctx->name = d->origin->host;
    ctx->handler = ngx_gdrive_h1_resolved;
    ctx->data = d;
    ctx->timeout = ngx_gdrive_h1_client.resolver_timeout;

    d->resolving = ctx;

    if (ngx_resolve_name(ctx) != NGX_OK) {
        d->resolving = NULL;
        ngx_gdrive_h1_fail(d, CURLE_COULDNT_RESOLVE_HOST,
                           "the name could not be resolved", 0);
    }
}


/* the resolver's answer (perhaps from inside ngx_resolve_name()): the
 * origin's addresses in turn */

static void
ngx_gdrive_h1_resolved(ngx_resolver_ctx_t *ctx)
{
    ngx_gdrive_h1_t *d = ctx->data;

    const char              *what;
    ngx_resolver_addr_t     *a;
    ngx_gdrive_h1_origin_t  *o;

    d->resolving = NULL;
    o = d->origin;

    if (ctx->state || ctx->naddrs == 0) {
        /* "Host not found", "Operation timed out"... */
        what = ctx->state ? ngx_resolver_strerror(ctx->state)
                          : "the name has no address";
        ngx_resolve_name_done(ctx);

        ngx_gdrive_h1_fail(d, CURLE_COULDNT_RESOLVE_HOST, what, 0);
        return;
    }

    a = &ctx->addrs[o->next++ % ctx->naddrs];

    ngx_memcpy(&d->sockaddr, a->sockaddr, a->socklen);
    d->socklen = a->socklen;
    ngx_inet_set_port(&d->sockaddr.sockaddr, o->port);

    ngx_resolve_name_done(ctx);

    d->sockaddr_p = &d->sockaddr.sockaddr;

    if (ngx_gdrive_h1_connect(d) != NGX_OK) {
        return;
    }

    if (!d->connecting) {
        ngx_gdrive_h1_connected(d);
    }
}


static ngx_int_t
ngx_gdrive_h1_connect(ngx_gdrive_h1_t *d)
{
    ngx_int_t               rc;
    ngx_connection_t       *c;
    ngx_peer_connection_t   pc;
    ngx_gdrive_h1_conn_t   *conn;

    conn = ngx_alloc(sizeof(ngx_gdrive_h1_conn_t), ngx_gdrive_h1_client.log);
    if (conn == NULL) {
        ngx_gdrive_h1_fail(d, CURLE_OUT_OF_MEMORY, "no memory", 0);
        return NGX_ERROR;
    }

    ngx_memzero(&pc, sizeof(ngx_peer_connection_t));
    pc.sockaddr = d->sockaddr_p;
    pc.socklen = d->socklen;
    pc.name = &d->origin->addr.name;
    pc.get = ngx_event_get_peer;
    pc.log = ngx_gdrive_h1_client.log;
    pc.log_error = NGX_ERROR_INFO;

    rc = ngx_event_connect_peer(&pc);

    if (rc == NGX_ERROR || rc == NGX_BUSY || rc == NGX_DECLINED
        || pc.connection == NULL)
    {
        ngx_free(conn);

        if (pc.connection) {
            ngx_close_connection(pc.connection);
        }

        ngx_gdrive_h1_fail(d, CURLE_COULDNT_CONNECT, "connect() failed", 0);
        return NGX_ERROR;
    }

    c = pc.connection;

    if (d->origin->tls) {
        /* nginx's TLS keeps its state and its write buffer in the
         * connection's pool: one per connection, gone with it */
        c->pool = ngx_create_pool(NGX_GDRIVE_H1_POOL,
                                  ngx_gdrive_h1_client.log);
        if (c->pool == NULL) {
            ngx_free(conn);
            ngx_close_connection(c);
            ngx_gdrive_h1_fail(d, CURLE_OUT_OF_MEMORY, "no memory", 0);
            return NGX_ERROR;
        }
    }

    /* a body's last bytes (a streamed PUT's, held for the download's
     * end) go at once, not after the server's delayed ACK, as curl's */
    (void) ngx_tcp_nodelay(c);

    conn->c = c;
    conn->origin = d->origin;
    conn->h = d->h;
    conn->requests = 0;

    c->data = conn;
    c->read->handler = ngx_gdrive_h1_read_handler;
    c->write->handler = ngx_gdrive_h1_write_handler;

    d->conn = conn;

    if (rc == NGX_AGAIN) {
        d->connecting = 1;
        ngx_add_timer(c->write, ngx_gdrive_h1_client.gmcf->connect_timeout);
    }

    return NGX_OK;
}


static void
ngx_gdrive_h1_write_handler(ngx_event_t *wev)
{
    int                    err;
    socklen_t              len;
    ngx_connection_t      *c;
    ngx_gdrive_h1_t       *d;
    ngx_gdrive_h1_conn_t  *conn;

    c = wev->data;
    conn = c->data;
    d = conn->h ? conn->h->h1 : NULL;

    if (d == NULL) {
        return;
    }

    if (wev->timedout) {
        wev->timedout = 0;
        ngx_gdrive_h1_fail(d, d->connecting ? CURLE_COULDNT_CONNECT
                                            : CURLE_OPERATION_TIMEDOUT,
                           d->connecting ? "connect() timed out"
                                         : "nothing moved: timed out", 0);
        return;
    }

    if (d->connecting) {
        err = 0;
        len = sizeof(int);

        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, (void *) &err, &len)
            == -1)
        {
            err = ngx_socket_errno;
        }

        if (err) {
            ngx_gdrive_h1_fail(d, CURLE_COULDNT_CONNECT, "connect() failed",
                               err);
            return;
        }

        d->connecting = 0;

        if (wev->timer_set) {
            ngx_del_timer(wev);
        }

        ngx_gdrive_h1_connected(d);
        return;
    }

    if (!d->sent && !d->paused_out) {
        ngx_gdrive_h1_send(d);
    }
}


/* a new connection: TLS first for https */

static void
ngx_gdrive_h1_connected(ngx_gdrive_h1_t *d)
{
#if (NGX_SSL)
    u_char             name[256];
    ngx_int_t          rc;
    ngx_connection_t  *c;
#endif

    /* (without TLS in nginx, no https origin is usable) */
    if (!d->origin->tls) {
        ngx_gdrive_h1_send(d);
        return;
    }

#if (NGX_SSL)
    c = d->conn->c;

    if (ngx_ssl_create_connection(&ngx_gdrive_h1_client.ssl, c,
                                  NGX_SSL_BUFFER | NGX_SSL_CLIENT)
        != NGX_OK)
    {
        ngx_gdrive_h1_fail(d, CURLE_SSL_CONNECT_ERROR,
                           "TLS could not be set up", 0);
        return;
    }

    c->ssl->no_wait_shutdown = 1;

    if (d->origin->named && d->origin->tls_name.len < sizeof(name)) {
        /* SNI: the name, never an address */
        ngx_cpystrn(name, d->origin->tls_name.data,
                    d->origin->tls_name.len + 1);

        if (SSL_set_tlsext_host_name(c->ssl->connection, (char *) name)
            != 1)
        {
            ngx_gdrive_h1_fail(d, CURLE_SSL_CONNECT_ERROR,
                               "TLS could not be set up (SNI)", 0);
            return;
        }
    }

    rc = ngx_ssl_handshake(c);

    if (rc == NGX_AGAIN) {
        ngx_add_timer(c->write, ngx_gdrive_h1_client.gmcf->connect_timeout);
        c->ssl->handler = ngx_gdrive_h1_handshaked;
        return;
    }

    ngx_gdrive_h1_handshaked(c);
#endif
}


#if (NGX_SSL)


static void
ngx_gdrive_h1_handshaked(ngx_connection_t *c)
{
    ngx_gdrive_h1_t       *d;
    ngx_gdrive_h1_conn_t  *conn;

    conn = c->data;
    d = conn->h ? conn->h->h1 : NULL;

    if (c->write->timer_set) {
        ngx_del_timer(c->write);
    }

    if (d == NULL) {
        return;
    }

    if (!c->ssl->handshaked) {
        ngx_gdrive_h1_fail(d, CURLE_SSL_CONNECT_ERROR,
                           c->write->timedout ? "the TLS handshake timed out"
                                              : "the TLS handshake failed", 0);
        return;
    }

    if (ngx_gdrive_h1_verify(d) != NGX_OK) {
        return;
    }

    c->read->handler = ngx_gdrive_h1_read_handler;
    c->write->handler = ngx_gdrive_h1_write_handler;

    ngx_gdrive_h1_send(d);
}


/* as curl verifies: the chain, then the name or address */

static ngx_int_t
ngx_gdrive_h1_verify(ngx_gdrive_h1_t *d)
{
    int                      ok;
    long                     rc;
    X509                    *cert;
    u_char                   ip[NGX_INET6_ADDRSTRLEN + 1];
    ngx_connection_t        *c;
    ngx_gdrive_h1_origin_t  *o;

    if (!ngx_gdrive_h1_client.gmcf->ssl_verify) {
        return NGX_OK;
    }

    c = d->conn->c;
    o = d->origin;

    rc = SSL_get_verify_result(c->ssl->connection);

    if (rc != X509_V_OK) {
        ngx_gdrive_h1_fail(d, CURLE_PEER_FAILED_VERIFICATION,
                           X509_verify_cert_error_string(rc), 0);
        return NGX_ERROR;
    }

    cert = SSL_get_peer_certificate(c->ssl->connection);

    if (cert == NULL) {
        ngx_gdrive_h1_fail(d, CURLE_PEER_FAILED_VERIFICATION,
                           "the server has no certificate", 0);
        return NGX_ERROR;
    }

    if (o->named) {
        ok = X509_check_host(cert, (char *) o->tls_name.data,
                             o->tls_name.len, 0, NULL);

    } else if (o->tls_name.len < sizeof(ip)) {
        ngx_cpystrn(ip, o->tls_name.data, o->tls_name.len + 1);
        ok = X509_check_ip_asc(cert, (char *) ip, 0);

    } else {
        ok = 0;
    }

    X509_free(cert);

    if (ok != 1) {
        ngx_gdrive_h1_fail(d, CURLE_PEER_FAILED_VERIFICATION,
                           "the certificate does not name the host", 0);
        return NGX_ERROR;
    }

    return NGX_OK;
}

#endif


static void
ngx_gdrive_h1_read_handler(ngx_event_t *rev)
{
    ngx_connection_t      *c;
    ngx_gdrive_h1_t       *d;
    ngx_gdrive_h1_conn_t  *conn;

    c = rev->data;
    conn = c->data;
    d = conn->h ? conn->h->h1 : NULL;

    if (d == NULL) {
        return;
    }

    if (rev->timedout) {
        rev->timedout = 0;
        ngx_gdrive_h1_fail(d, CURLE_OPERATION_TIMEDOUT,
                           "nothing moved: timed out", 0);
        return;
    }

    if (d->connecting) {
        /* the write event tells of the connection */
        return;
    }

    ngx_gdrive_h1_recv(d);
}


/* a paused sink or source goes on */

void
ngx_gdrive_h1_resume(ngx_gdrive_http_t *h)
{
    ngx_gdrive_h1_t  *d;

    d = h->h1;

    if (d && d->active && (d->paused_in || d->paused_out)
        && !d->resume.posted)
    {
        ngx_post_event(&d->resume, &ngx_posted_events);
    }
}


static void
ngx_gdrive_h1_resume_handler(ngx_event_t *ev)
{
    ngx_gdrive_h1_t *d = ev->data;

    if (!d->active) {
        return;
    }

    if (d->queued) {
        ngx_gdrive_h1_go(d);
        return;
    }

    if (d->paused_out) {
        d->paused_out = 0;
        ngx_gdrive_h1_send(d);

        if (!d->active || d->h->removing) {
            return;
        }
    }

    if (d->paused_in) {
        d->paused_in = 0;
        ngx_gdrive_h1_recv(d);
    }
}


/* the head, then the body, as far as the socket takes them */

static void
ngx_gdrive_h1_send(ngx_gdrive_h1_t *d)
{
    off_t               len;
    ngx_chain_t         cl[2], *out, *rest;
    ngx_connection_t   *c;
    ngx_gdrive_http_t  *h;

    h = d->h;
    c = d->conn->c;

    while (!d->sent) {

        if (h->source && d->body.pos == d->body.last
            && d->read < h->source_len)
        {
            switch (ngx_gdrive_h1_fill(d)) {
            case NGX_OK:
                break;
            case NGX_AGAIN:
                /* paused: resume() goes on; the answer may still come */
                if (c->write->timer_set) {
                    ngx_del_timer(c->write);
                }
                return;
            default:
                return;
            }
        }

        out = NULL;

        if (d->body.pos < d->body.last) {
            cl[1].buf = &d->body;
            cl[1].next = NULL;
            out = &cl[1];
        }

        if (d->out.pos < d->out.last) {
            cl[0].buf = &d->out;
            cl[0].next = out;
            out = &cl[0];
        }

        if (out == NULL && !c->buffered) {
            len = h->source ? h->source_len - d->read : 0;

            if (len == 0) {
                d->sent = 1;
                break;
            }

            continue;
        }

        rest = c->send_chain(c, out, 0);

        if (rest == NGX_CHAIN_ERROR) {
            if (ngx_gdrive_h1_retry(d) == NGX_OK) {
                return;
            }

            ngx_gdrive_h1_fail(d, CURLE_SEND_ERROR, "send() failed",
                               ngx_socket_errno);
            return;
        }

        if (rest || c->buffered) {
            /* the socket is full (TLS may hold the rest in its buffer):
             * the write event goes on */
            if (ngx_handle_write_event(c->write, 0) != NGX_OK) {
                ngx_gdrive_h1_fail(d, CURLE_SEND_ERROR,
                                   "the event could not be set", 0);
                return;
            }

            ngx_add_timer(c->write, ngx_gdrive_h1_client.gmcf->read_timeout);
            return;
        }
    }

    if (c->write->timer_set) {
        ngx_del_timer(c->write);
    }

    /* an answer may have come while the body went */
    ngx_gdrive_h1_recv(d);
}


/* the source's next piece: NGX_AGAIN while it pauses */

static ngx_int_t
ngx_gdrive_h1_fill(ngx_gdrive_h1_t *d)
{
    off_t               left;
    size_t              want, n;
    ngx_gdrive_http_t  *h;

    h = d->h;
    left = h->source_len - d->read;

    if (d->up == NULL) {
        d->up_size = (size_t) ngx_min(ngx_max(left, 16384),
                                      NGX_GDRIVE_H1_UPLOAD);
        d->up = ngx_alloc(d->up_size, ngx_gdrive_h1_client.log);

        if (d->up == NULL) {
            ngx_gdrive_h1_fail(d, CURLE_OUT_OF_MEMORY, "no memory", 0);
            return NGX_ERROR;
        }
    }

    want = (size_t) ngx_min((off_t) d->up_size, left);

    ngx_gdrive_http_callback(1);
    n = h->source(h, d->up, want);
    ngx_gdrive_http_callback(0);

    if (h->removing || !d->active) {
        return NGX_ERROR;
    }

    if (n == CURL_READFUNC_PAUSE) {
        d->paused_out = 1;
        return NGX_AGAIN;
    }

    if (n == CURL_READFUNC_ABORT) {
        ngx_gdrive_h1_fail(d, CURLE_ABORTED_BY_CALLBACK,
                           "the body was refused by its source", 0);
        return NGX_ERROR;
    }

    if (n == 0 || n > want) {
        ngx_gdrive_h1_fail(d, CURLE_READ_ERROR,
                           "the body's source ended before its length", 0);
        return NGX_ERROR;
    }

    d->read += n;
    d->body.start = d->up;
    d->body.pos = d->up;
    d->body.last = d->up + n;
    d->body.end = d->up + d->up_size;

    return NGX_OK;
}


static void
ngx_gdrive_h1_recv(ngx_gdrive_h1_t *d)
{
    size_t             size;
    ssize_t            n;
    ngx_int_t          rc;
    ngx_connection_t  *c;

    if (d->paused_in) {
        return;
    }

    c = d->conn->c;
    d->r.connection = c;

    for ( ;; ) {

        if (d->in.pos < d->in.last || (d->head_done && d->rest == 0)) {
            rc = ngx_gdrive_h1_process(d);

            if (rc != NGX_AGAIN) {
                /* done, failed, paused or cancelled */
                return;
            }
        }

        if (d->in.start == NULL) {
            size = NGX_GDRIVE_H1_BUFFER;

            if (d->h->sink && d->h->expect > NGX_GDRIVE_H1_BUFFER) {
                size = (size_t) ngx_min(ngx_align(d->h->expect + 1024,
                                                  NGX_GDRIVE_H1_BUFFER),
                                        NGX_GDRIVE_H1_CONTENT);
            }

            if (size == NGX_GDRIVE_H1_BUFFER && ngx_gdrive_h1_client.nfree) {
                d->in.start = ngx_gdrive_h1_client.free[
                                              --ngx_gdrive_h1_client.nfree];

            } else {
                d->in.start = ngx_alloc(size, ngx_gdrive_h1_client.log);
            }

            if (d->in.start == NULL) {
                ngx_gdrive_h1_fail(d, CURLE_OUT_OF_MEMORY, "no memory", 0);
                return;
            }

            d->in.pos = d->in.start;
            d->in.last = d->in.start;
            d->in.end = d->in.start + size;
        }

        if (d->head_done && d->in.pos == d->in.last) {
            d->in.pos = d->in.start;
            d->in.last = d->in.start;
        }

        if (d->in.last == d->in.end) {
            ngx_gdrive_h1_fail(d, CURLE_WEIRD_SERVER_REPLY,
                               "the response's head is too large", 0);
            return;
        }

        n = c->recv(c, d->in.last, d->in.end - d->in.last);

        if (n == NGX_AGAIN) {
            if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
                ngx_gdrive_h1_fail(d, CURLE_RECV_ERROR,
                                   "the event could not be set", 0);
                return;
            }

            ngx_gdrive_h1_timer(d);
            return;
        }

        if (n == NGX_ERROR || n == 0) {
            if (!d->got && ngx_gdrive_h1_retry(d) == NGX_OK) {
                return;
            }

            if (n == NGX_ERROR) {
                ngx_gdrive_h1_fail(d, CURLE_RECV_ERROR, "recv() failed",
                                   ngx_socket_errno);
                return;
            }

            if (!d->got) {
                ngx_gdrive_h1_fail(d, CURLE_GOT_NOTHING,
                                   "the server closed the connection "
                                   "without an answer", 0);
                return;
            }

            if (d->head_done && d->rest == -1 && !d->is_chunked) {
                /* the content ends with the connection */
                d->close = 1;
                ngx_gdrive_h1_finish(d, CURLE_OK);
                return;
            }

            ngx_gdrive_h1_fail(d, d->head_done ? CURLE_PARTIAL_FILE
                                               : CURLE_WEIRD_SERVER_REPLY,
                               "the connection closed before the end of "
                               "the answer", 0);
            return;
        }

        d->got = 1;
        d->in.last += n;

        ngx_gdrive_h1_timer(d);
    }
}


/* NGX_AGAIN: more is needed; NGX_OK: the request ended (or paused, or
 * was failed or cancelled): nothing more to read for now */

static ngx_int_t
ngx_gdrive_h1_process(ngx_gdrive_h1_t *d)
{
    ngx_int_t  rc;

    if (!d->head_done) {
        rc = ngx_gdrive_h1_head(d);

        if (rc != NGX_DONE) {
            return rc;
        }
    }

    return ngx_gdrive_h1_content(d);
}


static ngx_int_t
ngx_gdrive_h1_head(ngx_gdrive_h1_t *d)
{
    u_char             *start;
    ngx_int_t           rc;
    ngx_gdrive_http_t  *h;

    h = d->h;

    for ( ;; ) {

        if (!d->status_done) {
            start = d->in.pos;
            rc = ngx_http_parse_status_line(&d->r, &d->in, &d->status);

            if (rc == NGX_AGAIN) {
                /* the line starts again when more came */
                d->in.pos = start;
                d->r.state = 0;
                ngx_memzero(&d->status, sizeof(ngx_http_status_t));
                return NGX_AGAIN;
            }

            if (rc != NGX_OK) {
                ngx_gdrive_h1_fail(d, CURLE_WEIRD_SERVER_REPLY,
                                   "the answer has no valid status line", 0);
                return NGX_OK;
            }

            d->status_done = 1;
            h->status = d->status.code;

            if (d->status.http_version < NGX_HTTP_VERSION_11) {
                d->close = 1;
            }

            ngx_gdrive_http_callback(1);
            ngx_gdrive_http_line(h, start, d->in.pos - start);
            ngx_gdrive_http_callback(0);

            if (h->removing || !d->active) {
                return NGX_OK;
            }
        }

        rc = ngx_gdrive_h1_header(d);

        if (rc != NGX_DONE) {
            return rc;
        }

        if (d->status.code >= 100 && d->status.code < 200) {
            /* an interim answer: the real one follows */
            d->status_done = 0;
            d->r.state = 0;
            ngx_memzero(&d->status, sizeof(ngx_http_status_t));
            continue;
        }

        d->head_done = 1;

        if (d->status.code == 204 || d->status.code == 304
            || (h->method && ngx_strcmp(h->method, "HEAD") == 0))
        {
            d->rest = 0;
            d->is_chunked = 0;

        } else if (d->is_chunked) {
            d->rest = -1;

        } else if (d->rest == -1) {
            d->close = 1;
        }

        return NGX_DONE;
    }
}


static ngx_int_t
ngx_gdrive_h1_header(ngx_gdrive_h1_t *d)
{
    u_char             *start, *name, *value;
    size_t              nlen, vlen;
    ngx_int_t           rc;
    ngx_gdrive_http_t  *h;

    h = d->h;

    for ( ;; ) {
        start = d->in.pos;
        rc = ngx_http_parse_header_line(&d->r, &d->in, 1);

        if (rc == NGX_AGAIN) {
            /* the line starts again when more came */
            d->in.pos = start;
            d->r.state = 0;
            return NGX_AGAIN;
        }

        if (rc == NGX_HTTP_PARSE_HEADER_DONE) {
            ngx_gdrive_http_callback(1);
            ngx_gdrive_http_line(h, start, d->in.pos - start);
            ngx_gdrive_http_callback(0);

            if (h->removing || !d->active) {
                return NGX_OK;
            }

            return NGX_DONE;
        }

        if (rc != NGX_OK) {
            ngx_gdrive_h1_fail(d, CURLE_WEIRD_SERVER_REPLY,
                               "the answer has an invalid header line", 0);
            return NGX_OK;
        }

        name = d->r.header_name_start;
        nlen = d->r.header_name_end - name;
        value = d->r.header_start;
        vlen = d->r.header_end - value;

        if (nlen == 14
            && ngx_strncasecmp(name, (u_char *) "content-length", 14) == 0)
        {
            d->rest = ngx_atoof(value, vlen);

            if (d->rest == NGX_ERROR) {
                ngx_gdrive_h1_fail(d, CURLE_WEIRD_SERVER_REPLY,
                                   "the answer's Content-Length is invalid",
                                   0);
                return NGX_OK;
            }

        } else if (nlen == 17
                   && ngx_strncasecmp(name, (u_char *) "transfer-encoding",
                                      17) == 0)
        {
            if (vlen == 7
                && ngx_strncasecmp(value, (u_char *) "chunked", 7) == 0)
            {
                d->is_chunked = 1;

            } else {
                ngx_gdrive_h1_fail(d, CURLE_WEIRD_SERVER_REPLY,
                                   "the answer's Transfer-Encoding is not "
                                   "chunked", 0);
                return NGX_OK;
            }

        } else if (nlen == 10
                   && ngx_strncasecmp(name, (u_char *) "connection", 10) == 0
                   && ngx_strlcasestrn(value, value + vlen,
                                       (u_char *) "close", 5 - 1) != NULL)
        {
            d->close = 1;

        } else if (nlen == 16
                   && ngx_strncasecmp(name, (u_char *) "content-encoding",
                                      16) == 0
                   && !(vlen == 8
                        && ngx_strncasecmp(value, (u_char *) "identity", 8)
                           == 0))
        {
            /* asked for none: content is stored as it is, never decoded */
            ngx_gdrive_h1_fail(d, CURLE_BAD_CONTENT_ENCODING,
                               "the answer's content is encoded", 0);
            return NGX_OK;
        }

        ngx_gdrive_http_callback(1);
        ngx_gdrive_http_line(h, start, d->in.pos - start);
        ngx_gdrive_http_callback(0);

        if (h->removing || !d->active) {
            return NGX_OK;
        }
    }
}


static ngx_int_t
ngx_gdrive_h1_content(ngx_gdrive_h1_t *d)
{
    size_t     n;
    ngx_int_t  rc;

    if (d->is_chunked) {
        for ( ;; ) {
            if (d->chunked.size > 0 && d->in.pos < d->in.last) {
                n = (size_t) ngx_min(d->chunked.size,
                                     d->in.last - d->in.pos);

                rc = ngx_gdrive_h1_deliver(d, n);
                if (rc != NGX_OK) {
                    return NGX_OK;
                }

                d->chunked.size -= n;
                continue;
            }

            if (d->in.pos == d->in.last) {
                return NGX_AGAIN;
            }

            rc = ngx_http_parse_chunked(&d->r, &d->in, &d->chunked);

            if (rc == NGX_OK) {
                continue;
            }

            if (rc == NGX_DONE) {
                if (d->in.pos != d->in.last) {
                    d->close = 1;
                }

                ngx_gdrive_h1_finish(d, CURLE_OK);
                return NGX_OK;
            }

            if (rc == NGX_AGAIN) {
                return NGX_AGAIN;
            }

            ngx_gdrive_h1_fail(d, CURLE_RECV_ERROR,
                               "the answer's chunked body is invalid", 0);
            return NGX_OK;
        }
    }

    if (d->in.pos < d->in.last && d->rest != 0) {
        n = d->in.last - d->in.pos;

        if (d->rest > 0 && (off_t) n > d->rest) {
            n = (size_t) d->rest;
        }

        if (ngx_gdrive_h1_deliver(d, n) != NGX_OK) {
            return NGX_OK;
        }

        if (d->rest > 0) {
            d->rest -= n;
        }
    }

    if (d->rest == 0) {
        if (d->in.pos != d->in.last) {
            /* more than the answer: the connection is not kept */
            d->close = 1;
        }

        ngx_gdrive_h1_finish(d, CURLE_OK);
        return NGX_OK;
    }

    return NGX_AGAIN;
}


/* n bytes at in.pos to the sink, or the body; NGX_OK: taken */

static ngx_int_t
ngx_gdrive_h1_deliver(ngx_gdrive_h1_t *d, size_t n)
{
    size_t              taken;
    ngx_gdrive_http_t  *h;

    h = d->h;

    ngx_gdrive_http_callback(1);
    taken = ngx_gdrive_http_take_content(h, d->in.pos, n);
    ngx_gdrive_http_callback(0);

    if (h->removing || !d->active) {
        return NGX_DONE;
    }

    if (taken == CURL_WRITEFUNC_PAUSE) {
        d->paused_in = 1;

        if (d->conn->c->read->timer_set) {
            ngx_del_timer(d->conn->c->read);
        }

        return NGX_AGAIN;
    }

    if (taken != n) {
        ngx_gdrive_h1_fail(d, CURLE_WRITE_ERROR,
                           "the content was not taken", 0);
        return NGX_ERROR;
    }

    d->in.pos += n;

    return NGX_OK;
}


/* nothing moving for gdrive_read_timeout fails the request; a pause
 * stops the clock */

static void
ngx_gdrive_h1_timer(ngx_gdrive_h1_t *d)
{
    ngx_connection_t  *c;

    c = d->conn->c;

    if (d->paused_in || d->paused_out) {
        return;
    }

    ngx_add_timer(c->read, ngx_gdrive_h1_client.gmcf->read_timeout);
}


/* a kept connection that the server had closed: once more on a new one,
 * when the request can be sent again */

static ngx_int_t
ngx_gdrive_h1_retry(ngx_gdrive_h1_t *d)
{
    if (!d->reused || d->retried || d->got || d->read > 0) {
        return NGX_DECLINED;
    }

    ngx_gdrive_h1_detach(d, 0);

    d->retried = 1;
    d->reused = 0;
    d->sent = 0;
    d->active = 0;

    ngx_gdrive_h1_go(d);
    d->retried = 1;

    return NGX_OK;
}


static void
ngx_gdrive_h1_fail(ngx_gdrive_h1_t *d, CURLcode rc, const char *what,
    ngx_err_t err)
{
    u_char  *p, *last;

    p = (u_char *) d->h->error;
    last = p + CURL_ERROR_SIZE - 1;

    p = ngx_slprintf(p, last, "%s (%V)", what, &d->origin->authority);

    if (err) {
        p = ngx_slprintf(p, last, ": ");
        p = ngx_strerror(err, p, last - p);
    }

    *p = '\0';

    d->close = 1;

    ngx_gdrive_h1_finish(d, rc);
}


static void
ngx_gdrive_h1_finish(ngx_gdrive_h1_t *d, CURLcode rc)
{
    ngx_gdrive_http_t  *h;

    h = d->h;

    ngx_gdrive_h1_detach(d, rc == CURLE_OK && !d->close && d->sent);

    d->active = 0;

    h->result = rc;

    ngx_gdrive_http_ended(h);
}


/* the request lets go of its connection: kept for the origin's next, or
 * closed */

static void
ngx_gdrive_h1_detach(ngx_gdrive_h1_t *d, ngx_uint_t keep)
{
    ngx_connection_t        *c;
    ngx_gdrive_h1_conn_t    *conn;
    ngx_gdrive_h1_origin_t  *o;

    if (d->resume.posted) {
        ngx_delete_posted_event(&d->resume);
    }

    if (d->resolving) {
        ngx_resolve_name_done(d->resolving);
        d->resolving = NULL;
    }

    if (d->in.start) {
        if (d->in.end - d->in.start == NGX_GDRIVE_H1_BUFFER
            && ngx_gdrive_h1_client.nfree < NGX_GDRIVE_H1_FREE)
        {
            ngx_gdrive_h1_client.free[ngx_gdrive_h1_client.nfree++] =
                                                                d->in.start;

        } else {
            ngx_free(d->in.start);
        }

        ngx_memzero(&d->in, sizeof(ngx_buf_t));
    }

    if (d->up) {
        ngx_free(d->up);
        d->up = NULL;
    }

    conn = d->conn;

    if (conn == NULL) {
        return;
    }

    d->conn = NULL;
    conn->h = NULL;
    c = conn->c;
    o = conn->origin;

    if (c->read->timer_set) {
        ngx_del_timer(c->read);
    }

    if (c->write->timer_set) {
        ngx_del_timer(c->write);
    }

    if (!keep || ngx_terminate || ngx_exiting
        || o->nidle >= ngx_gdrive_h1_client.gmcf->max_connections_per_host)
    {
        ngx_gdrive_h1_close(conn);
        return;
    }

    conn->requests++;

    c->idle = 1;
    c->read->handler = ngx_gdrive_h1_idle_handler;
    c->write->handler = ngx_gdrive_h1_dummy_handler;

    ngx_queue_insert_head(&o->idle, &conn->queue);
    o->nidle++;

    if (c->read->ready) {
        /* something came already: looked at when the loop gets there */
        ngx_post_event(c->read, &ngx_posted_events);
    }
}


static void
ngx_gdrive_h1_close(ngx_gdrive_h1_conn_t *conn)
{
    ngx_pool_t        *pool;
    ngx_connection_t  *c;

    c = conn->c;
    pool = c->pool;

#if (NGX_SSL)
    if (c->ssl) {
        /* no close_notify, none awaited: the answers carry their length,
         * and a shutdown that must wait cannot be left pending here */
        c->ssl->no_wait_shutdown = 1;
        c->ssl->no_send_shutdown = 1;
        (void) ngx_ssl_shutdown(c);
    }
#endif

    ngx_close_connection(c);

    if (pool) {
        ngx_destroy_pool(pool);
    }

    ngx_free(conn);
}


/* a kept connection that becomes readable was closed by the server (or
 * sent what nobody asked for); nginx stopping closes it too */

static void
ngx_gdrive_h1_idle_handler(ngx_event_t *ev)
{
    u_char                  buf;
    ssize_t                 n;
    ngx_connection_t       *c;
    ngx_gdrive_h1_conn_t   *conn;

    c = ev->data;
    conn = c->data;

    if (!c->close) {
#if (NGX_SSL)
        if (c->ssl) {
            /* TLS records that carry no data (a TLS 1.3 server's session
             * tickets) are no answer: taken, and the connection kept */
            n = c->recv(c, &buf, 1);

        } else
#endif
        {
            n = recv(c->fd, &buf, 1, MSG_PEEK);

            if (n == -1 && ngx_socket_errno == NGX_EAGAIN) {
                n = NGX_AGAIN;
            }
        }

        if (n == NGX_AGAIN) {
            ev->ready = 0;

            if (ngx_handle_read_event(ev, 0) == NGX_OK) {
                return;
            }
        }
    }

    ngx_queue_remove(&conn->queue);
    conn->origin->nidle--;

    ngx_gdrive_h1_close(conn);
}


static void
ngx_gdrive_h1_dummy_handler(ngx_event_t *ev)
{
}


/* the request ends without an end: its connection is closed */

void
ngx_gdrive_h1_cancel(ngx_gdrive_http_t *h)
{
    ngx_gdrive_h1_t  *d;

    d = h->h1;

    if (d == NULL || !d->active) {
        return;
    }

    ngx_gdrive_h1_detach(d, 0);
    d->active = 0;
}


/* the handle's own memory, at its end */

void
ngx_gdrive_h1_free(ngx_gdrive_http_t *h)
{
    ngx_gdrive_h1_t  *d;

    d = h->h1;

    if (d == NULL) {
        return;
    }

    ngx_gdrive_h1_cancel(h);

    if (d->head) {
        ngx_free(d->head);
        d->head = NULL;
        d->head_cap = 0;
    }

    h->h1 = NULL;
}


/* "http://authority" of the handle's request */

ngx_str_t
ngx_gdrive_h1_origin_name(ngx_gdrive_http_t *h)
{
    ngx_str_t  name;

    name.len = 0;
    name.data = NULL;

    if (h->h1 && h->h1->origin) {
        name.data = h->h1->origin->name;
        name.len = h->h1->origin->len;
    }

    return name;
}


/* the kept connections, at the worker's end */

void
ngx_gdrive_h1_done(void)
{
    ngx_uint_t               i;
    ngx_queue_t             *q;
    ngx_gdrive_h1_conn_t    *conn;
    ngx_gdrive_h1_origin_t  *o;

    while (ngx_gdrive_h1_client.nfree) {
        ngx_free(ngx_gdrive_h1_client.free[--ngx_gdrive_h1_client.nfree]);
    }

    for (i = 0; i < ngx_gdrive_h1_client.norigins; i++) {
        o = &ngx_gdrive_h1_client.origins[i];

        while (!ngx_queue_empty(&o->idle)) {
            q = ngx_queue_head(&o->idle);
            ngx_queue_remove(q);
            o->nidle--;

            conn = ngx_queue_data(q, ngx_gdrive_h1_conn_t, queue);
            ngx_gdrive_h1_close(conn);
        }
    }

#if (NGX_SSL)
    if (ngx_gdrive_h1_client.ssl.ctx) {
        SSL_CTX_free(ngx_gdrive_h1_client.ssl.ctx);
        ngx_gdrive_h1_client.ssl.ctx = NULL;
    }
#endif
}
