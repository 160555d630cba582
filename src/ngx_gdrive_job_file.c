
/*
 * nginx-gdrive-worker: sync_file, a file from Drive into S3.
 *
 * Pipeline layer: the metadata (carried by the trigger, or asked of
 * Drive), a shortcut followed once, the S3 key from the content's
 * identity, the HEAD of the object (spared when this zone stored that
 * revision moments ago), and the content streamed from Drive into the
 * upload with the download paused while every buffer is busy.
 * A file removed or trashed in Drive has its objects deleted (with
 * gdrive_s3_on_delete delete) and ends "deleted".
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <jansson.h>

#include "ngx_gdrive_job_private.h"
#include "ngx_gdrive_cache.h"
#include "ngx_gdrive_drive.h"
#include "ngx_gdrive_s3.h"


static ngx_int_t ngx_gdrive_job_carried(ngx_gdrive_job_t *job);
static void ngx_gdrive_job_shortcut(ngx_gdrive_job_t *job);
static ngx_int_t ngx_gdrive_job_export_revision(ngx_gdrive_job_t *job,
    const char *mime, ngx_str_t *revision);
static ngx_int_t ngx_gdrive_job_content_revision(ngx_gdrive_job_t *job,
    const char *mime, ngx_str_t *revision);
static ngx_int_t ngx_gdrive_job_upload_key(ngx_gdrive_job_t *job,
    ngx_str_t *revision);
static void ngx_gdrive_job_gone(ngx_gdrive_job_t *job);
static void ngx_gdrive_job_pruned(ngx_gdrive_s3_delete_t *d);
static void ngx_gdrive_job_upload_ready(ngx_gdrive_s3_upload_t *u);
static size_t ngx_gdrive_job_sink(ngx_gdrive_drive_t *d, u_char *p,
    size_t len);
static void ngx_gdrive_job_upload_resume(ngx_gdrive_s3_upload_t *u);
static void ngx_gdrive_job_upload_done(ngx_gdrive_s3_upload_t *u);


/*
 * sync_file: the metadata.  A trigger means "look at this file now": the
 * metadata that the listing or changes page which made the trigger
 * carried is used on the first attempt, else Drive is asked.  No cache
 * decides here (README, "What a sync guarantees").
 */

void
ngx_gdrive_job_file(ngx_gdrive_job_t *job)
{
    ngx_gdrive_job_set_stage(job, NGX_GDRIVE_STAGE_FILE);

    if (job->trigger.drive_file && job->shortcut_id.len == 0
        && ngx_gdrive_job_carried(job) == NGX_OK)
    {
        ngx_log_debug0(NGX_LOG_DEBUG_EVENT, &job->log, 0,
                       "gdrive: metadata carried by the trigger");
        ngx_gdrive_job_file_meta(job);
        return;
    }

    if (ngx_gdrive_drive_file_get(&job->drive, &job->file_id) != NGX_OK) {
        ngx_gdrive_job_fail(job, "internal_error", "out of memory", 0, -1);
    }
}


/*
 * The trigger's drive_file, from the worker's own listing or changes
 * page: Drive's answer of moments ago, and as untrusted as any answer.
 * A retry asks Drive afresh, except for a file the feed found removed or
 * trashed (only the deletion of its objects is retried).  An edit since
 * the page is caught by the content check (md5, size) and retried.
 */

static ngx_int_t
ngx_gdrive_job_carried(ngx_gdrive_job_t *job)
{
    json_t      *root, *file;
    ngx_uint_t   gone;
    const char  *id;

    root = json_loadb(job->msg->payload, job->msg->len, 0, NULL);
    file = json_object_get(root, "drive_file");
    id = ngx_gdrive_drive_meta_str(file, "id");

    if (!json_is_object(file) || id == NULL
        || ngx_strlen(id) != job->file_id.len
        || ngx_strncmp(id, job->file_id.data, job->file_id.len) != 0)
    {
        if (root) {
            json_decref(root);
        }

        return NGX_DECLINED;
    }

    gone = json_is_true(json_object_get(file, "removed"))
           || json_is_true(json_object_get(file, "trashed"));

    if (job->attempt && !gone) {
        json_decref(root);
        return NGX_DECLINED;
    }

    job->meta = json_incref(file);
    job->meta_carried = 1;
    json_decref(root);

    return NGX_OK;
}


/*
 * What the metadata says: a trashed file is gone, a shortcut is followed
 * once, a folder is not a file, a Google Workspace file is exported,
 * anything else downloaded.
 */

void
ngx_gdrive_job_file_meta(ngx_gdrive_job_t *job)
{
    ngx_str_t                revision;
    const char              *mime;
    ngx_gdrive_s3_upload_t  *u;

    /* removed: only the changes feed says so, in a child's drive_file */

    if (json_is_true(json_object_get(job->meta, "trashed"))
        || json_is_true(json_object_get(job->meta, "removed")))
    {
        ngx_gdrive_job_gone(job);
        return;
    }

    mime = ngx_gdrive_drive_meta_str(job->meta, "mimeType");

    if (mime == NULL) {
        ngx_gdrive_job_fail(job, "upstream_error",
                            "Drive's metadata has no mimeType", 0, -1);
        return;
    }

    if (!job->meta_carried) {
        /* what the worker saw of the file last: names its deletion */
        ngx_gdrive_drive_meta_remember(&job->token.integration,
                                       &job->file_id, job->meta);
    }

    if (ngx_strcmp(mime, NGX_GDRIVE_SHORTCUT_MIME) == 0) {
        ngx_gdrive_job_shortcut(job);
        return;
    }

    u = &job->upload;
    ngx_memzero(u, sizeof(ngx_gdrive_s3_upload_t));
    u->size = -1;

    if (ngx_strcmp(mime, NGX_GDRIVE_FOLDER_MIME) == 0) {
        ngx_gdrive_job_fail(job, "unsupported_type",
                            "the file is a folder: use sync_folder", 1, -1);
        return;
    }

    if (ngx_strncmp(mime, NGX_GDRIVE_APPS_PREFIX,
                    sizeof(NGX_GDRIVE_APPS_PREFIX) - 1)
        == 0)
    {
        if (ngx_gdrive_job_export_revision(job, mime, &revision) != NGX_OK) {
            return;
        }

    } else if (ngx_gdrive_job_content_revision(job, mime, &revision)
               != NGX_OK)
    {
        return;
    }

    if (ngx_gdrive_job_upload_key(job, &revision) != NGX_OK) {
        return;
    }

    ngx_gdrive_job_store(job);
}


/* a shortcut: its target is synced, once (a shortcut to one is not) */

static void
ngx_gdrive_job_shortcut(ngx_gdrive_job_t *job)
{
    json_t      *details;
    const char  *target;

    details = json_object_get(job->meta, "shortcutDetails");
    target = ngx_gdrive_drive_meta_str(details, "targetId");

    if (job->shortcut_id.len || target == NULL
        || !ngx_gdrive_drive_id_valid(target, ngx_strlen(target)))
    {
        ngx_gdrive_job_fail(job, "not_found",
                            "the shortcut has no usable target", 1, -1);
        return;
    }

    job->shortcut_id = job->file_id;
    job->file_id.len = ngx_strlen(target);
    job->file_id.data = ngx_pstrdup(job->pool,
                                    &(ngx_str_t) { job->file_id.len,
                                                   (u_char *) target });
    json_decref(job->meta);
    job->meta = NULL;

    if (job->file_id.data == NULL) {
        ngx_gdrive_job_fail(job, "internal_error", "out of memory", 0, -1);
        return;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_EVENT, &job->log, 0,
                   "gdrive: shortcut to \"%V\"", &job->file_id);

    ngx_gdrive_job_file(job);
}


/*
 * A Google Workspace file: the export's type, and the revision part of
 * the key, "v{version}.{extension}".  NGX_ERROR: the job failed.
 */

static ngx_int_t
ngx_gdrive_job_export_revision(ngx_gdrive_job_t *job, const char *mime,
    ngx_str_t *revision)
{
    u_char                   ext[11];
    const char              *v;
    ngx_gdrive_s3_upload_t  *u;

    u = &job->upload;

    if (job->trigger.export_mime_type.data) {
        job->export_type.data = (u_char *) job->trigger.export_mime_type.data;
        job->export_type.len = job->trigger.export_mime_type.len;

    } else if (ngx_gdrive_drive_export_default(mime, &job->export_type)
               != NGX_OK)
    {
        ngx_gdrive_job_fail(job, "unsupported_type",
                            "Drive cannot export this kind of file", 1, -1);
        return NGX_ERROR;
    }

    v = ngx_gdrive_drive_meta_str(job->meta, "version");
    ngx_gdrive_drive_export_ext(&job->export_type, ext);

    revision->data = ngx_pnalloc(job->pool, 64);
    if (revision->data == NULL) {
        ngx_gdrive_job_fail(job, "internal_error", "out of memory", 0, -1);
        return NGX_ERROR;
    }

    revision->len = ngx_snprintf(revision->data, 64, "v%s.%s",
                                 (v && ngx_gdrive_drive_id_valid(v,
                                                ngx_strlen(v)))
                                 ? v : "0", ext)
                    - revision->data;

    u->content_type = job->export_type;

    return NGX_OK;
}


/*
 * A file downloaded as it is: its size and md5 to check the content by,
 * and the revision part of the key, "r{headRevisionId}", or
 * "v{version}" for a file without revisions.  NGX_ERROR: the job failed.
 */

static ngx_int_t
ngx_gdrive_job_content_revision(ngx_gdrive_job_t *job, const char *mime,
    ngx_str_t *revision)
{
    u_char                   kind;
    size_t                   len;
    ngx_int_t                size;
    const char              *rev, *v;
    ngx_gdrive_s3_upload_t  *u;

    u = &job->upload;

    rev = ngx_gdrive_drive_meta_str(job->meta, "headRevisionId");
    v = ngx_gdrive_drive_meta_str(job->meta, "size");

    if (v == NULL
        || (size = ngx_atoof((u_char *) v, ngx_strlen(v))) == NGX_ERROR)
    {
        ngx_gdrive_job_fail(job, "upstream_error",
                            "Drive's metadata has no size", 0, -1);
        return NGX_ERROR;
    }

    u->size = size;

    v = ngx_gdrive_drive_meta_str(job->meta, "md5Checksum");
    if (v && ngx_strlen(v) == 32) {
        u->md5.data = (u_char *) v;
        u->md5.len = 32;
    }

    kind = 'r';

    if (rev == NULL || !ngx_gdrive_drive_id_valid(rev, ngx_strlen(rev))) {
        /* no revision of its own: the version identifies it */
        kind = 'v';
        rev = ngx_gdrive_drive_meta_str(job->meta, "version");

        if (rev == NULL || !ngx_gdrive_drive_id_valid(rev, ngx_strlen(rev)))
        {
            rev = "0";
        }
    }

    len = ngx_strlen(rev) + 2;
    revision->data = ngx_pnalloc(job->pool, len);
    if (revision->data == NULL) {
        ngx_gdrive_job_fail(job, "internal_error", "out of memory", 0, -1);
        return NGX_ERROR;
    }

    revision->len = ngx_sprintf(revision->data, "%c%s", kind, rev)
                    - revision->data;

    u->content_type.data = (u_char *) mime;
    u->content_type.len = ngx_strlen(mime);

    return NGX_OK;
}


/*
 * The S3 key is {prefix}{integration}/{file}/{revision}: the content's
 * identity, so that a redelivery finds the object it already wrote.
 * The object's metadata names the file.  NGX_ERROR: the job failed.
 */

static ngx_int_t
ngx_gdrive_job_upload_key(ngx_gdrive_job_t *job, ngx_str_t *revision)
{
    size_t                   len;
    ngx_str_t               *prefix;
    const char              *v;
    ngx_gdrive_s3_upload_t  *u;

    u = &job->upload;
    prefix = &ngx_gdrive_job_engine()->gmcf->s3_prefix;

    len = prefix->len + job->token.integration.len + job->file_id.len
          + revision->len + 2;

    u->key.data = ngx_pnalloc(job->pool, len);
    if (u->key.data == NULL) {
        ngx_gdrive_job_fail(job, "internal_error", "out of memory", 0, -1);
        return NGX_ERROR;
    }

    u->key.len = ngx_sprintf(u->key.data, "%V%V/%V/%V", prefix,
                             &job->token.integration, &job->file_id,
                             revision)
                 - u->key.data;

    u->drive_id = job->file_id;
    u->integration = job->token.integration;
    u->trigger.data = job->id;
    u->trigger.len = ngx_strlen(job->id);

    v = ngx_gdrive_drive_meta_str(job->meta, "name");

    if (v) {
        u->name.data = (u_char *) v;
        u->name.len = ngx_strlen(v);
    }

    v = ngx_gdrive_drive_meta_str(job->meta, "version");

    if (v) {
        u->version.data = (u_char *) v;
        u->version.len = ngx_strlen(v);
    }

    return NGX_OK;
}


/*
 * Removed or trashed in Drive: nothing is downloaded; with
 * gdrive_s3_on_delete delete every object of the file leaves the bucket
 * first.  The result is "deleted".
 */

static void
ngx_gdrive_job_gone(ngx_gdrive_job_t *job)
{
    size_t                        len;
    ngx_str_t                    *prefix;
    ngx_gdrive_s3_delete_t       *d;
    ngx_http_gdrive_main_conf_t  *gmcf;

    gmcf = ngx_gdrive_job_engine()->gmcf;

    ngx_memzero(&job->upload, sizeof(ngx_gdrive_s3_upload_t));

    if (!gmcf->s3_on_delete) {
        ngx_log_error(NGX_LOG_INFO, &job->log, 0,
                      "gdrive: \"%V\" is gone from Drive, its objects are "
                      "kept", &job->file_id);

        job->outcome = "deleted";
        ngx_gdrive_job_set_stage(job, NGX_GDRIVE_STAGE_RESULT);
        ngx_gdrive_job_run(job);
        return;
    }

    ngx_gdrive_job_set_stage(job, NGX_GDRIVE_STAGE_DELETE);

    /* from now on, even if the deletion stops half way */
    ngx_gdrive_cache_stored_forget(&job->token.integration, &job->file_id);

    d = &job->prune;
    ngx_memzero(d, sizeof(ngx_gdrive_s3_delete_t));

    prefix = &gmcf->s3_prefix;
    len = prefix->len + job->token.integration.len + job->file_id.len + 2;

    d->prefix.data = ngx_pnalloc(job->pool, len);
    if (d->prefix.data == NULL) {
        ngx_gdrive_job_fail(job, "internal_error", "out of memory", 0, -1);
        return;
    }

    d->prefix.len = ngx_sprintf(d->prefix.data, "%V%V/%V/", prefix,
                                &job->token.integration, &job->file_id)
                    - d->prefix.data;
    d->pool = job->pool;
    d->log = &job->log;
    d->done = ngx_gdrive_job_pruned;
    d->data = job;

    ngx_gdrive_s3_delete_start(d);

    if (d->state == NULL) {
        ngx_gdrive_job_fail(job, "internal_error", "out of memory", 0, -1);
        return;
    }

    job->prune_busy = 1;
}


static void
ngx_gdrive_job_pruned(ngx_gdrive_s3_delete_t *d)
{
    ngx_gdrive_job_t *job = d->data;

    job->prune_busy = 0;

    if (d->rc != NGX_OK) {
        ngx_gdrive_job_fail(job, d->code, d->detail, d->permanent, -1);
        return;
    }

    job->pruned = 1;
    job->outcome = "deleted";
    ngx_gdrive_job_set_stage(job, NGX_GDRIVE_STAGE_RESULT);
    ngx_gdrive_job_run(job);
}


/*
 * Is the object there already?  A record of this zone's own upload (or
 * HEAD) of this very key and size says so on a first attempt; otherwise,
 * and on every retry, the upload's start() asks S3 with a HEAD.
 */

void
ngx_gdrive_job_store(ngx_gdrive_job_t *job)
{
    off_t                    size;
    ngx_gdrive_s3_upload_t  *u;

    u = &job->upload;

    if (job->attempt == 0
        && ngx_gdrive_cache_stored(&job->token.integration, &job->file_id,
                                   &u->key, u->size, &size)
           == NGX_OK)
    {
        ngx_log_error(NGX_LOG_INFO, &job->log, 0,
                      "gdrive: \"%V\" was stored already, not asked again",
                      &u->key);
        u->rc = NGX_OK;
        u->unchanged = 1;
        u->bytes = size;
        u->state = NULL;
        job->outcome = "unchanged";
        ngx_gdrive_job_set_stage(job, NGX_GDRIVE_STAGE_RESULT);
        ngx_gdrive_job_run(job);
        return;
    }

    u->pool = job->pool;
    u->log = &job->log;
    u->ready = ngx_gdrive_job_upload_ready;
    u->resume = ngx_gdrive_job_upload_resume;
    u->done = ngx_gdrive_job_upload_done;
    u->data = job;
    u->rc = NGX_ERROR;
    u->unchanged = 0;
    u->state = NULL;

    ngx_gdrive_job_set_stage(job, NGX_GDRIVE_STAGE_STORE);
    job->upload_busy = 1;

    ngx_gdrive_s3_upload_start(u);

    if (u->state == NULL) {
        /* not started at all: no callback will come */
        job->upload_busy = 0;
        ngx_gdrive_job_fail(job, "internal_error",
                            "the upload could not be started", 0, -1);
    }
}


/* the object is not there: download into it */

static void
ngx_gdrive_job_upload_ready(ngx_gdrive_s3_upload_t *u)
{
    ngx_gdrive_job_t *job = u->data;

    ngx_int_t            rc;
    ngx_gdrive_drive_t  *d;

    d = &job->drive;

    ngx_gdrive_job_set_stage(job, NGX_GDRIVE_STAGE_CONTENT);
    d->sink = ngx_gdrive_job_sink;
    d->sink_failed = 0;

    if (job->export_type.len == 0) {
        rc = ngx_gdrive_drive_media(d, &job->file_id, job->meta);

    } else if (!job->export_link) {
        rc = ngx_gdrive_drive_export(d, &job->file_id, job->meta,
                                     &job->export_type);

    } else {
        rc = ngx_gdrive_drive_export_link(d, &job->file_id, job->meta,
                                          &job->export_type);
    }

    if (rc == NGX_OK) {
        return;
    }

    ngx_gdrive_job_stop_io(job);

    if (rc == NGX_DECLINED) {
        ngx_gdrive_job_fail(job, "export_too_large",
                            "the export is over Drive's limit and the file "
                            "has no export link for the type", 1, -1);
        return;
    }

    ngx_gdrive_job_fail(job, "internal_error", "out of memory", 0, -1);
}


static size_t
ngx_gdrive_job_sink(ngx_gdrive_drive_t *d, u_char *p, size_t len)
{
    ngx_gdrive_job_t *job = d->data;

    switch (ngx_gdrive_s3_upload_write(&job->upload, p, len)) {

    case NGX_OK:
        return len;

    case NGX_AGAIN:
        /* every part buffer is busy: the download waits for resume() */
        return CURL_WRITEFUNC_PAUSE;

    default:
        d->sink_failed = 1;
        return 0;
    }
}


/*
 * A buffer is free again.  The download resumes from a posted event:
 * curl hands over the bytes it held back from inside curl_easy_pause(),
 * which must not happen inside the uploader's own callback.
 */

static void
ngx_gdrive_job_upload_resume(ngx_gdrive_s3_upload_t *u)
{
    ngx_gdrive_job_t *job = u->data;

    if (!job->resume.posted) {
        ngx_post_event(&job->resume, &ngx_posted_events);
    }
}


void
ngx_gdrive_job_resume_handler(ngx_event_t *ev)
{
    ngx_gdrive_job_t *job = ev->data;

    ngx_gdrive_drive_resume(&job->drive);
}


/* the download is complete: the upload ends the stream */

void
ngx_gdrive_job_content_done(ngx_gdrive_job_t *job)
{
    if (job->upload.size >= 0 && job->drive.bytes != job->upload.size) {
        ngx_gdrive_job_stop_io(job);
        ngx_gdrive_job_fail(job, "upstream_error",
                            "the download's length is not the file's size",
                            0, -1);
        return;
    }

    ngx_gdrive_s3_upload_finish(&job->upload);
}


static void
ngx_gdrive_job_upload_done(ngx_gdrive_s3_upload_t *u)
{
    ngx_gdrive_job_t *job = u->data;

    job->upload_busy = 0;

    if (u->rc != NGX_OK) {
        ngx_gdrive_job_stop_io(job);
        ngx_gdrive_job_fail(job, u->code, u->detail, u->permanent,
                            u->retry_after);
        return;
    }

    ngx_gdrive_cache_stored_put(&job->token.integration, &job->file_id,
                                &u->key, u->bytes);

    if (u->unchanged) {
        ngx_log_error(NGX_LOG_INFO, &job->log, 0,
                      "gdrive: \"%V\" is stored already", &u->key);
        job->outcome = "unchanged";

    } else {
        ngx_log_error(NGX_LOG_INFO, &job->log, 0,
                      "gdrive: stored \"%V\", %O bytes in %ui parts",
                      &u->key, u->bytes, u->parts);
        job->outcome = "uploaded";
    }

    ngx_gdrive_job_set_stage(job, NGX_GDRIVE_STAGE_RESULT);
    ngx_gdrive_job_run(job);
}
