
/*
 * nginx-gdrive-worker: Drive API rate limits (ngx_gdrive_ratelimit.c).
 *
 * Shared-state layer.
 */


#ifndef _NGX_GDRIVE_RATELIMIT_H_INCLUDED_
#define _NGX_GDRIVE_RATELIMIT_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_gdrive.h"


/*
 * Drive API rate limits across all workers (ngx_gdrive_ratelimit.c).
 *
 * ngx_gdrive_rate_take(): 0 when the integration's bucket and the global
 * one both let a request through now, and it is counted in both;
 * otherwise nothing is counted and the answer is the ms to wait (set a
 * timer, call again), which includes what is left of a hold.  Call it
 * right before each Drive request, retries included.  Among callers
 * waiting on one bucket, whoever asks first after the wait wins: none
 * waits for ever, but no order is kept.  An empty or over-long id, or no
 * room in the zone, leaves the global bucket only.
 * ngx_gdrive_rate_hold(): no request of the integration passes for ms
 * (Retry-After; quota = 1: the quota_exhausted circuit); a hold only
 * ever extends, and holds longer than a day are cut to one.
 * ngx_gdrive_rate_share(): scope=fleet: this instance's share of the
 * global rate is summed again from the workers' slots (partitions held,
 * partitions of the topic); call it after a slot changed.
 * ngx_gdrive_rate_snapshot(): the global bucket first (integration
 * empty), then up to max (at most NGX_GDRIVE_RATE_SNAPSHOT_MAX)
 * integrations, most recently used first, copied out of the zone into
 * the pool with the table's counters.
 */

typedef struct {
    ngx_str_t                   integration;  /* empty: the global bucket */
    ngx_uint_t                  use;          /* % of burst + 1 in use,
                                                 100: requests wait */
    ngx_msec_t                  wait;         /* until one passes, hold
                                                 included */
    uint64_t                    held_until;   /* epoch ms, 0: not held */
    ngx_uint_t                  quota;        /* the hold is the quota
                                                 circuit */
} ngx_gdrive_rate_entry_t;

typedef struct {
    ngx_array_t                *entries;      /* ngx_gdrive_rate_entry_t */
    ngx_uint_t                  buckets;      /* integrations in the zone */
    ngx_uint_t                  passed;       /* takes that returned 0 */
    ngx_uint_t                  waited;       /* takes told to wait */
    ngx_uint_t                  holds;
    ngx_uint_t                  evictions;    /* buckets dropped for room */
    ngx_uint_t                  unlimited;    /* passed with no bucket */
    uint64_t                    global_rate;  /* in effect, per 1000 s;
                                                 scope=fleet: the share */
    uint64_t                    global_burst;
    ngx_uint_t                  held;         /* scope=fleet: partitions */
    ngx_uint_t                  total;        /* held here, of the topic */
} ngx_gdrive_rate_snapshot_t;

#define NGX_GDRIVE_RATE_SNAPSHOT_MAX  100

void ngx_gdrive_rate_init(ngx_http_gdrive_main_conf_t *gmcf);
ngx_msec_t ngx_gdrive_rate_take(ngx_str_t *integration,
    ngx_uint_t *global);
void ngx_gdrive_rate_hold(ngx_str_t *integration, ngx_msec_t ms,
    ngx_uint_t quota);
void ngx_gdrive_rate_share(void);
ngx_int_t ngx_gdrive_rate_snapshot(ngx_pool_t *pool, ngx_uint_t max,
    ngx_gdrive_rate_snapshot_t *snap);


#endif /* _NGX_GDRIVE_RATELIMIT_H_INCLUDED_ */
