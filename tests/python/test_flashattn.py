"""flashattn's Python API against torch: flash_attn semantics, gradients, packed and varlen layouts,
dropout, torch.compile, CUDA graphs and bad inputs. Runs on a CUDA device; skipped elsewhere."""
import math
import os

import pytest

torch = pytest.importorskip("torch", reason="torch is not installed (the Python tests compare against it)")
if not torch.cuda.is_available():
    pytest.skip("no CUDA device (the Python tests run on the GPU machine)", allow_module_level=True)

import flashattn  # noqa: E402
from flashattn import _ops  # noqa: E402

BF16, FP16 = torch.bfloat16, torch.float16


def ref_attention(q, k, v, causal=False, window=(-1, -1), softcap=0.0, alibi=None, scale=None, upcast=True,
                  dropout_mask=None, dropout_p=0.0):
    """Standard attention on [b, s, h, d] tensors (bottom-right causal, as flash_attn). upcast: in fp64;
    otherwise in the inputs' dtype, as torch's math attention computes it."""
    if upcast:
        q, k, v = (x.double() for x in (q, k, v))
    b, sq, h, d = q.shape
    sk, hk = k.shape[1], k.shape[2]
    k, v = (x.repeat_interleave(h // hk, dim=2) for x in (k, v))
    scale = 1.0 / math.sqrt(d) if scale is None else scale
    s = torch.einsum("bqhd,bkhd->bhqk", q, k) * scale
    if softcap > 0:
        s = softcap * torch.tanh(s / softcap)
    row = torch.arange(sq, device=q.device)[:, None]
    col = torch.arange(sk, device=q.device)[None, :]
    diag = row + sk - sq
    if alibi is not None:
        slopes = alibi.view(-1 if alibi.dim() == 2 else 1, h, 1, 1) if alibi.dim() == 2 else alibi.view(1, h, 1, 1)
        s = s - slopes.to(s.dtype) * (diag - col).abs().to(s.dtype)
    left, right = window
    if causal:
        right = 0
    mask = torch.ones(sq, sk, dtype=torch.bool, device=q.device)
    if left >= 0:
        mask &= col >= diag - left
    if right >= 0:
        mask &= col <= diag + right
    s = s.masked_fill(~mask, float("-inf"))
    p = torch.softmax(s, dim=-1).nan_to_num(0.0)
    if dropout_mask is not None:
        p = p * dropout_mask / (1 - dropout_p)
    return torch.einsum("bhqk,bkhd->bqhd", p.to(v.dtype), v)


def max_err(a, b):
    return (a.double() - b.double()).abs().max().item()


def assert_as_accurate_as_math(out, grads, ref, ref_grads, math_out, math_grads, what=""):
    """The suite's bound: our error against the fp64 reference at most 2x that of torch's math attention
    in the same dtype, plus a small slack (for gradients relative to the largest one)."""
    assert max_err(out, ref) <= 2 * max_err(math_out, ref) + 1e-3, f"{what}out"
    for name, ours, want, theirs in zip("qkv", grads, ref_grads, math_grads):
        bound = 2 * max_err(theirs, want) + 1e-3 * max(1.0, want.abs().max().item())
        assert max_err(ours, want) <= bound, f"{what}d{name}: {max_err(ours, want)} > {bound}"


def rand(*shape, dtype=BF16, grad=True):
    return torch.randn(*shape, device="cuda", dtype=dtype, requires_grad=grad)


CASES = [
    # b, sq, sk, h, hk, d, causal, window, softcap, alibi
    (2, 128, 128, 4, 4, 64, False, (-1, -1), 0.0, False),
    (2, 113, 203, 4, 2, 128, True, (-1, -1), 0.0, False),
    (1, 1023, 1023, 2, 1, 128, True, (-1, -1), 0.0, False),
    (3, 17, 1, 2, 2, 32, False, (-1, -1), 0.0, False),
    (2, 300, 257, 6, 2, 96, False, (32, 8), 0.0, True),
    (1, 256, 512, 2, 2, 256, True, (-1, -1), 30.0, False),
    (2, 200, 200, 4, 4, 40, False, (-1, -1), 0.0, False),
    (1, 77, 333, 4, 1, 192, False, (100, -1), 0.0, True),
]


@pytest.mark.parametrize("dtype", [BF16, FP16])
@pytest.mark.parametrize("case", CASES, ids=lambda c: "b{}_sq{}_sk{}_h{}_hk{}_d{}_c{}_w{}_sc{}_al{}".format(*c))
def test_matches_math_attention(case, dtype):
    b, sq, sk, h, hk, d, causal, window, softcap, alibi = case
    # A partial build (scripts/python-test's kernel set) skips what it has no kernel for, as ctest does.
    dtypes = os.environ.get("FLASHATTN_DTYPES", "fp16;bf16").split(";")
    if {BF16: "bf16", FP16: "fp16"}[dtype] not in dtypes:
        pytest.skip(f"no {dtype} kernels built (FLASHATTN_DTYPES={';'.join(dtypes)})")
    buckets = [int(x) for x in os.environ.get("FLASHATTN_HEADDIMS", "256").split(";")]
    if max(buckets) < d:
        pytest.skip(f"no built head-dim bucket takes d = {d} (FLASHATTN_HEADDIMS={';'.join(map(str, buckets))})")
    torch.manual_seed(0)
    q, k, v = rand(b, sq, h, d, dtype=dtype), rand(b, sk, hk, d, dtype=dtype), rand(b, sk, hk, d, dtype=dtype)
    slopes = torch.rand(h, device="cuda", dtype=torch.float32) * 0.3 if alibi else None
    g = torch.randn(b, sq, h, d, device="cuda", dtype=dtype)
    kw = dict(causal=causal, window=window, softcap=softcap, alibi=slopes)
    out = flashattn.flash_attn_func(q, k, v, causal=causal, window_size=window, softcap=softcap, alibi_slopes=slopes)
    q64, k64, v64 = (x.detach().double().requires_grad_() for x in (q, k, v))
    ref = ref_attention(q64, k64, v64, **kw)
    math_out = ref_attention(q, k, v, upcast=False, **kw)
    assert out.shape == q.shape and out.dtype == dtype
    grads = torch.autograd.grad(out, (q, k, v), g)
    ref_grads = torch.autograd.grad(ref, (q64, k64, v64), g.double())
    math_grads = torch.autograd.grad(math_out, (q, k, v), g)
    assert all(ours.shape == want.shape for ours, want in zip(grads, ref_grads))
    assert_as_accurate_as_math(out, grads, ref, ref_grads, math_out, math_grads)


def test_return_attn_probs_and_lse():
    q, k, v = rand(2, 100, 4, 64), rand(2, 150, 4, 64), rand(2, 150, 4, 64)
    out, lse, probs = flashattn.flash_attn_func(q, k, v, causal=True, return_attn_probs=True)
    assert probs is None and lse.shape == (2, 4, 100) and lse.dtype == torch.float32
    s = torch.einsum("bqhd,bkhd->bhqk", q.double(), k.double()) / 8.0
    row, col = torch.arange(100, device="cuda")[:, None], torch.arange(150, device="cuda")[None, :]
    s = s.masked_fill(col > row + 50, float("-inf"))
    torch.testing.assert_close(lse.double(), torch.logsumexp(s, -1), atol=2e-3, rtol=1e-3)


def test_lse_gradient_is_ignored():
    # As in flash_attn: a loss of lse alone gives zero gradients, and a loss of both the gradients
    # of out alone (deterministic: bitwise).
    q, k, v = rand(2, 100, 4, 64), rand(2, 150, 4, 64), rand(2, 150, 4, 64)
    out, lse, _ = flashattn.flash_attn_func(q, k, v, causal=True, deterministic=True, return_attn_probs=True)
    assert all(torch.count_nonzero(x) == 0 for x in torch.autograd.grad(lse.sum(), (q, k, v), retain_graph=True))
    g = torch.randn_like(out)
    both = torch.autograd.grad((out * g).sum() + lse.sum(), (q, k, v), retain_graph=True)
    alone = torch.autograd.grad(out, (q, k, v), g)
    assert all(torch.equal(a, b) for a, b in zip(both, alone))


def test_packed_variants_equal_unpacked():
    qkv = rand(2, 130, 3, 4, 64)
    out = flashattn.flash_attn_qkvpacked_func(qkv, causal=True)
    q, k, v = qkv.unbind(2)
    want = flashattn.flash_attn_func(q.contiguous(), k.contiguous(), v.contiguous(), causal=True)
    assert torch.equal(out, want)
    kv = qkv[:, :, 1:]
    assert torch.equal(flashattn.flash_attn_kvpacked_func(q, kv, causal=True), want)
    (gq,) = torch.autograd.grad(out.float().square().sum(), (qkv,))
    assert gq.shape == qkv.shape and torch.isfinite(gq).all()


@pytest.mark.parametrize("d", [64, 128])
def test_varlen_matches_each_sequence(d):
    """Each packed sequence against the fp64 attention of that sequence alone, with the bound of
    test_matches_math_attention: a key or query of another sequence leaking in would be far outside
    it. The forward is also bitwise equal to flash_attn_func on the sequence alone: both take the
    same tile (at d64 the short 64-key tile since session 32; the dense call stores O by TMA, the
    packed one from registers, the same values)."""
    torch.manual_seed(1)
    lens_q, lens_k = [37, 0, 129, 64], [50, 11, 129, 0]
    h, hk = 4, 2
    q, k, v = rand(sum(lens_q), h, d), rand(sum(lens_k), hk, d), rand(sum(lens_k), hk, d)
    starts_q = [sum(lens_q[:i]) for i in range(len(lens_q) + 1)]
    starts_k = [sum(lens_k[:i]) for i in range(len(lens_k) + 1)]
    cu_q = torch.tensor(starts_q, device="cuda", dtype=torch.int32)
    cu_k = torch.tensor(starts_k, device="cuda", dtype=torch.int32)
    g = torch.randn_like(q)
    out = flashattn.flash_attn_varlen_func(q, k, v, cu_q, cu_k, max(lens_q), max(lens_k), causal=True)
    grads = torch.autograd.grad(out, (q, k, v), g)
    for i, (lq, lk) in enumerate(zip(lens_q, lens_k)):
        sq_, sk_ = slice(starts_q[i], starts_q[i + 1]), slice(starts_k[i], starts_k[i + 1])
        if lq == 0:  # keys no query sees: no gradient
            assert (grads[1][sk_] == 0).all() and (grads[2][sk_] == 0).all()
            continue
        if lk == 0:
            assert (out[sq_] == 0).all() and (grads[0][sq_] == 0).all()
            continue
        seq = [x[s].detach().unsqueeze(0).requires_grad_() for x, s in ((q, sq_), (k, sk_), (v, sk_))]
        alone = flashattn.flash_attn_func(*(x.detach() for x in seq), causal=True)[0]
        assert torch.equal(out[sq_], alone), f"sequence {i}: packed and alone differ"
        seq64 = [x.double().detach().requires_grad_() for x in seq]
        ref = ref_attention(*seq64, causal=True)
        math_out = ref_attention(*seq, upcast=False, causal=True)
        ref_grads = [x[0] for x in torch.autograd.grad(ref, seq64, g[sq_].unsqueeze(0).double())]
        math_grads = [x[0] for x in torch.autograd.grad(math_out, seq, g[sq_].unsqueeze(0))]
        ours_grads = (grads[0][sq_], grads[1][sk_], grads[2][sk_])
        assert_as_accurate_as_math(out[sq_], ours_grads, ref[0], ref_grads, math_out[0], math_grads, f"sequence {i}: ")


def test_varlen_packed_variants():
    lens = [33, 100, 7]
    cu = torch.tensor([0, 33, 133, 140], device="cuda", dtype=torch.int32)
    qkv = rand(140, 3, 4, 64)
    out = flashattn.flash_attn_varlen_qkvpacked_func(qkv, cu, max(lens), causal=True)
    q, k, v = (x.contiguous() for x in qkv.unbind(1))
    want = flashattn.flash_attn_varlen_func(q, k, v, cu, cu, max(lens), max(lens), causal=True)
    assert torch.equal(out, want)
    assert torch.equal(flashattn.flash_attn_varlen_kvpacked_func(q, qkv[:, 1:], cu, cu, 100, 100, causal=True), want)


def test_dropout_reproducible_and_unbiased():
    q, k, v = rand(2, 256, 4, 64), rand(2, 256, 4, 64), rand(2, 256, 4, 64)
    torch.manual_seed(7)
    a = flashattn.flash_attn_func(q, k, v, dropout_p=0.3)
    torch.manual_seed(7)
    b = flashattn.flash_attn_func(q, k, v, dropout_p=0.3)
    c = flashattn.flash_attn_func(q, k, v, dropout_p=0.3)
    assert torch.equal(a, b), "same torch seed, different dropout mask"
    assert not torch.equal(a, c), "a new draw gave the same mask"
    # Uniform attention over ones: out = kept fraction / (1 - p), 1 on average.
    ones = torch.ones(4, 2048, 4, 64, device="cuda", dtype=BF16)
    zeros = torch.zeros(4, 512, 4, 64, device="cuda", dtype=BF16)
    out = flashattn.flash_attn_func(zeros, ones, ones, dropout_p=0.25)
    assert abs(out.float().mean().item() - 1.0) < 0.01
    assert out.float().std().item() > 0.005  # rows differ: elements really are dropped


def test_dropout_gradients_match_reference_backend():
    torch.manual_seed(3)
    q, k, v = rand(2, 150, 4, 64), rand(2, 170, 2, 64), rand(2, 170, 2, 64)
    g = torch.randn(2, 150, 4, 64, device="cuda", dtype=BF16)
    results = []
    for backend in ("auto", "reference"):
        _ops.set_backend(backend)
        try:
            torch.manual_seed(11)
            out = flashattn.flash_attn_func(q, k, v, dropout_p=0.2, causal=True)
            results.append((out,) + torch.autograd.grad(out, (q, k, v), g))
        finally:
            _ops.set_backend("auto")
    for ours, ref in zip(*results):
        torch.testing.assert_close(ours.float(), ref.float(), atol=3e-2, rtol=3e-2)


def test_deterministic_backward_bitwise():
    q, k, v = rand(2, 777, 8, 128), rand(2, 900, 2, 128), rand(2, 900, 2, 128)
    g = torch.randn_like(q)
    out = flashattn.flash_attn_func(q, k, v, causal=True, deterministic=True)
    first = torch.autograd.grad(out, (q, k, v), g, retain_graph=True)
    for _ in range(3):
        again = torch.autograd.grad(out, (q, k, v), g, retain_graph=True)
        assert all(torch.equal(x, y) for x, y in zip(first, again))


def test_eager_path_equals_dispatcher_op():
    # interface.py calls _ops.attention, which bypasses the dispatcher in eager mode: the same
    # kernels, so the same bits as flashattn::fwd and its registered autograd.
    q, k, v = rand(2, 300, 8, 128), rand(2, 333, 2, 128), rand(2, 333, 2, 128)
    g = torch.randn_like(q)
    args = (None, None, None, 0, 0, None, None, 0.0, 1.0 / math.sqrt(128), True, -1, -1, 0.0, False)
    eager, lse_eager = _ops.attention(q, k, v, *args)
    op, lse_op = _ops.fwd(q, k, v, *args)
    assert torch.equal(eager, op) and torch.equal(lse_eager, lse_op)
    grads_eager = torch.autograd.grad(eager, (q, k, v), g)
    grads_op = torch.autograd.grad(op, (q, k, v), g)
    assert all(torch.equal(a, b) for a, b in zip(grads_eager, grads_op))
    # Without autograd (grad mode off; inputs that require no grad) the forward alone: same bits,
    # and outputs that require no grad.
    with torch.no_grad():
        plain, lse_plain = _ops.attention(q, k, v, *args)
    assert torch.equal(plain, op) and torch.equal(lse_plain, lse_op) and not plain.requires_grad
    q2, k2, v2 = (x.detach() for x in (q, k, v))
    plain, lse_plain = _ops.attention(q2, k2, v2, *args)
    assert torch.equal(plain, op) and torch.equal(lse_plain, lse_op) and not plain.requires_grad


def test_torch_compile_fullgraph():
    q, k, v = rand(2, 200, 4, 64), rand(2, 200, 4, 64), rand(2, 200, 4, 64)

    def loss(q, k, v):
        return flashattn.flash_attn_func(q, k, v, causal=True).float().square().sum()

    compiled = torch.compile(loss, fullgraph=True)
    want = loss(q, k, v)
    got = compiled(q, k, v)
    torch.testing.assert_close(got, want)
    gw = torch.autograd.grad(want, (q, k, v))
    gg = torch.autograd.grad(compiled(q, k, v), (q, k, v))
    for a, b in zip(gg, gw):
        torch.testing.assert_close(a, b)


def test_cuda_graph_capture_and_replay():
    q, k, v = rand(2, 256, 4, 64), rand(2, 256, 4, 64), rand(2, 256, 4, 64)
    g = torch.randn_like(q)
    for p in (0.0, 0.1):
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):  # warm up outside the graph
            for _ in range(2):
                o = flashattn.flash_attn_func(q, k, v, dropout_p=p, causal=True)
                torch.autograd.grad(o, (q, k, v), g)
        torch.cuda.current_stream().wait_stream(s)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            out = flashattn.flash_attn_func(q, k, v, dropout_p=p, causal=True)
            grads = torch.autograd.grad(out, (q, k, v), g)
        graph.replay()
        torch.cuda.synchronize()
        first = (out.clone(),) + tuple(x.clone() for x in grads)
        assert all(torch.isfinite(x).all() for x in first)
        if p == 0.0:
            want = flashattn.flash_attn_func(q, k, v, causal=True)
            assert torch.equal(first[0], want)
            for x, y in zip(first[1:], torch.autograd.grad(want, (q, k, v), g)):
                torch.testing.assert_close(x, y, atol=1e-2, rtol=1e-2)
        else:
            graph.replay()
            torch.cuda.synchronize()
            assert not torch.equal(out, first[0]), "a replay must draw a new dropout mask"


def test_sdpa_entry_matches_torch_sdpa():
    torch.manual_seed(5)
    for sq, sk, causal, gqa in ((128, 128, True, False), (200, 120, True, False), (64, 300, False, True)):
        q = torch.randn(2, 8, sq, 64, device="cuda", dtype=BF16)
        k = torch.randn(2, 2 if gqa else 8, sk, 64, device="cuda", dtype=BF16)
        v = torch.randn_like(k)
        got = flashattn.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=gqa)
        want = torch.nn.functional.scaled_dot_product_attention(q.double(), k.double(), v.double(), is_causal=causal,
                                                                enable_gqa=gqa)
        torch.testing.assert_close(got.double(), want, atol=2e-2, rtol=2e-2)


def test_runs_on_the_inputs_device_and_leaves_the_current_one():
    # _C makes q's device current for the call and restores the caller's: no torch.cuda.device
    # guard in Python. With one GPU, the current device stays; with two, a call on cuda:1 from
    # cuda:0 matches the same call on cuda:0 bitwise (deterministic mode: dQ's adds in a fixed order),
    # and inputs split across devices raise naming one.
    torch.manual_seed(8)
    q, k, v = rand(2, 130, 4, 64), rand(2, 130, 4, 64), rand(2, 130, 4, 64)
    g = torch.randn_like(q)
    current = torch.cuda.current_device()
    out = flashattn.flash_attn_func(q, k, v, causal=True, deterministic=True)
    grads = torch.autograd.grad(out, (q, k, v), g)
    assert torch.cuda.current_device() == current
    if torch.cuda.device_count() < 2:
        pytest.skip("one CUDA device: the cross-device half needs two")
    other = (current + 1) % torch.cuda.device_count()
    q1, k1, v1 = (x.detach().to(other).requires_grad_() for x in (q, k, v))
    out1 = flashattn.flash_attn_func(q1, k1, v1, causal=True, deterministic=True)
    grads1 = torch.autograd.grad(out1, (q1, k1, v1), g.to(other))
    assert torch.cuda.current_device() == current
    assert out1.device.index == other and torch.equal(out1.cpu(), out.cpu())
    assert all(torch.equal(a.cpu(), b.cpu()) for a, b in zip(grads1, grads))
    with pytest.raises(ValueError, match="k: lives on device"):
        flashattn.flash_attn_func(q1.detach(), k.detach(), v1.detach())


def test_bad_inputs_raise_naming_the_argument():
    q, k, v = rand(2, 64, 4, 64, grad=False), rand(2, 64, 4, 64, grad=False), rand(2, 64, 4, 64, grad=False)
    f = flashattn.flash_attn_func
    with pytest.raises(ValueError, match="q: .*CUDA"):
        f(q.cpu(), k, v)
    with pytest.raises(TypeError, match="k: dtype"):
        f(q, k.float(), v)
    with pytest.raises(TypeError, match="q: expected a torch.Tensor"):
        f([1, 2], k, v)
    with pytest.raises(ValueError, match="k"):
        f(q, rand(2, 64, 4, 32, grad=False), v)  # head dim differs from q's
    with pytest.raises(ValueError, match="v"):
        f(q, k, rand(3, 64, 4, 64, grad=False))  # batch differs
    with pytest.raises((ValueError, NotImplementedError), match="head_dim"):
        big = rand(1, 8, 1, 512, grad=False)
        f(big, big, big)
    with pytest.raises(ValueError, match="head_dim"):
        odd = rand(1, 8, 1, 12, grad=False)
        f(odd, odd, odd)
    with pytest.raises(ValueError, match="nheads"):
        f(rand(1, 8, 3, 64, grad=False), rand(1, 8, 2, 64, grad=False), rand(1, 8, 2, 64, grad=False))
    with pytest.raises(ValueError, match="dropout_p"):
        f(q, k, v, dropout_p=1.5)
    with pytest.raises(ValueError, match="window_size"):
        f(q, k, v, window_size=(1, 2, 3))
    qv = rand(100, 4, 64, grad=False)
    with pytest.raises(TypeError, match="cu_seqlens_q"):
        cu = torch.tensor([0, 50, 100], device="cuda", dtype=torch.int64)
        flashattn.flash_attn_varlen_func(qv, qv, qv, cu, cu.int(), 50, 50)
    with pytest.raises(ValueError, match="cu_seqlens_q"):
        cpu_cu = torch.tensor([0, 50, 100], dtype=torch.int32)
        flashattn.flash_attn_varlen_func(qv, qv, qv, cpu_cu, cpu_cu.cuda(), 50, 50)
    with pytest.raises(NotImplementedError, match="block_table"):
        cu = torch.tensor([0, 50, 100], device="cuda", dtype=torch.int32)
        flashattn.flash_attn_varlen_func(qv, qv, qv, cu, cu, 50, 50, block_table=cu)
    with pytest.raises(ValueError, match="attn_mask"):
        flashattn.scaled_dot_product_attention(q, k, v, attn_mask=torch.ones(64, 64, device="cuda", dtype=torch.bool))
