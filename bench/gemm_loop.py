"""bf16 GEMM 8192^3 in a loop for a few seconds (the same-run rate of the peer grid), for
scripts/clocks: python3 bench/gemm_loop.py [seconds]"""
import sys
import time

import torch

a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
b = torch.randn_like(a)
for _ in range(10):
    a @ b
torch.cuda.synchronize()
start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
calls, t0 = 0, time.time()
start.record()
while time.time() - t0 < float(sys.argv[1] if len(sys.argv) > 1 else 4):
    for _ in range(20):
        a @ b
    calls += 20
    torch.cuda.synchronize()
end.record()
torch.cuda.synchronize()
tflops = calls * 2 * 8192**3 / (start.elapsed_time(end) * 1e-3) / 1e12
print(f"gemm 8192^3 bf16: {tflops:.1f} TFLOP/s over {calls} calls")
