// CKernels — the zoo's C kernel target: a packed-weight AVX-512 GEMM, row-major GEMM on OpenBLAS, and
// OpenMP-parallel fused kernels.
// Every buffer is flat, row-major, float32 unless said otherwise. Names follow `x_forward` (and later
// `x_backward`) so a reader finds each kernel's pair in one place.
#ifndef ZOO_CKERNELS_H
#define ZOO_CKERNELS_H
#include <stddef.h>
#include <stdint.h>

// ---- runtime / machine -------------------------------------------------------------------------
void zk_set_threads(int n);            // OpenMP and OpenBLAS thread counts together
int zk_get_threads(void);
// glibc: allocations of 1 MiB and more get their own mapping (returned to the system when freed).
void zk_configure_allocator(void);
// This process is killed when its parent dies (Linux PR_SET_PDEATHSIG); returns 0 when the parent is
// already not `parent` (it died before the call).
int zk_die_with_parent(int parent);
const char *zk_blas_corename(void);    // the OpenBLAS kernel family actually in use ("SkylakeX", "Prescott", …)
int zk_cpu_has_avx512(void);           // avx512f + avx512bw + avx512vl + avx512dq
int zk_cpu_has_avx2(void);
// SIMD level of the row kernels and GEMM tiles: each is compiled for the baseline x86-64 target
// (the portable fallback), AVX2 + FMA and AVX-512. By default the CPU's best, capped by the
// environment variable ZOO_SIMD=generic|avx2|avx512 (so every path runs on one machine).
enum { ZK_SIMD_GENERIC = 0, ZK_SIMD_AVX2 = 1, ZK_SIMD_AVX512 = 2 };
int zk_simd_max(void);                 // the best level this CPU runs
int zk_simd_level(void);               // the level in use
void zk_set_simd(int level);           // use `level` (capped at zk_simd_max); -1 = the default
int zk_simd_parse(const char *name);   // "generic" / "avx2" / "avx512" → level; -1 if none
const char *zk_simd_name(int level);

// fp32 FMA peak of this machine at the current thread count (GFLOPS), by a register-only FMA loop.
double zk_fma_peak_gflops(long iters);
// int8 peak (GOPS, a multiply and an add per product) of the int8 kernel in use (zk_int8_kernel),
// by a register-only loop of that kernel's instruction sequence; 0 for the scalar kernel.
double zk_int8_peak_gops(long iters);

// ---- GEMM --------------------------------------------------------------------------------------
// C[M,N] = A[M,K] · B[N,K]^T + beta·C  (B laid out like a PyTorch Linear weight, [out, in]).
void zk_sgemm_nt(int M, int N, int K, const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc);
// C[M,N] = A[M,K] · B[K,N] + beta·C.
void zk_sgemm_nn(int M, int N, int K, const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc);
// C[M,N] = A[K,M]^T · B[K,N] + beta·C.
void zk_sgemm_tn(int M, int N, int K, const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc);
// Eigen-decomposition of a symmetric n×n matrix a (row-major, double; LAPACK dsyev): w[n] gets the
// eigenvalues in ascending order and row i of a the unit eigenvector of w[i]. Returns LAPACK's info (0 = ok).
int zk_symmetric_eigen(int n, double *a, double *w);
// out[M,N] = inp[M,K] · weight[N,K]^T + bias[N]   (bias may be NULL)
void zk_linear_forward(float *out, const float *inp, const float *weight, const float *bias, int M, int N, int K);

// Activation codes, for the fused Linear epilogues and zk_activation_forward/_backward.
//   ZK_ACT_GELU       erf form, 0.5·x·(1 + erf(x/√2))   (HF "gelu")
//   ZK_ACT_GELU_TANH  0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))   (HF "gelu_new", "gelu_pytorch_tanh")
//   ZK_ACT_RELU       max(x, 0)
// Any other value is a programming error: the kernels print it and abort.
enum { ZK_ACT_NONE = 0, ZK_ACT_GELU = 1, ZK_ACT_GELU_TANH = 2, ZK_ACT_RELU = 3 };

// Packed-weight Linear: weights packed once (zk_pack_weight) into panels of 32 output features,
// then out[M,N] = act(inp[M,K] · W^T + bias) (bias may be NULL; act a ZK_ACT_* code, 1 = erf GELU).
size_t zk_packed_weight_floats(int N, int K);
void zk_pack_weight(float *packed, const float *W, int N, int K);
void zk_linear_packed_forward(float *out, const float *inp, const float *packed, const float *bias,
                              int M, int N, int K, int act);

// ---- elementwise / normalisation ---------------------------------------------------------------
// x[M,N] += bias[N]
void zk_bias_forward(float *x, const float *bias, int M, int N);
// out = act(inp) elementwise, act a ZK_ACT_* code (out may equal inp). Errors against the exact
// functions (bounds in rows.h, checked by KernelTests): GELU ≤ 1e-6 absolute (erf by A&S 7.1.26);
// GELU_TANH (computed as x·σ(2u), one expf) relative ≤ 2^-23·(3 + 2.5·|2u|·(1 − σ(2u))): 1.5e-7
// measured for x ≥ 0, 8.7e-7 on [−3, 0], 1.2e-5 at x = −9; ≤ 6.1e-39·|x| absolute below x = −9.17;
// RELU and NONE exact.
void zk_activation_forward(float *out, const float *inp, size_t n, int act);
// out = gelu(inp), erf form: 0.5·x·(1 + erf(x/√2))   (= zk_activation_forward with ZK_ACT_GELU)
void zk_gelu_forward(float *out, const float *inp, size_t n);
// x[M,N] = gelu(x + bias[N])  (fused epilogue of the FFN up-projection)
void zk_bias_gelu_forward(float *x, const float *bias, int M, int N);
// out = a + b
void zk_residual_forward(float *out, const float *a, const float *b, size_t n);
// out[M,N] = LayerNorm(inp) · gamma + beta over the last dim; mean/rstd (may be NULL) saved per row.
void zk_layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                          const float *gamma, const float *beta, int M, int N, float eps);
// x[M,N] = LayerNorm(x + bias + residual) · gamma + beta  (fused epilogue after attention-output / FFN-down)
void zk_bias_residual_layernorm_forward(float *x, const float *bias, const float *residual,
                                        const float *gamma, const float *beta, int M, int N, float eps);
// Row-wise softmax of scores[rows, cols]·scale; columns >= valid_cols are masked (probability 0).
void zk_softmax_forward(float *scores, int rows, int cols, int valid_cols, float scale);

// ---- attention ---------------------------------------------------------------------------------
// Multi-head self-attention core for a batch of B sequences padded to S tokens.
// qkv: [B·S, 3·H] (query | key | value, each H = heads·head_dim wide); lengths[b]: real tokens of
// sequence b (keys past it are masked, as HF's additive mask does); out: [B·S, H] context.
// scratch: zk_attention_scratch_floats(S, head_dim) floats (room for every OpenMP thread).
size_t zk_attention_scratch_floats(int S, int head_dim);
void zk_attention_forward(float *out, const float *qkv, const int32_t *lengths,
                          int B, int S, int heads, int head_dim, float *scratch);
// The same over packed sequences (T = Σ lengths rows, no padding): qkv [T, 3A], out [T, A] with
// A = heads·head_dim; scratch: zk_attention_scratch_floats(longest length, head_dim) floats.
void zk_attention_packed_forward(float *out, const float *qkv, const int32_t *lengths,
                                 int B, int heads, int head_dim, float *scratch);
// The same with bf16 products (bf16.c; the int8 models' attention): Q·1/√d, K, the probabilities
// and V rounded to bf16, fp32 sums and softmax, where zk_attention_bf16_active(head_dim) — a CPU
// with AVX512_BF16, the AVX-512 level in use, head_dim a multiple of 32; otherwise exactly
// zk_attention_packed_forward. Same scratch.
void zk_attention_packed_forward_bf16(float *out, const float *qkv, const int32_t *lengths,
                                      int B, int heads, int head_dim, float *scratch);
int zk_attention_bf16_active(int head_dim);
int zk_cpu_has_avx512_bf16(void);

// ---- embeddings --------------------------------------------------------------------------------
// x[b·S+t] holds the word embedding of its token (gathered by the caller); this adds
// type_emb[type_ids] and position[t] (LayerNorm applied separately). type_ids NULL: every token has
// type 0. type_emb NULL (models without a token-type table, e.g. DistilBERT): no type term is added.
void zk_embedding_forward(float *x, const int32_t *type_ids, int B, int S, const float *position,
                          const float *type_emb, int H);

// ---- reductions used by pooling --------------------------------------------------------------
// out[b,H] = mean over t < lengths[b] of hidden[b·S+t, :]
void zk_mean_pool_forward(float *out, const float *hidden, const int32_t *lengths, int B, int S, int H);

// ---- training: backward passes, dropout, losses, AdamW (train.c; attention, GELU and dropout in kernels.c) ------------------------------------
// Each backward overwrites the input gradient it produces and accumulates (+=) parameter gradients.
// Linear: dinp = dout·W, dweight += doutᵀ·inp, dbias += Σ_rows dout (any of the three may be NULL).
void zk_linear_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                        const float *weight, int M, int N, int K);
// LSTM, one direction over B packed sequences (PyTorch nn.LSTM: gates i, f, g, o; zero initial state;
// sequence b is lengths[b] consecutive rows of x [Σ lengths, D]; reverse = 1 runs each from its last
// row): h, c [Σ lengths, Hd] and gates [Σ lengths, 4Hd] (after σ / tanh) are kept for the backward,
// which writes dx and accumulates the four parameter gradients. The sequences step together (one
// recurrent GEMM per step over those still running).
void zk_lstm_forward(float *h, float *c, float *gates, const float *x, const float *w_ih, const float *w_hh,
                     const float *b_ih, const float *b_hh, const int32_t *lengths, int B, int D, int Hd, int reverse);
void zk_lstm_backward(float *dx, float *dw_ih, float *dw_hh, float *db_ih, float *db_hh, float *dgates,
                      const float *dh, const float *x, const float *h, const float *c, const float *gates,
                      const float *w_ih, const float *w_hh, const int32_t *lengths, int B, int D, int Hd, int reverse);
// dinp = dout ⊙ act'(inp), act a ZK_ACT_* code; dinp may equal dout (in place). ReLU'(0) = 0 (as torch).
void zk_activation_backward(float *dinp, const float *inp, const float *dout, size_t n, int act);
void zk_gelu_backward(float *dinp, const float *inp, const float *dout, size_t n);   // act = ZK_ACT_GELU
// mean/rstd as saved by zk_layernorm_forward.
void zk_layernorm_backward(float *dinp, float *dgamma, float *dbeta, const float *dout, const float *inp,
                           const float *gamma, const float *mean, const float *rstd, int M, int N);
// Attention for training over packed sequences: sequence b is lengths[b] consecutive rows of qkv
// [T, 3A] and out [T, A] (T = Σ lengths; no padding; A = heads·head_dim, which need not equal the
// model's hidden size), attending to its own tokens. The forward keeps the probabilities before
// dropout, heads × L × L per sequence one after another in probs; dropout (rate p_drop) of sequence b
// is keyed by seeds[b] and the index in its probabilities. The backward writes dqkv [T, 3A].
// Inference over packed sequences: probs may be NULL (the probabilities are not kept; each thread
// works on them in its own scratch), and seeds may be NULL when p_drop == 0. out is bit-identical to
// the call that keeps probs.
void zk_attention_train_forward(float *out, float *probs, const float *qkv, const int32_t *lengths, const uint64_t *seeds,
                                int B, int heads, int head_dim, float p_drop);
void zk_attention_backward(float *dqkv, const float *dout, const float *qkv, const float *probs, const int32_t *lengths,
                           const uint64_t *seeds, int B, int heads, int head_dim, float p_drop);
// dtype may be NULL (no token-type table): no type gradient is accumulated.
void zk_embedding_backward(float *dword, float *dpos, float *dtype, const float *dout, const int32_t *ids,
                           const int32_t *type_ids, int B, int S, int H);
// Inverted dropout with rate p; element i is kept by a hash of (seed, i), so no mask is stored.
void zk_dropout_forward(float *x, size_t n, float p, uint64_t seed);
void zk_dropout_backward(float *dx, size_t n, float p, uint64_t seed);
// Mean losses over the batch; the gradient (may be NULL) is of the mean.
float zk_cross_entropy_forward_backward(float *dlogits, const float *logits, const int32_t *labels, int B, int C);
float zk_mse_forward_backward(float *dpred, const float *pred, const float *target, int B);
// Clips x to global L2 norm max_norm (torch's clip_grad_norm_); returns the norm before clipping.
float zk_clip_grad_norm(float *x, size_t n, float max_norm);
// AdamW (torch.optim.AdamW semantics), `step` counted from 1.
void zk_adamw_update(float *param, const float *grad, float *m, float *v, size_t n, float lr, float beta1,
                     float beta2, float eps, float weight_decay, int step);

// ---- int8 Linear (Q-BERT; int8.c) ----------------------------------------------------------------
// u8×s8→s32 GEMM with AVX-512 VNNI, or an exact scalar fallback (bit-identical int32 results).
int zk_cpu_has_vnni(void);             // avx512f/bw/vl/dq + avx512vnni
// int8 GEMM kernels: the portable scalar fallback, AVX2 (vpmaddubsw, exact by the sign trick) and
// AVX-512 VNNI; all give the same int32 sums.
enum { ZK_INT8_SCALAR = 0, ZK_INT8_AVX2 = 1, ZK_INT8_VNNI = 2 };
int zk_int8_max(void);                 // the best int8 kernel this CPU runs
void zk_set_int8_kernel(int level);    // use `level` (capped at zk_int8_max); -1 = follow the SIMD level
int zk_int8_kernel(void);              // the one in use
const char *zk_int8_name(int level);   // "scalar" / "AVX2" / "VNNI"
int zk_qpad_k(int K);                  // K rounded up to a multiple of 4 (row stride of quantized activations)
// Weights int8 W[N,K] (any bit width ≤ 8, held as int8 values), packed once into panels of 64 output
// features; colsum[N] = Σ_k W[n,k] (the compensation for the +128 activation shift).
size_t zk_qpacked_weight_bytes(int N, int K);
void zk_qpack_weight(int8_t *packed, int32_t *colsum, const int8_t *W, int N, int K);
// Per-row (per-token) symmetric quantization: q[M, zk_qpad_k(K)] = round(x·127/max|x|) + 128, scale = max|x|/127.
void zk_quantize_rows(uint8_t *q, float *scale, const float *x, int M, int K);
// Exact: C[M,N] = Σ_k (A[m,k] − 128)·W[n,k], A as written by zk_quantize_rows.
void zk_qgemm_s32(int32_t *C, const uint8_t *A, const int8_t *packed, const int32_t *colsum, int M, int N, int K);
// out[M,N] = act(ascale[m]·wscale[n]·Σ_k q[m,k]·W[n,k] + bias[n]) (bias may be NULL; act a ZK_ACT_*
// code, 1 = erf GELU); inp is quantized into qbuf [M, zk_qpad_k(K)] bytes and qscale [M] first.
void zk_qlinear_forward(float *out, const float *inp, uint8_t *qbuf, float *qscale, const int8_t *packed,
                        const int32_t *colsum, const float *wscale, const float *bias, int M, int N, int K, int act);
// W[N,K] → q (int8 values in ±(2^(bits−1)−1)) and scale[N], one scale per group of `group` rows,
// the clipping range chosen per group to minimise squared error (absmax at 8 bits).
void zk_quantize_weight(int8_t *q, float *scale, const float *W, int N, int K, int bits, int group);

#endif
