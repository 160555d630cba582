
/*
 * nginx-gdrive-worker: the Drive metadata cache (ngx_gdrive_cache.c).
 *
 * Shared-state layer.
 */


#ifndef _NGX_GDRIVE_CACHE_H_INCLUDED_
#define _NGX_GDRIVE_CACHE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_gdrive.h"


/*
 * The Drive metadata cache (ngx_gdrive_cache.c): gdrive_metadata_cache
 * entries for its ttl, least recently used evicted first, in at most half
 * of the zone.  get() copies a fresh value into the pool (NGX_OK) or says
 * NGX_DECLINED (miss, expired, cache off, bad key, no pool memory);
 * put() stores or replaces a value of at most NGX_GDRIVE_CACHE_MAX_VALUE
 * bytes, or silently does nothing.  Keys: integration id (at most
 * NGX_GDRIVE_ID_MAX_LEN) and file id (at most NGX_GDRIVE_DRIVE_ID_MAX_LEN).
 * stats() reads the counters without the lock.
 *
 * Under keys of their own, the records of objects stored in S3 (for the
 * same ttl, in the same entries): stored_put() after an object is known
 * to be at its key with its size; stored() says NGX_OK when a fresh
 * record names that key and that size (any for size -1) and sets the
 * size; stored_forget() drops a file's record when its objects go.
 */

#define NGX_GDRIVE_CACHE_MAX_VALUE    16384

void ngx_gdrive_cache_init(ngx_http_gdrive_main_conf_t *gmcf);
ngx_int_t ngx_gdrive_cache_get(ngx_str_t *integration, ngx_str_t *file_id,
    ngx_pool_t *pool, ngx_str_t *value);
void ngx_gdrive_cache_put(ngx_str_t *integration, ngx_str_t *file_id,
    u_char *value, size_t len);
void ngx_gdrive_cache_stored_put(ngx_str_t *integration, ngx_str_t *file_id,
    ngx_str_t *object, off_t size);
ngx_int_t ngx_gdrive_cache_stored(ngx_str_t *integration, ngx_str_t *file_id,
    ngx_str_t *object, off_t size, off_t *stored_size);
void ngx_gdrive_cache_stored_forget(ngx_str_t *integration,
    ngx_str_t *file_id);
void ngx_gdrive_cache_stats(ngx_uint_t *entries, ngx_uint_t *hits,
    ngx_uint_t *misses, ngx_uint_t *evictions);


#endif /* _NGX_GDRIVE_CACHE_H_INCLUDED_ */
