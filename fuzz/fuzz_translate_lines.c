/* fuzz_translate_lines.c - libFuzzer harness for the line reader (src/io.c)
 * and the translate path (src/translate.c: UTF-8 repair, tokenizing,
 * truncation, length sorting, batching, greedy and beam search, detokenizing)
 * on a tiny fixed model.
 *
 * The models are built once (tokenizers learned from a few strings, like
 * tests/test_util.c tu_tiny_model; D=16, 2 heads, 1+1 layers, max_len 32) with
 * random weights, so they emit arbitrary tokens and often run to the length
 * cap: a Transformer decoder and, where this build has them, recurrent ones
 * (SSRU and LSTM without decoder FFN, GRU with). Byte 0 of the input picks the
 * model (byte / 9) and the chunk size of s2s_read_lines_from (byte % 9: 1..8
 * lines, or 0: all); byte 1 the search (bit 6: beam 2, else greedy), the batch check
 * (bit 7) and the output length cap (1 + (bits 0..5) % 40). The rest is read
 * as lines from an fmemopen stream, as `s2s translate` streams stdin, and the
 * lines (at most 64) are translated with batch 3. Properties: every line gets
 * an output (valid UTF-8), a line flagged truncated or bad UTF-8 really is,
 * and with the batch check the output does not depend on the batch a line
 * lands in (batch 3 == batch 1). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "io.h"
#include "model.h"
#include "s2s.h"
#include "tokenizer.h"
#include "utf8.h"

#define FZ_TR_MAX_LINES 64 /* translated per input */
#define FZ_TR_MAX_MODELS 4

static s2s_model *fz_tr_models[FZ_TR_MAX_MODELS];
static int fz_tr_n_models;
static s2s_model *fz_tr_model; /* the one in use */

/* The tiny models: a Transformer, and every other decoder kind this build
 * knows (configs that s2s_config_from_json rejects are skipped, so the harness
 * also builds against versions without them). */
static void fz_tr_init(void) {
    if (fz_tr_n_models) return;
    static const char *const src[] = {
        "hello world", "the quick brown fox", "jumps over the lazy dog", "ca\xc3\xb1\xc3\xb3n",
        "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e", "abc def", "x y z", "0123456789", "a,b.c!d?",
    };
    static const char *const tgt[] = {
        "hh ah0 l ow1", "dh ax0 k w ih1 k", "jh ah1 m p s", "k ae1 n y ow1 n",
        "n ih1 hh ow1 n", "ey1 b iy1 s iy1", "eh1 k s", "z ih1 r ow0", "ey1 b iy1",
    };
    static const char *const decoders[FZ_TR_MAX_MODELS] = {
        "\"decoder\":\"transformer\"", "\"decoder\":\"ssru\",\"dec_ffn\":0",
        "\"decoder\":\"gru\"", "\"decoder\":\"lstm\",\"dec_ffn\":0",
    };
    size_t n = sizeof src / sizeof src[0];
    for (int k = 0; k < FZ_TR_MAX_MODELS; k++) {
        char err[256] = "", js[512];
        s2s_tokenizer *st = s2s_tok_learn(S2S_TOK_CHAR, src, n, 0, 1, err, sizeof err);
        s2s_tokenizer *tt = s2s_tok_learn(S2S_TOK_SYMBOL, tgt, n, 0, 1, err, sizeof err);
        if (!st || !tt) { fprintf(stderr, "fuzz: tokenizer: %s\n", err); abort(); }
        snprintf(js, sizeof js,
                 "{\"d_model\":16,\"n_heads\":2,\"d_ff\":32,\"enc_layers\":1,\"dec_layers\":1,"
                 "\"src_vocab\":%d,\"tgt_vocab\":%d,\"max_len\":32,\"activation\":\"relu\",%s}",
                 s2s_tok_vocab_size(st), s2s_tok_vocab_size(tt), decoders[k]);
        s2s_config c;
        if (s2s_config_from_json(&c, js, strlen(js), err, sizeof err) != 0) {
            if (k == 0) { fprintf(stderr, "fuzz: %s\n", err); abort(); }
            s2s_tok_free(st); s2s_tok_free(tt);
            continue;
        }
        fz_tr_models[fz_tr_n_models++] = s2s_model_create(&c, st, tt, 7);
    }
    fz_tr_model = fz_tr_models[0];
}

/* Translate lines[n] with beam (batch 3); with check_batch also with batch 1,
 * which must give the same outputs. */
static void fz_tr_translate(char **lines, size_t n, int beam, int max_len, int check_batch) {
    if (n == 0) return;
    char **out = calloc(n, sizeof *out), **out1 = calloc(n, sizeof *out1);
    int *flags = calloc(n, sizeof *flags);
    FZ_CHECK(out && out1 && flags);
    s2s_translate_opts o;
    s2s_translate_opts_default(&o);
    o.beam = beam;
    o.batch = 3;
    o.max_len = max_len;
    char err[256] = "";
    int rc = s2s_translate(fz_tr_model, (const char *const *)lines, (int)n, &o, out, flags, err, sizeof err);
    if (rc != 0) fprintf(stderr, "fuzz: translate failed: %s\n", err);
    FZ_CHECK(rc == 0);
    for (size_t i = 0; i < n; i++) {
        FZ_CHECK(out[i] && s2s_utf8_valid(out[i], strlen(out[i])));
        int bad = !s2s_utf8_valid(lines[i], strlen(lines[i]));
        FZ_CHECK(!!(flags[i] & S2S_LINE_BAD_UTF8) == bad);
        if (flags[i] & S2S_LINE_TRUNCATED) FZ_CHECK(strlen(lines[i]) >= 32); /* > max_len - 1 tokens */
    }
    if (check_batch) { /* batching must not change the output */
        o.batch = 1;
        FZ_CHECK(s2s_translate(fz_tr_model, (const char *const *)lines, (int)n, &o, out1, NULL, err, sizeof err) == 0);
        for (size_t i = 0; i < n; i++) {
            if (strcmp(out[i], out1[i]) != 0)
                fprintf(stderr, "fuzz: line %zu: batch 3 gives '%s', batch 1 '%s'\n", i, out[i], out1[i]);
            FZ_CHECK(strcmp(out[i], out1[i]) == 0);
        }
    }
    for (size_t i = 0; i < n; i++) { free(out[i]); free(out1[i]); }
    free(out); free(out1); free(flags);
}

static int fz_tr_one(const uint8_t *data, size_t size) {
    fz_tr_init();
    if (size < 2) return 0;
    size_t chunk = data[0] % 9; /* 0: all lines at once */
    fz_tr_model = fz_tr_models[(data[0] / 9) % fz_tr_n_models];
    int beam = data[1] & 0x40 ? 2 : 1, check_batch = data[1] >> 7;
    int max_len = 1 + (data[1] & 0x3f) % 40;
    data += 2; size -= 2;
    /* fmemopen gets a private copy (it needs a non-empty buffer: an empty
     * input is one byte with that byte consumed) */
    char *buf = fz_strndup(data, size);
    FILE *f = fmemopen(buf, size ? size : 1, "r");
    FZ_CHECK(f);
    if (size == 0) (void)fgetc(f);
    /* read in chunks as `s2s translate` streams stdin; translate the lines of
     * all chunks together (each call sets up a 64 MB graph arena, which under
     * ASan costs more than decoding these lines) */
    char **all = NULL;
    size_t n_all = 0;
    int eof = 0;
    while (!eof) {
        size_t n = 0;
        char err[256] = "";
        char **lines = s2s_read_lines_from(f, "<fuzz>", chunk, &n, &eof, err, sizeof err);
        if (!lines) { FZ_CHECK(err[0] != '\0'); break; }
        FZ_CHECK(chunk == 0 || n <= chunk);
        FZ_CHECK(eof || n == chunk);
        all = realloc(all, (n_all + n + 1) * sizeof *all);
        FZ_CHECK(all);
        for (size_t i = 0; i < n; i++) {
            FZ_CHECK(lines[i] && !strchr(lines[i], '\n'));
            all[n_all++] = lines[i];
        }
        free(lines); /* the strings now belong to all */
    }
    fz_tr_translate(all, n_all < FZ_TR_MAX_LINES ? n_all : FZ_TR_MAX_LINES, beam, max_len, check_batch);
    s2s_free_lines(all, n_all);
    fclose(f);
    free(buf);
    return 0;
}

#ifndef S2S_FUZZ_NO_MAIN
int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc; (void)argv;
    fz_tr_init();
    return 0;
}
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) { return fz_tr_one(data, size); }
#endif
