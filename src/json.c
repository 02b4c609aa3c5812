/* json.c - strict RFC 8259 JSON parser (recursive descent, depth-limited) and
 * the s2s_strbuf writer helpers. See json.h for the contract.
 *
 * The tree: every node is a struct s2s_json; arrays and objects hold their
 * children by value in one array (items[n]), objects also hold keys[n]. The
 * root is heap-allocated and owns everything below it. */
#include "json.h"

#include "common.h"

#include <math.h>
#include <stdarg.h>
#include <string.h>

struct s2s_json {
    s2s_json_type type;
    int b;           /* BOOL: 0/1 */
    int is_int;      /* NUM: integer literal that fits in int64 */
    int64_t i;       /* NUM: the value when is_int */
    double num;      /* NUM */
    char *str;       /* STR: [n + 1] decoded UTF-8, NUL-terminated */
    size_t n;        /* STR: byte length; ARR/OBJ: element count */
    s2s_json *items; /* ARR/OBJ: [n] */
    char **keys;     /* OBJ: [n] decoded keys, NUL-terminated */
    size_t *klen;    /* OBJ: [n] key byte lengths (keys may hold \u0000) */
};

/* ================================================================ UTF-8 */

/* Length (1..4) of the valid UTF-8 sequence at s[0..avail), 0 if invalid
 * (overlong forms, surrogates and code points above U+10FFFF are invalid). */
static size_t utf8_len(const unsigned char *s, size_t avail) {
    unsigned c = s[0];
    if (c < 0x80) return 1;
    size_t n;
    unsigned lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
    if (c >= 0xC2 && c <= 0xDF) n = 2;
    else if (c == 0xE0) { n = 3; lo = 0xA0; }
    else if (c >= 0xE1 && c <= 0xEC) n = 3;
    else if (c == 0xED) { n = 3; hi = 0x9F; }
    else if (c >= 0xEE && c <= 0xEF) n = 3;
    else if (c == 0xF0) { n = 4; lo = 0x90; }
    else if (c >= 0xF1 && c <= 0xF3) n = 4;
    else if (c == 0xF4) { n = 4; hi = 0x8F; }
    else return 0;
    if (avail < n) return 0;
    if (s[1] < lo || s[1] > hi) return 0;
    for (size_t k = 2; k < n; k++)
        if (s[k] < 0x80 || s[k] > 0xBF) return 0;
    return n;
}

/* Encode code point cp (valid scalar value) as UTF-8 into out; returns bytes. */
static size_t utf8_put(char *out, uint32_t cp) {
    if (cp < 0x80) { out[0] = (char)cp; return 1; }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* =============================================================== parser */

typedef struct {
    const unsigned char *s; /* [len] */
    size_t len;
    size_t pos;
    int depth;
    char *err;
    size_t errlen;
} parser;

__attribute__((format(printf, 3, 4)))
static int fail_at(parser *ps, size_t pos, const char *fmt, ...) {
    char msg[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    s2s_errf(ps->err, ps->errlen, "invalid JSON at byte %zu: %s", pos, msg);
    return -1;
}

/* "expected X" at the current position, or "unexpected end of input". */
static int fail_expected(parser *ps, const char *what) {
    if (ps->pos >= ps->len) return fail_at(ps, ps->pos, "unexpected end of input, expected %s", what);
    unsigned c = ps->s[ps->pos];
    if (c >= 0x20 && c < 0x7F) return fail_at(ps, ps->pos, "expected %s, found '%c'", what, (char)c);
    return fail_at(ps, ps->pos, "expected %s, found byte 0x%02x", what, c);
}

static void skip_ws(parser *ps) {
    while (ps->pos < ps->len) {
        unsigned c = ps->s[ps->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
        ps->pos++;
    }
}

static void node_clear(s2s_json *j) {
    if (j->type == S2S_JSON_STR) free(j->str);
    if (j->type == S2S_JSON_ARR || j->type == S2S_JSON_OBJ) {
        for (size_t i = 0; i < j->n; i++) {
            node_clear(&j->items[i]);
            if (j->keys) free(j->keys[i]);
        }
        free(j->items);
        free(j->keys);
        free(j->klen);
    }
    memset(j, 0, sizeof *j);
}

static int hex4(parser *ps, size_t at, uint32_t *out) {
    uint32_t v = 0;
    for (size_t k = 0; k < 4; k++) {
        if (at + k >= ps->len) return fail_at(ps, ps->len, "unexpected end of input in \\u escape");
        unsigned c = ps->s[at + k];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= c - '0';
        else if (c >= 'a' && c <= 'f') v |= c - 'a' + 10;
        else if (c >= 'A' && c <= 'F') v |= c - 'A' + 10;
        else return fail_at(ps, at + k, "bad hex digit in \\u escape");
    }
    *out = v;
    return 0;
}

/* Parse a string at ps->pos (which must be '"'); result is malloc'd. */
static int parse_string(parser *ps, char **out, size_t *outlen) {
    if (ps->pos >= ps->len || ps->s[ps->pos] != '"') return fail_expected(ps, "'\"'");
    size_t start = ++ps->pos;
    /* Size the buffer from the raw extent (up to the first unescaped quote):
     * decoding never grows a string (an escape of 2, 6 or 12 raw bytes becomes
     * 1, <= 3 or 4 bytes). The loop below validates and reports errors. */
    size_t end = start;
    while (end < ps->len && ps->s[end] != '"') end += ps->s[end] == '\\' ? 2 : 1;
    if (end > ps->len) end = ps->len;
    size_t cap = end - start + 4;
    char *buf = s2s_xmalloc(cap);
    size_t n = 0, i = start;
    while (1) {
        if (i >= ps->len) { free(buf); return fail_at(ps, ps->len, "unterminated string (starts at byte %zu)", start - 1); }
        unsigned c = ps->s[i];
        if (c == '"') break;
        if (c < 0x20) { free(buf); return fail_at(ps, i, "control character 0x%02x in string (must be escaped)", c); }
        if (c == '\\') {
            if (i + 1 >= ps->len) { free(buf); return fail_at(ps, ps->len, "unterminated string (starts at byte %zu)", start - 1); }
            unsigned e = ps->s[i + 1];
            switch (e) {
            case '"': buf[n++] = '"'; i += 2; continue;
            case '\\': buf[n++] = '\\'; i += 2; continue;
            case '/': buf[n++] = '/'; i += 2; continue;
            case 'b': buf[n++] = '\b'; i += 2; continue;
            case 'f': buf[n++] = '\f'; i += 2; continue;
            case 'n': buf[n++] = '\n'; i += 2; continue;
            case 'r': buf[n++] = '\r'; i += 2; continue;
            case 't': buf[n++] = '\t'; i += 2; continue;
            case 'u': break;
            default:
                free(buf);
                if (e >= 0x20 && e < 0x7F) return fail_at(ps, i, "invalid escape '\\%c' in string", (char)e);
                return fail_at(ps, i, "invalid escape in string");
            }
            uint32_t cp;
            if (hex4(ps, i + 2, &cp) != 0) { free(buf); return -1; }
            size_t at = i;
            i += 6;
            if (cp >= 0xDC00 && cp <= 0xDFFF) { free(buf); return fail_at(ps, at, "lone low surrogate \\u%04X in string", (unsigned)cp); }
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                uint32_t lo;
                if (i + 1 >= ps->len || ps->s[i] != '\\' || ps->s[i + 1] != 'u') { free(buf); return fail_at(ps, at, "high surrogate \\u%04X not followed by a low surrogate", (unsigned)cp); }
                if (hex4(ps, i + 2, &lo) != 0) { free(buf); return -1; }
                if (lo < 0xDC00 || lo > 0xDFFF) { free(buf); return fail_at(ps, at, "high surrogate \\u%04X not followed by a low surrogate", (unsigned)cp); }
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                i += 6;
            }
            /* A \uXXXX escape (6 raw bytes) decodes to <= 3 bytes, a pair (12) to 4. */
            n += utf8_put(buf + n, cp);
            continue;
        }
        size_t k = utf8_len(ps->s + i, ps->len - i);
        if (k == 0) { free(buf); return fail_at(ps, i, "invalid UTF-8 byte 0x%02x in string", c); }
        memcpy(buf + n, ps->s + i, k);
        n += k;
        i += k;
    }
    S2S_ASSERT(n < cap);
    buf[n] = 0;
    ps->pos = i + 1;
    *out = buf;
    *outlen = n;
    return 0;
}

static int parse_number(parser *ps, s2s_json *out) {
    const unsigned char *s = ps->s;
    size_t i = ps->pos, start = ps->pos, len = ps->len;
    int neg = 0, integral = 1;
    if (i < len && s[i] == '-') { neg = 1; i++; }
    if (i >= len || s[i] < '0' || s[i] > '9') { ps->pos = i; return fail_expected(ps, "a digit"); }
    if (s[i] == '0') {
        i++;
        if (i < len && s[i] >= '0' && s[i] <= '9') return fail_at(ps, start, "leading zero in number");
    } else {
        while (i < len && s[i] >= '0' && s[i] <= '9') i++;
    }
    size_t int_end = i;
    if (i < len && s[i] == '.') {
        integral = 0;
        i++;
        if (i >= len || s[i] < '0' || s[i] > '9') { ps->pos = i; return fail_expected(ps, "a digit after '.'"); }
        while (i < len && s[i] >= '0' && s[i] <= '9') i++;
    }
    if (i < len && (s[i] == 'e' || s[i] == 'E')) {
        integral = 0;
        i++;
        if (i < len && (s[i] == '+' || s[i] == '-')) i++;
        if (i >= len || s[i] < '0' || s[i] > '9') { ps->pos = i; return fail_expected(ps, "a digit in exponent"); }
        while (i < len && s[i] >= '0' && s[i] <= '9') i++;
    }
    /* strtod needs a NUL-terminated copy. */
    size_t n = i - start;
    char small[64];
    char *tmp = n < sizeof small ? small : s2s_xmalloc(n + 1);
    memcpy(tmp, s + start, n);
    tmp[n] = 0;
    double v = strtod(tmp, NULL);
    if (tmp != small) free(tmp);
    if (!isfinite(v)) return fail_at(ps, start, "number out of range");
    out->type = S2S_JSON_NUM;
    out->num = v;
    out->is_int = 0;
    if (integral) {
        /* Exact int64 value, accumulated as a negative number so INT64_MIN fits. */
        int64_t acc = 0;
        int ok = 1;
        for (size_t k = start + (size_t)neg; k < int_end; k++) {
            int d = s[k] - '0';
            if (acc < (INT64_MIN + d) / 10) { ok = 0; break; }
            acc = acc * 10 - d;
        }
        if (ok && !neg && acc == INT64_MIN) ok = 0;
        if (ok) { out->is_int = 1; out->i = neg ? acc : -acc; }
    }
    ps->pos = i;
    return 0;
}

static int parse_literal(parser *ps, const char *word, s2s_json_type t, int b, s2s_json *out) {
    size_t n = strlen(word);
    if (ps->len - ps->pos < n || memcmp(ps->s + ps->pos, word, n) != 0)
        return fail_at(ps, ps->pos, "invalid literal (expected %s)", word);
    ps->pos += n;
    out->type = t;
    out->b = b;
    return 0;
}

static int parse_value(parser *ps, s2s_json *out);

/* Arrays and objects share this: push one child (and key) onto out. */
static void push_child(s2s_json *out, size_t *cap, const s2s_json *child, char *key, size_t klen) {
    if (out->n == *cap) {
        *cap = *cap ? *cap * 2 : 4;
        out->items = s2s_xrealloc(out->items, *cap * sizeof *out->items);
        if (out->type == S2S_JSON_OBJ) {
            out->keys = s2s_xrealloc(out->keys, *cap * sizeof *out->keys);
            out->klen = s2s_xrealloc(out->klen, *cap * sizeof *out->klen);
        }
    }
    out->items[out->n] = *child;
    if (out->type == S2S_JSON_OBJ) { out->keys[out->n] = key; out->klen[out->n] = klen; }
    out->n++;
}

static int parse_container(parser *ps, s2s_json *out, int is_obj) {
    size_t open_at = ps->pos;
    if (++ps->depth > S2S_JSON_MAX_DEPTH)
        return fail_at(ps, open_at, "nesting deeper than %d levels", S2S_JSON_MAX_DEPTH);
    ps->pos++; /* '[' or '{' */
    out->type = is_obj ? S2S_JSON_OBJ : S2S_JSON_ARR;
    size_t cap = 0;
    char close = is_obj ? '}' : ']';
    skip_ws(ps);
    if (ps->pos < ps->len && ps->s[ps->pos] == close) { ps->pos++; ps->depth--; return 0; }
    while (1) {
        char *key = NULL;
        size_t klen = 0;
        if (is_obj) {
            skip_ws(ps);
            if (ps->pos >= ps->len || ps->s[ps->pos] != '"') { fail_expected(ps, "a string key"); goto bad; }
            if (parse_string(ps, &key, &klen) != 0) goto bad;
            skip_ws(ps);
            if (ps->pos >= ps->len || ps->s[ps->pos] != ':') { free(key); fail_expected(ps, "':'"); goto bad; }
            ps->pos++;
        }
        s2s_json child;
        memset(&child, 0, sizeof child);
        if (parse_value(ps, &child) != 0) { free(key); goto bad; }
        push_child(out, &cap, &child, key, klen);
        skip_ws(ps);
        if (ps->pos < ps->len && ps->s[ps->pos] == ',') { ps->pos++; continue; }
        if (ps->pos < ps->len && ps->s[ps->pos] == close) { ps->pos++; break; }
        fail_expected(ps, is_obj ? "',' or '}'" : "',' or ']'");
        goto bad;
    }
    ps->depth--;
    return 0;
bad:
    node_clear(out);
    return -1;
}

static int parse_value(parser *ps, s2s_json *out) {
    skip_ws(ps);
    if (ps->pos >= ps->len) return fail_expected(ps, "a value");
    unsigned c = ps->s[ps->pos];
    switch (c) {
    case '{': return parse_container(ps, out, 1);
    case '[': return parse_container(ps, out, 0);
    case '"': {
        char *s;
        size_t n;
        if (parse_string(ps, &s, &n) != 0) return -1;
        out->type = S2S_JSON_STR;
        out->str = s;
        out->n = n;
        return 0;
    }
    case 't': return parse_literal(ps, "true", S2S_JSON_BOOL, 1, out);
    case 'f': return parse_literal(ps, "false", S2S_JSON_BOOL, 0, out);
    case 'n': return parse_literal(ps, "null", S2S_JSON_NULL, 0, out);
    default:
        if (c == '-' || (c >= '0' && c <= '9')) return parse_number(ps, out);
        return fail_expected(ps, "a value");
    }
}

s2s_json *s2s_json_parse(const char *text, size_t len, char *err, size_t errlen) {
    parser ps = {(const unsigned char *)text, len, 0, 0, err, errlen};
    if (!text && len > 0) { s2s_errf(err, errlen, "invalid JSON: no text"); return NULL; }
    s2s_json *root = s2s_xcalloc(1, sizeof *root);
    if (parse_value(&ps, root) != 0) { free(root); return NULL; }
    skip_ws(&ps);
    if (ps.pos != len) {
        fail_at(&ps, ps.pos, "unexpected trailing data after the value");
        s2s_json_free(root);
        return NULL;
    }
    return root;
}

void s2s_json_free(s2s_json *root) {
    if (!root) return;
    node_clear(root);
    free(root);
}

/* ============================================================== getters */

s2s_json_type s2s_json_typeof(const s2s_json *j) { return j ? j->type : S2S_JSON_NONE; }

const char *s2s_json_type_name(s2s_json_type t) {
    switch (t) {
    case S2S_JSON_NULL: return "null";
    case S2S_JSON_BOOL: return "boolean";
    case S2S_JSON_NUM: return "number";
    case S2S_JSON_STR: return "string";
    case S2S_JSON_ARR: return "array";
    case S2S_JSON_OBJ: return "object";
    default: return "nothing";
    }
}

const s2s_json *s2s_json_get(const s2s_json *obj, const char *key) {
    if (!obj || obj->type != S2S_JSON_OBJ || !key) return NULL;
    size_t kl = strlen(key);
    for (size_t i = obj->n; i-- > 0;)
        if (obj->klen[i] == kl && memcmp(obj->keys[i], key, kl) == 0) return &obj->items[i];
    return NULL;
}

size_t s2s_json_len(const s2s_json *j) {
    return j && (j->type == S2S_JSON_ARR || j->type == S2S_JSON_OBJ) ? j->n : 0;
}

const s2s_json *s2s_json_at(const s2s_json *j, size_t i) {
    if (!j || (j->type != S2S_JSON_ARR && j->type != S2S_JSON_OBJ) || i >= j->n) return NULL;
    return &j->items[i];
}

const char *s2s_json_key_at(const s2s_json *obj, size_t i) {
    if (!obj || obj->type != S2S_JSON_OBJ || i >= obj->n) return NULL;
    return obj->keys[i];
}

size_t s2s_json_key_len_at(const s2s_json *obj, size_t i) {
    if (!obj || obj->type != S2S_JSON_OBJ || i >= obj->n) return 0;
    return obj->klen[i];
}

double s2s_json_num(const s2s_json *j) { return j && j->type == S2S_JSON_NUM ? j->num : NAN; }

int s2s_json_int64(const s2s_json *j, int64_t *out) {
    if (!j || j->type != S2S_JSON_NUM || !j->is_int) return -1;
    *out = j->i;
    return 0;
}

const char *s2s_json_str(const s2s_json *j) { return j && j->type == S2S_JSON_STR ? j->str : NULL; }
size_t s2s_json_strlen(const s2s_json *j) { return j && j->type == S2S_JSON_STR ? j->n : 0; }
int s2s_json_bool(const s2s_json *j) { return j && j->type == S2S_JSON_BOOL ? j->b : -1; }

/* ============================================================== strbuf */

void s2s_strbuf_init(s2s_strbuf *b) { b->s = NULL; b->len = 0; b->cap = 0; }

void s2s_strbuf_free(s2s_strbuf *b) { free(b->s); s2s_strbuf_init(b); }

void s2s_strbuf_clear(s2s_strbuf *b) { b->len = 0; if (b->s) b->s[0] = 0; }

/* Make room for n more bytes plus the NUL. */
static void strbuf_reserve(s2s_strbuf *b, size_t n) {
    S2S_ASSERT(n <= SIZE_MAX - b->len - 1);
    size_t need = b->len + n + 1;
    if (need <= b->cap) return;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need) cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    b->s = s2s_xrealloc(b->s, cap);
    b->cap = cap;
}

void s2s_strbuf_append(s2s_strbuf *b, const void *data, size_t n) {
    strbuf_reserve(b, n);
    if (n) memcpy(b->s + b->len, data, n);
    b->len += n;
    b->s[b->len] = 0;
}

void s2s_strbuf_puts(s2s_strbuf *b, const char *s) { s2s_strbuf_append(b, s, strlen(s)); }
void s2s_strbuf_putc(s2s_strbuf *b, char c) { s2s_strbuf_append(b, &c, 1); }

void s2s_strbuf_appendf(s2s_strbuf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    S2S_ASSERT(n >= 0);
    strbuf_reserve(b, (size_t)n);
    va_start(ap, fmt);
    vsnprintf(b->s + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void s2s_json_escape(s2s_strbuf *b, const char *s, size_t n) {
    static const char hex[] = "0123456789abcdef";
    const unsigned char *u = (const unsigned char *)s;
    strbuf_reserve(b, n + 2);
    s2s_strbuf_putc(b, '"');
    size_t i = 0;
    while (i < n) {
        /* Copy the longest run that needs no escaping in one go. */
        size_t j = i;
        while (j < n && u[j] >= 0x20 && u[j] < 0x80 && u[j] != '"' && u[j] != '\\') j++;
        if (j > i) { s2s_strbuf_append(b, u + i, j - i); i = j; continue; }
        unsigned c = u[i];
        char esc[8];
        switch (c) {
        case '"': s2s_strbuf_append(b, "\\\"", 2); i++; continue;
        case '\\': s2s_strbuf_append(b, "\\\\", 2); i++; continue;
        case '\b': s2s_strbuf_append(b, "\\b", 2); i++; continue;
        case '\f': s2s_strbuf_append(b, "\\f", 2); i++; continue;
        case '\n': s2s_strbuf_append(b, "\\n", 2); i++; continue;
        case '\r': s2s_strbuf_append(b, "\\r", 2); i++; continue;
        case '\t': s2s_strbuf_append(b, "\\t", 2); i++; continue;
        default: break;
        }
        if (c < 0x20) {
            memcpy(esc, "\\u00", 4);
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            s2s_strbuf_append(b, esc, 6);
            i++;
            continue;
        }
        size_t k = utf8_len(u + i, n - i);
        if (k == 0) { s2s_strbuf_append(b, "\\ufffd", 6); i++; continue; }
        s2s_strbuf_append(b, u + i, k);
        i += k;
    }
    s2s_strbuf_putc(b, '"');
}


void s2s_json_append_num(s2s_strbuf *b, double x) {
    if (!isfinite(x)) { s2s_strbuf_puts(b, "null"); return; }
    char tmp[40];
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*g", prec, x);
        if (prec == 17 || strtod(tmp, NULL) == x) break;
    }
    s2s_strbuf_puts(b, tmp);
}
