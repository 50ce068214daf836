// The elementwise parts of bortlab's int8 Linear (bortlab/models/int8.py), fused: two passes where eager PyTorch
// makes about fifteen. Same arithmetic as the eager path, in the same order, built without FMA contraction
// (-ffp-contract=off), so the uint8 activations and the row scales are bit-identical to it.
//
//   col_absmax(x)            (N, K) fp32|bf16 -> (K,) max |x| over rows: picks the outlier columns
//   outlier_columns(x, k, exclude, rows, w_scale)
//                            -> (cols (k,), w (k, out) fp32): col_absmax, the top k outside `exclude`, and their
//                               rows of the (K, out) int8 weight times the channel scales
//   quantize(x, cols)        -> (qx (N, K) uint8 around 128, s (N, 1) fp32, xo (N, k) fp32):
//                               s = max_{j not in cols} |x_ij| / 127, qx = trunc(x / s + 128.5), outlier columns at
//                               the zero point 128, and their values in xo for the epilogue
//   epilogue(y, s, b, xo, wo, to_bf16)
//                            -> y * s + b + xo @ wo in fp32, written in bf16 (to_bf16) or in place in y: the row scales,
//                               bias and outlier columns in one pass over the integer kernel's (N, out) output
//   epilogue_add_norm(y, s, b, xo, wo, residual, gamma, beta, eps)
//                            -> LayerNorm(that in bf16 + residual): an output projection, the residual add and the
//                               LayerNorm after it, each row normalized while it is in L1
//
// The hot loops are plain functions the compiler vectorizes (-O3, this CPU's vector width); at::parallel_for
// splits rows across PyTorch's intra-op threads.
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

namespace {

constexpr float kAMax = 127.f, kZeroHalf = 128.5f, kMinScale = 1e-12f;

inline float load(const float* p, int64_t i) { return p[i]; }
// bit casts, not memcpy: a memcpy through a local stops GCC from vectorizing the loop around it
inline float load(const uint16_t* p, int64_t i) {        // bf16 -> fp32 is exact: the high 16 bits
  return __builtin_bit_cast(float, uint32_t(p[i]) << 16);
}
inline uint16_t to_bf16(float f) {                        // round to nearest even, as PyTorch's cast (finite values)
  uint32_t u = __builtin_bit_cast(uint32_t, f);
  u += 0x7FFFu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}

template <typename T>
__attribute__((noinline)) void col_absmax_rows(const T* __restrict x, int64_t rows, int64_t K, float* __restrict m) {
  for (int64_t i = 0; i < rows; ++i) {
    const T* __restrict xr = x + i * K;
#pragma omp simd
    for (int64_t j = 0; j < K; ++j) {
      const float v = std::fabs(load(xr, j));
      m[j] = m[j] < v ? v : m[j];                           // not std::max: its reference return blocks vectorizing
    }
  }
}

template <typename T>
__attribute__((noinline)) void quantize_rows(const T* __restrict x, int64_t rows, int64_t K, const float* __restrict keep,
                                             uint8_t* __restrict q, float* __restrict s, float* __restrict buf,
                                             const int64_t* cols, int64_t k, float* __restrict xo) {
  for (int64_t i = 0; i < rows; ++i) {
    const T* __restrict xr = x + i * K;
    for (int64_t c = 0; c < k; ++c) xo[i * k + c] = load(xr, cols[c]);   // the outlier columns, for the epilogue
    float m = 0.f;
#pragma omp simd reduction(max : m)
    for (int64_t j = 0; j < K; ++j) {
      float v = load(xr, j) * keep[j];                    // outlier columns -> 0: outside the scale, at the zero point
      buf[j] = v;
      m = std::max(m, std::fabs(v));
    }
    const float si = std::max(m, kMinScale) / kAMax;
    const float r = 1.f / si;
    s[i] = si;
    uint8_t* __restrict qr = q + i * K;
#pragma omp simd
    for (int64_t j = 0; j < K; ++j) {
      float t = buf[j] * r;
      t = t + kZeroHalf;                                  // >= 1.5 everywhere: truncation rounds to nearest
      qr[j] = uint8_t(int32_t(t));
    }
  }
}

// KC outlier columns known at compile time (bortlab uses 0 and 4): one pass, everything in registers
template <int KC, typename O>
__attribute__((noinline)) void epilogue_rows_k(const float* __restrict y, const float* __restrict s, const float* __restrict b,
                                               const float* __restrict xo, const float* __restrict wo, int64_t rows,
                                               int64_t n_out, O* __restrict out) {
  for (int64_t i = 0; i < rows; ++i) {
    const float* __restrict yr = y + i * n_out;
    const float si = s[i];
    float xc[KC > 0 ? KC : 1];
    for (int c = 0; c < KC; ++c) xc[c] = xo[i * KC + c];
    O* __restrict o = out + i * n_out;
#pragma omp simd
    for (int64_t j = 0; j < n_out; ++j) {
      float a = yr[j] * si;
      a = a + b[j];
      for (int c = 0; c < KC; ++c) {            // unrolled: KC is a constant
        float p = xc[c] * wo[c * n_out + j];
        a = a + p;
      }
      if constexpr (std::is_same_v<O, uint16_t>) o[j] = to_bf16(a); else o[j] = a;
    }
  }
}

// any other number of outlier columns: one pass per column over a row buffer that stays in L1
template <typename O>
__attribute__((noinline)) void epilogue_rows(const float* __restrict y, const float* __restrict s, const float* __restrict b,
                                             const float* __restrict xo, const float* __restrict wo, int64_t rows,
                                             int64_t n_out, int64_t k, O* __restrict out, float* __restrict acc) {
  for (int64_t i = 0; i < rows; ++i) {
    const float* __restrict yr = y + i * n_out;
    const float si = s[i];
#pragma omp simd
    for (int64_t j = 0; j < n_out; ++j) {
      float a = yr[j] * si;
      acc[j] = a + b[j];
    }
    for (int64_t c = 0; c < k; ++c) {
      const float xc = xo[i * k + c];
      const float* __restrict wr = wo + c * n_out;
#pragma omp simd
      for (int64_t j = 0; j < n_out; ++j) {
        float p = xc * wr[j];
        acc[j] = acc[j] + p;
      }
    }
    O* __restrict o = out + i * n_out;
#pragma omp simd
    for (int64_t j = 0; j < n_out; ++j) {
      if constexpr (std::is_same_v<O, uint16_t>) o[j] = to_bf16(acc[j]); else o[j] = acc[j];
    }
  }
}

template <typename O>
void epilogue_block(const float* y, const float* s, const float* b, const float* xo, const float* wo, int64_t rows,
                    int64_t n_out, int64_t k, O* out) {
  switch (k) {
    case 0: return epilogue_rows_k<0>(y, s, b, xo, wo, rows, n_out, out);
    case 1: return epilogue_rows_k<1>(y, s, b, xo, wo, rows, n_out, out);
    case 2: return epilogue_rows_k<2>(y, s, b, xo, wo, rows, n_out, out);
    case 4: return epilogue_rows_k<4>(y, s, b, xo, wo, rows, n_out, out);
    case 8: return epilogue_rows_k<8>(y, s, b, xo, wo, rows, n_out, out);
    default: {
      std::vector<float> acc(n_out);
      return epilogue_rows(y, s, b, xo, wo, rows, n_out, k, out, acc.data());
    }
  }
}

// in place on one bf16 row: o = LayerNorm(o + r), with o + r rounded to bf16 first (as a bf16 tensor add would) and
// the statistics and affine map in fp32; buf holds the sums
__attribute__((noinline)) void add_norm_row(uint16_t* __restrict o, const uint16_t* __restrict r, const float* __restrict g,
                                            const float* __restrict b, int64_t n, float eps, float* __restrict buf) {
  float sum = 0.f;
#pragma omp simd reduction(+ : sum)
  for (int64_t j = 0; j < n; ++j) {
    const float v = load(o, j) + load(r, j);
    const float vr = __builtin_bit_cast(float, uint32_t(to_bf16(v)) << 16);   // what a bf16 tensor holds
    buf[j] = vr;
    sum += vr;
  }
  const float mean = sum / float(n);
  float sq = 0.f;
#pragma omp simd reduction(+ : sq)
  for (int64_t j = 0; j < n; ++j) {
    const float d = buf[j] - mean;
    sq += d * d;
  }
  const float rstd = 1.f / std::sqrt(sq / float(n) + eps);
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) {
    float d = (buf[j] - mean) * rstd;
    d = d * g[j];
    o[j] = to_bf16(d + b[j]);
  }
}

void check_rows(const torch::Tensor& t, const char* name) {
  TORCH_CHECK(t.dim() == 2 && t.is_contiguous() && t.device().is_cpu(), name, ": a contiguous 2-D CPU tensor");
}

constexpr int64_t kGrain = 8;                              // rows per task: enough work to pay for a thread wake-up

torch::Tensor col_absmax(torch::Tensor x) {
  check_rows(x, "x");
  const int64_t N = x.size(0), K = x.size(1);
  auto m = torch::zeros({K}, x.options().dtype(torch::kFloat));
  // columns are reduced over all rows: one thread (N x K is small next to the matmul it feeds)
  if (x.scalar_type() == torch::kBFloat16)
    col_absmax_rows(reinterpret_cast<const uint16_t*>(x.data_ptr<at::BFloat16>()), N, K, m.data_ptr<float>());
  else
    col_absmax_rows(x.data_ptr<float>(), N, K, m.data_ptr<float>());
  return m;
}

// this call's activation outlier columns and their weights, in one call instead of four ops: the k columns of largest
// max |x| outside `exclude` (largest first; on equal maxima the lower index), and rows[c] * w_scale for each
std::vector<torch::Tensor> outlier_columns(torch::Tensor x, int64_t k, torch::Tensor exclude, torch::Tensor rows,
                                           torch::Tensor w_scale) {
  auto m = col_absmax(x);
  const int64_t K = m.numel();
  check_rows(rows, "rows");
  TORCH_CHECK(rows.scalar_type() == torch::kChar && rows.size(0) == K && w_scale.scalar_type() == torch::kFloat &&
              w_scale.is_contiguous() && w_scale.numel() == rows.size(1), "rows: (K, out) int8; w_scale: (out,) fp32");
  TORCH_CHECK(0 <= k && k <= K, "k: at most the number of columns");
  float* mp = m.data_ptr<float>();
  auto ex = exclude.to(torch::kLong).contiguous();
  for (int64_t i = 0; i < ex.numel(); ++i) {
    const int64_t j = ex.data_ptr<int64_t>()[i];
    TORCH_CHECK(0 <= j && j < K, "exclude: index out of range");
    mp[j] = -1.f;                                   // already around the kernel
  }
  const int64_t n_out = rows.size(1);
  auto cols = torch::empty({k}, x.options().dtype(torch::kLong));
  auto w = torch::empty({k, n_out}, x.options().dtype(torch::kFloat));
  int64_t* cp = cols.data_ptr<int64_t>();
  for (int64_t c = 0; c < k; ++c) {                 // k is a handful: k passes over K maxima beat a sort
    int64_t best = 0;
    for (int64_t j = 1; j < K; ++j) best = mp[j] > mp[best] ? j : best;
    cp[c] = best;
    mp[best] = -2.f;
    const int8_t* r = rows.data_ptr<int8_t>() + best * n_out;
    const float* sc = w_scale.data_ptr<float>();
    float* wr = w.data_ptr<float>() + c * n_out;
#pragma omp simd
    for (int64_t j = 0; j < n_out; ++j) wr[j] = float(r[j]) * sc[j];   // as int8 -> fp32, then * scale
  }
  return {cols, w};
}

std::vector<torch::Tensor> quantize(torch::Tensor x, torch::Tensor cols) {
  check_rows(x, "x");
  TORCH_CHECK(x.scalar_type() == torch::kFloat || x.scalar_type() == torch::kBFloat16, "x: fp32 or bf16");
  const int64_t N = x.size(0), K = x.size(1);
  std::vector<float> keep(K, 1.f);
  auto c = cols.to(torch::kLong).contiguous();
  for (int64_t i = 0; i < c.numel(); ++i) {
    const int64_t j = c.data_ptr<int64_t>()[i];
    TORCH_CHECK(0 <= j && j < K, "cols: index out of range");
    keep[j] = 0.f;
  }
  const int64_t k = c.numel();
  auto q = torch::empty({N, K}, x.options().dtype(torch::kUInt8));
  auto s = torch::empty({N, 1}, x.options().dtype(torch::kFloat));
  auto xo = torch::empty({N, k}, x.options().dtype(torch::kFloat));
  uint8_t* qp = q.data_ptr<uint8_t>();
  float *sp = s.data_ptr<float>(), *op = xo.data_ptr<float>();
  const int64_t* cp = c.data_ptr<int64_t>();
  const bool bf16 = x.scalar_type() == torch::kBFloat16;
  const void* xp = x.data_ptr();
  at::parallel_for(0, N, kGrain, [&](int64_t lo, int64_t hi) {
    std::vector<float> buf(K);
    if (bf16)
      quantize_rows(static_cast<const uint16_t*>(xp) + lo * K, hi - lo, K, keep.data(), qp + lo * K, sp + lo, buf.data(),
                    cp, k, op + lo * k);
    else
      quantize_rows(static_cast<const float*>(xp) + lo * K, hi - lo, K, keep.data(), qp + lo * K, sp + lo, buf.data(),
                    cp, k, op + lo * k);
  });
  return {q, s, xo};
}

void check_epilogue(const torch::Tensor& y, const torch::Tensor& s, const torch::Tensor& b, const torch::Tensor& xo,
                               const torch::Tensor& wo) {
  check_rows(y, "y");
  check_rows(xo, "xo");
  check_rows(wo, "wo");
  const int64_t N = y.size(0), n_out = y.size(1), k = xo.size(1);
  TORCH_CHECK(y.scalar_type() == torch::kFloat && s.scalar_type() == torch::kFloat && b.scalar_type() == torch::kFloat &&
              xo.scalar_type() == torch::kFloat && wo.scalar_type() == torch::kFloat, "y, s, b, xo, wo: fp32");
  TORCH_CHECK(s.numel() == N && s.is_contiguous() && b.numel() == n_out && b.is_contiguous() && xo.size(0) == N &&
              wo.size(0) == k && wo.size(1) == n_out, "shapes: y (N, out), s (N, 1), b (out,), xo (N, k), wo (k, out)");
}

torch::Tensor epilogue(torch::Tensor y, torch::Tensor s, torch::Tensor b, torch::Tensor xo, torch::Tensor wo,
                       bool to_bf16_out) {
  check_epilogue(y, s, b, xo, wo);
  const int64_t N = y.size(0), n_out = y.size(1), k = xo.size(1);
  auto out = to_bf16_out ? torch::empty({N, n_out}, y.options().dtype(torch::kBFloat16)) : y;   // fp32: in place
  const float *yp = y.data_ptr<float>(), *sp = s.data_ptr<float>(), *bp = b.data_ptr<float>();
  const float *xp = xo.data_ptr<float>(), *wp = wo.data_ptr<float>();
  void* op = out.data_ptr();
  at::parallel_for(0, N, kGrain, [&](int64_t lo, int64_t hi) {
    if (to_bf16_out)
      epilogue_block(yp + lo * n_out, sp + lo, bp, xp + lo * k, wp, hi - lo, n_out, k, static_cast<uint16_t*>(op) + lo * n_out);
    else
      epilogue_block(yp + lo * n_out, sp + lo, bp, xp + lo * k, wp, hi - lo, n_out, k, static_cast<float*>(op) + lo * n_out);
  });
  return out;
}

// the bf16 epilogue, then LayerNorm(out + residual) on its rows while they are in L1: one pass over the output fewer
torch::Tensor epilogue_add_norm(torch::Tensor y, torch::Tensor s, torch::Tensor b, torch::Tensor xo, torch::Tensor wo,
                                torch::Tensor residual, torch::Tensor gamma, torch::Tensor beta, double eps) {
  check_epilogue(y, s, b, xo, wo);
  check_rows(residual, "residual");
  const int64_t N = y.size(0), n_out = y.size(1), k = xo.size(1);
  TORCH_CHECK(residual.scalar_type() == torch::kBFloat16 && residual.size(0) == N && residual.size(1) == n_out,
              "residual: bf16, shaped as the output");
  TORCH_CHECK(gamma.scalar_type() == torch::kFloat && beta.scalar_type() == torch::kFloat && gamma.is_contiguous() &&
              beta.is_contiguous() && gamma.numel() == n_out && beta.numel() == n_out, "gamma, beta: fp32, out values each");
  auto out = torch::empty({N, n_out}, y.options().dtype(torch::kBFloat16));
  const float *yp = y.data_ptr<float>(), *sp = s.data_ptr<float>(), *bp = b.data_ptr<float>();
  const float *xp = xo.data_ptr<float>(), *wp = wo.data_ptr<float>(), *gp = gamma.data_ptr<float>(), *tp = beta.data_ptr<float>();
  uint16_t* op = reinterpret_cast<uint16_t*>(out.data_ptr<at::BFloat16>());
  const uint16_t* rp = reinterpret_cast<const uint16_t*>(residual.data_ptr<at::BFloat16>());
  at::parallel_for(0, N, kGrain, [&](int64_t lo, int64_t hi) {
    std::vector<float> buf(n_out);
    epilogue_block(yp + lo * n_out, sp + lo, bp, xp + lo * k, wp, hi - lo, n_out, k, op + lo * n_out);
    for (int64_t i = lo; i < hi; ++i)         // the block's rows (kGrain of them at most) are still in L1
      add_norm_row(op + i * n_out, rp + i * n_out, gp, tp, n_out, float(eps), buf.data());
  });
  return out;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("col_absmax", &col_absmax, "max |x| per column of a (N, K) fp32/bf16 matrix");
  m.def("outlier_columns", &outlier_columns, "the k columns of largest max |x| outside exclude, and their weights");
  m.def("quantize", &quantize, "per-row symmetric uint8 quantization with outlier columns left out (and returned)");
  m.def("epilogue", &epilogue, "y * s + b + xo @ wo, written as fp32 (in place) or bf16");
  m.def("epilogue_add_norm", &epilogue_add_norm, "LayerNorm(bf16(y * s + b + xo @ wo) + residual) in bf16");
}
