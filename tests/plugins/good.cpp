// A well-behaved test plugin: one loss named Widget.
#include "test_plugin_common.h"

namespace {

void Register(kd::Registrar& r) {
  r.Add(kd::Kind::kLoss, "Widget", "mean of the logits (test component)",
        kd::Schema().Float("scale", 1.0, "unused scale"), kd_test::MeanLogitFactory());
}

}  // namespace

#ifdef KD_PLUGIN_NAME_OVERRIDE
KD_PLUGIN_MANIFEST_DEFINE_(KD_PLUGIN_NAME_OVERRIDE, "0.2.0", "shadow copy of test_good", Register);
#else
KD_PLUGIN("0.1.0", "well-behaved test plugin", Register);
#endif
