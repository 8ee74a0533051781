// kd::Options: read-only, validated view of one component's config table. By the time a factory
// sees it, every key has been checked against the component's schema and every default filled in,
// so the typed getters cannot fail for declared options. Components read their options once into
// a struct and keep no reference to the config.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace kd {

namespace detail {
struct OptionsImpl;
}  // namespace detail

class Options {
 public:
  Options();
  explicit Options(std::shared_ptr<const detail::OptionsImpl> impl);

  bool Has(absl::string_view key) const;
  bool Bool(absl::string_view key) const;
  int64_t Int(absl::string_view key) const;
  double Float(absl::string_view key) const;
  std::string String(absl::string_view key) const;
  std::vector<int64_t> IntList(absl::string_view key) const;
  std::vector<double> FloatList(absl::string_view key) const;
  std::vector<std::string> StringList(absl::string_view key) const;
  // A nested table (a component or a kTable / kAnyTable option).
  Options Sub(absl::string_view key) const;
  // An array of nested tables.
  std::vector<Options> SubList(absl::string_view key) const;
  // The keys present in this table, sorted.
  std::vector<std::string> Keys() const;

  // The `type` of a component table, qualified as plugin::Name after validation.
  std::string Type() const;
  // Dotted key path of this table from the config root, e.g. "model.backbone".
  std::string KeyPath() const;
  // "file:line:column" of this table, or of `key` inside it.
  std::string Location(absl::string_view key = {}) const;
  // The table as TOML text (keys sorted: a canonical form, usable for hashing).
  std::string ToToml() const;

  // Throws kd::Error "file:line:col: <keypath>.<key>: <message>". For checks the schema cannot
  // express, e.g. "depth must be one of 18, 34, 50, 101, 152".
  [[noreturn]] void Fail(absl::string_view key, absl::string_view message) const;

  const detail::OptionsImpl* impl() const { return impl_.get(); }

 private:
  std::shared_ptr<const detail::OptionsImpl> impl_;
};

}  // namespace kd
