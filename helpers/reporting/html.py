"""Markdown → one self-contained HTML page (figures embedded), for the report and the index alike."""

from __future__ import annotations

import base64
from pathlib import Path

import markdown


def to_html(markdown_text: str, folder: Path, title: str, lang: str = "ru") -> str:
    """A self-contained HTML page of the report (Python-Markdown), with every figure embedded."""
    body = markdown.markdown(markdown_text, extensions=["tables", "sane_lists"], output_format="html")
    for png in sorted(Path(folder).glob("*.png")):
        data = base64.b64encode(png.read_bytes()).decode("ascii")
        body = body.replace(f'src="{png.name}"', f'src="data:image/png;base64,{data}"')
    # A wide table scrolls inside its own box instead of pushing the page sideways; long cells wrap.
    style = ("body{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;line-height:1.4}"
             "table{border-collapse:collapse;font-size:82%;display:block;max-width:100%;overflow-x:auto}"
             "td,th{border:1px solid #ccc;padding:3px 6px;vertical-align:top;overflow-wrap:break-word;hyphens:auto}"
             "th{background:#f4f4f4}td{min-width:4em}td:last-child{overflow-wrap:anywhere;min-width:10em}"
             "img{max-width:100%}")
    return (f"<!DOCTYPE html>\n<html lang=\"{lang}\"><head><meta charset=\"utf-8\"><title>{title}</title>"
            f"<style>{style}</style></head><body>\n{body}\n</body></html>\n")
