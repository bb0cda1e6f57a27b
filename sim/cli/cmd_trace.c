/* cmd_trace.c — PLACEHOLDER while the module is built; replaced by its owner. */
#include "kvs_cli.h"
int kvs_cmd_trace(int argc, char **argv) { (void)argc; return kvs_cli_usage_error(argv[0], "not built yet"); }
int kvs_bench_trace(int argc, char **argv) { (void)argc; return kvs_cli_usage_error(argv[0], "not built yet"); }
