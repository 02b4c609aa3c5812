/* args.h - strict parsing of numeric flag values for the CLI subcommands. */
#ifndef S2S_ARGS_H
#define S2S_ARGS_H

/* Parse an integer in [lo, hi] / a float in [lo, hi]; on failure print
 * "s2s <cmd>: <flag>: ..." to stderr and return -1. */
int s2s_arg_int(const char *cmd, const char *flag, const char *s, long lo, long hi, int *out);
int s2s_arg_float(const char *cmd, const char *flag, const char *s, double lo, double hi, float *out);
/* The value after argv[*i] (advancing *i), or NULL with an error printed. */
const char *s2s_arg_value(const char *cmd, int argc, char **argv, int *i);
/* Default model: $S2S_MODEL, else <exe dir>/../models/g2p-small.safetensors,
 * else models/g2p-small.safetensors. Returns a malloc'd path. */
char *s2s_default_model_path(void);

#endif
