// IDX parsing with zlib, and the process-wide cache of Fashion-MNIST splits.
#include "idx_reader.h"

#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <system_error>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "kd/error.h"

namespace fmnist_tasks {

namespace {

namespace fs = std::filesystem;

// IDX magic numbers: 0x0000, then the element type (0x08 = unsigned byte), then the number of
// dimensions.
constexpr uint32_t kImagesMagic = 0x0803;
constexpr uint32_t kLabelsMagic = 0x0801;
constexpr int64_t kFashionMnistSide = 28;
constexpr int64_t kFashionMnistClasses = 10;
// Refuse headers that promise more data than any IDX file of this kind could hold, instead of
// trying to allocate it.
constexpr uint64_t kMaxDataBytes = uint64_t{1} << 32;

using GzHandle = std::unique_ptr<gzFile_s, int (*)(gzFile)>;

absl::Status FileError(const fs::path& path, absl::string_view message) {
  return absl::InvalidArgumentError(absl::StrCat(path.string(), ": ", message));
}

// Reads exactly `size` bytes; a short read is a truncated file. `offset` and `expected` place
// the read within a larger one, for the message.
absl::Status ReadExactly(gzFile file, const fs::path& path, uint8_t* out, uint64_t size,
                         absl::string_view what, uint64_t offset = 0, uint64_t expected = 0) {
  uint64_t done = 0;
  while (done < size) {
    // gzread takes an unsigned int and returns an int, hence the chunks.
    const unsigned chunk = static_cast<unsigned>(std::min<uint64_t>(size - done, 1u << 30));
    const int n = gzread(file, out + done, chunk);
    if (n < 0) {
      int code = 0;
      const char* message = gzerror(file, &code);
      return FileError(path, absl::StrCat("cannot decompress: ", message));
    }
    if (n == 0) {
      return FileError(
          path, absl::StrCat("truncated: expected ", expected > 0 ? expected : size, " bytes of ",
                             what, " but the file ends after ", offset + done));
    }
    done += static_cast<uint64_t>(n);
  }
  return absl::OkStatus();
}

uint32_t BigEndian32(const uint8_t* bytes) {
  return (uint32_t{bytes[0]} << 24) | (uint32_t{bytes[1]} << 16) | (uint32_t{bytes[2]} << 8) |
         uint32_t{bytes[3]};
}

struct IdxFile {
  std::vector<int64_t> dims;
  std::vector<uint8_t> data;
};

// One IDX file of unsigned bytes whose magic number must be `magic` (which fixes the number of
// dimensions); `what` names the content in messages ("images", "labels").
absl::StatusOr<IdxFile> ReadIdxFile(const fs::path& path, uint32_t magic, absl::string_view what) {
  GzHandle file(gzopen(path.c_str(), "rb"), &gzclose);
  if (file == nullptr) {
    return FileError(path, absl::StrCat("cannot open: ", std::strerror(errno)));
  }
  uint8_t word[4];
  KD_RETURN_IF_ERROR(ReadExactly(file.get(), path, word, 4, "header"));
  const uint32_t found = BigEndian32(word);
  if (found != magic) {
    return FileError(
        path, absl::StrCat("not an IDX ", what, " file: magic number ", found, ", expected ", magic,
                           " (unsigned bytes, ", magic & 0xff, " dimensions)"));
  }
  IdxFile idx;
  uint64_t total = 1;
  for (uint32_t d = 0; d < (magic & 0xff); ++d) {
    KD_RETURN_IF_ERROR(ReadExactly(file.get(), path, word, 4, "header"));
    const uint32_t size = BigEndian32(word);
    if (size == 0 || __builtin_mul_overflow(total, uint64_t{size}, &total) ||
        total > kMaxDataBytes) {
      return FileError(
          path, absl::StrCat("implausible size ", size, " in dimension ", d, " of the header"));
    }
    idx.dims.push_back(size);
  }
  // Grow the buffer as the data arrives, so that a header promising more than the file holds
  // costs at most one chunk beyond the real data, not the promised size.
  constexpr uint64_t kChunk = uint64_t{1} << 24;
  for (uint64_t done = 0; done < total;) {
    const uint64_t next = std::min(total - done, kChunk);
    idx.data.resize(done + next);
    KD_RETURN_IF_ERROR(
        ReadExactly(file.get(), path, idx.data.data() + done, next, what, done, total));
    done += next;
  }
  uint8_t extra;
  if (gzread(file.get(), &extra, 1) != 0) {
    return FileError(path, absl::StrCat("has data after the ", total, " bytes of ", what,
                                        " its header declares; the file is corrupt"));
  }
  return idx;
}

// Identifies one version of a file, so that a file replaced on disk is read again.
std::string FileStamp(const fs::path& path) {
  std::error_code ec;
  const auto size = fs::file_size(path, ec);
  const auto time = fs::last_write_time(path, ec);
  return absl::StrCat(size, "@", time.time_since_epoch().count());
}

std::string MissingDataHint() {
  return "install Debian's Fashion-MNIST (apt-get install dataset-fashion-mnist) or set the "
         "dataset's `root` option to a directory holding train-images-idx3-ubyte.gz, "
         "train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz";
}

// Fashion-MNIST specifics on top of the IDX format: 28 x 28 images and labels 0..9.
absl::Status CheckFashionMnist(const IdxSplit& split, const fs::path& images_file,
                               const fs::path& labels_file) {
  if (split.rows != kFashionMnistSide || split.cols != kFashionMnistSide) {
    return FileError(images_file, absl::StrCat("images are ", split.rows, "x", split.cols,
                                               ", expected 28x28 Fashion-MNIST images"));
  }
  for (int64_t i = 0; i < split.count; ++i) {
    if (split.labels[i] >= kFashionMnistClasses) {
      return FileError(labels_file, absl::StrCat("label ", split.labels[i], " of item ", i,
                                                 " is outside the 10 Fashion-MNIST classes"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<IdxSplit> ReadIdxPair(const fs::path& images_file, const fs::path& labels_file) {
  KD_ASSIGN_OR_RETURN(IdxFile images, ReadIdxFile(images_file, kImagesMagic, "images"));
  KD_ASSIGN_OR_RETURN(IdxFile labels, ReadIdxFile(labels_file, kLabelsMagic, "labels"));
  if (images.dims[0] != labels.dims[0]) {
    return absl::InvalidArgumentError(absl::StrCat(images_file.string(), " holds ", images.dims[0],
                                                   " images but ", labels_file.string(), " holds ",
                                                   labels.dims[0], " labels"));
  }
  IdxSplit split;
  split.count = images.dims[0];
  split.rows = images.dims[1];
  split.cols = images.dims[2];
  split.pixels = std::move(images.data);
  split.labels = std::move(labels.data);
  return split;
}

absl::StatusOr<std::shared_ptr<const IdxSplit>> LoadFashionMnist(const fs::path& root,
                                                                 const std::string& split) {
  if (split != "train" && split != "test") {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown Fashion-MNIST split '", split, "'; expected train or test"));
  }
  std::error_code ec;
  if (!fs::is_directory(root, ec)) {
    return absl::NotFoundError(absl::StrCat("Fashion-MNIST directory ", root.string(),
                                            " does not exist; ", MissingDataHint()));
  }
  const std::string prefix = split == "train" ? "train" : "t10k";
  const fs::path images_file = root / absl::StrCat(prefix, "-images-idx3-ubyte.gz");
  const fs::path labels_file = root / absl::StrCat(prefix, "-labels-idx1-ubyte.gz");
  for (const fs::path& file : {images_file, labels_file}) {
    if (!fs::is_regular_file(file, ec)) {
      return absl::NotFoundError(absl::StrCat(file.string(), ": not found; ", MissingDataHint()));
    }
  }

  struct CacheEntry {
    std::string stamp;
    std::shared_ptr<const IdxSplit> split;
  };
  static std::mutex mutex;
  static auto* cache = new absl::flat_hash_map<std::string, CacheEntry>();
  const std::string key = absl::StrCat(fs::absolute(images_file).lexically_normal().string(), "|",
                                       fs::absolute(labels_file).lexically_normal().string());
  const std::string stamp = absl::StrCat(FileStamp(images_file), "|", FileStamp(labels_file));
  // Loading under the lock keeps concurrent first uses from reading the same files twice.
  std::lock_guard<std::mutex> lock(mutex);
  auto it = cache->find(key);
  if (it != cache->end() && it->second.stamp == stamp) return it->second.split;
  KD_ASSIGN_OR_RETURN(IdxSplit loaded, ReadIdxPair(images_file, labels_file));
  KD_RETURN_IF_ERROR(CheckFashionMnist(loaded, images_file, labels_file));
  auto shared = std::make_shared<const IdxSplit>(std::move(loaded));
  (*cache)[key] = CacheEntry{stamp, shared};
  return shared;
}

}  // namespace fmnist_tasks
