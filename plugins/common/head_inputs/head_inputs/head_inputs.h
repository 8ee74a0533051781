// What a multi-label head reads from its context: its class count, and the backbone feature it sits
// on.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "kd/model.h"
#include "kd/options.h"
#include "kd/registry.h"

namespace head_inputs {

// The num_classes option, or with num_classes = 0 the number of class names of the training split
// (BuildContext::dataset_info()).
inline int64_t ResolveNumClasses(const kd::Options& options, const kd::BuildContext& ctx) {
  const int64_t num_classes = options.Int("num_classes");
  if (num_classes > 0) return num_classes;
  const kd::DatasetInfo* info = ctx.dataset_info();
  if (info == nullptr) {
    options.Fail("num_classes",
                 "num_classes = 0 takes the number of labels from the training data, but this "
                 "head is built without a data set (outside training, or from an export without "
                 "class names); set num_classes to the number of labels");
  }
  if (info->class_names.empty()) {
    options.Fail("num_classes",
                 absl::StrCat("num_classes = 0 takes the number of labels from the training data, "
                              "but its data set",
                              info->task.empty() ? "" : absl::StrCat(" (task '", info->task, "')"),
                              " names no classes; set num_classes to the number of labels"));
  }
  return static_cast<int64_t>(info->class_names.size());
}

struct HeadInput {
  std::string feature;  // e.g. "feat.layer4"
  int64_t channels = 0;
};

// The backbone feature named by the `in_feature` option (its deepest one when empty) and its
// channels; `head` names the head in messages.
inline HeadInput ResolveHeadInput(const kd::Options& options, const kd::BuildContext& ctx,
                                  const char* head) {
  const kd::Backbone* backbone = ctx.backbone();
  if (backbone == nullptr) {
    options.Fail("", absl::StrCat(head,
                                  " reads its input from a backbone: use it as the `head` of "
                                  "a model with a backbone, e.g. core::BackboneHead"));
  }
  const std::vector<std::string> names = backbone->FeatureNames();
  if (names.empty())
    options.Fail("", absl::StrCat("the backbone has no features for ", head, " to read"));
  HeadInput input{options.String("in_feature"), 0};
  if (input.feature.empty()) {
    input.feature = names.back();
  } else if (std::find(names.begin(), names.end(), input.feature) == names.end()) {
    options.Fail("in_feature", absl::StrCat("the backbone has no feature '", input.feature,
                                            "'; it has ", absl::StrJoin(names, ", ")));
  }
  input.channels = backbone->FeatureChannels(input.feature);
  return input;
}

}  // namespace head_inputs
