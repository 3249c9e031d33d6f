// Hopper forward (sm90a), warp-specialized: warpgroup 0 (after giving up most of its registers)
// loads Q once and K/V tiles through a kStages-deep shared-memory ring with TMA, completing on
// mbarriers; the consumer warpgroups 1 .. kConsumers (with the registers) run wgmma for S = Q K^T
// and O += P V, the online softmax of FlashAttention-2 in between (Dao 2023, Alg. 1;
// FlashAttention-3's producer / consumer split). Every forward feature (softcap/ALiBi and dropout as
// compile-time variants). Inside a consumer warpgroup, S of the next key block runs under this
// block's softmax and P V (d <= 128), and the consumer warpgroups take turns with the tensor cores
// (ping-pong, in a ring). The CTA loops over tiles, persistent (fwd_launch.h). The epilogue: in the
// kTmaStore variant (d64, d128, d256; no varlen, no dropout/softcap/ALiBi, out aligned) O goes
// through shared memory and out with a TMA store per warpgroup (d256's short tile: two, of half
// the columns each; its 80-key tile: through the last key block's K/V stages); elsewhere from
// registers in 16-byte stores (store_tile_wide).
#pragma once

#include <cutlass/arch/barrier.h>

#include <cute/tensor.hpp>
#include <cutlass/pipeline/sm90_pipeline.hpp>

#include "api/validate.h"
#include "kernels/common/block_range.h"
#include "kernels/common/dropout.h"
#include "kernels/common/problem.h"
#include "kernels/sm80/epilogue.h"
#include "kernels/sm80/mask.h"
#include "kernels/sm80/softmax.h"
#include "kernels/sm90/fwd_traits.h"
#include "kernels/sm90/mbarrier.h"
#include "kernels/sm90/register_split.h"
#include "kernels/sm90/tile_scheduler.h"
#include "kernels/sm90/wait_order.h"
#include "kernels/sm90/warpgroup_vote.h"

namespace flashattn::sm90 {

template <typename Traits>
struct FwdKernelParams {
  FwdCall call;
  typename Traits::TmaQ tma_q;
  typename Traits::TmaKV tma_k, tma_v;
  typename Traits::TmaO tma_o;  // used by the kTmaStore variant
  int m_blocks;   // query blocks of the longest sequence, rounded up to even (fwd_query_blocks)
  int num_tiles;  // m_blocks x heads x batch
};

// The wgmma accumulator of a thread is ((2 cols, 2 rows, N/8), MMA_M, MMA_N); as (rows, cols):
// ((2, MMA_M), (2, N/8, MMA_N)).
template <typename Layout>
CUTE_HOST_DEVICE auto rowcol(Layout const& acc) {
  return make_layout(make_layout(get<0, 1>(acc), get<1>(acc)),
                     make_layout(get<0, 0>(acc), get<0, 2>(acc), get<2>(acc)));
}

// Two neighbouring 8-column blocks of the accumulator hold one 16-wide K slice of a register A
// operand: ((2, 2, N/8), M, N) -> ((2, 2, 2), M, (N/16, N)).
template <typename Layout>
CUTE_HOST_DEVICE auto acc_as_operand_a(Layout const& acc) {
  auto split = logical_divide(acc, Shape<Shape<Underscore, Underscore, _2>, Underscore, Underscore>{});
  return make_layout(make_layout(get<0, 0>(split), get<0, 1>(split), get<0, 2, 0>(split)), get<1>(split),
                     make_layout(get<0, 2, 1>(split), get<2>(split)));
}

// acc = A B over every K slice of a warpgroup's wgmma (the first slice overwrites acc), issued
// after the caller's warpgroup_arrive, not committed.
template <typename TiledMma, typename TensorA, typename TensorB, typename TensorC>
CUTE_DEVICE void gemm_overwrite(TiledMma& mma, TensorA const& a, TensorB const& b, TensorC& acc) {
  mma.accumulate_ = GMMA::ScaleOut::Zero;
  CUTE_UNROLL
  for (int k = 0; k < size<2>(a); ++k) {
    cute::gemm(mma, a(_, _, k), b(_, _, k), acc);
    mma.accumulate_ = GMMA::ScaleOut::One;
  }
}

// What a consumer warpgroup with no rows in a tile does in it (fwd_kernel): it waits for and
// releases the tile's K/V stages in the computing consumers' order and takes its turns in the
// ping-pong ring (`turn`: wait for it, pass it on) where the tile has one, one a GEMM issue of
// theirs (key blocks + 1), so that every barrier's count stays whole. Without kOverlap it passes
// one block at a time and calls `turn` before each: a no-op where the tile takes no turns, and in the
// overlap tile the turns of the blocks above a computing consumer's rows (fwd_kernel).
template <bool kOverlap, typename Pipeline, typename State, typename Turn>
__device__ __forceinline__ State pass_tile_stages(Pipeline& pipeline_k, Pipeline& pipeline_v, State state,
                                                  BlockRange keys, Turn const& turn) {
  if constexpr (!kOverlap) {
    for (int n = keys.end - 1; n >= keys.begin; --n) {
      turn();
      pipeline_k.consumer_wait(state);
      pipeline_k.consumer_release(state);
      pipeline_v.consumer_wait(state);
      pipeline_v.consumer_release(state);
      ++state;
    }
  } else if (keys.end > keys.begin) {
    pipeline_k.consumer_wait(state);
    turn();
    pipeline_k.consumer_release(state);
    for (int n = keys.end - 2; n >= keys.begin; --n) {
      State next = state;
      ++next;
      pipeline_k.consumer_wait(next);
      pipeline_v.consumer_wait(state);
      turn();
      pipeline_k.consumer_release(next);
      pipeline_v.consumer_release(state);
      state = next;
    }
    pipeline_v.consumer_wait(state);
    turn();
    pipeline_v.consumer_release(state);
    ++state;
  }
  return state;
}

// kDropout and kTransform (softcap or ALiBi) are compile-time so the common path carries neither.
// kTmaStore: O leaves through shared memory and TMA (the launcher picks it where it can: no varlen,
// out aligned, Traits::kTmaStoreO); the other variants store O from registers. One epilogue path a
// variant: with both in one kernel the key-block loop lost its uniform-datapath arithmetic (SASS)
// and 2% at 8k (bench/NOTES.md, session 5, steps 4 and 8).
template <typename Traits, bool kDropout, bool kTransform, bool kTmaStore = false>
__global__ void __launch_bounds__(Traits::kThreads, Traits::kCtasPerSm)
    fwd_kernel(const __grid_constant__ FwdKernelParams<Traits> params) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900 && defined(__CUDA_ARCH_FEAT_SM90_ALL)
  using Element = typename Traits::Element;
  constexpr int kBlockM = Traits::kBlockM, kBlockN = Traits::kBlockN, kHeadDim = Traits::kHeadDim;
  // The intra-warpgroup overlap and ping-pong (below), where the tile has it for this variant.
  constexpr bool kOverlap = Traits::overlaps(!kDropout && !kTransform);
  // The key-block loop's softmax without row maxima where the registers allow (scores_to_probs_fast;
  // with it, d256 and the variant with both dropout and a transform spill). The three-warpgroup d64
  // tile (160 registers) spilled 8 B with it and was still 5-8% faster (bench/NOTES.md, session 19;
  // 4 B since session 21); cmake/ptxas-check-launcher.sh exempts that kernel.
  constexpr bool kFastSoftmax = kHeadDim <= 128 && !(kDropout && kTransform);
  // Where the fast softmax's fallback goes warp by warp, with no warpgroup vote (scores_to_probs_fast):
  // the plain variant: d128 +4.0-4.6% from 2k, causal +2.5-4.3% (session 40); d64's three-consumer
  // tile +0.3-2.7%, causal +0.8-1.5% with recompute_s's rotating loop (session 41); the softcap/ALiBi
  // variant, since its softcap is one MUFU.TANH (with tanhf, 232 B of spills at d128, session 39):
  // softcap d64 +4.6-4.8%, d128 +0.6-1.3%, ALiBi d128 +3.0-4.3% (session 42). With dropout its
  // recompute spills (20 B).
  constexpr bool kWarpRescue = kFastSoftmax && !kDropout;
  // The end of a tile's work that does not need O (row sums to factors and lse, the next tile's
  // coordinates) under its last P V GEMM (below), where O leaves from registers (varlen, d <= 128):
  // d128 varlen +2-5%, the next tile's cu_seqlens loads off the path between two tiles' GEMMs. With
  // the TMA store (fixed lengths) it measured no gain, and the three-consumer d64 tile and d256
  // spilled with it (bench/NOTES.md, session 23).
  constexpr bool kTailUnderLastO = kOverlap && Traits::kConsumers == 2 && !kTmaStore && kHeadDim <= 128;
  using Pipeline = typename Traits::Pipeline;
  using SharedStorage = typename Traits::SharedStorage;
  extern __shared__ __align__(1024) char sm90_smem[];
  SharedStorage& shared = *reinterpret_cast<SharedStorage*>(sm90_smem);

  const FwdCall& call = params.call;
  const Problem& p = call.problem;
  const PhiloxState rng = philox_state(p);
  if (kDropout && call.rng_state && blockIdx.x == 0 && threadIdx.x == 0) {
    call.rng_state[0] = rng.seed;
    call.rng_state[1] = rng.offset;
  }
  const int warp_group = threadIdx.x / 128, thread_in_group = threadIdx.x % 128;
  const int warp_in_group = thread_in_group / 32;

  // Persistent: a CTA per SM walks pairs of tiles (query block, head, batch) with a stride of the
  // grid, in the order of tile_scheduler.h (pairs of equal work; the grid coprime to a head's pairs
  // where the last query block is partial). The producer runs ahead into the next tile's K/V while
  // the consumers finish this one; with two Q buffers (kQStages, d <= 128) the next tile's Q loads
  // during this tile, with one as soon as the consumers release it.
  struct Tile {
    int m_block, h, b;
    SeqInfo si;
    BlockRange keys;
  };
  auto tile_at = [&](int t) {
    Tile tile;
    tile.m_block = query_block_of(t % params.m_blocks, params.m_blocks);
    tile.h = (t / params.m_blocks) % p.nheads;
    tile.b = t / params.m_blocks / p.nheads;
    tile.si = seq_info(p, tile.b);
    tile.keys = key_blocks_of(p, tile.m_block, kBlockM, kBlockN, tile.si.seqlen_q, tile.si.seqlen_k);
    return tile;
  };
  // Query blocks past a sequence's end (varlen; the padding to an even count) are skipped by every
  // role alike.
  auto tile_exists = [&](const Tile& tile) { return tile.m_block * kBlockM < tile.si.seqlen_q; };

  Tensor sQ = cute::make_tensor(make_smem_ptr(shared.q.begin()), typename Traits::SmemLayoutQ{});
  Tensor sK = cute::make_tensor(make_smem_ptr(shared.k.begin()), typename Traits::SmemLayoutK{});
  Tensor sV = cute::make_tensor(make_smem_ptr(shared.v.begin()), typename Traits::SmemLayoutV{});
  Tensor sVt = cute::make_tensor(make_smem_ptr(shared.v.begin()), typename Traits::SmemLayoutVt{});

  typename Pipeline::Params pipe_params;
  pipe_params.transaction_bytes = Traits::kTmaBytesKV;
  pipe_params.role = warp_group == 0 ? Pipeline::ThreadCategory::Producer : Pipeline::ThreadCategory::Consumer;
  pipe_params.is_leader = threadIdx.x == 0;
  pipe_params.num_consumers = Traits::kConsumerThreads;
  Pipeline pipeline_k(shared.pipeline_k, pipe_params, Shape<_1, _1, _1>{});
  Pipeline pipeline_v(shared.pipeline_v, pipe_params, Shape<_1, _1, _1>{});
  if (threadIdx.x == 0) {
    for (int i = 0; i < Traits::kQStages; ++i) {
      cutlass::arch::ClusterTransactionBarrier::init(&shared.barrier_q[i], 1);
      cutlass::arch::ClusterBarrier::init(&shared.barrier_q_free[i], Traits::kConsumerThreads);
    }
    cutlass::arch::fence_barrier_init();
  }
  __syncthreads();  // barriers initialized before anyone waits on them

  if (warp_group == 0) {
    // Producer: one elected thread issues every TMA.
    producer_registers<Traits>();
    if (warp_in_group == 0 && cute::elect_one_sync()) {
      // The TMA views are (rows, d, heads, batch); varlen packs every sequence into one batch entry
      // and starts each at its first row (rows past its end are masked or never stored).
      const int32_t d = p.head_dim, batches = p.varlen ? 1 : p.batch;
      const int32_t rows_q = p.varlen ? int32_t(p.total_q) : p.seqlen_q;
      const int32_t rows_k = p.varlen ? int32_t(p.total_k) : p.seqlen_k;
      Tensor mQ = params.tma_q.get_tma_tensor(make_shape(rows_q, d, p.nheads, batches));
      Tensor mK = params.tma_k.get_tma_tensor(make_shape(rows_k, d, p.nheads_k, batches));
      Tensor mV = params.tma_v.get_tma_tensor(make_shape(rows_k, d, p.nheads_k, batches));
      auto state = cutlass::make_producer_start_state<Pipeline>();
      int q_loads = 0;
      for (int t = first_tile(blockIdx.x); t < params.num_tiles; t = next_tile(t, gridDim.x)) {
        const Tile tile = tile_at(t);
        if (!tile_exists(tile)) continue;
        const int hk = tile.h / (p.nheads / p.nheads_k), bb = p.varlen ? 0 : tile.b;
        Tensor mQ_seq = domain_offset(make_coord(int32_t(tile.si.q_row0), _0{}), mQ(_, _, tile.h, bb));
        Tensor mK_seq = domain_offset(make_coord(int32_t(tile.si.k_row0), _0{}), mK(_, _, hk, bb));
        Tensor mV_seq = domain_offset(make_coord(int32_t(tile.si.k_row0), _0{}), mV(_, _, hk, bb));
        Tensor gQ = local_tile(mQ_seq, Shape<Int<kBlockM>, Int<kHeadDim>>{}, make_coord(tile.m_block, _0{}));
        Tensor gK = local_tile(mK_seq, Shape<Int<kBlockN>, Int<kHeadDim>>{}, make_coord(_, _0{}));
        Tensor gV = local_tile(mV_seq, Shape<Int<kBlockN>, Int<kHeadDim>>{}, make_coord(_, _0{}));
        const int q_stage = q_loads % Traits::kQStages;
        auto [tQgQ, tQsQ] = tma_partition(params.tma_q, _0{}, Layout<_1>{}, group_modes<0, 2>(sQ(_, _, q_stage)),
                                          group_modes<0, 2>(gQ));
        auto [tKgK, tKsK] =
            tma_partition(params.tma_k, _0{}, Layout<_1>{}, group_modes<0, 2>(sK), group_modes<0, 2>(gK));
        auto [tVgV, tVsV] =
            tma_partition(params.tma_v, _0{}, Layout<_1>{}, group_modes<0, 2>(sV), group_modes<0, 2>(gV));
        // Key blocks from the last: the ones that need masking (sequence end, diagonal) come first.
        // The first K block goes ahead of Q: it only needs a free stage, Q needs the consumers to
        // be done with the last tile's Q.
        const int n_first = tile.keys.end - 1;
        if (n_first >= tile.keys.begin) {
          pipeline_k.producer_acquire(state);
          copy(params.tma_k.with(*pipeline_k.producer_get_barrier(state)), tKgK(_, n_first), tKsK(_, state.index()));
        }
        if (q_loads >= Traits::kQStages)  // the consumers released this buffer's previous Q
          cutlass::arch::ClusterBarrier::wait(&shared.barrier_q_free[q_stage], (q_loads / Traits::kQStages - 1) & 1);
        cutlass::arch::ClusterTransactionBarrier::arrive_and_expect_tx(&shared.barrier_q[q_stage], Traits::kTmaBytesQ);
        copy(params.tma_q.with(shared.barrier_q[q_stage]), tQgQ, tQsQ);
        ++q_loads;
        for (int n = n_first; n >= tile.keys.begin; --n) {
          if (n != n_first) {
            pipeline_k.producer_acquire(state);
            copy(params.tma_k.with(*pipeline_k.producer_get_barrier(state)), tKgK(_, n), tKsK(_, state.index()));
          }
          pipeline_v.producer_acquire(state);
          copy(params.tma_v.with(*pipeline_v.producer_get_barrier(state)), tVgV(_, n), tVsV(_, state.index()));
          ++state;
        }
      }
    }
    return;
  }

  // Consumers: warpgroups 1 .. kConsumers, 64 query rows each. Named barriers: cutlass::arch::NamedBarrier
  // ids 1 .. kConsumers the ping-pong turns, the next kConsumers a warpgroup's O in shared memory (the
  // epilogue); NamedBarrier adds 8 (the hardware ids CUTLASS reserves for its own collectives), so
  // these are hardware ids 9 .. 8 + 2 kConsumers. A warpgroup's vote in the key-block loop
  // (warpgroup_any; not where kWarpRescue) takes a hardware id directly: 5 + consumer, among the
  // reserved ones, which no CUTLASS collective of this kernel uses (its pipelines wait on
  // mbarriers); 0 is __syncthreads.
  constexpr int kConsumers = Traits::kConsumers;
  constexpr int kBarrierO = 1 + kConsumers;
  // O through the last key block's stages (Traits::kOInStages, d256's 80-key tile, which has no
  // shared memory left for O): consumer 0's O through that block's K stage, free once consumer 1's
  // last S = Q K^T has retired; consumer 1's through its V stage, free once consumer 0's last P V
  // has. The other consumer says so on named barrier kBarrierStageFree + the writer, and the
  // writer releases the stage to the producer only when its TMA store has read it: the producer
  // loads the next tile's first block into the other stage meanwhile.
  constexpr bool kOInStages = kTmaStore && Traits::kOInStages;
  static_assert(!kOInStages || (kOverlap && kConsumers == 2), "the stage hand-over assumes the two-consumer ring");
  constexpr int kBarrierStageFree = 1 + 2 * kConsumers;
  constexpr int kBarrierVote = 5;  // hardware id, + consumer
  static_assert(kBarrierVote + kConsumers <= 8, "the vote's hardware barriers stay below NamedBarrier's");
  consumer_registers<Traits>();
  // consumer: its 64 rows of the tile. Warp-uniform as the compiler sees it (lane 0's, broadcast):
  // from threadIdx alone, the branch on it for a consumer with no rows (below) counted as divergent,
  // and the three-consumer d64 tile spilled 136 bytes in its key-block loop, the d256 one 116 (ptxas -v).
  const int tid = threadIdx.x - 128, consumer = cutlass::canonical_warp_group_idx() - 1;
  typename Traits::TiledMmaS mma_s;
  typename Traits::TiledMmaO mma_o;
  auto thr_s = mma_s.get_thread_slice(tid);
  auto thr_o = mma_o.get_thread_slice(tid);
  Tensor tSrQ = thr_s.partition_fragment_A(sQ);  // descriptors (MMA, MMA_M, MMA_K, Q stage)
  Tensor tSrK = thr_s.partition_fragment_B(sK);  // (MMA, MMA_N, MMA_K, stages)
  Tensor tOrV = thr_o.partition_fragment_B(sVt);
  Tensor acc_o = partition_fragment_C(mma_o, Shape<Int<kBlockM>, Int<kHeadDim>>{});
  Tensor tScS = thr_s.partition_C(make_identity_tensor(Shape<Int<kBlockM>, Int<kBlockN>>{}));
  Tensor tOcO = thr_o.partition_C(make_identity_tensor(Shape<Int<kBlockM>, Int<kHeadDim>>{}));
  Tensor acc_o_rc = cute::make_tensor(acc_o.data(), rowcol(acc_o.layout()));
  constexpr int kRows = decltype(size<0>(acc_o_rc))::value;

  using AccS = decltype(partition_fragment_C(mma_s, Shape<Int<kBlockM>, Int<kBlockN>>{}));
  // P in the input dtype, as the register A operand of O += P V; alive until that GEMM retires.
  Tensor rP = cute::make_tensor<Element>(typename AccS::layout_type{});
  Tensor tOrP = cute::make_tensor(rP.data(), acc_as_operand_a(rP.layout()));
  cutlass::PipelineState<Traits::kStages> state;
  int q_loads = 0;
  // A tile's Q landed (its buffer, then the count of loads waited for, moves on).
  auto wait_q = [&] {
    cutlass::arch::ClusterTransactionBarrier::wait(&shared.barrier_q[q_loads % Traits::kQStages],
                                                   (q_loads / Traits::kQStages) & 1);
    ++q_loads;
  };
  // Each consumer thread arrives once per tile, when its last S = Q K^T has retired (a consumer with
  // no rows in the tile: as soon as Q has landed).
  auto release_q = [&] { cutlass::arch::ClusterBarrier::arrive(&shared.barrier_q_free[(q_loads - 1) % Traits::kQStages]); };

  // Ping-pong turns (the overlap path below): consumer c waits on named barrier 1 + c, which its
  // predecessor in the ring arrives on after issuing its GEMMs. The ring runs across tiles: the last
  // consumer lets consumer 0 go first once, and passes after every turn, its last of a tile too, so
  // consumer 0 issues the next tile's first S while the others still run their epilogues. Consumer
  // 0 takes the one pass left over after its last tile, so every barrier ends complete.
  constexpr int kLast = kConsumers - 1;
  auto turn_wait = [&] { cutlass::arch::NamedBarrier::arrive_and_wait(2 * 128, 1 + consumer); };
  auto turn_pass = [&] { cutlass::arch::NamedBarrier::arrive(2 * 128, 1 + (consumer + 1) % kConsumers); };
  if (kOverlap && consumer == kLast) turn_pass();
  // A turn in which this consumer issues nothing (none in the one-block path, which takes no turns).
  auto take_turn = [&] {
    if constexpr (kOverlap) {
      turn_wait();
      turn_pass();
    }
  };

  // With kTailUnderLastO the next tile's coordinates are worked out under the last P V GEMM of this
  // one (where the tile has keys), not between two tiles' GEMMs, where the divisions and varlen's
  // cu_seqlens loads took ~600 cycles a tile (timeline probe, bench/NOTES.md, session 23); without
  // it, each tile's at its start.
  Tile tile = kTailUnderLastO && first_tile(blockIdx.x) < params.num_tiles ? tile_at(first_tile(blockIdx.x)) : Tile{};
  for (int t = first_tile(blockIdx.x); t < params.num_tiles;) {
    if constexpr (!kTailUnderLastO) tile = tile_at(t);
    const int t_next = next_tile(t, gridDim.x);
    auto upcoming_tile = [&]() CUTLASS_LAMBDA_FUNC_INLINE { return t_next < params.num_tiles ? tile_at(t_next) : tile; };
    // A consumer whose 64 rows all lie past the sequence's end (the last query block where seqlen_q
    // is not a multiple of kBlockM: at 1k keys the three-consumer tile's sixth block has 64 rows)
    // computes nothing and stores nothing; it releases Q and passes the tile's stages and turns on.
    // Consumer 0 has rows in every tile that exists.
    if (tile.m_block * kBlockM + 64 * consumer >= tile.si.seqlen_q) {
      if (tile_exists(tile)) {
        wait_q();
        release_q();
        state = pass_tile_stages<kOverlap>(pipeline_k, pipeline_v, state, tile.keys, take_turn);
      }
      if constexpr (kTailUnderLastO) tile = upcoming_tile();
      t = t_next;
      continue;
    }
    Tile upcoming = tile;  // set below
    const int m_block = tile.m_block, h = tile.h, b = tile.b;
    const SeqInfo& si = tile.si;
    BlockRange keys = tile.keys;  // the overlap path narrows it to this warpgroup's own blocks
    const int q_stage = q_loads % Traits::kQStages;
    const float out_scale = kDropout ? 1.f / (1.f - p.dropout_p) : 1.f;
    float inv[kRows], lse[kRows];  // finish: the factor a row of O takes, and its lse
    clear(acc_o);
    const int m0 = m_block * kBlockM;
    // Whether the other consumer computes in this tile (kOInStages; consumer 0 does in every tile).
    const bool partner_computes = m0 + 64 * (1 - consumer) < si.seqlen_q;
    int last_stage = 0;  // the stage of the tile's last key block (kOInStages)
    sm80::TileMask mask{si.seqlen_q, si.seqlen_k, p.window_left,       p.window_right,
                        p.scale,     p.softcap,   alibi_slope(p, b, h)};
    // Scores after a transform in natural units (tanh units with the softcap alone); raw q.k
    // otherwise, with the scale folded into exp2.
    sm80::OnlineSoftmax<kRows> softmax(mask.softmax_scale_log2<kTransform>());
    const uint64_t subsequence = dropout_subsequence(rng.offset, p, b, h);

    // S = Q K^T of the K stage `st`, issued and committed, not waited for.
    auto issue_s = [&](AccS& acc_s, int st) {
      warpgroup_fence_operand(acc_s);
      warpgroup_arrive();
      gemm_overwrite(mma_s, tSrQ(_, _, _, q_stage), tSrK(_, _, _, st), acc_s);
      warpgroup_commit_batch();
    };
    // Softcap/ALiBi and the mask on one S tile.
    auto mask_scores = [&](AccS& acc_s, int n) {
      const int n0 = n * kBlockN;
      mask.apply<kTransform>(acc_s, tScS, m0, n0, mask.tile_needs_mask(m0, kBlockM, n0, kBlockN));
    };
    // Masks one S tile and exponentiates it (row stats; O untouched).
    auto scores_to_probs = [&](AccS& acc_s, int n) {
      mask_scores(acc_s, n);
      Tensor s_rc = cute::make_tensor(acc_s.data(), rowcol(acc_s.layout()));
      softmax.exponentiate(s_rc);
    };
    // S of K stage `st` computed again from shared memory with scalar FMAs (no wgmma, so each warp
    // may take it alone), for the rescue in scores_to_probs_fast. Q and the K stage are still held.
    // Element by element, a loop over d each: few registers live beside O and the P in flight. The
    // two-consumer tiles unroll it over the elements. The three-consumer tile (160 registers a
    // thread) spilled that (180 B, four loads a key block inside the loop, 0.985-1.009x; session
    // 40), so there it is not unrolled and no element's shared-memory addresses are computed ahead
    // and held: element i's score enters at the end of acc_s, which shifts down by one each turn,
    // so after size(acc_s) turns each element is in place (20 / 36 B of spills, one load a key
    // block left). At d128 that form measured 0.98-0.99x, hence the two.
    constexpr bool kRotate = Traits::kConsumers != 2;
    constexpr int kUnroll = kRotate ? 1 : decltype(size(typename AccS::layout_type{}))::value;
    auto recompute_s = [&](AccS& acc_s, int st) {
#pragma unroll kUnroll
      for (int i = 0; i < size(acc_s); ++i) {
        const int row = get<0>(tScS(i)), col = get<1>(tScS(i));
        float sum = 0.f;
#pragma unroll 1
        for (int d = 0; d < kHeadDim; ++d) sum += float(sQ(row, d, q_stage)) * float(sK(col, d, st));
        if constexpr (kRotate) {
          CUTE_UNROLL
          for (int j = 0; j + 1 < size(acc_s); ++j) acc_s(j) = acc_s(j + 1);
          acc_s(size(acc_s) - 1) = sum;
        } else {
          acc_s(i) = sum;
        }
      }
    };
    // scores_to_probs without the row maxima where it can: once every row of a warp has a reference
    // max, its weights are taken against the references as they stand (no FMNMX over the row, no
    // shuffles), and kept if none passed 2^15 (OnlineSoftmax::exponentiate_against_references).
    // kWarpRescue: a warp where one did moves those rows' references by a power of two and scales
    // their weights exactly (OnlineSoftmax::move_references), warp by warp; only where a weight
    // reached 2^126 (a score 126 log2 units above its reference) are the warp's scores computed
    // again, from Q and the K stage `st` (recompute_s), for the full softmax. Otherwise: if any
    // thread of the warpgroup saw one pass, the warpgroup (a vote: a barrier for its four warps
    // every block) computes S again from the K stage by wgmma and runs the full softmax, which moves
    // the references. With scores of one distribution that happens in a row's first blocks at most.
    // Not with ALiBi where keys right of the diagonal are seen: the walk from the last key block
    // nears the diagonal there, so the bias lifts each block's max by slope x kBlockN, and with the
    // larger slopes (0.08 and up at 128 keys) nearly every such block would take the fallback.
    const bool skip_max_allowed = mask.slope == 0.f || mask.window_right == 0;
    auto scores_to_probs_fast = [&](AccS& acc_s, int n, int st) {
      Tensor s_rc = cute::make_tensor(acc_s.data(), rowcol(acc_s.layout()));
      mask_scores(acc_s, n);
      const bool fast = skip_max_allowed && __all_sync(0xffffffffu, softmax.has_references());
      float block_sum[kRows];
      bool fits = true;
      if (fast) {
        fits = softmax.exponentiate_against_references(s_rc, block_sum);
      } else {
        softmax.exponentiate(s_rc);
      }
      if constexpr (kWarpRescue) {
        if (!fast) return;
        if (!__any_sync(0xffffffffu, !fits)) {
          softmax.keep_block(block_sum);
        } else if (!softmax.move_references(s_rc, block_sum)) {
          recompute_s(acc_s, st);
          mask_scores(acc_s, n);
          softmax.exponentiate(s_rc);
        }
      } else if (warpgroup_any(!fits, kBarrierVote + consumer)) {
        issue_s(acc_s, st);
        warpgroup_wait<0>();  // and the P V GEMM before it
        warpgroup_fence_operand(acc_s);
        mask_scores(acc_s, n);
        if (fast) {
          softmax.exponentiate(s_rc);
        } else {
          // Counted already (full softmax above): only the weights again, against the references
          // that softmax set.
          softmax.exponentiate_against_references(s_rc, block_sum);
        }
      } else if (fast) {
        softmax.keep_block(block_sum);
      }
    };
    // Drops elements of one probability tile (dropout), after the GEMMs in flight have retired.
    auto drop = [&](AccS& acc_s, int n) {
      apply_dropout(acc_s, tScS, m0, n * kBlockN, subsequence, rng, p.dropout_threshold);
    };
    // Every exponential of the thread feeds it (keep_before_wait).
    auto row_sum_total = [&] {
      float total = 0.f;
      CUTE_UNROLL
      for (int r = 0; r < kRows; ++r) total += softmax.row_sum[r];
      return total;
    };
    auto to_p = [&](AccS const& acc_s) {
      CUTE_UNROLL
      for (int i = 0; i < size(acc_s); ++i) rP(i) = Element(acc_s(i));
    };
    auto issue_o = [&](int st) {
      warpgroup_fence_operand(acc_o);
      warpgroup_fence_operand(tOrP);
      warpgroup_arrive();
      CUTE_UNROLL
      for (int k = 0; k < size<2>(tOrP); ++k) cute::gemm(mma_o, tOrP(_, _, k), tOrV(_, _, k, st), acc_o);
      warpgroup_commit_batch();
    };

    // Releases the K stage of key block n. With kOInStages, the tile's last block's (keys.begin):
    // consumer 0 keeps it for O (released after the store), consumer 1 tells consumer 0 it is free.
    auto release_k = [&](const cutlass::PipelineState<Traits::kStages>& st, int n) CUTLASS_LAMBDA_FUNC_INLINE {
      if (!kOInStages || n != keys.begin || consumer == 1) pipeline_k.consumer_release(st);
      if (kOInStages && n == keys.begin && consumer == 1) cutlass::arch::NamedBarrier::arrive(256, kBarrierStageFree);
    };

    wait_q();
    if (keys.end <= keys.begin) release_q();  // no keys: Q is not read
    // The key blocks this warpgroup's own 64 rows see. Under a causal mask or a window they can be
    // fewer than the tile's: in a 128-row tile with 64-key blocks consumer 0 sees nothing of the
    // last block; in the 192-row tile with 128-key blocks, consumer 0 in every tile and consumer 1
    // in every other see nothing of it.
    const BlockRange own = key_blocks_of(p, m_block * kConsumers + consumer, 64, kBlockN, si.seqlen_q, si.seqlen_k);
    if constexpr (!kOverlap) {
      // One key block at a time (used where the overlap's second S accumulator does not fit).
      // Only its own key blocks, [lo, hi); the others it passes on as a consumer with no rows does
      // (this path takes no turns).
      int hi = min(keys.end, own.end), lo = max(keys.begin, own.begin);
      if (hi <= lo) hi = lo = keys.begin;  // none: every block is passed on
      state = pass_tile_stages<false>(pipeline_k, pipeline_v, state, BlockRange{hi, keys.end}, take_turn);
      if (hi == lo && keys.end > keys.begin) release_q();  // Q is not read
      for (int n = hi - 1; n >= lo; --n) {
        AccS acc_s;
        pipeline_k.consumer_wait(state);
        issue_s(acc_s, state.index());
        warpgroup_wait<0>();
        warpgroup_fence_operand(acc_s);
        pipeline_k.consumer_release(state);
        if (n == lo) release_q();
        scores_to_probs(acc_s, n);
        softmax.rescale(acc_o_rc);
        if constexpr (kDropout) drop(acc_s, n);
        to_p(acc_s);
        pipeline_v.consumer_wait(state);
        issue_o(state.index());
        warpgroup_wait<0>();
        warpgroup_fence_operand(acc_o);
        pipeline_v.consumer_release(state);
        ++state;
      }
      state = pass_tile_stages<false>(pipeline_k, pipeline_v, state, BlockRange{keys.begin, lo}, take_turn);
    } else if (keys.end > keys.begin) {
      // The first key block alone; then, per block, S of the next block is issued before the softmax
      // of this one finishes and runs on the tensor cores under it and under O += P V of this block
      // (FlashAttention-3's intra-warpgroup overlap). Key blocks run from the last (masked ones first).
      // Ping-pong: the consumer warpgroups take turns issuing their GEMMs, in a ring (turn_wait,
      // turn_pass above), so one's softmax runs while the others' GEMMs hold the tensor cores. All
      // take the same number of turns in a tile (the key blocks are the tile's + 1).
      // The blocks above its own rows, [hi, keys.end), it passes on, taking one turn each and
      // issuing nothing in it; it always computes the tile's first block, keys.begin (d256's O
      // leaves through that block's stages: kOInStages), masked whole if its rows see no key.
      const int hi = max(min(keys.end, own.end), keys.begin + 1);
      state = pass_tile_stages<false>(pipeline_k, pipeline_v, state, BlockRange{hi, keys.end}, take_turn);
      keys.end = hi;
      {
        AccS acc_s;
        pipeline_k.consumer_wait(state);
        turn_wait();
        issue_s(acc_s, state.index());
        turn_pass();
        warpgroup_wait<0>();
        warpgroup_fence_operand(acc_s);
        release_k(state, keys.end - 1);
        if (keys.end - 1 == keys.begin) release_q();
        scores_to_probs(acc_s, keys.end - 1);  // O is still zero: no rescale needed
        if constexpr (kDropout) drop(acc_s, keys.end - 1);
        to_p(acc_s);
      }
      for (int n = keys.end - 2; n >= keys.begin; --n) {
        cutlass::PipelineState<Traits::kStages> next = state;
        ++next;
        AccS acc_s;
        pipeline_k.consumer_wait(next);
        pipeline_v.consumer_wait(state);
        turn_wait();
        issue_s(acc_s, next.index());  // group 1: S of block n
        issue_o(state.index());        // group 2: O += P V of block n + 1
        turn_pass();
        warpgroup_wait<1>();  // S done (groups retire in order)
        warpgroup_fence_operand(acc_s);
        if constexpr (kFastSoftmax) scores_to_probs_fast(acc_s, n, next.index());  // under the P V GEMM
        else scores_to_probs(acc_s, n);
        release_k(next, n);
        if (n == keys.begin) release_q();
        keep_before_wait(row_sum_total(), &shared.wait_anchor);  // else ptxas waits first
        warpgroup_wait<0>();  // O += P V done: O and P are free again
        warpgroup_fence_operand(acc_o);
        warpgroup_fence_operand(tOrP);
        pipeline_v.consumer_release(state);
        softmax.rescale(acc_o_rc);
        if constexpr (kDropout) drop(acc_s, n);
        to_p(acc_s);
        state = next;
      }
      pipeline_v.consumer_wait(state);
      turn_wait();
      issue_o(state.index());
      turn_pass();
      // Under the last P V GEMM: what finish needs that is not O, and the next tile's coordinates.
      if constexpr (kTailUnderLastO) {
        softmax.finish_rows(out_scale, inv, lse);
        upcoming = upcoming_tile();
        keep_before_wait(inv[0] + lse[0] +
                             float(upcoming.m_block + upcoming.h + upcoming.b + upcoming.keys.begin +
                                   upcoming.keys.end + upcoming.si.seqlen_q + upcoming.si.seqlen_k),
                         &shared.tile_wait_anchor);  // else ptxas waits first
      }
      warpgroup_wait<0>();
      warpgroup_fence_operand(acc_o);
      // kOInStages: consumer 1 keeps this V stage for O; consumer 0 tells it the stage is free.
      if (!kOInStages || consumer == 0) pipeline_v.consumer_release(state);
      if (kOInStages && consumer == 0 && partner_computes)
        cutlass::arch::NamedBarrier::arrive(256, kBarrierStageFree + 1);
      last_stage = state.index();
      ++state;
    }
    const bool rows_finished = kTailUnderLastO && keys.end > keys.begin;  // finish_rows above
    if (!rows_finished) softmax.finish_rows(out_scale, inv, lse);

    softmax.normalize(acc_o_rc, inv);
    Tensor cO_rc = cute::make_tensor(tOcO.data(), rowcol(tOcO.layout()));

    if constexpr (kTmaStore) {
      static_assert(Traits::kTmaStoreO, "no shared memory for O in this tile");
      sm80::store_lse(call, si, b, h, m0, tid, cO_rc, lse);
      // kPasses of kOCols columns (two at d256's short tile, whose shared memory holds half of O):
      // value i of a pass's fragment is value kOValues pass + i of acc_o (TiledMmaOStore).
      constexpr int kOCols = Traits::kOCols, kPasses = kHeadDim / kOCols;
      using TiledMmaOStore = typename Traits::TiledMmaOStore;
      auto copy_o = make_tiled_copy_C(typename Traits::SmemCopyO{}, TiledMmaOStore{});
      auto thr_copy_o = copy_o.get_thread_slice(thread_in_group);
      Tensor rO = cute::make_tensor<Element>(partition_fragment_C(TiledMmaOStore{}, Shape<_64, Int<kOCols>>{}).layout());
      constexpr int kOValues = decltype(size(rO))::value;
      static_assert(kOValues * kPasses == decltype(size(acc_o))::value);
      // One warpgroup's (64 x kOCols) part `sO_part` of O to its place in out, by its thread 0.
      // No varlen here: rows past seqlen_q (and columns past d) fall outside the TMA box and are not
      // written.
      auto tma_store_o = [&](auto const& sO_part, int pass) CUTLASS_LAMBDA_FUNC_INLINE {
        Tensor mO = params.tma_o.get_tma_tensor(make_shape(p.seqlen_q, int32_t(p.head_dim), p.nheads, p.batch));
        Tensor gO = local_tile(mO(_, _, h, b), Shape<_64, Int<kOCols>>{}, make_coord(kConsumers * m_block + consumer, pass));
        auto [tOgO, tOsO] =
            tma_partition(params.tma_o, _0{}, Layout<_1>{}, group_modes<0, 2>(sO_part), group_modes<0, 2>(gO));
        copy(params.tma_o, tOsO, tOgO);
        tma_store_arrive();
      };
      // Where this warpgroup's O goes: its part of sO, or (kOInStages) its stage of the tile's last
      // key block, which a tile without keys does not have.
      static_assert(!kOInStages || kPasses == 1);
      auto sO_part = [&]() CUTLASS_LAMBDA_FUNC_INLINE {
        if constexpr (kOInStages) {
          Element* stage = (consumer == 0 ? shared.k.begin() : shared.v.begin()) + last_stage * Traits::kStageElems;
          return cute::make_tensor(make_smem_ptr(stage), take<0, 2>(typename Traits::SmemLayoutO{}));
        } else {
          return cute::make_tensor(make_smem_ptr(shared.o.begin()), typename Traits::SmemLayoutO{})(_, _, consumer);
        }
      }();
      if (!kOInStages || keys.end > keys.begin) {
        CUTE_UNROLL
        for (int pass = 0; pass < kPasses; ++pass) {
          CUTE_UNROLL
          for (int i = 0; i < kOValues; ++i) rO(i) = Element(acc_o(kOValues * pass + i));
          // The buffer is free: in a stage, once the other consumer is done with it; sO, once the
          // last store has read it (only its issuing thread can tell).
          if constexpr (kOInStages) {
            if (consumer == 1 || partner_computes) cutlass::arch::NamedBarrier::sync(256, kBarrierStageFree + consumer);
          } else {
            if (thread_in_group == 0) tma_store_wait<0>();
            cutlass::arch::NamedBarrier::sync(128, kBarrierO + consumer);
          }
          copy(copy_o, thr_copy_o.retile_S(rO), thr_copy_o.partition_D(sO_part));
          cutlass::arch::fence_view_async_shared();  // read next by the TMA unit (async proxy)
          cutlass::arch::NamedBarrier::sync(128, kBarrierO + consumer);
          if (thread_in_group == 0) {
            tma_store_o(sO_part, pass);
            if constexpr (kOInStages) {
              tma_store_wait<0>();  // read: the stage goes back to the producer, for the whole warpgroup
              mbarrier_arrive(consumer == 0 ? &shared.pipeline_k.empty_barrier_[last_stage]
                                            : &shared.pipeline_v.empty_barrier_[last_stage],
                              128);
            }
          }
        }
      } else {
        // No keys in the tile (its rows see none: causal with seqlen_q > seqlen_k, a window), so
        // no stage: O is zero, in 16-byte stores (this variant's out is aligned for them).
        Element* o = static_cast<Element*>(call.out) + row_offset(call.out_stride, false, b, 0, m0 + 64 * consumer, h);
        constexpr int kPieces = kHeadDim / 8;
        for (int i = thread_in_group; i < 64 * kPieces; i += 128) {
          const int row = i / kPieces, col = i % kPieces * 8;
          if (m0 + 64 * consumer + row >= si.seqlen_q) break;  // rows ascend with i
          Element* to = o + int64_t(row) * call.out_stride.row + col;
          if (col + 8 <= p.head_dim) {
            *reinterpret_cast<uint4*>(to) = make_uint4(0, 0, 0, 0);
          } else {
            for (int e = 0; col + e < p.head_dim; ++e) to[e] = Element(0.f);
          }
        }
      }
    } else {
      // 16-byte stores, two transpose steps (store_tile_wide): at d256 +3-13% non-causal and +2-9%
      // causal up to 8k against 4-byte ones, ahead of one step's 8-byte stores except causal 512-1k
      // (bench/NOTES.md, session 14).
      sm80::store_out_lse<Element, 2>(call, si, b, h, m0, tid, acc_o_rc, cO_rc, lse);
    }
    if constexpr (kTailUnderLastO) tile = rows_finished ? upcoming : upcoming_tile();
    t = t_next;
  }  // tiles
  if (kOverlap && consumer == 0) turn_wait();  // the last consumer's last pass
  if (kTmaStore && thread_in_group == 0) tma_store_wait<0>();  // sO stays until it is read
#endif
}

}  // namespace flashattn::sm90
