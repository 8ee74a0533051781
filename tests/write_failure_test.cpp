// Write failures: a full disk, an I/O error or a read-only filesystem while kdhost writes each
// kind of file (training state, model export, stage summary, metrics log, TensorBoard events),
// injected with the LD_PRELOAD shim of tests/support/write_fault.cpp. Each time kdhost stops
// with an error naming the file and the cause, every file written before is intact, and a rerun
// without the fault ends with the weights of a run that never failed.
#include <catch2/catch.hpp>

#include <unistd.h>
#include <cstring>

#include <regex>

#include "absl/strings/str_split.h"
#include "host/checkpoint.h"
#include "host/event_writer.h"
#include "host/files.h"
#include "test_support.h"

namespace fs = std::filesystem;
using Catch::Matchers::Contains;

namespace {

// The quickstart's student, 24 steps, a state every 4 and an evaluation every 3.
std::string TrainCommand(const fs::path& work_dir) {
  return kd::test::KdhostPath().string() + " train " +
         (kd::test::SourceDir() / "configs" / "quickstart" / "kd_multilabel.toml").string() +
         " --stage student --set data.train.num_samples=256 --set data.val.num_samples=64"
         " --set loader.batch_size=16 --set train.max_epochs=0 --set train.max_iters=24"
         " --set train.checkpoint_interval=4 --set train.val_interval=3"
         " --set train.log_interval=1 --quiet --set run.work_dir=" +
         work_dir.string();
}

struct Fault {
  std::string file;     // part of the path
  std::string error;    // ENOSPC, EIO, EROFS
  int skip = 0;         // opens that succeed first
  long long after = 0;  // bytes accepted before the writes fail
};

kd::test::CommandResult RunWithFault(const fs::path& work_dir, const Fault& fault) {
  return kd::test::RunCommand(
      "env LD_PRELOAD=" + std::string(KD_TEST_WRITE_FAULT) + " KD_FAULT_FILE=" + fault.file +
      " KD_FAULT_ERRNO=" + fault.error + " KD_FAULT_SKIP=" + std::to_string(fault.skip) +
      " KD_FAULT_AFTER=" + std::to_string(fault.after) + " " + TrainCommand(work_dir));
}

fs::path Stage(const fs::path& work_dir) { return kd::test::StageDir(work_dir, "student"); }

// The straight run every case is compared with (trained once per test process; ctest runs the
// cases as parallel processes, so each has its own directory).
const fs::path& Straight() {
  static const fs::path work = [] {
    const fs::path dir = kd::test::ScratchDir("write_fault_straight_" + std::to_string(getpid()));
    auto straight = kd::test::RunCommand(TrainCommand(dir));
    if (straight.exit_code != 0) throw std::runtime_error(straight.output);
    return dir;
  }();
  return work;
}

// Reruns without the fault and compares the final weights with the straight run's.
void RequireRecovers(const fs::path& work_dir) {
  auto rerun = kd::test::RunCommand(TrainCommand(work_dir));
  INFO(rerun.output);
  REQUIRE(rerun.exit_code == 0);
  auto a = kd::host::LoadModelExport(Stage(Straight()) / "export" / "last.pt");
  auto b = kd::host::LoadModelExport(Stage(work_dir) / "export" / "last.pt");
  REQUIRE(a.ok());
  REQUIRE(b.ok());
  REQUIRE(b->step == 24);
  for (const auto& [name, tensor] : a->state) {
    INFO(name);
    REQUIRE(torch::equal(tensor, b->state.at(name)));
  }
  REQUIRE(fs::exists(Stage(work_dir) / "summary.toml"));
}

const char* Cause(const std::string& error) {
  return error == "ENOSPC" ? "No space left on device"
         : error == "EIO"  ? "Input/output error"
                           : "Read-only file system";
}

// The failed run: exit 1, the fault injected, the message naming `file` and the cause.
void RequireFailed(const kd::test::CommandResult& result, const Fault& fault,
                   const std::string& file) {
  INFO(result.output);
  REQUIRE_THAT(result.output, Contains("write_fault: "));
  REQUIRE(result.exit_code == 1);
  REQUIRE(std::regex_search(result.output, std::regex("kdhost: error: [^\\n]*cannot write [^\\n]*" +
                                                      file + "[^\\n]*" + Cause(fault.error))));
}

}  // namespace

TEST_CASE("a training state write that fails on a full disk keeps the previous state") {
  const fs::path work = kd::test::ScratchDir("write_fault_state");
  const Fault fault{"train_state.pt", "ENOSPC", 1, 0};
  auto failed = RunWithFault(work, fault);
  RequireFailed(failed, fault, "state/train_state.pt");
  REQUIRE_THAT(failed.output, Contains("the previous file is unchanged"));
  auto state = kd::host::LoadTrainState(Stage(work) / "state" / "train_state.pt");
  REQUIRE(state.ok());
  CHECK(state->step == 4);
  RequireRecovers(work);
}

TEST_CASE("a model export write that fails with an I/O error keeps the previous export") {
  const fs::path work = kd::test::ScratchDir("write_fault_export");
  const Fault fault{"export/best.pt", "EIO", 1, 0};
  auto failed = RunWithFault(work, fault);
  RequireFailed(failed, fault, "export/best.pt");
  REQUIRE_THAT(failed.output, Contains("the previous file is unchanged"));
  auto best = kd::host::LoadModelExport(Stage(work) / "export" / "best.pt");
  REQUIRE(best.ok());
  CHECK(best->step == 3);
  RequireRecovers(work);
}

TEST_CASE("a stage summary on a read-only filesystem fails the stage and the rerun completes it") {
  const fs::path work = kd::test::ScratchDir("write_fault_summary");
  const Fault fault{"summary.toml", "EROFS", 0, 0};
  auto failed = RunWithFault(work, fault);
  RequireFailed(failed, fault, "summary.toml");
  REQUIRE_THAT(failed.output, Contains("nothing was written"));
  CHECK_FALSE(fs::exists(Stage(work) / "summary.toml"));
  auto last = kd::host::LoadModelExport(Stage(work) / "export" / "last.pt");
  REQUIRE(last.ok());
  CHECK(last->step == 24);
  RequireRecovers(work);
}

TEST_CASE("a metrics log that fills the disk mid-record is cut back to its last whole record") {
  const fs::path work = kd::test::ScratchDir("write_fault_metrics");
  const Fault fault{"metrics.jsonl", "ENOSPC", 0, 2500};
  auto failed = RunWithFault(work, fault);
  RequireFailed(failed, fault, "metrics.jsonl");
  REQUIRE_THAT(failed.output, Contains("the file keeps every earlier record"));
  const std::string log = *kd::host::ReadFile(Stage(work) / "metrics.jsonl");
  CHECK(log.size() <= 2500);
  REQUIRE(log.size() > 0);
  REQUIRE(log.back() == '\n');
  int lines = 0;
  for (absl::string_view line : absl::StrSplit(log, '\n', absl::SkipEmpty())) {
    INFO(line);
    CHECK(line.front() == '{');
    CHECK(line.back() == '}');
    ++lines;
  }
  CHECK(lines >= 5);
  RequireRecovers(work);
}

TEST_CASE("TensorBoard events that hit an I/O error mid-record keep whole, checksummed records") {
  const fs::path work = kd::test::ScratchDir("write_fault_events");
  const Fault fault{"events.out.tfevents", "EIO", 0, 1500};
  auto failed = RunWithFault(work, fault);
  RequireFailed(failed, fault, "events.out.tfevents");
  fs::path events;
  for (const auto& entry : fs::directory_iterator(Stage(work) / "tb")) events = entry.path();
  const std::string bytes = *kd::host::ReadFile(events);
  CHECK(bytes.size() <= 1500);
  // TFRecord framing: length (8), its masked CRC-32C (4), the data, its masked CRC-32C (4).
  size_t at = 0;
  int records = 0;
  while (at < bytes.size()) {
    REQUIRE(bytes.size() - at >= 16);
    uint64_t length = 0;
    uint32_t length_crc = 0, data_crc = 0;
    std::memcpy(&length, bytes.data() + at, 8);
    std::memcpy(&length_crc, bytes.data() + at + 8, 4);
    REQUIRE(length_crc == kd::host::MaskedCrc32c(bytes.data() + at, 8));
    REQUIRE(bytes.size() - at >= 16 + length);
    std::memcpy(&data_crc, bytes.data() + at + 12 + length, 4);
    REQUIRE(data_crc == kd::host::MaskedCrc32c(bytes.data() + at + 12, length));
    at += 16 + length;
    ++records;
  }
  CHECK(at == bytes.size());
  CHECK(records >= 10);
  RequireRecovers(work);
}
