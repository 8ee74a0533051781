// A tiny Visual Genome VG-150 fixture in the Scene-Graph-Benchmark's formats: the HDF5 arrays of
// VG-SGG-with-attri.h5 (written with the HDF5 C library, with the official file's types), the
// dictionary and image_data.json texts. Used by vg150_test; the fuzz target fuzz_vg150 writes its
// files with WriteH5.
#pragma once

#include <hdf5.h>

#include <algorithm>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

namespace vg_test {

// One HDF5 dataset: its name, shape, values (converted to `type` by HDF5 when written).
struct H5Dataset {
  std::string name;
  std::vector<hsize_t> dims;
  std::vector<double> values;
  hid_t type;
};

inline void WriteH5(const std::filesystem::path& path, const std::vector<H5Dataset>& datasets) {
  std::filesystem::create_directories(path.parent_path());
  const hid_t file = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  if (file < 0) throw std::runtime_error("cannot create " + path.string());
  for (const H5Dataset& dataset : datasets) {
    const hid_t space =
        H5Screate_simple(static_cast<int>(dataset.dims.size()), dataset.dims.data(), nullptr);
    const hid_t id = H5Dcreate2(file, dataset.name.c_str(), dataset.type, space, H5P_DEFAULT,
                                H5P_DEFAULT, H5P_DEFAULT);
    if (id < 0) throw std::runtime_error("cannot create dataset " + dataset.name);
    if (!dataset.values.empty() &&
        H5Dwrite(id, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, dataset.values.data()) < 0) {
      throw std::runtime_error("cannot write dataset " + dataset.name);
    }
    H5Dclose(id);
    H5Sclose(space);
  }
  H5Fclose(file);
}

// Seven images (rows of the file), fourteen boxes and eight relations; 4 classes, 5 predicates.
//   row  image_id  split  boxes   relations        size (w x h)
//   0    10        0      0-1     0                16 x 12   no two boxes overlap
//   1    11        0      2-3     none             16 x 12
//   2    12        0      4-7     1-5 (duplicates) 16 x 12   box 5 crosses the right edge,
//                                                             box 7 lies below the image
//   3    13        2      8-10    6                12 x 16   box 10 lies right of the image
//   4    14        0      none    none             16 x 12
//   5    15        2      11      none             16 x 12
//   6    16        0      12-13   7                16 x 12
struct VgArrays {
  std::vector<double> split = {0, 0, 0, 2, 0, 2, 0};
  std::vector<double> first_box = {0, 2, 4, 8, -1, 11, 12};
  std::vector<double> last_box = {1, 3, 7, 10, -1, 11, 13};
  std::vector<double> first_rel = {0, -1, 1, 6, -1, -1, 7};
  std::vector<double> last_rel = {0, -1, 5, 6, -1, -1, 7};
  std::vector<double> labels = {1, 3, 2, 2, 2, 4, 1, 3, 4, 1, 2, 3, 1, 1};
  // x centre, y centre, width, height at 1024 pixels for the longer side.
  std::vector<double> boxes = {256, 192, 256, 128, 768, 512, 128, 128, 512, 384, 512,  256,
                               100, 100, 50,  50,  101, 301, 51,  101, 950, 600, 200,  200,
                               100, 300, 100, 100, 300, 900, 100, 100, 512, 512, 256,  256,
                               256, 256, 128, 128, 900, 100, 100, 100, 512, 512, 1024, 1024,
                               512, 384, 512, 512, 512, 384, 256, 256};
  std::vector<double> relationships = {0, 1, 4, 5, 4, 5, 5, 4, 4, 5, 7, 4, 9, 8, 12, 13};
  std::vector<double> predicates = {2, 2, 3, 1, 2, 4, 5, 1};
  hid_t box_type = H5T_STD_I32LE;

  // The datasets in the official file's types, attributes (ignored by the reader) included.
  std::vector<H5Dataset> Datasets() const {
    const auto n = [](const std::vector<double>& v, size_t columns = 1) {
      return static_cast<hsize_t>(v.size() / columns);
    };
    return {
        {"split", {n(split)}, split, H5T_STD_I32LE},
        {"img_to_first_box", {n(first_box)}, first_box, H5T_STD_I32LE},
        {"img_to_last_box", {n(last_box)}, last_box, H5T_STD_I32LE},
        {"img_to_first_rel", {n(first_rel)}, first_rel, H5T_STD_I32LE},
        {"img_to_last_rel", {n(last_rel)}, last_rel, H5T_STD_I32LE},
        {"labels", {n(labels), 1}, labels, H5T_STD_I64LE},
        {"attributes", {n(labels), 10}, std::vector<double>(labels.size() * 10, 0), H5T_STD_I64LE},
        {"boxes_1024", {n(boxes, 4), 4}, boxes, box_type},
        {"relationships", {n(relationships, 2), 2}, relationships, H5T_STD_I32LE},
        {"predicates", {n(predicates), 1}, predicates, H5T_STD_I64LE}};
  }
};

// label_to_idx and predicate_to_idx out of index order, with the file's other members.
inline const char kDictionary[] = R"JSON({
  "label_to_idx": {"dog": 3, "cat": 1, "man": 4, "tree": 2},
  "idx_to_label": {"1": "cat", "2": "tree", "3": "dog", "4": "man"},
  "predicate_to_idx": {"on": 2, "has": 1, "near": 5, "wearing": 4, "of": 3},
  "idx_to_predicate": {"1": "has", "2": "on", "3": "of", "4": "wearing", "5": "near"},
  "attribute_to_idx": {"white": 1}, "idx_to_attribute": {"1": "white"},
  "object_count": {"dog": 3, "cat": 5}, "predicate_count": {"on": 4}
}
)JSON";

// The file's rows in order, with three of the images the benchmark drops as corrupted among them.
inline const char kImageData[] = R"JSON([
  {"width": 16, "url": "https://x/10.jpg", "height": 12, "image_id": 10, "coco_id": null,
   "flickr_id": 2},
  {"width": 16, "height": 12, "image_id": 11, "coco_id": 7, "flickr_id": null},
  {"width": 800, "height": 600, "image_id": 1592},
  {"width": 16, "height": 12, "image_id": 12},
  {"width": 12, "height": 16, "image_id": 13},
  {"width": 16, "height": 12, "image_id": 14},
  {"width": 800, "height": 600, "image_id": 4616},
  {"width": 16, "height": 12, "image_id": 15},
  {"width": 800, "height": 600, "image_id": 1722},
  {"width": 16, "height": 12, "image_id": 16}
]
)JSON";

}  // namespace vg_test
