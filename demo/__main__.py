"""`python -m demo`: the quickstart. Kept out of the product package (`service`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from demo.run import run_demo


def main(
    data_dir: Annotated[Path, typer.Option(help="Where the demo keeps its state.")] = Path(
        ".gatekeeper-demo"
    ),
    port: Annotated[int, typer.Option(help="Gatekeeper port (a free one if taken).")] = 8000,
) -> None:
    """Start a local installation, register two example versions and show the decisions."""
    run_demo(data_dir, port)


if __name__ == "__main__":
    typer.run(main)
