"""Readable validation errors that name the field (models layer)."""

from __future__ import annotations

from pydantic import ValidationError


def field_path(loc: tuple[int | str, ...]) -> str:
    """`('spec', 'bounds', 'minReplicas')` -> `spec.bounds.minReplicas`; list indexes in brackets.

    Locations already carry the wire (camelCase) names the user wrote; they are kept as they are.
    """
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.startswith(("function-", "constrained-")) or "[" in part:
            continue  # pydantic's internal validator names are not fields a user wrote
        else:
            out += ("." if out else "") + part
    return out or "(root)"


def describe_validation_error(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors(include_url=False):
        msg = err["msg"].removeprefix("Value error, ")
        lines.append(f"  {field_path(tuple(err['loc']))}: {msg}")
    return "\n".join(lines)
