#!/usr/bin/env python3
"""Renders the ablation plots (tools/ablation_plots.py) for variants with long names and checks
their layout on the rendered figures: no two labels overlap, every text lies inside the image, the
values sit beside their bars, the legend covers no panel, and every loss term has a panel of its
own.

usage: ablation_plots_test.py TOOLS_DIR
"""
import csv
import importlib.util
import json
import os
import subprocess
import sys
import tempfile

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

FAILURES = []


def check(condition, message):
    if not condition:
        FAILURES.append(message)


def load_script(tools_dir):
    spec = importlib.util.spec_from_file_location(
        "ablation_plots", os.path.join(tools_dir, "ablation_plots.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


VARIANTS = [
    "alone",
    "kd_t4_with_a_rather_long_descriptive_name, distiller.weight=0.5",
    "kd_t4_with_a_rather_long_descriptive_name, distiller.weight=1.0",
    "logit_mse_regression_of_the_teacher_logits, distiller.weight=0.5",
    "distiller=distillers::DKD, distiller.temperature=4.0, distiller.beta=8.0",
]
# The task loss, and distillation terms of very different scales (MSE ~ 17 against KD ~ 1).
TERMS = [{}, {"loss.kd": 1.2}, {"loss.kd": 1.1}, {"loss.mse": 17.0}, {"loss.dkd_nckd": 3.0}]


def write_ablation(root):
    """A results.csv of 5 variants x 2 seeds and each run's metrics.jsonl."""
    rows = []
    index = 0
    for v, variant in enumerate(VARIANTS):
        for seed in range(2):
            index += 1
            stage_dir = os.path.join(root, f"stage-{index}")
            os.makedirs(stage_dir)
            with open(os.path.join(stage_dir, "metrics.jsonl"), "w") as f:
                for step in range(10, 110, 10):
                    record = {"kind": "train", "step": step, "loss.bce": 0.7 - 0.003 * step}
                    for term, scale in TERMS[v].items():
                        record[term] = scale * (1 - 0.004 * step)
                    record["loss"] = sum(value for key, value in record.items()
                                         if key.startswith("loss."))
                    f.write(json.dumps(record) + "\n")
                    if step % 50 == 0:
                        f.write(json.dumps({"kind": "val", "step": step,
                                            "mAP": 60 + v + step / 20 + seed}) + "\n")
            rows.append({"run": index, "variant": variant, "seed": seed, "status": "done",
                         "stage_dir": stage_dir, "mAP": f"{65 + v + seed * 0.5:.3f}"})
    path = os.path.join(root, "results.csv")
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def boxes(fig, artists):
    renderer = fig.canvas.get_renderer()
    return [a.get_window_extent(renderer) for a in artists
            if a.get_visible() and (not hasattr(a, "get_text") or a.get_text())]


def overlapping(fig, artists):
    """Pairs of the artists whose rendered boxes overlap."""
    b = boxes(fig, artists)
    return [(i, j) for i in range(len(b)) for j in range(i + 1, len(b)) if b[i].overlaps(b[j])]


def outside(fig, artists):
    """How many of the artists reach outside the figure."""
    width, height = fig.canvas.get_width_height()
    return sum(1 for box in boxes(fig, artists)
               if box.x0 < -1 or box.y0 < -1 or box.x1 > width + 1 or box.y1 > height + 1)


def main():
    plots = load_script(sys.argv[1])
    with tempfile.TemporaryDirectory() as root:
        results = write_ablation(root)
        runs = plots.read_runs(results)

        # The check itself: two texts at one place overlap, and a text past the edge is outside.
        fig, ax = plt.subplots(figsize=(3, 2))
        a = ax.text(0.5, 0.5, "overlapping text")
        b = ax.text(0.52, 0.5, "overlapping text")
        c = fig.text(0.95, 0.5, "beyond the right edge")
        fig.canvas.draw()
        check(overlapping(fig, [a, b]) == [(0, 1)], "the overlap check misses overlapping texts")
        check(outside(fig, [c]) == 1, "the edge check misses a text beyond the edge")
        plt.close(fig)

        # The metric per variant.
        fig = plots.metric_figure(runs, VARIANTS, "mAP", "alone")
        fig.canvas.draw()
        ax = fig.axes[0]
        ticks = [t for t in ax.get_yticklabels() if t.get_text()]
        values = list(ax.texts)
        check(len(ticks) == len(VARIANTS), f"{len(ticks)} variant labels for {len(VARIANTS)}")
        check([t.get_text().replace("\n", " ") for t in ticks] ==
              [plots.wrap(v).replace("\n", " ") for v in VARIANTS],
              "the variant labels are not the variants, first on top")
        check(all(len(line) <= plots.LABEL_WIDTH for t in ticks for line in t.get_text().split("\n")),
              "a variant label line is longer than the wrap width")
        check(not overlapping(fig, ticks), f"variant labels overlap: {overlapping(fig, ticks)}")
        check(outside(fig, ticks + values + [ax.title, ax.xaxis.label]) == 0,
              "a label, value or title is cut off at the image's edge")
        check(len(values) == len(VARIANTS), f"{len(values)} values written for {len(VARIANTS)}")
        check(not overlapping(fig, values), "values overlap each other")
        check(all(not v.get_window_extent().overlaps(t.get_window_extent())
                  for v in values for t in ticks), "a value overlaps a variant label")
        # Beside its bar: right of the bar's end, on the bar's row.
        renderer = fig.canvas.get_renderer()
        bars = [p for p in ax.patches]
        for value, bar in zip(values, bars):
            vb, bb = value.get_window_extent(renderer), bar.get_window_extent(renderer)
            check(vb.x0 >= bb.x1 - 1 and bb.y0 - 1 <= (vb.y0 + vb.y1) / 2 <= bb.y1 + 1,
                  f"value '{value.get_text()}' is not beside its bar")
        plt.close(fig)

        # The training curves.
        fig = plots.curves_figure(runs, VARIANTS, "mAP")
        fig.canvas.draw()
        panels = [a for a in fig.axes if a.get_visible()]
        titles = [a.get_title() for a in panels]
        expected = ["total training loss", "term loss.bce", "term loss.dkd_nckd", "term loss.kd",
                    "term loss.mse", "mAP on the evaluation split"]
        check(titles == expected, f"panels {titles}, expected {expected}")
        # The MSE term (about 17) and the KD term (about 1) each on their own scale.
        kd = panels[titles.index("term loss.kd")]
        check(kd.get_ylim()[1] < 5, f"the KD panel's scale reaches {kd.get_ylim()[1]}")
        check(len(fig.legends) == 1, "one legend for the figure")
        legend = fig.legends[0]
        box = legend.get_window_extent(renderer=fig.canvas.get_renderer())
        for panel in panels:
            check(not box.overlaps(panel.get_tightbbox(fig.canvas.get_renderer())),
                  f"the legend covers the panel '{panel.get_title()}'")
        check(outside(fig, [legend] + [a.title for a in panels]) == 0,
              "the legend or a panel title is cut off")
        check(len(legend.get_texts()) == len(VARIANTS), "a variant is missing from the legend")
        plt.close(fig)

        # The script as kdhost runs it writes both PNGs.
        out = os.path.join(root, "out")
        os.makedirs(out)
        done = subprocess.run([sys.executable, os.path.join(sys.argv[1], "ablation_plots.py"),
                               "--results", results, "--metric", "mAP", "--baseline", "alone",
                               "--out", out], capture_output=True, text=True)
        check(done.returncode == 0, f"the script failed: {done.stderr}")
        for name in ("mAP_by_variant.png", "training_curves.png"):
            path = os.path.join(out, name)
            check(os.path.exists(path) and open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n",
                  f"{name} is not a PNG")
    for failure in FAILURES:
        print(f"FAILED: {failure}")
    if not FAILURES:
        print("ablation plots: all layout checks passed")
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
