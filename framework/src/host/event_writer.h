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

namespace kd::host {

// CRC-32C (Castagnoli), and the masked form TFRecord stores.
uint32_t Crc32c(const void* data, size_t size);
uint32_t MaskedCrc32c(const void* data, size_t size);

class TensorBoardWriter {
 public:
  // Creates <dir>/events.out.tfevents.<time>.<host>.<pid>.
  explicit TensorBoardWriter(const std::filesystem::path& dir);
  bool ok() const { return out_.good(); }
  const std::filesystem::path& path() const { return path_; }

  void AddScalar(const std::string& tag, double value, int64_t step);
  void Flush() { out_.flush(); }

 private:
  void WriteRecord(const std::string& data);
  std::filesystem::path path_;
  std::ofstream out_;
};

// One JSON object per line, appended and flushed record by record.
class MetricsLog {
 public:
  using Value = std::variant<int64_t, double, std::string>;
  explicit MetricsLog(const std::filesystem::path& path);
  bool ok() const { return out_.good(); }
  void Write(const std::vector<std::pair<std::string, Value>>& record);

 private:
  std::ofstream out_;
};

std::string JsonEscape(const std::string& text);

}  // namespace kd::host
