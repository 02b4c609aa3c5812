/* shortlist.c - building, saving and loading lexical shortlists (shortlist.h).
 *
 * The corpus is read once (getline, both files in lockstep), tokenised with the model's
 * tokenizers and kept as ids only: for each sentence pair k its distinct source ids with
 * their counts and its distinct target ids with their counts (specials and <unk> dropped).
 *
 * The IBM Model 1 table p(t | s) is sparse: row s holds only the target ids that co-occur
 * with s in some pair (CSR: row_off[s] .. row_off[s + 1] into cols / prob; the NULL source
 * word is one more row, Vs, present in every pair). It is built and trained row by row
 * through an inverted index (source id -> the pairs holding it, with its count) and two
 * dense scratch arrays over the target vocabulary, so no per-pair hash lookup is needed:
 *   pass A  for every row s, scatter p(. | s) into a dense [Vt] array and add
 *           c_s p(t | s) to the denominator of each target position of each pair holding s;
 *   pass B  for every row s again, scatter p(. | s), accumulate the expected counts
 *           c_s c_t p(t | s) / denom into a dense [Vt] array, and normalise them into the
 *           row in place (the M-step of row s needs no other row).
 * One EM round costs 2 x sum_k |S_k| |T_k| multiply-adds on cache-resident arrays; memory
 * is 8 bytes per table entry (int32 column + float probability) plus the corpus ids. */
#include "shortlist.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "model.h"
#include "safetensors.h"
#include "tokenizer.h"
#include "utf8.h"

/* ------------------------------------------------------------------ hash */

uint64_t s2s_shortlist_vocab_hash(const struct s2s_tokenizer *t) {
    uint64_t h = 14695981039346656037ULL;
    int n = t ? s2s_tok_vocab_size(t) : 0;
    for (int i = 0; i < n; i++) {
        const char *p = s2s_tok_piece(t, i);
        if (p)
            for (; *p; p++) { h ^= (unsigned char)*p; h *= 1099511628211ULL; }
        h *= 1099511628211ULL; /* the terminating 0 byte (h ^= 0) */
    }
    return h;
}

void s2s_shortlist_free(s2s_shortlist *sl) {
    if (!sl) return;
    free(sl->offsets);
    free(sl->ids);
    free(sl->freq);
    free(sl);
}

/* ------------------------------------------------------------------ corpus */

typedef struct {
    int32_t *v;
    size_t n, cap;
} ivec;

static void ivec_push(ivec *a, int32_t x) {
    if (a->n == a->cap) {
        a->cap = a->cap ? a->cap * 2 : 1024;
        a->v = s2s_xrealloc(a->v, a->cap * sizeof *a->v);
    }
    a->v[a->n++] = x;
}

/* The distinct ids of one side of the corpus: pair k holds id[off[k] .. off[k + 1]) with
 * counts cnt[...] (first occurrence order), len[k] tokens in all. */
typedef struct {
    ivec id, cnt;
    size_t *off;  /* [n + 1] */
    int32_t *len; /* [n] */
    size_t n, cap;
    int64_t tokens;
} side;

/* Append pair's distinct ids of ids[0..n) that are ordinary pieces (>= S2S_NSPECIAL, < V);
 * stamp/pos are [V] scratch (stamp must not hold tag yet; pos: index in the pair's list).
 * Returns the tokens kept (0: nothing appended). */
static int side_add(side *s, const int32_t *ids, int n, int V, int32_t *stamp, int32_t *pos, int32_t tag) {
    if (s->n + 1 >= s->cap) {
        s->cap = s->cap ? s->cap * 2 : 1024;
        s->off = s2s_xrealloc(s->off, (s->cap + 1) * sizeof *s->off);
        s->len = s2s_xrealloc(s->len, s->cap * sizeof *s->len);
    }
    if (s->n == 0) s->off[0] = 0;
    size_t start = s->id.n;
    int kept = 0;
    for (int i = 0; i < n; i++) {
        int32_t t = ids[i];
        if (t < S2S_NSPECIAL || t >= V) continue; /* specials and <unk> */
        kept++;
        if (stamp[t] == tag) { s->cnt.v[start + (size_t)pos[t]]++; continue; }
        stamp[t] = tag;
        pos[t] = (int32_t)(s->id.n - start);
        ivec_push(&s->id, t);
        ivec_push(&s->cnt, 1);
    }
    if (kept == 0) { s->id.n = s->cnt.n = start; return 0; }
    s->len[s->n] = kept;
    s->off[++s->n] = s->id.n;
    s->tokens += kept;
    return kept;
}

static void side_free(side *s) {
    free(s->id.v); free(s->cnt.v); free(s->off); free(s->len);
}

/* Undo the last side_add (the other side of the pair was empty). */
static void side_pop(side *s) {
    s->n--;
    s->id.n = s->cnt.n = s->off[s->n];
    s->tokens -= s->len[s->n];
}

/* One line of f without its "\n" / "\r\n": length, or -1 at end of file, -2 on a read error. */
static long read_line(FILE *f, char **buf, size_t *cap) {
    errno = 0;
    ssize_t len = getline(buf, cap, f);
    if (len < 0) return ferror(f) ? -2 : -1;
    if (len > 0 && (*buf)[len - 1] == '\n') (*buf)[--len] = '\0';
    if (len > 0 && (*buf)[len - 1] == '\r') (*buf)[--len] = '\0';
    return (long)len;
}

/* ids of text (grown as needed): count, or -1 if text is not usable (NUL byte, bad UTF-8). */
static int encode_line(const s2s_tokenizer *tok, const char *text, long len, int32_t **ids, int *cap) {
    if ((size_t)len != strlen(text) || !s2s_utf8_valid(text, (size_t)len)) return -1;
    int n = s2s_tok_encode(tok, text, *ids, *cap);
    if (n < 0) return -1;
    if (n > *cap) {
        *cap = n;
        *ids = s2s_xrealloc(*ids, (size_t)n * sizeof **ids);
        n = s2s_tok_encode(tok, text, *ids, *cap);
        if (n < 0) return -1;
    }
    return n;
}

/* Count the lines left in f (for the line-count error). */
static long count_rest(FILE *f) {
    long n = 0;
    int c, last = '\n';
    while ((c = getc(f)) != EOF) { if (c == '\n') n++; last = c; }
    return n + (last != '\n');
}

/* ------------------------------------------------------------------ top-k */

typedef struct { float p; int32_t id; } cand;

/* a ranks before b: higher probability, then lower id */
static int cand_better(cand a, cand b) { return a.p > b.p || (a.p == b.p && a.id < b.id); }

static int cand_cmp(const void *x, const void *y) {
    cand a = *(const cand *)x, b = *(const cand *)y;
    return cand_better(a, b) ? -1 : cand_better(b, a) ? 1 : 0;
}

/* heap[0] is the worst of the kept candidates */
static void heap_down(cand *h, int n, int i) {
    for (;;) {
        int l = 2 * i + 1, r = l + 1, w = i;
        if (l < n && cand_better(h[w], h[l])) w = l;
        if (r < n && cand_better(h[w], h[r])) w = r;
        if (w == i) return;
        cand t = h[i]; h[i] = h[w]; h[w] = t;
        i = w;
    }
}

static void heap_up(cand *h, int i) {
    while (i > 0) {
        int p = (i - 1) / 2;
        if (!cand_better(h[p], h[i])) return;
        cand t = h[i]; h[i] = h[p]; h[p] = t;
        i = p;
    }
}

/* "1234" or "12.35 M" */
static const char *count_str(char *buf, double n) {
    if (n < 1e6) snprintf(buf, 32, "%.0f", n);
    else snprintf(buf, 32, "%.2f M", n / 1e6);
    return buf;
}

typedef struct { int64_t n; int32_t id; } fcount;

/* more frequent first, then lower id */
static int fcount_cmp(const void *x, const void *y) {
    const fcount *a = x, *b = y;
    if (a->n != b->n) return a->n > b->n ? -1 : 1;
    return (a->id > b->id) - (a->id < b->id);
}

/* ------------------------------------------------------------------ build */

s2s_shortlist *s2s_shortlist_build(const struct s2s_model *m, const char *src_path, const char *tgt_path,
                                   int top, int n_frequent, int iters, int max_lines, int quiet, char *err,
                                   size_t errlen) {
    if (!m || !m->src_tok || !m->tgt_tok) { s2s_errf(err, errlen, "the model has no tokenizers"); return NULL; }
    if (top < 1 || n_frequent < 0 || iters < 1 || max_lines < 0) {
        s2s_errf(err, errlen, "bad shortlist parameters (top %d, frequent %d, iters %d, max lines %d)", top,
                 n_frequent, iters, max_lines);
        return NULL;
    }
    const int Vs = m->cfg.src_vocab, Vt = m->cfg.tgt_vocab;
    if (Vs < 1 || Vt < 1 || Vs >= INT32_MAX - 1) { s2s_errf(err, errlen, "bad model vocabulary sizes"); return NULL; }
    double t0 = s2s_now();
    FILE *fs = fopen(src_path, "rb");
    if (!fs) { s2s_errf(err, errlen, "cannot open %s: %s", src_path, strerror(errno)); return NULL; }
    FILE *ft = fopen(tgt_path, "rb");
    if (!ft) { s2s_errf(err, errlen, "cannot open %s: %s", tgt_path, strerror(errno)); fclose(fs); return NULL; }

    /* ---- read and tokenise */
    side S = {0}, T = {0};
    int Vmax = Vs > Vt ? Vs : Vt;
    int32_t *sstamp = s2s_xmalloc((size_t)Vs * sizeof *sstamp), *tstamp = s2s_xmalloc((size_t)Vt * sizeof *tstamp);
    int32_t *pos = s2s_xmalloc((size_t)Vmax * sizeof *pos);
    for (int i = 0; i < Vs; i++) sstamp[i] = -1;
    for (int i = 0; i < Vt; i++) tstamp[i] = -1;
    char *ls = NULL, *lt = NULL;
    size_t cs = 0, ct = 0;
    int32_t *is = NULL, *it = NULL;
    int cis = 0, cit = 0;
    long lines = 0, n_invalid = 0, n_empty = 0;
    int failed = 0;
    for (;;) {
        if (max_lines > 0 && lines >= max_lines) break;
        long a = read_line(fs, &ls, &cs), b = read_line(ft, &lt, &ct);
        if (a == -2 || b == -2) {
            s2s_errf(err, errlen, "%s: read error: %s", a == -2 ? src_path : tgt_path, strerror(errno ? errno : EIO));
            failed = 1;
            break;
        }
        if (a == -1 || b == -1) {
            if (a != b) {
                long ra = a == -1 ? 0 : 1 + count_rest(fs), rb = b == -1 ? 0 : 1 + count_rest(ft);
                s2s_errf(err, errlen, "%s has %ld lines but %s has %ld", src_path, lines + ra, tgt_path, lines + rb);
                failed = 1;
            }
            break;
        }
        lines++;
        int ns = encode_line(m->src_tok, ls, a, &is, &cis), nt = encode_line(m->tgt_tok, lt, b, &it, &cit);
        if (ns < 0 || nt < 0) { n_invalid++; continue; }
        int32_t tag = (int32_t)(lines % INT32_MAX);
        if (!side_add(&S, is, ns, Vs, sstamp, pos, tag)) { n_empty++; continue; }
        if (!side_add(&T, it, nt, Vt, tstamp, pos, tag)) { side_pop(&S); n_empty++; continue; }
    }
    fclose(fs); fclose(ft);
    free(ls); free(lt); free(is); free(it);
    free(sstamp); free(pos);
    if (!failed && S.n == 0) {
        s2s_errf(err, errlen, "no usable sentence pair in %s / %s (%ld lines: %ld with invalid UTF-8, %ld with an empty side)",
                 src_path, tgt_path, lines, n_invalid, n_empty);
        failed = 1;
    }
    if (failed) { side_free(&S); side_free(&T); free(tstamp); return NULL; }
    const size_t K = S.n;

    /* ---- inverted index: source id (Vs = NULL) -> pairs holding it, with its count */
    size_t *inv_off = s2s_xcalloc((size_t)Vs + 2, sizeof *inv_off);
    for (size_t j = 0; j < S.id.n; j++) inv_off[S.id.v[j] + 1]++;
    inv_off[Vs + 1] = K;
    for (int s = 0; s <= Vs; s++) inv_off[s + 1] += inv_off[s];
    int32_t *inv_k = s2s_xmalloc(inv_off[Vs + 1] * sizeof *inv_k), *inv_c = s2s_xmalloc(inv_off[Vs + 1] * sizeof *inv_c);
    {
        size_t *fill = s2s_xmalloc(((size_t)Vs + 1) * sizeof *fill);
        memcpy(fill, inv_off, ((size_t)Vs + 1) * sizeof *fill);
        for (size_t k = 0; k < K; k++) {
            for (size_t j = S.off[k]; j < S.off[k + 1]; j++) {
                size_t q = fill[S.id.v[j]]++;
                inv_k[q] = (int32_t)k;
                inv_c[q] = S.cnt.v[j];
            }
            inv_k[fill[Vs]] = (int32_t)k; /* NULL: once in every pair */
            inv_c[fill[Vs]++] = 1;
        }
        free(fill);
    }

    /* ---- the sparse table: row s = target ids co-occurring with s */
    size_t *row_off = s2s_xmalloc(((size_t)Vs + 2) * sizeof *row_off);
    ivec cols = {0};
    for (int t = 0; t < Vt; t++) tstamp[t] = -1;
    row_off[0] = 0;
    for (int s = 0; s <= Vs; s++) {
        for (size_t q = inv_off[s]; q < inv_off[s + 1]; q++) {
            int32_t k = inv_k[q];
            for (size_t j = T.off[k]; j < T.off[k + 1]; j++) {
                int32_t t = T.id.v[j];
                if (tstamp[t] != s) { tstamp[t] = s; ivec_push(&cols, t); }
            }
        }
        row_off[s + 1] = cols.n;
    }
    free(tstamp);
    const size_t P = cols.n;
    float *prob = s2s_xmalloc((P ? P : 1) * sizeof *prob);
    for (size_t e = 0; e < P; e++) prob[e] = 1.0f / (float)Vt; /* uniform */
    char b1[32], b2[32], b3[32];
    if (!quiet)
        fprintf(stderr, "shortlist: %zu sentence pairs (%ld skipped), %s / %s tokens, %s table entries, %.1f s\n", K,
                n_invalid + n_empty, count_str(b1, (double)S.tokens), count_str(b2, (double)T.tokens),
                count_str(b3, (double)P), s2s_now() - t0);

    /* ---- EM */
    double *w = s2s_xmalloc((T.id.n ? T.id.n : 1) * sizeof *w); /* per target position: denominator, then c_t / it */
    float *dense = s2s_xmalloc((size_t)Vt * sizeof *dense);
    double *acc = s2s_xmalloc((size_t)Vt * sizeof *acc);
    for (int r = 0; r < iters; r++) {
        double tr = s2s_now();
        /* pass A: denominators sum_s c_s p(t | s) of every target position */
        memset(w, 0, T.id.n * sizeof *w);
        for (int s = 0; s <= Vs; s++) {
            if (row_off[s] == row_off[s + 1]) continue;
            for (size_t e = row_off[s]; e < row_off[s + 1]; e++) dense[cols.v[e]] = prob[e];
            for (size_t q = inv_off[s]; q < inv_off[s + 1]; q++) {
                int32_t k = inv_k[q];
                double c = inv_c[q];
                for (size_t j = T.off[k]; j < T.off[k + 1]; j++) w[j] += c * dense[T.id.v[j]];
            }
        }
        double ll = 0;
        for (size_t k = 0; k < K; k++) {
            double norm = log((double)S.len[k] + 1.0);
            for (size_t j = T.off[k]; j < T.off[k + 1]; j++) {
                double d = w[j] > 1e-300 ? w[j] : 1e-300;
                ll += T.cnt.v[j] * (log(d) - norm);
                w[j] = T.cnt.v[j] / d;
            }
        }
        /* pass B: expected counts c_s c_t p(t | s) / denominator, normalised per row */
        for (int s = 0; s <= Vs; s++) {
            if (row_off[s] == row_off[s + 1]) continue;
            for (size_t e = row_off[s]; e < row_off[s + 1]; e++) { dense[cols.v[e]] = prob[e]; acc[cols.v[e]] = 0; }
            for (size_t q = inv_off[s]; q < inv_off[s + 1]; q++) {
                int32_t k = inv_k[q];
                double c = inv_c[q];
                for (size_t j = T.off[k]; j < T.off[k + 1]; j++) {
                    int32_t t = T.id.v[j];
                    acc[t] += c * dense[t] * w[j];
                }
            }
            double tot = 0;
            for (size_t e = row_off[s]; e < row_off[s + 1]; e++) tot += acc[cols.v[e]];
            size_t len = row_off[s + 1] - row_off[s];
            for (size_t e = row_off[s]; e < row_off[s + 1]; e++)
                prob[e] = tot > 0 ? (float)(acc[cols.v[e]] / tot) : (float)(1.0 / (double)len);
        }
        if (!quiet)
            fprintf(stderr, "shortlist: EM round %d/%d, %s table entries, perplexity %.2f, %.2f s\n", r + 1, iters,
                    count_str(b3, (double)P), exp(-ll / (double)T.tokens), s2s_now() - tr);
    }
    free(w); free(dense); free(acc);
    free(inv_k); free(inv_c); free(inv_off);

    /* ---- per source id its `top` best targets */
    s2s_shortlist *sl = s2s_xcalloc(1, sizeof *sl);
    sl->src_vocab = Vs; sl->tgt_vocab = Vt;
    sl->top = top; sl->iters = iters;
    sl->n_pairs = (long)K; sl->n_skipped = n_invalid + n_empty;
    sl->src_hash = s2s_shortlist_vocab_hash(m->src_tok);
    sl->tgt_hash = s2s_shortlist_vocab_hash(m->tgt_tok);
    sl->offsets = s2s_xmalloc(((size_t)Vs + 1) * sizeof *sl->offsets);
    size_t n_ids = 0;
    for (int s = 0; s < Vs; s++) {
        size_t len = row_off[s + 1] - row_off[s];
        n_ids += len < (size_t)top ? len : (size_t)top;
    }
    int overflow = n_ids > (size_t)INT32_MAX;
    sl->ids = s2s_xmalloc((n_ids ? n_ids : 1) * sizeof *sl->ids);
    cand *heap = s2s_xmalloc((size_t)(top < Vt ? top : Vt) * sizeof *heap);
    size_t o = 0;
    for (int s = 0; s < Vs && !overflow; s++) {
        sl->offsets[s] = (int32_t)o;
        int h = 0;
        for (size_t e = row_off[s]; e < row_off[s + 1]; e++) {
            cand c = {prob[e], cols.v[e]};
            if (h < top) { heap[h] = c; heap_up(heap, h++); }
            else if (cand_better(c, heap[0])) { heap[0] = c; heap_down(heap, h, 0); }
        }
        qsort(heap, (size_t)h, sizeof *heap, cand_cmp);
        for (int i = 0; i < h; i++) sl->ids[o++] = heap[i].id;
    }
    sl->offsets[Vs] = (int32_t)o;
    free(heap);
    free(row_off); free(cols.v); free(prob);

    /* ---- the most frequent target ids */
    int64_t *freq = s2s_xcalloc((size_t)Vt, sizeof *freq);
    for (size_t j = 0; j < T.id.n; j++) freq[T.id.v[j]] += T.cnt.v[j];
    side_free(&S); side_free(&T);
    if (overflow) {
        free(freq);
        s2s_shortlist_free(sl);
        s2s_errf(err, errlen, "shortlist too large (%zu candidates): lower top", n_ids);
        return NULL;
    }
    fcount *fc = s2s_xmalloc((size_t)Vt * sizeof *fc);
    int nf = 0;
    for (int t = S2S_NSPECIAL; t < Vt; t++)
        if (freq[t] > 0) fc[nf++] = (fcount){freq[t], t};
    qsort(fc, (size_t)nf, sizeof *fc, fcount_cmp);
    sl->n_frequent = nf < n_frequent ? nf : n_frequent;
    sl->freq = s2s_xmalloc((size_t)(sl->n_frequent ? sl->n_frequent : 1) * sizeof *sl->freq);
    for (int i = 0; i < sl->n_frequent; i++) sl->freq[i] = fc[i].id;
    free(fc); free(freq);
    if (!quiet)
        fprintf(stderr, "shortlist: %zu candidates for %d source ids, %d frequent target ids, %.1f s in all\n", o, Vs,
                sl->n_frequent, s2s_now() - t0);
    return sl;
}

/* ------------------------------------------------------------------ save / load */

int s2s_shortlist_save(const s2s_shortlist *sl, const char *path, char *err, size_t errlen) {
    if (!sl || !sl->offsets || sl->src_vocab < 1 || sl->tgt_vocab < 1 || sl->n_frequent < 0) {
        s2s_errf(err, errlen, "%s: not a valid shortlist to save", path);
        return -1;
    }
    s2s_st_writer *w = s2s_st_writer_new();
    int64_t so = (int64_t)sl->src_vocab + 1, si = sl->offsets[sl->src_vocab], sf = sl->n_frequent;
    s2s_st_writer_add(w, "offsets", S2S_DT_I32, 1, &so, sl->offsets);
    s2s_st_writer_add(w, "ids", S2S_DT_I32, 1, &si, si ? sl->ids : NULL);
    s2s_st_writer_add(w, "frequent", S2S_DT_I32, 1, &sf, sf ? sl->freq : NULL);
    char v[64];
    s2s_st_writer_meta(w, "format", "s2s-shortlist");
    s2s_st_writer_meta(w, "version", "1");
    snprintf(v, sizeof v, "%d", sl->src_vocab); s2s_st_writer_meta(w, "src_vocab", v);
    snprintf(v, sizeof v, "%d", sl->tgt_vocab); s2s_st_writer_meta(w, "tgt_vocab", v);
    snprintf(v, sizeof v, "%d", sl->top); s2s_st_writer_meta(w, "top", v);
    snprintf(v, sizeof v, "%d", sl->n_frequent); s2s_st_writer_meta(w, "frequent", v);
    snprintf(v, sizeof v, "%d", sl->iters); s2s_st_writer_meta(w, "iters", v);
    snprintf(v, sizeof v, "%016" PRIx64, sl->tgt_hash); s2s_st_writer_meta(w, "tgt_vocab_hash", v);
    snprintf(v, sizeof v, "%016" PRIx64, sl->src_hash); s2s_st_writer_meta(w, "src_vocab_hash", v);
    int rc = s2s_st_writer_save(w, path, err, errlen);
    s2s_st_writer_free(w);
    return rc;
}

/* Metadata integer in [lo, hi]: 0, or -1 with err. */
static int meta_int(const s2s_st_file *f, const char *path, const char *key, long lo, long hi, int *out, char *err,
                    size_t errlen) {
    const char *v = s2s_st_meta(f, key);
    if (!v) { s2s_errf(err, errlen, "%s: shortlist metadata has no '%s'", path, key); return -1; }
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || end == v || *end || x < lo || x > hi || !(*v >= '0' && *v <= '9')) {
        s2s_errf(err, errlen, "%s: shortlist metadata '%s' = '%.40s' is not an integer in [%ld, %ld]", path, key, v,
                 lo, hi);
        return -1;
    }
    *out = (int)x;
    return 0;
}

static int meta_hash(const s2s_st_file *f, const char *path, const char *key, uint64_t *out, char *err,
                     size_t errlen) {
    const char *v = s2s_st_meta(f, key);
    if (!v) { s2s_errf(err, errlen, "%s: shortlist metadata has no '%s'", path, key); return -1; }
    size_t n = strlen(v);
    uint64_t h = 0;
    int ok = n >= 1 && n <= 16;
    for (size_t i = 0; ok && i < n; i++) {
        char c = v[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0) ok = 0;
        else h = h << 4 | (uint64_t)d;
    }
    if (!ok) { s2s_errf(err, errlen, "%s: shortlist metadata '%s' = '%.40s' is not a 64-bit hex hash", path, key, v); return -1; }
    *out = h;
    return 0;
}

/* The I32 vector tensor name with n elements (n < 0: any): its data copied into a malloc'd
 * array (*out, at least one element), its length in *len; 0 or -1 with err. */
static int get_i32(const s2s_st_file *f, const char *path, const char *name, int64_t n, int32_t **out,
                   int64_t *len, char *err, size_t errlen) {
    const s2s_st_tensor *t = s2s_st_find(f, name);
    if (!t) { s2s_errf(err, errlen, "%s: shortlist has no tensor '%s'", path, name); return -1; }
    if (t->dtype != S2S_DT_I32) {
        s2s_errf(err, errlen, "%s: tensor '%s' is %s, a shortlist needs I32", path, name, s2s_dtype_name(t->dtype));
        return -1;
    }
    if (t->ndim != 1) { s2s_errf(err, errlen, "%s: tensor '%s' has %d dimensions, a shortlist needs 1", path, name, t->ndim); return -1; }
    if (n >= 0 && t->shape[0] != n) {
        s2s_errf(err, errlen, "%s: tensor '%s' has %" PRId64 " elements, expected %" PRId64, path, name, t->shape[0], n);
        return -1;
    }
    if (t->shape[0] > INT32_MAX) { s2s_errf(err, errlen, "%s: tensor '%s' is too large", path, name); return -1; }
    *len = t->shape[0];
    *out = s2s_xmalloc((size_t)(t->shape[0] ? t->shape[0] : 1) * sizeof **out);
    if (t->nbytes) memcpy(*out, t->data, t->nbytes);
    return 0;
}

s2s_shortlist *s2s_shortlist_load(const char *path, const struct s2s_model *m, char *err, size_t errlen) {
    s2s_st_file *f = s2s_st_open(path, err, errlen);
    if (!f) return NULL;
    s2s_shortlist *sl = NULL;
    const char *fmt = s2s_st_meta(f, "format");
    if (!fmt || strcmp(fmt, "s2s-shortlist") != 0) {
        if (fmt) s2s_errf(err, errlen, "%s: not a shortlist (metadata format '%.40s', expected 's2s-shortlist')", path, fmt);
        else s2s_errf(err, errlen, "%s: not a shortlist (no metadata format 's2s-shortlist')", path);
        goto fail;
    }
    const char *ver = s2s_st_meta(f, "version");
    if (!ver || strcmp(ver, "1") != 0) {
        s2s_errf(err, errlen, "%s: shortlist version '%.20s' is not supported (this build reads version 1)", path,
                 ver ? ver : "");
        goto fail;
    }
    sl = s2s_xcalloc(1, sizeof *sl);
    if (meta_int(f, path, "src_vocab", 1, INT32_MAX - 1, &sl->src_vocab, err, errlen) ||
        meta_int(f, path, "tgt_vocab", 1, INT32_MAX, &sl->tgt_vocab, err, errlen) ||
        meta_int(f, path, "top", 1, INT32_MAX, &sl->top, err, errlen) ||
        meta_int(f, path, "frequent", 0, INT32_MAX, &sl->n_frequent, err, errlen) ||
        meta_int(f, path, "iters", 1, INT32_MAX, &sl->iters, err, errlen) ||
        meta_hash(f, path, "src_vocab_hash", &sl->src_hash, err, errlen) ||
        meta_hash(f, path, "tgt_vocab_hash", &sl->tgt_hash, err, errlen))
        goto fail;
    int64_t n_off, n_ids, n_freq;
    if (get_i32(f, path, "offsets", (int64_t)sl->src_vocab + 1, &sl->offsets, &n_off, err, errlen) ||
        get_i32(f, path, "ids", -1, &sl->ids, &n_ids, err, errlen) ||
        get_i32(f, path, "frequent", sl->n_frequent, &sl->freq, &n_freq, err, errlen))
        goto fail;
    if (sl->offsets[0] != 0) { s2s_errf(err, errlen, "%s: shortlist offsets[0] is %d, not 0", path, sl->offsets[0]); goto fail; }
    for (int s = 0; s < sl->src_vocab; s++) {
        int64_t d = (int64_t)sl->offsets[s + 1] - sl->offsets[s];
        if (d < 0 || d > sl->top) {
            s2s_errf(err, errlen, "%s: shortlist offsets of source id %d give %" PRId64 " candidates (must be 0..%d)",
                     path, s, d, sl->top);
            goto fail;
        }
    }
    if (sl->offsets[sl->src_vocab] != n_ids) {
        s2s_errf(err, errlen, "%s: shortlist offsets end at %d but 'ids' has %" PRId64 " elements", path,
                 sl->offsets[sl->src_vocab], n_ids);
        goto fail;
    }
    for (int64_t i = 0; i < n_ids; i++)
        if (sl->ids[i] < 0 || sl->ids[i] >= sl->tgt_vocab) {
            s2s_errf(err, errlen, "%s: shortlist candidate %" PRId64 " is id %d, outside the target vocabulary [0, %d)",
                     path, i, sl->ids[i], sl->tgt_vocab);
            goto fail;
        }
    for (int64_t i = 0; i < n_freq; i++)
        if (sl->freq[i] < 0 || sl->freq[i] >= sl->tgt_vocab) {
            s2s_errf(err, errlen, "%s: shortlist frequent entry %" PRId64 " is id %d, outside the target vocabulary [0, %d)",
                     path, i, sl->freq[i], sl->tgt_vocab);
            goto fail;
        }
    if (m) {
        if (sl->src_vocab != m->cfg.src_vocab || sl->tgt_vocab != m->cfg.tgt_vocab) {
            s2s_errf(err, errlen, "%s: shortlist is for vocabularies of %d / %d pieces, the model has %d / %d", path,
                     sl->src_vocab, sl->tgt_vocab, m->cfg.src_vocab, m->cfg.tgt_vocab);
            goto fail;
        }
        uint64_t hs = s2s_shortlist_vocab_hash(m->src_tok), ht = s2s_shortlist_vocab_hash(m->tgt_tok);
        if (sl->src_hash != hs || sl->tgt_hash != ht) {
            s2s_errf(err, errlen, "%s: shortlist was built for another %s vocabulary (hash %016" PRIx64 ", the model's %016" PRIx64 ")",
                     path, sl->src_hash != hs ? "source" : "target", sl->src_hash != hs ? sl->src_hash : sl->tgt_hash,
                     sl->src_hash != hs ? hs : ht);
            goto fail;
        }
    }
    s2s_st_close(f);
    return sl;
fail:
    s2s_shortlist_free(sl);
    s2s_st_close(f);
    return NULL;
}
