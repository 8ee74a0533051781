// Crash safety: kdhost killed with SIGKILL at random points of a run, checkpoint writes included,
// resumes every time to exactly the weights of a run that was never interrupted.
#include <catch2/catch.hpp>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <optional>
#include <random>
#include <regex>
#include <thread>

#include "absl/strings/str_join.h"
#include "host/checkpoint.h"
#include "host/files.h"
#include "test_support.h"

namespace fs = std::filesystem;

namespace {

using Clock = std::chrono::steady_clock;

// The quickstart's student, shrunk to 24 steps with a progress line and a resumable state after
// every step and an evaluation (and exports of an improved model) every 3.
std::string TrainArgs(const fs::path& work_dir) {
  return " train " +
         (kd::test::SourceDir() / "configs" / "quickstart" / "kd_multilabel.toml").string() +
         " --stage student --set data.train.num_samples=256 --set data.val.num_samples=64"
         " --set loader.batch_size=16 --set train.max_epochs=0 --set train.max_iters=24"
         " --set train.checkpoint_interval=1 --set train.val_interval=3 --set train.log_interval=1"
         " --set run.work_dir=" +
         work_dir.string();
}

// The one stage directory under `work_dir` (empty until the run creates it).
fs::path StageDir(const fs::path& work_dir) { return kd::test::StageDir(work_dir, "student"); }

bool HasTemporary(const fs::path& dir) {
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    if (it->path().filename().string().find(".tmp-") != std::string::npos) return true;
  }
  return false;
}

// The last "step N/24" progress line in `log` after byte `from`; 0 if none.
int64_t LastStep(const fs::path& log, size_t from) {
  auto text = kd::host::ReadFile(log);
  if (!text.ok() || text->size() <= from) return 0;
  static const std::regex step(" step ([0-9]+)/24 ");
  int64_t last = 0;
  const std::string tail = text->substr(from);
  for (std::sregex_iterator it(tail.begin(), tail.end(), step), end; it != end; ++it) {
    last = std::stoll((*it)[1].str());
  }
  return last;
}

enum class KillAt { kTime, kStateWrite, kExportWrite };

struct Attempt {
  bool killed = false;
  int exit_code = -1;
};

// Starts `command` (through `exec`, so the child is kdhost itself) with its output appended to
// `log`, and kills it with SIGKILL once it has logged step `after_step` or a later one: `delay`
// later (kTime), or while it writes a resumable state (kStateWrite) or a model export
// (kExportWrite, in checkpoints/ or export/).
Attempt RunAndKill(const std::string& command, const fs::path& log, const fs::path& work_dir,
                   KillAt when, int64_t after_step, std::chrono::milliseconds delay) {
  std::error_code ec;
  const size_t log_start = fs::exists(log, ec) ? fs::file_size(log, ec) : 0;
  const pid_t pid = kd::test::Spawn(command, log, /*append=*/true);
  Attempt attempt;
  std::optional<Clock::time_point> reached;
  while (true) {
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid) {
      attempt.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      return attempt;
    }
    if (!reached && LastStep(log, log_start) >= after_step) reached = Clock::now();
    bool fire = false;
    if (reached) {
      const fs::path stage = StageDir(work_dir);
      switch (when) {
        case KillAt::kTime:
          fire = Clock::now() - *reached >= delay;
          break;
        case KillAt::kStateWrite:
          fire = HasTemporary(stage / "state");
          break;
        case KillAt::kExportWrite:
          fire = HasTemporary(stage / "checkpoints") || HasTemporary(stage / "export");
          break;
      }
    }
    if (fire) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      attempt.killed = WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
      attempt.exit_code = attempt.killed ? 128 + SIGKILL : WEXITSTATUS(status);
      return attempt;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

}  // namespace

TEST_CASE(
    "kdhost killed with SIGKILL at 12 points, mid-write included, resumes to the same weights") {
  const fs::path dir = kd::test::ScratchDir("crash_sigkill");
  const std::string kdhost = kd::test::KdhostPath().string();

  auto straight = kd::test::RunCommand(kdhost + TrainArgs(dir / "straight"));
  INFO(straight.output);
  REQUIRE(straight.exit_code == 0);

  // Every atomic write of the killed runs pauses 150 ms halfway, so that a kill can land in it.
  const std::string killed_command =
      "env KD_DEBUG_WRITE_DELAY_MS=150 " + kdhost + TrainArgs(dir / "killed");
  const fs::path log = dir / "killed.log";
  // 12 kill points: random steps in increasing order, each with a way to die.
  std::mt19937 rng(2024);
  std::uniform_int_distribution<int64_t> step(1, 23);
  std::uniform_int_distribution<int> delay_ms(0, 200);
  std::vector<int64_t> points;
  for (int i = 0; i < 12; ++i) points.push_back(step(rng));
  std::sort(points.begin(), points.end());
  const KillAt ways[] = {KillAt::kTime, KillAt::kStateWrite, KillAt::kExportWrite};
  int kills = 0, in_writes = 0;
  bool finished = false;
  for (size_t i = 0; i < points.size(); ++i) {
    const KillAt when = ways[i % 3];
    const Attempt result = RunAndKill(killed_command, log, dir / "killed", when, points[i],
                                      std::chrono::milliseconds(delay_ms(rng)));
    if (!result.killed) {
      INFO(*kd::host::ReadFile(log));
      REQUIRE(result.exit_code == 0);
      finished = true;
      break;
    }
    ++kills;
    if (when != KillAt::kTime) ++in_writes;
    // Whatever the kill interrupted, what is on disk loads.
    const fs::path stage = StageDir(dir / "killed");
    INFO("after kill " << kills << " at step " << points[i]);
    if (!stage.empty() && fs::exists(stage / "state" / "train_state.pt")) {
      REQUIRE(kd::host::LoadTrainState(stage / "state" / "train_state.pt").ok());
    }
    if (!stage.empty() && fs::exists(stage / "export" / "best.pt")) {
      REQUIRE(kd::host::LoadModelExport(stage / "export" / "best.pt").ok());
    }
  }
  REQUIRE(kills >= 10);
  REQUIRE(in_writes >= 6);
  if (!finished) {
    auto resumed = kd::test::RunCommand(kdhost + TrainArgs(dir / "killed"));
    INFO(resumed.output);
    REQUIRE(resumed.exit_code == 0);
    REQUIRE(std::regex_search(resumed.output, std::regex("\\nstudent +trained +24 ")));
  }

  const fs::path a = StageDir(dir / "straight"), b = StageDir(dir / "killed");
  auto straight_export = kd::host::LoadModelExport(a / "export" / "last.pt");
  auto killed_export = kd::host::LoadModelExport(b / "export" / "last.pt");
  REQUIRE(straight_export.ok());
  REQUIRE(killed_export.ok());
  REQUIRE(straight_export->step == 24);
  REQUIRE(killed_export->step == 24);
  REQUIRE(straight_export->state.size() == killed_export->state.size());
  for (const auto& [name, tensor] : straight_export->state) {
    INFO(name);
    REQUIRE(torch::equal(tensor, killed_export->state.at(name)));
  }
  REQUIRE(straight_export->metrics.front().value == killed_export->metrics.front().value);
  // No temporaries of the killed writers are left behind.
  REQUIRE_FALSE(HasTemporary(b / "state"));
  REQUIRE_FALSE(HasTemporary(b / "export"));
  REQUIRE_FALSE(HasTemporary(b));
  WARN("kills: " << kills << " (" << in_writes << " during checkpoint or export writes)");
}

namespace {

// Starts `command` and sends it SIGTERM once its log shows step `after_step`; returns the exit
// status and, with `second_when_writing`, sends a second SIGTERM as soon as the state write that
// the first one started is under way.
struct Stopped {
  bool exited = false;  // ended through exit() (not by a signal)
  int code = -1;        // exit status, or the signal that ended it
};

Stopped RunAndTerminate(const std::string& command, const fs::path& log, const fs::path& work_dir,
                        int64_t after_step, bool second_when_writing) {
  const pid_t pid = kd::test::Spawn(command, log, /*append=*/false);
  bool sent = false, sent_second = false;
  while (true) {
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid) {
      Stopped s;
      s.exited = WIFEXITED(status);
      s.code = s.exited ? WEXITSTATUS(status) : WTERMSIG(status);
      return s;
    }
    if (!sent && LastStep(log, 0) >= after_step) {
      ::kill(pid, SIGTERM);
      sent = true;
    } else if (sent && second_when_writing && !sent_second &&
               HasTemporary(StageDir(work_dir) / "state")) {
      ::kill(pid, SIGTERM);
      sent_second = true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

void RequireSameExport(const fs::path& a, const fs::path& b) {
  auto x = kd::host::LoadModelExport(a);
  auto y = kd::host::LoadModelExport(b);
  REQUIRE(x.ok());
  REQUIRE(y.ok());
  REQUIRE(x->step == y->step);
  REQUIRE(x->state.size() == y->state.size());
  for (const auto& [name, tensor] : x->state) {
    INFO(name);
    REQUIRE(torch::equal(tensor, y->state.at(name)));
  }
}

}  // namespace

TEST_CASE(
    "SIGTERM at seeded steps ends the step, writes the state and exits 143, and the reruns end as "
    "if never stopped") {
  const fs::path dir = kd::test::ScratchDir("crash_sigterm");
  const std::string kdhost = kd::test::KdhostPath().string();
  // No periodic state: what the rerun resumes from is the state the signal wrote.
  const std::string no_checkpoints = " --set train.checkpoint_interval=1000";
  auto straight = kd::test::RunCommand(kdhost + TrainArgs(dir / "straight") + no_checkpoints);
  INFO(straight.output);
  REQUIRE(straight.exit_code == 0);

  const std::string command = kdhost + TrainArgs(dir / "stopped") + no_checkpoints;
  // SIGTERM at 6 seeded steps, each stop resumed by the next run.
  std::mt19937 rng(7);
  std::uniform_int_distribution<int64_t> draw(2, 22);
  std::vector<int64_t> points;
  for (int i = 0; i < 6; ++i) points.push_back(draw(rng));
  std::sort(points.begin(), points.end());
  int64_t step = 0;
  std::vector<int64_t> stops;
  for (int64_t point : points) {
    if (point <= step) point = step + 1;
    if (point >= 24) break;
    const Stopped stopped =
        RunAndTerminate(command, dir / "stopped.log", dir / "stopped", point, false);
    const std::string log = *kd::host::ReadFile(dir / "stopped.log");
    INFO("signal at step " << point << "\n" << log);
    REQUIRE(stopped.exited);
    REQUIRE(stopped.code == 143);
    std::smatch at;
    REQUIRE(std::regex_search(log, at, std::regex("stopped by SIGTERM at step ([0-9]+)/24")));
    REQUIRE_THAT(log, Catch::Contains("stopped by SIGTERM; exit status 143; to resume, run the "
                                      "same command again:\n  " +
                                      command + "\n"));
    if (step > 0) REQUIRE_THAT(log, Catch::Contains("resuming at step " + std::to_string(step)));
    step = std::stoll(at[1].str());
    CHECK(step >= point);
    CHECK(step < 24);
    auto state = kd::host::LoadTrainState(StageDir(dir / "stopped") / "state" / "train_state.pt");
    REQUIRE(state.ok());
    CHECK(state->step == step);
    stops.push_back(step);
  }
  REQUIRE(stops.size() >= 4);
  WARN("stopped by SIGTERM at steps " << absl::StrJoin(stops, ", "));

  auto resumed = kd::test::RunCommand(command);
  INFO(resumed.output);
  REQUIRE(resumed.exit_code == 0);
  REQUIRE_THAT(resumed.output, Catch::Contains("resuming at step " + std::to_string(step) + "/24"));
  RequireSameExport(StageDir(dir / "straight") / "export" / "last.pt",
                    StageDir(dir / "stopped") / "export" / "last.pt");
}

TEST_CASE(
    "a second SIGTERM during the state write ends kdhost at once and keeps the previous state") {
  const fs::path dir = kd::test::ScratchDir("crash_sigterm_twice");
  const std::string kdhost = kd::test::KdhostPath().string();
  const std::string every_4 = " --set train.checkpoint_interval=4";
  auto straight = kd::test::RunCommand(kdhost + TrainArgs(dir / "straight") + every_4);
  INFO(straight.output);
  REQUIRE(straight.exit_code == 0);

  // Every atomic write pauses 1 s halfway, so that the second signal lands in the state write
  // the first one started.
  const std::string command =
      "env KD_DEBUG_WRITE_DELAY_MS=1000 " + kdhost + TrainArgs(dir / "stopped") + every_4;
  const Stopped stopped = RunAndTerminate(command, dir / "stopped.log", dir / "stopped", 6, true);
  INFO(*kd::host::ReadFile(dir / "stopped.log"));
  REQUIRE_FALSE(stopped.exited);
  REQUIRE(stopped.code == SIGTERM);
  // The state on disk is an earlier, complete one (a multiple of 4 steps).
  auto state = kd::host::LoadTrainState(StageDir(dir / "stopped") / "state" / "train_state.pt");
  REQUIRE(state.ok());
  CHECK(state->step % 4 == 0);
  CHECK(state->step >= 4);

  auto resumed = kd::test::RunCommand(kdhost + TrainArgs(dir / "stopped") + every_4);
  INFO(resumed.output);
  REQUIRE(resumed.exit_code == 0);
  RequireSameExport(StageDir(dir / "straight") / "export" / "last.pt",
                    StageDir(dir / "stopped") / "export" / "last.pt");
  REQUIRE_FALSE(HasTemporary(StageDir(dir / "stopped") / "state"));
}

TEST_CASE(
    "SIGTERM to kdhost ablate stops the current run and starts no other, and the same "
    "command completes the table") {
  const fs::path dir = kd::test::ScratchDir("crash_sigterm_ablate");
  const std::string command =
      kd::test::KdhostPath().string() + " ablate " +
      (kd::test::SourceDir() / "configs" / "quickstart" / "kd_multilabel.toml").string() +
      " --grid distiller=KD,LogitMSE --seeds 1 --set data.train.num_samples=256"
      " --set data.val.num_samples=64 --set loader.batch_size=16 --set train.max_epochs=0"
      " --set train.max_iters=24 --set stages.teacher.train.max_epochs=0"
      " --set train.log_interval=1 --set run.work_dir=" +
      (dir / "runs").string();
  const fs::path log = dir / "stopped.log";
  const pid_t pid = kd::test::Spawn(command, log, /*append=*/false);
  // The signal lands while the first run's student trains (after its step 2).
  static const std::regex student_step("\\[student_kd\\][^\\n]* step ([3-9]|1[0-9])/24 ");
  while (true) {
    auto text = kd::host::ReadFile(log);
    if (text.ok() && std::regex_search(*text, student_step)) break;
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) != 0) FAIL("kdhost ablate ended before the signal");
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  ::kill(pid, SIGTERM);
  int status = 0;
  ::waitpid(pid, &status, 0);
  const std::string stopped = *kd::host::ReadFile(log);
  INFO(stopped);
  REQUIRE(WIFEXITED(status));
  REQUIRE(WEXITSTATUS(status) == 143);
  REQUIRE_THAT(stopped, Catch::Contains("stopped by SIGTERM; exit status 143; run the same "
                                        "command again to continue"));
  REQUIRE_THAT(stopped, Catch::Contains("== ablation run 001/002"));
  REQUIRE_THAT(stopped, !Catch::Contains("== ablation run 002/002"));
  const std::string csv = *kd::host::ReadFile(dir / "runs" / "ablation" / "results.csv");
  INFO(csv);
  REQUIRE(std::regex_search(csv, std::regex("\\n1,distiller=KD,0,interrupted,")));
  REQUIRE(std::regex_search(csv, std::regex("\\n2,distiller=LogitMSE,0,not run,")));

  auto rerun = kd::test::RunCommand(command);
  INFO(rerun.output);
  REQUIRE(rerun.exit_code == 0);
  REQUIRE_THAT(rerun.output,
               Catch::Contains("[teacher] complete in") && Catch::Contains("resuming at step"));
  const std::string done = *kd::host::ReadFile(dir / "runs" / "ablation" / "results.csv");
  REQUIRE(std::regex_search(done, std::regex("\\n1,distiller=KD,0,done,")));
  REQUIRE(std::regex_search(done, std::regex("\\n2,distiller=LogitMSE,0,done,")));
}
