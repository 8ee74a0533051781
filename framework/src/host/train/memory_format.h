// `train.channels_last`: convolutions on CUDA run fastest (tensor cores with AMP) on NHWC
// tensors. The model's and the teachers' 4-D parameters and buffers, and the batch's 4-D
// floating-point tensors, are given the channels_last memory format; the values are unchanged,
// only their layout in memory.
#pragma once

#include <torch/nn/module.h>

#include "kd/tensor_dict.h"

namespace kd::host {

// Re-lays every 4-D parameter and buffer of `module` (and its submodules) as channels_last.
void ToChannelsLast(torch::nn::Module& module);

// The batch with every 4-D floating-point tensor channels_last (the others as they are).
TensorDict ChannelsLastBatch(const TensorDict& batch);

}  // namespace kd::host
