
/*
 * nginx-gdrive-worker: token bucket arithmetic (see ngx_gdrive_bucket.h).
 *
 * Infrastructure, free of nginx.  Exact in integers: a caller told to wait
 * w ms finds the request passing at now + w, not a millisecond later.
 */


#include "ngx_gdrive_bucket.h"


/*
 * Bounds that keep every product below 2^63 whatever the configuration
 * says: a burst of a billion requests or a rate of a billion per second
 * are the same as no limit for a Drive client.
 */
#define NGX_GDRIVE_BUCKET_MAX_BURST  1000000000ULL
#define NGX_GDRIVE_BUCKET_MAX_RATE   1000000000000ULL


static uint64_t ngx_gdrive_bucket_elapsed(const ngx_gdrive_bucket_t *b,
    uint64_t now);


uint64_t
ngx_gdrive_bucket_level(const ngx_gdrive_bucket_t *b, uint64_t now,
    uint64_t rate)
{
    uint64_t  ms;

    if (rate > NGX_GDRIVE_BUCKET_MAX_RATE) {
        rate = NGX_GDRIVE_BUCKET_MAX_RATE;
    }

    ms = ngx_gdrive_bucket_elapsed(b, now);

    if (rate == 0 || ms == 0) {
        return b->excess;
    }

    /* drained entirely; also keeps rate * ms from overflowing */
    if (ms > b->excess * 1000 / rate) {
        return 0;
    }

    return b->excess - rate * ms / 1000;
}


uint64_t
ngx_gdrive_bucket_wait(const ngx_gdrive_bucket_t *b, uint64_t now,
    uint64_t rate, uint64_t burst)
{
    uint64_t  over, ms, need;

    if (rate == 0) {
        return 0;                   /* no rate: no limit */
    }

    if (rate > NGX_GDRIVE_BUCKET_MAX_RATE) {
        rate = NGX_GDRIVE_BUCKET_MAX_RATE;
    }

    if (burst > NGX_GDRIVE_BUCKET_MAX_BURST) {
        burst = NGX_GDRIVE_BUCKET_MAX_BURST;
    }

    if (ngx_gdrive_bucket_level(b, now, rate) <= burst * 1000) {
        return 0;
    }

    /*
     * The level at now + t is excess - rate * (ms + t) / 1000, rounded
     * down: the first whole t that brings it to burst is the answer.
     */

    over = b->excess - burst * 1000;
    ms = ngx_gdrive_bucket_elapsed(b, now);
    need = (over * 1000 + rate - 1) / rate;

    return (need > ms) ? need - ms : 1;
}


uint64_t
ngx_gdrive_bucket_take(ngx_gdrive_bucket_t *b, uint64_t now, uint64_t rate,
    uint64_t burst)
{
    uint64_t  wait;

    /*
     * After the clock went back, measure from now on: waiting for the
     * clock to catch up with the old anchor would stall the bucket.
     */

    if (now < b->last) {
        b->last = now;
    }

    wait = ngx_gdrive_bucket_wait(b, now, rate, burst);

    if (wait == 0) {
        b->excess = ngx_gdrive_bucket_level(b, now, rate) + 1000;
        b->last = now;
    }

    return wait;
}


unsigned
ngx_gdrive_bucket_use(const ngx_gdrive_bucket_t *b, uint64_t now,
    uint64_t rate, uint64_t burst)
{
    uint64_t  level;

    if (rate == 0) {
        return 0;
    }

    if (ngx_gdrive_bucket_wait(b, now, rate, burst)) {
        return 100;
    }

    if (burst > NGX_GDRIVE_BUCKET_MAX_BURST) {
        burst = NGX_GDRIVE_BUCKET_MAX_BURST;
    }

    level = ngx_gdrive_bucket_level(b, now, rate);

    /* below 100 while a request still passes */
    return (unsigned) (level * 100 / (burst * 1000 + 1000));
}


void
ngx_gdrive_bucket_share(uint64_t rate, uint64_t burst, uint64_t held,
    uint64_t total, uint64_t *share_rate, uint64_t *share_burst)
{
    uint64_t  r, b;

    if (held == 0 || total == 0) {
        *share_rate = 0;
        *share_burst = 0;
        return;
    }

    /* more held than known: the count is older than the assignment */
    if (held > total) {
        held = total;
    }

    /* in two parts, so that rate * held cannot overflow */
    r = rate / total * held + rate % total * held / total;
    b = burst / total * held + burst % total * held / total;

    *share_rate = r ? r : 1;
    *share_burst = b ? b : 1;
}


static uint64_t
ngx_gdrive_bucket_elapsed(const ngx_gdrive_bucket_t *b, uint64_t now)
{
    /* a clock that went back: no time elapsed */
    return (now > b->last) ? now - b->last : 0;
}
