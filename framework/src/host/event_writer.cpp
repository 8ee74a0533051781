#include "host/event_writer.h"

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace kd::host {

namespace fs = std::filesystem;

namespace {

const uint32_t* Crc32cTable() {
  static const auto* table = [] {
    auto* t = new uint32_t[256];
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82f63b78u : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  return table;
}

double WallTime() {
  using namespace std::chrono;
  return duration<double>(system_clock::now().time_since_epoch()).count();
}

// Minimal protobuf wire encoding.
void Varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}
void Key(std::string& out, int field, int wire_type) { Varint(out, (field << 3) | wire_type); }
void Fixed64(std::string& out, int field, double v) {
  Key(out, field, 1);
  char bytes[8];
  std::memcpy(bytes, &v, 8);
  out.append(bytes, 8);
}
void Fixed32(std::string& out, int field, float v) {
  Key(out, field, 5);
  char bytes[4];
  std::memcpy(bytes, &v, 4);
  out.append(bytes, 4);
}
void Bytes(std::string& out, int field, const std::string& v) {
  Key(out, field, 2);
  Varint(out, v.size());
  out += v;
}
void Int64(std::string& out, int field, int64_t v) {
  Key(out, field, 0);
  Varint(out, static_cast<uint64_t>(v));
}

}  // namespace

uint32_t Crc32c(const void* data, size_t size) {
  const uint32_t* table = Crc32cTable();
  const auto* p = static_cast<const unsigned char*>(data);
  uint32_t crc = 0xffffffffu;
  for (size_t i = 0; i < size; ++i) crc = table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
  return crc ^ 0xffffffffu;
}

uint32_t MaskedCrc32c(const void* data, size_t size) {
  const uint32_t crc = Crc32c(data, size);
  return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
}

absl::Status TensorBoardWriter::Open(const fs::path& dir) {
  char host[256] = "localhost";
  gethostname(host, sizeof(host) - 1);
  const fs::path path =
      dir / absl::StrFormat("events.out.tfevents.%d.%s.%d", static_cast<int64_t>(WallTime()), host,
                            static_cast<int>(getpid()));
  absl::Status opened = out_.Open(path);
  if (!opened.ok()) return opened;
  // Event { wall_time = 1; file_version = 3 }
  std::string event;
  Fixed64(event, 1, WallTime());
  Bytes(event, 3, "brain.Event:2");
  return WriteRecord(event);
}

absl::Status TensorBoardWriter::AddScalar(const std::string& tag, double value, int64_t step) {
  // Summary.Value { tag = 1; simple_value = 2 }
  std::string summary_value;
  Bytes(summary_value, 1, tag);
  Fixed32(summary_value, 2, static_cast<float>(value));
  // Summary { repeated Value value = 1 }
  std::string summary;
  Bytes(summary, 1, summary_value);
  // Event { wall_time = 1; step = 2; summary = 5 }
  std::string event;
  Fixed64(event, 1, WallTime());
  Int64(event, 2, step);
  Bytes(event, 5, summary);
  return WriteRecord(event);
}

absl::Status TensorBoardWriter::WriteRecord(const std::string& data) {
  const uint64_t length = data.size();
  char header[8];
  std::memcpy(header, &length, 8);
  const uint32_t header_crc = MaskedCrc32c(header, 8);
  const uint32_t data_crc = MaskedCrc32c(data.data(), data.size());
  std::string record(header, 8);
  record.append(reinterpret_cast<const char*>(&header_crc), 4);
  record.append(data);
  record.append(reinterpret_cast<const char*>(&data_crc), 4);
  return out_.Append(record);
}

std::string JsonEscape(const std::string& text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          out += absl::StrFormat("\\u%04x", static_cast<int>(c));
        } else {
          out += c;
        }
    }
  }
  return out;
}

absl::Status MetricsLog::Write(const std::vector<std::pair<std::string, Value>>& record) {
  std::string line = "{";
  bool first = true;
  for (const auto& [key, value] : record) {
    absl::StrAppend(&line, first ? "" : ", ", "\"", JsonEscape(key), "\": ");
    first = false;
    if (const auto* i = std::get_if<int64_t>(&value)) {
      absl::StrAppend(&line, *i);
    } else if (const auto* d = std::get_if<double>(&value)) {
      // JSON has no NaN or infinity; write them as strings so the line stays valid.
      absl::StrAppend(
          &line, std::isfinite(*d) ? absl::StrFormat("%.9g", *d) : absl::StrCat("\"", *d, "\""));
    } else {
      absl::StrAppend(&line, "\"", JsonEscape(std::get<std::string>(value)), "\"");
    }
  }
  line += "}\n";
  return out_.Append(line);
}

}  // namespace kd::host
