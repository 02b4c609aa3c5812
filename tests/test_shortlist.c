/* test_shortlist.c - lexical shortlists (src/shortlist.c, Criterion): IBM Model 1 finds the
 * word-for-word translations of a synthetic corpus, the frequent list, skipped lines, save /
 * load round trip, every corrupt-file class failing with a one-line message (truncations,
 * byte flips, wrong dtypes / shapes / metadata, a model file, another vocabulary), build
 * errors, and the `s2s shortlist` command (the binary in $S2S_BIN). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "model.h"
#include "safetensors.h"
#include "shortlist.h"
#include "test_util.h"
#include "tokenizer.h"

/* The corpus: every source line is 'a' plus 2..5 letters of b..h (any order); its target is
 * the symbols of the letters in reverse order, 'a' -> "x", b..h -> "B".."H". So 'a' always
 * co-occurs with "x" and "x" with every other letter, but only 'a' explains it. */
#define NLINES 300

typedef struct {
    char *dir, *src, *tgt;
    s2s_model *m;
} fixture;

static fixture fx;

static void make_corpus(char ***src, char ***tgt, int n, uint64_t seed) {
    uint64_t rng = seed;
    *src = s2s_xmalloc((size_t)n * sizeof(char *));
    *tgt = s2s_xmalloc((size_t)n * sizeof(char *));
    for (int i = 0; i < n; i++) {
        char s[8], t[32];
        int len = 3 + (int)(s2s_rng_next(&rng) % 4);
        int apos = (int)(s2s_rng_next(&rng) % (uint64_t)len);
        for (int j = 0; j < len; j++) s[j] = j == apos ? 'a' : (char)('b' + s2s_rng_next(&rng) % 7);
        s[len] = '\0';
        int o = 0;
        for (int j = len - 1; j >= 0; j--) {
            if (o) t[o++] = ' ';
            t[o++] = s[j] == 'a' ? 'x' : (char)(s[j] - 'a' + 'A');
        }
        t[o] = '\0';
        (*src)[i] = s2s_xstrdup(s);
        (*tgt)[i] = s2s_xstrdup(t);
    }
}

/* A tiny model whose tokenizers are learned on lines (plus extra_src: source text that never
 * occurs in the training files, so its pieces are in the vocabulary but unseen). */
static s2s_model *model_for(char **src, char **tgt, int n, const char *extra_src) {
    char err[256];
    const char **s = s2s_xmalloc((size_t)(n + 1) * sizeof *s);
    for (int i = 0; i < n; i++) s[i] = src[i];
    s[n] = extra_src ? extra_src : "a";
    s2s_tokenizer *st = s2s_tok_learn(S2S_TOK_CHAR, s, (size_t)n + 1, 0, 1, err, sizeof err);
    s2s_tokenizer *tt = s2s_tok_learn(S2S_TOK_SYMBOL, (const char *const *)tgt, (size_t)n, 0, 1, err, sizeof err);
    free(s);
    cr_assert(st && tt, "%s", err);
    s2s_config c;
    s2s_config_default(&c);
    c.d_model = 16; c.n_heads = 2; c.d_ff = 24; c.enc_layers = 1; c.dec_layers = 1; c.max_len = 32;
    c.src_vocab = s2s_tok_vocab_size(st);
    c.tgt_vocab = s2s_tok_vocab_size(tt);
    cr_assert_eq(s2s_config_check(&c, err, sizeof err), 0, "%s", err);
    return s2s_model_create(&c, st, tt, 5);
}

static void write_lines(const char *path, char **lines, int n) {
    FILE *f = fopen(path, "w");
    cr_assert(f);
    for (int i = 0; i < n; i++) fprintf(f, "%s\n", lines[i]);
    fclose(f);
}

static void setup(void) {
    fx.dir = tu_tmpdir();
    cr_assert(fx.dir);
    fx.src = tu_path(fx.dir, "train.src");
    fx.tgt = tu_path(fx.dir, "train.tgt");
    char **src, **tgt;
    make_corpus(&src, &tgt, NLINES, 7);
    write_lines(fx.src, src, NLINES);
    write_lines(fx.tgt, tgt, NLINES);
    fx.m = model_for(src, tgt, NLINES, "z");
    for (int i = 0; i < NLINES; i++) { free(src[i]); free(tgt[i]); }
    free(src); free(tgt);
}

static void teardown(void) {
    s2s_model_free(fx.m);
    tu_rmrf(fx.dir);
    free(fx.dir); free(fx.src); free(fx.tgt);
}

TestSuite(shortlist, .init = setup, .fini = teardown);

static s2s_shortlist *build(int top, int nfreq, int iters, int max_lines) {
    char err[512];
    s2s_shortlist *sl = s2s_shortlist_build(fx.m, fx.src, fx.tgt, top, nfreq, iters, max_lines, 1, err, sizeof err);
    cr_assert(sl, "%s", err);
    return sl;
}

static int sid(const char *piece) { int id = s2s_tok_id(fx.m->src_tok, piece); cr_assert(id >= 0, "%s", piece); return id; }
static int tid(const char *piece) { int id = s2s_tok_id(fx.m->tgt_tok, piece); cr_assert(id >= 0, "%s", piece); return id; }

Test(shortlist, ibm1_finds_translations) {
    s2s_shortlist *sl = build(3, 4, 5, 0);
    cr_assert_eq(sl->src_vocab, fx.m->cfg.src_vocab);
    cr_assert_eq(sl->tgt_vocab, fx.m->cfg.tgt_vocab);
    cr_assert_eq(sl->n_pairs, NLINES);
    cr_assert_eq(sl->n_skipped, 0);
    cr_assert_eq(sl->top, 3);
    cr_assert_eq(sl->iters, 5);
    const char *letters = "abcdefgh";
    for (const char *c = letters; *c; c++) {
        char sp[2] = {*c, 0}, tp[2] = {*c == 'a' ? 'x' : (char)(*c - 'a' + 'A'), 0};
        int s = sid(sp);
        cr_assert_eq(sl->offsets[s + 1] - sl->offsets[s], 3, "'%s' has %d candidates", sp, sl->offsets[s + 1] - sl->offsets[s]);
        int first = sl->ids[sl->offsets[s]];
        cr_assert_eq(first, tid(tp), "best translation of '%s' is '%s', expected '%s'", sp,
                     s2s_tok_piece(fx.m->tgt_tok, first), tp);
    }
    /* unseen ('z'), special and <unk> source ids have no candidates */
    int z = sid("z");
    cr_assert_eq(sl->offsets[z + 1], sl->offsets[z]);
    for (int s = 0; s < S2S_NSPECIAL; s++) cr_assert_eq(sl->offsets[s + 1], sl->offsets[s]);
    /* no special target ids anywhere; candidates of a row distinct */
    for (int s = 0; s < sl->src_vocab; s++)
        for (int i = sl->offsets[s]; i < sl->offsets[s + 1]; i++) {
            cr_assert(sl->ids[i] >= S2S_NSPECIAL && sl->ids[i] < sl->tgt_vocab);
            for (int j = sl->offsets[s]; j < i; j++) cr_assert_neq(sl->ids[i], sl->ids[j]);
        }
    /* "x" is in every target line: the most frequent */
    cr_assert_eq(sl->n_frequent, 4);
    cr_assert_eq(sl->freq[0], tid("x"));
    for (int i = 0; i < sl->n_frequent; i++) cr_assert(sl->freq[i] >= S2S_NSPECIAL);
    s2s_shortlist_free(sl);
    /* more frequent ids asked for than there are: all 8 seen target ids; top larger than any row */
    sl = build(100, 1000, 1, 0);
    cr_assert_eq(sl->n_frequent, 8);
    cr_assert_eq(sl->offsets[sid("a") + 1] - sl->offsets[sid("a")], 8);
    s2s_shortlist_free(sl);
}

Test(shortlist, skips_bad_pairs_and_max_lines) {
    /* CRLF, an empty side, invalid UTF-8, only unknown characters ('q' -> <unk>), a NUL byte,
     * then two good lines, one of 100000 characters */
    FILE *fs = fopen(fx.src, "wb"), *ft = fopen(fx.tgt, "wb");
    cr_assert(fs && ft);
    static const char lines[] = "ab\r\n\nb\xff\nqqq\nb\0c\nbc\n";
    fwrite(lines, 1, sizeof lines - 1, fs);
    for (int i = 0; i < 100000; i++) fputc('a' + i % 3, fs);
    fputc('\n', fs);
    fclose(fs);
    fputs("B x\r\nx\nB\nB\nB\nB C\nx B C\n", ft);
    fclose(ft);
    char err[512];
    s2s_shortlist *sl = s2s_shortlist_build(fx.m, fx.src, fx.tgt, 5, 10, 3, 0, 1, err, sizeof err);
    cr_assert(sl, "%s", err);
    cr_assert_eq(sl->n_pairs, 3, "%ld pairs", sl->n_pairs); /* "ab", "bc", the long line */
    cr_assert_eq(sl->n_skipped, 4, "%ld skipped", sl->n_skipped);
    s2s_shortlist_free(sl);
    sl = s2s_shortlist_build(fx.m, fx.src, fx.tgt, 5, 10, 3, 2, 1, err, sizeof err); /* first 2 lines */
    cr_assert(sl, "%s", err);
    cr_assert_eq(sl->n_pairs, 1);
    cr_assert_eq(sl->n_skipped, 1);
    int bx = tid("B") < tid("x") ? tid("B") : tid("x");
    cr_assert_eq(sl->ids[sl->offsets[sid("a")]], bx); /* "ab" / "B x": a tie, the lower id first */
    s2s_shortlist_free(sl);
}

Test(shortlist, save_load_round_trip) {
    s2s_shortlist *a = build(4, 5, 3, 0);
    char err[512], *p = tu_path(fx.dir, "sl.safetensors");
    cr_assert_eq(s2s_shortlist_save(a, p, err, sizeof err), 0, "%s", err);
    for (int with_model = 0; with_model < 2; with_model++) {
        s2s_shortlist *b = s2s_shortlist_load(p, with_model ? fx.m : NULL, err, sizeof err);
        cr_assert(b, "%s", err);
        cr_assert_eq(b->src_vocab, a->src_vocab);
        cr_assert_eq(b->tgt_vocab, a->tgt_vocab);
        cr_assert_eq(b->top, a->top);
        cr_assert_eq(b->n_frequent, a->n_frequent);
        cr_assert_eq(b->iters, a->iters);
        cr_assert_eq(b->src_hash, a->src_hash);
        cr_assert_eq(b->tgt_hash, a->tgt_hash);
        cr_assert_eq(b->src_hash, s2s_shortlist_vocab_hash(fx.m->src_tok));
        cr_assert_eq(memcmp(b->offsets, a->offsets, ((size_t)a->src_vocab + 1) * 4), 0);
        cr_assert_eq(memcmp(b->ids, a->ids, (size_t)a->offsets[a->src_vocab] * 4), 0);
        cr_assert_eq(memcmp(b->freq, a->freq, (size_t)a->n_frequent * 4), 0);
        s2s_shortlist_free(b);
    }
    /* the file is plain safetensors with the documented metadata */
    s2s_st_file *f = s2s_st_open(p, err, sizeof err);
    cr_assert(f, "%s", err);
    cr_assert_str_eq(s2s_st_meta(f, "format"), "s2s-shortlist");
    cr_assert_str_eq(s2s_st_meta(f, "version"), "1");
    cr_assert_eq(strlen(s2s_st_meta(f, "tgt_vocab_hash")), 16);
    cr_assert_eq(s2s_st_find(f, "ids")->dtype, S2S_DT_I32);
    s2s_st_close(f);
    s2s_shortlist_free(a);
    free(p);
}

Test(shortlist, vocab_hash) {
    /* FNV-1a 64 of "<pad>\0<s>\0</s>\0<unk>\0" followed by the pieces: order matters */
    uint64_t h = s2s_shortlist_vocab_hash(fx.m->tgt_tok);
    uint64_t r = 14695981039346656037ULL;
    for (int i = 0; i < s2s_tok_vocab_size(fx.m->tgt_tok); i++) {
        const char *p = s2s_tok_piece(fx.m->tgt_tok, i);
        for (size_t j = 0; j <= strlen(p); j++) { r ^= (unsigned char)p[j]; r *= 1099511628211ULL; }
    }
    cr_assert_eq(h, r);
    cr_assert_neq(h, s2s_shortlist_vocab_hash(fx.m->src_tok));
}

/* load must fail with a one-line message containing needle */
static void expect_load_fail(const char *path, const s2s_model *m, const char *needle) {
    char err[512] = "";
    s2s_shortlist *sl = s2s_shortlist_load(path, m, err, sizeof err);
    cr_assert_null(sl, "loading should fail (%s)", needle);
    cr_assert(strstr(err, needle) != NULL, "message '%s' should mention '%s'", err, needle);
    cr_assert_null(strchr(err, '\n'), "one line: '%s'", err);
}

/* Write a shortlist file by hand: a's arrays, with one change. */
enum { MUT_NONE, MUT_IDS_SHORT, MUT_IDS_F32, MUT_OFF_2D, MUT_OFF_SHORT, MUT_NO_FREQ, MUT_VERSION, MUT_NO_TOP, MUT_BAD_HASH,
       MUT_BAD_INT };
static void write_mut(const char *path, const s2s_shortlist *a, int mut) {
    s2s_st_writer *w = s2s_st_writer_new();
    int64_t so[2] = {(int64_t)a->src_vocab + 1, 1}, si = a->offsets[a->src_vocab], sf = a->n_frequent;
    if (mut == MUT_OFF_SHORT) so[0]--;
    if (mut == MUT_IDS_SHORT) si--;
    s2s_st_writer_add(w, "offsets", S2S_DT_I32, mut == MUT_OFF_2D ? 2 : 1, so, a->offsets);
    s2s_st_writer_add(w, "ids", mut == MUT_IDS_F32 ? S2S_DT_F32 : S2S_DT_I32, 1, &si, a->ids);
    if (mut != MUT_NO_FREQ) s2s_st_writer_add(w, "frequent", S2S_DT_I32, 1, &sf, a->freq);
    char v[64];
    s2s_st_writer_meta(w, "format", "s2s-shortlist");
    s2s_st_writer_meta(w, "version", mut == MUT_VERSION ? "2" : "1");
    snprintf(v, sizeof v, "%d", a->src_vocab); s2s_st_writer_meta(w, "src_vocab", v);
    snprintf(v, sizeof v, "%d", a->tgt_vocab); s2s_st_writer_meta(w, "tgt_vocab", mut == MUT_BAD_INT ? "12x" : v);
    snprintf(v, sizeof v, "%d", a->top); if (mut != MUT_NO_TOP) s2s_st_writer_meta(w, "top", v);
    snprintf(v, sizeof v, "%d", a->n_frequent); s2s_st_writer_meta(w, "frequent", v);
    snprintf(v, sizeof v, "%d", a->iters); s2s_st_writer_meta(w, "iters", v);
    snprintf(v, sizeof v, "%016llx", (unsigned long long)a->tgt_hash); s2s_st_writer_meta(w, "tgt_vocab_hash", v);
    snprintf(v, sizeof v, "%016llx", (unsigned long long)a->src_hash);
    s2s_st_writer_meta(w, "src_vocab_hash", mut == MUT_BAD_HASH ? "xyz" : v);
    char err[512];
    cr_assert_eq(s2s_st_writer_save(w, path, err, sizeof err), 0, "%s", err);
    s2s_st_writer_free(w);
}

Test(shortlist, load_rejects_bad_files) {
    s2s_shortlist *a = build(4, 5, 2, 0);
    char err[512], *p = tu_path(fx.dir, "sl.safetensors"), *q = tu_path(fx.dir, "bad.safetensors");
    cr_assert_eq(s2s_shortlist_save(a, p, err, sizeof err), 0, "%s", err);
    char *missing = tu_path(fx.dir, "missing.safetensors");
    expect_load_fail(missing, NULL, "missing.safetensors");
    free(missing);
    /* every truncation fails cleanly */
    FILE *f = fopen(p, "rb");
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *bytes = s2s_xmalloc((size_t)n);
    cr_assert_eq(fread(bytes, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    for (long k = 0; k < n; k += (k < 64 ? 1 : 7)) {
        f = fopen(q, "wb");
        fwrite(bytes, 1, (size_t)k, f);
        fclose(f);
        cr_assert_null(s2s_shortlist_load(q, NULL, err, sizeof err), "truncated at %ld loads", k);
        cr_assert(strstr(err, "bad.safetensors") != NULL, "%s", err);
    }
    /* random byte flips: fail cleanly or load something consistent */
    uint64_t rng = 11;
    unsigned char *mod = s2s_xmalloc((size_t)n);
    for (int trial = 0; trial < 300; trial++) {
        memcpy(mod, bytes, (size_t)n);
        for (int j = 0; j < 3; j++) mod[s2s_rng_next(&rng) % (uint64_t)n] ^= (unsigned char)(1 + s2s_rng_next(&rng) % 255);
        f = fopen(q, "wb");
        fwrite(mod, 1, (size_t)n, f);
        fclose(f);
        s2s_shortlist *b = s2s_shortlist_load(q, fx.m, err, sizeof err);
        if (b) {
            for (int s = 0; s < b->src_vocab; s++) cr_assert(b->offsets[s] <= b->offsets[s + 1]);
            for (int i = 0; i < b->offsets[b->src_vocab]; i++) cr_assert(b->ids[i] >= 0 && b->ids[i] < b->tgt_vocab);
            s2s_shortlist_free(b);
        } else {
            cr_assert(err[0] && !strchr(err, '\n'), "%s", err);
        }
    }
    free(mod);
    /* a structurally valid file with bad contents */
    struct { int mut; const char *needle; } cases[] = {
        {MUT_IDS_SHORT, "offsets end at"},
        {MUT_IDS_F32, "'ids' is F32"},
        {MUT_OFF_2D, "'offsets' has 2 dimensions"},
        {MUT_OFF_SHORT, "'offsets' has"},
        {MUT_NO_FREQ, "no tensor 'frequent'"},
        {MUT_VERSION, "version '2'"},
        {MUT_NO_TOP, "no 'top'"},
        {MUT_BAD_HASH, "src_vocab_hash"},
        {MUT_BAD_INT, "'tgt_vocab' = '12x'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        write_mut(q, a, cases[i].mut);
        expect_load_fail(q, NULL, cases[i].needle);
    }
    write_mut(q, a, MUT_NONE); /* the hand-written file itself is fine */
    s2s_shortlist *b = s2s_shortlist_load(q, fx.m, err, sizeof err);
    cr_assert(b, "%s", err);
    s2s_shortlist_free(b);
    /* bad ids / offsets, saved through the normal writer */
    int s = sid("b"), off = a->offsets[s];
    int32_t keep = a->ids[off];
    a->ids[off] = a->tgt_vocab;
    cr_assert_eq(s2s_shortlist_save(a, q, err, sizeof err), 0, "%s", err);
    expect_load_fail(q, NULL, "outside the target vocabulary");
    a->ids[off] = keep;
    int32_t end = a->offsets[s + 1];
    a->offsets[s + 1] = end + 1; /* row s has more than top */
    cr_assert_eq(s2s_shortlist_save(a, q, err, sizeof err), 0, "%s", err);
    expect_load_fail(q, NULL, "candidates (must be 0..4)");
    a->offsets[s + 1] = a->offsets[s] - 1; /* not monotone */
    cr_assert_eq(s2s_shortlist_save(a, q, err, sizeof err), 0, "%s", err);
    expect_load_fail(q, NULL, "-1 candidates");
    a->offsets[s + 1] = end;
    int32_t f0 = a->freq[0];
    a->freq[0] = -1;
    cr_assert_eq(s2s_shortlist_save(a, q, err, sizeof err), 0, "%s", err);
    expect_load_fail(q, NULL, "frequent entry 0");
    a->freq[0] = f0;
    /* a model file is not a shortlist */
    char *mp = tu_path(fx.dir, "model.safetensors");
    cr_assert_eq(s2s_model_save(fx.m, mp, NULL, 0, NULL, 0, 0, err, sizeof err), 0, "%s", err);
    expect_load_fail(mp, NULL, "not a shortlist");
    /* another model: other vocabulary sizes, or same sizes but other pieces */
    s2s_model *other = tu_tiny_model(16, 2, 24, 1, 1, 3);
    expect_load_fail(p, other, "vocabularies of");
    s2s_model_free(other);
    a->src_hash ^= 1;
    cr_assert_eq(s2s_shortlist_save(a, q, err, sizeof err), 0, "%s", err);
    expect_load_fail(q, fx.m, "another source vocabulary");
    b = s2s_shortlist_load(q, NULL, err, sizeof err); /* no model: no vocabulary check */
    cr_assert(b, "%s", err);
    s2s_shortlist_free(b);
    free(mp); free(bytes); free(p); free(q);
    s2s_shortlist_free(a);
}

Test(shortlist, build_errors) {
    char err[512], *missing = tu_path(fx.dir, "nope.src");
    cr_assert_null(s2s_shortlist_build(fx.m, missing, fx.tgt, 5, 5, 2, 0, 1, err, sizeof err));
    cr_assert(strstr(err, "cannot open") && strstr(err, "nope.src"), "%s", err);
    cr_assert_null(s2s_shortlist_build(fx.m, fx.src, missing, 5, 5, 2, 0, 1, err, sizeof err));
    cr_assert(strstr(err, "nope.src"), "%s", err);
    char *s2 = tu_path(fx.dir, "short.src");
    tu_write(s2, "ab\nbc\n");
    cr_assert_null(s2s_shortlist_build(fx.m, s2, fx.tgt, 5, 5, 2, 0, 1, err, sizeof err));
    char want[64];
    snprintf(want, sizeof want, "has 2 lines but");
    cr_assert(strstr(err, want) && strstr(err, "300"), "%s", err);
    /* longer source than target; and a final line without "\n" still counts */
    char *t2 = tu_path(fx.dir, "short.tgt");
    tu_write(t2, "B\nC\nD");
    cr_assert_null(s2s_shortlist_build(fx.m, fx.src, t2, 5, 5, 2, 0, 1, err, sizeof err));
    cr_assert(strstr(err, "has 300 lines but") && strstr(err, "has 3"), "%s", err);
    /* but only max_lines lines are read */
    s2s_shortlist *sl = s2s_shortlist_build(fx.m, fx.src, t2, 5, 5, 2, 2, 1, err, sizeof err);
    cr_assert(sl, "%s", err);
    s2s_shortlist_free(sl);
    /* no usable pair */
    tu_write(s2, "\n\n");
    tu_write(t2, "B\nC\n");
    cr_assert_null(s2s_shortlist_build(fx.m, s2, t2, 5, 5, 2, 0, 1, err, sizeof err));
    cr_assert(strstr(err, "no usable sentence pair"), "%s", err);
    tu_write(s2, "");
    tu_write(t2, "");
    cr_assert_null(s2s_shortlist_build(fx.m, s2, t2, 5, 5, 2, 0, 1, err, sizeof err));
    cr_assert(strstr(err, "no usable sentence pair"), "%s", err);
    /* bad parameters */
    cr_assert_null(s2s_shortlist_build(fx.m, fx.src, fx.tgt, 0, 5, 2, 0, 1, err, sizeof err));
    cr_assert_null(s2s_shortlist_build(fx.m, fx.src, fx.tgt, 5, 5, 0, 0, 1, err, sizeof err));
    free(missing); free(s2); free(t2);
}

/* `s2s shortlist` (the binary in $S2S_BIN) */
static int run_cli(const char *args, char **out) {
    char *cmd;
    cr_assert(asprintf(&cmd, "%s shortlist %s", tu_bin(), args) > 0);
    int st = tu_run(cmd, out);
    free(cmd);
    return st;
}

static void cli_fail(const char *args, int status, const char *needle) {
    char *out;
    int st = run_cli(args, &out);
    cr_assert_eq(st, status, "'%s': status %d, expected %d: %s", args, st, status, out);
    cr_assert(strstr(out, needle), "'%s': '%s' should mention '%s'", args, out, needle);
    cr_assert(strncmp(out, "s2s shortlist: ", 15) == 0, "'%s': '%s'", args, out);
    char *nl = strchr(out, '\n');
    cr_assert(nl == NULL || nl[1] == '\0', "'%s': one line: '%s'", args, out);
    free(out);
}

Test(shortlist, cli) {
    char err[512], *mp = tu_path(fx.dir, "model.safetensors"), *op = tu_path(fx.dir, "out.safetensors"), *a, *out;
    cr_assert_eq(s2s_model_save(fx.m, mp, NULL, 0, NULL, 0, 0, err, sizeof err), 0, "%s", err);
    cr_assert_eq(run_cli("--help", &out), 0, "%s", out);
    cr_assert(strstr(out, "usage: s2s shortlist"), "%s", out);
    free(out);
    cli_fail("--frobnicate", 2, "unknown option '--frobnicate'");
    cli_fail("--top", 2, "needs a value");
    cli_fail("--top 0", 2, "out of range");
    cli_fail("--iters many", 2, "expected an integer");
    cli_fail("-m x.safetensors", 2, "need -m MODEL");
    cr_assert(asprintf(&a, "-m %s --train-src %s/nope --train-tgt %s -o %s", mp, fx.dir, fx.tgt, op) > 0);
    cli_fail(a, 1, "cannot open");
    free(a);
    cr_assert(asprintf(&a, "-m %s/nope.safetensors --train-src %s --train-tgt %s -o %s", fx.dir, fx.src, fx.tgt, op) > 0);
    cli_fail(a, 1, "nope.safetensors");
    free(a);
    cr_assert(asprintf(&a, "-m %s --train-src %s --train-tgt %s -o %s --top 7 --frequent 3 --iters 2 --max-lines 100",
                       mp, fx.src, fx.tgt, op) > 0);
    int st = run_cli(a, &out);
    cr_assert_eq(st, 0, "%s", out);
    cr_assert(strstr(out, "EM round 2/2"), "%s", out);
    cr_assert(strstr(out, "s2s shortlist: 100 sentence pairs"), "%s", out);
    free(out); free(a);
    s2s_shortlist *sl = s2s_shortlist_load(op, fx.m, err, sizeof err);
    cr_assert(sl, "%s", err);
    cr_assert_eq(sl->top, 7);
    cr_assert_eq(sl->n_frequent, 3);
    cr_assert_eq(sl->iters, 2);
    s2s_shortlist_free(sl);
    /* --quiet: only the summary line */
    cr_assert(asprintf(&a, "-m %s --train-src %s --train-tgt %s -o %s --quiet", mp, fx.src, fx.tgt, op) > 0);
    st = run_cli(a, &out);
    cr_assert_eq(st, 0, "%s", out);
    cr_assert(strncmp(out, "s2s shortlist: 300 sentence pairs", 33) == 0 && strchr(out, '\n')[1] == '\0', "%s", out);
    free(out); free(a);
    free(mp); free(op);
}

/* `s2s translate --shortlist`: a shortlist built by the command translates every line
 * (greedy and beam; this random model's outputs need not match the full vocabulary's:
 * tests/test_shortlist_decode.c checks the decoding itself); a missing or corrupt file, or
 * one for another model, is one line and exit 1; --device cuda with it is refused (or
 * reports no CUDA: either way exit 1). */
Test(shortlist, translate_cli) {
    char err[512], *mp = tu_path(fx.dir, "model.safetensors"), *sp = tu_path(fx.dir, "sl.safetensors"), *cmd, *a, *b;
    cr_assert_eq(s2s_model_save(fx.m, mp, NULL, 0, NULL, 0, 0, err, sizeof err), 0, "%s", err);
    cr_assert(asprintf(&cmd, "%s shortlist -m %s --train-src %s --train-tgt %s -o %s --top %d --quiet", tu_bin(), mp,
                       fx.src, fx.tgt, sp, fx.m->cfg.tgt_vocab) > 0);
    cr_assert_eq(tu_run(cmd, &a), 0, "%s", a);
    free(cmd); free(a);
    for (int beam = 1; beam <= 2; beam++) {
        cr_assert(asprintf(&cmd, "head -n 20 %s | %s translate -m %s --quiet --shortlist %s --beam %d | wc -l", fx.src,
                           tu_bin(), mp, sp, beam) > 0);
        cr_assert_eq(tu_run(cmd, &b), 0, "%s", b);
        cr_assert_eq(atoi(b), 20, "beam %d: %s lines", beam, b);
        free(cmd); free(b);
    }
    /* errors: one line each, exit 1 */
    char *bad = tu_path(fx.dir, "bad.safetensors");
    tu_write(bad, "not a shortlist");
    const char *files[3] = {"/nonexistent/sl.safetensors", bad, mp /* a model, not a shortlist */};
    for (int i = 0; i < 3; i++) {
        cr_assert(asprintf(&cmd, "echo abc | %s translate -m %s --shortlist %s", tu_bin(), mp, files[i]) > 0);
        int st = tu_run(cmd, &a);
        cr_assert_eq(st, 1, "%s: exit %d: %s", files[i], st, a);
        cr_assert(strncmp(a, "s2s translate: ", 15) == 0 && strchr(a, '\n') == a + strlen(a) - 1, "%s: '%s'", files[i], a);
        free(cmd); free(a);
    }
    cr_assert(asprintf(&cmd, "echo abc | %s translate -m %s --shortlist %s --device cuda", tu_bin(), mp, sp) > 0);
    cr_assert_eq(tu_run(cmd, &a), 1, "%s", a);
    free(cmd); free(a);
    free(bad); free(mp); free(sp);
}
