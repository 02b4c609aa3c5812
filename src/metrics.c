/* metrics.c - BLEU and chrF as sacreBLEU 2.x computes them by default, and
 * WER/PER for grapheme-to-phoneme output. See metrics.h for the definitions.
 *
 * Everything works on Unicode code points (uint32_t) decoded from strict UTF-8.
 * BLEU tokens are interned to dense ids; n-grams (of tokens for BLEU, of
 * characters for chrF) get per-line ids from a hash map keyed by (id of the
 * (n-1)-gram prefix, last symbol), so counting is linear in the line length.
 * Only reference n-grams that also occur in the hypothesis are counted (the
 * others cannot match). Scratch buffers grow as needed and are reused across
 * lines; there are no line-length limits. */
#include "metrics.h"

#include <math.h>
#include <string.h>

#include "common.h"

/* ------------------------------------------------------------------------ */
/* growable buffers                                                         */

typedef struct {
    uint32_t *p;
    size_t n, cap;
} u32buf;

static void u32_reserve(u32buf *b, size_t need) {
    if (need <= b->cap) return;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need) cap *= 2;
    b->p = s2s_xrealloc(b->p, cap * sizeof *b->p);
    b->cap = cap;
}
static inline void u32_push(u32buf *b, uint32_t v) {
    if (b->n == b->cap) u32_reserve(b, b->n + 1);
    b->p[b->n++] = v;
}
static void u32_free(u32buf *b) { free(b->p); b->p = NULL; b->n = b->cap = 0; }

#define GROW(ptr, cap, need)                                                   \
    do {                                                                       \
        if ((need) > (cap)) {                                                  \
            size_t c_ = (cap) ? (cap) : 64;                                    \
            while (c_ < (need)) c_ *= 2;                                       \
            (ptr) = s2s_xrealloc((ptr), c_ * sizeof *(ptr));                   \
            (cap) = c_;                                                        \
        }                                                                      \
    } while (0)

/* ------------------------------------------------------------------------ */
/* UTF-8                                                                    */

/* Length of the well-formed sequence at s[0..n), or 0 if malformed. */
static size_t utf8_seq(const unsigned char *s, size_t n, uint32_t *cp) {
    unsigned c = s[0];
    if (c >= 0x01 && c < 0x80) { *cp = c; return 1; }
    if (c >= 0xC2 && c <= 0xDF) {
        if (n < 2 || (s[1] & 0xC0) != 0x80) return 0;
        *cp = ((uint32_t)(c & 0x1F) << 6) | (s[1] & 0x3F);
        return 2;
    }
    if (c >= 0xE0 && c <= 0xEF) {
        if (n < 3 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80) return 0;
        if (c == 0xE0 && s[1] < 0xA0) return 0; /* overlong */
        if (c == 0xED && s[1] > 0x9F) return 0; /* surrogate */
        *cp = ((uint32_t)(c & 0x0F) << 12) | ((uint32_t)(s[1] & 0x3F) << 6) | (s[2] & 0x3F);
        return 3;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        if (n < 4 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80 || (s[3] & 0xC0) != 0x80)
            return 0;
        if (c == 0xF0 && s[1] < 0x90) return 0; /* overlong */
        if (c == 0xF4 && s[1] > 0x8F) return 0; /* > U+10FFFF */
        *cp = ((uint32_t)(c & 0x07) << 18) | ((uint32_t)(s[1] & 0x3F) << 12) |
              ((uint32_t)(s[2] & 0x3F) << 6) | (s[3] & 0x3F);
        return 4;
    }
    return 0; /* NUL, continuation byte, C0/C1, F5..FF */
}

int s2s_metrics_utf8_ok(const char *s, size_t n, size_t *bad_offset) {
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    uint32_t cp;
    while (i < n) {
        if (u[i] >= 0x01 && u[i] < 0x80) { i++; continue; }
        size_t k = utf8_seq(u + i, n - i, &cp);
        if (!k) {
            if (bad_offset) *bad_offset = i;
            return 0;
        }
        i += k;
    }
    return 1;
}

/* Decode a NUL-terminated line into b (replacing its contents). 0 or -1. */
static int utf8_decode(u32buf *b, const char *s) {
    const unsigned char *u = (const unsigned char *)s;
    size_t n = strlen(s), i = 0;
    b->n = 0;
    u32_reserve(b, n + 1);
    while (i < n) {
        uint32_t cp;
        size_t k = utf8_seq(u + i, n - i, &cp);
        if (!k) return -1;
        b->p[b->n++] = cp;
        i += k;
    }
    return 0;
}

static size_t utf8_put(char *o, uint32_t c) {
    if (c < 0x80) { o[0] = (char)c; return 1; }
    if (c < 0x800) { o[0] = (char)(0xC0 | (c >> 6)); o[1] = (char)(0x80 | (c & 0x3F)); return 2; }
    if (c < 0x10000) {
        o[0] = (char)(0xE0 | (c >> 12)); o[1] = (char)(0x80 | ((c >> 6) & 0x3F));
        o[2] = (char)(0x80 | (c & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (c >> 18)); o[1] = (char)(0x80 | ((c >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((c >> 6) & 0x3F)); o[3] = (char)(0x80 | (c & 0x3F));
    return 4;
}

/* Python's str.isspace() / the separators of str.split() with no argument. */
static int is_pyspace(uint32_t c) {
    if (c <= 0x20) return c == 0x20 || (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x1F);
    if (c < 0x85) return 0;
    return c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) ||
           c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

static int check_args(const void *out, const void *hyps, const void *refs, size_t n_refsets,
                      char *err, size_t errlen) {
    if (!out || !hyps || !refs) { s2s_errf(err, errlen, "NULL argument"); return -1; }
    if (n_refsets == 0) { s2s_errf(err, errlen, "no reference set given"); return -1; }
    return 0;
}

static int decode_line(u32buf *b, const char *s, int is_ref, size_t set, size_t line,
                       char *err, size_t errlen) {
    if (!s) {
        if (is_ref) s2s_errf(err, errlen, "reference set %zu line %zu is NULL", set + 1, line + 1);
        else s2s_errf(err, errlen, "hypothesis line %zu is NULL", line + 1);
        return -1;
    }
    if (utf8_decode(b, s) != 0) {
        if (is_ref)
            s2s_errf(err, errlen, "reference set %zu line %zu: invalid UTF-8", set + 1, line + 1);
        else s2s_errf(err, errlen, "hypothesis line %zu: invalid UTF-8", line + 1);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* 13a tokenizer (sacrebleu/tokenizers/tokenizer_13a.py + tokenizer_re.py)  */

typedef struct {
    u32buf a, b;           /* ping-pong work buffers */
    size_t *tok_start;     /* [ntok] token offsets into a.p after tokenize */
    size_t *tok_len;       /* [ntok] */
    size_t ntok, tok_cap;
} tok13a;

static void tok13a_free(tok13a *t) {
    u32_free(&t->a); u32_free(&t->b);
    free(t->tok_start); free(t->tok_len);
    memset(t, 0, sizeof *t);
}

/* dst = src with every non-overlapping occurrence of ASCII pat replaced by rep
 * (Python str.replace). */
static void cp_replace(u32buf *dst, const u32buf *src, const char *pat, const char *rep) {
    size_t pl = strlen(pat), rl = strlen(rep), n = src->n;
    dst->n = 0;
    u32_reserve(dst, n + 1);
    for (size_t i = 0; i < n;) {
        int hit = 0;
        if (src->p[i] == (unsigned char)pat[0] && i + pl <= n) {
            hit = 1;
            for (size_t k = 1; k < pl; k++)
                if (src->p[i + k] != (unsigned char)pat[k]) { hit = 0; break; }
        }
        if (hit) {
            for (size_t k = 0; k < rl; k++) u32_push(dst, (unsigned char)rep[k]);
            i += pl;
        } else {
            u32_push(dst, src->p[i++]);
        }
    }
}

static inline int is_digit(uint32_t c) { return c >= '0' && c <= '9'; }

/* [\{-\~\[-\` -\&\(-\+\:-\@\/] : ASCII punctuation except ' - . , plus space */
static inline int is_13a_punct(uint32_t c) {
    return (c >= 0x7B && c <= 0x7E) || (c >= 0x5B && c <= 0x60) || (c >= 0x20 && c <= 0x26) ||
           (c >= 0x28 && c <= 0x2B) || (c >= 0x3A && c <= 0x40) || c == 0x2F;
}

static inline void push3(u32buf *d, uint32_t x, uint32_t y, uint32_t z) {
    u32_push(d, x); u32_push(d, y); u32_push(d, z);
}

/* Tokenize the code points in t->a (replaced). Afterwards the tokens are
 * t->a.p[tok_start[k] .. +tok_len[k]). */
static void tok13a_run(tok13a *t) {
    u32buf *a = &t->a, *b = &t->b, *tmp;
    /* sent.rstrip() (BLEU._preprocess_segment) */
    while (a->n > 0 && is_pyspace(a->p[a->n - 1])) a->n--;
#define SWAP() (tmp = a, a = b, b = tmp)
    cp_replace(b, a, "<skipped>", ""); SWAP();
    cp_replace(b, a, "-\n", ""); SWAP();
    cp_replace(b, a, "\n", " "); SWAP();
    cp_replace(b, a, "&quot;", "\""); SWAP();
    cp_replace(b, a, "&amp;", "&"); SWAP();
    cp_replace(b, a, "&lt;", "<"); SWAP();
    cp_replace(b, a, "&gt;", ">"); SWAP();
    /* f' {line} ' and rule 1: r' \1 ' around punctuation */
    b->n = 0;
    u32_reserve(b, 3 * a->n + 6);
    push3(b, ' ', ' ', ' ');
    for (size_t i = 0; i < a->n; i++) {
        uint32_t c = a->p[i];
        if (is_13a_punct(c)) push3(b, ' ', c, ' ');
        else u32_push(b, c);
    }
    push3(b, ' ', ' ', ' ');
    SWAP();
    /* rule 2: ([^0-9])([\.,]) -> \1 \2 */
    b->n = 0;
    for (size_t i = 0; i < a->n;) {
        uint32_t c = a->p[i];
        if (i + 1 < a->n && !is_digit(c) && (a->p[i + 1] == '.' || a->p[i + 1] == ',')) {
            u32_push(b, c); push3(b, ' ', a->p[i + 1], ' ');
            i += 2;
        } else {
            u32_push(b, c); i++;
        }
    }
    SWAP();
    /* rule 3: ([\.,])([^0-9]) -> ' \1 \2' */
    b->n = 0;
    for (size_t i = 0; i < a->n;) {
        uint32_t c = a->p[i];
        if (i + 1 < a->n && (c == '.' || c == ',') && !is_digit(a->p[i + 1])) {
            push3(b, ' ', c, ' '); u32_push(b, a->p[i + 1]);
            i += 2;
        } else {
            u32_push(b, c); i++;
        }
    }
    SWAP();
    /* rule 4: ([0-9])(-) -> '\1 \2 ' */
    b->n = 0;
    for (size_t i = 0; i < a->n;) {
        uint32_t c = a->p[i];
        if (i + 1 < a->n && is_digit(c) && a->p[i + 1] == '-') {
            u32_push(b, c); push3(b, ' ', '-', ' ');
            i += 2;
        } else {
            u32_push(b, c); i++;
        }
    }
    SWAP();
#undef SWAP
    if (a != &t->a) { /* keep the result in t->a */
        u32buf x = t->a; t->a = t->b; t->b = x;
    }
    /* ' '.join(line.split()) : record tokens */
    t->ntok = 0;
    const uint32_t *p = t->a.p;
    size_t n = t->a.n;
    for (size_t i = 0; i < n;) {
        while (i < n && is_pyspace(p[i])) i++;
        if (i == n) break;
        size_t s = i;
        while (i < n && !is_pyspace(p[i])) i++;
        if (t->ntok == t->tok_cap) {
            size_t cap = t->tok_cap ? 2 * t->tok_cap : 64;
            t->tok_start = s2s_xrealloc(t->tok_start, cap * sizeof *t->tok_start);
            t->tok_len = s2s_xrealloc(t->tok_len, cap * sizeof *t->tok_len);
            t->tok_cap = cap;
        }
        t->tok_start[t->ntok] = s;
        t->tok_len[t->ntok] = i - s;
        t->ntok++;
    }
}

char *s2s_bleu_tokenize_13a(const char *line, char *err, size_t errlen) {
    if (!line) { s2s_errf(err, errlen, "NULL argument"); return NULL; }
    tok13a t;
    memset(&t, 0, sizeof t);
    if (utf8_decode(&t.a, line) != 0) {
        s2s_errf(err, errlen, "invalid UTF-8");
        tok13a_free(&t);
        return NULL;
    }
    tok13a_run(&t);
    size_t cap = 1;
    for (size_t k = 0; k < t.ntok; k++) cap += 4 * t.tok_len[k] + 1;
    char *out = s2s_xmalloc(cap), *o = out;
    for (size_t k = 0; k < t.ntok; k++) {
        if (k) *o++ = ' ';
        for (size_t j = 0; j < t.tok_len[k]; j++) o += utf8_put(o, t.a.p[t.tok_start[k] + j]);
    }
    *o = '\0';
    tok13a_free(&t);
    return out;
}

/* ------------------------------------------------------------------------ */
/* token interner: code-point string -> dense uint32 id                     */

typedef struct {
    u32buf pool;       /* concatenated token code points */
    size_t *off;       /* [nid] offset into pool */
    size_t *len;       /* [nid] */
    uint64_t *hash;    /* [nid] */
    size_t nid, id_cap;
    uint32_t *slot;    /* [nslot] id + 1, 0 = empty */
    size_t nslot;
} interner;

static uint64_t hash_cps(const uint32_t *p, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) { h ^= p[i]; h *= 1099511628211ull; }
    h ^= h >> 29;
    return h;
}

static void interner_free(interner *in) {
    u32_free(&in->pool);
    free(in->off); free(in->len); free(in->hash); free(in->slot);
    memset(in, 0, sizeof *in);
}

static void interner_rehash(interner *in, size_t nslot) {
    free(in->slot);
    in->slot = s2s_xcalloc(nslot, sizeof *in->slot);
    in->nslot = nslot;
    for (size_t id = 0; id < in->nid; id++) {
        size_t s = (size_t)in->hash[id] & (nslot - 1);
        while (in->slot[s]) s = (s + 1) & (nslot - 1);
        in->slot[s] = (uint32_t)id + 1;
    }
}

static uint32_t intern(interner *in, const uint32_t *p, size_t n) {
    if (2 * (in->nid + 1) > in->nslot) interner_rehash(in, in->nslot ? 2 * in->nslot : 1024);
    uint64_t h = hash_cps(p, n);
    size_t s = (size_t)h & (in->nslot - 1);
    while (in->slot[s]) {
        uint32_t id = in->slot[s] - 1;
        if (in->hash[id] == h && in->len[id] == n &&
            memcmp(in->pool.p + in->off[id], p, n * sizeof *p) == 0)
            return id;
        s = (s + 1) & (in->nslot - 1);
    }
    S2S_ASSERT(in->nid < UINT32_MAX - 1);
    if (in->nid == in->id_cap) {
        size_t cap = in->id_cap ? 2 * in->id_cap : 1024;
        in->off = s2s_xrealloc(in->off, cap * sizeof *in->off);
        in->len = s2s_xrealloc(in->len, cap * sizeof *in->len);
        in->hash = s2s_xrealloc(in->hash, cap * sizeof *in->hash);
        in->id_cap = cap;
    }
    size_t id = in->nid++;
    in->off[id] = in->pool.n;
    in->len[id] = n;
    in->hash[id] = h;
    u32_reserve(&in->pool, in->pool.n + n);
    memcpy(in->pool.p + in->pool.n, p, n * sizeof *p);
    in->pool.n += n;
    in->slot[s] = (uint32_t)id + 1;
    return (uint32_t)id;
}

/* ------------------------------------------------------------------------ */
/* n-gram ids: an n-gram is (id of its (n-1)-gram prefix, last symbol).      */
/* One map per line; a generation stamp empties it in O(1).                 */

#define NG_ROOT UINT32_MAX /* the prefix of every 1-gram */
#define NG_NONE UINT32_MAX /* lookup miss */

typedef struct {
    uint64_t key;   /* prefix id << 32 | symbol */
    uint32_t id;
    uint32_t gen;   /* slot valid only when gen == map gen */
} ngslot;

typedef struct {
    ngslot *s;      /* [cap], cap a power of two */
    size_t cap;
    uint32_t gen;
    uint32_t n;     /* ids handed out in this generation: 0..n-1 */
    uint8_t *order; /* [n] n-gram order of each id */
    uint32_t *hcnt; /* [n] count in the hypothesis */
    uint32_t *rcnt; /* [n] count in the current reference */
    uint32_t *rmax; /* [n] max count over the references seen so far */
    size_t id_cap;
    uint32_t *touched; /* ids with rcnt > 0 for the current reference */
    size_t ntouched, touched_cap;
} ngmap;

static inline uint64_t mix64(uint64_t x) {
    x ^= x >> 30; x *= 0xBF58476D1CE4E5B9ull;
    x ^= x >> 27; x *= 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

static void ngmap_free(ngmap *m) {
    free(m->s); free(m->order); free(m->hcnt); free(m->rcnt); free(m->rmax); free(m->touched);
    memset(m, 0, sizeof *m);
}

/* Start a new, empty map for the next line. */
static void ngmap_reset(ngmap *m) {
    m->n = 0;
    m->ntouched = 0;
    if (++m->gen == 0) { /* wrapped: clear the stamps once */
        if (m->s) memset(m->s, 0, m->cap * sizeof *m->s);
        m->gen = 1;
    }
}

static void ngmap_grow(ngmap *m) {
    size_t cap = m->cap ? 2 * m->cap : 4096;
    ngslot *s = s2s_xcalloc(cap, sizeof *s);
    for (size_t i = 0; i < m->cap; i++) {
        if (m->s[i].gen != m->gen) continue;
        size_t j = (size_t)mix64(m->s[i].key) & (cap - 1);
        while (s[j].gen == m->gen) j = (j + 1) & (cap - 1);
        s[j] = m->s[i];
    }
    free(m->s);
    m->s = s;
    m->cap = cap;
}

/* Id of n-gram (prefix, sym) of order ord. With insert, a new id starts with
 * zero counts; without, NG_NONE when absent. */
static uint32_t ngmap_get(ngmap *m, uint32_t prefix, uint32_t sym, int ord, int insert) {
    if (insert && 2 * ((size_t)m->n + 1) > m->cap) ngmap_grow(m);
    if (!m->cap) return NG_NONE;
    uint64_t key = ((uint64_t)prefix << 32) | sym;
    size_t j = (size_t)mix64(key) & (m->cap - 1);
    while (m->s[j].gen == m->gen) {
        if (m->s[j].key == key) return m->s[j].id;
        j = (j + 1) & (m->cap - 1);
    }
    if (!insert) return NG_NONE;
    S2S_ASSERT(m->n < UINT32_MAX - 1);
    uint32_t id = m->n++;
    if (m->n > m->id_cap) {
        size_t cap = m->id_cap ? 2 * m->id_cap : 1024;
        m->order = s2s_xrealloc(m->order, cap * sizeof *m->order);
        m->hcnt = s2s_xrealloc(m->hcnt, cap * sizeof *m->hcnt);
        m->rcnt = s2s_xrealloc(m->rcnt, cap * sizeof *m->rcnt);
        m->rmax = s2s_xrealloc(m->rmax, cap * sizeof *m->rmax);
        m->id_cap = cap;
    }
    m->order[id] = (uint8_t)ord;
    m->hcnt[id] = m->rcnt[id] = m->rmax[id] = 0;
    m->s[j].key = key;
    m->s[j].id = id;
    m->s[j].gen = m->gen;
    return id;
}

/* Count the hypothesis n-grams of orders 1..max_order of sym[0..len). */
static void ngmap_add_hyp(ngmap *m, const uint32_t *sym, size_t len, int max_order) {
    for (size_t i = 0; i < len; i++) {
        uint32_t prev = NG_ROOT;
        for (int n = 1; n <= max_order && i + (size_t)n <= len; n++) {
            prev = ngmap_get(m, prev, sym[i + n - 1], n, 1);
            m->hcnt[prev]++;
        }
    }
}

/* Count, into rcnt, the reference n-grams that also occur in the hypothesis
 * (others cannot match, and no longer n-gram through a miss can either). */
static void ngmap_add_ref(ngmap *m, const uint32_t *sym, size_t len, int max_order) {
    m->ntouched = 0;
    for (size_t i = 0; i < len; i++) {
        uint32_t prev = NG_ROOT;
        for (int n = 1; n <= max_order && i + (size_t)n <= len; n++) {
            prev = ngmap_get(m, prev, sym[i + n - 1], n, 0);
            if (prev == NG_NONE) break;
            if (m->rcnt[prev]++ == 0) {
                GROW(m->touched, m->touched_cap, m->ntouched + 1);
                m->touched[m->ntouched++] = prev;
            }
        }
    }
}

/* Number of n-grams of order n in a sequence of len symbols. */
static inline int64_t ngrams_in(size_t len, int n) {
    return len >= (size_t)n ? (int64_t)(len - (size_t)n + 1) : 0;
}

/* ------------------------------------------------------------------------ */
/* BLEU                                                                     */

/* Tokenize the line in t->a and intern its tokens into ids (replaced). */
static void tokenize_ids(u32buf *ids, tok13a *t, interner *in) {
    tok13a_run(t);
    ids->n = 0;
    u32_reserve(ids, t->ntok + 1);
    for (size_t k = 0; k < t->ntok; k++)
        ids->p[ids->n++] = intern(in, t->a.p + t->tok_start[k], t->tok_len[k]);
}

static double my_log(double x) { return x == 0.0 ? -9999999999.0 : log(x); }

int s2s_bleu(s2s_bleu_result *out, const char *const *hyps,
             const char *const *const *refs, size_t n_refsets, size_t n_lines,
             char *err, size_t errlen) {
    if (check_args(out, hyps, refs, n_refsets, err, errlen)) return -1;
    for (size_t r = 0; r < n_refsets; r++)
        if (!refs[r] && n_lines) { s2s_errf(err, errlen, "reference set %zu is NULL", r + 1); return -1; }
    memset(out, 0, sizeof *out);

    tok13a t;
    interner in;
    ngmap m;
    u32buf ids = {0};
    memset(&t, 0, sizeof t);
    memset(&in, 0, sizeof in);
    memset(&m, 0, sizeof m);
    int64_t correct[S2S_BLEU_ORDER] = {0}, total[S2S_BLEU_ORDER] = {0};
    int64_t sys_len = 0, ref_len = 0;
    int rc = 0;

    for (size_t i = 0; i < n_lines; i++) {
        /* the hypothesis first: its length picks the closest reference length */
        if (decode_line(&t.a, hyps[i], 0, 0, i, err, errlen)) { rc = -1; break; }
        tokenize_ids(&ids, &t, &in);
        size_t hyp_len = ids.n;
        ngmap_reset(&m);
        ngmap_add_hyp(&m, ids.p, ids.n, S2S_BLEU_ORDER);

        size_t closest_diff = 0, closest_len = 0;
        for (size_t r = 0; r < n_refsets; r++) {
            if (decode_line(&t.a, refs[r][i], 1, r, i, err, errlen)) { rc = -1; break; }
            tokenize_ids(&ids, &t, &in);
            size_t rl = ids.n, diff = hyp_len > rl ? hyp_len - rl : rl - hyp_len;
            if (r == 0 || diff < closest_diff) {
                closest_diff = diff;
                closest_len = rl;
            } else if (diff == closest_diff && rl < closest_len) {
                closest_len = rl;
            }
            /* reference counts: per n-gram maximum over the references */
            ngmap_add_ref(&m, ids.p, ids.n, S2S_BLEU_ORDER);
            for (size_t k = 0; k < m.ntouched; k++) {
                uint32_t id = m.touched[k];
                if (m.rcnt[id] > m.rmax[id]) m.rmax[id] = m.rcnt[id];
                m.rcnt[id] = 0;
            }
        }
        if (rc) break;
        /* clipped matches */
        for (uint32_t id = 0; id < m.n; id++)
            correct[m.order[id] - 1] += m.hcnt[id] < m.rmax[id] ? m.hcnt[id] : m.rmax[id];
        for (int n = 1; n <= S2S_BLEU_ORDER; n++) total[n - 1] += ngrams_in(hyp_len, n);
        sys_len += (int64_t)hyp_len;
        ref_len += (int64_t)closest_len;
    }

    tok13a_free(&t);
    interner_free(&in);
    ngmap_free(&m);
    u32_free(&ids);
    if (rc) return rc;

    /* BLEU.compute_bleu with smooth_method='exp', effective_order=False */
    out->sys_len = sys_len;
    out->ref_len = ref_len;
    for (int n = 0; n < S2S_BLEU_ORDER; n++) { out->counts[n] = correct[n]; out->totals[n] = total[n]; }
    out->ratio = ref_len ? (double)sys_len / (double)ref_len : 0.0;
    double bp = 1.0;
    if (sys_len < ref_len) bp = sys_len > 0 ? exp(1.0 - (double)ref_len / (double)sys_len) : 0.0;
    out->bp = bp;
    int any = 0;
    for (int n = 0; n < S2S_BLEU_ORDER; n++) any |= correct[n] != 0;
    if (!any) { out->score = 0.0; return 0; }
    double smooth = 1.0;
    for (int n = 0; n < S2S_BLEU_ORDER; n++) {
        if (total[n] == 0) break;
        if (correct[n] == 0) {
            smooth *= 2;
            out->precisions[n] = 100.0 / (smooth * (double)total[n]);
        } else {
            out->precisions[n] = 100.0 * (double)correct[n] / (double)total[n];
        }
    }
    double s = 0.0;
    for (int n = 0; n < S2S_BLEU_ORDER; n++) s += my_log(out->precisions[n]);
    out->score = bp * exp(s / S2S_BLEU_ORDER);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* chrF                                                                     */

/* Drop every (Python) whitespace character in place: ''.join(line.split()). */
static void strip_spaces(u32buf *b) {
    size_t len = 0;
    for (size_t i = 0; i < b->n; i++)
        if (!is_pyspace(b->p[i])) b->p[len++] = b->p[i];
    b->n = len;
}

/* CHRF._compute_f_score with eps_smoothing=False; also returns the averages. */
static double chrf_f(const int64_t st[S2S_CHRF_ORDER][3], double *p_out, double *r_out) {
    const double factor = (double)(S2S_CHRF_BETA * S2S_CHRF_BETA);
    double ap = 0.0, ar = 0.0;
    int eff = 0;
    for (int i = 0; i < S2S_CHRF_ORDER; i++) {
        int64_t nh = st[i][0], nr = st[i][1], nm = st[i][2];
        if (nh > 0 && nr > 0) {
            ap += (double)nm / (double)nh;
            ar += (double)nm / (double)nr;
            eff++;
        }
    }
    if (eff == 0) ap = ar = 0.0;
    else { ap /= eff; ar /= eff; }
    if (p_out) *p_out = ap;
    if (r_out) *r_out = ar;
    if (ap + ar != 0.0) {
        double s = (1.0 + factor) * ap * ar;
        s /= (factor * ap) + ar;
        return 100.0 * s;
    }
    return 0.0;
}

int s2s_chrf(s2s_chrf_result *out, const char *const *hyps,
             const char *const *const *refs, size_t n_refsets, size_t n_lines,
             char *err, size_t errlen) {
    if (check_args(out, hyps, refs, n_refsets, err, errlen)) return -1;
    for (size_t r = 0; r < n_refsets; r++)
        if (!refs[r] && n_lines) { s2s_errf(err, errlen, "reference set %zu is NULL", r + 1); return -1; }
    memset(out, 0, sizeof *out);

    u32buf buf = {0};
    ngmap m;
    memset(&m, 0, sizeof m);
    int64_t sum[S2S_CHRF_ORDER][3];
    memset(sum, 0, sizeof sum);
    int rc = 0;

    for (size_t i = 0; i < n_lines; i++) {
        if (decode_line(&buf, hyps[i], 0, 0, i, err, errlen)) { rc = -1; break; }
        strip_spaces(&buf);
        size_t hyp_len = buf.n;
        ngmap_reset(&m);
        ngmap_add_hyp(&m, buf.p, buf.n, S2S_CHRF_ORDER);
        int64_t best[S2S_CHRF_ORDER][3];
        double best_f = -1.0;
        for (size_t r = 0; r < n_refsets; r++) {
            if (decode_line(&buf, refs[r][i], 1, r, i, err, errlen)) { rc = -1; break; }
            strip_spaces(&buf);
            ngmap_add_ref(&m, buf.p, buf.n, S2S_CHRF_ORDER);
            int64_t st[S2S_CHRF_ORDER][3];
            memset(st, 0, sizeof st);
            for (size_t k = 0; k < m.ntouched; k++) {
                uint32_t id = m.touched[k];
                st[m.order[id] - 1][2] += m.hcnt[id] < m.rcnt[id] ? m.hcnt[id] : m.rcnt[id];
                m.rcnt[id] = 0;
            }
            for (int n = 1; n <= S2S_CHRF_ORDER; n++) {
                int64_t nr = ngrams_in(buf.n, n);
                st[n - 1][0] = nr > 0 ? ngrams_in(hyp_len, n) : 0; /* "hyp_count if ref_ngrams" */
                st[n - 1][1] = nr;
            }
            double f = chrf_f((const int64_t(*)[3])st, NULL, NULL);
            if (f > best_f) { /* first reference wins ties */
                best_f = f;
                memcpy(best, st, sizeof best);
            }
        }
        if (rc) break;
        for (int n = 0; n < S2S_CHRF_ORDER; n++)
            for (int k = 0; k < 3; k++) sum[n][k] += best[n][k];
    }
    u32_free(&buf);
    ngmap_free(&m);
    if (rc) return rc;

    memcpy(out->stats, sum, sizeof sum);
    double p, r;
    out->score = chrf_f((const int64_t(*)[3])sum, &p, &r);
    out->precision = 100.0 * p;
    out->recall = 100.0 * r;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* WER / PER                                                                */

typedef struct {
    const char *s;
    size_t len;
} sym;

typedef struct {
    sym *v;
    size_t n, cap;
} syms;

static inline int is_ascii_blank(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

/* Split s[0..n) on ASCII whitespace, appending to out. */
static void split_syms(syms *out, const char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        while (i < n && is_ascii_blank(s[i])) i++;
        if (i == n) break;
        size_t st = i;
        while (i < n && !is_ascii_blank(s[i])) i++;
        GROW(out->v, out->cap, out->n + 1);
        out->v[out->n].s = s + st;
        out->v[out->n].len = i - st;
        out->n++;
    }
}

static inline int sym_eq(const sym *a, const sym *b) {
    return a->len == b->len && memcmp(a->s, b->s, a->len) == 0;
}

/* Levenshtein distance between symbol sequences a[0..na), b[0..nb), row[nb+1].
 * The common prefix and suffix are skipped first, so equal or nearly equal long
 * lines cost O(n) rather than O(n^2). */
static size_t levenshtein(size_t *row, const sym *a, size_t na, const sym *b, size_t nb) {
    while (na > 0 && nb > 0 && sym_eq(&a[0], &b[0])) { a++; b++; na--; nb--; }
    while (na > 0 && nb > 0 && sym_eq(&a[na - 1], &b[nb - 1])) { na--; nb--; }
    if (na == 0) return nb;
    if (nb == 0) return na;
    for (size_t j = 0; j <= nb; j++) row[j] = j;
    for (size_t i = 1; i <= na; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= nb; j++) {
            size_t up = row[j];
            size_t best = diag + (sym_eq(&a[i - 1], &b[j - 1]) ? 0 : 1);
            if (up + 1 < best) best = up + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[nb];
}

int s2s_g2p_score(s2s_g2p_result *out, const char *const *hyps,
                  const char *const *refs, size_t n_lines, char *err, size_t errlen) {
    if (!out || !hyps || !refs) { s2s_errf(err, errlen, "NULL argument"); return -1; }
    memset(out, 0, sizeof *out);
    syms hs = {0}, rs = {0};
    size_t *alt_off = NULL, *alt_len = NULL, alt_cap = 0; /* alternatives: ranges in rs */
    size_t *row = NULL, row_cap = 0;
    int64_t errors = 0, edits = 0, rlen = 0;
    int rc = 0;

    for (size_t i = 0; i < n_lines; i++) {
        const char *h = hyps[i], *r = refs[i];
        if (!h || !r) {
            s2s_errf(err, errlen, "%s line %zu is NULL", !h ? "hypothesis" : "reference", i + 1);
            rc = -1;
            break;
        }
        size_t hl = strlen(h), rl = strlen(r);
        if (!s2s_metrics_utf8_ok(h, hl, NULL)) {
            s2s_errf(err, errlen, "hypothesis line %zu: invalid UTF-8", i + 1);
            rc = -1;
            break;
        }
        if (!s2s_metrics_utf8_ok(r, rl, NULL)) {
            s2s_errf(err, errlen, "reference line %zu: invalid UTF-8", i + 1);
            rc = -1;
            break;
        }
        hs.n = 0;
        split_syms(&hs, h, hl);
        /* alternatives, TAB-separated; skip empty ones */
        rs.n = 0;
        size_t nalt = 0;
        for (size_t st = 0; st <= rl;) {
            const char *tab = memchr(r + st, '\t', rl - st);
            size_t en = tab ? (size_t)(tab - r) : rl;
            size_t before = rs.n;
            split_syms(&rs, r + st, en - st);
            if (rs.n > before) {
                if (nalt == alt_cap) {
                    alt_cap = alt_cap ? 2 * alt_cap : 8;
                    alt_off = s2s_xrealloc(alt_off, alt_cap * sizeof *alt_off);
                    alt_len = s2s_xrealloc(alt_len, alt_cap * sizeof *alt_len);
                }
                alt_off[nalt] = before;
                alt_len[nalt] = rs.n - before;
                nalt++;
            }
            st = en + 1;
        }
        if (nalt == 0) { /* the single empty pronunciation */
            if (alt_cap == 0) {
                alt_cap = 8;
                alt_off = s2s_xmalloc(alt_cap * sizeof *alt_off);
                alt_len = s2s_xmalloc(alt_cap * sizeof *alt_len);
            }
            alt_off[0] = 0;
            alt_len[0] = 0;
            nalt = 1;
        }
        int match = 0;
        size_t best_d = 0, best_len = 0;
        for (size_t k = 0; k < nalt; k++) {
            const sym *alt = rs.v ? rs.v + alt_off[k] : NULL;
            size_t al = alt_len[k];
            GROW(row, row_cap, al + 1);
            size_t d;
            d = levenshtein(row, hs.v, hs.n, alt, al);
            if (d == 0) match = 1;
            if (k == 0 || d < best_d || (d == best_d && al < best_len)) {
                best_d = d;
                best_len = al;
            }
        }
        if (!match) errors++;
        edits += (int64_t)best_d;
        rlen += (int64_t)best_len;
    }
    free(hs.v); free(rs.v); free(alt_off); free(alt_len); free(row);
    if (rc) return rc;

    out->lines = (int64_t)n_lines;
    out->line_errors = errors;
    out->edits = edits;
    out->ref_len = rlen;
    out->wer = n_lines ? 100.0 * (double)errors / (double)n_lines : 0.0;
    if (rlen > 0) out->per = 100.0 * (double)edits / (double)rlen;
    else out->per = edits > 0 ? 100.0 : 0.0;
    return 0;
}

int s2s_metric_higher_better(const char *metric) {
    return metric && (strcmp(metric, "bleu") == 0 || strcmp(metric, "chrf") == 0);
}

int s2s_metric_score(const char *metric, const char *const *hyps, const char *const *refs, size_t n_lines,
                     double *score, char *err, size_t errlen) {
    const char *const *sets[1] = {refs};
    if (metric && (strcmp(metric, "wer") == 0 || strcmp(metric, "per") == 0)) {
        s2s_g2p_result r;
        if (s2s_g2p_score(&r, hyps, refs, n_lines, err, errlen) != 0) return -1;
        *score = metric[0] == 'w' ? r.wer : r.per;
        return 0;
    }
    if (metric && strcmp(metric, "bleu") == 0) {
        s2s_bleu_result r;
        if (s2s_bleu(&r, hyps, sets, 1, n_lines, err, errlen) != 0) return -1;
        *score = r.score;
        return 0;
    }
    if (metric && strcmp(metric, "chrf") == 0) {
        s2s_chrf_result r;
        if (s2s_chrf(&r, hyps, sets, 1, n_lines, err, errlen) != 0) return -1;
        *score = r.score;
        return 0;
    }
    s2s_errf(err, errlen, "unknown metric '%s' (wer, per, bleu or chrf)", metric ? metric : "(null)");
    return -1;
}
