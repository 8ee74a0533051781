// Reading a partition made by an earlier stage's partition producer.
#pragma once

#include "kd/registry.h"
#include "partition.h"

namespace psd {

// { from_stage = "<partition stage>", name = "<partition name>" }
kd::Schema PartitionRefSchema();

// The partition `name` made by the finished stage `stage` (its artefact `name`). Throws
// kd::Error located at the table `where` when it cannot be read.
LabelPartition ReadStagePartition(const kd::BuildContext& ctx, const std::string& stage,
                                  const std::string& name, const kd::Options& where);

}  // namespace psd
