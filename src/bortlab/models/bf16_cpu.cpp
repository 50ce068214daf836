// bf16 inference kernels for CPUs with AVX512-BF16: the parts of a bf16 or int8 Transformer layer that PyTorch's
// CPU kernels run slowly here.
//
//   attention(qkv, lengths, heads, scale) -> (N, W) bf16: softmax(scale * q k^T) v per sequence and head, every
//       sequence's rows one contiguous block of a (N, 3W) [q | k | v] matrix (bortlab's unpadded layout), no mask
//   add_layer_norm(x, r, gamma, beta, eps) -> LayerNorm(x + r) (N, H) bf16; r may be empty (LayerNorm(x))
//
// add_layer_norm does what ATen does for bf16 (x + r rounded to bf16, then the statistics and the affine map in
// fp32) in one call: ATen's bf16 add then LayerNorm took 1.8-2x as long at 128-1024 x 768 here. (A GELU kernel
// written the same way was no faster than ATen's, so there is none.)
//
// Numbers as PyTorch's CPU flash kernel computes them for bf16: scores in fp32 (bf16 x bf16 products are exact in
// fp32, summed in fp32 by vdpbf16ps), an fp32 softmax, the unnormalised probabilities rounded to bf16 for P.V (fp32
// sums), and the fp32 row sum divided out at the end. Scores in bf16 are faster still, but measured 8x the error.
//
// Why a kernel: at Bort's shape (8 heads x 128 x 96) the flash kernel runs at a third of this CPU's bf16 dot-product
// rate, and unpadded batches call it once per sequence (one thread barrier each). Here one call covers the batch:
// tasks are (sequence, head) pairs, each packing its K and V into vdpbf16ps pair layout in a thread-local buffer.
// Without AVX512-BF16 the module builds without the kernel (`available()` is false) and bortlab uses SDPA.
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#if defined(__AVX512F__) && defined(__AVX512BF16__)
#include <immintrin.h>
#define BORTLAB_AVX512BF16 1
#endif

namespace {

#ifdef BORTLAB_AVX512BF16

constexpr int kRows = 4;                // query rows per micro-kernel call: 4 x 2 score vectors in registers

inline __m256i to_bf16(__m512 x) { return (__m256i)_mm512_cvtneps_pbh(x); }    // round to nearest even

inline __m512 exp_ps(__m512 x) {        // e^x for x <= 0; |rel. error| ~ 2e-7 (Taylor to r^6 on |r| <= ln2/2)
  x = _mm512_max_ps(x, _mm512_set1_ps(-87.f));                      // below: e^x is 0 in fp32's normal range
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504f)), _MM_FROUND_TO_NEAREST_INT);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145752f), x);  // x - n ln2, ln2 in two parts
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.42860677e-6f), r);
  __m512 p = _mm512_set1_ps(1.f / 720);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 120));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 24));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 6));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f));
  return _mm512_scalef_ps(p, n);                                     // p * 2^n
}

inline __m512 bcast_pair(const uint16_t* p) {                        // (p[0], p[1]) in every 32-bit lane
  uint32_t u;
  std::memcpy(&u, p, 4);
  return _mm512_castsi512_ps(_mm512_set1_epi32(int(u)));
}

// S[r, j] = sum_c q[r, c] k[j, c] for R rows and 32 keys from kp (pair layout, row stride ldk bf16 pairs)
template <int R>
inline void scores_block(const uint16_t* q, int64_t ldq, const uint16_t* kp, int64_t ldk, int d, float* s,
                         int64_t lds) {
  __m512 acc[R][2];
  for (int r = 0; r < R; ++r) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
  for (int c = 0; c < d; c += 2) {
    const uint16_t* kr = kp + (c / 2) * ldk * 2;                     // keys' (c, c+1) pairs, 16 keys per vector
    const __m512bh k0 = (__m512bh)_mm512_loadu_ps(kr), k1 = (__m512bh)_mm512_loadu_ps(kr + 32);
    for (int r = 0; r < R; ++r) {
      const __m512bh qa = (__m512bh)bcast_pair(q + r * ldq + c);
      acc[r][0] = _mm512_dpbf16_ps(acc[r][0], qa, k0);
      acc[r][1] = _mm512_dpbf16_ps(acc[r][1], qa, k1);
    }
  }
  for (int r = 0; r < R; ++r) {
    _mm512_storeu_ps(s + r * lds, acc[r][0]);
    _mm512_storeu_ps(s + r * lds + 16, acc[r][1]);
  }
}

// O[r, c0:c0+16*CV] += sum_j P[r, j] v[j, c] over the key pairs of pp (R rows, stride ldp) and vp (pair layout)
template <int R, int CV>
inline void values_block(const uint16_t* pp, int64_t ldp, const uint16_t* vp, int64_t ldv, int64_t npairs,
                         float* o, int64_t ldo) {
  __m512 acc[R][CV];
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < CV; ++v) acc[r][v] = _mm512_setzero_ps();
  for (int64_t jp = 0; jp < npairs; ++jp) {
    __m512bh vv[CV];
    for (int v = 0; v < CV; ++v) vv[v] = (__m512bh)_mm512_loadu_ps(vp + jp * ldv * 2 + v * 32);
    for (int r = 0; r < R; ++r) {
      const __m512bh pa = (__m512bh)bcast_pair(pp + r * ldp + 2 * jp);
      for (int v = 0; v < CV; ++v) acc[r][v] = _mm512_dpbf16_ps(acc[r][v], pa, vv[v]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < CV; ++v) _mm512_storeu_ps(o + r * ldo + v * 16, acc[r][v]);
}

template <int R>
void values_rows(const uint16_t* pp, int64_t ldp, const uint16_t* vp, int d, int64_t npairs, float* o, int64_t ldo) {
  int c = 0;                                                         // 64 columns at a time, then 32, then 16
  for (; c + 64 <= d; c += 64) values_block<R, 4>(pp, ldp, vp + c * 2, d, npairs, o + c, ldo);
  for (; c + 32 <= d; c += 32) values_block<R, 2>(pp, ldp, vp + c * 2, d, npairs, o + c, ldo);
  for (; c < d; c += 16) values_block<R, 1>(pp, ldp, vp + c * 2, d, npairs, o + c, ldo);
}

// one (sequence, head): q, k, v are (n, d) bf16 with row stride ld; out (n, d) bf16 with row stride ldo
void head_attention(const uint16_t* q, const uint16_t* k, const uint16_t* v, int64_t ld, int64_t n, int d, float scale,
                    uint16_t* out, int64_t ldo, std::vector<uint16_t>& buf, std::vector<float>& fbuf) {
  const int64_t nk = (n + 31) / 32 * 32;                             // keys padded to whole score blocks
  const int64_t nv = (n + 1) / 2 * 2;                                // keys padded to whole pairs
  buf.assign(size_t(d) * nk + size_t(nv) * d + size_t(kRows) * nv, 0);
  uint16_t* kp = buf.data();                                         // (d/2, nk, 2): kp[c/2][j] = (k[j,c], k[j,c+1])
  uint16_t* vp = kp + size_t(d) * nk;                                // (nv/2, d, 2): vp[j/2][c] = (v[j,c], v[j+1,c])
  uint16_t* pb = vp + size_t(nv) * d;                                // (kRows, nv) bf16 probabilities
  // K: 16 keys' (c, c+1) pairs per 32-bit gather (the pairs are 32-bit words of k's rows); keys past n stay 0
  const __m512i step = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                          _mm512_set1_epi32(int(ld / 2)));
  for (int64_t j = 0; j < n; j += 16) {
    const __mmask16 m = n - j >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (n - j)) - 1);
    const int* kj = reinterpret_cast<const int*>(k + j * ld);
    for (int c2 = 0; c2 < d / 2; ++c2)
      _mm512_mask_storeu_epi32(kp + c2 * nk * 2 + j * 2, m,
                               _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), m, step, kj + c2, 4));
  }
  // V: rows j and j+1 interleaved, 16 columns at a time; an odd last row pairs with zeros
  const __m512i zip = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6,
                                       21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
  for (int64_t j = 0; j < n; j += 2) {
    const uint16_t* v0 = v + j * ld;
    for (int c = 0; c < d; c += 16) {
      const __m256i a = _mm256_loadu_si256((const __m256i*)(v0 + c));
      const __m256i b = j + 1 < n ? _mm256_loadu_si256((const __m256i*)(v0 + ld + c)) : _mm256_setzero_si256();
      const __m512i ab = _mm512_inserti64x4(_mm512_castsi256_si512(a), b, 1);
      _mm512_storeu_si512(vp + (j / 2) * d * 2 + c * 2, _mm512_permutexvar_epi16(zip, ab));
    }
  }
  fbuf.resize(size_t(kRows) * nk + size_t(kRows) * d);
  float* s = fbuf.data();                                            // (kRows, nk) scores
  float* o = s + kRows * nk;                                         // (kRows, d) unnormalised outputs
  const __m512 vscale = _mm512_set1_ps(scale);
  for (int64_t i0 = 0; i0 < n; i0 += kRows) {
    const int R = int(std::min<int64_t>(kRows, n - i0));
    const uint16_t* qi = q + i0 * ld;
    for (int64_t j = 0; j < nk; j += 32) {
      switch (R) {
        case 4: scores_block<4>(qi, ld, kp + j * 2, nk, d, s + j, nk); break;
        case 3: scores_block<3>(qi, ld, kp + j * 2, nk, d, s + j, nk); break;
        case 2: scores_block<2>(qi, ld, kp + j * 2, nk, d, s + j, nk); break;
        default: scores_block<1>(qi, ld, kp + j * 2, nk, d, s + j, nk);
      }
    }
    float sums[kRows];
    for (int r = 0; r < R; ++r) {                                    // fp32 softmax numerators, rounded to bf16
      float* sr = s + r * nk;
      __m512 mx = _mm512_set1_ps(-INFINITY);
      int64_t j = 0;
      for (; j + 16 <= n; j += 16) mx = _mm512_max_ps(mx, _mm512_loadu_ps(sr + j));
      const __mmask16 tail = __mmask16((1u << (n - j)) - 1);
      if (j < n) mx = _mm512_mask_max_ps(mx, tail, mx, _mm512_loadu_ps(sr + j));
      const __m512 m = _mm512_set1_ps(_mm512_reduce_max_ps(mx) * scale);
      __m512 sum = _mm512_setzero_ps();
      uint16_t* pr = pb + r * nv;
      for (j = 0; j + 16 <= n; j += 16) {
        const __m512 e = exp_ps(_mm512_fmsub_ps(_mm512_loadu_ps(sr + j), vscale, m));
        sum = _mm512_add_ps(sum, e);
        _mm256_storeu_si256((__m256i*)(pr + j), (__m256i)_mm512_cvtneps_pbh(e));
      }
      if (j < n) {
        const __m512 e = _mm512_maskz_mov_ps(tail, exp_ps(_mm512_fmsub_ps(_mm512_loadu_ps(sr + j), vscale, m)));
        sum = _mm512_add_ps(sum, e);
        _mm256_mask_storeu_epi16(pr + j, tail, (__m256i)_mm512_cvtneps_pbh(e));
      }
      sums[r] = _mm512_reduce_add_ps(sum);
    }
    switch (R) {
      case 4: values_rows<4>(pb, nv, vp, d, nv / 2, o, d); break;
      case 3: values_rows<3>(pb, nv, vp, d, nv / 2, o, d); break;
      case 2: values_rows<2>(pb, nv, vp, d, nv / 2, o, d); break;
      default: values_rows<1>(pb, nv, vp, d, nv / 2, o, d);
    }
    for (int r = 0; r < R; ++r) {
      const __m512 inv = _mm512_set1_ps(1.f / sums[r]);
      uint16_t* orow = out + (i0 + r) * ldo;
      for (int c = 0; c < d; c += 16)
        _mm256_storeu_si256((__m256i*)(orow + c), (__m256i)_mm512_cvtneps_pbh(_mm512_mul_ps(_mm512_loadu_ps(o + r * d + c), inv)));
    }
  }
}

inline __m512 round_bf16(__m512 v) {              // fp32 -> bf16 -> fp32: what a bf16 tensor would hold
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(to_bf16(v)), 16));
}
inline __m512 load_bf16(const uint16_t* p) {            // 16 bf16 -> fp32 (exact: the high halves)
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i*)p)), 16));
}
inline __m512 maskload_bf16(const uint16_t* p, __mmask16 m) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p)), 16));
}

// one row: y = (v - mean) / sqrt(var + eps) * g + b, v = x (+ r) rounded to bf16 first, as ATen's bf16 add does
void add_layer_norm_row(const uint16_t* x, const uint16_t* r, const float* g, const float* b, int64_t H, float eps,
                        uint16_t* y, float* buf) {
  __m512 sum = _mm512_setzero_ps();
  for (int64_t j = 0; j < H; j += 16) {
    const __mmask16 m = H - j >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (H - j)) - 1);
    __m512 v = maskload_bf16(x + j, m);
    if (r) v = round_bf16(_mm512_add_ps(v, maskload_bf16(r + j, m)));
    _mm512_storeu_ps(buf + j, v);
    sum = _mm512_add_ps(sum, v);
  }
  const float mean = _mm512_reduce_add_ps(sum) / float(H);
  const __m512 vm = _mm512_set1_ps(mean);
  __m512 sq = _mm512_setzero_ps();
  for (int64_t j = 0; j < H; j += 16) {
    const __mmask16 m = H - j >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (H - j)) - 1);
    const __m512 d = _mm512_maskz_sub_ps(m, _mm512_loadu_ps(buf + j), vm);
    sq = _mm512_fmadd_ps(d, d, sq);
  }
  const __m512 rstd = _mm512_set1_ps(1.f / std::sqrt(_mm512_reduce_add_ps(sq) / float(H) + eps));
  for (int64_t j = 0; j < H; j += 16) {
    const __mmask16 m = H - j >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (H - j)) - 1);
    const __m512 d = _mm512_mul_ps(_mm512_sub_ps(_mm512_loadu_ps(buf + j), vm), rstd);
    const __m512 o = _mm512_fmadd_ps(d, _mm512_maskz_loadu_ps(m, g + j), _mm512_maskz_loadu_ps(m, b + j));
    _mm256_mask_storeu_epi16(y + j, m, to_bf16(o));
  }
}

#endif  // BORTLAB_AVX512BF16

bool available() {
#ifdef BORTLAB_AVX512BF16
  return true;
#else
  return false;
#endif
}

torch::Tensor attention(torch::Tensor qkv, std::vector<int64_t> lengths, int64_t heads, double scale) {
  TORCH_CHECK(available(), "built without AVX512-BF16: use scaled_dot_product_attention");
  TORCH_CHECK(qkv.dim() == 2 && qkv.is_contiguous() && qkv.device().is_cpu() && qkv.scalar_type() == torch::kBFloat16,
              "qkv: a contiguous (N, 3W) bf16 CPU tensor");
  const int64_t N = qkv.size(0), W = qkv.size(1) / 3, d = W / std::max<int64_t>(heads, 1);
  TORCH_CHECK(heads > 0 && qkv.size(1) == 3 * W && W == heads * d && d % 16 == 0 && d <= 256,
              "qkv: width 3 * heads * d with d a multiple of 16, at most 256");
  std::vector<int64_t> start(lengths.size() + 1, 0);
  for (size_t b = 0; b < lengths.size(); ++b) {
    TORCH_CHECK(lengths[b] >= 0, "lengths: non-negative");
    start[b + 1] = start[b] + lengths[b];
  }
  TORCH_CHECK(start.back() == N, "lengths: must sum to the number of rows of qkv");
  auto out = torch::empty({N, W}, qkv.options());
#ifdef BORTLAB_AVX512BF16
  const uint16_t* base = reinterpret_cast<const uint16_t*>(qkv.data_ptr<at::BFloat16>());
  uint16_t* obase = reinterpret_cast<uint16_t*>(out.data_ptr<at::BFloat16>());
  const int64_t tasks = int64_t(lengths.size()) * heads;
  at::parallel_for(0, tasks, 1, [&](int64_t lo, int64_t hi) {
    std::vector<uint16_t> buf;
    std::vector<float> fbuf;
    for (int64_t t = lo; t < hi; ++t) {
      const int64_t b = t / heads, h = t % heads, n = lengths[b];
      if (n == 0) continue;
      const uint16_t* q = base + start[b] * 3 * W + h * d;
      head_attention(q, q + W, q + 2 * W, 3 * W, n, int(d), float(scale), obase + start[b] * W + h * d, W, buf, fbuf);
    }
  });
#endif
  return out;
}

torch::Tensor add_layer_norm(torch::Tensor x, torch::Tensor r, torch::Tensor gamma, torch::Tensor beta, double eps) {
  TORCH_CHECK(available(), "built without AVX512-BF16: use layer_norm");
  TORCH_CHECK(x.dim() == 2 && x.is_contiguous() && x.device().is_cpu() && x.scalar_type() == torch::kBFloat16,
              "x: a contiguous (N, H) bf16 CPU tensor");
  const int64_t N = x.size(0), H = x.size(1);
  const bool has_r = r.numel() > 0;
  TORCH_CHECK(!has_r || (r.sizes() == x.sizes() && r.is_contiguous() && r.scalar_type() == torch::kBFloat16),
              "r: empty, or a contiguous bf16 tensor shaped as x");
  TORCH_CHECK(gamma.numel() == H && beta.numel() == H, "gamma, beta: H values each");
  auto g = gamma.to(torch::kFloat).contiguous(), b = beta.to(torch::kFloat).contiguous();
  auto y = torch::empty_like(x);
#ifdef BORTLAB_AVX512BF16
  const uint16_t* xp = reinterpret_cast<const uint16_t*>(x.data_ptr<at::BFloat16>());
  const uint16_t* rp = has_r ? reinterpret_cast<const uint16_t*>(r.data_ptr<at::BFloat16>()) : nullptr;
  uint16_t* yp = reinterpret_cast<uint16_t*>(y.data_ptr<at::BFloat16>());
  const float *gp = g.data_ptr<float>(), *bp = b.data_ptr<float>();
  at::parallel_for(0, N, 16, [&](int64_t lo, int64_t hi) {
    std::vector<float> buf((H + 15) / 16 * 16);
    for (int64_t i = lo; i < hi; ++i)
      add_layer_norm_row(xp + i * H, rp ? rp + i * H : nullptr, gp, bp, H, float(eps), yp + i * H, buf.data());
  });
#endif
  return y;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("available", &available, "whether this build has the AVX512-BF16 attention kernel");
  m.def("attention", &attention, "softmax(scale q k^T) v per packed sequence and head, bf16 in and out");
  m.def("add_layer_norm", &add_layer_norm, "LayerNorm(x + r) in bf16 (r may be empty)");
}
