// Component kinds and the common base of everything a plugin registers.
#pragma once

#include <array>
#include <optional>

#include "absl/strings/string_view.h"

namespace kd {

enum class Kind {
  kDataset,
  kTransform,
  kBackbone,
  kHead,
  kModel,
  kLoss,
  kMetric,
  kDistiller,
  kProducer,
  kOptimizer,
  kScheduler,
  kHook,
};

inline constexpr std::array<Kind, 12> kAllKinds = {
    Kind::kDataset,  Kind::kTransform, Kind::kBackbone,  Kind::kHead,
    Kind::kModel,    Kind::kLoss,      Kind::kMetric,    Kind::kDistiller,
    Kind::kProducer, Kind::kOptimizer, Kind::kScheduler, Kind::kHook};

// "dataset", "backbone", ... as used in messages and `kdhost plugins`.
absl::string_view KindName(Kind kind);
std::optional<Kind> KindFromName(absl::string_view name);

// Base of every registered component. Each kind has its own interface deriving from this one
// (kd::Dataset, kd::Model, kd::Loss, ...); the registry checks that a factory's product
// implements the interface of the kind it was registered under.
class Component {
 public:
  virtual ~Component();
};

}  // namespace kd
