"""Opening the qwen2vl policy for weights that are neither here nor reachable fails in seconds, saying how to get them.

transformers alone, asked for a hub id that is not cached, retries the hub for minutes. With an
empty cache (``HF_HOME`` in a temporary directory) and (a) the hub offline (``HF_HUB_OFFLINE=1``),
(b) ``HF_ENDPOINT`` on a closed local port, (c) ``HF_ENDPOINT`` on a port that accepts connections
and never answers, the policy raises ModelLoadError within 5 s. A hub id whose config is cached
loads from the cache alone when the hub cannot be reached. The tests set huggingface_hub's
constants as well as the environment (the constants are read when huggingface_hub is imported),
so they pass with and without CI's ``HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1``.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from vlagent.errors import ModelLoadError
from vlagent.policies.hub import locate_weights

pytest.importorskip("transformers", reason="needs the qwen extra (transformers)")
constants = pytest.importorskip("huggingface_hub.constants", reason="needs the qwen extra (huggingface_hub)")

from vlagent.policies.qwen2vl import QwenPolicyConfig, create_policy  # noqa: E402

MODEL = "Qwen/Qwen2-VL-2B-Instruct"
LIMIT_S = 5.0


@pytest.fixture
def empty_hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """HF_HOME in an empty directory, for the environment and for huggingface_hub's constants."""
    home = tmp_path / "hf-home"
    cache = home / "hub"
    cache.mkdir(parents=True)
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HOME", str(home))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return cache


def _online(monkeypatch: pytest.MonkeyPatch, endpoint: str) -> None:
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    monkeypatch.setattr(constants, "ENDPOINT", endpoint)


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as sock:  # bound, then closed: nothing listens there
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections (the kernel's backlog) and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield int(sock.getsockname()[1])


def _open_fails(expected: str) -> ModelLoadError:
    started = time.monotonic()
    with pytest.raises(ModelLoadError) as info:
        create_policy(model=MODEL, model_device="cpu")
    elapsed = time.monotonic() - started
    assert elapsed < LIMIT_S, f"took {elapsed:.1f} s to report missing weights"
    message = str(info.value)
    assert expected in message and "not in the local cache" in message, message
    assert f"hf download {MODEL}" in message and "--model /path/to/weights" in message, message
    assert "\n" not in message
    return info.value


def test_offline_and_not_cached_fails_at_once(empty_hub_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    error = _open_fails("HF_HUB_OFFLINE")
    assert str(empty_hub_cache) in str(error)


def test_an_unreachable_hub_fails_fast(
    empty_hub_cache: Path, monkeypatch: pytest.MonkeyPatch, closed_port: int
) -> None:
    _online(monkeypatch, f"http://127.0.0.1:{closed_port}")
    _open_fails(f"the hub at http://127.0.0.1:{closed_port} cannot be reached")


def test_a_hub_that_never_answers_fails_within_the_probe_timeout(
    empty_hub_cache: Path, monkeypatch: pytest.MonkeyPatch, silent_port: int
) -> None:
    _online(monkeypatch, f"http://127.0.0.1:{silent_port}")
    _open_fails("cannot be reached")


def test_cached_weights_are_loaded_from_the_cache_when_the_hub_is_unreachable(
    empty_hub_cache: Path, monkeypatch: pytest.MonkeyPatch, closed_port: int
) -> None:
    snapshot = empty_hub_cache / "models--Qwen--Qwen2-VL-2B-Instruct" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text('{"model_type": "qwen2_vl"}', encoding="utf-8")
    refs = snapshot.parent.parent / "refs"
    refs.mkdir()
    (refs / "main").write_text("abc123", encoding="utf-8")
    _online(monkeypatch, f"http://127.0.0.1:{closed_port}")
    weights = locate_weights(MODEL)
    assert (weights.where, weights.local_files_only) == ("cache", True)
    started = time.monotonic()
    with pytest.raises(ModelLoadError) as info:  # only a config is cached: transformers says what is missing
        create_policy(model=MODEL, model_device="cpu")
    assert time.monotonic() - started < 30
    assert MODEL in str(info.value)


def test_a_missing_directory_is_named() -> None:
    started = time.monotonic()
    with pytest.raises(ModelLoadError, match="no directory"):
        create_policy(model="./no/such/weights", model_device="cpu")
    assert time.monotonic() - started < LIMIT_S


def test_a_local_directory_is_used_as_it_is(tmp_path: Path) -> None:
    weights = locate_weights(str(tmp_path))
    assert (weights.source, weights.local_files_only, weights.where) == (str(tmp_path), True, "directory")
    assert QwenPolicyConfig(model=str(tmp_path)).model == str(tmp_path)
