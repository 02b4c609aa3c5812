/* kernels_cuda.h - the CUDA backend: device memory helpers and the CUDA versions
 * (prefix s2s_kcu_) of every kernel in kernels.h and kernels_rnn.h, plus the few
 * elementwise/reduction/optimizer kernels the graph and the trainer run on the GPU.
 *
 * Built only with CUDA=1 (Makefile; the macro S2S_CUDA is then defined): the
 * implementation is src/kernels_cuda.cu (nvcc, cuBLAS for every matmul). Without
 * it, src/cuda_stub.c gives s2s_cuda_available() == 0 and nothing else is linked,
 * so callers guard every other call with #ifdef S2S_CUDA.
 *
 * Contract: identical to the CPU kernels (same argument order, sizes, accumulate
 * (+=) rule and assign bits for backward kernels, NULL = gradient not needed), except that EVERY
 * pointer argument is a device pointer (including int32 ids, lengths and targets).
 * All work is queued on one stream (the legacy default stream) in order; host-side
 * reads go through s2s_cuda_download (synchronous). cuBLAS runs fp32 by default;
 * s2s_cuda_set_precision picks TF32 tensor cores or bf16 mixed precision instead.
 * Tests: tests/test_cuda.c checks each kernel against s2s_kref_* (skipped cleanly
 * when no GPU is present). */
#ifndef S2S_KERNELS_CUDA_H
#define S2S_KERNELS_CUDA_H

#include <stddef.h>
#include <stdint.h>

#include "kernels.h"
#include "kernels_rnn.h"

#ifdef __cplusplus
extern "C" {
#endif

/* 1 if built with CUDA and a usable GPU is present (first call initialises). */
int s2s_cuda_available(void);
/* Name of device 0 (e.g. "NVIDIA H100 80GB HBM3"), or "none". */
const char *s2s_cuda_device_name(void);

#ifdef S2S_CUDA
/* Memory. Failures print one line and exit(1) (out of GPU memory is not recoverable
 * mid-step). Copies are synchronous with respect to the host. */
void *s2s_cuda_malloc(size_t bytes);
void s2s_cuda_free(void *p);
void s2s_cuda_upload(void *dst_dev, const void *src_host, size_t bytes);
void s2s_cuda_download(void *dst_host, const void *src_dev, size_t bytes);
void s2s_cuda_copy(void *dst_dev, const void *src_dev, size_t bytes);
void s2s_cuda_memset0(void *p, size_t bytes);
void s2s_cuda_sync(void);
void s2s_cuda_set_tf32(int on); /* cuBLAS math mode: 0 = strict fp32 (default) */
/* Precision of every matmul (cuBLAS), process-wide:
 *   S2S_PREC_FP32  strict fp32 (default)
 *   S2S_PREC_TF32  TF32 tensor cores (10-bit mantissa inputs, fp32 sums)
 *   S2S_PREC_BF16  mixed precision: inputs rounded to bf16 on the tensor cores
 *                  (CUBLAS_COMPUTE_32F_FAST_16BF), fp32 sums, fp32 storage; weights,
 *                  gradients and AdamW stay fp32 (the master copy), and bf16 has
 *                  fp32's exponent range, so no loss scaling is needed.
 * Every other kernel (softmax, LayerNorm, losses, optimizer) stays fp32. */
enum { S2S_PREC_FP32 = 0, S2S_PREC_TF32 = 1, S2S_PREC_BF16 = 2 };
void s2s_cuda_set_precision(int mode);

S2S_KERNEL_DECLS(s2s_kcu_)
S2S_RNN_KERNEL_DECLS(s2s_kcu_)
/* Note: s2s_kcu_xent_fwd returns -1: it does not count the non-ignored rows (that
 * would need a device-to-host copy); callers count them from their host targets. */

/* Elementwise over n floats. */
void s2s_kcu_add(float *y, const float *a, const float *b, size_t n);   /* y = a + b */
void s2s_kcu_mul(float *y, const float *a, const float *b, size_t n);   /* y = a * b */
void s2s_kcu_scale(float *y, const float *a, float s, size_t n);        /* y = s * a */
void s2s_kcu_axpy(float *y, float s, const float *x, size_t n);         /* y += s * x */
void s2s_kcu_mul_acc(float *y, const float *a, const float *b, size_t n); /* y += a * b */
/* y += s * dy1[0] for every element (the backward of sum/mean; dy1: one float). */
void s2s_kcu_bcast_acc(float *y, const float *dy1, float s, size_t n);
/* Inverted dropout with the counter-based mask of graph.c (identical masks on CPU
 * and GPU for the same seed): for element i,
 *   z = seed + (i + 1) * 0x9E3779B97F4A7C15; z = (z ^ z>>30) * 0xBF58476D1CE4E5B9;
 *   z = (z ^ z>>27) * 0x94D049BB133111EB; z ^= z>>31; u = (z >> 40) / 2^24;
 *   mask[i] = u >= p ? 1/(1-p) : 0;  y[i] = x[i] * mask[i]. */
void s2s_kcu_dropout_fwd(float *y, float *mask, const float *x, float p, uint64_t seed,
                         size_t n);
/* out[0] = s * sum(x[0..n)) (accumulated in double; overwrites out[0]). */
void s2s_kcu_sum(float *out, const float *x, float s, size_t n);
/* out[0] += sum(x^2) in double (global gradient norm; out is one device double). */
void s2s_kcu_sqnorm_acc(double *out, const float *x, size_t n);
/* One AdamW update over n values (torch semantics, as optim.c):
 *   p *= decay; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
 *   p -= stepsize * m / (sqrt(v) / bc2s + eps)
 * g is first multiplied by gscale (gradient clipping folded in). */
void s2s_kcu_adamw(float *p, float *m, float *v, const float *g, float gscale, float decay,
                   float b1, float b2, float stepsize, float bc2s, float eps, size_t n);
#endif

#ifdef __cplusplus
}
#endif

#endif
