/* bench_s2s.c - the s2s side of the CPU benchmark (bench/run.sh pairs it with
 * bench/torch_bench.py, the eager PyTorch baseline, on the same checkpoint).
 *
 * Same input conventions and JSON output lines as torch_bench.py, with impl "s2s":
 *
 *   build/bench_s2s -m MODEL.safetensors -i SRC.ids [--threads 2] [--beam 5]
 *       [--batch 1,32] [--max-len 64] [--outputs greedy.ids] [--beam-outputs beam.ids]
 *       [--train-src S.ids --train-tgt T.ids --tokens-per-batch 4096]
 *
 * Input files hold one sentence per line as space-separated token ids. A source line
 * gets </s> (2) appended unless it already ends with 2; a target line may carry a
 * leading <s> and/or trailing </s>, which are stripped.
 *
 * One JSON line per measurement on stdout:
 *   {"impl":"s2s","mode":"greedy"|"beam"|"train","batch":B,"beam":K,"threads":T,
 *    "tokens":N,"seconds":S,"tok_per_s":N/S, ...}
 * decode tokens = generated target tokens incl. </s>; train tokens = non-pad target
 * tokens (tgt_out, incl. </s>) of the timed steps (forward + backward + clip + AdamW).
 * Decode lines also split "seconds" into "encoder_seconds" (s2s_model_encode, the
 * device synced after each batch) and "decoder_seconds" (the search: the rest).
 *
 * Decoding drives libs2s directly: batches of consecutive input lines (no sorting),
 * the encoder on a no-grad graph (s2s_model_encode), then s2s_search (search.h) with
 * len_ratio off, so the length limit is the same fixed --max-len as torch's (generated
 * tokens incl. </s>; s2s caps it at the checkpoint's max_len - 1). Training takes the
 * batches exactly as torch_bench.py makes them (sort by length, pack by
 * tokens_per_batch, shuffle with Python's random.Random(1), reproduced below) and runs
 * the step of src/train.c: encode, decode_train, xent, backward, clip, AdamW.
 *
 * Helper modes for bench/run.sh:
 *   --dump-ids TEXT [--side src|tgt]   tokenize TEXT with the model's tokenizer -> ids
 *   --make-model OUT [--vocab 8000] [--corpus-src F] [--corpus-tgt F]
 *                                      random model (D=256 H=4 F=1024 6+6) for timing
 *   --info [-m MODEL] [--device cuda]  JSON lines: BLAS, OpenMP, compiler (and the GPU);
 *                                      the model's config
 *
 * --device cuda (CUDA builds only; bench/gpu.sh): decoding moves the model to the GPU
 * (s2s_model_to_cuda), runs the encoder on a CUDA graph and s2s_search on the
 * device encoder output; training moves a trainable model and the AdamW moments to
 * the GPU and runs the same step on a CUDA graph, reading the loss every step with
 * s2s_tensor_item (as src/train.c). --tf32 lets cuBLAS use TF32 tensor cores. Every
 * timed region ends with the GPU idle (decoding returns host ids; s2s_cuda_sync).
 * GPU lines add "tf32" and "gpu_mem_mb": device memory in use (cudaMemGetInfo) above
 * what was in use before the model was uploaded, the largest value seen after the
 * warm-up and after the timed run (graph arenas are kept across resets, so this is
 * close to the peak; short-lived buffers freed inside a call are not seen). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef _OPENMP
#include <omp.h>
#endif
#ifdef S2S_HAVE_BLAS
#include <cblas.h>
#endif

#ifdef S2S_CUDA
#include <cuda_runtime_api.h> /* cudaMemGetInfo only */
#endif

#include "common.h"
#include "graph.h"
#include "kernels_cuda.h"
#include "model.h"
#include "optim.h"
#include "s2s.h"
#include "search.h"
#include "shortlist.h"
#include "decoder_deed.h"
#include "tokenizer.h"

/* ------------------------------------------------------------------ utilities */

static void die(const char *fmt, const char *a) {
    fprintf(stderr, "bench_s2s: ");
    fprintf(stderr, fmt, a);
    fprintf(stderr, "\n");
    exit(1);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* GPU memory in use (MiB, whole device), or NAN without CUDA. */
static double gpu_used_mb(void) {
#ifdef S2S_CUDA
    size_t fr = 0, tot = 0;
    if (cudaMemGetInfo(&fr, &tot) == cudaSuccess) return (double)(tot - fr) / 1048576.0;
#endif
    return NAN;
}

/* *peak = max(*peak, GPU memory in use now - base). */
static void mem_peak(double *peak, double base) {
    double u = gpu_used_mb() - base;
    if (u > *peak) *peak = u;
}

/* Wait until the GPU has finished all queued work (no-op on the CPU). */
static void dev_sync(int cuda) {
#ifdef S2S_CUDA
    if (cuda) s2s_cuda_sync();
#else
    (void)cuda;
#endif
}

typedef struct {
    int n;
    int32_t **ids;
    int *len;
} idlist;

static void idlist_push(idlist *l, const int32_t *ids, int n) {
    l->ids = s2s_xrealloc(l->ids, (size_t)(l->n + 1) * sizeof *l->ids);
    l->len = s2s_xrealloc(l->len, (size_t)(l->n + 1) * sizeof *l->len);
    l->ids[l->n] = s2s_xmalloc((size_t)(n + 1) * sizeof(int32_t));
    if (n) memcpy(l->ids[l->n], ids, (size_t)n * sizeof(int32_t));
    l->len[l->n] = n;
    l->n++;
}

static void idlist_free(idlist *l) {
    for (int i = 0; i < l->n; i++) free(l->ids[i]);
    free(l->ids); free(l->len);
    memset(l, 0, sizeof *l);
}

/* One sentence per line, space-separated integer ids. */
static idlist read_ids(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) die("cannot open %s", path);
    idlist l = {0};
    char *line = NULL;
    size_t cap = 0;
    int32_t *buf = NULL;
    size_t bcap = 0;
    while (getline(&line, &cap, f) >= 0) {
        size_t n = 0;
        char *p = line, *end;
        for (;;) {
            long v = strtol(p, &end, 10);
            if (end == p) break;
            if (n == bcap) { bcap = bcap ? 2 * bcap : 64; buf = s2s_xrealloc(buf, bcap * sizeof(int32_t)); }
            buf[n++] = (int32_t)v;
            p = end;
        }
        while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
        if (*p) die("%s: not a line of integer ids", path);
        idlist_push(&l, buf, (int)n);
    }
    free(line); free(buf);
    fclose(f);
    return l;
}

/* torch_bench.src_seq: append </s> unless present. */
static void src_seq(idlist *l) {
    for (int i = 0; i < l->n; i++) {
        int n = l->len[i];
        if (n == 0 || l->ids[i][n - 1] != S2S_EOS) l->ids[i][l->len[i]++] = S2S_EOS;
    }
}

/* torch_bench.tgt_seq: strip a leading <s> and a trailing </s>. */
static void tgt_seq(idlist *l) {
    for (int i = 0; i < l->n; i++) {
        int32_t *x = l->ids[i];
        if (l->len[i] > 0 && x[0] == S2S_BOS) { memmove(x, x + 1, (size_t)(l->len[i] - 1) * sizeof(int32_t)); l->len[i]--; }
        if (l->len[i] > 0 && x[l->len[i] - 1] == S2S_EOS) l->len[i]--;
    }
}

static void check_ids(const idlist *l, int V, int maxlen, const char *what) {
    for (int i = 0; i < l->n; i++) {
        if (l->len[i] > maxlen) {
            fprintf(stderr, "bench_s2s: %s line %d has %d tokens, the model's max_len is %d\n", what, i + 1, l->len[i], maxlen);
            exit(1);
        }
        for (int j = 0; j < l->len[i]; j++)
            if (l->ids[i][j] < 0 || l->ids[i][j] >= V) {
                fprintf(stderr, "bench_s2s: %s line %d: id %d outside the vocabulary [0, %d)\n", what, i + 1, l->ids[i][j], V);
                exit(1);
            }
    }
}

static void write_ids(const char *path, int32_t **out, const int *len, int n) {
    FILE *f = fopen(path, "w");
    if (!f) die("cannot write %s", path);
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < len[i]; j++) fprintf(f, j ? " %d" : "%d", out[i][j]);
        fputc('\n', f);
    }
    fclose(f);
}

/* ------------------------------------------------------------------ decoding */

typedef struct {
    int32_t **out; /* [n] malloc'd ids, no <s>/</s> */
    int *len;
} hyps;

static void hyps_free(hyps *h, int n) {
    if (!h->out) return;
    for (int i = 0; i < n; i++) free(h->out[i]);
    free(h->out); free(h->len);
    h->out = NULL; h->len = NULL;
}

/* --shortlist: the lexical shortlist every batch's search uses (NULL: the whole
 * vocabulary), and the candidates per batch summed since the caller last zeroed them. */
static const s2s_shortlist *g_shortlist;
static double g_sel_sum, g_sel_batches;

/* Seconds decode_all spent in the encoder (device synced after each batch's encoder),
 * summed since the caller last zeroed it; the rest of a run is the decoder (search). */
static double g_encode_s;

/* Decode srcs[0..n) in batches of bs consecutive lines (torch_bench.decode_all). */
static hyps decode_all(const s2s_model *m, s2s_graph *g, const idlist *srcs, int n, int bs,
                       const s2s_search_opts *so) {
    hyps h;
    h.out = s2s_xcalloc((size_t)n, sizeof *h.out);
    h.len = s2s_xcalloc((size_t)n, sizeof *h.len);
    int Tmax = 1;
    for (int i = 0; i < n; i++) if (srcs->len[i] > Tmax) Tmax = srcs->len[i];
    int32_t *src = s2s_xmalloc((size_t)bs * Tmax * sizeof(int32_t));
    int32_t *slen = s2s_xmalloc((size_t)bs * sizeof(int32_t));
    for (int s = 0; s < n; s += bs) {
        int B = n - s < bs ? n - s : bs, Ts = 0;
        for (int b = 0; b < B; b++) if (srcs->len[s + b] > Ts) Ts = srcs->len[s + b];
        for (int b = 0; b < B; b++) {
            int L = srcs->len[s + b];
            slen[b] = L;
            memcpy(src + (size_t)b * Ts, srcs->ids[s + b], (size_t)L * sizeof(int32_t));
            for (int t = L; t < Ts; t++) src[(size_t)b * Ts + t] = S2S_PAD;
        }
        s2s_graph_reset(g);
        double te = now_s();
        s2s_tensor *enc = s2s_model_encode(g, m, src, slen, B, Ts, 0.0f);
        dev_sync(s2s_graph_is_cuda(g));
        g_encode_s += now_s() - te;
        /* on a CUDA graph the encoder output is in device memory, and s2s_search
         * decodes on the GPU (the model is on the GPU) */
        const float *ep = s2s_graph_is_cuda(g) ? enc->dev_data : enc->data;
        s2s_search_opts o = *so;
        s2s_vocab_sel *vs = s2s_vocab_sel_new(g_shortlist, m, src, slen, B, Ts); /* in the decoder's time */
        o.vocab = vs;
        if (vs) { g_sel_sum += vs->n; g_sel_batches++; }
        s2s_search(m, ep, slen, B, Ts, &o, h.out + s, h.len + s, NULL);
        s2s_vocab_sel_free(vs);
    }
    s2s_graph_reset(g);
    free(src); free(slen);
    return h;
}

/* torch_bench.n_generated: a hypothesis shorter than the limit ended with </s>. */
static long n_generated(const hyps *h, int n, int lim) {
    long t = 0;
    for (int i = 0; i < n; i++) t += h->len[i] + (h->len[i] < lim ? 1 : 0);
    return t;
}

/* ------------------------------------------------------------------ training batches */

/* MT19937 seeded like CPython's random.Random(int) (init_by_array on the 32-bit
 * words of the seed), so the batch shuffle equals torch_bench.make_train_batches'. */
typedef struct { uint32_t mt[624]; int i; } mt19937;

static void mt_init(mt19937 *r, uint32_t s) {
    r->mt[0] = s;
    for (int i = 1; i < 624; i++) r->mt[i] = 1812433253u * (r->mt[i - 1] ^ (r->mt[i - 1] >> 30)) + (uint32_t)i;
    r->i = 624;
}

static void mt_init_by_array(mt19937 *r, const uint32_t *key, int klen) {
    mt_init(r, 19650218u);
    int i = 1, j = 0;
    for (int k = 624 > klen ? 624 : klen; k; k--) {
        r->mt[i] = (r->mt[i] ^ ((r->mt[i - 1] ^ (r->mt[i - 1] >> 30)) * 1664525u)) + key[j] + (uint32_t)j;
        i++; j++;
        if (i >= 624) { r->mt[0] = r->mt[623]; i = 1; }
        if (j >= klen) j = 0;
    }
    for (int k = 623; k; k--) {
        r->mt[i] = (r->mt[i] ^ ((r->mt[i - 1] ^ (r->mt[i - 1] >> 30)) * 1566083941u)) - (uint32_t)i;
        i++;
        if (i >= 624) { r->mt[0] = r->mt[623]; i = 1; }
    }
    r->mt[0] = 0x80000000u;
    r->i = 624;
}

static uint32_t mt_next(mt19937 *r) {
    if (r->i >= 624) {
        for (int k = 0; k < 624; k++) {
            uint32_t y = (r->mt[k] & 0x80000000u) | (r->mt[(k + 1) % 624] & 0x7fffffffu);
            r->mt[k] = r->mt[(k + 397) % 624] ^ (y >> 1) ^ ((y & 1u) ? 0x9908b0dfu : 0u);
        }
        r->i = 0;
    }
    uint32_t y = r->mt[r->i++];
    y ^= y >> 11;
    y ^= (y << 7) & 0x9d2c5680u;
    y ^= (y << 15) & 0xefc60000u;
    y ^= y >> 18;
    return y;
}

/* random._randbelow_with_getrandbits for n < 2^32 */
static uint32_t mt_below(mt19937 *r, uint32_t n) {
    int k = 0;
    while (k < 32 && (n >> k)) k++; /* n.bit_length() */
    uint32_t v;
    do v = mt_next(r) >> (32 - k); while (v >= n);
    return v;
}

static const idlist *g_ts, *g_tt;
static int by_len(const void *a, const void *b) {
    int x = *(const int *)a, y = *(const int *)b;
    if (g_ts->len[x] != g_ts->len[y]) return g_ts->len[x] - g_ts->len[y];
    if (g_tt->len[x] != g_tt->len[y]) return g_tt->len[x] - g_tt->len[y];
    return x - y; /* Python's sort is stable */
}

typedef struct {
    int B, Ts, Tt, ntok, nsrc;
    int32_t *src, *slen, *tin, *tout;
} batch;

/* torch_bench.make_train_batches + torch_ref.make_src_batch / make_tgt_batch */
static batch *make_train_batches(const idlist *ts, const idlist *tt, int tpb, int *nb_out) {
    int n = ts->n;
    int *order = s2s_xmalloc((size_t)n * sizeof(int));
    for (int i = 0; i < n; i++) order[i] = i;
    g_ts = ts; g_tt = tt;
    qsort(order, (size_t)n, sizeof(int), by_len);
    int *start = s2s_xmalloc((size_t)(n + 1) * sizeof(int)), nb = 0, cur = 0, mx = 0;
    for (int q = 0; q < n; q++) {
        int i = order[q];
        int li = ts->len[i] > tt->len[i] + 1 ? ts->len[i] : tt->len[i] + 1;
        int mm = mx > li ? mx : li;
        if (cur > 0 && (long)(cur + 1) * mm > tpb) {
            start[nb++] = q - cur;
            cur = 0; mm = li;
        }
        cur++;
        mx = mm;
    }
    if (cur > 0) start[nb++] = n - cur;
    start[nb] = n;
    int *perm = s2s_xmalloc((size_t)nb * sizeof(int));
    for (int b = 0; b < nb; b++) perm[b] = b;
    mt19937 r;
    uint32_t key = 1;
    mt_init_by_array(&r, &key, 1);
    for (int i = nb - 1; i > 0; i--) {
        int j = (int)mt_below(&r, (uint32_t)(i + 1));
        int t = perm[i]; perm[i] = perm[j]; perm[j] = t;
    }
    batch *out = s2s_xcalloc((size_t)nb, sizeof *out);
    for (int k = 0; k < nb; k++) {
        batch *bt = &out[k];
        const int *idx = order + start[perm[k]];
        int B = start[perm[k] + 1] - start[perm[k]], Ts = 0, Tt = 0;
        for (int b = 0; b < B; b++) {
            if (ts->len[idx[b]] > Ts) Ts = ts->len[idx[b]];
            if (tt->len[idx[b]] + 1 > Tt) Tt = tt->len[idx[b]] + 1;
        }
        bt->B = B; bt->Ts = Ts; bt->Tt = Tt;
        bt->src = s2s_xcalloc((size_t)B * Ts, sizeof(int32_t));
        bt->slen = s2s_xmalloc((size_t)B * sizeof(int32_t));
        bt->tin = s2s_xcalloc((size_t)B * Tt, sizeof(int32_t));
        bt->tout = s2s_xcalloc((size_t)B * Tt, sizeof(int32_t));
        for (int b = 0; b < B; b++) {
            int i = idx[b], tl = tt->len[i];
            memcpy(bt->src + (size_t)b * Ts, ts->ids[i], (size_t)ts->len[i] * sizeof(int32_t));
            bt->slen[b] = ts->len[i];
            int32_t *ti = bt->tin + (size_t)b * Tt, *to = bt->tout + (size_t)b * Tt;
            ti[0] = S2S_BOS;
            memcpy(ti + 1, tt->ids[i], (size_t)tl * sizeof(int32_t));
            memcpy(to, tt->ids[i], (size_t)tl * sizeof(int32_t));
            to[tl] = S2S_EOS;
            bt->ntok += tl + 1;
            bt->nsrc += ts->len[i];
        }
    }
    free(order); free(start); free(perm);
    *nb_out = nb;
    return out;
}

/* ------------------------------------------------------------------ helper modes */

static int dump_ids(const char *model, const char *text, const char *side, int limit) {
    char err[512];
    s2s_model *m = s2s_load(model, err, sizeof err);
    if (!m) die("%s", err);
    const s2s_tokenizer *tok = strcmp(side, "tgt") == 0 ? m->tgt_tok : m->src_tok;
    FILE *f = fopen(text, "r");
    if (!f) die("cannot open %s", text);
    char *line = NULL;
    size_t cap = 0;
    int maxl = m->cfg.max_len - 1, n = 0;
    int32_t *ids = s2s_xmalloc((size_t)(maxl + 1) * sizeof(int32_t));
    ssize_t k;
    while ((limit <= 0 || n < limit) && (k = getline(&line, &cap, f)) >= 0) {
        while (k > 0 && (line[k - 1] == '\n' || line[k - 1] == '\r')) line[--k] = '\0';
        char *tab = strchr(line, '\t'); /* dev/test targets: first alternative */
        if (tab) *tab = '\0';
        int len = s2s_tok_encode(tok, line, ids, maxl);
        if (len < 0) die("%s: invalid UTF-8", text);
        if (len > maxl) len = maxl;
        for (int j = 0; j < len; j++) printf(j ? " %d" : "%d", ids[j]);
        putchar('\n');
        n++;
    }
    free(line); free(ids);
    fclose(f);
    s2s_free(m);
    return 0;
}

static char **read_text(const char *path, size_t *n) {
    FILE *f = fopen(path, "r");
    if (!f) die("cannot open %s", path);
    char **v = NULL, *line = NULL;
    size_t cap = 0;
    ssize_t k;
    *n = 0;
    while ((k = getline(&line, &cap, f)) >= 0) {
        while (k > 0 && (line[k - 1] == '\n' || line[k - 1] == '\r')) line[--k] = '\0';
        char *tab = strchr(line, '\t');
        if (tab) *tab = '\0';
        v = s2s_xrealloc(v, (*n + 1) * sizeof *v);
        v[(*n)++] = s2s_xstrdup(line);
    }
    free(line);
    fclose(f);
    return v;
}

/* Tokenizer of `kind` learned from corpus lines (if any) plus synthetic lines that
 * bring the number of distinct pieces to at least vocab: code points from U+4E00 for
 * CHAR, symbols "w0 w1 ..." for SYMBOL. Frequent corpus pieces come first. */
static s2s_tokenizer *fill_tokenizer(s2s_tok_kind kind, const char *corpus, int vocab) {
    size_t n = 0;
    char **lines = corpus ? read_text(corpus, &n) : NULL;
    int fill = vocab, per = 16;
    for (int i = 0; i < fill; i += per) {
        char buf[16 * 12 + 1];
        size_t o = 0;
        for (int j = i; j < i + per && j < fill; j++) {
            if (kind == S2S_TOK_CHAR) { /* 3-byte UTF-8 of U+4E00 + j */
                unsigned cp = 0x4E00u + (unsigned)j;
                buf[o++] = (char)(0xE0 | (cp >> 12));
                buf[o++] = (char)(0x80 | ((cp >> 6) & 0x3F));
                buf[o++] = (char)(0x80 | (cp & 0x3F));
            } else {
                o += (size_t)snprintf(buf + o, sizeof buf - o, j > i ? " w%d" : "w%d", j);
            }
        }
        buf[o] = '\0';
        lines = s2s_xrealloc(lines, (n + 1) * sizeof *lines);
        lines[n++] = s2s_xstrdup(buf);
    }
    char err[256];
    s2s_tokenizer *t = s2s_tok_learn(kind, (const char *const *)lines, n, vocab, 1, err, sizeof err);
    if (!t) die("learning a tokenizer: %s", err);
    for (size_t i = 0; i < n; i++) free(lines[i]);
    free(lines);
    return t;
}

static int make_model(const char *out, int vocab, const char *csrc, const char *ctgt) {
    s2s_config c;
    s2s_config_default(&c); /* D=256 H=4 F=1024 6+6 relu max_len 256 */
    s2s_tokenizer *st = fill_tokenizer(S2S_TOK_CHAR, csrc, vocab);
    s2s_tokenizer *tt = fill_tokenizer(S2S_TOK_SYMBOL, ctgt, vocab);
    c.src_vocab = s2s_tok_vocab_size(st);
    c.tgt_vocab = s2s_tok_vocab_size(tt);
    c.share_src_emb = 0;
    char err[512];
    if (s2s_config_check(&c, err, sizeof err) != 0) die("%s", err);
    s2s_model *m = s2s_model_create(&c, st, tt, 1);
    /* stored in fp16, like the shipped models (both implementations read the same values) */
    if (s2s_model_save(m, out, NULL, 0, NULL, 0, 1, err, sizeof err) != 0) die("%s", err);
    fprintf(stderr, "bench_s2s: wrote %s: random model, %zu parameters (D=%d H=%d F=%d %d+%d layers, vocab %d/%d)\n",
            out, s2s_model_param_count(m), c.d_model, c.n_heads, c.d_ff, c.enc_layers, c.dec_layers,
            c.src_vocab, c.tgt_vocab);
    s2s_model_free(m);
    return 0;
}

static int print_info(const char *model, int cuda) {
    const char *blas = "none";
#ifdef S2S_HAVE_BLAS
    blas = openblas_get_config();
#endif
    int procs = 1;
#ifdef _OPENMP
    procs = omp_get_num_procs();
#endif
    printf("{\"blas\":\"%s\",\"openmp\":%d,\"procs\":%d,\"compiler\":\"%s\"}\n", blas,
#ifdef _OPENMP
           _OPENMP,
#else
           0,
#endif
           procs, __VERSION__);
    if (cuda) /* checked by main: a CUDA build with a usable GPU */
        printf("{\"cuda\":%d,\"cuda_device\":\"%s\"}\n", s2s_cuda_available(), s2s_cuda_device_name());
    if (model) { /* the checkpoint's config, for bench/run.sh */
        char err[512];
        s2s_model *m = s2s_load(model, err, sizeof err);
        if (!m) die("%s", err);
        const s2s_config *c = &m->cfg;
        printf("{\"params\":%zu,\"d_model\":%d,\"n_heads\":%d,\"d_ff\":%d,\"enc_layers\":%d,"
               "\"dec_layers\":%d,\"src_vocab\":%d,\"tgt_vocab\":%d,\"max_len\":%d,\"share_src_emb\":%d,"
               "\"decoder\":\"%s\"}\n",
               s2s_model_param_count(m), c->d_model, c->n_heads, c->d_ff, c->enc_layers, c->dec_layers,
               c->src_vocab, c->tgt_vocab, c->max_len, c->share_src_emb, c->decoder);
        s2s_free(m);
    }
    return 0;
}

/* ------------------------------------------------------------------ main */

static void usage(void) {
    fprintf(stderr,
            "usage: bench_s2s -m MODEL -i SRC.ids [--threads T] [--beam K] [--batch 1,32] [--max-len N]\n"
            "         [--length-penalty A] [--limit N] [--no-greedy] [--outputs F] [--beam-outputs F]\n"
            "         [--train-src S.ids --train-tgt T.ids] [--tokens-per-batch N] [--train-steps N]\n"
            "         [--train-warmup N] [--dropout P] [--label-smoothing E] [--lr X] [--warmup N]\n"
            "         [--weight-decay W] [--clip C] [--device cpu|cuda] [--tf32]\n"
            "         [--exit-threshold TAU [--exit-metric maxprob|margin] [--exit-states jit|copy]]\n"
            "         (DEED early exit of a multi-exit model, CPU: JSON lines get avg_exit_layer)\n"
            "         [--shortlist FILE]  (lexical shortlist, CPU: JSON lines get shortlist_avg)\n"
            "       bench_s2s -m MODEL --dump-ids TEXT [--side src|tgt] [--limit N]\n"
            "       bench_s2s --make-model OUT [--vocab 8000] [--corpus-src F] [--corpus-tgt F]\n"
            "       bench_s2s --info [-m MODEL] [--device cuda]\n"
            "Same inputs and JSON lines as bench/torch_bench.py (see the header of bench/bench_s2s.c).\n");
    exit(2);
}

int main(int argc, char **argv) {
    const char *model = NULL, *input = NULL, *outputs = NULL, *beam_outputs = NULL;
    const char *train_src = NULL, *train_tgt = NULL, *batch_list = "1,32";
    const char *dump = NULL, *side = "src", *make = NULL, *csrc = NULL, *ctgt = NULL, *shortlist = NULL;
    int threads = 1, beam = 4, max_len = 0, limit = 0, no_greedy = 0, vocab = 8000;
    int tpb = 4096, train_steps = 10, train_warmup = 2, info = 0, cuda = 0, tf32 = 0;
    float lp = 1.0f, dropout = 0.1f, ls = 0.1f, lr = 5e-4f, warmup = 4000, wd = 0.01f, clip = 1.0f;
    float exit_tau = -1.0f; /* DEED: < 0 off */
    int exit_metric = S2S_EXIT_MAXPROB, exit_states = S2S_EXIT_JIT;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
#define ARG() (i + 1 < argc ? argv[++i] : (usage(), ""))
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) model = ARG();
        else if (!strcmp(a, "-i") || !strcmp(a, "--input")) input = ARG();
        else if (!strcmp(a, "--threads")) threads = atoi(ARG());
        else if (!strcmp(a, "--beam")) beam = atoi(ARG());
        else if (!strcmp(a, "--batch")) batch_list = ARG();
        else if (!strcmp(a, "--max-len")) max_len = atoi(ARG());
        else if (!strcmp(a, "--length-penalty")) lp = (float)atof(ARG());
        else if (!strcmp(a, "--limit")) limit = atoi(ARG());
        else if (!strcmp(a, "--no-greedy")) no_greedy = 1;
        else if (!strcmp(a, "--exit-threshold")) exit_tau = (float)atof(ARG());
        else if (!strcmp(a, "--shortlist")) shortlist = ARG();
        else if (!strcmp(a, "--exit-metric")) {
            const char *v = ARG();
            if (!strcmp(v, "maxprob")) exit_metric = S2S_EXIT_MAXPROB;
            else if (!strcmp(v, "margin")) exit_metric = S2S_EXIT_MARGIN;
            else usage();
        } else if (!strcmp(a, "--exit-states")) {
            const char *v = ARG();
            if (!strcmp(v, "jit")) exit_states = S2S_EXIT_JIT;
            else if (!strcmp(v, "copy")) exit_states = S2S_EXIT_COPY;
            else usage();
        }
        else if (!strcmp(a, "--outputs")) outputs = ARG();
        else if (!strcmp(a, "--beam-outputs")) beam_outputs = ARG();
        else if (!strcmp(a, "--train-src")) train_src = ARG();
        else if (!strcmp(a, "--train-tgt")) train_tgt = ARG();
        else if (!strcmp(a, "--tokens-per-batch")) tpb = atoi(ARG());
        else if (!strcmp(a, "--train-steps")) train_steps = atoi(ARG());
        else if (!strcmp(a, "--train-warmup")) train_warmup = atoi(ARG());
        else if (!strcmp(a, "--dropout")) dropout = (float)atof(ARG());
        else if (!strcmp(a, "--label-smoothing")) ls = (float)atof(ARG());
        else if (!strcmp(a, "--lr")) lr = (float)atof(ARG());
        else if (!strcmp(a, "--warmup")) warmup = (float)atof(ARG());
        else if (!strcmp(a, "--weight-decay")) wd = (float)atof(ARG());
        else if (!strcmp(a, "--clip")) clip = (float)atof(ARG());
        else if (!strcmp(a, "--device")) {
            const char *d = ARG();
            if (!strcmp(d, "cuda") || !strcmp(d, "cuda:0")) cuda = 1;
            else if (!strcmp(d, "cpu")) cuda = 0;
            else die("--device %s: expected cpu or cuda", d);
        }
        else if (!strcmp(a, "--tf32")) tf32 = 1;
        else if (!strcmp(a, "--dump-ids")) dump = ARG();
        else if (!strcmp(a, "--side")) side = ARG();
        else if (!strcmp(a, "--make-model")) make = ARG();
        else if (!strcmp(a, "--vocab")) vocab = atoi(ARG());
        else if (!strcmp(a, "--corpus-src")) csrc = ARG();
        else if (!strcmp(a, "--corpus-tgt")) ctgt = ARG();
        else if (!strcmp(a, "--info")) info = 1;
        else usage();
#undef ARG
    }
    if (cuda) {
#ifdef S2S_CUDA
        if (!s2s_cuda_available()) die("%s", "--device cuda: no CUDA device is available");
        s2s_cuda_set_tf32(tf32);
#else
        die("%s", "--device cuda: this bench_s2s was built without CUDA (rebuild with make CUDA=1)");
#endif
    }
    const char *devname = cuda ? s2s_cuda_device_name() : "cpu";
    if (info) return print_info(model, cuda);
    if (make) return make_model(make, vocab, csrc, ctgt);
    if (!model) usage();
    if (dump) return dump_ids(model, dump, side, limit);
    if ((train_src != NULL) != (train_tgt != NULL)) die("%s", "--train-src and --train-tgt go together");
    if (threads < 1) threads = 1;
    s2s_threads(threads);

    char err[512];
    if (input) {
        s2s_model *m = s2s_load(model, err, sizeof err);
        if (!m) die("%s", err);
        double mem0 = cuda ? gpu_used_mb() : NAN, mem = 0; /* the first call creates the context */
        if (exit_tau >= 0 && (!m->cfg.multi_exit || cuda))
            die("--exit-threshold needs a multi-exit model on the CPU (%s)", model);
        s2s_shortlist *sl = NULL;
        if (shortlist && cuda) die("%s", "--shortlist runs on the CPU only");
        if (shortlist && !(sl = s2s_shortlist_load(shortlist, m, err, sizeof err))) die("%s", err);
        g_shortlist = sl;
        if (cuda && s2s_model_to_cuda(m, err, sizeof err) != 0) die("%s", err);
        idlist srcs = read_ids(input);
        if (limit > 0 && limit < srcs.n) {
            for (int i = limit; i < srcs.n; i++) free(srcs.ids[i]);
            srcs.n = limit;
        }
        src_seq(&srcs);
        check_ids(&srcs, m->cfg.src_vocab, m->cfg.max_len, input);
        int cap = m->cfg.max_len - 1;
        int lim = max_len > 0 ? max_len : cap;
        if (lim > cap) {
            fprintf(stderr, "bench_s2s: --max-len %d capped at the checkpoint's max_len - 1 = %d\n", lim, cap);
            lim = cap;
        }
        int bsz[16], nbs = 0;
        for (const char *p = batch_list; *p && nbs < 16;) {
            char *end;
            long v = strtol(p, &end, 10);
            if (end == p) die("bad --batch %s", batch_list);
            if (v > 0) bsz[nbs++] = (int)v;
            p = *end == ',' ? end + 1 : end;
        }
        for (int i = 1; i < nbs; i++) /* sorted, unique (as torch_bench) */
            for (int j = i; j > 0 && bsz[j] < bsz[j - 1]; j--) { int t = bsz[j]; bsz[j] = bsz[j - 1]; bsz[j - 1] = t; }
        int nu = 0;
        for (int i = 0; i < nbs; i++) if (nu == 0 || bsz[i] != bsz[nu - 1]) bsz[nu++] = bsz[i];
        nbs = nu;
        s2s_graph *g = cuda ? s2s_graph_new_cuda(err, sizeof err) : s2s_graph_new();
        if (!g) die("%s", err);
        s2s_graph_set_grad(g, 0);
        for (int run = 0; run < 2; run++) {
            int k = run == 0 ? 1 : beam;
            if (run == 0 && no_greedy) continue;
            if (run == 1 && k <= 1) continue;
            s2s_search_opts so;
            s2s_search_opts_default(&so);
            so.beam = k;
            so.max_len = lim;
            so.len_ratio = 0.0f; /* torch has a fixed limit only */
            so.length_penalty = lp;
            s2s_exit_stats xstats;
            s2s_exit_opts xo = {exit_tau, exit_metric, exit_states, &xstats, 0};
            if (exit_tau >= 0 && exit_tau <= 1) so.exit = &xo; /* above 1: the full-depth decoder */
            for (int bi = 0; bi < nbs; bi++) {
                int bs = bsz[bi];
                int nw = bs > 4 ? bs : 4;
                if (nw > srcs.n) nw = srcs.n;
                hyps w = decode_all(m, g, &srcs, nw, bs, &so); /* warm-up */
                hyps_free(&w, nw);
                dev_sync(cuda);
                if (cuda) mem_peak(&mem, mem0);
                memset(&xstats, 0, sizeof xstats);
                g_encode_s = 0;
                g_sel_sum = g_sel_batches = 0;
                double t0 = now_s();
                hyps h = decode_all(m, g, &srcs, srcs.n, bs, &so);
                dev_sync(cuda); /* decoding returns host ids: nothing is left queued */
                double dt = now_s() - t0;
                if (cuda) mem_peak(&mem, mem0);
                long ntok = n_generated(&h, srcs.n, lim);
                printf("{\"impl\": \"s2s\", \"threads\": %d, \"device\": \"%s\", \"mode\": \"%s\", \"batch\": %d, "
                       "\"beam\": %d, \"sentences\": %d, \"tokens\": %ld, \"seconds\": %.6f, \"tok_per_s\": %.3f",
                       threads, devname, run == 0 ? "greedy" : "beam", bs, k, srcs.n, ntok, dt, (double)ntok / dt);
                if (cuda) printf(", \"tf32\": %d, \"gpu_mem_mb\": %.1f", tf32, mem);
                /* the encoder's share (NASH narrows the encoder, shortens the decoder) */
                printf(", \"encoder_seconds\": %.6f, \"decoder_seconds\": %.6f", g_encode_s, dt - g_encode_s);
                if (exit_tau >= 0)
                    printf(", \"exit_threshold\": %g, \"exit_metric\": \"%s\", \"exit_states\": \"%s\", \"avg_exit_layer\": %.4f",
                           exit_tau, exit_metric ? "margin" : "maxprob", exit_states ? "copy" : "jit",
                           so.exit ? s2s_exit_stats_avg(&xstats) : (double)m->cfg.dec_layers);
                if (sl) printf(", \"shortlist_avg\": %.1f", g_sel_batches > 0 ? g_sel_sum / g_sel_batches : 0.0);
                printf("}\n");
                fflush(stdout);
                const char *o = run == 0 ? outputs : beam_outputs;
                if (bi == 0 && o) write_ids(o, h.out, h.len, srcs.n);
                hyps_free(&h, srcs.n);
            }
        }
        s2s_graph_free(g);
        idlist_free(&srcs);
        s2s_shortlist_free(sl);
        g_shortlist = NULL;
        s2s_free(m);
    }

    if (train_src) {
        s2s_model *m = s2s_model_load(model, 1, err, sizeof err);
        if (!m) die("%s", err);
        idlist ts = read_ids(train_src), tt = read_ids(train_tgt);
        if (ts.n != tt.n) die("%s", "train files differ in line count");
        if (ts.n == 0) die("%s: empty", train_src);
        src_seq(&ts);
        tgt_seq(&tt);
        check_ids(&ts, m->cfg.src_vocab, m->cfg.max_len, train_src);
        check_ids(&tt, m->cfg.tgt_vocab, m->cfg.max_len - 1, train_tgt);
        int nb;
        batch *data = make_train_batches(&ts, &tt, tpb, &nb);
        s2s_adamw opt;
        s2s_adamw_init(&opt, m);
        double mem0 = cuda ? gpu_used_mb() : NAN, mem = 0;
        if (cuda) { /* weights, gradients and moments on the GPU, as src/train.c */
            if (s2s_model_to_cuda(m, err, sizeof err) != 0) die("%s", err);
            s2s_adamw_to_cuda(&opt, m);
        }
        s2s_graph *g = cuda ? s2s_graph_new_cuda(err, sizeof err) : s2s_graph_new();
        if (!g) die("%s", err);
        uint64_t rng = 12345;
        s2s_graph_set_training(g, 1, &rng);
        long step = 0;
        long ntok = 0, nsrc = 0, nsent = 0;
        float last = NAN;
        double t0 = 0;
        size_t arena = 0; /* bytes of graph arena (zeroed per allocation) in the largest step */
        for (int it = 0; it < train_warmup + train_steps; it++) {
            if (it == train_warmup) {
                dev_sync(cuda);
                if (cuda) mem_peak(&mem, mem0);
                t0 = now_s();
            }
            const batch *bt = &data[step % nb];
            step++;
            s2s_zero_grad(m);
            s2s_graph_reset(g);
            s2s_tensor *enc = s2s_model_encode(g, m, bt->src, bt->slen, bt->B, bt->Ts, dropout);
            s2s_tensor *logits = s2s_model_decode_train(g, m, enc, bt->slen, bt->tin, bt->B, bt->Tt, dropout);
            s2s_tensor *loss = s2s_xent(g, logits, bt->tout, ls, S2S_PAD, NULL);
            s2s_graph_backward(g, loss);
            s2s_clip_grad_norm(m, clip);
            s2s_adamw_step(&opt, m, s2s_lr_at(lr, warmup, step), wd, step);
            float lv = s2s_tensor_item(g, loss); /* every step, as src/train.c (synchronises) */
            if (s2s_graph_arena_used(g) > arena) arena = s2s_graph_arena_used(g);
            if (it >= train_warmup) {
                ntok += bt->ntok; nsrc += bt->nsrc; nsent += bt->B;
                last = lv;
            }
        }
        dev_sync(cuda);
        double dt = now_s() - t0;
        if (cuda) mem_peak(&mem, mem0);
        int steps = train_steps > 0 ? train_steps : 1;
        printf("{\"impl\": \"s2s\", \"threads\": %d, \"device\": \"%s\", \"mode\": \"train\", \"batch\": %ld, "
               "\"beam\": 0, \"tokens\": %ld, \"seconds\": %.6f, \"tok_per_s\": %.3f, \"src_tokens\": %ld, "
               "\"steps\": %d, \"tokens_per_batch\": %d, \"n_batches\": %d, \"last_loss\": %.5f, \"arena_mb\": %.1f",
               threads, devname, lround((double)nsent / steps), ntok, dt, dt > 0 ? (double)ntok / dt : 0.0, nsrc,
               train_steps, tpb, nb, (double)last, (double)arena / 1048576.0);
        if (cuda) printf(", \"tf32\": %d, \"gpu_mem_mb\": %.1f", tf32, mem);
        printf("}\n");
        fflush(stdout);
        s2s_graph_free(g);
        s2s_adamw_free(&opt);
        for (int i = 0; i < nb; i++) { free(data[i].src); free(data[i].slen); free(data[i].tin); free(data[i].tout); }
        free(data);
        idlist_free(&ts); idlist_free(&tt);
        s2s_model_free(m);
    }
    return 0;
}
