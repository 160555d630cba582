
/*
 * nginx-gdrive-worker: the trigger message schema.
 *
 * Infrastructure, free of nginx: the HTTP trigger location and the Kafka
 * consumer validate with this same code, and the unit tests and the fuzz
 * target link it alone.
 */


#ifndef _NGX_GDRIVE_MESSAGE_H_INCLUDED_
#define _NGX_GDRIVE_MESSAGE_H_INCLUDED_


#include <stddef.h>
#include <jansson.h>


#define NGX_GDRIVE_TRIGGER_MAX_SIZE   65536
#define NGX_GDRIVE_TRIGGER_MAX_DEPTH  16
#define NGX_GDRIVE_ID_MAX_LEN         128
#define NGX_GDRIVE_DRIVE_ID_MAX_LEN   200
#define NGX_GDRIVE_UUID_LEN           36


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


typedef struct {
    json_t                *root;     /* owned; the whole object */
    const unsigned char   *raw;      /* the trigger's exact bytes */
    size_t                 raw_len;

    const char            *trigger_id;      /* NULL when absent */
    const char            *integration_id;
    ngx_gdrive_action_e    action;
    const char            *file_id;
    const char            *folder_id;
    const char            *page_token;
    const char            *export_mime_type;
    const char            *drive_id;
    int                    recursive;
} ngx_gdrive_trigger_t;


/*
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


#endif /* _NGX_GDRIVE_MESSAGE_H_INCLUDED_ */
