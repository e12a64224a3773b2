"""The production wheel holds only what runs in production; the harness is a package of its own.

`pip install .` must give the operator and nothing of the development harness (the local control
plane with its certificate authority, the workload emulator with its unauthenticated endpoint, the
demo), which lives in the `accord-dev` distribution under dev/. The wheels are built here with the
build tools already installed (no build isolation, no index), so the test needs no network.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PIP = (sys.executable, "-m", "pip", "--quiet")
LEFT_BEHIND = (".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis")


def build_wheel(project: Path, out: Path) -> Path:
    """The wheel `pip install` builds from `project`, built from a clean copy: a build/ folder left in
    the checkout by an earlier build could otherwise slip stale files into it."""
    clean = out / "project"
    shutil.copytree(project, clean, ignore=shutil.ignore_patterns(*LEFT_BEHIND))
    project = clean
    subprocess.run(
        [*PIP, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "--wheel-dir", str(out), str(project)],
        check=True,
        capture_output=True,
        cwd=out,
    )
    (wheel,) = out.glob("*.whl")
    return wheel


@pytest.fixture(scope="module")
def production_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_wheel(ROOT, tmp_path_factory.mktemp("accord-wheel"))


@pytest.fixture(scope="module")
def dev_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_wheel(ROOT / "dev", tmp_path_factory.mktemp("accord-dev-wheel"))


def test_the_production_wheel_holds_the_accord_package_and_nothing_of_the_harness(production_wheel: Path) -> None:
    names = zipfile.ZipFile(production_wheel).namelist()
    packages = {name.split("/")[0] for name in names}
    assert packages == {"accord", "accord-0.1.0.dist-info"}, packages
    assert "accord/operator/executor.py" in names
    assert "accord/cli.py" in names
    harness = [n for n in names if n.startswith(("accord/cluster/", "accord/demo")) or "emulator" in n]
    assert harness == []
    entry_points = zipfile.ZipFile(production_wheel).read("accord-0.1.0.dist-info/entry_points.txt").decode()
    assert "accord = accord.cli:main" in entry_points
    assert "demo" not in entry_points


def test_the_harness_wheel_holds_the_cluster_helpers_and_the_demo(dev_wheel: Path) -> None:
    names = zipfile.ZipFile(dev_wheel).namelist()
    for module in ("local", "kubelets", "emulator", "prometheus", "tools", "service"):
        assert f"accord_dev/cluster/{module}.py" in names
    assert "accord_dev/demo.py" in names
    assert not [n for n in names if n.startswith("accord/")], "accord-dev must not carry the production package"
    entry_points = zipfile.ZipFile(dev_wheel).read("accord_dev-0.1.0.dist-info/entry_points.txt").decode()
    assert "accord-demo = accord_dev.demo:main" in entry_points


def test_after_installing_the_production_wheel_the_harness_cannot_be_imported(
    production_wheel: Path, tmp_path: Path
) -> None:
    target = tmp_path / "site"
    subprocess.run(
        [*PIP, "install", "--no-deps", "--no-index", "--target", str(target), str(production_wheel)],
        check=True,
        capture_output=True,
    )
    # -S: no site-packages, so nothing of this (development) environment is importable; only the wheel is.
    probe = "import sys; sys.path.insert(0, sys.argv[1]); import accord; print(accord.__file__); import accord.cluster"
    done = subprocess.run([sys.executable, "-S", "-c", probe, str(target)], capture_output=True, text=True)
    assert done.stdout.startswith(str(target)), done.stdout + done.stderr
    assert done.returncode != 0
    assert "ModuleNotFoundError: No module named 'accord.cluster'" in done.stderr


def test_the_development_install_has_the_harness() -> None:
    from accord_dev.cluster.local import LocalControlPlane
    from accord_dev.demo import build_parser

    assert LocalControlPlane.__module__ == "accord_dev.cluster.local"
    assert build_parser().parse_args(["--cluster", "kind"]).cluster == "kind"
