
/*
 * nginx-gdrive-worker: Google OAuth access tokens.
 *
 * Client layer: an access token per integration, cached in the shared
 * zone until it expires (less gdrive_token_skew).  At most one refresh per
 * integration is in flight across all workers: the worker that finds no
 * token marks the entry as refreshing; the others wait on a timer and look
 * again.  Credentials are the default refresh token, or the control
 * plane's for the integration.  Tokens and secrets are never logged.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <jansson.h>

#include "ngx_gdrive.h"
#include "ngx_gdrive_http.h"
#include "ngx_gdrive_metrics.h"
#include "ngx_gdrive_oauth.h"


#define NGX_GDRIVE_TOKEN_MAX        2048
#define NGX_GDRIVE_TOKEN_WAIT       50       /* ms between looks */
#define NGX_GDRIVE_REFRESH_STALE    30000    /* ms: a refresh given up on */


typedef struct {
    ngx_gdrive_shm_node_t    node;             /* the integration's id */
    uint64_t                 expires;          /* epoch ms */
    uint64_t                 refresh_started;  /* epoch ms */
    ngx_pid_t                refreshing;
    u_short                  token_len;
    u_char                   token[NGX_GDRIVE_TOKEN_MAX];
} ngx_gdrive_token_node_t;


/* what a process knows of tokens: set by ngx_gdrive_token_init() only */
typedef struct {
    ngx_http_gdrive_main_conf_t  *gmcf;
    ngx_gdrive_token_cache_t     *tc;
    ngx_slab_pool_t              *shpool;
    ngx_gdrive_shm_keyed_t        cache;
} ngx_gdrive_tokens_t;


static void ngx_gdrive_token_look(ngx_event_t *ev);
static ngx_gdrive_token_node_t *ngx_gdrive_token_node(ngx_str_t *key,
    ngx_uint_t create);
static ngx_uint_t ngx_gdrive_token_evictable(ngx_gdrive_shm_node_t *node,
    uint64_t now);
static void ngx_gdrive_token_gone(ngx_gdrive_shm_node_t *node,
    ngx_uint_t cause);
static void ngx_gdrive_token_credentials(ngx_gdrive_token_req_t *req);
static void ngx_gdrive_token_credentials_done(ngx_gdrive_http_t *h);
static ngx_int_t ngx_gdrive_token_cp_auth(ngx_gdrive_token_req_t *req);
static ngx_uint_t ngx_gdrive_token_b64token(const char *p);
static void ngx_gdrive_token_refresh(ngx_gdrive_token_req_t *req);
static void ngx_gdrive_token_cp_subject(ngx_gdrive_token_req_t *req,
    json_t *root);
static void ngx_gdrive_token_assertion(ngx_gdrive_token_req_t *req);
static void ngx_gdrive_token_assertion_done(ngx_gdrive_http_t *h);
static void ngx_gdrive_token_accept(ngx_gdrive_token_req_t *req,
    ngx_gdrive_http_t *h, json_t *root);
static ngx_uint_t ngx_gdrive_token_printable(const char *s);
static void ngx_gdrive_token_refresh_done(ngx_gdrive_http_t *h);
static void ngx_gdrive_token_reauthorize(ngx_gdrive_token_req_t *req);
static void ngx_gdrive_token_reauthorize_done(ngx_gdrive_http_t *h);
static void ngx_gdrive_token_fail(ngx_gdrive_token_req_t *req,
    const char *code, const char *detail, ngx_uint_t permanent);
static void ngx_gdrive_token_release(ngx_gdrive_token_req_t *req);
static void ngx_gdrive_token_finish(ngx_gdrive_token_req_t *req);
static ngx_int_t ngx_gdrive_token_classify(ngx_gdrive_token_req_t *req,
    ngx_gdrive_http_t *h, const char *what);
static void ngx_gdrive_token_send(ngx_gdrive_token_req_t *req, char *url,
    void (*handler)(ngx_gdrive_http_t *h), const char *what);
static void ngx_gdrive_token_post(ngx_gdrive_token_req_t *req, char *url,
    u_char *form, void (*handler)(ngx_gdrive_http_t *h), const char *what);
static char *ngx_gdrive_token_url(ngx_pool_t *pool, ngx_str_t *base,
    const char *fmt, ngx_str_t *id);


static ngx_gdrive_tokens_t  ngx_gdrive_tokens;


void
ngx_gdrive_token_init(ngx_http_gdrive_main_conf_t *gmcf)
{
    ngx_gdrive_shm_ctx_t    *ctx;
    ngx_gdrive_shm_keyed_t  *k;

    ngx_gdrive_tokens.gmcf = gmcf;

    if (gmcf->shm_zone == NULL) {
        return;
    }

    ctx = ngx_gdrive_shm_ctx(gmcf);

    ngx_gdrive_tokens.tc = &ctx->sh->tokens;
    ngx_gdrive_tokens.shpool = ctx->shpool;

    /*
     * No limit but the slab's: a full zone evicts the least recently used
     * entries that nobody refreshes.
     */

    k = &ngx_gdrive_tokens.cache;

    k->table = &ctx->sh->tokens.table;
    k->shpool = ctx->shpool;
    k->tries = 3;
    k->evictable = ngx_gdrive_token_evictable;
    k->gone = ngx_gdrive_token_gone;
}


/*
 * Looks for a token, and starts a refresh if none is there and nobody
 * refreshes: the answer always comes through req->handler, later.
 */

void
ngx_gdrive_token_get(ngx_gdrive_token_req_t *req)
{
    u_char  *p;

    /* a token is per integration, and per user a service account acts as */

    req->key = req->integration;

    if (req->subject.len) {
        p = ngx_pnalloc(req->pool, req->integration.len + 1
                                   + req->subject.len);
        if (p == NULL) {
            /* never the bare integration's entry for a user's token */
            req->key.len = 0;

        } else {
            req->key.data = p;
            p = ngx_cpymem(p, req->integration.data, req->integration.len);
            *p++ = '/';
            p = ngx_cpymem(p, req->subject.data, req->subject.len);
            req->key.len = p - req->key.data;
        }
    }

    req->rc = NGX_ERROR;
    req->retry_after = -1;
    req->code = NULL;
    req->detail = NULL;
    req->permanent = 0;
    req->wait.handler = ngx_gdrive_token_look;
    req->wait.data = req;
    req->wait.log = req->log;

    ngx_post_event(&req->wait, &ngx_posted_events);
}


void
ngx_gdrive_token_cancel(ngx_gdrive_token_req_t *req)
{
    if (req->wait.timer_set) {
        ngx_del_timer(&req->wait);
    }

    if (req->wait.posted) {
        ngx_delete_posted_event(&req->wait);
    }

    if (req->http) {
        ngx_gdrive_http_cancel(req->http);
    }

    ngx_gdrive_token_release(req);
}


/*
 * Drive refused the token (401): it is dropped from the cache unless a
 * refresh already replaced it, so the next look refreshes.
 */

void
ngx_gdrive_token_invalidate(ngx_str_t *key, ngx_str_t *token)
{
    ngx_gdrive_token_node_t  *node;

    ngx_shmtx_lock(&ngx_gdrive_tokens.shpool->mutex);

    node = ngx_gdrive_token_node(key, 0);

    if (node && node->token_len == token->len
        && ngx_memcmp(node->token, token->data, token->len) == 0)
    {
        node->token_len = 0;
        node->expires = 0;
    }

    ngx_shmtx_unlock(&ngx_gdrive_tokens.shpool->mutex);
}


static void
ngx_gdrive_token_look(ngx_event_t *ev)
{
    ngx_gdrive_token_req_t *req = ev->data;

    uint64_t                      now;
    ngx_pid_t                     pid;
    ngx_slab_pool_t              *shpool;
    ngx_gdrive_token_node_t      *node;
    ngx_http_gdrive_main_conf_t  *gmcf;

    gmcf = ngx_gdrive_tokens.gmcf;
    shpool = ngx_gdrive_tokens.shpool;
    now = ngx_gdrive_epoch_ms();

    if (req->key.len == 0) {
        ngx_gdrive_token_fail(req, "internal_error", "out of memory", 0);
        return;
    }

    ngx_shmtx_lock(&shpool->mutex);

    node = ngx_gdrive_token_node(&req->key, 1);

    if (node && node->token_len && node->expires > now + gmcf->token_skew) {

        req->token.data = ngx_pnalloc(req->pool, node->token_len);

        if (req->token.data) {
            ngx_memcpy(req->token.data, node->token, node->token_len);
            req->token.len = node->token_len;
        }

        ngx_gdrive_shm_touch(&ngx_gdrive_tokens.cache, &node->node);
        ngx_gdrive_tokens.tc->hits++;
        ngx_gdrive_metric_cache("token", "hit");

        ngx_shmtx_unlock(&shpool->mutex);

        if (req->token.data == NULL) {
            ngx_gdrive_token_fail(req, "internal_error", "out of memory", 0);
            return;
        }

        req->rc = NGX_OK;
        ngx_gdrive_token_finish(req);
        return;
    }

    /* a request of this worker or of another one is refreshing */

    if (node && node->refreshing
        && now - node->refresh_started < NGX_GDRIVE_REFRESH_STALE)
    {
        pid = node->refreshing;

        ngx_shmtx_unlock(&shpool->mutex);

        if (pid == ngx_pid || kill(pid, 0) == 0 || ngx_errno != NGX_ESRCH) {
            /* another worker refreshes: look again soon */
            req->waited++;
            ngx_add_timer(&req->wait, NGX_GDRIVE_TOKEN_WAIT);
            return;
        }

        ngx_shmtx_lock(&shpool->mutex);
        node = ngx_gdrive_token_node(&req->key, 0);
    }

    if (node) {
        node->refreshing = ngx_pid;
        node->refresh_started = now;
        req->refreshing = 1;
    }

    ngx_shmtx_unlock(&shpool->mutex);

    ngx_gdrive_metric_cache("token", "miss");

    /* without an entry (zone full) the refresh still happens, uncached */

    ngx_gdrive_token_credentials(req);
}


static void
ngx_gdrive_token_credentials(ngx_gdrive_token_req_t *req)
{
    char                         *url;
    ngx_http_gdrive_main_conf_t  *gmcf;

    gmcf = ngx_gdrive_tokens.gmcf;

    if (req->subject.len && gmcf->google_sa_key == NULL) {
        ngx_gdrive_token_fail(req, "auth_invalid", "a subject needs a "
                              "service account (gdrive_google_service_"
                              "account)", 1);
        return;
    }

    if (gmcf->control_plane_url.len == 0 && gmcf->google_sa_key) {
        ngx_gdrive_token_assertion(req);
        return;
    }

    if (gmcf->control_plane_url.len == 0) {
        req->client_id = gmcf->google_client_id;
        req->client_secret = gmcf->google_client_secret;
        req->refresh_token = gmcf->google_refresh_token;
        ngx_gdrive_token_refresh(req);
        return;
    }

    url = ngx_gdrive_token_url(req->pool, &gmcf->control_plane_url,
                               "%V/integrations/%V/credentials",
                               &req->integration);

    req->http = ngx_gdrive_http_create(req->pool, req->log, 64 * 1024);

    if (url == NULL || req->http == NULL) {
        ngx_gdrive_token_fail(req, "internal_error", "out of memory", 0);
        return;
    }

    if (ngx_gdrive_token_cp_auth(req) != NGX_OK) {
        return;
    }

    ngx_gdrive_token_send(req, url, ngx_gdrive_token_credentials_done,
                          "control plane credentials");
}


/*
 * The control plane is authenticated: gdrive_control_plane_token as a
 * bearer token (never logged), and a client certificate for mutual TLS.
 */

static ngx_int_t
ngx_gdrive_token_cp_auth(ngx_gdrive_token_req_t *req)
{
    u_char                       *line, *p;
    size_t                        len;
    ngx_int_t                     rc;
    ngx_http_gdrive_main_conf_t  *gmcf;

    gmcf = ngx_gdrive_tokens.gmcf;

    if (gmcf->control_plane_certificate.len) {
        curl_easy_setopt(req->http->easy, CURLOPT_SSLCERT,
                         gmcf->control_plane_certificate.data);
        curl_easy_setopt(req->http->easy, CURLOPT_SSLKEY,
                         gmcf->control_plane_certificate_key.data);
    }

    if (gmcf->control_plane_token.len == 0) {
        return NGX_OK;
    }

    if (!ngx_gdrive_header_safe(&gmcf->control_plane_token)) {
        ngx_gdrive_token_fail(req, "control_plane_denied",
                              "gdrive_control_plane_token holds a line "
                              "break or a NUL and is not sent", 1);
        return NGX_ERROR;
    }

    len = sizeof("Authorization: Bearer ") + gmcf->control_plane_token.len;

    line = ngx_pnalloc(req->pool, len);
    if (line == NULL) {
        ngx_gdrive_token_fail(req, "internal_error", "out of memory", 0);
        return NGX_ERROR;
    }

    p = ngx_sprintf(line, "Authorization: Bearer %V%Z",
                    &gmcf->control_plane_token);

    rc = ngx_gdrive_http_header_add(req->http, (char *) line);

    ngx_explicit_memzero(line, p - line);

    if (rc != NGX_OK) {
        ngx_gdrive_token_fail(req, "internal_error", "out of memory", 0);
        return NGX_ERROR;
    }

    return NGX_OK;
}


static void
ngx_gdrive_token_credentials_done(ngx_gdrive_http_t *h)
{
    ngx_gdrive_token_req_t *req = h->data;

    json_t                       *root;
    ngx_str_t                    *dst[3], *conf[3];
    ngx_uint_t                    i;
    const char                   *v;
    json_error_t                  jerr;
    ngx_http_gdrive_main_conf_t  *gmcf;

    gmcf = ngx_gdrive_tokens.gmcf;

    static const char  *names[3] = {
        "client_id", "client_secret", "refresh_token"
    };

    ngx_gdrive_metric_google_request("cp.credentials",
                                     h->result == CURLE_OK ? h->status : 0,
                                     ngx_current_msec - h->started);

    if (ngx_gdrive_token_classify(req, h, NULL) != NGX_OK) {
        return;
    }

    root = json_loadb((char *) h->body, h->len, 0, &jerr);

    if (gmcf->google_sa_key) {

        /* no answer to read must not make the account act as itself */

        if (!json_is_object(root)) {
            json_decref(root);
            ngx_gdrive_token_fail(req, "upstream_error", "the control "
                                  "plane's answer is not a JSON object", 0);
            return;
        }

        ngx_gdrive_token_cp_subject(req, root);
        json_decref(root);
        return;
    }

    /*
     * Only refresh_token is required: the platform's own OAuth client is
     * configured once (gdrive_google_client_id / _secret), and a client
     * in the answer overrides it.
     */

    dst[0] = &req->client_id;
    dst[1] = &req->client_secret;
    dst[2] = &req->refresh_token;
    conf[0] = &gmcf->google_client_id;
    conf[1] = &gmcf->google_client_secret;
    conf[2] = NULL;

    for (i = 0; i < 3; i++) {
        v = json_string_value(json_object_get(root, names[i]));

        if (v && *v) {
            dst[i]->len = ngx_strlen(v);
            dst[i]->data = ngx_pstrdup(req->pool, &(ngx_str_t) {
                                              dst[i]->len, (u_char *) v });
            if (dst[i]->data == NULL) {
                json_decref(root);
                ngx_gdrive_token_fail(req, "internal_error", "out of memory",
                                      0);
                return;
            }

            continue;
        }

        if (conf[i] && conf[i]->len) {
            *dst[i] = *conf[i];
            continue;
        }

        json_decref(root);

        ngx_gdrive_token_fail(req, "auth_invalid",
                              i == 2 ? "the control plane's answer has no "
                                       "refresh_token"
                                     : "the control plane's answer has no "
                                       "client_id or client_secret, and "
                                       "gdrive_google_client_id or "
                                       "gdrive_google_client_secret is not "
                                       "set", 1);
        return;
    }

    json_decref(root);

    ngx_gdrive_token_refresh(req);
}


static void
ngx_gdrive_token_refresh(ngx_gdrive_token_req_t *req)
{
    char                         *id, *secret, *token, *url;
    u_char                       *form, *p;
    size_t                        len;
    ngx_http_gdrive_main_conf_t  *gmcf;

    gmcf = ngx_gdrive_tokens.gmcf;

    req->http = ngx_gdrive_http_create(req->pool, req->log, 64 * 1024);
    if (req->http == NULL) {
        ngx_gdrive_token_fail(req, "internal_error", "out of memory", 0);
        return;
    }

    id = curl_easy_escape(req->http->easy, (char *) req->client_id.data,
                          req->client_id.len);
    secret = curl_easy_escape(req->http->easy,
                              (char *) req->client_secret.data,
                              req->client_secret.len);
    token = curl_easy_escape(req->http->easy,
                             (char *) req->refresh_token.data,
                             req->refresh_token.len);

    form = NULL;

    if (id && secret && token) {
        len = sizeof("grant_type=refresh_token&client_id=&client_secret="
                     "&refresh_token=")
              + ngx_strlen(id) + ngx_strlen(secret) + ngx_strlen(token);

        form = ngx_pnalloc(req->pool, len);

        if (form) {
            p = ngx_sprintf(form, "grant_type=refresh_token&client_id=%s"
                                  "&client_secret=%s&refresh_token=%s%Z",
                            id, secret, token);
            (void) p;
        }
    }

    curl_free(id);
    curl_free(secret);
    curl_free(token);

    url = ngx_pnalloc(req->pool, gmcf->google_token_url.len + 1);

    if (form == NULL || url == NULL) {
        ngx_gdrive_token_fail(req, "internal_error", "out of memory", 0);
        return;
    }

    ngx_cpystrn((u_char *) url, gmcf->google_token_url.data,
                gmcf->google_token_url.len + 1);

    ngx_gdrive_token_post(req, url, form, ngx_gdrive_token_refresh_done,
                          "OAuth token refresh");
}


static void
ngx_gdrive_token_refresh_done(ngx_gdrive_http_t *h)
{
    ngx_gdrive_token_req_t *req = h->data;

    json_t        *root;
    const char    *error;
    json_error_t   jerr;

    ngx_gdrive_metric_google_request("token",
                                     h->result == CURLE_OK ? h->status : 0,
                                     ngx_current_msec - h->started);

    root = (h->result == CURLE_OK)
           ? json_loadb((char *) h->body, h->len, 0, &jerr) : NULL;

    if (h->result == CURLE_OK && (h->status == 400 || h->status == 401)) {
        error = json_string_value(json_object_get(root, "error"));

        if (error && ngx_strcmp(error, "invalid_grant") == 0) {
            /* "Token has been expired or revoked.": a person must act */
            json_decref(root);
            ngx_gdrive_metric_token_refresh("revoked");
            ngx_log_error(NGX_LOG_WARN, req->log, 0,
                          "gdrive: refresh token of integration \"%V\" is "
                          "expired or revoked", &req->integration);
            req->code = "auth_revoked";
            req->detail = "Token has been expired or revoked";
            ngx_gdrive_token_reauthorize(req);
            return;
        }

        json_decref(root);
        ngx_gdrive_metric_token_refresh("error");
        ngx_gdrive_token_fail(req, "auth_invalid",
                              (error && ngx_strcmp(error, "invalid_client")
                                        == 0)
                              ? "the OAuth client is not accepted "
                                "(invalid_client)"
                              : "the token endpoint refused the request",
                              1);
        return;
    }

    ngx_gdrive_token_accept(req, h, root);
}


/*
 * The token endpoint's answer to either grant: an access token, stored
 * for every worker, or a failure.  Takes root.
 */

static void
ngx_gdrive_token_accept(ngx_gdrive_token_req_t *req, ngx_gdrive_http_t *h,
    json_t *root)
{
    uint64_t                  now;
    json_int_t                expires_in;
    const char               *token;
    ngx_gdrive_token_node_t  *node;

    if (ngx_gdrive_token_classify(req, h, "the token endpoint") != NGX_OK) {
        json_decref(root);
        ngx_gdrive_metric_token_refresh("error");
        return;
    }

    token = json_string_value(json_object_get(root, "access_token"));
    expires_in = json_integer_value(json_object_get(root, "expires_in"));

    /* the token goes into a header: RFC 6750's b64token charset only */

    if (token == NULL || *token == '\0'
        || ngx_strlen(token) > NGX_GDRIVE_TOKEN_MAX
        || !ngx_gdrive_token_b64token(token))
    {
        json_decref(root);
        ngx_gdrive_metric_token_refresh("error");
        ngx_gdrive_token_fail(req, "upstream_error",
                              "the token endpoint answered no usable "
                              "access_token", 0);
        return;
    }

    if (expires_in <= 0) {
        expires_in = 3600;
    }

    if (expires_in > 86400) {
        /* Google's last an hour: a larger number is not to be trusted */
        expires_in = 86400;
    }

    req->token.len = ngx_strlen(token);
    req->token.data = ngx_pnalloc(req->pool, req->token.len);

    if (req->token.data == NULL) {
        json_decref(root);
        ngx_gdrive_metric_token_refresh("error");
        ngx_gdrive_token_fail(req, "internal_error", "out of memory", 0);
        return;
    }

    ngx_memcpy(req->token.data, token, req->token.len);
    json_decref(root);

    ngx_gdrive_metric_token_refresh("ok");

    now = ngx_gdrive_epoch_ms();

    ngx_shmtx_lock(&ngx_gdrive_tokens.shpool->mutex);

    ngx_gdrive_tokens.tc->refreshes++;

    node = ngx_gdrive_token_node(&req->key, 1);

    if (node) {
        ngx_memcpy(node->token, req->token.data, req->token.len);
        node->token_len = (u_short) req->token.len;
        node->expires = now + (uint64_t) expires_in * 1000;
        node->refreshing = 0;
    }

    ngx_shmtx_unlock(&ngx_gdrive_tokens.shpool->mutex);

    req->refreshing = 0;
    req->rc = NGX_OK;

    ngx_log_error(NGX_LOG_INFO, req->log, 0,
                  "gdrive: access token of integration \"%V\" refreshed, "
                  "valid %Ls", &req->integration, (int64_t) expires_in);

    ngx_gdrive_token_finish(req);
}


/*
 * With a service account, the control plane names the user an integration
 * acts as ("subject"); a trigger's own subject, if any, is kept (the
 * cache entry is already that user's).
 */

static void
ngx_gdrive_token_cp_subject(ngx_gdrive_token_req_t *req, json_t *root)
{
    size_t       len;
    const char  *v;

    if (req->subject.len == 0) {
        v = json_string_value(json_object_get(root, "subject"));

        if (v && *v) {
            len = ngx_strlen(v);

            if (!ngx_gdrive_email_valid(v, len)) {
                ngx_gdrive_token_fail(req, "auth_invalid", "the control "
                                      "plane's subject is not an e-mail "
                                      "address", 1);
                return;
            }

            req->subject.data = ngx_pnalloc(req->pool, len);
            if (req->subject.data == NULL) {
                ngx_gdrive_token_fail(req, "internal_error",
                                      "out of memory", 0);
                return;
            }

            ngx_memcpy(req->subject.data, v, len);
            req->subject.len = len;
        }
    }

    ngx_gdrive_token_assertion(req);
}


/*
 * Google's JWT bearer grant: an assertion signed with the service
 * account's key, here on the event loop.  One RSA signature (about a
 * millisecond, see the README) per token, that is per integration and
 * user an hour, costs less than the TLS handshake of the request it goes
 * with, which nginx makes on the loop too.
 */

static void
ngx_gdrive_token_assertion(ngx_gdrive_token_req_t *req)
{
    int                           n;
    char                          sub[NGX_GDRIVE_SUBJECT_MAX_LEN + 1];
    char                         *jwt, *url;
    u_char                       *form;
    const char                   *aud;
    ngx_http_gdrive_main_conf_t  *gmcf;

    static const char  grant[] = "grant_type=urn%3Aietf%3Aparams%3Aoauth"
                                 "%3Agrant-type%3Ajwt-bearer&assertion=";

    gmcf = ngx_gdrive_tokens.gmcf;

    req->http = ngx_gdrive_http_create(req->pool, req->log, 64 * 1024);
    jwt = ngx_pnalloc(req->pool, NGX_GDRIVE_JWT_MAX_LEN);
    form = ngx_pnalloc(req->pool, sizeof(grant) + NGX_GDRIVE_JWT_MAX_LEN);

    if (req->http == NULL || jwt == NULL || form == NULL) {
        ngx_gdrive_token_fail(req, "internal_error", "out of memory", 0);
        return;
    }

    if (req->subject.len) {
        ngx_cpystrn((u_char *) sub, req->subject.data, req->subject.len + 1);
    }

    aud = ngx_gdrive_jwt_key_token_uri(gmcf->google_sa_key);

    n = ngx_gdrive_jwt_sign(gmcf->google_sa_key,
                            (char *) gmcf->google_scope.data, aud,
                            req->subject.len ? sub : NULL, ngx_time(),
                            NGX_GDRIVE_JWT_MAX_LIFETIME, jwt,
                            NGX_GDRIVE_JWT_MAX_LEN);

    if (n <= 0) {
        ngx_gdrive_token_fail(req, "internal_error", "the assertion could "
                              "not be signed", 0);
        return;
    }

    /* base64url and dots need no escaping in a form */

    ngx_sprintf(form, "%s%*s%Z", grant, (size_t) n, jwt);

    url = (char *) aud;

    /* the assertion is a credential for an hour */
    ngx_explicit_memzero(jwt, n);

    ngx_gdrive_token_post(req, url, form, ngx_gdrive_token_assertion_done,
                          "OAuth service account token");
}


/*
 * Google's answers to an assertion: unauthorized_client when the account
 * is not granted domain-wide delegation for the user or the scope, and
 * invalid_grant for a key, an account or a clock it does not accept;
 * both need an administrator, so both are permanent.
 */

static void
ngx_gdrive_token_assertion_done(ngx_gdrive_http_t *h)
{
    ngx_gdrive_token_req_t *req = h->data;

    json_t                       *root;
    u_char                       *p;
    const char                   *error, *desc;
    json_error_t                  jerr;
    ngx_http_gdrive_main_conf_t  *gmcf;

    gmcf = ngx_gdrive_tokens.gmcf;

    ngx_gdrive_metric_google_request("token",
                                     h->result == CURLE_OK ? h->status : 0,
                                     ngx_current_msec - h->started);

    root = (h->result == CURLE_OK)
           ? json_loadb((char *) h->body, h->len, 0, &jerr) : NULL;

    if (h->result != CURLE_OK || (h->status != 400 && h->status != 401)) {
        ngx_gdrive_token_accept(req, h, root);
        return;
    }

    error = json_string_value(json_object_get(root, "error"));
    desc = json_string_value(json_object_get(root, "error_description"));

    if (error == NULL || !ngx_gdrive_token_printable(error)) {
        error = "(none)";
    }

    if (desc == NULL || !ngx_gdrive_token_printable(desc)) {
        desc = "";
    }

    ngx_gdrive_metric_token_refresh("error");

    p = ngx_pnalloc(req->pool, 512);

    if (p && ngx_strcmp(error, "unauthorized_client") == 0) {
        ngx_snprintf(p, 511, "the service account %s is not granted "
                     "domain-wide "
                     "delegation for %V and the scope \"%V\": a Workspace "
                     "administrator allows its client id for that scope "
                     "(Admin console, API controls, Domain-wide "
                     "delegation)%Z",
                     ngx_gdrive_jwt_key_email(gmcf->google_sa_key),
                     req->subject.len ? &req->subject
                                      : &(ngx_str_t) ngx_string("itself"),
                     &gmcf->google_scope);
        p[511] = '\0';

    } else if (p) {
        ngx_snprintf(p, 511, "the token endpoint refused the service "
                     "account %s: %.32s %.200s%Z",
                     ngx_gdrive_jwt_key_email(gmcf->google_sa_key), error,
                     desc);
        p[511] = '\0';
    }

    ngx_log_error(NGX_LOG_ERR, req->log, 0,
                  "gdrive: no token for integration \"%V\": %s",
                  &req->integration, p ? (char *) p : error);

    json_decref(root);

    ngx_gdrive_token_fail(req, "auth_invalid", p ? (char *) p : error, 1);
}


/* Google's error words are logged and shown: printable ASCII only */

static ngx_uint_t
ngx_gdrive_token_printable(const char *s)
{
    for ( /* void */ ; *s; s++) {
        if (*s < 0x20 || *s >= 0x7f) {
            return 0;
        }
    }

    return 1;
}


/* the control plane is told, and only then the job learns the outcome */

static void
ngx_gdrive_token_reauthorize(ngx_gdrive_token_req_t *req)
{
    char                         *url;
    ngx_http_gdrive_main_conf_t  *gmcf;

    gmcf = ngx_gdrive_tokens.gmcf;

    if (gmcf->control_plane_url.len == 0) {
        ngx_gdrive_token_fail(req, req->code, req->detail, 1);
        return;
    }

    url = ngx_gdrive_token_url(req->pool, &gmcf->control_plane_url,
                               "%V/integrations/%V/reauthorize",
                               &req->integration);

    req->http = ngx_gdrive_http_create(req->pool, req->log, 64 * 1024);

    if (url == NULL || req->http == NULL) {
        ngx_gdrive_token_fail(req, req->code, req->detail, 1);
        return;
    }

    if (ngx_gdrive_token_cp_auth(req) != NGX_OK) {
        return;
    }

    curl_easy_setopt(req->http->easy, CURLOPT_COPYPOSTFIELDS,
                     "{\"reason\":\"invalid_grant\"}");
    (void) ngx_gdrive_http_header_add(req->http,
                                      "Content-Type: application/json");

    ngx_gdrive_token_send(req, url, ngx_gdrive_token_reauthorize_done,
                          "control plane reauthorize");
}


static void
ngx_gdrive_token_send(ngx_gdrive_token_req_t *req, char *url,
    void (*handler)(ngx_gdrive_http_t *h), const char *what)
{
    req->http->handler = handler;
    req->http->data = req;
    req->http->what = what;

    (void) ngx_gdrive_http_header_add(req->http, "Accept: application/json");

    if (ngx_gdrive_http_start(req->http, url) != NGX_OK) {
        ngx_gdrive_token_fail(req, req->code ? req->code : "internal_error",
                              req->detail ? req->detail
                                          : "the HTTP client failed",
                              req->code != NULL);
    }
}


/*
 * A request to Google's token endpoint: its form holds secrets, which curl
 * copies and debug lines never show; it counts in the job's Google
 * requests.
 */

static void
ngx_gdrive_token_post(ngx_gdrive_token_req_t *req, char *url, u_char *form,
    void (*handler)(ngx_gdrive_http_t *h), const char *what)
{
    curl_easy_setopt(req->http->easy, CURLOPT_COPYPOSTFIELDS, form);
    ngx_explicit_memzero(form, ngx_strlen(form));

    req->requests++;

    ngx_gdrive_token_send(req, url, handler, what);
}


static void
ngx_gdrive_token_reauthorize_done(ngx_gdrive_http_t *h)
{
    ngx_gdrive_token_req_t *req = h->data;

    ngx_gdrive_metric_google_request("cp.reauthorize",
                                     h->result == CURLE_OK ? h->status : 0,
                                     ngx_current_msec - h->started);

    if (h->result != CURLE_OK || h->status >= 300) {
        ngx_log_error(NGX_LOG_ERR, req->log, 0,
                      "gdrive: reauthorization of integration \"%V\" not "
                      "requested: HTTP %l %s", &req->integration, h->status,
                      h->result ? curl_easy_strerror(h->result) : "");

    } else {
        ngx_log_error(NGX_LOG_NOTICE, req->log, 0,
                      "gdrive: reauthorization of integration \"%V\" "
                      "requested from the control plane", &req->integration);
    }

    ngx_gdrive_token_fail(req, req->code, req->detail, 1);
}


static ngx_uint_t
ngx_gdrive_token_b64token(const char *p)
{
    for ( /* void */ ; *p; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')
              || (*p >= '0' && *p <= '9') || *p == '-' || *p == '.'
              || *p == '_' || *p == '~' || *p == '+' || *p == '/'
              || *p == '='))
        {
            return 0;
        }
    }

    return 1;
}


/*
 * Transport and status errors shared by the control plane (what NULL)
 * and OAuth.  The control plane's 401 and 403 are a deployment error
 * that fails every job: said at "error", with the control plane's own
 * words.
 */

static ngx_int_t
ngx_gdrive_token_classify(ngx_gdrive_token_req_t *req, ngx_gdrive_http_t *h,
    const char *what)
{
    u_char  *p, *last, answer[160];

    if (h->result != CURLE_OK) {
        ngx_log_error(NGX_LOG_WARN, req->log, 0,
                      "gdrive: %s not reached: %s",
                      what ? what : "the control plane",
                      h->error[0] ? h->error : curl_easy_strerror(h->result));
        ngx_gdrive_token_fail(req, "upstream_error",
                              curl_easy_strerror(h->result), 0);
        return NGX_ERROR;
    }

    if (h->status == 200) {
        return NGX_OK;
    }

    req->retry_after = h->retry_after;

    if (what == NULL && (h->status == 401 || h->status == 403)) {

        /* the answer as printable text, bounded: it is data from outside */

        last = answer;

        for (p = h->body; p && p < h->body + h->len
                          && last < answer + sizeof(answer) - 1; p++)
        {
            *last++ = (*p >= 0x20 && *p < 0x7f) ? *p : '?';
        }

        ngx_log_error(NGX_LOG_ERR, req->log, 0,
                      "gdrive: the control plane refused the worker's "
                      "credentials for integration \"%V\": HTTP %l \"%*s\"; "
                      "check gdrive_control_plane_token and the client "
                      "certificate", &req->integration, h->status,
                      (size_t) (last - answer), answer);

        ngx_gdrive_token_fail(req, "control_plane_denied",
                              h->status == 401
                              ? "the control plane answered 401: the "
                                "worker's credentials are refused"
                              : "the control plane answered 403: the "
                                "worker may not read these credentials", 1);
        return NGX_ERROR;
    }

    ngx_log_error(NGX_LOG_WARN, req->log, 0,
                  "gdrive: %s answered HTTP %l",
                  what ? what : "the control plane", h->status);

    if (h->status == 429) {
        ngx_gdrive_token_fail(req, "rate_limited", "HTTP 429", 0);

    } else if (h->status >= 500 || h->status == 408) {
        ngx_gdrive_token_fail(req, "upstream_error", "HTTP 5xx", 0);

    } else if (what == NULL && h->status == 404) {
        ngx_gdrive_token_fail(req, "integration_unknown",
                              "the control plane does not know the "
                              "integration", 1);

    } else {
        ngx_gdrive_token_fail(req, "auth_invalid", "HTTP 4xx", 1);
    }

    return NGX_ERROR;
}


static void
ngx_gdrive_token_fail(ngx_gdrive_token_req_t *req, const char *code,
    const char *detail, ngx_uint_t permanent)
{
    ngx_gdrive_token_release(req);

    req->rc = NGX_ERROR;
    req->code = code;
    req->detail = detail;
    req->permanent = permanent;

    ngx_gdrive_token_finish(req);
}


/* the refresh mark goes: another request, of any worker, may refresh */

static void
ngx_gdrive_token_release(ngx_gdrive_token_req_t *req)
{
    ngx_gdrive_token_node_t  *node;

    if (!req->refreshing) {
        return;
    }

    ngx_shmtx_lock(&ngx_gdrive_tokens.shpool->mutex);

    node = ngx_gdrive_token_node(&req->key, 0);

    if (node && node->refreshing == ngx_pid) {
        node->refreshing = 0;
    }

    ngx_shmtx_unlock(&ngx_gdrive_tokens.shpool->mutex);

    req->refreshing = 0;
}


static void
ngx_gdrive_token_finish(ngx_gdrive_token_req_t *req)
{
    req->http = NULL;
    req->handler(req);
}


/*
 * Under the zone's mutex.  A full zone evicts the least recently used
 * entries that nobody refreshes; if that is not enough, NULL.
 */

static ngx_gdrive_token_node_t *
ngx_gdrive_token_node(ngx_str_t *key, ngx_uint_t create)
{
    ngx_gdrive_shm_node_t  *sn;

    sn = ngx_gdrive_shm_lookup(&ngx_gdrive_tokens.cache, key);

    if (sn) {
        return (ngx_gdrive_token_node_t *) sn;
    }

    if (!create
        || key->len > NGX_GDRIVE_ID_MAX_LEN + 1 + NGX_GDRIVE_SUBJECT_MAX_LEN)
    {
        return NULL;
    }

    return (ngx_gdrive_token_node_t *)
               ngx_gdrive_shm_insert(&ngx_gdrive_tokens.cache, key,
                                     sizeof(ngx_gdrive_token_node_t),
                                     ngx_gdrive_epoch_ms());
}


static ngx_uint_t
ngx_gdrive_token_evictable(ngx_gdrive_shm_node_t *sn, uint64_t now)
{
    return ((ngx_gdrive_token_node_t *) sn)->refreshing == 0;
}


static void
ngx_gdrive_token_gone(ngx_gdrive_shm_node_t *sn, ngx_uint_t cause)
{
    ngx_gdrive_tokens.tc->evictions++;
    ngx_gdrive_metric_cache("token", "eviction");
}


static char *
ngx_gdrive_token_url(ngx_pool_t *pool, ngx_str_t *base, const char *fmt,
    ngx_str_t *id)
{
    u_char  *url;

    /* ids are of [A-Za-z0-9._:-]: nothing to escape in a path */

    url = ngx_pnalloc(pool, base->len + id->len + 64);
    if (url == NULL) {
        return NULL;
    }

    *ngx_sprintf(url, fmt, base, id) = '\0';

    return (char *) url;
}
