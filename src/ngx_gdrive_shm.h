
/*
 * nginx-gdrive-worker: the shared zone, its keyed tables and its clock
 * (ngx_gdrive_shm.c).
 *
 * Infrastructure.  ngx_gdrive.h includes this header after the
 * configuration's type and before the zone's (ngx_gdrive_sh_t), whose
 * token, rate and metadata parts embed a table.
 */


#ifndef _NGX_GDRIVE_SHM_H_INCLUDED_
#define _NGX_GDRIVE_SHM_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


typedef struct ngx_gdrive_sh_s  ngx_gdrive_sh_t;    /* in ngx_gdrive.h */

typedef struct {
    ngx_gdrive_sh_t     *sh;
    ngx_slab_pool_t     *shpool;
} ngx_gdrive_shm_ctx_t;


ngx_int_t ngx_gdrive_shm_init_zone(ngx_shm_zone_t *shm_zone, void *data);
ngx_gdrive_sh_t *ngx_gdrive_shm(ngx_http_gdrive_main_conf_t *gmcf);
ngx_gdrive_shm_ctx_t *ngx_gdrive_shm_ctx(ngx_http_gdrive_main_conf_t *gmcf);

/* epoch ms: the clock of every time kept in the zone */
uint64_t ngx_gdrive_epoch_ms(void);


/*
 * A keyed table in the zone, the way limit_req keeps its states: an
 * rbtree keyed by a hash of the key bytes, and a queue of the entries,
 * most recently used first.  A zeroed table is an empty one: the zone's
 * users need no hook at its creation.
 *
 * An entry is the user's struct, which begins with ngx_gdrive_shm_node_t;
 * the key bytes follow the struct's size in the same allocation.  All of
 * the calls below but ngx_gdrive_shm_table_nomem() and
 * ngx_gdrive_shm_cost() are made under the slab pool's mutex.
 */

typedef struct {
    ngx_rbtree_t                rbtree;
    ngx_rbtree_node_t           sentinel;
    ngx_queue_t                 lru;
    ngx_atomic_t                nodes;        /* entries held */
    size_t                      bytes;        /* slab memory they hold */
} ngx_gdrive_shm_table_t;

typedef struct {
    ngx_str_node_t              sn;           /* the key */
    ngx_queue_t                 queue;
    size_t                      cost;         /* slab bytes */
} ngx_gdrive_shm_node_t;

/* why an entry went, for the user's counters */
#define NGX_GDRIVE_SHM_EXPIRED     0
#define NGX_GDRIVE_SHM_EVICTED     1

/*
 * How one process uses a table: its limits and rules live in process
 * memory, set by the user's init; only the table itself is in the zone.
 */
typedef struct {
    ngx_gdrive_shm_table_t     *table;
    ngx_slab_pool_t            *shpool;
    ngx_uint_t                  max_nodes;    /* 0: as many as fit */
    size_t                      max_bytes;    /* 0: as many as fit */
    ngx_uint_t                  scan;         /* oldest entries looked at
                                                 for one that may be
                                                 evicted; 0: all */
    ngx_uint_t                  tries;        /* slab allocations an
                                                 insert makes, >= 1 */
    /* an entry at the LRU end that means nothing any more; NULL: none */
    ngx_uint_t                (*expired)(ngx_gdrive_shm_node_t *node,
                                         uint64_t now);
    /* an entry that may be evicted for room; NULL: any */
    ngx_uint_t                (*evictable)(ngx_gdrive_shm_node_t *node,
                                           uint64_t now);
    /* an entry expired or evicted, before it is freed; NULL: nothing */
    void                      (*gone)(ngx_gdrive_shm_node_t *node,
                                      ngx_uint_t cause);
    /* said once per process when an insert finds no room; NULL: nothing */
    const char                 *nomem;
    ngx_uint_t                  nomem_logged;
} ngx_gdrive_shm_keyed_t;

ngx_gdrive_shm_node_t *ngx_gdrive_shm_lookup(ngx_gdrive_shm_keyed_t *k,
    ngx_str_t *key);
ngx_gdrive_shm_node_t *ngx_gdrive_shm_insert(ngx_gdrive_shm_keyed_t *k,
    ngx_str_t *key, size_t size, uint64_t now);
void ngx_gdrive_shm_touch(ngx_gdrive_shm_keyed_t *k,
    ngx_gdrive_shm_node_t *node);
void ngx_gdrive_shm_delete(ngx_gdrive_shm_keyed_t *k,
    ngx_gdrive_shm_node_t *node);
ngx_gdrive_shm_node_t *ngx_gdrive_shm_newest(ngx_gdrive_shm_keyed_t *k);
ngx_gdrive_shm_node_t *ngx_gdrive_shm_older(ngx_gdrive_shm_keyed_t *k,
    ngx_gdrive_shm_node_t *node);
void ngx_gdrive_shm_table_nomem(ngx_gdrive_shm_keyed_t *k);
size_t ngx_gdrive_shm_cost(size_t size);


#endif /* _NGX_GDRIVE_SHM_H_INCLUDED_ */
