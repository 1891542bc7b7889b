"""What the device computes fast, and the precision and kernels chosen from it.

CPUs come in two classes that matter here: AVX-512 with native bf16 (AVX512-BF16 or AMX), where bf16 matmuls run
faster than fp32, and everything else (AVX2: Intel Core since Alder Lake, AMD before Zen 4), where bf16 is
emulated and many times *slower* than fp32 (bench/RESULTS.md has the figures for both). So `--precision auto`, the
default everywhere, is bf16 only where it is native, and each oneDNN fast path is switched on only for the classes
where it measured faster (`fast_paths`).

The CPU is read once from torch (`torch.backends.cpu.get_cpu_capability()`, which honours ATEN_CPU_CAPABILITY) and
oneDNN's ISA cap (ONEDNN_MAX_CPU_ISA / DNNL_MAX_CPU_ISA), so `ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2` makes
an AVX-512 machine choose as an AVX2 one does. Tests inject a CPU with `simulate_cpu`.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import functools
import os
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .errors import ConfigError, user_stacklevel

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}

# oneDNN ISA caps below which bf16 has no native dot product (values as oneDNN spells them, upper case).
_ONEDNN_CAPS_WITHOUT_BF16 = {"SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI"}


class PrecisionWarning(UserWarning):
    """A precision that runs, but far slower than another would on this device."""


@dataclass(frozen=True)
class CPU:
    capability: str  # torch's kernel class: "AVX512", "AVX2", "DEFAULT", ...
    native_bf16: bool  # bf16 dot products in hardware (AVX512-BF16 or AMX), and oneDNN allowed to use them

    @property
    def label(self) -> str:
        """How speed figures name this class: "AVX512 with native bf16", "AVX2"."""
        return f"{self.capability} with native bf16" if self.native_bf16 else self.capability


@functools.cache
def _detected_cpu() -> CPU:
    capability = torch.backends.cpu.get_cpu_capability()
    has_bf16 = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    cap = (os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or "").upper()
    return CPU(capability, has_bf16 and capability.startswith("AVX512") and cap not in _ONEDNN_CAPS_WITHOUT_BF16)


_simulated: list[CPU] = []


def cpu() -> CPU:
    """This machine's CPU class (or the one `simulate_cpu` put in place)."""
    return _simulated[-1] if _simulated else _detected_cpu()


@contextlib.contextmanager
def simulate_cpu(capability: str, *, native_bf16: bool) -> Iterator[CPU]:
    """Make every choice in clipworks as on a CPU of this class (for tests; the kernels run are still this
    machine's)."""
    _simulated.append(CPU(capability, native_bf16))
    try:
        yield _simulated[-1]
    finally:
        _simulated.pop()


@dataclass(frozen=True)
class Precision:
    name: str  # "fp32", "bf16" or "fp16"
    reason: str  # why, for the run's plan line

    @property
    def dtype(self) -> torch.dtype:
        return DTYPES[self.name]

    def __str__(self) -> str:
        return f"{self.name}: {self.reason}"


def resolve_precision(requested: str, device: str | torch.device = "cpu") -> Precision:
    """The precision a run uses: `auto` becomes bf16 where `device` computes it natively (a CUDA GPU with bf16, a
    CPU with AVX512-BF16 or AMX) and fp32 elsewhere (fp16 only on a CUDA GPU without bf16). An explicit choice is
    kept, with a warning (once per process) when it will be much slower than the alternative on this device."""
    if requested not in PRECISIONS:
        raise ConfigError(f"--precision must be one of {', '.join(PRECISIONS)}, got {requested!r}")
    device = torch.device(device)
    if device.type == "cuda":
        if requested != "auto":
            return Precision(requested, "as requested")
        if torch.cuda.is_bf16_supported():
            return Precision("bf16", "this GPU computes bf16 natively")
        return Precision("fp16", "this GPU has no bf16; fp16 with loss scaling")
    if device.type != "cpu":
        return Precision("fp32" if requested == "auto" else requested, f"{device.type} device")
    info = cpu()
    if requested == "auto":
        if info.native_bf16:
            return Precision("bf16", f"this CPU computes bf16 natively ({info.capability})")
        return Precision("fp32", f"this CPU has no native bf16 ({info.capability})")
    if requested == "bf16" and not info.native_bf16:
        _warn_once(f"bf16 on this CPU ({info.capability}, no native bf16) is emulated and many times slower than "
                   "fp32: use --precision auto or fp32")
        return Precision("bf16", f"as requested; emulated on this CPU ({info.capability})")
    if requested == "fp16":
        _warn_once("fp16 is meant for GPUs: on a CPU it is slow and needs loss scaling; use --precision auto")
        return Precision("fp16", "as requested; slow on a CPU")
    native = " (native on this CPU)" if requested == "bf16" else ""
    return Precision(requested, f"as requested{native}")


def resolve_dtype(dtype: torch.dtype | str | None, device: str | torch.device = "cpu") -> torch.dtype | None:
    """A torch dtype from a dtype, a precision name ("auto", "fp32", ...) or None (None stays None)."""
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    return resolve_precision(dtype, device).dtype


_warned: set[str] = set()


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        warnings.warn(message, PrecisionWarning, stacklevel=user_stacklevel())


@dataclass(frozen=True)
class FastPaths:
    """Which oneDNN paths run on this CPU class; each falls back to torch's plain op where it measured slower
    (bench/kernels.py, both classes in bench/RESULTS.md). All of them also need torch's private oneDNN ops to exist
    and compute the plain result, which layers.py and inference.py check once."""

    training_linear: bool  # fp32 Linear forward and input gradient in oneDNN instead of torch's BLAS (layers.linear)
    packed_linear: bool  # optimize_for_inference: Linear weights prepacked, QuickGELU fused as a swish post-op
    packed_conv: bool  # optimize_for_inference: ResNet convolutions prepacked with BatchNorm, ReLU, residual fused
    channels_last_resnet: bool  # ModifiedResNet runs on channels_last (NHWC) activations on CPU, training included
    fold_quick_gelu: bool  # MLP: QuickGELU's 1.702 moved onto the weights around it when rows far outnumber width
    patch_matmul: bool  # optimize_for_inference: a ViT's patch embedding as one matmul instead of a convolution
    residual_in_place: bool  # optimize_for_inference: ResNet residual sums accumulated into the residual's buffer
    conv_batch_packing: bool  # optimize_for_inference: ResNet weights packed for batches of 2+ too, not only for 1


_FAST_PATHS = {
    True: FastPaths(training_linear=True, packed_linear=True, packed_conv=True, channels_last_resnet=True,
                     fold_quick_gelu=True, patch_matmul=True, residual_in_place=True,
                     conv_batch_packing=True),  # AVX-512
    False: FastPaths(training_linear=True, packed_linear=True, packed_conv=True, channels_last_resnet=True,
                      fold_quick_gelu=True, patch_matmul=True, residual_in_place=True,
                      conv_batch_packing=True),  # AVX2
}
_forced: list[FastPaths] = []


def fast_paths() -> FastPaths:
    """The fast paths chosen for this CPU's class (or forced by `use_fast_paths`)."""
    if _forced:
        return _forced[-1]
    return _FAST_PATHS[cpu().capability.startswith("AVX512")]


@contextlib.contextmanager
def use_fast_paths(**changes: bool) -> Iterator[FastPaths]:
    """Switch fast paths on or off whatever the CPU class, e.g. `use_fast_paths(training_linear=False)` (for
    benchmarks comparing a path with its fallback, and tests)."""
    _forced.append(dataclasses.replace(fast_paths(), **changes))
    try:
        yield _forced[-1]
    finally:
        _forced.pop()


def keep_freed_memory() -> bool:
    """Make glibc's malloc keep freed memory for reuse instead of handing it back to the OS (process-wide; returns
    whether it could). A training step frees and re-allocates the same large activation buffers every step; by
    default glibc serves blocks above 32 MB with mmap and returns them on free, so every step page-faults them back
    in: ~50,000 faults a step for RN-Tiny at batch 256 on one AVX-512 machine, ~4,000 with this (12,000 and 5,000
    on the CI machine). What faults cost depends on the machine (cheap here, dear on some VMs). Linux with glibc
    only; elsewhere nothing changes."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_max = -1, -4  # mallopt parameters (malloc.h)
        return bool(libc.mallopt(m_mmap_max, 0)) and bool(libc.mallopt(m_trim_threshold, 2**31 - 1))
    except (OSError, AttributeError):  # not glibc
        return False


def onednn_available(device: torch.device, dtype: torch.dtype) -> bool:
    """Whether oneDNN's fused and prepacked ops (private torch ops: `_linear_pointwise` on plain, prepacked and
    transposed weights, `_convolution_pointwise` on prepacked kernels) serve `dtype` on `device` and compute what the
    plain ops compute. Checked once per dtype on small fixed tensors, so another torch version falls back to the
    plain ops instead of failing or differing."""
    return device.type == "cpu" and dtype in (torch.float32, torch.bfloat16) and _onednn_ops_work(dtype)


@functools.cache
def _onednn_ops_work(dtype: torch.dtype) -> bool:
    ops = ("_linear_pointwise", "_reorder_linear_weight", "_convolution_pointwise")
    if not (torch.backends.mkldnn.is_available() and all(hasattr(torch.ops.mkldnn, op) for op in ops)):
        return False
    linear = torch.ops.mkldnn._linear_pointwise
    x, w, b = (torch.linspace(-1, 1, n).to(dtype) for n in (12, 20, 5))
    x, w, g = x.view(3, 4), w.view(5, 4), torch.linspace(-1, 1, 15).to(dtype).view(3, 5)
    image = torch.linspace(-1, 1, 2 * 4 * 4).to(dtype).view(1, 2, 4, 4).contiguous(memory_format=torch.channels_last)
    kernel = torch.linspace(-1, 1, 5 * 2 * 9).to(dtype).view(5, 2, 3, 3).contiguous(memory_format=torch.channels_last)
    try:
        y = linear(x, w, b, "none", [], "")
        y_packed = linear(x, torch.ops.mkldnn._reorder_linear_weight(w), b, "none", [], "")
        grad_x = linear(g, w.t(), None, "none", [], "")  # the input gradient of a linear, as training runs it
        packed = torch._C._nn.mkldnn_reorder_conv2d_weight(kernel.to_mkldnn(), [1, 1], [1, 1], [1, 1], 1,
                                                           [1, 2, 4, 4])
        z = torch.ops.mkldnn._convolution_pointwise(image, packed, b, [1, 1], [1, 1], [1, 1], 1, "relu", [], "")
    except (RuntimeError, AttributeError, TypeError):
        return False
    tol = {"atol": 0.05, "rtol": 0.05} if dtype == torch.bfloat16 else {"atol": 1e-5, "rtol": 1e-5}
    expected = F.linear(x, w, b).float()
    return (torch.allclose(y.float(), expected, **tol) and torch.allclose(y_packed.float(), expected, **tol)
            and torch.allclose(grad_x.float(), (g @ w).float(), **tol)
            and torch.allclose(z.float(), F.relu(F.conv2d(image, kernel, b, padding=1)).float(), **tol))


def default_device() -> str:
    """Where the evaluations run when not told: the first CUDA GPU when there is one, else the CPU."""
    return "cuda" if torch.cuda.is_available() else "cpu"
