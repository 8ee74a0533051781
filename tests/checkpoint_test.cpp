// Checkpoint files: round trips, key reports, damage detection and crash-safe writes.
#include <catch2/catch.hpp>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include <torch/torch.h>

#include "host/checkpoint.h"
#include "host/files.h"
#include "host/pickle_file.h"
#include "test_support.h"

using Catch::Matchers::Contains;
namespace fs = std::filesystem;

namespace {

struct Net : torch::nn::Module {
  Net(int64_t in, int64_t out) {
    fc = register_module("fc", torch::nn::Linear(in, out));
    bn = register_module("bn", torch::nn::BatchNorm1d(out));
  }
  torch::nn::Linear fc{nullptr};
  torch::nn::BatchNorm1d bn{nullptr};
};

}  // namespace

TEST_CASE("a model export round-trips weights, buffers, model config and metrics") {
  const fs::path path = kd::test::ScratchDir("ckpt_roundtrip") / "model.pt";
  torch::manual_seed(1);
  Net source(4, 3);
  kd::host::ModelExport data;
  data.model_config = "type = \"x::Y\"\n";
  data.state = kd::host::ModuleState(source);
  data.metrics = {{"mAP", 71.5}, {"CF1", 60.25}};
  data.stage = "teacher";
  data.step = 42;
  REQUIRE(kd::host::SaveModelExport(path, data).ok());
  auto loaded = kd::host::LoadModelExport(path);
  REQUIRE(loaded.ok());
  REQUIRE(loaded->model_config == data.model_config);
  REQUIRE(loaded->metrics.size() == 2);
  REQUIRE(loaded->metrics[1].name == "CF1");
  REQUIRE(loaded->metrics[1].value == 60.25);
  REQUIRE(loaded->step == 42);
  torch::manual_seed(2);
  Net target(4, 3);
  auto report =
      kd::host::LoadModuleState(target, loaded->state, kd::host::LoadMode::kStrict, path.string());
  REQUIRE(report.ok());
  REQUIRE(report->Summary().empty());
  REQUIRE(torch::equal(target.fc->weight, source.fc->weight));
  REQUIRE(torch::equal(target.bn->running_var, source.bn->running_var));
}

TEST_CASE("an export keeps the label spaces it was trained on, old exports' predicates included") {
  const fs::path dir = kd::test::ScratchDir("ckpt_vocabularies");
  Net source(2, 2);
  kd::host::ModelExport data;
  data.model_config = "type = \"x::Y\"\n";
  data.class_names = {"cup", "table"};
  data.vocabularies = {{"sgg.predicates", {"__background__", "on", "has"}}, {"other", {"a"}}};
  data.state = kd::host::ModuleState(source);
  REQUIRE(kd::host::SaveModelExport(dir / "new.pt", data).ok());
  auto loaded = kd::host::LoadModelExport(dir / "new.pt");
  REQUIRE(loaded.ok());
  CHECK(loaded->class_names == data.class_names);
  CHECK(loaded->vocabularies == data.vocabularies);
  // kd API 3 wrote the scene-graph predicates as "predicate_names" and had no "vocabularies".
  auto dict = kd::host::ReadPickleFile(dir / "new.pt", "kdhost.model_export.v1");
  REQUIRE(dict.ok());
  REQUIRE(dict->erase("vocabularies") == 1);
  (void)dict->erase("checksum");
  c10::List<std::string> names;
  for (const char* name : {"__background__", "on", "has"}) names.push_back(name);
  dict->insert("predicate_names", names);
  REQUIRE(kd::host::WritePickleFile(dir / "old.pt", *dict).ok());
  auto old = kd::host::LoadModelExport(dir / "old.pt");
  REQUIRE(old.ok());
  CHECK(old->vocabularies == std::map<std::string, std::vector<std::string>>{
                                 {"sgg.predicates", {"__background__", "on", "has"}}});
}

TEST_CASE("loading weights reports missing and unexpected keys, and refuses other shapes") {
  Net net(4, 3);
  kd::host::StateDict state = kd::host::ModuleState(net);
  state.erase("fc.bias");
  state.emplace("extra.weight", torch::zeros({1}));
  auto lenient = kd::host::LoadModuleState(net, state, kd::host::LoadMode::kLenient, "f.pt");
  REQUIRE(lenient.ok());
  REQUIRE(lenient->missing == std::vector<std::string>{"fc.bias"});
  REQUIRE(lenient->unexpected == std::vector<std::string>{"extra.weight"});
  auto strict = kd::host::LoadModuleState(net, state, kd::host::LoadMode::kStrict, "f.pt");
  REQUIRE_THAT(std::string(strict.status().message()),
               Contains("missing keys: fc.bias; unexpected keys: extra.weight"));
  Net wider(4, 5);
  auto shapes = kd::host::LoadModuleState(wider, kd::host::ModuleState(net),
                                          kd::host::LoadMode::kStrict, "f.pt");
  REQUIRE_THAT(std::string(shapes.status().message()),
               Contains("'bn.bias' has shape [3] in the file but [5] in the model"));
}

TEST_CASE("a damaged or foreign file is reported as such, not crashed on") {
  const fs::path dir = kd::test::ScratchDir("ckpt_damaged");
  kd::test::WriteText(dir / "garbage.pt", "definitely not a zip archive");
  auto garbage = kd::host::LoadModelExport(dir / "garbage.pt");
  REQUIRE(garbage.status().code() == absl::StatusCode::kDataLoss);
  REQUIRE_THAT(std::string(garbage.status().message()), Contains("not a readable checkpoint"));

  Net net(2, 2);
  kd::host::ModelExport data;
  data.state = kd::host::ModuleState(net);
  REQUIRE(kd::host::SaveModelExport(dir / "export.pt", data).ok());
  auto wrong_kind = kd::host::LoadTrainState(dir / "export.pt");
  REQUIRE_THAT(std::string(wrong_kind.status().message()),
               Contains("expected a kdhost.train_state.v1 file, found kdhost.model_export.v1"));

  auto bytes = *kd::host::ReadFile(dir / "export.pt");
  kd::test::WriteText(dir / "truncated.pt", bytes.substr(0, bytes.size() / 2));
  REQUIRE(kd::host::LoadModelExport(dir / "truncated.pt").status().code() ==
          absl::StatusCode::kDataLoss);
  REQUIRE_FALSE(kd::host::LoadModelExport(dir / "absent.pt").ok());
}

TEST_CASE("a flipped bit in a checkpoint is detected or harmless, never a silently wrong load") {
  const fs::path dir = kd::test::ScratchDir("ckpt_bitflip");
  kd::host::ModelExport data;
  data.model_config = "type = \"x::Y\"\n";
  // A weight whose bytes are easy to find in the file: 64 copies of 1234.5f (0x449A5000).
  data.state.emplace("w", torch::full({64}, 1234.5f));
  data.state.emplace("b", torch::arange(8, torch::kFloat));
  data.metrics = {{"mAP", 50.0}};
  REQUIRE(kd::host::SaveModelExport(dir / "good.pt", data).ok());
  const std::string bytes = *kd::host::ReadFile(dir / "good.pt");
  auto good = kd::host::LoadModelExport(dir / "good.pt");
  REQUIRE(good.ok());

  // A bit flipped in the weight's data: the stored value changes, so the load must fail.
  const std::string pattern("\x00\x50\x9a\x44\x00\x50\x9a\x44", 8);
  const size_t data_at = bytes.find(pattern);
  REQUIRE(data_at != std::string::npos);
  std::string flipped = bytes;
  flipped[data_at + 2] = static_cast<char>(flipped[data_at + 2] ^ 0x01);
  kd::test::WriteText(dir / "flipped.pt", flipped);
  auto bad = kd::host::LoadModelExport(dir / "flipped.pt");
  REQUIRE(bad.status().code() == absl::StatusCode::kDataLoss);
  INFO(bad.status().message());
  REQUIRE_THAT(std::string(bad.status().message()),
               Contains("flipped.pt: checksum mismatch") && Contains("Delete it"));

  // A bit flipped anywhere: either the load fails with an error, or what it reads is exactly
  // what was written (the byte was not content, e.g. a zip timestamp).
  int detected = 0, harmless = 0;
  for (size_t i = 0; i < bytes.size(); i += std::max<size_t>(1, bytes.size() / 400)) {
    std::string copy = bytes;
    copy[i] = static_cast<char>(copy[i] ^ (1 << (i % 8)));
    kd::test::WriteText(dir / "any.pt", copy);
    auto loaded = kd::host::LoadModelExport(dir / "any.pt");
    if (!loaded.ok()) {
      ++detected;
      continue;
    }
    ++harmless;
    INFO("byte " << i << " of " << bytes.size());
    REQUIRE(loaded->model_config == good->model_config);
    REQUIRE(loaded->state.size() == 2);
    REQUIRE(torch::equal(loaded->state.at("w"), good->state.at("w")));
    REQUIRE(torch::equal(loaded->state.at("b"), good->state.at("b")));
    REQUIRE(loaded->metrics.size() == 1);
    REQUIRE(loaded->metrics[0].value == 50.0);
  }
  REQUIRE(detected > 0);
  WARN("bit flips detected: " << detected << ", harmless: " << harmless);
}

TEST_CASE("a training state round-trips position, optimizer bytes, RNG and best list") {
  const fs::path path = kd::test::ScratchDir("ckpt_state") / "state.pt";
  kd::host::TrainState s;
  s.step = 10;
  s.epoch = 2;
  s.batch_in_epoch = 3;
  s.model = {{"w", torch::arange(4.0)}};
  s.optimizer = std::string("\x00\x01\x02 bytes", 9);
  s.cpu_rng = torch::arange(5, torch::kUInt8);
  s.config = "a = 1\n";
  s.best = {{0.9, 8, "b8.pt"}, {0.8, 4, "b4.pt"}};
  s.seconds = 1.5;
  REQUIRE(kd::host::SaveTrainState(path, s).ok());
  auto loaded = kd::host::LoadTrainState(path);
  REQUIRE(loaded.ok());
  REQUIRE(loaded->step == 10);
  REQUIRE(loaded->batch_in_epoch == 3);
  REQUIRE(loaded->optimizer == s.optimizer);
  REQUIRE(torch::equal(loaded->cpu_rng, s.cpu_rng));
  REQUIRE(loaded->best.size() == 2);
  REQUIRE(loaded->best[1].path == "b4.pt");
  REQUIRE_FALSE(loaded->cuda_rng.defined());
}

TEST_CASE("a checkpoint write killed midway leaves the previous checkpoint loadable") {
  const fs::path dir = kd::test::ScratchDir("ckpt_killed");
  const fs::path path = dir / "model.pt";
  kd::host::ModelExport first;
  first.state = {{"w", torch::full({4}, 1.0)}};
  first.stage = "first";
  REQUIRE(kd::host::SaveModelExport(path, first).ok());

  // A child rewrites the file over and over with a large state; kill it at several moments.
  int kills = 0;
  for (int delay_ms : {5, 20, 40, 80, 120}) {
    const pid_t child = fork();
    REQUIRE(child >= 0);
    if (child == 0) {
      kd::host::ModelExport big;
      big.state = {{"w", torch::full({4'000'000}, 2.0)}};
      big.stage = "second";
      for (;;) (void)kd::host::SaveModelExport(path, big);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
    kill(child, SIGKILL);
    int status = 0;
    waitpid(child, &status, 0);
    ++kills;
    auto loaded = kd::host::LoadModelExport(path);
    INFO("killed after " << delay_ms << " ms");
    REQUIRE(loaded.ok());
    REQUIRE((loaded->stage == "first" || loaded->stage == "second"));
    const double expected = loaded->stage == "first" ? 1.0 : 2.0;
    REQUIRE(loaded->state.at("w").eq(expected).all().item<bool>());
  }
  REQUIRE(kills == 5);
}

TEST_CASE("atomic writes replace the file in one step and leave no temporary behind") {
  const fs::path dir = kd::test::ScratchDir("atomic_write");
  REQUIRE(kd::host::WriteFileAtomic(dir / "sub" / "f.txt", "one").ok());
  REQUIRE(kd::host::WriteFileAtomic(dir / "sub" / "f.txt", "two").ok());
  REQUIRE(*kd::host::ReadFile(dir / "sub" / "f.txt") == "two");
  int files = 0;
  for (const auto& entry : fs::directory_iterator(dir / "sub")) files += entry.is_regular_file();
  REQUIRE(files == 1);
  REQUIRE(kd::host::StableHash("abc") == "e71fa2190541574b");
}
