/* tokenizer.c - the s2s tokenizers: learning, encoding, decoding, serialisation.
 *
 * See tokenizer.h for the contract. Layout of a tokenizer:
 *   pieces[V]      ids 0..3 the specials, then (BPE) n_base single code points,
 *                  then one piece per merge, in merge order; (CHAR) code points;
 *                  (SYMBOL) symbols. A hash map gives piece -> id.
 *   merges[M]      BPE: merge i joins (left, right) into id NSPECIAL+n_base+i; a
 *                  second map gives (left, right) -> i (the merge's rank).
 *   cache          BPE: word -> ids, sharded and mutex-protected so that a
 *                  shared tokenizer can be used from several threads.
 * The merge learner is in bpe.c; applying merges (greedy by rank with a
 * per-word heap, O(L log L) per word of L characters) is here. */
#include "tokenizer.h"

#include "common.h"
#include "utf8.h"

#include <limits.h>
#include <pthread.h>
#include <string.h>

#define SPACE_PIECE "\xE2\x96\x81" /* U+2581 LOWER ONE EIGHTH BLOCK */
#define SPACE_PIECE_LEN 3
#define MAX_CP 0x110000u
#define MAX_TEXT_BYTES ((size_t)1 << 30)
#define MAX_PIECES (1 << 24)
#define BLOB_MAGIC "s2s-tokenizer"
#define BLOB_VERSION 1

static const char *const special_pieces[S2S_NSPECIAL] = {"<pad>", "<s>", "</s>", "<unk>"};

/* ------------------------------------------------------------------------ */
/* Hashing and a string -> index map whose keys live in external arrays      */

static uint64_t hash_bytes(const void *p, size_t n) {
    const unsigned char *b = p;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}
static uint32_t hash32(uint64_t h) { return (uint32_t)(h ^ (h >> 32)); }

typedef struct {
    uint32_t h;
    int32_t idx; /* -1: empty */
} sm_slot;

typedef struct {
    sm_slot *s; /* [cap], cap a power of two */
    size_t cap, n;
} strmap;

static void strmap_init(strmap *m, size_t want) {
    size_t cap = 64;
    while (cap < 2 * want) cap *= 2;
    m->s = s2s_xmalloc(cap * sizeof *m->s);
    for (size_t i = 0; i < cap; i++) m->s[i] = (sm_slot){0, -1};
    m->cap = cap;
    m->n = 0;
}
static void strmap_free(strmap *m) { free(m->s); m->s = NULL; m->cap = m->n = 0; }

static int32_t strmap_find(const strmap *m, const char *const *keys, const uint32_t *lens,
                           const char *p, size_t n, uint32_t h) {
    for (size_t i = h & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        sm_slot s = m->s[i];
        if (s.idx < 0) return -1;
        if (s.h == h && lens[s.idx] == n && memcmp(keys[s.idx], p, n) == 0) return s.idx;
    }
}

/* Inserts idx (not already present) with hash h. */
static void strmap_put(strmap *m, uint32_t h, int32_t idx) {
    if (2 * (m->n + 1) > m->cap) {
        size_t ncap = 2 * m->cap;
        sm_slot *ns = s2s_xmalloc(ncap * sizeof *ns);
        for (size_t i = 0; i < ncap; i++) ns[i] = (sm_slot){0, -1};
        for (size_t i = 0; i < m->cap; i++) {
            if (m->s[i].idx < 0) continue;
            size_t j = m->s[i].h & (ncap - 1);
            while (ns[j].idx >= 0) j = (j + 1) & (ncap - 1);
            ns[j] = m->s[i];
        }
        free(m->s);
        m->s = ns;
        m->cap = ncap;
    }
    size_t j = h & (m->cap - 1);
    while (m->s[j].idx >= 0) j = (j + 1) & (m->cap - 1);
    m->s[j] = (sm_slot){h, idx};
    m->n++;
}

/* uint64 -> int32 map for BPE pairs (left << 32 | right) -> merge rank. */
typedef struct {
    uint64_t *key;
    int32_t *val; /* -1: empty */
    size_t cap;
} pairmap;

static uint64_t pair_key(int32_t l, int32_t r) { return ((uint64_t)(uint32_t)l << 32) | (uint32_t)r; }
static size_t pair_slot(uint64_t k, size_t cap) {
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    return (size_t)k & (cap - 1);
}
static void pairmap_init(pairmap *m, size_t want) {
    size_t cap = 64;
    while (cap < 2 * want) cap *= 2;
    m->key = s2s_xmalloc(cap * sizeof *m->key);
    m->val = s2s_xmalloc(cap * sizeof *m->val);
    for (size_t i = 0; i < cap; i++) m->val[i] = -1;
    m->cap = cap;
}
static void pairmap_put(pairmap *m, uint64_t k, int32_t v) { /* capacity fixed at init */
    size_t i = pair_slot(k, m->cap);
    while (m->val[i] >= 0) i = (i + 1) & (m->cap - 1);
    m->key[i] = k;
    m->val[i] = v;
}
static int32_t pairmap_get(const pairmap *m, uint64_t k) {
    for (size_t i = pair_slot(k, m->cap);; i = (i + 1) & (m->cap - 1)) {
        if (m->val[i] < 0) return -1;
        if (m->key[i] == k) return m->val[i];
    }
}

/* ------------------------------------------------------------------------ */
/* BPE word cache: 16 mutex-protected shards, each a fixed hash table over an */
/* arena of records [keylen u8][nids u8][key bytes][pad to 4][ids i32...].    */
/* A full shard is simply cleared.                                           */

#define CACHE_SHARDS 16
#define CACHE_SLOTS 8192 /* per shard: at most 16 x 320 KB in all */
#define CACHE_MAX_ENTRIES (CACHE_SLOTS / 2)
#define CACHE_ARENA (256 * 1024)
#define CACHE_MAX_WORD 64 /* longer words are not cached */

typedef struct {
    pthread_mutex_t mu;
    uint32_t *hash;       /* [CACHE_SLOTS] */
    uint32_t *off;        /* [CACHE_SLOTS] record offset + 1, 0 = empty */
    unsigned char *arena; /* [CACHE_ARENA] */
    size_t used;
    int nentries;
} cache_shard;

/* ------------------------------------------------------------------------ */
/* The tokenizer                                                            */

struct s2s_tokenizer {
    s2s_tok_kind kind;
    int n_pieces;       /* V */
    char **pieces;      /* [V] NUL-terminated */
    uint32_t *plen;     /* [V] byte lengths */
    int cap_pieces;
    strmap piece_map;   /* piece -> id */
    int n_base;         /* BPE: number of single-code-point pieces after the specials */
    int n_merges;       /* BPE */
    s2s_bpe_merge *merges; /* [n_merges] */
    pairmap merge_map;  /* (left, right) -> merge rank */
    int32_t space_id;   /* id of "▁" or S2S_UNK */
    cache_shard *cache; /* [CACHE_SHARDS], BPE only */
};

static s2s_tokenizer *tok_new(s2s_tok_kind kind, size_t want) {
    s2s_tokenizer *t = s2s_xcalloc(1, sizeof *t);
    t->kind = kind;
    strmap_init(&t->piece_map, want);
    t->space_id = S2S_UNK;
    return t;
}

/* Appends a piece; returns its id, or -1 if the string is already a piece. */
static int tok_add_piece(s2s_tokenizer *t, const char *s, size_t n) {
    uint32_t h = hash32(hash_bytes(s, n));
    if (strmap_find(&t->piece_map, (const char *const *)t->pieces, t->plen, s, n, h) >= 0) return -1;
    S2S_ASSERT(t->n_pieces < MAX_PIECES && n < UINT32_MAX);
    if (t->n_pieces == t->cap_pieces) {
        t->cap_pieces = t->cap_pieces ? 2 * t->cap_pieces : 256;
        t->pieces = s2s_xrealloc(t->pieces, (size_t)t->cap_pieces * sizeof *t->pieces);
        t->plen = s2s_xrealloc(t->plen, (size_t)t->cap_pieces * sizeof *t->plen);
    }
    char *c = s2s_xmalloc(n + 1);
    memcpy(c, s, n);
    c[n] = '\0';
    int id = t->n_pieces++;
    t->pieces[id] = c;
    t->plen[id] = (uint32_t)n;
    strmap_put(&t->piece_map, h, id);
    return id;
}

static int tok_lookup(const s2s_tokenizer *t, const char *s, size_t n) {
    uint32_t h = hash32(hash_bytes(s, n));
    return strmap_find(&t->piece_map, (const char *const *)t->pieces, t->plen, s, n, h);
}

static void tok_add_specials(s2s_tokenizer *t) {
    for (int i = 0; i < S2S_NSPECIAL; i++) {
        int id = tok_add_piece(t, special_pieces[i], strlen(special_pieces[i]));
        S2S_ASSERT(id == i);
    }
}

/* After pieces (and merges) are in place: the merge map, "▁", the cache. */
static void tok_finish(s2s_tokenizer *t) {
    int sp = tok_lookup(t, SPACE_PIECE, SPACE_PIECE_LEN);
    t->space_id = sp >= S2S_NSPECIAL ? sp : S2S_UNK;
    if (t->kind != S2S_TOK_BPE) return;
    pairmap_init(&t->merge_map, (size_t)t->n_merges);
    for (int i = 0; i < t->n_merges; i++)
        pairmap_put(&t->merge_map, pair_key(t->merges[i].left, t->merges[i].right), i);
    t->cache = s2s_xcalloc(CACHE_SHARDS, sizeof *t->cache);
    for (int i = 0; i < CACHE_SHARDS; i++) S2S_ASSERT(pthread_mutex_init(&t->cache[i].mu, NULL) == 0);
}

void s2s_tok_free(s2s_tokenizer *t) {
    if (!t) return;
    for (int i = 0; i < t->n_pieces; i++) free(t->pieces[i]);
    free(t->pieces);
    free(t->plen);
    strmap_free(&t->piece_map);
    free(t->merges);
    if (t->kind == S2S_TOK_BPE && t->merge_map.key) {
        free(t->merge_map.key);
        free(t->merge_map.val);
    }
    if (t->cache) {
        for (int i = 0; i < CACHE_SHARDS; i++) {
            pthread_mutex_destroy(&t->cache[i].mu);
            free(t->cache[i].hash);
            free(t->cache[i].off);
            free(t->cache[i].arena);
        }
        free(t->cache);
    }
    free(t);
}

int s2s_tok_vocab_size(const s2s_tokenizer *t) { return t->n_pieces; }
s2s_tok_kind s2s_tok_kind_of(const s2s_tokenizer *t) { return t->kind; }

const char *s2s_tok_kind_name(s2s_tok_kind kind) {
    switch (kind) {
    case S2S_TOK_CHAR: return "char";
    case S2S_TOK_SYMBOL: return "symbol";
    case S2S_TOK_BPE: return "bpe";
    }
    return "?";
}

s2s_tok_kind s2s_tok_kind_parse(const char *name) {
    if (!name) return 0;
    if (strcmp(name, "char") == 0) return S2S_TOK_CHAR;
    if (strcmp(name, "symbol") == 0) return S2S_TOK_SYMBOL;
    if (strcmp(name, "bpe") == 0) return S2S_TOK_BPE;
    return 0;
}

const char *s2s_tok_piece(const s2s_tokenizer *t, int id) {
    if (id < 0 || id >= t->n_pieces) return NULL;
    return t->pieces[id];
}

int s2s_tok_id(const s2s_tokenizer *t, const char *piece) {
    if (!piece) return -1;
    return tok_lookup(t, piece, strlen(piece));
}

int s2s_tok_n_merges(const s2s_tokenizer *t) { return t->kind == S2S_TOK_BPE ? t->n_merges : 0; }

int s2s_tok_merge(const s2s_tokenizer *t, int i, int *left, int *right) {
    if (t->kind != S2S_TOK_BPE || i < 0 || i >= t->n_merges) return -1;
    if (left) *left = t->merges[i].left;
    if (right) *right = t->merges[i].right;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Words                                                                     */

static int is_ws(unsigned char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

/* Finds the next whitespace-separated word at or after p (NUL-terminated).
 * Returns 0 at the end; else sets *w, *n and returns 1; continue from *w + *n. */
static int next_word(const char *p, const char **w, size_t *n) {
    while (*p && is_ws((unsigned char)*p)) p++;
    if (!*p) return 0;
    const char *q = p;
    while (*q && !is_ws((unsigned char)*q)) q++;
    *w = p;
    *n = (size_t)(q - p);
    return 1;
}

/* ------------------------------------------------------------------------ */
/* Learning                                                                  */

typedef struct {
    const char *s; /* not NUL-terminated */
    uint32_t n;
    int64_t count;
} counted;

/* Most frequent first, ties by byte order (for UTF-8 that is code point order). */
static int counted_cmp(const void *pa, const void *pb) {
    const counted *a = pa, *b = pb;
    if (a->count != b->count) return a->count > b->count ? -1 : 1;
    size_t m = a->n < b->n ? a->n : b->n;
    int c = memcmp(a->s, b->s, m);
    if (c) return c;
    return a->n < b->n ? -1 : a->n > b->n;
}

/* Table of distinct words with counts; keys point into the caller's lines. */
typedef struct {
    const char **key;
    uint32_t *klen;
    int64_t *count;
    size_t n, cap;
    strmap map;
} wordtab;

static void wordtab_add(wordtab *wt, const char *w, size_t n, int64_t c) {
    S2S_ASSERT(n < UINT32_MAX);
    uint32_t h = hash32(hash_bytes(w, n));
    int32_t i = strmap_find(&wt->map, wt->key, wt->klen, w, n, h);
    if (i >= 0) { wt->count[i] += c; return; }
    if (wt->n == wt->cap) {
        wt->cap = wt->cap ? 2 * wt->cap : 1024;
        wt->key = s2s_xrealloc(wt->key, wt->cap * sizeof *wt->key);
        wt->klen = s2s_xrealloc(wt->klen, wt->cap * sizeof *wt->klen);
        wt->count = s2s_xrealloc(wt->count, wt->cap * sizeof *wt->count);
    }
    S2S_ASSERT(wt->n < INT32_MAX);
    wt->key[wt->n] = w;
    wt->klen[wt->n] = (uint32_t)n;
    wt->count[wt->n] = c;
    strmap_put(&wt->map, h, (int32_t)wt->n);
    wt->n++;
}

static void wordtab_free(wordtab *wt) {
    free(wt->key);
    free(wt->klen);
    free(wt->count);
    strmap_free(&wt->map);
}

static void count_words(wordtab *wt, const char *const *lines, size_t n) {
    memset(wt, 0, sizeof *wt);
    strmap_init(&wt->map, 1024);
    for (size_t i = 0; i < n; i++) {
        const char *p = lines[i], *w;
        size_t wn;
        while (next_word(p, &w, &wn)) {
            wordtab_add(wt, w, wn, 1);
            p = w + wn;
        }
    }
}

/* Keeps the items with count >= min_freq, sorts them, truncates to max_keep
 * (if > 0); returns the count kept. */
static size_t select_items(counted *items, size_t n, int64_t min_freq, long max_keep) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (items[i].count >= min_freq) items[k++] = items[i];
    qsort(items, k, sizeof *items, counted_cmp);
    if (max_keep > 0 && k > (size_t)max_keep) k = (size_t)max_keep;
    return k;
}

/* Per-code-point counts over words (weights wcount), plus "▁" counted `spaces`
 * times. Returns the distinct code points as counted items (UTF-8 in buf). */
static counted *count_codepoints(size_t *n_out, char **buf_out, const char *const *w,
                                 const uint32_t *wn, const int64_t *wcount, size_t nw,
                                 int64_t spaces) {
    int64_t *cnt = s2s_xcalloc(MAX_CP, sizeof *cnt);
    cnt[0x2581] += spaces;
    for (size_t i = 0; i < nw; i++) {
        const char *p = w[i];
        size_t left = wn[i];
        while (left > 0) {
            uint32_t cp;
            int k = s2s_utf8_decode(p, left, &cp);
            S2S_ASSERT(k > 0); /* lines were validated */
            cnt[cp] += wcount[i];
            p += k;
            left -= (size_t)k;
        }
    }
    size_t n = 0;
    for (uint32_t cp = 0; cp < MAX_CP; cp++) n += cnt[cp] > 0;
    counted *items = s2s_xmalloc((n ? n : 1) * sizeof *items);
    char *buf = s2s_xmalloc(4 * (n ? n : 1));
    size_t k = 0, used = 0;
    for (uint32_t cp = 0; cp < MAX_CP; cp++) {
        if (cnt[cp] <= 0) continue;
        int len = s2s_utf8_encode(buf + used, cp);
        S2S_ASSERT(len > 0);
        items[k++] = (counted){buf + used, (uint32_t)len, cnt[cp]};
        used += (size_t)len;
    }
    free(cnt);
    *n_out = n;
    *buf_out = buf;
    return items;
}

static s2s_tokenizer *learn_char(const wordtab *wt, int64_t spaces, int vocab_size,
                                 int min_freq, char *err, size_t errlen) {
    size_t n;
    char *buf;
    counted *items = count_codepoints(&n, &buf, wt->key, wt->klen, wt->count, wt->n, spaces);
    size_t k = select_items(items, n, min_freq, vocab_size > 0 ? vocab_size - S2S_NSPECIAL : 0);
    s2s_tokenizer *t = NULL;
    if (k == 0) {
        s2s_errf(err, errlen, "no character occurs at least %d times", min_freq);
    } else {
        t = tok_new(S2S_TOK_CHAR, k + S2S_NSPECIAL);
        tok_add_specials(t);
        for (size_t i = 0; i < k; i++) S2S_ASSERT(tok_add_piece(t, items[i].s, items[i].n) >= 0);
        t->n_base = t->n_pieces - S2S_NSPECIAL;
        tok_finish(t);
    }
    free(items);
    free(buf);
    return t;
}

static int is_special_string(const char *s, size_t n) {
    for (int i = 0; i < S2S_NSPECIAL; i++)
        if (strlen(special_pieces[i]) == n && memcmp(special_pieces[i], s, n) == 0) return 1;
    return 0;
}

static s2s_tokenizer *learn_symbol(const wordtab *wt, int vocab_size, int min_freq, char *err,
                                   size_t errlen) {
    counted *items = s2s_xmalloc((wt->n ? wt->n : 1) * sizeof *items);
    size_t n = 0;
    for (size_t i = 0; i < wt->n; i++)
        if (!is_special_string(wt->key[i], wt->klen[i]))
            items[n++] = (counted){wt->key[i], wt->klen[i], wt->count[i]};
    size_t k = select_items(items, n, min_freq, vocab_size > 0 ? vocab_size - S2S_NSPECIAL : 0);
    s2s_tokenizer *t = NULL;
    if (k == 0) {
        s2s_errf(err, errlen, "no symbol occurs at least %d times", min_freq);
    } else if (k > (size_t)(MAX_PIECES - S2S_NSPECIAL)) {
        s2s_errf(err, errlen, "%zu distinct symbols is above the limit %d: set a vocabulary size",
                 k, MAX_PIECES - S2S_NSPECIAL);
    } else {
        t = tok_new(S2S_TOK_SYMBOL, k + S2S_NSPECIAL);
        tok_add_specials(t);
        for (size_t i = 0; i < k; i++) S2S_ASSERT(tok_add_piece(t, items[i].s, items[i].n) >= 0);
        t->n_base = t->n_pieces - S2S_NSPECIAL;
        tok_finish(t);
    }
    free(items);
    return t;
}

static s2s_tokenizer *learn_bpe(const wordtab *wt, int vocab_size, int min_freq, char *err,
                                size_t errlen) {
    /* Base characters: every word contributes its "▁" prefix once. */
    int64_t nwords = 0;
    for (size_t i = 0; i < wt->n; i++) nwords += wt->count[i];
    size_t n;
    char *buf;
    counted *items = count_codepoints(&n, &buf, wt->key, wt->klen, wt->count, wt->n, nwords);
    size_t k = select_items(items, n, min_freq, vocab_size > 0 ? vocab_size - S2S_NSPECIAL : 0);
    if (k == 0) {
        s2s_errf(err, errlen, "no character occurs at least %d times", min_freq);
        free(items);
        free(buf);
        return NULL;
    }
    s2s_tokenizer *t = tok_new(S2S_TOK_BPE, (vocab_size > 0 ? (size_t)vocab_size : k) + 8);
    tok_add_specials(t);
    int32_t *cp_id = s2s_xcalloc(MAX_CP, sizeof *cp_id); /* 0 = not in the vocabulary */
    for (size_t i = 0; i < k; i++) {
        int id = tok_add_piece(t, items[i].s, items[i].n);
        S2S_ASSERT(id >= 0);
        uint32_t cp;
        S2S_ASSERT(s2s_utf8_decode(items[i].s, items[i].n, &cp) == (int)items[i].n);
        cp_id[cp] = id;
    }
    free(items);
    free(buf);
    t->n_base = t->n_pieces - S2S_NSPECIAL;

    /* Words as symbol sequences: "▁" + characters, unknown ones as <unk>. */
    size_t total = 0;
    for (size_t i = 0; i < wt->n; i++) total += (size_t)wt->klen[i] + 1;
    int32_t *syms = s2s_xmalloc(total * sizeof *syms);
    size_t *off = s2s_xmalloc((wt->n ? wt->n : 1) * sizeof *off);
    int32_t *len = s2s_xmalloc((wt->n ? wt->n : 1) * sizeof *len);
    size_t pos = 0;
    int32_t space = cp_id[0x2581] ? cp_id[0x2581] : S2S_UNK;
    for (size_t i = 0; i < wt->n; i++) {
        off[i] = pos;
        syms[pos++] = space;
        const char *p = wt->key[i];
        size_t left = wt->klen[i];
        while (left > 0) {
            uint32_t cp;
            int b = s2s_utf8_decode(p, left, &cp);
            S2S_ASSERT(b > 0);
            syms[pos++] = cp_id[cp] ? cp_id[cp] : S2S_UNK;
            p += b;
            left -= (size_t)b;
        }
        S2S_ASSERT(pos - off[i] <= INT32_MAX);
        len[i] = (int32_t)(pos - off[i]);
    }
    free(cp_id);

    int n_before = t->n_pieces;
    int max_merges = (vocab_size > 0 ? vocab_size : MAX_PIECES) - n_before;
    int64_t min_count = min_freq > 2 ? min_freq : 2;
    s2s_bpe_merge *merges = NULL;
    char **merged = NULL;
    int nm = 0;
    if (max_merges > 0)
        nm = s2s_bpe_learn_merges(&merges, &merged, syms, off, len, wt->count, wt->n,
                                  (const char *const *)t->pieces, n_before, max_merges,
                                  min_count);
    for (int i = 0; i < nm; i++) {
        int id = tok_add_piece(t, merged[i], strlen(merged[i]));
        S2S_ASSERT(id == n_before + i);
        free(merged[i]);
    }
    free(merged);
    t->merges = merges;
    t->n_merges = nm;
    free(syms);
    free(off);
    free(len);
    tok_finish(t);
    return t;
}

s2s_tokenizer *s2s_tok_learn(s2s_tok_kind kind, const char *const *lines, size_t n,
                             int vocab_size, int min_freq, char *err, size_t errlen) {
    if (kind != S2S_TOK_CHAR && kind != S2S_TOK_SYMBOL && kind != S2S_TOK_BPE) {
        s2s_errf(err, errlen, "unknown tokenizer kind %d", (int)kind);
        return NULL;
    }
    if (vocab_size > 0 && vocab_size <= S2S_NSPECIAL) {
        s2s_errf(err, errlen, "vocabulary size %d leaves no room beyond the %d special pieces",
                 vocab_size, S2S_NSPECIAL);
        return NULL;
    }
    if (vocab_size > MAX_PIECES) {
        s2s_errf(err, errlen, "vocabulary size %d is above the limit %d", vocab_size, MAX_PIECES);
        return NULL;
    }
    if (n > 0 && !lines) {
        s2s_errf(err, errlen, "no lines given");
        return NULL;
    }
    if (min_freq < 1) min_freq = 1;
    for (size_t i = 0; i < n; i++) {
        if (!lines[i]) {
            s2s_errf(err, errlen, "line %zu is NULL", i + 1);
            return NULL;
        }
        size_t len = strlen(lines[i]);
        size_t ok = s2s_utf8_valid_prefix(lines[i], len);
        if (ok != len) {
            s2s_errf(err, errlen, "line %zu: invalid UTF-8 at byte %zu", i + 1, ok + 1);
            return NULL;
        }
    }
    wordtab wt;
    count_words(&wt, lines, n);
    int64_t spaces = 0; /* CHAR: one "▁" between consecutive words of a line */
    for (size_t i = 0; i < n; i++) {
        const char *p = lines[i], *w;
        size_t wn;
        int64_t k = 0;
        while (next_word(p, &w, &wn)) { k++; p = w + wn; }
        if (k > 1) spaces += k - 1;
    }
    s2s_tokenizer *t = NULL;
    if (wt.n == 0) s2s_errf(err, errlen, "the corpus has no words (%zu lines)", n);
    else if (kind == S2S_TOK_CHAR) t = learn_char(&wt, spaces, vocab_size, min_freq, err, errlen);
    else if (kind == S2S_TOK_SYMBOL) t = learn_symbol(&wt, vocab_size, min_freq, err, errlen);
    else t = learn_bpe(&wt, vocab_size, min_freq, err, errlen);
    wordtab_free(&wt);
    return t;
}

/* ------------------------------------------------------------------------ */
/* Encoding                                                                  */

typedef struct {
    int32_t *ids;
    int max;
    long n; /* full length so far */
} id_sink;

static void sink_put(id_sink *s, int32_t id) {
    if (s->n < s->max) s->ids[s->n] = id;
    s->n++;
}

typedef struct {
    int32_t rank, pos;
} apply_ent;

static int apply_less(apply_ent a, apply_ent b) {
    return a.rank != b.rank ? a.rank < b.rank : a.pos < b.pos;
}

/* Scratch for applying merges to one word of up to cap symbols. */
typedef struct {
    int32_t *sym, *prev, *next;
    apply_ent *heap; /* [3 * cap]: initial pairs + 2 per merge */
    size_t cap;
} bpe_ws;

static void ws_reserve(bpe_ws *ws, size_t n) {
    if (n <= ws->cap) return;
    free(ws->sym);
    free(ws->prev);
    free(ws->next);
    free(ws->heap);
    ws->sym = s2s_xmalloc(n * sizeof *ws->sym);
    ws->prev = s2s_xmalloc(n * sizeof *ws->prev);
    ws->next = s2s_xmalloc(n * sizeof *ws->next);
    ws->heap = s2s_xmalloc(3 * n * sizeof *ws->heap);
    ws->cap = n;
}

static void ws_free(bpe_ws *ws) {
    free(ws->sym);
    free(ws->prev);
    free(ws->next);
    free(ws->heap);
}

static int32_t merge_rank(const s2s_tokenizer *t, int32_t l, int32_t r) {
    if (l < S2S_NSPECIAL || r < S2S_NSPECIAL) return -1;
    return pairmap_get(&t->merge_map, pair_key(l, r));
}

static void apply_push(apply_ent *h, size_t *n, apply_ent e) {
    size_t i = (*n)++;
    h[i] = e;
    while (i > 0 && apply_less(h[i], h[(i - 1) / 2])) {
        apply_ent x = h[i];
        h[i] = h[(i - 1) / 2];
        h[(i - 1) / 2] = x;
        i = (i - 1) / 2;
    }
}

static apply_ent apply_pop(apply_ent *h, size_t *n) {
    apply_ent top = h[0];
    h[0] = h[--(*n)];
    for (size_t i = 0;;) {
        size_t b = i, c1 = 2 * i + 1, c2 = c1 + 1;
        if (c1 < *n && apply_less(h[c1], h[b])) b = c1;
        if (c2 < *n && apply_less(h[c2], h[b])) b = c2;
        if (b == i) break;
        apply_ent x = h[i];
        h[i] = h[b];
        h[b] = x;
        i = b;
    }
    return top;
}

/* BPE-encodes word w[0..n) (valid UTF-8, no whitespace) with its "▁" prefix
 * into out (room for n + 1 ids); returns the id count. Greedy by rank: always
 * apply the lowest-ranked merge present, leftmost first, which reproduces the
 * learner's segmentation of its training words. */
static int bpe_apply(const s2s_tokenizer *t, const char *w, size_t n, int32_t *out, bpe_ws *ws) {
    ws_reserve(ws, n + 1);
    int32_t *sym = ws->sym, *prev = ws->prev, *next = ws->next;
    int32_t m = 0;
    sym[m++] = t->space_id;
    int32_t base_end = S2S_NSPECIAL + t->n_base;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        int k = s2s_utf8_decode(w + i, n - i, &cp);
        S2S_ASSERT(k > 0);
        int id = tok_lookup(t, w + i, (size_t)k);
        sym[m++] = (id >= S2S_NSPECIAL && id < base_end) ? id : S2S_UNK;
        i += (size_t)k;
    }
    size_t hn = 0;
    for (int32_t i = 0; i < m; i++) {
        prev[i] = i - 1;
        next[i] = i + 1 < m ? i + 1 : -1;
        if (i + 1 < m) {
            int32_t r = merge_rank(t, sym[i], sym[i + 1]);
            if (r >= 0) apply_push(ws->heap, &hn, (apply_ent){r, i});
        }
    }
    while (hn > 0) {
        apply_ent e = apply_pop(ws->heap, &hn);
        int32_t i = e.pos, j = next[i];
        if (sym[i] < 0 || j < 0 || merge_rank(t, sym[i], sym[j]) != e.rank) continue; /* stale */
        sym[i] = base_end + e.rank;
        sym[j] = -1;
        next[i] = next[j];
        if (next[j] >= 0) prev[next[j]] = i;
        if (prev[i] >= 0) {
            int32_t r = merge_rank(t, sym[prev[i]], sym[i]);
            if (r >= 0) apply_push(ws->heap, &hn, (apply_ent){r, prev[i]});
        }
        if (next[i] >= 0) {
            int32_t r = merge_rank(t, sym[i], sym[next[i]]);
            if (r >= 0) apply_push(ws->heap, &hn, (apply_ent){r, i});
        }
    }
    int cnt = 0;
    for (int32_t i = 0; i >= 0; i = next[i]) out[cnt++] = sym[i];
    return cnt;
}

static uint32_t cache_rd32(const unsigned char *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* Looks up word w in the cache; copies its ids to out and returns the count, or -1. */
static int cache_get(const s2s_tokenizer *t, const char *w, size_t n, uint64_t h, int32_t *out) {
    cache_shard *sh = &t->cache[h >> 60];
    uint32_t h32 = hash32(h);
    int res = -1;
    pthread_mutex_lock(&sh->mu);
    if (sh->off) {
        for (size_t i = h32 & (CACHE_SLOTS - 1);; i = (i + 1) & (CACHE_SLOTS - 1)) {
            if (sh->off[i] == 0) break;
            if (sh->hash[i] != h32) continue;
            const unsigned char *rec = sh->arena + sh->off[i] - 1;
            if (rec[0] != n || memcmp(rec + 2, w, n) != 0) continue;
            int nids = rec[1];
            const unsigned char *ids = rec + ((2 + n + 3) & ~(size_t)3);
            for (int k = 0; k < nids; k++) out[k] = (int32_t)cache_rd32(ids + 4 * (size_t)k);
            res = nids;
            break;
        }
    }
    pthread_mutex_unlock(&sh->mu);
    return res;
}

static void cache_put(const s2s_tokenizer *t, const char *w, size_t n, uint64_t h,
                      const int32_t *ids, int nids) {
    cache_shard *sh = &t->cache[h >> 60];
    uint32_t h32 = hash32(h);
    size_t need = ((2 + n + 3) & ~(size_t)3) + 4 * (size_t)nids;
    pthread_mutex_lock(&sh->mu);
    if (!sh->off) {
        sh->hash = s2s_xmalloc(CACHE_SLOTS * sizeof *sh->hash);
        sh->off = s2s_xcalloc(CACHE_SLOTS, sizeof *sh->off);
        sh->arena = s2s_xmalloc(CACHE_ARENA);
    }
    if (sh->nentries >= CACHE_MAX_ENTRIES || sh->used + need > CACHE_ARENA) {
        memset(sh->off, 0, CACHE_SLOTS * sizeof *sh->off); /* full: start over */
        sh->used = 0;
        sh->nentries = 0;
    }
    size_t i = h32 & (CACHE_SLOTS - 1);
    int dup = 0;
    for (; sh->off[i] != 0; i = (i + 1) & (CACHE_SLOTS - 1)) {
        const unsigned char *rec = sh->arena + sh->off[i] - 1;
        if (sh->hash[i] == h32 && rec[0] == n && memcmp(rec + 2, w, n) == 0) { dup = 1; break; }
    }
    if (!dup) { /* another thread may have inserted it meanwhile */
        unsigned char *rec = sh->arena + sh->used;
        rec[0] = (unsigned char)n;
        rec[1] = (unsigned char)nids;
        memcpy(rec + 2, w, n);
        unsigned char *dst = rec + ((2 + n + 3) & ~(size_t)3);
        for (int k = 0; k < nids; k++) memcpy(dst + 4 * (size_t)k, &ids[k], 4);
        sh->hash[i] = h32;
        sh->off[i] = (uint32_t)sh->used + 1;
        sh->used += need;
        sh->nentries++;
    }
    pthread_mutex_unlock(&sh->mu);
}

int s2s_tok_encode(const s2s_tokenizer *t, const char *text, int32_t *ids, int max_ids) {
    if (!t || !text) return -1;
    size_t len = strlen(text);
    if (len > MAX_TEXT_BYTES || !s2s_utf8_valid(text, len)) return -1;
    id_sink sink = {ids, ids ? (max_ids > 0 ? max_ids : 0) : 0, 0};
    const char *p = text, *w;
    size_t wn;
    int first = 1;
    if (t->kind == S2S_TOK_SYMBOL) {
        while (next_word(p, &w, &wn)) {
            int id = tok_lookup(t, w, wn);
            sink_put(&sink, id >= S2S_NSPECIAL || id == S2S_UNK ? id : S2S_UNK);
            p = w + wn;
        }
    } else if (t->kind == S2S_TOK_CHAR) {
        while (next_word(p, &w, &wn)) {
            if (!first) sink_put(&sink, t->space_id);
            first = 0;
            for (size_t i = 0; i < wn;) {
                uint32_t cp;
                int k = s2s_utf8_decode(w + i, wn - i, &cp);
                S2S_ASSERT(k > 0);
                int id = tok_lookup(t, w + i, (size_t)k);
                sink_put(&sink, id >= S2S_NSPECIAL ? id : S2S_UNK);
                i += (size_t)k;
            }
            p = w + wn;
        }
    } else {
        bpe_ws ws = {0};
        int32_t small[CACHE_MAX_WORD + 1];
        int32_t *out = NULL;
        size_t outcap = 0;
        while (next_word(p, &w, &wn)) {
            p = w + wn;
            int cnt;
            const int32_t *res;
            if (wn <= CACHE_MAX_WORD) {
                uint64_t h = hash_bytes(w, wn);
                cnt = cache_get(t, w, wn, h, small);
                if (cnt < 0) {
                    cnt = bpe_apply(t, w, wn, small, &ws);
                    cache_put(t, w, wn, h, small, cnt);
                }
                res = small;
            } else {
                if (wn + 1 > outcap) {
                    free(out);
                    outcap = wn + 1;
                    out = s2s_xmalloc(outcap * sizeof *out);
                }
                cnt = bpe_apply(t, w, wn, out, &ws);
                res = out;
            }
            for (int k = 0; k < cnt; k++) sink_put(&sink, res[k]);
        }
        free(out);
        ws_free(&ws);
    }
    S2S_ASSERT(sink.n <= INT_MAX);
    return (int)sink.n;
}

/* ------------------------------------------------------------------------ */
/* Decoding                                                                  */

typedef struct {
    char *p;
    size_t n, cap;
} strbuf;

static void sb_put(strbuf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (b->n + n + 1 > cap) cap *= 2;
        b->p = s2s_xrealloc(b->p, cap);
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}
static void sb_puts(strbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

char *s2s_tok_decode(const s2s_tokenizer *t, const int32_t *ids, int n) {
    strbuf b = {0};
    sb_put(&b, "", 0);
    for (int i = 0; i < n; i++) {
        int32_t id = ids[i];
        if (id == S2S_PAD || id == S2S_BOS || id == S2S_EOS) continue;
        const char *piece = (id >= 0 && id < t->n_pieces) ? t->pieces[id] : special_pieces[S2S_UNK];
        if (t->kind == S2S_TOK_SYMBOL) {
            if (b.n > 0) sb_put(&b, " ", 1);
            sb_puts(&b, piece);
            continue;
        }
        for (const char *q = piece; *q;) { /* "▁" -> " " */
            const char *sp = strstr(q, SPACE_PIECE);
            if (!sp) { sb_puts(&b, q); break; }
            sb_put(&b, q, (size_t)(sp - q));
            sb_put(&b, " ", 1);
            q = sp + SPACE_PIECE_LEN;
        }
    }
    if (t->kind != S2S_TOK_SYMBOL) { /* collapse runs of spaces, trim both ends */
        size_t j = 0;
        for (size_t i = 0; i < b.n; i++) {
            if (b.p[i] == ' ' && (j == 0 || b.p[j - 1] == ' ')) continue;
            b.p[j++] = b.p[i];
        }
        if (j > 0 && b.p[j - 1] == ' ') j--;
        b.p[j] = '\0';
        b.n = j;
    }
    return b.p;
}

/* ------------------------------------------------------------------------ */
/* Serialisation                                                             */
/* Text, one item per line:                                                  */
/*   s2s-tokenizer 1 / kind K / pieces V / base B / merges M                 */
/*   V escaped pieces (\\ \n \xHH for control bytes) / M lines "left right"  */
/*   end <16 hex digits: FNV-1a 64 of every byte before this line>           */

static void sb_piece_escaped(strbuf *b, const char *s) {
    for (const unsigned char *q = (const unsigned char *)s; *q; q++) {
        char tmp[8];
        if (*q == '\\') sb_put(b, "\\\\", 2);
        else if (*q == '\n') sb_put(b, "\\n", 2);
        else if (*q < 0x20 || *q == 0x7f) {
            snprintf(tmp, sizeof tmp, "\\x%02x", *q);
            sb_put(b, tmp, 4);
        } else sb_put(b, (const char *)q, 1);
    }
}

char *s2s_tok_serialize(const s2s_tokenizer *t, size_t *len) {
    strbuf b = {0};
    char line[128];
    snprintf(line, sizeof line, "%s %d\nkind %s\npieces %d\nbase %d\nmerges %d\n", BLOB_MAGIC,
             BLOB_VERSION, s2s_tok_kind_name(t->kind), t->n_pieces, t->n_base,
             t->kind == S2S_TOK_BPE ? t->n_merges : 0);
    sb_puts(&b, line);
    for (int i = 0; i < t->n_pieces; i++) {
        sb_piece_escaped(&b, t->pieces[i]);
        sb_put(&b, "\n", 1);
    }
    if (t->kind == S2S_TOK_BPE) {
        for (int i = 0; i < t->n_merges; i++) {
            snprintf(line, sizeof line, "%d %d\n", (int)t->merges[i].left, (int)t->merges[i].right);
            sb_puts(&b, line);
        }
    }
    snprintf(line, sizeof line, "end %016llx\n", (unsigned long long)hash_bytes(b.p, b.n));
    sb_puts(&b, line);
    if (len) *len = b.n;
    return b.p;
}

typedef struct {
    const char *p;
    size_t end, pos;
    long lineno;
} reader;

/* Next line (without '\n') or 0 if none is complete before r->end. */
static int rd_line(reader *r, const char **line, size_t *n) {
    if (r->pos >= r->end) return 0;
    const char *nl = memchr(r->p + r->pos, '\n', r->end - r->pos);
    if (!nl) return 0;
    *line = r->p + r->pos;
    *n = (size_t)(nl - *line);
    r->pos += *n + 1;
    r->lineno++;
    return 1;
}

/* Parses a non-negative decimal of at most 9 digits from s[0..n); -1 if malformed. */
static long parse_uint(const char *s, size_t n) {
    if (n == 0 || n > 9) return -1;
    long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        v = v * 10 + (s[i] - '0');
    }
    if (n > 1 && s[0] == '0') return -1; /* canonical form only */
    return v;
}

/* Line "<key> <number>" -> number, or -1. */
static long rd_keyed(reader *r, const char *key) {
    const char *line;
    size_t n, k = strlen(key);
    if (!rd_line(r, &line, &n) || n <= k + 1 || memcmp(line, key, k) != 0 || line[k] != ' ')
        return -1;
    return parse_uint(line + k + 1, n - k - 1);
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

/* Unescapes s[0..n) into out (room for n bytes); returns the length or -1. */
static long unescape(char *out, const char *s, size_t n) {
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '\\') { out[j++] = s[i]; continue; }
        if (++i >= n) return -1;
        if (s[i] == '\\') out[j++] = '\\';
        else if (s[i] == 'n') out[j++] = '\n';
        else if (s[i] == 'x' && i + 2 < n && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0) {
            out[j++] = (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
            i += 2;
        } else return -1;
    }
    return (long)j;
}

#define FAIL(...)                                                                    \
    do {                                                                             \
        s2s_errf(err, errlen, __VA_ARGS__);                                          \
        goto fail;                                                                   \
    } while (0)

s2s_tokenizer *s2s_tok_deserialize(const char *blob, size_t len, char *err, size_t errlen) {
    s2s_tokenizer *t = NULL;
    char *tmp = NULL;
    if (!blob || len == 0) FAIL("tokenizer blob is empty");
    if (memchr(blob, '\0', len)) FAIL("tokenizer blob contains a NUL byte (corrupt)");
    if (blob[len - 1] != '\n') FAIL("tokenizer blob is truncated (no final newline)");
    /* Checksum line: "end <16 hex>\n" at the very end, covering all bytes before it. */
    size_t last = len - 1;
    while (last > 0 && blob[last - 1] != '\n') last--;
    if (len - last != 21 || memcmp(blob + last, "end ", 4) != 0)
        FAIL("tokenizer blob is truncated or corrupt (no end line)");
    uint64_t want = 0;
    for (int i = 0; i < 16; i++) {
        int v = hexval(blob[last + 4 + (size_t)i]);
        if (v < 0) FAIL("tokenizer blob has a malformed checksum");
        want = want << 4 | (uint64_t)v;
    }
    if (hash_bytes(blob, last) != want) FAIL("tokenizer blob is corrupt (checksum mismatch)");

    reader r = {blob, last, 0, 0};
    const char *line;
    size_t n;
    size_t mk = strlen(BLOB_MAGIC);
    if (!rd_line(&r, &line, &n) || n <= mk + 1 || memcmp(line, BLOB_MAGIC, mk) != 0 ||
        line[mk] != ' ')
        FAIL("not a tokenizer blob (bad magic)");
    long version = parse_uint(line + mk + 1, n - mk - 1);
    if (version != BLOB_VERSION)
        FAIL("unsupported tokenizer blob version (expected %d)", BLOB_VERSION);
    if (!rd_line(&r, &line, &n) || n < 6 || memcmp(line, "kind ", 5) != 0 || n - 5 > 15)
        FAIL("tokenizer blob line 2: expected 'kind char|symbol|bpe'");
    char kname[16];
    memcpy(kname, line + 5, n - 5);
    kname[n - 5] = '\0';
    s2s_tok_kind kind = s2s_tok_kind_parse(kname);
    if (!kind) FAIL("tokenizer blob line 2: unknown kind");
    long V = rd_keyed(&r, "pieces"), B = rd_keyed(&r, "base"), M = rd_keyed(&r, "merges");
    size_t nlines = 0; /* bounds V and M before anything is allocated for them */
    for (const char *q = blob; (q = memchr(q, '\n', last - (size_t)(q - blob))); q++) nlines++;
    if (V < S2S_NSPECIAL || V > MAX_PIECES || (size_t)V > nlines)
        FAIL("tokenizer blob: bad piece count");
    if (B < 0 || B > V - S2S_NSPECIAL) FAIL("tokenizer blob: bad base count");
    if (M < 0 || M != (kind == S2S_TOK_BPE ? V - S2S_NSPECIAL - B : 0) ||
        (kind != S2S_TOK_BPE && B != V - S2S_NSPECIAL) || (size_t)(V + M) + 5 != nlines)
        FAIL("tokenizer blob: piece, base and merge counts disagree");

    t = tok_new(kind, (size_t)V);
    tmp = s2s_xmalloc(last + 1);
    for (long i = 0; i < V; i++) {
        if (!rd_line(&r, &line, &n)) FAIL("tokenizer blob is truncated in piece %ld", i);
        long k = unescape(tmp, line, n);
        if (k <= 0) FAIL("tokenizer blob: piece %ld is empty or badly escaped", i);
        for (long c = 0; c < k; c++)
            if (tmp[c] == '\0' || is_ws((unsigned char)tmp[c]))
                FAIL("tokenizer blob: piece %ld contains whitespace or NUL", i);
        if (!s2s_utf8_valid(tmp, (size_t)k)) FAIL("tokenizer blob: piece %ld is not valid UTF-8", i);
        if (i < S2S_NSPECIAL && ((size_t)k != strlen(special_pieces[i]) ||
                                 memcmp(tmp, special_pieces[i], (size_t)k) != 0))
            FAIL("tokenizer blob: piece %ld must be %s", i, special_pieces[i]);
        if (i >= S2S_NSPECIAL && is_special_string(tmp, (size_t)k))
            FAIL("tokenizer blob: piece %ld repeats a special piece", i);
        if (kind != S2S_TOK_SYMBOL && i >= S2S_NSPECIAL && i < S2S_NSPECIAL + B &&
            s2s_utf8_count(tmp, (size_t)k) != 1)
            FAIL("tokenizer blob: piece %ld must be a single character", i);
        if (kind == S2S_TOK_BPE && i >= S2S_NSPECIAL + B && s2s_utf8_count(tmp, (size_t)k) < 2)
            FAIL("tokenizer blob: merged piece %ld is a single character", i);
        if (tok_add_piece(t, tmp, (size_t)k) < 0) FAIL("tokenizer blob: piece %ld is a duplicate", i);
    }
    t->n_base = (int)B;
    if (kind == S2S_TOK_BPE) {
        t->merges = s2s_xmalloc((size_t)(M ? M : 1) * sizeof *t->merges);
        for (long i = 0; i < M; i++) {
            if (!rd_line(&r, &line, &n)) FAIL("tokenizer blob is truncated in merge %ld", i);
            const char *sp = memchr(line, ' ', n);
            if (!sp) FAIL("tokenizer blob: merge %ld is malformed", i);
            long a = parse_uint(line, (size_t)(sp - line));
            long b = parse_uint(sp + 1, n - (size_t)(sp - line) - 1);
            long res = S2S_NSPECIAL + B + i;
            if (a < S2S_NSPECIAL || b < S2S_NSPECIAL || a >= res || b >= res)
                FAIL("tokenizer blob: merge %ld refers to a bad piece id", i);
            if (t->plen[a] + t->plen[b] != t->plen[res] ||
                memcmp(t->pieces[res], t->pieces[a], t->plen[a]) != 0 ||
                memcmp(t->pieces[res] + t->plen[a], t->pieces[b], t->plen[b]) != 0)
                FAIL("tokenizer blob: merge %ld does not spell piece %ld", i, res);
            t->merges[i] = (s2s_bpe_merge){(int32_t)a, (int32_t)b};
        }
        t->n_merges = (int)M;
    }
    if (r.pos != r.end) FAIL("tokenizer blob has extra lines before its end line");
    free(tmp);
    tok_finish(t);
    return t;
fail:
    free(tmp);
    s2s_tok_free(t);
    return NULL;
}
