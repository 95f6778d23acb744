// int8 Linear layers (Q-BERT): u8×s8→s32 GEMM with AVX-512 VNNI (`vpdpbusd`), with AVX2
// (`vpmaddubsw`, see tile_avx2) and a scalar fallback, all three giving bit-identical int32 results;
// per-row activation quantization and a fused dequantizing epilogue (scales, bias, optional GELU).
//
// Signed activations: a row x is quantized to q = round(x·127/max|x|) ∈ [-127, 127] and stored as the
// unsigned byte q + 128, because vpdpbusd multiplies unsigned bytes by signed bytes. Then
//   Σ_k (q+128)·w = Σ_k q·w + 128·Σ_k w,
// so each output column subtracts 128·colsum[n], computed once when the weights are packed.
// Products are at most 255·127 and four of them are summed per instruction into int32, so nothing
// saturates (unlike vpmaddubsw's int16 pairs).
#include "ckernels.h"
#include "internal.h"
#include <math.h>
#include <omp.h>
#include <string.h>

#define QK_NR 64   // output features per packed panel (4 zmm of 16 int32)
#define QK_MR 6    // rows per register tile: 6 × 4 = 24 accumulators
#define QK_MC 96   // rows per block (an A block of 96 × K bytes stays in L2)

int zk_cpu_has_vnni(void) {
#ifdef ZK_X86
    __builtin_cpu_init();
    return zk_cpu_has_avx512() && __builtin_cpu_supports("avx512vnni");
#else
    return 0;
#endif
}
int zk_int8_max(void) {   // asked on every int8 GEMM (zk_int8_kernel): the CPU is probed once
    static int max = -1;
    if (max < 0) max = zk_cpu_has_vnni() ? ZK_INT8_VNNI : zk_cpu_has_avx2() ? ZK_INT8_AVX2 : ZK_INT8_SCALAR;
    return max;
}
const char *zk_int8_name(int level) { return level == ZK_INT8_VNNI ? "VNNI" : level == ZK_INT8_AVX2 ? "AVX2" : "scalar"; }

static int g_int8 = -1;   // -1: follow the SIMD level; else a ZK_INT8_* kernel
int zk_int8_kernel(void) {
    if (g_int8 >= 0) return g_int8;
    const int simd = zk_simd_level(), max = zk_int8_max();
    const int want = simd == ZK_SIMD_AVX512 ? ZK_INT8_VNNI : simd == ZK_SIMD_AVX2 ? ZK_INT8_AVX2 : ZK_INT8_SCALAR;
    return want < max ? want : max;
}
void zk_set_int8_kernel(int level) { g_int8 = level < 0 ? -1 : level < zk_int8_max() ? level : zk_int8_max(); }

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

// ---- int8 peak ----------------------------------------------------------------------------------
// The int8 kernel's own instruction sequence in a register-only loop, every thread `iters` rounds:
// VNNI, 12 independent vpdpbusd (64 products each); AVX2, 6 independent chains of sign, maddubs,
// madd by ones, add (32 products each, as tile_avx2; each activation's abs shared by 3). GOPS count
// a multiply and an add per product, as the fp32 FMA peak does: the ratio of the two bounds what
// int8 can gain over fp32 on this CPU.
#ifdef ZK_X86
__attribute__((target("avx512f,avx512bw,avx512vnni"))) static double peak_loop_vnni(long iters) {
    __m512i c[12];
    __m512i a = _mm512_set1_epi8(3), b = _mm512_set1_epi8(-5);
    for (int i = 0; i < 12; i++) c[i] = _mm512_set1_epi32(i);
    for (long n = 0; n < iters; n++) {
        for (int i = 0; i < 12; i++) c[i] = _mm512_dpbusd_epi32(c[i], a, b);
        __asm__ volatile("" : "+v"(a), "+v"(b));   // inputs the compiler cannot hoist
    }
    long s = 0;
    for (int i = 0; i < 12; i++) s += _mm512_reduce_add_epi32(c[i]);
    return s;
}
__attribute__((target("avx2,fma"))) static double peak_loop_avx2(long iters) {
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i q0 = _mm256_set1_epi8(-3), q1 = _mm256_set1_epi8(4), b[3], c[2][3];
    for (int v = 0; v < 3; v++) { b[v] = _mm256_set1_epi8((char)(5 + v)); c[0][v] = c[1][v] = _mm256_setzero_si256(); }
    for (long n = 0; n < iters; n++) {
        const __m256i q[2] = {q0, q1}, aq[2] = {_mm256_abs_epi8(q0), _mm256_abs_epi8(q1)};
        for (int r = 0; r < 2; r++)          // 2 activations × 3 weight vectors: 6 distinct products
            for (int v = 0; v < 3; v++)
                c[r][v] = _mm256_add_epi32(c[r][v], _mm256_madd_epi16(_mm256_maddubs_epi16(aq[r], _mm256_sign_epi8(b[v], q[r])), ones));
        __asm__ volatile("" : "+x"(q0), "+x"(q1), "+x"(b[0]), "+x"(b[1]), "+x"(b[2]));
    }
    int32_t t[8];
    long s = 0;
    for (int r = 0; r < 2; r++)
        for (int v = 0; v < 3; v++) { _mm256_storeu_si256((__m256i *)t, c[r][v]); for (int j = 0; j < 8; j++) s += t[j]; }
    return s;
}
#endif
double zk_int8_peak_gops(long iters) {
    const int kernel = zk_int8_kernel();
#ifdef ZK_X86
    if (kernel == ZK_INT8_VNNI) return zk__peak_rate(peak_loop_vnni, iters, 12.0 * 64 * 2);
    if (kernel == ZK_INT8_AVX2) return zk__peak_rate(peak_loop_avx2, iters, 6.0 * 32 * 2);
#endif
    (void)kernel;
    return 0;   // the scalar kernel
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
#ifdef ZK_X86
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

__attribute__((target("avx2,fma")))
static void quantize_row_avx2(uint8_t *q, float *scale, const float *x, int K, int K4) {
    const __m256 nosign = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
    __m256 mx = _mm256_setzero_ps();
    int k = 0;
    for (; k + 8 <= K; k += 8) mx = _mm256_max_ps(mx, _mm256_and_ps(_mm256_loadu_ps(x + k), nosign));
    float lanes[8], m = 0;
    _mm256_storeu_ps(lanes, mx);
    for (int j = 0; j < 8; j++) m = lanes[j] > m ? lanes[j] : m;
    for (; k < K; k++) { const float a = fabsf(x[k]); m = a > m ? a : m; }
    const float inv = m > 0 ? 127.0f / m : 0.0f;
    *scale = m / 127.0f;
    const __m256 vinv = _mm256_set1_ps(inv);
    const __m256i lo = _mm256_set1_epi32(-127), hi = _mm256_set1_epi32(127), shift = _mm256_set1_epi32(128);
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);   // undoes the packs' lane interleaving
    __m256i v[4];
    for (k = 0; k + 32 <= K; k += 32) {
        for (int j = 0; j < 4; j++) {
            const __m256i r = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + k + 8 * j), vinv));
            v[j] = _mm256_add_epi32(_mm256_min_epi32(_mm256_max_epi32(r, lo), hi), shift);
        }
        const __m256i bytes = _mm256_packus_epi16(_mm256_packs_epi32(v[0], v[1]), _mm256_packs_epi32(v[2], v[3]));
        _mm256_storeu_si256((__m256i *)(q + k), _mm256_permutevar8x32_epi32(bytes, order));
    }
    for (; k < K; k++) q[k] = (uint8_t)((int)qround(x[k] * inv, 127.0f) + 128);
    for (; k < K4; k++) q[k] = 128;
}

#endif

void zk_quantize_rows(uint8_t *q, float *scale, const float *x, int M, int K) {
    const int K4 = zk_qpad_k(K), kernel = zk_int8_kernel();
    void (*row)(uint8_t *, float *, const float *, int, int) = quantize_row_generic;
#ifdef ZK_X86
    if (kernel != ZK_INT8_SCALAR) row = kernel == ZK_INT8_VNNI ? quantize_row_avx512 : quantize_row_avx2;
#endif
    #pragma omp parallel for schedule(static) if (M > 16 && !omp_in_parallel())
    for (int i = 0; i < M; i++) row(q + (size_t)i * K4, scale + i, x + (size_t)i * K, K, K4);
}

// ---- tiles --------------------------------------------------------------------------------------
// What to do with a finished tile: keep exact int32 (tests), or dequantize into floats.
typedef struct {
    int32_t *c32;                       // exact mode: C[M,N] = Σ_k ·W
    float *out;                         // float mode: out[M,N] = act(sa·sw·(Σ_k ·W) + bias)
    const float *ascale, *wscale, *bias;
    int act;                            // ZK_ACT_* code, applied row by row after the tile's store
} qsink;

#ifdef ZK_X86
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

// AVX2 has no vpdpbusd, and vpmaddubsw adds two u8×s8 products into a saturating int16, which
// (a-128 shifted) activations would overflow. Exact instead by the sign trick: with q = a − 128 the
// signed activation, |q| (≤ 128, unsigned) times sign(q)·w (|w| ≤ 127) gives each product q·w, two of
// them ≤ 2·128·127 = 32512 < 2^15 — so no pair saturates, as long as the weights stay in [−127, 127]
// (zk_quantize_weight's range). vpmaddwd by ones widens the pairs to int32. No column-sum
// compensation is needed: the sums are of q·w directly, the same int32 as the other kernels.
// R rows × 32 columns per pass (8 accumulators), two passes per 64-column panel.
#define AVX2_TILE(R)                                                                                          \
    __attribute__((target("avx2,fma"))) static void tile_avx2_##R(const qsink *s, const uint8_t *A, int lda,  \
                                                                const int8_t *Bp, int K4, int i, int n0, int w, int N) { \
        const __m256i ones = _mm256_set1_epi16(1), flip = _mm256_set1_epi8((char)0x80);                      \
        const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);                                      \
        for (int j0 = 0; j0 < w; j0 += 32) {                                                                 \
            __m256i c[R][4];                                                                                 \
            _Pragma("unroll") for (int r = 0; r < R; r++)                                                    \
                _Pragma("unroll") for (int v = 0; v < 4; v++) c[r][v] = _mm256_setzero_si256();              \
            for (int k = 0; k < K4; k += 4) {                                                                \
                const int8_t *b = Bp + (size_t)k * QK_NR + 4 * j0;                                           \
                const __m256i b0 = _mm256_loadu_si256((const __m256i *)b), b1 = _mm256_loadu_si256((const __m256i *)(b + 32)), \
                              b2 = _mm256_loadu_si256((const __m256i *)(b + 64)), b3 = _mm256_loadu_si256((const __m256i *)(b + 96)); \
                _Pragma("unroll") for (int r = 0; r < R; r++) {                                              \
                    int32_t a4;                                                                              \
                    memcpy(&a4, A + (size_t)r * lda + k, 4);                                                 \
                    const __m256i q = _mm256_xor_si256(_mm256_set1_epi32(a4), flip), aq = _mm256_abs_epi8(q); \
                    c[r][0] = _mm256_add_epi32(c[r][0], _mm256_madd_epi16(_mm256_maddubs_epi16(aq, _mm256_sign_epi8(b0, q)), ones)); \
                    c[r][1] = _mm256_add_epi32(c[r][1], _mm256_madd_epi16(_mm256_maddubs_epi16(aq, _mm256_sign_epi8(b1, q)), ones)); \
                    c[r][2] = _mm256_add_epi32(c[r][2], _mm256_madd_epi16(_mm256_maddubs_epi16(aq, _mm256_sign_epi8(b2, q)), ones)); \
                    c[r][3] = _mm256_add_epi32(c[r][3], _mm256_madd_epi16(_mm256_maddubs_epi16(aq, _mm256_sign_epi8(b3, q)), ones)); \
                }                                                                                            \
            }                                                                                                \
            _Pragma("unroll") for (int v = 0; v < 4; v++) {                                                  \
                const int j = j0 + 8 * v;                                                                    \
                if (j >= w) break;                                                                           \
                const __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32(w - j), lane);                        \
                if (s->c32) {                                                                                \
                    _Pragma("unroll") for (int r = 0; r < R; r++)                                            \
                        _mm256_maskstore_epi32((int *)(s->c32 + (size_t)(i + r) * N + n0 + j), m, c[r][v]);  \
                    continue;                                                                                \
                }                                                                                            \
                const __m256 sw = _mm256_maskload_ps(s->wscale + n0 + j, m);                                 \
                const __m256 bias = s->bias ? _mm256_maskload_ps(s->bias + n0 + j, m) : _mm256_setzero_ps(); \
                _Pragma("unroll") for (int r = 0; r < R; r++) {                                              \
                    const __m256 scale = _mm256_mul_ps(_mm256_set1_ps(s->ascale[i + r]), sw);                \
                    _mm256_maskstore_ps(s->out + (size_t)(i + r) * N + n0 + j, m,                            \
                                        _mm256_fmadd_ps(_mm256_cvtepi32_ps(c[r][v]), scale, bias));          \
                }                                                                                            \
            }                                                                                                \
        }                                                                                                    \
        if (s->out && s->act)                                                                                \
            for (int r = 0; r < R; r++) zk__act_row(s->out + (size_t)(i + r) * N + n0, w, s->act);           \
    }
AVX2_TILE(1) AVX2_TILE(2)
#endif

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
static void qgemm_block(int kernel, const qsink *s, const uint8_t *A, const int8_t *packed, const int32_t *colsum,
                        int N, int K4, int m0, int m1, int p0, int p1) {
    for (int i0 = m0; i0 < m1; i0 += QK_MC) {
        const int i1 = i0 + QK_MC < m1 ? i0 + QK_MC : m1;
        for (int p = p0; p < p1; p++) {
            const int n0 = p * QK_NR, w = N - n0 < QK_NR ? N - n0 : QK_NR;
            const int8_t *bp = packed + (size_t)p * QK_NR * K4;
            for (int i = i0; i < i1; i += QK_MR) {
                const int rows = i1 - i < QK_MR ? i1 - i : QK_MR;
#ifdef ZK_X86
                if (kernel == ZK_INT8_VNNI) { tiles_vnni[rows](s, A + (size_t)i * K4, K4, bp, K4, colsum, i, n0, w, N); continue; }
                if (kernel == ZK_INT8_AVX2) {
                    for (int r = 0; r < rows; r += 2)
                        (rows - r >= 2 ? tile_avx2_2 : tile_avx2_1)(s, A + (size_t)(i + r) * K4, K4, bp, K4, i + r, n0, w, N);
                    continue;
                }
#endif
                tile_scalar(s, A + (size_t)i * K4, K4, bp, K4, colsum, i, rows, n0, w, N);
            }
        }
    }
}

// Threads split the rows when there are many, else the panels (as the fp32 packed GEMM does).
static void qgemm(const qsink *s, const uint8_t *A, const int8_t *packed, const int32_t *colsum, int M, int N, int K) {
    const int K4 = zk_qpad_k(K), panels = (N + QK_NR - 1) / QK_NR, kernel = zk_int8_kernel();   // decided before the threads start
    const int threads = omp_in_parallel() ? 1 : zk_get_threads();
    #pragma omp parallel num_threads(threads) if (threads > 1)
    {
        const int nth = omp_get_num_threads(), t = omp_get_thread_num();
        int lo, hi;
        if (M >= QK_MC * nth) {
            slice(M, t, nth, QK_MR, &lo, &hi);
            qgemm_block(kernel, s, A, packed, colsum, N, K4, lo, hi, 0, panels);
        } else {
            slice(panels, t, nth, 1, &lo, &hi);
            qgemm_block(kernel, s, A, packed, colsum, N, K4, 0, M, lo, hi);
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
