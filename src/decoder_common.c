/* decoder_common.c - helpers shared by the decoder kinds (see decoder_common.h). */
#include "decoder_common.h"

#include <string.h>

#include "kernels.h"

void s2s_dec_linear(float *y, const float *x, const s2s_lin_p *p, int N, int K, int M) {
    const float *b = p->b ? p->b->data : NULL;
    if (p->w->half && N <= S2S_F16_MAX_ROWS) s2s_k_linear_f16_fwd(y, x, p->w->half, b, N, K, M);
    else s2s_k_linear_fwd(y, x, p->w->data, b, N, K, M);
}

void s2s_dec_attend(float *a, float *p, const float *q, const float *K, const float *V,
                    size_t row_stride, const int32_t *row_block, const int32_t *lens, int Tk_all,
                    int N, int H, int Dh, int Tmax) {
    int D = H * Dh;
    /* the kernel runs serially inside (no nested parallelism; it never calls BLAS) */
#pragma omp parallel for schedule(static) if (N >= 4 && (size_t)N * H * Tk_all * Dh > 65536)
    for (int r = 0; r < N; r++) {
        int blk = row_block ? row_block[r] : r;
        int32_t len = lens ? lens[blk] : Tk_all;
        const float *Kb = K + (size_t)blk * row_stride, *Vb = V + (size_t)blk * row_stride;
        s2s_k_attention_fwd(a + (size_t)r * D, p + (size_t)r * H * Tmax, q + (size_t)r * D, Kb, Vb,
                            &len, 0, 1, H, 1, len, Dh);
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
    s2s_dec_linear(f, h, &L->fc1, N, D, F);
    if (m->cfg.activation == S2S_ACT_GELU) s2s_k_gelu_fwd(f, f, (size_t)N * F);
    else s2s_k_relu_fwd(f, f, (size_t)N * F);
    s2s_dec_linear(h, f, &L->fc2, N, F, D);
    s2s_dec_add(x, h, (size_t)N * D);
}

void s2s_dec_logits(float *logits, float *h, float *mean, float *rstd, const float *x,
                    const s2s_model *m, int N) {
    int D = m->cfg.d_model;
    s2s_k_layernorm_fwd(h, mean, rstd, x, m->dec_ln.w->data, m->dec_ln.b->data, N, D);
    s2s_lin_p out = {m->tgt_emb, NULL};
    s2s_dec_linear(logits, h, &out, N, D, m->cfg.tgt_vocab);
}
