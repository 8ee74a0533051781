// sgg_datasets::VG150 on the fixture of vg_fixture.h: the Scene-Graph-Benchmark's HDF5 arrays,
// dictionary and image_data.json, with real JPEG images. Expected values are worked out by hand
// from the benchmark's visual_genome.py.
#include <array>
#include <catch2/catch.hpp>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "image_io/image_io.h"
#include "kd/dataset.h"
#include "scene_graph/scene_graph.h"
#include "test_support.h"
#include "vg_fixture.h"

namespace {

namespace fs = std::filesystem;
using Box = std::array<float, 4>;
using Triples = std::vector<std::vector<int64_t>>;

// One uniform colour per image, to tell which image a sample shows.
const std::map<int64_t, std::array<int, 3>> kColors = {{10, {200, 30, 30}},  {11, {30, 200, 30}},
                                                       {12, {30, 30, 200}},  {13, {120, 120, 40}},
                                                       {15, {40, 120, 120}}, {16, {220, 220, 220}}};

// (width, height) as image_data.json gives them.
std::pair<int64_t, int64_t> ImageSize(int64_t id) {
  return id == 13 ? std::pair<int64_t, int64_t>{12, 16} : std::pair<int64_t, int64_t>{16, 12};
}

fs::path WriteVg(const std::string& name, const vg_test::VgArrays& arrays = {}) {
  const fs::path root = kd::test::ScratchDir(name);
  vg_test::WriteH5(root / "VG-SGG-with-attri.h5", arrays.Datasets());
  kd::test::WriteText(root / "VG-SGG-dicts-with-attri.json", vg_test::kDictionary);
  kd::test::WriteText(root / "image_data.json", vg_test::kImageData);
  fs::create_directories(root / "VG_100K");
  for (const auto& [id, rgb] : kColors) {
    const auto [width, height] = ImageSize(id);
    torch::Tensor image = torch::empty({3, height, width}, torch::kUInt8);
    for (int c = 0; c < 3; ++c) image[c].fill_(rgb[c]);
    image_io::WriteJpeg(root / "VG_100K" / (std::to_string(id) + ".jpg"), image, 95);
  }
  return root;
}

std::shared_ptr<kd::Dataset> MakeVg(const fs::path& root, const std::string& extra = "") {
  return kd::test::Make<kd::Dataset>(
      kd::Kind::kDataset,
      "type = \"sgg_datasets::VG150\"\nroot = \"" + root.string() + "\"\n" + extra);
}

// The fixture's usual settings: one val image, images at their stored size.
const char kSmall[] = "num_val_images = 1\nmin_size = 0\n";

kd::TensorDict Sample(const kd::Dataset& dataset, int64_t index, uint64_t seed = 0) {
  kd::Rng rng(seed);
  return dataset.Get(index, rng);
}

// The image id a sample shows, from its colour.
int64_t ImageId(const kd::TensorDict& sample) {
  const torch::Tensor mean = sample.at("image").mean({1, 2}) * 255;
  for (const auto& [id, rgb] : kColors) {
    bool match = true;
    for (int c = 0; c < 3; ++c) match = match && std::abs(mean[c].item<float>() - rgb[c]) < 4;
    if (match) return id;
  }
  return -1;
}

std::vector<int64_t> Ids(const kd::Dataset& dataset) {
  std::vector<int64_t> ids;
  for (int64_t i = 0; i < dataset.Size(); ++i) ids.push_back(ImageId(Sample(dataset, i)));
  return ids;
}

void CheckBoxes(const torch::Tensor& boxes, const std::vector<Box>& expected) {
  INFO("boxes\n" << boxes);
  REQUIRE(boxes.scalar_type() == torch::kFloat);
  REQUIRE(boxes.sizes() == torch::IntArrayRef({static_cast<int64_t>(expected.size()), 4}));
  for (size_t b = 0; b < expected.size(); ++b) {
    for (int k = 0; k < 4; ++k) {
      CHECK(boxes[static_cast<int64_t>(b)][k].item<float>() ==
            Approx(expected[b][k]).epsilon(1e-6));
    }
  }
}

std::vector<int64_t> Values(const torch::Tensor& t) {
  const torch::Tensor flat = t.contiguous().view(-1);
  return {flat.data_ptr<int64_t>(), flat.data_ptr<int64_t>() + flat.numel()};
}

Triples Relations(const kd::TensorDict& sample) {
  const torch::Tensor& relations = sample.at("relations");
  REQUIRE(relations.scalar_type() == torch::kLong);
  REQUIRE(relations.dim() == 2);
  REQUIRE(relations.size(1) == 3);
  Triples triples;
  for (int64_t r = 0; r < relations.size(0); ++r) triples.push_back(Values(relations[r]));
  return triples;
}

}  // namespace

TEST_CASE("VG150 takes val from the first training images and train from the rest") {
  const fs::path root = WriteVg("vg150_splits");
  // Rows 0, 2 and 6 are training images with relations; row 0 becomes val.
  auto val = MakeVg(root, std::string(kSmall) + "split = \"val\"\n");
  CHECK(Ids(*val) == std::vector<int64_t>{10});
  auto train = MakeVg(root, kSmall);
  CHECK(Ids(*train) == std::vector<int64_t>{12, 16});
  auto test = MakeVg(root, std::string(kSmall) + "split = \"test\"\n");
  CHECK(Ids(*test) == std::vector<int64_t>{13});

  SECTION("filter_empty_rels = false keeps images without relations, never those without boxes") {
    const std::string keep = std::string(kSmall) + "filter_empty_rels = false\n";
    CHECK(Ids(*MakeVg(root, keep + "split = \"val\"\n")) == std::vector<int64_t>{10});
    CHECK(Ids(*MakeVg(root, keep)) == std::vector<int64_t>{11, 12, 16});
    CHECK(Ids(*MakeVg(root, keep + "split = \"test\"\n")) == std::vector<int64_t>{13, 15});
  }
  SECTION("max_images keeps a prefix of the split") {
    CHECK(Ids(*MakeVg(root, std::string(kSmall) + "max_images = 1\n")) == std::vector<int64_t>{12});
  }
  SECTION("filter_non_overlap drops the training relations whose boxes do not overlap") {
    CHECK(Ids(*MakeVg(root, std::string(kSmall) + "filter_non_overlap = true\n")) ==
          std::vector<int64_t>{16});
    CHECK(
        Ids(*MakeVg(root, std::string(kSmall) + "filter_non_overlap = true\nsplit = \"val\"\n")) ==
        std::vector<int64_t>{10});
  }
  SECTION("the default 5000 val images leave this small file no training image") {
    CHECK_THROWS_WITH(MakeVg(root), Catch::Contains("split: ") &&
                                        Catch::Contains("the train split has no image with boxes "
                                                        "and relations (val is the first "
                                                        "`num_val_images`"));
  }
}

TEST_CASE("VG150 converts boxes from centre and size at 1024 to corners in image pixels") {
  const fs::path root = WriteVg("vg150_boxes");
  // 16 x 12 images: 1024 is 16 pixels, a factor of 1/64.
  const kd::TensorDict val = Sample(*MakeVg(root, std::string(kSmall) + "split = \"val\"\n"), 0);
  CHECK(val.at("image").sizes() == torch::IntArrayRef({3, 12, 16}));
  CheckBoxes(val.at("boxes"), {{2, 2, 6, 4}, {11, 7, 13, 9}});
  CHECK(Values(val.at("box_labels")) == std::vector<int64_t>{0, 2});
  CHECK(Relations(val) == Triples{{0, 1, 2}});

  // Row 2: (101, 301, 51, 101) becomes x1 = trunc(75.5) = 75, y1 = trunc(250.5) = 250, x2 = 75 +
  // 51, y2 = 250 + 101, as the benchmark's integer arithmetic gives; box 5 is clipped at x = 15;
  // box 7 lies below the image and is dropped with its relation (7 -> 4) in training.
  const kd::TensorDict train = Sample(*MakeVg(root, kSmall), 0);
  CheckBoxes(train.at("boxes"), {{75 / 64.f, 250 / 64.f, 126 / 64.f, 351 / 64.f},
                                 {850 / 64.f, 500 / 64.f, 15, 700 / 64.f},
                                 {50 / 64.f, 250 / 64.f, 150 / 64.f, 350 / 64.f}});
  CHECK(Values(train.at("box_labels")) == std::vector<int64_t>{1, 3, 0});
  CHECK(Relations(train).size() == 2);

  // Row 6: relations name the image's own boxes (12 -> 13 becomes 0 -> 1).
  const kd::TensorDict second = Sample(*MakeVg(root, kSmall), 1);
  CheckBoxes(second.at("boxes"), {{4, 2, 12, 10}, {6, 4, 10, 8}});
  CHECK(Values(second.at("box_labels")) == std::vector<int64_t>{0, 0});
  CHECK(Relations(second) == Triples{{0, 1, 1}});

  // A 12 x 16 test image: the longer side is the height; box 10 lies right of the image and is
  // clipped to an empty box, which evaluation keeps.
  const kd::TensorDict test = Sample(*MakeVg(root, std::string(kSmall) + "split = \"test\"\n"), 0);
  CHECK(test.at("image").sizes() == torch::IntArrayRef({3, 16, 12}));
  CheckBoxes(test.at("boxes"), {{6, 6, 10, 10}, {3, 3, 5, 5}, {11, 50 / 64.f, 11, 150 / 64.f}});
  CHECK(Values(test.at("box_labels")) == std::vector<int64_t>{3, 0, 1});
  CHECK(Relations(test) == Triples{{1, 0, 5}});
}

TEST_CASE("VG150 keeps the fractions of boxes stored as floating point") {
  vg_test::VgArrays arrays;
  arrays.box_type = H5T_IEEE_F32LE;
  const kd::TensorDict train = Sample(*MakeVg(WriteVg("vg150_float_boxes", arrays), kSmall), 0);
  CheckBoxes(train.at("boxes").narrow(0, 0, 1),
             {{75.5f / 64, 250.5f / 64, 126.5f / 64, 351.5f / 64}});
}

TEST_CASE("VG150 resizes as the benchmark's Resize(min_size, max_size), boxes alike") {
  const fs::path root = WriteVg("vg150_resize");
  SECTION("the shorter side becomes min_size") {
    const kd::TensorDict sample =
        Sample(*MakeVg(root, "num_val_images = 1\nmin_size = 24\nmax_size = 40\n"), 1);
    CHECK(sample.at("image").sizes() == torch::IntArrayRef({3, 24, 32}));
    CHECK(ImageId(sample) == 16);
    CheckBoxes(sample.at("boxes"), {{8, 4, 24, 20}, {12, 8, 20, 16}});
  }
  SECTION("unless the longer side would exceed max_size") {
    // 16 / 12 * 24 = 32 > 30: the shorter side becomes round(30 * 12 / 16) = round(22.5) = 22
    // (halves to even), the longer int(22 * 16 / 12) = 29.
    const kd::TensorDict sample =
        Sample(*MakeVg(root, "num_val_images = 1\nmin_size = 24\nmax_size = 30\n"), 1);
    CHECK(sample.at("image").sizes() == torch::IntArrayRef({3, 22, 29}));
    const float x = 29.f / 16, y = 22.f / 12;
    CheckBoxes(sample.at("boxes"), {{4 * x, 2 * y, 12 * x, 10 * y}, {6 * x, 4 * y, 10 * x, 8 * y}});
  }
  SECTION("the defaults 600 and 1000 on a portrait image") {
    const kd::TensorDict sample = Sample(*MakeVg(root, "split = \"test\"\n"), 0);
    CHECK(sample.at("image").sizes() == torch::IntArrayRef({3, 800, 600}));
    CHECK(ImageId(sample) == 13);
    CheckBoxes(
        sample.at("boxes"),
        {{300, 300, 500, 500}, {150, 150, 250, 250}, {550, 50 / 64.f * 50, 550, 150 / 64.f * 50}});
  }
}

TEST_CASE("VG150 draws one predicate per (subject, object) pair of a training image") {
  const fs::path root = WriteVg("vg150_duplicates");
  // Row 2 annotates 4 -> 5 with predicates 2, 3, 2 and 5 -> 4 with 1.
  auto train = MakeVg(root, kSmall);
  int twos = 0;
  const int draws = 300;
  for (int seed = 0; seed < draws; ++seed) {
    const Triples relations = Relations(Sample(*train, 0, static_cast<uint64_t>(seed)));
    REQUIRE(relations.size() == 2);
    CHECK(relations[0][0] == 0);
    CHECK(relations[0][1] == 1);
    CHECK((relations[0][2] == 2 || relations[0][2] == 3));
    CHECK(relations[1] == std::vector<int64_t>{1, 0, 1});
    twos += relations[0][2] == 2 ? 1 : 0;
  }
  // Predicate 2 is annotated twice: drawn 2 times in 3.
  CHECK(twos > draws / 2);
  CHECK(twos < draws * 5 / 6);
  CHECK(Relations(Sample(*train, 0, 7)) == Relations(Sample(*train, 0, 7)));

  auto all = MakeVg(root, std::string(kSmall) + "filter_duplicate_rels = false\n");
  CHECK(Relations(Sample(*all, 0)) == Triples{{0, 1, 2}, {0, 1, 3}, {1, 0, 1}, {0, 1, 2}});
}

TEST_CASE("VG150 reports the names and the split's predicate counts") {
  const fs::path root = WriteVg("vg150_info");
  auto train = MakeVg(root, kSmall);
  const kd::DatasetInfo info = train->Info();
  CHECK(info.task == "sgg");
  CHECK(info.class_names == std::vector<std::string>{"cat", "tree", "dog", "man"});
  CHECK(info.vocabularies.at("sgg.predicates") ==
        std::vector<std::string>{"__background__", "has", "on", "of", "wearing", "near"});
  const torch::Tensor counts = info.statistics.at(scene_graph::kPredicateCounts);
  REQUIRE(counts.sizes() == torch::IntArrayRef({4, 4, 6}));
  REQUIRE(counts.scalar_type() == torch::kLong);
  // Row 2 (classes 1, 3, 0, 2): 4 -> 5 twice as "on" and once as "of", 5 -> 4 "has", 7 -> 4
  // "wearing" (every annotation counts, duplicates and the box outside the image too); boxes 4
  // and 6 overlap, a background pair each way. Row 6 (classes 0, 0): 12 -> 13 "has"; the two boxes
  // overlap, so both ordered pairs count as background too, related or not (the benchmark's
  // box_filter).
  CHECK(counts[1][3][2].item<int64_t>() == 2);
  CHECK(counts[1][3][3].item<int64_t>() == 1);
  CHECK(counts[3][1][1].item<int64_t>() == 1);
  CHECK(counts[2][1][4].item<int64_t>() == 1);
  CHECK(counts[1][0][0].item<int64_t>() == 1);
  CHECK(counts[0][1][0].item<int64_t>() == 1);
  CHECK(counts[0][0][1].item<int64_t>() == 1);
  CHECK(counts[0][0][0].item<int64_t>() == 2);
  CHECK(counts.sum().item<int64_t>() == 10);

  // Row 0: no two boxes overlap, so every ordered pair is a background pair.
  const torch::Tensor val = MakeVg(root, std::string(kSmall) + "split = \"val\"\n")
                                ->Info()
                                .statistics.at(scene_graph::kPredicateCounts);
  CHECK(val[0][2][2].item<int64_t>() == 1);
  CHECK(val[0][2][0].item<int64_t>() == 1);
  CHECK(val[2][0][0].item<int64_t>() == 1);
  CHECK(val.sum().item<int64_t>() == 3);
}

TEST_CASE("VG150 pads samples of different sizes into one batch") {
  const fs::path root = WriteVg("vg150_collate");
  auto test = MakeVg(root, std::string(kSmall) + "split = \"test\"\nfilter_empty_rels = false\n");
  REQUIRE(test->Size() == 2);
  const kd::TensorDict batch = test->Collate({Sample(*test, 0), Sample(*test, 1)});
  CHECK(batch.at("image").sizes() == torch::IntArrayRef({2, 3, 16, 16}));
  CHECK(batch.at("boxes").sizes() == torch::IntArrayRef({2, 3, 4}));
  CHECK(Values(batch.at("box_labels")) == std::vector<int64_t>{3, 0, 1, 2, -1, -1});
  CHECK(Values(batch.at("num_boxes")) == std::vector<int64_t>{3, 1});
  CHECK(batch.at("relations").sizes() == torch::IntArrayRef({2, 1, 3}));
  CHECK(Values(batch.at("num_relations")) == std::vector<int64_t>{1, 0});
  CHECK(Values(batch.at("image_size")) == std::vector<int64_t>{16, 12, 12, 16});
}

TEST_CASE("VG150 applies photometric transforms and refuses geometric ones") {
  const fs::path root = WriteVg("vg150_transforms");
  auto normalized =
      MakeVg(root, std::string(kSmall) +
                       "transforms = [{ type = \"transforms::Normalize\", mean = [0.5, 0.5, 0.5], "
                       "std = [0.5, 0.5, 0.5] }]\n");
  const kd::TensorDict sample = Sample(*normalized, 1);
  CHECK(sample.at("image")[0].mean().item<float>() == Approx(220 / 127.5 - 1).margin(0.03));
  CheckBoxes(sample.at("boxes"), {{4, 2, 12, 10}, {6, 4, 10, 8}});

  auto resized = MakeVg(
      root, std::string(kSmall) + "transforms = [{ type = \"transforms::Resize\", size = [8] }]\n");
  CHECK_THROWS_WITH(Sample(*resized, 0),
                    Catch::Contains("sgg_datasets::VG150: sample 0 (image 12): the transforms "
                                    "changed the image") &&
                        Catch::Contains("boxes do not follow geometric transforms"));
  CHECK_THROWS_WITH(Sample(*resized, 2), Catch::Contains("sample 2 is outside 0..1"));
}

TEST_CASE("VG150 names the file, the dataset, the row and the image of what is wrong") {
  const std::string h5 = "VG-SGG-with-attri.h5";
  SECTION("a missing file") {
    const fs::path root = WriteVg("vg150_no_h5");
    fs::remove(root / h5);
    CHECK_THROWS_WITH(MakeVg(root, kSmall), Catch::Contains("h5_file: " + (root / h5).string() +
                                                            ": not found (the "
                                                            "benchmark's VG-SGG-with-attri.h5"));
    CHECK_THROWS_WITH(
        MakeVg(root / "nowhere", kSmall),
        Catch::Contains("root: " + (root / "nowhere").string() + ": no such directory"));
  }
  SECTION("a missing dataset") {
    const fs::path root = WriteVg("vg150_no_predicates");
    std::vector<vg_test::H5Dataset> datasets = vg_test::VgArrays().Datasets();
    datasets.pop_back();
    vg_test::WriteH5(root / h5, datasets);
    CHECK_THROWS_WITH(MakeVg(root, kSmall),
                      Catch::Contains((root / h5).string() + ": no dataset \"predicates\"; the "
                                                             "file is damaged or is not the "
                                                             "Scene-Graph-Benchmark's"));
  }
  SECTION("a relation naming a box of another image") {
    vg_test::VgArrays arrays;
    arrays.relationships[15] = 2;
    const fs::path root = WriteVg("vg150_bad_relation", arrays);
    CHECK_THROWS_WITH(MakeVg(root, kSmall),
                      Catch::Contains("dataset \"relationships\": row 7 (image 6) names box 2 as "
                                      "its object, which is not one of the image's boxes 12..13"));
  }
  SECTION("a box range outside the file") {
    vg_test::VgArrays arrays;
    arrays.last_box[6] = 14;
    CHECK_THROWS_WITH(MakeVg(WriteVg("vg150_bad_range", arrays), kSmall),
                      Catch::Contains("dataset \"img_to_first_box\": image 6 has rows 12 to 14 "
                                      "(with \"img_to_last_box\"), which is neither a range inside "
                                      "the 14 rows of \"labels\""));
  }
  SECTION("a wrong shape") {
    vg_test::VgArrays arrays;
    std::vector<vg_test::H5Dataset> datasets = arrays.Datasets();
    datasets[7].dims = {14, 3};
    datasets[7].values.resize(42);
    const fs::path root = WriteVg("vg150_bad_shape");
    vg_test::WriteH5(root / h5, datasets);
    CHECK_THROWS_WITH(MakeVg(root, kSmall),
                      Catch::Contains("dataset \"boxes_1024\": must have shape [N, 4]; it has "
                                      "[14, 3]"));
  }
  SECTION("a wrong type") {
    std::vector<vg_test::H5Dataset> datasets = vg_test::VgArrays().Datasets();
    datasets[5].type = H5T_IEEE_F64LE;
    const fs::path root = WriteVg("vg150_bad_type");
    vg_test::WriteH5(root / h5, datasets);
    CHECK_THROWS_WITH(MakeVg(root, kSmall),
                      Catch::Contains("dataset \"labels\": must hold integers"));
  }
  SECTION("a label outside the dictionary's classes") {
    vg_test::VgArrays arrays;
    arrays.labels[3] = 5;
    CHECK_THROWS_WITH(MakeVg(WriteVg("vg150_bad_label", arrays), kSmall),
                      Catch::Contains("dataset \"labels\": row 3 (image 1) holds 5, outside the "
                                      "classes 1..4 of the dictionary file"));
  }
  SECTION("an empty box") {
    vg_test::VgArrays arrays;
    arrays.boxes[4 * 9 + 2] = 0;
    CHECK_THROWS_WITH(MakeVg(WriteVg("vg150_empty_box", arrays), kSmall),
                      Catch::Contains("dataset \"boxes_1024\": row 9 (image 3) is (256, 256, 0, "
                                      "128)"));
  }
  SECTION("a file that is not HDF5") {
    const fs::path root = WriteVg("vg150_not_h5");
    kd::test::WriteText(root / h5, "{\"split\": [0, 2]}\n");
    CHECK_THROWS_WITH(MakeVg(root, kSmall),
                      Catch::Contains((root / h5).string() + ": not an HDF5 file"));
  }
  SECTION("image_data.json from another release") {
    const fs::path root = WriteVg("vg150_image_count");
    kd::test::WriteText(root / "image_data.json",
                        "[{\"width\": 16, \"height\": 12, \"image_id\": 10}]");
    CHECK_THROWS_WITH(
        MakeVg(root, kSmall),
        Catch::Contains("image_file: " + (root / "image_data.json").string() + " lists 1 images") &&
            Catch::Contains("has 7 rows in \"split\""));
  }
  SECTION("a missing image") {
    const fs::path root = WriteVg("vg150_no_image");
    fs::remove(root / "VG_100K" / "16.jpg");
    CHECK_THROWS_WITH(MakeVg(root, kSmall),
                      Catch::Contains("image_dir: " + (root / "VG_100K" / "16.jpg").string() +
                                      ": not found; `image_dir` must hold"));
    // Another split does not need it.
    CHECK(MakeVg(root, std::string(kSmall) + "split = \"val\"\n")->Size() == 1);
  }
  SECTION("a dictionary whose indices are not 1..K") {
    const fs::path root = WriteVg("vg150_bad_dict");
    kd::test::WriteText(root / "VG-SGG-dicts-with-attri.json",
                        "{\"label_to_idx\": {\"cat\": 1, \"dog\": 7},\n"
                        " \"predicate_to_idx\": {\"on\": 1}}");
    CHECK_THROWS_WITH(
        MakeVg(root, kSmall),
        Catch::Contains("dict_file: " + (root / "VG-SGG-dicts-with-attri.json").string() +
                        ":1:36: \"label_to_idx\": \"dog\" has index 7; its 2 names "
                        "must have the indices 1..2"));
  }
}
