// The backward's workspace layout (sm80/bwd.h): the padded rows of D and lse that the Hopper
// backward's producer bulk-copies a step at a time must start 16-byte aligned, hold every row a
// query block can reach, and never be shared by two sequences (the pre-process writes a sequence's
// padding rows: a shared row would race with the next sequence's values). Random varlen batches.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <utility>
#include <vector>

#include "kernels/sm80/bwd.h"

namespace flashattn::sm80 {
namespace {

void check_stat_rows(const Problem& p, const std::vector<int>& seqlens) {
  for (int bucket : {64, 128, 256}) {
    const BwdWorkspace ws = bwd_workspace(p, bucket, true);
    // The regions of the workspace follow each other without overlap.
    EXPECT_LE(ws.dsum, ws.lse_log2);
    EXPECT_GE(ws.lse_log2 - ws.dsum, size_t(ws.stat_rows_per_head) * p.nheads * sizeof(float));
    EXPECT_GE(ws.semaphore - ws.lse_log2, size_t(ws.stat_rows_per_head) * p.nheads * sizeof(float));
    EXPECT_GE(ws.dsum, ws.dq_accum_bytes);
    EXPECT_GE(ws.key_done, ws.semaphore + ws.semaphore_bytes);
    EXPECT_GE(ws.bytes, ws.key_done + ws.key_done_bytes);
    // A done flag for every 64-key block of every key head (sm90/bwd_load.h, KeyDone).
    EXPECT_GE(ws.key_done_bytes, size_t(p.batch) * p.nheads_k * ((p.seqlen_k + 63) / 64) * sizeof(int));
    EXPECT_EQ(ws.key_done % 16, 0u);
    for (int h = 0; h < p.nheads; ++h) {
      std::vector<std::pair<int64_t, int64_t>> runs;  // [first, end) rows of each sequence
      int64_t q_row0 = 0;
      for (int b = 0; b < p.batch; ++b) {
        const int64_t first = stat_row0(p, ws, b, p.varlen ? q_row0 : 0, h);
        // Every query block of 64 or 128 rows that starts inside the sequence ends inside its run.
        const int64_t end = first + round_up_stat_rows(seqlens[b]);
        EXPECT_EQ(first % kStatRowAlign, 0) << "b " << b << " h " << h;  // bulk copies: 16-byte aligned
        EXPECT_GE(first, int64_t(h) * ws.stat_rows_per_head);
        EXPECT_LE(end, int64_t(h + 1) * ws.stat_rows_per_head) << "b " << b << " h " << h;
        if (seqlens[b] > 0) runs.push_back({first, end});
        q_row0 += seqlens[b];
      }
      std::sort(runs.begin(), runs.end());
      for (size_t i = 1; i < runs.size(); ++i)
        EXPECT_LE(runs[i - 1].second, runs[i].first) << "two sequences share padded rows (head " << h << ")";
    }
  }
}

TEST(BwdWorkspace, StatRowsAlignedAndDisjointVarlen) {
  std::mt19937_64 rng(std::random_device{}());
  for (int trial = 0; trial < 300; ++trial) {
    Problem p;
    p.varlen = true;
    p.batch = 1 + int(rng() % 24);
    p.nheads = 1 + int(rng() % 4);
    p.nheads_k = 1 + int(rng() % p.nheads);
    p.seqlen_k = int(rng() % 5000);
    std::vector<int> seqlens(p.batch);
    for (int& s : seqlens) {
      const int kind = int(rng() % 4);  // empty, short, a multiple of 64 or 128, anything
      s = kind == 0 ? 0 : kind == 1 ? 1 + int(rng() % 130) : kind == 2 ? 64 * int(rng() % 12) : int(rng() % 3000);
      p.total_q += s;
      p.seqlen_q = std::max(p.seqlen_q, s);
    }
    check_stat_rows(p, seqlens);
  }
}

TEST(BwdWorkspace, StatRowsAlignedAndDisjointFixedLength) {
  for (int seqlen : {1, 63, 64, 65, 127, 128, 129, 1000, 4097}) {
    Problem p;
    p.batch = 5, p.nheads = 3, p.nheads_k = 1, p.seqlen_q = seqlen, p.seqlen_k = 2 * seqlen + 1;
    check_stat_rows(p, std::vector<int>(p.batch, seqlen));
  }
}

}  // namespace
}  // namespace flashattn::sm80
