
/*
 * nginx-gdrive-worker: the trigger message schema (DESIGN §3).
 *
 * Infrastructure: parses and validates trigger objects with jansson and
 * says precisely what is wrong with a bad one.  No nginx here, so the same
 * object file serves the module, the unit tests and the fuzz target.
 */


#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include "ngx_gdrive_message.h"


static int ngx_gdrive_msg_fail(ngx_gdrive_msg_error_t *err, const char *code,
    const char *field, const char *fmt, ...);
static int ngx_gdrive_depth_ok(const unsigned char *p, size_t len);
static int ngx_gdrive_get_string(json_t *root, const char *name,
    int (*valid)(const char *s, size_t len), size_t max, const char *what,
    const char **value, ngx_gdrive_msg_error_t *err);
static int ngx_gdrive_valid_id(const char *s, size_t len);
static int ngx_gdrive_valid_drive_id(const char *s, size_t len);
static int ngx_gdrive_valid_token(const char *s, size_t len);
static int ngx_gdrive_valid_mime(const char *s, size_t len);
static int ngx_gdrive_trigger_check(ngx_gdrive_trigger_t *t, int require_id,
    ngx_gdrive_msg_error_t *err);


static const char  *ngx_gdrive_actions[] = {
    NULL, "sync_file", "sync_folder", "sync_changes"
};


const char *
ngx_gdrive_action_name(ngx_gdrive_action_e action)
{
    if (action < NGX_GDRIVE_SYNC_FILE || action > NGX_GDRIVE_SYNC_CHANGES) {
        return "unknown";
    }

    return ngx_gdrive_actions[action];
}


int
ngx_gdrive_trigger_parse(const unsigned char *data, size_t len,
    int require_id, ngx_gdrive_trigger_t *t, ngx_gdrive_msg_error_t *err)
{
    json_error_t  jerr;

    memset(t, 0, sizeof(ngx_gdrive_trigger_t));
    err->index = -1;

    if (len == 0) {
        return ngx_gdrive_msg_fail(err, "invalid_message", NULL,
                                   "empty message");
    }

    if (len > NGX_GDRIVE_TRIGGER_MAX_SIZE) {
        return ngx_gdrive_msg_fail(err, "invalid_message", NULL,
                                   "a trigger is at most %d bytes, this one "
                                   "has %zu", NGX_GDRIVE_TRIGGER_MAX_SIZE,
                                   len);
    }

    if (!ngx_gdrive_depth_ok(data, len)) {
        return ngx_gdrive_msg_fail(err, "invalid_message", NULL,
                                   "JSON nested deeper than %d levels",
                                   NGX_GDRIVE_TRIGGER_MAX_DEPTH);
    }

    t->root = json_loadb((const char *) data, len, JSON_REJECT_DUPLICATES,
                         &jerr);

    if (t->root == NULL) {
        return ngx_gdrive_msg_fail(err, "invalid_message", NULL,
                                   "not valid JSON: %s at byte %d",
                                   jerr.text, jerr.position);
    }

    t->raw = data;
    t->raw_len = len;

    if (ngx_gdrive_trigger_check(t, require_id, err) != 0) {
        ngx_gdrive_trigger_free(t);
        return -1;
    }

    return 0;
}


int
ngx_gdrive_trigger_parse_body(const unsigned char *data, size_t len,
    size_t max_batch, ngx_gdrive_trigger_t **triggers, size_t *n,
    int *batch, ngx_gdrive_msg_error_t *err)
{
    size_t                 count, size;
    json_error_t           jerr;
    const unsigned char   *p, *last;
    ngx_gdrive_trigger_t  *items, *t, *grown;

    *triggers = NULL;
    *n = 0;
    *batch = 0;
    err->index = -1;

    p = data;
    last = data + len;

    while (p < last && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')) {
        p++;
    }

    if (p == last || *p != '[') {
        items = malloc(sizeof(ngx_gdrive_trigger_t));
        if (items == NULL) {
            return ngx_gdrive_msg_fail(err, "internal_error", NULL,
                                       "out of memory");
        }

        if (ngx_gdrive_trigger_parse(data, len, 0, items, err) != 0) {
            free(items);
            return -1;
        }

        *triggers = items;
        *n = 1;
        return 0;
    }

    /*
     * An array: each item is parsed where it stands, so that its exact
     * bytes are known and can be produced to Kafka as they came.
     */

    *batch = 1;

    if (!ngx_gdrive_depth_ok(data, len)) {
        return ngx_gdrive_msg_fail(err, "invalid_message", NULL,
                                   "JSON nested deeper than %d levels",
                                   NGX_GDRIVE_TRIGGER_MAX_DEPTH);
    }

    p++;
    items = NULL;
    count = 0;
    size = 0;

    for ( ;; ) {

        while (p < last
               && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n'))
        {
            p++;
        }

        if (p == last) {
            ngx_gdrive_msg_fail(err, "invalid_message", NULL,
                                "not valid JSON: the array is not closed");
            goto failed;
        }

        if (*p == ']' && count == 0) {
            ngx_gdrive_msg_fail(err, "invalid_message", NULL,
                                "an empty batch");
            goto failed;
        }

        if (count == max_batch) {
            ngx_gdrive_msg_fail(err, "invalid_message", NULL,
                                "a batch has at most %zu triggers",
                                max_batch);
            goto failed;
        }

        if (count == size) {
            size = size ? size * 2 : 16;
            if (size > max_batch) {
                size = max_batch;
            }

            grown = realloc(items, size * sizeof(ngx_gdrive_trigger_t));
            if (grown == NULL) {
                ngx_gdrive_msg_fail(err, "internal_error", NULL,
                                    "out of memory");
                goto failed;
            }

            items = grown;
        }

        t = &items[count];
        memset(t, 0, sizeof(ngx_gdrive_trigger_t));

        if (*p != '{') {
            ngx_gdrive_msg_fail(err, "invalid_message", NULL,
                                "a batch item must be a JSON object");
            err->index = (long) count;
            goto failed;
        }

        t->root = json_loadb((const char *) p, last - p,
                             JSON_DISABLE_EOF_CHECK|JSON_REJECT_DUPLICATES,
                             &jerr);

        if (t->root == NULL) {
            ngx_gdrive_msg_fail(err, "invalid_message", NULL,
                                "not valid JSON: %s at byte %ld",
                                jerr.text, (long) (p - data) + jerr.position);
            err->index = (long) count;
            goto failed;
        }

        t->raw = p;
        t->raw_len = jerr.position;
        count++;

        if (t->raw_len > NGX_GDRIVE_TRIGGER_MAX_SIZE) {
            ngx_gdrive_msg_fail(err, "invalid_message", NULL,
                                "a trigger is at most %d bytes, this one "
                                "has %zu", NGX_GDRIVE_TRIGGER_MAX_SIZE,
                                t->raw_len);
            err->index = (long) count - 1;
            goto failed;
        }

        if (ngx_gdrive_trigger_check(t, 0, err) != 0) {
            err->index = (long) count - 1;
            goto failed;
        }

        p += t->raw_len;

        while (p < last
               && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n'))
        {
            p++;
        }

        if (p < last && *p == ',') {
            p++;
            continue;
        }

        if (p < last && *p == ']') {
            p++;
            break;
        }

        ngx_gdrive_msg_fail(err, "invalid_message", NULL,
                            "not valid JSON: expected ',' or ']' at byte %ld",
                            (long) (p - data));
        goto failed;
    }

    while (p < last && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')) {
        p++;
    }

    if (p != last) {
        ngx_gdrive_msg_fail(err, "invalid_message", NULL,
                            "not valid JSON: data after the array at byte %ld",
                            (long) (p - data));
        goto failed;
    }

    *triggers = items;
    *n = count;

    return 0;

failed:

    ngx_gdrive_triggers_free(items, count);

    return -1;
}


void
ngx_gdrive_trigger_free(ngx_gdrive_trigger_t *t)
{
    if (t->root) {
        json_decref(t->root);
        t->root = NULL;
    }
}


void
ngx_gdrive_triggers_free(ngx_gdrive_trigger_t *triggers, size_t n)
{
    size_t  i;

    if (triggers == NULL) {
        return;
    }

    for (i = 0; i < n; i++) {
        ngx_gdrive_trigger_free(&triggers[i]);
    }

    free(triggers);
}


int
ngx_gdrive_uuid(char *buf)
{
    unsigned char  b[16];

    if (RAND_bytes(b, sizeof(b)) != 1) {
        return -1;
    }

    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;

    snprintf(buf, NGX_GDRIVE_UUID_LEN + 1,
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
             "%02x%02x%02x%02x%02x%02x",
             b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9],
             b[10], b[11], b[12], b[13], b[14], b[15]);

    return 0;
}


static int
ngx_gdrive_trigger_check(ngx_gdrive_trigger_t *t, int require_id,
    ngx_gdrive_msg_error_t *err)
{
    int          i;
    json_t      *v;
    const char  *action;

    if (!json_is_object(t->root)) {
        return ngx_gdrive_msg_fail(err, "invalid_message", NULL,
                                   "a trigger must be a JSON object");
    }

    if (ngx_gdrive_get_string(t->root, "trigger_id", ngx_gdrive_valid_id,
                              NGX_GDRIVE_ID_MAX_LEN,
                              "1 to 128 of [A-Za-z0-9._:-]",
                              &t->trigger_id, err) != 0)
    {
        return -1;
    }

    if (t->trigger_id == NULL && require_id) {
        return ngx_gdrive_msg_fail(err, "missing_field", "trigger_id",
                                   "field \"trigger_id\" is required");
    }

    if (ngx_gdrive_get_string(t->root, "integration_id", ngx_gdrive_valid_id,
                              NGX_GDRIVE_ID_MAX_LEN,
                              "1 to 128 of [A-Za-z0-9._:-]",
                              &t->integration_id, err) != 0)
    {
        return -1;
    }

    if (t->integration_id == NULL) {
        return ngx_gdrive_msg_fail(err, "missing_field", "integration_id",
                                   "field \"integration_id\" is required");
    }

    v = json_object_get(t->root, "action");

    if (v == NULL) {
        return ngx_gdrive_msg_fail(err, "missing_field", "action",
                                   "field \"action\" is required");
    }

    action = json_string_value(v);

    if (action == NULL) {
        return ngx_gdrive_msg_fail(err, "invalid_message", "action",
                                   "field \"action\" must be a string");
    }

    for (i = NGX_GDRIVE_SYNC_FILE; i <= NGX_GDRIVE_SYNC_CHANGES; i++) {
        if (json_string_length(v) == strlen(ngx_gdrive_actions[i])
            && strcmp(action, ngx_gdrive_actions[i]) == 0)
        {
            t->action = i;
            break;
        }
    }

    if (t->action == 0) {
        return ngx_gdrive_msg_fail(err, "invalid_message", "action",
                                   "field \"action\" must be sync_file, "
                                   "sync_folder or sync_changes");
    }

    if (ngx_gdrive_get_string(t->root, "file_id", ngx_gdrive_valid_drive_id,
                              NGX_GDRIVE_DRIVE_ID_MAX_LEN,
                              "a Drive id: 1 to 200 of [A-Za-z0-9_-]",
                              &t->file_id, err) != 0
        || ngx_gdrive_get_string(t->root, "folder_id",
                                 ngx_gdrive_valid_drive_id,
                                 NGX_GDRIVE_DRIVE_ID_MAX_LEN,
                                 "a Drive id: 1 to 200 of [A-Za-z0-9_-]",
                                 &t->folder_id, err) != 0
        || ngx_gdrive_get_string(t->root, "drive_id",
                                 ngx_gdrive_valid_drive_id,
                                 NGX_GDRIVE_DRIVE_ID_MAX_LEN,
                                 "a Drive id: 1 to 200 of [A-Za-z0-9_-]",
                                 &t->drive_id, err) != 0
        || ngx_gdrive_get_string(t->root, "page_token",
                                 ngx_gdrive_valid_token, 1024,
                                 "1 to 1024 printable ASCII characters",
                                 &t->page_token, err) != 0
        || ngx_gdrive_get_string(t->root, "export_mime_type",
                                 ngx_gdrive_valid_mime, 255,
                                 "a MIME type such as application/pdf",
                                 &t->export_mime_type, err) != 0)
    {
        return -1;
    }

    v = json_object_get(t->root, "recursive");

    if (v != NULL) {
        if (!json_is_boolean(v)) {
            return ngx_gdrive_msg_fail(err, "invalid_message", "recursive",
                                       "field \"recursive\" must be true "
                                       "or false");
        }

        t->recursive = json_is_true(v);
    }

    switch (t->action) {

    case NGX_GDRIVE_SYNC_FILE:
        if (t->file_id == NULL) {
            return ngx_gdrive_msg_fail(err, "missing_field", "file_id",
                                       "field \"file_id\" is required for "
                                       "sync_file");
        }
        break;

    case NGX_GDRIVE_SYNC_FOLDER:
        if (t->folder_id == NULL) {
            return ngx_gdrive_msg_fail(err, "missing_field", "folder_id",
                                       "field \"folder_id\" is required for "
                                       "sync_folder");
        }
        break;

    default:
        break;
    }

    return 0;
}


/* absent: 0 with *value NULL; present and good: 0; otherwise -1 */

static int
ngx_gdrive_get_string(json_t *root, const char *name,
    int (*valid)(const char *s, size_t len), size_t max, const char *what,
    const char **value, ngx_gdrive_msg_error_t *err)
{
    size_t   len;
    json_t  *v;

    *value = NULL;

    v = json_object_get(root, name);

    if (v == NULL) {
        return 0;
    }

    if (!json_is_string(v)) {
        return ngx_gdrive_msg_fail(err, "invalid_message", name,
                                   "field \"%s\" must be a string", name);
    }

    len = json_string_length(v);

    if (len == 0 || len > max || !valid(json_string_value(v), len)) {
        return ngx_gdrive_msg_fail(err, "invalid_message", name,
                                   "field \"%s\" must be %s", name, what);
    }

    *value = json_string_value(v);

    return 0;
}


static int
ngx_gdrive_valid_id(const char *s, size_t len)
{
    size_t  i;
    char    c;

    for (i = 0; i < len; i++) {
        c = s[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
              || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == ':'
              || c == '-'))
        {
            return 0;
        }
    }

    return 1;
}


static int
ngx_gdrive_valid_drive_id(const char *s, size_t len)
{
    size_t  i;
    char    c;

    for (i = 0; i < len; i++) {
        c = s[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
              || (c >= '0' && c <= '9') || c == '_' || c == '-'))
        {
            return 0;
        }
    }

    return 1;
}


static int
ngx_gdrive_valid_token(const char *s, size_t len)
{
    size_t  i;

    for (i = 0; i < len; i++) {
        if (s[i] <= ' ' || s[i] >= 0x7f) {
            return 0;
        }
    }

    return 1;
}


static int
ngx_gdrive_valid_mime(const char *s, size_t len)
{
    size_t  i, slash;
    char    c;

    slash = 0;

    for (i = 0; i < len; i++) {
        c = s[i];

        if (c == '/') {
            if (slash || i == 0 || i == len - 1) {
                return 0;
            }

            slash = i;
            continue;
        }

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
              || (c >= '0' && c <= '9') || c == '.' || c == '+' || c == '-'
              || c == '_'))
        {
            return 0;
        }
    }

    return slash != 0;
}


/* counts nesting outside strings without parsing: cheap and bounded */

static int
ngx_gdrive_depth_ok(const unsigned char *p, size_t len)
{
    int                   depth, in_string;
    const unsigned char  *last;

    depth = 0;
    in_string = 0;

    for (last = p + len; p < last; p++) {

        if (in_string) {
            if (*p == '\\') {
                p++;

            } else if (*p == '"') {
                in_string = 0;
            }

            continue;
        }

        switch (*p) {

        case '"':
            in_string = 1;
            break;

        case '{':
        case '[':
            if (++depth > NGX_GDRIVE_TRIGGER_MAX_DEPTH) {
                return 0;
            }
            break;

        case '}':
        case ']':
            depth--;
            break;
        }
    }

    return 1;
}


static int
ngx_gdrive_msg_fail(ngx_gdrive_msg_error_t *err, const char *code,
    const char *field, const char *fmt, ...)
{
    va_list  args;

    err->code = code;
    err->field = field;

    va_start(args, fmt);
    vsnprintf(err->detail, sizeof(err->detail), fmt, args);
    va_end(args);

    return -1;
}
