"""The package installs as a wheel and as an editable install, subpackages and data included."""

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SUBPACKAGES = ["tigerdecode", "tigerdecode.engines", "tigerdecode.kernels", "tigerdecode.heads", "tigerdecode.training",
               "tigerdecode.demos", "tigerdecode.datasets"]

PROBE = f"SUBPACKAGES = {SUBPACKAGES!r}\n" + """
import importlib, json, sys
from importlib.resources import files
mods = {m: importlib.import_module(m).__file__ for m in SUBPACKAGES}
print(json.dumps({
    "files": mods,
    "heads_readme": files("tigerdecode.heads").joinpath("README.md").is_file(),
    "qa_lines": sum(1 for _ in files("tigerdecode.datasets").joinpath("qa_wikidata.jsonl").open()),
}))
"""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "-w", str(out), str(ROOT)],
        check=True, capture_output=True, text=True,
    )
    (whl,) = out.glob("tigerdecode-*.whl")
    return whl


def test_wheel_contains_every_subpackage_and_data(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    for pkg in SUBPACKAGES:
        assert f"{pkg.replace('.', '/')}/__init__.py" in names, pkg
    assert "tigerdecode/heads/README.md" in names
    assert "tigerdecode/heads/smollm2-135m-instruct/engine/heads.safetensors" in names
    assert "tigerdecode/datasets/qa_wikidata.jsonl" in names
    assert any(n.endswith("entry_points.txt") for n in names)


def test_wheel_install_imports_from_the_installed_copy(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--target", str(target), str(wheel)], check=True)
    env = dict(os.environ, PYTHONPATH=str(target))
    res = subprocess.run([sys.executable, "-c", PROBE], cwd=tmp_path, env=env,
                         capture_output=True, text=True, check=True)
    info = json.loads(res.stdout)
    for mod, f in info["files"].items():
        assert Path(f).is_relative_to(target), (mod, f)
    assert info["heads_readme"] is True
    assert info["qa_lines"] == 20442


def test_editable_install_maps_top_level_folders():
    res = subprocess.run([sys.executable, "-c", PROBE], cwd="/", capture_output=True, text=True,
                         check=True)
    info = json.loads(res.stdout)
    assert Path(info["files"]["tigerdecode.kernels"]) == ROOT / "kernels" / "__init__.py"
    assert Path(info["files"]["tigerdecode.heads"]) == ROOT / "heads" / "__init__.py"
    assert Path(info["files"]["tigerdecode"]) == ROOT / "src" / "tigerdecode" / "__init__.py"
    assert info["qa_lines"] == 20442
