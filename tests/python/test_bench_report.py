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


def test_rounds_flag():
    assert bench.parse_args(["--rounds", "3"]).rounds == 3
    assert bench.parse_args([]).rounds == 1


def row(impl="flashattn", ps="bwd"):
    return {"impl": impl, "pass": ps, "d": 128, "causal": False, "seqlen": 4096}


def test_one_round():
    r = bench.timed_row(row(), 2e12, {("flashattn", "bwd", False): [4.0]}, {})
    assert (r["ms"], r["tflops"]) == (4.0, 500.0)
    assert "ms_rounds" not in r and "deterministic_ms" not in r


def test_median_round():
    # The middle round, not the fastest or the mean: one slow spell moves nothing.
    r = bench.timed_row(row(), 2e12, {("flashattn", "bwd", False): [4.0, 5.0, 3.9]}, {})
    assert (r["ms"], r["tflops"], r["ms_rounds"]) == (4.0, 500.0, [4.0, 5.0, 3.9])


def test_failed_round():
    r = bench.timed_row(row("cudnn"), 2e12, {}, {("cudnn", "bwd", False): "RuntimeError: no kernel"})
    assert (r["ms"], r["tflops"], r["note"]) == (None, None, "RuntimeError: no kernel")


def test_deterministic_rounds():
    timings = {("flashattn", "bwd", False): [4.0, 4.2], ("flashattn", "bwd", True): [5.0, 4.6]}
    r = bench.timed_row(row(), 2e12, timings, {}, deterministic=True)
    assert (r["ms"], r["deterministic_ms"], r["deterministic_tflops"]) == (4.1, 4.8, 416.7)
    assert r["deterministic_ms_rounds"] == [5.0, 4.6]
    failed = bench.timed_row(row(), 2e12, {("flashattn", "bwd", False): [4.0]},
                             {("flashattn", "bwd", True): "RuntimeError: x"}, deterministic=True)
    assert (failed["ms"], failed["deterministic_note"]) == (4.0, "RuntimeError: x")
    assert "deterministic_ms" not in failed


def load_compare_grids():
    import importlib.util
    import pathlib
    path = pathlib.Path(__file__).resolve().parents[2] / "bench" / "compare_grids.py"
    spec = importlib.util.spec_from_file_location("compare_grids", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_compare_grids():
    cg = load_compare_grids()
    a = {"card": "A", "commit": "1", "rows": rows()}  # ours 400, cuDNN 320 at one point, both passes
    b_rows = rows()
    for r in b_rows:
        r["tflops"] *= 0.5 if r["impl"] == "cudnn" and r["pass"] == "fwd" else 1.0
    b_rows.append({"impl": "flashattn", "pass": "fwd", "d": 64, "causal": True, "seqlen": 512, "tflops": 1.0})
    lines = cg.compare(a, {"card": "B", "commit": "2", "rows": b_rows}, ["flashattn", "cudnn"], "cudnn")
    body = lines[3:]
    assert len(body) == 2  # only the points both files have
    fwd = next(l for l in body if l.startswith("fwd")).split()
    assert fwd[4:] == ["400.0", "400.0", "1.00", "320.0", "160.0", "0.50", "1.25", "2.50"]
