// Tile shapes, shared-memory layouts and copy/MMA atoms of the FlashAttention-2 forward (sm80+).
#pragma once

#include <cute/tensor.hpp>
#include <cutlass/numeric_types.h>

#include <type_traits>

namespace flashattn::sm80 {

using namespace cute;
using cute::Tensor;  // not flashattn::Tensor (the API view)

template <typename Element_, int kHeadDim_, int kBlockM_, int kBlockN_, int kNWarps_>
struct FwdTraits {
  using Element = Element_;  // cutlass::half_t or cutlass::bfloat16_t
  static constexpr int kHeadDim = kHeadDim_;
  static constexpr int kBlockM = kBlockM_;
  static constexpr int kBlockN = kBlockN_;
  static constexpr int kNWarps = kNWarps_;
  static constexpr int kThreads = kNWarps * 32;

  // mma.sync m16n8k16, fp32 accumulate; warps stacked along M (split-Q: each warp owns rows).
  using MmaOp = std::conditional_t<std::is_same_v<Element, cutlass::half_t>, SM80_16x8x16_F32F16F16F32_TN,
                                   SM80_16x8x16_F32BF16BF16F32_TN>;
  using TiledMma = TiledMMA<MMA_Atom<MmaOp>, Layout<Shape<Int<kNWarps>, _1, _1>>, Tile<Int<16 * kNWarps>, _16, _16>>;

  // Shared memory: rows of 64 (or 32) elements, XOR-swizzled in 16-byte units so ldmatrix and the
  // 16-byte cp.async stores are bank-conflict free.
  static constexpr int kBlockKSmem = kHeadDim % 64 == 0 ? 64 : 32;
  static constexpr int kSwizzleBits = kBlockKSmem == 32 ? 2 : 3;
  using SmemAtom = decltype(composition(Swizzle<kSwizzleBits, 3, 3>{},
                                        Layout<Shape<_8, Int<kBlockKSmem>>, Stride<Int<kBlockKSmem>, _1>>{}));
  using SmemLayoutQ = decltype(tile_to_shape(SmemAtom{}, Shape<Int<kBlockM>, Int<kHeadDim>>{}));
  using SmemLayoutKV = decltype(tile_to_shape(SmemAtom{}, Shape<Int<kBlockN>, Int<kHeadDim>>{}));
  // V read as Vt (head_dim x keys) for O += P V: the same bytes through a transposing view.
  using SmemLayoutVt =
      decltype(composition(SmemLayoutKV{}, make_layout(Shape<Int<kHeadDim>, Int<kBlockN>>{}, GenRowMajor{})));
  using SmemLayoutVtNoSwizzle = decltype(get_nonswizzle_portion(SmemLayoutVt{}));

  using SmemCopyQK = Copy_Atom<SM75_U32x4_LDSM_N, Element>;
  using SmemCopyVt = Copy_Atom<SM75_U16x8_LDSM_T, Element>;

  // Global -> shared: 16-byte cp.async, a row of kBlockKSmem elements per kBlockKSmem/8 threads.
  static constexpr int kGmemThreadsPerRow = kBlockKSmem / 8;
  using GmemCopy = decltype(make_tiled_copy(
      Copy_Atom<SM80_CP_ASYNC_CACHEGLOBAL_ZFILL<cute::uint128_t>, Element>{},
      Layout<Shape<Int<kThreads / kGmemThreadsPerRow>, Int<kGmemThreadsPerRow>>, Stride<Int<kGmemThreadsPerRow>, _1>>{},
      Layout<Shape<_1, _8>>{}));

  static constexpr int kSmemBytes =
      int(cosize(SmemLayoutQ{}) + 2 * cosize(SmemLayoutKV{})) * int(sizeof(Element));
};

}  // namespace flashattn::sm80
