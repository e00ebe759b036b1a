"""A Jupyter server in a throw-away folder, a second kernel client, and headless Chromium.

Used by the browser tests and by ``bench/labeler_redraw.py``.  The server runs with its own
config / data / runtime dirs, is stopped by its PID, and must take its kernels with it.
Chromium is Debian's (``/usr/bin/chromium``, override with ``TANGO_CHROMIUM``), driven by the
Python ``playwright`` package; ``playwright install`` is never needed.
"""

from __future__ import annotations

import ast
import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("TANGO_BROWSER_ARTIFACTS", REPO / "artifacts" / "browser"))
CHROMIUM = os.environ.get("TANGO_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
                 "--disable-background-networking", "--disable-component-update", "--disable-dev-shm-usage"]

# the kernel is usable (Notebook 7 shows "idle" before a kernel exists; Run All then does nothing)
KERNEL_READY_JS = """() => {
  const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  const sc = w && w.sessionContext, k = sc && sc.session && sc.session.kernel;
  return !!(sc && sc.isReady && k && k.connectionStatus === 'connected' && k.status === 'idle');
}"""
# 'done' once the last cell printed the sentinel; the traceback text if a cell failed
RUN_STATE_JS = """(sentinel) => {
  const outs = Array.from(document.querySelectorAll('.jp-OutputArea-output'));
  for (const o of outs) {
    const t = o.textContent || '';
    if (o.matches('[data-mime-type="application/vnd.jupyter.stderr"]') && /Traceback|Error/.test(t))
      return 'error: ' + t.slice(0, 4000);
  }
  return outs.some(o => (o.textContent || '').includes(sentinel)) ? 'done' : false;
}"""
SENTINEL = "TANGO_ALL_CELLS_DONE"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_notebook(path: Path, cells: list[str]) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in cells] + \
        [nbformat.v4.new_code_cell(f"print({SENTINEL!r})")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(path))
    return path


class JupyterServer:
    """``JupyterServer(workdir, "lab" | "notebook").start()``; notebooks go in ``.root``."""

    def __init__(self, workdir: Path, app: str = "lab") -> None:
        self.app, self.workdir = app, Path(workdir)
        self.root, self.runtime = self.workdir / "root", self.workdir / "runtime"
        self.root.mkdir(parents=True, exist_ok=True)
        self.port, self.token = free_port(), secrets.token_hex(16)
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.log_path = self.workdir / "server.log"
        self.kernel_pids: list[int] = []

    def env(self) -> dict[str, str]:
        d = self.workdir
        settings = d / "settings"
        toast = settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
        toast.parent.mkdir(parents=True, exist_ok=True)
        toast.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))  # no toast over outputs
        env = dict(os.environ)
        env.update(JUPYTER_CONFIG_DIR=str(d / "config"), JUPYTER_DATA_DIR=str(d / "data"),
                   JUPYTER_RUNTIME_DIR=str(self.runtime), JUPYTERLAB_SETTINGS_DIR=str(settings),
                   JUPYTERLAB_WORKSPACES_DIR=str(d / "workspaces"), IPYTHONDIR=str(d / "ipython"),
                   JUPYTER_PLATFORM_DIRS="1", TANGO_STATE_DIR=str(d / "tango-state"),
                   PYTHONPATH=os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
                   OMP_NUM_THREADS="1", MPLBACKEND="Agg")
        # the environment's own kernel (jupyter_client looks in sys.prefix/share/jupyter)
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        return env

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "jupyter", self.app, "--no-browser", f"--port={self.port}",
               "--ServerApp.port_retries=0", "--ServerApp.ip=127.0.0.1", f"--IdentityProvider.token={self.token}",
               f"--ServerApp.root_dir={self.root}"]
        if os.geteuid() == 0:
            cmd.append("--allow-root")
        if self.app == "lab":
            cmd += ["--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
                    "--LabApp.expose_app_in_browser=True"]
        else:
            cmd += ["--JupyterNotebookApp.expose_app_in_browser=True"]
        return cmd

    def start(self, timeout: float = 120) -> JupyterServer:
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.command(), cwd=self.root, env=self.env(), stdin=subprocess.DEVNULL,
                                     stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jupyter {self.app} exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                self.api("/api/status", timeout=2)
                return self
            except (urllib.error.URLError, OSError):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"jupyter {self.app} not up after {timeout} s:\n{self.log_tail()}") from None
                time.sleep(0.2)

    def stop(self) -> list[int]:
        """SIGTERM by PID (the server shuts its kernels down); returns kernel PIDs still alive."""
        import psutil

        if self.proc is None:
            return []
        try:
            children = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            children = []
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        _, alive = psutil.wait_procs(children, timeout=15)
        for p in alive:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        self._log.close()
        return [p.pid for p in alive]

    def api(self, path: str, timeout: float = 10):
        req = urllib.request.Request(self.base + path, headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=timeout) as r:
            raw = r.read()
        return json.loads(raw) if raw else None

    def url(self, path: str) -> str:
        return f"{self.base}{path}?token={self.token}"

    def notebook_url(self, name: str) -> str:
        return self.url(f"/lab/tree/{name}" if self.app == "lab" else f"/notebooks/{name}")

    def kernel_connection_file(self, notebook: str, timeout: float = 60) -> Path:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for s in self.api("/api/sessions") or []:
                if s.get("path") == notebook and s.get("kernel"):
                    path = self.runtime / f"kernel-{s['kernel']['id']}.json"
                    if path.exists():
                        return path
            time.sleep(0.2)
        raise TimeoutError(f"no kernel for {notebook}")

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "<no log>"


class KernelProbe:
    """A second client on the notebook's kernel: evaluates expressions silently (nothing shows in
    the notebook); widget messages they cause still reach the browser."""

    def __init__(self, connection_file: Path, timeout: float = 60) -> None:
        from jupyter_client import BlockingKernelClient

        self.kc = BlockingKernelClient()
        self.kc.load_connection_file(str(connection_file))
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=timeout)

    def eval(self, expr: str, timeout: float = 60):
        msg_id = self.kc.execute("", silent=True, store_history=False,
                                 user_expressions={"r": f"__import__('json').dumps({expr})"})
        deadline = time.monotonic() + timeout
        while True:
            reply = self.kc.get_shell_msg(timeout=max(0.1, deadline - time.monotonic()))
            if reply["parent_header"].get("msg_id") == msg_id:
                break
        r = reply["content"]["user_expressions"]["r"]
        if r["status"] != "ok":
            raise RuntimeError(f"{expr!r} failed in the kernel: {r.get('ename')}: {r.get('evalue')}")
        return json.loads(ast.literal_eval(r["data"]["text/plain"]))

    def close(self) -> None:
        self.kc.stop_channels()


def launch_chromium(playwright):
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS, timeout=60_000)


def open_and_run(page, server: JupyterServer, notebook: str, timeout_ms: int = 240_000) -> None:
    """Open a notebook, wait for a usable kernel, Run All, wait for the sentinel (fail on a traceback)."""
    page.goto(server.notebook_url(notebook))
    page.locator(".jp-NotebookPanel").first.wait_for(timeout=90_000)
    page.wait_for_function(KERNEL_READY_JS, timeout=90_000)
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.locator(".lm-Menu-item[data-command='runmenu:run-all']").click()
    page.wait_for_function("""() => Array.from(document.querySelectorAll('.jp-CodeCell .jp-InputPrompt'))
        .some(p => /\\[(\\*|\\d+)\\]/.test(p.textContent || ''))""", timeout=30_000)
    state = page.wait_for_function(RUN_STATE_JS, arg=SENTINEL, timeout=timeout_ms).json_value()
    assert state == "done", f"the notebook failed:\n{state}"
