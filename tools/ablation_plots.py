#!/usr/bin/env python3
"""Plots of a kdhost ablation, drawn with matplotlib from its results.csv.

  <metric>_by_variant.png   the main metric per variant as horizontal bars (one row per variant,
                            its name on the left however long, wrapped): mean with the sample
                            standard deviation as an error bar, every seed's value as a point,
                            the mean written beside the bar; the baseline grey, with a dashed
                            line at its mean
  training_curves.png       per variant, averaged over the seeds, from the metrics.jsonl of each
                            run's ablated stage: one panel per loss term ("loss.<term>", the task
                            loss and each distillation term on its own scale), the total, and the
                            main metric on the evaluation split, against the optimizer step; the
                            legend below the panels

kdhost ablate runs this script; it prints "wrote <file>" for every plot it writes.
"""
import argparse
import csv
import json
import math
import os
import statistics
import sys
import textwrap

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

LABEL_WIDTH = 36  # characters per line of a variant's label


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


def wrap(label):
    """A variant's label on lines of at most LABEL_WIDTH characters, broken at ", " first."""
    lines = []
    for part in label.split(", "):
        if lines and len(lines[-1]) + 2 + len(part) <= LABEL_WIDTH:
            lines[-1] += ", " + part
        else:
            lines.extend(textwrap.wrap(part, LABEL_WIDTH) or [""])
    return "\n".join(lines)


def metric_figure(runs, variants, metric, baseline):
    """The main metric per variant, one horizontal bar per variant (top to bottom in order)."""
    labels = [wrap(v) for v in variants]
    height = sum(0.32 * label.count("\n") + 0.5 for label in labels) + 1.4
    fig, ax = plt.subplots(figsize=(8, max(2.5, height)))
    stats = {}
    for variant in variants:
        values = [float(r[metric]) for r in runs
                  if r["variant"] == variant and r.get(metric, "") != ""]
        if values:
            std = statistics.stdev(values) if len(values) > 1 else 0.0
            stats[variant] = (statistics.mean(values), std, values)
    all_values = [v for _, _, values in stats.values() for v in values]
    high_end = max((m + s for m, s, _ in stats.values()), default=1.0)
    low, high = (min(all_values), max(all_values)) if all_values else (0.0, 1.0)
    margin = max(1.0, 0.5 * (high - low))
    left = max(0.0, low - margin)
    # Room on the right for the value written beside the longest bar.
    right = max(high, high_end) + margin + 0.18 * (max(high, high_end) + margin - left)
    for i, variant in enumerate(variants):
        if variant not in stats:
            continue
        mean, std, values = stats[variant]
        color = "tab:gray" if variant == baseline else "tab:blue"
        ax.barh(i, mean - left, left=left, xerr=std, capsize=4, color=color, alpha=0.75,
                height=0.6)
        ax.scatter(values, [i] * len(values), color="black", s=12, zorder=3)
        ax.annotate(f"{mean:.2f} ± {std:.2f}", (mean + std, i), textcoords="offset points",
                    xytext=(6, 0), va="center", ha="left", fontsize=8)
    if baseline in stats:
        ax.axvline(stats[baseline][0], color="tab:gray", linestyle="--", linewidth=1)
    ax.set_yticks(range(len(variants)))
    ax.set_yticklabels(labels, fontsize=8)
    ax.invert_yaxis()  # the first variant on top
    ax.set_xlim(left, right)
    ax.set_xlabel(f"{metric} (mean ± sample std over seeds; points: seeds)")
    ax.set_title("final value per variant (grey, dashed: the baseline)", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


def loss_terms(logs):
    """The loss terms the runs logged: the total "loss" first, then every "loss.<term>"."""
    terms = []
    for train, _ in logs:
        for _, record in train:
            for key, value in record.items():
                if (key == "loss" or key.startswith("loss.")) and key not in terms and \
                        isinstance(value, (int, float)):
                    terms.append(key)
    return sorted(terms, key=lambda k: (k != "loss", k))


def curves_figure(runs, variants, metric):
    """Per-term loss panels and the metric panel, a legend below them."""
    logs = {variant: [read_log(r["stage_dir"]) for r in runs if r["variant"] == variant]
            for variant in variants}
    terms = loss_terms([log for per_variant in logs.values() for log in per_variant])
    panels = [("loss", term) for term in terms] + [("metric", metric)]
    columns = min(3, len(panels))
    rows = math.ceil(len(panels) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.6 * columns, 3.4 * rows), squeeze=False)
    axes = [ax for row in axes for ax in row]
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    handles = {}
    for (kind, key), ax in zip(panels, axes):
        for variant in variants:
            curves = []
            for train, val in logs[variant]:
                points = train if kind == "loss" else val
                curve = {step: rec[key] for step, rec in points
                         if isinstance(rec.get(key), (int, float))}
                if curve:
                    curves.append(curve)
            steps, values = mean_curve(curves)
            if not steps:
                continue
            (line,) = ax.plot(steps, values, marker="o" if kind == "metric" else None,
                              markersize=3, label=wrap(variant))
            handles.setdefault(variant, line)
            line.set_color(handles[variant].get_color())
        ax.set_xlabel("optimizer step", fontsize=8)
        if kind == "loss":
            title = "total training loss" if key == "loss" else f"term {key}"
        else:
            title = f"{key} on the evaluation split"
        ax.set_title(title, fontsize=9)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    fig.suptitle("training curves, mean over seeds", fontsize=10)
    legend_rows = math.ceil(len(handles) / 3)
    fig.tight_layout(rect=(0, 0.04 + 0.05 * legend_rows, 1, 0.96))
    fig.legend([handles[v] for v in variants if v in handles],
               [wrap(v) for v in variants if v in handles], loc="lower center",
               ncol=min(3, max(1, len(handles))), fontsize=7, frameon=False)
    return fig


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", required=True)
    parser.add_argument("--metric", required=True)
    parser.add_argument("--baseline", default="")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    every = read_runs(args.results)
    runs = [r for r in every if r["status"] == "done"]
    variants = []
    for r in every:
        if r["variant"] not in variants:
            variants.append(r["variant"])
    if not runs:
        print("no finished run to plot", file=sys.stderr)
        return 1

    fig = metric_figure(runs, variants, args.metric, args.baseline)
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in args.metric)
    path = os.path.join(args.out, f"{name}_by_variant.png")
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print(f"wrote {path}")

    fig = curves_figure(runs, variants, args.metric)
    path = os.path.join(args.out, "training_curves.png")
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
