// Helpers shared between the C files of CKernels (not part of the Swift-visible API).
#ifndef ZOO_CKERNELS_INTERNAL_H
#define ZOO_CKERNELS_INTERNAL_H
// x = gelu(x) over n floats, with the row kernels chosen at run time (AVX-512 or generic).
void zk__gelu_row(float *x, int n);
#endif
