"""What every benchmark here shares: the CPU class line, alternating median timings, and appending a dated section to
bench/RESULTS.md. Speed figures always name the CPU class they were measured on (AVX512 with native bf16, or AVX2;
see clipworks.hardware): `ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2` makes an
AVX-512 machine run the AVX2 class's kernels (`cpu_line` shows that it took effect: the class and a bf16 matmul rate).
"""

from __future__ import annotations

import datetime
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from clipworks.hardware import cpu

RESULTS = Path(__file__).with_name("RESULTS.md")
_EMULATION_VARIABLES = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS")


def matmul_rate(dtype: torch.dtype, n: int = 512, repeats: int = 10) -> float:
    """GFLOP/s of an n x n matmul in `dtype`: the quick test of whether bf16 is native (2-3x fp32) or emulated
    (~1/10 of fp32)."""
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    return 2 * n**3 / median_time(lambda: a @ b, repeats) / 1e9


def cpu_line() -> str:
    """The CPU class, whether bf16 is native, fp32/bf16 matmul rates and any class-emulating variables."""
    info = cpu()
    emulated = " ".join(f"{k}={os.environ[k]}" for k in _EMULATION_VARIABLES if k in os.environ)
    return (f"CPU class {info.label} (capability {info.capability}, native bf16 {info.native_bf16}); 512^2 matmul "
            f"fp32 {matmul_rate(torch.float32):.0f} GFLOP/s, bf16 {matmul_rate(torch.bfloat16):.1f} GFLOP/s; "
            f"{torch.get_num_threads()} threads; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
            + (f"; emulated with {emulated}" if emulated else ""))


def append_results(title: str, versions: str, intro: str, table: list[str]) -> None:
    """Append one dated section (a heading naming the CPU class, a paragraph saying how it was measured, a table) to
    RESULTS.md and print it."""
    entry = "\n".join([f"\n## {title} — {datetime.date.today()}, {cpu().label}, {platform.machine()}, {versions}",
                       "", cpu_line() + ".", "", intro, "", *table, ""])
    with RESULTS.open("a") as f:
        f.write(entry)
    print(entry)


def median_time(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up: allocator, kernels, caches
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def paired(a: Callable[[], object], b: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Median times of a and b, measured alternately (load from elsewhere on the machine hits both alike)."""
    a(), b()
    ta, tb = [], []
    for _ in range(repeats):
        for fn, out in ((a, ta), (b, tb)):
            t = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t)
    return statistics.median(ta), statistics.median(tb)


def paired_blocks(a: Callable[[], object], b: Callable[[], object], repeats: int,
                  block: int = 4) -> tuple[float, float]:
    """Median times of a and b, measured in alternating blocks of `block` calls, the first call of each block
    discarded. For two engines with thread pools of their own (ONNX Runtime and torch): each pool spins for a while
    after its call, and in `paired` that spin would run on the cores the other engine's next call needs."""
    ta, tb = [], []
    for _ in range(max(1, repeats // (block - 1))):
        for fn, out in ((a, ta), (b, tb)):
            fn()
            for _ in range(block - 1):
                t = time.perf_counter()
                fn()
                out.append(time.perf_counter() - t)
    return statistics.median(ta), statistics.median(tb)


if __name__ == "__main__":
    print(cpu_line())
