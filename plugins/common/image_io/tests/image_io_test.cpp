// Tests of kd_image_io: decoding is compared pixel for pixel with Pillow (the decoder of the
// Python training code) on files in every PNG colour type and bit depth, interlaced PNG, and grey,
// RGB and CMYK JPEG; encoding round-trips; damaged files fail with the file's name and the problem.
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "image_io/image_io.h"
#include "kd/error.h"
#include "test_support.h"

namespace {

namespace fs = std::filesystem;

// Writes PNG files byte by byte (so that every colour type, bit depth and Adam7 interlacing is
// covered, beyond what Pillow can save) and JPEG files with Pillow, then stores Pillow's decoding
// of each file: <name>.rgb (convert("RGB") as H x W x 3 bytes) and, for palette images, <name>.idx
// (the indices).
constexpr char kFixtureScript[] = R"PY(
import struct, sys, zlib
import numpy as np
from PIL import Image

out = sys.argv[1]

def chunk(kind, data):
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

def pack_row(row, bit_depth):
    if bit_depth == 16:
        return b"".join(struct.pack(">H", int(v)) for v in row)
    if bit_depth == 8:
        return bytes(int(v) for v in row)
    per_byte = 8 // bit_depth
    packed = bytearray()
    for i in range(0, len(row), per_byte):
        byte = 0
        for j, v in enumerate(row[i:i + per_byte]):
            byte |= int(v) << (8 - bit_depth * (j + 1))
        packed.append(byte)
    return bytes(packed)

ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
         (0, 1, 1, 2)]

def write_png(name, pixels, color_type, bit_depth, palette=None, trns=None, interlace=False):
    h, w, _ = pixels.shape
    passes = ADAM7 if interlace else [(0, 0, 1, 1)]
    raw = b""
    for x0, y0, dx, dy in passes:
        sub = pixels[y0::dy, x0::dx]
        for row in sub.reshape(sub.shape[0], -1) if sub.size else []:
            raw += b"\0" + pack_row(row, bit_depth)
    ihdr = struct.pack(">IIBBBBB", w, h, bit_depth, color_type, 0, 0, 1 if interlace else 0)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
    if palette is not None:
        png += chunk(b"PLTE", bytes(v for rgb in palette for v in rgb))
    if trns is not None:
        png += chunk(b"tRNS", bytes(trns))
    png += chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    open(f"{out}/{name}", "wb").write(png)

rng = np.random.default_rng(0)
h, w = 7, 11
palette = [tuple(int(v) for v in rng.integers(0, 256, 3)) for _ in range(16)]
write_png("rgb16.png", rng.integers(0, 65536, (h, w, 3)), 2, 16)
write_png("rgba16.png", rng.integers(0, 65536, (h, w, 4)), 6, 16)
write_png("grey1.png", rng.integers(0, 2, (h, w, 1)), 0, 1)
write_png("grey2.png", rng.integers(0, 4, (h, w, 1)), 0, 2)
write_png("grey4.png", rng.integers(0, 16, (h, w, 1)), 0, 4)
write_png("grey_alpha.png", rng.integers(0, 256, (h, w, 2)), 4, 8)
write_png("palette4.png", rng.integers(0, 16, (h, w, 1)), 3, 4, palette=palette)
write_png("palette_trns.png", rng.integers(0, 16, (h, w, 1)), 3, 8, palette=palette,
          trns=[0, 128, 255])
write_png("interlaced.png", rng.integers(0, 256, (h, w, 3)), 2, 8, interlace=True)
Image.fromarray(rng.integers(0, 256, (h, w, 4), dtype=np.uint8), "CMYK").save(
    f"{out}/cmyk.jpg", quality=90)
Image.fromarray(rng.integers(0, 256, (h, w), dtype=np.uint8), "L").save(
    f"{out}/grey.jpg", quality=90)
Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB").save(
    f"{out}/rgb.jpg", quality=75)

for name in sys.argv[2:]:
    image = Image.open(f"{out}/{name}")
    open(f"{out}/{name}.rgb", "wb").write(np.asarray(image.convert("RGB")).tobytes())
    if image.mode == "P":
        open(f"{out}/{name}.idx", "wb").write(np.asarray(image).tobytes())
)PY";

const std::vector<std::string> kPillowFiles = {
    "rgb16.png",      "rgba16.png",   "grey1.png",        "grey2.png",      "grey4.png",
    "grey_alpha.png", "palette4.png", "palette_trns.png", "interlaced.png", "cmyk.jpg",
    "grey.jpg",       "rgb.jpg",      "ours.jpg",         "ours.png"};

std::string ReadBytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// [C, H, W] -> the H x W x C bytes numpy writes.
std::string Interleaved(const torch::Tensor& image) {
  const torch::Tensor hwc = image.permute({1, 2, 0}).contiguous();
  return std::string(reinterpret_cast<const char*>(hwc.data_ptr<uint8_t>()), hwc.numel());
}

torch::Tensor Pattern(int64_t channels, int64_t height, int64_t width) {
  return torch::arange(channels * height * width, torch::kLong)
      .mul(37)
      .remainder(256)
      .to(torch::kUInt8)
      .reshape({channels, height, width});
}

// A scratch directory with the fixture files and Pillow's decoding of them. Each test case has
// its own, so that cases can run in parallel processes.
fs::path PillowFixtures(const std::string& name) {
  const fs::path scratch = kd::test::ScratchDir("image_io_pillow_" + name);
  image_io::WriteJpeg(scratch / "ours.jpg", Pattern(3, 21, 34), 85);
  image_io::WritePng(scratch / "ours.png", Pattern(4, 5, 9));
  kd::test::WriteText(scratch / "fixtures.py", kFixtureScript);
  std::string command =
      kd::test::PythonPath() + " " + (scratch / "fixtures.py").string() + " " + scratch.string();
  for (const std::string& file : kPillowFiles) command += " " + file;
  const kd::test::CommandResult result = kd::test::RunCommand(command);
  INFO(result.output);
  REQUIRE(result.exit_code == 0);
  return scratch;
}

}  // namespace

TEST_CASE("Decoded JPEG and PNG pixels equal Pillow's convert(\"RGB\") for every colour type") {
  const fs::path dir = PillowFixtures("decode");
  for (const std::string& name : kPillowFiles) {
    INFO(name);
    const torch::Tensor image = image_io::ReadImage(dir / name, image_io::Channels::kRgb);
    REQUIRE(image.scalar_type() == torch::kUInt8);
    REQUIRE(image.size(0) == 3);
    CHECK(Interleaved(image) == ReadBytes(dir / (name + ".rgb")));
  }
}

TEST_CASE("Decoding keeps the stored channels unless RGB is asked for") {
  const fs::path dir = PillowFixtures("channels");
  const std::vector<std::pair<std::string, int64_t>> expected = {
      {"grey2.png", 1},      {"grey_alpha.png", 2},   {"rgb16.png", 3}, {"rgba16.png", 4},
      {"palette4.png", 3},   {"palette_trns.png", 4}, {"grey.jpg", 1},  {"cmyk.jpg", 3},
      {"interlaced.png", 3}, {"ours.png", 4}};
  for (const auto& [name, channels] : expected) {
    INFO(name);
    CHECK(image_io::ReadImage(dir / name).size(0) == channels);
  }
  CHECK(image_io::ReadImage(dir / "rgb.jpg").sizes() == torch::IntArrayRef({3, 7, 11}));
}

TEST_CASE("PNG round trip keeps every channel count exactly") {
  const fs::path dir = kd::test::ScratchDir("image_io_png_round_trip");
  for (int64_t channels = 1; channels <= 4; ++channels) {
    const torch::Tensor image = Pattern(channels, 13, 6);
    const fs::path file = dir / ("c" + std::to_string(channels) + ".png");
    image_io::WritePng(file, image);
    CHECK(torch::equal(image_io::ReadImage(file), image));
  }
  // RGB from grey replicates it; RGB from RGBA drops the alpha.
  const torch::Tensor grey = image_io::ReadImage(dir / "c1.png", image_io::Channels::kRgb);
  CHECK(torch::equal(grey, Pattern(1, 13, 6).expand({3, 13, 6})));
  const torch::Tensor rgba = image_io::ReadImage(dir / "c4.png", image_io::Channels::kRgb);
  CHECK(torch::equal(rgba, Pattern(4, 13, 6).narrow(0, 0, 3)));
}

TEST_CASE("ReadPngIndices returns palette indices and raw grey samples unexpanded") {
  const fs::path dir = PillowFixtures("indices");
  const torch::Tensor indices = image_io::ReadPngIndices(dir / "palette4.png");
  REQUIRE(indices.sizes() == torch::IntArrayRef({7, 11}));
  CHECK(std::string(reinterpret_cast<const char*>(indices.contiguous().data_ptr<uint8_t>()),
                    indices.numel()) == ReadBytes(dir / "palette4.png.idx"));
  // 2-bit grey: the samples 0..3, which Pillow scales by 85 for display.
  const torch::Tensor samples = image_io::ReadPngIndices(dir / "grey2.png");
  CHECK(samples.max().item<int>() <= 3);
  CHECK(torch::equal(samples.mul(85).to(torch::kUInt8),
                     image_io::ReadImage(dir / "grey2.png").squeeze(0)));

  const fs::path written = kd::test::ScratchDir("image_io_palette") / "mask.png";
  const torch::Tensor mask = torch::tensor({0, 1, 2, 255, 3, 0}, torch::kUInt8).reshape({2, 3});
  std::vector<std::array<uint8_t, 3>> palette(256, {0, 0, 0});
  palette[1] = {128, 0, 0};
  image_io::WritePalettePng(written, mask, palette);
  CHECK(torch::equal(image_io::ReadPngIndices(written), mask));
  CHECK(image_io::ReadImage(written, image_io::Channels::kRgb)[0][0][1].item<int>() == 128);
}

TEST_CASE("A JPEG written and read back stays close to the original") {
  const fs::path file = kd::test::ScratchDir("image_io_jpeg") / "smooth.jpg";
  const torch::Tensor ramp = torch::arange(64, torch::kFloat).mul(2).expand({3, 32, 64});
  image_io::WriteJpeg(file, ramp.to(torch::kUInt8), 95);
  const torch::Tensor decoded = image_io::ReadImage(file);
  REQUIRE(decoded.sizes() == torch::IntArrayRef({3, 32, 64}));
  CHECK(decoded.to(torch::kFloat).sub(ramp).abs().max().item<float>() <= 4.0f);
}

TEST_CASE("Missing, empty, foreign, truncated and corrupt files are errors naming the file") {
  const fs::path dir = kd::test::ScratchDir("image_io_errors");
  const fs::path missing = dir / "missing.jpg";
  CHECK_THROWS_WITH(image_io::ReadImage(missing), missing.string() + ": no such file");

  kd::test::WriteText(dir / "empty.png", "");
  CHECK_THROWS_WITH(image_io::ReadImage(dir / "empty.png"),
                    (dir / "empty.png").string() + ": is empty");
  kd::test::WriteText(dir / "text.jpg", "GIF89a, not a JPEG");
  CHECK_THROWS_WITH(
      image_io::ReadImage(dir / "text.jpg"),
      Catch::Contains((dir / "text.jpg").string() +
                      ": is not a JPEG or PNG file (it starts with bytes 47 49 46 38)"));
  CHECK_THROWS_WITH(image_io::ReadImage(dir), Catch::Contains("is a directory"));

  image_io::WriteJpeg(dir / "whole.jpg", Pattern(3, 40, 40));
  const std::string jpeg = ReadBytes(dir / "whole.jpg");
  kd::test::WriteText(dir / "cut.jpg", jpeg.substr(0, jpeg.size() / 2));
  CHECK_THROWS_WITH(image_io::ReadImage(dir / "cut.jpg"),
                    (dir / "cut.jpg").string() + ": truncated JPEG data (premature end of file)");
  kd::test::WriteText(dir / "garbage.jpg", jpeg.substr(0, 4) + std::string(200, '\x5a'));
  CHECK_THROWS_WITH(image_io::ReadImage(dir / "garbage.jpg"),
                    Catch::StartsWith((dir / "garbage.jpg").string() + ": corrupt JPEG data: "));

  image_io::WritePng(dir / "whole.png", Pattern(3, 40, 40));
  const std::string png = ReadBytes(dir / "whole.png");
  kd::test::WriteText(dir / "cut.png", png.substr(0, png.size() - 40));
  CHECK_THROWS_WITH(image_io::ReadImage(dir / "cut.png"),
                    (dir / "cut.png").string() +
                        ": corrupt PNG data: truncated PNG data (unexpected end of file)");
  std::string bad_crc = png;
  bad_crc[29] = static_cast<char>(bad_crc[29] ^ 0xFF);  // a byte of IHDR's CRC
  kd::test::WriteText(dir / "crc.png", bad_crc);
  CHECK_THROWS_WITH(image_io::ReadImage(dir / "crc.png"),
                    Catch::StartsWith((dir / "crc.png").string() + ": corrupt PNG data: ") &&
                        Catch::Contains("CRC"));
  CHECK_THROWS_WITH(image_io::ReadPngIndices(dir / "whole.png"),
                    (dir / "whole.png").string() +
                        ": holds RGB pixels; class indices need a palette or greyscale PNG");
  CHECK_THROWS_WITH(image_io::ReadPngIndices(dir / "whole.jpg"),
                    Catch::Contains("is not a PNG file"));
}

TEST_CASE("Encoders refuse tensors they cannot store") {
  const fs::path dir = kd::test::ScratchDir("image_io_encode_errors");
  CHECK_THROWS_WITH(image_io::WriteJpeg(dir / "a.jpg", Pattern(4, 2, 2)),
                    Catch::Contains("cannot encode 4 channels as JPEG; expected 1 or 3"));
  CHECK_THROWS_WITH(image_io::WritePng(dir / "a.png", torch::zeros({3, 2, 2})),
                    Catch::Contains("expected uint8 [C, H, W]"));
  CHECK_THROWS_WITH(image_io::WritePalettePng(dir / "a.png", torch::full({2, 2}, 3, torch::kUInt8),
                                              {{0, 0, 0}, {1, 1, 1}}),
                    Catch::Contains("index 3 has no colour in the 2-colour palette"));
  CHECK_THROWS_WITH(image_io::WritePng(dir / "no-such-dir" / "a.png", Pattern(1, 2, 2)),
                    Catch::Contains("cannot be opened for writing"));
}

TEST_CASE("Concurrent decoding gives the same pixels as sequential decoding") {
  const fs::path dir = kd::test::ScratchDir("image_io_threads");
  for (int i = 0; i < 8; ++i) {
    image_io::WriteJpeg(dir / (std::to_string(i) + ".jpg"), Pattern(3, 30 + i, 50));
    image_io::WritePng(dir / (std::to_string(i) + ".png"), Pattern(3, 30 + i, 50));
  }
  std::vector<torch::Tensor> sequential;
  for (int i = 0; i < 16; ++i) {
    sequential.push_back(
        image_io::ReadImage(dir / (std::to_string(i / 2) + (i % 2 ? ".png" : ".jpg"))));
  }
  std::vector<torch::Tensor> parallel(16);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int round = 0; round < 5; ++round) {
        for (int i = t; i < 16; i += 4) {
          parallel[i] =
              image_io::ReadImage(dir / (std::to_string(i / 2) + (i % 2 ? ".png" : ".jpg")));
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  for (int i = 0; i < 16; ++i) CHECK(torch::equal(sequential[i], parallel[i]));
}
