"""`tunescope serve` on the command line: it prints its address and serves; a bad port, a port in use, a
missing registry or a non-local host without a token are each one line and exit code 2."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from serve_fixtures import http_get
from tunescope.store import registry as run_registry


def serve_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "tunescope.cli", "serve", *args]


@pytest.fixture
def env(tmp_path) -> dict[str, str]:
    registry = tmp_path / "registry.sqlite"
    run_registry.connect(registry).close()
    src = str(Path(__file__).resolve().parents[1] / "src")
    return {**os.environ, "TUNESCOPE_REGISTRY": str(registry),
            "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}


def one_line_exit_2(proc: subprocess.CompletedProcess, *words: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    for word in words:
        assert word in lines[0], lines[0]


@pytest.mark.parametrize("port", ["abc", "70000", "-1"])
def test_a_bad_port_is_one_line(env, tmp_path, port):
    proc = subprocess.run(serve_cmd("--port", port), capture_output=True, text=True, env=env, cwd=tmp_path,
                          timeout=60)
    one_line_exit_2(proc, "--port", "not a port")


def test_a_port_in_use_is_one_line(env, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        proc = subprocess.run(serve_cmd("--port", str(port)), capture_output=True, text=True, env=env,
                              cwd=tmp_path, timeout=60)
    one_line_exit_2(proc, f"port {port}", "already in use")


def test_a_missing_registry_is_one_line(env, tmp_path):
    env = {**env, "TUNESCOPE_REGISTRY": str(tmp_path / "none" / "registry.sqlite")}
    proc = subprocess.run(serve_cmd("--port", "0"), capture_output=True, text=True, env=env, cwd=tmp_path,
                          timeout=60)
    one_line_exit_2(proc, "no run registry", str(tmp_path / "none"))
    assert not (tmp_path / "none").exists()  # nothing created


def test_another_host_without_a_token_is_one_line(env, tmp_path):
    proc = subprocess.run(serve_cmd("--host", "0.0.0.0", "--port", "0"), capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=60)
    one_line_exit_2(proc, "--host", "--token")


def test_a_missing_runs_dir_is_one_line(env, tmp_path):
    proc = subprocess.run(serve_cmd("--port", "0", "--runs-dir", str(tmp_path / "nope")), capture_output=True,
                          text=True, env=env, cwd=tmp_path, timeout=60)
    one_line_exit_2(proc, "--runs-dir", "not a folder")


def test_serve_prints_its_address_and_serves(env, tmp_path):
    proc = subprocess.Popen(serve_cmd("--port", "0"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, cwd=tmp_path)
    try:
        line = proc.stdout.readline()
        assert line.startswith("tunescope serve: http://127.0.0.1:"), line + proc.stderr.read()
        address = line.split()[2]
        status, headers, body = http_get(address.rstrip("/"), "/")
        assert status == 200 and "0 of 0 run(s)" in body and "server" not in headers
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_without_the_serve_extra_it_is_one_line(env, tmp_path):
    code = ("import sys; sys.modules['starlette'] = None; sys.modules['uvicorn'] = None; "
            "sys.argv = ['tunescope', 'serve']; from tunescope.cli import main; main()")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path,
                          timeout=60)
    one_line_exit_2(proc, "serve extra", "pip install 'tunescope[serve]'")
