// The Hopper forward's persistent tile order: which tiles a CTA takes, in what order, and how many
// CTAs there are. fwd_kernel.h walks it (producer and consumers alike), fwd_launch.h sizes the grid,
// and a CPU test (tests/cpu/test_sm90_launch_order.cu) checks both.
#pragma once

#include <cute/config.hpp>

#include <algorithm>
#include <numeric>

#include "kernels/common/problem.h"

namespace flashattn::sm90 {

// Tiles are numbered t = (batch x heads + head) x m_blocks + j, j the tile of its head. A CTA walks
// pairs of tiles (2i, 2i + 1) with a stride of the grid: 2 cta, 2 cta + 1, 2 (cta + grid), ...
CUTE_HOST_DEVICE int first_tile(int cta) { return 2 * cta; }
CUTE_HOST_DEVICE int next_tile(int t, int grid) { return t % 2 ? t + 2 * grid - 1 : t + 1; }

// The query block of tile j of a head: m - 1, 0, m - 2, 1, ... The query blocks of one head stay
// together (their K/V stay in L2), and a pair is (m - 1 - i, i): under causal masking the two see
// m_blocks + 1 key blocks together, so every pair is the same work and a static stride balances (it
// did not over single tiles: causal d256 8k lost 27%). m_blocks is even (an odd count gets an
// empty partner).
CUTE_HOST_DEVICE int query_block_of(int j, int m_blocks) { return j % 2 ? j / 2 : m_blocks - 1 - j / 2; }

// The query blocks (tiles) of a head: seqlen_q (with varlen the longest sequence's) in blocks of
// block_m, rounded up to even so that they pair up.
inline int fwd_query_blocks(int seqlen_q, int block_m) { return (seqlen_q + 2 * block_m - 1) / (2 * block_m) * 2; }

// The grid: one CTA per SM (each takes a whole SM's shared memory). With varlen the pairs of
// different sequences differ, so there each CTA takes one pair and the hardware balances them.
// Pair i of a head is the global pair index mod pairs_per_head (m_blocks / 2). Where seqlen_q leaves
// a partial or empty query block (d64's 192-row tiles at 2k: 10 2/3 blocks, rounded up to 12, so
// pair (11, 0) is half the work of (9, 2)), the pairs of a head differ, and a grid sharing a factor
// with pairs_per_head hands each CTA the same few of them: at 2k with 132 SMs and 6 pairs a head, a
// sixth of the CTAs took only the light pair and the rest only heavy ones (ncu: SMs active 88% of
// the kernel's time). There the grid shrinks to the largest size coprime to pairs_per_head, which
// walks every CTA through all pairs of a head in turn (d64 2k: +8.8%, bench/NOTES.md session 18).
inline int fwd_persistent_grid(const Problem& p, int block_m, int sms) {
  const int pairs_per_head = fwd_query_blocks(p.seqlen_q, block_m) / 2;
  const int pairs = pairs_per_head * p.nheads * p.batch;
  if (p.varlen) return pairs;
  int grid = std::max(1, std::min(pairs, sms));
  if (grid == sms && p.seqlen_q % (2 * block_m) != 0)
    while (grid > 1 && std::gcd(grid, pairs_per_head) != 1) --grid;
  return grid;
}

}  // namespace flashattn::sm90
