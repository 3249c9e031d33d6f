// Uses the C++ API: a GQA ratio that does not divide must fail, naming k.
#include <cstdio>
#include <vector>

#include "flashattn/flashattn.h"

int main() {
  std::vector<uint16_t> q(1 * 8 * 3 * 64), kv(1 * 8 * 2 * 64);
  flashattn::FwdParams p;
  p.attn.q = flashattn::make_tensor(q.data(), flashattn::DType::kFloat16, {1, 8, 3, 64});
  p.attn.k = flashattn::make_tensor(kv.data(), flashattn::DType::kFloat16, {1, 8, 2, 64});
  p.attn.v = p.attn.k;
  p.out = p.attn.q;
  const flashattn::Status s = flashattn::fwd(p, nullptr);
  std::printf("%s\n", s.message.c_str());
  return s.code == FLASHATTN_INVALID_ARGUMENT && s.message.find("k: nheads 3") != std::string::npos ? 0 : 1;
}
