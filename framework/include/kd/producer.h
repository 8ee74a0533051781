// Producers: the components of a stage that trains nothing but writes files for later stages to
// read by name (PSD's label partitions are one). A stage with `artifacts` runs each entry's
// producer once and keeps what it wrote in the stage directory:
//   [stages.partition]
//   artifacts = [{ name = "cgp", producer = { type = "psd::CGP", groups = 3 } }]
// writes <stage dir>/artifacts/cgp/, which a later stage that names the stage with a `from_stage`
// key finds with BuildContext::ArtifactDir("partition", "cgp").
#pragma once

#include <filesystem>
#include <functional>
#include <memory>
#include <string>

#include "kd/component.h"
#include "kd/dataset.h"

namespace kd {

struct ProducerInput {
  // The stage's `data.train`, built on the first call (so a producer that reads no data builds
  // none). Throws kd::Error located at the stage's `data.train` when the stage has none.
  std::function<std::shared_ptr<Dataset>()> train_set;
};

class Producer : public Component {
 public:
  // Writes the artefact's files into `dir`, which exists and is empty. The host moves the directory
  // into place only after Produce returned, so a failure or a crash leaves no half-written
  // artefact. Runs once per stage, in the process that writes files (rank 0). Throw kd::Error
  // (e.g. through Options::Fail) to refuse.
  virtual void Produce(const ProducerInput& input, const std::filesystem::path& dir) const = 0;
  // A few lines saying what `dir` holds (e.g. a partition's groups), printed when the artefact is
  // made and by `kdhost produce`. The default says nothing.
  virtual std::string Describe(const std::filesystem::path& dir) const;
};

}  // namespace kd
