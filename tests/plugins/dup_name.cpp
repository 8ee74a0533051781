// A plugin that registers the same loss name twice.
#include "test_plugin_common.h"

namespace {

void Register(kd::Registrar& r) {
  r.Add(kd::Kind::kLoss, "Widget", "first", kd::Schema(), kd_test::MeanLogitFactory());
  r.Add(kd::Kind::kLoss, "Unique", "fine on its own", kd::Schema(), kd_test::MeanLogitFactory());
  r.Add(kd::Kind::kLoss, "Widget", "second", kd::Schema(), kd_test::MeanLogitFactory());
}

}  // namespace

KD_PLUGIN("0.1.0", "test plugin with a duplicate name", Register);
