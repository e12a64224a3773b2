"""The repository stands on its own: it refers to no file outside it and names no package host.

A fresh clone is all a contributor has; notes that live elsewhere, or a traces folder beside the
clone, do not exist for them. Package hosts are whatever the machine's configuration says (apt
sources, pip and npm settings), never a name written into the repository.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SKIP_DIRS = {".git", ".venv", ".hypothesis", "build", "dist", "node_modules", "__pycache__"}
# Written so that this file does not match itself.
OUTSIDE = re.compile(r"BENCHMARK\.md|DESIGN\.md|CONVENTIONS\.md|/wor[k]/|shared/trace[s]|\.\./share[d]")
PACKAGE_HOSTS = re.compile(
    r"deb\.debian\.org|(security|snapshot|ftp[\w.]*)\.debian\.org|archive\.ubuntu\.com"
    r"|py[p]i\.(org|python\.org)|files\.python[h]osted\.org"
    r"|npm[j]s\.(org|com)|registry\.yarnpkg|deb\.node[s]ource|get\.helm\.sh|dl\.k8s\.io"
    r"|proxy\.golang\.org|packages\.cloud\.google"
)


def repository_files() -> list[Path]:
    """The files git tracks or would track (not ignored); every file but caches without git."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        check=False,
    )
    if listed.returncode == 0:
        return [ROOT / name for name in listed.stdout.decode().split("\0") if name and (ROOT / name).is_file()]
    files = []
    for path in ROOT.rglob("*"):
        parts = set(path.relative_to(ROOT).parts)
        if path.is_file() and not parts & SKIP_DIRS and not any(p.endswith((".egg-info", "_cache")) for p in parts):
            files.append(path)
    return files


def text(path: Path) -> str | None:
    data = path.read_bytes()
    return None if b"\0" in data else data.decode("utf-8", errors="replace")


@pytest.mark.parametrize(
    ("pattern", "what"), [(OUTSIDE, "a file outside the repository"), (PACKAGE_HOSTS, "a package host")]
)
def test_no_file_names(pattern: re.Pattern[str], what: str) -> None:
    found = []
    for path in repository_files():
        content = text(path)
        if content is None or path.suffix == ".csv" or (path.name.endswith(".txt") and "requirements" in path.parts):
            continue
        for number, line in enumerate(content.splitlines(), start=1):
            if pattern.search(line):
                found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()[:120]}")
    assert found == [], f"{what} named in:\n" + "\n".join(found)


def test_the_replay_benchmark_defaults_to_the_bundled_traces_and_their_licence() -> None:
    source = (ROOT / "benchmarks" / "replay.py").read_text()
    assert 'DEFAULT_TRACES = Path(__file__).resolve().parent / "traces"' in source
    traces = ROOT / "benchmarks" / "traces"
    assert sorted(p.name for p in traces.glob("*.csv")) == [
        "Twitter_volume_AAPL.csv",
        "elb_request_count_8c0756.csv",
        "nyc_taxi.csv",
    ]
    assert "MIT" in (traces / "README.md").read_text()
    assert "Permission is hereby granted, free of charge" in (traces / "LICENSE-NAB.txt").read_text()


@pytest.mark.parametrize("doc", ["docs/architecture.md", "docs/benchmark.md", "docs/install.md"])
def test_the_readme_links_the_docs(doc: str) -> None:
    assert (ROOT / doc).is_file()
    assert f"]({doc})" in (ROOT / "README.md").read_text()


def test_relative_links_in_the_docs_lead_to_files_of_the_repository() -> None:
    broken = []
    for doc in [
        ROOT / "README.md",
        *sorted((ROOT / "docs").glob("*.md")),
        ROOT / "benchmarks" / "traces" / "README.md",
    ]:
        for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", doc.read_text()):
            if "://" not in target and not (doc.parent / target).resolve().exists():
                broken.append(f"{doc.relative_to(ROOT)} -> {target}")
    assert broken == []
