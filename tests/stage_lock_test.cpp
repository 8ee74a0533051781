// Stage locks (host/stage_lock.h): exclusive, released, kept alive by the heartbeat, and taken over
// when stale, judged by the waiting process's own observation of the lock file.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include "host/files.h"
#include "host/stage_lock.h"
#include "test_support.h"

namespace fs = std::filesystem;
using Catch::Matchers::Contains;

namespace {

int64_t MtimeNs(const fs::path& path) {
  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  return static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
}

void Sleep(double seconds) { std::this_thread::sleep_for(std::chrono::duration<double>(seconds)); }

}  // namespace

TEST_CASE("a stage lock is exclusive, names its holder, and is free again once released") {
  const fs::path lock = kd::test::ScratchDir("lock_exclusive") / "stage" / "lock";
  const kd::host::LockTiming timing{0.05, 5};
  auto first = kd::host::TryLock(lock, timing);
  REQUIRE(first.ok());
  REQUIRE(first->lock != nullptr);
  CHECK(first->note.empty());
  const std::string text = *kd::host::ReadFile(lock);
  CHECK_THAT(text, Contains("host=" + kd::host::HostName() + "\n") &&
                       Contains("pid=" + std::to_string(getpid()) + "\n") && Contains("token=") &&
                       Contains("since="));

  auto second = kd::host::TryLock(lock, timing);
  REQUIRE(second.ok());
  CHECK(second->lock == nullptr);
  REQUIRE(second->busy.has_value());
  CHECK(second->busy->pid == getpid());
  CHECK(second->busy->token == first->lock->holder().token);

  // The heartbeat touches the file while it is held.
  const int64_t before = MtimeNs(lock);
  Sleep(0.3);
  CHECK(MtimeNs(lock) > before);

  first->lock->Release();
  CHECK_FALSE(fs::exists(lock));
  auto third = kd::host::TryLock(lock, timing);
  REQUIRE(third.ok());
  CHECK(third->lock != nullptr);
  // Only the holder's own files are left: no temporaries of the link protocol.
  int files = 0;
  for ([[maybe_unused]] const auto& entry : fs::directory_iterator(lock.parent_path())) ++files;
  CHECK(files == 1);
}

TEST_CASE(
    "a lock from another host is taken over only after its file stood still for "
    "run.lock_stale_s, and never while its heartbeat goes on") {
  const fs::path dir = kd::test::ScratchDir("lock_stale");
  const fs::path lock = dir / "lock";
  // As a process on another machine would have written it.
  kd::test::WriteText(
      lock, "host=elsewhere\npid=4242\ntoken=elsewhere:4242:1\nsince=2026-01-01T00:00:00Z\n");
  const kd::host::LockTiming timing{0.05, 0.4};
  const auto started = std::chrono::steady_clock::now();
  // Its heartbeat (the test touching the file) keeps it valid well past 0.4 s.
  while (std::chrono::steady_clock::now() - started < std::chrono::milliseconds(1200)) {
    auto attempt = kd::host::TryLock(lock, timing);
    REQUIRE(attempt.ok());
    REQUIRE(attempt->lock == nullptr);
    CHECK(attempt->busy->host == "elsewhere");
    CHECK(attempt->busy->pid == 4242);
    CHECK(attempt->busy->Describe() == "elsewhere pid 4242, since 2026-01-01T00:00:00Z");
    Sleep(0.1);
    REQUIRE(::utimensat(AT_FDCWD, lock.c_str(), nullptr, 0) == 0);
  }
  // The heartbeat stops: the lock is busy until it stood still for 0.4 s, then taken over.
  const auto stopped = std::chrono::steady_clock::now();
  std::unique_ptr<kd::host::FileLock> taken;
  std::string note;
  while (taken == nullptr) {
    auto attempt = kd::host::TryLock(lock, timing);
    REQUIRE(attempt.ok());
    taken = std::move(attempt->lock);
    note = attempt->note;
    REQUIRE(std::chrono::steady_clock::now() - stopped < std::chrono::seconds(5));
    if (taken == nullptr) Sleep(0.05);
  }
  const double waited =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - stopped).count();
  CHECK(waited >= 0.4);
  CHECK_THAT(note, Contains("took over the stale lock " + lock.string() +
                            " of elsewhere pid 4242, since 2026-01-01T00:00:00Z: its heartbeat "
                            "stopped: the file did not change for"));
  CHECK(taken->holder().pid == getpid());
  CHECK_FALSE(fs::exists(lock.string() + ".takeover"));
}

TEST_CASE("a lock whose holder on this host is gone is taken over at once") {
  const fs::path lock = kd::test::ScratchDir("lock_dead") / "lock";
  // A pid that was just alive and is gone.
  const pid_t child = fork();
  if (child == 0) _exit(0);
  int status = 0;
  waitpid(child, &status, 0);
  kd::test::WriteText(lock, "host=" + kd::host::HostName() + "\npid=" + std::to_string(child) +
                                "\ntoken=dead:1\nsince=2026-01-01T00:00:00Z\n");
  auto attempt = kd::host::TryLock(lock, {10, 120});
  REQUIRE(attempt.ok());
  REQUIRE(attempt->lock != nullptr);
  CHECK_THAT(attempt->note, Contains("process " + std::to_string(child) + " on this host is gone"));
}
