
/*
 * nginx-gdrive-worker: token bucket arithmetic.
 *
 * Infrastructure, free of nginx: the rate limiter (ngx_gdrive_ratelimit.c)
 * keeps these in the shared zone under its mutex, and the unit tests link
 * this file alone.
 *
 * The bucket is limit_req's: "excess" is how far ahead of the rate the
 * requests have come, in 1/1000 of a request, draining at "rate" requests
 * per 1000 seconds (10r/s is 10000).  A request passes when, after the
 * drain, adding it keeps the excess at or below burst requests, so an
 * idle bucket lets burst + 1 requests through at once and then one every
 * 1000000 / rate ms: burst=0 spaces requests strictly.
 *
 * Times are milliseconds of a clock shared by all processes; a clock that
 * goes back is taken as no time elapsed, and _take() measures from then
 * on instead of waiting for the clock to catch up.
 */


#ifndef _NGX_GDRIVE_BUCKET_H_INCLUDED_
#define _NGX_GDRIVE_BUCKET_H_INCLUDED_


#include <stdint.h>


typedef struct {
    uint64_t    excess;        /* 1/1000 requests, as of "last" */
    uint64_t    last;          /* ms */
} ngx_gdrive_bucket_t;


/* the excess at "now", drained since the last request that passed */
uint64_t ngx_gdrive_bucket_level(const ngx_gdrive_bucket_t *b, uint64_t now,
    uint64_t rate);

/* ms until a request may pass, 0: now; changes nothing */
uint64_t ngx_gdrive_bucket_wait(const ngx_gdrive_bucket_t *b, uint64_t now,
    uint64_t rate, uint64_t burst);

/* as _wait(), and when it is 0 the request is counted in the bucket */
uint64_t ngx_gdrive_bucket_take(ngx_gdrive_bucket_t *b, uint64_t now,
    uint64_t rate, uint64_t burst);

/* how full the bucket is, 0..100: 100 means the next request waits */
unsigned ngx_gdrive_bucket_use(const ngx_gdrive_bucket_t *b, uint64_t now,
    uint64_t rate, uint64_t burst);

/*
 * A share of a rate and burst for "held" of "total" parts: rate * held /
 * total, at least 1 (a rate of 0 would mean no limit), and the burst
 * likewise, at least 1.  Nothing held, or total unknown (0): both 0.
 */
void ngx_gdrive_bucket_share(uint64_t rate, uint64_t burst, uint64_t held,
    uint64_t total, uint64_t *share_rate, uint64_t *share_burst);


#endif /* _NGX_GDRIVE_BUCKET_H_INCLUDED_ */
