// Reading VG-SGG-with-attri.h5 with the HDF5 C library, and the benchmark's split selection.
#include "vg_sgg_file.h"

#include <hdf5.h>

#include <algorithm>
#include <cmath>
#include <mutex>
#include <string>
#include <system_error>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "kd/error.h"

namespace sgg_datasets {

namespace {

namespace fs = std::filesystem;

// The most elements a dataset may hold (the official file's largest holds 4.6 million), so that a
// damaged header claiming billions is an error rather than an exhausted memory.
constexpr int64_t kMaxElements = int64_t{1} << 26;

// Stored box values beyond this are not coordinates at kBoxScale.
constexpr double kMaxCoordinate = 1 << 20;

constexpr char kFix[] =
    "the file is damaged or is not the Scene-Graph-Benchmark's VG-SGG-with-attri.h5; download it "
    "again";

// An HDF5 identifier, closed when it goes out of scope.
class Handle {
 public:
  Handle(hid_t id, herr_t (*close)(hid_t)) : id_(id), close_(close) {}
  ~Handle() {
    if (id_ >= 0) close_(id_);
  }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;

  hid_t get() const { return id_; }
  bool ok() const { return id_ >= 0; }

 private:
  hid_t id_;
  herr_t (*close_)(hid_t);
};

// Stops HDF5 from printing its error stack on this thread while it lives: failures become our
// messages, which quote HDF5's innermost one.
class QuietHdf5Errors {
 public:
  QuietHdf5Errors() {
    H5Eget_auto2(H5E_DEFAULT, &function_, &data_);
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  }
  ~QuietHdf5Errors() { H5Eset_auto2(H5E_DEFAULT, function_, data_); }
  QuietHdf5Errors(const QuietHdf5Errors&) = delete;
  QuietHdf5Errors& operator=(const QuietHdf5Errors&) = delete;

 private:
  H5E_auto2_t function_ = nullptr;
  void* data_ = nullptr;
};

// " (HDF5: <innermost message>)" for the error HDF5 has just reported, or "" when it has none.
std::string Hdf5Message() {
  std::string message;
  H5Ewalk2(
      H5E_DEFAULT, H5E_WALK_UPWARD,
      [](unsigned n, const H5E_error2_t* error, void* data) -> herr_t {
        if (n == 0 && error->desc != nullptr) *static_cast<std::string*>(data) = error->desc;
        return 0;
      },
      &message);
  H5Eclear2(H5E_DEFAULT);
  return message.empty() ? std::string() : absl::StrCat(" (HDF5: ", message, ")");
}

// One dataset's values with its shape; integers in `ints`, floating-point values in `reals`.
struct Array {
  std::vector<int64_t> dims;
  bool integer = true;
  std::vector<int64_t> ints;
  std::vector<double> reals;
};

class Reader {
 public:
  Reader(const fs::path& path, hid_t file) : path_(path.string()), file_(file) {}

  absl::Status Error(const char* dataset, absl::string_view message) const {
    return absl::InvalidArgumentError(
        absl::StrCat(path_, ": dataset \"", dataset, "\": ", message, "; ", kFix));
  }

  // The whole dataset `name`; floating-point values are an error unless `allow_real`.
  absl::StatusOr<Array> Read(const char* name, bool allow_real) const {
    if (H5Lexists(file_, name, H5P_DEFAULT) <= 0) {
      H5Eclear2(H5E_DEFAULT);
      return absl::NotFoundError(absl::StrCat(path_, ": no dataset \"", name, "\"; ", kFix));
    }
    const Handle dataset(H5Dopen2(file_, name, H5P_DEFAULT), H5Dclose);
    if (!dataset.ok()) return Error(name, absl::StrCat("cannot be opened", Hdf5Message()));
    const Handle space(H5Dget_space(dataset.get()), H5Sclose);
    const Handle type(H5Dget_type(dataset.get()), H5Tclose);
    if (!space.ok() || !type.ok()) {
      return Error(name, absl::StrCat("cannot be inspected", Hdf5Message()));
    }
    Array array;
    const H5T_class_t type_class = H5Tget_class(type.get());
    if (type_class == H5T_FLOAT && allow_real) {
      array.integer = false;
    } else if (type_class != H5T_INTEGER) {
      return Error(name, allow_real ? "must hold numbers" : "must hold integers");
    }
    const int rank = H5Sget_simple_extent_ndims(space.get());
    if (rank < 1 || rank > 2) {
      return Error(name, absl::StrCat("must have 1 or 2 dimensions; it has ", rank));
    }
    hsize_t dims[2] = {0, 0};
    H5Sget_simple_extent_dims(space.get(), dims, nullptr);
    int64_t elements = 1;
    for (int d = 0; d < rank; ++d) {
      if (dims[d] > static_cast<hsize_t>(kMaxElements) ||
          elements * static_cast<int64_t>(dims[d]) > kMaxElements) {
        return Error(name, absl::StrCat("claims more than ", kMaxElements, " values"));
      }
      elements *= static_cast<int64_t>(dims[d]);
      array.dims.push_back(static_cast<int64_t>(dims[d]));
    }
    if (elements == 0) return array;
    if (H5Dget_storage_size(dataset.get()) == 0) {
      H5Eclear2(H5E_DEFAULT);
      return Error(name, "holds no data");
    }
    herr_t status;
    if (array.integer) {
      array.ints.resize(static_cast<size_t>(elements));
      status = H5Dread(dataset.get(), H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT,
                       array.ints.data());
    } else {
      array.reals.resize(static_cast<size_t>(elements));
      status = H5Dread(dataset.get(), H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT,
                       array.reals.data());
    }
    if (status < 0) return Error(name, absl::StrCat("cannot be read", Hdf5Message()));
    return array;
  }

  // A dataset of shape [N] or [N, 1].
  absl::StatusOr<std::vector<int64_t>> Column(const char* name) const {
    absl::StatusOr<Array> array = Read(name, false);
    if (!array.ok()) return array.status();
    if (array->dims.size() == 2 && array->dims[1] != 1) {
      return Error(name, absl::StrCat("must have shape [N] or [N, 1]; it has [", array->dims[0],
                                      ", ", array->dims[1], "]"));
    }
    return std::move(array->ints);
  }

  // A dataset of shape [N, columns].
  absl::StatusOr<Array> Matrix(const char* name, int64_t columns, bool allow_real) const {
    absl::StatusOr<Array> array = Read(name, allow_real);
    if (!array.ok()) return array.status();
    if (array->dims.size() != 2 || array->dims[1] != columns) {
      return Error(name, absl::StrCat("must have shape [N, ", columns, "]; it has [",
                                      absl::StrJoin(array->dims, ", "), "]"));
    }
    return array;
  }

  const std::string& path() const { return path_; }

 private:
  std::string path_;
  hid_t file_;
};

// The image whose range [first[i], last[i]] holds `row`, as " (image i)" for messages.
std::string OwnerOf(int64_t row, const std::vector<int64_t>& first,
                    const std::vector<int64_t>& last) {
  for (size_t i = 0; i < first.size(); ++i) {
    if (first[i] >= 0 && first[i] <= row && row <= last[i]) return absl::StrCat(" (image ", i, ")");
  }
  return " (no image's)";
}

// Each image's rows [first, last] are a range inside [0, rows), or both ends are negative (none).
absl::Status CheckRanges(const Reader& reader, const char* first_name, const char* last_name,
                         const std::vector<int64_t>& first, const std::vector<int64_t>& last,
                         int64_t rows, const char* rows_name) {
  for (size_t i = 0; i < first.size(); ++i) {
    if (first[i] < 0 && last[i] < 0) continue;
    if (first[i] < 0 || last[i] < first[i] || last[i] >= rows) {
      return reader.Error(
          first_name,
          absl::StrCat("image ", i, " has rows ", first[i], " to ", last[i], " (with \"", last_name,
                       "\"), which is neither a range inside the ", rows, " rows of \"", rows_name,
                       "\" nor -1 to -1 (none)"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<VgSggFile> ReadArrays(const Reader& reader, int64_t num_classes,
                                     int64_t num_predicates) {
  VgSggFile file;
  for (const auto& [name, values] :
       {std::pair{"split", &file.split}, std::pair{"img_to_first_box", &file.first_box},
        std::pair{"img_to_last_box", &file.last_box},
        std::pair{"img_to_first_rel", &file.first_rel},
        std::pair{"img_to_last_rel", &file.last_rel}, std::pair{"labels", &file.labels},
        std::pair{"predicates", &file.predicates}}) {
    absl::StatusOr<std::vector<int64_t>> column = reader.Column(name);
    if (!column.ok()) return column.status();
    *values = *std::move(column);
  }
  absl::StatusOr<Array> boxes = reader.Matrix("boxes_1024", 4, true);
  if (!boxes.ok()) return boxes.status();
  absl::StatusOr<Array> relationships = reader.Matrix("relationships", 2, false);
  if (!relationships.ok()) return relationships.status();
  file.relationships = std::move(relationships->ints);

  const auto images = static_cast<size_t>(file.num_images());
  for (const auto& [name, values] : {std::pair{"img_to_first_box", &file.first_box},
                                     std::pair{"img_to_last_box", &file.last_box},
                                     std::pair{"img_to_first_rel", &file.first_rel},
                                     std::pair{"img_to_last_rel", &file.last_rel}}) {
    if (values->size() != images) {
      return reader.Error(name, absl::StrCat("has ", values->size(), " rows but \"split\" has ",
                                             images, "; both have one row per image"));
    }
  }
  const auto num_boxes = static_cast<int64_t>(file.labels.size());
  if (boxes->dims[0] != num_boxes) {
    return reader.Error("boxes_1024",
                        absl::StrCat("has ", boxes->dims[0], " rows but \"labels\" has ", num_boxes,
                                     "; both have one row per box"));
  }
  const auto num_relations = static_cast<int64_t>(file.predicates.size());
  if (static_cast<int64_t>(file.relationships.size()) != 2 * num_relations) {
    return reader.Error(
        "relationships",
        absl::StrCat("has ", file.relationships.size() / 2, " rows but \"predicates\" has ",
                     num_relations, "; both have one row per relation"));
  }
  KD_RETURN_IF_ERROR(CheckRanges(reader, "img_to_first_box", "img_to_last_box", file.first_box,
                                 file.last_box, num_boxes, "labels"));
  KD_RETURN_IF_ERROR(CheckRanges(reader, "img_to_first_rel", "img_to_last_rel", file.first_rel,
                                 file.last_rel, num_relations, "relationships"));

  for (int64_t i = 0; i < file.num_images(); ++i) {
    if (file.first_rel[i] < 0) continue;
    if (file.first_box[i] < 0) {
      return reader.Error("img_to_first_rel",
                          absl::StrCat("image ", i, " has relations but no boxes"));
    }
    for (int64_t r = file.first_rel[i]; r <= file.last_rel[i]; ++r) {
      for (int64_t side = 0; side < 2; ++side) {
        const int64_t box = file.relationships[2 * r + side];
        if (box < file.first_box[i] || box > file.last_box[i]) {
          return reader.Error(
              "relationships",
              absl::StrCat("row ", r, " (image ", i, ") names box ", box, " as its ",
                           side == 0 ? "subject" : "object", ", which is not one of the image's ",
                           "boxes ", file.first_box[i], "..", file.last_box[i]));
        }
      }
    }
  }
  for (int64_t b = 0; b < num_boxes; ++b) {
    if (file.labels[b] < 1 || file.labels[b] > num_classes) {
      return reader.Error(
          "labels", absl::StrCat("row ", b, OwnerOf(b, file.first_box, file.last_box), " holds ",
                                 file.labels[b], ", outside the classes 1..", num_classes,
                                 " of the dictionary file (the two files must come from the same "
                                 "release)"));
    }
  }
  for (int64_t r = 0; r < num_relations; ++r) {
    if (file.predicates[r] < 1 || file.predicates[r] > num_predicates) {
      return reader.Error(
          "predicates",
          absl::StrCat("row ", r, OwnerOf(r, file.first_rel, file.last_rel), " holds ",
                       file.predicates[r], ", outside the predicates 1..", num_predicates,
                       " of the dictionary file (the two files must come from the same release)"));
    }
  }

  file.boxes.resize(static_cast<size_t>(4 * num_boxes));
  for (int64_t b = 0; b < num_boxes; ++b) {
    double v[4];
    for (int k = 0; k < 4; ++k) {
      v[k] = boxes->integer ? static_cast<double>(boxes->ints[4 * b + k]) : boxes->reals[4 * b + k];
    }
    // The benchmark's sanity checks: centres >= 0, no empty box.
    const bool valid = v[0] >= 0 && v[1] >= 0 && v[2] > 0 && v[3] > 0 &&
                       std::max({v[0], v[1], v[2], v[3]}) <= kMaxCoordinate;
    if (!valid) {
      return reader.Error(
          "boxes_1024",
          absl::StrCat("row ", b, OwnerOf(b, file.first_box, file.last_box), " is (", v[0], ", ",
                       v[1], ", ", v[2], ", ", v[3],
                       "); boxes are (x centre, y centre, width, height) at 1024 pixels for the "
                       "longer side, with centres >= 0 and sizes > 0"));
    }
    float* out = &file.boxes[static_cast<size_t>(4 * b)];
    for (int k = 0; k < 2; ++k) {
      // The benchmark subtracts half the size in floating point and stores the result back into
      // the file's integer array, which truncates towards zero.
      double low = v[k] - v[k + 2] / 2;
      if (boxes->integer) low = std::trunc(low);
      out[k] = static_cast<float>(low);
      out[k + 2] = static_cast<float>(low + v[k + 2]);
    }
  }
  return file;
}

// HDF5's library state is shared by the whole process; reads are serialised.
std::mutex& Hdf5Mutex() {
  static auto* mutex = new std::mutex;
  return *mutex;
}

}  // namespace

absl::StatusOr<VgSggFile> ReadVgSggFile(const fs::path& path, int64_t num_classes,
                                        int64_t num_predicates) {
  std::error_code error;
  if (!fs::is_regular_file(path, error)) {
    return absl::NotFoundError(absl::StrCat(path.string(), ": not found"));
  }
  const std::lock_guard<std::mutex> lock(Hdf5Mutex());
  const QuietHdf5Errors quiet;
  if (H5Fis_hdf5(path.c_str()) <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(path.string(), ": not an HDF5 file", Hdf5Message(), "; ", kFix));
  }
  const Handle access(H5Pcreate(H5P_FILE_ACCESS), H5Pclose);
  // Closing the file closes whatever is still open in it, so a failed read leaves nothing behind.
  H5Pset_fclose_degree(access.get(), H5F_CLOSE_STRONG);
  const Handle file(H5Fopen(path.c_str(), H5F_ACC_RDONLY, access.get()), H5Fclose);
  if (!file.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path.string(), ": cannot be opened", Hdf5Message(), "; ", kFix));
  }
  return ReadArrays(Reader(path, file.get()), num_classes, num_predicates);
}

namespace {

// Whether boxes a and b (x1, y1, x2, y2) overlap as the benchmark's filter_non_overlap tests it:
// boxlist_iou > 0, whose intersection counts pixels inclusively (+1).
bool OverlapInclusive(const float* a, const float* b) {
  return std::min(a[2], b[2]) - std::max(a[0], b[0]) + 1 > 0 &&
         std::min(a[3], b[3]) - std::max(a[1], b[1]) + 1 > 0;
}

}  // namespace

VgGraphs SelectImages(const VgSggFile& file, const VgSelection& selection) {
  const int64_t flag = selection.split == VgSplit::kTest ? 2 : 0;
  std::vector<int64_t> index;
  for (int64_t i = 0; i < file.num_images(); ++i) {
    if (file.split[i] == flag && file.first_box[i] >= 0 &&
        (!selection.filter_empty_rels || file.first_rel[i] >= 0)) {
      index.push_back(i);
    }
  }
  const auto num_val = static_cast<size_t>(
      std::min<int64_t>(std::max<int64_t>(selection.num_val_images, 0), index.size()));
  if (selection.split == VgSplit::kVal) {
    index.resize(num_val);
  } else if (selection.split == VgSplit::kTrain) {
    index.erase(index.begin(), index.begin() + static_cast<std::ptrdiff_t>(num_val));
  }
  const bool non_overlap = selection.filter_non_overlap && selection.split == VgSplit::kTrain;

  VgGraphs graphs;
  for (const int64_t i : index) {
    if (selection.max_images > 0 && graphs.size() >= selection.max_images) break;
    const int64_t first = file.first_box[i];
    const float* boxes = &file.boxes[static_cast<size_t>(4 * first)];
    std::vector<int64_t> relations;
    for (int64_t r = file.first_rel[i]; file.first_rel[i] >= 0 && r <= file.last_rel[i]; ++r) {
      const int64_t s = file.relationships[2 * r] - first;
      const int64_t o = file.relationships[2 * r + 1] - first;
      if (non_overlap && !OverlapInclusive(boxes + 4 * s, boxes + 4 * o)) continue;
      relations.insert(relations.end(), {s, o, file.predicates[r]});
    }
    if (non_overlap && relations.empty()) continue;
    graphs.images.push_back(i);
    graphs.boxes.insert(graphs.boxes.end(), boxes, boxes + 4 * (file.last_box[i] - first + 1));
    for (int64_t b = first; b <= file.last_box[i]; ++b) graphs.labels.push_back(file.labels[b] - 1);
    graphs.relations.insert(graphs.relations.end(), relations.begin(), relations.end());
    graphs.box_offsets.push_back(static_cast<int64_t>(graphs.labels.size()));
    graphs.rel_offsets.push_back(static_cast<int64_t>(graphs.relations.size() / 3));
  }
  return graphs;
}

}  // namespace sgg_datasets
