"""An atlas on disk: one Parquet table, memory-mapped features, a manifest.

Layout of an atlas folder (see ``docs/reference/atlas-format.md``)::

    manifest.json              written last: its presence means the atlas is complete
    atlas.parquet              one row per image (columns: :data:`COLUMNS`), thumbnails included
    features_apinet.npy        [N, D] float16 pooled features of API-Net (np.load(mmap_mode="r"))
    features_baseline.npy      [N, D'] float16 pooled features of the baseline
    bad_images.json            images that could not be decoded: [{"id", "path", "reason"}]
    chunks/                    the build's resumable pieces (kept: a rebuild with new data reuses none)

Row ``i`` of the table is row ``i`` of both feature files. :class:`Atlas` opens one read-only and
keeps memory O(columns without thumbnails): thumbnails are read per row group, on demand.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UserError

__all__ = ["ATLAS_FORMAT", "MODELS", "Atlas", "AtlasError", "read_manifest"]

ATLAS_FORMAT = "apinet-atlas/1"
MANIFEST = "manifest.json"
TABLE = "atlas.parquet"
BAD_IMAGES = "bad_images.json"
#: The two models of an atlas, in the order their columns are named (``apinet_pred``, ``baseline_pred``).
MODELS = ("apinet", "baseline")
#: Rows per Parquet row group: a page of thumbnails reads one or two groups, never the whole table.
ROW_GROUP = 256


def features_file(model: str) -> str:
    return f"features_{model}.npy"


class AtlasError(UserError):
    """An atlas folder that is missing, incomplete, malformed or made with other checkpoints."""


def read_manifest(folder: str | os.PathLike) -> dict[str, Any]:
    """The manifest of a complete atlas; :class:`AtlasError` (one line) otherwise."""
    folder = Path(folder)
    path = folder / MANIFEST
    if not path.is_file():
        partial = (folder / "chunks").is_dir()
        raise AtlasError(f"{folder}: not a complete atlas (no {MANIFEST}"
                         + ("; the build was interrupted: run the same atlas command again to resume)" if partial
                            else ")"))
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AtlasError(f"{path}: unreadable manifest ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != ATLAS_FORMAT:
        raise AtlasError(f"{path}: not an API-Net atlas manifest (format {str(manifest.get('format') if isinstance(manifest, dict) else None)!r})")
    return manifest


@dataclass
class Atlas:
    """A complete atlas, opened read-only. Columns are NumPy arrays (thumbnails excluded)."""

    folder: Path
    manifest: dict[str, Any]
    columns: dict[str, np.ndarray] = field(repr=False)
    #: Derived arrays memoised for the life of this object (the bank of partner queries, a map's points);
    #: an atlas is read-only, so they never go stale.
    memo: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def open(cls, folder: str | os.PathLike) -> "Atlas":
        import pyarrow.parquet as pq

        folder = Path(folder)
        manifest = read_manifest(folder)
        try:
            schema_names = pq.read_schema(folder / TABLE).names
            wanted = [c for c in schema_names if c != "thumbnail"]
            table = pq.read_table(folder / TABLE, columns=wanted)
        except (OSError, ValueError) as exc:
            raise AtlasError(f"{folder / TABLE}: unreadable atlas table ({' '.join(str(exc).split())[:200]})") from None
        columns = {name: _to_numpy(table.column(name)) for name in wanted}
        atlas = cls(folder, manifest, columns)
        if len(atlas) != int(manifest.get("images", -1)):
            raise AtlasError(f"{folder}: the table has {len(atlas)} rows but the manifest says {manifest.get('images')}")
        return atlas

    def __len__(self) -> int:
        return len(self.columns["id"])

    # ------------------------------------------------------------------ identity
    @property
    def class_names(self) -> list[str]:
        return list(self.manifest["class_names"])

    def sha256(self, model: str) -> str | None:
        entry = self.manifest.get("checkpoints", {}).get(model) or {}
        return entry.get("sha256")

    def check_checkpoints(self, apinet_sha: str, baseline_sha: str | None = None) -> None:
        """Refuse (one line) an atlas made with other weights than the ones about to explain it."""
        for model, sha in (("apinet", apinet_sha), ("baseline", baseline_sha)):
            if sha is None:
                continue
            recorded = self.sha256(model)
            if recorded != sha:
                raise AtlasError(
                    f"stale atlas {self.folder.name}: built with {model} weights {str(recorded)[:12]}..., "
                    f"not the loaded {sha[:12]}...; rebuild it with `python -m apinet atlas` (see its manifest)")

    # ------------------------------------------------------------------ arrays
    def column(self, name: str) -> np.ndarray:
        return self.columns[name]

    @cached_property
    def labels(self) -> np.ndarray:
        """``[N]`` int class index, -1 for an unlabelled image."""
        return self.columns["label"].astype(np.int64)

    def predictions(self, model: str) -> np.ndarray:
        return self.columns[f"{model}_pred"].astype(np.int64)

    def correct(self, model: str) -> np.ndarray:
        """``[N]`` bool; False for unlabelled images (see :attr:`labelled`)."""
        return (self.predictions(model) == self.labels) & self.labelled

    @cached_property
    def labelled(self) -> np.ndarray:
        return self.labels >= 0

    @cached_property
    def xy(self) -> np.ndarray:
        return np.stack([self.columns["x"], self.columns["y"]], axis=1).astype(np.float32)

    def bank(self, model: str = "apinet") -> tuple[np.ndarray, np.ndarray]:
        """``(features [N, D] float32, squared norms [N])`` in memory, made once: a partner query is
        then one matrix-vector product (4 bytes x N x D; 128 MB at 100,000 x 320)."""
        key = f"bank:{model}"
        if key not in self.memo:
            x = np.asarray(self.features(model), dtype=np.float32)
            self.memo[key] = (x, np.einsum("nd,nd->n", x, x))
        return self.memo[key]

    def features(self, model: str = "apinet") -> np.ndarray:
        """``[N, D]`` float16, memory-mapped (pages load as rows are touched)."""
        return self._features[model]

    @cached_property
    def _features(self) -> dict[str, np.ndarray]:
        out = {}
        for model in MODELS:
            path = self.folder / features_file(model)
            if path.is_file():
                array = np.load(path, mmap_mode="r", allow_pickle=False)
                if array.ndim != 2 or array.shape[0] != len(self):
                    raise AtlasError(f"{path}: shape {array.shape} does not fit {len(self)} rows")
                out[model] = array
        return out

    @cached_property
    def index_of(self) -> dict[str, int]:
        return {str(i): n for n, i in enumerate(self.columns["id"])}

    # ------------------------------------------------------------------ per-row files
    def thumbnails(self, rows: list[int] | np.ndarray) -> list[bytes]:
        """The thumbnail bytes (WebP) of ``rows``, reading only the row groups that hold them."""
        import pyarrow.parquet as pq

        rows = [int(r) for r in rows]
        parquet = pq.ParquetFile(self.folder / TABLE)
        starts = np.cumsum([0] + [parquet.metadata.row_group(g).num_rows for g in range(parquet.num_row_groups)])
        groups: dict[int, list[int]] = {}
        for row in rows:
            groups.setdefault(int(np.searchsorted(starts, row, side="right") - 1), []).append(row)
        found: dict[int, bytes] = {}
        for group, members in groups.items():
            column = parquet.read_row_group(group, columns=["thumbnail"]).column(0)
            for row in members:
                found[row] = column[row - int(starts[group])].as_py()
        return [found[r] for r in rows]

    def image_bytes(self, row: int) -> bytes:
        """The full image of ``row`` as encoded bytes (a file read, or a SynthBirds render as PNG)."""
        path = str(self.columns["path"][row])
        return load_source_bytes(path)

    def row(self, index: int) -> dict[str, Any]:
        return {name: _scalar(values[index]) for name, values in self.columns.items()}


SYNTH_PREFIX = "synthbirds://"


def synth_path(seed: int, split: str, index: int, image_size: int) -> str:
    """The ``path`` of a SynthBirds image: enough to render it again, byte for byte."""
    return f"{SYNTH_PREFIX}{seed}/{split}/{index}?size={image_size}"


def load_source_bytes(path: str) -> bytes:
    if path.startswith(SYNTH_PREFIX):
        import io

        from ..data import SynthBirds

        where, _, query = path[len(SYNTH_PREFIX):].partition("?size=")
        seed, split, index = where.split("/")
        image = SynthBirds(split=split, seed=int(seed), image_size=int(query)).load_pil(int(index))
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return buffer.getvalue()
    return Path(path).read_bytes()


def _to_numpy(column) -> np.ndarray:
    import pyarrow as pa

    if pa.types.is_fixed_size_list(column.type):
        flat = column.combine_chunks().flatten().to_numpy(zero_copy_only=False)
        return np.asarray(flat).reshape(len(column), column.type.list_size)
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        return column.to_numpy(zero_copy_only=False).astype(object)
    return column.to_numpy()


def _scalar(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value
