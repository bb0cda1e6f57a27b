/* cmd_report.c — `kvsim report DB -o DIR [--plots DIR2]`: runs each plot
 * query (reports/plots/NAME.sql, then the user's NAME.sql in DIR2, which
 * replace standard ones of the same name) against the database with the
 * views of reports/views.sql loaded, writes the result as CSV, renders it with
 * gnuplot (NAME.gp) to PNG and SVG, and writes DIR/index.html.
 *
 * Plot pair contract (reports/README.md): the .sql's first lines may be
 * "-- title: ..." and "-- caption: ..." (and "-- order: N"); its result goes
 * to DIR/data/NAME.csv with a header row; when the first column is named
 * `series`, rows are grouped into blocks separated by two blank lines, one
 * per series value (gnuplot `index`).  The .gp runs with the terminal and
 * output already set and these variables: datafile, outfile, outfmt
 * ("png"/"svg"), nseries, series (the names, double-quoted, for word()),
 * and the functions of reports/plots/style.gp (method_color(s), ...).
 * A query with no rows gets a placeholder in the HTML, not a plot.
 * The database is opened read-only; views are TEMP. */
#include "kvs_cli.h"
#include "kvs_db.h"
#include "kvs_err.h"
#include "kvs_util.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <spawn.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define MAX_PLOTS 128

typedef struct {
    char name[128];
    char sql[PATH_MAX], gp[PATH_MAX];
    int order;
} plot_src;

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    if (b) b[n] = 0;
    fclose(f);
    return b;
}

static int is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* The reports folder: --reports, $KVSIM_REPORTS, beside the program's build
 * folder (../reports, ../../reports), ./reports. */
static int find_reports(const char *opt, char *out, size_t n) {
    char cand[6][PATH_MAX + 32];
    int nc = 0;
    if (opt) snprintf(cand[nc++], sizeof cand[0], "%s", opt);
    const char *env = getenv("KVSIM_REPORTS");
    if (env && *env) snprintf(cand[nc++], sizeof cand[0], "%s", env);
    char exe[PATH_MAX];
    if (kvs_cli_exe_dir(exe, sizeof exe) == 0) {
        snprintf(cand[nc++], sizeof cand[0], "%.4000s/../reports", exe);
        snprintf(cand[nc++], sizeof cand[0], "%.4000s/../../reports", exe);
        snprintf(cand[nc++], sizeof cand[0], "%.4000s/../share/kvsim/reports", exe);
    }
    snprintf(cand[nc++], sizeof cand[0], "reports");
    for (int i = 0; i < nc; i++) {
        char v[PATH_MAX + 48];
        snprintf(v, sizeof v, "%.4000s/views.sql", cand[i]);
        if (access(v, R_OK) == 0) {
            if (!realpath(cand[i], out)) snprintf(out, n, "%.4000s", cand[i]);
            return 0;
        }
        if (opt && i == 0) return -1;   /* an explicit folder must hold views.sql */
    }
    return -1;
}

static int find_gnuplot(char *out, size_t n) {
    const char *env = getenv("KVSIM_GNUPLOT");
    if (env && *env) {
        snprintf(out, n, "%s", env);
        return access(out, X_OK) == 0 ? 0 : -1;
    }
    const char *path = getenv("PATH");
    char buf[8192];
    snprintf(buf, sizeof buf, "%s", path ? path : "/usr/bin:/bin");
    for (char *save = NULL, *d = strtok_r(buf, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
        snprintf(out, n, "%s/gnuplot", *d ? d : ".");
        if (access(out, X_OK) == 0) return 0;
    }
    return -1;
}

/* Reads "-- key: value" from the leading comment lines of the query. */
static void header_field(const char *sql, const char *key, char *out, size_t n) {
    out[0] = 0;
    size_t kl = strlen(key);
    for (const char *p = sql; p && *p;) {
        while (*p == ' ' || *p == '\t') p++;
        if (strncmp(p, "--", 2)) {
            if (*p == '\n') {
                p++;
                continue;
            }
            break;   /* the query starts */
        }
        const char *q = p + 2;
        while (*q == ' ') q++;
        const char *e = strchr(p, '\n');
        if (!strncmp(q, key, kl) && q[kl] == ':') {
            q += kl + 1;
            while (*q == ' ') q++;
            size_t len = e ? (size_t)(e - q) : strlen(q);
            if (len >= n) len = n - 1;
            memcpy(out, q, len);
            out[len] = 0;
            return;
        }
        p = e ? e + 1 : NULL;
    }
}

static void html_esc(FILE *f, const char *s) {
    for (; s && *s; s++) {
        if (*s == '<') fputs("&lt;", f);
        else if (*s == '>') fputs("&gt;", f);
        else if (*s == '&') fputs("&amp;", f);
        else if (*s == '"') fputs("&quot;", f);
        else fputc(*s, f);
    }
}

static void csv_field(FILE *f, sqlite3_stmt *st, int c, int series_col) {
    switch (sqlite3_column_type(st, c)) {
    case SQLITE_NULL: break;
    case SQLITE_INTEGER: fprintf(f, "%lld", (long long)sqlite3_column_int64(st, c)); break;
    case SQLITE_FLOAT: fprintf(f, "%.10g", sqlite3_column_double(st, c)); break;
    default: {
        const char *t = (const char *)sqlite3_column_text(st, c);
        if (series_col) {   /* gnuplot splits on commas and ignores CSV quoting */
            for (; t && *t; t++) fputc(*t == ',' ? ';' : *t == '"' ? '\'' : *t, f);
        } else if (t && strpbrk(t, ",\"\n\r")) {
            fputc('"', f);
            for (; *t; t++) {
                if (*t == '"') fputc('"', f);
                fputc(*t, f);
            }
            fputc('"', f);
        } else if (t) {
            fputs(t, f);
        }
    }
    }
}

/* Runs the query into csv_path; returns rows (>= 0) or -1 with err.
 * series: the names (double-quoted, space-separated), nseries their count. */
static long query_csv(sqlite3 *h, const char *sql, const char *csv_path, char *series, size_t slen, int *nseries,
                      char *err, size_t errlen) {
    sqlite3_stmt *st = NULL;
    const char *tail = NULL;
    if (sqlite3_prepare_v2(h, sql, -1, &st, &tail) != SQLITE_OK || !st) {
        kvs_seterr(err, errlen, "%s", st ? sqlite3_errmsg(h) : (sqlite3_errmsg(h)[0] ? sqlite3_errmsg(h) : "no statement"));
        sqlite3_finalize(st);
        return -1;
    }
    char tmp[PATH_MAX + 16];
    snprintf(tmp, sizeof tmp, "%.4000s.tmp", csv_path);
    FILE *f = fopen(tmp, "w");
    if (!f) {
        kvs_seterr(err, errlen, "%.900s: %s", tmp, strerror(errno));
        sqlite3_finalize(st);
        return -1;
    }
    int nc = sqlite3_column_count(st);
    int has_series = nc > 0 && !strcmp(sqlite3_column_name(st, 0), "series");
    for (int c = 0; c < nc; c++) fprintf(f, "%s%s", c ? "," : "", sqlite3_column_name(st, c));
    fputc('\n', f);
    long rows = 0;
    char last[256] = "";
    size_t sl = 0;
    series[0] = 0;
    *nseries = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (has_series) {
            const char *t = (const char *)sqlite3_column_text(st, 0);
            char nm[256];
            snprintf(nm, sizeof nm, "%s", t ? t : "");
            for (char *p = nm; *p; p++)
                if (*p == '"' || *p == ',') *p = '\'';
            if (rows == 0 || strcmp(nm, last)) {
                if (rows > 0) fputs("\n\n", f);
                snprintf(last, sizeof last, "%s", nm);
                int w = snprintf(series + sl, slen - sl, "%s\"%s\"", sl ? " " : "", nm);
                if (w > 0 && (size_t)w < slen - sl) sl += (size_t)w;
                (*nseries)++;
            }
        }
        for (int c = 0; c < nc; c++) {
            if (c) fputc(',', f);
            csv_field(f, st, c, has_series && c == 0);
        }
        fputc('\n', f);
        rows++;
    }
    if (!has_series) *nseries = rows > 0;
    if (rc != SQLITE_DONE) {
        kvs_seterr(err, errlen, "%s", sqlite3_errmsg(h));
        sqlite3_finalize(st);
        fclose(f);
        unlink(tmp);
        return -1;
    }
    sqlite3_finalize(st);
    if (fclose(f) != 0 || rename(tmp, csv_path) != 0) {
        kvs_seterr(err, errlen, "%.900s: %s", csv_path, strerror(errno));
        unlink(tmp);
        return -1;
    }
    return rows;
}

/* Appends s to a gnuplot single-quoted string ('' is a quote). */
static size_t gp_quote(char *out, size_t n, size_t at, const char *s) {
    for (; *s && at + 3 < n; s++) {
        if (*s == '\'') out[at++] = '\'';
        out[at++] = *s;
    }
    out[at] = 0;
    return at;
}

/* Renders one format; 0, or -1 with the end of gnuplot's stderr in err. */
static int run_gnuplot(const char *gnuplot, const char *style, const char *gp, const char *csv, const char *out,
                       const char *fmt, const char *series, int nseries, const char *log, char *err, size_t errlen) {
    char pre[16384], tmp[PATH_MAX + 16];
    snprintf(tmp, sizeof tmp, "%s.tmp.%s", out, fmt);
    size_t at = (size_t)snprintf(pre, sizeof pre, "%s; set output '",
                                 !strcmp(fmt, "png") ? "set terminal pngcairo size 960,600 font 'DejaVu Sans,11'"
                                                     : "set terminal svg size 960,600 dynamic font 'DejaVu Sans,11'");
    at = gp_quote(pre, sizeof pre, at, tmp);
    at += (size_t)snprintf(pre + at, sizeof pre - at, "'; set datafile separator comma; datafile = '");
    at = gp_quote(pre, sizeof pre, at, csv);
    at += (size_t)snprintf(pre + at, sizeof pre - at, "'; outfile = '");
    at = gp_quote(pre, sizeof pre, at, out);
    at += (size_t)snprintf(pre + at, sizeof pre - at, "'; outfmt = '%s'; nseries = %d; series = '", fmt, nseries);
    at = gp_quote(pre, sizeof pre, at, series);
    if (at + 2 < sizeof pre) at += (size_t)snprintf(pre + at, sizeof pre - at, "'");
    if (style && at + 16 < sizeof pre) {   /* shared colours: reports/plots/style.gp */
        at += (size_t)snprintf(pre + at, sizeof pre - at, "; load '");
        at = gp_quote(pre, sizeof pre, at, style);
        if (at + 2 < sizeof pre) snprintf(pre + at, sizeof pre - at, "'");
    }
    char *argv[] = {(char *)gnuplot, "-e", pre, (char *)gp, NULL};
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 2, log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    pid_t pid;
    int rc = posix_spawn(&pid, gnuplot, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) {
        kvs_seterr(err, errlen, "cannot run %s: %s", gnuplot, strerror(rc));
        return -1;
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    struct stat st;
    int ok = WIFEXITED(status) && WEXITSTATUS(status) == 0 && stat(tmp, &st) == 0 && st.st_size > 0;
    if (ok && rename(tmp, out) == 0) return 0;
    unlink(tmp);
    char *msg = slurp(log);
    const char *m = msg ? msg : "";
    size_t ml = strlen(m);
    if (ml > 600) m += ml - 600;
    kvs_seterr(err, errlen, "gnuplot failed on %s (%s): %s", gp, fmt, *m ? m : "no output");
    free(msg);
    return -1;
}

static int cmp_plot(const void *a, const void *b) {
    const plot_src *x = a, *y = b;
    if (x->order != y->order) return x->order < y->order ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* Adds the NAME.sql + NAME.gp pairs of dir (replacing same names). */
static int scan_plots(const char *dir, plot_src *p, int *n, int user) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t l = strlen(e->d_name);
        if (l < 5 || strcmp(e->d_name + l - 4, ".sql") || l - 4 >= sizeof p->name) continue;
        plot_src s;
        memset(&s, 0, sizeof s);
        memcpy(s.name, e->d_name, l - 4);
        snprintf(s.sql, sizeof s.sql, "%s/%s.sql", dir, s.name);
        snprintf(s.gp, sizeof s.gp, "%s/%s.gp", dir, s.name);
        if (access(s.gp, R_OK) != 0) {
            fprintf(stderr, "kvsim report: %s has no %s.gp beside it: skipped\n", s.sql, s.name);
            continue;
        }
        char *txt = slurp(s.sql);
        char ord[32];
        header_field(txt ? txt : "", "order", ord, sizeof ord);
        long long order = user ? 1000 : 500;
        char perr[256];
        if (*ord && kvs_parse_ll(ord, INT_MIN, INT_MAX, &order, "order", perr, sizeof perr)) {
            fprintf(stderr, "kvsim report: %s: %s: using %d\n", s.sql, perr, user ? 1000 : 500);
            order = user ? 1000 : 500;
        }
        s.order = (int)order;
        free(txt);
        int k;
        for (k = 0; k < *n; k++)
            if (!strcmp(p[k].name, s.name)) break;
        if (k == *n) {
            if (*n >= MAX_PLOTS) continue;
            (*n)++;
        }
        p[k] = s;
    }
    closedir(d);
    return 0;
}

static void summary_table(FILE *f, sqlite3 *h) {
    sqlite3_stmt *st = NULL;
    const char *q = "SELECT COALESCE(sweep_id, '(none)'), kind, method, COUNT(*), MIN(budget), MAX(budget), "
                    "COUNT(DISTINCT trace) FROM runs WHERE status = 'complete' "
                    "GROUP BY 1, 2, 3 ORDER BY 1, 2, 3";
    fputs("<table><tr><th>sweep</th><th>kind</th><th>method</th><th>runs</th><th>budgets</th><th>traces</th></tr>\n", f);
    if (sqlite3_prepare_v2(h, q, -1, &st, NULL) == SQLITE_OK) {
        while (sqlite3_step(st) == SQLITE_ROW) {
            fputs("<tr>", f);
            for (int c = 0; c < 3; c++) {
                fputs("<td>", f);
                html_esc(f, (const char *)sqlite3_column_text(st, c));
                fputs("</td>", f);
            }
            fprintf(f, "<td>%lld</td><td>%lld&ndash;%lld</td><td>%lld</td></tr>\n", (long long)sqlite3_column_int64(st, 3),
                    (long long)sqlite3_column_int64(st, 4), (long long)sqlite3_column_int64(st, 5),
                    (long long)sqlite3_column_int64(st, 6));
        }
    }
    sqlite3_finalize(st);
    fputs("</table>\n", f);
    if (sqlite3_prepare_v2(h, "SELECT status, COUNT(*) FROM runs GROUP BY status ORDER BY status", -1, &st, NULL) ==
        SQLITE_OK) {
        fputs("<p>Runs by status:", f);
        while (sqlite3_step(st) == SQLITE_ROW)
            fprintf(f, " %s %lld;", (const char *)sqlite3_column_text(st, 0), (long long)sqlite3_column_int64(st, 1));
        fputs(" (only complete runs are plotted)</p>\n", f);
    }
    sqlite3_finalize(st);
}

static int report_usage(FILE *f) {
    fprintf(f, "usage: kvsim report DB -o DIR [--plots DIR2] [--reports DIR3] [--title TEXT]\n\n"
               "Renders the standard plots (reports/plots/NAME.sql + NAME.gp) and any pairs in\n"
               "DIR2 (same name: replaces the standard one) from the database DB, opened\n"
               "read-only with the views of reports/views.sql, into DIR: NAME.png, NAME.svg,\n"
               "data/NAME.csv and index.html.  Needs gnuplot (or $KVSIM_GNUPLOT).\n"
               "The reports folder is found by --reports, $KVSIM_REPORTS, or beside the program.\n");
    return f == stdout ? 0 : 2;
}

int kvs_cmd_report(int argc, char **argv) {
    const char *dbp = NULL, *out = NULL, *user = NULL, *ropt = NULL, *title = "kvsim report";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) return report_usage(stdout);
        else if (!strcmp(a, "-o") && i + 1 < argc) out = argv[++i];
        else if (!strcmp(a, "--plots") && i + 1 < argc) user = argv[++i];
        else if (!strcmp(a, "--reports") && i + 1 < argc) ropt = argv[++i];
        else if (!strcmp(a, "--title") && i + 1 < argc) title = argv[++i];
        else if (a[0] == '-') return kvs_cli_usage_error("report", "unknown option '%s' (kvsim report --help)", a);
        else if (!dbp) dbp = a;
        else return kvs_cli_usage_error("report", "one database at a time ('%s' and '%s')", dbp, a);
    }
    if (!dbp || !out) return kvs_cli_usage_error("report", "usage: kvsim report DB -o DIR [--plots DIR2]");
    char rdir[PATH_MAX], gnuplot[PATH_MAX], p[PATH_MAX + 64];
    if (find_reports(ropt, rdir, sizeof rdir))
        return kvs_cli_usage_error("report", "cannot find the reports folder (views.sql)%s%s; give --reports DIR or "
                                   "set KVSIM_REPORTS", ropt ? " in " : "", ropt ? ropt : "");
    if (user && !is_dir(user)) return kvs_cli_usage_error("report", "--plots %s: not a folder", user);
    if (find_gnuplot(gnuplot, sizeof gnuplot))
        return kvs_cli_usage_error("report", "gnuplot not found on PATH (install gnuplot-nox, or set KVSIM_GNUPLOT)");
    struct stat st;
    if (stat(dbp, &st) != 0) return kvs_cli_usage_error("report", "%s: %s", dbp, strerror(errno));
    {   /* a kvsim database? (read-only check: the file is never written) */
        kvs_db *chk = NULL;
        char e[1024];
        if (kvs_db_open_ro(dbp, &chk, e, sizeof e)) return kvs_cli_usage_error("report", "%s", e);
        kvs_db_close(chk);
    }
    sqlite3 *h = NULL;
    if (sqlite3_open_v2(dbp, &h, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        kvs_cli_usage_error("report", "%s: %s", dbp, h ? sqlite3_errmsg(h) : "cannot open");
        sqlite3_close(h);
        return 2;
    }
    sqlite3_busy_timeout(h, 30000);
    snprintf(p, sizeof p, "%s/views.sql", rdir);
    char *views = slurp(p), *emsg = NULL;
    if (!views || sqlite3_exec(h, views, NULL, NULL, &emsg) != SQLITE_OK) {
        kvs_cli_usage_error("report", "%s: %s (is %s a kvsim database?)", p, views ? (emsg ? emsg : "?") : strerror(errno), dbp);
        sqlite3_free(emsg);
        free(views);
        sqlite3_close(h);
        return 2;
    }
    free(views);
    /* output folders */
    mkdir(out, 0777);
    snprintf(p, sizeof p, "%s/data", out);
    mkdir(p, 0777);
    if (!is_dir(p)) {
        sqlite3_close(h);
        return kvs_cli_usage_error("report", "cannot make %s: %s", p, strerror(errno));
    }
    static plot_src plots[MAX_PLOTS];
    int np = 0;
    snprintf(p, sizeof p, "%s/plots", rdir);
    scan_plots(p, plots, &np, 0);
    if (user) scan_plots(user, plots, &np, 1);
    qsort(plots, (size_t)np, sizeof *plots, cmp_plot);
    char style_buf[PATH_MAX + 32];
    snprintf(style_buf, sizeof style_buf, "%s/plots/style.gp", rdir);
    const char *style = access(style_buf, R_OK) == 0 ? style_buf : NULL;

    char html[PATH_MAX + 32], html_tmp[PATH_MAX + 48];
    snprintf(html, sizeof html, "%s/index.html", out);
    snprintf(html_tmp, sizeof html_tmp, "%s.tmp", html);
    /* body of the page into memory, then the template around it */
    char *body = NULL, *sum = NULL;
    size_t body_len = 0, sum_len = 0;
    FILE *bf = open_memstream(&body, &body_len), *sf = open_memstream(&sum, &sum_len);
    if (!bf || !sf) abort();
    summary_table(sf, h);
    fclose(sf);
    int n_ok = 0, n_empty = 0, n_err = 0;
    for (int i = 0; i < np; i++) {
        plot_src *pl = &plots[i];
        char *sql = slurp(pl->sql), ttl[512], cap[2048], err[1200] = "", csv[PATH_MAX + 64], series[8192];
        char png[PATH_MAX + 64], svg[PATH_MAX + 64], log[PATH_MAX + 64];
        int nseries = 0;
        header_field(sql ? sql : "", "title", ttl, sizeof ttl);
        header_field(sql ? sql : "", "caption", cap, sizeof cap);
        if (!*ttl) snprintf(ttl, sizeof ttl, "%s", pl->name);
        snprintf(csv, sizeof csv, "%s/data/%s.csv", out, pl->name);
        snprintf(png, sizeof png, "%s/%s.png", out, pl->name);
        snprintf(svg, sizeof svg, "%s/%s.svg", out, pl->name);
        snprintf(log, sizeof log, "%s/data/%s.gnuplot.log", out, pl->name);
        long rows = sql ? query_csv(h, sql, csv, series, sizeof series, &nseries, err, sizeof err) : -1;
        if (!sql) kvs_seterr(err, sizeof err, "%.400s: %.100s", pl->sql, strerror(errno));
        free(sql);
        fprintf(bf, "<section class=\"plot\" id=\"%s\">\n<h2>", pl->name);
        html_esc(bf, ttl);
        fputs("</h2>\n", bf);
        if (rows < 0) {
            fprintf(stderr, "kvsim report: %s: %s\n", pl->sql, err);
            fputs("<div class=\"placeholder error\">Query failed: ", bf);
            html_esc(bf, err);
            fputs("</div>\n", bf);
            n_err++;
        } else if (rows == 0) {
            unlink(png);
            unlink(svg);
            fputs("<div class=\"placeholder\">No data for this plot in this database: the query returned no rows "
                  "(see the caption for the runs it needs).</div>\n", bf);
            n_empty++;
        } else if (run_gnuplot(gnuplot, style, pl->gp, csv, png, "png", series, nseries, log, err, sizeof err) ||
                   run_gnuplot(gnuplot, style, pl->gp, csv, svg, "svg", series, nseries, log, err, sizeof err)) {
            fprintf(stderr, "kvsim report: %s\n", err);
            fputs("<div class=\"placeholder error\">", bf);
            html_esc(bf, err);
            fputs("</div>\n", bf);
            n_err++;
        } else {
            fprintf(bf, "<a href=\"%s.svg\"><img src=\"%s.png\" alt=\"", pl->name, pl->name);
            html_esc(bf, ttl);
            fputs("\"></a>\n", bf);
            n_ok++;
        }
        if (*cap) {
            fputs("<p class=\"caption\">", bf);
            html_esc(bf, cap);
            fputs("</p>\n", bf);
        }
        fputs("<p class=\"files\">", bf);
        if (rows > 0 && !*err) fprintf(bf, "<a href=\"%s.png\">PNG</a> · <a href=\"%s.svg\">SVG</a> · ", pl->name, pl->name);
        if (rows >= 0) fprintf(bf, "<a href=\"data/%s.csv\">data (%ld rows)</a> · ", pl->name, rows);
        fputs("query ", bf);
        html_esc(bf, pl->sql);
        fputs("</p>\n</section>\n", bf);
    }
    fclose(bf);
    snprintf(p, sizeof p, "%s/template.html", rdir);
    char *tpl = slurp(p);
    if (!tpl) {
        kvs_cli_usage_error("report", "%s: %s", p, strerror(errno));
        free(body);
        free(sum);
        sqlite3_close(h);
        return 2;
    }
    FILE *hf = fopen(html_tmp, "w");
    if (!hf) {
        kvs_cli_usage_error("report", "%s: %s", html_tmp, strerror(errno));
        free(tpl);
        free(body);
        free(sum);
        sqlite3_close(h);
        return 2;
    }
    char when[64];
    time_t now = time(NULL);
    strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S UTC", gmtime(&now));
    /* @TITLE@ @DB@ @GENERATED@ @SUMMARY@ @PLOTS@, outside HTML comments (the
     * template's own comment names them and must stay a comment) */
    for (const char *c = tpl; *c;) {
        if (!strncmp(c, "<!--", 4)) {
            const char *e = strstr(c + 4, "-->");
            size_t n = e ? (size_t)(e + 3 - c) : strlen(c);
            fwrite(c, 1, n, hf);
            c += n;
            continue;
        }
        if (*c == '@') {
            if (!strncmp(c, "@TITLE@", 7)) { html_esc(hf, title); c += 7; continue; }
            if (!strncmp(c, "@DB@", 4)) { html_esc(hf, dbp); c += 4; continue; }
            if (!strncmp(c, "@GENERATED@", 11)) { html_esc(hf, when); c += 11; continue; }
            if (!strncmp(c, "@SUMMARY@", 9)) { fputs(sum, hf); c += 9; continue; }
            if (!strncmp(c, "@PLOTS@", 7)) { fputs(body, hf); c += 7; continue; }
        }
        fputc(*c++, hf);
    }
    free(tpl);
    free(body);
    free(sum);
    sqlite3_close(h);
    if (fclose(hf) != 0 || rename(html_tmp, html) != 0) {
        unlink(html_tmp);
        return kvs_cli_usage_error("report", "%s: %s", html, strerror(errno));
    }
    printf("report: %d plots rendered, %d without data, %d failed -> %s\n", n_ok, n_empty, n_err, html);
    return n_err ? 1 : 0;
}
