// What the tap-based distillers of the `distillers` plugin share: the options (a teacher, the
// student's and the teacher's taps, a weight) and a base class that asks the stage's student and
// its teacher for those taps when it is built (kd/model.h) and hands each step the pairs.
#pragma once

#include <torch/torch.h>

#include <memory>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kd/distiller.h"
#include "kd/error.h"
#include "kd/model.h"
#include "kd/registry.h"

namespace distillers {

// The options every tap-pair distiller takes; `taps_doc` documents student_taps.
inline kd::Schema TapPairSchema(double weight, const std::string& weight_doc,
                                const std::string& taps_doc) {
  return kd::Schema()
      .Table("teacher", kd::TeacherSchema(), "the teacher")
      .Float("weight", weight, weight_doc)
      .Required("student_taps", kd::OptionType::kStringList, taps_doc)
      .StringList("teacher_taps", {},
                  "the teacher's taps, one per student tap; empty: the same names");
}

// Student and teacher features of one batch, pair by pair.
struct FeaturePairs {
  std::vector<torch::Tensor> student;
  std::vector<torch::Tensor> teacher;
};

// A distiller on pairs of student and teacher taps: it asks the stage's student and its teacher
// for the taps when it is built; `example_tap` is the tap its messages suggest.
class TapPairDistiller : public kd::Distiller {
 public:
  void MoveTeachers(const torch::Device& device) override { teacher_->to(device); }

 protected:
  TapPairDistiller(const kd::Options& options, const kd::BuildContext& ctx, std::string name,
                   const std::string& example_tap)
      : name_(std::move(name)),
        student_taps_(options.StringList("student_taps")),
        teacher_taps_(options.StringList("teacher_taps")),
        weight_(options.Float("weight")) {
    if (student_taps_.empty()) {
      options.Fail("student_taps", absl::StrCat("name at least one tap, e.g. student_taps = [\"",
                                                example_tap, "\"]"));
    }
    if (teacher_taps_.empty()) teacher_taps_ = student_taps_;
    if (teacher_taps_.size() != student_taps_.size()) {
      options.Fail("teacher_taps",
                   absl::StrCat("give one teacher tap per student tap: ", student_taps_.size(),
                                " student taps, ", teacher_taps_.size(), " teacher taps"));
    }
    if (ctx.student() == nullptr) {
      options.Fail("student_taps",
                   "a feature distiller is built inside a training stage, which gives it the "
                   "student to take taps from");
    }
    Guard(options, "student_taps", [&] { ctx.student()->SetTaps(student_taps_); });
    teacher_ = ctx.LoadTeacher(options.Sub("teacher"));
    Guard(options, "teacher_taps", [&] { teacher_->SetTaps(teacher_taps_); });
    for (size_t i = 0; i < student_taps_.size(); ++i) {
      Guard(options, "student_taps",
            [&] { student_channels_.push_back(ctx.student()->TapChannels(student_taps_[i])); });
      Guard(options, "teacher_taps",
            [&] { teacher_channels_.push_back(teacher_->TapChannels(teacher_taps_[i])); });
    }
  }

  // When the student scored a sample of its inputs (a scene-graph model's `rel_pairs` in
  // training), the teacher scores the same ones, so that per-pair taps have the same rows.
  FeaturePairs Features(const kd::TensorDict& batch, const kd::TensorDict& student_outputs) const {
    FeaturePairs pairs;
    for (const std::string& tap : student_taps_) pairs.student.push_back(Tap(student_outputs, tap));
    torch::NoGradGuard no_grad;
    kd::TensorDict teacher_batch = batch;
    if (const torch::Tensor* scored = student_outputs.Find("rel_pairs")) {
      teacher_batch.Set("rel_pairs", *scored);
    }
    const kd::TensorDict teacher_outputs = teacher_->Forward(teacher_batch);
    for (const std::string& tap : teacher_taps_) {
      pairs.teacher.push_back(Tap(teacher_outputs, tap).detach());
    }
    return pairs;
  }

  // Throws unless pair i's taps are [B, C, h, w] maps of the same batch and resolution.
  void CheckDense(size_t i, const torch::Tensor& student, const torch::Tensor& teacher) const {
    for (const auto& [who, tap, x] : {std::make_tuple("student", student_taps_[i], student),
                                      std::make_tuple("teacher", teacher_taps_[i], teacher)}) {
      if (x.dim() != 4) {
        throw kd::Error(absl::InvalidArgumentError(absl::StrCat(
            name_, ": the ", who, "'s tap '", tap, "' has shape ", c10::str(x.sizes()),
            "; this distiller relates the pixels of dense [B, C, h, w] feature maps (a "
            "segmentation head's or a backbone's tap, not a pooled or flattened one)")));
      }
    }
    if (student.size(0) != teacher.size(0) || student.size(2) != teacher.size(2) ||
        student.size(3) != teacher.size(3)) {
      throw kd::Error(absl::InvalidArgumentError(absl::StrCat(
          name_, ": the student's tap '", student_taps_[i], "' has shape ",
          c10::str(student.sizes()), " and the teacher's '", teacher_taps_[i], "' ",
          c10::str(teacher.sizes()),
          "; the pixels pair only at the same batch and resolution (pick taps of equal stride; "
          "channels may differ)")));
    }
  }

  double weight() const { return weight_; }
  size_t pairs() const { return student_taps_.size(); }
  int64_t student_channels(size_t i) const { return student_channels_[i]; }
  int64_t teacher_channels(size_t i) const { return teacher_channels_[i]; }
  const std::string& name() const { return name_; }

 private:
  // Runs `f`, turning its kd::Error into one located at the option `key`.
  template <typename Fn>
  void Guard(const kd::Options& options, const std::string& key, Fn&& f) const {
    try {
      f();
    } catch (const kd::Error& e) {
      options.Fail(key, absl::StrCat(name_, ": ", e.what()));
    }
  }

  torch::Tensor Tap(const kd::TensorDict& outputs, const std::string& tap) const {
    const std::string key = kd::TapKey(tap);
    if (!outputs.contains(key)) {
      throw kd::Error(absl::FailedPreconditionError(
          absl::StrCat(name_, ": the model's outputs have no '", key,
                       "' although the tap was requested; its model does not return the taps "
                       "its backbone records (a model forwarding SetTaps must also pass the "
                       "backbone's \"tap.*\" outputs on)")));
    }
    return outputs.at(key);
  }

  std::string name_;
  std::vector<std::string> student_taps_;
  std::vector<std::string> teacher_taps_;
  std::vector<int64_t> student_channels_;
  std::vector<int64_t> teacher_channels_;
  std::shared_ptr<kd::Model> teacher_;
  double weight_;
};

}  // namespace distillers
