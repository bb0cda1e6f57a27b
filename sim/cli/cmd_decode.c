/* cmd_decode.c — `kvsim decode`: closed-loop decoding with a method in every
 * layer and KV head (sim/kvs_decode.h).  Every run-spec key is an option
 * (--some-name = key some_name, see kvsim eval --help); SIGINT/SIGTERM end
 * the run as 'failed'. */
#include "kvs_cli.h"
#include "kvs_decode.h"
#include "kvs_run.h"
#include <math.h>
#include <stdio.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: kvsim decode --weights MODEL.h5 --trace T.h5 --method M --db FILE [options]\n\n"
            "Closed-loop decoding: the model of MODEL.h5 (scripts/export_model.py) decodes from the\n"
            "trace's prefill K/V with the method's attention in every layer and KV head, beside a\n"
            "full-attention copy of itself; per predicted token: NLL, KL from full attention, top-1\n"
            "agreement (table decode_metrics; run_values nll, nll_full, delta_nll, kl_mean,\n"
            "top1_agreement).\n\n"
            "decode:\n"
            "  --weights FILE        weights file (models/WEIGHTS.md); must be the trace's model\n"
            "  --steps a:b           teacher-forced: predict the trace's decode tokens a..b-1\n"
            "                        (default all; token T0+s is predicted at position T0+s-1)\n"
            "  --generate N          free-running: greedy N tokens from the prefill, method vs full;\n"
            "                        first_divergence_step and token_match_rate\n"
            "  --dump-logits FILE    raw float32 logits [steps][method, full][vocab] (tests)\n"
            "method and budget: every option of kvsim eval / kvsim run:\n");
    const char *help;
    for (int i = 0; kvs_run_spec_key(i, &help); i++) {
        const char *k = kvs_run_spec_key(i, NULL);
        if (!strcmp(k, "trace") || !strcmp(k, "layers") || !strcmp(k, "accuracy") || !strcmp(k, "allow_nonfinite") ||
            !strcmp(k, "steps"))
            continue;
        char opt[64];
        snprintf(opt, sizeof opt, "--%s", k);
        for (char *p = opt; *p; p++)
            if (*p == '_') *p = '-';
        fprintf(f, "  %-21s %s\n", opt, help ? help : "");
    }
    fprintf(f,
            "  --set KEY=VALUE       override one hardware setting (with --hw)\n"
            "output:\n"
            "  --db FILE             SQLite database (created if missing); the run is appended\n"
            "  --quiet               no summary on stdout\n"
            "  --no-progress         no progress line\n\n"
            "With --hw, the method model's exact reads of every decode position are replayed through\n"
            "the hierarchy as kvsim run does (step_metrics, step s = position T0+s).\n"
            "Schema: reports/SCHEMA.md (decode_metrics).\n");
}

int kvs_cmd_decode(int argc, char **argv) {
    const char *cmd = "decode";
    kvs_run_spec spec;
    kvs_run_ctl ctl = {.progress = 1, .sweep_id = NULL, .want_run_id = -1, .quiet = 0};
    kvs_decode_opts o = {0};
    const char *db = NULL;
    char err[1024];
    int have_trace = 0, have_method = 0, rc = 2;
    kvs_run_spec_init(&spec);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            kvs_run_spec_free(&spec);
            return 0;
        }
        if (!strcmp(a, "--quiet")) { ctl.quiet = 1; continue; }
        if (!strcmp(a, "--no-progress")) { ctl.progress = 0; continue; }
        if (strncmp(a, "--", 2) != 0) {
            kvs_cli_usage_error(cmd, "unexpected argument '%s' (kvsim decode --help)", a);
            goto out;
        }
        if (i + 1 >= argc) {
            kvs_cli_usage_error(cmd, "%s needs a value", a);
            goto out;
        }
        const char *v = argv[++i];
        const char *name = a + 2;
        if (!strcmp(name, "db")) { db = v; continue; }
        if (!strcmp(name, "weights")) { o.weights = v; continue; }
        if (!strcmp(name, "dump-logits")) { o.dump_logits = v; continue; }
        if (!strcmp(name, "generate")) {
            long n;
            if (kvs_cli_long(cmd, "--generate", v, 1, 1L << 24, &n)) goto out;
            o.generate = (int)n;
            continue;
        }
        char key[128];
        if (strcmp(name, "set")) {
            if (!strcmp(name, "layers") || !strcmp(name, "accuracy") || !strcmp(name, "allow-nonfinite")) {
                kvs_cli_usage_error(cmd, "%s: not an option of kvsim decode (the model runs every layer on finite data)", a);
                goto out;
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
    if (!o.weights) { kvs_cli_usage_error(cmd, "--weights FILE is required (scripts/export_model.py writes it)"); goto out; }
    if (!have_trace) { kvs_cli_usage_error(cmd, "--trace FILE is required"); goto out; }
    if (!have_method) { kvs_cli_usage_error(cmd, "--method is required (full, window, topk, quest, completion)"); goto out; }
    if (!db) { kvs_cli_usage_error(cmd, "--db FILE is required"); goto out; }
    ctl.interrupt = kvs_cli_catch_signals();
    int64_t run_id = -1;
    int r = kvs_decode_execute(&spec, &o, db, &ctl, &run_id, err, sizeof err);
    kvs_cli_release_signals();
    if (r != 0) {
        fprintf(stderr, "kvsim decode: %s\n", err);
        rc = 1;
        goto out;
    }
    rc = 0;
out:
    kvs_run_spec_free(&spec);
    return rc;
}

/* ---- kvsim bench decode ------------------------------------------------------------
 * Tokens per second of the one-token forward pass with full attention at a
 * given context (default 8192, the 12m model's), against a reference taken
 * in the same run: a STREAM-like copy of the bytes one token must read
 * (every weight once, plus K and V of every layer and KV head), i.e. the
 * memory-bandwidth bound of this machine for this model. */
#include "kvs_llama.h"
#include "kvs_util.h"
#include "kvs_weights.h"

static float *bench_rand(size_t n, float sd, uint64_t *st) {
    float *x = malloc(sizeof(float) * (n ? n : 1));
    if (!x) return NULL;
    for (size_t i = 0; i < n; i++) {   /* xorshift64*, uniform in [-sd*sqrt3, sd*sqrt3] */
        *st ^= *st >> 12; *st ^= *st << 25; *st ^= *st >> 27;
        double u = (double)((*st * 2685821657736338717ULL) >> 11) / 9007199254740992.0;
        x[i] = (float)((2.0 * u - 1.0) * 1.7320508 * (double)sd);
    }
    return x;
}

int kvs_bench_decode(int argc, char **argv) {
    const char *cmd = "bench decode", *wpath = NULL;
    long ctx = 8192, ntok = 64;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: kvsim bench decode [--weights MODEL.h5] [--ctx N] [--tokens N]\n"
                   "Tokens/s of the forward pass with full attention at context N (default 8192) for the\n"
                   "weights file (default: random weights of pysrc-llama-12m's geometry), vs a copy of the\n"
                   "bytes one token reads. Threads: OPENBLAS_NUM_THREADS (the goal is stated for 2).\n");
            return 0;
        }
        if (i + 1 >= argc) return kvs_cli_usage_error(cmd, "%s needs a value", argv[i]);
        if (!strcmp(argv[i], "--weights")) wpath = argv[++i];
        else if (!strcmp(argv[i], "--ctx")) { if (kvs_cli_long(cmd, "--ctx", argv[++i], 2, 1L << 22, &ctx)) return 2; }
        else if (!strcmp(argv[i], "--tokens")) { if (kvs_cli_long(cmd, "--tokens", argv[++i], 1, 100000, &ntok)) return 2; }
        else return kvs_cli_usage_error(cmd, "unknown option '%s'", argv[i]);
    }
    if (ntok >= ctx) return kvs_cli_usage_error(cmd, "--tokens %ld must be below --ctx %ld", ntok, ctx);
    char err[1024];
    kvs_weights *W = NULL;
    kvs_llama_model m;
    memset(&m, 0, sizeof m);
    kvs_llama_layer *layers = NULL;
    float **owned = NULL;
    int n_owned = 0;
    double *inv = NULL;
    uint64_t st = 88172645463325252ULL;
    if (wpath) {
        if (kvs_weights_open(wpath, &W, err, sizeof err)) { fprintf(stderr, "kvsim bench decode: %s\n", err); return 1; }
        const kvs_weights_meta *M = kvs_weights_get_meta(W);
        m.c = (kvs_llama_config){M->vocab, M->d_model, M->n_layers, M->n_heads, M->n_kv_heads, M->head_dim,
                                 M->ffn_hidden, (float)M->norm_eps, (float)M->softmax_scale,
                                 strcmp(M->rope_style, "half") ? KVS_ROPE_INTERLEAVED : KVS_ROPE_HALF,
                                 !strcmp(M->rope_angle_precision, "float32"), M->rope_attention_factor};
        layers = calloc((size_t)M->n_layers, sizeof *layers);
        if (!layers) { kvs_weights_close(W); return 1; }
        for (int l = 0; l < M->n_layers; l++) {
            const kvs_weights_layer *y = kvs_weights_layer_at(W, l);
            layers[l] = (kvs_llama_layer){y->attn_norm, y->wq, y->wk, y->wv, y->wo, y->bq, y->bk, y->bv,
                                          y->ffn_norm, y->w_gate, y->w_up, y->w_down};
        }
        m.embed = kvs_weights_embed(W);
        m.norm_final = kvs_weights_norm_final(W);
        m.lm_head = kvs_weights_lm_head(W);
        m.rope_inv_freq = kvs_weights_rope_inv_freq(W);
    } else {   /* pysrc-llama-12m's geometry, random weights */
        m.c = (kvs_llama_config){8192, 384, 6, 6, 2, 64, 1024, 1.1920929e-7f, 0.125f, KVS_ROPE_INTERLEAVED, 0, 1.0};
        const size_t D = 384, Hd = 384, KVd = 128, F = 1024;
        layers = calloc(6, sizeof *layers);
        owned = calloc(128, sizeof *owned);
        inv = malloc(sizeof(double) * 32);
        if (!layers || !owned || !inv) return 1;
        for (int i = 0; i < 32; i++) inv[i] = pow(1e5, -2.0 * i / 64.0);
#define R(n, sd) (owned[n_owned++] = bench_rand((n), (sd), &st))
        m.embed = R(8192 * D, 0.05f);
        m.norm_final = R(D, 1.0f);
        for (int l = 0; l < 6; l++) {
            kvs_llama_layer *y = &layers[l];
            y->attn_norm = R(D, 1.0f);
            y->wq = R(Hd * D, 0.05f);
            y->wk = R(KVd * D, 0.05f);
            y->wv = R(KVd * D, 0.05f);
            y->wo = R(D * Hd, 0.05f);
            y->ffn_norm = R(D, 1.0f);
            y->w_gate = R(F * D, 0.05f);
            y->w_up = R(F * D, 0.05f);
            y->w_down = R(D * F, 0.05f);
        }
#undef R
        for (int i = 0; i < n_owned; i++)
            if (!owned[i]) { fprintf(stderr, "kvsim bench decode: out of memory\n"); return 1; }
        m.rope_inv_freq = inv;
    }
    m.layers = layers;
    const kvs_llama_config *c = &m.c;
    const int nkv = c->n_layers * c->n_kv_heads, d = c->head_dim;
    float **kc = calloc((size_t)nkv, sizeof *kc), **vc = calloc((size_t)nkv, sizeof *vc);
    int ok = kc && vc;
    for (int i = 0; ok && i < nkv; i++) {
        kc[i] = bench_rand((size_t)ctx * (size_t)d, 1.0f, &st);
        vc[i] = bench_rand((size_t)ctx * (size_t)d, 1.0f, &st);
        ok = kc[i] && vc[i];
    }
    kvs_llama_state *s = kvs_llama_state_new(c);
    float *logits = malloc(sizeof(float) * (size_t)c->vocab);
    /* bytes one token reads: weights (the head once when tied) + K/V at ~ctx */
    double wbytes = 4.0 * ((double)c->vocab * c->d_model * (m.lm_head ? 2 : 1) + c->d_model +
                           c->n_layers * ((double)c->d_model * (2 + 2.0 * c->n_heads * d + 2.0 * c->n_kv_heads * d) +
                                          3.0 * c->d_model * c->ffn_hidden));
    double kvbytes = 2.0 * 4.0 * (double)nkv * (double)ctx * d;
    size_t cbytes = (size_t)(wbytes + kvbytes);
    char *src = malloc(cbytes), *dst = malloc(cbytes);
    if (!ok || !s || !logits || !src || !dst) {
        fprintf(stderr, "kvsim bench decode: out of memory\n");
        return 1;
    }
    memset(src, 1, cbytes);
    memset(dst, 0, cbytes);
    kvs_llama_cache cache = {.k = kc, .v = vc, .n_kv_heads = c->n_kv_heads, .head_dim = d,
                             .g = c->n_heads / c->n_kv_heads, .cap = (int)ctx, .scale = c->softmax_scale};
    /* warm-up, then the timed tokens at positions ctx-ntok .. ctx-1 */
    kvs_llama_forward(&m, s, 1, (int)(ctx - ntok - 1), ctx - ntok - 1, kvs_llama_cache_attn, &cache, logits);
    double c0 = kvs_cpu_now_s();
    double t0 = kvs_now_s();
    for (long i = 0; i < ntok; i++) {
        long p = ctx - ntok + i;
        kvs_llama_forward(&m, s, (int)(i % c->vocab), (int)p, p, kvs_llama_cache_attn, &cache, logits);
    }
    double t_tok = (kvs_now_s() - t0) / (double)ntok;
    double cpu_tok = (kvs_cpu_now_s() - c0) / (double)ntok;
    int reps = 5;
    double t1 = kvs_now_s();
    for (int r = 0; r < reps; r++) {
        memcpy(dst, src, cbytes);
        src[(size_t)r * 4096 % cbytes] ^= dst[cbytes - 1 - (size_t)r];   /* keep the copies live */
    }
    double t_copy = (kvs_now_s() - t1) / reps;
    const char *thr = getenv("OPENBLAS_NUM_THREADS");
    printf("kvsim bench decode: %s, %d layers, d_model %d, %d/%d heads, head_dim %d, vocab %d\n",
           wpath ? wpath : "random weights, pysrc-llama-12m geometry", c->n_layers, c->d_model, c->n_heads,
           c->n_kv_heads, d, c->vocab);
    printf("  context %ld, %ld tokens timed, full attention, OPENBLAS_NUM_THREADS=%s\n", ctx, ntok, thr ? thr : "(unset)");
    printf("  bytes read per token: weights %.1f MB + K/V %.1f MB\n", wbytes / 1e6, kvbytes / 1e6);
    printf("  forward: %.2f ms/token = %.1f tokens/s (%.2f GB/s of those bytes)\n", 1e3 * t_tok, 1.0 / t_tok,
           (double)cbytes / t_tok / 1e9);
    printf("  CPU time %.2f ms/token summed over threads = %.1f tokens/s of CPU time (wall time above\n"
           "  inflates when other processes share the cores; CPU time does much less)\n", 1e3 * cpu_tok,
           1.0 / cpu_tok);
    printf("  reference, copy of the same bytes (STREAM-like): %.2f ms = %.1f tokens/s bound (%.2f GB/s)\n",
           1e3 * t_copy, 1.0 / t_copy, 2.0 * (double)cbytes / t_copy / 1e9);
    printf("  forward / bound: %.2f; goal >= 50 tokens/s at 8k on 2 cores: %s by wall time, %s by CPU time\n",
           t_copy / t_tok, 1.0 / t_tok >= 50 ? "met" : "NOT met", 1.0 / cpu_tok >= 50 ? "met" : "NOT met");
    for (int i = 0; i < nkv; i++) { free(kc[i]); free(vc[i]); }
    free(kc); free(vc);
    for (int i = 0; i < n_owned; i++) free(owned[i]);
    free(owned); free(inv); free(layers); free(src); free(dst); free(logits);
    kvs_llama_state_free(s);
    kvs_weights_close(W);
    return 0;
}
