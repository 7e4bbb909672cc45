"""Reporting layer: plain result data first, then Markdown/HTML renderers and figures."""

from __future__ import annotations

from mritune.reporting._report import build_report, write_report

__all__ = ["build_report", "write_report"]
