// ${key.path} interpolation between config values, and ${foreach.key} substitution.
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "host/config.h"
#include "kd/error.h"

namespace kd::host {

namespace fs = std::filesystem;

namespace {

class Interpolator {
 public:
  explicit Interpolator(CNode& root) : root_(root) {}

  absl::Status ResolveAll(CNode& node, const std::string& key_path) {
    if (node.is_string()) return ResolveString(node, key_path);
    if (node.is_table()) {
      for (auto& [key, child] : node.table()) {
        KD_RETURN_IF_ERROR(ResolveAll(child, JoinKey(key_path, key)));
      }
    } else if (node.is_array()) {
      int i = 0;
      for (CNode& child : node.array()) {
        KD_RETURN_IF_ERROR(ResolveAll(child, absl::StrCat(key_path, "[", i++, "]")));
      }
    }
    return absl::OkStatus();
  }

 private:
  absl::Status Fail(const CNode& node, const std::string& key_path, absl::string_view message) {
    return absl::InvalidArgumentError(
        absl::StrCat(node.loc().ToString(), ": ", key_path, ": ", message));
  }

  absl::Status ResolveString(CNode& node, const std::string& key_path) {
    if (done_.count(&node)) return absl::OkStatus();
    const std::string text = node.as_string();
    if (text.find("${") == std::string::npos) {
      done_.insert(&node);
      return absl::OkStatus();
    }
    if (active_.count(&node)) {
      return Fail(node, key_path,
                  absl::StrCat("interpolation cycle: '", text,
                               "' refers back to itself through other keys"));
    }
    active_.insert(&node);
    std::string out;
    size_t i = 0;
    while (i < text.size()) {
      if (text.compare(i, 3, "$${") == 0) {
        out += "${";
        i += 3;
        continue;
      }
      if (text.compare(i, 2, "${") != 0) {
        out += text[i++];
        continue;
      }
      const size_t close = text.find('}', i + 2);
      if (close == std::string::npos) {
        return Fail(node, key_path, absl::StrCat("unterminated '${' in '", text, "'"));
      }
      const std::string ref = text.substr(i + 2, close - i - 2);
      const bool whole = i == 0 && close + 1 == text.size();
      if (ref.rfind("foreach.", 0) == 0) {
        // Resolved per stage when a foreach template is expanded (SubstituteForeach).
        out += text.substr(i, close + 1 - i);
        i = close + 1;
        continue;
      }
      if (ref.rfind("env:", 0) == 0) {
        std::string name = ref.substr(4);
        std::optional<std::string> fallback;
        if (size_t dash = name.find(":-"); dash != std::string::npos) {
          fallback = name.substr(dash + 2);
          name = name.substr(0, dash);
        }
        const char* env = std::getenv(name.c_str());
        if (env != nullptr) {
          out += env;
        } else if (fallback) {
          out += *fallback;
        } else {
          return Fail(
              node, key_path,
              absl::StrCat("environment variable ", name,
                           " is not set; set it, or give a fallback: ${env:", name, ":-value}"));
        }
      } else {
        CNode* target = FindPath(root_, ref);
        if (target == nullptr) {
          return Fail(node, key_path,
                      absl::StrCat("${", ref, "} refers to a key that does not exist"));
        }
        if (target == &node) {
          return Fail(node, key_path, absl::StrCat("${", ref, "} refers to itself"));
        }
        KD_RETURN_IF_ERROR(ResolveAll(*target, ref));
        if (whole) {
          // The whole string is one reference: take the value with its type.
          node.SetValueFrom(*target);
          active_.erase(&node);
          done_.insert(&node);
          return absl::OkStatus();
        }
        switch (target->type()) {
          case CNode::Type::kString:
            out += target->as_string();
            break;
          case CNode::Type::kInt:
            out += std::to_string(target->as_int());
            break;
          case CNode::Type::kFloat:
            out += absl::StrCat(target->as_float());
            break;
          case CNode::Type::kBool:
            out += target->as_bool() ? "true" : "false";
            break;
          default:
            return Fail(node, key_path,
                        absl::StrCat("${", ref, "} is a ", TypeName(target->type()),
                                     " and cannot be spliced into a longer string"));
        }
      }
      i = close + 1;
    }
    node.SetValue(out);
    active_.erase(&node);
    done_.insert(&node);
    return absl::OkStatus();
  }

  CNode& root_;
  std::set<const CNode*> active_;
  std::set<const CNode*> done_;
};

}  // namespace

absl::Status Interpolate(CNode& root) { return Interpolator(root).ResolveAll(root, ""); }

absl::Status SubstituteForeach(CNode& node, const std::map<std::string, CNode>& values,
                               const std::string& key_path) {
  if (node.is_table()) {
    for (auto& [key, child] : node.table()) {
      KD_RETURN_IF_ERROR(SubstituteForeach(child, values, JoinKey(key_path, key)));
    }
    return absl::OkStatus();
  }
  if (node.is_array()) {
    int i = 0;
    for (CNode& child : node.array()) {
      KD_RETURN_IF_ERROR(SubstituteForeach(child, values, absl::StrCat(key_path, "[", i++, "]")));
    }
    return absl::OkStatus();
  }
  if (!node.is_string()) return absl::OkStatus();
  const std::string text = node.as_string();
  const std::string open = "${foreach.";
  std::string out;
  size_t i = 0;
  while (i < text.size()) {
    const size_t at = text.find(open, i);
    if (at == std::string::npos) {
      out += text.substr(i);
      break;
    }
    out += text.substr(i, at - i);
    const size_t close = text.find('}', at);
    if (close == std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat(node.loc().ToString(), ": ", key_path, ": unterminated '", open, "'"));
    }
    const std::string key = text.substr(at + open.size(), close - at - open.size());
    auto it = values.find(key);
    if (it == values.end()) {
      std::vector<std::string> known;
      for (const auto& [k, v] : values) known.push_back(k);
      return absl::InvalidArgumentError(
          absl::StrCat(node.loc().ToString(), ": ", key_path, ": ${foreach.", key, "} ",
                       known.empty() ? "is only available inside a stage with a `foreach` table"
                                     : absl::StrCat("is not a foreach key of this stage (it has: ",
                                                    absl::StrJoin(known, ", "), ")")));
    }
    if (at == 0 && close + 1 == text.size()) {
      node.SetValueFrom(it->second);  // the whole string: the value with its type
      return absl::OkStatus();
    }
    const CNode& value = it->second;
    out += value.is_string()                   ? value.as_string()
           : value.type() == CNode::Type::kInt ? std::to_string(value.as_int())
                                               : std::string(TypeName(value.type()));
    i = close + 1;
  }
  node.SetValue(out);
  return absl::OkStatus();
}

}  // namespace kd::host
