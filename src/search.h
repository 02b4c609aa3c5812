/* search.h - greedy and beam search over any decoder kind (decoder.h). */
#ifndef S2S_SEARCH_H
#define S2S_SEARCH_H

#include <stddef.h>
#include <stdint.h>

struct s2s_model;
struct s2s_exit_opts;
struct s2s_vocab_sel;

typedef struct {
    int beam;             /* 1 = greedy */
    int max_len;          /* output tokens at most (excluding </s>); also <= cfg.max_len - 1 */
    float len_ratio;      /* and at most len_ratio * source length + 10 (0 = off) */
    float length_penalty; /* beam score = logprob / len^length_penalty */
    /* DEED early exit (decoder_deed.h) for a multi-exit model on the CPU, or NULL
     * (default): the model's own decoder at full depth */
    const struct s2s_exit_opts *exit;
    /* Shortlist of this batch (shortlist.h: s2s_vocab_sel_new on the batch's source), or
     * NULL (default): the whole vocabulary. The output is chosen among vocab->ids only;
     * ignored by decoders without set_vocab (the GPU ones: they score every token). */
    const struct s2s_vocab_sel *vocab;
} s2s_search_opts;

void s2s_search_opts_default(s2s_search_opts *o);

/* Decode B sentences from encoder output enc [B, Ts, D], src_len [B].
 * out[b] (malloc'd, without <s>/</s>) and out_len[b]; score[b] (may be NULL)
 * gets the normalised log-probability of the chosen hypothesis. */
void s2s_search(const struct s2s_model *m, const float *enc, const int32_t *src_len, int B,
                int Ts, const s2s_search_opts *o, int32_t **out, int *out_len, float *score);

/* Bytes that s2s_search allocates for this batch (decoder state + search buffers). */
size_t s2s_search_bytes(const struct s2s_model *m, const int32_t *src_len, int B, int Ts,
                        const s2s_search_opts *o);

#endif
