// A plugin whose register function adds two components and then throws: the host must keep none.
#include <stdexcept>

#include "test_plugin_common.h"

namespace {

void Register(kd::Registrar& r) {
  r.Add(kd::Kind::kLoss, "First", "test component", kd::Schema(), kd_test::MeanLogitFactory());
  r.Add(kd::Kind::kLoss, "Second", "test component", kd::Schema(), kd_test::MeanLogitFactory());
  throw std::runtime_error("register failed on purpose after two components");
}

}  // namespace

KD_PLUGIN("0.1.0", "test plugin whose register throws", Register);
