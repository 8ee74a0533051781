#include "kd/dataset.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "kd/error.h"
#include "kd/transform_list.h"

namespace kd {

TensorDict StackCollate(std::vector<TensorDict> samples) {
  TensorDict batch;
  if (samples.empty()) return batch;
  const std::vector<std::string> keys = samples.front().Keys();
  for (const std::string& key : keys) {
    std::vector<torch::Tensor> parts;
    parts.reserve(samples.size());
    for (size_t i = 0; i < samples.size(); ++i) {
      const torch::Tensor* t = samples[i].Find(key);
      if (t == nullptr) {
        throw Error(absl::InvalidArgumentError(
            absl::StrCat("cannot collate: sample ", i, " of the batch has no '", key, "' (it has ",
                         absl::StrJoin(samples[i].Keys(), ", "), ")")));
      }
      if (!parts.empty() && t->sizes() != parts.front().sizes()) {
        throw Error(absl::InvalidArgumentError(absl::StrCat(
            "cannot collate '", key, "': sample ", i, " has shape ", c10::str(t->sizes()),
            " but sample 0 has ", c10::str(parts.front().sizes()),
            "; give the dataset a Collate that pads, or make the shapes equal")));
      }
      if (!parts.empty() && t->scalar_type() != parts.front().scalar_type()) {
        // torch::stack would promote silently.
        throw Error(absl::InvalidArgumentError(absl::StrCat(
            "cannot collate '", key, "': sample ", i, " has dtype ",
            c10::toString(t->scalar_type()), " but sample 0 has ",
            c10::toString(parts.front().scalar_type()), "; make the dataset's dtypes equal")));
      }
      parts.push_back(*t);
    }
    batch.Set(key, torch::stack(parts));
  }
  return batch;
}

TensorDict Dataset::Collate(std::vector<TensorDict> samples) const {
  return StackCollate(std::move(samples));
}

DatasetInfo Dataset::Info() const { return {}; }

TransformList::TransformList(const Options& options, const BuildContext& ctx, const char* key) {
  for (const Options& table : options.SubList(key)) {
    transforms_.push_back(ctx.Build<Transform>(Kind::kTransform, table));
  }
}

TensorDict TransformList::Apply(TensorDict sample, Rng& rng) const {
  for (const auto& transform : transforms_) sample = transform->Apply(std::move(sample), rng);
  return sample;
}

torch::Tensor Dataset::Column(const std::string&) const { return {}; }

}  // namespace kd
