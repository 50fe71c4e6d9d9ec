"""The fixed C++ harness around a generated pointwise loop body.

``run(inputs)`` broadcasts the inputs like torch does, walks the output row by row (rows are
the output with its contiguous inner dimensions merged), and evaluates the generated
``fused_value`` once per element. Inner-dimension operands that are not unit-stride (a
broadcast bias, a transposed view) are staged in a per-row scratch line so the inner loop
always reads unit-stride pointers and vectorises. ``at::parallel_for`` respects torch's
thread setting, so a single-threaded evaluation stays single-threaded.
"""

from __future__ import annotations

_HEADER = """\
#include <torch/extension.h>
#include <ATen/ExpandUtils.h>
#include <ATen/Parallel.h>
#include <algorithm>
#include <cmath>
#include <memory>
#include <vector>

// glibc >= 2.35 ships vector versions of these (libmvec); declaring them lets -fopenmp-simd
// vectorise the loop instead of calling the scalar functions per element.
#if defined(__x86_64__) && defined(__GLIBC__) && __GLIBC_PREREQ(2, 35)
extern "C" {
float expf(float) __attribute__((simd("notinbranch")));
float logf(float) __attribute__((simd("notinbranch")));
float tanhf(float) __attribute__((simd("notinbranch")));
float erff(float) __attribute__((simd("notinbranch")));
float expm1f(float) __attribute__((simd("notinbranch")));
float log1pf(float) __attribute__((simd("notinbranch")));
float sinf(float) __attribute__((simd("notinbranch")));
float cosf(float) __attribute__((simd("notinbranch")));
}
#endif
"""

_RUNNER = """\
torch::Tensor run(std::vector<torch::Tensor> inputs) {
  constexpr int64_t K = @K@;
  TORCH_CHECK(inputs.size() == K, "expected @K@ inputs");
  std::vector<int64_t> shape;
  for (const auto& t : inputs) {
    TORCH_CHECK(t.scalar_type() == torch::kFloat32 && t.device().is_cpu(), "float32 CPU only");
    shape = at::infer_size(shape, t.sizes());
  }
  auto out = torch::empty(shape, inputs[0].options());
  const int64_t numel = out.numel();
  if (numel == 0) return out;

  // Strides of every input seen through the output's shape (0 where broadcast), with the
  // output's dimensions merged wherever every input is also contiguous across them.
  std::vector<int64_t> sizes;
  std::vector<std::vector<int64_t>> strides(K);
  std::vector<torch::Tensor> views;
  for (const auto& t : inputs) views.push_back(t.expand(shape));
  for (int64_t d = static_cast<int64_t>(shape.size()) - 1; d >= 0; --d) {
    if (shape[d] == 1) continue;
    bool merge = !sizes.empty();
    for (int64_t k = 0; k < K && merge; ++k) {
      merge = views[k].stride(d) == strides[k].back() * sizes.back();
    }
    if (merge) {
      sizes.back() *= shape[d];
    } else {
      sizes.push_back(shape[d]);
      for (int64_t k = 0; k < K; ++k) strides[k].push_back(views[k].stride(d));
    }
  }
  if (sizes.empty()) {
    sizes.push_back(1);
    for (int64_t k = 0; k < K; ++k) strides[k].push_back(0);
  }
  const int64_t cols = sizes[0];  // innermost (merged) dimension
  const int64_t rows = numel / cols;
  const int64_t outer_dims = static_cast<int64_t>(sizes.size()) - 1;
  std::vector<const float*> base;
  for (const auto& v : views) base.push_back(v.data_ptr<float>());
  float* result = out.data_ptr<float>();

  at::parallel_for(0, rows, std::max<int64_t>(1, 65536 / cols), [&](int64_t r0, int64_t r1) {
    // Lines of BLOCK elements: operands that are not unit-stride along the inner dimension
    // (a broadcast scalar or bias, a transposed view) are staged here, in L1, so the hot
    // loop only ever reads unit-stride pointers and vectorises.
    constexpr int64_t BLOCK = 1024;
    std::unique_ptr<float[]> scratch(new float[K * BLOCK]);
    for (int64_t r = r0; r < r1; ++r) {
      const float* row[K];
      int64_t rest = r;
      int64_t offset[K] = {0};
      for (int64_t d = 1; d <= outer_dims; ++d) {
        const int64_t i = rest % sizes[d];
        rest /= sizes[d];
        for (int64_t k = 0; k < K; ++k) offset[k] += i * strides[k][d];
      }
      for (int64_t k = 0; k < K; ++k) row[k] = base[k] + offset[k];
      for (int64_t c0 = 0; c0 < cols; c0 += BLOCK) {
        const int64_t n = std::min(BLOCK, cols - c0);
        const float* p[K];
        for (int64_t k = 0; k < K; ++k) {
          const int64_t step = strides[k][0];
          if (step == 1) {
            p[k] = row[k] + c0;
            continue;
          }
          float* line = scratch.get() + k * BLOCK;
          const float* src = row[k] + c0 * step;
          if (step == 0) {
            std::fill(line, line + n, *src);  // constant along the row: vectorised fill
          } else {
            for (int64_t c = 0; c < n; ++c) line[c] = src[c * step];
          }
          p[k] = line;
        }
@POINTERS@
        float* __restrict dst = result + r * cols + c0;
#pragma omp simd
        for (int64_t c = 0; c < n; ++c) {
          dst[c] = fused_value(@ARGS@);
        }
      }
    }
  });
  return out;
}
"""


def render_source(n_inputs: int, body_lines: list[str]) -> str:
    """The complete C++ translation unit for a chain over ``n_inputs`` operands."""
    params = ", ".join(f"float v{k}" for k in range(n_inputs))
    body = "\n".join(f"  {line}" for line in body_lines)
    value_fn = f"static inline float fused_value({params}) {{\n{body}\n}}\n"
    pointers = "\n".join(f"        const float* __restrict p{k} = p[{k}];" for k in range(n_inputs))
    args = ", ".join(f"p{k}[c]" for k in range(n_inputs))
    runner = (
        _RUNNER.replace("@K@", str(n_inputs))
        .replace("@POINTERS@", pointers)
        .replace("@ARGS@", args)
    )
    return f"{_HEADER}\n{value_fn}\n{runner}"


_ROW_RUNNER = """\
std::optional<torch::Tensor> run(std::vector<torch::Tensor> inputs) {
  constexpr int64_t K = @K@;
  TORCH_CHECK(inputs.size() == K, "expected @K@ inputs");
  std::vector<int64_t> shape;
  for (const auto& t : inputs) {
    TORCH_CHECK(t.scalar_type() == torch::kFloat32 && t.device().is_cpu(), "float32 CPU only");
    shape = at::infer_size(shape, t.sizes());
  }
  // The reductions run over the last dimension; a chain written for a fixed rank says so.
  if (shape.empty() || (@RANK@ > 0 && static_cast<int64_t>(shape.size()) != @RANK@)) {
    return std::nullopt;
  }
  const int64_t cols = shape.back();
  const int64_t outer_dims = static_cast<int64_t>(shape.size()) - 1;
  std::vector<int64_t> out_shape(shape.begin(), shape.end());
  if (@ROW_OUTPUT@) {
    if (@KEEPDIM@) out_shape.back() = 1; else out_shape.pop_back();
  }
  auto out = torch::empty(out_shape, inputs[0].options());
  const int64_t rows = cols == 0 ? 0 : out.numel() / (@ROW_OUTPUT@ ? 1 : cols);
  if (rows == 0 || cols == 0) return std::nullopt;
  std::vector<torch::Tensor> views;
  for (const auto& t : inputs) views.push_back(t.expand(shape));
  float* result = out.data_ptr<float>();

  at::parallel_for(0, rows, std::max<int64_t>(1, 16384 / cols), [&](int64_t r0, int64_t r1) {
    // Each operand's row is read through a unit-stride pointer: in place when contiguous
    // along the row, else staged in a scratch line (a broadcast bias, a per-row scalar).
    std::unique_ptr<float[]> scratch(new float[K * cols]);
    std::unique_ptr<float[]> stash(new float[@STASHES@ * cols + 1]);
    for (int64_t r = r0; r < r1; ++r) {
      const float* p[K];
      for (int64_t k = 0; k < K; ++k) {
        int64_t rest = r;
        int64_t offset = 0;
        for (int64_t d = outer_dims - 1; d >= 0; --d) {
          offset += (rest % shape[d]) * views[k].stride(d);
          rest /= shape[d];
        }
        const float* src = views[k].data_ptr<float>() + offset;
        const int64_t step = views[k].stride(outer_dims);
        if (step == 1) {
          p[k] = src;
          continue;
        }
        float* line = scratch.get() + k * cols;
        if (step == 0) {
          std::fill(line, line + cols, *src);
        } else {
          for (int64_t c = 0; c < cols; ++c) line[c] = src[c * step];
        }
        p[k] = line;
      }
@POINTERS@
      const int64_t n = cols;
      const float inv_n = 1.0f / static_cast<float>(n);
      (void)inv_n;
@BODY@
    }
  });
  return out;
}
"""


def render_row_source(
    n_inputs: int,
    body_lines: list[str],
    *,
    rank: int,
    row_output: bool,
    keepdim: bool,
    stashes: int = 0,
) -> str:
    """The translation unit for a row-wise chain (reductions over the last dimension)."""
    pointers = "\n".join(f"      const float* __restrict p{k} = p[{k}];" for k in range(n_inputs))
    body = "\n".join(f"      {line}" for line in body_lines)
    runner = (
        _ROW_RUNNER.replace("@K@", str(n_inputs))
        .replace("@RANK@", str(rank))
        .replace("@ROW_OUTPUT@", "true" if row_output else "false")
        .replace("@KEEPDIM@", "true" if keepdim else "false")
        .replace("@STASHES@", str(stashes))
        .replace("@POINTERS@", pointers)
        .replace("@BODY@", body)
    )
    header = _HEADER.replace(
        "#include <memory>", "#include <limits>\n#include <memory>\n#include <optional>"
    )
    return f"{header}\n{runner}"
