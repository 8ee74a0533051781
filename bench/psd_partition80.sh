#!/usr/bin/env bash
# Times psd::CGP and psd::DGP (8 groups each) on the label statistics of 80 labels, given as a file
# (docs/benchmarks.md, "PSD partitions from statistics"). The statistics are those of 5000
# synthetic images whose labels come from 8 planted blocks. Run from the project root after
# tools/setup.sh:  bash bench/psd_partition80.sh
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$root/.venv/bin/python" - "$work/stats80.json" <<'PY'
import json, sys
import numpy as np
rng = np.random.default_rng(0)
n, c = 5000, 80
labels = np.zeros((n, c), dtype=np.int64)
for i in range(n):
    members = np.arange(rng.integers(0, 8), c, 8)
    labels[i, rng.choice(members, size=rng.integers(1, 4), replace=False)] = 1
    labels[i, rng.integers(0, c)] = 1
adj = labels.T @ labels
np.fill_diagonal(adj, 0)
json.dump({"label_counts": labels.sum(0).tolist(), "cooccurrence": adj.tolist(),
           "class_names": [f"c{i}" for i in range(c)]}, open(sys.argv[1], "w"))
PY
cat > "$work/partition80.toml" <<TOML
plugins = ["psd"]
run = { work_dir = "$work/runs" }
artifacts = [
  { name = "cgp", producer = { type = "psd::CGP", groups = 8, statistics = "$work/stats80.json" } },
  { name = "dgp", producer = { type = "psd::DGP", groups = 8, statistics = "$work/stats80.json" } },
]
TOML
for i in 1 2 3 4 5; do
  rm -rf "$work/runs"
  /usr/bin/time -f "kdhost produce (both partitions): %e s" \
    "$root/build/bin/kdhost" produce "$work/partition80.toml" --quiet > /dev/null
done
/usr/bin/time -f "kdhost plugins (start-up and plugin loading alone): %e s" \
  "$root/build/bin/kdhost" plugins > /dev/null
"$root/build/bin/kdhost" produce "$work/partition80.toml" --quiet | grep -c "group" | \
  sed 's/^/groups printed (8 + 8 expected, plus 2 headings): /'
