// kvsim_gpu.cu — `kvsim-gpu`: runs the CUDA kernels of models/cuda on the
// GPU, checks them against double-precision CPU references, and measures
// decode-step latency for the fidelity study.  Self-contained: needs only the
// CUDA runtime (the device machine has no HDF5/SQLite); reads raw exports made
// by sim/gpu/export_trace.py and writes CSV that `kvsim-gpu-host import` puts
// into the results database.
//
//   kvsim-gpu probe                    exit 0 when a CUDA GPU is usable, else 77
//   kvsim-gpu selftest                 random inputs, every kernel vs reference
//   kvsim-gpu check DIR [DIR...]       exported trace layers vs references/o_ref
//   kvsim-gpu bench OUT.csv            kernel speed (HBM bandwidth, Top-K, completion)
//   kvsim-gpu bench OUT.csv TORCH.csv  = attnbench: the decode kernel beside PyTorch SDPA
//   kvsim-gpu attnbench OUT.csv [TORCH.csv]   (gpu_e2e.h)
//   kvsim-gpu e2e OUT.csv [quick]      whole decode steps in one CUDA graph (gpu_e2e.h)
//   kvsim-gpu compbench OUT.csv [quick] selection chains and completion estimate alone (gpu_e2e.h)
//   kvsim-gpu fidelity OUT.csv [quick] measured step latency of the configurations
//
// Exit: 0 ok, 1 failure (a check out of tolerance, a CUDA error, bad input),
// 2 usage, 77 no GPU (so CTest reports the test as skipped).
#include "kvs_cuda.h"
#include "gpu_ref.h"
#include "gpu_e2e.h"
#include <algorithm>
#include <iterator>
#include <cuda_fp16.h>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#define CK(x)                                                                                        \
    do {                                                                                             \
        int e_ = (int)(x);                                                                           \
        if (e_) {                                                                                    \
            fprintf(stderr, "kvsim-gpu: %s:%d: %s: %s\n", __FILE__, __LINE__, #x,                    \
                    cudaGetErrorString((cudaError_t)e_));                                            \
            return -1;                                                                               \
        }                                                                                            \
    } while (0)

// ---- small utilities -------------------------------------------------------------
static uint64_t rng_next(uint64_t *s)
{
    // splitmix64
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static double rng_unif(uint64_t *s) { return (rng_next(s) >> 11) * (1.0 / 9007199254740992.0); }
static double rng_norm(uint64_t *s)
{
    double u1 = rng_unif(s), u2 = rng_unif(s);
    if (u1 < 1e-300) u1 = 1e-300;
    return std::sqrt(-2 * std::log(u1)) * std::cos(6.283185307179586 * u2);
}
double kvs_gpu_now_us()
{
    return std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
double kvs_gpu_quantile(std::vector<double> v, double qq)
{
    if (v.empty()) return NAN;
    std::sort(v.begin(), v.end());
    double pos = qq * (v.size() - 1);
    size_t i = (size_t)pos;
    double f = pos - i;
    return i + 1 < v.size() ? v[i] * (1 - f) + v[i + 1] * f : v[i];
}

// Device buffer owned by RAII (frees on scope exit).
struct DBuf {
    void *p = nullptr;
    size_t n = 0;
    int alloc(size_t bytes)
    {
        free_();
        n = bytes;
        return (int)cudaMalloc(&p, bytes ? bytes : 16);
    }
    void free_()
    {
        if (p) cudaFree(p);
        p = nullptr;
    }
    ~DBuf() { free_(); }
    template <class T> T *as() const { return (T *)p; }
};
struct HBuf {   // pinned, mapped host memory
    void *p = nullptr;
    int alloc(size_t bytes)
    {
        free_();
        return (int)cudaHostAlloc(&p, bytes ? bytes : 16, cudaHostAllocMapped | cudaHostAllocPortable);
    }
    void free_()
    {
        if (p) cudaFreeHost(p);
        p = nullptr;
    }
    ~HBuf() { free_(); }
    template <class T> T *as() const { return (T *)p; }
};

template <class T> static int upload(DBuf &b, const std::vector<T> &v)
{
    CK(b.alloc(v.size() * sizeof(T)));
    if (!v.empty()) CK(cudaMemcpy(b.p, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice));
    return 0;
}

// Page-block layout of one KV head's [n][d] float16 K and V into blocks of P
// rows (K then V), npages = ceil(n/P); padding rows are zero.
static void to_blocks(const uint16_t *k, const uint16_t *v, int n, int d, int P, uint16_t *out)
{
    int np = (n + P - 1) / P;
    for (int pg = 0; pg < np; pg++) {
        uint16_t *b = out + (size_t)pg * 2 * P * d;
        for (int r = 0; r < P; r++) {
            int pos = pg * P + r;
            for (int i = 0; i < d; i++) {
                b[(size_t)r * d + i] = pos < n ? k[(size_t)pos * d + i] : 0;
                b[(size_t)(P + r) * d + i] = pos < n ? v[(size_t)pos * d + i] : 0;
            }
        }
    }
}

// Entries for sorted positions: runs inside one page become one entry.
// base = device address of the head's first block.
static void entries_for(const std::vector<int> &pos, uint64_t base, int P, int d, std::vector<kvs_cu_entry> &out)
{
    size_t blk = (size_t)4 * P * d;
    size_t i = 0;
    while (i < pos.size()) {
        int pg = pos[i] / P, r0 = pos[i] % P;
        size_t j = i + 1;
        while (j < pos.size() && pos[j] == pos[j - 1] + 1 && pos[j] / P == pg) j++;
        kvs_cu_entry e;
        e.addr = base + (uint64_t)pg * blk;
        e.start = r0;
        e.count = (int)(j - i);
        out.push_back(e);
        i = j;
    }
}

static double rel_l2(const float *a, const double *b, int n)
{
    double num = 0, den = 0;
    for (int i = 0; i < n; i++) {
        double t = (double)a[i] - b[i];
        if (!std::isfinite(a[i])) return INFINITY;
        num += t * t;
        den += b[i] * b[i];
    }
    return std::sqrt(num / (den > 0 ? den : 1e-300));
}

static int gpu_present(void)
{
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n == 0) {
        printf("SKIP kvsim-gpu: no CUDA GPU (%s)\n", e != cudaSuccess ? cudaGetErrorString(e) : "0 devices");
        return 0;
    }
    return 1;
}

// ---- one step of one layer: every method on the GPU vs the references ----------
struct CaseIn {
    int hkv, G, d, n_ctx, T0, p;   // n_ctx = rows stored per head; p = query position
    float scale;
    const uint16_t *k, *v;        // [hkv][n_ctx][d]
    const float *q;               // [hkv][G][d]
    const float *oref;            // [hkv][G][d] or NULL
    long budgets[2];
    int sinks, window, R;
    uint64_t seed;
};
struct CaseErr {
    double full = 0, oref = 0, window = 0, topk = 0, completion = 0, share = 0;
    long sel_diff = 0, sel_total = 0, sel_bad = 0;
};

// GPU attention over per-head position lists (sorted), with an optional
// completion estimate; o [hkv][G][d].
static int gpu_attend(const CaseIn &c, DBuf &blocks, int P, const std::vector<std::vector<int>> &pos,
                      const std::vector<std::vector<int>> *sub, const kvs_cu_est_args *est_tmpl, DBuf &qd,
                      std::vector<float> &o, std::vector<float> *share)
{
    size_t blk = (size_t)4 * P * c.d;
    int np = (c.n_ctx + P - 1) / P;
    std::vector<kvs_cu_entry> ent, sent;
    std::vector<int32_t> off(1, 0), soff(1, 0);
    int maxe = 1, maxs = 1;
    for (int h = 0; h < c.hkv; h++) {
        uint64_t base = (uint64_t)blocks.p + (uint64_t)h * np * blk;
        entries_for(pos[h], base, P, c.d, ent);
        maxe = std::max(maxe, (int)ent.size() - off.back());
        off.push_back((int32_t)ent.size());
        if (sub) {
            entries_for((*sub)[h], base, P, c.d, sent);
            maxs = std::max(maxs, (int)sent.size() - soff.back());
            soff.push_back((int32_t)sent.size());
        }
    }
    kvs_cu_attn_shape s = {1, c.hkv, c.G, c.d, P, c.scale, std::min(maxe, 16)};
    DBuf de, doff, dse, dsoff, part, dout, dest, dmass;
    if (upload(de, ent) || upload(doff, off)) return -1;
    CK(part.alloc(kvs_cu_part_floats(&s) * 4));
    CK(dout.alloc((size_t)c.hkv * c.G * c.d * 4));
    CK(dmass.alloc((size_t)c.hkv * c.G * 4));
    // poison the output
    CK(cudaMemset(dout.p, 0xff, dout.n));
    kvs_cu_est_args e;
    if (sub) {
        if (upload(dse, sent) || upload(dsoff, soff)) return -1;
        e = *est_tmpl;
        e.sub = dse.as<kvs_cu_entry>();
        e.sub_off = dsoff.as<int32_t>();
        e.nchunk = kvs_cu_est_nchunk(maxs, P);
        CK(dest.alloc(kvs_cu_est_floats(&s, &e) * 4));
        CK(kvs_cu_completion_est(&s, &e, qd.as<float>(), dest.as<float>(), 0));
    }
    CK(kvs_cu_attn_partial(&s, qd.as<float>(), de.as<kvs_cu_entry>(), doff.as<int32_t>(), part.as<float>(), 0));
    CK(kvs_cu_attn_combine(&s, part.as<float>(), sub ? dest.as<float>() : nullptr, sub ? e.nchunk : 0,
                           dout.as<float>(), nullptr, dmass.as<float>(), 0));
    CK(cudaDeviceSynchronize());
    o.resize((size_t)c.hkv * c.G * c.d);
    CK(cudaMemcpy(o.data(), dout.p, o.size() * 4, cudaMemcpyDeviceToHost));
    if (share) {
        share->resize((size_t)c.hkv * c.G);
        CK(cudaMemcpy(share->data(), dmass.p, share->size() * 4, cudaMemcpyDeviceToHost));
    }
    return 0;
}

static int run_case(const CaseIn &c, CaseErr &err)
{
    const int d = c.d, G = c.G, P = 16;
    const int np = (c.n_ctx + P - 1) / P;
    std::vector<uint16_t> hb((size_t)c.hkv * np * 2 * P * d);
    for (int h = 0; h < c.hkv; h++)
        to_blocks(c.k + (size_t)h * c.n_ctx * d, c.v + (size_t)h * c.n_ctx * d, c.n_ctx, d, P,
                  hb.data() + (size_t)h * np * 2 * P * d);
    DBuf blocks, qd, kd;
    if (upload(blocks, hb)) return -1;
    std::vector<float> qv(c.q, c.q + (size_t)c.hkv * G * d);
    if (upload(qd, qv)) return -1;
    std::vector<uint16_t> kv(c.k, c.k + (size_t)c.hkv * c.n_ctx * d);
    if (upload(kd, kv)) return -1;
    std::vector<double> ref((size_t)G * d);
    std::vector<float> o;

    // full
    std::vector<std::vector<int>> pos(c.hkv);
    for (int h = 0; h < c.hkv; h++)
        for (int j = 0; j <= c.p; j++) pos[h].push_back(j);
    if (gpu_attend(c, blocks, P, pos, nullptr, nullptr, qd, o, nullptr)) return -1;
    for (int h = 0; h < c.hkv; h++) {
        kvs_ref_attn(c.k + (size_t)h * c.n_ctx * d, c.v + (size_t)h * c.n_ctx * d, d, G, c.q + (size_t)h * G * d,
                     c.scale, pos[h], ref.data());
        for (int g = 0; g < G; g++) {
            err.full = std::max(err.full, rel_l2(&o[((size_t)h * G + g) * d], &ref[(size_t)g * d], d));
            if (c.oref) {
                std::vector<double> od(c.oref + ((size_t)h * G + g) * d, c.oref + ((size_t)h * G + g + 1) * d);
                err.oref = std::max(err.oref, rel_l2(&o[((size_t)h * G + g) * d], od.data(), d));
            }
        }
    }

    // window (anchors only, budget sinks + window)
    int ns, nw;
    kvs_ref_anchors(c.p, c.sinks + c.window, c.sinks, c.window, &ns, &nw);
    for (int h = 0; h < c.hkv; h++) {
        pos[h].clear();
        for (int j = 0; j < ns; j++) pos[h].push_back(j);
        for (int j = c.p + 1 - nw; j <= c.p; j++) pos[h].push_back(j);
    }
    if (gpu_attend(c, blocks, P, pos, nullptr, nullptr, qd, o, nullptr)) return -1;
    for (int h = 0; h < c.hkv; h++) {
        kvs_ref_attn(c.k + (size_t)h * c.n_ctx * d, c.v + (size_t)h * c.n_ctx * d, d, G, c.q + (size_t)h * G * d,
                     c.scale, pos[h], ref.data());
        for (int g = 0; g < G; g++)
            err.window = std::max(err.window, rel_l2(&o[((size_t)h * G + g) * d], &ref[(size_t)g * d], d));
    }

    // FAVOR+ features and the prefill summary for completion (same w for all heads)
    const int R = c.R;
    uint64_t rs = c.seed;
    std::vector<double> w((size_t)R * d);
    for (auto &x : w) x = rng_norm(&rs);
    std::vector<float> wt((size_t)c.hkv * d * R), Sf((size_t)c.hkv * R * d), uf((size_t)c.hkv * R), ckf(c.hkv);
    std::vector<std::vector<double>> S(c.hkv), U(c.hkv);
    std::vector<double> ck(c.hkv);
    const int sum_lo = std::min(c.sinks, c.T0), sum_hi = std::max(sum_lo, c.T0 - c.window);
    for (int h = 0; h < c.hkv; h++) {
        kvs_ref_summary(c.k + (size_t)h * c.n_ctx * d, c.v + (size_t)h * c.n_ctx * d, d, w.data(), R, c.scale,
                        sum_lo, sum_hi, S[h], U[h], &ck[h]);
        for (int i = 0; i < d; i++)
            for (int r = 0; r < R; r++) wt[((size_t)h * d + i) * R + r] = (float)w[(size_t)r * d + i];
        for (size_t i = 0; i < S[h].size(); i++) Sf[(size_t)h * R * d + i] = (float)S[h][i];
        for (int r = 0; r < R; r++) uf[(size_t)h * R + r] = (float)U[h][r];
        ckf[h] = (float)ck[h];
    }
    // the GPU gets the float32 summary: the reference uses the same rounded values
    for (int h = 0; h < c.hkv; h++) {
        for (size_t i = 0; i < S[h].size(); i++) S[h][i] = Sf[(size_t)h * R * d + i];
        for (int r = 0; r < R; r++) U[h][r] = uf[(size_t)h * R + r];
        ck[h] = ckf[h];
    }
    DBuf dwt, dS, du, dck;
    if (upload(dwt, wt) || upload(dS, Sf) || upload(du, uf) || upload(dck, ckf)) return -1;

    for (int bi = 0; bi < 2; bi++) {
        long B = c.budgets[bi];
        kvs_ref_anchors(c.p, B, c.sinks, c.window, &ns, &nw);
        int lo = ns, hi = c.p + 1 - nw;
        int kk = (int)std::max<long>(0, std::min<long>(B - ns - nw, hi - lo));
        // GPU Top-K over the mid region
        DBuf work, didx;
        CK(work.alloc(kvs_cu_topk_work_floats(1, c.hkv, G, c.p + 1) * 4));
        CK(didx.alloc((size_t)c.hkv * std::max(kk, 1) * 4));
        CK(kvs_cu_topk(1, c.hkv, G, d, c.n_ctx, c.p, c.scale, qd.as<float>(), kd.as<uint16_t>(), lo, hi, kk,
                       work.as<float>(), didx.as<int32_t>(), 0));
        CK(cudaDeviceSynchronize());
        std::vector<int32_t> gidx((size_t)c.hkv * std::max(kk, 1));
        CK(cudaMemcpy(gidx.data(), didx.p, gidx.size() * 4, cudaMemcpyDeviceToHost));
        std::vector<std::vector<int>> sub(c.hkv);
        for (int h = 0; h < c.hkv; h++) {
            const uint16_t *kh = c.k + (size_t)h * c.n_ctx * d;
            std::vector<double> score;
            kvs_ref_group_scores(kh, d, G, c.q + (size_t)h * G * d, c.scale, c.p, score);
            std::vector<int> cref = kvs_ref_topk(score, lo, hi, kk);
            std::vector<int> cg(gidx.begin() + (size_t)h * kk, gidx.begin() + (size_t)h * kk + kk);
            // selection agreement: a GPU choice that the reference did not make
            // is a failure unless its score ties the K-th score to rounding
            double kth = kk ? 1e300 : 0;
            for (int j : cref) kth = std::min(kth, score[j]);
            std::vector<int> diff;
            std::set_difference(cg.begin(), cg.end(), cref.begin(), cref.end(), std::back_inserter(diff));
            err.sel_diff += (long)diff.size();
            err.sel_total += kk;
            for (int j : diff)
                if (j < lo || j >= hi || score[j] < kth * (1 - 1e-5) - 1e-12) err.sel_bad++;
            for (size_t i = 1; i < cg.size(); i++)
                if (cg[i] <= cg[i - 1]) err.sel_bad++;   // must be ascending, distinct
            pos[h].clear();
            for (int j = 0; j < ns; j++) pos[h].push_back(j);
            for (int j : cg) pos[h].push_back(j);
            for (int j = c.p + 1 - nw; j <= c.p; j++) pos[h].push_back(j);
            for (int j : cg)
                if (j >= sum_lo && j < sum_hi) sub[h].push_back(j);
        }
        // topk: anchors + retrieved, renormalised
        if (gpu_attend(c, blocks, P, pos, nullptr, nullptr, qd, o, nullptr)) return -1;
        for (int h = 0; h < c.hkv; h++) {
            kvs_ref_attn(c.k + (size_t)h * c.n_ctx * d, c.v + (size_t)h * c.n_ctx * d, d, G,
                         c.q + (size_t)h * G * d, c.scale, pos[h], ref.data());
            for (int g = 0; g < G; g++)
                err.topk = std::max(err.topk, rel_l2(&o[((size_t)h * G + g) * d], &ref[(size_t)g * d], d));
        }
        // completion
        kvs_cu_est_args e = {};
        e.R = R;
        e.wt = dwt.as<float>();
        e.S = dS.as<float>();
        e.u = du.as<float>();
        e.ck = dck.as<float>();
        std::vector<float> share;
        if (gpu_attend(c, blocks, P, pos, &sub, &e, qd, o, &share)) return -1;
        for (int h = 0; h < c.hkv; h++) {
            std::vector<double> sh(G);
            kvs_ref_completion(c.k + (size_t)h * c.n_ctx * d, c.v + (size_t)h * c.n_ctx * d, d, G,
                               c.q + (size_t)h * G * d, c.scale, pos[h], sub[h], w.data(), R, S[h], U[h], ck[h],
                               ref.data(), sh.data());
            for (int g = 0; g < G; g++) {
                err.completion =
                    std::max(err.completion, rel_l2(&o[((size_t)h * G + g) * d], &ref[(size_t)g * d], d));
                err.share = std::max(err.share, std::fabs((double)share[(size_t)h * G + g] - sh[g]));
            }
        }
    }
    return 0;
}

static const double TOL_EXACT = 1e-4, TOL_COMPLETION = 1e-3, TOL_OREF = 2e-3;

static int report_case(const char *what, const CaseErr &e, int has_oref)
{
    int ok = e.full <= TOL_EXACT && e.window <= TOL_EXACT && e.topk <= TOL_EXACT &&
             e.completion <= TOL_COMPLETION && e.share <= TOL_COMPLETION && e.sel_bad == 0 &&
             (!has_oref || e.oref <= TOL_OREF);
    char ob[32] = "";
    if (has_oref) snprintf(ob, sizeof ob, " o_ref %.2e", e.oref);
    printf("%-34s full %.2e%s window %.2e topk %.2e completion %.2e share %.1e  select %ld/%ld differ, %ld bad  %s\n",
           what, e.full, ob,
           e.window, e.topk, e.completion, e.share, e.sel_diff, e.sel_total, e.sel_bad, ok ? "ok" : "FAIL");
    return ok ? 0 : 1;
}

// ---- selftest: random inputs --------------------------------------------------------
static int gather_selftest(void)
{
    const int n = 37, P = 16, d = 128;
    const size_t blk = (size_t)4 * P * d;
    HBuf host;
    CK(host.alloc(blk * 64));
    uint64_t s = 99;
    for (size_t i = 0; i < blk * 64 / 8; i++) host.as<uint64_t>()[i] = rng_next(&s);
    DBuf dst, dsrc, ddst;
    CK(dst.alloc(blk * n));
    CK(cudaMemset(dst.p, 0, dst.n));
    std::vector<uint64_t> src(n), dd(n);
    std::vector<int> pick(n);
    for (int i = 0; i < n; i++) {
        pick[i] = (int)(rng_next(&s) % 64);
        void *dp;
        CK(cudaHostGetDevicePointer(&dp, host.p, 0));
        src[i] = (uint64_t)dp + pick[i] * blk;
        dd[i] = (uint64_t)dst.p + i * blk;
    }
    if (upload(dsrc, src) || upload(ddst, dd)) return -1;
    CK(kvs_cu_gather(dsrc.as<uint64_t>(), ddst.as<uint64_t>(), n, blk, 0));
    CK(cudaDeviceSynchronize());
    std::vector<uint8_t> back(blk * n);
    CK(cudaMemcpy(back.data(), dst.p, back.size(), cudaMemcpyDeviceToHost));
    int bad = 0;
    for (int i = 0; i < n; i++) bad += memcmp(back.data() + i * blk, host.as<uint8_t>() + pick[i] * blk, blk) != 0;
    printf("%-34s %d/%d pages differ  %s\n", "gather (zero-copy, mapped host)", bad, n, bad ? "FAIL" : "ok");
    return bad ? 1 : 0;
}

// Paged selection (kvs_cu_topk_paged, kvs_cu_quest_pages) and token-list
// attention (kvs_cu_attn_paged_partial) against the double references.
static int paged_selftest(int d, int G, int hkv)
{
    const int n_ctx = 1531, p = 1477, P = 16, n = p + 1;
    const float scale = 1.0f / std::sqrt((float)d);
    uint64_t s = 4321 + d + G;
    std::vector<uint16_t> k((size_t)hkv * n_ctx * d), v(k.size());
    std::vector<float> q((size_t)hkv * G * d);
    for (auto &x : k) x = kvs_ref_d2h(rng_norm(&s));
    for (auto &x : v) x = kvs_ref_d2h(rng_norm(&s));
    for (auto &x : q) x = (float)(1.5 * rng_norm(&s));
    const int np = (n_ctx + P - 1) / P;
    std::vector<uint16_t> hb((size_t)hkv * np * 2 * P * d);
    for (int h = 0; h < hkv; h++)
        to_blocks(&k[(size_t)h * n_ctx * d], &v[(size_t)h * n_ctx * d], n_ctx, d, P, &hb[(size_t)h * np * 2 * P * d]);
    DBuf blocks, qd, ptab, work, tok, ntok, part, dout, meta, pages;
    if (upload(blocks, hb) || upload(qd, q)) return -1;
    std::vector<uint64_t> pt((size_t)hkv * np);
    for (int h = 0; h < hkv; h++)
        for (int i = 0; i < np; i++) pt[(size_t)h * np + i] = (uint64_t)blocks.p + ((size_t)h * np + i) * 4 * P * d;
    if (upload(ptab, pt)) return -1;
    // Top-K: anchors 4 + 64, 200 mid tokens
    const int a0 = 4, w0 = n - 64, w1 = n, kk = 200, stride = a0 + kk + 64;
    CK(work.alloc(kvs_cu_select_work_bytes(hkv, G, n)));
    CK(tok.alloc((size_t)hkv * stride * 4));
    CK(ntok.alloc((size_t)hkv * 4));
    CK(kvs_cu_topk_paged(hkv, G, d, P, ptab.as<uint64_t>(), np, p, scale, qd.as<float>(), a0, w0, kk, a0, w0, w1,
                         work.p, tok.as<int32_t>(), stride, ntok.as<int32_t>(), 0));
    CK(cudaDeviceSynchronize());
    std::vector<int32_t> gt((size_t)hkv * stride), gn(hkv);
    CK(cudaMemcpy(gt.data(), tok.p, gt.size() * 4, cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(gn.data(), ntok.p, gn.size() * 4, cudaMemcpyDeviceToHost));
    long differ = 0, total = 0;
    double aerr = 0;
    for (int h = 0; h < hkv; h++) {
        std::vector<double> sc;
        kvs_ref_group_scores(&k[(size_t)h * n_ctx * d], d, G, &q[(size_t)h * G * d], scale, p, sc);
        std::vector<int> ref = kvs_ref_topk(sc, a0, w0, kk);
        std::vector<int> want;
        for (int j = 0; j < a0; j++) want.push_back(j);
        want.insert(want.end(), ref.begin(), ref.end());
        for (int j = w0; j < w1; j++) want.push_back(j);
        if (gn[h] != stride) differ += stride;
        for (int i = 0; i < stride; i++) differ += gt[(size_t)h * stride + i] != want[i];
        total += stride;
    }
    // token-list attention over the GPU's list, vs the reference over the same positions
    kvs_cu_paged pa;
    pa.shape = {1, hkv, G, d, P, scale, 3};
    pa.ptab = ptab.as<uint64_t>();
    pa.ptab_stride = np;
    pa.tok = tok.as<int32_t>();
    pa.tok_stride = stride;
    pa.ntok = ntok.as<int32_t>();
    pa.ntok_all = 0;
    CK(part.alloc(kvs_cu_part_floats(&pa.shape) * 4));
    CK(dout.alloc((size_t)hkv * G * d * 4));
    CK(kvs_cu_attn_paged_partial(&pa, qd.as<float>(), part.as<float>(), 0));
    CK(kvs_cu_attn_combine(&pa.shape, part.as<float>(), nullptr, 0, dout.as<float>(), nullptr, nullptr, 0));
    std::vector<float> o((size_t)hkv * G * d);
    CK(cudaMemcpy(o.data(), dout.p, o.size() * 4, cudaMemcpyDeviceToHost));
    std::vector<double> ref((size_t)G * d);
    for (int h = 0; h < hkv; h++) {
        std::vector<int> idx(gt.begin() + (size_t)h * stride, gt.begin() + (size_t)(h + 1) * stride);
        kvs_ref_attn(&k[(size_t)h * n_ctx * d], &v[(size_t)h * n_ctx * d], d, G, &q[(size_t)h * G * d], scale, idx,
                     ref.data());
        for (int g = 0; g < G; g++) aerr = std::max(aerr, rel_l2(&o[((size_t)h * G + g) * d], &ref[(size_t)g * d], d));
    }
    // Quest pages: bounds from the fp16 min/max of each page, softmax over pages, group sum
    const int npg = (n + P - 1) / P, kp = 12, plo = 1, phi = w0 / P;
    CK(meta.alloc((size_t)hkv * npg * 2 * d * 2));
    CK(pages.alloc((size_t)hkv * kp * 4));
    CK(kvs_cu_quest_meta(hkv, d, P, npg, ptab.as<uint64_t>(), np, meta.as<uint16_t>(), 0));
    CK(kvs_cu_quest_pages(hkv, G, d, npg, meta.as<uint16_t>(), scale, qd.as<float>(), plo, phi, kp, work.p,
                          pages.as<int32_t>(), kp, 0));
    CK(cudaDeviceSynchronize());
    std::vector<int32_t> gp((size_t)hkv * kp);
    CK(cudaMemcpy(gp.data(), pages.p, gp.size() * 4, cudaMemcpyDeviceToHost));
    long qdiff = 0;
    for (int h = 0; h < hkv; h++) {
        std::vector<double> score(npg, 0.0);
        for (int g = 0; g < G; g++) {
            std::vector<double> b(npg);
            double M = -1e300;
            for (int pg = 0; pg < npg; pg++) {
                double a = 0;
                for (int i = 0; i < d; i++) {
                    double mn = 1e300, mx = -1e300;
                    for (int r = 0; r < P; r++) {
                        const int pos = pg * P + r;
                        const double x = pos < n_ctx ? kvs_ref_h2d(k[((size_t)h * n_ctx + pos) * d + i]) : 0.0;
                        mn = std::min(mn, x);
                        mx = std::max(mx, x);
                    }
                    const double qq = q[((size_t)h * G + g) * d + i];
                    a += std::max(qq * mn, qq * mx);
                }
                b[pg] = a * scale;
                M = std::max(M, b[pg]);
            }
            double L = 0;
            for (int pg = 0; pg < npg; pg++) L += std::exp(b[pg] - M);
            for (int pg = 0; pg < npg; pg++) score[pg] += std::exp(b[pg] - M) / L;
        }
        std::vector<int> ref_p = kvs_ref_topk(score, plo, phi, kp);
        for (int i = 0; i < kp; i++) qdiff += gp[(size_t)h * kp + i] != ref_p[i];
    }
    const bool ok = differ == 0 && aerr < 1e-4 && qdiff == 0;
    printf("paged d=%d G=%d hkv=%d  topk_paged %ld/%ld differ, token-list attention %.2e, quest pages %ld/%d differ  %s\n",
           d, G, hkv, differ, total, aerr, qdiff, hkv * kp, ok ? "ok" : "FAIL");
    return ok ? 0 : 1;
}

static int cmd_selftest(void)
{
    if (!gpu_present()) return 77;
    int fails = 0;
    const int shapes[][3] = {{64, 3, 2}, {128, 4, 2}, {64, 1, 1}, {128, 8, 1}};
    for (int vi = 0; vi < 5 * 4; vi++) {   // variants 0..4 (4 = tensor-core kernel)
        const int *sh = shapes[vi % 4];
        if (kvs_cu_attn_set_variant(vi / 4)) return 1;
        CaseIn c = {};
        c.d = sh[0];
        c.G = sh[1];
        c.hkv = sh[2];
        c.n_ctx = 1531;
        c.T0 = 1400;
        c.p = 1477;
        c.scale = 1.0f / std::sqrt((float)c.d);
        c.sinks = 4;
        c.window = 64;
        c.R = c.d;
        c.seed = 7 + c.d + c.G;
        c.budgets[0] = 40;    // below sinks + window: anchors cut to the budget
        c.budgets[1] = 200;
        uint64_t s = 1234 + c.G;
        std::vector<uint16_t> k((size_t)c.hkv * c.n_ctx * c.d), v(k.size());
        std::vector<float> q((size_t)c.hkv * c.G * c.d);
        for (auto &x : k) x = kvs_ref_d2h(rng_norm(&s));
        for (auto &x : v) x = kvs_ref_d2h(rng_norm(&s));
        for (auto &x : q) x = (float)(1.5 * rng_norm(&s));
        c.k = k.data();
        c.v = v.data();
        c.q = q.data();
        CaseErr e;
        if (run_case(c, e)) return 1;
        char what[64];
        snprintf(what, sizeof what, "random d=%d G=%d hkv=%d variant %d", c.d, c.G, c.hkv, vi / 4);
        fails += report_case(what, e, 0);
    }
    int g = gather_selftest();
    if (g < 0) return 1;
    fails += g;
    for (const int *sh : shapes) {
        g = paged_selftest(sh[0], sh[1], sh[2]);
        if (g < 0) return 1;
        fails += g;
    }
    printf("selftest: %s\n", fails ? "FAILED" : "all ok");
    return fails ? 1 : 0;
}

// ---- check: exported trace layers -----------------------------------------------------
static int read_file(const std::string &path, void *buf, size_t bytes)
{
    FILE *f = fopen(path.c_str(), "rb");
    if (!f) {
        fprintf(stderr, "kvsim-gpu: %s: cannot open\n", path.c_str());
        return -1;
    }
    size_t got = fread(buf, 1, bytes, f);
    int extra = fgetc(f);
    fclose(f);
    if (got != bytes || extra != EOF) {
        fprintf(stderr, "kvsim-gpu: %s: expected %zu bytes\n", path.c_str(), bytes);
        return -1;
    }
    return 0;
}

static int cmd_check(int argc, char **argv, double budget_fracs0, double budget_fracs1)
{
    if (!gpu_present()) return 77;
    int fails = 0;
    for (int a = 0; a < argc; a++) {
        std::string dir = argv[a];
        FILE *f = fopen((dir + "/meta.txt").c_str(), "r");
        if (!f) {
            fprintf(stderr, "kvsim-gpu: %s/meta.txt: cannot open\n", dir.c_str());
            return 1;
        }
        char key[64], val[256];
        int h = 0, hkv = 0, d = 0, T0 = 0, S = 0, has_oref = 0;
        float scale = 0;
        std::string trace;
        std::vector<int> layers;
        while (fscanf(f, "%63s %255s", key, val) == 2) {
            std::string k = key;
            if (k == "trace") trace = val;
            else if (k == "h") h = atoi(val);
            else if (k == "hkv") hkv = atoi(val);
            else if (k == "d") d = atoi(val);
            else if (k == "T0") T0 = atoi(val);
            else if (k == "S") S = atoi(val);
            else if (k == "scale") scale = (float)atof(val);
            else if (k == "oref") has_oref = atoi(val);
            else if (k == "layer") layers.push_back(atoi(val));
        }
        fclose(f);
        if (h <= 0 || hkv <= 0 || h % hkv || (d != 64 && d != 128) || T0 <= 0 || S <= 0 || !(scale > 0)) {
            fprintf(stderr, "kvsim-gpu: %s/meta.txt: bad or unsupported geometry\n", dir.c_str());
            return 1;
        }
        const int G = h / hkv, n = T0 + S;
        for (int L : layers) {
            std::vector<uint16_t> k((size_t)hkv * n * d), v(k.size());
            std::vector<float> q((size_t)S * h * d), o((size_t)S * h * d);
            std::string pre = dir + "/L" + std::to_string(L) + "_";
            if (read_file(pre + "k.f16", k.data(), k.size() * 2) || read_file(pre + "v.f16", v.data(), v.size() * 2) ||
                read_file(pre + "q.f32", q.data(), q.size() * 4) || read_file(pre + "oref.f32", o.data(), o.size() * 4))
                return 1;
            for (int step : {0, S / 2, S - 1}) {
                CaseIn c = {};
                c.hkv = hkv;
                c.G = G;
                c.d = d;
                c.n_ctx = n;
                c.T0 = T0;
                c.p = T0 + step;
                c.scale = scale;
                c.k = k.data();
                c.v = v.data();
                c.q = q.data() + (size_t)step * h * d;   // [h][d] = [hkv][G][d]
                c.oref = has_oref ? o.data() + (size_t)step * h * d : nullptr;
                c.budgets[0] = (long)std::ceil(budget_fracs0 * n);
                c.budgets[1] = (long)std::ceil(budget_fracs1 * n);
                c.sinks = 4;
                c.window = 64;
                c.R = d;
                c.seed = 1 + L;
                CaseErr e;
                if (run_case(c, e)) return 1;
                char what[96];
                snprintf(what, sizeof what, "%s L%d step %d", trace.c_str(), L, step);
                fails += report_case(what, e, has_oref);
            }
        }
    }
    printf("check: %s\n", fails ? "FAILED" : "all ok");
    return fails ? 1 : 0;
}

// ---- synthetic Llama-shaped layer -----------------------------------------------------
__global__ void init_blocks_kernel(uint16_t *out, int hkv, int n, int d, int P, uint64_t seed, int nseq)
{
    const int np = (n + P - 1) / P;
    const size_t total = (size_t)nseq * hkv * np * 2 * P * d;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
        size_t t = i;
        int dim = (int)(t % d); t /= d;
        int r = (int)(t % (2 * P)); t /= 2 * P;
        int pg = (int)(t % np); t /= np;
        int pos = pg * P + (r % P);
        uint64_t z = seed ^ (t * 0x9e3779b97f4a7c15ull) ^ ((uint64_t)pos << 20) ^ ((uint64_t)dim << 1) ^ (r >= P);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        z ^= z >> 31;
        float x = pos < n ? ((z >> 40) * (1.0f / 16777216.0f) * 2.f - 1.f) : 0.f;
        __half hx = __float2half(x);
        out[i] = *reinterpret_cast<uint16_t *>(&hx);
    }
}

static int init_blocks(DBuf &b, int nseq, int hkv, int n, int d, int P, uint64_t seed)
{
    init_blocks_kernel<<<2048, 256>>>(b.as<uint16_t>(), hkv, n, d, P, seed, nseq);
    CK(cudaGetLastError());
    CK(cudaDeviceSynchronize());
    return 0;
}

// nsplit for a target number of blocks
static int pick_nsplit(int nheads, int maxe, int target)
{
    int s = (target + nheads - 1) / nheads;
    return std::max(1, std::min(s, maxe));
}

__global__ void empty_kernel(void) {}

// ---- bench: kernel speed ------------------------------------------------------------
static int cmd_bench(const char *out_csv)
{
    if (!gpu_present()) return 77;
    cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, 0));
    FILE *csv = fopen(out_csv, "w");
    if (!csv) {
        fprintf(stderr, "kvsim-gpu: %s: cannot write\n", out_csv);
        return 1;
    }
    fprintf(csv, "what,ctx,batch,page,nsplit,tokens,bytes,us,GBps,pct_of_copy\n");
    const int hkv = 8, G = 4, d = 128;
    const float scale = 1.0f / std::sqrt(128.f);
    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    // device-to-device copy ceiling (read + write counted)
    double copy_GBps;
    {
        DBuf a, b;
        size_t bytes = (size_t)1 << 30;
        CK(a.alloc(bytes));
        CK(b.alloc(bytes));
        CK(cudaMemset(a.p, 1, bytes));
        std::vector<double> ts;
        for (int r = 0; r < 12; r++) {
            CK(cudaEventRecord(e0));
            CK(cudaMemcpyAsync(b.p, a.p, bytes, cudaMemcpyDeviceToDevice));
            CK(cudaEventRecord(e1));
            CK(cudaEventSynchronize(e1));
            float ms;
            CK(cudaEventElapsedTime(&ms, e0, e1));
            if (r >= 2) ts.push_back(ms * 1e3);
        }
        double us = kvs_gpu_quantile(ts, 0.5);
        copy_GBps = 2.0 * bytes / us / 1e3;
        fprintf(csv, "d2d_copy,0,0,0,0,0,%zu,%.2f,%.1f,100\n", 2 * bytes, us, copy_GBps);
        printf("device %s, %d SMs; d2d copy %.0f GB/s (read+write)\n", prop.name, prop.multiProcessorCount, copy_GBps);
    }
    // calibration microbenchmarks for the timing model (same run, same machine)
    {
        std::vector<double> ts;
        for (int r = 0; r < 53; r++) {
            double t0 = kvs_gpu_now_us();
            empty_kernel<<<1, 32>>>();
            CK(cudaDeviceSynchronize());
            if (r >= 3) ts.push_back(kvs_gpu_now_us() - t0);
        }
        double one = kvs_gpu_quantile(ts, 0.5);
        ts.clear();
        for (int r = 0; r < 53; r++) {
            double t0 = kvs_gpu_now_us();
            empty_kernel<<<1, 32>>>();
            empty_kernel<<<1, 32>>>();
            empty_kernel<<<1, 32>>>();
            CK(cudaDeviceSynchronize());
            if (r >= 3) ts.push_back(kvs_gpu_now_us() - t0);
        }
        double three = kvs_gpu_quantile(ts, 0.5);
        printf("calib launch+sync %.2f us; 3 launches+sync %.2f us\n", one, three);
        fprintf(csv, "calib_launch_sync,0,0,0,0,0,0,%.2f,0,0\n", one);
        fprintf(csv, "calib_launch3_sync,0,0,0,0,0,0,%.2f,0,0\n", three);
        // host-thread gather of random 32 KiB pages from a pinned pool into a
        // pinned staging buffer (the host_staged mechanism's CPU part)
        HBuf pool, stage;
        const size_t pool_bytes = (size_t)512 << 20, pg = 32768;
        CK(pool.alloc(pool_bytes));
        CK(stage.alloc((size_t)32 << 20));
        memset(pool.p, 1, pool_bytes);
        uint64_t rs = 9;
        for (size_t tot : {(size_t)2 << 20, (size_t)8 << 20, (size_t)21 << 20}) {
            const size_t n = tot / pg;
            std::vector<size_t> src(n);
            ts.clear();
            for (int r = 0; r < 13; r++) {
                for (auto &x : src) x = (rng_next(&rs) % (pool_bytes / pg)) * pg;
                double t0 = kvs_gpu_now_us();
                for (size_t i = 0; i < n; i++) memcpy(stage.as<char>() + i * pg, pool.as<char>() + src[i], pg);
                if (r >= 3) ts.push_back(kvs_gpu_now_us() - t0);
            }
            double us = kvs_gpu_quantile(ts, 0.5);
            printf("calib host gather %zu MiB: %.1f us = %.2f GB/s\n", tot >> 20, us, tot / us / 1e3);
            fprintf(csv, "calib_host_gather,0,0,%zu,0,0,%zu,%.2f,%.2f,0\n", pg, tot, us, tot / us / 1e3);
        }
    }
    DBuf cache, qd, part, dout, de, doff;
    const size_t max_bytes = (size_t)4 * hkv * 131072 * 512;   // 2 GiB
    CK(cache.alloc(max_bytes));
    std::vector<float> q((size_t)4 * hkv * G * d);
    uint64_t s = 5;
    for (auto &x : q) x = (float)rng_norm(&s);
    if (upload(qd, q)) return 1;
    struct Cfg { int ctx, batch, P; };
    const Cfg cfgs[] = {{32768, 1, 16}, {32768, 8, 16}, {65536, 4, 16}, {131072, 1, 16}, {131072, 4, 16},
                        {131072, 1, 256}, {131072, 4, 64}, {131072, 4, 256}};
    printf("%-8s %-5s %-4s %-6s %10s %9s %7s\n", "ctx", "batch", "P", "nsplit", "us", "GB/s", "%copy");
    double best_big = 0, var_sum[5] = {0, 0, 0, 0, 0};
    int best_variant = 0;
    const char *vname[5] = {"direct8", "direct4", "pipelined", "direct8nocap", "tensorcore"};
    for (const Cfg &c : cfgs) {
        const int np = c.ctx / c.P;
        const size_t blk = (size_t)4 * c.P * d;
        if (init_blocks(cache, c.batch, hkv, c.ctx, d, c.P, 11)) return 1;
        std::vector<kvs_cu_entry> ent;
        std::vector<int32_t> off(1, 0);
        for (int sq = 0; sq < c.batch; sq++)
            for (int h = 0; h < hkv; h++) {
                uint64_t base = (uint64_t)cache.p + ((uint64_t)sq * hkv + h) * np * blk;
                for (int pg = 0; pg < np; pg++) ent.push_back({base + pg * blk, 0, c.P});
                off.push_back((int32_t)ent.size());
            }
        if (upload(de, ent) || upload(doff, off)) return 1;
        const double bytes = (double)c.batch * hkv * c.ctx * 2 * d * 2;
        for (int vi = 0; vi < 15; vi++) {
            const int variant = vi / 3, target = 528 << (vi % 3);
            CK(kvs_cu_attn_set_variant(variant));
            auto partial = kvs_cu_attn_partial;
            kvs_cu_attn_shape sh = {c.batch, hkv, G, d, c.P, scale, pick_nsplit(c.batch * hkv, np, target)};
            CK(part.alloc(kvs_cu_part_floats(&sh) * 4));
            CK(dout.alloc((size_t)c.batch * hkv * G * d * 4));
            std::vector<double> ts;
            for (int r = 0; r < 23; r++) {
                CK(cudaEventRecord(e0));
                CK(partial(&sh, qd.as<float>(), de.as<kvs_cu_entry>(), doff.as<int32_t>(), part.as<float>(), 0));
                CK(kvs_cu_attn_combine(&sh, part.as<float>(), nullptr, 0, dout.as<float>(), nullptr, nullptr, 0));
                CK(cudaEventRecord(e1));
                CK(cudaEventSynchronize(e1));
                float ms;
                CK(cudaEventElapsedTime(&ms, e0, e1));
                if (r >= 3) ts.push_back(ms * 1e3);
            }
            double us = kvs_gpu_quantile(ts, 0.5), gbps = bytes / us / 1e3;
            if (c.ctx * (double)c.batch >= 131072 && gbps > best_big) {
                best_big = gbps;
                best_variant = variant;
            }
            if (c.ctx == 131072 && c.batch == 1 && c.P == 16) var_sum[variant] += us;
            printf("%-8d %-5d %-4d %-6d %10.1f %9.0f %6.1f%% %s\n", c.ctx, c.batch, c.P, sh.nsplit, us, gbps,
                   100 * gbps / copy_GBps, vname[variant]);
            fprintf(csv, "full_attn_%s,%d,%d,%d,%d,%ld,%.0f,%.2f,%.1f,%.1f\n", vname[variant],
                    c.ctx, c.batch, c.P, sh.nsplit,
                    (long)c.ctx * c.batch, bytes, us, gbps, 100 * gbps / copy_GBps);
        }
    }
    printf("best full-attention bandwidth at >= 128k tokens: %.0f GB/s = %.1f%% of the measured copy rate, "
           "%.1f%% of 4300 GB/s\n", best_big, 100 * best_big / copy_GBps, 100 * best_big / 4300);
    fprintf(csv, "full_attn_best,131072,0,0,0,0,0,0,%.1f,%.1f\n", best_big, 100 * best_big / copy_GBps);
    // variant for the decode steps: the fastest at ctx 128k, batch 1
    int step_variant = 0;
    for (int v = 1; v < 5; v++)
        if (var_sum[v] < var_sum[step_variant]) step_variant = v;
    printf("best_variant %d (%s) at 128k x 4; step_variant %d (%s) at 128k x 1\n", best_variant,
           vname[best_variant], step_variant, vname[step_variant]);
    CK(kvs_cu_attn_set_variant(4));

    // Top-K selection (oracle: logits over all keys, softmax, group sum, radix select)
    for (int ctx : {32768, 131072}) {
        DBuf kd, work, didx;
        // one block of ctx rows per head: K rows then V rows, so K stride = 2*ctx rows
        CK(kd.alloc((size_t)hkv * ctx * d * 2 * 2));
        if (init_blocks(kd, 1, hkv, ctx, d, ctx, 3)) return 1;
        int kk = ctx / 100;
        CK(work.alloc(kvs_cu_topk_work_floats(1, hkv, G, ctx) * 4));
        CK(didx.alloc((size_t)hkv * kk * 4));
        std::vector<double> ts;
        for (int r = 0; r < 13; r++) {
            CK(cudaEventRecord(e0));
            CK(kvs_cu_topk(1, hkv, G, d, 2 * ctx, ctx - 1, scale, qd.as<float>(), kd.as<uint16_t>(), 4, ctx - 64, kk,
                           work.as<float>(), didx.as<int32_t>(), 0));
            CK(cudaEventRecord(e1));
            CK(cudaEventSynchronize(e1));
            float ms;
            CK(cudaEventElapsedTime(&ms, e0, e1));
            if (r >= 3) ts.push_back(ms * 1e3);
        }
        double us = kvs_gpu_quantile(ts, 0.5);
        printf("topk ctx %d k %d (8 KV heads, G 4): %.1f us\n", ctx, kk, us);
        fprintf(csv, "topk,%d,1,0,0,%d,%.0f,%.2f,0,0\n", ctx, kk, (double)hkv * ctx * d * 2, us);
    }
    fclose(csv);
    return 0;
}

// ---- fidelity: measured decode-step latency of configurations ------------------------
enum Mech { M_NONE = 0, M_PER_PAGE, M_GATHER, M_STAGED };
static const char *mech_name[] = {"none", "per_page", "gather_kernel", "host_staged"};

struct FCfg {
    const char *method;   // full | topk | completion
    int host;             // 0 = HBM-resident, 1 = host-offloaded mid region
    Mech mech;
    double frac;
    int P, ctx;
};

struct Rig {
    int hkv = 8, G = 4, d = 128, R = 128;
    float scale = 1.0f / std::sqrt(128.f);
    int cur_P = 0, cur_ctx = 0;
    DBuf cache, staging, qd, wt, S, u, ck;
    HBuf pool, hstage;
    cudaStream_t st;
};

static int rig_layout(Rig &g, int P, int ctx)
{
    if (g.cur_P == P && g.cur_ctx == ctx) return 0;
    if (init_blocks(g.cache, 1, g.hkv, ctx, g.d, P, 77)) return -1;
    const size_t bytes = (size_t)g.hkv * ((ctx + P - 1) / P) * 4 * P * g.d;
    CK(cudaMemcpy(g.pool.p, g.cache.p, bytes, cudaMemcpyDeviceToHost));
    g.cur_P = P;
    g.cur_ctx = ctx;
    return 0;
}

static int measure(Rig &g, const FCfg &c, FILE *csv, int id, int reps)
{
    if (rig_layout(g, c.P, c.ctx)) return -1;
    const int P = c.P, ctx = c.ctx, d = g.d, hkv = g.hkv, np = ctx / P;
    const size_t blk = (size_t)4 * P * d;
    const int sinks = 4, window = 64;
    const bool full = !strcmp(c.method, "full"), comp = !strcmp(c.method, "completion");
    const long B = full ? ctx : (long)std::llround(c.frac * ctx);
    int npg = full ? 0 : std::max(1, (int)((B - sinks - window) / P));
    const int pg_lo = (sinks + P - 1) / P, pg_hi = (ctx - window) / P;   // pages wholly in the mid region
    npg = std::min(npg, pg_hi - pg_lo);
    // Selection sets rotate over the repetitions; enough of them that their
    // pages total >= 256 MiB, so that neither the GPU's L2 (60 MB) nor the
    // host's caches hold a set from one repetition to the next.
    const double set_bytes = (double)hkv * (full ? ctx : sinks + window + (double)npg * P) * 4 * d;
    const int NSETS = (int)std::max(8.0, std::min(256.0, std::ceil(268435456.0 / set_bytes)));
    // per set: entries (anchors resident + retrieved), fetch lists
    std::vector<DBuf> dent(NSETS), doff(NSETS), dsub(NSETS), dsoff(NSETS), dsrc(NSETS), ddst(NSETS);
    std::vector<std::vector<uint64_t>> hsrc(NSETS);   // host pool byte offsets of fetched pages
    int maxe = 1, maxsub = 1;
    void *pool_dev;
    CK(cudaHostGetDevicePointer(&pool_dev, g.pool.p, 0));
    for (int sI = 0; sI < NSETS; sI++) {
        std::vector<kvs_cu_entry> ent, sub;
        std::vector<int32_t> off(1, 0), soff(1, 0);
        std::vector<uint64_t> src, dst;
        uint64_t rs = 1000003ull * (sI + 1) + 7919ull * P + (uint64_t)(c.frac * 1e6) + (c.host ? 17 : 0);
        int slot = 0;
        for (int h = 0; h < hkv; h++) {
            const uint64_t base = (uint64_t)g.cache.p + (uint64_t)h * np * blk;
            const size_t e0 = ent.size();
            if (full) {
                for (int pg = 0; pg < np; pg++) ent.push_back({base + pg * blk, 0, P});
            } else {
                std::vector<int> anchors;
                for (int j = 0; j < sinks; j++) anchors.push_back(j);
                for (int j = ctx - window; j < ctx; j++) anchors.push_back(j);
                entries_for(anchors, base, P, d, ent);
                // npg distinct mid pages (partial Fisher-Yates), ascending
                std::vector<int> cand(pg_hi - pg_lo);
                for (int i = 0; i < (int)cand.size(); i++) cand[i] = pg_lo + i;
                for (int i = 0; i < npg; i++) std::swap(cand[i], cand[i + rng_next(&rs) % (cand.size() - i)]);
                std::vector<int> pick(cand.begin(), cand.begin() + npg);
                std::sort(pick.begin(), pick.end());
                for (int pg : pick) {
                    uint64_t addr;
                    if (c.host) {
                        addr = (uint64_t)g.staging.p + (uint64_t)slot * blk;
                        src.push_back((uint64_t)pool_dev + ((uint64_t)h * np + pg) * blk);
                        dst.push_back(addr);
                        hsrc[sI].push_back(((uint64_t)h * np + pg) * blk);
                        slot++;
                    } else {
                        addr = base + (uint64_t)pg * blk;
                    }
                    ent.push_back({addr, 0, P});
                    sub.push_back({addr, 0, P});
                }
            }
            maxe = std::max(maxe, (int)(ent.size() - e0));
            off.push_back((int32_t)ent.size());
            soff.push_back((int32_t)sub.size());
        }
        maxsub = std::max(maxsub, npg);
        if (upload(dent[sI], ent) || upload(doff[sI], off) || upload(dsub[sI], sub) || upload(dsoff[sI], soff) ||
            upload(dsrc[sI], src) || upload(ddst[sI], dst))
            return -1;
    }
    // splits: enough blocks to fill the GPU, but >= 128 row slots each so
    // that small token sets are not spread over many nearly empty blocks
    // (each split costs a partial state and a share of the combine)
    const int by_rows = std::max(1, (maxe * P + 127) / 128);
    kvs_cu_attn_shape sh = {1, hkv, g.G, d, P, g.scale, std::min(pick_nsplit(hkv, maxe, 1056), by_rows)};
    DBuf part, dout, dest;
    CK(part.alloc(kvs_cu_part_floats(&sh) * 4));
    CK(dout.alloc((size_t)hkv * g.G * d * 4));
    kvs_cu_est_args e = {};
    e.R = g.R;
    e.nchunk = kvs_cu_est_nchunk(std::max(npg, 1), P);
    e.wt = g.wt.as<float>();
    e.S = g.S.as<float>();
    e.u = g.u.as<float>();
    e.ck = g.ck.as<float>();
    CK(dest.alloc(kvs_cu_est_floats(&sh, &e) * 4));
    const int npages = c.host ? npg * hkv : 0;
    const size_t fetch_bytes = (size_t)npages * blk;
    const int launches = (comp ? 3 : 2) + (c.host && c.mech == M_GATHER ? 1 : 0);

    auto fetch = [&](int sI) -> int {
        if (!c.host) return 0;
        if (c.mech == M_PER_PAGE) {
            for (int i = 0; i < npages; i++)
                CK(cudaMemcpyAsync(g.staging.as<char>() + (size_t)i * blk, g.pool.as<char>() + hsrc[sI][i], blk,
                                   cudaMemcpyHostToDevice, g.st));
        } else if (c.mech == M_GATHER) {
            CK(kvs_cu_gather(dsrc[sI].as<uint64_t>(), ddst[sI].as<uint64_t>(), npages, blk, g.st));
        } else if (c.mech == M_STAGED) {
            for (int i = 0; i < npages; i++)
                memcpy(g.hstage.as<char>() + (size_t)i * blk, g.pool.as<char>() + hsrc[sI][i], blk);
            CK(cudaMemcpyAsync(g.staging.p, g.hstage.p, fetch_bytes, cudaMemcpyHostToDevice, g.st));
        }
        return 0;
    };
    auto attend = [&](int sI) -> int {
        if (comp) {
            kvs_cu_est_args ee = e;
            ee.sub = dsub[sI].as<kvs_cu_entry>();
            ee.sub_off = dsoff[sI].as<int32_t>();
            CK(kvs_cu_completion_est(&sh, &ee, g.qd.as<float>(), dest.as<float>(), g.st));
        }
        CK(kvs_cu_attn_partial(&sh, g.qd.as<float>(), dent[sI].as<kvs_cu_entry>(), doff[sI].as<int32_t>(),
                               part.as<float>(), g.st));
        CK(kvs_cu_attn_combine(&sh, part.as<float>(), comp ? dest.as<float>() : nullptr, e.nchunk,
                               dout.as<float>(), nullptr, nullptr, g.st));
        return 0;
    };
    std::vector<double> t_step, t_fetch, t_attn;
    const int warm = 3;
    for (int mode = 0; mode < 3; mode++) {
        if (mode == 1 && !c.host) continue;
        for (int r = 0; r < warm + reps; r++) {
            int sI = r % NSETS;
            CK(cudaStreamSynchronize(g.st));
            double t0 = kvs_gpu_now_us();
            if (mode != 2 && fetch(sI)) return -1;
            if (mode != 1 && attend(sI)) return -1;
            CK(cudaStreamSynchronize(g.st));
            double t1 = kvs_gpu_now_us();
            if (r >= warm) (mode == 0 ? t_step : mode == 1 ? t_fetch : t_attn).push_back(t1 - t0);
        }
    }
    const long tokens = full ? ctx : sinks + window + (long)npg * P;
    const double summary_bytes = comp ? (double)hkv * g.R * (d + 1) * 4 + (double)hkv * d * g.R * 4 : 0;
    const double bytes_hbm = (double)hkv * tokens * 2 * d * 2 + summary_bytes;
    fprintf(csv, "%d,%s,%s,%s,%d,1,%g,%d,%ld,%d,%zu,%.0f,%.0f,%d,%d,%.2f,%.2f,%.2f,%.2f,%.2f\n", id, c.method,
            c.host ? "host" : "hbm", mech_name[c.host ? c.mech : 0], ctx, c.frac, P, tokens, npages, fetch_bytes,
            bytes_hbm, summary_bytes, sh.nsplit, launches, kvs_gpu_quantile(t_step, 0.5), kvs_gpu_quantile(t_step, 0.1),
            kvs_gpu_quantile(t_step, 0.9), c.host ? kvs_gpu_quantile(t_fetch, 0.5) : 0.0, kvs_gpu_quantile(t_attn, 0.5));
    fflush(csv);
    printf("%3d %-10s %-4s %-13s ctx %6d frac %5.3f P %3d pages %5d  step %9.1f us (fetch %8.1f attn %7.1f)\n", id,
           c.method, c.host ? "host" : "hbm", mech_name[c.host ? c.mech : 0], ctx, c.frac, P, npages,
           kvs_gpu_quantile(t_step, 0.5), c.host ? kvs_gpu_quantile(t_fetch, 0.5) : 0.0, kvs_gpu_quantile(t_attn, 0.5));
    return 0;
}

static int cmd_fidelity(const char *out_csv, int quick)
{
    if (!gpu_present()) return 77;
    const char *ev = getenv("KVSIM_GPU_VARIANT");
    if (ev && kvs_cu_attn_set_variant(atoi(ev))) {
        fprintf(stderr, "kvsim-gpu: KVSIM_GPU_VARIANT=%s: unknown variant\n", ev);
        return 1;
    }
    printf("attention variant %d\n", ev ? atoi(ev) : 0);
    FILE *csv = fopen(out_csv, "w");
    if (!csv) {
        fprintf(stderr, "kvsim-gpu: %s: cannot write\n", out_csv);
        return 1;
    }
    fprintf(csv, "id,method,placement,mechanism,ctx,batch,budget_frac,page,tokens_per_head,pages_fetched,"
                 "bytes_fetched,bytes_hbm,bytes_summary,nsplit,launches,step_us,step_us_p10,step_us_p90,"
                 "fetch_us,attn_us\n");
    Rig g;
    const int maxctx = 131072;
    const size_t cache_bytes = (size_t)g.hkv * maxctx * 4 * g.d;   // any P divides 131072
    CK(g.cache.alloc(cache_bytes));
    CK(g.staging.alloc(cache_bytes / 8));
    CK(g.pool.alloc(cache_bytes));
    CK(g.hstage.alloc(cache_bytes / 8));
    CK(cudaStreamCreateWithFlags(&g.st, cudaStreamNonBlocking));
    uint64_t s = 42;
    std::vector<float> q((size_t)g.hkv * g.G * g.d), wt((size_t)g.hkv * g.d * g.R), S((size_t)g.hkv * g.R * g.d),
        u((size_t)g.hkv * g.R), ck(g.hkv, 0.f);
    for (auto &x : q) x = (float)rng_norm(&s);
    for (auto &x : wt) x = (float)rng_norm(&s);
    for (auto &x : S) x = (float)rng_unif(&s);
    for (auto &x : u) x = 1.f + (float)rng_unif(&s);
    if (upload(g.qd, q) || upload(g.wt, wt) || upload(g.S, S) || upload(g.u, u) || upload(g.ck, ck)) return 1;

    std::vector<FCfg> cfgs;
    const double fracs[] = {0.005, 0.01, 0.02, 0.04};
    const int pages[] = {16, 64, 256};
    for (int P : {16, 256}) cfgs.push_back({"full", 0, M_NONE, 1.0, P, 131072});
    cfgs.push_back({"full", 0, M_NONE, 1.0, 16, 32768});
    for (int P : pages)
        for (double f : fracs) cfgs.push_back({"topk", 0, M_NONE, f, P, 131072});
    for (int P : pages) cfgs.push_back({"completion", 0, M_NONE, 0.01, P, 131072});
    for (double f : {0.005, 0.02, 0.04}) cfgs.push_back({"completion", 0, M_NONE, f, 64, 131072});
    for (Mech m : {M_PER_PAGE, M_GATHER, M_STAGED})
        for (int P : pages)
            for (double f : fracs) cfgs.push_back({"topk", 1, m, f, P, 131072});
    for (Mech m : {M_PER_PAGE, M_GATHER, M_STAGED}) cfgs.push_back({"completion", 1, m, 0.01, 64, 131072});
    for (Mech m : {M_PER_PAGE, M_GATHER, M_STAGED}) cfgs.push_back({"topk", 1, m, 0.01, 64, 32768});
    // group by page size so that the layout is rebuilt few times
    std::stable_sort(cfgs.begin(), cfgs.end(), [](const FCfg &a, const FCfg &b) {
        return a.ctx != b.ctx ? a.ctx > b.ctx : a.P < b.P;
    });
    int id = 0;
    for (const FCfg &c : cfgs)
        if (measure(g, c, csv, id++, quick ? 5 : 25)) return 1;
    fclose(csv);
    cudaStreamDestroy(g.st);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: kvsim-gpu probe | selftest | check DIR... | bench OUT.csv | fidelity OUT.csv [quick]\n"
                        "       | bench OUT.csv TORCH.csv | attnbench OUT.csv [TORCH.csv] | e2e OUT.csv [quick]\n"
                        "       | compbench OUT.csv [quick]\n");
        return 2;
    }
    std::string cmd = argv[1];
    if (cmd == "probe") return gpu_present() ? 0 : 77;
    if (cmd == "selftest") return cmd_selftest();
    if (cmd == "check" && argc >= 3) return cmd_check(argc - 2, argv + 2, 0.01, 0.04);
    if (cmd == "bench" && argc == 3) return cmd_bench(argv[2]);
    // with PyTorch's results of the same run: the decode-attention kernel side by side with SDPA
    if (cmd == "bench" && argc == 4) return kvs_gpu_cmd_attnbench(argc - 2, argv + 2);
    if (cmd == "fidelity" && argc >= 3) return cmd_fidelity(argv[2], argc > 3 && !strcmp(argv[3], "quick"));
    if (cmd == "attnbench" && argc >= 3) return kvs_gpu_cmd_attnbench(argc - 2, argv + 2);
    if (cmd == "e2e" && argc >= 3) return kvs_gpu_cmd_e2e(argc - 2, argv + 2);
    if (cmd == "compbench" && argc >= 3) return kvs_gpu_cmd_compbench(argc - 2, argv + 2);
    fprintf(stderr, "usage: kvsim-gpu probe | selftest | check DIR... | bench OUT.csv | fidelity OUT.csv [quick]\n"
                    "       | attnbench OUT.csv [TORCH.csv] | e2e OUT.csv [quick] | compbench OUT.csv [quick]\n");
    return 2;
}
