/*
 * libFuzzer target: the trigger validator must never crash or leak, and
 * its JSON grammar must agree with jansson's: what it accepts as a
 * trigger jansson parses, and what it calls "not valid JSON" jansson
 * refuses too.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "ngx_gdrive_message.h"


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int                     batch, ours;
    size_t                  n;
    json_t                 *j;
    json_error_t            jerr;
    ngx_gdrive_trigger_t   *t, one;
    ngx_gdrive_msg_error_t  err;

    if (ngx_gdrive_trigger_parse_body(data, size, 100, &t, &n, &batch, &err)
        == 0)
    {
        ngx_gdrive_triggers_free(t, n);
    }

    ours = ngx_gdrive_trigger_parse(data, size, 1, &one, &err);

    if (ours == 0) {
        ngx_gdrive_trigger_free(&one);
    }

    j = json_loadb((const char *) data, size, JSON_DECODE_ANY, &jerr);

    if (ours == 0 && j == NULL
        && strstr(jerr.text, "too big") == NULL
        && strstr(jerr.text, "overflow") == NULL)
    {
        abort();    /* accepted what is not JSON */
    }

    /* jansson lets a NUL byte pass after a number: ours is the stricter */

    if (ours != 0 && j != NULL
        && strncmp(err.detail, "not valid JSON", 14) == 0
        && memchr(data, '\0', size) == NULL)
    {
        abort();    /* refused valid JSON as invalid */
    }

    json_decref(j);

    return 0;
}
