/* s2s.h - public C API of libs2s: load a model once, translate from many threads.
 *
 *   char err[256];
 *   s2s_model *m = s2s_load("models/g2p-small.safetensors", err, sizeof err);
 *   if (!m) { fprintf(stderr, "%s\n", err); return 1; }
 *   s2s_translate_opts o;
 *   s2s_translate_opts_default(&o);         // greedy, batch 32
 *   const char *in[2] = {"hello", "world"};
 *   char *out[2];
 *   if (s2s_translate(m, in, 2, &o, out, NULL, err, sizeof err) == 0)
 *       printf("%s\n%s\n", out[0], out[1]);  // "hh ah0 l ow1" ...
 *   free(out[0]); free(out[1]);
 *   s2s_free(m);
 *
 * A loaded model is immutable: any number of threads may call s2s_translate on
 * the same model at once (each call owns its decoding state).
 *
 * GPU: after s2s_use_cuda(m, ...) succeeds (once, before the model is shared
 * between threads), s2s_translate encodes and decodes m on the GPU (fp32; same
 * outputs as the CPU up to float rounding). */
#ifndef S2S_H
#define S2S_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct s2s_model s2s_model;
/* A lexical vocabulary shortlist for a model (`s2s shortlist` builds one): each decoding
 * step scores only the target tokens likely for the batch's source (faster on the CPU;
 * the output may differ where the best token is outside the list). */
typedef struct s2s_shortlist s2s_shortlist;

typedef struct {
    int beam;             /* beam size; 1 = greedy */
    int batch;            /* sentences decoded together */
    int max_len;          /* output tokens at most */
    float length_penalty; /* beam: score = logprob / len^length_penalty */
    int max_memory_mb;    /* decoding memory bound per call (encoder activations +
                             decoder state of one batch); batches are split to stay
                             under it, a single sentence above it is refused. 0 = no bound */
    /* DEED early exit (multi-exit models, CPU only). exit_threshold < 0 (default): off;
     * in [0, 1]: each decoding step stops at the first decoder layer whose exit
     * confidence reaches it; > 1: full depth (the normal decoder, same outputs). */
    float exit_threshold;
    int exit_metric;      /* 0: max softmax probability, 1: top-1 minus top-2 probability */
    int exit_states;      /* 0: compute skipped deeper states just in time, 1: copy the exited state up */
    double *exit_stats;   /* optional [4]: += sum of exit layers (1-based), += decoding row steps,
                             += (position, layer) states the decoder layers computed, += of which
                             just in time (jit) or K/V filled from an exited state (copy) */
    const s2s_shortlist *shortlist; /* NULL (default): score every target token; else the
                                       shortlist of this model (s2s_shortlist_load; CPU only) */
} s2s_translate_opts;

/* Flags reported per input line by s2s_translate (may be NULL). */
enum { S2S_LINE_TRUNCATED = 1, S2S_LINE_BAD_UTF8 = 2, S2S_LINE_TOO_BIG = 4 /* refused: max_memory_mb */ };

s2s_model *s2s_load(const char *path, char *err, size_t errlen);
void s2s_free(s2s_model *m);
void s2s_translate_opts_default(s2s_translate_opts *o);
/* Translate n UTF-8 lines; out[i] is malloc'd (caller frees). Invalid UTF-8 is
 * replaced by U+FFFD; over-long inputs are truncated to the model's max_len.
 * On error (-1) no out[i] is left allocated.
 * flags[i] (optional) receives S2S_LINE_* bits. Returns 0, or -1 with err set. */
int s2s_translate(const s2s_model *m, const char *const *lines, int n,
                  const s2s_translate_opts *o, char **out, int *flags, char *err,
                  size_t errlen);
/* Move the model's weights to the GPU: every later s2s_translate on m runs there.
 * Returns 0, or -1 with a one-line message in err (s2s built without CUDA, or no
 * usable GPU); m is then unchanged and still translates on the CPU. Not thread-safe:
 * call it before sharing m. */
int s2s_use_cuda(s2s_model *m, char *err, size_t errlen);
/* Load a shortlist file for model m (NULL + a one-line err if it is unreadable, corrupt,
 * or made for other vocabularies); free it after the last s2s_translate that uses it. */
s2s_shortlist *s2s_shortlist_load(const char *path, const s2s_model *m, char *err, size_t errlen);
void s2s_shortlist_free(s2s_shortlist *sl);
/* Set the number of threads used by the compute kernels (OpenMP + OpenBLAS). */
void s2s_threads(int n);

#ifdef __cplusplus
}
#endif
#endif
