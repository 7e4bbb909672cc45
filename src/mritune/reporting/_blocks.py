"""A report as plain blocks (heading, text, table, image), rendered to Markdown and to HTML."""

from __future__ import annotations

import base64
import dataclasses
import html
from pathlib import Path
from typing import Any

__all__ = ["Block", "Heading", "Text", "Table", "Image", "to_markdown", "to_html", "fmt"]


def fmt(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


@dataclasses.dataclass
class Heading:
    text: str
    level: int = 2


@dataclasses.dataclass
class Text:
    text: str


@dataclasses.dataclass
class Table:
    columns: list[str]
    rows: list[list[Any]]
    caption: str = ""


@dataclasses.dataclass
class Image:
    path: Path
    caption: str


Block = Heading | Text | Table | Image


def to_markdown(blocks: list[Block], base: Path) -> str:
    out = []
    for b in blocks:
        if isinstance(b, Heading):
            out.append(f"{'#' * b.level} {b.text}\n")
        elif isinstance(b, Text):
            out.append(b.text + "\n")
        elif isinstance(b, Table):
            if b.caption:
                out.append(f"*{b.caption}*\n")
            out.append("| " + " | ".join(b.columns) + " |")
            out.append("|" + "|".join("---" for _ in b.columns) + "|")
            out += ["| " + " | ".join(fmt(v) for v in r) + " |" for r in b.rows]
            out.append("")
        elif isinstance(b, Image):
            rel = b.path.relative_to(base) if b.path.is_relative_to(base) else b.path
            out.append(f"![{b.caption}]({rel.as_posix()})\n")
    return "\n".join(out)


_CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:.9em}th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left}
th{background:#f3f3f3}figure{margin:1em 0}img{max-width:100%}figcaption{color:#555;font-size:.9em}
code{background:#f3f3f3;padding:0 .2em}"""


def to_html(blocks: list[Block], title: str) -> str:
    """Self-contained HTML: images are embedded as base64 data URIs."""
    out = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
           f"<style>{_CSS}</style></head><body>"]  # fmt: skip
    for b in blocks:
        if isinstance(b, Heading):
            out.append(f"<h{b.level}>{html.escape(b.text)}</h{b.level}>")
        elif isinstance(b, Text):
            for para in b.text.split("\n\n"):
                lines = para.splitlines()
                if lines and all(line.startswith("- ") for line in lines):
                    out.append(
                        "<ul>" + "".join(f"<li>{html.escape(x[2:])}</li>" for x in lines) + "</ul>"
                    )
                else:
                    out.append(f"<p>{html.escape(para)}</p>")
        elif isinstance(b, Table):
            cap = f"<caption>{html.escape(b.caption)}</caption>" if b.caption else ""
            head = "".join(f"<th>{html.escape(c)}</th>" for c in b.columns)
            body = "".join(
                "<tr>" + "".join(f"<td>{html.escape(fmt(v))}</td>" for v in r) + "</tr>"
                for r in b.rows
            )
            out.append(f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        elif isinstance(b, Image):
            data = base64.b64encode(b.path.read_bytes()).decode()
            out.append(f"<figure><img src='data:image/png;base64,{data}' alt='{html.escape(b.caption)}'>"
                       f"<figcaption>{html.escape(b.caption)}</figcaption></figure>")  # fmt: skip
    out.append("</body></html>")
    return "\n".join(out)
