
/*
 * nginx-gdrive-worker: the trigger message schema, and the JSON writer
 * of the result event that answers it.
 *
 * Infrastructure, free of nginx: the HTTP trigger location and the Kafka
 * consumer validate with this same code, and the unit tests and the fuzz
 * target link it alone.
 */


#ifndef _NGX_GDRIVE_MESSAGE_H_INCLUDED_
#define _NGX_GDRIVE_MESSAGE_H_INCLUDED_


#include <stddef.h>


#define NGX_GDRIVE_TRIGGER_MAX_SIZE   65536
#define NGX_GDRIVE_TRIGGER_MAX_DEPTH  16
#define NGX_GDRIVE_ID_MAX_LEN         128
#define NGX_GDRIVE_DRIVE_ID_MAX_LEN   200
#define NGX_GDRIVE_UUID_LEN           36
#define NGX_GDRIVE_SUBJECT_MAX_LEN    254


typedef enum {
    NGX_GDRIVE_SYNC_FILE = 1,
    NGX_GDRIVE_SYNC_FOLDER,
    NGX_GDRIVE_SYNC_CHANGES
} ngx_gdrive_action_e;


typedef struct {
    const char            *code;     /* invalid_message, missing_field */
    const char            *field;    /* the field at fault, or NULL */
    long                   index;    /* the batch item, or -1 */
    char                   detail[192];
} ngx_gdrive_msg_error_t;


/* a string field's value: data is NULL when the field is absent */
typedef struct {
    const char            *data;
    size_t                 len;
} ngx_gdrive_field_t;


typedef struct {
    const unsigned char   *raw;      /* the trigger's exact bytes */
    size_t                 raw_len;

    ngx_gdrive_field_t     trigger_id;
    ngx_gdrive_field_t     integration_id;
    ngx_gdrive_action_e    action;
    ngx_gdrive_field_t     file_id;
    ngx_gdrive_field_t     folder_id;
    ngx_gdrive_field_t     page_token;
    ngx_gdrive_field_t     export_mime_type;
    ngx_gdrive_field_t     drive_id;
    ngx_gdrive_field_t     subject;    /* the user a service account
                                          acts as */
    int                    recursive;
    int                    drive_file; /* carries Drive's metadata */

    char                  *decoded;  /* fields that came with escapes */
} ngx_gdrive_trigger_t;


/*
 * Triggers are checked by a strict JSON scanner (RFC 8259, UTF-8) that
 * allocates nothing unless a field used here came with escapes: values
 * point into the input, which must outlive the trigger.
 *
 * One trigger object, the whole input.  require_id: a trigger without a
 * trigger_id is invalid (Kafka messages); HTTP lets the server make one.
 * Returns 0, or -1 with err filled in; on success free with
 * ngx_gdrive_trigger_free().
 */
int ngx_gdrive_trigger_parse(const unsigned char *data, size_t len,
    int require_id, ngx_gdrive_trigger_t *t, ngx_gdrive_msg_error_t *err);

/*
 * An HTTP body: one trigger object, or an array of 1..max_batch of them,
 * validated as a whole.  On success *triggers is a malloc()ed array of *n
 * triggers (free with ngx_gdrive_triggers_free()) and *batch says whether
 * the body was an array.
 */
int ngx_gdrive_trigger_parse_body(const unsigned char *data, size_t len,
    size_t max_batch, ngx_gdrive_trigger_t **triggers, size_t *n,
    int *batch, ngx_gdrive_msg_error_t *err);

void ngx_gdrive_trigger_free(ngx_gdrive_trigger_t *t);
void ngx_gdrive_triggers_free(ngx_gdrive_trigger_t *triggers, size_t n);

/* a random (version 4) UUID into buf[NGX_GDRIVE_UUID_LEN + 1] */
int ngx_gdrive_uuid(char *buf);

const char *ngx_gdrive_action_name(ngx_gdrive_action_e action);


/*
 * A JSON text written as it goes (result events): members appended to a
 * malloc()ed buffer that grows, strings escaped as RFC 8259 asks and made
 * valid UTF-8 (a byte that starts no valid sequence becomes U+FFFD), so
 * that what comes from Drive or a trigger cannot break the text.  key is
 * NULL for the top object only.  Out of memory, or past max bytes, every
 * later call does nothing and done() returns NULL.
 */
typedef struct {
    char                  *data;
    size_t                 len;
    size_t                 size;
    size_t                 max;
    unsigned               depth;
    unsigned               more;     /* bit per depth: a member came */
    int                    failed;
} ngx_gdrive_json_t;

void ngx_gdrive_json_init(ngx_gdrive_json_t *j, size_t size, size_t max);
void ngx_gdrive_json_open(ngx_gdrive_json_t *j, const char *key);
void ngx_gdrive_json_close(ngx_gdrive_json_t *j);
void ngx_gdrive_json_string(ngx_gdrive_json_t *j, const char *key,
    const char *s, size_t len);
void ngx_gdrive_json_int(ngx_gdrive_json_t *j, const char *key,
    long long n);
/* a value already JSON (one that jansson wrote, say), as it is */
void ngx_gdrive_json_raw(ngx_gdrive_json_t *j, const char *key,
    const char *s, size_t len);
/* the NUL-terminated text, for free(); NULL: it could not be written */
char *ngx_gdrive_json_done(ngx_gdrive_json_t *j, size_t *len);
int ngx_gdrive_drive_id_valid(const char *s, size_t len);
int ngx_gdrive_email_valid(const char *s, size_t len);


#endif /* _NGX_GDRIVE_MESSAGE_H_INCLUDED_ */
