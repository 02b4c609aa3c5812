/* test_fuzz_regressions.c - the fuzz harnesses' inputs as tests (Criterion).
 *
 * Every file of the seed corpora (fuzz/corpus/<harness>/) and every input that
 * once crashed a harness (tests/data/fuzz/<harness>/) goes through the same
 * entry points as the libFuzzer harnesses (fuzz/fuzz_*.c are included here with
 * S2S_FUZZ_NO_MAIN), so `make test` and `make SAN=1 test` run them under the
 * harnesses' property checks, and under ASan + UBSan in CI. Then one test per
 * bug the fuzzers or their review found, feeding the input to the public API
 * and asserting a clean one-line error. Runs from the repository root. */
#include <criterion/criterion.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define S2S_FUZZ_NO_MAIN 1
#include "../fuzz/fuzz_config.c"
#include "../fuzz/fuzz_safetensors.c"
#include "../fuzz/fuzz_tokenizer.c"
#include "../fuzz/fuzz_translate_lines.c"

#include "model.h"
#include "safetensors.h"
#include "test_util.h"
#include "train.h"

/* Runs every regular file in dir through one(); returns how many. */
static int run_dir(const char *dir, int (*one)(const uint8_t *, size_t)) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        char path[1024];
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) continue;
        FILE *f = fopen(path, "rb");
        cr_assert(f, "cannot open %s", path);
        uint8_t *buf = malloc((size_t)st.st_size + 1);
        cr_assert(buf);
        cr_assert(fread(buf, 1, (size_t)st.st_size, f) == (size_t)st.st_size, "cannot read %s", path);
        fclose(f);
        /* exact-size copy, so that ASan sees any read past the input */
        uint8_t *exact = malloc(st.st_size ? (size_t)st.st_size : 1);
        cr_assert(exact);
        memcpy(exact, buf, (size_t)st.st_size);
        free(buf);
        one(exact, (size_t)st.st_size);
        free(exact);
        n++;
    }
    closedir(d);
    return n;
}

static void run_harness(const char *name, int (*one)(const uint8_t *, size_t)) {
    char dir[256];
    snprintf(dir, sizeof dir, "fuzz/corpus/%s", name);
    int seeds = run_dir(dir, one);
    cr_assert(seeds > 0, "no seeds in %s (run from the repository root)", dir);
    snprintf(dir, sizeof dir, "tests/data/fuzz/%s", name);
    run_dir(dir, one);
}

Test(fuzz_regressions, corpus_safetensors, .timeout = 60) { run_harness("safetensors", fz_st_one); }
Test(fuzz_regressions, corpus_tokenizer, .timeout = 60) { run_harness("tokenizer", fz_tok_one); }
Test(fuzz_regressions, corpus_config, .timeout = 60) { run_harness("config", fz_cfg_one); }
Test(fuzz_regressions, corpus_translate_lines, .timeout = 60) {
    fz_tr_init();
    run_harness("translate_lines", fz_tr_one);
}

/* ------------------------------------------------------------ found bugs */

/* Load path both ways; must fail quickly with a message naming the shape. */
static void expect_shape_error(const char *path) {
    for (int trainable = 0; trainable <= 1; trainable++) {
        char err[512] = "";
        s2s_model *m = s2s_model_load(path, trainable, err, sizeof err);
        cr_assert_null(m, "%s loaded (trainable %d)", path, trainable);
        cr_assert(strstr(err, "has shape") && strstr(err, "the config needs"), "trainable %d: %s", trainable, err);
        cr_assert_null(strchr(err, '\n'));
    }
}

/* A valid tiny model whose config says d_model 65536, max_len 65536: the
 * loader used to fill the sinusoidal position table [max_len, D] (16 GiB)
 * before comparing any tensor shape with the config. */
Test(fuzz_regressions, config_asks_for_huge_position_table, .timeout = 20) {
    expect_shape_error("tests/data/fuzz/safetensors/oom-positions.safetensors");
}

/* Same model, config d_model 8192, d_ff 2^20: a trainable load (train --init,
 * resume) used to allocate every weight the config names (tens of GiB) before
 * comparing shapes, and abort on out of memory. */
Test(fuzz_regressions, config_asks_for_huge_trainable_weights, .timeout = 20) {
    expect_shape_error("tests/data/fuzz/safetensors/oom-trainable.safetensors");
}

/* Rewrite path with its __metadata__["s2s.trainer"] replaced by trainer. */
static void set_trainer_meta(const char *path, const char *trainer) {
    char err[512];
    s2s_st_file *f = s2s_st_open(path, err, sizeof err);
    cr_assert(f, "%s", err);
    s2s_st_writer *w = s2s_st_writer_new();
    for (int i = 0; i < s2s_st_count(f); i++) {
        const s2s_st_tensor *t = s2s_st_at(f, i);
        s2s_st_writer_add_copy(w, t->name, t->dtype, t->ndim, t->shape, t->data);
    }
    for (int i = 0; i < s2s_st_meta_count(f); i++) {
        const char *k = s2s_st_meta_key(f, i);
        s2s_st_writer_meta(w, k, strcmp(k, "s2s.trainer") == 0 ? trainer : s2s_st_meta_value(f, i));
    }
    s2s_st_close(f);
    cr_assert(s2s_st_writer_save(w, path, err, sizeof err) == 0, "%s", err);
    s2s_st_writer_free(w);
}

/* A last.safetensors whose trainer state is corrupt: resuming used to convert
 * NaN (a missing key) and out-of-range numbers to integers (undefined) and to
 * take a negative batch_pos as the index into the epoch's batch plan (a read
 * out of bounds). Now each gives a one-line error. */
Test(fuzz_regressions, resume_with_corrupt_trainer_state, .timeout = 120) {
    char *dir = tu_tmpdir();
    cr_assert(dir);
    char *src = tu_path(dir, "train.src"), *tgt = tu_path(dir, "train.tgt"), *out = tu_path(dir, "out");
    tu_write(src, "abc\nbca\ncab\nab\nba\n");
    tu_write(tgt, "c b a\na c b\nb a c\nb a\na b\n");
    s2s_train_opts o;
    s2s_train_opts_default(&o);
    o.train_src = src; o.train_tgt = tgt; o.out_dir = out;
    o.model.d_model = 8; o.model.n_heads = 2; o.model.d_ff = 8;
    o.model.enc_layers = 1; o.model.dec_layers = 1; o.model.max_len = 16;
    o.tokens_per_batch = 16; o.max_steps = 1; o.eval_every = 0; o.log_every = 0; o.quiet = 1;
    char err[512] = "";
    cr_assert(s2s_train(&o, err, sizeof err) == 0, "%s", err);
    char *last = tu_path(out, "last.safetensors");
    static const char *const bad[] = {
        "{\"step\":1,\"epoch\":0,\"batch_pos\":-1000000,\"rng\":\"5\",\"best\":0,\"has_best\":0,\"bad_evals\":0,\"elapsed\":1,\"tokens\":9}",
        "{\"step\":1,\"epoch\":0,\"batch_pos\":1e300,\"rng\":\"5\",\"best\":0,\"has_best\":0,\"bad_evals\":0,\"elapsed\":1,\"tokens\":9}",
        "{\"step\":-1,\"epoch\":-3,\"batch_pos\":0,\"rng\":\"5\",\"best\":0,\"has_best\":0,\"bad_evals\":0,\"elapsed\":1,\"tokens\":9}",
        "{}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        set_trainer_meta(last, bad[i]);
        o.max_steps = 3;
        err[0] = '\0';
        cr_assert(s2s_train(&o, err, sizeof err) == 1, "trainer state %zu was accepted", i);
        cr_assert(strstr(err, "trainer state"), "%zu: %s", i, err);
    }
    free(last);
    tu_rmrf(dir);
    free(dir); free(src); free(tgt); free(out);
}
