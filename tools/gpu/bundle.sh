#!/usr/bin/env bash
# Packs what a GPU machine without network needs to build and check kdhost into .gpu/ (git-ignored):
# the Debian development packages the build uses (headers, CMake files, static and shared
# libraries), the shared libraries kdhost and its plugins load from /usr/lib here (found with ldd on
# the build), and the embedded Fashion-MNIST data. Then, on the GPU machine, from the project root:
#   bash tools/gpu/check.sh          (results under $OUT/gpu-check, see docs/benchmarks.md)
set -euo pipefail
root=$(git rev-parse --show-toplevel)
cd "$root"
build=${1:-build}
pkgs=(libboost1.74-dev libabsl-dev libtomlplusplus-dev catch2 zlib1g-dev libjpeg62-turbo-dev
      libpng-dev libgloo-dev libhdf5-dev dataset-fashion-mnist)
mkdir -p .gpu
grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
list=$(mktemp)
trap 'rm -f "$list"' EXIT
for p in "${pkgs[@]}"; do
  if ! dpkg -s "$p" > /dev/null 2>&1; then
    echo "bundle: package $p is not installed here; run tools/setup.sh first" >&2
    exit 1
  fi
  dpkg -L "$p" | while read -r f; do
    [[ -f $f || -L $f ]] || continue
    case $f in /usr/share/doc/*|/usr/share/man/*|/usr/share/lintian/*) continue ;; esac
    echo "${f#/}"
  done >> "$list"
done
# Runtime libraries the built binaries resolve from the system (not glibc, the compiler's or
# LibTorch's), with the files their symlinks point to.
if [ -x "$build/bin/kdhost" ]; then
  find "$build/bin" "$build/lib" -type f \( -name 'kdhost' -o -name '*.so*' \) -print0 2> /dev/null |
    xargs -0 ldd 2> /dev/null | awk '$2 == "=>" && $3 ~ /^\/(usr\/)?lib\// {print $3}' | sort -u |
    while read -r lib; do
      case $(basename "$lib") in
        libc.so*|libm.so*|libstdc++.so*|libgcc_s.so*|ld-linux*|libpthread.so*|libdl.so*|librt.so*) continue ;;
      esac
      echo "${lib#/}"
      real=$(readlink -f "$lib")
      echo "${real#/}"
    done >> "$list"
else
  echo "bundle: $build/bin/kdhost not built; packing the -dev packages only" >&2
fi
sort -u "$list" -o "$list"
tar -C / -cJf .gpu/deps.tar.xz -T "$list"
echo "bundle: $(du -h .gpu/deps.tar.xz | cut -f1) in .gpu/deps.tar.xz ($(wc -l < "$list") files); carry .gpu to the GPU machine and run: bash tools/gpu/check.sh"
