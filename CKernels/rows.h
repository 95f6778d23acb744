// Per-row / per-head workers, compiled three times by kernels.c: for the baseline x86-64 target,
// with AVX2 + FMA, and with AVX-512 (one selected at run time, `zk_simd_level`). Plain C written so
// the compiler vectorises it (fixed-size register tiles, branch-free math); only the register
// tile of the GEMM-shaped work is intrinsics.
// ZK(name) gives each copy its own suffix.

// exp, Cephes-style: range reduction by ln 2, degree-6 polynomial, 2^n by exponent bits. ≤ 2 ulp.
// Arguments are clamped to [−87.3, 88]: 2^n stays a normal float (up to 88.7 it was 2^128 = inf).
static inline float ZK(expf)(float x) {
    x = fminf(fmaxf(x, -87.3f), 88.0f);
    float y0 = x * 1.44269504088896341f + 0.5f;
    float n = (float)(int32_t)y0;
    n -= (n > y0) ? 1.0f : 0.0f;             // floor without a libm call (vectorises on plain SSE2)
    float r = x - n * 0.693359375f + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    float y = p * r * r + r + 1.0f;
    union { int32_t i; float f; } s = { .i = ((int32_t)n + 127) << 23 };
    return y * s.f;
}

// erf, Abramowitz & Stegun 7.1.26: |error| ≤ 1.5e-7.
static inline float ZK(erff)(float x) {
    float a = fabsf(x);
    float t = 1.0f / (1.0f + 0.3275911f * a);
    float p = ((((1.061405429f * t - 1.453152027f) * t + 1.421413741f) * t - 0.284496736f) * t + 0.254829592f) * t;
    return copysignf(1.0f - p * ZK(expf)(-a * a), x);
}

// Reductions with 16 independent partial sums: vectorisable without -ffast-math (a single running
// float sum is a serial dependency the compiler must keep in order).
static inline float ZK(sum)(const float *x, int n) {
    float part[16] = {0};
    int j = 0;
    for (; j + 16 <= n; j += 16)
        for (int c = 0; c < 16; c++) part[c] += x[j + c];
    for (; j < n; j++) part[0] += x[j];
    float s = 0.0f;
    for (int c = 0; c < 16; c++) s += part[c];
    return s;
}

static inline float ZK(sum_sq_dev)(const float *x, int n, float mean) {
    float part[16] = {0};
    int j = 0;
    for (; j + 16 <= n; j += 16)
        for (int c = 0; c < 16; c++) { float d = x[j + c] - mean; part[c] += d * d; }
    for (; j < n; j++) { float d = x[j] - mean; part[0] += d * d; }
    float s = 0.0f;
    for (int c = 0; c < 16; c++) s += part[c];
    return s;
}

static inline float ZK(max)(const float *x, int n) {
    float part[16];
    for (int c = 0; c < 16; c++) part[c] = -INFINITY;
    int j = 0;
    for (; j + 16 <= n; j += 16)
        for (int c = 0; c < 16; c++) part[c] = x[j + c] > part[c] ? x[j + c] : part[c];
    for (; j < n; j++) part[0] = x[j] > part[0] ? x[j] : part[0];
    float m = part[0];
    for (int c = 1; c < 16; c++) m = part[c] > m ? part[c] : m;
    return m;
}

static inline float ZK(gelu)(float x) { return 0.5f * x * (1.0f + ZK(erff)(x * 0.70710678118654752f)); }

// Tanh-form GELU, 0.5·x·(1 + tanh(u)) with u = √(2/π)·(x + 0.044715·x³), evaluated as x·σ(v) =
// x / (1 + e^(−v)), v = 2u (1 + tanh u = 2σ(2u)): one expf, no cancellation at negative x (where
// 1 + tanh u would cancel). Error relative to the exact function, v = 2u:
//   ≤ 2^-23·(3 + 2.5·|v|·(1 − σ(v)))
// v carries five float roundings and the two constants' (≈ 1.75·2^-23 relative), which e^(−v)
// amplifies by |v| and the result feels weighted by 1 − σ(v); expf (≤ 2 ulp), the add and the division
// give the 3. Measured over 8M points per range: ≤ 1.5e-7 (1.3 ulp) for x ≥ 0, 2.3e-7 on [−1, 0],
// 8.7e-7 on [−3, −1], 1.2e-5 on [−9, −6] (≤ 0.78 of the bound). Below x ≈ −9.17 (−v > 88, expf's
// clamp) the result is x·6e-39 instead of smaller: |error| ≤ 6.1e-39·|x|. Checked in KernelTests.
#define ZK_C1 1.5957691216057308f    // 2√(2/π)
#define ZK_C3 0.07135481627260025f   // 2√(2/π)·0.044715
static inline float ZK(gelu_tanh)(float x) { return x / (1.0f + ZK(expf)(-x * (ZK_C1 + ZK_C3 * x * x))); }
static inline float ZK(relu)(float x) { return x > 0.0f ? x : 0.0f; }

// x = act(x + bias) in place (bias may be NULL), one row per activation code (act_row[] in kernels.c).
// One pointer read and written, so they vectorise.
static void ZK(bias_row)(float *x, const float *restrict bias, int n) {
    if (bias) { for (int j = 0; j < n; j++) x[j] += bias[j]; }
}
static void ZK(gelu_row)(float *x, const float *restrict bias, int n) {
    if (bias) { for (int j = 0; j < n; j++) x[j] = ZK(gelu)(x[j] + bias[j]); }
    else      { for (int j = 0; j < n; j++) x[j] = ZK(gelu)(x[j]); }
}
static void ZK(gelu_tanh_row)(float *x, const float *restrict bias, int n) {
    if (bias) { for (int j = 0; j < n; j++) x[j] = ZK(gelu_tanh)(x[j] + bias[j]); }
    else      { for (int j = 0; j < n; j++) x[j] = ZK(gelu_tanh)(x[j]); }
}
static void ZK(relu_row)(float *x, const float *restrict bias, int n) {
    if (bias) { for (int j = 0; j < n; j++) x[j] = ZK(relu)(x[j] + bias[j]); }
    else      { for (int j = 0; j < n; j++) x[j] = ZK(relu)(x[j]); }
}

// x[0..n) = act(x) for a nonzero code, chosen once per call: each case is its own vectorised loop.
static inline void ZK(act_inplace)(float *x, int n, int act) {
    switch (act) {
    case ZK_ACT_GELU:      for (int j = 0; j < n; j++) x[j] = ZK(gelu)(x[j]); break;
    case ZK_ACT_GELU_TANH: for (int j = 0; j < n; j++) x[j] = ZK(gelu_tanh)(x[j]); break;
    case ZK_ACT_RELU:      for (int j = 0; j < n; j++) x[j] = ZK(relu)(x[j]); break;
    default: break;
    }
}

static void ZK(layernorm_row)(float *out, const float *x, const float *restrict gamma, const float *restrict beta, int N,
                              float eps, float *mean_out, float *rstd_out) {
    const float mean = ZK(sum)(x, N) / (float)N;
    const float var = ZK(sum_sq_dev)(x, N, mean) / (float)N;
    float rstd = 1.0f / sqrtf(var + eps);
    if (out == x) { for (int j = 0; j < N; j++) out[j] = (out[j] - mean) * rstd * gamma[j] + beta[j]; }
    else          { for (int j = 0; j < N; j++) out[j] = (x[j] - mean) * rstd * gamma[j] + beta[j]; }
    if (mean_out) *mean_out = mean;
    if (rstd_out) *rstd_out = rstd;
}

static void ZK(bias_residual_layernorm_row)(float *restrict x, const float *restrict bias, const float *restrict res,
                                            const float *gamma, const float *beta, int N, float eps) {
    for (int j = 0; j < N; j++) x[j] += bias[j] + res[j];
    ZK(layernorm_row)(x, x, gamma, beta, N, eps, NULL, NULL);
}

// softmax of s[0..valid)·scale in place; s[valid..cols) = 0.
static void ZK(softmax_row)(float *s, int cols, int valid, float scale) {
    for (int j = 0; j < valid; j++) s[j] *= scale;
    const float mx = ZK(max)(s, valid);
    for (int j = 0; j < valid; j++) s[j] = ZK(expf)(s[j] - mx);
    const float inv = 1.0f / ZK(sum)(s, valid);
    for (int j = 0; j < valid; j++) s[j] *= inv;
    for (int j = valid; j < cols; j++) s[j] = 0.0f;
}

// One (sequence, head) of attention. q/k/v rows are `ld` apart, out rows `ldo` apart. Only the first
// L keys are real. Scores and context are computed in register tiles of 8 query rows × 32 columns:
// with AVX-512 or AVX2 by explicit intrinsics, otherwise by plain C the compiler vectorises.
#define ZK_TR 8
#define ZK_TC 32

#ifdef ZK_AVX512
// acc[r][0..32) = sum_k a[r][k·as] * b[k·bs + 0..32), for r < 8; b columns past `w` masked to zero.
static inline void ZK(tile_8x32)(float *c, int ldc, const float *const *a, int as, const float *b, int bs, int K, int w) {
    const __mmask16 m0 = (__mmask16)(w >= 16 ? 0xFFFF : (1u << w) - 1);
    const __mmask16 m1 = (__mmask16)(w >= 32 ? 0xFFFF : w <= 16 ? 0 : (1u << (w - 16)) - 1);
    __m512 c00 = _mm512_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00, c31 = c00;
    __m512 c40 = c00, c41 = c00, c50 = c00, c51 = c00, c60 = c00, c61 = c00, c70 = c00, c71 = c00;
    for (int k = 0; k < K; k++) {
        const __m512 b0 = _mm512_maskz_loadu_ps(m0, b + (size_t)k * bs);
        const __m512 b1 = _mm512_maskz_loadu_ps(m1, b + (size_t)k * bs + 16);
        const size_t o = (size_t)k * as;
        __m512 x;
        x = _mm512_set1_ps(a[0][o]); c00 = _mm512_fmadd_ps(x, b0, c00); c01 = _mm512_fmadd_ps(x, b1, c01);
        x = _mm512_set1_ps(a[1][o]); c10 = _mm512_fmadd_ps(x, b0, c10); c11 = _mm512_fmadd_ps(x, b1, c11);
        x = _mm512_set1_ps(a[2][o]); c20 = _mm512_fmadd_ps(x, b0, c20); c21 = _mm512_fmadd_ps(x, b1, c21);
        x = _mm512_set1_ps(a[3][o]); c30 = _mm512_fmadd_ps(x, b0, c30); c31 = _mm512_fmadd_ps(x, b1, c31);
        x = _mm512_set1_ps(a[4][o]); c40 = _mm512_fmadd_ps(x, b0, c40); c41 = _mm512_fmadd_ps(x, b1, c41);
        x = _mm512_set1_ps(a[5][o]); c50 = _mm512_fmadd_ps(x, b0, c50); c51 = _mm512_fmadd_ps(x, b1, c51);
        x = _mm512_set1_ps(a[6][o]); c60 = _mm512_fmadd_ps(x, b0, c60); c61 = _mm512_fmadd_ps(x, b1, c61);
        x = _mm512_set1_ps(a[7][o]); c70 = _mm512_fmadd_ps(x, b0, c70); c71 = _mm512_fmadd_ps(x, b1, c71);
    }
    const __m512 acc[8][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}, {c60, c61}, {c70, c71}};
    for (int r = 0; r < 8; r++) {
        _mm512_storeu_ps(c + (size_t)r * ldc, acc[r][0]);
        _mm512_storeu_ps(c + (size_t)r * ldc + 16, acc[r][1]);
    }
}
#elif defined(ZK_AVX2)
// AVX2 has 16 ymm registers, too few for 8 × 32 accumulators: the tile is computed as four 4 × 16
// blocks (8 accumulators, 2 b vectors, 1 broadcast). Columns past `w` masked to zero; `full`
// (w ≥ the block's 16 columns) is a compile-time constant at each call, so the common case has
// plain loads.
static inline __attribute__((always_inline)) void ZK(tile_4x16)(float *c, int ldc, const float *const *a, int as, const float *b,
                                                                 int bs, int K, __m256i m0, __m256i m1, int full) {
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00, c31 = c00;
    for (int k = 0; k < K; k++) {
        const float *bk = b + (size_t)k * bs;
        const __m256 b0 = full ? _mm256_loadu_ps(bk) : _mm256_maskload_ps(bk, m0);
        const __m256 b1 = full ? _mm256_loadu_ps(bk + 8) : _mm256_maskload_ps(bk + 8, m1);
        const size_t o = (size_t)k * as;
        __m256 x;
        x = _mm256_broadcast_ss(a[0] + o); c00 = _mm256_fmadd_ps(x, b0, c00); c01 = _mm256_fmadd_ps(x, b1, c01);
        x = _mm256_broadcast_ss(a[1] + o); c10 = _mm256_fmadd_ps(x, b0, c10); c11 = _mm256_fmadd_ps(x, b1, c11);
        x = _mm256_broadcast_ss(a[2] + o); c20 = _mm256_fmadd_ps(x, b0, c20); c21 = _mm256_fmadd_ps(x, b1, c21);
        x = _mm256_broadcast_ss(a[3] + o); c30 = _mm256_fmadd_ps(x, b0, c30); c31 = _mm256_fmadd_ps(x, b1, c31);
    }
    _mm256_storeu_ps(c, c00);           _mm256_storeu_ps(c + 8, c01);
    _mm256_storeu_ps(c + ldc, c10);     _mm256_storeu_ps(c + ldc + 8, c11);
    _mm256_storeu_ps(c + 2 * ldc, c20); _mm256_storeu_ps(c + 2 * ldc + 8, c21);
    _mm256_storeu_ps(c + 3 * ldc, c30); _mm256_storeu_ps(c + 3 * ldc + 8, c31);
}
static inline void ZK(tile_8x32)(float *c, int ldc, const float *const *a, int as, const float *b, int bs, int K, int w) {
    __m256i m[4];   // lane j of m[g] is on when column 8g + j < w
    for (int g = 0; g < 4; g++)
        m[g] = _mm256_cmpgt_epi32(_mm256_set1_epi32(w - 8 * g), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    for (int r0 = 0; r0 < ZK_TR; r0 += 4)
        for (int h = 0; h < 2; h++) {
            float *ch = c + (size_t)r0 * ldc + 16 * h;
            if (w <= 16 * h) {
                for (int r = 0; r < 4; r++) { _mm256_storeu_ps(ch + (size_t)r * ldc, _mm256_setzero_ps()); _mm256_storeu_ps(ch + (size_t)r * ldc + 8, _mm256_setzero_ps()); }
            } else if (w >= 16 * h + 16) {
                ZK(tile_4x16)(ch, ldc, a + r0, as, b + 16 * h, bs, K, m[2 * h], m[2 * h + 1], 1);
            } else {
                ZK(tile_4x16)(ch, ldc, a + r0, as, b + 16 * h, bs, K, m[2 * h], m[2 * h + 1], 0);
            }
        }
}
// The Linear layers' register tile: 6 rows × 16 columns (12 accumulators, the classic Haswell
// shape: more independent FMA chains than the 4 × 16 block), two passes per 32-column panel. Panels
// are zero-padded to 32 columns, so no masks.
#define ZK_LR 6
static inline void ZK(linear_regs)(float *c, int ldc, const float *const *a, const float *b, int K) {
    for (int h = 0; h < 2; h++) {
        __m256 acc[ZK_LR][2];
        for (int r = 0; r < ZK_LR; r++) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
        for (int k = 0; k < K; k++) {
            const __m256 b0 = _mm256_loadu_ps(b + (size_t)k * ZK_TC + 16 * h), b1 = _mm256_loadu_ps(b + (size_t)k * ZK_TC + 16 * h + 8);
            _Pragma("unroll") for (int r = 0; r < ZK_LR; r++) {
                const __m256 x = _mm256_broadcast_ss(a[r] + k);
                acc[r][0] = _mm256_fmadd_ps(x, b0, acc[r][0]);
                acc[r][1] = _mm256_fmadd_ps(x, b1, acc[r][1]);
            }
        }
        for (int r = 0; r < ZK_LR; r++) {
            _mm256_storeu_ps(c + (size_t)r * ldc + 16 * h, acc[r][0]);
            _mm256_storeu_ps(c + (size_t)r * ldc + 16 * h + 8, acc[r][1]);
        }
    }
}
#else
static inline void ZK(tile_8x32)(float *c, int ldc, const float *const *a, int as, const float *b, int bs, int K, int w) {
    float acc[ZK_TR][ZK_TC] = {{0}};
    float bk[ZK_TC] = {0};
    for (int k = 0; k < K; k++) {
        for (int j = 0; j < w; j++) bk[j] = b[(size_t)k * bs + j];
        for (int r = 0; r < ZK_TR; r++) {
            const float x = a[r][(size_t)k * as];
            for (int j = 0; j < ZK_TC; j++) acc[r][j] += x * bk[j];
        }
    }
    for (int r = 0; r < ZK_TR; r++)
        for (int j = 0; j < ZK_TC; j++) c[(size_t)r * ldc + j] = acc[r][j];
}
#endif

#ifndef ZK_LR   // the Linear layers' register tile is the attention's 8 × 32 one
#define ZK_LR ZK_TR
static inline void ZK(linear_regs)(float *c, int ldc, const float *const *a, const float *b, int K) {
    ZK(tile_8x32)(c, ldc, a, 1, b, ZK_TC, K, ZK_TC);
}
#endif

enum { ZK(linear_rows) = ZK_LR };

// One ZK_LR × 32 block of a packed-weight GEMM over one K block: C[rows, w] (+)= A[rows, kc] · Bp,
// where Bp is a [kc][32] slice of a packed weight panel. On the last K block the epilogue adds the
// bias and applies the activation `act` (a ZK_ACT_* code; the caller passes 0 on earlier K blocks).
static void ZK(linear_tile)(float *C, int ldc, const float *A, int lda, int rows, const float *Bp, int kc, int w,
                            int accumulate, const float *bias, int act) {
    float t[ZK_LR * ZK_TC] __attribute__((aligned(64)));
    const float *ar[ZK_LR];
    for (int r = 0; r < ZK_LR; r++) ar[r] = A + (size_t)(r < rows ? r : rows - 1) * lda;
    ZK(linear_regs)(t, ZK_TC, ar, Bp, kc);
    for (int r = 0; r < rows; r++) {
        float *c = C + (size_t)r * ldc;
        const float *tr = t + r * ZK_TC;
        if (accumulate) { for (int j = 0; j < w; j++) c[j] += tr[j]; }
        else            { for (int j = 0; j < w; j++) c[j] = tr[j]; }
        if (bias) { for (int j = 0; j < w; j++) c[j] += bias[j]; }
        if (act) ZK(act_inplace)(c, w, act);
    }
}

// dst[d][j] = src[j][d] for j < L, zero for L ≤ j < Lp (rows of dst Lp apart, of src ld apart).
static inline void ZK(transpose_padded)(float *dst, int Lp, const float *src, int ld, int L, int dh) {
    for (int d = 0; d < dh; d++) {
        float *row = dst + (size_t)d * Lp;
        for (int j = 0; j < L; j++) row[j] = src[(size_t)j * ld + d];
        for (int j = L; j < Lp; j++) row[j] = 0.0f;
    }
}

static void ZK(attention_head)(float *out, int ldo, const float *q, const float *k, const float *v, int ld,
                               int S, int L, int dh, float scale, float *scratch) {
    const int Lp = (L + ZK_TC - 1) / ZK_TC * ZK_TC;
    const int Dp = (dh + ZK_TC - 1) / ZK_TC * ZK_TC;
    float *kT = scratch;                    // [dh][Lp], zero-padded keys
    float *sc = kT + (size_t)dh * Lp;       // [ZK_TR][Lp] probabilities of the current row tile
    float *ctx = sc + (size_t)ZK_TR * Lp;   // [ZK_TR][Dp] context of the current row tile
    ZK(transpose_padded)(kT, Lp, k, ld, L, dh);
    for (int i0 = 0; i0 < S; i0 += ZK_TR) {
        const int R = S - i0 < ZK_TR ? S - i0 : ZK_TR;
        const float *qr[ZK_TR], *pr[ZK_TR];
        for (int r = 0; r < ZK_TR; r++) {
            qr[r] = q + (size_t)(i0 + (r < R ? r : R - 1)) * ld;
            pr[r] = sc + (size_t)r * Lp;
        }
        for (int j0 = 0; j0 < Lp; j0 += ZK_TC) ZK(tile_8x32)(sc + j0, Lp, qr, 1, kT + j0, Lp, dh, ZK_TC);
        for (int r = 0; r < R; r++) ZK(softmax_row)(sc + (size_t)r * Lp, Lp, L, scale);
        for (int d0 = 0; d0 < dh; d0 += ZK_TC) {
            const int w = dh - d0 < ZK_TC ? dh - d0 : ZK_TC;
            ZK(tile_8x32)(ctx + d0, Dp, pr, 1, v + d0, ld, L, w);
        }
        for (int r = 0; r < R; r++)
            for (int d = 0; d < dh; d++) out[(size_t)(i0 + r) * ldo + d] = ctx[(size_t)r * Dp + d];
    }
}

// ---- training workers -------------------------------------------------------------------------------

// Inverted dropout of x[0..n), which are elements first.. of the whole tensor (zk_keep decides).
static void ZK(dropout_row)(float *x, int n, float p, uint64_t seed, size_t first) {
    const float s = 1.0f / (1.0f - p);
    for (int j = 0; j < n; j++) x[j] = zk_keep(seed, first + (size_t)j, p) ? x[j] * s : 0.0f;
}

// dx = dy · act'(x), one row per activation code (act_backward_row[] in kernels.c). dx may be dy (in
// place): each element is read before it is written, so the loops are safe to vectorise (the compiler
// cannot prove it on its own).
static void ZK(identity_backward_row)(float *dx, const float *restrict x, const float *dy, int n) {
    (void)x;
    if (dx != dy) memcpy(dx, dy, (size_t)n * sizeof(float));
}

// gelu'(x) = Φ(x) + x·φ(x).
static void ZK(gelu_backward_row)(float *dx, const float *restrict x, const float *dy, int n) {
    #pragma clang loop vectorize(assume_safety)
    for (int j = 0; j < n; j++) {
        const float cdf = 0.5f * (1.0f + ZK(erff)(x[j] * 0.70710678118654752f));
        const float pdf = 0.39894228040143268f * ZK(expf)(-0.5f * x[j] * x[j]);
        dx[j] = dy[j] * (cdf + x[j] * pdf);
    }
}

// gelu_tanh = x·σ(v), v = 2u: gelu_tanh' = σ + x·σ·(1 − σ)·v', with 1 − σ = e·σ (e = e^(−v), no
// cancellation) and v' = 2√(2/π)·(1 + 3·0.044715·x²).
static void ZK(gelu_tanh_backward_row)(float *dx, const float *restrict x, const float *dy, int n) {
    #pragma clang loop vectorize(assume_safety)
    for (int j = 0; j < n; j++) {
        const float xj = x[j], x2 = xj * xj;
        const float e = ZK(expf)(-xj * (ZK_C1 + ZK_C3 * x2)), s = 1.0f / (1.0f + e);
        dx[j] = dy[j] * (s + xj * (ZK_C1 + 3.0f * ZK_C3 * x2) * (e * s) * s);
    }
}

// relu'(x) = 1 for x > 0, else 0 (0 at x = 0, as torch).
static void ZK(relu_backward_row)(float *dx, const float *restrict x, const float *dy, int n) {
    #pragma clang loop vectorize(assume_safety)
    for (int j = 0; j < n; j++) dx[j] = x[j] > 0.0f ? dy[j] : 0.0f;
}

// Training attention works on 8-row tiles with tile_8x32, like attention_head above. Each output
// element is one multiply-add chain from zero over the same index order as a plain loop, so the
// results do not depend on the tiling.
//
// One (sequence, head) of training attention over the sequence's L tokens: probabilities P (L×L,
// before dropout) kept for the backward pass; out = D(P)·V with inverted dropout D keyed by
// (seed, base + index in P). scratch: train_attention_scratch(L, dh) floats (kernels.c).
// tile_only: P has room for one row tile only (ZK_TR × L, rows of the tile overwrite the previous
// tile's): inference, where the probabilities are not kept. The arithmetic is the same either way.
static void ZK(attention_train_head)(float *out, int ldo, float *P, int tile_only, const float *q, const float *k,
                                     const float *v, int ld, int L, int dh, float scale, float p_drop, uint64_t seed,
                                     size_t base, float *scratch) {
    const int Lp = (L + ZK_TC - 1) / ZK_TC * ZK_TC, Dp = (dh + ZK_TC - 1) / ZK_TC * ZK_TC;
    const float ks = p_drop > 0 ? 1.0f / (1.0f - p_drop) : 1.0f;
    float *kT = scratch;                    // [dh][Lp], zero-padded keys
    float *qs = kT + (size_t)dh * Lp;       // [L][dh] scaled queries
    float *sc = qs + (size_t)L * dh;        // [ZK_TR][Lp] scores of the current row tile
    float *pd = sc + (size_t)ZK_TR * Lp;    // [ZK_TR][Lp] their probabilities after dropout
    float *ctx = pd + (size_t)ZK_TR * Lp;   // [ZK_TR][Dp] context of the current row tile
    ZK(transpose_padded)(kT, Lp, k, ld, L, dh);
    for (int i = 0; i < L; i++)
        for (int d = 0; d < dh; d++) qs[(size_t)i * dh + d] = q[(size_t)i * ld + d] * scale;
    for (int i0 = 0; i0 < L; i0 += ZK_TR) {
        const int R = L - i0 < ZK_TR ? L - i0 : ZK_TR;
        const float *qr[ZK_TR], *pr[ZK_TR];
        for (int r = 0; r < ZK_TR; r++) {
            qr[r] = qs + (size_t)(i0 + (r < R ? r : R - 1)) * dh;
            pr[r] = pd + (size_t)(r < R ? r : R - 1) * Lp;
        }
        for (int j0 = 0; j0 < Lp; j0 += ZK_TC) ZK(tile_8x32)(sc + j0, Lp, qr, 1, kT + j0, Lp, dh, ZK_TC);
        for (int r = 0; r < R; r++) {
            const size_t i = (size_t)(i0 + r);
            float *p = P + (tile_only ? (size_t)r : i) * L, *t = pd + (size_t)r * Lp;
            for (int j = 0; j < L; j++) p[j] = sc[(size_t)r * Lp + j];
            ZK(softmax_row)(p, L, L, 1.0f);
            for (int j = 0; j < L; j++) t[j] = p_drop > 0 ? (zk_keep(seed, base + i * L + j, p_drop) ? p[j] * ks : 0.0f) : p[j];
        }
        for (int d0 = 0; d0 < dh; d0 += ZK_TC)
            ZK(tile_8x32)(ctx + d0, Dp, pr, 1, v + d0, ld, L, dh - d0 < ZK_TC ? dh - d0 : ZK_TC);
        for (int r = 0; r < R; r++)
            for (int d = 0; d < dh; d++) out[(size_t)(i0 + r) * ldo + d] = ctx[(size_t)r * Dp + d];
    }
}

// Its backward: dV = D(P)ᵀ·dO, dP = D'(dO·Vᵀ), dS = P ⊙ (dP − rowsum(P ⊙ dP)), dQ = scale·dS·K,
// dK = scale·dSᵀ·Q. dq/dk/dv (rows ld apart) are overwritten. scratch: train_attention_scratch(L, dh).
static void ZK(attention_backward_head)(float *dq, float *dk, float *dv, const float *dout, int ldo, const float *P,
                                        const float *q, const float *k, const float *v, int ld, int L, int dh,
                                        float scale, float p_drop, uint64_t seed, size_t base, float *scratch) {
    const int Lp = (L + ZK_TC - 1) / ZK_TC * ZK_TC, Dp = (dh + ZK_TC - 1) / ZK_TC * ZK_TC;
    const float ks = p_drop > 0 ? 1.0f / (1.0f - p_drop) : 1.0f;
    float *vT = scratch;                    // [dh][Lp], zero-padded values
    float *W = vT + (size_t)dh * Lp;        // [L][Lp] D(P)
    float *dS = W + (size_t)L * Lp;         // [L][Lp] scale · dS
    float *dp = dS + (size_t)L * Lp;        // [ZK_TR][Lp] dO·Vᵀ of the current row tile
    float *acc = dp + (size_t)ZK_TR * Lp;   // [ZK_TR][Dp]
    ZK(transpose_padded)(vT, Lp, v, ld, L, dh);
    const float *ar[ZK_TR];
    // Rows i: dP, D(P), dS and dQ = dS·K.
    for (int i0 = 0; i0 < L; i0 += ZK_TR) {
        const int R = L - i0 < ZK_TR ? L - i0 : ZK_TR;
        for (int r = 0; r < ZK_TR; r++) ar[r] = dout + (size_t)(i0 + (r < R ? r : R - 1)) * ldo;
        for (int j0 = 0; j0 < Lp; j0 += ZK_TC) ZK(tile_8x32)(dp + j0, Lp, ar, 1, vT + j0, Lp, dh, ZK_TC);
        for (int r = 0; r < R; r++) {
            const size_t i = (size_t)(i0 + r);
            const float *p = P + i * L;
            float *g = dp + (size_t)r * Lp, *w = W + i * Lp, *ds = dS + i * Lp;
            for (int j = 0; j < L; j++) {
                const float m = p_drop > 0 ? (zk_keep(seed, base + i * L + j, p_drop) ? ks : 0.0f) : 1.0f;
                w[j] = m * p[j];
                g[j] *= m;
            }
            float dot = 0;
            for (int j = 0; j < L; j++) dot += p[j] * g[j];
            for (int j = 0; j < L; j++) ds[j] = p[j] * (g[j] - dot) * scale;
            ar[r] = ds;
        }
        for (int r = R; r < ZK_TR; r++) ar[r] = ar[R - 1];
        for (int d0 = 0; d0 < dh; d0 += ZK_TC) ZK(tile_8x32)(acc + d0, Dp, ar, 1, k + d0, ld, L, dh - d0 < ZK_TC ? dh - d0 : ZK_TC);
        for (int r = 0; r < R; r++)
            for (int d = 0; d < dh; d++) dq[(size_t)(i0 + r) * ld + d] = acc[(size_t)r * Dp + d];
    }
    // Columns j: dV = D(P)ᵀ·dO and dK = dSᵀ·Q (the tiles read W and dS down their columns).
    for (int pass = 0; pass < 2; pass++) {
        const float *a = pass == 0 ? W : dS, *b = pass == 0 ? dout : q;
        float *dst = pass == 0 ? dv : dk;
        const int bs = pass == 0 ? ldo : ld;
        for (int j0 = 0; j0 < L; j0 += ZK_TR) {
            const int R = L - j0 < ZK_TR ? L - j0 : ZK_TR;
            for (int r = 0; r < ZK_TR; r++) ar[r] = a + (j0 + (r < R ? r : R - 1));
            for (int d0 = 0; d0 < dh; d0 += ZK_TC) ZK(tile_8x32)(acc + d0, Dp, ar, Lp, b + d0, bs, L, dh - d0 < ZK_TC ? dh - d0 : ZK_TC);
            for (int r = 0; r < R; r++)
                for (int d = 0; d < dh; d++) dst[(size_t)(j0 + r) * ld + d] = acc[(size_t)r * Dp + d];
        }
    }
}

// This file is included once per SIMD copy: its tile sizes are its own.
#undef ZK_TR
#undef ZK_TC
#undef ZK_LR
