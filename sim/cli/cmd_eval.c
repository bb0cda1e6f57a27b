/* cmd_eval.c — PLACEHOLDER while the module is built; replaced by its owner. */
#include "kvs_cli.h"
int kvs_cmd_eval(int argc, char **argv) { (void)argc; return kvs_cli_usage_error(argv[0], "not built yet"); }
