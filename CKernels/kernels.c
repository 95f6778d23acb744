#include "ckernels.h"
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <string.h>

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

// ---- elementwise -------------------------------------------------------------------------------
void zk_bias_forward(float *x, const float *bias, int M, int N) {
    #pragma omp parallel for schedule(static)
    for (int i = 0; i < M; i++) {
        float *row = x + (size_t)i * N;
        for (int j = 0; j < N; j++) row[j] += bias[j];
    }
}

static inline float gelu_erf(float x) { return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f)); }

void zk_gelu_forward(float *out, const float *inp, size_t n) {
    #pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) out[i] = gelu_erf(inp[i]);
}

void zk_bias_gelu_forward(float *x, const float *bias, int M, int N) {
    #pragma omp parallel for schedule(static)
    for (int i = 0; i < M; i++) {
        float *row = x + (size_t)i * N;
        for (int j = 0; j < N; j++) row[j] = gelu_erf(row[j] + bias[j]);
    }
}

void zk_residual_forward(float *out, const float *a, const float *b, size_t n) {
    #pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

static inline void layernorm_row(float *out, const float *x, const float *gamma, const float *beta, int N, float eps,
                                 float *mean_out, float *rstd_out) {
    float mean = 0.0f;
    for (int j = 0; j < N; j++) mean += x[j];
    mean /= (float)N;
    float var = 0.0f;
    for (int j = 0; j < N; j++) { float d = x[j] - mean; var += d * d; }
    var /= (float)N;
    float rstd = 1.0f / sqrtf(var + eps);
    for (int j = 0; j < N; j++) out[j] = (x[j] - mean) * rstd * gamma[j] + beta[j];
    if (mean_out) *mean_out = mean;
    if (rstd_out) *rstd_out = rstd;
}

void zk_layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                          const float *gamma, const float *beta, int M, int N, float eps) {
    #pragma omp parallel for schedule(static)
    for (int i = 0; i < M; i++)
        layernorm_row(out + (size_t)i * N, inp + (size_t)i * N, gamma, beta, N, eps,
                      mean ? mean + i : NULL, rstd ? rstd + i : NULL);
}

void zk_bias_residual_layernorm_forward(float *x, const float *bias, const float *residual,
                                        const float *gamma, const float *beta, int M, int N, float eps) {
    #pragma omp parallel for schedule(static)
    for (int i = 0; i < M; i++) {
        float *row = x + (size_t)i * N;
        const float *res = residual + (size_t)i * N;
        for (int j = 0; j < N; j++) row[j] += bias[j] + res[j];
        layernorm_row(row, row, gamma, beta, N, eps, NULL, NULL);
    }
}

static inline void softmax_row(float *s, int cols, int valid, float scale) {
    float mx = -INFINITY;
    for (int j = 0; j < valid; j++) { s[j] *= scale; if (s[j] > mx) mx = s[j]; }
    float sum = 0.0f;
    for (int j = 0; j < valid; j++) { s[j] = expf(s[j] - mx); sum += s[j]; }
    float inv = 1.0f / sum;
    for (int j = 0; j < valid; j++) s[j] *= inv;
    for (int j = valid; j < cols; j++) s[j] = 0.0f;
}

void zk_softmax_forward(float *scores, int rows, int cols, int valid_cols, float scale) {
    if (valid_cols > cols) valid_cols = cols;
    if (valid_cols < 1) valid_cols = cols;  // an all-masked row behaves like HF: uniform over all columns
    #pragma omp parallel for schedule(static)
    for (int i = 0; i < rows; i++) softmax_row(scores + (size_t)i * cols, cols, valid_cols, scale);
}

// ---- attention ---------------------------------------------------------------------------------
static size_t attention_scratch_per_thread(int S, int head_dim) {
    return (size_t)head_dim * S + (size_t)S * S;   // transposed keys + one head's score matrix
}
size_t zk_attention_scratch_floats(int S, int head_dim) {
    return attention_scratch_per_thread(S, head_dim) * (size_t)omp_get_max_threads();
}

void zk_attention_forward(float *out, const float *qkv, const int32_t *lengths,
                          int B, int S, int heads, int head_dim, float *scratch) {
    const int H = heads * head_dim, ld = 3 * H;
    const float scale = 1.0f / sqrtf((float)head_dim);
    const size_t per_thread = attention_scratch_per_thread(S, head_dim);
    #pragma omp parallel for schedule(static, 1)
    for (int bh = 0; bh < B * heads; bh++) {
        const int b = bh / heads, h = bh % heads;
        int L = lengths[b];
        if (L < 1 || L > S) L = S;
        float *kT = scratch + (size_t)omp_get_thread_num() * per_thread;   // [head_dim, L]
        float *sc = kT + (size_t)head_dim * S;                             // [S, L]
        const float *q = qkv + (size_t)b * S * ld + h * head_dim;
        const float *k = q + H, *v = q + 2 * H;
        for (int j = 0; j < L; j++)
            for (int d = 0; d < head_dim; d++) kT[(size_t)d * L + j] = k[(size_t)j * ld + d];
        for (int i = 0; i < S; i++) {
            float *srow = sc + (size_t)i * L;
            const float *qi = q + (size_t)i * ld;
            for (int j = 0; j < L; j++) srow[j] = 0.0f;
            for (int d = 0; d < head_dim; d++) {
                const float qd = qi[d], *kd = kT + (size_t)d * L;
                for (int j = 0; j < L; j++) srow[j] += qd * kd[j];
            }
            softmax_row(srow, L, L, scale);
            float *o = out + ((size_t)b * S + i) * H + h * head_dim;
            for (int d = 0; d < head_dim; d++) o[d] = 0.0f;
            for (int j = 0; j < L; j++) {
                const float p = srow[j], *vj = v + (size_t)j * ld;
                for (int d = 0; d < head_dim; d++) o[d] += p * vj[d];
            }
        }
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
