/* io.c - line reading (see io.h). */
#include "io.h"

#include <errno.h>
#include <string.h>

#include "common.h"

char **s2s_read_lines_from(FILE *f, const char *name, size_t max, size_t *n, int *eof,
                           char *err, size_t errlen) {
    size_t cap = 64, cnt = 0;
    char **v = s2s_xmalloc(cap * sizeof *v);
    char *line = NULL;
    size_t lcap = 0;
    ssize_t len;
    *eof = 0;
    while (max == 0 || cnt < max) {
        errno = 0;
        len = getline(&line, &lcap, f);
        if (len < 0) {
            if (ferror(f)) {
                s2s_errf(err, errlen, "%s: read error: %s", name, strerror(errno ? errno : EIO));
                free(line);
                s2s_free_lines(v, cnt);
                return NULL;
            }
            *eof = 1;
            break;
        }
        if (memchr(line, '\0', (size_t)len)) {
            s2s_errf(err, errlen, "%s: line %zu contains a NUL byte", name, cnt + 1);
            free(line);
            s2s_free_lines(v, cnt);
            return NULL;
        }
        if (len > 0 && line[len - 1] == '\n') line[--len] = '\0';
        if (len > 0 && line[len - 1] == '\r') line[--len] = '\0';
        if (cnt == cap) { cap *= 2; v = s2s_xrealloc(v, cap * sizeof *v); }
        v[cnt++] = s2s_xstrdup(line);
    }
    free(line);
    *n = cnt;
    return v;
}

char **s2s_read_lines(const char *path, size_t *n, char *err, size_t errlen) {
    int is_stdin = strcmp(path, "-") == 0;
    FILE *f = is_stdin ? stdin : fopen(path, "rb");
    if (!f) { s2s_errf(err, errlen, "cannot open %s: %s", path, strerror(errno)); return NULL; }
    int eof;
    char **v = s2s_read_lines_from(f, is_stdin ? "<stdin>" : path, 0, n, &eof, err, errlen);
    if (!is_stdin) fclose(f);
    return v;
}

void s2s_free_lines(char **lines, size_t n) {
    if (!lines) return;
    for (size_t i = 0; i < n; i++) free(lines[i]);
    free(lines);
}
