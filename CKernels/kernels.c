#include "ckernels.h"
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <string.h>
#include <immintrin.h>

extern char *openblas_get_corename(void);
extern char *openblas_get_config(void);
extern void openblas_set_num_threads(int);

static int g_threads = 1;

void zk_set_threads(int n) {
    if (n < 1) n = 1;
    g_threads = n;
    omp_set_num_threads(n);
    openblas_set_num_threads(n);
}
int zk_get_threads(void) { return g_threads; }
const char *zk_blas_corename(void) { return openblas_get_corename(); }
const char *zk_blas_config(void) { return openblas_get_config(); }

int zk_cpu_has_avx512(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
}
int zk_cpu_has_avx2(void) { __builtin_cpu_init(); return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"); }
int zk_cpu_has_vnni(void) { __builtin_cpu_init(); return __builtin_cpu_supports("avx512vnni"); }

// ---- GEMM --------------------------------------------------------------------------------------
void zk_sgemm_nt(int M, int N, int K, const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, A, lda, B, ldb, beta, C, ldc);
}
void zk_sgemm_nn(int M, int N, int K, const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, N, K, 1.0f, A, lda, B, ldb, beta, C, ldc);
}
void zk_linear_forward(float *out, const float *inp, const float *weight, const float *bias, int M, int N, int K) {
    zk_sgemm_nt(M, N, K, inp, K, weight, K, 0.0f, out, N);
    if (bias) zk_bias_forward(out, bias, M, N);
}

// ---- the two compiled copies of the row workers, and run-time selection --------------------------
#define ZK(name) name##_generic
#include "rows.h"
#undef ZK
#undef ZK_TR
#undef ZK_TC
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma"))), apply_to = function)
#define ZK(name) name##_avx512
#define ZK_AVX512 1
#include "rows.h"
#undef ZK
#undef ZK_AVX512
#undef ZK_TR
#undef ZK_TC
#pragma clang attribute pop

typedef struct {
    void (*gelu_row)(float *, const float *, int);
    void (*layernorm_row)(float *, const float *, const float *, const float *, int, float, float *, float *);
    void (*bias_residual_layernorm_row)(float *, const float *, const float *, const float *, const float *, int, float);
    void (*softmax_row)(float *, int, int, float);
    void (*attention_head)(float *, int, const float *, const float *, const float *, int, int, int, int, float, float *);
} zk_rows;

#define ZK_TABLE(sfx) { gelu_row_##sfx, layernorm_row_##sfx, bias_residual_layernorm_row_##sfx, softmax_row_##sfx, attention_head_##sfx }
static const zk_rows rows_generic = ZK_TABLE(generic), rows_avx512 = ZK_TABLE(avx512);
static int g_simd = -1;   // -1: not decided yet; 0: generic; 1: AVX-512

static const zk_rows *R(void) {
    if (g_simd < 0) g_simd = zk_cpu_has_avx512();
    return g_simd ? &rows_avx512 : &rows_generic;
}
void zk_set_simd(int level) { g_simd = level < 0 ? zk_cpu_has_avx512() : (level && zk_cpu_has_avx512()); }
int zk_get_simd(void) { R(); return g_simd; }

// ---- elementwise -------------------------------------------------------------------------------
void zk_bias_forward(float *x, const float *bias, int M, int N) {
    #pragma omp parallel for schedule(static)
    for (int i = 0; i < M; i++) {
        float *row = x + (size_t)i * N;
        for (int j = 0; j < N; j++) row[j] += bias[j];
    }
}

void zk_gelu_forward(float *out, const float *inp, size_t n) {
    const zk_rows *r = R();
    const size_t chunk = 4096;
    if (out != inp) memcpy(out, inp, n * sizeof(float));
    #pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i += chunk) r->gelu_row(out + i, NULL, (int)(n - i < chunk ? n - i : chunk));
}

void zk_bias_gelu_forward(float *x, const float *bias, int M, int N) {
    const zk_rows *r = R();
    #pragma omp parallel for schedule(static)
    for (int i = 0; i < M; i++) r->gelu_row(x + (size_t)i * N, bias, N);
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
static size_t attention_scratch_per_thread(int S, int head_dim) {
    const size_t Lp = (size_t)(S + 31) / 32 * 32, Dp = (size_t)(head_dim + 31) / 32 * 32;
    return (size_t)head_dim * Lp + 8 * Lp + 8 * Dp + 16;   // keys^T, probabilities, context (8-row tiles, 32 wide)
}
size_t zk_attention_scratch_floats(int S, int head_dim) {
    return attention_scratch_per_thread(S, head_dim) * (size_t)omp_get_max_threads();
}

void zk_attention_forward(float *out, const float *qkv, const int32_t *lengths,
                          int B, int S, int heads, int head_dim, float *scratch) {
    const int H = heads * head_dim, ld = 3 * H;
    const float scale = 1.0f / sqrtf((float)head_dim);
    const size_t per_thread = attention_scratch_per_thread(S, head_dim);
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

// ---- embeddings / pooling ----------------------------------------------------------------------
void zk_embedding_forward(float *out, const int32_t *ids, const int32_t *type_ids, int B, int S,
                          const float *word, const float *position, const float *type_emb, int H) {
    #pragma omp parallel for schedule(static)
    for (int bt = 0; bt < B * S; bt++) {
        const int t = bt % S;
        const float *w = word + (size_t)ids[bt] * H, *p = position + (size_t)t * H;
        const float *ty = type_emb + (size_t)(type_ids ? type_ids[bt] : 0) * H;
        float *o = out + (size_t)bt * H;
        for (int j = 0; j < H; j++) o[j] = w[j] + ty[j] + p[j];
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
