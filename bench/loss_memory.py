"""Peak memory of the contrastive loss, plain vs tiled (forward + backward), D=512 fp32, on CPU.

Each measurement runs in a fresh process and reports the growth of its peak resident memory (ru_maxrss) over the
inputs alone. Run: .venv/bin/python bench/loss_memory.py [--max-plain 16384]; results go to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import resource, sys, torch
from clipworks.training.loss import local_clip_loss, tiled_local_clip_loss
kind, b, d = sys.argv[1], int(sys.argv[2]), 512
torch.manual_seed(0)
img = torch.nn.functional.normalize(torch.randn(b, d), dim=1).requires_grad_()
txt = torch.nn.functional.normalize(torch.randn(b, d), dim=1).requires_grad_()
scale = torch.tensor(2.0, requires_grad=True)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
fn = local_clip_loss if kind == "plain" else (lambda *a, **k: tiled_local_clip_loss(*a, **k, tile=1024))
fn(img, txt, img, txt, scale, offset=0).backward()
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024)
"""


def measure(kind: str, b: int) -> float:
    out = subprocess.run([sys.executable, "-c", CHILD, kind, str(b)], capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--max-plain", type=int, default=16384, help="largest batch for the plain loss")
    args = parser.parse_args()
    rows = []
    for b in (1024, 4096, 16384, 32768):
        if b <= args.max_plain:
            plain = f"{measure('plain', b):,.0f}"
        else:
            plain = f"not run (its logits alone: {b * b * 4 / 2**30:.1f} GiB)"
        rows.append(f"| {b:,} | {plain} | {measure('tiled', b):,.0f} |")
        print(rows[-1], flush=True)
    table = "\n".join(["| batch | plain loss peak MiB | tiled loss (tile 1024) peak MiB |", "|---|---|---|", *rows])
    cpu = platform.processor() or platform.machine()
    entry = (f"\n## Contrastive loss peak memory — {datetime.date.today()}, {cpu}\n\n"
             f"Forward + backward, D = 512, fp32, CPU; growth of peak RSS over the inputs "
             f"(`bench/loss_memory.py`).\n\n{table}\n")
    results = Path(__file__).with_name("RESULTS.md")
    if not results.exists():
        results.write_text("# clipworks benchmark results\n\nAppended by the scripts in bench/.\n")
    with results.open("a") as f:
        f.write(entry)
    print(entry)


if __name__ == "__main__":
    main()
