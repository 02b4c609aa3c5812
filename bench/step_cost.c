/* step_cost.c - the cost of one decoding step as the output grows (issues 5 and 6:
 * a recurrent or linear-attention decoder should cost the same per token at every
 * length; a Transformer's self-attention cache makes it grow).
 *
 *   build/step_cost -m MODEL [-m MODEL2 ...] [--lengths 16,64,256,1024] [--batch 1,32]
 *                   [--threads 1] [--reps 3]
 *
 * Forced decoding through the decoder step interface (decoder.h), the path every
 * search uses: one source sentence (the model's tokenizer on a fixed English
 * sentence, repeated for each of B rows), then L steps feeding fixed tokens (forced:
 * no search, no early </s>). For each model, batch B and length L it prints one JSON
 * line with the mean seconds per step over the whole run, the mean over the last
 * min(16, L) steps (the marginal cost at length L), the step decoder used (ops kind:
 * "transformer", "t2r", "ssru"...; T2R models also give t2r_k and t2r_map), and the
 * decode-state bytes per sentence after L steps (decoder.h state_bytes at beam 1: a
 * Transformer's self K/V cache plus its cross K/V, which grow with L and the source;
 * T2R's and the RNNs' fixed-size states) and the peak bytes start() reserves per
 * sentence (start_bytes / B). Every model is loaded first and the --reps runs of each
 * (batch, length) cell interleave the models (rep r runs them all, the order rotated by
 * r), so a noisy spell of the host falls on every model alike; the fastest run is kept
 * (ms_per_step, ms_per_step_last16), with the median of the last-16 figure beside it.
 *
 * Lengths beyond the model's max_len - 1 (the G2P models have max_len 64): the
 * sinusoidal position table is extended before decoding (extend_positions below, the
 * formula of model.c; cfg.max_len raised to match, in memory only). This is for
 * TIMING only: a model never saw those positions, so what it would output there is
 * meaningless, but every decoder's per-step work is the same as at a trained length. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "decoder.h"
#include "graph.h"
#include "kernels.h"
#include "model.h"
#include "tokenizer.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int parse_list(const char *s, int *out, int cap) {
    int n = 0;
    while (*s && n < cap) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v <= 0) { fprintf(stderr, "step_cost: bad list '%s'\n", s); exit(2); }
        out[n++] = (int)v;
        s = *end == ',' ? end + 1 : end;
    }
    return n;
}

/* Extend m->pe [max_len, D] to n positions with model.c's sinusoids (tensor2tensor
 * layout: sin of the first D/2 frequencies, then cos) and raise cfg.max_len to n. */
static void extend_positions(s2s_model *m, int n) {
    int D = m->cfg.d_model, half = D / 2;
    if (n <= m->cfg.max_len) return;
    float *pe = malloc((size_t)n * D * sizeof(float));
    if (!pe) { fprintf(stderr, "step_cost: out of memory\n"); exit(1); }
    double inc = log(10000.0) / (double)(half > 1 ? half - 1 : 1);
    for (int pos = 0; pos < n; pos++)
        for (int j = 0; j < half; j++) {
            double a = (double)pos * exp(-(double)j * inc);
            pe[(size_t)pos * D + j] = (float)sin(a);
            pe[(size_t)pos * D + half + j] = (float)cos(a);
        }
    /* the trained positions must be unchanged: same formula as model.c */
    for (size_t i = 0; i < (size_t)m->cfg.max_len * D; i++)
        if (fabsf(pe[i] - m->pe[i]) > 1e-6f) { fprintf(stderr, "step_cost: position table mismatch at %zu\n", i); exit(1); }
    free(m->pe);
    m->pe = pe;
    m->cfg.max_len = n;
}

/* One forced run of L steps over B rows; fills total and last-16 seconds per step. */
static void run(const s2s_model *m, const s2s_decoder_ops *ops, const float *enc, const int32_t *slen,
                int B, int Ts, int L, double *per_step, double *per_step_tail) {
    void *st = ops->start(m, enc, slen, B, Ts, 1, L + 1);
    int V = m->cfg.tgt_vocab;
    float *logits = malloc((size_t)B * V * sizeof(float));
    int32_t *tok = malloc((size_t)B * sizeof(int32_t));
    for (int b = 0; b < B; b++) tok[b] = S2S_BOS;
    int tail = L < 16 ? L : 16;
    double t0 = now_s(), tt = t0;
    for (int t = 0; t < L; t++) {
        if (t == L - tail) tt = now_s();
        ops->step(st, logits, tok, B);
        for (int b = 0; b < B; b++) tok[b] = 4 + (t * 7 + b) % (V - 4); /* forced, not </s> */
    }
    double t1 = now_s();
    *per_step = (t1 - t0) / L;
    *per_step_tail = (t1 - tt) / tail;
    ops->free(st);
    free(logits);
    free(tok);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    const char *models[16];
    int nm = 0, lens[16] = {16, 64, 256, 1024}, nl = 4, bs[8] = {1, 32}, nb = 2, threads = 1, reps = 3;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) { fprintf(stderr, "step_cost: %s needs a value\n", a); return 2; }
        if (!strcmp(a, "-m") && nm < 16) models[nm++] = v;
        else if (!strcmp(a, "--lengths")) nl = parse_list(v, lens, 16);
        else if (!strcmp(a, "--batch")) nb = parse_list(v, bs, 8);
        else if (!strcmp(a, "--threads")) threads = atoi(v);
        else if (!strcmp(a, "--reps")) reps = atoi(v);
        else { fprintf(stderr, "step_cost: unknown option %s\n", a); return 2; }
        i++;
    }
    if (nm == 0) { fprintf(stderr, "usage: step_cost -m MODEL [-m MODEL...] [--lengths 16,64,256,1024] [--batch 1,32] [--threads 1] [--reps 3]\n"); return 2; }
    s2s_set_threads(threads > 0 ? threads : 1);
    static const char *sentence = "and god said , let there be light : and there was light .";
    /* every model loaded and encoded up front; then for each batch and length the reps run
     * interleaved (rep r: every model once, the order rotated by r), so a noisy spell of the
     * host hits every model alike instead of all the reps of one */
    typedef struct {
        s2s_model *m;
        const s2s_decoder_ops *ops;
        int trained_len, Ts;
        int32_t ids[256];
    } entry;
    entry *E = calloc((size_t)nm, sizeof *E);
    int maxL = 0;
    for (int li = 0; li < nl; li++) if (lens[li] > maxL) maxL = lens[li];
    for (int mi = 0; mi < nm; mi++) {
        char err[512];
        entry *e = &E[mi];
        e->m = s2s_model_load(models[mi], 0, err, sizeof err);
        if (!e->m) { fprintf(stderr, "step_cost: %s\n", err); return 1; }
        e->ops = s2s_decoder_ops_for(e->m);
        if (!e->ops) { fprintf(stderr, "step_cost: %s: no step decoder for this model\n", models[mi]); return 1; }
        e->trained_len = e->m->cfg.max_len;
        extend_positions(e->m, maxL + 1); /* timing beyond the trained positions (see above) */
        int k = s2s_tok_encode(e->m->src_tok, sentence, e->ids, 200);
        if (k < 0) k = 0;
        if (k > e->trained_len - 1) k = e->trained_len - 1;
        e->ids[k] = S2S_EOS;
        e->Ts = k + 1;
    }
    if (reps < 1) reps = 1;
    double *tot = malloc((size_t)nm * reps * sizeof(double)), *tail = malloc((size_t)nm * reps * sizeof(double));
    for (int bi = 0; bi < nb; bi++) {
        int B = bs[bi];
        s2s_graph **g = calloc((size_t)nm, sizeof *g);
        const float **enc = calloc((size_t)nm, sizeof *enc);
        int32_t **slen = calloc((size_t)nm, sizeof *slen);
        for (int mi = 0; mi < nm; mi++) {
            entry *e = &E[mi];
            int32_t *src = malloc((size_t)B * e->Ts * sizeof(int32_t));
            slen[mi] = malloc((size_t)B * sizeof(int32_t));
            for (int b = 0; b < B; b++) {
                memcpy(src + (size_t)b * e->Ts, e->ids, (size_t)e->Ts * sizeof(int32_t));
                slen[mi][b] = e->Ts;
            }
            g[mi] = s2s_graph_new();
            s2s_graph_set_grad(g[mi], 0);
            enc[mi] = s2s_model_encode(g[mi], e->m, src, slen[mi], B, e->Ts, 0.0f)->data;
            free(src);
        }
        for (int li = 0; li < nl; li++) {
            int L = lens[li];
            for (int r = 0; r < reps; r++)
                for (int j = 0; j < nm; j++) {
                    int mi = (j + r) % nm;
                    entry *e = &E[mi];
                    run(e->m, e->ops, enc[mi], slen[mi], B, e->Ts, L, &tot[mi * reps + r], &tail[mi * reps + r]);
                }
            for (int mi = 0; mi < nm; mi++) {
                entry *e = &E[mi];
                double *T = tot + (size_t)mi * reps, *TT = tail + (size_t)mi * reps;
                qsort(T, (size_t)reps, sizeof *T, cmp_double);
                qsort(TT, (size_t)reps, sizeof *TT, cmp_double);
                char t2r[64] = "";
                if (s2s_config_is_t2r(&e->m->cfg))
                    snprintf(t2r, sizeof t2r, ", \"t2r_k\": %d, \"t2r_map\": \"%s\"", e->m->cfg.t2r_k,
                             e->m->cfg.t2r_map == S2S_T2R_MAP_ELU ? "elu" : "relu");
                printf("{\"model\": \"%s\", \"decoder\": \"%s\"%s, \"batch\": %d, \"threads\": %d, \"length\": %d, "
                       "\"reps\": %d, \"beyond_trained_positions\": %s, \"ms_per_step\": %.4f, \"ms_per_step_last16\": %.4f, "
                       "\"ms_per_step_last16_median\": %.4f, "
                       "\"state_bytes_per_sentence\": %zu, \"start_bytes_per_sentence\": %zu}\n",
                       models[mi], e->ops->kind, t2r, B, threads, L, reps, L > e->trained_len ? "true" : "false",
                       1e3 * T[0], 1e3 * TT[0], 1e3 * TT[reps / 2], e->ops->state_bytes(e->m, e->Ts, L),
                       e->ops->start_bytes(e->m, B, e->Ts, 1, L + 1) / (size_t)B);
                fflush(stdout);
            }
        }
        for (int mi = 0; mi < nm; mi++) { s2s_graph_free(g[mi]); free(slen[mi]); }
        free(g); free(enc); free(slen);
    }
    for (int mi = 0; mi < nm; mi++) s2s_model_free(E[mi].m);
    free(E); free(tot); free(tail);
    return 0;
}
