// The config language: inheritance, merging, interpolation, overrides, validation and stages.
#include <catch2/catch.hpp>

#include <cstdlib>

#include "host/config.h"
#include "host/pipeline.h"
#include "host/root_schema.h"
#include "host/validate.h"
#include "test_components.h"
#include "test_support.h"

using Catch::Matchers::Contains;
using kd::host::CNode;

namespace {

CNode Parse(const std::string& text, const std::string& name = "test.toml") {
  return kd::ValueOrThrow(kd::host::ParseToml(text, name));
}

std::string ErrorOf(const absl::Status& status) {
  REQUIRE_FALSE(status.ok());
  return std::string(status.message());
}

// A host with the testing:: components, shared by the validation tests.
kd::host::Host& TestHost() {
  static kd::host::Host* host = [] {
    auto* h = new kd::host::Host();
    kd::test::RegisterTestComponents(h->registry());
    return h;
  }();
  return *host;
}

const char* kMinimalStage = R"(
[data.train]
type = "testing::Synthetic"
[model]
type = "testing::Mlp"
[loss]
type = "Bce"
[train]
max_epochs = 1
optimizer = { type = "SGD", lr = 1 }
)";

}  // namespace

TEST_CASE("a TOML syntax error reports file, line and column") {
  auto result = kd::host::ParseToml("a = 1\nb = [1, 2\n", "bad.toml");
  REQUIRE_THAT(ErrorOf(result.status()), Contains("bad.toml:2:") && Contains("TOML syntax error"));
}

TEST_CASE("configs print as TOML that reads back to the same values, floats exactly") {
  CNode root = Parse(R"(
title = "quote \" and\nnewline"
"odd key" = 1
ratio = 0.85
tiny = 1e-7
third = 0.3333333333333333
big = 123456789012
flags = [true, false]
nested = [[1, 2], ["a"]]
empty = {}
[model]
type = "core::BackboneHead"
backbone = { type = "resnet::ResNet", depth = 18 }
[[metrics]]
type = "A"
[[metrics]]
type = "B"
options = { k = 0.1 }
[stages.student]
)");
  const std::string text = kd::host::ToToml(root);
  REQUIRE_THAT(text, Contains("ratio = 0.85\n") && Contains("tiny = 1e-07\n") &&
                         Contains("\"odd key\" = 1\n") && Contains("[[metrics]]\n") &&
                         Contains("[stages.student]\n"));
  CNode again = Parse(text, "again.toml");
  REQUIRE(kd::host::ToToml(again) == text);
  REQUIRE(kd::host::FindPath(again, "third")->as_float() == 1.0 / 3.0);
  REQUIRE(kd::host::FindPath(again, "title")->as_string() == "quote \" and\nnewline");
  REQUIRE(kd::host::FindPath(again, "metrics")->array().size() == 2);
  REQUIRE(kd::host::FindPath(again, "stages.student")->table().empty());
}

TEST_CASE("every node keeps its source position through copies and merges") {
  CNode base = Parse("[model]\ndepth = 18\n", "base.toml");
  CNode overlay = Parse("[model]\nwidth = 2\n", "child.toml");
  kd::host::MergeInto(base, overlay);
  CNode copy = base;
  REQUIRE(kd::host::FindPath(copy, "model.depth")->loc().ToString() == "base.toml:2:9");
  REQUIRE(kd::host::FindPath(copy, "model.width")->loc().ToString() == "child.toml:2:9");
}

TEST_CASE("deep merge combines tables and the overlay wins on scalars and arrays") {
  CNode base = Parse("[a]\nx = 1\ny = [1, 2]\n[a.b]\nz = 3\n");
  kd::host::MergeInto(base, Parse("[a]\ny = [9]\n[a.b]\nw = 4\n"));
  REQUIRE(kd::host::FindPath(base, "a.x")->as_int() == 1);
  REQUIRE(kd::host::FindPath(base, "a.y")->array().size() == 1);
  REQUIRE(kd::host::FindPath(base, "a.b.z")->as_int() == 3);
  REQUIRE(kd::host::FindPath(base, "a.b.w")->as_int() == 4);
}

TEST_CASE("_replace = true replaces a table instead of merging it") {
  CNode base = Parse("[a]\nx = 1\ny = 2\n");
  CNode overlay = Parse("[a]\n_replace = true\nz = 3\n");
  kd::host::MergeInto(base, overlay);
  REQUIRE(kd::host::FindPath(base, "a.x") == nullptr);
  REQUIRE(kd::host::FindPath(base, "a.z")->as_int() == 3);
  REQUIRE(kd::host::FindPath(base, "a._replace") == nullptr);
}

TEST_CASE("a component table whose type changes is replaced, not merged") {
  CNode base = Parse("[model]\ntype = \"A\"\nonly_a = 1\n");
  kd::host::MergeInto(base, Parse("[model]\ntype = \"B\"\nonly_b = 2\n"));
  REQUIRE(kd::host::FindPath(base, "model.only_a") == nullptr);
  REQUIRE(kd::host::FindPath(base, "model.only_b")->as_int() == 2);
}

TEST_CASE("base files are merged in order, relative to the file naming them, recursively") {
  const auto dir = kd::test::ScratchDir("config_base");
  kd::test::WriteText(dir / "_base_" / "a.toml", "[run]\nseed = 1\ndevice = \"cpu\"\n");
  kd::test::WriteText(dir / "_base_" / "b.toml", "base = [\"a.toml\"]\n[run]\nseed = 2\n");
  kd::test::WriteText(dir / "exp" / "main.toml",
                      "base = [\"../_base_/b.toml\"]\n[run]\nthreads = 3\n");
  CNode root = kd::ValueOrThrow(kd::host::LoadConfig(dir / "exp" / "main.toml"));
  REQUIRE(kd::host::FindPath(root, "run.seed")->as_int() == 2);
  REQUIRE(kd::host::FindPath(root, "run.device")->as_string() == "cpu");
  REQUIRE(kd::host::FindPath(root, "run.threads")->as_int() == 3);
  REQUIRE(root.Get("base") == nullptr);
}

TEST_CASE("a missing base file and an inheritance cycle are errors") {
  const auto dir = kd::test::ScratchDir("config_base_errors");
  kd::test::WriteText(dir / "missing.toml", "base = [\"nope.toml\"]\n");
  REQUIRE_THAT(ErrorOf(kd::host::LoadConfig(dir / "missing.toml").status()),
               Contains("missing.toml:1:9") && Contains("no such file 'nope.toml'"));
  kd::test::WriteText(dir / "x.toml", "base = \"y.toml\"\n");
  kd::test::WriteText(dir / "y.toml", "base = \"x.toml\"\n");
  REQUIRE_THAT(ErrorOf(kd::host::LoadConfig(dir / "x.toml").status()),
               Contains("inheritance cycle"));
}

TEST_CASE("${key.path} interpolation keeps types and splices into strings") {
  CNode root = Parse(R"(
[model]
classes = 10
[head]
num_classes = "${model.classes}"
name = "head-${model.classes}-x"
literal = "$${not.a.ref}"
)");
  REQUIRE(kd::host::Interpolate(root).ok());
  REQUIRE(kd::host::FindPath(root, "head.num_classes")->as_int() == 10);
  REQUIRE(kd::host::FindPath(root, "head.name")->as_string() == "head-10-x");
  REQUIRE(kd::host::FindPath(root, "head.literal")->as_string() == "${not.a.ref}");
}

TEST_CASE("${env:VAR} reads the environment, with a fallback, and a missing one is an error") {
  setenv("KD_TEST_ENV_VALUE", "from-env", 1);
  unsetenv("KD_TEST_ENV_UNSET");
  CNode root =
      Parse("a = \"${env:KD_TEST_ENV_VALUE}\"\nb = \"${env:KD_TEST_ENV_UNSET:-fallback}\"\n");
  REQUIRE(kd::host::Interpolate(root).ok());
  REQUIRE(root.Get("a")->as_string() == "from-env");
  REQUIRE(root.Get("b")->as_string() == "fallback");
  CNode bad = Parse("x = 1\nc = \"${env:KD_TEST_ENV_UNSET}\"\n", "env.toml");
  REQUIRE_THAT(ErrorOf(kd::host::Interpolate(bad)),
               Contains("env.toml:2:5: c: environment variable KD_TEST_ENV_UNSET is not set"));
}

TEST_CASE("interpolation errors: unknown key and cycles") {
  CNode unknown = Parse("a = \"${no.such.key}\"\n", "i.toml");
  REQUIRE_THAT(ErrorOf(kd::host::Interpolate(unknown)),
               Contains("i.toml:1:5: a: ${no.such.key} refers to a key that does not exist"));
  CNode cycle = Parse("a = \"${b}\"\nb = \"${a}\"\n", "c.toml");
  REQUIRE_THAT(ErrorOf(kd::host::Interpolate(cycle)), Contains("interpolation cycle"));
}

TEST_CASE("overrides given with --set parse TOML values, create tables and fall back to strings") {
  CNode root = Parse("[train]\nmax_epochs = 5\n");
  REQUIRE(kd::host::ApplyOverride(root, "train.max_epochs=2").ok());
  REQUIRE(kd::host::ApplyOverride(root, "train.optimizer={type=\"SGD\", lr=0.1}").ok());
  REQUIRE(kd::host::ApplyOverride(root, "run.work_dir=runs/x").ok());
  REQUIRE(kd::host::ApplyOverride(root, "loader.shuffle=false").ok());
  REQUIRE(kd::host::FindPath(root, "train.max_epochs")->as_int() == 2);
  REQUIRE(kd::host::FindPath(root, "train.optimizer.lr")->as_float() == Approx(0.1));
  REQUIRE(kd::host::FindPath(root, "run.work_dir")->as_string() == "runs/x");
  REQUIRE(kd::host::FindPath(root, "loader.shuffle")->as_bool() == false);
  REQUIRE(kd::host::FindPath(root, "train.max_epochs")->loc().ToString() ==
          "--set train.max_epochs=2");
  REQUIRE_THAT(ErrorOf(kd::host::ApplyOverride(root, "no-equals-sign")),
               Contains("key.path=value"));
  REQUIRE_THAT(ErrorOf(kd::host::ApplyOverride(root, "train.max_epochs.x=1")),
               Contains("'train.max_epochs' is a int, not a table"));
}

TEST_CASE("validation fills defaults, widens ints to floats and qualifies component types") {
  CNode root = Parse(kMinimalStage);
  REQUIRE(kd::host::ValidateTable(root, kd::host::StageSchema(), TestHost().registry(), "", "cfg")
              .ok());
  REQUIRE(kd::host::FindPath(root, "loss.type")->as_string() == "testing::Bce");
  REQUIRE(kd::host::FindPath(root, "train.optimizer.type")->as_string() == "core::SGD");
  REQUIRE(kd::host::FindPath(root, "train.optimizer.lr")->type() == CNode::Type::kFloat);
  REQUIRE(kd::host::FindPath(root, "train.optimizer.momentum")->as_float() == Approx(0.9));
  REQUIRE(kd::host::FindPath(root, "loader.batch_size")->as_int() == 32);
  REQUIRE(kd::host::FindPath(root, "model.hidden")->as_int() == 16);
}

TEST_CASE("validation errors point at file:line:column and the key path") {
  auto check = [](const std::string& patch, const std::string& expected) {
    CNode root = Parse(kMinimalStage, "stage.toml");
    kd::host::MergeInto(root, Parse(patch, "patch.toml"));
    absl::Status status =
        kd::host::ValidateTable(root, kd::host::StageSchema(), TestHost().registry(), "", "cfg");
    INFO(patch);
    REQUIRE_THAT(ErrorOf(status), Contains(expected));
  };
  check("[model]\nhiden = 3\n",
        "patch.toml:2:9: model.hiden: unknown option for testing::Mlp; known: in_dim, hidden, "
        "out_dim, dropout, oom_at_call; did you mean hidden?");
  check("[model]\nhidden = \"16\"\n",
        "patch.toml:2:10: model.hidden: expected int, got string \"16\"");
  check(
      "[model]\ntype = \"Mpl\"\n",
      "patch.toml:2:8: model.type: 'Mpl' is not in the model registry; known: core::BackboneHead, "
      "testing::Mlp, testing::Scalar; did you mean testing::Mlp?");
  check("[loader]\nbatch_size = 0\n", "patch.toml:2:14: loader.batch_size: must be >= 1, got 0");
  check("[train]\namp = \"fp8\"\n", "train.amp: 'fp8' is not one of off, bf16, fp16");
  check("[bogus]\nx = 1\n", "patch.toml:1:1: bogus: unknown option for cfg");
  // A key of a component inside the table is pointed to it.
  check("[train]\nlr = 0.1\n",
        "patch.toml:2:6: train.lr: unknown option for train; known: max_epochs,");
  check("[train]\nlr = 0.1\n", "log_interval; did you mean train.optimizer.lr?");
  // A key that lives in another table of the config is pointed there, at any depth.
  check("[run]\nmax_epochs = 3\n",
        "patch.toml:2:14: run.max_epochs: unknown option for run; known: ");
  check("[run]\nmax_epochs = 3\n", "; did you mean train.max_epochs?");
  check("[loader]\nmomentum = 0.5\n", "; did you mean train.optimizer.momentum?");
  check("[data.train]\n_replace = true\nnum_samples = 3\n",
        "data.train: a dataset table needs `type = \"<name>\"`");
}

TEST_CASE("a missing required option names the option, its type and its owner") {
  CNode root = Parse(
      std::string("artifacts = [{ producer = { type = \"testing::Halves\" } }]\n") + kMinimalStage,
      "stage.toml");
  REQUIRE_THAT(ErrorOf(kd::host::ValidateTable(root, kd::host::StageSchema(), TestHost().registry(),
                                               "", "cfg")),
               Contains("stage.toml:1:14: artifacts[0]: missing required option 'name' (string) of "
                        "artifacts: name of the artefact"));
}

TEST_CASE("stages are the config with their table merged on top, each validated and hashed") {
  const auto dir = kd::test::ScratchDir("config_stages");
  kd::test::WriteText(dir / "p.toml",
                      "pipeline = [\"teacher\", \"student\"]\n" + std::string(kMinimalStage) + R"(
[run]
work_dir = "somewhere"
[stages.teacher.model]
hidden = 32
[stages.student.distiller]
type = "testing::Mimic"
teacher = { from_stage = "teacher" }
)");
  auto config = kd::host::ResolveConfig(TestHost(), dir / "p.toml", {}, {});
  REQUIRE(config.ok());
  REQUIRE(config->stages.size() == 2);
  const auto& teacher = config->stages[0];
  const auto& student = config->stages[1];
  REQUIRE(kd::host::FindPath(*teacher.config, "model.hidden")->as_int() == 32);
  REQUIRE(kd::host::FindPath(*student.config, "model.hidden")->as_int() == 16);
  REQUIRE(student.deps == std::vector<std::string>{"teacher"});
  REQUIRE(teacher.hash != student.hash);
  REQUIRE(teacher.dir ==
          std::filesystem::path("somewhere") / ("teacher-" + teacher.hash.substr(0, 12)));

  // Hash-neutral settings leave the hashes alone; a real change moves the stage and its dependants.
  auto neutral = kd::host::ResolveConfig(TestHost(), dir / "p.toml",
                                         {"loader.workers=0", "run.work_dir=elsewhere"}, {});
  REQUIRE(neutral.ok());
  REQUIRE(neutral->stages[0].hash == teacher.hash);
  REQUIRE(neutral->stages[1].hash == student.hash);
  auto changed =
      kd::host::ResolveConfig(TestHost(), dir / "p.toml", {"stages.teacher.model.hidden=8"}, {});
  REQUIRE(changed.ok());
  REQUIRE(changed->stages[0].hash != teacher.hash);
  REQUIRE(changed->stages[1].hash != student.hash);
  auto student_only = kd::host::ResolveConfig(TestHost(), dir / "p.toml",
                                              {"stages.student.distiller.weight=2"}, {});
  REQUIRE(student_only.ok());
  REQUIRE(student_only->stages[0].hash == teacher.hash);
  REQUIRE(student_only->stages[1].hash != student.hash);
}

TEST_CASE("pipeline mistakes are reported with their location") {
  const auto dir = kd::test::ScratchDir("config_pipeline_errors");
  // `top` goes before the first table header, `tables` after the minimal stage.
  auto error_for = [&](const std::string& top, const std::string& tables = "") {
    kd::test::WriteText(dir / "e.toml", top + kMinimalStage + tables);
    auto config = kd::host::ResolveConfig(TestHost(), dir / "e.toml", {}, {});
    return ErrorOf(config.status());
  };
  REQUIRE_THAT(error_for("pipeline = [\"a\"]\n"), Contains("stage 'a' has no [stages.a] table"));
  REQUIRE_THAT(error_for("pipeline = [\"a\"]\n", "[stages.a]\n[stages.b]\n"),
               Contains("stage 'b' is not listed in `pipeline`"));
  REQUIRE_THAT(error_for("", "[stages.a]\n"), Contains("stages are defined but `pipeline` is not"));
  REQUIRE_THAT(
      error_for("pipeline = [\"a\", \"b\"]\n",
                "[stages.a.distiller]\ntype = \"Mimic\"\nteacher = { from_stage = \"b\" }\n"
                "[stages.b]\n"),
      Contains("'b' is not an earlier stage of the pipeline (earlier: none)"));
  REQUIRE_THAT(error_for("pipeline = [\"a\"]\n", "[stages.a]\nplugins = [\"x\"]\n"),
               Contains("stages.a.plugins: cannot be set per stage"));
  REQUIRE_THAT(
      error_for("pipeline = [\"a\"]\n", "[stages.a.model]\nhidden = \"x\"\n"),
      Contains("stage 'a': ") && Contains("e.toml:") && Contains("model.hidden: expected int"));
}
