"""The command-line frame: help, exit codes, one-line errors, --debug tracebacks."""

from __future__ import annotations

import argparse

import pytest

from nnseg.cli import main as cli
from nnseg.errors import DatasetError, LockError, WriteError


def _parser_with(handler: object) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nnseg")
    parser.add_argument("--debug", action="store_true")
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("boom").set_defaults(handler=handler)
    return parser


def test_help_lists_the_subcommands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for command in ("synth", "verify", "fingerprint", "plan", "preprocess", "demo"):
        assert command in out


def test_no_command_prints_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([]) == 2
    assert "usage: nnseg" in capsys.readouterr().out


def test_user_error_is_one_line_and_exit_2(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    def handler(args: argparse.Namespace) -> int:
        raise DatasetError("case 'x' is broken; expected y")

    monkeypatch.setattr(cli, "build_parser", lambda: _parser_with(handler))
    assert cli.main(["boom"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "nnseg boom: error: DatasetError: case 'x' is broken; expected y"


def test_debug_adds_the_traceback(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    def handler(args: argparse.Namespace) -> int:
        raise DatasetError("broken")

    monkeypatch.setattr(cli, "build_parser", lambda: _parser_with(handler))
    assert cli.main(["--debug", "boom"]) == 2
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err
    assert err.strip().endswith("nnseg boom: error: DatasetError: broken")


def test_handler_exit_code_is_returned(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "build_parser", lambda: _parser_with(lambda args: 1))
    assert cli.main(["boom"]) == 1


def test_bad_usage_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["no-such-command"])
    assert info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_interrupt_exits_1_with_one_line(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    def handler(args: argparse.Namespace) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "build_parser", lambda: _parser_with(handler))
    assert cli.main(["boom"]) == 1
    assert capsys.readouterr().err == "nnseg boom: interrupted\n"


def test_unexpected_errors_are_not_hidden(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug (not a user error) keeps its traceback: it must not be squeezed into the exit-2 line."""

    def handler(args: argparse.Namespace) -> int:
        raise ZeroDivisionError("bug")

    monkeypatch.setattr(cli, "build_parser", lambda: _parser_with(handler))
    with pytest.raises(ZeroDivisionError, match="bug"):
        cli.main(["boom"])


def test_verify_of_a_missing_folder_exits_2(tmp_path: object, capsys: pytest.CaptureFixture[str]) -> None:
    missing = f"{tmp_path}/no_such_dataset"
    assert cli.main(["verify", missing]) == 2
    assert capsys.readouterr().out.splitlines() == [
        f"ERROR: {missing} does not exist; expected an nnU-Net raw dataset folder holding dataset.json, imagesTr/ "
        "and labelsTr/.",
        f"1 error and 0 warnings in 0 checked cases of {missing}.",
    ]


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.startswith("nnseg ")


@pytest.mark.parametrize(
    ("error", "code"),
    [(WriteError("disk full while writing x"), 1), (LockError("held by pid 7"), 1), (DatasetError("bad"), 2)],
)
def test_failed_runs_exit_1_and_bad_input_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], error: Exception, code: int
) -> None:
    def handler(args: argparse.Namespace) -> int:
        raise error

    monkeypatch.setattr(cli, "build_parser", lambda: _parser_with(handler))
    assert cli.main(["boom"]) == code
    assert f"nnseg boom: error: {type(error).__name__}: {error}" in capsys.readouterr().err
