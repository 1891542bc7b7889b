"""Contrastive training of CLIP from scratch or from a checkpoint (Radford et al. 2021, Sec. 2.3-2.5).

`train` reads as its steps: set up the process, device and precision; build the model and optimizer; restore from a
checkpoint when resuming (training/state.py); then per step fetch a batch, take an optimizer step (symmetric
contrastive loss, training/step.py -> AdamW -> clamp the temperature), log it, evaluate when due, and save a
checkpoint (rotating out old ones) when due. The data is either the built-in world (`data="world"`) or the user's
CSV/TSV of image paths and captions or tar shards, behind `batches`.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import json
import math
import os
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm import tqdm

from ..data.batches import Batch, Batches
from ..distributed import Process, all_reduce_mean, gather_objects, init_process
from ..errors import ConfigError
from ..evaluation.evaluators import Evaluator
from ..hardware import Precision, keep_freed_memory, resolve_precision
from ..io.checkpoints import load_model, resolve_checkpoint
from ..io.files import append_whole, write_text_atomic
from ..models.clip import CLIP, create_model
from ..models.configs import registry_name
from .config import TrainConfig
from .loss import clamp_logit_scale_, local_clip_loss, tiled_local_clip_loss
from .optim import cosine_lr, create_optimizer, set_lr
from .state import LOG_FILE, restore, save_and_rotate
from .step import Towers, contrastive_backward, forward_context


@dataclass
class TrainResult:
    """What a run returns: the trained model (in eval mode), its last checkpoint, and what it logged."""

    model: CLIP
    checkpoint: Path
    history: list[dict[str, Any]]  # one entry per logged step: step, loss, lr, logit_scale, samples_per_s, data_wait_s
    evals: list[dict[str, Any]]  # one entry per evaluation: step + metrics
    # What the data source reported (e.g. images skipped as unreadable); for a stream (tar shards), "skipped" counts
    # the bad samples and shards in the batches trained on, and log.jsonl's step records list them.
    data: dict[str, Any] | None = None


def train(cfg: TrainConfig, batches: Batches, evaluate: Evaluator | None = None, *,
          zeroshot: Evaluator | None = None, progress: bool = True,
          data_report: dict[str, Any] | None = None) -> TrainResult:
    """Train for cfg.steps optimizer steps. `batches(start_step, process)` gives an endless iterator of this
    process's batches beginning at that step, so a resumed run continues from its data position. `evaluate` runs
    every cfg.eval_every steps, `zeroshot` (--zeroshot-data) every cfg.zeroshot_every (0: with `evaluate`); the
    metrics of a step go to one evaluation record.

    Under torchrun (or SLURM) every process runs this function; cfg.batch_size is the global batch, split evenly.
    Only rank 0 writes logs, evaluates and saves checkpoints.
    """
    cfg, process, device, precision = _setup(cfg)
    run = _build(cfg, process, device, precision)
    start, position = restore(run.model, run.optimizer, run.scaler, resume=run.cfg.resume, out=run.out,
                              process=run.process)
    data = batches(start, run.process) if position is None else batches(start, run.process, position)
    logbook = _Logbook.open(run, start, progress=progress)
    if data_report is not None:
        logbook.data(data_report, write=start == 0)  # a resumed run's log already holds it
    checkpoint = None
    for step in range(start, run.cfg.steps):
        images, tokens, data_wait = _fetch(data, run.device)
        loss, lr = _optimizer_step(run, images, tokens, step)
        done = step + 1  # logs, evaluations and checkpoints count the optimizer steps done
        logbook.step(done, loss, lr, run.model.logit_scale.exp().item(),
                     samples=images.shape[0] * run.process.world_size, data_wait=data_wait,
                     skipped=_skipped(data, run.process))
        last = done == run.cfg.steps
        due = [e for e, every in ((evaluate, run.cfg.eval_every),
                                  (zeroshot, run.cfg.zeroshot_every or run.cfg.eval_every))
               if e is not None and _due(every, done, final=last)]
        if due and run.process.is_main:
            logbook.evaluation(_evaluate(run, due, done))
        if _due(run.cfg.save_every, done, final=last) or last:  # the last step always saves
            checkpoint = _save(run, data, done)
    logbook.close()
    return _finish(run, data, checkpoint, logbook)


@dataclass
class _Run:
    """What the steps of a run share: its settings, process, model and optimizer."""

    cfg: TrainConfig  # as resolved: the precision that runs, --init's architecture as the model
    process: Process
    device: torch.device
    model: CLIP
    towers: nn.Module  # the model's two encoders, wrapped in DistributedDataParallel when there are processes
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler  # fp16's loss scaling; a pass-through otherwise
    autocast: torch.autocast
    loss_fn: Callable  # local_clip_loss, or its tiled version

    @property
    def out(self) -> Path:
        return Path(self.cfg.output_dir)


def refuse_to_overwrite(cfg: TrainConfig) -> None:
    """A fresh run (no --resume) never writes over the checkpoints of an earlier run in its output directory."""
    out = Path(cfg.output_dir)
    if not cfg.resume and any((out / "checkpoints").glob("step_*")):
        raise ConfigError(f"{out} already holds checkpoints of an earlier run; pass --resume latest to continue it, "
                          "or choose another --output-dir (nothing was overwritten)")


def _setup(cfg: TrainConfig) -> tuple[TrainConfig, Process, torch.device, Precision]:
    """Check the settings, join the processes of the run, seed, and choose the device and precision."""
    cfg.validate()
    process = init_process(cfg.device)
    if cfg.batch_size % process.world_size:
        raise ConfigError(f"--batch-size {cfg.batch_size} must be divisible by the {process.world_size} processes")
    out = Path(cfg.output_dir)
    refuse_to_overwrite(cfg)
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
    return cfg, process, device, precision


def _build(cfg: TrainConfig, process: Process, device: torch.device, precision: Precision) -> _Run:
    """The model (random, or --init's weights and architecture), set up for training, and its optimizer; rank 0
    records the resolved run config in config.json."""
    half = precision.dtype if precision.name != "fp32" else None
    autocast = torch.autocast(device.type, dtype=half or torch.float32, enabled=half is not None)
    # fp16 gradients underflow without loss scaling; bf16 has fp32's exponent range and needs none.
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.precision == "fp16")
    model = load_model(cfg.init, device=device) if cfg.init else create_model(cfg.model, seed=cfg.seed).to(device)
    if cfg.init:  # the checkpoint's architecture is the one trained, whatever --model said
        name = registry_name(model.config) or "custom"
        if process.is_main and name != cfg.model:
            print(f"--init {cfg.init}: training its architecture ({name}); --model {cfg.model} is ignored")
        cfg = dataclasses.replace(cfg, model=name)
    if process.is_main:  # the resolved run config, and the exact architecture (also for a custom one)
        record = {**dataclasses.asdict(cfg), "precision_reason": precision.reason,
                  "model_config": model.config.to_dict()}
        write_text_atomic(Path(cfg.output_dir) / "config.json", json.dumps(record, indent=2))
    model.set_grad_checkpointing(cfg.grad_checkpointing)
    model.set_patch_dropout(cfg.patch_dropout)
    if cfg.lock_image:
        model.visual.requires_grad_(False)  # LiT: the optimizer never sees the image tower
    _train_mode(model, lock_image=cfg.lock_image)
    towers: nn.Module = Towers(model, lock_image=cfg.lock_image)
    if process.distributed:
        # DDP averages gradients over ranks; with the sharded loss that is the gradient of the global loss.
        towers = DDP(towers, device_ids=None if device.index is None else [device.index])
    optimizer = create_optimizer(model, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(cfg.beta1, cfg.beta2),
                                 eps=cfg.eps, lr_image_scale=cfg.lr_image_scale, lr_text_scale=cfg.lr_text_scale)
    loss_fn = functools.partial(tiled_local_clip_loss, tile=cfg.loss_tile) if cfg.loss_tile else local_clip_loss
    return _Run(cfg=cfg, process=process, device=device, model=model, towers=towers, optimizer=optimizer,
                scaler=scaler, autocast=autocast, loss_fn=loss_fn)


def _fetch(data: Iterator[Batch], device: torch.device) -> tuple[torch.Tensor, torch.Tensor, float]:
    """This process's next batch on `device`, and the seconds spent waiting for it (high: add --workers)."""
    t_wait = time.perf_counter()
    images, tokens = next(data)
    data_wait = time.perf_counter() - t_wait
    return images.to(device, non_blocking=True), tokens.to(device, non_blocking=True), data_wait


def _skipped(data: Iterator[Batch], process: Process) -> tuple[int, list[tuple[str, str]]] | None:
    """For a stream that meets its bad data as it reads (tar shards): (bad samples and shards in the batches trained
    on so far, (where, reason) of those new in this step's), over all processes. None for data whose bad images were
    counted before the first step."""
    if not hasattr(data, "take_skipped"):
        return None
    parts = gather_objects(data.take_skipped(), process)  # each rank's count and new ones
    return sum(n for n, _ in parts), [problem for _, new in parts for problem in new]


def _optimizer_step(run: _Run, images: torch.Tensor, tokens: torch.Tensor, step: int) -> tuple[float, float]:
    """Optimizer step `step` (counted from 0) on the global batch; returns its loss (the same on every process)
    and learning rate."""
    cfg = run.cfg
    lr = cosine_lr(step, base_lr=cfg.lr, warmup_steps=cfg.warmup_steps, total_steps=cfg.steps, min_lr=cfg.min_lr)
    set_lr(run.optimizer, lr)
    run.optimizer.zero_grad(set_to_none=True)
    loss = contrastive_backward(run.towers, run.model.logit_scale, images, tokens, loss_fn=run.loss_fn,
                                process=run.process, micro_batches=cfg.micro_batches,
                                context=lambda: forward_context(run.autocast, run.device),
                                scale_loss=run.scaler.scale)
    loss_value = all_reduce_mean(loss.item(), run.process)
    if not math.isfinite(loss_value):
        raise FloatingPointError(f"loss became {loss_value} at step {step}: lower --lr or set --grad-clip 1.0")
    if cfg.grad_clip > 0:
        run.scaler.unscale_(run.optimizer)  # clip the true gradients, not the scaled ones
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), cfg.grad_clip)
    run.scaler.step(run.optimizer)  # a plain optimizer.step() unless fp16; skipped if fp16 gradients overflowed
    run.scaler.update()
    clamp_logit_scale_(run.model.logit_scale)
    return loss_value, lr


def _due(every: int, done: int, *, final: bool) -> bool:
    """Whether an action every `every` steps (0: never) runs after `done` steps; when on, it also runs at the end."""
    return every > 0 and (done % every == 0 or final)


def _evaluate(run: _Run, evaluators: list[Evaluator], step: int) -> dict[str, Any]:
    """The evaluators' metrics of the model in eval mode under the run's autocast; the model returns to training."""
    run.model.eval()
    metrics: dict[str, Any] = {"step": step}
    with torch.no_grad(), run.autocast:
        for evaluate in evaluators:
            metrics.update(evaluate(run.model))
    _train_mode(run.model, lock_image=run.cfg.lock_image)
    return metrics


def _save(run: _Run, data: Iterator[Batch], step: int) -> Path | None:
    """Rank 0 saves the checkpoint of `step` and rotates out old ones; every rank gives its data position."""
    positions = gather_objects(getattr(data, "position", None), run.process)  # every rank's place in its data
    if not run.process.is_main:
        return None
    return save_and_rotate(run.cfg, run.model, run.optimizer, run.scaler, step=step, data_positions=positions)


def _finish(run: _Run, data: Iterator[Batch], checkpoint: Path | None, logbook: _Logbook) -> TrainResult:
    """Stop the data workers, wait for every process, and name the run's last checkpoint."""
    if hasattr(data, "close"):  # a generator or a shard stream: stop its DataLoader workers now
        data.close()
    if run.process.distributed:
        torch.distributed.barrier()  # the last checkpoint is on disk before any process returns
    if checkpoint is None:  # not rank 0, or resumed at or past the final step
        checkpoint = resolve_checkpoint(run.out)
    data_report = logbook.data_report
    if logbook.n_skipped is not None:  # a stream: what it skipped is known only now
        data_report = {**(data_report or {}), "skipped": logbook.n_skipped}
    return TrainResult(model=run.model.eval(), checkpoint=checkpoint, history=logbook.history, evals=logbook.evals,
                       data=data_report)


def _train_mode(model: CLIP, *, lock_image: bool) -> None:
    """Training mode, except a locked image tower stays in eval mode (its BatchNorm statistics must not move)."""
    model.train()
    if lock_image:
        model.visual.eval()


@dataclass
class _Logbook:
    """Where a run reports: every step and evaluation is kept for the caller and, on rank 0, appended to log.jsonl,
    written as TensorBoard scalars and shown on the progress bar."""

    file: Path
    main: bool  # rank 0: the only process that writes
    bar: tqdm
    board: _Board | None
    history: list[dict[str, Any]] = field(default_factory=list)
    evals: list[dict[str, Any]] = field(default_factory=list)
    last: float = field(default_factory=time.perf_counter)  # when the last step (or evaluation) ended
    rate: float = 0.0  # training samples/s, smoothed over steps
    data_report: dict[str, Any] | None = None
    n_skipped: int | None = None  # a stream's bad samples and shards in the batches trained on (None: not a stream)

    @classmethod
    def open(cls, run: _Run, start: int, *, progress: bool) -> _Logbook:
        main = run.process.is_main
        bar = tqdm(total=run.cfg.steps, initial=start, disable=not (progress and main), unit="step",
                   dynamic_ncols=True)
        board = _board(run.out / "tensorboard") if run.cfg.tensorboard and main else None
        return cls(run.out / LOG_FILE, main, bar, board)

    def step(self, step: int, loss: float, lr: float, logit_scale: float, *, samples: int, data_wait: float,
             skipped: tuple[int, list[tuple[str, str]]] | None = None) -> None:
        """The record of optimizer step `step`, which trained on `samples` (the global batch) since the last; for a
        stream, `skipped` is (its count of bad samples so far, those new in this step's batch)."""
        now = time.perf_counter()
        step_rate = samples / max(now - self.last, 1e-9)
        self.rate, self.last = (step_rate if self.rate == 0 else 0.9 * self.rate + 0.1 * step_rate), now
        record = {"step": step, "loss": loss, "lr": lr, "logit_scale": logit_scale, "samples_per_s": self.rate,
                  "data_wait_s": data_wait}
        if skipped is not None:
            self.n_skipped, new = skipped
            record["skipped"] = self.n_skipped
            if new:
                record["skipped_samples"] = [list(problem) for problem in new]
        self.history.append(record)
        self._write(record)
        if self.board is not None:
            self.board.add({f"train/{key}": record[key] for key in ("loss", "lr", "logit_scale", "samples_per_s",
                                                                    "data_wait_s")}, step)
        self.bar.set_postfix(loss=f"{loss:.3f}", samples_s=f"{self.rate:.0f}", T=f"{logit_scale:.1f}")
        self.bar.update(1)

    def data(self, report: dict[str, Any], *, write: bool) -> None:
        """What the data source found before the first step (e.g. unreadable images): a {"data": ...} record. A
        stream's bad data is met as it is read: each step's record counts it ("skipped") and lists what is new
        ("skipped_samples"), so the log and its count stay whole through a kill and a resume."""
        self.data_report = report
        if write:
            self._write({"data": report})

    def evaluation(self, metrics: dict[str, Any]) -> None:
        self.evals.append(metrics)
        self._write({"eval": metrics})
        if self.board is not None:
            self.board.add({f"eval/{key}": value for key, value in metrics.items()
                            if key != "step" and isinstance(value, (int, float))}, metrics["step"])
        self.bar.write("eval " + " ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                                          for k, v in metrics.items()))
        self.last = time.perf_counter()  # evaluation time is not training throughput

    def close(self) -> None:
        self.bar.close()

    def _write(self, record: dict[str, Any]) -> None:
        if self.main:
            append_whole(self.file, (json.dumps(record) + "\n").encode())


class _Board:
    """TensorBoard scalars: one event per step appended to an event file, whole or not at all, by the training
    thread itself. (torch's SummaryWriter writes from a thread of its own, where a full disk would print a
    traceback before the run could report it as one line.)"""

    def __init__(self, log_dir: Path) -> None:
        from tensorboard.compat.proto.event_pb2 import Event
        from tensorboard.compat.proto.summary_pb2 import Summary
        from tensorboard.summary.writer.record_writer import RecordWriter

        self._event, self._summary, self._record = Event, Summary, RecordWriter
        log_dir.mkdir(parents=True, exist_ok=True)
        number = len(list(log_dir.glob("events.out.tfevents.*")))  # a resumed run adds a file beside the old ones
        name = f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}.{os.getpid()}.{number}"
        self.file = log_dir / name
        self._append(Event(wall_time=time.time(), file_version="brain.Event:2"))

    def add(self, scalars: dict[str, float], step: int) -> None:
        if not scalars:
            return
        values = [self._summary.Value(tag=tag, simple_value=value) for tag, value in scalars.items()]
        self._append(self._event(wall_time=time.time(), step=step, summary=self._summary(value=values)))

    def _append(self, event: Any) -> None:
        buffer = io.BytesIO()
        self._record(buffer).write(event.SerializeToString())  # TFRecord framing: length, CRCs, data
        append_whole(self.file, buffer.getvalue())


def _board(log_dir: Path) -> _Board | None:
    """TensorBoard scalars in `log_dir`, or None (with one line saying why) when tensorboard is not installed."""
    try:
        return _Board(log_dir)
    except ImportError as e:  # a dependency, but a broken or minimal environment should still train
        print(f"TensorBoard scalars skipped ({e}): `pip install tensorboard`, or pass --no-tensorboard")
        return None
