// Host checks of the Hopper backward's launch order (bwd_load.h; no GPU needed): every (key block,
// sequence, kv head) gets exactly one CTA; in deterministic mode each CTA waits only on CTAs
// launched before it (the key block above it, same head), so no residency can deadlock the turns;
// and where heads run together, the group's top key blocks launch first, one per head. And the
// Hopper forward's persistent tile order (tile_scheduler.h): every tile taken once, the work spread
// evenly.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <numeric>
#include <tuple>
#include <vector>

#include "kernels/sm90/bwd_load.h"
#include "kernels/sm90/tile_scheduler.h"

namespace flashattn::sm90 {
namespace {

struct Launch {
  std::map<std::tuple<int, int, int>, long> order;  // (n_block, b, hk) -> launch index
  int heads_together = 1;
};

Launch launch(const Problem& p, int key_blocks, bool deterministic, int sms) {
  Launch l;
  l.heads_together = bwd_heads_together(p, key_blocks, deterministic, sms);
  const dim3 grid = bwd_grid(p, key_blocks, deterministic, l.heads_together);
  long index = 0;  // CTAs launch x fastest, then y, then z
  for (unsigned z = 0; z < grid.z; ++z)
    for (unsigned y = 0; y < grid.y; ++y)
      for (unsigned x = 0; x < grid.x; ++x, ++index) {
        const BwdBlock blk = bwd_block_at(p, key_blocks, deterministic, dim3(x, y, z), grid);
        if (blk.n_block < 0) continue;
        const bool fresh = l.order.emplace(std::make_tuple(blk.n_block, blk.b, blk.hk), index).second;
        EXPECT_TRUE(fresh) << "two CTAs for key block " << blk.n_block << " of (" << blk.b << ", " << blk.hk << ")";
      }
  return l;
}

TEST(Sm90BwdLaunchOrder, EveryBlockOnceAndTurnsWaitOnEarlierCtas) {
  struct Shape {
    int batch, nheads_k, key_blocks, window_right;
    bool varlen;
  };
  const Shape shapes[] = {{16, 8, 16, -1, false}, {4, 8, 64, -1, false}, {2, 8, 128, -1, false},
                          {1, 8, 256, -1, false}, {4, 32, 32, -1, false}, {3, 5, 7, -1, false},
                          {2, 1, 1, -1, false},   {4, 8, 64, 0, false},   {5, 3, 9, -1, true}};
  for (const Shape& s : shapes)
    for (int sms : {132, 114, 16, 0})
      for (bool deterministic : {false, true}) {
        SCOPED_TRACE("batch " + std::to_string(s.batch) + " kv heads " + std::to_string(s.nheads_k) + " key blocks " +
                     std::to_string(s.key_blocks) + " sms " + std::to_string(sms) +
                     (deterministic ? " deterministic" : ""));
        Problem p;
        p.batch = s.batch, p.nheads_k = s.nheads_k, p.nheads = 2 * s.nheads_k;
        p.window_right = s.window_right, p.varlen = s.varlen;
        const Launch l = launch(p, s.key_blocks, deterministic, sms);
        ASSERT_EQ(l.order.size(), size_t(s.key_blocks) * s.batch * s.nheads_k);
        const bool equal_work = s.window_right < 0 && !s.varlen;
        if (!deterministic || !equal_work) EXPECT_EQ(l.heads_together, 1);
        if (!deterministic) continue;
        EXPECT_EQ(l.heads_together, equal_work ? std::max(1, std::min(s.batch * s.nheads_k, sms / s.key_blocks)) : 1);
        for (const auto& [key, index] : l.order) {
          const auto [n, b, hk] = key;
          if (n + 1 < s.key_blocks)
            EXPECT_LT(l.order.at({n + 1, b, hk}), index) << "key block " << n << " waits on a later CTA";
        }
        // Heads launched together: key block n of the group's heads back to back, top key block first.
        const int head0_b = 0, head0_hk = 0;
        const long top = l.order.at({s.key_blocks - 1, head0_b, head0_hk});
        EXPECT_EQ(top, 0);
        for (int g = 1; g < l.heads_together; ++g)
          EXPECT_EQ(l.order.at({s.key_blocks - 1, g / s.nheads_k, g % s.nheads_k}), g);
      }
}

// The forward's walk (tile_scheduler.h, as fwd_kernel.h takes it), with a tile's work taken as its
// (query row, visible key) pairs. Where seqlen_q leaves a partial 192-row block, the pairs of a head
// differ; still no CTA may take more than the mean plus 1.25 of the heaviest pair (whole pairs: one
// CTA may take one more than another). Before the grid was made coprime to the pairs of a head, 2k
// on 132 SMs was at the mean plus 1.66 pairs, on 114 plus 2.02; with it, every shape here is at most
// plus 1.12 (16k causal on 114 SMs, 12.07 pairs a CTA), most below 0.8.
TEST(Sm90FwdGrid, EveryTileOnceAndWorkEven) {
  struct Shape {
    int batch, nheads, seqlen, block_m;
    bool causal;
  };
  // The standard grid's d64 points that take the 192-row tile, two whose blocks divide evenly, and
  // two odd ones.
  const Shape shapes[] = {{8, 32, 2048, 192, false}, {4, 32, 4096, 192, false}, {4, 32, 4096, 192, true},
                          {2, 32, 8192, 192, false}, {1, 32, 16384, 192, true}, {8, 16, 2048, 128, false},
                          {4, 16, 4096, 128, true},  {2, 32, 2148, 192, false}, {3, 7, 3000, 192, true}};
  for (const Shape& s : shapes)
    for (int sms : {132, 114}) {
      SCOPED_TRACE("batch " + std::to_string(s.batch) + " heads " + std::to_string(s.nheads) + " seqlen " +
                   std::to_string(s.seqlen) + " block_m " + std::to_string(s.block_m) +
                   (s.causal ? " causal" : "") + " sms " + std::to_string(sms));
      Problem p;
      p.batch = s.batch, p.nheads = p.nheads_k = s.nheads, p.seqlen_q = p.seqlen_k = s.seqlen;
      const int m_blocks = fwd_query_blocks(s.seqlen, s.block_m);
      const int num_tiles = m_blocks * s.nheads * s.batch;
      const int grid = fwd_persistent_grid(p, s.block_m, sms);
      ASSERT_GE(grid, 1);
      ASSERT_LE(grid, sms);
      std::vector<int> visits(num_tiles, 0);
      std::vector<double> work(grid, 0.0);
      auto tile_work = [&](int m_block) {
        double w = 0;
        for (int row = m_block * s.block_m; row < std::min(s.seqlen, (m_block + 1) * s.block_m); ++row)
          w += s.causal ? row + 1 : s.seqlen;
        return w;
      };
      double heaviest_pair = 0;
      for (int i = 0; i < m_blocks / 2; ++i)
        heaviest_pair = std::max(heaviest_pair, tile_work(i) + tile_work(m_blocks - 1 - i));
      for (int cta = 0; cta < grid; ++cta)
        for (int t = first_tile(cta); t < num_tiles; t = next_tile(t, grid)) {
          ++visits[t];
          work[cta] += tile_work(query_block_of(t % m_blocks, m_blocks));
        }
      EXPECT_TRUE(std::all_of(visits.begin(), visits.end(), [](int v) { return v == 1; }));
      const double mean = std::accumulate(work.begin(), work.end(), 0.0) / grid;
      EXPECT_LE(*std::max_element(work.begin(), work.end()), mean + 1.25 * heaviest_pair);
    }
}

}  // namespace
}  // namespace flashattn::sm90
