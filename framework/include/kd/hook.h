// Hooks: components that observe training (see kd::TrainingObserver) without adding losses.
#pragma once

#include "kd/component.h"
#include "kd/training.h"

namespace kd {

class Hook : public Component, public TrainingObserver {};

}  // namespace kd
