"""The interaction stage: after the joint stage, train API-Net's mutual MLP alone.

Why a second stage (issue #22). On the demo, a short joint fine-tuning leaves the mutual vector
``x_m`` small: every gate ``sigmoid(x_m * x)`` sits near 0.5, the score-ranking hinge is never met and
the mechanism the app exists to show is inert. The mutual MLP touches only the pair path; the test
path is ``fc(pool(trunk(image)))``. So this stage trains ``model.mutual`` and nothing else, with the
paper's pair objective, and every test-path logit stays bit-identical to the input checkpoint's.

The recipe:

* the trunk runs once, in eval mode and without augmentation, over ``per_class`` training images
  per class (the checkpoint card's dataset and test-time preprocessing); the stage then trains on
  these cached pooled features. Augmented views would need a trunk pass per step, which is the whole
  cost of training on a CPU; the trunk is frozen, so a cached view is exactly what it would compute;
* balanced batches of ``batch_classes`` classes x ``batch_images`` images
  (:class:`~apinet.pairs.BalancedBatchSampler`), each image's intra and inter partner mined in its
  batch by :func:`~apinet.pairs.mine_pairs`, as in training;
* the project's API-Net loss (:func:`~apinet.losses.apinet_loss`: cross-entropy over the four pair
  logits + the score-ranking hinge with margin 0.05), dropout on as in training (the mutual MLP's and
  the one before the shared classifier);
* SGD with momentum 0.9 and weight decay 5e-4 on the mutual MLP's parameters only, constant learning
  rate. The classifier ``fc`` and the trunk are frozen (no gradient, no weight decay, no state).

Where it departs from the paper: the paper trains trunk, mutual MLP and classifier jointly in one
stage. This is a second stage on the pair path alone; :data:`DEPARTURE` says so in every card it writes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["DEPARTURE", "InteractionConfig", "InteractionResult", "cache_pooled_features", "feature_cache_path",
           "freeze_all_but_mutual", "load_cached_features", "run_interaction_stage", "save_cached_features",
           "train_interaction"]

#: The card's plain statement of where this recipe leaves the paper.
DEPARTURE = (
    "Departs from the paper's single joint stage: after the joint stage (trunk, mutual MLP and classifier "
    "trained together, as in the paper), a second 'interaction stage' trains only the mutual MLP on cached "
    "pooled features of un-augmented training images, with the paper's loss (cross-entropy + score ranking, "
    "margin 0.05), trunk and classifier frozen. The test path (classifier on pooled features) is therefore "
    "bit-identical to the joint stage's; only the pair path (mutual vector, gates, self/other scores) changed."
)

#: Files the stage writes into its ``--out`` folder.
OUTPUT_FILES = ("best.safetensors", "best.json", "log.jsonl")


@dataclass(frozen=True)
class InteractionConfig:
    """The interaction stage's recipe (the card stores :meth:`to_dict`)."""

    steps: int = 3000
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    per_class: int = 100  # training images per class whose pooled features are cached
    batch_classes: int = 8
    batch_images: int = 4
    margin: float = 0.05
    rank_weight: float = 1.0
    seed: int = 0
    log_every: int = 50

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"steps must be at least 1, got {self.steps}")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if self.batch_classes < 2 or self.batch_images < 2:
            raise ValueError(f"pairs need batch_classes >= 2 and batch_images >= 2, got "
                             f"{self.batch_classes} x {self.batch_images}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class InteractionResult:
    """What :func:`train_interaction` did: the loss terms logged every ``log_every`` steps."""

    steps: int
    history: list[dict[str, float]]  # {"step", "total", "ce", "rank"} (mean over the logged window)
    seconds: float


def freeze_all_but_mutual(model: nn.Module) -> list[nn.Parameter]:
    """Stop gradients for every parameter outside ``model.mutual``; returns the mutual MLP's."""
    if not hasattr(model, "mutual"):
        raise ValueError("the interaction stage needs an API-Net (this model has no mutual MLP)")
    mutual = list(model.mutual.parameters())
    ids = {id(p) for p in mutual}
    for p in model.parameters():
        p.requires_grad_(id(p) in ids)
    return mutual


@torch.no_grad()
def cache_pooled_features(model: nn.Module, loader, *, channels_last: bool = True,
                          progress: Callable[[int], None] | None = None) -> tuple[Tensor, Tensor]:
    """Pooled test-path features ``[N, D]`` (float32, CPU) and labels ``[N]`` of a loader's images,
    the trunk in eval mode (BatchNorm statistics untouched). ``channels_last`` is ~3x faster for
    EfficientNet's depthwise convolutions on CPU; it is a memory format, not a different model.
    ``progress(n)`` is called with each batch's size."""
    from ..features import iterate_features

    was_training = model.training
    model.eval()
    if channels_last:
        model.to(memory_format=torch.channels_last)
    xs, ys = [], []
    try:
        for batch in iterate_features(model, loader, channels_last=channels_last):
            xs.append(batch.pooled.float().cpu())
            ys.append(batch.labels.long())
            if progress is not None:
                progress(len(batch.labels))
    finally:
        if channels_last:
            model.to(memory_format=torch.contiguous_format)
        model.train(was_training)
    return torch.cat(xs), torch.cat(ys)


def feature_cache_path(folder: str | Path, input_sha256: str, split: str, per_class: int | None) -> Path:
    """Where the pooled features of ``split`` (``per_class`` images per class, ``None``: all) of the
    checkpoint whose weights hash to ``input_sha256`` are cached in ``folder``."""
    return Path(folder) / f"features-{input_sha256[:16]}-{split}-{per_class or 'all'}.safetensors"


def _cache_key(input_sha256: str, data: str, split: str, per_class: int | None, preprocess: Any) -> dict[str, str]:
    return {"input_sha256": input_sha256, "data": str(data), "split": split, "per_class": str(per_class),
            "preprocess": json.dumps(preprocess, sort_keys=True)}


def save_cached_features(path: Path, features: Tensor, labels: Tensor, key: dict[str, str]) -> None:
    """Write pooled features and labels (safetensors, never pickled) with the key they belong to."""
    from safetensors.torch import save_file

    from .._io import atomic_write

    tensors = {"features": features.float().contiguous(), "labels": labels.long().contiguous()}
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=key))


def load_cached_features(path: Path, key: dict[str, str]) -> tuple[Tensor, Tensor] | None:
    """The cached features at ``path`` if they were made for ``key`` (same checkpoint weights, data,
    split, images per class and preprocessing), else ``None``."""
    from safetensors import SafetensorError, safe_open

    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as fh:
            if fh.metadata() != key:
                return None
            features, labels = fh.get_tensor("features"), fh.get_tensor("labels")
    except (SafetensorError, OSError, ValueError, KeyError):
        return None  # unreadable or foreign: compute again
    if features.dim() != 2 or labels.shape != (features.shape[0],):
        return None
    return features.float(), labels.long()


def train_interaction(model: nn.Module, features: Tensor, labels: Tensor, config: InteractionConfig, *,
                      on_step: Callable[[int, dict[str, float]], None] | None = None) -> InteractionResult:
    """Train ``model.mutual`` alone on cached pooled ``features [N, D]`` with ``labels [N]``.

    Every other parameter is frozen (``requires_grad`` off; restored to on afterwards, as a loaded
    model has it), so trunk and classifier come out bit-identical. The model is left in eval mode.
    ``on_step(step, terms)`` is called after every step with that step's loss terms.
    """
    from ..losses import apinet_loss
    from ..pairs import BalancedBatchSampler, mine_pairs

    params = freeze_all_but_mutual(model)
    device = params[0].device
    features = features.to(device).float()
    labels = labels.to(device).long()
    sampler = BalancedBatchSampler(labels.cpu().tolist(), config.batch_classes, config.batch_images,
                                   seed=config.seed)
    if len(sampler) == 0:
        raise ValueError(f"{labels.numel()} cached images are fewer than one batch of "
                         f"{config.batch_classes} x {config.batch_images}")
    optimizer = torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    generator_state = torch.get_rng_state()
    torch.manual_seed(config.seed)  # the dropout masks: the same run gives the same weights
    history: list[dict[str, float]] = []
    window: dict[str, float] = {"total": 0.0, "ce": 0.0, "rank": 0.0}
    window_steps = 0
    step = 0
    start = time.perf_counter()
    model.train()  # dropout as in training; the trunk is not run, so BatchNorm is untouched
    try:
        while step < config.steps:
            for batch in sampler:
                index = torch.as_tensor(batch, device=device)
                x, y = features[index], labels[index]
                intra, inter = mine_pairs(x, y, check=False)
                first = torch.arange(len(y), device=device).repeat(2)
                second = torch.cat([intra, inter])
                out = model.interact(x[first], x[second])
                terms = apinet_loss(out.logits1_self, out.logits1_other, out.logits2_self, out.logits2_other,
                                    y[first], y[second], margin=config.margin, rank_weight=config.rank_weight)
                optimizer.zero_grad(set_to_none=True)
                terms.total.backward()
                optimizer.step()
                step += 1
                values = {k: float(getattr(terms, k).detach()) for k in ("total", "ce", "rank")}
                for key, value in values.items():
                    window[key] += value
                window_steps += 1
                if on_step is not None:
                    on_step(step, values)
                if step % config.log_every == 0 or step == config.steps:
                    history.append({"step": step, **{k: v / window_steps for k, v in window.items()}})
                    window = {k: 0.0 for k in window}
                    window_steps = 0
                if step >= config.steps:
                    break
    finally:
        torch.set_rng_state(generator_state)
        for p in model.parameters():
            p.requires_grad_(True)
        model.eval()
    return InteractionResult(steps=step, history=history, seconds=time.perf_counter() - start)


def _check_outputs(checkpoint: Path, out: Path, cache_dir: Path | None = None) -> None:
    from .._io import checkpoint_files, refuse_overwriting_inputs

    refuse_overwriting_inputs({"--out": out, "--cache-dir": cache_dir}, {}, folders=["--out", "--cache-dir"])
    if cache_dir is not None:
        refuse_overwriting_inputs({"--cache-dir": cache_dir}, {"--checkpoint": checkpoint_files(checkpoint)},
                                  folders=["--cache-dir"])
    refuse_overwriting_inputs({"--out": [out / name for name in OUTPUT_FILES]},
                              {"--checkpoint": checkpoint_files(checkpoint)})
    held = [name for name in OUTPUT_FILES if (out / name).exists()]
    if held:
        raise ValueError(f"--out {out} already holds {held[0]}; choose a new folder")


def run_interaction_stage(checkpoint: str | Path, out: str | Path, config: InteractionConfig, *,
                          data: str | None = None, batch_size: int = 50, channels_last: bool = True,
                          val_split: str | None = "val", show_progress: bool = True,
                          cache_dir: str | Path | None = None, command: str | None = None) -> dict[str, Any]:
    """The stage as a command does it: load ``checkpoint``, cache the training features, train the
    mutual MLP, write ``out/best.safetensors`` with its card (and ``out/log.jsonl``), and return the
    card's ``interaction_stage`` entry.

    The output keeps the input's dtype-free float32 weights, its card (recipe, metrics, dataset) and
    its k-NN reference (a function of the trunk, which does not change). ``val_split`` (or ``None``)
    names the split whose pair statistics the card records (:func:`apinet.mechanism.gate_activity`);
    the test split is never touched. The pooled features are cached in ``cache_dir`` (default
    ``out/features``), keyed by the input weights' SHA-256, data, split, images per class and
    preprocessing: another run of the stage on the same checkpoint (another learning rate or number of
    steps) reuses them instead of running the trunk again.
    """
    from ..checkpoint import CheckpointError, load_model, save_checkpoint
    from ..evaluate import checkpoint_dataset
    from ..mechanism import gate_activity
    from ..ood import BANK_KEY, FeatureReference

    checkpoint, out = Path(checkpoint), Path(out)
    _check_outputs(checkpoint, out, None if cache_dir is None else Path(cache_dir))
    if val_split == "test":
        raise ValueError("the interaction stage never looks at the test split; validate on val")
    try:
        model, card = load_model(checkpoint)
    except CheckpointError as exc:
        raise ValueError(str(exc)) from None
    if not hasattr(model, "mutual"):
        raise ValueError(f"--checkpoint {checkpoint}: a {card['config'].get('architecture')} model has no "
                         f"mutual MLP; the interaction stage trains API-Net's")
    reference = FeatureReference.from_checkpoint(checkpoint, card)
    before = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("mutual.")}

    bar = _progress(show_progress)
    folder = Path(cache_dir) if cache_dir is not None else out / "features"
    cached: list[str] = []

    def features(split: str, per_class: int | None) -> tuple[Tensor, Tensor]:
        dataset, spec = checkpoint_dataset(card, data, split, per_class=per_class)
        key = _cache_key(card["weights_sha256"], spec, split, per_class, card.get("preprocess"))
        path = feature_cache_path(folder, card["weights_sha256"], split, per_class)
        found = load_cached_features(path, key)
        if found is not None and found[0].shape[0] == len(dataset):
            cached.append(str(path))
            return found
        loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False)
        with bar(total=len(dataset), unit="img", desc=f"caching {split} features") as pbar:
            x, y = cache_pooled_features(model, loader, channels_last=channels_last, progress=pbar.update)
        save_cached_features(path, x, y, key)
        return x, y

    start = time.perf_counter()
    x_train, y_train = features("train", config.per_class)
    cache_seconds = time.perf_counter() - start
    val_before = val_after = None
    if val_split:
        x_val, y_val = features(val_split, None)
        val_before = gate_activity(model, x_val, y_val, margin=config.margin).to_dict()
    with bar(total=config.steps, unit="step", desc="interaction stage") as pbar:
        def on_step(step: int, terms: dict[str, float]) -> None:
            pbar.update(1)
            if step % config.log_every == 0:
                pbar.set_postfix({k: f"{v:.4f}" for k, v in terms.items()})

        result = train_interaction(model, x_train, y_train, config, on_step=on_step)
    if val_split:
        val_after = gate_activity(model, x_val, y_val, margin=config.margin).to_dict()
    after = model.state_dict()
    changed = [k for k, v in before.items() if not torch.equal(v, after[k])]
    if changed:  # cannot happen: everything but the mutual MLP is frozen
        raise RuntimeError(f"the interaction stage changed {changed[:3]} outside the mutual MLP")
    wall = time.perf_counter() - start
    stage = {
        "config": config.to_dict(),
        "input": str(checkpoint),
        "input_sha256": card["weights_sha256"],
        "trained": "mutual MLP only (mutual.*); trunk and classifier frozen, test-path logits bit-identical",
        "train_images": int(y_train.numel()),
        "augmentation": "none: pooled features of the test-time view, computed once by the frozen trunk",
        "departs_from_paper": DEPARTURE,
        "final_loss": result.history[-1] if result.history else None,
        "feature_cache_s": round(cache_seconds, 1),
        "features_reused": cached,
        "train_s": round(result.seconds, 1),
        "wall_time_s": round(wall, 1),
        "command": command,
    }
    if val_split:
        stage["val_split"] = val_split
        stage["val_before"] = val_before
        stage["val_after"] = val_after
    card_out = {k: v for k, v in card.items() if k not in (
        "format", "architecture", "backbone", "num_classes", "config", "weights_file", "weights_sha256",
        "weights_dtype", "saved_at", "versions", "reference", "interaction_stage")}
    extra = {}
    if reference is not None:
        extra[BANK_KEY] = reference.bank
        card_out["reference"] = card["reference"]
    out.mkdir(parents=True, exist_ok=True)
    from .._io import atomic_write

    lines = [json.dumps({"event": "interaction", **row}) for row in result.history]
    atomic_write(out / "log.jsonl", lambda tmp: tmp.write_text("\n".join(lines) + "\n"))
    save_checkpoint(model, out / "best.safetensors", extra_tensors=extra, **card_out, interaction_stage=stage)
    return stage


def _progress(show: bool):
    if show:
        import sys

        from tqdm import tqdm

        return lambda **kw: tqdm(dynamic_ncols=True, file=sys.stderr, **kw)

    class _Silent:
        def __init__(self, **kw):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def update(self, n=1):
            pass

        def set_postfix(self, *a, **kw):
            pass

    return _Silent
