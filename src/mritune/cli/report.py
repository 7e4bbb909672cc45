"""``mritune report`` and ``mritune dashboard``."""

from __future__ import annotations

import argparse

from mritune.cli._common import console


def register(sub: argparse._SubParsersAction) -> None:
    r = sub.add_parser("report", help="write report.md and a self-contained report.html")
    r.add_argument("--storage", metavar="URL", help="study storage (sqlite:///runs/mritune.db)")
    r.add_argument("--study", action="append", metavar="NAME",
                   help="study to include (repeatable; default: every study in the storage)")  # fmt: skip
    r.add_argument(
        "--data", metavar="DIR", help="dataset for the data summary (default: the studies')"
    )
    r.add_argument("--final", metavar="DIR", help="final model bundle (with test/metrics.json)")
    r.add_argument("--out", required=True, metavar="DIR", help="report folder")
    r.set_defaults(func=run_report)

    d = sub.add_parser("dashboard", help="optuna-dashboard on the study storage")
    d.add_argument("--storage", metavar="URL", help="study storage (sqlite:///runs/mritune.db)")
    d.add_argument("--host", default="127.0.0.1", help="bind address (127.0.0.1)")
    d.add_argument("--port", type=int, default=8080, help="port (8080)")
    d.set_defaults(func=run_dashboard)


def run_report(args: argparse.Namespace) -> int:
    from mritune.reporting import write_report

    res = write_report(
        args.storage or "", args.out, studies=args.study, data=args.data, final=args.final
    )
    console.print(f"report: {res['html'].resolve()}")
    console.print(f"        {res['md'].resolve()}")
    return 0


def run_dashboard(args: argparse.Namespace) -> int:
    from mritune.errors import ConfigError
    from mritune.tuning import normalize_url, open_storage

    try:
        from optuna_dashboard import run_server
    except ImportError:
        raise ConfigError(
            "optuna-dashboard is not installed; pip install 'mritune[dashboard]'"
        ) from None
    url = normalize_url(args.storage)
    storage = open_storage(url, heartbeat=False)
    console.print(f"dashboard for {url} at http://{args.host}:{args.port} (Ctrl-C to stop)")
    run_server(storage, host=args.host, port=args.port)
    return 0
