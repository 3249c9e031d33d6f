// Which tiles of the (query, key) plane hold at least one visible pair, in units of blocks. The
// forward walks the key blocks of a query block; the backward walks the query blocks of a key block
// and, in deterministic mode, orders its dQ adds by the same ranges, so both directions must agree.
#pragma once

#include "kernels/common/problem.h"

namespace flashattn {

struct BlockRange {
  int begin, end;  // [begin, end); empty when begin >= end
};

// Key blocks (of kBlockN keys) that the rows of query block m_block (of kBlockM rows) may see.
// Window bounds grow with the row, so the first row gives the low end and the last row the high end.
FA_HOST_DEVICE BlockRange key_blocks_of(const Problem& p, int m_block, int block_m, int block_n, int seqlen_q,
                                        int seqlen_k) {
  const int m0 = m_block * block_m;
  const int m_last = (m0 + block_m < seqlen_q ? m0 + block_m : seqlen_q) - 1;
  const int lo = visible_keys(p, m0, seqlen_q, seqlen_k).lo;
  const int hi = visible_keys(p, m_last, seqlen_q, seqlen_k).hi;
  const int begin = lo / block_n;
  return BlockRange{begin, hi > lo ? (hi + block_n - 1) / block_n : begin};
}

// The query blocks whose key range holds key block n_block: a contiguous run, because both ends
// of a query block's key range grow with the block. Empty (begin >= end) when none does.
FA_HOST_DEVICE BlockRange query_blocks_of(const Problem& p, int n_block, int block_m, int block_n, int seqlen_q,
                                          int seqlen_k) {
  const int m_blocks = (seqlen_q + block_m - 1) / block_m;
  BlockRange out{m_blocks, 0};
  for (int m = 0; m < m_blocks; ++m) {
    const BlockRange r = key_blocks_of(p, m, block_m, block_n, seqlen_q, seqlen_k);
    if (r.begin <= n_block && n_block < r.end) {
      out.begin = out.begin < m ? out.begin : m;
      out.end = m + 1;
    }
  }
  return out;
}

}  // namespace flashattn
