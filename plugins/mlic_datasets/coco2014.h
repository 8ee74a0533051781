// The COCO-2014 instances reader behind mlic_datasets::Coco2014, exposed for tests and fuzzing.
#pragma once

#include <filesystem>
#include <string>

#include "absl/status/statusor.h"
#include "labelled_images.h"

namespace mlic_datasets {

// The labelled images of one split's instances file (annotations/instances_<split>2014.json):
// every image with at least one annotation, its labels the categories of its instances, classes
// in `order` ("category_id" or "alphabetical"); files are `image_dir` / file_name.
absl::StatusOr<LabelledImages> ReadCoco(const std::filesystem::path& path, const std::string& order,
                                        const std::filesystem::path& image_dir);

}  // namespace mlic_datasets
