// Training kernels: the backward half of each forward kernel in kernels.c, plus dropout, losses and
// AdamW. Plain C over flat buffers (llm.c style); each backward overwrites the input gradient it
// produces and accumulates (+=) into parameter gradients.
#include "ckernels.h"
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

// ---- Linear ------------------------------------------------------------------------------------
void zk_linear_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                        const float *weight, int M, int N, int K) {
    if (dinp) zk_sgemm_nn(M, K, N, dout, N, weight, K, 0.0f, dinp, K);                           // dX = dY·W
    if (dweight) zk_sgemm_tn(N, K, M, dout, N, inp, K, 1.0f, dweight, K);                           // dW += dYᵀ·X
    if (dbias) {
        #pragma omp parallel for schedule(static)
        for (int j = 0; j < N; j++) {
            double s = 0;
            for (int i = 0; i < M; i++) s += dout[(size_t)i * N + j];
            dbias[j] += (float)s;
        }
    }
}

// ---- GELU (erf form) -------------------------------------------------------------------------------
// d/dx [x·Φ(x)] = Φ(x) + x·φ(x)
void zk_gelu_backward(float *dinp, const float *inp, const float *dout, size_t n) {
    #pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        const float x = inp[i];
        const float cdf = 0.5f * (1.0f + erff(x * 0.70710678118654752f));
        const float pdf = 0.39894228040143268f * expf(-0.5f * x * x);
        dinp[i] = dout[i] * (cdf + x * pdf);
    }
}

// ---- LayerNorm -------------------------------------------------------------------------------------
// With x̂ = (x − mean)·rstd: dx = rstd·(g·dy − mean(g·dy) − x̂·mean(g·dy·x̂)).
void zk_layernorm_backward(float *dinp, float *dgamma, float *dbeta, const float *dout, const float *inp,
                           const float *gamma, const float *mean, const float *rstd, int M, int N) {
    #pragma omp parallel for schedule(static)
    for (int i = 0; i < M; i++) {
        const float *dy = dout + (size_t)i * N, *x = inp + (size_t)i * N;
        float *dx = dinp + (size_t)i * N;
        double a = 0, b = 0;
        for (int j = 0; j < N; j++) {
            const float xh = (x[j] - mean[i]) * rstd[i], g = gamma[j] * dy[j];
            a += g; b += g * xh;
        }
        const float ma = (float)(a / N), mb = (float)(b / N);
        for (int j = 0; j < N; j++) {
            const float xh = (x[j] - mean[i]) * rstd[i];
            dx[j] = rstd[i] * (gamma[j] * dy[j] - ma - xh * mb);
        }
    }
    // Parameter gradients: a reduction over rows, split by columns so threads never share a slot.
    #pragma omp parallel for schedule(static)
    for (int j = 0; j < N; j++) {
        double dg = 0, db = 0;
        for (int i = 0; i < M; i++) {
            const float dy = dout[(size_t)i * N + j];
            dg += dy * (inp[(size_t)i * N + j] - mean[i]) * rstd[i];
            db += dy;
        }
        dgamma[j] += (float)dg;
        dbeta[j] += (float)db;
    }
}

// ---- dropout ---------------------------------------------------------------------------------------
// The keep decision of element i is a hash of (seed, i): forward and backward agree without storing
// a mask, and a run is reproducible whatever the thread count.
static inline int keep(uint64_t seed, size_t i, float p) {
    uint64_t z = seed + 0x9E3779B97F4A7C15ull * (i + 1);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (float)(z >> 40) * (1.0f / 16777216.0f) >= p;
}

void zk_dropout_forward(float *x, size_t n, float p, uint64_t seed) {
    if (p <= 0) return;
    const float s = 1.0f / (1.0f - p);
    #pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) x[i] = keep(seed, i, p) ? x[i] * s : 0.0f;
}

void zk_dropout_backward(float *dx, size_t n, float p, uint64_t seed) { zk_dropout_forward(dx, n, p, seed); }

// ---- attention --------------------------------------------------------------------------------------
// Training forward: like zk_attention_forward, plus dropout (rate p, keyed by seed and the element's
// index in probs) on the probabilities, as HF does; keeps the probabilities before dropout,
// probs[b·heads+h][i][j] (zero past the sequence's length), which the backward pass needs.
void zk_attention_train_forward(float *out, float *probs, const float *qkv, const int32_t *lengths,
                                int B, int S, int heads, int head_dim, float p_drop, uint64_t seed) {
    const int H = heads * head_dim, ld = 3 * H;
    const float scale = 1.0f / sqrtf((float)head_dim);
    const float ks = p_drop > 0 ? 1.0f / (1.0f - p_drop) : 1.0f;
    #pragma omp parallel
    {
        float *kT = malloc(sizeof(float) * (size_t)head_dim * S);   // this head's keys, transposed
        #pragma omp for schedule(static)
        for (int bh = 0; bh < B * heads; bh++) {
            const int b = bh / heads, h = bh % heads;
            int L = lengths[b];
            if (L < 1 || L > S) L = S;
            const float *q = qkv + (size_t)b * S * ld + h * head_dim, *k = q + H, *v = q + 2 * H;
            for (int j = 0; j < L; j++)
                for (int d = 0; d < head_dim; d++) kT[(size_t)d * L + j] = k[(size_t)j * ld + d];
            float *P = probs + (size_t)bh * S * S;
            for (int i = 0; i < S; i++) {
                float *p = P + (size_t)i * S;
                for (int j = 0; j < L; j++) p[j] = 0;
                for (int d = 0; d < head_dim; d++) {
                    const float qd = q[(size_t)i * ld + d] * scale, *kd = kT + (size_t)d * L;
                    for (int j = 0; j < L; j++) p[j] += qd * kd[j];
                }
                float mx = -INFINITY, sum = 0;
                for (int j = 0; j < L; j++) mx = p[j] > mx ? p[j] : mx;
                for (int j = 0; j < L; j++) { p[j] = expf(p[j] - mx); sum += p[j]; }
                const float inv = 1.0f / sum;
                for (int j = 0; j < L; j++) p[j] *= inv;
                for (int j = L; j < S; j++) p[j] = 0;
                float *o = out + ((size_t)b * S + i) * H + h * head_dim;
                const size_t row = ((size_t)bh * S + i) * S;
                for (int d = 0; d < head_dim; d++) o[d] = 0;
                for (int j = 0; j < L; j++) {
                    const float pj = p_drop > 0 ? (keep(seed, row + j, p_drop) ? p[j] * ks : 0.0f) : p[j];
                    const float *vj = v + (size_t)j * ld;
                    for (int d = 0; d < head_dim; d++) o[d] += pj * vj[d];
                }
            }
        }
        free(kT);
    }
}

size_t zk_attention_backward_scratch_floats(int S) { return (size_t)S * omp_get_max_threads(); }

// O = D(P)·V, P = softmax(scale·Q·Kᵀ), D = dropout:  dV = D(P)ᵀ·dO,  dP = D'(dO·Vᵀ),
// dS = P ⊙ (dP − rowsum(P ⊙ dP)),  dQ = scale·dS·K,  dK = scale·dSᵀ·Q.  dqkv is overwritten.
void zk_attention_backward(float *dqkv, const float *dout, const float *qkv, const float *probs,
                           const int32_t *lengths, int B, int S, int heads, int head_dim, float p_drop,
                           uint64_t seed, float *scratch) {
    const int H = heads * head_dim, ld = 3 * H;
    const float scale = 1.0f / sqrtf((float)head_dim);
    const float ks = p_drop > 0 ? 1.0f / (1.0f - p_drop) : 1.0f;
    (void)scratch;
    #pragma omp parallel
    {
        float *vT = malloc(sizeof(float) * (size_t)head_dim * S);   // this head's values, transposed
        float *dp = malloc(sizeof(float) * (size_t)S);
        #pragma omp for schedule(static)
        for (int bh = 0; bh < B * heads; bh++) {
            const int b = bh / heads, h = bh % heads;
            int L = lengths[b];
            if (L < 1 || L > S) L = S;
            const float *q = qkv + (size_t)b * S * ld + h * head_dim, *k = q + H, *v = q + 2 * H;
            float *dq = dqkv + (size_t)b * S * ld + h * head_dim, *dk = dq + H, *dv = dq + 2 * H;
            const float *P = probs + (size_t)bh * S * S;
            for (int t = 0; t < S; t++)
                for (int d = 0; d < head_dim; d++) { dq[(size_t)t * ld + d] = 0; dk[(size_t)t * ld + d] = 0; dv[(size_t)t * ld + d] = 0; }
            for (int j = 0; j < L; j++)
                for (int d = 0; d < head_dim; d++) vT[(size_t)d * L + j] = v[(size_t)j * ld + d];
            for (int i = 0; i < S; i++) {
                const float *p = P + (size_t)i * S, *go = dout + ((size_t)b * S + i) * H + h * head_dim;
                const size_t row = ((size_t)bh * S + i) * S;
                for (int j = 0; j < L; j++) dp[j] = 0;                          // dP = dO·Vᵀ
                for (int d = 0; d < head_dim; d++) {
                    const float g = go[d], *vd = vT + (size_t)d * L;
                    for (int j = 0; j < L; j++) dp[j] += g * vd[j];
                }
                float dot = 0;
                for (int j = 0; j < L; j++) {
                    const float m = p_drop > 0 ? (keep(seed, row + j, p_drop) ? ks : 0.0f) : 1.0f;   // dropout factor
                    float *dvj = dv + (size_t)j * ld;
                    const float w = m * p[j];
                    for (int d = 0; d < head_dim; d++) dvj[d] += w * go[d];       // dV += D(P)ᵀ·dO
                    dp[j] *= m;
                    dot += p[j] * dp[j];
                }
                float *dqi = dq + (size_t)i * ld;
                const float *qi = q + (size_t)i * ld;
                for (int j = 0; j < L; j++) {
                    const float ds = p[j] * (dp[j] - dot) * scale;
                    const float *kj = k + (size_t)j * ld;
                    float *dkj = dk + (size_t)j * ld;
                    for (int d = 0; d < head_dim; d++) { dqi[d] += ds * kj[d]; dkj[d] += ds * qi[d]; }
                }
            }
        }
        free(vT);
        free(dp);
    }
}

// ---- embeddings ------------------------------------------------------------------------------------
// Scatter-add of the embedding output gradient into the three tables (serial over tokens: rows of
// the word table repeat, so a parallel loop would race; split by columns instead).
void zk_embedding_backward(float *dword, float *dpos, float *dtype, const float *dout, const int32_t *ids,
                           const int32_t *type_ids, int B, int S, int H) {
    #pragma omp parallel for schedule(static)
    for (int j = 0; j < H; j++)
        for (int bt = 0; bt < B * S; bt++) {
            const float g = dout[(size_t)bt * H + j];
            dword[(size_t)ids[bt] * H + j] += g;
            dpos[(size_t)(bt % S) * H + j] += g;
            dtype[(size_t)(type_ids ? type_ids[bt] : 0) * H + j] += g;
        }
}

// ---- losses ----------------------------------------------------------------------------------------
float zk_cross_entropy_forward_backward(float *dlogits, const float *logits, const int32_t *labels, int B, int C) {
    double loss = 0;
    for (int b = 0; b < B; b++) {
        const float *z = logits + (size_t)b * C;
        float mx = z[0];
        for (int c = 1; c < C; c++) if (z[c] > mx) mx = z[c];
        double sum = 0;
        for (int c = 0; c < C; c++) sum += exp((double)z[c] - mx);
        loss += log(sum) + mx - z[labels[b]];
        if (dlogits)
            for (int c = 0; c < C; c++)
                dlogits[(size_t)b * C + c] = (float)((exp((double)z[c] - mx) / sum - (c == labels[b])) / B);
    }
    return (float)(loss / B);
}

float zk_mse_forward_backward(float *dpred, const float *pred, const float *target, int B) {
    double loss = 0;
    for (int b = 0; b < B; b++) {
        const double d = (double)pred[b] - target[b];
        loss += d * d;
        if (dpred) dpred[b] = (float)(2 * d / B);
    }
    return (float)(loss / B);
}

// ---- gradient clipping ----------------------------------------------------------------------------
// Scales x to global L2 norm at most max_norm (torch.nn.utils.clip_grad_norm_: coefficient
// max_norm / (norm + 1e-6) when below 1). Returns the norm before clipping.
float zk_clip_grad_norm(float *x, size_t n, float max_norm) {
    double sq = 0;
    #pragma omp parallel for schedule(static) reduction(+:sq)
    for (size_t i = 0; i < n; i++) sq += (double)x[i] * x[i];
    const float norm = (float)sqrt(sq), coef = max_norm / (norm + 1e-6f);
    if (coef < 1) {
        #pragma omp parallel for schedule(static)
        for (size_t i = 0; i < n; i++) x[i] *= coef;
    }
    return norm;
}

// ---- AdamW -----------------------------------------------------------------------------------------
// Decoupled weight decay (Loshchilov & Hutter), bias-corrected moments, as torch.optim.AdamW.
void zk_adamw_update(float *param, const float *grad, float *m, float *v, size_t n, float lr, float beta1,
                     float beta2, float eps, float weight_decay, int step) {
    const float c1 = 1.0f - powf(beta1, (float)step), c2 = 1.0f - powf(beta2, (float)step);
    #pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        param[i] -= lr * weight_decay * param[i];
        m[i] = beta1 * m[i] + (1 - beta1) * grad[i];
        v[i] = beta2 * v[i] + (1 - beta2) * grad[i] * grad[i];
        param[i] -= lr * (m[i] / c1) / (sqrtf(v[i] / c2) + eps);
    }
}
