#include "host/checkpoint.h"

#include <torch/serialize.h>
#include <torch/torch.h>
#include <zlib.h>

#include <algorithm>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "host/files.h"
#include "kd/error.h"

namespace kd::host {

namespace fs = std::filesystem;

namespace {

constexpr const char* kExportFormat = "kdhost.model_export.v1";
constexpr const char* kStateFormat = "kdhost.train_state.v1";

using IDict = c10::impl::GenericDict;

IDict NewDict() { return IDict(c10::StringType::get(), c10::AnyType::get()); }

c10::Dict<std::string, torch::Tensor> ToDict(const StateDict& state) {
  c10::Dict<std::string, torch::Tensor> dict;
  for (const auto& [name, tensor] : state) dict.insert(name, tensor);
  return dict;
}

StateDict FromDict(const c10::IValue& value) {
  StateDict state;
  for (const auto& item : value.toGenericDict()) {
    state.emplace(item.key().toStringRef(), item.value().toTensor());
  }
  return state;
}

c10::IValue MetricsValue(const std::vector<MetricValue>& metrics) {
  c10::Dict<std::string, double> dict;
  c10::List<std::string> order;
  for (const MetricValue& m : metrics) {
    dict.insert(m.name, m.value);
    order.push_back(m.name);
  }
  IDict out = NewDict();
  out.insert("values", dict);
  out.insert("order", order);
  return out;
}

std::vector<MetricValue> MetricsFrom(const c10::IValue& value) {
  std::vector<MetricValue> out;
  IDict dict = value.toGenericDict();
  auto values = dict.at("values").toGenericDict();
  for (const c10::IValue& name : dict.at("order").toListRef()) {
    out.push_back({name.toStringRef(), values.at(name).toDouble()});
  }
  return out;
}

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

absl::Status WritePickle(const fs::path& path, IDict dict) {
  dict.insert_or_assign(kChecksumKey, ContentChecksum(dict));
  std::vector<char> bytes = torch::pickle_save(dict);
  return WriteFileAtomic(path, absl::string_view(bytes.data(), bytes.size()));
}

absl::StatusOr<IDict> ReadPickle(const fs::path& path, const char* format) {
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

}  // namespace

namespace {

uint64_t Le(const char* p, int bytes) {
  uint64_t value = 0;
  for (int i = bytes - 1; i >= 0; --i) value = (value << 8) | static_cast<unsigned char>(p[i]);
  return value;
}

// a + b <= limit, without overflow.
bool Fits(uint64_t a, uint64_t b, uint64_t limit) { return a <= limit && b <= limit - a; }

constexpr uint32_t kLocalHeader = 0x04034b50, kCentralHeader = 0x02014b50;
constexpr uint32_t kEndRecord = 0x06054b50, kZip64EndRecord = 0x06064b50;
constexpr uint32_t kZip64Locator = 0x07064b50;

// Walks the opcodes of a pickle (protocols 0 to 5) and checks that every length it declares fits
// in what is left, up to STOP. LibTorch's unpickler allocates a declared length before reading
// it, so a damaged length would otherwise cost gigabytes before the error.
absl::Status CheckPickle(absl::string_view pickle) {
  const char* b = pickle.data();
  const uint64_t n = pickle.size();
  auto bad = [](absl::string_view what) {
    return absl::DataLossError(absl::StrCat("damaged pickle: ", what));
  };
  uint64_t p = 0;
  // Skips `count` bytes of argument.
  auto skip = [&](uint64_t count) {
    if (!Fits(p, count, n)) return false;
    p += count;
    return true;
  };
  // Skips a length of `width` bytes and the data it counts.
  auto counted = [&](int width) {
    if (!Fits(p, width, n)) return false;
    const uint64_t length = Le(b + p, width);
    p += width;
    return skip(length);
  };
  // Skips text up to and including a newline (protocol 0 arguments).
  auto line = [&] {
    const void* newline = std::memchr(b + p, '\n', n - p);
    if (newline == nullptr) return false;
    p = static_cast<const char*>(newline) - b + 1;
    return true;
  };
  uint64_t memo_size = 0;
  auto memo = [&](bool put, uint64_t index) {
    if (!put) return index < memo_size;
    if (index > memo_size) return false;
    memo_size = std::max(memo_size, index + 1);
    return true;
  };
  while (p < n) {
    const unsigned char op = static_cast<unsigned char>(b[p++]);
    bool ok = true;
    switch (op) {
      case '.':  // STOP
        return absl::OkStatus();
      // No argument.
      case '(':
      case ')':
      case ']':
      case '}':
      case '0':
      case '1':
      case '2':
      case 'a':
      case 'b':
      case 'd':
      case 'e':
      case 'l':
      case 'N':
      case 'o':
      case 'Q':
      case 'R':
      case 's':
      case 't':
      case 'u':
      case 0x81:
      case 0x85:
      case 0x86:
      case 0x87:
      case 0x88:
      case 0x89:
      case 0x8f:
      case 0x90:
      case 0x91:
      case 0x92:
      case 0x93:
      case 0x97:
      case 0x98:
        break;
      // Fixed-size arguments.
      case 'K':
      case 0x80:
      case 0x82:  // BININT1, PROTO, EXT1
        ok = skip(1);
        break;
      case 'M':
      case 0x83:  // BININT2, EXT2
        ok = skip(2);
        break;
      case 'J':
      case 0x84:  // BININT, EXT4
        ok = skip(4);
        break;
      case 'G':
      case 0x95:  // BINFLOAT, FRAME
        ok = skip(8);
        break;
      // Counted data.
      case 'U':
      case 'C':
      case 0x8a:
      case 0x8c:          // SHORT_BINSTRING, SHORT_BINBYTES, LONG1,
        ok = counted(1);  // SHORT_BINUNICODE
        break;
      case 'T':
      case 'B':
      case 'X':
      case 0x8b:  // BINSTRING, BINBYTES, BINUNICODE, LONG4
        ok = counted(4);
        break;
      case 0x8d:
      case 0x8e:
      case 0x96:  // BINUNICODE8, BINBYTES8, BYTEARRAY8
        ok = counted(8);
        break;
      // Protocol 0: newline-terminated arguments.
      case 'I':
      case 'L':
      case 'S':
      case 'V':
      case 'F':
      case 'P':
        ok = line();
        break;
      // The memo: readers size their table by the largest index, so an index must be the next
      // one (as picklers number them) or an earlier one, and a read must name a stored one.
      case 'q':
      case 'h':  // BINPUT, BINGET
        ok = Fits(p, 1, n) && memo(op == 'q', Le(b + p, 1)) && skip(1);
        break;
      case 'r':
      case 'j':  // LONG_BINPUT, LONG_BINGET
        ok = Fits(p, 4, n) && memo(op == 'r', Le(b + p, 4)) && skip(4);
        break;
      case 'p':
      case 'g': {  // PUT, GET: a decimal index on a line
        const uint64_t start = p;
        uint64_t index = 0;
        ok = line() && absl::SimpleAtoi(absl::string_view(b + start, p - start - 1), &index) &&
             memo(op == 'p', index);
        break;
      }
      case 0x94:  // MEMOIZE: the next index
        ok = memo(true, memo_size);
        break;
      case 'c':
      case 'i':  // GLOBAL, INST: module and name lines
        ok = line() && line();
        break;
      default:
        return bad(absl::StrCat("unknown opcode ", static_cast<int>(op), " at byte ", p - 1));
    }
    if (!ok)
      return bad(absl::StrCat("bad argument of opcode ", static_cast<int>(op), " before byte ", p));
  }
  return bad("no STOP opcode");
}

}  // namespace

absl::Status CheckZipArchive(absl::string_view bytes) {
  const char* b = bytes.data();
  const uint64_t n = bytes.size();
  auto bad = [](absl::string_view what) {
    return absl::DataLossError(absl::StrCat("damaged zip archive: ", what));
  };
  if (n < 22) return bad("too short");
  // The end-of-central-directory record: the signature nearest the end, as readers search for it,
  // followed by its comment.
  uint64_t end = n;
  for (uint64_t pos = n - 22 + 1; pos-- > 0 && n - pos <= 22 + 0xffff;) {
    if (Le(b + pos, 4) == kEndRecord) {
      end = pos;
      break;
    }
  }
  if (end == n) return bad("no end-of-central-directory record");
  // Readers take data between the central directory and the end record as a prefix of the
  // archive and shift every offset by it: only the canonical layout is accepted, where the end
  // record (and its comment) ends the file and the central directory ends where it starts.
  if (end + 22 + Le(b + end + 20, 2) != n) return bad("data after the end record");
  if (Le(b + end + 4, 2) != 0 || Le(b + end + 6, 2) != 0) return bad("multi-disk archive");
  uint64_t entries = Le(b + end + 10, 2);
  uint64_t cd_size = Le(b + end + 12, 4);
  uint64_t cd_offset = Le(b + end + 16, 4);
  if (Le(b + end + 8, 2) != entries) return bad("inconsistent entry counts");
  uint64_t cd_limit = end;
  if (end >= 20 && Le(b + end - 20, 4) == kZip64Locator) {
    const uint64_t locator = end - 20;
    const uint64_t record = Le(b + locator + 8, 8);
    if (!Fits(record, 56, locator) || Le(b + record, 4) != kZip64EndRecord)
      return bad("zip64 end record out of place");
    if (Le(b + record + 4, 8) > locator - record - 12 ||
        record + 12 + Le(b + record + 4, 8) != locator)
      return bad("zip64 end record size");
    if (Le(b + record + 16, 4) != 0 || Le(b + record + 20, 4) != 0 ||
        Le(b + record + 24, 8) != Le(b + record + 32, 8))
      return bad("inconsistent zip64 end record");
    const uint64_t entries64 = Le(b + record + 32, 8), size64 = Le(b + record + 40, 8);
    const uint64_t offset64 = Le(b + record + 48, 8);
    // The 32-bit fields either agree or are saturated.
    if ((entries != 0xffff && entries != entries64) ||
        (cd_size != 0xffffffff && cd_size != size64) ||
        (cd_offset != 0xffffffff && cd_offset != offset64))
      return bad("zip64 end record disagrees with the end record");
    entries = entries64;
    cd_size = size64;
    cd_offset = offset64;
    cd_limit = record;
  }
  if (!Fits(cd_offset, cd_size, cd_limit)) return bad("central directory out of bounds");
  if (cd_offset + cd_size != cd_limit) return bad("data between the central directory and its end");
  if (entries > cd_size / 46) return bad("more entries than the central directory holds");
  uint64_t p = cd_offset;
  const uint64_t cd_end = cd_offset + cd_size;
  for (uint64_t i = 0; i < entries; ++i) {
    if (!Fits(p, 46, cd_end) || Le(b + p, 4) != kCentralHeader) return bad("bad central header");
    const uint64_t method = Le(b + p + 10, 2);
    uint64_t compressed = Le(b + p + 20, 4), uncompressed = Le(b + p + 24, 4);
    const uint64_t name_len = Le(b + p + 28, 2), extra_len = Le(b + p + 30, 2);
    const uint64_t comment_len = Le(b + p + 32, 2);
    uint64_t local = Le(b + p + 42, 4);
    if (method != 0 && method != 8) return bad("unsupported compression method");
    if (Le(b + p + 34, 2) != 0) return bad("multi-disk entry");
    const uint64_t size = 46 + name_len + extra_len + comment_len;
    if (!Fits(p, size, cd_end)) return bad("central header out of bounds");
    // The zip64 extra field holds the 64-bit values of the saturated 32-bit ones, in order.
    for (uint64_t e = p + 46 + name_len, e_end = e + extra_len; e < e_end;) {
      if (!Fits(e, 4, e_end)) return bad("truncated extra field");
      const uint64_t id = Le(b + e, 2), len = Le(b + e + 2, 2);
      if (!Fits(e + 4, len, e_end)) return bad("extra field out of bounds");
      if (id == 1) {
        uint64_t q = e + 4;
        for (uint64_t* value : {&uncompressed, &compressed, &local}) {
          if (*value != 0xffffffff) continue;
          if (!Fits(q, 8, e + 4 + len)) return bad("truncated zip64 extra field");
          *value = Le(b + q, 8);
          q += 8;
        }
      }
      e += 4 + len;
    }
    if (!Fits(local, 30, n) || Le(b + local, 4) != kLocalHeader) return bad("bad local header");
    const uint64_t data = local + 30 + Le(b + local + 26, 2) + Le(b + local + 28, 2);
    if (!Fits(data, compressed, n)) return bad("entry data out of bounds");
    if (method == 0 && compressed != uncompressed) return bad("stored entry with two sizes");
    // Deflate expands at most about 1032:1; a larger declared size is damage (readers allocate it).
    if (method == 8 && uncompressed / 1032 > compressed + 1) return bad("implausible entry size");
    const absl::string_view name(b + p + 46, name_len);
    if (method == 0 && absl::EndsWith(name, "data.pkl")) {
      KD_RETURN_IF_ERROR(CheckPickle(bytes.substr(data, compressed)));
    }
    p += size;
  }
  if (p != cd_end) return bad("central directory size mismatch");
  return absl::OkStatus();
}

StateDict ModuleState(torch::nn::Module& module) {
  StateDict state;
  for (const auto& item : module.named_parameters()) {
    state.emplace(item.key(), item.value().detach().to(torch::kCPU).clone());
  }
  for (const auto& item : module.named_buffers()) {
    state.emplace(item.key(), item.value().detach().to(torch::kCPU).clone());
  }
  return state;
}

std::string LoadReport::Summary() const {
  std::string out;
  auto add = [&](const char* what, const std::vector<std::string>& keys) {
    if (keys.empty()) return;
    absl::StrAppend(&out, out.empty() ? "" : "; ", what, ": ", absl::StrJoin(keys, ", "));
  };
  add("missing keys", missing);
  add("unexpected keys", unexpected);
  add("skipped for their shape", reshaped);
  return out;
}

absl::StatusOr<LoadReport> LoadModuleState(torch::nn::Module& module, const StateDict& state,
                                           LoadMode mode, const std::string& source) {
  LoadReport report;
  std::map<std::string, torch::Tensor> targets;
  for (const auto& item : module.named_parameters()) targets.emplace(item.key(), item.value());
  for (const auto& item : module.named_buffers()) targets.emplace(item.key(), item.value());
  std::vector<std::pair<torch::Tensor, torch::Tensor>> copies;
  for (const auto& [name, target] : targets) {
    auto it = state.find(name);
    if (it == state.end()) {
      report.missing.push_back(name);
      continue;
    }
    if (it->second.sizes() != target.sizes()) {
      if (mode != LoadMode::kInitialise) {
        return absl::InvalidArgumentError(
            absl::StrCat(source, ": '", name, "' has shape ", c10::str(it->second.sizes()),
                         " in the file but ", c10::str(target.sizes()),
                         " in the model: the file was saved from a different model configuration"));
      }
      report.reshaped.push_back(
          absl::StrCat(name, " ", c10::str(it->second.sizes()), " -> ", c10::str(target.sizes())));
      continue;
    }
    copies.emplace_back(target, it->second);
  }
  for (const auto& [name, tensor] : state) {
    if (!targets.count(name)) report.unexpected.push_back(name);
  }
  if (mode == LoadMode::kStrict && (!report.missing.empty() || !report.unexpected.empty())) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": the weights do not match the model (", report.Summary(),
                     "); the file was saved from a different model configuration"));
  }
  torch::NoGradGuard no_grad;
  for (auto& [target, value] : copies) target.copy_(value);
  report.loaded = copies.size();
  return report;
}

absl::Status SaveModelExport(const fs::path& path, const ModelExport& data) {
  IDict dict = NewDict();
  dict.insert("format", std::string(kExportFormat));
  dict.insert("model_config", data.model_config);
  c10::List<std::string> class_names;
  for (const std::string& name : data.class_names) class_names.push_back(name);
  dict.insert("class_names", class_names);
  if (!data.predicate_names.empty()) {
    c10::List<std::string> predicate_names;
    for (const std::string& name : data.predicate_names) predicate_names.push_back(name);
    dict.insert("predicate_names", predicate_names);
  }
  dict.insert("state_dict", ToDict(data.state));
  dict.insert("metrics", MetricsValue(data.metrics));
  dict.insert("stage", data.stage);
  dict.insert("step", data.step);
  return WritePickle(path, dict);
}

absl::StatusOr<ModelExport> LoadModelExport(const fs::path& path) {
  KD_ASSIGN_OR_RETURN(IDict dict, ReadPickle(path, kExportFormat));
  ModelExport out;
  try {
    out.model_config = dict.at("model_config").toStringRef();
    if (dict.contains("class_names")) {
      for (const c10::IValue& name : dict.at("class_names").toListRef()) {
        out.class_names.push_back(name.toStringRef());
      }
    }
    if (dict.contains("predicate_names")) {
      for (const c10::IValue& name : dict.at("predicate_names").toListRef()) {
        out.predicate_names.push_back(name.toStringRef());
      }
    }
    out.state = FromDict(dict.at("state_dict"));
    out.metrics = MetricsFrom(dict.at("metrics"));
    out.stage = dict.at("stage").toStringRef();
    out.step = dict.at("step").toInt();
  } catch (const std::exception& e) {
    return absl::DataLossError(
        absl::StrCat(path.string(), ": incomplete model export: ", e.what()));
  }
  return out;
}

absl::Status SaveTrainState(const fs::path& path, const TrainState& s) {
  IDict dict = NewDict();
  dict.insert("format", std::string(kStateFormat));
  dict.insert("step", s.step);
  dict.insert("epoch", s.epoch);
  dict.insert("batch_in_epoch", s.batch_in_epoch);
  dict.insert("global_batch", s.global_batch);
  dict.insert("world_size", s.world_size);
  dict.insert("model", ToDict(s.model));
  dict.insert("distiller", ToDict(s.distiller));
  dict.insert("ema", ToDict(s.ema));
  dict.insert(
      "optimizer",
      torch::tensor(std::vector<uint8_t>(s.optimizer.begin(), s.optimizer.end()), torch::kUInt8));
  dict.insert("cpu_rng", s.cpu_rng);
  if (s.cuda_rng.defined()) dict.insert("cuda_rng", s.cuda_rng);
  if (s.grad_scaler.defined()) dict.insert("grad_scaler", s.grad_scaler);
  dict.insert("config", s.config);
  c10::List<double> best_values;
  c10::List<int64_t> best_steps;
  c10::List<std::string> best_paths;
  for (const BestEntry& b : s.best) {
    best_values.push_back(b.value);
    best_steps.push_back(b.step);
    best_paths.push_back(b.path);
  }
  dict.insert("best_values", best_values);
  dict.insert("best_steps", best_steps);
  dict.insert("best_paths", best_paths);
  dict.insert("seconds", s.seconds);
  return WritePickle(path, dict);
}

absl::StatusOr<TrainState> LoadTrainState(const fs::path& path) {
  KD_ASSIGN_OR_RETURN(IDict dict, ReadPickle(path, kStateFormat));
  TrainState s;
  try {
    s.step = dict.at("step").toInt();
    s.epoch = dict.at("epoch").toInt();
    s.batch_in_epoch = dict.at("batch_in_epoch").toInt();
    if (dict.contains("global_batch")) s.global_batch = dict.at("global_batch").toInt();
    if (dict.contains("world_size")) s.world_size = dict.at("world_size").toInt();
    s.model = FromDict(dict.at("model"));
    s.distiller = FromDict(dict.at("distiller"));
    s.ema = FromDict(dict.at("ema"));
    torch::Tensor optimizer = dict.at("optimizer").toTensor().contiguous();
    s.optimizer.assign(reinterpret_cast<const char*>(optimizer.data_ptr<uint8_t>()),
                       static_cast<size_t>(optimizer.numel()));
    s.cpu_rng = dict.at("cpu_rng").toTensor();
    if (dict.contains("cuda_rng")) s.cuda_rng = dict.at("cuda_rng").toTensor();
    if (dict.contains("grad_scaler")) s.grad_scaler = dict.at("grad_scaler").toTensor();
    s.config = dict.at("config").toStringRef();
    auto values = dict.at("best_values").toDoubleList();
    auto steps = dict.at("best_steps").toIntList();
    auto paths = dict.at("best_paths").toList();
    for (size_t i = 0; i < values.size(); ++i) {
      BestEntry entry;
      entry.value = values.get(i);
      entry.step = steps.get(i);
      entry.path = paths.get(i).toStringRef();
      s.best.push_back(entry);
    }
    s.seconds = dict.at("seconds").toDouble();
  } catch (const std::exception& e) {
    return absl::DataLossError(absl::StrCat(path.string(), ": incomplete training state: ",
                                            e.what(), "; delete it to start the stage over"));
  }
  return s;
}

}  // namespace kd::host
