// Files that hold one pickled dictionary (torch::pickle_save), as checkpoints are: tagged with a
// format name, carrying a checksum of their content, written atomically, and checked before
// LibTorch reads them.
#pragma once

#include <ATen/core/Dict.h>

#include <filesystem>

#include "absl/status/statusor.h"

namespace kd::host {

using PickleDict = c10::impl::GenericDict;

// An empty dictionary of string keys and any values.
PickleDict NewPickleDict();

// Writes `dict` to `path` atomically, with a "checksum" entry: the CRC-32 of its content (tensors
// by dtype, shape and bytes; dictionaries in key order), independent of the pickle's layout.
absl::Status WritePickleFile(const std::filesystem::path& path, PickleDict dict);

// Reads a dictionary whose "format" entry is `format`. A damaged archive or pickle, another
// format and a checksum that does not match the content are errors naming the file and what to
// do; files without a checksum (written by other tools) are accepted.
absl::StatusOr<PickleDict> ReadPickleFile(const std::filesystem::path& path, const char* format);

}  // namespace kd::host
