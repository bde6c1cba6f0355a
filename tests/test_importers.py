"""import-official / import-classifier: same numbers as the source model, one-line refusals of bad files."""

from __future__ import annotations

import os
import pickle
import re

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from torch import nn
from torchvision import models

from apinet import load_model
from apinet.cli import main
from apinet.data.transforms import Preprocess
from apinet.importers import OFFICIAL_PREPROCESS, import_classifier, import_official, read_class_names

device = torch.device("cpu")  # the official get_pairs moves its indices to a module-level `device`


# --------------------------------------------------------------------------------------------------
# The official model (PeiqinZhuang/API-Net, models.py), as quoted in seed 002. Only the trunk
# constructor and the average-pooling kernel are parameters: the official code hard-codes
# models.resnet101(pretrained=True) and AvgPool2d(14) for 448 px inputs.
# --------------------------------------------------------------------------------------------------


def pdist(vectors):
    distance_matrix = -2 * vectors.mm(torch.t(vectors)) + vectors.pow(2).sum(dim=1).view(1, -1) + vectors.pow(2).sum(
        dim=1).view(-1, 1)
    return distance_matrix


class API_Net(nn.Module):
    def __init__(self, resnet=models.resnet101, num_classes=200, avg_kernel=14):
        super(API_Net, self).__init__()

        resnet101 = resnet(weights=None)
        layers = list(resnet101.children())[:-2]
        dim = resnet101.fc.in_features  # 2048 for ResNet-101

        self.conv = nn.Sequential(*layers)
        self.avg = nn.AvgPool2d(kernel_size=avg_kernel, stride=1)
        self.map1 = nn.Linear(dim * 2, 512)
        self.map2 = nn.Linear(512, dim)
        self.fc = nn.Linear(dim, num_classes)
        self.drop = nn.Dropout(p=0.5)
        self.sigmoid = nn.Sigmoid()

    def forward(self, images, targets=None, flag='train'):
        conv_out = self.conv(images)
        pool_out = self.avg(conv_out).squeeze()

        if flag == 'train':
            intra_pairs, inter_pairs, intra_labels, inter_labels = self.get_pairs(pool_out, targets)

            features1 = torch.cat([pool_out[intra_pairs[:, 0]], pool_out[inter_pairs[:, 0]]], dim=0)
            features2 = torch.cat([pool_out[intra_pairs[:, 1]], pool_out[inter_pairs[:, 1]]], dim=0)
            labels1 = torch.cat([intra_labels[:, 0], inter_labels[:, 0]], dim=0)
            labels2 = torch.cat([intra_labels[:, 1], inter_labels[:, 1]], dim=0)

            mutual_features = torch.cat([features1, features2], dim=1)
            map1_out = self.map1(mutual_features)
            map2_out = self.drop(map1_out)
            map2_out = self.map2(map2_out)

            gate1 = torch.mul(map2_out, features1)
            gate1 = self.sigmoid(gate1)

            gate2 = torch.mul(map2_out, features2)
            gate2 = self.sigmoid(gate2)

            features1_self = torch.mul(gate1, features1) + features1
            features1_other = torch.mul(gate2, features1) + features1

            features2_self = torch.mul(gate2, features2) + features2
            features2_other = torch.mul(gate1, features2) + features2

            logit1_self = self.fc(self.drop(features1_self))
            logit1_other = self.fc(self.drop(features1_other))
            logit2_self = self.fc(self.drop(features2_self))
            logit2_other = self.fc(self.drop(features2_other))

            return logit1_self, logit1_other, logit2_self, logit2_other, labels1, labels2

        elif flag == 'val':
            return self.fc(pool_out)

    def get_pairs(self, embeddings, labels):
        distance_matrix = pdist(embeddings).detach().cpu().numpy()

        labels = labels.detach().cpu().numpy().reshape(-1, 1)
        num = labels.shape[0]
        dia_inds = np.diag_indices(num)
        lb_eqs = (labels == labels.T)
        lb_eqs[dia_inds] = False
        dist_same = distance_matrix.copy()
        dist_same[lb_eqs == False] = np.inf  # noqa: E712 (official code)
        intra_idxs = np.argmin(dist_same, axis=1)

        dist_diff = distance_matrix.copy()
        lb_eqs[dia_inds] = True
        dist_diff[lb_eqs == True] = np.inf  # noqa: E712 (official code)
        inter_idxs = np.argmin(dist_diff, axis=1)

        intra_pairs = np.zeros([embeddings.shape[0], 2])
        inter_pairs = np.zeros([embeddings.shape[0], 2])
        intra_labels = np.zeros([embeddings.shape[0], 2])
        inter_labels = np.zeros([embeddings.shape[0], 2])
        for i in range(embeddings.shape[0]):
            # (official: labels[i]; today's NumPy refuses a 1-element array there, .item() is the same value)
            intra_labels[i, 0] = labels[i].item()
            intra_labels[i, 1] = labels[intra_idxs[i]].item()
            intra_pairs[i, 0] = i
            intra_pairs[i, 1] = intra_idxs[i]
            inter_labels[i, 0] = labels[i].item()
            inter_labels[i, 1] = labels[inter_idxs[i]].item()
            inter_pairs[i, 0] = i
            inter_pairs[i, 1] = inter_idxs[i]

        intra_labels = torch.from_numpy(intra_labels).long().to(device)
        intra_pairs = torch.from_numpy(intra_pairs).long().to(device)
        inter_labels = torch.from_numpy(inter_labels).long().to(device)
        inter_pairs = torch.from_numpy(inter_pairs).long().to(device)

        return intra_pairs, inter_pairs, intra_labels, inter_labels


def _randomise_batchnorm(model: nn.Module, seed: int = 1) -> None:
    """Non-trivial running statistics and affine parameters, so a wrong BN mapping shows in the logits."""
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=gen) * 0.1)
            m.num_batches_tracked.fill_(1234)
    # Trained residual branches end small; without this, 33 random ResNet-101 blocks grow the features
    # to ~1e6 and float32 summation order alone differs by more than the tolerance.
    for m in model.modules():
        last = getattr(m, "bn3", None) or (getattr(m, "bn2", None) if hasattr(m, "conv2") and hasattr(m, "downsample") else None)
        if last is not None and isinstance(last, nn.BatchNorm2d):
            last.weight.data.mul_(0.2)


def _official_checkpoint(path, resnet=models.resnet18, num_classes=5, avg_kernel=14, extra=None):
    """Train one step and save exactly as the official train.py does (DataParallel, its dict keys)."""
    torch.manual_seed(0)
    model = API_Net(resnet, num_classes, avg_kernel)
    _randomise_batchnorm(model)
    model = torch.nn.DataParallel(model).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    loss = model.module.fc(torch.randn(2, model.module.fc.in_features)).logsumexp(1).sum()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    state = {
        "epoch": 3,
        "state_dict": model.state_dict(),
        "best_prec1": torch.tensor(71.5),
        "optimizer": optimizer.state_dict(),
    }
    if extra:
        state = extra(state)
    torch.save(state, path)
    return model.module.eval()


def _run_cli(argv, capsys):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _assert_refused(argv, capsys, out, *expected):
    code, _, err = _run_cli(argv, capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    for text in expected:
        assert text in lines[0], lines[0]
    assert not out.exists() and not out.with_suffix(".json").exists()
    assert [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}")] == []


def _compare_official(official, imported, images, labels):
    with torch.no_grad():
        test_path = official(images, flag="val")
        assert 0.05 < test_path.abs().max() < 1e4  # realistic magnitudes: the tolerance below means something
        np.testing.assert_allclose(imported(images).numpy(), test_path.numpy(), rtol=1e-5, atol=1e-5)
        captured = {}
        hooks = [official.map2.register_forward_hook(lambda m, i, o: captured.__setitem__("mutual", o))]
        sig = []
        hooks.append(official.sigmoid.register_forward_hook(lambda m, i, o: sig.append(o)))
        l1s, l1o, l2s, l2o, lab1, lab2 = official(images, labels, flag="train")
        for h in hooks:
            h.remove()
        out = imported.forward_train(images, labels)
    p = out.pairs
    assert torch.equal(out.labels1, lab1) and torch.equal(out.labels2, lab2)
    pairs = {
        "logits1_self": l1s, "logits1_other": l1o, "logits2_self": l2s, "logits2_other": l2o,
        "mutual": captured["mutual"], "gate1": sig[0], "gate2": sig[1],
    }
    for name, ref in pairs.items():
        np.testing.assert_allclose(getattr(p, name).numpy(), ref.numpy(), rtol=1e-5, atol=1e-5, err_msg=name)
    # The same numbers through forward_pair on explicit image pairs.
    first = torch.arange(len(labels)).repeat(2)
    second = torch.cat([out.intra_index, out.inter_index])
    with torch.no_grad():
        explicit = imported.forward_pair(images[first], images[second])
    np.testing.assert_allclose(explicit.gate1.numpy(), sig[0].numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(explicit.logits2_other.numpy(), l2o.numpy(), rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------------------------------
# import-official
# --------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_official_checkpoint_gives_the_same_logits_gates_and_mutual_vector(tmp_path, capsys):
    src = tmp_path / "model_best.pth.tar"
    official = _official_checkpoint(src)
    names = tmp_path / "classes.txt"
    names.write_text("".join(f"{i + 1} {i + 1:03d}.Bird_{i}\n" for i in range(5)))
    out = tmp_path / "imported.safetensors"
    code, stdout, err = _run_cli(["import-official", src, "--out", out, "--class-names", names, "--num-classes", 5],
                                 capsys)
    assert code == 0, err
    assert stdout.strip() == f"wrote {out} and imported.json: apinet / resnet18 / 5 classes"
    model, card = load_model(out)
    torch.manual_seed(1)
    images = torch.randn(4, 3, 448, 448)  # official input size: AvgPool2d(14) is the global average
    _compare_official(official, model, images, torch.tensor([0, 3, 0, 3]))
    assert card["class_names"] == [f"{i + 1:03d}.Bird_{i}" for i in range(5)]
    assert card["preprocess"] == OFFICIAL_PREPROCESS
    assert card["config"]["mutual_hidden"] == 512 and card["config"]["dropout"] == 0.5
    source = card["source"]
    assert source["epoch"] == 3 and source["best_prec1"] == pytest.approx(71.5)
    assert source["code"] == "https://github.com/PeiqinZhuang/API-Net" and source["file"] == src.name
    assert len(source["sha256"]) == 64
    pre = Preprocess.from_card(card)
    assert (pre.input_size, pre.resize, pre.resize_mode) == (448, 512, "square")


@pytest.mark.slow
def test_official_resnet101_checkpoint_imports_exactly(tmp_path):
    """The official architecture as published (ResNet-101, 200 classes), at 224 px with AvgPool2d(7)."""
    src = tmp_path / "checkpoint.pth.tar"
    official = _official_checkpoint(src, models.resnet101, num_classes=200, avg_kernel=7)
    out = import_official(src, tmp_path / "r101.safetensors")
    model, card = load_model(out)
    assert (card["backbone"], card["num_classes"]) == ("resnet101", 200)
    assert card["class_names"] == [f"class {i}" for i in range(200)]
    torch.manual_seed(2)
    _compare_official(official, model, torch.randn(4, 3, 224, 224), torch.tensor([7, 7, 199, 199]))


def test_official_square_preprocessing_matches_the_official_transform():
    from torchvision import transforms

    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 255, (375, 500, 3), dtype=np.uint8))
    official = transforms.Compose([
        transforms.Resize((512, 512)), transforms.CenterCrop(448), transforms.ToTensor(),
        transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
    ])
    ours = Preprocess.from_dict(OFFICIAL_PREPROCESS)
    assert torch.allclose(ours(image), official(image), atol=1e-6)
    shorter = Preprocess(448, 512)  # the shorter-side variant keeps the aspect ratio: another crop
    assert not torch.allclose(shorter(image), official(image), atol=1e-2)
    with pytest.raises(ValueError, match="resize_mode must be one of"):
        Preprocess(448, 512, resize_mode="stretch")


def _edit_state(fn):
    def extra(state):
        state["state_dict"] = fn(dict(state["state_dict"]))
        return state

    return extra


@pytest.mark.slow
def test_official_checkpoint_with_numpy_metadata_and_legacy_format(tmp_path):
    """Older PyTorch wrote the legacy (non-zip) format; some forks store best_prec1 as a NumPy scalar."""

    def legacy(state):
        state["best_prec1"] = np.float64(88.25)
        state["epoch"] = np.int64(40)
        return state

    src = tmp_path / "model_best.pth.tar"
    official = _official_checkpoint(src, extra=legacy)
    torch.save(torch.load(src, weights_only=False), src, _use_new_zipfile_serialization=False)  # our own file
    assert src.read_bytes()[:2] != b"PK"
    out = import_official(src, tmp_path / "legacy.safetensors")
    model, card = load_model(out)
    assert (card["source"]["epoch"], card["source"]["best_prec1"]) == (40, 88.25)
    torch.manual_seed(4)
    x = torch.randn(2, 3, 448, 448)
    with torch.no_grad():
        np.testing.assert_allclose(model(x).numpy(), official(x, flag="val").numpy(), rtol=1e-5, atol=1e-5)


def test_official_unexpected_key_is_refused(tmp_path, capsys):
    src = tmp_path / "ckpt.pth.tar"
    _official_checkpoint(src, extra=_edit_state(lambda s: {**s, "module.extra.weight": torch.zeros(3)}))
    out = tmp_path / "x.safetensors"
    _assert_refused(["import-official", src, "--out", out], capsys, out,
                    f"error: {src}: 1 unexpected key(s) for the official API-Net on resnet18, e.g. ['extra.weight']")


def test_official_missing_key_is_refused(tmp_path, capsys):
    src = tmp_path / "ckpt.pth.tar"
    drop = "module.conv.5.1.bn2.running_var"
    _official_checkpoint(src, extra=_edit_state(lambda s: {k: v for k, v in s.items() if k != drop}))
    out = tmp_path / "x.safetensors"
    _assert_refused(["import-official", src, "--out", out], capsys, out,
                    f"error: {src}: 1 missing key(s) for the official API-Net on resnet18, "
                    "e.g. ['conv.5.1.bn2.running_var']")


def test_official_on_a_different_backbone_is_refused(tmp_path, capsys):
    def resnet10(weights=None):
        return torchvision.models.ResNet(torchvision.models.resnet.BasicBlock, [1, 1, 1, 1])

    src = tmp_path / "ckpt.pth.tar"
    _official_checkpoint(src, resnet10)
    out = tmp_path / "x.safetensors"
    _assert_refused(["import-official", src, "--out", out], capsys, out,
                    f"error: {src}: a different backbone: the weights describe a ResNet with basic-block stages "
                    "of [1, 1, 1, 1] blocks, which this project cannot build (supported: resnet18, ")


def test_official_class_count_must_agree_with_the_class_names(tmp_path, capsys):
    src = tmp_path / "ckpt.pth.tar"
    _official_checkpoint(src)
    names = tmp_path / "names.txt"
    names.write_text("a\nb\nc\nd\n")
    out = tmp_path / "x.safetensors"
    _assert_refused(["import-official", src, "--out", out, "--class-names", names], capsys, out,
                    f"error: {src}: the classifier has 5 outputs but {names} lists 4 class names")
    _assert_refused(["import-official", src, "--out", out, "--num-classes", 200], capsys, out,
                    f"error: {src}: the classifier has 5 outputs but --num-classes is 200")


def test_truncated_checkpoint_is_refused(tmp_path, capsys):
    src = tmp_path / "ckpt.pth.tar"
    _official_checkpoint(src)
    data = src.read_bytes()
    src.write_bytes(data[: len(data) // 2])
    out = tmp_path / "x.safetensors"
    _assert_refused(["import-official", src, "--out", out], capsys, out,
                    f"error: {src}: truncated or corrupt torch.save file (the zip archive is incomplete)")
    legacy = tmp_path / "legacy.pth"
    torch.save({"state_dict": {"fc.weight": torch.zeros(5, 512)}}, legacy, _use_new_zipfile_serialization=False)
    legacy.write_bytes(legacy.read_bytes()[:-100])
    _assert_refused(["import-classifier", legacy, "--out", out], capsys, out,
                    f"error: {legacy}: truncated, corrupt or not a PyTorch checkpoint (")


class _Payload:
    """Unpickling this would create a marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("layout", ["torch.save", "pickle protocol 2"])
def test_pickle_with_code_is_refused_and_never_executed(tmp_path, capsys, layout):
    marker = tmp_path / "PWNED"
    src = tmp_path / "evil.pth.tar"
    payload = {"epoch": 1, "best_prec1": 0.5, "hook": _Payload(marker)}
    if layout == "torch.save":
        torch.save(payload, src)
    else:
        with open(src, "wb") as fh:
            pickle.dump(payload, fh, protocol=2)
    out = tmp_path / "x.safetensors"
    _assert_refused(["import-official", src, "--out", out], capsys, out,
                    f"error: {src}: refused: it references posix.system, which is code, not a tensor or plain "
                    "container; nothing in it was executed")
    _assert_refused(["import-classifier", src, "--out", out], capsys, out, f"error: {src}: refused: ")
    assert not marker.exists()


def test_plain_classifier_given_to_import_official_is_refused(tmp_path, capsys):
    src = tmp_path / "resnet18.pth"
    torch.save(models.resnet18(num_classes=5).state_dict(), src)
    out = tmp_path / "x.safetensors"
    _assert_refused(["import-official", src, "--out", out], capsys, out,
                    f"error: {src}: not an official API-Net checkpoint: no conv.* / map1.* keys",
                    "use import-classifier")


# --------------------------------------------------------------------------------------------------
# import-classifier
# --------------------------------------------------------------------------------------------------


def _check_same_logits(reference, path, size=96):
    model, card = load_model(path)
    assert card["architecture"] == "baseline"
    reference.eval()
    torch.manual_seed(3)
    x = torch.randn(3, 3, size, size)
    with torch.no_grad():
        np.testing.assert_allclose(model(x).numpy(), reference(x).numpy(), rtol=1e-5, atol=1e-5)
    return card


@pytest.mark.slow
def test_torchvision_resnet_classifier_imports_with_identical_logits(tmp_path, capsys):
    net = models.resnet34(num_classes=7)
    _randomise_batchnorm(net)
    src = tmp_path / "resnet34.pth"
    # A typical fine-tuning script's file: wrapped, saved from DataParallel.
    torch.save({"epoch": 9, "state_dict": nn.DataParallel(net).state_dict()}, src)
    names = tmp_path / "names.txt"
    names.write_text("\n".join(f"species {i}" for i in range(7)) + "\n\n")
    out = tmp_path / "r34.safetensors"
    code, stdout, err = _run_cli(["import-classifier", src, "--out", out, "--class-names", names], capsys)
    assert code == 0, err
    assert stdout.strip() == f"wrote {out} and r34.json: baseline / resnet34 / 7 classes"
    card = _check_same_logits(net, out)
    assert card["class_names"] == [f"species {i}" for i in range(7)]
    assert card["preprocess"] == {"input_size": 224, "resize": 256, "mean": [0.485, 0.456, 0.406],
                                  "std": [0.229, 0.224, 0.225], "resize_mode": "shorter"}
    assert card["source"]["kind"] == "torchvision resnet34 classifier"


@pytest.mark.slow
def test_torchvision_densenet161_with_legacy_key_names_imports_with_identical_logits(tmp_path):
    net = models.densenet161(num_classes=4)
    _randomise_batchnorm(net)
    # torchvision's published DenseNet files use the pre-0.4 names ("norm.1" for "norm1").
    legacy = {re.sub(r"(denselayer\d+\.(?:norm|relu|conv))([12])\.", r"\1.\2.", k): v
              for k, v in net.state_dict().items()}
    assert any(".norm.1." in k for k in legacy)
    src = tmp_path / "densenet161.pth"
    torch.save(legacy, src)
    out = import_classifier(src, tmp_path / "d161.safetensors", input_size=448, resize_mode="square")
    card = _check_same_logits(net, out, size=64)
    assert card["backbone"] == "densenet161"
    assert (card["preprocess"]["input_size"], card["preprocess"]["resize"], card["preprocess"]["resize_mode"]) == (
        448, 512, "square")


def test_timm_resnet_classifier_imports_with_identical_logits(tmp_path):
    timm = pytest.importorskip("timm")
    net = timm.create_model("resnet18", pretrained=False, num_classes=6)
    _randomise_batchnorm(net)
    src = tmp_path / "timm_resnet18.safetensors"  # timm's hub files are safetensors
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(src))
    out = import_classifier(src, tmp_path / "t18.safetensors", fmt="timm", num_classes=6)
    card = _check_same_logits(net, out)
    assert card["source"]["kind"] == "timm resnet18 classifier"


@pytest.mark.parametrize("variant", ["lite0", "lite2"])
def test_timm_efficientnet_lite_classifier_imports_with_identical_logits(tmp_path, variant):
    timm = pytest.importorskip("timm")
    net = timm.create_model(f"tf_efficientnet_{variant}", pretrained=False, num_classes=5)
    _randomise_batchnorm(net)
    src = tmp_path / f"{variant}.safetensors"
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(src))
    out = import_classifier(src, tmp_path / f"imported_{variant}.safetensors", fmt="timm", num_classes=5)
    card = _check_same_logits(net, out)
    assert card["backbone"] == f"efficientnet_{variant}"
    assert card["preprocess"]["mean"] == [0.5, 0.5, 0.5] == card["preprocess"]["std"]


def test_classifier_on_an_unsupported_backbone_is_refused(tmp_path, capsys):
    src = tmp_path / "densenet121.pth"
    torch.save(models.densenet121(num_classes=3).state_dict(), src)
    out = tmp_path / "x.safetensors"
    _assert_refused(["import-classifier", src, "--out", out], capsys, out,
                    f"error: {src}: a different backbone: the weights describe densenet121, which this project "
                    "cannot build")


def test_classifier_with_unexpected_or_missing_keys_is_refused(tmp_path, capsys):
    state = models.resnet18(num_classes=3).state_dict()
    src = tmp_path / "r18.pth"
    torch.save({**state, "head.proj.weight": torch.zeros(2)}, src)
    out = tmp_path / "x.safetensors"
    _assert_refused(["import-classifier", src, "--out", out], capsys, out,
                    f"error: {src}: 1 unexpected key(s) for a resnet18 classifier, e.g. ['head.proj.weight']")
    torch.save({k: v for k, v in state.items() if k != "layer3.0.downsample.1.weight"}, src)
    _assert_refused(["import-classifier", src, "--out", out], capsys, out,
                    f"error: {src}: 1 missing key(s) for a resnet18 classifier, e.g. ['layer3.0.downsample.1.weight']")
    torch.save({k: v for k, v in state.items() if not k.startswith("fc.")}, src)
    _assert_refused(["import-classifier", src, "--out", out], capsys, out,
                    f"error: {src}: missing key(s) for a resnet18 classifier: 'fc.weight'")


def test_classifier_with_other_shapes_or_non_finite_values_is_refused(tmp_path, capsys):
    state = models.resnet18(num_classes=3).state_dict()
    src = tmp_path / "r18.pth"
    out = tmp_path / "x.safetensors"
    torch.save({**state, "fc.weight": torch.zeros(3, 2048)}, src)  # a ResNet-50 head on a ResNet-18 trunk
    _assert_refused(["import-classifier", src, "--out", out], capsys, out,
                    f"error: {src}: 1 tensor(s) do not fit a resnet18 classifier (a different backbone?), "
                    "e.g. fc.weight is (3, 2048), expected (3, 512)")
    bad = state["layer2.0.conv1.weight"].clone()
    bad[0, 0, 0, 0] = float("nan")
    torch.save({**state, "layer2.0.conv1.weight": bad}, src)
    _assert_refused(["import-classifier", src, "--out", out], capsys, out,
                    f"error: {src}: non-finite values (NaN / inf) in ['layer2.0.conv1.weight']")


def test_classifier_class_count_must_agree(tmp_path, capsys):
    src = tmp_path / "r18.pth"
    torch.save(models.resnet18(num_classes=3).state_dict(), src)
    names = tmp_path / "classes.txt"
    names.write_text("1 001.A\n2 002.B\n")
    out = tmp_path / "x.safetensors"
    _assert_refused(["import-classifier", src, "--out", out, "--class-names", names], capsys, out,
                    f"error: {src}: the classifier has 3 outputs but {names} lists 2 class names")


def test_official_checkpoint_given_to_import_classifier_is_refused(tmp_path, capsys):
    src = tmp_path / "model_best.pth.tar"
    _official_checkpoint(src)
    out = tmp_path / "x.safetensors"
    _assert_refused(["import-classifier", src, "--out", out], capsys, out,
                    f"error: {src}: this is an API-Net checkpoint (map1 / map2 keys); use import-official")
    _assert_refused(["import-classifier", src, "--out", out, "--input-size", 448, "--resize", 300], capsys, out,
                    "error: invalid preprocessing: resize (300) must be >= input_size (448)")


def test_out_must_be_safetensors(tmp_path, capsys):
    src = tmp_path / "r18.pth"
    torch.save(models.resnet18(num_classes=3).state_dict(), src)
    out = tmp_path / "x.pth"
    _assert_refused(["import-classifier", src, "--out", out], capsys, out,
                    "error: --out must end in .safetensors, got x.pth")


def test_read_class_names_plain_and_cub(tmp_path):
    plain = tmp_path / "plain.txt"
    plain.write_text("Black footed Albatross\n\nLaysan Albatross\n")
    assert read_class_names(plain) == ["Black footed Albatross", "Laysan Albatross"]
    cub = tmp_path / "classes.txt"
    cub.write_text("1 001.Black_footed_Albatross\n2 002.Laysan_Albatross\n3 003.Sooty_Albatross\n")
    assert read_class_names(cub) == ["001.Black_footed_Albatross", "002.Laysan_Albatross", "003.Sooty_Albatross"]
    # Numbers that are not an index 1..N are part of the names.
    numbered = tmp_path / "numbered.txt"
    numbered.write_text("747 jet\n380 jet\n")
    assert read_class_names(numbered) == ["747 jet", "380 jet"]
    dupes = tmp_path / "dupes.txt"
    dupes.write_text("a\nb\na\n")
    with pytest.raises(ValueError, match=r"dupes.txt: duplicate class names \['a'\]"):
        read_class_names(dupes)


@pytest.mark.parametrize("builder, described", [
    (models.wide_resnet50_2, "a resnet50-like network with 128 first-stage channels (e.g. a Wide ResNet / ResNeXt)"),
    (models.resnext50_32x4d, "a resnet50-like network with 128 first-stage channels (e.g. a Wide ResNet / ResNeXt)"),
    (models.densenet201, "densenet201"),
    (models.resnet152, None),
])
def test_backbone_detection(tmp_path, builder, described):
    from apinet.importers import FORMATS, ImportProblem, _detect

    with torch.device("meta"):  # shapes only: no memory, no time
        state = builder().state_dict()
    if described is None:
        assert _detect(tmp_path, state, FORMATS["torchvision"], "a classifier")[1] == builder.__name__
    else:
        with pytest.raises(ImportProblem, match="a different backbone: the weights describe " + re.escape(described)):
            _detect(tmp_path, state, FORMATS["torchvision"], "a classifier")
