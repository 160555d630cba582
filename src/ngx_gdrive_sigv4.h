
/*
 * nginx-gdrive-worker: AWS Signature Version 4 and the digests it needs.
 *
 * Infrastructure, free of nginx: the S3 client signs with it, and the
 * unit tests and the end-to-end signer check link it alone.  It allocates
 * nothing while signing: the canonical request is hashed as it is
 * produced, so a request costs no memory beyond the caller's strings.
 */


#ifndef _NGX_GDRIVE_SIGV4_H_INCLUDED_
#define _NGX_GDRIVE_SIGV4_H_INCLUDED_


#include <stddef.h>
#include <time.h>


#define NGX_GDRIVE_SIGV4_MAX_PAIRS     32     /* headers or query params */
#define NGX_GDRIVE_SIGV4_DATE_LEN      16     /* 20130524T000000Z */
#define NGX_GDRIVE_SHA256_HEX_LEN      64
#define NGX_GDRIVE_MD5_LEN             16
#define NGX_GDRIVE_MD5_BASE64_LEN      24

#define NGX_GDRIVE_SIGV4_EMPTY_SHA256                                         \
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define NGX_GDRIVE_SIGV4_UNSIGNED      "UNSIGNED-PAYLOAD"


/* a header or a query parameter, not encoded; a NULL value: "uploads" */
typedef struct {
    const char            *name;
    size_t                 name_len;
    const char            *value;
    size_t                 value_len;
} ngx_gdrive_sigv4_pair_t;


typedef struct {
    const char            *method;          /* "PUT" */
    const char            *path;            /* "/bucket/key", not encoded */
    size_t                 path_len;
    const ngx_gdrive_sigv4_pair_t  *query;
    size_t                 nquery;
    /*
     * every header that is to be signed, as sent: host, x-amz-date and
     * x-amz-content-sha256 among them (S3 requires the three)
     */
    const ngx_gdrive_sigv4_pair_t  *headers;
    size_t                 nheaders;
    const char            *payload_hash;    /* hex sha256 or UNSIGNED */
    const char            *date;            /* the x-amz-date value */
    const char            *region;
    size_t                 region_len;
    const char            *service;         /* "s3" */
    const char            *access_key;
    size_t                 access_key_len;
    const char            *secret_key;
    size_t                 secret_key_len;

    /* optional: a copy of the canonical request, for tests */
    char                  *canonical;
    size_t                 canonical_size;
    size_t                 canonical_len;
} ngx_gdrive_sigv4_t;


/*
 * Writes the Authorization header's value into auth (NUL-terminated) and
 * returns its length; -1 when the input is unusable (too many pairs, a
 * bad date) or auth is too small.  A size of 512 plus the lengths of the
 * signed header names always suffices.
 */
int ngx_gdrive_sigv4_sign(ngx_gdrive_sigv4_t *s, char *auth, size_t size);

/* "20130524T000000Z" of a time, into 17 bytes */
void ngx_gdrive_sigv4_date(time_t t, char *date);

/* the derived key of a day, region and service, 32 bytes */
int ngx_gdrive_sigv4_signing_key(const char *secret, size_t secret_len,
    const char *date, const char *region, size_t region_len,
    const char *service, unsigned char *key);

/*
 * AWS's UriEncode: all but A-Za-z0-9-._~ as %XX, '/' kept when
 * keep_slash (an S3 path); dst may be NULL to learn the length; returns
 * the length written, no NUL.
 */
size_t ngx_gdrive_sigv4_encode(char *dst, const char *src, size_t len,
    int keep_slash);


/* digests, incremental (OpenSSL EVP) */

typedef struct ngx_gdrive_digest_s  ngx_gdrive_digest_t;

#define NGX_GDRIVE_DIGEST_SHA256  0
#define NGX_GDRIVE_DIGEST_MD5     1

ngx_gdrive_digest_t *ngx_gdrive_digest_create(int alg);
int ngx_gdrive_digest_update(ngx_gdrive_digest_t *d, const void *p,
    size_t len);
/* the raw digest into out (32 or 16 bytes); the context starts over */
int ngx_gdrive_digest_final(ngx_gdrive_digest_t *d, unsigned char *out);
void ngx_gdrive_digest_destroy(ngx_gdrive_digest_t *d);

/* hex of a whole buffer into out (65 bytes, NUL-terminated) */
int ngx_gdrive_sha256_hex(const void *p, size_t len, char *out);
int ngx_gdrive_md5(const void *p, size_t len, unsigned char *out);

/* lower-case hex of len bytes into dst (2 * len bytes, no NUL) */
void ngx_gdrive_hex(char *dst, const unsigned char *src, size_t len);
/* base64 of len bytes into dst, NUL-terminated; returns the length */
size_t ngx_gdrive_base64(char *dst, const unsigned char *src, size_t len);


#endif /* _NGX_GDRIVE_SIGV4_H_INCLUDED_ */
