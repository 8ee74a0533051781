// A plugin file libkd_test_misnamed.so whose manifest calls itself something else.
#include "test_plugin_common.h"

namespace {

void Register(kd::Registrar& r) {
  r.Add(kd::Kind::kLoss, "Widget", "test component", kd::Schema(), kd_test::MeanLogitFactory());
}

}  // namespace

KD_PLUGIN_MANIFEST_DEFINE_("something_else", "0.1.0", "misnamed test plugin", Register);
