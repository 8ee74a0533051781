// A pull reader for JSON text in memory, made for large annotation files (COCO's training
// annotations are about 450 MB): the caller walks objects and arrays and reads the values it needs;
// everything else is checked for syntax and skipped without being built. Errors name the source
// and the line and column.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace json_reader {

class JsonReader {
 public:
  // `text` must outlive the reader; `source` names it in messages (a file name).
  JsonReader(absl::string_view text, std::string source);

  // Reads the object that comes next, calling `member(key)` for each member; `member` must consume
  // the member's value (read it or Skip it).
  absl::Status ReadObject(absl::FunctionRef<absl::Status(const std::string& key)> member);
  // Reads the array that comes next, calling `element()` for each element, which must consume it.
  absl::Status ReadArray(absl::FunctionRef<absl::Status()> element);
  absl::Status ReadString(std::string* value);
  // An integer without fraction or exponent that fits in 64 bits.
  absl::Status ReadInt(int64_t* value);
  // Checks and skips the value that comes next, whatever it is.
  absl::Status Skip();
  // Checks that only whitespace is left.
  absl::Status ExpectEnd();

  // Where the next value starts (after whitespace), for messages about it later.
  size_t NextOffset();
  // "source:line:column" of a byte offset.
  std::string Position(size_t offset) const;
  // InvalidArgument "source:line:column: message" at `offset`.
  absl::Status ErrorAt(size_t offset, absl::string_view message) const;

 private:
  absl::Status Error(absl::string_view message) const { return ErrorAt(pos_, message); }
  void SkipWhitespace();
  absl::Status Expect(char c, absl::string_view what);
  absl::Status SkipValue(int depth);
  absl::Status ScanString(std::string* value);
  absl::Status ScanNumber(absl::string_view* token);
  absl::Status ScanLiteral(absl::string_view literal);

  absl::string_view text_;
  std::string source_;
  size_t pos_ = 0;
};

}  // namespace json_reader
