/* unit tests of the JWT bearer assertion (src/ngx_gdrive_jwt.c) */

#include <string.h>
#include <stdlib.h>
#include <time.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include "ngx_gdrive_jwt.h"
#include "tap.h"


static char *
pem_of(EVP_PKEY *k)
{
    BIO   *bio;
    char  *data, *pem;
    long   n;

    bio = BIO_new(BIO_s_mem());
    PEM_write_bio_PrivateKey(bio, k, NULL, NULL, 0, NULL, NULL);
    n = BIO_get_mem_data(bio, &data);
    pem = strndup(data, n);
    BIO_free(bio);

    return pem;
}


static char *
key_file(const char *type, const char *email, const char *pem,
    const char *uri, const char *kid)
{
    char    *s;
    json_t  *o;

    o = json_object();
    if (type) json_object_set_new(o, "type", json_string(type));
    if (email) json_object_set_new(o, "client_email", json_string(email));
    if (pem) json_object_set_new(o, "private_key", json_string(pem));
    if (uri) json_object_set_new(o, "token_uri", json_string(uri));
    if (kid) json_object_set_new(o, "private_key_id", json_string(kid));
    s = json_dumps(o, 0);
    json_decref(o);

    return s;
}


static ngx_gdrive_jwt_key_t *
parse(const char *json, char *err)
{
    err[0] = '\0';
    return ngx_gdrive_jwt_key_parse(json, strlen(json), err, 256);
}


/* base64url -> bytes */
static size_t
unb64(const char *s, size_t len, unsigned char *out)
{
    int     n;
    char    buf[4096];
    size_t  i;

    memcpy(buf, s, len);
    for (i = 0; i < len; i++) {
        if (buf[i] == '-') buf[i] = '+';
        if (buf[i] == '_') buf[i] = '/';
    }
    while (len % 4) buf[len++] = '=';
    n = EVP_DecodeBlock(out, (unsigned char *) buf, (int) len);
    while (len && buf[len - 1] == '=') { len--; n--; }

    return n < 0 ? 0 : (size_t) n;
}


int
main(void)
{
    int                    n, i;
    char                   err[256], jwt[NGX_GDRIVE_JWT_MAX_LEN], *file, *pem;
    char                  *dot1, *dot2;
    double                 ms;
    size_t                 len;
    json_t                *claims, *header;
    EVP_PKEY              *rsa, *small, *ec, *other;
    EVP_MD_CTX            *md;
    unsigned char          buf[4096];
    struct timespec        t0, t1;
    ngx_gdrive_jwt_key_t  *key;

    rsa = EVP_RSA_gen(2048);
    small = EVP_RSA_gen(1024);
    other = EVP_RSA_gen(2048);
    ec = EVP_EC_gen("P-256");
    pem = pem_of(rsa);

    /* a key file as Google issues it */

    file = key_file("service_account", "sa@proj.iam.gserviceaccount.com",
                    pem, "https://oauth2.googleapis.com/token", "ab12cd");
    key = parse(file, err);
    ok(key != NULL, "a key file parses (%s)", err);
    free(file);

    ok(strcmp(ngx_gdrive_jwt_key_email(key),
              "sa@proj.iam.gserviceaccount.com") == 0, "its client_email");
    ok(strcmp(ngx_gdrive_jwt_key_token_uri(key),
              "https://oauth2.googleapis.com/token") == 0, "its token_uri");
    ok(strcmp(ngx_gdrive_jwt_key_id(key), "ab12cd") == 0, "its key id");

    n = ngx_gdrive_jwt_sign(key, "https://www.googleapis.com/auth/drive",
                            "https://oauth2.googleapis.com/token",
                            "alice@example.com", 1700000000, 3600,
                            jwt, sizeof(jwt));
    ok(n > 0 && (size_t) n == strlen(jwt), "an assertion (%d bytes)", n);

    dot1 = strchr(jwt, '.');
    dot2 = dot1 ? strchr(dot1 + 1, '.') : NULL;
    ok(dot1 && dot2 && !strchr(dot2 + 1, '.'), "three parts");
    ok(strcspn(jwt, "+/=") == (size_t) n, "base64url, no padding");

    len = unb64(jwt, dot1 - jwt, buf);
    header = json_loadb((char *) buf, len, 0, NULL);
    ok(header && strcmp(json_string_value(json_object_get(header, "alg")),
                        "RS256") == 0
       && strcmp(json_string_value(json_object_get(header, "kid")),
                 "ab12cd") == 0, "header: RS256, kid");
    json_decref(header);

    len = unb64(dot1 + 1, dot2 - dot1 - 1, buf);
    claims = json_loadb((char *) buf, len, 0, NULL);
    ok(claims != NULL, "the claims are JSON");
    ok(strcmp(json_string_value(json_object_get(claims, "iss")),
              "sa@proj.iam.gserviceaccount.com") == 0, "iss");
    ok(strcmp(json_string_value(json_object_get(claims, "sub")),
              "alice@example.com") == 0, "sub");
    ok(strcmp(json_string_value(json_object_get(claims, "aud")),
              "https://oauth2.googleapis.com/token") == 0, "aud");
    ok(strcmp(json_string_value(json_object_get(claims, "scope")),
              "https://www.googleapis.com/auth/drive") == 0, "scope");
    ok(json_integer_value(json_object_get(claims, "iat")) == 1700000000
       && json_integer_value(json_object_get(claims, "exp")) == 1700003600,
       "iat and exp");
    json_decref(claims);

    /* the signature verifies with the public key, not with another */

    len = unb64(dot2 + 1, strlen(dot2 + 1), buf);
    md = EVP_MD_CTX_new();
    EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, rsa);
    ok(EVP_DigestVerify(md, buf, len, (unsigned char *) jwt, dot2 - jwt)
       == 1, "the signature verifies");
    EVP_MD_CTX_free(md);

    md = EVP_MD_CTX_new();
    EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, other);
    ok(EVP_DigestVerify(md, buf, len, (unsigned char *) jwt, dot2 - jwt)
       != 1, "not with another key");
    EVP_MD_CTX_free(md);

    /* no sub without delegation; limits */

    n = ngx_gdrive_jwt_sign(key, "s", "a", NULL, 1700000000, 60, jwt,
                            sizeof(jwt));
    len = unb64(strchr(jwt, '.') + 1,
                strchr(strchr(jwt, '.') + 1, '.') - strchr(jwt, '.') - 1,
                buf);
    claims = json_loadb((char *) buf, len, 0, NULL);
    ok(n > 0 && json_object_get(claims, "sub") == NULL, "no sub: none");
    json_decref(claims);

    ok(ngx_gdrive_jwt_sign(key, "s", "a", NULL, 1700000000, 3601, jwt,
                           sizeof(jwt)) == -1, "more than an hour: refused");
    ok(ngx_gdrive_jwt_sign(key, "s", "a", NULL, 1700000000, 60, jwt, 200)
       == -1, "too small a buffer: refused");

    /* the time one signature takes, for the README */

    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (i = 0; i < 200; i++) {
        ngx_gdrive_jwt_sign(key, "https://www.googleapis.com/auth/drive",
                            "https://oauth2.googleapis.com/token",
                            "alice@example.com", 1700000000 + i, 3600,
                            jwt, sizeof(jwt));
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    ms = ((t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6)
         / 200;
    printf("# one RS256 assertion (2048-bit key): %.3f ms\n", ms);

    ngx_gdrive_jwt_key_free(key);

    /* what is wrong with a key file, named */

    ok(parse("{", err) == NULL && strstr(err, "is not JSON"), "not JSON: %s",
       err);
    ok(parse("[]", err) == NULL && strstr(err, "not a JSON object"),
       "not an object: %s", err);

    file = key_file("authorized_user", "a@b.c", pem, "https://x/t", NULL);
    ok(parse(file, err) == NULL && strstr(err, "\"type\""), "%s", err);
    free(file);

    file = key_file(NULL, NULL, pem, "https://x/t", NULL);
    ok(parse(file, err) == NULL && strstr(err, "\"client_email\" is missing"),
       "%s", err);
    free(file);

    file = key_file(NULL, "a@b.c", NULL, "https://x/t", NULL);
    ok(parse(file, err) == NULL && strstr(err, "\"private_key\" is missing"),
       "%s", err);
    free(file);

    file = key_file(NULL, "a@b.c", "-----BEGIN PRIVATE KEY-----\nAAAA\n"
                    "-----END PRIVATE KEY-----\n", "https://x/t", NULL);
    ok(parse(file, err) == NULL && strstr(err, "not a PEM private key")
       && !strstr(err, "AAAA"), "%s", err);
    free(file);

    free(pem);
    pem = pem_of(ec);
    file = key_file(NULL, "a@b.c", pem, "https://x/t", NULL);
    ok(parse(file, err) == NULL && strstr(err, "not an RSA key"), "%s", err);
    free(file);
    free(pem);

    pem = pem_of(small);
    file = key_file(NULL, "a@b.c", pem, "https://x/t", NULL);
    ok(parse(file, err) == NULL && strstr(err, "1024 bits"), "%s", err);
    free(file);
    free(pem);

    pem = pem_of(rsa);
    file = key_file(NULL, "a@b.c", pem, "ftp://x/t", NULL);
    ok(parse(file, err) == NULL && strstr(err, "\"token_uri\""), "%s", err);
    free(file);

    file = key_file(NULL, "not-an-address", pem, "https://x/t", NULL);
    ok(parse(file, err) == NULL && strstr(err, "e-mail"), "%s", err);
    free(file);
    free(pem);

    EVP_PKEY_free(rsa);
    EVP_PKEY_free(small);
    EVP_PKEY_free(other);
    EVP_PKEY_free(ec);

    return done_testing();
}
