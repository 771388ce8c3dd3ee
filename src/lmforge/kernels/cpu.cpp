// lmforge's own CPU products, built on first use by lmforge/kernels/native.py (torch.utils.cpp_extension); each
// is a candidate that lmforge.kernels.tune times against torch's product and takes only where it measured faster.
//
// 1. int8_linear: y = (x @ q.T) * scale + bias: fp32 rows times an int8 weight with one scale per output row
// (weight-only int8, lmforge.nn.quant; lmforge/kernels/int8.py). Why a kernel of our own: on a CPU without AVX-512, torch 2.13's _weight_int8pack_mm runs ~10x slower than
// the fp32 product, and converting the whole weight to fp32 before F.linear reads and writes it four times
// over. Here each output row's int8 weights are widened to fp32 in registers, 32 at a time, and multiplied
// into four independent accumulators (four chains, so the FMA latency is hidden): the weight is read from
// memory once, at one byte per element. Without AVX2 the plain loop below computes the same sum.
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <algorithm>
#include <cmath>
#include <vector>
#ifdef __AVX2__
#include <immintrin.h>

// the sum of a register's 8 floats: 8 lanes -> 4 -> 1
static inline float hsum8(__m256 s) {
  __m128 h = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
  h = _mm_hadd_ps(h, h);
  h = _mm_hadd_ps(h, h);
  return _mm_cvtss_f32(h);
}
#endif

// out[r] = sum_k x[r * K + k] * w[k] for R rows of x (fp32) and one row of the weight (int8), both of length K.
// Each 32 weights are widened once and used by all R rows: with a prompt's rows (R = 4) the conversion costs a
// quarter as much per row. R = 1 keeps four accumulators (four FMA chains) for one row; R > 1 has R chains.
// Widening by shifts: 32 weights loaded as 8 dwords of 4 bytes; byte g of every dword, shifted to the top and
// arithmetic-shifted back down by 24, is that weight sign-extended to int32 (seven single shifts for 32 weights,
// where vpmovsxbd takes two operations per 8 on Zen 3 and limited the kernel to ~21 GB/s at two threads). Group g
// then holds weights k = 4 i + g (i = 0..7), so x is read from `xp`, x permuted the same way once per product
// (permute_x): within each 32, xp[8 g + i] = x[4 i + g].
template <int R>
static inline void dot_int8(const float* x, const float* xp, const int8_t* w, int64_t K, float* out) {
  int64_t k = 0;
  float sum[R] = {};
#ifdef __AVX2__
  __m256 acc[R][4];
  for (int r = 0; r < R; ++r)
    for (int j = 0; j < 4; ++j) acc[r][j] = _mm256_setzero_ps();
  for (; k + 32 <= K; k += 32) {
    const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + k));  // 32 int8 weights
    const __m256 f[4] = {_mm256_cvtepi32_ps(_mm256_srai_epi32(_mm256_slli_epi32(b, 24), 24)),   // bytes 0, 4, ..
                         _mm256_cvtepi32_ps(_mm256_srai_epi32(_mm256_slli_epi32(b, 16), 24)),   // bytes 1, 5, ..
                         _mm256_cvtepi32_ps(_mm256_srai_epi32(_mm256_slli_epi32(b, 8), 24)),    // bytes 2, 6, ..
                         _mm256_cvtepi32_ps(_mm256_srai_epi32(b, 24))};                         // bytes 3, 7, ..
    for (int r = 0; r < R; ++r)
      for (int j = 0; j < 4; ++j)
        acc[r][j] = _mm256_fmadd_ps(_mm256_loadu_ps(xp + r * K + k + 8 * j), f[j], acc[r][j]);
  }
  for (int r = 0; r < R; ++r)
    sum[r] = hsum8(_mm256_add_ps(_mm256_add_ps(acc[r][0], acc[r][1]), _mm256_add_ps(acc[r][2], acc[r][3])));
#endif
  for (; k < K; ++k)  // the tail (or everything, without AVX2)
    for (int r = 0; r < R; ++r) sum[r] += x[r * K + k] * static_cast<float>(w[k]);
  for (int r = 0; r < R; ++r) out[r] = sum[r];
}

// x (M, K) -> x with each whole 32 of every row permuted as dot_int8 reads it (xp[8 g + i] = x[4 i + g]); the tail
// after the last whole 32 is not read from it.
static torch::Tensor permute_x(const torch::Tensor& x) {
  const int64_t M = x.size(0), K = x.size(1), K32 = K / 32 * 32;
  auto out = torch::empty_like(x);
  const float* src = x.data_ptr<float>();
  float* dst = out.data_ptr<float>();
  for (int64_t m = 0; m < M; ++m)
    for (int64_t c = 0; c < K32; c += 32)
      for (int g = 0; g < 4; ++g)
        for (int i = 0; i < 8; ++i) dst[m * K + c + 8 * g + i] = src[m * K + c + 4 * i + g];
  return out;
}

// bias (N,) fp32 or None -> its data, or nullptr (checked: contiguous fp32 of N values)
static const float* bias_data(const c10::optional<torch::Tensor>& bias, int64_t N) {
  if (!bias.has_value()) return nullptr;
  TORCH_CHECK(bias->scalar_type() == torch::kFloat && bias->is_contiguous() && bias->numel() == N,
              "bias: contiguous fp32 (N,)");
  return bias->data_ptr<float>();
}

// x (M, K) fp32, q (N, K) int8, scale (N,) fp32, bias (N,) fp32 or None, all contiguous -> y (M, N) fp32.
torch::Tensor int8_linear(torch::Tensor x, torch::Tensor q, torch::Tensor scale, c10::optional<torch::Tensor> bias) {
  TORCH_CHECK(x.dim() == 2 && x.scalar_type() == torch::kFloat && x.is_contiguous(), "x: contiguous fp32 (M, K)");
  TORCH_CHECK(q.dim() == 2 && q.scalar_type() == torch::kChar && q.is_contiguous(), "q: contiguous int8 (N, K)");
  TORCH_CHECK(q.size(1) == x.size(1) && scale.numel() == q.size(0) && scale.scalar_type() == torch::kFloat
              && scale.is_contiguous(), "shapes: x (M, K), q (N, K), scale (N,) fp32");
  const float* bp = bias_data(bias, q.size(0));
  const int64_t M = x.size(0), K = x.size(1), N = q.size(0);
  auto y = torch::empty({M, N}, x.options());
  const auto xperm = permute_x(x);
  const float* xp = x.data_ptr<float>();
  const float* xq = xperm.data_ptr<float>();
  const int8_t* qp = q.data_ptr<int8_t>();
  const float* sp = scale.data_ptr<float>();
  float* yp = y.data_ptr<float>();
  // output rows split across torch's threads; 64 rows (48 KiB of GPT-2 weights) per task at least
  at::parallel_for(0, N, 64, [&](int64_t n0, int64_t n1) {
    float out[4];
    for (int64_t n = n0; n < n1; ++n) {
      const int8_t* w = qp + n * K;
      int64_t m = 0;
      for (; m + 4 <= M; m += 4) {  // rows of x four at a time, then one at a time
        dot_int8<4>(xp + m * K, xq + m * K, w, K, out);
        for (int r = 0; r < 4; ++r) yp[(m + r) * N + n] = out[r] * sp[n] + (bp ? bp[n] : 0.0f);
      }
      for (; m < M; ++m) {
        dot_int8<1>(xp + m * K, xq + m * K, w, K, out);
        yp[m * N + n] = out[0] * sp[n] + (bp ? bp[n] : 0.0f);
      }
    }
  });
  return y;
}

// q (N, K) int8, scale (N,) fp32 -> q * scale[:, None] as fp32 (N, K): for products with many rows (a prompt),
// where converting the weight once and calling the fp32 product beats widening it again for every row.
torch::Tensor dequantize(torch::Tensor q, torch::Tensor scale) {
  TORCH_CHECK(q.dim() == 2 && q.scalar_type() == torch::kChar && q.is_contiguous(), "q: contiguous int8 (N, K)");
  TORCH_CHECK(scale.numel() == q.size(0) && scale.scalar_type() == torch::kFloat && scale.is_contiguous(),
              "scale: fp32 (N,)");
  const int64_t N = q.size(0), K = q.size(1);
  auto w = torch::empty({N, K}, scale.options());
  const int8_t* qp = q.data_ptr<int8_t>();
  const float* sp = scale.data_ptr<float>();
  float* wp = w.data_ptr<float>();
  at::parallel_for(0, N, 16, [&](int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; ++n) {
      const int8_t* src = qp + n * K;
      float* dst = wp + n * K;
      int64_t k = 0;
#ifdef __AVX2__
      const __m256 s = _mm256_set1_ps(sp[n]);
      for (; k + 8 <= K; k += 8) {  // 8 int8 -> 8 int32 -> 8 fp32, times the row's scale
        __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(src + k));
        _mm256_storeu_ps(dst + k, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(b)), s));
      }
#endif
      for (; k < K; ++k) dst[k] = static_cast<float>(src[k]) * sp[n];
    }
  });
  return w;
}

// 2. linear_rows: y = x @ w.T + bias for a few fp32 rows (decoding: 1-8), lmforge/kernels/linear.py's "avx2".
// A decoding step reads every weight once and does two flops per weight read: the product runs at the speed the
// weight streams from memory. torch's few-row product (MKL's) read GPT-2's matrices 5-15% slower than this loop on
// an AMD EPYC Zen 3 at one row, and at two rows ~1.5x slower (bench/generate.py --only linear). Here up to four
// weight rows are read side by side, 8 floats at a time, each multiplied into its own accumulator per row of x
// (four independent FMA chains at one row, eight at two and four rows); x (a few KiB to 48 KiB) stays in
// L1/L2, so each weight is read from memory once for up to four rows. Output rows are split across torch's threads in
// blocks; each task then adds the bias to its outputs and, when asked (lmforge/kernels/decode.py, a decoding step
// of a pre-norm layer), the residual stream `add` or the tanh GELU -- what would otherwise be one more call and
// one more pass over the outputs each.

// From four rows up the loop computes long enough per weight byte that the memory stream stalls while it does:
// every 16 floats (a 64-byte line) each weight row's line 8 KiB ahead is asked for (a prefetch), so the next blocks
// arrive while this one is multiplied. Eight rows of GPT-2's matrices: 1.45-1.57x faster but 768 x 3072 (its rows of
// x, from L2, are the limit there), AMD EPYC Zen 3, two threads (bench/generate.py --only linear, BENCHMARKS.md);
// the server's 8-client step gained with it (4.61x one client's, from 3.87x). At one row it made the large matrices
// up to 10% slower in a build timed against one without it (the hardware's own prefetch keeps up with a plain
// stream): not there.
constexpr int64_t kPrefetchAhead = 2048;  // floats: 8 KiB
constexpr int kPrefetchRows = 4;

// y[r * N + j] = sum_k x[r * K + k] * w[j * K + k] for R rows of x and J (1, 2 or 4) rows of w
template <int R, int J>
static inline void dot_rows(const float* x, const float* w, int64_t K, float* y, int64_t N) {
  float sum[R][J] = {};
  int64_t k = 0;
#ifdef __AVX2__
  __m256 acc[R][J];
  for (int r = 0; r < R; ++r)
    for (int j = 0; j < J; ++j) acc[r][j] = _mm256_setzero_ps();
  for (; k + 8 <= K; k += 8) {
    __m256 wv[J];
    if (R >= kPrefetchRows && (k & 15) == 0)
      for (int j = 0; j < J; ++j)
        _mm_prefetch(reinterpret_cast<const char*>(w + j * K + k + kPrefetchAhead), _MM_HINT_T0);
    for (int j = 0; j < J; ++j) wv[j] = _mm256_loadu_ps(w + j * K + k);
    for (int r = 0; r < R; ++r) {
      const __m256 xv = _mm256_loadu_ps(x + r * K + k);
      for (int j = 0; j < J; ++j) acc[r][j] = _mm256_fmadd_ps(xv, wv[j], acc[r][j]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int j = 0; j < J; ++j) sum[r][j] = hsum8(acc[r][j]);
#endif
  for (; k < K; ++k)  // the tail (or everything, without AVX2)
    for (int r = 0; r < R; ++r)
      for (int j = 0; j < J; ++j) sum[r][j] += x[r * K + k] * w[j * K + k];
  for (int r = 0; r < R; ++r)
    for (int j = 0; j < J; ++j) y[r * N + j] = sum[r][j];
}

// J rows of w per step: R * J accumulators, J weight registers and one for x stay within AVX2's 16 registers
template <int R>
constexpr int weight_rows() { return R >= 4 ? 2 : 4; }

static void gelu_span(const float* x, float* y, float* s, int64_t n);  // section 3

// G groups of R rows of x (G R rows in all) times each block of J weight rows: the block is read from memory for
// the first group and from L1 for the others, so the weight streams from memory once for all G R rows. Then, on
// each task's own outputs while they are in cache: + bias, + add (the residual stream, (G R, N)), GELU if asked.
template <int R, int G = 1>
static void linear_block(const float* x, const float* w, const float* b, const float* add, bool gelu, float* y,
                         int64_t K, int64_t N) {
  constexpr int J = weight_rows<R>();
  // blocks of J output rows; 64 output rows (192 KiB of a 768-wide weight) per task at least
  at::parallel_for(0, (N + J - 1) / J, 64 / J, [&](int64_t b0, int64_t b1) {
    for (int64_t blk = b0; blk < b1; ++blk) {
      for (int g = 0; g < G; ++g) {
        const float* xg = x + g * R * K;
        float* yg = y + g * R * N;
        int64_t n = blk * J;
        if (n + J <= N) {
          dot_rows<R, J>(xg, w + n * K, K, yg + n, N);
        } else {
          for (; n < N; ++n) dot_rows<R, 1>(xg, w + n * K, K, yg + n, N);  // the last rows
        }
      }
    }
    const int64_t j0 = b0 * J, j1 = std::min(N, b1 * J);
    for (int r = 0; r < G * R; ++r) {
      float* yr = y + r * N;
      if (b)
        for (int64_t j = j0; j < j1; ++j) yr[j] += b[j];
      if (add)
        for (int64_t j = j0; j < j1; ++j) yr[j] = add[r * N + j] + yr[j];
      if (gelu) gelu_span(yr + j0, yr + j0, nullptr, j1 - j0);
    }
  });
}

// x (M, K) fp32, w (N, K) fp32, bias (N,) fp32 or None, all contiguous -> y (M, N) fp32. x's rows eight at a
// time (two groups of four per block of weight rows: the weight read from memory once for eight rows), then four,
// two, one. (Eight in one group, one weight row per step, measured 0.79-0.93x F.linear at eight rows of GPT-2's
// matrices on an AMD EPYC Zen 3: the loads of x, not the weight, limit it. Two whole passes of four, as before
// the groups, read the weight twice: with the groups the server's engine stepped 8 rows at 4.9x the tokens/s of
// one instead of 4.2x; bench/generate.py --only server, BENCHMARKS.md.)
torch::Tensor linear_rows(torch::Tensor x, torch::Tensor w, c10::optional<torch::Tensor> bias,
                          c10::optional<torch::Tensor> add, bool gelu) {
  TORCH_CHECK(x.dim() == 2 && x.scalar_type() == torch::kFloat && x.is_contiguous(), "x: contiguous fp32 (M, K)");
  TORCH_CHECK(w.dim() == 2 && w.scalar_type() == torch::kFloat && w.is_contiguous() && w.size(1) == x.size(1),
              "w: contiguous fp32 (N, K)");
  const float* bp = bias_data(bias, w.size(0));
  const int64_t M = x.size(0), K = x.size(1), N = w.size(0);
  const float* ap = nullptr;
  if (add.has_value()) {
    TORCH_CHECK(add->scalar_type() == torch::kFloat && add->is_contiguous() && add->dim() == 2 && add->size(0) == M
                && add->size(1) == N, "add: contiguous fp32 (M, N)");
    ap = add->data_ptr<float>();
  }
  auto y = torch::empty({M, N}, x.options());
  const float* xp = x.data_ptr<float>();
  const float* wp = w.data_ptr<float>();
  float* yp = y.data_ptr<float>();
  const auto at = [&](int64_t m) { return ap ? ap + m * N : nullptr; };
  int64_t m = 0;
  for (; m + 8 <= M; m += 8) linear_block<4, 2>(xp + m * K, wp, bp, at(m), gelu, yp + m * N, K, N);
  for (; m + 4 <= M; m += 4) linear_block<4>(xp + m * K, wp, bp, at(m), gelu, yp + m * N, K, N);
  if (m + 2 <= M) { linear_block<2>(xp + m * K, wp, bp, at(m), gelu, yp + m * N, K, N); m += 2; }
  if (m < M) linear_block<1>(xp + m * K, wp, bp, at(m), gelu, yp + m * N, K, N);
  return y;
}

// 3. gelu_tanh_forward / gelu_tanh_backward: GPT-2's tanh GELU for training in one pass each way,
// lmforge/kernels/gelu.py's "avx2" candidate. gelu(x) = x * s, s = sigmoid(2C (x + A x^3)) (0.5 (1 + tanh(z)) =
// sigmoid(2 z)); gelu'(x) = s + s (1 - s) * x * 2C (1 + 3 A x^2). The forward keeps s for the backward. The
// sigmoid's exp is Cephes' expf (the range reduction x = n ln2 + r, |r| <= ln2 / 2, and its degree-5
// polynomial for exp(r) on that range, relative error ~1e-7), 8 floats at a time.
#ifdef __AVX2__
static inline __m256 exp8(__m256 x) {
  x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.3f)), _mm256_set1_ps(88.3f));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  // r = x - n ln2, ln2 in two parts (Cody-Waite) so r keeps its low bits
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 y = _mm256_set1_ps(1.9875691500e-4f);
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.3981999507e-3f));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(8.3334519073e-3f));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(4.1665795894e-2f));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.6666665459e-1f));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(5.0000001201e-1f));
  y = _mm256_fmadd_ps(y, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));  // 1 + r + r^2 p(r)
  const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(y, _mm256_castsi256_ps(e));  // times 2^n
}
#endif

static constexpr float kTwoC = 1.5957691216057308f;  // 2 sqrt(2 / pi)
static constexpr float kA = 0.044715f;

#ifdef __AVX2__
// (gelu(v), s) for 8 floats
static inline __m256 gelu8(__m256 v, __m256* s) {
  const __m256 one = _mm256_set1_ps(1.0f);
  const __m256 z = _mm256_mul_ps(_mm256_fmadd_ps(_mm256_mul_ps(v, v), _mm256_set1_ps(kTwoC * kA),
                                                 _mm256_set1_ps(kTwoC)), v);  // 2C (x + A x^3)
  *s = _mm256_div_ps(one, _mm256_add_ps(one, exp8(_mm256_sub_ps(_mm256_setzero_ps(), z))));
  return _mm256_mul_ps(v, *s);
}
#endif

// gelu(x[i]) -> y[i] for n floats (y may be x), and s[i] unless s is nullptr. With AVX2 the last n % 8 go through
// the same 8-wide code (via a small buffer), so every value is the same to the bit wherever a span starts or ends.
static void gelu_span(const float* x, float* y, float* s, int64_t n) {
  int64_t i = 0;
#ifdef __AVX2__
  __m256 sg;
  for (; i + 8 <= n; i += 8) {
    _mm256_storeu_ps(y + i, gelu8(_mm256_loadu_ps(x + i), &sg));
    if (s) _mm256_storeu_ps(s + i, sg);
  }
  if (i < n) {
    float buf[8] = {}, sbuf[8];
    std::copy(x + i, x + n, buf);
    _mm256_storeu_ps(buf, gelu8(_mm256_loadu_ps(buf), &sg));
    _mm256_storeu_ps(sbuf, sg);
    std::copy(buf, buf + (n - i), y + i);
    if (s) std::copy(sbuf, sbuf + (n - i), s + i);
  }
#else
  for (; i < n; ++i) {
    const float v = x[i], z = (kTwoC + kTwoC * kA * v * v) * v, sg = 1.0f / (1.0f + std::exp(-z));
    if (s) s[i] = sg;
    y[i] = v * sg;
  }
#endif
}

// x (contiguous fp32) -> (gelu(x), s); keep_s false (no gradient to come, lmforge/kernels/gelu.py's inference
// candidate): (gelu(x),) alone, s never written
std::vector<torch::Tensor> gelu_tanh_forward(torch::Tensor x, bool keep_s) {
  TORCH_CHECK(x.scalar_type() == torch::kFloat && x.is_contiguous(), "x: contiguous fp32");
  auto y = torch::empty_like(x);
  auto s = keep_s ? torch::empty_like(x) : torch::Tensor();
  const float* xp = x.data_ptr<float>();
  float* yp = y.data_ptr<float>();
  float* sp = keep_s ? s.data_ptr<float>() : nullptr;
  at::parallel_for(0, x.numel(), 16384, [&](int64_t i0, int64_t i1) {
    gelu_span(xp + i0, yp + i0, sp ? sp + i0 : nullptr, i1 - i0);
  });
  if (keep_s) return {y, s};
  return {y};
}

// (x, s from the forward, grad) -> grad * gelu'(x)
torch::Tensor gelu_tanh_backward(torch::Tensor x, torch::Tensor s, torch::Tensor grad) {
  TORCH_CHECK(x.scalar_type() == torch::kFloat && x.is_contiguous() && s.is_contiguous() && grad.is_contiguous()
              && s.sizes() == x.sizes() && grad.sizes() == x.sizes() && grad.scalar_type() == torch::kFloat,
              "x, s, grad: contiguous fp32 of one shape");
  auto out = torch::empty_like(x);
  const float* xp = x.data_ptr<float>();
  const float* sp = s.data_ptr<float>();
  const float* gp = grad.data_ptr<float>();
  float* op = out.data_ptr<float>();
  at::parallel_for(0, x.numel(), 16384, [&](int64_t i0, int64_t i1) {
    int64_t i = i0;
#ifdef __AVX2__
    const __m256 one = _mm256_set1_ps(1.0f), c = _mm256_set1_ps(kTwoC), c3a = _mm256_set1_ps(3 * kTwoC * kA);
    for (; i + 8 <= i1; i += 8) {
      const __m256 v = _mm256_loadu_ps(xp + i), sg = _mm256_loadu_ps(sp + i);
      const __m256 xdz = _mm256_mul_ps(_mm256_fmadd_ps(_mm256_mul_ps(v, v), c3a, c), v);  // x 2C (1 + 3A x^2)
      const __m256 d = _mm256_fmadd_ps(_mm256_mul_ps(sg, _mm256_sub_ps(one, sg)), xdz, sg);
      _mm256_storeu_ps(op + i, _mm256_mul_ps(d, _mm256_loadu_ps(gp + i)));
    }
#endif
    for (; i < i1; ++i) {
      const float v = xp[i], sg = sp[i], xdz = (kTwoC + 3 * kTwoC * kA * v * v) * v;
      op[i] = (sg * (1.0f - sg) * xdz + sg) * gp[i];
    }
  });
  return out;
}

// 4. decode_attention: one new query per row against the row's cached keys, lmforge/kernels/attention.py's
// "avx2" candidate for decoding. out[b, h] = sum_j p_j v[b, h, j], p = softmax_j(scale q[b, h] . k[b, h, j]) over
// the keys with keep[b, j] (all keys where keep is not given): "Attention Is All You Need", eq. 1, for one query.
// Why: torch's fused CPU kernel is built for blocks of queries; for a step of 8 rows x 6 heads x ~130 keys of
// 64 it took ~150 us per layer here (a boolean mask converted to an additive one, blocks padded). One (row,
// head) per task: its scores in a small buffer, the maximum subtracted before exp (exp8 above), then the
// weighted sum of values -- every key and value read once. q (B, H, 1, D), k and v (B, H, S, D): any strides
// with the last dimension contiguous (the cache's narrowed views); keep (B, S) bool.
#ifdef __AVX2__
// One (row, head) of decode_attention with D = 8 N: q and the running sum of values held in N registers each.
// Scores four keys at a time (four independent FMA chains, one horizontal sum per four keys).
template <int N>
static void attend_one(const float* q, const float* k, int64_t ks, const float* v, int64_t vs, const uint8_t* keep,
                       int64_t S, float scale, float* p, float* out) {
  __m256 qr[N];
  for (int n = 0; n < N; ++n) qr[n] = _mm256_loadu_ps(q + 8 * n);
  float m = -INFINITY;
  int64_t j = 0;
  for (; j + 4 <= S; j += 4) {
    __m256 a[4];
    for (int r = 0; r < 4; ++r) {
      const float* kj = k + (j + r) * ks;
      a[r] = _mm256_mul_ps(qr[0], _mm256_loadu_ps(kj));
      for (int n = 1; n < N; ++n) a[r] = _mm256_fmadd_ps(qr[n], _mm256_loadu_ps(kj + 8 * n), a[r]);
    }
    // the four sums at once: pairwise adds leave lane r of the 128-bit result holding key j + r's sum
    const __m256 h01 = _mm256_hadd_ps(a[0], a[1]), h23 = _mm256_hadd_ps(a[2], a[3]);
    const __m256 h = _mm256_hadd_ps(h01, h23);
    const __m128 d = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    _mm_storeu_ps(p + j, _mm_mul_ps(d, _mm_set1_ps(scale)));
  }
  for (; j < S; ++j) {
    const float* kj = k + j * ks;
    __m256 a = _mm256_mul_ps(qr[0], _mm256_loadu_ps(kj));
    for (int n = 1; n < N; ++n) a = _mm256_fmadd_ps(qr[n], _mm256_loadu_ps(kj + 8 * n), a);
    p[j] = hsum8(a) * scale;
  }
  for (j = 0; j < S; ++j) {
    if (keep && !keep[j]) p[j] = -INFINITY;
    m = p[j] > m ? p[j] : m;
  }
  float total = 0.0f;
  j = 0;
  if (m != -INFINITY) {
    const __m256 mv = _mm256_set1_ps(m), ninf = _mm256_set1_ps(-INFINITY);
    __m256 t = _mm256_setzero_ps();
    for (; j + 8 <= S; j += 8) {  // exp8 clamps exp(-inf) to e^-87: masked keys are zeroed by the compare
      const __m256 x = _mm256_loadu_ps(p + j);
      const __m256 e = _mm256_and_ps(exp8(_mm256_sub_ps(x, mv)), _mm256_cmp_ps(x, ninf, _CMP_NEQ_OQ));
      _mm256_storeu_ps(p + j, e);
      t = _mm256_add_ps(t, e);
    }
    total = hsum8(t);
  }
  for (; j < S; ++j) {
    p[j] = p[j] == -INFINITY ? 0.0f : std::exp(p[j] - m);
    total += p[j];
  }
  __m256 acc[N];
  for (int n = 0; n < N; ++n) acc[n] = _mm256_setzero_ps();
  for (j = 0; j < S; ++j) {
    if (p[j] == 0.0f) continue;
    const __m256 w = _mm256_set1_ps(p[j]);
    const float* vj = v + j * vs;
    for (int n = 0; n < N; ++n) acc[n] = _mm256_fmadd_ps(w, _mm256_loadu_ps(vj + 8 * n), acc[n]);
  }
  const __m256 inv = _mm256_set1_ps(total > 0.0f ? 1.0f / total : 0.0f);  // every key masked: zeros
  for (int n = 0; n < N; ++n) _mm256_storeu_ps(out + 8 * n, _mm256_mul_ps(acc[n], inv));
}
#endif

// The same for any D, one key at a time (the build without AVX2, head sizes not a multiple of 8 up to 128).
static void attend_any(const float* q, const float* k, int64_t ks, const float* v, int64_t vs, const uint8_t* keep,
                       int64_t S, int64_t D, float scale, float* p, float* out) {
  float m = -INFINITY;
  for (int64_t j = 0; j < S; ++j) {
    float dot = 0.0f;
    for (int64_t d = 0; d < D; ++d) dot += q[d] * k[j * ks + d];
    p[j] = keep && !keep[j] ? -INFINITY : dot * scale;
    m = p[j] > m ? p[j] : m;
  }
  float total = 0.0f;
  for (int64_t j = 0; j < S; ++j) {
    p[j] = m == -INFINITY || p[j] == -INFINITY ? 0.0f : std::exp(p[j] - m);
    total += p[j];
  }
  for (int64_t d = 0; d < D; ++d) out[d] = 0.0f;
  for (int64_t j = 0; j < S; ++j)
    for (int64_t d = 0; d < D; ++d) out[d] += p[j] * v[j * vs + d];
  const float inv = total > 0.0f ? 1.0f / total : 0.0f;
  for (int64_t d = 0; d < D; ++d) out[d] *= inv;
}

// One (row, head): AVX2 for head sizes 32, 64, 128, the plain loop otherwise; p holds S + 8 floats.
static void attend_row(const float* q, const float* k, int64_t ks, const float* v, int64_t vs, const uint8_t* keep,
                       int64_t S, int64_t D, float scale, float* p, float* out) {
#ifdef __AVX2__
  switch (D) {
    case 32: attend_one<4>(q, k, ks, v, vs, keep, S, scale, p, out); return;
    case 64: attend_one<8>(q, k, ks, v, vs, keep, S, scale, p, out); return;
    case 128: attend_one<16>(q, k, ks, v, vs, keep, S, scale, p, out); return;
    default: break;
  }
#endif
  attend_any(q, k, ks, v, vs, keep, S, D, scale, p, out);
}

// keep (B, S) bool or None -> its bytes (nullptr for None); `holder` keeps a contiguous copy alive
static const uint8_t* keep_data(const c10::optional<torch::Tensor>& keep, int64_t B, int64_t S,
                                torch::Tensor& holder) {
  if (!keep.has_value()) return nullptr;
  TORCH_CHECK(keep->scalar_type() == torch::kBool && keep->dim() == 2 && keep->size(0) == B && keep->size(1) == S,
              "keep: (B, S) bool");
  holder = keep->contiguous();
  return reinterpret_cast<const uint8_t*>(holder.data_ptr<bool>());
}

torch::Tensor decode_attention(torch::Tensor q, torch::Tensor k, torch::Tensor v, c10::optional<torch::Tensor> keep,
                               double scale) {
  TORCH_CHECK(q.scalar_type() == torch::kFloat && k.scalar_type() == torch::kFloat && v.scalar_type() == torch::kFloat
              && q.dim() == 4 && k.dim() == 4 && v.dim() == 4 && q.size(2) == 1 && q.stride(3) == 1
              && k.stride(3) == 1 && v.stride(3) == 1 && k.sizes() == v.sizes() && q.size(0) == k.size(0)
              && q.size(1) == k.size(1) && q.size(3) == k.size(3),
              "q (B, H, 1, D), k and v (B, H, S, D): fp32, last dimension contiguous");
  const int64_t B = k.size(0), H = k.size(1), S = k.size(2), D = k.size(3);
  torch::Tensor keep8;
  const uint8_t* kp = keep_data(keep, B, S, keep8);
  auto out = torch::empty({B, H, 1, D}, q.options());
  const float *qd = q.data_ptr<float>(), *kd = k.data_ptr<float>(), *vd = v.data_ptr<float>();
  float* od = out.data_ptr<float>();
  const float sc = static_cast<float>(scale);
  at::parallel_for(0, B * H, 1, [&](int64_t i0, int64_t i1) {
    std::vector<float> p(S + 8);
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t b = i / H, h = i % H;
      attend_row(qd + b * q.stride(0) + h * q.stride(1), kd + b * k.stride(0) + h * k.stride(1), k.stride(2),
                 vd + b * v.stride(0) + h * v.stride(1), v.stride(2), kp ? kp + b * S : nullptr, S, D, sc, p.data(),
                 od + i * D);
    }
  });
  return out;
}

// 5. cached_attention: a decoding step's self-attention from the fused q/k/v projection, one call per layer
// (lmforge/kernels/decode.py). qkv (B, 3 H D): each row's q, k, v, heads side by side, as MultiHeadAttention's qkv
// product gives them; k_cache, v_cache (B, H, L, D): the layer's KV cache buffers (lmforge.nn.cache). Writes each
// row's k and v at `position` and attends its q over positions 0..position (keep (B, position + 1) bool or
// None) as decode_attention does. Returns (B, H D): the heads side by side again, ready for the output projection.
// The same as the cache's narrow + copy_ for k and v, the heads' view and transpose, decode_attention and the
// transpose + reshape back (about ten calls a layer) in one.
torch::Tensor cached_attention(torch::Tensor qkv, torch::Tensor k_cache, torch::Tensor v_cache, int64_t position,
                               c10::optional<torch::Tensor> keep, double scale) {
  TORCH_CHECK(k_cache.dim() == 4 && k_cache.is_contiguous() && v_cache.is_contiguous()
              && k_cache.sizes() == v_cache.sizes() && k_cache.scalar_type() == torch::kFloat
              && v_cache.scalar_type() == torch::kFloat, "k_cache, v_cache: contiguous fp32 (B, H, L, D)");
  const int64_t B = k_cache.size(0), H = k_cache.size(1), L = k_cache.size(2), D = k_cache.size(3), S = position + 1;
  TORCH_CHECK(qkv.scalar_type() == torch::kFloat && qkv.is_contiguous() && qkv.dim() == 2 && qkv.size(0) == B
              && qkv.size(1) == 3 * H * D, "qkv: contiguous fp32 (B, 3 H D)");
  TORCH_CHECK(position >= 0 && position < L, "position ", position, " outside the cache's ", L, " positions");
  torch::Tensor keep8;
  const uint8_t* kp = keep_data(keep, B, S, keep8);
  auto out = torch::empty({B, H * D}, qkv.options());
  const float* in = qkv.data_ptr<float>();
  float *kd = k_cache.data_ptr<float>(), *vd = v_cache.data_ptr<float>(), *od = out.data_ptr<float>();
  const float sc = static_cast<float>(scale);
  at::parallel_for(0, B * H, 1, [&](int64_t i0, int64_t i1) {
    std::vector<float> p(S + 8);
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t b = i / H, h = i % H;
      const float* row = in + b * 3 * H * D;
      float* kr = kd + (b * H + h) * L * D;
      float* vr = vd + (b * H + h) * L * D;
      std::copy(row + (H + h) * D, row + (H + h + 1) * D, kr + position * D);
      std::copy(row + (2 * H + h) * D, row + (2 * H + h + 1) * D, vr + position * D);
      attend_row(row + h * D, kr, D, vr, D, kp ? kp + b * S : nullptr, S, D, sc, p.data(), od + i * D);
    }
  });
  return out;
}

// How many of torch's threads at::parallel_for gave work to, over n items: torch.get_num_threads() when this file
// was built with OpenMP (lmforge/kernels/native.py), 1 when it was not (tests/kernels/test_tune.py checks).
int64_t parallel_threads(int64_t n) {
  std::vector<int> ran(at::get_num_threads(), 0);
  at::parallel_for(0, n, 1, [&](int64_t, int64_t) { ran[at::get_thread_num()] = 1; });
  int64_t count = 0;
  for (int r : ran) count += r;
  return count;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("parallel_threads", &parallel_threads, "threads that at::parallel_for used for n items");
  m.def("gelu_tanh_forward", &gelu_tanh_forward, "GPT-2's tanh GELU: (gelu(x), s for the backward if keep_s)",
        py::arg("x"), py::arg("keep_s") = true);
  m.def("decode_attention", &decode_attention, "softmax(scale q k^T) v for one query per row over kept keys",
        py::arg("q"), py::arg("k"), py::arg("v"), py::arg("keep") = py::none(), py::arg("scale"));
  m.def("gelu_tanh_backward", &gelu_tanh_backward, "grad * gelu'(x) from x and the forward's s");
  m.def("int8_linear", &int8_linear, "(x @ q.T) * scale + bias: fp32 x, int8 q, per-row fp32 scale",
        py::arg("x"), py::arg("q"), py::arg("scale"), py::arg("bias") = py::none());
  m.def("dequantize", &dequantize, "q * scale[:, None] as fp32");
  m.def("linear_rows", &linear_rows, "x @ w.T + bias (+ add, then GELU if asked) for a few fp32 rows",
        py::arg("x"), py::arg("w"), py::arg("bias") = py::none(), py::arg("add") = py::none(),
        py::arg("gelu") = false);
  m.def("cached_attention", &cached_attention, "one decoding step's attention: k, v into the cache, q attends",
        py::arg("qkv"), py::arg("k_cache"), py::arg("v_cache"), py::arg("position"), py::arg("keep") = py::none(),
        py::arg("scale"));
}
