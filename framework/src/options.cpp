#include "kd/options.h"

#include "absl/strings/str_cat.h"
#include "host/options_impl.h"
#include "kd/error.h"

namespace kd {

using host::CNode;

namespace host {

Options MakeOptions(std::shared_ptr<const CNode> root, const CNode* table, std::string key_path) {
  auto impl = std::make_shared<detail::OptionsImpl>();
  impl->root = std::move(root);
  impl->table = table;
  impl->key_path = std::move(key_path);
  return Options(std::move(impl));
}

Options MakeOptions(CNode table, std::string key_path) {
  auto root = std::make_shared<const CNode>(std::move(table));
  const CNode* node = root.get();
  return MakeOptions(std::move(root), node, std::move(key_path));
}

}  // namespace host

Options::Options() : Options(host::MakeOptions(CNode(), "")) {}

Options::Options(std::shared_ptr<const detail::OptionsImpl> impl) : impl_(std::move(impl)) {}

namespace {

const CNode& Require(const detail::OptionsImpl& impl, absl::string_view key,
                     std::initializer_list<CNode::Type> types, absl::string_view what) {
  const CNode* node = impl.table->Get(key);
  const std::string path = host::JoinKey(impl.key_path, key);
  if (node == nullptr) {
    throw Error(absl::NotFoundError(absl::StrCat(impl.table->loc().ToString(), ": ", path,
                                                 ": option has no value (declare it with a "
                                                 "default, or check Options::Has first)")));
  }
  for (CNode::Type type : types) {
    if (node->type() == type) return *node;
  }
  throw Error(
      absl::InvalidArgumentError(absl::StrCat(node->loc().ToString(), ": ", path, ": expected ",
                                              what, ", got ", host::TypeName(node->type()))));
}

template <typename T, typename Get>
std::vector<T> ReadList(const detail::OptionsImpl& impl, absl::string_view key,
                        absl::string_view what, std::initializer_list<CNode::Type> types, Get get) {
  const CNode& node = Require(impl, key, {CNode::Type::kArray}, what);
  std::vector<T> out;
  for (const CNode& item : node.array()) {
    bool ok = false;
    for (CNode::Type type : types) ok = ok || item.type() == type;
    if (!ok) {
      throw Error(absl::InvalidArgumentError(absl::StrCat(
          item.loc().ToString(), ": ", host::JoinKey(impl.key_path, key), ": expected ", what,
          ", found an element of type ", host::TypeName(item.type()))));
    }
    out.push_back(get(item));
  }
  return out;
}

}  // namespace

bool Options::Has(absl::string_view key) const { return impl_->table->Get(key) != nullptr; }

bool Options::Bool(absl::string_view key) const {
  return Require(*impl_, key, {CNode::Type::kBool}, "a bool").as_bool();
}

int64_t Options::Int(absl::string_view key) const {
  return Require(*impl_, key, {CNode::Type::kInt}, "an integer").as_int();
}

double Options::Float(absl::string_view key) const {
  const CNode& node = Require(*impl_, key, {CNode::Type::kFloat, CNode::Type::kInt}, "a number");
  return node.type() == CNode::Type::kInt ? static_cast<double>(node.as_int()) : node.as_float();
}

std::string Options::String(absl::string_view key) const {
  return Require(*impl_, key, {CNode::Type::kString}, "a string").as_string();
}

std::vector<int64_t> Options::IntList(absl::string_view key) const {
  return ReadList<int64_t>(*impl_, key, "a list of integers", {CNode::Type::kInt},
                           [](const CNode& n) { return n.as_int(); });
}

std::vector<double> Options::FloatList(absl::string_view key) const {
  return ReadList<double>(*impl_, key, "a list of numbers",
                          {CNode::Type::kFloat, CNode::Type::kInt}, [](const CNode& n) {
                            return n.type() == CNode::Type::kInt ? static_cast<double>(n.as_int())
                                                                 : n.as_float();
                          });
}

std::vector<std::string> Options::StringList(absl::string_view key) const {
  return ReadList<std::string>(*impl_, key, "a list of strings", {CNode::Type::kString},
                               [](const CNode& n) { return n.as_string(); });
}

Options Options::Sub(absl::string_view key) const {
  const CNode& node = Require(*impl_, key, {CNode::Type::kTable}, "a table");
  return host::MakeOptions(impl_->root, &node, host::JoinKey(impl_->key_path, key));
}

std::vector<Options> Options::SubList(absl::string_view key) const {
  const CNode& node = Require(*impl_, key, {CNode::Type::kArray}, "a list of tables");
  std::vector<Options> out;
  int i = 0;
  for (const CNode& item : node.array()) {
    const std::string path = absl::StrCat(host::JoinKey(impl_->key_path, key), "[", i++, "]");
    if (!item.is_table()) {
      throw Error(absl::InvalidArgumentError(absl::StrCat(item.loc().ToString(), ": ", path,
                                                          ": expected a table, got ",
                                                          host::TypeName(item.type()))));
    }
    out.push_back(host::MakeOptions(impl_->root, &item, path));
  }
  return out;
}

std::vector<std::string> Options::Keys() const {
  std::vector<std::string> keys;
  for (const auto& [key, value] : impl_->table->table()) keys.push_back(key);
  return keys;
}

std::string Options::Type() const {
  const CNode* type = impl_->table->Get("type");
  return type != nullptr && type->is_string() ? type->as_string() : "";
}

std::string Options::KeyPath() const { return impl_->key_path; }

std::string Options::Location(absl::string_view key) const {
  if (!key.empty()) {
    if (const CNode* node = impl_->table->Get(key)) return node->loc().ToString();
  }
  return impl_->table->loc().ToString();
}

std::string Options::ToToml() const { return host::ToToml(*impl_->table); }

void Options::Fail(absl::string_view key, absl::string_view message) const {
  const std::string path = key.empty() ? impl_->key_path : host::JoinKey(impl_->key_path, key);
  throw Error(absl::InvalidArgumentError(absl::StrCat(Location(key), ": ", path, ": ", message)));
}

}  // namespace kd
