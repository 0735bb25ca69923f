"""helpers.params: the schema, and one clear sentence per bad value."""

import pytest

from helpers.params import schema as params
from helpers.params.schema import auto_image_size, coerce, parse_list, validate
from helpers.runner.preflight import check as preflight


@pytest.mark.parametrize("values,message", [
    ({"batch_size": 0}, "batch_size=0: must be an integer ≥ 1"),
    ({"epochs": -1}, "epochs=-1: must be an integer ≥ 0"),
    ({"epochs": "seven"}, "epochs='seven': expected an integer"),
    ({"freeze_bn": "maybe"}, "freeze_bn='maybe': expected True or False"),
    ({"arch": "vgg"}, "arch='vgg' is not known"),
    ({"init": "best!"}, "init='best!': use weights, best, last or cycle:<N>"),
    ({"init": "cycle:0"}, "init='cycle:0'"),
    ({"lang": "de"}, "lang='de': use ru, en"),
    ({"augment": "mixup"}, "augment='mixup': use none, flip, crop"),
    ({"schedule": "step"}, "schedule='step': use cosine, onecycle"),
    ({"unfreeze": "top"}, "unfreeze='top': use all, or the number"),
    ({"label_smoothing": 1.5}, "label_smoothing=1.5"),
    ({"devices": "0"}, "devices='0': use 1"),
    ({"tta": "rotate"}, "tta='rotate': use none, flip, flip\\+crops"),
    ({"weights": "/nowhere/w.pt"}, "weights='/nowhere/w.pt': no such file"),
    ({"run_id": "../x"}, "run_id='../x': must be a plain folder name"),
    ({"image_size": 16}, "image_size=16: use 0"),
    ({"research_archs": "resnet50,vgg"}, r"research_archs has unknown \['vgg'\]"),
    ({"dataset": "/nowhere/data"}, "dataset='/nowhere/data': no such file or folder"),
    ({"bach_size": 3}, "unknown parameter 'bach_size'"),
])
def test_bad_values(values, message):
    with pytest.raises(ValueError, match=message):
        preflight(values)  # what the runner and every notebook's first cell run


def test_kaggle_without_credentials_fails_in_the_check(monkeypatch, tmp_path):
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path))
    for var in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(ValueError, match="no Kaggle credentials found"):
        preflight({"dataset": "kaggle:owner/slug"})


def test_good_values_and_helpers():
    assert preflight({"batch_size": 16, "epochs": 0, "device": "cpu"})["device"].type == "cpu"
    assert preflight({"init": "cycle:3", "tta": "flip+crops"}) == {}
    assert preflight({"devices": "all", "device": "cpu"})["devices"] == 1  # all = one process on a CPU
    assert coerce("epochs", "7") == 7 and coerce("freeze_bn", "false") is False and coerce("lr", "1e-3") == 0.001
    assert parse_list(" a, b ,,c") == ["a", "b", "c"]
    assert auto_image_size("efficientnet-lite0", 28) == 80
    assert auto_image_size("efficientnet-lite0", 16) == 64
    assert auto_image_size("efficientnet-lite0", 1000) == 224
    assert auto_image_size("efficientnet-b4", None) == 380


def test_schema_is_consistent():
    names = [p.name for p in params.SCHEMA]
    assert len(names) == len(set(names))
    for p in params.SCHEMA:
        assert set(p.notebooks) <= set(params.NOTEBOOKS) and p.help
        assert isinstance(p.default, p.type)
        params.check(p.name, p.default)  # every default is a valid value
    assert "research_batch_size" in params.defaults("01_research") and "batch_size" not in params.defaults("01_research")
    text = params.help_text()
    for nb in params.NOTEBOOKS:
        assert f"  {nb}:" in text


@pytest.mark.parametrize("values", [{"dataset": "/nowhere/data"}, {"weights": "/nowhere/w.pt"},
                                    {"device": "cuda:7"}, {"images": "nowhere"}])
def test_the_schema_checks_values_alone_and_the_preflight_the_world(values):
    """A well-formed value passes the schema (no file, device or package is looked at); the preflight refuses it."""
    assert validate(values) == values
    with pytest.raises(ValueError, match=f"{next(iter(values))}="):
        preflight(values)


@pytest.mark.parametrize("values,message", [({"dataset": "kaggle:justaname"}, "kaggle:<owner>/<dataset>"),
                                            ({"device": "gpu"}, "device='gpu' is not a device"),
                                            ({"weights": ""}, "weights is empty")])
def test_malformed_values_fail_in_the_schema_itself(values, message):
    with pytest.raises(ValueError, match=message):
        validate(values)
