// Reader for the gzip-compressed IDX files of (Fashion-)MNIST, and a per-process cache of loaded
// Fashion-MNIST splits shared by every dataset of this plugin.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace fmnist_tasks {

// One split: `count` images of `rows` x `cols` unsigned bytes, row-major, and their labels.
struct IdxSplit {
  int64_t count = 0;
  int64_t rows = 0;
  int64_t cols = 0;
  std::vector<uint8_t> pixels;  // count * rows * cols
  std::vector<uint8_t> labels;  // count

  const uint8_t* Image(int64_t index) const { return pixels.data() + index * rows * cols; }
};

// Reads an image file (magic 2051) and a label file (magic 2049), gzip-compressed or not, and
// checks headers, sizes and that both hold the same number of items. Errors name the file.
absl::StatusOr<IdxSplit> ReadIdxPair(const std::filesystem::path& images_file,
                                     const std::filesystem::path& labels_file);

// The Fashion-MNIST split "train" or "test" under `root`, with the Debian package's file names
// ("train-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", ...). Loaded once per process and
// file version, so the train and validation datasets of a run share one copy. Thread-safe.
absl::StatusOr<std::shared_ptr<const IdxSplit>> LoadFashionMnist(const std::filesystem::path& root,
                                                                 const std::string& split);

}  // namespace fmnist_tasks
