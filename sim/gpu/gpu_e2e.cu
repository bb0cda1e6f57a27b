// gpu_e2e.cu — `kvsim-gpu attnbench`, `e2e` and `compbench` (contract in gpu_e2e.h).
#include "gpu_e2e.h"
#include "kvs_cuda.h"
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#define EK(x)                                                                                        \
    do {                                                                                             \
        int e_ = (int)(x);                                                                           \
        if (e_) {                                                                                    \
            fprintf(stderr, "kvsim-gpu: %s:%d: %s: error %d (%s)\n", __FILE__, __LINE__, #x, e_,     \
                    cudaGetErrorString((cudaError_t)e_));                                            \
            return -1;                                                                               \
        }                                                                                            \
    } while (0)

namespace {

// The start of every timing command: false, after "SKIP kvsim-gpu CMD: no
// CUDA GPU" (the caller exits 77), when there is none.
bool have_gpu(const char *cmd)
{
    int ndev = 0;
    if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0) {
        printf("SKIP kvsim-gpu %s: no CUDA GPU\n", cmd);
        return false;
    }
    return true;
}

// The nodes of a captured graph and how many of them are kernels.
int graph_counts(cudaGraph_t gr, size_t *nodes, int *kernels)
{
    size_t nn = 0;
    EK(cudaGraphGetNodes(gr, nullptr, &nn));
    std::vector<cudaGraphNode_t> v(nn);
    EK(cudaGraphGetNodes(gr, v.data(), &nn));
    int nk = 0;
    for (auto nd : v) {
        cudaGraphNodeType t;
        EK(cudaGraphNodeGetType(nd, &t));
        nk += t == cudaGraphNodeTypeKernel;
    }
    *nodes = nn;
    *kernels = nk;
    return 0;
}

// PATH opened for writing, or NULL after a message naming it.
FILE *open_out(const char *cmd, const char *path)
{
    FILE *f = fopen(path, "w");
    if (!f) fprintf(stderr, "kvsim-gpu %s: %s: cannot write\n", cmd, path);
    return f;
}

struct Buf {
    void *p = nullptr;
    size_t n = 0;
    bool host = false;
    int alloc(size_t b)
    {
        release();
        n = b;
        host = false;
        return (int)cudaMalloc(&p, b ? b : 16);
    }
    int alloc_host(size_t b)
    {
        release();
        n = b;
        host = true;
        return (int)cudaHostAlloc(&p, b ? b : 16, cudaHostAllocMapped | cudaHostAllocPortable);
    }
    void release()
    {
        if (p) {
            if (host) cudaFreeHost(p);
            else cudaFree(p);
        }
        p = nullptr;
        n = 0;
    }
    ~Buf() { release(); }
    Buf() = default;
    Buf(const Buf &) = delete;
    Buf &operator=(const Buf &) = delete;
    template <class T> T *as() const { return (T *)p; }
};

__device__ __forceinline__ uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
// uniform in [-a, a): 16-bit elements (fp16 when half, else bf16)
__global__ void fill16_kernel(uint16_t *p, size_t n, float a, uint64_t seed, int half)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        float x = ((mix64(seed + i * 0x9e3779b97f4a7c15ull) >> 40) * (1.0f / 16777216.0f) * 2.f - 1.f) * a;
        if (half) {
            __half h = __float2half(x);
            p[i] = *reinterpret_cast<uint16_t *>(&h);
        } else {
            __nv_bfloat16 h = __float2bfloat16(x);
            p[i] = *reinterpret_cast<uint16_t *>(&h);
        }
    }
}
int fill16(void *p, size_t n, float a, uint64_t seed, int half)
{
    fill16_kernel<<<4096, 256>>>((uint16_t *)p, n, a, seed, half);
    return (int)cudaGetLastError();
}
__global__ void fillf_kernel(float *p, size_t n, float a, uint64_t seed)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        p[i] = ((mix64(seed + i * 0x9e3779b97f4a7c15ull) >> 40) * (1.0f / 16777216.0f) * 2.f - 1.f) * a;
}

// read-only HBM bandwidth: every 16-byte word once, no writes (result kept live)
__global__ void read_kernel(const uint4 *__restrict__ p, size_t n, unsigned *__restrict__ sink)
{
    unsigned a = 0;
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x, st = (size_t)gridDim.x * blockDim.x;
    for (; i + 3 * st < n; i += 4 * st) {
        uint4 x0 = __ldcs(p + i), x1 = __ldcs(p + i + st), x2 = __ldcs(p + i + 2 * st), x3 = __ldcs(p + i + 3 * st);
        a ^= x0.x ^ x0.w ^ x1.y ^ x1.z ^ x2.x ^ x2.w ^ x3.y ^ x3.z;
    }
    for (; i < n; i += st) a ^= p[i].x;
    if (a == 0x12345678u) *sink = a;
}

__global__ void empty_k() {}

struct Geo {
    const char *name;
    int L, H, Hkv, d, hidden, ffn, vocab;
};
// shapes as sim/kvs_preset.c (each model's published config.json)
const Geo geos[] = {
    {"llama-3.2-1b", 16, 32, 8, 64, 2048, 8192, 128256},
    {"llama-3.2-3b", 28, 24, 8, 128, 3072, 8192, 128256},
    {"llama-3.1-8b", 32, 32, 8, 128, 4096, 14336, 128256},
    {"llama-3.1-70b", 80, 64, 8, 128, 8192, 28672, 128256},
};
const Geo *geo_by_name(const char *n)
{
    for (const Geo &g : geos)
        if (!strcmp(g.name, n)) return &g;
    return nullptr;
}

// page tables of a contiguous page-block buffer: ptab[h][pg] = base + (h*np + pg)*blk
__global__ void ptab_kernel(uint64_t *ptab, uint64_t base, int nh, int np, int stride, size_t blk)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= nh * np) return;
    int h = i / np, pg = i % np;
    ptab[(size_t)h * stride + pg] = base + ((uint64_t)h * np + pg) * blk;
}

} // namespace

// ======================================================================================
// attnbench
// ======================================================================================
namespace {
struct AShape {
    const char *model;
    int hkv, G, d;
};
const AShape ashapes[] = {{"llama-3.2-1b", 8, 4, 64},
                          {"llama-3.2-3b", 8, 3, 128},
                          {"llama-3.1-8b", 8, 4, 128},
                          {"llama-3.1-70b/tp8", 1, 8, 128}};

int measure_read_bw(double *gbps)
{
    Buf a, sink;
    const size_t bytes = (size_t)4 << 30;
    EK(a.alloc(bytes));
    EK(sink.alloc(64));
    EK(cudaMemset(a.p, 1, bytes));
    cudaEvent_t e0, e1;
    EK(cudaEventCreate(&e0));
    EK(cudaEventCreate(&e1));
    std::vector<double> ts;
    int sms = 132;
    cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0);
    for (int r = 0; r < 12; r++) {
        EK(cudaEventRecord(e0));
        read_kernel<<<sms * 8, 512>>>(a.as<uint4>(), bytes / 16, sink.as<unsigned>());
        EK(cudaEventRecord(e1));
        EK(cudaEventSynchronize(e1));
        float ms;
        EK(cudaEventElapsedTime(&ms, e0, e1));
        if (r >= 2) ts.push_back(ms * 1e3);
    }
    *gbps = bytes / kvs_gpu_quantile(ts, 0.5) / 1e3;
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    return 0;
}

struct TorchRow {
    double us = NAN;
    std::string backend;
};

} // namespace

int kvs_gpu_cmd_attnbench(int argc, char **argv)
{
    if (argc < 1) return 2;
    if (!have_gpu("attnbench")) return 77;
    std::map<std::string, TorchRow> torch;
    if (argc >= 2) {
        FILE *f = fopen(argv[1], "r");
        if (!f) {
            fprintf(stderr, "kvsim-gpu attnbench: %s: cannot read the PyTorch results\n", argv[1]);
            return 1;
        }
        char line[512];
        while (fgets(line, sizeof line, f)) {
            char model[64], backend[64];
            int ctx, batch;
            double us;
            if (sscanf(line, "attn,%63[^,],%d,%d,%lf,%63s", model, &ctx, &batch, &us, backend) == 5) {
                char key[128];
                snprintf(key, sizeof key, "%s/%d/%d", model, ctx, batch);
                torch[key].us = us;
                torch[key].backend = backend;
            }
        }
        fclose(f);
    }
    FILE *csv = open_out("attnbench", argv[0]);
    if (!csv) return 1;
    double rbw;
    if (measure_read_bw(&rbw)) return 1;
    printf("HBM read bandwidth (read-only kernel, 4 GiB): %.0f GB/s\n", rbw);
    fprintf(csv, "what,model,hkv,G,d,ctx,batch,page,nsplit,bytes,us,GBps,pct_read_bw,torch_us,torch_GBps,torch_backend,"
                 "speedup_vs_torch,rel_l2_vs_fp64,us_direct,us_async,nsplit_direct,nsplit_async\n");
    fprintf(csv, "hbm_read,,0,0,0,0,0,0,0,%zu,0,%.1f,100,,,,,\n", (size_t)4 << 30, rbw);
    const int def_async = kvs_cu_dec_get_async();
    printf("%-18s %7s %5s %9s %8s %8s %8s %6s | %9s %8s %8s\n", "model", "ctx", "batch", "nsplit d/a", "direct",
           "async", "GB/s", "%read", "torch us", "GB/s", "speedup");
    cudaEvent_t e0, e1;
    EK(cudaEventCreate(&e0));
    EK(cudaEventCreate(&e1));
    const int P = 16;
    int worst_ok = 1;
    double min_pct_32k = 1e9, min_speed = 1e9;
    for (const AShape &s : ashapes)
        for (int ctx : {8192, 32768, 131072})
            for (int batch : {1, 4, 16}) {
                const int nh = batch * s.hkv, np = ctx / P;
                const size_t blk = (size_t)4 * P * s.d;
                const size_t bytes = (size_t)nh * np * blk;
                const int ncopy = (int)std::max<size_t>(1, ((size_t)1 << 29) / bytes + 1);   // >= 512 MiB cycled
                Buf kv, ptab, qd, part, out;
                EK(kv.alloc(bytes * ncopy));
                EK(fill16(kv.p, bytes * ncopy / 2, 1.f, 11 + ctx + batch, 1));
                EK(ptab.alloc((size_t)ncopy * nh * np * 8));
                for (int c = 0; c < ncopy; c++)
                    ptab_kernel<<<(nh * np + 255) / 256, 256>>>(ptab.as<uint64_t>() + (size_t)c * nh * np,
                                                                (uint64_t)kv.p + c * bytes, nh, np, np, blk);
                EK(qd.alloc((size_t)nh * s.G * s.d * 4));
                fillf_kernel<<<64, 256>>>(qd.as<float>(), (size_t)nh * s.G * s.d, 1.f, 5);
                kvs_cu_paged a;
                a.ptab_stride = np;
                a.tok = nullptr;
                a.tok_stride = 0;
                a.ntok = nullptr;
                a.ntok_all = ctx;
                EK(out.alloc((size_t)nh * s.G * s.d * 4));
                double us_mode[2];
                int ns_mode[2];
                for (int mode = 0; mode < 2; mode++) {
                    kvs_cu_dec_set_async(mode);
                    a.shape = {batch, s.hkv, s.G, s.d, P, 1.0f / sqrtf((float)s.d), kvs_cu_dec_nsplit(s.d, nh, ctx)};
                    ns_mode[mode] = a.shape.nsplit;
                    EK(part.alloc(kvs_cu_part_floats(&a.shape) * 4));
                    EK(cudaDeviceSynchronize());
                    std::vector<double> ts;
                    const int inner = 20;
                    for (int r = 0; r < 7; r++) {
                        EK(cudaEventRecord(e0));
                        for (int i = 0; i < inner; i++) {
                            a.ptab = ptab.as<uint64_t>() + (size_t)((r * inner + i) % ncopy) * nh * np;
                            EK(kvs_cu_attn_paged_partial(&a, qd.as<float>(), part.as<float>(), 0));
                            EK(kvs_cu_attn_combine(&a.shape, part.as<float>(), nullptr, 0, out.as<float>(), nullptr,
                                                   nullptr, 0));
                        }
                        EK(cudaEventRecord(e1));
                        EK(cudaEventSynchronize(e1));
                        float ms;
                        EK(cudaEventElapsedTime(&ms, e0, e1));
                        if (r >= 2) ts.push_back(ms * 1e3 / inner);
                    }
                    us_mode[mode] = kvs_gpu_quantile(ts, 0.5);
                }
                kvs_cu_dec_set_async(def_async);
                const int bm = us_mode[1] < us_mode[0];
                const double us = us_mode[bm], gbps = bytes / us / 1e3, pct = 100 * gbps / rbw;
                char key[128];
                snprintf(key, sizeof key, "%s/%d/%d", s.model, ctx, batch);
                TorchRow tr;
                if (torch.count(key)) tr = torch[key];
                const double tg = std::isnan(tr.us) ? NAN : bytes / tr.us / 1e3;
                printf("%-18s %7d %5d %4d/%-4d %8.1f %8.1f %8.0f %5.1f%% | %9.1f %8.0f %7.2fx\n", s.model, ctx, batch,
                       ns_mode[0], ns_mode[1], us_mode[0], us_mode[1], gbps, pct, tr.us, tg, tr.us / us);
                fprintf(csv, "attn,%s,%d,%d,%d,%d,%d,%d,%d,%zu,%.2f,%.1f,%.1f,%.2f,%.1f,%s,%.3f,,%.2f,%.2f,%d,%d\n",
                        s.model, s.hkv, s.G, s.d, ctx, batch, P, ns_mode[bm], bytes, us, gbps, pct, tr.us, tg,
                        tr.backend.empty() ? "none" : tr.backend.c_str(), tr.us / us, us_mode[0], us_mode[1],
                        ns_mode[0], ns_mode[1]);
                if (ctx >= 32768) min_pct_32k = std::min(min_pct_32k, pct);
                if (!std::isnan(tr.us)) {
                    min_speed = std::min(min_speed, tr.us / us);
                    if (tr.us < us) worst_ok = 0;
                }
            }
    printf("attnbench: lowest share of the read bandwidth at >= 32k tokens: %.1f%%; "
           "slowest ratio torch/kvsim: %.2f (%s)\n",
           min_pct_32k, min_speed, worst_ok ? "kvsim at least as fast everywhere" : "torch faster somewhere");
    fclose(csv);
    return 0;
}

// ======================================================================================
// e2e
// ======================================================================================
namespace {

__global__ void embed_kernel(const __nv_bfloat16 *emb, int hidden, int B, int tok0, __nv_bfloat16 *x)
{
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < B * hidden; i += gridDim.x * blockDim.x) {
        int b = i / hidden, c = i % hidden;
        x[i] = emb[(size_t)((tok0 + 17 * b) % 1000) * hidden + c];
    }
}

// y = x / rms(x) * w, one block per sequence
__global__ void rmsnorm_kernel(const __nv_bfloat16 *__restrict__ x, const __nv_bfloat16 *__restrict__ w, int n,
                               __nv_bfloat16 *__restrict__ y)
{
    __shared__ float red[32];
    const __nv_bfloat16 *xr = x + (size_t)blockIdx.x * n;
    float s = 0.f;
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        float v = __bfloat162float(xr[i]);
        s += v * v;
    }
    for (int o = 16; o; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
    if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = s;
    __syncthreads();
    if (threadIdx.x < 32) {
        s = threadIdx.x < blockDim.x / 32 ? red[threadIdx.x] : 0.f;
        for (int o = 16; o; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
        if (threadIdx.x == 0) red[0] = rsqrtf(s / n + 1e-5f);
    }
    __syncthreads();
    const float r = red[0];
    for (int i = threadIdx.x; i < n; i += blockDim.x)
        y[(size_t)blockIdx.x * n + i] = __float2bfloat16(__bfloat162float(xr[i]) * r * __bfloat162float(w[i]));
}

// qkv [B][(H + 2 Hkv) d] bf16 -> RoPE'd q as float [B][H][d]; K, V of position
// p (RoPE'd K) into the cache pages (fp16) of every (b, kvh).
__global__ void rope_kernel(const __nv_bfloat16 *__restrict__ qkv, int H, int Hkv, int d, int p, int P,
                            const uint64_t *__restrict__ ptab, int ptab_stride, float *__restrict__ q)
{
    const int b = blockIdx.x;
    const int W = (H + 2 * Hkv) * d;
    const __nv_bfloat16 *r = qkv + (size_t)b * W;
    const int half = d / 2;
    for (int i = threadIdx.x; i < (H + Hkv) * half; i += blockDim.x) {
        const int hh = i / half, j = i % half;
        const float inv = powf(500000.f, -2.f * j / d);
        float sn, cs;
        sincosf(p * inv, &sn, &cs);
        const __nv_bfloat16 *src = r + (size_t)hh * d;   // q heads then k heads
        const float x0 = __bfloat162float(src[j]), x1 = __bfloat162float(src[j + half]);
        const float y0 = x0 * cs - x1 * sn, y1 = x1 * cs + x0 * sn;
        if (hh < H) {
            q[((size_t)b * H + hh) * d + j] = y0;
            q[((size_t)b * H + hh) * d + j + half] = y1;
        } else {
            const int kvh = hh - H;
            __half *blk = reinterpret_cast<__half *>(ptab[((size_t)b * Hkv + kvh) * ptab_stride + p / P]);
            blk[(size_t)(p % P) * d + j] = __float2half(y0);
            blk[(size_t)(p % P) * d + j + half] = __float2half(y1);
        }
    }
    for (int i = threadIdx.x; i < Hkv * d; i += blockDim.x) {
        const int kvh = i / d, j = i % d;
        __half *blk = reinterpret_cast<__half *>(ptab[((size_t)b * Hkv + kvh) * ptab_stride + p / P]);
        blk[(size_t)P * d + (size_t)(p % P) * d + j] = __float2half(__bfloat162float(r[(size_t)(H + Hkv) * d + i]));
    }
}

__global__ void f2bf_kernel(const float *__restrict__ x, size_t n, __nv_bfloat16 *__restrict__ y)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        y[i] = __float2bfloat16(x[i]);
}

__global__ void swiglu_kernel(const __nv_bfloat16 *__restrict__ gu, int ffn, int B, __nv_bfloat16 *__restrict__ a)
{
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < B * ffn; i += gridDim.x * blockDim.x) {
        const int b = i / ffn, c = i % ffn;
        const float g = __bfloat162float(gu[(size_t)b * 2 * ffn + c]), u = __bfloat162float(gu[(size_t)b * 2 * ffn + ffn + c]);
        a[i] = __float2bfloat16(g / (1.f + __expf(-g)) * u);
    }
}

// zero-copy gather of the selected pages (host) into HBM staging; points the
// page table at the staged copies.
__global__ void gather_sel_kernel(const int32_t *__restrict__ pages, int kp, const uint64_t *__restrict__ host_ptab,
                                  int ptab_stride, uint64_t staging, size_t blk, uint64_t *__restrict__ ptab)
{
    const int h = blockIdx.y;
    for (int i = blockIdx.x; i < kp; i += gridDim.x) {
        const int pg = pages[(size_t)h * kp + i];
        const uint4 *s = reinterpret_cast<const uint4 *>(host_ptab[(size_t)h * ptab_stride + pg]);
        const uint64_t dst = staging + ((size_t)h * kp + i) * blk;
        uint4 *d = reinterpret_cast<uint4 *>(dst);
        for (size_t j = threadIdx.x; j < blk / 16; j += blockDim.x) d[j] = s[j];
        if (threadIdx.x == 0) ptab[(size_t)h * ptab_stride + pg] = dst;
    }
}

enum { M_FULL, M_TOPK, M_QUEST, M_COMPLETION };
const char *mname[] = {"full", "topk", "quest", "completion"};

struct ECfg {
    const Geo *g;
    int ctx, batch, method;
    double frac;
    int host;   // 0 hbm, 1 host + gather_kernel
};

struct Model {
    const Geo *g = nullptr;
    std::vector<Buf *> wqkv, wo, wgu, wd, n1, n2;
    Buf emb, nf, lm;
    double weight_bytes = 0;
    ~Model()
    {
        for (auto *v : {&wqkv, &wo, &wgu, &wd, &n1, &n2})
            for (Buf *b : *v) delete b;
    }
};

int model_alloc(Model &m, const Geo *g)
{
    m.g = g;
    const size_t Wq = (size_t)(g->H + 2 * g->Hkv) * g->d * g->hidden, Wo = (size_t)g->hidden * g->H * g->d,
                 Wgu = (size_t)2 * g->ffn * g->hidden, Wd = (size_t)g->hidden * g->ffn;
    const float a = 0.02f;
    for (int l = 0; l < g->L; l++) {
        m.wqkv.push_back(new Buf);
        m.wo.push_back(new Buf);
        m.wgu.push_back(new Buf);
        m.wd.push_back(new Buf);
        m.n1.push_back(new Buf);
        m.n2.push_back(new Buf);
        EK(m.wqkv[l]->alloc(Wq * 2));
        EK(m.wo[l]->alloc(Wo * 2));
        EK(m.wgu[l]->alloc(Wgu * 2));
        EK(m.wd[l]->alloc(Wd * 2));
        EK(m.n1[l]->alloc((size_t)g->hidden * 2));
        EK(m.n2[l]->alloc((size_t)g->hidden * 2));
        EK(fill16(m.wqkv[l]->p, Wq, a, 100 + l, 0));
        EK(fill16(m.wo[l]->p, Wo, a, 200 + l, 0));
        EK(fill16(m.wgu[l]->p, Wgu, a, 300 + l, 0));
        EK(fill16(m.wd[l]->p, Wd, a, 400 + l, 0));
        EK(fill16(m.n1[l]->p, g->hidden, 1.f, 500 + l, 0));
        EK(fill16(m.n2[l]->p, g->hidden, 1.f, 600 + l, 0));
    }
    EK(m.emb.alloc((size_t)g->vocab * g->hidden * 2));
    EK(fill16(m.emb.p, (size_t)g->vocab * g->hidden, 1.f, 7, 0));
    EK(m.lm.alloc((size_t)g->vocab * g->hidden * 2));
    EK(fill16(m.lm.p, (size_t)g->vocab * g->hidden, a, 8, 0));
    EK(m.nf.alloc((size_t)g->hidden * 2));
    EK(fill16(m.nf.p, g->hidden, 1.f, 9, 0));
    m.weight_bytes = 2.0 * g->L * (Wq + Wo + Wgu + Wd) + 2.0 * g->vocab * g->hidden;
    EK(cudaDeviceSynchronize());
    return 0;
}

// y[B][out] = x[B][in] . W[out][in]^T (+ y when beta = 1)
int gemv(cublasHandle_t hb, const void *W, const void *x, void *y, int out, int in, int B, float beta)
{
    const float alpha = 1.f;
    cublasStatus_t st = cublasGemmEx(hb, CUBLAS_OP_T, CUBLAS_OP_N, out, B, in, &alpha, W, CUDA_R_16BF, in, x,
                                     CUDA_R_16BF, in, &beta, y, CUDA_R_16BF, out, CUBLAS_COMPUTE_32F,
                                     CUBLAS_GEMM_DEFAULT);
    if (st != CUBLAS_STATUS_SUCCESS) {
        fprintf(stderr, "kvsim-gpu e2e: cublasGemmEx %dx%d batch %d failed (%d)\n", out, in, B, (int)st);
        return -1;
    }
    return 0;
}

struct Acts {
    Buf x, xn, qkv, q, o, obf, gu, a, logits;
};
int acts_alloc(Acts &A, const Geo *g, int B)
{
    EK(A.x.alloc((size_t)B * g->hidden * 2));
    EK(A.xn.alloc((size_t)B * g->hidden * 2));
    EK(A.qkv.alloc((size_t)B * (g->H + 2 * g->Hkv) * g->d * 2));
    EK(A.q.alloc((size_t)B * g->H * g->d * 4));
    EK(A.o.alloc((size_t)B * g->H * g->d * 4));
    EK(A.obf.alloc((size_t)B * g->H * g->d * 2));
    EK(A.gu.alloc((size_t)B * 2 * g->ffn * 2));
    EK(A.a.alloc((size_t)B * g->ffn * 2));
    EK(A.logits.alloc((size_t)B * g->vocab * 2));
    return 0;
}

// the KV of one configuration class (model, ctx, batch): nbuf ring buffers
struct KV {
    int nbuf = 0, np = 0, nh = 0;
    size_t blk = 0, layer_bytes = 0;
    Buf data, ptab, meta;       // HBM pages; ptab [nbuf][nh][np]; quest meta [nbuf][nh][np][2][d]
    Buf host, host_ptab, dev_ptab2, staging;   // host placement (batch 1)
};

int kv_alloc(KV &kv, const Geo *g, int ctx, int B, int P, double budget_bytes)
{
    kv.np = (ctx + 1 + P - 1) / P;
    kv.nh = B * g->Hkv;
    kv.blk = (size_t)4 * P * g->d;
    kv.layer_bytes = (size_t)kv.nh * kv.np * kv.blk;
    kv.nbuf = (int)std::min<double>(g->L, std::floor(budget_bytes / kv.layer_bytes));
    if (kv.nbuf < 2 && g->L >= 2) return 1;   // caller refuses
    EK(kv.data.alloc(kv.layer_bytes * kv.nbuf));
    EK(fill16(kv.data.p, kv.layer_bytes * kv.nbuf / 2, 1.f, 77 + ctx + B, 1));
    EK(kv.ptab.alloc((size_t)kv.nbuf * kv.nh * kv.np * 8));
    for (int b = 0; b < kv.nbuf; b++)
        ptab_kernel<<<(kv.nh * kv.np + 255) / 256, 256>>>(kv.ptab.as<uint64_t>() + (size_t)b * kv.nh * kv.np,
                                                         (uint64_t)kv.data.p + b * kv.layer_bytes, kv.nh, kv.np,
                                                         kv.np, kv.blk);
    EK(kv.meta.alloc((size_t)kv.nbuf * kv.nh * kv.np * 2 * g->d * 2));
    for (int b = 0; b < kv.nbuf; b++)
        EK(kvs_cu_quest_meta(kv.nh, g->d, P, kv.np, kv.ptab.as<uint64_t>() + (size_t)b * kv.nh * kv.np, kv.np,
                             kv.meta.as<uint16_t>() + (size_t)b * kv.nh * kv.np * 2 * g->d, 0));
    EK(cudaDeviceSynchronize());
    return 0;
}

struct Sel {   // per-config selection buffers
    Buf work, tok, ntok, pages, sub, suboff, est, part, wt, S, u, ck;
    int tok_stride = 0, kk = 0, kp = 0, a0 = 0, w0 = 0, w1 = 0, nsplit = 1, nchunk = 0, R = 64;
};

} // namespace

int kvs_gpu_cmd_e2e(int argc, char **argv)
{
    if (argc < 1) return 2;
    if (!have_gpu("e2e")) return 77;
    const bool quick = argc >= 2 && !strcmp(argv[1], "quick");
    FILE *csv = open_out("e2e", argv[0]);
    if (!csv) return 1;
    cudaDeviceProp prop;
    EK(cudaGetDeviceProperties(&prop, 0));
    cudaStream_t st;
    EK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
    cublasHandle_t hb;
    if (cublasCreate(&hb) != CUBLAS_STATUS_SUCCESS) {
        fprintf(stderr, "kvsim-gpu e2e: cublasCreate failed\n");
        return 1;
    }
    cublasSetStream(hb, st);
    Buf cws;
    EK(cws.alloc((size_t)32 << 20));
    cublasSetWorkspace(hb, cws.p, cws.n);
    cudaEvent_t e0, e1;
    EK(cudaEventCreate(&e0));
    EK(cudaEventCreate(&e1));

    fprintf(csv, "kind,id,model,layers,hidden,heads,kv_heads,head_dim,ffn,vocab,ctx,batch,method,budget_frac,"
                 "tokens_per_head,pages_selected,placement,mechanism,page,kv_buffers,nsplit,graph_nodes,"
                 "kernel_nodes,step_us,step_p10_us,step_p90_us,wall_us,kv_bytes_read,weight_bytes,"
                 "fetched_bytes,gemv_rows,gemv_cols,note\n");
    // ---- graph launch gaps --------------------------------------------------------
    {
        for (int nk : {1, 2, 50, 200}) {
            cudaGraph_t gr;
            cudaGraphExec_t ge;
            EK(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal));
            for (int i = 0; i < nk; i++) empty_k<<<1, 32, 0, st>>>();
            EK(cudaStreamEndCapture(st, &gr));
            EK(cudaGraphInstantiate(&ge, gr, 0));
            std::vector<double> ev, wall;
            for (int r = 0; r < 25; r++) {
                double t0 = kvs_gpu_now_us();
                EK(cudaEventRecord(e0, st));
                EK(cudaGraphLaunch(ge, st));
                EK(cudaEventRecord(e1, st));
                EK(cudaStreamSynchronize(st));
                double t1 = kvs_gpu_now_us();
                float ms;
                EK(cudaEventElapsedTime(&ms, e0, e1));
                if (r >= 5) {
                    ev.push_back(ms * 1e3);
                    wall.push_back(t1 - t0);
                }
            }
            fprintf(csv, "graph_empty,0,,0,0,0,0,0,0,0,0,0,,0,0,0,,,0,0,0,%d,%d,%.3f,%.3f,%.3f,%.3f,0,0,0,0,0,\n", nk, nk,
                    kvs_gpu_quantile(ev, 0.5), kvs_gpu_quantile(ev, 0.1), kvs_gpu_quantile(ev, 0.9), kvs_gpu_quantile(wall, 0.5));
            printf("graph of %3d empty kernels: %.2f us (events), %.2f us (host wall incl. launch+sync)\n", nk,
                   kvs_gpu_quantile(ev, 0.5), kvs_gpu_quantile(wall, 0.5));
            cudaGraphExecDestroy(ge);
            cudaGraphDestroy(gr);
        }
    }

    const int P = 16;
    const double gpu_mem = (double)prop.totalGlobalMem;
    int id = 0, fails = 0;
    std::vector<const Geo *> models = {geo_by_name("llama-3.2-1b"), geo_by_name("llama-3.2-3b"),
                                       geo_by_name("llama-3.1-8b"), geo_by_name("llama-3.1-70b")};
    for (const Geo *g : models) {
        const double wb = 2.0 * g->L *
                              ((double)(g->H + 2 * g->Hkv) * g->d * g->hidden + (double)g->hidden * g->H * g->d +
                               3.0 * g->ffn * g->hidden) +
                          4.0 * g->vocab * g->hidden;
        if (wb > 0.8 * gpu_mem) {
            printf("e2e: refused %s: its bf16 weights take %.1f GB, more than 80%% of this GPU's %.1f GB "
                   "(one GPU, no tensor parallelism)\n",
                   g->name, wb / 1e9, gpu_mem / 1e9);
            fprintf(csv, "refused,%d,%s,%d,%d,%d,%d,%d,%d,%d,0,0,,0,0,0,,,0,0,0,0,0,0,0,0,0,0,%.0f,0,0,0,"
                         "weights exceed 80%% of GPU memory\n",
                    id++, g->name, g->L, g->hidden, g->H, g->Hkv, g->d, g->ffn, g->vocab, wb);
            continue;
        }
        Model m;
        if (model_alloc(m, g)) return 1;
        // ---- GEMV table by shape (each matrix over the L layers' copies) ----
        for (int B : {1, 8}) {
            Acts A;
            if (acts_alloc(A, g, B)) return 1;
            struct GS {
                const char *what;
                int out, in;
            } gs[] = {{"qkv", (g->H + 2 * g->Hkv) * g->d, g->hidden},
                      {"o", g->hidden, g->H * g->d},
                      {"gate_up", 2 * g->ffn, g->hidden},
                      {"down", g->hidden, g->ffn},
                      {"lm_head", g->vocab, g->hidden}};
            for (const GS &s : gs) {
                Buf xin, yout;
                EK(xin.alloc((size_t)B * std::max(s.in, s.out) * 2));
                EK(yout.alloc((size_t)B * std::max(s.in, s.out) * 2));
                EK(fill16(xin.p, (size_t)B * s.in, 1.f, 3, 0));
                const bool lm = !strcmp(s.what, "lm_head");
                const int reps = lm ? 4 : g->L;
                cudaGraph_t gr;
                cudaGraphExec_t ge;
                EK(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal));
                for (int l = 0; l < reps; l++) {
                    const void *W = lm ? m.lm.p
                                       : !strcmp(s.what, "qkv") ? m.wqkv[l]->p
                                       : !strcmp(s.what, "o")   ? m.wo[l]->p
                                       : !strcmp(s.what, "gate_up") ? m.wgu[l]->p
                                                                    : m.wd[l]->p;
                    if (gemv(hb, W, xin.p, yout.p, s.out, s.in, B, 0.f)) return 1;
                }
                EK(cudaStreamEndCapture(st, &gr));
                EK(cudaGraphInstantiate(&ge, gr, 0));
                size_t nn = 0;
                EK(cudaGraphGetNodes(gr, nullptr, &nn));
                std::vector<double> ev;
                for (int r = 0; r < 12; r++) {
                    EK(cudaEventRecord(e0, st));
                    EK(cudaGraphLaunch(ge, st));
                    EK(cudaEventRecord(e1, st));
                    EK(cudaStreamSynchronize(st));
                    float ms;
                    EK(cudaEventElapsedTime(&ms, e0, e1));
                    if (r >= 2) ev.push_back(ms * 1e3 / reps);
                }
                const double by = 2.0 * s.out * s.in;
                fprintf(csv, "gemv,%d,%s,%d,%d,%d,%d,%d,%d,%d,0,%d,%s,0,0,0,hbm,none,0,0,0,%zu,%zu,%.3f,%.3f,%.3f,0,0,%.0f,0,"
                             "%d,%d,%.1f GB/s per matrix (graph of %d)\n",
                        id++, g->name, g->L, g->hidden, g->H, g->Hkv, g->d, g->ffn, g->vocab, B, s.what, nn / reps,
                        nn / reps, kvs_gpu_quantile(ev, 0.5), kvs_gpu_quantile(ev, 0.1), kvs_gpu_quantile(ev, 0.9), by, s.out, s.in,
                        by / kvs_gpu_quantile(ev, 0.5) / 1e3, reps);
                printf("gemv %-13s %-8s B=%d %6dx%-6d %8.2f us %6.0f GB/s (%zu nodes each)\n", g->name, s.what, B,
                       s.out, s.in, kvs_gpu_quantile(ev, 0.5), by / kvs_gpu_quantile(ev, 0.5) / 1e3, nn / reps);
                cudaGraphExecDestroy(ge);
                cudaGraphDestroy(gr);
            }
        }
        // ---- whole steps ----
        const std::vector<int> ctxs = quick ? std::vector<int>{8192} : std::vector<int>{8192, 32768, 131072};
        for (int ctx : ctxs)
            for (int B : {1, 8}) {
                const double free_b = gpu_mem - m.weight_bytes - 6e9;
                KV kv;
                int rc = kv_alloc(kv, g, ctx, B, P, std::min(free_b, 60e9));
                if (rc < 0) return 1;
                if (rc > 0) {
                    printf("e2e: refused %s ctx %d batch %d: a layer's KV (%.1f GB) leaves room for fewer than two "
                           "layer buffers\n",
                           g->name, ctx, B, kv.layer_bytes / 1e9);
                    fprintf(csv, "refused,%d,%s,%d,%d,%d,%d,%d,%d,%d,%d,%d,,0,0,0,,,%d,0,0,0,0,0,0,0,0,0,0,0,0,0,"
                                 "KV does not fit\n",
                            id++, g->name, g->L, g->hidden, g->H, g->Hkv, g->d, g->ffn, g->vocab, ctx, B, P);
                    continue;
                }
                Acts A;
                if (acts_alloc(A, g, B)) return 1;
                const int G = g->H / g->Hkv, p = ctx;   // new token at position ctx
                const int n = p + 1;
                const int nh = kv.nh;
                std::vector<ECfg> cfgs;
                for (int meth = 0; meth < 4; meth++) cfgs.push_back({g, ctx, B, meth, meth ? 0.01 : 1.0, 0});
                if (B == 1) {
                    cfgs.push_back({g, ctx, B, M_QUEST, 0.01, 1});
                    cfgs.push_back({g, ctx, B, M_COMPLETION, 0.01, 1});
                }
                if (B == 1 && ctx == 131072) cfgs.push_back({g, ctx, B, M_TOPK, 0.04, 0});
                for (const ECfg &c : cfgs) {
                    Sel S;
                    const long budget = (long)std::llround(c.frac * n);
                    // anchors: 4 sinks and 64 window tokens (topk); page-aligned for quest/completion
                    if (c.method == M_TOPK) {
                        S.a0 = 4;
                        S.w0 = n - 64;
                        S.w1 = n;
                        S.kk = (int)std::max<long>(0, budget - 68);
                        S.tok_stride = S.a0 + S.kk + 64;
                    } else if (c.method == M_QUEST || c.method == M_COMPLETION) {
                        S.a0 = P;
                        S.w0 = (n - 64) / P * P;
                        S.w1 = n;
                        S.kp = (int)std::max<long>(0, (budget - S.a0 - (S.w1 - S.w0)) / P);
                        S.tok_stride = S.a0 + S.kp * P + (S.w1 - S.w0);
                    }
                    const long toks = c.method == M_FULL ? n : S.tok_stride;
                    S.nsplit = kvs_cu_dec_nsplit(g->d, nh, toks);
                    kvs_cu_attn_shape sh = {B, g->Hkv, G, g->d, P, 1.0f / sqrtf((float)g->d), S.nsplit};
                    EK(S.part.alloc(kvs_cu_part_floats(&sh) * 4));
                    if (c.method != M_FULL) {
                        EK(S.work.alloc(kvs_cu_select_work_bytes(nh, G, n)));
                        EK(S.tok.alloc((size_t)nh * S.tok_stride * 4));
                        EK(S.ntok.alloc((size_t)nh * 4));
                        EK(S.pages.alloc((size_t)nh * std::max(1, S.kp) * 4));
                    }
                    if (c.method == M_COMPLETION) {
                        S.nchunk = std::max(1, S.kp * P / 32);
                        EK(S.sub.alloc((size_t)nh * std::max(1, S.kp) * sizeof(kvs_cu_entry)));
                        std::vector<int32_t> so(nh + 1);
                        for (int h = 0; h <= nh; h++) so[h] = h * S.kp;
                        EK(S.suboff.alloc(so.size() * 4));
                        EK(cudaMemcpy(S.suboff.p, so.data(), so.size() * 4, cudaMemcpyHostToDevice));
                        EK(S.wt.alloc((size_t)g->Hkv * g->d * S.R * 4));
                        EK(S.S.alloc((size_t)g->Hkv * S.R * g->d * 4));
                        EK(S.u.alloc((size_t)g->Hkv * S.R * 4));
                        EK(S.ck.alloc((size_t)g->Hkv * 4));
                        fillf_kernel<<<256, 256>>>(S.wt.as<float>(), (size_t)g->Hkv * g->d * S.R, 1.f, 31);
                        fillf_kernel<<<256, 256>>>(S.S.as<float>(), (size_t)g->Hkv * S.R * g->d, 1.f, 32);
                        fillf_kernel<<<256, 256>>>(S.u.as<float>(), (size_t)g->Hkv * S.R, 0.5f, 33);
                        EK(cudaMemset(S.ck.p, 0, (size_t)g->Hkv * 4));
                        kvs_cu_est_args ea;
                        ea.nchunk = S.nchunk;
                        ea.R = S.R;
                        EK(S.est.alloc(kvs_cu_est_floats(&sh, &ea) * 4));
                    }
                    // host placement: the whole cache also in pinned host memory (one
                    // layer's worth, shared by the layers: every step reads only the
                    // selected pages of it), a page table per layer buffer that the
                    // gather kernel repoints at HBM staging
                    Buf hostkv, hptab, sptab, staging;
                    if (c.host) {
                        if (c.method == M_FULL) continue;
                        EK(hostkv.alloc_host(kv.layer_bytes));
                        memset(hostkv.p, 0x11, kv.layer_bytes);
                        EK(hptab.alloc((size_t)nh * kv.np * 8));
                        ptab_kernel<<<(nh * kv.np + 255) / 256, 256>>>(hptab.as<uint64_t>(), (uint64_t)hostkv.p, nh,
                                                                       kv.np, kv.np, kv.blk);
                        EK(sptab.alloc((size_t)kv.nbuf * nh * kv.np * 8));
                        EK(cudaMemcpy(sptab.p, kv.ptab.p, sptab.n, cudaMemcpyDeviceToDevice));
                        EK(staging.alloc((size_t)kv.nbuf * nh * std::max(1, S.kp) * kv.blk));
                    }
                    // ---- capture the step ----
                    cudaGraph_t gr;
                    cudaGraphExec_t ge;
                    EK(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal));
                    embed_kernel<<<64, 256, 0, st>>>(m.emb.as<__nv_bfloat16>(), g->hidden, B, 1, A.x.as<__nv_bfloat16>());
                    for (int l = 0; l < g->L; l++) {
                        const int bi = l % kv.nbuf;
                        const uint64_t *pt = (c.host ? sptab.as<uint64_t>() : kv.ptab.as<uint64_t>()) +
                                             (size_t)bi * nh * kv.np;
                        rmsnorm_kernel<<<B, 256, 0, st>>>(A.x.as<__nv_bfloat16>(), m.n1[l]->as<__nv_bfloat16>(),
                                                          g->hidden, A.xn.as<__nv_bfloat16>());
                        if (gemv(hb, m.wqkv[l]->p, A.xn.p, A.qkv.p, (g->H + 2 * g->Hkv) * g->d, g->hidden, B, 0.f))
                            return 1;
                        rope_kernel<<<B, 256, 0, st>>>(A.qkv.as<__nv_bfloat16>(), g->H, g->Hkv, g->d, p, P,
                                                       kv.ptab.as<uint64_t>() + (size_t)bi * nh * kv.np, kv.np,
                                                       A.q.as<float>());
                        kvs_cu_paged pa;
                        pa.shape = sh;
                        pa.ptab = pt;
                        pa.ptab_stride = kv.np;
                        if (c.method == M_FULL) {
                            pa.tok = nullptr;
                            pa.tok_stride = 0;
                            pa.ntok = nullptr;
                            pa.ntok_all = n;
                        } else {
                            if (c.method == M_TOPK) {
                                EK(kvs_cu_topk_paged(nh, G, g->d, P, kv.ptab.as<uint64_t>() + (size_t)bi * nh * kv.np,
                                                     kv.np, p, sh.scale, A.q.as<float>(), S.a0, S.w0, S.kk, S.a0,
                                                     S.w0, S.w1, S.work.p, S.tok.as<int32_t>(), S.tok_stride,
                                                     S.ntok.as<int32_t>(), st));
                            } else {
                                const uint16_t *meta = kv.meta.as<uint16_t>() + (size_t)bi * nh * kv.np * 2 * g->d;
                                EK(kvs_cu_quest_pages(nh, G, g->d, kv.np, meta, sh.scale, A.q.as<float>(), 1,
                                                      S.w0 / P, S.kp, S.work.p, S.pages.as<int32_t>(), S.kp, st));
                                if (c.host)
                                    gather_sel_kernel<<<dim3(std::max(1, std::min(S.kp, 64)), nh), 256, 0, st>>>(
                                        S.pages.as<int32_t>(), S.kp, hptab.as<uint64_t>(), kv.np,
                                        (uint64_t)staging.p + (size_t)bi * nh * std::max(1, S.kp) * kv.blk, kv.blk,
                                        sptab.as<uint64_t>() + (size_t)bi * nh * kv.np);
                                EK(kvs_cu_quest_expand(nh, S.pages.as<int32_t>(), S.kp, P, S.a0, S.w0, S.w1, pt,
                                                       kv.np, S.tok.as<int32_t>(), S.tok_stride, S.ntok.as<int32_t>(),
                                                       c.method == M_COMPLETION ? S.sub.as<kvs_cu_entry>() : nullptr,
                                                       st));
                            }
                            pa.tok = S.tok.as<int32_t>();
                            pa.tok_stride = S.tok_stride;
                            pa.ntok = S.ntok.as<int32_t>();
                            pa.ntok_all = 0;
                        }
                        if (c.method == M_COMPLETION) {
                            kvs_cu_est_args ea;
                            ea.R = S.R;
                            ea.nchunk = S.nchunk;
                            ea.wt = S.wt.as<float>();
                            ea.S = S.S.as<float>();
                            ea.u = S.u.as<float>();
                            ea.ck = S.ck.as<float>();
                            ea.sub = S.sub.as<kvs_cu_entry>();
                            ea.sub_off = S.suboff.as<int32_t>();
                            EK(kvs_cu_completion_est(&sh, &ea, A.q.as<float>(), S.est.as<float>(), st));
                        }
                        EK(kvs_cu_attn_paged_partial(&pa, A.q.as<float>(), S.part.as<float>(), st));
                        EK(kvs_cu_attn_combine(&sh, S.part.as<float>(),
                                               c.method == M_COMPLETION ? S.est.as<float>() : nullptr, S.nchunk,
                                               A.o.as<float>(), nullptr, nullptr, st));
                        f2bf_kernel<<<64, 256, 0, st>>>(A.o.as<float>(), (size_t)B * g->H * g->d,
                                                        A.obf.as<__nv_bfloat16>());
                        if (gemv(hb, m.wo[l]->p, A.obf.p, A.x.p, g->hidden, g->H * g->d, B, 1.f)) return 1;
                        rmsnorm_kernel<<<B, 256, 0, st>>>(A.x.as<__nv_bfloat16>(), m.n2[l]->as<__nv_bfloat16>(),
                                                          g->hidden, A.xn.as<__nv_bfloat16>());
                        if (gemv(hb, m.wgu[l]->p, A.xn.p, A.gu.p, 2 * g->ffn, g->hidden, B, 0.f)) return 1;
                        swiglu_kernel<<<128, 256, 0, st>>>(A.gu.as<__nv_bfloat16>(), g->ffn, B, A.a.as<__nv_bfloat16>());
                        if (gemv(hb, m.wd[l]->p, A.a.p, A.x.p, g->hidden, g->ffn, B, 1.f)) return 1;
                    }
                    rmsnorm_kernel<<<B, 256, 0, st>>>(A.x.as<__nv_bfloat16>(), m.nf.as<__nv_bfloat16>(), g->hidden,
                                                      A.xn.as<__nv_bfloat16>());
                    if (gemv(hb, m.lm.p, A.xn.p, A.logits.p, g->vocab, g->hidden, B, 0.f)) return 1;
                    EK(cudaStreamEndCapture(st, &gr));
                    EK(cudaGraphInstantiate(&ge, gr, 0));
                    size_t nn = 0;
                    int nk = 0;
                    if (graph_counts(gr, &nn, &nk)) return -1;   // graph_counts said what failed
                    std::vector<double> ev, wall;
                    const int reps = quick ? 6 : (ctx >= 131072 && B == 8 ? 8 : 15);
                    bool bad = false;
                    for (int r = 0; r < reps + 3; r++) {
                        double t0 = kvs_gpu_now_us();
                        EK(cudaEventRecord(e0, st));
                        EK(cudaGraphLaunch(ge, st));
                        EK(cudaEventRecord(e1, st));
                        EK(cudaStreamSynchronize(st));
                        double t1 = kvs_gpu_now_us();
                        float ms;
                        EK(cudaEventElapsedTime(&ms, e0, e1));
                        if (r >= 3) {
                            ev.push_back(ms * 1e3);
                            wall.push_back(t1 - t0);
                        }
                    }
                    // sanity: the logits are finite
                    {
                        std::vector<uint16_t> lg(64);
                        EK(cudaMemcpy(lg.data(), A.logits.p, 128, cudaMemcpyDeviceToHost));
                        for (uint16_t v : lg)
                            if (((v >> 7) & 0xff) == 0xff) bad = true;
                        int nt = 0;
                        if (c.method != M_FULL) {
                            EK(cudaMemcpy(&nt, S.ntok.p, 4, cudaMemcpyDeviceToHost));
                            if (nt != S.tok_stride) bad = true;
                        }
                    }
                    const double kvb = (double)B * g->Hkv * toks * 2 * g->d * 2 * g->L;
                    const double fb = c.host ? (double)nh * S.kp * kv.blk * g->L : 0;
                    fprintf(csv, "step,%d,%s,%d,%d,%d,%d,%d,%d,%d,%d,%d,%s,%g,%ld,%d,%s,%s,%d,%d,%d,%zu,%d,%.2f,%.2f,"
                                 "%.2f,%.2f,%.0f,%.0f,%.0f,0,0,%s\n",
                            id, g->name, g->L, g->hidden, g->H, g->Hkv, g->d, g->ffn, g->vocab, ctx, B, mname[c.method],
                            c.frac, toks, S.kp, c.host ? "host" : "hbm", c.host ? "gather_kernel" : "none", P, kv.nbuf,
                            S.nsplit, nn, nk, kvs_gpu_quantile(ev, 0.5), kvs_gpu_quantile(ev, 0.1), kvs_gpu_quantile(ev, 0.9), kvs_gpu_quantile(wall, 0.5), kvb,
                            m.weight_bytes, fb, bad ? "BAD_OUTPUT" : "");
                    printf("e2e %3d %-13s ctx %6d B %d %-10s %-4s %-13s tok/head %6ld nodes %4zu: %9.1f us (wall %9.1f)%s\n",
                           id, g->name, ctx, B, mname[c.method], c.host ? "host" : "hbm",
                           c.host ? "gather_kernel" : "none", toks, nn, kvs_gpu_quantile(ev, 0.5), kvs_gpu_quantile(wall, 0.5),
                           bad ? "  BAD OUTPUT" : "");
                    fflush(stdout);
                    fails += bad;
                    id++;
                    cudaGraphExecDestroy(ge);
                    cudaGraphDestroy(gr);
                }
            }
    }
    fclose(csv);
    cublasDestroy(hb);
    printf("e2e: %d rows, %s\n", id, fails ? "SOME OUTPUTS BAD" : "all outputs finite");
    return fails ? 1 : 0;
}

// ======================================================================================
// compbench: the step's selection chains and the completion estimate alone
// ======================================================================================
namespace {

// ring copies of one layer's paged KV (fp16, page blocks K [P][d] then V [P][d])
// and their Quest metadata, as kv_alloc makes them for the e2e step
struct CRing {
    int ncopy = 0, np = 0, nh = 0;
    size_t blk = 0, layer_bytes = 0;
    Buf data, ptab, meta;
};

int cring_alloc(CRing &r, int nh, int d, int ctx, int P, size_t target, int cap)
{
    r.np = (ctx + 1 + P - 1) / P;
    r.nh = nh;
    r.blk = (size_t)4 * P * d;
    r.layer_bytes = (size_t)nh * r.np * r.blk;
    r.ncopy = (int)std::min<size_t>(cap, std::max<size_t>(2, (target + r.layer_bytes - 1) / r.layer_bytes));
    EK(r.data.alloc(r.layer_bytes * r.ncopy));
    EK(fill16(r.data.p, r.layer_bytes * r.ncopy / 2, 1.f, 91 + ctx + nh + d, 1));
    EK(r.ptab.alloc((size_t)r.ncopy * nh * r.np * 8));
    for (int c = 0; c < r.ncopy; c++)
        ptab_kernel<<<(nh * r.np + 255) / 256, 256>>>(r.ptab.as<uint64_t>() + (size_t)c * nh * r.np,
                                                       (uint64_t)r.data.p + c * r.layer_bytes, nh, r.np, r.np, r.blk);
    EK(r.meta.alloc((size_t)r.ncopy * nh * r.np * 2 * d * 2));
    for (int c = 0; c < r.ncopy; c++)
        EK(kvs_cu_quest_meta(nh, d, P, r.np, r.ptab.as<uint64_t>() + (size_t)c * nh * r.np, r.np,
                             r.meta.as<uint16_t>() + (size_t)c * nh * r.np * 2 * d, 0));
    EK(cudaDeviceSynchronize());
    return 0;
}

// the completion estimate's subtracted entries of ring copy c: the pages
// Quest chose (on copy 0), at copy c's addresses
__global__ void sub_kernel(const int32_t *__restrict__ pages, int kp, int nh, const uint64_t *__restrict__ ptab,
                           int ptab_stride, int P, kvs_cu_entry *__restrict__ sub)
{
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= nh * kp) return;
    const int h = i / kp;
    kvs_cu_entry e;
    e.addr = ptab[(size_t)h * ptab_stride + pages[i]];
    e.start = 0;
    e.count = P;
    sub[i] = e;
}

struct CTime {
    double per = NAN;          // slope: (t(nlong) - t(nshort)) / (nlong - nshort), us per chain
    double short_us = NAN, long_us = NAN, p10 = NAN, p90 = NAN;
    int nodes = 0, kernels = 0;
};

// Times `chain(i, st)` (one chain instance, ring copy i) captured nshort and
// nlong times back to back in one CUDA graph each, as the e2e step captures
// it; the per-chain time is the slope, so the graph launch drops out.
template <class F>
int time_chain(cudaStream_t st, cudaEvent_t e0, cudaEvent_t e1, int nshort, int nlong, int reps, F chain, CTime &out)
{
    double med[2];
    for (int pass = 0; pass < 2; pass++) {
        const int N = pass ? nlong : nshort;
        cudaGraph_t gr;
        cudaGraphExec_t ge;
        EK(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal));
        for (int i = 0; i < N; i++)
            if (chain(i, st)) {
                cudaStreamEndCapture(st, &gr);
                return -1;
            }
        EK(cudaStreamEndCapture(st, &gr));
        EK(cudaGraphInstantiate(&ge, gr, 0));
        size_t nn = 0;
        int nk = 0;
        if (graph_counts(gr, &nn, &nk)) return -1;   // graph_counts said what failed
        std::vector<double> ev;
        for (int r = 0; r < reps + 2; r++) {
            EK(cudaEventRecord(e0, st));
            EK(cudaGraphLaunch(ge, st));
            EK(cudaEventRecord(e1, st));
            EK(cudaStreamSynchronize(st));
            float ms;
            EK(cudaEventElapsedTime(&ms, e0, e1));
            if (r >= 2) ev.push_back(ms * 1e3);
        }
        med[pass] = kvs_gpu_quantile(ev, 0.5);
        if (pass) {
            out.long_us = med[1];
            out.p10 = kvs_gpu_quantile(ev, 0.1) / N;
            out.p90 = kvs_gpu_quantile(ev, 0.9) / N;
            out.nodes = (int)(nn / N);
            out.kernels = nk / N;
        } else {
            out.short_us = med[0];
        }
        cudaGraphExecDestroy(ge);
        cudaGraphDestroy(gr);
    }
    out.per = (med[1] - med[0]) / (nlong - nshort);
    return 0;
}

} // namespace

int kvs_gpu_cmd_compbench(int argc, char **argv)
{
    if (argc < 1) return 2;
    if (!have_gpu("compbench")) return 77;
    const bool quick = argc >= 2 && !strcmp(argv[1], "quick");
    FILE *csv = open_out("compbench", argv[0]);
    if (!csv) return 1;
    cudaStream_t st;
    EK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
    cudaEvent_t e0, e1;
    EK(cudaEventCreate(&e0));
    EK(cudaEventCreate(&e1));
    const int P = 16, R = 64, hkv = 8, NS = 4, NL = 16, REPS = 7;
    fprintf(csv, "kind,d,G,hkv,batch,problems,ctx,keys,pages,page,budget_frac,tokens_per_head,topk_kk,"
                 "pages_selected,nchunk,blocks,nodes,kernel_nodes,ncopy,us,p10_us,p90_us,short_us,long_us,"
                 "nshort,nlong,bytes,note\n");
    // per-node cost of empty kernels in a chain (the graph's floor)
    {
        CTime t;
        if (time_chain(st, e0, e1, 16, 64, 15, [](int, cudaStream_t s) {
                empty_k<<<1, 32, 0, s>>>();
                return (int)cudaGetLastError();
            }, t))
            return 1;
        fprintf(csv, "graph_empty,0,0,0,0,0,0,0,0,0,0,0,0,0,0,1,%d,%d,0,%.3f,%.3f,%.3f,%.2f,%.2f,16,64,0,\n", t.nodes,
                t.kernels, t.per, t.p10, t.p90, t.short_us, t.long_us);
        printf("compbench: empty kernel node in a chain: %.3f us\n", t.per);
    }
    // the step's five small kernels of a layer (2 RMSNorms, RoPE + KV write,
    // output cast, SwiGLU) at each model's geometry: graph_kernel_ns + graph_kernel_hidden_ns·hidden
    for (const char *mn : {"llama-3.2-1b", "llama-3.2-3b", "llama-3.1-8b"})
        for (int B : {1, 8}) {
            const Geo *g = geo_by_name(mn);
            Acts A;
            if (acts_alloc(A, g, B)) return 1;
            EK(cudaMemset(A.x.p, 0, A.x.n));
            EK(cudaMemset(A.qkv.p, 0, A.qkv.n));
            EK(cudaMemset(A.o.p, 0, A.o.n));
            EK(cudaMemset(A.gu.p, 0, A.gu.n));
            Buf w, kvd, kvp;
            EK(w.alloc((size_t)g->hidden * 2));
            EK(fill16(w.p, g->hidden, 1.f, 9, 0));
            const int nh = B * g->Hkv, np = 8192 / P + 1;
            const size_t blk = (size_t)4 * P * g->d;
            EK(kvd.alloc((size_t)nh * np * blk));
            EK(kvp.alloc((size_t)nh * np * 8));
            ptab_kernel<<<(nh * np + 255) / 256, 256>>>(kvp.as<uint64_t>(), (uint64_t)kvd.p, nh, np, np, blk);
            EK(cudaDeviceSynchronize());
            CTime t;
            if (time_chain(st, e0, e1, NS, NL, 15, [&](int, cudaStream_t s) {
                    rmsnorm_kernel<<<B, 256, 0, s>>>(A.x.as<__nv_bfloat16>(), w.as<__nv_bfloat16>(), g->hidden,
                                                     A.xn.as<__nv_bfloat16>());
                    rope_kernel<<<B, 256, 0, s>>>(A.qkv.as<__nv_bfloat16>(), g->H, g->Hkv, g->d, 8192, P,
                                                  kvp.as<uint64_t>(), np, A.q.as<float>());
                    f2bf_kernel<<<64, 256, 0, s>>>(A.o.as<float>(), (size_t)B * g->H * g->d, A.obf.as<__nv_bfloat16>());
                    rmsnorm_kernel<<<B, 256, 0, s>>>(A.x.as<__nv_bfloat16>(), w.as<__nv_bfloat16>(), g->hidden,
                                                     A.xn.as<__nv_bfloat16>());
                    swiglu_kernel<<<128, 256, 0, s>>>(A.gu.as<__nv_bfloat16>(), g->ffn, B, A.a.as<__nv_bfloat16>());
                    return (int)cudaGetLastError();
                }, t))
                return 1;
            fprintf(csv, "small5,%d,%d,%d,%d,%d,8192,0,%d,%d,0,0,0,0,0,%d,%d,%d,1,%.3f,%.3f,%.3f,%.2f,%.2f,%d,%d,0,%s\n",
                    g->d, g->H / g->Hkv, g->Hkv, B, nh, np, P, 3 * B + 192, t.nodes, t.kernels, t.per, t.p10, t.p90,
                    t.short_us, t.long_us, NS, NL, g->name);
            printf("compbench small5 %-13s B %d: %.2f us for the 5 small kernels of a layer (%.2f us each)\n", g->name,
                   B, t.per, t.per / 5);
        }
    const std::vector<int> ctxs = quick ? std::vector<int>{8192} : std::vector<int>{8192, 32768, 131072};
    int rows = 0, bad = 0;
    for (int d : {64, 128})
        for (int batch : {1, 8})
            for (int ctx : ctxs) {
                const int nh = hkv * batch;
                CRing ring;
                if (cring_alloc(ring, nh, d, ctx, P, (size_t)1 << 30, NL)) return 1;
                const int p = ctx, n = p + 1, np = ring.np;
                const long budget = std::lround(0.01 * n);
                // Top-K anchors as the e2e step: 4 sinks, 64 window tokens
                const int t_a0 = 4, t_w0 = n - 64, t_w1 = n, t_kk = (int)std::max<long>(0, budget - 68);
                const int t_stride = t_a0 + t_kk + 64;
                // Quest / completion: page 0 and the window's pages
                const int q_a0 = P, q_w0 = (n - 64) / P * P, q_w1 = n;
                const int kp = (int)std::max<long>(0, (budget - q_a0 - (q_w1 - q_w0)) / P);
                const int q_stride = q_a0 + kp * P + (q_w1 - q_w0);
                const int nchunk = std::max(1, kp * P / 32);
                Buf tok, ntok, pages, sub, suboff, wt, S, u, ck;
                EK(tok.alloc((size_t)nh * std::max(t_stride, q_stride) * 4));
                EK(ntok.alloc((size_t)nh * 4));
                EK(pages.alloc((size_t)nh * std::max(1, kp) * 4));
                EK(sub.alloc((size_t)ring.ncopy * nh * std::max(1, kp) * sizeof(kvs_cu_entry)));
                {
                    std::vector<int32_t> so(nh + 1);
                    for (int h = 0; h <= nh; h++) so[h] = h * kp;
                    EK(suboff.alloc(so.size() * 4));
                    EK(cudaMemcpy(suboff.p, so.data(), so.size() * 4, cudaMemcpyHostToDevice));
                }
                EK(wt.alloc((size_t)hkv * d * R * 4));
                EK(S.alloc((size_t)hkv * R * d * 4));
                EK(u.alloc((size_t)hkv * R * 4));
                EK(ck.alloc((size_t)hkv * 4));
                fillf_kernel<<<256, 256>>>(wt.as<float>(), (size_t)hkv * d * R, 1.f, 31);
                fillf_kernel<<<256, 256>>>(S.as<float>(), (size_t)hkv * R * d, 1.f, 32);
                fillf_kernel<<<256, 256>>>(u.as<float>(), (size_t)hkv * R, 0.5f, 33);
                EK(cudaMemset(ck.p, 0, (size_t)hkv * 4));
                for (int G : {1, 3, 4, 8}) {
                    const float scale = 1.0f / sqrtf((float)d);
                    Buf q, work, part, est, o;
                    EK(q.alloc((size_t)nh * G * d * 4));
                    fillf_kernel<<<64, 256>>>(q.as<float>(), (size_t)nh * G * d, 0.3f, 5 + G);
                    EK(work.alloc(std::max(kvs_cu_select_work_bytes(nh, G, n), kvs_cu_select_work_bytes(nh, G, np))));
                    auto ptab_of = [&](int c) { return ring.ptab.as<uint64_t>() + (size_t)(c % ring.ncopy) * nh * np; };
                    auto meta_of = [&](int c) {
                        return ring.meta.as<uint16_t>() + (size_t)(c % ring.ncopy) * nh * np * 2 * d;
                    };
                    auto sub_of = [&](int c) {
                        return sub.as<kvs_cu_entry>() + (size_t)(c % ring.ncopy) * nh * std::max(1, kp);
                    };
                    auto topk = [&](int c, cudaStream_t s) {
                        return kvs_cu_topk_paged(nh, G, d, P, ptab_of(c), np, p, scale, q.as<float>(), t_a0, t_w0,
                                                 t_kk, t_a0, t_w0, t_w1, work.p, tok.as<int32_t>(), t_stride,
                                                 ntok.as<int32_t>(), s);
                    };
                    auto quest = [&](int c, cudaStream_t s) {
                        int rc = kvs_cu_quest_pages(nh, G, d, np, meta_of(c), scale, q.as<float>(), 1, q_w0 / P, kp,
                                                    work.p, pages.as<int32_t>(), kp, s);
                        if (rc) return rc;
                        return kvs_cu_quest_expand(nh, pages.as<int32_t>(), kp, P, q_a0, q_w0, q_w1, ptab_of(c), np,
                                                   tok.as<int32_t>(), q_stride, ntok.as<int32_t>(), nullptr, s);
                    };
                    // sanity of both selections (counts), then Quest's pages of copy 0 for the rest
                    int nt = -1;
                    EK(topk(0, st));
                    EK(cudaStreamSynchronize(st));
                    EK(cudaMemcpy(&nt, ntok.p, 4, cudaMemcpyDeviceToHost));
                    const bool topk_ok = nt == t_stride;
                    EK(quest(0, st));
                    EK(cudaStreamSynchronize(st));
                    EK(cudaMemcpy(&nt, ntok.p, 4, cudaMemcpyDeviceToHost));
                    const bool quest_ok = nt == q_stride;
                    if (kp > 0)
                        for (int c = 0; c < ring.ncopy; c++)
                            sub_kernel<<<(nh * kp + 255) / 256, 256, 0, st>>>(pages.as<int32_t>(), kp, nh, ptab_of(c),
                                                                             np, P, sub_of(c));
                    EK(cudaStreamSynchronize(st));
                    kvs_cu_attn_shape sh = {batch, hkv, G, d, P, scale, kvs_cu_dec_nsplit(d, nh, q_stride)};
                    EK(part.alloc(kvs_cu_part_floats(&sh) * 4));
                    EK(o.alloc((size_t)nh * G * d * 4));
                    kvs_cu_est_args ea;
                    ea.R = R;
                    ea.nchunk = nchunk;
                    ea.wt = wt.as<float>();
                    ea.S = S.as<float>();
                    ea.u = u.as<float>();
                    ea.ck = ck.as<float>();
                    ea.sub_off = suboff.as<int32_t>();
                    EK(est.alloc(kvs_cu_est_floats(&sh, &ea) * 4));
                    auto estimate = [&](int c, cudaStream_t s) {
                        kvs_cu_est_args e = ea;
                        e.sub = sub_of(c);
                        return kvs_cu_completion_est(&sh, &e, q.as<float>(), est.as<float>(), s);
                    };
                    EK(estimate(0, st));   // once outside a capture (sets its shared-memory limit)
                    EK(cudaStreamSynchronize(st));
                    auto attn = [&](int c, cudaStream_t s, bool with_est) {
                        if (with_est) {
                            int rc = estimate(c, s);
                            if (rc) return rc;
                        }
                        kvs_cu_paged pa;
                        pa.shape = sh;
                        pa.ptab = ptab_of(c);
                        pa.ptab_stride = np;
                        pa.tok = tok.as<int32_t>();
                        pa.tok_stride = q_stride;
                        pa.ntok = ntok.as<int32_t>();
                        pa.ntok_all = 0;
                        int rc = kvs_cu_attn_paged_partial(&pa, q.as<float>(), part.as<float>(), s);
                        if (rc) return rc;
                        return kvs_cu_attn_combine(&sh, part.as<float>(), with_est ? est.as<float>() : nullptr,
                                                   nchunk, o.as<float>(), nullptr, nullptr, s);
                    };
                    struct Job {
                        const char *kind;
                        int which;
                    } jobs[] = {{"topk", 0}, {"quest", 1}, {"estimate", 2}, {"attn_sel", 3}, {"attn_sel_est", 4}};
                    for (const Job &j : jobs) {
                        CTime t;
                        int rc;
                        if (j.which == 0) rc = time_chain(st, e0, e1, NS, NL, REPS, topk, t);
                        else if (j.which == 1) rc = time_chain(st, e0, e1, NS, NL, REPS, quest, t);
                        else if (j.which == 2) rc = time_chain(st, e0, e1, NS, NL, REPS, estimate, t);
                        else if (j.which == 3)
                            rc = time_chain(st, e0, e1, NS, NL, REPS,
                                            [&](int c, cudaStream_t s) { return attn(c, s, false); }, t);
                        else
                            rc = time_chain(st, e0, e1, NS, NL, REPS,
                                            [&](int c, cudaStream_t s) { return attn(c, s, true); }, t);
                        if (rc) return 1;
                        // keys, bytes, blocks of the chain as kvsim counts them (kvs_gpu.h)
                        double keys = 0, bytes = 0;
                        long blocks = 0;
                        int toks = 0;
                        if (j.which == 0) {
                            keys = (double)nh * n;
                            bytes = (double)nh * n * ((double)d * 2 + 4.0 * G * 3 + 4.0 * 6);
                            blocks = (long)((n + 63) / 64) * nh;
                            toks = t_stride;
                        } else if (j.which == 1) {
                            keys = (double)nh * np;
                            bytes = (double)nh * np * (2.0 * d * 2 + 4.0 * G * 3 + 4.0 * 6);
                            blocks = (long)((np + 63) / 64) * nh;
                            toks = q_stride;
                        } else if (j.which == 2) {
                            keys = (double)nh * kp * P;   // tokens whose feature terms are subtracted
                            bytes = (double)nh * kp * P * 2 * d * 2 + (double)hkv * 4 * (2.0 * R * d + R);
                            blocks = (long)(nchunk + 1) * nh;
                            toks = kp * P;
                        } else {
                            keys = (double)nh * q_stride;
                            bytes = (double)nh * q_stride * 2 * d * 2;
                            blocks = (long)sh.nsplit * nh;
                            toks = q_stride;
                        }
                        const bool ok = j.which == 0 ? topk_ok : quest_ok;
                        bad += !ok;
                        fprintf(csv, "%s,%d,%d,%d,%d,%d,%d,%.0f,%d,%d,0.01,%d,%d,%d,%d,%ld,%d,%d,%d,%.3f,%.3f,%.3f,"
                                     "%.2f,%.2f,%d,%d,%.0f,%s\n",
                                j.kind, d, G, hkv, batch, nh, ctx, keys, np, P, toks, t_kk, kp, nchunk, blocks, t.nodes,
                                t.kernels, ring.ncopy, t.per, t.p10, t.p90, t.short_us, t.long_us, NS, NL, bytes,
                                ok ? "" : "BAD_COUNT");
                        printf("compbench %-12s d %3d G %d problems %2d ctx %6d: %9.2f us per chain (%d nodes, "
                               "%ld blocks)%s\n",
                               j.kind, d, G, nh, ctx, t.per, t.nodes, blocks, ok ? "" : "  BAD COUNT");
                        fflush(stdout);
                        rows++;
                    }
                    // attn_full: partial + combine over the whole context (no token
                    // list), as the e2e step's full method runs it inside the graph
                    {
                        kvs_cu_attn_shape shf = {batch, hkv, G, d, P, scale, kvs_cu_dec_nsplit(d, nh, n)};
                        Buf partf;
                        EK(partf.alloc(kvs_cu_part_floats(&shf) * 4));
                        CTime t;
                        if (time_chain(st, e0, e1, NS, NL, REPS, [&](int c, cudaStream_t s) {
                                kvs_cu_paged pa;
                                pa.shape = shf;
                                pa.ptab = ptab_of(c);
                                pa.ptab_stride = np;
                                pa.tok = nullptr;
                                pa.tok_stride = 0;
                                pa.ntok = nullptr;
                                pa.ntok_all = n;
                                int rc = kvs_cu_attn_paged_partial(&pa, q.as<float>(), partf.as<float>(), s);
                                if (rc) return rc;
                                return kvs_cu_attn_combine(&shf, partf.as<float>(), nullptr, 0, o.as<float>(), nullptr,
                                                           nullptr, s);
                            }, t))
                            return 1;
                        const double bytes = (double)nh * n * 2 * d * 2;
                        fprintf(csv, "attn_full,%d,%d,%d,%d,%d,%d,%d,%d,%d,1,%d,0,0,0,%ld,%d,%d,%d,%.3f,%.3f,%.3f,"
                                     "%.2f,%.2f,%d,%d,%.0f,\n",
                                d, G, hkv, batch, nh, ctx, nh * n, np, P, n, (long)shf.nsplit * nh, t.nodes, t.kernels,
                                ring.ncopy, t.per, t.p10, t.p90, t.short_us, t.long_us, NS, NL, bytes);
                        printf("compbench %-12s d %3d G %d problems %2d ctx %6d: %9.2f us per chain (%d nodes, "
                               "%ld blocks)\n",
                               "attn_full", d, G, nh, ctx, t.per, t.nodes, (long)shf.nsplit * nh);
                        fflush(stdout);
                        rows++;
                    }
                }
            }
    fclose(csv);
    cudaStreamDestroy(st);
    printf("compbench: %d rows, %s\n", rows, bad ? "SOME SELECTION COUNTS BAD" : "all selection counts ok");
    return bad ? 1 : 0;
}
