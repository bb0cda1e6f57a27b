/* cmd_eval.c — `kvsim eval` (accuracy only) and `kvsim run` (accuracy plus
 * timing through a hardware hierarchy).  Both turn their options into a run
 * spec (sim/kvs_run.h: each option --some-name is the spec key some_name)
 * and call kvs_run_execute; SIGINT/SIGTERM are caught here and passed to the
 * run as its interrupt flag (the run ends as 'failed'). */
#include "kvs_cli.h"
#include "kvs_run.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f, int timing) {
    kvs_method_opts def;   /* the defaults shown are the methods' own */
    kvs_method_opts_default(&def);
    fprintf(f,
            "usage: kvsim %s --trace FILE --method M --db FILE [options]\n\n"
            "%s"
            "method:\n"
            "  --method M            full | window | topk | quest | completion\n"
            "budget (one of these; full reads everything, window reads the anchors):\n"
            "  --budget B            tokens read exactly per (step, layer, KV head), anchors included;\n"
            "                        beyond the context it is clamped and recorded (budget_clamped=1)\n"
            "  --budget-frac F       budget as a fraction of the context (T0+S), e.g. 0.01\n"
            "  --read-budget T       token-equivalent read budget per (step, layer, KV head): exact\n"
            "                        tokens plus summary, metadata and parameter bytes (issue 13)\n"
            "  --read-budget-frac F  read budget as a fraction of the context\n"
            "anchors and pages (one setting each, shared with the hardware policy):\n"
            "  --sinks N             first positions always read (default %d; = policy.anchor_sink_tokens)\n"
            "  --window N            last positions always read (default %d; = policy.anchor_window_tokens)\n"
            "  --page N              KV page in tokens: quest's pages and the timing's policy.page_tokens\n"
            "                        (default: the hardware file's; without one %d)\n"
            "completion:\n"
            "  --select S            retriever: topk (oracle) | quest | clusters (default %s)\n"
            "  --feature-map M       feature map: favor | taylor | fitted (default %s)\n"
            "  --features R          feature count (map default when omitted)\n"
            "  --seed N              random-feature seed (default %llu)\n"
            "selection of the trace:\n"
            "  --layers L0,L1,...    layers to evaluate (default all)\n"
            "  --steps a:b:stride    decode steps [a, b) every stride (default all)\n"
            "  --allow-nonfinite     count NaN/Inf in the trace and store the rows they touch with NULL\n"
            "                        metrics (run_values nonfinite_rows) instead of failing the run\n"
            "%s"
            "output:\n"
            "  --db FILE             SQLite database (created if missing); the run is appended\n"
            "  --quiet               no summary on stdout\n"
            "  --no-progress         no progress bar (it is only drawn on a terminal)\n\n"
            "Definitions of methods and metrics: models/METHODS.md; schema: reports/SCHEMA.md.\n",
            timing ? "run" : "eval",
            timing ? "Runs the method on the trace for accuracy and replays its accesses through a\n"
                     "memory hierarchy (sim/HARDWARE.md) for bytes moved and decode-step latency.\n\n"
                   : "Runs an attention method on a trace and records accuracy per (step, layer, head).\n\n",
            def.sinks, def.window, def.page, kvs_select_kind_name(def.select), kvs_fmap_kind_name(def.fmap),
            (unsigned long long)def.seed,
            timing ? "hardware (kvsim run):\n"
                     "  --hw FILE             hardware config (sim/hw/*.cfg)\n"
                     "  --model PRESET        target model geometry (llama-3.2-1b, llama-3.2-3b, llama-3.1-8b,\n"
                     "                        llama-3.1-70b); default: the trace's own\n"
                     "  --batch N             sequences decoded together (default 1)\n"
                     "  --set KEY=VALUE       override one hardware setting (repeatable),\n"
                     "                        e.g. --set links.host_to_gpu.bw_bytes_per_s=32e9\n"
                     "  --no-accuracy         selection and timing only (no output metrics)\n"
                   : "");
}

typedef struct {
    const char *opt;      /* without the leading -- */
    int timing_only;
} opt_def;

static const opt_def opts[] = {
    {"trace", 0},  {"method", 0},     {"budget", 0},        {"budget-frac", 0}, {"read-budget", 0},
    {"read-budget-frac", 0}, {"sinks", 0}, {"window", 0},   {"page", 0},        {"select", 0},
    {"feature-map", 0},      {"features", 0}, {"seed", 0},  {"layers", 0},      {"steps", 0},
    {"hw", 1},     {"model", 1},      {"batch", 1},
};

/* Options that name one setting in two ways or exclude each other. */
static const char *const exclusive[] = {"budget", "budget-frac", "read-budget", "read-budget-frac"};

static int run_cmd(int argc, char **argv, int timing) {
    const char *cmd = timing ? "run" : "eval";
    kvs_run_spec spec;
    kvs_run_ctl ctl = {.progress = 1, .sweep_id = NULL, .want_run_id = -1, .quiet = 0};
    const char *db = NULL, *excl_seen = NULL;
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
        if (!strcmp(a, "--allow-nonfinite")) { kvs_run_spec_set(&spec, "allow_nonfinite", "1", err, sizeof err); continue; }
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
        char key[160];
        if (!timing || strcmp(name, "set")) {
            int ok = 0;
            for (size_t k = 0; k < sizeof opts / sizeof opts[0]; k++)
                if (!strcmp(name, opts[k].opt) && (timing || !opts[k].timing_only)) ok = 1;
            if (!ok) {
                kvs_cli_usage_error(cmd, "unknown option '%s' (kvsim %s --help)", a, cmd);
                goto out;
            }
            for (size_t k = 0; k < sizeof exclusive / sizeof exclusive[0]; k++)
                if (!strcmp(name, exclusive[k])) {
                    if (excl_seen && strcmp(excl_seen, name)) {
                        kvs_cli_usage_error(cmd, "--%s and --%s exclude each other: give one kind of budget",
                                            excl_seen, name);
                        goto out;
                    }
                    excl_seen = exclusive[k];
                }
        }
        if (kvs_cli_spec_key(cmd, name, &v, key, sizeof key)) goto out;
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
    if (spec.method.kind != KVS_M_FULL && spec.method.kind != KVS_M_WINDOW && !excl_seen) {
        kvs_cli_usage_error(cmd, "--budget, --budget-frac, --read-budget or --read-budget-frac is required for method %s",
                            kvs_method_kind_name(spec.method.kind));
        goto out;
    }
    int64_t run_id = -1;
    ctl.interrupt = kvs_cli_catch_signals();
    int xrc = kvs_run_execute(&spec, db, &ctl, &run_id, err, sizeof err);
    kvs_cli_release_signals();
    if (xrc != 0) {
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
