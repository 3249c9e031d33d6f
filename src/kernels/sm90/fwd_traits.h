// Tiles, shared-memory layouts, TMA and wgmma types of the Hopper forward (sm90a).
// A CTA is a producer warpgroup (0: TMA loads) and kConsumers consumer warpgroups (two or three),
// each owning 64 of the kBlockM = 64 x kConsumers query rows and running S = Q K^T (wgmma, both
// operands in shared memory) and O += P V (wgmma, P from registers).
#pragma once

#include <cute/tensor.hpp>
#include <cutlass/numeric_types.h>
#include <cutlass/pipeline/sm90_pipeline.hpp>

#include <cstdint>
#include <type_traits>

namespace flashattn::sm90 {

using namespace cute;
using cute::Tensor;

template <typename Element_, int kHeadDim_, int kBlockN_, int kStages_, int kQStages_ = 1, bool kOverlap_ = true,
          int kConsumers_ = 2, int kCtasPerSm_ = 1>
struct FwdTraits {
  using Element = Element_;
  static constexpr int kHeadDim = kHeadDim_;
  // Consumer warpgroups: three give each one's softmax two others' GEMMs to hide under (ping-pong
  // in a ring), at 160 registers a thread instead of 240 (register_split.h).
  static constexpr int kConsumers = kConsumers_;
  static_assert(kConsumers == 2 || kConsumers == 3, "two or three consumer warpgroups");
  static constexpr int kBlockM = 64 * kConsumers;  // 64 rows a consumer warpgroup
  static constexpr int kBlockN = kBlockN_;
  static constexpr int kStages = kStages_;
  // Q buffers: with two, the next tile's Q loads while this tile still reads its own.
  static constexpr int kQStages = kQStages_;
  // Whether S of the next key block overlaps this block's softmax and P V in the variant (`plain`:
  // without dropout, softcap or ALiBi): a second S accumulator, which fits every variant's
  // registers up to d = 128; above, only the plain variant's (d = 256 spills with dropout or
  // softcap/ALiBi, ptxas -v). kOverlap_ = false: none (tiles for short rows, where the first and
  // last blocks, which run alone, are a large part of the row).
  static constexpr bool overlaps(bool plain) { return kOverlap_ && (kHeadDim <= 128 || plain); }
  static constexpr int kConsumerThreads = 128 * kConsumers;
  static constexpr int kThreads = 128 + kConsumerThreads;
  // CTAs an SM runs at once: two share its registers (__launch_bounds__) and shared memory, so one's
  // GEMMs run under the other's softmax without a ping-pong (tiles for short rows).
  static constexpr int kCtasPerSm = kCtasPerSm_;
  static_assert(kHeadDim % 32 == 0, "rows of whole 64-byte swizzle atoms (32 elements)");

  using TileShapeS = Shape<Int<kBlockM>, Int<kBlockN>, Int<kHeadDim>>;  // S = Q K^T: (M, N, K = d)
  using TileShapeO = Shape<Int<kBlockM>, Int<kHeadDim>, Int<kBlockN>>;  // O = P V: (M, N = d, K = keys)
  using WarpgroupsAlongM = Layout<Shape<Int<kConsumers>, _1, _1>>;
  using TiledMmaS =
      decltype(make_tiled_mma(GMMA::ss_op_selector<Element, Element, float, Shape<_64, Int<kBlockN>, Int<kHeadDim>>>(),
                              WarpgroupsAlongM{}));
  // Without CuTe's extended shapes the selector quietly takes N = 16 for an 80-key block.
  static_assert(size<1>(typename TiledMmaS::AtomShape_MNK{}) == kBlockN,
                "one wgmma spans the key block: build with CUTE_SM90_EXTENDED_MMA_SHAPES_ENABLED");
  // V arrives (keys x d) with d contiguous: as the B operand (N = d, K = keys) it is MN-major.
  using TiledMmaO = decltype(make_tiled_mma(
      GMMA::rs_op_selector<Element, Element, float, Shape<_64, Int<kHeadDim>, Int<kBlockN>>, GMMA::Major::K,
                           GMMA::Major::MN>(),
      WarpgroupsAlongM{}));

  // 8 rows x 64 elements with the 128-byte swizzle where d is a multiple of 64; 8 x 32 with the
  // 64-byte one otherwise (d = 96).
  using SmemAtom = std::conditional_t<kHeadDim % 64 == 0, GMMA::Layout_K_SW128_Atom<Element>,
                                      GMMA::Layout_K_SW64_Atom<Element>>;
  using SmemLayoutQ = decltype(tile_to_shape(SmemAtom{}, Shape<Int<kBlockM>, Int<kHeadDim>, Int<kQStages>>{}));
  using SmemLayoutK = decltype(tile_to_shape(SmemAtom{}, Shape<Int<kBlockN>, Int<kHeadDim>, Int<kStages>>{}));
  using SmemLayoutV = SmemLayoutK;
  // The same bytes as (d x keys x stages): V^T for the second GEMM.
  using SmemLayoutVt = decltype(composition(
      SmemLayoutV{}, make_ordered_layout(Shape<Int<kHeadDim>, Int<kBlockN>, Int<kStages>>{}, Step<_2, _1, _3>{})));

  // Global views as TMA sees them: (seqlen, d, heads, batch) with the caller's strides.
  using GmemShape = Shape<int32_t, int32_t, int32_t, int32_t>;
  using GmemStride = Stride<int64_t, _1, int64_t, int64_t>;
  using GmemTensor = decltype(cute::make_tensor(make_gmem_ptr(static_cast<Element const*>(nullptr)), GmemShape{}, GmemStride{}));
  using TmaQ = decltype(make_tma_copy(SM90_TMA_LOAD{}, GmemTensor{}, take<0, 2>(SmemLayoutQ{}),
                                      Shape<Int<kBlockM>, Int<kHeadDim>>{}, _1{}));
  using TmaKV = decltype(make_tma_copy(SM90_TMA_LOAD{}, GmemTensor{}, take<0, 2>(SmemLayoutK{}),
                                       Shape<Int<kBlockN>, Int<kHeadDim>>{}, _1{}));

  // The epilogue: each consumer warpgroup puts its 64 rows of O in shared memory (stmatrix) and one
  // thread stores them with TMA, in a kernel variant of its own (fwd_kernel.h). Measured on H100
  // (bench/NOTES.md, session 6): d128 +1-3% at 512-8k, +6-10% at 16k; d64 +4-6% at 512-1k, flat
  // from 4k. Where shared memory holds only half of each warpgroup's O beside Q and K/V (d256's
  // short tile: 32 of the 35 KiB left), O goes in two passes of kOCols = d / 2 columns (session 24).
  // d256's 80-key tile has no shared memory left for O: each consumer's O goes through a stage of
  // its tile's last key block instead (kOInStages: consumer 0's through the K stage, consumer 1's
  // through the V stage; a stage of 80 keys holds 64 rows), released to the producer once the
  // store has read it (fwd_kernel.h). Against O from registers (session 24, H100): +3% at 1k, +6%
  // causal 1k, +0.5-3% at 2k-4k. d96 unmeasured; d192 has no room. Elsewhere, and for rows a TMA
  // box cannot bound (varlen), O goes out from registers in 16-byte stores (store_tile_wide).
  static constexpr int kSmemBytesQKV =
      int((cosize_v<SmemLayoutQ> + 2 * cosize_v<SmemLayoutK>) * sizeof(Element)) + 1024;  // + barriers
  // A block's shared memory on sm90: 227 KiB alone; with n CTAs an SM, 228 / n KiB less the 1 KiB
  // the SM reserves for each.
  static constexpr int kSmemLimit = (kCtasPerSm == 1 ? 227 : 228 / kCtasPerSm - 1) * 1024;
  static constexpr bool o_fits(int cols) {
    return kSmemBytesQKV + 64 * cols * kConsumers * int(sizeof(Element)) <= kSmemLimit;
  }
  static constexpr int kStageElems = int(cosize_v<SmemLayoutK>) / kStages;
  static constexpr bool kOInStages =
      kHeadDim == 256 && kConsumers == 2 && !o_fits(kHeadDim / 2) && kStageElems >= 64 * kHeadDim;
  static constexpr int kOCols = kHeadDim == 256 && !o_fits(kHeadDim) && !kOInStages ? kHeadDim / 2 : kHeadDim;
  static constexpr bool kTmaStoreO =
      (kHeadDim == 64 || kHeadDim == 128 || kHeadDim == 256) && (o_fits(kOCols) || kOInStages);
  // A stage's bytes start where a 128-byte swizzle pattern does (every 1024 bytes), as O's layout needs.
  static_assert(!kOInStages || kStageElems * sizeof(Element) % 1024 == 0);
  using SmemLayoutO = decltype(tile_to_shape(SmemAtom{}, Shape<_64, Int<kOCols>, Int<kConsumers>>{}));
  using GmemTensorOut = decltype(cute::make_tensor(make_gmem_ptr(static_cast<Element*>(nullptr)), GmemShape{}, GmemStride{}));
  using TmaO = decltype(make_tma_copy(SM90_TMA_STORE{}, GmemTensorOut{}, take<0, 2>(SmemLayoutO{}),
                                      Shape<_64, Int<kOCols>>{}, _1{}));
  // The part of O one TMA store takes (one consumer warpgroup's 64 rows, kOCols columns) as a
  // one-warpgroup accumulator: the per-thread layout of TiledMmaO's first kOCols columns (each
  // thread's values run through a row's 8-column blocks last), for the stmatrix partition.
  using TiledMmaOStore = decltype(make_tiled_mma(
      GMMA::rs_op_selector<Element, Element, float, Shape<_64, Int<kOCols>, Int<kBlockN>>, GMMA::Major::K,
                           GMMA::Major::MN>()));
  using SmemCopyO = Copy_Atom<SM90_U32x4_STSM_N, Element>;

  using Pipeline = cutlass::PipelineTmaAsync<kStages>;
  static constexpr uint32_t kTmaBytesQ = uint32_t(size(take<0, 2>(SmemLayoutQ{})) * sizeof(Element));
  static constexpr uint32_t kTmaBytesKV = uint32_t(size(take<0, 2>(SmemLayoutK{})) * sizeof(Element));

  struct SharedStorage {
    alignas(1024) cute::ArrayEngine<Element, cosize_v<SmemLayoutQ>> q;
    alignas(1024) cute::ArrayEngine<Element, cosize_v<SmemLayoutK>> k;
    alignas(1024) cute::ArrayEngine<Element, cosize_v<SmemLayoutV>> v;
    alignas(1024) cute::ArrayEngine<Element, kTmaStoreO && !kOInStages ? cosize_v<SmemLayoutO> : 8> o;
    typename Pipeline::SharedStorage pipeline_k, pipeline_v;
    alignas(8) uint64_t barrier_q[kQStages];       // Q landed (TMA transaction count)
    alignas(8) uint64_t barrier_q_free[kQStages];  // the consumers are done reading Q
    float wait_anchor;                              // never written (keep_before_wait)
    float tile_wait_anchor;                         // another (a store to a word that a later
                                                    // store overwrites may be dropped)
  };
  static constexpr int kSmemBytes = int(sizeof(SharedStorage));
  static_assert(kSmemBytes <= kSmemLimit, "more shared memory than an sm90 block may have");
};

}  // namespace flashattn::sm90
