/* decoder_deed_t2r.c - the T2R attention state of the DEED early-exit decoder
 * (decoder_deed_t2r.h). The recurrent state of layer l holds exactly the positions
 * whose layer-l state decoder_deed.c has computed: it hands each (row, position) to
 * s2s_deed_t2r_self once, in position order (a just-in-time position before the
 * current one), so after any step the state equals the sums of a full pass over those
 * positions. Same kernels as decoder_t2r.c (the features of all items as its step
 * computes them, s2s_dec_t2r_phi, then s2s_k_t2r_step_feat per item, one row at a
 * time, which gives each row the numbers of the batched step). */
#include "decoder_deed_t2r.h"

#include <math.h>
#include <stdlib.h>

#include "common.h"
#include "decoder_common.h"
#include "kernels_t2r.h"

struct s2s_deed_t2r {
    const s2s_model *m;
    int Ld, H, Dh, kf, D;
    size_t nS, nz;            /* floats of one row's (or sentence's) S and z: H*kf*Dh, H*kf */
    float **sS, **sz;         /* [Ld] -> [Nmax, H, kf, Dh], [Nmax, H, kf] self-attention states */
    float **cS, **cz;         /* [Ld] -> [B, H, kf, Dh], [B, H, kf] cross-attention states */
    float *spare_S, *spare_z; /* select scratch, swapped in */
    float *ph;                /* [ph_rows, 2, H, kf] feature scratch (query, key), grown on demand */
    int ph_rows;
};

/* The feature scratch for M items: [M, H, kf] query features, then the same for keys. */
static float *features(s2s_deed_t2r *t, int M) {
    if (M > t->ph_rows) {
        free(t->ph);
        t->ph = s2s_xmalloc(2 * (size_t)M * t->nz * sizeof(float));
        t->ph_rows = M;
    }
    return t->ph;
}

s2s_deed_t2r *s2s_deed_t2r_new(const s2s_model *m, const float *enc, const int32_t *src_len, int B, int Ts, int Nmax) {
    const s2s_config *c = &m->cfg;
    S2S_ASSERT(s2s_config_is_t2r(c) && s2s_config_dec_kind(c) == S2S_DEC_TRANSFORMER);
    s2s_deed_t2r *t = s2s_xcalloc(1, sizeof *t);
    t->m = m;
    t->Ld = c->dec_layers; t->H = c->n_heads; t->D = c->d_model; t->Dh = t->D / t->H; t->kf = c->t2r_k;
    t->nS = (size_t)t->H * t->kf * t->Dh;
    t->nz = (size_t)t->H * t->kf;
    size_t L = (size_t)t->Ld, N = (size_t)Nmax;
    t->sS = s2s_xcalloc(L, sizeof(float *)); t->sz = s2s_xcalloc(L, sizeof(float *));
    t->cS = s2s_xcalloc(L, sizeof(float *)); t->cz = s2s_xcalloc(L, sizeof(float *));
    for (size_t l = 0; l < L; l++) {
        t->sS[l] = s2s_xcalloc(N * t->nS, sizeof(float)); /* zero initial state */
        t->sz[l] = s2s_xcalloc(N * t->nz, sizeof(float));
        t->cS[l] = s2s_xmalloc((size_t)B * t->nS * sizeof(float));
        t->cz[l] = s2s_xmalloc((size_t)B * t->nz * sizeof(float));
    }
    t->spare_S = s2s_xmalloc(N * t->nS * sizeof(float));
    t->spare_z = s2s_xmalloc(N * t->nz * sizeof(float));
    s2s_dec_t2r_cross_states(t->cS, t->cz, m, enc, src_len, B, Ts);
    return t;
}

void s2s_deed_t2r_free(s2s_deed_t2r *t) {
    if (!t) return;
    for (int l = 0; l < t->Ld; l++) { free(t->sS[l]); free(t->sz[l]); free(t->cS[l]); free(t->cz[l]); }
    free(t->sS); free(t->sz); free(t->cS); free(t->cz);
    free(t->spare_S); free(t->spare_z); free(t->ph);
    free(t);
}

void s2s_deed_t2r_self(s2s_deed_t2r *t, int l, float *a, const float *q, const float *k, const float *v,
                       const int32_t *row, int M) {
    const s2s_lin_p *phi = &t->m->dec[l].sphi;
    float *S = t->sS[l], *z = t->sz[l], *pq = features(t, M), *pk = pq + (size_t)M * t->nz;
    size_t D = (size_t)t->D, nz = t->nz;
    s2s_dec_t2r_phi(pq, q, phi, S2S_T2R_QSCALE(t->Dh), M, t->H, t->Dh, t->kf);
    s2s_dec_t2r_phi(pk, k, phi, 1.0f, M, t->H, t->Dh, t->kf);
    /* one task per run of consecutive items of a row (distinct rows: disjoint states);
     * the kernel stays serial inside for one row (no nested parallelism) */
#pragma omp parallel for schedule(dynamic) if (M >= 4 && (size_t)M * t->nS > 65536)
    for (int i = 0; i < M; i++) {
        if (i > 0 && row[i] == row[i - 1]) continue; /* inside the run of an earlier item */
        float *Sr = S + (size_t)row[i] * t->nS, *zr = z + (size_t)row[i] * t->nz;
        for (int j = i; j < M && row[j] == row[i]; j++)
            s2s_k_t2r_step_feat(a + j * D, Sr, zr, pq + j * nz, pk + j * nz, v + j * D, 1, t->H, t->Dh, t->kf);
    }
}

void s2s_deed_t2r_fold(s2s_deed_t2r *t, int l, float *scratch, const float *k, const float *v, const int32_t *row,
                       int M) {
    /* the step's state update is the fold; its read (here with the key as the query)
     * goes to the scratch */
    s2s_deed_t2r_self(t, l, scratch, k, k, v, row, M);
}

void s2s_deed_t2r_cross(s2s_deed_t2r *t, int l, float *a, const float *q, const int32_t *sent, int M) {
    s2s_dec_t2r_cross_query(a, features(t, M), t->cS[l], t->cz[l], q, &t->m->dec[l].cphi, sent, M, t->H, t->Dh,
                            t->kf);
}

void s2s_deed_t2r_select(s2s_deed_t2r *t, const int32_t *rows, int N_new) {
    for (int l = 0; l < t->Ld; l++) {
        s2s_dec_gather_rows(&t->sS[l], &t->spare_S, rows, N_new, t->nS, t->nS);
        s2s_dec_gather_rows(&t->sz[l], &t->spare_z, rows, N_new, t->nz, t->nz);
    }
}

void s2s_deed_t2r_row_state(const s2s_deed_t2r *t, int r, int l, const float **S, const float **z) {
    *S = t->sS[l] + (size_t)r * t->nS;
    *z = t->sz[l] + (size_t)r * t->nz;
}

size_t s2s_deed_t2r_row_bytes(const s2s_model *m) {
    const s2s_config *c = &m->cfg;
    size_t per = (size_t)c->n_heads * c->t2r_k * ((size_t)(c->d_model / c->n_heads) + 1); /* S + z */
    return sizeof(float) * 2 * (size_t)c->dec_layers * per;                             /* self + cross */
}

size_t s2s_deed_t2r_start_bytes(const s2s_model *m, int B, int Ts, int Nmax) {
    const s2s_config *c = &m->cfg;
    size_t per = (size_t)c->n_heads * c->t2r_k * ((size_t)(c->d_model / c->n_heads) + 1);
    size_t states = ((size_t)c->dec_layers * ((size_t)Nmax + B) + (size_t)Nmax) * per; /* + select spare */
    size_t enc_kv = 2 * (size_t)B * Ts * c->d_model;                                    /* transient */
    return sizeof(float) * (states + enc_kv) + sizeof(s2s_deed_t2r) + 4 * (size_t)c->dec_layers * sizeof(float *);
}
