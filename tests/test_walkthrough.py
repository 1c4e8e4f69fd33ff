"""The user's walkthrough (tutorial part 3), step by step, asserting both stores at every point
the tutorial prints them. Repeated, because ordering races show up only now and then."""

from __future__ import annotations

import pytest

from walkthrough import run_walkthrough


@pytest.mark.parametrize("round_", range(15))
def test_walkthrough_step_by_step(hook, bob, alice, round_):
    run_walkthrough(bob, alice)


def test_tutorial_script_runs_unchanged(tmp_path):
    """scripts/tutorial_part3.py prints what the notebook shows, on real processes."""
    import subprocess
    import sys

    from conftest import ROOT
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "tutorial_part3.py")],
                            capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "tensor([ 2,  4,  6,  8, 10])" in out
    assert "alice: {}" in out  # before the move
    assert "  bob: {}" in out  # after the move
    assert "-> alice:" in out and "-> bob:" in out
