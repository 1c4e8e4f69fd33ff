"""Every check of what arrives is an ``if`` that raises, never an ``assert`` (SECURITY.md, "In
this order"): ``python -O`` strips asserts, and a worker or client started that way must check
exactly as much. Checked on the source of every package that reads what a peer sent — the
wire, the worker, the security helpers, the shared core (the allow-list, argument trees,
messages) and the client's receiving side — so that a new ``assert`` there fails here, where
it is cheap to turn into an ``if``.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "syftzmq"
READERS = ("wire", "worker", "security", "core", "client")


def test_no_assert_in_the_code_that_reads_what_peers_send():
    found = []
    for part in READERS:
        for path in sorted((PACKAGE / part).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Assert):
                    found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}")
    assert found == [], "asserts, which python -O removes: " + ", ".join(found)
