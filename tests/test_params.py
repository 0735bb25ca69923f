"""helpers.params: one clear sentence per bad value."""

import pytest

from helpers.params import ParameterError, auto_image_size, parse_list, validate


@pytest.mark.parametrize("params,message", [
    ({"batch_size": 0}, "batch_size=0: must be an integer ≥ 1"),
    ({"epochs": -1}, "epochs=-1: must be an integer ≥ 0"),
    ({"arch": "vgg"}, "arch='vgg' is not known"),
    ({"init": "best!"}, "init='best!': use weights, best or last"),
    ({"lang": "de"}, "lang='de': use ru or en"),
    ({"weights": "/nowhere/w.pt"}, "weights='/nowhere/w.pt': no such file"),
    ({"run_id": "../x"}, "run_id='../x': must be a plain folder name"),
    ({"image_size": 16}, "image_size=16: use 0"),
    ({"research_archs": "resnet50,vgg"}, r"research_archs has unknown \['vgg'\]"),
    ({"dataset": "/nowhere/data"}, "dataset='/nowhere/data': no such file or folder"),
])
def test_bad_values(params, message):
    with pytest.raises(ParameterError if "dataset" not in params else ValueError, match=message):
        validate(params)


def test_good_values_and_helpers():
    assert validate({"batch_size": 16, "epochs": 0, "device": "cpu"})["device"].type == "cpu"
    assert parse_list(" a, b ,,c") == ["a", "b", "c"]
    assert auto_image_size("efficientnet-lite0", 28) == 80
    assert auto_image_size("efficientnet-lite0", 16) == 64
    assert auto_image_size("efficientnet-lite0", 1000) == 224
    assert auto_image_size("efficientnet-b4", None) == 380
