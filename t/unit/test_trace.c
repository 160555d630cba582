/* unit tests of W3C Trace Context (src/ngx_gdrive_trace.c) */

#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ngx_gdrive_trace.h"
#include "tap.h"


static int
parses(const char *s)
{
    ngx_gdrive_trace_t  t;

    return ngx_gdrive_traceparent_parse(&t, (const unsigned char *) s,
                                        strlen(s)) == 0;
}


static int
cmp16(const void *a, const void *b)
{
    return memcmp(a, b, 16);
}


/* the random bytes' pool: no repeats over many refills, none across fork */

static void
pool(void)
{
    int             i, dup, fds[2], status;
    pid_t           pid;
    unsigned char  *ids, big[5000], mine[16], child[16];

    enum { N = 4096 };

    ids = malloc(N * 16);
    for (i = 0; i < N; i++) {
        if (ngx_gdrive_random_bytes(ids + i * 16, 16) != 0) {
            break;
        }
    }
    ok(i == N, "%d draws of 16 bytes, 16 refills of the pool", N);

    qsort(ids, N, 16, cmp16);
    for (dup = 0, i = 1; i < N; i++) {
        dup += memcmp(ids + (i - 1) * 16, ids + i * 16, 16) == 0;
    }
    ok(dup == 0, "none of them twice");
    free(ids);

    memset(big, 0, sizeof(big));
    ok(ngx_gdrive_random_bytes(big, sizeof(big)) == 0
       && memcmp(big, big + 2500, 2500) != 0,
       "more than a pool at once");

    /* a pool partly drawn: a child must not hand out what is left */
    ngx_gdrive_random_forget();
    ngx_gdrive_random_bytes(mine, sizeof(mine));

    if (pipe(fds) != 0 || (pid = fork()) < 0) {
        ok(0, "pipe and fork");
        return;
    }

    if (pid == 0) {
        close(fds[0]);
        ngx_gdrive_random_bytes(child, sizeof(child));
        _exit(write(fds[1], child, sizeof(child)) == sizeof(child) ? 0 : 1);
    }

    close(fds[1]);
    ngx_gdrive_random_bytes(mine, sizeof(mine));
    ok(read(fds[0], child, sizeof(child)) == sizeof(child)
       && waitpid(pid, &status, 0) == pid && status == 0,
       "a child process draws");
    close(fds[0]);
    ok(memcmp(mine, child, sizeof(mine)) != 0,
       "a child's bytes are not its parent's");

    ngx_gdrive_random_forget();
    ok(ngx_gdrive_random_bytes(mine, sizeof(mine)) == 0,
       "the pool is refilled after it was forgotten");
}


int
main(void)
{
    int                  i, differ;
    char                 buf[NGX_GDRIVE_TRACEPARENT_LEN + 1];
    char                 id[NGX_GDRIVE_TRACE_ID_LEN + 1], id2[33];
    ngx_gdrive_trace_t   t, u;

    static const char  *good =
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    static const char  *bad[] = {
        "",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-011",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0G",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7 01",
        "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
        " 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        NULL
    };

    ok(parses(good), "a version 00 traceparent parses");

    ngx_gdrive_traceparent_parse(&t, (const unsigned char *) good,
                                 strlen(good));
    ngx_gdrive_traceparent_print(&t, t.parent_id, buf);
    ok(strcmp(buf, good) == 0, "and prints as it came: %s", buf);

    ngx_gdrive_trace_id_print(&t, id);
    ok(strcmp(id, "4bf92f3577b34da6a3ce929d0e0e4736") == 0,
       "its trace id in hex");
    ok(t.flags == 1, "its flags");

    for (i = 0; bad[i]; i++) {
        ok(!parses(bad[i]), "invalid: \"%s\"", bad[i]);
    }

    ok(ngx_gdrive_traceparent_parse(&t, NULL, 0) != 0, "no value: invalid");

    ok(parses("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09"),
       "a later version of 55 characters parses");
    ok(parses("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09-x-y"),
       "a later version with more fields parses by its first four");

    ngx_gdrive_traceparent_parse(&t,
        (const unsigned char *)
        "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09-x", 57);
    ngx_gdrive_traceparent_print(&t, t.parent_id, buf);
    ok(strcmp(buf, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
       == 0, "and is carried on as version 00, the sampled bit kept: %s",
       buf);

    ok(ngx_gdrive_tracestate_valid((const unsigned char *) "ro=1,cv=x", 9),
       "a tracestate is valid");
    ok(!ngx_gdrive_tracestate_valid((const unsigned char *) "a\nb", 3),
       "a control character is not");
    ok(!ngx_gdrive_tracestate_valid((const unsigned char *) "", 0),
       "nor an empty one");

    {
        unsigned char  big[NGX_GDRIVE_TRACESTATE_MAX + 1];

        memset(big, 'a', sizeof(big));
        ok(ngx_gdrive_tracestate_valid(big, NGX_GDRIVE_TRACESTATE_MAX),
           "512 bytes are valid");
        ok(!ngx_gdrive_tracestate_valid(big, sizeof(big)),
           "513 are not");
    }

    ngx_gdrive_trace_start(&t);
    ngx_gdrive_trace_span(&t);
    ngx_gdrive_traceparent_print(&t, t.span_id, buf);
    ok(parses(buf), "a trace started here is valid: %s", buf);
    ok(t.flags == NGX_GDRIVE_TRACE_SAMPLED && t.state_len == 0,
       "sampled, without a tracestate");

    ngx_gdrive_trace_start(&u);
    ngx_gdrive_trace_id_print(&t, id);
    ngx_gdrive_trace_id_print(&u, id2);
    ok(strcmp(id, id2) != 0, "two traces have two ids");

    differ = memcmp(t.span_id, t.parent_id, 8) != 0;
    ngx_gdrive_traceparent_print(&t, t.parent_id, buf);
    ok(differ && parses(buf), "a span has an id of its own");

    /* a record without a trace: the same ids at every delivery */
    ngx_gdrive_trace_derive(&t, (const unsigned char *) "t/3/1041", 8);
    ngx_gdrive_trace_derive(&u, (const unsigned char *) "t/3/1041", 8);
    ngx_gdrive_trace_id_print(&t, id);
    ngx_gdrive_trace_id_print(&u, id2);
    ok(strcmp(id, id2) == 0
       && memcmp(t.parent_id, u.parent_id, 8) == 0,
       "a record's derived trace is the same each time: %s", id);
    ngx_gdrive_traceparent_print(&t, t.parent_id, buf);
    ok(parses(buf), "and valid");
    ngx_gdrive_trace_derive(&u, (const unsigned char *) "t/3/1042", 8);
    ngx_gdrive_trace_id_print(&u, id2);
    ok(strcmp(id, id2) != 0, "the next record has another");

    pool();

    return done_testing();
}
