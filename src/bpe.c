/* bpe.c - learning byte-pair-encoding merges (Sennrich et al. 2016) fast.
 *
 * s2s_tok_learn (tokenizer.c) turns the corpus into a table of distinct words
 * (symbol-id sequences with frequencies) and calls s2s_bpe_learn_merges here.
 * Instead of recounting every pair after each merge, we keep:
 *   - pairs:  (left, right) -> total count and the list of words that contain it
 *             (may hold duplicates and stale words; both are harmless),
 *   - a max-heap of (count, left, right) entries, lazily invalidated: every
 *     count change pushes a fresh entry and stale ones are dropped when popped.
 * A merge rewrites only the words in its pair's list and adjusts the counts of
 * the neighbouring pairs, so one merge costs time proportional to the number of
 * its occurrences, not to the corpus. Applying the merges to new text (greedy
 * by rank) lives in tokenizer.c. */
#include "tokenizer.h"

#include "common.h"

#include <string.h>

/* ------------------------------------------------------------------------ */
/* Pair table                                                                */

typedef struct {
    int32_t l, r;        /* symbol ids */
    int64_t count;       /* weighted occurrences over the corpus */
    int32_t *words;      /* [nw] words that may contain the pair */
    int32_t nw, capw;
    int32_t last_word;   /* last word appended (skips consecutive duplicates) */
    uint8_t done;        /* merged, or refused because its string exists */
    uint8_t dirty;       /* count changed during the current merge */
} bpe_pair;

typedef struct {
    int64_t count;
    int32_t l, r, idx;
} bpe_heap_ent;

typedef struct {
    bpe_pair *pairs;
    size_t npairs, cappairs;
    int32_t *slots; /* [tcap] pair index or -1; key is (l, r) of that pair */
    size_t tcap;
    bpe_heap_ent *heap;
    size_t hn, hcap;
    int32_t *dirty;
    size_t nd, capd;
    /* set of piece strings, to refuse merges that would duplicate a piece */
    const char **str;  /* [nstr] */
    size_t *strlen_;   /* [nstr] */
    size_t nstr, capstr;
    int32_t *sslots;   /* [scap] string index or -1 */
    size_t scap;
} bpe_state;

static uint64_t pair_hash(int32_t l, int32_t r) {
    uint64_t k = ((uint64_t)(uint32_t)l << 32) | (uint32_t)r;
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    return k;
}

static void pair_table_grow(bpe_state *s) {
    size_t ncap = s->tcap ? 2 * s->tcap : 1024;
    int32_t *ns = s2s_xmalloc(ncap * sizeof *ns);
    memset(ns, 0xff, ncap * sizeof *ns);
    for (size_t i = 0; i < s->npairs; i++) {
        size_t h = (size_t)pair_hash(s->pairs[i].l, s->pairs[i].r) & (ncap - 1);
        while (ns[h] >= 0) h = (h + 1) & (ncap - 1);
        ns[h] = (int32_t)i;
    }
    free(s->slots);
    s->slots = ns;
    s->tcap = ncap;
}

/* Index of pair (l, r); creates it (count 0) if create, else returns -1 if absent. */
static int32_t pair_get(bpe_state *s, int32_t l, int32_t r, int create) {
    size_t h = (size_t)pair_hash(l, r) & (s->tcap - 1);
    for (;;) {
        int32_t i = s->slots[h];
        if (i < 0) break;
        if (s->pairs[i].l == l && s->pairs[i].r == r) return i;
        h = (h + 1) & (s->tcap - 1);
    }
    if (!create) return -1;
    if (s->npairs == s->cappairs) {
        s->cappairs = s->cappairs ? 2 * s->cappairs : 1024;
        s->pairs = s2s_xrealloc(s->pairs, s->cappairs * sizeof *s->pairs);
    }
    S2S_ASSERT(s->npairs < INT32_MAX);
    int32_t idx = (int32_t)s->npairs++;
    bpe_pair *p = &s->pairs[idx];
    memset(p, 0, sizeof *p);
    p->l = l;
    p->r = r;
    p->last_word = -1;
    s->slots[h] = idx;
    if (2 * s->npairs > s->tcap) pair_table_grow(s); /* keep load <= 1/2 */
    return idx;
}

static void pair_add_word(bpe_pair *p, int32_t w) {
    if (p->last_word == w || p->done) return;
    if (p->nw == p->capw) {
        p->capw = p->capw ? 2 * p->capw : 4;
        p->words = s2s_xrealloc(p->words, (size_t)p->capw * sizeof *p->words);
    }
    p->words[p->nw++] = w;
    p->last_word = w;
}

/* Adds delta to the count of (l, r); a positive delta also records word w. */
static void pair_delta(bpe_state *s, int32_t l, int32_t r, int64_t delta, int32_t w) {
    if (l < S2S_NSPECIAL || r < S2S_NSPECIAL) return; /* barriers never pair */
    int32_t i = pair_get(s, l, r, delta > 0);
    S2S_ASSERT(i >= 0);
    bpe_pair *p = &s->pairs[i];
    p->count += delta;
    S2S_ASSERT(p->count >= 0);
    if (delta > 0) pair_add_word(p, w);
    if (!p->dirty) {
        p->dirty = 1;
        if (s->nd == s->capd) {
            s->capd = s->capd ? 2 * s->capd : 256;
            s->dirty = s2s_xrealloc(s->dirty, s->capd * sizeof *s->dirty);
        }
        s->dirty[s->nd++] = i;
    }
}

/* ------------------------------------------------------------------------ */
/* Max-heap: higher count first, then smaller left id, then smaller right id. */

static int heap_better(const bpe_heap_ent *a, const bpe_heap_ent *b) {
    if (a->count != b->count) return a->count > b->count;
    if (a->l != b->l) return a->l < b->l;
    return a->r < b->r;
}

static void heap_sift_down(bpe_heap_ent *h, size_t n, size_t i) {
    for (;;) {
        size_t best = i, c1 = 2 * i + 1, c2 = c1 + 1;
        if (c1 < n && heap_better(&h[c1], &h[best])) best = c1;
        if (c2 < n && heap_better(&h[c2], &h[best])) best = c2;
        if (best == i) return;
        bpe_heap_ent t = h[i];
        h[i] = h[best];
        h[best] = t;
        i = best;
    }
}

static void heap_push(bpe_state *s, int32_t idx) {
    if (s->hn == s->hcap) {
        s->hcap = s->hcap ? 2 * s->hcap : 1024;
        s->heap = s2s_xrealloc(s->heap, s->hcap * sizeof *s->heap);
    }
    const bpe_pair *p = &s->pairs[idx];
    size_t i = s->hn++;
    s->heap[i] = (bpe_heap_ent){p->count, p->l, p->r, idx};
    while (i > 0) {
        size_t up = (i - 1) / 2;
        if (!heap_better(&s->heap[i], &s->heap[up])) break;
        bpe_heap_ent t = s->heap[i];
        s->heap[i] = s->heap[up];
        s->heap[up] = t;
        i = up;
    }
}

static bpe_heap_ent heap_pop(bpe_state *s) {
    bpe_heap_ent top = s->heap[0];
    s->heap[0] = s->heap[--s->hn];
    heap_sift_down(s->heap, s->hn, 0);
    return top;
}

/* ------------------------------------------------------------------------ */
/* String set (the pieces so far)                                            */

static uint64_t str_hash(const char *p, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)p[i]) * 0x100000001b3ull;
    return h;
}

static void strset_insert_slot(int32_t *slots, size_t cap, uint64_t h, int32_t idx) {
    size_t i = (size_t)h & (cap - 1);
    while (slots[i] >= 0) i = (i + 1) & (cap - 1);
    slots[i] = idx;
}

static int strset_has(const bpe_state *s, const char *p, size_t n) {
    size_t i = (size_t)str_hash(p, n) & (s->scap - 1);
    for (;;) {
        int32_t k = s->sslots[i];
        if (k < 0) return 0;
        if (s->strlen_[k] == n && memcmp(s->str[k], p, n) == 0) return 1;
        i = (i + 1) & (s->scap - 1);
    }
}

static void strset_add(bpe_state *s, const char *p) {
    if (s->nstr == s->capstr) {
        s->capstr = s->capstr ? 2 * s->capstr : 256;
        s->str = s2s_xrealloc(s->str, s->capstr * sizeof *s->str);
        s->strlen_ = s2s_xrealloc(s->strlen_, s->capstr * sizeof *s->strlen_);
    }
    s->str[s->nstr] = p;
    s->strlen_[s->nstr] = strlen(p);
    s->nstr++;
    if (2 * s->nstr > s->scap) {
        size_t ncap = s->scap ? 2 * s->scap : 1024;
        while (2 * s->nstr > ncap) ncap *= 2;
        free(s->sslots);
        s->sslots = s2s_xmalloc(ncap * sizeof *s->sslots);
        memset(s->sslots, 0xff, ncap * sizeof *s->sslots);
        s->scap = ncap;
        for (size_t k = 0; k < s->nstr; k++)
            strset_insert_slot(s->sslots, ncap, str_hash(s->str[k], s->strlen_[k]), (int32_t)k);
    } else {
        strset_insert_slot(s->sslots, s->scap, str_hash(p, s->strlen_[s->nstr - 1]),
                           (int32_t)(s->nstr - 1));
    }
}

/* ------------------------------------------------------------------------ */
/* Learning                                                                  */

/* Replaces every non-overlapping occurrence (left to right) of (a, b) in word w
 * by c, updating the counts of the neighbouring pairs. */
static void merge_word(bpe_state *s, int32_t pi, int32_t *sym, int32_t *len, int64_t f,
                       int32_t w, int32_t a, int32_t b, int32_t c) {
    int32_t n = *len, i = 0, j = 0;
    while (i < n) {
        if (i + 1 < n && sym[i] == a && sym[i + 1] == b) {
            if (j > 0) { /* the left neighbour, as already rewritten */
                pair_delta(s, sym[j - 1], a, -f, w);
                pair_delta(s, sym[j - 1], c, f, w);
            }
            if (i + 2 < n) {
                pair_delta(s, b, sym[i + 2], -f, w);
                pair_delta(s, c, sym[i + 2], f, w);
            }
            s->pairs[pi].count -= f;
            sym[j++] = c;
            i += 2;
        } else {
            sym[j++] = sym[i++];
        }
    }
    *len = j;
}

int s2s_bpe_learn_merges(s2s_bpe_merge **merges_out, char ***merged_out, int32_t *syms,
                         const size_t *off, int32_t *len, const int64_t *freq,
                         size_t n_words, const char *const *pieces, int n_base,
                         int max_merges, int64_t min_count) {
    S2S_ASSERT(n_words <= INT32_MAX && n_base >= S2S_NSPECIAL);
    if (min_count < 1) min_count = 1;
    bpe_state s;
    memset(&s, 0, sizeof s);
    pair_table_grow(&s);
    for (int i = 0; i < n_base; i++) strset_add(&s, pieces[i]);

    /* Initial pair counts and word lists. */
    for (size_t w = 0; w < n_words; w++) {
        const int32_t *sym = syms + off[w];
        for (int32_t i = 0; i + 1 < len[w]; i++) {
            if (sym[i] < S2S_NSPECIAL || sym[i + 1] < S2S_NSPECIAL) continue;
            int32_t pi = pair_get(&s, sym[i], sym[i + 1], 1);
            s.pairs[pi].count += freq[w];
            pair_add_word(&s.pairs[pi], (int32_t)w);
        }
    }
    for (size_t i = 0; i < s.npairs; i++) heap_push(&s, (int32_t)i);

    int32_t *stamp = s2s_xmalloc((n_words ? n_words : 1) * sizeof *stamp);
    for (size_t w = 0; w < n_words; w++) stamp[w] = -1;
    size_t capm = 256;
    int nm = 0;
    s2s_bpe_merge *merges = s2s_xmalloc(capm * sizeof *merges);
    char **merged = s2s_xmalloc(capm * sizeof *merged);

    while (nm < max_merges && s.hn > 0) {
        bpe_heap_ent e = heap_pop(&s);
        bpe_pair *p = &s.pairs[e.idx];
        if (p->done || p->count != e.count) continue; /* stale entry */
        if (e.count < min_count) break; /* the best valid pair is too rare */
        const char *lstr = p->l < n_base ? pieces[p->l] : merged[p->l - n_base];
        const char *rstr = p->r < n_base ? pieces[p->r] : merged[p->r - n_base];
        size_t ll = strlen(lstr), rl = strlen(rstr);
        char *cat = s2s_xmalloc(ll + rl + 1);
        memcpy(cat, lstr, ll);
        memcpy(cat + ll, rstr, rl + 1);
        if (strset_has(&s, cat, ll + rl)) { /* would duplicate a piece: refuse */
            free(cat);
            p->done = 1;
            free(p->words);
            p->words = NULL;
            p->nw = p->capw = 0;
            continue;
        }
        if ((size_t)nm == capm) {
            capm *= 2;
            merges = s2s_xrealloc(merges, capm * sizeof *merges);
            merged = s2s_xrealloc(merged, capm * sizeof *merged);
        }
        int32_t a = p->l, b = p->r, c = n_base + nm;
        merges[nm] = (s2s_bpe_merge){a, b};
        merged[nm] = cat;
        strset_add(&s, cat);
        /* Rewrite the words that contain (a, b). The list may grow (pairs with
         * c are appended to other pairs, never to this one), so read it by index. */
        int32_t pi = e.idx;
        for (int32_t k = 0; k < s.pairs[pi].nw; k++) {
            int32_t w = s.pairs[pi].words[k];
            if (stamp[w] == nm) continue;
            stamp[w] = nm;
            merge_word(&s, pi, syms + off[w], &len[w], freq[w], w, a, b, c);
        }
        p = &s.pairs[pi];
        S2S_ASSERT(p->count == 0);
        p->done = 1;
        free(p->words);
        p->words = NULL;
        p->nw = p->capw = 0;
        nm++;
        for (size_t k = 0; k < s.nd; k++) {
            bpe_pair *q = &s.pairs[s.dirty[k]];
            q->dirty = 0;
            if (q->count > 0 && !q->done) heap_push(&s, s.dirty[k]);
        }
        s.nd = 0;
    }

    for (size_t i = 0; i < s.npairs; i++) free(s.pairs[i].words);
    free(s.pairs);
    free(s.slots);
    free(s.heap);
    free(s.dirty);
    free(s.str);
    free(s.strlen_);
    free(s.sslots);
    free(stamp);
    *merges_out = merges;
    *merged_out = merged;
    return nm;
}
