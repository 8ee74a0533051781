// The JSON pull reader: values read and skipped, string escapes, and syntax errors placed by line
// and column.
#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "json_reader/json_reader.h"

namespace {

using json_reader::JsonReader;

// Reads {"name": <string>, "ids": [<int>...]} skipping any other member.
absl::Status ReadSample(JsonReader& json, std::string* name, std::vector<int64_t>* ids) {
  absl::Status status = json.ReadObject([&](const std::string& key) -> absl::Status {
    if (key == "name") return json.ReadString(name);
    if (key == "ids") {
      return json.ReadArray([&] {
        int64_t id = 0;
        absl::Status read = json.ReadInt(&id);
        ids->push_back(id);
        return read;
      });
    }
    return json.Skip();
  });
  return status.ok() ? json.ExpectEnd() : status;
}

std::string ErrorOf(const std::string& text) {
  JsonReader json(text, "f.json");
  std::string name;
  std::vector<int64_t> ids;
  const absl::Status status = ReadSample(json, &name, &ids);
  return status.ok() ? "ok" : std::string(status.message());
}

}  // namespace

TEST_CASE("JsonReader reads the members it is asked for and skips every other value") {
  const std::string text = R"({
    "skipped": {"a": [1, -2.5e+3, 0.125, true, false, null, {"b": [[], {}]}], "c": "x\"y"},
    "name": "caf\u00e9 \ud83d\ude00 tab\t\"q\" \\ \/",
    "ids": [0, -7, 9223372036854775807],
    "more": []
  })";
  JsonReader json(text, "f.json");
  std::string name;
  std::vector<int64_t> ids;
  REQUIRE(ReadSample(json, &name, &ids).ok());
  CHECK(name == "caf\xC3\xA9 \xF0\x9F\x98\x80 tab\t\"q\" \\ /");
  CHECK(ids == std::vector<int64_t>{0, -7, 9223372036854775807});
}

TEST_CASE("JsonReader places syntax errors by line and column") {
  CHECK(ErrorOf("{\"name\": \"a\",\n \"ids\": [1, 2,]}") ==
        "f.json:2:15: expected a value, found ']'");
  CHECK(ErrorOf("{\"name\" \"a\"}") ==
        "f.json:1:9: expected ':' after the member name, found '\"'");
  CHECK(ErrorOf("{\"ids\": [1.5]}") == "f.json:1:10: expected an integer, found 1.5");
  CHECK(ErrorOf("{\"ids\": [99999999999999999999]}") ==
        "f.json:1:10: integer 99999999999999999999 does not fit in 64 bits");
  CHECK(ErrorOf("{\"name\": 3}") == "f.json:1:10: expected a string, found '3'");
  CHECK(ErrorOf("{\"name\": \"abc") == "f.json:1:10: string without its closing quote");
  CHECK(ErrorOf("{\"name\": \"a\\qb\"}") == "f.json:1:12: unknown escape \\q");
  CHECK(ErrorOf("{\"name\": \"a\nb\"}") ==
        "f.json:1:12: control character inside a string (escape it)");
  CHECK(ErrorOf("{\"x\": tru}") == "f.json:1:7: expected a value, found 't'");
  CHECK(ErrorOf("{\"x\": 1} 2") ==
        "f.json:1:10: expected the end of the file after the top-level value, found '2'");
  CHECK(ErrorOf("{\"x\": [1 2]}") ==
        "f.json:1:10: expected ',' or ']' after an array element, "
        "found '2'");
  CHECK(ErrorOf("{\"x\": {") ==
        "f.json:1:8: expected a member name in quotes, found the end of "
        "the file");
  CHECK(ErrorOf("[]") == "f.json:1:1: expected an object ('{'), found '['");
  CHECK(ErrorOf("{\"x\": " + std::string(300, '[') + std::string(300, ']') + "}") ==
        "f.json:1:264: values nested too deeply");
}
