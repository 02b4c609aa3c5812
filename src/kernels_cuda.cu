/* kernels_cuda.cu - the CUDA backend of kernels_cuda.h: device memory helpers and the
 * s2s_kcu_* versions of every kernel in kernels.h and kernels_rnn.h, plus the
 * elementwise/reduction/AdamW kernels the graph and the trainer run on the GPU.
 *
 * Everything runs on the legacy default stream, in order; nothing here synchronises
 * the host except the copies to/from the host (s2s_cuda_download, s2s_cuda_upload),
 * s2s_cuda_sync, cudaFree (inside s2s_cuda_free and when an internal scratch buffer
 * grows) and errors. Not thread-safe: one host thread drives the GPU.
 *
 * Layout of the work:
 *   matmuls      cuBLAS sgemm (one global handle, created lazily). Row-major
 *                C[M,N] = op(A) op(B) is, read column-major, C^T[N,M] = op(B)^T op(A)^T,
 *                so gemm() below calls cublasSgemm with the operands swapped and the
 *                same transposes and leading dimensions (see gemm()).
 *   row kernels  layernorm, softmax, log-softmax, cross-entropy: one block per row,
 *                block reductions (warp shuffles + one shared slot per warp).
 *   column sums  (bias gradients, layernorm dg/db): a deterministic two-pass
 *                reduction, partial sums of row chunks then one sum per column.
 *   attention    per head (or per batch row, whichever is fewer), strided-batched
 *                sgemm for the scores, a masked softmax with one warp per query row,
 *                strided-batched sgemm for p @ v; backward likewise.
 *   RNN cells    per time step: the recurrent projection of the whole batch through
 *                cuBLAS, then the gates in one small kernel (thread per (row, unit)).
 *                The recurrent weight gradient of all steps is one sgemm at the end.
 *                The SSRU is one thread per (row, unit) scanning the time steps.
 *   elementwise  grid-stride loops.
 * Numerics follow the reference kernels (kernels_ref.c, kernels_rnn.c) in fp32;
 * reductions in fp32 except sum/sqnorm (double, as the header says). */
#include "kernels_cuda.h"

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#ifdef S2S_CUDA

#define LN_EPS 1e-5f   /* layernorm epsilon, as torch.nn.LayerNorm */
#define EW_THREADS 256 /* threads per block of the elementwise kernels */

/* ------------------------------------------------------------------------------------
 * errors, global state
 * ---------------------------------------------------------------------------------- */

static void cuda_fail(const char *what, const char *msg, const char *file, int line) {
    fprintf(stderr, "s2s: CUDA error: %s: %s (%s:%d)\n", what, msg, file, line);
    exit(1);
}

#define CUDA_CHECK(call)                                                                  \
    do {                                                                                  \
        cudaError_t e_ = (call);                                                          \
        if (e_ != cudaSuccess) cuda_fail(#call, cudaGetErrorString(e_), __FILE__, __LINE__); \
    } while (0)

#define CUBLAS_CHECK(call)                                                                     \
    do {                                                                                       \
        cublasStatus_t s_ = (call);                                                            \
        if (s_ != CUBLAS_STATUS_SUCCESS)                                                       \
            cuda_fail(#call, cublasGetStatusString(s_), __FILE__, __LINE__);                   \
    } while (0)

/* launch a kernel on the default stream and check the launch (no synchronisation) */
#define LAUNCH(kernel, grid, block, ...)                                                  \
    do {                                                                                  \
        kernel<<<(grid), (block)>>>(__VA_ARGS__);                                         \
        CUDA_CHECK(cudaGetLastError());                                                   \
    } while (0)

static cublasHandle_t g_blas;  /* created on first use */
static int g_tf32;             /* cuBLAS math mode: 0 strict fp32, 1 TF32 tensor cores */
static int g_bf16;             /* 1: GEMMs through cublasGemmEx with CUBLAS_COMPUTE_32F_FAST_16BF */
static int g_sms;              /* multiprocessors of the current device (0: not asked yet) */
static void *g_scratch;        /* internal scratch (attention dS, reduction partials) */
static size_t g_scratch_bytes;

static cublasHandle_t blas(void) {
    if (!g_blas) {
        CUBLAS_CHECK(cublasCreate(&g_blas));
        CUBLAS_CHECK(cublasSetMathMode(g_blas, g_tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
    }
    return g_blas;
}

static int sm_count(void) {
    if (!g_sms) {
        int dev = 0, n = 0;
        CUDA_CHECK(cudaGetDevice(&dev));
        CUDA_CHECK(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev));
        g_sms = n > 0 ? n : 1;
    }
    return g_sms;
}

/* A device buffer of at least `bytes`, valid until the next scratch() call. Kernels
 * queued earlier that used it are finished before it moves (cudaFree synchronises). */
static void *scratch(size_t bytes) {
    if (bytes > g_scratch_bytes) {
        size_t nb = g_scratch_bytes + g_scratch_bytes / 2;
        if (nb < bytes) nb = bytes;
        nb = (nb + ((size_t)1 << 20) - 1) & ~(((size_t)1 << 20) - 1); /* whole MiB */
        if (g_scratch) CUDA_CHECK(cudaFree(g_scratch));
        g_scratch = NULL;
        g_scratch_bytes = 0;
        CUDA_CHECK(cudaMalloc(&g_scratch, nb));
        g_scratch_bytes = nb;
    }
    return g_scratch;
}

/* blocks for a grid-stride loop over n items, threads per block t */
static unsigned ew_blocks(size_t n, int t) {
    size_t b = (n + (size_t)t - 1) / (size_t)t, cap = (size_t)sm_count() * 16;
    if (b > cap) b = cap;
    return (unsigned)(b < 1 ? 1 : b);
}

/* threads per block of a one-block-per-row kernel over rows of D values */
static int row_threads(int D) {
    int cap = D >= 8192 ? 1024 : 512, t = 32;
    while (t < D && t < cap) t <<= 1;
    return t;
}

#define GRID_STRIDE(i, n)                                                                 \
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n);               \
         i += (size_t)gridDim.x * blockDim.x)

/* ------------------------------------------------------------------------------------
 * device helpers: reductions, activations
 * ---------------------------------------------------------------------------------- */

template <typename T> __device__ __forceinline__ T warp_sum(T v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v; /* every lane holds the total */
}

__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* Sum over the block (blockDim.x a multiple of 32, every thread calls it); every
 * thread gets the total. The leading barrier lets consecutive calls share sh. */
template <typename T> __device__ T block_sum(T v) {
    __shared__ T sh[32];
    v = warp_sum(v);
    __syncthreads();
    if ((threadIdx.x & 31) == 0) sh[threadIdx.x >> 5] = v;
    __syncthreads();
    const unsigned nw = (blockDim.x + 31) >> 5, lane = threadIdx.x & 31;
    return warp_sum(lane < nw ? sh[lane] : T(0));
}

__device__ float block_max(float v) {
    __shared__ float sh[32];
    v = warp_max(v);
    __syncthreads();
    if ((threadIdx.x & 31) == 0) sh[threadIdx.x >> 5] = v;
    __syncthreads();
    const unsigned nw = (blockDim.x + 31) >> 5, lane = threadIdx.x & 31;
    return warp_max(lane < nw ? sh[lane] : -INFINITY);
}

/* Max and sum of exp(x - max) over a row of D values, in one pass (online softmax:
 * each thread rescales its running sum when its running max grows, then the block
 * merges (max, sum) pairs). Every thread of the block calls it and gets both. */
__device__ void block_max_sumexp(const float *xr, int D, float *mx, float *se) {
    float m = -INFINITY, s = 0.0f;
    for (int d = threadIdx.x; d < D; d += blockDim.x) {
        const float v = xr[d];
        if (v > m) {
            s = s * expf(m - v) + 1.0f;
            m = v;
        } else if (m > -INFINITY) { /* (-inf keys while m is -inf add nothing) */
            s += expf(v - m);
        }
    }
    const float M = block_max(m);
    *se = block_sum(m > -INFINITY ? s * expf(m - M) : 0.0f);
    *mx = M;
}

__device__ __forceinline__ float sigm(float x) { return 1.0f / (1.0f + expf(-x)); }

/* ------------------------------------------------------------------------------------
 * cuBLAS in row-major terms
 * ---------------------------------------------------------------------------------- */

/* Row-major C[M,N] (ldc) = alpha * op(A)[M,K] op(B)[K,N] + beta * C.
 * ta = 0: A stored [M,K] (lda); ta = 1: A stored [K,M] (op(A) = A^T).
 * tb = 0: B stored [K,N] (ldb); tb = 1: B stored [N,K] (op(B) = B^T).
 * A row-major [r,c] matrix with leading dim ld is the column-major [c,r] matrix with
 * the same ld, i.e. its transpose, so C^T[N,M] = op(B)^T[N,K] op(A)^T[K,M] column-major:
 * cuBLAS gets (B, A) in that order with m = N, n = M, k = K and the same transposes
 * (op(B)^T is B's column-major view itself when tb = 0, its transpose when tb = 1).
 * Batched: batch matrices at element strides sA, sB, sC. */
static void gemm_sb(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
                    long long sA, const float *B, int ldb, long long sB, float beta, float *C,
                    int ldc, long long sC, int batch) {
    if (M <= 0 || N <= 0 || batch <= 0) return;
    if (K <= 0) { /* empty sum: C = beta * C, beta is 0 or 1 here */
        if (beta == 0.0f)
            for (int i = 0; i < batch; i++)
                CUDA_CHECK(cudaMemset2DAsync(C + (size_t)i * sC, (size_t)ldc * sizeof(float), 0,
                                             (size_t)N * sizeof(float), (size_t)M, 0));
        return;
    }
    const cublasOperation_t opa = ta ? CUBLAS_OP_T : CUBLAS_OP_N, opb = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
    if (g_bf16) { /* mixed precision: fp32 in and out, bf16 tensor-core products, fp32 sums */
        if (batch == 1)
            CUBLAS_CHECK(cublasGemmEx(blas(), opb, opa, N, M, K, &alpha, B, CUDA_R_32F, ldb, A, CUDA_R_32F,
                                      lda, &beta, C, CUDA_R_32F, ldc, CUBLAS_COMPUTE_32F_FAST_16BF,
                                      CUBLAS_GEMM_DEFAULT));
        else
            CUBLAS_CHECK(cublasGemmStridedBatchedEx(blas(), opb, opa, N, M, K, &alpha, B, CUDA_R_32F, ldb, sB,
                                                    A, CUDA_R_32F, lda, sA, &beta, C, CUDA_R_32F, ldc, sC,
                                                    batch, CUBLAS_COMPUTE_32F_FAST_16BF, CUBLAS_GEMM_DEFAULT));
        return;
    }
    if (batch == 1)
        CUBLAS_CHECK(cublasSgemm(blas(), opb, opa, N, M, K, &alpha, B, ldb, A, lda, &beta, C, ldc));
    else
        CUBLAS_CHECK(cublasSgemmStridedBatched(blas(), opb, opa, N, M, K, &alpha, B, ldb, sB, A, lda,
                                               sA, &beta, C, ldc, sC, batch));
}

static void gemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
                 const float *B, int ldb, float beta, float *C, int ldc) {
    gemm_sb(ta, tb, M, N, K, alpha, A, lda, 0, B, ldb, 0, beta, C, ldc, 0, 1);
}

/* ------------------------------------------------------------------------------------
 * column sums: out[M] += sum_n a[n, m] (and the layernorm dg/db variant)
 * ---------------------------------------------------------------------------------- */

#define CS_TX 32 /* columns per block */
#define CS_TY 8  /* row lanes per block */

/* Pass 1: block (x, y) sums rows [y*rows_per, (y+1)*rows_per) of columns x*32..x*32+31.
 * LN = false: part[y, D] = sums of a.  LN = true: part[y, 2, D] = (sum dy*xhat, sum dy)
 * with a = dy, xhat = (x - mean[n]) * rstd[n]. */
template <bool LN>
static __global__ void k_colsum_part(float *part, const float *a, const float *x,
                                     const float *mean, const float *rstd, int N, int D,
                                     int rows_per) {
    __shared__ float sh[2][CS_TY][CS_TX + 1];
    const int tx = threadIdx.x, ty = threadIdx.y, d = blockIdx.x * CS_TX + tx;
    const int r0 = blockIdx.y * rows_per, r1 = min(N, r0 + rows_per);
    float s0 = 0.0f, s1 = 0.0f;
    if (d < D) {
        for (int n = r0 + ty; n < r1; n += CS_TY) {
            const size_t i = (size_t)n * D + d;
            const float v = a[i];
            if (LN) {
                s0 += v * ((x[i] - mean[n]) * rstd[n]);
                s1 += v;
            } else {
                s0 += v;
            }
        }
    }
    sh[0][ty][tx] = s0;
    sh[1][ty][tx] = s1;
    __syncthreads();
    if (ty == 0 && d < D) {
        float t0 = 0.0f, t1 = 0.0f;
        for (int k = 0; k < CS_TY; k++) { t0 += sh[0][k][tx]; t1 += sh[1][k][tx]; }
        if (LN) {
            part[((size_t)blockIdx.y * 2) * D + d] = t0;
            part[((size_t)blockIdx.y * 2 + 1) * D + d] = t1;
        } else {
            part[(size_t)blockIdx.y * D + d] = t0;
        }
    }
}

/* Pass 2: o1[d] += sum_y part[y, 0, d]; (LN) o2[d] += sum_y part[y, 1, d]. NULL: skip. */
template <bool LN>
static __global__ void k_colsum_fin(float *o1, float *o2, const float *part, int R, int D) {
    const int nout = LN ? 2 : 1;
    GRID_STRIDE(d, (size_t)D) {
        float t0 = 0.0f, t1 = 0.0f;
        for (int y = 0; y < R; y++) {
            t0 += part[((size_t)y * nout) * D + d];
            if (LN) t1 += part[((size_t)y * nout + 1) * D + d];
        }
        if (o1) o1[d] += t0;
        if (LN && o2) o2[d] += t1;
    }
}

/* o1[D] += column sums of a[N, D]; LN: o1 = dg, o2 = db of layernorm (a = dy). */
template <bool LN>
static void colsum_acc(float *o1, float *o2, const float *a, const float *x, const float *mean,
                       const float *rstd, int N, int D) {
    if (N <= 0 || D <= 0 || (!o1 && !o2)) return;
    const int cb = (D + CS_TX - 1) / CS_TX;
    int R = (4 * sm_count() + cb - 1) / cb;   /* about 4 blocks per SM in all */
    const int maxR = (N + 4 * CS_TY - 1) / (4 * CS_TY); /* >= 4 rows per thread */
    if (R > maxR) R = maxR;
    if (R > 1024) R = 1024;
    if (R < 1) R = 1;
    const int rows_per = (N + R - 1) / R;
    R = (N + rows_per - 1) / rows_per;
    float *part = (float *)scratch((size_t)R * (LN ? 2 : 1) * D * sizeof(float));
    LAUNCH(k_colsum_part<LN>, dim3(cb, R), dim3(CS_TX, CS_TY), part, a, x, mean, rstd, N, D, rows_per);
    LAUNCH(k_colsum_fin<LN>, ew_blocks(D, EW_THREADS), EW_THREADS, o1, o2, part, R, D);
}

/* ------------------------------------------------------------------------------------
 * small elementwise kernels
 * ---------------------------------------------------------------------------------- */

/* y[N,M] += b[m] */
static __global__ void k_add_bias(float *y, const float *b, size_t n, int M) {
    GRID_STRIDE(i, n) y[i] += b[i % (size_t)M];
}

static __global__ void k_add(float *y, const float *a, const float *b, size_t n) {
    GRID_STRIDE(i, n) y[i] = a[i] + b[i];
}
static __global__ void k_mul(float *y, const float *a, const float *b, size_t n) {
    GRID_STRIDE(i, n) y[i] = a[i] * b[i];
}
static __global__ void k_scale(float *y, const float *a, float s, size_t n) {
    GRID_STRIDE(i, n) y[i] = s * a[i];
}
static __global__ void k_axpy(float *y, float s, const float *x, size_t n) {
    GRID_STRIDE(i, n) y[i] += s * x[i];
}
static __global__ void k_mul_acc(float *y, const float *a, const float *b, size_t n) {
    GRID_STRIDE(i, n) y[i] += a[i] * b[i];
}
static __global__ void k_bcast_acc(float *y, const float *dy1, float s, size_t n) {
    const float v = s * dy1[0];
    GRID_STRIDE(i, n) y[i] += v;
}

static __global__ void k_dropout(float *y, float *mask, const float *x, float p, float keep,
                                 uint64_t seed, size_t n) {
    GRID_STRIDE(i, n) {
        uint64_t z = seed + (uint64_t)(i + 1) * 0x9E3779B97F4A7C15ull;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        z ^= z >> 31;
        const float u = (float)(z >> 40) / 16777216.0f;
        const float m = u >= p ? keep : 0.0f;
        mask[i] = m;
        y[i] = x[i] * m;
    }
}

static __global__ void k_relu_fwd(float *y, const float *x, size_t n) {
    GRID_STRIDE(i, n) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
}
/* assign (here and in the other backward kernels): dx = ..., never reading dx */
static __global__ void k_relu_bwd(float *dx, const float *dy, const float *x, size_t n, int assign) {
    GRID_STRIDE(i, n) {
        const float g = x[i] > 0.0f ? dy[i] : 0.0f;
        dx[i] = assign ? g : dx[i] + g;
    }
}
/* GELU(x) = x * Phi(x); normcdff is accurate in both tails (erfc form) */
static __global__ void k_gelu_fwd(float *y, const float *x, size_t n) {
    GRID_STRIDE(i, n) {
        const float v = x[i];
        y[i] = v * normcdff(v);
    }
}
/* GELU'(x) = Phi(x) + x * phi(x) */
static __global__ void k_gelu_bwd(float *dx, const float *dy, const float *x, size_t n, int assign) {
    GRID_STRIDE(i, n) {
        const float v = x[i];
        const float pdf = 0.3989422804014327f * expf(-0.5f * v * v);
        const float g = dy[i] * (normcdff(v) + v * pdf);
        dx[i] = assign ? g : dx[i] + g;
    }
}

/* torch AdamW step, as optim.c, with the gradient scaled by gscale first */
static __global__ void k_adamw(float *p, float *m, float *v, const float *g, float gscale,
                               float decay, float b1, float b2, float stepsize, float bc2s,
                               float eps, size_t n) {
    GRID_STRIDE(i, n) {
        const float gi = g[i] * gscale;
        const float pi = p[i] * decay;
        const float mi = b1 * m[i] + (1.0f - b1) * gi;
        const float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        p[i] = pi - stepsize * mi / (sqrtf(vi) / bc2s + eps);
    }
}

/* ------------------------------------------------------------------------------------
 * full reductions in double: sum, sum of squares
 * ---------------------------------------------------------------------------------- */

#define RED_THREADS 256
#define RED_MAX_BLOCKS 1024

/* part[blockIdx.x] = sum over this block's grid-stride share of x (or x^2) */
static __global__ void k_reduce_part(double *part, const float *x, size_t n, int square) {
    double acc = 0.0;
    GRID_STRIDE(i, n) {
        const double v = x[i];
        acc += square ? v * v : v;
    }
    acc = block_sum(acc);
    if (threadIdx.x == 0) part[blockIdx.x] = acc;
}

/* one block: total = sum part[0..G); outf: outf[0] = s * total; else outd[0] += total */
static __global__ void k_reduce_fin(float *outf, double *outd, const double *part, int G, float s) {
    double acc = 0.0;
    for (int i = threadIdx.x; i < G; i += blockDim.x) acc += part[i];
    acc = block_sum(acc);
    if (threadIdx.x == 0) {
        if (outf) outf[0] = (float)((double)s * acc);
        else outd[0] += acc;
    }
}

static void reduce_launch(float *outf, double *outd, const float *x, float s, size_t n, int square) {
    size_t G = (n + (size_t)RED_THREADS * 8 - 1) / ((size_t)RED_THREADS * 8);
    if (G > RED_MAX_BLOCKS) G = RED_MAX_BLOCKS;
    if (G < 1) G = 1;
    double *part = (double *)scratch(G * sizeof(double));
    LAUNCH(k_reduce_part, (unsigned)G, RED_THREADS, part, x, n, square);
    LAUNCH(k_reduce_fin, 1, RED_THREADS, outf, outd, part, (int)G, s);
}

/* ------------------------------------------------------------------------------------
 * layernorm, softmax, log-softmax (one block per row)
 * ---------------------------------------------------------------------------------- */

/* y[N,D] = (x - mean) * rstd * g + b; mean[N], rstd[N]; two-pass variance */
static __global__ void k_layernorm_fwd(float *y, float *mean, float *rstd, const float *x,
                                       const float *g, const float *b, int D) {
    const size_t row = blockIdx.x;
    const float *xr = x + row * D;
    float *yr = y + row * D;
    float s = 0.0f;
    for (int d = threadIdx.x; d < D; d += blockDim.x) s += xr[d];
    const float m = block_sum(s) / (float)D;
    float v = 0.0f;
    for (int d = threadIdx.x; d < D; d += blockDim.x) {
        const float c = xr[d] - m;
        v += c * c;
    }
    const float rs = 1.0f / sqrtf(block_sum(v) / (float)D + LN_EPS);
    for (int d = threadIdx.x; d < D; d += blockDim.x) yr[d] = (xr[d] - m) * rs * g[d] + b[d];
    if (threadIdx.x == 0) {
        mean[row] = m;
        rstd[row] = rs;
    }
}

/* dx[N,D] += rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)), dxhat = dy * g */
static __global__ void k_layernorm_bwd_dx(float *dx, const float *dy, const float *x,
                                          const float *mean, const float *rstd, const float *g,
                                          int D, int assign) {
    const size_t row = blockIdx.x;
    const float *xr = x + row * D, *dyr = dy + row * D;
    const float m = mean[row], rs = rstd[row];
    float s1 = 0.0f, s2 = 0.0f;
    for (int d = threadIdx.x; d < D; d += blockDim.x) {
        const float dxh = dyr[d] * g[d];
        s1 += dxh;
        s2 += dxh * ((xr[d] - m) * rs);
    }
    const float m1 = block_sum(s1) / (float)D, m2 = block_sum(s2) / (float)D;
    float *dxr = dx + row * D;
    for (int d = threadIdx.x; d < D; d += blockDim.x) {
        const float xh = (xr[d] - m) * rs, dxh = dyr[d] * g[d];
        const float v = rs * (dxh - m1 - xh * m2);
        dxr[d] = assign ? v : dxr[d] + v;
    }
}

/* y[N,D] = softmax(x) (log: log-softmax) over each row */
template <bool LOG>
static __global__ void k_softmax_fwd(float *y, const float *x, int D) {
    const size_t row = blockIdx.x;
    const float *xr = x + row * D;
    float *yr = y + row * D;
    float mx, s;
    block_max_sumexp(xr, D, &mx, &s);
    if (LOG) {
        const float lse = logf(s);
        for (int d = threadIdx.x; d < D; d += blockDim.x) yr[d] = xr[d] - mx - lse;
    } else {
        for (int d = threadIdx.x; d < D; d += blockDim.x) yr[d] = expf(xr[d] - mx) / s;
    }
}

/* softmax: dx += y * (dy - sum(dy * y));  log-softmax: dx += dy - exp(y) * sum(dy) */
template <bool LOG>
static __global__ void k_softmax_bwd(float *dx, const float *dy, const float *y, int D, int assign) {
    const size_t row = blockIdx.x;
    const float *yr = y + row * D, *dyr = dy + row * D;
    float *dxr = dx + row * D;
    float s = 0.0f;
    for (int d = threadIdx.x; d < D; d += blockDim.x) s += LOG ? dyr[d] : dyr[d] * yr[d];
    s = block_sum(s);
    for (int d = threadIdx.x; d < D; d += blockDim.x) {
        const float v = LOG ? dyr[d] - expf(yr[d]) * s : yr[d] * (dyr[d] - s);
        dxr[d] = assign ? v : dxr[d] + v;
    }
}

/* ------------------------------------------------------------------------------------
 * embedding
 * ---------------------------------------------------------------------------------- */

/* block per row n: out[n, :] = table[ids[n], :] */
static __global__ void k_embedding_fwd(float *out, const float *table, const int32_t *ids, int D) {
    const size_t n = blockIdx.x;
    const int32_t id = ids[n];
    if (id < 0) __trap(); /* as the reference's assertion */
    const float *src = table + (size_t)id * D;
    float *dst = out + n * D;
    for (int d = threadIdx.x; d < D; d += blockDim.x) dst[d] = src[d];
}

/* block per row n: dtable[ids[n], :] += dout[n, :] (atomic: ids repeat) */
static __global__ void k_embedding_bwd(float *dtable, const float *dout, const int32_t *ids, int D) {
    const size_t n = blockIdx.x;
    const int32_t id = ids[n];
    if (id < 0) __trap();
    float *dst = dtable + (size_t)id * D;
    const float *src = dout + n * D;
    for (int d = threadIdx.x; d < D; d += blockDim.x) atomicAdd(dst + d, src[d]);
}

/* ------------------------------------------------------------------------------------
 * attention
 * ---------------------------------------------------------------------------------- */

#define ATT_WARPS 8 /* query rows (one warp each) per block of the row kernels */

/* Rows of p[B,H,Tq,Tk] hold the scaled scores; turn each into the masked softmax.
 * Row (b, h, i) sees keys j < lim = min(Tk, kv_len[b], causal ? i + Tk - Tq + 1 : Tk);
 * masked entries get 0, a row with lim <= 0 is all zeros. */
static __global__ void k_attn_softmax(float *p, const int32_t *kv_len, int causal, int H, int Tq,
                                      int Tk, size_t rows) {
    const size_t row = (size_t)blockIdx.x * ATT_WARPS + (threadIdx.x >> 5);
    const int lane = threadIdx.x & 31;
    if (row >= rows) return; /* whole warps leave together */
    const int i = (int)(row % (size_t)Tq), b = (int)(row / ((size_t)H * Tq));
    int lim = Tk;
    if (kv_len && kv_len[b] < lim) lim = kv_len[b];
    if (causal && i + (Tk - Tq) + 1 < lim) lim = i + (Tk - Tq) + 1;
    float *pr = p + row * Tk;
    if (lim <= 0) {
        for (int j = lane; j < Tk; j += 32) pr[j] = 0.0f;
        return;
    }
    float mx = -INFINITY;
    for (int j = lane; j < lim; j += 32) mx = fmaxf(mx, pr[j]);
    mx = warp_max(mx);
    float s = 0.0f;
    for (int j = lane; j < lim; j += 32) s += expf(pr[j] - mx);
    s = warp_sum(s);
    for (int j = lane; j < Tk; j += 32) pr[j] = j < lim ? expf(pr[j] - mx) / s : 0.0f;
}

/* ds[r, :] = p * (dp - sum(p * dp)) in place over dp (rows of [B,H,Tq,Tk]) */
static __global__ void k_attn_dsoftmax(float *ds, const float *p, int Tk, size_t rows) {
    const size_t row = (size_t)blockIdx.x * ATT_WARPS + (threadIdx.x >> 5);
    const int lane = threadIdx.x & 31;
    if (row >= rows) return;
    const float *pr = p + row * Tk;
    float *dr = ds + row * Tk;
    float r = 0.0f;
    for (int j = lane; j < Tk; j += 32) r += pr[j] * dr[j];
    r = warp_sum(r);
    for (int j = lane; j < Tk; j += 32) dr[j] = pr[j] * (dr[j] - r);
}

/* How the (b, h) blocks are walked: `outer` strided-batched gemm calls of `batch`
 * matrices each. Per head over the batch (H <= B) or per batch row over the heads.
 * Element offsets per outer step (*_o) and per batch entry (*_s) of a q-like tensor
 * [B,Tq,H*Dh], a k-like tensor [B,Tk,H*Dh] and a p-like tensor [B,H,Tq,Tk]. */
typedef struct {
    int outer, batch;
    size_t q_o, k_o, p_o;
    long long q_s, k_s, p_s;
} attn_plan;

static attn_plan plan_attention(int B, int H, int Tq, int Tk, int Dh) {
    const size_t HD = (size_t)H * Dh, TT = (size_t)Tq * Tk;
    attn_plan pl;
    if (H <= B) { /* outer = head h, batch = b */
        pl.outer = H; pl.batch = B;
        pl.q_o = Dh; pl.k_o = Dh; pl.p_o = TT;
        pl.q_s = (long long)(Tq * HD); pl.k_s = (long long)(Tk * HD); pl.p_s = (long long)(H * TT);
    } else {      /* outer = batch row b, batch = h */
        pl.outer = B; pl.batch = H;
        pl.q_o = Tq * HD; pl.k_o = Tk * HD; pl.p_o = H * TT;
        pl.q_s = Dh; pl.k_s = Dh; pl.p_s = (long long)TT;
    }
    return pl;
}

/* ------------------------------------------------------------------------------------
 * cross-entropy (one block per row)
 * ---------------------------------------------------------------------------------- */

/* logp[n,:] = log-softmax(logits[n,:]); loss[n] = (1-eps) * -logp[t] + eps * mean(-logp),
 * 0 for ignored rows. A target outside [0, V) traps (the reference asserts). */
static __global__ void k_xent_fwd(float *loss, float *logp, const float *logits, const int32_t *tgt,
                                  float eps, int ignore, int V) {
    const size_t row = blockIdx.x;
    const float *xr = logits + row * V;
    float *lr = logp + row * V;
    float mx, s;
    block_max_sumexp(xr, V, &mx, &s);
    const float lse = logf(s);
    float sl = 0.0f;
    for (int v = threadIdx.x; v < V; v += blockDim.x) {
        const float l = xr[v] - mx - lse;
        lr[v] = l;
        sl += l;
    }
    sl = block_sum(sl);
    if (threadIdx.x == 0) {
        const int t = tgt[row];
        if (t == ignore) {
            loss[row] = 0.0f;
        } else {
            if (t < 0 || t >= V) __trap();
            const float lt = xr[t] - mx - lse; /* = logp[t], same expression */
            loss[row] = (1.0f - eps) * -lt + eps * (-sl / (float)V);
        }
    }
}

/* dlogits[n,v] += dloss[n] * (exp(logp) - eps/V - (v == t ? 1-eps : 0)), skip ignored rows
 * (assign: =, and ignored rows get 0) */
static __global__ void k_xent_bwd(float *dlogits, const float *dloss, const float *logp,
                                  const int32_t *tgt, float eps, int ignore, int V, int assign) {
    const size_t row = blockIdx.x;
    const int t = tgt[row];
    float *gr = dlogits + row * V;
    if (t == ignore) {
        if (assign)
            for (int v = threadIdx.x; v < V; v += blockDim.x) gr[v] = 0.0f;
        return;
    }
    const float dl = dloss[row], sm = eps / (float)V, on = 1.0f - eps;
    const float *lr = logp + row * V;
    for (int v = threadIdx.x; v < V; v += blockDim.x) {
        const float g = dl * (expf(lr[v]) - sm - (v == t ? on : 0.0f));
        gr[v] = assign ? g : gr[v] + g;
    }
}

/* ------------------------------------------------------------------------------------
 * recurrent cells (thread per (row b, unit d))
 * ---------------------------------------------------------------------------------- */

/* SSRU forward scan: f = sigmoid(xf), c = f c_{t-1} + (1-f) xw, h = relu(c) */
static __global__ void k_ssru_fwd(float *h, float *c, const float *xp, const float *c0, int B,
                                  int T, int D) {
    GRID_STRIDE(idx, (size_t)B * D) {
        const size_t b = idx / D, d = idx % D;
        float cp = c0 ? c0[idx] : 0.0f;
        for (int t = 0; t < T; t++) {
            const size_t r = b * T + t;
            const float *x = xp + r * 2 * D;
            const float f = sigm(x[d]);
            const float v = f * cp + (1.0f - f) * x[D + d];
            c[r * D + d] = v;
            h[r * D + d] = v > 0.0f ? v : 0.0f;
            cp = v;
        }
    }
}

/* SSRU backward scan (t = T-1 .. 0), dxp += */
static __global__ void k_ssru_bwd(float *dxp, const float *dh, const float *xp, const float *c,
                                  const float *c0, int B, int T, int D) {
    GRID_STRIDE(idx, (size_t)B * D) {
        const size_t b = idx / D, d = idx % D;
        float carry = 0.0f;
        for (int t = T - 1; t >= 0; t--) {
            const size_t r = b * T + t, e = r * D + d;
            const float *x = xp + r * 2 * D;
            const float prev = t > 0 ? c[e - D] : (c0 ? c0[idx] : 0.0f);
            const float f = sigm(x[d]);
            const float dc = carry + (c[e] > 0.0f ? dh[e] : 0.0f);
            float *dx = dxp + r * 2 * D;
            dx[d] += dc * (prev - x[D + d]) * f * (1.0f - f);
            dx[D + d] += dc * (1.0f - f);
            carry = dc * f;
        }
    }
}

/* GRU gates of step t. g = gates slot of (b, t) [4D]: on entry g[0..3D) holds
 * h_{t-1} Wh^T when proj (else nothing; the projection is 0); bh added here.
 * Out: g = (r, z, n, hn), h[b,t] = (1-z) n + z h_{t-1}. */
static __global__ void k_gru_gates(float *h, float *gates, const float *xp, const float *bh,
                                   const float *h0, int proj, int t, int B, int T, int D) {
    GRID_STRIDE(idx, (size_t)B * D) {
        const size_t b = idx / D, d = idx % D, r = b * T + t;
        float *g = gates + r * 4 * D;
        const float *x = xp + r * 3 * D;
        float pr = proj ? g[d] : 0.0f, pz = proj ? g[D + d] : 0.0f, pn = proj ? g[2 * D + d] : 0.0f;
        if (bh) { pr += bh[d]; pz += bh[D + d]; pn += bh[2 * D + d]; }
        const float hp = t > 0 ? h[(r - 1) * D + d] : (h0 ? h0[idx] : 0.0f);
        const float rg = sigm(x[d] + pr), z = sigm(x[D + d] + pz);
        const float n = tanhf(x[2 * D + d] + rg * pn);
        h[r * D + d] = (1.0f - z) * n + z * hp;
        g[d] = rg; g[D + d] = z; g[2 * D + d] = n; g[3 * D + d] = pn;
    }
}

/* GRU backward of step t: gg = dh + carry; writes dhp[b,t] = (dr, dz, dn*r) (the
 * gradient of the recurrent projection), dxp[b,t] += (dr, dz, dn), carry = gg * z. */
static __global__ void k_gru_bwd_step(float *dxp, float *dhp, float *carry, const float *dh,
                                      const float *h, const float *gates, const float *h0, int t,
                                      int B, int T, int D) {
    GRID_STRIDE(idx, (size_t)B * D) {
        const size_t b = idx / D, d = idx % D, r = b * T + t;
        const float *g = gates + r * 4 * D;
        const float rg = g[d], z = g[D + d], n = g[2 * D + d], hn = g[3 * D + d];
        const float hp = t > 0 ? h[(r - 1) * D + d] : (h0 ? h0[idx] : 0.0f);
        const float gg = dh[r * D + d] + carry[idx];
        const float dn = gg * (1.0f - z) * (1.0f - n * n);
        const float dz = gg * (hp - n) * z * (1.0f - z);
        const float dr = dn * hn * rg * (1.0f - rg);
        float *dp = dhp + r * 3 * D;
        dp[d] = dr; dp[D + d] = dz; dp[2 * D + d] = dn * rg;
        if (dxp) {
            float *dx = dxp + r * 3 * D;
            dx[d] += dr; dx[D + d] += dz; dx[2 * D + d] += dn;
        }
        carry[idx] = gg * z;
    }
}

/* LSTM gates of step t: pre = xp + (proj ? g : 0) + bh; g = (i, f, g, o) activated;
 * c = f c_{t-1} + i g, h = o tanh(c). */
static __global__ void k_lstm_gates(float *h, float *c, float *gates, const float *xp,
                                    const float *bh, const float *c0, int proj, int t, int B,
                                    int T, int D) {
    GRID_STRIDE(idx, (size_t)B * D) {
        const size_t b = idx / D, d = idx % D, r = b * T + t;
        float *g = gates + r * 4 * D;
        const float *x = xp + r * 4 * D;
        float a[4];
        for (int k = 0; k < 4; k++) {
            const size_t j = (size_t)k * D + d;
            a[k] = x[j] + (proj ? g[j] : 0.0f) + (bh ? bh[j] : 0.0f);
        }
        const float i = sigm(a[0]), f = sigm(a[1]), gg = tanhf(a[2]), o = sigm(a[3]);
        const float cp = t > 0 ? c[(r - 1) * D + d] : (c0 ? c0[idx] : 0.0f);
        const float v = f * cp + i * gg;
        c[r * D + d] = v;
        h[r * D + d] = o * tanhf(v);
        g[d] = i; g[D + d] = f; g[2 * D + d] = gg; g[3 * D + d] = o;
    }
}

/* LSTM backward of step t: dhh = dh + carry_h, dc = carry_c + dhh o (1 - tanh^2 c);
 * dhp[b,t] = (di, df, dg, do) pre-activation, dxp += the same, carry_c = dc f. */
static __global__ void k_lstm_bwd_step(float *dxp, float *dhp, float *ch, float *cc,
                                       const float *dh, const float *c, const float *gates,
                                       const float *c0, int t, int B, int T, int D) {
    GRID_STRIDE(idx, (size_t)B * D) {
        const size_t b = idx / D, d = idx % D, r = b * T + t, e = r * D + d;
        const float *g = gates + r * 4 * D;
        const float i = g[d], f = g[D + d], gg = g[2 * D + d], o = g[3 * D + d];
        const float cp = t > 0 ? c[e - D] : (c0 ? c0[idx] : 0.0f);
        const float tc = tanhf(c[e]);
        const float dhh = dh[e] + ch[idx];
        const float dc = cc[idx] + dhh * o * (1.0f - tc * tc);
        const float a0 = dc * gg * i * (1.0f - i), a1 = dc * cp * f * (1.0f - f);
        const float a2 = dc * i * (1.0f - gg * gg), a3 = dhh * tc * o * (1.0f - o);
        float *dp = dhp + r * 4 * D;
        dp[d] = a0; dp[D + d] = a1; dp[2 * D + d] = a2; dp[3 * D + d] = a3;
        if (dxp) {
            float *dx = dxp + r * 4 * D;
            dx[d] += a0; dx[D + d] += a1; dx[2 * D + d] += a2; dx[3 * D + d] += a3;
        }
        cc[idx] = dc * f;
    }
}

/* hprev[b,t,:] = h[b,t-1,:], or h0[b,:] (zeros without) at t = 0 */
static __global__ void k_fill_hprev(float *hprev, const float *h, const float *h0, int T, int D,
                                    size_t n) {
    GRID_STRIDE(idx, n) {
        const size_t td = (size_t)T * D, b = idx / td, rem = idx % td;
        if (rem >= (size_t)D) hprev[idx] = h[idx - D];
        else hprev[idx] = h0 ? h0[b * D + rem] : 0.0f;
    }
}

/* The recurrent projection of step t into the gate slots: g[b, 0..GD) = h_{t-1}[b] Wh^T
 * (gates + t*4D, row stride T*4D). Returns 0 when there is no previous state (t = 0,
 * h0 NULL): nothing written, the gate kernel uses zeros. */
static int step_proj(float *gates, const float *h, const float *h0, const float *wh, int t,
                     int B, int T, int D, int GD) {
    const float *hp = t > 0 ? h + (size_t)(t - 1) * D : h0;
    if (!hp) return 0;
    const int ldh = t > 0 ? T * D : D;
    /* g[B, GD] (ld T*4D) = hp[B, D] (ld ldh) @ wh[GD, D]^T */
    gemm(0, 1, B, GD, D, 1.0f, hp, ldh, wh, D, 0.0f, gates + (size_t)t * 4 * D, T * 4 * D);
    return 1;
}

/* The weight and bias gradients of all steps at once: dwh[GD, D] += dhp[B*T, GD]^T @
 * hprev[B*T, D]; dbh[GD] += column sums of dhp. */
static void rnn_wgrad(float *dwh, float *dbh, const float *dhp, float *hprev, const float *h,
                      const float *h0, int B, int T, int D, int GD) {
    if (dwh) {
        const size_t n = (size_t)B * T * D;
        LAUNCH(k_fill_hprev, ew_blocks(n, EW_THREADS), EW_THREADS, hprev, h, h0, T, D, n);
        gemm(1, 0, GD, D, B * T, 1.0f, dhp, GD, hprev, D, 1.0f, dwh, D);
    }
    if (dbh) colsum_acc<false>(dbh, NULL, dhp, NULL, NULL, NULL, B * T, GD);
}

/* ------------------------------------------------------------------------------------
 * public API
 * ---------------------------------------------------------------------------------- */

extern "C" {

int s2s_cuda_available(void) {
    static int cached = -1;
    if (cached < 0) {
        int n = 0;
        cudaError_t e = cudaGetDeviceCount(&n);
        if (e == cudaSuccess && n > 0) e = cudaFree(0); /* create the context now */
        if (e != cudaSuccess) {
            (void)cudaGetLastError(); /* reset the runtime's last-error state */
            n = 0;
        }
        cached = n > 0;
    }
    return cached;
}

const char *s2s_cuda_device_name(void) {
    static char name[256];
    if (!s2s_cuda_available()) return "none";
    if (!name[0]) {
        cudaDeviceProp prop;
        int dev = 0;
        if (cudaGetDevice(&dev) != cudaSuccess || cudaGetDeviceProperties(&prop, dev) != cudaSuccess) {
            (void)cudaGetLastError();
            return "unknown CUDA device";
        }
        snprintf(name, sizeof name, "%s", prop.name);
    }
    return name;
}

/* ---- memory ---- */

void *s2s_cuda_malloc(size_t bytes) {
    void *p = NULL;
    cudaError_t e = cudaMalloc(&p, bytes ? bytes : 1);
    if (e != cudaSuccess) {
        fprintf(stderr, "s2s: CUDA error: cannot allocate %zu bytes on the GPU: %s\n", bytes,
                cudaGetErrorString(e));
        exit(1);
    }
    return p;
}

void s2s_cuda_free(void *p) {
    if (p) CUDA_CHECK(cudaFree(p));
}

void s2s_cuda_upload(void *dst_dev, const void *src_host, size_t bytes) {
    if (bytes) CUDA_CHECK(cudaMemcpy(dst_dev, src_host, bytes, cudaMemcpyHostToDevice));
}

void s2s_cuda_download(void *dst_host, const void *src_dev, size_t bytes) {
    if (bytes) CUDA_CHECK(cudaMemcpy(dst_host, src_dev, bytes, cudaMemcpyDeviceToHost));
}

void s2s_cuda_copy(void *dst_dev, const void *src_dev, size_t bytes) {
    if (bytes) CUDA_CHECK(cudaMemcpy(dst_dev, src_dev, bytes, cudaMemcpyDeviceToDevice));
}

void s2s_cuda_memset0(void *p, size_t bytes) {
    if (bytes) CUDA_CHECK(cudaMemsetAsync(p, 0, bytes, 0));
}

void s2s_cuda_sync(void) { CUDA_CHECK(cudaDeviceSynchronize()); }

void s2s_cuda_set_precision(int mode) {
    g_bf16 = mode == S2S_PREC_BF16;
    s2s_cuda_set_tf32(mode == S2S_PREC_TF32);
}

void s2s_cuda_set_tf32(int on) {
    g_tf32 = on ? 1 : 0;
    if (g_blas)
        CUBLAS_CHECK(cublasSetMathMode(g_blas, g_tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
}

/* ---- linear, matmul ---- */

void s2s_kcu_linear_fwd(float *y, const float *x, const float *w, const float *b, int N, int K,
                        int M) {
    /* y[N,M] = x[N,K] @ w[M,K]^T (+ b[M]) */
    gemm(0, 1, N, M, K, 1.0f, x, K, w, K, 0.0f, y, M);
    if (b && N > 0 && M > 0) {
        const size_t n = (size_t)N * M;
        LAUNCH(k_add_bias, ew_blocks(n, EW_THREADS), EW_THREADS, y, b, n, M);
    }
}

/* beta of a backward GEMM into gradient output i: 0 overwrites (assign bit i), 1 adds */
static float grad_beta(int assign, int i) { return assign & S2S_ASSIGN(i) ? 0.0f : 1.0f; }

void s2s_kcu_linear_bwd(float *dx, float *dw, float *db, const float *dy, const float *x,
                        const float *w, int N, int K, int M, int assign) {
    /* dx[N,K] += dy[N,M] @ w[M,K]  (= with assign bit 0) */
    if (dx) gemm(0, 0, N, K, M, 1.0f, dy, M, w, K, grad_beta(assign, 0), dx, K);
    /* dw[M,K] += dy[N,M]^T @ x[N,K] */
    if (dw) gemm(1, 0, M, K, N, 1.0f, dy, M, x, K, 1.0f, dw, K);
    /* db[M] += column sums of dy[N,M] */
    if (db) colsum_acc<false>(db, NULL, dy, NULL, NULL, NULL, N, M);
}

void s2s_kcu_matmul_fwd(float *c, const float *a, const float *b, int M, int K, int N) {
    /* c[M,N] = a[M,K] @ b[K,N] */
    gemm(0, 0, M, N, K, 1.0f, a, K, b, N, 0.0f, c, N);
}

void s2s_kcu_matmul_bwd(float *da, float *db, const float *dc, const float *a, const float *b,
                        int M, int K, int N, int assign) {
    /* da[M,K] += dc[M,N] @ b[K,N]^T  (= with assign bit 0) */
    if (da) gemm(0, 1, M, K, N, 1.0f, dc, N, b, N, grad_beta(assign, 0), da, K);
    /* db[K,N] += a[M,K]^T @ dc[M,N]  (= with assign bit 1) */
    if (db) gemm(1, 0, K, N, M, 1.0f, a, K, dc, N, grad_beta(assign, 1), db, N);
}

/* ---- layernorm, softmax ---- */

void s2s_kcu_layernorm_fwd(float *y, float *mean, float *rstd, const float *x, const float *g,
                           const float *b, int N, int D) {
    if (N <= 0 || D <= 0) return;
    LAUNCH(k_layernorm_fwd, N, row_threads(D), y, mean, rstd, x, g, b, D);
}

void s2s_kcu_layernorm_bwd(float *dx, float *dg, float *db, const float *dy, const float *x,
                           const float *mean, const float *rstd, const float *g, int N, int D,
                           int assign) {
    if (N <= 0 || D <= 0) return;
    if (dx)
        LAUNCH(k_layernorm_bwd_dx, N, row_threads(D), dx, dy, x, mean, rstd, g, D,
               assign & S2S_ASSIGN(0));
    /* dg[D] += sum_n dy * xhat;  db[D] += sum_n dy */
    colsum_acc<true>(dg, db, dy, x, mean, rstd, N, D);
}

void s2s_kcu_softmax_fwd(float *y, const float *x, int N, int D) {
    if (N <= 0 || D <= 0) return;
    LAUNCH(k_softmax_fwd<false>, N, row_threads(D), y, x, D);
}

void s2s_kcu_softmax_bwd(float *dx, const float *dy, const float *y, int N, int D, int assign) {
    if (!dx || N <= 0 || D <= 0) return;
    LAUNCH(k_softmax_bwd<false>, N, row_threads(D), dx, dy, y, D, assign & S2S_ASSIGN(0));
}

void s2s_kcu_logsoftmax_fwd(float *y, const float *x, int N, int D) {
    if (N <= 0 || D <= 0) return;
    LAUNCH(k_softmax_fwd<true>, N, row_threads(D), y, x, D);
}

void s2s_kcu_logsoftmax_bwd(float *dx, const float *dy, const float *y, int N, int D, int assign) {
    if (!dx || N <= 0 || D <= 0) return;
    LAUNCH(k_softmax_bwd<true>, N, row_threads(D), dx, dy, y, D, assign & S2S_ASSIGN(0));
}

/* ---- activations ---- */

void s2s_kcu_relu_fwd(float *y, const float *x, size_t n) {
    if (n) LAUNCH(k_relu_fwd, ew_blocks(n, EW_THREADS), EW_THREADS, y, x, n);
}

void s2s_kcu_relu_bwd(float *dx, const float *dy, const float *x, size_t n, int assign) {
    if (dx && n)
        LAUNCH(k_relu_bwd, ew_blocks(n, EW_THREADS), EW_THREADS, dx, dy, x, n, assign & S2S_ASSIGN(0));
}

void s2s_kcu_gelu_fwd(float *y, const float *x, size_t n) {
    if (n) LAUNCH(k_gelu_fwd, ew_blocks(n, EW_THREADS), EW_THREADS, y, x, n);
}

void s2s_kcu_gelu_bwd(float *dx, const float *dy, const float *x, size_t n, int assign) {
    if (dx && n)
        LAUNCH(k_gelu_bwd, ew_blocks(n, EW_THREADS), EW_THREADS, dx, dy, x, n, assign & S2S_ASSIGN(0));
}

/* ---- embedding ---- */

void s2s_kcu_embedding_fwd(float *out, const float *table, const int32_t *ids, int N, int D) {
    if (N <= 0 || D <= 0) return;
    LAUNCH(k_embedding_fwd, N, D >= 256 ? 256 : 32 * ((D + 31) / 32), out, table, ids, D);
}

void s2s_kcu_embedding_bwd(float *dtable, const float *dout, const int32_t *ids, int N, int D) {
    if (!dtable || N <= 0 || D <= 0) return;
    LAUNCH(k_embedding_bwd, N, D >= 256 ? 256 : 32 * ((D + 31) / 32), dtable, dout, ids, D);
}

/* ---- attention ---- */

void s2s_kcu_attention_fwd(float *out, float *p, const float *q, const float *k, const float *v,
                           const int32_t *kv_len, int causal, int B, int H, int Tq, int Tk,
                           int Dh) {
    /* out[B,Tq,H*Dh], p[B,H,Tq,Tk], q[B,Tq,H*Dh], k,v[B,Tk,H*Dh] */
    if (B <= 0 || H <= 0 || Tq <= 0 || Dh <= 0) return;
    const int HD = H * Dh;
    const float scale = (float)(1.0 / sqrt((double)Dh));
    const attn_plan pl = plan_attention(B, H, Tq, Tk, Dh);
    if (Tk > 0) {
        /* p[b,h] [Tq,Tk] = scale * q[b,:,h] [Tq,Dh] @ k[b,:,h] [Tk,Dh]^T */
        for (int o = 0; o < pl.outer; o++)
            gemm_sb(0, 1, Tq, Tk, Dh, scale, q + o * pl.q_o, HD, pl.q_s, k + o * pl.k_o, HD, pl.k_s,
                    0.0f, p + o * pl.p_o, Tk, pl.p_s, pl.batch);
        const size_t rows = (size_t)B * H * Tq;
        LAUNCH(k_attn_softmax, (unsigned)((rows + ATT_WARPS - 1) / ATT_WARPS), 32 * ATT_WARPS, p,
               kv_len, causal, H, Tq, Tk, rows);
    }
    /* out[b,:,h] [Tq,Dh] = p[b,h] [Tq,Tk] @ v[b,:,h] [Tk,Dh]  (Tk = 0: zeros) */
    for (int o = 0; o < pl.outer; o++)
        gemm_sb(0, 0, Tq, Dh, Tk, 1.0f, p + o * pl.p_o, Tk, pl.p_s, v + o * pl.k_o, HD, pl.k_s, 0.0f,
                out + o * pl.q_o, HD, pl.q_s, pl.batch);
}

void s2s_kcu_attention_bwd(float *dq, float *dk, float *dv, const float *dout, const float *p,
                           const float *q, const float *k, const float *v, int B, int H, int Tq,
                           int Tk, int Dh, int assign) {
    /* dq[B,Tq,H*Dh], dk,dv[B,Tk,H*Dh] (+=, or = with assign bits 0, 1, 2), dout[B,Tq,H*Dh],
     * p[B,H,Tq,Tk] */
    if (B <= 0 || H <= 0 || Tq <= 0 || Tk <= 0 || Dh <= 0) { /* no products: assigned outputs are 0 */
        const size_t nq = (size_t)B * Tq * H * Dh, nk = (size_t)B * Tk * H * Dh;
        if (dq && (assign & S2S_ASSIGN(0))) s2s_cuda_memset0(dq, nq * sizeof(float));
        if (dk && (assign & S2S_ASSIGN(1))) s2s_cuda_memset0(dk, nk * sizeof(float));
        if (dv && (assign & S2S_ASSIGN(2))) s2s_cuda_memset0(dv, nk * sizeof(float));
        return;
    }
    const int HD = H * Dh;
    const float scale = (float)(1.0 / sqrt((double)Dh));
    const attn_plan pl = plan_attention(B, H, Tq, Tk, Dh);
    /* dv[b,:,h] [Tk,Dh] += p[b,h]^T [Tk,Tq] @ dout[b,:,h] [Tq,Dh] */
    if (dv)
        for (int o = 0; o < pl.outer; o++)
            gemm_sb(1, 0, Tk, Dh, Tq, 1.0f, p + o * pl.p_o, Tk, pl.p_s, dout + o * pl.q_o, HD, pl.q_s,
                    grad_beta(assign, 2), dv + o * pl.k_o, HD, pl.k_s, pl.batch);
    if (!dq && !dk) return;
    const size_t rows = (size_t)B * H * Tq;
    float *ds = (float *)scratch(rows * Tk * sizeof(float)); /* [B,H,Tq,Tk] like p */
    /* dP[b,h] [Tq,Tk] = dout[b,:,h] [Tq,Dh] @ v[b,:,h] [Tk,Dh]^T */
    for (int o = 0; o < pl.outer; o++)
        gemm_sb(0, 1, Tq, Tk, Dh, 1.0f, dout + o * pl.q_o, HD, pl.q_s, v + o * pl.k_o, HD, pl.k_s,
                0.0f, ds + o * pl.p_o, Tk, pl.p_s, pl.batch);
    /* dS = P * (dP - rowsum(P * dP)); masked entries have P = 0, hence dS = 0 */
    LAUNCH(k_attn_dsoftmax, (unsigned)((rows + ATT_WARPS - 1) / ATT_WARPS), 32 * ATT_WARPS, ds, p,
           Tk, rows);
    /* dq[b,:,h] [Tq,Dh] += scale * dS [Tq,Tk] @ k[b,:,h] [Tk,Dh] */
    if (dq)
        for (int o = 0; o < pl.outer; o++)
            gemm_sb(0, 0, Tq, Dh, Tk, scale, ds + o * pl.p_o, Tk, pl.p_s, k + o * pl.k_o, HD, pl.k_s,
                    grad_beta(assign, 0), dq + o * pl.q_o, HD, pl.q_s, pl.batch);
    /* dk[b,:,h] [Tk,Dh] += scale * dS^T [Tk,Tq] @ q[b,:,h] [Tq,Dh] */
    if (dk)
        for (int o = 0; o < pl.outer; o++)
            gemm_sb(1, 0, Tk, Dh, Tq, scale, ds + o * pl.p_o, Tk, pl.p_s, q + o * pl.q_o, HD, pl.q_s,
                    grad_beta(assign, 1), dk + o * pl.k_o, HD, pl.k_s, pl.batch);
}

/* ---- cross-entropy ---- */

int s2s_kcu_xent_fwd(float *loss, float *logp, const float *logits, const int32_t *tgt, float eps,
                     int ignore, int N, int V) {
    /* loss[N], logp[N,V], logits[N,V], tgt[N] */
    if (N > 0 && V > 0) LAUNCH(k_xent_fwd, N, row_threads(V), loss, logp, logits, tgt, eps, ignore, V);
    return -1; /* the count of non-ignored rows is the caller's (host targets) */
}

void s2s_kcu_xent_bwd(float *dlogits, const float *dloss, const float *logp, const int32_t *tgt,
                      float eps, int ignore, int N, int V, int assign) {
    if (!dlogits || N <= 0 || V <= 0) return;
    LAUNCH(k_xent_bwd, N, row_threads(V), dlogits, dloss, logp, tgt, eps, ignore, V,
           assign & S2S_ASSIGN(0));
}

/* ---- recurrent cells ---- */

void s2s_kcu_ssru_fwd(float *h, float *c, const float *xp, const float *c0, int B, int T, int D) {
    const size_t n = (size_t)B * D;
    if (n == 0 || T <= 0) return;
    LAUNCH(k_ssru_fwd, ew_blocks(n, EW_THREADS), EW_THREADS, h, c, xp, c0, B, T, D);
}

void s2s_kcu_ssru_bwd(float *dxp, const float *dh, const float *xp, const float *c,
                      const float *c0, int B, int T, int D) {
    const size_t n = (size_t)B * D;
    if (!dxp || n == 0 || T <= 0) return;
    LAUNCH(k_ssru_bwd, ew_blocks(n, EW_THREADS), EW_THREADS, dxp, dh, xp, c, c0, B, T, D);
}

void s2s_kcu_gru_fwd(float *h, float *gates, const float *xp, const float *wh, const float *bh,
                     const float *h0, int B, int T, int D) {
    const size_t n = (size_t)B * D;
    if (n == 0 || T <= 0) return;
    for (int t = 0; t < T; t++) {
        const int proj = step_proj(gates, h, h0, wh, t, B, T, D, 3 * D);
        LAUNCH(k_gru_gates, ew_blocks(n, EW_THREADS), EW_THREADS, h, gates, xp, bh, h0, proj, t, B,
               T, D);
    }
}

void s2s_kcu_gru_bwd(float *dxp, float *dwh, float *dbh, float *ws, const float *dh,
                     const float *h, const float *gates, const float *wh, const float *h0, int B,
                     int T, int D) {
    const size_t n = (size_t)B * D;
    if (n == 0 || T <= 0) return;
    const int GD = 3 * D;
    /* ws: dHP [B,T,3D] (gradient of each step's recurrent projection), Hprev [B,T,D],
     * carry [B,D] (gradient reaching h_t from step t+1) */
    float *dhp = ws, *hprev = ws + (size_t)B * T * GD, *carry = hprev + (size_t)B * T * D;
    s2s_cuda_memset0(carry, n * sizeof(float));
    for (int t = T - 1; t >= 0; t--) {
        LAUNCH(k_gru_bwd_step, ew_blocks(n, EW_THREADS), EW_THREADS, dxp, dhp, carry, dh, h, gates,
               h0, t, B, T, D);
        /* carry[B,D] += dHP[:,t] [B,3D] (ld T*3D) @ wh[3D,D] */
        if (t > 0) gemm(0, 0, B, D, GD, 1.0f, dhp + (size_t)t * GD, T * GD, wh, D, 1.0f, carry, D);
    }
    rnn_wgrad(dwh, dbh, dhp, hprev, h, h0, B, T, D, GD);
}

void s2s_kcu_lstm_fwd(float *h, float *c, float *gates, const float *xp, const float *wh,
                      const float *bh, const float *h0, const float *c0, int B, int T, int D) {
    const size_t n = (size_t)B * D;
    if (n == 0 || T <= 0) return;
    for (int t = 0; t < T; t++) {
        const int proj = step_proj(gates, h, h0, wh, t, B, T, D, 4 * D);
        LAUNCH(k_lstm_gates, ew_blocks(n, EW_THREADS), EW_THREADS, h, c, gates, xp, bh, c0, proj, t,
               B, T, D);
    }
}

void s2s_kcu_lstm_bwd(float *dxp, float *dwh, float *dbh, float *ws, const float *dh,
                      const float *h, const float *c, const float *gates, const float *wh,
                      const float *h0, const float *c0, int B, int T, int D) {
    const size_t n = (size_t)B * D;
    if (n == 0 || T <= 0) return;
    const int GD = 4 * D;
    /* ws: dHP [B,T,4D], Hprev [B,T,D], carry_h [B,D], carry_c [B,D] */
    float *dhp = ws, *hprev = ws + (size_t)B * T * GD;
    float *ch = hprev + (size_t)B * T * D, *cc = ch + n;
    s2s_cuda_memset0(ch, 2 * n * sizeof(float));
    for (int t = T - 1; t >= 0; t--) {
        LAUNCH(k_lstm_bwd_step, ew_blocks(n, EW_THREADS), EW_THREADS, dxp, dhp, ch, cc, dh, c, gates,
               c0, t, B, T, D);
        /* carry_h[B,D] = dHP[:,t] [B,4D] (ld T*4D) @ wh[4D,D] */
        if (t > 0) gemm(0, 0, B, D, GD, 1.0f, dhp + (size_t)t * GD, T * GD, wh, D, 0.0f, ch, D);
    }
    rnn_wgrad(dwh, dbh, dhp, hprev, h, h0, B, T, D, GD);
}

/* ---- elementwise, reductions, optimizer ---- */

void s2s_kcu_add(float *y, const float *a, const float *b, size_t n) {
    if (n) LAUNCH(k_add, ew_blocks(n, EW_THREADS), EW_THREADS, y, a, b, n);
}

void s2s_kcu_mul(float *y, const float *a, const float *b, size_t n) {
    if (n) LAUNCH(k_mul, ew_blocks(n, EW_THREADS), EW_THREADS, y, a, b, n);
}

void s2s_kcu_scale(float *y, const float *a, float s, size_t n) {
    if (n) LAUNCH(k_scale, ew_blocks(n, EW_THREADS), EW_THREADS, y, a, s, n);
}

void s2s_kcu_axpy(float *y, float s, const float *x, size_t n) {
    if (n) LAUNCH(k_axpy, ew_blocks(n, EW_THREADS), EW_THREADS, y, s, x, n);
}

void s2s_kcu_mul_acc(float *y, const float *a, const float *b, size_t n) {
    if (n) LAUNCH(k_mul_acc, ew_blocks(n, EW_THREADS), EW_THREADS, y, a, b, n);
}

void s2s_kcu_bcast_acc(float *y, const float *dy1, float s, size_t n) {
    if (n) LAUNCH(k_bcast_acc, ew_blocks(n, EW_THREADS), EW_THREADS, y, dy1, s, n);
}

void s2s_kcu_dropout_fwd(float *y, float *mask, const float *x, float p, uint64_t seed, size_t n) {
    const float keep = 1.0f / (1.0f - p); /* as graph.c, computed on the host */
    if (n) LAUNCH(k_dropout, ew_blocks(n, EW_THREADS), EW_THREADS, y, mask, x, p, keep, seed, n);
}

void s2s_kcu_sum(float *out, const float *x, float s, size_t n) {
    reduce_launch(out, NULL, x, s, n, 0);
}

void s2s_kcu_sqnorm_acc(double *out, const float *x, size_t n) {
    if (n) reduce_launch(NULL, out, x, 1.0f, n, 1);
}

void s2s_kcu_adamw(float *p, float *m, float *v, const float *g, float gscale, float decay,
                   float b1, float b2, float stepsize, float bc2s, float eps, size_t n) {
    if (n)
        LAUNCH(k_adamw, ew_blocks(n, EW_THREADS), EW_THREADS, p, m, v, g, gscale, decay, b1, b2,
               stepsize, bc2s, eps, n);
}

} /* extern "C" */

#else /* !S2S_CUDA */
typedef int s2s_kernels_cuda_unused; /* built without the GPU backend: nothing here */
#endif
