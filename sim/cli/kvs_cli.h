/* kvs_cli.h — the kvsim program's command table and option helpers.
 *
 * Contract: each command is `int kvs_cmd_<name>(int argc, char **argv)` with
 * argv[0] the command's own name; it returns the process exit status
 * (0 ok, 1 a failed check or run, 2 bad usage/input) and prints errors as one
 * line "kvsim <cmd>: <what>" on stderr.  Only main() calls exit().
 * The parse helpers print such a line themselves and return -1 on bad input. */
#ifndef KVS_CLI_H
#define KVS_CLI_H
#include <signal.h>
#include <stddef.h>
#include <stdint.h>

int kvs_cmd_trace(int argc, char **argv);       /* cmd_trace.c  */
int kvs_cmd_eval(int argc, char **argv);        /* cmd_eval.c   */
int kvs_cmd_run(int argc, char **argv);         /* cmd_run.c    */
int kvs_cmd_validate_hw(int argc, char **argv); /* cmd_hw.c     */
int kvs_cmd_hw(int argc, char **argv);          /* cmd_hw.c: show a resolved config */
int kvs_cmd_sweep(int argc, char **argv);       /* cmd_sweep.c  */
int kvs_cmd_merge(int argc, char **argv);       /* cmd_sweep.c  */
int kvs_cmd_report(int argc, char **argv);      /* cmd_report.c */
int kvs_cmd_decode(int argc, char **argv);      /* cmd_decode.c (DECODE) */
int kvs_cmd_serve(int argc, char **argv);       /* cmd_serve.c  */
int kvs_cmd_bench(int argc, char **argv);       /* cmd_bench.c: dispatches below */

/* `kvsim bench <what>` sub-commands */
int kvs_bench_trace(int argc, char **argv);     /* cmd_trace.c  */
int kvs_bench_kernels(int argc, char **argv);   /* cmd_kernels.c */
int kvs_bench_evq(int argc, char **argv);       /* cmd_hw.c     */
int kvs_bench_sweep(int argc, char **argv);     /* cmd_sweep.c  */
int kvs_bench_decode(int argc, char **argv);    /* cmd_decode.c (DECODE) */

/* The folder holding the running kvsim program (from /proc/self/exe), for
 * finding files shipped beside it. Returns 0, or -1 (out = "") when unknown. */
int kvs_cli_exe_dir(char *out, size_t n);

/* The run spec key of option "--NAME VALUE": "--set K=V" gives key "hw.K" and
 * *val = "V"; any other NAME gives NAME with '-' turned into '_' (*val stays).
 * Returns 0, or -1 after printing a usage error (kvs_cli_usage_error). */
int kvs_cli_spec_key(const char *cmd, const char *name, const char **val, char *key, size_t n);

/* Strict number parsing: the whole string must be a number within [lo, hi].
 * `cmd` and `opt` name the command and option in the error line. */
int kvs_cli_long(const char *cmd, const char *opt, const char *s, long lo, long hi, long *out);
int kvs_cli_double(const char *cmd, const char *opt, const char *s, double lo, double hi, double *out);
/* Parses "a,b,c" integers into out[0..max-1]; returns the count or -1. */
int kvs_cli_long_list(const char *cmd, const char *opt, const char *s, long lo, long hi,
                      long *out, int max);
/* Signal handling lives here, not in the library: installs SIGINT and
 * SIGTERM handlers that store the signal number in a flag and returns the
 * flag, for kvs_run_ctl.interrupt (the run polls it and ends as 'failed').
 * SA_RESETHAND: a second signal ends the process the default way.
 * kvs_cli_release_signals restores the previous handlers. */
const volatile sig_atomic_t *kvs_cli_catch_signals(void);
void kvs_cli_release_signals(void);
/* Prints "kvsim <cmd>: <fmt...>" and a newline on stderr; returns 2. */
int kvs_cli_usage_error(const char *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
#endif
