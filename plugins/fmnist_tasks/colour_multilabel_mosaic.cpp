// fmnist_tasks::ColourMultiLabelMosaic: multi-label classification over item class x colour tint
// on RGB canvases. The items and cells are MultiLabelMosaic's (the same outfits, the same
// compositions for the same seed); each sample also draws a palette, a dominant tint its items
// mostly wear, so labels co-occur by outfit and by colour: 40 labels in 16 communities.
#include <torch/torch.h>

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kd/error.h"
#include "kd/transform_list.h"
#include "mosaic.h"

namespace fmnist_tasks {

namespace {

// Label index of (tint, class): tint-major, so labels 0-9 are the red items.
int64_t ColourLabel(int64_t tint, int64_t cls) { return tint * kNumClasses + cls; }

std::vector<std::string> ColourLabelNames() {
  std::vector<std::string> names;
  for (const NamedTint& tint : Tints()) {
    for (const std::string& cls : ClassNames()) names.push_back(absl::StrCat(tint.name, " ", cls));
  }
  return names;
}

class ColourMultiLabelMosaic : public kd::Dataset {
 public:
  ColourMultiLabelMosaic(const kd::Options& options, const kd::BuildContext& ctx)
      : composer_(options),
        tint_purity_(options.Float("tint_purity")),
        names_(ColourLabelNames()),
        transforms_(options, ctx) {}

  int64_t Size() const override { return composer_.options().num_samples; }

  kd::TensorDict Get(int64_t index, kd::Rng& rng) const override {
    if (index < 0 || index >= Size()) {
      throw kd::Error(absl::OutOfRangeError(
          absl::StrCat("ColourMultiLabelMosaic: sample ", index, " is outside 0..", Size() - 1)));
    }
    const Composition composition = composer_.Compose(index);
    // The colours come from their own stream, so the items stay MultiLabelMosaic's. The order of
    // the draws defines the data; changing it changes every dataset.
    kd::Rng colour(kd::Rng::Derive({static_cast<uint64_t>(composer_.options().seed),
                                    static_cast<uint64_t>(index), kColourStream}));
    const int64_t num_tints = static_cast<int64_t>(Tints().size());
    const int64_t palette = colour.UniformInt(0, num_tints - 1);
    std::vector<Tint> tints;
    torch::Tensor labels = torch::zeros({num_tints * kNumClasses}, torch::kFloat);
    float* hot = labels.data_ptr<float>();
    for (const PlacedItem& item : composition.items) {
      const int64_t tint =
          colour.Bernoulli(tint_purity_) ? palette : colour.UniformInt(0, num_tints - 1);
      tints.push_back(Tints()[tint].rgb);
      hot[ColourLabel(tint, item.label)] = 1.0f;
    }
    kd::TensorDict sample{{"image", composer_.RenderTinted(composition, tints)},
                          {"labels", labels}};
    return transforms_.Apply(std::move(sample), rng);
  }

  kd::DatasetInfo Info() const override { return {"multilabel", names_}; }

 private:
  static constexpr uint64_t kColourStream = 1;

  MosaicComposer composer_;
  double tint_purity_;
  std::vector<std::string> names_;
  kd::TransformList transforms_;
};

}  // namespace

void RegisterColourMultiLabelMosaic(kd::Registrar& registrar) {
  registrar.Add(
      kd::Kind::kDataset, "ColourMultiLabelMosaic",
      "multi-label task over 40 labels (10 item classes x 4 tints: red, green, blue, yellow) on "
      "RGB mosaics, co-occurring by outfit and by palette; keys image [3,S,S], labels [40]",
      MosaicSchema()
          .Float(
              "tint_purity", 0.8,
              "probability that an item wears the sample's palette tint rather than a uniform one")
          .Min(0)
          .Max(1),
      [](const kd::Options& o, const kd::BuildContext& ctx) {
        return std::make_shared<ColourMultiLabelMosaic>(o, ctx);
      });
}

}  // namespace fmnist_tasks
