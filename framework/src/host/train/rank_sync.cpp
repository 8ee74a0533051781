#include "host/train/rank_sync.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "kd/error.h"
#include "kd/rng.h"

namespace kd::host {

RankSync::RankSync(Distributed* dist, bool check_state, uint64_t seed)
    : dist_(dist), check_state_(check_state), seed_(seed) {}

bool RankSync::Agree(bool mine, const std::string& what) {
  return dist_ ? dist_->Rank0Decides(mine, what) : mine;
}

void RankSync::Broadcast(const NamedTensors& state) {
  if (!dist_) return;
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> tensors;
  for (const auto& [name, tensor] : state) tensors.push_back(tensor);
  dist_->Broadcast(tensors, "weight broadcast from rank 0");
}

void RankSync::BroadcastBuffers(torch::nn::Module& module) {
  if (!dist_) return;
  std::vector<torch::Tensor> buffers;
  for (const auto& item : module.named_buffers()) buffers.push_back(item.value());
  if (buffers.empty()) return;
  torch::NoGradGuard no_grad;
  dist_->Broadcast(buffers, "buffer broadcast from rank 0");
}

RankSync::StepCheck RankSync::CheckStep(bool finite, bool stop_requested) {
  if (!dist_) return {false, stop_requested};
  std::vector<torch::Tensor> flags = {
      torch::tensor({finite ? 0.0 : 1.0, stop_requested ? 1.0 : 0.0}, torch::kDouble)};
  dist_->AllReduceSum(flags, "loss check");
  const double not_finite = flags[0][0].item<double>(), stopping = flags[0][1].item<double>();
  return {not_finite > (finite ? 0.0 : 1.0), stopping > 0};
}

bool SameMoments(double sum, double squares, double sum0, double squares0, int64_t numel,
                 bool floating) {
  if (!floating) return sum == sum0 && squares == squares0;
  const double tolerance = 1e-4;
  // |sum| <= sqrt(n * squares): the scale of the sum.
  const double sum_scale = std::sqrt(static_cast<double>(numel) * std::max(squares, squares0));
  return std::abs(sum - sum0) <= tolerance * sum_scale + 1e-30 &&
         std::abs(squares - squares0) <= tolerance * std::max(squares, squares0) + 1e-30;
}

namespace {

// Every rank's (sum, sum of squares) of each tensor, in double precision: rank r's in row r.
torch::Tensor GatherMoments(Distributed& dist, const NamedTensors& state) {
  const int64_t count = static_cast<int64_t>(state.size());
  std::vector<torch::Tensor> table = {torch::zeros({dist.world_size(), count, 2}, torch::kDouble)};
  {
    torch::NoGradGuard no_grad;
    std::vector<torch::Tensor> moments;
    for (const auto& [name, tensor] : state) {
      if (!tensor.defined() || tensor.numel() == 0) {
        moments.push_back(torch::zeros({2}, torch::kDouble));
        continue;
      }
      const torch::Tensor values = tensor.detach().to(torch::kDouble);
      moments.push_back(torch::stack({values.sum(), values.square().sum()}).cpu());
    }
    if (count > 0) table[0][dist.rank()].copy_(torch::stack(moments));
  }
  dist.AllReduceSum(table, "state check");
  return table[0];
}

}  // namespace

// A tensor that differs was computed from one rank's own samples (a distiller's or a model's
// statistic), which a data-parallel run cannot keep.
void RankSync::CheckAgree(const NamedTensors& state, const std::string& stage,
                          const std::string& when) {
  if (!dist_ || !check_state_) return;
  const torch::Tensor table = GatherMoments(*dist_, state);
  const auto all = table.accessor<double, 3>();
  std::vector<std::string> differing;
  std::vector<int> ranks;
  for (int r = 1; r < dist_->world_size(); ++r) {
    bool rank_differs = false;
    for (size_t i = 0; i < state.size(); ++i) {
      const torch::Tensor& tensor = state[i].second;
      const bool floating = !tensor.defined() || tensor.is_floating_point();
      const int64_t k = static_cast<int64_t>(i);
      if (SameMoments(all[r][k][0], all[r][k][1], all[0][k][0], all[0][k][1],
                      tensor.defined() ? tensor.numel() : 0, floating)) {
        continue;
      }
      rank_differs = true;
      if (std::find(differing.begin(), differing.end(), state[i].first) == differing.end()) {
        differing.push_back(state[i].first);
      }
    }
    if (rank_differs) ranks.push_back(r);
  }
  if (differing.empty()) return;
  const size_t shown = std::min<size_t>(differing.size(), 5);
  throw Error(absl::FailedPreconditionError(absl::StrCat(
      "stage '", stage, "', ", when,
      ": the processes no longer hold the same state: ", differing.size(), " tensor(s) of rank(s) ",
      absl::StrJoin(ranks, ", "), " differ from rank 0's (",
      absl::StrJoin(differing.begin(), differing.begin() + static_cast<std::ptrdiff_t>(shown),
                    ", "),
      differing.size() > shown ? ", ..." : "",
      "). A distiller or model whose buffers hold state computed from its process's own samples "
      "must combine it over the processes (kd::dist::AllReduceSum, kd/dist.h) or keep it out of "
      "its buffers; run.dist_check_state = false skips this check")));
}

void RankSync::Reseed(int64_t step) {
  if (!dist_ || dist_->is_main()) return;
  torch::manual_seed(
      Rng::Derive({seed_, static_cast<uint64_t>(dist_->rank()), static_cast<uint64_t>(step)}));
}

void RankBatchNormSync::AllReduceSum(torch::Tensor& values) {
  std::vector<torch::Tensor> tensors = {values};
  dist_.AllReduceSum(tensors, "synchronised batch norm");
}

void PluginCollectives::AllReduceSum(torch::Tensor& tensor) {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> tensors = {tensor};
  dist_.AllReduceSum(tensors, "kd::dist::AllReduceSum (a plugin's)");
}

void PluginCollectives::Broadcast(torch::Tensor& tensor) {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> tensors = {tensor};
  dist_.Broadcast(tensors, "kd::dist::Broadcast (a plugin's)");
}

std::vector<std::string> UnsyncableNorms(const torch::nn::Module& root, const std::string& prefix) {
  std::vector<std::string> found;
  for (const auto& item : root.named_modules(prefix)) {
    const torch::nn::Module& m = *item.value();
    if (dynamic_cast<const torch::nn::BatchNorm1dImpl*>(&m) != nullptr ||
        dynamic_cast<const torch::nn::BatchNorm2dImpl*>(&m) != nullptr ||
        dynamic_cast<const torch::nn::BatchNorm3dImpl*>(&m) != nullptr) {
      found.push_back(item.key());
    }
  }
  return found;
}

}  // namespace kd::host
