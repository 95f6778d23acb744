// Attention with bf16 products for the int8 models (qbert-int8, qbert-mixed), on CPUs with
// AVX512_BF16 (`vdpbf16ps`: 32 bf16 products summed pairwise into 16 fp32 lanes, twice the fp32 FMA's
// work per instruction). Q (pre-scaled by 1/√d), K, the probabilities and V are rounded to bf16
// (round to nearest even, relative error ≤ 2^-8); the sums, the softmax and the output stay fp32.
// The int8 Linear layers around it already round their inputs to 8 bits. Elsewhere (no AVX512_BF16,
// a forced lower SIMD level, a head width that is not a multiple of 32) it is the fp32 attention.
//
// Per (sequence, head), in the thread's scratch (32-bit words; zk__attention_scratch_per_thread in kernels.c):
//   kT2 [d/2][Lp]   key pairs: word (p, j) holds bf16 (k[j][2p], k[j][2p+1]), zero for j ≥ L
//   v2  [Lp/2][d]   value pairs: word (i, c) holds bf16 (v[2i][c], v[2i+1][c]), zero rows past L
//   q2  [8][d/2]    the current 8 query rows, scaled, as pairs
//   p2  [8][Lp/2]   their probabilities as pairs
//   sc  [8][Lp]     fp32 scores / probabilities
// Scores and context are 8-row × 32-column register tiles (16 accumulators), as the fp32 worker's.
#include "ckernels.h"
#include "internal.h"
#include <math.h>
#include <omp.h>
#include <stdlib.h>

int zk_cpu_has_avx512_bf16(void) {
#ifdef ZK_X86
    __builtin_cpu_init();
    return zk_cpu_has_avx512() && __builtin_cpu_supports("avx512bf16");
#else
    return 0;
#endif
}

int zk_attention_bf16_active(int head_dim) {
    static int cpu = -1;
    if (cpu < 0) cpu = zk_cpu_has_avx512_bf16();
    return cpu && zk_simd_level() == ZK_SIMD_AVX512 && head_dim % 32 == 0;
}

#ifdef ZK_X86
#define BF16_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16")))

// e^(x − max) for 16 lanes (lanes off in `m` give 0): 2^t = 2^n · 2^f with n = round(t), f ∈ [−½, ½],
// 2^f by its degree-5 Taylor polynomial (relative error < 2e-6, far below the bf16 rounding that follows).
BF16_TARGET static inline __m512 exp_lanes(__m512 x, __m512 max, __mmask16 m) {
    const __m512 t = _mm512_mul_ps(_mm512_sub_ps(x, max), _mm512_set1_ps(1.44269504088896341f));
    const __m512 n = _mm512_roundscale_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m512 f = _mm512_sub_ps(t, n);
    __m512 p = _mm512_set1_ps(1.3333558146e-3f);                 // (ln 2)^k / k!, k = 5 … 0
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(9.6181291076e-3f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(5.5504108665e-2f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(2.4022650696e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(6.9314718056e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f));
    return _mm512_maskz_mov_ps(m, _mm512_scalef_ps(p, n));
}

static inline __mmask16 first_lanes(int n) { return n >= 16 ? 0xFFFF : n <= 0 ? 0 : (__mmask16)((1u << n) - 1); }

// 16 fp32 lanes of x and y → 32 bf16 (x in the low half), as one 512-bit word vector.
BF16_TARGET static inline __m512i to_bf16(__m512 x, __m512 y) { return (__m512i)_mm512_cvtne2ps_pbh(y, x); }

// c[r][0..32) = Σ_p a[r][p] · b[p][0..32) over `P` pairs, for r < 8: a row's pair broadcast, b two
// vectors of 16 pair-words at rows `bs` words apart.
BF16_TARGET static inline void tile_8x32(__m512 c[8][2], const uint32_t *a, int as, const uint32_t *b, int bs, int P) {
    for (int r = 0; r < 8; r++) c[r][0] = c[r][1] = _mm512_setzero_ps();
    for (int p = 0; p < P; p++) {
        const __m512bh b0 = (__m512bh)_mm512_loadu_si512(b + (size_t)p * bs), b1 = (__m512bh)_mm512_loadu_si512(b + (size_t)p * bs + 16);
        for (int r = 0; r < 8; r++) {
            const __m512bh x = (__m512bh)_mm512_set1_epi32((int)a[r * as + p]);
            c[r][0] = _mm512_dpbf16_ps(c[r][0], x, b0);
            c[r][1] = _mm512_dpbf16_ps(c[r][1], x, b1);
        }
    }
}

BF16_TARGET static void attention_head_bf16(float *out, int ldo, const float *q, const float *k, const float *v, int ld,
                                            int L, int dh, float scale, uint32_t *scratch) {
    const int Lp = (L + 31) / 32 * 32, P = dh / 2;
    uint32_t *kT2 = scratch, *v2 = kT2 + (size_t)P * Lp, *q2 = v2 + (size_t)(Lp / 2) * dh, *p2 = q2 + 8 * P;
    float *sc = (float *)(p2 + 8 * (Lp / 2));
    for (int j = 0; j < Lp; j++)
        for (int d0 = 0; d0 < dh; d0 += 32) {
            uint32_t w[16];
            const float *kr = k + (size_t)j * ld + d0;
            _mm512_storeu_si512(w, j < L ? to_bf16(_mm512_loadu_ps(kr), _mm512_loadu_ps(kr + 16)) : _mm512_setzero_si512());
            for (int t = 0; t < 16; t++) kT2[(size_t)(d0 / 2 + t) * Lp + j] = w[t];
        }
    // Rows 2i and 2i+1 as 32 bf16 each, interleaved element by element into two vectors of pairs.
    const __m512i lo = _mm512_set_epi16(47, 15, 46, 14, 45, 13, 44, 12, 43, 11, 42, 10, 41, 9, 40, 8, 39, 7, 38, 6, 37, 5, 36, 4, 35, 3, 34, 2, 33, 1, 32, 0);
    const __m512i hi = _mm512_add_epi16(lo, _mm512_set1_epi16(16));
    for (int i = 0; i < Lp / 2; i++)
        for (int d0 = 0; d0 < dh; d0 += 32) {
            __m512i row[2];
            for (int t = 0; t < 2; t++) {
                const int j = 2 * i + t;
                const float *vr = v + (size_t)j * ld + d0;
                row[t] = j < L ? to_bf16(_mm512_loadu_ps(vr), _mm512_loadu_ps(vr + 16)) : _mm512_setzero_si512();
            }
            _mm512_storeu_si512(v2 + (size_t)i * dh + d0, _mm512_permutex2var_epi16(row[0], lo, row[1]));
            _mm512_storeu_si512(v2 + (size_t)i * dh + d0 + 16, _mm512_permutex2var_epi16(row[0], hi, row[1]));
        }
    const __m512 s = _mm512_set1_ps(scale);
    for (int i0 = 0; i0 < L; i0 += 8) {
        const int R = L - i0 < 8 ? L - i0 : 8;
        for (int r = 0; r < 8; r++) {                  // rows past L repeat the last one (computed, not stored)
            const float *qr = q + (size_t)(i0 + (r < R ? r : R - 1)) * ld;
            for (int d0 = 0; d0 < dh; d0 += 32)
                _mm512_storeu_si512(q2 + r * P + d0 / 2, to_bf16(_mm512_mul_ps(s, _mm512_loadu_ps(qr + d0)), _mm512_mul_ps(s, _mm512_loadu_ps(qr + d0 + 16))));
        }
        __m512 c[8][2];
        for (int j0 = 0; j0 < Lp; j0 += 32) {
            tile_8x32(c, q2, P, kT2 + j0, Lp, P);
            for (int r = 0; r < 8; r++) { _mm512_storeu_ps(sc + r * Lp + j0, c[r][0]); _mm512_storeu_ps(sc + r * Lp + j0 + 16, c[r][1]); }
        }
        for (int r = 0; r < 8; r++) {
            float *sr = sc + r * Lp;
            __m512 mx = _mm512_set1_ps(-INFINITY), sum = _mm512_setzero_ps();
            for (int j0 = 0; j0 < Lp; j0 += 16) mx = _mm512_mask_max_ps(mx, first_lanes(L - j0), mx, _mm512_loadu_ps(sr + j0));
            mx = _mm512_set1_ps(_mm512_reduce_max_ps(mx));
            for (int j0 = 0; j0 < Lp; j0 += 16) {
                const __m512 e = exp_lanes(_mm512_loadu_ps(sr + j0), mx, first_lanes(L - j0));
                _mm512_storeu_ps(sr + j0, e);
                sum = _mm512_add_ps(sum, e);
            }
            const __m512 inv = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(sum));
            for (int j0 = 0; j0 < Lp; j0 += 32)
                _mm512_storeu_si512(p2 + r * (Lp / 2) + j0 / 2, to_bf16(_mm512_mul_ps(inv, _mm512_loadu_ps(sr + j0)), _mm512_mul_ps(inv, _mm512_loadu_ps(sr + j0 + 16))));
        }
        for (int d0 = 0; d0 < dh; d0 += 32) {
            tile_8x32(c, p2, Lp / 2, v2 + d0, dh, Lp / 2);
            for (int r = 0; r < R; r++) {
                _mm512_storeu_ps(out + (size_t)(i0 + r) * ldo + d0, c[r][0]);
                _mm512_storeu_ps(out + (size_t)(i0 + r) * ldo + d0 + 16, c[r][1]);
            }
        }
    }
}
#endif

void zk_attention_packed_forward_bf16(float *out, const float *qkv, const int32_t *lengths,
                                      int B, int heads, int head_dim, float *scratch) {
#ifdef ZK_X86
    if (zk_attention_bf16_active(head_dim)) {
        const int A = heads * head_dim, ld = 3 * A;
        const float scale = 1.0f / sqrtf((float)head_dim);
        size_t *tok = malloc(sizeof(size_t) * (size_t)B);
        const int longest = zk__packed_offsets(lengths, B, tok);
        const size_t per_thread = zk__attention_scratch_per_thread(longest, head_dim);
        #pragma omp parallel for schedule(static, 1)
        for (int bh = 0; bh < B * heads; bh++) {
            const int b = bh / heads, h = bh % heads;
            const size_t t = tok[b];
            const float *q = qkv + t * ld + h * head_dim;
            attention_head_bf16(out + t * A + h * head_dim, A, q, q + A, q + 2 * A, ld, lengths[b], head_dim, scale,
                                (uint32_t *)(scratch + (size_t)omp_get_thread_num() * per_thread));
        }
        free(tok);
        return;
    }
#endif
    zk_attention_packed_forward(out, qkv, lengths, B, heads, head_dim, scratch);
}
