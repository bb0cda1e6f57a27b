/* cmd_bench.c — `kvsim bench <what>`: each benchmark prints figures measured
 * against a reference taken in the same run. */
#include "kvs_cli.h"
#include <stdio.h>
#include <string.h>

int kvs_cmd_bench(int argc, char **argv) {
    static const struct { const char *name; int (*fn)(int, char **); const char *what; } b[] = {
        {"trace",   kvs_bench_trace,   "trace read throughput vs HDF5's own f16 conversion"},
        {"kernels", kvs_bench_kernels, "attention kernels vs a STREAM-like copy"},
        {"evq",     kvs_bench_evq,     "event engine events/s vs SimPy 2 on the same model"},
        {"decode",  kvs_bench_decode,  "forward pass tokens/s at 8k context vs a copy of its bytes"},
        {"sweep",   kvs_bench_sweep,   "sweep overhead per run, 2 workers vs 1"},
    };
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        FILE *f = argc < 2 ? stderr : stdout;
        fprintf(f, "usage: kvsim bench <what> [options]\n\n");
        for (size_t i = 0; i < sizeof b / sizeof b[0]; i++) fprintf(f, "  %-8s %s\n", b[i].name, b[i].what);
        return argc < 2 ? 2 : 0;
    }
    for (size_t i = 0; i < sizeof b / sizeof b[0]; i++)
        if (!strcmp(argv[1], b[i].name)) return b[i].fn(argc - 1, argv + 1);
    return kvs_cli_usage_error("bench", "unknown benchmark '%s'", argv[1]);
}
