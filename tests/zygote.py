"""Run `python <script> args…` for the tests without paying Python's imports each time.

Most of a CI-sized `python train.py …` run is importing lightning, transformers and torch (about 12 s of
~30 s on a 2-core box), and the suite runs over a hundred such commands. This zygote imports them once and
forks a child per command: the child is a fresh process in every way that matters to the command (its own
argv, working directory, environment, stdout/stderr, `__main__`, exit code and process group), started from
a parent that has run nothing but imports. So the command runs as written, exit codes and messages included.

The zygote refuses to fork (and the caller falls back to a real subprocess) when forking would not be
faithful: an environment variable that the preloaded libraries read at import time differs from the
zygote's, or the imports started a thread (a fork copies only the calling thread).

Protocol: one JSON request per line on stdin -> one JSON reply per line on stdout. Run as a script.
"""
from __future__ import annotations

import atexit
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

# read once, when the libraries are imported: a request that sets another value needs a fresh interpreter
IMPORT_TIME_ENV = ("OMP_", "MKL_", "KMP_", "HF_", "TRANSFORMERS_", "TORCH", "CUDA", "PYTHON", "TOKENIZERS_",
                   "LD_", "HYDRA_PLUGINS")
PRELOAD = ("torch", "lightning.pytorch", "transformers", "transformers.models.bert.modeling_bert", "hydra",
           "omegaconf", "tokenizers", "safetensors.torch", "matplotlib.pyplot")


def needs_fresh_interpreter(env: dict[str, str], base: dict[str, str]) -> bool:
    keys = {k for k in (*env, *base) if k.startswith(IMPORT_TIME_ENV)}
    return any(env.get(k) != base.get(k) for k in keys)


def _threads() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        import threading
        return threading.active_count()


def _child(req: dict) -> None:
    """In the forked child: become the command, then exit the way the interpreter would."""
    import atexit
    import runpy
    import traceback

    os.setsid()     # its own process group: a timeout kills the command and whatever it started
    os.chdir(req["cwd"])
    os.environ.clear()
    os.environ.update(req["env"])
    for fd, path in ((1, req["out"]), (2, req["err"])):
        f = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(f, fd)
        os.close(f)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    sys.stdin = open(0, closefd=False)
    argv = req["argv"]
    code = 0
    try:
        if argv[0] == "-m":
            sys.argv = [argv[1], *argv[2:]]
            sys.path[0] = req["cwd"]
            runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
        elif argv[0] == "-c":
            sys.argv = ["-c", *argv[2:]]
            sys.path[0] = ""
            exec(compile(argv[1], "<string>", "exec"), {"__name__": "__main__"})
        else:
            script = os.path.abspath(argv[0])
            sys.argv = [argv[0], *argv[1:]]
            sys.path[0] = os.path.dirname(script)
            runpy.run_path(script, run_name="__main__")
    except SystemExit as e:
        if e.code is None:
            code = 0
        elif isinstance(e.code, int):
            code = e.code
        else:
            print(e.code, file=sys.stderr)
            code = 1
    except BaseException:
        traceback.print_exc()
        code = 1
    try:
        atexit._run_exitfuncs()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        os._exit(code)


def _wait(pid: int, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return {"rc": os.waitstatus_to_exitcode(status)}
        if time.monotonic() > deadline:
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            os.waitpid(pid, 0)
            return {"rc": None, "timeout": True}
        time.sleep(0.05)


def serve() -> None:
    import importlib

    base = dict(os.environ)      # what a fresh interpreter starts from; the imports below may add to it
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    # variables the imports set for themselves (torch sets TORCHINDUCTOR_CACHE_DIR): a fresh interpreter would
    # set them too, so they are no reason to refuse, and the child keeps them unless the request says otherwise
    added = {k: v for k, v in os.environ.items() if k not in base}
    sys.stdout.flush()
    reply = os.fdopen(os.dup(1), "w")   # the channel: fd 1 itself goes to stderr, so a stray print cannot corrupt it
    os.dup2(2, 1)
    forkable = _threads() == 1
    print(json.dumps({"ready": True, "forkable": forkable, "threads": _threads()}), file=reply, flush=True)
    for line in sys.stdin:
        req = json.loads(line)
        if not forkable or needs_fresh_interpreter(req["env"], base):
            print(json.dumps({"refused": True}), file=reply, flush=True)
            continue
        req["env"] = {**added, **req["env"]}
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            reply.close()
            _child(req)
        print(json.dumps(_wait(pid, req["timeout"])), file=reply, flush=True)


# ---- the client: what the tests call ----

def _read(path: str) -> str:
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""


class _Client:
    """Starts the zygote on first use, with this process's environment (and one OpenMP thread), and sends it
    the commands; runs a real subprocess when the zygote declines, cannot fork, or BORTLAB_TEST_ZYGOTE=0."""

    def __init__(self):
        self.proc, self.usable = None, os.environ.get("BORTLAB_TEST_ZYGOTE", "1") != "0"

    def _start(self) -> None:
        self.proc = subprocess.Popen([sys.executable, __file__], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        hello = json.loads(self.proc.stdout.readline() or "{}")
        if not hello.get("forkable"):
            self.close()
            self.usable = False

    def run(self, argv, cwd, env, timeout) -> subprocess.CompletedProcess:
        argv, cwd = [str(a) for a in argv], str(cwd or os.getcwd())
        env = {k: str(v) for k, v in env.items()}
        if self.usable and (self.proc is None or self.proc.poll() is not None):
            self._start()
        if self.usable:
            with tempfile.TemporaryDirectory() as d:
                out, err = os.path.join(d, "out"), os.path.join(d, "err")
                self.proc.stdin.write(json.dumps({"argv": argv, "cwd": cwd, "env": env, "timeout": timeout,
                                                  "out": out, "err": err}) + "\n")
                self.proc.stdin.flush()
                reply = json.loads(self.proc.stdout.readline() or '{"refused": true}')
                if reply.get("timeout"):
                    raise subprocess.TimeoutExpired([sys.executable, *argv], timeout, _read(out), _read(err))
                if not reply.get("refused"):
                    return subprocess.CompletedProcess([sys.executable, *argv], reply["rc"], _read(out), _read(err))
        return subprocess.run([sys.executable, *argv], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                              env=env)

    def close(self) -> None:
        if self.proc is not None:
            self.proc.stdin.close()
            self.proc.wait(timeout=30)
            self.proc = None


_CLIENT = _Client()
atexit.register(_CLIENT.close)


def python(*argv, cwd, env=None, timeout=900):
    """`python <argv>` as a fresh process, run as subprocess.run(capture_output=True, text=True) would;
    `env` is the whole environment (os.environ when None)."""
    return _CLIENT.run(argv, cwd, os.environ if env is None else env, timeout)


if __name__ == "__main__":
    serve()
