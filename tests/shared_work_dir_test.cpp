// Runs that share a work directory: two kdhost processes needing the same stage train it once
// (the second waits for the first's stage lock, then reuses the stage), --no-wait refuses with
// exit 75, a lock left by a killed process is taken over, and two ablations share their runs.
#include <catch2/catch.hpp>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <regex>
#include <set>
#include <thread>

#include "host/files.h"
#include "host/stage_lock.h"
#include "test_support.h"

namespace fs = std::filesystem;
using Catch::Matchers::Contains;

namespace {

// The quickstart's KD student (and its teacher), shrunk to 24 steps each.
std::string Args(const std::string& command, const fs::path& work_dir) {
  return " " + command + " " +
         (kd::test::SourceDir() / "configs" / "quickstart" / "kd_multilabel.toml").string() +
         " --set data.train.num_samples=256 --set data.val.num_samples=64"
         " --set loader.batch_size=16 --set train.max_epochs=0 --set train.max_iters=24"
         " --set stages.teacher.train.max_epochs=0 --set train.val_interval=8"
         " --set train.log_interval=1 --set run.work_dir=" +
         work_dir.string();
}

std::string Train(const fs::path& work_dir) {
  return kd::test::KdhostPath().string() + Args("train", work_dir) + " --stage student_kd";
}

int Wait(pid_t pid) {
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// Starts `command` twice at once (logs a.log and b.log in `dir`); both must exit 0. Returns the
// two logs.
std::pair<std::string, std::string> RunTwice(const std::string& command, const fs::path& dir) {
  const pid_t a = kd::test::Spawn(command, dir / "a.log", false);
  const pid_t b = kd::test::Spawn(command, dir / "b.log", false);
  const int code_a = Wait(a), code_b = Wait(b);
  std::pair<std::string, std::string> logs = {*kd::host::ReadFile(dir / "a.log"),
                                              *kd::host::ReadFile(dir / "b.log")};
  INFO("a:\n" << logs.first << "\nb:\n" << logs.second);
  REQUIRE(code_a == 0);
  REQUIRE(code_b == 0);
  return logs;
}

int Count(const std::string& text, const std::string& what) {
  int n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

// Waits (up to a minute) until `path` exists.
bool AwaitFile(const std::function<fs::path()>& path) {
  for (int i = 0; i < 6000; ++i) {
    std::error_code ec;
    const fs::path p = path();
    if (!p.empty() && fs::exists(p, ec)) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

// The steps of the training records of a metrics.jsonl.
std::vector<int> TrainSteps(const fs::path& metrics) {
  const std::string text = *kd::host::ReadFile(metrics);
  static const std::regex record("\"kind\": \"train\", \"step\": ([0-9]+)");
  std::vector<int> steps;
  for (std::sregex_iterator it(text.begin(), text.end(), record), end; it != end; ++it) {
    steps.push_back(std::stoi((*it)[1].str()));
  }
  return steps;
}

}  // namespace

TEST_CASE(
    "two kdhost train of one config in one work directory train each stage once, and the "
    "second waits for the first and reuses its stages") {
  const fs::path dir = kd::test::ScratchDir("shared_race");
  const auto [log_a, log_b] = RunTwice(Train(dir / "runs"), dir);
  INFO("a:\n" << log_a << "\nb:\n" << log_b);
  const std::string both = log_a + log_b;
  for (const std::string stage : {"teacher", "student_kd"}) {
    INFO(stage);
    CHECK(Count(both, "[" + stage + "] training in") == 1);
    CHECK(Count(both, "[" + stage + "] complete in") == 1);
    // Every step of the stage was logged by one process only: 24 records, steps 1..24.
    const std::vector<int> steps =
        TrainSteps(kd::test::StageDir(dir / "runs", stage) / "metrics.jsonl");
    REQUIRE(steps.size() == 24);
    for (int i = 0; i < 24; ++i) CHECK(steps[i] == i + 1);
    CHECK_FALSE(fs::exists(kd::test::StageDir(dir / "runs", stage) / "lock"));
  }
  // The second process said whom it waited for.
  REQUIRE(std::regex_search(both, std::regex("waiting: another process is training it: [^ ]+ pid "
                                             "[0-9]+, since [0-9T:-]+Z \\(lock [^)]*/lock\\)")));
}

TEST_CASE(
    "kdhost train --no-wait refuses a stage another process is training with exit 75, names the "
    "holder, and a later run reuses the stage") {
  const fs::path dir = kd::test::ScratchDir("shared_no_wait");
  const pid_t a = kd::test::Spawn(Train(dir / "runs"), dir / "a.log", false);
  REQUIRE(AwaitFile([&] {
    const fs::path stage = kd::test::StageDir(dir / "runs", "teacher");
    return stage.empty() ? stage : stage / "lock";
  }));
  auto refused = kd::test::RunCommand(Train(dir / "runs") + " --no-wait");
  INFO(refused.output);
  CHECK(refused.exit_code == 75);
  CHECK_THAT(refused.output, Contains("stage 'teacher' is being trained by another process: " +
                                      kd::host::HostName() + " pid " + std::to_string(a)) &&
                                 Contains("--no-wait does not wait for it"));
  REQUIRE(Wait(a) == 0);
  auto reused = kd::test::RunCommand(Train(dir / "runs") + " --no-wait");
  INFO(reused.output);
  REQUIRE(reused.exit_code == 0);
  CHECK(std::regex_search(reused.output, std::regex("\\nteacher +reused ")));
  CHECK(std::regex_search(reused.output, std::regex("\\nstudent_kd +reused ")));
}

TEST_CASE(
    "the lock of a process killed mid-stage is taken over at once on its host, and the "
    "stage resumes") {
  const fs::path dir = kd::test::ScratchDir("shared_stale");
  const std::string command = kd::test::KdhostPath().string() + Args("train", dir / "runs") +
                              " --stage student" + " --set train.checkpoint_interval=4";
  const pid_t a = kd::test::Spawn(command, dir / "a.log", false);
  // Killed once its first state is on disk.
  REQUIRE(AwaitFile([&] {
    const fs::path stage = kd::test::StageDir(dir / "runs", "student");
    return stage.empty() ? stage : stage / "state" / "train_state.pt";
  }));
  ::kill(a, SIGKILL);
  REQUIRE(Wait(a) == 128 + SIGKILL);
  const fs::path lock = kd::test::StageDir(dir / "runs", "student") / "lock";
  REQUIRE(fs::exists(lock));
  auto held = kd::host::ReadLockHolder(lock);
  REQUIRE(held.ok());
  CHECK(held->pid == a);

  auto resumed = kd::test::RunCommand(command);
  INFO(resumed.output);
  REQUIRE(resumed.exit_code == 0);
  CHECK_THAT(resumed.output,
             Contains("took over the stale lock " + lock.string() + " of " + kd::host::HostName() +
                      " pid " + std::to_string(a)) &&
                 Contains("process " + std::to_string(a) + " on this host is gone"));
  CHECK_THAT(resumed.output, Contains("resuming at step"));
  CHECK_FALSE(fs::exists(lock));
}

TEST_CASE(
    "two kdhost ablate launched at once share the runs: every stage is trained once and "
    "both processes train some") {
  const fs::path dir = kd::test::ScratchDir("shared_ablate");
  const std::string command = kd::test::KdhostPath().string() + Args("ablate", dir / "runs") +
                              " --grid distiller=KD,LogitMSE --seeds 2";
  const auto [log_a, log_b] = RunTwice(command, dir);
  INFO("a:\n" << log_a << "\nb:\n" << log_b);
  CHECK(Count(log_a + log_b, "[teacher] training in") == 1);
  // Four runs of the student, each trained by one of the two processes.
  CHECK(Count(log_a + log_b, "[student_kd] training in") == 4);
  CHECK(Count(log_a, "[student_kd] training in") >= 1);
  CHECK(Count(log_b, "[student_kd] training in") >= 1);
  CHECK_THAT(log_a + log_b, Contains("doing other runs first"));
  // Both wrote the whole table: four runs, all done.
  const std::string csv = *kd::host::ReadFile(dir / "runs" / "ablation" / "results.csv");
  INFO(csv);
  CHECK(Count(csv, ",done,") == 4);
}
