// A plugin that registers hundreds of components: Loss000 ... Loss599, each scaling the mean of
// the logits by its own number, so a test can tell that the right one was built.
#include <absl/strings/str_format.h>

#include "test_plugin_common.h"

namespace {

constexpr int kCount = 600;

class ScaledMeanLoss : public kd::Loss {
 public:
  explicit ScaledMeanLoss(double scale) : scale_(scale) {}
  kd::TensorDict Forward(const kd::TensorDict& outputs, const kd::TensorDict&) override {
    return {{"loss.scaled", outputs.at("logits").mean() * scale_}};
  }

 private:
  double scale_;
};

void Register(kd::Registrar& r) {
  for (int i = 0; i < kCount; ++i) {
    r.Add(kd::Kind::kLoss, absl::StrFormat("Loss%03d", i), "the mean of the logits times i",
          kd::Schema(), [i](const kd::Options&, const kd::BuildContext&) {
            return std::make_shared<ScaledMeanLoss>(i);
          });
  }
}

}  // namespace

KD_PLUGIN("0.1.0", "test plugin with many components", Register);
