"""helpers.reporting.texts: the report's words come from strings.yaml, in both languages, and 02's English
reasons reach the Russian report in Russian."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest
import yaml

from helpers.data import dataset as data
from helpers.reporting import index, report, texts
from helpers.utils import paths

from .conftest import make_image
from .kaggle_shapes import SHAPES
from .test_report import _artifacts


@pytest.fixture
def strings_copy(tmp_path, monkeypatch):
    """A copy of strings.yaml that the report reads instead of the shipped one: (path, its content)."""
    path = tmp_path / "strings.yaml"
    shutil.copyfile(texts.STRINGS_FILE, path)
    monkeypatch.setattr(texts, "STRINGS_FILE", path)
    return path, yaml.safe_load(path.read_text(encoding="utf-8"))


def _save(path, content) -> None:
    path.write_text(yaml.safe_dump(content, allow_unicode=True, sort_keys=False), encoding="utf-8")


def test_a_sentence_changed_in_the_strings_table_shows_in_both_reports(strings_copy):
    path, content = strings_copy
    _artifacts()
    content["report"]["final"] = {"ru": "Итог студента: {acc} на {n} тестовых изображениях (цикл {cycle}).",
                                  "en": "Student's verdict: {acc} on {n} test images (cycle {cycle})."}
    content["report"]["s3"] = {"ru": "3. Выбранная модель", "en": "3. The chosen model"}
    content["figures"]["training_metrics"]["title"] = {"ru": "Кривые обучения", "en": "Learning curves"}
    content["index"]["title"] = {"ru": "Мои запуски", "en": "My runs"}
    _save(path, content)
    ru, en = report.write_report("r", "ru").read_text(), report.render("r", "en")
    assert "Итог студента: 99.56% на 450 тестовых изображениях (цикл 2)." in ru
    assert "Student's verdict: 99.56% on 450 test images (cycle 2)." in en
    assert "## 3. Выбранная модель" in ru and "## 3. The chosen model" in en
    assert "Итоговой точностью" not in ru and "final accuracy" not in en
    assert (paths.home() / "reports" / "index.md").read_text().startswith("# Мои запуски")
    history = pd.DataFrame({"cycle": [1, 1], "train_loss": [1.0, 0.5], "val_loss": [1.1, 0.6],
                            "train_accuracy": [0.5, 0.7], "val_accuracy": [0.4, 0.6]})
    from helpers.reporting import plots
    assert plots.training_metrics(history, "ru")._suptitle.get_text() == "Кривые обучения"


def test_the_template_lays_the_report_out(tmp_path, monkeypatch):
    _artifacts()
    folder = tmp_path / "templates"
    shutil.copytree(texts.TEMPLATES, folder)
    layout = (folder / "REPORT.md.j2").read_text(encoding="utf-8")
    moved = layout.replace("## {{ t.prov }}", "## {{ t.prov }} (moved by a student)")
    (folder / "REPORT.md.j2").write_text(moved, encoding="utf-8")
    monkeypatch.setattr(texts, "TEMPLATES", folder)
    assert "## Происхождение (moved by a student)" in report.render("r", "ru")


def test_a_pair_missing_a_language_is_named(strings_copy):
    path, content = strings_copy
    content["report"]["leaks"] = {"ru": content["report"]["leaks"]["ru"]}
    _save(path, content)
    _artifacts()
    with pytest.raises(ValueError, match=r"strings.yaml: report.leaks must hold exactly ru and en, it holds \['ru'\]"):
        report.render("r", "en")


def test_an_unknown_language_is_refused_before_anything_is_written():
    _artifacts()
    with pytest.raises(ValueError, match="lang='de': use ru or en."):
        report.write_report("r", "de")
    assert not paths.report_dir("r").exists()
    assert index.main(["de"]) == 2


def test_both_languages_hold_the_same_texts_and_placeholders():
    import string
    ru, en = texts.strings("ru"), texts.strings("en")

    def walk(a, b, where):
        if isinstance(a, dict) and "match" not in a:
            assert set(a) == set(b), where
            for k in a:
                walk(a[k], b[k], f"{where}.{k}")
        elif isinstance(a, list) and where != ".phrases":
            assert len(a) == len(b), where
            for i, (x, y) in enumerate(zip(a, b)):
                walk(x, y, f"{where}[{i}]")
        elif isinstance(a, str):
            names = lambda s: {f for _, f, _, _ in string.Formatter().parse(s) if f}  # noqa: E731
            # One side may leave a figure out (the Russian bake-off note drops 01's English {note}), never add one.
            assert names(a) <= names(b) or names(b) <= names(a), f"{where}: {a!r} and {b!r} name other placeholders"
    walk(ru, en, "")


def _odd_files(root) -> None:
    """Files 02 must skip, each with its own reason."""
    (root / "glioma" / "empty.jpg").write_bytes(b"")
    (root / "glioma" / "notes.jpg").write_text("not a picture")
    broken = make_image(root / "glioma" / "cut.png", seed=3, size=(40, 40))
    broken.write_bytes(broken.read_bytes()[:120])


@pytest.mark.parametrize("name", SHAPES)
def test_how_the_dataset_was_read_is_russian_in_the_russian_report(name, tmp_path):
    shape = SHAPES[name]
    source = data.resolve_dataset(str(shape.build(tmp_path / name)))
    if name == "training_testing":
        _odd_files(source / "Training")
    keep = bool(shape.given)
    frame, found = data.prepare_split(source, keep_given_split=keep, **shape.params)
    data.save_split(paths.run_dir(name), frame, found)
    reasons = texts.strings("ru")["phrases"]["reasons"]
    written = [r["reason"] for r in found["explanation"] + found["skipped"] + found["unlabelled"]] + found["notes"]
    left = {c for text in written for c in texts.untranslated(text, reasons, "ru")}
    assert not left, f"02 wrote English that strings.yaml's phrases.reasons do not translate: {sorted(left)}"
    text = report.render(name, "ru")
    assert "Как прочитан набор данных" in text
    for row in found["explanation"][:20]:
        assert texts.translate(row["reason"], reasons, "ru") in text
    english = report.render(name, "en")
    assert all(row["reason"] in english for row in found["explanation"][:20])  # English as 02 wrote it


def test_reasons_are_translated_clause_by_clause_and_unknown_clauses_stay():
    reasons = texts.strings("ru")["phrases"]["reasons"]
    said = texts.translate("split folder: 'Testing' means test; repeated one level down; 2 class folders", reasons, "ru")
    assert said == "папка выборки: 'Testing' означает «тест»; повторена уровнем ниже; папок классов: 2"
    assert texts.translate("3 images: named in sub.csv, the sample submission", reasons, "ru") == \
        "изображений: 3 — названы в sub.csv, образце посылки"
    assert texts.translate("a reason 02 learnt later; holds no image", reasons, "ru") == \
        "a reason 02 learnt later; нет изображений"
    assert texts.untranslated("a reason 02 learnt later; holds no image", reasons, "ru") == ["a reason 02 learnt later"]
    assert texts.translate("holds no image", reasons, "en") == "holds no image"


def test_the_strings_file_ships_with_the_package():
    import tomllib
    from helpers.utils.paths import PROJECT_ROOT
    config = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())
    shipped = config["tool"]["setuptools"]["package-data"]["helpers.reporting"]
    folder = PROJECT_ROOT / "helpers" / "reporting"
    assert {p.relative_to(folder).as_posix() for pattern in shipped for p in folder.glob(pattern)} >= \
        {"strings.yaml", "templates/REPORT.md.j2", "templates/INDEX.md.j2"}


def test_group_leaks_moved_groups_and_blank_labels_are_russian_too(tmp_path):
    from .test_data import _ham_with_given_split
    root = _ham_with_given_split(tmp_path / "ham")
    reasons = texts.strings("ru")["phrases"]["reasons"]
    frame, found = data.prepare_split(root, keep_given_split=True, group_column="lesion_id")
    data.save_split(paths.run_dir("patients"), frame, found)
    assert "**Утечка:** 2 групп(ы) по `lesion_id` (пациент, очаг)" in report.render("patients", "ru")
    _, moved = data.prepare_split(root, keep_given_split=True, group_column="lesion_id", move_leaks=True)
    assert moved["notes"] and all(not texts.untranslated(n, reasons, "ru") for n in moved["notes"])
    csv = root / "HAM10000_metadata.csv"
    rows = csv.read_text().splitlines()
    rows[1] = ",".join(cell if i != 2 else "" for i, cell in enumerate(rows[1].split(",")))  # a blank dx
    csv.write_text("\n".join(rows) + "\n")
    _, blank = data.prepare_split(root, group_column="lesion_id")
    written = [u["reason"] for u in blank["unlabelled"]] + [r["reason"] for r in blank["explanation"]]
    assert any("is blank" in w for w in written)
    assert not {c for w in written for c in texts.untranslated(w, reasons, "ru")}
