/* decoder_common.h - helpers shared by the decoder kinds (decoder_*.c): the
 * small-batch-aware linear layer and attention of one query per row over a
 * row's (or its sentence's) keys. */
#ifndef S2S_DECODER_COMMON_H
#define S2S_DECODER_COMMON_H

#include <stddef.h>
#include <stdint.h>

#include "model.h"

/* y[N, M] = x[N, K] W^T + b: the fp16 kernel for small batches when the model
 * keeps fp16 weights, sgemm on the fp32 copy otherwise. */
void s2s_dec_linear(float *y, const float *x, const s2s_lin_p *p, int N, int K, int M);

/* a[r] = softmax(q_r K^T / sqrt(Dh)) V over keys 0..len-1 of block blk(r), where
 * blk(r) = row_block ? row_block[r] : r, len = lens ? lens[blk] : Tk_all, and block
 * b's keys start at K + b * row_stride (rows of D floats). p [N, H, Tmax] scratch.
 * Rows run in parallel through the fast attention kernel. */
void s2s_dec_attend(float *a /* [N, D] */, float *p, const float *q /* [N, D] */, const float *K,
                    const float *V, size_t row_stride, const int32_t *row_block,
                    const int32_t *lens, int Tk_all, int N, int H, int Dh, int Tmax);

/* The feed-forward sublayer of decoder layer L on x [N, D], in place:
 * x += fc2(act(fc1(LN3(x)))); h [N, D], f [N, F], mean/rstd [N] are scratch. */
void s2s_dec_ffn(float *x, float *h, float *f, float *mean, float *rstd, const s2s_model *m,
                 const s2s_dec_layer *L, int N);
/* logits [N, V] = LN_dec(x) @ tgt_emb^T (tied output projection); h, mean, rstd scratch. */
void s2s_dec_logits(float *logits, float *h, float *mean, float *rstd, const float *x,
                    const s2s_model *m, int N);

/* x[n] += y[n] */
void s2s_dec_add(float *x, const float *y, size_t n);

/* select() helpers. gather_rows: new row i of a [*, stride] buffer = old row rows[i]
 * (its first `used` floats), copied into *spare, which is then swapped with *buf.
 * gather_i32: v[i] = old v[rows[i]] for one int32 per row, through tmp [N_new]. */
void s2s_dec_gather_rows(float **buf, float **spare, const int32_t *rows, int N_new, size_t stride,
                         size_t used);
void s2s_dec_gather_i32(int32_t *v, int32_t *tmp, const int32_t *rows, int N_new);

#endif
