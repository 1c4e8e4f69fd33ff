"""Running the example scripts (``examples/``) as a user would: a fresh interpreter, real workers."""

from __future__ import annotations

import subprocess
import sys

from support.workers import ROOT


def run_script(name: str, tmp_path) -> str:
    """Run ``examples/<name>`` in ``tmp_path``; its standard output (it must exit 0)."""
    result = subprocess.run([sys.executable, str(ROOT / "examples" / name)], capture_output=True,
                            text=True, timeout=150, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout
