// kdhost as a user runs it: subcommands, exit codes, messages, the quickstart pipeline and the
// generated config reference.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <map>
#include <regex>

#include "host/checkpoint.h"
#include "host/files.h"
#include "test_support.h"

using Catch::Matchers::Contains;
namespace fs = std::filesystem;

namespace {

std::string Kdhost() { return kd::test::KdhostPath().string(); }
std::string Quickstart() {
  return (kd::test::SourceDir() / "configs" / "quickstart" / "kd_multilabel.toml").string();
}

// Overrides that shrink the quickstart to seconds.
std::string Reduced(const fs::path& work_dir) {
  return " --set data.train.num_samples=256 --set data.val.num_samples=128"
         " --set train.max_epochs=1 --set stages.teacher.train.max_epochs=1"
         " --set loader.batch_size=32 --set run.work_dir=" +
         work_dir.string();
}

// The value of `column` in the summary row of `stage`.
double SummaryValue(const std::string& output, const std::string& stage, int column) {
  std::regex row("\\n" + stage + " +[a-z]+ +[0-9]+ +[0-9:]+((?: +[-0-9.]+)+)");
  std::smatch match;
  REQUIRE(std::regex_search(output, match, row));
  std::istringstream values(match[1].str());
  double value = 0;
  for (int i = 0; i <= column; ++i) values >> value;
  return value;
}

// The directory `kdhost run --dry-run` names for `stage`.
std::string DryRunDir(const std::string& output, const std::string& stage) {
  std::smatch match;
  REQUIRE(std::regex_search(output, match, std::regex("\\n  " + stage + "  (\\S+)  ")));
  return match[1].str();
}

}  // namespace

TEST_CASE("every subcommand answers --help with its usage and exits 0") {
  for (const char* command : {"run", "train", "eval", "config", "plugins", "describe"}) {
    auto result = kd::test::RunCommand(Kdhost() + " " + command + " --help");
    INFO(result.output);
    REQUIRE(result.exit_code == 0);
    REQUIRE_THAT(result.output, Contains(std::string("usage: kdhost ") + command));
  }
  REQUIRE(kd::test::RunCommand(Kdhost() + " --help").exit_code == 0);
}

TEST_CASE("usage errors exit 2 and go to stderr") {
  auto unknown = kd::test::RunCommand("{ " + Kdhost() + " frobnicate 2>/dev/null; }");
  REQUIRE(unknown.exit_code == 2);
  REQUIRE(unknown.output.empty());
  auto bad_flag = kd::test::RunCommand(Kdhost() + " run " + Quickstart() + " --frobnicate");
  REQUIRE(bad_flag.exit_code == 2);
  REQUIRE_THAT(bad_flag.output, Contains("kdhost run: unknown option --frobnicate"));
  auto missing = kd::test::RunCommand(Kdhost() + " run");
  REQUIRE(missing.exit_code == 2);
  REQUIRE_THAT(missing.output, Contains("missing CONFIG"));
  auto no_file = kd::test::RunCommand(Kdhost() + " config no/such/file.toml");
  REQUIRE(no_file.exit_code == 2);
  REQUIRE_THAT(no_file.output, Contains("config file 'no/such/file.toml' does not exist"));
}

TEST_CASE("kdhost config prints a stage with overrides applied and every default filled in") {
  auto result =
      kd::test::RunCommand(Kdhost() + " config " + Quickstart() +
                           " --stage student_kd --set stages.student_kd.distiller.temperature=2");
  INFO(result.output);
  REQUIRE(result.exit_code == 0);
  REQUIRE_THAT(result.output,
               Contains("temperature = 2.0\n") && Contains("from_stage = \"teacher\"\n") &&
                   Contains("type = \"core::AdamW\"") && Contains("betas = [0.9, 0.999]") &&
                   Contains("type = \"resnet::SmallCNN\""));
  auto all = kd::test::RunCommand(Kdhost() + " config " + Quickstart());
  REQUIRE_THAT(all.output, Contains("# ---- stage teacher (hash ") &&
                               Contains("type = \"resnet::ResNet\"") &&
                               Contains("# ---- stage student_kd"));
}

TEST_CASE("a bad value in a config is reported with file:line:column and the key path") {
  const fs::path dir = kd::test::ScratchDir("cli_bad_config");
  kd::test::WriteText(dir / "bad.toml", "base = [\"" + Quickstart() +
                                            "\"]\n"
                                            "[stages.teacher.model.backbone]\n"
                                            "depth = \"eighteen\"\n");
  auto result = kd::test::RunCommand(Kdhost() + " run " + (dir / "bad.toml").string());
  REQUIRE(result.exit_code == 2);
  REQUIRE_THAT(result.output,
               Contains("stage 'teacher': " + (dir / "bad.toml").string() +
                        ":3:9: model.backbone.depth: expected int, got string \"eighteen\""));
  REQUIRE_FALSE(fs::exists(dir / "runs"));
}

TEST_CASE("a stage that starts from an earlier stage's model depends on it and reuses it") {
  const fs::path work = kd::test::ScratchDir("cli_init_from_stage") / "runs";
  const std::string plain = Kdhost() + " run " + Quickstart() + Reduced(work);
  const std::string command = plain + " --set stages.student_kd.train.init_from_stage=student";
  auto first = kd::test::RunCommand(command);
  INFO(first.output);
  REQUIRE(first.exit_code == 0);
  const fs::path student = kd::test::StageDir(work, "student");
  REQUIRE_THAT(first.output,
               Contains("[student_kd] initialised ") &&
                   Contains(" tensors from " + (student / "export" / "best.pt").string()));
  // The reference is a dependency: in the plan, and in the hash.
  auto plan = kd::test::RunCommand(command + " --dry-run");
  REQUIRE_THAT(plan.output, Contains("with distillers::KD; needs teacher, student\n"));
  auto without = kd::test::RunCommand(plain + " --dry-run");
  CHECK(DryRunDir(plan.output, "student_kd") != DryRunDir(without.output, "student_kd"));
  CHECK(DryRunDir(plan.output, "student") == DryRunDir(without.output, "student"));
  auto other_student = kd::test::RunCommand(command + " --set stages.student.run.seed=5 --dry-run");
  CHECK(DryRunDir(other_student.output, "student_kd") != DryRunDir(plan.output, "student_kd"));
  // Run again: every stage is reused, the one it starts from included.
  auto again = kd::test::RunCommand(command);
  INFO(again.output);
  REQUIRE(again.exit_code == 0);
  for (const char* stage : {"teacher", "student", "student_kd"}) {
    REQUIRE(std::regex_search(again.output, std::regex(std::string("\\n") + stage + " +reused ")));
  }
  // A file and a stage at once is refused before anything runs.
  auto both = kd::test::RunCommand(command + " --set stages.student_kd.train.init_checkpoint=x.pt");
  CHECK(both.exit_code == 2);
  CHECK_THAT(both.output, Contains("train.init_from_stage: a model starts from one of "
                                   "init_checkpoint and init_from_stage"));
}

TEST_CASE("a bad teacher reference in the last stage fails before the first stage trains") {
  const fs::path dir = kd::test::ScratchDir("cli_bad_teacher");
  const fs::path config = dir / "teacher.toml";
  auto run = [&](const std::string& teacher) {
    kd::test::WriteText(config, "base = [\"" + Quickstart() + "\"]\n" + teacher);
    return kd::test::RunCommand(Kdhost() + " run " + config.string() +
                                " --set run.work_dir=" + (dir / "runs").string());
  };
  // A checkpoint merged into the inherited from_stage: both, located at the user's line, with
  // the way out.
  auto both = run("[stages.student_kd.distiller.teacher]\ncheckpoint = \"teacher.pt\"\n");
  INFO(both.output);
  CHECK(both.exit_code == 2);
  CHECK_THAT(both.output,
             Contains(config.string() + ":3:14: distiller.teacher.checkpoint: a "
                                        "teacher takes one of from_stage and checkpoint") &&
                 Contains("from_stage set at " + Quickstart() + ":") &&
                 Contains("_replace = true"));
  // Replaced, but the file is not there.
  auto missing =
      run("[stages.student_kd.distiller.teacher]\n_replace = true\ncheckpoint = \"teacher.pt\"\n");
  INFO(missing.output);
  CHECK(missing.exit_code == 2);
  CHECK_THAT(missing.output, Contains(config.string() + ":4:14: distiller.teacher.checkpoint: no "
                                                        "file 'teacher.pt'"));
  // A stage that is not in the pipeline.
  auto unknown = run("[stages.student_kd.distiller.teacher]\nfrom_stage = \"teachr\"\n");
  INFO(unknown.output);
  CHECK(unknown.exit_code == 2);
  CHECK_THAT(unknown.output,
             Contains(config.string() + ":3:14: distiller.teacher.from_stage: "
                                        "'teachr' is not an earlier stage of the pipeline"));
  REQUIRE_FALSE(fs::exists(dir / "runs"));
}

TEST_CASE("a metric that does not fit the model fails before the first stage trains") {
  const fs::path dir = kd::test::ScratchDir("cli_metric_fit");
  const fs::path config = dir / "metric.toml";
  const std::string work = " --set run.work_dir=" + (dir / "runs").string();
  // The quickstart is multi-label: single-label accuracy in its last stage cannot read its labels.
  kd::test::WriteText(config, "base = [\"" + Quickstart() +
                                  "\"]\nplugins = [\"fmnist_tasks\", \"transforms\", \"resnet\", "
                                  "\"mlic_heads\", \"distillers\", \"classification\"]\n"
                                  "[[stages.student_kd.metrics]]\n"
                                  "type = \"classification::Accuracy\"\n");
  for (const char* mode : {"", " --dry-run"}) {
    auto result = kd::test::RunCommand(Kdhost() + " run " + config.string() + work + mode);
    INFO(result.output);
    CHECK(result.exit_code == 2);
    CHECK_THAT(result.output,
               Contains(config.string() +
                        ":3:1: metrics[0]: classification::Accuracy does not fit the model's "
                        "outputs (stage 'student_kd', checked on 2 sample(s) of data.val before "
                        "any stage trains)") &&
                   Contains("The model gives logits [2, 10], ") &&
                   Contains("the batch holds image [2, 1, 56, 56], labels [2, 10]."));
  }
  REQUIRE_FALSE(fs::exists(dir / "runs"));

  // Top-5 accuracy of a 10-class task is fine, top-20 is not: said before the first of the
  // pretraining stages trains.
  const std::string pretrain =
      (kd::test::SourceDir() / "configs" / "pretrain" / "fmnist_backbones.toml").string();
  kd::test::WriteText(config, "base = [\"" + pretrain +
                                  "\"]\n[[stages.resnet18.metrics]]\n"
                                  "type = \"classification::Accuracy\"\ntopk = [1, 20]\n");
  auto topk = kd::test::RunCommand(Kdhost() + " run " + config.string() + work + " --dry-run");
  INFO(topk.output);
  CHECK(topk.exit_code == 2);
  CHECK_THAT(topk.output, Contains(config.string() + ":2:1: metrics[0]: classification::Accuracy "
                                                     "does not fit the model's outputs "
                                                     "(stage 'resnet18'") &&
                              Contains("top-20 of 10 classes"));
  kd::test::WriteText(config, "base = [\"" + pretrain +
                                  "\"]\n[[stages.resnet18.metrics]]\n"
                                  "type = \"classification::Accuracy\"\ntopk = [1, 5]\n");
  auto fits = kd::test::RunCommand(Kdhost() + " run " + config.string() + work + " --dry-run");
  INFO(fits.output);
  CHECK(fits.exit_code == 0);
  CHECK_THAT(fits.output, Contains("resnet18  "));
  REQUIRE_FALSE(fs::exists(dir / "runs"));
}

TEST_CASE("an ablation variant whose metric does not fit fails before the first run trains") {
  const fs::path dir = kd::test::ScratchDir("cli_ablate_fit");
  const fs::path config = dir / "variants.toml";
  kd::test::WriteText(config, "base = [\"" + Quickstart() +
                                  "\"]\nplugins = [\"fmnist_tasks\", \"transforms\", \"resnet\", "
                                  "\"mlic_heads\", \"distillers\", \"classification\"]\n"
                                  "[ablation.variants.kd]\n\"distiller.temperature\" = 2.0\n"
                                  "[ablation.variants.accuracy]\n"
                                  "metrics = [{ type = \"classification::Accuracy\" }]\n");
  for (const char* mode : {" --dry-run", ""}) {
    auto result =
        kd::test::RunCommand(Kdhost() + " ablate " + config.string() +
                             " --seeds 1 --set run.work_dir=" + (dir / "runs").string() + mode);
    INFO(result.output);
    CHECK(result.exit_code == 2);
    CHECK_THAT(result.output, Contains("ablation variant 'accuracy' (seed 0): ") &&
                                  Contains("metrics[0]: classification::Accuracy does not fit the "
                                           "model's outputs (stage 'student_kd'"));
  }
  // Neither run started: no stage directory, no results.
  REQUIRE_FALSE(fs::exists(dir / "runs"));
}

TEST_CASE("kdhost plugins lists every plugin with its version and components") {
  auto result = kd::test::RunCommand(Kdhost() + " plugins");
  INFO(result.output);
  REQUIRE(result.exit_code == 0);
  REQUIRE_THAT(result.output, Contains("core 0.1.0  <built in>") && Contains("resnet 0.1.0") &&
                                  Contains("backbone:    ResNet, SmallCNN") &&
                                  Contains("fmnist_tasks 0.1.0") &&
                                  Contains("distiller:   KD, LogitMSE, PixelKD, CWD, DKD, DIST, "
                                           "Compose, FitNets, AT, SP, RKD, PKT, PairwiseSKD, "
                                           "CIRKD\n") &&
                                  Contains("mlic_heads 0.1.0") &&
                                  Contains("dataset:     MultiLabelMosaic, ColourMultiLabelMosaic, "
                                           "SegmentationMosaic, SceneGraphMosaic, SingleItem") &&
                                  Contains("loss:        CrossEntropy\n    metric:      Accuracy"));
}

TEST_CASE("kdhost describe prints a component's options with types, defaults and docs") {
  auto result = kd::test::RunCommand(Kdhost() + " describe ResNet");
  INFO(result.output);
  REQUIRE(result.exit_code == 0);
  REQUIRE_THAT(result.output, Contains("resnet::ResNet  (backbone, plugin resnet)"));
  REQUIRE(std::regex_search(result.output, std::regex("\\n  depth +int +18 +")));
  // ResNet-18's taps: the stem, every block and every stage, with their channels.
  REQUIRE_THAT(result.output, Contains("feature taps with the default options") &&
                                  Contains("relu (64 ch), maxpool (64 ch), layer1.0 (64 ch), "
                                           "layer1.1 (64 ch), layer1 (64 ch), layer2.0 (128 ch)") &&
                                  Contains("layer4 (512 ch)"));
  // A component that is not a backbone or a model lists none.
  REQUIRE_THAT(kd::test::RunCommand(Kdhost() + " describe distillers::FitNets").output,
               !Contains("feature taps with the default options"));
  auto section = kd::test::RunCommand(Kdhost() + " describe loader");
  REQUIRE(std::regex_search(section.output, std::regex("\\n  batch_size +int, >= 1 +32 +")));
  auto typo = kd::test::RunCommand(Kdhost() + " describe ResNte");
  REQUIRE(typo.exit_code == 2);
  REQUIRE_THAT(typo.output, Contains("did you mean ResNet?"));
}

TEST_CASE("docs/config-reference.md is exactly what kdhost describe --all --markdown prints") {
  auto result = kd::test::RunCommand("{ " + Kdhost() + " describe --all --markdown 2>/dev/null; }");
  REQUIRE(result.exit_code == 0);
  const fs::path doc = kd::test::SourceDir() / "docs" / "config-reference.md";
  auto text = kd::host::ReadFile(doc);
  REQUIRE(text.ok());
  if (*text != result.output) {
    FAIL(
        "docs/config-reference.md is out of date; regenerate it with\n  build/bin/kdhost describe "
        "--all --markdown > docs/config-reference.md");
  }
}

TEST_CASE("the quickstart pipeline runs end to end on a reduced size, then reuses every stage") {
  const fs::path dir = kd::test::ScratchDir("cli_quickstart");
  auto first = kd::test::RunCommand(Kdhost() + " run " + Quickstart() + Reduced(dir / "runs"));
  INFO(first.output);
  REQUIRE(first.exit_code == 0);
  for (const char* stage : {"teacher", "student", "student_kd"}) {
    REQUIRE(std::regex_search(first.output, std::regex(std::string("\\n") + stage + " +trained ")));
    const double map = SummaryValue(first.output, stage, 0);
    REQUIRE(map > 10.0);  // above chance for 10 labels with 2-4 present; a sanity bound
    REQUIRE(map <= 100.0);
  }
  REQUIRE_THAT(first.output, Contains("mAP"));

  auto again = kd::test::RunCommand(Kdhost() + " run " + Quickstart() + Reduced(dir / "runs") +
                                    " --set loader.workers=0");
  INFO(again.output);
  REQUIRE(again.exit_code == 0);
  for (const char* stage : {"teacher", "student", "student_kd"}) {
    REQUIRE(std::regex_search(again.output, std::regex(std::string("\\n") + stage + " +reused ")));
    REQUIRE(SummaryValue(again.output, stage, 0) == SummaryValue(first.output, stage, 0));
  }

  // One epoch: the best export is the final model, so eval reproduces the summary's mAP.
  auto eval = kd::test::RunCommand(Kdhost() + " eval " + Quickstart() + Reduced(dir / "runs") +
                                   " --stage student_kd");
  INFO(eval.output);
  REQUIRE(eval.exit_code == 0);
  std::smatch match;
  REQUIRE(std::regex_search(eval.output, match, std::regex("mAP +([0-9.]+)")));
  REQUIRE(std::stod(match[1].str()) ==
          Approx(SummaryValue(first.output, "student_kd", 0)).margin(1e-4));
}

TEST_CASE("kdhost train --bench prints a time breakdown and writes nothing") {
  const fs::path dir = kd::test::ScratchDir("cli_bench");
  auto result = kd::test::RunCommand(Kdhost() + " train " + Quickstart() + Reduced(dir / "runs") +
                                     " --stage student --bench 4 --quiet");
  INFO(result.output);
  REQUIRE(result.exit_code == 0);
  REQUIRE_THAT(result.output, Contains("bench: stage 'student' on cpu") && Contains("data") &&
                                  Contains("forward") && Contains("backward") &&
                                  Contains("optimizer") && Contains("samples/s"));
  REQUIRE_FALSE(fs::exists(dir / "runs"));
}

TEST_CASE("a run stopped with --stop-after resumes where it stopped") {
  const fs::path dir = kd::test::ScratchDir("cli_resume");
  const std::string command =
      Kdhost() + " train " + Quickstart() + Reduced(dir / "runs") + " --stage student";
  auto stopped = kd::test::RunCommand(command + " --stop-after 3");
  INFO(stopped.output);
  REQUIRE(stopped.exit_code == 0);
  // The exact command that resumes it: this one without --stop-after.
  REQUIRE_THAT(stopped.output, Contains("stage 'student' stopped after 3 steps; to resume, run the "
                                        "same command again:\n  " +
                                        command + "\n"));
  auto resumed = kd::test::RunCommand(command);
  INFO(resumed.output);
  REQUIRE(resumed.exit_code == 0);
  REQUIRE_THAT(resumed.output, Contains("[student] resuming at step 3/8"));
  // The first line comes before any step; the evaluation line keeps the epoch and the best value.
  REQUIRE_THAT(stopped.output, Contains("[student] training 8 steps (1 epoch(s) of 8), 256 "
                                        "training samples, batch 32, on cpu\n"));
  REQUIRE(std::regex_search(
      resumed.output,
      std::regex("\\[student\\] epoch 1/1 step 8/8: mAP [0-9.]+; best mAP [0-9.]+ at step 8")));
  REQUIRE(std::regex_search(resumed.output, std::regex("\\nstudent +trained +8 ")));
}

TEST_CASE("every shipped config resolves and validates") {
  int checked = 0;
  for (const auto& entry : fs::recursive_directory_iterator(kd::test::SourceDir() / "configs")) {
    if (entry.path().extension() != ".toml") continue;
    if (entry.path().string().find("_base_") != std::string::npos) continue;
    auto result =
        kd::test::RunCommand(Kdhost() + " config " + entry.path().string() + " > /dev/null");
    INFO(entry.path().string() << "\n" << result.output);
    REQUIRE(result.exit_code == 0);
    ++checked;
  }
  REQUIRE(checked >= 3);
}

TEST_CASE("every shipped config on the embedded data passes the fit check before training") {
  // Each stage's data, model, loss and metrics on two samples (kdhost run --dry-run); the paper
  // recipes on COCO, Cityscapes and VG-150 need their datasets and are left out.
  const fs::path work = kd::test::ScratchDir("cli_shipped_fit") / "runs";
  int checked = 0;
  for (const auto& entry : fs::recursive_directory_iterator(kd::test::SourceDir() / "configs")) {
    const std::string name = entry.path().filename().string();
    if (entry.path().extension() != ".toml") continue;
    if (entry.path().string().find("_base_") != std::string::npos) continue;
    if (name.rfind("coco", 0) == 0 || name.rfind("cityscapes", 0) == 0 ||
        name.rfind("vg150", 0) == 0) {
      continue;
    }
    auto result = kd::test::RunCommand(Kdhost() + " run " + entry.path().string() +
                                       " --dry-run --set run.work_dir=" + work.string());
    INFO(entry.path().string() << "\n" << result.output);
    REQUIRE(result.exit_code == 0);
    REQUIRE_THAT(result.output, Contains("to run"));
    ++checked;
  }
  REQUIRE(checked >= 15);
  REQUIRE_FALSE(fs::exists(work));
}

TEST_CASE("the PSD pipeline runs partitions, 2K sub-task teachers and the students end to end") {
  const fs::path dir = kd::test::ScratchDir("cli_psd");
  const std::string config =
      (kd::test::SourceDir() / "configs" / "psd" / "fmnist_psd.toml").string();
  const std::string reduced =
      " --set data.train.num_samples=192 --set data.val.num_samples=96 --set train.max_epochs=1"
      " --set loader.batch_size=32 --set run.work_dir=" +
      (dir / "runs").string();
  auto partition = kd::test::RunCommand(Kdhost() + " produce " + config + reduced + " --quiet");
  INFO(partition.output);
  REQUIRE(partition.exit_code == 0);
  REQUIRE_THAT(partition.output, Contains("stage partition, artefact cgp (") &&
                                     Contains("cgp): 3 groups\n  group 0 (") &&
                                     Contains("stage partition, artefact dgp (") &&
                                     Contains("dgp): 3 groups\n") && Contains("T-shirt/top"));
  auto run = kd::test::RunCommand(Kdhost() + " run " + config + reduced + " --quiet");
  INFO(run.output);
  REQUIRE(run.exit_code == 0);
  REQUIRE(std::regex_search(run.output, std::regex("\\npartition +reused ")));
  for (const char* stage : {"teacher.cgp.0", "teacher.cgp.2", "teacher.dgp.1", "student",
                            "student_kd", "student_cgp", "student_dgp", "student_psd"}) {
    REQUIRE(std::regex_search(run.output, std::regex(std::string("\\n") + stage + " +trained ")));
  }
  // Both teacher sets contribute to the PSD student's loss, one set to the CGP-only student.
  auto log = [&](const char* stage) {
    for (const auto& entry : fs::directory_iterator(dir / "runs")) {
      if (entry.path().filename().string().rfind(std::string(stage) + "-", 0) == 0) {
        return *kd::host::ReadFile(entry.path() / "metrics.jsonl");
      }
    }
    return std::string();
  };
  REQUIRE_THAT(log("student_psd"), Contains("\"loss.psd_cgp\"") && Contains("\"loss.psd_dgp\""));
  REQUIRE_THAT(log("student_cgp"), Contains("\"loss.psd_cgp\"") && !Contains("\"loss.psd_dgp\""));

  // Changing only the PSD student's α retrains that student and reuses every teacher.
  auto again = kd::test::RunCommand(Kdhost() + " run " + config + reduced +
                                    " --quiet --set stages.student_psd.distiller.alpha=0.3");
  INFO(again.output);
  REQUIRE(again.exit_code == 0);
  for (const char* stage :
       {"partition", "teacher.cgp.0", "teacher.dgp.2", "student", "student_kd"}) {
    REQUIRE(std::regex_search(again.output, std::regex(std::string("\\n") + stage + " +reused ")));
  }
  REQUIRE(std::regex_search(again.output, std::regex("\\nstudent_psd +trained ")));
}

namespace {

// The quickstart's KD student ablated over two distillers and `seeds` seeds, on a reduced size.
std::string AblateCommand(const fs::path& work, const std::string& seeds) {
  return Kdhost() + " ablate " + Quickstart() + " --grid distiller=KD,LogitMSE --seeds " + seeds +
         " --quiet --set data.train.num_samples=192 --set data.val.num_samples=96"
         " --set train.max_epochs=1 --set stages.teacher.train.max_epochs=1"
         " --set loader.batch_size=32 --set run.work_dir=" +
         work.string();
}

int CountDirs(const fs::path& dir, const std::string& prefix) {
  int n = 0;
  for (const auto& entry : fs::directory_iterator(dir)) {
    n += entry.is_directory() && entry.path().filename().string().rfind(prefix, 0) == 0;
  }
  return n;
}

}  // namespace

TEST_CASE("an ablation of two distillers over two seeds writes the table, the CSV and the plots") {
  const fs::path work = kd::test::ScratchDir("cli_ablate") / "runs";
  auto result = kd::test::RunCommand(AblateCommand(work, "2"));
  INFO(result.output);
  REQUIRE(result.exit_code == 0);
  const fs::path out = work / "ablation";
  // The teacher is the same stage in every run: trained once, reused by the other three.
  REQUIRE(CountDirs(work, "teacher-") == 1);
  REQUIRE(CountDirs(work, "student_kd-") == 4);
  REQUIRE_THAT(result.output, Contains("used by 4 run(s) (computed once)") &&
                                  Contains("reused 3 time(s): ") && Contains("teacher-"));
  const std::string csv = *kd::host::ReadFile(out / "results.csv");
  REQUIRE_THAT(csv, Contains("run,variant,seed,status,seconds,wall_seconds,stage_dir,mAP,error\n"));
  REQUIRE(std::count(csv.begin(), csv.end(), '\n') == 5);
  REQUIRE(std::regex_search(csv, std::regex("\\n4,distiller=LogitMSE,1,done,")));
  const std::string md = *kd::host::ReadFile(out / "results.md");
  REQUIRE(std::regex_search(
      md, std::regex("\\| distiller=KD \\(baseline\\) \\| 2/2 \\| (\\*\\*)?[0-9.]+ ± [0-9.]+")));
  REQUIRE(std::regex_search(
      md, std::regex("\\| distiller=LogitMSE \\| 2/2 \\| .* \\| [-+][0-9.]+ \\|")));
  REQUIRE_THAT(md, Contains("**"));  // the best mean is marked
  for (const char* plot : {"mAP_by_variant.png", "training_curves.png"}) {
    const std::string bytes = *kd::host::ReadFile(out / plot);
    REQUIRE(bytes.size() > 1000);
    REQUIRE(bytes.compare(0, 8, "\x89PNG\r\n\x1a\n") == 0);
  }
}

TEST_CASE("an ablation resumes interrupted runs and never reruns finished ones") {
  const fs::path work = kd::test::ScratchDir("cli_ablate_resume") / "runs";
  // Interrupted: every stage stops after 2 steps.
  auto stopped = kd::test::RunCommand(AblateCommand(work, "1") + " --stop-after 2");
  INFO(stopped.output);
  REQUIRE(stopped.exit_code == 0);
  REQUIRE_THAT(*kd::host::ReadFile(work / "ablation" / "results.csv"), Contains(",interrupted,"));
  // Resumed: the stages continue from their states and finish.
  auto resumed = kd::test::RunCommand(AblateCommand(work, "1") + " --dry-run");
  REQUIRE_THAT(resumed.output, Contains("unfinished: resumed"));
  auto finished = kd::test::RunCommand(AblateCommand(work, "1"));
  INFO(finished.output);
  REQUIRE(finished.exit_code == 0);
  REQUIRE_THAT(*kd::host::ReadFile(work / "ablation" / "results.csv"), !Contains(",interrupted,"));
  const std::string first = *kd::host::ReadFile(work / "ablation" / "results.csv");
  // A second seed trains only the two new runs; the finished ones and the teacher are reused.
  auto more = kd::test::RunCommand(AblateCommand(work, "2"));
  INFO(more.output);
  REQUIRE(more.exit_code == 0);
  REQUIRE(CountDirs(work, "student_kd-") == 4);
  const std::string second = *kd::host::ReadFile(work / "ablation" / "results.csv");
  // Each finished run keeps its numbers.
  for (const char* variant : {"distiller=KD,0,", "distiller=LogitMSE,0,"}) {
    std::smatch a, b;
    const std::regex row(std::string(",") + variant + "done,[0-9.]+,[0-9.]+,[^,]*,([0-9.]+),");
    REQUIRE(std::regex_search(first, a, row));
    REQUIRE(std::regex_search(second, b, row));
    REQUIRE(a[1].str() == b[1].str());
  }
  auto again = kd::test::RunCommand(AblateCommand(work, "2") + " --dry-run");
  REQUIRE_THAT(again.output, !Contains("to run") && !Contains("unfinished"));
}

TEST_CASE("a bad ablation grid is refused before anything runs") {
  const fs::path work = kd::test::ScratchDir("cli_ablate_bad") / "runs";
  auto check = [&](const std::string& grid, const std::string& expected) {
    auto result = kd::test::RunCommand(Kdhost() + " ablate " + Quickstart() + " --grid '" + grid +
                                       "' --set run.work_dir=" + work.string());
    INFO(result.output);
    REQUIRE(result.exit_code == 2);
    REQUIRE_THAT(result.output, Contains(expected));
    REQUIRE_FALSE(fs::exists(work));
  };
  check("distiller.temperatur=1,2",
        "--grid distiller.temperatur=1,2: distiller.temperatur: unknown option for distillers::KD");
  check("distiller.temperature=\"hot\"",
        "distiller.temperature: expected float, got string \"hot\"");
  check("distiller=KD,Fancy", "distiller: 'Fancy' is not in the distiller registry");
  check("distiller", "expected key=value1,value2,...");
}

namespace {

// KD at T = 1 (the baseline), KD at T = 4 and logit MSE as named variants of the quickstart's
// student_kd, with the student trained alone as a row of its own: each variant sets only what it
// changes and keeps the inherited teacher.
const char* kNamedVariants = R"(
[ablation]
baseline = "kd_t1"

[ablation.variants.alone]
_stage = "student"

[ablation.variants.kd_t1]
"distiller.temperature" = 1.0

[ablation.variants.kd_t4]
distiller = { temperature = 4.0 }

[ablation.variants.mse]
distiller = { type = "LogitMSE" }
)";

}  // namespace

TEST_CASE("named ablation variants merge into the stage, keep the teacher and name the results") {
  const fs::path dir = kd::test::ScratchDir("cli_ablate_named");
  const fs::path config = dir / "variants.toml";
  kd::test::WriteText(config, "base = [\"" + Quickstart() + "\"]\n" + kNamedVariants);
  const fs::path work = dir / "runs";
  auto result = kd::test::RunCommand(Kdhost() + " ablate " + config.string() +
                                     " --seeds 2 --quiet" + Reduced(work));
  INFO(result.output);
  REQUIRE(result.exit_code == 0);
  // 4 variants x 2 seeds; the student alone is its own stage, the teacher is trained once.
  REQUIRE_THAT(result.output, Contains("4 variant(s) x 2 seed(s) = 8 runs"));
  REQUIRE(CountDirs(work, "teacher-") == 1);
  REQUIRE(CountDirs(work, "student-") == 2);
  REQUIRE(CountDirs(work, "student_kd-") == 6);
  const fs::path out = work / "ablation";
  const std::string csv = *kd::host::ReadFile(out / "results.csv");
  for (const char* row : {"\n1,alone,0,done,", "\n2,alone,1,done,", "\n3,kd_t1,0,done,",
                          "\n6,kd_t4,1,done,", "\n8,mse,1,done,"}) {
    REQUIRE_THAT(csv, Contains(row));
  }
  // The rows in the order written, the declared baseline marked, every variant's settings listed.
  const std::string md = *kd::host::ReadFile(out / "results.md");
  const size_t alone = md.find("| alone | 2/2 |");
  const size_t t1 = md.find("| kd_t1 (baseline) | 2/2 |");
  const size_t t4 = md.find("| kd_t4 | 2/2 |");
  const size_t mse = md.find("| mse | 2/2 |");
  REQUIRE(alone != std::string::npos);
  REQUIRE(t1 != std::string::npos);
  REQUIRE(t4 != std::string::npos);
  REQUIRE(mse != std::string::npos);
  REQUIRE((alone < t1 && t1 < t4 && t4 < mse));
  // Δ is the mean of the per-seed differences to the baseline, with its 95% interval:
  // t(0.975, 1) = 12.7062 times |d0 − d1| / 2 for two pairs (sd / √2 = |d0 − d1| / 2).
  std::map<std::pair<std::string, int>, double> map_of;
  std::smatch row;
  for (std::string rest = csv; std::regex_search(
           rest, row, std::regex("\n\\d+,(\\w+),(\\d),done,[^,]*,[^,]*,[^,]*,([-0-9.e]+)"));
       rest = row.suffix()) {
    map_of[{row[1], std::stoi(row[2])}] = std::stod(row[3]);
  }
  const double d0 = map_of[{"kd_t4", 0}] - map_of[{"kd_t1", 0}];
  const double d1 = map_of[{"kd_t4", 1}] - map_of[{"kd_t1", 1}];
  const double half = 12.7062047 * std::abs(d0 - d1) / 2;
  const std::string t4_row = md.substr(t4, md.find('\n', t4) - t4);
  std::smatch cells;
  REQUIRE(std::regex_search(t4_row, cells,
                            std::regex("\\| ([-+0-9.]+) \\| \\[([-+0-9.]+), ([-+0-9.]+)\\] \\|$")));
  // The table rounds to two decimals, the CSV to six digits.
  CHECK(std::stod(cells[1]) == Approx((d0 + d1) / 2).margin(0.006));
  CHECK(std::stod(cells[2]) == Approx((d0 + d1) / 2 - half).margin(0.006));
  CHECK(std::stod(cells[3]) == Approx((d0 + d1) / 2 + half).margin(0.006));
  CHECK_THAT(md, Contains("| kd_t1 (baseline) | 2/2 |") && Contains("| - | - |\n"));
  REQUIRE_THAT(md, Contains("- `alone`: stage `student`\n") &&
                       Contains("- `kd_t4`: distiller.temperature = 4.0\n") &&
                       Contains("- `mse`: distiller.type = \"LogitMSE\"\n"));
  // Each run's record is named after its variant and holds the merged stage config.
  const std::string t4_config =
      *kd::host::ReadFile(out / "runs" / "006-kd_t4-seed1" / "config.toml");
  REQUIRE_THAT(t4_config, Contains("temperature = 4.0") && Contains("from_stage = \"teacher\""));
  const std::string mse_config =
      *kd::host::ReadFile(out / "runs" / "007-mse-seed0" / "config.toml");
  REQUIRE_THAT(mse_config, Contains("type = \"distillers::LogitMSE\"") &&
                               Contains("from_stage = \"teacher\"") && !Contains("temperature"));
  // The stage directory says which variant it holds.
  std::smatch dir_match;
  REQUIRE(
      std::regex_search(csv, dir_match, std::regex("\\n6,kd_t4,1,done,[0-9.]+,[0-9.]+,([^,]+),")));
  REQUIRE(*kd::host::ReadFile(fs::path(dir_match[1].str()) / "variants") == "kd_t4\n");
}

TEST_CASE("named variants and grid tables are checked before anything runs") {
  const fs::path dir = kd::test::ScratchDir("cli_ablate_named_bad");
  const fs::path work = dir / "runs";
  auto plan = [&](const std::string& ablation, const std::string& extra = "") {
    const fs::path config = dir / "bad.toml";
    kd::test::WriteText(config, "base = [\"" + Quickstart() + "\"]\n" + ablation);
    return kd::test::RunCommand(Kdhost() + " ablate " + config.string() + " --dry-run" + extra +
                                " --set run.work_dir=" + work.string());
  };
  // A grid value written as a table merges into the inherited distiller: the teacher stays.
  auto table = plan("", " --grid 'distiller={type=\"distillers::KD\",temperature=4.0}'");
  INFO(table.output);
  REQUIRE(table.exit_code == 0);
  REQUIRE_THAT(table.output, Contains("1 variant(s) x 1 seed(s) = 1 runs"));
  // `_replace = true` replaces it, and the missing teacher is reported before anything runs.
  auto replaced = plan(
      "[ablation.variants.bare]\ndistiller = { _replace = true, type = \"distillers::KD\" }\n");
  INFO(replaced.output);
  REQUIRE(replaced.exit_code == 2);
  REQUIRE_THAT(replaced.output,
               Contains("ablation variant 'bare' (seed 0)") &&
                   Contains("distiller.teacher: a teacher needs one of from_stage") &&
                   Contains("this one has neither"));
  auto typo = plan("[ablation.variants.t4]\n\"distiller.temperatur\" = 4.0\n");
  INFO(typo.output);
  REQUIRE(typo.exit_code == 2);
  REQUIRE_THAT(typo.output, Contains((dir / "bad.toml").string() + ":3:") &&
                                Contains("did you mean temperature?"));
  auto stage = plan("[ablation.variants.alone]\n_stage = \"studnet\"\n");
  INFO(stage.output);
  REQUIRE(stage.exit_code == 2);
  REQUIRE_THAT(stage.output,
               Contains("ablation.variants.alone._stage") && Contains("no stage 'studnet'"));
  auto reserved = plan("[ablation.variants.x]\n_stag = \"student\"\n");
  REQUIRE(reserved.exit_code == 2);
  REQUIRE_THAT(reserved.output,
               Contains("bad.toml:3:9: ablation.variants.x._stag: unknown variant key"));
  auto baseline = plan("[ablation]\nbaseline = \"kd\"\n[ablation.variants.kd_t1]\n");
  REQUIRE(baseline.exit_code == 2);
  REQUIRE_THAT(baseline.output, Contains("baseline 'kd' is not a variant of this ablation"));
  REQUIRE_FALSE(fs::exists(work));
}

TEST_CASE(
    "LS-KD trains scene-graph models with both self-KD modes and the LSD head is not exported") {
  const fs::path dir = kd::test::ScratchDir("cli_lskd");
  const std::string config =
      (kd::test::SourceDir() / "configs" / "lskd" / "fmnist_lskd.toml").string();
  const std::string reduced =
      " --set data.train.num_samples=64 --set data.val.num_samples=32 --set train.max_epochs=2"
      " --set run.work_dir=" +
      (dir / "runs").string();
  for (const char* stage : {"motifs_iterative", "transformer_synchronous"}) {
    auto run =
        kd::test::RunCommand(Kdhost() + " run " + config + reduced + " --quiet --stage " + stage);
    INFO(run.output);
    REQUIRE(run.exit_code == 0);
    REQUIRE(std::regex_search(run.output, std::regex(std::string("\\n") + stage + " +trained ")));
  }
  const fs::path iterative = kd::test::StageDir(dir / "runs", "motifs_iterative");
  const fs::path synchronous = kd::test::StageDir(dir / "runs", "transformer_synchronous");
  REQUIRE_THAT(*kd::host::ReadFile(iterative / "metrics.jsonl"),
               Contains("\"loss.lskd\"") && Contains("\"mR@100\"") && !Contains("\"loss.rel\""));
  REQUIRE_THAT(*kd::host::ReadFile(synchronous / "metrics.jsonl"),
               Contains("\"loss.lsd_head\"") && Contains("\"ngR@50\""));
  // The iterative snapshot travels in the training state; the synchronous head is trained with
  // the student but the export holds the student alone.
  auto state = kd::host::LoadTrainState(iterative / "state" / "train_state.pt");
  REQUIRE(state.ok());
  bool has_snapshot = false;
  for (const auto& [name, tensor] : state->distiller) has_snapshot |= name == "snapshot_epoch";
  CHECK(has_snapshot);
  auto exported = kd::host::LoadModelExport(synchronous / "export" / "last.pt");
  REQUIRE(exported.ok());
  CHECK(exported->vocabularies.at("sgg.predicates").size() == 11);
  CHECK(exported->vocabularies.at("sgg.predicates").front() == "__background__");
  bool has_head = false, has_classifier = false;
  for (const auto& [name, tensor] : exported->state) {
    has_head |= name.find("lsd_head") != std::string::npos;
    has_classifier |= name == "rel_classifier.weight";
  }
  CHECK(has_classifier);
  CHECK_FALSE(has_head);
}

TEST_CASE(
    "feature distillers train through kdhost on taps of the student and the teacher, and their "
    "adapters stay out of the export") {
  const fs::path dir = kd::test::ScratchDir("cli_feature_kd");
  const fs::path config = dir / "feature_kd.toml";
  // The quickstart's teacher and student; the student matches its stride-4 stage2 (8 channels)
  // to the teacher's layer1 (64 channels) with FitNets and AT at once.
  kd::test::WriteText(config, "base = [\"" + Quickstart() + "\"]\n" + R"(
pipeline = ["teacher", "student", "student_kd", "student_feat"]
[stages.student_feat.distiller]
type = "distillers::Compose"
[[stages.student_feat.distiller.parts]]
type = "distillers::FitNets"
teacher = { from_stage = "teacher" }
student_taps = ["stage2"]
teacher_taps = ["layer1"]
[[stages.student_feat.distiller.parts]]
type = "distillers::AT"
teacher = { from_stage = "teacher" }
student_taps = ["stage2", "stage3"]
teacher_taps = ["layer1", "layer2"]
)");
  auto run = kd::test::RunCommand(Kdhost() + " run " + config.string() +
                                  " --quiet --stage student_feat" + Reduced(dir / "runs"));
  INFO(run.output);
  REQUIRE(run.exit_code == 0);
  const fs::path stage = kd::test::StageDir(dir / "runs", "student_feat");
  REQUIRE_THAT(*kd::host::ReadFile(stage / "metrics.jsonl"),
               Contains("\"loss.fitnets\"") && Contains("\"loss.at\"") && Contains("\"loss.bce\""));
  auto state = kd::host::LoadTrainState(stage / "state" / "train_state.pt");
  REQUIRE(state.ok());
  std::vector<std::string> adapter;
  for (const auto& [name, tensor] : state->distiller) adapter.push_back(name);
  std::sort(adapter.begin(), adapter.end());
  CHECK(adapter ==
        std::vector<std::string>{"parts.0.regressors.0.bias", "parts.0.regressors.0.weight"});
  auto exported = kd::host::LoadModelExport(stage / "export" / "last.pt");
  REQUIRE(exported.ok());
  for (const auto& [name, tensor] : exported->state) {
    CHECK(name.find("regressor") == std::string::npos);
    CHECK(name.find("tap") == std::string::npos);
  }
}

TEST_CASE(
    "the distiller zoo trains through kdhost on the segmentation and scene-graph tracks too") {
  const fs::path dir = kd::test::ScratchDir("cli_zoo_tracks");
  // Segmentation: DKD and DIST on the dense logits (labels from the batch's mask) and SP on the
  // last stage's taps, against the track's teacher.
  kd::test::WriteText(dir / "seg.toml",
                      "base = [\"" +
                          (kd::test::SourceDir() / "configs" / "rdd" / "fmnist_rdd.toml").string() +
                          "\"]\n" + R"(
pipeline = ["teacher", "student", "student_kd", "student_cwd", "student_tfe", "student_tse",
            "student_rdd", "student_rdd_cwd", "student_rdd_or", "student_rdd_and", "student_zoo"]
[stages.student_zoo.distiller]
type = "distillers::Compose"
parts = [
  { type = "distillers::DKD", teacher = { from_stage = "teacher" }, labels_key = "mask", warmup_epochs = 0 },
  { type = "distillers::DIST", teacher = { from_stage = "teacher" } },
  { type = "distillers::SP", teacher = { from_stage = "teacher" }, student_taps = ["stage3"] },
]
)");
  // Scene graphs: DKD on the predicate logits of the student's sampled pairs (the teacher scores
  // the same pairs) and PKT on the backbone's last stage.
  kd::test::WriteText(
      dir / "sgg.toml",
      "base = [\"" + (kd::test::SourceDir() / "configs" / "lskd" / "fmnist_lskd.toml").string() +
          "\"]\n" + R"(
plugins = ["fmnist_tasks", "resnet", "sgg_heads", "lskd", "distillers"]
pipeline = ["motifs", "motifs_iterative", "motifs_synchronous", "transformer",
            "transformer_iterative", "transformer_synchronous", "motifs_zoo"]
[stages.motifs_zoo.distiller]
type = "distillers::Compose"
parts = [
  { type = "distillers::DKD", teacher = { from_stage = "motifs" }, logits_key = "rel_logits", labels_key = "rel_labels", warmup_epochs = 0 },
  { type = "distillers::PKT", teacher = { from_stage = "motifs" }, student_taps = ["stage2"] },
]
)");
  const std::string reduced =
      " --quiet --set data.train.num_samples=64 --set data.val.num_samples=32"
      " --set train.max_epochs=1 --set run.work_dir=" +
      (dir / "runs").string();
  auto seg = kd::test::RunCommand(Kdhost() + " run " + (dir / "seg.toml").string() + reduced +
                                  " --stage student_zoo --set stages.teacher.train.max_epochs=1");
  INFO(seg.output);
  REQUIRE(seg.exit_code == 0);
  REQUIRE_THAT(
      *kd::host::ReadFile(kd::test::StageDir(dir / "runs", "student_zoo") / "metrics.jsonl"),
      Contains("\"loss.dkd_tckd\"") && Contains("\"loss.dkd_nckd\"") &&
          Contains("\"loss.dist_inter\"") && Contains("\"loss.sp\"") && Contains("\"loss.ce\"") &&
          Contains("\"mIoU\""));
  auto sgg = kd::test::RunCommand(Kdhost() + " run " + (dir / "sgg.toml").string() + reduced +
                                  " --stage motifs_zoo");
  INFO(sgg.output);
  REQUIRE(sgg.exit_code == 0);
  REQUIRE_THAT(
      *kd::host::ReadFile(kd::test::StageDir(dir / "runs", "motifs_zoo") / "metrics.jsonl"),
      Contains("\"loss.dkd_nckd\"") && Contains("\"loss.pkt\"") && Contains("\"loss.rel\"") &&
          Contains("\"mR@100\""));
}

TEST_CASE("kdhost ablate compares the shipped zoos on the multi-label and segmentation tracks") {
  const fs::path dir = kd::test::ScratchDir("cli_zoo_ablate");
  const std::string reduced =
      " --quiet --seeds 1 --set data.train.num_samples=64 --set data.val.num_samples=32"
      " --set train.max_epochs=1 --set stages.teacher.train.max_epochs=1";
  const std::map<std::string, std::vector<std::string>> zoos = {
      {"quickstart/distiller_zoo.toml", {"kd", "fitnets", "at", "sp", "rkd", "pkt"}},
      {"rdd/fmnist_distiller_zoo.toml", {"kd", "cwd", "dkd", "dist", "skd", "cirkd", "rdd"}},
  };
  for (const auto& [file, variants] : zoos) {
    const fs::path work = dir / fs::path(file).parent_path();
    auto result = kd::test::RunCommand(Kdhost() + " ablate " +
                                       (kd::test::SourceDir() / "configs" / file).string() +
                                       reduced + " --set run.work_dir=" + work.string());
    INFO(file << "\n" << result.output);
    REQUIRE(result.exit_code == 0);
    const std::string md = *kd::host::ReadFile(work / "ablation" / "results.md");
    CHECK_THAT(md, Contains("| student_alone (baseline) | 1/1 |"));
    for (const std::string& variant : variants) {
      CHECK_THAT(md, Contains("\n| " + variant + " | 1/1 |"));
    }
    CHECK(fs::exists(work / "ablation" / "training_curves.png"));
  }
}

TEST_CASE("kdhost run --dry-run lists the stages, and 2 processes do not train the stage of 1") {
  const fs::path work = kd::test::ScratchDir("cli_dry_run") / "runs";
  const std::string command = Kdhost() + " run " + Quickstart() + " --dry-run" + Reduced(work);
  auto one = kd::test::RunCommand(command);
  INFO(one.output);
  REQUIRE(one.exit_code == 0);
  REQUIRE_THAT(one.output, Contains(": 3 stage(s) in " + work.string() + "\n"));
  REQUIRE(std::regex_search(
      one.output, std::regex("\\n  teacher  \\S+/teacher-[0-9a-f]{12}  to run; trains "
                             "core::BackboneHead \\(resnet::ResNet\\) for 1 epoch\\(s\\)\\n")));
  REQUIRE_THAT(one.output, Contains("to run; trains core::BackboneHead (resnet::SmallCNN) for 1 "
                                    "epoch(s) with distillers::KD; needs teacher\n"));
  REQUIRE_FALSE(fs::exists(work));
  // Only what a stage needs.
  auto kd_only = kd::test::RunCommand(command + " --stage student_kd");
  REQUIRE_THAT(kd_only.output, Contains(": 2 stage(s) in "));
  REQUIRE_THAT(kd_only.output, !Contains("\n  student  "));
  // The same config launched as 2 processes (global batch 2 x 32): other stages, other
  // directories; with run.elastic they are the one-process stages.
  auto two = kd::test::RunCommand("RANK=0 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 " + command);
  INFO(two.output);
  REQUIRE(two.exit_code == 0);
  for (const char* stage : {"teacher", "student", "student_kd"}) {
    CHECK(DryRunDir(two.output, stage) != DryRunDir(one.output, stage));
  }
  auto elastic = kd::test::RunCommand("RANK=0 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 " + command +
                                      " --set run.elastic=true");
  INFO(elastic.output);
  REQUIRE(elastic.exit_code == 0);
  for (const char* stage : {"teacher", "student", "student_kd"}) {
    CHECK(DryRunDir(elastic.output, stage) == DryRunDir(one.output, stage));
  }
}

TEST_CASE(
    "a --set that a stage's own table shadows is reported with the stages and the --set "
    "that reaches them") {
  auto shadowed = kd::test::RunCommand(Kdhost() + " config " + Quickstart() +
                                       " --set train.max_epochs=2 --set loader.batch_size=8");
  INFO(shadowed.output);
  REQUIRE(shadowed.exit_code == 0);
  // The teacher keeps its own max_epochs = 8; batch_size reaches every stage, so no warning.
  CHECK_THAT(shadowed.output,
             Contains("kdhost: warning: --set train.max_epochs=2 does not reach stage teacher, "
                      "which sets its own train.max_epochs; to change it there too: --set "
                      "stages.teacher.train.max_epochs=2, or --set '*.train.max_epochs=2' for "
                      "every stage\n"));
  CHECK_THAT(shadowed.output, !Contains("--set loader.batch_size=8 does not reach"));
  // A --set that reaches the stage's own value as well leaves nothing to warn about.
  auto both =
      kd::test::RunCommand(Kdhost() + " config " + Quickstart() +
                           " --set train.max_epochs=2 --set stages.teacher.train.max_epochs=3");
  INFO(both.output);
  REQUIRE(both.exit_code == 0);
  CHECK_THAT(both.output, !Contains("warning"));
  // "*." reaches the top level and every stage that sets its own value.
  auto every = kd::test::RunCommand(Kdhost() + " config " + Quickstart() +
                                    " --set '*.train.max_epochs=2' --stage teacher");
  INFO(every.output);
  REQUIRE(every.exit_code == 0);
  CHECK_THAT(every.output,
             Contains("max_epochs = 2") && !Contains("max_epochs = 8") && !Contains("warning"));
  auto top_level =
      kd::test::RunCommand(Kdhost() + " config " + Quickstart() + " --set distiller.temperature=4");
  INFO(top_level.output);
  CHECK(top_level.exit_code == 2);
  CHECK_THAT(top_level.output,
             Contains("a distiller table needs `type = \"<name>\"`") &&
                 Contains("\n  note: --set distiller.temperature=4 sets a top-level `distiller`, "
                          "which the config has only in stage student_kd; to change it there: "
                          "--set stages.student_kd.distiller.temperature=4"));
  auto reached = kd::test::RunCommand(Kdhost() + " config " + Quickstart() +
                                      " --set stages.student_kd.distiller.temperature=4 --stage "
                                      "student_kd");
  INFO(reached.output);
  CHECK(reached.exit_code == 0);
  CHECK_THAT(reached.output, Contains("temperature = 4"));
  CHECK_THAT(reached.output, !Contains("warning"));
}

TEST_CASE("a stage imported from another config lives in that config's directory and is reused") {
  const fs::path dir = kd::test::ScratchDir("cli_from_config");
  // A small pretraining config of its own (its work directory is its own, not the importers').
  kd::test::WriteText(dir / "pre.toml", R"(
plugins = ["fmnist_tasks", "resnet", "mlic_heads", "classification"]
pipeline = ["small", "wide"]
[run]
work_dir = ")" + (dir / "pre_runs").string() +
                                            R"("
[data.train]
type = "fmnist_tasks::SingleItem"
num_samples = 256
[data.val]
type = "fmnist_tasks::SingleItem"
split = "test"
num_samples = 128
placement = "fixed"
[loader]
batch_size = 32
[model]
type = "core::BackboneHead"
backbone = { type = "resnet::SmallCNN", in_channels = 1, channels = [8, 16, 32] }
head = { type = "mlic_heads::GapLinear", num_classes = 10 }
[loss]
type = "classification::CrossEntropy"
[[metrics]]
type = "classification::Accuracy"
[train]
max_epochs = 1
optimizer = { type = "core::AdamW", lr = 0.002 }
[stages.small]
[stages.wide]
train = { init_from_stage = "small" }
)");
  // Two configs import stage `small`, under names of their own, into different work dirs.
  const auto importer = [&](const std::string& name, const std::string& own_name) {
    kd::test::WriteText(dir / name, "base = [\"" + Quickstart() +
                                        "\"]\n"
                                        "pipeline = [\"" +
                                        own_name +
                                        "\", \"teacher\", \"student\", \"student_kd\"]\n"
                                        "[stages." +
                                        own_name +
                                        "]\n"
                                        "from_config = { file = \"pre.toml\", stage = \"small\" }\n"
                                        "[stages.student.train]\n"
                                        "init_from_stage = \"" +
                                        own_name +
                                        "\"\n"
                                        "init_prefix = \"backbone.\"\n");
    return Kdhost() + " run " + (dir / name).string();
  };
  const std::string a = importer("a.toml", "pretrain") + Reduced(dir / "runs_a");
  const std::string b = importer("b.toml", "warm") + Reduced(dir / "runs_b");
  auto first = kd::test::RunCommand(a);
  INFO(first.output);
  REQUIRE(first.exit_code == 0);
  const fs::path small = kd::test::StageDir(dir / "pre_runs", "small");
  REQUIRE(fs::exists(small / "export" / "best.pt"));
  // Only the backbone is loaded: the classifier stays out (init_prefix).
  CHECK_THAT(first.output,
             Contains("[student] initialised ") &&
                 Contains(" tensors from " + (small / "export" / "best.pt").string()) &&
                 Contains("head.fc.weight"));
  CHECK_FALSE(fs::exists(dir / "runs_a" / "pretrain"));
  // The other importer, and the pretraining config run by itself, reuse it; the importers'
  // --set overrides (Reduced) do not reach it.
  auto second = kd::test::RunCommand(b);
  INFO(second.output);
  REQUIRE(second.exit_code == 0);
  CHECK(std::regex_search(second.output, std::regex("\\nwarm +reused ")));
  auto plan = kd::test::RunCommand(Kdhost() + " run " + (dir / "pre.toml").string() + " --dry-run");
  CHECK_THAT(plan.output, Contains("  small  " + small.string() + "  finished: reused"));
  // Keys next to from_config change the stage, and so its hash, still in the imported dir.
  auto longer = kd::test::RunCommand(a + " --set stages.pretrain.train.max_epochs=2 --dry-run");
  INFO(longer.output);
  const std::string longer_dir = DryRunDir(longer.output, "pretrain");
  CHECK(fs::path(longer_dir).parent_path() == dir / "pre_runs");
  CHECK(longer_dir != small.string());
  // A prefix no tensor has is refused when the stage starts, naming the key.
  auto bad_prefix = kd::test::RunCommand(a + " --set stages.student.train.init_prefix=neck.");
  CHECK(bad_prefix.exit_code != 0);
  CHECK_THAT(bad_prefix.output,
             Contains("train.init_prefix") && Contains("has a name starting with 'neck.'"));
  // Mistakes are reported before anything runs.
  auto no_stage = kd::test::RunCommand(a + " --set stages.pretrain.from_config.stage=tiny");
  CHECK(no_stage.exit_code == 2);
  CHECK_THAT(no_stage.output, Contains("has no stage 'tiny' (its stages: small, wide)"));
  auto with_deps = kd::test::RunCommand(a + " --set stages.pretrain.from_config.stage=wide");
  CHECK(with_deps.exit_code == 2);
  CHECK_THAT(with_deps.output, Contains("takes teachers or weights from its pipeline's stages "
                                        "(small); only a stage that depends on no other stage"));
  auto no_file = kd::test::RunCommand(a + " --set stages.pretrain.from_config.file=nope.toml");
  CHECK(no_file.exit_code == 2);
  CHECK_THAT(no_file.output, Contains("stages.pretrain.from_config: no such file 'nope.toml'"));
}

namespace {

// A reduced copy of configs/pretrain/fmnist_backbones.toml in `dir` (256 training and 128
// validation items, one epoch, its own work directory), and the overrides that make a recipe's
// imported pretraining stages come from it.
std::string ReducedPretraining(const fs::path& dir, const std::vector<std::string>& stages) {
  kd::test::WriteText(
      dir / "pretrain.toml",
      "base = [\"" +
          (kd::test::SourceDir() / "configs" / "pretrain" / "fmnist_backbones.toml").string() +
          "\"]\n[run]\nwork_dir = \"" + (dir / "pretrain_runs").string() +
          "\"\n[data.train]\nnum_samples = 256\n[data.val]\nnum_samples = 128\n"
          "[loader]\nbatch_size = 32\n[train]\nmax_epochs = 1\n");
  std::string overrides;
  for (const std::string& stage : stages) {
    overrides += " --set stages." + stage + ".from_config.file=" + (dir / "pretrain.toml").string();
  }
  return overrides;
}

bool Trained(const std::string& output, const std::string& stage) {
  return std::regex_search(output, std::regex("\\n" + stage + " +trained "));
}

// Runs `recipe` (under configs/) reduced to seconds and returns its output.
std::string RunReducedRecipe(const std::string& name, const std::string& recipe,
                             const std::vector<std::string>& pretrain_stages,
                             const std::string& sizes) {
  const fs::path dir = kd::test::ScratchDir(name);
  const std::string command =
      Kdhost() + " run " + (kd::test::SourceDir() / "configs" / recipe).string() + sizes +
      " --set train.max_epochs=1 --set run.work_dir=" + (dir / "runs").string() +
      ReducedPretraining(dir, pretrain_stages);
  auto run = kd::test::RunCommand(command);
  INFO(command << "\n" << run.output);
  REQUIRE(run.exit_code == 0);
  // Every backbone started from its pretraining stage, in the reduced copy's directory.
  for (const std::string& stage : pretrain_stages) REQUIRE(Trained(run.output, stage));
  CHECK_THAT(run.output, Contains((dir / "pretrain_runs").string()));
  CHECK_FALSE(fs::exists(dir / "runs" / "pretrain"));
  return run.output;
}

}  // namespace

TEST_CASE("the PSD recipe of the pretrained regime runs on the colour mosaics end to end") {
  const std::string output =
      RunReducedRecipe("cli_psd_colour", "psd/fmnist_colour_psd.toml", {"pretrain"},
                       " --set data.train.num_samples=384 --set data.val.num_samples=128 --set "
                       "loader.batch_size=32");
  // K = 4 groups over the 40 colour labels, one teacher per group and graph, every student.
  for (const char* stage :
       {"teacher.cgp.0", "teacher.cgp.3", "teacher.dgp.0", "teacher.dgp.3", "student",
        "student_low_lr", "student_kd", "student_cgp", "student_dgp", "student_psd"}) {
    CHECK(Trained(output, stage));
  }
  CHECK_THAT(output, Contains("[student_psd] initialised "));
  // The partitions of the full training split: K = 4 groups of several labels each, and CGP and
  // DGP group the labels differently.
  const std::string config =
      (kd::test::SourceDir() / "configs" / "psd" / "fmnist_colour_psd.toml").string();
  const fs::path dir = kd::test::ScratchDir("cli_psd_colour_partition");
  auto produce =
      kd::test::RunCommand(Kdhost() + " produce " + config + " --stage partition" +
                           " --set run.work_dir=" + (dir / "runs").string() + " --quiet");
  INFO(produce.output);
  REQUIRE(produce.exit_code == 0);
  std::smatch m;
  std::string rest = produce.output;
  std::vector<int> sizes;
  while (std::regex_search(rest, m, std::regex("\\n  group \\d \\((\\d+)\\)"))) {
    sizes.push_back(std::stoi(m[1]));
    rest = m.suffix();
  }
  REQUIRE(sizes.size() == 8);
  for (int size : sizes) CHECK(size >= 3);
  const size_t dgp = produce.output.find("artefact dgp");
  REQUIRE(dgp != std::string::npos);
  CHECK(produce.output.substr(produce.output.find("artefact cgp"), dgp) !=
        produce.output.substr(dgp));
  auto plan = kd::test::RunCommand(Kdhost() + " run " + config +
                                   " --dry-run --set run.work_dir=" + (dir / "runs").string());
  // The partition trains nothing, so the inherited train.init_from_stage does not make it wait
  // for the pretraining stage.
  CHECK_THAT(plan.output, Contains("makes cgp (psd::CGP), dgp (psd::DGP)\n"));
}

TEST_CASE("the RDD recipe of the pretrained regime runs its ResNet-18 teacher end to end") {
  const std::string output =
      RunReducedRecipe("cli_rdd_pretrained", "rdd/fmnist_rdd_pretrained.toml",
                       {"pretrain_resnet18", "pretrain_smallcnn"},
                       " --set data.train.num_samples=64 --set data.val.num_samples=32"
                       " --set stages.teacher.train.max_epochs=1");
  for (const char* stage : {"teacher", "student", "student_kd", "student_cwd", "student_rdd",
                            "student_rdd_cwd", "student_rdd_or", "student_rdd_and"}) {
    CHECK(Trained(output, stage));
  }
  CHECK_THAT(output, Contains("[teacher] initialised ") && Contains("[student_rdd] initialised "));
}

TEST_CASE("the LS-KD recipe of the pretrained regime runs on the hierarchical predicates") {
  const std::string output =
      RunReducedRecipe("cli_lskd_hierarchical", "lskd/fmnist_lskd_hierarchical.toml", {"pretrain"},
                       " --set data.train.num_samples=64 --set data.val.num_samples=32");
  for (const char* stage : {"motifs", "motifs_iterative", "motifs_synchronous", "transformer",
                            "transformer_iterative", "transformer_synchronous"}) {
    CHECK(Trained(output, stage));
  }
  CHECK_THAT(output, Contains("mR@20") && Contains("[motifs_iterative] initialised "));
}

TEST_CASE("the pretrained quickstart starts its teacher and both students from pretraining") {
  const std::string output =
      RunReducedRecipe("cli_quickstart_pretrained", "quickstart/kd_pretrained.toml",
                       {"pretrain_resnet18", "pretrain_smallcnn"},
                       " --set data.train.num_samples=128 --set data.val.num_samples=64"
                       " --set stages.teacher.train.max_epochs=1 --set loader.batch_size=32");
  for (const char* stage : {"teacher", "student", "student_kd"}) CHECK(Trained(output, stage));
  // The teacher from the ResNet-18 stage, both students from the same SmallCNN stage; only the
  // backbones' tensors are loaded (the 10-class pretraining head is left out by init_prefix).
  const std::regex from(R"(\[(\w+)\] initialised \d+ tensors from \S+/pretrain_runs/(\w+)-)");
  std::map<std::string, std::string> source;
  for (std::sregex_iterator it(output.begin(), output.end(), from), end; it != end; ++it) {
    source[(*it)[1]] = (*it)[2];
  }
  CHECK(source["teacher"] == "resnet18");
  CHECK(source["student"] == "smallcnn_8_16_32");
  CHECK(source["student_kd"] == "smallcnn_8_16_32");
}
