// C++ test of the ops registered by libstar_ops, called through their C++ API
// (csrc/ops.h) as a LibTorch user would, against direct loops written here;
// and of the cache of transposed graph templates.
#include <cmath>
#include <iostream>
#include <string>

#include <ATen/ATen.h>

#include "ops.h"
#include "transposed_template.h"

namespace {

int failures = 0;

void expect(bool ok, const std::string& what) {
  std::cout << (ok ? "PASS " : "FAIL ") << what << "\n";
  failures += ok ? 0 : 1;
}

void test_keypoint_pool() {
  const int64_t N = 2, C = 3, H = 5, W = 4, K = 2;
  const double sigma = 0.3, eps = 1e-6;
  auto feat = at::randn({N, C, H, W}, at::kDouble);
  auto kpts = at::rand({N, K, 3}, at::kDouble);
  auto out = star::keypoint_pool(feat, kpts, sigma, eps);
  double max_err = 0;
  for (int64_t n = 0; n < N; ++n) {
    for (int64_t k = 0; k < K; ++k) {
      const double x = kpts[n][k][0].item<double>(), y = kpts[n][k][1].item<double>();
      const double conf = kpts[n][k][2].item<double>();
      for (int64_t c = 0; c < C; ++c) {
        double num = 0, den = 0;
        for (int64_t h = 0; h < H; ++h) {
          for (int64_t w = 0; w < W; ++w) {
            const double du = (w + 0.5) / W - x, dv = (h + 0.5) / H - y;
            const double g = std::exp(-(du * du + dv * dv) / (2 * sigma * sigma));
            num += g * feat[n][c][h][w].item<double>();
            den += g;
          }
        }
        max_err = std::max(max_err, std::abs(conf * num / (den + eps) - out[n][k][c].item<double>()));
      }
    }
  }
  expect(max_err < 1e-10, "keypoint_pool matches the direct sum (max error " + std::to_string(max_err) + ")");
  bool threw = false;
  try {
    star::keypoint_pool(feat, kpts, -1.0, eps);
  } catch (const c10::Error& e) {
    threw = std::string(e.what()).find("sigma must be a positive finite number") != std::string::npos;
  }
  expect(threw, "keypoint_pool rejects sigma <= 0 naming the argument");
}

void test_guided_gem_pool() {
  auto x = at::rand({2, 6, 5}, at::kDouble) + 0.1;
  auto weight = at::softmax(at::randn({2, 3, 5}, at::kDouble), 1);
  auto p = at::tensor({0.7, 3.0, 7.0}, at::kDouble);
  auto out = star::guided_gem_pool(x, weight, p, 1e-6, 0.0);
  auto expected = at::zeros({2, 5}, at::kDouble);
  for (int64_t i = 0; i < 3; ++i) {
    const double pi = p[i].item<double>();
    expected += weight.select(1, i) * x.pow(pi).mean(1).pow(1.0 / pi);
  }
  expect(at::allclose(out, expected, 1e-10, 1e-12), "guided_gem_pool matches the generalized-mean formula");

  // The released STAR's mean: no clamp, (mean_t x^p + floor)^(1/p); one frame at 0.
  x[0][2][1] = 0.0;
  const double floor = 1e-3;
  auto floored = star::guided_gem_pool(x, weight, p, 0.0, floor);
  auto expected_floored = at::zeros({2, 5}, at::kDouble);
  for (int64_t i = 0; i < 3; ++i) {
    const double pi = p[i].item<double>();
    expected_floored += weight.select(1, i) * (x.pow(pi).mean(1) + floor).pow(1.0 / pi);
  }
  expect(
      at::allclose(floored, expected_floored, 1e-10, 1e-12) && !at::allclose(floored, expected, 1e-6, 0),
      "guided_gem_pool with eps = 0 and a floor matches (mean x^p + floor)^(1/p)");
  bool threw = false;
  try {
    star::guided_gem_pool(x, weight, p, 0.0, -1.0);
  } catch (const c10::Error& e) {
    threw = std::string(e.what()).find("floor must be a non-negative finite number") != std::string::npos;
  }
  expect(threw, "guided_gem_pool rejects a negative floor naming the argument");
}

void test_keypoint_graph_attention() {
  // Node 0 <- {0, 1}, node 1 <- {1}, node 2 <- nothing.
  auto rowptr = at::tensor({0, 2, 3, 3}, at::kLong);
  auto col = at::tensor({0, 1, 1}, at::kLong);
  auto h = at::randn({1, 3, 1, 4}, at::kDouble);
  auto a_src = at::tensor({0.5, -1.0, 2.0}, at::kDouble).view({1, 3, 1});
  auto a_dst = at::tensor({0.25, 1.0, 0.0}, at::kDouble).view({1, 3, 1});
  auto out = star::keypoint_graph_attention(h, a_src, a_dst, rowptr, col, 0.2, std::nullopt, 1.0);
  // e_00 = 0.75, e_01 = leaky(-0.75) = -0.15.
  const double w0 = std::exp(0.75), w1 = std::exp(-0.15);
  auto node0 = (w0 * h[0][0][0] + w1 * h[0][1][0]) / (w0 + w1);
  expect(at::allclose(out[0][0][0], node0), "graph attention: softmax-weighted sum of two sources");
  expect(at::allclose(out[0][1][0], h[0][1][0]), "graph attention: a single edge passes its source");
  expect(out[0][2][0].abs().sum().item<double>() == 0.0, "graph attention: no incoming edge gives zeros");
  bool threw = false;
  try {
    star::keypoint_graph_attention(h, a_src, a_dst, at::tensor({0, 2, 1, 3}, at::kLong), col, 0.2, std::nullopt, 1.0);
  } catch (const c10::Error& e) {
    threw = std::string(e.what()).find("rowptr must be non-decreasing") != std::string::npos;
  }
  expect(threw, "graph attention rejects a non-monotone rowptr");
}

bool same_transpose(const star::TransposedTemplate& a, const star::TransposedTemplate& b) {
  return at::equal(a.perm, b.perm) && at::equal(a.colptr, b.colptr);
}

void test_transposed_template_cache() {
  // Sources of edges 0..4: 2, 0, 2, 1, 0 over 3 nodes.
  auto col = at::tensor({2, 0, 2, 1, 0}, at::kLong);
  const auto first = star::transposed_template(col, 3);
  expect(
      at::equal(first.perm, at::tensor({1, 4, 3, 0, 2}, at::kLong)) &&
          at::equal(first.colptr, at::tensor({0, 2, 3, 5}, at::kLong)),
      "transposed template: edges grouped by source in edge order, and where each source starts");
  const auto again = star::transposed_template(col, 3);
  expect(again.perm.is_same(first.perm), "transposed template: a second call reuses the cached transpose");
  col[0] = 1;  // in place: bumps the version counter
  expect(
      same_transpose(star::transposed_template(col, 3), star::compute_transposed_template(col, 3)),
      "transposed template: an in-place change of the template recomputes it");
  auto other = at::tensor({0, 0, 1, 1, 2}, at::kLong);
  expect(
      same_transpose(star::transposed_template(other, 3), star::compute_transposed_template(other, 3)),
      "transposed template: another template of the same shape gets its own transpose");
  expect(
      star::transposed_template(col, 4).colptr.numel() == 5, "transposed template: the node count is part of the key");
  at::Tensor inference_col;
  {
    c10::InferenceMode guard;
    inference_col = at::tensor({1, 0}, at::kLong);
  }
  expect(
      same_transpose(star::transposed_template(inference_col, 2), star::compute_transposed_template(inference_col, 2)),
      "transposed template: an inference tensor (no version counter) is computed, not cached");
}

}  // namespace

int main() {
  at::manual_seed(0);
  test_keypoint_pool();
  test_guided_gem_pool();
  test_keypoint_graph_attention();
  test_transposed_template_cache();
  std::cout << (failures == 0 ? "all passed" : std::to_string(failures) + " failed") << "\n";
  return failures == 0 ? 0 : 1;
}
