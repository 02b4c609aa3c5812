/* fuzz_config.c - libFuzzer harness for the JSON parser (src/json.c), the model
 * config (src/config.c) and, when built with S2S_FUZZ_CLI, the `s2s train
 * --config FILE` parser (static in src/cli/cmd_train.c, reached through
 * s2s_cmd_train).
 *
 * The whole input is used four ways:
 *  1. s2s_json_parse: every node is visited through the getters and the tree is
 *     written back as JSON (s2s_json_escape, s2s_json_append_num), which must
 *     parse again to an equal tree (non-finite numbers, written as null, aside).
 *  2. s2s_config_from_json: a config that parses must pass s2s_config_check and
 *     survive s2s_config_to_json -> s2s_config_from_json unchanged.
 *  3. s2s_json_escape of the raw bytes must parse back to a string: the same
 *     bytes when they are valid UTF-8, valid UTF-8 in any case.
 *  4. (S2S_FUZZ_CLI) the input as a train config file: s2s_cmd_train with
 *     --config FILE, then command-line options that override the data paths
 *     and the output directory with paths that cannot exist, so it stops right
 *     after parsing (s2s_train fails creating the output directory) and never
 *     reads or writes anything the input names. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "fuzz_common.h"
#include "json.h"
#include "utf8.h"
#ifdef S2S_FUZZ_CLI
#include "cli.h"
#endif

/* Write j as JSON into b; sets *lossy when a non-finite number became null. */
static void fz_json_write(s2s_strbuf *b, const s2s_json *j, int *lossy) {
    switch (s2s_json_typeof(j)) {
    case S2S_JSON_NULL: s2s_strbuf_puts(b, "null"); break;
    case S2S_JSON_BOOL: s2s_strbuf_puts(b, s2s_json_bool(j) ? "true" : "false"); break;
    case S2S_JSON_NUM:
        if (!isfinite(s2s_json_num(j))) *lossy = 1;
        s2s_json_append_num(b, s2s_json_num(j));
        break;
    case S2S_JSON_STR: s2s_json_escape(b, s2s_json_str(j), s2s_json_strlen(j)); break;
    case S2S_JSON_ARR:
    case S2S_JSON_OBJ: {
        int obj = s2s_json_typeof(j) == S2S_JSON_OBJ;
        s2s_strbuf_putc(b, obj ? '{' : '[');
        for (size_t i = 0; i < s2s_json_len(j); i++) {
            if (i) s2s_strbuf_putc(b, ',');
            if (obj) {
                s2s_json_escape(b, s2s_json_key_at(j, i), s2s_json_key_len_at(j, i));
                s2s_strbuf_putc(b, ':');
            }
            fz_json_write(b, s2s_json_at(j, i), lossy);
        }
        s2s_strbuf_putc(b, obj ? '}' : ']');
        break;
    }
    default: FZ_CHECK(0);
    }
}

/* Visit every node through the getters; check they agree with each other. */
static void fz_json_visit(const s2s_json *j) {
    s2s_json_type t = s2s_json_typeof(j);
    FZ_CHECK(t != S2S_JSON_NONE && s2s_json_type_name(t));
    int64_t v;
    if (s2s_json_int64(j, &v) == 0) FZ_CHECK(t == S2S_JSON_NUM);
    if (t == S2S_JSON_STR) {
        const char *s = s2s_json_str(j);
        size_t n = s2s_json_strlen(j);
        FZ_CHECK(s && s[n] == '\0' && strlen(s) <= n && s2s_utf8_valid(s, n));
    } else {
        FZ_CHECK(s2s_json_str(j) == NULL);
    }
    FZ_CHECK((s2s_json_bool(j) >= 0) == (t == S2S_JSON_BOOL));
    size_t n = s2s_json_len(j);
    FZ_CHECK(s2s_json_at(j, n) == NULL && s2s_json_key_at(j, n) == NULL);
    for (size_t i = 0; i < n; i++) {
        FZ_CHECK(s2s_json_at(j, i));
        if (t == S2S_JSON_OBJ) {
            const char *k = s2s_json_key_at(j, i);
            FZ_CHECK(k && s2s_utf8_valid(k, s2s_json_key_len_at(j, i)));
            /* the last duplicate wins, and keys with a NUL are not reachable by name */
            if (strlen(k) == s2s_json_key_len_at(j, i)) FZ_CHECK(s2s_json_get(j, k) != NULL);
        } else {
            FZ_CHECK(s2s_json_key_at(j, i) == NULL);
        }
        fz_json_visit(s2s_json_at(j, i));
    }
}

static int fz_json_equal(const s2s_json *a, const s2s_json *b) {
    s2s_json_type t = s2s_json_typeof(a);
    if (t != s2s_json_typeof(b)) return 0;
    switch (t) {
    case S2S_JSON_NULL: return 1;
    case S2S_JSON_BOOL: return s2s_json_bool(a) == s2s_json_bool(b);
    case S2S_JSON_NUM: return s2s_json_num(a) == s2s_json_num(b);
    case S2S_JSON_STR:
        return s2s_json_strlen(a) == s2s_json_strlen(b) &&
               memcmp(s2s_json_str(a), s2s_json_str(b), s2s_json_strlen(a)) == 0;
    default:
        if (s2s_json_len(a) != s2s_json_len(b)) return 0;
        for (size_t i = 0; i < s2s_json_len(a); i++) {
            if (t == S2S_JSON_OBJ &&
                (s2s_json_key_len_at(a, i) != s2s_json_key_len_at(b, i) ||
                 memcmp(s2s_json_key_at(a, i), s2s_json_key_at(b, i), s2s_json_key_len_at(a, i)) != 0))
                return 0;
            if (!fz_json_equal(s2s_json_at(a, i), s2s_json_at(b, i))) return 0;
        }
        return 1;
    }
}

static void fz_cfg_json(const uint8_t *data, size_t size) {
    char err[256] = "";
    s2s_json *root = s2s_json_parse((const char *)data, size, err, sizeof err);
    if (!root) { FZ_CHECK(err[0] != '\0'); return; }
    fz_json_visit(root);
    s2s_strbuf b = {0};
    int lossy = 0;
    fz_json_write(&b, root, &lossy);
    s2s_json *again = s2s_json_parse(b.s, b.len, err, sizeof err);
    if (!again) fprintf(stderr, "fuzz: rewritten JSON does not parse: %s\n", err);
    FZ_CHECK(again);
    if (!lossy) FZ_CHECK(fz_json_equal(root, again));
    s2s_json_free(again);
    s2s_strbuf_free(&b);
    s2s_json_free(root);
}

static void fz_cfg_config(const uint8_t *data, size_t size) {
    char err[256] = "";
    s2s_config c, d;
    if (s2s_config_from_json(&c, (const char *)data, size, err, sizeof err) != 0) {
        FZ_CHECK(err[0] != '\0');
        return;
    }
    FZ_CHECK(s2s_config_check(&c, err, sizeof err) == 0);
    char *js = s2s_config_to_json(&c);
    FZ_CHECK(js);
    if (s2s_config_from_json(&d, js, strlen(js), err, sizeof err) != 0)
        fprintf(stderr, "fuzz: config does not reload: %s\n", err);
    FZ_CHECK(s2s_config_from_json(&d, js, strlen(js), err, sizeof err) == 0);
    FZ_CHECK(memcmp(&c, &d, sizeof c) == 0);
    free(js);
}

static void fz_cfg_escape(const uint8_t *data, size_t size) {
    s2s_strbuf b = {0};
    s2s_json_escape(&b, (const char *)data, size);
    char err[256] = "";
    s2s_json *j = s2s_json_parse(b.s, b.len, err, sizeof err);
    FZ_CHECK(j && s2s_json_typeof(j) == S2S_JSON_STR);
    FZ_CHECK(s2s_utf8_valid(s2s_json_str(j), s2s_json_strlen(j)));
    if (s2s_utf8_valid((const char *)data, size))
        FZ_CHECK(s2s_json_strlen(j) == size && (size == 0 || memcmp(s2s_json_str(j), data, size) == 0));
    s2s_json_free(j);
    s2s_strbuf_free(&b);
}

#ifdef S2S_FUZZ_CLI
static fz_file fz_cfg_file;

static void fz_cfg_train(const uint8_t *data, size_t size) {
    if (fz_cfg_file.path[0] == '\0') fz_file_open(&fz_cfg_file, "train-conf");
    fz_file_set(&fz_cfg_file, data, size);
    char *argv[] = {"train", "--config", fz_cfg_file.path,
                    "--train-src", "/nonexistent-s2s-fuzz/train.src",
                    "--train-tgt", "/nonexistent-s2s-fuzz/train.tgt",
                    "--dev-src", "/nonexistent-s2s-fuzz/dev.src",
                    "--dev-tgt", "/nonexistent-s2s-fuzz/dev.tgt",
                    "--init", "/nonexistent-s2s-fuzz/init.safetensors",
                    "-o", "/nonexistent-s2s-fuzz/out", NULL};
    int argc = (int)(sizeof argv / sizeof argv[0]) - 1;
    int rc = s2s_cmd_train(argc, argv);
    FZ_CHECK(rc == 1 || rc == 2); /* a usage error, or the output directory cannot be made */
}
#endif

static int fz_cfg_one(const uint8_t *data, size_t size) {
    fz_cfg_json(data, size);
    fz_cfg_config(data, size);
    fz_cfg_escape(data, size);
#ifdef S2S_FUZZ_CLI
    fz_cfg_train(data, size);
#endif
    return 0;
}

#ifndef S2S_FUZZ_NO_MAIN
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) { return fz_cfg_one(data, size); }
#endif
