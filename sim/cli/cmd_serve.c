/* cmd_serve.c — `kvsim serve`: parses the options into a run spec (the
 * method and hardware keys of kvsim run) plus the workload settings, and
 * calls kvs_serve_execute (sim/kvs_serve.h, model in sim/WORKLOAD.md). */
#include "kvs_cli.h"
#include "kvs_run.h"
#include "kvs_serve.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: kvsim serve --workload W.cfg --hw HW.cfg --method M --db FILE [options]\n\n"
            "Simulates a server under load: requests of the workload arrive, are admitted into\n"
            "HBM, prefilled and decoded with continuous batching; their KV pages are offloaded,\n"
            "preempted or queued when HBM is full (sim/WORKLOAD.md).  Each request replays the\n"
            "access pattern of the method on its trace.  Appends one run (kind 'serve').\n\n"
            "  --workload FILE     workload file (sim/WORKLOAD.md; example: reports/workloads/example.cfg)\n"
            "  --hw FILE           hardware config (sim/hw/*.cfg)\n"
            "  --model PRESET      target model (llama-3.2-1b, llama-3.2-3b, llama-3.1-8b, llama-3.1-70b);\n"
            "                      default: the traces' own geometry\n"
            "  --method M          full | window | topk | quest | completion\n"
            "  --budget B | --budget-frac F | --sinks N | --window N | --page N | --select S |\n"
            "  --feature-map M | --features R | --seed N    as for kvsim run\n"
            "  --set KEY=VALUE     override one hardware setting (repeatable)\n"
            "  --wset KEY=VALUE    override one workload setting (repeatable), e.g.\n"
            "                      --wset requests.rate_per_s=8 --wset scheduler.hbm_full=offload\n"
            "  --db FILE           SQLite database (created if missing)\n"
            "  --timeline F.json   Chrome/Perfetto trace-event file (ui.perfetto.dev)\n"
            "  --no-tbt            do not store every time-between-tokens (serve_tbt)\n"
            "  --quiet             no summary on stdout\n");
}

int kvs_cmd_serve(int argc, char **argv) {
    const char *cmd = "serve";
    kvs_run_spec spec;
    const char *wpath = NULL, *db_path = NULL, *tl_path = NULL;
    const char *wkeys[64], *wvals[64];
    int n_w = 0, quiet = 0, keep_tbt = 1, have_method = 0, rc = 2;
    char err[1024];
    kvs_run_spec_init(&spec);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            rc = 0;
            goto out;
        }
        if (!strcmp(a, "--quiet")) { quiet = 1; continue; }
        if (!strcmp(a, "--no-tbt")) { keep_tbt = 0; continue; }
        if (strncmp(a, "--", 2) != 0) {
            kvs_cli_usage_error(cmd, "unexpected argument '%s' (kvsim serve --help)", a);
            goto out;
        }
        if (i + 1 >= argc) {
            kvs_cli_usage_error(cmd, "%s needs a value", a);
            goto out;
        }
        const char *v = argv[++i], *name = a + 2;
        if (!strcmp(name, "workload")) { wpath = v; continue; }
        if (!strcmp(name, "db")) { db_path = v; continue; }
        if (!strcmp(name, "timeline")) { tl_path = v; continue; }
        if (!strcmp(name, "wset")) {
            const char *eq = strchr(v, '=');
            if (!eq || eq == v || n_w >= 64) {
                kvs_cli_usage_error(cmd, "--wset wants KEY=VALUE (at most 64), got '%s'", v);
                goto out;
            }
            static char kbuf[64][128];
            snprintf(kbuf[n_w], sizeof kbuf[n_w], "%.*s", (int)(eq - v), v);
            wkeys[n_w] = kbuf[n_w];
            wvals[n_w++] = eq + 1;
            continue;
        }
        char key[160];
        if (kvs_cli_spec_key(cmd, name, &v, key, sizeof key)) goto out;
        /* the run-spec keys a serve run uses (kvs_serve.h), spelled as options */
        if (strchr(name, '_') || !kvs_serve_spec_key(key)) {
            kvs_cli_usage_error(cmd, "unknown option '%s' (kvsim serve --help)", a);
            goto out;
        }
        if (!strcmp(key, "method")) have_method = 1;
        if (kvs_run_spec_set(&spec, key, v, err, sizeof err)) {
            kvs_cli_usage_error(cmd, "--%s: %s", name, err);
            goto out;
        }
    }
    if (!wpath) { kvs_cli_usage_error(cmd, "--workload FILE is required (e.g. reports/workloads/example.cfg)"); goto out; }
    if (!spec.hw || !*spec.hw) { kvs_cli_usage_error(cmd, "--hw FILE is required (e.g. sim/hw/h200_pcie5.cfg)"); goto out; }
    if (!have_method) { kvs_cli_usage_error(cmd, "--method is required (full, window, topk, quest, completion)"); goto out; }
    if (!db_path) { kvs_cli_usage_error(cmd, "--db FILE is required"); goto out; }
    if (spec.method.kind != KVS_M_FULL && spec.method.kind != KVS_M_WINDOW && spec.method.budget <= 0 &&
        spec.budget_frac <= 0) {
        kvs_cli_usage_error(cmd, "--budget or --budget-frac is required for method %s",
                            kvs_method_kind_name(spec.method.kind));
        goto out;
    }
    if (spec.read_budget > 0 || spec.read_budget_frac > 0) {
        kvs_cli_usage_error(cmd, "read budgets are not supported by kvsim serve yet: use --budget or --budget-frac");
        goto out;
    }
    {
        kvs_serve_opts o = {.spec = &spec, .workload = wpath, .wkeys = wkeys, .wvals = wvals, .n_wset = n_w,
                            .db_path = db_path, .timeline = tl_path, .keep_tbt = keep_tbt, .sweep_id = NULL,
                            .want_run_id = -1, .summary = quiet ? NULL : stdout,
                            .progress = !quiet && isatty(2) ? stderr : NULL, .warn = stderr};
        int64_t run_id = -1;
        if (kvs_serve_execute(&o, &run_id, err, sizeof err)) {
            fprintf(stderr, "kvsim serve: %s\n", err);
            rc = 1;
            goto out;
        }
    }
    rc = 0;
out:
    kvs_run_spec_free(&spec);
    return rc;
}
