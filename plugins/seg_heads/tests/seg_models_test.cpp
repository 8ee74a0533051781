// The seg_heads components built from configs: output shapes of the encoder-decoder with each
// head, flip testing, and the loss and metric components on hand-computed values.
#include <torch/torch.h>
#include <catch2/catch.hpp>

#include <map>
#include <string>
#include <vector>

#include "kd/loss.h"
#include "kd/metric.h"
#include "kd/model.h"
#include "test_support.h"

namespace {

std::shared_ptr<kd::Model> MakeSegmentor(const std::string& head, const std::string& extra = "") {
  return kd::test::Make<kd::Model>(kd::Kind::kModel, R"(
type = "seg_heads::EncoderDecoder"
backbone = { type = "resnet::ResNet", depth = 18, output_stride = 8 }
decode_head = { )" + head + R"(, num_classes = 5 }
aux_head = { type = "seg_heads::FCNHead", in_feature = "feat.layer3", num_classes = 5 }
)" + extra);
}

std::map<std::string, double> Values(const kd::Metric& metric) {
  std::map<std::string, double> out;
  for (const kd::MetricValue& v : metric.Compute()) out[v.name] = v.value;
  return out;
}

}  // namespace

TEST_CASE("DeepLabV3 and PSPNet on a dilated ResNet-18 give logits at 1/8 of the image") {
  torch::manual_seed(0);
  const torch::Tensor image = torch::randn({2, 3, 64, 96});
  for (const char* head : {R"(type = "seg_heads::DeepLabV3")", R"(type = "seg_heads::PSPNet")"}) {
    auto model = MakeSegmentor(head);
    const kd::TensorDict out = model->Forward({{"image", image}});
    CHECK(out.at("logits").sizes() == torch::IntArrayRef({2, 5, 8, 12}));
    CHECK(out.at("aux_logits").sizes() == torch::IntArrayRef({2, 5, 8, 12}));
    CHECK(out.contains("feat.layer4"));
  }
}

TEST_CASE("the DeepLabV3 head carries torchvision's DeepLabHead parameter names") {
  auto model = MakeSegmentor(R"(type = "seg_heads::DeepLabV3")");
  std::vector<std::string> names;
  for (const auto& p : model->named_parameters()) names.push_back(p.key());
  for (const char* name : {"decode_head.0.convs.0.0.weight", "decode_head.0.convs.3.0.weight",
                           "decode_head.0.convs.4.1.weight", "decode_head.0.project.0.weight",
                           "decode_head.1.weight", "decode_head.2.weight", "decode_head.4.weight",
                           "decode_head.4.bias", "aux_head.0.weight", "aux_head.4.bias"}) {
    CAPTURE(name);
    CHECK(std::find(names.begin(), names.end(), name) != names.end());
  }
}

TEST_CASE("flip testing predicts a mirrored image as the mirror of the prediction") {
  torch::manual_seed(1);
  auto model = MakeSegmentor(R"(type = "seg_heads::DeepLabV3")", "test_flip = true\n");
  model->eval();
  const torch::Tensor image = torch::randn({1, 3, 48, 48});
  torch::NoGradGuard no_grad;
  const kd::TensorDict out = model->Forward({{"image", image}});
  const torch::Tensor mirrored = model->Forward({{"image", image.flip({3})}}).at("logits");
  REQUIRE(out.at("logits").sizes() == torch::IntArrayRef({1, 5, 48, 48}));
  CHECK(torch::allclose(mirrored, out.at("logits").flip({3}), 1e-4, 1e-5));
  // The output is the log of averaged probabilities.
  CHECK(torch::allclose(out.at("logits").exp().sum(1), torch::ones({1, 48, 48}), 1e-4, 1e-5));
}

TEST_CASE("seg_heads::CrossEntropy adds the auxiliary head's term at 0.4") {
  auto loss = kd::test::Make<kd::Loss>(kd::Kind::kLoss, R"(type = "seg_heads::CrossEntropy")");
  // Class-1 probabilities 3/4 and 1/2 for labels 1 and 0, and an ignored pixel:
  // (-ln(3/4) + ln 2) / 2 = 0.4904146.
  const torch::Tensor logits =
      torch::tensor({0.0f, 0.0f, 0.0f, std::log(3.0f), 0.0f, 5.0f}).reshape({1, 2, 1, 3});
  const torch::Tensor mask = torch::tensor({1, 0, 255}, torch::kLong).reshape({1, 1, 3});
  const kd::TensorDict terms =
      loss->Forward({{"logits", logits}, {"aux_logits", logits}}, {{"mask", mask}});
  CHECK(terms.at("loss.ce").item<double>() == Approx(0.4904146));
  CHECK(terms.at("loss.ce_aux").item<double>() == Approx(0.4 * 0.4904146));
}

TEST_CASE("seg_heads::mIoU accumulates one confusion matrix over every batch") {
  auto metric = kd::test::Make<kd::Metric>(kd::Kind::kMetric,
                                           R"(type = "seg_heads::mIoU"
num_classes = 4)");
  // The hand-made case of seg_losses_test: labels 0 0 1 | 1 2 ignored, predictions 0 1 1 | 1 0 2,
  // given as one-hot logits in two batches.
  auto logits_of = [](const std::vector<int64_t>& predicted) {
    return torch::one_hot(torch::tensor(predicted, torch::kLong), 4)
        .to(torch::kFloat)
        .t()
        .reshape({1, 4, 1, -1});
  };
  metric->Update({{"logits", logits_of({0, 1, 1})}},
                 {{"mask", torch::tensor({0, 0, 1}, torch::kLong).reshape({1, 1, 3})}});
  metric->Update({{"logits", logits_of({1, 0, 2})}},
                 {{"mask", torch::tensor({1, 2, 255}, torch::kLong).reshape({1, 1, 3})}});
  std::map<std::string, double> v = Values(*metric);
  CHECK(v.at("mIoU") == Approx(25.0));
  CHECK(v.at("mIoU_present") == Approx(100.0 / 3));
  CHECK(v.at("aAcc") == Approx(60.0));
  CHECK(v.at("IoU.1") == Approx(200.0 / 3));
  metric->Reset();
  metric->Update({{"logits", logits_of({2})}},
                 {{"mask", torch::tensor({2}, torch::kLong).reshape({1, 1, 1})}});
  v = Values(*metric);
  CHECK(v.at("mIoU") == Approx(25.0));  // class 2 alone: IoU 1, over 4 classes
  CHECK(v.at("mIoU_present") == Approx(100.0));
}

TEST_CASE("seg_heads::mIoU names the class count it expected when the logits disagree") {
  auto metric = kd::test::Make<kd::Metric>(kd::Kind::kMetric,
                                           "type = \"seg_heads::mIoU\"\nnum_classes = 4\n");
  CHECK_THROWS_WITH(metric->Update({{"logits", torch::zeros({1, 3, 2, 2})}},
                                   {{"mask", torch::zeros({1, 2, 2}, torch::kLong)}}),
                    Catch::Contains("[B, 4, h, w]") && Catch::Contains("[1, 3, 2, 2]") &&
                        Catch::Contains("num_classes"));
}

TEST_CASE("seg_heads::EncoderDecoder refuses test scales that are missing or not positive") {
  CHECK_THROWS_WITH(MakeSegmentor(R"(type = "seg_heads::DeepLabV3")", "test_scales = []\n"),
                    Catch::Contains("test_scales") && Catch::Contains("at least one scale"));
  CHECK_THROWS_WITH(MakeSegmentor(R"(type = "seg_heads::DeepLabV3")", "test_scales = [1.0, 0.0]\n"),
                    Catch::Contains("test_scales") && Catch::Contains("> 0"));
}
