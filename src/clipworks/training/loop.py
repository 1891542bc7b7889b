"""Contrastive training of CLIP from scratch or from a checkpoint (Radford et al. 2021, Sec. 2.3-2.5).

One readable loop: setup, data, model, optimizer, resume, then steps of (batch -> symmetric contrastive loss ->
AdamW -> clamp the temperature), with periodic evaluation and atomic checkpoints. The data is either the built-in
world (`data="world"`) or the user's CSV/TSV of image paths and captions.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import math
import random
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.nn.attention import SDPBackend, sdpa_kernel
from tqdm import tqdm

from ..io.checkpoints import LATEST, load_model, load_training_state, read_checkpoint, \
    remove_stale_temporaries, resolve_checkpoint, save_checkpoint
from ..errors import ConfigError
from .config import TrainConfig
from .distributed import Process, all_reduce_mean, gather_objects, gather_with_grad, init_process
from ..io.files import write_text_atomic
from ..io.formats import registry_name
from ..hardware import keep_freed_memory, resolve_precision
from .loss import clamp_logit_scale_, local_clip_loss, tiled_local_clip_loss
from ..models.clip import CLIP, create_model
from .optim import cosine_lr, create_optimizer, set_lr

_ALL_SDPA = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.CUDNN_ATTENTION,
             SDPBackend.MATH]
Batch = tuple[torch.Tensor, torch.Tensor]  # (images (B, 3, H, W) normalised, token ids (B, L))
# batches(start_step, process) -> endless iterator of this process's share (batch_size / world_size) of each step.
# An iterator whose place in its data cannot be derived from the step (tar shards) has a `position` attribute; it is
# saved with each checkpoint and a resumed run calls batches(start_step, process, position).
Batches = Callable[..., Iterator[Batch]]


class _Towers(nn.Module):
    """Both encoders behind one forward, so DistributedDataParallel sees (and synchronises) the whole graph."""

    def __init__(self, clip: CLIP, *, lock_image: bool = False):
        super().__init__()
        self.clip = clip
        self.lock_image = lock_image

    def forward(self, images: torch.Tensor, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # A locked (frozen) image tower needs no graph: its embeddings are constants of the loss (LiT).
        with torch.no_grad() if self.lock_image else contextlib.nullcontext():
            image_emb = self.clip.encode_image(images)
        return image_emb, self.clip.encode_text(tokens)


def _forward_context(autocast: torch.autocast, device: torch.device) -> contextlib.ExitStack:
    stack = contextlib.ExitStack()
    stack.enter_context(autocast)
    # On CPU the math SDPA backend trains ~25% faster than the flash kernel at these sequence lengths (measured on
    # ViT-Tiny, bf16, batch 128: 0.51 s vs 0.65 s a step); on GPU torch picks its fused kernels.
    stack.enter_context(sdpa_kernel([SDPBackend.MATH] if device.type == "cpu" else _ALL_SDPA))
    return stack


def _sharded_loss(image_emb: torch.Tensor, text_emb: torch.Tensor, logit_scale: torch.Tensor, loss_fn: Callable,
                  process: Process) -> torch.Tensor:
    image_emb, text_emb = F.normalize(image_emb.float(), dim=-1), F.normalize(text_emb.float(), dim=-1)
    # The explicit gather: every process's embeddings, with gradients, so the whole global batch serves as
    # negatives; this process computes the loss of its own rows only (Sec. 2.5: sharded similarity).
    all_image_emb, all_text_emb = gather_with_grad(image_emb, process), gather_with_grad(text_emb, process)
    return loss_fn(image_emb, text_emb, all_image_emb, all_text_emb, logit_scale,
                   offset=process.rank * image_emb.shape[0])


def contrastive_backward(towers: nn.Module, logit_scale: nn.Parameter, images: torch.Tensor, tokens: torch.Tensor, *,
                         loss_fn: Callable, process: Process, micro_batches: int,
                         context: Callable[[], contextlib.AbstractContextManager],
                         scale_loss: Callable[[torch.Tensor], torch.Tensor] = lambda loss: loss) -> torch.Tensor:
    """Forward and backward of one step on this process's batch; returns its (detached) loss.

    With micro_batches = K > 1 (the GradCache idea, Gao et al. 2021): embed all K micro-batches without a graph,
    compute the loss over the whole batch on those cached embeddings and its gradient with respect to them, then
    re-forward each micro-batch with a graph and back-propagate the cached gradient. Every negative of the full
    batch is kept and the update equals one pass over the full batch; activation memory is that of one micro-batch.
    (ResNet BatchNorm statistics are per micro-batch, as they would be per process.) `scale_loss` is the fp16
    gradient scaler's multiplication; the cached gradients carry the scale into the re-forward.
    """
    if micro_batches == 1:
        with context():
            image_emb, text_emb = towers(images, tokens)
        loss = _sharded_loss(image_emb, text_emb, logit_scale, loss_fn, process)
        scale_loss(loss).backward()
        return loss.detach()
    chunks = list(zip(images.chunk(micro_batches), tokens.chunk(micro_batches)))
    with torch.no_grad(), context():
        cached = [towers(x, t) for x, t in chunks]
    image_emb = torch.cat([c[0] for c in cached]).float().requires_grad_()
    text_emb = torch.cat([c[1] for c in cached]).float().requires_grad_()
    scale = logit_scale.detach().requires_grad_()
    loss = _sharded_loss(image_emb, text_emb, scale, loss_fn, process)
    scale_loss(loss).backward()
    image_grads = image_emb.grad.split([len(c[0]) for c in cached])
    text_grads = text_emb.grad.split([len(c[1]) for c in cached])
    for i, (x, t) in enumerate(chunks):
        last = i == len(chunks) - 1
        # DDP synchronises gradients once, on the last micro-batch; the others accumulate locally.
        sync = contextlib.nullcontext() if last or not isinstance(towers, DDP) else towers.no_sync()
        with sync:
            with context():
                image_part, text_part = towers(x, t)
            surrogate = (image_part.float() * image_grads[i]).sum() + (text_part.float() * text_grads[i]).sum()
            if last:  # the temperature's gradient joins the synchronised backward, so DDP averages it too
                surrogate = surrogate + logit_scale * scale.grad
            surrogate.backward()
    return loss.detach()


def rng_states() -> dict[str, Any]:
    """Every random generator a run may draw from, in a form torch.load(weights_only=True) reads back."""
    np_state = np.random.get_state()
    states = {"torch": torch.get_rng_state(), "python": random.getstate(),
              "numpy": (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:])}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, *rest = states["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def truncate_log(log_file: Path, step: int) -> None:
    """Drop the records of steps after `step` (a killed run logged them; the resumed run logs them again)."""
    if not log_file.exists():
        return
    kept = []
    for line in log_file.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # the last line of a killed run may be cut short
            continue
        if record.get("step", record.get("eval", {}).get("step", 0)) <= step:
            kept.append(line + "\n")
    write_text_atomic(log_file, "".join(kept))


def _train_mode(model: CLIP, *, lock_image: bool) -> None:
    """Training mode, except a locked image tower stays in eval mode (its BatchNorm statistics must not move)."""
    model.train()
    if lock_image:
        model.visual.eval()


def _summary_writer(log_dir: Path) -> Any:
    """A TensorBoard SummaryWriter, or None (with one line saying why) when tensorboard is not installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as e:  # a dependency, but a broken or minimal environment should still train
        print(f"TensorBoard scalars skipped ({e}): `pip install tensorboard`, or pass --no-tensorboard")
        return None
    return SummaryWriter(log_dir=str(log_dir))


@dataclass
class TrainResult:
    model: CLIP
    checkpoint: Path
    history: list[dict[str, Any]]  # one entry per logged step: step, loss, lr, logit_scale, samples_per_s, data_wait_s
    evals: list[dict[str, Any]]  # one entry per evaluation: step + metrics


def train(cfg: TrainConfig, batches: Batches, evaluate: Callable[[CLIP], dict[str, float]] | None = None, *,
          progress: bool = True) -> TrainResult:
    """Train for cfg.steps optimizer steps. `batches(start_step, process)` gives an endless iterator of this
    process's batches beginning at that step, so a resumed run continues from its data position.

    Under torchrun (or SLURM) every process runs this function; cfg.batch_size is the global batch, split evenly.
    Only rank 0 writes logs, evaluates and saves checkpoints.
    """
    # ---- setup ----
    cfg.validate()
    process = init_process(cfg.device)
    if cfg.batch_size % process.world_size:
        raise ConfigError(f"--batch-size {cfg.batch_size} must be divisible by the {process.world_size} processes")
    out = Path(cfg.output_dir)
    if not cfg.resume and any((out / "checkpoints").glob("step_*")):
        raise ConfigError(f"{out} already holds checkpoints of an earlier run; pass --resume latest to continue it, "
                          "or choose another --output-dir (nothing was overwritten)")
    if process.is_main:
        out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    device = torch.device(f"cuda:{process.local_rank}" if cfg.device == "cuda" and process.distributed
                          else cfg.device)
    if device.type == "cpu":
        keep_freed_memory()  # no page faults to re-map each step's activation buffers
    precision = resolve_precision(cfg.precision, device)
    if process.is_main:
        print(f"precision {precision}")
    cfg = dataclasses.replace(cfg, precision=precision.name)  # config.json and checkpoints record what ran
    half = precision.dtype if precision.name != "fp32" else None
    autocast = torch.autocast(device.type, dtype=half or torch.float32, enabled=half is not None)
    # fp16 gradients underflow without loss scaling; bf16 has fp32's exponent range and needs none.
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.precision == "fp16")

    # ---- model and optimizer ----
    model = load_model(cfg.init, device=device) if cfg.init else create_model(cfg.model, seed=cfg.seed).to(device)
    if cfg.init:  # the checkpoint's architecture is the one trained, whatever --model said
        name = registry_name(model.config) or "custom"
        if process.is_main and name != cfg.model:
            print(f"--init {cfg.init}: training its architecture ({name}); --model {cfg.model} is ignored")
        cfg = dataclasses.replace(cfg, model=name)
    if process.is_main:  # the resolved run config, and the exact architecture (also for a custom one)
        record = {**dataclasses.asdict(cfg), "precision_reason": precision.reason,
                  "model_config": model.config.to_dict()}
        write_text_atomic(out / "config.json", json.dumps(record, indent=2))
    model.set_grad_checkpointing(cfg.grad_checkpointing)
    model.set_patch_dropout(cfg.patch_dropout)
    if cfg.lock_image:
        model.visual.requires_grad_(False)  # LiT: the optimizer never sees the image tower
    _train_mode(model, lock_image=cfg.lock_image)
    towers: nn.Module = _Towers(model, lock_image=cfg.lock_image)
    if process.distributed:
        # DDP averages gradients over ranks; with the sharded loss below that is the gradient of the global loss.
        towers = DDP(towers, device_ids=None if device.index is None else [device.index])
    optimizer = create_optimizer(model, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(cfg.beta1, cfg.beta2),
                                 eps=cfg.eps, lr_image_scale=cfg.lr_image_scale, lr_text_scale=cfg.lr_text_scale)
    start, history, evals, data_position = 0, [], [], None
    log_file = out / "log.jsonl"
    if process.is_main:
        remove_stale_temporaries(out / "checkpoints")  # what a kill during a save left behind
    resume_from = None
    if cfg.resume == "latest":
        resume_from = resolve_checkpoint(out) if (out / "checkpoints" / LATEST).exists() else None
    elif cfg.resume:
        resume_from = resolve_checkpoint(cfg.resume)
    if resume_from is not None:
        model.load_state_dict(read_checkpoint(resume_from).state)
        state = load_training_state(resume_from)
        if state is None:
            raise ConfigError(f"{resume_from} holds weights only, no optimizer state: use --init to fine-tune from it")
        scales = [group["lr_scale"] for group in optimizer.param_groups]
        optimizer.load_state_dict(state["optimizer"])
        for group, scale in zip(optimizer.param_groups, scales):  # this run's --lr-*-scale, not the saved one
            group["lr_scale"] = scale
        if state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        start = int(state["step"])
        set_rng_states(state["rng"])
        positions = state.get("data_positions")
        if positions is not None and len(positions) == process.world_size:
            data_position = positions[process.rank]
        elif positions is not None and process.is_main:
            print(f"{resume_from} was saved by {len(positions)} processes, this run has {process.world_size}: the "
                  "data order restarts from (seed, step) instead of the exact position")
        if process.is_main:
            truncate_log(log_file, start)  # steps after the checkpoint are done again
            print(f"resumed from {resume_from} at step {start}")
    else:
        if cfg.resume and process.is_main:
            print(f"--resume: no checkpoint in {out / 'checkpoints'} yet; starting from step 0")
        if log_file.exists() and process.is_main:
            log_file.unlink()  # a fresh run starts a fresh log

    def log(record: dict[str, Any]) -> None:
        if not process.is_main:
            return
        with log_file.open("a") as f:
            f.write(json.dumps(record) + "\n")

    def checkpoint(step: int, data_positions: list[Any]) -> Path:
        name = f"step_{step:07d}"
        training_state = {"optimizer": optimizer.state_dict(), "step": step, "rng": rng_states(),
                          "scaler": scaler.state_dict()}
        if any(p is not None for p in data_positions):
            training_state["data_positions"] = data_positions
        path = save_checkpoint(out / "checkpoints" / name, model, training_state=training_state,
                               metadata={"step": step, "train_config": dataclasses.asdict(cfg)})
        write_text_atomic(out / "checkpoints" / LATEST, name)  # the pointer moves only after the save is complete
        for old in sorted((out / "checkpoints").glob("step_*"))[:-cfg.keep]:
            shutil.rmtree(old, ignore_errors=True)
        return path

    # ---- steps ----
    loss_fn = local_clip_loss
    if cfg.loss_tile:
        loss_fn = functools.partial(tiled_local_clip_loss, tile=cfg.loss_tile)
    data = batches(start, process) if data_position is None else batches(start, process, data_position)
    bar = tqdm(total=cfg.steps, initial=start, disable=not (progress and process.is_main), unit="step",
               dynamic_ncols=True)
    path = None
    board = _summary_writer(out / "tensorboard") if cfg.tensorboard and process.is_main else None
    t_prev, rate = time.perf_counter(), 0.0
    for step in range(start, cfg.steps):
        t_wait = time.perf_counter()
        images, tokens = next(data)
        data_wait = time.perf_counter() - t_wait  # time blocked on the data pipeline (high: add --workers)
        images, tokens = images.to(device, non_blocking=True), tokens.to(device, non_blocking=True)
        lr = cosine_lr(step, base_lr=cfg.lr, warmup_steps=cfg.warmup_steps, total_steps=cfg.steps,
                       min_lr=cfg.min_lr)
        set_lr(optimizer, lr)
        optimizer.zero_grad(set_to_none=True)
        loss = contrastive_backward(towers, model.logit_scale, images, tokens, loss_fn=loss_fn, process=process,
                                    micro_batches=cfg.micro_batches,
                                    context=lambda: _forward_context(autocast, device), scale_loss=scaler.scale)
        loss_value = all_reduce_mean(loss.item(), process)  # the global batch's loss, the same on every process
        if not math.isfinite(loss_value):
            raise FloatingPointError(f"loss became {loss_value} at step {step}: lower --lr or set --grad-clip 1.0")
        if cfg.grad_clip > 0:
            scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        scaler.step(optimizer)  # a plain optimizer.step() unless fp16; skipped if fp16 gradients overflowed
        scaler.update()
        clamp_logit_scale_(model.logit_scale)

        now = time.perf_counter()
        step_rate = images.shape[0] * process.world_size / max(now - t_prev, 1e-9)
        rate, t_prev = (step_rate if rate == 0 else 0.9 * rate + 0.1 * step_rate), now  # smoothed samples/s
        record = {"step": step + 1, "loss": loss_value, "lr": lr, "logit_scale": model.logit_scale.exp().item(),
                  "samples_per_s": rate, "data_wait_s": data_wait}
        history.append(record)
        log(record)
        if board is not None:
            for key in ("loss", "lr", "logit_scale", "samples_per_s", "data_wait_s"):
                board.add_scalar(f"train/{key}", record[key], step + 1)
        bar.set_postfix(loss=f"{record['loss']:.3f}", samples_s=f"{record['samples_per_s']:.0f}",
                        T=f"{record['logit_scale']:.1f}")
        bar.update(1)

        # ---- evaluation ----
        done = step + 1 == cfg.steps
        due = cfg.eval_every and ((step + 1) % cfg.eval_every == 0 or done)
        if evaluate is not None and process.is_main and due:
            model.eval()
            with torch.no_grad(), autocast:
                metrics = {"step": step + 1, **evaluate(model)}
            _train_mode(model, lock_image=cfg.lock_image)
            evals.append(metrics)
            log({"eval": metrics})
            if board is not None:
                for key, value in metrics.items():
                    if key != "step" and isinstance(value, (int, float)):
                        board.add_scalar(f"eval/{key}", value, step + 1)
                board.flush()
            bar.write("eval " + " ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                                         for k, v in metrics.items()))
            t_prev = time.perf_counter()  # evaluation time is not training throughput

        # ---- checkpoint ----
        if done or (cfg.save_every and (step + 1) % cfg.save_every == 0):
            positions = gather_objects(getattr(data, "position", None), process)  # every rank's place in its data
            if process.is_main:
                path = checkpoint(step + 1, positions)
    bar.close()
    if hasattr(data, "close"):  # a generator or a shard stream: stop its DataLoader workers now
        data.close()
    if board is not None:
        board.close()
    if process.distributed:
        torch.distributed.barrier()  # the last checkpoint is on disk before any process returns
    if path is None:  # not rank 0, or resumed at or past the final step
        path = resolve_checkpoint(out)
    return TrainResult(model=model.eval(), checkpoint=path, history=history, evals=evals)
