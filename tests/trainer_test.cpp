// The trainer and the pipeline, on the testing:: components: resumption, stage reuse, teachers
// from earlier stages, NaN stops, hooks, best-k exports and the training records.
#include <catch2/catch.hpp>

#include <torch/torch.h>

#include <cmath>
#include <fstream>

#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "host/ablation.h"
#include "host/checkpoint.h"
#include "host/files.h"
#include "host/options_impl.h"
#include "host/pipeline.h"
#include "host/teacher.h"
#include "host/trainer.h"
#include "host/validate.h"
#include "kd/dataset.h"
#include "kd/rng.h"
#include "test_components.h"
#include "test_support.h"

using Catch::Matchers::Contains;
namespace fs = std::filesystem;

namespace {

// Top-level keys first (before any table header), then the tables.
std::string Config(const std::string& top, const std::string& tables) {
  return top + R"(
[run]
device = "cpu"
seed = 3
[data.train]
type = "testing::Synthetic"
num_samples = 64
augment_noise = 0.5
[data.val]
type = "testing::Synthetic"
num_samples = 32
[model]
type = "testing::Mlp"
dropout = 0.2
[loss]
type = "testing::Bce"
[[metrics]]
type = "testing::Accuracy"
[loader]
batch_size = 8
workers = 2
[train]
max_iters = 12
val_interval = 4
checkpoint_interval = 4
log_interval = 2
accumulate = 2
clip_grad_norm = 1.0
ema_decay = 0.9
optimizer = { type = "core::SGD", lr = 0.1, momentum = 0.9 }
scheduler = { type = "core::Cosine", warmup_iters = 3 }
)" + tables;
}

struct Run {
  kd::host::Host host;
  kd::host::ResolvedConfig config;
};

std::unique_ptr<Run> Resolve(const fs::path& file, std::vector<std::string> overrides = {}) {
  auto run = std::make_unique<Run>();
  kd::test::RegisterTestComponents(run->host.registry());
  auto config = kd::host::ResolveConfig(run->host, file, overrides, {});
  if (!config.ok()) FAIL(config.status().message());
  run->config = std::move(*config);
  return run;
}

absl::StatusOr<std::vector<kd::host::StageResult>> RunAll(const fs::path& file,
                                                          std::vector<std::string> overrides = {},
                                                          int64_t stop_after = 0) {
  auto run = Resolve(file, std::move(overrides));
  kd::host::RunOptions options;
  options.progress = false;
  options.stop_after_steps = stop_after;
  return kd::host::RunPipeline(run->host, run->config, options);
}

kd::host::StateDict Weights(const fs::path& export_file) {
  auto data = kd::host::LoadModelExport(export_file);
  REQUIRE(data.ok());
  return data->state;
}

void RequireSameWeights(const kd::host::StateDict& a, const kd::host::StateDict& b) {
  REQUIRE(a.size() == b.size());
  for (const auto& [name, tensor] : a) {
    INFO(name);
    REQUIRE(torch::equal(tensor, b.at(name)));
  }
}

std::vector<std::string> ReadLines(const fs::path& path) {
  std::ifstream in(path);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

}  // namespace

TEST_CASE("N steps straight and N/2 + resume + N/2 give identical weights on the CPU") {
  const fs::path dir = kd::test::ScratchDir("resume_equivalence");
  kd::test::WriteText(dir / "c.toml", Config("", ""));
  const std::string straight_dir = "run.work_dir=" + (dir / "straight").string();
  const std::string resumed_dir = "run.work_dir=" + (dir / "resumed").string();
  auto straight = RunAll(dir / "c.toml", {straight_dir});
  REQUIRE(straight.ok());
  REQUIRE(straight->front().status == "trained");
  REQUIRE(straight->front().steps == 12);

  auto first_half = RunAll(dir / "c.toml", {resumed_dir}, 5);
  REQUIRE(first_half.ok());
  REQUIRE(first_half->front().status == "interrupted");
  REQUIRE(first_half->front().steps == 5);
  auto second_half = RunAll(dir / "c.toml", {resumed_dir});
  REQUIRE(second_half.ok());
  REQUIRE(second_half->front().status == "trained");
  REQUIRE(second_half->front().steps == 12);

  const fs::path a = straight->front().dir, b = second_half->front().dir;
  RequireSameWeights(Weights(a / "export" / "last.pt"), Weights(b / "export" / "last.pt"));
  auto state_a = kd::host::LoadTrainState(a / "state" / "train_state.pt");
  auto state_b = kd::host::LoadTrainState(b / "state" / "train_state.pt");
  REQUIRE(state_a.ok());
  REQUIRE(state_b.ok());
  // Equal weights after the second half also show that the momentum buffers were restored.
  RequireSameWeights(state_a->ema, state_b->ema);
}

TEST_CASE("a finished stage is reused and changing only the student retrains only the student") {
  const fs::path dir = kd::test::ScratchDir("stage_reuse");
  kd::test::WriteText(dir / "p.toml",
                      Config("pipeline = [\"teacher\", \"student\"]\n",
                             "[stages.teacher.model]\nhidden = 24\n"
                             "[stages.student.distiller]\ntype = \"testing::Mimic\"\n"
                             "teacher = { from_stage = \"teacher\" }\n"));
  const std::string work = "run.work_dir=" + (dir / "runs").string();
  auto first = RunAll(dir / "p.toml", {work});
  REQUIRE(first.ok());
  REQUIRE(first->at(0).status == "trained");
  REQUIRE(first->at(1).status == "trained");
  auto again = RunAll(dir / "p.toml", {work, "loader.workers=0"});
  REQUIRE(again.ok());
  REQUIRE(again->at(0).status == "reused");
  REQUIRE(again->at(1).status == "reused");
  REQUIRE(again->at(1).metrics.front().value == first->at(1).metrics.front().value);
  auto changed = RunAll(dir / "p.toml", {work, "stages.student.distiller.weight=0.5"});
  REQUIRE(changed.ok());
  REQUIRE(changed->at(0).status == "reused");
  REQUIRE(changed->at(1).status == "trained");
  REQUIRE(changed->at(1).dir != first->at(1).dir);
  REQUIRE(fs::exists(first->at(1).dir / "summary.toml"));  // earlier results stay
}

TEST_CASE("a finished stage directory holding another config's outputs is refused, not reused") {
  const fs::path dir = kd::test::ScratchDir("stage_identity");
  kd::test::WriteText(dir / "c.toml", Config("", ""));
  const std::string work = "run.work_dir=" + (dir / "runs").string();
  auto first = RunAll(dir / "c.toml", {work, "train.max_iters=4"});
  REQUIRE(first.ok());
  const fs::path stage_dir = first->front().dir;
  const std::string config_text = *kd::host::ReadFile(stage_dir / "config.toml");
  const std::string summary_text = *kd::host::ReadFile(stage_dir / "summary.toml");

  // The config it was trained with was edited (or the directory copied from another run).
  const size_t lr = config_text.find("lr = 0.1");
  REQUIRE(lr != std::string::npos);
  std::string edited = config_text;
  edited.replace(lr, 8, "lr = 0.2");
  kd::test::WriteText(stage_dir / "config.toml", edited);
  auto refused = RunAll(dir / "c.toml", {work, "train.max_iters=4"});
  REQUIRE_FALSE(refused.ok());
  REQUIRE_THAT(std::string(refused.status().message()),
               Contains((stage_dir / "config.toml").string() + " is not this stage's config") &&
                   Contains("Move it away (or delete it)"));

  // The summary names another stage's hash.
  kd::test::WriteText(stage_dir / "config.toml", config_text);
  const std::string hash_line = "hash = \"";
  std::string foreign = summary_text;
  const size_t at = foreign.find(hash_line);
  REQUIRE(at != std::string::npos);
  foreign.replace(at + hash_line.size(), 4, "0000");
  kd::test::WriteText(stage_dir / "summary.toml", foreign);
  refused = RunAll(dir / "c.toml", {work, "train.max_iters=4"});
  REQUIRE_FALSE(refused.ok());
  REQUIRE_THAT(std::string(refused.status().message()),
               Contains("belongs to a stage with hash 0000"));
  // Nothing was deleted or rewritten.
  REQUIRE(*kd::host::ReadFile(stage_dir / "summary.toml") == foreign);
  REQUIRE(fs::exists(stage_dir / "export" / "last.pt"));

  // Restored, it is reused again.
  kd::test::WriteText(stage_dir / "summary.toml", summary_text);
  auto reused = RunAll(dir / "c.toml", {work, "train.max_iters=4"});
  REQUIRE(reused.ok());
  REQUIRE(reused->front().status == "reused");
}

TEST_CASE("a teacher from a stage that has not run is an error that says to run the pipeline") {
  const fs::path dir = kd::test::ScratchDir("teacher_missing");
  kd::test::WriteText(
      dir / "p.toml",
      Config("pipeline = [\"teacher\", \"student\"]\n",
             "[stages.teacher]\n[stages.student.distiller]\ntype = \"testing::Mimic\"\n"
             "teacher = { from_stage = \"teacher\" }\n"));
  auto run = Resolve(dir / "p.toml", {"run.work_dir=" + (dir / "runs").string()});
  const auto& student = run->config.stages[1];
  const kd::host::PipelineAccess access(&run->config, &student);
  kd::host::TrainOptions options;
  options.progress = false;
  auto outcome =
      kd::host::TrainStage(run->host.registry(), &access,
                           {student.name, student.dir, student.config, student.hash}, options);
  REQUIRE_THAT(std::string(outcome.status().message()),
               Contains("distiller.teacher.from_stage: stage 'teacher' has not finished") &&
                   Contains("run the whole pipeline with `kdhost run`"));
}

TEST_CASE("a loss that turns NaN stops the stage and keeps the last good state") {
  const fs::path dir = kd::test::ScratchDir("nan_stop");
  kd::test::WriteText(dir / "c.toml", Config("", ""));
  const std::vector<std::string> overrides = {"run.work_dir=" + (dir / "runs").string(),
                                              "train.accumulate=1", "loss.nan_at_step=9"};
  auto result = RunAll(dir / "c.toml", overrides);
  REQUIRE_FALSE(result.ok());
  const std::string message(result.status().message());
  REQUIRE_THAT(message, Contains("the loss is not finite at step 9 (loss.bce=nan)") &&
                            Contains("train_state.pt") && Contains("clip_grad_norm"));
  auto run = Resolve(dir / "c.toml", overrides);
  auto state = kd::host::LoadTrainState(run->config.stages[0].dir / "state" / "train_state.pt");
  REQUIRE(state.ok());
  REQUIRE(state->step == 8);
  for (const auto& [name, tensor] : state->model)
    REQUIRE(torch::isfinite(tensor).all().item<bool>());
  REQUIRE_FALSE(fs::exists(run->config.stages[0].dir / "summary.toml"));
}

TEST_CASE("out of memory in a step names the step and the batch and says what to change") {
  const fs::path dir = kd::test::ScratchDir("out_of_memory");
  kd::test::WriteText(dir / "c.toml", Config("", ""));
  // Two micro-batches per step: the 11th training forward is in step 6, after the state of step 4.
  auto result =
      RunAll(dir / "c.toml", {"run.work_dir=" + (dir / "runs").string(), "model.oom_at_call=11"});
  REQUIRE(result.status().code() == absl::StatusCode::kResourceExhausted);
  const std::string message(result.status().message());
  INFO(message);
  REQUIRE_THAT(message, Contains("stage 'main': model forward: out of memory: Tried to allocate "
                                 "2.00 GiB (test) (step 6 of 12, batches of 8 samples on cpu)") &&
                            Contains("Lower loader.batch_size and raise train.accumulate to keep "
                                     "the effective batch size (now 16)") &&
                            Contains("the last resumable state is kept in "));
  auto saved = kd::host::LoadTrainState(kd::test::StageDir(dir / "runs", "main") / "state" /
                                        "train_state.pt");
  REQUIRE(saved.ok());
  REQUIRE(saved->step == 4);
}

TEST_CASE("hooks see the start, every optimizer step and every epoch end") {
  const fs::path dir = kd::test::ScratchDir("hooks");
  kd::test::WriteText(dir / "c.toml", Config("", "[[hooks]]\ntype = \"testing::Recorder\"\n"));
  kd::test::RecordedEvents().clear();
  // 64 samples / batch 8 / accumulate 2 = 4 steps per epoch; 12 steps = 3 epochs.
  auto result = RunAll(dir / "c.toml", {"run.work_dir=" + (dir / "runs").string()});
  REQUIRE(result.ok());
  const auto& events = kd::test::RecordedEvents();
  REQUIRE(events.front() == "start@0");
  REQUIRE(std::count_if(events.begin(), events.end(),
                        [](const std::string& e) { return e.rfind("iter@", 0) == 0; }) == 12);
  REQUIRE(std::find(events.begin(), events.end(), "epoch@2") != events.end());
  REQUIRE(std::find(events.begin(), events.end(), "iter@12") != events.end());
}

TEST_CASE("best-k exports keep the k best evaluations and best.pt is the top one") {
  const fs::path dir = kd::test::ScratchDir("best_k");
  kd::test::WriteText(dir / "c.toml", Config("", ""));
  auto result =
      RunAll(dir / "c.toml", {"run.work_dir=" + (dir / "runs").string(), "train.val_interval=2",
                              "train.keep_best=2", "train.ema_decay=0"});
  REQUIRE(result.ok());
  const fs::path stage = result->front().dir;
  std::vector<double> kept;
  for (const auto& entry : fs::directory_iterator(stage / "checkpoints")) {
    kept.push_back(kd::host::LoadModelExport(entry.path())->metrics.front().value);
  }
  REQUIRE(kept.size() == 2);
  // Every evaluation is in the log; the kept ones are the two best of them.
  std::vector<double> all;
  for (const std::string& line : ReadLines(stage / "metrics.jsonl")) {
    if (line.find("\"kind\": \"val\"") == std::string::npos) continue;
    const size_t at = line.find("\"acc\": ");
    all.push_back(std::stod(line.substr(at + 7)));
  }
  REQUIRE(all.size() == 6);
  std::sort(all.rbegin(), all.rend());
  std::sort(kept.rbegin(), kept.rend());
  REQUIRE(kept[0] == Approx(all[0]).margin(1e-6));
  REQUIRE(kept[1] == Approx(all[1]).margin(1e-6));
  REQUIRE(kd::host::LoadModelExport(stage / "export" / "best.pt")->metrics.front().value ==
          Approx(all[0]).margin(1e-6));
}

TEST_CASE("the metrics log and the TensorBoard events hold the same values") {
  const fs::path dir = kd::test::ScratchDir("records");
  kd::test::WriteText(dir / "c.toml", Config("", ""));
  auto result = RunAll(dir / "c.toml", {"run.work_dir=" + (dir / "runs").string()});
  REQUIRE(result.ok());
  const fs::path stage = result->front().dir;
  const auto lines = ReadLines(stage / "metrics.jsonl");
  REQUIRE(lines.size() == 6 + 3);  // a train record every 2 steps, an evaluation every 4
  REQUIRE_THAT(lines.front(), Contains("\"kind\": \"train\"") && Contains("\"step\": 2") &&
                                  Contains("\"loss.bce\": "));
  const std::string python = kd::test::PythonPath();
  const std::string script =
      "import sys\n"
      "from tensorboard.backend.event_processing.event_accumulator import EventAccumulator\n"
      "acc = EventAccumulator(sys.argv[1]); acc.Reload()\n"
      "for tag in ('train/loss', 'val/acc'):\n"
      "    for e in acc.Scalars(tag): print(tag, e.step, '%.6f' % e.value)\n";
  kd::test::WriteText(dir / "read_tb.py", script);
  auto read = kd::test::RunCommand(python + " " + (dir / "read_tb.py").string() + " " +
                                   (stage / "tb").string());
  INFO(read.output);
  REQUIRE(read.exit_code == 0);
  for (const std::string& line : lines) {
    if (line.find("\"kind\": \"val\"") == std::string::npos) continue;
    const int64_t step = std::stoll(line.substr(line.find("\"step\": ") + 8));
    const double acc = std::stod(line.substr(line.find("\"acc\": ") + 7));
    REQUIRE_THAT(read.output, Contains("val/acc " + std::to_string(step) + " " +
                                       absl::StrFormat("%.6f", static_cast<float>(acc))));
  }
  REQUIRE_THAT(read.output, Contains("train/loss 12 "));
}

TEST_CASE("a config that sets neither or both schedule lengths is refused") {
  const fs::path dir = kd::test::ScratchDir("schedule_length");
  kd::test::WriteText(dir / "c.toml", Config("", ""));
  auto both =
      RunAll(dir / "c.toml", {"run.work_dir=" + (dir / "runs").string(), "train.max_epochs=2"});
  REQUIRE_THAT(
      std::string(both.status().message()),
      Contains("c.toml") && Contains("train: set exactly one of max_epochs and max_iters"));
}

TEST_CASE("asking for CUDA where there is none is a clear error") {
  if (torch::cuda::is_available()) {
    WARN("a GPU is present; the CPU-only error path is not exercised here");
    return;
  }
  const fs::path dir = kd::test::ScratchDir("no_cuda");
  kd::test::WriteText(dir / "c.toml", Config("", ""));
  auto result =
      RunAll(dir / "c.toml", {"run.work_dir=" + (dir / "runs").string(), "run.device=cuda"});
  REQUIRE_THAT(std::string(result.status().message()),
               Contains("--set run.device=cuda") &&
                   Contains("run.device: device \"cuda\" asked for, but CUDA is not available"));
}

TEST_CASE("a foreach template expands into one stage per combination, values substituted") {
  const fs::path dir = kd::test::ScratchDir("foreach");
  kd::test::WriteText(
      dir / "p.toml",
      Config("pipeline = [\"variant\", \"student\"]\n",
             "[stages.variant]\nforeach = { width = [8, 24], tag = [\"a\", \"b\"] }\n"
             "[stages.variant.model]\nhidden = \"${foreach.width}\"\n"
             "[stages.student.distiller]\ntype = \"testing::Mimic\"\n"
             "teacher = { from_stage = \"variant.b.24\" }\n"));
  auto run = Resolve(dir / "p.toml", {"run.work_dir=" + (dir / "runs").string()});
  std::vector<std::string> names;
  for (const auto& stage : run->config.stages) names.push_back(stage.name);
  // Keys in sorted order (tag, width), values in their listed order.
  REQUIRE(names == std::vector<std::string>{"variant.a.8", "variant.a.24", "variant.b.8",
                                            "variant.b.24", "student"});
  const auto* b24 = run->config.FindStage("variant.b.24");
  REQUIRE(b24->template_name == "variant");
  REQUIRE(b24->foreach == std::map<std::string, std::string>{{"tag", "b"}, {"width", "24"}});
  REQUIRE(kd::host::FindPath(*b24->config, "model.hidden")->as_int() == 24);
  REQUIRE(run->config.FindStages("variant").size() == 4);
  REQUIRE(run->config.stages.back().deps == std::vector<std::string>{"variant.b.24"});

  // A later stage naming the template depends on every expansion.
  kd::test::WriteText(dir / "q.toml",
                      Config("pipeline = [\"variant\", \"student\"]\n",
                             "[stages.variant]\nforeach = { width = [8, 24] }\n"
                             "[stages.variant.model]\nhidden = \"${foreach.width}\"\n"
                             "[stages.student.distiller]\ntype = \"testing::Mimic\"\n"
                             "teacher = { from_stage = \"variant\" }\n"));
  auto all = Resolve(dir / "q.toml", {"run.work_dir=" + (dir / "runs").string()});
  REQUIRE(all->config.stages.back().deps == std::vector<std::string>{"variant.8", "variant.24"});
}

TEST_CASE("foreach mistakes are reported with their location") {
  const fs::path dir = kd::test::ScratchDir("foreach_errors");
  kd::host::Host host;
  kd::test::RegisterTestComponents(host.registry());
  auto error_for = [&](const std::string& top, const std::string& tables) {
    kd::test::WriteText(dir / "e.toml", Config(top, tables));
    return std::string(kd::host::ResolveConfig(host, dir / "e.toml", {}, {}).status().message());
  };
  REQUIRE_THAT(error_for("", "[loss.extra]\n"), Contains("loss.extra: unknown option"));
  REQUIRE_THAT(
      error_for("pipeline = [\"a\"]\n", "[stages.a.model]\nhidden = \"${foreach.width}\"\n"),
      Contains("model.hidden: ${foreach.width} is only available inside a stage with a "
               "`foreach` table"));
  REQUIRE_THAT(error_for("pipeline = [\"a\"]\n",
                         "[stages.a]\nforeach = { width = [8] }\n[stages.a.model]\n"
                         "hidden = \"${foreach.depth}\"\n"),
               Contains("${foreach.depth} is not a foreach key of this stage (it has: width)"));
  REQUIRE_THAT(error_for("pipeline = [\"a\"]\n", "[stages.a]\nforeach = { width = [] }\n"),
               Contains("stages.a.foreach.width: expected a non-empty list of values"));
}

TEST_CASE("an artefact stage keeps what each producer wrote, under its name, for later stages") {
  const fs::path dir = kd::test::ScratchDir("artifact_stage");
  kd::test::WriteText(dir / "p.toml",
                      Config("pipeline = [\"split\"]\n",
                             "[stages.split]\nartifacts = [{ name = \"halves\", producer = "
                             "{ type = \"testing::Halves\" } }]\n"));
  auto result = RunAll(dir / "p.toml", {"run.work_dir=" + (dir / "runs").string()});
  REQUIRE(result.ok());
  REQUIRE(result->front().status == "produced");
  const fs::path stage = result->front().dir;
  // testing::Synthetic has 3 labels: {0} and {1, 2}.
  REQUIRE(*kd::host::ReadFile(stage / "artifacts" / "halves" / "halves.txt") == "0\n1 2\n");
  REQUIRE(fs::exists(stage / "summary.toml"));
  CHECK_FALSE(fs::exists(stage / "artifacts" / "halves.partial"));
  auto again = RunAll(dir / "p.toml", {"run.work_dir=" + (dir / "runs").string()});
  REQUIRE(again->front().status == "reused");
}

TEST_CASE("a producer that fails leaves no artefact and no finished stage behind") {
  const fs::path dir = kd::test::ScratchDir("artifact_fails");
  kd::test::WriteText(dir / "p.toml",
                      Config("pipeline = [\"split\"]\n",
                             "[stages.split]\nartifacts = [{ name = \"halves\", producer = "
                             "{ type = \"testing::Halves\", fail = true } }]\n"));
  auto result = RunAll(dir / "p.toml", {"run.work_dir=" + (dir / "runs").string()});
  REQUIRE_FALSE(result.ok());
  REQUIRE_THAT(std::string(result.status().message()), Contains("stage 'split'") &&
                                                           Contains("failing on purpose") &&
                                                           Contains("testing::Halves"));
  const fs::path stage = kd::test::StageDir(dir / "runs", "split");
  CHECK_FALSE(fs::exists(stage / "artifacts" / "halves"));
  CHECK_FALSE(fs::exists(stage / "artifacts" / "halves.partial"));
  CHECK_FALSE(fs::exists(stage / "summary.toml"));
}

TEST_CASE(
    "a method plugin adds a stage making an artefact and a distiller replacing the task loss") {
  // tests/plugins/method_probe.cpp: test_method::LabelFrequency writes each label's frequency in
  // the training split; test_method::WeightedBce reads them from that stage by name and trains
  // with its own weighted BCE instead of the stage's testing::Bce.
  const fs::path dir = kd::test::ScratchDir("method_plugin");
  const std::string plugins = "plugins = [\"test_method\"]\nplugin_dirs = [\"" +
                              (kd::test::BuildDir() / "tests" / "plugins").string() + "\"]\n";
  kd::test::WriteText(dir / "m.toml",
                      Config(plugins + "pipeline = [\"frequency\", \"student\"]\n",
                             "[stages.frequency]\nartifacts = [{ name = \"frequency\", producer = "
                             "{ type = \"test_method::LabelFrequency\" } }]\n"
                             "[stages.student.distiller]\ntype = \"test_method::WeightedBce\"\n"
                             "frequency = { from_stage = \"frequency\" }\n"));
  auto result = RunAll(dir / "m.toml", {"run.work_dir=" + (dir / "runs").string()});
  REQUIRE(result.ok());
  REQUIRE(result->size() == 2);
  // The frequencies are the mean of the labels of the 64 training samples.
  kd::host::Host host;
  kd::test::RegisterTestComponents(host.registry());
  kd::host::CNode table = kd::ValueOrThrow(
      kd::host::ParseToml("type = \"testing::Synthetic\"\nnum_samples = 64\n", "<test>"));
  kd::ThrowIfError(
      kd::host::ValidateComponent(table, kd::Kind::kDataset, host.registry(), "data.train"));
  auto train = kd::BuildContext(host.registry(), torch::kCPU)
                   .Build<kd::Dataset>(kd::Kind::kDataset,
                                       kd::host::MakeOptions(std::move(table), "data.train"));
  torch::Tensor sum = torch::zeros({3}, torch::kDouble);
  for (int64_t i = 0; i < train->Size(); ++i) {
    kd::Rng rng(0);
    sum += train->Get(i, rng).at("labels").to(torch::kDouble);
  }
  const std::string text =
      *kd::host::ReadFile(result->front().dir / "artifacts" / "frequency" / "frequency.txt");
  const std::vector<std::string> lines = absl::StrSplit(text, '\n', absl::SkipEmpty());
  REQUIRE(lines.size() == 3);
  for (int64_t c = 0; c < 3; ++c) {
    CHECK(std::stod(lines[static_cast<size_t>(c)]) == Approx(sum[c].item<double>() / 64));
  }
  // Every training record has the distiller's term and not the task loss's, and the total is it.
  int records = 0;
  for (const std::string& line : ReadLines(result->back().dir / "metrics.jsonl")) {
    if (line.find("\"kind\": \"train\"") == std::string::npos) continue;
    ++records;
    CHECK(line.find("\"loss.bce\"") == std::string::npos);
    const size_t total = line.find("\"loss\": ");
    const size_t term = line.find("\"loss.weighted_bce\": ");
    REQUIRE(total != std::string::npos);
    REQUIRE(term != std::string::npos);
    CHECK(std::stod(line.substr(total + 8)) == Approx(std::stod(line.substr(term + 21))));
  }
  CHECK(records == 6);
}

TEST_CASE("reading an artefact a stage did not make names the stage and the artefacts it made") {
  const fs::path dir = kd::test::ScratchDir("method_plugin_missing");
  const std::string plugins = "plugins = [\"test_method\"]\nplugin_dirs = [\"" +
                              (kd::test::BuildDir() / "tests" / "plugins").string() + "\"]\n";
  kd::test::WriteText(
      dir / "m.toml",
      Config(plugins + "pipeline = [\"frequency\", \"student\"]\n",
             "[stages.frequency]\nartifacts = [{ name = \"frequency\", producer = "
             "{ type = \"test_method::LabelFrequency\" } }]\n"
             "[stages.student.distiller]\ntype = \"test_method::WeightedBce\"\n"
             "frequency = { from_stage = \"frequency\", name = \"frequencies\" }\n"));
  auto result = RunAll(dir / "m.toml", {"run.work_dir=" + (dir / "runs").string()});
  REQUIRE_FALSE(result.ok());
  REQUIRE_THAT(
      std::string(result.status().message()),
      Contains("m.toml:") && Contains("distiller.frequency.from_stage") &&
          Contains("stage 'frequency' made no artefact 'frequencies' (it made: frequency)"));
}

TEST_CASE("a stage reaches only the stages it depends on") {
  const fs::path dir = kd::test::ScratchDir("stage_access");
  kd::test::WriteText(dir / "p.toml", Config("pipeline = [\"first\", \"second\"]\n",
                                             "[stages.first]\n[stages.second]\n"));
  auto run = Resolve(dir / "p.toml", {"run.work_dir=" + (dir / "runs").string()});
  kd::host::RunOptions options;
  options.progress = false;
  REQUIRE(kd::host::RunPipeline(run->host, run->config, options).ok());
  const kd::host::PipelineAccess access(&run->config, &run->config.stages[1]);
  REQUIRE_THROWS_WITH(
      access.StageFile("first", "summary.toml"),
      Contains("stage 'second' reads stage 'first' without depending on it; name it "
               "(or its template) with a `from_stage` key"));
  REQUIRE(access.FindStages("first").size() == 1);
}

TEST_CASE("a training stage without a model or an optimizer is refused with what to add") {
  const fs::path dir = kd::test::ScratchDir("no_model");
  kd::test::WriteText(dir / "c.toml", R"(
[data.train]
type = "testing::Synthetic"
[loss]
type = "testing::Bce"
[train]
max_iters = 1
)");
  const std::string work = "run.work_dir=" + (dir / "runs").string();
  auto no_model = RunAll(dir / "c.toml", {work});
  REQUIRE_THAT(std::string(no_model.status().message()),
               Contains("c.toml:1:1: model: stage 'main' trains a model and needs `model`"));
  auto no_optimizer = RunAll(dir / "c.toml", {work, "model={type=\"testing::Mlp\"}"});
  REQUIRE_THAT(std::string(no_optimizer.status().message()),
               Contains("train.optimizer: a training stage needs an optimizer"));
}

TEST_CASE("a failing ablation run is recorded with its error and the others complete") {
  const fs::path dir = kd::test::ScratchDir("ablation_failure");
  kd::test::WriteText(dir / "c.toml", Config("", ""));
  kd::host::Host host;
  kd::test::RegisterTestComponents(host.registry());
  kd::host::AblationCli cli;
  cli.grid = {"loss.nan_at_step=0,3"};
  cli.seeds = "1";
  auto plan = kd::host::PlanAblation(
      host, dir / "c.toml", {"run.work_dir=" + (dir / "runs").string(), "train.accumulate=1"}, {},
      cli);
  REQUIRE(plan.ok());
  REQUIRE(plan->runs.size() == 2);
  kd::host::AblationRunOptions run_options;
  run_options.progress = false;
  run_options.python = kd::test::PythonPath();
  run_options.plot_script = kd::test::SourceDir() / "tools" / "ablation_plots.py";
  auto outcome = kd::host::RunAblation(host, *plan, run_options);
  REQUIRE(outcome.ok());
  REQUIRE(outcome->failed == 1);
  const std::string md = *kd::host::ReadFile(plan->out / "results.md");
  REQUIRE_THAT(md,
               Contains("| loss.nan_at_step=0 (baseline) | 1/1 |") &&
                   Contains("| loss.nan_at_step=3 | 0/1 |") &&
                   Contains("Failed runs:\n\n- run 2 (loss.nan_at_step=3, seed 0): stage 'main': "
                            "the loss is not finite at step 3"));
  REQUIRE_THAT(*kd::host::ReadFile(plan->out / "results.csv"), Contains(",failed,"));
  REQUIRE(outcome->plot_error.empty());
}

TEST_CASE("paired differences have a 95% interval from Student's t over the pairs") {
  // 0.37, 0.44, 0.25: mean 0.35333, sd 0.096090; t(0.975, 2) = 4.302653;
  // half-width 4.302653 · 0.096090 / √3 = 0.238701
  const kd::host::PairedDifference d = kd::host::PairedDifferences({0.37, 0.44, 0.25});
  CHECK(d.pairs == 3);
  CHECK(d.mean == Approx(0.353333).epsilon(1e-5));
  CHECK(d.half_width == Approx(0.238701).epsilon(1e-5));
  // Five pairs: t(0.975, 4) = 2.776445; 1, 2, 3, 4, 5 has sd √2.5, half-width 1.963243.
  CHECK(kd::host::PairedDifferences({1, 2, 3, 4, 5}).half_width == Approx(1.963243).epsilon(1e-5));
  CHECK(std::isnan(kd::host::PairedDifferences({0.5}).half_width));
}

TEST_CASE("ablation statistics are the mean and the sample standard deviation") {
  // mean of 1, 2, 6 = 3; squares 4 + 1 + 9 = 14; 14 / 2 = 7; std = sqrt 7
  const auto [mean, std] = kd::host::MeanStd({1.0, 2.0, 6.0});
  REQUIRE(mean == Approx(3.0));
  REQUIRE(std == Approx(std::sqrt(7.0)));
  REQUIRE(kd::host::MeanStd({4.0}).second == 0.0);
}
