// chatstack's int8 decode kernel: y[M, N] = x[M, K] @ (w[N, K] * scale[N])^T for the few rows of a
// decoding step, on AVX2 (backends/local/int8_decode.py builds it; docs/embedded-model.md, "A decode
// kernel", has the measurements).
//
// Why: a decoding step waits for the weights to arrive from memory, and PyTorch's weight-only kernel
// (`_weight_int8pack_mm`) spends longer than that turning every int8 weight into a float on AVX2. Here
// the activations become int16 instead, one float scale per 32 of them (15 bits per block: finer than
// the bf16 they arrive in, so an outlier costs nothing measurable), and each block's dot product with
// the int8 weights is exact integer arithmetic (vpmaddwd: 16 multiply-adds per instruction). Only the
// block sums become floats. An int8 activation variant (vpmaddubsw) was no faster, and 6x less exact.
#include <ATen/Parallel.h>
#include <immintrin.h>
#include <torch/extension.h>

#include <algorithm>
#include <cmath>

namespace {

constexpr int64_t kBlock = 32;
// Activation rows that share one read of a weight row: the weights, not the arithmetic, are what a
// decoding step waits for.
constexpr int64_t kRowsPerPass = 4;

// x [m, k] -> q [m, k] int16 in [-32767, 32767] and one scale per 32 values of a row.
void quantise_rows(const float* x, int64_t m, int64_t k, int16_t* q, float* scales) {
  const int64_t blocks = k / kBlock;
  for (int64_t r = 0; r < m; ++r) {
    for (int64_t b = 0; b < blocks; ++b) {
      const float* src = x + r * k + b * kBlock;
      float amax = 0.f;
      for (int64_t i = 0; i < kBlock; ++i) amax = std::max(amax, std::fabs(src[i]));
      const float scale = amax / 32767.f;
      const float inverse = scale > 0.f ? 1.f / scale : 0.f;
      scales[r * blocks + b] = scale;
      int16_t* dst = q + r * k + b * kBlock;
      for (int64_t i = 0; i < kBlock; ++i) dst[i] = static_cast<int16_t>(std::nearbyint(src[i] * inverse));
    }
  }
}

inline float horizontal_sum(__m256 v) {
  __m128 sum = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  sum = _mm_add_ps(sum, _mm_movehl_ps(sum, sum));
  sum = _mm_add_ss(sum, _mm_movehdup_ps(sum));
  return _mm_cvtss_f32(sum);
}

inline __m256i load_int8_as_int16(const int8_t* p) {
  return _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}

inline __m256i load_int16(const int16_t* p) {
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
}

// Output columns [n0, n1) for R activation rows.
template <int R>
void dot_rows(const int8_t* w, const int16_t* q, const float* scales, const float* w_scale, int64_t k,
              int64_t n, float* y, int64_t n0, int64_t n1) {
  const int64_t blocks = k / kBlock;
  for (int64_t col = n0; col < n1; ++col) {
    const int8_t* w_row = w + col * k;
    __m256 acc[R];
    for (int r = 0; r < R; ++r) acc[r] = _mm256_setzero_ps();
    for (int64_t b = 0; b < blocks; ++b) {
      const __m256i w_lo = load_int8_as_int16(w_row + b * kBlock);
      const __m256i w_hi = load_int8_as_int16(w_row + b * kBlock + 16);
      for (int r = 0; r < R; ++r) {
        const int16_t* x = q + r * k + b * kBlock;
        // Each int32 lane sums four products of at most 127 * 32767: no overflow.
        const __m256i sums = _mm256_add_epi32(_mm256_madd_epi16(w_lo, load_int16(x)),
                                              _mm256_madd_epi16(w_hi, load_int16(x + 16)));
        acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sums), _mm256_broadcast_ss(scales + r * blocks + b), acc[r]);
      }
    }
    for (int r = 0; r < R; ++r) y[r * n + col] = horizontal_sum(acc[r]) * w_scale[col];
  }
}

}  // namespace

torch::Tensor int8_decode(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& w_scale) {
  TORCH_CHECK(x.dim() == 2 && w.dim() == 2 && x.size(1) == w.size(1), "x [M, K] and w [N, K]");
  TORCH_CHECK(x.size(1) % kBlock == 0, "K must be a multiple of 32, not ", x.size(1));
  TORCH_CHECK(w.scalar_type() == torch::kInt8 && w.is_contiguous(), "w must be contiguous int8");
  TORCH_CHECK(w_scale.scalar_type() == torch::kFloat32 && w_scale.is_contiguous() &&
                  w_scale.numel() == w.size(0),
              "w_scale must be contiguous float32 [N]");
  const int64_t m = x.size(0), k = x.size(1), n = w.size(0), blocks = k / kBlock;
  const torch::Tensor x32 = x.to(torch::kFloat32).contiguous();
  torch::Tensor q = torch::empty({m, k}, torch::kInt16);
  torch::Tensor scales = torch::empty({m, blocks}, torch::kFloat32);
  quantise_rows(x32.data_ptr<float>(), m, k, q.data_ptr<int16_t>(), scales.data_ptr<float>());
  torch::Tensor y = torch::empty({m, n}, torch::kFloat32);
  const int8_t* w_data = w.data_ptr<int8_t>();
  const float* w_scale_data = w_scale.data_ptr<float>();
  for (int64_t r0 = 0; r0 < m; r0 += kRowsPerPass) {
    const int64_t rows = std::min(kRowsPerPass, m - r0);
    const int16_t* q_rows = q.data_ptr<int16_t>() + r0 * k;
    const float* scale_rows = scales.data_ptr<float>() + r0 * blocks;
    float* y_rows = y.data_ptr<float>() + r0 * n;
    // Torch's own threads, which vLLM binds to the engine's cores.
    at::parallel_for(0, n, 16, [&](int64_t n0, int64_t n1) {
      switch (rows) {
        case 1: dot_rows<1>(w_data, q_rows, scale_rows, w_scale_data, k, n, y_rows, n0, n1); break;
        case 2: dot_rows<2>(w_data, q_rows, scale_rows, w_scale_data, k, n, y_rows, n0, n1); break;
        case 3: dot_rows<3>(w_data, q_rows, scale_rows, w_scale_data, k, n, y_rows, n0, n1); break;
        default: dot_rows<4>(w_data, q_rows, scale_rows, w_scale_data, k, n, y_rows, n0, n1); break;
      }
    });
  }
  return y.to(x.scalar_type());
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("int8_decode", &int8_decode, "x @ (w * w_scale).T, activations as int16 in blocks of 32");
}
