// Training records a person or a program can read: a JSON-lines metrics log and TensorBoard event
// files (TFRecord framing with masked CRC-32C, hand-encoded Event/Summary protobuf messages;
// scalars only).
#pragma once

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "host/files.h"

namespace kd::host {

// CRC-32C (Castagnoli), and the masked form TFRecord stores.
uint32_t Crc32c(const void* data, size_t size);
uint32_t MaskedCrc32c(const void* data, size_t size);

// Each record is written whole or not at all (AppendFile); a failed write returns the error, which
// names the file and the cause.
class TensorBoardWriter {
 public:
  // Creates <dir>/events.out.tfevents.<time>.<host>.<pid> and writes its first event.
  absl::Status Open(const std::filesystem::path& dir);
  const std::filesystem::path& path() const { return out_.path(); }

  absl::Status AddScalar(const std::string& tag, double value, int64_t step);

 private:
  absl::Status WriteRecord(const std::string& data);
  AppendFile out_;
};

// One JSON object per line, appended record by record, each line whole or not at all.
class MetricsLog {
 public:
  using Value = std::variant<int64_t, double, std::string>;
  absl::Status Open(const std::filesystem::path& path) { return out_.Open(path); }
  absl::Status Write(const std::vector<std::pair<std::string, Value>>& record);

 private:
  AppendFile out_;
};

std::string JsonEscape(const std::string& text);

}  // namespace kd::host
