/* fuzz_common.h - helpers shared by the libFuzzer harnesses in fuzz/ (all
 * static, so each harness is one translation unit; tests/test_fuzz_regressions.c
 * includes every harness into one file with S2S_FUZZ_NO_MAIN defined).
 *
 *   fz_file f;                       once: a memfd (or a temp file) with a path
 *   fz_file_open(&f, "st");          that the library can open() and mmap()
 *   fz_file_set(&f, data, size);     each run: the file now holds exactly data
 *   s2s_st_open(f.path, ...);
 *
 * FZ_CHECK(cond) is a property check: a failure prints the condition and
 * aborts, which libFuzzer reports as a crash (and a test as a failure). */
#ifndef S2S_FUZZ_COMMON_H
#define S2S_FUZZ_COMMON_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define FZ_CHECK(c)                                                                  \
    do {                                                                             \
        if (!(c)) {                                                                  \
            fprintf(stderr, "fuzz: property failed: %s:%d: %s\n", __FILE__, __LINE__, #c); \
            abort();                                                                 \
        }                                                                            \
    } while (0)

typedef struct {
    int fd;
    char path[256];
} fz_file;

static inline void fz_file_open(fz_file *f, const char *tag) {
    f->fd = memfd_create(tag, MFD_CLOEXEC);
    if (f->fd >= 0) {
        snprintf(f->path, sizeof f->path, "/proc/self/fd/%d", f->fd);
        if (access(f->path, R_OK) == 0) return;
        close(f->fd); /* no /proc: fall back to a temp file */
    }
    const char *dir = getenv("TMPDIR");
    snprintf(f->path, sizeof f->path, "%s/s2s-fuzz-%s-XXXXXX", dir && *dir ? dir : "/tmp", tag);
    f->fd = mkstemp(f->path);
    if (f->fd < 0) { perror("fuzz: mkstemp"); abort(); }
}

/* The file holds exactly data[0..n). */
static inline void fz_file_set(fz_file *f, const uint8_t *data, size_t n) {
    if (ftruncate(f->fd, 0) != 0) { perror("fuzz: ftruncate"); abort(); }
    size_t off = 0;
    while (off < n) {
        ssize_t k = pwrite(f->fd, data + off, n - off, (off_t)off);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) { perror("fuzz: pwrite"); abort(); }
        off += (size_t)k;
    }
}

/* Malloc'd NUL-terminated copy of data[0..n). */
static inline char *fz_strndup(const uint8_t *data, size_t n) {
    char *s = malloc(n + 1);
    if (!s) abort();
    if (n) memcpy(s, data, n);
    s[n] = '\0';
    return s;
}

/* FNV-1a 64, the checksum of tokenizer blobs (tokenizer.c) */
static inline uint64_t fz_fnv1a(const void *p, size_t n) {
    const unsigned char *b = p;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

/* If blob[0..n) ends with a line "end <16 chars>\n", rewrite those 16 chars
 * to the correct checksum of everything before the line, so that mutations of
 * a tokenizer blob get past the checksum to the parser. Returns 1 if it did. */
static inline int fz_fix_tok_checksum(char *blob, size_t n) {
    if (n < 21 || blob[n - 1] != '\n') return 0;
    size_t last = n - 21;
    if ((last > 0 && blob[last - 1] != '\n') || memcmp(blob + last, "end ", 4) != 0) return 0;
    char hex[17];
    snprintf(hex, sizeof hex, "%016llx", (unsigned long long)fz_fnv1a(blob, last));
    memcpy(blob + last + 4, hex, 16);
    return 1;
}

#endif
