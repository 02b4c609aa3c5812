/* decoder_common.h - helpers shared by the decoder kinds (decoder_*.c): the
 * small-batch-aware linear layer, attention of one query per row over a row's (or
 * its sentence's) keys, and the T2R cross-attention state of each source. */
#ifndef S2S_DECODER_COMMON_H
#define S2S_DECODER_COMMON_H

#include <stddef.h>
#include <stdint.h>

#include "model.h"

struct s2s_vocab_sel;

/* y[N, M] = x[N, K] W^T + b: the fp16 kernel for small batches when the model
 * keeps fp16 weights, else (inference models, 2+ rows) the fp32 weights packed once
 * (kernels_gemm.c), else s2s_k_linear_fwd on the fp32 copy. */
void s2s_dec_linear(float *y, const float *x, const s2s_lin_p *p, int N, int K, int M);
/* xr[N, M] += in[N, K] W^T + b (fused into the packed kernel when it runs; else through
 * tmp [N, M]) */
void s2s_dec_linear_add(float *xr, float *tmp, const float *in, const s2s_lin_p *p, int N, int K, int M);

/* a[r] = softmax(q_r K^T / sqrt(Dh)) V over keys 0..len-1 of block blk(r), where
 * blk(r) = row_block ? row_block[r] : r, len = min(lens ? lens[blk] : Tk_all, Tk_all), and
 * block b's keys start at K + b * row_stride (rows of D floats). p [N, H, Tmax] scratch.
 * Rows run in parallel, each through a one-query kernel (every head; AVX-512 when Dh % 16
 * == 0) with the attention kernel's order of sums and its exp. */
void s2s_dec_attend(float *a /* [N, D] */, float *p, const float *q /* [N, D] */, const float *K,
                    const float *V, size_t row_stride, const int32_t *row_block,
                    const int32_t *lens, int Tk_all, int N, int H, int Dh, int Tmax);

/* The same over keys anywhere: key j of row r at K + j * js + slot(r, j) * ss (V likewise),
 * slot(r, j) = slots ? slots[r * slots_stride + j] : (blk_slot ? blk_slot[blk(r)] : blk(r));
 * s2s_dec_attend is js = H * Dh, ss = row_stride, slots = blk_slot = NULL. (The Transformer
 * decoder's self-attention cache is time-major, [step][row], with a table of which row slot
 * holds each of a row's positions; its cross K/V and the inference encoder keep only the
 * source rows, [sum of lengths, D], sentence b from row blk_slot[b].) */
void s2s_dec_attend_at(float *a, float *p, const float *q, const float *K, const float *V, size_t js,
                       size_t ss, const int32_t *slots, int slots_stride, const int32_t *row_block,
                       const int32_t *blk_slot, const int32_t *lens, int Tk_all, int N, int H, int Dh,
                       int Tmax);

/* The feed-forward sublayer of decoder layer L on x [N, D], in place:
 * x += fc2(act(fc1(LN3(x)))); h [N, D], f [N, F], mean/rstd [N] are scratch. */
void s2s_dec_ffn(float *x, float *h, float *f, float *mean, float *rstd, const s2s_model *m,
                 const s2s_dec_layer *L, int N);
/* logits [N, V] = LN_dec(x) @ tgt_emb^T (tied output projection), or [N, vs->n] over the
 * shortlisted rows of vs (shortlist.h) when vs != NULL; h, mean, rstd scratch. */
void s2s_dec_logits(float *logits, float *h, float *mean, float *rstd, const float *x,
                    const s2s_model *m, const struct s2s_vocab_sel *vs, int N);
/* The output projection as a linear layer: the tied embeddings, or the rows of vs; *M its rows. */
s2s_lin_p s2s_dec_out_proj(const s2s_model *m, const struct s2s_vocab_sel *vs, int *M);

/* T2R attention (cfg.dec_attn t2r, kernels_t2r.h), for decoder_t2r.c and decoder_deed_t2r.c.
 * A layer's feature map as the kernels take it: W, b, or NULL (cfg.t2r_map elu: elu+1). */
static inline const float *s2s_dec_phi_w(const s2s_lin_p *p) { return p->w ? p->w->data : NULL; }
static inline const float *s2s_dec_phi_b(const s2s_lin_p *p) { return p->b ? p->b->data : NULL; }
/* Cross-attention states of every decoder layer l: cS[l] [B, H, kf, Dh], cz[l] [B, H, kf]
 * (overwritten) = the sums over source positions j < src_len[b] of phi(k_j) v_j^T and
 * phi(k_j), k and v the layer's cross projections of enc [B, Ts, D]. Mallocs and frees
 * the projections, 2 x [B, Ts, D] floats, inside. */
void s2s_dec_t2r_cross_states(float *const *cS, float *const *cz, const s2s_model *m, const float *enc,
                              const int32_t *src_len, int B, int Ts);
/* ph [N, H, kf] = phi(scale x) of x [N, H * Dh] (kernels_t2r.h t2r_phi; scale: S2S_T2R_QSCALE(Dh) for
 * queries, 1 for keys): the learned map's dot products of all rows and heads as one grouped
 * GEMM on the packed phi weights (inference models, kf % S2S_GEMM_NR == 0), else the kernel. */
void s2s_dec_t2r_phi(float *ph, const float *x, const s2s_lin_p *phi, float scale, int N, int H, int Dh, int kf);
/* a [N, D] = cross-attention of each row's query q [N, D] on the state S, z of its
 * sentence sent[r] (S [*, H, kf, Dh], z [*, H, kf], as s2s_dec_t2r_cross_states), with
 * feature map phi; ph [N, H, kf] scratch (the query features); rows in parallel. */
void s2s_dec_t2r_cross_query(float *a, float *ph, const float *S, const float *z, const float *q,
                             const s2s_lin_p *phi, const int32_t *sent, int N, int H, int Dh, int kf);

/* Padding rows out: packed [N, D] = the rows t < len[b] of x [B, T, D] in order (len
 * clamped to [0, T]). */
void s2s_dec_rows_pack(float *packed, const float *x, const int32_t *len, int B, int T, int D);

/* x[n] += y[n] */
void s2s_dec_add(float *x, const float *y, size_t n);

/* select() helpers. gather_rows: new row i of a [*, stride] buffer = old row rows[i]
 * (its first `used` floats), copied into *spare, which is then swapped with *buf.
 * gather_i32: v[i] = old v[rows[i]] for one int32 per row, through tmp [N_new]. */
void s2s_dec_gather_rows(float **buf, float **spare, const int32_t *rows, int N_new, size_t stride,
                         size_t used);
void s2s_dec_gather_i32(int32_t *v, int32_t *tmp, const int32_t *rows, int N_new);

#endif
