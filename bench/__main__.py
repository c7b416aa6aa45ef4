"""python -m bench <benchmark> [options]; -h lists them."""

from __future__ import annotations

import argparse
import asyncio
import sys

from bench import compare, jobs, workflows


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    commands = parser.add_subparsers(dest="benchmark", required=True)
    jobs.add_arguments(commands.add_parser("jobs", help=jobs.__doc__.splitlines()[0]))
    workflows.add_arguments(
        commands.add_parser("workflows", help=workflows.__doc__.splitlines()[0])
    )
    compare.add_arguments(commands.add_parser("compare", help=compare.__doc__.splitlines()[0]))
    args = parser.parse_args()
    runner = {"jobs": jobs.main, "workflows": workflows.main, "compare": compare.main}[
        args.benchmark
    ]
    return asyncio.run(runner(args))


if __name__ == "__main__":
    sys.exit(main())
