/* test_util.h - helpers shared by the test files (tests/test_util.c). */
#ifndef S2S_TEST_UTIL_H
#define S2S_TEST_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "train.h"

#include "model.h"

/* max |a - b| over n values */
/* The fixed batch of the tiny-model tests: B=2, Ts=5, Tt=4 (ids < 14). */
extern const int32_t TU_SRC[10], TU_SLEN[2], TU_TIN[8], TU_TOUT[8];
/* Training options for a tiny model (D=32 H=2 F=64, 1+1 layers, max_len 32) on
 * dir/{train,dev}.{src,tgt} writing to dir/out: lr 3e-3, warmup 50, dropout 0.1,
 * 600-token batches, dev WER on 50 lines, 1 thread, quiet unless S2S_TEST_VERBOSE.
 * Callers override what they test; tu_train_opts_free frees the paths and init. */
void tu_train_opts(s2s_train_opts *o, const char *dir, const char *out);
void tu_train_opts_free(s2s_train_opts *o);
/* The s2s binary the CLI tests run: $S2S_BIN, else build/s2s. */
const char *tu_bin(void);
double tu_max_diff(const float *a, const float *b, size_t n);
/* max |a - b| / (atol + rtol * |b|) over n values (<= 1 passes) */
double tu_rel_err(const float *a, const float *b, size_t n, double atol, double rtol);
/* A fresh temporary directory (malloc'd path); tu_rmrf removes it. */
char *tu_tmpdir(void);
void tu_rmrf(const char *dir);
char *tu_path(const char *dir, const char *file); /* malloc'd dir/file */
void tu_write(const char *path, const char *text);
/* Tiny random model with char/symbol tokenizers learned from the reverse task. */
s2s_model *tu_tiny_model(int D, int H, int F, int Le, int Ld, uint64_t seed);
/* A random model of config c (decoder kind, sizes, activation... as given) whose
 * vocabularies are the reverse task's char/symbol tokenizers (c's vocab sizes are
 * replaced); aborts if c is invalid. */
s2s_model *tu_model_for(s2s_config c, uint64_t seed);
/* Add 0.2 * N(0,1) noise to every 1-D parameter (biases, LayerNorm) so every path of
 * a fresh model carries signal. */
void tu_perturb_vectors(s2s_model *m, uint64_t seed);
/* Reverse-string task: src "abc", tgt "c b a"; n lines each, malloc'd. */
void tu_reverse_task(char ***src, char ***tgt, int n, uint64_t seed);
/* Write the reverse task as DIR/NAME.src and DIR/NAME.tgt (n lines each). */
void tu_write_reverse_task(const char *dir, const char *name, int n, uint64_t seed);
/* The decoder step interface's select(): 2 sentences x 2 rows (sources
 * {4 5 6 7 </s>} and {8 9 </s>}) take two steps with different prefixes, rows
 * {1, 1, 3} are kept (reordered and duplicated) and one more step is taken; a fresh
 * state fed those rows' prefixes directly must give the same logits. Returns the
 * largest difference of the last step's logits. */
double tu_select_reorder_diff(const s2s_model *m);
/* Teacher-forced full pass of a Transformer decoder (softmax or T2R attention; the
 * layers of model.c) over tokens tin [B, T] with sources src [B, Ts], slen [B]: the
 * self-attention keys and values of every decoder layer, kk[l], vv[l] = [B, T, D]
 * (malloc'd). */
void tu_dec_layer_kv(const s2s_model *m, const int32_t *src, const int32_t *slen, int Ts, const int32_t *tin,
                     int B, int T, float **kk, float **vv);
/* DEED decoding (decoder_deed.h) of forced tokens for 4 rows (2 sentences of TU_SRC x 2
 * rows), 7 steps, threshold tau, states S2S_EXIT_JIT or S2S_EXIT_COPY, chunk as
 * s2s_exit_opts (0: default); select() keeps rows {1, 1, 3, 2} after step 4. enc: the
 * encoder output of TU_SRC. Returns the state (the caller frees it with
 * s2s_deed_decoder.free); hist[r][t] gets the row token histories, logits [7, 4, V]
 * every step's logits. */
void *tu_deed_forced_decode(const s2s_model *m, const float *enc, float tau, int states, int32_t hist[4][8],
                            float *logits, int chunk);
/* A maxprob threshold at which tu_deed_forced_decode (JIT) has some steps exit early,
 * some reach the last layer, and at least 4 JIT items; 0 if none. logits [7, 4, V] scratch. */
float tu_deed_mixed_tau(const s2s_model *m, const float *enc, float *logits);
/* The DEED decoder of a multi-exit model m at full depth against m's plain step decoder:
 * 2 rows of TU_SRC (encoder output enc), 3 forced steps; -1 if every step's logits are the
 * same bit for bit, else the first step where they differ. */
int tu_deed_full_depth_diff_step(const s2s_model *m, const float *enc);
/* Run a shell command, capture stdout+stderr (malloc'd) and return the exit status. */
int tu_run(const char *cmd, char **output);
/* `s2s translate -m MODEL` of three short lines with early exit at four settings
 * (greedy; beam 3 with copied states; margin at batch 1; tau above 1): each must exit 0
 * and print an average exit layer in [1, layers], exactly `layers` above 1. 0 if all
 * hold, else -1 with the reason in why. */
int tu_early_exit_cli(const char *model, int layers, char *why, size_t whylen);

#endif
