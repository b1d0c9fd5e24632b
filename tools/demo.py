#!/usr/bin/env python
"""Run the registry's end-to-end demo (same as ``cfreg demo``).

Usage::

    python tools/demo.py                       # in the current folder, full size (< 1 minute)
    python tools/demo.py --workdir /tmp/demo   # elsewhere; re-running adds new versions
    python tools/demo.py --quick               # small data set, a few seconds

The logic lives in :mod:`registry.demo` and the printing in :mod:`registry.cli.run`;
this script only parses arguments.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from rich.console import Console


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run the demo, print its result; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=Path("."),
                        help="base folder: data, artifacts and the registry (<workdir>/artifacts/cf/registry.json) "
                             "go under it (default: the current folder, as `cfreg demo`)")
    parser.add_argument("--quick", action="store_true", help="small data set and grid (a few seconds)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress display")
    parser.add_argument("--database-url", default=os.environ.get("CFREG_DATABASE_URL"),
                        help="registry database URL (default: registry.db beside registry.json)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    from registry.cli.run import render_demo_result
    from registry.demo import run_demo
    from registry.errors import RegistryError

    console = Console()
    try:
        result = run_demo(args.workdir, quick=args.quick, show_progress=not args.no_progress,
                          database_url=args.database_url, console=console)
    except RegistryError as exc:
        Console(stderr=True).print(f"[red]Error:[/red] {exc}")
        return 1
    render_demo_result(result, console)
    return 0


if __name__ == "__main__":
    sys.exit(main())
