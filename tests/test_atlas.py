"""The pair atlas: class matching by name, resume, bad images, stale / unsafe outputs, queries."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from apinet.atlas import Atlas, AtlasError, build_atlas, cell_pair, confusion, confusions, mine_partners, nearest_partners
from apinet.atlas import build as build_module
from apinet.atlas.layout import layout_2d
from apinet.data import SynthBirds
from apinet.errors import UserError
from apinet.pairs import mine_pairs

NAMES = list(SynthBirds.CLASSES)


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    from tests.app_checkpoints import make_app_assets

    root = make_app_assets(tmp_path_factory.mktemp("atlas"), per_class=1)["checkpoints"]
    return root / "apinet_synthbirds.safetensors", root / "baseline_synthbirds.safetensors"


def _folder(root: Path, classes: dict[str, int], per_class: int = 2, *, seed: int = 0) -> dict[str, str]:
    """Class folders named as given (folder name -> SynthBirds class index), each holding
    img_000.png, img_001.png, ...: the same file names in every folder. Returns id -> true class name."""
    data = SynthBirds(split="test", image_size=64, seed=seed)
    truth = {}
    for folder, label in classes.items():
        (root / folder).mkdir(parents=True)
        for k in range(per_class):
            data.load_pil(label + k * len(NAMES)).save(root / folder / f"img_{k:03d}.png")
            truth[f"{folder}/img_{k:03d}.png"] = NAMES[label]
    return truth


def _build(data, ckpts, out, **kwargs):
    kwargs.setdefault("progress", False)
    kwargs.setdefault("workers", 0)
    return build_atlas(str(data), ckpts[0], ckpts[1], out, **kwargs)


def test_folder_classes_match_by_name_in_any_order_with_duplicate_file_names(tmp_path, ckpts):
    # folder names in other spellings and an order unrelated to the checkpoints' class indices
    classes = {"yellow-billed_warbler": 6, "Red-crowned Finch": 0, "017.Hook_billed_Flycatcher": 17,
               "spotted shrike": 14, "BLACK-CAPPED SHRIKE": 10}
    truth = _folder(tmp_path / "data", classes)
    result = _build(tmp_path / "data", ckpts, tmp_path / "atlas")
    assert result.complete and result.images == 10 and result.bad == []
    atlas = Atlas.open(tmp_path / "atlas")
    assert sorted(atlas.column("id")) == sorted(truth)  # ten unique ids although file names repeat
    for row in range(len(atlas)):
        rid = atlas.column("id")[row]
        assert NAMES[atlas.labels[row]] == truth[rid]  # the checkpoint's class of that folder
        assert Path(atlas.column("path")[row]) == (tmp_path / "data" / rid).resolve()
    # each row's prediction is the models' own on that very image
    from apinet import load_model
    from apinet.data import Preprocess, load_image

    model, card = load_model(ckpts[0])
    row = int(np.flatnonzero(atlas.column("id") == "spotted shrike/img_001.png")[0])
    x = Preprocess.from_card(card)(load_image(atlas.column("path")[row]))[None]
    with torch.no_grad():
        probs = model(x).softmax(1)[0]
    assert atlas.predictions("apinet")[row] == int(probs.argmax())
    assert atlas.column("apinet_prob")[row] == pytest.approx(float(probs.max()), abs=1e-5)
    assert list(atlas.column("apinet_top5")[row]) == probs.topk(5).indices.tolist()
    # features are float16 memory maps, one row per table row
    feats = atlas.features("apinet")
    assert feats.dtype == np.float16 and isinstance(feats, np.memmap) and feats.shape[0] == 10
    manifest = json.loads((tmp_path / "atlas" / "manifest.json").read_text())
    from apinet._io import file_sha256

    assert manifest["checkpoints"]["apinet"]["sha256"] == file_sha256(ckpts[0])
    assert manifest["checkpoints"]["baseline"]["sha256"] == file_sha256(ckpts[1])
    assert manifest["layout"]["method"] == "pca"  # 10 images: the fallback
    assert all(len(t) > 20 and t[:4] == b"RIFF" for t in atlas.thumbnails([0, 9]))  # WebP


def test_unknown_class_refused_in_one_line_or_kept_unlabelled(tmp_path, ckpts):
    _folder(tmp_path / "data", {"Red-crowned Finch": 0, "Purple Penguin": 3, "Golden-crowned Finch": 1})
    with pytest.raises(UserError) as info:
        _build(tmp_path / "data", ckpts, tmp_path / "refused")
    message = str(info.value)
    assert "\n" not in message and "'Purple Penguin'" in message and "--unlabelled" in message
    assert not (tmp_path / "refused").exists()  # refused before anything was written
    _build(tmp_path / "data", ckpts, tmp_path / "kept", unlabelled=True)
    atlas = Atlas.open(tmp_path / "kept")
    penguins = atlas.column("class_name") == "Purple Penguin"
    assert penguins.sum() == 2 and (atlas.labels[penguins] == -1).all()
    assert (atlas.labels[~penguins] >= 0).all()
    assert not atlas.correct("apinet")[penguins].any()
    # an unlabelled image is never a partner, but it has partners (mined as API-Net's prediction)
    assert not np.isin(np.flatnonzero(penguins), atlas.column("intra")).any()
    assert not np.isin(np.flatnonzero(penguins), atlas.column("inter")).any()
    assert (atlas.column("inter")[penguins] >= 0).all()


def test_checkpoints_that_disagree_on_classes_are_refused(tmp_path, ckpts):
    import apinet

    torch.manual_seed(3)
    other = apinet.Baseline("resnet18", num_classes=len(NAMES), output_stride=16).eval()
    names = NAMES[1:] + NAMES[:1]
    path = apinet.save_checkpoint(other, tmp_path / "b.safetensors", class_names=names,
                                  preprocess={"input_size": 64, "resize": 64})
    with pytest.raises(UserError, match="disagree on the class list"):
        build_atlas("synthbirds", ckpts[0], path, tmp_path / "out", progress=False, limit=4)


def test_bad_image_listed_and_skipped(tmp_path, ckpts):
    _folder(tmp_path / "data", {"Red-crowned Finch": 0, "Spotted Shrike": 14})
    (tmp_path / "data" / "Spotted Shrike" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    result = _build(tmp_path / "data", ckpts, tmp_path / "atlas")
    assert [b["id"] for b in result.bad] == ["Spotted Shrike/broken.png"]
    assert Atlas.open(tmp_path / "atlas").manifest["bad_images"] == 1
    listed = json.loads((tmp_path / "atlas" / "bad_images.json").read_text())
    assert listed[0]["path"].endswith("broken.png") and listed[0]["reason"]
    assert len(Atlas.open(tmp_path / "atlas")) == 4


def test_killed_build_resumes_and_skips_done_images(tmp_path, ckpts, monkeypatch):
    whole = _build("synthbirds", ckpts, tmp_path / "whole", limit=12, chunk_size=4)
    written = []
    real = build_module._write_chunk

    def dies_after_two(chunk_dir, start, rows):
        if len(written) == 2:
            raise KeyboardInterrupt  # a kill between chunks
        real(chunk_dir, start, rows)
        written.append(start)

    monkeypatch.setattr(build_module, "_write_chunk", dies_after_two)
    with pytest.raises(KeyboardInterrupt):
        _build("synthbirds", ckpts, tmp_path / "atlas", limit=12, chunk_size=4)
    monkeypatch.setattr(build_module, "_write_chunk", real)
    assert written == [0, 4] and not (tmp_path / "atlas" / "manifest.json").exists()
    computed = []
    real_forward = build_module._forward
    monkeypatch.setattr(build_module, "_forward", lambda batch, *a: computed.extend(b[0] for b in batch) or real_forward(batch, *a))
    resumed = _build("synthbirds", ckpts, tmp_path / "atlas", limit=12, chunk_size=4)
    assert sorted(computed) == [8, 9, 10, 11] and resumed.built_now == 4  # only the chunk never written
    a, b = Atlas.open(tmp_path / "whole"), Atlas.open(tmp_path / "atlas")
    assert list(a.column("id")) == list(b.column("id"))
    np.testing.assert_array_equal(a.features("apinet"), b.features("apinet"))
    np.testing.assert_array_equal(a.column("inter"), b.column("inter"))
    assert whole.built_now == 12
    again = _build("synthbirds", ckpts, tmp_path / "atlas", limit=12, chunk_size=4)
    assert again.built_now == 0 and again.complete  # complete: nothing recomputed


def test_stale_atlas_refused(tmp_path, ckpts):
    import apinet

    _build("synthbirds", ckpts, tmp_path / "atlas", limit=4)
    atlas = Atlas.open(tmp_path / "atlas")
    atlas.check_checkpoints(atlas.sha256("apinet"), atlas.sha256("baseline"))
    with pytest.raises(AtlasError, match=r"^stale atlas atlas: built with apinet weights") as info:
        atlas.check_checkpoints("0" * 64, atlas.sha256("baseline"))
    assert "\n" not in str(info.value)
    torch.manual_seed(5)
    retrained = apinet.Baseline("resnet18", num_classes=len(NAMES), output_stride=16).eval()
    path = apinet.save_checkpoint(retrained, tmp_path / "b2.safetensors", class_names=NAMES,
                                  preprocess={"input_size": 64, "resize": 64})
    with pytest.raises(AtlasError, match="holds an atlas of other checkpoints"):
        build_atlas("synthbirds", ckpts[0], path, tmp_path / "atlas", progress=False, limit=4)


def test_out_onto_an_input_refused(tmp_path, ckpts, capsys):
    from apinet.cli import main

    _folder(tmp_path / "data", {"Red-crowned Finch": 0})
    code = main(["atlas", "--data", str(tmp_path / "data"), "--checkpoint", str(ckpts[0]), "--baseline", str(ckpts[1]),
                 "--out", str(tmp_path / "data" / "atlas"), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: --out") and "inside the input folder" in err and "\n" not in err
    assert not (tmp_path / "data" / "atlas").exists()
    assert main(["atlas", "--data", "synthbirds", "--checkpoint", str(ckpts[0]), "--baseline", str(ckpts[1]),
                 "--out", str(ckpts[0]), "--no-progress"]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err


def test_mine_partners_is_the_papers_mining_at_any_block_size():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(40, 8)).astype(np.float32)
    labels = rng.integers(0, 4, size=40)
    intra, inter = mine_pairs(torch.from_numpy(features), torch.from_numpy(labels))
    for block in (3, 7, 4096):
        got = mine_partners(features, labels, block=block)
        np.testing.assert_array_equal(got[0], intra.numpy())
        np.testing.assert_array_equal(got[1], inter.numpy())
        d = ((features - features[got[1]]) ** 2).sum(1)
        np.testing.assert_allclose(got[3], d, rtol=1e-4)
    # candidates exclude rows; a class with one image has no intra partner
    candidates = labels != 3
    got = mine_partners(features, labels, candidates)
    assert not np.isin(np.flatnonzero(~candidates), got[1]).any()
    lonely = np.array([0, 0, 1])
    got = mine_partners(np.eye(3, dtype=np.float32), lonely)
    assert got[0].tolist() == [1, 0, -1] and np.isnan(got[2][2])


def test_confusion_and_cell_pair(tmp_path, ckpts):
    assert confusion(np.array([0, 0, 1, -1]), np.array([0, 1, 1, 0]), 2).tolist() == [[1, 1], [0, 1]]
    _build("synthbirds", ckpts, tmp_path / "atlas", limit=40)
    atlas = Atlas.open(tmp_path / "atlas")
    conf = confusions(atlas)
    assert conf.apinet.sum() == 40 and np.trace(conf.apinet) == atlas.correct("apinet").sum()
    np.testing.assert_array_equal(conf.difference, conf.apinet - conf.baseline)
    true, pred = np.unravel_index(np.argmax(conf.apinet - np.diag(np.diag(conf.apinet))), conf.apinet.shape)
    first, second = cell_pair(atlas, int(true), int(pred))
    assert atlas.labels[first] == true and atlas.predictions("apinet")[first] == pred
    same = np.flatnonzero(atlas.labels == pred)
    feats = atlas.features("apinet").astype(np.float32)
    assert second == same[np.argmin(((feats[same] - feats[first]) ** 2).sum(1))]
    assert cell_pair(atlas, 0, 0) is None
    # the live partner query agrees with the stored columns
    for row in (0, 17, 39):
        choice = nearest_partners(atlas, row)
        assert (choice.intra, choice.inter) == (atlas.column("intra")[row], atlas.column("inter")[row])


def test_layout_pca_for_tiny_sets_tsne_above():
    rng = np.random.default_rng(1)
    tiny = layout_2d(rng.normal(size=(10, 16)))
    assert tiny.method == "pca" and tiny.xy.shape == (10, 2) and np.abs(tiny.xy).max() == pytest.approx(1.0)
    x = np.concatenate([rng.normal(size=(30, 16)), rng.normal(size=(30, 16)) + 8.0])
    first, second = layout_2d(x), layout_2d(x)
    assert first.method.startswith("opentsne") and np.array_equal(first.xy, second.xy)  # seeded
    # the two blobs stay apart on the map
    a, b = first.xy[:30].mean(0), first.xy[30:].mean(0)
    spread = max(first.xy[:30].std(0).max(), first.xy[30:].std(0).max())
    assert np.linalg.norm(a - b) > 3 * spread


def _ddp_worker(rank: int, world: int, port: int, args: tuple) -> None:
    import os

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    import torch.distributed as dist

    try:
        apinet_path, baseline_path, out = args
        build_atlas("synthbirds", apinet_path, baseline_path, out, progress=False, limit=14, chunk_size=3, workers=0)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


@pytest.mark.slow
def test_torchrun_shards_chunks_across_ranks_and_matches_one_process(tmp_path, ckpts):
    import torch.multiprocessing as mp

    from tests.test_ddp import _free_port

    mp.spawn(_ddp_worker, args=(2, _free_port(), (str(ckpts[0]), str(ckpts[1]), str(tmp_path / "ddp"))), nprocs=2)
    _build("synthbirds", ckpts, tmp_path / "one", limit=14, chunk_size=3)
    ddp, one = Atlas.open(tmp_path / "ddp"), Atlas.open(tmp_path / "one")
    assert len(ddp) == 14 and list(ddp.column("id")) == list(one.column("id"))
    np.testing.assert_array_equal(ddp.column("apinet_pred"), one.column("apinet_pred"))
    # float16 storage: two processes sum in another order than one, so a value may round one unit apart
    np.testing.assert_allclose(ddp.features("baseline"), one.features("baseline"), rtol=2e-3, atol=1e-6)
    np.testing.assert_array_equal(ddp.column("intra"), one.column("intra"))


def test_gallery_json_converts_by_class_name_not_by_label_number(tmp_path, ckpts):
    # the case: a 5-class gallery labelled 0-4, whose label numbers mean nothing to the checkpoints
    data = SynthBirds(split="test", image_size=64)
    chosen = [5, 11, 2, 19, 7]  # Streaked Warbler first
    entries, gallery = [], tmp_path / "gallery"
    gallery.mkdir()
    for label, c in enumerate(chosen):
        data.load_pil(c).save(gallery / f"img_{label}.png")
        entries.append({"file": f"img_{label}.png", "label": label, "class_name": NAMES[c]})
    (gallery / "gallery.json").write_text(json.dumps({"images": entries, "classes": [NAMES[c] for c in chosen]}))
    _build(gallery / "gallery.json", ckpts, tmp_path / "atlas")
    atlas = Atlas.open(tmp_path / "atlas")
    got = {i: NAMES[l] for i, l in zip(atlas.column("id"), atlas.labels)}
    assert got == {f"img_{k}.png": NAMES[c] for k, c in enumerate(chosen)}
    assert got["img_0.png"] == "Streaked Warbler"


def test_batches_never_cross_a_chunk_and_progress_counts_images(tmp_path, ckpts):
    seen = []
    _build("synthbirds", ckpts, tmp_path / "atlas", limit=8, chunk_size=4, batch_size=3,
           on_progress=lambda done, total: seen.append((done, total)))
    assert seen == [(3, 8), (4, 8), (7, 8), (8, 8)]  # chunk 0: batches of 3 + 1, chunk 1 the same
