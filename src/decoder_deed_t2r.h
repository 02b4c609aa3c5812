/* decoder_deed_t2r.h - the T2R attention state of the DEED early-exit decoder
 * (decoder_deed.c) for multi-exit models whose decoder attention is T2R (cfg.multi_exit
 * and cfg.dec_attn t2r; kernels_t2r.h, docs/MODEL.md "DEED").
 *
 * Per decoder layer l and row r, the self-attention state S [H, kf, Dh], z [H, kf]: the
 * sums of phi(k_p) v_p^T and phi(k_p) over the positions p whose layer-l state has been
 * computed, always a prefix 0..valid-1 of the row (decoder_deed.c's valid[r][l]); zero
 * at start. Per layer and source sentence, the cross-attention state, computed once at
 * start. decoder_deed.c computes the projections of a batch of (row, position) items
 * of one layer and calls these for the attention itself, so the projections, the
 * exits and the JIT schedule are the softmax DEED decoder's. CPU only. */
#ifndef S2S_DECODER_DEED_T2R_H
#define S2S_DECODER_DEED_T2R_H

#include <stddef.h>
#include <stdint.h>

#include "model.h"

typedef struct s2s_deed_t2r s2s_deed_t2r;

/* States for Nmax rows and B sentences; enc [B, Ts, D] (host), src_len [B]: the cross
 * states are computed here (enc is not kept). */
s2s_deed_t2r *s2s_deed_t2r_new(const s2s_model *m, const float *enc, const int32_t *src_len, int B, int Ts, int Nmax);
void s2s_deed_t2r_free(s2s_deed_t2r *t);

/* Causal self-attention of layer l for M items with queries, keys, values q, k, v
 * [M, D] (before phi) of rows row[M]: the items of a row must be consecutive and in
 * position order, following the row's state (its first item is position valid). Each
 * item folds phi(k) v^T, phi(k) into its row's state, then reads it with phi(q):
 * a [M, D] = the attention over the row's positions up to the item's own, exactly
 * the recurrent decoder's step. Rows run in parallel. */
void s2s_deed_t2r_self(s2s_deed_t2r *t, int l, float *a, const float *q, const float *k, const float *v,
                       const int32_t *row, int M);
/* Copy mode: fold the keys / values k, v [M, D] of M items into their rows' layer-l
 * states without a query (rows as for self); scratch [M, D]. */
void s2s_deed_t2r_fold(s2s_deed_t2r *t, int l, float *scratch, const float *k, const float *v, const int32_t *row,
                       int M);
/* Cross-attention of layer l: a [M, D] for queries q [M, D] on the state of sentence sent[i]. */
void s2s_deed_t2r_cross(s2s_deed_t2r *t, int l, float *a, const float *q, const int32_t *sent, int M);
/* select() of decoder.h on the self-attention states: new row i = old row rows[i]. */
void s2s_deed_t2r_select(s2s_deed_t2r *t, const int32_t *rows, int N_new);

/* Row r's layer-l self-attention state: *S [H, kf, Dh], *z [H, kf]. */
void s2s_deed_t2r_row_state(const s2s_deed_t2r *t, int r, int l, const float **S, const float **z);

/* Bytes that s2s_deed_t2r_new allocates, the transient encoder projections included,
 * and the bytes of state per row (self-attention plus its sentence's cross-attention). */
size_t s2s_deed_t2r_start_bytes(const s2s_model *m, int B, int Ts, int Nmax);
size_t s2s_deed_t2r_row_bytes(const s2s_model *m);

#endif
