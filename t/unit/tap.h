/* a few lines of TAP for the C unit tests */

#ifndef _TAP_H_INCLUDED_
#define _TAP_H_INCLUDED_

#include <stdio.h>

static int  tap_n, tap_failed;

#define ok(cond, ...)                                                         \
    do {                                                                      \
        int tap_c = (cond);                                                   \
        tap_n++;                                                              \
        if (!tap_c) {                                                         \
            tap_failed++;                                                     \
        }                                                                     \
        printf("%sok %d - ", tap_c ? "" : "not ", tap_n);                     \
        printf(__VA_ARGS__);                                                  \
        printf("\n");                                                         \
        if (!tap_c) {                                                         \
            printf("#   at %s line %d\n", __FILE__, __LINE__);                \
        }                                                                     \
    } while (0)

#define done_testing()                                                        \
    (printf("1..%d\n", tap_n), tap_failed ? 1 : 0)

#endif
