"""Whether 01's timings were disturbed by other work on the machine: the signs, their bounds, one re-measurement.

A timing taken while a browser, an IDE or another job competes for the cores is slower than the network is;
nothing in the figure itself says so. Three signs, each with a stated bound:

- spread: a figure's slowest timed run is more than SPREAD_BOUND times its fastest;
- load: other processes kept more than LOAD_BOUND cores busy on average, beyond the cores the measurement left
  idle, while the row was measured (Linux /proc/stat less the measuring process's own CPU time);
- order: the row is slower (batch-1 latency, time per image at the batch, training step per image) than a row
  of its own family with at least FLOPS_RATIO times its FLOPs — a wide margin: within EfficientNet or
  MobileNetV3 time follows FLOPs far closer than that; across families it does not, so they are not compared.

A row with a sign is measured once more, afresh; a row that still shows one is marked disturbed.
"""

from __future__ import annotations

from typing import Callable

SPREAD_BOUND = 1.5
LOAD_BOUND = 0.25
FLOPS_RATIO = 2.0
SPREADS = ("latency_spread", "throughput_spread", "train_spread")
COLUMNS = ["remeasured", "disturbed", "disturbed_by"]


def _per_image(row: dict) -> dict[str, float]:
    """The row's timings as seconds, smaller is faster: latency, batch time per image, training time per image."""
    out = {}
    if row.get("latency_ms"):
        out["latency"] = float(row["latency_ms"])
    if row.get("throughput_ips"):
        out["throughput"] = 1 / float(row["throughput_ips"])
    if row.get("train_ips"):
        out["train"] = 1 / float(row["train_ips"])
    return out


def signs(row: dict, rows: list[dict]) -> list[str]:
    """The signs of disturbance a row shows, each a short code: 'spread:latency=1.82', 'load:0.61',
    'order:throughput<efficientnet-b2'. Empty when its timings look steady."""
    found = []
    for col in SPREADS:
        spread = row.get(col)
        if spread is not None and spread == spread and float(spread) > SPREAD_BOUND:
            found.append(f"spread:{col.removesuffix('_spread')}={float(spread):.2f}")
    load = row.get("others_cores")
    if load is not None and load == load and float(load) > LOAD_BOUND:
        found.append(f"load:{float(load):.2f}")
    mine = _per_image(row)
    for other in rows:
        if other is row or other.get("family") != row.get("family") or other.get("device") != row.get("device"):
            continue
        if not row.get("gflops") or float(other.get("gflops") or 0) < FLOPS_RATIO * float(row["gflops"]):
            continue
        theirs = _per_image(other)
        for figure, seconds in mine.items():
            if figure in theirs and seconds > theirs[figure]:
                found.append(f"order:{figure}<{other['arch']}")
    return found


def settle(rows: list[dict], again: Callable[[dict], dict],
           say: Callable[[str], None] | None = None) -> list[dict]:
    """Measure each row showing a sign once more (`again` measures a row afresh), then mark what still shows one.

    Every row gets `remeasured`, `disturbed` and `disturbed_by` (the signs, ';'-separated, empty when steady).
    """
    rows = [dict(r) for r in rows]
    suspects = [i for i, r in enumerate(rows) if signs(r, rows)]
    for i in suspects:
        why = "; ".join(signs(rows[i], rows))
        if say:
            say(f"{rows[i]['arch']}: timings look disturbed ({why}); measuring it again")
        rows[i] = {**again(rows[i]), "remeasured": True}
    for row in rows:
        still = signs(row, rows)
        row.update(remeasured=bool(row.get("remeasured")), disturbed=bool(still), disturbed_by="; ".join(still))
    return rows
