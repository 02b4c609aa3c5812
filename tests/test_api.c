/* test_api.c - the public API (include/s2s.h): one loaded model shared by several
 * threads decoding different inputs at once gives the same outputs as
 * sequential decoding. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "s2s.h"
#include "test_util.h"

#define NT 4
#define NL 24

typedef struct {
    const s2s_model *m;
    const char *const *in;
    char *out[NL];
    int beam, rc;
} job;

static void *work(void *arg) {
    job *j = arg;
    s2s_translate_opts o;
    s2s_translate_opts_default(&o);
    o.beam = j->beam;
    o.batch = 5;
    char err[256];
    for (int rep = 0; rep < 3 && j->rc == 0; rep++) {
        if (rep) for (int i = 0; i < NL; i++) free(j->out[i]);
        j->rc = s2s_translate(j->m, j->in, NL, &o, j->out, NULL, err, sizeof err);
    }
    return NULL;
}

Test(api, shared_model_concurrent_translate_equals_sequential) {
    s2s_model *m = tu_tiny_model(32, 4, 48, 2, 2, 31);
    char *dir = tu_tmpdir(), *p = tu_path(dir, "m.safetensors");
    char err[256];
    cr_assert_eq(s2s_model_save(m, p, NULL, 0, NULL, 0, 1, err, sizeof err), 0, "%s", err);
    s2s_model_free(m);
    s2s_model *shared = s2s_load(p, err, sizeof err);
    cr_assert_not_null(shared, "%s", err);
    char **src, **tgt;
    tu_reverse_task(&src, &tgt, NT * NL, 77);
    job seq[NT], par[NT];
    for (int t = 0; t < NT; t++) {
        seq[t] = (job){shared, (const char *const *)src + t * NL, {0}, 1 + t % 3, 0};
        par[t] = seq[t];
        work(&seq[t]);
        cr_assert_eq(seq[t].rc, 0);
    }
    pthread_t th[NT];
    for (int t = 0; t < NT; t++) pthread_create(&th[t], NULL, work, &par[t]);
    for (int t = 0; t < NT; t++) pthread_join(th[t], NULL);
    for (int t = 0; t < NT; t++) {
        cr_assert_eq(par[t].rc, 0);
        for (int i = 0; i < NL; i++) {
            cr_assert_str_eq(par[t].out[i], seq[t].out[i], "thread %d line %d", t, i);
            free(par[t].out[i]);
            free(seq[t].out[i]);
        }
    }
    for (int i = 0; i < NT * NL; i++) { free(src[i]); free(tgt[i]); }
    free(src); free(tgt);
    s2s_free(shared);
    tu_rmrf(dir);
    free(dir); free(p);
}
