// How kd::Options sees the config tree (host side only).
#pragma once

#include <memory>
#include <string>

#include "host/config.h"
#include "kd/options.h"

namespace kd::detail {

struct OptionsImpl {
  std::shared_ptr<const host::CNode> root;  // keeps the whole tree alive
  const host::CNode* table = nullptr;
  std::string key_path;
};

}  // namespace kd::detail

namespace kd::host {

// Options over `table`, a node inside the tree owned by `root`.
Options MakeOptions(std::shared_ptr<const CNode> root, const CNode* table, std::string key_path);
// Options over a tree of its own.
Options MakeOptions(CNode table, std::string key_path = "");

}  // namespace kd::host
