/* test_cli.c - the s2s command line on bad input: every case gives a one-line
 * error naming the problem and a non-zero exit, never a crash, and leaves files
 * on disk intact. Uses the binary in $S2S_BIN (make test sets it). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "model.h"
#include "test_util.h"

typedef struct {
    char *dir, *model;
} fixture;

static fixture fx;

static void setup(void) {
    fx.dir = tu_tmpdir();
    fx.model = tu_path(fx.dir, "tiny.safetensors");
    s2s_model *m = tu_tiny_model(16, 2, 24, 1, 1, 23);
    char err[256];
    cr_assert_eq(s2s_model_save(m, fx.model, NULL, 0, NULL, 0, 0, err, sizeof err), 0, "%s", err);
    s2s_model_free(m);
}

static void teardown(void) {
    tu_rmrf(fx.dir);
    free(fx.dir);
    free(fx.model);
}

/* Run "<bin> args" with stdin from a string; check status and output. */
static char *run(const char *stdin_text, const char *args, int *status) {
    char *in = tu_path(fx.dir, "stdin.txt");
    tu_write(in, stdin_text ? stdin_text : "");
    char *cmd;
    cr_assert(asprintf(&cmd, "%s %s < %s", tu_bin(), args, in) > 0);
    char *out = NULL;
    *status = tu_run(cmd, &out);
    free(cmd);
    free(in);
    return out;
}

static void expect_fail(const char *stdin_text, const char *args, const char *needle) {
    int st;
    char *out = run(stdin_text, args, &st);
    cr_assert(st != 0 && st < 128, "'%s' should fail cleanly, got status %d: %s", args, st, out);
    cr_assert(strstr(out, needle) != NULL, "'%s': output '%s' should mention '%s'", args, out, needle);
    char *nl = strchr(out, '\n');
    cr_assert(nl == NULL || nl[1] == '\0', "'%s': error must be one line: '%s'", args, out);
    free(out);
}

TestSuite(cli, .init = setup, .fini = teardown);

Test(cli, bad_model_files) {
    char *args, *p = tu_path(fx.dir, "bad.safetensors");
    expect_fail("abc\n", "translate -m /nonexistent.safetensors", "/nonexistent.safetensors");
    tu_write(p, "");
    cr_assert(asprintf(&args, "translate -m %s", p) > 0);
    expect_fail("abc\n", args, "empty");
    tu_write(p, "hello, I am a text file and not a model at all\n");
    expect_fail("abc\n", args, "bad.safetensors");
    /* truncated copy of a real model */
    char *cmd;
    cr_assert(asprintf(&cmd, "head -c 3000 %s > %s", fx.model, p) > 0);
    cr_assert_eq(tu_run(cmd, NULL), 0);
    expect_fail("abc\n", args, "bad.safetensors");
    free(args);
    cr_assert(asprintf(&args, "translate -m %s", fx.dir) > 0); /* a directory */
    expect_fail("abc\n", args, fx.dir);
    free(args); free(cmd); free(p);
}

Test(cli, bad_flags) {
    char *a;
    cr_assert(asprintf(&a, "translate -m %s --frobnicate", fx.model) > 0);
    expect_fail("", a, "unknown option '--frobnicate'");
    free(a);
    cr_assert(asprintf(&a, "translate -m %s --beam zero", fx.model) > 0);
    expect_fail("", a, "--beam: expected an integer");
    free(a);
    cr_assert(asprintf(&a, "translate -m %s --beam 0", fx.model) > 0);
    expect_fail("", a, "out of range");
    free(a);
    cr_assert(asprintf(&a, "translate -m %s --beam", fx.model) > 0);
    expect_fail("", a, "needs a value");
    free(a);
    expect_fail("", "frobnicate", "unknown command");
    expect_fail("", "train --lr fast --train-src x --train-tgt y -o z", "--lr: expected a number");
    expect_fail("", "train --train-src x", "need --train-src, --train-tgt and -o");
    expect_fail("", "score --metric nonsense --ref /dev/null", "nonsense");
    /* a config file with a wrong type or an unknown key: one line naming file and line */
    char *conf = tu_path(fx.dir, "bad.conf"), *args;
    tu_write(conf, "# comment\nd-model = big\n");
    cr_assert(asprintf(&args, "train --config %s", conf) > 0);
    expect_fail("", args, "bad.conf line 2): --d-model: expected an integer");
    tu_write(conf, "dropout = 1.5\n");
    expect_fail("", args, "out of range");
    tu_write(conf, "no equals sign\n");
    expect_fail("", args, "expected 'key = value'");
    free(args); free(conf);
}

Test(cli, translate_odd_input) {
    int st;
    char *a;
    cr_assert(asprintf(&a, "translate -q -m %s", fx.model) > 0);
    /* empty input -> no output */
    char *out = run("", a, &st);
    cr_assert_eq(st, 0, "%s", out);
    cr_assert_str_eq(out, "");
    free(out);
    /* empty lines -> empty outputs, invalid UTF-8 replaced with a warning, long line truncated */
    char big[400];
    memset(big, 'a', sizeof big - 2);
    big[sizeof big - 2] = '\n';
    big[sizeof big - 1] = '\0';
    char input[600];
    snprintf(input, sizeof input, "\n\xff\xfe" "abc\n%s\n", big);
    out = run(input, a, &st);
    cr_assert_eq(st, 0, "%s", out);
    cr_assert(strstr(out, "line 2: invalid UTF-8") != NULL, "%s", out);
    cr_assert(strstr(out, "line 3: longer than") != NULL, "%s", out);
    free(out);
    /* a NUL byte is an error, not a silent cut */
    char *in = tu_path(fx.dir, "nul.txt"), *cmd;
    FILE *f = fopen(in, "wb");
    fwrite("ab\0c\n", 1, 5, f);
    fclose(f);
    cr_assert(asprintf(&cmd, "%s translate -q -m %s < %s", tu_bin(), fx.model, in) > 0);
    st = tu_run(cmd, &out);
    cr_assert(st == 1 && strstr(out, "NUL") != NULL, "status %d: %s", st, out);
    free(out); free(cmd); free(in); free(a);
}

Test(cli, translate_output_line_per_input_line) {
    int st;
    char *a;
    cr_assert(asprintf(&a, "translate -q --beam 3 --batch 2 -m %s", fx.model) > 0);
    char *out = run("abc\n\nj\nhello\nabcdefg\n", a, &st);
    cr_assert_eq(st, 0, "%s", out);
    int lines = 0;
    for (char *p = out; *p; p++) lines += *p == '\n';
    cr_assert_eq(lines, 5, "one output line per input line: '%s'", out);
    free(out); free(a);
}

/* --max-memory: batches are split to fit (same output), a sentence that cannot fit is refused */
Test(cli, translate_memory_bound) {
    int st;
    char *input = malloc(4000), *a, *b;
    input[0] = '\0';
    for (int i = 0; i < 300; i++) strcat(input, i % 3 ? "abcdefg\n" : "hij\n");
    cr_assert(asprintf(&a, "translate -q --beam 2 --batch 300 -m %s", fx.model) > 0);
    cr_assert(asprintf(&b, "translate -q --beam 2 --batch 300 --max-memory 1 -m %s", fx.model) > 0);
    char *o1 = run(input, a, &st);
    cr_assert_eq(st, 0, "%s", o1);
    char *o2 = run(input, b, &st);
    cr_assert_eq(st, 0, "%s", o2);
    cr_assert_str_eq(o1, o2, "splitting batches to fit memory must not change outputs");
    free(a); free(o1); free(o2);
    cr_assert(asprintf(&a, "translate -q --beam 256 --max-memory 1 -m %s", fx.model) > 0);
    expect_fail("abc\nabcdefghij\n", a, "line 2 needs");
    free(a); free(b); free(input);
}

/* unwritable output paths: one-line error, non-zero exit, nothing left behind */
Test(cli, unwritable_output_paths) {
    char *a;
    cr_assert(asprintf(&a, "convert -m %s -o /nonexistent-dir/out.safetensors", fx.model) > 0);
    expect_fail("", a, "/nonexistent-dir/out.safetensors");
    free(a);
    expect_fail("abc\n", "bpe learn --vocab 10 -o /nonexistent-dir/tok", "/nonexistent-dir/tok");
    char *src = tu_path(fx.dir, "x.src");
    tu_write(src, "abc\n");
    cr_assert(asprintf(&a, "train --train-src %s --train-tgt %s -o /proc/s2s-cannot-write", src, src) > 0);
    expect_fail("", a, "/proc/s2s-cannot-write");
    free(a); free(src);
}

Test(cli, info_prints_architecture) {
    int st;
    char *a;
    cr_assert(asprintf(&a, "info -m %s", fx.model) > 0);
    char *out = run("", a, &st);
    cr_assert_eq(st, 0);
    cr_assert(strstr(out, "parameters:") && strstr(out, "d_model 16"), "%s", out);
    free(out); free(a);
}

Test(cli, train_does_not_damage_existing_model_on_error) {
    /* a failing training run (unreadable data) leaves the out dir's files alone */
    char *out_dir = tu_path(fx.dir, "run");
    mkdir(out_dir, 0755);
    char *best = tu_path(out_dir, "best.safetensors"), *cmd;
    cr_assert(asprintf(&cmd, "cp %s %s", fx.model, best) > 0);
    cr_assert_eq(tu_run(cmd, NULL), 0);
    free(cmd);
    struct stat before, after;
    stat(best, &before);
    char *a;
    cr_assert(asprintf(&a, "train --train-src /nonexistent.src --train-tgt /nonexistent.tgt -o %s", out_dir) > 0);
    expect_fail("", a, "/nonexistent.src");
    stat(best, &after);
    cr_assert_eq(before.st_size, after.st_size);
    cr_assert_eq(before.st_mtime, after.st_mtime);
    free(a); free(best); free(out_dir);
}
