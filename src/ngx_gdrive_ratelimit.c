
/*
 * nginx-gdrive-worker: Drive API rate limits.
 *
 * A shared table: one token bucket per integration (gdrive_rate_limit)
 * and one for all of them (gdrive_global_rate_limit) in the shared zone,
 * so the limits hold across all workers; plus holds that keep an
 * integration's requests back until a time (Retry-After, the
 * quota_exhausted circuit).  Buckets live in one of the zone's keyed
 * tables (ngx_gdrive_shm.c), keyed by the integration; the arithmetic is
 * in ngx_gdrive_bucket.c.  Nothing here waits: a caller told to wait
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
#include "ngx_gdrive_metrics.h"
#include "ngx_gdrive_ratelimit.h"


/* a drained bucket idle this long is the same as none: removed */
#define NGX_GDRIVE_RATE_IDLE       60000
#define NGX_GDRIVE_RATE_SCAN       64      /* buckets looked at to evict */
#define NGX_GDRIVE_RATE_FULL_WAIT  1000    /* ms a newcomer waits for room */
#define NGX_GDRIVE_RATE_NO_SHARE   1000    /* ms to wait with no share */


typedef struct {
    ngx_gdrive_shm_node_t    node;            /* the integration's id */
    ngx_gdrive_bucket_t      bucket;
    uint64_t                 held_until;      /* epoch ms, 0: not held */
    ngx_uint_t               quota;           /* the hold is the circuit */
} ngx_gdrive_rate_node_t;


/* what a process knows of the limits: set by ngx_gdrive_rate_init() only */
typedef struct {
    ngx_http_gdrive_main_conf_t  *gmcf;
    ngx_gdrive_rate_zone_t       *rz;       /* NULL: nothing is limited */
    ngx_gdrive_sh_t              *sh;       /* the workers' slots */
    ngx_slab_pool_t              *shpool;
    ngx_gdrive_shm_keyed_t        buckets;
    uint64_t                      last_rate;   /* this worker's last share */
    uint64_t                      last_burst;
} ngx_gdrive_rate_t;


static void ngx_gdrive_rate_global(uint64_t *rate, uint64_t *burst);
static ngx_gdrive_rate_node_t *ngx_gdrive_rate_node(ngx_str_t *key,
    uint64_t now);
static ngx_uint_t ngx_gdrive_rate_expired(ngx_gdrive_shm_node_t *node,
    uint64_t now);
static ngx_uint_t ngx_gdrive_rate_evictable(ngx_gdrive_shm_node_t *node,
    uint64_t now);
static void ngx_gdrive_rate_gone(ngx_gdrive_shm_node_t *node,
    ngx_uint_t cause);


static ngx_gdrive_rate_t  ngx_gdrive_rate;


void
ngx_gdrive_rate_init(ngx_http_gdrive_main_conf_t *gmcf)
{
    ngx_gdrive_shm_ctx_t    *ctx;
    ngx_gdrive_shm_keyed_t  *k;

    ngx_gdrive_rate.gmcf = gmcf;

    if (gmcf->shm_zone == NULL) {
        return;
    }

    ctx = ngx_gdrive_shm_ctx(gmcf);

    ngx_gdrive_rate.rz = &ctx->sh->rate;
    ngx_gdrive_rate.sh = ctx->sh;
    ngx_gdrive_rate.shpool = ctx->shpool;

    k = &ngx_gdrive_rate.buckets;

    k->table = &ctx->sh->rate.table;
    k->shpool = ctx->shpool;

    /* many integrations must not crowd the token cache out of the zone */
    k->max_nodes = (ctx->shpool->end - (u_char *) ctx->shpool) / 4
                   / ngx_gdrive_shm_cost(sizeof(ngx_gdrive_rate_node_t)
                                         + NGX_GDRIVE_ID_MAX_LEN);

    k->scan = NGX_GDRIVE_RATE_SCAN;
    k->tries = 4;
    k->expired = ngx_gdrive_rate_expired;
    k->evictable = ngx_gdrive_rate_evictable;
    k->gone = ngx_gdrive_rate_gone;
    k->nomem = "gdrive: no room for a rate limit bucket in the shared "
               "zone, and the buckets there hold Retry-After waits or "
               "open quota circuits: new integrations wait for room; "
               "make \"gdrive_zone\" larger";
}


ngx_msec_t
ngx_gdrive_rate_take(ngx_str_t *integration, ngx_uint_t *global)
{
    uint64_t                      now, wait, w, gw, grate, gburst;
    ngx_gdrive_rate_zone_t       *rz;
    ngx_gdrive_rate_node_t       *node;
    ngx_http_gdrive_main_conf_t  *gmcf;

    gmcf = ngx_gdrive_rate.gmcf;
    rz = ngx_gdrive_rate.rz;

    if (rz == NULL) {
        return 0;
    }

    now = ngx_gdrive_epoch_ms();

    ngx_shmtx_lock(&ngx_gdrive_rate.shpool->mutex);

    node = ngx_gdrive_rate_node(integration, now);

    ngx_gdrive_rate_global(&grate, &gburst);

    /* no share of the fleet's rate: nothing passes until one is taken */
    wait = grate ? ngx_gdrive_bucket_wait(&rz->global, now, grate, gburst)
                 : NGX_GDRIVE_RATE_NO_SHARE;
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

        (void) ngx_gdrive_bucket_take(&rz->global, now, grate, gburst);

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

    ngx_shmtx_unlock(&ngx_gdrive_rate.shpool->mutex);

    /* which limit made the caller wait: the global one, or its own */
    *global = (wait && gw == wait);

    if (node == NULL && integration->len
        && integration->len <= NGX_GDRIVE_ID_MAX_LEN)
    {
        ngx_gdrive_shm_table_nomem(&ngx_gdrive_rate.buckets);
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
    uint64_t                 now, until;
    ngx_gdrive_rate_node_t  *node;

    if (ngx_gdrive_rate.rz == NULL || integration->len == 0
        || integration->len > NGX_GDRIVE_ID_MAX_LEN)
    {
        return;
    }

    now = ngx_gdrive_epoch_ms();
    until = now + ngx_min(ms, 86400000);

    ngx_shmtx_lock(&ngx_gdrive_rate.shpool->mutex);

    node = ngx_gdrive_rate_node(integration, now);

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

        ngx_gdrive_rate.rz->holds++;
    }

    ngx_shmtx_unlock(&ngx_gdrive_rate.shpool->mutex);

    if (node == NULL) {
        ngx_gdrive_shm_table_nomem(&ngx_gdrive_rate.buckets);
        return;
    }

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                   "gdrive rate \"%V\": held for %M ms%s", integration, ms,
                   quota ? " (quota)" : "");
}


/*
 * scope=fleet: this instance's share of the global rate is the part of
 * the trigger topic's partitions its live workers hold.  Each worker's
 * slot says how many it holds (0 once it ends, and a slot of a process
 * that is gone counts nothing) and how many the topic has; any worker
 * sums them after its rebalances and every second.  The liveness checks
 * are system calls: made before the lock; the sum is made under it, so
 * that a sum older than another worker's cannot overwrite it.
 *
 * The partition count outlives the workers that learned it: the zone
 * keeps the last one, so that workers just started (by a reload, or to
 * replace one that died) do not take the share to 0 until their own
 * statistics come.
 */

void
ngx_gdrive_rate_share(void)
{
    uint64_t                     held, total, r, b;
    ngx_uint_t                   i;
    ngx_gdrive_sh_t             *sh;
    ngx_gdrive_rate_zone_t      *rz;
    ngx_gdrive_worker_status_t  *st;
    u_char                       live[NGX_GDRIVE_MAX_WORKERS];

    sh = ngx_gdrive_rate.sh;
    rz = ngx_gdrive_rate.rz;

    if (rz == NULL
        || ngx_gdrive_rate.gmcf->global_scope != NGX_GDRIVE_SCOPE_FLEET)
    {
        return;
    }

    for (i = 0; i < NGX_GDRIVE_MAX_WORKERS; i++) {
        st = &sh->workers[i];
        live[i] = (st->pid != 0 && ngx_gdrive_status_live(st));
    }

    ngx_shmtx_lock(&ngx_gdrive_rate.shpool->mutex);

    held = 0;
    total = 0;

    for (i = 0; i < NGX_GDRIVE_MAX_WORKERS; i++) {
        st = &sh->workers[i];

        if (live[i]) {
            held += st->held;
            total = ngx_max(total, (uint64_t) st->topic_partitions);
        }
    }

    if (total == 0) {
        total = rz->share_total;
    }

    ngx_gdrive_bucket_share(ngx_gdrive_rate.gmcf->global_rate,
                            ngx_gdrive_rate.gmcf->global_burst, held, total,
                            &r, &b);

    if (r != rz->share_rate || held != rz->share_held) {
        ngx_log_error(NGX_LOG_INFO, ngx_cycle->log, 0,
                      "gdrive: fleet share of the global rate: %uL.%03uL r/s "
                      "burst=%uL for %uL of %uL partitions", r / 1000,
                      r % 1000, b, held, total);
    }

    rz->share_rate = r;
    rz->share_burst = b;
    rz->share_held = held;
    rz->share_total = total;

    ngx_shmtx_unlock(&ngx_gdrive_rate.shpool->mutex);
}


/*
 * Under the zone's mutex: the global rate and burst this instance has.
 * A worker that is exiting (a reload, a quit) keeps the last share it
 * had: its partitions are no longer counted once the worker that
 * replaces it takes its slot, and the jobs it drains before it lets its
 * partitions go must still reach Drive.
 */

static void
ngx_gdrive_rate_global(uint64_t *rate, uint64_t *burst)
{
    ngx_http_gdrive_main_conf_t  *gmcf;

    gmcf = ngx_gdrive_rate.gmcf;

    if (gmcf->global_scope != NGX_GDRIVE_SCOPE_FLEET) {
        *rate = gmcf->global_rate;
        *burst = gmcf->global_burst;
        return;
    }

    if (ngx_exiting && ngx_gdrive_rate.last_rate) {
        *rate = ngx_gdrive_rate.last_rate;
        *burst = ngx_gdrive_rate.last_burst;
        return;
    }

    *rate = ngx_gdrive_rate.rz->share_rate;
    *burst = ngx_gdrive_rate.rz->share_burst;

    if (*rate && !ngx_exiting) {
        ngx_gdrive_rate.last_rate = *rate;
        ngx_gdrive_rate.last_burst = *burst;
    }
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
    uint64_t                      now, wait, grate, gburst;
    ngx_uint_t                    n;
    ngx_gdrive_shm_node_t        *sn;
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

    gmcf = ngx_gdrive_rate.gmcf;
    rz = ngx_gdrive_rate.rz;

    if (rz == NULL) {
        return NGX_OK;
    }

    now = ngx_gdrive_epoch_ms();
    p = keys;

    ngx_shmtx_lock(&ngx_gdrive_rate.shpool->mutex);

    /* the array holds max + 1 entries: no push below allocates */

    e = ngx_array_push(snap->entries);
    ngx_memzero(e, sizeof(ngx_gdrive_rate_entry_t));

    ngx_gdrive_rate_global(&grate, &gburst);

    if (grate) {
        e->use = ngx_gdrive_bucket_use(&rz->global, now, grate, gburst);
        e->wait = ngx_gdrive_bucket_wait(&rz->global, now, grate, gburst);

    } else {
        e->use = 100;
        e->wait = NGX_GDRIVE_RATE_NO_SHARE;
    }

    snap->global_rate = grate;
    snap->global_burst = gburst;
    snap->held = rz->share_held;
    snap->total = rz->share_total;

    n = 0;

    for (sn = ngx_gdrive_shm_newest(&ngx_gdrive_rate.buckets);
         sn && n < max;
         sn = ngx_gdrive_shm_older(&ngx_gdrive_rate.buckets, sn), n++)
    {
        node = (ngx_gdrive_rate_node_t *) sn;

        e = ngx_array_push(snap->entries);

        e->integration.data = p;
        e->integration.len = sn->sn.str.len;
        p = ngx_cpymem(p, sn->sn.str.data, sn->sn.str.len);

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

    snap->buckets = rz->table.nodes;
    snap->passed = rz->passed;
    snap->waited = rz->waited;
    snap->holds = rz->holds;
    snap->evictions = rz->evictions;
    snap->unlimited = rz->unlimited;

    ngx_shmtx_unlock(&ngx_gdrive_rate.shpool->mutex);

    return NGX_OK;
}


/*
 * Under the zone's mutex.  Finds or makes the integration's bucket; a
 * full table or zone evicts least recently used buckets, and if even that
 * finds no room, NULL: the caller lets the request pass.
 */

static ngx_gdrive_rate_node_t *
ngx_gdrive_rate_node(ngx_str_t *key, uint64_t now)
{
    ngx_gdrive_shm_node_t  *sn;

    if (key->len == 0 || key->len > NGX_GDRIVE_ID_MAX_LEN) {
        return NULL;
    }

    sn = ngx_gdrive_shm_lookup(&ngx_gdrive_rate.buckets, key);

    if (sn) {
        ngx_gdrive_shm_touch(&ngx_gdrive_rate.buckets, sn);
        return (ngx_gdrive_rate_node_t *) sn;
    }

    /* when every bucket looked at is held, none: the newcomer waits */

    return (ngx_gdrive_rate_node_t *)
               ngx_gdrive_shm_insert(&ngx_gdrive_rate.buckets, key,
                                     sizeof(ngx_gdrive_rate_node_t), now);
}


/*
 * Under the zone's mutex.  A bucket that is drained, idle and not held
 * means nothing: it goes from the LRU end.  For room, the least recently
 * used bucket that holds nothing goes, looked for among the
 * NGX_GDRIVE_RATE_SCAN oldest (an eviction).  A held bucket, a
 * Retry-After or an open quota circuit, is never evicted.
 */

static ngx_uint_t
ngx_gdrive_rate_expired(ngx_gdrive_shm_node_t *sn, uint64_t now)
{
    ngx_gdrive_rate_node_t  *node;

    node = (ngx_gdrive_rate_node_t *) sn;

    return !(node->held_until > now
             || now < node->bucket.last + NGX_GDRIVE_RATE_IDLE
             || ngx_gdrive_bucket_level(&node->bucket, now,
                                        ngx_gdrive_rate.gmcf->rate));
}


static ngx_uint_t
ngx_gdrive_rate_evictable(ngx_gdrive_shm_node_t *sn, uint64_t now)
{
    return ((ngx_gdrive_rate_node_t *) sn)->held_until <= now;
}


static void
ngx_gdrive_rate_gone(ngx_gdrive_shm_node_t *sn, ngx_uint_t cause)
{
    if (cause == NGX_GDRIVE_SHM_EVICTED) {
        ngx_gdrive_rate.rz->evictions++;

    } else {
        ngx_gdrive_rate.rz->expired++;
    }
}
