
/*
 * nginx-gdrive-worker: the shared zone.
 *
 * Infrastructure: creates the slab-allocated zone that all workers share
 * (token cache, metadata cache, rate limiters, metrics, status) and keeps
 * it across reloads, as limit_req does.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_gdrive.h"


ngx_int_t
ngx_gdrive_shm_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_gdrive_shm_ctx_t  *octx = data;

    size_t                 len;
    ngx_gdrive_shm_ctx_t  *ctx;

    ctx = shm_zone->data;

    if (octx) {
        /* reload: the new cycle takes the old zone as it is */
        ctx->sh = octx->sh;
        ctx->shpool = octx->shpool;

        ngx_atomic_fetch_add(&ctx->sh->generation, 1);

        return NGX_OK;
    }

    ctx->shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        ctx->sh = ctx->shpool->data;
        return NGX_OK;
    }

    ctx->sh = ngx_slab_calloc(ctx->shpool, sizeof(ngx_gdrive_sh_t));
    if (ctx->sh == NULL) {
        return NGX_ERROR;
    }

    ctx->shpool->data = ctx->sh;

    ngx_rbtree_init(&ctx->sh->tokens.rbtree, &ctx->sh->tokens.sentinel,
                    ngx_str_rbtree_insert_value);
    ngx_queue_init(&ctx->sh->tokens.lru);

    ngx_gdrive_rate_init_zone(ctx);
    ngx_gdrive_cache_init_zone(ctx);

    ctx->sh->generation = 1;
    ctx->sh->started = ngx_current_msec;

    len = sizeof(" in gdrive zone \"\"") + shm_zone->shm.name.len;

    ctx->shpool->log_ctx = ngx_slab_alloc(ctx->shpool, len);
    if (ctx->shpool->log_ctx == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(ctx->shpool->log_ctx, " in gdrive zone \"%V\"%Z",
                &shm_zone->shm.name);

    ctx->shpool->log_nomem = 0;

    return NGX_OK;
}


ngx_gdrive_sh_t *
ngx_gdrive_shm(ngx_http_gdrive_main_conf_t *gmcf)
{
    ngx_gdrive_shm_ctx_t  *ctx;

    ctx = gmcf->shm_zone->data;

    return ctx->sh;
}


ngx_gdrive_shm_ctx_t *
ngx_gdrive_shm_ctx(ngx_http_gdrive_main_conf_t *gmcf)
{
    return gmcf->shm_zone->data;
}


/*
 * The clock of the times kept in the zone, the one limit_req uses: epoch
 * ms, alike in every process and showable as a date.  ngx_current_msec
 * is a process's timer base, not promised to mean the same elsewhere.
 * Whoever compares these times must survive the clock stepping back.
 */

uint64_t
ngx_gdrive_shm_now(void)
{
    ngx_time_t  *tp;

    tp = ngx_timeofday();

    return (uint64_t) tp->sec * 1000 + tp->msec;
}
