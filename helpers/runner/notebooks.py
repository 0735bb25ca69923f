"""One notebook through papermill, its whole output (cells, prints, the kernel's own messages) into the run's log.

A run's next notebook gets its kernel while the one before still runs (`Kernel`): started ahead, it imports what
the notebook imports (torch, pandas, matplotlib, scikit-learn: 3.5-4.3 s a notebook here, mostly on one core),
so its cells start on modules already loaded; the notebook itself runs as it would in a fresh kernel.

papermill streams every cell's output through its `papermill` logger when `log_output` is on; a handler sends
that stream to the log file, and to the console only when asked (`verbose`). The kernel process's own stdout
and stderr (jupyter's "Kernel is running over TCP without encryption" warning, C-level prints) would go to
the runner's terminal; a kernel manager that opens the log for them keeps them in the file.
"""

from __future__ import annotations

import ast
import json
import logging
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from jupyter_client.manager import AsyncKernelManager
from traitlets import Unicode
from traitlets.config import Config

KERNEL_NAME = "image-study-kit"
LOG_NAME = "pipeline.log"
# Loggers whose records belong in the log: papermill (every cell's output, cell markers), traitlets (the
# kernel manager's own warnings) and warnings.warn in this process.
LOGGERS = ("papermill", "traitlets", "py.warnings")
# jsonschema (under nbformat, under papermill) imports the optional rfc3987_syntax where it is installed (it comes
# with jupyter-events), and that compiles a Lark grammar on import: 1.1 s of every runner start here, for the
# "iri" string formats, which no notebook schema uses. A None entry makes that optional import fail as absent.
sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]


class LoggedKernelManager(AsyncKernelManager):
    """A kernel manager whose kernel process writes its stdout and stderr into `log_file` (when set)."""

    log_file = Unicode("", config=True, help="file the kernel process's own stdout and stderr are appended to")

    async def _async_launch_kernel(self, kernel_cmd: list[str], **kw: Any) -> None:
        if not self.log_file:
            return await super()._async_launch_kernel(kernel_cmd, **kw)
        with open(self.log_file, "ab") as sink:  # the kernel gets its own copy of the descriptor
            kw.setdefault("stdout", sink)
            kw.setdefault("stderr", sink)
            return await super()._async_launch_kernel(kernel_cmd, **kw)


def kernel_name() -> str:
    """The project's kernel when registered, else the kernel of this very Python."""
    from jupyter_client.kernelspec import KernelSpecManager
    return KERNEL_NAME if KERNEL_NAME in KernelSpecManager().find_kernel_specs() else "python3"


@contextmanager
def logging_to(log: Path, verbose: bool = False) -> Iterator[None]:
    """While inside: the notebooks' stream goes to `log` (appended), and also to stdout when `verbose`."""
    handlers: list[logging.Handler] = [logging.FileHandler(log, encoding="utf-8")]
    if verbose:
        handlers.append(logging.StreamHandler(sys.stdout))
    for handler in handlers:
        handler.setFormatter(logging.Formatter("%(message)s"))
    saved = {}
    logging.captureWarnings(True)
    for name in LOGGERS:
        logger = logging.getLogger(name)
        saved[name] = (logger.handlers[:], logger.propagate, logger.level)
        logger.handlers = list(handlers)
        logger.propagate = False
        logger.setLevel(logging.INFO if name == "papermill" else logging.WARNING)
    try:
        yield
    finally:
        for name, (old, propagate, level) in saved.items():
            logger = logging.getLogger(name)
            logger.handlers, logger.propagate = old, propagate
            logger.setLevel(level)
        logging.captureWarnings(False)
        for handler in handlers:
            handler.close() if isinstance(handler, logging.FileHandler) else handler.flush()


def notebook_failed(exc: BaseException) -> bool:
    """Whether `exc` is a notebook's own failure (a cell's error, a kernel that died or timed out), not ours."""
    return type(exc).__module__.split(".")[0] in ("papermill", "nbclient")


def write_log(log: Path, text: str) -> None:
    """Append a line of the runner's own to the log (a notebook's start, its parameters, the run's end)."""
    with open(log, "a", encoding="utf-8") as f:
        f.write(text.rstrip("\n") + "\n")


def imports_of(source: Path) -> list[str]:
    """The import statements at the top level of the notebook's code cells, in order (cells that do not parse
    as Python, such as magics, are passed over)."""
    found: list[str] = []
    for cell in json.loads(Path(source).read_text(encoding="utf-8"))["cells"]:
        if cell["cell_type"] != "code":
            continue
        try:
            tree = ast.parse("".join(cell["source"]))
        except SyntaxError:
            continue
        found += [ast.unparse(node) for node in tree.body
                  if isinstance(node, (ast.Import, ast.ImportFrom)) and not getattr(node, "level", 0)]
    return list(dict.fromkeys(found))


def warm_code(statements: list[str]) -> str:
    """Code that runs `statements` inside a function, each on its own, and leaves no name behind."""
    body = "".join(f"    try:\n        {s}\n    except Exception:\n        pass\n" for s in statements) or "    pass\n"
    return "def _warm_imports():\n" + body + "\n_warm_imports()\ndel _warm_imports\n"


# A finished notebook's kernel runs its exit handlers (IPython's history, logging, trackers' flushes) and ends
# without the interpreter's teardown of every module and object, which took 1.2-1.8 s of CPU with torch, pandas
# and matplotlib loaded, once per notebook, between one notebook and the next. Files the kit writes are closed
# and synced by then (helpers.utils.files).
QUICK_EXIT = """def _quick_exit():
    import atexit, os, sys
    try:
        atexit._run_exitfuncs()
    finally:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        os._exit(0)

_quick_exit()
"""
QUICK_EXIT_WAIT = 3.0  # seconds a kernel gets to end so before the graceful shutdown (a busy one: interrupted)


class Kernel:
    """The kernel of one notebook, started ahead of its turn and importing what the notebook imports.

    The imports run as a silent request (no output, no execution count), so the notebook's own cells still
    count from 1 and print what they print; the notebook's first request waits in the kernel's queue until the
    imports are done. A notebook whose imports fail fails in its own cell, as in a fresh kernel.
    """

    def __init__(self, source: Path, cwd: Path, log: Path) -> None:
        from jupyter_client import BlockingKernelClient
        from jupyter_core.utils import run_sync
        self.source = Path(source)
        self.manager = LoggedKernelManager(kernel_name=kernel_name(), log_file=str(log))
        run_sync(self.manager.start_kernel)(cwd=str(cwd))
        self._client: Any = BlockingKernelClient()
        self._client.load_connection_info(self.manager.get_connection_info())
        self._client.start_channels()
        self._client.execute(warm_code(imports_of(source)), silent=True, store_history=False)

    def close(self) -> None:
        """Stop the kernel unless it has already stopped: its exit handlers, then the end (QUICK_EXIT); a kernel
        still busy after QUICK_EXIT_WAIT seconds is shut down gracefully, as papermill does with its own."""
        from jupyter_core.utils import run_sync
        if self._client is None:  # closed already
            return
        alive = run_sync(self.manager.is_alive)
        if alive():
            self._client.execute(QUICK_EXIT, silent=True, store_history=False)
            deadline = time.monotonic() + QUICK_EXIT_WAIT
            while alive() and time.monotonic() < deadline:
                time.sleep(0.02)
        self._client.stop_channels()
        self._client = None
        if alive():
            run_sync(self.manager.shutdown_kernel)(now=False)
        run_sync(self.manager.cleanup_resources)()


def execute(source: Path, target: Path, parameters: dict[str, Any], cwd: Path, log: Path,
            kernel: Kernel | None = None) -> None:
    """Run the notebook `source` into `target` with `parameters`; its output is appended to `log`.

    Call inside `logging_to(log)`. A failing cell raises papermill's PapermillExecutionError after the
    executed notebook (with the traceback) has been saved. With `kernel` (started for this notebook) it runs
    there and the kernel is stopped afterwards; without, papermill starts a fresh one.
    """
    import papermill
    write_log(log, f"\n===== {source.stem} started {time.strftime('%Y-%m-%d %H:%M:%S')} "
                   f"parameters {parameters or 'defaults'}")
    config = Config({"LoggedKernelManager": {"log_file": str(log)}})
    given = {"km": kernel.manager} if kernel is not None else {}
    try:
        papermill.execute_notebook(str(source), str(target), parameters=parameters, cwd=str(cwd),
                                   kernel_name=kernel_name(), progress_bar=False, log_output=True,
                                   kernel_manager_class=LoggedKernelManager, config=config, **given)
    finally:
        if kernel is not None:
            kernel.close()
