/* decoder.h - the one step interface every decoder kind implements.
 *
 * Search code (search.c: greedy and beam) drives any decoder only through these
 * four calls, so adding a decoder kind (recurrent, T2R, multi-exit...) means
 * writing one more s2s_decoder_ops and touching no search code:
 *
 *   st = ops->start(m, enc, src_len, B, Ts, R, max_steps); // N = B*R rows, row r -> sentence r/R
 *   ops->step(st, logits, tokens, N);     // feed tokens [N], get next-token logits [N, V]
 *   ops->select(st, rows, N2);            // new row i := old row rows[i] (reorder/duplicate/drop)
 *   ops->free(st);
 *
 * All rows advance together: after k calls to step every row has consumed k
 * tokens (the first is <s>). Model weights are only read: many states (one per
 * thread) may share one model.
 *
 * Devices: for a model on the GPU (m->on_cuda, s2s_model_to_cuda) the registry
 * returns the CUDA implementation of its kind (decoder_cuda.cu). There start()'s
 * enc is a DEVICE pointer (e.g. the dev_data of s2s_model_encode on a CUDA graph),
 * read by work queued on the legacy default stream, so the caller may free or reuse
 * it after start() through that stream (or any synchronising call); src_len, tokens,
 * rows and logits stay HOST memory, so search code is the same for both devices
 * (step() downloads the logits: its one host synchronisation). start_bytes() then
 * counts the device memory plus the pinned host staging buffers. */
#ifndef S2S_DECODER_H
#define S2S_DECODER_H

#include <stddef.h>
#include <stdint.h>

struct s2s_model;
struct s2s_vocab_sel;

typedef struct s2s_decoder_ops {
    const char *kind;
    /* enc [B, Ts, D] encoder output (copied or projected as needed; the caller may
     * free it after start; device memory for the CUDA ops, see above); src_len [B]
     * (host); R rows per sentence; max_steps bounds the number of step calls.
     * Returns NULL only on allocation failure. */
    void *(*start)(const struct s2s_model *m, const float *enc, const int32_t *src_len, int B,
                   int Ts, int R, int max_steps);
    /* logits [N, V] for the next token of each row, after consuming tokens [N]. */
    void (*step)(void *st, float *logits, const int32_t *tokens, int N);
    /* Keep rows: new row i = old row rows[i], i < N_new (rows may repeat). */
    void (*select)(void *st, const int32_t *rows, int N_new);
    void (*free)(void *st);
    /* Bytes of decoding state per row after t steps (for memory reports). */
    size_t (*state_bytes)(const struct s2s_model *m, int Ts, int t);
    /* Bytes that start() allocates for these arguments (the decoder's whole
     * footprint: it allocates nothing later), used to bound memory up front. */
    size_t (*start_bytes)(const struct s2s_model *m, int B, int Ts, int R, int max_steps);
    /* Optional (NULL: the kind always scores the whole vocabulary): from the next step on,
     * logits are [N, vs->n], the scores of target ids vs->ids only (shortlist.h), or [N, V]
     * again for vs = NULL. vs must outlive the state or the next set_vocab. */
    void (*set_vocab)(void *st, const struct s2s_vocab_sel *vs);
} s2s_decoder_ops;

/* The ops for the model's decoder kind (cfg.decoder), or NULL if unknown (decoder.c). */
const s2s_decoder_ops *s2s_decoder_ops_for(const struct s2s_model *m);

extern const s2s_decoder_ops s2s_transformer_decoder; /* decoder_transformer.c */
extern const s2s_decoder_ops s2s_ssru_decoder;        /* decoder_rnn.c */
extern const s2s_decoder_ops s2s_gru_decoder;         /* decoder_rnn.c */
extern const s2s_decoder_ops s2s_lstm_decoder;        /* decoder_rnn.c */
extern const s2s_decoder_ops s2s_t2r_decoder;         /* decoder_t2r.c: Transformer, dec_attn t2r (CPU) */

#endif
