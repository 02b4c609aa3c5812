/* optimize_eval.c - what `s2s optimize` measures of a model (optimize.h): greedy dev
 * quality with a metric, and batch-1 greedy latency on one CPU thread, timed
 * interleaved with the teacher so that both see the same machine load. */
#include <math.h>
#include <stdlib.h>

#include "common.h"
#include "kernels.h"
#include "metrics.h"
#include "optimize.h"
#include "s2s.h"

static void opts_for(s2s_translate_opts *to, float tau, int batch) {
    s2s_translate_opts_default(to);
    to->batch = batch;
    to->exit_threshold = tau >= 0 ? tau : -1.0f;
}

int s2s_opt_quality(const s2s_model *m, const char *metric, char **src, char **ref, int n, float tau,
                    double *quality, char *err, size_t errlen) {
    s2s_translate_opts to;
    opts_for(&to, tau, 64);
    char **hyp = s2s_xcalloc((size_t)(n > 0 ? n : 1), sizeof *hyp);
    int rc = -1;
    if (s2s_translate(m, (const char *const *)src, n, &to, hyp, NULL, err, errlen) == 0)
        rc = s2s_metric_score(metric, (const char *const *)hyp, (const char *const *)ref, (size_t)n, quality, err, errlen);
    for (int i = 0; i < n; i++) free(hyp[i]);
    free(hyp);
    return rc;
}

/* One timed pass: seconds for src[0..n) at batch 1. */
static double one_pass(const s2s_model *m, float tau, char **src, int n, char **hyp, char *err, size_t errlen) {
    s2s_translate_opts to;
    opts_for(&to, tau, 1);
    double t0 = s2s_now();
    int rc = s2s_translate(m, (const char *const *)src, n, &to, hyp, NULL, err, errlen);
    double t = s2s_now() - t0;
    if (rc != 0) return NAN;
    for (int i = 0; i < n; i++) { free(hyp[i]); hyp[i] = NULL; }
    return t;
}

int s2s_opt_latency(const s2s_model *m, float tau, const s2s_model *teacher, char **src, int n, int repeat,
                    double *ms, double *teacher_ms, char *err, size_t errlen) {
    if (n < 1 || repeat < 1) { s2s_errf(err, errlen, "latency: no sentence to time"); return -1; }
    int threads = s2s_get_threads();
    s2s_set_threads(1);
    char **hyp = s2s_xcalloc((size_t)n, sizeof *hyp);
    double best = INFINITY, tbest = INFINITY;
    int rc = 0;
    for (int r = 0; r < repeat && rc == 0; r++) {
        if (teacher) {
            double t = one_pass(teacher, -1.0f, src, n, hyp, err, errlen);
            if (isnan(t)) { rc = -1; break; }
            if (t < tbest) tbest = t;
        }
        double t = one_pass(m, tau, src, n, hyp, err, errlen);
        if (isnan(t)) { rc = -1; break; }
        if (t < best) best = t;
    }
    free(hyp);
    s2s_set_threads(threads);
    if (rc) return -1;
    *ms = 1000.0 * best / n;
    if (teacher && teacher_ms) *teacher_ms = 1000.0 * tbest / n;
    return 0;
}
