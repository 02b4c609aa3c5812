/* cmd_optimize.c - `s2s optimize -m TEACHER --data DIR -o OUT [--max-loss L] [options]`:
 * the flags of the acceleration search (optimize.h, docs/DESIGN.md "s2s optimize");
 * every `s2s train` option but the ones a stage sets passes through to the stages'
 * training. Usage errors exit 2 before anything runs (the --space file is parsed here
 * too); runtime errors exit 1; an interrupted training exits 2 (rerun to resume). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "cli.h"
#include "common.h"
#include "io.h"
#include "optimize.h"
#include "train.h"

static void help(FILE *f) {
    s2s_optimize_opts d;
    s2s_optimize_opts_default(&d);
    fprintf(f,
        "usage: s2s optimize -m TEACHER --data DIR -o OUT [--max-loss %.1f] [options]\n"
        "Runs the decoding accelerations over a search space of candidates made from TEACHER, measures\n"
        "each one and writes the Pareto front (dev quality vs batch-1 latency) and the fastest candidate\n"
        "within the allowed quality loss. Run the same command again to resume after an interruption.\n"
        "  -m TEACHER           a softmax Transformer: the model every candidate starts from\n"
        "  --data DIR           DIR/train.src, train.tgt, dev.src, dev.tgt (as `make data` writes data/g2p)\n"
        "  -o OUT               where everything goes (below)\n"
        "  --max-loss %.1f       allowed quality loss against the teacher, in metric points (WER/PER at\n"
        "                       most that much higher, BLEU/chrF at most that much lower)\n"
        "  --metric M           wer|per|bleu|chrf (default: the teacher's recorded training metric, else\n"
        "                       wer for char/symbol targets and bleu for BPE)\n"
        "  --space FILE         the candidates, one per line (default: the space below)\n"
        "  --steps %d         training steps per stage (a candidate's fine-tuning budget)\n"
        "  --eval-max N         dev lines decoded for quality and for checkpoint selection (default: all)\n"
        "  --latency-lines %d  dev sentences timed   --repeat %d  timed runs, the fastest kept\n"
        "  --kd-beam %d          beam of the distilled targets of hybrid decoders\n"
        "  --fp16 | --fp32      candidate files, timed as stored (default: the teacher's precision)\n"
        "  --stop-after K       stop after K candidates were trained and measured in this run\n"
        "  --verbose            also show the progress lines of s2s train / s2s prune\n"
        "Training: every `s2s train` option passes through to every stage (--device cuda, --threads,\n"
        "--tokens-per-batch, --lr, --warmup, --dropout, --eval-every, --seed, --kd-weight, ...). Defaults:\n"
        "--lr by method (NASH 3e-4, hybrid 1e-3, DEED 3e-4, T2R 4e-4), --warmup steps/10, --dropout the\n"
        "teacher's recorded one (else 0.1), --eval-every steps/4, --kd-weight %g (word-level distillation\n"
        "from the teacher in NASH stages).\n"
        "Search space: one candidate per line, '#' starts a comment; a candidate is a method with key=value\n"
        "options (all optional), or a NASH stage '+' one other method trained on the NASH model (the NASH\n"
        "stage is trained once and shared by every candidate that has it):\n"
        "  nash n=2 t=0.3                 NASH: keep n decoder layers, prune a fraction t of the encoder\n"
        "                                 (2/5 of --steps L0 mask training when t > 0, the rest fine-tuning)\n"
        "  ssru|gru|lstm layers=1 ffn=1   hybrid: a new recurrent decoder on the teacher's (or the NASH)\n"
        "                                 encoder, trained on the teacher's beam outputs (OUT/kd/, made once)\n"
        "  deed tau=0.8 rank=64           DEED: multi-exit fine-tuning, then one result per exit threshold\n"
        "                                 in the comma-separated list tau (a decoding flag: --exit-threshold)\n"
        "  t2r k=32 map=relu              T2R: linear attention, k learned features per head (map=elu: the\n"
        "                                 fixed elu+1 map), fine-tuned\n"
        "Default space:\n",
        d.max_loss, d.max_loss, d.steps, d.latency_lines, d.repeat, d.kd_beam, d.train.kd_weight);
    for (const char *p = s2s_opt_default_space; *p;) {
        const char *e = strchr(p, '\n');
        int n = e ? (int)(e - p) : (int)strlen(p);
        if (*p != '#') fprintf(f, "  %.*s\n", n, p);
        p += n + (e != NULL);
    }
    fprintf(f,
        "Measured per candidate: dev quality (greedy), latency (ms per sentence, batch 1, greedy, 1 CPU\n"
        "thread, best of --repeat runs, interleaved with the teacher in the same process: speed-up =\n"
        "teacher ms / candidate ms), parameters, file size.\n"
        "OUT: results.tsv (a row per candidate, per threshold for DEED; rows present are skipped on a\n"
        "rerun), pareto.tsv (the rows no other row beats in both quality and relative latency), report.md,\n"
        "best.safetensors (the fastest row within --max-loss that is faster than the teacher; absent if\n"
        "none), pareto.png (when gnuplot is on PATH), cand/NAME/ (stages, final.safetensors), kd/ and\n"
        "settings.txt (teacher, data, metric, steps...: a rerun must match them; --max-loss may change).\n");
}

/* `s2s train` options that optimize sets itself (per stage, or from the teacher). */
static const char *const reserved[] = {
    "init", "decoder", "dec-layers", "dec-ffn", "multi-exit", "exit-rank", "dec-attn", "t2r-k", "t2r-map", "l0-target",
    "l0-warmup-steps", "kd-teacher", "max-steps", "train-src", "train-tgt", "dev-src", "dev-tgt", "out", "config", "fresh",
    "train-only", "d-model", "heads", "ff", "enc-layers", "activation", "max-len", "src-tok", "tgt-tok", "src-vocab",
    "tgt-vocab", "joint-vocab", "quiet"};

/* The --space file as one string (malloc'd), or NULL after an error line. */
static char *read_space(const char *path) {
    char err[512];
    size_t n = 0;
    char **lines = s2s_read_lines(path, &n, err, sizeof err);
    if (!lines) { fprintf(stderr, "s2s optimize: --space: %s\n", err); return NULL; }
    size_t len = 1;
    for (size_t i = 0; i < n; i++) len += strlen(lines[i]) + 1;
    char *s = s2s_xmalloc(len), *p = s;
    for (size_t i = 0; i < n; i++) p += sprintf(p, "%s\n", lines[i]);
    *p = '\0';
    s2s_free_lines(lines, n);
    return s;
}

int s2s_cmd_optimize(int argc, char **argv) {
    const char *C = "optimize";
    s2s_optimize_opts o;
    s2s_optimize_opts_default(&o);
    char *space = NULL;
    int rc = 2;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { help(stdout); rc = 0; goto out; }
        if (!strcmp(a, "-m") || !strcmp(a, "--model") || !strcmp(a, "-o") || !strcmp(a, "--out") || !strcmp(a, "--data") ||
            !strcmp(a, "--space") || !strcmp(a, "--metric")) {
            if (!(v = s2s_arg_value(C, argc, argv, &i))) goto out;
            if (a[1] == 'm' || !strcmp(a, "--model")) o.teacher = v;
            else if (a[1] == 'o' || !strcmp(a, "--out")) o.out = v;
            else if (!strcmp(a, "--data")) o.data = v;
            else if (!strcmp(a, "--space")) o.space_name = v;
            else {
                static const char *const ok[] = {"wer", "per", "bleu", "chrf"};
                for (int k = 0; k < 4; k++) if (!strcmp(v, ok[k])) o.metric = ok[k];
                if (!o.metric) { fprintf(stderr, "s2s optimize: --metric must be wer, per, bleu or chrf, not '%s'\n", v); goto out; }
            }
            continue;
        }
        if (!strcmp(a, "--max-loss")) {
            if (!(v = s2s_arg_value(C, argc, argv, &i)) || s2s_arg_float(C, a, v, 0, 1e6, &o.max_loss)) goto out;
            continue;
        }
        struct { const char *flag; int *dst; long lo, hi; } ints[] = {
            {"--steps", &o.steps, 1, 2000000000}, {"--eval-max", &o.eval_max, 0, 100000000},
            {"--latency-lines", &o.latency_lines, 1, 100000000}, {"--repeat", &o.repeat, 1, 1000},
            {"--kd-beam", &o.kd_beam, 1, 256}, {"--stop-after", &o.stop_after, 1, 1000000}};
        int matched = 0;
        for (size_t k = 0; k < sizeof ints / sizeof ints[0] && !matched; k++)
            if (!strcmp(a, ints[k].flag)) {
                if (!(v = s2s_arg_value(C, argc, argv, &i)) || s2s_arg_int(C, a, v, ints[k].lo, ints[k].hi, ints[k].dst)) goto out;
                matched = 1;
            }
        if (matched) continue;
        if (!strcmp(a, "--fp16") || !strcmp(a, "--fp32")) { o.fp16 = a[4] == '1'; continue; }
        if (!strcmp(a, "--verbose")) { o.verbose = 1; continue; }
        if (s2s_train_passthrough(&o.train, C, argc, argv, &i, reserved, sizeof reserved / sizeof reserved[0])) goto out;
    }
    if (!o.teacher || !o.data || !o.out) { fprintf(stderr, "s2s optimize: need -m TEACHER, --data DIR and -o OUT (see --help)\n"); goto out; }
    char err[512];
    if (o.space_name) { /* usage errors in the space stop here, before anything runs */
        if (!(space = read_space(o.space_name))) goto out;
        s2s_opt_cand *cands = NULL;
        int n = 0;
        if (s2s_opt_space_parse(space, o.space_name, &cands, &n, err, sizeof err) != 0) {
            fprintf(stderr, "s2s optimize: %s\n", err);
            goto out;
        }
        free(cands);
        o.space = space;
    }
    rc = s2s_optimize(&o, err, sizeof err);
    if (rc != 0) fprintf(stderr, "s2s optimize: %s\n", err);
out:
    free(space);
    s2s_train_options_free(&o.train);
    return rc;
}
