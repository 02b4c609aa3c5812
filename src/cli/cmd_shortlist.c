/* cmd_shortlist.c - `s2s shortlist -m MODEL --train-src F --train-tgt F -o OUT`: build a
 * lexical vocabulary shortlist for MODEL (shortlist.h: IBM Model 1 on the parallel corpus,
 * tokenised with the model's tokenizers; per source token its --top best target tokens,
 * plus the --frequent most frequent target tokens) and write it as safetensors. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "cli.h"
#include "common.h"
#include "model.h"
#include "shortlist.h"

static void usage(FILE *f) {
    fprintf(f, "usage: s2s shortlist -m MODEL --train-src F --train-tgt F -o OUT [--top 50] [--frequent 100]\n"
               "                     [--iters 5] [--max-lines N] [--quiet]\n"
               "  build a lexical shortlist for MODEL from a parallel corpus (IBM Model 1, ITERS EM rounds,\n"
               "  the model's tokenizers): each source token's TOP likeliest target tokens and the\n"
               "  FREQUENT most frequent target tokens; --max-lines: read only the first N lines (0 = all)\n");
}

int s2s_cmd_shortlist(int argc, char **argv) {
    const char *model = NULL, *src = NULL, *tgt = NULL, *out = NULL;
    int top = 50, frequent = 100, iters = 5, max_lines = 0, quiet = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            if (!(model = s2s_arg_value("shortlist", argc, argv, &i))) return 2;
        } else if (!strcmp(a, "--train-src")) {
            if (!(src = s2s_arg_value("shortlist", argc, argv, &i))) return 2;
        } else if (!strcmp(a, "--train-tgt")) {
            if (!(tgt = s2s_arg_value("shortlist", argc, argv, &i))) return 2;
        } else if (!strcmp(a, "-o") || !strcmp(a, "--out")) {
            if (!(out = s2s_arg_value("shortlist", argc, argv, &i))) return 2;
        } else if (!strcmp(a, "--top") || !strcmp(a, "--frequent") || !strcmp(a, "--iters") ||
                   !strcmp(a, "--max-lines")) {
            const char *v = s2s_arg_value("shortlist", argc, argv, &i);
            if (!v) return 2;
            int *dst = a[2] == 't' ? &top : a[2] == 'f' ? &frequent : a[2] == 'i' ? &iters : &max_lines;
            long lo = a[2] == 'f' || a[2] == 'm' ? 0 : 1, hi = a[2] == 'i' ? 1000 : 2147483647L;
            if (s2s_arg_int("shortlist", a, v, lo, hi, dst)) return 2;
        } else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
            quiet = 1;
        } else {
            fprintf(stderr, "s2s shortlist: unknown option '%s' (run 's2s shortlist --help')\n", a);
            return 2;
        }
    }
    if (!model || !src || !tgt || !out) {
        fprintf(stderr, "s2s shortlist: need -m MODEL, --train-src F, --train-tgt F and -o OUT\n");
        return 2;
    }
    double t0 = s2s_now();
    char err[512];
    s2s_model *m = s2s_model_load(model, 0, err, sizeof err);
    if (!m) { fprintf(stderr, "s2s shortlist: %s\n", err); return 1; }
    s2s_shortlist *sl = s2s_shortlist_build(m, src, tgt, top, frequent, iters, max_lines, quiet, err, sizeof err);
    s2s_model_free(m);
    if (!sl) { fprintf(stderr, "s2s shortlist: %s\n", err); return 1; }
    if (s2s_shortlist_save(sl, out, err, sizeof err) != 0) {
        fprintf(stderr, "s2s shortlist: %s\n", err);
        s2s_shortlist_free(sl);
        return 1;
    }
    int with = 0;
    for (int s = 0; s < sl->src_vocab; s++) with += sl->offsets[s + 1] > sl->offsets[s];
    fprintf(stderr,
            "s2s shortlist: %ld sentence pairs (%ld skipped), %.1f candidates per source token (%d of %d source "
            "ids have any), %d frequent, %.1f s -> %s\n",
            sl->n_pairs, sl->n_skipped, with ? (double)sl->offsets[sl->src_vocab] / with : 0.0, with, sl->src_vocab,
            sl->n_frequent, s2s_now() - t0, out);
    s2s_shortlist_free(sl);
    return 0;
}
