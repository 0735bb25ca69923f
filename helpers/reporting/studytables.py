"""The architecture study as a reader sees it: the write-up's table, the measured table, the claims checked.

helpers.research.study measures; this module says what was measured, in the report's language, with every
word taken from strings.yaml (`study`).
"""

from __future__ import annotations

import pandas as pd

from helpers.models.zoo import arch_spec
from helpers.reporting.texts import strings, translate
from helpers.research import disturbance
from helpers.research.study import scatter_rows

# The write-up's claim: "EfficientNet needs at least 8 GB of video memory".
CLAIMED_MEMORY_GB = 8
# How many decimals a reader needs: enough to tell the candidates apart, no more.
DECIMALS = {"params_m": 2, "gflops": 2, "latency_ms": 1, "throughput_ips": 0, "train_ips": 1, "peak_mem_mb": 0,
            "imagenet_top1": 1, "bakeoff_seconds": 0}
# Columns of words (left-aligned); every other column holds figures.
WORD_COLUMNS = ("arch", "family", "source", "bakeoff_note")


def qualitative_table(lang: str = "ru") -> pd.DataFrame:
    """The write-up's table of families: advantages, drawbacks, source."""
    s = strings(lang)["study"]
    rows = [[f["family"], f["advantages"], f["drawbacks"], f["source"]] for f in s["qualitative"]]
    return pd.DataFrame(rows, columns=s["qualitative_head"])


def _number(value, decimals: int) -> str:
    """A figure rounded for reading, with a thin space between thousands; a dash when missing."""
    if value is None or pd.isna(value):
        return "—"
    if decimals == 0 and abs(float(value)) < 10:
        decimals = 1  # 0.8 and 1.2 images/s must not both read "1"
    return f"{float(value):,.{decimals}f}".replace(",", "\u202f")


def _batch(table: pd.DataFrame) -> str:
    """The batch of the study's batch figures, as a title says it ('8'; '?' for a table that does not record it)."""
    batches = sorted({int(b) for b in table.get("batch_size", pd.Series(dtype=float)).dropna()})
    return "/".join(map(str, batches)) or "?"


def _runs(row: pd.Series) -> str:
    """How many timed runs each figure of a row is the median of: latency / batch / training step."""
    cols = ("latency_runs", "throughput_runs", "train_runs")
    if any(pd.isna(row.get(c)) for c in cols):
        return "—"
    return " / ".join(str(int(row[c])) for c in cols)


def _spreads(row: pd.Series) -> str:
    """Each figure's slowest timed run over its fastest (— for one run), ⚠ first when the row was disturbed."""
    cells = [("—" if pd.isna(row.get(c)) else f"{float(row[c]):.2f}×") for c in disturbance.SPREADS]
    return ("⚠ " if _disturbed(row) else "") + " / ".join(cells)


def _disturbed(row: pd.Series) -> bool:
    return str(row.get("disturbed")).lower() == "true"


def _cell(col: str, value, lang: str, s: dict, phrases: dict) -> str:
    """One cell of the readable table."""
    if col in DECIMALS:
        return _number(value, DECIMALS[col])
    if col == "head_params":
        return _number(value, 0)
    if col == "image_size":
        return "—" if pd.isna(value) else str(int(value))
    if col == "bakeoff_val_accuracy":
        return _number(100 * value, 1) if pd.notna(value) else "—"
    if col == "source":
        return translate(value, phrases["sources"], lang) if isinstance(value, str) else "—"
    if col == "bakeoff_note":
        return s["bakeoff_note"].format(note=value) if isinstance(value, str) and value else ""
    return value


def readable(table: pd.DataFrame, lang: str = "ru") -> pd.DataFrame:
    """research.csv as a reader sees it: titled columns with units and sizes, figures rounded, in `lang`."""
    texts = strings(lang)
    s, batch = texts["study"], _batch(table)
    table = table.assign(runs=table.apply(_runs, axis=1)) if {"latency_runs", "train_runs"} <= set(table) else table
    if set(disturbance.SPREADS) <= set(table) and table[list(disturbance.SPREADS)].notna().any().any():
        marked = table.apply(_disturbed, axis=1).astype(bool)
        table = table.assign(spread=table.apply(_spreads, axis=1), arch=table["arch"].where(~marked, table["arch"] + " ⚠"))
    out = pd.DataFrame(index=table.index)
    for col, title in s["columns"].items():  # device, threads and dates are said once above the table
        if col in table.columns:
            out[title.format(batch=batch)] = table[col].map(lambda v, c=col: _cell(c, v, lang, s, texts["phrases"]))
    return out.reset_index(drop=True)


def alignments(frame: pd.DataFrame) -> list[str]:
    """Markdown column alignment for a `readable` table: figures right, words left."""
    words = {strings(lang)["study"]["columns"][c] for c in WORD_COLUMNS for lang in ("ru", "en")}
    words |= {h for lang in ("ru", "en") for h in strings(lang)["study"]["claims_head"]}
    return ["left" if c in words else "right" for c in frame.columns]


def as_markdown(frame: pd.DataFrame) -> str:
    """A `readable` or `claim_checks` table as markdown: whole cells (no '…'), figures right-aligned."""
    return frame.to_markdown(index=False, disable_numparse=True, colalign=alignments(frame))


def _gb(mb: float) -> str:
    return f"{mb / 1024:.1f}"


def _memory_rows_claim(memory: pd.DataFrame, s: dict, phrases: dict, lang: str) -> str:
    """What 01's separate memory rows say about the claim: each batch's peak, and the verdict."""
    first = memory.iloc[0]
    gpu = str(first["device"]).startswith("cuda")
    size, arch = int(first["image_size"]), first["arch"]
    parts = [s["memory_part"].format(batch=int(r["batch_size"]), gb=_gb(r["peak_mem_mb"]))
             + (s["memory_extrapolated"].format(batches=str(r["fit_batches"]).replace(",", ", "))
                if r.get("how") == "extrapolated" else "")
             for _, r in memory.iterrows()]
    over = [str(int(r["batch_size"])) for _, r in memory.iterrows() if r["peak_mem_mb"] > CLAIMED_MEMORY_GB * 1024]
    verdict = (s["memory_over"].format(limit=CLAIMED_MEMORY_GB, batches=", ".join(over)) if over
               else s["memory_under"].format(limit=CLAIMED_MEMORY_GB))
    text = s["memory"].format(arch=arch, size=size, native=s["memory_native"] if size == arch_spec(arch).native_size
                              else "", parts=", ".join(parts), kind=s["memory_gpu" if gpu else "memory_cpu"],
                              device=first["device"], how=translate(str(first["mem_measure"]), phrases["measures"], lang),
                              verdict=verdict)
    return text + ("" if gpu else s["memory_cpu_hint"])


def _memory_claim(table: pd.DataFrame, memory: pd.DataFrame | None, lang: str) -> str | None:
    """What was measured against 'EfficientNet needs at least 8 GB of video memory', sizes and batches named."""
    texts = strings(lang)
    s = texts["study"]
    if memory is not None and len(memory):
        return _memory_rows_claim(memory, s, texts["phrases"], lang)
    if "peak_mem_mb" not in table:
        return None
    effnets = table[table["arch"].str.startswith("efficientnet")].dropna(subset=["peak_mem_mb"])
    if not len(effnets):
        return None
    worst = effnets.loc[effnets["peak_mem_mb"].idxmax()]
    gpu = str(worst.get("device", "cpu")).startswith("cuda")
    batch = worst.get("batch_size")
    return s["memory_row"].format(arch=worst["arch"], gb=_gb(worst["peak_mem_mb"]),
                                  kind=s["memory_row_gpu" if gpu else "memory_row_cpu"],
                                  size=int(worst.get("image_size", 0)),
                                  batch="" if pd.isna(batch) else s["memory_row_batch"].format(batch=int(batch)))


def claim_checks(table: pd.DataFrame, lang: str = "ru", memory: pd.DataFrame | None = None) -> pd.DataFrame:
    """Quoted claims of the write-up beside what the measurement says, sizes named, in `lang`."""
    s = strings(lang)["study"]
    rows = []
    lat = dict(zip(table["arch"], table["latency_ms"]))
    size = dict(zip(table["arch"], table["image_size"])) if "image_size" in table else {}
    for mobile in ("mobilenet_v3_large", "mobilenet_v3_small"):
        if "resnet50" in lat and mobile in lat:
            text = s["speed"].format(mobile=mobile, ratio=f"{lat['resnet50'] / lat[mobile]:.1f}",
                                     slow=f"{lat['resnet50']:.1f}", fast=f"{lat[mobile]:.1f}")
            if size and pd.notna(size.get("resnet50")) and pd.notna(size.get(mobile)):
                a, b = int(size["resnet50"]), int(size[mobile])
                text += s["speed_size"].format(px=f"{a} px" if a == b else f"{a} / {b} px")
            rows.append([s["claim_speed"], text])
    measured = _memory_claim(table, memory, lang)
    if measured:
        rows.append([s["claim_memory"], measured])
    return pd.DataFrame(rows, columns=s["claims_head"])


def _when(values: pd.Series) -> str:
    """The span of measurement times, e.g. '2026-12-01 18:36–18:40 UTC'."""
    stamps = pd.to_datetime(values.dropna(), utc=True, errors="coerce").dropna()
    if not len(stamps):
        return ""
    lo, hi = stamps.min().strftime("%Y-%m-%d %H:%M"), stamps.max().strftime("%Y-%m-%d %H:%M")
    if lo == hi:
        return f"{lo} UTC"
    return f"{lo}–{hi[11:] if lo[:10] == hi[:10] else hi} UTC"


def _measured_when(table: pd.DataFrame, memory: pd.DataFrame | None, s: dict) -> str:
    """When the figures were measured, and how many came from this machine's cache."""
    frames = [table] + ([memory] if memory is not None and len(memory) else [])
    stamps = pd.concat([f["measured_at"] for f in frames if "measured_at" in f])
    reused = pd.concat([f["reused"] for f in frames if "reused" in f]).astype("boolean").fillna(False)
    when = _when(stamps) if len(stamps) else ""
    if not when:
        return ""
    n = int(reused.sum())
    return s["note_when"].format(when=when) + (s["note_reused"].format(n=n, total=len(reused)) if n else "")


def study_note(table: pd.DataFrame, lang: str = "ru", memory: pd.DataFrame | None = None,
               repeats: int | None = None) -> str:
    """How the study table was measured: device, threads, sizes, repetitions, when, and what was reused."""
    s = strings(lang)["study"]
    device = table["device"].iloc[0] if "device" in table and len(table) else "?"
    threads = table["threads"].dropna() if "threads" in table else pd.Series(dtype=float)
    on = s["note_threads"].format(device=device, threads=int(threads.iloc[0])) if len(threads) else f"{device}"
    sizes = sorted({int(x) for x in table["image_size"].dropna()}) if "image_size" in table else []
    native = len(scatter_rows(table)) == len(table)
    text = [s["note_where"].format(on=on),
            s["note_native"] if native else s["note_sizes"].format(sizes=", ".join(map(str, sizes))),
            s["note_memory"], s["note_repeats"].format(repeats=repeats or "N")]
    if "disturbed" in table:
        text.append(disturbance_note(table, s))
    when = _measured_when(table, memory, s)
    return " ".join(text + ([when] if when else []))


def _why(code: str, s: dict) -> str:
    """One sign of disturbance ('spread:latency=1.82', 'load:0.61', 'order:train<efficientnet-b2') in words."""
    kind, _, detail = code.partition(":")
    if kind == "spread":
        figure, _, value = detail.partition("=")
        return s["disturbed_spread"].format(figure=s["disturbed_figures"][figure], value=value)
    if kind == "load":
        return s["disturbed_load"].format(cores=detail)
    figure, _, other = detail.partition("<")
    return s["disturbed_order"].format(figure=s["disturbed_order_figures"][figure], other=other)


def disturbance_note(table: pd.DataFrame, s: dict) -> str:
    """The bounds of the disturbance check, the rows measured again, and those still marked disturbed."""
    text = s["note_disturbance"].format(spread=disturbance.SPREAD_BOUND, load=disturbance.LOAD_BOUND,
                                        flops=f"{disturbance.FLOPS_RATIO:g}")
    marked = table[table.apply(_disturbed, axis=1)]
    if len(marked):
        rows = [s["disturbed_row"].format(arch=r["arch"], why="; ".join(_why(c, s) for c in
                                                                       str(r["disturbed_by"]).split("; ") if c))
                for _, r in marked.iterrows()]
        return text + s["note_disturbed"].format(rows=", ".join(rows))
    again = table[table["remeasured"].astype(str).str.lower() == "true"]["arch"].tolist() \
        if "remeasured" in table else []
    return text + s["note_steady"].format(again=s["note_again"].format(archs=", ".join(again)) if again else "")
