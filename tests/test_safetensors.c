/* test_safetensors.c - tests of src/json.c and src/safetensors.c (Criterion).
 *
 * JSON: values, escapes and surrogates, every error class with its message,
 * depth limit, no reads past the given length (buffers are malloc'd to the
 * exact size so AddressSanitizer catches overreads).
 * safetensors: round trip of every dtype with metadata that needs escaping,
 * byte-identical re-save, golden bytes from the official implementation's own
 * tests, fp16/bf16 conversions, every bad-file case with its message, and
 * fuzzing (every truncation of a valid file, thousands of random header byte
 * flips) that must fail cleanly or load consistently, never crash.
 * Files go to a mkdtemp directory that each test removes. */
#include <criterion/criterion.h>

#include <dirent.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common.h"
#include "json.h"
#include "safetensors.h"
#include "utf8.h"

/* ============================================================== fixtures */

static char g_dir[256];

static void setup(void) {
    const char *tmp = getenv("TMPDIR");
    snprintf(g_dir, sizeof g_dir, "%s/s2s_test_st_XXXXXX", tmp && *tmp ? tmp : "/tmp");
    cr_assert(mkdtemp(g_dir) != NULL, "mkdtemp failed");
}

static void teardown(void) {
    DIR *d = opendir(g_dir);
    if (!d) return;
    struct dirent *e;
    char p[512];
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        snprintf(p, sizeof p, "%s/%s", g_dir, e->d_name);
        if (unlink(p) != 0) rmdir(p);
    }
    closedir(d);
    rmdir(g_dir);
}

TestSuite(json, .init = setup, .fini = teardown);
TestSuite(safetensors, .init = setup, .fini = teardown);

static const char *tpath(const char *name) {
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", g_dir, name);
    return buf[k];
}

static void write_bytes(const char *path, const void *data, size_t n) {
    /* unlink first: on ext4, truncating an existing file forces a flush on
     * close (auto_da_alloc), which made the fuzz loops ~20x slower */
    unlink(path);
    FILE *f = fopen(path, "wb");
    cr_assert(f != NULL, "cannot create %s", path);
    if (n) cr_assert(fwrite(data, 1, n, f) == n);
    cr_assert(fclose(f) == 0);
}

static unsigned char *read_bytes(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    cr_assert(f != NULL, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long L = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)L + 1);
    cr_assert(fread(b, 1, (size_t)L, f) == (size_t)L);
    fclose(f);
    *n = (size_t)L;
    return b;
}

/* A safetensors file from a header string: u64 length, header, data_len bytes of i. */
static void write_st(const char *path, const char *header, size_t data_len) {
    size_t h = strlen(header);
    unsigned char *b = malloc(8 + h + data_len + 1);
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)((uint64_t)h >> (8 * i));
    memcpy(b + 8, header, h);
    for (size_t i = 0; i < data_len; i++) b[8 + h + i] = (unsigned char)i;
    write_bytes(path, b, 8 + h + data_len);
    free(b);
}

#define ASSERT_HAS(msg, word) \
    cr_assert(strstr((msg), (word)) != NULL, "expected '%s' in message: %s", (word), (msg))

/* Open must fail with a one-line message naming the file and containing word. */
static void expect_open_fails(const char *path, const char *word) {
    char err[512] = "";
    s2s_st_file *f = s2s_st_open(path, err, sizeof err);
    cr_assert(f == NULL, "expected failure (%s) but %s opened", word, path);
    ASSERT_HAS(err, path);
    ASSERT_HAS(err, word);
    cr_assert(strchr(err, '\n') == NULL, "message is not one line: %s", err);
}

static void expect_header_fails(const char *header, size_t data_len, const char *word) {
    const char *p = tpath("bad.safetensors");
    write_st(p, header, data_len);
    expect_open_fails(p, word);
}

/* ================================================================= JSON */

/* Parse from an exact-size heap copy so overreads trip ASan. */
static s2s_json *parse_exact(const char *text, size_t len, char *err, size_t errlen) {
    char *buf = malloc(len ? len : 1);
    memcpy(buf, text, len);
    s2s_json *j = s2s_json_parse(buf, len, err, errlen);
    free(buf);
    return j;
}

static s2s_json *parse_ok(const char *text) {
    char err[256] = "";
    s2s_json *j = parse_exact(text, strlen(text), err, sizeof err);
    cr_assert(j != NULL, "parse of <%s> failed: %s", text, err);
    return j;
}

static void parse_bad(const char *text, size_t len, const char *word) {
    char err[256] = "";
    s2s_json *j = parse_exact(text, len, err, sizeof err);
    cr_assert(j == NULL, "parse of <%.*s> should fail (%s)", (int)len, text, word);
    ASSERT_HAS(err, "invalid JSON at byte ");
    ASSERT_HAS(err, word);
}

Test(json, values) {
    s2s_json *j = parse_ok(" {\"a\": [1, -2.5, 3e2, true, false, null, \"x\"], \"b\": {}, \"c\": [],"
                           " \"d\": 0, \"a\": \"last\"}\n");
    cr_assert_eq(s2s_json_typeof(j), S2S_JSON_OBJ);
    cr_assert_eq(s2s_json_len(j), 5);
    cr_assert_str_eq(s2s_json_key_at(j, 1), "b");
    const s2s_json *a = s2s_json_at(j, 0);
    cr_assert_eq(s2s_json_typeof(a), S2S_JSON_ARR);
    cr_assert_eq(s2s_json_len(a), 7);
    int64_t v;
    cr_assert_eq(s2s_json_int64(s2s_json_at(a, 0), &v), 0);
    cr_assert_eq(v, 1);
    cr_assert_eq(s2s_json_num(s2s_json_at(a, 1)), -2.5);
    cr_assert_eq(s2s_json_int64(s2s_json_at(a, 1), &v), -1);
    cr_assert_eq(s2s_json_num(s2s_json_at(a, 2)), 300.0);
    cr_assert_eq(s2s_json_int64(s2s_json_at(a, 2), &v), -1, "3e2 is not an integer literal");
    cr_assert_eq(s2s_json_bool(s2s_json_at(a, 3)), 1);
    cr_assert_eq(s2s_json_bool(s2s_json_at(a, 4)), 0);
    cr_assert_eq(s2s_json_typeof(s2s_json_at(a, 5)), S2S_JSON_NULL);
    cr_assert_str_eq(s2s_json_str(s2s_json_at(a, 6)), "x");
    cr_assert_eq(s2s_json_at(a, 7), NULL);
    /* duplicate key: last wins for get, both kept for iteration */
    cr_assert_str_eq(s2s_json_str(s2s_json_get(j, "a")), "last");
    cr_assert_eq(s2s_json_len(s2s_json_get(j, "b")), 0);
    cr_assert_eq(s2s_json_typeof(s2s_json_get(j, "c")), S2S_JSON_ARR);
    /* neutral values for absent/wrong types, chaining through NULL */
    cr_assert_eq(s2s_json_get(j, "zz"), NULL);
    cr_assert_eq(s2s_json_get(s2s_json_get(j, "zz"), "y"), NULL);
    cr_assert(isnan(s2s_json_num(s2s_json_get(j, "b"))));
    cr_assert_eq(s2s_json_str(s2s_json_get(j, "d")), NULL);
    cr_assert_eq(s2s_json_bool(NULL), -1);
    cr_assert_eq(s2s_json_typeof(NULL), S2S_JSON_NONE);
    s2s_json_free(j);

    /* scalars at top level */
    j = parse_ok("42");
    cr_assert_eq(s2s_json_num(j), 42.0);
    s2s_json_free(j);
    j = parse_ok("\"\"");
    cr_assert_str_eq(s2s_json_str(j), "");
    s2s_json_free(j);
}

Test(json, integers) {
    int64_t v;
    s2s_json *j = parse_ok("[9223372036854775807, -9223372036854775808, 9223372036854775808, -0, 0.5, 1.0]");
    cr_assert_eq(s2s_json_int64(s2s_json_at(j, 0), &v), 0);
    cr_assert_eq(v, INT64_MAX);
    cr_assert_eq(s2s_json_int64(s2s_json_at(j, 1), &v), 0);
    cr_assert_eq(v, INT64_MIN);
    cr_assert_eq(s2s_json_int64(s2s_json_at(j, 2), &v), -1, "2^63 does not fit");
    cr_assert_eq(s2s_json_num(s2s_json_at(j, 2)), 9223372036854775808.0);
    cr_assert_eq(s2s_json_int64(s2s_json_at(j, 3), &v), 0);
    cr_assert_eq(v, 0);
    cr_assert_eq(s2s_json_int64(s2s_json_at(j, 4), &v), -1);
    cr_assert_eq(s2s_json_int64(s2s_json_at(j, 5), &v), -1);
    s2s_json_free(j);
}

Test(json, strings_and_escapes) {
    s2s_json *j = parse_ok("[\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\", \"\\u00e9\\u20AC\", \"\\ud83d\\ude00\","
                           " \"caf\xc3\xa9 \xf0\x9f\x98\x80\", \"x\\u0000y\"]");
    cr_assert_str_eq(s2s_json_str(s2s_json_at(j, 0)), "a\"b\\c/d\b\f\n\r\t");
    cr_assert_str_eq(s2s_json_str(s2s_json_at(j, 1)), "\xc3\xa9\xe2\x82\xac");
    cr_assert_str_eq(s2s_json_str(s2s_json_at(j, 2)), "\xf0\x9f\x98\x80");
    cr_assert_str_eq(s2s_json_str(s2s_json_at(j, 3)), "caf\xc3\xa9 \xf0\x9f\x98\x80");
    const s2s_json *z = s2s_json_at(j, 4);
    cr_assert_eq(s2s_json_strlen(z), 3);
    cr_assert_eq(memcmp(s2s_json_str(z), "x\0y", 4), 0);
    s2s_json_free(j);

    /* a key with \u0000 does not match its prefix */
    j = parse_ok("{\"k\\u0000z\": 1}");
    cr_assert_eq(s2s_json_get(j, "k"), NULL);
    cr_assert_eq(s2s_json_key_len_at(j, 0), 3);
    s2s_json_free(j);
}

Test(json, errors) {
#define BAD(s, w) parse_bad((s), sizeof(s) - 1, (w))
    BAD("", "unexpected end of input");
    BAD("   ", "unexpected end of input");
    BAD("{", "unexpected end of input");
    BAD("[1,]", "expected a value");
    BAD("[1 2]", "expected ',' or ']'");
    BAD("{\"a\":1,}", "expected a string key");
    BAD("{\"a\" 1}", "expected ':'");
    BAD("{1:2}", "expected a string key");
    BAD("{\"a\":1 \"b\":2}", "expected ',' or '}'");
    BAD("01", "leading zero");
    BAD("-", "expected a digit");
    BAD("1.", "digit after '.'");
    BAD(".5", "expected a value");
    BAD("1e", "digit in exponent");
    BAD("+1", "expected a value");
    BAD("1e999", "out of range");
    BAD("NaN", "expected a value");
    BAD("tru", "invalid literal");
    BAD("nulll", "trailing data");
    BAD("[1] x", "trailing data");
    BAD("{} {}", "trailing data");
    BAD("\"abc", "unterminated string");
    BAD("\"abc\\", "unterminated string");
    BAD("\"a\\x\"", "invalid escape '\\x'");
    BAD("\"a\\'\"", "invalid escape");
    BAD("\"\\u12g4\"", "bad hex digit");
    BAD("\"\\u12\"", "bad hex digit");
    BAD("\"\\u12", "end of input");
    BAD("\"\\ud800\"", "not followed by a low surrogate");
    BAD("\"\\ud800\\u0041\"", "not followed by a low surrogate");
    BAD("\"\\udc00\"", "lone low surrogate");
    BAD("\"a\x01\"", "control character");
    BAD("\"a\nb\"", "control character");
    BAD("\"\xff\"", "invalid UTF-8");
    BAD("\"\xc0\xaf\"", "invalid UTF-8");          /* overlong '/' */
    BAD("\"\xed\xa0\x80\"", "invalid UTF-8");      /* encoded surrogate */
    BAD("\"\xf4\x90\x80\x80\"", "invalid UTF-8");  /* above U+10FFFF */
    BAD("\"\xe2\x82\"", "invalid UTF-8");          /* truncated sequence */
    BAD("\xef\xbb\xbf{}", "expected a value");     /* BOM */
    BAD("// c\n{}", "expected a value");
    /* the byte offset is exact */
    char err[256];
    cr_assert_eq(s2s_json_parse("{\"a\" 1}", 7, err, sizeof err), NULL);
    cr_assert_str_eq(err, "invalid JSON at byte 5: expected ':', found '1'");
    /* embedded NUL outside strings */
    parse_bad("[1,\0 2]", 7, "expected a value");
#undef BAD
}

Test(json, length_is_respected) {
    /* The text is not NUL-terminated and continues past len: only len bytes count. */
    char err[256];
    s2s_json *j = parse_exact("[1,2]garbage", 5, err, sizeof err);
    cr_assert(j != NULL, "%s", err);
    cr_assert_eq(s2s_json_len(j), 2);
    s2s_json_free(j);
    /* Every prefix of a document either parses (only the full one) or fails. */
    const char *doc = "{\"k\": [\"\\ud83d\\ude00\", 1.5e3, {\"x\": null}], \"t\": true}";
    size_t n = strlen(doc);
    for (size_t L = 0; L < n; L++) {
        j = parse_exact(doc, L, err, sizeof err);
        cr_assert(j == NULL, "prefix of length %zu parsed", L);
    }
    j = parse_exact(doc, n, err, sizeof err);
    cr_assert(j != NULL, "%s", err);
    s2s_json_free(j);
}

Test(json, depth_limit) {
    char buf[2 * (S2S_JSON_MAX_DEPTH + 1) + 1];
    char err[256];
    for (int depth = S2S_JSON_MAX_DEPTH; depth <= S2S_JSON_MAX_DEPTH + 1; depth++) {
        int k = 0;
        for (int i = 0; i < depth; i++) buf[k++] = '[';
        for (int i = 0; i < depth; i++) buf[k++] = ']';
        s2s_json *j = parse_exact(buf, (size_t)k, err, sizeof err);
        if (depth <= S2S_JSON_MAX_DEPTH) {
            cr_assert(j != NULL, "depth %d: %s", depth, err);
            s2s_json_free(j);
        } else {
            cr_assert(j == NULL);
            ASSERT_HAS(err, "nesting deeper than");
        }
    }
    /* objects count too */
    s2s_strbuf b = {0};
    for (int i = 0; i <= S2S_JSON_MAX_DEPTH; i++) s2s_strbuf_puts(&b, "{\"k\":");
    s2s_strbuf_puts(&b, "1");
    for (int i = 0; i <= S2S_JSON_MAX_DEPTH; i++) s2s_strbuf_putc(&b, '}');
    cr_assert_eq(s2s_json_parse(b.s, b.len, err, sizeof err), NULL);
    ASSERT_HAS(err, "nesting deeper than 64 levels");
    s2s_strbuf_free(&b);
    /* a huge unbalanced input fails fast without deep recursion */
    size_t big = 1000000;
    char *deep = malloc(big);
    memset(deep, '[', big);
    s2s_json *j = s2s_json_parse(deep, big, err, sizeof err);
    cr_assert(j == NULL);
    ASSERT_HAS(err, "nesting deeper than");
    free(deep);
}

Test(json, strbuf_and_escape_roundtrip) {
    s2s_strbuf b;
    s2s_strbuf_init(&b);
    /* every byte 1..127 plus UTF-8 text */
    char raw[200];
    int n = 0;
    for (int c = 1; c < 128; c++) raw[n++] = (char)c;
    const char *u = "\xc3\xa9\xf0\x9f\x98\x80";
    memcpy(raw + n, u, strlen(u));
    n += (int)strlen(u);
    s2s_json_escape(&b, raw, (size_t)n);
    cr_assert_eq(strlen(b.s), b.len);
    char err[256];
    s2s_json *j = s2s_json_parse(b.s, b.len, err, sizeof err);
    cr_assert(j != NULL, "%s: %s", err, b.s);
    cr_assert_eq(s2s_json_strlen(j), (size_t)n);
    cr_assert_eq(memcmp(s2s_json_str(j), raw, (size_t)n), 0);
    s2s_json_free(j);
    /* \u0000 and invalid UTF-8 (replaced by U+FFFD) */
    s2s_strbuf_clear(&b);
    s2s_json_escape(&b, "a\0b\xff", 4);
    cr_assert_str_eq(b.s, "\"a\\u0000b\\ufffd\"");
    /* control characters use the short escapes */
    s2s_strbuf_clear(&b);
    s2s_json_escape(&b, "\"\\\n\t\x1f", 5);
    cr_assert_str_eq(b.s, "\"\\\"\\\\\\n\\t\\u001f\"");
    /* appendf grows past the initial capacity */
    s2s_strbuf_clear(&b);
    for (int i = 0; i < 1000; i++) s2s_strbuf_appendf(&b, "%d,", i);
    cr_assert_eq(strncmp(b.s, "0,1,2,", 6), 0);
    cr_assert_eq(strlen(b.s), b.len);
    s2s_strbuf_free(&b);
    cr_assert_eq(b.s, NULL);
    /* numbers round-trip with the fewest digits */
    double xs[] = {0.0, -0.0, 1.0, 0.1, 1.0 / 3.0, 1e300, -2.5e-308, 123456789.0, 5e-324};
    for (size_t i = 0; i < sizeof xs / sizeof xs[0]; i++) {
        s2s_strbuf_init(&b);
        s2s_json_append_num(&b, xs[i]);
        j = s2s_json_parse(b.s, b.len, err, sizeof err);
        cr_assert(j != NULL, "%s: %s", b.s, err);
        cr_assert_eq(s2s_json_num(j), xs[i], "%s", b.s);
        s2s_json_free(j);
        s2s_strbuf_free(&b);
    }
    s2s_json_append_num(&b, 0.1);
    cr_assert_str_eq(b.s, "0.1");
    s2s_strbuf_clear(&b);
    s2s_json_append_num(&b, NAN);
    cr_assert_str_eq(b.s, "null");
    s2s_strbuf_free(&b);
}

/* =========================================================== safetensors */

typedef struct {
    const char *name;
    int dtype;
    int ndim;
    int64_t shape[3];
} spec;

/* Fill a deterministic payload for a tensor. */
static void *payload(const spec *s, size_t *nbytes, int seed) {
    int64_t numel = 1;
    for (int d = 0; d < s->ndim; d++) numel *= s->shape[d];
    *nbytes = (size_t)numel * s2s_dtype_size(s->dtype);
    unsigned char *p = malloc(*nbytes + 1);
    if (s->dtype == S2S_DT_F32) {
        for (int64_t i = 0; i < numel; i++) { float v = 0.25f * (float)(i + seed) - 1.0f; memcpy(p + 4 * i, &v, 4); }
    } else if (s->dtype == S2S_DT_F64) {
        for (int64_t i = 0; i < numel; i++) { double v = 0.1 * (double)(i + seed); memcpy(p + 8 * i, &v, 8); }
    } else if (s->dtype == S2S_DT_F16) {
        for (int64_t i = 0; i < numel; i++) { uint16_t h = s2s_f32_to_f16(0.5f * (float)(i + seed)); memcpy(p + 2 * i, &h, 2); }
    } else if (s->dtype == S2S_DT_BF16) {
        for (int64_t i = 0; i < numel; i++) { uint16_t h = s2s_f32_to_bf16(-3.0f * (float)(i + seed)); memcpy(p + 2 * i, &h, 2); }
    } else if (s->dtype == S2S_DT_BOOL) {
        for (size_t i = 0; i < *nbytes; i++) p[i] = (unsigned char)((i + (size_t)seed) & 1);
    } else {
        for (size_t i = 0; i < *nbytes; i++) p[i] = (unsigned char)(i * 7 + (size_t)seed);
    }
    return p;
}

static const spec SPECS[] = {
    {"enc.0.fc1.weight", S2S_DT_F32, 2, {3, 5}},
    {"odd.f16", S2S_DT_F16, 1, {5}}, /* 10 bytes: would misalign what follows */
    {"b16", S2S_DT_BF16, 2, {2, 3}},
    {"f64", S2S_DT_F64, 1, {4}},
    {"i64", S2S_DT_I64, 1, {3}},
    {"i32", S2S_DT_I32, 3, {1, 2, 2}},
    {"i16", S2S_DT_I16, 1, {3}},
    {"i8", S2S_DT_I8, 1, {7}},
    {"u8", S2S_DT_U8, 1, {5}},
    {"mask", S2S_DT_BOOL, 1, {9}},
    {"u16", S2S_DT_U16, 1, {1}},
    {"u32", S2S_DT_U32, 1, {2}},
    {"u64", S2S_DT_U64, 1, {1}},
    {"scalar", S2S_DT_F32, 0, {0}},
    {"empty", S2S_DT_F32, 2, {0, 4}},
    {"weird \"name\" \\ \xc3\xa9\t", S2S_DT_F32, 1, {2}},
};
#define NSPECS ((int)(sizeof SPECS / sizeof SPECS[0]))

static const char *META_KEYS[] = {"format_version", "config", "we\"ird\\key\n", "unicode"};
static const char *META_VALS[] = {"1", "{\"d_model\": 64, \"heads\": 4}", "tab\there\x01\x1f end", "\xf0\x9f\x98\x80 caf\xc3\xa9"};

/* Write the SPECS file to path; payloads are kept in bufs[] (borrowed by the writer). */
static void write_specs(const char *path, void **bufs) {
    s2s_st_writer *w = s2s_st_writer_new();
    for (int i = 0; i < NSPECS; i++) {
        size_t nb;
        bufs[i] = payload(&SPECS[i], &nb, i);
        cr_assert_eq(s2s_st_writer_add(w, SPECS[i].name, SPECS[i].dtype, SPECS[i].ndim, SPECS[i].shape, bufs[i]), 0);
    }
    s2s_st_writer_meta(w, "format_version", "0"); /* replaced below */
    for (int i = 0; i < 4; i++) cr_assert_eq(s2s_st_writer_meta(w, META_KEYS[i], META_VALS[i]), 0);
    char err[512];
    cr_assert_eq(s2s_st_writer_save(w, path, err, sizeof err), 0, "%s", err);
    s2s_st_writer_free(w);
}

Test(safetensors, roundtrip_all_dtypes) {
    const char *p = tpath("m.safetensors");
    void *bufs[NSPECS];
    write_specs(p, bufs);
    char err[512];
    s2s_st_file *f = s2s_st_open(p, err, sizeof err);
    cr_assert(f != NULL, "%s", err);
    cr_assert_eq(s2s_st_count(f), NSPECS);
    cr_assert_eq(s2s_st_data_start(f) % 8, 0, "data section must start at a multiple of 8");
    for (int i = 0; i < NSPECS; i++) {
        const s2s_st_tensor *t = s2s_st_find(f, SPECS[i].name);
        cr_assert(t != NULL, "missing %s", SPECS[i].name);
        cr_assert_str_eq(t->name, SPECS[i].name);
        cr_assert_eq(t->dtype, SPECS[i].dtype);
        cr_assert_eq(t->ndim, SPECS[i].ndim);
        int64_t numel = 1;
        for (int d = 0; d < t->ndim; d++) { cr_assert_eq(t->shape[d], SPECS[i].shape[d]); numel *= t->shape[d]; }
        cr_assert_eq(t->numel, numel);
        size_t nb;
        void *want = payload(&SPECS[i], &nb, i);
        cr_assert_eq(t->nbytes, nb);
        if (nb) cr_assert_eq(memcmp(t->data, want, nb), 0, "data of %s", t->name);
        free(want);
        cr_assert_eq(t->offset % s2s_dtype_size(t->dtype), 0, "%s is not aligned to its element size", t->name);
        cr_assert_eq(t->offset + t->nbytes <= s2s_st_file_size(f), 1);
        if (t->dtype == S2S_DT_F32) cr_assert(s2s_st_f32_ptr(t) != NULL);
        else cr_assert(s2s_st_f32_ptr(t) == NULL);
    }
    /* header order is the writer's layout order: element size 8, 4, 2, 1, insertion order within */
    size_t prev = 8;
    for (int i = 0; i < s2s_st_count(f); i++) {
        size_t es = s2s_dtype_size(s2s_st_at(f, i)->dtype);
        cr_assert(es <= prev);
        prev = es;
    }
    cr_assert_eq(s2s_st_at(f, NSPECS), NULL);
    cr_assert_eq(s2s_st_at(f, -1), NULL);
    cr_assert_eq(s2s_st_find(f, "nope"), NULL);
    cr_assert_eq(s2s_st_find(f, "__metadata__"), NULL);
    /* metadata */
    cr_assert_eq(s2s_st_meta_count(f), 4);
    for (int i = 0; i < 4; i++) {
        cr_assert_str_eq(s2s_st_meta(f, META_KEYS[i]), META_VALS[i]);
        cr_assert_str_eq(s2s_st_meta_key(f, i), META_KEYS[i]);
        cr_assert_str_eq(s2s_st_meta_value(f, i), META_VALS[i]);
    }
    cr_assert_eq(s2s_st_meta(f, "absent"), NULL);
    /* conversions to fp32 */
    float out[32];
    const s2s_st_tensor *t = s2s_st_find(f, "odd.f16");
    cr_assert_eq(s2s_st_to_f32(out, t), 0);
    for (int i = 0; i < 5; i++) cr_assert_eq(out[i], 0.5f * (float)(i + 1));
    t = s2s_st_find(f, "b16");
    cr_assert_eq(s2s_st_to_f32(out, t), 0);
    for (int i = 0; i < 6; i++) cr_assert_eq(out[i], -3.0f * (float)(i + 2));
    t = s2s_st_find(f, "f64");
    cr_assert_eq(s2s_st_to_f32(out, t), 0);
    for (int i = 0; i < 4; i++) cr_assert_eq(out[i], (float)(0.1 * (double)(i + 3)));
    t = s2s_st_find(f, "enc.0.fc1.weight");
    cr_assert_eq(s2s_st_to_f32(out, t), 0);
    cr_assert_eq(memcmp(out, s2s_st_f32_ptr(t), 15 * 4), 0);
    cr_assert_eq(s2s_st_to_f32(out, s2s_st_find(f, "i32")), -1);
    cr_assert_eq(s2s_st_to_f32(out, s2s_st_find(f, "mask")), -1);
    t = s2s_st_find(f, "scalar");
    cr_assert_eq(t->numel, 1);
    cr_assert_eq(t->nbytes, 4);
    t = s2s_st_find(f, "empty");
    cr_assert_eq(t->numel, 0);
    cr_assert_eq(t->nbytes, 0);
    s2s_st_close(f);
    for (int i = 0; i < NSPECS; i++) free(bufs[i]);
    /* no temp files left behind */
    DIR *d = opendir(g_dir);
    struct dirent *e;
    int files = 0;
    while ((e = readdir(d)) != NULL) if (e->d_name[0] != '.') { files++; cr_assert(strstr(e->d_name, ".tmp.") == NULL); }
    closedir(d);
    cr_assert_eq(files, 1);
}

Test(safetensors, resave_is_byte_identical) {
    const char *p1 = tpath("a.safetensors"), *p2 = tpath("b.safetensors"), *p3 = tpath("c.safetensors");
    void *bufs[NSPECS];
    write_specs(p1, bufs);
    char err[512];
    s2s_st_file *f = s2s_st_open(p1, err, sizeof err);
    cr_assert(f != NULL, "%s", err);
    s2s_st_writer *w = s2s_st_writer_new();
    for (int i = 0; i < s2s_st_count(f); i++) {
        const s2s_st_tensor *t = s2s_st_at(f, i);
        cr_assert_eq(s2s_st_writer_add(w, t->name, t->dtype, t->ndim, t->shape, t->data), 0); /* borrows the mapping */
    }
    for (int i = 0; i < s2s_st_meta_count(f); i++) s2s_st_writer_meta(w, s2s_st_meta_key(f, i), s2s_st_meta_value(f, i));
    cr_assert_eq(s2s_st_writer_save(w, p2, err, sizeof err), 0, "%s", err);
    cr_assert_eq(s2s_st_writer_save(w, p3, err, sizeof err), 0, "%s", err); /* saving twice */
    s2s_st_writer_free(w);
    s2s_st_close(f);
    size_t n1, n2, n3;
    unsigned char *b1 = read_bytes(p1, &n1), *b2 = read_bytes(p2, &n2), *b3 = read_bytes(p3, &n3);
    cr_assert_eq(n1, n2);
    cr_assert_eq(memcmp(b1, b2, n1), 0);
    cr_assert_eq(n1, n3);
    cr_assert_eq(memcmp(b1, b3, n1), 0);
    free(b1); free(b2); free(b3);
    for (int i = 0; i < NSPECS; i++) free(bufs[i]);
}

/* Byte layouts from the official implementation's own unit tests. */
Test(safetensors, golden_official_bytes) {
    char err[512];
    const char *p = tpath("g.safetensors");
    size_t n;
    unsigned char *b;
    /* empty, no metadata: {} padded to 8 */
    s2s_st_writer *w = s2s_st_writer_new();
    cr_assert_eq(s2s_st_writer_save(w, p, err, sizeof err), 0, "%s", err);
    b = read_bytes(p, &n);
    cr_assert_eq(n, 16);
    cr_assert_eq(memcmp(b, "\x08\0\0\0\0\0\0\0{}      ", 16), 0);
    free(b);
    s2s_st_file *f = s2s_st_open(p, err, sizeof err);
    cr_assert(f != NULL, "%s", err);
    cr_assert_eq(s2s_st_count(f), 0);
    s2s_st_close(f);
    /* empty with metadata */
    s2s_st_writer_meta(w, "framework", "pt");
    cr_assert_eq(s2s_st_writer_save(w, p, err, sizeof err), 0, "%s", err);
    b = read_bytes(p, &n);
    cr_assert_eq(n, 48);
    cr_assert_eq(memcmp(b, "\x28\0\0\0\0\0\0\0{\"__metadata__\":{\"framework\":\"pt\"}}     ", 48), 0);
    free(b);
    s2s_st_writer_free(w);
    /* one F32 tensor with forced alignment padding */
    float data[6] = {0, 1, 2, 3, 4, 5};
    int64_t shape[4] = {1, 1, 2, 3};
    w = s2s_st_writer_new();
    cr_assert_eq(s2s_st_writer_add(w, "attn0", S2S_DT_F32, 4, shape, data), 0);
    cr_assert_eq(s2s_st_writer_save(w, p, err, sizeof err), 0, "%s", err);
    s2s_st_writer_free(w);
    b = read_bytes(p, &n);
    const char *hdr = "{\"attn0\":{\"dtype\":\"F32\",\"shape\":[1,1,2,3],\"data_offsets\":[0,24]}}       ";
    cr_assert_eq(strlen(hdr), 72);
    cr_assert_eq(n, 8 + 72 + 24);
    cr_assert_eq(memcmp(b, "\x48\0\0\0\0\0\0\0", 8), 0);
    cr_assert_eq(memcmp(b + 8, hdr, 72), 0);
    cr_assert_eq(memcmp(b + 80, data, 24), 0);
    free(b);
    /* A file as in the official docs: no padding, I32 [2,2]. */
    const char *doc = "{\"test\":{\"dtype\":\"I32\",\"shape\":[2,2],\"data_offsets\":[0,16]}}";
    cr_assert_eq(strlen(doc), 60);
    write_st(p, doc, 16);
    f = s2s_st_open(p, err, sizeof err);
    cr_assert(f != NULL, "%s", err);
    cr_assert_eq(s2s_st_find(f, "test")->nbytes, 16);
    cr_assert_eq(s2s_st_find(f, "test")->offset, 68);
    s2s_st_close(f);
    /* Any key order, extra keys, whitespace and out-of-order offsets are accepted. */
    write_st(p, " { \"b\" : { \"data_offsets\" : [8, 12], \"shape\": [1], \"dtype\": \"F32\", \"extra\": [1]},\n"
                "\"a\": {\"dtype\": \"F64\", \"shape\": [], \"data_offsets\": [0, 8]}, \"__metadata__\": {}}  ",
             12);
    /* leading space is not '{' -> rejected like the official reader (InvalidHeaderStart) */
    expect_open_fails(p, "does not start with '{'");
    write_st(p, "{ \"b\" : { \"data_offsets\" : [8, 12], \"shape\": [1], \"dtype\": \"F32\", \"extra\": [1]},\n"
                "\"a\": {\"dtype\": \"F64\", \"shape\": [], \"data_offsets\": [0, 8]}, \"__metadata__\": {}}  ",
             12);
    f = s2s_st_open(p, err, sizeof err);
    cr_assert(f != NULL, "%s", err);
    cr_assert_str_eq(s2s_st_at(f, 0)->name, "b");
    cr_assert_eq(s2s_st_find(f, "a")->ndim, 0);
    cr_assert_eq(s2s_st_meta_count(f), 0);
    s2s_st_close(f);
}

Test(safetensors, f16_bf16_known_values) {
    struct { float f; uint16_t h; } F16[] = {
        {0.0f, 0x0000}, {-0.0f, 0x8000}, {1.0f, 0x3C00}, {-2.0f, 0xC000}, {0.5f, 0x3800},
        {65504.0f, 0x7BFF}, {65519.99f, 0x7BFF}, {65520.0f, 0x7C00}, {1e10f, 0x7C00}, {-1e10f, 0xFC00},
        {INFINITY, 0x7C00}, {-INFINITY, 0xFC00}, {0.1f, 0x2E66}, {1.0f / 3.0f, 0x3555},
        {0x1p-14f, 0x0400},                   /* smallest normal */
        {0x1p-24f, 0x0001},                   /* smallest subnormal */
        {0x1p-25f, 0x0000},                   /* tie between 0 and 2^-24 -> even (0) */
        {0x1.8p-25f, 0x0001},                 /* above the tie */
        {0x3p-25f, 0x0002},                   /* 1.5 * 2^-24: tie -> even (2) */
        {0x1p-14f - 0x1p-25f, 0x0400},        /* 1023.5 * 2^-24: tie -> even (1024 = normal) */
        {1.0f + 0x1p-11f, 0x3C00},            /* tie -> even */
        {1.0f + 0x3p-11f, 0x3C02},            /* tie -> even (up) */
        {1.0f + 0x1p-11f + 0x1p-20f, 0x3C01}, /* just above the tie */
        {2049.0f, 0x6800},                    /* 2048 + 1: tie -> 2048 */
        {2051.0f, 0x6802},                    /* tie -> 2052 */
        {-0x1p-24f, 0x8001}, {1e-30f, 0x0000},
    };
    for (size_t i = 0; i < sizeof F16 / sizeof F16[0]; i++)
        cr_assert_eq(s2s_f32_to_f16(F16[i].f), F16[i].h, "f16(%a) = 0x%04x, want 0x%04x", (double)F16[i].f,
                     s2s_f32_to_f16(F16[i].f), F16[i].h);
    uint16_t hn = s2s_f32_to_f16(NAN);
    cr_assert_eq(hn & 0x7C00, 0x7C00);
    cr_assert_neq(hn & 0x03FF, 0);
    float sn; uint32_t snb = 0x7F800001u; memcpy(&sn, &snb, 4); /* signalling NaN with payload only in low bits */
    cr_assert_neq(s2s_f32_to_f16(sn) & 0x03FF, 0, "NaN must not become inf");
    /* f16 -> f32 -> f16 is the identity for every non-NaN half, and exact */
    for (uint32_t h = 0; h < 65536; h++) {
        float f = s2s_f16_to_f32((uint16_t)h);
        if ((h & 0x7C00) == 0x7C00 && (h & 0x3FF)) { cr_assert(isnan(f)); continue; }
        cr_assert_eq(s2s_f32_to_f16(f), h, "half 0x%04x -> %a", h, (double)f);
    }
    cr_assert_eq(s2s_f16_to_f32(0x0001), 0x1p-24f);
    cr_assert_eq(s2s_f16_to_f32(0x03FF), 0x3FFp-24f);
    cr_assert_eq(s2s_f16_to_f32(0x7BFF), 65504.0f);
    cr_assert_eq(s2s_f16_to_f32(0xC000), -2.0f);
#ifdef __FLT16_MAX__
    /* Against the compiler's _Float16 conversion (IEEE round to nearest even). */
    uint64_t rng = 12345;
    for (int i = 0; i < 2000000; i++) {
        uint32_t x = (uint32_t)s2s_rng_next(&rng);
        float f;
        memcpy(&f, &x, 4);
        if (isnan(f)) continue;
        _Float16 r = (_Float16)f;
        uint16_t want;
        memcpy(&want, &r, 2);
        cr_assert_eq(s2s_f32_to_f16(f), want, "f16(%a) = 0x%04x, want 0x%04x", (double)f, s2s_f32_to_f16(f), want);
    }
    /* dense scan of the interesting exponent range (subnormal to overflow) */
    for (uint32_t x = 0x32000000u; x < 0x48000000u; x += 97) {
        float f;
        memcpy(&f, &x, 4);
        _Float16 r = (_Float16)f;
        uint16_t want;
        memcpy(&want, &r, 2);
        cr_assert_eq(s2s_f32_to_f16(f), want, "f16(%a)", (double)f);
    }
#endif
    /* bf16 */
    struct { uint32_t x; uint16_t h; } BF[] = {
        {0x3F800000u, 0x3F80}, /* 1.0 */
        {0x40490FDBu, 0x4049}, /* pi */
        {0x3F808000u, 0x3F80}, /* tie -> even */
        {0x3F818000u, 0x3F82}, /* tie -> even (up) */
        {0x3F808001u, 0x3F81}, /* above the tie */
        {0x7F7FFFFFu, 0x7F80}, /* FLT_MAX rounds to inf */
        {0xFF800000u, 0xFF80}, /* -inf */
        {0x00000001u, 0x0000}, /* tiny subnormal */
        {0x80000000u, 0x8000}, /* -0 */
    };
    for (size_t i = 0; i < sizeof BF / sizeof BF[0]; i++) {
        float f;
        memcpy(&f, &BF[i].x, 4);
        cr_assert_eq(s2s_f32_to_bf16(f), BF[i].h, "bf16(0x%08x) = 0x%04x, want 0x%04x", BF[i].x, s2s_f32_to_bf16(f), BF[i].h);
    }
    cr_assert_eq(s2s_f32_to_bf16(sn) & 0x7FFF, 0x7FC0, "NaN stays a quiet NaN");
    cr_assert(isnan(s2s_bf16_to_f32(s2s_f32_to_bf16(NAN))));
    for (uint32_t h = 0; h < 65536; h++) {
        float f = s2s_bf16_to_f32((uint16_t)h);
        if (isnan(f)) continue;
        cr_assert_eq(s2s_f32_to_bf16(f), h);
    }
    /* array forms */
    float in[3] = {1.0f, -2.0f, 0.5f};
    uint16_t o16[3], ob[3];
    s2s_f32_to_f16_n(o16, in, 3);
    s2s_f32_to_bf16_n(ob, in, 3);
    cr_assert_eq(o16[1], 0xC000);
    cr_assert_eq(ob[2], 0x3F00);
}

Test(safetensors, f64_saturates) {
    const char *p = tpath("d.safetensors");
    double v[6] = {1e300, -1e300, (double)FLT_MAX, 0.1,
                   0x1.ffffffp127,         /* FLT_MAX + half an ulp: tie -> even (inf) */
                   0x1.fffffefffffffp127}; /* just below the tie -> FLT_MAX */
    int64_t shape[1] = {6};
    s2s_st_writer *w = s2s_st_writer_new();
    s2s_st_writer_add(w, "d", S2S_DT_F64, 1, shape, v);
    char err[512];
    cr_assert_eq(s2s_st_writer_save(w, p, err, sizeof err), 0, "%s", err);
    s2s_st_writer_free(w);
    s2s_st_file *f = s2s_st_open(p, err, sizeof err);
    cr_assert(f != NULL, "%s", err);
    float out[6];
    cr_assert_eq(s2s_st_to_f32(out, s2s_st_find(f, "d")), 0);
    cr_assert(isinf(out[0]) && out[0] > 0);
    cr_assert(isinf(out[1]) && out[1] < 0);
    cr_assert_eq(out[2], FLT_MAX);
    cr_assert_eq(out[3], 0.1f);
    cr_assert(isinf(out[4]));
    cr_assert_eq(out[5], FLT_MAX);
    s2s_st_close(f);
}

Test(safetensors, bad_files) {
    const char *p = tpath("bad.safetensors");
    /* missing, directory, empty, short */
    expect_open_fails(tpath("does-not-exist.safetensors"), "No such file");
    expect_open_fails(g_dir, "directory");
    cr_assert_eq(mkfifo(tpath("fifo"), 0600), 0);
    expect_open_fails(tpath("fifo"), "not a regular file"); /* and does not block */
    expect_open_fails("/dev/null", "not a regular file");
    write_bytes(p, "", 0);
    expect_open_fails(p, "empty file (0 bytes)");
    write_bytes(p, "\x01\x02\x03\x04\x05", 5);
    expect_open_fails(p, "not a safetensors file (only 5 bytes");
    /* header length */
    write_bytes(p, "\0\0\0\0\0\0\0\0{}", 10);
    expect_open_fails(p, "header length is 0");
    write_bytes(p, "\xff\xff\xff\xff\xff\xff\xff\xff{}", 10);
    expect_open_fails(p, "not a safetensors file (header length 0xffffffffffffffff is larger than the file");
    write_bytes(p, "PK\x03\x04\x14\0\0\0\0\0\0\0\0\0\0\0", 16); /* a zip file */
    expect_open_fails(p, "not a safetensors file");
    write_bytes(p, "\x40\0\0\0\0\0\0\0{\"a\":", 13); /* header cut short */
    expect_open_fails(p, "truncated: the header is 64 bytes");
    /* header too large: a sparse file bigger than the 100 MB limit */
    {
        FILE *fp = fopen(p, "wb");
        uint64_t L = S2S_ST_MAX_HEADER + 1;
        unsigned char len8[8];
        for (int i = 0; i < 8; i++) len8[i] = (unsigned char)(L >> (8 * i));
        fwrite(len8, 1, 8, fp);
        fputc('{', fp);
        fclose(fp);
        cr_assert_eq(truncate(p, (off_t)(8 + L + 16)), 0);
        expect_open_fails(p, "header too large");
    }
    /* header content */
    expect_header_fails("[]      ", 0, "does not start with '{'");
    expect_header_fails("{\"a\":1,}", 0, "bad header: invalid JSON at byte 7");
    expect_header_fails("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}", 4, "invalid JSON");
    expect_header_fails("{\"w\":{\"dtype\":\"F8_E4M3\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1, "unknown dtype 'F8_E4M3'");
    expect_header_fails("{\"w\":{\"dtype\":\"f32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "unknown dtype");
    expect_header_fails("{\"w\":{\"dtype\":32,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "dtype");
    expect_header_fails("{\"w\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "tensor 'w' has no dtype");
    expect_header_fails("{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, "no shape");
    expect_header_fails("{\"w\":{\"dtype\":\"F32\",\"shape\":4,\"data_offsets\":[0,4]}}", 4, "shape");
    expect_header_fails("{\"w\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, "bad shape");
    expect_header_fails("{\"w\":{\"dtype\":\"F32\",\"shape\":[1.0],\"data_offsets\":[0,4]}}", 4, "bad shape");
    expect_header_fails("{\"w\":{\"dtype\":\"F32\",\"shape\":[\"1\"],\"data_offsets\":[0,4]}}", 4, "bad shape");
    expect_header_fails("{\"w\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4, "9 dimensions");
    expect_header_fails("{\"w\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904,4],\"data_offsets\":[0,4]}}", 4, "overflows");
    expect_header_fails("{\"w\":{\"dtype\":\"F32\",\"shape\":[9223372036854775807],\"data_offsets\":[0,4]}}", 4, "overflows");
    expect_header_fails("{\"w\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,20]}}", 20,
                        "tensor 'w' has shape [2, 3] and dtype F32 (24 bytes) but data_offsets [0, 20] span 20 bytes");
    expect_header_fails("{\"w\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "no data_offsets");
    expect_header_fails("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4, "bad data_offsets");
    expect_header_fails("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", 4, "bad data_offsets");
    expect_header_fails("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", 4, "bad data_offsets");
    expect_header_fails("{\"w\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,0]}}", 4, "begin after end");
    expect_header_fails("{\"w\":[1,2]}", 0, "tensor 'w' is a JSON array, expected an object");
    expect_header_fails("{\"enc.0.fc1.weight\":{\"dtype\":\"F32\",\"shape\":[262144],\"data_offsets\":[0,1048576]}}", 1000,
                        "truncated: tensor 'enc.0.fc1.weight' ends at byte 1048576 but the data section has 1000 bytes");
    expect_header_fails("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                        "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, "overlaps");
    expect_header_fails("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                        "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "overlaps");
    expect_header_fails("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                        "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[12,20]}}", 20, "gap in the data section: bytes 8..12");
    expect_header_fails("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, "gap");
    expect_header_fails("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 9, "trailing data");
    expect_header_fails("{}", 3, "trailing data");
    expect_header_fails("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                        "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "duplicate tensor name 'a'");
    expect_header_fails("{\"__metadata__\":{\"k\":1}}", 0, "__metadata__ value of 'k' is a JSON number");
    expect_header_fails("{\"__metadata__\":{\"k\":null}}", 0, "__metadata__");
    expect_header_fails("{\"__metadata__\":[\"k\"]}", 0, "__metadata__ is a JSON array");
    expect_header_fails("{\"__metadata__\":{\"k\":\"v\",\"k\":\"w\"}}", 0, "duplicate __metadata__ key 'k'");
    expect_header_fails("{\"__metadata__\":{},\"__metadata__\":{}}", 0, "duplicate __metadata__");
    expect_header_fails("{\"__metadata__\":{\"k\":\"a\\u0000b\"}}", 0, "NUL");
    expect_header_fails("{\"a\\u0000b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "NUL");
    expect_header_fails("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}} x", 4, "trailing data after the value");
    /* zero-size tensors are fine anywhere on the boundary, not inside another tensor */
    write_st(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                "\"z\":{\"dtype\":\"I8\",\"shape\":[0],\"data_offsets\":[8,8]},"
                "\"y\":{\"dtype\":\"I8\",\"shape\":[0,5],\"data_offsets\":[0,0]}}", 8);
    char err[512];
    s2s_st_file *f = s2s_st_open(p, err, sizeof err);
    cr_assert(f != NULL, "%s", err);
    s2s_st_close(f);
    expect_header_fails("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                        "\"z\":{\"dtype\":\"I8\",\"shape\":[0],\"data_offsets\":[4,4]}}", 8, "overlaps");
}

Test(safetensors, writer_errors_and_atomicity) {
    const char *p = tpath("w.safetensors");
    char err[512];
    write_bytes(p, "old contents", 12);
    float x[4] = {1, 2, 3, 4};
    int64_t shape[2] = {2, 2};
    s2s_st_writer *w = s2s_st_writer_new();
    cr_assert_eq(s2s_st_writer_add(w, "x", S2S_DT_F32, 2, shape, x), 0);
    cr_assert_eq(s2s_st_writer_add(w, "x", S2S_DT_F32, 2, shape, x), -1);
    ASSERT_HAS(s2s_st_writer_error(w), "duplicate tensor name 'x'");
    cr_assert_eq(s2s_st_writer_save(w, p, err, sizeof err), -1);
    ASSERT_HAS(err, "duplicate tensor name 'x'");
    ASSERT_HAS(err, p);
    s2s_st_writer_free(w);
    size_t n;
    unsigned char *b = read_bytes(p, &n);
    cr_assert_eq(n, 12);
    cr_assert_eq(memcmp(b, "old contents", 12), 0, "a failed save must not touch the file");
    free(b);

    struct { const char *name; int dtype; int ndim; int64_t s0; const void *data; const char *word; } bad[] = {
        {"__metadata__", S2S_DT_F32, 1, 1, x, "reserved"},
        {"y", 99, 1, 1, x, "unknown dtype"},
        {"y", -1, 1, 1, x, "unknown dtype"},
        {"y", S2S_DT_F32, 9, 1, x, "ndim"},
        {"y", S2S_DT_F32, 1, -3, x, "negative"},
        {"y", S2S_DT_F32, 1, INT64_MAX, x, "too large"},
        {"y", S2S_DT_F32, 1, 2, NULL, "NULL data"},
        {"bad\xff", S2S_DT_F32, 1, 1, x, "UTF-8"},
        {NULL, S2S_DT_F32, 1, 1, x, "NULL name"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        w = s2s_st_writer_new();
        int64_t s1[8] = {bad[i].s0, 1, 1, 1, 1, 1, 1, 1};
        cr_assert_eq(s2s_st_writer_add(w, bad[i].name, bad[i].dtype, bad[i].ndim, s1, bad[i].data), -1, "case %zu", i);
        ASSERT_HAS(s2s_st_writer_error(w), bad[i].word);
        cr_assert_eq(s2s_st_writer_save(w, p, err, sizeof err), -1);
        s2s_st_writer_free(w);
    }
    w = s2s_st_writer_new();
    cr_assert_eq(s2s_st_writer_meta(w, "k", "bad\xc3"), -1);
    ASSERT_HAS(s2s_st_writer_error(w), "UTF-8");
    s2s_st_writer_free(w);
    /* NULL data is fine for an empty tensor */
    w = s2s_st_writer_new();
    int64_t z[2] = {0, 3};
    cr_assert_eq(s2s_st_writer_add(w, "z", S2S_DT_F32, 2, z, NULL), 0);
    /* add_copy: the caller's buffer may change right after */
    float tmp[2] = {7, 8};
    int64_t s2[1] = {2};
    cr_assert_eq(s2s_st_writer_add_copy(w, "c", S2S_DT_F32, 1, s2, tmp), 0);
    tmp[0] = tmp[1] = -1;
    /* unwritable destination: error message, nothing created */
    const char *nodir = tpath("no/such/dir/m.safetensors");
    cr_assert_eq(s2s_st_writer_save(w, nodir, err, sizeof err), -1);
    ASSERT_HAS(err, "cannot write");
    ASSERT_HAS(err, nodir);
    cr_assert_eq(s2s_st_writer_save(w, p, err, sizeof err), 0, "%s", err);
    s2s_st_writer_free(w);
    s2s_st_file *f = s2s_st_open(p, err, sizeof err);
    cr_assert(f != NULL, "%s", err);
    const float *c = s2s_st_f32_ptr(s2s_st_find(f, "c"));
    cr_assert(c != NULL);
    cr_assert_eq(c[0], 7.0f);
    cr_assert_eq(c[1], 8.0f);
    cr_assert_eq(s2s_st_find(f, "z")->numel, 0);
    s2s_st_close(f);
}

/* After a successful open every tensor must be consistent and inside the file. */
static void check_consistent(const s2s_st_file *f) {
    for (int i = 0; i < s2s_st_count(f); i++) {
        const s2s_st_tensor *t = s2s_st_at(f, i);
        cr_assert(t->dtype >= 0 && t->dtype < S2S_DT_COUNT);
        cr_assert(t->ndim >= 0 && t->ndim <= S2S_ST_MAX_NDIM);
        int64_t numel = 1;
        for (int d = 0; d < t->ndim; d++) numel *= t->shape[d];
        cr_assert_eq(numel, t->numel);
        cr_assert_eq(t->nbytes, (size_t)t->numel * s2s_dtype_size(t->dtype));
        cr_assert(t->offset >= s2s_st_data_start(f));
        cr_assert(t->offset + t->nbytes <= s2s_st_file_size(f));
        cr_assert_eq(s2s_st_find(f, t->name), t);
        /* touch the bytes so ASan/segfaults would show a bad pointer */
        volatile unsigned char sum = 0;
        for (size_t k = 0; k < t->nbytes; k++) sum += ((const unsigned char *)t->data)[k];
        (void)sum;
    }
}

Test(safetensors, fuzz_truncation_every_length) {
    const char *p = tpath("t.safetensors"), *q = tpath("cut.safetensors");
    void *bufs[NSPECS];
    write_specs(p, bufs);
    for (int i = 0; i < NSPECS; i++) free(bufs[i]);
    size_t n;
    unsigned char *b = read_bytes(p, &n);
    char err[512];
    for (size_t L = 0; L <= n; L++) {
        write_bytes(q, b, L);
        err[0] = 0;
        s2s_st_file *f = s2s_st_open(q, err, sizeof err);
        if (L == n) {
            cr_assert(f != NULL, "%s", err);
            check_consistent(f);
            s2s_st_close(f);
        } else {
            cr_assert(f == NULL, "truncated to %zu of %zu bytes but opened", L, n);
            cr_assert(err[0] != 0 && strchr(err, '\n') == NULL);
            if (L == 0) ASSERT_HAS(err, "empty");
            else if (L >= 8 + 8) ASSERT_HAS(err, "truncated");
        }
    }
    free(b);
}

Test(safetensors, fuzz_header_byte_flips) {
    const char *p = tpath("t.safetensors"), *q = tpath("flip.safetensors");
    void *bufs[NSPECS];
    write_specs(p, bufs);
    for (int i = 0; i < NSPECS; i++) free(bufs[i]);
    size_t n;
    unsigned char *orig = read_bytes(p, &n);
    unsigned char *b = malloc(n);
    uint64_t hlen = 0;
    for (int k = 7; k >= 0; k--) hlen = (hlen << 8) | orig[k];
    size_t data_start = 8 + (size_t)hlen;
    uint64_t rng = 42;
    char err[512];
    int opened = 0, failed = 0;
    const char interesting[] = "0123456789{}[]\",: -.eE\\u";
    for (int trial = 0; trial < 4000; trial++) {
        memcpy(b, orig, n);
        int flips = 1 + (int)(s2s_rng_next(&rng) % 3);
        for (int k = 0; k < flips; k++) {
            size_t pos = (size_t)(s2s_rng_next(&rng) % data_start);
            uint64_t r = s2s_rng_next(&rng);
            if (r % 3 == 0) b[pos] ^= (unsigned char)(1u << ((r >> 8) % 8));          /* bit flip */
            else if (r % 3 == 1) b[pos] = (unsigned char)(r >> 16);                    /* random byte */
            else b[pos] = (unsigned char)interesting[(r >> 16) % (sizeof interesting - 1)]; /* JSON-ish byte */
        }
        write_bytes(q, b, n);
        err[0] = 0;
        s2s_st_file *f = s2s_st_open(q, err, sizeof err);
        if (f) {
            opened++;
            check_consistent(f);
            s2s_st_close(f);
        } else {
            failed++;
            cr_assert(err[0] != 0, "trial %d: NULL without a message", trial);
            cr_assert(strchr(err, '\n') == NULL);
            ASSERT_HAS(err, q);
        }
    }
    cr_assert(failed > 0 && opened + failed == 4000);
    /* flips in the data section never matter */
    for (int trial = 0; trial < 200; trial++) {
        memcpy(b, orig, n);
        size_t pos = data_start + (size_t)(s2s_rng_next(&rng) % (n - data_start));
        b[pos] ^= 0xFF;
        write_bytes(q, b, n);
        s2s_st_file *f = s2s_st_open(q, err, sizeof err);
        cr_assert(f != NULL, "%s", err);
        s2s_st_close(f);
    }
    free(b);
    free(orig);
}
