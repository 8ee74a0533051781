// The segmentation loss pieces and the mIoU summary against hand-computed values.
#include <torch/torch.h>
#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

#include "kd/error.h"
#include "miou.h"
#include "seg_losses/seg_losses.h"

namespace {

constexpr int64_t kIgnore = 255;

// Two-class logits [1, 2, 1, W] whose class-1 probabilities are `p1` (logit difference
// ln(p/(1-p))).
torch::Tensor TwoClassLogits(const std::vector<double>& p1) {
  std::vector<float> zero(p1.size(), 0.0f);
  std::vector<float> one;
  for (double p : p1) one.push_back(static_cast<float>(std::log(p / (1 - p))));
  return torch::stack({torch::tensor(zero), torch::tensor(one)}).reshape({1, 2, 1, -1});
}

torch::Tensor Labels(const std::vector<int64_t>& labels) {
  return torch::tensor(labels, torch::kLong).reshape({1, 1, -1});
}

}  // namespace

TEST_CASE("the segmentation cross-entropy averages over labelled pixels with torch's weighting") {
  // Pixel 0: p(class 1) = 3/4, labelled 1: CE = -ln(3/4) = 0.2876821.
  // Pixel 1: p = 1/2, labelled 0: CE = ln 2 = 0.6931472.  Pixel 2: ignored.
  const torch::Tensor logits = TwoClassLogits({0.75, 0.5, 0.9});
  const torch::Tensor target = Labels({1, 0, kIgnore});
  const torch::Tensor per_pixel = seg_losses::PixelCrossEntropy(logits, target, kIgnore);
  CHECK(per_pixel[0][0][0].item<double>() == Approx(0.2876821));
  CHECK(per_pixel[0][0][1].item<double>() == Approx(0.6931472));
  CHECK(per_pixel[0][0][2].item<double>() == 0.0);
  // Unweighted: (0.2876821 + 0.6931472) / 2.
  CHECK(seg_losses::MeanCrossEntropy(logits, target, {}, kIgnore).item<double>() ==
        Approx(0.4904146));
  // Class weights [2, 1]: (1 * 0.2876821 + 2 * 0.6931472) / (1 + 2).
  CHECK(seg_losses::MeanCrossEntropy(logits, target, torch::tensor({2.0, 1.0}), kIgnore)
            .item<double>() == Approx(0.5579922));
  // Only pixel 1 selected.
  const torch::Tensor selected = torch::tensor({false, true, true}).reshape({1, 1, 3});
  CHECK(seg_losses::MeanCrossEntropy(logits, target, {}, kIgnore, selected).item<double>() ==
        Approx(0.6931472));
}

TEST_CASE("an empty selection gives a loss of exactly 0 that still backpropagates") {
  const torch::Tensor logits = TwoClassLogits({0.75, 0.5}).requires_grad_(true);
  const torch::Tensor none = torch::zeros({1, 1, 2}, torch::kBool);
  const torch::Tensor loss =
      seg_losses::MeanCrossEntropy(logits, Labels({1, 0}), {}, kIgnore, none);
  CHECK(loss.item<double>() == 0.0);
  loss.backward();
  CHECK(logits.grad().abs().sum().item<double>() == 0.0);
  // All pixels ignored: also 0, not NaN.
  CHECK(seg_losses::MeanCrossEntropy(logits, Labels({kIgnore, kIgnore}), {}, kIgnore)
            .item<double>() == 0.0);
}

TEST_CASE("hard pixels: probability of the labelled class <= max(thresh, k-th smallest)") {
  // Labelled-class probabilities 0.9, 0.6, 0.8, 0.95 and one ignored pixel (counted as 1).
  const torch::Tensor logits = TwoClassLogits({0.9, 0.6, 0.8, 0.95, 0.3});
  const torch::Tensor target = Labels({1, 1, 1, 1, kIgnore});
  auto hard = [&](double thresh, int64_t min_kept) {
    const torch::Tensor h = seg_losses::HardPixels(logits, target, kIgnore, thresh, min_kept, 4);
    std::vector<bool> out;
    for (int64_t i = 0; i < 5; ++i) out.push_back(h[0][0][i].item<bool>());
    return out;
  };
  // min_kept 0: the threshold alone, 0.7.
  CHECK(hard(0.7, 0) == std::vector<bool>{false, true, false, false, false});
  // k = 3: sorted 0.6, 0.8, 0.9, 0.95, 1 -> 3rd smallest 0.9 > 0.7, so thr = 0.9.
  CHECK(hard(0.7, 3) == std::vector<bool>{true, true, true, false, false});
  // k = 1: 1st smallest 0.6 < 0.7, so thr stays 0.7.
  CHECK(hard(0.7, 1) == std::vector<bool>{false, true, false, false, false});
  // k larger than the pixels: k = N = 5, the 5th smallest is the ignored pixel's 1, so every
  // labelled pixel is hard.
  CHECK(hard(0.7, 100000) == std::vector<bool>{true, true, true, true, false});
}

TEST_CASE("hard pixels are thresholded per chunk of images") {
  // Image 0: probabilities 0.9, 0.95; image 1: 0.75, 0.8. k = 1, thresh 0.7.
  const torch::Tensor logits =
      torch::cat({TwoClassLogits({0.9, 0.95}), TwoClassLogits({0.75, 0.8})}, 0);
  const torch::Tensor target = torch::ones({2, 1, 2}, torch::kLong);
  // One chunk of both images: the smallest is 0.75, so only that pixel is hard.
  const torch::Tensor together = seg_losses::HardPixels(logits, target, kIgnore, 0.7, 1, 2);
  CHECK(together.sum().item<int64_t>() == 1);
  CHECK(together[1][0][0].item<bool>());
  // Chunks of one image: each image's own smallest, 0.9 and 0.75.
  const torch::Tensor apart = seg_losses::HardPixels(logits, target, kIgnore, 0.7, 1, 1);
  CHECK(apart.sum().item<int64_t>() == 2);
  CHECK(apart[0][0][0].item<bool>());
  CHECK(apart[1][0][0].item<bool>());
}

TEST_CASE("labels outside the classes are reported with the value and the fix") {
  const torch::Tensor logits = TwoClassLogits({0.5, 0.5});
  CHECK_THROWS_WITH(seg_losses::CheckLabels(logits, Labels({0, 7}), kIgnore, "test"),
                    Catch::Contains("labelled 7") && Catch::Contains("num_classes"));
  CHECK_THROWS_WITH(seg_losses::CheckLabels(logits, Labels({0}), kIgnore, "test"),
                    Catch::Contains("do not describe the same pixels"));
}

TEST_CASE("mIoU from a confusion matrix over the whole set, both absent-class conventions") {
  // Labels 0 0 1 1 2 (and one ignored), predictions 0 1 1 1 0 (2 at the ignored pixel).
  // Per class: TP 1, 2, 0; labelled 2, 2, 1; predicted 2, 3, 0; union 3, 3, 1.
  // IoU 1/3, 2/3, 0. A 4th class is neither labelled nor predicted.
  torch::Tensor confusion = torch::zeros({4, 4}, torch::kLong);
  seg_heads::AddToConfusion(confusion, torch::tensor({0, 1, 1}, torch::kLong),
                            torch::tensor({0, 0, 1}, torch::kLong), kIgnore);
  seg_heads::AddToConfusion(confusion, torch::tensor({1, 0, 2}, torch::kLong),
                            torch::tensor({1, 2, 255}, torch::kLong), kIgnore);
  CHECK(confusion.sum().item<int64_t>() == 5);
  const seg_heads::IouSummary s = seg_heads::SummarizeConfusion(confusion);
  REQUIRE(s.iou.size() == 4);
  CHECK(s.iou[0] == Approx(1.0 / 3));
  CHECK(s.iou[1] == Approx(2.0 / 3));
  CHECK(s.iou[2] == 0.0);
  CHECK(std::isnan(s.iou[3]));
  CHECK(s.miou_zero == Approx(1.0 / 4));     // (1/3 + 2/3 + 0 + 0) / 4
  CHECK(s.miou_present == Approx(1.0 / 3));  // (1/3 + 2/3 + 0) / 3
  CHECK(s.pixel_accuracy == Approx(3.0 / 5));
  CHECK(s.mean_accuracy == Approx(0.5));  // (1/2 + 2/2 + 0/1) / 3
}

TEST_CASE("mIoU of an empty confusion matrix is NaN") {
  const seg_heads::IouSummary s = seg_heads::SummarizeConfusion(torch::zeros({3, 3}, torch::kLong));
  CHECK(std::isnan(s.miou_zero));
  CHECK(std::isnan(s.pixel_accuracy));
}
