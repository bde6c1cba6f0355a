"""Everything the app loads or computes, cached: checkpoints, explanations, what-if runs; the gallery
and its feature bank live in :mod:`app.gallery` (re-exported here).

* Models are loaded once per process (``st.cache_resource``) and shared by every browser session.
  Explaining a pair may register hooks and runs backward passes, so every use of a model holds its
  lock, :func:`apinet.explain.model_lock` (a ``threading.RLock`` per model, the same one
  ``explain_pair`` takes): two sessions never interleave on the same module.
* Explanations are cached with ``st.cache_data``, keyed by the SHA-256 of both images' bytes, the
  checkpoints' weight hashes and the settings that change what a model computes (the channel
  ranking). One explanation holds K_MAX channels, every CAM method and LTPA at every stage, so the
  display settings (k, colormap, alpha, normalisation scope, CAM method, stage) are not part of the
  key: moving them re-renders from the cached arrays and never runs a model. ``EXPLAIN_CALLS`` counts real computations (tests read it).
* Model runs are bounded process-wide: at most :data:`MAX_MODEL_RUNS` explanations compute at once
  (:data:`RUN_GATE`, a bounded semaphore), so a classroom of sessions queues instead of thrashing
  the CPU cores; a session that waits is told how many runs are ahead. Cache hits never wait.
* Session-specific data (uploads, the chosen pair) never enters a shared cache except through those
  content hashes, so sessions cannot see each other's choices.
"""

from __future__ import annotations

import hashlib
import os
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import streamlit as st
import torch

from apinet import CheckpointError, load_card, load_model
from app.gallery import (MAX_GALLERY_IMAGES, Gallery, GalleryItem, Partners, _decode,  # noqa: F401 (re-exported)
                         _pooled_features, _synthbirds_gallery, feature_bank, load_gallery, random_pair,
                         suggest_partners)

__all__ = [
    "EXPLAIN_CALLS",
    "MAX_MODEL_RUNS",
    "RUN_GATE",
    "CheckpointInfo",
    "Gallery",
    "GalleryItem",
    "LoadedModel",
    "checkpoint_fingerprint",
    "discover_checkpoints",
    "explain",
    "feature_bank",
    "load_checkpoint",
    "load_gallery",
    "suggest_partners",
]


class _Counter:
    """How many times a model really ran for an explanation (cache misses), process-wide."""

    def __init__(self) -> None:
        self.value = 0
        self._lock = threading.Lock()

    def increment(self) -> None:
        with self._lock:
            self.value += 1


EXPLAIN_CALLS = _Counter()


class ModelBusy(RuntimeError):
    """Raised inside the cached computation when every model-run slot is taken (never cached)."""


class RunGate:
    """A process-wide bound on concurrent model runs, with a count of who is running and waiting.

    The cached explanation takes a slot with :meth:`hold` without blocking (a busy gate raises
    :class:`ModelBusy`, which ``st.cache_data`` does not cache); :func:`explain` then tells its caller
    how many runs are ahead and blocks in :meth:`queue` until a slot frees, and retries holding it.
    """

    def __init__(self, slots: int) -> None:
        self.slots = slots
        self._sem = threading.BoundedSemaphore(slots)
        self._lock = threading.Lock()
        self._local = threading.local()
        self.running = 0
        self.waiting = 0

    def ahead(self) -> int:
        """Runs that go before a newcomer: those computing now and those already queued."""
        with self._lock:
            return self.running + self.waiting

    @contextmanager
    def hold(self) -> Iterator[None]:
        if getattr(self._local, "held", False):  # this thread queued for the slot already
            yield
            return
        if not self._sem.acquire(blocking=False):
            raise ModelBusy("every model-run slot is taken")
        with self._lock:
            self.running += 1
        try:
            yield
        finally:
            with self._lock:
                self.running -= 1
            self._sem.release()

    @contextmanager
    def queue(self) -> Iterator[None]:
        """Block until a slot is free and keep it for this thread until the block ends."""
        with self._lock:
            self.waiting += 1
        try:
            self._sem.acquire()
        finally:
            with self._lock:
                self.waiting -= 1
        with self._lock:
            self.running += 1
        self._local.held = True
        try:
            yield
        finally:
            self._local.held = False
            with self._lock:
                self.running -= 1
            self._sem.release()


def _env_int(name: str, default: int, low: int, high: int) -> int:
    """An integer setting from the environment, clamped to [low, high]; a bad value gives the default."""
    try:
        return min(high, max(low, int(os.environ.get(name, "").strip() or default)))
    except ValueError:
        return default


#: Explanations computing at once in this process (``APINET_MAX_MODEL_RUNS``, default 1: a pair's
#: backward passes already use every core PyTorch is given; two at once only slow both down).
MAX_MODEL_RUNS = _env_int("APINET_MAX_MODEL_RUNS", 1, 1, 16)
RUN_GATE = RunGate(MAX_MODEL_RUNS)


# ----------------------------------------------------------------------------------------------
# Checkpoints
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckpointInfo:
    """A checkpoint found on disk, described by its model card (weights not loaded)."""

    path: str
    label: str  # what the selector shows: "demo: apinet_synthbirds" or a path under the runs folder
    architecture: str  # "apinet" | "baseline"
    backbone: str
    num_classes: int
    sha256: str
    class_names: tuple[str, ...] = ()
    metrics: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    interface: Any = field(default=None, hash=False, compare=False)  # apinet.compat.ModelInterface


def _describe(path: Path, label: str) -> CheckpointInfo:
    from apinet.compat import ModelInterface

    card = load_card(path)
    config = card.get("config", {})
    names = card.get("class_names") or [f"class {i}" for i in range(int(card.get("num_classes", 0)))]
    return CheckpointInfo(
        path=str(path),
        label=label,
        architecture=str(card.get("architecture", config.get("architecture", "?"))),
        backbone=str(card.get("backbone", config.get("backbone", "?"))),
        num_classes=int(card.get("num_classes", config.get("num_classes", len(names)))),
        sha256=str(card["weights_sha256"]),
        class_names=tuple(str(n) for n in names),
        metrics=dict(card.get("metrics") or {}),
        interface=ModelInterface.from_card(card),
    )


# --- issue #24: a checkpoint written while the app runs is listed on the next rerun -------------
_CHECKPOINT_SUFFIXES = (".safetensors", ".json")


def checkpoint_fingerprint(demo_dir: str, runs_dir: str) -> tuple[tuple[str, int, int], ...]:
    """``(path, mtime_ns, size)`` of every ``*.safetensors`` and ``*.json`` the listing reads: the demo
    folder's top level and the runs folder recursively (symlinked folders not followed, as ``rglob``).

    One ``os.scandir`` per folder and one ``stat`` per candidate file: cheap enough for every rerun,
    and any checkpoint or card written, replaced or removed changes it.
    """
    entries: list[tuple[str, int, int]] = []

    def scan(folder: str, recursive: bool) -> None:
        try:
            listing = os.scandir(folder)
        except OSError:
            return
        with listing:
            for entry in listing:
                try:
                    if recursive and entry.is_dir(follow_symlinks=False):
                        scan(entry.path, True)
                    elif entry.name.endswith(_CHECKPOINT_SUFFIXES) and entry.is_file():
                        info = entry.stat()
                        entries.append((entry.path, info.st_mtime_ns, info.st_size))
                except OSError:  # removed while listed: the next rerun sees the folder as it is then
                    continue

    scan(demo_dir, False)
    scan(runs_dir, True)
    return tuple(sorted(entries))


def discover_checkpoints(demo_dir: str, runs_dir: str) -> tuple[list[CheckpointInfo], list[str]]:
    """Checkpoints with a readable card in the demo folder and (recursively) the runs folder.

    Returns ``(found, problems)``; a checkpoint without a valid card is skipped with a one-line
    problem instead of breaking the app. Cached by :func:`checkpoint_fingerprint`, not by time: a
    checkpoint written while the app runs is listed on the next rerun, and an unchanged folder is
    never read again.
    """
    digest = hashlib.sha1(repr(checkpoint_fingerprint(demo_dir, runs_dir)).encode()).hexdigest()
    return _discover_checkpoints(demo_dir, runs_dir, digest)


# cache_resource, not cache_data: the listing is shared as it is (callers never mutate it), so an
# unchanged folder costs the fingerprint and a dictionary look-up, not a pickle round trip.
@st.cache_resource(show_spinner=False, max_entries=16)
def _discover_checkpoints(demo_dir: str, runs_dir: str, fingerprint: str) -> tuple[list[CheckpointInfo], list[str]]:
    del fingerprint  # the cache key only: a digest of checkpoint_fingerprint
    found: list[CheckpointInfo] = []
    problems: list[str] = []
    seen: set[Path] = set()
    for root, demo in ((Path(demo_dir), True), (Path(runs_dir), False)):
        if not root.is_dir():
            continue
        files = sorted(root.glob("*.safetensors")) if demo else sorted(root.rglob("*.safetensors"))
        for path in files:
            if path.resolve() in seen:
                continue
            seen.add(path.resolve())
            label = f"demo: {path.stem}" if demo else f"runs/{path.relative_to(root).with_suffix('')}"
            try:
                found.append(_describe(path, label))
            except Exception as exc:  # noqa: BLE001 - one bad card must never take the page down
                message = " ".join(str(exc).split())
                problems.append(message if isinstance(exc, CheckpointError) else f"{path}: {message}")
    return found, problems


@dataclass
class LoadedModel:
    model: torch.nn.Module
    card: dict[str, Any]
    preprocess: Any  # apinet.data.Preprocess
    class_names: list[str]
    reference: Any = None  # apinet.ood.FeatureReference: says when an image is unlike the training data


@st.cache_resource(show_spinner=False, max_entries=6)
def load_checkpoint(path: str, sha256: str) -> LoadedModel:
    """Load a checkpoint once per process; ``sha256`` keys the cache so a retrained file reloads."""
    from apinet.data import Preprocess
    from apinet.ood import FeatureReference

    del sha256  # only part of the cache key; load_model verifies the hash itself
    model, card = load_model(path)
    names = card.get("class_names") or [f"class {i}" for i in range(model.num_classes)]
    return LoadedModel(model=model, card=card, preprocess=Preprocess.from_card(card), class_names=list(names),
                       reference=FeatureReference.from_checkpoint(path, card))


# ----------------------------------------------------------------------------------------------
# Explanations
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExplainRequest:
    """Everything that changes what the models compute for a pair (the cache key)."""

    apinet_path: str
    apinet_sha: str
    baseline_path: str | None
    baseline_sha: str | None
    image_a_sha: str
    image_b_sha: str
    targets: tuple[int, int] | None
    rank_by: str
    cam_layer: str | None = None  # None: the last stage (the paper's maps)


def stages_of(loaded: LoadedModel) -> list[str]:
    """Trunk stages, last first (the stage the paper's maps come from)."""
    return list(reversed(list(loaded.model.trunk.stage_channels)))


def cam_methods() -> list[str]:
    from apinet.explain import CAM_METHODS

    return list(CAM_METHODS)


#: The explanation cache's bound in MB of pickled explanations per process
#: (``APINET_EXPLANATION_CACHE_MB``, default 256); the least recently used pairs are dropped beyond
#: it. One pair at the paper's 448 px with ResNet-101 API-Net + baseline, as the app requests it (6 CAM
#: methods, LTPA at 4 stages, k = 10), pickles to 3.9 MB (benchmarks/explanation_memory.py), so 256 MB
#: keep about 65 such pairs, or about 250 demo pairs (224 px, about 1 MB each). A count alone did not
#: do: with 32 entries, a classroom's stream of new pairs evicted the pairs the teacher named.
EXPLANATION_CACHE_MB = _env_int("APINET_EXPLANATION_CACHE_MB", 256, 16, 65536)
EXPLANATION_CACHE_ENTRIES = 4096  # a backstop; the byte bound above is the one that acts


@st.cache_data(show_spinner=False, max_entries=1024)
def predicted_class(ckpt_path: str, sha256: str, image_sha: str, _data: bytes) -> int:
    """API-Net's test-path prediction for one image (the default reference class of an upload)."""
    del image_sha  # cache key only
    loaded = load_checkpoint(ckpt_path, sha256)
    feature = _pooled_features(loaded, [_decode(_data)])
    with torch.inference_mode():
        return int(loaded.model.forward_head(torch.from_numpy(feature)).argmax(1))


@st.cache_data(show_spinner=False, max_entries=EXPLANATION_CACHE_ENTRIES, max_size=f"{EXPLANATION_CACHE_MB}MB")
def _explain_cached(request: ExplainRequest, _data_a: bytes, _data_b: bytes):
    apinet_model = load_checkpoint(request.apinet_path, request.apinet_sha)
    baseline = None
    if request.baseline_path:
        baseline = load_checkpoint(request.baseline_path, request.baseline_sha).model
    with RUN_GATE.hold():
        EXPLAIN_CALLS.increment()
        return _compute(request, apinet_model, baseline, _data_a, _data_b)


def _compute(request: ExplainRequest, apinet_model: LoadedModel, baseline, _data_a: bytes, _data_b: bytes):
    from apinet.explain import explain_pair, unusual_lines

    from app.config import K_MAX

    # explain_pair holds both models' locks while it runs (hooks, eval mode, backward passes).
    expl = explain_pair(
        apinet_model.model,
        _decode(_data_a),
        _decode(_data_b),
        baseline,
        k=K_MAX,
        rank_by=request.rank_by,
        cam_methods=tuple(cam_methods()),
        preprocess=apinet_model.preprocess,
        class_names=apinet_model.class_names,
        targets=request.targets,
        ltpa_stages=stages_of(apinet_model),
        cam_layer=request.cam_layer,
    )
    if apinet_model.reference is not None:
        expl.unusual = unusual_lines(apinet_model.reference, expl)
    return expl


def explain(request: ExplainRequest, data_a: bytes, data_b: bytes,
            on_wait: Callable[[int], None] | None = None):
    """The pair's :class:`apinet.explain.PairExplanation` (cached; see the module docstring).

    A cache hit returns at once. A miss while every model-run slot is taken calls ``on_wait(N)``
    (N = runs ahead of this one) and waits its turn.
    """
    try:
        return _explain_cached(request, data_a, data_b)
    except ModelBusy:
        pass
    if on_wait is not None:
        on_wait(RUN_GATE.ahead())
    with RUN_GATE.queue():
        return _explain_cached(request, data_a, data_b)


# ----------------------------------------------------------------------------------------------
# What if? and the gallery's pairs ranked by mechanism strength (issue #22)
# ----------------------------------------------------------------------------------------------


@st.cache_resource(show_spinner=False, max_entries=16)
def whatif_pair(apinet_path: str, apinet_sha: str, image_a_sha: str, image_b_sha: str, targets: tuple[int, int],
                _expl, _data_a: bytes, _data_b: bytes):
    """The :class:`apinet.explain.whatif.WhatIfPair` of an explained pair (one per pair and checkpoint,
    shared by sessions: it holds only the pair's inputs, its untouched numbers and a small cache of
    occluded images' pooled features)."""
    from apinet.explain.whatif import WhatIfPair

    del image_a_sha, image_b_sha, targets  # cache key only (the explanation carries the targets)
    loaded = load_checkpoint(apinet_path, apinet_sha)
    inputs = torch.stack([loaded.preprocess(_decode(_data_a)), loaded.preprocess(_decode(_data_b))])
    return WhatIfPair.from_explanation(loaded.model, _expl, inputs)


@st.cache_resource(show_spinner=False, max_entries=4)
def gallery_pairs(ckpt_path: str, sha256: str, gallery_dir: str, gallery_key: str):
    """Every gallery image's intra and inter partner, with the mechanism strength of each pair
    (:func:`apinet.pair_ranking.mine_and_rank` on the feature bank; computed once per checkpoint)."""
    from apinet.explain import model_lock
    from apinet.pair_ranking import mine_and_rank

    loaded = load_checkpoint(ckpt_path, sha256)
    bank = feature_bank(ckpt_path, sha256, gallery_dir, gallery_key)
    labels = [item.label for item in load_gallery(gallery_dir).items]
    with model_lock(loaded.model):
        return mine_and_rank(loaded.model.eval(), bank, labels)
