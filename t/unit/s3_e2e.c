/*
 * The SigV4 signer (src/ngx_gdrive_sigv4.c) end to end against the local
 * S3 server, which verifies signatures: every request the S3 client makes
 * (HEAD, PUT, CreateMultipartUpload, UploadPart, CompleteMultipartUpload,
 * AbortMultipartUpload) plus GET and DELETE, on a key with spaces,
 * unicode, '+' and '%', and a request signed with a wrong secret.
 *
 * A test tool, not part of the module: blocking libcurl is fine here.
 * Environment: S3_ENDPOINT (path style), AWS_REGION, S3_BUCKET_NAME,
 * AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY.  Argument: a key prefix of
 * the run's own.  Prints TAP.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

#include "ngx_gdrive_sigv4.h"
#include "tap.h"


typedef struct {
    char            *data;
    size_t           len;
    size_t           cap;
} buf_t;


typedef struct {
    long             status;
    buf_t            body;
    char             etag[256];
    long long        length;
    char             meta_id[256];
} resp_t;


static const char  *endpoint, *region, *bucket, *access_key, *secret;
static char         host[256];


static size_t
on_body(char *p, size_t size, size_t n, void *data)
{
    buf_t  *b = data;
    size_t  len = size * n;

    if (b->len + len + 1 > b->cap) {
        b->cap = (b->len + len + 1) * 2;
        b->data = realloc(b->data, b->cap);

        if (b->data == NULL) {
            return 0;
        }
    }

    memcpy(b->data + b->len, p, len);
    b->len += len;
    b->data[b->len] = '\0';

    return len;
}


static void
header_value(const char *line, size_t len, const char *name, char *dst,
    size_t size)
{
    size_t  n = strlen(name);

    if (len <= n || strncasecmp(line, name, n) != 0) {
        return;
    }

    line += n;
    len -= n;

    while (len && (*line == ' ')) {
        line++;
        len--;
    }

    while (len && (line[len - 1] == '\r' || line[len - 1] == '\n')) {
        len--;
    }

    if (len < size) {
        memcpy(dst, line, len);
        dst[len] = '\0';
    }
}


static size_t
on_header(char *p, size_t size, size_t n, void *data)
{
    resp_t  *r = data;
    size_t   len = size * n;
    char     v[64];

    header_value(p, len, "etag:", r->etag, sizeof(r->etag));
    header_value(p, len, "x-amz-meta-drive-file-id:", r->meta_id,
                 sizeof(r->meta_id));

    v[0] = '\0';
    header_value(p, len, "content-length:", v, sizeof(v));

    if (v[0]) {
        r->length = atoll(v);
    }

    return len;
}


/*
 * One signed request.  query: pairs, not encoded; extra: more headers to
 * send and sign.
 */

static int
request(const char *method, const char *key, ngx_gdrive_sigv4_pair_t *query,
    size_t nquery, ngx_gdrive_sigv4_pair_t *extra, size_t nextra,
    const char *body, size_t len, const char *sk, resp_t *r)
{
    int                       rc;
    char                      path[2048], url[8192], *u, date[17];
    char                      hash[65], auth[1024], line[2048];
    size_t                    i, n;
    CURL                     *c;
    struct curl_slist        *hl;
    ngx_gdrive_sigv4_t        s;
    ngx_gdrive_sigv4_pair_t   h[NGX_GDRIVE_SIGV4_MAX_PAIRS];

    memset(r, 0, sizeof(*r));
    r->length = -1;

    snprintf(path, sizeof(path), "/%s%s%s", bucket, key ? "/" : "",
             key ? key : "");
    ngx_gdrive_sigv4_date(time(NULL), date);
    ngx_gdrive_sha256_hex(body ? body : "", len, hash);

    n = 0;
    h[n++] = (ngx_gdrive_sigv4_pair_t) { "Host", 4, host, strlen(host) };
    h[n++] = (ngx_gdrive_sigv4_pair_t) { "x-amz-date", 10, date, 16 };
    h[n++] = (ngx_gdrive_sigv4_pair_t) { "x-amz-content-sha256", 20, hash,
                                         64 };

    for (i = 0; i < nextra; i++) {
        h[n++] = extra[i];
    }

    /* without it curl would label a body as a form, which S3 servers
     * may parse as one */
    if (body && nextra == 0) {
        h[n++] = (ngx_gdrive_sigv4_pair_t) { "Content-Type", 12,
                                             "application/octet-stream", 24 };
    }

    memset(&s, 0, sizeof(s));
    s.method = method;
    s.path = path;
    s.path_len = strlen(path);
    s.query = query;
    s.nquery = nquery;
    s.headers = h;
    s.nheaders = n;
    s.payload_hash = hash;
    s.date = date;
    s.region = region;
    s.region_len = strlen(region);
    s.service = "s3";
    s.access_key = access_key;
    s.access_key_len = strlen(access_key);
    s.secret_key = sk;
    s.secret_key_len = strlen(sk);

    if (ngx_gdrive_sigv4_sign(&s, auth, sizeof(auth)) < 0) {
        return -1;
    }

    /* the URL carries the same encoding as the canonical request */

    u = url + snprintf(url, sizeof(url), "%s", endpoint);
    u += ngx_gdrive_sigv4_encode(u, path, strlen(path), 1);

    for (i = 0; i < nquery; i++) {
        *u++ = i ? '&' : '?';
        u += ngx_gdrive_sigv4_encode(u, query[i].name, query[i].name_len, 0);

        if (query[i].value) {
            *u++ = '=';
            u += ngx_gdrive_sigv4_encode(u, query[i].value,
                                         query[i].value_len, 0);
        }
    }

    *u = '\0';

    hl = NULL;

    for (i = 0; i < n; i++) {
        snprintf(line, sizeof(line), "%.*s: %.*s", (int) h[i].name_len,
                 h[i].name, (int) h[i].value_len, h[i].value);
        hl = curl_slist_append(hl, line);
    }

    snprintf(line, sizeof(line), "Authorization: %s", auth);
    hl = curl_slist_append(hl, line);
    hl = curl_slist_append(hl, "Expect:");

    c = curl_easy_init();
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &r->body);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);

    if (strcmp(method, "HEAD") == 0) {
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);

    } else if (strcmp(method, "GET") != 0) {
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    }

    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) len);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    }

    rc = curl_easy_perform(c);

    if (rc == CURLE_OK) {
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);

    } else {
        printf("# curl: %s\n", curl_easy_strerror(rc));
    }

    curl_easy_cleanup(c);
    curl_slist_free_all(hl);

    return rc == CURLE_OK ? 0 : -1;
}


static int
xml_value(buf_t *b, const char *tag, char *dst, size_t size)
{
    char    open[64], close[64], *p, *q;

    snprintf(open, sizeof(open), "<%s>", tag);
    snprintf(close, sizeof(close), "</%s>", tag);

    if (b->data == NULL || (p = strstr(b->data, open)) == NULL) {
        return -1;
    }

    p += strlen(open);
    q = strstr(p, close);

    if (q == NULL || (size_t) (q - p) >= size) {
        return -1;
    }

    memcpy(dst, p, q - p);
    dst[q - p] = '\0';

    return 0;
}


#define PAIR(n, v)  { n, sizeof(n) - 1, v, strlen(v) }


int
main(int argc, char **argv)
{
    int              ok_parts;
    char             key[1024], mkey[1024], akey[1024], *big, *p;
    char             upload_id[1024], aborted_id[1024], md5b64[32], md5hex[33];
    char             etag1[256], etag2[256], xml[2048], num[8];
    size_t           big_len, i;
    resp_t           r;
    unsigned char    md[16];

    static const char  body[] = "hello from the signer, \xe2\x9c\x93\n";

    endpoint = getenv("S3_ENDPOINT");
    region = getenv("AWS_REGION");
    bucket = getenv("S3_BUCKET_NAME");
    access_key = getenv("AWS_ACCESS_KEY_ID");
    secret = getenv("AWS_SECRET_ACCESS_KEY");

    if (argc < 2 || !endpoint || !region || !bucket || !access_key
        || !secret)
    {
        fprintf(stderr, "usage: S3_ENDPOINT=... AWS_REGION=... "
                "S3_BUCKET_NAME=... AWS_ACCESS_KEY_ID=... "
                "AWS_SECRET_ACCESS_KEY=... s3_e2e <key prefix>\n");
        return 2;
    }

    p = strstr(endpoint, "://");
    snprintf(host, sizeof(host), "%s", p ? p + 3 : endpoint);
    host[strcspn(host, "/")] = '\0';

    curl_global_init(CURL_GLOBAL_DEFAULT);

    /* PUT, HEAD, GET of a key with every awkward character */

    snprintf(key, sizeof(key), "%s/dir/a b+c%%d \xc3\xbcn\xc3\xaf "
             "\xf0\x9f\x98\x80*~(1).txt", argv[1]);

    ngx_gdrive_md5(body, sizeof(body) - 1, md);
    ngx_gdrive_base64(md5b64, md, 16);
    ngx_gdrive_hex(md5hex, md, 16);
    md5hex[32] = '\0';

    ngx_gdrive_sigv4_pair_t  put_h[] = {
        PAIR("Content-Type", "text/plain; charset=utf-8"),
        PAIR("Content-MD5", md5b64),
        PAIR("x-amz-meta-drive-file-id", "file-123"),
        PAIR("x-amz-meta-md5", md5hex),
    };

    ok(request("PUT", key, NULL, 0, put_h, 4, body, sizeof(body) - 1, secret,
               &r) == 0 && r.status == 200,
       "PUT of a key with spaces, unicode, '+' and '%%' is accepted "
       "(HTTP %ld %s)", r.status, r.body.data ? r.body.data : "");
    free(r.body.data);

    ok(request("HEAD", key, NULL, 0, NULL, 0, NULL, 0, secret, &r) == 0
       && r.status == 200 && r.length == (long long) sizeof(body) - 1,
       "HEAD finds it with its size (HTTP %ld, length %lld)", r.status,
       r.length);
    ok(strcmp(r.meta_id, "file-123") == 0,
       "and its metadata (x-amz-meta-drive-file-id: %s)", r.meta_id);

    ok(request("GET", key, NULL, 0, NULL, 0, NULL, 0, secret, &r) == 0
       && r.status == 200 && r.body.len == sizeof(body) - 1
       && memcmp(r.body.data, body, r.body.len) == 0,
       "GET returns the same bytes (HTTP %ld)", r.status);
    free(r.body.data);

    /* a Content-MD5 that does not match the body is refused */

    ngx_gdrive_sigv4_pair_t  bad_md5[] = {
        PAIR("Content-MD5", "1B2M2Y8AsgTpgAmY7PhCfg=="),
    };

    ok(request("PUT", key, NULL, 0, bad_md5, 1, body, sizeof(body) - 1,
               secret, &r) == 0 && r.status == 400,
       "a PUT whose Content-MD5 is not the body's is refused (HTTP %ld)",
       r.status);
    free(r.body.data);

    /* multipart: create, two parts, complete, read back */

    snprintf(mkey, sizeof(mkey), "%s/multi part+%%.bin", argv[1]);

    ngx_gdrive_sigv4_pair_t  uploads[] = { { "uploads", 7, NULL, 0 } };
    ngx_gdrive_sigv4_pair_t  create_h[] = {
        PAIR("Content-Type", "application/octet-stream"),
        PAIR("x-amz-meta-drive-file-id", "file-456"),
    };

    upload_id[0] = '\0';
    ok(request("POST", mkey, uploads, 1, create_h, 2, "", 0, secret, &r) == 0
       && r.status == 200
       && xml_value(&r.body, "UploadId", upload_id, sizeof(upload_id)) == 0,
       "CreateMultipartUpload (POST ?uploads) answers an upload id "
       "(HTTP %ld)", r.status);
    free(r.body.data);

    big_len = 5 * 1024 * 1024 + 1000;
    big = malloc(big_len);

    for (i = 0; i < big_len; i++) {
        big[i] = (char) (i * 7 + i / 4096);
    }

    ok_parts = 1;

    for (i = 1; i <= 2; i++) {
        snprintf(num, sizeof(num), "%zu", i);

        ngx_gdrive_sigv4_pair_t  part_q[] = {
            PAIR("uploadId", upload_id), PAIR("partNumber", num)
        };

        if (request("PUT", mkey, part_q, 2, NULL, 0,
                    i == 1 ? big : big + 5 * 1024 * 1024,
                    i == 1 ? 5 * 1024 * 1024 : 1000, secret, &r) != 0
            || r.status != 200 || r.etag[0] == '\0')
        {
            printf("# part %zu: HTTP %ld %s\n", i, r.status,
                   r.body.data ? r.body.data : "");
            ok_parts = 0;
        }

        snprintf(i == 1 ? etag1 : etag2, sizeof(etag1), "%s", r.etag);
        free(r.body.data);
    }

    ok(ok_parts, "UploadPart (?partNumber=N&uploadId=...) twice, each with "
       "an ETag");

    snprintf(xml, sizeof(xml),
             "<CompleteMultipartUpload>"
             "<Part><PartNumber>1</PartNumber><ETag>%s</ETag></Part>"
             "<Part><PartNumber>2</PartNumber><ETag>%s</ETag></Part>"
             "</CompleteMultipartUpload>", etag1, etag2);

    ngx_gdrive_sigv4_pair_t  upload_q[] = { PAIR("uploadId", upload_id) };
    ngx_gdrive_sigv4_pair_t  xml_h[] = {
        PAIR("Content-Type", "application/xml")
    };

    ok(request("POST", mkey, upload_q, 1, xml_h, 1, xml, strlen(xml), secret,
               &r) == 0 && r.status == 200
       && strstr(r.body.data ? r.body.data : "", "<Error>") == NULL,
       "CompleteMultipartUpload is accepted (HTTP %ld)", r.status);
    free(r.body.data);

    ok(request("GET", mkey, NULL, 0, NULL, 0, NULL, 0, secret, &r) == 0
       && r.status == 200 && r.body.len == big_len
       && memcmp(r.body.data, big, big_len) == 0,
       "GET of the multipart object returns the same %zu bytes (got %zu)",
       big_len, r.body.len);
    free(r.body.data);

    /* a second multipart upload, aborted */

    snprintf(akey, sizeof(akey), "%s/aborted", argv[1]);
    aborted_id[0] = '\0';

    request("POST", akey, uploads, 1, create_h, 2, "", 0, secret, &r);
    xml_value(&r.body, "UploadId", aborted_id, sizeof(aborted_id));
    free(r.body.data);

    ngx_gdrive_sigv4_pair_t  abort_part_q[] = {
        PAIR("partNumber", "1"), PAIR("uploadId", aborted_id)
    };

    ok(aborted_id[0]
       && request("PUT", akey, abort_part_q, 2, NULL, 0, big,
                  5 * 1024 * 1024, secret, &r) == 0 && r.status == 200,
       "a second upload has a part");
    free(r.body.data);

    ngx_gdrive_sigv4_pair_t  list_q[] = {
        { "uploads", 7, NULL, 0 }, PAIR("prefix", akey)
    };

    ok(request("GET", NULL, list_q, 2, NULL, 0, NULL, 0, secret, &r) == 0
       && r.status == 200 && r.body.data
       && strstr(r.body.data, aborted_id) != NULL,
       "ListMultipartUploads (GET ?uploads&prefix=) lists it (HTTP %ld)",
       r.status);
    free(r.body.data);

    ngx_gdrive_sigv4_pair_t  abort_q[] = { PAIR("uploadId", aborted_id) };

    ok(request("DELETE", akey, abort_q, 1, NULL, 0, NULL, 0, secret, &r) == 0
       && r.status == 204,
       "AbortMultipartUpload (DELETE ?uploadId=...) is accepted (HTTP %ld)",
       r.status);
    free(r.body.data);

    ok(request("GET", NULL, list_q, 2, NULL, 0, NULL, 0, secret, &r) == 0
       && r.status == 200 && r.body.data
       && strstr(r.body.data, aborted_id) == NULL,
       "ListMultipartUploads no longer lists it (HTTP %ld)", r.status);
    free(r.body.data);

    ok(request("HEAD", akey, NULL, 0, NULL, 0, NULL, 0, secret, &r) == 0
       && r.status == 404,
       "and left no object (HTTP %ld)", r.status);

    /* a wrong secret */

    ok(request("HEAD", key, NULL, 0, NULL, 0, NULL, 0,
               "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", &r) == 0
       && r.status == 403,
       "a HEAD signed with a wrong secret gets 403 (HTTP %ld)", r.status);

    ok(request("PUT", key, NULL, 0, put_h, 4, body, sizeof(body) - 1,
               "not-the-secret", &r) == 0 && r.status == 403,
       "a PUT signed with a wrong secret gets 403 (HTTP %ld)", r.status);
    free(r.body.data);

    /* clean up */

    ok(request("DELETE", key, NULL, 0, NULL, 0, NULL, 0, secret, &r) == 0
       && r.status == 204
       && request("DELETE", mkey, NULL, 0, NULL, 0, NULL, 0, secret, &r) == 0
       && r.status == 204,
       "DELETE removes the objects");
    free(r.body.data);

    free(big);
    curl_global_cleanup();

    return done_testing();
}
