#include "partition_file.h"

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "kd/error.h"

namespace psd {

kd::Schema PartitionRefSchema() {
  return kd::Schema()
      .Required("from_stage", kd::OptionType::kString, "the stage that made the partition")
      .String("name", "cgp", "the partition's name in that stage (its `artifacts` entry)");
}

LabelPartition ReadStagePartition(const kd::BuildContext& ctx, const std::string& stage,
                                  const std::string& name, const kd::Options& where) {
  std::filesystem::path path;
  try {
    path = ctx.ArtifactDir(stage, name) / kPartitionFile;
  } catch (const kd::Error& e) {
    where.Fail("from_stage", std::string(e.status().message()));
  }
  std::ifstream in(path);
  if (!in) where.Fail("from_stage", absl::StrCat("cannot read ", path.string()));
  std::stringstream text;
  text << in.rdbuf();
  auto partition = PartitionFromJson(text.str(), path.string());
  if (!partition.ok()) where.Fail("", std::string(partition.status().message()));
  return *partition;
}

}  // namespace psd
