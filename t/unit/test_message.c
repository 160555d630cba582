/* unit tests of the trigger schema (src/ngx_gdrive_message.c) */

#include <string.h>
#include <stdlib.h>

#include "ngx_gdrive_message.h"
#include "tap.h"


typedef struct {
    const char  *body;
    const char  *code;
    const char  *field;
    long         index;
} bad_t;


static int
field_is(ngx_gdrive_field_t *f, const char *s)
{
    return f->data && f->len == strlen(s) && memcmp(f->data, s, f->len) == 0;
}


static int
parse(const char *s, ngx_gdrive_trigger_t **t, size_t *n, int *batch,
    ngx_gdrive_msg_error_t *err)
{
    return ngx_gdrive_trigger_parse_body((const unsigned char *) s,
                                         strlen(s), 100, t, n, batch, err);
}


static void json_writer(void);


int
main(void)
{
    int                     batch, rc;
    char                    uuid[NGX_GDRIVE_UUID_LEN + 1], *deep, *big;
    size_t                  n, i;
    ngx_gdrive_trigger_t   *t, one;
    ngx_gdrive_msg_error_t  err;

    static const bad_t  bad[] = {
        { "", "invalid_message", NULL, -1 },
        { "not json", "invalid_message", NULL, -1 },
        { "{\"integration_id\":\"a\",\"action\":\"sync_file\"", "invalid_message", NULL, -1 },
        { "[]", "invalid_message", NULL, -1 },
        { "42", "invalid_message", NULL, -1 },
        { "{}", "missing_field", "integration_id", -1 },
        { "{\"integration_id\":\"i\"}", "missing_field", "action", -1 },
        { "{\"integration_id\":\"i\",\"action\":\"sync_file\"}", "missing_field", "file_id", -1 },
        { "{\"integration_id\":\"i\",\"action\":\"sync_folder\"}", "missing_field", "folder_id", -1 },
        { "{\"integration_id\":\"i\",\"action\":\"delete_all\"}", "invalid_message", "action", -1 },
        { "{\"integration_id\":7,\"action\":\"sync_changes\"}", "invalid_message", "integration_id", -1 },
        { "{\"integration_id\":\"a b\",\"action\":\"sync_changes\"}", "invalid_message", "integration_id", -1 },
        { "{\"integration_id\":\"i\",\"trigger_id\":\"\",\"action\":\"sync_changes\"}", "invalid_message", "trigger_id", -1 },
        { "{\"integration_id\":\"i\",\"action\":\"sync_file\",\"file_id\":\"a/b\"}", "invalid_message", "file_id", -1 },
        { "{\"integration_id\":\"i\",\"action\":\"sync_folder\",\"folder_id\":\"f\",\"recursive\":\"yes\"}", "invalid_message", "recursive", -1 },
        { "{\"integration_id\":\"i\",\"action\":\"sync_file\",\"file_id\":\"f\",\"export_mime_type\":\"pdf\"}", "invalid_message", "export_mime_type", -1 },
        { "{\"integration_id\":\"i\",\"action\":\"sync_changes\",\"page_token\":\"a b\"}", "invalid_message", "page_token", -1 },
        { "{\"integration_id\":\"i\",\"integration_id\":\"j\",\"action\":\"sync_changes\"}", "invalid_message", "integration_id", -1 },
        { "{\"integration_id\":\"i\\u0000x\",\"action\":\"sync_changes\"}", "invalid_message", NULL, -1 },
        { "{\"integration_id\":\"\xff\xfe\",\"action\":\"sync_changes\"}", "invalid_message", NULL, -1 },
        { "{\"integration_id\":\"i\",\"action\":\"sync_changes\"} x", "invalid_message", NULL, -1 },
        { "[{\"integration_id\":\"i\",\"action\":\"sync_changes\"},{\"action\":\"sync_changes\"}]", "missing_field", "integration_id", 1 },
        { "[{\"integration_id\":\"i\",\"action\":\"sync_changes\"},7]", "invalid_message", NULL, 1 },
        { "[{\"integration_id\":\"i\",\"action\":\"sync_changes\"}", "invalid_message", NULL, -1 },
        { "[{\"integration_id\":\"i\",\"action\":\"sync_changes\"}] x", "invalid_message", NULL, -1 },
        { "[{\"integration_id\":\"i\",\"action\":\"sync_changes\"};{}]", "invalid_message", NULL, -1 },
    };

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        memset(&err, 0, sizeof(err));
        rc = parse(bad[i].body, &t, &n, &batch, &err);
        ok(rc == -1 && t == NULL, "bad body %zu is rejected", i);
        ok(err.code && strcmp(err.code, bad[i].code) == 0,
           "bad body %zu: code %s (got %s: %s)", i, bad[i].code,
           err.code ? err.code : "none", err.detail);
        ok((bad[i].field == NULL && err.field == NULL)
           || (bad[i].field && err.field
               && strcmp(err.field, bad[i].field) == 0),
           "bad body %zu: field %s (got %s)", i,
           bad[i].field ? bad[i].field : "none",
           err.field ? err.field : "none");
        ok(err.index == bad[i].index, "bad body %zu: index %ld (got %ld)",
           i, bad[i].index, err.index);
    }

    /* Drive's metadata carried by a child trigger: an object, sync_file */

    rc = parse("{\"integration_id\":\"i\",\"action\":\"sync_file\","
               "\"file_id\":\"f\",\"drive_file\":{\"id\":\"f\"}}",
               &t, &n, &batch, &err);
    ok(rc == 0 && t[0].drive_file == 1, "drive_file is recorded");
    if (rc == 0) {
        ngx_gdrive_triggers_free(t, n);
    }

    rc = parse("{\"integration_id\":\"i\",\"action\":\"sync_file\","
               "\"file_id\":\"f\"}", &t, &n, &batch, &err);
    ok(rc == 0 && t[0].drive_file == 0, "no drive_file, none recorded");
    if (rc == 0) {
        ngx_gdrive_triggers_free(t, n);
    }

    rc = parse("{\"integration_id\":\"i\",\"action\":\"sync_folder\","
               "\"folder_id\":\"f\",\"drive_file\":{\"id\":\"f\"}}",
               &t, &n, &batch, &err);
    ok(rc != 0 && strcmp(err.field, "drive_file") == 0,
       "drive_file only in a sync_file");

    rc = parse("{\"integration_id\":\"i\",\"action\":\"sync_file\","
               "\"file_id\":\"f\",\"drive_file\":[1]}",
               &t, &n, &batch, &err);
    ok(rc != 0 && strcmp(err.field, "drive_file") == 0,
       "drive_file must be an object");

    /* member names are compared decoded; ids are never dot segments */

    rc = parse("{\"integration_id\":\"i\",\"integration\\u005fid\":\"j\","
               "\"action\":\"sync_changes\"}", &t, &n, &batch, &err);
    ok(rc != 0 && strcmp(err.field, "integration_id") == 0
       && strstr(err.detail, "twice") != NULL,
       "an escaped second integration_id is a duplicate");

    rc = parse("{\"\\u0069ntegration_id\":\"int-7\",\"action\":\"sync_changes\"}",
               &t, &n, &batch, &err);
    ok(rc == 0 && field_is(&t[0].integration_id, "int-7"),
       "an escaped field name is the field");
    if (rc == 0) {
        ngx_gdrive_triggers_free(t, n);
    }

    {
        static const char  *dots[] = { ".", "..", "...", NULL };
        char                body[128];
        int                 k;

        for (k = 0; dots[k]; k++) {
            snprintf(body, sizeof(body), "{\"integration_id\":\"%s\","
                     "\"action\":\"sync_changes\"}", dots[k]);
            rc = parse(body, &t, &n, &batch, &err);
            ok(rc != 0 && strcmp(err.field, "integration_id") == 0,
               "integration_id \"%s\" is refused", dots[k]);

            snprintf(body, sizeof(body), "{\"trigger_id\":\"%s\","
                     "\"integration_id\":\"i\",\"action\":\"sync_changes\"}",
                     dots[k]);
            rc = parse(body, &t, &n, &batch, &err);
            ok(rc != 0 && strcmp(err.field, "trigger_id") == 0,
               "trigger_id \"%s\" is refused", dots[k]);
        }

        rc = parse("{\"integration_id\":\"a.b..c\",\"action\":\"sync_changes\"}",
                   &t, &n, &batch, &err);
        ok(rc == 0, "dots inside an id are fine");
        if (rc == 0) {
            ngx_gdrive_triggers_free(t, n);
        }
    }

    /* one trigger, every field */

    const char *full = "{\"trigger_id\":\"t-1:a.b\",\"integration_id\":\"int-9\","
                       "\"action\":\"sync_folder\",\"folder_id\":\"F_0-x\","
                       "\"recursive\":true,\"drive_id\":\"0AbC\","
                       "\"future_field\":{\"kept\":[1,2]}}";
    rc = parse(full, &t, &n, &batch, &err);
    ok(rc == 0 && n == 1 && !batch, "a full trigger is accepted");
    ok(rc == 0 && field_is(&t[0].trigger_id, "t-1:a.b"), "trigger id");
    ok(rc == 0 && field_is(&t[0].integration_id, "int-9"), "integration");
    ok(rc == 0 && field_is(&t[0].drive_id, "0AbC"), "drive id");
    ok(rc == 0 && t[0].action == NGX_GDRIVE_SYNC_FOLDER, "action");
    ok(rc == 0 && t[0].recursive == 1, "recursive");
    ok(rc == 0 && t[0].raw_len == strlen(full)
       && memcmp(t[0].raw, full, strlen(full)) == 0,
       "raw bytes are the body");
    ok(rc == 0 && strstr((const char *) t[0].raw, "future_field") != NULL,
       "unknown fields are kept");
    if (rc == 0) {
        ngx_gdrive_triggers_free(t, n);
    }

    /* a batch keeps each item's exact bytes */

    const char *b = " [ {\"integration_id\":\"a\",\"action\":\"sync_changes\"} ,\n"
                    "{\"integration_id\":\"b\", \"action\":\"sync_file\","
                    "\"file_id\":\"x\"}]\n";
    rc = parse(b, &t, &n, &batch, &err);
    ok(rc == 0 && n == 2 && batch, "a batch of two is accepted");
    const char *first = "{\"integration_id\":\"a\",\"action\":\"sync_changes\"}";
    ok(rc == 0 && t[0].raw_len == strlen(first)
       && memcmp(t[0].raw, first, strlen(first)) == 0,
       "first item's bytes");
    ok(rc == 0 && t[1].raw[0] == '{' && t[1].raw[t[1].raw_len - 1] == '}'
       && field_is(&t[1].integration_id, "b"), "second item's bytes");
    ok(rc == 0 && t[0].trigger_id.data == NULL,
       "HTTP triggers may omit the id");
    if (rc == 0) {
        ngx_gdrive_triggers_free(t, n);
    }

    /* escapes are decoded before the field is checked */

    const char *esc = "{\"integration_id\":\"in\\u0074-\\/x\",\"action\":\"sync_file\","
                      "\"file_id\":\"f\",\"export_mime_type\":\"application\\/pdf\","
                      "\"n\":\"\\ud83d\\ude00 \xc3\xa9\"}";
    rc = parse(esc, &t, &n, &batch, &err);
    ok(rc == -1 && err.field && strcmp(err.field, "integration_id") == 0,
       "an escaped '/' is decoded and refused in an id: %s", err.detail);

    esc = "{\"integration_id\":\"in\\u0074\",\"action\":\"sync_file\","
          "\"file_id\":\"f\",\"export_mime_type\":\"application\\/pdf\","
          "\"n\":\"\\ud83d\\ude00 \xc3\xa9\"}";
    rc = parse(esc, &t, &n, &batch, &err);
    ok(rc == 0, "escapes and UTF-8 are accepted: %s", rc ? err.detail : "");
    ok(rc == 0 && field_is(&t[0].integration_id, "int"), "\\u0074 is t");
    ok(rc == 0 && field_is(&t[0].export_mime_type, "application/pdf"),
       "\\/ is /");
    if (rc == 0) {
        ngx_gdrive_triggers_free(t, n);
    }

    static const char  *bad_json[] = {
        "{\"integration_id\":\"i\",\"action\":\"sync_changes\",\"x\":01}",
        "{\"integration_id\":\"i\",\"action\":\"sync_changes\",\"x\":1.}",
        "{\"integration_id\":\"i\",\"action\":\"sync_changes\",\"x\":-}",
        "{\"integration_id\":\"i\",\"action\":\"sync_changes\",\"x\":tru}",
        "{\"integration_id\":\"i\",\"action\":\"sync_changes\",\"x\":\"\\ud800\"}",
        "{\"integration_id\":\"i\",\"action\":\"sync_changes\",\"x\":\"\\q\"}",
        "{\"integration_id\":\"i\",\"action\":\"sync_changes\",\"x\":\"\xc0\xaf\"}",
        "{\"integration_id\":\"i\",\"action\":\"sync_changes\",\"x\":\"\xed\xa0\x80\"}",
        "{\"integration_id\":\"i\",\"action\":\"sync_changes\",\"x\":[1,]}",
        "{\"integration_id\":\"i\",\"action\":\"sync_changes\",}",
        "{\"integration_id\":\"i\",\"action\":\"sync_changes\" \"x\":1}",
        "{\"integration_id\":\"i\",\"action\":\"sync_changes\",\"x\":\"a\tb\"}",
        "{integration_id:\"i\",\"action\":\"sync_changes\"}",
    };

    for (i = 0; i < sizeof(bad_json) / sizeof(bad_json[0]); i++) {
        rc = parse(bad_json[i], &t, &n, &batch, &err);
        ok(rc == -1 && strcmp(err.code, "invalid_message") == 0
           && strstr(err.detail, "not valid JSON"),
           "bad JSON %zu: %s", i, err.detail);
    }

    const char *good_json = " {\"integration_id\":\"i\",\"action\":\"sync_changes\","
        "\"a\":[],\"b\":{},\"c\":[-0.5e+3,1E2,0,true,false,null,\"\"],"
        "\"d\":{\"e\":{\"f\":[[]]}}} \n";
    rc = parse(good_json, &t, &n, &batch, &err);
    ok(rc == 0, "all of JSON's grammar is accepted: %s", rc ? err.detail : "");
    if (rc == 0) {
        ngx_gdrive_triggers_free(t, n);
    }

    /* limits */

    big = malloc(200000);
    strcpy(big, "[");
    for (i = 0; i < 101; i++) {
        strcat(big, i ? ",{\"integration_id\":\"a\",\"action\":\"sync_changes\"}"
                      : "{\"integration_id\":\"a\",\"action\":\"sync_changes\"}");
    }
    strcat(big, "]");
    rc = parse(big, &t, &n, &batch, &err);
    ok(rc == -1 && strstr(err.detail, "at most 100"), "batch over the limit: %s",
       err.detail);

    deep = malloc(100);
    memcpy(deep, "{\"a\":", 5);
    memset(deep + 5, '[', 40);
    deep[45] = '\0';
    rc = parse(deep, &t, &n, &batch, &err);
    ok(rc == -1 && strstr(err.detail, "nested"), "deep nesting: %s",
       err.detail);

    snprintf(big, 200000, "{\"integration_id\":\"a\",\"action\":\"sync_changes\","
             "\"pad\":\"%070000d\"}", 0);
    rc = parse(big, &t, &n, &batch, &err);
    ok(rc == -1 && strstr(err.detail, "at most 65536"), "oversized: %s",
       err.detail);

    memset(big, 'a', 300);
    big[300] = '\0';
    char long_id[400];
    snprintf(long_id, sizeof(long_id),
             "{\"integration_id\":\"%.129s\",\"action\":\"sync_changes\"}", big);
    rc = parse(long_id, &t, &n, &batch, &err);
    ok(rc == -1 && err.field && strcmp(err.field, "integration_id") == 0,
       "an id of 129 characters is refused");

    /* Kafka messages need an id */

    rc = ngx_gdrive_trigger_parse((const unsigned char *)
             "{\"integration_id\":\"a\",\"action\":\"sync_changes\"}", 46, 1,
             &one, &err);
    ok(rc == -1 && strcmp(err.code, "missing_field") == 0
       && strcmp(err.field, "trigger_id") == 0,
       "a Kafka message without trigger_id is missing_field");

    ok(ngx_gdrive_uuid(uuid) == 0 && strlen(uuid) == 36 && uuid[14] == '4'
       && uuid[8] == '-', "uuid %s", uuid);

    /* the subject a service account acts as */

    rc = ngx_gdrive_trigger_parse((const unsigned char *)
             "{\"integration_id\":\"a\",\"action\":\"sync_changes\","
             "\"subject\":\"alice@example.com\"}", 76, 0, &one, &err);
    ok(rc == 0 && one.subject.len == 17
       && memcmp(one.subject.data, "alice@example.com", 17) == 0,
       "a subject is read");
    ngx_gdrive_trigger_free(&one);

    rc = ngx_gdrive_trigger_parse((const unsigned char *)
             "{\"integration_id\":\"a\",\"action\":\"sync_changes\","
             "\"subject\":\"alice\"}", 64, 0, &one, &err);
    ok(rc == -1 && strcmp(err.field, "subject") == 0,
       "a subject that is no e-mail address is refused: %s", err.detail);

    ok(ngx_gdrive_email_valid("a@b.c", 5), "a@b.c");
    ok(!ngx_gdrive_email_valid("a@b", 3), "a@b: no dot");
    ok(!ngx_gdrive_email_valid("@b.c", 4), "no local part");
    ok(!ngx_gdrive_email_valid("a@@b.c", 6), "two @");
    ok(!ngx_gdrive_email_valid("a b@c.d", 7), "a space");
    ok(!ngx_gdrive_email_valid("a\"@c.d", 6), "a quote");
    ok(!ngx_gdrive_email_valid("a/b@c.d", 7), "a slash (the token cache's "
       "separator)");
    ok(!ngx_gdrive_email_valid("a@c.d.", 6), "a trailing dot");

    free(big);
    free(deep);

    json_writer();

    return done_testing();
}


/* the result's JSON writer: escapes, UTF-8, nesting, growth, failure */

static void
json_writer(void)
{
    char               *out, *p;
    size_t              len, i;
    ngx_gdrive_json_t   j;

    ngx_gdrive_json_init(&j, 4, 1 << 20);
    ngx_gdrive_json_open(&j, NULL);
    ngx_gdrive_json_string(&j, "a", "x\"y\\z\n\r\t\x01\x7f/", 11);
    ngx_gdrive_json_int(&j, "n", -42);
    ngx_gdrive_json_open(&j, "o");
    ngx_gdrive_json_open(&j, "e");
    ngx_gdrive_json_close(&j);
    ngx_gdrive_json_raw(&j, "t", "true", 4);
    ngx_gdrive_json_close(&j);
    ngx_gdrive_json_string(&j, "u", "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 9);
    ngx_gdrive_json_close(&j);
    out = ngx_gdrive_json_done(&j, &len);

    p = "{\"a\":\"x\\\"y\\\\z\\n\\r\\t\\u0001\\u007f/\",\"n\":-42,"
        "\"o\":{\"e\":{},\"t\":true},"
        "\"u\":\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"}";
    ok(out && len == strlen(p) && strcmp(out, p) == 0,
       "the writer escapes, nests and keeps valid UTF-8 (from 4 bytes up): "
       "%s", out ? out : "(null)");
    free(out);

    /* bytes that start no valid sequence become U+FFFD, one each */
    ngx_gdrive_json_init(&j, 64, 1 << 20);
    ngx_gdrive_json_open(&j, NULL);
    ngx_gdrive_json_string(&j, "b",
        "\xff\xc0\xaf\xed\xa0\x80\xf4\x90\x80\x80\xe2\x82", 12);
    ngx_gdrive_json_close(&j);
    out = ngx_gdrive_json_done(&j, &len);

    for (i = 0, p = out ? strstr(out, "\xef\xbf\xbd") : NULL; p;
         p = strstr(p + 3, "\xef\xbf\xbd"))
    {
        i++;
    }

    ok(out && i == 12 && strchr(out, 0xff) == NULL,
       "overlong, surrogate, past U+10FFFF and cut sequences are U+FFFD "
       "(%zu of 12)", i);
    free(out);

    /* past its bound, nothing */
    ngx_gdrive_json_init(&j, 16, 64);
    ngx_gdrive_json_open(&j, NULL);
    ngx_gdrive_json_string(&j, "k", "0123456789012345678901234567890123456"
                           "789", 40);
    ngx_gdrive_json_int(&j, "n", 1);
    ngx_gdrive_json_close(&j);
    ok(ngx_gdrive_json_done(&j, &len) == NULL,
       "a text past its bound is not written");

    /* unbalanced, nothing */
    ngx_gdrive_json_init(&j, 16, 64);
    ngx_gdrive_json_open(&j, NULL);
    ok(ngx_gdrive_json_done(&j, &len) == NULL, "an open object is no text");
}
