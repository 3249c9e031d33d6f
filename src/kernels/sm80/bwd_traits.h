// Tile shapes, shared-memory layouts and copy/MMA atoms of the FlashAttention-2 backward (sm80+).
// One CTA owns kBlockN keys; per query block it runs five GEMMs, each with its own warp layout:
//   S  = Q  K^T   (kBlockM x kBlockN)     dP = dO V^T   (kBlockM x kBlockN)    -> TiledMmaSdP
//   dV += P^T dO  (kBlockN x kHeadDim)    dK += dS^T Q  (kBlockN x kHeadDim)   -> TiledMmadKV
//   dQ  = dS K    (kBlockM x kHeadDim)                                         -> TiledMmadQ
// P and dS go through shared memory, where the transposing ldmatrix reads them as P^T and dS^T.
#pragma once

#include <cute/tensor.hpp>
#include <cutlass/numeric_types.h>

#include <type_traits>

#include "kernels/sm80/bwd.h"

namespace flashattn::sm80 {

using namespace cute;
using cute::Tensor;

template <typename Element_, int kHeadDim_, int kBlockN_, int kWarpsMSdP_, int kWarpsNdKV_, int kWarpsMdQ_>
struct BwdTraits {
  using Element = Element_;
  static constexpr int kHeadDim = kHeadDim_;
  static constexpr int kBlockM = bwd_block_m(kHeadDim_);
  static constexpr int kBlockN = kBlockN_;
  static constexpr int kNWarps = 8;
  static constexpr int kThreads = kNWarps * 32;

  using MmaOp = std::conditional_t<std::is_same_v<Element, cutlass::half_t>, SM80_16x8x16_F32F16F16F32_TN,
                                   SM80_16x8x16_F32BF16BF16F32_TN>;
  // Each warp covers 16 x 16 of its GEMM's output per step (two n8 atoms), so ldmatrix.x4 feeds B.
  template <int kWarpsM>
  using Mma = TiledMMA<MMA_Atom<MmaOp>, Layout<Shape<Int<kWarpsM>, Int<kNWarps / kWarpsM>, _1>>,
                       Tile<Int<16 * kWarpsM>, Int<16 * (kNWarps / kWarpsM)>, _16>>;
  using TiledMmaSdP = Mma<kWarpsMSdP_>;
  // dK and dV: the N permutation lays each warp's n8 atoms side by side (kDkvAtoms of them in each
  // slab of 8 x kDkvAtoms x warps along N columns) instead of interleaving the warps every 8 columns,
  // so a thread's 8-column blocks of a row come in runs of kDkvAtoms and the epilogue stores 16
  // (kDkvAtoms 4) or 8 (2) bytes at a time (store_tile_wide; tests/cpu/test_wide_store_layouts.cu).
  static constexpr int kWarpsAlongNdKV = kNWarps / kWarpsNdKV_;
  static constexpr int kDkvAtoms = kHeadDim % (32 * kWarpsAlongNdKV) == 0 ? 4 : 2;
  static constexpr int kDkvStoreSteps = kDkvAtoms == 4 ? 2 : 1;
  using TiledMmadKV =
      TiledMMA<MMA_Atom<MmaOp>, Layout<Shape<Int<kWarpsNdKV_>, Int<kWarpsAlongNdKV>, _1>>,
               Tile<Int<16 * kWarpsNdKV_>,
                    Layout<Shape<_8, Int<kWarpsAlongNdKV>, Int<kDkvAtoms>>, Stride<_1, Int<8 * kDkvAtoms>, _8>>, _16>>;
  using TiledMmadQ = Mma<kWarpsMdQ_>;
  static_assert(kBlockM % (16 * kWarpsMSdP_) == 0 && kBlockN % (16 * (kNWarps / kWarpsMSdP_)) == 0);
  static_assert(kBlockN % (16 * kWarpsNdKV_) == 0 && kHeadDim % (8 * kDkvAtoms * kWarpsAlongNdKV) == 0);
  static_assert(kBlockM % (16 * kWarpsMdQ_) == 0 && kHeadDim % (16 * (kNWarps / kWarpsMdQ_)) == 0);

  // Rows of 64 (or 32) elements XOR-swizzled in 16-byte units: conflict-free ldmatrix (either
  // direction) and 16-byte cp.async stores.
  static constexpr int kBlockKSmem = kHeadDim % 64 == 0 ? 64 : 32;
  using SmemAtom = decltype(composition(Swizzle<kBlockKSmem == 32 ? 2 : 3, 3, 3>{},
                                        Layout<Shape<_8, Int<kBlockKSmem>>, Stride<Int<kBlockKSmem>, _1>>{}));
  using SmemLayoutQ = decltype(tile_to_shape(SmemAtom{}, Shape<Int<kBlockM>, Int<kHeadDim>>{}));  // also dO
  using SmemLayoutKV = decltype(tile_to_shape(SmemAtom{}, Shape<Int<kBlockN>, Int<kHeadDim>>{}));
  using SmemAtomP = decltype(composition(Swizzle<3, 3, 3>{}, Layout<Shape<_8, _64>, Stride<_64, _1>>{}));
  using SmemLayoutP = decltype(tile_to_shape(SmemAtomP{}, Shape<Int<kBlockM>, Int<kBlockN>>{}));  // also dS

  // Transposing views of the same bytes: (cols x rows) of a row-major (rows x cols) tile.
  template <typename L, int kRows, int kCols>
  using Transposed = decltype(composition(L{}, make_layout(Shape<Int<kCols>, Int<kRows>>{}, GenRowMajor{})));
  using SmemLayoutQt = Transposed<SmemLayoutQ, kBlockM, kHeadDim>;   // (d x M), also dO^T
  using SmemLayoutKt = Transposed<SmemLayoutKV, kBlockN, kHeadDim>;  // (d x N)
  using SmemLayoutPt = Transposed<SmemLayoutP, kBlockM, kBlockN>;    // (N x M), also dS^T
  using SmemLayoutQtNoSwizzle = decltype(get_nonswizzle_portion(SmemLayoutQt{}));
  using SmemLayoutKtNoSwizzle = decltype(get_nonswizzle_portion(SmemLayoutKt{}));
  using SmemLayoutPtNoSwizzle = decltype(get_nonswizzle_portion(SmemLayoutPt{}));

  using SmemCopy = Copy_Atom<SM75_U32x4_LDSM_N, Element>;
  using SmemCopyTransposed = Copy_Atom<SM75_U16x8_LDSM_T, Element>;
  using SmemCopyStoreC = Copy_Atom<AutoVectorizingCopyWithAssumedAlignment<32>, Element>;  // P, dS -> smem

  static constexpr int kGmemThreadsPerRow = kBlockKSmem / 8;
  using GmemCopy = decltype(make_tiled_copy(
      Copy_Atom<SM80_CP_ASYNC_CACHEGLOBAL_ZFILL<cute::uint128_t>, Element>{},
      Layout<Shape<Int<kThreads / kGmemThreadsPerRow>, Int<kGmemThreadsPerRow>>, Stride<Int<kGmemThreadsPerRow>, _1>>{},
      Layout<Shape<_1, _8>>{}));

  // Q and dO (two stages each: the next step's tiles land while this step computes), K, V, P, dS
  static constexpr int kSmemBytes =
      int(4 * cosize(SmemLayoutQ{}) + 2 * cosize(SmemLayoutKV{}) + 2 * cosize(SmemLayoutP{})) * int(sizeof(Element));
  static_assert(kSmemBytes <= 227 * 1024, "more shared memory than a block may have");
};

}  // namespace flashattn::sm80
