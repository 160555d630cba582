
/*
 * nginx-gdrive-worker: AWS STS AssumeRoleWithWebIdentity, the request and
 * the answer.
 *
 * Infrastructure, free of nginx, linked alone by the unit tests.  The call
 * is an unsigned POST of a form (Action, Version 2011-06-15, RoleArn,
 * RoleSessionName, WebIdentityToken, DurationSeconds); the answer is XML
 * with Credentials (AccessKeyId, SecretAccessKey, SessionToken,
 * Expiration), or an ErrorResponse with a Code and a Message (STS API
 * Reference).  The answer is untrusted input: every value is bounded,
 * checked for its syntax and has its XML entities decoded.
 */


#ifndef _NGX_GDRIVE_STS_H_INCLUDED_
#define _NGX_GDRIVE_STS_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>


#define NGX_GDRIVE_STS_KEY_MAX      128
#define NGX_GDRIVE_STS_SECRET_MAX   128
#define NGX_GDRIVE_STS_TOKEN_MAX    8192
#define NGX_GDRIVE_STS_CODE_MAX     64
#define NGX_GDRIVE_STS_MESSAGE_MAX  256


typedef struct {
    char        access_key[NGX_GDRIVE_STS_KEY_MAX + 1];
    char        secret_key[NGX_GDRIVE_STS_SECRET_MAX + 1];
    char        session_token[NGX_GDRIVE_STS_TOKEN_MAX + 1];
    int64_t     expiration;               /* seconds since the epoch */

    /* an ErrorResponse */
    char        code[NGX_GDRIVE_STS_CODE_MAX + 1];
    char        message[NGX_GDRIVE_STS_MESSAGE_MAX + 1];
} ngx_gdrive_sts_answer_t;


/*
 * ngx_gdrive_sts_request(): the form body into out; its length, or -1
 * when out is too small.  duration 0: STS's default.
 */
int ngx_gdrive_sts_request(const char *role_arn, const char *session,
    const char *token, size_t token_len, unsigned duration, char *out,
    size_t size);

/*
 * ngx_gdrive_sts_parse(): 0 and the credentials; 1 and code/message for
 * an ErrorResponse; -1 and a reason in message when the answer is neither.
 */
int ngx_gdrive_sts_parse(const char *xml, size_t len,
    ngx_gdrive_sts_answer_t *a);

/* an ISO 8601 UTC time ("2026-12-04T18:00:00Z", fractions allowed) */
int ngx_gdrive_sts_time(const char *s, size_t len, int64_t *t);


#endif /* _NGX_GDRIVE_STS_H_INCLUDED_ */
