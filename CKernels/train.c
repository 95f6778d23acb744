// Training kernels: the backward halves of the Linear, LayerNorm and embedding forward kernels in
// kernels.c, losses, gradient clipping and AdamW. (Attention, GELU and dropout have SIMD copies and
// live with their forward halves in kernels.c / rows.h.) Plain C over flat buffers (llm.c style);
// each backward overwrites the input gradient it produces and accumulates (+=) parameter gradients.
#include "ckernels.h"
#include "internal.h"
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

// ---- Linear ------------------------------------------------------------------------------------
void zk_linear_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                        const float *weight, int M, int N, int K) {
    if (dinp) zk_sgemm_nn(M, K, N, dout, N, weight, K, 0.0f, dinp, K);                           // dX = dY·W
    if (dweight) zk_sgemm_tn(N, K, M, dout, N, inp, K, 1.0f, dweight, K);                           // dW += dYᵀ·X
    if (dbias) {   // column sums in double, each thread a band of columns, read row after row
        #pragma omp parallel
        {
            int j0, j1;
            slice(N, omp_get_thread_num(), omp_get_num_threads(), 16, &j0, &j1);
            double *s = calloc((size_t)(j1 - j0) + 1, sizeof(double));
            for (int i = 0; i < M; i++) {
                const float *row = dout + (size_t)i * N;
                for (int j = j0; j < j1; j++) s[j - j0] += row[j];
            }
            for (int j = j0; j < j1; j++) dbias[j] += (float)s[j - j0];
            free(s);
        }
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

// ---- embeddings ------------------------------------------------------------------------------------
// Scatter-add of the embedding output gradient into the three tables (serial over tokens: rows of
// the word table repeat, so a parallel loop would race; split by columns instead). dtype NULL: the
// model has no token-type table.
void zk_embedding_backward(float *dword, float *dpos, float *dtype, const float *dout, const int32_t *ids,
                           const int32_t *type_ids, int B, int S, int H) {
    #pragma omp parallel for schedule(static)
    for (int j = 0; j < H; j++)
        for (int bt = 0; bt < B * S; bt++) {
            const float g = dout[(size_t)bt * H + j];
            dword[(size_t)ids[bt] * H + j] += g;
            dpos[(size_t)(bt % S) * H + j] += g;
            if (dtype) dtype[(size_t)(type_ids ? type_ids[bt] : 0) * H + j] += g;
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

// ---- LSTM (one direction over a batch of packed sequences; PyTorch nn.LSTM semantics, gates i, f, g, o)
// Sequence b is lengths[b] consecutive rows of x [T, D] (T = Σ lengths; a length may be 0).
// Forward: pre = x·W_ihᵀ + b_ih + b_hh for all rows at once (one GEMM), then step s of every sequence
// still running together (one GEMM over them for the recurrent product):
//   gates = pre_t + W_hh·h_{t−1}; i, f, o = σ(·), g = tanh(·);  c_t = f·c_{t−1} + i·g;  h_t = o·tanh(c_t)
// from h_{−1} = c_{−1} = 0; `reverse` runs each sequence from its last row (a BiLSTM's backward
// direction). Keeps gates [T, 4Hd] (after their nonlinearities) and c [T, Hd] for the backward pass.
static inline float sigmoidf(float x) { return 1.0f / (1.0f + expf(-x)); }

// The sequences running at step s: their row now and the row before (in stepping order).
static int lstm_active(const int32_t *lengths, const int *starts, int B, int s, int reverse, int *seq, int *row, int *prev) {
    int n = 0;
    for (int b = 0; b < B; b++) {
        if (lengths[b] <= s) continue;
        seq[n] = b;
        row[n] = starts[b] + (reverse ? lengths[b] - 1 - s : s);
        prev[n] = reverse ? row[n] + 1 : row[n] - 1;
        n++;
    }
    return n;
}

static int lstm_starts(const int32_t *lengths, int B, int *starts, int *max_len) {
    int T = 0;
    *max_len = 0;
    for (int b = 0; b < B; b++) { starts[b] = T; T += lengths[b]; if (lengths[b] > *max_len) *max_len = lengths[b]; }
    return T;
}

void zk_lstm_forward(float *h, float *c, float *gates, const float *x, const float *w_ih, const float *w_hh,
                     const float *b_ih, const float *b_hh, const int32_t *lengths, int B, int D, int Hd, int reverse) {
    const int G = 4 * Hd;
    int *starts = malloc(4 * (size_t)B * sizeof(int)), *seq = starts + B, *row = seq + B, *prev = row + B, max_len;
    const int T = lstm_starts(lengths, B, starts, &max_len);
    float *hp = malloc((size_t)B * Hd * sizeof(float)), *rec = malloc((size_t)B * G * sizeof(float));
    zk_linear_forward(gates, x, w_ih, b_ih, T, G, D);
    zk_bias_forward(gates, b_hh, T, G);
    for (int s = 0; s < max_len; s++) {
        const int n = lstm_active(lengths, starts, B, s, reverse, seq, row, prev);
        if (s > 0) {
            for (int i = 0; i < n; i++) memcpy(hp + (size_t)i * Hd, h + (size_t)prev[i] * Hd, (size_t)Hd * sizeof(float));
            zk_sgemm_nt(n, G, Hd, hp, Hd, w_hh, Hd, 0.0f, rec, G);
        }
        #pragma omp parallel for schedule(static) if ((size_t)n * G > 16384)
        for (int i = 0; i < n; i++) {
            float *g = gates + (size_t)row[i] * G;
            const float *cp = s > 0 ? c + (size_t)prev[i] * Hd : NULL;
            for (int r = 0; r < G; r++) {
                const float acc = g[r] + (s > 0 ? rec[(size_t)i * G + r] : 0.0f);
                g[r] = (r >= 2 * Hd && r < 3 * Hd) ? tanhf(acc) : sigmoidf(acc);
            }
            for (int j = 0; j < Hd; j++) {
                const float ct = g[Hd + j] * (cp ? cp[j] : 0.0f) + g[j] * g[2 * Hd + j];
                c[(size_t)row[i] * Hd + j] = ct;
                h[(size_t)row[i] * Hd + j] = g[3 * Hd + j] * tanhf(ct);
            }
        }
    }
    free(starts); free(hp); free(rec);
}

// Backward of zk_lstm_forward: dh [T, Hd] is the gradient at every output h_t (the caller's loss);
// writes dx [T, D] and adds into the parameter gradients. dgates: scratch [T, 4Hd].
void zk_lstm_backward(float *dx, float *dw_ih, float *dw_hh, float *db_ih, float *db_hh, float *dgates,
                      const float *dh, const float *x, const float *h, const float *c, const float *gates,
                      const float *w_ih, const float *w_hh, const int32_t *lengths, int B, int D, int Hd, int reverse) {
    const int G = 4 * Hd;
    int *starts = malloc(4 * (size_t)B * sizeof(int)), *seq = starts + B, *row = seq + B, *prev = row + B, max_len;
    const int T = lstm_starts(lengths, B, starts, &max_len);
    // per sequence: the gradient reaching h and c from the step after; gathered rows for the GEMMs
    float *dh_next = calloc((size_t)B * Hd, sizeof(float)), *dc_next = calloc((size_t)B * Hd, sizeof(float));
    float *dg = malloc((size_t)B * G * sizeof(float)), *hp = malloc((size_t)B * Hd * sizeof(float)), *dhp = malloc((size_t)B * Hd * sizeof(float));
    for (int s = max_len - 1; s >= 0; s--) {
        const int n = lstm_active(lengths, starts, B, s, reverse, seq, row, prev);
        #pragma omp parallel for schedule(static) if ((size_t)n * G > 16384)
        for (int i = 0; i < n; i++) {
            const int t = row[i];
            const float *g = gates + (size_t)t * G, *cp = s > 0 ? c + (size_t)prev[i] * Hd : NULL;
            float *dgt = dgates + (size_t)t * G, *dhn = dh_next + (size_t)seq[i] * Hd, *dcn = dc_next + (size_t)seq[i] * Hd;
            for (int j = 0; j < Hd; j++) {
                const float ig = g[j], f = g[Hd + j], gg = g[2 * Hd + j], o = g[3 * Hd + j];
                const float tc = tanhf(c[(size_t)t * Hd + j]);
                const float dht = dh[(size_t)t * Hd + j] + dhn[j];
                const float dct = dht * o * (1 - tc * tc) + dcn[j];
                dgt[j] = dct * gg * ig * (1 - ig);                       // input gate, through σ
                dgt[Hd + j] = dct * (cp ? cp[j] : 0.0f) * f * (1 - f);   // forget gate
                dgt[2 * Hd + j] = dct * ig * (1 - gg * gg);              // cell candidate, through tanh
                dgt[3 * Hd + j] = dht * tc * o * (1 - o);                // output gate
                dcn[j] = dct * f;
            }
        }
        if (s == 0) continue;   // every running sequence is at its first step: nothing flows further
        // dh_{prev} = dg·W_hh; dW_hh += dgᵀ·h_prev (the running sequences' rows gathered)
        for (int i = 0; i < n; i++) {
            memcpy(dg + (size_t)i * G, dgates + (size_t)row[i] * G, (size_t)G * sizeof(float));
            memcpy(hp + (size_t)i * Hd, h + (size_t)prev[i] * Hd, (size_t)Hd * sizeof(float));
        }
        zk_sgemm_nn(n, Hd, G, dg, G, w_hh, Hd, 0.0f, dhp, Hd);
        zk_sgemm_tn(G, Hd, n, dg, G, hp, Hd, 1.0f, dw_hh, Hd);
        for (int i = 0; i < n; i++) memcpy(dh_next + (size_t)seq[i] * Hd, dhp + (size_t)i * Hd, (size_t)Hd * sizeof(float));
    }
    free(starts); free(dh_next); free(dc_next); free(dg); free(hp); free(dhp);
    // The input projection of all rows at once: dx = dgates·W_ih, dW_ih += dgatesᵀ·x, db_ih and db_hh += Σ_t dgates.
    zk_linear_backward(dx, dw_ih, db_ih, dgates, x, w_ih, T, G, D);
    zk_linear_backward(NULL, NULL, db_hh, dgates, x, w_ih, T, G, D);
}
