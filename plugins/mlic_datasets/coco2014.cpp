// mlic_datasets::Coco2014: multi-label classification on MS-COCO 2014 from the official instance
// annotations (annotations/instances_{train,val}2014.json), as ML-GCN's and PSD's loaders build
// it: an image's labels are the categories of its annotated instances, and images without any
// annotation are left out.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "coco2014.h"
#include "json_reader/json_reader.h"
#include "kd/error.h"
#include "labelled_images.h"

namespace mlic_datasets {

namespace {

namespace fs = std::filesystem;

struct CocoCategory {
  int64_t id = -1;
  std::string name;
  size_t offset = 0;  // where it is in the file, for messages
};

struct CocoImage {
  int64_t id = -1;
  std::string file_name;
  size_t offset = 0;
};

struct CocoAnnotation {
  int64_t image_id = -1;
  int64_t category_id = -1;
  size_t offset = 0;
};

struct CocoInstances {
  std::vector<CocoCategory> categories;
  std::vector<CocoImage> images;
  std::vector<CocoAnnotation> annotations;
};

// A member to read from an object, and where to store it.
struct IntField {
  const char* name;
  int64_t* value;
};
struct StringField {
  const char* name;
  std::string* value;
};

// Reads the listed members of the object that comes next; other members are skipped. A listed
// member that is absent is an error at the object, naming `what` it is.
absl::Status ReadRecord(json_reader::JsonReader& json, absl::string_view what,
                        std::vector<IntField> ints, std::vector<StringField> strings) {
  const size_t offset = json.NextOffset();
  std::vector<bool> seen(ints.size() + strings.size(), false);
  absl::Status status = json.ReadObject([&](const std::string& key) -> absl::Status {
    for (size_t i = 0; i < ints.size(); ++i) {
      if (key == ints[i].name) {
        seen[i] = true;
        return json.ReadInt(ints[i].value);
      }
    }
    for (size_t i = 0; i < strings.size(); ++i) {
      if (key == strings[i].name) {
        seen[ints.size() + i] = true;
        return json.ReadString(strings[i].value);
      }
    }
    return json.Skip();
  });
  if (!status.ok()) return status;
  for (size_t i = 0; i < seen.size(); ++i) {
    if (seen[i]) continue;
    const char* name = i < ints.size() ? ints[i].name : strings[i - ints.size()].name;
    return json.ErrorAt(offset, absl::StrCat(what, " without \"", name, "\""));
  }
  return absl::OkStatus();
}

// The three arrays of an instances file that define image labels; everything else (info,
// licenses, segmentations, boxes, ...) is skipped.
absl::StatusOr<CocoInstances> ReadCocoInstances(json_reader::JsonReader& json,
                                                const fs::path& path) {
  CocoInstances instances;
  bool has_images = false, has_annotations = false, has_categories = false;
  absl::Status status = json.ReadObject([&](const std::string& key) -> absl::Status {
    if (key == "images") {
      has_images = true;
      return json.ReadArray([&] {
        CocoImage& image = instances.images.emplace_back();
        image.offset = json.NextOffset();
        return ReadRecord(json, "an image", {{"id", &image.id}}, {{"file_name", &image.file_name}});
      });
    }
    if (key == "annotations") {
      has_annotations = true;
      return json.ReadArray([&] {
        CocoAnnotation& annotation = instances.annotations.emplace_back();
        annotation.offset = json.NextOffset();
        return ReadRecord(
            json, "an annotation",
            {{"image_id", &annotation.image_id}, {"category_id", &annotation.category_id}}, {});
      });
    }
    if (key == "categories") {
      has_categories = true;
      return json.ReadArray([&] {
        CocoCategory& category = instances.categories.emplace_back();
        category.offset = json.NextOffset();
        return ReadRecord(json, "a category", {{"id", &category.id}}, {{"name", &category.name}});
      });
    }
    return json.Skip();
  });
  if (status.ok()) status = json.ExpectEnd();
  if (!status.ok()) return status;
  for (const auto& [present, name] :
       {std::pair{has_images, "images"}, std::pair{has_annotations, "annotations"},
        std::pair{has_categories, "categories"}}) {
    if (!present) {
      return absl::InvalidArgumentError(
          absl::StrCat(path.string(), ": no \"", name,
                       "\" array at the top level; is this a COCO instances file?"));
    }
  }
  if (instances.categories.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(path.string(), ": \"categories\" is empty"));
  }
  return instances;
}

// The class order: COCO category ids ascending, or the names sorted alphabetically (ML-GCN's
// category.json, which PSD's label partitions index).
std::vector<const CocoCategory*> OrderCategories(const CocoInstances& instances,
                                                 const std::string& order) {
  std::vector<const CocoCategory*> sorted;
  for (const CocoCategory& category : instances.categories) sorted.push_back(&category);
  if (order == "alphabetical") {
    std::stable_sort(sorted.begin(), sorted.end(),
                     [](const auto* a, const auto* b) { return a->name < b->name; });
  } else {
    std::stable_sort(sorted.begin(), sorted.end(),
                     [](const auto* a, const auto* b) { return a->id < b->id; });
  }
  return sorted;
}

// Labels per image in the order of the file's "images" array, keeping the images with at least
// one annotation (ML-GCN's and PSD's loaders keep only the images some annotation refers to).
// `json` places errors in the file.
absl::StatusOr<LabelledImages> LabelImages(const CocoInstances& instances, const std::string& order,
                                           const json_reader::JsonReader& json,
                                           const fs::path& image_dir) {
  LabelledImages data;
  absl::flat_hash_map<int64_t, int64_t> class_of_category;
  absl::flat_hash_map<std::string, int64_t> class_of_name;
  for (const CocoCategory* category : OrderCategories(instances, order)) {
    const auto index = static_cast<int64_t>(data.class_names.size());
    if (!class_of_category.emplace(category->id, index).second) {
      return json.ErrorAt(category->offset,
                          absl::StrCat("category id ", category->id, " appears twice"));
    }
    if (!class_of_name.emplace(category->name, index).second) {
      return json.ErrorAt(category->offset,
                          absl::StrCat("category name \"", category->name, "\" appears twice"));
    }
    data.class_names.push_back(category->name);
  }

  absl::flat_hash_map<int64_t, size_t> image_of_id;
  for (size_t i = 0; i < instances.images.size(); ++i) {
    if (!image_of_id.emplace(instances.images[i].id, i).second) {
      return json.ErrorAt(instances.images[i].offset,
                          absl::StrCat("image id ", instances.images[i].id, " appears twice"));
    }
  }
  const size_t classes = data.class_names.size();
  std::vector<int8_t> labels(instances.images.size() * classes, kAbsent);
  std::vector<bool> annotated(instances.images.size(), false);
  for (const CocoAnnotation& annotation : instances.annotations) {
    const auto image = image_of_id.find(annotation.image_id);
    if (image == image_of_id.end()) {
      return json.ErrorAt(annotation.offset,
                          absl::StrCat("annotation of image_id ", annotation.image_id,
                                       ", which is not in \"images\""));
    }
    const auto cls = class_of_category.find(annotation.category_id);
    if (cls == class_of_category.end()) {
      return json.ErrorAt(annotation.offset,
                          absl::StrCat("annotation of category_id ", annotation.category_id,
                                       ", which is not in \"categories\""));
    }
    labels[image->second * classes + cls->second] = kPresent;
    annotated[image->second] = true;
  }
  for (size_t i = 0; i < instances.images.size(); ++i) {
    if (!annotated[i]) continue;
    data.AddImage(image_dir / instances.images[i].file_name);
    std::copy_n(labels.begin() + i * classes, classes, data.Row(data.files.size() - 1));
  }
  return data;
}

}  // namespace

absl::StatusOr<LabelledImages> ReadCoco(const fs::path& path, const std::string& order,
                                        const fs::path& image_dir) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    std::error_code error;
    if (!fs::exists(path, error)) {
      return absl::NotFoundError(absl::StrCat(path.string(), ": not found"));
    }
    return absl::PermissionDeniedError(absl::StrCat(path.string(), ": cannot be read"));
  }
  in.seekg(0, std::ios::end);
  std::string text(static_cast<size_t>(in.tellg()), '\0');
  in.seekg(0, std::ios::beg);
  if (!in.read(text.data(), static_cast<std::streamsize>(text.size()))) {
    return absl::DataLossError(absl::StrCat(path.string(), ": read error"));
  }
  json_reader::JsonReader json(text, path.string());
  absl::StatusOr<CocoInstances> instances = ReadCocoInstances(json, path);
  if (!instances.ok()) return instances.status();
  return LabelImages(*instances, order, json, image_dir);
}

namespace {

std::shared_ptr<kd::Dataset> MakeCoco2014(const kd::Options& options, const kd::BuildContext& ctx) {
  const fs::path root = options.String("root");
  const std::string split = options.String("split");
  const fs::path annotations = root / "annotations" / ("instances_" + split + "2014.json");
  absl::StatusOr<LabelledImages> data =
      ReadCoco(annotations, options.String("label_order"), root / (split + "2014"));
  if (!data.ok()) {
    options.Fail("root", absl::StrCat(data.status().message(),
                                      absl::IsNotFound(data.status())
                                          ? " (`root` must hold COCO 2014's annotations/, "
                                            "train2014/ and val2014/)"
                                          : ""));
  }
  if (data->files.empty()) {
    options.Fail("root", absl::StrCat(annotations.string(), ": no image has an annotation"));
  }
  return std::make_shared<MultiLabelImages>("mlic_datasets::Coco2014", *std::move(data),
                                            kd::TransformList(options, ctx));
}

}  // namespace

void RegisterCoco2014(kd::Registrar& registrar) {
  registrar.Add(
      kd::Kind::kDataset, "Coco2014",
      "MS-COCO 2014 multi-label classification (80 categories) from the official instance "
      "annotations; keys image [3,H,W], labels [80]",
      kd::Schema()
          .Required("root", kd::OptionType::kString,
                    "directory holding train2014/, val2014/ and annotations/")
          .Enum("split", {"train", "val"}, "train", "which 2014 split")
          .Enum("label_order", {"category_id", "alphabetical"}, "category_id",
                "class order: COCO category ids ascending, or names sorted alphabetically (the "
                "ML-GCN/PSD order that their label partition files index)")
          .NestedList("transforms", kd::Kind::kTransform,
                      "per-sample transforms applied in order with the loader's random generator"),
      MakeCoco2014);
}

}  // namespace mlic_datasets
