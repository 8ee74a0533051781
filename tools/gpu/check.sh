#!/usr/bin/env bash
# The CUDA path checked in one run on a GPU machine (docs/benchmarks.md, "The CUDA path"):
#   1. unpacks the dependencies tools/gpu/bundle.sh packed into .gpu/ (a machine without network),
#   2. configures and builds kdhost with CUDA for the machine's GPU (build-gpu/),
#   3. runs the CUDA tests and a fast subset of the CPU tests,
#   4. benchmarks the quickstart stages and the paper recipes on synthetic inputs of their real
#      shapes, in fp32, bf16 and fp16 AMP and with channels_last, each next to the PyTorch reference
#      of the same step (bench/torch_reference.py), within a time budget (tools/gpu/check.py).
# Results go to $OUT/gpu-check (or --out DIR): summary.md, bench.csv, the JSON of every row and
# the logs. Without a GPU it says so, writes skipped.txt and exits 0 having built and run nothing.
#
#   bash tools/gpu/check.sh [--out DIR] [--build-dir DIR] [check.py options, e.g. --budget-s 300]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
out="${OUT:-$root}/gpu-check"
build=build-gpu
args=()
while (($#)); do
  case $1 in
    --out) out=$2; shift 2 ;;
    --build-dir) build=$2; shift 2 ;;
    *) args+=("$1"); shift ;;
  esac
done
mkdir -p "$out/logs"

gpus=""
if command -v nvidia-smi > /dev/null 2>&1; then
  gpus=$(nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap --format=csv,noheader 2> /dev/null || true)
fi
if [ -z "$gpus" ]; then
  echo "gpu check: no GPU on this machine (nvidia-smi is missing or lists none); nothing was built or run" | tee "$out/skipped.txt"
  exit 0
fi
echo "$gpus" > "$out/gpu.txt"
echo "gpu check: $gpus"
start=$(date +%s)

python=${KD_PYTHON:-python3}
deps=/opt/kd-deps
if [ -f .gpu/deps.tar.xz ]; then
  mkdir -p "$deps"
  tar -C "$deps" -xJf .gpu/deps.tar.xz
  export CPATH="$deps/usr/include${CPATH:+:$CPATH}"
  export LD_LIBRARY_PATH="$deps/usr/lib/x86_64-linux-gnu:$deps/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  export PKG_CONFIG_PATH="$deps/usr/lib/x86_64-linux-gnu/pkgconfig:$deps/usr/share/pkgconfig"
  prefix="$deps/usr:$deps/usr/lib/x86_64-linux-gnu/cmake:$deps/usr/lib/cmake"
fi
torch_prefix=$("$python" -c 'import torch; print(torch.utils.cmake_prefix_path)')
torch_lib=$("$python" -c 'import torch, os; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
export LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
"$python" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())' | tee "$out/torch.txt"
# The GPU's architecture, e.g. 9.0 for an H100/H200.
export TORCH_CUDA_ARCH_LIST=$(echo "$gpus" | head -1 | awk -F', ' '{print $4}')

if [ ! -x "$build/bin/kdhost" ] || [ "${KD_GPU_CHECK_REBUILD:-1}" = 1 ]; then
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DKD_WITH_CUDA=ON \
    -DCMAKE_PREFIX_PATH="$torch_prefix${prefix:+:$prefix}" > "$out/logs/configure.log" 2>&1 ||
    { tail -30 "$out/logs/configure.log"; exit 1; }
  cmake --build "$build" -j "$(nproc)" > "$out/logs/build.log" 2>&1 ||
    { grep -m 20 -B 2 -A 8 'error' "$out/logs/build.log" | head -60; exit 1; }
fi
echo "gpu check: built in $(($(date +%s) - start)) s"
fmnist=/usr/share/datasets/fashion-mnist
[ -d "$fmnist" ] || fmnist="$deps/usr/share/datasets/fashion-mnist"
"$python" tools/gpu/check.py --build-dir "$build" --out "$out" --device cuda \
  --fmnist-root "$fmnist" --python "$python" "${args[@]}"
echo "gpu check: done in $(($(date +%s) - start)) s; results in $out"
