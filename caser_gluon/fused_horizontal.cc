// Caser's horizontal convolutions and their max-pooling over time, as one
// MXNet operator (an extension library, loaded with mx.library.load by
// caser_gluon/fused.py).
//
// Operator caser_horizontal_max, attribute L (the number of heights):
//   inputs   image (b, L k) float32: the L item embeddings of each row;
//            then for h = 1..L: weight_h (d, h k), bias_h (d,)
//   outputs  pooled (b, L d) float32: column (h - 1) d + j is
//              max over t = 0..L-h of  image[t k : (t + h) k] . weight_h[j]
//                                       + bias_h[j]
//            argmax (b, L d) int32: the window t of that maximum (the first
//              one on ties), kept for the backward pass
// The backward pass sends each pooled value's gradient to its window only:
// d image[t k + i] += g w_h[j, i], d weight_h[j, i] += g image[t k + i],
// d bias_h[j] += g.
//
// Rows are shared among OpenMP threads; each thread sums its weight and
// bias gradients apart, and the sums are added at the end.
#include <mxnet/lib_api.h>
#include <omp.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

using mxnet::ext::MXReturnValue;
using mxnet::ext::MXTensor;
using mxnet::ext::OpResource;
using mxnet::ext::MX_FAIL;
using mxnet::ext::MX_SUCCESS;

namespace {

using Attrs = std::unordered_map<std::string, std::string>;
using Shapes = std::vector<std::vector<unsigned int>>;

int heights(const Attrs& attrs) { return std::stoi(attrs.at("L")); }

// Sizes of one call: b rows, L heights, k columns, d filters per height.
struct Sizes {
  int64_t b, L, k, d;
};

Sizes sizes_of(const std::vector<MXTensor>& image_and_params, int L) {
  const MXTensor& image = image_and_params[0];
  return {image.shape[0], L, image.shape[1] / L,
          image_and_params[1].shape[0]};
}

// Offset of height h's weights in a buffer holding all heights' (d, h k).
int64_t weight_offset(const Sizes& s, int64_t h) {
  return s.d * s.k * (h - 1) * h / 2;
}

// 16 floats in vector registers (GCC's and Clang's vector extension).
typedef float v16 __attribute__((vector_size(64), aligned(4)));
typedef int32_t i16 __attribute__((vector_size(64), aligned(4)));

// One row: every height's best window and its value, for d = 16 filters.
void forward_row16(const Sizes& s, const float* x,
                   const std::vector<const float*>& weight_t,
                   const std::vector<const float*>& bias, float* pooled,
                   int32_t* argmax) {
  const int64_t k = s.k;
  for (int64_t h = 1; h <= s.L; ++h) {
    const v16* wt = reinterpret_cast<const v16*>(weight_t[h - 1]);
    const v16 b = *reinterpret_cast<const v16*>(bias[h - 1]);
    v16 best = b;
    i16 where = {0};
    for (int64_t t = 0; t + h <= s.L; ++t) {
      const float* window = x + t * k;
      v16 a = b, a2 = {0};            // two chains: FMA latency, not width
      int64_t i = 0;
      for (; i + 1 < h * k; i += 2) {
        a += window[i] * wt[i];
        a2 += window[i + 1] * wt[i + 1];
      }
      if (i < h * k) a += window[i] * wt[i];
      a += a2;
      if (t == 0) {
        best = a;
        continue;
      }
      const i16 better = a > best;
      best = better ? a : best;
      where = better ? (i16){0} + static_cast<int32_t>(t) : where;
    }
    std::memcpy(pooled + (h - 1) * 16, &best, sizeof(best));
    std::memcpy(argmax + (h - 1) * 16, &where, sizeof(where));
  }
}

// The same for any number of filters d (scratch: d floats).
void forward_row(const Sizes& s, const float* x,
                 const std::vector<const float*>& weight_t,
                 const std::vector<const float*>& bias, float* pooled,
                 int32_t* argmax, float* a) {
  const int64_t k = s.k, d = s.d;
  for (int64_t h = 1; h <= s.L; ++h) {
    float* best = pooled + (h - 1) * d;
    int32_t* where = argmax + (h - 1) * d;
    for (int64_t t = 0; t + h <= s.L; ++t) {
      const float* window = x + t * k;
      for (int64_t j = 0; j < d; ++j) a[j] = bias[h - 1][j];
      for (int64_t i = 0; i < h * k; ++i)
        for (int64_t j = 0; j < d; ++j)
          a[j] += window[i] * weight_t[h - 1][i * d + j];
      for (int64_t j = 0; j < d; ++j) {
        if (t == 0 || a[j] > best[j]) {
          best[j] = a[j];
          where[j] = static_cast<int32_t>(t);
        }
      }
    }
  }
}

MXReturnValue forward(const Attrs& attrs, std::vector<MXTensor>* inputs,
                      std::vector<MXTensor>* outputs, const OpResource& res) {
  const int L = heights(attrs);
  const Sizes s = sizes_of(*inputs, L);
  // the weights transposed once per call, (h k, d) per height
  float* transposed = static_cast<float*>(
      res.alloc_cpu(weight_offset(s, L + 1) * sizeof(float)));
  std::vector<const float*> weight_t(L), bias(L);
  for (int64_t h = 1; h <= L; ++h) {
    const float* w = (*inputs)[2 * h - 1].data<float>();
    float* wt = transposed + weight_offset(s, h);
    for (int64_t j = 0; j < s.d; ++j)
      for (int64_t i = 0; i < h * s.k; ++i) wt[i * s.d + j] = w[j * h * s.k + i];
    weight_t[h - 1] = wt;
    bias[h - 1] = (*inputs)[2 * h].data<float>();
  }
  const float* image = (*inputs)[0].data<float>();
  float* pooled = (*outputs)[0].data<float>();
  int32_t* argmax = (*outputs)[1].data<int32_t>();
#pragma omp parallel
  {
    std::vector<float> scratch(s.d);
#pragma omp for schedule(static)
    for (int64_t r = 0; r < s.b; ++r) {
      const float* x = image + r * s.L * s.k;
      float* out = pooled + r * s.L * s.d;
      int32_t* where = argmax + r * s.L * s.d;
      if (s.d == 16)
        forward_row16(s, x, weight_t, bias, out, where);
      else
        forward_row(s, x, weight_t, bias, out, where, scratch.data());
    }
  }
  return MX_SUCCESS;
}

// One row's gradients: the image's (written), the weights' and biases'
// (added to this thread's sums, laid out as weight_offset, then biases).
void backward_row(const Sizes& s, const float* g, const int32_t* argmax,
                  const float* x, const std::vector<const float*>& weight,
                  float* dx, float* sums) {
  const int64_t k = s.k, d = s.d;
  std::fill(dx, dx + s.L * k, 0.0f);
  float* dbias = sums + weight_offset(s, s.L + 1);
  for (int64_t h = 1; h <= s.L; ++h) {
    const float* w = weight[h - 1];
    float* dw = sums + weight_offset(s, h);
    for (int64_t j = 0; j < d; ++j) {
      const float gj = g[(h - 1) * d + j];
      if (gj == 0.0f) continue;
      const int64_t start = argmax[(h - 1) * d + j] * k;
      const float* wj = w + j * h * k;
      float* dwj = dw + j * h * k;
#pragma omp simd
      for (int64_t i = 0; i < h * k; ++i) {
        dx[start + i] += gj * wj[i];
        dwj[i] += gj * x[start + i];
      }
      dbias[(h - 1) * d + j] += gj;
    }
  }
}

// The sum of a vector's 16 lanes, as a tree of shuffles (four adds deep).
inline float lane_sum(v16 v) {
  const i16 half = {8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7};
  const i16 quarter = {4, 5, 6, 7, 0, 1, 2, 3, 12, 13, 14, 15, 8, 9, 10, 11};
  const i16 pair = {2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13};
  const i16 one = {1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14};
  v16 s = v + __builtin_shuffle(v, half);
  s += __builtin_shuffle(s, quarter);
  s += __builtin_shuffle(s, pair);
  s += __builtin_shuffle(s, one);
  return s[0];
}

// One row's gradients for d = 16 filters. For each window (h, t), gt is
// the gradient of the filters whose maximum it holds (0 elsewhere): the
// weights' gradient is summed transposed, (h k, 16) per height, the
// image's as 16 partial sums per position (partial: L k vectors), whose
// lanes are added at the end. No branch depends on the data.
void backward_row16(const Sizes& s, const float* g, const int32_t* argmax,
                    const float* x, const std::vector<const float*>& weight_t,
                    float* dx, v16* dweight_t, v16* dbias, v16* partial) {
  const int64_t k = s.k, n = s.L * k;
  for (int64_t p = 0; p < n; ++p) partial[p] = (v16){0};
  v16* dwt = dweight_t;
  for (int64_t h = 1; h <= s.L; ++h) {
    v16 gh;
    i16 where;
    std::memcpy(&gh, g + (h - 1) * 16, sizeof(gh));
    std::memcpy(&where, argmax + (h - 1) * 16, sizeof(where));
    dbias[h - 1] += gh;
    const v16* wt = reinterpret_cast<const v16*>(weight_t[h - 1]);
    for (int64_t t = 0; t + h <= s.L; ++t) {
      const v16 gt = where == static_cast<int32_t>(t) ? gh : (v16){0};
      const float* window = x + t * k;
      v16* into = partial + t * k;
      for (int64_t i = 0; i < h * k; ++i) {
        into[i] += wt[i] * gt;
        dwt[i] += window[i] * gt;
      }
    }
    dwt += h * k;
  }
  for (int64_t p = 0; p < n; ++p) dx[p] = lane_sum(partial[p]);
}

// The backward pass for d = 16: the weights transposed once per call,
// each thread's sums apart, added and transposed back at the end.
void backward16(const Sizes& s, const float* g, const int32_t* argmax,
                const float* image, const std::vector<const float*>& weight,
                float* dimage, std::vector<MXTensor>* outputs,
                const OpResource& res) {
  const int64_t L = s.L, k = s.k, n = L * k;
  const int64_t rows_t = k * L * (L + 1) / 2;     // sum over h of h k
  const int threads = omp_get_max_threads();
  const int64_t mine_size = rows_t + L + n;       // dw^T, db, partial sums
  v16* buffer = static_cast<v16*>(res.alloc_cpu(
      (rows_t + threads * mine_size) * sizeof(v16)));
  float* weight_t = reinterpret_cast<float*>(buffer);
  std::vector<const float*> wt(L);
  for (int64_t h = 1, at = 0; h <= L; at += h * k, ++h) {
    float* into = weight_t + 16 * at;
    for (int64_t j = 0; j < 16; ++j)
      for (int64_t i = 0; i < h * k; ++i)
        into[i * 16 + j] = weight[h - 1][j * h * k + i];
    wt[h - 1] = into;
  }
  v16* sums = buffer + rows_t;
  std::fill(sums, sums + threads * mine_size, (v16){0});
#pragma omp parallel num_threads(threads)
  {
    v16* mine = sums + omp_get_thread_num() * mine_size;
#pragma omp for schedule(static)
    for (int64_t r = 0; r < s.b; ++r)
      backward_row16(s, g + r * L * 16, argmax + r * L * 16, image + r * n,
                     wt, dimage + r * n, mine, mine + rows_t,
                     mine + rows_t + L);
  }
  for (int t = 1; t < threads; ++t)
    for (int64_t i = 0; i < rows_t + L; ++i)
      sums[i] += sums[t * mine_size + i];
  const v16* dwt = sums;
  for (int64_t h = 1; h <= L; ++h) {
    float* dw = (*outputs)[2 * h - 1].data<float>();
    for (int64_t j = 0; j < 16; ++j)
      for (int64_t i = 0; i < h * k; ++i) dw[j * h * k + i] = dwt[i][j];
    dwt += h * k;
    std::memcpy((*outputs)[2 * h].data<float>(), &sums[rows_t + h - 1],
                sizeof(v16));
  }
}

MXReturnValue backward(const Attrs& attrs, std::vector<MXTensor>* inputs,
                       std::vector<MXTensor>* outputs,
                       const OpResource& res) {
  // inputs: d pooled, d argmax, image, weight_1, bias_1, ..., pooled, argmax
  const int L = heights(attrs);
  std::vector<MXTensor> forward_inputs(inputs->begin() + 2,
                                       inputs->begin() + 3 + 2 * L);
  const Sizes s = sizes_of(forward_inputs, L);
  const float* g = (*inputs)[0].data<float>();
  const float* image = forward_inputs[0].data<float>();
  const int32_t* argmax = (*inputs)[3 + 2 * L + 1].data<int32_t>();
  std::vector<const float*> weight(L);
  for (int64_t h = 1; h <= L; ++h)
    weight[h - 1] = forward_inputs[2 * h - 1].data<float>();
  float* dimage = (*outputs)[0].data<float>();
  if (s.d == 16) {
    backward16(s, g, argmax, image, weight, dimage, outputs, res);
    return MX_SUCCESS;
  }
  const int64_t width = weight_offset(s, L + 1) + L * s.d;  // w's, then b's
  const int threads = omp_get_max_threads();
  float* sums = static_cast<float*>(
      res.alloc_cpu(threads * width * sizeof(float)));
  std::fill(sums, sums + threads * width, 0.0f);
#pragma omp parallel num_threads(threads)
  {
    float* mine = sums + omp_get_thread_num() * width;
#pragma omp for schedule(static)
    for (int64_t r = 0; r < s.b; ++r)
      backward_row(s, g + r * s.L * s.d, argmax + r * s.L * s.d,
                   image + r * s.L * s.k, weight, dimage + r * s.L * s.k,
                   mine);
  }
  for (int t = 1; t < threads; ++t)
    for (int64_t i = 0; i < width; ++i) sums[i] += sums[t * width + i];
  for (int64_t h = 1; h <= L; ++h) {
    const float* dw = sums + weight_offset(s, h);
    std::copy(dw, dw + s.d * h * s.k, (*outputs)[2 * h - 1].data<float>());
    const float* db = sums + weight_offset(s, L + 1) + (h - 1) * s.d;
    std::copy(db, db + s.d, (*outputs)[2 * h].data<float>());
  }
  return MX_SUCCESS;
}

MXReturnValue parse_attrs(const Attrs& attrs, int* num_in, int* num_out) {
  if (!attrs.count("L")) return MX_FAIL;
  *num_in = 1 + 2 * heights(attrs);
  *num_out = 2;
  return MX_SUCCESS;
}

MXReturnValue infer_type(const Attrs& attrs, std::vector<int>* in_types,
                         std::vector<int>* out_types) {
  for (int type : *in_types)
    if (type != mxnet::ext::kFloat32) return MX_FAIL;
  (*out_types)[0] = mxnet::ext::kFloat32;
  (*out_types)[1] = mxnet::ext::kInt32;
  return MX_SUCCESS;
}

MXReturnValue infer_shape(const Attrs& attrs, Shapes* in_shapes,
                          Shapes* out_shapes) {
  const unsigned L = heights(attrs);
  const std::vector<unsigned int>& image = (*in_shapes)[0];
  if (image.size() != 2 || image[1] % L) return MX_FAIL;
  const unsigned k = image[1] / L, d = (*in_shapes)[1][0];
  for (unsigned h = 1; h <= L; ++h) {
    const std::vector<unsigned int>& w = (*in_shapes)[2 * h - 1];
    const std::vector<unsigned int>& b = (*in_shapes)[2 * h];
    if (w.size() != 2 || w[0] != d || w[1] != h * k || b.size() != 1 ||
        b[0] != d)
      return MX_FAIL;
  }
  (*out_shapes)[0] = {image[0], L * d};
  (*out_shapes)[1] = {image[0], L * d};
  return MX_SUCCESS;
}

}  // namespace

REGISTER_OP(caser_horizontal_max)
    .setForward(forward, "cpu")
    .setBackward(backward, "cpu")
    .setParseAttrs(parse_attrs)
    .setInferType(infer_type)
    .setInferShape(infer_shape);

MXReturnValue initialize(int version) {
  return version >= 10900 ? MX_SUCCESS : MX_FAIL;
}
