"""The training faults of bench/hostile_probe.py: RN-Tiny trained on the built-in world through the CLI, each run a
subprocess, killed with SIGKILL between steps and at three moments of a save, given a full disk (a real small tmpfs),
a corrupt image, a checkpoint of another model or a damaged one; its DataLoader workers watched after the main
process dies. Each case states the outcome that handles it: a resume whose final weights equal an uninterrupted run's
tensor for tensor, or exit code 2 with one line on stderr and the earlier checkpoints intact.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import load_file

from clipworks import load
from clipworks.data.world import World, WorldConfig
from clipworks.io.files import free_bytes, nbytes

Result = tuple[str, bool | None, str]  # (case, handled; None: could not be run here, what happened)

STEPS = 8  # saves at 2, 4, 6, 8; the world's 48 pairs are 3 batches an epoch, so resumes land mid-epoch
ARGS = ["--model", "RN-Tiny", "--batch-size", "16", "--world-samples", "48", "--warmup-steps", "2", "--save-every",
        "2", "--keep", "2", "--eval-every", "0", "--no-tensorboard", "--precision", "fp32", "--quiet"]


class Runs:
    """Training runs of the CLI in subprocesses, all on one rendered world (cached under `tmp`), one thread each."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.env = {**os.environ, "CLIPWORKS_CACHE": str(tmp / "cache"), "OMP_NUM_THREADS": "1"}

    def start(self, out: Path, *extra: str, steps: int = STEPS) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "clipworks.cli", "train", *ARGS, "--steps", str(steps),
                                 "--output-dir", str(out), *extra], env=self.env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    def run(self, out: Path, *extra: str, steps: int = STEPS) -> subprocess.CompletedProcess:
        process = self.start(out, *extra, steps=steps)
        stdout, stderr = process.communicate(timeout=300)
        return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def kill_when(process: subprocess.Popen, moment: Callable[[], str | None], timeout: float = 120.0) -> str | None:
    """SIGKILL `process` as soon as `moment()` describes one; None if the run ended (or timed out) first."""
    deadline = time.monotonic() + timeout
    while process.poll() is None and time.monotonic() < deadline:
        if seen := moment():
            process.kill()
            process.communicate()
            return seen
        time.sleep(0.0005)
    process.kill()
    process.communicate()
    return None


def logged_steps(out: Path) -> list[int]:
    lines = (out / "log.jsonl").read_text().splitlines() if (out / "log.jsonl").exists() else []
    return [json.loads(line)["step"] for line in lines if line.endswith("}") and '"step"' in line]


def after_step(out: Path, k: int) -> Callable[[], str | None]:
    return lambda: f"killed after step {k}'s log line" if len(logged_steps(out)) >= k else None


def in_save(out: Path, step: int, phase: str) -> Callable[[], str | None]:
    """The moment `phase` of the save of `step`: its temporary directory still empty, holding the weights but not
    the training state yet, or holding the training state as it is written."""
    def moment() -> str | None:
        for tmp in (out / "checkpoints").glob(f".step_{step:07d}.tmp-*"):
            try:
                names = sorted(entry.name for entry in os.scandir(tmp))
            except FileNotFoundError:  # renamed into place between the glob and the scan
                return None
            held = {"empty": not names, "weights": bool(names) and "training_state.pt" not in names,
                    "state": "training_state.pt" in names}[phase]
            if held:
                return f"killed in the save of step {step}, its temporary holding {names or 'nothing'}"
        return None
    return moment


def same_weights(a: Path, b: Path) -> tuple[bool, str]:
    """Whether two model.safetensors hold the same tensors, bit for bit; and the first that differs."""
    x, y = load_file(a), load_file(b)
    if x.keys() != y.keys():
        return False, "different tensor names"
    differ = [name for name in x if x[name].dtype != y[name].dtype or not torch.equal(x[name], y[name])]
    return not differ, (f"{len(differ)} tensors differ, e.g. {differ[0]}" if differ else f"all {len(x)} tensors equal")


def one_line_error(result: subprocess.CompletedProcess, *words: str) -> tuple[bool, str]:
    """Exit code 2 and exactly one stderr line, `clipworks train: error: ...` holding `words`."""
    lines = result.stderr.strip().splitlines()
    ok = (result.returncode == 2 and len(lines) == 1 and lines[0].startswith("clipworks train: error: ")
          and all(w in lines[0] for w in words))
    return ok, f"exit {result.returncode}, {len(lines)} stderr lines: {(lines or [''])[-1][:150]}"


def temporaries(checkpoints: Path) -> list[str]:
    return sorted(p.name for p in checkpoints.glob(".*")) if checkpoints.is_dir() else []


# ---------------------------------------------------------------- kill -9 and resume
def kill_cases(runs: Runs, straight: Path) -> list[Result]:
    final = straight / "checkpoints" / f"step_{STEPS:07d}" / "model.safetensors"
    moments = {"kill -9 after step 1 (before the first save)": lambda out: after_step(out, 1),
               "kill -9 after step 3 (between saves)": lambda out: after_step(out, 3),
               "kill -9 after step 5 (between saves)": lambda out: after_step(out, 5),
               "kill -9 in a save: temporary just created": lambda out: in_save(out, 4, "empty"),
               "kill -9 in a save: weights started, no training state yet": lambda out: in_save(out, 6, "weights"),
               "kill -9 in the last save: training state being written": lambda out: in_save(out, 8, "state")}
    results: list[Result] = []
    for i, (name, moment) in enumerate(moments.items()):
        out = runs.tmp / f"killed{i}"
        seen = kill_when(runs.start(out), moment(out))
        if seen is None:
            results.append((name, False, "the run ended before the moment came (the probe missed it)"))
            continue
        pointer = out / "checkpoints" / "latest"
        before = pointer.read_text() if pointer.exists() else None
        latest_loads = before is None or _loads(out)
        resumed = runs.run(out, "--resume", "latest")
        if resumed.returncode != 0:
            results.append((name, False, f"{seen}; resume: exit {resumed.returncode}: {resumed.stderr[-150:]}"))
            continue
        equal, how = same_weights(final, out / "checkpoints" / f"step_{STEPS:07d}" / "model.safetensors")
        steps = logged_steps(out)
        left = temporaries(out / "checkpoints")
        said = [line for line in resumed.stdout.splitlines() if "--resume:" in line or "resumed from" in line]
        expected = "starting from step 0" if before is None else f"at step {int(before.removeprefix('step_'))}"
        ok = (latest_loads and bool(said) and expected in said[0] and equal and steps == list(range(1, STEPS + 1))
              and not left)
        results.append((name, ok, f"{seen}; latest {before} loads: {latest_loads}; {(said or ['(silent)'])[0]}; "
                                  f"{how}; each step logged once: {steps == list(range(1, STEPS + 1))}; "
                                  f"temporaries left {left}"))
    return results


def _loads(out: Path) -> bool:
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            load(out)  # which names what it loaded
        return True
    except Exception:  # noqa: BLE001 - any failure means `latest` is broken
        return False


# ---------------------------------------------------------------- a full disk
def full_disk_cases(runs: Runs) -> list[Result]:
    """A save on a 1 MB tmpfs (refused before writing), and one that runs out mid-write: free space set between what
    the save estimates it needs and what it really writes, with two valid checkpoints on the disk already."""
    names = ("full disk at the first save (1 MB tmpfs)", "full disk mid-write of the 3rd save (2 checkpoints kept)")
    results: list[Result] = []
    for name, size in zip(names, ("1m", "300m")):
        mount = runs.tmp / f"small-{size}"
        mount.mkdir()
        mounted = os.geteuid() == 0 and subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs",
                                                        str(mount)], capture_output=True).returncode == 0
        if not mounted:
            results.append((name, None, "not run: mounting a small tmpfs needs root (or mount is refused here)"))
            continue
        try:
            results.append((name, *_full_disk(runs, mount / "run", mid_write=size != "1m")))
        finally:
            subprocess.run(["umount", "-l", str(mount)], check=False)
    return results


def _full_disk(runs: Runs, out: Path, *, mid_write: bool) -> tuple[bool, str]:
    checkpoints, kept, note = out / "checkpoints", [], ""
    if mid_write:
        first = runs.run(out, "--save-every", "1", steps=2)
        if first.returncode != 0:
            return False, f"the first two steps failed: {first.stderr[-150:]}"
        kept = ["step_0000001", "step_0000002"]
        step = checkpoints / kept[-1]
        needed = nbytes(load_file(step / "model.safetensors")) + nbytes(torch.load(step / "training_state.pt",
                                                                                  weights_only=True))
        written = sum(f.stat().st_size for f in step.iterdir())
        filler = free_bytes(out) - (needed + (written - needed) // 2)  # the estimate fits, the real files do not
        with open(out.parent / "filler", "wb") as f:
            for start in range(0, filler, 2**20):
                f.write(b"\0" * min(2**20, filler - start))
        note = f"; {free_bytes(out):,} B free for a save estimated at {needed:,} B that writes {written:,} B"
        result = runs.run(out, "--save-every", "1", "--resume", "latest", steps=3)
    else:
        result = runs.run(out, steps=1)
    ok, what = one_line_error(result, f"no space left on the device of {checkpoints}")
    left = temporaries(checkpoints)
    pointer = checkpoints / "latest"
    intact = all(_loads(checkpoints / name) for name in kept) and (
        pointer.read_text() == kept[-1] if kept else not pointer.exists())
    latest = "-> " + pointer.read_text() if pointer.exists() else "absent"
    return ok and not left and intact, (f"{what}{note}; temporaries left {left}; earlier checkpoints {kept} valid, "
                                        f"latest {latest}: {intact}")


# ---------------------------------------------------------------- data, checkpoints, workers
def data_and_checkpoint_cases(runs: Runs, straight: Path) -> list[Result]:
    tmp = runs.tmp
    results: list[Result] = []
    data = World(WorldConfig()).export("train", 48, tmp / "csv")
    images = sorted((data / "images").glob("*.png"))
    images[0].write_bytes(images[0].read_bytes()[:100])  # a truncated PNG
    images[1].write_text("not an image")
    run = runs.run(tmp / "corrupt", "--data", str(data / "captions.csv"), "--workers", "2", steps=3)
    lines = (tmp / "corrupt" / "log.jsonl").read_text().splitlines() if run.returncode == 0 else ["{}"]
    report = json.loads(lines[0]).get("data", {})
    named = sorted(Path(p).name for p in report.get("skipped_images", []))
    ok = (run.returncode == 0 and named == sorted(p.name for p in images[:2]) and report.get("skipped") == 2
          and "2 unreadable ones skipped" in run.stdout)
    last = (run.stdout.strip().splitlines() or [""])[-1]
    results.append(("2 corrupt images in a CSV (2 workers)", ok, f"exit {run.returncode}; log.jsonl names {named}; "
                                                                f"{last[:90]}"))

    run = runs.run(tmp / "fresh", "--resume", "latest", steps=1)
    ok = (run.returncode == 0 and logged_steps(tmp / "fresh") == [1]
          and f"--resume: no checkpoint in {tmp / 'fresh' / 'checkpoints'} yet; starting from step 0" in run.stdout)
    said = [line for line in run.stdout.splitlines() if "--resume" in line]
    results.append(("--resume latest with no checkpoint yet", ok, f"exit {run.returncode}: {(said or [''])[0]}"))

    vit = runs.run(tmp / "vit", "--model", "ViT-Tiny", "--save-every", "1", steps=1)
    other = tmp / "vit" / "checkpoints" / "step_0000001"
    run = runs.run(tmp / "from-vit", "--resume", str(other)) if vit.returncode == 0 else vit
    results.append(("--resume a checkpoint of another model (ViT-Tiny)",
                    *one_line_error(run, str(other), "ViT-Tiny", "RN-Tiny", "--model ViT-Tiny", "--init")))

    for name, file, cut in (("--resume latest, its weights truncated", "model.safetensors", 2),
                            ("--resume latest, its training state truncated", "training_state.pt", 2)):
        out = tmp / f"damaged-{file}"
        shutil.copytree(straight, out, copy_function=os.link)  # hard links: replace the damaged file, never write it
        damaged = out / "checkpoints" / f"step_{STEPS:07d}" / file
        data_bytes = damaged.read_bytes()
        damaged.unlink()
        damaged.write_bytes(data_bytes[: len(data_bytes) // cut])
        earlier = out / "checkpoints" / f"step_{STEPS - 2:07d}"  # --keep 2: the checkpoint before, to resume instead
        words = [str(damaged)] + (["is damaged", f"--resume {earlier}"] if file == "training_state.pt" else [])
        results.append((name, *one_line_error(runs.run(out, "--resume", "latest", steps=STEPS + 2), *words)))

    results.append(workers_case(runs, data / "captions.csv"))
    modes = {p.relative_to(straight).as_posix(): oct(p.stat().st_mode & 0o777)
             for p in (straight / "checkpoints").rglob("*")}
    umask = os.umask(0)  # the runs inherited this process's umask; reading it means setting it, so set it back
    os.umask(umask)
    expected = {True: oct(0o777 & ~umask), False: oct(0o666 & ~umask)}  # a new directory's mode, a new file's
    wrong = {p: m for p, m in modes.items() if m != expected[(straight / p).is_dir()]}
    results.append((f"checkpoint directories {expected[True][2:]}, files {expected[False][2:]} (umask "
                    f"{umask:03o})", not wrong, f"{len(modes)} checked; wrong: {wrong}"))
    return results


def workers_case(runs: Runs, csv: Path) -> Result:
    """kill -9 of the main process while its two DataLoader workers run: the workers must be gone within 1 s."""
    process = runs.start(runs.tmp / "workers", "--data", str(csv), "--workers", "2", steps=200)
    deadline = time.monotonic() + 120
    while not logged_steps(runs.tmp / "workers") and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    children = [pid for pid in _pids() if _stat(pid).get("ppid") == process.pid]
    process.kill()
    killed = time.monotonic()
    process.communicate()
    alive = list(children)
    while alive and time.monotonic() - killed < 5:
        alive = [pid for pid in alive if _stat(pid).get("state") not in (None, "Z")]  # a zombie has exited
        time.sleep(0.01)
    seconds = time.monotonic() - killed
    ok = len(children) == 2 and not alive and seconds <= 1.0
    return ("DataLoader workers after kill -9 of the main process", ok,
            f"{len(children)} workers; {'all gone' if not alive else f'{len(alive)} alive'} {seconds:.2f} s after")


def _pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def _stat(pid: int) -> dict[str, object]:
    """A process's state letter and parent pid from /proc/PID/stat; {} once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return {}
    return {"state": fields[0], "ppid": int(fields[1])}


def training_cases(tmp: Path) -> list[Result]:
    runs = Runs(tmp / "training")
    runs.tmp.mkdir()
    straight = runs.tmp / "straight"
    run = runs.run(straight)
    if run.returncode != 0:
        return [("uninterrupted reference run", False, f"exit {run.returncode}: {run.stderr[-200:]}")]
    return kill_cases(runs, straight) + full_disk_cases(runs) + data_and_checkpoint_cases(runs, straight)
