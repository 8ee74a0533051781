// JSON syntax as RFC 8259 defines it; strings are decoded to UTF-8 (\u escapes included, with
// surrogate pairs).
#include "json_reader/json_reader.h"

#include <algorithm>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace json_reader {

namespace {

// Deeper nesting than any annotation file has; the limit keeps the recursion off the stack's end.
constexpr int kMaxDepth = 256;

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

void AppendUtf8(uint32_t code, std::string* out) {
  if (code < 0x80) {
    out->push_back(static_cast<char>(code));
  } else if (code < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (code >> 6)));
    out->push_back(static_cast<char>(0x80 | (code & 0x3F)));
  } else if (code < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (code >> 12)));
    out->push_back(static_cast<char>(0x80 | ((code >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (code & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (code >> 18)));
    out->push_back(static_cast<char>(0x80 | ((code >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((code >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (code & 0x3F)));
  }
}

std::string Describe(absl::string_view text, size_t pos) {
  if (pos >= text.size()) return "the end of the file";
  const char c = text[pos];
  if (c < 0x20 || c == 0x7F) return absl::StrCat("byte 0x", absl::Hex(static_cast<uint8_t>(c)));
  return absl::StrCat("'", absl::string_view(&text[pos], 1), "'");
}

}  // namespace

JsonReader::JsonReader(absl::string_view text, std::string source)
    : text_(text), source_(std::move(source)) {}

void JsonReader::SkipWhitespace() {
  while (pos_ < text_.size()) {
    const char c = text_[pos_];
    if (c != ' ' && c != '\n' && c != '\r' && c != '\t') break;
    ++pos_;
  }
}

size_t JsonReader::NextOffset() {
  SkipWhitespace();
  return pos_;
}

std::string JsonReader::Position(size_t offset) const {
  offset = std::min(offset, text_.size());
  const absl::string_view before = text_.substr(0, offset);
  const size_t line = std::count(before.begin(), before.end(), '\n') + 1;
  const size_t line_start = before.rfind('\n');
  const size_t column = line_start == absl::string_view::npos ? offset + 1 : offset - line_start;
  return absl::StrCat(source_, ":", line, ":", column);
}

absl::Status JsonReader::ErrorAt(size_t offset, absl::string_view message) const {
  return absl::InvalidArgumentError(absl::StrCat(Position(offset), ": ", message));
}

absl::Status JsonReader::Expect(char c, absl::string_view what) {
  SkipWhitespace();
  if (pos_ >= text_.size() || text_[pos_] != c) {
    return Error(absl::StrCat("expected ", what, ", found ", Describe(text_, pos_)));
  }
  ++pos_;
  return absl::OkStatus();
}

absl::Status JsonReader::ReadObject(
    absl::FunctionRef<absl::Status(const std::string& key)> member) {
  if (absl::Status status = Expect('{', "an object ('{')"); !status.ok()) return status;
  SkipWhitespace();
  if (pos_ < text_.size() && text_[pos_] == '}') {
    ++pos_;
    return absl::OkStatus();
  }
  std::string key;
  while (true) {
    SkipWhitespace();
    if (pos_ >= text_.size() || text_[pos_] != '"') {
      return Error(absl::StrCat("expected a member name in quotes, found ", Describe(text_, pos_)));
    }
    if (absl::Status status = ScanString(&key); !status.ok()) return status;
    if (absl::Status status = Expect(':', "':' after the member name"); !status.ok()) {
      return status;
    }
    if (absl::Status status = member(key); !status.ok()) return status;
    SkipWhitespace();
    if (pos_ < text_.size() && text_[pos_] == ',') {
      ++pos_;
      continue;
    }
    return Expect('}', "',' or '}' after an object member");
  }
}

absl::Status JsonReader::ReadArray(absl::FunctionRef<absl::Status()> element) {
  if (absl::Status status = Expect('[', "an array ('[')"); !status.ok()) return status;
  SkipWhitespace();
  if (pos_ < text_.size() && text_[pos_] == ']') {
    ++pos_;
    return absl::OkStatus();
  }
  while (true) {
    if (absl::Status status = element(); !status.ok()) return status;
    SkipWhitespace();
    if (pos_ < text_.size() && text_[pos_] == ',') {
      ++pos_;
      continue;
    }
    return Expect(']', "',' or ']' after an array element");
  }
}

absl::Status JsonReader::ReadString(std::string* value) {
  SkipWhitespace();
  if (pos_ >= text_.size() || text_[pos_] != '"') {
    return Error(absl::StrCat("expected a string, found ", Describe(text_, pos_)));
  }
  return ScanString(value);
}

absl::Status JsonReader::ReadInt(int64_t* value) {
  SkipWhitespace();
  const size_t start = pos_;
  absl::string_view token;
  if (absl::Status status = ScanNumber(&token); !status.ok()) return status;
  if (token.find_first_of(".eE") != absl::string_view::npos) {
    return ErrorAt(start, absl::StrCat("expected an integer, found ", token));
  }
  if (!absl::SimpleAtoi(token, value)) {
    return ErrorAt(start, absl::StrCat("integer ", token, " does not fit in 64 bits"));
  }
  return absl::OkStatus();
}

absl::Status JsonReader::Skip() { return SkipValue(0); }

absl::Status JsonReader::ExpectEnd() {
  SkipWhitespace();
  if (pos_ != text_.size()) {
    return Error(absl::StrCat("expected the end of the file after the top-level value, found ",
                              Describe(text_, pos_)));
  }
  return absl::OkStatus();
}

absl::Status JsonReader::SkipValue(int depth) {
  if (depth > kMaxDepth) return Error("values nested too deeply");
  SkipWhitespace();
  if (pos_ >= text_.size()) return Error("expected a value, found the end of the file");
  switch (text_[pos_]) {
    case '{':
      return ReadObject([&](const std::string&) { return SkipValue(depth + 1); });
    case '[':
      return ReadArray([&] { return SkipValue(depth + 1); });
    case '"':
      return ScanString(nullptr);
    case 't':
      return ScanLiteral("true");
    case 'f':
      return ScanLiteral("false");
    case 'n':
      return ScanLiteral("null");
    default: {
      absl::string_view token;
      return ScanNumber(&token);
    }
  }
}

absl::Status JsonReader::ScanLiteral(absl::string_view literal) {
  if (text_.substr(pos_, literal.size()) != literal) {
    return Error(absl::StrCat("expected a value, found ", Describe(text_, pos_)));
  }
  pos_ += literal.size();
  return absl::OkStatus();
}

// -? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?
absl::Status JsonReader::ScanNumber(absl::string_view* token) {
  const size_t start = pos_;
  const auto digits = [&] {
    const size_t first = pos_;
    while (pos_ < text_.size() && IsDigit(text_[pos_])) ++pos_;
    return pos_ > first;
  };
  const auto bad = [&] {
    return ErrorAt(start, absl::StrCat("expected a value, found ", Describe(text_, start)));
  };
  if (pos_ < text_.size() && text_[pos_] == '-') ++pos_;
  if (pos_ < text_.size() && text_[pos_] == '0') {
    ++pos_;
  } else if (!digits()) {
    return bad();
  }
  if (pos_ < text_.size() && text_[pos_] == '.') {
    ++pos_;
    if (!digits()) return bad();
  }
  if (pos_ < text_.size() && (text_[pos_] == 'e' || text_[pos_] == 'E')) {
    ++pos_;
    if (pos_ < text_.size() && (text_[pos_] == '+' || text_[pos_] == '-')) ++pos_;
    if (!digits()) return bad();
  }
  *token = text_.substr(start, pos_ - start);
  return absl::OkStatus();
}

// Starts at the opening quote. With `value` null the string is only checked.
absl::Status JsonReader::ScanString(std::string* value) {
  const size_t start = pos_;
  ++pos_;
  if (value != nullptr) value->clear();
  while (true) {
    const size_t run = pos_;
    while (pos_ < text_.size() && text_[pos_] != '"' && text_[pos_] != '\\' &&
           static_cast<unsigned char>(text_[pos_]) >= 0x20) {
      ++pos_;
    }
    if (value != nullptr) value->append(text_.data() + run, pos_ - run);
    if (pos_ >= text_.size()) return ErrorAt(start, "string without its closing quote");
    const char c = text_[pos_];
    if (c == '"') {
      ++pos_;
      return absl::OkStatus();
    }
    if (c != '\\') return Error("control character inside a string (escape it)");
    if (pos_ + 1 >= text_.size()) return ErrorAt(start, "string without its closing quote");
    const char escape = text_[pos_ + 1];
    pos_ += 2;
    char plain = 0;
    switch (escape) {
      case '"':
      case '\\':
      case '/':
        plain = escape;
        break;
      case 'b':
        plain = '\b';
        break;
      case 'f':
        plain = '\f';
        break;
      case 'n':
        plain = '\n';
        break;
      case 'r':
        plain = '\r';
        break;
      case 't':
        plain = '\t';
        break;
      case 'u': {
        const auto hex4 = [&](uint32_t* code) {
          if (pos_ + 4 > text_.size()) return false;
          *code = 0;
          for (int i = 0; i < 4; ++i) {
            const int digit = HexValue(text_[pos_ + i]);
            if (digit < 0) return false;
            *code = *code * 16 + static_cast<uint32_t>(digit);
          }
          pos_ += 4;
          return true;
        };
        uint32_t code = 0;
        if (!hex4(&code)) return Error("\\u must be followed by 4 hexadecimal digits");
        if (code >= 0xD800 && code < 0xDC00 && text_.substr(pos_, 2) == "\\u") {
          pos_ += 2;
          uint32_t low = 0;
          if (!hex4(&low) || low < 0xDC00 || low >= 0xE000) {
            return Error("a UTF-16 high surrogate must be followed by a low surrogate");
          }
          code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00);
        }
        if (value != nullptr) AppendUtf8(code, value);
        continue;
      }
      default:
        return ErrorAt(pos_ - 2,
                       absl::StrCat("unknown escape \\", absl::string_view(&text_[pos_ - 1], 1)));
    }
    if (value != nullptr) value->push_back(plain);
  }
}

}  // namespace json_reader
