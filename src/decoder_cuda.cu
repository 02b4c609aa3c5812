/* decoder_cuda.cu - incremental decoding on the GPU behind the step interface of
 * decoder.h: the Transformer decoder and the recurrent ones (SSRU, GRU, LSTM), with
 * the math of decoder_transformer.c / decoder_rnn.c in fp32.
 *
 * Contract (decoder.h): start() receives enc as a DEVICE pointer [B, Ts, D]; step()
 * takes host tokens [N] and returns host logits [N, V]; select() is host-only. All
 * work is queued on the legacy default stream (the stream of kernels_cuda.h and the
 * CUDA graphs of graph.c), in order; the only host synchronisation of a step is the
 * download at its end. s2s_dec_cuda_step_top() (below; search.c uses it for models on
 * the GPU) is a step that picks on the device what search needs from the logits (the
 * argmax, or each row's top k log-probabilities) and downloads only that, instead of
 * N x V logits that the host then scans.
 *
 * Two ways to run the projections, picked per step by the row count N:
 *   N < gemm_rows (small; batch-1 and small-batch decoding): our own fp32 kernels for
 *     few rows (lin_kernel: LayerNorm + up to 8 linear jobs over the same input in one
 *     launch, the recurrent projection inside the cell kernel). Numerics do not depend
 *     on any global math mode.
 *   N >= gemm_rows (large; big batches, beams): every projection is one cuBLAS GEMM
 *     (s2s_kcu_linear_fwd, without bias: biases, residuals, activations and the next
 *     LayerNorm are folded into a few small kernels). These GEMMs follow the process-
 *     wide precision of kernels_cuda.h (strict fp32 unless the process asked for TF32/
 *     bf16). gemm_rows is GEMM_ROWS (64) or the environment's S2S_GPU_GEMM_ROWS (read by
 *     start(): 1 = always GEMMs, a huge value = never), for tuning and for the tests.
 * The two paths keep the same state layout, so a search may switch between them when
 * rows finish; they differ only in fp32 rounding order.
 *
 * One step, per Transformer layer, small path (8 launches):
 *   lin    LN1 + q/k/v projections (3 jobs in one launch; k and v are written
 *          straight into the self-attention cache at position t)
 *   attn   one query per (row, head) over the row's t+1 cached keys
 *   lin    out projection + residual (x += a So^T + b)
 *   lin    LN2 + cross q projection
 *   attn   one query per (row, head) over its sentence's src_len keys
 *   lin    cross out projection + residual
 *   lin    LN3 + fc1 + activation
 *   lin    fc2 + residual
 * plus, per step: one async upload of (tokens, row map, row -> sentence), one kernel
 * for embedding * sqrt(D) + position (which also applies pending select()s to the
 * cache index table), one lin for the final LayerNorm + tied output projection, and
 * the logits download: 8 * Ld + 2 kernels, 2 copies, 1 sync.
 * Large path, per Transformer layer (7 GEMMs + 5 kernels): rowln (pending residual +
 * LN1), GEMMs q, k, v, epi (k, v + biases into the cache), attn (q's bias added as q is
 * read), GEMM o, rowln (x += o + b; LN2), GEMM cq, attn, GEMM co, rowln (LN3), GEMM
 * fc1, epi (bias + activation), GEMM fc2 (its residual is applied by the next rowln).
 * Recurrent layer, small path: lin (LN1 + input projection of all gates), one fused
 * cell kernel (recurrent matmul + gates + state update + residual; SSRU: elementwise),
 * then the cross-attention and optional FFN as above: 5 (7 with the FFN) launches.
 * Large path: rowln, GEMM of the input projection, GEMM of the recurrent projection of
 * the previous step's state rows (GRU/LSTM; skipped at t = 0, where the state is 0),
 * one elementwise cell kernel (gathering the projected rows through the row map and
 * adding both biases), then cross-attention and FFN as for the Transformer.
 *
 * select() moves no data: the Transformer cache is addressed through an index table
 * idx[row][p] = the cache row that holds position p of this row's history (a position
 * is written once, at step p, into the writing row's own slot [row, p], and never
 * overwritten); select() only composes a host-side row map, which the next step
 * uploads with the tokens: its embedding kernel gathers the (t ints per row) index
 * table through it, and the recurrent cell kernels read the previous state through
 * it. Cross-attention finds a row's sentence through the uploaded row -> sentence map.
 *
 * Memory: start() takes one device block and one pinned host block (staging for
 * the uploads and the downloads), laid out by plan(); blocks are cached per
 * thread (one of each, the largest seen) and reused by the next start() of the same
 * thread, so decoding one sentence at a time does not pay cudaMalloc/cudaFree per
 * sentence; they are released when the thread exits. */
#ifdef S2S_CUDA

#include <cuda_runtime.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern "C" {
#include "common.h"
#include "config.h"
#include "decoder.h"
#include "model.h"
}
#include "kernels_cuda.h" /* s2s_kcu_linear_fwd (has its own extern "C") */

/* ------------------------------------------------------------------------------------
 * errors
 * ---------------------------------------------------------------------------------- */

static void cu_die(const char *what, cudaError_t e) {
    fprintf(stderr, "s2s: CUDA error in the GPU decoder (%s): %s\n", what, cudaGetErrorString(e));
    exit(1); /* as kernels_cuda.h: a failed device call mid-search is not recoverable */
}
#define CK(call)                                        \
    do {                                                \
        cudaError_t e_ = (call);                        \
        if (e_ != cudaSuccess) cu_die(#call, e_);       \
    } while (0)

/* ------------------------------------------------------------------------------------
 * device helpers
 * ---------------------------------------------------------------------------------- */

#define LIN_THREADS 256          /* 8 warps */
#define LIN_WARPS (LIN_THREADS / 32)
#define LIN_COLS (2 * LIN_WARPS) /* output columns per block: 2 per warp */
#define LIN_MAX_JOBS 8
#define ATT_THREADS 128
#define SMEM_DEFAULT (48 * 1024)
#define EW_THREADS 256           /* elementwise kernels */
#define TOP_THREADS 256          /* argmax / top-k: one block per row */
/* rows from which a step runs its projections as cuBLAS GEMMs (see the top) */
#define GEMM_ROWS 64

enum { ACT_NONE = 0, ACT_RELU = 1, ACT_GELU = 2 };

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
/* block-wide reductions (red: >= 32 floats of shared memory; every thread gets the result) */
__device__ float block_sum(float v, float *red) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_sum(v);
    if (lane == 0) red[warp] = v;
    __syncthreads();
    float r = 0.0f;
    for (int i = 0; i < nw; i++) r += red[i];
    __syncthreads();
    return r;
}
__device__ float block_max(float v, float *red) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_max(v);
    if (lane == 0) red[warp] = v;
    __syncthreads();
    float r = red[0];
    for (int i = 1; i < nw; i++) r = fmaxf(r, red[i]);
    __syncthreads();
    return r;
}

/* the CPU kernels' formulas (kernels_rnn.c): sigmoid clamped below -80, tanh = 1 - 2/(1+e^2x) */
__device__ __forceinline__ float sigm(float x) { return 1.0f / (1.0f + expf(-fmaxf(x, -80.0f))); }
__device__ __forceinline__ float tanh_(float x) { return 1.0f - 2.0f / (1.0f + expf(2.0f * x)); }
/* GELU, exact erf form (as s2s_k_gelu_fwd) */
__device__ __forceinline__ float gelu(float x) { return x * (0.5f * erfcf(-x * 0.70710678118654752f)); }

/* Stage TN input rows into shared memory xs[TN][K]: row r = x row n0 + r (through rowmap
 * when given), LayerNorm'd with (g, b) when g != NULL (eps 1e-5, as s2s_k_layernorm_fwd);
 * rows >= N are zero. Ends with __syncthreads(). */
template <int TN>
__device__ void stage_rows(float *xs, const float *x, size_t xstride, const int *rowmap,
                           const float *g, const float *b, int n0, int N, int K) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    for (int r = warp; r < TN; r += nw) {
        float *dst = xs + (size_t)r * K;
        const int n = n0 + r;
        if (n >= N) {
            for (int k = lane; k < K; k += 32) dst[k] = 0.0f;
            continue;
        }
        const float *src = x + (size_t)(rowmap ? rowmap[n] : n) * xstride;
        if (!g) {
            for (int k = lane; k < K; k += 32) dst[k] = src[k];
            continue;
        }
        float s = 0.0f;
        for (int k = lane; k < K; k += 32) s += src[k];
        const float mean = warp_sum(s) / (float)K;
        float v = 0.0f;
        for (int k = lane; k < K; k += 32) {
            const float d = src[k] - mean;
            v = fmaf(d, d, v);
        }
        const float rs = 1.0f / sqrtf(warp_sum(v) / (float)K + 1e-5f);
        for (int k = lane; k < K; k += 32) dst[k] = fmaf((src[k] - mean) * rs, g[k], b[k]);
    }
    __syncthreads();
}

/* acc[c][r] = xs[r] . w[c] over K, the full sum in every lane of the warp. Lanes split
 * K (coalesced weight loads); each weight value feeds TN rows, each row value NC weights. */
template <int TN, int NC>
__device__ __forceinline__ void dot_rows(float (&acc)[NC][TN], const float *xs,
                                         const float *const (&w)[NC], int K, int lane) {
#pragma unroll
    for (int c = 0; c < NC; c++)
#pragma unroll
        for (int r = 0; r < TN; r++) acc[c][r] = 0.0f;
#pragma unroll 2
    for (int k = lane; k < K; k += 32) {
        float wv[NC];
#pragma unroll
        for (int c = 0; c < NC; c++) wv[c] = __ldg(w[c] + k);
#pragma unroll
        for (int r = 0; r < TN; r++) {
            const float xv = xs[(size_t)r * K + k];
#pragma unroll
            for (int c = 0; c < NC; c++) acc[c][r] = fmaf(xv, wv[c], acc[c][r]);
        }
    }
#pragma unroll
    for (int c = 0; c < NC; c++)
#pragma unroll
        for (int r = 0; r < TN; r++) acc[c][r] = warp_sum(acc[c][r]);
}

/* ------------------------------------------------------------------------------------
 * kernels
 * ---------------------------------------------------------------------------------- */

/* One linear layer of a launch: y[n * ys + m] (=|+=) act(x_n . w[m] + b[m]), m < M. */
struct LinJob {
    const float *w; /* [M, K] */
    const float *b; /* [M] or NULL */
    float *y;
    long long ys;   /* floats between output rows */
    int M;
};
struct LinParams {
    const float *x;     /* [N, K], rows xs floats apart */
    long long xs;
    const float *g, *b; /* LayerNorm of the input rows, or NULL */
    int N, K, act, resid, njobs;
    LinJob job[LIN_MAX_JOBS];
};

/* grid (row tiles of TN, column tiles of LIN_COLS, job); shared memory TN * K floats. */
template <int TN>
__global__ void __launch_bounds__(LIN_THREADS) lin_kernel(const LinParams P) {
    extern __shared__ float xs[];
    const LinJob &J = P.job[blockIdx.z];
    const int m0 = blockIdx.y * LIN_COLS;
    if (m0 >= J.M) return; /* the whole block: jobs may have fewer columns than the grid */
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n0 = blockIdx.x * TN;
    stage_rows<TN>(xs, P.x, (size_t)P.xs, nullptr, P.g, P.b, n0, P.N, P.K);
    const int m = m0 + 2 * warp;
    if (m >= J.M) return;
    const bool two = m + 1 < J.M;
    const float *const w[2] = {J.w + (size_t)m * P.K, J.w + (size_t)(two ? m + 1 : m) * P.K};
    float acc[2][TN];
    dot_rows<TN, 2>(acc, xs, w, P.K, lane);
#pragma unroll
    for (int r = 0; r < TN; r++) {
        if (lane != r || n0 + r >= P.N) continue;
        float *y = J.y + (size_t)(n0 + r) * (size_t)J.ys + m;
#pragma unroll
        for (int c = 0; c < 2; c++) {
            if (c == 1 && !two) break;
            float v = acc[c][r] + (J.b ? J.b[m + c] : 0.0f);
            if (P.act == ACT_RELU) v = v > 0.0f ? v : 0.0f;
            else if (P.act == ACT_GELU) v = gelu(v);
            y[c] = P.resid ? y[c] + v : v;
        }
    }
}

/* One query per (row, head) over a block of keys (decoder_common.c's s2s_dec_attend):
 * SELF: keys 0..len-1 of row r, key p in cache row idx[r][p] (slot [idx, p] of
 * [*, ms, D]); else: keys 0..lens[s]-1 of sentence s = sent[r] ([B, ts, D]). */
struct AttnParams {
    float *out;             /* [N, D] */
    const float *q;         /* [N, D] */
    const float *qb;        /* [D] bias added to q as it is read (large path), or NULL */
    const float *k, *v;
    const int *idx;         /* SELF: [N, ms] */
    int ms, len;            /* SELF */
    const int *sent, *lens; /* cross: [N], [B] */
    int ts;
    int D, Dh, tmax;
    float scale;
};

/* grid (N, H), ATT_THREADS threads; shared memory attn_smem(Dh, tmax). */
static size_t attn_smem(int Dh, int tmax) {
    size_t part = (size_t)(ATT_THREADS > Dh ? ATT_THREADS : Dh);
    return ((size_t)Dh + 32 + 2 * (size_t)tmax + part) * 4;
}

template <bool SELF>
__global__ void __launch_bounds__(ATT_THREADS) attn_kernel(const AttnParams P) {
    extern __shared__ float sm[];
    const int r = blockIdx.x, h = blockIdx.y, tid = threadIdx.x, bd = blockDim.x;
    const int lane = tid & 31, warp = tid >> 5, nw = bd >> 5, Dh = P.Dh;
    float *qs = sm;                          /* [Dh] */
    float *red = qs + Dh;                    /* [32] */
    int *koff = (int *)(red + 32);           /* [tmax] key row (units of D floats) */
    float *p = (float *)(koff + P.tmax);     /* [tmax] scores, then exp */
    float *part = p + P.tmax;                /* [max(bd, Dh)] partial outputs */
    int len, base = 0;
    if (SELF) {
        len = P.len;
    } else {
        const int s = P.sent[r];
        len = P.lens[s];
        base = s * P.ts;
    }
    const size_t hoff = (size_t)h * Dh;
    const float *qg = P.q + (size_t)r * P.D + hoff;
    for (int d = tid; d < Dh; d += bd) qs[d] = P.qb ? qg[d] + P.qb[hoff + d] : qg[d];
    for (int j = tid; j < len; j += bd) koff[j] = SELF ? P.idx[(size_t)r * P.ms + j] * P.ms + j : base + j;
    __syncthreads();
    float *out = P.out + (size_t)r * P.D + hoff;
    if (len <= 0) { /* every key masked: output 0 (as the CPU kernel) */
        for (int d = tid; d < Dh; d += bd) out[d] = 0.0f;
        return;
    }
    for (int j = warp; j < len; j += nw) {
        const float *kj = P.k + (size_t)koff[j] * P.D + hoff;
        float s = 0.0f;
        for (int d = lane; d < Dh; d += 32) s = fmaf(qs[d], kj[d], s);
        s = warp_sum(s);
        if (lane == 0) p[j] = s * P.scale;
    }
    __syncthreads();
    float mx = -INFINITY;
    for (int j = tid; j < len; j += bd) mx = fmaxf(mx, p[j]);
    mx = block_max(mx, red);
    float sum = 0.0f;
    for (int j = tid; j < len; j += bd) {
        const float e = expf(p[j] - mx);
        p[j] = e;
        sum += e;
    }
    sum = block_sum(sum, red); /* also makes every p[j] visible */
    const float inv = 1.0f / sum;
    /* out[d] = sum_j (e_j * inv) v_j[d]: G key groups of Dh threads, then combined */
    const int G = bd >= Dh ? bd / Dh : 1;
    for (int e = tid; e < G * Dh; e += bd) {
        const int g = e / Dh, d = e % Dh;
        float acc = 0.0f;
        for (int j = g; j < len; j += G) acc = fmaf(p[j] * inv, P.v[(size_t)koff[j] * P.D + hoff + d], acc);
        part[e] = acc;
    }
    __syncthreads();
    for (int d = tid; d < Dh; d += bd) {
        float o = 0.0f;
        for (int g = 0; g < G; g++) o += part[g * Dh + d];
        out[d] = o;
    }
}

/* x[i] = emb[tok[i]] * sqrt(D) + pe (rounded as the CPU: product, then sum); with an
 * index table, also idx_new[i][0..t) = idx_old[map[i]][0..t), idx_new[i][t] = i. */
__global__ void embed_kernel(float *x, const float *emb, const float *pe, float sq, const int *tok,
                             const int *map, const int *idx_old, int *idx_new, int t, int ms, int D) {
    const int i = blockIdx.x;
    const float *e = emb + (size_t)tok[i] * D;
    float *xi = x + (size_t)i * D;
    for (int d = threadIdx.x; d < D; d += blockDim.x) xi[d] = __fadd_rn(__fmul_rn(e[d], sq), pe[d]);
    if (idx_new) {
        const int *src = idx_old + (size_t)map[i] * ms;
        int *dst = idx_new + (size_t)i * ms;
        for (int p = threadIdx.x; p < t; p += blockDim.x) dst[p] = src[p];
        if (threadIdx.x == 0) dst[t] = i;
    }
}

/* SSRU cell step (s2s_k_ssru_fwd, T = 1) + residual: c = f c_prev[map[n]] + (1 - f) xw,
 * x += relu(c); xp [N, 2D] = [f | w], plus xb [2D] when given (large path: the GEMM
 * leaves the bias out). */
__global__ void ssru_kernel(float *x, float *c_new, const float *xp, const float *xb,
                            const float *c_prev, const int *map, int N, int D) {
    const size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)N * D) return;
    const int n = (int)(i / D), d = (int)(i % D);
    const float *xr = xp + (size_t)n * 2 * D;
    const float xf = xb ? xr[d] + xb[d] : xr[d], xw = xb ? xr[D + d] + xb[D + d] : xr[D + d];
    const float f = sigm(xf);
    const float v = f * c_prev[(size_t)map[n] * D + d] + (1.0f - f) * xw;
    c_new[i] = v;
    x[i] += v > 0.0f ? v : 0.0f;
}

/* GRU (G = 3) / LSTM (G = 4) cell step + residual, one launch: the recurrent projection
 * of the previous state (rows map[n]) for the G gates of column d, then the gates
 * (s2s_k_gru_fwd / s2s_k_lstm_fwd with T = 1), h_new, c_new (LSTM) and x += h_new. */
struct CellParams {
    float *x, *h_new, *c_new;
    const float *h_prev, *c_prev, *xp, *wh, *bh;
    const int *map;
    int N, D;
};

/* The gates of one unit: xv[G] input projections (with their bias), gv[G] recurrent
 * projections (with theirs), hp the previous h, cp the previous c (LSTM); returns h,
 * stores the new c (LSTM). */
template <int G>
__device__ __forceinline__ float cell_gates(const float (&xv)[G], const float (&gv)[G], float hp, float cp,
                                            float *c_new) {
    if (G == 3) {
        const float rr = sigm(xv[0] + gv[0]), z = sigm(xv[1] + gv[1]);
        const float nn = tanh_(xv[2] + rr * gv[2]);
        return (1.0f - z) * nn + z * hp;
    }
    const float i = sigm(xv[0] + gv[0]), f = sigm(xv[1] + gv[1]);
    const float gg = tanh_(xv[2] + gv[2]), o = sigm(xv[G - 1] + gv[G - 1]);
    const float v = f * cp + i * gg;
    *c_new = v;
    return o * tanh_(v);
}

/* grid (row tiles of TN, columns / LIN_WARPS), one column per warp; smem TN * D floats */
template <int TN, int G>
__global__ void __launch_bounds__(LIN_THREADS) cell_kernel(const CellParams P) {
    extern __shared__ float xs[];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n0 = blockIdx.x * TN, D = P.D;
    stage_rows<TN>(xs, P.h_prev, (size_t)D, P.map, nullptr, nullptr, n0, P.N, D);
    const int d = blockIdx.y * LIN_WARPS + warp;
    if (d >= D) return;
    const float *w[G];
#pragma unroll
    for (int gi = 0; gi < G; gi++) w[gi] = P.wh + ((size_t)gi * D + d) * D;
    float acc[G][TN];
    dot_rows<TN, G>(acc, xs, w, D, lane);
#pragma unroll
    for (int r = 0; r < TN; r++) {
        const int n = n0 + r;
        if (lane != r || n >= P.N) continue;
        float gv[G], xv[G];
        const float *xr = P.xp + (size_t)n * G * D;
#pragma unroll
        for (int gi = 0; gi < G; gi++) {
            gv[gi] = acc[gi][r] + (P.bh ? P.bh[gi * D + d] : 0.0f);
            xv[gi] = xr[(size_t)gi * D + d];
        }
        const float cp = G == 4 ? P.c_prev[(size_t)P.map[n] * D + d] : 0.0f;
        const float hn = cell_gates<G>(xv, gv, xs[(size_t)r * D + d], cp,
                                       G == 4 ? P.c_new + (size_t)n * D + d : nullptr);
        P.h_new[(size_t)n * D + d] = hn;
        P.x[(size_t)n * D + d] += hn;
    }
}

/* Large path: the GRU (G = 3) / LSTM (G = 4) cell step + residual, one thread per (row,
 * unit): hp [*, G*D] the recurrent projection of the previous step's state rows without
 * bias (NULL: the state is 0), gathered through map; xb [G*D] the input projection's
 * bias (the GEMM left it out of xp). */
template <int G>
__global__ void cellbig_kernel(const CellParams P, const float *hp, const float *xb) {
    const size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    const int D = P.D;
    if (i >= (size_t)P.N * D) return;
    const int n = (int)(i / D), d = (int)(i % D), pr = P.map[n];
    const float *xr = P.xp + (size_t)n * G * D;
    float gv[G], xv[G];
#pragma unroll
    for (int gi = 0; gi < G; gi++) {
        const size_t c = (size_t)gi * D + d;
        gv[gi] = (hp ? hp[(size_t)pr * G * D + c] : 0.0f) + (P.bh ? P.bh[c] : 0.0f);
        xv[gi] = xb ? xr[c] + xb[c] : xr[c];
    }
    const float cp = G == 4 ? P.c_prev[(size_t)pr * D + d] : 0.0f;
    const float hn = cell_gates<G>(xv, gv, P.h_prev[(size_t)pr * D + d], cp, G == 4 ? P.c_new + i : nullptr);
    P.h_new[i] = hn;
    P.x[i] += hn;
}

/* Large path: per row n < N (one warp each), with y, first the pending residual of a
 * GEMM, x[n] = x[n] + (y[n] + yb) (yb may be NULL); then h[n] = LayerNorm(x[n]) with
 * (g, b), as stage_rows (eps 1e-5). Each lane reads back only what it wrote. */
__global__ void __launch_bounds__(LIN_THREADS) rowln_kernel(float *x, const float *y, const float *yb, float *h,
                                                            const float *g, const float *b, int N, int D) {
    const int lane = threadIdx.x & 31, n = blockIdx.x * LIN_WARPS + (threadIdx.x >> 5);
    if (n >= N) return;
    float *xr = x + (size_t)n * D;
    if (y) {
        const float *yr = y + (size_t)n * D;
        for (int k = lane; k < D; k += 32) xr[k] = xr[k] + (yb ? yr[k] + yb[k] : yr[k]);
    }
    float s = 0.0f;
    for (int k = lane; k < D; k += 32) s += xr[k];
    const float mean = warp_sum(s) / (float)D;
    float v = 0.0f;
    for (int k = lane; k < D; k += 32) {
        const float dd = xr[k] - mean;
        v = fmaf(dd, dd, v);
    }
    const float rs = 1.0f / sqrtf(warp_sum(v) / (float)D + 1e-5f);
    float *hr = h + (size_t)n * D;
    for (int k = lane; k < D; k += 32) hr[k] = fmaf((xr[k] - mean) * rs, g[k], b[k]);
}

/* Large path, the GEMMs' epilogues: per job, dst[n * ds + m] = act(src[n * ss + m] + b[m])
 * for n < N, m < M (b may be NULL; src may be dst). */
struct EpiJob {
    const float *src;
    float *dst;
    const float *b;
    long long ss, ds;
    int M;
};
struct EpiParams {
    int N, act, njobs;
    EpiJob job[LIN_MAX_JOBS];
};

/* grid (blocks, job), grid-stride over N * M */
__global__ void __launch_bounds__(EW_THREADS) epi_kernel(const EpiParams P) {
    const EpiJob &J = P.job[blockIdx.y];
    const size_t n_all = (size_t)P.N * J.M;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n_all; i += (size_t)gridDim.x * blockDim.x) {
        const size_t n = i / (size_t)J.M, m = i % (size_t)J.M;
        const float s = J.src[n * (size_t)J.ss + m];
        float v = J.b ? s + J.b[m] : s;
        if (P.act == ACT_RELU) v = v > 0.0f ? v : 0.0f;
        else if (P.act == ACT_GELU) v = gelu(v);
        J.dst[n * (size_t)J.ds + m] = v;
    }
}

/* ---- device-side selection (s2s_dec_cuda_step_top) ---- */

/* out[row] = the first index of the maximum of logits[row] (search.c's greedy scan:
 * best = 0; for v: if (l[v] > l[best]) best = v). One block per row. */
__global__ void __launch_bounds__(TOP_THREADS) argmax_kernel(int32_t *out, const float *logits, int V) {
    __shared__ float sv[32];
    __shared__ int si[32];
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, nw = blockDim.x >> 5;
    const float *x = logits + (size_t)blockIdx.x * V;
    float bv = -INFINITY;
    int bi = -1; /* this thread's first maximum over v = tid, tid + bd, ... */
    for (int v = tid; v < V; v += blockDim.x) {
        const float xv = x[v];
        if (bi < 0 || xv > bv) { bv = xv; bi = v; }
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) { /* larger value, or the same value at a lower index */
        const float ov = __shfl_xor_sync(0xffffffffu, bv, o);
        const int oi = __shfl_xor_sync(0xffffffffu, bi, o);
        if (oi >= 0 && (bi < 0 || ov > bv || (ov == bv && oi < bi))) { bv = ov; bi = oi; }
    }
    if (lane == 0) { sv[warp] = bv; si[warp] = bi; }
    __syncthreads();
    if (tid == 0) {
        for (int w = 1; w < nw; w++)
            if (si[w] >= 0 && (bi < 0 || sv[w] > bv || (sv[w] == bv && si[w] < bi))) { bv = sv[w]; bi = si[w]; }
        out[blockIdx.x] = bi;
    }
}

/* order-preserving map of a float to an unsigned key (larger float, larger key) */
__device__ __forceinline__ unsigned fkey(float f) {
    const unsigned u = __float_as_uint(f);
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

/* Per row (one block): the k (<= V) largest log-softmax values lp[v] = (x[v] - max) -
 * log(sum exp(x - max)) (as s2s_k_logsoftmax_fwd), ties to the lower v, written as
 * tok[row * k + i], val[row * k + i] in increasing token order. Exact selection: a radix
 * select (4 passes of 8 bits over the keys of lp) finds the k-th largest key T; then
 * every v with key > T and the lowest-index ones with key == T are gathered, and
 * ranked by token. Shared memory: k * 8 bytes. */
__global__ void __launch_bounds__(TOP_THREADS) topk_kernel(int32_t *tok, float *val, const float *logits, int V,
                                                           int k) {
    extern __shared__ int ctok[]; /* [k] tokens, then [k] values */
    float *cval = (float *)(ctok + k);
    __shared__ float red[32];
    __shared__ unsigned hist[256];
    __shared__ unsigned s_prefix, s_mask;
    __shared__ int s_rem, s_ngt, wcnt[32];
    const int tid = threadIdx.x, bd = blockDim.x, lane = tid & 31, warp = tid >> 5, nw = bd >> 5;
    const float *x = logits + (size_t)blockIdx.x * V;
    float mx = -INFINITY;
    for (int v = tid; v < V; v += bd) mx = fmaxf(mx, x[v]);
    mx = block_max(mx, red);
    float sum = 0.0f;
    for (int v = tid; v < V; v += bd) sum += expf(x[v] - mx);
    const float lse = logf(block_sum(sum, red));
#define LP(v) ((x[v] - mx) - lse)
    unsigned prefix = 0, mask = 0;
    int rem = k; /* still to take among the keys matching prefix under mask */
    for (int shift = 24; shift >= 0; shift -= 8) {
        for (int i = tid; i < 256; i += bd) hist[i] = 0;
        __syncthreads();
        for (int v0 = 0; v0 < V; v0 += bd) { /* warp-uniform: the lanes of a bin add once */
            const int v = v0 + tid;
            unsigned u = 0;
            if (v < V) u = fkey(LP(v));
            const bool in = v < V && (u & mask) == prefix;
            const unsigned act = __ballot_sync(0xffffffffu, in);
            if (in) {
                const unsigned bin = (u >> shift) & 255u, peers = __match_any_sync(act, bin);
                if (lane == __ffs(peers) - 1) atomicAdd(&hist[bin], (unsigned)__popc(peers));
            }
        }
        __syncthreads();
        if (warp == 0) { /* lane l holds bins 255 - 8l .. 248 - 8l (from the top) */
            unsigned c[8], tot = 0;
#pragma unroll
            for (int j = 0; j < 8; j++) { c[j] = hist[255 - 8 * lane - j]; tot += c[j]; }
            unsigned inc = tot;
#pragma unroll
            for (int o = 1; o < 32; o <<= 1) {
                const unsigned t = __shfl_up_sync(0xffffffffu, inc, o);
                if (lane >= o) inc += t;
            }
            const unsigned above = inc - tot; /* keys in the bins above this lane's */
            if (above < (unsigned)rem && (unsigned)rem <= inc) { /* exactly one lane */
                unsigned a = above;
                int bin = 255 - 8 * lane;
#pragma unroll
                for (int j = 0; j < 8; j++) {
                    if (a + c[j] >= (unsigned)rem) { bin = 255 - 8 * lane - j; break; }
                    a += c[j];
                }
                s_prefix = prefix | ((unsigned)bin << shift);
                s_mask = mask | (255u << shift);
                s_rem = rem - (int)a;
            }
        }
        __syncthreads();
        prefix = s_prefix;
        mask = s_mask;
        rem = s_rem;
    }
    /* gather: keys > T anywhere (atomic slots), keys == T in index order (the first rem) */
    const unsigned T = prefix;
    const int ngt = k - rem;
    if (tid == 0) s_ngt = 0;
    __syncthreads();
    int base = 0; /* keys == T seen in earlier chunks */
    for (int v0 = 0; v0 < V; v0 += bd) {
        const int v = v0 + tid;
        float lp = 0.0f;
        unsigned u = 0;
        if (v < V) {
            lp = LP(v);
            u = fkey(lp);
            if (u > T) {
                const int p = atomicAdd(&s_ngt, 1);
                ctok[p] = v;
                cval[p] = lp;
            }
        }
        const bool eq = v < V && u == T;
        const unsigned bal = __ballot_sync(0xffffffffu, eq);
        if (lane == 0) wcnt[warp] = __popc(bal);
        __syncthreads();
        int before = base + __popc(bal & ((1u << lane) - 1u)), tot = 0;
        for (int w = 0; w < nw; w++) {
            if (w < warp) before += wcnt[w];
            tot += wcnt[w];
        }
        if (eq && before < rem) {
            ctok[ngt + before] = v;
            cval[ngt + before] = lp;
        }
        base += tot;
        __syncthreads(); /* wcnt is rewritten by the next chunk */
    }
#undef LP
    for (int i = tid; i < k; i += bd) { /* rank by token (distinct) */
        const int ti = ctok[i];
        int r = 0;
        for (int j = 0; j < k; j++) r += ctok[j] < ti;
        tok[(size_t)blockIdx.x * k + r] = ti;
        val[(size_t)blockIdx.x * k + r] = cval[i];
    }
}

/* ------------------------------------------------------------------------------------
 * launchers
 * ---------------------------------------------------------------------------------- */

/* Rows per block for an input of K floats: up to 8, as shared memory allows. */
static int rows_per_block(int N, int K) {
    int tn = N >= 8 ? 8 : N >= 3 ? 4 : N;
    while (tn > 1 && (size_t)tn * K * 4 > SMEM_DEFAULT) tn /= 2;
    return tn < 1 ? 1 : tn;
}

template <typename F>
static void allow_smem(F *kernel, size_t bytes) {
    if (bytes > SMEM_DEFAULT)
        CK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes));
}

/* Linear jobs over the same input rows x [N, K] (LayerNorm'd by g, b when g != NULL). */
static void lin(const float *x, size_t xs, int N, int K, const float *g, const float *b, int act,
                int resid, const LinJob *jobs, int njobs) {
    if (N <= 0) return;
    const int tn = rows_per_block(N, K);
    const size_t smem = (size_t)tn * K * 4;
    for (int j0 = 0; j0 < njobs; j0 += LIN_MAX_JOBS) {
        LinParams P;
        memset(&P, 0, sizeof P);
        P.x = x; P.xs = (long long)xs; P.g = g; P.b = b;
        P.N = N; P.K = K; P.act = act; P.resid = resid;
        P.njobs = njobs - j0 < LIN_MAX_JOBS ? njobs - j0 : LIN_MAX_JOBS;
        int maxM = 0;
        for (int j = 0; j < P.njobs; j++) {
            P.job[j] = jobs[j0 + j];
            if (P.job[j].M > maxM) maxM = P.job[j].M;
        }
        dim3 grid((unsigned)((N + tn - 1) / tn), (unsigned)((maxM + LIN_COLS - 1) / LIN_COLS), (unsigned)P.njobs);
        switch (tn) {
        case 8: lin_kernel<8><<<grid, LIN_THREADS, smem>>>(P); break;
        case 4: lin_kernel<4><<<grid, LIN_THREADS, smem>>>(P); break;
        case 2: lin_kernel<2><<<grid, LIN_THREADS, smem>>>(P); break;
        default:
            allow_smem(lin_kernel<1>, smem);
            lin_kernel<1><<<grid, LIN_THREADS, smem>>>(P);
            break;
        }
    }
}

static LinJob job(const s2s_lin_p *p, float *y, size_t ys, int M) {
    LinJob j;
    j.w = p->w->dev_data;
    j.b = p->b ? p->b->dev_data : nullptr;
    j.y = y;
    j.ys = (long long)ys;
    j.M = M;
    return j;
}

/* ---- large path ---- */

static const float *bias_of(const s2s_lin_p *p) { return p->b ? p->b->dev_data : nullptr; }

/* y[N, M] = x[N, K] W^T, W = p's weight [M, K], without its bias: one cuBLAS GEMM
 * (kernels_cuda.h's precision). */
static void gemm(const float *x, int N, int K, const s2s_lin_p *p, float *y, int M) {
    s2s_kcu_linear_fwd(y, x, p->w->dev_data, nullptr, N, K, M);
}

/* x += y + yb (when y), then h = LayerNorm(x) with ln; rows of D floats */
static void rowln(float *x, const float *y, const float *yb, float *h, const s2s_ln_p *ln, int N, int D) {
    rowln_kernel<<<(unsigned)((N + LIN_WARPS - 1) / LIN_WARPS), LIN_THREADS>>>(x, y, yb, h, ln->w->dev_data,
                                                                              ln->b->dev_data, N, D);
}

static EpiJob epijob(const float *src, long long ss, float *dst, long long ds, const float *b, int M) {
    EpiJob j;
    j.src = src; j.ss = ss; j.dst = dst; j.ds = ds; j.b = b; j.M = M;
    return j;
}

static void epi(const EpiJob *jobs, int njobs, int N, int act) {
    for (int j0 = 0; j0 < njobs; j0 += LIN_MAX_JOBS) {
        EpiParams P;
        memset(&P, 0, sizeof P);
        P.N = N; P.act = act;
        P.njobs = njobs - j0 < LIN_MAX_JOBS ? njobs - j0 : LIN_MAX_JOBS;
        size_t most = 0;
        for (int j = 0; j < P.njobs; j++) {
            P.job[j] = jobs[j0 + j];
            if ((size_t)P.job[j].M > most) most = (size_t)P.job[j].M;
        }
        size_t blocks = ((size_t)N * most + EW_THREADS - 1) / EW_THREADS;
        if (blocks > 1024) blocks = 1024; /* grid-stride beyond */
        if (blocks < 1) blocks = 1;
        epi_kernel<<<dim3((unsigned)blocks, (unsigned)P.njobs), EW_THREADS>>>(P);
    }
}

template <int G>
static void cell(const CellParams &P) {
    const int tn = rows_per_block(P.N, P.D);
    const size_t smem = (size_t)tn * P.D * 4;
    dim3 grid((unsigned)((P.N + tn - 1) / tn), (unsigned)((P.D + LIN_WARPS - 1) / LIN_WARPS));
    switch (tn) {
    case 8: cell_kernel<8, G><<<grid, LIN_THREADS, smem>>>(P); break;
    case 4: cell_kernel<4, G><<<grid, LIN_THREADS, smem>>>(P); break;
    case 2: cell_kernel<2, G><<<grid, LIN_THREADS, smem>>>(P); break;
    default:
        allow_smem(cell_kernel<1, G>, smem);
        cell_kernel<1, G><<<grid, LIN_THREADS, smem>>>(P);
        break;
    }
}

/* ------------------------------------------------------------------------------------
 * per-thread cache of the device and pinned host blocks
 * ---------------------------------------------------------------------------------- */

namespace {
struct BlockCache {
    void *dev = nullptr, *host = nullptr;
    size_t dev_bytes = 0, host_bytes = 0;
    ~BlockCache() { /* thread exit: errors ignored (the runtime may be shutting down) */
        if (dev) (void)cudaFree(dev);
        if (host) (void)cudaFreeHost(host);
    }
};
thread_local BlockCache tl_cache;
} // namespace

static void *dev_take(size_t bytes, size_t *got) {
    BlockCache &c = tl_cache;
    if (c.dev && c.dev_bytes >= bytes) {
        void *p = c.dev;
        *got = c.dev_bytes;
        c.dev = nullptr;
        c.dev_bytes = 0;
        return p;
    }
    void *p = nullptr;
    cudaError_t e = cudaMalloc(&p, bytes);
    if (e != cudaSuccess && c.dev) { /* the cached block is too small: give it back and retry */
        (void)cudaGetLastError();
        CK(cudaFree(c.dev));
        c.dev = nullptr;
        c.dev_bytes = 0;
        e = cudaMalloc(&p, bytes);
    }
    if (e != cudaSuccess) {
        fprintf(stderr, "s2s: out of GPU memory: the GPU decoder needs %zu MB (%s)\n", bytes >> 20,
                cudaGetErrorString(e));
        exit(1);
    }
    *got = bytes;
    return p;
}

static void dev_give(void *p, size_t bytes) {
    BlockCache &c = tl_cache;
    if (c.dev && c.dev_bytes >= bytes) { CK(cudaFree(p)); return; }
    if (c.dev) CK(cudaFree(c.dev));
    c.dev = p;
    c.dev_bytes = bytes;
}

/* pinned host memory (plain malloc if pinning fails: copies then just run synchronously) */
static void *host_take(size_t bytes, size_t *got, int *pinned) {
    BlockCache &c = tl_cache;
    if (c.host && c.host_bytes >= bytes) {
        void *p = c.host;
        *got = c.host_bytes;
        *pinned = 1;
        c.host = nullptr;
        c.host_bytes = 0;
        return p;
    }
    void *p = nullptr;
    *got = bytes;
    if (cudaHostAlloc(&p, bytes, cudaHostAllocDefault) == cudaSuccess) {
        *pinned = 1;
        return p;
    }
    (void)cudaGetLastError();
    *pinned = 0;
    return s2s_xmalloc(bytes);
}

static void host_give(void *p, size_t bytes, int pinned) {
    if (!pinned) { free(p); return; }
    BlockCache &c = tl_cache;
    if (c.host && c.host_bytes >= bytes) { CK(cudaFreeHost(p)); return; }
    if (c.host) CK(cudaFreeHost(c.host));
    c.host = p;
    c.host_bytes = bytes;
}

/* ------------------------------------------------------------------------------------
 * decoding state
 * ---------------------------------------------------------------------------------- */

typedef struct {
    const s2s_model *m;
    int kind, G;            /* S2S_DEC_*, gates per cell (0: Transformer) */
    int B, Ts, R, ms;       /* ms = max_steps */
    int N, Nmax, t, tmax;   /* live rows, capacity (B*R), steps taken, longest key block */
    int Nlast;              /* rows of the state written by the last step (Nmax before any) */
    int gemm_rows;          /* steps of at least this many rows take the large path */
    int kcap;               /* top-k capacity per row of s2s_dec_cuda_step_top: min(2R, V) */
    int32_t *map, *sent, *tmp; /* host [Nmax]: pending row map (select), row -> sentence */
    /* device, carved from dblock by plan() */
    float **kc, **vc;       /* Transformer [Ld] -> [Nmax, ms, D] self-attention K/V */
    int32_t *idx[2];        /* Transformer [Nmax, ms] cache index table, current + spare */
    float **hs, **cs;       /* recurrent [Ld] -> [Nmax, D] state (SSRU: c in hs; LSTM: h, c) */
    float *spare_h, *spare_c;
    float **ck, **cv;       /* [Ld] -> [B, Ts, D] cross-attention K/V */
    float *x, *q, *a;       /* [Nmax, D] */
    float *h, *y;           /* [Nmax, D] large path: LayerNorm'd rows (GEMM input), GEMM output */
    float *xp;              /* recurrent [Nmax, G*D] */
    float *hp;              /* GRU/LSTM [Nmax, G*D] large path: recurrent projection */
    float *f;               /* [Nmax, F] (when the layers have an FFN) */
    float *logits;          /* [Nmax, V] */
    int32_t *d_top;         /* [2 * Nmax * kcap] step_top results: tokens, then values */
    int32_t *d_srclen;      /* [B] */
    int32_t *d_ctrl;        /* [3 * Nmax]: tokens [N], row map [N], row -> sentence [N] */
    const int32_t *d_sent;  /* the row -> sentence map of this step (in d_ctrl) */
    /* pinned host staging, carved from hblock */
    int32_t *h_ctrl, *h_srclen, *h_top;
    float *h_logits;
    void *dblock, *hblock;
    size_t dbytes, hbytes;
    int hpinned;
    float **ptrs;           /* the host arrays of per-layer device pointers */
} cstate;

#define CARVE(base, off, ptr, type, count)                                   \
    do {                                                                     \
        if (base) (ptr) = (type *)(void *)((char *)(base) + (off));          \
        (off) += (((size_t)(count) * sizeof(type)) + 255) & ~(size_t)255;    \
    } while (0)

/* top-k capacity per row: search asks for 2 candidates per beam row (and 1 when greedy) */
static int top_cap(const s2s_config *c, int R) {
    const int k = 2 * R;
    return k < c->tgt_vocab ? k : c->tgt_vocab;
}

/* Lay out the device block (and the pinned host block) of a state; base NULL: count only.
 * s->ptrs must hold 6 * Ld pointers when dbase is given. */
static void plan(const s2s_model *m, int B, int Ts, int R, int ms, cstate *s, void *dbase,
                 void *hbase, size_t *dbytes, size_t *hbytes) {
    const s2s_config *c = &m->cfg;
    const size_t D = (size_t)c->d_model, L = (size_t)c->dec_layers, N = (size_t)B * R;
    const int kind = s2s_config_dec_kind(c);
    const size_t G = (size_t)s2s_config_rnn_gates(c);
    const int ffn = kind == S2S_DEC_TRANSFORMER || c->dec_ffn;
    const size_t kcap = (size_t)top_cap(c, R);
    size_t off = 0;
    if (dbase) {
        s->kc = s->ptrs; s->vc = s->ptrs + L; s->hs = s->ptrs + 2 * L; s->cs = s->ptrs + 3 * L;
        s->ck = s->ptrs + 4 * L; s->cv = s->ptrs + 5 * L;
        for (size_t l = 0; l < 6 * L; l++) s->ptrs[l] = nullptr;
        s->hp = nullptr;
    }
    if (kind == S2S_DEC_TRANSFORMER) {
        for (size_t l = 0; l < L; l++) {
            CARVE(dbase, off, s->kc[l], float, N * ms * D);
            CARVE(dbase, off, s->vc[l], float, N * ms * D);
        }
        CARVE(dbase, off, s->idx[0], int32_t, N * ms);
        CARVE(dbase, off, s->idx[1], int32_t, N * ms);
    } else { /* the states first and together: one memset zeroes them all */
        for (size_t l = 0; l < L; l++) CARVE(dbase, off, s->hs[l], float, N * D);
        if (kind == S2S_DEC_LSTM)
            for (size_t l = 0; l < L; l++) CARVE(dbase, off, s->cs[l], float, N * D);
        CARVE(dbase, off, s->spare_h, float, N * D);
        if (kind == S2S_DEC_LSTM) CARVE(dbase, off, s->spare_c, float, N * D);
        CARVE(dbase, off, s->xp, float, N * G * D);
        if (kind != S2S_DEC_SSRU) CARVE(dbase, off, s->hp, float, N * G * D);
    }
    for (size_t l = 0; l < L; l++) {
        CARVE(dbase, off, s->ck[l], float, (size_t)B * Ts * D);
        CARVE(dbase, off, s->cv[l], float, (size_t)B * Ts * D);
    }
    CARVE(dbase, off, s->x, float, N * D);
    CARVE(dbase, off, s->q, float, N * D);
    CARVE(dbase, off, s->a, float, N * D);
    CARVE(dbase, off, s->h, float, N * D);
    CARVE(dbase, off, s->y, float, N * D);
    if (ffn) CARVE(dbase, off, s->f, float, N * (size_t)c->d_ff);
    CARVE(dbase, off, s->logits, float, N * (size_t)c->tgt_vocab);
    CARVE(dbase, off, s->d_top, int32_t, 2 * N * kcap);
    CARVE(dbase, off, s->d_srclen, int32_t, B);
    CARVE(dbase, off, s->d_ctrl, int32_t, 3 * N);
    *dbytes = off;
    size_t hoff = 0;
    CARVE(hbase, hoff, s->h_ctrl, int32_t, 3 * N);
    CARVE(hbase, hoff, s->h_srclen, int32_t, B);
    CARVE(hbase, hoff, s->h_top, int32_t, 2 * N * kcap);
    CARVE(hbase, hoff, s->h_logits, float, N * (size_t)c->tgt_vocab);
    *hbytes = hoff;
}

static void *c_start(const s2s_model *m, const float *enc, const int32_t *src_len, int B, int Ts,
                     int R, int max_steps) {
    const s2s_config *c = &m->cfg;
    S2S_ASSERT(m->on_cuda && B > 0 && Ts > 0 && R > 0 && max_steps > 0);
    const int D = c->d_model, L = c->dec_layers, H = c->n_heads;
    cstate *s = (cstate *)s2s_xcalloc(1, sizeof *s);
    s->m = m;
    s->kind = s2s_config_dec_kind(c);
    s->G = s2s_config_rnn_gates(c);
    s->B = B; s->Ts = Ts; s->R = R; s->ms = max_steps;
    s->Nmax = s->N = s->Nlast = B * R;
    s->tmax = s->kind == S2S_DEC_TRANSFORMER && max_steps > Ts ? max_steps : Ts;
    s->kcap = top_cap(c, R);
    const char *ev = getenv("S2S_GPU_GEMM_ROWS");
    s->gemm_rows = ev && *ev ? atoi(ev) : GEMM_ROWS;
    s->map = (int32_t *)s2s_xmalloc((size_t)s->Nmax * 3 * sizeof(int32_t));
    s->sent = s->map + s->Nmax;
    s->tmp = s->sent + s->Nmax;
    for (int r = 0; r < s->N; r++) { s->map[r] = r; s->sent[r] = r / R; }
    s->ptrs = (float **)s2s_xcalloc(6 * (size_t)L, sizeof(float *));
    size_t db, hb;
    plan(m, B, Ts, R, max_steps, s, nullptr, nullptr, &db, &hb);
    s->dblock = dev_take(db, &s->dbytes);
    s->hblock = host_take(hb, &s->hbytes, &s->hpinned);
    plan(m, B, Ts, R, max_steps, s, s->dblock, s->hblock, &db, &hb);
    memcpy(s->h_srclen, src_len, (size_t)B * sizeof(int32_t));
    CK(cudaMemcpyAsync(s->d_srclen, s->h_srclen, (size_t)B * sizeof(int32_t), cudaMemcpyHostToDevice, 0));
    if (s->kind != S2S_DEC_TRANSFORMER) /* zero initial states (carved first, contiguous) */
        CK(cudaMemsetAsync(s->dblock, 0, (size_t)((char *)s->spare_h - (char *)s->dblock), 0));
    /* cross-attention K/V of every layer, projected once */
    const int rows = B * Ts;
    if (rows >= s->gemm_rows) { /* 2 L GEMMs, then one launch adds all the biases */
        EpiJob *ej = (EpiJob *)s2s_xmalloc(2 * (size_t)L * sizeof(EpiJob));
        int ne = 0;
        for (int l = 0; l < L; l++) {
            gemm(enc, rows, D, &m->dec[l].ck, s->ck[l], D);
            gemm(enc, rows, D, &m->dec[l].cv, s->cv[l], D);
            if (m->dec[l].ck.b) ej[ne++] = epijob(s->ck[l], D, s->ck[l], D, bias_of(&m->dec[l].ck), D);
            if (m->dec[l].cv.b) ej[ne++] = epijob(s->cv[l], D, s->cv[l], D, bias_of(&m->dec[l].cv), D);
        }
        epi(ej, ne, rows, ACT_NONE);
        free(ej);
    } else { /* one launch for all layers */
        LinJob *jobs = (LinJob *)s2s_xmalloc(2 * (size_t)L * sizeof(LinJob));
        for (int l = 0; l < L; l++) {
            jobs[2 * l] = job(&m->dec[l].ck, s->ck[l], (size_t)D, D);
            jobs[2 * l + 1] = job(&m->dec[l].cv, s->cv[l], (size_t)D, D);
        }
        lin(enc, (size_t)D, rows, D, nullptr, nullptr, ACT_NONE, 0, jobs, 2 * L);
        free(jobs);
    }
    const int Dh = D / H;
    allow_smem(attn_kernel<true>, attn_smem(Dh, s->tmax));
    allow_smem(attn_kernel<false>, attn_smem(Dh, s->tmax));
    allow_smem(topk_kernel, (size_t)s->kcap * 8);
    CK(cudaGetLastError());
    return s;
}

/* attention of layer l for N rows: q [N, D] (+ qb when given) -> a [N, D] */
static void attend(cstate *s, int l, bool self, int N, const float *qb) {
    const s2s_config *c = &s->m->cfg;
    AttnParams P;
    memset(&P, 0, sizeof P);
    P.out = s->a; P.q = s->q; P.qb = qb;
    P.D = c->d_model; P.Dh = c->d_model / c->n_heads; P.tmax = s->tmax;
    P.scale = 1.0f / sqrtf((float)P.Dh);
    dim3 grid((unsigned)N, (unsigned)c->n_heads);
    const size_t smem = attn_smem(P.Dh, s->tmax);
    if (self) {
        P.k = s->kc[l]; P.v = s->vc[l];
        P.idx = s->idx[0]; P.ms = s->ms; P.len = s->t + 1;
        attn_kernel<true><<<grid, ATT_THREADS, smem>>>(P);
    } else {
        P.k = s->ck[l]; P.v = s->cv[l];
        P.sent = s->d_sent; P.lens = s->d_srclen; P.ts = s->Ts;
        attn_kernel<false><<<grid, ATT_THREADS, smem>>>(P);
    }
}

/* cross-attention sublayer and the optional FFN of layer Ly, on x [N, D] */
static void cross_and_ffn(cstate *s, int l, int N, int ffn) {
    const s2s_model *m = s->m;
    const s2s_config *c = &m->cfg;
    const s2s_dec_layer *Ly = &m->dec[l];
    const int D = c->d_model, F = c->d_ff;
    LinJob j = job(&Ly->cq, s->q, (size_t)D, D);
    lin(s->x, (size_t)D, N, D, Ly->ln2.w->dev_data, Ly->ln2.b->dev_data, ACT_NONE, 0, &j, 1);
    attend(s, l, false, N, nullptr);
    j = job(&Ly->co, s->x, (size_t)D, D);
    lin(s->a, (size_t)D, N, D, nullptr, nullptr, ACT_NONE, 1, &j, 1);
    if (!ffn) return;
    j = job(&Ly->fc1, s->f, (size_t)F, F);
    lin(s->x, (size_t)D, N, D, Ly->ln3.w->dev_data, Ly->ln3.b->dev_data,
        c->activation == S2S_ACT_GELU ? ACT_GELU : ACT_RELU, 0, &j, 1);
    j = job(&Ly->fc2, s->x, (size_t)D, D);
    lin(s->f, (size_t)F, N, F, nullptr, nullptr, ACT_NONE, 1, &j, 1);
}

static void swapf(float **a, float **b) { float *t = *a; *a = *b; *b = t; }

/* The large path's residual that is still to be added to x: x += y + b (y NULL: none).
 * Every sublayer's output projection leaves one; the next rowln applies it. */
typedef struct {
    const float *y, *b;
} pending;

/* Large path: the cross-attention sublayer and the optional FFN of layer l */
static void cross_and_ffn_big(cstate *s, int l, int N, int ffn, pending *pd) {
    const s2s_model *m = s->m;
    const s2s_config *c = &m->cfg;
    const s2s_dec_layer *Ly = &m->dec[l];
    const int D = c->d_model, F = c->d_ff;
    rowln(s->x, pd->y, pd->b, s->h, &Ly->ln2, N, D);
    gemm(s->h, N, D, &Ly->cq, s->q, D);
    attend(s, l, false, N, bias_of(&Ly->cq));
    gemm(s->a, N, D, &Ly->co, s->y, D);
    pd->y = s->y; pd->b = bias_of(&Ly->co);
    if (!ffn) return;
    rowln(s->x, pd->y, pd->b, s->h, &Ly->ln3, N, D);
    gemm(s->h, N, D, &Ly->fc1, s->f, F);
    EpiJob e = epijob(s->f, F, s->f, F, bias_of(&Ly->fc1), F);
    epi(&e, 1, N, c->activation == S2S_ACT_GELU ? ACT_GELU : ACT_RELU);
    gemm(s->f, N, F, &Ly->fc2, s->y, D);
    pd->y = s->y; pd->b = bias_of(&Ly->fc2);
}

/* Large path: decoder layer l for N rows (t = s->t, d_map the uploaded row map) */
static void layer_big(cstate *s, int l, int N, const int32_t *d_map, pending *pd) {
    const s2s_model *m = s->m;
    const s2s_config *c = &m->cfg;
    const s2s_dec_layer *Ly = &m->dec[l];
    const int D = c->d_model, t = s->t;
    rowln(s->x, pd->y, pd->b, s->h, &Ly->ln1, N, D);
    pd->y = pd->b = nullptr;
    if (s->kind == S2S_DEC_TRANSFORMER) {
        /* q (its bias is added by the attention), k and v (+ biases, into the cache at t) */
        const long long row = (long long)s->ms * D; /* cache floats between rows */
        gemm(s->h, N, D, &Ly->sq, s->q, D);
        gemm(s->h, N, D, &Ly->sk, s->y, D);
        gemm(s->h, N, D, &Ly->sv, s->a, D);
        const EpiJob e[2] = {epijob(s->y, D, s->kc[l] + (size_t)t * D, row, bias_of(&Ly->sk), D),
                             epijob(s->a, D, s->vc[l] + (size_t)t * D, row, bias_of(&Ly->sv), D)};
        epi(e, 2, N, ACT_NONE);
        attend(s, l, true, N, bias_of(&Ly->sq));
        gemm(s->a, N, D, &Ly->so, s->y, D);
        pd->y = s->y; pd->b = bias_of(&Ly->so);
        cross_and_ffn_big(s, l, N, 1, pd);
        return;
    }
    const int G = s->G;
    gemm(s->h, N, D, &Ly->rx, s->xp, G * D); /* its bias is added by the cell kernels */
    const size_t n = (size_t)N * D;
    const unsigned blocks = (unsigned)((n + EW_THREADS - 1) / EW_THREADS);
    if (s->kind == S2S_DEC_SSRU) {
        ssru_kernel<<<blocks, EW_THREADS>>>(s->x, s->spare_h, s->xp, bias_of(&Ly->rx), s->hs[l], d_map, N, D);
    } else {
        /* the recurrent projection of the last step's state rows (0 before the first step) */
        if (t > 0) gemm(s->hs[l], s->Nlast, D, &Ly->rh, s->hp, G * D);
        const float *hp = t > 0 ? s->hp : nullptr;
        CellParams P;
        P.x = s->x; P.h_new = s->spare_h; P.c_new = s->spare_c;
        P.h_prev = s->hs[l]; P.c_prev = s->cs[l]; P.xp = s->xp;
        P.wh = Ly->rh.w->dev_data; P.bh = bias_of(&Ly->rh);
        P.map = d_map; P.N = N; P.D = D;
        if (G == 3) cellbig_kernel<3><<<blocks, EW_THREADS>>>(P, hp, bias_of(&Ly->rx));
        else cellbig_kernel<4><<<blocks, EW_THREADS>>>(P, hp, bias_of(&Ly->rx));
        if (s->cs[l]) swapf(&s->cs[l], &s->spare_c);
    }
    swapf(&s->hs[l], &s->spare_h);
    cross_and_ffn_big(s, l, N, c->dec_ffn, pd);
}

/* Queue one step up to the logits [N, V] in s->logits (nothing is waited for). */
static void forward(cstate *s, const int32_t *tokens, int N) {
    const s2s_model *m = s->m;
    const s2s_config *c = &m->cfg;
    const int D = c->d_model, V = c->tgt_vocab, t = s->t;
    S2S_ASSERT(N == s->N && N > 0 && t < s->ms && t < c->max_len);
    /* one upload: tokens, pending row map, row -> sentence */
    memcpy(s->h_ctrl, tokens, (size_t)N * sizeof(int32_t));
    memcpy(s->h_ctrl + N, s->map, (size_t)N * sizeof(int32_t));
    memcpy(s->h_ctrl + 2 * N, s->sent, (size_t)N * sizeof(int32_t));
    CK(cudaMemcpyAsync(s->d_ctrl, s->h_ctrl, (size_t)3 * N * sizeof(int32_t), cudaMemcpyHostToDevice, 0));
    const int32_t *d_tok = s->d_ctrl, *d_map = s->d_ctrl + N;
    s->d_sent = s->d_ctrl + 2 * N;
    const int tf = s->kind == S2S_DEC_TRANSFORMER;
    embed_kernel<<<N, 128>>>(s->x, m->tgt_emb->dev_data, m->dev_pe + (size_t)t * D, sqrtf((float)D), d_tok,
                             d_map, tf ? s->idx[0] : nullptr, tf ? s->idx[1] : nullptr, t, s->ms, D);
    if (tf) { int32_t *i0 = s->idx[0]; s->idx[0] = s->idx[1]; s->idx[1] = i0; }
    if (N >= s->gemm_rows) { /* large path: GEMMs (see the top) */
        pending pd = {nullptr, nullptr};
        for (int l = 0; l < c->dec_layers; l++) layer_big(s, l, N, d_map, &pd);
        /* final LayerNorm (after the last residual) + tied output projection */
        rowln(s->x, pd.y, pd.b, s->h, &m->dec_ln, N, D);
        s2s_kcu_linear_fwd(s->logits, s->h, m->tgt_emb->dev_data, nullptr, N, D, V);
        CK(cudaGetLastError());
        return;
    }
    const size_t row = (size_t)s->ms * D; /* cache floats between rows */
    for (int l = 0; l < c->dec_layers; l++) {
        const s2s_dec_layer *Ly = &m->dec[l];
        if (tf) {
            /* LN1 + q, k, v (k, v straight into the cache at position t) */
            LinJob j[3] = {job(&Ly->sq, s->q, (size_t)D, D), job(&Ly->sk, s->kc[l] + (size_t)t * D, row, D),
                           job(&Ly->sv, s->vc[l] + (size_t)t * D, row, D)};
            lin(s->x, (size_t)D, N, D, Ly->ln1.w->dev_data, Ly->ln1.b->dev_data, ACT_NONE, 0, j, 3);
            attend(s, l, true, N, nullptr);
            LinJob o = job(&Ly->so, s->x, (size_t)D, D);
            lin(s->a, (size_t)D, N, D, nullptr, nullptr, ACT_NONE, 1, &o, 1);
            cross_and_ffn(s, l, N, 1);
            continue;
        }
        /* recurrent sublayer: LN1 + input projection of all gates, then one cell step */
        const int G = s->G;
        LinJob j = job(&Ly->rx, s->xp, (size_t)G * D, G * D);
        lin(s->x, (size_t)D, N, D, Ly->ln1.w->dev_data, Ly->ln1.b->dev_data, ACT_NONE, 0, &j, 1);
        if (s->kind == S2S_DEC_SSRU) {
            const size_t n = (size_t)N * D;
            ssru_kernel<<<(unsigned)((n + 255) / 256), 256>>>(s->x, s->spare_h, s->xp, nullptr, s->hs[l], d_map,
                                                              N, D);
        } else {
            CellParams P;
            P.x = s->x; P.h_new = s->spare_h; P.c_new = s->spare_c;
            P.h_prev = s->hs[l]; P.c_prev = s->cs[l]; P.xp = s->xp;
            P.wh = Ly->rh.w->dev_data; P.bh = Ly->rh.b ? Ly->rh.b->dev_data : nullptr;
            P.map = d_map; P.N = N; P.D = D;
            if (G == 3) cell<3>(P); else cell<4>(P);
            if (s->cs[l]) swapf(&s->cs[l], &s->spare_c);
        }
        swapf(&s->hs[l], &s->spare_h);
        cross_and_ffn(s, l, N, c->dec_ffn);
    }
    /* final LayerNorm + tied output projection */
    LinJob o;
    o.w = m->tgt_emb->dev_data; o.b = nullptr; o.y = s->logits; o.ys = V; o.M = V;
    lin(s->x, (size_t)D, N, D, m->dec_ln.w->dev_data, m->dec_ln.b->dev_data, ACT_NONE, 0, &o, 1);
    CK(cudaGetLastError());
}

/* after the step's download: the state rows are in order again */
static void step_done(cstate *s, int N) {
    for (int r = 0; r < N; r++) s->map[r] = r;
    s->Nlast = N;
    s->t++;
}

static void c_step(void *st, float *logits, const int32_t *tokens, int N) {
    cstate *s = (cstate *)st;
    forward(s, tokens, N);
    const size_t lb = (size_t)N * s->m->cfg.tgt_vocab * sizeof(float);
    CK(cudaMemcpyAsync(s->h_logits, s->logits, lb, cudaMemcpyDeviceToHost, 0));
    CK(cudaStreamSynchronize(0));
    memcpy(logits, s->h_logits, lb);
    step_done(s, N);
}

/* A step (as ops->step: same tokens, same state update) whose selection from the logits
 * runs on the device; only its result comes back (search.c, for models on the GPU):
 *   k <= 0: tok[r] = the first index of the maximum of row r's logits (search.c's
 *           greedy argmax), r < N; val is not used (may be NULL). Returns 1.
 *   k >= 1: with kk = min(k, V) (k <= 2R of start()): for each row r, the kk tokens with
 *           the largest log-softmax values (computed as s2s_k_logsoftmax_fwd; ties to
 *           the lower token), in increasing token order: tok[r * kk + i] and their
 *           log-probabilities val[r * kk + i], i < kk. Returns kk. */
extern "C" int s2s_dec_cuda_step_top(void *st, const int32_t *tokens, int N, int k, int32_t *tok, float *val) {
    cstate *s = (cstate *)st;
    const int V = s->m->cfg.tgt_vocab;
    const int kk = k <= 0 ? 1 : k < V ? k : V;
    S2S_ASSERT(kk <= s->kcap && (k <= 0 || val));
    forward(s, tokens, N);
    int32_t *dtok = s->d_top;
    float *dval = (float *)(s->d_top + (size_t)N * kk); /* right after: one download */
    if (k <= 0) argmax_kernel<<<N, TOP_THREADS>>>(dtok, s->logits, V);
    else topk_kernel<<<N, TOP_THREADS, (size_t)kk * 8>>>(dtok, dval, s->logits, V, kk);
    CK(cudaGetLastError());
    const size_t n = (size_t)N * kk, words = k <= 0 ? n : 2 * n;
    CK(cudaMemcpyAsync(s->h_top, s->d_top, words * sizeof(int32_t), cudaMemcpyDeviceToHost, 0));
    CK(cudaStreamSynchronize(0));
    memcpy(tok, s->h_top, n * sizeof(int32_t));
    if (k > 0) memcpy(val, s->h_top + n, n * sizeof(float));
    step_done(s, N);
    return kk;
}

static void c_select(void *st, const int32_t *rows, int N_new) {
    cstate *s = (cstate *)st;
    S2S_ASSERT(N_new >= 0 && N_new <= s->Nmax);
    for (int i = 0; i < N_new; i++) S2S_ASSERT(rows[i] >= 0 && rows[i] < s->N);
    /* compose: the data moves lazily, at the next step (see the top of this file) */
    for (int i = 0; i < N_new; i++) s->tmp[i] = s->map[rows[i]];
    for (int i = 0; i < N_new; i++) s->map[i] = s->tmp[i];
    for (int i = 0; i < N_new; i++) s->tmp[i] = s->sent[rows[i]];
    for (int i = 0; i < N_new; i++) s->sent[i] = s->tmp[i];
    s->N = N_new;
}

static void c_free(void *st) {
    cstate *s = (cstate *)st;
    if (!s) return;
    CK(cudaStreamSynchronize(0)); /* nothing queued may still use the blocks we hand back */
    dev_give(s->dblock, s->dbytes);
    host_give(s->hblock, s->hbytes, s->hpinned);
    free(s->map);
    free(s->ptrs);
    free(s);
}

static size_t c_state_bytes(const s2s_model *m, int Ts, int t) {
    const s2s_config *c = &m->cfg;
    const size_t D = (size_t)c->d_model, L = (size_t)c->dec_layers;
    const int kind = s2s_config_dec_kind(c);
    if (kind == S2S_DEC_TRANSFORMER) /* self K/V (2 L t D) + cross K/V (2 L Ts D) + t cache indices */
        return sizeof(float) * 2 * L * D * (size_t)(t + Ts) + sizeof(int32_t) * (size_t)t;
    const size_t S = kind == S2S_DEC_LSTM ? 2 : 1;
    return sizeof(float) * L * D * (S + 2 * (size_t)Ts);
}

/* device block + pinned host block + host bookkeeping */
static size_t c_start_bytes(const s2s_model *m, int B, int Ts, int R, int max_steps) {
    cstate dummy;
    memset(&dummy, 0, sizeof dummy);
    size_t db, hb;
    plan(m, B, Ts, R, max_steps, &dummy, nullptr, nullptr, &db, &hb);
    return db + hb + sizeof(cstate) + (size_t)B * R * 3 * sizeof(int32_t) +
           6 * (size_t)m->cfg.dec_layers * sizeof(float *);
}

extern "C" {
extern const s2s_decoder_ops s2s_transformer_decoder_cuda;
extern const s2s_decoder_ops s2s_ssru_decoder_cuda;
extern const s2s_decoder_ops s2s_gru_decoder_cuda;
extern const s2s_decoder_ops s2s_lstm_decoder_cuda;
const s2s_decoder_ops s2s_transformer_decoder_cuda = {
    "transformer", c_start, c_step, c_select, c_free, c_state_bytes, c_start_bytes, NULL, /* no shortlist */
};
const s2s_decoder_ops s2s_ssru_decoder_cuda = {
    "ssru", c_start, c_step, c_select, c_free, c_state_bytes, c_start_bytes, NULL, /* no shortlist */
};
const s2s_decoder_ops s2s_gru_decoder_cuda = {
    "gru", c_start, c_step, c_select, c_free, c_state_bytes, c_start_bytes, NULL, /* no shortlist */
};
const s2s_decoder_ops s2s_lstm_decoder_cuda = {
    "lstm", c_start, c_step, c_select, c_free, c_state_bytes, c_start_bytes, NULL, /* no shortlist */
};
}

#endif /* S2S_CUDA */
