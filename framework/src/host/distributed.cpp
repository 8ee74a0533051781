// The process groups come from LibTorch's c10d. Its Gloo header needs Gloo's own headers
// (Debian's libgloo-dev); nothing of Gloo is linked but LibTorch's copy.
#define USE_C10D_GLOO 1

#include "host/distributed.h"

#include <torch/torch.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <cctype>
#include <cstdlib>
#include <optional>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "kd/error.h"

namespace kd::host {

// distributed_nccl.cpp, in builds with CUDA; nullptr otherwise.
c10::intrusive_ptr<c10d::Backend> MakeNcclBackend(const c10::intrusive_ptr<c10d::Store>& store,
                                                  int rank, int size,
                                                  std::chrono::milliseconds timeout,
                                                  const std::optional<at::Device>& device);

namespace {

absl::StatusOr<int> ReadInt(const std::function<const char*(const char*)>& get, const char* name,
                            bool required, int fallback) {
  const char* value = get(name);
  if (value == nullptr || *value == '\0') {
    if (!required) return fallback;
    return absl::InvalidArgumentError(
        absl::StrCat("the environment variable ", name,
                     " is not set; launch with torchrun or set "
                     "RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT"));
  }
  int out = 0;
  if (!absl::SimpleAtoi(value, &out) || out < 0) {
    return absl::InvalidArgumentError(absl::StrCat("the environment variable ", name, "=\"", value,
                                                   "\" is not a non-negative integer"));
  }
  return out;
}

}  // namespace

std::string FirstSlurmHost(const std::string& nodelist) {
  // The first entry ends at a comma outside brackets.
  size_t end = 0;
  int depth = 0;
  for (; end < nodelist.size(); ++end) {
    const char c = nodelist[end];
    if (c == '[') ++depth;
    if (c == ']') --depth;
    if (c == ',' && depth == 0) break;
  }
  const std::string first = nodelist.substr(0, end);
  const size_t open = first.find('[');
  if (open == std::string::npos) return first;
  // "prefix[03-05,9]": the first number of the range, with its zero padding.
  std::string range = first.substr(open + 1);
  size_t stop = 0;
  while (stop < range.size() && std::isdigit(static_cast<unsigned char>(range[stop]))) ++stop;
  return first.substr(0, open) + range.substr(0, stop);
}

absl::StatusOr<LaunchEnv> ReadLaunchEnv(const std::string& launcher,
                                        const std::function<const char*(const char*)>& get) {
  LaunchEnv env;
  auto set = [&](const char* name) {
    const char* v = get(name);
    return v != nullptr && *v != '\0';
  };
  if (launcher == "slurm") {
    KD_ASSIGN_OR_RETURN(env.rank, ReadInt(get, "SLURM_PROCID", true, 0));
    KD_ASSIGN_OR_RETURN(env.world_size, ReadInt(get, "SLURM_NTASKS", true, 1));
    KD_ASSIGN_OR_RETURN(env.local_rank, ReadInt(get, "SLURM_LOCALID", false, 0));
    // SLURM_NTASKS_PER_NODE is set with --ntasks-per-node; otherwise assume one node.
    KD_ASSIGN_OR_RETURN(env.local_world_size,
                        ReadInt(get, "SLURM_NTASKS_PER_NODE", false, env.world_size));
    if (set("MASTER_ADDR")) {
      env.master_addr = get("MASTER_ADDR");
    } else if (set("SLURM_JOB_NODELIST")) {
      env.master_addr = FirstSlurmHost(get("SLURM_JOB_NODELIST"));
    }
    KD_ASSIGN_OR_RETURN(env.master_port, ReadInt(get, "MASTER_PORT", false, 29500));
    env.launcher = "slurm";
  } else if (launcher == "env" || (launcher == "auto" && set("RANK") && set("WORLD_SIZE"))) {
    KD_ASSIGN_OR_RETURN(env.rank, ReadInt(get, "RANK", true, 0));
    KD_ASSIGN_OR_RETURN(env.world_size, ReadInt(get, "WORLD_SIZE", true, 1));
    KD_ASSIGN_OR_RETURN(env.local_rank, ReadInt(get, "LOCAL_RANK", false, env.rank));
    KD_ASSIGN_OR_RETURN(env.local_world_size,
                        ReadInt(get, "LOCAL_WORLD_SIZE", false, env.world_size));
    if (env.world_size > 1 && !set("MASTER_ADDR")) {
      return absl::InvalidArgumentError(
          "RANK and WORLD_SIZE are set but MASTER_ADDR is not: set MASTER_ADDR and MASTER_PORT "
          "to the address of rank 0 (torchrun sets all of them)");
    }
    if (set("MASTER_ADDR")) env.master_addr = get("MASTER_ADDR");
    KD_ASSIGN_OR_RETURN(env.master_port, ReadInt(get, "MASTER_PORT", false, 29500));
    env.agent_store = set("TORCHELASTIC_USE_AGENT_STORE") &&
                      std::string(get("TORCHELASTIC_USE_AGENT_STORE")) == "True";
    KD_ASSIGN_OR_RETURN(env.restart_count, ReadInt(get, "TORCHELASTIC_RESTART_COUNT", false, 0));
    env.launcher = set("TORCHELASTIC_RUN_ID") ? "torchrun" : "environment";
  } else if (launcher != "auto") {
    return absl::InvalidArgumentError(absl::StrCat(
        "--launcher \"", launcher, "\" is not one of \"auto\", \"env\" and \"slurm\""));
  }
  if (env.world_size < 1) return absl::InvalidArgumentError("WORLD_SIZE must be at least 1");
  if (env.rank >= env.world_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("rank ", env.rank, " is not below the world size ", env.world_size));
  }
  if (env.local_rank >= env.local_world_size) env.local_world_size = env.local_rank + 1;
  if (env.master_port <= 0 || env.master_port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("MASTER_PORT=", env.master_port, " is not a TCP port (1..65535)"));
  }
  return env;
}

class Distributed::Groups {
 public:
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::Backend> gloo;
  c10::intrusive_ptr<c10d::Backend> nccl;  // by UseDevice, or on the first CUDA collective
  bool nccl_tried = false;
  std::optional<torch::Device> nccl_device;  // the GPU UseDevice bound it to
  bool shut_down = false;
};

Distributed::Distributed(LaunchEnv env, std::chrono::milliseconds timeout,
                         std::unique_ptr<Groups> groups)
    : env_(std::move(env)), timeout_(timeout), groups_(std::move(groups)) {}

Distributed::~Distributed() {
  if (groups_->shut_down) return;
  // A run that failed: a peer may be gone, and waiting for its part of a collective would hang.
  try {
    if (groups_->nccl) groups_->nccl->abort();
    groups_->gloo->abort();
  } catch (const std::exception&) {
    // Exiting anyway; the run's error has been reported.
  }
}

void Distributed::Shutdown() {
  if (groups_->shut_down) return;
  groups_->shut_down = true;
  if (groups_->nccl) groups_->nccl->shutdown();
  groups_->gloo->shutdown();
}

// The NCCL group, formed on first use (bound to `device` when given); throws when it cannot be.
static c10d::Backend& Nccl(Distributed::Groups& groups, int rank, int size,
                           std::chrono::milliseconds timeout,
                           const std::optional<torch::Device>& device) {
  if (!groups.nccl_tried) {
    groups.nccl_tried = true;
    try {
      groups.nccl = MakeNcclBackend(c10::make_intrusive<c10d::PrefixStore>("nccl/", groups.store),
                                    rank, size, timeout, device);
    } catch (const std::exception& e) {
      const std::string message = e.what();
      throw Error(absl::UnavailableError(absl::StrCat(
          "rank ", rank, " of ", size, ": the NCCL process group did not form",
          device ? " on " + device->str() : std::string(), " (",
          message.substr(0, message.find('\n')),
          "). Run with NCCL_DEBUG=INFO to see why; with several network interfaces set "
          "NCCL_SOCKET_IFNAME")));
    }
  }
  if (!groups.nccl) {
    throw Error(absl::FailedPreconditionError(
        "distributed training on CUDA needs NCCL, and this kdhost was built without it"));
  }
  return *groups.nccl;
}

void Distributed::UseDevice(const torch::Device& device) {
  if (!device.is_cuda()) return;
  if (groups_->nccl_device && *groups_->nccl_device != device) {
    throw Error(absl::FailedPreconditionError(absl::StrCat(
        "rank ", rank(), ": this stage trains on ", device.str(),
        " but an earlier stage of the run used ", groups_->nccl_device->str(),
        "; a process of a data-parallel run keeps one GPU: give every stage the same run.device "
        "(\"auto\" or \"cuda\" take the GPU of LOCAL_RANK)")));
  }
  groups_->nccl_device = device;
  // Formed here, bound to the device, unless a collective on CUDA tensors formed it before.
  Nccl(*groups_, rank(), world_size(), timeout_, device);
}

absl::StatusOr<std::unique_ptr<Distributed>> Distributed::Connect(
    const LaunchEnv& env, std::chrono::milliseconds timeout) {
  auto groups = std::make_unique<Groups>();
  const std::string where = absl::StrCat(env.master_addr, ":", env.master_port);
  try {
    c10d::TCPStoreOptions options;
    options.port = static_cast<std::uint16_t>(env.master_port);
    options.isServer = env.rank == 0 && !env.agent_store;
    options.numWorkers = env.world_size;
    options.waitWorkers = !env.agent_store;
    options.timeout = timeout;
    options.multiTenant = true;
    auto tcp = c10::make_intrusive<c10d::TCPStore>(env.master_addr, options);
    // A key space of our own: under torchrun the agent's store also holds the rendezvous, and a
    // restarted job must not read the keys of the attempt before.
    groups->store = c10::make_intrusive<c10d::PrefixStore>(
        absl::StrCat("kdhost/", env.restart_count, "/"), tcp);
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat(
        "rank ", env.rank, " of ", env.world_size, ": no rendezvous at ", where, " within ",
        timeout.count() / 1000, " s (", e.what(),
        "). Check that MASTER_ADDR/MASTER_PORT name rank 0's machine and a free port, that every "
        "rank was started, and that no firewall is in the way"));
  }
  try {
    auto options = c10d::ProcessGroupGloo::Options::create(timeout);
    const char* ifname = std::getenv("GLOO_SOCKET_IFNAME");
    if (ifname != nullptr && *ifname != '\0') {
      for (absl::string_view name : absl::StrSplit(ifname, ',', absl::SkipEmpty())) {
        options->devices.push_back(
            c10d::ProcessGroupGloo::createDeviceForInterface(std::string(name)));
      }
    } else {
      options->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
    }
    groups->gloo = c10::make_intrusive<c10d::ProcessGroupGloo>(
        c10::make_intrusive<c10d::PrefixStore>("gloo/", groups->store), env.rank, env.world_size,
        options);
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat(
        "rank ", env.rank, " of ", env.world_size, ": the Gloo process group did not form (",
        e.what(), "); with several network interfaces set GLOO_SOCKET_IFNAME"));
  }
  return std::unique_ptr<Distributed>(new Distributed(env, timeout, std::move(groups)));
}

namespace {

// Waits for a collective, turning c10d's errors into messages that say what happened. On CUDA
// (`on_gpu`) the wait orders the current stream after NCCL's and returns; the process group's
// watchdog enforces the timeout.
void Wait(const c10::intrusive_ptr<c10d::Work>& work, int rank, std::chrono::milliseconds timeout,
          const std::string& what, bool on_gpu) {
  try {
    if (on_gpu) {
      work->wait();
    } else {
      work->wait(timeout);
    }
  } catch (const std::exception& e) {
    const std::string message = e.what();
    const std::string first_line = message.substr(0, message.find('\n'));
    if (absl::StrContains(message, "imed out") || absl::StrContains(message, "imeout")) {
      throw Error(absl::DeadlineExceededError(absl::StrCat(
          "distributed ", what, ": rank ", rank, " got no answer from the other ranks within ",
          timeout.count() / 1000,
          " s (run.dist_timeout_s). A rank is stuck or far behind; its output says where. (",
          first_line, ")")));
    }
    throw Error(absl::UnavailableError(
        absl::StrCat("distributed ", what, ": rank ", rank,
                     " lost contact with the other ranks; one of them probably failed or was "
                     "killed, and its output says why (",
                     first_line, ")")));
  }
}

template <typename F>
void Collective(int rank, std::chrono::milliseconds timeout, const std::string& what, bool on_gpu,
                F&& start) {
  c10::intrusive_ptr<c10d::Work> work;
  try {
    work = start();
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    const std::string message = e.what();
    throw Error(absl::UnavailableError(absl::StrCat("distributed ", what, ": rank ", rank, ": ",
                                                    message.substr(0, message.find('\n')))));
  }
  Wait(work, rank, timeout, what, on_gpu);
}

}  // namespace

// The backend for tensors on `device`.
static c10d::Backend& BackendFor(Distributed::Groups& groups, const torch::Device& device, int rank,
                                 int size, std::chrono::milliseconds timeout) {
  if (!device.is_cuda()) return *groups.gloo;
  return Nccl(groups, rank, size, timeout, std::nullopt);
}

void Distributed::Broadcast(std::vector<torch::Tensor>& tensors, const std::string& what) {
  for (torch::Tensor& t : tensors) {
    if (!t.defined() || t.numel() == 0) continue;
    c10d::Backend& backend = BackendFor(*groups_, t.device(), rank(), world_size(), timeout_);
    torch::Tensor contiguous = t.is_contiguous() ? t : t.contiguous();
    std::vector<at::Tensor> one = {contiguous};
    c10d::BroadcastOptions options;
    options.rootRank = 0;
    options.timeout = timeout_;
    Collective(rank(), timeout_, what, t.is_cuda(),
               [&] { return backend.broadcast(one, options); });
    if (!t.is_contiguous()) t.copy_(contiguous);
  }
}

std::vector<std::vector<size_t>> GroupIntoBuckets(const std::vector<torch::Tensor>& tensors,
                                                  const std::vector<size_t>& order,
                                                  int64_t bucket_bytes) {
  std::vector<std::vector<size_t>> buckets;
  int64_t bytes = 0;
  for (size_t i : order) {
    const torch::Tensor& t = tensors[i];
    const int64_t size = t.numel() * static_cast<int64_t>(t.element_size());
    bool fresh = buckets.empty() || bytes + size > bucket_bytes;
    if (!fresh) {
      const torch::Tensor& head = tensors[buckets.back().front()];
      fresh = head.scalar_type() != t.scalar_type() || head.device() != t.device();
    }
    if (fresh) {
      buckets.emplace_back();
      bytes = 0;
    }
    buckets.back().push_back(i);
    bytes += size;
  }
  return buckets;
}

void Distributed::AllReduceSum(std::vector<torch::Tensor>& tensors, const std::string& what,
                               int64_t bucket_bytes) {
  torch::NoGradGuard no_grad;
  std::vector<size_t> order;
  for (size_t i = 0; i < tensors.size(); ++i) {
    if (tensors[i].defined() && tensors[i].numel() > 0) order.push_back(i);
  }
  struct Bucket {
    std::vector<size_t> members;
    torch::Tensor flat;
    std::unique_ptr<PendingSum> sum;
  };
  std::vector<Bucket> buckets;
  for (std::vector<size_t>& members : GroupIntoBuckets(tensors, order, bucket_bytes)) {
    Bucket& bucket = buckets.emplace_back();
    bucket.members = std::move(members);
    std::vector<torch::Tensor> parts;
    for (size_t i : bucket.members) parts.push_back(tensors[i].reshape({-1}));
    bucket.flat = torch::cat(parts);
    bucket.sum = StartAllReduceSum(bucket.flat, what);
  }
  for (Bucket& bucket : buckets) {
    bucket.sum->Finish();
    int64_t offset = 0;
    for (size_t i : bucket.members) {
      torch::Tensor& t = tensors[i];
      const int64_t n = t.numel();
      t.copy_(bucket.flat.narrow(0, offset, n).view_as(t));
      offset += n;
    }
  }
}

namespace {

class GlooOrNcclSum : public Distributed::PendingSum {
 public:
  GlooOrNcclSum(c10::intrusive_ptr<c10d::Work> work, int rank, std::chrono::milliseconds timeout,
                std::string what, bool on_gpu)
      : work_(std::move(work)),
        rank_(rank),
        on_gpu_(on_gpu),
        timeout_(timeout),
        what_(std::move(what)) {}
  void Finish() override { Wait(work_, rank_, timeout_, what_, on_gpu_); }

 private:
  c10::intrusive_ptr<c10d::Work> work_;
  int rank_;
  bool on_gpu_;
  std::chrono::milliseconds timeout_;
  std::string what_;
};

}  // namespace

std::unique_ptr<Distributed::PendingSum> Distributed::StartAllReduceSum(const torch::Tensor& flat,
                                                                        const std::string& what) {
  c10d::Backend& backend = BackendFor(*groups_, flat.device(), rank(), world_size(), timeout_);
  std::vector<at::Tensor> one = {flat};
  c10d::AllreduceOptions options;
  options.reduceOp = c10d::ReduceOp::SUM;
  options.timeout = timeout_;
  try {
    return std::make_unique<GlooOrNcclSum>(backend.allreduce(one, options), rank(), timeout_, what,
                                           flat.is_cuda());
  } catch (const std::exception& e) {
    const std::string message = e.what();
    throw Error(absl::UnavailableError(absl::StrCat("distributed ", what, ": rank ", rank(), ": ",
                                                    message.substr(0, message.find('\n')))));
  }
}

void Distributed::Barrier(const std::string& what) {
  // A one-element all-reduce: unlike Gloo's barrier it honours the per-call timeout.
  std::vector<torch::Tensor> token = {torch::zeros({1})};
  AllReduceSum(token, what);
}

std::string Distributed::BroadcastBytes(const std::string& bytes, const std::string& what) {
  std::vector<torch::Tensor> size = {torch::tensor({static_cast<int64_t>(bytes.size())})};
  Broadcast(size, what);
  const int64_t n = size[0].item<int64_t>();
  std::vector<torch::Tensor> data = {torch::zeros({n}, torch::kUInt8)};
  if (is_main()) std::memcpy(data[0].data_ptr(), bytes.data(), bytes.size());
  Broadcast(data, what);
  return std::string(static_cast<const char*>(data[0].data_ptr()), static_cast<size_t>(n));
}

// Every rank's byte count, in rank order, on every rank.
static torch::Tensor ExchangeSizes(Distributed& dist, size_t mine, const std::string& what) {
  std::vector<torch::Tensor> sizes = {torch::zeros({dist.world_size()}, torch::kLong)};
  sizes[0][dist.rank()] = static_cast<int64_t>(mine);
  dist.AllReduceSum(sizes, what);
  return sizes[0];
}

std::vector<std::string> Distributed::AllGatherBytes(const std::string& bytes,
                                                     const std::string& what) {
  const torch::Tensor sizes = ExchangeSizes(*this, bytes.size(), what);
  const int64_t longest = std::max<int64_t>(1, sizes.max().item<int64_t>());
  // Each rank writes its bytes into its own row; the sum is every row.
  std::vector<torch::Tensor> rows = {torch::zeros({world_size(), longest}, torch::kUInt8)};
  std::memcpy(rows[0][rank()].data_ptr(), bytes.data(), bytes.size());
  AllReduceSum(rows, what);
  std::vector<std::string> out;
  for (int r = 0; r < world_size(); ++r) {
    out.emplace_back(static_cast<const char*>(rows[0][r].data_ptr()),
                     static_cast<size_t>(sizes[r].item<int64_t>()));
  }
  return out;
}

std::vector<std::string> Distributed::GatherBytes(const std::string& bytes,
                                                  const std::string& what) {
  const torch::Tensor sizes = ExchangeSizes(*this, bytes.size(), what);
  const int64_t longest = std::max<int64_t>(1, sizes.max().item<int64_t>());
  torch::Tensor padded = torch::zeros({longest}, torch::kUInt8);
  std::memcpy(padded.data_ptr(), bytes.data(), bytes.size());
  std::vector<std::vector<at::Tensor>> outputs;  // only the root receives
  if (is_main()) {
    outputs.emplace_back();
    for (int r = 0; r < world_size(); ++r) {
      outputs[0].push_back(torch::zeros({longest}, torch::kUInt8));
    }
  }
  std::vector<at::Tensor> inputs = {padded};
  c10d::GatherOptions options;
  options.rootRank = 0;
  options.timeout = timeout_;
  Collective(rank(), timeout_, what, false,
             [&] { return groups_->gloo->gather(outputs, inputs, options); });
  std::vector<std::string> out;
  if (!is_main()) return out;
  for (int r = 0; r < world_size(); ++r) {
    out.emplace_back(static_cast<const char*>(outputs[0][static_cast<size_t>(r)].data_ptr()),
                     static_cast<size_t>(sizes[r].item<int64_t>()));
  }
  return out;
}

}  // namespace kd::host
