
/*
 * nginx-gdrive-worker: the Drive metadata cache.
 *
 * A shared table: files.get answers kept in the shared zone for
 * gdrive_metadata_cache's ttl, keyed by integration and file id, so that
 * any worker's job for a file spares the metadata call while it is fresh.
 * rbtree + LRU queue as limit_req keeps them; the least recently used
 * entry goes when the cache has its number of entries, when it holds half
 * of the zone (the token cache and the rest need the other half), or when
 * the slab has no room.  A full cache costs a metadata call, never a job.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_gdrive.h"


/* evictions one put() may make: a smaller limit after a reload converges */
#define NGX_GDRIVE_CACHE_EVICT_MAX  64


typedef struct {
    ngx_str_node_t           sn;
    ngx_queue_t              queue;
    uint64_t                 expires;        /* epoch ms */
    size_t                   cost;           /* slab bytes */
    size_t                   len;            /* of the value */
    u_char                   data[1];        /* the key, then the value */
} ngx_gdrive_cache_node_t;


static ngx_int_t ngx_gdrive_cache_key(ngx_str_t *integration,
    ngx_str_t *file_id, u_char *buf, ngx_str_t *key);
static ngx_gdrive_shm_ctx_t *ngx_gdrive_cache_ctx(void);
static void ngx_gdrive_cache_delete(ngx_gdrive_shm_ctx_t *ctx,
    ngx_gdrive_cache_node_t *node);
static ngx_int_t ngx_gdrive_cache_evict(ngx_gdrive_shm_ctx_t *ctx);
static size_t ngx_gdrive_cache_cost(size_t size);


/* a length byte keeps "ab" + "c" apart from "a" + "bc" */
#define NGX_GDRIVE_CACHE_KEY_MAX                                              \
    (1 + NGX_GDRIVE_ID_MAX_LEN + NGX_GDRIVE_DRIVE_ID_MAX_LEN)


void
ngx_gdrive_cache_init_zone(ngx_gdrive_shm_ctx_t *ctx)
{
    ngx_gdrive_meta_cache_t  *mc;

    mc = &ctx->sh->meta;

    ngx_rbtree_init(&mc->rbtree, &mc->sentinel, ngx_str_rbtree_insert_value);
    ngx_queue_init(&mc->lru);

    mc->max_bytes = (ctx->shpool->end - (u_char *) ctx->shpool) / 2;
}


ngx_int_t
ngx_gdrive_cache_get(ngx_str_t *integration, ngx_str_t *file_id,
    ngx_pool_t *pool, ngx_str_t *value)
{
    u_char                    buf[NGX_GDRIVE_CACHE_KEY_MAX];
    uint32_t                  hash;
    ngx_int_t                 rc;
    ngx_str_t                 key;
    ngx_str_node_t           *sn;
    ngx_gdrive_shm_ctx_t     *ctx;
    ngx_gdrive_meta_cache_t  *mc;
    ngx_gdrive_cache_node_t  *node;

    value->len = 0;
    value->data = NULL;

    ctx = ngx_gdrive_cache_ctx();

    if (ctx == NULL
        || ngx_gdrive_cache_key(integration, file_id, buf, &key) != NGX_OK)
    {
        return NGX_DECLINED;
    }

    mc = &ctx->sh->meta;
    hash = ngx_crc32_short(key.data, key.len);
    rc = NGX_DECLINED;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    sn = ngx_str_rbtree_lookup(&mc->rbtree, &key, hash);
    node = (ngx_gdrive_cache_node_t *) sn;

    if (node && node->expires <= ngx_gdrive_shm_now()) {
        ngx_gdrive_cache_delete(ctx, node);
        node = NULL;
    }

    if (node) {
        /* memory only, no I/O: the copy is made under the lock */

        value->data = ngx_pnalloc(pool, node->len ? node->len : 1);

        if (value->data) {
            value->len = node->len;
            ngx_memcpy(value->data, node->data + key.len, node->len);

            ngx_queue_remove(&node->queue);
            ngx_queue_insert_head(&mc->lru, &node->queue);

            rc = NGX_OK;
        }
    }

    if (rc == NGX_OK) {
        mc->hits++;

    } else {
        mc->misses++;
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                   "gdrive metadata cache \"%V\" \"%V\": %s", integration,
                   file_id, rc == NGX_OK ? "hit" : "miss");

    return rc;
}


void
ngx_gdrive_cache_put(ngx_str_t *integration, ngx_str_t *file_id,
    u_char *value, size_t len)
{
    u_char                        buf[NGX_GDRIVE_CACHE_KEY_MAX];
    size_t                        size, cost;
    uint32_t                      hash;
    uint64_t                      now;
    ngx_uint_t                    n;
    ngx_str_t                     key;
    ngx_str_node_t               *sn;
    ngx_gdrive_shm_ctx_t         *ctx;
    ngx_gdrive_meta_cache_t      *mc;
    ngx_gdrive_cache_node_t      *node;
    ngx_http_gdrive_main_conf_t  *gmcf;

    ctx = ngx_gdrive_cache_ctx();

    if (ctx == NULL || len > NGX_GDRIVE_CACHE_MAX_VALUE
        || ngx_gdrive_cache_key(integration, file_id, buf, &key) != NGX_OK)
    {
        return;
    }

    gmcf = ngx_gdrive_worker.gmcf;
    mc = &ctx->sh->meta;
    hash = ngx_crc32_short(key.data, key.len);
    now = ngx_gdrive_shm_now();

    size = offsetof(ngx_gdrive_cache_node_t, data) + key.len + len;
    cost = ngx_gdrive_cache_cost(size);

    if (cost > mc->max_bytes) {
        return;
    }

    ngx_shmtx_lock(&ctx->shpool->mutex);

    sn = ngx_str_rbtree_lookup(&mc->rbtree, &key, hash);

    if (sn) {
        /* replaced, not evicted */
        ngx_gdrive_cache_delete(ctx, (ngx_gdrive_cache_node_t *) sn);
    }

    /* up to two expired entries at the LRU end go first, as limit_req */

    for (n = 0; n < 2 && !ngx_queue_empty(&mc->lru); n++) {
        node = ngx_queue_data(ngx_queue_last(&mc->lru),
                              ngx_gdrive_cache_node_t, queue);

        if (node->expires > now) {
            break;
        }

        ngx_gdrive_cache_delete(ctx, node);
    }

    /* then room by number and by bytes */

    n = 0;

    while ((mc->entries >= gmcf->metadata_cache_entries
            || mc->bytes + cost > mc->max_bytes)
           && n++ < NGX_GDRIVE_CACHE_EVICT_MAX)
    {
        if (ngx_gdrive_cache_evict(ctx) != NGX_OK) {
            break;
        }
    }

    node = NULL;

    if (mc->entries < gmcf->metadata_cache_entries
        && mc->bytes + cost <= mc->max_bytes)
    {
        /* then room in the slab, which the other tables share */

        for (n = 0; n < NGX_GDRIVE_CACHE_EVICT_MAX; n++) {
            node = ngx_slab_alloc_locked(ctx->shpool, size);

            if (node || ngx_gdrive_cache_evict(ctx) != NGX_OK) {
                break;
            }
        }
    }

    if (node) {
        ngx_memcpy(node->data, key.data, key.len);
        ngx_memcpy(node->data + key.len, value, len);

        node->sn.str.data = node->data;
        node->sn.str.len = key.len;
        node->sn.node.key = hash;
        node->expires = now + (uint64_t) gmcf->metadata_cache_ttl * 1000;
        node->cost = cost;
        node->len = len;

        ngx_rbtree_insert(&mc->rbtree, &node->sn.node);
        ngx_queue_insert_head(&mc->lru, &node->queue);

        mc->entries++;
        mc->bytes += cost;
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    ngx_log_debug4(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                   "gdrive metadata cache \"%V\" \"%V\": %uz bytes %s",
                   integration, file_id, len,
                   node ? "stored" : "not stored, no room");
}


void
ngx_gdrive_cache_stats(ngx_uint_t *entries, ngx_uint_t *hits,
    ngx_uint_t *misses, ngx_uint_t *evictions)
{
    ngx_gdrive_meta_cache_t      *mc;
    ngx_http_gdrive_main_conf_t  *gmcf;

    gmcf = ngx_gdrive_worker.gmcf;

    if (gmcf == NULL || gmcf->shm_zone == NULL) {
        *entries = 0;
        *hits = 0;
        *misses = 0;
        *evictions = 0;
        return;
    }

    /* words read without the lock: each is right, together nearly so */

    mc = &ngx_gdrive_shm(gmcf)->meta;

    *entries = mc->entries;
    *hits = mc->hits;
    *misses = mc->misses;
    *evictions = mc->evictions;
}


static ngx_gdrive_shm_ctx_t *
ngx_gdrive_cache_ctx(void)
{
    ngx_http_gdrive_main_conf_t  *gmcf;

    gmcf = ngx_gdrive_worker.gmcf;

    if (gmcf == NULL || gmcf->shm_zone == NULL
        || gmcf->metadata_cache_entries == 0)
    {
        return NULL;
    }

    return ngx_gdrive_shm_ctx(gmcf);
}


static ngx_int_t
ngx_gdrive_cache_key(ngx_str_t *integration, ngx_str_t *file_id, u_char *buf,
    ngx_str_t *key)
{
    u_char  *p;

    if (integration->len == 0 || integration->len > NGX_GDRIVE_ID_MAX_LEN
        || file_id->len == 0 || file_id->len > NGX_GDRIVE_DRIVE_ID_MAX_LEN)
    {
        return NGX_DECLINED;
    }

    p = buf;
    *p++ = (u_char) integration->len;
    p = ngx_cpymem(p, integration->data, integration->len);
    p = ngx_cpymem(p, file_id->data, file_id->len);

    key->data = buf;
    key->len = p - buf;

    return NGX_OK;
}


/* under the zone's mutex */

static void
ngx_gdrive_cache_delete(ngx_gdrive_shm_ctx_t *ctx,
    ngx_gdrive_cache_node_t *node)
{
    ngx_gdrive_meta_cache_t  *mc;

    mc = &ctx->sh->meta;

    ngx_queue_remove(&node->queue);
    ngx_rbtree_delete(&mc->rbtree, &node->sn.node);

    mc->entries--;
    mc->bytes -= node->cost;

    ngx_slab_free_locked(ctx->shpool, node);
}


/* under the zone's mutex: the least recently used entry goes */

static ngx_int_t
ngx_gdrive_cache_evict(ngx_gdrive_shm_ctx_t *ctx)
{
    ngx_gdrive_meta_cache_t  *mc;

    mc = &ctx->sh->meta;

    if (ngx_queue_empty(&mc->lru)) {
        return NGX_DECLINED;
    }

    ngx_gdrive_cache_delete(ctx, ngx_queue_data(ngx_queue_last(&mc->lru),
                                                ngx_gdrive_cache_node_t,
                                                queue));
    mc->evictions++;
    ngx_gdrive_metric_cache("metadata", "eviction");

    return NGX_OK;
}


/* what the slab takes for size bytes: a power of two, or whole pages */

static size_t
ngx_gdrive_cache_cost(size_t size)
{
    size_t  cost;

    if (size > ngx_pagesize / 2) {
        return ngx_align(size, ngx_pagesize);
    }

    for (cost = 8; cost < size; cost <<= 1) { /* void */ }

    return cost;
}
