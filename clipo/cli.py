"""The `clipo` command line."""
from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="clipo", description=__doc__)
    parser.add_argument("command", nargs="?", help="train | eval | report (arriving with the trainer)")
    args = parser.parse_args(argv)
    print(f"clipo: '{args.command}' is not built yet; the trainer arrives with issue 3 of 5.", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
