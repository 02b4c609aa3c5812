/* safetensors.c - safetensors reader (mmap + full header validation), writer
 * (atomic, deterministic) and fp16/bf16 conversions. See safetensors.h.
 *
 * The reader's rules follow the official implementation (huggingface/safetensors,
 * Metadata::validate): header length <= 100 MB, header a JSON object, every
 * tensor's byte size equal to numel * element size, and the tensors covering
 * the data section exactly: sorted by offset, each starts where the previous
 * ended, the last ends at the end of the file. No holes (which would let a
 * file smuggle other content), no overlaps, no trailing bytes. */
#include "safetensors.h"

#include "common.h"
#include "json.h"
#include "utf8.h"

#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "s2s safetensors I/O assumes a little-endian host"
#endif

/* ================================================================ dtypes */

static const struct { const char *name; size_t size; } DTYPES[S2S_DT_COUNT] = {
    [S2S_DT_F32] = {"F32", 4},  [S2S_DT_F16] = {"F16", 2},   [S2S_DT_BF16] = {"BF16", 2},
    [S2S_DT_F64] = {"F64", 8},  [S2S_DT_I64] = {"I64", 8},   [S2S_DT_I32] = {"I32", 4},
    [S2S_DT_I16] = {"I16", 2},  [S2S_DT_I8] = {"I8", 1},     [S2S_DT_U8] = {"U8", 1},
    [S2S_DT_BOOL] = {"BOOL", 1}, [S2S_DT_U16] = {"U16", 2},  [S2S_DT_U32] = {"U32", 4},
    [S2S_DT_U64] = {"U64", 8},
};

size_t s2s_dtype_size(int dtype) {
    return dtype >= 0 && dtype < S2S_DT_COUNT ? DTYPES[dtype].size : 0;
}

const char *s2s_dtype_name(int dtype) {
    return dtype >= 0 && dtype < S2S_DT_COUNT ? DTYPES[dtype].name : NULL;
}

int s2s_dtype_from_name(const char *name) {
    if (!name) return -1;
    for (int d = 0; d < S2S_DT_COUNT; d++)
        if (strcmp(DTYPES[d].name, name) == 0) return d;
    return -1;
}

/* numel = prod(shape[ndim]) and *nbytes = numel * esize; -1 on overflow
 * (numel must fit in int64, nbytes in both uint64 and size_t). */
static int shape_bytes(const int64_t *shape, int ndim, size_t esize, int64_t *numel, uint64_t *nbytes) {
    uint64_t n = 1;
    for (int d = 0; d < ndim; d++)
        if (__builtin_mul_overflow(n, (uint64_t)shape[d], &n)) return -1;
    if (n > (uint64_t)INT64_MAX) return -1;
    uint64_t b;
    if (__builtin_mul_overflow(n, (uint64_t)esize, &b) || b > (uint64_t)SIZE_MAX) return -1;
    *numel = (int64_t)n;
    *nbytes = b;
    return 0;
}

/* ================================================================ reader */

struct s2s_st_file {
    char *path;
    void *map;               /* [size] read-only mapping of the whole file */
    uint64_t size;           /* file size in bytes */
    uint64_t data_start;     /* 8 + header length */
    s2s_json *header;        /* parsed header; tensor names and metadata point into it */
    s2s_st_tensor *tensors;  /* [n] header order */
    int n;
    const s2s_st_tensor **by_name; /* [n] sorted by name, for s2s_st_find */
    const char **meta_keys;  /* [nmeta] */
    const char **meta_vals;  /* [nmeta] */
    int nmeta;
};

__attribute__((format(printf, 4, 5)))
static void st_errf(char *err, size_t errlen, const char *path, const char *fmt, ...) {
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    s2s_errf(err, errlen, "%s: %s", path, msg);
}

/* Write "[2, 3, 4]" into buf. */
static void shape_str(char *buf, size_t len, const int64_t *shape, int ndim) {
    size_t k = (size_t)snprintf(buf, len, "[");
    for (int d = 0; d < ndim && k < len; d++)
        k += (size_t)snprintf(buf + k, len - k, d ? ", %lld" : "%lld", (long long)shape[d]);
    if (k < len) snprintf(buf + k, len - k, "]");
}

static int cmp_name(const void *a, const void *b) {
    const s2s_st_tensor *x = *(const s2s_st_tensor *const *)a, *y = *(const s2s_st_tensor *const *)b;
    return strcmp(x->name, y->name);
}

static int cmp_offset(const void *a, const void *b) {
    const s2s_st_tensor *x = *(const s2s_st_tensor *const *)a, *y = *(const s2s_st_tensor *const *)b;
    if (x->offset != y->offset) return x->offset < y->offset ? -1 : 1;
    if (x->nbytes != y->nbytes) return x->nbytes < y->nbytes ? -1 : 1;
    return 0;
}

/* Read one non-negative integer JSON value into *out; -1 if it is anything else. */
static int json_nonneg(const s2s_json *j, int64_t *out) {
    int64_t v;
    if (s2s_json_int64(j, &v) != 0 || v < 0) return -1;
    *out = v;
    return 0;
}

/* Validate one tensor entry and fill t (offset relative to the data section
 * for now). Returns 0 or -1 with a message. */
static int parse_entry(s2s_st_tensor *t, const char *name, const s2s_json *e, uint64_t data_size,
                       const char *path, char *err, size_t errlen) {
    memset(t, 0, sizeof *t);
    t->name = name;
    if (s2s_json_typeof(e) != S2S_JSON_OBJ) {
        st_errf(err, errlen, path, "bad header: tensor '%.200s' is a JSON %s, expected an object",
                name, s2s_json_type_name(s2s_json_typeof(e)));
        return -1;
    }
    /* dtype */
    const s2s_json *jd = s2s_json_get(e, "dtype");
    if (!jd) { st_errf(err, errlen, path, "bad header: tensor '%.200s' has no dtype", name); return -1; }
    const char *ds = s2s_json_str(jd);
    t->dtype = ds && strlen(ds) == s2s_json_strlen(jd) ? s2s_dtype_from_name(ds) : -1;
    if (t->dtype < 0) {
        if (ds) st_errf(err, errlen, path, "tensor '%.200s' has unknown dtype '%.40s'", name, ds);
        else st_errf(err, errlen, path, "bad header: tensor '%.200s' has a dtype that is a %s, not a string",
                     name, s2s_json_type_name(s2s_json_typeof(jd)));
        return -1;
    }
    /* shape */
    const s2s_json *js = s2s_json_get(e, "shape");
    if (s2s_json_typeof(js) != S2S_JSON_ARR) {
        st_errf(err, errlen, path, "bad header: tensor '%.200s' has %s shape (expected an array of integers)",
                name, js ? "a non-array" : "no");
        return -1;
    }
    size_t nd = s2s_json_len(js);
    if (nd > S2S_ST_MAX_NDIM) {
        st_errf(err, errlen, path, "tensor '%.200s' has a shape with %zu dimensions (at most %d are supported)",
                name, nd, S2S_ST_MAX_NDIM);
        return -1;
    }
    t->ndim = (int)nd;
    for (size_t d = 0; d < nd; d++) {
        if (json_nonneg(s2s_json_at(js, d), &t->shape[d]) != 0) {
            st_errf(err, errlen, path, "bad header: tensor '%.200s' has a bad shape: dimension %zu is not a non-negative integer",
                    name, d);
            return -1;
        }
    }
    size_t esize = s2s_dtype_size(t->dtype);
    uint64_t need;
    char sh[200];
    shape_str(sh, sizeof sh, t->shape, t->ndim);
    if (shape_bytes(t->shape, t->ndim, esize, &t->numel, &need) != 0) {
        st_errf(err, errlen, path, "tensor '%.200s' has shape %s whose size overflows", name, sh);
        return -1;
    }
    /* data_offsets */
    const s2s_json *jo = s2s_json_get(e, "data_offsets");
    int64_t b, en;
    if (s2s_json_typeof(jo) != S2S_JSON_ARR || s2s_json_len(jo) != 2 ||
        json_nonneg(s2s_json_at(jo, 0), &b) != 0 || json_nonneg(s2s_json_at(jo, 1), &en) != 0) {
        st_errf(err, errlen, path, "bad header: tensor '%.200s' has %s data_offsets (expected [begin, end] as non-negative integers)",
                name, jo ? "bad" : "no");
        return -1;
    }
    if (b > en) {
        st_errf(err, errlen, path, "bad header: tensor '%.200s' has data_offsets [%lld, %lld] with begin after end",
                name, (long long)b, (long long)en);
        return -1;
    }
    if ((uint64_t)(en - b) != need) {
        st_errf(err, errlen, path, "tensor '%.200s' has shape %s and dtype %s (%llu bytes) but data_offsets [%lld, %lld] span %llu bytes",
                name, sh, s2s_dtype_name(t->dtype), (unsigned long long)need, (long long)b, (long long)en,
                (unsigned long long)(en - b));
        return -1;
    }
    if ((uint64_t)en > data_size) {
        st_errf(err, errlen, path, "truncated: tensor '%.200s' ends at byte %lld but the data section has %llu bytes",
                name, (long long)en, (unsigned long long)data_size);
        return -1;
    }
    t->offset = (uint64_t)b;
    t->nbytes = (size_t)need;
    return 0;
}

/* Parse and validate the header; fill f->tensors, f->meta_*. */
static int parse_header(s2s_st_file *f, const char *hdr, size_t hlen, char *err, size_t errlen) {
    const char *path = f->path;
    char jerr[200];
    /* Like the official reader: the header must start with '{' (no leading
     * whitespace); this also gives a clearer message for non-safetensors files. */
    if (hdr[0] != '{') {
        st_errf(err, errlen, path, "not a safetensors file (the header does not start with '{')");
        return -1;
    }
    f->header = s2s_json_parse(hdr, hlen, jerr, sizeof jerr);
    if (!f->header) { st_errf(err, errlen, path, "bad header: %s", jerr); return -1; }
    const s2s_json *root = f->header;
    if (s2s_json_typeof(root) != S2S_JSON_OBJ) {
        st_errf(err, errlen, path, "bad header: expected a JSON object");
        return -1;
    }
    uint64_t data_size = f->size - f->data_start;
    size_t nkeys = s2s_json_len(root);
    f->tensors = s2s_xcalloc(nkeys ? nkeys : 1, sizeof *f->tensors);
    int seen_meta = 0;
    for (size_t i = 0; i < nkeys; i++) {
        const char *key = s2s_json_key_at(root, i);
        const s2s_json *val = s2s_json_at(root, i);
        if (strlen(key) != s2s_json_key_len_at(root, i)) {
            st_errf(err, errlen, path, "bad header: a tensor name contains a NUL character (after '%.200s')", key);
            return -1;
        }
        if (strcmp(key, "__metadata__") == 0) {
            if (seen_meta++) { st_errf(err, errlen, path, "bad header: duplicate __metadata__"); return -1; }
            if (s2s_json_typeof(val) != S2S_JSON_OBJ) {
                st_errf(err, errlen, path, "bad header: __metadata__ is a JSON %s, expected an object of strings",
                        s2s_json_type_name(s2s_json_typeof(val)));
                return -1;
            }
            size_t nm = s2s_json_len(val);
            f->meta_keys = s2s_xcalloc(nm ? nm : 1, sizeof *f->meta_keys);
            f->meta_vals = s2s_xcalloc(nm ? nm : 1, sizeof *f->meta_vals);
            for (size_t m = 0; m < nm; m++) {
                const char *mk = s2s_json_key_at(val, m);
                const s2s_json *mv = s2s_json_at(val, m);
                if (s2s_json_typeof(mv) != S2S_JSON_STR) {
                    st_errf(err, errlen, path, "bad header: __metadata__ value of '%.200s' is a JSON %s, expected a string",
                            mk, s2s_json_type_name(s2s_json_typeof(mv)));
                    return -1;
                }
                if (strlen(mk) != s2s_json_key_len_at(val, m) || strlen(s2s_json_str(mv)) != s2s_json_strlen(mv)) {
                    st_errf(err, errlen, path, "bad header: __metadata__ entry '%.200s' contains a NUL character", mk);
                    return -1;
                }
                for (int q = 0; q < f->nmeta; q++)
                    if (strcmp(f->meta_keys[q], mk) == 0) {
                        st_errf(err, errlen, path, "bad header: duplicate __metadata__ key '%.200s'", mk);
                        return -1;
                    }
                f->meta_keys[f->nmeta] = mk;
                f->meta_vals[f->nmeta] = s2s_json_str(mv);
                f->nmeta++;
            }
            continue;
        }
        if (parse_entry(&f->tensors[f->n], key, val, data_size, path, err, errlen) != 0) return -1;
        f->n++;
    }
    /* Unique names (sorted index doubles as the lookup table for s2s_st_find). */
    f->by_name = s2s_xmalloc((size_t)(f->n ? f->n : 1) * sizeof *f->by_name);
    for (int i = 0; i < f->n; i++) f->by_name[i] = &f->tensors[i];
    qsort(f->by_name, (size_t)f->n, sizeof *f->by_name, cmp_name);
    for (int i = 1; i < f->n; i++) {
        const char *a = f->by_name[i - 1]->name, *b = f->by_name[i]->name;
        if (strcmp(a, b) == 0) { st_errf(err, errlen, path, "bad header: duplicate tensor name '%.200s'", a); return -1; }
    }
    /* Exact coverage of the data section. */
    const s2s_st_tensor **ord = s2s_xmalloc((size_t)(f->n ? f->n : 1) * sizeof *ord);
    for (int i = 0; i < f->n; i++) ord[i] = &f->tensors[i];
    qsort(ord, (size_t)f->n, sizeof *ord, cmp_offset);
    uint64_t expect = 0;
    const s2s_st_tensor *prev = NULL;
    int rc = 0;
    for (int i = 0; i < f->n && rc == 0; i++) {
        const s2s_st_tensor *t = ord[i];
        if (t->offset < expect) {
            st_errf(err, errlen, path, "bad header: tensor '%.200s' (bytes %llu..%llu) overlaps tensor '%.200s' (bytes %llu..%llu)",
                    t->name, (unsigned long long)t->offset, (unsigned long long)(t->offset + t->nbytes), prev->name,
                    (unsigned long long)prev->offset, (unsigned long long)(prev->offset + prev->nbytes));
            rc = -1;
        } else if (t->offset > expect) {
            st_errf(err, errlen, path, "bad header: gap in the data section: bytes %llu..%llu belong to no tensor",
                    (unsigned long long)expect, (unsigned long long)t->offset);
            rc = -1;
        }
        expect = t->offset + t->nbytes;
        prev = t;
    }
    free((void *)ord);
    if (rc != 0) return -1;
    if (expect != data_size) {
        st_errf(err, errlen, path, "trailing data: the tensors end at byte %llu of the data section but it has %llu bytes",
                (unsigned long long)expect, (unsigned long long)data_size);
        return -1;
    }
    for (int i = 0; i < f->n; i++) {
        s2s_st_tensor *t = &f->tensors[i];
        t->offset += f->data_start;
        t->data = (const char *)f->map + t->offset;
    }
    return 0;
}

s2s_st_file *s2s_st_open(const char *path, char *err, size_t errlen) {
    if (!path) { s2s_errf(err, errlen, "no path given"); return NULL; }
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK); /* O_NONBLOCK: don't hang on a FIFO */
    if (fd < 0) { st_errf(err, errlen, path, "cannot open: %s", strerror(errno)); return NULL; }
    struct stat st;
    if (fstat(fd, &st) != 0) { st_errf(err, errlen, path, "cannot stat: %s", strerror(errno)); close(fd); return NULL; }
    if (S_ISDIR(st.st_mode)) { st_errf(err, errlen, path, "is a directory, not a safetensors file"); close(fd); return NULL; }
    if (!S_ISREG(st.st_mode)) { st_errf(err, errlen, path, "not a regular file"); close(fd); return NULL; }
    uint64_t size = (uint64_t)st.st_size;
    if (size == 0) { st_errf(err, errlen, path, "empty file (0 bytes)"); close(fd); return NULL; }
    if (size < 8) {
        st_errf(err, errlen, path, "not a safetensors file (only %llu bytes, shorter than the 8-byte header length)",
                (unsigned long long)size);
        close(fd);
        return NULL;
    }
    if (size > (uint64_t)SIZE_MAX) { st_errf(err, errlen, path, "file too large to map"); close(fd); return NULL; }
    void *map = mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE, fd, 0);
    int map_errno = errno;
    close(fd);
    if (map == MAP_FAILED) { st_errf(err, errlen, path, "cannot mmap: %s", strerror(map_errno)); return NULL; }

    s2s_st_file *f = s2s_xcalloc(1, sizeof *f);
    f->path = s2s_xstrdup(path);
    f->map = map;
    f->size = size;
    const unsigned char *p = map;
    uint64_t hlen = 0;
    for (int k = 7; k >= 0; k--) hlen = (hlen << 8) | p[k];
    if (hlen == 0) {
        st_errf(err, errlen, path, "not a safetensors file (header length is 0)");
        goto bad;
    }
    if (hlen > size - 8) {
        if (hlen <= S2S_ST_MAX_HEADER && size > 8 && p[8] == '{')
            st_errf(err, errlen, path, "truncated: the header is %llu bytes but only %llu bytes follow the length field",
                    (unsigned long long)hlen, (unsigned long long)(size - 8));
        else
            st_errf(err, errlen, path, "not a safetensors file (header length 0x%llx is larger than the file, %llu bytes)",
                    (unsigned long long)hlen, (unsigned long long)size);
        goto bad;
    }
    if (hlen > S2S_ST_MAX_HEADER) {
        st_errf(err, errlen, path, "header too large (%llu bytes, the limit is %u)", (unsigned long long)hlen,
                S2S_ST_MAX_HEADER);
        goto bad;
    }
    f->data_start = 8 + hlen;
    if (parse_header(f, (const char *)p + 8, (size_t)hlen, err, errlen) != 0) goto bad;
    return f;
bad:
    s2s_st_close(f);
    return NULL;
}

void s2s_st_close(s2s_st_file *f) {
    if (!f) return;
    if (f->map) munmap(f->map, (size_t)f->size);
    s2s_json_free(f->header);
    free(f->tensors);
    free(f->by_name);
    free(f->meta_keys);
    free(f->meta_vals);
    free(f->path);
    free(f);
}

int s2s_st_count(const s2s_st_file *f) { return f ? f->n : 0; }

const s2s_st_tensor *s2s_st_at(const s2s_st_file *f, int i) {
    return f && i >= 0 && i < f->n ? &f->tensors[i] : NULL;
}

const s2s_st_tensor *s2s_st_find(const s2s_st_file *f, const char *name) {
    if (!f || !name) return NULL;
    int lo = 0, hi = f->n; /* binary search over by_name */
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        int c = strcmp(f->by_name[mid]->name, name);
        if (c == 0) return f->by_name[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

const char *s2s_st_meta(const s2s_st_file *f, const char *key) {
    if (!f || !key) return NULL;
    for (int i = 0; i < f->nmeta; i++)
        if (strcmp(f->meta_keys[i], key) == 0) return f->meta_vals[i];
    return NULL;
}

int s2s_st_meta_count(const s2s_st_file *f) { return f ? f->nmeta : 0; }
const char *s2s_st_meta_key(const s2s_st_file *f, int i) { return f && i >= 0 && i < f->nmeta ? f->meta_keys[i] : NULL; }
const char *s2s_st_meta_value(const s2s_st_file *f, int i) { return f && i >= 0 && i < f->nmeta ? f->meta_vals[i] : NULL; }
uint64_t s2s_st_file_size(const s2s_st_file *f) { return f ? f->size : 0; }
uint64_t s2s_st_data_start(const s2s_st_file *f) { return f ? f->data_start : 0; }

int s2s_st_to_f32(float *out, const s2s_st_tensor *t) {
    const unsigned char *p = t->data;
    size_t n = (size_t)t->numel;
    switch (t->dtype) {
    case S2S_DT_F32:
        if (n) memcpy(out, p, n * 4);
        return 0;
    case S2S_DT_F16:
        for (size_t i = 0; i < n; i++) { uint16_t h; memcpy(&h, p + 2 * i, 2); out[i] = s2s_f16_to_f32(h); }
        return 0;
    case S2S_DT_BF16:
        for (size_t i = 0; i < n; i++) { uint16_t h; memcpy(&h, p + 2 * i, 2); out[i] = s2s_bf16_to_f32(h); }
        return 0;
    case S2S_DT_F64:
        for (size_t i = 0; i < n; i++) {
            double d;
            memcpy(&d, p + 8 * i, 8);
            /* Out-of-range double -> float is undefined in ISO C; saturate to inf explicitly. */
            if (d > FLT_MAX) out[i] = d < 0x1.ffffffp127 ? FLT_MAX : INFINITY;
            else if (d < -FLT_MAX) out[i] = d > -0x1.ffffffp127 ? -FLT_MAX : -INFINITY;
            else out[i] = (float)d;
        }
        return 0;
    default:
        return -1;
    }
}

const float *s2s_st_f32_ptr(const s2s_st_tensor *t) {
    if (!t || t->dtype != S2S_DT_F32 || ((uintptr_t)t->data & 3u) != 0) return NULL;
    return (const float *)t->data;
}

/* ================================================================ writer */

typedef struct {
    char *name;
    int dtype;
    int ndim;
    int64_t shape[S2S_ST_MAX_NDIM];
    const void *data; /* [nbytes], borrowed or == owned */
    void *owned;      /* copy made by add_copy, else NULL */
    size_t nbytes;
} wtensor;

struct s2s_st_writer {
    wtensor *t; /* [n] insertion order */
    int n, cap;
    char **mkeys, **mvals; /* [nm] insertion order */
    int nm, mcap;
    char *error; /* first add/meta error */
};

s2s_st_writer *s2s_st_writer_new(void) { return s2s_xcalloc(1, sizeof(s2s_st_writer)); }

void s2s_st_writer_free(s2s_st_writer *w) {
    if (!w) return;
    for (int i = 0; i < w->n; i++) { free(w->t[i].name); free(w->t[i].owned); }
    for (int i = 0; i < w->nm; i++) { free(w->mkeys[i]); free(w->mvals[i]); }
    free(w->t);
    free(w->mkeys);
    free(w->mvals);
    free(w->error);
    free(w);
}

const char *s2s_st_writer_error(const s2s_st_writer *w) { return w ? w->error : NULL; }

__attribute__((format(printf, 2, 3)))
static int writer_fail(s2s_st_writer *w, const char *fmt, ...) {
    if (w->error) return -1; /* keep the first */
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    w->error = s2s_xstrdup(msg);
    return -1;
}

static int writer_add(s2s_st_writer *w, const char *name, int dtype, int ndim, const int64_t *shape,
                      const void *data, int copy) {
    if (!w) return -1;
    if (!name) return writer_fail(w, "tensor with a NULL name");
    if (strcmp(name, "__metadata__") == 0) return writer_fail(w, "tensor name '__metadata__' is reserved");
    if (!s2s_utf8_valid(name, strlen(name))) return writer_fail(w, "tensor name '%.200s' is not valid UTF-8", name);
    if (dtype < 0 || dtype >= S2S_DT_COUNT) return writer_fail(w, "tensor '%.200s': unknown dtype %d", name, dtype);
    if (ndim < 0 || ndim > S2S_ST_MAX_NDIM)
        return writer_fail(w, "tensor '%.200s': ndim %d (must be 0..%d)", name, ndim, S2S_ST_MAX_NDIM);
    if (ndim > 0 && !shape) return writer_fail(w, "tensor '%.200s': NULL shape", name);
    for (int d = 0; d < ndim; d++)
        if (shape[d] < 0) return writer_fail(w, "tensor '%.200s': negative dimension %lld", name, (long long)shape[d]);
    int64_t numel;
    uint64_t nbytes;
    if (shape_bytes(shape, ndim, s2s_dtype_size(dtype), &numel, &nbytes) != 0)
        return writer_fail(w, "tensor '%.200s': shape too large", name);
    if (nbytes > 0 && !data) return writer_fail(w, "tensor '%.200s': NULL data", name);
    for (int i = 0; i < w->n; i++)
        if (strcmp(w->t[i].name, name) == 0) return writer_fail(w, "duplicate tensor name '%.200s'", name);
    if (w->n == w->cap) {
        w->cap = w->cap ? 2 * w->cap : 16;
        w->t = s2s_xrealloc(w->t, (size_t)w->cap * sizeof *w->t);
    }
    wtensor *t = &w->t[w->n++];
    memset(t, 0, sizeof *t);
    t->name = s2s_xstrdup(name);
    t->dtype = dtype;
    t->ndim = ndim;
    for (int d = 0; d < ndim; d++) t->shape[d] = shape[d];
    t->nbytes = (size_t)nbytes;
    if (copy && nbytes > 0) {
        t->owned = s2s_xmalloc((size_t)nbytes);
        memcpy(t->owned, data, (size_t)nbytes);
        t->data = t->owned;
    } else {
        t->data = data;
    }
    return 0;
}

int s2s_st_writer_add(s2s_st_writer *w, const char *name, int dtype, int ndim, const int64_t *shape,
                      const void *data) {
    return writer_add(w, name, dtype, ndim, shape, data, 0);
}

int s2s_st_writer_add_copy(s2s_st_writer *w, const char *name, int dtype, int ndim, const int64_t *shape,
                           const void *data) {
    return writer_add(w, name, dtype, ndim, shape, data, 1);
}

int s2s_st_writer_meta(s2s_st_writer *w, const char *key, const char *value) {
    if (!w) return -1;
    if (!key || !value) return writer_fail(w, "metadata with a NULL key or value");
    if (!s2s_utf8_valid(key, strlen(key))) return writer_fail(w, "metadata key '%.200s' is not valid UTF-8", key);
    if (!s2s_utf8_valid(value, strlen(value)))
        return writer_fail(w, "metadata value of '%.200s' is not valid UTF-8", key);
    for (int i = 0; i < w->nm; i++)
        if (strcmp(w->mkeys[i], key) == 0) {
            free(w->mvals[i]);
            w->mvals[i] = s2s_xstrdup(value);
            return 0;
        }
    if (w->nm == w->mcap) {
        w->mcap = w->mcap ? 2 * w->mcap : 8;
        w->mkeys = s2s_xrealloc(w->mkeys, (size_t)w->mcap * sizeof *w->mkeys);
        w->mvals = s2s_xrealloc(w->mvals, (size_t)w->mcap * sizeof *w->mvals);
    }
    w->mkeys[w->nm] = s2s_xstrdup(key);
    w->mvals[w->nm] = s2s_xstrdup(value);
    w->nm++;
    return 0;
}

/* Write all of buf to fd; 0 or -1 (errno set). */
static int write_all(int fd, const void *buf, size_t n) {
    const char *p = buf;
    while (n > 0) {
        size_t chunk = n < ((size_t)1 << 30) ? n : ((size_t)1 << 30);
        ssize_t k = write(fd, p, chunk);
        if (k < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        if (k == 0) { errno = EIO; return -1; }
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

/* Test hook (tests/test_crash.c): with S2S_DEBUG_SAVE_DELAY_MS=N in the
 * environment every save pauses N ms after writing the header, leaving the
 * temporary file half-written, so that a test can kill the process inside a
 * checkpoint write. Unset (the normal case) it costs one getenv per save. */
static void debug_save_delay(void) {
    const char *s = getenv("S2S_DEBUG_SAVE_DELAY_MS");
    long ms = s ? strtol(s, NULL, 10) : 0;
    if (ms <= 0) return;
    if (ms > 60000) ms = 60000;
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL); /* a signal may cut it short: fine */
}

int s2s_st_writer_save(s2s_st_writer *w, const char *path, char *err, size_t errlen) {
    if (!w || !path) { s2s_errf(err, errlen, "cannot save: no writer or no path"); return -1; }
    if (w->error) { s2s_errf(err, errlen, "cannot save %s: %s", path, w->error); return -1; }

    /* Layout: element size 8, 4, 2, 1; insertion order within each. */
    int *ord = s2s_xmalloc((size_t)(w->n ? w->n : 1) * sizeof *ord);
    int k = 0;
    for (size_t es = 8; es >= 1; es /= 2)
        for (int i = 0; i < w->n; i++)
            if (s2s_dtype_size(w->t[i].dtype) == es) ord[k++] = i;
    S2S_ASSERT(k == w->n);

    s2s_strbuf h;
    s2s_strbuf_init(&h);
    s2s_strbuf_putc(&h, '{');
    int first = 1;
    if (w->nm > 0) {
        s2s_strbuf_puts(&h, "\"__metadata__\":{");
        for (int i = 0; i < w->nm; i++) {
            if (i) s2s_strbuf_putc(&h, ',');
            s2s_json_escape(&h, w->mkeys[i], strlen(w->mkeys[i]));
            s2s_strbuf_putc(&h, ':');
            s2s_json_escape(&h, w->mvals[i], strlen(w->mvals[i]));
        }
        s2s_strbuf_putc(&h, '}');
        first = 0;
    }
    uint64_t off = 0;
    for (int j = 0; j < w->n; j++) {
        const wtensor *t = &w->t[ord[j]];
        if (!first) s2s_strbuf_putc(&h, ',');
        first = 0;
        s2s_json_escape(&h, t->name, strlen(t->name));
        s2s_strbuf_appendf(&h, ":{\"dtype\":\"%s\",\"shape\":[", s2s_dtype_name(t->dtype));
        for (int d = 0; d < t->ndim; d++) s2s_strbuf_appendf(&h, d ? ",%lld" : "%lld", (long long)t->shape[d]);
        s2s_strbuf_appendf(&h, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off,
                           (unsigned long long)(off + t->nbytes));
        off += t->nbytes;
    }
    s2s_strbuf_putc(&h, '}');
    while (h.len % 8 != 0) s2s_strbuf_putc(&h, ' ');
    if (h.len > S2S_ST_MAX_HEADER) {
        s2s_errf(err, errlen, "cannot save %s: header would be %zu bytes (limit %u)", path, h.len, S2S_ST_MAX_HEADER);
        s2s_strbuf_free(&h);
        free(ord);
        return -1;
    }
    unsigned char len8[8];
    for (int b = 0; b < 8; b++) len8[b] = (unsigned char)((uint64_t)h.len >> (8 * b));

    /* Temp file in the same directory, then fsync + rename. */
    static unsigned counter;
    unsigned seq = __atomic_fetch_add(&counter, 1u, __ATOMIC_RELAXED);
    size_t L = strlen(path) + 48;
    char *tmp = s2s_xmalloc(L);
    snprintf(tmp, L, "%s.tmp.%ld.%u", path, (long)getpid(), seq);
    int rc = -1;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        s2s_errf(err, errlen, "cannot write %s: %s", path, strerror(errno));
        goto done;
    }
    int ok = write_all(fd, len8, 8) == 0 && write_all(fd, h.s, h.len) == 0;
    if (ok) debug_save_delay();
    for (int j = 0; ok && j < w->n; j++) {
        const wtensor *t = &w->t[ord[j]];
        if (t->nbytes) ok = write_all(fd, t->data, t->nbytes) == 0;
    }
    if (ok) ok = fsync(fd) == 0;
    int e = errno;
    if (close(fd) != 0 && ok) { ok = 0; e = errno; }
    if (!ok) {
        s2s_errf(err, errlen, "cannot write %s: %s", path, strerror(e));
        unlink(tmp);
        goto done;
    }
    if (rename(tmp, path) != 0) {
        s2s_errf(err, errlen, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
        unlink(tmp);
        goto done;
    }
    s2s_fsync_parent(path);
    rc = 0;
done:
    free(tmp);
    s2s_strbuf_free(&h);
    free(ord);
    return rc;
}

/* ====================================================== fp16 / bf16 */

uint16_t s2s_f32_to_f16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    uint32_t ax = x & 0x7FFFFFFFu;
    if (ax > 0x7F800000u) return (uint16_t)(sign | 0x7E00u | ((ax >> 13) & 0x3FFu)); /* NaN, quiet */
    if (ax >= 0x47800000u) return (uint16_t)(sign | 0x7C00u); /* >= 65536 (and inf): inf */
    if (ax >= 0x38800000u) {
        /* Normal half: rebias the exponent (127 -> 15) and round the 13 dropped
         * mantissa bits to nearest even; a carry may roll into the exponent,
         * up to 0x7C00 (inf) for values >= 65520. */
        uint32_t r = ax - 0x38000000u;
        uint32_t h = r >> 13, rem = r & 0x1FFFu;
        if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) h++;
        return (uint16_t)(sign | h);
    }
    if (ax < 0x33000000u) return sign; /* < 2^-25 (half the smallest subnormal): zero */
    /* Subnormal half: value = m * 2^-24, m = mant24 * 2^(E-126-23+24) with E the
     * biased fp32 exponent (102..112), i.e. mant24 >> (126 - E), rounded to even.
     * A round-up to 0x400 gives the smallest normal, which is correct. */
    uint32_t E = ax >> 23;
    uint32_t m = (ax & 0x7FFFFFu) | 0x800000u;
    unsigned shift = 126u - E; /* 14..24 */
    uint32_t h = m >> shift, rem = m & ((1u << shift) - 1u), half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (h & 1u))) h++;
    return (uint16_t)(sign | h);
}

float s2s_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t e = (h >> 10) & 0x1Fu, m = h & 0x3FFu, x;
    if (e == 0x1F) x = sign | 0x7F800000u | (m << 13);        /* inf / NaN */
    else if (e != 0) x = sign | ((e + 112u) << 23) | (m << 13); /* normal */
    else if (m == 0) x = sign;                                  /* +-0 */
    else {                                                      /* subnormal: normalise */
        e = 113;
        while (!(m & 0x400u)) { m <<= 1; e--; }
        x = sign | (e << 23) | ((m & 0x3FFu) << 13);
    }
    float f;
    memcpy(&f, &x, 4);
    return f;
}

uint16_t s2s_f32_to_bf16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7FFFFFFFu) > 0x7F800000u) return (uint16_t)((x >> 16) | 0x40u); /* NaN, quiet */
    x += 0x7FFFu + ((x >> 16) & 1u); /* round to nearest even; overflow carries to inf */
    return (uint16_t)(x >> 16);
}

float s2s_bf16_to_f32(uint16_t h) {
    uint32_t x = (uint32_t)h << 16;
    float f;
    memcpy(&f, &x, 4);
    return f;
}

void s2s_f32_to_f16_n(uint16_t *out, const float *in, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = s2s_f32_to_f16(in[i]);
}

void s2s_f32_to_bf16_n(uint16_t *out, const float *in, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = s2s_f32_to_bf16(in[i]);
}
