
/*
 * nginx-gdrive-worker: Drive API rate limits.
 *
 * A shared table: one token bucket per integration (gdrive_rate_limit)
 * and one for all of them (gdrive_global_rate_limit) in the shared zone,
 * so the limits hold across all workers; plus holds that keep an
 * integration's requests back until a time (Retry-After, the
 * quota_exhausted circuit).  Buckets live in an rbtree keyed by the
 * integration with an LRU queue, as limit_req keeps them; the arithmetic
 * is in ngx_gdrive_bucket.c.  Nothing here waits: a caller told to wait
 * sets a timer and asks again.
 *
 * Fairness is the simple kind: every caller refused is told when the next
 * request can pass, and whoever asks first then gets it.  Callers of one
 * integration retry at the rate, so none waits for ever, but no order
 * among them is promised.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_gdrive.h"


/* a drained bucket idle this long is the same as none: removed */
#define NGX_GDRIVE_RATE_IDLE       60000
#define NGX_GDRIVE_RATE_SCAN       64      /* buckets looked at to evict */
#define NGX_GDRIVE_RATE_FULL_WAIT  1000    /* ms a newcomer waits for room */


typedef struct {
    ngx_str_node_t           sn;
    ngx_queue_t              queue;
    ngx_gdrive_bucket_t      bucket;
    uint64_t                 held_until;      /* epoch ms, 0: not held */
    ngx_uint_t               quota;           /* the hold is the circuit */
    u_char                   key[1];
} ngx_gdrive_rate_node_t;


static ngx_gdrive_rate_node_t *ngx_gdrive_rate_node(ngx_gdrive_shm_ctx_t *ctx,
    ngx_str_t *key, uint64_t now);
static void ngx_gdrive_rate_expire(ngx_gdrive_shm_ctx_t *ctx, uint64_t now,
    ngx_uint_t force);
static void ngx_gdrive_rate_drop(ngx_gdrive_shm_ctx_t *ctx,
    ngx_gdrive_rate_node_t *node);
static void ngx_gdrive_rate_full(void);
static size_t ngx_gdrive_rate_cost(void);


static ngx_uint_t  ngx_gdrive_rate_nomem_logged;


void
ngx_gdrive_rate_init_zone(ngx_gdrive_shm_ctx_t *ctx)
{
    ngx_gdrive_rate_zone_t  *rz;

    rz = &ctx->sh->rate;

    ngx_rbtree_init(&rz->rbtree, &rz->sentinel, ngx_str_rbtree_insert_value);
    ngx_queue_init(&rz->lru);

    /* many integrations must not crowd the token cache out of the zone */
    rz->max_buckets = (ctx->shpool->end - (u_char *) ctx->shpool) / 4
                      / ngx_gdrive_rate_cost();
}


ngx_msec_t
ngx_gdrive_rate_take(ngx_str_t *integration, ngx_uint_t *global)
{
    uint64_t                      now, wait, w, gw;
    ngx_gdrive_shm_ctx_t         *ctx;
    ngx_gdrive_rate_zone_t       *rz;
    ngx_gdrive_rate_node_t       *node;
    ngx_http_gdrive_main_conf_t  *gmcf;

    gmcf = ngx_gdrive_worker.gmcf;

    if (gmcf == NULL || gmcf->shm_zone == NULL) {
        return 0;
    }

    ctx = ngx_gdrive_shm_ctx(gmcf);
    rz = &ctx->sh->rate;
    now = ngx_gdrive_shm_now();

    ngx_shmtx_lock(&ctx->shpool->mutex);

    node = ngx_gdrive_rate_node(ctx, integration, now);

    wait = ngx_gdrive_bucket_wait(&rz->global, now, gmcf->global_rate,
                                  gmcf->global_burst);
    gw = wait;

    if (node) {
        if (node->held_until > now) {
            wait = ngx_max(wait, node->held_until - now);
        }

        w = ngx_gdrive_bucket_wait(&node->bucket, now, gmcf->rate,
                                   gmcf->burst);
        wait = ngx_max(wait, w);

    } else if (integration->len && integration->len <= NGX_GDRIVE_ID_MAX_LEN)
    {
        /*
         * No room, and every bucket that could go holds a Retry-After or
         * an open quota circuit, which newcomers must not wipe out: the
         * newcomer waits for room, it is not failed.
         */
        wait = ngx_max(wait, NGX_GDRIVE_RATE_FULL_WAIT);
        rz->refused++;
    }

    if (wait == 0) {
        /* both said yes under the same lock: these cannot refuse now */

        (void) ngx_gdrive_bucket_take(&rz->global, now, gmcf->global_rate,
                                      gmcf->global_burst);

        if (node) {
            (void) ngx_gdrive_bucket_take(&node->bucket, now, gmcf->rate,
                                          gmcf->burst);
        } else {
            rz->unlimited++;
        }

        rz->passed++;

    } else {
        rz->waited++;
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    /* which limit made the caller wait: the global one, or its own */
    *global = (wait && gw == wait);

    if (node == NULL && integration->len
        && integration->len <= NGX_GDRIVE_ID_MAX_LEN)
    {
        ngx_gdrive_rate_full();
    }

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                   "gdrive rate \"%V\": %s, wait %uL ms", integration,
                   wait ? "wait" : "pass", wait);

    /* an ngx_msec_t timer of more than a day is not what anyone meant */
    return (ngx_msec_t) ngx_min(wait, 86400000);
}


void
ngx_gdrive_rate_hold(ngx_str_t *integration, ngx_msec_t ms, ngx_uint_t quota)
{
    uint64_t                      now, until;
    ngx_gdrive_shm_ctx_t         *ctx;
    ngx_gdrive_rate_node_t       *node;
    ngx_http_gdrive_main_conf_t  *gmcf;

    gmcf = ngx_gdrive_worker.gmcf;

    if (gmcf == NULL || gmcf->shm_zone == NULL || integration->len == 0
        || integration->len > NGX_GDRIVE_ID_MAX_LEN)
    {
        return;
    }

    ctx = ngx_gdrive_shm_ctx(gmcf);
    now = ngx_gdrive_shm_now();
    until = now + ngx_min(ms, 86400000);

    ngx_shmtx_lock(&ctx->shpool->mutex);

    node = ngx_gdrive_rate_node(ctx, integration, now);

    if (node) {
        if (node->held_until <= now) {
            node->quota = 0;            /* that hold is over */
        }

        if (until > node->held_until) {
            node->held_until = until;
        }

        if (quota) {
            node->quota = 1;
        }

        ctx->sh->rate.holds++;
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    if (node == NULL) {
        ngx_gdrive_rate_full();
        return;
    }

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                   "gdrive rate \"%V\": held for %M ms%s", integration, ms,
                   quota ? " (quota)" : "");
}


/*
 * The entries' strings point into the array's own memory, allocated
 * before the lock is taken: under it, only copying.
 */

ngx_int_t
ngx_gdrive_rate_snapshot(ngx_pool_t *pool, ngx_uint_t max,
    ngx_gdrive_rate_snapshot_t *snap)
{
    u_char                       *keys, *p;
    uint64_t                      now, wait;
    ngx_uint_t                    n;
    ngx_queue_t                  *q;
    ngx_gdrive_shm_ctx_t         *ctx;
    ngx_gdrive_rate_zone_t       *rz;
    ngx_gdrive_rate_node_t       *node;
    ngx_gdrive_rate_entry_t      *e;
    ngx_http_gdrive_main_conf_t  *gmcf;

    ngx_memzero(snap, sizeof(ngx_gdrive_rate_snapshot_t));

    if (max > NGX_GDRIVE_RATE_SNAPSHOT_MAX) {
        max = NGX_GDRIVE_RATE_SNAPSHOT_MAX;
    }

    snap->entries = ngx_array_create(pool, max + 1,
                                     sizeof(ngx_gdrive_rate_entry_t));
    if (snap->entries == NULL) {
        return NGX_ERROR;
    }

    keys = ngx_pnalloc(pool, max * NGX_GDRIVE_ID_MAX_LEN + 1);
    if (keys == NULL) {
        return NGX_ERROR;
    }

    gmcf = ngx_gdrive_worker.gmcf;

    if (gmcf == NULL || gmcf->shm_zone == NULL) {
        return NGX_OK;
    }

    ctx = ngx_gdrive_shm_ctx(gmcf);
    rz = &ctx->sh->rate;
    now = ngx_gdrive_shm_now();
    p = keys;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    /* the array holds max + 1 entries: no push below allocates */

    e = ngx_array_push(snap->entries);
    ngx_memzero(e, sizeof(ngx_gdrive_rate_entry_t));

    e->use = ngx_gdrive_bucket_use(&rz->global, now, gmcf->global_rate,
                                   gmcf->global_burst);
    e->wait = ngx_gdrive_bucket_wait(&rz->global, now, gmcf->global_rate,
                                     gmcf->global_burst);

    n = 0;

    for (q = ngx_queue_head(&rz->lru);
         q != ngx_queue_sentinel(&rz->lru) && n < max;
         q = ngx_queue_next(q), n++)
    {
        node = ngx_queue_data(q, ngx_gdrive_rate_node_t, queue);

        e = ngx_array_push(snap->entries);

        e->integration.data = p;
        e->integration.len = node->sn.str.len;
        p = ngx_cpymem(p, node->sn.str.data, node->sn.str.len);

        wait = ngx_gdrive_bucket_wait(&node->bucket, now, gmcf->rate,
                                      gmcf->burst);

        if (node->held_until > now) {
            e->held_until = node->held_until;
            e->quota = node->quota;
            wait = ngx_max(wait, node->held_until - now);

        } else {
            e->held_until = 0;
            e->quota = 0;
        }

        e->wait = wait;
        e->use = wait ? 100 : ngx_gdrive_bucket_use(&node->bucket, now,
                                                    gmcf->rate, gmcf->burst);
    }

    snap->buckets = rz->buckets;
    snap->passed = rz->passed;
    snap->waited = rz->waited;
    snap->holds = rz->holds;
    snap->evictions = rz->evictions;
    snap->unlimited = rz->unlimited;

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    return NGX_OK;
}


/*
 * Under the zone's mutex.  Finds or makes the integration's bucket; a
 * full table or zone evicts least recently used buckets, and if even that
 * finds no room, NULL: the caller lets the request pass.
 */

static ngx_gdrive_rate_node_t *
ngx_gdrive_rate_node(ngx_gdrive_shm_ctx_t *ctx, ngx_str_t *key, uint64_t now)
{
    size_t                   size;
    uint32_t                 hash;
    ngx_uint_t               i;
    ngx_str_node_t          *sn;
    ngx_gdrive_rate_zone_t  *rz;
    ngx_gdrive_rate_node_t  *node;

    if (key->len == 0 || key->len > NGX_GDRIVE_ID_MAX_LEN) {
        return NULL;
    }

    rz = &ctx->sh->rate;
    hash = ngx_crc32_short(key->data, key->len);

    sn = ngx_str_rbtree_lookup(&rz->rbtree, key, hash);

    if (sn) {
        node = (ngx_gdrive_rate_node_t *) sn;
        ngx_queue_remove(&node->queue);
        ngx_queue_insert_head(&rz->lru, &node->queue);
        return node;
    }

    ngx_gdrive_rate_expire(ctx, now, rz->buckets >= rz->max_buckets);

    if (rz->buckets >= rz->max_buckets) {
        /* every bucket looked at is held: the newcomer waits */
        return NULL;
    }

    size = offsetof(ngx_gdrive_rate_node_t, key) + key->len;

    for (i = 0; /* void */ ; i++) {
        node = ngx_slab_calloc_locked(ctx->shpool, size);

        if (node || i == 3 || ngx_queue_empty(&rz->lru)) {
            break;
        }

        ngx_gdrive_rate_expire(ctx, now, 1);
    }

    if (node == NULL) {
        return NULL;
    }

    ngx_memcpy(node->key, key->data, key->len);
    node->sn.str.data = node->key;
    node->sn.str.len = key->len;
    node->sn.node.key = hash;

    ngx_rbtree_insert(&rz->rbtree, &node->sn.node);
    ngx_queue_insert_head(&rz->lru, &node->queue);
    rz->buckets++;

    return node;
}


/*
 * Under the zone's mutex.  Removes up to two buckets from the LRU end
 * that are drained, idle and not held (they mean nothing); with force,
 * first the least recently used bucket that holds nothing, looked for
 * among the NGX_GDRIVE_RATE_SCAN oldest (an eviction).  A held bucket, a
 * Retry-After or an open quota circuit, is never evicted.
 */

static void
ngx_gdrive_rate_expire(ngx_gdrive_shm_ctx_t *ctx, uint64_t now,
    ngx_uint_t force)
{
    ngx_uint_t               n;
    ngx_queue_t             *q;
    ngx_gdrive_rate_zone_t  *rz;
    ngx_gdrive_rate_node_t  *node;

    rz = &ctx->sh->rate;

    if (force) {
        n = 0;

        for (q = ngx_queue_last(&rz->lru);
             q != ngx_queue_sentinel(&rz->lru) && n < NGX_GDRIVE_RATE_SCAN;
             q = ngx_queue_prev(q), n++)
        {
            node = ngx_queue_data(q, ngx_gdrive_rate_node_t, queue);

            if (node->held_until <= now) {
                rz->evictions++;
                ngx_gdrive_rate_drop(ctx, node);
                break;
            }
        }
    }

    for (n = 0; n < 2; n++) {

        if (ngx_queue_empty(&rz->lru)) {
            return;
        }

        q = ngx_queue_last(&rz->lru);
        node = ngx_queue_data(q, ngx_gdrive_rate_node_t, queue);

        if (node->held_until > now
            || now < node->bucket.last + NGX_GDRIVE_RATE_IDLE
            || ngx_gdrive_bucket_level(&node->bucket, now,
                                       ngx_gdrive_worker.gmcf->rate))
        {
            return;
        }

        rz->expired++;
        ngx_gdrive_rate_drop(ctx, node);
    }
}


static void
ngx_gdrive_rate_drop(ngx_gdrive_shm_ctx_t *ctx, ngx_gdrive_rate_node_t *node)
{
    ngx_queue_remove(&node->queue);
    ngx_rbtree_delete(&ctx->sh->rate.rbtree, &node->sn.node);
    ngx_slab_free_locked(ctx->shpool, node);
    ctx->sh->rate.buckets--;
}


static void
ngx_gdrive_rate_full(void)
{
    /* once per process: a full zone would say it on every request */

    if (ngx_gdrive_rate_nomem_logged) {
        return;
    }

    ngx_gdrive_rate_nomem_logged = 1;

    ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                  "gdrive: no room for a rate limit bucket in the shared "
                  "zone, and the buckets there hold Retry-After waits or "
                  "open quota circuits: new integrations wait for room; "
                  "make \"gdrive_zone\" larger");
}


/* what the slab takes for a bucket with the longest key */

static size_t
ngx_gdrive_rate_cost(void)
{
    size_t  size, cost;

    size = offsetof(ngx_gdrive_rate_node_t, key) + NGX_GDRIVE_ID_MAX_LEN;

    for (cost = 8; cost < size; cost <<= 1) { /* void */ }

    return cost;
}
