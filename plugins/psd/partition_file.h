// Reading a partition written by an earlier partition stage.
#pragma once

#include "kd/partitioner.h"
#include "kd/registry.h"

namespace psd {

// { from_stage = "<partition stage>", name = "<partition name>" }
kd::Schema PartitionRefSchema();

// The partition `name` of the finished partition stage `stage` (its partition/<name>.json). Throws
// kd::Error located at the table `where` when it cannot be read.
kd::LabelPartition ReadStagePartition(const kd::BuildContext& ctx, const std::string& stage,
                                      const std::string& name, const kd::Options& where);

}  // namespace psd
