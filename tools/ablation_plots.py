#!/usr/bin/env python3
"""Plots of a kdhost ablation, drawn with matplotlib from its results.csv.

  <metric>_by_variant.png   the main metric per variant: mean with sample standard deviation as
                            error bars, and every seed's value as a point
  training_curves.png       per variant, the training loss and the main metric on the evaluation
                            split against the optimizer step, averaged over the seeds, from the
                            metrics.jsonl of each run's ablated stage

kdhost ablate runs this script; it prints "wrote <file>" for every plot it writes.
"""
import argparse
import csv
import json
import math
import os
import statistics
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read_runs(path):
    with open(path, newline="") as f:
        return [row for row in csv.DictReader(f)]


def read_log(stage_dir):
    """(train points, val points): lists of (step, record) from the stage's metrics.jsonl."""
    train, val = [], []
    path = os.path.join(stage_dir, "metrics.jsonl")
    if not os.path.exists(path):
        return train, val
    with open(path) as f:
        for line in f:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by an interruption
            (train if record.get("kind") == "train" else val).append((record["step"], record))
    return train, val


def mean_curve(curves):
    """Mean over runs at the steps all of them logged."""
    steps = sorted(set.intersection(*(set(c) for c in curves))) if curves else []
    return steps, [statistics.mean(c[s] for c in curves) for s in steps]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", required=True)
    parser.add_argument("--metric", required=True)
    parser.add_argument("--baseline", default="")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    runs = [r for r in read_runs(args.results) if r["status"] == "done"]
    variants = []
    for r in read_runs(args.results):
        if r["variant"] not in variants:
            variants.append(r["variant"])
    if not runs:
        print("no finished run to plot", file=sys.stderr)
        return 1

    # The main metric per variant.
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(variants)), 4.5))
    for i, variant in enumerate(variants):
        values = [float(r[args.metric]) for r in runs
                  if r["variant"] == variant and r.get(args.metric, "") != ""]
        if not values:
            continue
        mean = statistics.mean(values)
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        color = "tab:gray" if variant == args.baseline else "tab:blue"
        ax.bar(i, mean, yerr=std, capsize=6, color=color, alpha=0.75)
        ax.scatter([i] * len(values), values, color="black", s=14, zorder=3)
        ax.annotate(f"{mean:.2f}", (i, mean), textcoords="offset points", xytext=(0, 8),
                    ha="center", fontsize=8)
    ax.set_xticks(range(len(variants)))
    ax.set_xticklabels([v.replace(", ", "\n") for v in variants], fontsize=8)
    ax.set_ylabel(f"{args.metric} (mean ± std over seeds)")
    all_values = [float(r[args.metric]) for r in runs if r.get(args.metric, "") != ""]
    if all_values:
        low, high = min(all_values), max(all_values)
        margin = max(1.0, 0.5 * (high - low))
        ax.set_ylim(max(0.0, low - margin), high + margin)
    ax.set_title("final value per variant (grey: baseline)")
    fig.tight_layout()
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in args.metric)
    path = os.path.join(args.out, f"{name}_by_variant.png")
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print(f"wrote {path}")

    # Training curves.
    fig, (loss_ax, metric_ax) = plt.subplots(1, 2, figsize=(12, 4.5))
    for variant in variants:
        losses, metrics = [], []
        for r in runs:
            if r["variant"] != variant:
                continue
            train, val = read_log(r["stage_dir"])
            losses.append({step: rec["loss"] for step, rec in train
                           if isinstance(rec.get("loss"), (int, float))})
            metrics.append({step: rec[args.metric] for step, rec in val
                            if isinstance(rec.get(args.metric), (int, float))})
        steps, values = mean_curve([c for c in losses if c])
        if steps:
            loss_ax.plot(steps, values, label=variant)
        steps, values = mean_curve([c for c in metrics if c])
        if steps:
            metric_ax.plot(steps, values, marker="o", markersize=3, label=variant)
    loss_ax.set_xlabel("optimizer step")
    loss_ax.set_ylabel("training loss (all terms)")
    loss_ax.set_title("training loss, mean over seeds")
    metric_ax.set_xlabel("optimizer step")
    metric_ax.set_ylabel(args.metric)
    metric_ax.set_title(f"{args.metric} on the evaluation split, mean over seeds")
    for ax in (loss_ax, metric_ax):
        ax.grid(alpha=0.3)
    metric_ax.legend(fontsize=7)
    fig.tight_layout()
    path = os.path.join(args.out, "training_curves.png")
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
