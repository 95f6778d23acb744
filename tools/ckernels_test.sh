#!/usr/bin/env bash
# Builds the CKernels test driver (Tests/ckernels/driver.c) and runs it:
#   tools/ckernels_test.sh native   with clang on this machine, at every SIMD level it has
#   tools/ckernels_test.sh arm64    cross-compiled by Debian's aarch64 toolchain against arm64
#                                   OpenBLAS, run under qemu-aarch64 (the portable C arm64 runs)
# Packages (installed by `make arm64-packages`): gcc-aarch64-linux-gnu, qemu-user, and with the
# arm64 architecture added to dpkg, libopenblas-dev:arm64 and libgomp1:arm64.
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-native}"
out=.cache/ckernels-$mode
mkdir -p .cache
sources=(CKernels/kernels.c CKernels/int8.c CKernels/train.c CKernels/bf16.c Tests/ckernels/driver.c)
case "$mode" in
native)
    omp=$(dirname "$(find /usr/lib/llvm-*/lib/clang -name omp.h | sort -V | tail -1)")   # …/llvm-N/lib/clang/V/include
    lib=$(cd "$omp/../../.." && pwd)                                                       # …/llvm-N/lib (libomp.so)
    clang -O3 -fopenmp -I CKernels/include -I "$omp" -I /usr/include/x86_64-linux-gnu/openblas-pthread \
        "${sources[@]}" -o "$out" -L "$lib" -Wl,-rpath,"$lib" -lopenblas -lm
    "$out" ;;
arm64)
    # The kernels at -O3 as the package builds them; the driver at -O1 (Debian's GCC 12 vectoriser
    # hits an internal compiler error on its reference loops).
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    for f in "${sources[@]}"; do
        opt=-O3; [[ $f == Tests/* ]] && opt=-O1
        aarch64-linux-gnu-gcc $opt -fopenmp -I CKernels/include -I /usr/include/aarch64-linux-gnu/openblas-pthread -c "$f" -o "$tmp/$(basename "$f" .c).o"
    done
    aarch64-linux-gnu-gcc -fopenmp "$tmp"/*.o -o "$out" -L /usr/lib/aarch64-linux-gnu/openblas-pthread -L /usr/lib/aarch64-linux-gnu -lopenblas -lm
    aarch64-linux-gnu-readelf -h "$out" | grep -q AArch64 || { echo "$out is not an arm64 binary" >&2; exit 1; }
    # One thread: in this sandbox qemu-aarch64 (7.2) hangs in any second thread's start-up (a bare
    # pthread_create + join never returns), so OpenBLAS gets no pool of its own (zoo runs it
    # single-threaded inside OpenMP anyway) and the driver runs its kernels at 1 thread only.
    OPENBLAS_NUM_THREADS=1 QEMU_LD_PREFIX=/usr/aarch64-linux-gnu qemu-aarch64 "$out" 1 ;;
*)
    echo "usage: tools/ckernels_test.sh native|arm64" >&2; exit 2 ;;
esac
