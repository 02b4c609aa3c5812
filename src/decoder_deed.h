/* decoder_deed.h - DEED step-level dynamic early exit on the decoder (Tang et al.
 * 2023) for multi-exit Transformer models (cfg.multi_exit, docs/MODEL.md "DEED"), with
 * softmax or T2R decoder attention (cfg.dec_attn).
 *
 * At each decoding step a row (sentence or beam hypothesis) runs decoder layers
 * 0, 1, ... and after layer l computes its exit's confidence (max softmax
 * probability, or the margin between the top two) from a_l(h) @ tgt_emb^T; it stops
 * at the first layer whose confidence reaches the threshold tau, or at the last
 * layer. step() returns, for each row, the logits of the exit where it stopped.
 *
 * Deeper states of earlier positions (states = S2S_EXIT_JIT): when a later step
 * reaches layer l and some earlier positions of the row stopped below l, their
 * missing layer-l states are computed then, batched with the current position, so
 * every key/value in the layer-l cache is a true layer-l state; each (position,
 * layer) is computed once. With T2R attention the layer-l "cache" is the recurrent
 * state S, z of each row: the missing positions are folded into it in position order
 * before the current one, so it equals a full pass's sums over the valid positions.
 * states = S2S_EXIT_COPY is the CALM-style baseline: at exit, each deeper layer's K/V
 * of the position is computed from the exited hidden state (that layer's LN1 applied
 * to it; T2R: folded into the state), and no position is ever recomputed.
 *
 * The state implements decoder.h's step / select / free (s2s_deed_decoder), but is
 * made by s2s_deed_start, which takes the exit options (search.c does this when
 * s2s_search_opts.exit is set). With tau > 1 no row exits early and the outputs
 * are those of the full-depth Transformer (or T2R) decoder. CPU only. */
#ifndef S2S_DECODER_DEED_H
#define S2S_DECODER_DEED_H

#include <stddef.h>
#include <stdint.h>

#include "decoder.h"

struct s2s_model;

enum { S2S_EXIT_MAXPROB = 0, S2S_EXIT_MARGIN = 1 }; /* confidence metric */
enum { S2S_EXIT_JIT = 0, S2S_EXIT_COPY = 1 };      /* states of exited positions */

/* What the decoding of one call did (accumulated by s2s_deed_stats_add). */
typedef struct {
    double exit_layer_sum; /* sum over row steps of the exit layer (1-based) */
    double row_steps;      /* row steps (tokens predicted, incl. dead beam rows) */
    double layer_items;    /* (position, layer) states computed by the layers */
    double jit_items;      /* of which computed at a later step than their own (JIT) */
    double copy_items;     /* K/V filled from an exited state (copy mode) */
    double exits[256];     /* row steps that stopped after layer l (0-based) */
} s2s_exit_stats;

typedef struct s2s_exit_opts {
    float threshold;        /* tau */
    int metric;             /* S2S_EXIT_MAXPROB or S2S_EXIT_MARGIN */
    int states;             /* S2S_EXIT_JIT or S2S_EXIT_COPY */
    s2s_exit_stats *stats;  /* may be NULL: free() adds this state's counts to it */
    int chunk;              /* (row, position) items per layer batch, at least the rows (0: 4 * rows + 60) */
} s2s_exit_opts;

/* start() of decoder.h with exit options; m must be a multi-exit model on the CPU
 * (softmax or T2R attention). */
void *s2s_deed_start(const struct s2s_model *m, const float *enc, const int32_t *src_len, int B,
                     int Ts, int R, int max_steps, const s2s_exit_opts *o);
/* step / select / free / state_bytes / start_bytes; its start() uses tau = 2 (full depth). */
extern const s2s_decoder_ops s2s_deed_decoder;

/* Average exit layer (1-based) of the stats, 0 when nothing was decoded. */
double s2s_exit_stats_avg(const s2s_exit_stats *s);
/* a += b */
void s2s_exit_stats_add(s2s_exit_stats *a, const s2s_exit_stats *b);

/* Introspection for tests: layer l's cached keys / values of row r, [max_steps, D]
 * (positions 0..valid-1 valid; softmax models), its T2R self-attention state *S
 * [H, kf, Dh], *z [H, kf] (the sums over positions 0..valid-1; T2R models), the number
 * of valid positions of (row, layer), the exit layer (0-based) row r took at the last
 * step, and how many times the state of (row, layer) was computed (JIT: equals valid
 * when each position is computed once). */
const float *s2s_deed_keys(const void *st, int r, int l);
const float *s2s_deed_values(const void *st, int r, int l);
void s2s_deed_self_state(const void *st, int r, int l, const float **S, const float **z);
int s2s_deed_valid(const void *st, int r, int l);
int s2s_deed_last_exit(const void *st, int r);
long s2s_deed_computed(const void *st, int r, int l);
/* This state's counts so far. */
const s2s_exit_stats *s2s_deed_stats(const void *st);

#endif
