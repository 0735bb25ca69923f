"""The words of the report, the index, the study tables and the figures (strings.yaml), and the templates
that lay the report and the index out (templates/*.md.j2).

Every sentence a reader sees lives in strings.yaml beside this module, Russian and English side by side, so a
student changes a sentence there without reading Python. A pair `{ru: ..., en: ...}` is one text; `{name}`
marks a number or a name the report fills in. Earlier stages write some English of their own (how 02 read
the dataset, where a published top-1 comes from); the `phrases` lists translate it clause by clause.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
import yaml

LANGS = ("ru", "en")
STRINGS_FILE = Path(__file__).with_name("strings.yaml")
TEMPLATES = Path(__file__).with_name("templates")


def check_lang(lang: str) -> str:
    """`lang` when the report speaks it; otherwise one sentence naming it and the choices."""
    if lang not in LANGS:
        raise ValueError(f"lang={lang!r}: use {' or '.join(LANGS)}.")
    return lang


def _pick(node: Any, lang: str, where: str) -> Any:
    """`node` with every {ru, en} pair replaced by its `lang` side; a pair missing a side is named."""
    if isinstance(node, dict):
        sides = set(node) & set(LANGS)
        if sides and "match" not in node:
            if sides != set(LANGS) or len(node) != len(LANGS):
                raise ValueError(f"{STRINGS_FILE.name}: {where} must hold exactly {' and '.join(LANGS)}, "
                                 f"it holds {sorted(node)}.")
            return node[lang]
        return {k: _pick(v, lang, f"{where}.{k}" if where else str(k)) for k, v in node.items()}
    if isinstance(node, list):
        return [_pick(v, lang, f"{where}[{i}]") for i, v in enumerate(node)]
    return node


@lru_cache(maxsize=8)
def _load(path: str, mtime_ns: int, lang: str) -> dict:
    """The strings file in one language (cached until the file changes, so an edit shows on the next run)."""
    with open(path, encoding="utf-8") as fh:
        raw = yaml.safe_load(fh)
    return _pick(raw, lang, "")


def strings(lang: str = "ru") -> dict:
    """Every text of strings.yaml in `lang`: {'report': {...}, 'index': {...}, 'study': ..., 'figures': ...}."""
    path = Path(STRINGS_FILE)
    return _load(str(path), path.stat().st_mtime_ns, check_lang(lang))


def _translate_clause(clause: str, entries: list[dict], lang: str) -> str | None:
    """One clause in `lang` by the first entry whose `match` covers it whole; None when none does."""
    for entry in entries:
        found = re.fullmatch(entry["match"], clause)
        if found:
            if lang not in entry:
                return clause
            groups = {k: (translate(v, entries, lang) if k.startswith("rest") else v)
                      for k, v in found.groupdict(default="").items()}
            return entry[lang].format(**groups)
    return None


def translate(text: str, entries: list[dict], lang: str) -> str:
    """English written by an earlier stage, in `lang`: whole, or clause by clause ('; '); unknown clauses stay."""
    if not isinstance(text, str) or not text:
        return text
    whole = _translate_clause(text, entries, lang)
    if whole is not None:
        return whole
    clauses = text.split("; ")
    if len(clauses) == 1:
        return text
    return "; ".join(_translate_clause(c, entries, lang) or c for c in clauses)


def untranslated(text: str, entries: list[dict], lang: str) -> list[str]:
    """The clauses of `text` no entry translates (the ones a reader of `lang` would see in English)."""
    if _translate_clause(text, entries, lang) is not None:
        return []
    return [c for c in text.split("; ") if _translate_clause(c, entries, lang) is None]


@lru_cache(maxsize=1)
def _templates(folder: str) -> jinja2.Environment:
    """Markdown templates: no HTML escaping, block tags leave no lines, an unknown name is an error."""
    return jinja2.Environment(loader=jinja2.FileSystemLoader(folder), autoescape=False, trim_blocks=True,
                              lstrip_blocks=True, keep_trailing_newline=True, undefined=jinja2.StrictUndefined)


def fill(template: str, **context: Any) -> str:
    """Markdown from templates/`template` and `context`, blank lines squeezed to one, ending in one newline."""
    text = _templates(str(TEMPLATES)).get_template(template).render(**context)
    text = re.sub(r"[ \t]+\n", "\n", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip("\n") + "\n"
