/* main.c — the kvsim program: a table of sub-commands.
 * Each command lives in sim/cli/cmd_<name>.c (see kvs_cli.h). */
#include "kvs_cli.h"
#include "kvs_util.h"
#include "kvs_version.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *name;
    int (*fn)(int, char **);
    const char *summary;
} kvs_command;

static const kvs_command commands[] = {
    {"trace",       kvs_cmd_trace,       "inspect, validate, cut and generate kvtrace files"},
    {"eval",        kvs_cmd_eval,        "run an attention method on a trace, record accuracy"},
    {"run",         kvs_cmd_run,         "accuracy plus timing through a memory hierarchy"},
    {"hw",          kvs_cmd_hw,          "print a hardware config as resolved (units, sources)"},
    {"validate-hw", kvs_cmd_validate_hw, "replay the H200 measurements through the hardware model"},
    {"sweep",       kvs_cmd_sweep,       "run a design-space sweep into a database"},
    {"merge",       kvs_cmd_merge,       "merge sweep shard databases into one"},
    {"report",      kvs_cmd_report,      "render plots and an HTML page from a database"},
    {"decode",      kvs_cmd_decode,      "closed-loop decoding: a model's NLL/KL with a method in every layer"},
    {"serve",       kvs_cmd_serve,       "serving workload: batching, HBM capacity, offload, energy, timeline"},
    {"bench",       kvs_cmd_bench,       "benchmarks: trace, kernels, evq, sweep, decode"},
};
#define N_COMMANDS (sizeof commands / sizeof commands[0])

static void usage(FILE *f) {
    fprintf(f, "kvsim %s — KV-cache traffic and accuracy simulator for sparse and\n"
               "retrieval-completion attention\n\n"
               "usage: kvsim <command> [options]     (kvsim <command> --help)\n\n"
               "commands:\n", KVSIM_VERSION);
    for (size_t i = 0; i < N_COMMANDS; i++)
        fprintf(f, "  %-12s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "  %-12s %s\n", "help", "this text");
    fprintf(f, "\nkvsim --version prints the version.\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "help") || !strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
        if (argc > 2) {
            for (size_t i = 0; i < N_COMMANDS; i++)
                if (!strcmp(argv[2], commands[i].name)) {
                    char *av[] = {argv[2], "--help", NULL};
                    return commands[i].fn(2, av);
                }
        }
        usage(stdout);
        return 0;
    }
    if (!strcmp(cmd, "--version") || !strcmp(cmd, "version")) {
        printf("kvsim %s (%s), SIMD path %s\n", KVSIM_VERSION, KVSIM_GIT_REV, kvs_simd_path());
        return 0;
    }
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (!strcmp(cmd, commands[i].name)) return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "kvsim: unknown command '%s' (kvsim help lists them)\n", cmd);
    return 2;
}
