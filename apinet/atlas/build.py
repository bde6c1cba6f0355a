"""Build an atlas: one pass of a dataset through API-Net and the baseline, written in resumable chunks.

The images are split into fixed chunks (by position in the dataset's sorted order). Each chunk is
written atomically (features first, its Parquet rows last: the rows are the chunk's commit mark),
so a killed build keeps every finished chunk and a re-run skips them. Under ``torchrun`` rank r
builds the chunks ``k`` with ``k % world == r``; rank 0 then joins them, lays out the map, mines
every image's partners, measures their mechanism strength and writes the manifest, last.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import io
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from .._io import atomic_write, file_sha256
from ..errors import UserError
from .store import ATLAS_FORMAT, BAD_IMAGES, MANIFEST, MODELS, ROW_GROUP, TABLE, AtlasError, features_file, synth_path

__all__ = ["AtlasItem", "BuildResult", "build_atlas", "match_classes", "resolve_data_spec"]

PLAN = "build.json"
CHUNKS = "chunks"
TOP_K = 5


@dataclass(frozen=True)
class AtlasItem:
    id: str  # unique: the path relative to the dataset root (SynthBirds: split/index)
    path: str  # absolute file path, or a synthbirds:// reference
    class_name: str  # the dataset's name of the class (kept for unlabelled images)
    label: int  # the checkpoints' index of class_name; -1 when unlabelled


@dataclass(frozen=True)
class BuildResult:
    folder: Path
    images: int
    built_now: int  # images computed by this run (the rest were resumed)
    bad: list[dict[str, str]]
    complete: bool  # False on ranks other than 0, which leave finishing to rank 0


# --------------------------------------------------------------------------------------------------
# Data and class names
# --------------------------------------------------------------------------------------------------


def resolve_data_spec(data: str) -> str:
    """``synthbirds`` and ``kind:PATH`` specs as they are; a bare folder becomes the spec of what it holds
    (CUB-200-2011, FGVC-Aircraft, Stanford Cars, else an image folder with one sub-folder per class)."""
    text = data.strip()
    kind = text.partition(":")[0].lower()
    if kind in ("synthbirds", "cub", "folder", "aircraft", "cars", "gallery") and not Path(text).exists():
        return text
    root = Path(text).expanduser()
    if root.is_file() and root.suffix.lower() == ".json":  # an app gallery.json: converted by name
        return f"gallery:{root}"
    if not root.is_dir():
        raise UserError(f"--data {data}: not a dataset spec (synthbirds, cub:PATH, folder:PATH, aircraft:PATH, "
                        f"cars:PATH) nor an existing folder")
    if (root / "CUB_200_2011").is_dir() or (root / "images.txt").is_file():
        return f"cub:{root}"
    if (root / "fgvc-aircraft-2013b").is_dir():
        return f"aircraft:{root}"
    if (root / "stanford_cars").is_dir():
        return f"cars:{root}"
    return f"folder:{root}"


def _key(name: str) -> str:
    """Names compared forgivingly: case, CUB's ``NNN.`` prefix, spaces, ``_`` and ``-`` do not matter."""
    return re.sub(r"[^0-9a-z]+", "", re.sub(r"^\d+\.", "", name.strip()).casefold())


def match_classes(dataset_names: list[list[str]], checkpoint_names: list[str], *, unlabelled: bool) -> list[int]:
    """The checkpoints' class index of each dataset class, matched by name (never by position).

    ``dataset_names[i]`` lists the names dataset class i goes by (readable name, raw folder name).
    A class no checkpoint name matches is refused in one line naming it, or with ``unlabelled``
    gets -1 (its images are kept without a label).
    """
    exact = {name: i for i, name in enumerate(checkpoint_names)}
    loose: dict[str, int] = {}
    for i, name in enumerate(checkpoint_names):
        loose.setdefault(_key(name), i)
    out, unknown = [], []
    for names in dataset_names:
        found = next((exact[n] for n in names if n in exact), None)
        if found is None:
            found = next((loose[_key(n)] for n in names if _key(n) in loose), None)
        if found is None:
            unknown.append(names[0])
            found = -1
        out.append(found)
    if unknown and not unlabelled:
        shown = ", ".join(repr(n) for n in unknown[:20]) + (f" and {len(unknown) - 20} more" if len(unknown) > 20 else "")
        raise UserError(f"{len(unknown)} class name(s) the checkpoints do not know: {shown} (they know "
                        f"{len(checkpoint_names)}, e.g. {', '.join(repr(n) for n in checkpoint_names[:3])}); "
                        "rename the folders, or pass --unlabelled to keep those images without a label")
    return out


def _dataset(spec: str, split: str, image_size: int | None):
    from ..data import DatasetError, build_dataset, split_options

    kind = spec.partition(":")[0].lower()
    if kind == "gallery":
        return _gallery_dataset(Path(spec.partition(":")[2]))
    try:
        if kind == "folder":
            from ..data.folder import SPLIT_FOLDERS

            root = Path(spec.partition(":")[2])
            has_splits = any((root / s).is_dir() for s in SPLIT_FOLDERS)
            from ..data import ImageFolderDataset

            return ImageFolderDataset(root, split=split if has_splits else None)
        return build_dataset(spec, split, None, **split_options(spec, split, image_size=image_size))
    except DatasetError as exc:
        raise UserError(str(exc)) from None


def _gallery_dataset(manifest: Path):
    """The images of an app ``gallery.json`` (the format this atlas retires), classes by their names.

    Each entry's ``class_name`` (else ``classes[label]``) is its class: the numbers are never trusted
    as the checkpoint's class indices. Files outside the gallery folder are refused.
    """
    from ..data.base import FileImageDataset

    try:
        meta = json.loads(manifest.read_text())
        classes, entries = list(meta.get("classes") or []), list(meta["images"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise UserError(f"{manifest}: not a readable gallery.json ({exc})") from None
    root = manifest.parent.resolve()
    names, paths = [], []
    for entry in entries:
        try:
            name = entry.get("class_name")
            if name is None:
                name = classes[int(entry["label"])]
            path = (root / str(entry["file"])).resolve()
        except (KeyError, IndexError, TypeError, ValueError, AttributeError):
            raise UserError(f"{manifest}: an entry without a class name or file: {str(entry)[:80]}") from None
        if root not in path.parents:
            raise UserError(f"{manifest}: {entry['file']} is outside the gallery folder")
        names.append(str(name))
        paths.append(path)
    unique = sorted(set(names))
    dataset = FileImageDataset(name=f"gallery:{manifest}", paths=paths, labels=[unique.index(n) for n in names],
                               classes=unique)
    dataset.root = root
    return dataset


def dataset_items(dataset, spec: str, split: str, checkpoint_names: list[str], *, unlabelled: bool) -> list[AtlasItem]:
    """Every image of ``dataset`` as an :class:`AtlasItem`, its class matched by name."""
    folder_names = getattr(dataset, "folder_names", None)
    names = [[c] + ([folder_names[i]] if folder_names else []) for i, c in enumerate(dataset.classes)]
    mapping = match_classes(names, checkpoint_names, unlabelled=unlabelled)
    items = []
    if hasattr(dataset, "paths"):
        root = Path(getattr(dataset, "root", Path(spec.partition(":")[2])))
        for path, label in zip(dataset.paths, dataset.labels):
            rel = os.path.relpath(path, root).replace(os.sep, "/")
            items.append(AtlasItem(rel, os.path.abspath(path), dataset.classes[label], mapping[label]))
    else:  # SynthBirds: rendered, so the path is a reference that renders it again
        for index, label in enumerate(dataset.labels):
            items.append(AtlasItem(f"{split}/{index:06d}", synth_path(dataset.seed, split, index, dataset.image_size),
                                   dataset.classes[label], mapping[label]))
    ids = [it.id for it in items]
    if len(set(ids)) != len(ids):  # cannot happen for relative paths; guard the invariant anyway
        raise UserError(f"{spec}: two images share an id")
    return items


# --------------------------------------------------------------------------------------------------
# Decoding (in DataLoader workers, overlapping the forward passes)
# --------------------------------------------------------------------------------------------------


def thumbnail_bytes(image, size: int) -> bytes:
    """A WebP thumbnail, aspect kept, longer side ``size`` px."""
    small = image.copy()
    small.thumbnail((size, size))
    buffer = io.BytesIO()
    small.save(buffer, format="WEBP", quality=80, method=4)
    return buffer.getvalue()


class _Decoded(torch.utils.data.Dataset):
    def __init__(self, dataset, transforms: list[Callable], thumb_size: int) -> None:
        self.dataset, self.transforms, self.thumb_size = dataset, transforms, thumb_size

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        try:
            image = self.dataset.load_pil(index)
            tensors = [t(image) for t in self.transforms]
            return index, tensors, thumbnail_bytes(image, self.thumb_size), None
        except (OSError, ValueError) as exc:  # ImageDecodeError is a ValueError; a bad image never stops a build
            return index, None, None, " ".join(str(getattr(exc, "reason", exc)).split())[:300]


def _collate(batch):
    return batch


class _ChunkBatches(torch.utils.data.Sampler):
    """Batches of dataset positions that never cross a chunk boundary."""

    def __init__(self, chunks: list[tuple[int, int]], batch_size: int) -> None:
        self.batches = [list(range(i, min(e, i + batch_size))) for s, e in chunks for i in range(s, e, batch_size)]

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


# --------------------------------------------------------------------------------------------------
# The build
# --------------------------------------------------------------------------------------------------


def _describe_checkpoint(path: str | Path, card: dict[str, Any]) -> dict[str, Any]:
    return {"path": str(path), "sha256": card["weights_sha256"], "architecture": card.get("architecture"),
            "backbone": card.get("backbone"), "num_classes": card.get("num_classes"),
            "versions": card.get("versions", {})}


def _items_digest(items: list[AtlasItem]) -> str:
    digest = hashlib.sha256()
    for it in items:
        digest.update(f"{it.id}\t{it.path}\t{it.class_name}\t{it.label}\n".encode())
    return digest.hexdigest()


def _check_plan(out: Path, plan: dict[str, Any]) -> None:
    """Refuse to resume into (or finish over) an atlas of other data or other checkpoints."""
    for name in (PLAN, MANIFEST):
        path = out / name
        if not path.is_file():
            continue
        try:
            old = json.loads(path.read_text())
        except (OSError, ValueError):
            raise AtlasError(f"{path}: unreadable; delete {out} or choose another --out") from None
        old_plan = old.get("plan", old) if name == MANIFEST else old
        for key in ("data", "split", "checkpoints_sha256", "items_sha256", "chunk_size", "thumbnail_size"):
            if old_plan.get(key) != plan[key]:
                what = {"checkpoints_sha256": "checkpoints", "items_sha256": "images or classes"}.get(key, key)
                raise AtlasError(f"{out} holds an atlas of other {what} ({name}: {str(old_plan.get(key))[:60]} vs now "
                                 f"{str(plan[key])[:60]}); choose another --out or delete that folder")


def build_atlas(data: str, checkpoint: str | Path, baseline: str | Path, out: str | Path, *, split: str = "test",
                unlabelled: bool = False, batch_size: int = 32, workers: int = 0, device: str = "cpu",
                chunk_size: int = 512, thumbnail_size: int = 64, threads: int = 1, progress: bool = True,
                limit: int | None = None, on_progress: Callable[[int, int], None] | None = None) -> BuildResult:
    """Compute an atlas of ``data`` (a spec or a folder, see :func:`resolve_data_spec`) into ``out``.

    Raises :class:`~apinet.errors.UserError` (one line) for unknown class names (unless
    ``unlabelled``), checkpoints that disagree on the class list, or an ``out`` holding another atlas.
    ``limit`` keeps the first that many images (tests and benchmarks). ``on_progress(done, total)``
    is called after every batch (e.g. an app's progress bar), besides the tqdm bar of ``progress``.
    """
    from .._io import checkpoint_files, dataset_root, refuse_overwriting_inputs
    from ..checkpoint import CheckpointError, load_model
    from ..data import Preprocess
    from ..distributed import barrier, init_distributed

    out = Path(out)
    spec = resolve_data_spec(data)
    data_root = Path(spec.partition(":")[2]).parent if spec.startswith("gallery:") else dataset_root(spec)
    refuse_overwriting_inputs({"--out": out}, {"--checkpoint": checkpoint_files(checkpoint),
                                               "--baseline": checkpoint_files(baseline), "--data": data_root},
                              folders=["--out"])
    info = init_distributed(device)
    run_device = torch.device(f"cuda:{info.local_rank}" if device == "cuda" else "cpu")
    try:
        models = {"apinet": load_model(checkpoint, map_location=run_device),
                  "baseline": load_model(baseline, map_location=run_device)}
    except CheckpointError as exc:
        raise UserError(str(exc)) from None
    cards = {m: card for m, (_, card) in models.items()}
    if cards["apinet"].get("architecture") != "apinet":
        raise UserError(f"--checkpoint {checkpoint}: an {cards['apinet'].get('architecture')} checkpoint, not API-Net")
    names = [list(cards[m].get("class_names") or []) for m in MODELS]
    if names[0] != names[1] or not names[0]:
        diff = sorted(set(names[0]) ^ set(names[1]))
        raise UserError("the checkpoints disagree on the class list (" + (
            f"{len(names[0])} vs {len(names[1])} classes" if len(names[0]) != len(names[1]) else
            f"differing names {diff[:5]}" if diff else "same names in another order") + "): build an atlas of one pair")
    class_names = names[0]
    image_size = (cards["apinet"].get("dataset") or {}).get("image_size")
    dataset = _dataset(spec, split, image_size)
    items = dataset_items(dataset, spec, split, class_names, unlabelled=unlabelled)
    if limit is not None:
        items = items[:limit]
    preprocess = {m: Preprocess.from_card(cards[m]) for m in MODELS}
    plan = {"data": spec, "split": split, "images": len(items), "items_sha256": _items_digest(items),
            "checkpoints_sha256": {m: cards[m]["weights_sha256"] for m in MODELS}, "chunk_size": int(chunk_size),
            "thumbnail_size": int(thumbnail_size), "unlabelled": bool(unlabelled)}
    _check_plan(out, plan)
    if (out / MANIFEST).is_file():  # complete, and of these very images and checkpoints: nothing to do
        bad = json.loads((out / BAD_IMAGES).read_text()) if (out / BAD_IMAGES).is_file() else []
        return BuildResult(out, int(json.loads((out / MANIFEST).read_text()).get("images", 0)), 0, bad,
                           info.rank == 0)
    chunk_dir = out / CHUNKS
    barrier()
    if info.rank == 0:
        chunk_dir.mkdir(parents=True, exist_ok=True)
        for tmp in chunk_dir.glob(".*.tmp"):  # left by a killed build: never a finished chunk
            tmp.unlink(missing_ok=True)
        if not (out / PLAN).is_file():
            atomic_write(out / PLAN, lambda tmp: tmp.write_text(json.dumps(plan, indent=2) + "\n"))
    barrier()
    chunks = [(s, min(len(items), s + chunk_size)) for s in range(0, len(items), chunk_size)]
    mine = [c for k, c in enumerate(chunks) if k % info.world_size == info.rank]
    pending = [c for c in mine if not (chunk_dir / f"{c[0]:09d}.parquet").is_file()]
    built = _run_chunks(items, dataset, pending, models, preprocess, chunk_dir, batch_size=batch_size, workers=workers,
                        thumb_size=thumbnail_size, device=run_device, progress=progress and info.rank == 0,
                        on_progress=on_progress,
                        class_count=len(class_names), threads=threads)
    barrier()
    if info.rank != 0:
        return BuildResult(out, len(items), built, [], False)
    bad = _finish(out, items, chunks, models, cards, plan, class_names, checkpoint, baseline, threads=threads)
    return BuildResult(out, len(items), built, bad, True)


def _run_chunks(items, dataset, pending, models, preprocess, chunk_dir: Path, *, batch_size, workers, thumb_size,
                device, progress, class_count, threads, on_progress=None) -> int:
    """Compute and write every pending chunk; returns how many images were computed."""
    if not pending:
        return 0
    from tqdm.auto import tqdm

    same = preprocess["apinet"] == preprocess["baseline"]
    transforms = [preprocess["apinet"].transform(False)] + ([] if same else [preprocess["baseline"].transform(False)])
    loader = torch.utils.data.DataLoader(_Decoded(dataset, transforms, thumb_size), batch_sampler=_ChunkBatches(pending, batch_size),
                                         collate_fn=_collate, num_workers=workers, prefetch_factor=4 if workers else None)
    total = sum(e - s for s, e in pending)
    bar = tqdm(total=total, desc="atlas", unit="img", disable=not progress, dynamic_ncols=True)
    bounds = iter(pending)
    current = next(bounds)
    acc: list = []
    done = 0
    for batch in loader:
        if batch[0][0] >= current[1]:
            raise AssertionError("chunk order broken")  # the sampler yields chunks in order
        acc.extend(_forward(batch, models, items, device, same, class_count))
        bar.update(len(batch))
        done += len(batch)
        if on_progress is not None:
            on_progress(done, total)
        if batch[-1][0] == current[1] - 1:
            _write_chunk(chunk_dir, current[0], acc)
            acc = []
            current = next(bounds, (None, None))
    bar.close()
    return total


def _forward(batch, models, items, device, same: bool, class_count: int) -> list[dict[str, Any]]:
    """One batch through both models; a row per image (bad images: a row with ``bad`` set)."""
    good = [b for b in batch if b[1] is not None]
    results: dict[str, dict[str, np.ndarray]] = {}
    if good:
        for k, model_name in enumerate(MODELS):
            model = models[model_name][0]
            x = torch.stack([b[1][0 if same else k] for b in good]).to(device)
            with torch.inference_mode():
                pooled = model.pool_features(model.forward_features(x))
                probs = model.forward_head(pooled).float().softmax(1)
            top_p, top_i = probs.topk(min(TOP_K, class_count), dim=1)
            results[model_name] = {"pooled": pooled.float().cpu().numpy(), "top_p": top_p.cpu().numpy(),
                                   "top_i": top_i.cpu().numpy()}
    rows, g = [], 0
    for index, tensors, thumb, reason in batch:
        item = items[index]
        row: dict[str, Any] = {"position": index, "id": item.id, "path": item.path, "class_name": item.class_name,
                               "label": item.label}
        if tensors is None:
            row["bad"] = reason
        else:
            row["thumbnail"] = thumb
            for model_name in MODELS:
                r = results[model_name]
                row[f"{model_name}_pooled"] = r["pooled"][g]
                row[f"{model_name}_top5"] = _pad(r["top_i"][g], -1).astype(np.int32)
                row[f"{model_name}_top5_prob"] = _pad(r["top_p"][g], 0.0).astype(np.float32)
            g += 1
        rows.append(row)
    return rows


def _pad(values: np.ndarray, fill) -> np.ndarray:
    return np.concatenate([values, np.full(TOP_K - len(values), fill, dtype=values.dtype)]) if len(values) < TOP_K else values


def _save_npy(path: Path, array: np.ndarray) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.save(fh, array, allow_pickle=False)

    atomic_write(path, write)


def _write_chunk(chunk_dir: Path, start: int, rows: list[dict[str, Any]]) -> None:
    """Features, bad images, then the rows (the commit mark), each atomically."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    good = [r for r in rows if "bad" not in r]
    for model in MODELS:
        dim = good[0][f"{model}_pooled"].shape[0] if good else 0
        feats = np.stack([r[f"{model}_pooled"] for r in good]).astype(np.float16) if good else np.zeros((0, dim), np.float16)
        _save_npy(chunk_dir / f"{start:09d}.{model}.npy", feats)
    bad = [{"id": r["id"], "path": r["path"], "reason": r["bad"]} for r in rows if "bad" in r]
    atomic_write(chunk_dir / f"{start:09d}.bad.json", lambda tmp: tmp.write_text(json.dumps(bad) + "\n"))
    table = pa.table({
        "id": pa.array([r["id"] for r in good], pa.string()),
        "path": pa.array([r["path"] for r in good], pa.string()),
        "class_name": pa.array([r["class_name"] for r in good], pa.string()),
        "label": pa.array([r["label"] for r in good], pa.int32()),
        **{f"{m}_top5": pa.array([r[f"{m}_top5"].tolist() for r in good], pa.list_(pa.int32(), TOP_K)) for m in MODELS},
        **{f"{m}_top5_prob": pa.array([r[f"{m}_top5_prob"].tolist() for r in good], pa.list_(pa.float32(), TOP_K))
           for m in MODELS},
        "thumbnail": pa.array([r["thumbnail"] for r in good], pa.binary()),
    })
    atomic_write(chunk_dir / f"{start:09d}.parquet", lambda tmp: pq.write_table(table, tmp))


# --------------------------------------------------------------------------------------------------
# Finishing (rank 0): join the chunks, layout, partners, mechanism strength, OOD, manifest
# --------------------------------------------------------------------------------------------------


def _finish(out: Path, items, chunks, models, cards, plan, class_names, checkpoint, baseline, *, threads: int) -> list:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from .. import __version__
    from ..mechanism import pair_strength
    from ..ood import FeatureReference
    from .layout import layout_2d
    from .query import mine_partners

    chunk_dir = out / CHUNKS
    tables, bad = [], []
    feats: dict[str, list[np.ndarray]] = {m: [] for m in MODELS}
    for start, _ in chunks:
        tables.append(pq.read_table(chunk_dir / f"{start:09d}.parquet", columns=["label"]))
        bad.extend(json.loads((chunk_dir / f"{start:09d}.bad.json").read_text()))
        for m in MODELS:
            feats[m].append(np.load(chunk_dir / f"{start:09d}.{m}.npy", allow_pickle=False))
    # a chunk of only unreadable images stored a [0, 0] array
    features = {m: np.concatenate([f for f in feats[m] if f.shape[0]] or [np.zeros((0, 0), np.float16)]) for m in MODELS}
    labels = np.concatenate([t.column("label").to_numpy() for t in tables]).astype(np.int64) if tables else np.zeros(0, np.int64)
    n = len(labels)
    x32 = {m: torch.from_numpy(features[m].astype(np.float32)) for m in MODELS}
    columns: dict[str, np.ndarray] = {}
    # the prediction is the forward pass's top-1 (from float32 features, not the stored float16 ones)
    predictions = _read_columns(chunk_dir, chunks, [f"{m}_top5" for m in MODELS] + [f"{m}_top5_prob" for m in MODELS])
    for m in MODELS:
        columns[f"{m}_pred"] = predictions[f"{m}_top5"][:, 0].astype(np.int32)
        columns[f"{m}_prob"] = predictions[f"{m}_top5_prob"][:, 0].astype(np.float32)
    reference = FeatureReference.from_checkpoint(checkpoint, cards["apinet"])
    columns["ood"] = (reference.scores(x32["apinet"]).astype(np.float32) if reference is not None and n
                      else np.full(n, np.nan, np.float32))
    layout = layout_2d(features["apinet"], threads=threads)
    columns["x"], columns["y"] = layout.xy[:, 0], layout.xy[:, 1]
    mined = labels.copy()
    mined[labels < 0] = columns["apinet_pred"][labels < 0]
    intra, inter, d_intra, d_inter = mine_partners(features["apinet"], mined, labels >= 0)
    columns.update(intra=intra.astype(np.int32), inter=inter.astype(np.int32), intra_distance=d_intra,
                   inter_distance=d_inter)
    model = models["apinet"][0]
    for kind, partner in (("intra", intra), ("inter", inter)):
        ok = partner >= 0
        values = {k: np.full(n, np.nan, np.float32) for k in ("gate_gap", "logit_gap", "self_minus_other")}
        if ok.any():
            device = next(model.parameters()).device
            strength = pair_strength(model, x32["apinet"][ok].to(device), x32["apinet"][partner[ok]].to(device),
                                     torch.from_numpy(mined[ok]))
            for k in values:
                values[k][ok] = getattr(strength, k)
        for k, v in values.items():
            columns[f"{kind}_{k}"] = v
    for m in MODELS:
        _save_npy(out / features_file(m), features[m])

    def write_table(tmp: Path) -> None:
        writer = None
        offset = 0
        for start, _ in chunks:
            part = pq.read_table(chunk_dir / f"{start:09d}.parquet")
            rows = slice(offset, offset + part.num_rows)
            offset += part.num_rows
            for name, values in columns.items():
                part = part.append_column(name, pa.array(values[rows]))
            if writer is None:
                writer = pq.ParquetWriter(tmp, part.schema)
            writer.write_table(part, row_group_size=ROW_GROUP)
        if writer is None:
            raise AtlasError(f"{out}: no chunk to join")
        writer.close()

    atomic_write(out / TABLE, write_table)
    atomic_write(out / BAD_IMAGES, lambda tmp: tmp.write_text(json.dumps(bad, indent=1) + "\n"))
    import pyarrow
    import openTSNE

    manifest = {
        "format": ATLAS_FORMAT,
        "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "images": n, "bad_images": len(bad), "class_names": class_names,
        "data": {"spec": plan["data"], "split": plan["split"]},
        "checkpoints": {"apinet": _describe_checkpoint(checkpoint, cards["apinet"]),
                        "baseline": _describe_checkpoint(baseline, cards["baseline"])},
        "features": {m: {"file": features_file(m), "dtype": "float16", "shape": list(features[m].shape)} for m in MODELS},
        "layout": {"method": layout.method, "features": "apinet"},
        "partners": {"features": "apinet", "distance": "squared euclidean", "candidates": "labelled images"},
        "ood": reference.card_entry() if reference is not None else None,
        "plan": plan,
        "versions": {"apinet": __version__, "torch": torch.__version__, "pyarrow": pyarrow.__version__,
                     "openTSNE": openTSNE.__version__},
        "files_sha256": {TABLE: file_sha256(out / TABLE)},
    }
    atomic_write(out / MANIFEST, lambda tmp: tmp.write_text(json.dumps(manifest, indent=2) + "\n"))
    # The chunks are in the atlas now; the manifest (with the plan) answers a re-run from here on.
    import shutil

    shutil.rmtree(chunk_dir, ignore_errors=True)
    (out / PLAN).unlink(missing_ok=True)
    return bad


def _read_columns(chunk_dir: Path, chunks, names: list[str]) -> dict[str, np.ndarray]:
    import pyarrow.parquet as pq

    from .store import _to_numpy

    parts = [pq.read_table(chunk_dir / f"{start:09d}.parquet", columns=names) for start, _ in chunks]
    return {name: np.concatenate([_to_numpy(p.column(name)) for p in parts]) for name in names}
