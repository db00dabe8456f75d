"""A throwaway JupyterLab server for tests/test_lab.py, isolated from the user's Jupyter setup.

Every Jupyter and IPython folder (config, data, runtime, Lab's settings and workspaces) lives in a
temporary folder, so the test neither reads nor writes the user's settings, trusted-notebook
database or kernel history. The server starts in its own process group; :func:`jupyter_lab` stops
it by that group and then ends, by PID, any kernel it leaves behind (jupyter_client starts each
kernel in a session of its own, which the group signal does not reach).
"""
from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _children(pid: int) -> list[int]:
    """The PIDs of every process below ``pid`` (Linux ``/proc``; empty elsewhere)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        parents.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _kill(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def isolated_env(home: Path, **extra: str) -> dict[str, str]:
    """This process's environment with every Jupyter/IPython folder moved under ``home``."""
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(home / "config"), JUPYTER_DATA_DIR=str(home / "data"),
               JUPYTER_RUNTIME_DIR=str(home / "runtime"), IPYTHONDIR=str(home / "ipython"),
               JUPYTER_PLATFORM_DIRS="1", **extra)
    env.pop("JUPYTER_PATH", None)
    return env


@contextlib.contextmanager
def jupyter_lab(root_dir: Path, home: Path, lab_settings: dict[str, dict], env: dict[str, str],
                timeout: float = 120) -> Iterator[tuple[str, str]]:
    """Run JupyterLab serving ``root_dir`` and yield its base URL and its token.

    ``home`` holds the server's own folders; ``lab_settings`` maps a plugin folder (such as
    ``"@jupyterlab/notebook-extension"``) to ``{file name: settings}`` written to Lab's user
    settings. ``env`` is the server's environment (see :func:`isolated_env`). The app object is
    exposed as ``window.jupyterapp`` so the test can run Lab's commands.
    """
    settings = home / "lab-settings"
    for plugin, files in lab_settings.items():
        (settings / plugin).mkdir(parents=True, exist_ok=True)
        for name, value in files.items():
            (settings / plugin / name).write_text(json.dumps(value))
    token = secrets.token_hex(16)
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={free_port()}",
           f"--ServerApp.root_dir={root_dir}", f"--IdentityProvider.token={token}",
           f"--LabApp.user_settings_dir={settings}", f"--LabApp.workspaces_dir={home / 'workspaces'}",
           "--LabApp.expose_app_in_browser=True", "--LabApp.news_url=",
           "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")          # Lab refuses root otherwise (CI containers run as root)
    log = open(home / "lab.log", "w")       # noqa: SIM115  (closed below, after the server)
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield _wait_for_server(proc, Path(env["JUPYTER_RUNTIME_DIR"]), token, home / "lab.log", timeout)
    finally:
        kernels = _children(proc.pid)
        _kill(-proc.pid, signal.SIGTERM)    # the server's process group; it shuts its kernels down
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            _kill(-proc.pid, signal.SIGKILL)
            proc.wait(10)
        for pid in kernels:                 # whatever outlived the server, by PID
            _kill(pid, signal.SIGKILL)
        log.close()


def _wait_for_server(proc: subprocess.Popen, runtime: Path, token: str, log: Path,
                     timeout: float) -> tuple[str, str]:
    """The URL and token of the server ``proc`` once its API answers; the server writes the port it really
    took (another one if the free port was taken meanwhile) into its runtime file."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"JupyterLab exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        info = runtime / f"jpserver-{proc.pid}.json"
        if info.exists():
            with contextlib.suppress(OSError, ValueError):
                url = json.loads(info.read_text())["url"].rstrip("/")
                urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=5).close()
                return url, token
        time.sleep(0.5)
    raise TimeoutError(f"JupyterLab did not answer within {timeout:.0f} s:\n{log.read_text()[-3000:]}")
