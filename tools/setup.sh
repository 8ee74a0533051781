#!/usr/bin/env bash
# Installs everything kdhost needs on a fresh Debian 12 machine and builds it into build/.
# Idempotent: finished steps are skipped. Quiet on success; on failure it names the step and
# shows the end of its log (build/setup.log).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
mkdir -p build
log="$root/build/setup.log"
: > "$log"

step() {
  local name="$1"
  shift
  echo "== $name: $*" >> "$log"
  if ! "$@" >> "$log" 2>&1; then
    echo "setup: step '$name' failed. Last lines of $log:" >&2
    tail -n 40 "$log" >&2
    exit 1
  fi
}

# 1. Debian packages: toolchain, libraries and the embedded Fashion-MNIST data.
packages=(build-essential cmake ninja-build ccache git pkg-config python3 python3-venv
          libboost1.74-dev libabsl-dev libtomlplusplus-dev catch2 zlib1g-dev libjpeg62-turbo-dev
          libpng-dev libgloo-dev libhdf5-dev abigail-tools
          dataset-fashion-mnist)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo > /dev/null; then
      sudo=(sudo)
    else
      echo "setup: these Debian packages are missing and this is not root: ${missing[*]}" >&2
      echo "setup: install them (apt-get install ${missing[*]}) or run this script as root" >&2
      exit 1
    fi
  fi
  step "apt-get update" "${sudo[@]}" apt-get update -q
  step "install Debian packages" "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# 2. The project's Python environment with the pinned torch (LibTorch for the build).
if [ ! -x .venv/bin/python ]; then
  step "create .venv" python3 -m venv .venv
fi
if ! .venv/bin/python - tools/requirements.txt >> "$log" 2>&1 <<'PY'
import sys
from importlib.metadata import version, PackageNotFoundError
for line in open(sys.argv[1]):
    line = line.split("#")[0].strip()
    if not line:
        continue
    name, wanted = line.split("==")
    try:
        have = version(name)
    except PackageNotFoundError:
        sys.exit(f"{name} is not installed")
    if have.split("+")[0] != wanted:
        sys.exit(f"{name} {have} is installed, {wanted} is pinned")
PY
then
  step "install Python packages" .venv/bin/python -m pip install -q --disable-pip-version-check \
    -r tools/requirements.txt
fi
torch_prefix="$(.venv/bin/python -c 'import torch; print(torch.utils.cmake_prefix_path)' 2>> "$log")"

# 3. Configure (once) and build.
if [ ! -f build/build.ninja ]; then
  step "configure" cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_PREFIX_PATH="$torch_prefix"
fi
step "build" cmake --build build -j "$(nproc)"
echo "setup: done; kdhost is build/bin/kdhost"
