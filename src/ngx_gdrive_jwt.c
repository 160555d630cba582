
/*
 * nginx-gdrive-worker: the assertion of Google's JWT bearer grant (see
 * ngx_gdrive_jwt.h).
 *
 * Infrastructure, free of nginx.  Signing is one RSA private-key operation
 * (about a millisecond with a 2048-bit key; `make unit` prints the time
 * measured), made once per subject and token lifetime.
 */


#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "ngx_gdrive_jwt.h"


#define NGX_GDRIVE_JWT_MIN_BITS  2048


struct ngx_gdrive_jwt_key_s {
    EVP_PKEY   *pkey;
    char       *email;
    char       *token_uri;
    char       *kid;          /* "" when the file has none */
};


static const char *ngx_gdrive_jwt_string(json_t *o, const char *name,
    int required, char *err, size_t err_size);
static int ngx_gdrive_jwt_load_pem(ngx_gdrive_jwt_key_t *key,
    const char *pem, char *err, size_t err_size);
static size_t ngx_gdrive_jwt_b64url(char *dst, const unsigned char *src,
    size_t len);
static int ngx_gdrive_jwt_part(json_t *o, char *out, size_t size);


ngx_gdrive_jwt_key_t *
ngx_gdrive_jwt_key_parse(const char *json, size_t len, char *err,
    size_t err_size)
{
    json_t                *o;
    const char            *type, *email, *pem, *uri, *kid;
    json_error_t           jerr;
    ngx_gdrive_jwt_key_t  *key;

    o = json_loadb(json, len, 0, &jerr);

    if (o == NULL) {
        snprintf(err, err_size, "it is not JSON (line %d: %s)", jerr.line,
                 jerr.text);
        return NULL;
    }

    if (!json_is_object(o)) {
        snprintf(err, err_size, "it is not a JSON object");
        json_decref(o);
        return NULL;
    }

    key = calloc(1, sizeof(ngx_gdrive_jwt_key_t));
    if (key == NULL) {
        snprintf(err, err_size, "out of memory");
        json_decref(o);
        return NULL;
    }

    type = ngx_gdrive_jwt_string(o, "type", 0, err, err_size);
    email = ngx_gdrive_jwt_string(o, "client_email", 1, err, err_size);
    pem = ngx_gdrive_jwt_string(o, "private_key", 1, err, err_size);
    uri = ngx_gdrive_jwt_string(o, "token_uri", 1, err, err_size);
    kid = ngx_gdrive_jwt_string(o, "private_key_id", 0, err, err_size);

    if (email == NULL || pem == NULL || uri == NULL || kid == NULL
        || type == NULL)
    {
        goto failed;
    }

    if (type[0] && strcmp(type, "service_account") != 0) {
        snprintf(err, err_size, "its \"type\" is \"%.64s\", not "
                 "\"service_account\"", type);
        goto failed;
    }

    if (strchr(email, '@') == NULL || strcspn(email, " \"\\") != strlen(email))
    {
        snprintf(err, err_size, "its \"client_email\" is not an e-mail "
                 "address");
        goto failed;
    }

    if (strncmp(uri, "https://", 8) != 0 && strncmp(uri, "http://", 7) != 0)
    {
        snprintf(err, err_size, "its \"token_uri\" is not an http(s) "
                 "URL");
        goto failed;
    }

    if (strlen(kid) > 128 || strspn(kid, "0123456789abcdefABCDEF")
                             != strlen(kid))
    {
        snprintf(err, err_size, "its \"private_key_id\" is not a key "
                 "id");
        goto failed;
    }

    if (ngx_gdrive_jwt_load_pem(key, pem, err, err_size) != 0) {
        goto failed;
    }

    key->email = strdup(email);
    key->token_uri = strdup(uri);
    key->kid = strdup(kid);

    if (key->email == NULL || key->token_uri == NULL || key->kid == NULL) {
        snprintf(err, err_size, "out of memory");
        goto failed;
    }

    json_decref(o);

    return key;

failed:

    json_decref(o);
    ngx_gdrive_jwt_key_free(key);

    return NULL;
}


void
ngx_gdrive_jwt_key_free(ngx_gdrive_jwt_key_t *key)
{
    if (key == NULL) {
        return;
    }

    EVP_PKEY_free(key->pkey);
    free(key->email);
    free(key->token_uri);
    free(key->kid);
    free(key);
}


const char *
ngx_gdrive_jwt_key_email(ngx_gdrive_jwt_key_t *key)
{
    return key->email;
}


const char *
ngx_gdrive_jwt_key_token_uri(ngx_gdrive_jwt_key_t *key)
{
    return key->token_uri;
}


const char *
ngx_gdrive_jwt_key_id(ngx_gdrive_jwt_key_t *key)
{
    return key->kid;
}


/* a string member: its value, "" when optional and absent, else NULL */

static const char *
ngx_gdrive_jwt_string(json_t *o, const char *name, int required, char *err,
    size_t err_size)
{
    json_t  *v;

    v = json_object_get(o, name);

    if (v == NULL && !required) {
        return "";
    }

    if (!json_is_string(v) || json_string_length(v) == 0
        || strlen(json_string_value(v)) != json_string_length(v))
    {
        snprintf(err, err_size, "its \"%s\" is %s", name,
                 v == NULL ? "missing" : "not a non-empty string");
        return NULL;
    }

    return json_string_value(v);
}


static int
ngx_gdrive_jwt_load_pem(ngx_gdrive_jwt_key_t *key, const char *pem,
    char *err, size_t err_size)
{
    BIO  *bio;

    bio = BIO_new_mem_buf(pem, (int) strlen(pem));
    if (bio == NULL) {
        snprintf(err, err_size, "out of memory");
        return -1;
    }

    /* no passphrase callback: a key file's key is not encrypted */
    key->pkey = PEM_read_bio_PrivateKey(bio, NULL, NULL, (void *) "");
    BIO_free(bio);

    if (key->pkey == NULL) {
        snprintf(err, err_size, "its \"private_key\" is not a PEM private "
                 "key");
        return -1;
    }

    if (EVP_PKEY_get_base_id(key->pkey) != EVP_PKEY_RSA) {
        snprintf(err, err_size, "its \"private_key\" is not an RSA key "
                 "(RS256 needs one)");
        return -1;
    }

    if (EVP_PKEY_get_bits(key->pkey) < NGX_GDRIVE_JWT_MIN_BITS) {
        snprintf(err, err_size, "its \"private_key\" has %d bits, fewer "
                 "than "
                 "%d", EVP_PKEY_get_bits(key->pkey), NGX_GDRIVE_JWT_MIN_BITS);
        return -1;
    }

    return 0;
}


int
ngx_gdrive_jwt_sign(ngx_gdrive_jwt_key_t *key, const char *scope,
    const char *aud, const char *sub, int64_t iat, int64_t lifetime,
    char *out, size_t size)
{
    int             rc;
    size_t          n, m, siglen;
    json_t         *header, *claims;
    EVP_MD_CTX     *md;
    unsigned char   sig[1024];

    if (lifetime <= 0 || lifetime > NGX_GDRIVE_JWT_MAX_LIFETIME) {
        return -1;
    }

    header = json_pack("{s:s, s:s}", "alg", "RS256", "typ", "JWT");
    claims = json_pack("{s:s, s:s, s:s, s:I, s:I}",
                       "iss", key->email, "scope", scope, "aud", aud,
                       "iat", (json_int_t) iat,
                       "exp", (json_int_t) (iat + lifetime));

    rc = -1;

    if (header == NULL || claims == NULL
        || (key->kid[0]
            && json_object_set_new(header, "kid", json_string(key->kid)))
        || (sub && json_object_set_new(claims, "sub", json_string(sub))))
    {
        goto done;
    }

    n = ngx_gdrive_jwt_part(header, out, size);
    if (n == 0 || n + 1 >= size) {
        goto done;
    }

    out[n++] = '.';

    m = ngx_gdrive_jwt_part(claims, out + n, size - n);
    if (m == 0) {
        goto done;
    }

    n += m;

    /* the signature: RSASSA-PKCS1-v1_5 with SHA-256 over header.claims */

    md = EVP_MD_CTX_new();
    siglen = sizeof(sig);

    if (md == NULL
        || EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, key->pkey) != 1
        || EVP_DigestSign(md, NULL, &siglen, (unsigned char *) out, n) != 1
        || siglen > sizeof(sig)
        || EVP_DigestSign(md, sig, &siglen, (unsigned char *) out, n) != 1)
    {
        EVP_MD_CTX_free(md);
        goto done;
    }

    EVP_MD_CTX_free(md);

    if (n + 1 + (siglen + 2) / 3 * 4 + 1 > size) {
        goto done;
    }

    out[n++] = '.';
    n += ngx_gdrive_jwt_b64url(out + n, sig, siglen);
    out[n] = '\0';

    rc = (int) n;

done:

    json_decref(header);
    json_decref(claims);

    return rc;
}


/* a JSON object, compact and in insertion order, base64url into out */

static int
ngx_gdrive_jwt_part(json_t *o, char *out, size_t size)
{
    int      n;
    char    *s;
    size_t   len;

    s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (s == NULL) {
        return 0;
    }

    len = strlen(s);
    n = 0;

    if ((len + 2) / 3 * 4 + 1 <= size) {
        n = (int) ngx_gdrive_jwt_b64url(out, (unsigned char *) s, len);
        out[n] = '\0';
    }

    free(s);

    return n;
}


/* base64url without padding; dst has room for (len + 2) / 3 * 4 + 1 */

static size_t
ngx_gdrive_jwt_b64url(char *dst, const unsigned char *src, size_t len)
{
    int      n;
    char    *p;

    n = EVP_EncodeBlock((unsigned char *) dst, src, (int) len);

    while (n > 0 && dst[n - 1] == '=') {
        n--;
    }

    for (p = dst; p < dst + n; p++) {
        if (*p == '+') {
            *p = '-';

        } else if (*p == '/') {
            *p = '_';
        }
    }

    dst[n] = '\0';

    return (size_t) n;
}
