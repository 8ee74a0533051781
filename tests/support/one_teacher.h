// A StageAccess that hands every distiller built with it the same teacher model, so that a test
// builds distillers without a pipeline of stages.
#pragma once

#include <memory>
#include <utility>

#include "kd/model.h"
#include "kd/registry.h"

namespace kd::test {

class OneTeacher : public StageAccess {
 public:
  explicit OneTeacher(std::shared_ptr<Model> teacher) : teacher_(std::move(teacher)) {}
  std::shared_ptr<Model> LoadTeacher(const Options&, const BuildContext&) const override {
    return teacher_;
  }

 private:
  std::shared_ptr<Model> teacher_;
};

}  // namespace kd::test
