#include "host/npy_writer.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "host/files.h"
#include "kd/error.h"

namespace kd::host {

namespace fs = std::filesystem;

namespace {

// The header's total size: room for a shape of up to 8 dimensions of 12 digits each.
constexpr size_t kHeaderBytes = 192;

absl::Status Write(int fd, absl::string_view data, const fs::path& path) {
  if (const int cause = WriteAll(fd, data); cause != 0) {
    errno = cause;
    return ErrnoError("cannot write", path);
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status NpyType(at::ScalarType dtype, at::ScalarType* stored, std::string* descr,
                     std::string* name) {
  struct Entry {
    at::ScalarType type;
    const char* descr;
    const char* name;
  };
  static const Entry kTypes[] = {
      {at::kFloat, "<f4", "float32"}, {at::kDouble, "<f8", "float64"},
      {at::kHalf, "<f2", "float16"},  {at::kLong, "<i8", "int64"},
      {at::kInt, "<i4", "int32"},     {at::kShort, "<i2", "int16"},
      {at::kChar, "|i1", "int8"},     {at::kByte, "|u1", "uint8"},
      {at::kBool, "|b1", "bool"},
  };
  const at::ScalarType want = dtype == at::kBFloat16 ? at::kFloat : dtype;
  for (const Entry& e : kTypes) {
    if (e.type != want) continue;
    *stored = want;
    *descr = e.descr;
    *name = e.name;
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(
      absl::StrCat("tensors of type ", c10::toString(dtype), " have no .npy type"));
}

NpyWriter::~NpyWriter() {
  if (fd_ >= 0) ::close(fd_);
}

std::string NpyWriter::dtype_name() const {
  at::ScalarType stored;
  std::string descr, name;
  return NpyType(stored_, &stored, &descr, &name).ok() ? name : "";
}

std::string NpyWriter::Header() const {
  at::ScalarType stored;
  std::string descr, name;
  NpyType(stored_, &stored, &descr, &name).IgnoreError();
  std::vector<int64_t> shape = {rows_};
  shape.insert(shape.end(), row_shape_.begin(), row_shape_.end());
  std::string dims = absl::StrJoin(shape, ", ");
  if (shape.size() == 1) dims += ",";
  std::string header =
      absl::StrCat("{'descr': '", descr, "', 'fortran_order': False, 'shape': (", dims, "), }");
  // Magic, version 1.0, the header's length (little-endian uint16), the header padded with
  // spaces and ended by a newline to kHeaderBytes in all (a multiple of 64, as numpy aligns).
  const size_t text_bytes = kHeaderBytes - 10;
  header.resize(text_bytes - 1, ' ');
  header += '\n';
  std::string out = "\x93NUMPY";
  out += '\x01';
  out += '\x00';
  out += static_cast<char>(text_bytes & 0xff);
  out += static_cast<char>((text_bytes >> 8) & 0xff);
  return out + header;
}

absl::Status NpyWriter::Open(const fs::path& path, at::ScalarType dtype,
                             std::vector<int64_t> row_shape) {
  std::string descr, name;
  if (absl::Status type = NpyType(dtype, &stored_, &descr, &name); !type.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(path.string(), ": ", type.message()));
  }
  if (row_shape.size() > 7) {
    return absl::InvalidArgumentError(
        absl::StrCat(path.string(), ": more than 8 dimensions cannot be stored"));
  }
  path_ = path;
  row_shape_ = std::move(row_shape);
  fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) return ErrnoError("cannot create", path);
  const std::string header = Header();
  return Write(fd_, header, path_);
}

absl::Status NpyWriter::Append(const torch::Tensor& rows) {
  if (rows.dim() != static_cast<int64_t>(row_shape_.size()) + 1 ||
      rows.sizes().slice(1) != at::IntArrayRef(row_shape_)) {
    std::vector<int64_t> got(rows.sizes().begin(), rows.sizes().end());
    return absl::InvalidArgumentError(
        absl::StrCat(path_.string(), ": rows of shape [", absl::StrJoin(got, ", "),
                     "] after rows of shape [N, ", absl::StrJoin(row_shape_, ", "), "]"));
  }
  const torch::Tensor host = rows.detach().to(torch::kCPU, stored_).contiguous();
  KD_RETURN_IF_ERROR(Write(
      fd_, absl::string_view(static_cast<const char*>(host.data_ptr()), host.nbytes()), path_));
  rows_ += rows.size(0);
  return absl::OkStatus();
}

absl::Status NpyWriter::Close() {
  if (fd_ < 0) return absl::OkStatus();
  const std::string header = Header();
  if (::pwrite(fd_, header.data(), header.size(), 0) != static_cast<ssize_t>(header.size())) {
    return ErrnoError("cannot write the header of", path_);
  }
  if (::fsync(fd_) != 0) return ErrnoError("cannot flush", path_);
  const int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) return ErrnoError("cannot close", path_);
  return absl::OkStatus();
}

}  // namespace kd::host
