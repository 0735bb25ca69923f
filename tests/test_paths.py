"""helpers.paths: runs and reports follow STUDY_HOME, the sample stays in the project."""

from helpers.utils import paths


def test_home_follows_env(study_home):
    assert paths.run_dir("x") == study_home / "runs" / "x"
    assert paths.report_dir("x") == study_home / "reports" / "x"
    assert paths.SAMPLE_DIR.is_relative_to(paths.PROJECT_ROOT)


def test_default_home_is_project_root(monkeypatch):
    monkeypatch.delenv("STUDY_HOME")
    assert paths.home() == paths.PROJECT_ROOT
