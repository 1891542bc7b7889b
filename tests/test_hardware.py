"""Precision and fast paths chosen from the CPU class (clipworks.hardware): `auto` is bf16 only where bf16 is native,
explicit choices warn where they will crawl, and each oneDNN path is on exactly for the classes the table names."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from clipworks import cli, create_model, hardware, optimize_for_inference
from clipworks.hardware import FastPaths, PrecisionWarning, onednn_available, resolve_precision, simulate_cpu
from clipworks.models import inference
from clipworks.models.inference import FrozenConv, FrozenLinear, FrozenPatchEmbedding
from clipworks.models.layers import MLP, linear

AVX2 = {"capability": "AVX2", "native_bf16": False}
AVX512_BF16 = {"capability": "AVX512", "native_bf16": True}


@pytest.fixture(autouse=True)
def fresh_warnings() -> None:
    hardware._warned.clear()  # each test sees its own first warning


def test_auto_is_fp32_without_native_bf16_and_says_why() -> None:
    with simulate_cpu(**AVX2):
        precision = resolve_precision("auto")
    assert (precision.name, precision.dtype) == ("fp32", torch.float32)
    assert str(precision) == "fp32: this CPU has no native bf16 (AVX2)"


def test_auto_is_bf16_where_the_cpu_computes_it_natively() -> None:
    with simulate_cpu(**AVX512_BF16):
        precision = resolve_precision("auto")
    assert (precision.name, precision.dtype) == ("bf16", torch.bfloat16)
    assert str(precision) == "bf16: this CPU computes bf16 natively (AVX512)"


def test_explicit_bf16_on_an_emulating_cpu_runs_but_warns_once() -> None:
    with simulate_cpu(**AVX2):
        with pytest.warns(PrecisionWarning, match="emulated and many times slower than fp32"):
            assert resolve_precision("bf16").name == "bf16"
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert resolve_precision("bf16").name == "bf16"  # the second time: no warning
    with simulate_cpu(**AVX512_BF16), warnings.catch_warnings():
        warnings.simplefilter("error")
        assert str(resolve_precision("bf16")) == "bf16: as requested (native on this CPU)"


def test_the_precision_warning_points_at_the_callers_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """However deep in clipworks the precision is resolved (here through `resolve_dtype`), the warning names the
    line outside clipworks that asked for it."""
    from clipworks import hardware

    monkeypatch.setattr(hardware, "_warned", set())
    with simulate_cpu(**AVX2), pytest.warns(PrecisionWarning) as caught:
        hardware.resolve_dtype("bf16")
    assert caught[0].filename == __file__


def test_fp16_on_a_cpu_warns_that_it_is_meant_for_gpus() -> None:
    with simulate_cpu(**AVX512_BF16), pytest.warns(PrecisionWarning, match="fp16 is meant for GPUs"):
        assert resolve_precision("fp16", "cpu").name == "fp16"


def test_an_unknown_precision_lists_the_choices() -> None:
    with pytest.raises(ValueError, match=r"--precision must be one of auto, fp32, bf16, fp16, got 'fp8'"):
        resolve_precision("fp8")


@pytest.mark.parametrize("env, capability, native", [
    ({"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}, "AVX2", False),
    ({"ATEN_CPU_CAPABILITY": "default"}, "DEFAULT", False),
])
def test_the_emulating_variables_make_any_machine_choose_as_that_class(env: dict, capability: str,
                                                                       native: bool) -> None:
    code = ("from clipworks.hardware import cpu, resolve_precision; c = cpu(); "
            "print(c.capability, c.native_bf16, resolve_precision('auto').name)")
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == [capability, str(native), "fp32"]


def test_a_onednn_isa_cap_below_bf16_turns_native_bf16_off() -> None:
    code = "from clipworks.hardware import cpu; print(cpu().native_bf16)"
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX512_CORE"},
                         capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"


# ---------------------------------------------------------------- fast paths per class
EXPECTED_PATHS = {  # the measured choices (bench/kernels.py; both classes in bench/RESULTS.md)
    "AVX512": FastPaths(training_linear=True, packed_linear=True, packed_conv=True, channels_last_resnet=True,
                        fold_quick_gelu=True, patch_matmul=True, residual_in_place=True, conv_batch_packing=True),
    "AVX2": FastPaths(training_linear=True, packed_linear=True, packed_conv=True, channels_last_resnet=True,
                      fold_quick_gelu=True, patch_matmul=True, residual_in_place=True, conv_batch_packing=True),
}


@pytest.mark.parametrize("capability", ["AVX512", "AVX2"])
def test_each_class_gets_its_measured_fast_paths(capability: str) -> None:
    with simulate_cpu(capability, native_bf16=capability == "AVX512"):
        paths = hardware.fast_paths()
        assert paths == EXPECTED_PATHS[capability]
        x, w = torch.randn(2, 8), torch.randn(4, 8, requires_grad=True)
        onednn = type(linear(x, w).grad_fn).__name__ == "_OneDNNLinearBackward"
        assert onednn == paths.training_linear
        copies = {name: optimize_for_inference(create_model(name, seed=0), torch.float32)
                  for name in ("ViT-Tiny", "RN-Tiny")}
        resnet, seen = create_model("RN-Tiny", seed=0), []
        resnet.visual.conv1.register_forward_hook(lambda module, args, out: seen.append(args[0]))
        resnet.encode_image(torch.randn(2, 3, 64, 64))
        assert seen[0].is_contiguous(memory_format=torch.channels_last) == paths.channels_last_resnet
        mlp, calls = MLP(8, 32, "quick_gelu"), []
        mlp.gelu.register_forward_hook(lambda module, args, out: calls.append(1))
        mlp(torch.randn(64, 8))  # 64 rows of width 8: the weights are far smaller than the activations
        assert calls == ([] if paths.fold_quick_gelu else [1])
    assert onednn_available(torch.device("cpu"), torch.float32)  # so the table alone decides here
    linears = [m for m in copies["ViT-Tiny"].modules() if isinstance(m, FrozenLinear)]
    convs = [m for m in copies["RN-Tiny"].modules() if isinstance(m, FrozenConv)]
    assert linears and all(m.packed == paths.packed_linear for m in linears)
    assert convs and all(m.packed == paths.packed_conv and m.in_place == paths.residual_in_place
                         and m.batch_packing == paths.conv_batch_packing for m in convs)
    assert isinstance(copies["ViT-Tiny"].visual.conv1, FrozenPatchEmbedding) == paths.patch_matmul


def test_fast_paths_can_be_forced_off_for_comparisons() -> None:
    x, w = torch.randn(2, 8), torch.randn(4, 8, requires_grad=True)
    with hardware.use_fast_paths(training_linear=False):
        assert type(linear(x, w).grad_fn).__name__ != "_OneDNNLinearBackward"
    with hardware.use_fast_paths(packed_linear=False):
        frozen = optimize_for_inference(create_model("ViT-Tiny", seed=0))
    assert not any(m.packed for m in frozen.modules() if isinstance(m, FrozenLinear))


# ---------------------------------------------------------------- where `auto` is used
@pytest.mark.parametrize("cpu_class, dtype", [(AVX2, torch.float32), (AVX512_BF16, torch.bfloat16)])
def test_optimize_for_inference_auto_follows_the_class(cpu_class: dict, dtype: torch.dtype) -> None:
    model = create_model("ViT-Tiny", seed=0)
    with simulate_cpu(**cpu_class):
        assert optimize_for_inference(model, "auto").dtype == dtype
    assert optimize_for_inference(model, "fp32").dtype == torch.float32
    assert optimize_for_inference(model).dtype == torch.float32  # None: the model's own


def test_train_records_the_resolved_precision_and_prints_why(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    args = ["train", "--model", "RN-Tiny", "--steps", "1", "--batch-size", "8", "--world-samples", "16",
            "--eval-every", "0", "--no-tensorboard", "--output-dir", str(tmp_path), "--quiet"]
    with simulate_cpu(**AVX2):
        assert cli.main(args) == 0
    assert "precision fp32: this CPU has no native bf16 (AVX2)" in capsys.readouterr().out
    record = json.loads((tmp_path / "config.json").read_text())
    assert (record["precision"], record["precision_reason"]) == ("fp32", "this CPU has no native bf16 (AVX2)")


def test_cli_precision_errors_are_one_line(tmp_path: Path) -> None:
    run = subprocess.run([sys.executable, "-m", "clipworks.cli", "train", "--precision", "fp8"], capture_output=True,
                         text=True)
    assert run.returncode == 2
    assert run.stderr.count("\n") == 1 and "invalid choice: 'fp8'" in run.stderr and "auto" in run.stderr


def test_cli_warns_in_one_line_when_bf16_is_emulated(tmp_path: Path) -> None:
    env = {**os.environ, "ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
    run = subprocess.run([sys.executable, "-m", "clipworks.cli", "train", "--model", "RN-Tiny", "--precision", "bf16",
                          "--steps", "1", "--batch-size", "4", "--world-samples", "8", "--eval-every", "0",
                          "--no-tensorboard", "--output-dir", str(tmp_path), "--quiet"],
                         env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    warning = [line for line in run.stderr.splitlines() if "warning" in line]
    assert warning == ["clipworks: warning: bf16 on this CPU (AVX2, no native bf16) is emulated and many times "
                       "slower than fp32: use --precision auto or fp32"]
    assert "precision bf16: as requested; emulated on this CPU (AVX2)" in run.stdout


def test_freed_large_buffers_are_reused_without_page_faults() -> None:
    # A training step frees and re-allocates activation buffers above glibc's largest mmap threshold (32 MB); by
    # default each one is mapped afresh and page-faulted in again, and keep_freed_memory makes malloc reuse them.
    # Tested on the mechanism itself, in a fresh process (the setting is process-wide and cannot be undone): eight
    # 64 MB buffers allocated, touched and freed, before and after. (Whole RN-Tiny steps fault 4-10x less with it,
    # but how much depends on the CPU's kernels: 2.4x was seen on CI, so no bar is set on that.)
    code = """
import resource, torch
from clipworks.hardware import keep_freed_memory
def faults():
    for _ in range(8):
        torch.empty(16 * 2**20).fill_(1.0)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(8):
        torch.empty(16 * 2**20).fill_(1.0)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
default = faults()
assert keep_freed_memory()
print(default, faults())
"""
    default, kept = map(int, subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                            check=True).stdout.split())
    # Default: 16,384 faults a buffer with 4 KB pages, at least 32 with 2 MB transparent huge pages. Kept: none.
    assert default >= 8 * 32 and kept < 8, (default, kept)


def test_optimize_for_inference_keeps_freed_memory_on_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    monkeypatch.setattr(inference, "keep_freed_memory", lambda: calls.append(1) or True)
    optimize_for_inference(create_model("RN-Tiny", seed=0), "fp32")
    assert calls == [1]
