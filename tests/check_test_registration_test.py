#!/usr/bin/env python3
"""Tests of tools/check_test_registration.py on a small made-up tree, build and ctest listing.

Usage: check_test_registration_test.py PATH/TO/check_test_registration.py
"""

import json
import os
import stat
import subprocess
import sys
import tempfile

CHECKER = sys.argv[1]
failures = []
checked = 0


def expect(cond, what):
    global checked
    checked += 1
    if not cond:
        failures.append(what)


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def run_checker(root, tests, listed, extra=()):
    write(f"{root}/ctest.json", json.dumps({"kind": "ctestInfo", "tests": tests}))
    write(f"{root}/listing.txt", "".join(n + "\n" for n in listed))
    run = subprocess.run(
        [sys.executable, CHECKER, "--source-dir", f"{root}/src", "--build-dir", f"{root}/build",
         "--ctest-json", f"{root}/ctest.json", "--listing", f"{root}/build/bin/fake_tests="
         f"{root}/listing.txt", *extra], capture_output=True, text=True)
    return run.returncode, run.stdout + run.stderr


def entry(root, name, spec, warn=True):
    command = [f"{root}/build/bin/fake_tests", spec] + (["--warn", "NoTests"] if warn else [])
    return {"name": name, "command": command,
            "properties": [{"name": "WORKING_DIRECTORY", "value": f"{root}/build"}]}


with tempfile.TemporaryDirectory() as root:
    write(f"{root}/src/a_test.cpp", '''
TEST_CASE("plain one") {}
TEST_CASE("first part; second part") {}
TEST_CASE(
    "split" " literal, with a comma") {}
// TEST_CASE("commented out") {}
/* TEST_CASE("also commented out") */
''')
    write(f"{root}/src/orphan_test.cpp", 'TEST_CASE("orphan") {}\n')
    os.makedirs(f"{root}/build/bin")
    write(f"{root}/build/compile_commands.json", json.dumps([{
        "directory": f"{root}/build", "file": f"{root}/src/a_test.cpp",
        "command": "c++ -o tests/CMakeFiles/fake_tests.dir/a_test.cpp.o -c ../src/a_test.cpp",
        "output": "tests/CMakeFiles/fake_tests.dir/a_test.cpp.o"}]))
    names = ["plain one", "first part; second part", "split literal, with a comma"]

    # What catch_discover_tests registers for the names above, with every fault the check names.
    faulty = [entry(root, "plain one", "plain one"),
              entry(root, "plain one again", "plain one"),
              entry(root, "first part", "first part"),
              entry(root, " second part", " second part"),
              entry(root, "split literal, with a comma", r"split literal\, with a comma", False)]
    rc, out = run_checker(root, faulty, names)
    expect(rc == 1, f"faulty registration: exit {rc}, wanted 1:\n{out}")
    for needle in [
            "orphan_test.cpp: holds 1 TEST_CASE(s) but is compiled into no target",
            "a_test.cpp:3: \"first part; second part\" (fake_tests) never runs under ctest. Its "
            "name holds ';', which CMake splits into separate entries (2 of them exist)",
            "a_test.cpp:2: \"plain one\" (fake_tests) is run by 2 ctest entries: plain one, plain "
            "one again",
            "ctest entry \"first part\" runs fake_tests with the filter \"first part\", which "
            "matches no test case",
            "ctest entry \" second part\" runs fake_tests with the filter \" second part\"",
            "ctest entry \"split literal, with a comma\" lacks `--warn NoTests`",
            "test registration: 6 problem(s)"]:
        expect(needle in out, f"faulty registration: missing {needle!r} in:\n{out}")
    expect("commented out" not in out, f"a commented-out TEST_CASE was read:\n{out}")

    # A binary that lists a name its sources do not hold, and a source name it does not list.
    rc, out = run_checker(root, faulty[:1], ["plain one", "made at run time"],
                          ["--optional", "orphan_test.cpp"])
    expect("fake_tests lists \"made at run time\", which no TEST_CASE of its sources names" in out,
           f"extra listed name not reported:\n{out}")
    expect("a_test.cpp:3: \"first part; second part\" is not listed by fake_tests" in out,
           f"unlisted source name not reported:\n{out}")

    # Fixed: the ';' written as ' and', each name registered once, every entry guarded.
    write(f"{root}/src/a_test.cpp", '''
TEST_CASE("plain one") {}
TEST_CASE("first part and second part") {}
TEST_CASE(
    "split" " literal, with a comma") {}
''')
    names[1] = "first part and second part"
    good = [entry(root, "plain one", "plain one"),
            entry(root, names[1], names[1]),
            entry(root, names[2], r"split literal\, with a comma")]
    rc, out = run_checker(root, good, names, ["--optional", "orphan_test.cpp"])
    expect(rc == 0, f"good registration: exit {rc}, wanted 0:\n{out}")
    expect("test registration: 3 test cases in 1 binaries" in out, f"good registration:\n{out}")

    # The probe: a test binary that exits 0 on a filter matching nothing is caught; one that
    # fails with Catch2's message passes.
    for rc_of_binary, wanted in [(0, 1), (2, 0)]:
        write(f"{root}/build/bin/fake_tests",
              "#!/bin/sh\necho \"No test cases matched '$1'\"\n"
              f"exit {rc_of_binary}\n")
        os.chmod(f"{root}/build/bin/fake_tests", stat.S_IRWXU)
        rc, out = run_checker(root, good, names,
                              ["--optional", "orphan_test.cpp", "--probe-unmatched"])
        expect(rc == wanted, f"probe with a binary exiting {rc_of_binary}: exit {rc}, wanted "
               f"{wanted}:\n{out}")
        if rc_of_binary == 0:
            expect("exited 0: an entry whose filter matches no test case would pass" in out,
                   f"probe message:\n{out}")

for f in failures:
    print(f"FAILED: {f}\n")
print(f"{checked - len(failures)} passed, {len(failures)} failed")
sys.exit(1 if failures else 0)
