
/*
 * nginx-gdrive-worker: W3C Trace Context (see ngx_gdrive_trace.h).
 *
 * Infrastructure, free of nginx.  A traceparent comes from outside and is
 * checked character by character before anything of it is used; one that
 * fails is never carried on, the caller starts a trace of its own.
 *
 * Ids come from OpenSSL's RAND_bytes, as trigger ids do
 * (ngx_gdrive_uuid()): ngx_random() is random(3), seeded from the pid and
 * the time, so two workers started in the same second could make the
 * same ids.  RAND_bytes is asked for a pool of bytes at a time: a call
 * costs 1.8 us for 16 bytes and 2.7 us for 4096 here (OpenSSL sets its
 * generator up and asks the pid at every call), and a trace takes 24
 * bytes at every trigger, a batch's too.
 */


#include <pthread.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/rand.h>
#include <openssl/sha.h>

#include "ngx_gdrive_trace.h"


static int ngx_gdrive_trace_hex(const unsigned char *p, size_t n,
    unsigned char *out);
static int ngx_gdrive_trace_zero(const unsigned char *b, size_t n);
static void ngx_gdrive_trace_random(unsigned char *b, size_t n);
static char *ngx_gdrive_trace_dump(char *p, const unsigned char *b,
    size_t n);


static const char  ngx_gdrive_trace_digits[] = "0123456789abcdef";


#define NGX_GDRIVE_TRACE_POOL  4096

static unsigned char  ngx_gdrive_trace_pool[NGX_GDRIVE_TRACE_POOL];
static size_t         ngx_gdrive_trace_left;
static int            ngx_gdrive_trace_atfork;


/*
 * version "-" trace-id "-" parent-id "-" flags, lowercase hex.  Version
 * ff is invalid; 00 is exactly 55 characters; a later version is read by
 * its first four fields, and whatever follows must start with "-".
 * All-zero ids are invalid.  0: t has the trace, -1: invalid.
 */

int
ngx_gdrive_traceparent_parse(ngx_gdrive_trace_t *t,
    const unsigned char *value, size_t len)
{
    unsigned char  version, flags;

    if (value == NULL || len < NGX_GDRIVE_TRACEPARENT_LEN) {
        return -1;
    }

    if (ngx_gdrive_trace_hex(value, 1, &version) != 0 || version == 0xff) {
        return -1;
    }

    if (version == 0 && len != NGX_GDRIVE_TRACEPARENT_LEN) {
        return -1;
    }

    if (len > NGX_GDRIVE_TRACEPARENT_LEN
        && value[NGX_GDRIVE_TRACEPARENT_LEN] != '-')
    {
        return -1;
    }

    if (value[2] != '-' || value[35] != '-' || value[52] != '-') {
        return -1;
    }

    if (ngx_gdrive_trace_hex(value + 3, 16, t->trace_id) != 0
        || ngx_gdrive_trace_hex(value + 36, 8, t->parent_id) != 0
        || ngx_gdrive_trace_hex(value + 53, 1, &flags) != 0)
    {
        return -1;
    }

    if (ngx_gdrive_trace_zero(t->trace_id, 16)
        || ngx_gdrive_trace_zero(t->parent_id, 8))
    {
        return -1;
    }

    /* of a later version's flags only the sampled bit is known */
    t->flags = (version == 0) ? flags : (flags & NGX_GDRIVE_TRACE_SAMPLED);

    return 0;
}


/* 1 to 512 printable ASCII characters: what is carried on as it came */

int
ngx_gdrive_tracestate_valid(const unsigned char *value, size_t len)
{
    size_t  i;

    if (value == NULL || len == 0 || len > NGX_GDRIVE_TRACESTATE_MAX) {
        return 0;
    }

    for (i = 0; i < len; i++) {
        if (value[i] < 0x20 || value[i] > 0x7e) {
            return 0;
        }
    }

    return 1;
}


/*
 * A trace of our own: a new trace id, and as its parent a span of the
 * step that started it.  Sampled: every job's log lines record it.
 */

void
ngx_gdrive_trace_start(ngx_gdrive_trace_t *t)
{
    ngx_gdrive_trace_random(t->trace_id, sizeof(t->trace_id));
    ngx_gdrive_trace_random(t->parent_id, sizeof(t->parent_id));
    t->flags = NGX_GDRIVE_TRACE_SAMPLED;
    t->state_len = 0;
    t->state[0] = '\0';
}


/*
 * A trace for a record that came without one, the same wherever and
 * however often the record is read: its ids are the SHA-256 of what names
 * the record (topic, partition, offset), so that a redelivery on another
 * host continues the trace of the first delivery.
 */

void
ngx_gdrive_trace_derive(ngx_gdrive_trace_t *t, const unsigned char *name,
    size_t len)
{
    unsigned char  md[SHA256_DIGEST_LENGTH];

    SHA256(name, len, md);

    memcpy(t->trace_id, md, sizeof(t->trace_id));
    memcpy(t->parent_id, md + sizeof(t->trace_id), sizeof(t->parent_id));

    /* all-zero ids are invalid: a digest that has them is one in 2^64 */
    t->trace_id[15] |= (unsigned char) 1;
    t->parent_id[7] |= (unsigned char) 1;

    t->flags = NGX_GDRIVE_TRACE_SAMPLED;
    t->state_len = 0;
    t->state[0] = '\0';
}


/* the step's own span: the parent of every record it makes */

void
ngx_gdrive_trace_span(ngx_gdrive_trace_t *t)
{
    ngx_gdrive_trace_random(t->span_id, sizeof(t->span_id));
}


/* "00-<trace id>-<parent>-<flags>" and a NUL: 56 bytes of buf */

void
ngx_gdrive_traceparent_print(const ngx_gdrive_trace_t *t,
    const unsigned char *parent, char *buf)
{
    char  *p;

    p = buf;
    *p++ = '0';
    *p++ = '0';
    *p++ = '-';
    p = ngx_gdrive_trace_dump(p, t->trace_id, 16);
    *p++ = '-';
    p = ngx_gdrive_trace_dump(p, parent, 8);
    *p++ = '-';
    p = ngx_gdrive_trace_dump(p, &t->flags, 1);
    *p = '\0';
}


/* the trace id in hex and a NUL: 33 bytes of buf */

void
ngx_gdrive_trace_id_print(const ngx_gdrive_trace_t *t, char *buf)
{
    *ngx_gdrive_trace_dump(buf, t->trace_id, 16) = '\0';
}


/* n bytes from 2n lowercase hex digits; -1: anything else */

static int
ngx_gdrive_trace_hex(const unsigned char *p, size_t n, unsigned char *out)
{
    size_t         i, j;
    unsigned char  c, v;

    for (i = 0; i < n; i++) {
        v = 0;

        for (j = 0; j < 2; j++) {
            c = p[2 * i + j];

            if (c >= '0' && c <= '9') {
                v = (unsigned char) (v << 4 | (c - '0'));

            } else if (c >= 'a' && c <= 'f') {
                v = (unsigned char) (v << 4 | (c - 'a' + 10));

            } else {
                return -1;
            }
        }

        out[i] = v;
    }

    return 0;
}


static int
ngx_gdrive_trace_zero(const unsigned char *b, size_t n)
{
    size_t  i;

    for (i = 0; i < n; i++) {
        if (b[i]) {
            return 0;
        }
    }

    return 1;
}


/*
 * Should OpenSSL's generator fail, the ids are still unique within the
 * process (a counter) and across processes (the pid and the time), if
 * not unpredictable: a trace is never refused for want of entropy.
 * Never all zero, which W3C reserves for "invalid".
 */

static void
ngx_gdrive_trace_random(unsigned char *b, size_t n)
{
    size_t               i;
    unsigned long long   x;

    static unsigned long long  counter;

    if (ngx_gdrive_random_bytes(b, n) != 0) {
        x = (unsigned long long) time(NULL) ^ ((unsigned long long) getpid()
                                               << 32);
        x ^= ++counter * 0x9e3779b97f4a7c15ULL;

        for (i = 0; i < n; i++) {
            x ^= x >> 33;
            x *= 0xff51afd7ed558ccdULL;
            b[i] = (unsigned char) (x >> 56);
        }
    }

    if (ngx_gdrive_trace_zero(b, n)) {
        b[n - 1] = 1;
    }
}


/*
 * n bytes of OpenSSL's generator, taken from the pool; 0, or -1 when the
 * generator fails.  A process made by fork() (an nginx worker) forgets
 * the pool it inherited, so two processes never hand out the same bytes;
 * bytes handed out are wiped from the pool.  One thread only: the event
 * loop's (the trigger location and the jobs).
 */

int
ngx_gdrive_random_bytes(unsigned char *b, size_t n)
{
    if (n > NGX_GDRIVE_TRACE_POOL) {
        return RAND_bytes(b, (int) n) == 1 ? 0 : -1;
    }

    if (!ngx_gdrive_trace_atfork) {
        if (pthread_atfork(NULL, NULL, ngx_gdrive_random_forget) != 0) {
            return RAND_bytes(b, (int) n) == 1 ? 0 : -1;
        }

        ngx_gdrive_trace_atfork = 1;
    }

    if (ngx_gdrive_trace_left < n) {
        if (RAND_bytes(ngx_gdrive_trace_pool, NGX_GDRIVE_TRACE_POOL) != 1) {
            ngx_gdrive_trace_left = 0;
            return -1;
        }

        ngx_gdrive_trace_left = NGX_GDRIVE_TRACE_POOL;
    }

    ngx_gdrive_trace_left -= n;
    memcpy(b, ngx_gdrive_trace_pool + ngx_gdrive_trace_left, n);
    memset(ngx_gdrive_trace_pool + ngx_gdrive_trace_left, 0, n);

    return 0;
}


void
ngx_gdrive_random_forget(void)
{
    memset(ngx_gdrive_trace_pool, 0, sizeof(ngx_gdrive_trace_pool));
    ngx_gdrive_trace_left = 0;
}


static char *
ngx_gdrive_trace_dump(char *p, const unsigned char *b, size_t n)
{
    size_t  i;

    for (i = 0; i < n; i++) {
        *p++ = ngx_gdrive_trace_digits[b[i] >> 4];
        *p++ = ngx_gdrive_trace_digits[b[i] & 0x0f];
    }

    return p;
}
