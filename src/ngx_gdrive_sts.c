
/*
 * nginx-gdrive-worker: AWS STS AssumeRoleWithWebIdentity, the request and
 * the answer (see ngx_gdrive_sts.h).
 *
 * Infrastructure, free of nginx.  The answer is read as the flat document
 * STS sends: each value is the text of the one element of its name, which
 * holds no markup; an element that appears twice, holds markup or is too
 * long makes the answer unreadable rather than guessed at.
 */


#include <stdio.h>
#include <string.h>

#include "ngx_gdrive_sts.h"


static int ngx_gdrive_sts_element(const char *xml, size_t len,
    const char *name, char *out, size_t max);
static int ngx_gdrive_sts_entity(const char *p, const char *last,
    char *c);
static const char *ngx_gdrive_sts_find(const char *p, const char *last,
    const char *s, size_t n);
static size_t ngx_gdrive_sts_encode(char *dst, const char *src, size_t len);
static int ngx_gdrive_sts_charset(const char *s, const char *set);


int
ngx_gdrive_sts_request(const char *role_arn, const char *session,
    const char *token, size_t token_len, unsigned duration, char *out,
    size_t size)
{
    int     n;
    size_t  need, len;

    need = sizeof("Action=AssumeRoleWithWebIdentity&Version=2011-06-15"
                  "&RoleArn=&RoleSessionName=&WebIdentityToken="
                  "&DurationSeconds=4294967295")
           + 3 * (strlen(role_arn) + strlen(session) + token_len);

    if (need > size) {
        return -1;
    }

    len = sprintf(out, "Action=AssumeRoleWithWebIdentity&Version=2011-06-15"
                  "&RoleArn=");
    len += ngx_gdrive_sts_encode(out + len, role_arn, strlen(role_arn));
    len += sprintf(out + len, "&RoleSessionName=");
    len += ngx_gdrive_sts_encode(out + len, session, strlen(session));
    len += sprintf(out + len, "&WebIdentityToken=");
    len += ngx_gdrive_sts_encode(out + len, token, token_len);

    if (duration) {
        n = sprintf(out + len, "&DurationSeconds=%u", duration);
        len += n;
    }

    return (int) len;
}


int
ngx_gdrive_sts_parse(const char *xml, size_t len, ngx_gdrive_sts_answer_t *a)
{
    int          rc;
    char         expiration[64], *p;
    const char  *last;

    memset(a, 0, sizeof(ngx_gdrive_sts_answer_t));
    last = xml + len;

    if (ngx_gdrive_sts_find(xml, last, "<ErrorResponse", 14)
        || ngx_gdrive_sts_find(xml, last, "<Error>", 7))
    {
        rc = ngx_gdrive_sts_element(xml, len, "Code", a->code,
                                    NGX_GDRIVE_STS_CODE_MAX);
        if (rc != 1
            || !ngx_gdrive_sts_charset(a->code, "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                       "abcdefghijklmnopqrstuvwxyz"
                                       "0123456789._-"))
        {
            snprintf(a->message, sizeof(a->message),
                     "an STS error without a readable Code");
            a->code[0] = '\0';
            return -1;
        }

        /* a message that does not read is left out, not guessed */
        if (ngx_gdrive_sts_element(xml, len, "Message", a->message,
                                   NGX_GDRIVE_STS_MESSAGE_MAX) != 1)
        {
            a->message[0] = '\0';
        }

        /* it is logged and shown: printable ASCII only */

        for (p = a->message; *p; p++) {
            if (*p < 0x20 || *p >= 0x7f) {
                *p = '?';
            }
        }

        return 1;
    }

    if (ngx_gdrive_sts_element(xml, len, "AccessKeyId", a->access_key,
                               NGX_GDRIVE_STS_KEY_MAX) != 1
        || ngx_gdrive_sts_element(xml, len, "SecretAccessKey", a->secret_key,
                                  NGX_GDRIVE_STS_SECRET_MAX) != 1
        || ngx_gdrive_sts_element(xml, len, "SessionToken", a->session_token,
                                  NGX_GDRIVE_STS_TOKEN_MAX) != 1
        || ngx_gdrive_sts_element(xml, len, "Expiration", expiration,
                                  sizeof(expiration) - 1) != 1)
    {
        snprintf(a->message, sizeof(a->message), "the answer has no "
                 "readable Credentials (AccessKeyId, SecretAccessKey, "
                 "SessionToken, Expiration)");
        goto failed;
    }

    if (strlen(a->access_key) < 16
        || !ngx_gdrive_sts_charset(a->access_key,
                                   "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"))
    {
        snprintf(a->message, sizeof(a->message), "AccessKeyId is not a key "
                 "id");
        goto failed;
    }

    /* printable, no blanks: they go into headers and the signature */

    if (!ngx_gdrive_sts_charset(a->secret_key, NULL)
        || !ngx_gdrive_sts_charset(a->session_token, NULL))
    {
        snprintf(a->message, sizeof(a->message), "SecretAccessKey or "
                 "SessionToken holds characters a header cannot");
        goto failed;
    }

    if (ngx_gdrive_sts_time(expiration, strlen(expiration), &a->expiration)
        != 0)
    {
        snprintf(a->message, sizeof(a->message), "Expiration is not an "
                 "ISO 8601 time");
        goto failed;
    }

    return 0;

failed:

    memset(a->secret_key, 0, sizeof(a->secret_key));
    memset(a->session_token, 0, sizeof(a->session_token));
    a->access_key[0] = '\0';

    return -1;
}


/*
 * the text of the one element "name": 1 and its decoded text in out (at
 * most max bytes), 0 when there is none, -1 when it cannot be read
 */

static int
ngx_gdrive_sts_element(const char *xml, size_t len, const char *name,
    char *out, size_t max)
{
    char         open[48], close[48], c;
    size_t       n, on, cn;
    const char  *p, *last, *end;

    on = snprintf(open, sizeof(open), "<%s>", name);
    cn = snprintf(close, sizeof(close), "</%s>", name);
    last = xml + len;

    p = ngx_gdrive_sts_find(xml, last, open, on);
    if (p == NULL) {
        return 0;
    }

    p += on;

    end = ngx_gdrive_sts_find(p, last, close, cn);
    if (end == NULL || ngx_gdrive_sts_find(end + cn, last, open, on)) {
        return -1;
    }

    for (n = 0; p < end; n++) {
        if (n == max || *p == '<' || *p == '\0') {
            return -1;
        }

        if (*p == '&') {
            p += ngx_gdrive_sts_entity(p, end, &c);
            if (c == '\0') {
                return -1;
            }

            out[n] = c;
            continue;
        }

        out[n] = *p++;
    }

    out[n] = '\0';

    return 1;
}


/* an entity at p: its length, and its character (NUL: not one we read) */

static int
ngx_gdrive_sts_entity(const char *p, const char *last, char *c)
{
    size_t        i;
    unsigned      v;
    const char   *s;

    static const struct {
        const char  *name;
        char         c;
    } named[] = {
        { "&amp;", '&' }, { "&lt;", '<' }, { "&gt;", '>' },
        { "&quot;", '"' }, { "&apos;", '\'' },
    };

    *c = '\0';

    for (i = 0; i < sizeof(named) / sizeof(named[0]); i++) {
        if ((size_t) (last - p) >= strlen(named[i].name)
            && memcmp(p, named[i].name, strlen(named[i].name)) == 0)
        {
            *c = named[i].c;
            return (int) strlen(named[i].name);
        }
    }

    /* a character reference to printable ASCII: &#NN; or &#xNN; */

    if (last - p < 4 || p[1] != '#') {
        return 1;
    }

    v = 0;
    s = p + 2;

    if (*s == 'x' || *s == 'X') {
        for (s++; s < last && s - p < 8 && strchr("0123456789abcdefABCDEF",
                                                  *s) && *s; s++)
        {
            v = v * 16 + (*s <= '9' ? *s - '0' : (*s | 0x20) - 'a' + 10);
        }

    } else {
        for ( /* void */ ; s < last && s - p < 8 && *s >= '0' && *s <= '9';
             s++)
        {
            v = v * 10 + (*s - '0');
        }
    }

    if (s < last && *s == ';' && v >= 0x20 && v < 0x7f) {
        *c = (char) v;
        return (int) (s + 1 - p);
    }

    return 1;
}


static const char *
ngx_gdrive_sts_find(const char *p, const char *last, const char *s, size_t n)
{
    for ( /* void */ ; (size_t) (last - p) >= n; p++) {
        if (*p == *s && memcmp(p, s, n) == 0) {
            return p;
        }
    }

    return NULL;
}


/* application/x-www-form-urlencoded, unreserved characters kept */

static size_t
ngx_gdrive_sts_encode(char *dst, const char *src, size_t len)
{
    char           *p;
    size_t          i;
    unsigned char   c;

    static const char  hex[] = "0123456789ABCDEF";

    for (p = dst, i = 0; i < len; i++) {
        c = (unsigned char) src[i];

        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')
            || (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_'
            || c == '~')
        {
            *p++ = (char) c;

        } else {
            *p++ = '%';
            *p++ = hex[c >> 4];
            *p++ = hex[c & 0xf];
        }
    }

    *p = '\0';

    return p - dst;
}


/* every character in set (NULL: printable ASCII but the blank), not empty */

static int
ngx_gdrive_sts_charset(const char *s, const char *set)
{
    if (*s == '\0') {
        return 0;
    }

    for ( /* void */ ; *s; s++) {
        if (set ? strchr(set, *s) == NULL : (*s <= 0x20 || *s >= 0x7f)) {
            return 0;
        }
    }

    return 1;
}


int
ngx_gdrive_sts_time(const char *s, size_t len, int64_t *t)
{
    int       i, v[6];
    int64_t   y, m, d, era, yoe, doy, doe;
    size_t    at;

    static const char  sep[] = "--T::";
    static const int   width[] = { 4, 2, 2, 2, 2, 2 };

    at = 0;

    for (i = 0; i < 6; i++) {
        int  k;

        if (i > 0) {
            if (at >= len || s[at] != sep[i - 1]) {
                return -1;
            }

            at++;
        }

        v[i] = 0;

        for (k = 0; k < width[i]; k++, at++) {
            if (at >= len || s[at] < '0' || s[at] > '9') {
                return -1;
            }

            v[i] = v[i] * 10 + (s[at] - '0');
        }
    }

    /* fractions of a second, then Z */

    if (at < len && s[at] == '.') {
        for (at++; at < len && s[at] >= '0' && s[at] <= '9'; at++) {
            /* void */
        }
    }

    if (at + 1 != len || s[at] != 'Z'
        || v[1] < 1 || v[1] > 12 || v[2] < 1 || v[2] > 31 || v[3] > 23
        || v[4] > 59 || v[5] > 60)
    {
        return -1;
    }

    /* days from the civil date (proleptic Gregorian) */

    y = v[0] - (v[1] <= 2);
    m = v[1];
    d = v[2];
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = y - era * 400;
    doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;

    *t = ((era * 146097 + doe - 719468) * 86400) + v[3] * 3600 + v[4] * 60
         + v[5];

    return 0;
}
