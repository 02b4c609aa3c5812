/* step_cost.c - the cost of one decoding step as the output grows (issues 5 and 6:
 * a recurrent or linear-attention decoder should cost the same per token at every
 * length; a Transformer's self-attention cache makes it grow).
 *
 *   build/step_cost -m MODEL [-m MODEL2 ...] [--lengths 16,64,256] [--batch 1,32]
 *                   [--threads 1] [--reps 3]
 *
 * Forced decoding through the decoder step interface (decoder.h), the path every
 * search uses: one source sentence (the model's tokenizer on a fixed English
 * sentence, repeated for each of B rows), then L steps feeding fixed tokens (forced:
 * no search, no early </s>). For each model, batch B and length L it prints one JSON
 * line with the mean seconds per step over the whole run, the mean over the last
 * min(16, L) steps (the marginal cost at length L), and the decoder's state bytes
 * per row after L steps. The fastest of --reps runs is kept. Lengths beyond the
 * model's max_len - 1 are skipped (positions are a fixed table). */
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

int main(int argc, char **argv) {
    const char *models[16];
    int nm = 0, lens[16] = {16, 64, 256}, nl = 3, bs[8] = {1, 32}, nb = 2, threads = 1, reps = 3;
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
    if (nm == 0) { fprintf(stderr, "usage: step_cost -m MODEL [-m MODEL...] [--lengths 16,64,256] [--batch 1,32] [--threads 1] [--reps 3]\n"); return 2; }
    s2s_set_threads(threads > 0 ? threads : 1);
    static const char *sentence = "and god said , let there be light : and there was light .";
    for (int mi = 0; mi < nm; mi++) {
        char err[512];
        s2s_model *m = s2s_model_load(models[mi], 0, err, sizeof err);
        if (!m) { fprintf(stderr, "step_cost: %s\n", err); return 1; }
        const s2s_decoder_ops *ops = s2s_decoder_ops_for(m);
        int32_t ids[256];
        int k = s2s_tok_encode(m->src_tok, sentence, ids, 200);
        if (k < 0) k = 0;
        if (k > m->cfg.max_len - 1) k = m->cfg.max_len - 1;
        ids[k] = S2S_EOS;
        int Ts = k + 1;
        for (int bi = 0; bi < nb; bi++) {
            int B = bs[bi];
            int32_t *src = malloc((size_t)B * Ts * sizeof(int32_t)), *slen = malloc((size_t)B * sizeof(int32_t));
            for (int b = 0; b < B; b++) { memcpy(src + (size_t)b * Ts, ids, (size_t)Ts * sizeof(int32_t)); slen[b] = Ts; }
            s2s_graph *g = s2s_graph_new();
            s2s_graph_set_grad(g, 0);
            s2s_tensor *enc = s2s_model_encode(g, m, src, slen, B, Ts, 0.0f);
            for (int li = 0; li < nl; li++) {
                int L = lens[li];
                if (L > m->cfg.max_len - 1) continue;
                double best = 1e30, best_tail = 1e30;
                for (int r = 0; r < reps; r++) {
                    double ps, pt;
                    run(m, ops, enc->data, slen, B, Ts, L, &ps, &pt);
                    if (ps < best) best = ps;
                    if (pt < best_tail) best_tail = pt;
                }
                printf("{\"model\": \"%s\", \"decoder\": \"%s\", \"batch\": %d, \"threads\": %d, \"length\": %d, "
                       "\"ms_per_step\": %.4f, \"ms_per_step_last16\": %.4f, \"state_bytes_per_row\": %zu}\n",
                       models[mi], m->cfg.decoder, B, threads, L, 1e3 * best, 1e3 * best_tail,
                       ops->state_bytes(m, Ts, L));
                fflush(stdout);
            }
            s2s_graph_free(g);
            free(src);
            free(slen);
        }
        s2s_model_free(m);
    }
    return 0;
}
