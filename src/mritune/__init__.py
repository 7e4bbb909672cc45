"""mritune: tune, cross-validate and honestly evaluate MRI image classifiers.

``import mritune`` stays light: the heavy layers (engine, tuning) are imported on first use.
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__"]
