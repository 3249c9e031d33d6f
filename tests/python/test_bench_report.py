"""The benchmark's printed table (python -m flashattn.bench): our ratio to each peer, and with --deterministic
our deterministic backward beside the default with its ratio to it. Needs neither torch nor a GPU."""
from flashattn import bench


def rows(det_tflops=None):
    out = []
    for impl, tflops in (("flashattn", 400.0), ("cudnn", 320.0)):
        for ps in ("fwd", "bwd"):
            r = {"impl": impl, "pass": ps, "d": 128, "causal": False, "seqlen": 4096, "tflops": tflops}
            if impl == "flashattn" and ps == "bwd" and det_tflops:
                r["deterministic_tflops"] = det_tflops
            out.append(r)
    return out


def line(text, ps):
    return next(l for l in text.splitlines() if l.startswith(ps)).split()


def test_ratio_to_each_peer():
    text = bench.table(rows(), ["cudnn"])
    assert line(text, "bwd")[-2:] == ["320.0", "1.25"]
    assert "det" not in text.splitlines()[1]  # no deterministic column unless a row has one


def test_deterministic_column():
    text = bench.table(rows(det_tflops=340.0), ["cudnn"])
    assert text.splitlines()[1].split()[-2:] == ["det", "/ours"]
    assert line(text, "bwd")[-4:] == ["320.0", "1.25", "340.0", "0.85"]
    assert line(text, "fwd")[-2:] == ["-", "-"]  # the forward has no deterministic mode


def test_deterministic_flag():
    assert bench.parse_args(["--deterministic"]).deterministic
    assert not bench.parse_args([]).deterministic
