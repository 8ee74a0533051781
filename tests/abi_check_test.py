#!/usr/bin/env python3
"""Tests tools/abi_check.py on altered copies of the kd headers against the recorded baseline:
a field added to a public struct fails the check (naming the type and the size change), a new
public type passes as a compatible addition, and a bumped major version without a baseline fails.

usage: abi_check_test.py <abi_check.py> <include dir> <abi dir> <compiler flags>
"""

import os
import shutil
import subprocess
import sys
import tempfile


def run_check(script, include_dir, abi_dir, flags):
    result = subprocess.run([sys.executable, script, "--include-dir", include_dir, "--abi-dir",
                             abi_dir, "--flags", flags], capture_output=True, text=True)
    return result.returncode, result.stdout + result.stderr


def altered_copy(include_dir, work, name, header, old, new):
    root = os.path.join(work, name)
    shutil.copytree(os.path.join(include_dir, "kd"), os.path.join(root, "kd"))
    path = os.path.join(root, "kd", header)
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if old not in text:
        sys.exit(f"abi_check_test: '{old}' is not in {header}; update the test")
    with open(path, "w", encoding="utf-8") as f:
        f.write(text.replace(old, new, 1))
    return root


def main():
    script, include_dir, abi_dir, flags = sys.argv[1:5]
    failures = []
    with tempfile.TemporaryDirectory(prefix="kd_abi_test_") as work:
        # A data member added at the front of kd::StageRef moves every other member.
        layout = altered_copy(include_dir, work, "layout", "registry.h",
                              "struct StageRef {\n", "struct StageRef {\n  int64_t added = 0;\n")
        code, output = run_check(script, layout, abi_dir, flags)
        if code != 1 or "changed incompatibly" not in output or "kd::StageRef" not in output \
                or "type size changed" not in output:
            failures.append(f"a field added to kd::StageRef was not refused (exit {code}):\n{output}")

        # A new public type is a compatible addition.
        added = altered_copy(include_dir, work, "added", "training.h", "struct StepInfo {",
                             "struct AddedForTheTest {\n  int value = 0;\n};\n\nstruct StepInfo {")
        code, output = run_check(script, added, abi_dir, flags)
        if code != 0 or "1 public type(s) added" not in output:
            failures.append(f"a new public type was not accepted as compatible (exit {code}):\n"
                            f"{output}")

        # A bumped major needs its own baseline (checked before anything is compiled).
        with open(os.path.join(include_dir, "kd", "version.h"), encoding="utf-8") as f:
            major = int(f.read().split("#define KD_API_MAJOR ")[1].split()[0])
        bumped = altered_copy(include_dir, work, "bumped", "version.h",
                              f"#define KD_API_MAJOR {major}", f"#define KD_API_MAJOR {major + 1}")
        code, output = run_check(script, bumped, abi_dir, flags)
        if code != 1 or f"no ABI baseline for kd API {major + 1}" not in output:
            failures.append(f"a major version without a baseline was not refused (exit {code}):\n"
                            f"{output}")
    for failure in failures:
        print("FAILED:", failure)
    if not failures:
        print("abi_check_test: a layout change refused, an addition accepted, a new major refused")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
