
/*
 * nginx-gdrive-worker: AWS Signature Version 4 (SigV4).
 *
 * Infrastructure, free of nginx.  The canonical request follows AWS's
 * rules for S3: the path encoded once per segment with '/' kept and never
 * normalised, query parameters encoded and sorted by name then value (a
 * parameter without a value signs as "name="), header names lower-cased
 * and sorted, values trimmed with inner runs of blanks made one space.
 * Our own signer, not curl's CURLOPT_AWS_SIGV4: curl 7.88 signs the query
 * as written, unsorted and "uploads" without "=", which S3 rejects for
 * multipart uploads.
 *
 * What it keeps between calls (the last signing key, the algorithms
 * fetched from the provider, one HMAC context) is per process and not
 * locked: one thread signs, the event loop's.
 */


#include <ctype.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/params.h>

#include "ngx_gdrive_sigv4.h"


#define NGX_GDRIVE_SIGV4_ALGORITHM  "AWS4-HMAC-SHA256"


/*
 * What the canonical request is written to: its hash, and maybe a copy.
 * The pieces (a header name goes a character at a time) are gathered in
 * buf and hashed a buffer at a time: a digest update costs far more than
 * a few bytes copied.
 */
typedef struct {
    EVP_MD_CTX            *md;
    char                  *copy;
    size_t                 size;
    size_t                 len;
    int                    error;
    size_t                 blen;
    char                   buf[1024];
} ngx_gdrive_sigv4_out_t;


/* a position in a string as it reads once UriEncoded */
typedef struct {
    const unsigned char   *p;
    const unsigned char   *last;
    int                    keep_slash;
    int                    pending;     /* hex digits of a %XX still due */
    unsigned char          hex[2];
} ngx_gdrive_sigv4_enc_t;


static void ngx_gdrive_sigv4_flush(ngx_gdrive_sigv4_out_t *out);
static void ngx_gdrive_sigv4_put(ngx_gdrive_sigv4_out_t *out,
    const char *p, size_t len);
static void ngx_gdrive_sigv4_put_encoded(ngx_gdrive_sigv4_out_t *out,
    const char *p, size_t len, int keep_slash);
static int ngx_gdrive_sigv4_unreserved(unsigned char c);
static int ngx_gdrive_sigv4_enc_next(ngx_gdrive_sigv4_enc_t *e);
static int ngx_gdrive_sigv4_enc_cmp(const char *a, size_t alen,
    const char *b, size_t blen);
static int ngx_gdrive_sigv4_query_cmp(const ngx_gdrive_sigv4_pair_t *a,
    const ngx_gdrive_sigv4_pair_t *b);
static int ngx_gdrive_sigv4_name_cmp(const ngx_gdrive_sigv4_pair_t *a,
    const ngx_gdrive_sigv4_pair_t *b);
static void ngx_gdrive_sigv4_put_value(ngx_gdrive_sigv4_out_t *out,
    const char *p, size_t len);
static void ngx_gdrive_sigv4_put_lower(ngx_gdrive_sigv4_out_t *out,
    const char *p, size_t len);
static int ngx_gdrive_sigv4_hmac(const unsigned char *key, size_t key_len,
    const char *data, size_t len, unsigned char *md);
static void ngx_gdrive_sigv4_sort(ngx_gdrive_sigv4_t *s,
    const ngx_gdrive_sigv4_pair_t **q, const ngx_gdrive_sigv4_pair_t **h);
static int ngx_gdrive_sigv4_canonical(ngx_gdrive_sigv4_t *s,
    const ngx_gdrive_sigv4_pair_t **q, const ngx_gdrive_sigv4_pair_t **h,
    char *hash_hex);
static size_t ngx_gdrive_sigv4_next_name(const ngx_gdrive_sigv4_pair_t **h,
    size_t i, size_t nh);
static int ngx_gdrive_sigv4_signature(ngx_gdrive_sigv4_t *s,
    const char *hash_hex, char *scope, size_t scope_size,
    unsigned char *sig);
static int ngx_gdrive_sigv4_key(ngx_gdrive_sigv4_t *s, unsigned char *key);
static const EVP_MD *ngx_gdrive_sigv4_md(int md5);
static int ngx_gdrive_sigv4_authorization(ngx_gdrive_sigv4_t *s,
    const ngx_gdrive_sigv4_pair_t **h, const char *scope,
    const unsigned char *sig, char *auth, size_t size);


static const char  ngx_gdrive_hex_upper[] = "0123456789ABCDEF";
static const char  ngx_gdrive_hex_lower[] = "0123456789abcdef";


int
ngx_gdrive_sigv4_sign(ngx_gdrive_sigv4_t *s, char *auth, size_t size)
{
    char                            scope[128];
    char                            hash_hex[NGX_GDRIVE_SHA256_HEX_LEN + 1];
    unsigned char                   sig[32];
    const ngx_gdrive_sigv4_pair_t  *q[NGX_GDRIVE_SIGV4_MAX_PAIRS];
    const ngx_gdrive_sigv4_pair_t  *h[NGX_GDRIVE_SIGV4_MAX_PAIRS];

    if (s->nquery > NGX_GDRIVE_SIGV4_MAX_PAIRS
        || s->nheaders > NGX_GDRIVE_SIGV4_MAX_PAIRS
        || s->nheaders == 0 || s->date == NULL || s->method == NULL
        || s->payload_hash == NULL || s->service == NULL
        || strlen(s->date) != NGX_GDRIVE_SIGV4_DATE_LEN
        || s->date[8] != 'T' || s->date[15] != 'Z')
    {
        return -1;
    }

    ngx_gdrive_sigv4_sort(s, q, h);

    if (ngx_gdrive_sigv4_canonical(s, q, h, hash_hex) != 0
        || ngx_gdrive_sigv4_signature(s, hash_hex, scope, sizeof(scope), sig)
           != 0)
    {
        return -1;
    }

    return ngx_gdrive_sigv4_authorization(s, h, scope, sig, auth, size);
}


/* stable insertion sorts: a few pairs, and duplicates keep order */

static void
ngx_gdrive_sigv4_sort(ngx_gdrive_sigv4_t *s,
    const ngx_gdrive_sigv4_pair_t **q, const ngx_gdrive_sigv4_pair_t **h)
{
    size_t                          i, j;
    const ngx_gdrive_sigv4_pair_t  *t;

    for (i = 0; i < s->nquery; i++) {
        t = &s->query[i];

        for (j = i; j > 0 && ngx_gdrive_sigv4_query_cmp(q[j - 1], t) > 0; j--)
        {
            q[j] = q[j - 1];
        }

        q[j] = t;
    }

    for (i = 0; i < s->nheaders; i++) {
        t = &s->headers[i];

        for (j = i; j > 0 && ngx_gdrive_sigv4_name_cmp(h[j - 1], t) > 0; j--)
        {
            h[j] = h[j - 1];
        }

        h[j] = t;
    }
}


/* the canonical request, hashed into hash_hex (and copied, if asked) */

static int
ngx_gdrive_sigv4_canonical(ngx_gdrive_sigv4_t *s,
    const ngx_gdrive_sigv4_pair_t **q, const ngx_gdrive_sigv4_pair_t **h,
    char *hash_hex)
{
    size_t                  i, k, nq, nh;
    unsigned int            md_len;
    unsigned char           md[EVP_MAX_MD_SIZE];
    ngx_gdrive_sigv4_out_t  out;

    nq = s->nquery;
    nh = s->nheaders;

    out.md = EVP_MD_CTX_new();
    out.copy = s->canonical;
    out.size = s->canonical_size;
    out.len = 0;
    out.error = 0;
    out.blen = 0;

    if (out.md == NULL
        || EVP_DigestInit_ex(out.md, ngx_gdrive_sigv4_md(0), NULL) != 1)
    {
        EVP_MD_CTX_free(out.md);
        return -1;
    }

    ngx_gdrive_sigv4_put(&out, s->method, strlen(s->method));
    ngx_gdrive_sigv4_put(&out, "\n", 1);

    if (s->path_len == 0 || s->path[0] != '/') {
        ngx_gdrive_sigv4_put(&out, "/", 1);
    }

    ngx_gdrive_sigv4_put_encoded(&out, s->path, s->path_len, 1);
    ngx_gdrive_sigv4_put(&out, "\n", 1);

    for (i = 0; i < nq; i++) {
        if (i) {
            ngx_gdrive_sigv4_put(&out, "&", 1);
        }

        ngx_gdrive_sigv4_put_encoded(&out, q[i]->name, q[i]->name_len, 0);
        ngx_gdrive_sigv4_put(&out, "=", 1);

        if (q[i]->value) {
            ngx_gdrive_sigv4_put_encoded(&out, q[i]->value, q[i]->value_len,
                                         0);
        }
    }

    ngx_gdrive_sigv4_put(&out, "\n", 1);

    /* one line per header name; repeated names join their values by ',' */

    for (i = 0; i < nh; i = k) {
        ngx_gdrive_sigv4_put_lower(&out, h[i]->name, h[i]->name_len);
        ngx_gdrive_sigv4_put(&out, ":", 1);

        for (k = i; k < nh && ngx_gdrive_sigv4_name_cmp(h[i], h[k]) == 0;
             k++)
        {
            if (k > i) {
                ngx_gdrive_sigv4_put(&out, ",", 1);
            }

            ngx_gdrive_sigv4_put_value(&out, h[k]->value, h[k]->value_len);
        }

        ngx_gdrive_sigv4_put(&out, "\n", 1);
    }

    ngx_gdrive_sigv4_put(&out, "\n", 1);

    for (i = 0; i < nh; i = k) {
        if (i) {
            ngx_gdrive_sigv4_put(&out, ";", 1);
        }

        ngx_gdrive_sigv4_put_lower(&out, h[i]->name, h[i]->name_len);
        k = ngx_gdrive_sigv4_next_name(h, i, nh);
    }

    ngx_gdrive_sigv4_put(&out, "\n", 1);
    ngx_gdrive_sigv4_put(&out, s->payload_hash, strlen(s->payload_hash));

    ngx_gdrive_sigv4_flush(&out);

    if (s->canonical) {
        s->canonical_len = out.len;
        s->canonical[out.len < out.size ? out.len : out.size - 1] = '\0';
    }

    if (out.error || EVP_DigestFinal_ex(out.md, md, &md_len) != 1) {
        EVP_MD_CTX_free(out.md);
        return -1;
    }

    EVP_MD_CTX_free(out.md);

    ngx_gdrive_hex(hash_hex, md, md_len);
    hash_hex[NGX_GDRIVE_SHA256_HEX_LEN] = '\0';

    return 0;
}


/* the index of the first header after h[i] with another name */

static size_t
ngx_gdrive_sigv4_next_name(const ngx_gdrive_sigv4_pair_t **h, size_t i,
    size_t nh)
{
    size_t  k;

    for (k = i + 1; k < nh && ngx_gdrive_sigv4_name_cmp(h[i], h[k]) == 0; k++)
    {
        /* void */
    }

    return k;
}


/* the credential scope, the string to sign, and its signature */

static int
ngx_gdrive_sigv4_signature(ngx_gdrive_sigv4_t *s, const char *hash_hex,
    char *scope, size_t scope_size, unsigned char *sig)
{
    int            n, rc;
    char           sts[256];
    unsigned char  key[32];

    n = snprintf(scope, scope_size, "%.8s/%.*s/%s/aws4_request",
                 s->date, (int) s->region_len, s->region, s->service);

    if (n < 0 || (size_t) n >= scope_size) {
        return -1;
    }

    n = snprintf(sts, sizeof(sts), NGX_GDRIVE_SIGV4_ALGORITHM "\n%s\n%s\n%s",
                 s->date, scope, hash_hex);

    if (n < 0 || (size_t) n >= sizeof(sts)) {
        return -1;
    }

    rc = 0;

    if (ngx_gdrive_sigv4_key(s, key) != 0
        || ngx_gdrive_sigv4_hmac(key, sizeof(key), sts, n, sig) != 0)
    {
        rc = -1;
    }

    memset(key, 0, sizeof(key));

    return rc;
}


/*
 * The signing key depends on the secret, the day, the region and the
 * service only: four HMACs, the larger part of a request's signing, done
 * again only when one of them changed.  One key per process is kept,
 * next to the secret it came from (which the process holds anyway).
 */

static int
ngx_gdrive_sigv4_key(ngx_gdrive_sigv4_t *s, unsigned char *key)
{
    size_t  slen;

    static struct {
        int            valid;
        char           date[8];
        char           region[64];
        char           service[16];
        size_t         secret_len;
        char           secret[256];
        unsigned char  key[32];
    } last;

    slen = strlen(s->service);

    if (last.valid && last.secret_len == s->secret_key_len
        && s->region_len < sizeof(last.region)
        && memcmp(last.date, s->date, 8) == 0
        && memcmp(last.region, s->region, s->region_len) == 0
        && last.region[s->region_len] == '\0'
        && strcmp(last.service, s->service) == 0
        && memcmp(last.secret, s->secret_key, s->secret_key_len) == 0)
    {
        memcpy(key, last.key, 32);
        return 0;
    }

    if (ngx_gdrive_sigv4_signing_key(s->secret_key, s->secret_key_len,
                                     s->date, s->region, s->region_len,
                                     s->service, key)
        != 0)
    {
        return -1;
    }

    if (s->secret_key_len <= sizeof(last.secret)
        && s->region_len < sizeof(last.region)
        && slen < sizeof(last.service))
    {
        memcpy(last.date, s->date, 8);
        memcpy(last.region, s->region, s->region_len);
        last.region[s->region_len] = '\0';
        memcpy(last.service, s->service, slen + 1);
        memcpy(last.secret, s->secret_key, s->secret_key_len);
        last.secret_len = s->secret_key_len;
        memcpy(last.key, key, 32);
        last.valid = 1;
    }

    return 0;
}


/* the Authorization header's value, its length returned */

static int
ngx_gdrive_sigv4_authorization(ngx_gdrive_sigv4_t *s,
    const ngx_gdrive_sigv4_pair_t **h, const char *scope,
    const unsigned char *sig, char *auth, size_t size)
{
    int      n;
    char    *p, *last;
    size_t   i, j, k;

    p = auth;
    last = auth + size;

    n = snprintf(p, last - p, NGX_GDRIVE_SIGV4_ALGORITHM
                 " Credential=%.*s/%s,SignedHeaders=",
                 (int) s->access_key_len, s->access_key, scope);

    if (n < 0 || n >= last - p) {
        return -1;
    }

    p += n;

    for (i = 0; i < s->nheaders; i = k) {
        if (last - p < (ptrdiff_t) h[i]->name_len + 2) {
            return -1;
        }

        if (i) {
            *p++ = ';';
        }

        for (j = 0; j < h[i]->name_len; j++) {
            *p++ = (char) tolower((unsigned char) h[i]->name[j]);
        }

        k = ngx_gdrive_sigv4_next_name(h, i, s->nheaders);
    }

    if (last - p < (ptrdiff_t) sizeof(",Signature=") + 64) {
        return -1;
    }

    p += snprintf(p, last - p, ",Signature=");
    ngx_gdrive_hex(p, sig, 32);
    p += 64;
    *p = '\0';

    return (int) (p - auth);
}

void
ngx_gdrive_sigv4_date(time_t t, char *date)
{
    struct tm  tm;

    gmtime_r(&t, &tm);

    /* 16 characters and a NUL for any year of four digits */
    if (strftime(date, NGX_GDRIVE_SIGV4_DATE_LEN + 1, "%Y%m%dT%H%M%SZ", &tm)
        != NGX_GDRIVE_SIGV4_DATE_LEN)
    {
        date[0] = '\0';
    }
}


int
ngx_gdrive_sigv4_signing_key(const char *secret, size_t secret_len,
    const char *date, const char *region, size_t region_len,
    const char *service, unsigned char *key)
{
    int            rc;
    unsigned char  k[32], start[4 + 256];

    if (secret_len > 256) {
        return -1;
    }

    memcpy(start, "AWS4", 4);
    memcpy(start + 4, secret, secret_len);

    rc = ngx_gdrive_sigv4_hmac(start, 4 + secret_len, date, 8, k)
         || ngx_gdrive_sigv4_hmac(k, 32, region, region_len, k)
         || ngx_gdrive_sigv4_hmac(k, 32, service, strlen(service), k)
         || ngx_gdrive_sigv4_hmac(k, 32, "aws4_request", 12, key);

    memset(start, 0, sizeof(start));
    memset(k, 0, sizeof(k));

    return rc ? -1 : 0;
}


size_t
ngx_gdrive_sigv4_encode(char *dst, const char *src, size_t len,
    int keep_slash)
{
    size_t          i, n;
    unsigned char   c;

    n = 0;

    for (i = 0; i < len; i++) {
        c = (unsigned char) src[i];

        if (ngx_gdrive_sigv4_unreserved(c) || (keep_slash && c == '/')) {
            if (dst) {
                dst[n] = (char) c;
            }

            n++;
            continue;
        }

        if (dst) {
            dst[n] = '%';
            dst[n + 1] = ngx_gdrive_hex_upper[c >> 4];
            dst[n + 2] = ngx_gdrive_hex_upper[c & 0xf];
        }

        n += 3;
    }

    return n;
}


static void
ngx_gdrive_sigv4_flush(ngx_gdrive_sigv4_out_t *out)
{
    if (out->blen && EVP_DigestUpdate(out->md, out->buf, out->blen) != 1) {
        out->error = 1;
    }

    out->blen = 0;
}


static void
ngx_gdrive_sigv4_put(ngx_gdrive_sigv4_out_t *out, const char *p, size_t len)
{
    size_t  n;

    if (len == 0) {
        return;
    }

    if (out->blen + len > sizeof(out->buf)) {
        ngx_gdrive_sigv4_flush(out);
    }

    if (len <= sizeof(out->buf)) {
        memcpy(out->buf + out->blen, p, len);
        out->blen += len;

    } else if (EVP_DigestUpdate(out->md, p, len) != 1) {
        out->error = 1;
    }

    if (out->copy && out->len < out->size) {
        n = out->size - out->len;
        n = (len < n) ? len : n;
        memcpy(out->copy + out->len, p, n);
    }

    out->len += len;
}


static void
ngx_gdrive_sigv4_put_encoded(ngx_gdrive_sigv4_out_t *out, const char *p,
    size_t len, int keep_slash)
{
    char    buf[384];
    size_t  n;

    /* in slices that cannot outgrow the buffer: 3 bytes per source byte */

    while (len) {
        n = (len < 128) ? len : 128;
        ngx_gdrive_sigv4_put(out, buf,
                             ngx_gdrive_sigv4_encode(buf, p, n, keep_slash));
        p += n;
        len -= n;
    }
}


static void
ngx_gdrive_sigv4_put_lower(ngx_gdrive_sigv4_out_t *out, const char *p,
    size_t len)
{
    char    buf[64];
    size_t  i, n;

    while (len) {
        n = (len < sizeof(buf)) ? len : sizeof(buf);

        for (i = 0; i < n; i++) {
            buf[i] = (char) tolower((unsigned char) p[i]);
        }

        ngx_gdrive_sigv4_put(out, buf, n);
        p += n;
        len -= n;
    }
}


/* trimmed, with every run of blanks inside made one space */

static void
ngx_gdrive_sigv4_put_value(ngx_gdrive_sigv4_out_t *out, const char *p,
    size_t len)
{
    const char  *last, *start;

    last = p + len;

    while (p < last && (*p == ' ' || *p == '\t')) {
        p++;
    }

    while (last > p && (last[-1] == ' ' || last[-1] == '\t')) {
        last--;
    }

    while (p < last) {
        start = p;

        while (p < last && *p != ' ' && *p != '\t') {
            p++;
        }

        ngx_gdrive_sigv4_put(out, start, p - start);

        if (p == last) {
            break;
        }

        ngx_gdrive_sigv4_put(out, " ", 1);

        while (p < last && (*p == ' ' || *p == '\t')) {
            p++;
        }
    }
}


static int
ngx_gdrive_sigv4_unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')
           || (c >= '0' && c <= '9')
           || c == '-' || c == '.' || c == '_' || c == '~';
}


/* the next byte of the encoded form, -1 at the end */

static int
ngx_gdrive_sigv4_enc_next(ngx_gdrive_sigv4_enc_t *e)
{
    unsigned char  c;

    if (e->pending) {
        return e->hex[2 - e->pending--];
    }

    if (e->p == e->last) {
        return -1;
    }

    c = *e->p++;

    if (ngx_gdrive_sigv4_unreserved(c) || (e->keep_slash && c == '/')) {
        return c;
    }

    e->hex[0] = ngx_gdrive_hex_upper[c >> 4];
    e->hex[1] = ngx_gdrive_hex_upper[c & 0xf];
    e->pending = 2;

    return '%';
}


/* AWS sorts the encoded names and values by byte */

static int
ngx_gdrive_sigv4_enc_cmp(const char *a, size_t alen, const char *b,
    size_t blen)
{
    int                     ca, cb;
    ngx_gdrive_sigv4_enc_t  ea, eb;

    memset(&ea, 0, sizeof(ea));
    memset(&eb, 0, sizeof(eb));

    ea.p = (const unsigned char *) a;
    ea.last = ea.p + alen;
    eb.p = (const unsigned char *) b;
    eb.last = eb.p + blen;

    for ( ;; ) {
        ca = ngx_gdrive_sigv4_enc_next(&ea);
        cb = ngx_gdrive_sigv4_enc_next(&eb);

        if (ca != cb || ca == -1) {
            return ca - cb;
        }
    }
}


static int
ngx_gdrive_sigv4_query_cmp(const ngx_gdrive_sigv4_pair_t *a,
    const ngx_gdrive_sigv4_pair_t *b)
{
    int  rc;

    rc = ngx_gdrive_sigv4_enc_cmp(a->name, a->name_len, b->name, b->name_len);

    if (rc) {
        return rc;
    }

    return ngx_gdrive_sigv4_enc_cmp(a->value ? a->value : "", a->value_len,
                                    b->value ? b->value : "", b->value_len);
}


static int
ngx_gdrive_sigv4_name_cmp(const ngx_gdrive_sigv4_pair_t *a,
    const ngx_gdrive_sigv4_pair_t *b)
{
    int     ca, cb;
    size_t  i;

    for (i = 0; i < a->name_len && i < b->name_len; i++) {
        ca = tolower((unsigned char) a->name[i]);
        cb = tolower((unsigned char) b->name[i]);

        if (ca != cb) {
            return ca - cb;
        }
    }

    return (a->name_len > b->name_len) - (a->name_len < b->name_len);
}


static int
ngx_gdrive_sigv4_hmac(const unsigned char *key, size_t key_len,
    const char *data, size_t len, unsigned char *md)
{
    size_t         md_len;
    unsigned int   n;
    unsigned char  buf[EVP_MAX_MD_SIZE];
    OSSL_PARAM     params[2];

    static EVP_MAC_CTX  *ctx;

    /*
     * One HMAC-SHA256 context, set up once and given each key in turn:
     * HMAC() fetches the algorithms anew at every call, several times the
     * cost of the HMAC itself for a string to sign.
     */

    if (ctx == NULL) {
        EVP_MAC  *mac;

        mac = EVP_MAC_fetch(NULL, "HMAC", NULL);

        if (mac) {
            ctx = EVP_MAC_CTX_new(mac);
            EVP_MAC_free(mac);
        }

        params[0] = OSSL_PARAM_construct_utf8_string("digest", "SHA256", 0);
        params[1] = OSSL_PARAM_construct_end();

        if (ctx && EVP_MAC_CTX_set_params(ctx, params) != 1) {
            EVP_MAC_CTX_free(ctx);
            ctx = NULL;
        }
    }

    /* key and md may be the same buffer: the key is read first */

    if (ctx == NULL) {
        if (HMAC(EVP_sha256(), key, (int) key_len,
                 (const unsigned char *) data, len, buf, &n)
            == NULL || n != 32)
        {
            return -1;
        }

        memcpy(md, buf, 32);

        return 0;
    }

    if (EVP_MAC_init(ctx, key, key_len, NULL) != 1
        || EVP_MAC_update(ctx, (const unsigned char *) data, len) != 1
        || EVP_MAC_final(ctx, buf, &md_len, sizeof(buf)) != 1
        || md_len != 32)
    {
        return -1;
    }

    memcpy(md, buf, 32);

    return 0;
}


/*
 * SHA-256 (0) or MD5 (1), fetched from the provider once per process:
 * OpenSSL 3 looks EVP_sha256() up again at every digest's start, a lock
 * and a table search for each of a request's few digests.
 */

static const EVP_MD *
ngx_gdrive_sigv4_md(int md5)
{
    static EVP_MD  *fetched[2];

    if (fetched[md5] == NULL) {
        fetched[md5] = EVP_MD_fetch(NULL, md5 ? "MD5" : "SHA256", NULL);

        if (fetched[md5] == NULL) {
            return md5 ? EVP_md5() : EVP_sha256();
        }
    }

    return fetched[md5];
}


/* digests */

ngx_gdrive_digest_t *
ngx_gdrive_digest_create(int alg)
{
    EVP_MD_CTX  *md;

    md = EVP_MD_CTX_new();
    if (md == NULL) {
        return NULL;
    }

    if (EVP_DigestInit_ex(md,
                          ngx_gdrive_sigv4_md(alg == NGX_GDRIVE_DIGEST_MD5),
                          NULL)
        != 1)
    {
        EVP_MD_CTX_free(md);
        return NULL;
    }

    return (ngx_gdrive_digest_t *) md;
}


int
ngx_gdrive_digest_update(ngx_gdrive_digest_t *d, const void *p, size_t len)
{
    return EVP_DigestUpdate((EVP_MD_CTX *) d, p, len) == 1 ? 0 : -1;
}


int
ngx_gdrive_digest_final(ngx_gdrive_digest_t *d, unsigned char *out)
{
    EVP_MD_CTX  *md;

    md = (EVP_MD_CTX *) d;

    if (EVP_DigestFinal_ex(md, out, NULL) != 1
        || EVP_DigestInit_ex(md, EVP_MD_CTX_get0_md(md), NULL) != 1)
    {
        return -1;
    }

    return 0;
}


void
ngx_gdrive_digest_destroy(ngx_gdrive_digest_t *d)
{
    EVP_MD_CTX_free((EVP_MD_CTX *) d);
}


int
ngx_gdrive_sha256_hex(const void *p, size_t len, char *out)
{
    unsigned char  md[32];

    if (EVP_Digest(p, len, md, NULL, ngx_gdrive_sigv4_md(0), NULL) != 1) {
        return -1;
    }

    ngx_gdrive_hex(out, md, sizeof(md));
    out[NGX_GDRIVE_SHA256_HEX_LEN] = '\0';

    return 0;
}


int
ngx_gdrive_md5(const void *p, size_t len, unsigned char *out)
{
    return EVP_Digest(p, len, out, NULL, ngx_gdrive_sigv4_md(1), NULL) == 1
           ? 0 : -1;
}


void
ngx_gdrive_hex(char *dst, const unsigned char *src, size_t len)
{
    while (len--) {
        *dst++ = ngx_gdrive_hex_lower[*src >> 4];
        *dst++ = ngx_gdrive_hex_lower[*src++ & 0xf];
    }
}


size_t
ngx_gdrive_base64(char *dst, const unsigned char *src, size_t len)
{
    return (size_t) EVP_EncodeBlock((unsigned char *) dst, src, (int) len);
}
