/* json.h - a small strict JSON reader (RFC 8259) and a growable string buffer
 * for writing JSON.
 *
 * Used by the safetensors reader (the file header is JSON) and by the model
 * code to read and write config JSON. The parser is strict: one value with
 * optional surrounding whitespace, no comments, no trailing commas, no NaN,
 * strings must be valid UTF-8, escapes are decoded (\uXXXX and surrogate pairs
 * become UTF-8; lone surrogates are rejected), nesting is limited to
 * S2S_JSON_MAX_DEPTH, and it never reads past the given length (the text need
 * not be NUL-terminated).
 *
 * Reading:
 *     char err[256];
 *     s2s_json *root = s2s_json_parse(text, len, err, sizeof err);
 *     if (!root) { fprintf(stderr, "config.json: %s\n", err); return -1; }
 *     int64_t d;
 *     if (s2s_json_int64(s2s_json_get(root, "d_model"), &d) != 0) ...;
 *     const char *act = s2s_json_str(s2s_json_get(root, "activation")); // NULL if absent
 *     for (size_t i = 0; i < s2s_json_len(root); i++)
 *         printf("%s\n", s2s_json_key_at(root, i));
 *     s2s_json_free(root);
 * Getters accept NULL (and wrong types) and return a neutral value, so lookups
 * can be chained: s2s_json_get(s2s_json_get(root, "model"), "layers").
 *
 * Writing:
 *     s2s_strbuf b; s2s_strbuf_init(&b);
 *     s2s_strbuf_puts(&b, "{\"name\":");
 *     s2s_json_escape(&b, name, strlen(name));          // appends "\"...\""
 *     s2s_strbuf_appendf(&b, ",\"d_model\":%d}", d);
 *     s2s_write_file_atomic(path, b.s, b.len, err, errlen);
 *     s2s_strbuf_free(&b);
 * Buffer growth uses s2s_xrealloc (out of memory aborts, like every allocation
 * in s2s). */
#ifndef S2S_JSON_H
#define S2S_JSON_H

#include <stddef.h>
#include <stdint.h>

#define S2S_JSON_MAX_DEPTH 64 /* arrays/objects nested deeper than this are rejected */

/* ---------------------------------------------------------------- reading */

typedef enum {
    S2S_JSON_NONE = 0, /* the NULL pointer (absent value), never a parsed node */
    S2S_JSON_NULL,
    S2S_JSON_BOOL,
    S2S_JSON_NUM,
    S2S_JSON_STR,
    S2S_JSON_ARR,
    S2S_JSON_OBJ,
} s2s_json_type;

typedef struct s2s_json s2s_json; /* one parsed value; the root owns the whole tree */

/* Parse text[0..len). Returns the root value, or NULL with a one-line message
 * in err such as "invalid JSON at byte 123: expected ':'" (byte offsets count
 * from 0 at text). */
s2s_json *s2s_json_parse(const char *text, size_t len, char *err, size_t errlen);
void s2s_json_free(s2s_json *root); /* NULL is fine; only call on a root */

s2s_json_type s2s_json_typeof(const s2s_json *j); /* S2S_JSON_NONE for NULL */
const char *s2s_json_type_name(s2s_json_type t); /* "null", "object", ... */

/* Objects: value of key (NULL if absent or j is not an object). With duplicate
 * keys the LAST one wins, as in Python's json and JavaScript. */
const s2s_json *s2s_json_get(const s2s_json *obj, const char *key);
/* Element count of an array or object (keys in file order, duplicates kept);
 * 0 for anything else. */
size_t s2s_json_len(const s2s_json *j);
const s2s_json *s2s_json_at(const s2s_json *j, size_t i); /* i-th element/value, or NULL */
const char *s2s_json_key_at(const s2s_json *obj, size_t i); /* i-th key, or NULL */
size_t s2s_json_key_len_at(const s2s_json *obj, size_t i); /* its byte length (keys may hold \u0000) */

/* Numbers: the value as a double (NAN if j is not a number). */
double s2s_json_num(const s2s_json *j);
/* Integers: 0 and *out set if j is a number written as an integer literal
 * (no fraction or exponent) that fits in int64; -1 otherwise (*out untouched). */
int s2s_json_int64(const s2s_json *j, int64_t *out);
/* Strings: the decoded UTF-8 text, NUL-terminated (NULL if not a string).
 * A decoded string may contain "\u0000": s2s_json_strlen gives the full byte length. */
const char *s2s_json_str(const s2s_json *j);
size_t s2s_json_strlen(const s2s_json *j);
/* Booleans: 1 for true, 0 for false, -1 if j is not a boolean. */
int s2s_json_bool(const s2s_json *j);

/* ----------------------------------------------------------------- writing */

/* A growable byte string. s is NUL-terminated whenever it is non-NULL
 * (len does not count the NUL). Zero-initialised ({0}) is a valid empty buffer. */
typedef struct {
    char *s;    /* [cap] */
    size_t len; /* bytes used, excluding the NUL */
    size_t cap; /* bytes allocated */
} s2s_strbuf;

void s2s_strbuf_init(s2s_strbuf *b);
void s2s_strbuf_free(s2s_strbuf *b); /* releases s and resets to empty */
void s2s_strbuf_clear(s2s_strbuf *b); /* len = 0, keeps the allocation */
void s2s_strbuf_append(s2s_strbuf *b, const void *data, size_t n);
void s2s_strbuf_puts(s2s_strbuf *b, const char *s);
void s2s_strbuf_putc(s2s_strbuf *b, char c);
void s2s_strbuf_appendf(s2s_strbuf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Append s[0..n) as a JSON string literal, quotes included. Escapes '"', '\\'
 * and control characters (\b \f \n \r \t, others as \u00XX); other bytes are
 * copied as UTF-8. Bytes that are not valid UTF-8 are replaced by \ufffd so the
 * output is always valid JSON. */
void s2s_json_escape(s2s_strbuf *b, const char *s, size_t n);
/* Append a number with the fewest digits (up to 17) that parse back to the same
 * double; non-finite values (which JSON cannot hold) are written as null. */
void s2s_json_append_num(s2s_strbuf *b, double x);

#endif
