"""Fine-tuning options (LiT image-tower locking, FLIP patch dropout, per-tower learning rates, --init) and the
run's observability (TensorBoard scalars, data wait time in log.jsonl), on tiny models and synthetic batches."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from clipworks import create_model
from clipworks.distributed import Process
from clipworks.io.checkpoints import save_checkpoint
from clipworks.models.configs import CLIPConfig
from clipworks.models.vision import drop_patches
from clipworks.training.config import TrainConfig, resolve_train_config
from clipworks.training.loop import train
from clipworks.training.optim import cosine_lr, create_optimizer, set_lr


def random_batches(batch_size: int = 8, image_size: int = 64, length: int = 32):
    """Endless seeded batches of random images and captions (distinct token ids, EOT at position 10)."""

    def batches(start: int, process: Process) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        g = torch.Generator().manual_seed(start)
        share = batch_size // process.world_size
        while True:
            images = torch.randn(share, 3, image_size, image_size, generator=g)
            tokens = torch.randint(1, 49406, (share, length), generator=g)
            tokens[:, 0], tokens[:, 10], tokens[:, 11:] = 49406, 49407, 0
            yield images, tokens

    return batches


def tiny_config(tmp_path: Path, **kw) -> TrainConfig:
    base = {"steps": 3, "batch_size": 8, "lr": 1e-3, "warmup_steps": 1, "eval_every": 0, "precision": "fp32",
            "tensorboard": False, "output_dir": str(tmp_path / "run")}
    return TrainConfig(**{**base, **kw})


def test_lock_image_freezes_every_image_parameter_and_statistic(tmp_path: Path) -> None:
    before = create_model("RN-Tiny", seed=0).state_dict()  # BatchNorm tower: running statistics must not move
    result = train(tiny_config(tmp_path, model="RN-Tiny", lock_image=True), random_batches(), progress=False)
    after = result.model.state_dict()
    visual = [k for k in before if k.startswith("visual.")]
    assert any("running_mean" in k for k in visual)
    for key in visual:
        assert torch.equal(before[key], after[key]), key
    changed = [k for k in before if not k.startswith("visual.") and not torch.equal(before[k], after[k])]
    assert "text_projection" in changed and "transformer.resblocks.0.attn.in_proj_weight" in changed


def test_drop_patches_keeps_the_class_token_and_a_subset_of_patches() -> None:
    x = torch.randn(3, 1 + 64, 8)
    y = drop_patches(x, 0.75)
    assert y.shape == (3, 1 + 16, 8)  # max(1, int(64 * 0.25)) patches, as open_clip's PatchDropout
    assert torch.equal(y[:, 0], x[:, 0])
    for row in range(3):  # every kept token is one of that image's patches, none twice
        matches = (y[row, 1:, None, :] == x[row, None, 1:, :]).all(-1)  # (16, 64)
        assert (matches.sum(-1) == 1).all() and (matches.sum(0) <= 1).all()
    assert drop_patches(x, 0.999).shape[1] == 2  # at least one patch survives


def test_patch_dropout_changes_training_outputs_only() -> None:
    plain, dropped = create_model("ViT-Tiny", seed=0), create_model("ViT-Tiny", seed=0)
    dropped.set_patch_dropout(0.5)
    assert dropped.state_dict().keys() == plain.state_dict().keys()
    assert all(torch.equal(a, b) for a, b in zip(plain.state_dict().values(), dropped.state_dict().values()))
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert not torch.allclose(dropped.train().encode_image(images), plain.train().encode_image(images))
        assert torch.equal(dropped.eval().encode_image(images), plain.eval().encode_image(images))
    with pytest.raises(ValueError, match="needs a ViT image tower"):
        create_model("RN-Tiny").set_patch_dropout(0.5)
    with pytest.raises(ValueError, match="--patch-dropout needs a ViT"):
        TrainConfig(model="RN-Tiny", patch_dropout=0.5).validate()


def test_per_tower_learning_rates_follow_the_schedule_times_their_scale() -> None:
    model = create_model("ViT-Tiny", seed=0)
    optimizer = create_optimizer(model, lr=1e-3, weight_decay=0.2, betas=(0.9, 0.98), eps=1e-6,
                                 lr_image_scale=0.1, lr_text_scale=2.0)
    lr = cosine_lr(7, base_lr=1e-3, warmup_steps=4, total_steps=20)
    set_lr(optimizer, lr)
    names = {id(p): n for n, p in model.named_parameters()}
    seen = []
    for group in optimizer.param_groups:
        for p in group["params"]:
            name = names[id(p)]
            seen.append(name)
            scale = 1.0 if name == "logit_scale" else 0.1 if name.startswith("visual.") else 2.0
            assert group["lr"] == pytest.approx(lr * scale), name
            assert group["weight_decay"] == (0.2 if p.ndim >= 2 and name != "logit_scale" else 0.0), name
    assert sorted(seen) == sorted(names.values())  # every parameter in exactly one group


def test_tensorboard_scalars_and_data_wait(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = tiny_config(tmp_path, steps=2, eval_every=2, tensorboard=True)
    train(cfg, random_batches(), lambda model: {"zeroshot_colour": 0.25, "image_to_text_R@1": 0.5}, progress=False)
    records = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    steps = [r for r in records if "loss" in r]
    assert len(steps) == 2 and all(r["data_wait_s"] >= 0.0 for r in steps)
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/loss", "train/lr", "train/logit_scale", "train/samples_per_s", "train/data_wait_s",
            "eval/zeroshot_colour", "eval/image_to_text_R@1"} <= tags
    assert [e.step for e in events.Scalars("train/loss")] == [1, 2]
    assert events.Scalars("eval/zeroshot_colour")[0].value == pytest.approx(0.25)


def test_init_overrides_model_and_the_run_config_records_the_architecture(tmp_path: Path) -> None:
    source = create_model("RN-Tiny", seed=3)
    save_checkpoint(tmp_path / "rn", source)
    cfg = tiny_config(tmp_path, model="ViT-Tiny", init=str(tmp_path / "rn"), steps=1)
    assert cfg.model_config() == source.config
    result = train(cfg, random_batches(), progress=False)
    record = json.loads((tmp_path / "run" / "config.json").read_text())
    assert record["model"] == "RN-Tiny" and record["init"] == str(tmp_path / "rn")
    assert CLIPConfig.from_dict(record["model_config"]) == source.config
    assert result.model.config == source.config
    # A run's config.json is itself a valid config file: it repeats the run.
    again = resolve_train_config(config_file=tmp_path / "run" / "config.json")
    recorded_only = ("model_config", "precision_reason")
    assert dataclasses.asdict(again) == {k: v for k, v in record.items() if k not in recorded_only}
