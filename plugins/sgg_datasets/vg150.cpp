// sgg_datasets::VG150: Visual Genome's 150 object classes and 50 predicates (the VG-150 split of
// Xu et al.) from the files the Scene-Graph-Benchmark (KaihuaTang/Scene-Graph-Benchmark.pytorch)
// distributes: VG-SGG-with-attri.h5 (boxes, labels, relations, split), VG-SGG-dicts-with-attri.json
// (class and predicate names) and image_data.json (image ids and sizes), with the images in
// VG_100K/<image_id>.jpg. Samples follow the benchmark's VGDataset: the same images per split, the
// same box conversion, duplicate-relation sampling, clipping and test-time resizing.
#include <torch/torch.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "image_io/image_io.h"
#include "json_reader/json_reader.h"
#include "kd/dataset.h"
#include "kd/error.h"
#include "kd/registry.h"
#include "kd/transform_list.h"
#include "scene_graph/scene_graph.h"
#include "vg150.h"
#include "vg_sgg_file.h"

namespace sgg_datasets {

namespace {

namespace fs = std::filesystem;
using json_reader::JsonReader;

constexpr char kName[] = "sgg_datasets::VG150";

// image_data.json entries the benchmark skips as corrupted (load_image_filenames); the .h5 file
// has no rows for them.
constexpr int64_t kCorruptedImageIds[] = {1592, 1722, 4616, 4617};

absl::StatusOr<std::string> ReadText(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    std::error_code error;
    if (!fs::exists(path, error)) {
      return absl::NotFoundError(absl::StrCat(path.string(), ": not found"));
    }
    return absl::PermissionDeniedError(absl::StrCat(path.string(), ": cannot be read"));
  }
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) return absl::DataLossError(absl::StrCat(path.string(), ": read error"));
  return text;
}

// The names of the object classes and predicates, in index order (without the background).
struct Dictionary {
  std::vector<std::string> classes;
  std::vector<std::string> predicates;
};

// An object mapping names to indices 1..K (label_to_idx, predicate_to_idx); the names in index
// order. A "__background__" entry at 0 is skipped: the benchmark adds it itself.
absl::Status ReadIndexMap(json_reader::JsonReader& json, const std::string& key,
                          std::vector<std::string>* names) {
  struct Entry {
    std::string name;
    int64_t index;
    size_t offset;
  };
  const size_t start = json.NextOffset();
  std::vector<Entry> entries;
  KD_RETURN_IF_ERROR(json.ReadObject([&](const std::string& name) -> absl::Status {
    Entry entry{name, 0, json.NextOffset()};
    KD_RETURN_IF_ERROR(json.ReadInt(&entry.index));
    if (name == "__background__" && entry.index == 0) return absl::OkStatus();
    entries.push_back(std::move(entry));
    return absl::OkStatus();
  }));
  if (entries.empty()) return json.ErrorAt(start, absl::StrCat("\"", key, "\" is empty"));
  const auto count = static_cast<int64_t>(entries.size());
  names->assign(entries.size(), "");
  std::vector<const Entry*> owner(entries.size(), nullptr);
  for (const Entry& entry : entries) {
    if (entry.index < 1 || entry.index > count) {
      return json.ErrorAt(
          entry.offset, absl::StrCat("\"", key, "\": \"", entry.name, "\" has index ", entry.index,
                                     "; its ", count, " names must have the indices 1..", count));
    }
    const Entry*& first = owner[static_cast<size_t>(entry.index - 1)];
    if (first != nullptr) {
      return json.ErrorAt(entry.offset,
                          absl::StrCat("\"", key, "\": index ", entry.index, " is given to both \"",
                                       first->name, "\" and \"", entry.name, "\""));
    }
    first = &entry;
    (*names)[static_cast<size_t>(entry.index - 1)] = entry.name;
  }
  return absl::OkStatus();
}

absl::StatusOr<Dictionary> ReadDictionary(const fs::path& path) {
  KD_ASSIGN_OR_RETURN(const std::string text, ReadText(path));
  json_reader::JsonReader json(text, path.string());
  Dictionary dictionary;
  bool has_labels = false, has_predicates = false;
  absl::Status status = json.ReadObject([&](const std::string& key) -> absl::Status {
    if (key == "label_to_idx") {
      has_labels = true;
      return ReadIndexMap(json, key, &dictionary.classes);
    }
    if (key == "predicate_to_idx") {
      has_predicates = true;
      return ReadIndexMap(json, key, &dictionary.predicates);
    }
    return json.Skip();
  });
  if (status.ok()) status = json.ExpectEnd();
  if (!status.ok()) return status;
  for (const auto& [present, key] :
       {std::pair{has_labels, "label_to_idx"}, std::pair{has_predicates, "predicate_to_idx"}}) {
    if (!present) {
      return absl::InvalidArgumentError(absl::StrCat(
          path.string(), ": no \"", key,
          "\" object at the top level; is this the benchmark's VG-SGG-dicts-with-attri.json?"));
    }
  }
  return dictionary;
}

struct ImageEntry {
  int64_t id = -1;
  int64_t width = -1;
  int64_t height = -1;
};

// image_data.json: one object per image, in the order of the .h5 file's rows once the corrupted
// images are dropped.
absl::StatusOr<std::vector<ImageEntry>> ReadImageData(const fs::path& path) {
  KD_ASSIGN_OR_RETURN(const std::string text, ReadText(path));
  json_reader::JsonReader json(text, path.string());
  std::vector<ImageEntry> images;
  absl::Status status = json.ReadArray([&]() -> absl::Status {
    const size_t offset = json.NextOffset();
    ImageEntry entry;
    KD_RETURN_IF_ERROR(json.ReadObject([&](const std::string& key) -> absl::Status {
      if (key == "image_id") return json.ReadInt(&entry.id);
      if (key == "width") return json.ReadInt(&entry.width);
      if (key == "height") return json.ReadInt(&entry.height);
      return json.Skip();
    }));
    for (const auto& [value, key] :
         {std::pair{entry.id, "image_id"}, std::pair{entry.width, "width"},
          std::pair{entry.height, "height"}}) {
      if (value < 0) return json.ErrorAt(offset, absl::StrCat("an image without \"", key, "\""));
    }
    if (entry.width == 0 || entry.height == 0) {
      return json.ErrorAt(offset, absl::StrCat("image ", entry.id, " has a width or height of 0"));
    }
    if (std::find(std::begin(kCorruptedImageIds), std::end(kCorruptedImageIds), entry.id) ==
        std::end(kCorruptedImageIds)) {
      images.push_back(entry);
    }
    return absl::OkStatus();
  });
  if (status.ok()) status = json.ExpectEnd();
  if (!status.ok()) return status;
  return images;
}

struct Vg150Options {
  fs::path image_dir;
  bool train = true;
  bool filter_duplicate_rels = true;
  int64_t min_size = 600;
  int64_t max_size = 1000;
};

// The benchmark's Resize.get_size (maskrcnn_benchmark/data/transforms/transforms.py): the shorter
// side becomes min_size unless the longer would then exceed max_size, in which case the longer
// side becomes about max_size; the other side is truncated. Returns (height, width).
std::pair<int64_t, int64_t> ResizedSize(int64_t height, int64_t width, int64_t min_size,
                                        int64_t max_size) {
  const auto shorter = static_cast<double>(std::min(height, width));
  const auto longer = static_cast<double>(std::max(height, width));
  int64_t size = min_size;
  if (longer / shorter * static_cast<double>(size) > static_cast<double>(max_size)) {
    // Python's round(): halves to even, as nearbyint does in the default rounding mode.
    size = std::max<int64_t>(
        1, static_cast<int64_t>(std::nearbyint(static_cast<double>(max_size) * shorter / longer)));
  }
  if ((width <= height && width == size) || (height <= width && height == size)) {
    return {height, width};
  }
  const auto scaled = [size](int64_t along, int64_t across) {
    return std::max<int64_t>(
        1, static_cast<int64_t>(static_cast<double>(size * along) / static_cast<double>(across)));
  };
  if (width < height) return {scaled(height, width), size};
  return {size, scaled(width, height)};
}

class Vg150 : public kd::Dataset {
 public:
  Vg150(Vg150Options options, Dictionary dictionary, std::vector<ImageEntry> images,
        VgGraphs graphs, kd::TransformList transforms)
      : options_(std::move(options)),
        dictionary_(std::move(dictionary)),
        images_(std::move(images)),
        graphs_(std::move(graphs)),
        transforms_(std::move(transforms)) {
    predicate_counts_ = PredicateCounts();
  }

  int64_t Size() const override { return graphs_.size(); }

  kd::TensorDict Get(int64_t index, kd::Rng& rng) const override {
    if (index < 0 || index >= Size()) {
      throw kd::Error(absl::OutOfRangeError(
          absl::StrCat(kName, ": sample ", index, " is outside 0..", Size() - 1)));
    }
    const ImageEntry& entry = images_[static_cast<size_t>(index)];
    const std::string where = absl::StrCat(kName, ": sample ", index, " (image ", entry.id, ")");
    torch::Tensor image;
    try {
      image =
          image_io::ReadImage(ImagePath(options_.image_dir, entry.id), image_io::Channels::kRgb);
    } catch (const kd::Error& error) {
      throw kd::Error(kd::Annotate(error.status(), where));
    }
    image = image.to(torch::kFloat).div_(255);

    std::vector<std::array<int64_t, 3>> relations = Relations(index, rng);
    const int64_t first = graphs_.box_offsets[static_cast<size_t>(index)];
    const int64_t count = graphs_.box_offsets[static_cast<size_t>(index) + 1] - first;
    // Boxes in pixels of the image as image_data.json sizes it, clipped to it (BoxList's
    // clip_to_image); training drops the boxes clipping empties, with their relations.
    const double scale = static_cast<double>(std::max(entry.width, entry.height)) / kBoxScale;
    const float max_x = static_cast<float>(entry.width - 1);
    const float max_y = static_cast<float>(entry.height - 1);
    std::vector<std::array<float, 4>> boxes;
    std::vector<int64_t> labels;
    std::vector<int64_t> kept(static_cast<size_t>(count), -1);
    for (int64_t b = 0; b < count; ++b) {
      const float* stored = &graphs_.boxes[static_cast<size_t>(4 * (first + b))];
      std::array<float, 4> box;
      for (int k = 0; k < 4; ++k) {
        box[k] =
            std::clamp(static_cast<float>(stored[k] * scale), 0.0f, k % 2 == 0 ? max_x : max_y);
      }
      if (options_.train && !(box[2] > box[0] && box[3] > box[1])) continue;
      kept[static_cast<size_t>(b)] = static_cast<int64_t>(boxes.size());
      boxes.push_back(box);
      labels.push_back(graphs_.labels[static_cast<size_t>(first + b)]);
    }

    if (options_.min_size > 0) {
      const auto [height, width] =
          ResizedSize(image.size(1), image.size(2), options_.min_size, options_.max_size);
      if (height != image.size(1) || width != image.size(2)) {
        namespace F = torch::nn::functional;
        image = F::interpolate(image.unsqueeze(0), F::InterpolateFuncOptions()
                                                       .size(std::vector<int64_t>{height, width})
                                                       .mode(torch::kBilinear)
                                                       .align_corners(false)
                                                       .antialias(true))
                    .squeeze(0);
      }
    }
    // BoxList.resize: from the size image_data.json gives to the (resized) image's.
    const auto ratio_x = static_cast<float>(static_cast<double>(image.size(2)) / entry.width);
    const auto ratio_y = static_cast<float>(static_cast<double>(image.size(1)) / entry.height);
    for (std::array<float, 4>& box : boxes) {
      box[0] *= ratio_x;
      box[1] *= ratio_y;
      box[2] *= ratio_x;
      box[3] *= ratio_y;
    }

    torch::Tensor box_tensor = torch::empty({static_cast<int64_t>(boxes.size()), 4}, torch::kFloat);
    std::copy_n(boxes.empty() ? nullptr : boxes.front().data(), 4 * boxes.size(),
                box_tensor.data_ptr<float>());
    std::vector<int64_t> triples;
    for (const std::array<int64_t, 3>& relation : relations) {
      const int64_t s = kept[static_cast<size_t>(relation[0])];
      const int64_t o = kept[static_cast<size_t>(relation[1])];
      if (s >= 0 && o >= 0) triples.insert(triples.end(), {s, o, relation[2]});
    }
    const auto num_relations = static_cast<int64_t>(triples.size() / 3);
    kd::TensorDict sample{
        {"image", image},
        {"boxes", box_tensor},
        {"box_labels", torch::tensor(labels, torch::kLong)},
        {"relations", torch::tensor(triples, torch::kLong).view({num_relations, 3})}};
    const std::vector<int64_t> size{image.size(1), image.size(2)};
    sample = transforms_.Apply(std::move(sample), rng);
    const torch::Tensor& transformed = sample.at("image");
    if (transformed.dim() != 3 || transformed.size(1) != size[0] ||
        transformed.size(2) != size[1]) {
      throw kd::Error(absl::InvalidArgumentError(absl::StrCat(
          where, ": the transforms changed the image from ", size[0], " x ", size[1], " to ",
          c10::str(transformed.sizes()),
          "; boxes do not follow geometric transforms, so use only photometric ones (e.g. "
          "transforms::Normalize) and resize with `min_size` and `max_size`")));
    }
    scene_graph::CheckSample(sample, static_cast<int64_t>(dictionary_.classes.size()),
                             static_cast<int64_t>(dictionary_.predicates.size()), where);
    return sample;
  }

  kd::TensorDict Collate(std::vector<kd::TensorDict> samples) const override {
    return scene_graph::Collate(std::move(samples));
  }

  kd::DatasetInfo Info() const override {
    kd::DatasetInfo info;
    info.task = "sgg";
    info.class_names = dictionary_.classes;
    std::vector<std::string>& predicates = info.vocabularies[scene_graph::kPredicates];
    predicates.push_back("__background__");
    predicates.insert(predicates.end(), dictionary_.predicates.begin(),
                      dictionary_.predicates.end());
    info.statistics.Set(scene_graph::kPredicateCounts, predicate_counts_);
    return info;
  }

  static fs::path ImagePath(const fs::path& image_dir, int64_t id) {
    return image_dir / absl::StrCat(id, ".jpg");
  }

 private:
  // The image's relations; for training, with filter_duplicate_rels, one per (subject, object)
  // pair, its predicate drawn uniformly among the pair's annotations (a predicate annotated twice
  // is twice as likely), pairs in order of first appearance.
  std::vector<std::array<int64_t, 3>> Relations(int64_t index, kd::Rng& rng) const {
    const int64_t begin = graphs_.rel_offsets[static_cast<size_t>(index)];
    const int64_t end = graphs_.rel_offsets[static_cast<size_t>(index) + 1];
    const int64_t* r = graphs_.relations.data();
    std::vector<std::array<int64_t, 3>> relations;
    if (!(options_.train && options_.filter_duplicate_rels)) {
      for (int64_t k = begin; k < end; ++k) {
        relations.push_back({r[3 * k], r[3 * k + 1], r[3 * k + 2]});
      }
      return relations;
    }
    absl::flat_hash_map<std::pair<int64_t, int64_t>, size_t> group_of;
    std::vector<std::vector<int64_t>> predicates;
    for (int64_t k = begin; k < end; ++k) {
      const auto [it, added] = group_of.try_emplace({r[3 * k], r[3 * k + 1]}, relations.size());
      if (added) {
        relations.push_back({r[3 * k], r[3 * k + 1], 0});
        predicates.emplace_back();
      }
      predicates[it->second].push_back(r[3 * k + 2]);
    }
    for (size_t g = 0; g < relations.size(); ++g) {
      const std::vector<int64_t>& choices = predicates[g];
      relations[g][2] =
          choices[static_cast<size_t>(rng.UniformInt(0, static_cast<int64_t>(choices.size()) - 1))];
    }
    return relations;
  }

  // scene_graph::kPredicateCounts over the split's images as annotated (boxes unclipped, every
  // relation, duplicates too), as the benchmark's get_VG_statistics counts them: background pairs
  // are the ordered pairs whose boxes overlap, related or not, or every ordered pair in an image
  // where no two boxes overlap.
  torch::Tensor PredicateCounts() const {
    const auto classes = static_cast<int64_t>(dictionary_.classes.size());
    const auto predicates = static_cast<int64_t>(dictionary_.predicates.size());
    torch::Tensor counts = torch::zeros({classes, classes, predicates + 1}, torch::kLong);
    for (int64_t i = 0; i < Size(); ++i) {
      const int64_t first = graphs_.box_offsets[static_cast<size_t>(i)];
      const int64_t n = graphs_.box_offsets[static_cast<size_t>(i) + 1] - first;
      const int64_t r0 = graphs_.rel_offsets[static_cast<size_t>(i)];
      const int64_t r = graphs_.rel_offsets[static_cast<size_t>(i) + 1] - r0;
      auto* boxes = const_cast<float*>(&graphs_.boxes[static_cast<size_t>(4 * first)]);
      auto* labels = const_cast<int64_t*>(&graphs_.labels[static_cast<size_t>(first)]);
      auto* relations = const_cast<int64_t*>(graphs_.relations.data() + 3 * r0);
      scene_graph::AddPredicateCounts(counts, torch::from_blob(boxes, {n, 4}, torch::kFloat),
                                      torch::from_blob(labels, {n}, torch::kLong),
                                      torch::from_blob(relations, {r, 3}, torch::kLong));
    }
    return counts;
  }

  Vg150Options options_;
  Dictionary dictionary_;
  std::vector<ImageEntry> images_;  // per sample
  VgGraphs graphs_;
  kd::TransformList transforms_;
  torch::Tensor predicate_counts_;
};

VgSplit ParseSplit(const std::string& split) {
  if (split == "val") return VgSplit::kVal;
  if (split == "test") return VgSplit::kTest;
  return VgSplit::kTrain;
}

std::shared_ptr<kd::Dataset> MakeVg150(const kd::Options& options, const kd::BuildContext& ctx) {
  const fs::path root = options.String("root");
  std::error_code error;
  if (!fs::is_directory(root, error)) {
    options.Fail("root", absl::StrCat(root.string(),
                                      ": no such directory; give the directory holding "
                                      "VG-SGG-with-attri.h5, VG-SGG-dicts-with-attri.json, "
                                      "image_data.json and VG_100K/"));
  }
  const fs::path dict_file = root / options.String("dict_file");
  absl::StatusOr<Dictionary> dictionary = ReadDictionary(dict_file);
  if (!dictionary.ok()) {
    options.Fail("dict_file", absl::StrCat(dictionary.status().message(),
                                           absl::IsNotFound(dictionary.status())
                                               ? " (the benchmark's VG-SGG-dicts-with-attri.json, "
                                                 "relative to `root` or absolute)"
                                               : ""));
  }
  const fs::path h5_file = root / options.String("h5_file");
  absl::StatusOr<VgSggFile> file =
      ReadVgSggFile(h5_file, static_cast<int64_t>(dictionary->classes.size()),
                    static_cast<int64_t>(dictionary->predicates.size()));
  if (!file.ok()) {
    options.Fail("h5_file", absl::StrCat(file.status().message(),
                                         absl::IsNotFound(file.status()) &&
                                                 absl::EndsWith(file.status().message(), "found")
                                             ? " (the benchmark's VG-SGG-with-attri.h5, relative "
                                               "to `root` or absolute)"
                                             : ""));
  }
  const fs::path image_file = root / options.String("image_file");
  absl::StatusOr<std::vector<ImageEntry>> entries = ReadImageData(image_file);
  if (!entries.ok()) {
    options.Fail("image_file", absl::StrCat(entries.status().message(),
                                            absl::IsNotFound(entries.status())
                                                ? " (Visual Genome's image_data.json, relative "
                                                  "to `root` or absolute)"
                                                : ""));
  }
  if (static_cast<int64_t>(entries->size()) != file->num_images()) {
    options.Fail("image_file",
                 absl::StrCat(image_file.string(), " lists ", entries->size(),
                              " images (without 1592, 1722, 4616 and 4617, which the benchmark "
                              "drops as corrupted) but ",
                              h5_file.string(), " has ", file->num_images(),
                              " rows in \"split\"; the two files must come from the same "
                              "release, row for row"));
  }

  const std::string split = options.String("split");
  VgSelection selection;
  selection.split = ParseSplit(split);
  selection.num_val_images = options.Int("num_val_images");
  selection.filter_empty_rels = options.Bool("filter_empty_rels");
  selection.filter_non_overlap = options.Bool("filter_non_overlap");
  selection.max_images = options.Int("max_images");
  VgGraphs graphs = SelectImages(*file, selection);
  if (graphs.size() == 0) {
    options.Fail("split",
                 absl::StrCat(h5_file.string(), ": the ", split, " split has no image with boxes",
                              selection.filter_empty_rels ? " and relations" : "",
                              " (val is the first `num_val_images` of the file's "
                              "training images, train the rest)"));
  }

  Vg150Options read;
  read.image_dir = root / options.String("image_dir");
  read.train = selection.split == VgSplit::kTrain;
  read.filter_duplicate_rels = options.Bool("filter_duplicate_rels");
  read.min_size = options.Int("min_size");
  read.max_size = options.Int("max_size");
  std::vector<ImageEntry> images;
  int64_t missing = 0;
  fs::path first_missing;
  for (const int64_t row : graphs.images) {
    const ImageEntry& entry = (*entries)[static_cast<size_t>(row)];
    const fs::path path = Vg150::ImagePath(read.image_dir, entry.id);
    if (!fs::is_regular_file(path, error)) {
      if (missing++ == 0) first_missing = path;
    }
    images.push_back(entry);
  }
  if (missing > 0) {
    options.Fail(
        "image_dir",
        absl::StrCat(
            first_missing.string(), ": not found",
            missing > 1 ? absl::StrCat(" (nor ", missing - 1, " more of the split's images)") : "",
            "; `image_dir` must hold Visual Genome's images as "
            "<image_id>.jpg (VG_100K and VG_100K_2 merged)"));
  }
  return std::make_shared<Vg150>(std::move(read), *std::move(dictionary), std::move(images),
                                 std::move(graphs), kd::TransformList(options, ctx));
}

}  // namespace

void RegisterVg150(kd::Registrar& registrar) {
  registrar.Add(
      kd::Kind::kDataset, "VG150",
      "Visual Genome VG-150 scene graphs (150 object classes, 50 predicates) from the "
      "Scene-Graph-Benchmark's files; keys image [3,H,W], boxes [N,4], box_labels [N], "
      "relations [R,3]",
      kd::Schema()
          .Required("root", kd::OptionType::kString,
                    "directory holding the benchmark's VG files and the images")
          .Enum("split", {"train", "val", "test"}, "train",
                "train: the file's training images after the first num_val_images; val: those "
                "first images; test: the test images")
          .String("h5_file", "VG-SGG-with-attri.h5",
                  "boxes, labels and relations (HDF5), relative to root or absolute")
          .String("dict_file", "VG-SGG-dicts-with-attri.json",
                  "class and predicate names (label_to_idx, predicate_to_idx), relative to root "
                  "or absolute")
          .String("image_file", "image_data.json",
                  "image ids and sizes, one per row of the HDF5 file, relative to root or absolute")
          .String("image_dir", "VG_100K",
                  "directory of the images <image_id>.jpg, relative to root or absolute")
          .Int("num_val_images", 5000, "training images set apart as the val split")
          .Min(0)
          .Int("max_images", 0, "keep only the first this many images of the split; 0 keeps all")
          .Min(0)
          .Bool("filter_empty_rels", true,
                "leave out images without relations (before val is split off)")
          .Bool("filter_duplicate_rels", true,
                "train only: keep one relation per (subject, object) pair, its predicate drawn "
                "at random among the pair's annotations in each epoch")
          .Bool("filter_non_overlap", false,
                "train only: leave out relations whose boxes do not overlap, and images left "
                "without relations")
          .Int("min_size", 600,
               "resize so that the shorter side is this long (bilinear); 0 keeps the stored size")
          .Min(0)
          .Int("max_size", 1000,
               "the longest the longer side may become; the shorter side is made shorter if need "
               "be")
          .Min(1)
          .NestedList("transforms", kd::Kind::kTransform,
                      "photometric per-sample transforms applied after the resize (e.g. "
                      "transforms::Normalize); they must not change the image size"),
      MakeVg150);
}

}  // namespace sgg_datasets
