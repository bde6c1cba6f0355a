"""Where the app finds its checkpoints and gallery, and the fixed choices it offers.

Every location can be moved with an environment variable, so tests (and users) can point the app at
other checkpoints without touching code:

* ``APINET_CHECKPOINT_DIR``: demo checkpoints (default ``assets/checkpoints``)
* ``APINET_RUNS_DIR``: trained runs, searched recursively for ``*.safetensors`` with a card (default ``runs``)
* ``APINET_GALLERY_DIR``: gallery images + ``gallery.json`` (default ``assets/gallery``)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "ALPHA_DEFAULT",
    "COLORMAPS",
    "DEMO_APINET",
    "DEMO_BASELINE",
    "K_DEFAULT",
    "K_MAX",
    "Paths",
    "SCOPES",
    "TRAIN_COMMAND",
    "paths_from_env",
]

REPO_ROOT = Path(__file__).resolve().parent.parent

DEMO_APINET = "apinet_synthbirds.safetensors"
DEMO_BASELINE = "baseline_synthbirds.safetensors"
#: Shown when the demo checkpoints are missing (a fresh clone without the assets, or a wrong path).
TRAIN_COMMAND = (
    "python -m apinet train --preset demo --model apinet --out runs/demo-apinet\n"
    "python -m apinet train --preset demo --model baseline --out runs/demo-baseline"
)

#: Explanations are computed once for the K_MAX strongest channels; the k slider only slices them,
#: so moving it never runs a model.
K_MAX = 10
K_DEFAULT = 5
ALPHA_DEFAULT = 0.5
#: A subset of apinet.render.COLORMAPS (OpenCV colormaps); perceptually uniform ones first.
COLORMAPS = ("viridis", "inferno", "magma", "plasma", "cividis", "turbo", "jet", "hot")
#: scope -> what one colour scale spans (see apinet.render.scale_for).
SCOPES = {
    "map": "every map on its own range (shapes only; values not comparable)",
    "pair": "one range per pair of maps (A and B comparable)",
    "models": "one range over every map of the view with the same units (models comparable)",
}


@dataclass(frozen=True)
class Paths:
    checkpoints: Path
    runs: Path
    gallery: Path


def _env_path(name: str, default: str) -> Path:
    value = os.environ.get(name, "").strip()
    path = Path(value) if value else Path(default)
    return path if path.is_absolute() else (Path.cwd() / path)


def paths_from_env() -> Paths:
    """The configured locations (read on every call, so a test can change them between runs)."""
    return Paths(
        checkpoints=_env_path("APINET_CHECKPOINT_DIR", str(REPO_ROOT / "assets" / "checkpoints")),
        runs=_env_path("APINET_RUNS_DIR", "runs"),
        gallery=_env_path("APINET_GALLERY_DIR", str(REPO_ROOT / "assets" / "gallery")),
    )
