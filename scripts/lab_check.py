"""The notebooks as a person runs them: JupyterLab started as `make lab` starts it, each notebook opened in
headless Chromium, Run All through the menu, then every cell checked — no error, every figure shown once,
no machine path printed, progress drawn as widgets — and a screenshot of each notebook's end saved under
the run (runs/<run_id>/screenshots/).

The notebooks run on their committed defaults (the real default job) in a fresh STUDY_HOME, from copies,
so the committed notebooks never get outputs. Exit status 0 when every notebook passes.

Usage: python scripts/lab_check.py [--home DIR] [--only 01_research,02_data] [--timeout 1800]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent))
import lab  # noqa: E402  (scripts/lab.py: the launcher `make lab` runs)

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
# Debian's chromium in a container: no sandbox (root), no GPU, nothing fetched in the background.
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage"]


def notebooks() -> list[str]:
    """01…04, and 05 when the project has it, in order."""
    return sorted(p.stem for p in (ROOT / "notebooks").glob("0[1-5]_*.ipynb"))


def unavailable() -> str | None:
    """Why the browser check cannot run here (one sentence), or None when it can."""
    if not CHROMIUM.exists():
        return (f"{CHROMIUM} is not installed (Debian: apt-get install -y chromium; `make test` installs it "
                "when it runs as root with apt)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed in this environment (pip install -r requirements.txt)"
    return None


def start_lab(folder: Path, env: dict[str, str], log: Path) -> tuple[subprocess.Popen, str]:
    """JupyterLab over `folder` through scripts/lab.py; returns the process and its base URL with token."""
    token = secrets.token_hex(16)
    port = lab.choose_port(18888)
    cmd = lab.command(port, folder, ["--no-browser", f"--IdentityProvider.token={token}",
                                     "--ServerApp.ip=127.0.0.1", "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"])
    proc = subprocess.Popen(cmd, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"JupyterLab exited with {proc.returncode}; its log is {log}")
        try:
            urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2)
            return proc, f"{base}|{token}"
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"JupyterLab did not answer within 120 s; its log is {log}")


def stop_lab(proc: subprocess.Popen) -> None:
    """Stop the server and the kernels it started."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def figure_calls(source: str) -> int:
    """How many figures a cell makes: its calls into helpers.plots."""
    return len(re.findall(r"\bplots\.\w+\(", source))


def check_executed(path: Path, machine_paths: list[str]) -> list[str]:
    """What is wrong with a notebook as Run All left it (saved from the browser): one line per problem."""
    nb = nbformat.read(path, as_version=4)
    problems = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        where = f"{path.name} cell {i}"
        if cell.get("execution_count") is None and cell.source.strip():
            problems.append(f"{where}: never ran (an earlier cell failed?)")
        images = 0
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                problems.append(f"{where}: {out.get('ename')}: {out.get('evalue')}")
            data = out.get("data", {})
            images += "image/png" in data
            text = out.get("text", "") + data.get("text/plain", "")
            if "IProgress not found" in text:
                problems.append(f"{where}: progress fell back to text (IProgress not found: ipywidgets missing)")
            if out.get("name") == "stderr":
                continue  # a library's warning names its own file; a cell's result and prints must not
            if "PosixPath(" in text or any(p in text for p in machine_paths):
                problems.append(f"{where}: prints a machine path: {text.strip()[:120]!r}")
        wanted = figure_calls(cell.source)
        if wanted and images == 0 and cell.get("execution_count") is not None:
            problems.append(f"{where}: its figure is missing")
        if images > max(wanted, 0) and wanted:
            problems.append(f"{where}: shows {images} figures for {wanted} (a figure appears twice)")
    return problems


def menu(page, top: str, item: str) -> None:
    """Click a JupyterLab menu item by its visible labels, as a person would."""
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(f"^{re.escape(top)}$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(f"^{re.escape(item)}$")).click()


def api(base: str, token: str, path: str, method: str = "GET", body: dict | None = None):
    """A call to the Jupyter server's REST API; the parsed JSON answer (None when empty)."""
    request = urllib.request.Request(f"{base}{path}", method=method, data=json.dumps(body).encode() if body else None,
                                     headers={"Authorization": f"token {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        text = answer.read()
    return json.loads(text) if text else None


def kernel_of(base: str, token: str, name: str) -> dict | None:
    """The session of notebook `name` when its kernel runs, else None."""
    for session in api(base, token, "/api/sessions") or []:
        if session.get("path", "").endswith(f"{name}.ipynb") and session.get("kernel"):
            return session
    return None


def run_notebook(page, base: str, token: str, name: str, folder: Path, shots: Path, timeout_s: float) -> float:
    """Open one notebook, Run All through the menu, wait, save, screenshot its end; return seconds taken."""
    page.goto(f"{base}/lab/tree/{name}.ipynb?reset&token={token}")
    panel = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
    panel.wait_for(timeout=120_000)
    indicator = panel.locator(".jp-Notebook-ExecutionIndicator")
    accept = page.locator(".jp-Dialog .jp-mod-accept")
    deadline = time.time() + 120
    while True:  # the kernel named in the notebook (the project's) starts; a chooser, if shown, is accepted
        if accept.count() and accept.first.is_visible():
            accept.first.click()
        if kernel_of(base, token, name) and indicator.count() and indicator.get_attribute("data-status") == "idle":
            break
        if time.time() > deadline:
            raise RuntimeError("its kernel did not start within 120 s")
        time.sleep(0.5)
    t0 = time.time()
    menu(page, "Run", "Run All Cells")
    quiet = 0
    while quiet < 3:  # done when no cell waits or runs for three polls in a row and the kernel is idle
        if time.time() - t0 > timeout_s:
            raise RuntimeError(f"Run All did not finish within {timeout_s:.0f} s")
        time.sleep(2)
        prompts = panel.locator(".jp-CodeCell .jp-InputPrompt").all_inner_texts()
        busy = any("*" in p for p in prompts) or indicator.get_attribute("data-status") != "idle"
        quiet = 0 if busy else quiet + 1
    seconds = time.time() - t0
    menu(page, "File", "Save Notebook")
    saved = folder / f"{name}.ipynb"
    deadline = time.time() + 60
    while time.time() < deadline:  # the saved copy is what check_executed reads
        nb = json.loads(saved.read_text(encoding="utf-8"))
        if any(c.get("execution_count") for c in nb["cells"] if c["cell_type"] == "code"):
            break
        time.sleep(1)
    last = panel.locator(".jp-Cell").last
    last.scroll_into_view_if_needed()
    last.evaluate("e => e.scrollIntoView({block: 'end'})")  # the notebook's end at the window's bottom
    time.sleep(2)
    shots.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shots / f"{name}.png"))
    broken = panel.evaluate("p => [...p.querySelectorAll('.jp-OutputArea img')]"
                            ".filter(i => i.complete && i.naturalWidth === 0).map(i => i.alt || i.src).slice(0, 5)")
    if broken:  # a picture the page could not load: a relative link, a missing file
        raise RuntimeError(f"shows broken images: {broken}")
    session = kernel_of(base, token, name)  # the next notebook gets the machine to itself
    if session:
        api(base, token, f"/api/sessions/{session['id']}", "DELETE")
    return seconds


def set_parameters(path: Path, values: dict[str, str]) -> None:
    """Replace the literal of each named parameter in a notebook's parameters cell (VALUE as Python source)."""
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            for name, value in values.items():
                cell.source = re.sub(rf"^{re.escape(name)} = .*?(  #.*)?$", lambda m: f"{name} = {value}{m[1] or ''}",
                                     cell.source, flags=re.M)
    nbformat.write(nb, path)


def main(argv: list[str] | None = None) -> int:
    """Run every notebook through JupyterLab in headless Chromium; 0 when all pass."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--home", type=Path, help="STUDY_HOME of the run (default: a fresh temporary folder)")
    ap.add_argument("--only", help="comma-separated notebook names (default: 01…04, and 05 when present)")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds one notebook's Run All may take")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                    help="edit a parameter in the copies' parameters cells first, as a person would in JupyterLab "
                         "(a quick smoke check; without it the committed defaults run)")
    args = ap.parse_args(argv)
    why = unavailable()
    if why:
        print(f"lab_check: cannot run: {why}.", file=sys.stderr)
        return 3
    from playwright.sync_api import sync_playwright

    home = (args.home or Path(tempfile.mkdtemp(prefix="lab-check-"))).resolve()
    folder = home / "lab-notebooks"  # copies: Run All and saving never touch the committed notebooks
    folder.mkdir(parents=True, exist_ok=True)
    names = [n.strip() for n in args.only.split(",")] if args.only else notebooks()
    for name in names:
        shutil.copyfile(ROOT / "notebooks" / f"{name}.ipynb", folder / f"{name}.ipynb")
        if args.set:
            set_parameters(folder / f"{name}.ipynb", dict(item.split("=", 1) for item in args.set))
    env = {**os.environ, "STUDY_HOME": str(home)}
    for quiet in ("STUDY_PROGRESS", "MPLBACKEND", "TQDM_DISABLE"):  # the test suite sets them; a user's lab has none
        env.pop(quiet, None)
    first = nbformat.read(folder / f"{names[0]}.ipynb", as_version=4)
    run_id = re.search(r'^run_id = "([^"]+)"', "\n".join(c.source for c in first.cells), re.M)
    shots = home / "runs" / (run_id.group(1) if run_id else "default") / "screenshots"
    proc, url = start_lab(folder, env, home / "jupyterlab.log")
    base, token = url.split("|")
    problems: list[str] = []
    timings: dict[str, float] = {}
    try:
        with sync_playwright() as pw:
            context = pw.chromium.launch_persistent_context(
                str(home / "chromium-profile"), executable_path=str(CHROMIUM), headless=True,
                args=CHROMIUM_FLAGS, viewport={"width": 1400, "height": 1000})
            page = context.new_page()
            # no "get Jupyter news?" toast over the notebook's end in the screenshots
            api(base, token, "/lab/api/settings/@jupyterlab/apputils-extension:notification", "PUT",
                {"raw": json.dumps({"fetchNews": "false"})})
            for k, name in enumerate(names):
                try:
                    timings[name] = run_notebook(page, base, token, name, folder, shots, args.timeout)
                    found = check_executed(folder / f"{name}.ipynb", [str(home), str(ROOT)])
                except Exception as exc:
                    shots.mkdir(parents=True, exist_ok=True)
                    page.screenshot(path=str(shots / f"{name}.failed.png"))
                    found = [f"{name}.ipynb: {exc}"]
                finally:
                    session = kernel_of(base, token, name)  # a timed-out kernel must not run on under the next
                    if session:
                        api(base, token, f"/api/sessions/{session['id']}", "DELETE")
                problems += found
                print(f"{name}: {f'Run All {timings[name]:.0f}s' if name in timings else 'failed'}, "
                      f"{'ok' if not found else f'{len(found)} problem(s)'}", flush=True)
                if found and k + 1 < len(names):  # each notebook reads what the one before wrote
                    problems.append(f"not run, since {name} failed: {', '.join(names[k + 1:])}")
                    break
            context.close()
    finally:
        stop_lab(proc)
    print(f"screenshots: {shots}")
    print(f"total Run All time: {sum(timings.values()):.0f}s")
    for p in problems:
        print(f"FAIL {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
