/* shortlist.h - lexical vocabulary shortlists: a decoding step scores only the target
 * tokens that are likely for the batch's source, not the whole vocabulary.
 *
 * Batch-1 decoding streams the output projection (V x D, the tied target embeddings)
 * once per step; once the decoder is small (NASH, hybrid RNNs, DEED exits) that fixed
 * cost dominates. A shortlist (Marian's "lexical shortlist", after Schwenk et al. and
 * Junczys-Dowmunt et al. 2018) bounds it: for each batch the candidate set is
 *   </s> and <unk>, the `frequent` most frequent target tokens of the training corpus,
 *   and for every source token of the batch its `top` best translations by an IBM
 *   Model 1 lexical table p(t | s) estimated on the training corpus (EM, `iters` rounds,
 *   tokenised with the model's own tokenizers; a NULL source word absorbs unaligned
 *   target tokens),
 * and the output projection runs over those rows only (typically 5-20 % of an 8k
 * vocabulary). Search then chooses among the candidates: the output may differ from
 * full-vocabulary decoding where the full argmax is outside the set.
 *
 * Files: safetensors, tensors "offsets" I32 [src_vocab + 1], "ids" I32 [offsets[src_vocab]]
 * (source id s -> its candidates ids[offsets[s] .. offsets[s + 1]), best first), "frequent"
 * I32 [n]; __metadata__ "format" = "s2s-shortlist", "version" = "1", "src_vocab",
 * "tgt_vocab", "top", "frequent", "iters", "tgt_vocab_hash" (FNV-1a 64 of the target
 * tokenizer's pieces, hex), "src_vocab_hash" likewise: a shortlist is only loaded for a model
 * with the same vocabularies. */
#ifndef S2S_SHORTLIST_H
#define S2S_SHORTLIST_H

#include <stddef.h>
#include <stdint.h>

#include "graph.h"

struct s2s_model;
struct s2s_tokenizer;

typedef struct s2s_shortlist {
    int src_vocab, tgt_vocab;     /* of the model it was built for */
    int top, n_frequent, iters;   /* build parameters (n_frequent = entries of freq) */
    int32_t *offsets;             /* [src_vocab + 1] */
    int32_t *ids;                 /* [offsets[src_vocab]] target ids, best first per source id */
    int32_t *freq;                /* [n_frequent] most frequent target ids, most frequent first */
    uint64_t src_hash, tgt_hash;  /* s2s_shortlist_vocab_hash of the two tokenizers */
    long n_pairs, n_skipped;      /* s2s_shortlist_build: sentence pairs used / skipped (0 after load) */
} s2s_shortlist;

/* Build from a parallel corpus (plain text, one sentence per line, the model's tokenizers;
 * pairs with an empty side (no token but specials and <unk>) or invalid UTF-8 are skipped;
 * only the first max_lines lines of each file are read, 0 = all).
 * top >= 1 candidates per source token, n_frequent >= 0, iters >= 1 EM rounds. Progress
 * on stderr unless quiet. NULL + one-line message in err on failure (unreadable file,
 * different line counts, no usable pair). */
s2s_shortlist *s2s_shortlist_build(const struct s2s_model *m, const char *src_path, const char *tgt_path,
                                   int top, int n_frequent, int iters, int max_lines, int quiet, char *err,
                                   size_t errlen);
/* Write atomically (temp file + rename). 0, or -1 with err. */
int s2s_shortlist_save(const s2s_shortlist *sl, const char *path, char *err, size_t errlen);
/* Read and validate (format, shapes, ids in range, offsets monotone) and check it fits m
 * (vocabulary sizes and hashes; m may be NULL to skip that). NULL + err on failure. */
s2s_shortlist *s2s_shortlist_load(const char *path, const struct s2s_model *m, char *err, size_t errlen);
void s2s_shortlist_free(s2s_shortlist *sl);
/* FNV-1a 64 over the pieces of ids 0..n-1 of a tokenizer (each piece then a 0 byte). */
uint64_t s2s_shortlist_vocab_hash(const struct s2s_tokenizer *t);

/* The candidate target tokens of one batch and the output projection restricted to them
 * (shortlist_sel.c). */
typedef struct s2s_vocab_sel {
    int n;          /* candidates */
    int32_t *ids;   /* [n] target ids, ascending (ties in search break as with the full vocabulary) */
    s2s_tensor w;   /* [n, D] rows ids of the tied output projection: fp32 data, the fp16 copy when the
                     * model keeps one, frozen (packed on first use, freed with the selection) */
} s2s_vocab_sel;

/* The selection for source ids src [B, Ts] (row b's first src_len[b] ids). NULL if sl is NULL. */
s2s_vocab_sel *s2s_vocab_sel_new(const s2s_shortlist *sl, const struct s2s_model *m, const int32_t *src,
                                 const int32_t *src_len, int B, int Ts);
/* All of [0, V) selected (tests: must decode exactly like no shortlist). */
s2s_vocab_sel *s2s_vocab_sel_all(const struct s2s_model *m);
/* The selection of ids [n] (any order, duplicates allowed; </s> added). */
s2s_vocab_sel *s2s_vocab_sel_of(const struct s2s_model *m, const int32_t *ids, int n);
void s2s_vocab_sel_free(s2s_vocab_sel *vs);

#endif
