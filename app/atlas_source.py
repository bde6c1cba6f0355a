"""Which atlas the app opens, and the atlas as the pair picker's image source.

An atlas (``python -m apinet atlas``) is found three ways, first match first: ``APINET_ATLAS_DIR``,
the shipped default ``assets/atlas`` (the SynthBirds test split of the demo checkpoints), and every
atlas folder one or two levels under the runs folder. The one opened is the one the sidebar names
(or a link's ``atlas=``), else the first whose checkpoints are the ones loaded. An atlas made with
other weights than the loaded checkpoints is refused in one line, and the app falls back to the
gallery. Only the open atlas is held in memory (its table without thumbnails; features memory-mapped).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import streamlit as st

from app import config

__all__ = ["AtlasChoice", "AtlasGallery", "ATLAS_KEY", "choose_atlas", "discover_atlases", "open_atlas"]

#: session_state key (and URL parameter) of the atlas chosen in the sidebar.
ATLAS_KEY = "atlas"
NO_ATLAS = "none"
#: Most images the Image A / Image B selectors list; the Dataset view's picker searches all of them.
MAX_SELECTOR_IMAGES = 1000


@dataclass(frozen=True)
class AtlasEntry:
    label: str  # what the sidebar shows: "default", "env", or the folder under runs/
    folder: str
    apinet_sha: str | None
    baseline_sha: str | None
    images: int


def default_atlas_dir() -> Path:
    return config.REPO_ROOT / "assets" / "atlas"


@st.cache_data(ttl=60, show_spinner=False)
def discover_atlases(env_dir: str, default_dir: str, runs_dir: str) -> list[AtlasEntry]:
    """Every complete atlas the app can open (manifest readable), in the order of the module docstring."""
    from apinet.atlas import AtlasError, read_manifest

    found: list[AtlasEntry] = []
    seen: set[str] = set()
    runs = Path(runs_dir)
    candidates = [(env_dir, "APINET_ATLAS_DIR")] if env_dir else []
    candidates.append((default_dir, "demo: SynthBirds test split"))
    if runs.is_dir():
        for manifest in sorted([*runs.glob("*/manifest.json"), *runs.glob("*/*/manifest.json")]):
            candidates.append((str(manifest.parent), f"runs/{manifest.parent.relative_to(runs)}"))
    for folder, label in candidates:
        real = os.path.realpath(folder)
        if real in seen or not Path(folder, "manifest.json").is_file():
            continue
        seen.add(real)
        try:
            manifest = read_manifest(folder)
        except AtlasError:
            continue
        shas = {m: (manifest.get("checkpoints", {}).get(m) or {}).get("sha256") for m in ("apinet", "baseline")}
        found.append(AtlasEntry(f"{label} ({manifest.get('images')} images)", folder, shas["apinet"], shas["baseline"],
                                int(manifest.get("images") or 0)))
    return found


@st.cache_resource(show_spinner=False, max_entries=2)
def open_atlas(folder: str, manifest_mtime: float):
    """The atlas in ``folder``, opened once per process (``manifest_mtime`` reloads a rebuilt one)."""
    from apinet.atlas import Atlas

    del manifest_mtime
    return Atlas.open(folder)


@dataclass
class AtlasChoice:
    atlas: object | None  # apinet.atlas.Atlas
    entries: list[AtlasEntry]
    label: str  # the sidebar value
    refused: str = ""  # one line: why the chosen atlas is not shown


def choose_atlas(apinet_sha: str, baseline_sha: str | None) -> AtlasChoice:
    """The atlas to open for these checkpoints (see the module docstring); never raises."""
    from apinet.atlas import AtlasError

    paths = config.paths_from_env()
    env_dir = os.environ.get("APINET_ATLAS_DIR", "").strip()
    entries = discover_atlases(env_dir, str(default_atlas_dir()), str(paths.runs))
    labels = [e.label for e in entries]
    wanted = st.session_state.get(ATLAS_KEY)
    if wanted is None and ATLAS_KEY in st.query_params and not st.session_state.get("_url_loaded"):
        wanted = st.query_params[ATLAS_KEY]
    if wanted == "auto":
        wanted = None
    if wanted == NO_ATLAS:
        return AtlasChoice(None, entries, NO_ATLAS)
    entry = next((e for e in entries if e.label == wanted), None)
    if entry is None and env_dir:
        entry = next((e for e in entries if os.path.realpath(e.folder) == os.path.realpath(env_dir)), None)
        if entry is None:
            return AtlasChoice(None, entries, NO_ATLAS, f"APINET_ATLAS_DIR {env_dir}: not a complete atlas (no readable "
                                                        "manifest.json); build one with `python -m apinet atlas`")
    if entry is None:  # automatic: the first atlas of exactly these checkpoints
        entry = next((e for e in entries if e.apinet_sha == apinet_sha
                      and (baseline_sha is None or e.baseline_sha == baseline_sha)), None)
        if entry is None:
            return AtlasChoice(None, entries, NO_ATLAS)
    try:
        atlas = open_atlas(entry.folder, Path(entry.folder, "manifest.json").stat().st_mtime)
        atlas.check_checkpoints(apinet_sha, baseline_sha)
    except (AtlasError, OSError) as exc:
        return AtlasChoice(None, entries, entry.label if entry.label in labels else NO_ATLAS, " ".join(str(exc).split()))
    return AtlasChoice(atlas, entries, entry.label)


# ----------------------------------------------------------------------------------------------
# The atlas as the picker's gallery (duck-types app.resources.Gallery; image bytes read lazily)
# ----------------------------------------------------------------------------------------------


class AtlasItem:
    """One atlas image as the picker sees it: its bytes are read (or rendered) on first use."""

    __slots__ = ("_atlas", "row", "id", "label", "class_name", "_data")

    def __init__(self, atlas, row: int, item_id: str, label: int | None, class_name: str) -> None:
        self._atlas, self.row, self.id, self.label, self.class_name = atlas, row, item_id, label, class_name
        self._data: bytes | None = None

    @property
    def data(self) -> bytes:
        if self._data is None:
            self._data = self._atlas.image_bytes(self.row)
        return self._data

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


@dataclass
class AtlasGallery:
    atlas: object  # apinet.atlas.Atlas
    note: str = ""
    classes: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self.classes = list(self.atlas.class_names)

    @property
    def source(self) -> str:
        data = self.atlas.manifest.get("data", {})
        return f"Atlas of {data.get('spec', '?')} ({data.get('split', '?')} split)"

    @cached_property
    def items(self) -> list[AtlasItem]:
        a = self.atlas
        ids, labels, names = a.column("id"), a.labels, a.column("class_name")
        # an unlabelled image (--unlabelled) has no label: the app treats it like an upload (its
        # reference class is API-Net's prediction), never as class -1
        return [AtlasItem(a, i, str(ids[i]), int(labels[i]), str(names[i])) if labels[i] >= 0
                else AtlasItem(a, i, str(ids[i]), None, f"{names[i]} (unlabelled)") for i in range(len(a))]

    @property
    def ids(self) -> list[str]:
        return [str(i) for i in self.atlas.column("id")]

    def get(self, item_id: str) -> AtlasItem | None:
        row = self.atlas.index_of.get(item_id)
        return None if row is None else self.items[row]

    def of_class(self, label: int) -> list[AtlasItem]:
        return [self.items[r] for r in np.flatnonzero(self.atlas.labels == label)]

    @property
    def key(self) -> str:
        return str(self.atlas.manifest.get("files_sha256", {}).get("atlas.parquet", ""))[:16]

    def partners(self, loaded, data: bytes, item_id: str | None):
        """The paper's partners of image A among the atlas's labelled images: A's stored row, or an
        upload's features (computed now) mined as its predicted class."""
        import torch

        from apinet.atlas import nearest_partners
        from app import resources

        atlas = self.atlas
        row = atlas.index_of.get(item_id) if item_id is not None else None
        if row is not None:
            choice = nearest_partners(atlas, row)
            label, predicted = int(atlas.labels[row]), bool(atlas.labels[row] < 0)
            if predicted:
                label = int(atlas.predictions("apinet")[row])
        else:
            feature = resources._pooled_features(loaded, [resources._decode(data)])
            with torch.inference_mode():
                label = int(loaded.model.forward_head(torch.from_numpy(feature)).argmax(1))
            predicted = True
            x, sq = atlas.bank("apinet")
            q = feature[0].astype(np.float32)
            dist = np.maximum(sq + float(q @ q) - 2.0 * (x @ q), 0.0)
            dist[~atlas.labelled] = np.inf
            same = atlas.labels == label
            intra_d, inter_d = np.where(same, dist, np.inf), np.where(same, np.inf, dist)
            i, j = int(np.argmin(intra_d)), int(np.argmin(inter_d))
            from apinet.pairs import PartnerChoice

            choice = PartnerChoice(i if np.isfinite(intra_d[i]) else None, j if np.isfinite(inter_d[j]) else None,
                                   float(intra_d[i]), float(inter_d[j]))
        ids = atlas.column("id")
        return resources.Partners(
            label=label, label_is_prediction=predicted,
            intra=str(ids[choice.intra]) if choice.intra is not None else None,
            inter=str(ids[choice.inter]) if choice.inter is not None else None,
            intra_distance=choice.intra_distance, inter_distance=choice.inter_distance)

    @property
    def bank(self) -> np.ndarray:
        """API-Net's pooled features of every row ``[N, D]`` float32 (made once per atlas)."""
        return self.atlas.bank("apinet")[0]


class AtlasRefs:
    """The refs an atlas offers, as a container: ``ref in refs`` without listing 100,000 of them."""

    def __init__(self, gallery: AtlasGallery, prefix: str, extra: list[str]) -> None:
        self.gallery, self.prefix, self.extra = gallery, prefix, extra

    def __contains__(self, ref: object) -> bool:
        return isinstance(ref, str) and (ref in self.extra or (
            ref.startswith(self.prefix) and ref[len(self.prefix):] in self.gallery.atlas.index_of))
