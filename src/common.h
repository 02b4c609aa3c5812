/* common.h - internal helpers shared by every s2s source file.
 *
 * Two tiers of errors (shared/STYLE.md): internal invariants use S2S_ASSERT,
 * which aborts with file:line; public functions return a status or NULL and
 * leave a one-line message in a caller-supplied buffer via s2s_errf().
 * Never exit() inside the library. */
#ifndef S2S_COMMON_H
#define S2S_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define S2S_ASSERT(c)                                                          \
    do {                                                                       \
        if (!(c)) {                                                            \
            fprintf(stderr, "s2s: internal error: %s:%d: %s\n", __FILE__,      \
                    __LINE__, #c);                                             \
            abort();                                                           \
        }                                                                      \
    } while (0)

/* Write a printf-style one-line message into err[errlen] (if err != NULL). */
void s2s_errf(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Allocation that aborts with file:line on failure (out of memory is an invariant). */
void *s2s_xmalloc_(size_t n, const char *file, int line);
void *s2s_xcalloc_(size_t n, size_t sz, const char *file, int line);
void *s2s_xrealloc_(void *p, size_t n, const char *file, int line);
#define s2s_xmalloc(n) s2s_xmalloc_((n), __FILE__, __LINE__)
#define s2s_xcalloc(n, s) s2s_xcalloc_((n), (s), __FILE__, __LINE__)
#define s2s_xrealloc(p, n) s2s_xrealloc_((p), (n), __FILE__, __LINE__)
char *s2s_xstrdup(const char *s);

/* Monotonic wall clock in seconds. */
double s2s_now(void);

/* Deterministic RNG (xorshift64*), state is one uint64_t so it can be checkpointed. */
uint64_t s2s_rng_next(uint64_t *state);
float s2s_rng_uniform(uint64_t *state);           /* [0, 1) */
float s2s_rng_normal(uint64_t *state);            /* N(0, 1) */

/* Atomic file write: writes data to "<path>.tmp.<pid>", fsyncs, renames over path.
 * Returns 0 on success, -1 with a message in err. */
int s2s_write_file_atomic(const char *path, const void *data, size_t n, char *err,
                          size_t errlen);
/* fsync the directory holding path, so a rename into it is durable (best effort). */
void s2s_fsync_parent(const char *path);

#endif
