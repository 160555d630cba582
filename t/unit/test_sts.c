/* unit tests of the STS web identity request and answer (src/ngx_gdrive_sts.c) */

#include <string.h>

#include "ngx_gdrive_sts.h"
#include "tap.h"


#define OK_ANSWER(akid, secret, token, exp)                                   \
    "<AssumeRoleWithWebIdentityResponse "                                     \
    "xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">"                    \
    "<AssumeRoleWithWebIdentityResult>"                                       \
    "<SubjectFromWebIdentityToken>system:serviceaccount:a:b"                  \
    "</SubjectFromWebIdentityToken><AssumedRoleUser>"                         \
    "<Arn>arn:aws:sts::123456789012:assumed-role/r/s</Arn>"                   \
    "<AssumedRoleId>AROA123:s</AssumedRoleId></AssumedRoleUser>"              \
    "<Credentials><SessionToken>" token "</SessionToken>"                     \
    "<SecretAccessKey>" secret "</SecretAccessKey>"                           \
    "<Expiration>" exp "</Expiration>"                                        \
    "<AccessKeyId>" akid "</AccessKeyId></Credentials>"                       \
    "</AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>"


static int
parse(const char *xml, ngx_gdrive_sts_answer_t *a)
{
    return ngx_gdrive_sts_parse(xml, strlen(xml), a);
}


int
main(void)
{
    int                      n;
    char                     body[512];
    int64_t                  t;
    ngx_gdrive_sts_answer_t  a;

    n = ngx_gdrive_sts_request("arn:aws:iam::123456789012:role/gdrive",
                               "gdrive-worker", "eyJ.a+b/c=", 10, 0,
                               body, sizeof(body));
    ok(n > 0 && strcmp(body, "Action=AssumeRoleWithWebIdentity"
                       "&Version=2011-06-15"
                       "&RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole"
                       "%2Fgdrive&RoleSessionName=gdrive-worker"
                       "&WebIdentityToken=eyJ.a%2Bb%2Fc%3D") == 0,
       "the form: %s", body);
    n = ngx_gdrive_sts_request("r", "s", "t", 1, 3600, body, sizeof(body));
    ok(n > 0 && strstr(body, "&DurationSeconds=3600"), "a duration");
    ok(ngx_gdrive_sts_request("r", "s", "t", 1, 0, body, 40) == -1,
       "too small a buffer");

    ok(parse(OK_ANSWER("ASIAEXAMPLE0000KEY1", "wJalr/K7MDENG+bPxRfi",
                       "FwoGZXIvYXdzEBYaD&amp;x==", "2026-12-04T18:30:00Z"),
             &a) == 0, "credentials");
    ok(strcmp(a.access_key, "ASIAEXAMPLE0000KEY1") == 0, "the key id");
    ok(strcmp(a.secret_key, "wJalr/K7MDENG+bPxRfi") == 0, "the secret");
    ok(strcmp(a.session_token, "FwoGZXIvYXdzEBYaD&x==") == 0,
       "the token, an entity decoded");
    ok(a.expiration == 1796409000, "the expiration: %lld",
       (long long) a.expiration);

    ok(parse(OK_ANSWER("ASIAEXAMPLE0000KEY1", "s", "t",
                       "2026-12-04T18:30:00.123Z"), &a) == 0
       && a.expiration == 1796409000, "fractions of a second");

    ok(parse("<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/"
             "2011-06-15/\"><Error><Type>Sender</Type>"
             "<Code>InvalidIdentityToken</Code><Message>Couldn&apos;t "
             "verify the identity token</Message></Error>"
             "<RequestId>x</RequestId></ErrorResponse>", &a) == 1
       && strcmp(a.code, "InvalidIdentityToken") == 0
       && strcmp(a.message, "Couldn't verify the identity token") == 0,
       "an error: %s: %s", a.code, a.message);

    ok(parse("<ErrorResponse><Error><Code>AccessDenied</Code><Message>a"
             "&#x41;\r\nforged: line\x01</Message></Error></ErrorResponse>",
             &a) == 1 && strcmp(a.message, "aA??forged: line?") == 0,
       "a message's control bytes are replaced: %s", a.message);

    ok(parse("<ErrorResponse><Error><Code>Bad<x/></Code></Error>"
             "</ErrorResponse>", &a) == -1, "an error without a code");

    /* hostile answers */

    ok(parse("", &a) == -1, "empty");
    ok(parse("<html>503</html>", &a) == -1, "not STS: %s", a.message);
    ok(parse(OK_ANSWER("ASIA KEY", "s", "t", "2026-12-04T18:30:00Z"), &a)
       == -1, "a key id with a blank");
    ok(parse(OK_ANSWER("ASIAEXAMPLE0000KEY1", "s\r\nX-Evil: 1", "t",
                       "2026-12-04T18:30:00Z"), &a) == -1
       && a.secret_key[0] == '\0', "a secret with CRLF, wiped");
    ok(parse(OK_ANSWER("ASIAEXAMPLE0000KEY1", "s", "t&#10;x",
                       "2026-12-04T18:30:00Z"), &a) == -1,
       "a token with a newline reference");
    ok(parse(OK_ANSWER("ASIAEXAMPLE0000KEY1", "s", "<b>t</b>",
                       "2026-12-04T18:30:00Z"), &a) == -1, "markup inside");
    ok(parse(OK_ANSWER("ASIAEXAMPLE0000KEY1", "s", "t", "tomorrow"), &a)
       == -1, "a bad expiration");
    ok(parse(OK_ANSWER("ASIAEXAMPLE0000KEY1", "s", "t",
                       "2026-12-04T18:30:00Z")
             "<AccessKeyId>ASIAOTHER000000KEY2</AccessKeyId>", &a) == -1,
       "two key ids");

    {
        static char  big[8192];

        memset(big, 'A', sizeof(big) - 1);
        ok(parse(big, &a) == -1, "8 KiB of nothing");
    }

    ok(ngx_gdrive_sts_time("1970-01-01T00:00:00Z", 20, &t) == 0 && t == 0,
       "the epoch");
    ok(ngx_gdrive_sts_time("2000-02-29T12:00:00Z", 20, &t) == 0
       && t == 951825600, "a leap day");
    ok(ngx_gdrive_sts_time("2026-13-01T00:00:00Z", 20, &t) == -1,
       "month 13");
    ok(ngx_gdrive_sts_time("2026-12-04T18:30:00", 19, &t) == -1, "no Z");
    ok(ngx_gdrive_sts_time("2026-12-04T18:30:00+01:00", 25, &t) == -1,
       "an offset");

    return done_testing();
}
