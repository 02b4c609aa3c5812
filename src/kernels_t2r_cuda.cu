/* kernels_t2r_cuda.cu - CUDA kernels of the T2R parallel form (kernels_t2r_cuda.h):
 * s2s_kcu_t2r_fwd and s2s_kcu_t2r_bwd, the semantics of s2s_k_t2r_fwd/bwd exactly
 * (kernels_t2r.h: learned relu map or, W == NULL, the fixed elu+1 map).
 *
 * Layout of the work (per (b, h) the visible keys of query i are a prefix j < lim(i),
 * lim non-decreasing, so everything is a running prefix sum, as in the CPU fast path):
 *   phi         one thread per feature value: pq [B,H,Tq,kf] = phi(s q), pk = phi(k).
 *   fwd scan    one block per (b, h) holding the state S [kf, d+1] (column d is z,
 *               i.e. v extended by a constant 1) in shared memory (global scratch when
 *               kf (d+1) floats exceed 48 KiB); thread c owns column c: it adds the
 *               newly visible keys, then reads phi(q_i)^T S[:, c]; column d's value is
 *               the denominator, broadcast through shared memory.
 *   bwd scan    the same block per (b, h): a forward scan over queries rebuilds S and
 *               gives dN_i = dout_i / den_i (with dD_i in column d), saved to scratch,
 *               and g_q[i, f] = phi'(.) * S[f, :] . [dN_i, dD_i] (thread per feature f);
 *               then a backward scan over keys accumulates R = sum_{i sees j}
 *               phi(q_i) [dN_i, dD_i]^T and gives g_k[j, f] = phi'(.) * R[f, :] . [v_j, 1]
 *               and dv_j += R[:, :d]^T phi(k_j).
 *   dx          one thread per element: dq += s W_h^T g_q (elu: s g_q), dk likewise.
 *   dW, db      deterministic two-pass column sums: blocks of (h, f, row chunk) write
 *               partial sums to scratch, one thread per (h, f, e) adds them up.
 * Everything on the legacy default stream, no host synchronisation except when the
 * internal scratch grows (cudaFree/cudaMalloc). fp32 throughout. */
#include "kernels_t2r_cuda.h"

#include <cuda_runtime.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>

#ifdef S2S_CUDA

extern "C" {
#include "kernels_t2r.h" /* S2S_T2R_EPS */
}

#define T2R_SMEM_MAX (48 * 1024) /* shared memory per block without the opt-in */
#define T2R_EW 256               /* threads per block of the elementwise kernels */
#define T2R_NC 16                /* row chunks of the dW/db partial sums */

static void t2r_fail(const char *what, const char *msg, const char *file, int line) {
    fprintf(stderr, "s2s: CUDA error: %s: %s (%s:%d)\n", what, msg, file, line);
    exit(1);
}

#define T2R_CHECK(call)                                                                   \
    do {                                                                                  \
        cudaError_t e_ = (call);                                                          \
        if (e_ != cudaSuccess) t2r_fail(#call, cudaGetErrorString(e_), __FILE__, __LINE__); \
    } while (0)

#define T2R_LAUNCH(kernel, grid, block, smem, ...)                                        \
    do {                                                                                  \
        kernel<<<(grid), (block), (smem)>>>(__VA_ARGS__);                                 \
        T2R_CHECK(cudaGetLastError());                                                    \
    } while (0)

/* the scratch of these kernels (grows, never shrinks; one host thread drives the GPU) */
static void *g_ws;
static size_t g_ws_bytes;

static float *workspace(size_t floats) {
    size_t bytes = (floats ? floats : 1) * sizeof(float);
    if (bytes > g_ws_bytes) {
        size_t nb = g_ws_bytes + g_ws_bytes / 2;
        if (nb < bytes) nb = bytes;
        if (g_ws) T2R_CHECK(cudaFree(g_ws));
        T2R_CHECK(cudaMalloc(&g_ws, nb));
        g_ws_bytes = nb;
    }
    return (float *)g_ws;
}

static unsigned ew_blocks(size_t n) {
    size_t b = (n + T2R_EW - 1) / T2R_EW;
    return (unsigned)(b > (1u << 20) ? (1u << 20) : b);
}

/* threads of a per-(b, h) block: a warp multiple covering n columns */
static int block_threads(int n) { return ((n + 31) / 32) * 32; }

/* ------------------------------------------------------------------------------------
 * device helpers (kernels_t2r.c's keys_of / vis_lim / DPHI)
 * ---------------------------------------------------------------------------------- */

__device__ static inline int d_keys_of(const int32_t *kv_len, int b, int Tk) {
    if (!kv_len) return Tk;
    int L = kv_len[b];
    return L < 0 ? 0 : L > Tk ? Tk : L;
}

__device__ static inline int d_vis_lim(int i, int L, int causal, int Tq, int Tk) {
    int lim = L;
    if (causal && i + Tk - Tq + 1 < lim) lim = i + Tk - Tq + 1;
    return lim < 0 ? 0 : lim;
}

__device__ static inline float d_dphi(float p, int elu) {
    return elu ? (p > 1.0f ? 1.0f : p) : (p > 0.0f ? 1.0f : 0.0f);
}

/* sum of x over the block (blockDim.x a multiple of 32, at most 1024); red: 32 floats
 * of shared memory, not reused by the caller before the next __syncthreads() pair */
__device__ static float block_sum(float x, float *red) {
    for (int o = 16; o > 0; o >>= 1) x += __shfl_down_sync(0xffffffffu, x, o);
    int w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    if ((threadIdx.x & 31) == 0) red[w] = x;
    __syncthreads();
    float t = 0.0f;
    for (int i = 0; i < nw; i++) t += red[i];
    return t;
}

/* ------------------------------------------------------------------------------------
 * kernels
 * ---------------------------------------------------------------------------------- */

/* p [B,H,T,kf] = phi(scale x), x [B,T,H*d]; relu(b + scale (W x)) or (W NULL) elu(scale x)+1 */
__global__ static void k_t2r_phi(float *p, const float *x, const float *W, const float *b, float scale,
                                 int B, int H, int T, int d, int kf) {
    size_t n = (size_t)B * H * T * kf;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        int f = (int)(i % kf);
        size_t r = i / kf;
        int t = (int)(r % T);
        r /= T;
        int h = (int)(r % H), bb = (int)(r / H);
        const float *xt = x + ((size_t)bb * T + t) * H * d + (size_t)h * d;
        float val;
        if (!W) {
            float u = scale * xt[f];
            val = u > 0.0f ? u + 1.0f : expf(u);
        } else {
            const float *w = W + ((size_t)h * kf + f) * d;
            float s = 0.0f;
            for (int e = 0; e < d; e++) s += w[e] * xt[e];
            s = b[(size_t)h * kf + f] + scale * s;
            val = s > 0.0f ? s : 0.0f;
        }
        p[i] = val;
    }
}

/* S[:, c] += sum_{j in [j0, j1)} pk_j [v_j, 1][c] for the calling thread's column c
 * (C = d + 1; v [B,Tk,H*d], head h) */
__device__ static inline void add_keys(float *S, int c, int C, const float *pkh, const float *v, int bb,
                                       int h, int H, int Tk, int d, int kf, int j0, int j1) {
    for (int j = j0; j < j1; j++) {
        float vc = c < d ? v[((size_t)bb * Tk + j) * H * d + (size_t)h * d + c] : 1.0f;
        const float *pj = pkh + (size_t)j * kf;
        for (int f = 0; f < kf; f++) S[(size_t)f * C + c] += pj[f] * vc;
    }
}

/* one block per (b, h) = blockIdx.x.
 * out [B,Tq,H*d], den [B,H,Tq]; gS: global state [B*H, kf, d+1] or NULL (shared) */
__global__ static void k_t2r_fwd_scan(float *out, float *den, const float *pq, const float *pk,
                                      const float *v, const int32_t *kv_len, int causal, int H, int Tq,
                                      int Tk, int d, int kf, float *gS) {
    extern __shared__ float sh[];
    __shared__ float sden;
    int bh = blockIdx.x, bb = bh / H, h = bh % H, c = threadIdx.x, C = d + 1;
    size_t HD = (size_t)H * d;
    float *S = gS ? gS + (size_t)bh * kf * C : sh;
    for (size_t i = threadIdx.x; i < (size_t)kf * C; i += blockDim.x) S[i] = 0.0f;
    __syncthreads();
    const float *pqh = pq + (size_t)bh * Tq * kf, *pkh = pk + (size_t)bh * Tk * kf;
    int L = d_keys_of(kv_len, bb, Tk), pos = 0;
    for (int i = 0; i < Tq; i++) {
        int lim = d_vis_lim(i, L, causal, Tq, Tk);
        float acc = 0.0f;
        if (c < C) {
            if (lim > pos) add_keys(S, c, C, pkh, v, bb, h, H, Tk, d, kf, pos, lim);
            const float *pi = pqh + (size_t)i * kf;
            for (int f = 0; f < kf; f++) acc += pi[f] * S[(size_t)f * C + c];
            if (c == d) sden = acc;
        }
        if (lim > pos) pos = lim;
        __syncthreads();
        float dn = sden, dc = dn > S2S_T2R_EPS ? dn : S2S_T2R_EPS;
        if (c < d) out[((size_t)bb * Tq + i) * HD + (size_t)h * d + c] = acc * (1.0f / dc);
        if (c == d) den[(size_t)bh * Tq + i] = dn;
        __syncthreads();
    }
}

/* one block per (b, h); gq [B,H,Tq,kf], gk [B,H,Tk,kf] (overwritten: the gradients at the
 * pre-activations), dv (+=, may be NULL), dN [B*H, Tq, d+1] scratch; gS as the forward */
__global__ static void k_t2r_bwd_scan(float *gq, float *gk, float *dv, float *dN, const float *dout,
                                      const float *out, const float *pq, const float *pk, const float *den,
                                      const float *v, const int32_t *kv_len, int causal, int elu, int H,
                                      int Tq, int Tk, int d, int kf, float *gS) {
    extern __shared__ float sh[];
    int bh = blockIdx.x, bb = bh / H, h = bh % H, c = threadIdx.x, C = d + 1, nt = blockDim.x;
    size_t HD = (size_t)H * d;
    float *vec = sh, *red = sh + C, *S = gS ? gS + (size_t)bh * kf * C : sh + C + 32;
    for (size_t i = threadIdx.x; i < (size_t)kf * C; i += nt) S[i] = 0.0f;
    __syncthreads();
    const float *pqh = pq + (size_t)bh * Tq * kf, *pkh = pk + (size_t)bh * Tk * kf;
    float *dNh = dN + (size_t)bh * Tq * C;
    int L = d_keys_of(kv_len, bb, Tk), pos = 0;
    /* forward scan over queries */
    for (int i = 0; i < Tq; i++) {
        int lim = d_vis_lim(i, L, causal, Tq, Tk);
        if (c < C && lim > pos) add_keys(S, c, C, pkh, v, bb, h, H, Tk, d, kf, pos, lim);
        if (lim > pos) pos = lim;
        size_t o = ((size_t)bb * Tq + i) * HD + (size_t)h * d;
        float go = c < d ? dout[o + c] : 0.0f;
        float god = block_sum(c < d ? go * out[o + c] : 0.0f, red);
        float dn = den[(size_t)bh * Tq + i], dc = dn > S2S_T2R_EPS ? dn : S2S_T2R_EPS, inv = 1.0f / dc;
        if (c < C) {
            float val = c < d ? go * inv : (dn > S2S_T2R_EPS ? -god * inv : 0.0f);
            vec[c] = val;
            dNh[(size_t)i * C + c] = val;
        }
        __syncthreads();
        for (int f = c; f < kf; f += nt) {
            const float *Sf = S + (size_t)f * C;
            float s = vec[d] * Sf[d];
            for (int e = 0; e < d; e++) s += Sf[e] * vec[e];
            size_t gi = ((size_t)bh * Tq + i) * kf + f;
            gq[gi] = d_dphi(pq[gi], elu) * s;
        }
        __syncthreads();
    }
    /* backward scan over keys: R (in S) = sum over the queries i >= ip that see key j */
    for (size_t i = threadIdx.x; i < (size_t)kf * C; i += nt) S[i] = 0.0f;
    __syncthreads();
    int ip = Tq;
    for (int j = Tk - 1; j >= 0; j--) {
        while (ip > 0 && d_vis_lim(ip - 1, L, causal, Tq, Tk) > j) {
            ip--;
            if (c < C) {
                float x = dNh[(size_t)ip * C + c];
                const float *pi = pqh + (size_t)ip * kf;
                for (int f = 0; f < kf; f++) S[(size_t)f * C + c] += pi[f] * x;
            }
        }
        if (c < C) vec[c] = c < d ? v[((size_t)bb * Tk + j) * HD + (size_t)h * d + c] : 1.0f;
        __syncthreads();
        const float *pj = pkh + (size_t)j * kf;
        for (int f = c; f < kf; f += nt) {
            const float *Rf = S + (size_t)f * C;
            float s = Rf[d];
            for (int e = 0; e < d; e++) s += Rf[e] * vec[e];
            gk[((size_t)bh * Tk + j) * kf + f] = d_dphi(pj[f], elu) * s;
        }
        if (dv && c < d) {
            float acc = 0.0f;
            for (int f = 0; f < kf; f++) acc += pj[f] * S[(size_t)f * C + c];
            dv[((size_t)bb * Tk + j) * HD + (size_t)h * d + c] += acc;
        }
        __syncthreads();
    }
}

/* dx [B,T,H*d] += scale * W_h^T g (W NULL: scale * g); g [B,H,T,kf] */
__global__ static void k_t2r_dx(float *dx, const float *g, const float *W, float scale, int B, int H, int T,
                                int d, int kf) {
    size_t n = (size_t)B * T * H * d;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        int e = (int)(i % d);
        size_t r = i / d;
        int h = (int)(r % H);
        r /= H;
        int t = (int)(r % T), bb = (int)(r / T);
        const float *gr = g + (((size_t)bb * H + h) * T + t) * kf;
        float s;
        if (!W) {
            s = gr[e];
        } else {
            s = 0.0f;
            const float *w = W + (size_t)h * kf * d + e;
            for (int f = 0; f < kf; f++) s += gr[f] * w[(size_t)f * d];
        }
        dx[i] += scale * s;
    }
}

/* partial sums over row chunk blockIdx.y (of gridDim.y) for (h, f) = blockIdx.x:
 * part [NC, H*kf, d+1]: columns e < d: sum g s x_e; column d: sum g */
__global__ static void k_t2r_dw_part(float *part, const float *gq, const float *gk, const float *q,
                                     const float *k, float sq, int B, int H, int Tq, int Tk, int d, int kf) {
    int hf = blockIdx.x, h = hf / kf, f = hf % kf, ch = blockIdx.y, NC = gridDim.y, e = threadIdx.x;
    size_t HD = (size_t)H * d;
    long nq = (long)B * Tq, nr = nq + (long)B * Tk;
    float acc = 0.0f, gs = 0.0f;
    for (long r = ch; r < nr; r += NC) {
        int side = r >= nq, T = side ? Tk : Tq;
        long rr = side ? r - nq : r;
        int bb = (int)(rr / T), t = (int)(rr % T);
        float gt = (side ? gk : gq)[(((size_t)bb * H + h) * T + t) * kf + f];
        if (gt == 0.0f) continue;
        gs += gt;
        if (e < d) acc += (side ? 1.0f : sq) * gt * (side ? k : q)[((size_t)bb * T + t) * HD + (size_t)h * d + e];
    }
    float *p = part + ((size_t)ch * H * kf + hf) * (d + 1);
    if (e < d) p[e] = acc;
    if (e == 0) p[d] = gs;
}

/* dW [H*kf, d] += sum over chunks (NULL: skipped), db [H*kf] likewise */
__global__ static void k_t2r_dw_fin(float *dW, float *db, const float *part, int NC, int HK, int d) {
    size_t n = (size_t)HK * (d + 1);
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        int e = (int)(i % (d + 1));
        size_t hf = i / (d + 1);
        float s = 0.0f;
        for (int ch = 0; ch < NC; ch++) s += part[(size_t)ch * n + i];
        if (e < d) { if (dW) dW[hf * d + e] += s; }
        else if (db) db[hf] += s;
    }
}

/* ------------------------------------------------------------------------------------
 * entry points
 * ---------------------------------------------------------------------------------- */

static void check_sizes(int d, int kf, int W_null) {
    if (d + 1 > 1024) t2r_fail("s2s_kcu_t2r", "head dim over 1023 is not supported", __FILE__, __LINE__);
    if (W_null && kf != d) t2r_fail("s2s_kcu_t2r", "the elu+1 map needs kf == d", __FILE__, __LINE__);
}

static void phi(float *p, const float *x, const float *W, const float *b, float scale, int B, int H, int T,
                int d, int kf) {
    size_t n = (size_t)B * H * T * kf;
    if (n) T2R_LAUNCH(k_t2r_phi, ew_blocks(n), T2R_EW, 0, p, x, W, b, scale, B, H, T, d, kf);
}

extern "C" {

void s2s_kcu_t2r_fwd(float *out, float *pq, float *pk, float *den, const float *q, const float *k,
                     const float *v, const float *W, const float *b, const int32_t *kv_len, int causal, int B,
                     int H, int Tq, int Tk, int d, int kf) {
    if (B <= 0 || H <= 0 || Tq <= 0 || d <= 0) return;
    check_sizes(d, kf, W == NULL);
    float sc = (float)(1.0 / sqrt((double)d));
    phi(pq, q, W, b, sc, B, H, Tq, d, kf);
    phi(pk, k, W, b, 1.0f, B, H, Tk, d, kf);
    int C = d + 1;
    size_t sbytes = (size_t)kf * C * sizeof(float);
    float *gS = NULL;
    if (sbytes > T2R_SMEM_MAX - 64) { gS = workspace((size_t)B * H * kf * C); sbytes = 0; } /* 64: static sden */
    T2R_LAUNCH(k_t2r_fwd_scan, (unsigned)(B * H), block_threads(C), sbytes, out, den, pq, pk, v, kv_len, causal,
               H, Tq, Tk, d, kf, gS);
}

void s2s_kcu_t2r_bwd(float *dq, float *dk, float *dv, float *dW, float *db, const float *dout,
                     const float *out, const float *pq, const float *pk, const float *den, const float *q,
                     const float *k, const float *v, const float *W, const int32_t *kv_len, int causal, int B,
                     int H, int Tq, int Tk, int d, int kf) {
    int elu = W == NULL;
    if (elu) dW = db = NULL;
    if (!dq && !dk && !dv && !dW && !db) return;
    if (B <= 0 || H <= 0 || Tq <= 0 || Tk <= 0 || d <= 0) return;
    check_sizes(d, kf, elu);
    float sc = (float)(1.0 / sqrt((double)d));
    int C = d + 1;
    size_t ngq = (size_t)B * H * Tq * kf, ngk = (size_t)B * H * Tk * kf, ndn = (size_t)B * H * Tq * C;
    size_t sS = (size_t)kf * C * sizeof(float), nS = 0;
    if (sS + (size_t)(C + 32) * sizeof(float) > T2R_SMEM_MAX) { nS = (size_t)B * H * kf * C; sS = 0; }
    size_t npart = (size_t)T2R_NC * H * kf * C;
    float *ws = workspace(ngq + ngk + ndn + nS + npart);
    float *gq = ws, *gk = gq + ngq, *dN = gk + ngk, *gS = nS ? dN + ndn : NULL, *part = dN + ndn + nS;
    T2R_LAUNCH(k_t2r_bwd_scan, (unsigned)(B * H), block_threads(C), sS + (size_t)(C + 32) * sizeof(float), gq,
               gk, dv, dN, dout, out, pq, pk, den, v, kv_len, causal, elu, H, Tq, Tk, d, kf, gS);
    if (dq) T2R_LAUNCH(k_t2r_dx, ew_blocks((size_t)B * Tq * H * d), T2R_EW, 0, dq, gq, W, sc, B, H, Tq, d, kf);
    if (dk) T2R_LAUNCH(k_t2r_dx, ew_blocks((size_t)B * Tk * H * d), T2R_EW, 0, dk, gk, W, 1.0f, B, H, Tk, d, kf);
    if (dW || db) {
        dim3 grid((unsigned)(H * kf), T2R_NC);
        T2R_LAUNCH(k_t2r_dw_part, grid, block_threads(d), 0, part, gq, gk, q, k, sc, B, H, Tq, Tk, d, kf);
        T2R_LAUNCH(k_t2r_dw_fin, ew_blocks((size_t)H * kf * C), T2R_EW, 0, dW, db, part, T2R_NC, H * kf, d);
    }
}

} /* extern "C" */

#endif /* S2S_CUDA */
