
/*
 * nginx-gdrive-worker: gdrive_health's probes of Google and S3
 * (ngx_gdrive_probe.c).  The answers are in the shared zone
 * (ngx_gdrive_health_sh_t, ngx_gdrive.h).
 */


#ifndef _NGX_GDRIVE_PROBE_H_INCLUDED_
#define _NGX_GDRIVE_PROBE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_gdrive.h"


/* the configuration and the zone's answers a worker's rounds use */
void ngx_gdrive_probe_init(ngx_http_gdrive_main_conf_t *gmcf);
/* NGX_OK: the answers are fresh; NGX_AGAIN: a round runs, look later */
ngx_int_t ngx_gdrive_probe_fresh(void);


#endif /* _NGX_GDRIVE_PROBE_H_INCLUDED_ */
