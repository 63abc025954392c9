"""The ``rolevec`` entry point: help, unknown commands, errors and closed pipes."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from rolevec_lmeval.cli import COMMANDS, main


def test_no_command_prints_help_and_returns_2(capsys):
    assert main([]) == 2
    out = capsys.readouterr().out
    assert all(name in out for name in COMMANDS)


def test_rolevec_error_is_one_line_on_stderr(capsys):
    assert main(["extract", "--roles", "alchemist", "--out", "unused"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rolevec extract: error: --roles alchemist is not valid") and "chemist" in err


def test_closed_stdout_pipe_exits_quietly():
    """``rolevec tasks | head`` must not end with a BrokenPipeError traceback."""
    read, write = os.pipe()
    os.close(read)  # the reader is gone before anything is written
    try:
        proc = subprocess.run([sys.executable, "-m", "rolevec_lmeval.cli", "tasks"], stdout=write,
                              stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write)
    assert "Traceback" not in proc.stderr and "BrokenPipeError" not in proc.stderr, proc.stderr
    assert proc.returncode == 141


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0 and f"rolevec {command}" in capsys.readouterr().out
