// psd::GroupLabels: a dataset whose labels are one group of a partition. PSD's sub-task teachers
// train on every image of the task with their targets restricted to their group's labels, in the
// group's local order.
#include <torch/torch.h>

#include "absl/strings/str_cat.h"
#include "components.h"
#include "kd/plugin.h"
#include "partition_file.h"

namespace psd {

namespace {

class GroupLabels : public kd::Dataset {
 public:
  GroupLabels(const kd::Options& o, const kd::BuildContext& ctx)
      : base_(ctx.Build<kd::Dataset>(kd::Kind::kDataset, o.Sub("dataset"))) {
    const kd::Options partition = o.Sub("partition");
    const psd::LabelPartition groups = ReadStagePartition(ctx, partition.String("from_stage"),
                                                          partition.String("name"), partition);
    const int64_t group = o.Int("group");
    if (group < 0 || group >= static_cast<int64_t>(groups.groups.size())) {
      o.Fail("group", absl::StrCat("partition '", partition.String("name"), "' has ",
                                   groups.groups.size(), " groups (0..", groups.groups.size() - 1,
                                   "); there is no group ", group));
    }
    ids_ = torch::tensor(groups.groups[static_cast<size_t>(group)]);
    const kd::DatasetInfo base = base_->Info();
    info_.task = base.task;
    for (int64_t id : groups.groups[static_cast<size_t>(group)]) {
      if (static_cast<size_t>(id) >= base.class_names.size()) {
        o.Fail("partition", absl::StrCat("label ", id, " is outside the dataset's ",
                                         base.class_names.size(), " classes"));
      }
      info_.class_names.push_back(base.class_names[static_cast<size_t>(id)]);
    }
  }

  int64_t Size() const override { return base_->Size(); }

  kd::TensorDict Get(int64_t index, kd::Rng& rng) const override {
    kd::TensorDict sample = base_->Get(index, rng);
    sample.Set("labels", sample.at("labels").index_select(0, ids_));
    return sample;
  }

  kd::DatasetInfo Info() const override { return info_; }

  torch::Tensor Column(const std::string& key) const override {
    torch::Tensor column = base_->Column(key);
    if (key != "labels" || !column.defined()) return column;
    return column.index_select(1, ids_);
  }

 private:
  std::shared_ptr<kd::Dataset> base_;
  torch::Tensor ids_;
  kd::DatasetInfo info_;
};

}  // namespace

void RegisterGroupLabels(kd::Registrar& r) {
  r.Add(kd::Kind::kDataset, "GroupLabels",
        "a dataset with its labels restricted to one group of a partition (a PSD sub-task)",
        kd::Schema()
            .Nested("dataset", kd::Kind::kDataset, "the multi-label dataset")
            .Table("partition", PartitionRefSchema(),
                   "the partition, an artefact of an earlier stage")
            .Required("group", kd::OptionType::kInt, "index of the group (0-based)"),
        [](const kd::Options& o, const kd::BuildContext& ctx) {
          return std::make_shared<GroupLabels>(o, ctx);
        });
}

}  // namespace psd
