"""Small standalone HTML tables for the Snakemake report (metrics and QC beside the figures)."""

from __future__ import annotations

from pathlib import Path

from bloodcell.common.atomic import atomic_file


def html_table(title: str, header: list[str], rows: list[list[object]], path: Path) -> None:
    """A small standalone HTML table (the Snakemake report embeds it beside the figures)."""
    from html import escape

    def cell(v: object) -> str:
        return f"{v:.4f}" if isinstance(v, float) else ("-" if v is None else escape(str(v)))

    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in r) + "</tr>\n" for r in rows)
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    with atomic_file(path) as tmp:
        tmp.write_text(f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)}"
                       "</title><style>td,th{padding:2px 10px;text-align:right}</style></head>"
                       f"<body><h3>{escape(title)}</h3><table><tr>{head}</tr>\n{body}</table>"
                       "</body></html>\n")
