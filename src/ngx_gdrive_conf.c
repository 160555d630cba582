
/*
 * nginx-gdrive-worker: the configuration (settings, parsers and checks).
 *
 * Every value setting has one description: the directive, the environment
 * variable it falls back to, the default, and the parser.  A value from
 * the directive beats the environment, the environment beats the default,
 * and the same parser checks all three, so "nginx -t" says what is wrong
 * with a value wherever it came from.
 *
 * The directive table stays with the module (ngx_http_gdrive_worker_module.c)
 * and names each value directive's setting by its index; the module hands
 * the table to this file when it creates the main configuration, so that
 * nothing here calls back up into the module.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_gdrive.h"


typedef char *(*ngx_gdrive_parse_pt)(ngx_conf_t *cf,
    ngx_http_gdrive_main_conf_t *gmcf, ngx_str_t *args, ngx_uint_t n,
    void *field, void *post);


typedef struct {
    ngx_gdrive_setting_e   id;
    char                  *env;
    char                  *def;
    ngx_gdrive_parse_pt    parse;
    ngx_int_t              min;
    ngx_int_t              max;
    ngx_uint_t             flags;
} ngx_gdrive_setting_t;


/* environment value is in milliseconds (the guide's *_MS variables) */
#define NGX_GDRIVE_ENV_MS   0x01
/* a credential: never printed */
#define NGX_GDRIVE_SECRET   0x02


static ngx_gdrive_setting_t *ngx_http_gdrive_setting(ngx_command_t *cmd);
static char *ngx_http_gdrive_defaults(ngx_conf_t *cf,
    ngx_http_gdrive_main_conf_t *gmcf);
static char *ngx_http_gdrive_derived(ngx_conf_t *cf,
    ngx_http_gdrive_main_conf_t *gmcf);
static char *ngx_http_gdrive_check(ngx_conf_t *cf,
    ngx_http_gdrive_main_conf_t *gmcf);
static char *ngx_http_gdrive_required(ngx_conf_t *cf,
    ngx_http_gdrive_main_conf_t *gmcf);
static char *ngx_http_gdrive_aws_mode(ngx_conf_t *cf,
    ngx_http_gdrive_main_conf_t *gmcf, char *why);
static char *ngx_http_gdrive_apply(ngx_conf_t *cf,
    ngx_http_gdrive_main_conf_t *gmcf, ngx_command_t *cmd, ngx_str_t *args,
    ngx_uint_t n, ngx_uint_t from, char *env);
static char *ngx_http_gdrive_origin(ngx_conf_t *cf,
    ngx_http_gdrive_main_conf_t *gmcf, ngx_gdrive_setting_e id,
    ngx_str_t *args, ngx_uint_t n);
static char *ngx_http_gdrive_apply_text(ngx_conf_t *cf,
    ngx_http_gdrive_main_conf_t *gmcf, ngx_command_t *cmd, ngx_str_t *text,
    ngx_uint_t from, char *env);
static char *ngx_http_gdrive_require(ngx_conf_t *cf,
    ngx_http_gdrive_main_conf_t *gmcf, ngx_gdrive_setting_e id,
    const char *why);
static ngx_command_t *ngx_http_gdrive_setting_command(
    ngx_http_gdrive_main_conf_t *gmcf, ngx_gdrive_setting_e id);
static char *ngx_gdrive_parse_str(ngx_conf_t *cf,
    ngx_http_gdrive_main_conf_t *gmcf, ngx_str_t *args, ngx_uint_t n,
    void *field, void *post);
static char *ngx_gdrive_parse_url(ngx_conf_t *cf,
    ngx_http_gdrive_main_conf_t *gmcf, ngx_str_t *args, ngx_uint_t n,
    void *field, void *post);
static char *ngx_gdrive_parse_brokers(ngx_conf_t *cf,
    ngx_http_gdrive_main_conf_t *gmcf, ngx_str_t *args, ngx_uint_t n,
    void *field, void *post);
static char *ngx_gdrive_parse_topic(ngx_conf_t *cf,
    ngx_http_gdrive_main_conf_t *gmcf, ngx_str_t *args, ngx_uint_t n,
    void *field, void *post);
static char *ngx_gdrive_parse_instance(ngx_conf_t *cf,
    ngx_http_gdrive_main_conf_t *gmcf, ngx_str_t *args, ngx_uint_t n,
    void *field, void *post);
static char *ngx_gdrive_parse_flag(ngx_conf_t *cf,
    ngx_http_gdrive_main_conf_t *gmcf, ngx_str_t *args, ngx_uint_t n,
    void *field, void *post);
static char *ngx_gdrive_parse_hosts(ngx_conf_t *cf,
    ngx_http_gdrive_main_conf_t *gmcf, ngx_str_t *args, ngx_uint_t n,
    void *field, void *post);
static char *ngx_gdrive_parse_integrations(ngx_conf_t *cf,
    ngx_http_gdrive_main_conf_t *gmcf, ngx_str_t *args, ngx_uint_t n,
    void *field, void *post);
static char *ngx_gdrive_parse_sse(ngx_conf_t *cf,
    ngx_http_gdrive_main_conf_t *gmcf, ngx_str_t *args, ngx_uint_t n,
    void *field, void *post);
static char *ngx_gdrive_parse_storage_class(ngx_conf_t *cf,
    ngx_http_gdrive_main_conf_t *gmcf, ngx_str_t *args, ngx_uint_t n,
    void *field, void *post);
static char *ngx_gdrive_parse_http_client(ngx_conf_t *cf,
    ngx_http_gdrive_main_conf_t *gmcf, ngx_str_t *args, ngx_uint_t n,
    void *field, void *post);
static char *ngx_gdrive_parse_on_delete(ngx_conf_t *cf,
    ngx_http_gdrive_main_conf_t *gmcf, ngx_str_t *args, ngx_uint_t n,
    void *field, void *post);
static char *ngx_gdrive_parse_num(ngx_conf_t *cf,
    ngx_http_gdrive_main_conf_t *gmcf, ngx_str_t *args, ngx_uint_t n,
    void *field, void *post);
static char *ngx_gdrive_parse_msec(ngx_conf_t *cf,
    ngx_http_gdrive_main_conf_t *gmcf, ngx_str_t *args, ngx_uint_t n,
    void *field, void *post);
static char *ngx_gdrive_parse_sec(ngx_conf_t *cf,
    ngx_http_gdrive_main_conf_t *gmcf, ngx_str_t *args, ngx_uint_t n,
    void *field, void *post);
static char *ngx_gdrive_parse_size(ngx_conf_t *cf,
    ngx_http_gdrive_main_conf_t *gmcf, ngx_str_t *args, ngx_uint_t n,
    void *field, void *post);
static char *ngx_gdrive_parse_service_account(ngx_conf_t *cf,
    ngx_http_gdrive_main_conf_t *gmcf, ngx_str_t *args, ngx_uint_t n,
    void *field, void *post);
static void ngx_gdrive_service_account_cleanup(void *data);
static char *ngx_gdrive_parse_scope(ngx_conf_t *cf,
    ngx_http_gdrive_main_conf_t *gmcf, ngx_str_t *args, ngx_uint_t n,
    void *field, void *post);
static char *ngx_gdrive_parse_session_name(ngx_conf_t *cf,
    ngx_http_gdrive_main_conf_t *gmcf, ngx_str_t *args, ngx_uint_t n,
    void *field, void *post);
static char *ngx_gdrive_parse_path(ngx_conf_t *cf,
    ngx_http_gdrive_main_conf_t *gmcf, ngx_str_t *args, ngx_uint_t n,
    void *field, void *post);
static char *ngx_gdrive_parse_region(ngx_conf_t *cf,
    ngx_http_gdrive_main_conf_t *gmcf, ngx_str_t *args, ngx_uint_t n,
    void *field, void *post);
static char *ngx_gdrive_parse_bucket(ngx_conf_t *cf,
    ngx_http_gdrive_main_conf_t *gmcf, ngx_str_t *args, ngx_uint_t n,
    void *field, void *post);
static char *ngx_gdrive_parse_prefix(ngx_conf_t *cf,
    ngx_http_gdrive_main_conf_t *gmcf, ngx_str_t *args, ngx_uint_t n,
    void *field, void *post);
static char *ngx_gdrive_parse_rate(ngx_conf_t *cf,
    ngx_http_gdrive_main_conf_t *gmcf, ngx_str_t *args, ngx_uint_t n,
    void *field, void *post);
static char *ngx_gdrive_parse_connections(ngx_conf_t *cf,
    ngx_http_gdrive_main_conf_t *gmcf, ngx_str_t *args, ngx_uint_t n,
    void *field, void *post);
static char *ngx_gdrive_parse_retry(ngx_conf_t *cf,
    ngx_http_gdrive_main_conf_t *gmcf, ngx_str_t *args, ngx_uint_t n,
    void *field, void *post);
static char *ngx_gdrive_parse_metadata_cache(ngx_conf_t *cf,
    ngx_http_gdrive_main_conf_t *gmcf, ngx_str_t *args, ngx_uint_t n,
    void *field, void *post);
static char *ngx_gdrive_parse_stream_buffers(ngx_conf_t *cf,
    ngx_http_gdrive_main_conf_t *gmcf, ngx_str_t *args, ngx_uint_t n,
    void *field, void *post);
static char *ngx_gdrive_parse_percent(ngx_conf_t *cf,
    ngx_http_gdrive_main_conf_t *gmcf, ngx_str_t *args, ngx_uint_t n,
    void *field, void *post);
static char *ngx_gdrive_range_error(ngx_conf_t *cf, ngx_gdrive_setting_t *s,
    const char *unit);
static ngx_int_t ngx_gdrive_param(ngx_str_t *arg, char *name, ngx_str_t *v);


/* the settings table; the directive table names an entry by its id */

#define ngx_gdrive_setting(id, env, def, parse, min, max, flags)             \
    { NGX_GDRIVE_S_##id, env, def, parse, min, max, flags }

static ngx_gdrive_setting_t  ngx_gdrive_settings[] = {

    ngx_gdrive_setting(KAFKA_BROKERS, "KAFKA_BOOTSTRAP_SERVERS", NULL,
        ngx_gdrive_parse_brokers, 0, 0, 0),
    ngx_gdrive_setting(KAFKA_TOPIC, NULL, "integration.trigger",
        ngx_gdrive_parse_topic, 0, 0, 0),
    ngx_gdrive_setting(KAFKA_DLQ_TOPIC, NULL, "integration.trigger.dlq",
        ngx_gdrive_parse_topic, 0, 0, 0),
    ngx_gdrive_setting(KAFKA_RESULT_TOPIC, NULL, "integration.result",
        ngx_gdrive_parse_topic, 0, 0, 0),
    ngx_gdrive_setting(KAFKA_GROUP, NULL, "google-drive-worker",
        ngx_gdrive_parse_topic, 0, 0, 0),
    ngx_gdrive_setting(INSTANCE, "GDRIVE_INSTANCE", NULL,
        ngx_gdrive_parse_instance, 0, 0, 0),
    ngx_gdrive_setting(KAFKA_MAX_POLL_RECORDS, "KAFKA_MAX_POLL_RECORDS", "500",
        ngx_gdrive_parse_num, 1, 100000, 0),
    ngx_gdrive_setting(KAFKA_MAX_POLL_INTERVAL, "KAFKA_MAX_POLL_INTERVAL_MS",
        "600s", ngx_gdrive_parse_msec, 1, 86400000, NGX_GDRIVE_ENV_MS),
    ngx_gdrive_setting(KAFKA_SESSION_TIMEOUT, "KAFKA_SESSION_TIMEOUT_MS",
        "30s", ngx_gdrive_parse_msec, 1, 3600000, NGX_GDRIVE_ENV_MS),
    ngx_gdrive_setting(KAFKA_FETCH_MIN_BYTES, "KAFKA_FETCH_MIN_BYTES", "1",
        ngx_gdrive_parse_num, 1, 100000000, 0),
    ngx_gdrive_setting(KAFKA_FETCH_MAX_WAIT, "KAFKA_FETCH_MAX_WAIT_MS", "500ms",
        ngx_gdrive_parse_msec, 0, 300000, NGX_GDRIVE_ENV_MS),
    ngx_gdrive_setting(KAFKA_COMMIT_INTERVAL, NULL, "5s",
        ngx_gdrive_parse_msec, 100, 3600000, 0),
    ngx_gdrive_setting(KAFKA_DELIVERY_TIMEOUT, NULL, "30s",
        ngx_gdrive_parse_msec, 1000, 3600000, 0),
    ngx_gdrive_setting(KAFKA_OUTPUT_LINGER, NULL, "5ms",
        ngx_gdrive_parse_msec, 0, 10000, 0),
    ngx_gdrive_setting(CONSUMER, NULL, "off",
        ngx_gdrive_parse_flag, 0, 0, 0),
    ngx_gdrive_setting(GOOGLE_TOKEN_URL, "GOOGLE_TOKEN_URL",
        "https://oauth2.googleapis.com/token", ngx_gdrive_parse_url, 0, 0, 0),
    ngx_gdrive_setting(GOOGLE_API_URL, "GOOGLE_API_URL",
        "https://www.googleapis.com", ngx_gdrive_parse_url, 0, 0, 0),
    ngx_gdrive_setting(GOOGLE_CLIENT_ID, "GOOGLE_CLIENT_ID", NULL,
        ngx_gdrive_parse_str, 0, 0, 0),
    ngx_gdrive_setting(GOOGLE_CLIENT_SECRET, "GOOGLE_CLIENT_SECRET", NULL,
        ngx_gdrive_parse_str, 0, 0, NGX_GDRIVE_SECRET),
    ngx_gdrive_setting(GOOGLE_REFRESH_TOKEN, "GOOGLE_REFRESH_TOKEN", NULL,
        ngx_gdrive_parse_str, 0, 0, NGX_GDRIVE_SECRET),
    ngx_gdrive_setting(GOOGLE_API_DEBUG, "GOOGLE_API_DEBUG", "off",
        ngx_gdrive_parse_flag, 0, 0, 0),
    ngx_gdrive_setting(GOOGLE_SERVICE_ACCOUNT, "GOOGLE_APPLICATION_CREDENTIALS",
        NULL, ngx_gdrive_parse_service_account, 0, 0, 0),
    ngx_gdrive_setting(GOOGLE_SCOPE, NULL,
        "https://www.googleapis.com/auth/drive.readonly",
        ngx_gdrive_parse_scope, 0, 0, 0),
    ngx_gdrive_setting(CONTROL_PLANE_URL, "CONTROL_PLANE_URL", NULL,
        ngx_gdrive_parse_url, 0, 0, 0),
    ngx_gdrive_setting(CONTROL_PLANE_TOKEN, "CONTROL_PLANE_TOKEN", NULL,
        ngx_gdrive_parse_str, 0, 0, NGX_GDRIVE_SECRET),
    ngx_gdrive_setting(CONTROL_PLANE_CERTIFICATE, NULL, NULL,
        ngx_gdrive_parse_path, 0, 0, 0),
    ngx_gdrive_setting(CONTROL_PLANE_CERTIFICATE_KEY, NULL, NULL,
        ngx_gdrive_parse_path, 0, 0, 0),
    ngx_gdrive_setting(GOOGLE_TRUSTED_HOSTS, NULL,
        "*.google.com *.googleapis.com *.googleusercontent.com",
        ngx_gdrive_parse_hosts, 0, 0, 0),
    ngx_gdrive_setting(INTEGRATIONS, "GDRIVE_INTEGRATIONS", NULL,
        ngx_gdrive_parse_integrations, 0, 0, 0),
    ngx_gdrive_setting(TOKEN_SKEW, NULL, "60s",
        ngx_gdrive_parse_msec, 0, 1800000, 0),
    ngx_gdrive_setting(ACKNOWLEDGE_ABUSE, NULL, "off",
        ngx_gdrive_parse_flag, 0, 0, 0),
    ngx_gdrive_setting(QUOTA_PAUSE, NULL, "15m",
        ngx_gdrive_parse_msec, 1000, 86400000, 0),
    ngx_gdrive_setting(LIST_PAGE_SIZE, NULL, "1000",
        ngx_gdrive_parse_num, 1, 1000, 0),
    ngx_gdrive_setting(S3_ENDPOINT, "S3_ENDPOINT", NULL,
        ngx_gdrive_parse_url, 0, 0, 0),
    ngx_gdrive_setting(S3_REGION, "AWS_REGION", "us-east-1",
        ngx_gdrive_parse_region, 0, 0, 0),
    ngx_gdrive_setting(S3_BUCKET, "S3_BUCKET_NAME", NULL,
        ngx_gdrive_parse_bucket, 0, 0, 0),
    ngx_gdrive_setting(S3_ACCESS_KEY, "AWS_ACCESS_KEY_ID", NULL,
        ngx_gdrive_parse_str, 0, 0, 0),
    ngx_gdrive_setting(S3_SECRET_KEY, "AWS_SECRET_ACCESS_KEY", NULL,
        ngx_gdrive_parse_str, 0, 0, NGX_GDRIVE_SECRET),
    ngx_gdrive_setting(S3_SESSION_TOKEN, "AWS_SESSION_TOKEN", NULL,
        ngx_gdrive_parse_str, 0, 0, NGX_GDRIVE_SECRET),
    ngx_gdrive_setting(S3_ROLE_ARN, "AWS_ROLE_ARN", NULL,
        ngx_gdrive_parse_str, 0, 0, 0),
    ngx_gdrive_setting(S3_WEB_IDENTITY_TOKEN_FILE,
        "AWS_WEB_IDENTITY_TOKEN_FILE", NULL, ngx_gdrive_parse_path, 0, 0, 0),
    ngx_gdrive_setting(S3_ROLE_SESSION_NAME, "AWS_ROLE_SESSION_NAME",
        "nginx-gdrive-worker", ngx_gdrive_parse_session_name, 0, 0, 0),
    ngx_gdrive_setting(STS_ENDPOINT, "AWS_ENDPOINT_URL_STS", NULL,
        ngx_gdrive_parse_url, 0, 0, 0),
    ngx_gdrive_setting(STS_RENEW, NULL, "5m",
        ngx_gdrive_parse_msec, 0, 43200000, 0),
    ngx_gdrive_setting(S3_PREFIX, "S3_PREFIX", "",
        ngx_gdrive_parse_prefix, 0, 0, 0),
    ngx_gdrive_setting(S3_PATH_STYLE, "S3_PATH_STYLE", NULL,
        ngx_gdrive_parse_flag, 0, 0, 0),
    ngx_gdrive_setting(S3_MULTIPART_THRESHOLD, NULL, NULL,
        ngx_gdrive_parse_size, 0, 0, 0),
    ngx_gdrive_setting(S3_SIGN_PARTS, NULL, "off",
        ngx_gdrive_parse_flag, 0, 0, 0),
    ngx_gdrive_setting(S3_ON_DELETE, "GDRIVE_S3_ON_DELETE", "keep",
        ngx_gdrive_parse_on_delete, 0, 0, 0),
    ngx_gdrive_setting(S3_SSE, "GDRIVE_S3_SSE", "off",
        ngx_gdrive_parse_sse, 0, 0, 0),
    ngx_gdrive_setting(S3_STORAGE_CLASS, "GDRIVE_S3_STORAGE_CLASS", NULL,
        ngx_gdrive_parse_storage_class, 0, 0, 0),
    ngx_gdrive_setting(RATE_LIMIT, "GDRIVE_API_RATE_LIMIT", "10r/s",
        ngx_gdrive_parse_rate, 0, 0, 0),
    ngx_gdrive_setting(GLOBAL_RATE_LIMIT, "GDRIVE_API_GLOBAL_RATE_LIMIT",
        "200r/s", ngx_gdrive_parse_rate, 0, 0, 0),
    ngx_gdrive_setting(MAX_CONNECTIONS, "WORKER_MAX_CONCURRENT_CONNECTIONS",
        "100", ngx_gdrive_parse_connections, 1, 65535, 0),
    ngx_gdrive_setting(DNS_CACHE_TTL, NULL, "300s",
        ngx_gdrive_parse_sec, 0, 86400, 0),
    ngx_gdrive_setting(CONNECT_TIMEOUT, NULL, "10s",
        ngx_gdrive_parse_msec, 1, 600000, 0),
    ngx_gdrive_setting(READ_TIMEOUT, NULL, "60s",
        ngx_gdrive_parse_msec, 1000, 3600000, 0),
    ngx_gdrive_setting(SSL_VERIFY, NULL, "on",
        ngx_gdrive_parse_flag, 0, 0, 0),
    ngx_gdrive_setting(HTTP_CLIENT, "GDRIVE_HTTP_CLIENT", "auto",
        ngx_gdrive_parse_http_client, 0, 0, 0),
    ngx_gdrive_setting(CA_FILE, NULL, NULL,
        ngx_gdrive_parse_path, 0, 0, 0),
    ngx_gdrive_setting(MAX_QUEUED_BYTES, "GDRIVE_MAX_QUEUED_BYTES", "64m",
        ngx_gdrive_parse_size, 0, 0, 0),
    ngx_gdrive_setting(MAX_INFLIGHT, "GDRIVE_MAX_INFLIGHT", "16",
        ngx_gdrive_parse_num, 1, 10000, 0),
    ngx_gdrive_setting(RETRY, NULL, "attempts=5 base=1s max=32s",
        ngx_gdrive_parse_retry, 0, 0, 0),
    ngx_gdrive_setting(METADATA_CACHE, NULL, "10000 ttl=1h",
        ngx_gdrive_parse_metadata_cache, 0, 0, 0),
    ngx_gdrive_setting(STREAM_BUFFERS, NULL, "4 8m",
        ngx_gdrive_parse_stream_buffers, 0, 0, 0),
    ngx_gdrive_setting(SHUTDOWN_TIMEOUT, NULL, "30s",
        ngx_gdrive_parse_msec, 0, 3600000, 0),
    ngx_gdrive_setting(HEALTH_INTERVAL, "GDRIVE_HEALTH_INTERVAL", "30s",
        ngx_gdrive_parse_msec, 1000, 3600000, 0),
    ngx_gdrive_setting(HEALTH_TIMEOUT, "GDRIVE_HEALTH_TIMEOUT", "5s",
        ngx_gdrive_parse_msec, 100, 60000, 0),
    ngx_gdrive_setting(HEALTH_WINDOW, "GDRIVE_HEALTH_WINDOW", "5m",
        ngx_gdrive_parse_msec, 10000, 86400000, 0),
    ngx_gdrive_setting(HEALTH_MAX_LAG, "GDRIVE_HEALTH_MAX_LAG", "1000",
        ngx_gdrive_parse_num, 0, NGX_MAX_INT32_VALUE, 0),
    ngx_gdrive_setting(HEALTH_MEMORY_LIMIT, "GDRIVE_HEALTH_MEMORY_LIMIT", NULL,
        ngx_gdrive_parse_size, 0, 0, 0),
    ngx_gdrive_setting(HEALTH_MAX_MEMORY, "GDRIVE_HEALTH_MAX_MEMORY", "80%",
        ngx_gdrive_parse_percent, 1, 10000, 0),
    ngx_gdrive_setting(HEALTH_MAX_RATE_USE, "GDRIVE_HEALTH_MAX_RATE_USE", "80%",
        ngx_gdrive_parse_percent, 1, 10000, 0),
    ngx_gdrive_setting(HEALTH_MAX_DLQ, "GDRIVE_HEALTH_MAX_DLQ", "100",
        ngx_gdrive_parse_num, 0, NGX_MAX_INT32_VALUE, 0),
    ngx_gdrive_setting(HEALTH_MAX_ERROR_RATE, "GDRIVE_HEALTH_MAX_ERROR_RATE",
        "1%", ngx_gdrive_parse_percent, 0, 10000, 0),
    ngx_gdrive_setting(HEALTH_MAX_P95, "GDRIVE_HEALTH_MAX_P95", "5s",
        ngx_gdrive_parse_msec, 1, 3600000, 0),
};


void *
ngx_gdrive_conf_create_main(ngx_conf_t *cf, ngx_command_t *commands)
{
    ngx_http_gdrive_main_conf_t  *gmcf;

    gmcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_gdrive_main_conf_t));
    if (gmcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     gmcf->shm_zone = NULL;
     *     gmcf->locations = 0;
     *     gmcf->set[] = NGX_GDRIVE_FROM_UNSET;
     *     all values = 0 / empty, filled in by init_main_conf
     */

    gmcf->commands = commands;

    return gmcf;
}


char *
ngx_http_gdrive_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_http_gdrive_main_conf_t *gmcf = conf;

    char  *rv;

    if (gmcf->locations == 0 && !gmcf->consumer) {
        /* the module is not used: nginx behaves as without it */
        return NGX_CONF_OK;
    }

    rv = ngx_http_gdrive_defaults(cf, gmcf);

    if (rv == NGX_CONF_OK) {
        rv = ngx_http_gdrive_derived(cf, gmcf);
    }

    if (rv == NGX_CONF_OK) {
        rv = ngx_http_gdrive_check(cf, gmcf);
    }

    if (rv == NGX_CONF_OK) {
        rv = ngx_http_gdrive_required(cf, gmcf);
    }

    return rv;
}


/* a setting without its directive: the environment, else the default */

static char *
ngx_http_gdrive_defaults(ngx_conf_t *cf, ngx_http_gdrive_main_conf_t *gmcf)
{
    char                  *rv, *env;
    u_char                *p;
    ngx_str_t              value;
    ngx_command_t         *cmd;
    ngx_gdrive_setting_t  *s;

    for (cmd = gmcf->commands; cmd->name.len; cmd++) {

        if (cmd->set != ngx_http_gdrive_set_setting) {
            continue;
        }

        s = ngx_http_gdrive_setting(cmd);

        if (gmcf->set[s->id] != NGX_GDRIVE_FROM_UNSET) {
            continue;
        }

        env = s->env ? getenv(s->env) : NULL;

        if (env != NULL && env[0] != '\0') {
            value.len = ngx_strlen(env);

            if (s->flags & NGX_GDRIVE_ENV_MS) {
                /* "600000" means milliseconds here, not seconds */
                value.data = ngx_pnalloc(cf->pool, value.len + 2);
                if (value.data == NULL) {
                    return NGX_CONF_ERROR;
                }

                p = ngx_cpymem(value.data, env, value.len);
                *p++ = 'm'; *p = 's';
                value.len += 2;

            } else {
                value.data = (u_char *) env;
            }

            rv = ngx_http_gdrive_apply_text(cf, gmcf, cmd, &value,
                                            NGX_GDRIVE_FROM_ENV, s->env);
            if (rv != NGX_CONF_OK) {
                return rv;
            }

            continue;
        }

        if (s->def == NULL) {
            continue;
        }

        value.data = (u_char *) s->def;
        value.len = ngx_strlen(s->def);

        rv = ngx_http_gdrive_apply_text(cf, gmcf, cmd, &value,
                                        NGX_GDRIVE_FROM_DEFAULT, NULL);
        if (rv != NGX_CONF_OK) {
            return rv;
        }
    }

    return NGX_CONF_OK;
}


/* defaults that depend on other values */

static char *
ngx_http_gdrive_derived(ngx_conf_t *cf, ngx_http_gdrive_main_conf_t *gmcf)
{
    ngx_str_t  value;

    if (gmcf->set[NGX_GDRIVE_S_S3_ENDPOINT] == NGX_GDRIVE_FROM_UNSET) {
        value.len = sizeof("https://s3..amazonaws.com") - 1
                    + gmcf->s3_region.len;
        value.data = ngx_pnalloc(cf->pool, value.len);
        if (value.data == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_sprintf(value.data, "https://s3.%V.amazonaws.com",
                    &gmcf->s3_region);
        gmcf->s3_endpoint = value;
        gmcf->origin[NGX_GDRIVE_S_S3_ENDPOINT] = value;
        gmcf->set[NGX_GDRIVE_S_S3_ENDPOINT] = NGX_GDRIVE_FROM_DEFAULT;

        if (gmcf->set[NGX_GDRIVE_S_S3_PATH_STYLE] == NGX_GDRIVE_FROM_UNSET) {
            gmcf->s3_path_style = 0;
        }

    } else if (gmcf->set[NGX_GDRIVE_S_S3_PATH_STYLE] == NGX_GDRIVE_FROM_UNSET)
    {
        /* S3-compatible stores rarely have wildcard DNS for buckets */
        gmcf->s3_path_style = 1;
    }

    /* the instance is named after the machine unless told otherwise */

    if (gmcf->set[NGX_GDRIVE_S_INSTANCE] == NGX_GDRIVE_FROM_UNSET) {
        gmcf->instance = cf->cycle->hostname;
        gmcf->origin[NGX_GDRIVE_S_INSTANCE] = cf->cycle->hostname;
        gmcf->set[NGX_GDRIVE_S_INSTANCE] = NGX_GDRIVE_FROM_DEFAULT;
    }

    /* AWS's regional STS endpoint, as the SDKs use by default now */

    if (gmcf->set[NGX_GDRIVE_S_STS_ENDPOINT] == NGX_GDRIVE_FROM_UNSET) {
        value.len = sizeof("https://sts..amazonaws.com") - 1
                    + gmcf->s3_region.len;
        value.data = ngx_pnalloc(cf->pool, value.len);
        if (value.data == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_sprintf(value.data, "https://sts.%V.amazonaws.com",
                    &gmcf->s3_region);
        gmcf->sts_endpoint = value;
        gmcf->origin[NGX_GDRIVE_S_STS_ENDPOINT] = value;
        gmcf->set[NGX_GDRIVE_S_STS_ENDPOINT] = NGX_GDRIVE_FROM_DEFAULT;
    }

    if (gmcf->set[NGX_GDRIVE_S_S3_PATH_STYLE] == NGX_GDRIVE_FROM_UNSET) {
        gmcf->set[NGX_GDRIVE_S_S3_PATH_STYLE] = NGX_GDRIVE_FROM_DEFAULT;

        if (gmcf->s3_path_style) {
            ngx_str_set(&gmcf->origin[NGX_GDRIVE_S_S3_PATH_STYLE], "on");

        } else {
            ngx_str_set(&gmcf->origin[NGX_GDRIVE_S_S3_PATH_STYLE], "off");
        }
    }

    return NGX_CONF_OK;
}


/*
 * Values that are good alone but not together; the multipart threshold,
 * which defaults to one stream buffer, is decided on the way.
 */

static char *
ngx_http_gdrive_check(ngx_conf_t *cf, ngx_http_gdrive_main_conf_t *gmcf)
{
    ngx_uint_t    i;
    ngx_keyval_t  *kv;

    /* scope=fleet learns the topic's partition count from statistics */

    if (gmcf->global_scope == NGX_GDRIVE_SCOPE_FLEET && gmcf->kafka_options) {
        kv = gmcf->kafka_options->elts;

        for (i = 0; i < gmcf->kafka_options->nelts; i++) {
            if (ngx_strcmp(kv[i].key.data, "statistics.interval.ms") == 0
                && ngx_atoi(kv[i].value.data, kv[i].value.len) == 0)
            {
                ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                              "\"gdrive_global_rate_limit\" scope=fleet "
                              "needs librdkafka's statistics, which "
                              "\"gdrive_kafka_option statistics.interval.ms "
                              "0\" turns off");
                return NGX_CONF_ERROR;
            }
        }
    }

    /* at least one trigger of the largest size must fit */

    if (gmcf->max_queued_bytes < 2 * NGX_GDRIVE_TRIGGER_MAX_SIZE) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"gdrive_max_queued_bytes\" %uz is below 128k, "
                      "two triggers of the largest size",
                      gmcf->max_queued_bytes);
        return NGX_CONF_ERROR;
    }

    if (gmcf->set[NGX_GDRIVE_S_S3_MULTIPART_THRESHOLD]
        == NGX_GDRIVE_FROM_UNSET)
    {
        gmcf->s3_multipart_threshold = gmcf->stream_buffers.size;
        gmcf->set[NGX_GDRIVE_S_S3_MULTIPART_THRESHOLD] =
                                                     NGX_GDRIVE_FROM_DEFAULT;
        gmcf->origin[NGX_GDRIVE_S_S3_MULTIPART_THRESHOLD] =
                              gmcf->origin[NGX_GDRIVE_S_STREAM_BUFFERS];

    } else if ((off_t) gmcf->s3_multipart_threshold > NGX_GDRIVE_S3_MAX_PUT) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"gdrive_s3_multipart_threshold\" %uz is above S3's "
                      "limit for one PUT (5g)", gmcf->s3_multipart_threshold);
        return NGX_CONF_ERROR;

    } else if (gmcf->s3_multipart_threshold > gmcf->stream_buffers.size
               && gmcf->s3_sign_parts)
    {
        /* a PUT larger than a buffer is sent as it is read: its payload
         * cannot be hashed before it is signed */
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"gdrive_s3_multipart_threshold\" %uz exceeds one "
                      "\"gdrive_stream_buffers\" buffer (%uz), which needs "
                      "\"gdrive_s3_sign_parts off\"",
                      gmcf->s3_multipart_threshold,
                      gmcf->stream_buffers.size);
        return NGX_CONF_ERROR;
    }

    if (gmcf->retry_base > gmcf->retry_max) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"gdrive_retry\": base=%Mms is greater than max=%Mms",
                      gmcf->retry_base, gmcf->retry_max);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* what the configured parts need */

static char *
ngx_http_gdrive_required(ngx_conf_t *cf, ngx_http_gdrive_main_conf_t *gmcf)
{
    char        *why;
    ngx_uint_t   i;

    if (gmcf->shm_zone == NULL) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"gdrive_zone\" is required when a gdrive location "
                      "or \"gdrive_consumer on\" is configured");
        return NGX_CONF_ERROR;
    }

    if (gmcf->consumer) {
        why = "gdrive_consumer is on";

    } else if (gmcf->locations & ((1 << NGX_HTTP_GDRIVE_LOC_TRIGGER)
                                  | (1 << NGX_HTTP_GDRIVE_LOC_DLQ)))
    {
        why = (gmcf->locations & (1 << NGX_HTTP_GDRIVE_LOC_TRIGGER))
              ? "gdrive_trigger is used" : "gdrive_dlq is used";

    } else {
        why = NULL;
    }

    if (why && ngx_http_gdrive_require(cf, gmcf, NGX_GDRIVE_S_KAFKA_BROKERS,
                                       why)
               != NGX_CONF_OK)
    {
        return NGX_CONF_ERROR;
    }

    if (!gmcf->consumer) {
        return NGX_CONF_OK;
    }

    why = "gdrive_consumer is on";

    /* a service account needs no OAuth client nor refresh token */

    if (gmcf->set[NGX_GDRIVE_S_CONTROL_PLANE_URL] == NGX_GDRIVE_FROM_UNSET
        && gmcf->google_sa_key == NULL)
    {

        for (i = NGX_GDRIVE_S_GOOGLE_CLIENT_ID;
             i <= NGX_GDRIVE_S_GOOGLE_REFRESH_TOKEN;
             i++)
        {
            if (ngx_http_gdrive_require(cf, gmcf, i,
                        "gdrive_consumer is on and no control plane is set")
                != NGX_CONF_OK)
            {
                return NGX_CONF_ERROR;
            }
        }
    }

    if ((gmcf->set[NGX_GDRIVE_S_CONTROL_PLANE_CERTIFICATE]
         == NGX_GDRIVE_FROM_UNSET)
        != (gmcf->set[NGX_GDRIVE_S_CONTROL_PLANE_CERTIFICATE_KEY]
            == NGX_GDRIVE_FROM_UNSET))
    {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"gdrive_control_plane_certificate\" and "
                      "\"gdrive_control_plane_certificate_key\" go "
                      "together: one is set without the other");
        return NGX_CONF_ERROR;
    }

    if (ngx_http_gdrive_require(cf, gmcf, NGX_GDRIVE_S_S3_BUCKET, why)
        != NGX_CONF_OK)
    {
        return NGX_CONF_ERROR;
    }

    return ngx_http_gdrive_aws_mode(cf, gmcf, why);
}


/*
 * Which AWS credentials sign: web identity when a role and a token file
 * are both set, else the static keys (with a session token or not).  A
 * role without a token file, or the reverse, is refused: half of IRSA
 * is a mistake, not a choice.  Web identity wins over static keys set as
 * well, with a warning: the role is what the pod was given on purpose,
 * while keys often linger in a base image's environment.
 */

static char *
ngx_http_gdrive_aws_mode(ngx_conf_t *cf, ngx_http_gdrive_main_conf_t *gmcf,
    char *why)
{
    ngx_uint_t  role, file, i;

    role = (gmcf->set[NGX_GDRIVE_S_S3_ROLE_ARN] != NGX_GDRIVE_FROM_UNSET);
    file = (gmcf->set[NGX_GDRIVE_S_S3_WEB_IDENTITY_TOKEN_FILE]
            != NGX_GDRIVE_FROM_UNSET);

    if (role != file) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"gdrive_s3_role_arn\" (AWS_ROLE_ARN) and "
                      "\"gdrive_s3_web_identity_token_file\" "
                      "(AWS_WEB_IDENTITY_TOKEN_FILE) go together: one is "
                      "set without the other");
        return NGX_CONF_ERROR;
    }

    if (role) {
        gmcf->s3_web_identity = 1;

        if (gmcf->set[NGX_GDRIVE_S_S3_ACCESS_KEY] != NGX_GDRIVE_FROM_UNSET
            || gmcf->set[NGX_GDRIVE_S_S3_SESSION_TOKEN]
               != NGX_GDRIVE_FROM_UNSET)
        {
            ngx_log_error(NGX_LOG_WARN, cf->log, 0,
                          "S3 signs with web identity (the role \"%V\"): "
                          "the static access key and session token that "
                          "are also set are not used", &gmcf->s3_role_arn);
        }

        return NGX_CONF_OK;
    }

    for (i = NGX_GDRIVE_S_S3_ACCESS_KEY; i <= NGX_GDRIVE_S_S3_SECRET_KEY; i++)
    {
        if (ngx_http_gdrive_require(cf, gmcf, i, why) != NGX_CONF_OK) {
            return NGX_CONF_ERROR;
        }
    }

    /* it goes into one header line and the shared zone's copy */

    if (gmcf->s3_session_token.len > NGX_GDRIVE_STS_TOKEN_MAX) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"gdrive_s3_session_token\" (AWS_SESSION_TOKEN) is "
                      "longer than %d bytes", NGX_GDRIVE_STS_TOKEN_MAX);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}




static char *
ngx_http_gdrive_require(ngx_conf_t *cf, ngx_http_gdrive_main_conf_t *gmcf,
    ngx_gdrive_setting_e id, const char *why)
{
    ngx_command_t         *cmd;
    ngx_gdrive_setting_t  *s;

    if (gmcf->set[id] != NGX_GDRIVE_FROM_UNSET) {
        return NGX_CONF_OK;
    }

    cmd = ngx_http_gdrive_setting_command(gmcf, id);
    s = ngx_http_gdrive_setting(cmd);

    if (s->env) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"%V\" is not set and the environment variable "
                      "\"%s\" is empty, but %s",
                      &cmd->name, s->env, why);

    } else {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"%V\" is not set, but %s", &cmd->name, why);
    }

    return NGX_CONF_ERROR;
}



static ngx_command_t *
ngx_http_gdrive_setting_command(ngx_http_gdrive_main_conf_t *gmcf,
    ngx_gdrive_setting_e id)
{
    ngx_command_t  *cmd;

    for (cmd = gmcf->commands; cmd->name.len; cmd++) {
        if (cmd->set == ngx_http_gdrive_set_setting) {
            if ((ngx_gdrive_setting_e) (uintptr_t) cmd->post == id) {
                return cmd;
            }
        }
    }

    /* unreachable: every setting has a directive */
    return NULL;
}


/* a value directive's description: the directive table names it by id */

static ngx_gdrive_setting_t *
ngx_http_gdrive_setting(ngx_command_t *cmd)
{
    ngx_uint_t            i;
    ngx_gdrive_setting_e  id;

    id = (ngx_gdrive_setting_e) (uintptr_t) cmd->post;

    for (i = 0; i < sizeof(ngx_gdrive_settings)
                    / sizeof(ngx_gdrive_setting_t); i++)
    {
        if (ngx_gdrive_settings[i].id == id) {
            return &ngx_gdrive_settings[i];
        }
    }

    /* unreachable: every value directive has a setting */
    return NULL;
}


void *
ngx_http_gdrive_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_gdrive_loc_conf_t  *glcf;

    glcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_gdrive_loc_conf_t));
    if (glcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     glcf->type = NGX_HTTP_GDRIVE_LOC_NONE;
     */

    glcf->trigger_max_batch = NGX_CONF_UNSET_UINT;

    return glcf;
}


char *
ngx_http_gdrive_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_gdrive_loc_conf_t *prev = parent;
    ngx_http_gdrive_loc_conf_t *conf = child;

    ngx_http_core_loc_conf_t  *clcf;

    ngx_conf_merge_uint_value(conf->trigger_max_batch,
                              prev->trigger_max_batch, 1000);

    if (conf->trigger_max_batch == 0 || conf->trigger_max_batch > 100000) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"gdrive_trigger_max_batch\" must be between "
                           "1 and 100000, not %ui", conf->trigger_max_batch);
        return NGX_CONF_ERROR;
    }

    if (conf->type != NGX_HTTP_GDRIVE_LOC_TRIGGER) {
        return NGX_CONF_OK;
    }

    /*
     * The body limit is client_max_body_size; "0" (no limit) still means
     * at most a full batch of the largest triggers.  The body is read
     * unbuffered into a buffer that grows with what arrived (never to a
     * temporary file), so client_body_buffer_size stays as configured.
     */

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    conf->trigger_max_body = clcf->client_max_body_size;

    if (conf->trigger_max_body == 0) {
        conf->trigger_max_body = conf->trigger_max_batch
                                 * (NGX_GDRIVE_TRIGGER_MAX_SIZE + 1);
    }

    return NGX_CONF_OK;
}


char *
ngx_http_gdrive_set_setting(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_gdrive_main_conf_t *gmcf = conf;

    ngx_str_t             *value;
    ngx_gdrive_setting_t  *s;

    s = ngx_http_gdrive_setting(cmd);

    if (gmcf->set[s->id] != NGX_GDRIVE_FROM_UNSET) {
        return "is duplicate";
    }

    value = cf->args->elts;

    return ngx_http_gdrive_apply(cf, gmcf, cmd, &value[1],
                                 cf->args->nelts - 1,
                                 NGX_GDRIVE_FROM_DIRECTIVE, NULL);
}


/*
 * Runs a setting's parser on a value from the directive, the environment
 * or the default, and reports a bad value with the directive's name (and
 * the variable's, when it came from there).
 */

static char *
ngx_http_gdrive_apply(ngx_conf_t *cf, ngx_http_gdrive_main_conf_t *gmcf,
    ngx_command_t *cmd, ngx_str_t *args, ngx_uint_t n, ngx_uint_t from,
    char *env)
{
    char                  *err;
    ngx_str_t              shown;
    ngx_gdrive_setting_t  *s;

    s = ngx_http_gdrive_setting(cmd);

    err = s->parse(cf, gmcf, args, n, (char *) gmcf + cmd->offset, s);

    if (err == NULL) {
        gmcf->set[s->id] = (u_char) from;
        return ngx_http_gdrive_origin(cf, gmcf, s->id, args, n);
    }

    if (err == NGX_CONF_ERROR) {
        return NGX_CONF_ERROR;
    }

    shown = args[0];

    if (s->flags & NGX_GDRIVE_SECRET) {
        ngx_str_set(&shown, "(secret)");
    }

    switch (from) {

    case NGX_GDRIVE_FROM_DIRECTIVE:
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid value \"%V\" in \"%V\" directive: %s",
                           &shown, &cmd->name, err);
        break;

    case NGX_GDRIVE_FROM_ENV:
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "invalid value \"%V\" in environment variable \"%s\" "
                      "(used for \"%V\"): %s", &shown, env, &cmd->name, err);
        break;

    default:
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "default \"%V\" of \"%V\" rejected: %s",
                      &shown, &cmd->name, err);
    }

    return NGX_CONF_ERROR;
}


/* the value as given, for the diagnostics: its words joined by spaces */

static char *
ngx_http_gdrive_origin(ngx_conf_t *cf, ngx_http_gdrive_main_conf_t *gmcf,
    ngx_gdrive_setting_e id, ngx_str_t *args, ngx_uint_t n)
{
    u_char      *p;
    size_t       len;
    ngx_uint_t   i;

    len = 0;

    for (i = 0; i < n; i++) {
        len += args[i].len + 1;
    }

    p = ngx_pnalloc(cf->pool, len);
    if (p == NULL) {
        return NGX_CONF_ERROR;
    }

    gmcf->origin[id].data = p;

    for (i = 0; i < n; i++) {
        if (i) {
            *p++ = ' ';
        }

        p = ngx_cpymem(p, args[i].data, args[i].len);
    }

    gmcf->origin[id].len = p - gmcf->origin[id].data;

    return NGX_CONF_OK;
}


/*
 * The i-th setting as the diagnostics show it; NGX_DONE past the last.
 * A secret's value is not handed out.
 */

ngx_int_t
ngx_http_gdrive_setting_info(ngx_http_gdrive_main_conf_t *gmcf, ngx_uint_t i,
    ngx_gdrive_setting_info_t *info)
{
    ngx_uint_t             n;
    ngx_command_t         *cmd;
    ngx_gdrive_setting_t  *s;

    n = 0;

    for (cmd = gmcf->commands; cmd->name.len; cmd++) {

        if (cmd->set != ngx_http_gdrive_set_setting || n++ != i) {
            continue;
        }

        s = ngx_http_gdrive_setting(cmd);

        info->name = cmd->name;
        info->env = s->env;
        info->from = gmcf->set[s->id];
        info->secret = (s->flags & NGX_GDRIVE_SECRET) ? 1 : 0;

        if (info->secret) {
            ngx_str_null(&info->value);

        } else {
            info->value = gmcf->origin[s->id];
        }

        return NGX_OK;
    }

    return NGX_DONE;
}


/*
 * A value from the environment or a default, split at spaces like a
 * directive.
 */

static char *
ngx_http_gdrive_apply_text(ngx_conf_t *cf, ngx_http_gdrive_main_conf_t *gmcf,
    ngx_command_t *cmd, ngx_str_t *text, ngx_uint_t from, char *env)
{
    u_char      *p, *last;
    ngx_str_t    args[4];
    ngx_uint_t   n;

    n = 0;
    p = text->data;
    last = p + text->len;

    while (p < last) {

        while (p < last && (*p == ' ' || *p == '\t')) {
            p++;
        }

        if (p == last) {
            break;
        }

        if (n == sizeof(args) / sizeof(ngx_str_t)) {
            n = 0;
            break;
        }

        args[n].data = p;

        while (p < last && *p != ' ' && *p != '\t') {
            p++;
        }

        args[n].len = p - args[n].data;
        n++;
    }

    if (n == 0) {
        args[0] = *text;
        n = 1;
    }

    return ngx_http_gdrive_apply(cf, gmcf, cmd, args, n, from, env);
}


/* parsers: return NULL when the value is good, else what is wrong */


static char *
ngx_gdrive_parse_str(ngx_conf_t *cf, ngx_http_gdrive_main_conf_t *gmcf,
    ngx_str_t *args, ngx_uint_t n, void *field, void *post)
{
    ngx_str_t  *str = field;

    if (args[0].len == 0) {
        return "must not be empty";
    }

    *str = args[0];

    return NULL;
}


static char *
ngx_gdrive_parse_url(ngx_conf_t *cf, ngx_http_gdrive_main_conf_t *gmcf,
    ngx_str_t *args, ngx_uint_t n, void *field, void *post)
{
    ngx_str_t  *str = field;

    u_char     *p, *host;
    ngx_str_t   v;

    v = args[0];

    if (v.len > 7 && ngx_strncasecmp(v.data, (u_char *) "http://", 7) == 0) {
        host = v.data + 7;

    } else if (v.len > 8
               && ngx_strncasecmp(v.data, (u_char *) "https://", 8) == 0)
    {
        host = v.data + 8;

    } else {
        return "must be an http:// or https:// URL";
    }

    if (*host == '/' || *host == ':' || *host == '?') {
        return "URL has no host";
    }

    for (p = v.data; p < v.data + v.len; p++) {
        if (*p <= ' ' || *p == 0x7f || *p == '#') {
            return "URL contains a space, a control character or '#'";
        }
    }

    /* paths are appended to the base: keep it without a trailing slash */
    while (v.len && v.data[v.len - 1] == '/') {
        v.len--;
    }

    *str = v;

    return NULL;
}


static char *
ngx_gdrive_parse_brokers(ngx_conf_t *cf, ngx_http_gdrive_main_conf_t *gmcf,
    ngx_str_t *args, ngx_uint_t n, void *field, void *post)
{
    ngx_str_t  *str = field;

    u_char     *p, *last, *start, *colon;
    ngx_int_t   port;

    p = args[0].data;
    last = p + args[0].len;

    if (p == last) {
        return "must not be empty";
    }

    while (p < last) {
        start = p;
        colon = NULL;

        while (p < last && *p != ',') {
            if (*p == ':') {
                colon = p;
            }

            if (*p <= ' ') {
                return "expected host:port[,host:port...] without spaces";
            }

            p++;
        }

        if (colon == NULL || colon == start) {
            return "expected host:port[,host:port...]";
        }

        port = ngx_atoi(colon + 1, p - colon - 1);

        if (port < 1 || port > 65535) {
            return "a broker port must be a number from 1 to 65535";
        }

        if (p < last) {
            p++;
        }
    }

    *str = args[0];

    return NULL;
}


static char *
ngx_gdrive_parse_topic(ngx_conf_t *cf, ngx_http_gdrive_main_conf_t *gmcf,
    ngx_str_t *args, ngx_uint_t n, void *field, void *post)
{
    ngx_str_t  *str = field;

    u_char      c;
    ngx_uint_t  i;

    /* Kafka's rule for topic names; group ids are held to it too */

    if (args[0].len == 0 || args[0].len > 249) {
        return "must be 1 to 249 characters long";
    }

    for (i = 0; i < args[0].len; i++) {
        c = args[0].data[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
              || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
        {
            return "only letters, digits, '.', '_' and '-' are allowed";
        }
    }

    if ((args[0].len == 1 && args[0].data[0] == '.')
        || (args[0].len == 2 && ngx_strncmp(args[0].data, "..", 2) == 0))
    {
        return "\".\" and \"..\" are not allowed";
    }

    *str = args[0];

    return NULL;
}


/*
 * Hosts that may receive the Google bearer token besides the host of
 * gdrive_google_api_url: "host" exactly, "*.domain" any name below it.
 */

static char *
ngx_gdrive_parse_hosts(ngx_conf_t *cf, ngx_http_gdrive_main_conf_t *gmcf,
    ngx_str_t *args, ngx_uint_t n, void *field, void *post)
{
    ngx_array_t  **ap = field;

    u_char      *p, *name;
    size_t       len;
    ngx_str_t   *h;
    ngx_uint_t   i;

    *ap = ngx_array_create(cf->pool, n, sizeof(ngx_str_t));
    if (*ap == NULL) {
        return NGX_CONF_ERROR;
    }

    for (i = 0; i < n; i++) {
        name = args[i].data;
        len = args[i].len;

        if (len > 2 && name[0] == '*' && name[1] == '.') {
            name += 2;
            len -= 2;
        }

        if (len == 0 || len > 253) {
            return "must be host names such as www.googleapis.com or "
                   "*.googleusercontent.com";
        }

        for (p = name; p < name + len; p++) {
            if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')
                  || (*p >= '0' && *p <= '9') || *p == '-' || *p == '.'))
            {
                return "must be host names such as www.googleapis.com or "
                       "*.googleusercontent.com";
            }
        }

        h = ngx_array_push(*ap);
        if (h == NULL) {
            return NGX_CONF_ERROR;
        }

        h->len = args[i].len;
        h->data = ngx_pnalloc(cf->pool, h->len);
        if (h->data == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_strlow(h->data, args[i].data, h->len);
    }

    return NULL;
}


/*
 * The integrations that may be synced, as ids or lists of them separated
 * by spaces or commas (the environment variable's form); none: any.
 */

static char *
ngx_gdrive_parse_integrations(ngx_conf_t *cf,
    ngx_http_gdrive_main_conf_t *gmcf, ngx_str_t *args, ngx_uint_t n,
    void *field, void *post)
{
    ngx_array_t  **ap = field;

    u_char      *p, *start, *last;
    ngx_str_t   *id;
    ngx_uint_t   i, dots;

    *ap = ngx_array_create(cf->pool, 8, sizeof(ngx_str_t));
    if (*ap == NULL) {
        return NGX_CONF_ERROR;
    }

    for (i = 0; i < n; i++) {
        p = args[i].data;
        last = p + args[i].len;

        while (p < last) {
            while (p < last && (*p == ' ' || *p == ',' || *p == '\t')) {
                p++;
            }

            start = p;
            dots = 0;

            while (p < last && *p != ' ' && *p != ',' && *p != '\t') {
                if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')
                      || (*p >= '0' && *p <= '9') || *p == '.' || *p == '_'
                      || *p == ':' || *p == '-'))
                {
                    return "must be integration ids: 1 to 128 of "
                           "[A-Za-z0-9._:-], not only dots";
                }

                dots += (*p == '.');
                p++;
            }

            if (p == start) {
                continue;
            }

            if (p - start > NGX_GDRIVE_ID_MAX_LEN
                || dots == (ngx_uint_t) (p - start))
            {
                return "must be integration ids: 1 to 128 of "
                       "[A-Za-z0-9._:-], not only dots";
            }

            id = ngx_array_push(*ap);
            if (id == NULL) {
                return NGX_CONF_ERROR;
            }

            id->data = start;
            id->len = p - start;
        }
    }

    if ((*ap)->nelts == 0) {
        return "names no integration id";
    }

    return NULL;
}


/* server-side encryption: off, AES256, or aws:kms [key=ARN] */

static char *
ngx_gdrive_parse_sse(ngx_conf_t *cf, ngx_http_gdrive_main_conf_t *gmcf,
    ngx_str_t *args, ngx_uint_t n, void *field, void *post)
{
    u_char     *p;
    ngx_str_t   key;

    ngx_str_null(&gmcf->s3_sse);
    ngx_str_null(&gmcf->s3_sse_key);

    if (args[0].len == 3 && ngx_strncmp(args[0].data, "off", 3) == 0) {
        return n == 1 ? NULL : "takes no key= when \"off\"";
    }

    if (args[0].len == 6 && ngx_strncmp(args[0].data, "AES256", 6) == 0) {
        gmcf->s3_sse = args[0];
        return n == 1 ? NULL : "takes no key= with AES256";
    }

    if (args[0].len != 7 || ngx_strncmp(args[0].data, "aws:kms", 7) != 0) {
        return "must be \"off\", \"AES256\" or \"aws:kms [key=ARN]\"";
    }

    gmcf->s3_sse = args[0];

    if (n == 1) {
        return NULL;
    }

    if (ngx_gdrive_param(&args[1], "key=", &key) != NGX_OK || key.len == 0
        || key.len > 2048)
    {
        return "expected key=ARN (or a key id) after aws:kms";
    }

    for (p = key.data; p < key.data + key.len; p++) {
        if (*p <= 0x20 || *p >= 0x7f) {
            return "key= must be printable ASCII without spaces";
        }
    }

    gmcf->s3_sse_key = key;

    return NULL;
}


/* S3's storage classes are upper-case words: STANDARD_IA, GLACIER_IR */

static char *
ngx_gdrive_parse_storage_class(ngx_conf_t *cf,
    ngx_http_gdrive_main_conf_t *gmcf, ngx_str_t *args, ngx_uint_t n,
    void *field, void *post)
{
    ngx_str_t  *str = field;

    u_char  *p;

    if (args[0].len == 0 || args[0].len > 64) {
        return "must be an S3 storage class such as STANDARD_IA";
    }

    for (p = args[0].data; p < args[0].data + args[0].len; p++) {
        if (!((*p >= 'A' && *p <= 'Z') || *p == '_')) {
            return "must be an S3 storage class such as STANDARD_IA";
        }
    }

    *str = args[0];

    return NULL;
}


/* who sends the Drive and S3 clients' requests (ngx_gdrive_http1.c) */

static char *
ngx_gdrive_parse_http_client(ngx_conf_t *cf,
    ngx_http_gdrive_main_conf_t *gmcf, ngx_str_t *args, ngx_uint_t n,
    void *field, void *post)
{
    ngx_flag_t  *fp = field;

    if (args[0].len == 4 && ngx_strncmp(args[0].data, "auto", 4) == 0) {
        *fp = 1;
        return NULL;
    }

    if (args[0].len == 4 && ngx_strncmp(args[0].data, "curl", 4) == 0) {
        *fp = 0;
        return NULL;
    }

    return "must be \"auto\" or \"curl\"";
}


/* what a file removed or trashed in Drive does to its objects */

static char *
ngx_gdrive_parse_on_delete(ngx_conf_t *cf, ngx_http_gdrive_main_conf_t *gmcf,
    ngx_str_t *args, ngx_uint_t n, void *field, void *post)
{
    ngx_flag_t  *fp = field;

    if (args[0].len == 4 && ngx_strncmp(args[0].data, "keep", 4) == 0) {
        *fp = 0;
        return NULL;
    }

    if (args[0].len == 6 && ngx_strncmp(args[0].data, "delete", 6) == 0) {
        *fp = 1;
        return NULL;
    }

    return "must be \"keep\" or \"delete\"";
}


static char *
ngx_gdrive_parse_flag(ngx_conf_t *cf, ngx_http_gdrive_main_conf_t *gmcf,
    ngx_str_t *args, ngx_uint_t n, void *field, void *post)
{
    ngx_flag_t  *fp = field;

    static ngx_str_t  on[] = { ngx_string("on"), ngx_string("true"),
                               ngx_string("yes"), ngx_string("1") };
    static ngx_str_t  off[] = { ngx_string("off"), ngx_string("false"),
                                ngx_string("no"), ngx_string("0") };
    ngx_uint_t  i;

    for (i = 0; i < sizeof(on) / sizeof(ngx_str_t); i++) {
        if (args[0].len == on[i].len
            && ngx_strncasecmp(args[0].data, on[i].data, on[i].len) == 0)
        {
            *fp = 1;
            return NULL;
        }

        if (args[0].len == off[i].len
            && ngx_strncasecmp(args[0].data, off[i].data, off[i].len) == 0)
        {
            *fp = 0;
            return NULL;
        }
    }

    return "must be \"on\" or \"off\"";
}


static char *
ngx_gdrive_parse_num(ngx_conf_t *cf, ngx_http_gdrive_main_conf_t *gmcf,
    ngx_str_t *args, ngx_uint_t n, void *field, void *post)
{
    ngx_uint_t  *np = field;

    ngx_int_t              v;
    ngx_gdrive_setting_t  *s = post;

    v = ngx_atoi(args[0].data, args[0].len);

    if (v == NGX_ERROR) {
        return "must be a number";
    }

    if (v < s->min || v > s->max) {
        return ngx_gdrive_range_error(cf, s, "");
    }

    *np = v;

    return NULL;
}


static char *
ngx_gdrive_range_error(ngx_conf_t *cf, ngx_gdrive_setting_t *s,
    const char *unit)
{
    u_char  *p;

    p = ngx_pnalloc(cf->pool, 96);
    if (p == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_sprintf(p, "must be from %i%s to %i%s%Z", s->min, unit, s->max, unit);

    return (char *) p;
}


static char *
ngx_gdrive_parse_msec(ngx_conf_t *cf, ngx_http_gdrive_main_conf_t *gmcf,
    ngx_str_t *args, ngx_uint_t n, void *field, void *post)
{
    ngx_msec_t  *mp = field;

    ngx_int_t              v;
    ngx_gdrive_setting_t  *s = post;

    v = ngx_parse_time(&args[0], 0);

    if (v == NGX_ERROR) {
        return "must be a time such as 500ms, 30s or 10m";
    }

    if (v < s->min || v > s->max) {
        return ngx_gdrive_range_error(cf, s, "ms");
    }

    *mp = (ngx_msec_t) v;

    return NULL;
}


static char *
ngx_gdrive_parse_sec(ngx_conf_t *cf, ngx_http_gdrive_main_conf_t *gmcf,
    ngx_str_t *args, ngx_uint_t n, void *field, void *post)
{
    time_t  *tp = field;

    ngx_int_t              v;
    ngx_gdrive_setting_t  *s = post;

    v = ngx_parse_time(&args[0], 1);

    if (v == NGX_ERROR) {
        return "must be a time such as 30s, 5m or 1h";
    }

    if (v < s->min || v > s->max) {
        return ngx_gdrive_range_error(cf, s, "s");
    }

    *tp = (time_t) v;

    return NULL;
}


static char *
ngx_gdrive_parse_size(ngx_conf_t *cf, ngx_http_gdrive_main_conf_t *gmcf,
    ngx_str_t *args, ngx_uint_t n, void *field, void *post)
{
    size_t  *sp = field;

    off_t  v;

    /* ngx_parse_offset(): k, m and g */
    v = ngx_parse_offset(&args[0]);

    if (v == NGX_ERROR || (uint64_t) v > NGX_MAX_SIZE_T_VALUE) {
        return "must be a size such as 512k, 8m or 1g";
    }

    *sp = (size_t) v;

    return NULL;
}


static char *
ngx_gdrive_parse_path(ngx_conf_t *cf, ngx_http_gdrive_main_conf_t *gmcf,
    ngx_str_t *args, ngx_uint_t n, void *field, void *post)
{
    ngx_str_t  *str = field;

    ngx_str_t        path;
    ngx_file_info_t  fi;

    if (args[0].len == 0) {
        return "must not be empty";
    }

    path = args[0];

    if (ngx_conf_full_name(cf->cycle, &path, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    if (ngx_file_info(path.data, &fi) == NGX_FILE_ERROR
        || !ngx_is_file(&fi))
    {
        return "no such file";
    }

    *str = path;

    return NULL;
}


/*
 * A service account's JSON key file, read once here: the private key is
 * kept by OpenSSL for the assertions, the file's bytes are wiped, and a
 * message names what is wrong with the file, never quoting the key.
 */

static char *
ngx_gdrive_parse_service_account(ngx_conf_t *cf,
    ngx_http_gdrive_main_conf_t *gmcf, ngx_str_t *args, ngx_uint_t n,
    void *field, void *post)
{
    ngx_str_t  *str = field;

    char                  err[160], *msg;
    u_char               *buf;
    ssize_t               size;
    ngx_str_t             path;
    ngx_file_t            file;
    ngx_file_info_t       fi;
    ngx_pool_cleanup_t   *cln;
    ngx_gdrive_jwt_key_t *key;

    if (ngx_gdrive_parse_path(cf, gmcf, args, n, &path, post) != NULL) {
        return "names no file";
    }

    ngx_memzero(&file, sizeof(ngx_file_t));
    file.name = path;
    file.log = cf->log;
    file.fd = ngx_open_file(path.data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);

    if (file.fd == NGX_INVALID_FILE) {
        return "names a file that cannot be opened";
    }

    size = -1;
    buf = NULL;

    if (ngx_fd_info(file.fd, &fi) != NGX_FILE_ERROR
        && ngx_file_size(&fi) > 0 && ngx_file_size(&fi) <= 65536)
    {
        buf = ngx_pnalloc(cf->temp_pool, ngx_file_size(&fi));

        if (buf) {
            size = ngx_read_file(&file, buf, ngx_file_size(&fi), 0);
        }
    }

    (void) ngx_close_file(file.fd);

    if (size <= 0) {
        return "names a file that is empty, larger than 64k, or unreadable";
    }

    key = ngx_gdrive_jwt_key_parse((char *) buf, size, err, sizeof(err));
    ngx_explicit_memzero(buf, size);

    if (key == NULL) {
        msg = ngx_pnalloc(cf->pool, sizeof("names a key file, but ") - 1
                                    + ngx_strlen(err) + 1);
        if (msg == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_sprintf((u_char *) msg, "names a key file, but %s%Z", err);
        return msg;
    }

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        ngx_gdrive_jwt_key_free(key);
        return NGX_CONF_ERROR;
    }

    cln->handler = ngx_gdrive_service_account_cleanup;
    cln->data = key;

    gmcf->google_sa_key = key;
    *str = path;

    return NULL;
}


static void
ngx_gdrive_service_account_cleanup(void *data)
{
    ngx_gdrive_jwt_key_free(data);
}


/* OAuth scopes: space-separated URLs, as the assertion's claim has them */

static char *
ngx_gdrive_parse_scope(ngx_conf_t *cf, ngx_http_gdrive_main_conf_t *gmcf,
    ngx_str_t *args, ngx_uint_t n, void *field, void *post)
{
    ngx_str_t  *str = field;

    ngx_uint_t  i;

    if (args[0].len == 0 || args[0].len > 1024) {
        return "must be 1 to 1024 characters long";
    }

    for (i = 0; i < args[0].len; i++) {
        if (args[0].data[i] < 0x20 || args[0].data[i] >= 0x7f
            || args[0].data[i] == '"' || args[0].data[i] == '\\')
        {
            return "must be printable ASCII without quotes";
        }
    }

    *str = args[0];

    return NULL;
}


/* STS's RoleSessionName: 2 to 64 of [A-Za-z0-9_+=,.@-] */

static char *
ngx_gdrive_parse_session_name(ngx_conf_t *cf,
    ngx_http_gdrive_main_conf_t *gmcf, ngx_str_t *args, ngx_uint_t n,
    void *field, void *post)
{
    ngx_str_t  *str = field;

    u_char  *p;

    if (args[0].len < 2 || args[0].len > 64) {
        return "must have 2 to 64 characters";
    }

    for (p = args[0].data; p < args[0].data + args[0].len; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')
              || (*p >= '0' && *p <= '9')
              || (*p != '\0' && ngx_strchr("_+=,.@-", *p) != NULL)))
        {
            return "may have only letters, digits and _+=,.@-";
        }
    }

    *str = args[0];

    return NULL;
}


static char *
ngx_gdrive_parse_region(ngx_conf_t *cf, ngx_http_gdrive_main_conf_t *gmcf,
    ngx_str_t *args, ngx_uint_t n, void *field, void *post)
{
    ngx_str_t  *str = field;

    u_char      c;
    ngx_uint_t  i;

    if (args[0].len == 0 || args[0].len > 64) {
        return "must be 1 to 64 characters long";
    }

    for (i = 0; i < args[0].len; i++) {
        c = args[0].data[i];

        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) {
            return "a region has only lowercase letters, digits and '-'";
        }
    }

    *str = args[0];

    return NULL;
}


static char *
ngx_gdrive_parse_bucket(ngx_conf_t *cf, ngx_http_gdrive_main_conf_t *gmcf,
    ngx_str_t *args, ngx_uint_t n, void *field, void *post)
{
    ngx_str_t  *str = field;

    u_char      c;
    ngx_uint_t  i;

    /* S3's bucket naming rules (the ones that matter for URLs) */

    if (args[0].len < 3 || args[0].len > 63) {
        return "a bucket name is 3 to 63 characters long";
    }

    for (i = 0; i < args[0].len; i++) {
        c = args[0].data[i];

        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')
              || c == '-' || c == '.'))
        {
            return "a bucket name has only lowercase letters, digits, "
                   "'.' and '-'";
        }
    }

    c = args[0].data[0];

    if (c == '-' || c == '.') {
        return "a bucket name starts with a letter or digit";
    }

    c = args[0].data[args[0].len - 1];

    if (c == '-' || c == '.') {
        return "a bucket name ends with a letter or digit";
    }

    *str = args[0];

    return NULL;
}


static char *
ngx_gdrive_parse_prefix(ngx_conf_t *cf, ngx_http_gdrive_main_conf_t *gmcf,
    ngx_str_t *args, ngx_uint_t n, void *field, void *post)
{
    ngx_str_t  *str = field;

    u_char      c;
    ngx_uint_t  i;

    if (args[0].len > 512) {
        return "a key prefix is at most 512 characters long";
    }

    if (args[0].len && args[0].data[0] == '/') {
        return "a key prefix must not start with '/'";
    }

    /* characters that need no escaping in an S3 key */

    for (i = 0; i < args[0].len; i++) {
        c = args[0].data[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
              || (c >= '0' && c <= '9') || c == '/' || c == '-' || c == '_'
              || c == '.' || c == '=' || c == '!'))
        {
            return "only letters, digits and \"/-_.=!\" are allowed";
        }
    }

    *str = args[0];

    return NULL;
}


/*
 * An instance's name: a host name's characters, as long as one may be;
 * it names the instance in metrics labels, Kafka's client.id and the
 * results' and dead letters' "name/pid".
 */

static char *
ngx_gdrive_parse_instance(ngx_conf_t *cf, ngx_http_gdrive_main_conf_t *gmcf,
    ngx_str_t *args, ngx_uint_t n, void *field, void *post)
{
    ngx_str_t  *str = field;

    u_char      c;
    ngx_uint_t  i;

    if (args[0].len == 0 || args[0].len >= NGX_MAXHOSTNAMELEN) {
        return "must be from 1 to 255 characters";
    }

    for (i = 0; i < args[0].len; i++) {
        c = args[0].data[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
              || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.'))
        {
            return "only letters, digits and \"-_.\" are allowed";
        }
    }

    *str = args[0];

    return NULL;
}


/*
 * "10r/s", "600r/m" or a plain number of requests per second, then
 * burst=N; the global limit also takes scope=host (the default: this
 * instance's budget) or scope=fleet (a share of it, by partitions held).
 */

static char *
ngx_gdrive_parse_rate(ngx_conf_t *cf, ngx_http_gdrive_main_conf_t *gmcf,
    ngx_str_t *args, ngx_uint_t n, void *field, void *post)
{
    ngx_gdrive_setting_t  *s = post;
    ngx_uint_t            *rate = field;  /* burst, and scope if global */

    u_char      *msg;
    size_t       len;
    ngx_int_t    r, scale, burst;
    ngx_str_t    v;
    ngx_uint_t   i, scope;

    len = args[0].len;
    scale = 1;

    if (len > 3 && ngx_strncmp(args[0].data + len - 3, "r/s", 3) == 0) {
        len -= 3;

    } else if (len > 3 && ngx_strncmp(args[0].data + len - 3, "r/m", 3) == 0)
    {
        len -= 3;
        scale = 60;
    }

    r = ngx_atoi(args[0].data, len);

    if (r <= 0) {
        return "must be a rate such as 10r/s or 600r/m";
    }

    rate[0] = r * 1000 / scale;

    if (rate[0] == 0) {
        return "rate is below 1 request per 1000 seconds";
    }

    /* by default a burst of one second's worth, at least one request */
    burst = (r + scale - 1) / scale;
    scope = NGX_GDRIVE_SCOPE_HOST;

    for (i = 1; i < n; i++) {

        if (ngx_gdrive_param(&args[i], "burst=", &v) == NGX_OK) {
            burst = ngx_atoi(v.data, v.len);

            if (burst == NGX_ERROR) {
                return "burst= must be a number";
            }

            continue;
        }

        if (s->id == NGX_GDRIVE_S_GLOBAL_RATE_LIMIT
            && ngx_gdrive_param(&args[i], "scope=", &v) == NGX_OK)
        {
            if (v.len == 4 && ngx_strncmp(v.data, "host", 4) == 0) {
                scope = NGX_GDRIVE_SCOPE_HOST;
                continue;
            }

            if (v.len == 5 && ngx_strncmp(v.data, "fleet", 5) == 0) {
                scope = NGX_GDRIVE_SCOPE_FLEET;
                continue;
            }

            msg = ngx_pnalloc(cf->pool, v.len + 64);
            if (msg == NULL) {
                return NGX_CONF_ERROR;
            }

            *ngx_snprintf(msg, v.len + 63,
                          "scope=\"%V\" must be \"host\" or \"fleet\"", &v)
                = '\0';

            return (char *) msg;
        }

        return (s->id == NGX_GDRIVE_S_GLOBAL_RATE_LIMIT)
               ? "expected burst=N or scope=host|fleet after the rate"
               : "expected burst=N after the rate";
    }

    rate[1] = burst;

    if (s->id == NGX_GDRIVE_S_GLOBAL_RATE_LIMIT) {
        rate[2] = scope;
    }

    return NULL;
}


static char *
ngx_gdrive_parse_connections(ngx_conf_t *cf,
    ngx_http_gdrive_main_conf_t *gmcf, ngx_str_t *args, ngx_uint_t n,
    void *field, void *post)
{
    ngx_uint_t  *conns = field;    /* followed by the per host limit */

    ngx_int_t              total, per_host;
    ngx_str_t              v;
    ngx_gdrive_setting_t  *s = post;

    total = ngx_atoi(args[0].data, args[0].len);

    if (total == NGX_ERROR) {
        return "must be a number of connections";
    }

    if (total < s->min || total > s->max) {
        return ngx_gdrive_range_error(cf, s, "");
    }

    /* the guide's pool: 100 in all, 30 per host */
    per_host = ngx_min(total, 30);

    if (n == 2) {
        if (ngx_gdrive_param(&args[1], "per_host=", &v) != NGX_OK) {
            return "expected per_host=N after the number";
        }

        per_host = ngx_atoi(v.data, v.len);

        if (per_host < 1 || per_host > total) {
            return "per_host= must be from 1 to the total";
        }
    }

    conns[0] = total;
    conns[1] = per_host;

    return NULL;
}


static char *
ngx_gdrive_parse_retry(ngx_conf_t *cf, ngx_http_gdrive_main_conf_t *gmcf,
    ngx_str_t *args, ngx_uint_t n, void *field, void *post)
{
    ngx_int_t   v;
    ngx_str_t   value;
    ngx_uint_t  i;

    /* defaults first so that any parameter may be left out */
    gmcf->retry_attempts = 5;
    gmcf->retry_base = 1000;
    gmcf->retry_max = 32000;

    for (i = 0; i < n; i++) {

        if (ngx_gdrive_param(&args[i], "attempts=", &value) == NGX_OK) {
            v = ngx_atoi(value.data, value.len);

            if (v < 1 || v > 100) {
                return "attempts= must be from 1 to 100";
            }

            gmcf->retry_attempts = v;
            continue;
        }

        if (ngx_gdrive_param(&args[i], "base=", &value) == NGX_OK) {
            v = ngx_parse_time(&value, 0);

            if (v == NGX_ERROR || v < 1 || v > 3600000) {
                return "base= must be a time from 1ms to 1h";
            }

            gmcf->retry_base = v;
            continue;
        }

        if (ngx_gdrive_param(&args[i], "max=", &value) == NGX_OK) {
            v = ngx_parse_time(&value, 0);

            if (v == NGX_ERROR || v < 1 || v > 3600000) {
                return "max= must be a time from 1ms to 1h";
            }

            gmcf->retry_max = v;
            continue;
        }

        return "expected attempts=N, base=time or max=time";
    }

    return NULL;
}


static char *
ngx_gdrive_parse_metadata_cache(ngx_conf_t *cf,
    ngx_http_gdrive_main_conf_t *gmcf, ngx_str_t *args, ngx_uint_t n,
    void *field, void *post)
{
    ngx_int_t  v;
    ngx_str_t  value;

    v = ngx_atoi(args[0].data, args[0].len);

    if (v == NGX_ERROR || v > 10000000) {
        return "must be a number of entries from 0 (off) to 10000000";
    }

    gmcf->metadata_cache_entries = v;
    gmcf->metadata_cache_ttl = 3600;

    if (n == 2) {
        if (ngx_gdrive_param(&args[1], "ttl=", &value) != NGX_OK) {
            return "expected ttl=time after the number of entries";
        }

        v = ngx_parse_time(&value, 1);

        if (v == NGX_ERROR || v < 1) {
            return "ttl= must be a time such as 10m or 1h";
        }

        gmcf->metadata_cache_ttl = v;
    }

    return NULL;
}


static char *
ngx_gdrive_parse_stream_buffers(ngx_conf_t *cf,
    ngx_http_gdrive_main_conf_t *gmcf, ngx_str_t *args, ngx_uint_t n,
    void *field, void *post)
{
    ngx_bufs_t  *bufs = field;

    ssize_t    size;
    ngx_int_t  num;

    if (n != 2) {
        return "expected a number and a size, such as \"4 8m\"";
    }

    num = ngx_atoi(args[0].data, args[0].len);

    if (num < 2 || num > 64) {
        return "the number of buffers must be from 2 to 64 "
               "(one fills while another uploads)";
    }

    size = ngx_parse_size(&args[1]);

    if (size == NGX_ERROR) {
        return "the buffer size must be a size such as 8m";
    }

    /* a buffer is one multipart part: S3 wants 5 MiB..5 GiB per part */
    if (size < 5 * 1024 * 1024 || size > 1024 * 1024 * 1024) {
        return "the buffer size (one S3 part) must be from 5m to 1g";
    }

    bufs->num = num;
    bufs->size = size;

    return NULL;
}


static ngx_int_t
ngx_gdrive_param(ngx_str_t *arg, char *name, ngx_str_t *v)
{
    size_t  len;

    len = ngx_strlen(name);

    if (arg->len < len || ngx_strncmp(arg->data, name, len) != 0) {
        return NGX_DECLINED;
    }

    v->data = arg->data + len;
    v->len = arg->len - len;

    return NGX_OK;
}


/* "80%", "80" or "0.5%": kept in hundredths of a percent */

static char *
ngx_gdrive_parse_percent(ngx_conf_t *cf, ngx_http_gdrive_main_conf_t *gmcf,
    ngx_str_t *args, ngx_uint_t n, void *field, void *post)
{
    ngx_uint_t  *np = field;

    size_t                 len;
    ngx_int_t              v;
    ngx_gdrive_setting_t  *s = post;

    len = args[0].len;

    if (len && args[0].data[len - 1] == '%') {
        len--;
    }

    v = ngx_atofp(args[0].data, len, 2);

    if (v == NGX_ERROR) {
        return "must be a percentage such as 80% or 0.5%";
    }

    if (v < s->min || v > s->max) {
        return "must be a percentage from 0.01% to 100%";
    }

    *np = v;

    return NULL;
}


ngx_uint_t
ngx_gdrive_integration_allowed(ngx_http_gdrive_main_conf_t *gmcf,
    const char *id, size_t len)
{
    ngx_str_t   *allowed;
    ngx_uint_t   i;

    if (gmcf->integrations == NULL) {
        return 1;
    }

    allowed = gmcf->integrations->elts;

    for (i = 0; i < gmcf->integrations->nelts; i++) {
        if (allowed[i].len == len
            && ngx_strncmp(allowed[i].data, id, len) == 0)
        {
            return 1;
        }
    }

    return 0;
}
