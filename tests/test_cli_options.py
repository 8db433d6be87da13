"""The command line's options come from the strategy and Training declarations, and only given ones are passed on."""

from __future__ import annotations

import json
import re

import pytest
from typer.testing import CliRunner

from conftest import sentiment_task_fixed
from unfreeze.cli import app
from unfreeze.strategies import registered
from unfreeze.training.settings import Training

runner = CliRunner()


def flags_in_help(command: str) -> set[str]:
    result = runner.invoke(app, [command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return set(re.findall(r"--[A-Za-z][A-Za-z0-9-]*", result.output))


def test_every_training_setting_is_an_option_of_fit_and_sweep():
    fit_flags, sweep_flags = flags_in_help("fit"), flags_in_help("sweep")
    for name in Training.setting_names():
        flag = "--" + name.replace("_", "-")
        assert flag in fit_flags, flag
        if name != "prefix_cache":  # a sweep's caches are switched by --no-cache
            assert flag in sweep_flags, flag
    assert "--no-prefix-cache" in fit_flags


def test_every_parameter_of_every_strategy_is_an_option_of_fit():
    fit_flags = flags_in_help("fit")
    for cls in registered().values():
        for f in cls.settings():
            assert (f.metadata.get("flag") or "--" + f.name.replace("_", "-")) in fit_flags, (cls.name, f.name)
    assert {"--lora-r", "--reinit-m", "--lr"} <= fit_flags  # the aliases launchers need


@pytest.fixture
def data(tmp_path):
    texts, labels = sentiment_task_fixed(24, 0)
    path = tmp_path / "train.csv"
    path.write_text("text,label\n" + "\n".join(f"{t},{y}" for t, y in zip(texts, labels)) + "\n")
    return path


def test_only_given_options_are_passed_on_and_recorded(data, tiny_model_dir, tmp_path):
    result = runner.invoke(app, ["fit", str(data), "--model", tiny_model_dir("bert"), "--strategy", "lora",
                                 "--lora-r", "2", "--max-steps", "2", "--weight-decay", "0.5", "--grad-clip", "0.25",
                                 "--warmup-ratio", "0.2", "--no-prefix-cache", "-o", str(tmp_path / "b")])
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "b" / "unfreeze.json").read_text())
    assert config["strategy"] == {"name": "lora", "params": {"r": 2, "lora_alpha": 16, "lora_dropout": 0.1,
                                                             "target_modules": None, "top_blocks": None}}
    given = {"max_steps": 2, "weight_decay": 0.5, "grad_clip": 0.25, "warmup_ratio": 0.2, "prefix_cache": False}
    assert config["training"] == {**Training().get_params(), **given}
    assert config["fit_record"]["steps"] == 2


@pytest.mark.parametrize(("args", "message"), [
    (["--strategy", "freeze", "--r", "16"], "The 'r' setting does not apply to strategy 'freeze': it is a parameter "
                                            "of lora."),
    (["--strategy", "features", "--epochs", "3"], "The training setting 'epochs' is not used by strategy 'features'"),
    (["--strategy", "setfit", "--patience", "3"], "The training setting 'patience' is not used by strategy 'setfit'"),
    (["--strategy", "full", "--k", "2"], "The 'k' setting does not apply to strategy 'full'"),
    (["--strategy", "lora", "--lora-dropout", "2"], "The 'lora_dropout' parameter of lora must be a float in "
                                                    "[0.0, 1.0]. Got 2.0."),
    (["--strategy", "freeze", "--class-weight", "auto"], "The 'class_weight' parameter of Training must be one of "
                                                         "None, 'balanced'. Got 'auto'."),
    (["--strategy", "nope"], "The 'strategy' parameter of Classifier must be one of 'features', 'freeze'"),
])
def test_a_setting_that_does_not_apply_is_one_line_and_writes_nothing(args, message, data, tiny_model_dir, tmp_path):
    result = runner.invoke(app, ["fit", str(data), "--model", tiny_model_dir("bert"), *args, "-o",
                                 str(tmp_path / "b")])
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert not (tmp_path / "b").exists()


def test_sweep_test_size_carves_the_test_set_out_of_a_builtin_train_split_as_fit_does():
    from unfreeze.data.splits import load_splits
    from unfreeze.sweep import SweepSpec
    from unfreeze.sweep.plan import load_sweep_data

    spec = SweepSpec(data="bbc-news", test_size=0.25, n_train=[8])
    swept = load_sweep_data(spec)
    train, test = load_splits("bbc-news", test_size=0.25, seed=0)
    assert swept.test.fingerprint() == test.fingerprint() and swept.train_pool.fingerprint() == train.fingerprint()
    assert len(swept.test) == round(0.25 * (len(swept.test) + len(swept.train_pool)))
    builtin_test = load_sweep_data(SweepSpec(data="bbc-news", n_train=[8])).test
    assert builtin_test.fingerprint() == load_splits("bbc-news")[1].fingerprint() != test.fingerprint()
