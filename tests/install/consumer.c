/* Uses the C ABI: a call with a bad head dim must fail, naming q, without needing a GPU. */
#include <stdio.h>
#include <string.h>

#include "flashattn/flashattn_c.h"

int main(void) {
  static unsigned short q[2 * 4 * 2 * 12];
  flashattn_fwd_params p;
  flashattn_fwd_params_init(&p);
  p.attn.q.data = q;
  p.attn.q.dtype = FLASHATTN_BFLOAT16;
  p.attn.q.rank = 4;
  int64_t shape[4] = {2, 4, 2, 12}, stride[4] = {96, 24, 12, 1};
  memcpy(p.attn.q.shape, shape, sizeof shape);
  memcpy(p.attn.q.stride, stride, sizeof stride);
  p.attn.k = p.attn.q;
  p.attn.v = p.attn.q;
  p.out = p.attn.q;
  flashattn_status s = flashattn_fwd(&p, NULL);
  printf("status %s: %s\n", flashattn_status_name(s), flashattn_last_error());
  if (s != FLASHATTN_INVALID_ARGUMENT || strstr(flashattn_last_error(), "q: head_dim 12") == NULL) return 1;
  return 0;
}
