// Label partitioners: psd::CGP and psd::DGP (spectral partitions of the co-occurrence and
// dis-occurrence graphs) and psd::FromFile (a partition in the official JSON format).
#include <torch/torch.h>

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "components.h"
#include "graph_partition.h"
#include "kd/plugin.h"

namespace psd {

namespace {

class GraphPartitioner : public kd::Partitioner {
 public:
  GraphPartitioner(const kd::Options& o, Graph graph)
      : graph_(graph),
        groups_(o.Int("groups")),
        gamma_(o.Float("gamma")),
        restarts_(o.Int("restarts")),
        n_init_(o.Int("kmeans_init")),
        seed_(static_cast<uint64_t>(o.Int("seed"))) {}

  kd::LabelPartition Partition(const torch::Tensor& labels) const override {
    return SpectralPartition(GraphAffinity(labels, graph_, gamma_), groups_, restarts_, n_init_,
                             seed_);
  }

 private:
  Graph graph_;
  int64_t groups_;
  double gamma_;
  int64_t restarts_, n_init_;
  uint64_t seed_;
};

kd::Schema GraphSchema(double gamma) {
  return kd::Schema()
      .Int("groups", 5, "number of groups K")
      .Min(1)
      .Float("gamma", gamma, "exponent γ of the affinity S = (P^γ + (P^γ)ᵀ) / 2")
      .Min(0)
      .Int("restarts", 10, "spectral clusterings tried; the best Calinski–Harabasz score wins")
      .Min(1)
      .Int("kmeans_init", 10, "k-means restarts within each clustering (sklearn's n_init)")
      .Min(1)
      .Int("seed", 0, "seed of the k-means restarts");
}

class FilePartitioner : public kd::Partitioner {
 public:
  explicit FilePartitioner(const kd::Options& o) : path_(o.String("path")) {
    std::ifstream in(path_);
    if (!in) o.Fail("path", absl::StrCat("cannot read the partition file ", path_));
    std::stringstream text;
    text << in.rdbuf();
    auto partition = kd::PartitionFromJson(text.str(), path_);
    if (!partition.ok()) o.Fail("path", std::string(partition.status().message()));
    partition_ = *partition;
  }

  kd::LabelPartition Partition(const torch::Tensor&) const override { return partition_; }

 private:
  std::string path_;
  kd::LabelPartition partition_;
};

}  // namespace

void RegisterPartitioners(kd::Registrar& r) {
  r.Add(kd::Kind::kPartitioner, "CGP",
        "PSD co-occurrence graph partition: spectral clustering of W = S into K groups",
        GraphSchema(0.5), [](const kd::Options& o, const kd::BuildContext&) {
          return std::make_shared<GraphPartitioner>(o, Graph::kCooccurrence);
        });
  // The released DGP partitions fit γ ≈ 1/3; γ = 0.5 gives degenerate 79/1 cuts on COCO.
  r.Add(kd::Kind::kPartitioner, "DGP",
        "PSD dis-occurrence graph partition: spectral clustering of W = 1 − S into K groups",
        GraphSchema(1.0 / 3.0), [](const kd::Options& o, const kd::BuildContext&) {
          return std::make_shared<GraphPartitioner>(o, Graph::kDisoccurrence);
        });
  r.Add(
      kd::Kind::kPartitioner, "FromFile",
      "a partition read from a file in the official PSD JSON format (e.g. the released ones)",
      kd::Schema().Required("path", kd::OptionType::kString,
                            "the JSON file: a list of objects mapping label ids to local indices"),
      [](const kd::Options& o, const kd::BuildContext&) {
        return std::make_shared<FilePartitioner>(o);
      });
}

}  // namespace psd
