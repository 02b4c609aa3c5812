/* io.h - reading text files and streams as arrays of lines. */
#ifndef S2S_IO_H
#define S2S_IO_H

#include <stddef.h>
#include <stdio.h>

/* Read all lines of a file (path "-" = stdin). Strips "\n" and "\r\n".
 * Returns a malloc'd array of malloc'd strings, or NULL + message (missing
 * file, read error, NUL byte in a line). An empty file gives *n = 0 and a
 * non-NULL array. */
char **s2s_read_lines(const char *path, size_t *n, char *err, size_t errlen);
/* Read up to max lines from f (max <= 0: all). *eof is set at end of input. */
char **s2s_read_lines_from(FILE *f, const char *name, size_t max, size_t *n, int *eof,
                           char *err, size_t errlen);
void s2s_free_lines(char **lines, size_t n);

#endif
