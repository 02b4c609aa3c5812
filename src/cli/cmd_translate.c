/* cmd_translate.c - `s2s translate`: one source per line on stdin, one output per
 * line on stdout (same order), timing on stderr. Streams in chunks so huge inputs
 * need bounded memory. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "cli.h"
#include "common.h"
#include "decoder_deed.h"
#include "io.h"
#include "model.h"
#include "s2s.h"

static void help(FILE *f) {
    fprintf(f,
            "usage: s2s translate [-m MODEL] [--device D] [--beam K] [--batch N] [--threads T]\n"
            "                     [--max-len L] [--length-penalty A] [--shortlist FILE] [--quiet]\n"
            "                     < input > output\n"
            "  -m MODEL            model file (default: $S2S_MODEL or models/g2p-small.safetensors)\n"
            "  --device D          cpu (default) or cuda: encode and decode on the GPU (fp32;\n"
            "                      needs an s2s built with CUDA=1 and a CUDA device)\n"
            "  --beam K            beam size, 1 = greedy (default 1)\n"
            "  --batch N           sentences decoded together (default 32)\n"
            "  --threads T         compute threads (default 1)\n"
            "  --max-len L         output tokens at most (default 256)\n"
            "  --length-penalty A  beam score = logprob / length^A (default 1.0)\n"
            "  --max-memory MB     bound on decoding memory (encoder activations + decoder\n"
            "                      state of a batch; default 4096, 0 = none): batches are split\n"
            "                      to fit, a sentence that cannot fit is refused with an error\n"
            "  --exit-threshold T  DEED early exit (multi-exit models, softmax or T2R decoder attention;\n"
            "                      CPU): each step stops at the first decoder layer whose exit\n"
            "                      confidence reaches T (0..1; above 1: full depth); prints the\n"
            "                      average exit layer on stderr\n"
            "  --exit-metric M     maxprob (default: max softmax probability) or margin (top-1 - top-2)\n"
            "  --exit-states S     jit (default: compute skipped deeper states when needed) or copy\n"
            "                      (deeper K/V of an exited position from its exited state, as CALM;\n"
            "                      T2R: folded into the deeper layers' recurrent states)\n"
            "  --shortlist FILE    lexical vocabulary shortlist of this model (s2s shortlist; CPU):\n"
            "                      each step scores only the target tokens likely for the batch's\n"
            "                      source (faster; may change outputs where the best is not listed)\n"
            "Invalid UTF-8 is replaced by U+FFFD and over-long lines are truncated, with a\n"
            "warning on stderr; empty lines give empty outputs.\n");
}

int s2s_cmd_translate(int argc, char **argv) {
    const char *C = "translate";
    char *model_path = NULL;
    const char *shortlist_path = NULL;
    s2s_translate_opts o;
    s2s_translate_opts_default(&o);
    int threads = 1, quiet = 0, cuda = 0, exit_opts_given = 0;
    double exit_stats[4] = {0, 0, 0, 0};
    o.exit_stats = exit_stats;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { help(stdout); free(model_path); return 0; }
        else if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            if (!(v = s2s_arg_value(C, argc, argv, &i))) goto usage;
            free(model_path); model_path = strdup(v);
        } else if (!strcmp(a, "--device")) {
            if (!(v = s2s_arg_value(C, argc, argv, &i))) goto usage;
            if (!strcmp(v, "cpu")) cuda = 0;
            else if (!strcmp(v, "cuda")) cuda = 1;
            else {
                fprintf(stderr, "s2s translate: --device: expected cpu or cuda, got '%s'\n", v);
                goto usage;
            }
        } else if (!strcmp(a, "--beam")) {
            if (!(v = s2s_arg_value(C, argc, argv, &i)) || s2s_arg_int(C, a, v, 1, 256, &o.beam)) goto usage;
        } else if (!strcmp(a, "--batch")) {
            if (!(v = s2s_arg_value(C, argc, argv, &i)) || s2s_arg_int(C, a, v, 1, 100000, &o.batch)) goto usage;
        } else if (!strcmp(a, "--threads")) {
            if (!(v = s2s_arg_value(C, argc, argv, &i)) || s2s_arg_int(C, a, v, 1, 1024, &threads)) goto usage;
        } else if (!strcmp(a, "--max-len")) {
            if (!(v = s2s_arg_value(C, argc, argv, &i)) || s2s_arg_int(C, a, v, 1, 65536, &o.max_len)) goto usage;
        } else if (!strcmp(a, "--length-penalty")) {
            if (!(v = s2s_arg_value(C, argc, argv, &i)) || s2s_arg_float(C, a, v, 0, 10, &o.length_penalty)) goto usage;
        } else if (!strcmp(a, "--max-memory")) {
            if (!(v = s2s_arg_value(C, argc, argv, &i)) || s2s_arg_int(C, a, v, 0, 1 << 30, &o.max_memory_mb)) goto usage;
        } else if (!strcmp(a, "--exit-threshold")) {
            if (!(v = s2s_arg_value(C, argc, argv, &i)) || s2s_arg_float(C, a, v, 0, 1e30, &o.exit_threshold)) goto usage;
        } else if (!strcmp(a, "--exit-metric") || !strcmp(a, "--exit-states")) {
            if (!(v = s2s_arg_value(C, argc, argv, &i))) goto usage;
            int metric = a[7] == 'm';
            const char *v0 = metric ? "maxprob" : "jit", *v1 = metric ? "margin" : "copy";
            int *dst = metric ? &o.exit_metric : &o.exit_states;
            if (!strcmp(v, v0)) *dst = 0;
            else if (!strcmp(v, v1)) *dst = 1;
            else {
                fprintf(stderr, "s2s translate: %s: expected %s or %s, got '%s'\n", a, v0, v1, v);
                goto usage;
            }
            exit_opts_given = 1;
        } else if (!strcmp(a, "--shortlist")) {
            if (!(v = s2s_arg_value(C, argc, argv, &i))) goto usage;
            shortlist_path = v;
        } else if (!strcmp(a, "--quiet") || !strcmp(a, "-q")) {
            quiet = 1;
        } else {
            fprintf(stderr, "s2s translate: unknown option '%s' (see --help)\n", a);
            goto usage;
        }
    }
    if (exit_opts_given && o.exit_threshold < 0) {
        fprintf(stderr, "s2s translate: --exit-metric and --exit-states need --exit-threshold\n");
        goto usage;
    }
    if (!model_path) model_path = s2s_default_model_path();
    s2s_threads(threads);
    char err[512];
    double t0 = s2s_now();
    s2s_shortlist *sl = NULL;
    s2s_model *m = s2s_load(model_path, err, sizeof err);
    if (!m) { fprintf(stderr, "s2s translate: %s\n", err); free(model_path); return 1; }
    if (o.exit_threshold >= 0 && !m->cfg.multi_exit) {
        fprintf(stderr, "s2s translate: %s: --exit-threshold needs a multi-exit model (s2s train --multi-exit)\n", model_path);
        goto fail;
    }
    if (o.exit_threshold >= 0 && cuda) {
        fprintf(stderr, "s2s translate: --exit-threshold (DEED early exit) runs on the CPU only, not with --device cuda\n");
        goto fail;
    }
    if (shortlist_path && cuda) {
        fprintf(stderr, "s2s translate: --shortlist runs on the CPU only, not with --device cuda\n");
        goto fail;
    }
    if (shortlist_path && !(sl = s2s_shortlist_load(shortlist_path, m, err, sizeof err))) {
        fprintf(stderr, "s2s translate: %s\n", err);
        goto fail;
    }
    o.shortlist = sl;
    if (cuda && s2s_use_cuda(m, err, sizeof err) != 0) {
        fprintf(stderr, "s2s translate: %s\n", err);
        goto fail;
    }
    double t_load = s2s_now() - t0, t_dec = 0;
    size_t total = 0, out_chars = 0, chunk = 4096;
    int eof = 0, rc = 0;
    while (!eof) {
        size_t n = 0;
        char **lines = s2s_read_lines_from(stdin, "<stdin>", chunk, &n, &eof, err, sizeof err);
        if (!lines) { fprintf(stderr, "s2s translate: %s\n", err); rc = 1; break; }
        char **out = calloc(n ? n : 1, sizeof *out);
        int *flags = calloc(n ? n : 1, sizeof *flags);
        double t1 = s2s_now();
        if (s2s_translate(m, (const char *const *)lines, (int)n, &o, out, flags, err, sizeof err) != 0) {
            size_t bad = 0;
            while (bad < n && !(flags[bad] & S2S_LINE_TOO_BIG)) bad++;
            if (bad < n) fprintf(stderr, "s2s translate: line %zu %s\n", total + bad + 1, err);
            else fprintf(stderr, "s2s translate: %s\n", err);
            rc = 1;
        } else {
            t_dec += s2s_now() - t1;
            for (size_t i = 0; i < n; i++) {
                if (flags[i] & S2S_LINE_BAD_UTF8)
                    fprintf(stderr, "s2s translate: warning: line %zu: invalid UTF-8 replaced by U+FFFD\n", total + i + 1);
                if (flags[i] & S2S_LINE_TRUNCATED)
                    fprintf(stderr, "s2s translate: warning: line %zu: longer than the model's max_len, truncated\n", total + i + 1);
                if (!out[i]) continue;
                fputs(out[i], stdout);
                fputc('\n', stdout);
                out_chars += strlen(out[i]);
                free(out[i]);
            }
            fflush(stdout);
        }
        total += n;
        free(out); free(flags);
        s2s_free_lines(lines, n);
        if (rc) break;
    }
    if (ferror(stdout)) { fprintf(stderr, "s2s translate: error writing the output\n"); rc = 1; }
    if (!quiet && rc == 0) {
        char where[64];
        if (cuda) snprintf(where, sizeof where, "cuda");
        else snprintf(where, sizeof where, "%d threads", threads);
        fprintf(stderr, "s2s translate: %zu lines in %.3f s (%.1f lines/s; load %.3f s; beam %d, batch %d, %s)\n",
                total, t_dec, t_dec > 0 ? (double)total / t_dec : 0.0, t_load, o.beam, o.batch, where);
    }
    if (rc == 0 && o.exit_threshold >= 0) { /* DEED: always reported (the point of the flag) */
        int Ld = m->cfg.dec_layers;
        if (o.exit_threshold > 1)
            fprintf(stderr, "s2s translate: average exit layer %d of %d (tau %g > 1: full depth)\n", Ld, Ld, o.exit_threshold);
        else
            fprintf(stderr, "s2s translate: average exit layer %.3f of %d (tau %g, %s, %s; %.0f decoder row steps, "
                    "%.3f layer states computed per step, %.3f of them %s)\n",
                    exit_stats[1] > 0 ? exit_stats[0] / exit_stats[1] : 0.0, Ld, o.exit_threshold,
                    o.exit_metric ? "margin" : "maxprob", o.exit_states ? "copy" : "jit", exit_stats[1],
                    exit_stats[1] > 0 ? exit_stats[2] / exit_stats[1] : 0.0, exit_stats[1] > 0 ? exit_stats[3] / exit_stats[1] : 0.0,
                    o.exit_states ? "K/V copies" : "just in time");
    }
    s2s_shortlist_free(sl);
    s2s_free(m);
    free(model_path);
    return rc;
fail: /* after the model loaded: one line on stderr already */
    s2s_shortlist_free(sl);
    s2s_free(m);
    free(model_path);
    return 1;
usage:
    free(model_path);
    return 2;
}
