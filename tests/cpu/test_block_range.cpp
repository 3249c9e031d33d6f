// The block ranges of block_range.h, both directions (no GPU needed). The backward's CTA of key block
// n walks query_blocks_of(n); deterministic mode counts a query block's adds against
// key_blocks_of(m) (its turn order, sm90/bwd_load.h and sm80/bwd.h), and the Hopper post-process
// waits for the done flags of key_blocks_of(m) (KeyDone, sm90/bwd_load.h). So for every query
// block m the key blocks that walk it must be exactly key_blocks_of(m), inside the sequence's key
// blocks: one too many and a turn waits for a CTA that never adds (a hang), one too few and dQ is
// taken before the last add. And every visible (row, key) pair must lie in a tile both directions include.
#include <gtest/gtest.h>

#include <vector>

#include "kernels/common/block_range.h"

namespace flashattn {
namespace {

struct Mask {
  int window_left, window_right;  // -1: unbounded; causal is right = 0
};

TEST(BlockRange, KeyBlocksOfAQueryBlockAreTheKeyBlocksThatWalkIt) {
  const Mask masks[] = {{-1, -1}, {-1, 0}, {5, 0}, {64, 64}, {0, 0}, {200, -1}, {-1, 3}, {127, 0}};
  const int seqlens[] = {1, 17, 64, 113, 128, 300, 1023};
  const int blocks[][2] = {{64, 128}, {128, 128}, {128, 64}, {64, 64}};  // block_m, block_n
  for (const Mask& mask : masks)
    for (int seqlen_q : seqlens)
      for (int seqlen_k : seqlens)
        for (const auto& blk : blocks) {
          const int block_m = blk[0], block_n = blk[1];
          Problem p;
          p.window_left = mask.window_left, p.window_right = mask.window_right;
          const int m_blocks = (seqlen_q + block_m - 1) / block_m;
          const int n_blocks = (seqlen_k + block_n - 1) / block_n;
          SCOPED_TRACE(testing::Message() << "window (" << mask.window_left << ", " << mask.window_right << "), "
                                          << seqlen_q << " x " << seqlen_k << ", blocks " << block_m << " x "
                                          << block_n);
          // walks[m][n]: key block n's CTA walks query block m.
          std::vector<std::vector<bool>> walks(m_blocks, std::vector<bool>(n_blocks, false));
          for (int n = 0; n < n_blocks; ++n) {
            const BlockRange r = query_blocks_of(p, n, block_m, block_n, seqlen_q, seqlen_k);
            for (int m = r.begin; m < r.end; ++m) walks[m][n] = true;
          }
          for (int m = 0; m < m_blocks; ++m) {
            const BlockRange keys = key_blocks_of(p, m, block_m, block_n, seqlen_q, seqlen_k);
            if (keys.end > keys.begin) {
              EXPECT_GE(keys.begin, 0);
              EXPECT_LE(keys.end, n_blocks) << "query block " << m << " counts a key block past the keys";
            }
            for (int n = 0; n < n_blocks; ++n)
              EXPECT_EQ(walks[m][n], keys.begin <= n && n < keys.end)
                  << "query block " << m << ", key block " << n << ": walked and counted disagree";
            // Every visible pair of the block's rows is inside a counted key block.
            for (int row = m * block_m; row < (m + 1) * block_m && row < seqlen_q; ++row) {
              const KeyRange visible = visible_keys(p, row, seqlen_q, seqlen_k);
              if (visible.hi <= visible.lo) continue;
              EXPECT_GE(visible.lo / block_n, keys.begin) << "row " << row;
              EXPECT_LE((visible.hi - 1) / block_n, keys.end - 1) << "row " << row;
            }
          }
        }
}

}  // namespace
}  // namespace flashattn
