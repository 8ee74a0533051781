#include "kd/registry.h"

#include <algorithm>
#include <cctype>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "host/names.h"

namespace kd {

void Registrar::Add(Kind kind, std::string name, std::string doc, Schema schema, Factory factory) {
  ComponentInfo info;
  info.kind = kind;
  info.plugin = plugin_;
  info.name = std::move(name);
  info.doc = std::move(doc);
  info.schema = std::move(schema);
  info.factory = std::move(factory);
  components_.push_back(std::move(info));
}

namespace {

bool IsIdentifier(absl::string_view name) {
  if (name.empty() || !(std::isalpha(static_cast<unsigned char>(name[0])) || name[0] == '_')) {
    return false;
  }
  return std::all_of(name.begin(), name.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_';
  });
}

absl::string_view BareName(absl::string_view name) {
  const size_t sep = name.rfind("::");
  return sep == absl::string_view::npos ? name : name.substr(sep + 2);
}

}  // namespace

absl::Status Registry::Commit(PluginRecord plugin, std::vector<ComponentInfo> components) {
  if (const PluginRecord* existing = FindPlugin(plugin.name)) {
    return absl::AlreadyExistsError(absl::StrCat("plugin '", plugin.name, "' from ", plugin.path,
                                                 " is refused: a plugin of that name is "
                                                 "already loaded from ",
                                                 existing->path,
                                                 "; remove one of them from the plugin path"));
  }
  std::set<std::pair<Kind, std::string>> seen;
  for (const ComponentInfo& c : components) {
    const std::string where = absl::StrCat("plugin '", plugin.name, "' (", plugin.path, ")");
    if (!IsIdentifier(c.name)) {
      return absl::InvalidArgumentError(absl::StrCat(where, " registers a ", KindName(c.kind),
                                                     " named '", c.name,
                                                     "': component names are identifiers (letters, "
                                                     "digits, '_'); the plugin name scopes them"));
    }
    if (!c.factory) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, " registers ", c.QualifiedName(), " without a factory"));
    }
    if (c.schema.Find("type") != nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, ": ", c.QualifiedName(), " declares an option named 'type', which is reserved"));
    }
    if (!seen.emplace(c.kind, c.name).second) {
      return absl::AlreadyExistsError(
          absl::StrCat(where, " registers the ", KindName(c.kind), " ", c.QualifiedName(),
                       " twice; each component name may be registered once"));
    }
    for (const auto& existing : components_) {
      if (existing->kind == c.kind && existing->QualifiedName() == c.QualifiedName()) {
        const PluginRecord* owner = FindPlugin(existing->plugin);
        return absl::AlreadyExistsError(
            absl::StrCat(KindName(c.kind), " ", c.QualifiedName(), " from ", where,
                         " is already registered by plugin '", existing->plugin, "' (",
                         owner ? owner->path : "?", ")"));
      }
    }
  }
  for (ComponentInfo& c : components) {
    components_.push_back(std::make_unique<ComponentInfo>(std::move(c)));
  }
  plugins_.push_back(std::move(plugin));
  return absl::OkStatus();
}

absl::StatusOr<const ComponentInfo*> Registry::Find(Kind kind, absl::string_view name) const {
  const bool qualified = name.find("::") != absl::string_view::npos;
  std::vector<const ComponentInfo*> matches;
  for (const auto& c : components_) {
    if (c->kind != kind) continue;
    if (qualified ? c->QualifiedName() == name : c->name == name) matches.push_back(c.get());
  }
  if (matches.size() == 1) return matches.front();
  if (matches.size() > 1) {
    std::vector<std::string> names;
    for (const ComponentInfo* c : matches) names.push_back(c->QualifiedName());
    return absl::InvalidArgumentError(
        absl::StrCat("'", name, "' is ambiguous in the ", KindName(kind),
                     " registry: ", absl::StrJoin(names, ", "), "; write the plugin-scoped name"));
  }
  std::vector<std::string> known;
  std::vector<std::pair<size_t, std::string>> near;
  const absl::string_view bare = BareName(name);
  for (const auto& c : components_) {
    if (c->kind != kind) continue;
    known.push_back(c->QualifiedName());
    const size_t d =
        std::min(host::EditDistance(bare, c->name), host::EditDistance(name, c->QualifiedName()));
    if (d <= std::max<size_t>(2, bare.size() / 3)) near.emplace_back(d, c->QualifiedName());
  }
  std::sort(near.begin(), near.end());
  std::string message = absl::StrCat("'", name, "' is not in the ", KindName(kind), " registry");
  if (known.empty()) {
    absl::StrAppend(&message,
                    " (it is empty: is the plugin that provides it listed in `plugins`?)");
  } else {
    absl::StrAppend(&message, "; known: ", absl::StrJoin(known, ", "));
  }
  if (!near.empty()) {
    std::vector<std::string> guesses;
    for (size_t i = 0; i < near.size() && i < 3; ++i) guesses.push_back(near[i].second);
    absl::StrAppend(&message, "; did you mean ", absl::StrJoin(guesses, " or "), "?");
  }
  std::vector<std::string> elsewhere;
  for (const ComponentInfo* c : FindAnyKind(name)) {
    elsewhere.push_back(absl::StrCat(c->QualifiedName(), " is a ", KindName(c->kind)));
  }
  if (!elsewhere.empty())
    absl::StrAppend(&message, " (note: ", absl::StrJoin(elsewhere, ", "), ")");
  return absl::NotFoundError(message);
}

std::vector<const ComponentInfo*> Registry::FindAnyKind(absl::string_view name) const {
  std::vector<const ComponentInfo*> out;
  for (const auto& c : components_) {
    if (c->QualifiedName() == name || c->name == name) out.push_back(c.get());
  }
  return out;
}

std::vector<const ComponentInfo*> Registry::List(Kind kind) const {
  std::vector<const ComponentInfo*> out;
  for (const auto& c : components_) {
    if (c->kind == kind) out.push_back(c.get());
  }
  return out;
}

std::vector<const ComponentInfo*> Registry::All() const {
  std::vector<const ComponentInfo*> out;
  for (const auto& c : components_) out.push_back(c.get());
  return out;
}

const PluginRecord* Registry::FindPlugin(absl::string_view name) const {
  for (const PluginRecord& p : plugins_) {
    if (p.name == name) return &p;
  }
  return nullptr;
}

}  // namespace kd
