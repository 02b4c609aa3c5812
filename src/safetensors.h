/* safetensors.h - read (mmap) and write safetensors files, the weight and
 * checkpoint format of s2s (shared/STYLE.md: "a file format with a header").
 *
 * Format (https://github.com/huggingface/safetensors): 8-byte little-endian
 * header length N, then N bytes of JSON
 *     {"__metadata__": {"key": "value", ...},
 *      "enc.0.fc1.weight": {"dtype": "F32", "shape": [F, D], "data_offsets": [begin, end]}, ...}
 * then the data section; offsets are relative to its start. Files written here
 * load with Python's safetensors (safe_open / load_file) and vice versa.
 *
 * Reading:
 *     char err[512];
 *     s2s_st_file *f = s2s_st_open("model.safetensors", err, sizeof err);
 *     if (!f) { fprintf(stderr, "s2s: %s\n", err); return 1; }
 *     const s2s_st_tensor *t = s2s_st_find(f, "enc.0.fc1.weight");
 *     const char *cfg = s2s_st_meta(f, "config");             // NULL if absent
 *     const float *w = s2s_st_f32_ptr(t);                      // zero-copy if possible
 *     if (!w) { float *tmp = malloc(t->numel * 4); s2s_st_to_f32(tmp, t); ... }
 *     s2s_st_close(f);                                         // invalidates t, w, cfg
 * s2s_st_open validates the whole header before returning (sizes, dtypes,
 * shapes, offsets, overlaps, holes, metadata), so callers can trust every
 * s2s_st_tensor: data[0..nbytes) lies inside the mapping and
 * nbytes == numel * s2s_dtype_size(dtype).
 *
 * Writing:
 *     s2s_st_writer *w = s2s_st_writer_new();
 *     int64_t shape[2] = {F, D};
 *     s2s_st_writer_add(w, "enc.0.fc1.weight", S2S_DT_F32, 2, shape, fc1_w);
 *     s2s_st_writer_meta(w, "format_version", "1");
 *     if (s2s_st_writer_save(w, "model.safetensors", err, sizeof err) != 0) ...;
 *     s2s_st_writer_free(w);
 * s2s_st_writer_add BORROWS data: it must stay valid and unchanged until
 * s2s_st_writer_save returns (use s2s_st_writer_add_copy for temporaries).
 * The save is atomic (temp file, fsync, rename): on failure the old file at
 * path, if any, is untouched. Output is deterministic: tensors are laid out by
 * element size, largest first (so every tensor is aligned to its element size,
 * like the official writer), then in insertion order; metadata in insertion
 * order; the JSON header is padded with spaces to a multiple of 8 bytes.
 *
 * Host byte order must be little-endian (checked at compile time). Not
 * thread-safe per object; distinct objects may be used from different threads.
 * A file that is truncated by another process while mapped can still SIGBUS. */
#ifndef S2S_SAFETENSORS_H
#define S2S_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#define S2S_ST_MAX_NDIM 8
#define S2S_ST_MAX_HEADER 100000000u /* bytes, the official library's limit */

typedef enum {
    S2S_DT_F32 = 0,
    S2S_DT_F16,
    S2S_DT_BF16,
    S2S_DT_F64,
    S2S_DT_I64,
    S2S_DT_I32,
    S2S_DT_I16,
    S2S_DT_I8,
    S2S_DT_U8,
    S2S_DT_BOOL,
    S2S_DT_U16,
    S2S_DT_U32,
    S2S_DT_U64,
    S2S_DT_COUNT
} s2s_dtype;

/* Size of one element in bytes (0 for an invalid dtype). */
size_t s2s_dtype_size(int dtype);
/* The safetensors name ("F32", "BF16", ...) or NULL for an invalid dtype. */
const char *s2s_dtype_name(int dtype);
/* Inverse of s2s_dtype_name: the dtype, or -1 if the name is unknown. */
int s2s_dtype_from_name(const char *name);

/* ------------------------------------------------------------------ reader */

typedef struct {
    const char *name;                /* UTF-8, NUL-terminated, unique in the file */
    int dtype;                       /* s2s_dtype */
    int ndim;                        /* 0..S2S_ST_MAX_NDIM (0 = scalar, numel 1) */
    int64_t shape[S2S_ST_MAX_NDIM];  /* [ndim], the rest 0 */
    int64_t numel;                   /* product of shape */
    const void *data;                /* [nbytes] inside the read-only mapping */
    size_t nbytes;                   /* numel * s2s_dtype_size(dtype) */
    uint64_t offset;                 /* byte offset of data in the file */
} s2s_st_tensor;

typedef struct s2s_st_file s2s_st_file;

/* Map and validate path. Returns NULL with a one-line message naming the file
 * and the problem, e.g. "m.safetensors: truncated: tensor 'enc.0.fc1.weight'
 * ends at byte 1048576 but the data section has 1000 bytes". */
s2s_st_file *s2s_st_open(const char *path, char *err, size_t errlen);
void s2s_st_close(s2s_st_file *f); /* NULL is fine */

int s2s_st_count(const s2s_st_file *f);  /* number of tensors */
/* i-th tensor in header order (0 <= i < count), NULL if out of range. */
const s2s_st_tensor *s2s_st_at(const s2s_st_file *f, int i);
const s2s_st_tensor *s2s_st_find(const s2s_st_file *f, const char *name); /* NULL if absent */
/* __metadata__ value for key, NULL if absent. */
const char *s2s_st_meta(const s2s_st_file *f, const char *key);
int s2s_st_meta_count(const s2s_st_file *f);
const char *s2s_st_meta_key(const s2s_st_file *f, int i);   /* header order; NULL if out of range */
const char *s2s_st_meta_value(const s2s_st_file *f, int i);
/* Total file size in bytes, and the byte offset where the data section starts. */
uint64_t s2s_st_file_size(const s2s_st_file *f);
uint64_t s2s_st_data_start(const s2s_st_file *f);

/* out[numel] = t converted to fp32. F32, F16, BF16 and F64 (rounded to
 * nearest, out-of-range values become +-inf) are supported. Returns 0, or -1
 * (out untouched) for a non-float dtype. */
int s2s_st_to_f32(float *out, const s2s_st_tensor *t);
/* t->data as a float pointer when t is F32 and 4-byte aligned (so the caller
 * may use the mapping in place, read-only), else NULL. */
const float *s2s_st_f32_ptr(const s2s_st_tensor *t);

/* ------------------------------------------------------------------ writer */

typedef struct s2s_st_writer s2s_st_writer;

s2s_st_writer *s2s_st_writer_new(void);
void s2s_st_writer_free(s2s_st_writer *w); /* NULL is fine */

/* Add a tensor: shape[ndim] (ndim 0..8, each >= 0), data[numel * dtype size],
 * BORROWED until save (may be NULL only when numel is 0). Returns 0, or -1 for
 * a bad argument (unknown dtype, ndim, negative or overflowing shape, name
 * "__metadata__", name not valid UTF-8, duplicate name); then the message is
 * in s2s_st_writer_error(w) and a later save fails with it. */
int s2s_st_writer_add(s2s_st_writer *w, const char *name, int dtype, int ndim,
                      const int64_t *shape, const void *data);
/* Same, but copies data now (the caller may free it right away). */
int s2s_st_writer_add_copy(s2s_st_writer *w, const char *name, int dtype, int ndim,
                           const int64_t *shape, const void *data);
/* Set a __metadata__ entry (both strings copied, valid UTF-8 without NUL);
 * setting a key again replaces its value in place. Returns 0 or -1 as above. */
int s2s_st_writer_meta(s2s_st_writer *w, const char *key, const char *value);
/* First error recorded by add/meta, or NULL. */
const char *s2s_st_writer_error(const s2s_st_writer *w);
/* Write the file atomically. May be called more than once (same bytes each
 * time). Returns 0, or -1 with a one-line message in err. */
int s2s_st_writer_save(s2s_st_writer *w, const char *path, char *err, size_t errlen);

/* ------------------------------------------------------ fp16/bf16 scalars */

/* fp32 -> IEEE half / bfloat16, round to nearest even; overflow gives +-inf,
 * NaN stays NaN (quiet), subnormals are handled exactly. */
uint16_t s2s_f32_to_f16(float x);
uint16_t s2s_f32_to_bf16(float x);
float s2s_f16_to_f32(uint16_t h);  /* exact */
float s2s_bf16_to_f32(uint16_t h); /* exact */
/* Array forms: out[n] = convert(in[n]). */
void s2s_f32_to_f16_n(uint16_t *out, const float *in, size_t n);
void s2s_f32_to_bf16_n(uint16_t *out, const float *in, size_t n);

#endif
