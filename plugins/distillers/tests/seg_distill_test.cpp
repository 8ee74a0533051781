// Tests of the dense relation distillers, PairwiseSKD and CIRKD, and of the segmentation heads' own
// feature taps they use. Each formula is checked on tiny tensors against numbers computed by hand
// and, on random tensors, against a reference written here with plain loops from the paper's
// equation and the authors' reductions; CIRKD's memory queue against a hand-followed sequence of
// writes; the distillers are built as a stage builds them, on segmentation models.
#include <torch/torch.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "host/checkpoint.h"
#include "host/options_impl.h"
#include "host/validate.h"
#include "kd/dist.h"
#include "kd/distiller.h"
#include "kd/model.h"
#include "kd/rng.h"
#include "one_teacher.h"
#include "seg_distill_losses/seg_distill_losses.h"
#include "test_support.h"

namespace {

namespace sdl = seg_distill_losses;

double Value(const torch::Tensor& scalar) { return scalar.item<double>(); }

torch::Tensor Random(std::vector<int64_t> shape, uint64_t seed) {
  torch::manual_seed(seed);
  return torch::randn(shape, torch::kDouble);
}

using Vector = std::vector<double>;

double Dot(const Vector& a, const Vector& b) {
  double sum = 0;
  for (size_t i = 0; i < a.size(); ++i) sum += a[i] * b[i];
  return sum;
}

// a / max(‖a‖, 1e-12), as F.normalize.
Vector Unit(Vector a) {
  const double norm = std::max(std::sqrt(Dot(a, a)), 1e-12);
  for (double& v : a) v /= norm;
  return a;
}

// KL(softmax(t) ‖ softmax(s)) of two rows of logits.
double Kl(const Vector& s, const Vector& t) {
  const auto log_softmax = [](const Vector& z) {
    double max = z[0];
    for (double v : z) max = std::max(max, v);
    double sum = 0;
    for (double v : z) sum += std::exp(v - max);
    Vector out;
    for (double v : z) out.push_back(v - max - std::log(sum));
    return out;
  };
  const Vector ls = log_softmax(s);
  const Vector lt = log_softmax(t);
  double kl = 0;
  for (size_t i = 0; i < ls.size(); ++i) kl += std::exp(lt[i]) * (lt[i] - ls[i]);
  return kl;
}

// The pixel embeddings of image n of a [B, C, H, W] map, position by position (row-major).
std::vector<Vector> Pixels(const torch::Tensor& x, int64_t n) {
  const torch::Tensor d = x.to(torch::kDouble).contiguous();
  std::vector<Vector> out;
  for (int64_t i = 0; i < d.size(2); ++i) {
    for (int64_t j = 0; j < d.size(3); ++j) {
      Vector v;
      for (int64_t c = 0; c < d.size(1); ++c) v.push_back(d[n][c][i][j].item<double>());
      out.push_back(v);
    }
  }
  return out;
}

std::vector<Vector> Rows(const torch::Tensor& x) {
  const torch::Tensor d = x.to(torch::kDouble).contiguous();
  std::vector<Vector> out(static_cast<size_t>(d.size(0)));
  for (int64_t i = 0; i < d.size(0); ++i) {
    for (int64_t k = 0; k < d.size(1); ++k)
      out[static_cast<size_t>(i)].push_back(d[i][k].item<double>());
  }
  return out;
}

// --- references from the papers' equations, one number at a time ---

// SKD eq. 1 after the authors' pooling: max over each kh x kw window (stride = window, windows cut
// at the border: ceil mode); a_ij = f_i·f_j / ((‖f_i‖ + 1e-8)(‖f_j‖ + 1e-8));
// Σ_ij (a^s_ij − a^t_ij)² / N² per image, averaged over the batch.
double ReferencePairwise(const torch::Tensor& s, const torch::Tensor& t, int64_t kh, int64_t kw) {
  const auto nodes = [&](const torch::Tensor& x, int64_t n) {
    const torch::Tensor d = x.to(torch::kDouble).contiguous();
    std::vector<Vector> out;
    for (int64_t i0 = 0; i0 < d.size(2); i0 += kh) {
      for (int64_t j0 = 0; j0 < d.size(3); j0 += kw) {
        Vector node;
        for (int64_t c = 0; c < d.size(1); ++c) {
          double max = -1e300;
          for (int64_t i = i0; i < std::min(i0 + kh, d.size(2)); ++i) {
            for (int64_t j = j0; j < std::min(j0 + kw, d.size(3)); ++j)
              max = std::max(max, d[n][c][i][j].item<double>());
          }
          node.push_back(max);
        }
        out.push_back(node);
      }
    }
    return out;
  };
  const auto cosine = [](const Vector& a, const Vector& b) {
    return Dot(a, b) / ((std::sqrt(Dot(a, a)) + 1e-8) * (std::sqrt(Dot(b, b)) + 1e-8));
  };
  double total = 0;
  for (int64_t n = 0; n < s.size(0); ++n) {
    const std::vector<Vector> ns = nodes(s, n);
    const std::vector<Vector> nt = nodes(t, n);
    double sum = 0;
    for (size_t i = 0; i < ns.size(); ++i) {
      for (size_t j = 0; j < ns.size(); ++j) {
        const double d = cosine(ns[i], ns[j]) - cosine(nt[i], nt[j]);
        sum += d * d;
      }
    }
    total += sum / static_cast<double>(ns.size() * ns.size());
  }
  return total / static_cast<double>(s.size(0));
}

// CIRKD's mini-batch pixel-to-pixel term: for every image pair (i, j) and pixel n of image i,
// KL(softmax_m(v^t_in·v^t_jm/τ) ‖ softmax_m(v^s_in·v^s_jm/τ)) with unit embeddings; averaged over
// the pixels n, then over the B² pairs.
double ReferenceCrossImage(const torch::Tensor& s, const torch::Tensor& t, double tau) {
  const int64_t b = s.size(0);
  std::vector<std::vector<Vector>> us;
  std::vector<std::vector<Vector>> ut;
  for (int64_t n = 0; n < b; ++n) {
    us.emplace_back();
    ut.emplace_back();
    for (const Vector& v : Pixels(s, n)) us.back().push_back(Unit(v));
    for (const Vector& v : Pixels(t, n)) ut.back().push_back(Unit(v));
  }
  double total = 0;
  for (int64_t i = 0; i < b; ++i) {
    for (int64_t j = 0; j < b; ++j) {
      const auto& si = us[static_cast<size_t>(i)];
      const auto& sj = us[static_cast<size_t>(j)];
      const auto& ti = ut[static_cast<size_t>(i)];
      const auto& tj = ut[static_cast<size_t>(j)];
      double pair = 0;
      for (size_t n = 0; n < si.size(); ++n) {
        Vector zs;
        Vector zt;
        for (size_t m = 0; m < sj.size(); ++m) {
          zs.push_back(Dot(si[n], sj[m]) / tau);
          zt.push_back(Dot(ti[n], tj[m]) / tau);
        }
        pair += Kl(zs, zt);
      }
      total += pair / static_cast<double>(si.size());
    }
  }
  return total / static_cast<double>(b * b);
}

// CIRKD's memory terms: per anchor n, KL(softmax_m(t_n·c_m/(τT)) ‖ softmax_m(s_n·c_m/(τT))),
// averaged over the anchors, times T².
double ReferenceMemory(const torch::Tensor& s, const torch::Tensor& t, const torch::Tensor& c,
                       double tau, double kd_t) {
  const std::vector<Vector> rs = Rows(s);
  const std::vector<Vector> rt = Rows(t);
  const std::vector<Vector> rc = Rows(c);
  double total = 0;
  for (size_t n = 0; n < rs.size(); ++n) {
    Vector zs;
    Vector zt;
    for (const Vector& m : rc) {
      zs.push_back(Dot(rs[n], m) / (tau * kd_t));
      zt.push_back(Dot(rt[n], m) / (tau * kd_t));
    }
    total += Kl(zs, zt);
  }
  return total / static_cast<double>(rs.size()) * kd_t * kd_t;
}

// --- models and distillers as a stage builds them ---

// A DeepLabV3 (or PSPNet) segmentor on a small CNN with an FCN aux head, 3 classes, output stride
// 8: a 32 x 32 image gives 4 x 4 maps.
std::shared_ptr<kd::Model> Segmentor(const std::string& channels, int64_t head_channels,
                                     const std::string& head = "seg_heads::DeepLabV3") {
  const std::string sizes = head == "seg_heads::DeepLabV3" ? "dilations = [1, 2]" : "bins = [1, 2]";
  return kd::test::Make<kd::Model>(kd::Kind::kModel, R"(type = "seg_heads::EncoderDecoder"
backbone = { type = "resnet::SmallCNN", in_channels = 1, channels = )" +
                                                         channels +
                                                         R"( }
decode_head = { type = ")" + head + R"(", channels = )" + std::to_string(head_channels) +
                                                         ", " + sizes + R"(, num_classes = 3 }
aux_head = { type = "seg_heads::FCNHead", in_feature = "feat.stage2", num_classes = 3 }
)");
}

std::shared_ptr<kd::Model> Student() { return Segmentor("[4, 8, 8]", 6); }

std::shared_ptr<kd::Model> Teacher() {
  auto teacher = Segmentor("[8, 16, 16]", 12);
  teacher->eval();
  return teacher;
}

std::shared_ptr<kd::Distiller> MakeDistiller(const std::string& toml, kd::Model& student,
                                             const kd::StageAccess& teachers,
                                             const kd::DatasetInfo* info = nullptr) {
  kd::host::CNode table = kd::ValueOrThrow(kd::host::ParseToml(toml, "<test>"));
  kd::ThrowIfError(kd::host::ValidateComponent(table, kd::Kind::kDistiller,
                                               kd::test::SharedHost().registry(), "distiller"));
  const kd::Options options = kd::host::MakeOptions(std::move(table), "distiller");
  return kd::BuildContext(kd::test::SharedHost().registry(), torch::kCPU)
      .WithStageAccess(&teachers)
      .WithDatasetInfo(info)
      .WithStudent(&student)
      .Build<kd::Distiller>(kd::Kind::kDistiller, options);
}

const char* const kTeacher = "teacher = { checkpoint = \"teacher.pt\" }\n";

// Two images of 32 x 32 whose labels are constant on 8 x 8 blocks, so that the nearest-neighbour
// 4 x 4 labels are the blocks': image 0 has rows of blocks 0, 0, 1, ignored; image 1 rows 0, 2, 2,
// ignored.
kd::TensorDict SegBatch() {
  torch::manual_seed(42);
  const torch::Tensor blocks = torch::tensor({0, 0, 1, 255, 0, 2, 2, 255}, torch::kLong)
                                   .reshape({2, 4, 1})
                                   .expand({2, 4, 4});
  const torch::Tensor mask = blocks.repeat_interleave(8, 1).repeat_interleave(8, 2).contiguous();
  return {{"image", torch::randn({2, 1, 32, 32})}, {"mask", mask}};
}

torch::Tensor BlockLabels() {
  return torch::tensor({0, 0, 1, 255, 0, 2, 2, 255}, torch::kLong)
      .reshape({2, 4, 1})
      .expand({2, 4, 4})
      .contiguous();
}

// A data-parallel run of two processes as rank 0 sees it, the other holding the same batch: a
// sum over the processes of a tensor whose first dimension is the rank adds rank 0's slot to
// rank 1's.
class TwoEqualRanks : public kd::dist::Backend {
 public:
  int rank() const override { return 0; }
  int world_size() const override { return 2; }
  void AllReduceSum(torch::Tensor& tensor) override { tensor.add_(tensor.roll(1, 0)); }
  void Broadcast(torch::Tensor&) override {}
};

struct BackendScope {
  explicit BackendScope(std::shared_ptr<kd::dist::Backend> backend) {
    kd::dist::SetBackend(std::move(backend));
  }
  ~BackendScope() { kd::dist::SetBackend(nullptr); }
  BackendScope(const BackendScope&) = delete;
  BackendScope& operator=(const BackendScope&) = delete;
};

}  // namespace

TEST_CASE(
    "EncoderDecoder offers its heads' taps after its backbone's and returns them when asked") {
  auto model = Student();
  model->eval();
  const std::vector<std::string> names = model->TapNames();
  // SmallCNN's 3 stages of 7 layers and 3 stage taps, then DeepLabV3's ASPP and classifier input,
  // then the FCN head's classifier input.
  REQUIRE(names.size() == 3 * 8 + 3);
  CHECK(names[names.size() - 4] == "stage3");
  CHECK(names[names.size() - 3] == "decode_head.0");
  CHECK(names[names.size() - 2] == "decode_head.3");
  CHECK(names.back() == "aux_head.2");
  CHECK(model->TapChannels("decode_head.0") == 6);
  CHECK(model->TapChannels("decode_head.3") == 6);
  CHECK(model->TapChannels("aux_head.2") == 2);  // a quarter of stage2's 8 channels
  CHECK(model->TapChannels("stage2") == 8);

  const kd::TensorDict batch{{"image", torch::randn({2, 1, 32, 32})}};
  torch::NoGradGuard no_grad;
  const kd::TensorDict before = model->Forward(batch);
  for (const std::string& key : before.Keys()) CHECK(key.rfind("tap.", 0) == std::string::npos);

  model->SetTaps({"decode_head.3", "aux_head.2"});
  kd::TensorDict out = model->Forward(batch);
  REQUIRE(out.contains("tap.decode_head.3"));
  REQUIRE(out.contains("tap.aux_head.2"));
  CHECK_FALSE(out.contains("tap.decode_head.0"));
  CHECK_FALSE(out.contains("tap.stage3"));
  CHECK(out.at("tap.decode_head.3").sizes() == torch::IntArrayRef({2, 6, 4, 4}));
  CHECK(out.at("tap.aux_head.2").sizes() == torch::IntArrayRef({2, 2, 8, 8}));
  // The logits are the classifiers' 1x1 convolutions of those taps (no dropout in evaluation).
  const auto params = model->named_parameters();
  const auto classify = [&](const torch::Tensor& x, const std::string& prefix) {
    return torch::conv2d(x, params[prefix + ".weight"], params[prefix + ".bias"]);
  };
  CHECK(torch::allclose(out.at("logits"), classify(out.at("tap.decode_head.3"), "decode_head.4"),
                        1e-5, 1e-6));
  CHECK(torch::allclose(out.at("aux_logits"), classify(out.at("tap.aux_head.2"), "aux_head.4"),
                        1e-5, 1e-6));
  // Calls add to the taps asked for; the backbone's are passed on as before.
  model->SetTaps({"decode_head.0", "stage3"});
  out = model->Forward(batch);
  CHECK(out.at("tap.decode_head.0").sizes() == torch::IntArrayRef({2, 6, 4, 4}));
  CHECK(torch::equal(out.at("tap.stage3"), out.at("feat.stage3")));
  CHECK(out.contains("tap.decode_head.3"));

  CHECK_THROWS_WITH(
      model->SetTaps({"decode_head.9"}),
      Catch::Contains("seg_heads::EncoderDecoder has no feature tap 'decode_head.9'") &&
          Catch::Contains("stage1.0") && Catch::Contains("decode_head.3") &&
          Catch::Contains("aux_head.2"));
  CHECK_THROWS_WITH(model->TapChannels("layer4"), Catch::Contains("no feature tap 'layer4'"));
}

TEST_CASE("PSPNet offers its pyramid and its bottleneck as taps") {
  auto model = Segmentor("[4, 8, 8]", 6, "seg_heads::PSPNet");
  model->eval();
  // The pyramid: stage3's 8 channels and two bins of 8 / 2 = 4 channels each.
  CHECK(model->TapChannels("decode_head.ppm") == 16);
  CHECK(model->TapChannels("decode_head.bottleneck") == 6);
  model->SetTaps({"decode_head.ppm", "decode_head.bottleneck"});
  torch::NoGradGuard no_grad;
  const kd::TensorDict out = model->Forward({{"image", torch::randn({1, 1, 32, 32})}});
  CHECK(out.at("tap.decode_head.ppm").sizes() == torch::IntArrayRef({1, 16, 4, 4}));
  // The pyramid starts with the backbone feature itself.
  CHECK(torch::equal(out.at("tap.decode_head.ppm").slice(1, 0, 8), out.at("feat.stage3")));
  const auto params = model->named_parameters();
  CHECK(torch::allclose(
      out.at("logits"),
      torch::conv2d(out.at("tap.decode_head.bottleneck"), params["decode_head.classifier.weight"],
                    params["decode_head.classifier.bias"]),
      1e-5, 1e-6));
}

TEST_CASE("PairwiseSKD matches a hand-computed example and the loop reference of eq. 1") {
  // Two nodes (a 1 x 2 map; the scale 0.5 window is 1 x 1): the student's (1, 0) and (0, 1) are
  // orthogonal, a^s = I; the teacher's (1, 0) and (1, 1) meet at 45°, a^t = [[1, 1/√2], [1/√2,
  // 1]]. Two entries differ by 1/√2: (1/2 + 1/2) / 2² = 1/4.
  const torch::Tensor s = torch::tensor({1.0, 0.0, 0.0, 1.0}, torch::kDouble).reshape({1, 2, 1, 2});
  const torch::Tensor t = torch::tensor({1.0, 1.0, 0.0, 1.0}, torch::kDouble).reshape({1, 2, 1, 2});
  CHECK(Value(sdl::PairwiseSimilarity(s, t, 0.5, 0)) == Approx(0.25).epsilon(1e-6));
  // Pooling: on a 1 x 4 map the window is 1 x 2, so the student's (1, 0), (0, 1), (0, 2), (0, 0)
  // pool to (1, 1) and (0, 2), at 45°, the teacher's to (1, 0) and (0, 1): a difference of 1/√2
  // twice, again 1/4.
  const torch::Tensor s4 =
      torch::tensor({1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 2.0, 0.0}, torch::kDouble).reshape({1, 2, 1, 4});
  const torch::Tensor t4 =
      torch::tensor({1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0}, torch::kDouble).reshape({1, 2, 1, 4});
  CHECK(Value(sdl::PairwiseSimilarity(s4, t4, 0.5, 0)) == Approx(0.25).epsilon(1e-6));
  // Random maps; channels differ. Scale 0.5 on 5 x 7: windows 2 x 3 (3 x 3 nodes, the last ones
  // cut); a fixed 2 x 2 patch: 3 x 4 nodes.
  const torch::Tensor rs = Random({2, 3, 5, 7}, 1);
  const torch::Tensor rt = Random({2, 4, 5, 7}, 2);
  CHECK(Value(sdl::PairwiseSimilarity(rs, rt, 0.5, 0)) ==
        Approx(ReferencePairwise(rs, rt, 2, 3)).epsilon(1e-6));
  CHECK(Value(sdl::PairwiseSimilarity(rs, rt, 0.5, 2)) ==
        Approx(ReferencePairwise(rs, rt, 2, 2)).epsilon(1e-6));
  CHECK(Value(sdl::PairwiseSimilarity(rs, rt, 0.1, 0)) ==
        Approx(ReferencePairwise(rs, rt, 1, 1)).epsilon(1e-6));
  // Gradients reach the student only.
  const torch::Tensor gs = rs.clone().requires_grad_(true);
  const torch::Tensor gt = rt.clone().requires_grad_(true);
  sdl::PairwiseSimilarity(gs, gt, 0.5, 0).backward();
  CHECK(gs.grad().defined());
  CHECK(gs.grad().abs().sum().item<double>() > 0);
  CHECK_FALSE(gt.grad().defined());
  CHECK_THROWS_WITH(sdl::PairwiseSimilarity(rs, Random({2, 4, 6, 7}, 3), 0.5, 0),
                    Catch::Contains("same batch and resolution"));
}

TEST_CASE("CIRKD's mini-batch pixel-to-pixel term matches a hand example and the loop reference") {
  // One image of two pixels, τ = 1. Student (1, 0), (0, 1): similarity rows (1, 0) and (0, 1);
  // teacher (1, 0), (1, 0): rows (1, 1), uniform. Each row: Σ ½·ln(½ / p_s) with p_s = (e, 1) /
  // (e + 1): ln((e + 1) / 2) − ½; averaged over the 2 rows and the 1 pair the same.
  const torch::Tensor s = torch::tensor({1.0, 0.0, 0.0, 1.0}, torch::kDouble).reshape({1, 2, 1, 2});
  const torch::Tensor t = torch::tensor({1.0, 1.0, 0.0, 0.0}, torch::kDouble).reshape({1, 2, 1, 2});
  CHECK(Value(sdl::CrossImagePixelKd(s, t, 1.0)) ==
        Approx(std::log((std::exp(1.0) + 1) / 2) - 0.5).epsilon(1e-9));
  const torch::Tensor rs = Random({3, 3, 2, 3}, 4);
  const torch::Tensor rt = Random({3, 5, 2, 3}, 5);
  for (double tau : {0.1, 0.5}) {
    CHECK(Value(sdl::CrossImagePixelKd(rs, rt, tau)) ==
          Approx(ReferenceCrossImage(rs, rt, tau)).epsilon(1e-9));
  }
  const torch::Tensor gs = rs.clone().requires_grad_(true);
  const torch::Tensor gt = rt.clone().requires_grad_(true);
  sdl::CrossImagePixelKd(gs, gt, 0.1).backward();
  CHECK(gs.grad().defined());
  CHECK_FALSE(gt.grad().defined());
}

TEST_CASE("CIRKD's memory relation term matches a hand example and the loop reference") {
  // One anchor, contrast (1, 0), (0, 1), τ = T = 1: student logits (1, 0), teacher's (0, 1).
  // KL = p_t·(log p_t − log p_s) = −p_t0 + p_t1 = (e − 1)/(e + 1) = tanh(½).
  const torch::Tensor s = torch::tensor({{1.0, 0.0}}, torch::kDouble);
  const torch::Tensor t = torch::tensor({{0.0, 1.0}}, torch::kDouble);
  const torch::Tensor c = torch::tensor({{1.0, 0.0}, {0.0, 1.0}}, torch::kDouble);
  CHECK(Value(sdl::MemoryRelationKd(s, t, c, 1.0, 1.0)) == Approx(std::tanh(0.5)).epsilon(1e-9));
  // T = 2: the logits halve, KL = ½·tanh(¼), times T² = 4: 2·tanh(¼).
  CHECK(Value(sdl::MemoryRelationKd(s, t, c, 1.0, 2.0)) ==
        Approx(2 * std::tanh(0.25)).epsilon(1e-9));
  const auto unit_rows = [](const torch::Tensor& x) { return x / x.norm(2, 1, /*keepdim=*/true); };
  const torch::Tensor rs = unit_rows(Random({5, 4}, 6));
  const torch::Tensor rt = unit_rows(Random({5, 4}, 7));
  const torch::Tensor rc = unit_rows(Random({6, 4}, 8));
  for (double kd_t : {1.0, 2.0}) {
    CHECK(Value(sdl::MemoryRelationKd(rs, rt, rc, 0.1, kd_t)) ==
          Approx(ReferenceMemory(rs, rt, rc, 0.1, kd_t)).epsilon(1e-9));
  }
  // No anchor (every pixel ignored): 0.
  CHECK(Value(sdl::MemoryRelationKd(rs.slice(0, 0, 0), rt.slice(0, 0, 0), rc, 0.1, 1.0)) == 0.0);
  const torch::Tensor gs = rs.clone().requires_grad_(true);
  const torch::Tensor gt = rt.clone().requires_grad_(true);
  const torch::Tensor gc = rc.clone().requires_grad_(true);
  sdl::MemoryRelationKd(gs, gt, gc, 0.1, 1.0).backward();
  CHECK(gs.grad().defined());
  CHECK_FALSE(gt.grad().defined());
  CHECK_FALSE(gc.grad().defined());
}

TEST_CASE("CIRKD's memory enqueues regions and pixels per class and wraps as the authors' queues") {
  // K = 3 classes, P = 4 pixel slots, R = 2 region slots, D = 2; empty (zero) queues.
  sdl::Memory memory{torch::zeros({3, 4, 2}), torch::zeros({3}, torch::kLong),
                     torch::zeros({3, 2, 2}), torch::zeros({3}, torch::kLong)};
  kd::Rng rng(1);
  // One image of 4 pixels: (1, 0) and (0, 1) of class 0, v of class 2, (0, 1) ignored.
  const auto image = [](double angle) {
    const double c = std::cos(angle);
    const double s = std::sin(angle);
    // [1, D = 2, 1, 4]: channel 0 then channel 1 of the 4 pixels.
    return torch::tensor({1.0, 0.0, c, 0.0, 0.0, 1.0, s, 1.0}, torch::kFloat).reshape({1, 2, 1, 4});
  };
  const torch::Tensor labels = torch::tensor({0, 0, 2, 255}, torch::kLong).reshape({1, 1, 4});
  const auto row = [](const torch::Tensor& queue, int64_t k, int64_t slot) {
    return queue[k][slot];
  };
  const auto is = [](const torch::Tensor& x, double a, double b) {
    return torch::allclose(x, torch::tensor({a, b}, torch::kFloat), 1e-6, 1e-6);
  };
  const double r = 1 / std::sqrt(2.0);

  // Call 1: class 0's region is the normalised mean (1/√2, 1/√2) at region slot 0; its two pixels
  // fill pixel slots 0 and 1 (in random order); class 2's pixel v1 = (cos 1, sin 1) goes to slot
  // 0. Pointers: pixels (2, 0, 1), regions (1, 0, 1).
  sdl::Enqueue(memory, image(1.0), labels, 16, 255, rng);
  CHECK(is(row(memory.region_queue, 0, 0), r, r));
  CHECK(is(row(memory.region_queue, 2, 0), std::cos(1.0), std::sin(1.0)));
  CHECK((is(row(memory.pixel_queue, 0, 0), 1, 0) && is(row(memory.pixel_queue, 0, 1), 0, 1)) !=
        (is(row(memory.pixel_queue, 0, 0), 0, 1) && is(row(memory.pixel_queue, 0, 1), 1, 0)));
  CHECK(is(row(memory.pixel_queue, 2, 0), std::cos(1.0), std::sin(1.0)));
  CHECK(torch::equal(memory.pixel_ptr, torch::tensor({2, 0, 1}, torch::kLong)));
  CHECK(torch::equal(memory.region_ptr, torch::tensor({1, 0, 1}, torch::kLong)));
  CHECK(memory.pixel_queue[1].abs().sum().item<double>() == 0);  // class 1 absent: untouched
  CHECK(memory.region_queue[1].abs().sum().item<double>() == 0);

  // Call 2: class 0's two pixels at slots 2 and 3: 2 + 2 reaches P = 4, so they go to the last two
  // slots and the pointer restarts at 0; its region at slot 1, the pointer wrapping to 0. Class 2:
  // v2 at pixel slot 1, region slot 1.
  sdl::Enqueue(memory, image(2.0), labels, 16, 255, rng);
  CHECK(torch::equal(memory.pixel_ptr, torch::tensor({0, 0, 2}, torch::kLong)));
  CHECK(torch::equal(memory.region_ptr, torch::tensor({0, 0, 0}, torch::kLong)));
  CHECK(is(row(memory.pixel_queue, 2, 1), std::cos(2.0), std::sin(2.0)));
  CHECK(is(row(memory.region_queue, 2, 1), std::cos(2.0), std::sin(2.0)));
  CHECK(memory.pixel_queue[0].abs().sum(1).min().item<double>() > 0.99);  // all 4 slots written

  // Calls 3 and 4: class 2's pointer 2 -> 3, then 3 + 1 reaches 4: v4 to the last slot, pointer 0.
  // Its region slots alternate: v3 at 0, v4 at 1.
  sdl::Enqueue(memory, image(3.0), labels, 16, 255, rng);
  sdl::Enqueue(memory, image(4.0), labels, 16, 255, rng);
  CHECK(torch::equal(memory.pixel_ptr, torch::tensor({0, 0, 0}, torch::kLong)));
  CHECK(is(row(memory.pixel_queue, 2, 0), std::cos(1.0), std::sin(1.0)));
  CHECK(is(row(memory.pixel_queue, 2, 2), std::cos(3.0), std::sin(3.0)));
  CHECK(is(row(memory.pixel_queue, 2, 3), std::cos(4.0), std::sin(4.0)));
  CHECK(is(row(memory.region_queue, 2, 0), std::cos(3.0), std::sin(3.0)));
  CHECK(is(row(memory.region_queue, 2, 1), std::cos(4.0), std::sin(4.0)));

  // At most pixels_per_class pixels of a class per image: one of class 0's two.
  sdl::Memory one{torch::zeros({3, 4, 2}), torch::zeros({3}, torch::kLong), torch::zeros({3, 2, 2}),
                  torch::zeros({3}, torch::kLong)};
  sdl::Enqueue(one, image(1.0), labels, 1, 255, rng);
  CHECK(torch::equal(one.pixel_ptr, torch::tensor({1, 0, 1}, torch::kLong)));
  CHECK((is(row(one.pixel_queue, 0, 0), 1, 0) || is(row(one.pixel_queue, 0, 0), 0, 1)));
  CHECK(one.pixel_queue[0][1].abs().sum().item<double>() == 0);

  // Three images of one pixel of class 1, (1, 0), (1, 0) and (1, 1), and 2 region slots: slot 0 is
  // written by images 0 and 2 and keeps image 2's region, the later one; slot 1 image 1's.
  sdl::Memory three{torch::zeros({3, 4, 2}), torch::zeros({3}, torch::kLong),
                    torch::zeros({3, 2, 2}), torch::zeros({3}, torch::kLong)};
  const torch::Tensor images =
      torch::tensor({1.0, 0.0, 1.0, 0.0, 1.0, 1.0}, torch::kFloat).reshape({3, 2, 1, 1});
  sdl::Enqueue(three, images, torch::ones({3, 1, 1}, torch::kLong), 16, 255, rng);
  CHECK(is(row(three.region_queue, 1, 0), r, r));
  CHECK(is(row(three.region_queue, 1, 1), 1, 0));
  CHECK(three.region_ptr[1].item<int64_t>() == 1);
  CHECK(three.pixel_ptr[1].item<int64_t>() == 3);

  // A label beyond the classes, and shapes that do not pair.
  CHECK_THROWS_WITH(
      sdl::Enqueue(memory, image(1.0),
                   torch::tensor({0, 3, 2, 255}, torch::kLong).reshape({1, 1, 4}), 16, 255, rng),
      Catch::Contains("label 3 is not below the memory's 3 classes"));
  CHECK_THROWS_WITH(
      sdl::Enqueue(memory, image(1.0), torch::zeros({1, 2, 2}, torch::kLong), 16, 255, rng),
      Catch::Contains("[B, h, w] labels"));
  // More pixels of a class than its queue holds.
  sdl::Memory tiny{torch::zeros({3, 1, 2}), torch::zeros({3}, torch::kLong),
                   torch::zeros({3, 2, 2}), torch::zeros({3}, torch::kLong)};
  CHECK_THROWS_WITH(sdl::Enqueue(tiny, image(1.0), labels, 16, 255, rng),
                    Catch::Contains("2 pixels of class 0 in one image do not fit a pixel queue of "
                                    "1 slots"));
}

TEST_CASE("CIRKD samples the same queue slots of every class without repeats") {
  // queue[k][slot] = (k, slot).
  const torch::Tensor queue =
      torch::stack({torch::arange(3).unsqueeze(1).expand({3, 5}).to(torch::kFloat),
                    torch::arange(5).unsqueeze(0).expand({3, 5}).to(torch::kFloat)},
                   2);
  kd::Rng rng(2);
  const torch::Tensor drawn = sdl::SampleQueue(queue, 3, rng);
  REQUIRE(drawn.sizes() == torch::IntArrayRef({9, 2}));
  std::set<double> slots;
  for (int64_t i = 0; i < 3; ++i) {
    slots.insert(drawn[i][1].item<double>());
    for (int64_t k = 0; k < 3; ++k) {
      CHECK(drawn[k * 3 + i][0].item<double>() == static_cast<double>(k));
      CHECK(drawn[k * 3 + i][1].item<double>() == drawn[i][1].item<double>());
    }
  }
  CHECK(slots.size() == 3);
  // More than the queue holds: every slot once.
  CHECK(sdl::SampleQueue(queue, 50, rng).size(0) == 15);
}

TEST_CASE("PairwiseSKD relates the decode heads' taps and trains the student only") {
  auto student = Student();
  auto teacher = Teacher();
  kd::test::OneTeacher teachers(teacher);
  auto skd = MakeDistiller(std::string("type = \"distillers::PairwiseSKD\"\n") + kTeacher +
                               "student_taps = [\"decode_head.3\", \"stage2\"]\n"
                               "teacher_taps = [\"decode_head.3\", \"stage2\"]\n",
                           *student, teachers);
  CHECK(skd->parameters().empty());
  const kd::TensorDict batch = SegBatch();
  const kd::TensorDict outputs = student->Forward(batch);
  const kd::TensorDict terms = skd->Forward(batch, outputs, kd::StepInfo{});
  REQUIRE(terms.Keys() == std::vector<std::string>{"loss.skd_pa"});
  kd::TensorDict t;
  {
    torch::NoGradGuard no_grad;
    t = teacher->Forward(batch);
  }
  // The authors' λ = 0.5 and pool scale 0.5: 2 x 2 windows on the 4 x 4 head maps, 4 x 4 on
  // stage2's 8 x 8.
  const double expected =
      0.5 * (ReferencePairwise(outputs.at("tap.decode_head.3").detach(), t.at("tap.decode_head.3"),
                               2, 2) +
             ReferencePairwise(outputs.at("tap.stage2").detach(), t.at("tap.stage2"), 4, 4));
  CHECK(Value(terms.at("loss.skd_pa")) == Approx(expected).epsilon(1e-5));
  terms.at("loss.skd_pa").backward();
  CHECK(student->named_parameters()["decode_head.1.weight"].grad().defined());
  for (const torch::Tensor& p : teacher->parameters()) CHECK_FALSE(p.grad().defined());
  // Taps of different strides do not pair.
  auto unequal = MakeDistiller(std::string("type = \"distillers::PairwiseSKD\"\n") + kTeacher +
                                   "student_taps = [\"stage2\"]\nteacher_taps = [\"stage3\"]\n",
                               *student, teachers);
  CHECK_THROWS_WITH(unequal->Forward(batch, student->Forward(batch), kd::StepInfo{}),
                    Catch::Contains("distillers::PairwiseSKD: the student's tap 'stage2' has "
                                    "shape [2, 8, 8, 8]") &&
                        Catch::Contains("pick taps of equal stride"));
}

TEST_CASE(
    "CIRKD distils through its projection head against its memory, gradients to the student") {
  auto student = Student();
  auto teacher = Teacher();
  kd::test::OneTeacher teachers(teacher);
  // All 4 pixel and 2 region slots of each class are drawn (1000 / 3 + 1 per class), so that the
  // terms do not depend on which were drawn: a permutation of the contrast leaves the KL alone.
  const std::string toml = std::string("type = \"distillers::CIRKD\"\n") + kTeacher +
                           "student_taps = [\"decode_head.3\"]\nnum_classes = 3\n"
                           "pixel_memory_size = 4\nregion_memory_size = 2\npixels_per_class = 2\n"
                           "pixel_contrast_size = 1000\nregion_contrast_size = 1000\n";
  auto cirkd = MakeDistiller(toml, *student, teachers);
  // The projection head is the distiller's (trained with the student), not the student's.
  CHECK(cirkd->named_parameters().keys() ==
        std::vector<std::string>{"project_head.0.weight", "project_head.1.weight",
                                 "project_head.1.bias", "project_head.3.weight"});
  for (const std::string& key : student->named_parameters().keys()) {
    CHECK(key.find("project_head") == std::string::npos);
  }
  const auto buffers = cirkd->named_buffers();
  REQUIRE(buffers.contains("pixel_queue"));
  CHECK(buffers["pixel_queue"].sizes() == torch::IntArrayRef({3, 4, 12}));
  CHECK(buffers["region_queue"].sizes() == torch::IntArrayRef({3, 2, 12}));
  CHECK(buffers.contains("pixel_queue_ptr"));
  CHECK(buffers.contains("region_queue_ptr"));
  CHECK(buffers.contains("draws"));
  // The queues start as random unit vectors.
  CHECK(torch::allclose(buffers["pixel_queue"].norm(2, 2), torch::ones({3, 4}), 1e-5, 1e-6));

  const kd::TensorDict batch = SegBatch();
  const kd::TensorDict outputs = student->Forward(batch);
  const kd::TensorDict terms = cirkd->Forward(batch, outputs, kd::StepInfo{});
  REQUIRE(terms.Keys() == std::vector<std::string>{"loss.cirkd_batch_p2p", "loss.cirkd_memory_p2p",
                                                   "loss.cirkd_memory_p2r"});
  // The memory took this batch (4 x 4 labels of SegBatch): class 0 has 8 pixels in image 0 and 4
  // in image 1, so two pixels each time, at slots 0-1 then (2 + 2 reaching 4) 2-3, pointer 0;
  // class 1 two at slots 0-1 (image 0), class 2 two at 0-1 (image 1). Regions: class 0 twice
  // (pointer back to 0), classes 1 and 2 once.
  CHECK(torch::equal(buffers["pixel_queue_ptr"], torch::tensor({0, 2, 2}, torch::kLong)));
  CHECK(torch::equal(buffers["region_queue_ptr"], torch::tensor({0, 1, 1}, torch::kLong)));
  CHECK(buffers["draws"].item<int64_t>() == 1);

  torch::Tensor teacher_tap;
  {
    torch::NoGradGuard no_grad;
    teacher_tap = teacher->Forward(batch).at("tap.decode_head.3");
  }
  const torch::Tensor teacher_unit =
      teacher_tap / teacher_tap.norm(2, 1, /*keepdim=*/true).clamp_min(1e-12);
  const torch::Tensor labels = BlockLabels();
  // Class 1's region (image 0, block row 2): the normalised mean of its 4 teacher pixels.
  const torch::Tensor class1 = teacher_unit[0].slice(1, 2, 3).flatten(1).mean(1);
  CHECK(torch::allclose(buffers["region_queue"][1][0], class1 / class1.norm(), 1e-5, 1e-6));

  // The terms from the loop references: the student's embedding through the projection head.
  torch::Tensor projected;
  {
    torch::NoGradGuard no_grad;
    auto head = std::dynamic_pointer_cast<torch::nn::SequentialImpl>(
        cirkd->named_children()["project_head"]);
    REQUIRE(head != nullptr);
    projected = head->forward(outputs.at("tap.decode_head.3"));
  }
  const torch::Tensor student_unit =
      projected / projected.norm(2, 1, /*keepdim=*/true).clamp_min(1e-12);
  const torch::Tensor anchors = torch::nonzero(labels.reshape({-1}) != 255).squeeze(1);
  const auto rows = [&](const torch::Tensor& x) {
    return x.permute({0, 2, 3, 1}).reshape({-1, x.size(1)}).index_select(0, anchors);
  };
  CHECK(Value(terms.at("loss.cirkd_batch_p2p")) ==
        Approx(ReferenceCrossImage(outputs.at("tap.decode_head.3").detach(), teacher_tap, 0.1))
            .epsilon(1e-4));
  CHECK(Value(terms.at("loss.cirkd_memory_p2p")) ==
        Approx(0.1 * ReferenceMemory(rows(student_unit), rows(teacher_unit),
                                     buffers["pixel_queue"].reshape({-1, 12}), 0.1, 1.0))
            .epsilon(1e-4));
  CHECK(Value(terms.at("loss.cirkd_memory_p2r")) ==
        Approx(0.1 * ReferenceMemory(rows(student_unit), rows(teacher_unit),
                                     buffers["region_queue"].reshape({-1, 12}), 0.1, 1.0))
            .epsilon(1e-4));

  (terms.at("loss.cirkd_batch_p2p") + terms.at("loss.cirkd_memory_p2p") +
   terms.at("loss.cirkd_memory_p2r"))
      .backward();
  CHECK(cirkd->named_parameters()["project_head.0.weight"].grad().defined());
  CHECK(cirkd->named_parameters()["project_head.3.weight"].grad().abs().sum().item<double>() > 0);
  CHECK(student->named_parameters()["decode_head.1.weight"].grad().defined());
  CHECK(student->named_parameters()["backbone.stage1.0.weight"].grad().defined());
  for (const torch::Tensor& p : teacher->parameters()) CHECK_FALSE(p.grad().defined());
  for (const auto& b : cirkd->named_buffers()) CHECK_FALSE(b.value().requires_grad());
}

TEST_CASE("CIRKD's memory round-trips through the training state and resumes alike") {
  auto student = Student();
  auto teacher = Teacher();
  kd::test::OneTeacher teachers(teacher);
  const std::string toml = std::string("type = \"distillers::CIRKD\"\n") + kTeacher +
                           "student_taps = [\"decode_head.3\"]\nnum_classes = 3\n"
                           "pixel_memory_size = 64\nregion_memory_size = 8\n";
  auto first = MakeDistiller(toml, *student, teachers);
  const kd::TensorDict batch = SegBatch();
  {
    torch::NoGradGuard no_grad;
    first->Forward(batch, student->Forward(batch), kd::StepInfo{});
  }
  // The state a resume loads: every buffer, the queues and their pointers included.
  const kd::host::StateDict state = kd::host::ModuleState(*first);
  for (const char* key :
       {"pixel_queue", "pixel_queue_ptr", "region_queue", "region_queue_ptr", "draws"}) {
    CAPTURE(key);
    CHECK(state.count(key) == 1);
  }
  // All of each class's pixels (at most 16 per image): class 0 8 + 4, class 1 4, class 2 8.
  CHECK(torch::equal(state.at("pixel_queue_ptr"), torch::tensor({12, 4, 8}, torch::kLong)));
  auto resumed = MakeDistiller(toml, *student, teachers);
  CHECK_FALSE(
      torch::equal(resumed->named_buffers()["pixel_queue_ptr"], state.at("pixel_queue_ptr")));
  kd::ThrowIfError(
      kd::host::LoadModuleState(*resumed, state, kd::host::LoadMode::kStrict, "<state>").status());
  for (const auto& item : first->named_buffers()) {
    CAPTURE(item.key());
    CHECK(torch::equal(item.value(), resumed->named_buffers()[item.key()]));
  }
  // The next step draws and enqueues the same: equal terms and equal memories.
  torch::NoGradGuard no_grad;
  const kd::TensorDict outputs = student->Forward(batch);
  const kd::TensorDict a = first->Forward(batch, outputs, kd::StepInfo{});
  const kd::TensorDict b = resumed->Forward(batch, outputs, kd::StepInfo{});
  for (const std::string& key : a.Keys()) {
    CAPTURE(key);
    CHECK(Value(a.at(key)) == Approx(Value(b.at(key))).epsilon(1e-6));
  }
  CHECK(
      torch::equal(first->named_buffers()["pixel_queue"], resumed->named_buffers()["pixel_queue"]));
}

TEST_CASE("CIRKD's memory takes the pixels of every process of a data-parallel run") {
  auto student = Student();
  auto teacher = Teacher();
  kd::test::OneTeacher teachers(teacher);
  const std::string toml = std::string("type = \"distillers::CIRKD\"\n") + kTeacher +
                           "student_taps = [\"decode_head.3\"]\nnum_classes = 3\n"
                           "pixel_memory_size = 64\nregion_memory_size = 8\n";
  auto cirkd = MakeDistiller(toml, *student, teachers);
  const kd::TensorDict batch = SegBatch();
  torch::NoGradGuard no_grad;
  const kd::TensorDict outputs = student->Forward(batch);
  {
    BackendScope two_ranks(std::make_shared<TwoEqualRanks>());
    cirkd->Forward(batch, outputs, kd::StepInfo{});
  }
  // Both processes' two images: class 0 is in 4 of them, classes 1 and 2 in 2 (one process: 2,
  // 1, 1); the pixels twice those of one process (12, 4, 8).
  CHECK(torch::equal(cirkd->named_buffers()["region_queue_ptr"],
                     torch::tensor({4, 2, 2}, torch::kLong)));
  CHECK(torch::equal(cirkd->named_buffers()["pixel_queue_ptr"],
                     torch::tensor({24, 8, 16}, torch::kLong)));
}

TEST_CASE("CIRKD refuses what it cannot use and says why") {
  auto student = Student();
  auto teacher = Teacher();
  kd::test::OneTeacher teachers(teacher);
  const std::string base = std::string("type = \"distillers::CIRKD\"\n") + kTeacher;
  // One embedding only.
  CHECK_THROWS_WITH(MakeDistiller(base + "student_taps = [\"decode_head.3\", \"decode_head.0\"]\n"
                                         "num_classes = 3\n",
                                  *student, teachers),
                    Catch::Contains("distiller.student_taps") &&
                        Catch::Contains("CIRKD relates one pixel embedding per network"));
  // num_classes = 0 needs the training data's class names; with them it takes their count.
  CHECK_THROWS_WITH(
      MakeDistiller(base + "student_taps = [\"decode_head.3\"]\n", *student, teachers),
      Catch::Contains("distiller.num_classes") &&
          Catch::Contains("set num_classes to the number of labels"));
  const kd::DatasetInfo info("segmentation", {"background", "a", "b", "c"});
  auto from_data =
      MakeDistiller(base + "student_taps = [\"decode_head.3\"]\npixel_memory_size = 32\n", *student,
                    teachers, &info);
  CHECK(from_data->named_buffers()["pixel_queue"].sizes() == torch::IntArrayRef({4, 32, 12}));
  CHECK_THROWS_WITH(MakeDistiller(base + "student_taps = [\"decode_head.3\"]\nnum_classes = 3\n"
                                         "pixel_memory_size = 8\n",
                                  *student, teachers),
                    Catch::Contains("distiller.pixel_memory_size") &&
                        Catch::Contains("at least the 16 pixels_per_class"));

  auto cirkd = MakeDistiller(base +
                                 "student_taps = [\"decode_head.3\"]\nnum_classes = 3\n"
                                 "pixel_memory_size = 64\n",
                             *student, teachers);
  const kd::TensorDict batch = SegBatch();
  const kd::TensorDict outputs = student->Forward(batch);
  // No labels in the batch.
  CHECK_THROWS_WITH(cirkd->Forward({{"image", batch.at("image")}}, outputs, kd::StepInfo{}),
                    Catch::Contains("distillers::CIRKD: the batch has no 'mask'") &&
                        Catch::Contains("set labels_key"));
  // Labels of another class count.
  kd::TensorDict wrong = batch;
  wrong.Set("mask", torch::full({2, 32, 32}, 7, torch::kLong));
  CHECK_THROWS_WITH(cirkd->Forward(wrong, outputs, kd::StepInfo{}),
                    Catch::Contains("label 7 is not below the memory's 3 classes"));
  kd::TensorDict soft = batch;
  soft.Set("mask", torch::zeros({2, 3, 32, 32}));
  CHECK_THROWS_WITH(cirkd->Forward(soft, outputs, kd::StepInfo{}),
                    Catch::Contains("CIRKD needs one integer class per pixel"));
  // A tap that is not a dense map.
  kd::TensorDict pooled = outputs;
  pooled.Set("tap.decode_head.3", outputs.at("tap.decode_head.3").mean(std::vector<int64_t>{2, 3}));
  CHECK_THROWS_WITH(cirkd->Forward(batch, pooled, kd::StepInfo{}),
                    Catch::Contains("the student's tap 'decode_head.3' has shape [2, 6]") &&
                        Catch::Contains("dense [B, C, h, w] feature maps"));
  // A tap the model does not have, at its key, with the ones it has.
  CHECK_THROWS_WITH(MakeDistiller(base + "student_taps = [\"decode_head.7\"]\nnum_classes = 3\n",
                                  *student, teachers),
                    Catch::Contains("distiller.student_taps") &&
                        Catch::Contains("no feature tap 'decode_head.7'") &&
                        Catch::Contains("aux_head.2"));
}
