// CKernels on their own, without Swift: the kernels a forward and a training step use, against
// naive double-precision references written here, each with an explicit error threshold (ggml's
// test-backend-ops style). Runs at every SIMD level the CPU has and at 1 and 2 threads (1 only
// under qemu, see tools/ckernels_test.sh). Built by
// tools/ckernels_test.sh natively and cross-compiled for arm64 (run under qemu-aarch64 in .ci/run),
// where it is the test of the portable C that arm64 runs.
// Prints one line per check and closes with "N passed, N failed"; exits 1 on any failure.
#include "ckernels.h"
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int passed, failed;
static char where[64];   // "<simd level>, <threads> threads"

static void check(const char *what, double worst, double limit) {
    const int ok = worst <= limit;   // NaN fails
    printf("%s %-34s %-20s worst %.3g (limit %.3g)\n", ok ? "ok  " : "FAIL", what, where, worst, limit);
    if (ok) passed++; else failed++;
}

static uint64_t rng = 7;
static float uniform(void) {   // [-1, 1)
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((rng >> 40) * (1.0 / 8388608.0) - 1.0);
}
static float *randoms(size_t n, float scale) {
    float *x = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) x[i] = scale * uniform();
    return x;
}
static double max_abs_diff(const float *a, const double *b, size_t n) {
    double w = 0;
    for (size_t i = 0; i < n; i++) { const double d = fabs(a[i] - b[i]); w = d > w || d != d ? d : w; }
    return w;
}

// out = act(inp·Wᵀ + bias) with the packed kernel, odd shapes (partial panels, K not a multiple of
// any vector width, two K blocks). Sums of K products of size ≤ 1 in fp32: measured ≤ 6e-8·K on
// x86-64 (every level), limit 2e-7·K (the same for the BLAS path and the backward's sums).
static void test_linear(void) {
    const int shapes[][3] = {{1, 5, 3}, {13, 70, 131}, {37, 96, 800}, {130, 33, 64}};
    for (int s = 0; s < 4; s++) {
        const int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
        float *x = randoms((size_t)M * K, 1), *w = randoms((size_t)N * K, 1), *b = randoms(N, 1);
        float *packed = malloc(zk_packed_weight_floats(N, K) * sizeof(float)), *out = malloc((size_t)M * N * sizeof(float));
        double *ref = malloc((size_t)M * N * sizeof(double));
        zk_pack_weight(packed, w, N, K);
        for (int act = ZK_ACT_NONE; act <= ZK_ACT_RELU; act++) {
            zk_linear_packed_forward(out, x, packed, b, M, N, K, act);
            for (int m = 0; m < M; m++)
                for (int n = 0; n < N; n++) {
                    double y = b[n];
                    for (int k = 0; k < K; k++) y += (double)x[(size_t)m * K + k] * w[(size_t)n * K + k];
                    if (act == ZK_ACT_GELU) y = 0.5 * y * (1 + erf(y / sqrt(2.0)));
                    if (act == ZK_ACT_GELU_TANH) y = 0.5 * y * (1 + tanh(sqrt(2 / M_PI) * (y + 0.044715 * y * y * y)));
                    if (act == ZK_ACT_RELU) y = y > 0 ? y : 0;
                    ref[(size_t)m * N + n] = y;
                }
            char what[64];
            snprintf(what, sizeof what, "packed linear %dx%dx%d act %d", M, N, K, act);
            check(what, max_abs_diff(out, ref, (size_t)M * N), 2e-7 * K);
        }
        // The BLAS path (zk_linear_forward) and the Linear backward, against the same references.
        zk_linear_forward(out, x, w, b, M, N, K);
        for (int m = 0; m < M; m++)
            for (int n = 0; n < N; n++) {
                double y = b[n];
                for (int k = 0; k < K; k++) y += (double)x[(size_t)m * K + k] * w[(size_t)n * K + k];
                ref[(size_t)m * N + n] = y;
            }
        check("BLAS linear", max_abs_diff(out, ref, (size_t)M * N), 2e-7 * K);
        float *dout = randoms((size_t)M * N, 1), *dx = malloc((size_t)M * K * sizeof(float));
        float *dw = calloc((size_t)N * K, sizeof(float)), *db = calloc(N, sizeof(float));
        double *rdx = malloc((size_t)M * K * sizeof(double)), *rdw = malloc((size_t)N * K * sizeof(double)), *rdb = malloc(N * sizeof(double));
        zk_linear_backward(dx, dw, db, dout, x, w, M, N, K);
        for (int m = 0; m < M; m++)
            for (int k = 0; k < K; k++) {
                double g = 0;
                for (int n = 0; n < N; n++) g += (double)dout[(size_t)m * N + n] * w[(size_t)n * K + k];
                rdx[(size_t)m * K + k] = g;
            }
        for (int n = 0; n < N; n++) {
            double gb = 0;
            for (int m = 0; m < M; m++) gb += dout[(size_t)m * N + n];
            rdb[n] = gb;
            for (int k = 0; k < K; k++) {
                double g = 0;
                for (int m = 0; m < M; m++) g += (double)dout[(size_t)m * N + n] * x[(size_t)m * K + k];
                rdw[(size_t)n * K + k] = g;
            }
        }
        check("linear backward dx", max_abs_diff(dx, rdx, (size_t)M * K), 2e-7 * N);
        check("linear backward dw", max_abs_diff(dw, rdw, (size_t)N * K), 2e-7 * M);
        check("linear backward db", max_abs_diff(db, rdb, N), 2e-7 * M);
        free(x); free(w); free(b); free(packed); free(out); free(ref);
        free(dout); free(dx); free(dw); free(db); free(rdx); free(rdw); free(rdb);
    }
}

// LayerNorm (eps 1e-12, rows of 384 around mean 3) and softmax with masked columns: measured ≤ 6e-7
// and 1e-8 on x86-64, limits 2e-6 and 5e-8.
static void test_rows(void) {
    const int M = 9, N = 384;
    float *x = randoms((size_t)M * N, 2), *g = randoms(N, 1), *be = randoms(N, 1), *out = malloc((size_t)M * N * sizeof(float));
    double *ref = malloc((size_t)M * N * sizeof(double));
    for (size_t i = 0; i < (size_t)M * N; i++) x[i] += 3;
    zk_layernorm_forward(out, NULL, NULL, x, g, be, M, N, 1e-12f);
    for (int m = 0; m < M; m++) {
        double mean = 0, var = 0;
        for (int j = 0; j < N; j++) mean += x[m * N + j];
        mean /= N;
        for (int j = 0; j < N; j++) var += (x[m * N + j] - mean) * (x[m * N + j] - mean);
        var /= N;
        for (int j = 0; j < N; j++) ref[m * N + j] = (x[m * N + j] - mean) / sqrt(var + 1e-12) * g[j] + be[j];
    }
    check("layernorm", max_abs_diff(out, ref, (size_t)M * N), 2e-6);
    const int cols = 70, valid = 53;
    float *s = randoms((size_t)M * cols, 8);
    for (int m = 0; m < M; m++) {
        double mx = -1e30, sum = 0;
        for (int j = 0; j < valid; j++) mx = fmax(mx, 0.125 * s[m * cols + j]);
        for (int j = 0; j < valid; j++) sum += exp(0.125 * s[m * cols + j] - mx);
        for (int j = 0; j < cols; j++) ref[m * cols + j] = j < valid ? exp(0.125 * s[m * cols + j] - mx) / sum : 0;
    }
    zk_softmax_forward(s, M, cols, valid, 0.125f);
    check("softmax (masked columns)", max_abs_diff(s, ref, (size_t)M * cols), 5e-8);
    free(x); free(g); free(be); free(out); free(ref); free(s);
}

// Attention over a padded batch (heads 3, head_dim 26 as TinyBERT-312/12: partial tiles), keys past
// each length masked: measured ≤ 1.5e-7 on x86-64, limit 1e-6.
static void test_attention(void) {
    const int B = 3, S = 37, heads = 3, dh = 26, H = heads * dh;
    const int32_t lengths[3] = {37, 5, 20};
    float *qkv = randoms((size_t)B * S * 3 * H, 1), *out = malloc((size_t)B * S * H * sizeof(float));
    float *scratch = malloc(zk_attention_scratch_floats(S, dh) * sizeof(float));
    double *ref = malloc((size_t)B * S * H * sizeof(double)), *p = malloc(S * sizeof(double));
    zk_attention_forward(out, qkv, lengths, B, S, heads, dh, scratch);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < heads; h++)
            for (int i = 0; i < S; i++) {
                const float *q = qkv + ((size_t)b * S + i) * 3 * H + h * dh;
                double mx = -1e30, sum = 0;
                for (int j = 0; j < lengths[b]; j++) {
                    const float *k = qkv + ((size_t)b * S + j) * 3 * H + H + h * dh;
                    double d = 0;
                    for (int t = 0; t < dh; t++) d += (double)q[t] * k[t];
                    p[j] = d / sqrt((double)dh);
                    mx = fmax(mx, p[j]);
                }
                for (int j = 0; j < lengths[b]; j++) { p[j] = exp(p[j] - mx); sum += p[j]; }
                for (int t = 0; t < dh; t++) {
                    double c = 0;
                    for (int j = 0; j < lengths[b]; j++) c += p[j] / sum * qkv[((size_t)b * S + j) * 3 * H + 2 * H + h * dh + t];
                    ref[((size_t)b * S + i) * H + h * dh + t] = c;
                }
            }
    check("attention (padded, masked)", max_abs_diff(out, ref, (size_t)B * S * H), 1e-6);
    free(qkv); free(out); free(scratch); free(ref); free(p);
}

// GELU (erf form) on [-8, 8]: the erf approximation's 1.5e-7 (A&S 7.1.26, rows.h) times |x|/2 ≤ 4,
// plus rounding: limit 1e-6 absolute.
static void test_gelu(void) {
    const int n = 4001;
    float *x = malloc(n * sizeof(float)), *y = malloc(n * sizeof(float));
    double *ref = malloc(n * sizeof(double));
    for (int i = 0; i < n; i++) { x[i] = -8 + 16.0f * i / (n - 1); ref[i] = 0.5 * x[i] * (1 + erf(x[i] / sqrt(2.0))); }
    zk_gelu_forward(y, x, n);
    check("gelu", max_abs_diff(y, ref, n), 1e-6);
    free(x); free(y); free(ref);
}

// The int8 GEMM: exact int32 sums (weights in [-127, 127], the quantizer's range) for every kernel.
static void test_int8(void) {
    const int M = 13, N = 70, K = 131, K4 = zk_qpad_k(K);
    uint8_t *a = malloc((size_t)M * K4);
    int8_t *w = malloc((size_t)N * K), *packed = malloc(zk_qpacked_weight_bytes(N, K));
    int32_t *colsum = malloc(N * sizeof(int32_t)), *c = malloc((size_t)M * N * sizeof(int32_t));
    memset(a, 128, (size_t)M * K4);
    for (int m = 0; m < M; m++) for (int k = 0; k < K; k++) a[m * K4 + k] = m % 3 == 0 ? (k % 2 ? 255 : 0) : (uint8_t)(rng = rng * 6364136223846793005ull + 1, rng >> 56);
    for (int i = 0; i < N * K; i++) { rng = rng * 6364136223846793005ull + 1; const int v = (int)(int8_t)(rng >> 56); w[i] = (int8_t)(i % 5 == 0 ? (i % 2 ? 127 : -127) : v < -127 ? -127 : v); }
    zk_qpack_weight(packed, colsum, w, N, K);
    for (int level = 0; level <= zk_int8_max(); level++) {
        zk_set_int8_kernel(level);
        zk_qgemm_s32(c, a, packed, colsum, M, N, K);
        double worst = 0;
        for (int m = 0; m < M; m++)
            for (int n = 0; n < N; n++) {
                int32_t s = 0;
                for (int k = 0; k < K; k++) s += ((int32_t)a[m * K4 + k] - 128) * w[n * K + k];
                worst = fmax(worst, fabs((double)c[m * N + n] - s));
            }
        char what[64];
        snprintf(what, sizeof what, "int8 GEMM exact (%s)", zk_int8_name(level));
        check(what, worst, 0);
    }
    zk_set_int8_kernel(-1);
    free(a); free(w); free(packed); free(colsum); free(c);
}

// driver [MAX_THREADS]: thread counts 1 … MAX_THREADS (default 2).
int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);   // a line at a time, also into a pipe or a log
    const int max_threads = argc > 1 ? atoi(argv[1]) : 2;
    for (int level = 0; level <= zk_simd_max(); level++) {
        zk_set_simd(level);
        for (int threads = 1; threads <= max_threads; threads++) {
            zk_set_threads(threads);
            snprintf(where, sizeof where, "%s, %d threads", zk_simd_name(level), threads);
            test_linear();
            test_rows();
            test_attention();
            test_gelu();
            test_int8();
        }
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
