/* metrics.h - corpus-level evaluation metrics: BLEU and chrF (translation),
 * WER and PER (grapheme-to-phoneme).
 *
 * All inputs are arrays of NUL-terminated UTF-8 lines without the trailing
 * newline. BLEU and chrF reproduce sacreBLEU 2.x defaults bit for bit in their
 * statistics (tests/test_metrics.c compares them with vectors written by the
 * real sacrebleu, scripts/make_metric_vectors.py). The `s2s score` subcommand
 * (src/cli/cmd_score.c) is a thin wrapper over these functions.
 *
 * Usage:
 *     const char *hyps[]  = {"The cat sat.", "Hello world"};
 *     const char *ref0[]  = {"The cat sat on the mat.", "Hello, world!"};
 *     const char *const *refs[] = {ref0};          // refs[set][line]
 *     s2s_bleu_result b;
 *     char err[256];
 *     if (s2s_bleu(&b, hyps, refs, 1, 2, err, sizeof err) != 0)
 *         fprintf(stderr, "%s\n", err);
 *     else
 *         printf("BLEU = %.2f\n", b.score);
 *
 * Every public function returns 0 on success or -1 with a one-line message in
 * err[errlen] (invalid UTF-8, NULL arguments). Nothing here exits or prints.
 *
 * Definitions
 * -----------
 * BLEU: sacrebleu.corpus_bleu defaults. Each line is rstrip()ped (Unicode
 *   whitespace as Python's str.isspace), tokenized with '13a' (mteval-v13a:
 *   remove "<skipped>", "-\n" -> "", "\n" -> " ", &quot; &amp; &lt; &gt; ->
 *   " & < > in that order; pad with spaces; split ASCII punctuation except
 *   ' - . , ; split '.' and ',' unless between digits; split '-' after a
 *   digit; collapse whitespace). Case-sensitive, n-grams 1..4, clipped counts
 *   against the per-n-gram maximum over references, reference length = the
 *   reference length closest to the hypothesis length (ties: the shorter),
 *   brevity penalty exp(1 - r/c) when c < r (0 when c == 0), 'exp' smoothing
 *   (the k-th order with zero matches gets precision 100 / (2^k * total)), no
 *   effective order. Score 0 when no n-gram of any order matches.
 * chrF: sacrebleu CHRF() defaults (chrF2): Unicode character n-grams of order
 *   1..6 after removing all whitespace, word order 0, beta 2, case-sensitive.
 *   Per line and order the statistics are (hyp n-grams, ref n-grams, clipped
 *   matches), with the hyp count set to 0 when the reference has no n-gram of
 *   that order; with several references the line keeps the statistics of the
 *   reference with the best line-level chrF (first one on ties). Statistics
 *   are summed over the corpus; precision and recall are averaged over the
 *   orders where both hyp and ref counts are > 0, and
 *   chrF = 100 * (1+beta^2) P R / (beta^2 P + R) (0 when P + R == 0).
 * WER (G2P): a reference line holds one or more alternative pronunciations
 *   separated by TAB; each pronunciation and the hypothesis are sequences of
 *   phone symbols separated by ASCII whitespace (so runs of blanks and
 *   leading/trailing blanks do not matter). Alternatives that are empty after
 *   this split are ignored, unless all are empty, in which case the reference
 *   is the single empty pronunciation. A line is an error when the hypothesis
 *   equals none of the alternatives symbol by symbol.
 *   WER = 100 * error lines / lines.
 * PER (G2P): for each line, the alternative with the smallest Levenshtein
 *   distance (insert/delete/substitute, cost 1, over phone symbols) to the
 *   hypothesis is chosen (ties: the shorter alternative, then the first).
 *   PER = 100 * sum of those distances / sum of the chosen alternatives'
 *   lengths. When the total reference length is 0, PER is 0 if the total
 *   distance is 0 and 100 otherwise. An empty corpus scores 0 on all metrics.
 */
#ifndef S2S_METRICS_H
#define S2S_METRICS_H

#include <stddef.h>
#include <stdint.h>

#define S2S_BLEU_ORDER 4
#define S2S_CHRF_ORDER 6
#define S2S_CHRF_BETA 2

typedef struct {
    double score;                        /* BLEU in [0, 100] */
    double precisions[S2S_BLEU_ORDER];   /* smoothed n-gram precisions, percent */
    double bp;                           /* brevity penalty */
    double ratio;                        /* sys_len / ref_len (0 when ref_len == 0) */
    int64_t counts[S2S_BLEU_ORDER];      /* clipped matching n-grams per order */
    int64_t totals[S2S_BLEU_ORDER];      /* hypothesis n-grams per order */
    int64_t sys_len;                     /* hypothesis tokens */
    int64_t ref_len;                     /* closest-reference tokens */
} s2s_bleu_result;

typedef struct {
    double score;                        /* chrF2 in [0, 100] */
    double precision;                    /* averaged character n-gram precision, percent */
    double recall;                       /* averaged character n-gram recall, percent */
    int64_t stats[S2S_CHRF_ORDER][3];    /* per order n-1: hyp, ref, match counts */
} s2s_chrf_result;

typedef struct {
    double wer;                          /* percent of lines not matching any alternative */
    double per;                          /* percent phone edits over closest-alternative length */
    int64_t lines;                       /* number of lines */
    int64_t line_errors;                 /* lines whose hypothesis matches no alternative */
    int64_t edits;                       /* sum of minimum Levenshtein distances */
    int64_t ref_len;                     /* sum of the chosen alternatives' lengths */
} s2s_g2p_result;

/* Corpus BLEU. refs[r][i] is line i of reference set r (0 <= r < n_refsets,
 * n_refsets >= 1); hyps[i] is line i of the hypothesis. */
int s2s_bleu(s2s_bleu_result *out, const char *const *hyps,
             const char *const *const *refs, size_t n_refsets, size_t n_lines,
             char *err, size_t errlen);

/* Corpus chrF2, same argument layout as s2s_bleu. */
int s2s_chrf(s2s_chrf_result *out, const char *const *hyps,
             const char *const *const *refs, size_t n_refsets, size_t n_lines,
             char *err, size_t errlen);

/* WER and PER over phone sequences; refs[i] holds TAB-separated alternatives. */
int s2s_g2p_score(s2s_g2p_result *out, const char *const *hyps,
                  const char *const *refs, size_t n_lines, char *err, size_t errlen);

/* The score of a metric by name: "wer" / "per" (s2s_g2p_score; refs may hold TAB-
 * separated alternatives), "bleu" / "chrf" (one reference set). 0 with *score set, or
 * -1 + message (unknown metric, invalid UTF-8). */
int s2s_metric_score(const char *metric, const char *const *hyps, const char *const *refs, size_t n_lines,
                     double *score, char *err, size_t errlen);
/* 1 for the metrics where higher is better (bleu, chrf), 0 for wer, per (and loss). */
int s2s_metric_higher_better(const char *metric);

/* The 13a tokenization BLEU applies to one line (after rstrip), tokens joined by
 * single spaces. Returns a malloc'd string the caller free()s, or NULL with a
 * message when line is not valid UTF-8. */
char *s2s_bleu_tokenize_13a(const char *line, char *err, size_t errlen);

/* 1 when s[0..n) is well-formed UTF-8 (no overlongs, surrogates or code points
 * above U+10FFFF; NUL bytes are rejected too), else 0. *bad_offset (if not
 * NULL) receives the byte offset of the first bad sequence. */
int s2s_metrics_utf8_ok(const char *s, size_t n, size_t *bad_offset);

#endif
