# zoo — every set-up step a fresh machine needs, in order. `make test` and `make eval` do all of it.
#   make test    system packages, Python tools venv, build, weights, HF reference dumps, the C kernel
#                driver (native and arm64 under qemu), swift test
#   make eval    system packages, release build, weights, zero-shot STS-B with the dense BERT
#   make bench   the side-by-side speed tables: fp32 against ONNX Runtime (bench/ort_vs_zoo.py), then
#                qbert-int8 against zoo's fp32 bert and ORT dynamic int8 (bench/qbert_vs_ort.py)
#   make fuzz-smoke  the libFuzzer harness of every file parser, a short run per target (README "Fuzzing")
SHELL := /bin/bash
export ZOO_CACHE ?= $(HOME)/.cache/zoo
# GLUE: $ZOO_GLUE_DIR if set, else ../shared/glue when present, else ./data/glue (`zoo data fetch`).
export ZOO_GLUE_DIR ?= $(if $(wildcard ../shared/glue),$(abspath ../shared/glue),$(abspath data/glue))
VENV := $(ZOO_CACHE)/venv
PY := $(VENV)/bin/python
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
REF := .cache/ref

.PHONY: test eval bench setup system-packages arm64-packages ckernels-test venv weights reference build release clean asan tsan fuzz-build fuzz-smoke fuzz-long

test: setup build weights reference ckernels-test
	swift test --skip-build --disable-swift-testing 2>&1 | tee .cache/test.log; exit $${PIPESTATUS[0]}

# The C kernels alone (Tests/ckernels/driver.c): natively at every SIMD level, and cross-compiled
# for arm64 under qemu-aarch64.
ckernels-test: system-packages arm64-packages
	tools/ckernels_test.sh native
	tools/ckernels_test.sh arm64

# Sanitizers. asan: the whole XCTest suite (and every zoo process it starts) under AddressSanitizer
# with LeakSanitizer, UndefinedBehaviorSanitizer on the C kernels (Swift itself traps on overflow
# and out-of-bounds); Tests/sanitizers/lsan.supp names the toolchain's own leaks (Foundation's
# Process and URLSession, XCTest). tsan: the parallel kernel tests under ThreadSanitizer, OpenMP
# regions included through LLVM's Archer tool (libomp's OMPT interface tells TSan about its barriers).
SAN_TESTS_ENV := ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 LSAN_OPTIONS=suppressions=$(CURDIR)/Tests/sanitizers/lsan.supp
asan: setup weights reference
	swift build --build-tests --build-path .build/asan --sanitize=address -Xcc -fsanitize=undefined -Xcc -fno-sanitize-recover=undefined
	$(SAN_TESTS_ENV) swift test --skip-build --build-path .build/asan --disable-swift-testing $(if $(FILTER),--filter '$(FILTER)') 2>&1 | tee .cache/asan.log; exit $${PIPESTATUS[0]}

ARCHER := $(firstword $(wildcard /usr/lib/llvm-*/lib/libarcher.so))
TSAN_FILTER ?= KernelTests|TrainKernelTests|LSTMTests|QuantTests.testInt8Gemm|QuantTests.testActivationQuant|QuantTests.testActivationRounding|QuantTests.testDequantizedLinear
tsan: setup weights reference
	swift build --build-tests --build-path .build/tsan --sanitize=thread
	TSAN_OPTIONS="halt_on_error=1 suppressions=$(CURDIR)/Tests/sanitizers/tsan.supp" OMP_TOOL_LIBRARIES=$(ARCHER) \
	  swift test --skip-build --build-path .build/tsan --disable-swift-testing --filter '$(TSAN_FILTER)' 2>&1 | tee .cache/tsan.log; exit $${PIPESTATUS[0]}

arm64-packages:
	@dpkg -s gcc-aarch64-linux-gnu qemu-user libopenblas-dev:arm64 >/dev/null 2>&1 || { \
	  $(SUDO) dpkg --add-architecture arm64 && $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq gcc-aarch64-linux-gnu qemu-user libopenblas-dev:arm64 libgomp1:arm64; }

eval: system-packages release
	.build/release/zoo weights fetch minilm-l6
	.build/release/zoo eval bert --task stsb --zero-shot --weights weights/minilm-l6 --json .cache/eval-stsb.json

bench: setup release weights
	$(PY) bench/ort_vs_zoo.py --zoo .build/release/zoo
	$(PY) bench/qbert_vs_ort.py --zoo .build/release/zoo

setup: system-packages venv

system-packages:
	@dpkg -s libopenblas-dev libomp-dev parallel slurm-wlm munge >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq libopenblas-dev libomp-dev parallel slurm-wlm munge; }

# The Python side (reference dumps, comparison benchmarks) lives in a cached venv, rebuilt when
# tools/requirements.txt changes.
venv: $(VENV)/.requirements
$(VENV)/.requirements: tools/requirements.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q -r tools/requirements.txt
	cp tools/requirements.txt $@

build:
	@mkdir -p .cache
	swift build --build-tests

release:
	@mkdir -p .cache
	swift build -c release --product zoo

weights: build
	.build/debug/zoo weights fetch minilm-l6
	.build/debug/zoo weights fetch paraphrase-minilm-l3

# HF / PyTorch / sklearn reference outputs, redone when the script, its inputs or the weights change.
reference: $(REF)/.stamp
$(REF)/.stamp: tools/hf_reference.py tools/tokenizer_diff.py tools/hf_families.py tools/hf_distill.py tools/glue_tasks.py Tests/ZooTests/Fixtures/encoder_inputs.txt weights/minilm-l6/model.safetensors weights/paraphrase-minilm-l3/model.safetensors $(VENV)/.requirements
	$(PY) tools/hf_reference.py all --out $(REF)
	touch $@

weights/minilm-l6/model.safetensors weights/paraphrase-minilm-l3/model.safetensors: | weights

# libFuzzer + AddressSanitizer harness of every parser of outside files (Tests/fuzz/harness, README
# "Fuzzing"); the zoo-fuzz product exists only with ZOO_FUZZ=1. fuzz-smoke: FUZZ_RUNS executions per
# target; fuzz-long: FUZZ_TIME seconds per target, logs in runs/fuzz/.
fuzz-build:
	ZOO_FUZZ=1 swift build --build-path .build/fuzz -c release --product zoo-fuzz -Xswiftc -sanitize=fuzzer,address -Xswiftc -use-ld=lld

fuzz-smoke: fuzz-build
	tools/fuzz.sh smoke

fuzz-long: fuzz-build
	nice -n 19 tools/fuzz.sh long

clean:
	rm -rf .build .cache
