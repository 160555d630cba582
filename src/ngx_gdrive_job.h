
/*
 * nginx-gdrive-worker: the job engine's interface (ngx_gdrive_job.c).
 *
 * Pipeline layer: what the module's process hooks call.  The engine
 * owns the consumer; it is handed its producer, the topics and this
 * worker's status slot at init, and the trigger location's producer,
 * which counts the trigger topic's partitions.
 */


#ifndef _NGX_GDRIVE_JOB_H_INCLUDED_
#define _NGX_GDRIVE_JOB_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_gdrive.h"
#include "ngx_gdrive_kafka.h"


typedef struct {
    ngx_gdrive_kafka_t           *producer;   /* the engine's output */
    ngx_gdrive_kafka_t           *triggers;   /* the trigger location's */
    rd_kafka_topic_t             *trigger_topic;  /* of the producer */
    rd_kafka_topic_t             *result_topic;
    rd_kafka_topic_t             *dlq_topic;
    ngx_gdrive_worker_status_t   *status;     /* this worker's slot */
} ngx_gdrive_job_ctx_t;


ngx_int_t ngx_gdrive_job_init(ngx_cycle_t *cycle,
    ngx_http_gdrive_main_conf_t *gmcf, ngx_gdrive_job_ctx_t *ctx);
ngx_uint_t ngx_gdrive_job_inflight(void);
void ngx_gdrive_job_exit(void);


#endif /* _NGX_GDRIVE_JOB_H_INCLUDED_ */
