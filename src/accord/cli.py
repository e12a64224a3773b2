"""The `accord` command (top layer): CRD generation, validation of manifests, and the operator's tools."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from accord.models.agent import Agent
from accord.models.common import GROUP, VERSION, from_wire
from accord.models.crd import render_chart_crds, render_crds
from accord.models.errors import describe_validation_error
from accord.models.negotiation import Negotiation
from accord.models.policy import ClusterNegotiationPolicy, NegotiationPolicy
from accord.sim.cli import add_simulate_parser

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
KINDS = {
    "Agent": Agent,
    "NegotiationPolicy": NegotiationPolicy,
    "ClusterNegotiationPolicy": ClusterNegotiationPolicy,
    "Negotiation": Negotiation,
}


def _chart_dir(args: argparse.Namespace) -> Path | None:
    """The chart whose CRD templates are kept in step: --chart-dir, else helm/accord beside the --out directory."""
    if args.chart_dir is not None:
        return Path(args.chart_dir) if args.chart_dir else None
    beside = Path(args.out).parent / "helm" / "accord"
    return beside if (beside / "Chart.yaml").is_file() else None


def cmd_crds(args: argparse.Namespace) -> int:
    targets = [(Path(args.out), render_crds())]
    chart = _chart_dir(args)
    if chart is not None:
        targets.append((chart / "templates" / "crds", render_chart_crds()))
    stale = []
    for out, files in targets:
        for name, text in files.items():
            path = out / name
            if args.check:
                if not path.exists() or path.read_text() != text:
                    stale.append(str(path))
                continue
            out.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {path}")
    if stale:
        print("out of date (run `accord crds`): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    failures = 0
    for file in args.files:
        for doc in yaml.safe_load_all(Path(file).read_text()):
            if not isinstance(doc, dict) or doc.get("kind") not in KINDS:
                continue
            name = (doc.get("metadata") or {}).get("name", "?")
            try:
                from_wire(KINDS[doc["kind"]], doc)
            except ValidationError as exc:
                failures += 1
                print(f"{file}: {doc['kind']}/{name} is invalid:\n{describe_validation_error(exc)}", file=sys.stderr)
            else:
                print(f"{file}: {doc['kind']}/{name} is valid")
    return 1 if failures else 0


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log collectors; kopf's per-object records name their object."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        ref = getattr(record, "k8s_ref", None)
        if ref:
            entry["object"] = ref
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def _configure_logging(level: str, fmt: str) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(LOG_FORMAT))
    logging.basicConfig(level=getattr(logging, level.upper()), handlers=[handler])


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < value <= 300:
        raise argparse.ArgumentTypeError(f"{text} must be more than 0 and at most 300 seconds")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= value <= 1024:
        raise argparse.ArgumentTypeError(f"{text} must be from 1 to 1024")
    return value


def cmd_run(args: argparse.Namespace) -> int:
    if args.prometheus_ca is not None:
        import ssl

        try:
            ssl.create_default_context(cafile=args.prometheus_ca)
        except (OSError, ssl.SSLError) as exc:
            print(f"accord run: --prometheus-ca {args.prometheus_ca}: cannot load a CA bundle: {exc}", file=sys.stderr)
            return 2
    if args.kubeconfig:
        # kopf logs in through the kubernetes library, which reads KUBECONFIG when first imported.
        os.environ["KUBECONFIG"] = args.kubeconfig
    import kopf
    from kubernetes.config import kube_config

    from accord.operator import handlers  # noqa: F401 - importing registers the handlers with kopf

    if args.kubeconfig:
        kube_config.KUBE_CONFIG_DEFAULT_LOCATION = args.kubeconfig
    if args.webhook:
        from accord.operator import webhooks  # noqa: F401
    namespaces = tuple(args.namespace or ())
    if not namespaces:
        # ClusterNegotiationPolicies and Namespaces' labels: only an install that watches the whole cluster.
        from accord.operator import cluster_handlers  # noqa: F401

    from accord.operator.state import OperatorConfig

    _configure_logging(args.log_level, args.log_format)
    logging.getLogger("kopf.objects").setLevel(max(logging.WARNING, logging.getLogger().level))
    config = OperatorConfig(
        leader_election=args.leader_election,
        lease_namespace=args.lease_namespace,
        lease_name=args.lease_name,
        shards=args.shards,
        prometheus_url=args.prometheus_url,
        prometheus_timeout=args.prometheus_timeout,
        prometheus_ca_file=args.prometheus_ca,
        namespaces=namespaces,
        metrics_host=args.metrics_host,
        metrics_port=args.metrics_port,
        webhook=args.webhook,
        webhook_host=args.webhook_host,
        webhook_port=args.webhook_port,
        webhook_certfile=args.webhook_cert,
        webhook_keyfile=args.webhook_key,
        webhook_cafile=args.webhook_ca,
        webhook_url_host=args.webhook_url_host,
        webhook_service=args.webhook_service,
        concurrency=args.concurrency,
        kubeconfig=args.kubeconfig,
        agent_hosts=tuple(args.agent_host or ()),
        protected_namespaces=tuple(n for arg in args.protected_namespace or () for n in arg.split(",") if n),
        placements=args.placements,
        manage_webhook_configurations=args.webhook_configurations == "operator",
    )
    kopf.run(
        clusterwide=not namespaces,
        namespaces=namespaces,
        # No kopf peering: it would pause all replicas but one, and the replicas shard the namespaces.
        standalone=True,
        memo=kopf.Memo(config=config),
        liveness_endpoint=args.liveness,
    )
    return 0


def _negotiation(args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    from kubernetes import client, config

    config.load_kube_config(config_file=args.kubeconfig)  # type: ignore[no-untyped-call]
    api = client.CustomObjectsApi()
    body: dict[str, Any] = api.get_namespaced_custom_object(  # type: ignore[assignment]
        GROUP, VERSION, args.namespace, "negotiations", args.name
    )
    return api, body


def cmd_explain(args: argparse.Namespace) -> int:
    from accord.explain import explain

    _, body = _negotiation(args)
    print(explain(body))
    return 0


def cmd_decide(args: argparse.Namespace) -> int:
    api, body = _negotiation(args)
    phase = (body.get("status") or {}).get("phase")
    if phase != "PendingApproval":
        print(f"negotiation {args.name} is {phase}, not PendingApproval", file=sys.stderr)
        return 1
    patch = {"metadata": {"annotations": {"accord.dev/approval": args.decision}}}
    api.patch_namespaced_custom_object(GROUP, VERSION, args.namespace, "negotiations", args.name, patch)
    print(f"negotiation {args.name} {args.decision}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="accord", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    crds = sub.add_parser("crds", help="write the CRDs generated from the models")
    crds.add_argument("--out", default="crds", help="directory to write to (default: crds)")
    crds.add_argument(
        "--chart-dir",
        default=None,
        help="chart whose templates/crds/ to write too (default: helm/accord beside --out if it exists; '' for none)",
    )
    crds.add_argument("--check", action="store_true", help="fail if the files differ from the models")
    crds.set_defaults(func=cmd_crds)
    validate = sub.add_parser("validate", help="validate Agent, NegotiationPolicy and Negotiation manifests")
    validate.add_argument("files", nargs="+")
    validate.set_defaults(func=cmd_validate)
    run = sub.add_parser("run", help="run the operator")
    run.add_argument("--namespace", "-n", action="append", help="watch only this namespace (repeatable)")
    run.add_argument(
        "--prometheus-url",
        default=os.environ.get("ACCORD_PROMETHEUS_URL"),
        help="Prometheus base URL (env ACCORD_PROMETHEUS_URL)",
    )
    run.add_argument(
        "--prometheus-timeout",
        type=_positive_seconds,
        default=5.0,
        help="seconds one Prometheus query may take, its retries included; a query that takes longer is "
        "missing evidence and the policy's missing-metrics rule applies (default 5)",
    )
    run.add_argument(
        "--prometheus-ca",
        default=os.environ.get("ACCORD_PROMETHEUS_CA"),
        metavar="FILE",
        help="CA bundle (PEM) an https Prometheus is verified against, instead of the system's trust store "
        "(env ACCORD_PROMETHEUS_CA); verification cannot be turned off",
    )
    run.add_argument("--kubeconfig", default=None, help="kubeconfig to use outside a cluster")
    run.add_argument("--metrics-host", default="0.0.0.0")
    run.add_argument(
        "--metrics-port",
        type=int,
        default=int(os.environ.get("ACCORD_METRICS_PORT", "8080")),
        help="port of /metrics, /healthz and /readyz",
    )
    run.add_argument("--webhook", action="store_true", help="serve the approval admission webhook")
    run.add_argument("--webhook-host", default="127.0.0.1", help="address the webhook listens on")
    run.add_argument("--webhook-port", type=int, default=9443)
    run.add_argument("--webhook-url-host", default=None, help="host the API server calls (defaults to --webhook-host)")
    run.add_argument("--webhook-cert", default=None, help="serving certificate (PEM); self-signed if unset")
    run.add_argument("--webhook-key", default=None, help="key of the serving certificate (PEM)")
    run.add_argument(
        "--webhook-service",
        default=None,
        help="NAMESPACE/NAME of the Service in front of the webhook; registers it by Service reference",
    )
    run.add_argument("--webhook-ca", default=None, help="CA bundle the API server trusts (defaults to --webhook-cert)")
    run.add_argument(
        "--webhook-configurations",
        choices=["operator", "external"],
        default="operator",
        help="who registers the webhook configurations: the operator (kopf, the default) or someone else "
        "(the chart, persistently); with external the operator needs no rights on them",
    )
    run.add_argument(
        "--protected-namespace",
        action="append",
        help="a namespace no policy reaches, besides kube-system, kube-public and kube-node-lease "
        "(repeatable, or comma-separated)",
    )
    run.add_argument(
        "--no-placements",
        dest="placements",
        action="store_false",
        help="never change pod templates: replicas through the scale subresource only, no negotiation "
        "annotation on workloads, and a policy with placements is Invalid (for installs without patch rights "
        "on Deployments and StatefulSets)",
    )
    run.add_argument("--concurrency", type=int, default=16, help="workloads negotiated at once")
    run.add_argument(
        "--agent-host",
        action="append",
        default=None,
        metavar="HOST",
        help="a host external agents may be served from (repeatable; `*.example.com` for any name under a "
        "domain); with none set, any host. An Agent whose URL names another host is marked invalid",
    )
    run.add_argument(
        "--no-leader-election",
        dest="leader_election",
        action="store_false",
        help="write without holding the Lease (only where no other operator can run at the same time)",
    )
    run.add_argument(
        "--lease-namespace",
        default=os.environ.get("POD_NAMESPACE") or "default",
        help="namespace of the Leases whose holders alone write (default: $POD_NAMESPACE, else default)",
    )
    run.add_argument(
        "--lease-name",
        default="accord",
        help="prefix of the Leases: <name>-members, and <name>-shard-<i> whose holder alone writes for the "
        "namespaces of shard i (default: accord)",
    )
    run.add_argument(
        "--shards",
        type=_positive_int,
        default=1,
        help="shards the namespaces are split into among the replicas (default 1: one replica writes, the "
        "others stand by); the same for every replica of an installation, whatever their number",
    )
    run.add_argument("--liveness", default=None, help="kopf liveness endpoint, e.g. http://0.0.0.0:8081/healthz")
    run.add_argument("--log-level", default=os.environ.get("ACCORD_LOG_LEVEL", "info"))
    run.add_argument("--log-format", choices=["text", "json"], default=os.environ.get("ACCORD_LOG_FORMAT", "text"))
    run.set_defaults(func=cmd_run)
    for command, helptext in (("explain", "print a readable account of one decision"),):
        explain = sub.add_parser(command, help=helptext)
        explain.add_argument("name")
        explain.add_argument("--namespace", "-n", default="default")
        explain.add_argument("--kubeconfig", default=None)
        explain.set_defaults(func=cmd_explain)
    add_simulate_parser(sub)
    for decision, verb in (("approved", "approve"), ("rejected", "reject")):
        decide = sub.add_parser(verb, help=f"{verb} a pending decision (sets accord.dev/approval={decision})")
        decide.add_argument("name")
        decide.add_argument("--namespace", "-n", default="default")
        decide.add_argument("--kubeconfig", default=None)
        decide.set_defaults(func=cmd_decide, decision=decision)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
