#include "ckernels.h"
#include "internal.h"
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <unistd.h>
#ifdef __linux__
#include <malloc.h>
#include <sys/prctl.h>
#endif

extern char *openblas_get_corename(void);
extern void openblas_set_num_threads(int);

static int g_threads = 1;

// One thread pool: OpenMP's. OpenBLAS runs single-threaded inside it, each OpenMP thread computing
// its own slice of the output, so the two runtimes never wait for or spin against each other.
void zk_set_threads(int n) {
    if (n < 1) n = 1;
    g_threads = n;
    omp_set_num_threads(n);
    openblas_set_num_threads(1);
}
int zk_get_threads(void) { return g_threads; }
#ifdef __linux__
void zk_configure_allocator(void) { mallopt(M_MMAP_THRESHOLD, 1 << 20); }
int zk_die_with_parent(int parent) { return prctl(PR_SET_PDEATHSIG, SIGKILL) == 0 && getppid() == parent; }
#else   // macOS: the system allocator already returns large blocks; no parent-death signal (a child checks only that its parent is alive)
void zk_configure_allocator(void) {}
int zk_die_with_parent(int parent) { return getppid() == parent; }
#endif
const char *zk_blas_corename(void) { return openblas_get_corename(); }

#ifdef ZK_X86
int zk_cpu_has_avx512(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
}
int zk_cpu_has_avx2(void) { __builtin_cpu_init(); return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"); }
#else
int zk_cpu_has_avx512(void) { return 0; }
int zk_cpu_has_avx2(void) { return 0; }
#endif

// ---- peak ------------------------------------------------------------------------------------
// fp32 FMA peak at the SIMD level in use: every thread runs `iters` rounds of 12 independent vector
// FMAs (16 wide with AVX-512, 8 with AVX2). 0 at the generic level (no FMA loop of known width).
#ifdef ZK_X86
__attribute__((target("avx512f"))) static double fma_loop_avx512(long iters) {
    __m512 a[12];
    const __m512 b = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-7f);
    for (int i = 0; i < 12; i++) a[i] = _mm512_set1_ps((float)i);
    for (long n = 0; n < iters; n++)
        for (int i = 0; i < 12; i++) a[i] = _mm512_fmadd_ps(a[i], b, c);
    float s = 0;
    for (int i = 0; i < 12; i++) s += _mm512_reduce_add_ps(a[i]);
    return s;
}
__attribute__((target("avx2,fma"))) static double fma_loop_avx2(long iters) {
    __m256 a[12];
    const __m256 b = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
    for (int i = 0; i < 12; i++) a[i] = _mm256_set1_ps((float)i);
    for (long n = 0; n < iters; n++)
        for (int i = 0; i < 12; i++) a[i] = _mm256_fmadd_ps(a[i], b, c);
    float s = 0, t[8];
    for (int i = 0; i < 12; i++) { _mm256_storeu_ps(t, a[i]); for (int j = 0; j < 8; j++) s += t[j]; }
    return s;
}
#endif
// Best of 3 runs (the peak is what the machine can do) of `loop(iters)` on every thread, as 1e9 ×
// `ops` (operations per round of the loop) per second. The loops return a value so that their work
// is not optimised away.
double zk__peak_rate(double (*loop)(long), long iters, double ops) {
    volatile double sink = 0;
    double best = 0;
    for (int run = 0; run < 3; run++) {
        const double t0 = omp_get_wtime();
        #pragma omp parallel num_threads(g_threads)
        { const double s = loop(iters);
          #pragma omp atomic
          sink += s; }
        const double rate = (double)g_threads * iters * ops / (omp_get_wtime() - t0) / 1e9;
        if (rate > best) best = rate;
    }
    return best;
}
double zk_fma_peak_gflops(long iters) {
    const int level = zk_simd_level();
#ifdef ZK_X86
    if (level != ZK_SIMD_GENERIC)   // 12 FMAs of 16 or 8 floats per round, a multiply and an add each
        return zk__peak_rate(level == ZK_SIMD_AVX512 ? fma_loop_avx512 : fma_loop_avx2, iters, 2.0 * 12 * (level == ZK_SIMD_AVX512 ? 16 : 8));
#endif
    (void)level;
    return 0;
}

// ---- GEMM --------------------------------------------------------------------------------------
// Splits the output columns into one slice per thread (multiples of 16 wide) and runs OpenBLAS
// single-threaded on each slice. `trans_b`: B is [N,K] (a Linear weight) rather than [K,N].
static void sgemm_split(int trans_b, int M, int N, int K, const float *A, int lda, const float *B, int ldb,
                        float beta, float *C, int ldc) {
    int parts = g_threads;
    if (N < 32 * parts || (double)M * N * K < 2e5 || omp_in_parallel()) parts = 1;
    #pragma omp parallel for schedule(static) num_threads(parts) if (parts > 1)
    for (int p = 0; p < parts; p++) {
        int n0, n1;
        slice(N, p, parts, 16, &n0, &n1);
        const float *Bp = trans_b ? B + (size_t)n0 * ldb : B + n0;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, M, n1 - n0, K, 1.0f,
                    A, lda, Bp, ldb, beta, C + n0, ldc);
    }
}

void zk_sgemm_nt(int M, int N, int K, const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc) {
    sgemm_split(1, M, N, K, A, lda, B, ldb, beta, C, ldc);
}
void zk_sgemm_nn(int M, int N, int K, const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc) {
    sgemm_split(0, M, N, K, A, lda, B, ldb, beta, C, ldc);
}

// C[M,N] = A[K,M]ᵀ · B[K,N] + beta·C, the rows of C (columns of A) split across threads.
void zk_sgemm_tn(int M, int N, int K, const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc) {
    int parts = g_threads;
    if (M < 16 * parts || (double)M * N * K < 2e5 || omp_in_parallel()) parts = 1;
    #pragma omp parallel for schedule(static) num_threads(parts) if (parts > 1)
    for (int p = 0; p < parts; p++) {
        int m0, m1;
        slice(M, p, parts, 16, &m0, &m1);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, m1 - m0, N, K, 1.0f, A + m0, lda, B, ldb, beta, C + (size_t)m0 * ldc, ldc);
    }
}
void zk_linear_forward(float *out, const float *inp, const float *weight, const float *bias, int M, int N, int K) {
    zk_sgemm_nt(M, N, K, inp, K, weight, K, 0.0f, out, N);
    if (bias) zk_bias_forward(out, bias, M, N);
}

// ---- dropout's keep decision ------------------------------------------------------------------------
// Element i is kept by a hash of (seed, i): forward and backward agree without storing a mask, and
// a run is reproducible whatever the thread count.
static inline int zk_keep(uint64_t seed, size_t i, float p) {
    uint64_t z = seed + 0x9E3779B97F4A7C15ull * (i + 1);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (float)(z >> 40) * (1.0f / 16777216.0f) >= p;
}

// ---- the three compiled copies of the row workers, and run-time selection ------------------------
#define ZK(name) name##_generic
#include "rows.h"
#undef ZK
#ifdef ZK_X86
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#define ZK(name) name##_avx2
#define ZK_AVX2 1
#include "rows.h"
#undef ZK
#undef ZK_AVX2
#pragma clang attribute pop
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma"))), apply_to = function)
#define ZK(name) name##_avx512
#define ZK_AVX512 1
#include "rows.h"
#undef ZK
#undef ZK_AVX512
#pragma clang attribute pop
#endif

typedef void (*act_row_fn)(float *, const float *, int);
typedef void (*act_backward_row_fn)(float *, const float *, const float *, int);
typedef struct {
    act_row_fn act_row[4];                    // by ZK_ACT_* code: x = act(x + bias)
    act_backward_row_fn act_backward_row[4];  // by ZK_ACT_* code: dx = dy · act'(x)
    void (*layernorm_row)(float *, const float *, const float *, const float *, int, float, float *, float *);
    void (*bias_residual_layernorm_row)(float *, const float *, const float *, const float *, const float *, int, float);
    void (*softmax_row)(float *, int, int, float);
    void (*attention_head)(float *, int, const float *, const float *, const float *, int, int, int, int, float, float *);
    void (*linear_tile)(float *, int, const float *, int, int, const float *, int, int, int, const float *, int);
    int linear_rows;                          // rows of one linear_tile call (ZK_LR)
    void (*dropout_row)(float *, int, float, uint64_t, size_t);
    void (*attention_train_head)(float *, int, float *, int, const float *, const float *, const float *, int, int, int,
                                 float, float, uint64_t, size_t, float *);
    void (*attention_backward_head)(float *, float *, float *, const float *, int, const float *, const float *, const float *,
                                    const float *, int, int, int, float, float, uint64_t, size_t, float *);
} zk_rows;

#define ZK_TABLE(sfx) { {bias_row_##sfx, gelu_row_##sfx, gelu_tanh_row_##sfx, relu_row_##sfx},                                    \
                       {identity_backward_row_##sfx, gelu_backward_row_##sfx, gelu_tanh_backward_row_##sfx, relu_backward_row_##sfx}, \
                       layernorm_row_##sfx, bias_residual_layernorm_row_##sfx, softmax_row_##sfx, attention_head_##sfx,             \
                       linear_tile_##sfx, linear_rows_##sfx, dropout_row_##sfx, attention_train_head_##sfx, attention_backward_head_##sfx }
#ifdef ZK_X86
static const zk_rows rows_by_level[3] = {ZK_TABLE(generic), ZK_TABLE(avx2), ZK_TABLE(avx512)};
#else
static const zk_rows rows_by_level[3] = {ZK_TABLE(generic), ZK_TABLE(generic), ZK_TABLE(generic)};
#endif
static int g_simd = -1;   // -1: not decided yet; else a ZK_SIMD_* level

int zk_simd_max(void) { return zk_cpu_has_avx512() ? ZK_SIMD_AVX512 : zk_cpu_has_avx2() ? ZK_SIMD_AVX2 : ZK_SIMD_GENERIC; }

static const char *const simd_names[3] = {"generic", "avx2", "avx512"};   // by ZK_SIMD_* level
int zk_simd_parse(const char *name) {
    for (int i = 0; i < 3; i++) if (name && strcmp(name, simd_names[i]) == 0) return i;
    return -1;
}
const char *zk_simd_name(int level) { return simd_names[level == ZK_SIMD_AVX512 || level == ZK_SIMD_AVX2 ? level : ZK_SIMD_GENERIC]; }

// The CPU's best level, capped by ZOO_SIMD when set (an unknown value is refused by the zoo at start-up).
static int default_level(void) {
    const int max = zk_simd_max(), want = zk_simd_parse(getenv("ZOO_SIMD"));
    return want >= 0 && want < max ? want : max;
}
int zk_simd_level(void) {
    if (g_simd < 0) g_simd = default_level();
    return g_simd;
}
void zk_set_simd(int level) {
    const int max = zk_simd_max();
    g_simd = level < 0 ? default_level() : level < max ? level : max;
}
static const zk_rows *R(void) { return &rows_by_level[zk_simd_level()]; }
void zk__act_row(float *x, int n, int act) { R()->act_row[act](x, NULL, n); }
void zk__check_act(int act) {
    if (act < ZK_ACT_NONE || act > ZK_ACT_RELU) {
        fprintf(stderr, "CKernels: unknown activation code %d (ZK_ACT_* in ckernels.h)\n", act);
        abort();
    }
}

// ---- packed-weight GEMM (the encoder's Linear layers) ---------------------------------------------
// Weights are packed once at load into panels of 32 output features: panel p holds, for every k,
// the 32 values W[32p .. 32p+31][k] side by side (zero-padded past N), so the micro-kernel streams
// them contiguously. Blocking: K in blocks of ZK_KC (a panel slice of ZK_KC×32 floats stays in L1/L2),
// rows in blocks of ZK_MC (an A block of ZK_MC×ZK_KC floats stays in L2).
#define ZK_NR 32
#define ZK_MR 8   // rows of a thread's slice are a multiple of this
#define ZK_KC 768
#define ZK_MC 128

size_t zk_packed_weight_floats(int N, int K) { return (size_t)((N + ZK_NR - 1) / ZK_NR) * ZK_NR * K; }

void zk_pack_weight(float *packed, const float *W, int N, int K) {
    const int panels = (N + ZK_NR - 1) / ZK_NR;
    #pragma omp parallel for schedule(static)
    for (int p = 0; p < panels; p++)
        for (int k = 0; k < K; k++) {
            float *dst = packed + ((size_t)p * K + k) * ZK_NR;
            for (int j = 0; j < ZK_NR; j++) {
                const int n = p * ZK_NR + j;
                dst[j] = n < N ? W[(size_t)n * K + k] : 0.0f;
            }
        }
}

// The rows [m0, m1) × panels [p0, p1) of out = act(inp · W^T + bias), K-blocked.
static void linear_block(const zk_rows *r, float *out, const float *inp, const float *packed, const float *bias,
                         int N, int K, int act, int m0, int m1, int p0, int p1) {
    for (int k0 = 0; k0 < K; k0 += ZK_KC) {
        const int kc = K - k0 < ZK_KC ? K - k0 : ZK_KC;
        const int last = k0 + kc == K;
        for (int i0 = m0; i0 < m1; i0 += ZK_MC) {
            const int i1 = i0 + ZK_MC < m1 ? i0 + ZK_MC : m1;
            for (int p = p0; p < p1; p++) {
                const int n0 = p * ZK_NR, w = N - n0 < ZK_NR ? N - n0 : ZK_NR;
                const float *bp = packed + ((size_t)p * K + k0) * ZK_NR;
                for (int i = i0; i < i1; i += r->linear_rows)
                    r->linear_tile(out + (size_t)i * N + n0, N, inp + (size_t)i * K + k0, K, i1 - i < r->linear_rows ? i1 - i : r->linear_rows,
                                   bp, kc, w, k0 > 0, last && bias ? bias + n0 : NULL, last ? act : ZK_ACT_NONE);
            }
        }
    }
}

void zk_linear_packed_forward(float *out, const float *inp, const float *packed, const float *bias,
                              int M, int N, int K, int act) {
    zk__check_act(act);
    const zk_rows *r = R();
    const int panels = (N + ZK_NR - 1) / ZK_NR;
    const int threads = omp_in_parallel() ? 1 : g_threads;
    #pragma omp parallel num_threads(threads) if (threads > 1)
    {
        const int nth = omp_get_num_threads(), t = omp_get_thread_num();
        if (M >= ZK_MC * nth) {   // many rows: each thread takes its own rows, all panels
            int m0, m1;
            slice(M, t, nth, ZK_MR, &m0, &m1);
            linear_block(r, out, inp, packed, bias, N, K, act, m0, m1, 0, panels);
        } else {                  // few rows: each thread takes its own panels, all rows
            int p0, p1;
            slice(panels, t, nth, 1, &p0, &p1);
            linear_block(r, out, inp, packed, bias, N, K, act, 0, M, p0, p1);
        }
    }
}

// ---- elementwise -------------------------------------------------------------------------------
void zk_bias_forward(float *x, const float *bias, int M, int N) {
    #pragma omp parallel for schedule(static)
    for (int i = 0; i < M; i++) {
        float *row = x + (size_t)i * N;
        for (int j = 0; j < N; j++) row[j] += bias[j];
    }
}

// Chunks of 4096 floats: each copied (when out ≠ inp) and transformed while it is in L1.
void zk_activation_forward(float *out, const float *inp, size_t n, int act) {
    zk__check_act(act);
    const act_row_fn row = R()->act_row[act];
    const size_t chunk = 4096;
    #pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i += chunk) {
        const int len = (int)(n - i < chunk ? n - i : chunk);
        if (out != inp) memcpy(out + i, inp + i, (size_t)len * sizeof(float));
        row(out + i, NULL, len);
    }
}

void zk_gelu_forward(float *out, const float *inp, size_t n) { zk_activation_forward(out, inp, n, ZK_ACT_GELU); }

void zk_bias_gelu_forward(float *x, const float *bias, int M, int N) {
    const act_row_fn row = R()->act_row[ZK_ACT_GELU];
    #pragma omp parallel for schedule(static)
    for (int i = 0; i < M; i++) row(x + (size_t)i * N, bias, N);
}

void zk_residual_forward(float *out, const float *a, const float *b, size_t n) {
    #pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

void zk_layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                          const float *gamma, const float *beta, int M, int N, float eps) {
    const zk_rows *r = R();
    #pragma omp parallel for schedule(static)
    for (int i = 0; i < M; i++)
        r->layernorm_row(out + (size_t)i * N, inp + (size_t)i * N, gamma, beta, N, eps,
                         mean ? mean + i : NULL, rstd ? rstd + i : NULL);
}

void zk_bias_residual_layernorm_forward(float *x, const float *bias, const float *residual,
                                        const float *gamma, const float *beta, int M, int N, float eps) {
    const zk_rows *r = R();
    #pragma omp parallel for schedule(static)
    for (int i = 0; i < M; i++)
        r->bias_residual_layernorm_row(x + (size_t)i * N, bias, residual + (size_t)i * N, gamma, beta, N, eps);
}

void zk_softmax_forward(float *scores, int rows, int cols, int valid_cols, float scale) {
    if (valid_cols > cols) valid_cols = cols;
    if (valid_cols < 1) valid_cols = cols;  // an all-masked row behaves like HF: uniform over all columns
    const zk_rows *r = R();
    #pragma omp parallel for schedule(static)
    for (int i = 0; i < rows; i++) r->softmax_row(scores + (size_t)i * cols, cols, valid_cols, scale);
}

// ---- attention ---------------------------------------------------------------------------------
// Keys^T, probabilities, context (8-row tiles, 32 wide) of the fp32 worker; also enough for the bf16
// one (bf16.c: key and value pairs d·Lp words, scores 8·Lp, probability pairs 4·Lp, query pairs 4·d).
size_t zk__attention_scratch_per_thread(int S, int head_dim) {
    const size_t Lp = (size_t)(S + 31) / 32 * 32, Dp = (size_t)(head_dim + 31) / 32 * 32;
    return (size_t)head_dim * Lp + 12 * Lp + 8 * Dp + 16;
}
int zk__packed_offsets(const int32_t *lengths, int B, size_t *tok) {
    int longest = 0;
    size_t t = 0;
    for (int b = 0; b < B; t += (size_t)lengths[b], b++) { tok[b] = t; if (lengths[b] > longest) longest = lengths[b]; }
    return longest;
}
size_t zk_attention_scratch_floats(int S, int head_dim) {
    return zk__attention_scratch_per_thread(S, head_dim) * (size_t)omp_get_max_threads();
}

void zk_attention_forward(float *out, const float *qkv, const int32_t *lengths,
                          int B, int S, int heads, int head_dim, float *scratch) {
    const int H = heads * head_dim, ld = 3 * H;
    const float scale = 1.0f / sqrtf((float)head_dim);
    const size_t per_thread = zk__attention_scratch_per_thread(S, head_dim);
    const zk_rows *r = R();
    #pragma omp parallel for schedule(static, 1)
    for (int bh = 0; bh < B * heads; bh++) {
        const int b = bh / heads, h = bh % heads;
        int L = lengths[b];
        if (L < 1 || L > S) L = S;
        const float *q = qkv + (size_t)b * S * ld + h * head_dim;
        r->attention_head(out + (size_t)b * S * H + h * head_dim, H, q, q + H, q + 2 * H, ld, S, L, head_dim, scale,
                          scratch + (size_t)omp_get_thread_num() * per_thread);
    }
}

// Packed sequences (no padding): sequence b is lengths[b] consecutive rows of qkv [T, 3A] / out [T, A].
// The same per-head worker as above, each sequence attending over its own L tokens.
void zk_attention_packed_forward(float *out, const float *qkv, const int32_t *lengths,
                                 int B, int heads, int head_dim, float *scratch) {
    const int A = heads * head_dim, ld = 3 * A;
    const float scale = 1.0f / sqrtf((float)head_dim);
    size_t *tok = malloc(sizeof(size_t) * (size_t)B);
    const int longest = zk__packed_offsets(lengths, B, tok);
    const size_t per_thread = zk__attention_scratch_per_thread(longest, head_dim);
    const zk_rows *r = R();
    #pragma omp parallel for schedule(static, 1)
    for (int bh = 0; bh < B * heads; bh++) {
        const int b = bh / heads, h = bh % heads, L = lengths[b];
        const float *q = qkv + tok[b] * ld + h * head_dim;
        r->attention_head(out + tok[b] * A + h * head_dim, A, q, q + A, q + 2 * A, ld, L, L, head_dim, scale,
                          scratch + (size_t)omp_get_thread_num() * per_thread);
    }
    free(tok);
}

// ---- training attention, activation backward, dropout (their SIMD copies live in rows.h) -----------
void zk_activation_backward(float *dinp, const float *inp, const float *dout, size_t n, int act) {
    zk__check_act(act);
    const act_backward_row_fn row = R()->act_backward_row[act];
    const size_t chunk = 4096;
    #pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i += chunk) row(dinp + i, inp + i, dout + i, (int)(n - i < chunk ? n - i : chunk));
}

void zk_gelu_backward(float *dinp, const float *inp, const float *dout, size_t n) {
    zk_activation_backward(dinp, inp, dout, n, ZK_ACT_GELU);
}

// Scratch floats of one training attention head over L tokens, enough for the forward and the
// backward worker in rows.h (8-row tiles, 32 wide).
static size_t train_attention_scratch(int L, int head_dim) {
    const size_t Lp = (size_t)(L + 31) / 32 * 32, Dp = (size_t)(head_dim + 31) / 32 * 32, dh = (size_t)head_dim;
    return dh * Lp + 2 * (size_t)L * (Lp > dh ? Lp : dh) + 16 * Lp + 8 * Dp;
}

// Where each packed sequence starts: tokens[b] = Σ_{c<b} lengths[c], probs[b] = heads · Σ_{c<b} lengths[c]²;
// returns the longest length (the scratch size).
static int packed_offsets(const int32_t *lengths, int B, int heads, size_t *tokens, size_t *probs) {
    size_t p = 0;
    for (int b = 0; b < B; b++) { probs[b] = p; p += (size_t)heads * (size_t)lengths[b] * (size_t)lengths[b]; }
    return zk__packed_offsets(lengths, B, tokens);
}

void zk_attention_train_forward(float *out, float *probs, const float *qkv, const int32_t *lengths, const uint64_t *seeds,
                                int B, int heads, int head_dim, float p_drop) {
    const int H = heads * head_dim, ld = 3 * H;
    const float scale = 1.0f / sqrtf((float)head_dim);
    const zk_rows *r = R();
    size_t *tok = malloc(sizeof(size_t) * 2 * (size_t)B), *pr = tok + B;
    const int longest = packed_offsets(lengths, B, heads, tok, pr);
    // Without probs, each thread keeps one row tile of probabilities (8 rows, ZK_TR in rows.h, × L) after its scratch.
    const size_t own = train_attention_scratch(longest, head_dim), tile = probs ? 0 : (size_t)8 * longest;
    #pragma omp parallel
    {
        float *scratch = malloc(sizeof(float) * (own + tile));
        #pragma omp for schedule(static, 1)   // round robin: lengths differ (dynamic needs a newer libomp)
        for (int bh = 0; bh < B * heads; bh++) {
            const int b = bh / heads, h = bh % heads, L = lengths[b];
            const size_t base = (size_t)h * L * L;
            const float *q = qkv + tok[b] * ld + h * head_dim;
            r->attention_train_head(out + tok[b] * H + h * head_dim, H, probs ? probs + pr[b] + base : scratch + own, !probs,
                                    q, q + H, q + 2 * H, ld, L, head_dim, scale, p_drop, seeds ? seeds[b] : 0, base, scratch);
        }
        free(scratch);
    }
    free(tok);
}

void zk_attention_backward(float *dqkv, const float *dout, const float *qkv, const float *probs, const int32_t *lengths,
                           const uint64_t *seeds, int B, int heads, int head_dim, float p_drop) {
    const int H = heads * head_dim, ld = 3 * H;
    const float scale = 1.0f / sqrtf((float)head_dim);
    const zk_rows *r = R();
    size_t *tok = malloc(sizeof(size_t) * 2 * (size_t)B), *pr = tok + B;
    const int longest = packed_offsets(lengths, B, heads, tok, pr);
    #pragma omp parallel
    {
        float *scratch = malloc(sizeof(float) * train_attention_scratch(longest, head_dim));
        #pragma omp for schedule(static, 1)   // round robin: lengths differ (dynamic needs a newer libomp)
        for (int bh = 0; bh < B * heads; bh++) {
            const int b = bh / heads, h = bh % heads, L = lengths[b];
            const size_t base = (size_t)h * L * L, o = tok[b] * ld + h * head_dim;
            r->attention_backward_head(dqkv + o, dqkv + o + H, dqkv + o + 2 * H, dout + tok[b] * H + h * head_dim, H,
                                       probs + pr[b] + base, qkv + o, qkv + o + H, qkv + o + 2 * H, ld, L, head_dim,
                                       scale, p_drop, seeds[b], base, scratch);
        }
        free(scratch);
    }
    free(tok);
}

void zk_dropout_forward(float *x, size_t n, float p, uint64_t seed) {
    if (p <= 0) return;
    const zk_rows *r = R();
    const size_t chunk = 4096;
    #pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i += chunk) r->dropout_row(x + i, (int)(n - i < chunk ? n - i : chunk), p, seed, i);
}

void zk_dropout_backward(float *dx, size_t n, float p, uint64_t seed) { zk_dropout_forward(dx, n, p, seed); }

// ---- embeddings / pooling ----------------------------------------------------------------------
void zk_embedding_forward(float *x, const int32_t *type_ids, int B, int S, const float *position,
                          const float *type_emb, int H) {
    #pragma omp parallel for schedule(static)
    for (int bt = 0; bt < B * S; bt++) {
        const float *p = position + (size_t)(bt % S) * H;
        float *o = x + (size_t)bt * H;
        if (type_emb) {
            const float *ty = type_emb + (size_t)(type_ids ? type_ids[bt] : 0) * H;
            for (int j = 0; j < H; j++) o[j] = (o[j] + ty[j]) + p[j];   // HF's order: (word + type) + position
        } else {
            for (int j = 0; j < H; j++) o[j] += p[j];                   // DistilBERT: word + position
        }
    }
}

void zk_mean_pool_forward(float *out, const float *hidden, const int32_t *lengths, int B, int S, int H) {
    #pragma omp parallel for schedule(static)
    for (int b = 0; b < B; b++) {
        int L = lengths[b];
        if (L < 1 || L > S) L = S;
        float *o = out + (size_t)b * H;
        for (int j = 0; j < H; j++) o[j] = 0.0f;
        for (int t = 0; t < L; t++) {
            const float *x = hidden + ((size_t)b * S + t) * H;
            for (int j = 0; j < H; j++) o[j] += x[j];
        }
        for (int j = 0; j < H; j++) o[j] /= (float)L;
    }
}

// ---- Symmetric eigen-decomposition (LAPACK dsyev, in OpenBLAS) ----------------------------------
// Fortran ABI: arguments by pointer, the lengths of the two character arguments passed at the end.
extern void dsyev_(const char *jobz, const char *uplo, const int *n, double *a, const int *lda, double *w,
                   double *work, const int *lwork, int *info, size_t jobz_len, size_t uplo_len);

int zk_symmetric_eigen(int n, double *a, double *w) {
    int info = 0, lwork = -1;
    double query = 0;
    dsyev_("V", "U", &n, a, &n, w, &query, &lwork, &info, 1, 1);
    if (info != 0) return info;
    lwork = (int)query;
    double *work = malloc(sizeof(double) * (size_t)lwork);
    if (!work) return -1000;
    dsyev_("V", "U", &n, a, &n, w, work, &lwork, &info, 1, 1);
    free(work);
    return info;
}
