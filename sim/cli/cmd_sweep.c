/* cmd_sweep.c — `kvsim sweep` (a design-space sweep into a database, on the
 * local cores or over MPI ranks), `kvsim merge` (shards into one database)
 * and `kvsim bench sweep` (per-run overhead, 2 workers vs 1).
 * Sweep files and resumption: sim/kvs_sweep.h, sim/SWEEP.md. */
#include "kvs_cli.h"
#include "kvs_db.h"
#include "kvs_err.h"
#include "kvs_progress.h"
#include "kvs_sweep.h"
#include "kvs_util.h"
#include <errno.h>
#include <glob.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#ifdef KVSIM_WITH_MPI
#include <mpi.h>
#define SWEEP_HAS_MPI 1
#else
#define SWEEP_HAS_MPI 0
#endif

static void sweep_help(FILE *f) {
    fprintf(f,
            "usage: kvsim sweep SWEEP.cfg --db FILE [-j N] [--dry-run] [--trace-dir DIR] [--quiet]\n"
            "       mpirun -n R kvsim sweep SWEEP.cfg --db FILE [-j N]     (MPI build)\n\n"
            "Expands the sweep file (sim/SWEEP.md) into runs and executes those not yet\n"
            "complete in FILE (identity: the run spec, the hardware file's resolved contents,\n"
            "a fingerprint of the trace's contents, kvsim's revision and SIMD path), in -j\n"
            "worker processes (default: the number of cores; 1 a rank under MPI).\n"
            "A sweep file with workload = \"W.cfg\" runs kvsim serve points (wset.* axes).\n"
            "Re-running resumes; killing it loses no completed run.  One sweep at a time\n"
            "per database: FILE.lock holds an advisory lock while it runs.\n\n"
            "  --db FILE        results database (created when missing; an existing file\n"
            "                   must be a kvsim database)\n"
            "  -j N             concurrent worker processes\n"
            "  --dry-run        list the runs (and which are done) without running\n"
            "  --trace-dir DIR  base for relative trace paths (also $KVSIM_TRACE_DIR)\n"
            "  --quiet          no progress output, only the summary\n\n"
            "Under MPI each rank writes FILE.rankNNN; rank 0 merges them into FILE.\n"
            "MPI: %s\n", SWEEP_HAS_MPI ? "yes" : "no");
}

static int n_cores(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : (int)n;
}

typedef struct {
    const kvs_sweep *sw;
    kvs_progress *pg;
    size_t done, failed;
    double work_s;
} sweep_acc;

static void on_run(void *ctx, size_t i, const kvs_sweep_result *r) {
    sweep_acc *a = ctx;
    if (r->ok) a->done++;
    else a->failed++;
    a->work_s += r->work_s;
    if (a->pg) kvs_progress_run(a->pg, kvs_sweep_label(a->sw, i), r->ok, r->wall_s, r->err);
    else if (!r->ok) fprintf(stderr, "kvsim sweep: run failed: %s: %s\n", kvs_sweep_label(a->sw, i), r->err);
}

static int dry_run(const kvs_sweep *sw, const char *db_path) {
    kvs_db *db = NULL;
    char err[512];
    struct stat st;
    size_t n = kvs_sweep_count(sw), n_done = 0;
    if (stat(db_path, &st) == 0 && st.st_size > 0 && kvs_db_open_ro(db_path, &db, err, sizeof err)) {
        fprintf(stderr, "kvsim sweep: %s\n", err);
        return 2;
    }
    for (size_t i = 0; i < n; i++) {
        int64_t id = -1;
        int f = db ? kvs_db_find_complete(db, kvs_sweep_hash(sw, i), &id, err, sizeof err) : 0;
        if (f < 0) {
            fprintf(stderr, "kvsim sweep: %s\n", err);
            kvs_db_close(db);
            return 2;
        }
        n_done += f == 1;
        printf("%5zu  %s  %-8s  %s\n", i, kvs_sweep_hash(sw, i), f == 1 ? "complete" : "todo", kvs_sweep_label(sw, i));
    }
    if (db) kvs_db_close(db);
    printf("sweep %s: %zu runs (%zu points), %zu complete in %s, %zu to run\n", kvs_sweep_id(sw), n,
           kvs_sweep_n_points(sw), n_done, db_path, n - n_done);
    return 0;
}

/* Runs todo[0..n_todo-1] into db_path; prints per-run progress unless quiet. */
static int run_local(const kvs_sweep *sw, const size_t *todo, const int64_t *ids, size_t n_todo, size_t n_skip,
                     const char *db_path, int jobs, int quiet, const char *what, sweep_acc *acc) {
    char err[512];
    acc->sw = sw;
    acc->pg = quiet ? NULL : kvs_progress_new(stderr, what, n_todo + n_skip, n_skip, jobs, -1);
    int rc = kvs_sweep_pool(sw, todo, ids, n_todo, db_path, jobs, on_run, acc, err, sizeof err);
    kvs_progress_free(acc->pg);
    acc->pg = NULL;
    if (rc < 0) {
        fprintf(stderr, "kvsim sweep: %s\n", err);
        return -1;
    }
    return 0;
}

static void summary(const kvs_sweep *sw, const char *db_path, size_t n_skip, const sweep_acc *a, double wall_s,
                    int jobs, const char *where) {
    char t[32];
    printf("sweep %s: %zu runs%s%s: done %zu, skipped %zu (already complete), failed %zu in %s",
           kvs_sweep_id(sw), kvs_sweep_count(sw), where ? " " : "", where ? where : "", a->done, n_skip,
           a->failed, kvs_fmt_duration(wall_s, t, sizeof t));
    if (a->done + a->failed > 0)
        printf(" (%.2f runs/s, -j %d)", (double)(a->done + a->failed) / (wall_s > 0 ? wall_s : 1e-9), jobs);
    printf(" -> %s\n", db_path);
}

#ifdef KVSIM_WITH_MPI
static void shard_path(char *out, size_t n, const char *db, int rank) { snprintf(out, n, "%s.rank%03d", db, rank); }

static void remove_db_files(const char *p) {
    char b[PATH_MAX + 8];
    unlink(p);
    snprintf(b, sizeof b, "%s-wal", p);
    unlink(b);
    snprintf(b, sizeof b, "%s-shm", p);
    unlink(b);
    snprintf(b, sizeof b, "%s-journal", p);
    unlink(b);
}

/* Rank 0: merges every FILE.rankNNN shard into FILE and removes it. */
static int merge_shards(const char *db_path, char *err, size_t errlen) {
    char pat[PATH_MAX + 32];
    glob_t g;
    snprintf(pat, sizeof pat, "%s.rank[0-9][0-9][0-9]", db_path);
    if (glob(pat, 0, NULL, &g) != 0) return 0;   /* none */
    kvs_db *db = NULL;
    if (kvs_db_open(db_path, &db, err, errlen)) {
        globfree(&g);
        return -1;
    }
    for (size_t i = 0; i < g.gl_pathc; i++) {
        int64_t n = 0;
        if (kvs_db_merge_from(db, g.gl_pathv[i], &n, err, errlen)) {
            kvs_db_close(db);
            globfree(&g);
            return -1;
        }
        remove_db_files(g.gl_pathv[i]);
    }
    kvs_db_close(db);
    globfree(&g);
    return 0;
}

static int64_t max_run_id(const char *db_path, char *err, size_t errlen) {
    kvs_db *db = NULL;
    sqlite3_stmt *st = NULL;
    int64_t m = 0;
    if (kvs_db_open(db_path, &db, err, errlen)) return -1;
    if (sqlite3_prepare_v2(kvs_db_handle(db), "SELECT COALESCE(MAX(run_id), 0) FROM runs", -1, &st, NULL) !=
        SQLITE_OK) {
        kvs_seterr(err, errlen, "%s: %s", db_path, sqlite3_errmsg(kvs_db_handle(db)));
        kvs_db_close(db);
        return -1;
    }
    if (sqlite3_step(st) == SQLITE_ROW) m = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    kvs_db_close(db);
    return m;
}

/* The sweep over MPI ranks: rank 0 merges leftover shards, plans against
 * FILE and broadcasts the runs to do with their run ids; runs go round-robin
 * to ranks, each writing FILE.rankNNN; rank 0 merges the shards at the end. */
static int sweep_mpi(const kvs_sweep *sw, const char *db_path, int jobs, int quiet, int rank, int size) {
    char err[512] = "";
    size_t n = kvs_sweep_count(sw);
    long long hdr[3] = {0, 0, 0};   /* status, n_todo, base id */
    size_t *todo = calloc(n ? n : 1, sizeof *todo);
    long long *todo_ll = calloc(n ? n : 1, sizeof *todo_ll);
    if (!todo || !todo_ll) abort();
    double t0 = kvs_now_s();
    int lock = -1;   /* rank 0 holds DB.lock for the whole sweep */
    if (rank == 0) {
        size_t n_todo = 0;
        int64_t base = -1;
        if (kvs_db_lock(db_path, &lock, err, sizeof err) == 0 && merge_shards(db_path, err, sizeof err) == 0 &&
            kvs_sweep_plan(sw, db_path, todo, &n_todo, err, sizeof err) == 0)
            base = max_run_id(db_path, err, sizeof err);
        if (base < 0) {
            fprintf(stderr, "kvsim sweep: %s\n", err);
            hdr[0] = -1;
        }
        hdr[1] = (long long)n_todo;
        hdr[2] = base + 1;
        for (size_t i = 0; i < n_todo; i++) todo_ll[i] = (long long)todo[i];
    }
    MPI_Bcast(hdr, 3, MPI_LONG_LONG, 0, MPI_COMM_WORLD);
    if (hdr[0] < 0) {
        kvs_db_unlock(lock);
        free(todo);
        free(todo_ll);
        return 2;
    }
    size_t n_todo = (size_t)hdr[1];
    MPI_Bcast(todo_ll, (int)(n_todo ? n_todo : 1), MPI_LONG_LONG, 0, MPI_COMM_WORLD);
    /* this rank's share: k = rank, rank + size, ... with run id base + k */
    size_t mine = 0;
    int64_t *ids = calloc(n_todo ? n_todo : 1, sizeof *ids);
    if (!ids) abort();
    for (size_t k = (size_t)rank; k < n_todo; k += (size_t)size) {
        todo[mine] = (size_t)todo_ll[k];
        ids[mine] = hdr[2] + (int64_t)k;
        mine++;
    }
    char shard[PATH_MAX + 16], what[32];
    shard_path(shard, sizeof shard, db_path, rank);
    snprintf(what, sizeof what, "rank %d run", rank);
    sweep_acc acc = {0};
    int sys = 0;
    if (mine > 0) sys = run_local(sw, todo, ids, mine, 0, shard, jobs, quiet, what, &acc) != 0;
    long long loc[3] = {(long long)acc.done, (long long)acc.failed, sys}, tot[3] = {0, 0, 0};
    MPI_Reduce(loc, tot, 3, MPI_LONG_LONG, MPI_SUM, 0, MPI_COMM_WORLD);
    MPI_Barrier(MPI_COMM_WORLD);   /* every shard is closed */
    int rc = 0;
    if (rank == 0) {
        if (merge_shards(db_path, err, sizeof err)) {
            fprintf(stderr, "kvsim sweep: merging shards: %s\n", err);
            rc = 2;
        }
        sweep_acc all = {.done = (size_t)tot[0], .failed = (size_t)tot[1]};
        char where[64];
        snprintf(where, sizeof where, "over %d ranks", size);
        summary(sw, db_path, n - n_todo, &all, kvs_now_s() - t0, jobs, where);
        if (!rc && (tot[1] || tot[2])) rc = 1;
    }
    MPI_Bcast(&rc, 1, MPI_INT, 0, MPI_COMM_WORLD);
    kvs_db_unlock(lock);
    free(ids);
    free(todo);
    free(todo_ll);
    return rc;
}
#endif

static int sweep_main(int argc, char **argv, int rank, int size) {
    const char *file = NULL, *db_path = NULL, *trace_dir = NULL;
    int dry = 0, quiet = 0;
    long jobs = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            if (rank == 0) sweep_help(stdout);
            return 0;
        } else if (!strcmp(a, "--db") && i + 1 < argc) db_path = argv[++i];
        else if (!strcmp(a, "--trace-dir") && i + 1 < argc) trace_dir = argv[++i];
        else if (!strcmp(a, "-j") && i + 1 < argc) {
            if (kvs_cli_long("sweep", "-j", argv[++i], 1, 4096, &jobs)) return 2;
        } else if (!strncmp(a, "-j", 2) && a[2]) {
            if (kvs_cli_long("sweep", "-j", a + 2, 1, 4096, &jobs)) return 2;
        } else if (!strcmp(a, "--dry-run")) dry = 1;
        else if (!strcmp(a, "--quiet")) quiet = 1;
        else if (a[0] == '-') return kvs_cli_usage_error("sweep", "unknown option '%s' (kvsim sweep --help)", a);
        else if (!file) file = a;
        else return kvs_cli_usage_error("sweep", "one sweep file at a time ('%s' and '%s')", file, a);
    }
    if (!file) return kvs_cli_usage_error("sweep", "no sweep file (kvsim sweep SWEEP.cfg --db FILE)");
    if (!db_path) return kvs_cli_usage_error("sweep", "--db FILE is required");
    if (size == 1) {
        const char *envs[] = {"PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE"};
        for (int e = 0; e < 3; e++) {
            const char *v = getenv(envs[e]);
            if (v && atoi(v) > 1)
                return kvs_cli_usage_error("sweep", "started as one of %s MPI ranks, but this kvsim was built "
                                           "without MPI (MPI: no): rebuild with -DKVSIM_MPI=ON, or run it once "
                                           "with -j", v);
        }
    }
    if (jobs < 0) jobs = size > 1 ? 1 : n_cores();
    /* workers inherit it; OpenBLAS's own threads would fight the workers for cores */
    setenv("OPENBLAS_NUM_THREADS", "1", 1);

    char err[1024];
    kvs_sweep *sw = NULL;
    if (kvs_sweep_load(file, trace_dir, &sw, err, sizeof err)) {
        if (rank == 0) fprintf(stderr, "kvsim sweep: %s\n", err);
        return 2;
    }
    int rc = 0;
    if (dry) {
        rc = rank == 0 ? dry_run(sw, db_path) : 0;
    }
#ifdef KVSIM_WITH_MPI
    else if (size > 1) {
        rc = sweep_mpi(sw, db_path, (int)jobs, quiet, rank, size);
    }
#endif
    else {
        size_t n = kvs_sweep_count(sw), n_todo = 0;
        size_t *todo = calloc(n ? n : 1, sizeof *todo);
        if (!todo) abort();
        double t0 = kvs_now_s();
        int lock = -1;
        if (kvs_db_lock(db_path, &lock, err, sizeof err) ||
            kvs_sweep_plan(sw, db_path, todo, &n_todo, err, sizeof err)) {
            fprintf(stderr, "kvsim sweep: %s\n", err);
            rc = 2;
        } else {
            sweep_acc acc = {0};
            if (run_local(sw, todo, NULL, n_todo, n - n_todo, db_path, (int)jobs, quiet, "run", &acc)) rc = 2;
            summary(sw, db_path, n - n_todo, &acc, kvs_now_s() - t0, (int)jobs, NULL);
            if (!rc && acc.failed) rc = 1;
        }
        kvs_db_unlock(lock);
        free(todo);
    }
    kvs_sweep_free(sw);
    return rc;
}

int kvs_cmd_sweep(int argc, char **argv) {
#ifdef KVSIM_WITH_MPI
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            sweep_help(stdout);
            return 0;
        }
    int rank = 0, size = 1;
    MPI_Init(NULL, NULL);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    int rc = sweep_main(argc, argv, rank, size);
    MPI_Finalize();
    return rc;
#else
    return sweep_main(argc, argv, 0, 1);
#endif
}

/* ---- kvsim merge ------------------------------------------------------------ */

int kvs_cmd_merge(int argc, char **argv) {
    if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        printf("usage: kvsim merge OUT.db SRC.db...\n\n"
               "Copies every complete run of each SRC (a kvsim database, read-only) into OUT\n"
               "(created when missing; an existing OUT must be a kvsim database), all in one\n"
               "transaction: on any error OUT is left as it was.  A run whose identity\n"
               "(config_hash) is already complete in OUT is skipped; a run id already taken\n"
               "in OUT is renumbered, its rows following it, so independent databases combine.\n");
        return 0;
    }
    if (argc < 3) return kvs_cli_usage_error("merge", "usage: kvsim merge OUT.db SRC.db...");
    struct stat st, so;
    int out_exists = stat(argv[1], &so) == 0;
    for (int i = 2; i < argc; i++) {
        if (stat(argv[i], &st) != 0)
            return kvs_cli_usage_error("merge", "%s: %s", argv[i], strerror(errno));
        if (!strcmp(argv[i], argv[1]) || (out_exists && st.st_dev == so.st_dev && st.st_ino == so.st_ino))
            return kvs_cli_usage_error("merge", "%s is both the output and a source", argv[i]);
    }
    char err[1024];
    int lock = -1;
    if (kvs_db_lock(argv[1], &lock, err, sizeof err)) {
        fprintf(stderr, "kvsim merge: %s\n", err);
        return 2;
    }
    kvs_db *db = NULL;
    if (kvs_db_open(argv[1], &db, err, sizeof err)) {
        fprintf(stderr, "kvsim merge: %s\n", err);
        kvs_db_unlock(lock);
        return 2;
    }
    kvs_db_merge_stats ms;
    int rc = 0;
    if (kvs_db_merge(db, (const char *const *)(argv + 2), (size_t)(argc - 2), &ms, err, sizeof err)) {
        fprintf(stderr, "kvsim merge: %s (nothing merged)\n", err);
        rc = 1;
    } else {
        printf("merged %lld complete runs from %d databases into %s (%lld already there skipped, %lld renumbered)\n",
               (long long)ms.merged, argc - 2, argv[1], (long long)ms.skipped, (long long)ms.renumbered);
    }
    kvs_db_close(db);
    if (rc && !out_exists) {   /* we created it: leave no empty output behind */
        char b[PATH_MAX + 8];
        unlink(argv[1]);
        snprintf(b, sizeof b, "%s-wal", argv[1]);
        unlink(b);
        snprintf(b, sizeof b, "%s-shm", argv[1]);
        unlink(b);
    }
    kvs_db_unlock(lock);
    return rc;
}

/* ---- kvsim bench sweep -------------------------------------------------------- */

static int bench_sweep_once(const kvs_sweep *sw, const char *db_path, int jobs, double *wall_s, double *work_s) {
    char err[512];
    size_t n = kvs_sweep_count(sw), n_todo = 0;
    size_t *todo = calloc(n, sizeof *todo);
    if (!todo) abort();
    remove(db_path);
    double t0 = kvs_now_s();
    sweep_acc acc = {0};
    acc.sw = sw;
    int rc = kvs_sweep_plan(sw, db_path, todo, &n_todo, err, sizeof err);
    if (rc == 0) rc = kvs_sweep_pool(sw, todo, NULL, n_todo, db_path, jobs, on_run, &acc, err, sizeof err);
    *wall_s = kvs_now_s() - t0;
    *work_s = acc.work_s;
    free(todo);
    if (rc != 0) {
        fprintf(stderr, "kvsim bench sweep: %s\n", rc < 0 ? err : "a run failed");
        return -1;
    }
    return 0;
}

/* The shipped sample trace, for benchmarks run without --trace: beside the
 * program's build folder (../traces, ../../traces), $KVSIM_SRC/traces, ./traces. */
static int find_sample_trace(char *out, size_t n) {
    char exe[PATH_MAX] = "", cand[5][PATH_MAX + 64];
    int nc = 0;
    if (kvs_cli_exe_dir(exe, sizeof exe) == 0) {
        snprintf(cand[nc++], sizeof cand[0], "%.4000s/../traces/sample_pandas_2k.h5", exe);
        snprintf(cand[nc++], sizeof cand[0], "%.4000s/../../traces/sample_pandas_2k.h5", exe);
    }
    const char *src = getenv("KVSIM_SRC");
    if (src && *src) snprintf(cand[nc++], sizeof cand[0], "%.4000s/traces/sample_pandas_2k.h5", src);
    snprintf(cand[nc++], sizeof cand[0], "traces/sample_pandas_2k.h5");
    for (int i = 0; i < nc; i++)
        if (realpath(cand[i], out) && access(out, R_OK) == 0) return 0;
    (void)n;
    return -1;
}

/* --file: the whole sweep file into a fresh database, timed. */
static int bench_sweep_file(const char *file, const char *trace_dir, int jobs, const char *tmpdir) {
    char err[1024], db[PATH_MAX + 32];
    kvs_sweep *sw = NULL;
    setenv("OPENBLAS_NUM_THREADS", "1", 1);
    double t0 = kvs_now_s();
    if (kvs_sweep_load(file, trace_dir, &sw, err, sizeof err)) {
        fprintf(stderr, "kvsim bench sweep: %s\n", err);
        return 2;
    }
    double t_load = kvs_now_s() - t0;
    snprintf(db, sizeof db, "%s/file.db", tmpdir);
    double wall = 0, work = 0;
    int rc = bench_sweep_once(sw, db, jobs, &wall, &work);
    if (rc == 0) {
        size_t n = kvs_sweep_count(sw);
        char t[32];
        printf("kvsim bench sweep: %s (sweep %s), %d cores\n", file, kvs_sweep_id(sw), n_cores());
        printf("  runs                     %8zu\n", n);
        printf("  load + validate          %8.2f s\n", t_load);
        printf("  sweep -j %-2d wall         %8.1f s  (%s; %.2f s/run)\n", jobs, wall,
               kvs_fmt_duration(wall, t, sizeof t), n ? wall / (double)n : 0.0);
        printf("  work inside the runs     %8.1f s  (sum over workers; reference: wall x jobs = %.1f s)\n", work,
               wall * jobs);
    }
    kvs_sweep_free(sw);
    return rc ? 1 : 0;
}

/* --plan N: load + plan of an N-point grid, against N/10 as the reference
 * (linear planning: x10 time for x10 points; quadratic: x100). */
static int bench_sweep_plan(const char *trace, long points, const char *tmpdir) {
    long sizes[2] = {points / 10, points};
    double t_load[2] = {0, 0}, t_plan[2] = {0, 0}, t_cpu[2] = {0, 0};
    for (int k = 0; k < 2; k++) {
        char cfg[PATH_MAX + 32], db[PATH_MAX + 32], err[1024];
        long nb = sizes[k] < 1000 ? sizes[k] : 1000, ns = sizes[k] / nb;
        snprintf(cfg, sizeof cfg, "%s/plan%d.cfg", tmpdir, k);
        snprintf(db, sizeof db, "%s/plan%d.db", tmpdir, k);
        FILE *f = fopen(cfg, "w");
        if (!f) {
            fprintf(stderr, "kvsim bench sweep: %s: %s\n", cfg, strerror(errno));
            return 2;
        }
        fprintf(f, "name = \"plan\";\ntraces = \"%s\";\nbase = { method = \"topk\"; };\n"
                   "axes = { features = { start = 1; stop = %ld; step = 1; }; budget = { start = 1; stop = %ld; step = 1; }; };\n",
                trace, ns, nb);
        fclose(f);
        kvs_sweep *sw = NULL;
        double t0 = kvs_now_s(), c0 = kvs_cpu_now_s();
        if (kvs_sweep_load(cfg, NULL, &sw, err, sizeof err)) {
            fprintf(stderr, "kvsim bench sweep: %s\n", err);
            return 2;
        }
        double t1 = kvs_now_s();
        size_t n = kvs_sweep_count(sw), n_todo = 0;
        size_t *todo = calloc(n ? n : 1, sizeof *todo);
        if (!todo) abort();
        /* a database holding a tenth of the runs complete is what a resumed
         * sweep sees; an empty one is the first start: plan against empty */
        int rc = kvs_sweep_plan(sw, db, todo, &n_todo, err, sizeof err);
        double t2 = kvs_now_s();
        free(todo);
        sizes[k] = (long)n;
        kvs_sweep_free(sw);
        if (rc) {
            fprintf(stderr, "kvsim bench sweep: %s\n", err);
            return 2;
        }
        t_load[k] = t1 - t0;
        t_plan[k] = t2 - t1;
        t_cpu[k] = kvs_cpu_now_s() - c0;
    }
    printf("kvsim bench sweep --plan: grids of the sample trace (topk, features x budget), %d cores\n", n_cores());
    for (int k = 0; k < 2; k++)
        printf("  %8ld points   load + validate %7.2f s   plan %7.2f s   total %7.2f s wall, %7.2f s CPU\n",
               sizes[k], t_load[k], t_plan[k], t_load[k] + t_plan[k], t_cpu[k]);
    double r = t_cpu[1] / (t_cpu[0] > 1e-9 ? t_cpu[0] : 1e-9);
    printf("  x%.1f CPU time for x%.0f points (linear: x10, quadratic: x100)\n", r,
           (double)sizes[1] / (double)(sizes[0] ? sizes[0] : 1));
    return 0;
}

int kvs_bench_sweep(int argc, char **argv) {
    const char *trace = NULL, *dir = NULL, *file = NULL, *trace_dir = NULL;
    long runs = 16, plan = 0, jobs = 2;
    const char *steps = "0:4:1";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: kvsim bench sweep [--trace FILE.h5] [--runs N] [--steps a:b:s] [--dir TMPDIR]\n"
                   "       kvsim bench sweep --file SWEEP.cfg [-j N] [--trace-dir DIR] [--dir TMPDIR]\n"
                   "       kvsim bench sweep --plan N [--trace FILE.h5] [--dir TMPDIR]\n\n"
                   "Default: tiny runs (topk, layer 0, a few steps, distinct budgets) of the trace\n"
                   "(default: the shipped traces/sample_pandas_2k.h5) executed three ways:\n"
                   "in-process one after another (the runs' own work), as a sweep with -j 1, and\n"
                   "with -j 2.  Prints the sweep overhead per run (sweep wall / runs - in-process\n"
                   "time per run) and the -j 2 / -j 1 throughput ratio.\n"
                   "--file: runs a whole sweep file into a scratch database with -j N (default 2)\n"
                   "and prints its run count and wall time (the figures the docs quote).\n"
                   "--plan N: times loading and planning a grid of N points against N/10.\n");
            return 0;
        } else if (!strcmp(argv[i], "--trace") && i + 1 < argc) trace = argv[++i];
        else if (!strcmp(argv[i], "--dir") && i + 1 < argc) dir = argv[++i];
        else if (!strcmp(argv[i], "--steps") && i + 1 < argc) steps = argv[++i];
        else if (!strcmp(argv[i], "--file") && i + 1 < argc) file = argv[++i];
        else if (!strcmp(argv[i], "--trace-dir") && i + 1 < argc) trace_dir = argv[++i];
        else if (!strcmp(argv[i], "-j") && i + 1 < argc) {
            if (kvs_cli_long("bench sweep", "-j", argv[++i], 1, 4096, &jobs)) return 2;
        } else if (!strcmp(argv[i], "--plan") && i + 1 < argc) {
            if (kvs_cli_long("bench sweep", "--plan", argv[++i], 100, 1000000, &plan)) return 2;
        } else if (!strcmp(argv[i], "--runs") && i + 1 < argc) {
            if (kvs_cli_long("bench sweep", "--runs", argv[++i], 2, 100000, &runs)) return 2;
        } else return kvs_cli_usage_error("bench sweep", "unknown option '%s'", argv[i]);
    }
    char sample[PATH_MAX];
    if (!trace && !file) {
        if (find_sample_trace(sample, sizeof sample))
            return kvs_cli_usage_error("bench sweep", "the shipped sample trace traces/sample_pandas_2k.h5 was not "
                                       "found (beside the program, or $KVSIM_SRC): give --trace FILE.h5");
        trace = sample;
    }
    char tmpl[PATH_MAX];
    snprintf(tmpl, sizeof tmpl, "%s/kvsim-bench-sweep-XXXXXX", dir ? dir : (getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp"));
    if (!mkdtemp(tmpl)) {
        fprintf(stderr, "kvsim bench sweep: cannot make a folder from %s: %s\n", tmpl, strerror(errno));
        return 2;
    }
    char abs[PATH_MAX], cfg[PATH_MAX + 32], db[PATH_MAX + 32], err[1024];
    if (trace && !realpath(trace, abs)) {
        fprintf(stderr, "kvsim bench sweep: %s: %s\n", trace, strerror(errno));
        return 2;
    }
    int frc = -1;
    if (file) frc = bench_sweep_file(file, trace_dir, (int)jobs, tmpl);
    else if (plan) frc = bench_sweep_plan(abs, plan, tmpl);
    if (frc >= 0) {
        char cmd[PATH_MAX + 32];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpl);
        if (system(cmd) != 0) fprintf(stderr, "kvsim bench sweep: could not remove %s\n", tmpl);
        return frc;
    }
    snprintf(cfg, sizeof cfg, "%s/bench.cfg", tmpl);
    FILE *f = fopen(cfg, "w");
    if (!f) {
        fprintf(stderr, "kvsim bench sweep: %s: %s\n", cfg, strerror(errno));
        return 2;
    }
    fprintf(f, "name = \"bench\";\ntraces = \"%s\";\nbase = { method = \"topk\"; layers = \"0\"; steps = \"%s\"; };\n"
               "axes = { budget = { start = 64; stop = %ld; step = 1; }; };\n", abs, steps, 64 + runs - 1);
    fclose(f);
    setenv("OPENBLAS_NUM_THREADS", "1", 1);
    kvs_sweep *sw = NULL;
    if (kvs_sweep_load(cfg, NULL, &sw, err, sizeof err)) {
        fprintf(stderr, "kvsim bench sweep: %s\n", err);
        return 2;
    }
    size_t n = kvs_sweep_count(sw);
    /* reference: the same runs in this process, one after another */
    snprintf(db, sizeof db, "%s/inproc.db", tmpl);
    kvs_run_ctl ctl = {.progress = 0, .sweep_id = "bench", .want_run_id = -1, .quiet = 1};
    double t0 = kvs_now_s();
    for (size_t i = 0; i < n; i++) {
        int64_t id;
        if (kvs_run_execute(kvs_sweep_spec(sw, i), db, &ctl, &id, err, sizeof err)) {
            fprintf(stderr, "kvsim bench sweep: in-process run: %s\n", err);
            kvs_sweep_free(sw);
            return 1;
        }
    }
    double inproc = kvs_now_s() - t0;
    double w1, k1, w2, k2;
    char db2[PATH_MAX + 32];
    snprintf(db, sizeof db, "%s/j1.db", tmpl);
    snprintf(db2, sizeof db2, "%s/j2.db", tmpl);
    if (bench_sweep_once(sw, db, 1, &w1, &k1) || bench_sweep_once(sw, db2, 2, &w2, &k2)) {
        kvs_sweep_free(sw);
        return 1;
    }
    double per_in = inproc / (double)n, per_1 = w1 / (double)n;
    printf("kvsim bench sweep: %zu tiny runs (topk, layer 0, steps %s) of %s, %d cores\n", n, steps, abs, n_cores());
    printf("  in-process (reference)   %8.1f ms/run  (%.2f runs/s)\n", 1e3 * per_in, 1.0 / per_in);
    printf("  sweep -j 1               %8.1f ms/run  (%.2f runs/s); work inside workers %.1f ms/run\n", 1e3 * per_1,
           1.0 / per_1, 1e3 * k1 / (double)n);
    printf("  sweep -j 2               %8.1f ms/run  (%.2f runs/s)\n", 1e3 * w2 / (double)n, (double)n / w2);
    printf("  overhead per run         %8.1f ms  (sweep -j 1 minus in-process; goal < 50 ms)\n", 1e3 * (per_1 - per_in));
    printf("  overhead vs worker work  %8.1f ms  (sweep -j 1 wall minus time inside kvs_run_execute)\n",
           1e3 * (w1 - k1) / (double)n);
    printf("  speed-up -j 2 / -j 1     %8.2fx  (goal >= 1.8x on 2 idle cores)\n", w1 / w2);
    kvs_sweep_free(sw);
    char cmd[PATH_MAX + 32];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpl);
    if (system(cmd) != 0) fprintf(stderr, "kvsim bench sweep: could not remove %s\n", tmpl);
    return 0;
}
