#include "host/pickle_file.h"

#include <torch/serialize.h>
#include <torch/torch.h>
#include <zlib.h>

#include <algorithm>
#include <stdexcept>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "host/archive_check.h"
#include "host/files.h"
#include "kd/error.h"

namespace kd::host {

namespace fs = std::filesystem;

namespace {

using IDict = PickleDict;

// CRC-32 of a checkpoint's content, computed from the values (tensors by dtype, shape and bytes;
// dictionaries in key order), so it is independent of how the pickle lays them out.
class ContentCrc {
 public:
  void Add(const void* data, size_t size) {
    const auto* bytes = static_cast<const Bytef*>(data);
    while (size > 0) {
      const uInt chunk = static_cast<uInt>(std::min<size_t>(size, 1u << 30));
      crc_ = crc32(crc_, bytes, chunk);
      bytes += chunk;
      size -= chunk;
    }
  }
  void AddTag(char tag, uint64_t n) {
    Add(&tag, 1);
    Add(&n, sizeof(n));
  }
  void AddValue(const c10::IValue& v) {
    if (v.isString()) {
      const std::string& text = v.toStringRef();
      AddTag('s', text.size());
      Add(text.data(), text.size());
    } else if (v.isInt()) {
      const int64_t x = v.toInt();
      AddTag('i', static_cast<uint64_t>(x));
    } else if (v.isDouble()) {
      const double x = v.toDouble();
      AddTag('d', 8);
      Add(&x, sizeof(x));
    } else if (v.isBool()) {
      AddTag('b', v.toBool() ? 1 : 0);
    } else if (v.isNone()) {
      AddTag('n', 0);
    } else if (v.isTensor()) {
      const torch::Tensor t = v.toTensor().to(torch::kCPU).contiguous();
      AddTag('t', static_cast<uint64_t>(t.scalar_type()));
      AddTag('r', static_cast<uint64_t>(t.dim()));
      for (int64_t size : t.sizes()) AddTag('z', static_cast<uint64_t>(size));
      Add(t.data_ptr(), static_cast<size_t>(t.numel()) * t.element_size());
    } else if (v.isList()) {
      const auto& items = v.toListRef();
      AddTag('l', items.size());
      for (const c10::IValue& item : items) AddValue(item);
    } else if (v.isGenericDict()) {
      AddDict(v.toGenericDict(), "");
    } else {
      throw std::runtime_error(absl::StrCat("unexpected value of type ", v.tagKind()));
    }
  }
  // The entries of `dict` except `skip`, in key order.
  void AddDict(const IDict& dict, const std::string& skip) {
    std::vector<std::pair<std::string, c10::IValue>> entries;
    for (const auto& item : dict) {
      if (!item.key().isString()) throw std::runtime_error("dictionary key is not a string");
      if (item.key().toStringRef() == skip) continue;
      entries.emplace_back(item.key().toStringRef(), item.value());
    }
    std::sort(entries.begin(), entries.end(),
              [](const auto& a, const auto& b) { return a.first < b.first; });
    AddTag('m', entries.size());
    for (const auto& [key, value] : entries) {
      AddTag('k', key.size());
      Add(key.data(), key.size());
      AddValue(value);
    }
  }
  std::string Hex() const { return absl::StrFormat("crc32:%08x", static_cast<uint32_t>(crc_)); }

 private:
  uLong crc_ = crc32(0L, Z_NULL, 0);
};

constexpr const char* kChecksumKey = "checksum";

std::string ContentChecksum(const IDict& dict) {
  ContentCrc crc;
  crc.AddDict(dict, kChecksumKey);
  return crc.Hex();
}

}  // namespace

PickleDict NewPickleDict() { return PickleDict(c10::StringType::get(), c10::AnyType::get()); }

absl::Status WritePickleFile(const fs::path& path, PickleDict dict) {
  dict.insert_or_assign(kChecksumKey, ContentChecksum(dict));
  std::vector<char> bytes = torch::pickle_save(dict);
  return WriteFileAtomic(path, absl::string_view(bytes.data(), bytes.size()));
}

absl::StatusOr<PickleDict> ReadPickleFile(const fs::path& path, const char* format) {
  KD_ASSIGN_OR_RETURN(std::string bytes, ReadFile(path));
  if (absl::Status zip = CheckZipArchive(bytes); !zip.ok()) {
    return absl::DataLossError(absl::StrCat(
        path.string(), ": not a readable checkpoint (", zip.message(),
        "); the file is damaged or of another kind. Delete it, or resume from an earlier one"));
  }
  c10::IValue value;
  try {
    value = torch::pickle_load(std::vector<char>(bytes.begin(), bytes.end()));
  } catch (const std::exception& e) {
    return absl::DataLossError(absl::StrCat(
        path.string(), ": not a readable checkpoint (", e.what(),
        "); the file is damaged or of another kind. Delete it, or resume from an earlier one"));
  }
  if (!value.isGenericDict()) {
    return absl::DataLossError(absl::StrCat(path.string(), ": not a kdhost checkpoint"));
  }
  IDict dict = value.toGenericDict();
  const bool tagged = dict.contains("format") && dict.at("format").isString();
  if (!tagged || dict.at("format").toStringRef() != format) {
    return absl::InvalidArgumentError(
        absl::StrCat(path.string(), ": expected a ", format, " file, found ",
                     tagged ? dict.at("format").toStringRef() : std::string("no format tag")));
  }
  // Files written by other tools (e.g. tools/export_torchvision.py) carry no checksum.
  if (dict.contains(kChecksumKey)) {
    std::string computed;
    try {
      computed = ContentChecksum(dict);
    } catch (const std::exception& e) {
      return absl::DataLossError(
          absl::StrCat(path.string(), ": damaged checkpoint (", e.what(), ")"));
    }
    const c10::IValue stored = dict.at(kChecksumKey);
    if (!stored.isString() || stored.toStringRef() != computed) {
      return absl::DataLossError(absl::StrCat(
          path.string(), ": checksum mismatch (stored ",
          stored.isString() ? stored.toStringRef() : std::string("none"), ", content ", computed,
          "): the file changed after it was written (a disk error, an incomplete copy or an "
          "edit). Delete it and resume from an earlier checkpoint, or rerun the stage"));
    }
  }
  return dict;
}

}  // namespace kd::host
