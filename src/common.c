/* common.c - error messages, checked allocation, clock, RNG, atomic file writes. */
#define _POSIX_C_SOURCE 200809L
#include "common.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <math.h>
#include <stdarg.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

void s2s_errf(char *err, size_t errlen, const char *fmt, ...) {
    if (!err || errlen == 0) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    for (char *p = err; *p; p++) if (*p == '\n') *p = ' '; /* one line */
}

void *s2s_xmalloc_(size_t n, const char *file, int line) {
    void *p = malloc(n ? n : 1);
    if (!p) { fprintf(stderr, "s2s: out of memory (%zu bytes) at %s:%d\n", n, file, line); abort(); }
    return p;
}
void *s2s_xcalloc_(size_t n, size_t sz, const char *file, int line) {
    void *p = calloc(n ? n : 1, sz ? sz : 1);
    if (!p) { fprintf(stderr, "s2s: out of memory (%zu x %zu bytes) at %s:%d\n", n, sz, file, line); abort(); }
    return p;
}
void *s2s_xrealloc_(void *q, size_t n, const char *file, int line) {
    void *p = realloc(q, n ? n : 1);
    if (!p) { fprintf(stderr, "s2s: out of memory (%zu bytes) at %s:%d\n", n, file, line); abort(); }
    return p;
}
char *s2s_xstrdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *p = s2s_xmalloc(n);
    memcpy(p, s, n);
    return p;
}

double s2s_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

uint64_t s2s_rng_next(uint64_t *s) {
    uint64_t x = *s ? *s : 0x9E3779B97F4A7C15ull;
    x ^= x >> 12; x ^= x << 25; x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1Dull;
}
float s2s_rng_uniform(uint64_t *s) { return (float)(s2s_rng_next(s) >> 40) / 16777216.0f; }
float s2s_rng_normal(uint64_t *s) {
    float u1 = s2s_rng_uniform(s), u2 = s2s_rng_uniform(s);
    if (u1 < 1e-7f) u1 = 1e-7f;
    return sqrtf(-2.0f * logf(u1)) * cosf(6.2831853071795864f * u2);
}

int s2s_write_file_atomic(const char *path, const void *data, size_t n, char *err, size_t errlen) {
    size_t L = strlen(path) + 32;
    char *tmp = s2s_xmalloc(L);
    snprintf(tmp, L, "%s.tmp.%ld", path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) { s2s_errf(err, errlen, "cannot write %s: %s", path, strerror(errno)); free(tmp); return -1; }
    const char *p = data;
    size_t left = n;
    while (left > 0) {
        ssize_t w = write(fd, p, left);
        if (w < 0) {
            if (errno == EINTR) continue;
            s2s_errf(err, errlen, "cannot write %s: %s", path, strerror(errno));
            close(fd); unlink(tmp); free(tmp); return -1;
        }
        p += w; left -= (size_t)w;
    }
    if (fsync(fd) != 0 || close(fd) != 0) {
        s2s_errf(err, errlen, "cannot write %s: %s", path, strerror(errno));
        unlink(tmp); free(tmp); return -1;
    }
    if (rename(tmp, path) != 0) {
        s2s_errf(err, errlen, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
        unlink(tmp); free(tmp); return -1;
    }
    s2s_fsync_parent(path);
    free(tmp);
    return 0;
}

void s2s_fsync_parent(const char *path) {
    char *copy = s2s_xstrdup(path);
    int dfd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) { (void)fsync(dfd); close(dfd); }
    free(copy);
}
