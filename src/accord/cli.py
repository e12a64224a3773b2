"""The `accord` command (top layer): CRD generation, validation of manifests, and the operator's tools."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import yaml
from pydantic import ValidationError

from accord.models.agent import Agent
from accord.models.crd import render_crds
from accord.models.errors import describe_validation_error
from accord.models.negotiation import Negotiation
from accord.models.policy import NegotiationPolicy

KINDS = {"Agent": Agent, "NegotiationPolicy": NegotiationPolicy, "Negotiation": Negotiation}


def cmd_crds(args: argparse.Namespace) -> int:
    out = Path(args.out)
    stale = []
    for name, text in render_crds().items():
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
                KINDS[doc["kind"]].model_validate(doc)
            except ValidationError as exc:
                failures += 1
                print(f"{file}: {doc['kind']}/{name} is invalid:\n{describe_validation_error(exc)}", file=sys.stderr)
            else:
                print(f"{file}: {doc['kind']}/{name} is valid")
    return 1 if failures else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="accord", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    crds = sub.add_parser("crds", help="write the CRDs generated from the models")
    crds.add_argument("--out", default="crds", help="directory to write to (default: crds)")
    crds.add_argument("--check", action="store_true", help="fail if the files differ from the models")
    crds.set_defaults(func=cmd_crds)
    validate = sub.add_parser("validate", help="validate Agent, NegotiationPolicy and Negotiation manifests")
    validate.add_argument("files", nargs="+")
    validate.set_defaults(func=cmd_validate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
