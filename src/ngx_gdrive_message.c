
/*
 * nginx-gdrive-worker: the trigger message schema (README, gdrive_trigger).
 *
 * Infrastructure: a strict JSON scanner that validates trigger objects
 * without building a tree and says precisely what is wrong with a bad one.
 * It allocates nothing on the common path (measured: jansson's tree and
 * its mallocs were a third of a worker's CPU per trigger).  No nginx here,
 * so the same object file serves the module, the unit tests and the fuzz
 * target.  The result event's JSON is written here too, as it goes, by
 * the same rules of escaping and UTF-8 that the scanner enforces.
 */


#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ngx_gdrive_trace.h"

#include "ngx_gdrive_message.h"


/* the fields the module uses; others are checked for syntax only */
enum {
    F_TRIGGER_ID = 0,
    F_INTEGRATION_ID,
    F_ACTION,
    F_FILE_ID,
    F_FOLDER_ID,
    F_PAGE_TOKEN,
    F_EXPORT_MIME_TYPE,
    F_DRIVE_ID,
    F_RECURSIVE,
    F_DRIVE_FILE,
    F_SUBJECT,
    F_LAST
};


typedef enum {
    T_NONE = 0,
    T_STRING,
    T_TRUE,
    T_FALSE,
    T_OBJECT,
    T_OTHER
} ngx_gdrive_type_e;


typedef struct {
    ngx_gdrive_type_e      type;
    const unsigned char   *start;     /* a string's first byte after '"' */
    size_t                 len;       /* its raw length */
    int                    escaped;
} ngx_gdrive_seen_t;


typedef struct {
    const unsigned char   *data;      /* the whole input, for positions */
    const unsigned char   *p;
    const unsigned char   *last;
    ngx_gdrive_msg_error_t *err;
} ngx_gdrive_scan_t;


typedef struct {
    int                   id;
    size_t                offset;
    size_t                max;
    int                 (*valid)(const char *s, size_t len);
    const char           *what;
} ngx_gdrive_string_field_t;


static const struct {
    const char  *name;
    size_t       len;
} ngx_gdrive_fields[F_LAST] = {
    { "trigger_id", 10 },
    { "integration_id", 14 },
    { "action", 6 },
    { "file_id", 7 },
    { "folder_id", 9 },
    { "page_token", 10 },
    { "export_mime_type", 16 },
    { "drive_id", 8 },
    { "recursive", 9 },
    { "drive_file", 10 },
    { "subject", 7 },
};


static const char  *ngx_gdrive_actions[] = {
    NULL, "sync_file", "sync_folder", "sync_changes"
};




static int ngx_gdrive_msg_fail(ngx_gdrive_msg_error_t *err, const char *code,
    const char *field, const char *fmt, ...);
static int ngx_gdrive_syntax(ngx_gdrive_scan_t *s, const char *what);
static void ngx_gdrive_ws(ngx_gdrive_scan_t *s);
static int ngx_gdrive_scan_value(ngx_gdrive_scan_t *s, int depth,
    ngx_gdrive_seen_t *seen);
static int ngx_gdrive_scan_object(ngx_gdrive_scan_t *s, int depth,
    ngx_gdrive_seen_t *fields);
static int ngx_gdrive_scan_string(ngx_gdrive_scan_t *s,
    ngx_gdrive_seen_t *seen);
static int ngx_gdrive_scan_number(ngx_gdrive_scan_t *s);
static int ngx_gdrive_hex4(const unsigned char *p, unsigned *cp);
static size_t ngx_gdrive_unescape(const unsigned char *p, size_t len,
    char *out);
static int ngx_gdrive_trigger_scan(const unsigned char *data,
    const unsigned char *start, const unsigned char *last, int depth,
    int require_id, ngx_gdrive_trigger_t *t, ngx_gdrive_msg_error_t *err,
    const unsigned char **end);
static int ngx_gdrive_trigger_fields(ngx_gdrive_trigger_t *t,
    ngx_gdrive_seen_t *seen, int require_id, ngx_gdrive_msg_error_t *err);
static int ngx_gdrive_valid_id(const char *s, size_t len);
static int ngx_gdrive_valid_drive_id(const char *s, size_t len);
static int ngx_gdrive_valid_token(const char *s, size_t len);
static int ngx_gdrive_valid_mime(const char *s, size_t len);
static int ngx_gdrive_valid_subject(const char *s, size_t len);
static int ngx_gdrive_trigger_string(ngx_gdrive_trigger_t *t,
    const ngx_gdrive_string_field_t *sf, ngx_gdrive_seen_t *v,
    int require_id, char **out, ngx_gdrive_msg_error_t *err);
static int ngx_gdrive_trigger_action(ngx_gdrive_trigger_t *t,
    ngx_gdrive_seen_t *v, ngx_gdrive_msg_error_t *err);
static int ngx_gdrive_trigger_others(ngx_gdrive_trigger_t *t,
    ngx_gdrive_seen_t *seen, ngx_gdrive_msg_error_t *err);


/* the string fields: where each goes, its limit and its syntax */

static const ngx_gdrive_string_field_t  ngx_gdrive_strings[] = {
    { F_TRIGGER_ID, offsetof(ngx_gdrive_trigger_t, trigger_id),
      NGX_GDRIVE_ID_MAX_LEN, ngx_gdrive_valid_id,
      "1 to 128 of [A-Za-z0-9._:-]" },
    { F_INTEGRATION_ID, offsetof(ngx_gdrive_trigger_t, integration_id),
      NGX_GDRIVE_ID_MAX_LEN, ngx_gdrive_valid_id,
      "1 to 128 of [A-Za-z0-9._:-]" },
    { F_ACTION, 0, 0, NULL, NULL },
    { F_FILE_ID, offsetof(ngx_gdrive_trigger_t, file_id),
      NGX_GDRIVE_DRIVE_ID_MAX_LEN, ngx_gdrive_valid_drive_id,
      "a Drive id: 1 to 200 of [A-Za-z0-9_-]" },
    { F_FOLDER_ID, offsetof(ngx_gdrive_trigger_t, folder_id),
      NGX_GDRIVE_DRIVE_ID_MAX_LEN, ngx_gdrive_valid_drive_id,
      "a Drive id: 1 to 200 of [A-Za-z0-9_-]" },
    { F_PAGE_TOKEN, offsetof(ngx_gdrive_trigger_t, page_token),
      1024, ngx_gdrive_valid_token,
      "1 to 1024 printable ASCII characters" },
    { F_EXPORT_MIME_TYPE, offsetof(ngx_gdrive_trigger_t,
                                   export_mime_type),
      255, ngx_gdrive_valid_mime, "a MIME type such as application/pdf" },
    { F_DRIVE_ID, offsetof(ngx_gdrive_trigger_t, drive_id),
      NGX_GDRIVE_DRIVE_ID_MAX_LEN, ngx_gdrive_valid_drive_id,
      "a Drive id: 1 to 200 of [A-Za-z0-9_-]" },
    { F_SUBJECT, offsetof(ngx_gdrive_trigger_t, subject),
      NGX_GDRIVE_SUBJECT_MAX_LEN, ngx_gdrive_valid_subject,
      "the e-mail address of the user to act as" },
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
    const unsigned char  *end;

    memset(t, 0, sizeof(ngx_gdrive_trigger_t));
    err->index = -1;

    if (len > NGX_GDRIVE_TRIGGER_MAX_SIZE) {
        return ngx_gdrive_msg_fail(err, "invalid_message", NULL,
                                   "a trigger is at most %d bytes, this one "
                                   "has %zu", NGX_GDRIVE_TRIGGER_MAX_SIZE,
                                   len);
    }

    if (ngx_gdrive_trigger_scan(data, data, data + len, 0, require_id, t,
                                err, &end)
        != 0)
    {
        return -1;
    }

    while (end < data + len
           && (*end == ' ' || *end == '\t' || *end == '\n' || *end == '\r'))
    {
        end++;
    }

    if (end != data + len) {
        ngx_gdrive_trigger_free(t);
        return ngx_gdrive_msg_fail(err, "invalid_message", NULL,
                                   "not valid JSON: data after the object "
                                   "at byte %ld", (long) (end - data));
    }

    /* the exact bytes, surrounding whitespace included */
    t->raw = data;
    t->raw_len = len;

    return 0;
}


int
ngx_gdrive_trigger_parse_body(const unsigned char *data, size_t len,
    size_t max_batch, ngx_gdrive_trigger_t **triggers, size_t *n,
    int *batch, ngx_gdrive_msg_error_t *err)
{
    size_t                 count, size;
    ngx_gdrive_scan_t      s;
    const unsigned char   *end;
    ngx_gdrive_trigger_t  *items, *grown;

    *triggers = NULL;
    *n = 0;
    *batch = 0;
    err->index = -1;

    s.data = data;
    s.p = data;
    s.last = data + len;
    s.err = err;

    ngx_gdrive_ws(&s);

    if (s.p == s.last || *s.p != '[') {
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

    /* an array: each item's exact bytes are kept, to be produced as such */

    *batch = 1;
    s.p++;

    items = NULL;
    count = 0;
    size = 0;

    ngx_gdrive_ws(&s);

    if (s.p < s.last && *s.p == ']') {
        return ngx_gdrive_msg_fail(err, "invalid_message", NULL,
                                   "an empty batch");
    }

    for ( ;; ) {

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

        if (s.p == s.last) {
            ngx_gdrive_syntax(&s, "the array is not closed");
            goto failed;
        }

        if (*s.p != '{') {
            ngx_gdrive_msg_fail(err, "invalid_message", NULL,
                                "a batch item must be a JSON object");
            err->index = (long) count;
            goto failed;
        }

        if (ngx_gdrive_trigger_scan(data, s.p, s.last, 1, 0, &items[count],
                                    err, &end)
            != 0)
        {
            err->index = (long) count;
            goto failed;
        }

        items[count].raw = s.p;
        items[count].raw_len = end - s.p;
        count++;

        if (items[count - 1].raw_len > NGX_GDRIVE_TRIGGER_MAX_SIZE) {
            ngx_gdrive_msg_fail(err, "invalid_message", NULL,
                                "a trigger is at most %d bytes, this one "
                                "has %zu", NGX_GDRIVE_TRIGGER_MAX_SIZE,
                                items[count - 1].raw_len);
            err->index = (long) count - 1;
            goto failed;
        }

        s.p = end;
        ngx_gdrive_ws(&s);

        if (s.p < s.last && *s.p == ',') {
            s.p++;
            ngx_gdrive_ws(&s);
            continue;
        }

        if (s.p < s.last && *s.p == ']') {
            s.p++;
            break;
        }

        ngx_gdrive_syntax(&s, s.p == s.last ? "the array is not closed"
                                            : "expected ',' or ']'");
        goto failed;
    }

    ngx_gdrive_ws(&s);

    if (s.p != s.last) {
        ngx_gdrive_syntax(&s, "data after the array");
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
    free(t->decoded);
    t->decoded = NULL;
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

    if (ngx_gdrive_random_bytes(b, sizeof(b)) != 0) {
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


/*
 * One trigger object starting at "start": scanned, its known fields
 * typed, then checked in a fixed order so that the same bad trigger always
 * gets the same answer.  *end is just past the closing brace.
 */

static int
ngx_gdrive_trigger_scan(const unsigned char *data, const unsigned char *start,
    const unsigned char *last, int depth, int require_id,
    ngx_gdrive_trigger_t *t, ngx_gdrive_msg_error_t *err,
    const unsigned char **end)
{
    ngx_gdrive_scan_t   s;
    ngx_gdrive_seen_t   seen[F_LAST], any;

    memset(t, 0, sizeof(ngx_gdrive_trigger_t));
    memset(seen, 0, sizeof(seen));

    s.data = data;
    s.p = start;
    s.last = last;
    s.err = err;

    ngx_gdrive_ws(&s);

    if (s.p == s.last) {
        return ngx_gdrive_msg_fail(err, "invalid_message", NULL,
                                   "empty message");
    }

    if (*s.p != '{') {
        if (ngx_gdrive_scan_value(&s, depth, &any) != 0) {
            return -1;
        }

        return ngx_gdrive_msg_fail(err, "invalid_message", NULL,
                                   "a trigger must be a JSON object");
    }

    if (ngx_gdrive_scan_object(&s, depth + 1, seen) != 0) {
        return -1;
    }

    *end = s.p;

    if (ngx_gdrive_trigger_fields(t, seen, require_id, err) != 0) {
        ngx_gdrive_trigger_free(t);
        return -1;
    }

    return 0;
}


static int
ngx_gdrive_trigger_fields(ngx_gdrive_trigger_t *t, ngx_gdrive_seen_t *seen,
    int require_id, ngx_gdrive_msg_error_t *err)
{
    int      i;
    char    *out;
    size_t   total;

    /* one buffer for every field that needs unescaping (rare) */

    total = 0;

    for (i = 0; i < F_LAST; i++) {
        if (seen[i].type == T_STRING && seen[i].escaped) {
            total += seen[i].len;
        }
    }

    out = NULL;

    if (total) {
        t->decoded = malloc(total);
        if (t->decoded == NULL) {
            return ngx_gdrive_msg_fail(err, "internal_error", NULL,
                                       "out of memory");
        }

        out = t->decoded;
    }

    for (i = 0; i < (int) (sizeof(ngx_gdrive_strings)
                           / sizeof(ngx_gdrive_strings[0]));
         i++)
    {
        if (ngx_gdrive_trigger_string(t, &ngx_gdrive_strings[i],
                                      &seen[ngx_gdrive_strings[i].id],
                                      require_id, &out, err)
            != 0)
        {
            return -1;
        }
    }

    return ngx_gdrive_trigger_others(t, seen, err);
}


/* one string field: present when required, valid, unescaped into *out */

static int
ngx_gdrive_trigger_string(ngx_gdrive_trigger_t *t,
    const ngx_gdrive_string_field_t *sf, ngx_gdrive_seen_t *v,
    int require_id, char **out, ngx_gdrive_msg_error_t *err)
{
    const char          *name;
    ngx_gdrive_field_t  *f;

    name = ngx_gdrive_fields[sf->id].name;

    if (v->type == T_NONE) {
        if (sf->id == F_TRIGGER_ID && require_id) {
            return ngx_gdrive_msg_fail(err, "missing_field", name,
                                       "field \"trigger_id\" is "
                                       "required");
        }

        if (sf->id == F_INTEGRATION_ID || sf->id == F_ACTION) {
            return ngx_gdrive_msg_fail(err, "missing_field", name,
                                       "field \"%s\" is required", name);
        }

        return 0;
    }

    if (v->type != T_STRING) {
        return ngx_gdrive_msg_fail(err, "invalid_message", name,
                                   "field \"%s\" must be a string", name);
    }

    if (sf->id == F_ACTION) {
        return ngx_gdrive_trigger_action(t, v, err);
    }

    f = (ngx_gdrive_field_t *) ((char *) t + sf->offset);

    if (v->escaped) {
        f->data = *out;
        f->len = ngx_gdrive_unescape(v->start, v->len, *out);
        *out += f->len;

    } else {
        f->data = (const char *) v->start;
        f->len = v->len;
    }

    if (f->len == 0 || f->len > sf->max || !sf->valid(f->data, f->len)) {
        return ngx_gdrive_msg_fail(err, "invalid_message", name,
                                   "field \"%s\" must be %s", name,
                                   sf->what);
    }

    return 0;
}


static int
ngx_gdrive_trigger_action(ngx_gdrive_trigger_t *t, ngx_gdrive_seen_t *v,
    ngx_gdrive_msg_error_t *err)
{
    for (t->action = NGX_GDRIVE_SYNC_FILE;
         t->action <= NGX_GDRIVE_SYNC_CHANGES;
         t->action++)
    {
        if (!v->escaped
            && v->len == strlen(ngx_gdrive_actions[t->action])
            && memcmp(v->start, ngx_gdrive_actions[t->action], v->len) == 0)
        {
            return 0;
        }
    }

    t->action = 0;

    return ngx_gdrive_msg_fail(err, "invalid_message", "action",
                               "field \"action\" must be sync_file, "
                               "sync_folder or sync_changes");
}


/* the fields that are not strings, and what each action requires */

static int
ngx_gdrive_trigger_others(ngx_gdrive_trigger_t *t, ngx_gdrive_seen_t *seen,
    ngx_gdrive_msg_error_t *err)
{
    if (seen[F_RECURSIVE].type != T_NONE) {
        if (seen[F_RECURSIVE].type != T_TRUE
            && seen[F_RECURSIVE].type != T_FALSE)
        {
            return ngx_gdrive_msg_fail(err, "invalid_message", "recursive",
                                       "field \"recursive\" must be true "
                                       "or false");
        }

        t->recursive = (seen[F_RECURSIVE].type == T_TRUE);
    }

    if (seen[F_DRIVE_FILE].type != T_NONE) {
        if (seen[F_DRIVE_FILE].type != T_OBJECT
            || t->action != NGX_GDRIVE_SYNC_FILE)
        {
            return ngx_gdrive_msg_fail(err, "invalid_message", "drive_file",
                                       "field \"drive_file\" must be an "
                                       "object, and only in a sync_file");
        }

        t->drive_file = 1;
    }

    if (t->action == NGX_GDRIVE_SYNC_FILE && t->file_id.data == NULL) {
        return ngx_gdrive_msg_fail(err, "missing_field", "file_id",
                                   "field \"file_id\" is required for "
                                   "sync_file");
    }

    if (t->action == NGX_GDRIVE_SYNC_FOLDER && t->folder_id.data == NULL) {
        return ngx_gdrive_msg_fail(err, "missing_field", "folder_id",
                                   "field \"folder_id\" is required for "
                                   "sync_folder");
    }

    return 0;
}


/* the scanner: RFC 8259 JSON, strict about UTF-8, bounded in depth */

static int
ngx_gdrive_scan_value(ngx_gdrive_scan_t *s, int depth, ngx_gdrive_seen_t *v)
{
    size_t  n;

    v->type = T_OTHER;

    if (s->p == s->last) {
        return ngx_gdrive_syntax(s, "a value is missing");
    }

    switch (*s->p) {

    case '{':
        if (depth + 1 > NGX_GDRIVE_TRIGGER_MAX_DEPTH) {
            return ngx_gdrive_msg_fail(s->err, "invalid_message", NULL,
                                       "JSON nested deeper than %d levels",
                                       NGX_GDRIVE_TRIGGER_MAX_DEPTH);
        }

        v->type = T_OBJECT;

        return ngx_gdrive_scan_object(s, depth + 1, NULL);

    case '[':
        if (depth + 1 > NGX_GDRIVE_TRIGGER_MAX_DEPTH) {
            return ngx_gdrive_msg_fail(s->err, "invalid_message", NULL,
                                       "JSON nested deeper than %d levels",
                                       NGX_GDRIVE_TRIGGER_MAX_DEPTH);
        }

        s->p++;
        ngx_gdrive_ws(s);

        if (s->p < s->last && *s->p == ']') {
            s->p++;
            return 0;
        }

        for ( ;; ) {
            ngx_gdrive_seen_t  item;

            if (ngx_gdrive_scan_value(s, depth + 1, &item) != 0) {
                return -1;
            }

            ngx_gdrive_ws(s);

            if (s->p < s->last && *s->p == ',') {
                s->p++;
                ngx_gdrive_ws(s);
                continue;
            }

            if (s->p < s->last && *s->p == ']') {
                s->p++;
                return 0;
            }

            return ngx_gdrive_syntax(s, "expected ',' or ']' in an array");
        }

    case '"':
        return ngx_gdrive_scan_string(s, v);

    case 't':
    case 'f':
    case 'n':
        n = (*s->p == 'f') ? 5 : 4;

        if ((size_t) (s->last - s->p) >= n
            && memcmp(s->p, *s->p == 't' ? "true"
                            : *s->p == 'f' ? "false" : "null", n) == 0)
        {
            v->type = (*s->p == 't') ? T_TRUE
                      : (*s->p == 'f') ? T_FALSE : T_OTHER;
            s->p += n;
            return 0;
        }

        return ngx_gdrive_syntax(s, "an invalid literal");

    default:
        return ngx_gdrive_scan_number(s);
    }
}


/* fields: where the trigger's own fields are recorded (top level only) */

static int
ngx_gdrive_scan_object(ngx_gdrive_scan_t *s, int depth,
    ngx_gdrive_seen_t *fields)
{
    int                 i, known;
    char                decoded[6 * 32];
    size_t              name_len;
    const char         *name;
    ngx_gdrive_seen_t   key, value;

    s->p++;    /* '{' */
    ngx_gdrive_ws(s);

    if (s->p < s->last && *s->p == '}') {
        s->p++;
        return 0;
    }

    for ( ;; ) {

        if (s->p == s->last || *s->p != '"') {
            return ngx_gdrive_syntax(s, s->p == s->last
                                        ? "the object is not closed"
                                        : "expected a quoted member name");
        }

        if (ngx_gdrive_scan_string(s, &key) != 0) {
            return -1;
        }

        known = -1;

        /*
         * Names are compared as decoded: "integration\u005fid" is
         * integration_id, and so a second one is refused as a duplicate
         * (other consumers of the topic would read the last of them).
         * A field name escaped whole takes at most 6 bytes a character.
         */

        if (fields) {
            name = (const char *) key.start;
            name_len = key.len;

            if (key.escaped && key.len <= sizeof(decoded)) {
                name_len = ngx_gdrive_unescape(key.start, key.len, decoded);
                name = decoded;

            } else if (key.escaped) {
                name_len = 0;
            }

            for (i = 0; i < F_LAST; i++) {
                if (name_len == ngx_gdrive_fields[i].len
                    && memcmp(name, ngx_gdrive_fields[i].name, name_len) == 0)
                {
                    known = i;
                    break;
                }
            }
        }

        ngx_gdrive_ws(s);

        if (s->p == s->last || *s->p != ':') {
            return ngx_gdrive_syntax(s, "expected ':' after a member name");
        }

        s->p++;
        ngx_gdrive_ws(s);

        if (ngx_gdrive_scan_value(s, depth, &value) != 0) {
            return -1;
        }

        if (known >= 0) {
            if (fields[known].type != T_NONE) {
                return ngx_gdrive_msg_fail(s->err, "invalid_message",
                                           ngx_gdrive_fields[known].name,
                                           "field \"%s\" appears twice",
                                           ngx_gdrive_fields[known].name);
            }

            fields[known] = value;
        }

        ngx_gdrive_ws(s);

        if (s->p < s->last && *s->p == ',') {
            s->p++;
            ngx_gdrive_ws(s);
            continue;
        }

        if (s->p < s->last && *s->p == '}') {
            s->p++;
            return 0;
        }

        return ngx_gdrive_syntax(s, s->p == s->last
                                    ? "the object is not closed"
                                    : "expected ',' or '}' in an object");
    }
}


static int
ngx_gdrive_scan_string(ngx_gdrive_scan_t *s, ngx_gdrive_seen_t *v)
{
    unsigned              c, cp, lo;
    const unsigned char  *p;

    p = ++s->p;    /* '"' */

    v->type = T_STRING;
    v->start = p;
    v->escaped = 0;

    while (p < s->last) {
        c = *p;

        if (c == '"') {
            v->len = p - v->start;
            s->p = p + 1;
            return 0;
        }

        if (c < 0x20) {
            s->p = p;
            return ngx_gdrive_syntax(s, "a control character in a string");
        }

        if (c == '\\') {
            v->escaped = 1;

            if (p + 1 == s->last) {
                break;
            }

            switch (p[1]) {
            case '"': case '\\': case '/': case 'b': case 'f': case 'n':
            case 'r': case 't':
                p += 2;
                continue;

            case 'u':
                if (s->last - p < 6 || ngx_gdrive_hex4(p + 2, &cp) != 0) {
                    s->p = p;
                    return ngx_gdrive_syntax(s, "an invalid \\u escape");
                }

                p += 6;

                if (cp == 0) {
                    s->p = p;
                    return ngx_gdrive_syntax(s, "\\u0000 in a string");
                }

                if (cp >= 0xdc00 && cp <= 0xdfff) {
                    s->p = p;
                    return ngx_gdrive_syntax(s, "a lone low surrogate");
                }

                if (cp >= 0xd800 && cp <= 0xdbff) {
                    if (s->last - p < 6 || p[0] != '\\' || p[1] != 'u'
                        || ngx_gdrive_hex4(p + 2, &lo) != 0
                        || lo < 0xdc00 || lo > 0xdfff)
                    {
                        s->p = p;
                        return ngx_gdrive_syntax(s, "a lone high surrogate");
                    }

                    p += 6;
                }

                continue;

            default:
                s->p = p;
                return ngx_gdrive_syntax(s, "an invalid escape");
            }
        }

        if (c < 0x80) {
            p++;
            continue;
        }

        /* UTF-8: shortest form, no surrogates, at most U+10FFFF */

        if (c >= 0xc2 && c <= 0xdf) {
            if (s->last - p < 2 || (p[1] & 0xc0) != 0x80) {
                goto utf8;
            }

            p += 2;

        } else if (c >= 0xe0 && c <= 0xef) {
            if (s->last - p < 3 || (p[1] & 0xc0) != 0x80
                || (p[2] & 0xc0) != 0x80
                || (c == 0xe0 && p[1] < 0xa0)
                || (c == 0xed && p[1] > 0x9f))
            {
                goto utf8;
            }

            p += 3;

        } else if (c >= 0xf0 && c <= 0xf4) {
            if (s->last - p < 4 || (p[1] & 0xc0) != 0x80
                || (p[2] & 0xc0) != 0x80 || (p[3] & 0xc0) != 0x80
                || (c == 0xf0 && p[1] < 0x90)
                || (c == 0xf4 && p[1] > 0x8f))
            {
                goto utf8;
            }

            p += 4;

        } else {
            goto utf8;
        }
    }

    s->p = p;
    return ngx_gdrive_syntax(s, "a string is not closed");

utf8:

    s->p = p;
    return ngx_gdrive_syntax(s, "invalid UTF-8");
}


static int
ngx_gdrive_scan_number(ngx_gdrive_scan_t *s)
{
    const unsigned char  *p, *last;

    p = s->p;
    last = s->last;

    if (p < last && *p == '-') {
        p++;
    }

    if (p == last || *p < '0' || *p > '9') {
        return ngx_gdrive_syntax(s, "an unexpected character");
    }

    if (*p == '0') {
        p++;

    } else {
        while (p < last && *p >= '0' && *p <= '9') {
            p++;
        }
    }

    if (p < last && *p == '.') {
        p++;

        if (p == last || *p < '0' || *p > '9') {
            s->p = p;
            return ngx_gdrive_syntax(s, "a number without digits after '.'");
        }

        while (p < last && *p >= '0' && *p <= '9') {
            p++;
        }
    }

    if (p < last && (*p == 'e' || *p == 'E')) {
        p++;

        if (p < last && (*p == '+' || *p == '-')) {
            p++;
        }

        if (p == last || *p < '0' || *p > '9') {
            s->p = p;
            return ngx_gdrive_syntax(s, "a number without an exponent");
        }

        while (p < last && *p >= '0' && *p <= '9') {
            p++;
        }
    }

    s->p = p;

    return 0;
}


static void
ngx_gdrive_ws(ngx_gdrive_scan_t *s)
{
    while (s->p < s->last
           && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n'
               || *s->p == '\r'))
    {
        s->p++;
    }
}


static int
ngx_gdrive_hex4(const unsigned char *p, unsigned *cp)
{
    int       i;
    unsigned  c, v;

    v = 0;

    for (i = 0; i < 4; i++) {
        c = p[i];

        if (c >= '0' && c <= '9') {
            c -= '0';

        } else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f') {
            c = (c | 0x20) - 'a' + 10;

        } else {
            return -1;
        }

        v = (v << 4) | c;
    }

    *cp = v;

    return 0;
}


/* a scanned (so well-formed) string body into UTF-8; never longer */

static size_t
ngx_gdrive_unescape(const unsigned char *p, size_t len, char *out)
{
    char                 *o;
    unsigned              cp, lo;
    const unsigned char  *last;

    o = out;
    last = p + len;

    while (p < last) {

        if (*p != '\\') {
            *o++ = (char) *p++;
            continue;
        }

        switch (p[1]) {
        case 'b': *o++ = '\b'; p += 2; continue;
        case 'f': *o++ = '\f'; p += 2; continue;
        case 'n': *o++ = '\n'; p += 2; continue;
        case 'r': *o++ = '\r'; p += 2; continue;
        case 't': *o++ = '\t'; p += 2; continue;
        case 'u': break;
        default:  *o++ = (char) p[1]; p += 2; continue;
        }

        (void) ngx_gdrive_hex4(p + 2, &cp);
        p += 6;

        if (cp >= 0xd800 && cp <= 0xdbff) {
            (void) ngx_gdrive_hex4(p + 2, &lo);
            p += 6;
            cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
        }

        if (cp < 0x80) {
            *o++ = (char) cp;

        } else if (cp < 0x800) {
            *o++ = (char) (0xc0 | (cp >> 6));
            *o++ = (char) (0x80 | (cp & 0x3f));

        } else if (cp < 0x10000) {
            *o++ = (char) (0xe0 | (cp >> 12));
            *o++ = (char) (0x80 | ((cp >> 6) & 0x3f));
            *o++ = (char) (0x80 | (cp & 0x3f));

        } else {
            *o++ = (char) (0xf0 | (cp >> 18));
            *o++ = (char) (0x80 | ((cp >> 12) & 0x3f));
            *o++ = (char) (0x80 | ((cp >> 6) & 0x3f));
            *o++ = (char) (0x80 | (cp & 0x3f));
        }
    }

    return o - out;
}


static int
ngx_gdrive_valid_id(const char *s, size_t len)
{
    size_t  i, dots;
    char    c;

    dots = 0;

    for (i = 0; i < len; i++) {
        c = s[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
              || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == ':'
              || c == '-'))
        {
            return 0;
        }

        dots += (c == '.');
    }

    /*
     * Ids go into URL paths (the control plane's) and S3 keys as one
     * segment: "." and ".." would be a dot segment there, and an id of
     * dots alone names nothing.
     */

    return dots < len;
}


/* an id that Drive itself returned (a listing, a shortcut's target) */

int
ngx_gdrive_drive_id_valid(const char *s, size_t len)
{
    return len > 0 && len <= NGX_GDRIVE_DRIVE_ID_MAX_LEN
           && ngx_gdrive_valid_drive_id(s, len);
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
        if ((unsigned char) s[i] <= ' ' || (unsigned char) s[i] >= 0x7f) {
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


static int
ngx_gdrive_syntax(ngx_gdrive_scan_t *s, const char *what)
{
    return ngx_gdrive_msg_fail(s->err, "invalid_message", NULL,
                               "not valid JSON: %s at byte %ld", what,
                               (long) (s->p - s->data));
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


static int
ngx_gdrive_valid_subject(const char *s, size_t len)
{
    return ngx_gdrive_email_valid(s, len);
}


/*
 * An e-mail address as Google's accounts have them, in printable ASCII:
 * a local part, one '@', a domain with a dot; none of the characters that
 * would need quoting in a header, a JSON string or a log line.
 */

int
ngx_gdrive_email_valid(const char *s, size_t len)
{
    size_t       i, at;
    const char  *p;

    if (len < 3 || len > NGX_GDRIVE_SUBJECT_MAX_LEN) {
        return 0;
    }

    at = 0;

    for (i = 0, p = s; i < len; i++, p++) {
        if (*p <= 0x20 || *p >= 0x7f || *p == '"' || *p == '\\'
            || *p == ',' || *p == '<' || *p == '>' || *p == '(' || *p == ')'
            || *p == '/')
        {
            return 0;
        }

        if (*p == '@') {
            if (at) {
                return 0;
            }

            at = i;
        }
    }

    return at > 0 && at < len - 1 && memchr(s + at + 1, '.', len - at - 1)
           && s[len - 1] != '.' && s[at + 1] != '.';
}


/* the JSON writer */

static int ngx_gdrive_json_room(ngx_gdrive_json_t *j, size_t n);
static void ngx_gdrive_json_key(ngx_gdrive_json_t *j, const char *key);
static size_t ngx_gdrive_utf8_len(const unsigned char *p, size_t n);


void
ngx_gdrive_json_init(ngx_gdrive_json_t *j, size_t size, size_t max)
{
    memset(j, 0, sizeof(ngx_gdrive_json_t));

    j->max = max;
    j->data = malloc(size);

    if (j->data == NULL) {
        j->failed = 1;
        return;
    }

    j->size = size;
}


static int
ngx_gdrive_json_room(ngx_gdrive_json_t *j, size_t n)
{
    char    *p;
    size_t   size;

    if (j->failed) {
        return 0;
    }

    if (j->size - j->len > n) {
        return 1;
    }

    size = j->size;

    while (size - j->len <= n) {
        size *= 2;
    }

    if (size > j->max) {
        j->failed = 1;
        return 0;
    }

    p = realloc(j->data, size);
    if (p == NULL) {
        j->failed = 1;
        return 0;
    }

    j->data = p;
    j->size = size;

    return 1;
}


/* the comma before a member, and its "key": */

static void
ngx_gdrive_json_key(ngx_gdrive_json_t *j, const char *key)
{
    size_t  n;

    n = key ? strlen(key) : 0;

    if (!ngx_gdrive_json_room(j, n + 4)) {
        return;
    }

    if (j->more & (1u << j->depth)) {
        j->data[j->len++] = ',';
    }

    j->more |= 1u << j->depth;

    if (key) {
        /* the keys are the program's own: nothing to escape */
        j->data[j->len++] = '"';
        memcpy(j->data + j->len, key, n);
        j->len += n;
        j->data[j->len++] = '"';
        j->data[j->len++] = ':';
    }
}


void
ngx_gdrive_json_open(ngx_gdrive_json_t *j, const char *key)
{
    if (j->depth == 31) {
        j->failed = 1;
        return;
    }

    ngx_gdrive_json_key(j, key);

    if (!ngx_gdrive_json_room(j, 1)) {
        return;
    }

    j->data[j->len++] = '{';
    j->depth++;
    j->more &= ~(1u << j->depth);
}


void
ngx_gdrive_json_close(ngx_gdrive_json_t *j)
{
    if (j->depth == 0 || !ngx_gdrive_json_room(j, 1)) {
        j->failed = 1;
        return;
    }

    j->data[j->len++] = '}';
    j->depth--;
}


void
ngx_gdrive_json_string(ngx_gdrive_json_t *j, const char *key,
    const char *s, size_t len)
{
    char                  *d;
    size_t                 i, n;
    const unsigned char   *p;

    static const char  hex[] = "0123456789abcdef";

    ngx_gdrive_json_key(j, key);

    /* at worst 6 bytes a byte ("\u001f"), or 3 for 1 (U+FFFD) */
    if (!ngx_gdrive_json_room(j, len * 6 + 2)) {
        return;
    }

    d = j->data + j->len;
    p = (const unsigned char *) s;

    *d++ = '"';

    for (i = 0; i < len; /* void */) {

        if (p[i] >= 0x80) {
            n = ngx_gdrive_utf8_len(p + i, len - i);

            if (n == 0) {
                *d++ = (char) 0xef;
                *d++ = (char) 0xbf;
                *d++ = (char) 0xbd;
                i++;
                continue;
            }

            memcpy(d, p + i, n);
            d += n;
            i += n;
            continue;
        }

        switch (p[i]) {

        case '"':
        case '\\':
            *d++ = '\\';
            *d++ = (char) p[i];
            break;

        case '\n':
            *d++ = '\\';
            *d++ = 'n';
            break;

        case '\r':
            *d++ = '\\';
            *d++ = 'r';
            break;

        case '\t':
            *d++ = '\\';
            *d++ = 't';
            break;

        default:
            if (p[i] < 0x20 || p[i] == 0x7f) {
                *d++ = '\\';
                *d++ = 'u';
                *d++ = '0';
                *d++ = '0';
                *d++ = hex[p[i] >> 4];
                *d++ = hex[p[i] & 0xf];

            } else {
                *d++ = (char) p[i];
            }
        }

        i++;
    }

    *d++ = '"';

    j->len = d - j->data;
}


void
ngx_gdrive_json_int(ngx_gdrive_json_t *j, const char *key, long long n)
{
    ngx_gdrive_json_key(j, key);

    if (!ngx_gdrive_json_room(j, 24)) {
        return;
    }

    j->len += snprintf(j->data + j->len, 24, "%lld", n);
}


void
ngx_gdrive_json_raw(ngx_gdrive_json_t *j, const char *key, const char *s,
    size_t len)
{
    ngx_gdrive_json_key(j, key);

    if (!ngx_gdrive_json_room(j, len)) {
        return;
    }

    memcpy(j->data + j->len, s, len);
    j->len += len;
}


char *
ngx_gdrive_json_done(ngx_gdrive_json_t *j, size_t *len)
{
    char  *data;

    if (j->depth != 0 || !ngx_gdrive_json_room(j, 1)) {
        free(j->data);
        j->data = NULL;
        return NULL;
    }

    j->data[j->len] = '\0';

    data = j->data;
    j->data = NULL;

    if (len) {
        *len = j->len;
    }

    return data;
}


/*
 * The length of the valid UTF-8 sequence at p (RFC 3629: no overlong
 * forms, no surrogates, nothing past U+10FFFF), or 0.
 */

static size_t
ngx_gdrive_utf8_len(const unsigned char *p, size_t n)
{
    size_t    len, i;
    unsigned  cp, min;

    if (p[0] >= 0xf0 && p[0] <= 0xf4) {
        len = 4;
        cp = p[0] & 0x07;
        min = 0x10000;

    } else if (p[0] >= 0xe0 && p[0] <= 0xef) {
        len = 3;
        cp = p[0] & 0x0f;
        min = 0x800;

    } else if (p[0] >= 0xc2 && p[0] <= 0xdf) {
        len = 2;
        cp = p[0] & 0x1f;
        min = 0x80;

    } else {
        return 0;
    }

    if (n < len) {
        return 0;
    }

    for (i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80) {
            return 0;
        }

        cp = (cp << 6) | (p[i] & 0x3f);
    }

    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
        return 0;
    }

    return len;
}
