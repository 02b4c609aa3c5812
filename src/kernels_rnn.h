/* kernels_rnn.h - the recurrent cells of the hybrid decoders (SSRU, GRU, LSTM):
 * a scan over T time steps, forward and backward, for training (graph.c) and
 * one step at a time for decoding (decoder_rnn.c, T = 1 with the carried state).
 *
 * Same conventions as kernels.h: two implementations with identical signatures,
 * s2s_kref_* (plain loops, double accumulation; kernels_rnn.c) and s2s_k_* (fast:
 * sgemm for the recurrent matmul of each step over the whole batch, OpenMP over
 * B*D for the gates; kernels_rnn.c); outputs first, then inputs, then sizes;
 * backward kernels ACCUMULATE (+=) into the gradient buffers they are given
 * (NULL = not needed). tests/test_rnn.c checks fast against reference and every
 * reference backward against finite differences.
 *
 * The input projections of every time step are computed beforehand by ONE linear
 * layer (xp = x Wx^T + bx over all B*T rows); the kernels only run the part that
 * must be sequential. Gate order in xp, wh and bh follows torch.nn.GRU/LSTM:
 *   SSRU (G = 2): xp = [f | w]          f_t = sigmoid(xf_t)
 *                                        c_t = f_t * c_{t-1} + (1 - f_t) * xw_t
 *                                        h_t = relu(c_t)
 *   GRU  (G = 3): xp = [r | z | n],  hp = h_{t-1} Wh^T + bh = [hr | hz | hn]
 *                 r = sigmoid(xr + hr), z = sigmoid(xz + hz), n = tanh(xn + r * hn)
 *                 h_t = (1 - z) * n + z * h_{t-1}
 *   LSTM (G = 4): xp = [i | f | g | o],  pre = xp + h_{t-1} Wh^T + bh
 *                 i, f, o = sigmoid(.), g = tanh(.)
 *                 c_t = f * c_{t-1} + i * g,  h_t = o * tanh(c_t)
 * Sizes: B rows (sentences), T time steps, D state width; xp [B, T, G*D] with the
 * gates of row b, step t at xp[(b*T + t)*G*D + k*D + d]. The initial state (h0,
 * c0 [B, D]) may be NULL (zeros); no gradient flows into it. */
#ifndef S2S_KERNELS_RNN_H
#define S2S_KERNELS_RNN_H

#include <stddef.h>

/* Floats of scratch the GRU/LSTM backward kernels need (argument ws). */
#define S2S_RNN_BWD_WS(G, B, T, D) \
    ((size_t)(B) * (size_t)(T) * ((size_t)(G) + 1) * (size_t)(D) + 2 * (size_t)(B) * (size_t)(D))

#define S2S_RNN_KERNEL_DECLS(P)                                                            \
    /* h[B,T,D], c[B,T,D] (cell, saved for bwd); xp[B,T,2D]; c0[B,D] or NULL */            \
    void P##ssru_fwd(float *h, float *c, const float *xp, const float *c0, int B, int T,  \
                     int D);                                                               \
    /* dxp[B,T,2D] += d/dxp of sum(dh * h) */                                             \
    void P##ssru_bwd(float *dxp, const float *dh, const float *xp, const float *c,        \
                     const float *c0, int B, int T, int D);                                \
    /* h[B,T,D]; gates[B,T,4D] = (r, z, n, hn) saved for bwd; xp[B,T,3D]; wh[3D,D];       \
     * bh[3D] or NULL; h0[B,D] or NULL */                                                  \
    void P##gru_fwd(float *h, float *gates, const float *xp, const float *wh,             \
                    const float *bh, const float *h0, int B, int T, int D);                \
    /* dxp[B,T,3D], dwh[3D,D], dbh[3D] (+=, each may be NULL); ws: scratch of             \
     * S2S_RNN_BWD_WS(3, B, T, D) floats; dh, h [B,T,D] (h: the forward output) */         \
    void P##gru_bwd(float *dxp, float *dwh, float *dbh, float *ws, const float *dh,       \
                    const float *h, const float *gates, const float *wh, const float *h0, \
                    int B, int T, int D);                                                  \
    /* h[B,T,D], c[B,T,D]; gates[B,T,4D] = (i, f, g, o) after activation, saved;         \
     * xp[B,T,4D]; wh[4D,D]; bh[4D] or NULL; h0, c0 [B,D] or NULL */                       \
    void P##lstm_fwd(float *h, float *c, float *gates, const float *xp, const float *wh,  \
                     const float *bh, const float *h0, const float *c0, int B, int T,     \
                     int D);                                                               \
    /* ws: S2S_RNN_BWD_WS(4, B, T, D) floats */                                            \
    void P##lstm_bwd(float *dxp, float *dwh, float *dbh, float *ws, const float *dh,      \
                     const float *h, const float *c, const float *gates, const float *wh, \
                     const float *h0, const float *c0, int B, int T, int D);

S2S_RNN_KERNEL_DECLS(s2s_kref_)
S2S_RNN_KERNEL_DECLS(s2s_k_)

#endif
