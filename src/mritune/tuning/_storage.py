"""Study storage: SQLite file (default), PostgreSQL (many workers, many machines), journal file."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

try:  # optuna >= 4.9 renamed the retry callback and its argument (the old ones go in 6.0)
    from optuna.storages import RetryHeartbeatStaleTrialCallback as _RetryCallback

    _RETRY_ARG = "heartbeat_stale_trial_callback"
except ImportError:  # pragma: no cover - optuna < 4.9
    from optuna.storages import RetryFailedTrialCallback as _RetryCallback

    _RETRY_ARG = "failed_trial_callback"

from mritune.errors import StorageError

__all__ = [
    "DEFAULT_STORAGE",
    "open_storage",
    "storage_kind",
    "is_multiprocess_safe",
    "normalize_url",
    "heartbeat_settings",
    "trial_heartbeat",
    "fail_silent_trials",
]

DEFAULT_STORAGE = "sqlite:///runs/mritune.db"
#: Seconds between heartbeats of a running trial, and after which a silent one is failed.
#: ``$MRITUNE_HEARTBEAT_INTERVAL`` and ``$MRITUNE_HEARTBEAT_GRACE`` override them (whole seconds),
#: e.g. for tests that kill a worker and must not wait half a minute.
HEARTBEAT_INTERVAL = 10
GRACE_PERIOD = 30
MAX_RETRY = 3
#: User attribute that a running trial refreshes on storages without Optuna's own heartbeats
#: (journal files), so that the trial of a dead worker can be told from a slow one.
HEARTBEAT_ATTR = "heartbeat"


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


def heartbeat_settings() -> tuple[int, int]:
    """``(interval, grace)`` in seconds: the module constants, or the environment's overrides."""
    interval = _env_seconds("MRITUNE_HEARTBEAT_INTERVAL", HEARTBEAT_INTERVAL)
    grace = _env_seconds("MRITUNE_HEARTBEAT_GRACE", GRACE_PERIOD)
    if grace <= interval:
        raise StorageError(
            f"the heartbeat grace period is {grace} s, but must be longer than the heartbeat "
            f"interval ({interval} s); check MRITUNE_HEARTBEAT_GRACE and MRITUNE_HEARTBEAT_INTERVAL"
        )
    return interval, grace


def _env_seconds(name: str, default: int) -> int:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise StorageError(f"{name} is {text!r}, but must be a whole number of seconds >= 1")
    return value


def _with_driver(url: str) -> str:
    """``postgresql://`` (or ``postgres://``) with a driver that is installed.

    SQLAlchemy picks the driver of a bare ``postgresql://`` URL itself: psycopg2 up to 2.0, psycopg
    (version 3) from 2.1. ``mritune[postgres]`` installs psycopg2, so a bare URL names the driver
    found here; a URL that names one (``postgresql+psycopg://``) is left as it is.
    """
    scheme, sep, rest = url.partition("://")
    if scheme not in ("postgresql", "postgres") or not sep:
        return url
    for module in ("psycopg2", "psycopg"):
        if importlib.util.find_spec(module) is not None:
            return f"postgresql+{module}://{rest}"
    return f"postgresql://{rest}"


def _rdb_storage(url: str, engine_kwargs: dict, hb: dict, attempts: int = 6) -> RDBStorage:
    """``RDBStorage(url)``, retried when workers that start together on a new database race to
    create Optuna's tables (PostgreSQL answers the loser with a unique or duplicate-table error)."""
    from sqlalchemy.exc import IntegrityError, ProgrammingError

    for attempt in range(1, attempts + 1):
        try:
            return RDBStorage(url, engine_kwargs=engine_kwargs, **hb)
        except (IntegrityError, ProgrammingError):
            if attempt == attempts:
                raise
            time.sleep(random.uniform(0.1, 0.5) * attempt)
    raise AssertionError("unreachable")  # pragma: no cover


def open_storage(url: str, *, heartbeat: bool = True) -> BaseStorage:
    """Open (creating if needed) the storage at ``url``.

    RDB storages get heartbeats: a trial whose worker died (even by SIGKILL) is marked FAIL by the
    next worker after ``GRACE_PERIOD`` seconds (see :func:`heartbeat_settings`) and re-queued with
    the same parameters.
    """
    url = normalize_url(url)
    kind = storage_kind(url)
    interval, grace = heartbeat_settings() if heartbeat else (None, None)
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
            hb = {
                "heartbeat_interval": interval,
                "grace_period": grace,
                _RETRY_ARG: _RetryCallback(max_retry=MAX_RETRY),
            }
        engine_kwargs = (
            {"connect_args": {"timeout": 60}} if kind == "sqlite" else {"pool_pre_ping": True}
        )
        return _rdb_storage(_with_driver(url), engine_kwargs, hb)
    except ImportError as exc:
        extra = "postgres" if kind.startswith("postgres") else kind
        raise StorageError(
            f"cannot open {kind} storage: {exc}; install the driver (pip install 'mritune[{extra}]')"
        ) from None
    except Exception as exc:  # noqa: BLE001 - connection refused, auth, bad URL...
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise StorageError(f"cannot open storage {url}: {first}") from None


@contextlib.contextmanager
def trial_heartbeat(trial: optuna.Trial, interval: float) -> Iterator[None]:
    """Refresh ``trial``'s heartbeat attribute (a Unix time) every ``interval`` seconds while the
    body runs: Optuna's heartbeats for storages that have none (journal files)."""
    stop = threading.Event()

    def beat() -> None:
        while True:
            try:
                trial.set_user_attr(HEARTBEAT_ATTR, time.time())
            except Exception:  # noqa: BLE001 - the trial finished or the storage went away
                return
            if stop.wait(interval):
                return

    thread = threading.Thread(target=beat, name=f"mritune-heartbeat-{trial.number}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def fail_silent_trials(study: optuna.Study, grace: float | None = None) -> list[int]:
    """Fail the RUNNING trials whose :func:`trial_heartbeat` is older than ``grace`` seconds
    (default: :func:`heartbeat_settings`) and queue each again with the same parameters, as RDB
    storages do with Optuna's heartbeats. Returns the numbers of the trials failed.

    Only for storages without Optuna's heartbeats: a trial that another worker is running there
    beats through :func:`trial_heartbeat`. Clocks of machines sharing a journal file must agree to
    within the grace period.
    """
    grace = heartbeat_settings()[1] if grace is None else grace
    retry = _RetryCallback(max_retry=MAX_RETRY)
    now = time.time()
    failed = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        started = t.datetime_start.timestamp() if t.datetime_start else now
        if now - max(float(t.user_attrs.get(HEARTBEAT_ATTR, 0.0)), started) <= grace:
            continue
        try:
            study.tell(t.number, state=TrialState.FAIL)
        except (ValueError, UpdateFinishedTrialError):
            continue  # it finished meanwhile, or another worker failed it first
        failed.append(t.number)
        retry(study, t)
    return failed
