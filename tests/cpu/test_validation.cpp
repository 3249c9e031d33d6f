// Every bad argument is refused with a message naming it (and the bad value).
#include <gtest/gtest.h>

#include <functional>

#include "common/cases.h"

namespace flashattn::test {
namespace {

// A valid bf16 problem in host memory; each case breaks one thing.
struct Valid {
  std::mt19937_64 rng{5};
  HostProblem hp;
  HostTensor out, lse, dout, dq, dk, dv;
  flashattn_fwd_params fwd{};
  flashattn_bwd_params bwd{};
  explicit Valid(const Case& c) : hp(c, rng) {
    out = HostTensor(c.dtype, hp.q.shape);
    dout = dq = out;
    dk = dv = HostTensor(c.dtype, hp.k.shape);
    lse = c.varlen() ? HostTensor(FLASHATTN_FLOAT32, {c.nheads, hp.q.shape[0]})
                     : HostTensor(FLASHATTN_FLOAT32, {c.batch, c.nheads, c.seqlen_q});
    flashattn_fwd_params_init(&fwd);
    fwd.attn = hp.attn;
    fwd.out = out.view();
    fwd.softmax_lse = lse.view();
    flashattn_bwd_params_init(&bwd);
    bwd.attn = hp.attn;
    bwd.out = out.view();
    bwd.softmax_lse = lse.view();
    bwd.dout = dout.view();
    bwd.dq = dq.view();
    bwd.dk = dk.view();
    bwd.dv = dv.view();
  }
};

Case bf16_case(bool varlen) {
  Case c;
  c.dtype = FLASHATTN_BFLOAT16;
  c.nheads = 4;
  c.nheads_k = 2;
  c.head_dim = 64;
  if (varlen) {
    c.seqlens_q = {3, 5};
    c.seqlens_k = {4, 6};
  }
  return c;
}

struct BadCase {
  friend void PrintTo(const BadCase& b, std::ostream* os) { *os << b.name; }
  const char* name;
  bool varlen;
  std::function<void(Valid&)> breaks;
  const char* expect;  // substring of the message
};

std::vector<BadCase> bad_cases() {
  return {
      {"q_missing", false, [](Valid& v) { v.fwd.attn.q.rank = 0; }, "invalid argument q: is required"},
      {"q_rank", false, [](Valid& v) { v.fwd.attn.q.rank = 3; }, "q: expected rank 4"},
      {"varlen_rank", true, [](Valid& v) { v.fwd.attn.k.rank = 4; }, "k: expected rank 3"},
      {"q_dtype", false, [](Valid& v) { v.fwd.attn.q.dtype = FLASHATTN_INT32; }, "q: dtype int32 is not supported"},
      {"k_dtype_mismatch", false, [](Valid& v) { v.fwd.attn.k.dtype = FLASHATTN_FLOAT16; },
       "k: dtype is float16, expected bfloat16"},
      {"out_dtype", false, [](Valid& v) { v.fwd.out.dtype = FLASHATTN_FLOAT16; }, "out: dtype is float16"},
      {"lse_dtype", false, [](Valid& v) { v.fwd.softmax_lse.dtype = FLASHATTN_BFLOAT16; }, "softmax_lse: dtype is bfloat16"},
      {"q_null", false, [](Valid& v) { v.fwd.attn.q.data = nullptr; }, "q: data pointer is null"},
      {"head_dim_not_mult8", false,
       [](Valid& v) {
         for (auto* t : {&v.fwd.attn.q, &v.fwd.attn.k, &v.fwd.attn.v, &v.fwd.out}) t->shape[3] = 60;
       },
       "q: head_dim 60 must be a multiple of 8"},
      {"head_dim_too_big", false,
       [](Valid& v) {
         for (auto* t : {&v.fwd.attn.q, &v.fwd.attn.k, &v.fwd.attn.v, &v.fwd.out}) t->shape[3] = 264;
       },
       "q: head_dim 264"},
      {"v_head_dim", false, [](Valid& v) { v.fwd.attn.v.shape[3] = 32; }, "v: head_dim 32 differs from q's 64"},
      {"v_shape", false, [](Valid& v) { v.fwd.attn.v.shape[1] = 6; }, "v: shape [2, 6, 2, 64] must equal k's"},
      {"gqa_ratio", false,
       [](Valid& v) {
         v.fwd.attn.k.shape[2] = v.fwd.attn.v.shape[2] = 3;
       },
       "k: nheads 4 of q is not a multiple of nheads_k 3"},
      {"batch_mismatch", false,
       [](Valid& v) { v.fwd.attn.k.shape[0] = v.fwd.attn.v.shape[0] = 1; }, "k: batch 1 differs from q's batch 2"},
      {"last_dim_stride", false, [](Valid& v) { v.fwd.attn.q.stride[3] = 2; }, "q: the last dim must be contiguous"},
      {"row_stride_alignment", false, [](Valid& v) { v.fwd.attn.k.stride[1] = 132; }, "k: stride 132 of dim 1 is not a multiple of 8"},
      {"negative_stride", false, [](Valid& v) { v.fwd.attn.q.stride[1] = -256; }, "q: negative stride -256"},
      {"misaligned_pointer", false,
       [](Valid& v) { v.fwd.attn.v.data = static_cast<char*>(v.fwd.attn.v.data) + 2; }, "v: data pointer is not 16-byte aligned"},
      {"out_shape", false, [](Valid& v) { v.fwd.out.shape[1] = 4; }, "out: shape [2, 4, 4, 64] must equal q's shape"},
      {"lse_shape", false, [](Valid& v) { v.fwd.softmax_lse.shape[2] = 6; }, "softmax_lse: shape [2, 4, 6], expected [2, 4, 5]"},
      {"window_left", false, [](Valid& v) { v.fwd.attn.window_size_left = -2; }, "window_size_left: must be >= -1"},
      {"window_right", false, [](Valid& v) { v.fwd.attn.window_size_right = -5; }, "window_size_right: must be >= -1"},
      {"dropout_one", false, [](Valid& v) { v.fwd.attn.dropout_p = 1.f; }, "dropout_p: must be in [0, 1), got 1"},
      {"dropout_negative", false, [](Valid& v) { v.fwd.attn.dropout_p = -0.1f; }, "dropout_p: must be in [0, 1)"},
      {"dropout_nan", false, [](Valid& v) { v.fwd.attn.dropout_p = std::nanf(""); }, "dropout_p"},
      {"softcap_negative", false, [](Valid& v) { v.fwd.attn.softcap = -1.f; }, "softcap: must be finite and >= 0"},
      {"softcap_inf", false, [](Valid& v) { v.fwd.attn.softcap = INFINITY; }, "softcap: must be finite"},
      {"scale_negative", false, [](Valid& v) { v.fwd.attn.softmax_scale = -0.5f; }, "softmax_scale: must be finite and >= 0"},
      {"is_causal", false, [](Valid& v) { v.fwd.attn.is_causal = 2; }, "is_causal: must be 0 or 1, got 2"},
      {"alibi_shape", false,
       [](Valid& v) {
         static HostTensor slopes(FLASHATTN_FLOAT32, {3});
         v.fwd.attn.alibi_slopes = slopes.view();
       },
       "alibi_slopes: shape [3], expected [4] or [2, 4]"},
      {"alibi_dtype", false,
       [](Valid& v) {
         static HostTensor slopes(FLASHATTN_BFLOAT16, {4});
         v.fwd.attn.alibi_slopes = slopes.view();
       },
       "alibi_slopes: dtype is bfloat16, expected float32"},
      {"philox_ptr_pair", false,
       [](Valid& v) {
         static uint64_t seed = 1;
         v.fwd.attn.philox_seed_ptr = &seed;
       },
       "philox_offset_ptr: philox_seed_ptr and philox_offset_ptr go together"},
      {"cu_seqlens_on_fixed", false, [](Valid& v) { v.fwd.attn.cu_seqlens_q = v.out.view(); }, "cu_seqlens_q: given to a fixed-length"},
      {"cu_seqlens_missing", true, [](Valid& v) { v.fwd.attn.cu_seqlens_k.rank = 0; }, "cu_seqlens_k: is required"},
      {"cu_seqlens_dtype", true, [](Valid& v) { v.fwd.attn.cu_seqlens_q.dtype = FLASHATTN_FLOAT32; }, "cu_seqlens_q: dtype is float32, expected int32"},
      {"cu_seqlens_batch", true, [](Valid& v) { v.fwd.attn.cu_seqlens_k.shape[0] = 2; }, "cu_seqlens_k: shape [2] must equal cu_seqlens_q's [3]"},
      {"cu_seqlens_not_monotone", true,
       [](Valid& v) {
         static int32_t cu[3] = {0, 6, 4};
         v.fwd.attn.cu_seqlens_k_host = cu;
       },
       "cu_seqlens_k: not monotone: entry 2 (4) < entry 1 (6)"},
      {"cu_seqlens_total", true,
       [](Valid& v) {
         static int32_t cu[3] = {0, 3, 7};
         v.fwd.attn.cu_seqlens_q_host = cu;
       },
       "cu_seqlens_q: ends at 7 but the packed tensor has 8 rows"},
      {"cu_seqlens_start", true,
       [](Valid& v) {
         static int32_t cu[3] = {1, 3, 8};
         v.fwd.attn.cu_seqlens_q_host = cu;
       },
       "cu_seqlens_q: must start at 0, got 1"},
      {"max_seqlen_small", true, [](Valid& v) { v.fwd.attn.max_seqlen_q = 4; }, "max_seqlen_q: 4 is less than the length 5"},
      {"max_seqlen_negative", true, [](Valid& v) { v.fwd.attn.max_seqlen_k = -1; }, "max_seqlen_k: must be >= 0"},
      {"seqused_shape", true,
       [](Valid& v) {
         static HostTensor used = int_tensor({1, 2, 3});
         v.fwd.attn.seqused_k = used.view();
       },
       "seqused_k: expected shape [2] (batch)"},
      {"seqused_range", true,
       [](Valid& v) {
         static HostTensor used = int_tensor({1, 7});
         v.fwd.attn.seqused_k = used.view();
         v.fwd.attn.seqused_k_host = reinterpret_cast<const int32_t*>(used.bytes.data());
       },
       "seqused_k: entry 1 is 7, outside [0, 6]"},
      {"varlen_lse_shape", true, [](Valid& v) { v.fwd.softmax_lse = v.dout.view(); }, "softmax_lse: dtype is bfloat16"},
      {"backend", false, [](Valid& v) { v.fwd.backend = 9; }, "backend: unknown value 9"},
      {"workspace_null", false, [](Valid& v) { v.fwd.workspace_size = 64; }, "workspace: null with workspace_size 64"},
  };
}

class Validation : public ::testing::TestWithParam<BadCase> {};

TEST_P(Validation, NamesTheArgument) {
  const BadCase& bc = GetParam();
  Valid v(bf16_case(bc.varlen));
  FwdCall call;
  const Status good = validate_fwd(v.fwd, bc.varlen, Target::kHost, &call);
  ASSERT_TRUE(good.ok()) << good.message;
  bc.breaks(v);
  const Status s = validate_fwd(v.fwd, bc.varlen, Target::kHost, &call);
  EXPECT_EQ(s.code, FLASHATTN_INVALID_ARGUMENT);
  EXPECT_NE(s.message.find(bc.expect), std::string::npos) << "message: " << s.message;
}

INSTANTIATE_TEST_SUITE_P(Fwd, Validation, ::testing::ValuesIn(bad_cases()),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(ValidationBwd, GradientTensorsAreChecked) {
  struct {
    std::function<void(Valid&)> breaks;
    const char* expect;
  } cases[] = {
      {[](Valid& v) { v.bwd.dout.rank = 0; }, "dout: is required"},
      {[](Valid& v) { v.bwd.dq.shape[1] = 3; }, "dq: shape [2, 3, 4, 64] must equal q's"},
      {[](Valid& v) { v.bwd.dk.dtype = FLASHATTN_FLOAT16; }, "dk: dtype is float16"},
      {[](Valid& v) { v.bwd.dv.shape[2] = 4; }, "dv: shape [2, 7, 4, 64] must equal v's"},
      {[](Valid& v) { v.bwd.softmax_lse.rank = 0; }, "softmax_lse: is required"},
      {[](Valid& v) { v.bwd.out.stride[3] = 3; }, "out: the last dim must be contiguous"},
      {[](Valid& v) { v.bwd.deterministic = 7; }, "deterministic: must be 0 or 1, got 7"},
      {[](Valid& v) { v.bwd.attn.window_size_left = -3; }, "window_size_left"},
      {[](Valid& v) {
         alignas(16) static char buffer[64];
         v.bwd.workspace = buffer + 8;
         v.bwd.workspace_size = 32;
       },
       "workspace: must be 16-byte aligned"},
  };
  for (auto& bc : cases) {
    Valid v(bf16_case(false));
    BwdCall call;
    ASSERT_TRUE(validate_bwd(v.bwd, false, Target::kHost, &call).ok());
    bc.breaks(v);
    const Status s = validate_bwd(v.bwd, false, Target::kHost, &call);
    EXPECT_EQ(s.code, FLASHATTN_INVALID_ARGUMENT);
    EXPECT_NE(s.message.find(bc.expect), std::string::npos) << "message: " << s.message;
  }
}

// Through the public C ABI: the message reaches the caller, the status names the kind of failure.
TEST(ValidationCApi, ErrorsReachTheCaller) {
  Valid v(bf16_case(false));
  v.fwd.attn.k.shape[2] = v.fwd.attn.v.shape[2] = 3;
  EXPECT_EQ(flashattn_fwd(&v.fwd, nullptr), FLASHATTN_INVALID_ARGUMENT);
  EXPECT_NE(std::string(flashattn_last_error()).find("nheads_k 3"), std::string::npos) << flashattn_last_error();
  EXPECT_EQ(flashattn_fwd(nullptr, nullptr), FLASHATTN_INVALID_ARGUMENT);
  EXPECT_NE(std::string(flashattn_last_error()).find("params"), std::string::npos);
  size_t bytes = 1;
  v.bwd.attn.dropout_p = 2.f;
  EXPECT_EQ(flashattn_bwd_workspace_size(&v.bwd, &bytes), FLASHATTN_INVALID_ARGUMENT);
  EXPECT_NE(std::string(flashattn_last_error()).find("dropout_p: must be in [0, 1), got 2"), std::string::npos);
  EXPECT_STREQ(flashattn_status_name(FLASHATTN_NOT_SUPPORTED), "not supported");
}

// The workspace-size queries check shapes and values, not where pointers live (the call does): the
// host pointers of a valid case pass the query, which needs no device, and still fail the call.
TEST(ValidationCApi, WorkspaceSizeAsksNoPointer) {
  Valid v(bf16_case(false));
  size_t bytes = 1;
  EXPECT_EQ(flashattn_bwd_workspace_size(&v.bwd, &bytes), FLASHATTN_OK) << flashattn_last_error();
  EXPECT_EQ(flashattn_fwd_workspace_size(&v.fwd, &bytes), FLASHATTN_OK) << flashattn_last_error();
  EXPECT_EQ(bytes, 0u);
  EXPECT_NE(flashattn_bwd(&v.bwd, nullptr), FLASHATTN_OK);
  EXPECT_NE(flashattn_fwd(&v.fwd, nullptr), FLASHATTN_OK);
}

TEST(ValidationHost, Fp64IsOnlyForTheReference) {
  Case c;
  c.dtype = FLASHATTN_FLOAT64;
  std::mt19937_64 rng(3);
  HostProblem hp(c, rng);
  Problem p;
  EXPECT_TRUE(validate_attention(hp.attn, false, Target::kHost, &p).ok());
  const Status s = validate_attention(hp.attn, false, Target::kDevice, &p);
  EXPECT_NE(s.message.find("q: dtype float64 is not supported"), std::string::npos) << s.message;
}

TEST(ValidationHost, CausalFoldsIntoTheWindow) {
  Case c;
  c.causal = true;
  c.window_left = 2;
  c.window_right = 5;
  std::mt19937_64 rng(3);
  HostProblem hp(c, rng);
  const Problem p = hp.problem();
  EXPECT_EQ(p.window_right, 0);
  EXPECT_EQ(p.window_left, 2);
  EXPECT_FLOAT_EQ(p.scale, float(1 / std::sqrt(8.0)));
}

}  // namespace
}  // namespace flashattn::test
