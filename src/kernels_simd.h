/* kernels_simd.h - branch-free scalar math that `omp simd` loops vectorise:
 * FMA, a bit-mask select and a Cephes-style exp. Shared by the fast kernels
 * (kernels_cpu.c, kernels_rnn.c). These are static inline on purpose (an
 * exception to "no bodies in headers"): an out-of-line call would stop the
 * loops that use them from vectorising. Internal header, not installed. */
#ifndef S2S_KERNELS_SIMD_H
#define S2S_KERNELS_SIMD_H

#include <math.h>
#include <stdint.h>
#include <string.h>

/* a*b + c, fused to one instruction where the CPU has FMA: GCC does not contract
 * a*b + c by itself in ISO C mode (-std=c11 implies -ffp-contract=off). */
#ifdef __FMA__
#define FMA(a, b, c) fmaf((a), (b), (c))
#else
#define FMA(a, b, c) ((a) * (b) + (c))
#endif

/* c ? a : b, lane-wise, by bit masks. GCC (under the default -ftrapping-math) will
 * not if-convert a `?:` whose operands it has sunk into a branch, so loops using it
 * stay scalar on AVX2; this select keeps every operand unconditional. */
static inline float fsel(int c, float a, float b) {
    uint32_t ab, bb, r, m = -(uint32_t)(c != 0);
    memcpy(&ab, &a, sizeof ab);
    memcpy(&bb, &b, sizeof bb);
    r = (ab & m) | (bb & ~m);
    float f;
    memcpy(&f, &r, sizeof f);
    return f;
}

/* exp(x) for x <= 88 (softmax-style arguments), within ~2 ulp of expf; 0 for
 * x < -87 (expf would give < 1.7e-38, near the subnormal range); NaN in gives NaN out.
 * Cephes' expf: x = n ln2 + r with |r| <= ln2/2, a polynomial for exp(r), 2^n built in
 * the exponent bits. Branch-free, so `omp simd` loops calling it vectorise. The clamp
 * at -87 (not ln(FLT_MIN) = -87.34) keeps even the discarded lanes from producing
 * subnormals, which cost ~100 cycles each on x86 (GELU of large |x| hits this). */
static inline float fexp(float x) {
    const float lo = -87.0f, hi = 88.0f;
    const float magic = 12582912.0f; /* 1.5 * 2^23: adding it rounds to an integer */
    float xc = fsel(x < lo, lo, x); /* clamped, so 2^n below stays a normal number */
    xc = fsel(xc > hi, hi, xc);
    float t = FMA(xc, 1.44269504088896341f, magic);
    float n = t - magic;
    float r = FMA(n, -0.693359375f, xc);
    r = FMA(n, 2.12194440e-4f, r);
    float pp = 1.9875691500e-4f;
    pp = FMA(pp, r, 1.3981999507e-3f);
    pp = FMA(pp, r, 8.3334519073e-3f);
    pp = FMA(pp, r, 4.1665795894e-2f);
    pp = FMA(pp, r, 1.6666665459e-1f);
    pp = FMA(pp, r, 5.0000001201e-1f);
    float e = FMA(pp, r * r, r) + 1.0f;
    uint32_t tb, mb;
    memcpy(&tb, &t, sizeof tb);
    memcpy(&mb, &magic, sizeof mb);
    uint32_t sb = (tb - mb + 127u) << 23; /* 2^n */
    float s;
    memcpy(&s, &sb, sizeof s);
    return fsel(x < lo, 0.0f, e * s);
}

#endif
