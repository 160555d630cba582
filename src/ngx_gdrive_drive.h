
/*
 * nginx-gdrive-worker: the Google Drive v3 API (ngx_gdrive_drive.c).
 *
 * Client layer: the typed calls the job engine makes, the parsed pages
 * it gets back, the export tables and the metadata cache around files.
 */


#ifndef _NGX_GDRIVE_DRIVE_H_INCLUDED_
#define _NGX_GDRIVE_DRIVE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include <jansson.h>

#include "ngx_gdrive.h"
#include "ngx_gdrive_http.h"


#define NGX_GDRIVE_FOLDER_MIME    "application/vnd.google-apps.folder"
#define NGX_GDRIVE_SHORTCUT_MIME  "application/vnd.google-apps.shortcut"
#define NGX_GDRIVE_APPS_PREFIX    "application/vnd.google-apps."


/*
 * One call at a time per object, under the shared rate limiter; the
 * answer comes through handler, never from inside the call.  JSON answers
 * are in json (owned by the object until the next call); content goes to
 * sink, which may return CURL_WRITEFUNC_PAUSE and later call
 * ngx_gdrive_drive_resume(), or 0 with sink_failed set to stop the
 * download.
 */

#define NGX_GDRIVE_TOKEN_MAX_LEN   2048

typedef struct ngx_gdrive_drive_s  ngx_gdrive_drive_t;

struct ngx_gdrive_drive_s {
    ngx_pool_t              *pool;
    ngx_log_t               *log;
    ngx_str_t                integration;
    ngx_str_t                token;
    void                   (*handler)(ngx_gdrive_drive_t *d);
    size_t                 (*sink)(ngx_gdrive_drive_t *d, u_char *p,
                                   size_t len);
    /* the call starts (1) or ends (0) waiting for the rate limiter */
    void                   (*waiting)(ngx_gdrive_drive_t *d,
                                      ngx_uint_t waiting);
    void                    *data;
    /* a header line sent with the call (a resource key), or NULL */
    const char              *header;
    /* a download's length as Drive's metadata gives it, or -1; read
     * only by calls with a sink (media, export, export link) */
    off_t                    expect;
    /* follow up to 5 redirects, to trusted hosts only (export links) */
    unsigned                 follow:1;

    /* the answer */
    ngx_int_t                rc;          /* NGX_OK, NGX_ERROR */
    long                     status;
    const char              *code;        /* error code (README, Error codes) */
    const char              *reason;      /* Google's, when known */
    ngx_uint_t               permanent;
    ngx_int_t                retry_after; /* seconds, -1: none */
    ngx_msec_t               held;        /* the hold this answer made the
                                             integration's, 0: none */
    void                    *json;        /* json_t *, a JSON answer */
    off_t                    bytes;       /* content taken by the sink */
    u_char                   detail[256];

    /* its state */
    ngx_gdrive_http_t       *http;
    ngx_event_t              wait;
    const char              *endpoint;
    char                    *url;
    ngx_msec_t               started;
    ngx_msec_t               waited;
    unsigned                 active:1;
    unsigned                 paused:1;
    unsigned                 sink_failed:1;
    unsigned                 cleanup_set:1;
    unsigned                 wait_global:1;
    ngx_uint_t               redirects;
    ngx_uint_t               requests;    /* made to Google, redirects
                                             included */
};

ngx_int_t ngx_gdrive_drive_init(ngx_http_gdrive_main_conf_t *gmcf);
ngx_uint_t ngx_gdrive_drive_trusted(const char *url);
void ngx_gdrive_drive_call(ngx_gdrive_drive_t *d, const char *endpoint,
    char *url);
void ngx_gdrive_drive_resume(ngx_gdrive_drive_t *d);
void ngx_gdrive_drive_cancel(ngx_gdrive_drive_t *d);
ngx_int_t ngx_gdrive_drive_escape(ngx_pool_t *pool, const char *data,
    size_t len, ngx_str_t *out);


/*
 * The typed calls: each builds its URL and fields= and starts the call;
 * NGX_ERROR is no memory, and then no answer comes.
 *
 * file_get: a file's metadata (what the S3 key, the export and the result
 * use) in d->json.  folder_drive: the drive a folder is in.  media,
 * export, export_link: the content to d->sink; export_link is NGX_DECLINED
 * when the metadata has no usable link for the type.  list: a page of a
 * folder's children, in all drives (drive NULL), the user's own (drive
 * empty) or one drive; changes_start: a start page token, read with
 * ngx_gdrive_drive_start_token(); changes: a page of the changes feed.
 * Pages are read with ngx_gdrive_drive_page_open() and
 * ngx_gdrive_drive_page_next().
 */

ngx_int_t ngx_gdrive_drive_file_get(ngx_gdrive_drive_t *d, ngx_str_t *id);
ngx_int_t ngx_gdrive_drive_folder_drive(ngx_gdrive_drive_t *d,
    ngx_str_t *folder);
ngx_int_t ngx_gdrive_drive_media(ngx_gdrive_drive_t *d, ngx_str_t *id,
    json_t *meta);
ngx_int_t ngx_gdrive_drive_export(ngx_gdrive_drive_t *d, ngx_str_t *id,
    json_t *meta, ngx_str_t *type);
ngx_int_t ngx_gdrive_drive_export_link(ngx_gdrive_drive_t *d, ngx_str_t *id,
    json_t *meta, ngx_str_t *type);
ngx_int_t ngx_gdrive_drive_list(ngx_gdrive_drive_t *d, ngx_str_t *folder,
    ngx_str_t *drive, ngx_str_t *page_token);
ngx_int_t ngx_gdrive_drive_changes_start(ngx_gdrive_drive_t *d,
    ngx_str_t *drive);
ngx_int_t ngx_gdrive_drive_changes(ngx_gdrive_drive_t *d,
    ngx_str_t *drive, ngx_str_t *page_token);


/*
 * A listing or changes page, parsed from d->json (valid until the next
 * call).  open(): NGX_OK, NGX_DECLINED for an incomplete listing (Drive's
 * incompleteSearch), NGX_ERROR with detail for a page not of Drive's
 * form.  next(): NGX_OK with an entry, NGX_DONE at the end (next and
 * start are set), NGX_ERROR with detail for an entry or an end not of
 * Drive's form.
 */

typedef struct {
    const char              *id;
    json_t                  *file;        /* its metadata, or NULL */
    unsigned                 folder:1;
    unsigned                 gone:1;      /* removed or trashed */
} ngx_gdrive_drive_entry_t;

typedef struct {
    json_t                  *items;
    size_t                   i;
    const char              *next;        /* the next page's token */
    const char              *start;       /* changes: the new start token */
    const char              *detail;
    unsigned                 changes:1;
} ngx_gdrive_drive_page_t;

ngx_int_t ngx_gdrive_drive_page_open(ngx_gdrive_drive_t *d,
    ngx_uint_t changes, ngx_gdrive_drive_page_t *page);
ngx_int_t ngx_gdrive_drive_page_next(ngx_gdrive_drive_page_t *page,
    ngx_gdrive_drive_entry_t *entry);
ngx_int_t ngx_gdrive_drive_start_token(ngx_gdrive_drive_t *d,
    const char **start);
/* folder_drive's answer: NGX_OK with the id or NULL (the user's own
 * corpus), NGX_ERROR for an id not of Drive's charset */
ngx_int_t ngx_gdrive_drive_folder_drive_id(ngx_gdrive_drive_t *d,
    const char **id);


/* metadata: what the worker saw of a file last (the metadata cache) */

void ngx_gdrive_drive_meta_remember(ngx_str_t *integration,
    ngx_str_t *file_id, json_t *meta);
json_t *ngx_gdrive_drive_meta_recall(ngx_str_t *integration,
    ngx_str_t *file_id, ngx_pool_t *pool);
const char *ngx_gdrive_drive_meta_str(json_t *meta, const char *name);


/* Google Workspace files: the export when none is named, its key suffix */

ngx_int_t ngx_gdrive_drive_export_default(const char *mime,
    ngx_str_t *type);
void ngx_gdrive_drive_export_ext(ngx_str_t *type, u_char *ext);


#endif /* _NGX_GDRIVE_DRIVE_H_INCLUDED_ */
