// A second well-behaved test plugin whose Widget makes the bare name ambiguous.
#include "test_plugin_common.h"

namespace {

void Register(kd::Registrar& r) {
  r.Add(kd::Kind::kLoss, "Widget", "mean of the logits (test component)", kd::Schema(),
        kd_test::MeanLogitFactory());
  r.Add(kd::Kind::kLoss, "Gadget", "mean of the logits (test component)", kd::Schema(),
        kd_test::MeanLogitFactory());
}

}  // namespace

KD_PLUGIN("0.1.0", "second test plugin", Register);
