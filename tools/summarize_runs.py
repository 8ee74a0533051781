#!/usr/bin/env python3
"""Mean and sample standard deviation of stage metrics over several run directories.

Each run directory is a pipeline's run.work_dir (one per seed); every finished stage in it has a
summary.toml. Prints a markdown table with one row per stage:

  tools/summarize_runs.py runs/seed0 runs/seed1 runs/seed2 \
      --stages student,student_kd,student_psd --metrics mAP,CF1@0.5 [--baseline student]
"""
import argparse
import math
import pathlib
import sys
import tomllib


def stage_summaries(run_dir):
    """Maps stage name -> summary dict for every finished stage in run_dir."""
    out = {}
    for summary in sorted(pathlib.Path(run_dir).glob("*/summary.toml")):
        with open(summary, "rb") as f:
            data = tomllib.load(f)
        out[data["stage"]] = data
    return out


def mean_std(values):
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, float("nan")
    var = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
    return mean, math.sqrt(var)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="run directories, one per seed")
    parser.add_argument("--stages", required=True, help="comma-separated stage names (rows)")
    parser.add_argument("--metrics", required=True, help="comma-separated metric names (columns)")
    parser.add_argument("--baseline", help="stage to compare the first metric with, paired by run")
    args = parser.parse_args()
    stages = args.stages.split(",")
    metrics = args.metrics.split(",")
    runs = [stage_summaries(r) for r in args.runs]
    for run_dir, run in zip(args.runs, runs):
        for stage in stages + ([args.baseline] if args.baseline else []):
            if stage not in run:
                sys.exit(f"{run_dir}: stage '{stage}' has no summary.toml (not finished?)")

    header = ["stage"] + metrics
    if args.baseline:
        header.append(f"Δ{metrics[0]} vs {args.baseline} (paired)")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for stage in stages:
        cells = [stage]
        for metric in metrics:
            values = [run[stage]["metrics"][metric] for run in runs]
            mean, std = mean_std(values)
            cells.append(f"{mean:.2f} ± {std:.2f}")
        if args.baseline:
            diffs = [run[stage]["metrics"][metrics[0]] - run[args.baseline]["metrics"][metrics[0]]
                     for run in runs]
            mean, std = mean_std(diffs)
            cells.append(f"{mean:+.2f} ± {std:.2f}")
        print("| " + " | ".join(cells) + " |")
    print(f"\n{len(runs)} runs: " + ", ".join(args.runs))


if __name__ == "__main__":
    main()
