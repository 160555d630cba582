
/*
 * nginx-gdrive-worker: Google OAuth access tokens (ngx_gdrive_oauth.c).
 *
 * Client layer.
 */


#ifndef _NGX_GDRIVE_OAUTH_H_INCLUDED_
#define _NGX_GDRIVE_OAUTH_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>

#include "ngx_gdrive.h"
#include "ngx_gdrive_http.h"


/* OAuth access tokens, cached in the shared zone */

typedef struct ngx_gdrive_token_req_s  ngx_gdrive_token_req_t;

struct ngx_gdrive_token_req_s {
    ngx_pool_t              *pool;
    ngx_log_t               *log;
    ngx_str_t                integration;
    /* with a service account: the user to act as, or empty */
    ngx_str_t                subject;
    void                   (*handler)(ngx_gdrive_token_req_t *req);
    void                    *data;

    /* the answer */
    ngx_int_t                rc;          /* NGX_OK, NGX_ERROR */
    ngx_str_t                token;
    const char              *code;        /* README, Failures and retries */
    const char              *detail;
    ngx_uint_t               permanent;
    ngx_int_t                retry_after; /* seconds, -1: none */

    /* its state */
    ngx_gdrive_http_t       *http;
    ngx_event_t              wait;
    ngx_uint_t               waited;
    ngx_str_t                client_id;
    ngx_str_t                client_secret;
    ngx_str_t                refresh_token;
    ngx_str_t                key;         /* in the cache: integration, or
                                             integration/subject */
    ngx_uint_t               requests;    /* to Google's token endpoint */
    unsigned                 refreshing:1;
};

void ngx_gdrive_token_init(ngx_http_gdrive_main_conf_t *gmcf);
void ngx_gdrive_token_get(ngx_gdrive_token_req_t *req);
void ngx_gdrive_token_cancel(ngx_gdrive_token_req_t *req);
/* key: the request's (req->key, set by ngx_gdrive_token_get()) */
void ngx_gdrive_token_invalidate(ngx_str_t *key, ngx_str_t *token);


#endif /* _NGX_GDRIVE_OAUTH_H_INCLUDED_ */
