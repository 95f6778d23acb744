// int8 Linear layers (Q-BERT): u8×s8→s32 GEMM with AVX-512 VNNI (`vpdpbusd`), a scalar fallback
// giving bit-identical int32 results, per-row activation quantization and a fused dequantizing
// epilogue (scales, bias, optional GELU).
//
// Signed activations: a row x is quantized to q = round(x·127/max|x|) ∈ [-127, 127] and stored as the
// unsigned byte q + 128, because vpdpbusd multiplies unsigned bytes by signed bytes. Then
//   Σ_k (q+128)·w = Σ_k q·w + 128·Σ_k w,
// so each output column subtracts 128·colsum[n], computed once when the weights are packed.
// Products are at most 255·127 and four of them are summed per instruction into int32, so nothing
// saturates (unlike vpmaddubsw's int16 pairs).
#include "ckernels.h"
#include "internal.h"
#include <immintrin.h>
#include <math.h>
#include <omp.h>
#include <string.h>

#define QK_NR 64   // output features per packed panel (4 zmm of 16 int32)
#define QK_MR 6    // rows per register tile: 6 × 4 = 24 accumulators
#define QK_MC 96   // rows per block (an A block of 96 × K bytes stays in L2)

int zk_cpu_has_vnni(void) {
    __builtin_cpu_init();
    return zk_cpu_has_avx512() && __builtin_cpu_supports("avx512vnni");
}

static int g_int8 = -1;   // -1: not decided; 0: scalar; 1: AVX-512 VNNI
static int use_vnni(void) {
    if (g_int8 < 0) g_int8 = zk_cpu_has_vnni();
    return g_int8;
}
void zk_set_int8_kernel(int level) { g_int8 = level < 0 ? zk_cpu_has_vnni() : (level && zk_cpu_has_vnni()); }
int zk_int8_kernel(void) { return use_vnni(); }

int zk_qpad_k(int K) { return (K + 3) / 4 * 4; }

size_t zk_qpacked_weight_bytes(int N, int K) { return (size_t)((N + QK_NR - 1) / QK_NR) * QK_NR * zk_qpad_k(K); }

// Panel p, k-group g (4 consecutive k) holds 64 columns × 4 bytes: byte ((g·64 + j)·4 + t) is
// W[64p + j][4g + t], zero past N and K. One zmm load = 16 columns × 4 k, vpdpbusd's operand layout.
void zk_qpack_weight(int8_t *packed, int32_t *colsum, const int8_t *W, int N, int K) {
    const int K4 = zk_qpad_k(K), panels = (N + QK_NR - 1) / QK_NR;
    #pragma omp parallel for schedule(static)
    for (int p = 0; p < panels; p++) {
        int8_t *dst = packed + (size_t)p * QK_NR * K4;
        for (int g = 0; g < K4 / 4; g++)
            for (int j = 0; j < QK_NR; j++)
                for (int t = 0; t < 4; t++) {
                    const int n = p * QK_NR + j, k = 4 * g + t;
                    dst[((size_t)g * QK_NR + j) * 4 + t] = n < N && k < K ? W[(size_t)n * K + k] : 0;
                }
    }
    for (int n = 0; n < N; n++) {
        int32_t s = 0;
        for (int k = 0; k < K; k++) s += W[(size_t)n * K + k];
        colsum[n] = s;
    }
}

// x rounded half to even and clamped to ±qmax: the one rounding rule of activations and weights.
static inline float qround(float x, float qmax) {
    const float v = nearbyintf(x);
    return v > qmax ? qmax : v < -qmax ? -qmax : v;
}

// ---- activation quantization ------------------------------------------------------------------
// Both copies round half to even (cvtps2dq under the default MXCSR, qround in C) and clamp to
// ±127, so they write the same bytes.
static void quantize_row_generic(uint8_t *q, float *scale, const float *x, int K, int K4) {
    float m = 0;
    for (int k = 0; k < K; k++) { const float a = fabsf(x[k]); m = a > m ? a : m; }
    const float inv = m > 0 ? 127.0f / m : 0.0f;
    *scale = m / 127.0f;
    for (int k = 0; k < K; k++) q[k] = (uint8_t)((int)qround(x[k] * inv, 127.0f) + 128);
    for (int k = K; k < K4; k++) q[k] = 128;   // zero after the shift
}
__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq")))
static void quantize_row_avx512(uint8_t *q, float *scale, const float *x, int K, int K4) {
    __m512 mx = _mm512_setzero_ps();
    int k = 0;
    for (; k + 16 <= K; k += 16) mx = _mm512_max_ps(mx, _mm512_abs_ps(_mm512_loadu_ps(x + k)));
    float m = _mm512_reduce_max_ps(mx);
    for (; k < K; k++) { const float a = fabsf(x[k]); m = a > m ? a : m; }
    const float inv = m > 0 ? 127.0f / m : 0.0f;
    *scale = m / 127.0f;
    const __m512 vinv = _mm512_set1_ps(inv);
    const __m512i lo = _mm512_set1_epi32(-127), hi = _mm512_set1_epi32(127), shift = _mm512_set1_epi32(128);
    for (k = 0; k + 16 <= K; k += 16) {
        __m512i v = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(x + k), vinv));
        v = _mm512_add_epi32(_mm512_min_epi32(_mm512_max_epi32(v, lo), hi), shift);
        _mm_storeu_si128((__m128i *)(q + k), _mm512_cvtepi32_epi8(v));
    }
    for (; k < K; k++) q[k] = (uint8_t)((int)qround(x[k] * inv, 127.0f) + 128);
    for (; k < K4; k++) q[k] = 128;
}

void zk_quantize_rows(uint8_t *q, float *scale, const float *x, int M, int K) {
    const int K4 = zk_qpad_k(K), avx = use_vnni();   // the fallback path is portable C throughout
    #pragma omp parallel for schedule(static) if (M > 16 && !omp_in_parallel())
    for (int i = 0; i < M; i++)
        (avx ? quantize_row_avx512 : quantize_row_generic)(q + (size_t)i * K4, scale + i, x + (size_t)i * K, K, K4);
}

// ---- tiles --------------------------------------------------------------------------------------
// What to do with a finished tile: keep exact int32 (tests), or dequantize into floats.
typedef struct {
    int32_t *c32;                       // exact mode: C[M,N] = Σ_k ·W
    float *out;                         // float mode: out[M,N] = act(sa·sw·(Σ_k ·W) + bias)
    const float *ascale, *wscale, *bias;
    int act;                            // ZK_ACT_* code, applied row by row after the tile's store
} qsink;

// One register tile: rows i..i+R-1 × panel columns n0..n0+w-1, over all K4 bytes of the packed
// panel Bp. R is a compile-time row count so the R × 4 accumulators live in zmm registers; the
// epilogue (compensation, scales, bias) runs on them before the single store.
#define VNNI_TILE(R)                                                                                    \
    __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni"))) static void tile_vnni_##R( \
        const qsink *s, const uint8_t *A, int lda, const int8_t *Bp, int K4, const int32_t *colsum,    \
        int i, int n0, int w, int N) {                                                                 \
        __m512i c[R][4];                                                                               \
        _Pragma("unroll") for (int r = 0; r < R; r++)                                                  \
            _Pragma("unroll") for (int v = 0; v < 4; v++) c[r][v] = _mm512_setzero_si512();            \
        for (int k = 0; k < K4; k += 4) {                                                              \
            const int8_t *b = Bp + (size_t)k * QK_NR;                                                  \
            const __m512i b0 = _mm512_loadu_si512(b), b1 = _mm512_loadu_si512(b + 64),                \
                          b2 = _mm512_loadu_si512(b + 128), b3 = _mm512_loadu_si512(b + 192);          \
            _Pragma("unroll") for (int r = 0; r < R; r++) {                                            \
                int32_t a4;                                                                            \
                memcpy(&a4, A + (size_t)r * lda + k, 4);                                               \
                const __m512i a = _mm512_set1_epi32(a4);                                               \
                c[r][0] = _mm512_dpbusd_epi32(c[r][0], a, b0);                                         \
                c[r][1] = _mm512_dpbusd_epi32(c[r][1], a, b1);                                         \
                c[r][2] = _mm512_dpbusd_epi32(c[r][2], a, b2);                                         \
                c[r][3] = _mm512_dpbusd_epi32(c[r][3], a, b3);                                         \
            }                                                                                          \
        }                                                                                              \
        _Pragma("unroll") for (int v = 0; v < 4; v++) {                                                \
            const int j = 16 * v;                                                                      \
            if (j >= w) break;                                                                         \
            const __mmask16 m = w - j >= 16 ? 0xFFFF : (__mmask16)((1u << (w - j)) - 1);               \
            const __m512i comp = _mm512_slli_epi32(_mm512_maskz_loadu_epi32(m, colsum + n0 + j), 7);   \
            if (s->c32) {                                                                              \
                _Pragma("unroll") for (int r = 0; r < R; r++)                                          \
                    _mm512_mask_storeu_epi32(s->c32 + (size_t)(i + r) * N + n0 + j, m, _mm512_sub_epi32(c[r][v], comp)); \
                continue;                                                                              \
            }                                                                                          \
            const __m512 sw = _mm512_maskz_loadu_ps(m, s->wscale + n0 + j);                            \
            const __m512 bias = s->bias ? _mm512_maskz_loadu_ps(m, s->bias + n0 + j) : _mm512_setzero_ps(); \
            _Pragma("unroll") for (int r = 0; r < R; r++) {                                            \
                const __m512 f = _mm512_cvtepi32_ps(_mm512_sub_epi32(c[r][v], comp));                 \
                const __m512 scale = _mm512_mul_ps(_mm512_set1_ps(s->ascale[i + r]), sw);              \
                _mm512_mask_storeu_ps(s->out + (size_t)(i + r) * N + n0 + j, m, _mm512_fmadd_ps(f, scale, bias)); \
            }                                                                                          \
        }                                                                                              \
        if (s->out && s->act)                                                                          \
            for (int r = 0; r < R; r++) zk__act_row(s->out + (size_t)(i + r) * N + n0, w, s->act);     \
    }
VNNI_TILE(1) VNNI_TILE(2) VNNI_TILE(3) VNNI_TILE(4) VNNI_TILE(5) VNNI_TILE(6)
typedef void (*tile_fn)(const qsink *, const uint8_t *, int, const int8_t *, int, const int32_t *, int, int, int, int);
static const tile_fn tiles_vnni[QK_MR + 1] = {NULL, tile_vnni_1, tile_vnni_2, tile_vnni_3, tile_vnni_4, tile_vnni_5, tile_vnni_6};

// The portable fallback: the same sums and the same epilogue in plain C (the int32 sums are exact,
// so both kernels give bit-identical int32 results).
static void tile_scalar(const qsink *s, const uint8_t *A, int lda, const int8_t *Bp, int K4, const int32_t *colsum,
                        int i, int rows, int n0, int w, int N) {
    int32_t acc[QK_NR];
    for (int r = 0; r < rows; r++) {
        memset(acc, 0, sizeof acc);
        const uint8_t *a = A + (size_t)r * lda;
        for (int k = 0; k < K4; k += 4) {
            const int8_t *b = Bp + (size_t)k * QK_NR;
            for (int j = 0; j < QK_NR; j++)
                acc[j] += a[k] * b[4 * j] + a[k + 1] * b[4 * j + 1] + a[k + 2] * b[4 * j + 2] + a[k + 3] * b[4 * j + 3];
        }
        for (int j = 0; j < w; j++) {
            const int32_t v = acc[j] - 128 * colsum[n0 + j];
            if (s->c32) s->c32[(size_t)(i + r) * N + n0 + j] = v;
            else s->out[(size_t)(i + r) * N + n0 + j] = (float)v * (s->ascale[i + r] * s->wscale[n0 + j]) + (s->bias ? s->bias[n0 + j] : 0.0f);
        }
        if (s->out && s->act) zk__act_row(s->out + (size_t)(i + r) * N + n0, w, s->act);
    }
}

// ---- GEMM drivers -----------------------------------------------------------------------------
static void qgemm_block(const qsink *s, const uint8_t *A, const int8_t *packed, const int32_t *colsum,
                        int N, int K4, int m0, int m1, int p0, int p1) {
    const int vnni = use_vnni();
    for (int i0 = m0; i0 < m1; i0 += QK_MC) {
        const int i1 = i0 + QK_MC < m1 ? i0 + QK_MC : m1;
        for (int p = p0; p < p1; p++) {
            const int n0 = p * QK_NR, w = N - n0 < QK_NR ? N - n0 : QK_NR;
            const int8_t *bp = packed + (size_t)p * QK_NR * K4;
            for (int i = i0; i < i1; i += QK_MR) {
                const int rows = i1 - i < QK_MR ? i1 - i : QK_MR;
                if (vnni) tiles_vnni[rows](s, A + (size_t)i * K4, K4, bp, K4, colsum, i, n0, w, N);
                else tile_scalar(s, A + (size_t)i * K4, K4, bp, K4, colsum, i, rows, n0, w, N);
            }
        }
    }
}

// Threads split the rows when there are many, else the panels (as the fp32 packed GEMM does).
static void qgemm(const qsink *s, const uint8_t *A, const int8_t *packed, const int32_t *colsum, int M, int N, int K) {
    const int K4 = zk_qpad_k(K), panels = (N + QK_NR - 1) / QK_NR;
    const int threads = omp_in_parallel() ? 1 : zk_get_threads();
    #pragma omp parallel num_threads(threads) if (threads > 1)
    {
        const int nth = omp_get_num_threads(), t = omp_get_thread_num();
        int lo, hi;
        if (M >= QK_MC * nth) {
            slice(M, t, nth, QK_MR, &lo, &hi);
            qgemm_block(s, A, packed, colsum, N, K4, lo, hi, 0, panels);
        } else {
            slice(panels, t, nth, 1, &lo, &hi);
            qgemm_block(s, A, packed, colsum, N, K4, 0, M, lo, hi);
        }
    }
}

void zk_qgemm_s32(int32_t *C, const uint8_t *A, const int8_t *packed, const int32_t *colsum, int M, int N, int K) {
    const qsink s = {.c32 = C};
    qgemm(&s, A, packed, colsum, M, N, K);
}

void zk_qlinear_forward(float *out, const float *inp, uint8_t *qbuf, float *qscale, const int8_t *packed,
                        const int32_t *colsum, const float *wscale, const float *bias, int M, int N, int K, int act) {
    zk__check_act(act);
    zk_quantize_rows(qbuf, qscale, inp, M, K);
    const qsink s = {.out = out, .ascale = qscale, .wscale = wscale, .bias = bias, .act = act};
    qgemm(&s, qbuf, packed, colsum, M, N, K);
}

// ---- weight quantization ------------------------------------------------------------------------
// Symmetric quantization of W[N,K] to `bits` (2..8) with one scale per group of `group` rows:
// q = round(w / s), s = clip / (2^(bits-1) - 1), where the clip of each group minimizes the squared
// error over a grid of fractions of max|w| (for 8 bits the grid is just 1.0, plain absmax).
void zk_quantize_weight(int8_t *q, float *scale, const float *W, int N, int K, int bits, int group) {
    const int qmax = (1 << (bits - 1)) - 1;
    const int groups = (N + group - 1) / group;
    #pragma omp parallel for schedule(static)
    for (int gi = 0; gi < groups; gi++) {
        const int n0 = gi * group, n1 = n0 + group < N ? n0 + group : N;
        const float *w = W + (size_t)n0 * K;
        const size_t cnt = (size_t)(n1 - n0) * K;
        float m = 0;
        for (size_t i = 0; i < cnt; i++) { const float a = fabsf(w[i]); m = a > m ? a : m; }
        float best = m / qmax, bestErr = INFINITY;
        const int steps = bits >= 8 ? 1 : 20;
        for (int st = 0; st < steps && m > 0; st++) {
            const float s = m * (1.0f - 0.025f * st) / qmax;
            double err = 0;
            for (size_t i = 0; i < cnt; i++) {
                const double d = w[i] - qround(w[i] / s, qmax) * s;
                err += d * d;
            }
            if (err < bestErr) { bestErr = err; best = s; }
        }
        for (int n = n0; n < n1; n++) scale[n] = best;
        for (size_t i = 0; i < cnt; i++) q[(size_t)n0 * K + i] = (int8_t)(best > 0 ? qround(w[i] / best, qmax) : 0);
    }
}
