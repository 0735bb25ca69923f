"""The runner: validate parameters against the notebooks' `parameters` cells, then run 01→04 with papermill.

Usage: python -m helpers.pipeline [-p NAME VALUE]... [-f params.yaml] [--run-id ID] [--from 03_train] [-v]

The console shows a line per notebook (and per epoch of 03) and a summary; runs/<run_id>/pipeline.log holds
every notebook's full output, which --verbose also streams to the console.
"""

from __future__ import annotations

import argparse
import sys
import time
from contextlib import ExitStack, nullcontext
from pathlib import Path
from typing import Any

import yaml

from helpers.params.schema import BY_NAME, ParameterError, coerce, help_text
from helpers.params.schema import defaults as schema_defaults
from helpers.reporting import index
from helpers.runner import console, notebooks, preflight
from helpers.utils import lock, paths, runinfo

def declared_parameters(names: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """Each notebook's parameters and their default literals, read from its `parameters` cell."""
    import nbformat
    import papermill
    out = {}
    for name in names or paths.NOTEBOOK_NAMES:
        path = paths.NOTEBOOKS_DIR / f"{name}.ipynb"
        cells = nbformat.read(path, as_version=4).cells
        if not any("parameters" in c.get("metadata", {}).get("tags", []) for c in cells):
            raise ParameterError(f"notebooks/{name}.ipynb has no cell tagged 'parameters'; tag its parameters "
                                 "cell again (JupyterLab: Property Inspector → Cell Tags → parameters).")
        info = papermill.inspect_notebook(str(path))
        out[name] = {k: v["default"] for k, v in info.items()}
    return out


def _literal(text: str) -> Any:
    """A -p value as papermill would see it: YAML scalars (16 → int, true → bool), else the string."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return value if isinstance(value, (int, float, bool, str)) or value is None else text


def resolve(cli: dict[str, Any], names: list[str]) -> dict[str, dict[str, Any]]:
    """Check every parameter of every notebook in `names` (defaults included); return each one's given values."""
    declared = declared_parameters(names)
    known = {k for nb in names for k in declared[nb]}
    unknown = sorted(set(cli) - known)
    if unknown:
        raise ParameterError(f"unknown parameter(s) {unknown}: no notebook that this run executes declares them; "
                             f"valid names are {', '.join(sorted(known))}.")
    typed = {k: coerce(k, v) for k, v in cli.items()}
    effective = {name: schema_defaults().get(name) for name in known}
    effective.update(typed)
    preflight.check(effective, resolve=False)  # the kernels resolve the device; the runner never loads torch
    return {nb: {k: v for k, v in typed.items() if k in declared[nb]} for nb in names}


def select(start: str | None, names: list[str] | None = None) -> list[str]:
    """The notebooks a run executes: 01→04, from `start` on (05 only when asked by name)."""
    names = list(names or paths.NOTEBOOK_NAMES)
    if not start:
        return names
    every = paths.NOTEBOOK_NAMES + [n for n in paths.EXTRA_NOTEBOOKS if n not in paths.NOTEBOOK_NAMES]
    matches = [n for n in every if n == start or n.startswith(start)]
    if not matches:
        raise ParameterError(f"--from {start!r}: not a notebook; use one of {', '.join(every)}.")
    if matches[0] not in names:
        return [matches[0]]
    return names[names.index(matches[0]):]


def run(cli: dict[str, Any], start: str | None = None, verbose: bool = False) -> Path:
    """Run the notebooks from `start` on, into runs/<run_id>/notebooks; return the report path.

    The console gets a start and an end line per notebook and a summary; every notebook's full output goes to
    runs/<run_id>/pipeline.log (and to the console as well when `verbose`).
    """
    names = select(start)
    per_notebook = resolve(cli, names)
    run_id = str(cli.get("run_id", "default"))
    # One writer per run: the runner holds it throughout, and its notebooks' kernels are let in as its own.
    with lock.hold(paths.run_dir(run_id), f"python -m helpers.pipeline {' '.join(sys.argv[1:])}".strip()) as held, \
            lock.shared(held):
        return _run_locked(cli, names, per_notebook, run_id, verbose)


def _run_locked(cli: dict[str, Any], names: list[str], per_notebook: dict[str, dict[str, Any]], run_id: str,
                verbose: bool) -> Path:
    """The run's notebooks in order, its log, the index and the summary (the run is held)."""
    out_dir = paths.run_dir(run_id) / "notebooks"
    out_dir.mkdir(parents=True, exist_ok=True)
    runinfo.record(run_id, "pipeline", {k: v for k, v in cli.items()}, argv=sys.argv[1:], start=names[0])
    log = paths.run_dir(run_id) / notebooks.LOG_NAME
    notebooks.write_log(log, f"\n##### python -m helpers.pipeline {' '.join(sys.argv[1:])}  "
                             f"({time.strftime('%Y-%m-%d %H:%M:%S')})")
    t0, ok = time.perf_counter(), False
    try:
        with notebooks.logging_to(log, verbose), ExitStack() as kernels:
            ready: dict[str, notebooks.Kernel] = {}

            def prepare(name: str) -> None:  # a kernel for `name`, importing while the notebook before runs
                ready[name] = notebooks.Kernel(paths.NOTEBOOKS_DIR / f"{name}.ipynb", paths.NOTEBOOKS_DIR, log)
                kernels.callback(ready[name].close)  # stopped on any way out, a failed notebook included

            prepare(names[0])
            for step, name in enumerate(names, 1):
                if step < len(names):
                    prepare(names[step])
                _run_one(name, (step, len(names)), per_notebook[name], _effective(name, cli), log, ready.pop(name))
        ok = True
    finally:  # a failed or partial run still shows up beside the others, with what it finished
        index.write_index(str(cli.get("lang", "ru")))
        block = console.summary(run_id, names, time.perf_counter() - t0, log, ok)
        notebooks.write_log(log, "\n".join(block))
        print("\n".join(block), flush=True)
    return paths.report_dir(run_id) / "REPORT.md"


def _effective(name: str, cli: dict[str, Any]) -> dict[str, Any]:
    """The values a notebook runs with: its parameters cell's defaults, then what the run gave."""
    return {**{k: _literal(v) for k, v in declared_parameters([name])[name].items()}, **cli}


def _run_one(name: str, step: tuple[int, int], given: dict[str, Any], values: dict[str, Any], log: Path,
             kernel: notebooks.Kernel | None = None) -> None:
    """One notebook: its start line, 03's epoch lines while it trains, its end line or its error."""
    run_dir = paths.run_dir(str(values.get("run_id", "default")))
    executed = run_dir / "notebooks" / f"{name}.ipynb"
    _keep_previous(executed)
    print(console.start_line(*step, name, given), flush=True)
    t0 = time.perf_counter()
    total = _int(values.get("head_epochs")) + _int(values.get("epochs")) if name == "03_train" else None
    watcher = console.EpochLines(run_dir, total or None) if name == "03_train" else nullcontext()
    try:
        with watcher:
            notebooks.execute(paths.NOTEBOOKS_DIR / f"{name}.ipynb", executed, given, paths.NOTEBOOKS_DIR, log,
                              kernel)
    except Exception as exc:
        if not notebooks.notebook_failed(exc):
            raise
        notebooks.write_log(log, console.traceback_text(exc))
        lines = console.failure_lines(*step, name, time.perf_counter() - t0, exc, log, executed)
        print("\n".join(lines), file=sys.stderr, flush=True)
        raise
    print(console.end_line(*step, name, run_dir, time.perf_counter() - t0), flush=True)


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _keep_previous(executed: Path) -> None:
    """Move an earlier executed notebook into notebooks/history/ so a rerun never overwrites it."""
    if executed.exists():
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(executed.stat().st_mtime))
        history = executed.parent / "history"
        history.mkdir(exist_ok=True)
        executed.rename(history / f"{executed.stem}.{stamp}.ipynb")


_kernel_name = notebooks.kernel_name  # the kernel the runner uses, for tests that run a notebook alone


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(prog="python -m helpers.pipeline", description=__doc__.splitlines()[0],
                                 epilog=help_text(), formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-p", "--parameter", nargs=2, action="append", metavar=("NAME", "VALUE"), default=[])
    ap.add_argument("-f", "--parameters-file", type=Path, help="YAML file of NAME: VALUE")
    ap.add_argument("--run-id", help="folder name under runs/ and reports/")
    ap.add_argument("--from", dest="start", help="start at this notebook (e.g. 03_train; 05_predict runs alone)")
    ap.add_argument("-v", "--verbose", action="store_true",
                    help="also stream every notebook's full output (cells, prints, warnings) to the console")
    args = ap.parse_args(argv)
    cli: dict[str, Any] = {}
    try:
        if args.parameters_file:
            if not args.parameters_file.is_file():
                raise ParameterError(f"-f {args.parameters_file}: no such file.")
            loaded = yaml.safe_load(args.parameters_file.read_text()) or {}
            if not isinstance(loaded, dict):
                raise ParameterError(f"-f {args.parameters_file}: must hold NAME: VALUE pairs.")
            unknown = sorted(set(loaded) - set(BY_NAME))
            if unknown:
                raise ParameterError(f"-f {args.parameters_file}: unknown key(s) {unknown}; valid names are listed "
                                     "by --help.")
            cli.update(loaded)
        cli.update({k: _literal(v) for k, v in args.parameter})
        if args.run_id:
            cli["run_id"] = args.run_id
        run(cli, args.start, verbose=args.verbose)
    except ValueError as exc:  # our errors are ValueErrors with a user-facing sentence
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # a failing cell or a dead kernel: run() printed it
        if notebooks.notebook_failed(exc):
            return 1
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
