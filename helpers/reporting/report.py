"""REPORT.md and REPORT.html from a run's artifacts (JSON and CSV → markdown), in Russian or English.

The words are strings.yaml's, the layout templates/REPORT.md.j2's; each section's content comes from
helpers.reporting.sections and .results. No number is typed in.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from helpers.reporting import results as results_section
from helpers.reporting import sections
from helpers.reporting.html import to_html
from helpers.reporting.index import write_index
from helpers.reporting.sections import pct
from helpers.reporting.texts import check_lang, fill, strings
from helpers.utils import files, paths

__all__ = ["pct", "render", "results_markdown", "write_report"]  # pct: the report's percentage

TEMPLATE = "REPORT.md.j2"


def render(run_id: str, lang: str = "ru") -> str:
    """The markdown of REPORT.md for a run: every section's data laid out by the template."""
    run = sections.Run.open(run_id, paths.run_dir(run_id), check_lang(lang))
    return fill(TEMPLATE, t=run.t, run_id=run_id, figures=run.figures(), study=sections.study(run),
                data=sections.data(run), model=sections.model(run), results=results_section.results(run),
                export=results_section.export(run), provenance=sections.provenance(run))


def results_markdown(path: Path) -> str:
    """Section 4 of a written REPORT.md for showing in a notebook: the figures above it stand in for its images.

    Its image links are relative to reports/<run_id>/, so a notebook would show them as broken pictures.
    """
    text = Path(path).read_text(encoding="utf-8")
    section = "## 4." + text.split("## 4.", 1)[1] if "## 4." in text else text
    kept = [line for line in section.splitlines() if not line.startswith("![")]
    return "\n".join(kept)


def write_report(run_id: str, lang: str = "ru") -> Path:
    """Write reports/<run_id>/REPORT.md (figures beside it) and a self-contained REPORT.html."""
    check_lang(lang)
    text = render(run_id, lang)
    out = paths.report_dir(run_id)
    out.mkdir(parents=True, exist_ok=True)
    fig_dir = paths.run_dir(run_id) / "figures"
    if fig_dir.exists():
        for fig in fig_dir.glob("*.png"):
            with files.atomic_path(out / fig.name) as tmp:
                shutil.copyfile(fig, tmp)
    path = out / "REPORT.md"
    files.write_text(path, text)
    title = strings(lang)["report"]["title"]
    files.write_text(out / "REPORT.html", to_html(text, out, f"{title}: {run_id}", lang))
    write_index(lang)  # every report also refreshes reports/index.md, the runs side by side
    return path
