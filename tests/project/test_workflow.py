"""The GitHub Actions workflow runs the README's commands, and the e2e suite on every Kubernetes the chart claims.

It cannot run here (it needs Docker); these checks hold it to what the repository says: the same
test command as the README, the kind provider of the e2e suite, node images pinned by digest for the
oldest Kubernetes the chart's kubeVersion admits and newer ones, scripts that exist.
"""

from __future__ import annotations

import ast
import os
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"


@pytest.fixture(scope="module")
def workflow() -> dict[Any, Any]:
    loaded: dict[Any, Any] = yaml.safe_load(WORKFLOW.read_text())
    return loaded


def runs(job: dict[str, Any]) -> list[tuple[list[str], dict[str, str]]]:
    """Each `run:` step's first command line, split as the shell would, with the step's environment."""
    return [(shlex.split(step["run"].splitlines()[0]), step.get("env", {})) for step in job["steps"] if "run" in step]


def step_running(job: dict[str, Any], *command: str) -> dict[str, str]:
    found = [env for argv, env in runs(job) if argv == list(command)]
    assert len(found) == 1, f"no single step runs {' '.join(command)}: {runs(job)}"
    return found[0]


def chart_floor() -> tuple[int, int]:
    chart = yaml.safe_load((ROOT / "helm" / "accord" / "Chart.yaml").read_text())
    match = re.fullmatch(r">=\s*(\d+)\.(\d+)\.\d+(-0)?", chart["kubeVersion"])
    assert match, chart["kubeVersion"]
    return int(match[1]), int(match[2])


def test_it_runs_on_pushes_and_pull_requests_with_read_only_permissions(workflow: dict[Any, Any]) -> None:
    triggers = workflow[True]  # YAML 1.1 reads the key `on` as true
    assert {"push", "pull_request"} <= set(triggers)
    assert workflow["permissions"] == {"contents": "read"}


def test_the_checks_job_runs_the_readmes_test_command_on_the_unit_tests(workflow: dict[Any, Any]) -> None:
    readme = (ROOT / "README.md").read_text()
    assert "`scripts/test.sh`" in readme
    assert "`scripts/test.sh tests/`" in readme
    env = step_running(workflow["jobs"]["checks"], "scripts/test.sh", "tests/")
    assert env["ACCORD_SKIP_TOOLS"] == "1"
    step_running(workflow["jobs"]["checks"], "scripts/install-tools.sh", "helm-kubectl")


def test_the_e2e_job_follows_the_checks_on_kind_with_the_image_the_dockerfile_builds(workflow: dict[Any, Any]) -> None:
    e2e = workflow["jobs"]["e2e"]
    assert e2e["needs"] == "checks"
    env = step_running(e2e, "scripts/test.sh", "e2e/")
    assert env["ACCORD_E2E_PROVIDER"] == "kind"
    assert env["ACCORD_E2E_KIND_NODE_IMAGE"] == "${{ matrix.node-image }}"
    providers = ast.parse((ROOT / "e2e" / "providers.py").read_text())
    kind = next(n for n in providers.body if isinstance(n, ast.ClassDef) and n.name == "KindProvider")
    source = ast.unparse(kind)
    assert "'docker', 'build'" in source and "dockerfile" in source, "the kind provider builds the Dockerfile"
    assert "cluster.helm(" in source and "self.chart" in source, "and installs the chart"
    assert "ACCORD_E2E_KIND_NODE_IMAGE" in source


def test_the_matrix_covers_the_oldest_kubernetes_the_chart_claims_and_newer_ones(workflow: dict[Any, Any]) -> None:
    entries = workflow["jobs"]["e2e"]["strategy"]["matrix"]["include"]
    versions = []
    for entry in entries:
        match = re.fullmatch(r"kindest/node:v(\d+)\.(\d+)\.(\d+)@sha256:[0-9a-f]{64}", entry["node-image"])
        assert match, f"{entry['node-image']} is not a kind node image pinned by digest"
        minor = (int(match[1]), int(match[2]))
        assert entry["kubernetes"] == f"{minor[0]}.{minor[1]}"
        assert re.fullmatch(r"v\d+\.\d+\.\d+", entry["kind"])
        versions.append(minor)
    assert min(versions) == chart_floor()
    assert len(set(versions)) == len(versions) >= 2
    assert max(versions) >= (1, 33)


def test_every_action_is_pinned_and_every_script_exists(workflow: dict[Any, Any]) -> None:
    for job in workflow["jobs"].values():
        for step in job["steps"]:
            if "uses" in step:
                assert re.fullmatch(r"[\w.-]+/[\w.-]+@v\d+(\.\d+)*", step["uses"]), step["uses"]
        for argv, _ in runs(job):
            if argv[0].startswith("scripts/"):
                assert os.access(ROOT / argv[0], os.X_OK), argv[0]


def test_the_install_step_the_workflow_names_exists() -> None:
    script = (ROOT / "scripts" / "install-tools.sh").read_text()
    steps = re.search(r"^STEPS=\(([^)]*)\)", script, re.MULTILINE)
    assert steps and "helm-kubectl" in steps[1].split()
