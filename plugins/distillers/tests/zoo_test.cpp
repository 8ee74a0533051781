// Tests of the distiller zoo: DKD, DIST, FitNets, AT, SP, RKD and PKT. Each formula is checked on
// tiny tensors against numbers computed by hand and, on random tensors, against a reference
// written here with plain loops from the paper's equation; the feature distillers are built as a
// stage builds them, on real backbones with feature taps.
#include <torch/torch.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "feature_losses/feature_losses.h"
#include "host/options_impl.h"
#include "host/validate.h"
#include "kd/distiller.h"
#include "kd/model.h"
#include "logit_losses/logit_losses.h"
#include "one_teacher.h"
#include "test_support.h"

namespace {

double Value(const torch::Tensor& scalar) { return scalar.item<double>(); }

torch::Tensor Random(std::vector<int64_t> shape, uint64_t seed) {
  torch::manual_seed(seed);
  return torch::randn(shape, torch::kDouble);
}

// --- references from the papers' equations, one number at a time ---

// AT (Zagoruyko and Komodakis, eq. 2): Q_j = Σ_c |A_cj|^p per position j, Q/‖Q‖₂; the mean over
// the batch and positions of the squared difference.
double ReferenceAt(const torch::Tensor& s, const torch::Tensor& t) {
  const int64_t b = s.size(0);
  const int64_t hw = s.size(2) * s.size(3);
  auto q = [&](const torch::Tensor& x, int64_t n) {
    std::vector<double> map(static_cast<size_t>(hw));
    double norm = 0;
    for (int64_t j = 0; j < hw; ++j) {
      double sum = 0;
      for (int64_t c = 0; c < x.size(1); ++c) {
        const double a = x[n][c][j / x.size(3)][j % x.size(3)].item<double>();
        sum += a * a;
      }
      map[static_cast<size_t>(j)] = sum;
      norm += sum * sum;
    }
    for (double& v : map) v /= std::sqrt(norm);
    return map;
  };
  double total = 0;
  for (int64_t n = 0; n < b; ++n) {
    const std::vector<double> qs = q(s, n);
    const std::vector<double> qt = q(t, n);
    for (size_t j = 0; j < qs.size(); ++j) total += (qs[j] - qt[j]) * (qs[j] - qt[j]);
  }
  return total / static_cast<double>(b * hw);
}

// The rows of x [B, D] as vectors.
std::vector<std::vector<double>> RowsOf(const torch::Tensor& x) {
  std::vector<std::vector<double>> rows(static_cast<size_t>(x.size(0)));
  for (int64_t i = 0; i < x.size(0); ++i) {
    for (int64_t d = 0; d < x.size(1); ++d)
      rows[static_cast<size_t>(i)].push_back(x[i][d].item<double>());
  }
  return rows;
}

double Dot(const std::vector<double>& a, const std::vector<double>& b) {
  double sum = 0;
  for (size_t i = 0; i < a.size(); ++i) sum += a[i] * b[i];
  return sum;
}

// SP (Tung and Mori, eqs. 2-4): G = Q Qᵀ, rows L2-normalised; ‖G_t − G_s‖²_F / B².
double ReferenceSp(const torch::Tensor& s, const torch::Tensor& t) {
  const auto gram = [](const torch::Tensor& x) {
    const auto rows = RowsOf(x.reshape({x.size(0), -1}));
    std::vector<std::vector<double>> g(rows.size(), std::vector<double>(rows.size()));
    for (size_t i = 0; i < rows.size(); ++i) {
      double norm = 0;
      for (size_t j = 0; j < rows.size(); ++j) {
        g[i][j] = Dot(rows[i], rows[j]);
        norm += g[i][j] * g[i][j];
      }
      for (double& v : g[i]) v /= std::sqrt(norm);
    }
    return g;
  };
  const auto gs = gram(s);
  const auto gt = gram(t);
  double sum = 0;
  for (size_t i = 0; i < gs.size(); ++i) {
    for (size_t j = 0; j < gs.size(); ++j) sum += (gt[i][j] - gs[i][j]) * (gt[i][j] - gs[i][j]);
  }
  return sum / static_cast<double>(gs.size() * gs.size());
}

double Huber(double x) { return std::abs(x) < 1 ? 0.5 * x * x : std::abs(x) - 0.5; }

// RKD distance (Park et al., eqs. 4-5): ψ_D = ‖t_i − t_j‖ / μ with μ the mean over the pairs
// i ≠ j; the Huber loss averaged over all B² entries (the diagonal is 0 on both sides).
double ReferenceRkdDistance(const torch::Tensor& s, const torch::Tensor& t) {
  const auto distances = [](const torch::Tensor& x) {
    const auto rows = RowsOf(x);
    const size_t b = rows.size();
    std::vector<std::vector<double>> d(b, std::vector<double>(b, 0.0));
    double sum = 0;
    for (size_t i = 0; i < b; ++i) {
      for (size_t j = 0; j < b; ++j) {
        if (i == j) continue;
        double sq = 0;
        for (size_t k = 0; k < rows[i].size(); ++k) sq += std::pow(rows[i][k] - rows[j][k], 2);
        d[i][j] = std::sqrt(sq);
        sum += d[i][j];
      }
    }
    const double mean = sum / static_cast<double>(b * (b - 1));
    for (auto& row : d) {
      for (double& v : row) v /= mean;
    }
    return d;
  };
  const auto ds = distances(s);
  const auto dt = distances(t);
  double loss = 0;
  for (size_t i = 0; i < ds.size(); ++i) {
    for (size_t j = 0; j < ds.size(); ++j) loss += Huber(ds[i][j] - dt[i][j]);
  }
  return loss / static_cast<double>(ds.size() * ds.size());
}

// RKD angle (eqs. 6-7): ψ_A(t_i, t_j, t_k) = cos∠t_i t_j t_k = ⟨e_ij, e_kj⟩ with
// e_ij = (t_i − t_j)/‖t_i − t_j‖ (0 when i = j); the Huber loss averaged over all B³ triplets.
double ReferenceRkdAngle(const torch::Tensor& s, const torch::Tensor& t) {
  const auto cosines = [](const torch::Tensor& x) {
    const auto rows = RowsOf(x);
    const size_t b = rows.size();
    auto unit = [&](size_t i, size_t j) {
      std::vector<double> e(rows[i].size());
      double norm = 0;
      for (size_t k = 0; k < e.size(); ++k) {
        e[k] = rows[i][k] - rows[j][k];
        norm += e[k] * e[k];
      }
      norm = std::max(std::sqrt(norm), 1e-12);
      for (double& v : e) v /= norm;
      return e;
    };
    std::vector<double> out;
    for (size_t j = 0; j < b; ++j) {
      for (size_t i = 0; i < b; ++i) {
        for (size_t k = 0; k < b; ++k) out.push_back(Dot(unit(i, j), unit(k, j)));
      }
    }
    return out;
  };
  const auto cs = cosines(s);
  const auto ct = cosines(t);
  double loss = 0;
  for (size_t i = 0; i < cs.size(); ++i) loss += Huber(cs[i] - ct[i]);
  return loss / static_cast<double>(cs.size());
}

// PKT (Passalis and Tefas, eqs. 7-10) with the cosine kernel K(a, b) = (cos(a, b) + 1) / 2:
// p_{i|j} = K(x_i, x_j) / Σ_k K(x_k, x_j), the KL of the teacher's from the student's, averaged
// over the B² entries (ε = 1e-7 as in the authors' code, negligible here).
constexpr double kPktEps = 1e-7;

double ReferencePkt(const torch::Tensor& s, const torch::Tensor& t) {
  const auto conditional = [](const torch::Tensor& x) {
    const auto rows = RowsOf(x);
    const size_t b = rows.size();
    std::vector<std::vector<double>> p(b, std::vector<double>(b));
    for (size_t i = 0; i < b; ++i) {
      double sum = 0;
      for (size_t j = 0; j < b; ++j) {
        // The official code adds ε = 1e-7 to each norm and inside the log ratio; the loss is small
        // enough (≈ 5e-8 before the weight) that leaving ε out differs in the sixth digit.
        const double cos = Dot(rows[i], rows[j]) / ((std::sqrt(Dot(rows[i], rows[i])) + kPktEps) *
                                                    (std::sqrt(Dot(rows[j], rows[j])) + kPktEps));
        p[i][j] = (cos + 1) / 2;
        sum += p[i][j];
      }
      for (double& v : p[i]) v /= sum;
    }
    return p;
  };
  const auto ps = conditional(s);
  const auto pt = conditional(t);
  double loss = 0;
  for (size_t i = 0; i < ps.size(); ++i) {
    for (size_t j = 0; j < ps.size(); ++j)
      loss += pt[i][j] * std::log((pt[i][j] + kPktEps) / (ps[i][j] + kPktEps));
  }
  return loss / static_cast<double>(ps.size() * ps.size());
}

std::vector<double> Softmax(const std::vector<double>& z, double temperature) {
  double max = z[0];
  for (double v : z) max = std::max(max, v);
  std::vector<double> p;
  double sum = 0;
  for (double v : z) {
    p.push_back(std::exp((v - max) / temperature));
    sum += p.back();
  }
  for (double& v : p) v /= sum;
  return p;
}

// DKD (Zhao et al., eqs. 1-7) for one sample: b = (p_target, 1 − p_target); p̂ the softmax over
// the non-target classes; TCKD = KL(b_t ‖ b_s), NCKD = KL(p̂_t ‖ p̂_s), both times T².
std::pair<double, double> ReferenceDkd(const std::vector<double>& s, const std::vector<double>& t,
                                       size_t target, double temperature) {
  const std::vector<double> ps = Softmax(s, temperature);
  const std::vector<double> pt = Softmax(t, temperature);
  const double tckd = pt[target] * std::log(pt[target] / ps[target]) +
                      (1 - pt[target]) * std::log((1 - pt[target]) / (1 - ps[target]));
  std::vector<double> ns;
  std::vector<double> nt;
  for (size_t i = 0; i < s.size(); ++i) {
    if (i == target) continue;
    ns.push_back(s[i]);
    nt.push_back(t[i]);
  }
  const std::vector<double> qs = Softmax(ns, temperature);
  const std::vector<double> qt = Softmax(nt, temperature);
  double nckd = 0;
  for (size_t i = 0; i < qs.size(); ++i) nckd += qt[i] * std::log(qt[i] / qs[i]);
  const double t2 = temperature * temperature;
  return {t2 * tckd, t2 * nckd};
}

// Pearson correlation of two vectors.
double Pearson(const std::vector<double>& a, const std::vector<double>& b) {
  double ma = 0;
  double mb = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    ma += a[i] / static_cast<double>(a.size());
    mb += b[i] / static_cast<double>(b.size());
  }
  double ab = 0;
  double aa = 0;
  double bb = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    ab += (a[i] - ma) * (b[i] - mb);
    aa += (a[i] - ma) * (a[i] - ma);
    bb += (b[i] - mb) * (b[i] - mb);
  }
  return ab / std::sqrt(aa * bb);
}

}  // namespace

TEST_CASE("AT matches a hand-computed example and the loop reference of eq. 2") {
  // One position pair: student activations (1, 2) -> squares (1, 4) / √17; teacher (2, 1) ->
  // (4, 1) / √17. Both differences are ±3/√17, so the mean of the squares is 9/17.
  const torch::Tensor s = torch::tensor({1.0, 2.0}, torch::kDouble).reshape({1, 1, 1, 2});
  const torch::Tensor t = torch::tensor({2.0, 1.0}, torch::kDouble).reshape({1, 1, 1, 2});
  CHECK(Value(feature_losses::AttentionTransfer(s, t, 2.0)) == Approx(9.0 / 17.0));
  // Channels may differ (3 against 5), resolutions may not.
  const torch::Tensor rs = Random({2, 3, 2, 3}, 1);
  const torch::Tensor rt = Random({2, 5, 2, 3}, 2);
  CHECK(Value(feature_losses::AttentionTransfer(rs, rt, 2.0)) == Approx(ReferenceAt(rs, rt)));
  CHECK_THROWS_WITH(feature_losses::AttentionTransfer(rs, Random({2, 5, 4, 6}, 3), 2.0),
                    Catch::Contains("same batch and resolution"));
}

TEST_CASE("SP matches a hand-computed example and the loop reference of eqs. 2-4") {
  // Student rows (1, 0), (0, 1): G = I. Teacher rows (1, 1), (1, 1): G = 2·ones, normalised rows
  // (1/√2, 1/√2). ‖G_t − G_s‖² = 2·((1 − 1/√2)² + 1/2) = 4 − 2√2; over B² = 4: 1 − √2/2.
  const torch::Tensor s = torch::tensor({{1.0, 0.0}, {0.0, 1.0}}, torch::kDouble);
  const torch::Tensor t = torch::tensor({{1.0, 1.0}, {1.0, 1.0}}, torch::kDouble);
  CHECK(Value(feature_losses::SimilarityPreserving(s, t)) == Approx(1 - std::sqrt(2.0) / 2));
  const torch::Tensor rs = Random({4, 3, 2, 2}, 4);
  const torch::Tensor rt = Random({4, 7, 1, 1}, 5);
  CHECK(Value(feature_losses::SimilarityPreserving(rs, rt)) == Approx(ReferenceSp(rs, rt)));
}

TEST_CASE("RKD's distance and angle terms match a hand example and the loop references") {
  // Points 0, 1, 2 on a line against 0, 2, 3: distances (1, 2, 1) / (4/3) = (0.75, 1.5, 0.75)
  // against (2, 3, 1) / 2 = (1, 1.5, 0.5). Differences 0.25, 0, 0.25, each twice: Huber
  // 0.5·0.0625 four times = 0.125, over the 9 entries.
  const torch::Tensor s = torch::tensor({{0.0}, {1.0}, {2.0}}, torch::kDouble);
  const torch::Tensor t = torch::tensor({{0.0}, {2.0}, {3.0}}, torch::kDouble);
  CHECK(Value(feature_losses::RkdDistance(s, t)) == Approx(0.125 / 9));
  // Collinear points in the same order have the same angles (cosines ±1, or 0 for i = j).
  CHECK(Value(feature_losses::RkdAngle(s, t)) == Approx(0.0).margin(1e-12));
  const torch::Tensor rs = Random({5, 3}, 6);
  const torch::Tensor rt = Random({5, 8}, 7) * 4;
  CHECK(Value(feature_losses::RkdDistance(rs, rt)) == Approx(ReferenceRkdDistance(rs, rt)));
  CHECK(Value(feature_losses::RkdAngle(rs, rt)) == Approx(ReferenceRkdAngle(rs, rt)));
  // Distances are normalised by their mean: scaling the teacher changes nothing.
  CHECK(Value(feature_losses::RkdDistance(rs, 10 * rt)) ==
        Approx(Value(feature_losses::RkdDistance(rs, rt))));
}

TEST_CASE("PKT matches a hand-computed example and the loop reference of eqs. 7-10") {
  // Student rows (1, 0), (0, 1): kernel ((1, .5), (.5, 1)), conditionals (2/3, 1/3) and
  // (1/3, 2/3). Teacher rows equal: all 1/2. Each row: .5·ln(.75) + .5·ln(1.5) = .5·ln(1.125);
  // two rows over 4 entries: ln(1.125)/4 = 0.0294458.
  const torch::Tensor s = torch::tensor({{1.0, 0.0}, {0.0, 1.0}}, torch::kDouble);
  const torch::Tensor t = torch::tensor({{1.0, 0.0}, {1.0, 0.0}}, torch::kDouble);
  CHECK(Value(feature_losses::Pkt(s, t)) == Approx(std::log(1.125) / 4).epsilon(1e-5));
  const torch::Tensor rs = Random({6, 4}, 8);
  const torch::Tensor rt = Random({6, 9}, 9);
  CHECK(Value(feature_losses::Pkt(rs, rt)) == Approx(ReferencePkt(rs, rt)).epsilon(1e-5));
}

TEST_CASE("DKD matches the loop reference and decomposes KD as the paper's eq. 5 says") {
  const torch::Tensor s = Random({4, 5}, 10);
  const torch::Tensor t = Random({4, 5}, 11) * 2;
  const torch::Tensor labels = torch::tensor({0, 3, 4, 1}, torch::kLong);
  for (double temperature : {1.0, 4.0}) {
    const logit_losses::DkdTerms terms = logit_losses::Dkd(s, t, labels, temperature);
    double tckd = 0;
    double nckd = 0;
    for (int64_t n = 0; n < 4; ++n) {
      const auto [tc, nc] =
          ReferenceDkd(RowsOf(s)[static_cast<size_t>(n)], RowsOf(t)[static_cast<size_t>(n)],
                       static_cast<size_t>(labels[n].item<int64_t>()), temperature);
      tckd += tc / 4;
      nckd += nc / 4;
      // Eq. 5, one sample at a time: KD = TCKD + (1 − p_t^target) · NCKD.
      const logit_losses::DkdTerms one = logit_losses::Dkd(
          s.slice(0, n, n + 1), t.slice(0, n, n + 1), labels.slice(0, n, n + 1), temperature);
      const double p_target = Softmax(RowsOf(t)[static_cast<size_t>(n)],
                                      temperature)[static_cast<size_t>(labels[n].item<int64_t>())];
      CHECK(
          Value(logit_losses::SoftmaxKd(s.slice(0, n, n + 1), t.slice(0, n, n + 1), temperature)) ==
          Approx(Value(one.tckd) + (1 - p_target) * Value(one.nckd)).epsilon(1e-6));
    }
    CHECK(Value(terms.tckd) == Approx(tckd).epsilon(1e-6));
    CHECK(Value(terms.nckd) == Approx(nckd).epsilon(1e-6));
  }
  CHECK_THROWS_WITH(logit_losses::Dkd(s, t, torch::zeros({4, 5}, torch::kLong), 4.0),
                    Catch::Contains("one class per sample"));
}

TEST_CASE("DIST matches the loop reference of eqs. 5-8 and is 0 for a perfect match") {
  const torch::Tensor s = Random({5, 4}, 12);
  const torch::Tensor t = Random({5, 4}, 13);
  const double tau = 2.0;
  const logit_losses::DistTerms terms = logit_losses::Dist(s, t, tau);
  std::vector<std::vector<double>> ys;
  std::vector<std::vector<double>> yt;
  for (const auto& row : RowsOf(s)) ys.push_back(Softmax(row, tau));
  for (const auto& row : RowsOf(t)) yt.push_back(Softmax(row, tau));
  double inter = 0;
  for (size_t n = 0; n < ys.size(); ++n) inter += Pearson(ys[n], yt[n]) / 5;
  double intra = 0;
  for (size_t c = 0; c < 4; ++c) {
    std::vector<double> cs;
    std::vector<double> ct;
    for (size_t n = 0; n < ys.size(); ++n) {
      cs.push_back(ys[n][c]);
      ct.push_back(yt[n][c]);
    }
    intra += Pearson(cs, ct) / 4;
  }
  CHECK(Value(terms.inter) == Approx(tau * tau * (1 - inter)).epsilon(1e-6));
  CHECK(Value(terms.intra) == Approx(tau * tau * (1 - intra)).epsilon(1e-6));
  // A teacher whose probabilities are an affine image of the student's correlates perfectly.
  const logit_losses::DistTerms same = logit_losses::Dist(s, s.clone(), tau);
  CHECK(Value(same.inter) == Approx(0.0).margin(1e-5));  // ε = 1e-8 over small variances
  CHECK(Value(same.intra) == Approx(0.0).margin(1e-5));
}

namespace {

// Hands out one fixed teacher whatever the teacher table says.
std::shared_ptr<kd::Model> SmallCnnStudent() {
  return kd::test::Make<kd::Model>(kd::Kind::kModel, R"(type = "core::BackboneHead"
backbone = { type = "resnet::SmallCNN", in_channels = 1, channels = [4, 8] }
head = { type = "mlic_heads::GapLinear", num_classes = 3 })");
}

std::shared_ptr<kd::Model> ResNetTeacher() {
  auto teacher = kd::test::Make<kd::Model>(kd::Kind::kModel, R"(type = "core::BackboneHead"
backbone = { type = "resnet::ResNet", depth = 18, in_channels = 1 }
head = { type = "mlic_heads::GapLinear", num_classes = 3 })");
  teacher->eval();
  return teacher;
}

// Builds a distiller from its TOML table as a training stage does: with the stage's student.
std::shared_ptr<kd::Distiller> MakeDistiller(const std::string& toml, kd::Model& student,
                                             const kd::StageAccess& teachers) {
  kd::host::CNode table = kd::ValueOrThrow(kd::host::ParseToml(toml, "<test>"));
  kd::ThrowIfError(kd::host::ValidateComponent(table, kd::Kind::kDistiller,
                                               kd::test::SharedHost().registry(), "distiller"));
  const kd::Options options = kd::host::MakeOptions(std::move(table), "distiller");
  return kd::BuildContext(kd::test::SharedHost().registry(), torch::kCPU)
      .WithStageAccess(&teachers)
      .WithStudent(&student)
      .Build<kd::Distiller>(kd::Kind::kDistiller, options);
}

const char* const kTeacher = "teacher = { checkpoint = \"teacher.pt\" }\n";

}  // namespace

TEST_CASE("Backbones name their blocks' outputs as taps and return only the taps asked for") {
  auto resnet = ResNetTeacher();
  const std::vector<std::string> names = resnet->TapNames();
  // The stem (relu, maxpool), two blocks and the stage output for each of the 4 stages.
  REQUIRE(names.size() == 2 + 4 * 3);
  CHECK(names[0] == "relu");
  CHECK(names[2] == "layer1.0");
  CHECK(names.back() == "layer4");
  CHECK(resnet->TapChannels("layer3.1") == 256);
  CHECK(resnet->TapChannels("maxpool") == 64);
  const kd::TensorDict batch{{"image", torch::randn({2, 1, 32, 32})}};
  CHECK_FALSE(resnet->Forward(batch).contains("tap.layer2.0"));
  resnet->SetTaps({"layer2.0", "layer2"});
  const kd::TensorDict outputs = resnet->Forward(batch);
  // Stride 8 on 32x32 inputs; a stage's tap is its last block's output, the stage feature.
  CHECK(outputs.at("tap.layer2.0").sizes() == torch::IntArrayRef({2, 128, 4, 4}));
  CHECK(torch::equal(outputs.at("tap.layer2"), outputs.at("feat.layer2")));
  CHECK_FALSE(outputs.contains("tap.layer1.0"));

  auto small = SmallCnnStudent();
  CHECK(small->TapNames().size() == 2 * 8);
  CHECK(small->TapChannels("stage2.3") == 8);
  CHECK_THROWS_WITH(small->SetTaps({"stage9"}),
                    Catch::Contains("resnet::SmallCNN has no feature tap 'stage9'") &&
                        Catch::Contains("stage1.0"));

  auto mobilenet =
      kd::test::Make<kd::Backbone>(kd::Kind::kBackbone, R"(type = "mobilenet::MobileNetV2")");
  CHECK(mobilenet->TapNames().front() == "features.0");
  CHECK(mobilenet->TapNames().back() == "features.17");
  CHECK(mobilenet->TapChannels("features.1") == 16);
  CHECK(mobilenet->TapChannels("features.17") == 320);
}

TEST_CASE("FitNets trains its regressor with the student, keeps the teacher frozen, exports none") {
  auto student = SmallCnnStudent();
  auto teacher = ResNetTeacher();
  kd::test::OneTeacher teachers(teacher);
  // SmallCNN's stage2 and ResNet's layer1 both have stride 4: 8x8 maps of 8 and 64 channels.
  auto fitnets = MakeDistiller(std::string("type = \"distillers::FitNets\"\n") + kTeacher +
                                   "student_taps = [\"stage2\"]\nteacher_taps = [\"layer1\"]\n"
                                   "weight = 2.0\n",
                               *student, teachers);
  const std::vector<std::string> adapter = fitnets->named_parameters().keys();
  CHECK(adapter == std::vector<std::string>{"regressors.0.weight", "regressors.0.bias"});
  for (const std::string& key : student->named_parameters().keys()) {
    CHECK(key.find("regressor") == std::string::npos);
  }
  const kd::TensorDict batch{{"image", torch::randn({2, 1, 32, 32})}};
  const kd::TensorDict outputs = student->Forward(batch);
  REQUIRE(outputs.contains("tap.stage2"));
  const kd::TensorDict terms = fitnets->Forward(batch, outputs, kd::StepInfo{});
  REQUIRE(terms.Keys() == std::vector<std::string>{"loss.fitnets"});
  // By hand: the 1x1 convolution of the student's map against the teacher's, squared, averaged.
  torch::Tensor expected;
  {
    torch::NoGradGuard no_grad;
    const torch::Tensor w = fitnets->named_parameters()["regressors.0.weight"];
    const torch::Tensor b = fitnets->named_parameters()["regressors.0.bias"];
    const torch::Tensor regressed =
        torch::einsum("oc,nchw->nohw", {w.flatten(1), outputs.at("tap.stage2")}) +
        b.reshape({1, -1, 1, 1});
    expected = 2.0 * (regressed - teacher->Forward(batch).at("tap.layer1")).pow(2).mean();
  }
  CHECK(Value(terms.at("loss.fitnets")) == Approx(Value(expected)).epsilon(1e-5));
  terms.at("loss.fitnets").backward();
  CHECK(fitnets->named_parameters()["regressors.0.weight"].grad().defined());
  CHECK(student->named_parameters()["backbone.stage1.0.weight"].grad().defined());
  for (const torch::Tensor& p : teacher->parameters()) CHECK_FALSE(p.grad().defined());

  // Without an adapter the channels must agree.
  CHECK_THROWS_WITH(MakeDistiller(std::string("type = \"distillers::FitNets\"\n") + kTeacher +
                                      "student_taps = [\"stage2\"]\nteacher_taps = [\"layer1\"]\n"
                                      "adapter = \"none\"\n",
                                  *student, teachers),
                    Catch::Contains("8 channels and the teacher's 64"));
}

TEST_CASE("AT, SP, RKD and PKT weight their formulas on the taps they name") {
  torch::manual_seed(0);
  // In double precision: the post-ReLU embeddings are nearly parallel, so PKT's and RKD's small
  // differences of near-equal kernels would carry float32 rounding into the comparison.
  auto student = SmallCnnStudent();
  auto teacher = ResNetTeacher();
  student->to(torch::kDouble);
  teacher->to(torch::kDouble);
  kd::test::OneTeacher teachers(teacher);
  const std::string taps = "student_taps = [\"stage2\"]\nteacher_taps = [\"layer1\"]\n";
  struct Case {
    std::string type;
    std::vector<std::string> terms;
  };
  const std::vector<Case> cases = {{"distillers::AT", {"loss.at"}},
                                   {"distillers::SP", {"loss.sp"}},
                                   {"distillers::RKD", {"loss.rkd_distance", "loss.rkd_angle"}},
                                   {"distillers::PKT", {"loss.pkt"}}};
  std::vector<std::shared_ptr<kd::Distiller>> distillers;
  for (const Case& c : cases) {
    distillers.push_back(
        MakeDistiller("type = \"" + c.type + "\"\n" + kTeacher + taps, *student, teachers));
    CHECK(distillers.back()->parameters().empty());
  }
  const kd::TensorDict batch{{"image", torch::randn({4, 1, 32, 32}, torch::kDouble)}};
  const kd::TensorDict outputs = student->Forward(batch);
  const torch::Tensor s = outputs.at("tap.stage2").detach();
  torch::Tensor t;
  {
    torch::NoGradGuard no_grad;
    t = teacher->Forward(batch).at("tap.layer1");
  }
  const torch::Tensor es = s.mean(std::vector<int64_t>{2, 3});
  const torch::Tensor et = t.mean(std::vector<int64_t>{2, 3});
  // The paper's default weights: β/2 = 500, γ = 3000, λ_D = 25 and λ_A = 50, 30000.
  const std::vector<std::vector<double>> expected = {
      {500 * ReferenceAt(s, t)},
      {3000 * ReferenceSp(s, t)},
      {25 * ReferenceRkdDistance(es, et), 50 * ReferenceRkdAngle(es, et)},
      {30000 * ReferencePkt(es, et)}};
  for (size_t i = 0; i < cases.size(); ++i) {
    const kd::TensorDict terms = distillers[i]->Forward(batch, outputs, kd::StepInfo{});
    REQUIRE(terms.Keys() == cases[i].terms);
    for (size_t k = 0; k < cases[i].terms.size(); ++k) {
      INFO(cases[i].terms[k]);
      CHECK(Value(terms.at(cases[i].terms[k])) == Approx(expected[i][k]).epsilon(1e-6));
    }
  }
  // AT needs equal resolutions: stage1 (16x16) against layer1 (8x8).
  auto at = MakeDistiller(std::string("type = \"distillers::AT\"\n") + kTeacher +
                              "student_taps = [\"stage1\"]\nteacher_taps = [\"layer1\"]\n",
                          *student, teachers);
  CHECK_THROWS_WITH(at->Forward(batch, student->Forward(batch), kd::StepInfo{}),
                    Catch::Contains("same batch and resolution"));
  // An unknown tap is refused when the distiller is built, at its key, listing the taps.
  CHECK_THROWS_WITH(MakeDistiller(std::string("type = \"distillers::AT\"\n") + kTeacher +
                                      "student_taps = [\"layer1\"]\n",
                                  *student, teachers),
                    Catch::Contains("student_taps") && Catch::Contains("no feature tap 'layer1'") &&
                        Catch::Contains("stage2.6"));
  CHECK_THROWS_WITH(MakeDistiller(std::string("type = \"distillers::SP\"\n") + kTeacher +
                                      "student_taps = [\"stage1\", \"stage2\"]\n"
                                      "teacher_taps = [\"layer1\"]\n",
                                  *student, teachers),
                    Catch::Contains("one teacher tap per student tap"));
}

TEST_CASE("DKD on dense logits resizes the labels, skips ignored pixels and refuses multi-hot") {
  auto teacher = ResNetTeacher();
  kd::test::OneTeacher teachers(teacher);
  auto student = SmallCnnStudent();
  auto dkd = MakeDistiller(std::string("type = \"distillers::DKD\"\n") + kTeacher +
                               "labels_key = \"mask\"\nlogits_key = \"feat.layer1\"\n"
                               "warmup_epochs = 4\n",
                           *student, teachers);
  // Dense "logits": the teacher's 64-channel layer1 map (8x8) against a student map of the same
  // shape; labels at 16x16, resized by nearest neighbour to 8x8 (every other pixel).
  const torch::Tensor image = torch::randn({1, 1, 32, 32});
  const kd::TensorDict batch{{"image", image}};
  torch::Tensor teacher_map;
  {
    torch::NoGradGuard no_grad;
    teacher_map = teacher->Forward(batch).at("feat.layer1");
  }
  const torch::Tensor student_map = torch::randn({1, 64, 8, 8});
  torch::Tensor mask = torch::randint(0, 64, {1, 16, 16}, torch::kLong);
  mask.index_put_({0, 0, 0}, 255);  // pixel (0, 0) of the 8x8 grid is ignored
  const kd::TensorDict terms = dkd->Forward({{"image", image}, {"mask", mask}},
                                            {{"feat.layer1", student_map}}, kd::StepInfo{});
  const torch::Tensor labels =
      mask.index({0, torch::indexing::Slice(0, 16, 2), torch::indexing::Slice(0, 16, 2)})
          .reshape({-1});
  const torch::Tensor keep = labels != 255;
  const auto rows = [](const torch::Tensor& x) { return x[0].flatten(1).t(); };
  const logit_losses::DkdTerms expected = logit_losses::Dkd(
      rows(student_map).index({keep}), rows(teacher_map).index({keep}), labels.index({keep}), 4.0);
  // Epoch 0 of a 4-epoch warm-up: a quarter of α·TCKD (α = 1) and of β·NCKD (β = 8).
  CHECK(Value(terms.at("loss.dkd_tckd")) == Approx(0.25 * Value(expected.tckd)).epsilon(1e-5));
  CHECK(Value(terms.at("loss.dkd_nckd")) == Approx(0.25 * 8 * Value(expected.nckd)).epsilon(1e-5));
  CHECK_THROWS_WITH(dkd->Forward({{"image", image}, {"mask", torch::zeros({1, 64})}},
                                 {{"feat.layer1", student_map}}, kd::StepInfo{}),
                    Catch::Contains("multi-hot"));
}

TEST_CASE("the zoo's distillers refuse what they cannot use and say why") {
  auto teacher = ResNetTeacher();
  kd::test::OneTeacher teachers(teacher);
  auto student = SmallCnnStudent();
  const std::string fitnets =
      std::string("type = \"distillers::FitNets\"\n") + kTeacher + "student_taps = [\"stage2\"]\n";
  // A teacher tap its backbone does not have, at teacher_taps, with the ones it has.
  CHECK_THROWS_WITH(MakeDistiller(fitnets + "teacher_taps = [\"layer9\"]\n", *student, teachers),
                    Catch::Contains("teacher_taps") && Catch::Contains("no feature tap 'layer9'") &&
                        Catch::Contains("layer4"));
  // Built outside a training stage: no student to take taps from.
  {
    kd::host::CNode table =
        kd::ValueOrThrow(kd::host::ParseToml(fitnets + "teacher_taps = [\"layer2\"]\n", "<test>"));
    kd::ThrowIfError(kd::host::ValidateComponent(table, kd::Kind::kDistiller,
                                                 kd::test::SharedHost().registry(), "distiller"));
    const kd::Options options = kd::host::MakeOptions(std::move(table), "distiller");
    CHECK_THROWS_WITH(kd::BuildContext(kd::test::SharedHost().registry(), torch::kCPU)
                          .WithStageAccess(&teachers)
                          .Build<kd::Distiller>(kd::Kind::kDistiller, options),
                      Catch::Contains("distiller.student_taps") &&
                          Catch::Contains("built inside a training stage"));
  }
  // Student outputs without the tap it asked for (a model that does not pass taps on).
  auto built = MakeDistiller(fitnets + "teacher_taps = [\"layer2\"]\n", *student, teachers);
  const kd::TensorDict batch{{"image", torch::randn({2, 1, 32, 32})}};
  kd::TensorDict outputs = student->Forward(batch);
  kd::TensorDict without_tap;
  for (const std::string& key : outputs.Keys()) {
    if (key != "tap.stage2") without_tap.Set(key, outputs.at(key));
  }
  CHECK_THROWS_WITH(built->Forward(batch, without_tap, kd::StepInfo{}),
                    Catch::Contains("distillers::FitNets: the model's outputs have no "
                                    "'tap.stage2' although the tap was requested"));
  // DKD: labels it cannot find, labels outside the logits' classes, labels that do not pair with
  // the logits' rows.
  const kd::TensorDict dense{{"image", torch::randn({1, 1, 32, 32})}};
  const kd::TensorDict student_map{{"feat.layer1", torch::randn({1, 64, 8, 8})}};
  auto dkd = MakeDistiller(
      std::string("type = \"distillers::DKD\"\n") + kTeacher + "logits_key = \"feat.layer1\"\n",
      *student, teachers);
  CHECK_THROWS_WITH(dkd->Forward(dense, student_map, kd::StepInfo{}),
                    Catch::Contains("neither the student's outputs nor the batch have 'label'; "
                                    "set labels_key"));
  kd::TensorDict out_of_range = dense;
  out_of_range.Set("label", torch::full({1, 8, 8}, 70, torch::kLong));
  CHECK_THROWS_WITH(dkd->Forward(out_of_range, student_map, kd::StepInfo{}),
                    Catch::Contains("label 70 in 'label' is not below the logits' 64 classes"));
  kd::TensorDict unpaired = dense;
  unpaired.Set("label", torch::zeros({1, 5}, torch::kLong));
  CHECK_THROWS_WITH(dkd->Forward(unpaired, student_map, kd::StepInfo{}),
                    Catch::Contains("logits of shape [1, 64, 8, 8] and 'label' of shape [1, 5] "
                                    "do not pair one class index with each row"));
}
