"""What a `pip install` of the wheel gives (issue 33): the licence, the dataset YAMLs the README trains with, found by
name, and no output that points into a checkout (scripts/, docs/, ...), which an installed package does not have."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHECKOUT_ONLY = ("scripts/", "docs/", "experiments/", "datasets/", "model_yamls/")


def test_the_wheel_in_a_clean_environment_has_its_licence_and_dataset_yamls(tmp_path):
    pytest.importorskip("hatchling")  # the dev extra: the wheel is built offline, without build isolation
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                            str(tmp_path / "dist"), str(ROOT)], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr[-2000:]
    wheel = next((tmp_path / "dist").glob("yolo_incep-*.whl"))
    venv = tmp_path / "venv"  # no --system-site-packages, and -I below: nothing of this environment is seen there
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    install = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q",
                              str(wheel)], capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stderr[-2000:]
    code = ("import sysconfig; from pathlib import Path; from yolo_incep.dataset_names import resolve_dataset_yaml; "
            "site = Path(sysconfig.get_paths()['purelib']); "
            "print(*sorted(str(p.relative_to(site)) for p in site.glob('yolo_incep*/**/LICENSE')), sep='\\n'); "
            "print(Path(resolve_dataset_yaml('visdrone-sample.yaml')).relative_to(site)); "
            "print(Path(resolve_dataset_yaml('VisDrone2019-DET.yaml')).relative_to(site))")
    out = subprocess.run([str(python), "-I", "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.split()
    assert any(line.endswith(".dist-info/licenses/LICENSE") for line in lines), lines
    assert lines[-2:] == ["yolo_incep/datasets/visdrone-sample.yaml", "yolo_incep/datasets/VisDrone2019-DET.yaml"]
    licence = next(venv.rglob("yolo_incep-*.dist-info/licenses/LICENSE")).read_text()
    assert "GNU AFFERO GENERAL PUBLIC LICENSE" in licence and "Version 3" in licence


def test_no_message_of_the_package_points_into_a_checkout():
    found = []
    for path in sorted((ROOT / "yolo_incep").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                      if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                      and node.body and isinstance(node.body[0], ast.Expr)}
        found += [f"{path.relative_to(ROOT)}:{node.lineno}: {node.value[:60]!r}" for node in ast.walk(tree)
                  if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
                  and any(part in node.value for part in CHECKOUT_ONLY)]
    assert not found, found
