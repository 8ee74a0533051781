// Checks of the containers of torch's serialization formats before LibTorch reads them: LibTorch's
// zip reader trusts the offsets of a damaged archive and reads out of bounds, and its unpickler
// allocates every declared length before reading it.
#pragma once

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace kd::host {

// Checks that a zip archive (the container of torch's serialization formats) is well formed:
// every record, header and entry lies within `bytes`, and every stored data.pkl passes
// CheckPickle. Every archive is checked before LibTorch is given one.
absl::Status CheckZipArchive(absl::string_view bytes);

// Walks the opcodes of a pickle (protocols 0 to 5) and checks that every length it declares fits
// in what is left, up to STOP, and that memo indices are the next one or an earlier one.
absl::Status CheckPickle(absl::string_view pickle);

}  // namespace kd::host
