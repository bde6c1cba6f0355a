"""pyproject.toml: declared dependencies match what the code imports; the wheel installs a working `apinet`."""

from __future__ import annotations

import ast
import importlib.metadata as md
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _declared() -> dict[str, Requirement]:
    reqs = [Requirement(r) for r in _pyproject()["project"]["dependencies"]]
    return {r.name.lower().replace("_", "-"): r for r in reqs}


def _imported_top_level_modules() -> set[str]:
    names = set()
    for path in (ROOT / "apinet").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"apinet", "__future__"}


def test_every_imported_package_is_declared_and_consistent_with_requirements():
    declared = _declared()
    dists = md.packages_distributions()
    for module in sorted(_imported_top_level_modules()):
        owners = {d.lower().replace("_", "-") for d in dists.get(module, [])}
        assert owners & set(declared), f"apinet imports {module!r} (from {sorted(owners)}), not declared in pyproject"
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line and not line.startswith("-"):
            req = Requirement(line)
            pins[req.name.lower().replace("_", "-")] = req
    for name, req in declared.items():
        installed = md.version(name)
        assert req.specifier.contains(installed, prereleases=True), f"{name} {installed} does not satisfy {req}"
        if name in pins:  # requirements.txt stays the pinned set: each pin must satisfy the declared range
            (pin,) = [s.version for s in pins[name].specifier]
            assert req.specifier.contains(pin, prereleases=True), f"requirements.txt pins {name}=={pin}, outside {req}"
    # Every project dependency of requirements.txt that the package uses is declared.
    for name in ("torch", "torchvision", "safetensors", "matplotlib", "opencv-python-headless", "grad-cam", "tqdm"):
        assert name in declared and name in pins
    assert _pyproject()["project"]["scripts"] == {"apinet": "apinet.cli:main"}


def test_license_and_citation():
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text and len(text) > 11000  # the full text, not a stub
    import yaml

    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0" and cff["license"] == "Apache-2.0"
    assert cff["version"] == _pyproject()["project"]["version"]
    titles = {ref["title"]: ref for ref in cff["references"]}
    assert set(titles) == {
        "Learning Attentive Pairwise Interaction for Fine-Grained Classification",
        "Learn to Pay Attention",
        "A^2-Nets: Double Attention Networks",
    }
    firsts = {t: ref["authors"][0]["family-names"] for t, ref in titles.items()}
    assert sorted(firsts.values()) == ["Chen", "Jetley", "Zhuang"]
    assert {ref["year"] for ref in titles.values()} == {2018, 2020}


@pytest.mark.slow
def test_wheel_builds_installs_and_runs(tmp_path):
    pytest.importorskip("setuptools", minversion="77")
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "apinet", src / "apinet", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    dist = tmp_path / "dist"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(dist),
         str(src)],
        capture_output=True, text=True, timeout=300,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    (wheel,) = dist.glob("apinet_explorer-0.1.0-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        info = "apinet_explorer-0.1.0.dist-info"
        entry_points = zf.read(f"{info}/entry_points.txt").decode()
        metadata = zf.read(f"{info}/METADATA").decode()
    package = {p.relative_to(ROOT).as_posix() for p in (ROOT / "apinet").rglob("*.py")}
    assert package <= names, sorted(package - names)
    assert f"{info}/licenses/LICENSE" in names
    assert not [n for n in names if n.startswith(("tests/", "app/", "assets/")) or n.endswith(".safetensors")]
    assert "[console_scripts]\napinet = apinet.cli:main" in entry_points
    assert "License-Expression: Apache-2.0" in metadata
    for req in _pyproject()["project"]["dependencies"]:
        assert f"Requires-Dist: {req}" in metadata

    target = tmp_path / "site"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--target", str(target), str(wheel)],
        capture_output=True, text=True, timeout=300,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    script = target / "bin" / "apinet"
    assert script.is_file()
    work = tmp_path / "elsewhere"  # not a clone: no assets/, no apinet/ on the path but the installed one
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target), "OMP_NUM_THREADS": "1"}
    helped = subprocess.run([str(script), "--help"], cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert helped.returncode == 0, helped.stderr
    assert helped.stdout.startswith("usage: apinet ")
    for command in ("train", "evaluate", "explain", "evaluate-explanations", "import-official", "import-classifier"):
        assert command in helped.stdout
    where = subprocess.run([sys.executable, "-c", "import apinet; print(apinet.__file__)"], cwd=work, env=env,
                           capture_output=True, text=True, timeout=300)
    assert where.stdout.strip() == str(target / "apinet" / "__init__.py")

    from PIL import Image

    for name in ("a.png", "b.png"):
        Image.new("RGB", (32, 32), (200, 100, 50)).save(work / name)
    explained = subprocess.run([str(script), "explain", "a.png", "b.png", "--out", "fig.png"], cwd=work, env=env,
                               capture_output=True, text=True, timeout=300)
    assert explained.returncode == 2
    lines = explained.stderr.strip().splitlines()
    assert len(lines) == 1, explained.stderr
    assert lines[0].startswith("error: assets/checkpoints/apinet_synthbirds.safetensors: demo checkpoint not found. "
                               "The demo checkpoints ship with the git repository (assets/checkpoints/), not with the "
                               "pip package: run from the root of a clone, or pass --checkpoint / --baseline")
    assert not (work / "fig.png").exists()
