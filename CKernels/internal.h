// Helpers shared between the C files of CKernels (not part of the Swift-visible API).
#ifndef ZOO_CKERNELS_INTERNAL_H
#define ZOO_CKERNELS_INTERNAL_H
// The SIMD copies (AVX2, AVX-512, VNNI) exist on x86-64 only; elsewhere (arm64) every level runs
// the portable C, which the compiler vectorises for the target (NEON).
#if defined(__x86_64__)
#define ZK_X86 1
#include <immintrin.h>
#endif
// x = act(x) over n floats (act a ZK_ACT_* code), with the row kernels chosen at run time (AVX-512 or generic).
void zk__act_row(float *x, int n, int act);
// Aborts with a message unless act is one of the ZK_ACT_* codes (the public entry points call it once).
void zk__check_act(int act);

// Best of 3 runs of `loop(iters)` on every thread, in 1e9 × `ops` (per round) per second: the
// register-only peak loops of kernels.c (fp32 FMA) and int8.c.
double zk__peak_rate(double (*loop)(long), long iters, double ops);

// Scratch floats of one thread's attention head over S tokens (fp32 and bf16 workers).
size_t zk__attention_scratch_per_thread(int S, int head_dim);
// Packed sequences: tok[b] = Σ_{c<b} lengths[c], the first row of sequence b; returns the longest length.
int zk__packed_offsets(const int32_t *lengths, int B, size_t *tok);

// Part p of `parts` of [0, n): boundaries rounded down to multiples of `align`, the last part to n.
static inline void slice(int n, int p, int parts, int align, int *lo, int *hi) {
    *lo = (int)((long)n * p / parts) / align * align;
    *hi = p == parts - 1 ? n : (int)((long)n * (p + 1) / parts) / align * align;
}
#endif
