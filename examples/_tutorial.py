"""What the tutorial scripts share: run from a checkout, and print a cell's value the way a
notebook shows it."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def show(label: str, value: object) -> None:
    """Print ``value`` under ``label``, as a notebook cell's output."""
    print(f"{label}\n{value!r}\n")
