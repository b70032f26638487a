"""`galley local status|down|env|up` over a state file that is not what Galley wrote: one line
(or "not running"), never a traceback."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runner.cli.main import main
from runner.local import state

# Each example overwrites the one file the commands read: the shared tmp_path is on purpose.
FUZZ = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

damaged = st.one_of(
    st.binary(max_size=200),
    st.builds(
        lambda doc: json.dumps(doc).encode(),
        st.fixed_dictionaries(
            {"version": st.just(1), "status": st.sampled_from(["running", "stopped", "odd"])},
            optional={
                "port": st.one_of(st.integers(), st.text(max_size=5), st.none()),
                "pid": st.one_of(st.integers(), st.none(), st.floats()),
                # never a real pid: `down` stops the processes a stale state names
                "processes": st.lists(
                    st.dictionaries(st.sampled_from(["kind", "name", "pid"]), st.integers(-9, 0))
                ),
                "resources": st.dictionaries(st.text(max_size=10), st.text(max_size=10)),
            },
        ),
    ),
)

# What each command answers when no `local up` runs: (exit code, where the line goes).
NOT_RUNNING = {"status": 3, "down": 0, "env": 1}


def _run(command: str, state_file: Path) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["local", command, "--state-file", str(state_file)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


@FUZZ
@given(raw=damaged, command=st.sampled_from(sorted(NOT_RUNNING)))
def test_a_damaged_state_file_never_gives_a_traceback(
    tmp_path: Path, raw: bytes, command: str
) -> None:
    # GIVEN a state file no `local up` holds, with anything in it
    state_file = tmp_path / "local.json"
    state_file.write_bytes(raw)
    # WHEN a local command reads it
    code, output = _run(command, state_file)
    # THEN it answers as for no running stack, in lines it wrote (no traceback)
    assert code == NOT_RUNNING[command], output
    assert "Traceback" not in output
    if command == "env":
        assert len(output.strip().splitlines()) == 1, output


@pytest.mark.parametrize("raw", [b"{bad", b"", b"[]", b'{"version": 1}', b"\xff"])
def test_local_up_refuses_a_damaged_state_file_in_one_line(tmp_path: Path, raw: bytes) -> None:
    # GIVEN a state file that is not a state (so the names it kept are unknown)
    state_file = tmp_path / "local.json"
    state_file.write_bytes(raw)
    # WHEN `local up` starts
    result = CliRunner().invoke(main, ["local", "up", "--state-file", str(state_file)])
    # THEN it starts nothing, and says in one line which file and what to do
    assert result.exit_code == 1, result.output
    (line,) = result.output.strip().splitlines()
    assert str(state_file) in line
    assert "is not a local stack's state" in line
    assert not (tmp_path / "moto.log").exists()


def test_a_remembered_port_in_use_says_whose_it_is_and_what_to_do(tmp_path: Path) -> None:
    # GIVEN a stack that ran on a port something else now listens on
    state_file = tmp_path / "local.json"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        last = state.LocalState(status="stopped", port=port, suffix="abcd1234")
        state.save(state_file, last)
        # WHEN it is started again
        result = CliRunner().invoke(main, ["local", "up", "--state-file", str(state_file)])
    # THEN one line says the port is this stack's, and how to go on
    assert result.exit_code == 1, result.output
    (line,) = result.output.strip().splitlines()
    assert f"port {port} on 127.0.0.1, this stack's since its first start" in line
    assert "--port" in line
    # AND the state file still holds the stack's names
    kept = state.read(state_file)
    assert kept is not None and (kept.port, kept.suffix) == (port, "abcd1234")
