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
    result = runner.invoke(
        app,
        [
            "fit",
            str(data),
            "--model",
            tiny_model_dir("bert"),
            "--strategy",
            "lora",
            "--lora-r",
            "2",
            "--max-steps",
            "2",
            "--weight-decay",
            "0.5",
            "--grad-clip",
            "0.25",
            "--warmup-ratio",
            "0.2",
            "--no-prefix-cache",
            "-o",
            str(tmp_path / "b"),
        ],
    )
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "b" / "unfreeze.json").read_text())
    assert config["strategy"] == {
        "name": "lora",
        "params": {"r": 2, "lora_alpha": 16, "lora_dropout": 0.1, "target_modules": None, "top_blocks": None},
    }
    given = {"max_steps": 2, "weight_decay": 0.5, "grad_clip": 0.25, "warmup_ratio": 0.2, "prefix_cache": False}
    assert config["training"] == {**Training().get_params(), **given}
    assert config["fit_record"]["steps"] == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--strategy", "freeze", "--r", "16"],
            "The 'r' setting does not apply to strategy 'freeze': it is a parameter of lora.",
        ),
        (
            ["--strategy", "features", "--epochs", "3"],
            "The training setting 'epochs' is not used by strategy 'features'",
        ),
        (
            ["--strategy", "setfit", "--patience", "3"],
            "The training setting 'patience' is not used by strategy 'setfit'",
        ),
        (["--strategy", "full", "--k", "2"], "The 'k' setting does not apply to strategy 'full'"),
        (
            ["--strategy", "lora", "--lora-dropout", "2"],
            "The 'lora_dropout' parameter of lora must be a float in [0.0, 1.0]. Got 2.0.",
        ),
        (
            ["--strategy", "freeze", "--class-weight", "auto"],
            "The 'class_weight' parameter of Training must be one of None, 'balanced'. Got 'auto'.",
        ),
        (["--strategy", "nope"], "The 'strategy' parameter of Classifier must be one of 'features', 'freeze'"),
    ],
)
def test_a_setting_that_does_not_apply_is_one_line_and_writes_nothing(args, message, data, tiny_model_dir, tmp_path):
    result = runner.invoke(app, ["fit", str(data), "--model", tiny_model_dir("bert"), *args, "-o", str(tmp_path / "b")])
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


# -- one options model: one name, one type, one default, one help in every command ------------------

# ``-o/--output`` names what the command itself writes (a bundle, a run folder, a CSV): its help says which
PER_COMMAND = {"--output", "-o"}


def _commands(group=None, prefix=""):
    import typer.main

    group = group or typer.main.get_command(app)
    for name, command in group.commands.items():
        if hasattr(command, "commands"):
            yield from _commands(command, f"{prefix}{name} ")
        else:
            yield prefix + name, command


def _visible_options():
    for path, command in _commands():
        for param in command.params:
            if param.param_type_name == "option" and not param.hidden:
                for flag in [*param.opts, *param.secondary_opts]:
                    yield path, flag, param


def test_every_option_name_has_one_type_one_default_and_one_help_across_commands():
    declared: dict[str, dict[str, tuple]] = {}
    for path, flag, param in _visible_options():
        shape = (param.type_descriptor.annotation, param.multiple, param.is_flag, param.default, param.help)
        declared.setdefault(flag, {})[path] = shape
    assert len(declared) > 60  # the walk reached every command's options
    clashes = []
    for flag, uses in declared.items():
        shapes = set(uses.values()) if flag not in PER_COMMAND else {s[:4] for s in uses.values() if s[3] is None}
        if len(shapes) > 1:
            clashes.append(f"{flag}: " + "; ".join(f"{cmd}={shape}" for cmd, shape in uses.items()))
    assert not clashes, "\n".join(clashes)


def test_advise_takes_every_training_setting_fit_has_with_the_same_declaration():
    options = {}
    for path, flag, param in _visible_options():
        options.setdefault(path, {})[flag] = param
    for name in Training.setting_names():
        flag = "--" + name.replace("_", "-")
        if flag not in options["fit"]:  # a flag (--prefix-cache/--no-prefix-cache)
            flag = f"--{name.replace('_', '-')}"
            assert any(f.startswith(flag) for f in options["fit"]), name
            continue
        for command in ("advise", "sweep", "intrinsic-dim"):
            assert flag in options[command], (command, flag)
            assert options[command][flag].default == options["fit"][flag].default
            assert options[command][flag].help == options["fit"][flag].help


def test_a_list_valued_option_is_plural_or_says_so():
    for path, flag, param in _visible_options():
        help_text = (param.help or "").lower()
        if param.multiple:
            assert "repeat" in help_text, (path, flag)
        elif flag in ("--seeds", "--strategies", "--sizes", "--grid") or "comma-separated" in help_text:
            assert flag.endswith("s") or "comma-separated" in help_text, (path, flag)


@pytest.mark.parametrize(
    "command, old, new",
    [
        (
            ["sweep", "movie-snippets", "-o", "{tmp}/run", "--strategies", "nope", "--n-train", "16"],
            "--n-train",
            "--sizes",
        ),
        (
            ["advise", "movie-snippets", "-o", "{tmp}/run", "--strategies", "nope", "--json", "{tmp}/p.json"],
            "--json",
            "--json-out",
        ),
    ],
)
def test_an_old_spelling_still_works_for_a_release_with_one_warning_line(command, old, new, tmp_path):
    args = [a.replace("{tmp}", str(tmp_path)) for a in command]
    result = runner.invoke(app, args)
    lines = result.output.strip().splitlines()
    assert f"warning: {old} is now {new}; the old spelling will be removed in the next release." in lines
    assert result.exit_code == 2 and lines[-1].startswith("error: Unknown strategy 'nope'")
    assert not (tmp_path / "run").exists()


def test_the_old_and_the_new_spelling_together_are_one_line():
    result = runner.invoke(app, ["sweep", "movie-snippets", "-o", "x", "--sizes", "8", "--n-train", "16"])
    assert result.exit_code == 2
    assert result.output.strip() == "error: --n-train is the old spelling of --sizes: give only --sizes."


def test_a_strategy_parameter_takes_one_value_in_fit_and_a_list_to_sweep(data, tmp_path):
    result = runner.invoke(app, ["fit", str(data), "-o", str(tmp_path / "b"), "--strategy", "freeze", "--k", "0,3"])
    assert result.exit_code == 2
    assert "--k takes one value in fit; sweep and advise take several" in result.output
    assert not (tmp_path / "b").exists()
    from unfreeze.cli.options import grid_axes

    assert grid_axes({"k": ["0", "3"]}, ["features", "freeze", "truncate"]) == {
        "freeze": {"k": ["0", "3"]},
        "truncate": {"k": ["0", "3"]},
    }
    assert grid_axes({"k": ["all"]}, ["freeze"]) == {"freeze": {"k": "all"}}
    with pytest.raises(Exception, match=r"--r is a parameter of lora, and none of them is among the strategies"):
        grid_axes({"r": ["4"]}, ["features", "freeze"])


def test_a_bad_strategy_value_in_fit_is_the_strategy_s_own_one_line(data, tmp_path):
    result = runner.invoke(app, ["fit", str(data), "-o", str(tmp_path / "b"), "--strategy", "freeze", "--k", "two"])
    assert result.exit_code == 2
    assert result.output.strip() == "error: The 'k' parameter of freeze must be an int >= 0. Got 'two'."


def test_advise_spec_is_a_sweep_spec_and_keeps_the_plan_ids_of_earlier_runs():
    from unfreeze.advise.spec import AdviseSpec
    from unfreeze.sweep import SweepSpec

    spec = AdviseSpec(seeds=[0, 1], max_length=128)
    assert isinstance(spec, SweepSpec)
    # ids computed by the AdviseSpec of e02c7a4 (before it was a SweepSpec): a run started then resumes
    assert spec.plan_id() == "0cac10596d052a94"
    assert AdviseSpec(data="x.csv", budget=300.0, max_length=128).plan_id() == "cbdebddec4fc81e2"
    assert AdviseSpec(seeds=[0, 1], max_length=128, weight_decay=0.1).plan_id() != spec.plan_id()
    assert AdviseSpec(seeds=[0, 1], max_length=128, threads=1).plan_id() == spec.plan_id()
    cells = spec.sweep_spec(validation_size=50)
    assert type(cells) is SweepSpec and cells.validation_size == 50 and cells.n_train == [1]
    assert spec.validation_size is None and cells.weight_decay == spec.weight_decay


def test_a_text_parameter_s_one_value_may_hold_commas():
    from unfreeze.cli.options import grid_axes, one_value_each, strategy_values

    given = {"schedule": "1,1,2", "mix_layers": "-4,-3,-2,-1", "target_modules": "query,value", "k": "0,3"}
    values = strategy_values(dict(given))
    assert values == {
        "schedule": ["1,1,2"],
        "mix_layers": ["-4,-3,-2,-1"],
        "target_modules": ["query,value"],
        "k": ["0", "3"],
    }
    assert one_value_each({k: v for k, v in values.items() if k != "k"})["schedule"] == "1,1,2"
    assert grid_axes({"mix_layers": values["mix_layers"]}, ["mix"]) == {"mix": {"mix_layers": ["-4,-3,-2,-1"]}}


def test_fit_takes_a_gradual_schedule_and_a_mix_of_layers_whole(data, tiny_model_dir, tmp_path):
    for strategy, option, value, field in (
        ("gradual", "--schedule", "1,1", "schedule"),
        ("mix", "--mix-layers", "-2,-1", "mix_layers"),
    ):
        out = tmp_path / strategy
        result = runner.invoke(
            app,
            [
                "fit",
                str(data),
                "--model",
                tiny_model_dir("bert"),
                "--strategy",
                strategy,
                option,
                value,
                "--epochs",
                "2",
                "-o",
                str(out),
            ],
        )
        assert result.exit_code == 0, result.output
        assert json.loads((out / "unfreeze.json").read_text())["strategy"]["params"][field] == value
