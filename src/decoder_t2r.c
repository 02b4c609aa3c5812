/* decoder_t2r.c - incremental decoding of a Transformer decoder with T2R linear
 * attention (cfg.dec_attn t2r; kernels_t2r.h) behind the step interface of decoder.h,
 * in the RECURRENT form: nothing grows with the output length.
 *
 * Per layer a row carries its self-attention state S [H, kf, Dh], z [H, kf] (the
 * running sums of phi(k_j) v_j^T and phi(k_j), zero before the first step), updated
 * by s2s_k_t2r_step_feat. The features phi(q), phi(k) of all rows and heads come first,
 * as one grouped GEMM each on the packed phi weights (s2s_dec_t2r_phi), so the per-row
 * work is only the state update and read. Cross-attention needs no keys at all once
 * start() has reduced each source sentence to its state (s2s_dec_t2r_cross_states over
 * the projected encoder output, padding excluded): [B, H, kf, Dh] + [B, H, kf] per
 * layer, shared by the sentence's rows and queried each step (s2s_dec_t2r_cross_query).
 * select() gathers the rows' self-attention states. Everything start() keeps is one allocation laid
 * out by plan() (which also gives start_bytes()); start() additionally mallocs the
 * projected encoder keys/values [B, Ts, D] x 2 for the cross states and frees them
 * before it returns (counted by start_bytes() as part of the peak). Checked against
 * the teacher-forced (parallel) forward pass of model.c by tests/test_t2r_model.c.
 * The fixed elu+1 map (cfg.t2r_map elu) has no phi weights: NULL W, b to the kernels. */
#include <math.h>
#include <string.h>

#include "common.h"
#include "config.h"
#include "decoder.h"
#include "decoder_common.h"
#include "shortlist.h"
#include "kernels.h"
#include "kernels_t2r.h"
#include "model.h"

typedef struct {
    const s2s_model *m;
    int B, Ts, max_steps;
    int N, Nmax;            /* live rows, capacity (B*R) */
    int t;                  /* steps taken */
    int32_t *row_sent;      /* [Nmax] sentence of each row */
    int32_t *rows_tmp;      /* [Nmax] select scratch */
    float **sS, **sz;       /* [Ld] -> [Nmax, H, kf, Dh], [Nmax, H, kf] self-attention state */
    float **cS, **cz;       /* [Ld] -> [B, H, kf, Dh], [B, H, kf] cross-attention state */
    float *spare_S, *spare_z; /* select scratch, swapped in */
    float *x, *h, *q, *k, *v, *a; /* [Nmax, D] */
    float *pq, *pk;         /* [Nmax, H, kf] query and key features */
    float *f;               /* [Nmax, F] FFN hidden */
    float *mean, *rstd;     /* [Nmax] */
    void *block;            /* the one allocation everything above lives in */
    const s2s_vocab_sel *vs; /* shortlist of the batch, or NULL (decoder.h set_vocab) */
} t2state;

/* Lay out every buffer of a state in one block (base == NULL: only count). Returns
 * the bytes needed; with a base, sets the pointers of s. */
static size_t plan(const s2s_model *m, int B, int Nmax, t2state *s, char *base) {
    const s2s_config *c = &m->cfg;
    size_t D = (size_t)c->d_model, L = (size_t)c->dec_layers, N = (size_t)Nmax;
    size_t H = (size_t)c->n_heads, Dh = D / H, kf = (size_t)c->t2r_k;
    size_t off = 0;
#define CARVE(ptr, type, count)                                        \
    do {                                                               \
        if (base) (ptr) = (type *)(void *)(base + off);                \
        off += (((size_t)(count) * sizeof(type)) + 63) & ~(size_t)63;  \
    } while (0)
    float **pp = NULL;
    CARVE(pp, float *, 4 * L);
    if (base) { s->sS = pp; s->sz = pp + L; s->cS = pp + 2 * L; s->cz = pp + 3 * L; }
    for (size_t l = 0; l < L; l++) {
        CARVE(s->sS[l], float, N * H * kf * Dh);
        CARVE(s->sz[l], float, N * H * kf);
        CARVE(s->cS[l], float, (size_t)B * H * kf * Dh);
        CARVE(s->cz[l], float, (size_t)B * H * kf);
    }
    CARVE(s->spare_S, float, N * H * kf * Dh);
    CARVE(s->spare_z, float, N * H * kf);
    CARVE(s->x, float, N * D); CARVE(s->h, float, N * D); CARVE(s->q, float, N * D);
    CARVE(s->k, float, N * D); CARVE(s->v, float, N * D); CARVE(s->a, float, N * D);
    CARVE(s->pq, float, N * H * kf); CARVE(s->pk, float, N * H * kf);
    CARVE(s->f, float, N * (size_t)c->d_ff);
    CARVE(s->mean, float, N); CARVE(s->rstd, float, N);
    CARVE(s->row_sent, int32_t, N);
    CARVE(s->rows_tmp, int32_t, N);
#undef CARVE
    return off;
}

static void *t2_start(const s2s_model *m, const float *enc, const int32_t *src_len, int B, int Ts,
                      int R, int max_steps) {
    const s2s_config *c = &m->cfg;
    S2S_ASSERT(s2s_config_is_t2r(c) && s2s_config_dec_kind(c) == S2S_DEC_TRANSFORMER);
    int D = c->d_model, H = c->n_heads, Dh = D / H, kf = c->t2r_k;
    t2state *s = s2s_xcalloc(1, sizeof *s);
    s->m = m; s->B = B; s->Ts = Ts; s->max_steps = max_steps;
    s->Nmax = s->N = B * R;
    size_t bytes = plan(m, B, s->Nmax, s, NULL);
    s->block = aligned_alloc(64, bytes);
    S2S_ASSERT(s->block != NULL);
    plan(m, B, s->Nmax, s, s->block);
    for (int r = 0; r < s->N; r++) s->row_sent[r] = r / R;
    size_t self_S = (size_t)s->Nmax * H * kf * Dh, self_z = (size_t)s->Nmax * H * kf;
    for (int l = 0; l < c->dec_layers; l++) {
        memset(s->sS[l], 0, self_S * sizeof(float)); /* zero initial state */
        memset(s->sz[l], 0, self_z * sizeof(float));
    }
    s2s_dec_t2r_cross_states(s->cS, s->cz, m, enc, src_len, B, Ts);
    return s;
}

static void t2_step(void *st, float *logits, const int32_t *tokens, int N) {
    t2state *s = st;
    const s2s_model *m = s->m;
    const s2s_config *c = &m->cfg;
    int D = c->d_model, H = c->n_heads, Dh = D / H, kf = c->t2r_k, t = s->t;
    S2S_ASSERT(N == s->N && t < s->max_steps && t < c->max_len);
    float sq = sqrtf((float)D);
    for (int r = 0; r < N; r++) {
        const float *e = m->tgt_emb->data + (size_t)tokens[r] * D;
        const float *pe = m->pe + (size_t)t * D;
        float *xr = s->x + (size_t)r * D;
        for (int d = 0; d < D; d++) xr[d] = e[d] * sq + pe[d];
    }
    for (int l = 0; l < c->dec_layers; l++) {
        const s2s_dec_layer *L = &m->dec[l];
        /* self-attention: one recurrent step on the rows' states */
        s2s_k_layernorm_fwd(s->h, s->mean, s->rstd, s->x, L->ln1.w->data, L->ln1.b->data, N, D);
        s2s_dec_linear(s->q, s->h, &L->sq, N, D, D);
        s2s_dec_linear(s->k, s->h, &L->sk, N, D, D);
        s2s_dec_linear(s->v, s->h, &L->sv, N, D, D);
        s2s_dec_t2r_phi(s->pq, s->q, &L->sphi, S2S_T2R_QSCALE(Dh), N, H, Dh, kf);
        s2s_dec_t2r_phi(s->pk, s->k, &L->sphi, 1.0f, N, H, Dh, kf);
        s2s_k_t2r_step_feat(s->a, s->sS[l], s->sz[l], s->pq, s->pk, s->v, N, H, Dh, kf);
        s2s_dec_linear_add(s->x, s->h, s->a, &L->so, N, D, D);
        /* cross-attention: query the sentence's precomputed state */
        s2s_k_layernorm_fwd(s->h, s->mean, s->rstd, s->x, L->ln2.w->data, L->ln2.b->data, N, D);
        s2s_dec_linear(s->q, s->h, &L->cq, N, D, D);
        s2s_dec_t2r_cross_query(s->a, s->pq, s->cS[l], s->cz[l], s->q, &L->cphi, s->row_sent, N, H, Dh, kf);
        s2s_dec_linear_add(s->x, s->h, s->a, &L->co, N, D, D);
        /* feed-forward */
        s2s_dec_ffn(s->x, s->h, s->f, s->mean, s->rstd, m, L, N);
    }
    s2s_dec_logits(logits, s->h, s->mean, s->rstd, s->x, m, s->vs, N);
    s->t++;
}

static void t2_select(void *st, const int32_t *rows, int N_new) {
    t2state *s = st;
    S2S_ASSERT(N_new <= s->Nmax);
    const s2s_config *c = &s->m->cfg;
    size_t cS = (size_t)c->n_heads * c->t2r_k * (c->d_model / c->n_heads), cz = (size_t)c->n_heads * c->t2r_k;
    for (int i = 0; i < N_new; i++) S2S_ASSERT(rows[i] >= 0 && rows[i] < s->N);
    for (int l = 0; l < c->dec_layers; l++) {
        s2s_dec_gather_rows(&s->sS[l], &s->spare_S, rows, N_new, cS, cS);
        s2s_dec_gather_rows(&s->sz[l], &s->spare_z, rows, N_new, cz, cz);
    }
    s2s_dec_gather_i32(s->row_sent, s->rows_tmp, rows, N_new);
    s->N = N_new;
}

static void t2_free(void *st) {
    t2state *s = st;
    if (!s) return;
    free(s->block);
    free(s);
}

static size_t t2_state_bytes(const s2s_model *m, int Ts, int t) {
    (void)Ts; (void)t;
    /* per row and layer: self S, z plus the sentence's cross S, z; independent of t and Ts */
    const s2s_config *c = &m->cfg;
    size_t per = (size_t)c->n_heads * c->t2r_k * ((size_t)(c->d_model / c->n_heads) + 1);
    return sizeof(float) * 2 * (size_t)c->dec_layers * per;
}

static size_t t2_start_bytes(const s2s_model *m, int B, int Ts, int R, int max_steps) {
    (void)max_steps;
    /* the block plus the transient projected encoder keys/values of start() */
    return sizeof(t2state) + plan(m, B, B * R, NULL, NULL) +
           2 * (size_t)B * Ts * m->cfg.d_model * sizeof(float);
}

static void t2_set_vocab(void *st, const s2s_vocab_sel *vs) { ((t2state *)st)->vs = vs; }

const s2s_decoder_ops s2s_t2r_decoder = {
    "t2r", t2_start, t2_step, t2_select, t2_free, t2_state_bytes, t2_start_bytes, t2_set_vocab,
};
