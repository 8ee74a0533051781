// The results of an ablation: results.csv (every final metric of every run), results.md (mean ±
// std per variant and the difference to the baseline), what the runs shared, and the plots.
#include "host/ablation_results.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <map>
#include <optional>

#include <boost/math/distributions/students_t.hpp>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "host/files.h"

namespace kd::host {

namespace fs = std::filesystem;

std::pair<double, double> MeanStd(const std::vector<double>& values) {
  if (values.empty()) return {std::nan(""), std::nan("")};
  double sum = 0;
  for (double v : values) sum += v;
  const double mean = sum / static_cast<double>(values.size());
  if (values.size() < 2) return {mean, 0.0};
  double squares = 0;
  for (double v : values) squares += (v - mean) * (v - mean);
  return {mean, std::sqrt(squares / static_cast<double>(values.size() - 1))};
}

PairedDifference PairedDifferences(const std::vector<double>& differences) {
  PairedDifference out;
  out.pairs = static_cast<int>(differences.size());
  const auto [mean, sd] = MeanStd(differences);
  out.mean = mean;
  if (out.pairs < 2) {
    out.half_width = std::nan("");
    return out;
  }
  const boost::math::students_t t(static_cast<double>(out.pairs - 1));
  out.half_width = boost::math::quantile(t, 0.975) * sd / std::sqrt(static_cast<double>(out.pairs));
  return out;
}

namespace {

// The main metric's differences of `variant` to `baseline`, paired by seed over the runs of both
// that finished.
std::vector<double> PairedBySeed(const std::vector<AblationRow>& rows,
                                 const std::vector<int64_t>& seeds, const std::string& variant,
                                 const std::string& baseline, const std::string& metric) {
  const auto value = [&](const std::string& of, int64_t seed) -> std::optional<double> {
    for (const AblationRow& row : rows) {
      if (row.run->variant != of || row.run->seed != seed || row.status != "done") continue;
      for (const MetricValue& m : row.metrics) {
        if (m.name == metric) return m.value;
      }
    }
    return std::nullopt;
  };
  std::vector<double> out;
  for (int64_t seed : seeds) {
    const std::optional<double> a = value(variant, seed), b = value(baseline, seed);
    if (a && b) out.push_back(*a - *b);
  }
  return out;
}

std::string CsvField(const std::string& text) {
  if (text.find_first_of(",\"\n") == std::string::npos) return text;
  std::string out = "\"";
  for (char c : text) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

// The metrics the runs report, in first-seen order, and the headline ones among them.
struct ResultColumns {
  std::vector<std::string> metrics, headline;
};

ResultColumns ColumnsOf(const std::vector<AblationRow>& rows) {
  ResultColumns c;
  for (const AblationRow& row : rows) {
    for (const MetricValue& m : row.metrics) {
      if (std::find(c.metrics.begin(), c.metrics.end(), m.name) == c.metrics.end()) {
        c.metrics.push_back(m.name);
      }
    }
    for (const std::string& name : row.headline) {
      if (std::find(c.headline.begin(), c.headline.end(), name) == c.headline.end()) {
        c.headline.push_back(name);
      }
    }
  }
  return c;
}

std::string ResultsCsv(const std::vector<AblationRow>& rows, const ResultColumns& c) {
  std::string csv = "run,variant,seed,status,seconds,wall_seconds,stage_dir";
  for (const std::string& name : c.metrics) absl::StrAppend(&csv, ",", CsvField(name));
  absl::StrAppend(&csv, ",error\n");
  for (const AblationRow& row : rows) {
    absl::StrAppend(&csv, row.run->index, ",", CsvField(row.run->variant), ",", row.run->seed, ",",
                    row.status, ",", absl::StrFormat("%.1f", row.seconds), ",",
                    absl::StrFormat("%.1f", row.wall), ",", CsvField(row.stage_dir.string()));
    for (const std::string& name : c.metrics) {
      auto it = std::find_if(row.metrics.begin(), row.metrics.end(),
                             [&](const MetricValue& m) { return m.name == name; });
      absl::StrAppend(&csv, ",", it == row.metrics.end() ? "" : absl::StrFormat("%.6g", it->value));
    }
    absl::StrAppend(&csv, ",", CsvField(row.error), "\n");
  }
  return csv;
}

// results.md: mean ± std per variant over its finished runs, the best mean of each column in bold,
// the main metric's difference to the baseline, and the failed runs.
std::string ResultsMarkdown(const AblationPlan& plan, const std::vector<AblationRow>& rows,
                            const std::vector<std::string>& columns, const std::string& main_metric,
                            const std::string& baseline) {
  std::map<std::string, std::map<std::string, std::pair<double, double>>> stats;
  std::map<std::string, int> finished;
  for (const std::string& variant : plan.variants) {
    for (const std::string& name : columns) {
      std::vector<double> values;
      for (const AblationRow& row : rows) {
        if (row.run->variant != variant || row.status != "done") continue;
        for (const MetricValue& m : row.metrics) {
          if (m.name == name) values.push_back(m.value);
        }
      }
      stats[variant][name] = MeanStd(values);
      finished[variant] = static_cast<int>(values.size());
    }
  }
  std::map<std::string, std::string> best;  // metric -> variant with the highest mean
  for (const std::string& name : columns) {
    double top = -std::numeric_limits<double>::infinity();
    for (const std::string& variant : plan.variants) {
      const double mean = stats[variant][name].first;
      if (!std::isnan(mean) && mean > top) {
        top = mean;
        best[name] = variant;
      }
    }
  }
  std::vector<std::string> seeds;
  for (int64_t s : plan.spec.seeds) seeds.push_back(std::to_string(s));
  std::string md = absl::StrCat(
      "# Ablation of stage `", plan.spec.stage, "`\n\nConfig `",
      plan.runs.front().config.file.string(), "`; seeds ", absl::StrJoin(seeds, ", "),
      "; mean ± sample standard deviation over the finished runs of each variant; **bold**: the "
      "best mean of a column (higher is better); Δ: the mean difference of the main metric (",
      main_metric, ") to the baseline `", baseline,
      "`, paired by seed over the seeds where both finished, with its 95% confidence interval "
      "(Student's t over the pairs; none for fewer than two).\n\n| variant | runs |");
  for (const std::string& name : columns) absl::StrAppend(&md, " ", name, " |");
  absl::StrAppend(&md, " Δ ", main_metric, " (paired) | 95% CI |\n|---|---|");
  for (size_t i = 0; i <= columns.size() + 1; ++i) absl::StrAppend(&md, "---|");
  absl::StrAppend(&md, "\n");
  for (const std::string& variant : plan.variants) {
    absl::StrAppend(&md, "| ", variant, variant == baseline ? " (baseline)" : "", " | ",
                    finished[variant], "/", plan.spec.seeds.size(), " |");
    for (const std::string& name : columns) {
      const auto [mean, std] = stats[variant][name];
      std::string cell = std::isnan(mean) ? "-" : absl::StrFormat("%.2f ± %.2f", mean, std);
      if (best[name] == variant) cell = absl::StrCat("**", cell, "**");
      absl::StrAppend(&md, " ", cell, " |");
    }
    const std::vector<double> differences =
        variant == baseline ? std::vector<double>()
                            : PairedBySeed(rows, plan.spec.seeds, variant, baseline, main_metric);
    if (differences.empty()) {
      absl::StrAppend(&md, " - | - |\n");
      continue;
    }
    const PairedDifference d = PairedDifferences(differences);
    absl::StrAppend(
        &md, " ", absl::StrFormat("%+.2f", d.mean), " | ",
        std::isnan(d.half_width)
            ? std::string("-")
            : absl::StrFormat("[%+.2f, %+.2f]", d.mean - d.half_width, d.mean + d.half_width),
        " |\n");
  }
  if (!plan.spec.variants.empty()) {
    absl::StrAppend(&md, "\nVariants:\n\n");
    for (size_t i = 0; i < plan.variants.size(); ++i) {
      absl::StrAppend(&md, "- `", plan.variants[i], "`: ", plan.descriptions[i], "\n");
    }
  }
  std::string failures;
  for (const AblationRow& row : rows) {
    if (row.status != "failed") continue;
    absl::StrAppend(&failures, "- run ", row.run->index, " (", row.run->variant, ", seed ",
                    row.run->seed, "): ", row.error, "\n");
  }
  if (!failures.empty()) absl::StrAppend(&md, "\nFailed runs:\n\n", failures);
  return md;
}

// What was computed once and reused.
std::string Sharing(const StageUse& use) {
  std::string sharing;
  for (const auto& [dir, count] : use.reused) {
    absl::StrAppend(&sharing, "  reused ", count, " time(s): ", dir,
                    use.made.count(dir) ? " (computed in this ablation)" : " (computed before)",
                    "\n");
  }
  return sharing.empty() ? "" : absl::StrCat("\nstages shared between runs:\n", sharing);
}

// Draws the plots with matplotlib through the plotting script; adds the files it wrote.
void DrawPlots(const AblationPlan& plan, const std::string& main_metric,
               const std::string& baseline, const std::string& python, const fs::path& plot_script,
               AblationOutcome& outcome) {
  std::error_code ec;
  if (!fs::exists(plot_script, ec)) {
    outcome.plot_error = absl::StrCat("the plotting script ", plot_script.string(), " is missing");
    return;
  }
  const std::string command =
      absl::StrCat("'", python, "' '", plot_script.string(), "' --results '",
                   (plan.out / "results.csv").string(), "' --metric '", main_metric,
                   "' --baseline '", baseline, "' --out '", plan.out.string(), "' 2>&1");
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) {
    outcome.plot_error = absl::StrCat("cannot run ", python);
    return;
  }
  std::string output;
  char buffer[4096];
  size_t n;
  while ((n = fread(buffer, 1, sizeof(buffer), pipe)) > 0) output.append(buffer, n);
  if (pclose(pipe) != 0) {
    outcome.plot_error = absl::StrCat("plotting with ", python, " failed: ", output,
                                      " (set KD_PYTHON to a Python with matplotlib)");
  }
  for (absl::string_view line : absl::StrSplit(output, '\n', absl::SkipEmpty())) {
    if (absl::StartsWith(line, "wrote ")) outcome.files.push_back(std::string(line.substr(6)));
  }
}

}  // namespace

absl::StatusOr<AblationOutcome> WriteAblationResults(const AblationPlan& plan,
                                                     const std::vector<AblationRow>& rows,
                                                     const StageUse& use, const std::string& python,
                                                     const fs::path& plot_script) {
  AblationOutcome outcome;
  for (const AblationRow& row : rows) outcome.failed += row.status == "failed";
  const ResultColumns c = ColumnsOf(rows);
  KD_RETURN_IF_ERROR(WriteFileAtomic(plan.out / "results.csv", ResultsCsv(rows, c)));
  outcome.files.push_back(plan.out / "results.csv");

  const std::string main_metric = !plan.spec.metric.empty() ? plan.spec.metric
                                  : c.headline.empty()      ? ""
                                                            : c.headline.front();
  std::vector<std::string> columns = {main_metric};
  for (const std::string& name : c.headline) {
    if (name != main_metric) columns.push_back(name);
  }
  if (!main_metric.empty() &&
      std::find(c.metrics.begin(), c.metrics.end(), main_metric) == c.metrics.end() &&
      !c.metrics.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "main metric '", main_metric,
        "' is not reported by the runs (they report: ", absl::StrJoin(c.metrics, ", "), ")"));
  }
  const std::string baseline =
      plan.spec.baseline.empty() ? plan.variants.front() : plan.spec.baseline;
  const std::string md = ResultsMarkdown(plan, rows, columns, main_metric, baseline);
  KD_RETURN_IF_ERROR(WriteFileAtomic(plan.out / "results.md", md));
  outcome.files.push_back(plan.out / "results.md");
  outcome.summary = absl::StrCat(md, Sharing(use));
  // Nothing finished yet (an interrupted ablation): nothing to plot.
  const bool any_done = std::any_of(rows.begin(), rows.end(),
                                    [](const AblationRow& row) { return row.status == "done"; });
  if (any_done) DrawPlots(plan, main_metric, baseline, python, plot_script, outcome);
  return outcome;
}

}  // namespace kd::host
