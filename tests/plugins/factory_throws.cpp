// Components whose factories fail in the ways a buggy plugin can: throwing, returning null, or
// returning an object of the wrong kind.
#include <stdexcept>

#include "test_plugin_common.h"

namespace {

class NotALoss : public kd::Metric {
 public:
  void Reset() override {}
  void Update(const kd::TensorDict&, const kd::TensorDict&) override {}
  std::vector<kd::MetricValue> Compute() const override { return {}; }
};

void Register(kd::Registrar& r) {
  r.Add(kd::Kind::kLoss, "Exploding", "factory throws", kd::Schema(),
        [](const kd::Options&, const kd::BuildContext&) -> std::shared_ptr<kd::Component> {
          throw std::runtime_error("exploded on purpose");
        });
  r.Add(kd::Kind::kLoss, "Null", "factory returns null", kd::Schema(),
        [](const kd::Options&, const kd::BuildContext&) -> std::shared_ptr<kd::Component> {
          return nullptr;
        });
  r.Add(kd::Kind::kLoss, "WrongKind", "factory returns a metric", kd::Schema(),
        [](const kd::Options&, const kd::BuildContext&) { return std::make_shared<NotALoss>(); });
}

}  // namespace

KD_PLUGIN("0.1.0", "test plugin with failing factories", Register);
