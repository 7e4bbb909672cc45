"""Study storage: SQLite file (default), PostgreSQL (many workers, many machines), journal file."""

from __future__ import annotations

from pathlib import Path

import optuna
from optuna.storages import BaseStorage, JournalStorage, RDBStorage, RetryFailedTrialCallback
from optuna.storages.journal import JournalFileBackend

from mritune.errors import StorageError

__all__ = [
    "DEFAULT_STORAGE",
    "open_storage",
    "storage_kind",
    "is_multiprocess_safe",
    "normalize_url",
]

DEFAULT_STORAGE = "sqlite:///runs/mritune.db"
#: Seconds between heartbeats of a running trial, and after which a silent one is failed.
HEARTBEAT_INTERVAL = 10
GRACE_PERIOD = 30
MAX_RETRY = 3


def normalize_url(storage: str | None) -> str:
    """A storage URL from what the user typed: a URL, ``journal:FILE``, or a bare path
    (``.db``/``.sqlite`` -> SQLite, ``.log``/``.jsonl``/``.journal`` -> journal file)."""
    if not storage:
        return DEFAULT_STORAGE
    if "://" in storage or storage.startswith("journal:"):
        return storage
    suffix = Path(storage).suffix.lower()
    if suffix in (".db", ".sqlite", ".sqlite3"):
        return f"sqlite:///{storage}"
    if suffix in (".log", ".jsonl", ".journal"):
        return f"journal:{storage}"
    raise StorageError(
        f"storage '{storage}' is not a URL; use sqlite:///FILE.db, postgresql://USER@HOST/DB, "
        f"journal:FILE.log, or a path ending in .db or .log"
    )


def storage_kind(url: str) -> str:
    if url.startswith("journal:"):
        return "journal"
    return url.split(":", 1)[0].split("+", 1)[0]


def is_multiprocess_safe(url: str) -> bool:
    """SQLite is for one process; PostgreSQL/MySQL and journal files serve many."""
    return storage_kind(url) != "sqlite"


def open_storage(url: str, *, heartbeat: bool = True) -> BaseStorage:
    """Open (creating if needed) the storage at ``url``.

    RDB storages get heartbeats: a trial whose worker died (even by SIGKILL) is marked FAIL by the
    next worker after ``GRACE_PERIOD`` seconds and re-queued with the same parameters.
    """
    url = normalize_url(url)
    kind = storage_kind(url)
    try:
        if kind == "journal":
            path = Path(url.removeprefix("journal:"))
            path.parent.mkdir(parents=True, exist_ok=True)
            return JournalStorage(JournalFileBackend(str(path)))
        if kind == "sqlite":
            db = url.removeprefix("sqlite:///")
            if db and db != ":memory:":
                Path(db).parent.mkdir(parents=True, exist_ok=True)
        hb: dict = {}
        if heartbeat:
            hb = dict(
                heartbeat_interval=HEARTBEAT_INTERVAL,
                grace_period=GRACE_PERIOD,
                failed_trial_callback=RetryFailedTrialCallback(max_retry=MAX_RETRY),
            )
        engine_kwargs = (
            {"connect_args": {"timeout": 60}} if kind == "sqlite" else {"pool_pre_ping": True}
        )
        return RDBStorage(url, engine_kwargs=engine_kwargs, **hb)
    except ImportError as exc:
        extra = "postgres" if kind.startswith("postgres") else kind
        raise StorageError(
            f"cannot open {kind} storage: {exc}; install the driver (pip install 'mritune[{extra}]')"
        ) from None
    except Exception as exc:  # noqa: BLE001 - connection refused, auth, bad URL...
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise StorageError(f"cannot open storage {url}: {first}") from None


def _quiet() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
