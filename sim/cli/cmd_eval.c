/* cmd_eval.c — `kvsim eval` (accuracy only) and `kvsim run` (accuracy plus
 * timing through a hardware hierarchy).  Both turn their options into a run
 * spec (sim/kvs_run.h) and call kvs_run_execute. */
#include "kvs_cli.h"
#include "kvs_run.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void usage(FILE *f, int timing) {
    fprintf(f,
            "usage: kvsim %s --trace FILE --method M --db FILE [options]\n\n"
            "%s"
            "method:\n"
            "  --method M          full | window | topk | quest | completion\n"
            "  --budget B          tokens read exactly per (step, layer, KV head), anchors included\n"
            "  --budget-frac F     budget as a fraction of the context (T0+S), e.g. 0.01\n"
            "  --sinks N           first positions always read (default 4)\n"
            "  --window N          last positions always read (default 64)\n"
            "  --page N            page size in tokens (quest, and KV pages for timing; default 16)\n"
            "  --select S          completion's retriever: topk (oracle) | quest (default topk)\n"
            "  --feature-map M     completion's feature map: favor | taylor | fitted (default favor)\n"
            "  --features R        feature count (map default when omitted)\n"
            "  --seed N            random-feature seed (default 1)\n"
            "selection of the trace:\n"
            "  --layers L0,L1,...  layers to evaluate (default all)\n"
            "  --steps a:b:stride  decode steps [a, b) every stride (default all)\n"
            "%s"
            "output:\n"
            "  --db FILE           SQLite database (created if missing); the run is appended\n"
            "  --quiet             no summary on stdout\n"
            "  --no-progress       no progress bar\n\n"
            "Definitions of methods and metrics: models/METHODS.md; schema: reports/SCHEMA.md.\n",
            timing ? "run" : "eval",
            timing ? "Runs the method on the trace for accuracy and replays its accesses through a\n"
                     "memory hierarchy (sim/HARDWARE.md) for bytes moved and decode-step latency.\n\n"
                   : "Runs an attention method on a trace and records accuracy per (step, layer, head).\n\n",
            timing ? "hardware (kvsim run):\n"
                     "  --hw FILE           hardware config (sim/hw/*.cfg)\n"
                     "  --model PRESET      target model geometry (llama-3.2-1b, llama-3.2-3b, llama-3.1-8b,\n"
                     "                      llama-3.1-70b); default: the trace's own\n"
                     "  --batch N           sequences decoded together (default 1)\n"
                     "  --set KEY=VALUE     override one hardware setting (repeatable),\n"
                     "                      e.g. --set links.host_to_gpu.bw_bytes_per_s=32e9\n"
                     "  --no-accuracy       selection and timing only (no output metrics)\n"
                   : "");
}

static int run_cmd(int argc, char **argv, int timing) {
    const char *cmd = timing ? "run" : "eval";
    kvs_run_spec spec;
    kvs_run_ctl ctl = {.progress = 1, .sweep_id = NULL, .want_run_id = -1, .quiet = 0};
    const char *db = NULL;
    char err[1024];
    int have_trace = 0, have_method = 0, rc = 2;
    kvs_run_spec_init(&spec);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout, timing);
            kvs_run_spec_free(&spec);
            return 0;
        }
        if (!strcmp(a, "--quiet")) { ctl.quiet = 1; continue; }
        if (!strcmp(a, "--no-progress")) { ctl.progress = 0; continue; }
        if (timing && !strcmp(a, "--no-accuracy")) { kvs_run_spec_set(&spec, "accuracy", "0", err, sizeof err); continue; }
        if (strncmp(a, "--", 2) != 0) {
            kvs_cli_usage_error(cmd, "unexpected argument '%s' (kvsim %s --help)", a, cmd);
            goto out;
        }
        if (i + 1 >= argc) {
            kvs_cli_usage_error(cmd, "%s needs a value", a);
            goto out;
        }
        const char *v = argv[++i];
        const char *name = a + 2;
        if (!strcmp(name, "db")) { db = v; continue; }
        char key[128];
        if (timing && !strcmp(name, "set")) {
            const char *eq = strchr(v, '=');
            if (!eq || eq == v) {
                kvs_cli_usage_error(cmd, "--set wants KEY=VALUE, got '%s'", v);
                goto out;
            }
            snprintf(key, sizeof key, "hw.%.*s", (int)(eq - v), v);
            v = eq + 1;
        } else {
            static const char *allowed[] = {"trace", "method", "budget", "budget-frac", "sinks", "window", "page",
                                            "select", "feature-map", "features", "seed", "layers", "steps",
                                            "hw", "model", "batch", NULL};
            int ok = 0, lim = timing ? 16 : 13;
            for (int k = 0; allowed[k] && k < lim; k++)
                if (!strcmp(name, allowed[k])) ok = 1;
            if (!ok) {
                kvs_cli_usage_error(cmd, "unknown option '%s' (kvsim %s --help)", a, cmd);
                goto out;
            }
            snprintf(key, sizeof key, "%s", name);
            for (char *p = key; *p; p++)
                if (*p == '-') *p = '_';
        }
        if (!strcmp(key, "trace")) have_trace = 1;
        if (!strcmp(key, "method")) have_method = 1;
        if (kvs_run_spec_set(&spec, key, v, err, sizeof err)) {
            kvs_cli_usage_error(cmd, "--%s: %s", name, err);
            goto out;
        }
    }
    if (!have_trace) { kvs_cli_usage_error(cmd, "--trace FILE is required"); goto out; }
    if (!have_method) { kvs_cli_usage_error(cmd, "--method is required (full, window, topk, quest, completion)"); goto out; }
    if (!db) { kvs_cli_usage_error(cmd, "--db FILE is required"); goto out; }
    if (timing && (!spec.hw || !*spec.hw)) { kvs_cli_usage_error(cmd, "--hw FILE is required (e.g. sim/hw/h200_pcie5.cfg)"); goto out; }
    if (!timing && spec.hw && *spec.hw) { kvs_cli_usage_error(cmd, "--hw belongs to kvsim run"); goto out; }
    if (spec.method.kind != KVS_M_FULL && spec.method.budget <= 0 && spec.budget_frac <= 0 &&
        spec.method.kind != KVS_M_WINDOW) {
        kvs_cli_usage_error(cmd, "--budget or --budget-frac is required for method %s",
                            kvs_method_kind_name(spec.method.kind));
        goto out;
    }
    int64_t run_id = -1;
    if (kvs_run_execute(&spec, db, &ctl, &run_id, err, sizeof err) != 0) {
        fprintf(stderr, "kvsim %s: %s\n", cmd, err);
        rc = 1;
        goto out;
    }
    rc = 0;
out:
    kvs_run_spec_free(&spec);
    return rc;
}

int kvs_cmd_eval(int argc, char **argv) { return run_cmd(argc, argv, 0); }
int kvs_cmd_run(int argc, char **argv) { return run_cmd(argc, argv, 1); }
