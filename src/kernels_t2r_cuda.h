/* kernels_t2r_cuda.h - the CUDA versions (prefix s2s_kcu_) of the T2R parallel-form
 * kernels of kernels_t2r.h: t2r_fwd and t2r_bwd (training; decoding stays on the CPU).
 *
 * Contract: identical to s2s_k_t2r_fwd / s2s_k_t2r_bwd (same arguments, sizes, saved
 * buffers, the += rule of the backward, NULL = gradient not needed, W == NULL = the
 * fixed elu+1 feature map with kf = d), except that every pointer is a device pointer
 * (kv_len included). Queued on the legacy default stream like kernels_cuda.h.
 * Implementation: src/kernels_t2r_cuda.cu. Tests: tests/test_cuda_t2r.c (against the
 * CPU kernels; skipped without a GPU). Declared only in CUDA builds (S2S_CUDA). */
#ifndef S2S_KERNELS_T2R_CUDA_H
#define S2S_KERNELS_T2R_CUDA_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#ifdef S2S_CUDA
/* out [B,Tq,H*d]; saved pq [B,H,Tq,kf], pk [B,H,Tk,kf], den [B,H,Tq]; q [B,Tq,H*d],
 * k, v [B,Tk,H*d], W [H,kf,d], b [H,kf] (or NULL, NULL: elu+1, kf = d); kv_len [B] or NULL. */
void s2s_kcu_t2r_fwd(float *out, float *pq, float *pk, float *den, const float *q,
                     const float *k, const float *v, const float *W, const float *b,
                     const int32_t *kv_len, int causal, int B, int H, int Tq, int Tk, int d,
                     int kf);
/* dq [B,Tq,H*d], dk, dv [B,Tk,H*d], dW [H,kf,d], db [H,kf] (+=, each may be NULL). */
void s2s_kcu_t2r_bwd(float *dq, float *dk, float *dv, float *dW, float *db,
                     const float *dout, const float *out, const float *pq, const float *pk,
                     const float *den, const float *q, const float *k, const float *v,
                     const float *W, const int32_t *kv_len, int causal, int B, int H, int Tq,
                     int Tk, int d, int kf);
#endif

#ifdef __cplusplus
}
#endif

#endif
