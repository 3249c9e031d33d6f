// The global views the Hopper kernels' TMA descriptors are built on (host side), and the
// descriptors' types.
#pragma once

#include <cstdint>
#include <cute/atom/copy_traits_sm90_tma.hpp>
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

// The type of a TMA load of Box tiles of such a view (const Element) into the first two modes of
// SmemLayout.
template <typename Element, typename SmemLayout, typename Box>
using TmaLoad = decltype(cute::make_tma_copy(
    cute::SM90_TMA_LOAD{},
    cute::make_tensor(cute::make_gmem_ptr(static_cast<Element const*>(nullptr)),
                      cute::Shape<int32_t, int32_t, int32_t, int32_t>{},
                      cute::Stride<int64_t, cute::_1, int64_t, int64_t>{}),
    cute::take<0, 2>(SmemLayout{}), Box{}, cute::_1{}));

// Bytes a TMA load of the first two modes of SmemLayout brings.
template <typename Element, typename SmemLayout>
constexpr uint32_t kTmaBytes = uint32_t(cute::size(cute::take<0, 2>(SmemLayout{})) * sizeof(Element));

}  // namespace flashattn::sm90
