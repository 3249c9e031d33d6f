// Tiles, shared-memory layouts, TMA and wgmma types of the Hopper backward (sm90a).
// A CTA owns kBlockN = 128 keys: in warpgroup 0, warp 0 loads (TMA) and warp 1 adds dQ up;
// warpgroups 1 and 2 each own 64 of the keys and walk the query blocks (kBlockM rows a step: 64,
// or 128 in the d = 64 kernel without dropout, softcap or ALiBi), keeping their dK and dV in
// registers.
// Every GEMM is one warpgroup's:
//   S^T  = K_w Q^T      (M = 64 keys, N = kBlockM queries, K = d)   both operands in shared memory
//   dP^T = V_w dO^T     (same)
//   dV_w += P^T dO      (M = 64 keys, N = d, K = kBlockM queries)   P^T from registers, dO viewed d x queries
//   dK_w += dS^T Q      (same)                                       dS^T from registers, Q viewed d x queries
//   dQ   = dS K         (M = kBlockM queries, N = d, K = 128 keys)  dS of both warpgroups through shared
//                                                                    memory; warpgroups take turns by step
// At d = 64 a 64-query step runs N = 64 wgmmas that read both operands from shared memory (4 KB per
// 64 x 64 x 16, the whole shared-memory bandwidth) and pays a step's barriers for a quarter of the
// d = 128 step's work; 128 queries a step halve both (FlashAttention-3 uses 128 x 128 at d = 64 too).
// The accumulators then take 192 registers a thread (S^T, dP^T 64 each, dK, dV 32 each): the plain
// variant fits (P computed after both GEMMs, bwd_kernel.h); the dropout and softcap/ALiBi ones
// spilled 620-1284 bytes and keep 64-row steps (bwd_launch.h).
// The dQ of a step goes to shared memory (fp32, in the accumulator's register order) and a warp of
// the producer warpgroup adds it to the fp32 dq_accum with one bulk reduction (cp.reduce.async.bulk).
#pragma once

#include <cute/tensor.hpp>
#include <cutlass/arch/barrier.h>
#include <cutlass/numeric_types.h>
#include <cutlass/pipeline/sm90_pipeline.hpp>

#include <cstdint>

#include "kernels/sm90/tma_view.h"

namespace flashattn::sm90 {

using namespace cute;
using cute::Tensor;

// The hardware barrier that CUTLASS NamedBarrier id `id` names: CUTLASS keeps hardware ids 0-7 for
// itself, and the hardware has 16. Every barrier constant of the backward kernels is a NamedBarrier id.
constexpr int hardware_barrier(int id) { return id + int(cutlass::arch::ReservedNamedBarriers::FirstUserBarrier); }

template <typename Element_, int kHeadDim_, int kBlockM_ = 64>
struct BwdTraits {
  using Element = Element_;
  static constexpr bool kSplitD = false;
  static constexpr int kHeadDim = kHeadDim_;
  static constexpr int kBlockM = kBlockM_;  // queries per step
  static constexpr int kBlockN = 128;      // keys per CTA
  static constexpr int kKeysPerGroup = 64; // keys per consumer warpgroup
  static constexpr int kStages = 2;        // Q/dO ring
  static constexpr int kConsumerThreads = 256;
  static constexpr int kThreads = 128 + kConsumerThreads;
  static constexpr int kCtasPerSm = 1;
  static_assert(kHeadDim % 64 == 0, "rows of whole 128-byte swizzle atoms (64 elements)");

  using TiledMmaSdP = decltype(make_tiled_mma(
      GMMA::ss_op_selector<Element, Element, float, Shape<Int<kKeysPerGroup>, Int<kBlockM>, Int<kHeadDim>>>()));
  using TiledMmaKV = decltype(make_tiled_mma(
      GMMA::rs_op_selector<Element, Element, float, Shape<Int<kKeysPerGroup>, Int<kHeadDim>, Int<kBlockM>>,
                           GMMA::Major::K, GMMA::Major::MN>()));
  // dS arrives from shared memory M-major (queries contiguous: it is stored as the S^T tile is held).
  using TiledMmaQ = decltype(make_tiled_mma(
      GMMA::ss_op_selector<Element, Element, float, Shape<Int<kBlockM>, Int<kHeadDim>, Int<kKeysPerGroup>>,
                           GMMA::Major::MN, GMMA::Major::MN>()));

  using SmemAtom = GMMA::Layout_K_SW128_Atom<Element>;  // 8 rows x 64 elements
  // Q and dO: (queries, d, stage); viewed (d, queries, stage) as the B operand of dK / dV.
  using SmemLayoutQ = decltype(tile_to_shape(SmemAtom{}, Shape<Int<kBlockM>, Int<kHeadDim>, Int<kStages>>{}));
  using SmemLayoutQt = decltype(composition(
      SmemLayoutQ{}, make_ordered_layout(Shape<Int<kHeadDim>, Int<kBlockM>, Int<kStages>>{}, Step<_2, _1, _3>{})));
  // K and V: (keys of a warpgroup, d, warpgroup); K viewed (d, keys, warpgroup) as the B operand of dQ.
  using SmemLayoutK = decltype(tile_to_shape(SmemAtom{}, Shape<Int<kKeysPerGroup>, Int<kHeadDim>, _2>{}));
  using SmemLayoutKt = decltype(composition(
      SmemLayoutK{}, make_ordered_layout(Shape<Int<kHeadDim>, Int<kKeysPerGroup>, _2>{}, Step<_2, _1, _3>{})));
  // dS of a step, stored as the warpgroup holds it: dS^T (keys of a warpgroup, queries, warpgroup +
  // 2 x buffer) with queries contiguous, so whole 8 x 8 tiles go out with stmatrix; viewed (queries,
  // keys, ...) as the M-major A operand of dQ. Double-buffered by step parity, so a warpgroup writes
  // the next step's dS while the other still reads this step's for its dQ GEMM.
  using SmemLayoutdSt = decltype(tile_to_shape(SmemAtom{}, Shape<Int<kKeysPerGroup>, Int<kBlockM>, _4>{}));
  using SmemLayoutdS = decltype(composition(
      SmemLayoutdSt{}, make_ordered_layout(Shape<Int<kBlockM>, Int<kKeysPerGroup>, _4>{}, Step<_2, _1, _3>{})));
  using SmemCopydS = Copy_Atom<SM90_U32x4_STSM_N, Element>;

  using TmaQ = TmaLoad<Element, SmemLayoutQ, Shape<Int<kBlockM>, Int<kHeadDim>>>;
  using TmaK = TmaLoad<Element, SmemLayoutK, Shape<Int<kKeysPerGroup>, Int<kHeadDim>>>;

  using Pipeline = cutlass::PipelineTmaAsync<kStages>;
  static constexpr uint32_t kTmaBytesQ = kTmaBytes<Element, SmemLayoutQ>;
  static constexpr uint32_t kTmaBytesK = kTmaBytes<Element, SmemLayoutK>;

  struct SharedStorage {
    alignas(1024) cute::ArrayEngine<Element, cosize_v<SmemLayoutQ>> q;
    alignas(1024) cute::ArrayEngine<Element, cosize_v<SmemLayoutQ>> dout;
    alignas(1024) cute::ArrayEngine<Element, cosize_v<SmemLayoutK>> k;
    alignas(1024) cute::ArrayEngine<Element, cosize_v<SmemLayoutK>> v;
    alignas(1024) cute::ArrayEngine<Element, cosize_v<SmemLayoutdSt>> ds;
    alignas(128) float dq[kBlockM * kHeadDim];  // a step's dQ, accumulator order (bwd_kernel.h)
    alignas(16) float lse_log2[kStages][kBlockM];  // lse (log2 units) and D of a stage's queries, by
    alignas(16) float dsum[kStages][kBlockM];      // bulk copy beside its Q and dO
    typename Pipeline::SharedStorage pipeline_q;
    alignas(8) uint64_t barrier_kv;
  };
  static constexpr int kSmemBytes = int(sizeof(SharedStorage));
  static constexpr uint32_t kDqBytes = uint32_t(kBlockM * kHeadDim * sizeof(float));

  // Named barriers (NamedBarrier ids, hardware_barrier above): per consumer warpgroup (1, 2);
  // "dS of both warpgroups written" by step parity (3, 4); the dQ buffer full (5) and free (6),
  // between the consumer warpgroup of the step and the dQ writer warp.
  static constexpr int kBarrierWarpGroup = 1, kBarrierDsFull = 3, kBarrierDqFull = 5, kBarrierDqEmpty = 6;
  static_assert(hardware_barrier(kBarrierDqEmpty) < 16, "16 hardware barriers");
  static constexpr int kDqSyncThreads = 128 + 32;
  static_assert(kSmemBytes <= 227 * 1024, "more shared memory than an sm90 block may have");
};

}  // namespace flashattn::sm90

namespace flashattn::sm90 {

// The Hopper backward at d = 256 (bwd_split_d_kernel.h). dK and dV of 128 keys would take 256
// accumulator registers a thread, so a CTA owns kBlockN = 64 keys and its two consumer warpgroups
// split the work by role (the plain variant) or by queries (dropout, softcap/ALiBi), then by head dim:
//   S^T  = K Q^T                  (M = 64 keys, N = 64 queries, K = d)  by role: warpgroup 0
//   dP^T = V dO^T                 (same)                                 by role: warpgroup 1
//                                 by queries: warpgroup w computes both for queries [32w, 32w + 32)
//   dV  += P^T dO, dK += dS^T Q   (M = 64 keys, N = d, K = 64 queries)   warpgroup w: d [128w, 128w + 128)
//   dQ   = dS K                   (M = 64 queries, N = d, K = 64 keys)   warpgroup w: d [128w, 128w + 128)
// By role, warpgroup 0 writes P^T to shared memory and warpgroup 1 reads it back beside its dP^T and
// writes dS^T; by queries, each writes its half of both. Every GEMM after the pointwise pass reads
// both operands from shared memory. By role, S^T and dP^T run at N = 64 and read 128 KB of shared
// memory a step; by queries (N = 32) the A operand is read twice: 192 KB (bench/NOTES.md, session 25).
// dQ leaves from registers by vector reductions (no room for a 64 KB fp32 staging buffer beside the
// 2-stage Q/dO ring). Those reductions bound the kernel: 64 KB of fp32 a step, about 65% of its L2
// work at 8k; without them it ran 27% faster (bench/NOTES.md, session 26).
template <typename Element_, int kHeadDim_>
struct BwdSplitDTraits {
  using Element = Element_;
  static constexpr bool kSplitD = true;
  static constexpr int kHeadDim = kHeadDim_;
  static constexpr int kBlockM = 64;       // queries per step
  static constexpr int kBlockN = 64;       // keys per CTA
  static constexpr int kKeysPerGroup = 64; // keys per TMA box (the launcher's name)
  static constexpr int kStages = 2;        // Q/dO ring
  static constexpr int kConsumerThreads = 256;
  static constexpr int kThreads = 128 + kConsumerThreads;
  static constexpr int kCtasPerSm = 1;
  static_assert(kHeadDim % 128 == 0, "two warpgroup halves of whole 128-byte swizzle atoms");

  using SplitN = Layout<Shape<_1, _2, _1>>;  // warpgroup w takes the w-th half of N
  // By role: one warpgroup's GEMM (S^T in warpgroup 0, dP^T in warpgroup 1). By queries: both
  // warpgroups, each taking half of N.
  using TiledMmaSdP = decltype(make_tiled_mma(
      GMMA::ss_op_selector<Element, Element, float, Shape<Int<kBlockN>, Int<kBlockM>, Int<kHeadDim>>>()));
  using TiledMmaSdPHalves = decltype(make_tiled_mma(
      GMMA::ss_op_selector<Element, Element, float, Shape<Int<kBlockN>, Int<kBlockM / 2>, Int<kHeadDim>>>(), SplitN{}));
  using TiledMmaKV = decltype(make_tiled_mma(
      GMMA::ss_op_selector<Element, Element, float, Shape<Int<kBlockN>, Int<kHeadDim / 2>, Int<kBlockM>>,
                           GMMA::Major::K, GMMA::Major::MN>(),
      SplitN{}));
  // dS from the dS^T tile (queries contiguous: M-major), K viewed (d, keys) (d contiguous).
  using TiledMmaQ = decltype(make_tiled_mma(
      GMMA::ss_op_selector<Element, Element, float, Shape<Int<kBlockM>, Int<kHeadDim / 2>, Int<kBlockN>>,
                           GMMA::Major::MN, GMMA::Major::MN>(),
      SplitN{}));

  using SmemAtom = GMMA::Layout_K_SW128_Atom<Element>;  // 8 rows x 64 elements
  using SmemLayoutQ = decltype(tile_to_shape(SmemAtom{}, Shape<Int<kBlockM>, Int<kHeadDim>, Int<kStages>>{}));
  using SmemLayoutQt = decltype(composition(
      SmemLayoutQ{}, make_ordered_layout(Shape<Int<kHeadDim>, Int<kBlockM>, Int<kStages>>{}, Step<_2, _1, _3>{})));
  using SmemLayoutK = decltype(tile_to_shape(SmemAtom{}, Shape<Int<kBlockN>, Int<kHeadDim>>{}));
  using SmemLayoutKt = decltype(composition(
      SmemLayoutK{}, make_ordered_layout(Shape<Int<kHeadDim>, Int<kBlockN>>{}, Step<_2, _1>{})));
  // P^T and dS^T of a step (keys, queries, step parity), queries contiguous: written by stmatrix as
  // the S^T / dP^T accumulator is held (by role, warpgroup 1 reads P^T back by ldmatrix in the same
  // order), read as the K-major A operand of dV / dK; dS^T viewed (queries, keys) is dQ's M-major A
  // operand. Double-buffered by step parity: a warpgroup writes the next step's tiles while the
  // other may still read this step's.
  using SmemLayoutPt = decltype(tile_to_shape(SmemAtom{}, Shape<Int<kBlockN>, Int<kBlockM>, _2>{}));
  using SmemLayoutdS = decltype(composition(
      SmemLayoutPt{}, make_ordered_layout(Shape<Int<kBlockM>, Int<kBlockN>, _2>{}, Step<_2, _1, _3>{})));
  using SmemCopyPt = Copy_Atom<SM90_U32x4_STSM_N, Element>;
  using SmemLoadPt = Copy_Atom<SM75_U32x4_LDSM_N, Element>;

  using TmaQ = TmaLoad<Element, SmemLayoutQ, Shape<Int<kBlockM>, Int<kHeadDim>>>;
  using TmaK = TmaLoad<Element, SmemLayoutK, Shape<Int<kBlockN>, Int<kHeadDim>>>;

  using Pipeline = cutlass::PipelineTmaAsync<kStages>;
  static constexpr uint32_t kTmaBytesQ = kTmaBytes<Element, SmemLayoutQ>;
  static constexpr uint32_t kTmaBytesK = kTmaBytes<Element, SmemLayoutK>;

  struct SharedStorage {
    alignas(1024) cute::ArrayEngine<Element, cosize_v<SmemLayoutQ>> q;
    alignas(1024) cute::ArrayEngine<Element, cosize_v<SmemLayoutQ>> dout;
    alignas(1024) cute::ArrayEngine<Element, cosize_v<SmemLayoutK>> k;
    alignas(1024) cute::ArrayEngine<Element, cosize_v<SmemLayoutK>> v;
    alignas(1024) cute::ArrayEngine<Element, cosize_v<SmemLayoutPt>> pt;
    alignas(1024) cute::ArrayEngine<Element, cosize_v<SmemLayoutPt>> dst;
    alignas(16) float lse_log2[kStages][kBlockM];  // lse (log2 units) and D of a stage's queries, by
    alignas(16) float dsum[kStages][kBlockM];      // bulk copy beside its Q and dO
    typename Pipeline::SharedStorage pipeline_q;
    alignas(8) uint64_t barrier_kv;
    // Deterministic mode, between turn keeper j and consumer warpgroup w (bwd_split_d_kernel.h):
    // [w][j], the turn is this key block's, and the warpgroup's adds of the turn are issued.
    uint64_t turn_granted[2][2], turn_added[2][2];
  };
  static constexpr int kSmemBytes = int(sizeof(SharedStorage));

  // Named barriers (NamedBarrier ids, hardware_barrier above): P^T written (1), dS^T written (2).
  static constexpr int kBarrierP = 1, kBarrierdS = 2;
  static_assert(hardware_barrier(kBarrierdS) < 16, "16 hardware barriers");
  static_assert(kSmemBytes <= 227 * 1024, "more shared memory than an sm90 block may have");
};

}  // namespace flashattn::sm90
