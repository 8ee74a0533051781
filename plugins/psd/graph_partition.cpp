#include "graph_partition.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>

#include "absl/strings/str_cat.h"
#include "kd/error.h"
#include "kd/rng.h"

namespace psd {

Cooccurrence CountCooccurrence(const torch::Tensor& labels) {
  const torch::Tensor present = (labels > 0.5).to(torch::kFloat64);
  Cooccurrence stats;
  stats.counts = present.sum(0);
  stats.pairs = present.t().matmul(present);
  stats.pairs.fill_diagonal_(0.0);
  return stats;
}

torch::Tensor ConditionalProbability(const Cooccurrence& stats) {
  const torch::Tensor denominator = stats.counts.unsqueeze(0);  // n_j, broadcast over rows i
  return torch::where(denominator > 0, stats.pairs / denominator.clamp_min(1.0),
                      torch::zeros_like(stats.pairs));
}

torch::Tensor SymmetricAffinity(const torch::Tensor& conditional, double gamma) {
  const torch::Tensor powered = conditional.pow(gamma);
  return (powered + powered.t()) / 2.0;
}

torch::Tensor GraphAffinity(const torch::Tensor& labels, Graph graph, double gamma) {
  return GraphAffinity(CountCooccurrence(labels), graph, gamma);
}

torch::Tensor GraphAffinity(const Cooccurrence& stats, Graph graph, double gamma) {
  const torch::Tensor s = SymmetricAffinity(ConditionalProbability(stats), gamma);
  return graph == Graph::kCooccurrence ? s : 1.0 - s;
}

torch::Tensor SpectralEmbedding(const torch::Tensor& affinity, int64_t k) {
  torch::Tensor w = affinity.to(torch::kFloat64).clone();
  w.fill_diagonal_(0.0);
  const torch::Tensor degree = w.sum(1);
  const torch::Tensor isolated = degree == 0;
  const torch::Tensor dd = torch::where(isolated, torch::ones_like(degree), degree.sqrt());
  torch::Tensor laplacian = -w / (dd.unsqueeze(1) * dd.unsqueeze(0));
  laplacian.diagonal().copy_(1.0 - isolated.to(torch::kFloat64));
  const auto eig = torch::linalg_eigh(laplacian);  // eigenvalues ascending
  torch::Tensor embedding = std::get<1>(eig).narrow(1, 0, k).clone() / dd.unsqueeze(1);
  for (int64_t j = 0; j < k; ++j) {
    torch::Tensor column = embedding.select(1, j);
    const int64_t at = column.abs().argmax().item<int64_t>();
    if (column[at].item<double>() < 0) column.neg_();
  }
  return embedding;
}

namespace {

// Greedy k-means++ seeding as sklearn's `_kmeans_plusplus` does it: the first centre uniformly;
// for each next one, 2 + ⌊ln k⌋ candidates drawn with probability proportional to the squared
// distance to the nearest centre so far, and the candidate that leaves the lowest potential
// (the sum of those squared distances once it is added) kept.
torch::Tensor SeedCentres(const torch::Tensor& points, int64_t k, kd::Rng& rng) {
  const int64_t n = points.size(0);
  const int64_t trials = 2 + static_cast<int64_t>(std::log(static_cast<double>(k)));
  std::vector<int64_t> chosen = {rng.UniformInt(0, n - 1)};
  torch::Tensor nearest = (points - points[chosen[0]]).pow(2).sum(1);
  double potential = nearest.sum().item<double>();
  while (static_cast<int64_t>(chosen.size()) < k) {
    const torch::Tensor cumulative = nearest.cumsum(0);
    const double* cum = cumulative.data_ptr<double>();
    int64_t best = -1;
    double best_potential = std::numeric_limits<double>::infinity();
    torch::Tensor best_nearest;
    for (int64_t t = 0; t < trials; ++t) {
      // np.searchsorted(cumsum, u · potential), clipped to the last point.
      const double target = rng.Uniform() * potential;
      const int64_t candidate =
          std::min<int64_t>(std::lower_bound(cum, cum + n, target) - cum, n - 1);
      const torch::Tensor updated =
          torch::minimum(nearest, (points - points[candidate]).pow(2).sum(1));
      const double candidate_potential = updated.sum().item<double>();
      if (candidate_potential < best_potential) {
        best = candidate;
        best_potential = candidate_potential;
        best_nearest = updated;
      }
    }
    chosen.push_back(best);
    nearest = best_nearest;
    potential = best_potential;
  }
  return points.index_select(0, torch::tensor(chosen));
}

}  // namespace

KMeansResult KMeans(const torch::Tensor& points_in, int64_t k, int64_t n_init, uint64_t seed) {
  const torch::Tensor points = points_in.to(torch::kFloat64);
  const int64_t n = points.size(0);
  if (k < 1 || k > n) {
    throw kd::Error(absl::InvalidArgumentError(
        absl::StrCat("k-means: cannot make ", k, " clusters of ", n, " points")));
  }
  // sklearn's tolerance: relative to the mean variance of the data.
  const double tolerance = 1e-4 * points.var(0, /*unbiased=*/false).mean().item<double>();
  KMeansResult best;
  best.inertia = std::numeric_limits<double>::infinity();
  for (int64_t run = 0; run < n_init; ++run) {
    kd::Rng rng(kd::Rng::Derive({seed, static_cast<uint64_t>(run)}));
    torch::Tensor centres = SeedCentres(points, k, rng);
    torch::Tensor assignment;
    for (int iteration = 0; iteration < 300; ++iteration) {
      assignment = torch::cdist(points, centres).argmin(1);
      torch::Tensor updated = centres.clone();
      for (int64_t c = 0; c < k; ++c) {
        const torch::Tensor members = assignment == c;
        if (members.any().item<bool>()) {
          updated[c] = points.index({members}).mean(0);
        } else {
          // An empty cluster takes the point farthest from its centre.
          const torch::Tensor distance =
              (points - centres.index_select(0, assignment)).pow(2).sum(1);
          updated[c] = points[distance.argmax().item<int64_t>()];
        }
      }
      const double shift = (updated - centres).pow(2).sum().item<double>();
      centres = updated;
      if (shift <= tolerance) break;
    }
    assignment = torch::cdist(points, centres).argmin(1);
    const double inertia =
        (points - centres.index_select(0, assignment)).pow(2).sum().item<double>();
    if (inertia < best.inertia) {
      best.inertia = inertia;
      best.assignment.assign(assignment.data_ptr<int64_t>(), assignment.data_ptr<int64_t>() + n);
    }
  }
  return best;
}

double CalinskiHarabasz(const torch::Tensor& points_in, const std::vector<int64_t>& assignment) {
  const torch::Tensor points = points_in.to(torch::kFloat64);
  const int64_t n = points.size(0);
  std::map<int64_t, std::vector<int64_t>> clusters;
  for (int64_t i = 0; i < n; ++i) clusters[assignment[static_cast<size_t>(i)]].push_back(i);
  const int64_t k = static_cast<int64_t>(clusters.size());
  if (k < 2 || k >= n) return 0.0;
  const torch::Tensor mean = points.mean(0);
  double between = 0, within = 0;
  for (const auto& [label, members] : clusters) {
    const torch::Tensor rows = points.index_select(0, torch::tensor(members));
    const torch::Tensor centre = rows.mean(0);
    between += static_cast<double>(members.size()) * (centre - mean).pow(2).sum().item<double>();
    within += (rows - centre).pow(2).sum().item<double>();
  }
  if (within == 0.0) return 1.0;
  return between * static_cast<double>(n - k) / (within * static_cast<double>(k - 1));
}

psd::LabelPartition GroupsOf(const std::vector<int64_t>& assignment) {
  std::map<int64_t, std::vector<int64_t>> clusters;
  for (size_t label = 0; label < assignment.size(); ++label) {
    clusters[assignment[label]].push_back(static_cast<int64_t>(label));
  }
  psd::LabelPartition partition;
  for (auto& [cluster, labels] : clusters) partition.groups.push_back(std::move(labels));
  std::sort(partition.groups.begin(), partition.groups.end(),
            [](const auto& a, const auto& b) { return a.front() < b.front(); });
  return partition;
}

psd::LabelPartition SpectralPartition(const torch::Tensor& affinity, int64_t k, int64_t restarts,
                                      int64_t n_init, uint64_t seed) {
  const int64_t n = affinity.size(0);
  if (k == 1) return GroupsOf(std::vector<int64_t>(static_cast<size_t>(n), 0));
  if (k > n) {
    throw kd::Error(absl::InvalidArgumentError(
        absl::StrCat("cannot split ", n, " labels into ", k, " groups")));
  }
  const torch::Tensor embedding = SpectralEmbedding(affinity, k);
  std::vector<int64_t> best;
  double best_score = -std::numeric_limits<double>::infinity();
  for (int64_t r = 0; r < restarts; ++r) {
    KMeansResult run =
        KMeans(embedding, k, n_init, kd::Rng::Derive({seed, 0x5053ULL, static_cast<uint64_t>(r)}));
    const double score = CalinskiHarabasz(affinity, run.assignment);
    if (score > best_score) {
      best_score = score;
      best = std::move(run.assignment);
    }
  }
  return GroupsOf(best);
}

}  // namespace psd
