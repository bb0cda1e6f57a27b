/* bench_accuracy.c — the kernels' accuracy study (models/ACCURACY.md):
 * mean relative L2 error of the attention output against full attention, by
 * budget (fractions of T0 + S), for topk, quest and completion x {favor,
 * taylor, fitted}, split by head entropy (a query head's mean normalised
 * entropy over the sampled steps, < 0.5 or >= 0.5).
 *
 * usage: bench_accuracy [--stride N] [--sinks S] [--window W] [--features F]
 *                       [--features-favor F] [--features-taylor R] [--features-fitted C]
 *                       [--seed X] [--fracs a,b,c] [--read-budget] [--resid-min X] TRACE.h5...
 * --read-budget: the fractions are token-equivalent READ budgets T = frac x (T0 + S)
 *   (kvs_method_opts.read_budget: anchors + retrieved + selector metadata +
 *   summary + map parameters, one fp16 token K+V = 1 te); methods: topk, quest
 *   (page: the smallest power of two >= 16 whose metadata takes at most half of
 *   T), completion favor / taylor / fitted (oracle topk selection, per-head
 *   allocation), fitted with a summary on every head (resid_min -1), and fitted
 *   with the deployable clusters selector.  Columns add the mean te actually
 *   read per (step, layer, KV head) ("read te", must be <= T) and the share of
 *   heads that read a summary.
 * Output: a markdown table on stdout (deterministic for the same inputs). */
#include "kvs_attn.h"
#include "kvs_method.h"
#include "kvs_oref.h"
#include "kvs_trace.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAXCFG 64
#define MAXFR 8

typedef struct {
    char name[48];
    kvs_method_opts o;
    double frac;
    int extra;                   /* topk given budget + this many tokens */
    double sum[2], cnt[2];       /* rel_l2 sums by entropy bucket */
    double est_err[2];           /* |tau_hat - tau| sums (completion) */
    double tau[2];               /* true unread mass sums */
    double te;                   /* summary token-eq */
    double pe;                   /* param token-eq */
    double rd, rdn, rdmax;       /* read te per (step, KV head): sum, count, max */
    double heads_on, heads;      /* heads reading a summary / heads */
} cfg_t;

int main(int argc, char **argv) {
    int stride = 8, sinks = 4, window = 16, features = 0, fmf[3] = {0, 0, 0};
    unsigned long long seed = 1;
    double fracs[MAXFR] = {0.005, 0.01, 0.02, 0.04};
    int nfr = 4, a = 1, rb = 0;
    double resid_min = KVS_RESID_MIN_DEFAULT;
    for (; a < argc && argv[a][0] == '-'; a++) {
        if (!strcmp(argv[a], "--stride") && a + 1 < argc) stride = atoi(argv[++a]);
        else if (!strcmp(argv[a], "--sinks") && a + 1 < argc) sinks = atoi(argv[++a]);
        else if (!strcmp(argv[a], "--window") && a + 1 < argc) window = atoi(argv[++a]);
        else if (!strcmp(argv[a], "--features") && a + 1 < argc) features = atoi(argv[++a]);
        else if (!strcmp(argv[a], "--features-favor") && a + 1 < argc) fmf[0] = atoi(argv[++a]);
        else if (!strcmp(argv[a], "--features-taylor") && a + 1 < argc) fmf[1] = atoi(argv[++a]);
        else if (!strcmp(argv[a], "--features-fitted") && a + 1 < argc) fmf[2] = atoi(argv[++a]);
        else if (!strcmp(argv[a], "--seed") && a + 1 < argc) seed = strtoull(argv[++a], NULL, 10);
        else if (!strcmp(argv[a], "--read-budget")) rb = 1;
        else if (!strcmp(argv[a], "--resid-min") && a + 1 < argc) resid_min = strtod(argv[++a], NULL);
        else if (!strcmp(argv[a], "--fracs") && a + 1 < argc) {
            char *s = argv[++a];
            nfr = 0;
            while (*s && nfr < MAXFR) { fracs[nfr++] = strtod(s, &s); if (*s == ',') s++; }
        } else { fprintf(stderr, "bench_accuracy: unknown option %s\n", argv[a]); return 2; }
    }
    if (a >= argc || stride < 1) {
        fprintf(stderr, "usage: bench_accuracy [--stride N] [--sinks S] [--window W] [--features F] [--seed X] [--fracs a,b] TRACE.h5...\n");
        return 2;
    }
    static cfg_t cfg[MAXCFG];
    int nc = 0;
    for (int f = 0; f < nfr && rb; f++) {
        const char *names[] = {"topk", "quest", "compl-favor", "compl-taylor", "compl-fitted",
                               "compl-fitted-all", "compl-fitted-clusters"};
        for (int t = 0; t < 7; t++) {
            cfg_t *c = &cfg[nc++];
            memset(c, 0, sizeof *c);
            snprintf(c->name, sizeof c->name, "%s", names[t]);
            kvs_method_opts_default(&c->o);
            c->o.sinks = sinks;
            c->o.window = window;
            c->o.seed = seed;
            c->o.features = features;
            c->o.resid_min = resid_min;
            c->frac = fracs[f];
            c->o.kind = t == 0 ? KVS_M_TOPK : t == 1 ? KVS_M_QUEST : KVS_M_COMPLETION;
            if (t >= 2) {
                c->o.fmap = t == 2 ? KVS_FMAP_FAVOR : t == 3 ? KVS_FMAP_TAYLOR : KVS_FMAP_FITTED;
                int fi = t == 2 ? 0 : t == 3 ? 1 : 2;
                if (fmf[fi] > 0) c->o.features = fmf[fi];
            }
            if (t == 5) c->o.resid_min = -1.0;
            if (t == 6) c->o.select = KVS_SEL_CLUSTERS;
        }
    }
    for (int f = 0; f < nfr && !rb; f++) {
        const char *names[] = {"topk", "quest", "compl-favor", "compl-taylor", "compl-fitted", "topk+te", "window"};
        for (int t = 0; t < 7; t++) {
            cfg_t *c = &cfg[nc++];
            memset(c, 0, sizeof *c);
            snprintf(c->name, sizeof c->name, "%s", names[t]);
            kvs_method_opts_default(&c->o);
            c->o.sinks = sinks;
            c->o.window = window;
            c->o.seed = seed;
            c->o.features = features;
            c->frac = fracs[f];
            if (t == 0 || t == 5) c->o.kind = KVS_M_TOPK;
            if (t == 1) c->o.kind = KVS_M_QUEST;
            if (t >= 2 && t <= 4) {
                c->o.kind = KVS_M_COMPLETION;
                c->o.fmap = (kvs_fmap_kind)(t - 2);
                if (fmf[t - 2] > 0) c->o.features = fmf[t - 2];
            }
            if (t == 5) c->extra = -1;   /* filled with the fitted summary's token-eq */
            if (t == 6) c->o.kind = KVS_M_WINDOW;
        }
    }
    char err[512];
    long lastN = 0;
    for (int fi = a; fi < argc; fi++) {
        kvs_trace *tr;
        if (kvs_trace_open(argv[fi], &tr, err, sizeof err)) { fprintf(stderr, "bench_accuracy: %s\n", err); return 1; }
        const kvs_trace_meta *mt = kvs_trace_get_meta(tr);
        int d = mt->head_dim, H = mt->n_heads, G = mt->n_kv_heads, g = H / G;
        long T0 = mt->prefill_len, S = mt->n_decode, N = T0 + S;
        lastN = N;
        float scale = (float)mt->softmax_scale;
        float *k = malloc(sizeof(float) * (size_t)N * (size_t)d), *v = malloc(sizeof(float) * (size_t)N * (size_t)d);
        float *q = malloc(sizeof(float) * (size_t)S * (size_t)H * (size_t)d);
        float *o = malloc(sizeof(float) * (size_t)g * (size_t)d), *qg = malloc(sizeof(float) * (size_t)g * (size_t)d);
        long ns = (S + stride - 1) / stride;
        double *oref = malloc(sizeof(double) * (size_t)ns * (size_t)g * (size_t)d);
        double *ent = malloc(sizeof(double) * (size_t)ns * (size_t)g);
        double *tauv = malloc(sizeof(double) * (size_t)ns * (size_t)g);
        if (!k || !v || !q || !o || !qg || !oref || !ent || !tauv) { fprintf(stderr, "bench_accuracy: out of memory\n"); return 1; }
        kvs_step_out so;
        for (int l = 0; l < mt->n_layers; l++) {
            if (kvs_trace_read_q(tr, l, 0, S, q, err, sizeof err)) { fprintf(stderr, "bench_accuracy: %s\n", err); return 1; }
            for (int kh = 0; kh < G; kh++) {
                if (kvs_trace_read_kv(tr, l, kh, 0, N, k, v, err, sizeof err)) { fprintf(stderr, "bench_accuracy: %s\n", err); return 1; }
                /* reference outputs (double) and entropies */
                kvs_method_opts fo;
                kvs_method_opts_default(&fo);
                kvs_method *fm = kvs_method_new(&fo, d, g, (int)N);
                kvs_method_prepare(fm, k, v, (int)N, (int)T0);
                double hmean[64] = {0};
                for (long si = 0; si < ns; si++) {
                    long s = si * stride;
                    for (int h = 0; h < g; h++)
                        memcpy(qg + (size_t)h * (size_t)d, q + ((size_t)s * (size_t)H + (size_t)(kh * g + h)) * (size_t)d, sizeof(float) * (size_t)d);
                    kvs_method_step(fm, qg, (int)(T0 + s), scale, o, &so);
                    for (int h = 0; h < g; h++) {
                        kvs_attn_full_ref(qg + (size_t)h * (size_t)d, k, v, T0 + s + 1, d, (double)scale,
                                          oref + ((size_t)si * (size_t)g + (size_t)h) * (size_t)d);
                        ent[si * g + h] = so.entropy[h];
                        hmean[h] += so.entropy[h] / (double)ns;
                    }
                }
                kvs_method_free(fm);
                for (int c = 0; c < nc; c++) {
                    cfg_t *C = &cfg[c];
                    kvs_method_opts mo = C->o;
                    mo.budget = (int64_t)ceil(C->frac * (double)N);
                    if (rb) {
                        mo.budget = 0;
                        mo.read_budget = C->frac * (double)N;
                        if (mo.kind == KVS_M_QUEST)   /* smallest page whose metadata fits in T/2 */
                            while (mo.page < (1 << 20) && (double)N / mo.page + 1.0 > 0.5 * mo.read_budget) mo.page *= 2;
                        if (kvs_method_read_budget_check(&mo, d, g, N, T0, err, sizeof err)) {
                            fprintf(stderr, "bench_accuracy: %s at %.1f%%: %s\n", C->name, 100.0 * C->frac, err);
                            C->cnt[0] = C->cnt[1] = -1.0;   /* marks "does not fit" */
                            continue;
                        }
                    }
                    if (C->cnt[0] < 0) continue;
                    if (C->extra < 0) {  /* topk given the fitted completion's extra bytes as tokens */
                        C->extra = (int)ceil(cfg[c - 1].te + cfg[c - 1].pe);
                    }
                    mo.budget += C->extra > 0 ? C->extra : 0;
                    kvs_method *m = kvs_method_new(&mo, d, g, (int)N);
                    if (!m) { fprintf(stderr, "bench_accuracy: bad method options for %s\n", C->name); return 1; }
                    kvs_method_prepare(m, k, v, (int)N, (int)T0);
                    C->te = kvs_method_summary_token_eq(m, 2);
                    C->pe = (double)kvs_method_param_bytes(m) / (2.0 * d * 2);
                    kvs_method_split sp;
                    kvs_method_split_of(m, &sp);
                    C->heads += 1.0;
                    C->heads_on += sp.summary;
                    for (long si = 0; si < ns; si++) {
                        long s = si * stride;
                        for (int h = 0; h < g; h++)
                            memcpy(qg + (size_t)h * (size_t)d, q + ((size_t)s * (size_t)H + (size_t)(kh * g + h)) * (size_t)d, sizeof(float) * (size_t)d);
                        kvs_method_step(m, qg, (int)(T0 + s), scale, o, &so);
                        double rte = (double)so.tokens_exact +
                                     (double)(so.meta_bytes + so.summary_bytes + so.param_bytes) / (4.0 * d);
                        C->rd += rte;
                        C->rdn += 1.0;
                        if (rte > C->rdmax) C->rdmax = rte;
                        for (int h = 0; h < g; h++) {
                            int b = hmean[h] >= 0.5;
                            double e = kvs_oref_rel_l2(o + (size_t)h * (size_t)d, oref + ((size_t)si * (size_t)g + (size_t)h) * (size_t)d, d);
                            C->sum[b] += e;
                            C->cnt[b] += 1.0;
                            double tau = 1.0 - so.exact_mass[h];
                            C->tau[b] += tau;
                            C->est_err[b] += fabs(so.est_mass[h] - so.true_resid_mass[h] / (so.exact_mass[h] + so.true_resid_mass[h]));
                        }
                    }
                    kvs_method_free(m);
                }
                (void)ent; (void)tauv;
            }
        }
        free(k); free(v); free(q); free(o); free(qg); free(oref); free(ent); free(tauv);
        kvs_trace_close(tr);
    }
    printf("sinks %d, window %d, stride %d, features %d (favor %d, taylor %d, fitted %d; 0 = default), seed %llu; %d traces\n\n",
           sinks, window, stride, features, fmf[0], fmf[1], fmf[2], seed, argc - a);
    if (rb) {
        printf("read budgets (te per step, layer, KV head; 1 te = one fp16 token K+V), resid_min %g\n\n", resid_min);
        printf("| method | read budget | T te | read te (mean / max) | heads with summary | rel_l2 H<0.5 | rel_l2 H>=0.5 | ratio to topk H<0.5 | H>=0.5 | unread mass H<0.5 | H>=0.5 | n (lo/hi) |\n");
        printf("|---|---|---|---|---|---|---|---|---|---|---|---|\n");
        for (int c = 0; c < nc; c++) {
            cfg_t *C = &cfg[c], *T = &cfg[c - c % 7];
            if (C->cnt[0] < 0) {
                printf("| %s | %.1f%% | %.1f | does not fit | | | | | | | | |\n", C->name, 100.0 * C->frac, C->frac * (double)lastN);
                continue;
            }
            double e0 = C->sum[0] / (C->cnt[0] + 1e-300), e1 = C->sum[1] / (C->cnt[1] + 1e-300);
            double t0 = T->sum[0] / (T->cnt[0] + 1e-300), t1 = T->sum[1] / (T->cnt[1] + 1e-300);
            printf("| %s | %.1f%% | %.1f | %.1f / %.1f | %.0f/%.0f | %.4f | %.4f | %.2f | %.2f | %.3f | %.3f | %.0f/%.0f |\n",
                   C->name, 100.0 * C->frac, C->frac * (double)lastN, C->rd / (C->rdn + 1e-300), C->rdmax,
                   C->heads_on, C->heads, e0, e1, e0 / (t0 + 1e-300), e1 / (t1 + 1e-300),
                   C->tau[0] / (C->cnt[0] + 1e-300), C->tau[1] / (C->cnt[1] + 1e-300), C->cnt[0], C->cnt[1]);
        }
        return 0;
    }
    printf("| method | budget | B tokens | summary te | params te | rel_l2 H<0.5 | rel_l2 H>=0.5 | unread mass H<0.5 | H>=0.5 | est share err H<0.5 | H>=0.5 | n (lo/hi) |\n");
    printf("|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for (int c = 0; c < nc; c++) {
        cfg_t *C = &cfg[c];
        printf("| %s | %.1f%% | %lld%s | %.1f | %.1f | %.4f | %.4f | %.3f | %.3f | %.3f | %.3f | %.0f/%.0f |\n", C->name,
               100.0 * C->frac, (long long)ceil(C->frac * (double)lastN), C->extra > 0 ? "+te" : "", C->te, C->pe,
               C->sum[0] / (C->cnt[0] + 1e-300), C->sum[1] / (C->cnt[1] + 1e-300),
               C->tau[0] / (C->cnt[0] + 1e-300), C->tau[1] / (C->cnt[1] + 1e-300),
               C->est_err[0] / (C->cnt[0] + 1e-300), C->est_err[1] / (C->cnt[1] + 1e-300), C->cnt[0], C->cnt[1]);
    }
    return 0;
}
