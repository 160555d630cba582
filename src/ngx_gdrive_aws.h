
/*
 * nginx-gdrive-worker: the AWS credentials S3 is signed with
 * (ngx_gdrive_aws.c).
 *
 * Client layer.  Static keys, with a session token or not, come from the
 * configuration.  Web identity credentials (a role and a token file, as
 * Kubernetes gives a pod with IRSA) come from STS AssumeRoleWithWebIdentity
 * and live in the shared zone for every worker.  ngx_gdrive.h includes
 * this header before the zone's type, which embeds ngx_gdrive_aws_sh_t.
 */


#ifndef _NGX_GDRIVE_AWS_H_INCLUDED_
#define _NGX_GDRIVE_AWS_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_gdrive_sts.h"


/*
 * The web identity credentials in the zone.  lock is the pid of the one
 * worker that asks STS (a stale one is taken over).  Everything is
 * written under the slab pool's mutex, the credentials by that worker,
 * and read under it by a worker whose copy is older than generation.
 */
typedef struct {
    ngx_atomic_t         lock;           /* pid, 0: nobody refreshes */
    uint64_t             locked;         /* epoch ms the lock was taken */
    ngx_atomic_t         generation;     /* bumped when credentials come */
    uint32_t             role;           /* crc32 of the role's ARN */
    uint64_t             issued;         /* epoch ms, 0: none yet */
    uint64_t             expiration;     /* epoch ms */
    uint64_t             renew_at;       /* epoch ms */
    uint64_t             retry_at;       /* after a failure, epoch ms */
    ngx_atomic_t         failures;       /* in a row */
    ngx_atomic_t         requests;       /* STS requests made */
    ngx_atomic_t         refused;        /* the last failure was STS's no */
    u_char               detail[256];    /* the last failure, no secrets */
    char                 access_key[NGX_GDRIVE_STS_KEY_MAX + 1];
    char                 secret_key[NGX_GDRIVE_STS_SECRET_MAX + 1];
    char                 session_token[NGX_GDRIVE_STS_TOKEN_MAX + 1];
} ngx_gdrive_aws_sh_t;


/* the credentials a request is signed with; valid until the next call */
typedef struct {
    ngx_str_t            access_key;
    ngx_str_t            secret_key;
    ngx_str_t            session_token;  /* len 0: none */
} ngx_gdrive_aws_creds_t;


/* what gdrive_health says of them */
typedef struct {
    ngx_uint_t           ok;
    const char          *mode;
    int64_t              expires_in;     /* seconds, -1: not known */
    ngx_uint_t           requests;
    ngx_uint_t           failures;
    u_char               detail[256];
} ngx_gdrive_aws_check_t;


ngx_int_t ngx_gdrive_aws_init(ngx_cycle_t *cycle,
    ngx_http_gdrive_main_conf_t *gmcf);
/* NGX_OK, or NGX_AGAIN: none usable yet, the caller waits on a timer */
ngx_int_t ngx_gdrive_aws_credentials(ngx_http_gdrive_main_conf_t *gmcf,
    ngx_gdrive_aws_creds_t *c);
void ngx_gdrive_aws_check(ngx_http_gdrive_main_conf_t *gmcf,
    ngx_gdrive_aws_check_t *st);


#endif /* _NGX_GDRIVE_AWS_H_INCLUDED_ */
