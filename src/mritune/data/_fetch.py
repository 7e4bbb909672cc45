"""Downloading the Kaggle brain-tumour MRI data with kagglehub (for real users with network)."""

from __future__ import annotations

import shutil
from pathlib import Path

from mritune.errors import DataError

__all__ = ["fetch", "DEFAULT_HANDLE"]

DEFAULT_HANDLE = "theiturhs/brain-tumor-mri-classification-dataset"

_BY_HAND = (
    "download it from https://www.kaggle.com/datasets/{handle} in a browser and unzip it so that "
    "{out}/Training/<class>/ and {out}/Testing/<class>/ exist"
)


def fetch(handle: str = DEFAULT_HANDLE, out: str | Path = "runs/data") -> Path:
    """Download the Kaggle dataset ``handle`` with kagglehub and copy it to ``out``.

    Needs network access and Kaggle credentials (``~/.kaggle/kaggle.json`` or the
    ``KAGGLE_USERNAME`` / ``KAGGLE_KEY`` variables). Without them, raises :class:`DataError`
    with one line saying how to place the data by hand.
    """
    out = Path(out)
    hand = _BY_HAND.format(handle=handle, out=out)
    try:
        import kagglehub
    except ImportError:
        raise DataError(
            f"kagglehub is not installed (pip install 'mritune[kaggle]'); or {hand}"
        ) from None
    try:
        src = Path(kagglehub.dataset_download(handle))
    except Exception as exc:  # noqa: BLE001 - network, auth and 404 errors all mean the same here
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(
            f"could not download '{handle}' from Kaggle ({first[:160]}): check the network and "
            f"Kaggle credentials, or {hand}"
        ) from None
    out.mkdir(parents=True, exist_ok=True)
    shutil.copytree(src, out, dirs_exist_ok=True)
    return out
