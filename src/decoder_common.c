/* decoder_common.c - helpers shared by the decoder kinds (see decoder_common.h). */
#include "decoder_common.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "kernels.h"
#include "kernels_t2r.h"
#include "shortlist.h"

/* The packed weights when the packed kernel takes these N rows, else NULL. */
static const float *packed_for(const s2s_lin_p *p, int N) {
    if (p->w->half && N <= S2S_F16_MAX_ROWS) return NULL;
    return N >= S2S_PACKED_MIN_ROWS ? s2s_weight_packed(p->w) : NULL;
}

void s2s_dec_linear(float *y, const float *x, const s2s_lin_p *p, int N, int K, int M) {
    const float *b = p->b ? p->b->data : NULL, *pw = packed_for(p, N);
    if (pw) s2s_k_linear_packed_fwd(y, x, pw, b, N, K, M);
    else if (p->w->half && N <= S2S_F16_MAX_ROWS) s2s_k_linear_f16_fwd(y, x, p->w->half, b, N, K, M);
    else s2s_k_linear_fwd(y, x, p->w->data, b, N, K, M);
}

void s2s_dec_linear_add(float *xr, float *tmp, const float *in, const s2s_lin_p *p, int N, int K, int M) {
    const float *pw = packed_for(p, N);
    if (pw) { /* fused: the same values as the linear, then the add */
        s2s_k_linear_packed_ex_fwd(xr, in, pw, p->b ? p->b->data : NULL, N, K, M, xr, 0);
        return;
    }
    s2s_dec_linear(tmp, in, p, N, K, M);
    s2s_dec_add(xr, tmp, (size_t)N * M);
}

/* One query row, every head (s2s_k_attend_head per head); sc [n] scratch. */
static void attend_row(float *o, const float *q, const float *K, const float *V, size_t js,
                       const int32_t *slots, size_t slot0, size_t ss, int n, int H, int Dh, float scale,
                       float *sc) {
    for (int h = 0; h < H; h++)
        s2s_k_attend_head(o + (size_t)h * Dh, sc, q + (size_t)h * Dh, K + (size_t)h * Dh, V + (size_t)h * Dh, js,
                          slots, slot0, ss, n, Dh, scale);
}

void s2s_dec_attend_at(float *a, float *p, const float *q, const float *K, const float *V, size_t js,
                       size_t ss, const int32_t *slots, int slots_stride, const int32_t *row_block,
                       const int32_t *blk_slot, const int32_t *lens, int Tk_all, int N, int H, int Dh,
                       int Tmax) {
    const int D = H * Dh;
    const float scale = 1.0f / sqrtf((float)Dh);
#pragma omp parallel for schedule(static) if (N >= 4 && (size_t)N * H * Tk_all * Dh > 65536)
    for (int r = 0; r < N; r++) {
        const int blk = row_block ? row_block[r] : r;
        int n = lens ? lens[blk] : Tk_all;
        if (n > Tk_all) n = Tk_all;
        attend_row(a + (size_t)r * D, q + (size_t)r * D, K, V, js, slots ? slots + (size_t)r * slots_stride : NULL,
                   (size_t)(blk_slot ? blk_slot[blk] : blk), ss, n, H, Dh, scale, p + (size_t)r * H * Tmax);
    }
}

void s2s_dec_attend(float *a, float *p, const float *q, const float *K, const float *V,
                    size_t row_stride, const int32_t *row_block, const int32_t *lens, int Tk_all,
                    int N, int H, int Dh, int Tmax) {
    s2s_dec_attend_at(a, p, q, K, V, (size_t)H * Dh, row_stride, NULL, 0, row_block, NULL, lens, Tk_all, N, H,
                      Dh, Tmax);
}

static int clamp_len(int32_t l, int T) { return l < 0 ? 0 : l > T ? T : l; }

void s2s_dec_rows_pack(float *packed, const float *x, const int32_t *len, int B, int T, int D) {
    for (int b = 0, r = 0; b < B; b++) {
        int l = clamp_len(len[b], T);
        memcpy(packed + (size_t)r * D, x + (size_t)b * T * D, (size_t)l * D * sizeof(float));
        r += l;
    }
}

void s2s_dec_add(float *x, const float *y, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] += y[i];
}

void s2s_dec_gather_rows(float **buf, float **spare, const int32_t *rows, int N_new, size_t stride,
                         size_t used) {
    for (int i = 0; i < N_new; i++)
        memcpy(*spare + (size_t)i * stride, *buf + (size_t)rows[i] * stride, used * sizeof(float));
    float *t = *buf;
    *buf = *spare;
    *spare = t;
}

void s2s_dec_gather_i32(int32_t *v, int32_t *tmp, const int32_t *rows, int N_new) {
    for (int i = 0; i < N_new; i++) tmp[i] = v[rows[i]];
    memcpy(v, tmp, (size_t)N_new * sizeof(int32_t));
}

void s2s_dec_ffn(float *x, float *h, float *f, float *mean, float *rstd, const s2s_model *m,
                 const s2s_dec_layer *L, int N) {
    int D = m->cfg.d_model, F = m->cfg.d_ff;
    s2s_k_layernorm_fwd(h, mean, rstd, x, L->ln3.w->data, L->ln3.b->data, N, D);
    const float *pw = packed_for(&L->fc1, N);
    if (pw && m->cfg.activation != S2S_ACT_GELU) { /* ReLU fused into the linear */
        s2s_k_linear_packed_ex_fwd(f, h, pw, L->fc1.b ? L->fc1.b->data : NULL, N, D, F, NULL, 1);
    } else {
        s2s_dec_linear(f, h, &L->fc1, N, D, F);
        if (m->cfg.activation == S2S_ACT_GELU) s2s_k_gelu_fwd(f, f, (size_t)N * F);
        else s2s_k_relu_fwd(f, f, (size_t)N * F);
    }
    s2s_dec_linear_add(x, h, f, &L->fc2, N, F, D);
}

s2s_lin_p s2s_dec_out_proj(const s2s_model *m, const s2s_vocab_sel *vs, int *M) {
    /* the selection's rows are frozen like model weights: the cast lets s2s_weight_packed
     * keep its packed copy, as for the (const) model's own tensors */
    s2s_lin_p out = {vs ? (s2s_tensor *)&vs->w : m->tgt_emb, NULL};
    *M = vs ? vs->n : m->cfg.tgt_vocab;
    return out;
}

void s2s_dec_logits(float *logits, float *h, float *mean, float *rstd, const float *x,
                    const s2s_model *m, const s2s_vocab_sel *vs, int N) {
    int D = m->cfg.d_model, M;
    s2s_k_layernorm_fwd(h, mean, rstd, x, m->dec_ln.w->data, m->dec_ln.b->data, N, D);
    s2s_lin_p out = s2s_dec_out_proj(m, vs, &M);
    s2s_dec_linear(logits, h, &out, N, D, M);
}

void s2s_dec_t2r_cross_states(float *const *cS, float *const *cz, const s2s_model *m, const float *enc,
                              const int32_t *src_len, int B, int Ts) {
    const s2s_config *c = &m->cfg;
    int D = c->d_model, H = c->n_heads;
    size_t nkv = (size_t)B * Ts * D;
    float *ck = s2s_xmalloc((nkv ? nkv : 1) * sizeof(float)), *cv = s2s_xmalloc((nkv ? nkv : 1) * sizeof(float));
    for (int l = 0; l < c->dec_layers; l++) {
        const s2s_dec_layer *L = &m->dec[l];
        s2s_dec_linear(ck, enc, &L->ck, B * Ts, D, D);
        s2s_dec_linear(cv, enc, &L->cv, B * Ts, D, D);
        s2s_k_t2r_cross_state(cS[l], cz[l], ck, cv, s2s_dec_phi_w(&L->cphi), s2s_dec_phi_b(&L->cphi), src_len, B, H,
                              Ts, D / H, c->t2r_k);
    }
    free(ck); free(cv);
}

/* The phi weights packed for s2s_k_linear_packed_groups_fwd (head h's [kf, Dh] at pw + h * kf * Dh,
 * as the stacked [H * kf, Dh] tensor packs when kf % S2S_GEMM_NR == 0), else NULL: no learned map,
 * trainable weights, or no AVX-512 (where the packed kernel is for tests only). */
static const float *phi_packed(const s2s_lin_p *phi, int kf) {
    if (!phi->w || kf % S2S_GEMM_NR != 0 || S2S_PACKED_MIN_ROWS > 2) return NULL;
    return s2s_weight_packed(phi->w);
}

void s2s_dec_t2r_phi(float *ph, const float *x, const s2s_lin_p *phi, float scale, int N, int H, int Dh, int kf) {
    const float *pw = phi_packed(phi, kf);
    if (pw) {
        s2s_k_linear_packed_groups_fwd(ph, x, pw, N, H, Dh, kf);
        s2s_k_t2r_phi_act(ph, s2s_dec_phi_b(phi), scale, N, H, kf);
    } else {
        s2s_k_t2r_phi(ph, x, s2s_dec_phi_w(phi), s2s_dec_phi_b(phi), scale, N, H, Dh, kf);
    }
}

void s2s_dec_t2r_cross_query(float *a, float *ph, const float *S, const float *z, const float *q,
                             const s2s_lin_p *phi, const int32_t *sent, int N, int H, int Dh, int kf) {
    size_t cS = (size_t)H * kf * Dh, cz = (size_t)H * kf, D = (size_t)H * Dh;
    s2s_dec_t2r_phi(ph, q, phi, S2S_T2R_QSCALE(Dh), N, H, Dh, kf);
    /* the kernel stays serial inside for one row (no nested parallelism) */
#pragma omp parallel for schedule(static) if (N >= 4 && (size_t)N * cS > 65536)
    for (int r = 0; r < N; r++)
        s2s_k_t2r_cross_query_feat(a + (size_t)r * D, S + (size_t)sent[r] * cS, z + (size_t)sent[r] * cz,
                                   ph + (size_t)r * cz, 1, H, 1, Dh, kf);
}
