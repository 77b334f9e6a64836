#!/usr/bin/env bash
# The CUDA check of the engine, for a GPU machine that has a pip PyTorch but no Debian packages
# and no network (the workplace's device machines):
#   here:  scripts/gpu_check.sh pack        copies CLI11, nlohmann-json and GoogleTest sources
#                                           into build-deps/ (ignored by git, carried along)
#   there: scripts/gpu_check.sh run OUT     builds against that PyTorch's LibTorch, runs the
#                                           parity and oracle tests on CUDA and on the CPU, and
#                                           the scoring/training benchmarks on CUDA; logs in OUT
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
DEPS=$ROOT/build-deps

pack() {
  rm -rf "$DEPS"
  mkdir -p "$DEPS/prefix/include" "$DEPS/prefix/share/cmake"
  cp -r /usr/include/CLI /usr/include/nlohmann "$DEPS/prefix/include/"
  cp -r /usr/share/cmake/CLI11 /usr/share/cmake/nlohmann_json "$DEPS/prefix/share/cmake/"
  cp -r /usr/src/googletest "$DEPS/googletest"
  du -sh "$DEPS"
}

run() {
  local out=${1:?usage: gpu_check.sh run OUT_DIR}
  mkdir -p "$out"
  local build=$ROOT/build-gpu jobs
  jobs=$(nproc)
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
  local torch_prefix
  torch_prefix=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)') || return 1
  python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)' | tee -a "$out/gpu.txt"
  # Only LibTorch's own CUDA code runs; naming the architecture skips its detection step.
  export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}
  local generator=() keep_going=()
  command -v ninja >/dev/null && generator=(-G Ninja) && keep_going=(-- -k 0)
  echo "== configure"
  if ! cmake -S "$ROOT" -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release \
      -DCMAKE_PREFIX_PATH="$torch_prefix;$DEPS/prefix" -DIMRAM_GTEST_SOURCE_DIR="$DEPS/googletest" \
      >"$out/configure.log" 2>&1; then
    tail -40 "$out/configure.log"
    return 1
  fi
  echo "== build ($jobs jobs)"
  local start=$SECONDS
  if ! cmake --build "$build" -j "$jobs" "${keep_going[@]}" >"$out/build.log" 2>&1; then
    grep -m 20 -B2 -A8 "error" "$out/build.log"
    return 1
  fi
  echo "built in $((SECONDS - start)) s"
  echo "== parity and oracle tests on CUDA"
  IMRAM_TEST_DEVICE=cuda "$build/imram_tests" --gtest_filter='*Parity*:*Oracle*' 2>&1 | tee "$out/tests_cuda.log" | tail -25
  echo "== whole suite on the CPU (this LibTorch)"
  (cd "$build" && OMP_NUM_THREADS=1 timeout 300 ctest -j "$jobs" --output-on-failure >"$out/tests_cpu.log" 2>&1)
  tail -5 "$out/tests_cpu.log"
  echo "== benchmarks on CUDA"
  local imram=$build/imram caps=$ROOT/tests/testdata/captions/f30k_test_caps.txt
  local common=(--embed 1024 --regions 36 --caption-lengths "$caps" --memory-budget 16384 --json)
  {
    timeout 120 "$imram" --device cuda bench score --mode text --steps 3 --images 500 "${common[@]}"
    timeout 120 "$imram" --device cuda bench score --mode image --steps 3 --images 500 "${common[@]}"
    timeout 120 "$imram" --device cuda bench score --mode text --steps 1 --images 1000 "${common[@]}"
    timeout 120 "$imram" --device cuda bench train --mode full --steps 3 --batch-size 32 --embed 1024 --regions 36 --iterations 5 --json
    timeout 120 "$imram" --device cuda bench train --mode full --steps 3 --batch-size 128 --embed 1024 --regions 36 --iterations 3 --json
    timeout 120 "$imram" doctor --json
    timeout 120 "$imram" bench score --mode text --steps 3 --images 128 "${common[@]}"
  } 2>&1 | tee "$out/bench_cuda.jsonl"
}

case "${1:-}" in
  pack) pack ;;
  run) shift; run "$@" ;;
  *) echo "usage: scripts/gpu_check.sh pack | run OUT_DIR" >&2; exit 2 ;;
esac
