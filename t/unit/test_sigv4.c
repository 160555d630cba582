/*
 * unit tests of the SigV4 signer and digests (src/ngx_gdrive_sigv4.c):
 * AWS's published S3 examples ("Signature Calculations for the
 * Authorization Header: Transferring Payload in a Single Chunk") and the
 * signing-key derivation example, then the encoding and sorting rules
 * that those examples do not reach.
 */

#include <string.h>
#include <stdlib.h>

#include "ngx_gdrive_sigv4.h"
#include "tap.h"


#define AK      "AKIAIOSFODNN7EXAMPLE"
#define SK      "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
#define DATE    "20130524T000000Z"
#define HOST    "examplebucket.s3.amazonaws.com"
#define EMPTY   NGX_GDRIVE_SIGV4_EMPTY_SHA256
#define SCOPE   "AWS4-HMAC-SHA256 Credential=" AK \
                "/20130524/us-east-1/s3/aws4_request,"

#define P(n, v)  { n, sizeof(n) - 1, v, sizeof(v) - 1 }
#define N(n)     { n, sizeof(n) - 1, NULL, 0 }


static char  canonical[4096];


static void
example(ngx_gdrive_sigv4_t *s, const char *method, const char *path,
    const ngx_gdrive_sigv4_pair_t *q, size_t nq,
    const ngx_gdrive_sigv4_pair_t *h, size_t nh, const char *hash)
{
    memset(s, 0, sizeof(*s));
    s->method = method;
    s->path = path;
    s->path_len = strlen(path);
    s->query = q;
    s->nquery = nq;
    s->headers = h;
    s->nheaders = nh;
    s->payload_hash = hash;
    s->date = DATE;
    s->region = "us-east-1";
    s->region_len = 9;
    s->service = "s3";
    s->access_key = AK;
    s->access_key_len = sizeof(AK) - 1;
    s->secret_key = SK;
    s->secret_key_len = sizeof(SK) - 1;
    s->canonical = canonical;
    s->canonical_size = sizeof(canonical);
}


/* the canonical query of some parameters, as the signer writes it */

static const char *
query_of(const ngx_gdrive_sigv4_pair_t *q, size_t nq)
{
    char                     auth[1024], *p, *nl;
    ngx_gdrive_sigv4_t       s;
    static char              line[1024];
    ngx_gdrive_sigv4_pair_t  h[] = { P("host", HOST), P("x-amz-date", DATE) };

    example(&s, "GET", "/", q, nq, h, 2, EMPTY);

    if (ngx_gdrive_sigv4_sign(&s, auth, sizeof(auth)) < 0) {
        return "(sign failed)";
    }

    p = strchr(canonical, '\n') + 1;
    p = strchr(p, '\n') + 1;
    nl = strchr(p, '\n');
    memcpy(line, p, nl - p);
    line[nl - p] = '\0';

    return line;
}


static const char *
encoded(const char *src, int keep_slash)
{
    size_t       n;
    static char  buf[512];

    n = ngx_gdrive_sigv4_encode(buf, src, strlen(src), keep_slash);
    buf[n] = '\0';

    if (ngx_gdrive_sigv4_encode(NULL, src, strlen(src), keep_slash) != n) {
        return "(length differs)";
    }

    return buf;
}


int
main(void)
{
    int                   n;
    char                  auth[1024], hex[65], date[17], b64[32];
    size_t                i;
    unsigned char         key[32], md[32];
    ngx_gdrive_digest_t  *d;
    ngx_gdrive_sigv4_t    s;

    /* GET Object with a Range header */

    ngx_gdrive_sigv4_pair_t  get[] = {
        P("Host", HOST),
        P("Range", "bytes=0-9"),
        P("x-amz-content-sha256", EMPTY),
        P("x-amz-date", DATE),
    };

    example(&s, "GET", "/test.txt", NULL, 0, get, 4, EMPTY);
    n = ngx_gdrive_sigv4_sign(&s, auth, sizeof(auth));

    ok(n == (int) strlen(auth), "GET object: the length returned is the "
       "header's");
    ok(strcmp(canonical,
              "GET\n/test.txt\n\n"
              "host:" HOST "\n"
              "range:bytes=0-9\n"
              "x-amz-content-sha256:" EMPTY "\n"
              "x-amz-date:" DATE "\n\n"
              "host;range;x-amz-content-sha256;x-amz-date\n" EMPTY) == 0,
       "GET object: the canonical request is AWS's");
    ok(strcmp(auth, SCOPE
              "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,"
              "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48d"
              "d91039c6036bdb41") == 0,
       "GET object: the Authorization header is AWS's (got %s)", auth);

    /* PUT Object: '$' in the key, a Date header, a body */

    ok(ngx_gdrive_sha256_hex("Welcome to Amazon S3.", 21, hex) == 0
       && strcmp(hex, "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e4"
                      "2034a8b803f8b072") == 0,
       "PUT object: the payload hash of the body is AWS's");

    ngx_gdrive_sigv4_pair_t  put[] = {
        P("Host", HOST),
        P("Date", "Fri, 24 May 2013 00:00:00 GMT"),
        P("x-amz-date", DATE),
        P("x-amz-storage-class", "REDUCED_REDUNDANCY"),
        P("x-amz-content-sha256", "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b"
                                  "4b4e99e42034a8b803f8b072"),
    };

    example(&s, "PUT", "/test$file.text", NULL, 0, put, 5, hex);
    ngx_gdrive_sigv4_sign(&s, auth, sizeof(auth));

    ok(strncmp(canonical, "PUT\n/test%24file.text\n\ndate:Fri, 24 May 2013 "
               "00:00:00 GMT\nhost:", 46) == 0,
       "PUT object: '$' is encoded in the path, headers sorted");
    ok(strcmp(auth, SCOPE
              "SignedHeaders=date;host;x-amz-content-sha256;x-amz-date;"
              "x-amz-storage-class,"
              "Signature=98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1"
              "b5971af0ece108bd") == 0,
       "PUT object: the Authorization header is AWS's (got %s)", auth);

    /* GET Bucket Lifecycle: a parameter without a value */

    ngx_gdrive_sigv4_pair_t  base[] = {
        P("host", HOST),
        P("x-amz-content-sha256", EMPTY),
        P("x-amz-date", DATE),
    };
    ngx_gdrive_sigv4_pair_t  lifecycle[] = { N("lifecycle") };

    example(&s, "GET", "/", lifecycle, 1, base, 3, EMPTY);
    ngx_gdrive_sigv4_sign(&s, auth, sizeof(auth));

    ok(strncmp(canonical, "GET\n/\nlifecycle=\n", 17) == 0,
       "GET lifecycle: the bare parameter signs as \"lifecycle=\"");
    ok(strcmp(auth, SCOPE
              "SignedHeaders=host;x-amz-content-sha256;x-amz-date,"
              "Signature=fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac"
              "7a200a0136783543") == 0,
       "GET lifecycle: the Authorization header is AWS's (got %s)", auth);

    /* GET Bucket (List Objects): parameters given out of order */

    ngx_gdrive_sigv4_pair_t  list[] = { P("prefix", "J"), P("max-keys", "2") };

    example(&s, "GET", "/", list, 2, base, 3, EMPTY);
    ngx_gdrive_sigv4_sign(&s, auth, sizeof(auth));

    ok(strncmp(canonical, "GET\n/\nmax-keys=2&prefix=J\n", 26) == 0,
       "list objects: the query is sorted by name");
    ok(strcmp(auth, SCOPE
              "SignedHeaders=host;x-amz-content-sha256;x-amz-date,"
              "Signature=34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db667"
              "0ed5711ef69dc6f7") == 0,
       "list objects: the Authorization header is AWS's (got %s)", auth);

    /* the IAM guide's signing-key derivation example */

    ok(ngx_gdrive_sigv4_signing_key("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                                    40, "20120215", "us-east-1", 9, "iam",
                                    key) == 0,
       "the signing key is derived");
    ngx_gdrive_hex(hex, key, 32);
    hex[64] = '\0';
    ok(strcmp(hex, "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d4"
                   "14db404d") == 0,
       "the derived signing key is AWS's (got %s)", hex);

    /* a wrong secret signs differently */

    example(&s, "GET", "/test.txt", NULL, 0, get, 4, EMPTY);
    s.secret_key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEZ";
    ngx_gdrive_sigv4_sign(&s, auth, sizeof(auth));
    ok(strstr(auth, "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48d") == NULL,
       "another secret gives another signature");

    /* UriEncode */

    ok(strcmp(encoded("a b", 1), "a%20b") == 0, "a space is %%20, never +");
    ok(strcmp(encoded("a+b", 1), "a%2Bb") == 0, "'+' is encoded");
    ok(strcmp(encoded("100%", 1), "100%25") == 0, "'%%' is encoded");
    ok(strcmp(encoded("a*b", 1), "a%2Ab") == 0, "'*' is encoded");
    ok(strcmp(encoded("A-z_0.9~", 1), "A-z_0.9~") == 0,
       "unreserved characters are kept, '~' among them");
    ok(strcmp(encoded("\xd0\xba\xd0\xbb\xd1\x8e\xd1\x87", 1),
              "%D0%BA%D0%BB%D1%8E%D1%87") == 0,
       "UTF-8 bytes are encoded one by one, upper-case hex");
    ok(strcmp(encoded("a/b c/d", 1), "a/b%20c/d") == 0,
       "in a path '/' is kept and each segment encoded");
    ok(strcmp(encoded("a/b", 0), "a%2Fb") == 0, "in a query '/' is encoded");
    ok(strcmp(encoded("=&?#!'()$", 0), "%3D%26%3F%23%21%27%28%29%24") == 0,
       "reserved characters are encoded");

    /* a key with every awkward character, signed in its canonical path */

    ngx_gdrive_sigv4_pair_t  h2[] = { P("host", "h"), P("x-amz-date", DATE) };

    example(&s, "PUT", "/bucket/dir/a b+c%d*e~f \xc3\xa9.txt", NULL, 0,
            h2, 2, EMPTY);
    ngx_gdrive_sigv4_sign(&s, auth, sizeof(auth));
    ok(strncmp(canonical, "PUT\n/bucket/dir/a%20b%2Bc%25d%2Ae~f%20%C3%A9.txt\n",
               48) == 0,
       "a hostile key is encoded once in the canonical path");

    example(&s, "GET", "", NULL, 0, h2, 2, EMPTY);
    ngx_gdrive_sigv4_sign(&s, auth, sizeof(auth));
    ok(strncmp(canonical, "GET\n/\n", 6) == 0, "an empty path signs as /");

    /* the query of the multipart requests */

    ngx_gdrive_sigv4_pair_t  uploads[] = { N("uploads") };
    ok(strcmp(query_of(uploads, 1), "uploads=") == 0,
       "CreateMultipartUpload signs ?uploads as \"uploads=\"");

    ngx_gdrive_sigv4_pair_t  part[] = {
        P("uploadId", "a/b+c=="), P("partNumber", "2")
    };
    ok(strcmp(query_of(part, 2), "partNumber=2&uploadId=a%2Fb%2Bc%3D%3D") == 0,
       "UploadPart: sorted, and the upload id encoded (got %s)",
       query_of(part, 2));

    ngx_gdrive_sigv4_pair_t  same[] = { P("a", "2"), P("a", "10"), N("a") };
    ok(strcmp(query_of(same, 3), "a=&a=10&a=2") == 0,
       "one name sorts by value (got %s)", query_of(same, 3));

    /* ':' is above '9' as a byte but "%3A" is below it once encoded */
    ngx_gdrive_sigv4_pair_t  enc[] = { P("a9", "x"), P("a:", "y") };
    ok(strcmp(query_of(enc, 2), "a%3A=y&a9=x") == 0,
       "parameters sort by their encoded names (got %s)", query_of(enc, 2));

    ngx_gdrive_sigv4_pair_t  sp[] = { P("prefix", "a b+c") };
    ok(strcmp(query_of(sp, 1), "prefix=a%20b%2Bc") == 0,
       "query values are encoded (got %s)", query_of(sp, 1));

    /* headers */

    ngx_gdrive_sigv4_pair_t  hh[] = {
        P("X-Amz-Meta-B", "  two   words\there  "),
        P("Host", "h"),
        P("x-amz-date", DATE),
        P("X-AMZ-META-A", "1"),
        P("x-amz-meta-a", "2"),
    };

    example(&s, "GET", "/", NULL, 0, hh, 5, EMPTY);
    ngx_gdrive_sigv4_sign(&s, auth, sizeof(auth));
    ok(strstr(canonical, "\nhost:h\nx-amz-date:" DATE "\nx-amz-meta-a:1,2\n"
                         "x-amz-meta-b:two words here\n\n"
                         "host;x-amz-date;x-amz-meta-a;x-amz-meta-b\n")
       != NULL,
       "headers: lower-cased, sorted, trimmed, blanks collapsed, repeats "
       "joined");
    ok(strstr(auth, "SignedHeaders=host;x-amz-date;x-amz-meta-a;"
                    "x-amz-meta-b,") != NULL,
       "the signed headers list names each header once");

    /* bad input */

    example(&s, "GET", "/", NULL, 0, get, 4, EMPTY);
    ok(ngx_gdrive_sigv4_sign(&s, auth, 100) == -1,
       "a too small Authorization buffer is refused");

    s.date = "2013-05-24";
    ok(ngx_gdrive_sigv4_sign(&s, auth, sizeof(auth)) == -1,
       "a date not in the x-amz-date form is refused");

    example(&s, "GET", "/", NULL, 0, get, 0, EMPTY);
    ok(ngx_gdrive_sigv4_sign(&s, auth, sizeof(auth)) == -1,
       "a request without headers is refused");

    example(&s, "GET", "/", NULL, NGX_GDRIVE_SIGV4_MAX_PAIRS + 1, get, 4,
            EMPTY);
    ok(ngx_gdrive_sigv4_sign(&s, auth, sizeof(auth)) == -1,
       "too many query parameters are refused");

    /* dates and digests */

    ngx_gdrive_sigv4_date(1369353600, date);
    ok(strcmp(date, DATE) == 0, "x-amz-date of 2013-05-24 00:00:00 UTC");
    ngx_gdrive_sigv4_date(951782400 + 86399, date);
    ok(strcmp(date, "20000229T235959Z") == 0, "x-amz-date of a leap day");

    ok(ngx_gdrive_md5("", 0, md) == 0
       && ngx_gdrive_base64(b64, md, 16) == NGX_GDRIVE_MD5_BASE64_LEN
       && strcmp(b64, "1B2M2Y8AsgTpgAmY7PhCfg==") == 0,
       "Content-MD5 of an empty body");
    ngx_gdrive_hex(hex, md, 16);
    hex[32] = '\0';
    ok(strcmp(hex, "d41d8cd98f00b204e9800998ecf8427e") == 0,
       "hex md5 of an empty body");

    d = ngx_gdrive_digest_create(NGX_GDRIVE_DIGEST_SHA256);
    ok(d != NULL, "a sha256 context is created");

    for (i = 0; i < 21; i += 4) {
        ngx_gdrive_digest_update(d, "Welcome to Amazon S3." + i,
                                 i + 4 <= 21 ? 4 : 21 - i);
    }

    ngx_gdrive_digest_final(d, md);
    ngx_gdrive_hex(hex, md, 32);
    hex[64] = '\0';
    ok(strcmp(hex, "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b8"
                   "03f8b072") == 0,
       "sha256 in slices equals the one-shot hash");

    ngx_gdrive_digest_final(d, md);
    ngx_gdrive_hex(hex, md, 32);
    ok(strncmp(hex, EMPTY, 64) == 0,
       "a finished context starts over empty");
    ngx_gdrive_digest_destroy(d);

    d = ngx_gdrive_digest_create(NGX_GDRIVE_DIGEST_MD5);
    ngx_gdrive_digest_update(d, "abc", 3);
    ngx_gdrive_digest_final(d, md);
    ngx_gdrive_hex(hex, md, 16);
    hex[32] = '\0';
    ok(strcmp(hex, "900150983cd24fb0d6963f7d28e17f72") == 0,
       "md5 context of \"abc\"");
    ngx_gdrive_digest_destroy(d);

    return done_testing();
}
