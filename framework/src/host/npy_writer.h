// NumPy .npy files written as a stream: a header with room for the final shape, rows appended
// batch by batch, the shape filled in when closed (format version 1.0, little-endian, C order;
// https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html). numpy.load reads them,
// memory-mapped if wanted, without kdhost.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace kd::host {

class NpyWriter {
 public:
  NpyWriter() = default;
  ~NpyWriter();
  NpyWriter(const NpyWriter&) = delete;
  NpyWriter& operator=(const NpyWriter&) = delete;

  // Creates `path` for rows of `dtype` (bfloat16 is stored as float32) and shape `row_shape`.
  absl::Status Open(const std::filesystem::path& path, at::ScalarType dtype,
                    std::vector<int64_t> row_shape);
  // Appends `rows` (any device; the first dimension counts rows, the rest must be row_shape).
  absl::Status Append(const torch::Tensor& rows);
  // Writes the final shape into the header and flushes the file.
  absl::Status Close();

  int64_t rows() const { return rows_; }
  // "float32", "int64", ... as numpy names the stored type.
  std::string dtype_name() const;
  const std::vector<int64_t>& row_shape() const { return row_shape_; }

 private:
  std::string Header() const;
  int fd_ = -1;
  std::filesystem::path path_;
  at::ScalarType stored_ = at::kFloat;
  std::vector<int64_t> row_shape_;
  int64_t rows_ = 0;
};

// The numpy type string ('<f4', ...) and name of a torch type, or an error for one numpy lacks.
absl::Status NpyType(at::ScalarType dtype, at::ScalarType* stored, std::string* descr,
                     std::string* name);

}  // namespace kd::host
