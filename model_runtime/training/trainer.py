"""Training loop: procedural shapes -> PartFieldNet -> contrastive part loss.

Everything is seeded by (seed, step), so a run resumed from a checkpoint sees the same
shapes it would have seen without the interruption. A run folder holds
`checkpoint.pt` (model + optimiser + temperature + step, written atomically),
`model.safetensors` (compact fp16 export of the latest checkpoint), `log.jsonl`
and `options.json`.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..config import PartFieldConfig
from ..device import cpu_supports_bf16
from ..network import PartFieldNet
from .loss import LossConfig, Temperature, part_contrastive_loss
from .procedural import MIXES, make_shape, mix_category, sample_points

LICENCE = "GPL-3.0-or-later (our own weights, trained on procedural data; same licence as the code)"


def tiny_config() -> PartFieldConfig:
    """A very small member of the family for tests and smoke runs."""
    return dataclasses.replace(
        PartFieldConfig.small(), name="partfield-tiny", pvconv_channels=16, voxel_resolution=16,
        plane_resolution=32, unet_channels=32, unet_depth=2, transformer_width=32,
        transformer_depth=1, transformer_heads=2, transformer_mlp_ratio=2, out_channels=32,
        num_points=2048,
    )


def small_normals_config() -> PartFieldConfig:
    """`small` that also reads the surface normal at each input point (`point_normals`)."""
    return dataclasses.replace(PartFieldConfig.small(), name="partfield-small-normals", point_in_channels=9,
                               point_normals=True)


CONFIGS = {"small": PartFieldConfig.small, "small-normals": small_normals_config, "tiny": tiny_config}


@dataclass
class TrainOptions:
    out: str
    config: str = "small"
    steps: int | None = None
    minutes: float | None = None
    device: str = "auto"
    resume: bool = False
    seed: int = 0
    batch: int = 4
    n_input: int | None = None  # input points per shape (default: the config's num_points)
    n_query: int = 2048
    lr: float = 1e-3
    warmup: int = 100
    min_lr_fraction: float = 0.05
    grad_clip: float = 1.0
    checkpoint_minutes: float = 3.0
    threads: int = 1
    welded_fraction: float = 0.5  # non-organic training shapes meshed as one welded surface
    # Mixed precision for the encoder: "bf16" (autocast), "off" (fp32) or "auto" (bf16 on CUDA
    # and on CPUs with native bf16, e.g. AVX512-BF16; fp32 elsewhere). Decoding and the loss
    # stay fp32. On the 2-core dev CPU bf16 makes a step 1.2-1.3x faster (BENCHMARKS.md).
    autocast: str = "auto"
    log_every: int = 10
    loss: LossConfig = field(default_factory=LossConfig)
    # Start the network from this model file (fine-tuning; fresh optimiser). Its config must
    # equal --config's. A resumed run's checkpoint.pt takes precedence.
    init: str | None = None
    mix: str = "default"  # training categories: one of `procedural.MIXES`

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        return d


def shape_seed(seed: int, step: int, index: int, batch: int) -> int:
    """Training shape seeds: disjoint from the evaluation seeds (which start at 10**9)."""
    return (seed * 7919 + step * batch + index) % 10**9


def make_batch(seed: int, step: int, batch: int, n_input: int, n_query: int, welded_fraction: float = 0.35,
               mix: str = "default"):
    """(input points (B,N,3), their normals (B,N,3), queries (B,Q,3), labels (B,Q),
    proposals list[(P,L) bool]). `mix`: the training categories (`procedural.mix_category`)."""
    pins, nins, qs, labs, props = [], [], [], [], []
    for b in range(batch):
        s_seed = shape_seed(seed, step, b, batch)
        shape = make_shape(s_seed, mix_category(s_seed, mix), welded_fraction=welded_fraction)
        rng = np.random.default_rng([seed, step, b, 17])
        pin, nin, q, lab = sample_points(shape, n_input, n_query, rng)
        pins.append(pin)
        nins.append(nin)
        qs.append(q)
        labs.append(lab)
        props.append(torch.from_numpy(shape.proposals))
    return (torch.from_numpy(np.stack(pins)), torch.from_numpy(np.stack(nins)), torch.from_numpy(np.stack(qs)),
            torch.from_numpy(np.stack(labs)), props)


def resolve_train_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def resolve_autocast(mode: str, device: torch.device) -> bool:
    """True when the encoder should run under bf16 autocast ("auto", "bf16" or "off")."""
    if mode not in ("auto", "bf16", "off"):
        raise ValueError(f"autocast must be 'auto', 'bf16' or 'off', not {mode!r}")
    if mode != "auto":
        return mode == "bf16"
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and cpu_supports_bf16()


def lr_at(opts: TrainOptions, step: int, elapsed: float) -> float:
    """Linear warm-up, then cosine decay over the planned length (steps or minutes)."""
    if step < opts.warmup:
        return opts.lr * (step + 1) / opts.warmup
    progress = 0.0
    if opts.steps:
        progress = max(progress, step / max(opts.steps, 1))
    if opts.minutes:
        progress = max(progress, elapsed / (opts.minutes * 60.0))
    progress = min(progress, 1.0)
    f = opts.min_lr_fraction + (1 - opts.min_lr_fraction) * 0.5 * (1 + math.cos(math.pi * progress))
    return opts.lr * f


def _atomic_save(obj, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def export_compact(net: PartFieldNet, path, metadata: dict) -> Path:
    from ..checkpoint import save_compact

    meta = {"name": net.config.name, "licence": LICENCE, **metadata}
    return save_compact(path, net.state_dict(), net.config, meta)


_TRAINING_KEYS = ("model", "temperature", "optimizer", "step", "elapsed", "config")


def read_training_checkpoint(path, device="cpu") -> dict:
    """A run's checkpoint.pt, read with torch's restricted (weights_only) unpickler: tensors,
    containers and numbers only, no pickled code. CheckpointError for anything else."""
    from ..errors import CheckpointError

    path = Path(path)
    try:
        ck = torch.load(path, map_location=device, weights_only=True)
    except MemoryError:
        raise CheckpointError(f"{path.name}: not enough memory to read the training checkpoint") from None
    except Exception as exc:  # UnpicklingError (a disallowed global), BadZipFile, EOFError, OSError ...
        raise CheckpointError(
            f"{path.name}: cannot read the training checkpoint ({type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''})"
        ) from None
    if not isinstance(ck, dict) or any(k not in ck for k in _TRAINING_KEYS):
        raise CheckpointError(f"{path.name}: not a training checkpoint of this project "
                              f"(expected the entries {', '.join(_TRAINING_KEYS)})")
    try:
        PartFieldConfig.from_dict(ck["config"])
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"{path.name}: invalid network config ({exc})") from None
    return ck


def load_training_checkpoint(path, device="cpu"):
    """(network, temperature, checkpoint dict) from a run's checkpoint.pt."""
    ck = read_training_checkpoint(path, device)
    cfg = PartFieldConfig.from_dict(ck["config"])
    net = PartFieldNet(cfg)
    net.load_state_dict(ck["model"])
    temp = Temperature()
    temp.load_state_dict(ck["temperature"])
    return net, temp, ck


class Trainer:
    def __init__(self, opts: TrainOptions, log=print):
        self.opts = opts
        self.log = log
        self.out = Path(opts.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.device = resolve_train_device(opts.device)
        if self.device.type == "cpu" and opts.threads:
            torch.set_num_threads(int(opts.threads))
        self.use_bf16 = resolve_autocast(opts.autocast, self.device)
        self.cfg = CONFIGS[opts.config]()
        if opts.mix not in MIXES:
            raise ValueError(f"mix must be one of {', '.join(MIXES)}, not {opts.mix!r}")
        self.n_input = opts.n_input or self.cfg.num_points
        torch.manual_seed(opts.seed)
        self.net = PartFieldNet(self.cfg)
        initial_tau = opts.loss.initial_temperature
        self.init_info = None
        if opts.init:
            initial_tau = self._load_init(opts.init, initial_tau)
        self.net = self.net.to(self.device)
        self.temp = Temperature(initial_tau).to(self.device)
        params = list(self.net.parameters()) + list(self.temp.parameters())
        self.optim = torch.optim.Adam(params, lr=opts.lr)
        self.step = 0
        self.elapsed = 0.0
        self.history: list = []
        ck_path = self.out / "checkpoint.pt"
        if opts.resume and ck_path.exists():
            from ..errors import CheckpointError

            ck = read_training_checkpoint(ck_path, self.device)
            if ck["config"] != self.cfg.to_dict():
                raise CheckpointError(f"{ck_path}: the checkpoint's network config differs from --config {opts.config}")
            try:
                self.net.load_state_dict(ck["model"])
                self.temp.load_state_dict(ck["temperature"])
                self.optim.load_state_dict(ck["optimizer"])
                self.step = int(ck["step"])
                self.elapsed = float(ck["elapsed"])
                self.history = list(ck.get("history", []))
            except (RuntimeError, ValueError, TypeError, KeyError) as exc:
                raise CheckpointError(f"{ck_path}: the training checkpoint does not fit this run ({str(exc)[:300]})") from None
            self.log(f"resumed from {ck_path} at step {self.step} ({self.elapsed / 60:.1f} min trained)")
        (self.out / "options.json").write_text(json.dumps(opts.to_dict(), indent=2))

    def _load_init(self, path, initial_tau: float) -> float:
        """Load the network weights of a model file (fine-tuning); returns the temperature to
        start from (the file's, when its metadata has one). CheckpointError when the file's
        config is not --config's."""
        import hashlib

        from ..checkpoint import load_weights
        from ..errors import CheckpointError

        loaded = load_weights(path)
        if loaded.config.to_dict() != self.cfg.to_dict():
            diff = sorted(k for k, v in self.cfg.to_dict().items() if loaded.config.to_dict().get(k) != v)
            raise CheckpointError(f"{Path(path).name}: --init model's network config ({loaded.config.name}) differs "
                                  f"from --config {self.opts.config} ({', '.join(diff)}); fine-tuning needs the "
                                  f"same configuration")
        try:
            self.net.load_state_dict({k: v.float() for k, v in loaded.state_dict.items()})
        except RuntimeError as exc:
            raise CheckpointError(f"{Path(path).name}: --init weights do not fit the network ({str(exc)[:300]})") from None
        tau = loaded.metadata.get("temperature")
        if isinstance(tau, (int, float)) and 0.01 <= float(tau) <= 1.0:
            initial_tau = float(tau)
        digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
        self.init_info = {"path": str(path), "sha256": digest, "name": loaded.metadata.get("name", loaded.config.name),
                          "training_steps": loaded.metadata.get("training_steps")}
        self.log(f"initialised from {path} (sha256 {digest[:12]}, temperature {initial_tau:.4f})")
        return initial_tau

    def loss_on(self, batch, generator=None):
        pins, nins, qs, labs, props = batch
        pins, nins, qs, labs = pins.to(self.device), nins.to(self.device), qs.to(self.device), labs.to(self.device)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.use_bf16):
            planes = self.net.encode(pins, nins)
        feats = self.net.decode(planes.float(), qs)
        tau = self.temp()
        losses, top1 = [], []
        for b in range(feats.shape[0]):
            loss, st = part_contrastive_loss(feats[b], qs[b], labs[b], props[b], tau, self.opts.loss, generator)
            if st["proposals"]:
                losses.append(loss)
                top1.append(st["top1"])
        if not losses:
            return feats.sum() * 0.0, 0.0
        return torch.stack(losses).mean(), float(np.mean(top1))

    def train_step(self) -> dict:
        o = self.opts
        t0 = time.perf_counter()
        batch = make_batch(o.seed, self.step, o.batch, self.n_input, o.n_query, o.welded_fraction, o.mix)
        t_data = time.perf_counter() - t0
        gen = torch.Generator(device="cpu")
        gen.manual_seed(o.seed * 1_000_003 + self.step)
        lr = lr_at(o, self.step, self.elapsed)
        for g in self.optim.param_groups:
            g["lr"] = lr
        self.net.train()
        loss, top1 = self.loss_on(batch, gen)
        self.optim.zero_grad(set_to_none=True)
        loss.backward()
        if o.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.net.parameters(), o.grad_clip)
        self.optim.step()
        dt = time.perf_counter() - t0
        self.elapsed += dt
        self.step += 1
        return {"step": self.step, "loss": float(loss.detach()), "top1": top1, "tau": float(self.temp().detach()),
                "lr": lr, "sec": dt, "data_sec": t_data, "elapsed_min": self.elapsed / 60}

    def save(self) -> None:
        ck = {
            "model": self.net.state_dict(),
            "temperature": self.temp.state_dict(),
            "optimizer": self.optim.state_dict(),
            "step": self.step,
            "elapsed": self.elapsed,
            "config": self.cfg.to_dict(),
            "options": self.opts.to_dict(),
            "history": self.history,
        }
        _atomic_save(ck, self.out / "checkpoint.pt")
        export_compact(self.net, self.out / "model.safetensors", self.metadata())

    def metadata(self) -> dict:
        o = self.opts
        return {
            "training_steps": self.step,
            "training_minutes": round(self.elapsed / 60, 2),
            "training_seed": o.seed,
            "training_recipe": {"batch": o.batch, "n_input": self.n_input, "n_query": o.n_query, "lr": o.lr,
                                "loss": dataclasses.asdict(o.loss), "data": "model_runtime.training.procedural",
                                "welded_fraction": o.welded_fraction, "mix": o.mix, "warmup": o.warmup,
                                "init": self.init_info},
            "temperature": float(self.temp().detach()),
        }

    def done(self) -> bool:
        o = self.opts
        if o.steps is not None and self.step >= o.steps:
            return True
        if o.minutes is not None and self.elapsed >= o.minutes * 60:
            return True
        return False

    def run(self) -> dict:
        o = self.opts
        if o.steps is None and o.minutes is None:
            raise ValueError("give --steps or --minutes")
        last_ck = time.monotonic()
        logf = open(self.out / "log.jsonl", "a")
        window = []
        try:
            while not self.done():
                rec = self.train_step()
                window.append(rec)
                if self.step % o.log_every == 0 or self.done():
                    agg = {k: float(np.mean([r[k] for r in window])) for k in ("loss", "top1", "sec", "data_sec")}
                    line = {**rec, **{f"mean_{k}": v for k, v in agg.items()}}
                    self.history.append({"step": self.step, "loss": agg["loss"], "top1": agg["top1"]})
                    logf.write(json.dumps(line) + "\n")
                    logf.flush()
                    self.log(f"step {self.step:6d}  loss {agg['loss']:.4f}  top1 {agg['top1']:.3f}  "
                             f"tau {rec['tau']:.4f}  lr {rec['lr']:.2e}  {agg['sec']:.2f}s/step "
                             f"(data {agg['data_sec']:.2f}s)  {rec['elapsed_min']:.1f} min")
                    window = []
                if time.monotonic() - last_ck >= o.checkpoint_minutes * 60:
                    self.save()
                    last_ck = time.monotonic()
                    self.log(f"checkpoint at step {self.step}")
            self.save()
            self.log(f"done: step {self.step}, {self.elapsed / 60:.1f} min; checkpoint in {self.out}")
        finally:
            logf.close()
        return {"step": self.step, "elapsed_min": self.elapsed / 60}


def average_compact(paths, out, metadata: dict | None = None) -> Path:
    """Average the weights of several compact exports of one run (e.g. the last checkpoints
    of the cosine tail) into one compact file."""
    from ..checkpoint import load_weights, save_compact

    loaded = [load_weights(p) for p in paths]
    keys = loaded[0].state_dict.keys()
    avg = {k: torch.stack([w.state_dict[k].float() for w in loaded]).mean(0) for k in keys}
    meta = dict(loaded[-1].metadata)
    meta.pop("format", None)
    meta.pop("partfield_config", None)
    meta.update({"averaged_checkpoints": [str(Path(p).name) for p in paths], **(metadata or {})})
    return save_compact(out, avg, loaded[-1].config, meta)
