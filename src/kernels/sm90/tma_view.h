// The global views the Hopper kernels' TMA descriptors are built on (host side).
#pragma once

#include <cstdint>
#include <cute/tensor.hpp>
#include <type_traits>

#include "kernels/common/problem.h"

namespace flashattn::sm90 {

// (rows, d, heads, batch) with the caller's strides, d contiguous; varlen packs every sequence into
// the rows of one batch entry (extent 1; its stride, never used, is any multiple of 16 bytes).
// ptr: const void* for what the kernels load, void* for what they store.
template <typename Element, typename Void>
auto tma_view(const Problem& p, Void* ptr, int64_t rows, int heads, const RowStrides& st) {
  using E = std::conditional_t<std::is_const_v<Void>, Element const, Element>;
  return cute::make_tensor(
      cute::make_gmem_ptr(static_cast<E*>(ptr)),
      cute::make_shape(int32_t(rows), int32_t(p.head_dim), int32_t(heads), int32_t(p.varlen ? 1 : p.batch)),
      cute::make_stride(st.row, cute::_1{}, st.head, p.varlen ? int64_t(8) : st.batch));
}

}  // namespace flashattn::sm90
