
/*
 * nginx-gdrive-worker: the assertion of Google's JWT bearer grant.
 *
 * Infrastructure, free of nginx (OpenSSL and jansson only), linked alone by
 * the unit tests.  A service account's JSON key file (what Google issues:
 * "type": "service_account", client_email, private_key in PEM, token_uri)
 * is read once, at configuration time; an assertion is then a JWT with
 * the header {"alg":"RS256","typ":"JWT","kid":private_key_id} and the
 * claims iss (client_email), scope, aud (token_uri), iat, exp and, for
 * domain-wide delegation, sub (the user to impersonate), signed with
 * RSASSA-PKCS1-v1_5 over SHA-256 and base64url-encoded without padding
 * (RFC 7515, RFC 7519, Google's "Using OAuth 2.0 for Server to Server
 * Applications").
 */


#ifndef _NGX_GDRIVE_JWT_H_INCLUDED_
#define _NGX_GDRIVE_JWT_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>


#define NGX_GDRIVE_JWT_MAX_LIFETIME  3600    /* seconds: Google's limit */
#define NGX_GDRIVE_JWT_MAX_LEN       4096    /* an assertion, 2048-4096 bit
                                                keys and short claims */


typedef struct ngx_gdrive_jwt_key_s  ngx_gdrive_jwt_key_t;


/*
 * ngx_gdrive_jwt_key_parse(): a key file's text -> a key, or NULL with
 * a message in err that names the field at fault and never quotes the
 * private key.  The key's strings stay valid until ngx_gdrive_jwt_key_free().
 */
ngx_gdrive_jwt_key_t *ngx_gdrive_jwt_key_parse(const char *json, size_t len,
    char *err, size_t err_size);
void ngx_gdrive_jwt_key_free(ngx_gdrive_jwt_key_t *key);
const char *ngx_gdrive_jwt_key_email(ngx_gdrive_jwt_key_t *key);
const char *ngx_gdrive_jwt_key_token_uri(ngx_gdrive_jwt_key_t *key);
const char *ngx_gdrive_jwt_key_id(ngx_gdrive_jwt_key_t *key);


/*
 * ngx_gdrive_jwt_sign(): the assertion for scope, aud, sub (NULL: none;
 * the caller checks it is an e-mail address),
 * issued at iat (seconds since the epoch) for lifetime seconds (at most
 * NGX_GDRIVE_JWT_MAX_LIFETIME), into out; its length, or -1 when out is
 * too small or signing fails.
 */
int ngx_gdrive_jwt_sign(ngx_gdrive_jwt_key_t *key, const char *scope,
    const char *aud, const char *sub, int64_t iat, int64_t lifetime,
    char *out, size_t size);


#endif /* _NGX_GDRIVE_JWT_H_INCLUDED_ */
