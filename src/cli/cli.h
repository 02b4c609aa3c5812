/* cli.h - subcommands of the s2s command-line tool. Each takes the arguments
 * after the subcommand name (argv[0] is the subcommand) and returns the process
 * exit status: 0 ok, 1 runtime error, 2 usage error. Errors are one line on
 * stderr starting with "s2s <cmd>: ". */
#ifndef S2S_CLI_H
#define S2S_CLI_H

int s2s_cmd_translate(int argc, char **argv); /* cmd_translate.c */
int s2s_cmd_train(int argc, char **argv);     /* cmd_train.c */
int s2s_cmd_score(int argc, char **argv);     /* cmd_score.c */
int s2s_cmd_info(int argc, char **argv);      /* cmd_info.c */
int s2s_cmd_bpe(int argc, char **argv);       /* cmd_bpe.c: learn/apply BPE */
int s2s_cmd_convert(int argc, char **argv);   /* cmd_convert.c: change weight precision */
int s2s_cmd_prune(int argc, char **argv);     /* cmd_prune.c: NASH structured pruning */
int s2s_cmd_optimize(int argc, char **argv);  /* cmd_optimize.c: search over the accelerations */
int s2s_cmd_shortlist(int argc, char **argv); /* cmd_shortlist.c: lexical vocabulary shortlist */

/* `s2s train` options (cmd_train.c) for commands that pass them through (cmd_prune.c, cmd_optimize.c):
 * apply one option "key" (long name without "--") = value, 0 or -1 after printing
 * an error; whether key is a flag that takes no value; free the option strings. */
#include "train.h"
int s2s_train_option(s2s_train_opts *o, const char *cmd, const char *key, const char *value);
int s2s_train_option_is_flag(const char *key);
void s2s_train_options_free(s2s_train_opts *o);
/* The pass-through itself: argv[*i] is "--KEY" (anything else: error), KEY not in
 * reserved[n_reserved] (the options the command sets itself), its value (if KEY takes
 * one) follows, advancing *i; applied to o. 0, or -1 after a one-line error. */
int s2s_train_passthrough(s2s_train_opts *o, const char *cmd, int argc, char **argv, int *i,
                          const char *const *reserved, size_t n_reserved);

#endif
