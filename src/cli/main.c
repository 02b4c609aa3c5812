/* main.c - the s2s command-line tool: dispatches to the subcommands of cli.h. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: s2s <command> [options]\n"
            "commands:\n"
            "  translate  decode stdin to stdout with a model (greedy or beam search)\n"
            "  train      train a Transformer (or fine-tune one with --init)\n"
            "  score      BLEU / chrF / WER / PER of hypotheses against references\n"
            "  info       show a model's architecture, size and training metadata\n"
            "  bpe        learn / apply tokenizers (BPE, char, symbol)\n"
            "  convert    rewrite a model's weights in fp16 (or fp32); --to t2r: T2R decoder attention\n"
            "  prune      NASH structured pruning: fewer decoder layers, narrower encoder, fine-tuning\n"
            "  optimize   run the accelerations over a search space: Pareto front, fastest within a quality loss\n"
            "  shortlist  build a lexical vocabulary shortlist (IBM Model 1) for faster decoding\n"
            "run 's2s <command> --help' for the options of a command\n");
}

int main(int argc, char **argv) {
    if (argc < 2) { usage(stderr); return 2; }
    const char *c = argv[1];
    if (!strcmp(c, "-h") || !strcmp(c, "--help") || !strcmp(c, "help")) { usage(stdout); return 0; }
    if (!strcmp(c, "translate")) return s2s_cmd_translate(argc - 1, argv + 1);
    if (!strcmp(c, "train")) return s2s_cmd_train(argc - 1, argv + 1);
    if (!strcmp(c, "score")) return s2s_cmd_score(argc - 1, argv + 1);
    if (!strcmp(c, "info")) return s2s_cmd_info(argc - 1, argv + 1);
    if (!strcmp(c, "bpe")) return s2s_cmd_bpe(argc - 1, argv + 1);
    if (!strcmp(c, "convert")) return s2s_cmd_convert(argc - 1, argv + 1);
    if (!strcmp(c, "prune")) return s2s_cmd_prune(argc - 1, argv + 1);
    if (!strcmp(c, "optimize")) return s2s_cmd_optimize(argc - 1, argv + 1);
    if (!strcmp(c, "shortlist")) return s2s_cmd_shortlist(argc - 1, argv + 1);
    fprintf(stderr, "s2s: unknown command '%s' (run 's2s --help')\n", c);
    return 2;
}
