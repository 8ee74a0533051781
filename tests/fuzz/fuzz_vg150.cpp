// Fuzz target: Visual Genome's VG-SGG-with-attri.h5 as sgg_datasets::VG150 reads it (the arrays
// read and checked against each other), then every split selected from what was read. The input
// describes the file's datasets, which are written to a temporary .h5 file with the HDF5 library
// and read back through the reader: each dataset is present or not, of the official type or
// another, of the official shape or another, with rows and values from the input. (Raw bytes
// would mostly fuzz the HDF5 library's own parser, which allocates sizes read from a damaged file
// unchecked.) Failures are statuses; a file that passes gives graphs whose relations name their
// own image's boxes, whose labels are 0-based classes and whose predicates are in 1..P.
//
// Input: per dataset, in the order of kDatasets, a shape byte, a row count byte and the values as
// little-endian int16 (missing bytes read as 0). Shape byte: bits 0-3 = 15 leaves the dataset
// out; bits 4-5 pick the type (0, 1: official, 2: float32, 3: uint16); bits 6-7 the shape (0, 3:
// official, 1: one dimension, 2: one column too many).
#include <cstddef>
#include <cstdint>
#include <vector>

#include "fuzz_util.h"
#include "vg_fixture.h"
#include "vg_sgg_file.h"

namespace {

// VG-150's class and predicate counts.
constexpr int64_t kClasses = 150;
constexpr int64_t kPredicates = 50;

struct DatasetSpec {
  const char* name;
  hsize_t columns;  // 0: the official shape is [N]
  hid_t type;
};

const DatasetSpec kDatasets[] = {
    {"split", 0, H5T_STD_I32LE},           {"img_to_first_box", 0, H5T_STD_I32LE},
    {"img_to_last_box", 0, H5T_STD_I32LE}, {"img_to_first_rel", 0, H5T_STD_I32LE},
    {"img_to_last_rel", 0, H5T_STD_I32LE}, {"labels", 1, H5T_STD_I64LE},
    {"boxes_1024", 4, H5T_STD_I32LE},      {"relationships", 2, H5T_STD_I32LE},
    {"predicates", 1, H5T_STD_I64LE}};

class Input {
 public:
  Input(const uint8_t* data, size_t size) : data_(data), size_(size) {}
  uint8_t Byte() { return pos_ < size_ ? data_[pos_++] : 0; }
  int16_t Value() {
    const uint8_t low = Byte();
    return static_cast<int16_t>(static_cast<uint16_t>(low | (Byte() << 8)));
  }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
};

std::vector<vg_test::H5Dataset> Decode(const uint8_t* data, size_t size) {
  Input input(data, size);
  std::vector<vg_test::H5Dataset> datasets;
  for (const DatasetSpec& spec : kDatasets) {
    const uint8_t shape = input.Byte();
    const hsize_t rows = input.Byte() % 64;
    if ((shape & 15) == 15) continue;
    vg_test::H5Dataset dataset{spec.name, {rows}, {}, spec.type};
    const int type = (shape >> 4) & 3;
    if (type == 2) dataset.type = H5T_IEEE_F32LE;
    if (type == 3) dataset.type = H5T_STD_U16LE;
    const int form = shape >> 6;
    hsize_t columns = spec.columns;
    if (form == 1) columns = 0;
    if (form == 2) columns += 1;
    if (columns > 0) dataset.dims.push_back(columns);
    const hsize_t count = rows * (columns > 0 ? columns : 1);
    for (hsize_t i = 0; i < count; ++i) dataset.values.push_back(input.Value());
    if (dataset.type == H5T_STD_U16LE) {
      for (double& value : dataset.values) value = value < 0 ? value + 65536 : value;
    }
    datasets.push_back(std::move(dataset));
  }
  return datasets;
}

void CheckGraphs(const sgg_datasets::VgSggFile& file, const sgg_datasets::VgGraphs& graphs) {
  const auto images = static_cast<size_t>(graphs.size());
  KD_FUZZ_CHECK(graphs.box_offsets.size() == images + 1);
  KD_FUZZ_CHECK(graphs.rel_offsets.size() == images + 1);
  KD_FUZZ_CHECK(graphs.boxes.size() == 4 * graphs.labels.size());
  KD_FUZZ_CHECK(static_cast<size_t>(graphs.box_offsets.back()) == graphs.labels.size());
  KD_FUZZ_CHECK(static_cast<size_t>(3 * graphs.rel_offsets.back()) == graphs.relations.size());
  for (size_t k = 0; k < images; ++k) {
    KD_FUZZ_CHECK(graphs.images[k] >= 0 && graphs.images[k] < file.num_images());
    const int64_t boxes = graphs.box_offsets[k + 1] - graphs.box_offsets[k];
    KD_FUZZ_CHECK(boxes > 0);
    KD_FUZZ_CHECK(graphs.rel_offsets[k + 1] >= graphs.rel_offsets[k]);
    for (int64_t r = graphs.rel_offsets[k]; r < graphs.rel_offsets[k + 1]; ++r) {
      const int64_t* relation = &graphs.relations[static_cast<size_t>(3 * r)];
      KD_FUZZ_CHECK(relation[0] >= 0 && relation[0] < boxes);
      KD_FUZZ_CHECK(relation[1] >= 0 && relation[1] < boxes);
      KD_FUZZ_CHECK(relation[2] >= 1 && relation[2] <= kPredicates);
    }
  }
  for (const int64_t label : graphs.labels) KD_FUZZ_CHECK(label >= 0 && label < kClasses);
  for (size_t b = 0; b < graphs.labels.size(); ++b) {
    KD_FUZZ_CHECK(graphs.boxes[4 * b + 2] > graphs.boxes[4 * b]);
    KD_FUZZ_CHECK(graphs.boxes[4 * b + 3] > graphs.boxes[4 * b + 1]);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::filesystem::path path = kd_fuzz::ScratchDir() / "VG-SGG-with-attri.h5";
  vg_test::WriteH5(path, Decode(data, size));
  const auto file = sgg_datasets::ReadVgSggFile(path, kClasses, kPredicates);
  if (!file.ok()) return 0;
  KD_FUZZ_CHECK(file->boxes.size() == 4 * file->labels.size());
  for (const auto split :
       {sgg_datasets::VgSplit::kTrain, sgg_datasets::VgSplit::kVal, sgg_datasets::VgSplit::kTest}) {
    for (const bool filter : {true, false}) {
      sgg_datasets::VgSelection selection;
      selection.split = split;
      selection.num_val_images = 1;
      selection.filter_empty_rels = filter;
      selection.filter_non_overlap = filter;
      CheckGraphs(*file, sgg_datasets::SelectImages(*file, selection));
    }
  }
  return 0;
}
