#!/usr/bin/env python3
"""Checks that every Catch2 TEST_CASE of the tree runs under ctest exactly once.

Three views of the tests are compared:
  * the sources: every TEST_CASE("...") in a C++ file that the build compiles (from the build's
    compile_commands.json, which also says which target each file belongs to);
  * the test binaries: what each one lists with --list-test-names-only;
  * ctest: what `ctest --show-only=json-v1` would run (the test's command line).

It fails, naming the test case and the file it is in, when a test case is compiled into no test
binary, when a binary lists other names than its sources hold, when a test case is matched by no
ctest entry or by more than one, when an entry's filter matches no test case, and when a filtered
entry lacks `--warn NoTests` (without it such an entry would pass without running anything).

With --probe-unmatched it also re-runs one registered entry's command line with its filter
replaced by a name no test case has, and fails unless that run fails with Catch2's
"No test cases matched" message: the harness as registered cannot pass silently.

The inputs can be given as files instead (--ctest-json, --listing, --compile-commands), which
the tests of this script use.
"""

import argparse
import collections
import json
import os
import re
import subprocess
import sys

NO_TESTS_FLAG = ["--warn", "NoTests"]
UNMATCHED_NAME = "no test case has this name (kdhost harness probe)"
SKIPPED_DIRS = {".git", ".venv", "node_modules", "__pycache__"}


def strip_comments(text):
    """Removes // and /* */ comments, keeping string and character literals intact."""
    pattern = re.compile(r'//[^\n]*|/\*.*?\*/|"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\'', re.S)
    return pattern.sub(lambda m: m.group(0) if m.group(0)[0] in "\"'" else " ", text)


def decode_literal(body):
    """The value of a C++ string literal's body (simple escapes only, which is what names use)."""
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)), body)


TEST_CASE_RE = re.compile(r'\bTEST_CASE\s*\(\s*((?:"(?:\\.|[^"\\\n])*"\s*)+)')
LITERAL_RE = re.compile(r'"((?:\\.|[^"\\\n])*)"')


def source_test_cases(path):
    """[(name, line)] of the TEST_CASEs in one C++ file."""
    with open(path, encoding="utf-8") as f:
        text = strip_comments(f.read())
    found = []
    for m in TEST_CASE_RE.finditer(text):
        name = "".join(decode_literal(b) for b in LITERAL_RE.findall(m.group(1)))
        found.append((name, text.count("\n", 0, m.start()) + 1))
    return found


def tree_sources(source_dir, build_dir):
    build_dir = os.path.realpath(build_dir)
    for root, dirs, files in os.walk(source_dir):
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS and not d.startswith("build")
                         and os.path.realpath(os.path.join(root, d)) != build_dir)
        for name in sorted(files):
            if name.endswith((".cpp", ".cc", ".cxx")):
                yield os.path.realpath(os.path.join(root, name))


TARGET_RE = re.compile(r"CMakeFiles/([^/]+)\.dir/")


def compiled_targets(compile_commands):
    """{source path: set of target names} from compile_commands.json."""
    with open(compile_commands, encoding="utf-8") as f:
        entries = json.load(f)
    targets = collections.defaultdict(set)
    for e in entries:
        path = os.path.realpath(os.path.join(e["directory"], e["file"]))
        out = e.get("output")
        if not out:
            words = e.get("arguments") or e.get("command", "").split()
            out = next((b for a, b in zip(words, words[1:]) if a == "-o"), "")
        m = TARGET_RE.search(out)
        if m:
            targets[path].add(m.group(1))
    return targets


def unescape_filter(spec):
    """The test case name a catch_discover_tests filter stands for (it escapes , [ and ])."""
    return re.sub(r"\\([,\[\]])", r"\1", spec)


def load_ctest(args):
    if args.ctest_json:
        with open(args.ctest_json, encoding="utf-8") as f:
            return json.load(f)
    out = subprocess.run([args.ctest, "--test-dir", args.build_dir, "--show-only=json-v1"],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def test_property(test, name):
    for p in test.get("properties", []):
        if p.get("name") == name:
            return p.get("value")
    return None


def listed_names(exe, listings, cwd):
    if exe in listings:
        with open(listings[exe], encoding="utf-8") as f:
            return [line for line in f.read().splitlines() if line]
    run = subprocess.run([exe, "--list-test-names-only"], capture_output=True, text=True, cwd=cwd)
    if run.returncode < 0:
        raise RuntimeError(f"{exe} --list-test-names-only died with signal {-run.returncode}:\n"
                           f"{run.stderr}")
    return [line for line in run.stdout.splitlines() if line]


def check(args):
    errors = []
    source_dir = os.path.realpath(args.source_dir)

    def rel(path):
        return os.path.relpath(path, source_dir)

    targets_of = compiled_targets(args.compile_commands)
    optional = {os.path.realpath(os.path.join(source_dir, p)) for p in args.optional}
    # Target name -> [(test case name, "file:line")] from the sources.
    by_target = collections.defaultdict(list)
    for path in tree_sources(source_dir, args.build_dir):
        cases = source_test_cases(path)
        if not cases:
            continue
        if path not in targets_of:
            if path not in optional:
                errors.append(f"{rel(path)}: holds {len(cases)} TEST_CASE(s) but is compiled "
                              "into no target of this build; add it to a kd_add_test")
            continue
        for target in targets_of[path]:
            by_target[target] += [(name, f"{rel(path)}:{line}") for name, line in cases]

    ctest = load_ctest(args)
    # Executable basename -> (path, [(ctest test name, filter or None, command)]).
    entries = collections.defaultdict(list)
    paths = {}
    for test in ctest.get("tests", []):
        command = test.get("command") or []
        if not command:
            continue
        base = os.path.basename(command[0])
        if base in by_target:
            paths[base] = command[0]
            spec = command[1] if len(command) > 1 and not command[1].startswith("-") else None
            entries[base].append((test["name"], spec, command, test))

    listings = dict(item.split("=", 1) for item in args.listing)
    cases_checked = 0
    for target in sorted(by_target):
        cases = by_target[target]
        if target not in paths:
            errors.append(f"target {target}: its {len(cases)} test case(s) are registered with no "
                          f"ctest entry (first: {cases[0][1]} \"{cases[0][0]}\")")
            continue
        exe = paths[target]
        workdir = test_property(entries[target][0][3], "WORKING_DIRECTORY") or args.build_dir
        listed = listed_names(exe, listings, workdir)
        source_count = collections.Counter(name for name, _ in cases)
        listed_count = collections.Counter(listed)
        for name, where in cases:
            if listed_count[name] == 0:
                errors.append(f"{where}: \"{name}\" is not listed by {target} "
                              "--list-test-names-only (hidden, or its name is built at run time)")
        for name in listed_count - source_count:
            errors.append(f"{target} lists \"{name}\", which no TEST_CASE of its sources names")

        specs = [(unescape_filter(s), n, c) for n, s, c, _ in entries[target] if s is not None]
        whole = [n for n, s, _, _ in entries[target] if s is None]
        known = set(listed)
        for name, where in cases:
            cases_checked += 1
            matched = [n for s, n, _ in specs if s == name] + whole
            if len(matched) == 1:
                continue
            if not matched:
                pieces = [s for s, _, _ in specs if ";" in name and s in name.split(";")]
                why = (" Its name holds ';', which CMake splits into separate entries "
                       f"({len(pieces)} of them exist); write the name without ';'."
                       if pieces or ";" in name else "")
                errors.append(f"{where}: \"{name}\" ({target}) never runs under ctest.{why}")
            else:
                errors.append(f"{where}: \"{name}\" ({target}) is run by {len(matched)} ctest "
                              f"entries: {', '.join(matched)}")
        for spec, test_name, command in specs:
            if spec not in known:
                errors.append(f"ctest entry \"{test_name}\" runs {target} with the filter "
                              f"\"{spec}\", which matches no test case")
            if not any(command[i:i + 2] == NO_TESTS_FLAG for i in range(len(command))):
                errors.append(f"ctest entry \"{test_name}\" lacks `--warn NoTests`: a filter that "
                              "matched nothing would pass without running a test")
    return errors, cases_checked, entries


def probe_unmatched(entries):
    """Re-runs a registered entry with a filter that matches nothing; it must fail."""
    for target in sorted(entries):
        for test_name, spec, command, test in entries[target]:
            if spec is None:
                continue
            probe = [command[0], UNMATCHED_NAME] + command[2:]
            cwd = test_property(test, "WORKING_DIRECTORY")
            run = subprocess.run(probe, capture_output=True, text=True, cwd=cwd)
            shown = " ".join(probe)
            if run.returncode == 0:
                return [f"`{shown}` (the command of \"{test_name}\" with its filter replaced) "
                        "exited 0: an entry whose filter matches no test case would pass"]
            if "No test cases matched" not in run.stdout + run.stderr:
                return [f"`{shown}` exited {run.returncode} without Catch2's "
                        f"'No test cases matched' message:\n{run.stdout}{run.stderr}"]
            print(f"probe: `{shown}` exited {run.returncode} with 'No test cases matched'")
            return []
    return ["--probe-unmatched: no filtered Catch2 entry is registered with ctest"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source-dir", required=True)
    parser.add_argument("--build-dir", required=True)
    parser.add_argument("--ctest", default="ctest")
    parser.add_argument("--compile-commands", help="default: BUILD_DIR/compile_commands.json")
    parser.add_argument("--ctest-json", help="read ctest's json-v1 listing from this file")
    parser.add_argument("--listing", action="append", default=[], metavar="EXE=FILE",
                        help="read EXE's --list-test-names-only output from FILE")
    parser.add_argument("--optional", action="append", default=[], metavar="SOURCE",
                        help="a test source this build may leave out (relative to --source-dir)")
    parser.add_argument("--probe-unmatched", action="store_true")
    args = parser.parse_args()
    args.compile_commands = args.compile_commands or os.path.join(args.build_dir,
                                                                  "compile_commands.json")
    errors, count, entries = check(args)
    if args.probe_unmatched and not errors:
        errors += probe_unmatched(entries)
    for e in errors:
        print(f"error: {e}")
    if errors:
        print(f"test registration: {len(errors)} problem(s)")
        return 1
    print(f"test registration: {count} test cases in {len(entries)} binaries, each run by exactly "
          "one ctest entry")
    return 0


if __name__ == "__main__":
    sys.exit(main())
