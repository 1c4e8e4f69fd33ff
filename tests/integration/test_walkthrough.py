"""The user's walkthrough (tutorial part 3), step by step, asserting both stores at every point
the tutorial prints them. Repeated, because ordering races show up only now and then."""

from __future__ import annotations

import pytest

from support.walkthrough import run_walkthrough


@pytest.mark.parametrize("round_", range(15))
def test_walkthrough_step_by_step(hook, bob, alice, round_):
    run_walkthrough(bob, alice)

