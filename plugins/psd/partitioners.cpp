// The partition producers: psd::CGP and psd::DGP (spectral partitions of the co-occurrence and
// dis-occurrence graphs of the stage's training labels) and psd::FromFile (a partition in the
// official JSON format). Each writes a partition artefact (partition.h).
#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "components.h"
#include "graph_partition.h"
#include "kd/error.h"
#include "kd/plugin.h"
#include "kd/producer.h"
#include "label_statistics.h"
#include "partition.h"

namespace psd {

namespace {

// Writes `text` to `path`; throws kd::Error when it cannot.
void WriteText(const std::filesystem::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
  out.close();
  if (!out) {
    throw kd::Error(absl::InternalError(absl::StrCat("cannot write ", path.string())));
  }
}

std::string ReadText(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw kd::Error(absl::NotFoundError(absl::StrCat("cannot read ", path.string())));
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// A producer of one partition of the labels: of the stage's training labels, or of the label
// statistics in a file (`statistics`) when the subclass takes one. Subclasses compute it.
class PartitionProducer : public kd::Producer {
 public:
  explicit PartitionProducer(const kd::Options& o)
      : where_(o), statistics_(o.Has("statistics") ? o.String("statistics") : "") {}

  void Produce(const kd::ProducerInput& input, const std::filesystem::path& dir) const override {
    Cooccurrence stats;
    std::vector<std::string> class_names;
    if (!statistics_.empty()) {
      auto read = ParseLabelStatistics(ReadText(statistics_), statistics_);
      if (!read.ok()) where_.Fail("statistics", std::string(read.status().message()));
      stats = read->stats;
      class_names = read->class_names;
    } else {
      const std::shared_ptr<kd::Dataset> train = input.train_set();
      const torch::Tensor labels = LabelMatrix(*train);
      if (labels.dim() != 2 || labels.size(0) == 0) {
        where_.Fail("", absl::StrCat("partitions need a non-empty label matrix [N, K] from the "
                                     "stage's data.train; it gave shape ",
                                     c10::str(labels.sizes())));
      }
      stats = CountCooccurrence(labels);
      class_names = train->Info().class_names;
    }
    const int64_t labels = stats.counts.size(0);
    LabelPartition partition;
    try {
      partition = Partition(stats);
    } catch (const kd::Error&) {
      throw;
    } catch (const std::exception& e) {
      where_.Fail("", absl::StrCat("partitioning failed: ", e.what()));
    }
    if (absl::Status valid = CheckPartition(partition, labels); !valid.ok()) {
      where_.Fail("",
                  absl::StrCat(where_.Type(), " returned an invalid partition: ", valid.message()));
    }
    std::string names;
    for (const std::string& name : class_names) absl::StrAppend(&names, name, "\n");
    WriteText(dir / kClassNamesFile, names);
    WriteText(dir / kPartitionFile, PartitionToJson(partition));
  }

  std::string Describe(const std::filesystem::path& dir) const override {
    const std::filesystem::path file = dir / kPartitionFile;
    auto partition = PartitionFromJson(ReadText(file), file.string());
    if (!partition.ok()) throw kd::Error(partition.status());
    std::vector<std::string> names;
    std::error_code ec;
    if (std::filesystem::exists(dir / kClassNamesFile, ec)) {
      names = absl::StrSplit(ReadText(dir / kClassNamesFile), '\n', absl::SkipEmpty());
    }
    return FormatPartition(*partition, names);
  }

 protected:
  virtual LabelPartition Partition(const Cooccurrence& stats) const = 0;

 private:
  kd::Options where_;
  std::string statistics_;
};

class GraphPartitioner : public PartitionProducer {
 public:
  GraphPartitioner(const kd::Options& o, Graph graph)
      : PartitionProducer(o),
        graph_(graph),
        groups_(o.Int("groups")),
        gamma_(o.Float("gamma")),
        restarts_(o.Int("restarts")),
        n_init_(o.Int("kmeans_init")),
        seed_(static_cast<uint64_t>(o.Int("seed"))) {}

  LabelPartition Partition(const Cooccurrence& stats) const override {
    return SpectralPartition(GraphAffinity(stats, graph_, gamma_), groups_, restarts_, n_init_,
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
      .Int("restarts", 4,
           "spectral clusterings tried; the best Calinski–Harabasz score wins (the official "
           "script's four runs, one per ignored gamma)")
      .Min(1)
      .Int("kmeans_init", 20,
           "greedy k-means++ restarts within each clustering (sklearn's n_init, the official 20)")
      .Min(1)
      .Int("seed", 0, "seed of the k-means restarts")
      .String("statistics", "",
              "a JSON file of label statistics to partition instead of the stage's data.train: "
              "{\"label_counts\": [n_i], \"cooccurrence\": [[n_ij]], \"class_names\": [...]} "
              "(ML-GCN's \"nums\" and \"adj\" are read too); a relative path is relative to the "
              "working directory");
}

class FilePartitioner : public PartitionProducer {
 public:
  explicit FilePartitioner(const kd::Options& o) : PartitionProducer(o), path_(o.String("path")) {
    std::ifstream in(path_);
    if (!in) o.Fail("path", absl::StrCat("cannot read the partition file ", path_));
    std::stringstream text;
    text << in.rdbuf();
    auto partition = PartitionFromJson(text.str(), path_);
    if (!partition.ok()) o.Fail("path", std::string(partition.status().message()));
    partition_ = *partition;
  }

  LabelPartition Partition(const Cooccurrence&) const override { return partition_; }

 private:
  std::string path_;
  LabelPartition partition_;
};

}  // namespace

void RegisterPartitionProducers(kd::Registrar& r) {
  r.Add(kd::Kind::kProducer, "CGP",
        "PSD co-occurrence graph partition: spectral clustering of W = S into K groups",
        GraphSchema(0.5), [](const kd::Options& o, const kd::BuildContext&) {
          return std::make_shared<GraphPartitioner>(o, Graph::kCooccurrence);
        });
  // The released DGP partitions fit γ ≈ 1/3; γ = 0.5 gives degenerate 79/1 cuts on COCO.
  r.Add(kd::Kind::kProducer, "DGP",
        "PSD dis-occurrence graph partition: spectral clustering of W = 1 − S into K groups",
        GraphSchema(1.0 / 3.0), [](const kd::Options& o, const kd::BuildContext&) {
          return std::make_shared<GraphPartitioner>(o, Graph::kDisoccurrence);
        });
  r.Add(
      kd::Kind::kProducer, "FromFile",
      "a partition read from a file in the official PSD JSON format (e.g. the released ones)",
      kd::Schema().Required("path", kd::OptionType::kString,
                            "the JSON file: a list of objects mapping label ids to local indices"),
      [](const kd::Options& o, const kd::BuildContext&) {
        return std::make_shared<FilePartitioner>(o);
      });
}

}  // namespace psd
