"""Where the time of each fused op goes on CUDA: kernels vs the rest.

    python benchmarks/profile_ops.py [--iters 20] [--rows 12]

For each op at STAR's training shapes (bench_inputs.py), forward + backward
runs `iters` times under torch.profiler; prints the wall time per iteration
(CUDA events), the summed GPU kernel time per iteration, and the profiler's
table of the busiest kernels and ops. A wall time far above the kernel time
means launches and host code, not the kernels, set the speed.
"""

from __future__ import annotations

import argparse

import torch
from torch.profiler import ProfilerActivity, profile

import star_ext
from bench_inputs import INPUTS


def make_step(op: str):
    args, kwargs = INPUTS[op]("cuda")
    fn = getattr(star_ext, op)

    def run():
        for t in args:
            t.grad = None
        out = fn(*args, **kwargs)
        out.backward(torch.ones_like(out))

    return run


def wall_ms(run, iters: int) -> float:
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(iters):
        run()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / iters


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--rows", type=int, default=12)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("profile_ops.py needs a CUDA device")
    for op in INPUTS:
        run = make_step(op)
        for _ in range(3):
            run()
        torch.cuda.synchronize()
        wall = wall_ms(run, args.iters)
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            for _ in range(args.iters):
                run()
            torch.cuda.synchronize()
        events = prof.key_averages()
        kernel_us = sum(e.self_device_time_total for e in events if e.device_type == torch.autograd.DeviceType.CUDA)
        print(
            f"\n=== {op}, forward + backward: wall {wall:.3f} ms/iter (events), "
            f"GPU kernels {kernel_us / args.iters / 1e3:.3f} ms/iter"
        )
        print(events.table(sort_by="self_device_time_total", row_limit=args.rows))


if __name__ == "__main__":
    main()
