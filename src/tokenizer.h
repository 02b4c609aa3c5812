/* tokenizer.h - subword tokenizers for s2s: characters, whitespace symbols, BPE.
 *
 * A tokenizer maps one line of UTF-8 text to ids in [0, V) and back. Ids 0..3
 * are always the special pieces "<pad>", "<s>", "</s>", "<unk>". Three kinds:
 *   S2S_TOK_CHAR    every code point is a token; a space is the piece "▁" (U+2581).
 *   S2S_TOK_SYMBOL  whitespace-separated symbols (phones: "k eh1 m b ax0 l").
 *   S2S_TOK_BPE     byte-pair-encoding merges learned on word frequencies
 *                   (Sennrich et al. 2016, incremental pair counts: bpe.c); each
 *                   word gets a SentencePiece-style "▁" prefix, so decoding is
 *                   exact up to whitespace normalisation.
 * Whitespace (ASCII space, \t, \n, \v, \f, \r) only separates words: leading,
 * trailing and repeated whitespace is normalised away. A literal "▁" in the text
 * is an ordinary character on input but decodes to a space.
 *
 * A tokenizer is immutable once built (its BPE word cache is internally locked),
 * so one instance may be shared by several threads that encode and decode.
 *
 *   char err[256];
 *   s2s_tokenizer *t = s2s_tok_learn(S2S_TOK_BPE, lines, n, 8000, 1, err, sizeof err);
 *   if (!t) { fprintf(stderr, "s2s: %s\n", err); return 1; }
 *   int32_t ids[256];
 *   int k = s2s_tok_encode(t, "Hola, señor.", ids, 256);  // k > 256: truncated
 *   char *back = s2s_tok_decode(t, ids, k < 256 ? k : 256);  // "Hola, señor."
 *   size_t len;
 *   char *blob = s2s_tok_serialize(t, &len);   // stored in the checkpoint
 *   s2s_tokenizer *u = s2s_tok_deserialize(blob, len, err, sizeof err);
 *   free(back); free(blob); s2s_tok_free(u); s2s_tok_free(t);
 */
#ifndef S2S_TOKENIZER_H
#define S2S_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

enum { S2S_PAD = 0, S2S_BOS = 1, S2S_EOS = 2, S2S_UNK = 3, S2S_NSPECIAL = 4 };
/* pieces "<pad>", "<s>", "</s>", "<unk>" */

typedef enum { S2S_TOK_CHAR = 1, S2S_TOK_SYMBOL = 2, S2S_TOK_BPE = 3 } s2s_tok_kind;

typedef struct s2s_tokenizer s2s_tokenizer;

/* Learns a tokenizer from n lines of UTF-8 text (each NUL-terminated, one
 * sentence per line; embedded newlines count as whitespace).
 *   vocab_size  total pieces including the 4 specials; <= 0 means no limit.
 *               Values 1..4 are an error.
 *   min_freq    pieces (CHAR, SYMBOL) and base characters (BPE) seen fewer times
 *               are left out and encode as <unk>; BPE also stops merging when the
 *               best pair occurs fewer than max(2, min_freq) times. <= 0 means 1.
 * CHAR and SYMBOL order pieces by frequency (most frequent first, ties by byte
 * order) and keep the first vocab_size - 4. BPE keeps the base characters the
 * same way, then learns merges until there are vocab_size pieces; a merge whose
 * string already is a piece is skipped, so every piece is unique.
 * Returns NULL with a one-line message on invalid UTF-8 (names the line),
 * an empty corpus, or a bad argument. */
s2s_tokenizer *s2s_tok_learn(s2s_tok_kind kind, const char *const *lines, size_t n,
                             int vocab_size, int min_freq, char *err, size_t errlen);

int s2s_tok_vocab_size(const s2s_tokenizer *t);
s2s_tok_kind s2s_tok_kind_of(const s2s_tokenizer *t);
const char *s2s_tok_kind_name(s2s_tok_kind kind); /* "char", "symbol", "bpe", or "?" */
/* Parses "char" / "symbol" / "bpe"; returns 0 if unknown. */
s2s_tok_kind s2s_tok_kind_parse(const char *name);

/* The piece string of id (NUL-terminated, owned by t), or NULL if id is out of range. */
const char *s2s_tok_piece(const s2s_tokenizer *t, int id);
/* The id of a piece string, or -1 if absent. */
int s2s_tok_id(const s2s_tokenizer *t, const char *piece);
/* BPE only: number of merges (0 for other kinds); merge i joins pieces
 * *left and *right into piece id S2S_NSPECIAL + n_base + i. Returns 0, or -1 if
 * i is out of range. */
int s2s_tok_n_merges(const s2s_tokenizer *t);
int s2s_tok_merge(const s2s_tokenizer *t, int i, int *left, int *right);

/* Encodes one line (no BOS/EOS added). Writes at most max_ids ids (ids may be
 * NULL when max_ids == 0) and returns the length of the full encoding, which may
 * exceed max_ids (like snprintf); returns -1 if text is not valid UTF-8 or is
 * longer than 1 GiB. Unknown characters / symbols become S2S_UNK.
 * Thread-safe on a shared tokenizer. */
int s2s_tok_encode(const s2s_tokenizer *t, const char *text, int32_t *ids, int max_ids);

/* Malloc'd UTF-8 text of ids[0..n): PAD/BOS/EOS are skipped, UNK and ids out
 * of range become "<unk>". CHAR/BPE: "▁" becomes a space, runs of spaces are
 * collapsed and the ends trimmed. SYMBOL: pieces joined by single spaces.
 * Thread-safe. */
char *s2s_tok_decode(const s2s_tokenizer *t, const int32_t *ids, int n);

/* A self-describing text blob (magic, version, kind, pieces, merges, FNV-1a
 * checksum), malloc'd, NUL-terminated; *len excludes the NUL. The model code
 * stores it inside the checkpoint as a U8 tensor. */
char *s2s_tok_serialize(const s2s_tokenizer *t, size_t *len);

/* Rebuilds a tokenizer from s2s_tok_serialize() output. Validates everything
 * (checksum, structure, UTF-8, special pieces, uniqueness, merges); a corrupt or
 * truncated blob gives NULL and a one-line message, never a crash. */
s2s_tokenizer *s2s_tok_deserialize(const char *blob, size_t len, char *err, size_t errlen);

void s2s_tok_free(s2s_tokenizer *t);

/* ---- Internal: the BPE merge learner (bpe.c), called by s2s_tok_learn ---- */

typedef struct {
    int32_t left, right; /* ids of the two pieces joined */
} s2s_bpe_merge;

/* Learns merges on a word-frequency table. Word w is the symbol sequence
 * syms[off[w] .. off[w] + len[w]) (ids < n_base; ids < S2S_NSPECIAL, e.g. <unk>,
 * are barriers that never merge) occurring freq[w] times; syms and len are
 * rewritten in place. pieces[0..n_base) are the strings of the existing ids.
 * Merge i creates id n_base + i (after skipped merges, see s2s_tok_learn);
 * learning stops after max_merges or when the best pair occurs < min_count
 * times. Ties in count go to the smaller left id, then the smaller right id.
 * Returns the number of merges m; *merges and *merged receive malloc'd arrays
 * [m] (merged[i] is the malloc'd piece string of id n_base + i). */
int s2s_bpe_learn_merges(s2s_bpe_merge **merges, char ***merged, int32_t *syms,
                         const size_t *off, int32_t *len, const int64_t *freq,
                         size_t n_words, const char *const *pieces, int n_base,
                         int max_merges, int64_t min_count);

#endif
