/* libFuzzer target: the trigger validator must never crash or leak */

#include <stdint.h>
#include <stddef.h>

#include "ngx_gdrive_message.h"


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int                     batch;
    size_t                  n;
    ngx_gdrive_trigger_t   *t, one;
    ngx_gdrive_msg_error_t  err;

    if (ngx_gdrive_trigger_parse_body(data, size, 100, &t, &n, &batch, &err)
        == 0)
    {
        ngx_gdrive_triggers_free(t, n);
    }

    if (ngx_gdrive_trigger_parse(data, size, 1, &one, &err) == 0) {
        ngx_gdrive_trigger_free(&one);
    }

    return 0;
}
