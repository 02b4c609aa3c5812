/* make_seeds.c - writes the seed corpora of the fuzz harnesses (fuzz/corpus/),
 * small valid inputs that the fuzzer mutates: tiny model files, tokenizer blobs
 * of each kind, config JSON, train config files and text lines.
 *
 *   bash fuzz/run.sh seeds          (builds this and runs it on fuzz/corpus)
 *
 * Deterministic: the same library gives the same bytes. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "config.h"
#include "model.h"
#include "safetensors.h"
#include "shortlist.h"
#include "tokenizer.h"

static const char *outdir;

static void put(const char *harness, const char *name, const void *data, size_t n) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", outdir, harness);
    if (mkdir(path, 0755) != 0 && errno != EEXIST) { perror(path); exit(1); }
    snprintf(path, sizeof path, "%s/%s/%s", outdir, harness, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, n, f) != n || fclose(f) != 0) { perror(path); exit(1); }
}

static void put_str(const char *harness, const char *name, const char *s) { put(harness, name, s, strlen(s)); }
/* a string literal, NUL bytes included (seeds start with mode bytes that may be 0) */
#define PUT_LIT(harness, name, lit) put(harness, name, lit, sizeof(lit) - 1)

static const char *const SRC[] = {
    "hello world", "the quick brown fox", "jumps over the lazy dog", "ca\xc3\xb1\xc3\xb3n", "abc def",
    "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e", "x y z", "0123456789", "a,b.c!d?", "hello hello world",
};
static const char *const TGT[] = {
    "hh ah0 l ow1", "dh ax0 k w ih1 k", "jh ah1 m p s", "k ae1 n y ow1 n", "ey1 b iy1 s iy1",
    "n ih1 hh ow1 n", "eh1 k s", "z ih1 r ow0", "ey1 b iy1", "hh ah0 l ow1 hh ah0",
};
#define NLINES (sizeof SRC / sizeof SRC[0])

static s2s_tokenizer *learn(s2s_tok_kind k, const char *const *lines, size_t n, int vocab) {
    char err[256];
    s2s_tokenizer *t = s2s_tok_learn(k, lines, n, vocab, 1, err, sizeof err);
    if (!t) { fprintf(stderr, "make_seeds: %s\n", err); exit(1); }
    return t;
}

/* Save a model built from cfg (vocab sizes filled in) to the safetensors corpus. */
static void model_seed(const char *name, s2s_config c, s2s_tokenizer *st, s2s_tokenizer *tt, int fp16,
                       int with_extra) {
    char err[512], path[1024];
    c.src_vocab = s2s_tok_vocab_size(st);
    c.tgt_vocab = s2s_tok_vocab_size(tt);
    if (s2s_config_check(&c, err, sizeof err) != 0) { fprintf(stderr, "make_seeds: %s\n", err); exit(1); }
    s2s_model *m = s2s_model_create(&c, st, tt, 3);
    snprintf(path, sizeof path, "%s/safetensors/%s", outdir, name);
    float moment[4] = {0.5f, -0.25f, 0.125f, 0};
    s2s_extra_tensor ex[1] = {{"opt.m.dec.ln.bias", moment, 1, {4, 0, 0, 0}}};
    const char *kv[2] = {"s2s.trainer", "{\"step\":3,\"epoch\":0}"};
    if (with_extra) m->train_meta = strdup("{\"steps\":3,\"dev_loss\":1.5}");
    if (s2s_model_save(m, path, ex, with_extra ? 1 : 0, kv, with_extra ? 1 : 0, fp16, err, sizeof err) != 0) {
        fprintf(stderr, "make_seeds: %s\n", err);
        exit(1);
    }
    s2s_model_free(m); /* frees the tokenizers (a shared one once) */
}

static void safetensors_seeds(void) {
    char path[1024];
    snprintf(path, sizeof path, "%s/safetensors", outdir);
    if (mkdir(path, 0755) != 0 && errno != EEXIST) { perror(path); exit(1); }
    s2s_config c;
    s2s_config_default(&c);
    c.d_model = 8; c.n_heads = 2; c.d_ff = 16; c.enc_layers = 1; c.dec_layers = 1; c.max_len = 16;
    model_seed("model_f32.safetensors", c, learn(S2S_TOK_CHAR, SRC, NLINES, 0),
               learn(S2S_TOK_SYMBOL, TGT, NLINES, 0), 0, 0);
    model_seed("model_f16.safetensors", c, learn(S2S_TOK_CHAR, SRC, NLINES, 0),
               learn(S2S_TOK_SYMBOL, TGT, NLINES, 0), 1, 0);
    model_seed("model_train.safetensors", c, learn(S2S_TOK_CHAR, SRC, NLINES, 0),
               learn(S2S_TOK_SYMBOL, TGT, NLINES, 0), 0, 1);
    /* joint BPE vocabulary, shared embeddings, gelu, no encoder layers */
    const char *all[2 * NLINES];
    for (size_t i = 0; i < NLINES; i++) { all[i] = SRC[i]; all[NLINES + i] = TGT[i]; }
    s2s_tokenizer *j = learn(S2S_TOK_BPE, all, 2 * NLINES, 64);
    s2s_config g = c;
    g.d_model = 4; g.n_heads = 1; g.d_ff = 4; g.enc_layers = 0; g.share_src_emb = 1;
    g.activation = S2S_ACT_GELU;
    model_seed("model_bpe_shared.safetensors", g, j, j, 0, 0);
    /* recurrent decoders, where this build has them (the config is read from
     * JSON so that this file also builds against versions without them) */
    static const char *const rnn[][2] = {
        {"model_ssru.safetensors", "\"decoder\":\"ssru\",\"dec_ffn\":0"},
        {"model_gru.safetensors", "\"decoder\":\"gru\""},
        {"model_lstm.safetensors", "\"decoder\":\"lstm\",\"dec_ffn\":0"},
    };
    for (size_t k = 0; k < sizeof rnn / sizeof rnn[0]; k++) {
        char js[512], err[256];
        snprintf(js, sizeof js,
                 "{\"d_model\":8,\"n_heads\":2,\"d_ff\":16,\"enc_layers\":1,\"dec_layers\":1,\"src_vocab\":5,"
                 "\"tgt_vocab\":5,\"max_len\":16,\"activation\":\"relu\",%s}", rnn[k][1]);
        s2s_config r;
        if (s2s_config_from_json(&r, js, strlen(js), err, sizeof err) != 0) {
            fprintf(stderr, "make_seeds: no %s (%s)\n", rnn[k][0], err);
            continue;
        }
        model_seed(rnn[k][0], r, learn(S2S_TOK_CHAR, SRC, NLINES, 0), learn(S2S_TOK_SYMBOL, TGT, NLINES, 0), 0, 0);
    }
    /* a plain safetensors file with every dtype, a scalar and an empty tensor */
    s2s_st_writer *w = s2s_st_writer_new();
    static const unsigned char bytes[64] = {0, 0, 128, 63, 0, 0, 0, 64, 0, 60, 0, 192, 1, 2, 3, 4, 5, 6, 7, 8};
    for (int d = 0; d < S2S_DT_COUNT; d++) {
        int64_t shape[2] = {2, 4}; /* 8 elements, at most 64 bytes */
        s2s_st_writer_add(w, s2s_dtype_name(d), d, 2, shape, bytes);
    }
    int64_t empty[2] = {0, 3};
    s2s_st_writer_add(w, "empty", S2S_DT_F32, 2, empty, NULL);
    s2s_st_writer_add(w, "scalar", S2S_DT_F32, 0, NULL, bytes);
    s2s_st_writer_meta(w, "format", "pt");
    s2s_st_writer_meta(w, "note", "caf\xc3\xa9 \"quoted\"\n");
    snprintf(path, sizeof path, "%s/safetensors/dtypes.safetensors", outdir);
    char err[512];
    if (s2s_st_writer_save(w, path, err, sizeof err) != 0) { fprintf(stderr, "make_seeds: %s\n", err); exit(1); }
    s2s_st_writer_free(w);
    /* a lexical shortlist (shortlist.h): 6 source ids, 3 with candidates, 2 frequent */
    int32_t offsets[7] = {0, 0, 0, 0, 0, 2, 3}, ids[3] = {5, 4, 6}, freq[2] = {4, 7};
    s2s_shortlist sl = {6, 9, 2, 2, 5, offsets, ids, freq, 0x0123456789abcdefULL, 0xfedcba9876543210ULL, 0, 0};
    snprintf(path, sizeof path, "%s/safetensors/shortlist.safetensors", outdir);
    if (s2s_shortlist_save(&sl, path, err, sizeof err) != 0) { fprintf(stderr, "make_seeds: %s\n", err); exit(1); }
}

static void tok_seed(const char *name, s2s_tokenizer *t, const char *text) {
    size_t n;
    char *blob = s2s_tok_serialize(t, &n);
    size_t tl = strlen(text);
    char *buf = malloc(n + 1 + tl);
    memcpy(buf, blob, n);
    buf[n] = '\0';
    memcpy(buf + n + 1, text, tl);
    put("tokenizer", name, buf, n + 1 + tl);
    free(buf);
    free(blob);
    s2s_tok_free(t);
}

static void tokenizer_seeds(void) {
    const char *text = "hello world, the lazy fox \xc3\xb1 \xe6\x97\xa5\xe6\x9c\xac \xe2\x96\x81 x";
    tok_seed("char.tok", learn(S2S_TOK_CHAR, SRC, NLINES, 0), text);
    tok_seed("symbol.tok", learn(S2S_TOK_SYMBOL, TGT, NLINES, 0), "hh ah0 l ow1 zz\tk  s");
    tok_seed("bpe.tok", learn(S2S_TOK_BPE, SRC, NLINES, 60), text);
    tok_seed("bpe_small.tok", learn(S2S_TOK_BPE, SRC, 3, 0), "hello the quick");
    /* learn mode: kind byte, vocab byte, min_freq byte, then lines */
    PUT_LIT("tokenizer", "learn_bpe.txt", "\x03\x40\x01the cat sat on the mat\nthe dog sat on the log\n\xc3\xb1u \xc3\xb1u\n\nthe end");
    PUT_LIT("tokenizer", "learn_char.txt", "\x01\x00\x00hello world\n\xe6\x97\xa5\xe6\x9c\xac\n  spaced   out  ");
    PUT_LIT("tokenizer", "learn_symbol.txt", "\x02\x10\x02hh ah0 l ow1\nw er1 l d\nhh ah0 l ow1 w er1 l d");
}

static void config_seeds(void) {
    s2s_config c;
    s2s_config_default(&c);
    c.src_vocab = 40; c.tgt_vocab = 60;
    char *js = s2s_config_to_json(&c);
    put_str("config", "default.json", js);
    free(js);
    c.share_src_emb = 1; c.src_vocab = 60; c.activation = S2S_ACT_GELU; c.enc_layers = 0;
    js = s2s_config_to_json(&c);
    put_str("config", "shared_gelu.json", js);
    free(js);
    PUT_LIT("config", "bools.json", "{\"d_model\": 8, \"n_heads\": 2, \"d_ff\": 1.6e1, \"enc_layers\": 1, \"dec_layers\": 1,\n"
            " \"src_vocab\": 5, \"tgt_vocab\": 5, \"max_len\": 2, \"share_src_emb\": true, \"activation\": \"relu\"}");
    PUT_LIT("config", "rnn.json",
            "{\"d_model\":16,\"n_heads\":2,\"d_ff\":32,\"enc_layers\":1,\"dec_layers\":2,\"src_vocab\":9,"
            "\"tgt_vocab\":9,\"max_len\":32,\"activation\":\"gelu\",\"decoder\":\"lstm\",\"dec_ffn\":0}");
    PUT_LIT("config", "json_misc.json", "[null, true, false, -0, 1.5e-300, 123456789012345678901234567890, \"\\u00e9\\ud83d\\ude00\\n\\\"\",\n"
            " {\"a\": {\"b\": [[], {}]}, \"a\": 2, \"\\u0000k\": \"v\\u0000\"}, -9223372036854775808, 1E+2]");
    PUT_LIT("config", "train.conf", "# a train config\ntrain-src = data/x.src\ntrain-tgt = data/x.tgt\nsrc-tok = char\ntgt-tok = symbol\n"
            "d-model = 64\nheads = 4\nff = 128\nenc-layers = 2\ndec-layers = 2\nactivation = gelu\nmax-len = 64\n"
            "lr = 1e-3\nwarmup = 100\ndropout = 0.1\nlabel-smoothing = 0.1\ntokens-per-batch = 600\n"
            "metric = wer\nfp16 = true\njoint-vocab = no\nseed = 7\n");
    PUT_LIT("config", "train_bad.conf", "d-model = 65537\nno equals sign\n  = empty key\nquiet=maybe\r\n");
}

static void translate_seeds(void) {
    /* byte 0: model (n / 9) and chunk size (n % 9, 0 = all); byte 1: bit 7 batch check, bit 6 beam 2,
     * bits 0..5 the output length cap (1 + n % 40) */
    PUT_LIT("translate_lines", "basic.txt", "\x00\x93hello world\nthe quick brown fox\n\nabc def\n");
    PUT_LIT("translate_lines", "utf8.txt", "\x02\xe7" "ca\xc3\xb1\xc3\xb3n \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\r\n\xe2\x96\x81\xe2\x96\x81 x\n"
            "bad \xff\xfe utf8 \xc3\n\xed\xa0\x80 surrogate\n");
    PUT_LIT("translate_lines", "long.txt", "\x03\x45the quick brown fox jumps over the lazy dog the quick brown fox jumps over the lazy dog\n"
            "   \t  \nx\ny\nz\n0123456789012345678901234567890123456789");
    PUT_LIT("translate_lines", "nul.txt", "\x01\x01" "a\n\0b\n");
    PUT_LIT("translate_lines", "model1.txt", "\x09\xd3hello world\nthe quick brown fox\nabc\n");
    PUT_LIT("translate_lines", "model2.txt", "\x13\xe3" "caf\xc3\xa9 x y z\n\nhello hello hello\n");
    PUT_LIT("translate_lines", "model3.txt", "\x1b\x9fjumps over the lazy dog\n0123456789\n");
}

int main(int argc, char **argv) {
    outdir = argc > 1 ? argv[1] : "fuzz/corpus";
    if (mkdir(outdir, 0755) != 0 && errno != EEXIST) { perror(outdir); return 1; }
    safetensors_seeds();
    tokenizer_seeds();
    config_seeds();
    translate_seeds();
    return 0;
}
