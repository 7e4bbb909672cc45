"""Exception types.

Every error a user can cause derives from :class:`MrituneError`; the command line prints it as one
line (what, where, how to fix) and exits non-zero without a traceback.
"""

from __future__ import annotations

__all__ = [
    "MrituneError",
    "DataError",
    "ConfigError",
    "CacheError",
    "EngineError",
    "TrainingDiverged",
    "OutOfMemory",
    "WeightsUnavailable",
    "BundleError",
    "TuningError",
    "StorageError",
]


class MrituneError(Exception):
    """Base class for errors caused by input, configuration or environment (not by a bug)."""

    exit_code = 2


class DataError(MrituneError):
    """The data folder, manifest or an image cannot be used as given."""


class ConfigError(MrituneError):
    """A setting, option combination or configuration file is invalid."""


class CacheError(MrituneError):
    """The decode-once image cache cannot be built or read."""


class EngineError(MrituneError):
    """Training or inference failed for a reason the caller can record."""


class TrainingDiverged(EngineError):
    """The loss became NaN or infinite."""


class OutOfMemory(EngineError):
    """The device ran out of memory (try a smaller batch size or image size)."""


class WeightsUnavailable(EngineError):
    """Pretrained weights were asked for and cannot be had."""


class BundleError(MrituneError):
    """A saved model bundle is missing, damaged or inconsistent."""


class TuningError(MrituneError):
    """A study cannot be run or read as asked."""


class StorageError(TuningError):
    """The study storage cannot be used as asked."""
