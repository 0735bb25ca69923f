"""Test session setup: every run, report and cache of the suite goes to a temporary STUDY_HOME."""

import os
import tempfile


def pytest_configure(config):
    """Point STUDY_HOME (inherited by nbmake's and papermill's kernels) away from the user's runs/."""
    if not os.environ.get("STUDY_HOME"):
        os.environ["STUDY_HOME"] = tempfile.mkdtemp(prefix="study-home-")
    os.environ.setdefault("TQDM_DISABLE", "1")
    os.environ.setdefault("MPLBACKEND", "Agg")
