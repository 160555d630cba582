
/*
 * nginx-gdrive-worker: the Drive metadata cache.
 *
 * A shared table: files.get answers kept in the shared zone for
 * gdrive_metadata_cache's ttl, keyed by integration and file id, so that
 * any worker's job for a file spares the metadata call while it is fresh.
 * One of the zone's keyed tables (ngx_gdrive_shm.c); the least recently
 * used entry goes when the cache has its number of entries, when it holds
 * half of the zone (the token cache and the rest need the other half), or
 * when the slab has no room.  A full cache costs a metadata call, never a
 * job.
 *
 * The same table keeps, under keys of their own, what this zone's workers
 * stored in S3: "file -> object key and size", written when an upload
 * completes or a HEAD finds the object, so that a sync of the same
 * revision spares the HEAD while the record is fresh (README, "What a
 * sync guarantees", says what that bounds).
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_gdrive.h"
#include "ngx_gdrive_cache.h"
#include "ngx_gdrive_metrics.h"


typedef struct {
    ngx_gdrive_shm_node_t    node;           /* integration and file id */
    uint64_t                 expires;        /* epoch ms */
    size_t                   len;            /* of the value */
    u_char                   data[1];        /* the value, then the key */
} ngx_gdrive_cache_node_t;


/* what a process knows of the cache: set by ngx_gdrive_cache_init() only */
typedef struct {
    ngx_http_gdrive_main_conf_t  *gmcf;
    ngx_gdrive_meta_cache_t      *mc;       /* NULL: no zone */
    ngx_slab_pool_t              *shpool;
    ngx_gdrive_shm_keyed_t        entries;
} ngx_gdrive_cache_t;


static ngx_int_t ngx_gdrive_cache_key(ngx_uint_t stored,
    ngx_str_t *integration, ngx_str_t *file_id, u_char *buf, ngx_str_t *key);
static void ngx_gdrive_cache_store(ngx_str_t *key, u_char *value,
    size_t len, u_char *more, size_t more_len);
static ngx_uint_t ngx_gdrive_cache_on(void);
static ngx_uint_t ngx_gdrive_cache_expired(ngx_gdrive_shm_node_t *node,
    uint64_t now);
static void ngx_gdrive_cache_gone(ngx_gdrive_shm_node_t *node,
    ngx_uint_t cause);


/*
 * A length byte keeps "ab" + "c" apart from "a" + "bc"; a stored object's
 * record has a zero byte first (a length is never zero).
 */
#define NGX_GDRIVE_CACHE_KEY_MAX                                              \
    (2 + NGX_GDRIVE_ID_MAX_LEN + NGX_GDRIVE_DRIVE_ID_MAX_LEN)


static ngx_gdrive_cache_t  ngx_gdrive_cache;


void
ngx_gdrive_cache_init(ngx_http_gdrive_main_conf_t *gmcf)
{
    ngx_gdrive_shm_ctx_t    *ctx;
    ngx_gdrive_shm_keyed_t  *k;

    ngx_gdrive_cache.gmcf = gmcf;

    if (gmcf->shm_zone == NULL) {
        return;
    }

    ctx = ngx_gdrive_shm_ctx(gmcf);

    ngx_gdrive_cache.mc = &ctx->sh->meta;
    ngx_gdrive_cache.shpool = ctx->shpool;

    k = &ngx_gdrive_cache.entries;

    k->table = &ctx->sh->meta.table;
    k->shpool = ctx->shpool;
    k->max_nodes = gmcf->metadata_cache_entries;
    k->max_bytes = (ctx->shpool->end - (u_char *) ctx->shpool) / 2;
    k->scan = 1;
    k->tries = 64;
    k->expired = ngx_gdrive_cache_expired;
    k->gone = ngx_gdrive_cache_gone;
}


ngx_int_t
ngx_gdrive_cache_get(ngx_str_t *integration, ngx_str_t *file_id,
    ngx_pool_t *pool, ngx_str_t *value)
{
    u_char                    buf[NGX_GDRIVE_CACHE_KEY_MAX];
    ngx_int_t                 rc;
    ngx_str_t                 key;
    ngx_gdrive_meta_cache_t  *mc;
    ngx_gdrive_cache_node_t  *node;

    value->len = 0;
    value->data = NULL;

    if (!ngx_gdrive_cache_on()
        || ngx_gdrive_cache_key(0, integration, file_id, buf, &key) != NGX_OK)
    {
        return NGX_DECLINED;
    }

    mc = ngx_gdrive_cache.mc;
    rc = NGX_DECLINED;

    ngx_shmtx_lock(&ngx_gdrive_cache.shpool->mutex);

    node = (ngx_gdrive_cache_node_t *)
               ngx_gdrive_shm_lookup(&ngx_gdrive_cache.entries, &key);

    if (node && node->expires <= ngx_gdrive_epoch_ms()) {
        ngx_gdrive_shm_delete(&ngx_gdrive_cache.entries, &node->node);
        node = NULL;
    }

    if (node) {
        /* memory only, no I/O: the copy is made under the lock */

        value->data = ngx_pnalloc(pool, node->len ? node->len : 1);

        if (value->data) {
            value->len = node->len;
            ngx_memcpy(value->data, node->data, node->len);

            ngx_gdrive_shm_touch(&ngx_gdrive_cache.entries, &node->node);

            rc = NGX_OK;
        }
    }

    if (rc == NGX_OK) {
        mc->hits++;

    } else {
        mc->misses++;
    }

    ngx_shmtx_unlock(&ngx_gdrive_cache.shpool->mutex);

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                   "gdrive metadata cache \"%V\" \"%V\": %s", integration,
                   file_id, rc == NGX_OK ? "hit" : "miss");

    return rc;
}


void
ngx_gdrive_cache_put(ngx_str_t *integration, ngx_str_t *file_id,
    u_char *value, size_t len)
{
    u_char     buf[NGX_GDRIVE_CACHE_KEY_MAX];
    ngx_str_t  key;

    if (!ngx_gdrive_cache_on() || len > NGX_GDRIVE_CACHE_MAX_VALUE
        || ngx_gdrive_cache_key(0, integration, file_id, buf, &key)
           != NGX_OK)
    {
        return;
    }

    ngx_gdrive_cache_store(&key, value, len, NULL, 0);

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                   "gdrive metadata cache \"%V\" \"%V\": %uz bytes",
                   integration, file_id, len);
}


/* the record of an object stored: its size, then its key */

void
ngx_gdrive_cache_stored_put(ngx_str_t *integration, ngx_str_t *file_id,
    ngx_str_t *object, off_t size)
{
    u_char     buf[NGX_GDRIVE_CACHE_KEY_MAX];
    ngx_str_t  key;

    if (!ngx_gdrive_cache_on() || size < 0
        || object->len > NGX_GDRIVE_CACHE_MAX_VALUE
        || ngx_gdrive_cache_key(1, integration, file_id, buf, &key)
           != NGX_OK)
    {
        return;
    }

    ngx_gdrive_cache_store(&key, (u_char *) &size, sizeof(off_t),
                           object->data, object->len);
}


/*
 * NGX_OK: a fresh record says that the object at this key was stored with
 * this size (any, for size -1), which it sets in *stored_size.  Neither
 * a hit nor a miss of the metadata cache.
 */

ngx_int_t
ngx_gdrive_cache_stored(ngx_str_t *integration, ngx_str_t *file_id,
    ngx_str_t *object, off_t size, off_t *stored_size)
{
    u_char                    buf[NGX_GDRIVE_CACHE_KEY_MAX];
    off_t                     n;
    ngx_int_t                 rc;
    ngx_str_t                 key;
    ngx_gdrive_cache_node_t  *node;

    if (!ngx_gdrive_cache_on()
        || ngx_gdrive_cache_key(1, integration, file_id, buf, &key) != NGX_OK)
    {
        return NGX_DECLINED;
    }

    rc = NGX_DECLINED;

    ngx_shmtx_lock(&ngx_gdrive_cache.shpool->mutex);

    node = (ngx_gdrive_cache_node_t *)
               ngx_gdrive_shm_lookup(&ngx_gdrive_cache.entries, &key);

    if (node && node->expires > ngx_gdrive_epoch_ms()
        && node->len == sizeof(off_t) + object->len
        && ngx_memcmp(node->data + sizeof(off_t), object->data, object->len)
           == 0)
    {
        ngx_memcpy(&n, node->data, sizeof(off_t));

        if (size < 0 || n == size) {
            *stored_size = n;
            ngx_gdrive_shm_touch(&ngx_gdrive_cache.entries, &node->node);
            rc = NGX_OK;
        }
    }

    ngx_shmtx_unlock(&ngx_gdrive_cache.shpool->mutex);

    return rc;
}


/* the file's objects were deleted: what was stored is no longer known */

void
ngx_gdrive_cache_stored_forget(ngx_str_t *integration, ngx_str_t *file_id)
{
    u_char                  buf[NGX_GDRIVE_CACHE_KEY_MAX];
    ngx_str_t               key;
    ngx_gdrive_shm_node_t  *sn;

    if (!ngx_gdrive_cache_on()
        || ngx_gdrive_cache_key(1, integration, file_id, buf, &key) != NGX_OK)
    {
        return;
    }

    ngx_shmtx_lock(&ngx_gdrive_cache.shpool->mutex);

    sn = ngx_gdrive_shm_lookup(&ngx_gdrive_cache.entries, &key);

    if (sn) {
        ngx_gdrive_shm_delete(&ngx_gdrive_cache.entries, sn);
    }

    ngx_shmtx_unlock(&ngx_gdrive_cache.shpool->mutex);
}


/* stores or replaces the value (two pieces) at the key */

static void
ngx_gdrive_cache_store(ngx_str_t *key, u_char *value, size_t len,
    u_char *more, size_t more_len)
{
    uint64_t                  now;
    ngx_gdrive_shm_node_t    *sn;
    ngx_gdrive_cache_node_t  *node;

    now = ngx_gdrive_epoch_ms();

    ngx_shmtx_lock(&ngx_gdrive_cache.shpool->mutex);

    sn = ngx_gdrive_shm_lookup(&ngx_gdrive_cache.entries, key);

    if (sn) {
        /* replaced, not evicted */
        ngx_gdrive_shm_delete(&ngx_gdrive_cache.entries, sn);
    }

    /*
     * Up to two expired entries at the LRU end go first, as limit_req;
     * then room by number and by bytes; then room in the slab, which the
     * other tables share.
     */

    node = (ngx_gdrive_cache_node_t *)
               ngx_gdrive_shm_insert(&ngx_gdrive_cache.entries, key,
                                     offsetof(ngx_gdrive_cache_node_t, data)
                                     + len + more_len, now);

    if (node) {
        ngx_memcpy(node->data, value, len);

        if (more_len) {
            ngx_memcpy(node->data + len, more, more_len);
        }

        node->expires = now + (uint64_t)
                              ngx_gdrive_cache.gmcf->metadata_cache_ttl * 1000;
        node->len = len + more_len;
    }

    ngx_shmtx_unlock(&ngx_gdrive_cache.shpool->mutex);
}


void
ngx_gdrive_cache_stats(ngx_uint_t *entries, ngx_uint_t *hits,
    ngx_uint_t *misses, ngx_uint_t *evictions)
{
    ngx_gdrive_meta_cache_t  *mc;

    mc = ngx_gdrive_cache.mc;

    if (mc == NULL) {
        *entries = 0;
        *hits = 0;
        *misses = 0;
        *evictions = 0;
        return;
    }

    /* words read without the lock: each is right, together nearly so */

    *entries = mc->table.nodes;
    *hits = mc->hits;
    *misses = mc->misses;
    *evictions = mc->evictions;
}


static ngx_uint_t
ngx_gdrive_cache_on(void)
{
    return ngx_gdrive_cache.mc != NULL
           && ngx_gdrive_cache.gmcf->metadata_cache_entries != 0;
}


static ngx_int_t
ngx_gdrive_cache_key(ngx_uint_t stored, ngx_str_t *integration,
    ngx_str_t *file_id, u_char *buf, ngx_str_t *key)
{
    u_char  *p;

    if (integration->len == 0 || integration->len > NGX_GDRIVE_ID_MAX_LEN
        || file_id->len == 0 || file_id->len > NGX_GDRIVE_DRIVE_ID_MAX_LEN)
    {
        return NGX_DECLINED;
    }

    p = buf;

    if (stored) {
        *p++ = '\0';
    }

    *p++ = (u_char) integration->len;
    p = ngx_cpymem(p, integration->data, integration->len);
    p = ngx_cpymem(p, file_id->data, file_id->len);

    key->data = buf;
    key->len = p - buf;

    return NGX_OK;
}


/* under the zone's mutex */

static ngx_uint_t
ngx_gdrive_cache_expired(ngx_gdrive_shm_node_t *sn, uint64_t now)
{
    return ((ngx_gdrive_cache_node_t *) sn)->expires <= now;
}


/* under the zone's mutex: only the least recently used are counted */

static void
ngx_gdrive_cache_gone(ngx_gdrive_shm_node_t *sn, ngx_uint_t cause)
{
    if (cause == NGX_GDRIVE_SHM_EVICTED) {
        ngx_gdrive_cache.mc->evictions++;
        ngx_gdrive_metric_cache("metadata", "eviction");
    }
}
