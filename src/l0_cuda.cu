/* l0_cuda.cu - CUDA versions (s2s_kcu_*) of the structured L0 pruning kernels of
 * kernels_l0.h: group scale (forward elementwise; dz one block per group with a
 * block reduction), the hard-concrete gate (thread per unit), the expected density
 * (one block, reduction in double) and the Lagrangian (one thread). Every pointer,
 * scalars included, is on the device; all work is queued on the default stream.
 * Numerics follow kernels_l0.c (the gate and density in double like the reference). */
#include "kernels_l0.h"

#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>

#ifdef S2S_CUDA

#define L0_THREADS 256

static void l0_fail(const char *what, const char *msg, const char *file, int line) {
    fprintf(stderr, "s2s: CUDA error: %s: %s (%s:%d)\n", what, msg, file, line);
    exit(1);
}

#define L0_LAUNCH(kernel, grid, block, ...)                                               \
    do {                                                                                  \
        kernel<<<(grid), (block)>>>(__VA_ARGS__);                                         \
        cudaError_t e_ = cudaGetLastError();                                              \
        if (e_ != cudaSuccess) l0_fail(#kernel, cudaGetErrorString(e_), __FILE__, __LINE__); \
    } while (0)

static unsigned blocks_for(size_t n) {
    size_t b = (n + L0_THREADS - 1) / L0_THREADS;
    if (b < 1) b = 1;
    if (b > 65535) b = 65535;
    return (unsigned)b;
}

/* block-wide sum of v (double); the result is valid in thread 0 */
static __device__ double block_sum(double v) {
    __shared__ double sh[L0_THREADS / 32];
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    if (lane == 0) sh[w] = v;
    __syncthreads();
    if (w == 0) {
        v = lane < (int)(blockDim.x >> 5) ? sh[lane] : 0.0;
        for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
    }
    return v;
}

/* ------------------------------------------------------------ group scale */

static __global__ void k_gs_fwd(float *y, const float *x, const float *z, size_t n, int G, int S) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        y[i] = x[i] * z[(i / (size_t)S) % (size_t)G];
}

static __global__ void k_gs_bwd_dx(float *dx, const float *dy, const float *z, size_t n, int G, int S) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        dx[i] += dy[i] * z[(i / (size_t)S) % (size_t)G];
}

/* block g: dz[g] += sum over rows n and s of dy * x at column g*S + s */
static __global__ void k_gs_bwd_dz(float *dz, const float *dy, const float *x, int N, int G, int S) {
    int g = blockIdx.x;
    size_t per = (size_t)N * S;
    double acc = 0;
    for (size_t j = threadIdx.x; j < per; j += blockDim.x) {
        size_t n = j / (size_t)S, s = j % (size_t)S;
        size_t i = (n * G + g) * S + s;
        acc += (double)(dy[i] * x[i]);
    }
    acc = block_sum(acc);
    if (threadIdx.x == 0) dz[g] += (float)acc;
}

extern "C" void s2s_kcu_group_scale_fwd(float *y, const float *x, const float *z, int N, int G, int S) {
    size_t n = (size_t)N * G * S;
    if (n == 0) return;
    L0_LAUNCH(k_gs_fwd, blocks_for(n), L0_THREADS, y, x, z, n, G, S);
}

extern "C" void s2s_kcu_group_scale_bwd(float *dx, float *dz, const float *dy, const float *x, const float *z,
                                        int N, int G, int S) {
    size_t n = (size_t)N * G * S;
    if (n == 0) return;
    if (dx) L0_LAUNCH(k_gs_bwd_dx, blocks_for(n), L0_THREADS, dx, dy, z, n, G, S);
    if (dz) L0_LAUNCH(k_gs_bwd_dz, G, L0_THREADS, dz, dy, x, N, G, S);
}

/* ---------------------------------------------------------- hard concrete */

static __device__ double d_sigm(double v) { return 1.0 / (1.0 + exp(-v)); }

static __global__ void k_hc_fwd(float *z, const float *la, const float *u, int n) {
    const double l = S2S_L0_LIMIT_L, r = S2S_L0_LIMIT_R, beta = S2S_L0_BETA;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        double s = d_sigm((log((double)u[i]) - log(1.0 - (double)u[i]) + la[i]) / beta);
        double v = s * (r - l) + l;
        z[i] = (float)(v < 0 ? 0 : v > 1 ? 1 : v);
    }
}

static __global__ void k_hc_bwd(float *dla, const float *dz, const float *la, const float *u, int n) {
    const double l = S2S_L0_LIMIT_L, r = S2S_L0_LIMIT_R, beta = S2S_L0_BETA;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        double s = d_sigm((log((double)u[i]) - log(1.0 - (double)u[i]) + la[i]) / beta);
        double v = s * (r - l) + l;
        if (v > 0 && v < 1) dla[i] += (float)(dz[i] * (r - l) * s * (1.0 - s) / beta);
    }
}

extern "C" void s2s_kcu_hard_concrete_fwd(float *z, const float *log_alpha, const float *u, int n) {
    if (n <= 0) return;
    L0_LAUNCH(k_hc_fwd, blocks_for((size_t)n), L0_THREADS, z, log_alpha, u, n);
}

extern "C" void s2s_kcu_hard_concrete_bwd(float *dla, const float *dz, const float *log_alpha, const float *u,
                                          int n) {
    if (n <= 0 || !dla) return;
    L0_LAUNCH(k_hc_bwd, blocks_for((size_t)n), L0_THREADS, dla, dz, log_alpha, u, n);
}

/* ------------------------------------------------------- density, Lagrangian */

static __global__ void k_density_fwd(float *out, const float *la, const float *cost, float inv_total, int n) {
    double acc = 0;
    for (int i = threadIdx.x; i < n; i += blockDim.x) acc += cost[i] * d_sigm((double)la[i] - S2S_L0_SHIFT);
    acc = block_sum(acc);
    if (threadIdx.x == 0) out[0] = (float)(acc * inv_total);
}

static __global__ void k_density_bwd(float *dla, const float *dout, const float *la, const float *cost,
                                     float inv_total, int n) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        double p = d_sigm((double)la[i] - S2S_L0_SHIFT);
        dla[i] += (float)((double)dout[0] * inv_total * cost[i] * p * (1.0 - p));
    }
}

static __global__ void k_lagr_fwd(float *out, const float *density, const float *lambda, float t) {
    double d = 1.0 - (double)density[0] - t;
    out[0] = (float)(lambda[0] * d + lambda[1] * d * d);
}

static __global__ void k_lagr_bwd(float *ddensity, float *dlambda, const float *dout, const float *density,
                                  const float *lambda, float t) {
    double d = 1.0 - (double)density[0] - t;
    if (ddensity) ddensity[0] += (float)(-(double)dout[0] * (lambda[0] + 2.0 * lambda[1] * d));
    if (dlambda) {
        dlambda[0] += (float)(dout[0] * d);
        dlambda[1] += (float)(dout[0] * d * d);
    }
}

extern "C" void s2s_kcu_l0_density_fwd(float *out, const float *log_alpha, const float *cost, float inv_total,
                                       int n) {
    L0_LAUNCH(k_density_fwd, 1, L0_THREADS, out, log_alpha, cost, inv_total, n);
}

extern "C" void s2s_kcu_l0_density_bwd(float *dla, const float *dout, const float *log_alpha, const float *cost,
                                       float inv_total, int n) {
    if (n <= 0 || !dla) return;
    L0_LAUNCH(k_density_bwd, blocks_for((size_t)n), L0_THREADS, dla, dout, log_alpha, cost, inv_total, n);
}

extern "C" void s2s_kcu_l0_lagrangian_fwd(float *out, const float *density, const float *lambda, float t) {
    L0_LAUNCH(k_lagr_fwd, 1, 1, out, density, lambda, t);
}

extern "C" void s2s_kcu_l0_lagrangian_bwd(float *ddensity, float *dlambda, const float *dout,
                                          const float *density, const float *lambda, float t) {
    if (!ddensity && !dlambda) return;
    L0_LAUNCH(k_lagr_bwd, 1, 1, ddensity, dlambda, dout, density, lambda, t);
}

#endif
