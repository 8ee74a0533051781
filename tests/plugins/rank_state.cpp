// A distiller that adds up, in a buffer, the input images its process has trained on: state that
// differs between the processes of a data-parallel run, which run.dist_check_state must name;
// with `all_reduce` the step's sum is first summed over the processes (kd::dist), so every
// process holds the sum over all of them.
#include <torch/torch.h>

#include "kd/dist.h"
#include "kd/distiller.h"
#include "kd/plugin.h"

namespace {

class InputSum : public kd::Distiller {
 public:
  explicit InputSum(bool all_reduce) : all_reduce_(all_reduce) {
    sum_ = register_buffer("input_sum", torch::zeros({}, torch::kDouble));
    processes_ = register_buffer("processes", torch::full({}, kd::dist::WorldSize(), torch::kLong));
  }

  kd::TensorDict Forward(const kd::TensorDict& batch, const kd::TensorDict&,
                         const kd::StepInfo&) override {
    torch::Tensor step = batch.at("image").sum().to(torch::kDouble);
    if (all_reduce_) kd::dist::AllReduceSum(step);
    sum_ += step;
    return {};
  }

  void MoveTeachers(const torch::Device&) override {}

 private:
  bool all_reduce_;
  torch::Tensor sum_, processes_;
};

void Register(kd::Registrar& r) {
  r.Add(kd::Kind::kDistiller, "InputSum",
        "adds up its process's input images in the buffer `input_sum` (the number of processes "
        "in `processes`); adds no term (test component)",
        kd::Schema().Bool("all_reduce", false,
                          "sum each step's images over the processes first (kd::dist)"),
        [](const kd::Options& options, const kd::BuildContext&) {
          return std::make_shared<InputSum>(options.Bool("all_reduce"));
        });
}

}  // namespace

KD_PLUGIN("0.1.0", "test distiller with per-process state", Register);
