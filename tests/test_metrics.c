/* test_metrics.c - BLEU/chrF against vectors written by the real sacrebleu
 * (scripts/make_metric_vectors.py -> tests/data/metrics/), and WER/PER on
 * hand-computed cases. Run from the repository root. */
#include <criterion/criterion.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "metrics.h"

#define VEC_DIR "tests/data/metrics/"

/* ------------------------------------------------------------------------ */
/* helpers                                                                  */

/* Read a file as '\n'-terminated lines (a last line without '\n' counts). */
static char **read_lines(const char *path, size_t *n_out) {
    FILE *f = fopen(path, "rb");
    cr_assert(f != NULL, "cannot open %s (run the tests from the repo root)", path);
    char **lines = NULL;
    size_t n = 0, cap = 0;
    char *buf = NULL;
    size_t bcap = 0;
    ssize_t len;
    while ((len = getline(&buf, &bcap, f)) >= 0) {
        if (len > 0 && buf[len - 1] == '\n') buf[--len] = '\0';
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            lines = realloc(lines, cap * sizeof *lines);
        }
        lines[n++] = strdup(buf);
    }
    free(buf);
    fclose(f);
    *n_out = n;
    return lines;
}

static void free_lines(char **l, size_t n) {
    for (size_t i = 0; i < n; i++) free(l[i]);
    free(l);
}

typedef struct {
    char name[64];
    int nrefs, nlines;
    double bleu, bp, ratio;
    long long sys_len, ref_len, counts[4], totals[4];
    double prec[4];
    double chrf;
    long long chrf_stats[6][3];
} expected_row;

/* Parse tests/data/metrics/expected.txt; returns the number of rows. */
static size_t read_expected(expected_row **rows_out, char *version, size_t vlen) {
    size_t n = 0;
    char **lines = read_lines(VEC_DIR "expected.txt", &n);
    expected_row *rows = calloc(n ? n : 1, sizeof *rows);
    size_t nr = 0;
    version[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        char *s = lines[i];
        if (s[0] == '#' || s[0] == '\0') continue;
        if (strncmp(s, "sacrebleu ", 10) == 0) {
            snprintf(version, vlen, "%s", s + 10);
            continue;
        }
        expected_row *r = &rows[nr];
        int off = 0;
        int got = sscanf(s, "%63s %d %d %lf %lf %lf %lld %lld %n", r->name, &r->nrefs, &r->nlines,
                         &r->bleu, &r->bp, &r->ratio, &r->sys_len, &r->ref_len, &off);
        cr_assert_eq(got, 8, "bad expected.txt line %zu", i + 1);
        char *p = s + off, *e;
        for (int k = 0; k < 4; k++, p = e) { r->counts[k] = strtoll(p, &e, 10); cr_assert(e != p); }
        for (int k = 0; k < 4; k++, p = e) { r->totals[k] = strtoll(p, &e, 10); cr_assert(e != p); }
        for (int k = 0; k < 4; k++, p = e) { r->prec[k] = strtod(p, &e); cr_assert(e != p); }
        r->chrf = strtod(p, &e);
        cr_assert(e != p);
        p = e;
        for (int k = 0; k < 18; k++, p = e) {
            r->chrf_stats[k / 3][k % 3] = strtoll(p, &e, 10);
            cr_assert(e != p, "bad chrF stats in expected.txt line %zu", i + 1);
        }
        nr++;
    }
    free_lines(lines, n);
    *rows_out = rows;
    return nr;
}

typedef struct {
    char **hyp;
    char **ref[8];
    size_t n;
} corpus_files;

static void load_corpus(corpus_files *c, const expected_row *r) {
    char path[256];
    snprintf(path, sizeof path, VEC_DIR "%s.hyp", r->name);
    c->hyp = read_lines(path, &c->n);
    cr_assert_eq(c->n, (size_t)r->nlines, "%s: %zu lines, expected %d", path, c->n, r->nlines);
    cr_assert(r->nrefs >= 1 && r->nrefs <= 8);
    for (int k = 0; k < r->nrefs; k++) {
        size_t m;
        snprintf(path, sizeof path, VEC_DIR "%s.ref%d", r->name, k + 1);
        c->ref[k] = read_lines(path, &m);
        cr_assert_eq(m, c->n, "%s: line count", path);
    }
}

static void free_corpus(corpus_files *c, int nrefs) {
    free_lines(c->hyp, c->n);
    for (int k = 0; k < nrefs; k++) free_lines(c->ref[k], c->n);
}

/* ------------------------------------------------------------------------ */
/* sacrebleu vectors                                                        */

Test(metrics, tokenize_13a_matches_sacrebleu) {
    size_t n_in, n_out;
    char **in = read_lines(VEC_DIR "tok13a.in", &n_in);
    char **out = read_lines(VEC_DIR "tok13a.out", &n_out);
    cr_assert_eq(n_in, n_out);
    cr_assert(n_in >= 50, "too few tokenizer cases (%zu)", n_in);
    size_t bad = 0;
    for (size_t i = 0; i < n_in; i++) {
        char err[128];
        char *t = s2s_bleu_tokenize_13a(in[i], err, sizeof err);
        cr_assert(t != NULL, "line %zu: %s", i + 1, err);
        if (strcmp(t, out[i]) != 0) {
            if (bad < 5)
                cr_log_error("tok13a line %zu: got [%s] want [%s]", i + 1, t, out[i]);
            bad++;
        }
        free(t);
    }
    cr_expect_eq(bad, 0, "%zu of %zu tokenizations differ from sacrebleu", bad, n_in);
    free_lines(in, n_in);
    free_lines(out, n_out);
}

Test(metrics, bleu_matches_sacrebleu) {
    expected_row *rows;
    char version[64];
    size_t nr = read_expected(&rows, version, sizeof version);
    cr_assert(nr >= 10, "expected.txt has only %zu corpora", nr);
    cr_assert(version[0] != '\0', "expected.txt does not record the sacrebleu version");
    for (size_t i = 0; i < nr; i++) {
        const expected_row *r = &rows[i];
        corpus_files c;
        load_corpus(&c, r);
        s2s_bleu_result b;
        char err[256];
        int rc = s2s_bleu(&b, (const char *const *)c.hyp, (const char *const *const *)c.ref,
                          (size_t)r->nrefs, c.n, err, sizeof err);
        cr_assert_eq(rc, 0, "%s: %s", r->name, err);
        cr_expect(fabs(b.score - r->bleu) <= 0.01, "%s: BLEU %.6f, sacrebleu %s says %.6f",
                  r->name, b.score, version, r->bleu);
        cr_expect_eq(b.sys_len, r->sys_len, "%s: sys_len %lld vs %lld", r->name,
                     (long long)b.sys_len, r->sys_len);
        cr_expect_eq(b.ref_len, r->ref_len, "%s: ref_len %lld vs %lld", r->name,
                     (long long)b.ref_len, r->ref_len);
        cr_expect(fabs(b.bp - r->bp) <= 1e-9, "%s: bp %.9f vs %.9f", r->name, b.bp, r->bp);
        cr_expect(fabs(b.ratio - r->ratio) <= 1e-9, "%s: ratio", r->name);
        for (int k = 0; k < 4; k++) {
            cr_expect_eq(b.counts[k], r->counts[k], "%s: counts[%d] %lld vs %lld", r->name, k,
                         (long long)b.counts[k], r->counts[k]);
            cr_expect_eq(b.totals[k], r->totals[k], "%s: totals[%d] %lld vs %lld", r->name, k,
                         (long long)b.totals[k], r->totals[k]);
            cr_expect(fabs(b.precisions[k] - r->prec[k]) <= 0.01, "%s: p%d %.4f vs %.4f",
                      r->name, k + 1, b.precisions[k], r->prec[k]);
        }
        free_corpus(&c, r->nrefs);
    }
    free(rows);
}

Test(metrics, chrf_matches_sacrebleu) {
    expected_row *rows;
    char version[64];
    size_t nr = read_expected(&rows, version, sizeof version);
    cr_assert(nr >= 10, "expected.txt has only %zu corpora", nr);
    for (size_t i = 0; i < nr; i++) {
        const expected_row *r = &rows[i];
        corpus_files c;
        load_corpus(&c, r);
        s2s_chrf_result x;
        char err[256];
        int rc = s2s_chrf(&x, (const char *const *)c.hyp, (const char *const *const *)c.ref,
                          (size_t)r->nrefs, c.n, err, sizeof err);
        cr_assert_eq(rc, 0, "%s: %s", r->name, err);
        cr_expect(fabs(x.score - r->chrf) <= 0.01, "%s: chrF %.6f, sacrebleu %s says %.6f",
                  r->name, x.score, version, r->chrf);
        for (int k = 0; k < 18; k++)
            cr_expect_eq(x.stats[k / 3][k % 3], r->chrf_stats[k / 3][k % 3],
                         "%s: chrF stats order %d field %d: %lld vs %lld", r->name, k / 3 + 1,
                         k % 3, (long long)x.stats[k / 3][k % 3], r->chrf_stats[k / 3][k % 3]);
        free_corpus(&c, r->nrefs);
    }
    free(rows);
}

/* ------------------------------------------------------------------------ */
/* BLEU / chrF properties and errors                                        */

Test(metrics, identical_corpus_scores_100) {
    const char *h[] = {"The quick brown fox jumps over the lazy dog.", "¿Qué tal, señor Núñez?"};
    const char *const *refs[] = {h};
    s2s_bleu_result b;
    s2s_chrf_result c;
    char err[128];
    cr_assert_eq(s2s_bleu(&b, h, refs, 1, 2, err, sizeof err), 0, "%s", err);
    cr_assert_eq(s2s_chrf(&c, h, refs, 1, 2, err, sizeof err), 0, "%s", err);
    cr_expect(fabs(b.score - 100.0) < 1e-9, "BLEU %f", b.score);
    cr_expect(fabs(c.score - 100.0) < 1e-9, "chrF %f", c.score);
    cr_expect_eq(b.sys_len, 16);
}

Test(metrics, chrf_counts_code_points_not_bytes) {
    /* "ñ" is 2 bytes but 1 character: 1-grams: ñ,a = 2 */
    const char *h[] = {"ña"};
    const char *r0[] = {"ña"};
    const char *const *refs[] = {r0};
    s2s_chrf_result c;
    char err[128];
    cr_assert_eq(s2s_chrf(&c, h, refs, 1, 1, err, sizeof err), 0, "%s", err);
    cr_expect_eq(c.stats[0][0], 2);
    cr_expect_eq(c.stats[1][0], 1);
    cr_expect_eq(c.stats[2][0], 0);
}

Test(metrics, long_lines) {
    /* 200k tokens in one line: no fixed limits, and exact self-match */
    size_t ntok = 200000;
    char *line = malloc(ntok * 8 + 1), *p = line;
    for (size_t i = 0; i < ntok; i++) p += sprintf(p, "w%zu ", i % 5000);
    *p = '\0';
    const char *h[] = {line};
    const char *const *refs[] = {h};
    s2s_bleu_result b;
    s2s_chrf_result c;
    s2s_g2p_result g;
    char err[128];
    cr_assert_eq(s2s_bleu(&b, h, refs, 1, 1, err, sizeof err), 0, "%s", err);
    cr_expect(fabs(b.score - 100.0) < 1e-9);
    cr_expect_eq(b.sys_len, (int64_t)ntok);
    cr_assert_eq(s2s_chrf(&c, h, refs, 1, 1, err, sizeof err), 0, "%s", err);
    cr_expect(fabs(c.score - 100.0) < 1e-9);
    cr_assert_eq(s2s_g2p_score(&g, h, h, 1, err, sizeof err), 0, "%s", err);
    cr_expect_eq(g.line_errors, 0);
    cr_expect_eq(g.ref_len, (int64_t)ntok);
    free(line);
}

Test(metrics, invalid_utf8_is_an_error) {
    const char *h[] = {"fine", "also fine"};
    const char *r0[] = {"fine", "bad \xC3\x28 byte"};
    const char *const *refs[] = {r0};
    s2s_bleu_result b;
    s2s_chrf_result c;
    s2s_g2p_result g;
    char err[128] = "";
    cr_expect_eq(s2s_bleu(&b, h, refs, 1, 2, err, sizeof err), -1);
    cr_expect(strstr(err, "reference set 1 line 2") && strstr(err, "invalid UTF-8"), "%s", err);
    err[0] = '\0';
    cr_expect_eq(s2s_chrf(&c, r0, refs, 1, 2, err, sizeof err), -1);
    cr_expect(strstr(err, "hypothesis line 2") != NULL, "%s", err);
    cr_expect_eq(s2s_g2p_score(&g, h, r0, 2, err, sizeof err), -1);
    /* overlong, surrogate, > U+10FFFF, truncated */
    const char *bad[] = {"\xC0\xAF", "\xED\xA0\x80", "\xF4\x90\x80\x80", "ab\xE2\x82"};
    for (int i = 0; i < 4; i++) {
        cr_expect_eq(s2s_metrics_utf8_ok(bad[i], strlen(bad[i]), NULL), 0, "case %d", i);
        cr_expect_null(s2s_bleu_tokenize_13a(bad[i], err, sizeof err));
    }
    const char *good = "a\xC3\xB1\xE2\x82\xAC\xF0\x9F\x98\x80";
    cr_expect_eq(s2s_metrics_utf8_ok(good, strlen(good), NULL), 1);
    size_t off = 0;
    cr_expect_eq(s2s_metrics_utf8_ok("ab\xFF", 3, &off), 0);
    cr_expect_eq(off, 2);
}

Test(metrics, bleu_closest_ref_length_tie_takes_shorter) {
    /* hyp 3 tokens; refs of 2 and 4 tokens are equally close -> 2 */
    const char *h[] = {"a b c"};
    const char *r1[] = {"a b c d"};
    const char *r2[] = {"a b"};
    const char *const *refs[] = {r1, r2};
    s2s_bleu_result b;
    char err[128];
    cr_assert_eq(s2s_bleu(&b, h, refs, 2, 1, err, sizeof err), 0, "%s", err);
    cr_expect_eq(b.ref_len, 2);
    cr_expect_eq(b.sys_len, 3);
    cr_expect_eq(b.counts[2], 1);
    cr_expect_eq(b.totals[3], 0);
    cr_expect(b.score == 0.0); /* no 4-grams in the hypothesis */
}

/* ------------------------------------------------------------------------ */
/* WER / PER, hand-computed                                                 */

Test(metrics, g2p_alternatives_and_ties) {
    const char *h[] = {"a b c", "x y", "", "k l m", "a b c d"};
    const char *r[] = {
        "a b c",                /* match, d 0, len 3 */
        "x z\tx y",             /* 2nd alternative matches: d 0, len 2 */
        "p q",                  /* empty hyp: d 2, len 2, error */
        "k l m n\tk m\tk",      /* d 1 to "k l m n" (len 4) and "k m" (len 2): shorter, error */
        "a x c",                /* sub b->x, delete d: d 2, len 3, error */
    };
    s2s_g2p_result g;
    char err[128];
    cr_assert_eq(s2s_g2p_score(&g, h, r, 5, err, sizeof err), 0, "%s", err);
    cr_expect_eq(g.lines, 5);
    cr_expect_eq(g.line_errors, 3);
    cr_expect_eq(g.edits, 5);
    cr_expect_eq(g.ref_len, 12);
    cr_expect(fabs(g.wer - 60.0) < 1e-9, "WER %f", g.wer);
    cr_expect(fabs(g.per - 100.0 * 5.0 / 12.0) < 1e-9, "PER %f", g.per);
}

Test(metrics, g2p_whitespace_and_empty) {
    const char *h[] = {"  ʃ   ə ", "", "a", "t\tə"};
    const char *r[] = {
        " ʃ ə\t",  /* whitespace normalised, trailing empty alternative ignored: match */
        "\t",      /* only empty alternatives -> the empty pronunciation: match, len 0 */
        "",        /* empty reference, hyp "a": error, d 1, len 0 */
        "t ə",     /* a TAB in the hypothesis is just whitespace: match */
    };
    s2s_g2p_result g;
    char err[128];
    cr_assert_eq(s2s_g2p_score(&g, h, r, 4, err, sizeof err), 0, "%s", err);
    cr_expect_eq(g.line_errors, 1);
    cr_expect_eq(g.edits, 1);
    cr_expect_eq(g.ref_len, 4);
    cr_expect(fabs(g.wer - 25.0) < 1e-9, "WER %f", g.wer);
    cr_expect(fabs(g.per - 25.0) < 1e-9, "PER %f", g.per);
}

Test(metrics, g2p_symbols_are_compared_whole) {
    /* "ab" is one symbol, not "a" + "b"; multi-byte phones count as one */
    const char *h[] = {"ab c", "tʃ a"};
    const char *r[] = {"a b c", "t ʃ a\ttʃ a"};
    s2s_g2p_result g;
    char err[128];
    cr_assert_eq(s2s_g2p_score(&g, h, r, 2, err, sizeof err), 0, "%s", err);
    /* line 1: "ab c" vs "a b c": sub ab->a, insert b: d 2, len 3 */
    cr_expect_eq(g.line_errors, 1);
    cr_expect_eq(g.edits, 2);
    cr_expect_eq(g.ref_len, 3 + 2);
    cr_expect(fabs(g.per - 40.0) < 1e-9, "PER %f", g.per);
}

Test(metrics, g2p_all_empty_and_no_lines) {
    const char *e[] = {"", " "};
    s2s_g2p_result g;
    char err[128];
    cr_assert_eq(s2s_g2p_score(&g, e, e, 2, err, sizeof err), 0, "%s", err);
    cr_expect(g.wer == 0.0 && g.per == 0.0);
    cr_assert_eq(s2s_g2p_score(&g, e, e, 0, err, sizeof err), 0, "%s", err);
    cr_expect(g.wer == 0.0 && g.per == 0.0 && g.lines == 0);
    const char *h[] = {"a b"};
    const char *r[] = {""};
    cr_assert_eq(s2s_g2p_score(&g, h, r, 1, err, sizeof err), 0, "%s", err);
    cr_expect(g.wer == 100.0 && g.per == 100.0 && g.edits == 2);
}

/* ------------------------------------------------------------------------ */
/* `s2s score` end to end (needs S2S_BIN, set by `make test`)               */

/* Run a shell command; return its exit status and first stdout line in out. */
static int run_cmd(const char *cmd, char *out, size_t outlen) {
    FILE *p = popen(cmd, "r");
    cr_assert(p != NULL, "popen failed");
    out[0] = '\0';
    if (!fgets(out, (int)outlen, p)) out[0] = '\0';
    char sink[256];
    while (fgets(sink, sizeof sink, p)) {}
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

Test(metrics, cli_score) {
    const char *bin = getenv("S2S_BIN");
    if (!bin || !*bin) cr_skip_test("S2S_BIN not set");
    char cmd[1024], out[1024];
    snprintf(cmd, sizeof cmd, "%s score --metric bleu --ref " VEC_DIR "multiref.ref1 --ref "
             VEC_DIR "multiref.ref2 --ref " VEC_DIR "multiref.ref3 < " VEC_DIR "multiref.hyp", bin);
    cr_expect_eq(run_cmd(cmd, out, sizeof out), 0, "%s", cmd);
    cr_expect_str_eq(out, "BLEU = 37.63 85.1/50.0/32.4/18.8 (BP = 0.938 ratio = 0.940 "
                          "hyp_len = 47 ref_len = 50)\n");
    snprintf(cmd, sizeof cmd, "%s score --metric chrf --ref " VEC_DIR "realistic.ref1 --hyp "
             VEC_DIR "realistic.hyp", bin);
    cr_expect_eq(run_cmd(cmd, out, sizeof out), 0, "%s", cmd);
    cr_expect_str_eq(out, "chrF2 = 72.94\n");
    snprintf(cmd, sizeof cmd, "%s score --metric per --json --ref " VEC_DIR "realistic.ref1 "
             "--hyp " VEC_DIR "realistic.ref1", bin);
    cr_expect_eq(run_cmd(cmd, out, sizeof out), 0, "%s", cmd);
    cr_expect(strstr(out, "{\"metric\": \"per\"") == out && strstr(out, "\"score\": 0.0000"),
              "%s", out);
    /* errors: usage 2, runtime 1, one line on stderr starting "s2s score: " */
    snprintf(cmd, sizeof cmd, "%s score --metric nope --ref x 2>&1", bin);
    cr_expect_eq(run_cmd(cmd, out, sizeof out), 2);
    cr_expect(strncmp(out, "s2s score: ", 11) == 0, "%s", out);
    snprintf(cmd, sizeof cmd, "%s score --metric bleu --ref " VEC_DIR "punct.ref1 --hyp "
             VEC_DIR "spanish.hyp 2>&1", bin);
    cr_expect_eq(run_cmd(cmd, out, sizeof out), 1);
    cr_expect(strncmp(out, "s2s score: ", 11) == 0 && strstr(out, "line count"), "%s", out);
    snprintf(cmd, sizeof cmd, "%s score --metric wer --ref /nonexistent/file 2>&1 </dev/null",
             bin);
    cr_expect_eq(run_cmd(cmd, out, sizeof out), 1);
    cr_expect(strncmp(out, "s2s score: ", 11) == 0, "%s", out);
}
