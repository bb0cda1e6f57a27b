/* cmd_hw.c — `kvsim hw FILE` (print a resolved hardware config),
 * `kvsim validate-hw` (replay the H200 measurements through the model) and
 * `kvsim bench evq` (event engine vs SimPy 2.3 on the same model). */
#include "kvs_cli.h"
#include "kvs_evq.h"
#include "kvs_hw.h"
#include "kvs_hwval.h"
#include "kvs_util.h"
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_SET 64

/* Default preset: $KVSIM_SRC/sim/hw/h200_pcie5.cfg, ./sim/hw/..., or
 * <folder of the kvsim program>/../sim/hw/... (a build folder in the tree). */
static const char *default_hw(char *buf, size_t n) {
    const char *src = getenv("KVSIM_SRC");
    if (src && *src) {
        snprintf(buf, n, "%s/sim/hw/h200_pcie5.cfg", src);
        if (access(buf, R_OK) == 0) return buf;
    }
    snprintf(buf, n, "sim/hw/h200_pcie5.cfg");
    if (access(buf, R_OK) == 0) return buf;
    char exe[2048];
    if (kvs_cli_exe_dir(exe, sizeof exe) == 0) {
        snprintf(buf, n, "%s/../sim/hw/h200_pcie5.cfg", exe);
        if (access(buf, R_OK) == 0) return buf;
    }
    snprintf(buf, n, "sim/hw/h200_pcie5.cfg");
    return buf;
}

/* Parses --set key=value into keys/vals; returns 0 or prints and returns -1. */
static int parse_set(const char *cmd, char *kv, const char **keys, const char **vals, int *n) {
    char *eq = strchr(kv, '=');
    if (!eq || eq == kv) {
        kvs_cli_usage_error(cmd, "--set wants key=value, got '%s'", kv);
        return -1;
    }
    if (*n >= MAX_SET) {
        kvs_cli_usage_error(cmd, "too many --set options (max %d)", MAX_SET);
        return -1;
    }
    *eq = 0;
    keys[*n] = kv;
    vals[*n] = eq + 1;
    (*n)++;
    return 0;
}

int kvs_cmd_hw(int argc, char **argv) {
    const char *keys[MAX_SET], *vals[MAX_SET], *path = NULL;
    int n = 0, json = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: kvsim hw [FILE] [--set key=value]... [--json]\n\n"
                   "Loads a hardware config strictly (unknown keys, missing keys, values outside a\n"
                   "key's physical range are errors), applies the overrides and prints every key\n"
                   "with its value (plain, then in readable units), its unit and where it was set\n"
                   "(the comment on that line and file:line; '(default)' or '(override ...)'), or\n"
                   "with --json the canonical JSON stored in runs.config_json.\n"
                   "FILE defaults to sim/hw/h200_pcie5.cfg (found through $KVSIM_SRC, the current\n"
                   "folder or the folder above the kvsim program).  Keys and ranges: sim/HARDWARE.md.\n");
            return 0;
        }
        if (!strcmp(argv[i], "--json")) json = 1;
        else if (!strcmp(argv[i], "--set")) {
            if (i + 1 >= argc) return kvs_cli_usage_error(argv[0], "--set needs key=value");
            if (parse_set(argv[0], argv[++i], keys, vals, &n)) return 2;
        } else if (argv[i][0] == '-') return kvs_cli_usage_error(argv[0], "unknown option '%s'", argv[i]);
        else if (path) return kvs_cli_usage_error(argv[0], "one FILE only");
        else path = argv[i];
    }
    char buf[4096];
    if (!path) path = default_hw(buf, sizeof buf);
    kvs_hw hw;
    char err[512];
    if (kvs_hw_load(path, keys, vals, n, &hw, err, sizeof err)) {
        fprintf(stderr, "kvsim hw: %s\n", err);
        return 2;
    }
    if (json) {
        char *j = kvs_hw_json(&hw);
        printf("%s\n", j);
        free(j);
    } else {
        printf("# %s (%s)\n", path, hw.name[0] ? hw.name : "unnamed");
        for (int i = 0; i < n; i++) printf("# override %s = %s\n", keys[i], vals[i]);
        printf("%-42s %-28s %-8s %s\n", "# key", "value", "unit", "source (comment in the file, file:line)");
        kvs_hw_print(&hw, path, stdout);
    }
    return 0;
}

int kvs_cmd_validate_hw(int argc, char **argv) {
    const char *keys[MAX_SET], *vals[MAX_SET], *path = NULL, *meas = NULL;
    int n = 0;
    double tol = 0.10;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: kvsim validate-hw [--hw FILE] [--measured TABLE] [--set key=value]... [--tol 0.10]\n\n"
                   "Replays every row of the measured H200 hierarchy benchmark (default: the\n"
                   "h200_measured.txt beside the config) through the hardware model and prints\n"
                   "predicted vs measured with the error of each row, then the max and median\n"
                   "error.  Exit 1 when a row is off by more than --tol.\n");
            return 0;
        }
        if (!strcmp(argv[i], "--hw") && i + 1 < argc) path = argv[++i];
        else if (!strcmp(argv[i], "--measured") && i + 1 < argc) meas = argv[++i];
        else if (!strcmp(argv[i], "--tol") && i + 1 < argc) {
            if (kvs_cli_double(argv[0], "--tol", argv[++i], 0, 10, &tol)) return 2;
        } else if (!strcmp(argv[i], "--set") && i + 1 < argc) {
            if (parse_set(argv[0], argv[++i], keys, vals, &n)) return 2;
        } else return kvs_cli_usage_error(argv[0], "unknown or incomplete option '%s'", argv[i]);
    }
    char buf[4096], mbuf[4096];
    if (!path) path = default_hw(buf, sizeof buf);
    if (!meas) {
        const char *s = strrchr(path, '/');
        if (s) snprintf(mbuf, sizeof mbuf, "%.*s/h200_measured.txt", (int)(s - path), path);
        else snprintf(mbuf, sizeof mbuf, "h200_measured.txt");
        meas = mbuf;
    }
    kvs_hw hw;
    char err[512];
    if (kvs_hw_load(path, keys, vals, n, &hw, err, sizeof err)) {
        fprintf(stderr, "kvsim validate-hw: %s\n", err);
        return 2;
    }
    kvs_hwval_row *r = NULL;
    size_t nr = 0;
    if (kvs_hwval_run(&hw, meas, &r, &nr, err, sizeof err)) {
        fprintf(stderr, "kvsim validate-hw: %s\n", err);
        return 2;
    }
    printf("hardware %s (%s) vs measured %s\n", path, hw.name, meas);
    printf("%-44s %5s %12s %12s %8s\n", "row", "unit", "measured", "predicted", "error");
    int bad = 0, n_fit = 0;
    for (size_t i = 0; i < nr; i++) {
        n_fit += r[i].fitted;
        double e = r[i].predicted / r[i].measured - 1;
        int over = r[i].fitted && fabs(e) > tol;
        bad += over;
        printf("%-44s %5s %12.4g %12.4g %+7.1f%%%s\n", r[i].what, r[i].unit, r[i].measured, r[i].predicted,
               100 * e, r[i].fitted ? (over ? "  OVER" : "") : "  (defines the parameter)");
    }
    double mx, med;
    kvs_hwval_errors(r, nr, &mx, &med);
    printf("max error %.1f%%, median error %.1f%% over %d modelled rows; %d over %.0f%%\n", 100 * mx, 100 * med,
           n_fit, bad, 100 * tol);
    free(r);
    return bad ? 1 : 0;
}

/* ---- bench evq ------------------------------------------------------------ */

static const char simpy_src[] =
    "#!/usr/bin/python3\n"
    "\"\"\"SimPy 2.3 peer of `kvsim bench evq` (Debian's python3-simpy; run with\n"
    "/usr/bin/python3).  The same model as the C side: N processes, each holding\n"
    "for an exponentially distributed time (mean 1) and then holding again, until\n"
    "E holds have completed in total.  Prints \"simpy N events seconds\".\n"
    "The C program embeds a copy of this text (sim/cli/cmd_hw.c); keep both equal.\n"
    "usage: simpy_mm1.py N E\"\"\"\n"
    "import random, sys, time\n"
    "from SimPy.Simulation import Process, hold, activate, simulate, initialize, stopSimulation\n"
    "\n"
    "N = int(sys.argv[1]); E = int(sys.argv[2])\n"
    "count = 0\n"
    "\n"
    "class Holder(Process):\n"
    "    def run(self):\n"
    "        global count\n"
    "        while True:\n"
    "            yield hold, self, random.expovariate(1.0)\n"
    "            count += 1\n"
    "            if count >= E:\n"
    "                stopSimulation()\n"
    "\n"
    "random.seed(1)\n"
    "initialize()\n"
    "for i in range(N):\n"
    "    p = Holder()\n"
    "    activate(p, p.run())\n"
    "t0 = time.perf_counter()\n"
    "simulate(until=1e30)\n"
    "dt = time.perf_counter() - t0\n"
    "print(\"simpy %d %d %.6f\" % (N, count, dt))\n"
;

typedef struct {
    uint64_t s;
    uint64_t count, target;
} hold_ctx;

static double uniform01(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return ((double)(*s >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}

/* A process: hold for an exponential time (mean 1 µs = 1000 ns), repeat. */
static void hold_ev(kvs_evq *q, void *ctx, int64_t arg) {
    hold_ctx *h = ctx;
    if (++h->count >= h->target) return;
    int64_t dt = (int64_t)(-1000.0 * log(uniform01(&h->s))) + 1;
    kvs_evq_push(q, kvs_evq_now(q) + dt, hold_ev, h, arg);
}

static double run_c(long n_proc, long events) {
    kvs_evq *q = kvs_evq_new();
    hold_ctx h = {88172645463325252ull, 0, (uint64_t)events};
    for (long i = 0; i < n_proc; i++)
        kvs_evq_push(q, (int64_t)(-1000.0 * log(uniform01(&h.s))), hold_ev, &h, i);
    double t0 = kvs_now_s();
    uint64_t fired = 0;
    kvs_event e;
    while (h.count < h.target && kvs_evq_pop(q, &e)) {
        e.fn(q, e.ctx, e.arg);
        fired++;
    }
    double dt = kvs_now_s() - t0;
    kvs_evq_free(q);
    return (double)fired / dt;
}

int kvs_bench_evq(int argc, char **argv) {
    long c_events = 20000000, py_events = 500000;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: kvsim bench evq [--events N] [--simpy-events N] [--print-peer]\n\n"
                   "N processes each hold an exponential time and hold again (N = 1, 100, 10000),\n"
                   "in kvsim's event engine and in SimPy 2.3 (/usr/bin/python3, python3-simpy);\n"
                   "prints events/s for both and the ratio.  --print-peer prints the embedded\n"
                   "SimPy program (a copy of tests/bench/simpy_mm1.py) and exits.\n");
            return 0;
        }
        if (!strcmp(argv[i], "--print-peer")) {
            fputs(simpy_src, stdout);
            return 0;
        }
        if (!strcmp(argv[i], "--events") && i + 1 < argc) {
            if (kvs_cli_long(argv[0], "--events", argv[++i], 1000, 1000000000L, &c_events)) return 2;
        } else if (!strcmp(argv[i], "--simpy-events") && i + 1 < argc) {
            if (kvs_cli_long(argv[0], "--simpy-events", argv[++i], 1000, 1000000000L, &py_events)) return 2;
        } else return kvs_cli_usage_error(argv[0], "unknown or incomplete option '%s'", argv[i]);
    }
    char tmpl[] = "/tmp/kvsim-simpy-XXXXXX.py";
    int fd = mkstemps(tmpl, 3);
    if (fd < 0) return kvs_cli_usage_error(argv[0], "cannot create a temporary file in /tmp");
    FILE *f = fdopen(fd, "w");
    if (!f || fputs(simpy_src, f) < 0 || fclose(f) != 0) {
        unlink(tmpl);
        return kvs_cli_usage_error(argv[0], "cannot write %s", tmpl);
    }
    static const long procs[3] = {1, 100, 10000};
    printf("%-10s %14s %14s %8s\n", "processes", "kvsim ev/s", "SimPy2 ev/s", "ratio");
    int rc = 0;
    double min_ratio = HUGE_VAL;
    for (int k = 0; k < 3; k++) {
        double c = run_c(procs[k], c_events);
        char cmd[512];
        snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s %ld %ld 2>&1", tmpl, procs[k], py_events);
        FILE *p = popen(cmd, "r");
        double py = (double)NAN;
        long pn = 0, pe = 0;
        double ps = 0;
        char line[512];
        while (p && fgets(line, sizeof line, p))
            if (sscanf(line, "simpy %ld %ld %lf", &pn, &pe, &ps) == 3 && ps > 0) py = (double)pe / ps;
            else fprintf(stderr, "simpy: %s", line);
        if (p) pclose(p);
        if (isnan(py)) {
            fprintf(stderr, "kvsim bench evq: SimPy 2.3 peer did not run (needs /usr/bin/python3 with python3-simpy)\n");
            printf("%-10ld %14.3e %14s %8s\n", procs[k], c, "n/a", "n/a");
            rc = 1;
            continue;
        }
        if (c / py < min_ratio) min_ratio = c / py;
        printf("%-10ld %14.3e %14.3e %7.1fx\n", procs[k], c, py, c / py);
    }
    unlink(tmpl);
    if (!rc) printf("minimum ratio %.1fx (goal >= 10x)\n", min_ratio);
    return rc;
}
