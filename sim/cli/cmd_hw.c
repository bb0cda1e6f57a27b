/* cmd_hw.c — PLACEHOLDER while the module is built; replaced by its owner. */
#include "kvs_cli.h"
int kvs_cmd_validate_hw(int argc, char **argv) { (void)argc; return kvs_cli_usage_error(argv[0], "not built yet"); }
int kvs_cmd_hw(int argc, char **argv) { (void)argc; return kvs_cli_usage_error(argv[0], "not built yet"); }
int kvs_bench_evq(int argc, char **argv) { (void)argc; return kvs_cli_usage_error(argv[0], "not built yet"); }
