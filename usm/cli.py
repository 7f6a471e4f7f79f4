"""Command-line helpers shared by every entry point.

    >>> from usm.cli import parse_assignments
    >>> parse_assignments(["skip_conn=false", "hidden_size=96", "name=x", "p=0.5"], "--model-arg")
    {'skip_conn': False, 'hidden_size': 96, 'name': 'x', 'p': 0.5}
"""

from __future__ import annotations

import sys


class UsageError(ValueError):
    """A bad command-line input: the command prints the message as one line and exits with code 2."""


TYPE_NAMES = {"bool": "true or false", "int": "an integer", "float": "a number", "str": "a string"}


def typed(kind: str, value):
    """``value`` if it is of ``kind`` ("bool", "int", "float" or "str"; an int is a float too, and is
    returned as one), else TypeError. A bool is not an int here, though Python says it is."""
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(kind)
        return float(value)
    expected = {"bool": bool, "int": int, "str": str}[kind]
    if not isinstance(value, expected) or (kind == "int" and isinstance(value, bool)):
        raise TypeError(kind)
    return value


def parse_value(text: str):
    """'true'/'false' -> bool, 'none'/'null' -> None, then int, then float, else the string."""
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def parse_assignments(pairs, flag: str) -> dict:
    """KEY=VALUE strings -> dict; a malformed pair, or a key given twice with two values, exits
    (code 2, like argparse) naming the flag. Flags that take them collect every occurrence
    (``action="extend"``), so ``--set a=1 --set b=2`` is both, never only the last."""
    out = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            print(f"error: {flag} {pair!r}: expected KEY=VALUE", file=sys.stderr)
            raise SystemExit(2)
        if key in out and out[key] != parse_value(value):
            print(f"error: {flag} {key} is given twice ({key}={out[key]} and {pair}): keep one", file=sys.stderr)
            raise SystemExit(2)
        out[key] = parse_value(value)
    return out
