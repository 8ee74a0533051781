#include <torch/torch.h>

#include "host/builtins.h"
#include "kd/abi.h"
#include "kd/model.h"

namespace kd::host {

namespace {

// The generic task model: a backbone's named features feed a head; the features stay in the
// outputs so that distillers can use them ("feat.layer3", and the taps asked for, "tap.layer3.1").
class BackboneHeadModel : public Model {
 public:
  BackboneHeadModel(const Options& options, const BuildContext& ctx)
      : input_key_(options.String("input")) {
    backbone_ =
        register_module("backbone", ctx.Build<Backbone>(Kind::kBackbone, options.Sub("backbone")));
    head_ = register_module(
        "head", ctx.WithBackbone(backbone_.get()).Build<Head>(Kind::kHead, options.Sub("head")));
  }

  TensorDict Forward(const TensorDict& batch) override {
    TensorDict features = backbone_->Forward(batch.at(input_key_));
    TensorDict outputs = head_->Forward(features, batch);
    for (const auto& [key, value] : features) {
      if (!outputs.contains(key)) outputs.Set(key, value);
    }
    return outputs;
  }

  // The backbone's feature taps.
  std::vector<std::string> TapNames() const override { return backbone_->TapNames(); }
  int64_t TapChannels(const std::string& name) const override {
    return backbone_->TapChannels(name);
  }
  void SetTaps(const std::vector<std::string>& names) override { backbone_->SetTaps(names); }

 private:
  std::string input_key_;
  std::shared_ptr<Backbone> backbone_;
  std::shared_ptr<Head> head_;
};

}  // namespace

void RegisterBuiltinModels(Registrar& registrar) {
  registrar.Add(Kind::kModel, "BackboneHead",
                "backbone features -> head outputs; features are kept in the outputs",
                Schema()
                    .Nested("backbone", Kind::kBackbone, "the feature extractor")
                    .Nested("head", Kind::kHead, "the task head on the backbone's features")
                    .String("input", "image", "batch key the backbone reads"),
                [](const Options& o, const BuildContext& ctx) {
                  return std::make_shared<BackboneHeadModel>(o, ctx);
                });
}

absl::Status RegisterBuiltins(Registry& registry) {
  Registrar registrar("core");
  RegisterBuiltinModels(registrar);
  RegisterBuiltinOptim(registrar);
  PluginRecord record{"core", KD_VERSION_STRING,
                      "built-in components: generic model, optimizers, schedules", "<built in>",
                      FormatAbiStamp(HostAbiStamp())};
  return registry.Commit(std::move(record), registrar.TakeComponents());
}

}  // namespace kd::host
