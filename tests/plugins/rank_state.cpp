// A distiller that adds up, in a buffer, the inputs its own process has trained on: state that
// differs between the processes of a data-parallel run, which run.dist_check_state must name.
#include <torch/torch.h>

#include "kd/distiller.h"
#include "kd/plugin.h"

namespace {

class InputSum : public kd::Distiller {
 public:
  InputSum() { sum_ = register_buffer("input_sum", torch::zeros({}, torch::kDouble)); }

  kd::TensorDict Forward(const kd::TensorDict& batch, const kd::TensorDict&,
                         const kd::StepInfo&) override {
    sum_ += batch.at("image").sum().to(torch::kDouble);
    return {};
  }

  void MoveTeachers(const torch::Device&) override {}

 private:
  torch::Tensor sum_;
};

void Register(kd::Registrar& r) {
  r.Add(kd::Kind::kDistiller, "InputSum",
        "adds up its own process's input images in the buffer `input_sum`; adds no term (test "
        "component)",
        kd::Schema(),
        [](const kd::Options&, const kd::BuildContext&) { return std::make_shared<InputSum>(); });
}

}  // namespace

KD_PLUGIN("0.1.0", "test distiller with per-process state", Register);
