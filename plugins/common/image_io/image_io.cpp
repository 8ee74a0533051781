// libjpeg(-turbo) and libpng behind image_io.h. Both libraries report errors through callbacks
// that must not return; the callbacks here longjmp back to the decoding function, which holds only
// C state between its setjmp and any longjmp, so no C++ destructor is ever skipped.
#include "image_io/image_io.h"

// jpeglib.h needs FILE and size_t declared before it.
#include <cstdio>

#include <jerror.h>
#include <jpeglib.h>
#include <png.h>
#include <torch/torch.h>

#include <csetjmp>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "kd/error.h"

namespace image_io {

namespace {

namespace fs = std::filesystem;

[[noreturn]] void Fail(const fs::path& path, absl::StatusCode code, absl::string_view problem) {
  throw kd::Error(absl::Status(code, absl::StrCat(path.string(), ": ", problem)));
}

std::string ReadFile(const fs::path& path) {
  std::error_code error;
  if (!fs::exists(path, error)) Fail(path, absl::StatusCode::kNotFound, "no such file");
  if (fs::is_directory(path, error)) {
    Fail(path, absl::StatusCode::kInvalidArgument, "is a directory, not an image file");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) Fail(path, absl::StatusCode::kPermissionDenied, "cannot be opened for reading");
  in.seekg(0, std::ios::end);
  const std::streamoff size = in.tellg();
  in.seekg(0, std::ios::beg);
  std::string bytes(static_cast<size_t>(size), '\0');
  if (size < 0 || !in.read(bytes.data(), size)) {
    Fail(path, absl::StatusCode::kDataLoss, "read error");
  }
  return bytes;
}

void WriteFile(const fs::path& path, const unsigned char* data, size_t size) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) Fail(path, absl::StatusCode::kPermissionDenied, "cannot be opened for writing");
  out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  out.close();
  if (!out) Fail(path, absl::StatusCode::kDataLoss, "write error");
}

// Decoded pixels, interleaved row by row as the libraries deliver them: [height, width, channels].
struct RawImage {
  int64_t height = 0;
  int64_t width = 0;
  int64_t channels = 0;
  std::vector<uint8_t> pixels;
};

// Room for a library's message (at most kLibraryMessageSize) with our prefix.
constexpr size_t kLibraryMessageSize = 200;
constexpr size_t kMessageSize = 512;

// ---- JPEG --------------------------------------------------------------------------------------

struct JpegErrorManager {
  jpeg_error_mgr manager;  // first, so that libjpeg's cinfo->err points at the whole struct
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
  bool truncated;
};

void JpegErrorExit(j_common_ptr cinfo) {
  auto* error = reinterpret_cast<JpegErrorManager*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, error->message);
  std::longjmp(error->jump, 1);
}

// libjpeg only warns about a premature end of data and pads the image with grey; Pillow refuses
// such files ("image file is truncated"), so the warning is recorded and reported as an error.
// Other warnings (extraneous bytes before a marker, ...) are ignored, as Pillow ignores them.
void JpegEmitMessage(j_common_ptr cinfo, int level) {
  if (level < 0 && cinfo->err->msg_code == JWRN_JPEG_EOF) {
    reinterpret_cast<JpegErrorManager*>(cinfo->err)->truncated = true;
  }
}

// Pillow decodes CMYK JPEGs with the inverted ("Adobe") convention and converts CMYK to RGB as
// R = (255 - K) - (255 - K) * C / 255 with its rounding MULDIV255 (libImaging/Convert.c, cmyk2rgb).
void CmykToRgb(RawImage& image) {
  const int64_t count = image.height * image.width;
  std::vector<uint8_t> rgb(count * 3);
  for (int64_t i = 0; i < count; ++i) {
    const uint8_t* cmyk = image.pixels.data() + i * 4;
    const int nk = cmyk[3];  // 255 - K with K = 255 - stored
    for (int c = 0; c < 3; ++c) {
      const int tmp = (255 - cmyk[c]) * nk + 128;
      rgb[i * 3 + c] = static_cast<uint8_t>(nk - (((tmp >> 8) + tmp) >> 8));
    }
  }
  image.pixels = std::move(rgb);
  image.channels = 3;
}

// Decodes into `image`; on failure returns false with the problem in `message`.
bool DecodeJpeg(const std::string& bytes, RawImage* image, char* message) {
  jpeg_decompress_struct cinfo;
  JpegErrorManager error;
  cinfo.err = jpeg_std_error(&error.manager);
  error.manager.error_exit = JpegErrorExit;
  error.manager.emit_message = JpegEmitMessage;
  error.truncated = false;
  if (setjmp(error.jump)) {
    jpeg_destroy_decompress(&cinfo);
    std::snprintf(message, kMessageSize, "corrupt JPEG data: %s", error.message);
    return false;
  }
  jpeg_create_decompress(&cinfo);
  jpeg_mem_src(&cinfo, reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size());
  jpeg_read_header(&cinfo, TRUE);
  if (cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK) {
    cinfo.out_color_space = JCS_CMYK;
  } else if (cinfo.num_components == 1) {
    cinfo.out_color_space = JCS_GRAYSCALE;
  } else {
    cinfo.out_color_space = JCS_RGB;
  }
  jpeg_start_decompress(&cinfo);
  image->height = cinfo.output_height;
  image->width = cinfo.output_width;
  image->channels = cinfo.output_components;
  const size_t stride = static_cast<size_t>(image->width * image->channels);
  image->pixels.resize(stride * image->height);
  while (cinfo.output_scanline < cinfo.output_height) {
    JSAMPROW row = image->pixels.data() + cinfo.output_scanline * stride;
    jpeg_read_scanlines(&cinfo, &row, 1);
  }
  jpeg_finish_decompress(&cinfo);
  jpeg_destroy_decompress(&cinfo);
  if (error.truncated) {
    std::snprintf(message, kMessageSize, "truncated JPEG data (premature end of file)");
    return false;
  }
  if (image->channels == 4) CmykToRgb(*image);
  return true;
}

struct JpegOutput {
  unsigned char* buffer = nullptr;
  unsigned long size = 0;  // NOLINT(runtime/int): libjpeg's type
};

bool EncodeJpeg(const uint8_t* pixels, int64_t height, int64_t width, int64_t channels, int quality,
                JpegOutput* output, char* message) {
  jpeg_compress_struct cinfo;
  JpegErrorManager error;
  cinfo.err = jpeg_std_error(&error.manager);
  error.manager.error_exit = JpegErrorExit;
  if (setjmp(error.jump)) {
    jpeg_destroy_compress(&cinfo);
    std::snprintf(message, kMessageSize, "JPEG encoding failed: %s", error.message);
    return false;
  }
  jpeg_create_compress(&cinfo);
  jpeg_mem_dest(&cinfo, &output->buffer, &output->size);
  cinfo.image_width = static_cast<JDIMENSION>(width);
  cinfo.image_height = static_cast<JDIMENSION>(height);
  cinfo.input_components = static_cast<int>(channels);
  cinfo.in_color_space = channels == 1 ? JCS_GRAYSCALE : JCS_RGB;
  jpeg_set_defaults(&cinfo);
  jpeg_set_quality(&cinfo, quality, TRUE);
  jpeg_start_compress(&cinfo, TRUE);
  const size_t stride = static_cast<size_t>(width * channels);
  while (cinfo.next_scanline < cinfo.image_height) {
    JSAMPROW row = const_cast<uint8_t*>(pixels) + cinfo.next_scanline * stride;
    jpeg_write_scanlines(&cinfo, &row, 1);
  }
  jpeg_finish_compress(&cinfo);
  jpeg_destroy_compress(&cinfo);
  return true;
}

// ---- PNG ---------------------------------------------------------------------------------------

struct PngErrorState {
  char message[kLibraryMessageSize];
};

void PngError(png_structp png, png_const_charp message) {
  auto* state = static_cast<PngErrorState*>(png_get_error_ptr(png));
  std::snprintf(state->message, kLibraryMessageSize, "%s", message);
  png_longjmp(png, 1);
}

// Warnings (bad ancillary chunks, ...) do not make the pixels wrong; Pillow ignores them too.
void PngWarning(png_structp, png_const_charp) {}

struct PngSource {
  const uint8_t* data;
  size_t size;
  size_t offset;
};

void PngRead(png_structp png, png_bytep out, size_t length) {
  auto* source = static_cast<PngSource*>(png_get_io_ptr(png));
  if (source->size - source->offset < length) {
    png_error(png, "truncated PNG data (unexpected end of file)");
  }
  std::memcpy(out, source->data + source->offset, length);
  source->offset += length;
}

enum class PngTarget { kPixels, kIndices };

const char* PngColorTypeName(int color_type) {
  switch (color_type) {
    case PNG_COLOR_TYPE_GRAY:
      return "greyscale";
    case PNG_COLOR_TYPE_GRAY_ALPHA:
      return "greyscale with alpha";
    case PNG_COLOR_TYPE_RGB:
      return "RGB";
    case PNG_COLOR_TYPE_RGB_ALPHA:
      return "RGBA";
    case PNG_COLOR_TYPE_PALETTE:
      return "palette";
  }
  return "unknown";
}

// The transformations that make libpng deliver what Pillow's PNG decoder gives: palettes expanded
// (with alpha when the file has a tRNS chunk), 1/2/4-bit grey scaled to 8 bits, 16-bit samples
// reduced to their high byte (Pillow's "RGB;16B" raw modes), no gamma correction. For indices the
// samples are only unpacked to one byte each. Returns false with `message` for an unsuitable file.
bool SetPngTransforms(png_structp png, png_infop info, PngTarget target, char* message) {
  const int bit_depth = png_get_bit_depth(png, info);
  const int color_type = png_get_color_type(png, info);
  if (target == PngTarget::kIndices) {
    if (color_type != PNG_COLOR_TYPE_PALETTE && color_type != PNG_COLOR_TYPE_GRAY) {
      std::snprintf(message, kMessageSize,
                    "holds %s pixels; class indices need a palette or greyscale PNG",
                    PngColorTypeName(color_type));
      return false;
    }
    if (bit_depth > 8) {
      std::snprintf(message, kMessageSize,
                    "holds %d-bit greyscale samples; class indices need at most 8 bits", bit_depth);
      return false;
    }
    if (bit_depth < 8) png_set_packing(png);
    return true;
  }
  if (bit_depth == 16) png_set_strip_16(png);
  if (color_type == PNG_COLOR_TYPE_PALETTE) {
    png_set_palette_to_rgb(png);
    if (png_get_valid(png, info, PNG_INFO_tRNS)) png_set_tRNS_to_alpha(png);
  }
  if (color_type == PNG_COLOR_TYPE_GRAY && bit_depth < 8) png_set_expand_gray_1_2_4_to_8(png);
  return true;
}

bool DecodePng(const std::string& bytes, PngTarget target, RawImage* image, char* message) {
  PngErrorState error;
  PngSource source{reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), 0};
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &error, PngError, PngWarning);
  if (png == nullptr) {
    std::snprintf(message, kMessageSize, "libpng could not start");
    return false;
  }
  png_infop info = png_create_info_struct(png);
  if (info == nullptr) {
    png_destroy_read_struct(&png, nullptr, nullptr);
    std::snprintf(message, kMessageSize, "libpng could not start");
    return false;
  }
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_read_struct(&png, &info, nullptr);
    std::snprintf(message, kMessageSize, "corrupt PNG data: %s", error.message);
    return false;
  }
  png_set_read_fn(png, &source, PngRead);
  png_read_info(png, info);
  if (!SetPngTransforms(png, info, target, message)) {
    png_destroy_read_struct(&png, &info, nullptr);
    return false;
  }
  const int passes = png_set_interlace_handling(png);
  png_read_update_info(png, info);
  image->height = png_get_image_height(png, info);
  image->width = png_get_image_width(png, info);
  image->channels = png_get_channels(png, info);
  const size_t stride = png_get_rowbytes(png, info);
  image->pixels.resize(stride * image->height);
  // Interlaced images take one sweep over all rows per pass; libpng merges the passes.
  for (int pass = 0; pass < passes; ++pass) {
    for (int64_t y = 0; y < image->height; ++y) {
      png_read_row(png, image->pixels.data() + y * stride, nullptr);
    }
  }
  png_destroy_read_struct(&png, &info, nullptr);
  return true;
}

void PngWrite(png_structp png, png_bytep data, size_t length) {
  auto* out = static_cast<std::vector<uint8_t>*>(png_get_io_ptr(png));
  out->insert(out->end(), data, data + length);
}

void PngFlush(png_structp) {}

// `palette` may be null (no PLTE chunk).
bool EncodePng(const uint8_t* pixels, int64_t height, int64_t width, int color_type,
               int64_t channels, const png_color* palette, int palette_size,
               std::vector<uint8_t>* out, char* message) {
  PngErrorState error;
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &error, PngError, PngWarning);
  if (png == nullptr) {
    std::snprintf(message, kMessageSize, "libpng could not start");
    return false;
  }
  png_infop info = png_create_info_struct(png);
  if (info == nullptr) {
    png_destroy_write_struct(&png, nullptr);
    std::snprintf(message, kMessageSize, "libpng could not start");
    return false;
  }
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, &info);
    std::snprintf(message, kMessageSize, "PNG encoding failed: %s", error.message);
    return false;
  }
  png_set_write_fn(png, out, PngWrite, PngFlush);
  png_set_IHDR(png, info, static_cast<png_uint_32>(width), static_cast<png_uint_32>(height), 8,
               color_type, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
               PNG_FILTER_TYPE_DEFAULT);
  if (palette != nullptr) png_set_PLTE(png, info, palette, palette_size);
  png_write_info(png, info);
  const size_t stride = static_cast<size_t>(width * channels);
  for (int64_t y = 0; y < height; ++y) {
    png_write_row(png, pixels + y * stride);
  }
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
  return true;
}

// ---- Shared ------------------------------------------------------------------------------------

bool StartsWith(const std::string& bytes, const unsigned char* signature, size_t size) {
  return bytes.size() >= size && std::memcmp(bytes.data(), signature, size) == 0;
}

constexpr unsigned char kJpegSignature[] = {0xFF, 0xD8, 0xFF};
constexpr unsigned char kPngSignature[] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};

std::string FirstBytes(const std::string& bytes) {
  std::string hex;
  for (size_t i = 0; i < bytes.size() && i < 4; ++i) {
    absl::StrAppend(&hex, i ? " " : "", absl::StrFormat("%02x", static_cast<uint8_t>(bytes[i])));
  }
  return hex;
}

// [H, W, C] interleaved -> contiguous uint8 [C, H, W], owning its memory.
torch::Tensor ToChw(RawImage& image) {
  torch::Tensor hwc = torch::from_blob(image.pixels.data(),
                                       {image.height, image.width, image.channels}, torch::kUInt8);
  return hwc.permute({2, 0, 1}).clone(at::MemoryFormat::Contiguous);
}

// Channel rules of Pillow's convert("RGB"): grey is replicated and alpha is dropped.
torch::Tensor ToRgb(const torch::Tensor& image) {
  const int64_t channels = image.size(0);
  if (channels == 3) return image;
  if (channels == 4) return image.narrow(0, 0, 3).contiguous();
  return image.narrow(0, 0, 1).expand({3, image.size(1), image.size(2)}).contiguous();
}

void CheckImageToWrite(const fs::path& path, const torch::Tensor& image, int64_t dims,
                       absl::string_view what) {
  if (image.scalar_type() != torch::kUInt8 || image.dim() != dims) {
    Fail(path, absl::StatusCode::kInvalidArgument,
         absl::StrCat("cannot encode: expected ", what, ", got a ", image.dim(), "-d ",
                      std::string(c10::toString(image.scalar_type())), " tensor"));
  }
}

}  // namespace

torch::Tensor ReadImage(const fs::path& path, Channels channels) {
  const std::string bytes = ReadFile(path);
  if (bytes.empty()) Fail(path, absl::StatusCode::kDataLoss, "is empty");
  RawImage raw;
  char message[kMessageSize] = "";
  bool ok = false;
  if (StartsWith(bytes, kJpegSignature, sizeof(kJpegSignature))) {
    ok = DecodeJpeg(bytes, &raw, message);
  } else if (StartsWith(bytes, kPngSignature, sizeof(kPngSignature))) {
    ok = DecodePng(bytes, PngTarget::kPixels, &raw, message);
  } else {
    Fail(path, absl::StatusCode::kInvalidArgument,
         absl::StrCat("is not a JPEG or PNG file (it starts with bytes ", FirstBytes(bytes), ")"));
  }
  if (!ok) Fail(path, absl::StatusCode::kDataLoss, message);
  torch::Tensor image = ToChw(raw);
  return channels == Channels::kRgb ? ToRgb(image) : image;
}

torch::Tensor ReadPngIndices(const fs::path& path) {
  const std::string bytes = ReadFile(path);
  if (!StartsWith(bytes, kPngSignature, sizeof(kPngSignature))) {
    Fail(path, absl::StatusCode::kInvalidArgument,
         bytes.empty()
             ? std::string("is empty")
             : absl::StrCat("is not a PNG file (it starts with bytes ", FirstBytes(bytes), ")"));
  }
  RawImage raw;
  char message[kMessageSize] = "";
  if (!DecodePng(bytes, PngTarget::kIndices, &raw, message)) {
    Fail(path, absl::StatusCode::kDataLoss, message);
  }
  return ToChw(raw).squeeze(0);
}

void WriteJpeg(const fs::path& path, const torch::Tensor& image, int quality) {
  CheckImageToWrite(path, image, 3, "uint8 [C, H, W] with C = 1 or 3");
  if (image.size(0) != 1 && image.size(0) != 3) {
    Fail(path, absl::StatusCode::kInvalidArgument,
         absl::StrCat("cannot encode ", image.size(0), " channels as JPEG; expected 1 or 3"));
  }
  if (quality < 1 || quality > 100) {
    Fail(path, absl::StatusCode::kInvalidArgument,
         absl::StrCat("JPEG quality ", quality, " is outside 1..100"));
  }
  const torch::Tensor hwc = image.permute({1, 2, 0}).contiguous();
  JpegOutput output;
  char message[kMessageSize] = "";
  const bool ok = EncodeJpeg(hwc.data_ptr<uint8_t>(), image.size(1), image.size(2), image.size(0),
                             quality, &output, message);
  if (ok) {
    // The buffer came from libjpeg's malloc; free it whatever WriteFile does.
    std::unique_ptr<unsigned char, decltype(&std::free)> buffer(output.buffer, &std::free);
    WriteFile(path, buffer.get(), output.size);
    return;
  }
  std::free(output.buffer);
  Fail(path, absl::StatusCode::kInternal, message);
}

void WritePng(const fs::path& path, const torch::Tensor& image) {
  CheckImageToWrite(path, image, 3, "uint8 [C, H, W] with C = 1, 2, 3 or 4");
  static constexpr int kColorTypes[] = {PNG_COLOR_TYPE_GRAY, PNG_COLOR_TYPE_GRAY_ALPHA,
                                        PNG_COLOR_TYPE_RGB, PNG_COLOR_TYPE_RGB_ALPHA};
  const int64_t channels = image.size(0);
  if (channels < 1 || channels > 4) {
    Fail(path, absl::StatusCode::kInvalidArgument,
         absl::StrCat("cannot encode ", channels, " channels as PNG; expected 1 to 4"));
  }
  const torch::Tensor hwc = image.permute({1, 2, 0}).contiguous();
  std::vector<uint8_t> bytes;
  char message[kMessageSize] = "";
  if (!EncodePng(hwc.data_ptr<uint8_t>(), image.size(1), image.size(2), kColorTypes[channels - 1],
                 channels, nullptr, 0, &bytes, message)) {
    Fail(path, absl::StatusCode::kInternal, message);
  }
  WriteFile(path, bytes.data(), bytes.size());
}

void WritePalettePng(const fs::path& path, const torch::Tensor& indices,
                     const std::vector<std::array<uint8_t, 3>>& palette) {
  CheckImageToWrite(path, indices, 2, "uint8 [H, W] indices");
  if (palette.empty() || palette.size() > 256) {
    Fail(path, absl::StatusCode::kInvalidArgument,
         absl::StrCat("a PNG palette has 1 to 256 colours, got ", palette.size()));
  }
  const torch::Tensor contiguous = indices.contiguous();
  const int64_t largest = contiguous.max().item<int64_t>();
  if (largest >= static_cast<int64_t>(palette.size())) {
    Fail(path, absl::StatusCode::kInvalidArgument,
         absl::StrCat("index ", largest, " has no colour in the ", palette.size(),
                      "-colour palette"));
  }
  std::vector<png_color> colors;
  for (const auto& rgb : palette) colors.push_back(png_color{rgb[0], rgb[1], rgb[2]});
  std::vector<uint8_t> bytes;
  char message[kMessageSize] = "";
  if (!EncodePng(contiguous.data_ptr<uint8_t>(), indices.size(0), indices.size(1),
                 PNG_COLOR_TYPE_PALETTE, 1, colors.data(), static_cast<int>(colors.size()), &bytes,
                 message)) {
    Fail(path, absl::StatusCode::kInternal, message);
  }
  WriteFile(path, bytes.data(), bytes.size());
}

}  // namespace image_io
