"""Every numeric option of every command, given 0, -1, inf or nan: one line, exit 2, before any model loads.

The commands run through ``unfreeze.cli.main`` (what the console script runs), so a value the
option parser refuses is the same one line as a value a check refuses. The data and bundle
arguments name files that do not exist: a value that is legitimate for its option ends in the
line that says so, a value that is not ends in a line naming the option.
"""

from __future__ import annotations

import pytest

from unfreeze.cli import app, main

VALUES = ("0", "-1", "inf", "nan")

# the arguments each command needs besides the option under test ({tmp}: a fresh folder)
ARGS = {
    "fit": ["missing.csv", "-o", "{tmp}/bundle"],
    "predict": ["{tmp}/no-bundle", "missing.csv", "-o", "{tmp}/out.csv"],
    "evaluate": ["{tmp}/no-bundle", "missing.csv"],
    "probe": ["missing.csv", "--plot", "{tmp}/probe.png"],
    "sweep": ["missing.csv", "-o", "{tmp}/run"],
    "advise": ["missing.csv", "-o", "{tmp}/run"],
    "intrinsic-dim": ["missing.csv", "-o", "{tmp}/run"],
    "study": ["{tmp}/missing.toml", "-o", "{tmp}/run"],
    "export": ["{tmp}/no-bundle"],
    "serve": ["{tmp}/no-bundle"],
    "heads add": ["{tmp}/no-bundle", "head", "missing.csv"],
}

# values that are legitimate for their option (the command then stops at the missing file)
LEGITIMATE = {
    ("--seed", "0"),
    ("--validation-size", "0"),
    ("--tolerance", "0"),
    ("--max-loss", "0"),
    ("--port", "0"),
    ("--weight-decay", "0"),
    ("--warmup-ratio", "0"),
    ("--grad-clip", "0"),
    ("--validation-fraction", "0"),
    ("--max-wait-ms", "0"),
    ("--tag-col", "0"),
    ("--tag-col", "-1"),
}
# ... except where the command refuses it (the advisor decides on validation scores; fit's task, single by
# default, reads no CoNLL tag column)
REFUSED_HERE = {("advise", "--validation-fraction", "0"), ("fit", "--tag-col", "0"), ("fit", "--tag-col", "-1")}


def _numeric_options():
    import typer.main

    root = typer.main.get_command(app)
    for path, args in ARGS.items():
        command = root
        for part in path.split():
            command = command.commands[part]
        for param in command.params:
            if param.param_type_name != "option" or param.hidden or param.is_flag:
                continue
            annotation = param.type_descriptor.annotation
            kinds = set(getattr(annotation, "__args__", ())) | {annotation}
            if kinds & {int, float}:
                yield path, args, param.opts[0]


CASES = [(path, args, flag, value) for path, args, flag in _numeric_options() for value in VALUES]


def test_the_walk_reaches_the_numeric_options_of_every_command():
    flags = {(path, flag) for path, _, flag, _ in CASES}
    assert {
        ("fit", "--batch-size"),
        ("advise", "--eta"),
        ("serve", "--port"),
        ("intrinsic-dim", "--fraction"),
        ("sweep", "--epochs"),
        ("predict", "--batch-size"),
        ("export", "--batch-size"),
    } <= flags
    assert len(flags) > 60


@pytest.fixture
def no_model(monkeypatch):
    """Loading a model fails the test: every answer here comes before one loads."""
    import transformers

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr("unfreeze.models.loaded.shared_backbone", refuse)
    monkeypatch.setattr(transformers.AutoModel, "from_pretrained", refuse)


@pytest.mark.parametrize(("path", "args", "flag", "value"), CASES, ids=[f"{p}{f}={v}" for p, _, f, v in CASES])
def test_a_numeric_option_at_0_minus_1_inf_or_nan_is_one_line_and_exit_2(
    path, args, flag, value, tmp_path, capsys, no_model
):
    argv = [*path.split(), *(a.replace("{tmp}", str(tmp_path)) for a in args), flag, value]
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if not line.startswith("warning:")]
    assert stopped.value.code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    if (flag, value) in LEGITIMATE and (path, flag, value) not in REFUSED_HERE:
        assert flag not in lines[0], err
    else:
        assert flag in lines[0] or flag.lstrip("-").replace("-", "_") in lines[0], err
    assert not any(p.name != "missing.toml" for p in tmp_path.iterdir()), "something was written"
