// kdhost eval on a model export alone: the model from the export's model_config, the evaluation
// data and metrics from the config stored in the export or from a given one (which needs only
// data.val and metrics), every metric at full precision in --json, the same JSON per stage in
// summary.json, and clear errors for a damaged or mismatched export, a metric of another task and
// an unwritable output.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <regex>

#include "host/checkpoint.h"
#include "host/files.h"
#include "kd/dataset.h"
#include "kd/model.h"
#include "kd/rng.h"
#include "test_support.h"

namespace fs = std::filesystem;
using Catch::Matchers::Contains;

namespace {

std::string Kdhost() { return kd::test::KdhostPath().string(); }

// The quickstart's student, 24 steps, an evaluation every 6, on 64 evaluation mosaics.
const fs::path& TrainedStage() {
  static const fs::path stage = [] {
    const fs::path work = kd::test::ScratchDir("eval_trained_" + std::to_string(getpid()));
    auto trained = kd::test::RunCommand(
        Kdhost() + " train " +
        (kd::test::SourceDir() / "configs" / "quickstart" / "kd_multilabel.toml").string() +
        " --stage student --set data.train.num_samples=256 --set data.val.num_samples=64"
        " --set loader.batch_size=16 --set train.max_epochs=0 --set train.max_iters=24"
        " --set train.val_interval=6 --quiet --set run.work_dir=" +
        work.string());
    if (trained.exit_code != 0) throw std::runtime_error(trained.output);
    return kd::test::StageDir(work, "student");
  }();
  return stage;
}

// The value of "key": ... in a JSON text written by kdhost (one key per line).
std::string JsonField(const std::string& json, const std::string& key) {
  std::smatch match;
  REQUIRE(std::regex_search(json, match, std::regex("\"" + key + "\": ([^,\\n]+)")));
  return match[1].str();
}

// The evaluation split the student was evaluated on, and its metric, with no model and no
// training split.
const char* kValOnly = R"(plugins = ["fmnist_tasks", "mlic_heads", "resnet"]

[data.val]
type = "fmnist_tasks::MultiLabelMosaic"
split = "test"
num_samples = 64
grid = 2
min_items = 2
max_items = 4
seed = 1

[[metrics]]
type = "mlic_heads::mAP"
)";

}  // namespace

TEST_CASE(
    "kdhost eval EXPORT.pt alone uses the config stored in the export and --json writes "
    "every metric at full precision with the export's identity") {
  const fs::path stage = TrainedStage();
  const fs::path dir = kd::test::ScratchDir("eval_alone");
  auto result = kd::test::RunCommand(Kdhost() + " eval " + (stage / "export" / "best.pt").string() +
                                     " --quiet --json " + (dir / "out" / "eval.json").string());
  INFO(result.output);
  REQUIRE(result.exit_code == 0);
  auto best = kd::host::LoadModelExport(stage / "export" / "best.pt");
  REQUIRE(best.ok());
  const std::string json = *kd::host::ReadFile(dir / "out" / "eval.json");
  INFO(json);
  // The same split and model as the evaluation that chose this export: the same value, exactly.
  CHECK(std::stod(JsonField(json, "mAP")) == best->metrics.front().value);
  CHECK(JsonField(json, "stage") == "\"student\"");
  CHECK(JsonField(json, "step") == std::to_string(best->step));
  CHECK(JsonField(json, "hash") == "\"" + best->stage_hash + "\"");
  CHECK(JsonField(json, "config") == "\"stored in the export\"");
  CHECK(best->stage_hash.size() == 16);
  CHECK(stage.filename().string() == "student-" + best->stage_hash.substr(0, 12));
  // The console shows 6 decimals.
  CHECK(std::regex_search(result.output, std::regex("mAP +[0-9]+\\.[0-9]{6}\\n")));

  // summary.json: the same form, for the final evaluation (export/last.pt).
  auto last = kd::host::LoadModelExport(stage / "export" / "last.pt");
  REQUIRE(last.ok());
  const std::string summary = *kd::host::ReadFile(stage / "summary.json");
  INFO(summary);
  CHECK(std::stod(JsonField(summary, "mAP")) == last->metrics.front().value);
  CHECK(JsonField(summary, "step") == "24");
  CHECK_THAT(summary, Contains("\"metric_order\": [\"mAP\"]"));

  // --set applies to the stored config: another evaluation split gives another value.
  auto fewer = kd::test::RunCommand(Kdhost() + " eval " + (stage / "export" / "best.pt").string() +
                                    " --quiet --set data.val.num_samples=32 --json " +
                                    (dir / "fewer.json").string());
  INFO(fewer.output);
  REQUIRE(fewer.exit_code == 0);
  CHECK(std::stod(JsonField(*kd::host::ReadFile(dir / "fewer.json"), "mAP")) !=
        best->metrics.front().value);
}

TEST_CASE(
    "kdhost eval EXPORT.pt CONFIG needs only data.val and metrics: the model comes from "
    "the export") {
  const fs::path stage = TrainedStage();
  const fs::path dir = kd::test::ScratchDir("eval_config");
  kd::test::WriteText(dir / "val_only.toml", kValOnly);
  auto result = kd::test::RunCommand(Kdhost() + " eval " + (stage / "export" / "best.pt").string() +
                                     " " + (dir / "val_only.toml").string() + " --quiet --json " +
                                     (dir / "eval.json").string());
  INFO(result.output);
  REQUIRE(result.exit_code == 0);
  auto best = kd::host::LoadModelExport(stage / "export" / "best.pt");
  REQUIRE(best.ok());
  const std::string json = *kd::host::ReadFile(dir / "eval.json");
  CHECK(std::stod(JsonField(json, "mAP")) == best->metrics.front().value);
  CHECK(JsonField(json, "config") == "\"" + (dir / "val_only.toml").string() + "\"");
}

TEST_CASE(
    "kdhost eval refuses a damaged export, other labels, a metric of another task, an "
    "export without a config and an unwritable --json, each with what and where") {
  const fs::path stage = TrainedStage();
  const fs::path dir = kd::test::ScratchDir("eval_errors");
  const std::string best = (stage / "export" / "best.pt").string();

  const std::string bytes = *kd::host::ReadFile(best);
  kd::test::WriteText(dir / "damaged.pt", bytes.substr(0, bytes.size() / 2));
  auto damaged = kd::test::RunCommand(Kdhost() + " eval " + (dir / "damaged.pt").string());
  CHECK(damaged.exit_code != 0);
  CHECK_THAT(damaged.output, Contains((dir / "damaged.pt").string() +
                                      ": not a readable checkpoint (damaged zip archive"));

  // Segmentation mosaics: 11 classes (with the background) against the export's 10.
  kd::test::WriteText(dir / "other_labels.toml",
                      "plugins = [\"fmnist_tasks\", \"mlic_heads\", \"resnet\"]\n"
                      "[data.val]\ntype = \"fmnist_tasks::SegmentationMosaic\"\nsplit = \"test\"\n"
                      "num_samples = 8\n[[metrics]]\ntype = \"mlic_heads::mAP\"\n");
  auto labels = kd::test::RunCommand(Kdhost() + " eval " + best + " " +
                                     (dir / "other_labels.toml").string() + " --quiet");
  CHECK(labels.exit_code == 2);
  CHECK_THAT(labels.output,
             Contains((dir / "other_labels.toml").string() + ":2:1: data.val: " + best +
                      " was trained on 10 labels (T-shirt/top, Trouser, Pullover, Dress, Coat, "
                      "...); data.val has 11 labels (background, T-shirt/top,"));

  std::string seg_metric = kValOnly;
  seg_metric.replace(seg_metric.find("mlic_heads::mAP"), 15, "seg_heads::mIoU");
  seg_metric.replace(seg_metric.find("\"resnet\"]"), 9, "\"resnet\", \"seg_heads\"]");
  kd::test::WriteText(dir / "seg_metric.toml", seg_metric);
  auto metric = kd::test::RunCommand(Kdhost() + " eval " + best + " " +
                                     (dir / "seg_metric.toml").string() + " --quiet");
  CHECK(metric.exit_code != 0);
  CHECK_THAT(metric.output,
             Contains("metric seg_heads::mIoU (" + (dir / "seg_metric.toml").string() +
                      ":12:1: metrics[0]): tensor 'mask' is not in this TensorDict") &&
                 Contains("(the model's outputs: logits,") &&
                 Contains("check that the metric fits the model's task"));

  auto old = kd::host::LoadModelExport(best);
  REQUIRE(old.ok());
  old->stage_config.clear();
  REQUIRE(kd::host::SaveModelExport(dir / "old.pt", *old).ok());
  auto no_config = kd::test::RunCommand(Kdhost() + " eval " + (dir / "old.pt").string());
  CHECK(no_config.exit_code == 2);
  CHECK_THAT(no_config.output,
             Contains("this export does not hold the config of the stage that wrote it") &&
                 Contains("kdhost eval " + (dir / "old.pt").string() + " CONFIG"));
  kd::test::WriteText(dir / "val_only.toml", kValOnly);
  auto with_config = kd::test::RunCommand(Kdhost() + " eval " + (dir / "old.pt").string() + " " +
                                          (dir / "val_only.toml").string() + " --quiet");
  CHECK(with_config.exit_code == 0);

  // A regular file where the output's directory should be: refused before evaluating.
  kd::test::WriteText(dir / "a_file", "");
  auto unwritable = kd::test::RunCommand(Kdhost() + " eval " + best + " --quiet --json " +
                                         (dir / "a_file" / "eval.json").string());
  CHECK(unwritable.exit_code != 0);
  CHECK_THAT(unwritable.output, Contains("--json " + (dir / "a_file" / "eval.json").string() +
                                         ": cannot create directory " + (dir / "a_file").string() +
                                         ": Not a directory"));
  CHECK_THAT(unwritable.output, !Contains("mAP"));
}

TEST_CASE(
    "kdhost predict writes one row per sample as .npy files numpy reads, with the sample "
    "indices, the label names and the logits of the exported model") {
  const fs::path stage = TrainedStage();
  const fs::path dir = kd::test::ScratchDir("predict");
  const std::string best = (stage / "export" / "best.pt").string();
  const fs::path out = dir / "predictions";
  auto result =
      kd::test::RunCommand(Kdhost() + " predict " + best + " --quiet --out " + out.string());
  INFO(result.output);
  REQUIRE(result.exit_code == 0);
  CHECK_FALSE(fs::exists(out.string() + ".partial"));
  const std::string meta = *kd::host::ReadFile(out / "meta.json");
  INFO(meta);
  CHECK_THAT(meta, Contains("\"samples\": 64") && Contains("\"index\": \"index.npy\"") &&
                       Contains("\"logits\": {\"file\": \"logits.npy\", \"dtype\": \"float32\", "
                                "\"shape\": [64, 10]}") &&
                       Contains("\"class_names\": [\"T-shirt/top\", \"Trouser\","));
  CHECK_THAT(meta, !Contains("feat."));  // features are left out unless named
  CHECK_THAT(meta, Contains("\"inputs\": {}"));

  // numpy reads the files without kdhost.
  const fs::path script = dir / "read.py";
  kd::test::WriteText(script,
                      "import json, sys, numpy as np\n"
                      "d = sys.argv[1]\n"
                      "meta = json.load(open(d + '/meta.json'))\n"
                      "logits = np.load(d + '/logits.npy', mmap_mode='r')\n"
                      "index = np.load(d + '/index.npy')\n"
                      "print(logits.dtype, logits.shape, index.dtype, index.shape,\n"
                      "      bool((index == np.arange(64)).all()),\n"
                      "      len(meta['class_names']), meta['stage'])\n"
                      "print('row0 %.9g %.9g' % (logits[0, 0], logits[0, 9]))\n");
  auto read =
      kd::test::RunCommand(kd::test::PythonPath() + " " + script.string() + " " + out.string());
  INFO(read.output);
  REQUIRE(read.exit_code == 0);
  CHECK_THAT(read.output, Contains("float32 (64, 10) int64 (64,) True 10 student"));

  // The rows are the exported model's logits: sample 0 through the model built from the export.
  auto data = kd::host::LoadModelExport(best);
  REQUIRE(data.ok());
  kd::DatasetInfo info("multilabel", data->class_names);
  auto model = kd::test::Make<kd::Model>(kd::Kind::kModel, data->model_config, info);
  REQUIRE(kd::host::LoadModuleState(*model, data->state, kd::host::LoadMode::kStrict, best).ok());
  model->eval();
  auto val =
      kd::test::Make<kd::Dataset>(kd::Kind::kDataset, R"(type = "fmnist_tasks::MultiLabelMosaic"
split = "test"
num_samples = 64
grid = 2
min_items = 2
max_items = 4
seed = 1)");
  kd::Rng rng(0);
  torch::NoGradGuard no_grad;
  const torch::Tensor logits =
      model->Forward({{"image", val->Get(0, rng).at("image").unsqueeze(0)}}).at("logits");
  std::smatch row;
  REQUIRE(std::regex_search(read.output, row, std::regex("row0 (\\S+) (\\S+)")));
  CHECK(std::stof(row[1].str()) == Approx(logits[0][0].item<float>()).epsilon(1e-6));
  CHECK(std::stof(row[2].str()) == Approx(logits[0][9].item<float>()).epsilon(1e-6));

  // Again into the same directory: replaced. Into a directory that is not a prediction: refused.
  auto again =
      kd::test::RunCommand(Kdhost() + " predict " + best + " --quiet --out " + out.string());
  CHECK(again.exit_code == 0);
  kd::test::WriteText(dir / "mine" / "notes.txt", "keep me");
  auto refused = kd::test::RunCommand(Kdhost() + " predict " + best + " --quiet --out " +
                                      (dir / "mine").string());
  CHECK(refused.exit_code != 0);
  CHECK_THAT(refused.output, Contains("exists and is not a kdhost predict directory"));
  CHECK(*kd::host::ReadFile(dir / "mine" / "notes.txt") == "keep me");
  auto unknown = kd::test::RunCommand(Kdhost() + " predict " + best + " --quiet --outputs scores" +
                                      " --out " + (dir / "unknown").string());
  CHECK(unknown.exit_code != 0);
  CHECK_THAT(unknown.output,
             Contains("--outputs: the model has no output 'scores' (it has: logits"));
  CHECK_FALSE(fs::exists(dir / "unknown"));
  CHECK_FALSE(fs::exists(dir / "unknown.partial"));
}

TEST_CASE(
    "a ResNet and a MobileNetV2 export load into torchvision with strict=True and give "
    "kdhost predict's logits, traced with torch.jit.trace too") {
  const fs::path dir = kd::test::ScratchDir("to_torchvision");
  const std::string reduced =
      " --set data.train.num_samples=128 --set data.val.num_samples=16 --set loader.batch_size=16"
      " --set train.max_epochs=0 --set train.max_iters=4 --set stages.teacher.train.max_epochs=0"
      " --quiet --set 'plugins=[\"fmnist_tasks\", \"transforms\", \"resnet\", \"mlic_heads\", "
      "\"distillers\", \"mobilenet\"]' --set run.work_dir=" +
      (dir / "runs").string();
  const std::string quickstart =
      (kd::test::SourceDir() / "configs" / "quickstart" / "kd_multilabel.toml").string();
  // The quickstart's teacher (a ResNet-18 on 1-channel images), and its student with a
  // MobileNetV2 (width 0.5, torchvision's last 1x1 convolution) for the backbone.
  auto teacher =
      kd::test::RunCommand(Kdhost() + " train " + quickstart + " --stage teacher" + reduced);
  INFO(teacher.output);
  REQUIRE(teacher.exit_code == 0);
  auto student = kd::test::RunCommand(
      Kdhost() + " train " + quickstart + " --stage student" + reduced +
      " --set 'stages.student.model.backbone={type=\"mobilenet::MobileNetV2\", in_channels=1, "
      "last_conv=true, width_mult=0.5}'");
  INFO(student.output);
  REQUIRE(student.exit_code == 0);
  const std::string tool = (kd::test::SourceDir() / "tools" / "to_torchvision.py").string();
  for (const std::string stage : {"teacher", "student"}) {
    INFO(stage);
    const fs::path best = kd::test::StageDir(dir / "runs", stage) / "export" / "best.pt";
    const fs::path pred = dir / ("pred_" + stage);
    auto predicted = kd::test::RunCommand(Kdhost() + " predict " + best.string() +
                                          " --inputs image --quiet --out " + pred.string());
    INFO(predicted.output);
    REQUIRE(predicted.exit_code == 0);
    auto checked = kd::test::RunCommand(kd::test::PythonPath() + " " + tool + " " + best.string() +
                                        " --check " + pred.string() + " --trace " +
                                        (dir / (stage + ".ts")).string());
    INFO(checked.output);
    CHECK(checked.exit_code == 0);
    CHECK(std::regex_search(checked.output,
                            std::regex("torchvision model: 16 samples, max relative \\|logits - "
                                       "kdhost predict\\| = [0-9.e-]+\\n")));
    CHECK_THAT(checked.output, Contains("traced model (") && Contains("matches kdhost predict"));
    CHECK(fs::exists(dir / (stage + ".ts")));
  }
  // A backbone torchvision does not have: refused, naming it.
  auto cnn = kd::test::RunCommand(Kdhost() + " train " + quickstart + " --stage student" + reduced +
                                  " --set run.work_dir=" + (dir / "cnn").string());
  REQUIRE(cnn.exit_code == 0);
  auto refused = kd::test::RunCommand(
      kd::test::PythonPath() + " " + tool + " " +
      (kd::test::StageDir(dir / "cnn", "student") / "export" / "best.pt").string());
  CHECK(refused.exit_code == 2);
  CHECK_THAT(refused.output, Contains("to_torchvision: the backbone is 'resnet::SmallCNN'; "
                                      "supported: resnet::ResNet, mobilenet::MobileNetV2"));
}
