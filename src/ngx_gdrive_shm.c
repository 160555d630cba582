
/*
 * nginx-gdrive-worker: the shared zone.
 *
 * Infrastructure: creates the slab-allocated zone that all workers share
 * (token cache, metadata cache, rate limiters, metrics, status) and keeps
 * it across reloads, as limit_req does; the keyed table that the token
 * cache, the rate limiters and the metadata cache are made of; the
 * zone's clock.  It knows nothing of the tables' users.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_gdrive.h"


/* evictions one insert may make: a smaller limit after a reload converges */
#define NGX_GDRIVE_SHM_EVICT_MAX   64


static void ngx_gdrive_shm_ready(ngx_gdrive_shm_table_t *t);
static ngx_uint_t ngx_gdrive_shm_full(ngx_gdrive_shm_keyed_t *k,
    size_t cost);
static ngx_uint_t ngx_gdrive_shm_expire(ngx_gdrive_shm_keyed_t *k,
    uint64_t now, ngx_uint_t n);
static ngx_int_t ngx_gdrive_shm_evict(ngx_gdrive_shm_keyed_t *k,
    uint64_t now);
static void ngx_gdrive_shm_gone(ngx_gdrive_shm_keyed_t *k,
    ngx_gdrive_shm_node_t *node, ngx_uint_t cause);


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

    /* the keyed tables in it are zeroed: empty, set up on first use */

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
ngx_gdrive_epoch_ms(void)
{
    ngx_time_t  *tp;

    tp = ngx_timeofday();

    return (uint64_t) tp->sec * 1000 + tp->msec;
}


/* a zeroed table, as the zone's calloc leaves it, is set up on first use */

static void
ngx_gdrive_shm_ready(ngx_gdrive_shm_table_t *t)
{
    if (t->rbtree.root == NULL) {
        ngx_rbtree_init(&t->rbtree, &t->sentinel,
                        ngx_str_rbtree_insert_value);
        ngx_queue_init(&t->lru);
    }
}


ngx_gdrive_shm_node_t *
ngx_gdrive_shm_lookup(ngx_gdrive_shm_keyed_t *k, ngx_str_t *key)
{
    uint32_t  hash;

    ngx_gdrive_shm_ready(k->table);

    hash = ngx_crc32_short(key->data, key->len);

    return (ngx_gdrive_shm_node_t *) ngx_str_rbtree_lookup(&k->table->rbtree,
                                                           key, hash);
}


/*
 * Makes a zeroed entry of size bytes followed by the key, at the head of
 * the LRU queue.  Room comes first from up to two expired entries at the
 * LRU end (as limit_req frees them), then from evictions while the
 * table's limits are reached, then, when the slab itself is full, from an
 * eviction and expired entries before each new try.  NULL: no room.
 */

ngx_gdrive_shm_node_t *
ngx_gdrive_shm_insert(ngx_gdrive_shm_keyed_t *k, ngx_str_t *key,
    size_t size, uint64_t now)
{
    size_t                   total, cost;
    ngx_uint_t               i, dropped;
    ngx_gdrive_shm_node_t   *node;
    ngx_gdrive_shm_table_t  *t;

    t = k->table;
    total = size + key->len;
    cost = ngx_gdrive_shm_cost(total);

    if (k->max_bytes && cost > k->max_bytes) {
        return NULL;
    }

    ngx_gdrive_shm_ready(t);

    (void) ngx_gdrive_shm_expire(k, now, 2);

    for (i = 0;
         ngx_gdrive_shm_full(k, cost) && i < NGX_GDRIVE_SHM_EVICT_MAX;
         i++)
    {
        if (ngx_gdrive_shm_evict(k, now) != NGX_OK) {
            break;
        }
    }

    if (ngx_gdrive_shm_full(k, cost)) {
        return NULL;
    }

    for (i = 1; /* void */ ; i++) {
        node = ngx_slab_calloc_locked(k->shpool, total);

        if (node || i >= k->tries) {
            break;
        }

        /* the slab is shared with the zone's other tables */

        dropped = (ngx_gdrive_shm_evict(k, now) == NGX_OK);
        dropped += ngx_gdrive_shm_expire(k, now, 2);

        if (dropped == 0) {
            break;
        }
    }

    if (node == NULL) {
        return NULL;
    }

    node->sn.str.data = (u_char *) node + size;
    node->sn.str.len = key->len;
    node->sn.node.key = ngx_crc32_short(key->data, key->len);
    node->cost = cost;
    ngx_memcpy(node->sn.str.data, key->data, key->len);

    ngx_rbtree_insert(&t->rbtree, &node->sn.node);
    ngx_queue_insert_head(&t->lru, &node->queue);

    t->nodes++;
    t->bytes += cost;

    return node;
}


void
ngx_gdrive_shm_touch(ngx_gdrive_shm_keyed_t *k, ngx_gdrive_shm_node_t *node)
{
    ngx_queue_remove(&node->queue);
    ngx_queue_insert_head(&k->table->lru, &node->queue);
}


/* an entry goes without being counted as expired or evicted */

void
ngx_gdrive_shm_delete(ngx_gdrive_shm_keyed_t *k, ngx_gdrive_shm_node_t *node)
{
    ngx_gdrive_shm_table_t  *t;

    t = k->table;

    ngx_queue_remove(&node->queue);
    ngx_rbtree_delete(&t->rbtree, &node->sn.node);

    t->nodes--;
    t->bytes -= node->cost;

    ngx_slab_free_locked(k->shpool, node);
}


ngx_gdrive_shm_node_t *
ngx_gdrive_shm_newest(ngx_gdrive_shm_keyed_t *k)
{
    ngx_gdrive_shm_ready(k->table);

    if (ngx_queue_empty(&k->table->lru)) {
        return NULL;
    }

    return ngx_queue_data(ngx_queue_head(&k->table->lru),
                          ngx_gdrive_shm_node_t, queue);
}


ngx_gdrive_shm_node_t *
ngx_gdrive_shm_older(ngx_gdrive_shm_keyed_t *k, ngx_gdrive_shm_node_t *node)
{
    ngx_queue_t  *q;

    q = ngx_queue_next(&node->queue);

    if (q == ngx_queue_sentinel(&k->table->lru)) {
        return NULL;
    }

    return ngx_queue_data(q, ngx_gdrive_shm_node_t, queue);
}


/* outside the lock; once per process: a full zone would say it often */

void
ngx_gdrive_shm_table_nomem(ngx_gdrive_shm_keyed_t *k)
{
    if (k->nomem == NULL || k->nomem_logged) {
        return;
    }

    k->nomem_logged = 1;

    ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0, "%s", k->nomem);
}


/* what the slab takes for size bytes: a power of two, or whole pages */

size_t
ngx_gdrive_shm_cost(size_t size)
{
    size_t  cost;

    if (size > ngx_pagesize / 2) {
        return ngx_align(size, ngx_pagesize);
    }

    for (cost = 8; cost < size; cost <<= 1) { /* void */ }

    return cost;
}


/* has the table reached its limits, for an entry of cost bytes? */

static ngx_uint_t
ngx_gdrive_shm_full(ngx_gdrive_shm_keyed_t *k, size_t cost)
{
    ngx_gdrive_shm_table_t  *t;

    t = k->table;

    return (k->max_nodes && t->nodes >= k->max_nodes)
           || (k->max_bytes && t->bytes + cost > k->max_bytes);
}


/* drops up to n expired entries at the LRU end; says how many went */

static ngx_uint_t
ngx_gdrive_shm_expire(ngx_gdrive_shm_keyed_t *k, uint64_t now, ngx_uint_t n)
{
    ngx_uint_t              dropped;
    ngx_gdrive_shm_node_t  *node;

    if (k->expired == NULL) {
        return 0;
    }

    for (dropped = 0; dropped < n; dropped++) {

        if (ngx_queue_empty(&k->table->lru)) {
            break;
        }

        node = ngx_queue_data(ngx_queue_last(&k->table->lru),
                              ngx_gdrive_shm_node_t, queue);

        if (!k->expired(node, now)) {
            break;
        }

        ngx_gdrive_shm_gone(k, node, NGX_GDRIVE_SHM_EXPIRED);
    }

    return dropped;
}


/*
 * The least recently used entry that may go, looked for among the scan
 * oldest, is evicted.  NGX_DECLINED: none may.
 */

static ngx_int_t
ngx_gdrive_shm_evict(ngx_gdrive_shm_keyed_t *k, uint64_t now)
{
    ngx_uint_t              n;
    ngx_queue_t            *q;
    ngx_gdrive_shm_node_t  *node;

    n = 0;

    for (q = ngx_queue_last(&k->table->lru);
         q != ngx_queue_sentinel(&k->table->lru)
         && (k->scan == 0 || n < k->scan);
         q = ngx_queue_prev(q), n++)
    {
        node = ngx_queue_data(q, ngx_gdrive_shm_node_t, queue);

        if (k->evictable == NULL || k->evictable(node, now)) {
            ngx_gdrive_shm_gone(k, node, NGX_GDRIVE_SHM_EVICTED);
            return NGX_OK;
        }
    }

    return NGX_DECLINED;
}


static void
ngx_gdrive_shm_gone(ngx_gdrive_shm_keyed_t *k, ngx_gdrive_shm_node_t *node,
    ngx_uint_t cause)
{
    if (k->gone) {
        k->gone(node, cause);
    }

    ngx_gdrive_shm_delete(k, node);
}
