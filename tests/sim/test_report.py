"""What a replay writes, and that its figures can be recomputed from the per-tick CSVs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from accord.sim.cli import main, simulate
from accord.sim.model import ReplayModel
from accord.sim.negotiated import default_policy
from accord.sim.report import CSV_HEADER, check, read_csv, table
from accord.sim.trace import make_trace
from tests.sim.conftest import steps_and_spikes

MODEL = ReplayModel()
POLICIES = ["accord", "hpa@0.5", "hpa@0.6", "hpa@0.7", "hpa@0.8", "oracle", "static"]


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("replay")
    t = make_trace("steps.csv", steps_and_spikes(hours=3, seed=5), peak_pods=20, capacity=100)
    simulate(t, MODEL, out=out, accord=default_policy(MODEL), policy_source="default")
    return out


def test_every_policy_has_a_per_tick_csv_and_a_summary(replayed: Path) -> None:
    summary = json.loads((replayed / "summary.json").read_text())
    assert [p["policy"] for p in summary["policies"]] == POLICIES
    for entry in summary["policies"]:
        demand, requested, ready = read_csv(replayed / entry["csv"])
        assert len(demand) == len(requested) == len(ready) == summary["ticks"] == 181
    assert (replayed / "accord.csv").read_text().splitlines()[0] == ",".join(CSV_HEADER)
    oracle = next(p for p in summary["policies"] if p["policy"] == "oracle")
    assert oracle["ratio_to_oracle"] == 1.0
    assert summary["initial_replicas"] == MODEL.initial(read_csv(replayed / "oracle.csv")[0][0])


def test_the_summary_equals_a_recomputation_from_the_csvs(replayed: Path) -> None:
    assert check(replayed) == []


def test_a_tampered_csv_is_caught(replayed: Path, tmp_path: Path) -> None:
    for f in replayed.iterdir():
        (tmp_path / f.name).write_bytes(f.read_bytes())
    lines = (tmp_path / "hpa_at_0.7.csv").read_text().splitlines()
    tick, demand, requested, ready = lines[50].split(",")
    lines[50] = ",".join([tick, demand, str(int(requested) + 1), ready])
    (tmp_path / "hpa_at_0.7.csv").write_text("\n".join(lines) + "\n")
    problems = check(tmp_path)
    assert {(p.policy, p.figure) for p in problems} >= {("hpa@0.7", "pod_hours")}


def test_the_plot_is_one_self_contained_page_with_a_panel_per_policy(replayed: Path) -> None:
    page = (replayed / "plot.html").read_text()
    assert page.count("<svg") == len(POLICIES)  # a 3-hour trace has one view
    assert "http" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "SLO-violation minutes" in page


def test_the_command_prints_the_table_and_writes_the_outputs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "trace.csv"
    path.write_text("timestamp,value\n" + "".join(f"{60 * i},{100 + (i % 5) * 10}\n" for i in range(90)))
    code = main(["--trace", str(path), "--out", str(tmp_path / "out"), "--hpa", "0.7"])
    printed = capsys.readouterr()
    assert code == 0
    assert "ratio to oracle" in printed.out
    assert [line.split()[0] for line in printed.out.splitlines()[3:]] == ["accord", "hpa@0.7", "oracle", "static"]
    assert "accord: 100%" in printed.err
    assert {p.name for p in (tmp_path / "out").iterdir()} == {
        "accord.csv",
        "hpa_at_0.7.csv",
        "oracle.csv",
        "static.csv",
        "summary.json",
        "plot.html",
    }


def test_the_command_takes_a_policy_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--print-policy"]) == 0
    text = capsys.readouterr().out.replace("protocol: nash", "protocol: weighted")
    (tmp_path / "policy.yaml").write_text(text)
    trace_file = tmp_path / "trace.csv"
    trace_file.write_text("timestamp,value\n" + "".join(f"{60 * i},{100 + i}\n" for i in range(30)))
    out = tmp_path / "out"
    assert main(["--trace", str(trace_file), "--policy", str(tmp_path / "policy.yaml"), "--out", str(out)]) == 0
    assert json.loads((out / "summary.json").read_text())["accord_policy"] == str(tmp_path / "policy.yaml")


def test_a_replay_where_a_person_approves(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--approve-after plays the person who approves what the policy sends for approval."""
    assert main(["--print-policy"]) == 0
    text = capsys.readouterr().out.replace(
        "placementChange: false", "placementChange: true\n      stepReplicasAbove: 0"
    )
    (tmp_path / "policy.yaml").write_text(text)
    trace_file = tmp_path / "trace.csv"
    trace_file.write_text("timestamp,value\n" + "".join(f"{60 * i},{100 if i < 60 else 400}\n" for i in range(120)))
    for approve, out in ((None, tmp_path / "never"), ("5", tmp_path / "five")):
        argv = ["--trace", str(trace_file), "--policy", str(tmp_path / "policy.yaml"), "--out", str(out), "--quiet"]
        assert main(argv + (["--approve-after", approve] if approve else [])) == 0
    never, five = (json.loads((tmp_path / d / "summary.json").read_text())["policies"][0] for d in ("never", "five"))
    assert never["scaling_actions"] == 0
    assert five["scaling_actions"] >= 1
    assert five["notes"]["approval:Approved"] >= 1
    assert five["slo_violation_minutes"] < never["slo_violation_minutes"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        pytest.param([], "give either --trace", id="no-source"),
        pytest.param(["--trace", "missing.csv"], "No such file", id="missing-trace"),
        pytest.param(["--prometheus", "http://127.0.0.1:1"], "needs --query and --start", id="prometheus-alone"),
        pytest.param(["--slo", "0"], "slo must be above 0", id="bad-model"),
        pytest.param(["--trace", "t.csv", "--approve-after", "-1"], "--approve-after must be", id="negative-approval"),
        pytest.param(["--trace", "t.csv", "--approve-after", "nan"], "--approve-after must be", id="nan-approval"),
    ],
)
def test_the_command_says_what_is_wrong(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_table_columns() -> None:
    t = make_trace("t", [(0.0, 100.0), (600.0, 300.0)], peak_pods=20, capacity=100)
    from accord.sim.baselines import Oracle, Static
    from accord.sim.model import replay

    runs = [replay(t, Oracle(t, MODEL), MODEL), replay(t, Static(t, MODEL), MODEL)]
    lines = table(runs).splitlines()
    assert lines[0].split() == [
        "policy",
        "pod-hours",
        "SLO-violation",
        "min",
        "unserved",
        "requests",
        "scaling",
        "actions",
        "ratio",
        "to",
        "oracle",
    ]
    assert lines[2].split()[-1] == "1.000"
