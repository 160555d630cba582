/* unit tests of the token bucket arithmetic (src/ngx_gdrive_bucket.c) */

#include <string.h>

#include "ngx_gdrive_bucket.h"
#include "tap.h"


#define T0  1700000000000ULL     /* an epoch ms */


/* how many requests pass when one is tried every "step" ms for "span" ms */
static unsigned
run(uint64_t rate, uint64_t burst, uint64_t step, uint64_t span)
{
    unsigned             n;
    uint64_t             t;
    ngx_gdrive_bucket_t  b;

    memset(&b, 0, sizeof(b));
    n = 0;

    for (t = T0; t < T0 + span; t += step) {
        if (ngx_gdrive_bucket_take(&b, t, rate, burst) == 0) {
            n++;
        }
    }

    return n;
}


int
main(void)
{
    int                  exact;
    unsigned             n, i;
    uint64_t             w, t;
    ngx_gdrive_bucket_t  b;

    /* 5r/s, burst 0: strictly one every 200 ms */

    memset(&b, 0, sizeof(b));
    ok(ngx_gdrive_bucket_take(&b, T0, 5000, 0) == 0,
       "the first request of an empty bucket passes");
    ok(b.excess == 1000 && b.last == T0,
       "a request that passes adds one request to the bucket");
    w = ngx_gdrive_bucket_take(&b, T0, 5000, 0);
    ok(w == 200, "with burst=0 the next request at 5r/s waits 200 ms (%llu)",
       (unsigned long long) w);
    ok(b.excess == 1000 && b.last == T0,
       "a request that waits changes nothing");
    ok(ngx_gdrive_bucket_take(&b, T0 + 199, 5000, 0) == 1,
       "one ms before its time the request waits 1 ms");
    ok(ngx_gdrive_bucket_take(&b, T0 + 200, 5000, 0) == 0,
       "the request passes exactly when the wait said");

    /* a burst: burst + 1 at once, then the rate */

    memset(&b, 0, sizeof(b));
    for (n = 0; ngx_gdrive_bucket_take(&b, T0, 10000, 5) == 0; n++) {
        if (n > 100) {
            break;
        }
    }
    ok(n == 6, "an idle bucket with burst=5 lets 6 requests through at once"
       " (%u)", n);
    w = ngx_gdrive_bucket_wait(&b, T0, 10000, 5);
    ok(w == 100, "then one every 100 ms at 10r/s (%llu)",
       (unsigned long long) w);
    ok(ngx_gdrive_bucket_use(&b, T0, 10000, 5) == 100,
       "a bucket that makes the next request wait is 100%% used");
    ok(ngx_gdrive_bucket_use(&b, T0 + 100, 10000, 5) < 100,
       "a bucket that lets the next request pass is under 100%% used");
    ok(ngx_gdrive_bucket_use(&b, T0 + 60000, 10000, 5) == 0,
       "a bucket idle for a minute is empty");
    ok(ngx_gdrive_bucket_level(&b, T0 + 60000, 10000) == 0,
       "its level has drained to 0");

    /* the wait is exact for rates that do not divide a second */

    exact = 1;
    for (i = 1; i < 2000; i += 37) {
        memset(&b, 0, sizeof(b));
        t = T0;
        ngx_gdrive_bucket_take(&b, t, i, 2);
        ngx_gdrive_bucket_take(&b, t, i, 2);
        ngx_gdrive_bucket_take(&b, t, i, 2);
        w = ngx_gdrive_bucket_wait(&b, t + 3, i, 2);
        if (w == 0
            || ngx_gdrive_bucket_wait(&b, t + 3 + w, i, 2) != 0
            || (w > 1 && ngx_gdrive_bucket_wait(&b, t + 2 + w, i, 2) == 0))
        {
            exact = 0;
        }
    }
    ok(exact, "for rates of 1 to 2000 requests per 1000 s the request"
       " passes at now + wait and not a millisecond earlier");

    /* over long runs the rate holds */

    n = run(5000, 5, 1, 10000);
    ok(n == 6 + 49, "tried every ms for 10 s, 5r/s burst=5 lets 6 through"
       " at once and 49 more, one every 200 ms (%u)", n);
    n = run(5000, 0, 7, 60000);
    ok(n <= 300 + 1 && n >= 300 - 30, "tried every 7 ms for 60 s, 5r/s"
       " burst=0 lets about 300 through, never more (%u)", n);
    n = run(16, 0, 1000, 600000);
    ok(n == 10, "1r/m (16 per 1000 s) tried every second for 10 minutes"
       " lets 10 through (%u)", n);

    /* waiting the returned time loses nothing */

    memset(&b, 0, sizeof(b));
    t = T0;
    n = 0;
    while (t < T0 + 10000) {
        w = ngx_gdrive_bucket_take(&b, t, 3000, 0);
        if (w == 0) {
            n++;
            t += 1;
        } else {
            t += w;
        }
    }
    ok(n == 30, "a caller that sleeps exactly the returned time"
       " gets 3r/s for 10 s (%u)", n);

    /* the clock */

    memset(&b, 0, sizeof(b));
    ngx_gdrive_bucket_take(&b, T0, 5000, 0);
    w = ngx_gdrive_bucket_take(&b, T0 - 3600000, 5000, 0);
    ok(w == 200, "a clock one hour back counts as no time elapsed (%llu)",
       (unsigned long long) w);
    ok(ngx_gdrive_bucket_level(&b, T0 - 3600000, 5000) == 1000,
       "and drains nothing");
    ok(b.last == T0 - 3600000, "the bucket re-anchors at the new time");
    ok(ngx_gdrive_bucket_take(&b, T0 - 3600000 + 200, 5000, 0) == 0,
       "so the request passes 200 ms later, not an hour later");

    memset(&b, 0, sizeof(b));
    b.last = T0;
    b.excess = 0;
    ok(ngx_gdrive_bucket_take(&b, T0 - 10, 5000, 3) == 0,
       "an empty bucket lets a request through even with the clock back");
    ok(b.last == T0 - 10, "and counts it from the new time");

    /* limits */

    memset(&b, 0, sizeof(b));
    ok(ngx_gdrive_bucket_take(&b, T0, 0, 0) == 0
       && ngx_gdrive_bucket_take(&b, T0, 0, 0) == 0,
       "a rate of 0 limits nothing");
    memset(&b, 0, sizeof(b));
    ok(ngx_gdrive_bucket_take(&b, T0, (uint64_t) -1, (uint64_t) -1) == 0
       && ngx_gdrive_bucket_take(&b, T0 + (uint64_t) 1e15,
                                 (uint64_t) -1, (uint64_t) -1) == 0,
       "huge rates, bursts and gaps do not overflow");
    b.excess = 1000;
    b.last = 0;
    ok(ngx_gdrive_bucket_level(&b, (uint64_t) -1, 1) == 0,
       "a gap of 2^64 ms drains the bucket");

    /* scope=fleet: a share of the global rate by partitions held */

    {
        uint64_t  r, bu, sum_r, sum_b;

        ngx_gdrive_bucket_share(200000, 20, 6, 6, &r, &bu);
        ok(r == 200000 && bu == 20, "all partitions held: the whole rate");

        ngx_gdrive_bucket_share(200000, 20, 4, 6, &r, &bu);
        sum_r = r;
        sum_b = bu;
        ok(r == 133333 && bu == 13, "4 of 6: two thirds, rounded down");
        ngx_gdrive_bucket_share(200000, 20, 2, 6, &r, &bu);
        sum_r += r;
        sum_b += bu;
        ok(sum_r <= 200000 && sum_b <= 20,
           "shares of disjoint partitions sum to at most the whole");

        ngx_gdrive_bucket_share(200000, 20, 0, 6, &r, &bu);
        ok(r == 0 && bu == 0, "nothing held: no share");
        ngx_gdrive_bucket_share(200000, 20, 3, 0, &r, &bu);
        ok(r == 0 && bu == 0, "partition count unknown: no share");

        ngx_gdrive_bucket_share(1, 1, 1, 64, &r, &bu);
        ok(r == 1 && bu == 1, "a share is at least 1 (0 means no limit)");

        ngx_gdrive_bucket_share(200000, 20, 9, 6, &r, &bu);
        ok(r == 200000 && bu == 20, "more held than counted: cut at all");

        ngx_gdrive_bucket_share((uint64_t) -1, (uint64_t) -1, 1000, 1000,
                                &r, &bu);
        ok(r == (uint64_t) -1 && bu == (uint64_t) -1,
           "huge rates do not overflow");
    }

    return done_testing();
}
