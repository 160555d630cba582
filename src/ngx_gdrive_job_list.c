
/*
 * nginx-gdrive-worker: sync_folder and sync_changes, the fan-out.
 *
 * Pipeline layer: a folder's listing pages and the changes feed's pages,
 * as drive.c parses them; a child trigger per file (a "deleted" result
 * for a removed one), each page's children acknowledged before the next
 * page is asked for.  A listing is complete only with its last page.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <ngx_sha1.h>
#include <jansson.h>

#include "ngx_gdrive_job_private.h"
#include "ngx_gdrive_drive.h"
#include "ngx_gdrive_kafka.h"


/* a child trigger carries its file's metadata only up to this size */
#define NGX_GDRIVE_CARRIED_MAX    (16 * 1024)


static void ngx_gdrive_job_list_drive(ngx_gdrive_job_t *job);
static ngx_int_t ngx_gdrive_job_change_gone(ngx_gdrive_job_t *job,
    ngx_gdrive_drive_entry_t *e);
static void ngx_gdrive_job_page_done(ngx_gdrive_job_t *job,
    const char *next, const char *start);
static void ngx_gdrive_job_next_page(ngx_gdrive_job_t *job);
static ngx_int_t ngx_gdrive_job_child(ngx_gdrive_job_t *job,
    const char *action, const char *file_id, ngx_uint_t deleted,
    json_t *file);
static ngx_int_t ngx_gdrive_job_child_produce(ngx_gdrive_job_t *job,
    char *json, ngx_uint_t deleted);
static void ngx_gdrive_job_page_fail(ngx_gdrive_job_t *job,
    const char *code, const char *detail);
static void ngx_gdrive_job_page_failed(ngx_gdrive_job_t *job);
static json_t *ngx_gdrive_job_deleted_file(const char *file_id,
    json_t *meta);


/* sync_folder: the folder's children, a page at a time */

void
ngx_gdrive_job_list(ngx_gdrive_job_t *job)
{
    ngx_str_t              folder, given, *drive;
    ngx_gdrive_trigger_t  *t;

    t = &job->trigger;

    ngx_gdrive_job_set_stage(job, NGX_GDRIVE_STAGE_LIST);

    folder.data = (u_char *) t->folder_id.data;
    folder.len = t->folder_id.len;

    /*
     * All drives at first; a listing Drive says is incomplete is listed
     * again in the folder's own drive (or the user's corpus).
     */

    drive = NULL;

    if (t->drive_id.data) {
        given.data = (u_char *) t->drive_id.data;
        given.len = t->drive_id.len;
        drive = &given;

    } else if (job->narrowed) {
        drive = &job->list_drive;
    }

    if (ngx_gdrive_drive_list(&job->drive, &folder, drive, &job->page_token)
        != NGX_OK)
    {
        ngx_gdrive_job_fail(job, "internal_error", "out of memory", 0, -1);
    }
}


void
ngx_gdrive_job_list_page(ngx_gdrive_job_t *job)
{
    ngx_int_t                  rc;
    ngx_gdrive_drive_page_t    page;
    ngx_gdrive_drive_entry_t   e;

    rc = ngx_gdrive_drive_page_open(&job->drive, 0, &page);

    if (rc == NGX_ERROR) {
        ngx_gdrive_job_fail(job, "upstream_error", page.detail, 0, -1);
        return;
    }

    if (rc == NGX_DECLINED) {

        if (job->trigger.drive_id.data == NULL && !job->narrowed) {
            ngx_log_error(NGX_LOG_INFO, &job->log, 0,
                          "gdrive: the listing of all drives is incomplete, "
                          "listing the folder's drive");

            job->narrow = 1;
            ngx_str_null(&job->page_token);

            if (job->pending == 0) {
                ngx_gdrive_job_next_page(job);
            }

            return;
        }

        ngx_gdrive_job_page_fail(job, "upstream_error",
                                 "Drive's listing of the folder's drive is "
                                 "incomplete (incompleteSearch)");
        return;
    }

    job->pages++;

    while ((rc = ngx_gdrive_drive_page_next(&page, &e)) == NGX_OK) {

        if (e.folder) {
            if (!job->trigger.recursive) {
                continue;
            }

            if (ngx_gdrive_job_child(job, "sync_folder", e.id, 0, NULL)
                != NGX_OK)
            {
                return;
            }

            continue;
        }

        if (ngx_gdrive_job_child(job, "sync_file", e.id, 0, e.file)
            != NGX_OK)
        {
            return;
        }
    }

    if (rc == NGX_ERROR) {
        ngx_gdrive_job_page_fail(job, "upstream_error", page.detail);
        return;
    }

    ngx_gdrive_job_page_done(job, page.next, NULL);
}


/* an incomplete listing: in which drive is the folder? */

static void
ngx_gdrive_job_list_drive(ngx_gdrive_job_t *job)
{
    ngx_str_t  folder;

    folder.data = (u_char *) job->trigger.folder_id.data;
    folder.len = job->trigger.folder_id.len;

    if (ngx_gdrive_drive_folder_drive(&job->drive, &folder) != NGX_OK) {
        ngx_gdrive_job_fail(job, "internal_error", "out of memory", 0, -1);
    }
}


void
ngx_gdrive_job_list_drive_done(ngx_gdrive_job_t *job)
{
    size_t       len;
    const char  *drive;

    ngx_str_null(&job->list_drive);

    if (ngx_gdrive_drive_folder_drive_id(&job->drive, &drive) != NGX_OK) {
        ngx_gdrive_job_fail(job, "upstream_error",
                            "Drive named the folder's drive with an "
                            "unusable id", 0, -1);
        return;
    }

    if (drive) {
        len = ngx_strlen(drive);

        job->list_drive.data = ngx_pnalloc(job->pool, len);
        if (job->list_drive.data == NULL) {
            ngx_gdrive_job_fail(job, "internal_error", "out of memory", 0,
                                -1);
            return;
        }

        ngx_memcpy(job->list_drive.data, drive, len);
        job->list_drive.len = len;
    }

    /* the listing starts over: children of earlier pages come again with
     * the same ids, and the result counts the complete listing */
    job->narrowed = 1;
    job->children = 0;
    job->pages = 0;

    ngx_gdrive_job_list(job);
}


/* sync_changes: a fresh start token, or the feed from the given one */

void
ngx_gdrive_job_changes(ngx_gdrive_job_t *job)
{
    ngx_int_t              rc;
    ngx_str_t              drive;
    ngx_gdrive_trigger_t  *t;

    t = &job->trigger;

    ngx_gdrive_job_set_stage(job, NGX_GDRIVE_STAGE_CHANGES);

    ngx_str_null(&drive);

    if (t->drive_id.data) {
        drive.data = (u_char *) t->drive_id.data;
        drive.len = t->drive_id.len;
    }

    if (job->page_token.len == 0) {
        rc = ngx_gdrive_drive_changes_start(&job->drive, &drive);

    } else {
        rc = ngx_gdrive_drive_changes(&job->drive, &drive, &job->page_token);
    }

    if (rc != NGX_OK) {
        ngx_gdrive_job_fail(job, "internal_error", "out of memory", 0, -1);
    }
}


void
ngx_gdrive_job_changes_page(ngx_gdrive_job_t *job)
{
    ngx_int_t                  rc;
    const char                *start;
    ngx_gdrive_drive_page_t    page;
    ngx_gdrive_drive_entry_t   e;

    if (job->page_token.len == 0) {
        /* a fresh start: nothing has changed since */

        if (ngx_gdrive_drive_start_token(&job->drive, &start) != NGX_OK) {
            ngx_gdrive_job_fail(job, "upstream_error",
                                "Drive gave no start page token", 0, -1);
            return;
        }

        ngx_gdrive_job_page_done(job, NULL, start);
        return;
    }

    if (ngx_gdrive_drive_page_open(&job->drive, 1, &page) != NGX_OK) {
        ngx_gdrive_job_fail(job, "upstream_error", page.detail, 0, -1);
        return;
    }

    job->pages++;

    while ((rc = ngx_gdrive_drive_page_next(&page, &e)) == NGX_OK) {

        if (e.gone) {
            if (e.folder) {
                /* its files come as changes of their own */
                continue;
            }

            if (ngx_gdrive_job_change_gone(job, &e) != NGX_OK) {
                return;
            }

            continue;
        }

        if (e.folder) {
            continue;
        }

        if (ngx_gdrive_job_child(job, "sync_file", e.id, 0, e.file)
            != NGX_OK)
        {
            return;
        }
    }

    if (rc == NGX_ERROR) {
        ngx_gdrive_job_page_fail(job, "upstream_error", page.detail);
        return;
    }

    ngx_gdrive_job_page_done(job, page.next, page.start);
}


/*
 * A removed or trashed file of the feed.  keep: a "deleted" event at
 * once; delete: a child whose job deletes the file's objects (and
 * retries that alone).
 */

static ngx_int_t
ngx_gdrive_job_change_gone(ngx_gdrive_job_t *job,
    ngx_gdrive_drive_entry_t *e)
{
    json_t     *gone;
    ngx_int_t   rc;

    if (!ngx_gdrive_job_engine()->gmcf->s3_on_delete) {
        return ngx_gdrive_job_child(job, NULL, e->id, 1, e->file);
    }

    gone = e->file ? json_incref(e->file)
                   : json_pack("{sssb}", "id", e->id, "removed", 1);

    if (gone == NULL) {
        ngx_gdrive_job_page_fail(job, "internal_error", "out of memory");
        return NGX_ERROR;
    }

    rc = ngx_gdrive_job_child(job, "sync_file", e->id, 0, gone);

    json_decref(gone);

    return rc;
}


/*
 * A page is in: the listing goes on from the next page's token, or it is
 * complete (with the feed's new start token); once the page's children
 * are acknowledged, the next step.
 */

static void
ngx_gdrive_job_page_done(ngx_gdrive_job_t *job, const char *next,
    const char *start)
{
    if (next) {
        if (ngx_gdrive_job_set_token(job, next, ngx_strlen(next), 0)
            != NGX_OK)
        {
            goto nomem;
        }

    } else {
        if (start
            && ngx_gdrive_job_set_token(job, start, ngx_strlen(start), 1)
               != NGX_OK)
        {
            goto nomem;
        }

        job->listed = 1;
    }

    if (job->pending == 0) {
        ngx_gdrive_job_next_page(job);
    }

    return;

nomem:

    ngx_gdrive_job_page_fail(job, "internal_error", "out of memory");
}


/*
 * Every child of the page is acknowledged: the next page, or the end.
 * A listing is complete only with its last page: one that fails half
 * way is retried whole (child ids are deterministic), never reported as
 * a success with fewer files.
 */

static void
ngx_gdrive_job_next_page(ngx_gdrive_job_t *job)
{
    if (!job->listed) {
        if (job->stage == NGX_GDRIVE_STAGE_LIST && job->narrow
            && !job->narrowed)
        {
            ngx_gdrive_job_list_drive(job);

        } else if (job->stage == NGX_GDRIVE_STAGE_LIST) {
            ngx_gdrive_job_list(job);

        } else {
            ngx_gdrive_job_changes(job);
        }

        return;
    }

    ngx_log_error(NGX_LOG_INFO, &job->log, 0,
                  "gdrive: listed %ui pages: %ui children, %ui deleted",
                  job->pages, job->children, job->deleted);

    job->outcome = (job->trigger.action == NGX_GDRIVE_SYNC_FOLDER)
                   ? "fanned_out" : "changes_listed";
    ngx_gdrive_job_set_stage(job, NGX_GDRIVE_STAGE_RESULT);
    ngx_gdrive_job_run(job);
}


/*
 * A child trigger to the trigger topic, or a "deleted" result to the
 * result topic, keyed by the integration.  The child's id is a hash of
 * the parent's id and the file's: the same on every redelivery, of
 * bounded length, in the trigger-id charset.
 */

static ngx_int_t
ngx_gdrive_job_child(ngx_gdrive_job_t *job, const char *action,
    const char *file_id, ngx_uint_t deleted, json_t *file)
{
    char                  *json;
    u_char                 digest[20], id[41];
    json_t                *root, *last;
    ngx_str_t              fid;
    ngx_uint_t             folder;
    ngx_sha1_t             sha1;
    ngx_gdrive_trigger_t  *t;

    t = &job->trigger;

    ngx_sha1_init(&sha1);
    ngx_sha1_update(&sha1, job->id, ngx_strlen(job->id));
    ngx_sha1_update(&sha1, "/", 1);
    ngx_sha1_update(&sha1, file_id, ngx_strlen(file_id));
    ngx_sha1_final(digest, &sha1);

    *ngx_hex_dump(id, digest, 20) = '\0';

    root = json_object();
    if (root == NULL) {
        goto failed;
    }

    json_object_set_new(root, "trigger_id", json_string((char *) id));
    json_object_set_new(root, "integration_id",
                        json_stringn(t->integration_id.data,
                                     t->integration_id.len));

    if (deleted) {
        json_object_set_new(root, "action", json_string("sync_changes"));
        json_object_set_new(root, "status", json_string("deleted"));

        /*
         * A removed file comes without metadata: what the worker saw of
         * it last (the metadata cache) names it, when it is there.
         */

        last = NULL;
        fid.data = (u_char *) file_id;
        fid.len = ngx_strlen(file_id);

        if (file == NULL) {
            last = ngx_gdrive_drive_meta_recall(&job->token.integration,
                                                &fid, job->pool);
        }

        json_object_set_new(root, "file",
                            ngx_gdrive_job_deleted_file(file_id,
                                                        file ? file : last));
        if (last) {
            json_decref(last);
        }

    } else {
        json_object_set_new(root, "action", json_string(action));
        folder = (ngx_strcmp(action, "sync_folder") == 0);

        json_object_set_new(root, folder ? "folder_id" : "file_id",
                            json_string(file_id));

        if (folder && t->recursive) {
            json_object_set_new(root, "recursive", json_true());
        }

        if (t->export_mime_type.data) {
            json_object_set_new(root, "export_mime_type",
                                json_stringn(t->export_mime_type.data,
                                             t->export_mime_type.len));
        }

        if (t->drive_id.data) {
            json_object_set_new(root, "drive_id",
                                json_stringn(t->drive_id.data,
                                             t->drive_id.len));
        }

        /* a service account acts as the same user for the children */

        if (t->subject.data) {
            json_object_set_new(root, "subject",
                                json_stringn(t->subject.data,
                                             t->subject.len));
        }

        if (file && !folder) {
            json_object_set(root, "drive_file", file);
        }
    }

    json_object_set_new(root, "parent_trigger_id",
                        json_string((char *) job->id));

    if (deleted) {
        json_object_set_new(root, "trace_id", json_string(job->trace_id));
    }

    json = json_dumps(root, JSON_COMPACT);

    if (json && ngx_strlen(json) > NGX_GDRIVE_CARRIED_MAX
        && json_object_get(root, "drive_file"))
    {
        /* metadata that large is not carried: the child asks Drive */
        free(json);
        json_object_del(root, "drive_file");
        json = json_dumps(root, JSON_COMPACT);
    }

    json_decref(root);

    if (ngx_gdrive_job_child_produce(job, json, deleted) != NGX_OK) {
        goto failed;
    }

    job->pending++;

    if (deleted) {
        job->deleted++;

    } else {
        job->children++;
    }

    return NGX_OK;

failed:

    ngx_gdrive_job_page_fail(job, "kafka_error",
                             "a child trigger was not produced");

    return NGX_ERROR;
}


/*
 * The child's JSON (NULL: none was made) goes out, freed by librdkafka
 * once delivered.  The child is in the job's trace, with the job's span
 * as its parent.
 */

static ngx_int_t
ngx_gdrive_job_child_produce(ngx_gdrive_job_t *job, char *json,
    ngx_uint_t deleted)
{
    ngx_str_t                   key;
    rd_kafka_headers_t         *hdrs;
    rd_kafka_resp_err_t         err;
    const ngx_gdrive_engine_t  *e;

    hdrs = json ? ngx_gdrive_job_trace_headers(job) : NULL;

    if (hdrs == NULL) {
        free(json);
        return NGX_ERROR;
    }

    key.data = (u_char *) job->trigger.integration_id.data;
    key.len = job->trigger.integration_id.len;

    e = ngx_gdrive_job_engine();

    err = ngx_gdrive_kafka_produce(e->producer,
                                   deleted ? e->result_topic
                                           : e->trigger_topic,
                                   &key, (u_char *) json, ngx_strlen(json),
                                   1, hdrs, &job->child_dr);

    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        free(json);
        ngx_gdrive_kafka_headers_free(hdrs);
        ngx_log_error(NGX_LOG_ERR, &job->log, 0,
                      "gdrive: child not produced: %s",
                      ngx_gdrive_kafka_strerror(err));
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * A page that cannot be taken whole: what is already produced is
 * acknowledged first, then the job fails once (the listing is retried
 * from its start; child ids are the same again).
 */

static void
ngx_gdrive_job_page_fail(ngx_gdrive_job_t *job, const char *code,
    const char *detail)
{
    if (job->page_error == NULL) {
        job->page_error = code;
        ngx_cpystrn(job->detail, (u_char *) detail, sizeof(job->detail));
    }

    job->listed = 1;

    if (job->pending == 0) {
        ngx_gdrive_job_page_failed(job);
    }
}


static void
ngx_gdrive_job_page_failed(ngx_gdrive_job_t *job)
{
    const char  *code;
    u_char       detail[256];

    code = job->page_error;
    ngx_memcpy(detail, job->detail, sizeof(detail));
    job->page_error = NULL;

    ngx_gdrive_job_fail(job, code, (char *) detail, 0, -1);
}


void
ngx_gdrive_job_child_delivered(void *data, rd_kafka_resp_err_t err,
    int32_t partition, int64_t offset)
{
    ngx_gdrive_job_t *job = data;

    job->pending--;

    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        ngx_log_error(NGX_LOG_ERR, &job->log, 0,
                      "gdrive: child not delivered: %s",
                      ngx_gdrive_kafka_strerror(err));
        job->child_errors++;
    }

    if (job->pending) {
        return;
    }

    if (job->part == NULL) {
        /* cancelled by a revocation meanwhile */
        if (!job->in_flight) {
            ngx_gdrive_job_free(job);
        }

        return;
    }

    if (job->stage != NGX_GDRIVE_STAGE_LIST
        && job->stage != NGX_GDRIVE_STAGE_CHANGES)
    {
        /* the listing is over: nothing waits for these reports */
        return;
    }

    if (job->page_error) {
        ngx_gdrive_job_page_failed(job);
        return;
    }

    if (job->child_errors) {
        ngx_gdrive_job_fail(job, "kafka_error",
                            "a child trigger was not acknowledged", 0, -1);
        return;
    }

    ngx_gdrive_job_next_page(job);
}


/* a deleted event's file: its id, and its name and type when known */

static json_t *
ngx_gdrive_job_deleted_file(const char *file_id, json_t *meta)
{
    json_t      *file;
    const char  *v;

    file = json_pack("{ss}", "id", file_id);

    if (file == NULL || meta == NULL) {
        return file;
    }

    v = ngx_gdrive_drive_meta_str(meta, "name");
    if (v) {
        json_object_set_new(file, "name", json_string(v));
    }

    v = ngx_gdrive_drive_meta_str(meta, "mimeType");
    if (v) {
        json_object_set_new(file, "mimeType", json_string(v));
    }

    return file;
}


/* a page token: kept raw for the result, escaped for the next URL */

ngx_int_t
ngx_gdrive_job_set_token(ngx_gdrive_job_t *job, const char *token,
    size_t len, ngx_uint_t start)
{
    ngx_str_t  raw;

    if (start) {
        raw.len = len;
        raw.data = ngx_pnalloc(job->pool, raw.len);

        if (raw.data == NULL) {
            return NGX_ERROR;
        }

        ngx_memcpy(raw.data, token, raw.len);
        job->start_token = raw;

        return NGX_OK;
    }

    return ngx_gdrive_drive_escape(job->pool, token, len, &job->page_token);
}
