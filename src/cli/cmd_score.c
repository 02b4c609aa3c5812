/* cmd_score.c - `s2s score`: corpus BLEU, chrF, WER or PER of a hypothesis
 * file against one or more reference files (src/metrics.h does the work).
 *
 *   s2s score --metric bleu|chrf|wer|per --ref FILE [--ref FILE2 ...]
 *             [--hyp FILE] [--json]
 *
 * The hypothesis is read from stdin when --hyp is absent (or "-"). Files are
 * UTF-8, one segment per '\n'-terminated line. For bleu/chrf each --ref is one
 * reference set (sacreBLEU's multi-reference); for wer/per the lines of all
 * --ref files are joined as TAB-separated alternative pronunciations.
 * Output is one line, sacreBLEU style, or with --json one JSON object. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "common.h"
#include "metrics.h"

#define CMD "s2s score: "

static const char *USAGE =
    "usage: s2s score --metric bleu|chrf|wer|per --ref FILE [--ref FILE ...] [--hyp FILE] "
    "[--json]\n"
    "  --metric M  bleu: sacreBLEU corpus BLEU (13a, exp smoothing); chrf: chrF2;\n"
    "              wer/per: G2P word/phone error rate (TAB separates alternatives)\n"
    "  --ref FILE  reference file, repeat for several references\n"
    "  --hyp FILE  hypothesis file (default: stdin)\n"
    "  --json      print one JSON object instead of the sacreBLEU-style line\n";

/* ------------------------------------------------------------------------ */
/* reading line files                                                       */

typedef struct {
    char *data;     /* file contents, '\n' replaced by '\0' */
    char **lines;   /* [n] pointers into data */
    size_t n;
} linefile;

static void linefile_free(linefile *f) {
    free(f->data);
    free(f->lines);
    memset(f, 0, sizeof *f);
}

/* Read path (NULL or "-" = stdin) into lines. 0 ok, -1 with a message. */
static int linefile_read(linefile *f, const char *path, char *err, size_t errlen) {
    memset(f, 0, sizeof *f);
    int use_stdin = !path || strcmp(path, "-") == 0;
    const char *name = use_stdin ? "<stdin>" : path;
    FILE *fp = use_stdin ? stdin : fopen(path, "rb");
    if (!fp) {
        s2s_errf(err, errlen, "%s: %s", name, strerror(errno));
        return -1;
    }
    size_t size = 0, cap = 1 << 16;
    char *data = s2s_xmalloc(cap);
    for (;;) {
        if (size == cap) data = s2s_xrealloc(data, cap *= 2);
        size_t got = fread(data + size, 1, cap - size, fp);
        size += got;
        if (got == 0) break;
    }
    int bad_read = ferror(fp);
    if (!use_stdin) fclose(fp);
    if (bad_read) {
        s2s_errf(err, errlen, "%s: read error", name);
        free(data);
        return -1;
    }
    size_t bad = 0;
    if (!s2s_metrics_utf8_ok(data, size, &bad)) {
        size_t line = 1;
        for (size_t i = 0; i < bad; i++) line += data[i] == '\n';
        s2s_errf(err, errlen, "%s line %zu: %s", name, line,
                 data[bad] == '\0' ? "NUL byte" : "invalid UTF-8");
        free(data);
        return -1;
    }
    size_t n = 0;
    for (size_t i = 0; i < size; i++) n += data[i] == '\n';
    if (size > 0 && data[size - 1] != '\n') n++; /* last line without newline */
    data = s2s_xrealloc(data, size + 1);
    data[size] = '\0';
    char **lines = s2s_xmalloc((n ? n : 1) * sizeof *lines);
    size_t k = 0;
    char *p = data, *end = data + size;
    while (p < end) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        if (nl) *nl = '\0';
        lines[k++] = p;
        p = nl ? nl + 1 : end;
    }
    S2S_ASSERT(k == n);
    f->data = data;
    f->lines = lines;
    f->n = n;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* arguments                                                                */

/* Value of option `name` at argv[*i], as "--name VALUE" or "--name=VALUE";
 * NULL if argv[*i] is not that option. *missing is set when the value is. */
static const char *opt_value(int argc, char **argv, int *i, const char *name, int *missing) {
    size_t len = strlen(name);
    const char *a = argv[*i];
    if (strncmp(a, name, len) != 0) return NULL;
    if (a[len] == '=') return a + len + 1;
    if (a[len] != '\0') return NULL;
    if (*i + 1 >= argc) { *missing = 1; return NULL; }
    return argv[++*i];
}

/* ------------------------------------------------------------------------ */

int s2s_cmd_score(int argc, char **argv) {
    const char *metric = NULL, *hyp_path = NULL;
    const char **ref_paths = s2s_xmalloc((size_t)(argc > 0 ? argc : 1) * sizeof *ref_paths);
    size_t n_refs = 0;
    int json = 0, rc = 0;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        int missing = 0;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs(USAGE, stdout);
            free(ref_paths);
            return 0;
        } else if (strcmp(a, "--json") == 0) {
            json = 1;
        } else if ((v = opt_value(argc, argv, &i, "--metric", &missing)) != NULL) {
            metric = v;
        } else if ((v = opt_value(argc, argv, &i, "--ref", &missing)) != NULL) {
            ref_paths[n_refs++] = v;
        } else if ((v = opt_value(argc, argv, &i, "--hyp", &missing)) != NULL) {
            hyp_path = v;
        } else if (missing) {
            fprintf(stderr, CMD "option %s needs a value\n", a);
            free(ref_paths);
            return 2;
        } else {
            fprintf(stderr, CMD "unknown %s '%s' (see s2s score --help)\n",
                    a[0] == '-' ? "option" : "argument", a);
            free(ref_paths);
            return 2;
        }
    }
    enum { M_BLEU, M_CHRF, M_WER, M_PER } m;
    if (!metric) {
        fprintf(stderr, CMD "--metric is required (bleu, chrf, wer or per)\n");
        free(ref_paths);
        return 2;
    }
    if (strcmp(metric, "bleu") == 0) m = M_BLEU;
    else if (strcmp(metric, "chrf") == 0) m = M_CHRF;
    else if (strcmp(metric, "wer") == 0) m = M_WER;
    else if (strcmp(metric, "per") == 0) m = M_PER;
    else {
        fprintf(stderr, CMD "unknown metric '%s' (bleu, chrf, wer or per)\n", metric);
        free(ref_paths);
        return 2;
    }
    if (n_refs == 0) {
        fprintf(stderr, CMD "at least one --ref FILE is required\n");
        free(ref_paths);
        return 2;
    }

    char err[512];
    linefile hyp;
    linefile *refs = s2s_xcalloc(n_refs, sizeof *refs);
    const char *const **ref_lines = s2s_xcalloc(n_refs, sizeof *ref_lines);
    char **joined = NULL;
    memset(&hyp, 0, sizeof hyp);

    for (size_t r = 0; r < n_refs && rc == 0; r++) {
        if (linefile_read(&refs[r], ref_paths[r], err, sizeof err) != 0) {
            fprintf(stderr, CMD "%s\n", err);
            rc = 1;
        }
        ref_lines[r] = (const char *const *)refs[r].lines;
    }
    if (rc == 0 && linefile_read(&hyp, hyp_path, err, sizeof err) != 0) {
        fprintf(stderr, CMD "%s\n", err);
        rc = 1;
    }
    for (size_t r = 0; r < n_refs && rc == 0; r++) {
        if (refs[r].n != hyp.n) {
            fprintf(stderr, CMD "line count mismatch: hypothesis %s has %zu lines, reference %s has %zu\n",
                    hyp_path ? hyp_path : "<stdin>", hyp.n, ref_paths[r], refs[r].n);
            rc = 1;
        }
    }
    const char *const *H = (const char *const *)hyp.lines;
    if (rc == 0 && m == M_BLEU) {
        s2s_bleu_result b;
        if (s2s_bleu(&b, H, ref_lines, n_refs, hyp.n, err, sizeof err) != 0) {
            fprintf(stderr, CMD "%s\n", err);
            rc = 1;
        } else if (json) {
            printf("{\"metric\": \"bleu\", \"name\": \"BLEU\", \"score\": %.4f, \"precisions\": "
                   "[%.4f, %.4f, %.4f, %.4f], \"bp\": %.6f, \"ratio\": %.6f, \"hyp_len\": %lld, "
                   "\"ref_len\": %lld, \"counts\": [%lld, %lld, %lld, %lld], \"totals\": "
                   "[%lld, %lld, %lld, %lld], \"nrefs\": %zu, \"lines\": %zu, \"tokenize\": "
                   "\"13a\", \"smooth\": \"exp\"}\n",
                   b.score, b.precisions[0], b.precisions[1], b.precisions[2], b.precisions[3],
                   b.bp, b.ratio, (long long)b.sys_len, (long long)b.ref_len,
                   (long long)b.counts[0], (long long)b.counts[1], (long long)b.counts[2],
                   (long long)b.counts[3], (long long)b.totals[0], (long long)b.totals[1],
                   (long long)b.totals[2], (long long)b.totals[3], n_refs, hyp.n);
        } else {
            printf("BLEU = %.2f %.1f/%.1f/%.1f/%.1f (BP = %.3f ratio = %.3f hyp_len = %lld "
                   "ref_len = %lld)\n",
                   b.score, b.precisions[0], b.precisions[1], b.precisions[2], b.precisions[3],
                   b.bp, b.ratio, (long long)b.sys_len, (long long)b.ref_len);
        }
    } else if (rc == 0 && m == M_CHRF) {
        s2s_chrf_result c;
        if (s2s_chrf(&c, H, ref_lines, n_refs, hyp.n, err, sizeof err) != 0) {
            fprintf(stderr, CMD "%s\n", err);
            rc = 1;
        } else if (json) {
            printf("{\"metric\": \"chrf\", \"name\": \"chrF%d\", \"score\": %.4f, "
                   "\"precision\": %.4f, \"recall\": %.4f, \"char_order\": %d, "
                   "\"word_order\": 0, \"beta\": %d, \"nrefs\": %zu, \"lines\": %zu}\n",
                   S2S_CHRF_BETA, c.score, c.precision, c.recall, S2S_CHRF_ORDER, S2S_CHRF_BETA,
                   n_refs, hyp.n);
        } else {
            printf("chrF%d = %.2f\n", S2S_CHRF_BETA, c.score);
        }
    } else if (rc == 0) { /* wer, per: join the reference files as alternatives */
        const char *const *R = ref_lines[0];
        if (n_refs > 1) {
            joined = s2s_xcalloc(hyp.n ? hyp.n : 1, sizeof *joined);
            for (size_t i = 0; i < hyp.n; i++) {
                size_t len = 0;
                for (size_t r = 0; r < n_refs; r++) len += strlen(refs[r].lines[i]) + 1;
                char *s = s2s_xmalloc(len), *o = s;
                for (size_t r = 0; r < n_refs; r++) {
                    size_t l = strlen(refs[r].lines[i]);
                    if (r) *o++ = '\t';
                    memcpy(o, refs[r].lines[i], l);
                    o += l;
                }
                *o = '\0';
                joined[i] = s;
            }
            R = (const char *const *)joined;
        }
        s2s_g2p_result g;
        if (s2s_g2p_score(&g, H, R, hyp.n, err, sizeof err) != 0) {
            fprintf(stderr, CMD "%s\n", err);
            rc = 1;
        } else if (m == M_WER) {
            if (json)
                printf("{\"metric\": \"wer\", \"name\": \"WER\", \"score\": %.4f, \"lines\": %lld, "
                       "\"line_errors\": %lld}\n",
                       g.wer, (long long)g.lines, (long long)g.line_errors);
            else
                printf("WER = %.2f\n", g.wer);
        } else {
            if (json)
                printf("{\"metric\": \"per\", \"name\": \"PER\", \"score\": %.4f, \"edits\": %lld, "
                       "\"ref_len\": %lld, \"lines\": %lld}\n",
                       g.per, (long long)g.edits, (long long)g.ref_len, (long long)g.lines);
            else
                printf("PER = %.2f\n", g.per);
        }
    }
    if (rc == 0 && (fflush(stdout) != 0 || ferror(stdout))) {
        fprintf(stderr, CMD "error writing the result\n");
        rc = 1;
    }

    if (joined)
        for (size_t i = 0; i < hyp.n; i++) free(joined[i]);
    free(joined);
    for (size_t r = 0; r < n_refs; r++) linefile_free(&refs[r]);
    free(refs);
    free(ref_lines);
    linefile_free(&hyp);
    free(ref_paths);
    return rc;
}
