
/*
 * nginx-gdrive-worker: the AWS credentials S3 is signed with.
 *
 * Client layer.  Three modes, chosen at nginx -t (ngx_gdrive_conf.c):
 * static keys; static keys with a session token; web identity, where the
 * role and the token file of the pod (IRSA) are exchanged at STS
 * AssumeRoleWithWebIdentity for temporary credentials.
 *
 * Web identity.  The credentials live in the shared zone, one copy for
 * every worker.  One worker at a time asks STS: it takes the zone's lock
 * (its pid; a lock older than NGX_GDRIVE_AWS_STALE is a dead worker's and
 * is taken over), asks, writes the answer and lets go.  Every worker looks
 * once a second, and whenever a request finds nothing usable, whether the
 * credentials are due: none yet, or within gdrive_sts_renew of their
 * expiry (half of their lifetime when that is shorter), so that they are
 * renewed well before S3 would refuse them.  They stay usable until
 * NGX_GDRIVE_AWS_SAFETY (a quarter of their lifetime when shorter) before
 * their expiry, so a failing renewal leaves time to retry.
 *
 * The token file is read again for every request, as the AWS SDKs do: the
 * kubelet rotates it well before it expires.  It is a small local file
 * (a projected volume, in memory), so it is read on the event loop; that
 * costs microseconds and no network.  The STS call is an unsigned POST
 * through ngx_gdrive_http.c, never blocking; its answer is parsed by
 * ngx_gdrive_sts_parse() as untrusted input.
 *
 * Failures: STS refusing (an ErrorResponse with a 4xx) is an error line
 * that quotes STS's Code and Message, STS unreachable or 5xx a warning;
 * both are retried after 1 s doubled per failure up to 30 s, and
 * gdrive_health's s3.credentials check fails with the detail until
 * credentials come.  Meanwhile S3 requests wait (ngx_gdrive_s3.c).
 *
 * Neither the secret key, the session token nor the web identity token is
 * ever logged; buffers that held them are wiped.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>

#include "ngx_gdrive.h"
#include "ngx_gdrive_aws.h"
#include "ngx_gdrive_http.h"


#define NGX_GDRIVE_AWS_TICK        1000      /* ms between looks */
#define NGX_GDRIVE_AWS_STALE       60000     /* ms: a dead worker's lock */
#define NGX_GDRIVE_AWS_SAFETY      60000     /* ms before expiry: unusable */
#define NGX_GDRIVE_AWS_BACKOFF     1000      /* ms, doubled per failure */
#define NGX_GDRIVE_AWS_MAX_BACKOFF 30000
#define NGX_GDRIVE_AWS_TOKEN_MAX   20000     /* STS's WebIdentityToken */
#define NGX_GDRIVE_AWS_MAX_BODY    (64 * 1024)


typedef struct {
    ngx_http_gdrive_main_conf_t  *gmcf;
    ngx_gdrive_aws_sh_t          *sh;
    ngx_slab_pool_t              *shpool;
    ngx_log_t                    *log;
    ngx_event_t                   tick;
    uint32_t                      role;           /* crc32 of its ARN */

    /* this worker's copy of the zone's credentials */
    ngx_atomic_uint_t             generation;
    uint64_t                      usable_until;   /* epoch ms, 0: none */
    char                          access_key[NGX_GDRIVE_STS_KEY_MAX + 1];
    char                          secret_key[NGX_GDRIVE_STS_SECRET_MAX + 1];
    char                          session_token[NGX_GDRIVE_STS_TOKEN_MAX
                                                + 1];

    /* the STS request this worker has in flight, or NULL */
    ngx_pool_t                   *pool;
} ngx_gdrive_aws_t;


static void ngx_gdrive_aws_tick(ngx_event_t *ev);
static void ngx_gdrive_aws_refresh(ngx_gdrive_aws_t *aws);
static ngx_uint_t ngx_gdrive_aws_due(ngx_gdrive_aws_t *aws, uint64_t now);
static uint64_t ngx_gdrive_aws_usable_until(ngx_gdrive_aws_sh_t *a,
    uint32_t role);
static ngx_int_t ngx_gdrive_aws_start(ngx_gdrive_aws_t *aws);
static ssize_t ngx_gdrive_aws_read_token(ngx_gdrive_aws_t *aws, u_char *buf,
    size_t size);
static void ngx_gdrive_aws_handler(ngx_gdrive_http_t *h);
static void ngx_gdrive_aws_failed(ngx_gdrive_aws_t *aws, ngx_uint_t level,
    ngx_uint_t refused, const char *fmt, ...);
static void ngx_gdrive_aws_unlock(ngx_gdrive_aws_t *aws);
static void ngx_gdrive_aws_copy(ngx_gdrive_aws_t *aws);


static ngx_gdrive_aws_t  ngx_gdrive_aws;


ngx_int_t
ngx_gdrive_aws_init(ngx_cycle_t *cycle, ngx_http_gdrive_main_conf_t *gmcf)
{
    ngx_gdrive_aws_t      *aws;
    ngx_gdrive_shm_ctx_t  *ctx;

    aws = &ngx_gdrive_aws;

    aws->gmcf = gmcf;

    if (!gmcf->s3_web_identity) {
        return NGX_OK;
    }

    ctx = ngx_gdrive_shm_ctx(gmcf);
    aws->sh = &ctx->sh->aws;
    aws->shpool = ctx->shpool;
    aws->log = cycle->log;
    aws->role = ngx_crc32_short(gmcf->s3_role_arn.data, gmcf->s3_role_arn.len);

    aws->tick.handler = ngx_gdrive_aws_tick;
    aws->tick.data = aws;
    aws->tick.log = cycle->log;
    aws->tick.cancelable = 1;

    /* the first look from the event loop, once the HTTP client is up */
    ngx_add_timer(&aws->tick, 1);

    return NGX_OK;
}


/*
 * The credentials a request is signed with now.  A request that starts
 * later (a retry, the next part of a multipart upload) asks again and so
 * signs with the newest ones.
 */

ngx_int_t
ngx_gdrive_aws_credentials(ngx_http_gdrive_main_conf_t *gmcf,
    ngx_gdrive_aws_creds_t *c)
{
    uint64_t           now;
    ngx_gdrive_aws_t  *aws;

    aws = &ngx_gdrive_aws;

    if (!gmcf->s3_web_identity) {
        c->access_key = gmcf->s3_access_key;
        c->secret_key = gmcf->s3_secret_key;
        c->session_token = gmcf->s3_session_token;
        return NGX_OK;
    }

    if (aws->sh == NULL) {
        return NGX_AGAIN;
    }

    if (aws->sh->generation != aws->generation) {
        ngx_gdrive_aws_copy(aws);
    }

    now = ngx_gdrive_epoch_ms();

    if (now >= aws->usable_until) {
        ngx_gdrive_aws_refresh(aws);
        return NGX_AGAIN;
    }

    c->access_key.data = (u_char *) aws->access_key;
    c->access_key.len = ngx_strlen(aws->access_key);
    c->secret_key.data = (u_char *) aws->secret_key;
    c->secret_key.len = ngx_strlen(aws->secret_key);
    c->session_token.data = (u_char *) aws->session_token;
    c->session_token.len = ngx_strlen(aws->session_token);

    return NGX_OK;
}


/* gdrive_health's s3.credentials, from any worker */

void
ngx_gdrive_aws_check(ngx_http_gdrive_main_conf_t *gmcf,
    ngx_gdrive_aws_check_t *st)
{
    uint64_t               now, until;
    ngx_gdrive_aws_sh_t   *a;
    ngx_gdrive_shm_ctx_t  *ctx;

    ngx_memzero(st, sizeof(ngx_gdrive_aws_check_t));
    st->expires_in = -1;

    if (!gmcf->s3_web_identity) {
        st->ok = 1;
        st->mode = gmcf->s3_session_token.len ? "session token"
                                              : "static keys";
        return;
    }

    st->mode = "web identity";

    ctx = ngx_gdrive_shm_ctx(gmcf);
    a = &ctx->sh->aws;
    now = ngx_gdrive_epoch_ms();

    ngx_shmtx_lock(&ctx->shpool->mutex);

    until = ngx_gdrive_aws_usable_until(a,
                ngx_crc32_short(gmcf->s3_role_arn.data, gmcf->s3_role_arn.len));
    st->ok = (now < until);
    st->requests = a->requests;
    st->failures = a->failures;

    if (a->issued) {
        st->expires_in = ((int64_t) a->expiration - (int64_t) now) / 1000;
    }

    if (a->detail[0]) {
        ngx_cpystrn(st->detail, a->detail, sizeof(st->detail));

    } else if (!st->ok) {
        ngx_cpystrn(st->detail, (u_char *) "no credentials yet: the first "
                    "STS request is on its way", sizeof(st->detail));
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);
}


/* once a second, re-armed first; a worker that is exiting asks no more */

static void
ngx_gdrive_aws_tick(ngx_event_t *ev)
{
    ngx_gdrive_aws_t *aws = ev->data;

    if (ngx_exiting || ngx_quit || ngx_terminate) {
        return;
    }

    ngx_add_timer(&aws->tick, NGX_GDRIVE_AWS_TICK);

    ngx_gdrive_aws_refresh(aws);
}


/* asks STS if the credentials are due and no other worker is asking */

static void
ngx_gdrive_aws_refresh(ngx_gdrive_aws_t *aws)
{
    uint64_t              now;
    ngx_atomic_uint_t     pid;
    ngx_gdrive_aws_sh_t  *a;

    a = aws->sh;

    /* an exiting worker still asks for the jobs it drains; the tick not */

    if (aws->pool != NULL) {
        return;
    }

    now = ngx_gdrive_epoch_ms();

    if (!ngx_gdrive_aws_due(aws, now) || now < a->retry_at) {
        return;
    }

    /* the lock and its time together, under the zone's mutex */

    ngx_shmtx_lock(&aws->shpool->mutex);

    pid = a->lock;

    if (pid != 0 && now < a->locked + NGX_GDRIVE_AWS_STALE) {
        ngx_shmtx_unlock(&aws->shpool->mutex);
        return;
    }

    a->lock = ngx_pid;
    a->locked = now;

    ngx_shmtx_unlock(&aws->shpool->mutex);

    if (pid != 0) {
        ngx_log_error(NGX_LOG_WARN, aws->log, 0,
                      "gdrive: aws credentials: the STS request of worker "
                      "%P took too long, this worker asks instead",
                      (ngx_pid_t) pid);
    }

    /* another worker may have renewed them between the look and the lock */

    if (!ngx_gdrive_aws_due(aws, now) || now < a->retry_at) {
        ngx_gdrive_aws_unlock(aws);
        return;
    }

    if (ngx_gdrive_aws_start(aws) != NGX_OK) {
        ngx_gdrive_aws_unlock(aws);
    }
}


/*
 * Due: none yet, near their expiry, or of another role (the zone outlives
 * a reload that changed gdrive_s3_role_arn).
 */

static ngx_uint_t
ngx_gdrive_aws_due(ngx_gdrive_aws_t *aws, uint64_t now)
{
    ngx_gdrive_aws_sh_t  *a;

    a = aws->sh;

    /* a renewal margin set below the safety margin: due when unusable */

    return a->issued == 0 || a->role != aws->role || now >= a->renew_at
           || now >= ngx_gdrive_aws_usable_until(a, aws->role);
}


/* the lifetime's end less a safety margin, a quarter of it at most */

static uint64_t
ngx_gdrive_aws_usable_until(ngx_gdrive_aws_sh_t *a, uint32_t role)
{
    uint64_t  margin;

    if (a->issued == 0 || a->role != role || a->expiration <= a->issued) {
        return 0;
    }

    margin = ngx_min(NGX_GDRIVE_AWS_SAFETY, (a->expiration - a->issued) / 4);

    return a->expiration - margin;
}


static ngx_int_t
ngx_gdrive_aws_start(ngx_gdrive_aws_t *aws)
{
    int                           n;
    u_char                       *token, *body, *url, *arn, *name;
    size_t                        size;
    ssize_t                       len;
    ngx_pool_t                   *pool;
    ngx_gdrive_http_t            *h;
    ngx_http_gdrive_main_conf_t  *gmcf;

    gmcf = aws->gmcf;

    pool = ngx_create_pool(4096, aws->log);
    if (pool == NULL) {
        return NGX_ERROR;
    }

    token = ngx_pnalloc(pool, NGX_GDRIVE_AWS_TOKEN_MAX + 1);
    size = 3 * NGX_GDRIVE_AWS_TOKEN_MAX + 3 * gmcf->s3_role_arn.len
           + 3 * gmcf->s3_role_session_name.len + 256;
    body = ngx_pnalloc(pool, size);
    url = ngx_pnalloc(pool, gmcf->sts_endpoint.len + 1);
    h = ngx_gdrive_http_create(pool, aws->log, NGX_GDRIVE_AWS_MAX_BODY);

    if (token == NULL || body == NULL || url == NULL || h == NULL) {
        ngx_destroy_pool(pool);
        return NGX_ERROR;
    }

    len = ngx_gdrive_aws_read_token(aws, token, NGX_GDRIVE_AWS_TOKEN_MAX + 1);

    if (len < 0) {
        ngx_destroy_pool(pool);
        return NGX_ERROR;
    }

    /* C strings for the request builder: a value may come from getenv() */

    arn = ngx_pnalloc(pool, gmcf->s3_role_arn.len + 1);
    name = ngx_pnalloc(pool, gmcf->s3_role_session_name.len + 1);

    if (arn == NULL || name == NULL) {
        ngx_explicit_memzero(token, len);
        ngx_destroy_pool(pool);
        return NGX_ERROR;
    }

    ngx_cpystrn(arn, gmcf->s3_role_arn.data, gmcf->s3_role_arn.len + 1);
    ngx_cpystrn(name, gmcf->s3_role_session_name.data,
                gmcf->s3_role_session_name.len + 1);

    n = ngx_gdrive_sts_request((char *) arn, (char *) name, (char *) token,
                               len, 0, (char *) body, size);

    ngx_explicit_memzero(token, len);

    if (n < 0) {
        ngx_gdrive_aws_failed(aws, NGX_LOG_ERR, 0, "the STS request could "
                              "not be built");
        ngx_destroy_pool(pool);
        return NGX_ERROR;
    }

    ngx_cpystrn(url, gmcf->sts_endpoint.data, gmcf->sts_endpoint.len + 1);

    h->handler = ngx_gdrive_aws_handler;
    h->data = aws;
    h->method = "POST";
    h->request_body = body;
    h->request_len = n;
    h->what = "sts AssumeRoleWithWebIdentity";

    if (ngx_gdrive_http_header_add(h, "Content-Type: application/"
                                      "x-www-form-urlencoded; charset=utf-8")
        != NGX_OK
        || ngx_gdrive_http_start(h, (char *) url) != NGX_OK)
    {
        ngx_explicit_memzero(body, n);
        ngx_destroy_pool(pool);
        ngx_gdrive_aws_failed(aws, NGX_LOG_ERR, 0, "the STS request could "
                              "not be started");
        return NGX_ERROR;
    }

    aws->pool = pool;
    ngx_atomic_fetch_add(&aws->sh->requests, 1);

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, aws->log, 0,
                   "gdrive: aws credentials: STS asked for role \"%V\"",
                   &gmcf->s3_role_arn);

    return NGX_OK;
}


/*
 * The web identity token, trailing white space cut; -1 when the file
 * cannot be read (the failure is recorded).  A blocking read of a small
 * local file, see the top of this file.
 */

static ssize_t
ngx_gdrive_aws_read_token(ngx_gdrive_aws_t *aws, u_char *buf, size_t size)
{
    ssize_t                       n;
    ngx_fd_t                      fd;
    ngx_err_t                     err;
    ngx_http_gdrive_main_conf_t  *gmcf;

    gmcf = aws->gmcf;

    fd = ngx_open_file(gmcf->s3_web_identity_token_file.data, NGX_FILE_RDONLY,
                       NGX_FILE_OPEN, 0);

    if (fd == NGX_INVALID_FILE) {
        err = ngx_errno;
        ngx_gdrive_aws_failed(aws, NGX_LOG_ERR, 1, "the web identity token "
                              "file \"%V\" cannot be opened: %s",
                              &gmcf->s3_web_identity_token_file,
                              strerror(err));
        return -1;
    }

    n = read(fd, buf, size);
    err = ngx_errno;

    (void) ngx_close_file(fd);

    if (n < 0) {
        ngx_gdrive_aws_failed(aws, NGX_LOG_ERR, 1, "the web identity token "
                              "file \"%V\" cannot be read: %s",
                              &gmcf->s3_web_identity_token_file,
                              strerror(err));
        return -1;
    }

    if ((size_t) n == size) {
        ngx_explicit_memzero(buf, size);
        ngx_gdrive_aws_failed(aws, NGX_LOG_ERR, 1, "the web identity token "
                              "file \"%V\" is larger than %d bytes",
                              &gmcf->s3_web_identity_token_file,
                              NGX_GDRIVE_AWS_TOKEN_MAX);
        return -1;
    }

    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'
                     || buf[n - 1] == ' ' || buf[n - 1] == '\t'))
    {
        n--;
    }

    if (n == 0) {
        ngx_gdrive_aws_failed(aws, NGX_LOG_ERR, 1, "the web identity token "
                              "file \"%V\" is empty",
                              &gmcf->s3_web_identity_token_file);
        return -1;
    }

    return n;
}


static void
ngx_gdrive_aws_handler(ngx_gdrive_http_t *h)
{
    ngx_gdrive_aws_t *aws = h->data;

    int                       rc;
    uint64_t                  now, exp, margin;
    ngx_pool_t               *pool;
    ngx_gdrive_aws_sh_t      *a;
    ngx_gdrive_sts_answer_t  *ans;

    pool = aws->pool;
    a = aws->sh;

    ngx_explicit_memzero(h->request_body, h->request_len);

    ans = ngx_pcalloc(pool, sizeof(ngx_gdrive_sts_answer_t));

    if (ans == NULL) {
        ngx_gdrive_aws_failed(aws, NGX_LOG_ERR, 0, "out of memory");
        goto done;
    }

    if (h->result != CURLE_OK) {
        ngx_gdrive_aws_failed(aws, NGX_LOG_WARN, 0, "STS at \"%V\" did not "
                              "answer: %s", &aws->gmcf->sts_endpoint,
                              h->error[0] ? h->error
                                          : curl_easy_strerror(h->result));
        goto done;
    }

    rc = ngx_gdrive_sts_parse((char *) h->body, h->len, ans);

    if (rc == 1 && h->status >= 400 && h->status < 500) {
        ngx_gdrive_aws_failed(aws, NGX_LOG_ERR, 1, "STS refused "
                              "AssumeRoleWithWebIdentity for role \"%V\" "
                              "(HTTP %l): %s: %s", &aws->gmcf->s3_role_arn,
                              h->status, ans->code, ans->message);
        goto done;
    }

    if (h->status != 200 || rc != 0) {
        ngx_gdrive_aws_failed(aws, NGX_LOG_WARN, 0, "STS answered HTTP %l"
                              "%s%s%s%s", h->status,
                              rc == 1 ? ": " : (rc < 0 ? ", " : ""),
                              rc == 1 ? ans->code : "",
                              rc == 1 ? ": " : "",
                              rc == 1 ? ans->message
                                      : (rc < 0 ? ans->message : ""));
        goto done;
    }

    now = ngx_gdrive_epoch_ms();
    exp = (uint64_t) ans->expiration * 1000;

    if (ans->expiration <= 0 || exp <= now) {
        ngx_gdrive_aws_failed(aws, NGX_LOG_ERR, 0, "STS issued credentials "
                              "that have already expired: is the clock "
                              "right?");
        goto done;
    }

    margin = ngx_min((uint64_t) aws->gmcf->sts_renew, (exp - now) / 2);

    ngx_shmtx_lock(&aws->shpool->mutex);

    ngx_cpystrn((u_char *) a->access_key, (u_char *) ans->access_key,
                sizeof(a->access_key));
    ngx_cpystrn((u_char *) a->secret_key, (u_char *) ans->secret_key,
                sizeof(a->secret_key));
    ngx_cpystrn((u_char *) a->session_token, (u_char *) ans->session_token,
                sizeof(a->session_token));
    a->role = aws->role;
    a->issued = now;
    a->expiration = exp;
    a->renew_at = exp - margin;
    a->retry_at = 0;
    a->failures = 0;
    a->refused = 0;
    a->detail[0] = '\0';
    ngx_atomic_fetch_add(&a->generation, 1);

    ngx_shmtx_unlock(&aws->shpool->mutex);

    ngx_log_error(NGX_LOG_INFO, aws->log, 0,
                  "gdrive: aws credentials: web identity credentials %s "
                  "for role \"%V\", valid for %uL s, renewed in %uL s",
                  ans->access_key, &aws->gmcf->s3_role_arn,
                  (exp - now) / 1000, (exp - margin - now) / 1000);

done:

    if (ans) {
        ngx_explicit_memzero(ans, sizeof(ngx_gdrive_sts_answer_t));
    }

    if (h->body) {
        ngx_explicit_memzero(h->body, h->len);
    }

    aws->pool = NULL;
    ngx_gdrive_aws_unlock(aws);
    ngx_destroy_pool(pool);
}


/*
 * A failed attempt: logged, kept for gdrive_health, and the next one
 * after a backoff, for every worker.
 */

static void
ngx_gdrive_aws_failed(ngx_gdrive_aws_t *aws, ngx_uint_t level,
    ngx_uint_t refused, const char *fmt, ...)
{
    u_char               *p, detail[256];
    va_list               args;
    uint64_t              delay;
    ngx_uint_t            failures;
    ngx_gdrive_aws_sh_t  *a;

    a = aws->sh;

    va_start(args, fmt);
    p = ngx_vslprintf(detail, detail + sizeof(detail) - 1, fmt, args);
    va_end(args);
    *p = '\0';

    failures = ngx_atomic_fetch_add(&a->failures, 1) + 1;

    delay = NGX_GDRIVE_AWS_BACKOFF << ngx_min(failures - 1, 5);
    delay = ngx_min(delay, NGX_GDRIVE_AWS_MAX_BACKOFF);

    ngx_shmtx_lock(&aws->shpool->mutex);

    ngx_cpystrn(a->detail, detail, sizeof(a->detail));
    a->refused = refused;
    a->retry_at = ngx_gdrive_epoch_ms() + delay;

    ngx_shmtx_unlock(&aws->shpool->mutex);

    ngx_log_error(level, aws->log, 0,
                  "gdrive: aws credentials: %s; failure %ui, next attempt "
                  "in %uL ms", detail, failures, delay);
}


static void
ngx_gdrive_aws_unlock(ngx_gdrive_aws_t *aws)
{
    ngx_shmtx_lock(&aws->shpool->mutex);

    if (aws->sh->lock == (ngx_atomic_uint_t) ngx_pid) {
        aws->sh->lock = 0;
    }

    ngx_shmtx_unlock(&aws->shpool->mutex);
}


/* the zone's credentials into this worker's copy */

static void
ngx_gdrive_aws_copy(ngx_gdrive_aws_t *aws)
{
    ngx_gdrive_aws_sh_t  *a;

    a = aws->sh;

    ngx_shmtx_lock(&aws->shpool->mutex);

    ngx_memcpy(aws->access_key, a->access_key, sizeof(aws->access_key));
    ngx_memcpy(aws->secret_key, a->secret_key, sizeof(aws->secret_key));
    ngx_memcpy(aws->session_token, a->session_token,
               sizeof(aws->session_token));
    aws->usable_until = ngx_gdrive_aws_usable_until(a, aws->role);
    aws->generation = a->generation;

    ngx_shmtx_unlock(&aws->shpool->mutex);
}
