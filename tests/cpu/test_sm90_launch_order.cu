// Host checks of the Hopper backward's launch order (bwd_load.h; no GPU needed): every (key block,
// sequence, kv head) gets exactly one CTA; in deterministic mode each CTA waits only on CTAs
// launched before it (the key block above it, same head), so no residency can deadlock the turns;
// and where heads run together, the group's top key blocks launch first, one per head.
#include <gtest/gtest.h>

#include <map>
#include <tuple>

#include "kernels/sm90/bwd_load.h"

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

}  // namespace
}  // namespace flashattn::sm90
