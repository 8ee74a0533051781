// Reading a partition written by an earlier partition stage.
#pragma once

#include "kd/partitioner.h"
#include "kd/registry.h"

namespace kd::psd {

// { from_stage = "<partition stage>", name = "<partition name>" }
Schema PartitionRefSchema();

// The partition `name` of the finished partition stage `stage` (its partition/<name>.json). Throws
// kd::Error located at the table `where` when it cannot be read.
LabelPartition ReadStagePartition(const BuildContext& ctx, const std::string& stage,
                                  const std::string& name, const Options& where);

}  // namespace kd::psd
