/* prune.c - decoder layer selection and physical removal of pruned encoder heads
 * and FFN units (see prune.h). */
#include "prune.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "l0.h"
#include "safetensors.h"

int s2s_prune_select_layers(int *keep, int n, int L) {
    if (n < 1 || n > L) return -1;
    if (n == 1) { keep[0] = 0; return 0; }
    for (int d = 0; d < n; d++) keep[d] = (int)(((long long)(L - 1) * d) / (n - 1)); /* floor */
    return 0;
}

/* "dec.{i}.rest" -> i and the offset of "rest"; -1 for any other name. */
static int dec_layer_of(const char *name, int *rest) {
    if (strncmp(name, "dec.", 4) != 0 || !isdigit((unsigned char)name[4])) return -1;
    char *e;
    long i = strtol(name + 4, &e, 10);
    if (*e != '.') return -1;
    *rest = (int)(e - name);
    return (int)i;
}

static void move_extras(s2s_model *dst, s2s_model *src) {
    dst->src_tok = src->src_tok;
    dst->tgt_tok = src->tgt_tok;
    src->src_tok = src->tgt_tok = NULL;
    dst->train_meta = src->train_meta;
    src->train_meta = NULL;
}

s2s_model *s2s_prune_decoder(s2s_model *src, const int *keep, int n, char *err, size_t errlen) {
    int L = src->cfg.dec_layers;
    for (int d = 0; d < n; d++)
        if (keep[d] < 0 || keep[d] >= L || (d > 0 && keep[d] <= keep[d - 1])) {
            s2s_errf(err, errlen, "decoder layer selection: index %d is not increasing within [0, %d)", keep[d], L);
            return NULL;
        }
    if (n < 1) { s2s_errf(err, errlen, "decoder layer selection: keep at least one layer"); return NULL; }
    s2s_config c = src->cfg;
    c.dec_layers = n;
    if (s2s_config_check(&c, err, errlen) != 0) return NULL;
    s2s_model *m = s2s_model_new_empty(&c, 1);
    for (int i = 0; i < m->n_params; i++) {
        s2s_param_entry *e = &m->params[i];
        char nm[96];
        int rest, d = dec_layer_of(e->name, &rest);
        if (d >= 0) snprintf(nm, sizeof nm, "dec.%d%s", keep[d], e->name + rest);
        else snprintf(nm, sizeof nm, "%s", e->name);
        const s2s_tensor *t = s2s_model_param(src, nm);
        S2S_ASSERT(t && t->n == e->t->n); /* same config but fewer layers: every tensor exists */
        memcpy(e->t->data, t->data, t->n * sizeof(float));
    }
    move_extras(m, src);
    return m;
}

/* ------------------------------------------------------------ encoder */

typedef struct {
    int n_old, n_new; /* widths */
    int *keep;        /* [n_new] old unit indices */
    float *fold;      /* [n_new] z folded into the output projection */
} group_plan;

/* Rows keep[j]*S..+S of w [*, K] (or of a vector when K = 1) into out. */
static void copy_rows(float *out, const float *w, const int *keep, int n, int S, int K) {
    for (int j = 0; j < n; j++)
        memcpy(out + (size_t)j * S * K, w + (size_t)keep[j] * S * K, (size_t)S * K * sizeof(float));
}

/* Column blocks keep[j]*S..+S of w [R, Kold], times fold[j], into out [R, n*S]. */
static void copy_cols(float *out, const float *w, int R, int Kold, const int *keep, const float *fold, int n, int S) {
    int Knew = n * S;
    for (int r = 0; r < R; r++)
        for (int j = 0; j < n; j++)
            for (int c = 0; c < S; c++)
                out[(size_t)r * Knew + j * S + c] = fold[j] * w[(size_t)r * Kold + (size_t)keep[j] * S + c];
}

s2s_model *s2s_prune_encoder(s2s_model *src, float *const *zh, float *const *zf) {
    const s2s_config *sc = &src->cfg;
    int Le = sc->enc_layers, D = sc->d_model, Dh = D / sc->n_heads;
    group_plan *gp = s2s_xcalloc((size_t)(2 * Le + 1), sizeof *gp); /* [l][0 heads, 1 ffn] */
    s2s_config c = *sc;
    c.enc_widths = 1;
    int any_before = 0; /* a surviving sublayer precedes this one */
    for (int l = 0; l < Le; l++)
        for (int s = 0; s < 2; s++) {
            group_plan *p = &gp[2 * l + s];
            const float *z = s ? (zf ? zf[l] : NULL) : (zh ? zh[l] : NULL);
            p->n_old = s ? s2s_config_enc_ff(sc, l) : s2s_config_enc_heads(sc, l);
            p->keep = s2s_xmalloc((size_t)(p->n_old + 1) * sizeof(int));
            p->fold = s2s_xmalloc((size_t)(p->n_old + 1) * sizeof(float));
            for (int i = 0; i < p->n_old; i++) {
                float zi = z ? z[i] : 1.0f;
                if (zi != 0.0f) { p->keep[p->n_new] = i; p->fold[p->n_new++] = zi; }
            }
            if (p->n_new == 0 && p->n_old > 0 && !any_before) { /* nowhere to move its bias: keep a silent unit */
                p->keep[0] = 0; p->fold[0] = 0.0f; p->n_new = 1;
            }
            if (p->n_new > 0) any_before = 1;
            if (s) c.enc_ff[l] = p->n_new; else c.enc_heads[l] = p->n_new;
        }
    s2s_model *m = s2s_model_new_empty(&c, 1);
    for (int i = 0; i < m->n_params; i++) { /* everything outside the encoder layers */
        s2s_param_entry *e = &m->params[i];
        if (strncmp(e->name, "enc.", 4) == 0 && isdigit((unsigned char)e->name[4])) continue;
        const s2s_tensor *t = s2s_model_param(src, e->name);
        S2S_ASSERT(t && t->n == e->t->n);
        memcpy(e->t->data, t->data, t->n * sizeof(float));
    }
    float *last_bias = NULL; /* output bias of the latest surviving sublayer (in m) */
    for (int l = 0; l < Le; l++) {
        const s2s_enc_layer *S = &src->enc[l];
        s2s_enc_layer *L = &m->enc[l];
        group_plan *ph = &gp[2 * l], *pf = &gp[2 * l + 1];
        if (ph->n_new > 0) {
            memcpy(L->ln1.w->data, S->ln1.w->data, (size_t)D * sizeof(float));
            memcpy(L->ln1.b->data, S->ln1.b->data, (size_t)D * sizeof(float));
            const s2s_lin_p *sp[3] = {&S->q, &S->k, &S->v};
            s2s_lin_p *dp[3] = {&L->q, &L->k, &L->v};
            for (int k = 0; k < 3; k++) {
                copy_rows(dp[k]->w->data, sp[k]->w->data, ph->keep, ph->n_new, Dh, D);
                copy_rows(dp[k]->b->data, sp[k]->b->data, ph->keep, ph->n_new, Dh, 1);
            }
            copy_cols(L->o.w->data, S->o.w->data, D, ph->n_old * Dh, ph->keep, ph->fold, ph->n_new, Dh);
            memcpy(L->o.b->data, S->o.b->data, (size_t)D * sizeof(float));
            last_bias = L->o.b->data;
        } else if (ph->n_old > 0) {
            S2S_ASSERT(last_bias != NULL);
            for (int j = 0; j < D; j++) last_bias[j] += S->o.b->data[j];
        }
        if (pf->n_new > 0) {
            memcpy(L->ln2.w->data, S->ln2.w->data, (size_t)D * sizeof(float));
            memcpy(L->ln2.b->data, S->ln2.b->data, (size_t)D * sizeof(float));
            copy_rows(L->fc1.w->data, S->fc1.w->data, pf->keep, pf->n_new, 1, D);
            copy_rows(L->fc1.b->data, S->fc1.b->data, pf->keep, pf->n_new, 1, 1);
            copy_cols(L->fc2.w->data, S->fc2.w->data, D, pf->n_old, pf->keep, pf->fold, pf->n_new, 1);
            memcpy(L->fc2.b->data, S->fc2.b->data, (size_t)D * sizeof(float));
            last_bias = L->fc2.b->data;
        } else if (pf->n_old > 0) {
            S2S_ASSERT(last_bias != NULL);
            for (int j = 0; j < D; j++) last_bias[j] += S->fc2.b->data[j];
        }
    }
    for (int i = 0; i < 2 * Le; i++) { free(gp[i].keep); free(gp[i].fold); }
    free(gp);
    move_extras(m, src);
    return m;
}

int s2s_prune_read_masks(const char *path, const s2s_model *m, float ***zh, float ***zf, char *err,
                         size_t errlen) {
    char e2[512];
    s2s_st_file *f = s2s_st_open(path, e2, sizeof e2);
    if (!f) { s2s_errf(err, errlen, "%s", e2); return -1; }
    int Le = m->cfg.enc_layers;
    float **h = s2s_xcalloc((size_t)Le + 1, sizeof *h), **u = s2s_xcalloc((size_t)Le + 1, sizeof *u);
    int rc = -1;
    for (int l = 0; l < Le; l++)
        for (int s = 0; s < 2; s++) {
            int n = s ? s2s_config_enc_ff(&m->cfg, l) : s2s_config_enc_heads(&m->cfg, l);
            if (n == 0) continue;
            char nm[64];
            snprintf(nm, sizeof nm, "enc.%d.l0.%s", l, s ? "ff" : "heads");
            const s2s_st_tensor *t = s2s_st_find(f, nm);
            if (!t) { s2s_errf(err, errlen, "%s: no L0 masks (tensor '%s' is missing)", path, nm); goto out; }
            if (t->numel != n || (t->dtype != S2S_DT_F32 && t->dtype != S2S_DT_F16 && t->dtype != S2S_DT_BF16)) {
                s2s_errf(err, errlen, "%s: tensor '%s' must hold %d floats", path, nm, n);
                goto out;
            }
            float *la = s2s_xmalloc((size_t)n * sizeof(float)), *z = s2s_xmalloc((size_t)n * sizeof(float));
            s2s_st_to_f32(la, t);
            s2s_l0_deterministic(z, la, n);
            free(la);
            if (s) u[l] = z; else h[l] = z;
        }
    rc = 0;
out:
    s2s_st_close(f);
    if (rc != 0) { s2s_prune_masks_free(h, u, Le); h = u = NULL; }
    *zh = h; *zf = u;
    return rc;
}

void s2s_prune_masks_free(float **zh, float **zf, int Le) {
    for (int l = 0; l < Le; l++) {
        if (zh) free(zh[l]);
        if (zf) free(zf[l]);
    }
    free(zh); free(zf);
}
