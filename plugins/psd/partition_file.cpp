#include "partition_file.h"

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "kd/error.h"

namespace psd {

kd::Schema PartitionRefSchema() {
  return kd::Schema()
      .Required("from_stage", kd::OptionType::kString, "the partition stage")
      .String("name", "cgp", "the partition's name in that stage (its `partitions` entry)");
}

kd::LabelPartition ReadStagePartition(const kd::BuildContext& ctx, const std::string& stage,
                                      const std::string& name, const kd::Options& where) {
  const std::string file = absl::StrCat("partition/", name, ".json");
  std::filesystem::path path;
  try {
    path = ctx.StageFile(stage, file);
  } catch (const kd::Error& e) {
    where.Fail("from_stage", std::string(e.status().message()));
  }
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  auto partition = kd::PartitionFromJson(text.str(), path.string());
  if (!partition.ok()) where.Fail("", std::string(partition.status().message()));
  return *partition;
}

}  // namespace psd
