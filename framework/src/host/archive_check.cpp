#include "host/archive_check.h"

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "kd/error.h"

namespace kd::host {

namespace {

uint64_t Le(const char* p, int bytes) {
  uint64_t value = 0;
  for (int i = bytes - 1; i >= 0; --i) value = (value << 8) | static_cast<unsigned char>(p[i]);
  return value;
}

// a + b <= limit, without overflow.
bool Fits(uint64_t a, uint64_t b, uint64_t limit) { return a <= limit && b <= limit - a; }

// What follows a pickle opcode.
enum class Arg {
  kNone,       // nothing
  kStop,       // STOP: the end of the pickle
  kFixed,      // `width` bytes
  kCounted,    // a length of `width` bytes and the data it counts
  kLine,       // protocol 0: text up to a newline
  kTwoLines,   // GLOBAL, INST: module and name lines
  kMemoIndex,  // a memo index of `width` bytes (BINPUT/BINGET, LONG_BINPUT/LONG_BINGET)
  kMemoLine,   // a decimal memo index on a line (PUT, GET)
  kMemoize,    // MEMOIZE: the next index
  kUnknown,
};
struct OpArg {
  Arg kind;
  int width = 0;
};

bool In(absl::string_view ops, unsigned char op) {
  return ops.find(static_cast<char>(op)) != absl::string_view::npos;
}

OpArg ArgumentOf(unsigned char op) {
  if (op == '.') return {Arg::kStop};
  if (In("()]}012abdelNoQRstu"
         "\x81\x85\x86\x87\x88\x89\x8f\x90\x91\x92\x93\x97\x98",
         op)) {
    return {Arg::kNone};
  }
  if (In("K\x80\x82", op)) return {Arg::kFixed, 1};  // BININT1, PROTO, EXT1
  if (In("M\x83", op)) return {Arg::kFixed, 2};      // BININT2, EXT2
  if (In("J\x84", op)) return {Arg::kFixed, 4};      // BININT, EXT4
  if (In("G\x95", op)) return {Arg::kFixed, 8};      // BINFLOAT, FRAME
  // SHORT_BINSTRING, SHORT_BINBYTES, LONG1, SHORT_BINUNICODE
  if (In("UC\x8a\x8c", op)) return {Arg::kCounted, 1};
  if (In("TBX\x8b", op)) return {Arg::kCounted, 4};       // BINSTRING, BINBYTES, BINUNICODE, LONG4
  if (In("\x8d\x8e\x96", op)) return {Arg::kCounted, 8};  // BINUNICODE8, BINBYTES8, BYTEARRAY8
  if (In("ILSVFP", op)) return {Arg::kLine};
  if (In("qh", op)) return {Arg::kMemoIndex, 1};  // BINPUT, BINGET
  if (In("rj", op)) return {Arg::kMemoIndex, 4};  // LONG_BINPUT, LONG_BINGET
  if (In("pg", op)) return {Arg::kMemoLine};      // PUT, GET
  if (op == 0x94) return {Arg::kMemoize};
  if (In("ci", op)) return {Arg::kTwoLines};  // GLOBAL, INST
  return {Arg::kUnknown};
}

class PickleWalker {
 public:
  explicit PickleWalker(absl::string_view pickle) : b_(pickle.data()), n_(pickle.size()) {}

  absl::Status Walk() {
    while (p_ < n_) {
      const unsigned char op = static_cast<unsigned char>(b_[p_++]);
      const OpArg arg = ArgumentOf(op);
      if (arg.kind == Arg::kStop) return absl::OkStatus();
      if (arg.kind == Arg::kUnknown) {
        return Bad(absl::StrCat("unknown opcode ", static_cast<int>(op), " at byte ", p_ - 1));
      }
      if (!Argument(op, arg)) {
        return Bad(
            absl::StrCat("bad argument of opcode ", static_cast<int>(op), " before byte ", p_));
      }
    }
    return Bad("no STOP opcode");
  }

 private:
  static absl::Status Bad(absl::string_view what) {
    return absl::DataLossError(absl::StrCat("damaged pickle: ", what));
  }

  // Reads the argument of `op`; false when it does not fit.
  bool Argument(unsigned char op, const OpArg& arg) {
    switch (arg.kind) {
      case Arg::kFixed:
        return Skip(arg.width);
      case Arg::kCounted:
        return Counted(arg.width);
      case Arg::kLine:
        return Line();
      case Arg::kTwoLines:
        return Line() && Line();
      // The memo: readers size their table by the largest index, so an index must be the next
      // one (as picklers number them) or an earlier one, and a read must name a stored one.
      case Arg::kMemoIndex:
        return Fits(p_, arg.width, n_) && Memo(op == 'q' || op == 'r', Le(b_ + p_, arg.width)) &&
               Skip(arg.width);
      case Arg::kMemoLine: {
        const uint64_t start = p_;
        uint64_t index = 0;
        return Line() && absl::SimpleAtoi(absl::string_view(b_ + start, p_ - start - 1), &index) &&
               Memo(op == 'p', index);
      }
      case Arg::kMemoize:
        return Memo(true, memo_size_);
      default:
        return true;
    }
  }
  // Skips `count` bytes of argument.
  bool Skip(uint64_t count) {
    if (!Fits(p_, count, n_)) return false;
    p_ += count;
    return true;
  }
  // Skips a length of `width` bytes and the data it counts.
  bool Counted(int width) {
    if (!Fits(p_, width, n_)) return false;
    const uint64_t length = Le(b_ + p_, width);
    p_ += width;
    return Skip(length);
  }
  // Skips text up to and including a newline.
  bool Line() {
    const void* newline = std::memchr(b_ + p_, '\n', n_ - p_);
    if (newline == nullptr) return false;
    p_ = static_cast<const char*>(newline) - b_ + 1;
    return true;
  }
  bool Memo(bool put, uint64_t index) {
    if (!put) return index < memo_size_;
    if (index > memo_size_) return false;
    memo_size_ = std::max(memo_size_, index + 1);
    return true;
  }

  const char* b_;
  uint64_t n_;
  uint64_t p_ = 0;
  uint64_t memo_size_ = 0;
};

constexpr uint32_t kLocalHeader = 0x04034b50, kCentralHeader = 0x02014b50;
constexpr uint32_t kEndRecord = 0x06054b50, kZip64EndRecord = 0x06064b50;
constexpr uint32_t kZip64Locator = 0x07064b50;

absl::Status BadZip(absl::string_view what) {
  return absl::DataLossError(absl::StrCat("damaged zip archive: ", what));
}

// Where the central directory lies and how many entries it holds.
struct Directory {
  uint64_t entries = 0, size = 0, offset = 0;
  uint64_t limit = 0;  // where it must end: the end record, or the zip64 end record
};

// The end-of-central-directory record: the signature nearest the end, as readers search for it,
// followed by its comment. Readers take data between the central directory and the end record as
// a prefix of the archive and shift every offset by it: only the canonical layout is accepted,
// where the end record (and its comment) ends the file.
absl::StatusOr<Directory> ReadEndRecord(const char* b, uint64_t n) {
  if (n < 22) return BadZip("too short");
  uint64_t end = n;
  for (uint64_t pos = n - 22 + 1; pos-- > 0 && n - pos <= 22 + 0xffff;) {
    if (Le(b + pos, 4) == kEndRecord) {
      end = pos;
      break;
    }
  }
  if (end == n) return BadZip("no end-of-central-directory record");
  if (end + 22 + Le(b + end + 20, 2) != n) return BadZip("data after the end record");
  if (Le(b + end + 4, 2) != 0 || Le(b + end + 6, 2) != 0) return BadZip("multi-disk archive");
  Directory d{Le(b + end + 10, 2), Le(b + end + 12, 4), Le(b + end + 16, 4), end};
  if (Le(b + end + 8, 2) != d.entries) return BadZip("inconsistent entry counts");
  return d;
}

// A zip64 end record before the end record replaces its 32-bit fields, which must either agree
// or be saturated.
absl::Status ReadZip64Record(const char* b, uint64_t end, Directory& d) {
  if (end < 20 || Le(b + end - 20, 4) != kZip64Locator) return absl::OkStatus();
  const uint64_t locator = end - 20;
  const uint64_t record = Le(b + locator + 8, 8);
  if (!Fits(record, 56, locator) || Le(b + record, 4) != kZip64EndRecord)
    return BadZip("zip64 end record out of place");
  if (Le(b + record + 4, 8) > locator - record - 12 ||
      record + 12 + Le(b + record + 4, 8) != locator)
    return BadZip("zip64 end record size");
  if (Le(b + record + 16, 4) != 0 || Le(b + record + 20, 4) != 0 ||
      Le(b + record + 24, 8) != Le(b + record + 32, 8))
    return BadZip("inconsistent zip64 end record");
  const uint64_t entries64 = Le(b + record + 32, 8), size64 = Le(b + record + 40, 8);
  const uint64_t offset64 = Le(b + record + 48, 8);
  if ((d.entries != 0xffff && d.entries != entries64) ||
      (d.size != 0xffffffff && d.size != size64) ||
      (d.offset != 0xffffffff && d.offset != offset64))
    return BadZip("zip64 end record disagrees with the end record");
  d = Directory{entries64, size64, offset64, record};
  return absl::OkStatus();
}

// The zip64 extra field of a central header holds the 64-bit values of its saturated 32-bit sizes
// and offset, in this order.
absl::Status ReadZip64Extra(const char* b, uint64_t e, uint64_t e_end, uint64_t& uncompressed,
                            uint64_t& compressed, uint64_t& local) {
  while (e < e_end) {
    if (!Fits(e, 4, e_end)) return BadZip("truncated extra field");
    const uint64_t id = Le(b + e, 2), len = Le(b + e + 2, 2);
    if (!Fits(e + 4, len, e_end)) return BadZip("extra field out of bounds");
    if (id == 1) {
      uint64_t q = e + 4;
      for (uint64_t* value : {&uncompressed, &compressed, &local}) {
        if (*value != 0xffffffff) continue;
        if (!Fits(q, 8, e + 4 + len)) return BadZip("truncated zip64 extra field");
        *value = Le(b + q, 8);
        q += 8;
      }
    }
    e += 4 + len;
  }
  return absl::OkStatus();
}

// The central header at `p` and the entry it describes; returns the header's size.
absl::StatusOr<uint64_t> CheckEntry(absl::string_view bytes, uint64_t p, uint64_t cd_end) {
  const char* b = bytes.data();
  const uint64_t n = bytes.size();
  if (!Fits(p, 46, cd_end) || Le(b + p, 4) != kCentralHeader) return BadZip("bad central header");
  const uint64_t method = Le(b + p + 10, 2);
  uint64_t compressed = Le(b + p + 20, 4), uncompressed = Le(b + p + 24, 4);
  const uint64_t name_len = Le(b + p + 28, 2), extra_len = Le(b + p + 30, 2);
  const uint64_t comment_len = Le(b + p + 32, 2);
  uint64_t local = Le(b + p + 42, 4);
  if (method != 0 && method != 8) return BadZip("unsupported compression method");
  if (Le(b + p + 34, 2) != 0) return BadZip("multi-disk entry");
  const uint64_t size = 46 + name_len + extra_len + comment_len;
  if (!Fits(p, size, cd_end)) return BadZip("central header out of bounds");
  const uint64_t extra = p + 46 + name_len;
  KD_RETURN_IF_ERROR(ReadZip64Extra(b, extra, extra + extra_len, uncompressed, compressed, local));
  if (!Fits(local, 30, n) || Le(b + local, 4) != kLocalHeader) return BadZip("bad local header");
  const uint64_t data = local + 30 + Le(b + local + 26, 2) + Le(b + local + 28, 2);
  if (!Fits(data, compressed, n)) return BadZip("entry data out of bounds");
  if (method == 0 && compressed != uncompressed) return BadZip("stored entry with two sizes");
  // Deflate expands at most about 1032:1; a larger declared size is damage (readers allocate it).
  if (method == 8 && uncompressed / 1032 > compressed + 1) return BadZip("implausible entry size");
  const absl::string_view name(b + p + 46, name_len);
  if (method == 0 && absl::EndsWith(name, "data.pkl")) {
    KD_RETURN_IF_ERROR(CheckPickle(bytes.substr(data, compressed)));
  }
  return size;
}

}  // namespace

absl::Status CheckPickle(absl::string_view pickle) { return PickleWalker(pickle).Walk(); }

absl::Status CheckZipArchive(absl::string_view bytes) {
  const char* b = bytes.data();
  KD_ASSIGN_OR_RETURN(Directory d, ReadEndRecord(b, bytes.size()));
  KD_RETURN_IF_ERROR(ReadZip64Record(b, d.limit, d));
  if (!Fits(d.offset, d.size, d.limit)) return BadZip("central directory out of bounds");
  if (d.offset + d.size != d.limit) return BadZip("data between the central directory and its end");
  if (d.entries > d.size / 46) return BadZip("more entries than the central directory holds");
  uint64_t p = d.offset;
  const uint64_t cd_end = d.offset + d.size;
  for (uint64_t i = 0; i < d.entries; ++i) {
    KD_ASSIGN_OR_RETURN(uint64_t size, CheckEntry(bytes, p, cd_end));
    p += size;
  }
  if (p != cd_end) return BadZip("central directory size mismatch");
  return absl::OkStatus();
}

}  // namespace kd::host
