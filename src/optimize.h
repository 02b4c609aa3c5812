/* optimize.h - `s2s optimize`: run the decoding accelerations (NASH pruning, hybrid RNN
 * decoders, DEED early exit, T2R linear attention, and NASH stacked under another one)
 * over a search space of candidates made from one teacher, measure every result (dev
 * quality, batch-1 CPU latency against the teacher, parameters, file size), keep them
 * in OUT/results.tsv with their Pareto front, and pick the fastest candidate within a
 * quality loss (docs/DESIGN.md "s2s optimize"). Everything is resumable: finished
 * stages and results are skipped when the same command runs again.
 *
 *   optimize_space.c   the candidate syntax, canonical names, the default space
 *   optimize.c         the pipeline: distilled targets, stages run in-process through
 *                      s2s_train / s2s_prune_run, bookkeeping, progress
 *   optimize_eval.c    dev quality and batch-1 latency of a model
 *   optimize_report.c  results.tsv (read, atomic write), pareto.tsv, report.md,
 *                      best.safetensors, pareto.png (gnuplot, when on PATH)
 *   cli/cmd_optimize.c the flags */
#ifndef S2S_OPTIMIZE_H
#define S2S_OPTIMIZE_H

#include <stddef.h>

#include "model.h"
#include "train.h"

/* ------------------------------------------------------------ search space */

enum { S2S_OPT_NASH = 0, S2S_OPT_RNN = 1, S2S_OPT_DEED = 2, S2S_OPT_T2R = 3 };
#define S2S_OPT_MAX_TAU 16

/* One method applied to a model. Text: "nash n=2 t=0.3", "ssru layers=1 ffn=1" (also
 * gru, lstm), "deed tau=0.6,0.8 rank=64", "t2r k=32 map=relu"; every key is optional
 * (defaults: n=2 t=0.3, layers=1 ffn=1, tau=0.8 rank=64, k=32 map=relu). */
typedef struct {
    int method;              /* S2S_OPT_* */
    int n;                   /* NASH: decoder layers kept */
    float t;                 /* NASH: encoder sparsity (0: no mask training) */
    char rnn[8];             /* hybrid: "ssru", "gru" or "lstm" */
    int layers, ffn;         /* hybrid: decoder layers, an FFN per layer (1) or not (0) */
    int rank;                /* DEED: exit adapter rank */
    int n_tau;               /* DEED: exit thresholds evaluated (one training, a result row each) */
    float tau[S2S_OPT_MAX_TAU];
    int k, map;              /* T2R: features per head, S2S_T2R_MAP_* */
    char name[48];           /* canonical: nash-n2-t0.3, ssru-l1 (-noffn), deed-r64, t2r-k32 / t2r-elu */
} s2s_opt_stage;

/* A candidate: one stage, or a NASH stage and another method on its result
 * ("nash n=2 t=0.3 + ssru layers=1"). Its files are OUT/cand/<name>/; a stack's NASH
 * stage lives in OUT/cand/<its stage name>/, shared with every candidate that has it. */
typedef struct {
    int n_stages;            /* 1 or 2 */
    s2s_opt_stage st[2];
    char name[100];          /* the stage names joined by '+' */
    int line;                /* line in the space text */
} s2s_opt_cand;

/* The default search space (text in the --space syntax). */
extern const char s2s_opt_default_space[];

/* Parse a space: one candidate per line, '#' starts a comment, blank lines are skipped.
 * *cands (malloc'd) gets *n candidates in file order. 0, or -1 + "WHERE:LINE: message"
 * (unknown method or key, bad value, a stack other than NASH + one method, duplicates,
 * no candidate at all). */
int s2s_opt_space_parse(const char *text, const char *where, s2s_opt_cand **cands, int *n, char *err,
                        size_t errlen);

/* ------------------------------------------------------------ results */

/* One row of OUT/results.tsv (one per candidate; per threshold for DEED; the teacher
 * first). */
typedef struct {
    char name[128];          /* "teacher", the candidate name, + "@TAU" for DEED rows */
    char method[32];         /* teacher, nash, ssru, gru, lstm, deed, t2r; stacks "nash+ssru" */
    double tau;              /* DEED exit threshold (a decoding flag), or -1 */
    double quality;          /* dev metric, greedy */
    double delta;            /* quality - the teacher's quality */
    double ms;               /* ms per sentence: batch 1, greedy, 1 CPU thread */
    double teacher_ms;       /* the teacher's, timed in the same process, interleaved */
    double speedup;          /* teacher_ms / ms */
    long long params;
    double mb;               /* model file size, 1e6 bytes */
    char model[512];         /* the model file: relative to OUT for candidates, the -m path for the teacher */
} s2s_opt_result;

/* Read results.tsv: a missing file is 0 rows; -1 + message on a malformed line. */
int s2s_opt_results_read(const char *path, s2s_opt_result **rows, int *n, char *err, size_t errlen);
/* Rewrite results.tsv atomically (temporary file + rename) with a header line. */
int s2s_opt_results_write(const char *path, const s2s_opt_result *rows, int n, const char *metric, char *err,
                          size_t errlen);

/* What the report says about the run. */
typedef struct {
    const char *teacher, *data, *metric, *space_name;
    float max_loss;
    int steps, eval_lines, latency_lines, repeat, fp16, done, total;
} s2s_opt_report_info;

/* The loss of a row against the teacher (> 0: worse), for this metric. */
double s2s_opt_loss(const s2s_opt_result *r, const char *metric);
/* The fastest candidate row (not the teacher) within max_loss that is faster than the
 * teacher (speed-up > 1), or -1. */
int s2s_opt_best(const s2s_opt_result *rows, int n, const char *metric, float max_loss);
/* From rows (rows[0] the teacher): OUT/pareto.tsv (the rows on the front of relative
 * latency ms / teacher_ms vs quality), OUT/report.md, OUT/best.safetensors (a copy of
 * s2s_opt_best's model; removed when there is none) and, when gnuplot is on PATH,
 * OUT/pareto.png (failures of gnuplot are ignored). *best gets s2s_opt_best's index.
 * 0, or -1 + message. */
int s2s_opt_report(const char *out_dir, const s2s_opt_result *rows, int n, const s2s_opt_report_info *info,
                   int *best, char *err, size_t errlen);

/* ------------------------------------------------------------ measuring */

/* Greedy dev quality of m on src/ref[0..n) with the metric (tau >= 0: DEED early exit
 * at that threshold). 0, or -1 + message. */
int s2s_opt_quality(const s2s_model *m, const char *metric, char **src, char **ref, int n, float tau,
                    double *quality, char *err, size_t errlen);
/* Batch-1 greedy latency in ms per sentence of m (tau as above) on src[0..n), on one
 * CPU thread, the best of `repeat` runs; with teacher != NULL the teacher runs
 * interleaved with m (teacher, m, teacher, m, ...) and *teacher_ms gets its best. The
 * thread count is restored after. 0, or -1 + message. */
int s2s_opt_latency(const s2s_model *m, float tau, const s2s_model *teacher, char **src, int n, int repeat,
                    double *ms, double *teacher_ms, char *err, size_t errlen);

/* ------------------------------------------------------------ the pipeline */

typedef struct {
    const char *teacher, *data, *out;
    const char *space;        /* space text; NULL: s2s_opt_default_space */
    const char *space_name;   /* for messages: the --space file, or "default space" */
    const char *metric;       /* wer, per, bleu, chrf; NULL: the teacher's recorded training metric,
                               * else wer for char/symbol targets and bleu for BPE */
    float max_loss;           /* allowed quality loss against the teacher, metric points */
    int steps;                /* training budget per stage (NASH: 2/5 mask training when t > 0, the rest fine-tuning) */
    int eval_max;             /* dev lines scored (0: all) */
    int latency_lines, repeat;
    int stop_after;           /* > 0: stop after this many candidates were trained and evaluated */
    int kd_beam;              /* beam of the distilled targets */
    int fp16;                 /* candidate files in fp16 (1), fp32 (0), or as the teacher's (-1) */
    int verbose;              /* show s2s train's / s2s prune's own progress lines */
    /* training options of every stage (data, out_dir, init and the method's fields are
     * set per stage); lr, warmup, dropout <= 0 / < 0 and eval_every < 0 mean the
     * per-method defaults (s2s optimize --help) */
    s2s_train_opts train;
} s2s_optimize_opts;

void s2s_optimize_opts_default(s2s_optimize_opts *o);
/* Run (or resume) the search. 0: done, or stopped by stop_after; 1: error (message in
 * err), also when candidates failed (each reported on stderr as "FAILED" when it fails,
 * the search going on without it); 2: interrupted by SIGINT/SIGTERM during training
 * (state saved: run again). */
int s2s_optimize(const s2s_optimize_opts *o, char *err, size_t errlen);

#endif
