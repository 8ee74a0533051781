// PSD's label graphs and their spectral partition (METHODS.md §1):
//   statistics  n_i (images with label i), n_ij (images with both i and j, zero diagonal)
//   P[i][j] = n_ij / n_j
//   S = (P^γ + (P^γ)ᵀ) / 2
//   CGP (co-occurrence graph):   W = S
//   DGP (dis-occurrence graph):  W = 1 − S
// and a spectral clustering of W as sklearn's SpectralClustering does it (normalised Laplacian
// embedding, seeded k-means with restarts), with the best of several restarts by the
// Calinski–Harabasz score on the rows of W.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <vector>

#include "partition.h"

namespace psd {

// n_i ([C]) and n_ij ([C, C], zero diagonal) from labels [N, C] (1 = present), in float64.
struct Cooccurrence {
  torch::Tensor counts;
  torch::Tensor pairs;
};
Cooccurrence CountCooccurrence(const torch::Tensor& labels);

// P[i][j] = n_ij / n_j (0 where label j never occurs).
torch::Tensor ConditionalProbability(const Cooccurrence& stats);

// S = (P^γ + (P^γ)ᵀ) / 2.
torch::Tensor SymmetricAffinity(const torch::Tensor& conditional, double gamma);

enum class Graph { kCooccurrence, kDisoccurrence };
// W = S (CGP) or 1 − S (DGP), from the labels or from their statistics.
torch::Tensor GraphAffinity(const torch::Tensor& labels, Graph graph, double gamma);
torch::Tensor GraphAffinity(const Cooccurrence& stats, Graph graph, double gamma);

// sklearn.manifold.spectral_embedding(W, n_components = k, norm_laplacian = True,
// drop_first = False): the k eigenvectors of the smallest eigenvalues of
// L = I − D^-½ W D^-½ (diagonal of W ignored, as scipy's laplacian does), each row divided by
// √degree, each column's sign fixed so that its largest-magnitude entry is positive. [C, k].
torch::Tensor SpectralEmbedding(const torch::Tensor& affinity, int64_t k);

struct KMeansResult {
  std::vector<int64_t> assignment;
  double inertia = 0;
};
// Lloyd's k-means with sklearn's greedy k-means++ seeding (2 + ⌊ln k⌋ candidates per centre),
// `n_init` seeded restarts, the lowest inertia kept. `points` [n, d]. Deterministic for a seed.
KMeansResult KMeans(const torch::Tensor& points, int64_t k, int64_t n_init, uint64_t seed);

// Calinski–Harabasz score of `assignment` on `points` [n, d], as sklearn computes it (1 when the
// within-cluster dispersion is 0).
double CalinskiHarabasz(const torch::Tensor& points, const std::vector<int64_t>& assignment);

// `assignment` (label -> cluster) as groups: ordered by their smallest label id, each group's
// labels ascending (a label's local index is its position).
psd::LabelPartition GroupsOf(const std::vector<int64_t>& assignment);

// The partition of W into k groups: `restarts` spectral clusterings (k-means with `n_init`
// restarts each, seeds derived from `seed`), the one with the highest Calinski–Harabasz score on
// the rows of W kept. The official code's partition script runs SpectralClustering
// (affinity = 'precomputed', n_init = 20) once for each of four `gamma` values, which a precomputed
// affinity ignores, so its search is restarts = 4, n_init = 20: the partitioners' defaults.
psd::LabelPartition SpectralPartition(const torch::Tensor& affinity, int64_t k, int64_t restarts,
                                      int64_t n_init, uint64_t seed);

}  // namespace psd
