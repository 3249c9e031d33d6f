// Tile choices of the Hopper forward (one place), TMA descriptors, and the launch.
#pragma once

#include <cuda_runtime_api.h>

#include <algorithm>
#include <string>
#include <type_traits>

#include "kernels/sm80/element.h"
#include "kernels/sm90/fwd.h"
#include "kernels/sm90/fwd_kernel.h"
#include "kernels/sm90/tile_scheduler.h"
#include "kernels/sm90/tma_view.h"

namespace flashattn::sm90 {

// kBlockN, K/V stages, Q buffers and consumer warpgroups per head dim (kBlockM is 64 a consumer:
// 128 with two, 192 with three), within 227 KB of shared memory and the consumers' 240 registers
// (160 with three). Measured (bench/NOTES.md): at d128, 176-key blocks lost 28% to
// 128 (session 3); two Q buffers with two K/V stages beat one Q with three by 0-2.5% (session 5);
// at d256, 80-key blocks (with the overlap of the plain variant) beat 64 by 10-26% from 8k and
// 3-5% at 2k, and lose 8-12% at 512 (a 512-key row ends in a 32-key block) (session 9, H100);
// d96 and d192 follow their neighbours (not tuned yet); d192/d256 have no room for a second Q.
// Tiles by the keys a query row sees (row_keys: on average under the causal mask about half of
// seqlen_k), for the variant without dropout, softcap or ALiBi (void: none):
// `long_keys` from kLongFrom keys, with the TMA store only. At d64, three consumer warpgroups (192
//   query rows, 128-key blocks) against two with 192-key blocks (session 13, H100): +4% at 2k, +14%
//   at 4k, +6-7% at 8k-16k non-causal, +5-7% causal 4k-16k (each softmax hides under two other
//   warpgroups' GEMMs). Against two with 128-key blocks: +19% at 1.5k and +13% causal 3k (rows of
//   1.5k keys, whole 192-row tiles); -3% at 1.25k, -9% causal 2k (rows of 1k keys; 2k is 10.7
//   tiles of 192 rows), -17% causal 1k. The feature variants spill at 160 registers.
//   (Session 11: 192-key blocks with two had beaten 128 from 2k.) After the coprime grid and the
//   fast softmax in this tile (session 19, H100), it took rows from 1k keys: against the short tile
//   +13% at 1k; against two warpgroups with the overlap +9% causal 2k (rows of 1025 keys) and
//   +18-19% at 1.25k; -2% causal 1k (rows of 513 keys, left to the short tile). No tile of two
//   warpgroups with the overlap is left here for the plain variant with the TMA store. Session 21
//   (H100), after the consumers with no rows skip their GEMMs: against the two-CTA short tile +5%
//   at 512 and +13% at 768 non-causal, -6% causal 1k (rows of 9 to 1024 keys), -1% causal 1.5k;
//   so it also takes rows where every row sees at least kLongFromFewest keys.
// `short_keys` up to kShortUpTo keys (session 11, H100). At d256, 64-key blocks one at a time
//   against the 80-key overlap: +6% at 512, +11% at 512 causal, +1% at 1k causal, -6% at 1k. At
//   d64, the 128-key tile without the overlap: +6% at 512 and 1k, +2-6% causal 512-2k; at d128 the
//   same lost 1-7% (the overlap stays). Session 20 (H100): at d64, two CTAs an SM with 64-key
//   blocks (104 registers a consumer thread), each one's GEMMs under the other's softmax, against
//   one CTA with 128-key blocks: +8% at 512, +10% at 768, +5% causal 512 and 1k. Session 24 (H100):
//   d256's short tile with O through shared memory and TMA in two 128-column passes, against O
//   from registers: +3% at 512, +5% causal 512, +6% causal 768 (an A/A read 0.99-1.01).
template <typename Traits>
struct OneFwdTile {
  using type = Traits;
  using long_keys = void;
  static constexpr int kLongFrom = 0, kLongFromFewest = 0;
  using short_keys = void;
  static constexpr int kShortUpTo = 0;
  // Whether short_keys also takes calls whose O cannot leave by TMA (varlen, an unaligned out).
  static constexpr bool kShortFromRegisters = false;
};
template <typename Element, int kHeadDim>
struct FwdTile;
template <typename E>
struct FwdTile<E, 64> : OneFwdTile<FwdTraits<E, 64, 128, 3, 2>> {
  using long_keys = FwdTraits<E, 64, 128, 3, 2, true, 3>;
  static constexpr int kLongFrom = 769, kLongFromFewest = 512;
  using short_keys = FwdTraits<E, 64, 64, 3, 2, false, 2, 2>;
  static constexpr int kShortUpTo = 768;
  // Varlen (and an unaligned out) too, O from registers, where the 128-key overlap tile ran them
  // before: varlen causal +27% at 512, +22% at 1k (session 32, H200); a packed sequence and the same
  // sequence alone take the same tile.
  static constexpr bool kShortFromRegisters = true;
};
template <typename E>
struct FwdTile<E, 96> : OneFwdTile<FwdTraits<E, 96, 128, 3, 2>> {};
template <typename E>
struct FwdTile<E, 128> : OneFwdTile<FwdTraits<E, 128, 128, 2, 2>> {};
template <typename E>
struct FwdTile<E, 192> : OneFwdTile<FwdTraits<E, 192, 64, 3>> {};
template <typename E>
struct FwdTile<E, 256> : OneFwdTile<FwdTraits<E, 256, 80, 2>> {
  using short_keys = FwdTraits<E, 256, 64, 2, 1, false>;
  static constexpr int kShortUpTo = 512;
  static constexpr bool kShortFromRegisters = true;
};

// The keys a query row sees under the window (visible_keys; causal is right = 0), on average and
// at the fewest, over 64 rows sampled evenly; they only pick a tile, so an estimate serves. Varlen:
// of a sequence of the longest lengths.
struct RowKeys {
  int mean, fewest;
};
inline RowKeys row_keys(const Problem& p) {
  constexpr int kSamples = 64;
  int64_t keys = 0;
  int fewest = p.seqlen_k;
  for (int s = 0; s < kSamples; ++s) {
    const int row = int(int64_t(p.seqlen_q) * (2 * s + 1) / (2 * kSamples));
    const KeyRange range = visible_keys(p, row, p.seqlen_q, p.seqlen_k);  // hi >= lo
    const int seen = range.hi - range.lo;
    keys += seen;
    fewest = std::min(fewest, seen);
  }
  return {static_cast<int>(keys / kSamples), fewest};
}

// One variant's launch: TMA descriptors for its tile, then a persistent grid.
template <typename Traits, bool kDropout, bool kTransform, bool kTmaStore>
Status launch_fwd(const FwdCall& call, cudaStream_t stream) {
  using Element = typename Traits::Element;
  constexpr int kHeadDim = Traits::kHeadDim;
  const Problem& p = call.problem;
  const int64_t rows_q = p.varlen ? p.total_q : p.seqlen_q, rows_k = p.varlen ? p.total_k : p.seqlen_k;
  FwdKernelParams<Traits> params{
      call,
      make_tma_copy(SM90_TMA_LOAD{}, tma_view<Element>(p, p.q, rows_q, p.nheads, p.q_stride),
                    take<0, 2>(typename Traits::SmemLayoutQ{}),
                    Shape<Int<Traits::kBlockM>, Int<kHeadDim>>{}, _1{}),
      make_tma_copy(SM90_TMA_LOAD{}, tma_view<Element>(p, p.k, rows_k, p.nheads_k, p.k_stride),
                    take<0, 2>(typename Traits::SmemLayoutK{}), Shape<Int<Traits::kBlockN>, Int<kHeadDim>>{}, _1{}),
      make_tma_copy(SM90_TMA_LOAD{}, tma_view<Element>(p, p.v, rows_k, p.nheads_k, p.v_stride),
                    take<0, 2>(typename Traits::SmemLayoutV{}), Shape<Int<Traits::kBlockN>, Int<kHeadDim>>{}, _1{}),
      // TMA store of O for the kTmaStore variant; for the others a stand-in descriptor over q, never used.
      make_tma_copy(SM90_TMA_STORE{},
                    tma_view<Element>(p, kTmaStore ? call.out : const_cast<void*>(p.q), rows_q, p.nheads,
                                      kTmaStore ? call.out_stride : p.q_stride),
                    take<0, 2>(typename Traits::SmemLayoutO{}), Shape<_64, Int<Traits::kOCols>>{}, _1{}),
      fwd_query_blocks(p.seqlen_q, Traits::kBlockM),
      0};
  params.num_tiles = params.m_blocks * p.nheads * p.batch;  // < 2^30 (fwd_unsupported), so the tile stride cannot overflow

  constexpr int smem = Traits::kSmemBytes;
  auto kernel = fwd_kernel<Traits, kDropout, kTransform, kTmaStore>;
  cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
  int device = 0, sms = 0;
  cudaGetDevice(&device);
  cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
  const int grid = fwd_persistent_grid(p, Traits::kBlockM, sms * Traits::kCtasPerSm);
  kernel<<<grid, Traits::kThreads, smem, stream>>>(params);
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess)
    return Status{FLASHATTN_CUDA_ERROR,
                  std::string("flashattn: sm90 forward launch failed: ") + cudaGetErrorString(err)};
  return Status::Ok();
}

// The plain variant of a tile: with the TMA-store epilogue where the tile has one and the call
// allows it, else O from registers.
template <typename Traits>
Status launch_plain_fwd(const FwdCall& call, cudaStream_t stream, bool tma_store) {
  if constexpr (Traits::kTmaStoreO)
    if (tma_store) return launch_fwd<Traits, false, false, true>(call, stream);
  return launch_fwd<Traits, false, false, false>(call, stream);
}

template <int kDtype, int kHeadDim>
Status run_fwd(const FwdCall& call, cudaStream_t stream) {
  using Element = typename sm80::ElementOf<kDtype>::type;
  using Tile = FwdTile<Element, kHeadDim>;
  using Traits = typename Tile::type;
  const Problem& p = call.problem;
  if (std::string why = fwd_unsupported(call); !why.empty()) return not_supported("BACKEND_SM90 forward with " + why);
  if (p.batch == 0 || p.seqlen_q == 0) {
    if (!call.rng_state || p.dropout_p == 0.f) return Status::Ok();
    return not_supported("BACKEND_SM90 forward of an empty batch that must report its RNG state");
  }

  const bool transform = p.softcap > 0.f || p.alibi_slopes != nullptr;
  if (p.dropout_p > 0.f)
    return transform ? launch_fwd<Traits, true, true, false>(call, stream)
                     : launch_fwd<Traits, true, false, false>(call, stream);
  if (transform) return launch_fwd<Traits, false, true, false>(call, stream);
  // The TMA-store epilogue: only in the plain variant (one more instantiation, not four), without
  // varlen (a packed sequence's last block has no TMA bound) and where out is aligned for TMA.
  const RowStrides& os = call.out_stride;
  const bool tma_store = !p.varlen && reinterpret_cast<uintptr_t>(call.out) % 16 == 0 && os.row % 8 == 0 &&
                         os.head % 8 == 0 && os.batch % 8 == 0;
  const RowKeys keys = row_keys(p);
  // The long-key tile: from kLongFrom keys a row on average, or where every row sees
  // kLongFromFewest; with the TMA store where the call allows it, else O from registers (varlen,
  // whose keys are of the longest sequence's lengths: a batch of short sequences beside a long one
  // takes this tile too).
  using Long = typename Tile::long_keys;
  const bool long_rows =
      !std::is_void_v<Long> && (keys.mean >= Tile::kLongFrom || keys.fewest >= Tile::kLongFromFewest);
  // The short-key tile: with the TMA store where it has one and the call allows it; O from
  // registers only where the tile says so (kShortFromRegisters).
  using Short = typename Tile::short_keys;
  if constexpr (!std::is_void_v<Short>) {
    static_assert(Short::kTmaStoreO || Tile::kShortFromRegisters, "a short tile no call can take");
    if (!long_rows && keys.mean <= Tile::kShortUpTo) {
      if constexpr (Short::kTmaStoreO)
        if (tma_store) return launch_fwd<Short, false, false, true>(call, stream);
      if constexpr (Tile::kShortFromRegisters) return launch_fwd<Short, false, false, false>(call, stream);
    }
  }
  if constexpr (!std::is_void_v<Long>)
    if (long_rows) return launch_plain_fwd<Long>(call, stream, tma_store);
  return launch_plain_fwd<Traits>(call, stream, tma_store);
}

}  // namespace flashattn::sm90
