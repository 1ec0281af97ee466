"""Command line of kfm_debugging: ``python -m kfm_debugging COMMAND``.

    check-regressions BASELINE CURRENT   compare two saved baselines

A CI job saves its runs as a baseline (Debugger.save_performance_baseline or
workflows.baseline.save_baseline) and compares them with the reference one
here; the exit status is the job's answer: 0 no regression, 1 regression(s),
2 a usage error or a file that cannot be read (the message names it).  The
demo is a module of its own: ``python -m kfm_debugging.demo``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .model.baseline import METRICS
from .render import baseline as render_baseline
from .workflows import baseline as wb

EXIT_OK, EXIT_REGRESSION, EXIT_ERROR = 0, 1, 2


def _threshold(s: str) -> float:
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {s!r}") from None
    if not 0.0 <= v <= 1000.0:
        raise argparse.ArgumentTypeError(f"must be from 0 to 1000, not {s}")
    return v


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m kfm_debugging",
        description="kfm_debugging command line (the demo: python -m kfm_debugging.demo)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    c = sub.add_parser(
        "check-regressions",
        help="compare runs saved as a baseline with a reference baseline; exit 1 on regression",
        description="Compare CURRENT's runs with BASELINE's, print the comparison, and exit "
                    "0 when no change is significant and worse by more than the threshold, "
                    "1 when some is, 2 on a usage or file error.")
    c.add_argument("baseline", metavar="BASELINE",
                   help="reference baseline: a name in --folder, or a path to its .json")
    c.add_argument("current", metavar="CURRENT",
                   help="the runs to check, saved as a baseline: a name or a path")
    c.add_argument("--threshold", type=_threshold, default=10.0, metavar="PERCENT",
                   help="how much worse a significant change must be to count (default 10)")
    c.add_argument("--folder", default=wb.DEFAULT_FOLDER,
                   help=f"where names are looked up (default {wb.DEFAULT_FOLDER})")
    c.add_argument("--metrics", nargs="+", choices=METRICS, metavar="METRIC",
                   help=f"compare only these ({', '.join(METRICS)}); default: the baseline's")
    c.add_argument("--format", choices=("text", "json", "markdown"), default="text",
                   help="output format (default text)")
    return p


def check_regressions(args: argparse.Namespace) -> int:
    try:
        ref = wb.load_baseline(args.baseline, args.folder)
        cur = wb.load_baseline(args.current, args.folder)
        cmp = wb.compare(ref, cur, args.metrics)
    except (OSError, ValueError) as e:
        # An OSError's own message names the file; "[Errno 2]" adds nothing.
        msg = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        print(f"python -m kfm_debugging check-regressions: error: {msg}", file=sys.stderr)
        return EXIT_ERROR
    found = wb.regressions(cmp, args.threshold)
    if args.format == "json":
        out = render_baseline.json_text(cmp, found, args.threshold)
    elif args.format == "markdown":
        out = render_baseline.markdown(cmp, found, args.threshold)
    else:
        out = (render_baseline.comparison_text(cmp) + "\n"
               + render_baseline.regressions_text(found, args.threshold))
    sys.stdout.write(out)
    return EXIT_REGRESSION if found else EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "check-regressions":
        return check_regressions(args)
    return EXIT_ERROR  # argparse allows only the commands above


if __name__ == "__main__":
    sys.exit(main())
