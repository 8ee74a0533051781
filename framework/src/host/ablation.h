// Ablations: one stage of a pipeline run over the cartesian product of a grid of settings and a
// list of seeds, every run a pipeline of its own in a shared work directory, so that stages whose
// resolved config is the same across runs (teachers, partitions) are computed once. Results come
// back as results.csv, results.md and plots.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "host/config.h"
#include "host/host.h"
#include "host/pipeline.h"

namespace kd::host {

// The [ablation] table of a config.
Schema AblationSchema();

// One grid axis: a key (relative to the ablated stage unless it starts with "stages.") and its
// values. A string value for a key that holds a component table swaps the component's type and
// keeps the options the new component also takes.
struct GridAxis {
  std::string key;
  std::vector<CNode> values;
};

// A named variant: `[ablation.variants.<name>]`, whose keys (relative to the ablated stage,
// dotted keys allowed) are deep-merged into the stage's config. A table merges into the table it
// meets unless it says `_replace = true`; a table with another `type` swaps the component and
// keeps the options the new one also takes. `_stage = "<stage>"` makes the variant another stage
// of the pipeline (e.g. the student trained alone, as a baseline row).
struct NamedVariant {
  std::string name;
  std::string stage;  // "" = the ablated stage
  CNode settings;     // the table without its `_` keys
};

struct AblationSpec {
  std::string stage;           // the ablated stage ("" = the last one)
  std::vector<int64_t> seeds;  // run.seed values
  bool seed_pipeline = false;  // seeds apply to every stage, not only the ablated one
  std::vector<GridAxis> axes;
  std::vector<NamedVariant> variants;  // in the order they are written
  std::string baseline;                // the variant the others are compared with ("" = the first)
  std::string metric;                  // the main metric ("" = the stage's first headline metric)
  std::filesystem::path out;           // "" = <work_dir>/ablation
};

// The [ablation] table of a config, with command-line additions: `grid` entries "key=v1,v2,..."
// (values parsed as TOML, or taken as strings), `seeds` "N" (0..N-1) or "a,b,c".
struct AblationCli {
  std::vector<std::string> grid;
  std::string seeds, stage, baseline, metric, out;
};

struct AblationRun {
  int index = 0;
  std::string variant;  // "kd_t4", "distiller=KD, distiller.weight=0.5", "kd_t4, seed_scope=..."
  std::string name;     // the named variant's name ("" when the run comes from the grid only)
  int64_t seed = 0;
  ResolvedConfig config;
  std::string target;            // the ablated stage's name
  std::filesystem::path record;  // <out>/runs/<index>[-<name>]-seed<seed>
};

struct AblationPlan {
  AblationSpec spec;
  std::vector<std::string> variants;  // named variants (in written order) x grid (in grid order)
  std::vector<std::string> descriptions;  // per variant: its settings, as results.md lists them
  std::vector<AblationRun> runs;
  std::filesystem::path out;
};

// Reads the grid (config and command line), loads the plugins, and resolves and validates every
// run's config before anything runs: a bad grid is an error in the host's config format.
absl::StatusOr<AblationPlan> PlanAblation(Host& host, const std::filesystem::path& file,
                                          const std::vector<std::string>& overrides,
                                          const std::vector<std::string>& plugin_paths,
                                          const AblationCli& cli);

// The runs, and for every stage they use whether it exists already and how many runs share it.
std::string DescribePlan(const AblationPlan& plan);

// The fit check (CheckPipelineFits) of every stage the runs will train, each stage hash once,
// an error naming the first run whose stage does not fit. RunAblation does it before its first
// run; `kdhost ablate --dry-run` too.
absl::Status CheckAblationFits(const Host& host, const AblationPlan& plan);

struct AblationOutcome {
  int failed = 0;
  int held = 0;         // runs left to the other processes doing them (wait_for_others false)
  std::string summary;  // the results table and what was reused
  std::vector<std::filesystem::path> files;  // results.csv, results.md, plots
  std::string plot_error;                    // why the plots could not be drawn ("" when they were)
};

struct AblationRunOptions {
  bool progress = true;
  int64_t stop_after_steps = 0;  // stop every run after this many steps, resumable (0: never)
  // Wait for the runs other processes are doing (their stage locks) once nothing else is left;
  // false: leave them to those processes (status "held").
  bool wait_for_others = true;
  std::string python;  // runs `plot_script` to draw the plots
  std::filesystem::path plot_script;
};

// Runs every run (resuming what is unfinished; a failed run is recorded and the others go on;
// a run whose stages another process is training is put off until nothing else is left), then
// writes the results and draws the plots. A stop signal (host/stop_signal.h) starts no further
// run; the runs not started are recorded as "not run".
absl::StatusOr<AblationOutcome> RunAblation(Host& host, const AblationPlan& plan,
                                            const AblationRunOptions& options);

// Mean and sample standard deviation (0 for fewer than two values).
std::pair<double, double> MeanStd(const std::vector<double>& values);

// Paired differences (a variant's value minus the baseline's, one per seed both finished): their
// mean and the half-width of its 95% confidence interval, t(0.975, n − 1) · sd / √n (Student's t
// with n − 1 degrees of freedom); the half-width is NaN for fewer than two pairs.
struct PairedDifference {
  double mean = 0, half_width = 0;
  int pairs = 0;
};
PairedDifference PairedDifferences(const std::vector<double>& differences);

}  // namespace kd::host
