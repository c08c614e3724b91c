"""Start a real, throwaway Label Studio server for the tests (loopback only)."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
USER, PASSWORD = "hmtools-test@example.com", "hmtools-test-password"


def label_studio_bin() -> Path | None:
    p = os.environ.get("HMTOOLS_LS_BIN") or str(REPO / ".venv-ls" / "bin" / "label-studio")
    return Path(p) if Path(p).exists() else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_env(data: Path, docroot: Path, token: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABEL_STUDIO_")}
    env.update(
        {
            "LABEL_STUDIO_USERNAME": USER,
            "LABEL_STUDIO_PASSWORD": PASSWORD,
            "LABEL_STUDIO_USER_TOKEN": token,
            "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
            "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED": "true",
            "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(docroot),
            "LABEL_STUDIO_COLLECT_ANALYTICS": "false",
            "LABEL_STUDIO_LATEST_VERSION_CHECK": "false",
            "SENTRY_DSN": "",
            "FRONTEND_SENTRY_DSN": "",
            "LABEL_STUDIO_BASE_DATA_DIR": str(data),
        }
    )
    return env


class Server:
    def __init__(self, exe: Path, workdir: Path, docroot: Path):
        self.token = secrets.token_hex(20)
        self.data = workdir / "ls-data"
        self.docroot = docroot
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = server_env(self.data, docroot, self.token)
        self.log = open(workdir / "label-studio.log", "w")  # noqa: SIM115 (lives with the server)
        # the same data dir and user for both steps: init once, then start
        common = [
            "--no-browser",
            "--data-dir",
            str(self.data),
            "--username",
            USER,
            "--password",
            PASSWORD,
            "--user-token",
            self.token,
        ]
        subprocess.run(
            [str(exe), "init", *common],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            check=True,
            timeout=600,
        )
        self.proc = subprocess.Popen(
            [str(exe), "start", *common, "--internal-host", "127.0.0.1", "--port", str(self.port)],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.time() + 300
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"label-studio exited; see {workdir / 'label-studio.log'}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(1)
        raise RuntimeError("label-studio did not come up in 300 s")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()
        shutil.rmtree(self.data, ignore_errors=True)
