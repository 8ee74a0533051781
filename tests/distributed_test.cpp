// Data-parallel training on c10d with Gloo over loopback: two processes reach the weights and the
// metrics of one process with their combined batch; a killed or a hung rank ends the job with a
// clear error, leaving a resumable state that one process finishes.
#include <catch2/catch.hpp>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <optional>
#include <regex>
#include <thread>

#include "absl/strings/str_cat.h"
#include "host/checkpoint.h"
#include "host/files.h"
#include "test_support.h"

namespace fs = std::filesystem;
using Catch::Matchers::Contains;

namespace {

using Clock = std::chrono::steady_clock;

// The quickstart's student without batch norm (its output for a sample does not depend on the
// rest of the batch, so the two ways of batching compute the same gradients), one thread.
std::string StudentArgs(const fs::path& work_dir, const std::string& extra) {
  return " train " +
         (kd::test::SourceDir() / "configs" / "quickstart" / "kd_multilabel.toml").string() +
         " --stage student --quiet --set model.backbone.norm=none --set run.threads=1"
         " --set loader.workers=1 --set run.work_dir=" +
         work_dir.string() + " " + extra;
}

fs::path StageDir(const fs::path& work_dir) { return kd::test::StageDir(work_dir, "student"); }

// A TCP port for this test process's rendezvous.
int Port(int offset) { return 20000 + static_cast<int>(::getpid() % 20000) + offset; }

pid_t Spawn(const std::string& command, const fs::path& log) {
  return kd::test::Spawn(command, log, /*append=*/false);
}

// Waits up to `limit` for `pid`; its exit code, or nullopt if it is still running.
std::optional<int> WaitFor(pid_t pid, std::chrono::seconds limit) {
  const auto deadline = Clock::now() + limit;
  while (Clock::now() < deadline) {
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid) {
      return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return std::nullopt;
}

void KillAndReap(pid_t pid) {
  ::kill(pid, SIGKILL);
  int status = 0;
  ::waitpid(pid, &status, 0);
}

std::string Env(int rank, int port) {
  return absl::StrCat("env RANK=", rank, " WORLD_SIZE=2 LOCAL_RANK=", rank,
                      " MASTER_ADDR=127.0.0.1 MASTER_PORT=", port, " ");
}

// A config: the quickstart with the test plugins' directory and `plugin` loaded, then `extra`.
fs::path QuickstartWithTestPlugin(const fs::path& dir, const std::string& plugin,
                                  const std::string& extra) {
  const fs::path config = dir / (plugin + ".toml");
  kd::test::WriteText(
      config,
      "base = [\"" +
          (kd::test::SourceDir() / "configs" / "quickstart" / "kd_multilabel.toml").string() +
          "\"]\nplugin_dirs = [\"" + (kd::test::BuildDir() / "tests" / "plugins").string() +
          "\"]\nplugins = [\"fmnist_tasks\", \"transforms\", \"resnet\", \"mlic_heads\", "
          "\"distillers\", \"" +
          plugin + "\"]\n" + extra);
  return config;
}

// The two ranks of a long run; waits until rank 0 has written a resumable state.
std::pair<pid_t, pid_t> StartLongRun(const fs::path& dir, int port) {
  const std::string args =
      StudentArgs(dir / "run",
                  "--set data.train.num_samples=256 --set data.val.num_samples=64 "
                  "--set train.max_epochs=0 --set train.max_iters=3000 --set train.val_interval=0 "
                  "--set train.checkpoint_interval=2 --set loader.batch_size=8 "
                  "--set run.dist_timeout_s=3 --set run.elastic=true");
  const std::string kdhost = kd::test::KdhostPath().string();
  const pid_t rank0 = Spawn(Env(0, port) + kdhost + args, dir / "rank0.log");
  const pid_t rank1 = Spawn(Env(1, port) + kdhost + args, dir / "rank1.log");
  const auto deadline = Clock::now() + std::chrono::seconds(120);
  while (Clock::now() < deadline) {
    std::error_code ec;
    const fs::path stage = StageDir(dir / "run");
    if (!stage.empty() && fs::exists(stage / "state" / "train_state.pt", ec)) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return {rank0, rank1};
}

}  // namespace

TEST_CASE(
    "2 processes x batch 16 (torchrun, 1 or 2 nodes) reach the weights and metrics of 1 x 32") {
  const fs::path dir = kd::test::ScratchDir("distributed_equivalence");
  const std::string kdhost = kd::test::KdhostPath().string();
  // 241 samples: 7 full global batches of 32 and one of 17, which the ranks split 9/8.
  const std::string common =
      "--set data.train.num_samples=241 --set data.val.num_samples=100 --set loader.drop_last=false"
      " --set train.max_epochs=2 --set train.val_interval=1 --set loader.eval_batch_size=16";
  auto one = kd::test::RunCommand(
      kdhost + StudentArgs(dir / "one", common + " --set loader.batch_size=32") + " 2>&1");
  INFO(one.output);
  REQUIRE(one.exit_code == 0);
  const std::string torchrun = kd::test::PythonPath() +
                               " -m torch.distributed.run --standalone --nproc-per-node 2"
                               " --no-python ";
  // Buckets of 4 KB: the gradients (92 KB) go in many all-reduces at once.
  auto two = kd::test::RunCommand(
      torchrun + kdhost +
      StudentArgs(dir / "two",
                  common + " --set loader.batch_size=16 --set run.dist_bucket_mb=0.004") +
      " 2>&1");
  INFO(two.output);
  REQUIRE(two.exit_code == 0);

  auto a = kd::host::LoadModelExport(StageDir(dir / "one") / "export" / "last.pt");
  auto b = kd::host::LoadModelExport(StageDir(dir / "two") / "export" / "last.pt");
  REQUIRE(a.ok());
  REQUIRE(b.ok());
  REQUIRE(a->step == 16);
  REQUIRE(b->step == 16);
  REQUIRE(a->state.size() == b->state.size());
  double largest = 0;
  for (const auto& [name, tensor] : a->state) {
    INFO(name);
    REQUIRE(b->state.count(name) == 1);
    const torch::Tensor other = b->state.at(name);
    REQUIRE(tensor.sizes() == other.sizes());
    largest = std::max(largest, (tensor - other).abs().max().item<double>());
    REQUIRE(torch::allclose(tensor, other, 1e-4, 1e-5));
  }
  INFO("largest weight difference " << largest);

  // Evaluation: the gathered metric over 100 samples (7 batches dealt 4/3) is the single-process
  // value after each epoch, to the float printed.
  auto one_log = kd::host::ReadFile(StageDir(dir / "one") / "metrics.jsonl");
  auto two_log = kd::host::ReadFile(StageDir(dir / "two") / "metrics.jsonl");
  REQUIRE(one_log.ok());
  REQUIRE(two_log.ok());
  auto val_lines = [](const std::string& text) {
    std::vector<std::string> lines;
    size_t start = 0;
    while (start < text.size()) {
      const size_t end = text.find('\n', start);
      const std::string line = text.substr(start, end - start);
      if (line.find("\"kind\": \"val\"") != std::string::npos) lines.push_back(line);
      if (end == std::string::npos) break;
      start = end + 1;
    }
    return lines;
  };
  const std::vector<std::string> one_val = val_lines(*one_log), two_val = val_lines(*two_log);
  REQUIRE(one_val.size() == 2);
  REQUIRE(one_val == two_val);
  REQUIRE(a->metrics.size() == 1);
  REQUIRE(b->metrics.size() == 1);
  REQUIRE(a->metrics[0].value == b->metrics[0].value);
  // Two machines of one process each, as torchrun's multi-node rendezvous sees them: two agents
  // on loopback. The same weights and metrics again.
  auto node = [&](int rank) {
    return absl::StrCat(
        "{ ", kd::test::PythonPath(),
        " -m torch.distributed.run --nnodes 2 --nproc-per-node 1 --node-rank ", rank,
        " --rdzv-backend c10d --rdzv-id kdhost-test --rdzv-endpoint 127.0.0.1:", Port(3),
        " --no-python ", kdhost, StudentArgs(dir / "nodes", common + " --set loader.batch_size=16"),
        "; echo exit", rank, "=$?; } > ", (dir / absl::StrCat("node", rank, ".log")).string(),
        " 2>&1");
  };
  kd::test::RunCommand(node(0) + " & " + node(1) + "; wait");
  auto node0 = kd::host::ReadFile(dir / "node0.log");
  auto node1 = kd::host::ReadFile(dir / "node1.log");
  REQUIRE(node0.ok());
  REQUIRE(node1.ok());
  INFO(*node0 << *node1);
  REQUIRE_THAT(*node0, Contains("exit0=0"));
  REQUIRE_THAT(*node1, Contains("exit1=0"));
  auto c = kd::host::LoadModelExport(StageDir(dir / "nodes") / "export" / "last.pt");
  REQUIRE(c.ok());
  for (const auto& [name, tensor] : a->state) {
    INFO(name);
    REQUIRE(torch::allclose(tensor, c->state.at(name), 1e-4, 1e-5));
  }
  auto nodes_log = kd::host::ReadFile(StageDir(dir / "nodes") / "metrics.jsonl");
  REQUIRE(nodes_log.ok());
  REQUIRE(val_lines(*nodes_log) == one_val);

  // Only rank 0 reports.
  size_t summaries = 0;
  for (size_t at = two.output.find("run directory:"); at != std::string::npos;
       at = two.output.find("run directory:", at + 1)) {
    ++summaries;
  }
  REQUIRE(summaries == 1);
}

TEST_CASE("a killed rank stops the job with a clear error and one process resumes its checkpoint") {
  const fs::path dir = kd::test::ScratchDir("distributed_killed");
  auto [rank0, rank1] = StartLongRun(dir, Port(1));
  const auto killed_at = Clock::now();
  KillAndReap(rank1);
  const std::optional<int> exit_code = WaitFor(rank0, std::chrono::seconds(60));
  if (!exit_code) KillAndReap(rank0);
  auto log = kd::host::ReadFile(dir / "rank0.log");
  REQUIRE(log.ok());
  INFO(*log);
  REQUIRE(exit_code.has_value());
  REQUIRE(*exit_code == 1);
  REQUIRE(Clock::now() - killed_at < std::chrono::seconds(30));
  REQUIRE_THAT(*log, Contains("rank 0: error: "));
  REQUIRE_THAT(*log, Contains("lost contact with the other ranks"));
  REQUIRE_THAT(*log, Contains("state/train_state.pt"));

  const fs::path stage = StageDir(dir / "run");
  auto state = kd::host::LoadTrainState(stage / "state" / "train_state.pt");
  REQUIRE(state.ok());
  REQUIRE(state->world_size == 2);
  REQUIRE(state->global_batch == 16);
  REQUIRE(state->step > 0);

  // The same config in one process: batches of 8 instead of 2 x 8, from the same sample on.
  const std::string args = StudentArgs(
      dir / "run",
      "--set data.train.num_samples=256 --set data.val.num_samples=64 --set train.max_epochs=0 "
      "--set train.max_iters=3000 --set train.val_interval=0 --set train.checkpoint_interval=2 "
      "--set loader.batch_size=8 --set run.dist_timeout_s=3 --set run.elastic=true --stop-after " +
          std::to_string(state->step + 4));
  auto resumed = kd::test::RunCommand(kd::test::KdhostPath().string() + args + " 2>&1");
  INFO(resumed.output);
  REQUIRE(resumed.exit_code == 0);
  auto after = kd::host::LoadTrainState(stage / "state" / "train_state.pt");
  REQUIRE(after.ok());
  REQUIRE(after->world_size == 1);
  REQUIRE(after->step == state->step + 4);
  // 2 x 8 samples per step before, 8 after: the epoch position carried over in samples.
  const int64_t steps_per_epoch = 256 / 8;
  REQUIRE(after->batch_in_epoch == (state->batch_in_epoch * 2 + 4) % steps_per_epoch);
}

TEST_CASE("a rank that hangs stops the others after run.dist_timeout_s") {
  const fs::path dir = kd::test::ScratchDir("distributed_hung");
  auto [rank0, rank1] = StartLongRun(dir, Port(2));
  ::kill(rank1, SIGSTOP);
  const auto stopped_at = Clock::now();
  const std::optional<int> exit_code = WaitFor(rank0, std::chrono::seconds(60));
  const auto waited = Clock::now() - stopped_at;
  if (!exit_code) KillAndReap(rank0);
  KillAndReap(rank1);
  auto log = kd::host::ReadFile(dir / "rank0.log");
  REQUIRE(log.ok());
  INFO(*log);
  REQUIRE(exit_code.has_value());
  REQUIRE(*exit_code == 1);
  REQUIRE(waited >= std::chrono::seconds(2));
  REQUIRE_THAT(*log, Contains("got no answer from the other ranks within 3 s"));
  REQUIRE(kd::host::LoadTrainState(StageDir(dir / "run") / "state" / "train_state.pt").ok());
}

TEST_CASE("ranks that do not share run.work_dir, and commands that cannot run data-parallel") {
  const fs::path dir = kd::test::ScratchDir("distributed_refused");
  const std::string kdhost = kd::test::KdhostPath().string();
  const std::string common =
      "--set data.train.num_samples=64 --set data.val.num_samples=16 "
      "--set train.max_epochs=1 --set loader.batch_size=8 "
      "--set run.dist_timeout_s=20";
  // Each rank is given its own directory, as on machines without a shared filesystem.
  const pid_t rank0 =
      Spawn(Env(0, Port(4)) + kdhost + StudentArgs(dir / "r0", common), dir / "rank0.log");
  const pid_t rank1 =
      Spawn(Env(1, Port(4)) + kdhost + StudentArgs(dir / "r1", common), dir / "rank1.log");
  const std::optional<int> code0 = WaitFor(rank0, std::chrono::seconds(60));
  const std::optional<int> code1 = WaitFor(rank1, std::chrono::seconds(60));
  if (!code0) KillAndReap(rank0);
  if (!code1) KillAndReap(rank1);
  auto log = kd::host::ReadFile(dir / "rank0.log");
  REQUIRE(log.ok());
  INFO(*log);
  REQUIRE(code0 == std::optional<int>(1));
  REQUIRE(code1 == std::optional<int>(1));
  REQUIRE_THAT(*log, Contains("is not shared: rank(s) 1 do not see rank 0's files there"));
  REQUIRE_FALSE(fs::exists(StageDir(dir / "r0") / "state"));

  auto eval = kd::test::RunCommand(
      "env RANK=0 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 " + kdhost + " eval " +
      (kd::test::SourceDir() / "configs" / "quickstart" / "kd_multilabel.toml").string());
  INFO(eval.output);
  REQUIRE(eval.exit_code == 2);
  REQUIRE_THAT(eval.output, Contains("only `kdhost run` and `kdhost train` run data-parallel"));
}

TEST_CASE("with run.sync_batchnorm, 2 processes x batch 16 reach the batch-norm model of 1 x 32") {
  const fs::path dir = kd::test::ScratchDir("distributed_sync_bn");
  const std::string kdhost = kd::test::KdhostPath().string();
  // The quickstart student with its batch norms. 241 samples: 7 global batches of 32 and one of
  // 17, which the ranks split 9/8 and normalise together.
  auto args = [&](const std::string& name, const std::string& extra) {
    return StudentArgs(dir / name,
                       "--set model.backbone.norm=batch --set data.train.num_samples=241 "
                       "--set data.val.num_samples=32 --set loader.drop_last=false "
                       "--set train.max_epochs=1 --set train.val_interval=1 " +
                           extra);
  };
  auto one = kd::test::RunCommand(kdhost + args("one", "--set loader.batch_size=32") + " 2>&1");
  INFO(one.output);
  REQUIRE(one.exit_code == 0);
  const std::string torchrun = kd::test::PythonPath() +
                               " -m torch.distributed.run --standalone --nproc-per-node 2"
                               " --no-python " +
                               kdhost;
  auto synced = kd::test::RunCommand(
      torchrun + args("synced", "--set loader.batch_size=16 --set run.sync_batchnorm=true") +
      " 2>&1");
  INFO(synced.output);
  REQUIRE(synced.exit_code == 0);
  auto local =
      kd::test::RunCommand(torchrun + args("local", "--set loader.batch_size=16") + " 2>&1");
  INFO(local.output);
  REQUIRE(local.exit_code == 0);

  auto a = kd::host::LoadModelExport(StageDir(dir / "one") / "export" / "last.pt");
  auto b = kd::host::LoadModelExport(StageDir(dir / "synced") / "export" / "last.pt");
  auto c = kd::host::LoadModelExport(StageDir(dir / "local") / "export" / "last.pt");
  REQUIRE(a.ok());
  REQUIRE(b.ok());
  REQUIRE(c.ok());
  REQUIRE(a->step == 8);
  REQUIRE(b->step == 8);
  double synced_largest = 0, local_largest = 0;
  size_t running_stats = 0;
  for (const auto& [name, tensor] : a->state) {
    INFO(name);
    if (!tensor.is_floating_point()) {
      REQUIRE(torch::equal(tensor, b->state.at(name)));  // num_batches_tracked
      continue;
    }
    if (name.find("running_") != std::string::npos) ++running_stats;
    synced_largest =
        std::max(synced_largest, (tensor - b->state.at(name)).abs().max().item<double>());
    local_largest =
        std::max(local_largest, (tensor - c->state.at(name)).abs().max().item<double>());
    REQUIRE(torch::allclose(tensor, b->state.at(name), 1e-4, 1e-5));
  }
  INFO("largest difference: synchronised " << synced_largest << ", per-process " << local_largest);
  REQUIRE(running_stats == 12);  // 6 batch norms
  // Per-process statistics (the default) train a different model.
  REQUIRE(local_largest > 1e-2);
}

TEST_CASE("run.sync_batchnorm refuses torch's batch norm layers by name") {
  const fs::path dir = kd::test::ScratchDir("distributed_sync_bn_refused");
  const fs::path config = QuickstartWithTestPlugin(
      dir, "test_torch_norm",
      "[model.backbone]\ntype = \"test_torch_norm::TorchNormCNN\"\nin_channels = 1\n"
      "channels = [8, 16, 32]\n");
  auto run = kd::test::RunCommand(
      kd::test::PythonPath() + " -m torch.distributed.run --standalone --nproc-per-node 2 " +
      "--no-python " + kd::test::KdhostPath().string() + " train " + config.string() +
      " --stage student --quiet --set run.sync_batchnorm=true --set run.work_dir=" +
      (dir / "run").string() + " 2>&1");
  INFO(run.output);
  REQUIRE(run.exit_code != 0);
  REQUIRE_THAT(run.output, Contains("run.sync_batchnorm") &&
                               Contains("3 batch norm layer(s) are torch::nn::BatchNorm") &&
                               Contains("model.backbone.stage1.1, model.backbone.stage2.1, "
                                        "model.backbone.stage3.1") &&
                               Contains("build them with kd::nn::BatchNorm1d/2d/3d"));
  REQUIRE_FALSE(fs::exists(StageDir(dir / "run") / "state"));
}

TEST_CASE("every process keeps rank 0's batch-norm statistics: evaluation equals one process's") {
  // The quickstart student with its 6 batch norms, per-process statistics (the default): the
  // buffers are rank 0's after every step, so the ranks' evaluation batches (7 batches of 16
  // dealt 4/3) are scored by the model that rank 0 exports.
  const fs::path dir = kd::test::ScratchDir("distributed_bn_eval");
  const std::string overrides =
      "--set model.backbone.norm=batch --set data.train.num_samples=241 "
      "--set data.val.num_samples=100 --set loader.eval_batch_size=16 --set train.max_epochs=1 "
      "--set train.val_interval=1 --set loader.batch_size=16";
  auto two = kd::test::RunCommand(kd::test::PythonPath() +
                                  " -m torch.distributed.run --standalone --nproc-per-node 2"
                                  " --no-python " +
                                  kd::test::KdhostPath().string() +
                                  StudentArgs(dir / "two", overrides) + " 2>&1");
  INFO(two.output);
  REQUIRE(two.exit_code == 0);
  auto exported = kd::host::LoadModelExport(StageDir(dir / "two") / "export" / "last.pt");
  REQUIRE(exported.ok());
  REQUIRE(exported->metrics.size() == 1);
  // One process scores the exported model (best = last after one epoch).
  auto eval = kd::test::RunCommand(
      kd::test::KdhostPath().string() + " eval " +
      (kd::test::SourceDir() / "configs" / "quickstart" / "kd_multilabel.toml").string() +
      " --stage student --set model.backbone.norm=batch --set data.val.num_samples=100 "
      "--set loader.eval_batch_size=16 --set run.threads=1 --set loader.workers=1 "
      "--set data.train.num_samples=241 --set train.max_epochs=1 --set loader.batch_size=16 "
      "--world-size 2 --set run.work_dir=" +
      (dir / "two").string() + " 2>&1");
  INFO(eval.output);
  REQUIRE(eval.exit_code == 0);
  std::smatch match;
  REQUIRE(std::regex_search(eval.output, match, std::regex("mAP +([0-9.]+)")));
  REQUIRE(std::stod(match[1].str()) == Approx(exported->metrics[0].value).margin(1e-4));
}

TEST_CASE(
    "every process holds the same distiller state after each epoch or the run stops naming it") {
  const fs::path dir = kd::test::ScratchDir("distributed_distiller_state");
  const std::string torchrun = kd::test::PythonPath() +
                               " -m torch.distributed.run --standalone --nproc-per-node 2"
                               " --no-python " +
                               kd::test::KdhostPath().string();
  // Iterative LS-KD on the embedded scene graphs: the snapshot of the student (with its batch
  // norms) taken at the end of epoch 1 teaches epoch 2. The ranks compare their model, distiller
  // (snapshot included) and EMA tensors at the end of each epoch; they must agree.
  auto lskd = kd::test::RunCommand(
      torchrun + " train " +
      (kd::test::SourceDir() / "configs" / "lskd" / "fmnist_motifs_predcls_iterative.toml")
          .string() +
      " --quiet --set run.threads=1 --set loader.workers=1 --set data.train.num_samples=64 "
      "--set data.val.num_samples=16 --set loader.batch_size=8 --set train.max_epochs=2 "
      "--set train.ema_decay=0.9 --set run.work_dir=" +
      (dir / "lskd").string() + " 2>&1");
  INFO(lskd.output);
  REQUIRE(lskd.exit_code == 0);
  auto state = kd::host::LoadTrainState(kd::test::StageDir(dir / "lskd", "main") / "state" /
                                        "train_state.pt");
  REQUIRE(state.ok());
  // 64 samples in global batches of 16: 4 steps an epoch; the snapshot is the one of epoch 2.
  REQUIRE(state->step == 8);
  REQUIRE(state->world_size == 2);
  REQUIRE(state->distiller.count("snapshot_epoch") == 1);
  REQUIRE(state->distiller.at("snapshot_epoch").item<int64_t>() == 1);

  // A distiller that adds up its own process's inputs in a buffer: both ranks stop at the end of
  // the first epoch, naming it.
  const fs::path config = QuickstartWithTestPlugin(
      dir, "test_rank_state", "[stages.student.distiller]\ntype = \"test_rank_state::InputSum\"\n");
  auto summed = kd::test::RunCommand(
      torchrun + " train " + config.string() +
      " --stage student --quiet --set data.train.num_samples=64 --set data.val.num_samples=16 "
      "--set loader.batch_size=8 --set train.max_epochs=2 --set run.work_dir=" +
      (dir / "input_sum").string() + " 2>&1");
  INFO(summed.output);
  REQUIRE(summed.exit_code != 0);
  for (const char* rank : {"rank 0: error: ", "rank 1: error: "}) {
    REQUIRE_THAT(summed.output,
                 Contains(std::string(rank) + "stage 'student', end of epoch 1: the processes no "
                                              "longer hold the same state: 1 tensor(s) of rank(s) "
                                              "1 differ from rank 0's (distiller.input_sum)"));
  }
  // Turned off, the same run completes.
  auto unchecked = kd::test::RunCommand(
      torchrun + " train " + config.string() +
      " --stage student --quiet --set data.train.num_samples=64 --set data.val.num_samples=16 "
      "--set loader.batch_size=8 --set train.max_epochs=2 --set run.dist_check_state=false "
      "--set run.work_dir=" +
      (dir / "unchecked").string() + " 2>&1");
  INFO(unchecked.output);
  REQUIRE(unchecked.exit_code == 0);

  // Summed over the processes with kd::dist::AllReduceSum, the state is every process's and
  // passes the check: the sum over every training image of the 2 epochs, as one process with
  // the global batch adds it up.
  const std::string reduced_args =
      " --stage student --quiet --set data.train.num_samples=64 --set data.val.num_samples=16 "
      "--set train.max_epochs=2 --set stages.student.distiller.all_reduce=true --set "
      "run.work_dir=";
  auto reduced =
      kd::test::RunCommand(torchrun + " train " + config.string() + reduced_args +
                           (dir / "reduced").string() + " --set loader.batch_size=8" + " 2>&1");
  INFO(reduced.output);
  REQUIRE(reduced.exit_code == 0);
  auto one = kd::test::RunCommand(kd::test::KdhostPath().string() + " train " + config.string() +
                                  reduced_args + (dir / "one").string() +
                                  " --set loader.batch_size=16 2>&1");
  INFO(one.output);
  REQUIRE(one.exit_code == 0);
  auto reduced_state = kd::host::LoadTrainState(kd::test::StageDir(dir / "reduced", "student") /
                                                "state" / "train_state.pt");
  auto one_state = kd::host::LoadTrainState(kd::test::StageDir(dir / "one", "student") / "state" /
                                            "train_state.pt");
  REQUIRE(reduced_state.ok());
  REQUIRE(one_state.ok());
  REQUIRE(reduced_state->distiller.at("processes").item<int64_t>() == 2);
  REQUIRE(one_state->distiller.at("processes").item<int64_t>() == 1);
  const double total = one_state->distiller.at("input_sum").item<double>();
  REQUIRE(total > 0);
  REQUIRE(reduced_state->distiller.at("input_sum").item<double>() == Approx(total).epsilon(1e-6));
}

namespace {

// The largest difference between two exports' tensors; fails when their names or shapes differ.
double LargestDifference(const fs::path& a_path, const fs::path& b_path) {
  auto a = kd::host::LoadModelExport(a_path);
  auto b = kd::host::LoadModelExport(b_path);
  REQUIRE(a.ok());
  REQUIRE(b.ok());
  REQUIRE(a->step == b->step);
  REQUIRE(a->state.size() == b->state.size());
  double largest = 0;
  for (const auto& [name, tensor] : a->state) {
    INFO(name);
    REQUIRE(b->state.count(name) == 1);
    REQUIRE(tensor.sizes() == b->state.at(name).sizes());
    largest = std::max(largest, (tensor.to(torch::kDouble) - b->state.at(name).to(torch::kDouble))
                                    .abs()
                                    .max()
                                    .item<double>());
  }
  return largest;
}

}  // namespace

TEST_CASE("the PSD and RDD pipelines train data-parallel to the models of one process") {
  const fs::path dir = kd::test::ScratchDir("distributed_methods");
  const std::string kdhost = kd::test::KdhostPath().string();
  const std::string torchrun = kd::test::PythonPath() +
                               " -m torch.distributed.run --standalone --nproc-per-node 2"
                               " --no-python " +
                               kdhost;
  const std::string small =
      " --quiet --set run.threads=1 --set loader.workers=1 --set data.train.num_samples=64"
      " --set data.val.num_samples=32 --set train.max_epochs=1";

  // PSD: the partitions, the 6 sub-task teachers and the student distilled from them, trained
  // by 2 processes x 8 and by 1 x 16, without batch norm (whose per-process statistics differ).
  // The recipe's losses sum over the batch, and it adds the processes' gradients
  // (run.dist_grad_reduce = "sum").
  const std::string psd = (kd::test::SourceDir() / "configs" / "psd" / "fmnist_psd.toml").string() +
                          " --stage student_psd --set model.backbone.norm=none" + small;
  auto psd_two = kd::test::RunCommand(
      torchrun + " run " + psd +
      " --set loader.batch_size=8 --set run.work_dir=" + (dir / "psd_two").string() + " 2>&1");
  INFO(psd_two.output);
  REQUIRE(psd_two.exit_code == 0);
  auto psd_one = kd::test::RunCommand(
      kdhost + " run " + psd +
      " --set loader.batch_size=16 --set run.work_dir=" + (dir / "psd_one").string() + " 2>&1");
  INFO(psd_one.output);
  REQUIRE(psd_one.exit_code == 0);
  for (const char* name : {"cgp", "dgp"}) {
    const fs::path file = fs::path("artifacts") / name / "partition.json";
    auto two = kd::host::ReadFile(kd::test::StageDir(dir / "psd_two", "partition") / file);
    auto one = kd::host::ReadFile(kd::test::StageDir(dir / "psd_one", "partition") / file);
    REQUIRE(two.ok());
    REQUIRE(one.ok());
    REQUIRE(*two == *one);
  }
  for (const char* stage : {"teacher.cgp.0", "teacher.dgp.2", "student_psd"}) {
    INFO(stage);
    const double largest =
        LargestDifference(kd::test::StageDir(dir / "psd_two", stage) / "export" / "last.pt",
                          kd::test::StageDir(dir / "psd_one", stage) / "export" / "last.pt");
    INFO("largest difference " << largest);
    REQUIRE(largest < 1e-4);
  }

  // RDD: the teacher, then the student whose task loss TFE-RDD and TSE-RDD re-weight and mask by
  // pixel difficulty (OHEM chunks of 4 images), over 2 epochs, with synchronised batch norm. The
  // heads are FCN heads without dropout: dropout masks are drawn per process (DeepLabV3's ASPP
  // has its own), so no data-parallel run reproduces one process's.
  const fs::path rdd_config = dir / "rdd.toml";
  std::string heads;
  for (const std::string prefix : {"", "stages.teacher."}) {
    heads += "[" + prefix +
             "model.decode_head]\ntype = \"seg_heads::FCNHead\"\nout_key = \"logits\"\n"
             "dropout = 0.0\n[" +
             prefix + "model.aux_head]\ndropout = 0.0\n";
  }
  kd::test::WriteText(rdd_config,
                      "base = [\"" +
                          (kd::test::SourceDir() / "configs" / "rdd" / "fmnist_rdd.toml").string() +
                          "\"]\n" + heads);
  const std::string rdd = rdd_config.string() +
                          " --stage student_rdd --set run.sync_batchnorm=true" + small +
                          " --set stages.teacher.train.max_epochs=1 --set train.max_epochs=2";
  auto rdd_two = kd::test::RunCommand(
      torchrun + " run " + rdd +
      " --set loader.batch_size=8 --set run.work_dir=" + (dir / "rdd_two").string() + " 2>&1");
  INFO(rdd_two.output);
  REQUIRE(rdd_two.exit_code == 0);
  auto rdd_one = kd::test::RunCommand(
      kdhost + " run " + rdd +
      " --set loader.batch_size=16 --set run.work_dir=" + (dir / "rdd_one").string() + " 2>&1");
  INFO(rdd_one.output);
  REQUIRE(rdd_one.exit_code == 0);
  for (const char* stage : {"teacher", "student_rdd"}) {
    INFO(stage);
    const double largest =
        LargestDifference(kd::test::StageDir(dir / "rdd_two", stage) / "export" / "last.pt",
                          kd::test::StageDir(dir / "rdd_one", stage) / "export" / "last.pt");
    INFO("largest difference " << largest);
    // The running variances (near 1) are sums over 8 x 64 x 64 pixels a channel, in float.
    REQUIRE(largest < 1e-3);
  }
}

TEST_CASE("SIGTERM to one rank stops every rank after the same step with the state written") {
  const fs::path dir = kd::test::ScratchDir("distributed_sigterm");
  auto [rank0, rank1] = StartLongRun(dir, Port(17));
  ::kill(rank1, SIGTERM);
  const std::optional<int> code1 = WaitFor(rank1, std::chrono::seconds(60));
  const std::optional<int> code0 = WaitFor(rank0, std::chrono::seconds(60));
  if (!code0) KillAndReap(rank0);
  if (!code1) KillAndReap(rank1);
  auto log = kd::host::ReadFile(dir / "rank0.log");
  REQUIRE(log.ok());
  INFO(*log);
  INFO(*kd::host::ReadFile(dir / "rank1.log"));
  // Both pass the barrier after the same step (ranks that disagreed would time out after
  // run.dist_timeout_s = 3 and exit 1) and exit as a signal asked.
  REQUIRE(code0 == std::optional<int>(143));
  REQUIRE(code1 == std::optional<int>(143));
  std::smatch at;
  REQUIRE(std::regex_search(*log, at, std::regex("stage .student. stopped after ([0-9]+) steps")));
  REQUIRE_THAT(*log, Contains("stopped by SIGTERM; exit status 143"));
  auto state = kd::host::LoadTrainState(StageDir(dir / "run") / "state" / "train_state.pt");
  REQUIRE(state.ok());
  REQUIRE(state->step == std::stoll(at[1].str()));
  REQUIRE(state->world_size == 2);
}
