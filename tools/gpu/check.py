#!/usr/bin/env python3
"""Benchmarks kdhost's training step against a PyTorch reference, row by row (tools/gpu/check.sh).

Each row is one stage of a config: the quickstart's stages, and the paper recipes on synthetic data
of their real shapes (bench/gpu/*.toml). For each precision variant it runs
`kdhost train CONFIG --stage S --bench N --json ...` and, where the row has one,
`bench/torch_reference.py ROW` with the same batch, shape, AMP and memory format, and tables both:
ms per phase, samples/s, peak GPU memory, host synchronisations per step, and the ratio of the
totals. Teachers a row needs are trained first for one step (or one epoch for the quickstart), once.
Rows run in priority order until the time budget is spent; the rest are listed as not run.

On the CPU, `--tiny` shrinks every input so that the whole procedure runs in a minute: it checks the
configs, the script and that kdhost's and the reference's models have the same parameter counts
(the test tests/gpu_check_test.cpp does this in CI). Exit status 1 when a run failed or a parameter
count differs.
"""
import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# PSD's 2K = 10 sub-task teachers, as the foreach template `teacher` expands.
PSD_TEACHERS = [f"teacher.{graph}.{group}" for graph in ("cgp", "dgp") for group in range(5)]

# name, config, stage (None: the config's only stage), teacher stages to train first,
# reference row (None: no reference), extra --set values.
ROWS = [
    ("quickstart.teacher", "configs/quickstart/kd_multilabel.toml", "teacher", [], "quickstart.teacher", []),
    ("quickstart.student", "configs/quickstart/kd_multilabel.toml", "student", [], "quickstart.student", []),
    ("quickstart.student_kd", "configs/quickstart/kd_multilabel.toml", "student_kd", ["teacher"], "quickstart.student_kd", []),
    ("psd.student", "bench/gpu/psd_coco448.toml", "student", [], "psd.student", []),
    ("psd.student_kd", "bench/gpu/psd_coco448.toml", "student_kd", ["teacher_full"], "psd.student_kd", []),
    ("psd.student_psd", "bench/gpu/psd_coco448.toml", "student_psd", PSD_TEACHERS, "psd.student_psd", []),
    ("rdd.student", "bench/gpu/rdd_cityscapes.toml", "student", [], "rdd.student", []),
    ("rdd.student_kd", "bench/gpu/rdd_cityscapes.toml", "student_kd", ["teacher"], "rdd.student_kd", []),
    ("rdd.student_rdd_tse", "bench/gpu/rdd_cityscapes.toml", "student_rdd", ["teacher"], "rdd.student_rdd",
     ['stages.student_rdd.distiller.schedule="tse"']),
    ("lskd.iterative", "bench/gpu/lskd_vg150.toml", None, [], None, []),
    ("lskd.synchronous", "bench/gpu/lskd_vg150.toml", None, [], None, ['distiller.mode="synchronous"']),
]

# Values every run of a config gets: the quickstart's teacher trains one epoch (its export is only
# needed to exist). With --tiny, small inputs for a CPU run (the models are unchanged).
CONFIG_SETS = {
    "configs/quickstart/kd_multilabel.toml": ["stages.teacher.train.max_epochs=1"],
}
TINY_SETS = {
    "configs/quickstart/kd_multilabel.toml": [
        "data.train.num_samples=64", "data.val.num_samples=16", "loader.batch_size=8"],
    "bench/gpu/psd_coco448.toml": [
        "data.train.image_size=[64,64]", "data.val.image_size=[64,64]", "data.train.num_samples=8",
        "data.val.num_samples=4", "loader.batch_size=2"],
    "bench/gpu/rdd_cityscapes.toml": [
        "data.train.image_size=[64,128]", "data.val.image_size=[64,128]", "data.train.num_samples=8",
        "data.val.num_samples=2", "loader.batch_size=2"],
    "bench/gpu/lskd_vg150.toml": [
        "data.train.image_size=[96,128]", "data.val.image_size=[96,128]", "data.train.num_samples=8",
        "data.val.num_samples=4", "loader.batch_size=2", "loader.eval_batch_size=2"],
}
TINY_REFERENCE = {  # --batch and --image-size of the reference in --tiny runs
    "quickstart": ["--batch", "8"],
    "psd": ["--batch", "2", "--image-size", "64", "64"],
    "rdd": ["--batch", "2", "--image-size", "64", "128"],
}
# variant -> (train.amp, train.channels_last)
VARIANTS = {"fp32": ("off", False), "bf16": ("bf16", False), "fp16": ("fp16", False),
            "bf16_cl": ("bf16", True), "fp32_cl": ("off", True)}
DEFAULT_VARIANTS = {"cuda": ["bf16", "fp16", "fp32", "bf16_cl"], "cpu": ["fp32", "fp32_cl"]}


def run(cmd, log, timeout, env=None):
    """Runs cmd, output to log; returns (exit status, seconds). 124 on timeout."""
    start = time.monotonic()
    with open(log, "w") as f:
        f.write("$ " + " ".join(str(c) for c in cmd) + "\n")
        f.flush()
        try:
            rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, timeout=timeout,
                                cwd=ROOT, env=env).returncode
        except subprocess.TimeoutExpired:
            f.write(f"\n[timed out after {timeout} s]\n")
            rc = 124
    return rc, time.monotonic() - start


def tail(log, lines=15):
    try:
        return "".join(Path(log).read_text(errors="replace").splitlines(True)[-lines:])
    except OSError:
        return ""


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--build-dir", default="build")
    p.add_argument("--out", required=True)
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    p.add_argument("--python", default=sys.executable, help="the Python of the reference")
    p.add_argument("--fmnist-root", default="", help="Fashion-MNIST directory for the quickstart")
    p.add_argument("--rows", default="all", help="comma-separated row names or prefixes")
    p.add_argument("--variants", default="", help="comma-separated: " + ", ".join(VARIANTS))
    p.add_argument("--steps", type=int, default=12, help="bench steps per run (2 warm-up)")
    p.add_argument("--budget-s", type=float, default=330, help="no new run starts after this")
    p.add_argument("--tiny", action="store_true", help="small inputs, for a CPU check")
    p.add_argument("--skip-tests", action="store_true")
    p.add_argument("--no-reference", action="store_true")
    a = p.parse_args()

    out = Path(a.out).resolve()
    (out / "logs").mkdir(parents=True, exist_ok=True)
    (out / "bench").mkdir(exist_ok=True)
    build = (ROOT / a.build_dir).resolve()
    kdhost = build / "bin" / "kdhost"
    work = out / "work"
    start = time.monotonic()
    summary = [f"# GPU check ({a.device})", ""]
    failed = False

    if not a.skip_tests and a.device == "cuda":
        summary += ["## Tests", ""]
        for name, cmd, timeout in [
            ("cuda", ["ctest", "--test-dir", build, "-L", "cuda", "--output-on-failure"], 240),
            ("cpu subset", ["ctest", "--test-dir", build, "-L", "unit", "-LE", "cuda|integration|harness",
                            "-j", str(os.cpu_count() or 4), "--timeout", "90"], 180)]:
            log = out / "logs" / f"ctest_{name.replace(' ', '_')}.log"
            rc, secs = run(cmd, log, timeout)
            line = next((l for l in reversed(tail(log, 40).splitlines()) if "tests passed" in l), "")
            summary.append(f"- {name}: exit {rc} in {secs:.0f} s; {line.strip() or 'see ' + log.name}")
            failed |= rc != 0
        summary.append("")

    selected = [r for r in ROWS if a.rows == "all" or any(
        r[0] == s or r[0].startswith(s + ".") for s in a.rows.split(","))]
    variants = a.variants.split(",") if a.variants else DEFAULT_VARIANTS[a.device]
    for v in variants:
        if v not in VARIANTS:
            sys.exit(f"check.py: unknown variant {v}; known: {', '.join(VARIANTS)}")

    def sets_for(config):
        s = [f'run.device="{a.device}"', f'run.work_dir="{work / Path(config).stem}"']
        s += CONFIG_SETS.get(config, [])
        if a.tiny:
            s += TINY_SETS.get(config, [])
        if a.fmnist_root and "quickstart" in config:
            s += [f'data.train.root="{a.fmnist_root}"', f'data.val.root="{a.fmnist_root}"']
        return s

    def set_args(values):
        return [x for v in values for x in ("--set", v)]

    prepared = {}
    results = []
    not_run = []
    for variant in variants:
        amp, cl = VARIANTS[variant]
        for name, config, stage, teachers, ref, extra in selected:
            if time.monotonic() - start > a.budget_s:
                not_run.append(f"{name} {variant}")
                continue
            base_sets = sets_for(config)
            ok = True
            key = (config, tuple(teachers))
            if teachers and key not in prepared:  # once per config and teachers, for every variant
                log = out / "logs" / f"prepare_{Path(config).stem}_{teachers[0]}.log"
                stages = [x for t in teachers for x in ("--stage", t)]
                rc, secs = run([kdhost, "run", config, "--quiet"] + stages + set_args(base_sets), log, 900)
                prepared[key] = rc == 0
                if rc != 0:
                    summary.append(f"- preparing {', '.join(teachers)} of {config} failed (exit {rc}):\n```\n{tail(log)}```")
                    failed = True
            ok &= prepared.get(key, True)
            if not ok:
                not_run.append(f"{name} {variant} (teacher missing)")
                continue
            scope = f"stages.{stage}." if stage else ""
            row_sets = base_sets + extra + [f'{scope}train.amp="{amp}"',
                                            f"{scope}train.channels_last={'true' if cl else 'false'}"]
            tag = f"{name}.{variant}"
            k_json = out / "bench" / f"{tag}.kdhost.json"
            cmd = [kdhost, "train", config, "--bench", str(a.steps), "--json", k_json, "--quiet"]
            if stage:
                cmd += ["--stage", stage]
            rc, secs = run(cmd + set_args(row_sets), out / "logs" / f"{tag}.kdhost.log", 600)
            row = {"row": name, "variant": variant, "kdhost_exit": rc, "kdhost_s": round(secs, 1)}
            if rc == 0:
                k = json.loads(k_json.read_text())
                row.update(kdhost_ms=k["ms"]["total"], kdhost_data_ms=k["ms"]["data"],
                           kdhost_forward_ms=k["ms"]["forward"], kdhost_backward_ms=k["ms"]["backward"],
                           kdhost_optimizer_ms=k["ms"]["optimizer"], kdhost_samples_per_s=k["samples_per_s"],
                           kdhost_peak_bytes=k["peak_memory_bytes"], kdhost_syncs=k["host_syncs_per_step"],
                           kdhost_params=k["parameters"]["student"], batch=k["batch"])
            else:
                failed = True
                summary.append(f"- {tag}: kdhost exit {rc}:\n```\n{tail(out / 'logs' / f'{tag}.kdhost.log')}```")
            if ref and not a.no_reference:
                r_json = out / "bench" / f"{tag}.torch.json"
                rcmd = [a.python, ROOT / "bench" / "torch_reference.py", ref, "--device", a.device,
                        "--amp", amp, "--steps", str(a.steps), "--json", r_json]
                if cl:
                    rcmd.append("--channels-last")
                if a.tiny:
                    rcmd += TINY_REFERENCE[name.split(".")[0]]
                rrc, rsecs = run(rcmd, out / "logs" / f"{tag}.torch.log", 600)
                row.update(torch_exit=rrc)
                if rrc == 0:
                    r = json.loads(r_json.read_text())
                    row.update(torch_ms=r["ms"]["total"], torch_peak_bytes=r["peak_memory_bytes"],
                               torch_syncs=r["host_syncs_per_step"], torch_params=r["parameters"]["student"])
                    if "kdhost_ms" in row:
                        row["ratio"] = row["kdhost_ms"] / row["torch_ms"]
                        if row["kdhost_params"] != row["torch_params"]:
                            failed = True
                            summary.append(f"- {tag}: parameter counts differ: kdhost {row['kdhost_params']}, "
                                           f"reference {row['torch_params']}")
                else:
                    failed = True
                    summary.append(f"- {tag}: reference exit {rrc}:\n```\n{tail(out / 'logs' / f'{tag}.torch.log')}```")
            results.append(row)
            print(f"check: {tag}: kdhost {row.get('kdhost_ms', float('nan')):.1f} ms/step, "
                  f"reference {row.get('torch_ms', float('nan')):.1f} ms/step", flush=True)

    fields = ["row", "variant", "batch", "kdhost_ms", "torch_ms", "ratio", "kdhost_data_ms",
              "kdhost_forward_ms", "kdhost_backward_ms", "kdhost_optimizer_ms", "kdhost_samples_per_s",
              "kdhost_peak_bytes", "torch_peak_bytes", "kdhost_syncs", "torch_syncs", "kdhost_params",
              "torch_params", "kdhost_exit", "torch_exit", "kdhost_s"]
    with open(out / "bench.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        w.writerows(results)

    def fmt(v, spec=".1f"):
        return "" if v is None else format(v, spec)

    def gib(v):
        return "" if v is None else f"{v / 2**30:.2f}"

    summary += ["## Training step", "",
                "| row | variant | kdhost ms/step | PyTorch ms/step | ratio | data ms | peak GiB kdhost / PyTorch | host syncs/step kdhost / PyTorch |",
                "|---|---|---|---|---|---|---|---|"]
    for r in results:
        summary.append(
            f"| {r['row']} | {r['variant']} | {fmt(r.get('kdhost_ms'))} | {fmt(r.get('torch_ms'))} | "
            f"{fmt(r.get('ratio'), '.3f')} | {fmt(r.get('kdhost_data_ms'), '.2f')} | "
            f"{gib(r.get('kdhost_peak_bytes'))} / {gib(r.get('torch_peak_bytes'))} | "
            f"{fmt(r.get('kdhost_syncs'), '.2f')} / {fmt(r.get('torch_syncs'), '.2f')} |")
    if not_run:
        summary += ["", f"Not run (time budget of {a.budget_s:.0f} s, or a missing teacher): " + ", ".join(not_run)]
    summary += ["", f"{len(results)} runs in {time.monotonic() - start:.0f} s."]
    (out / "summary.md").write_text("\n".join(summary) + "\n")
    print("\n".join(summary))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
