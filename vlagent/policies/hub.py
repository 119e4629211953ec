"""Where a model's weights come from, decided in seconds before transformers is asked to load them.

Given a hub id whose weights are not cached, ``from_pretrained`` asks the hub with retries and
backoff: without network it took two and a half minutes to report the weights missing. Here,
before anything is loaded:

- a local directory is used as it is;
- a hub id whose ``config.json`` is in the local cache (``HF_HOME``, ``HF_HUB_CACHE``) is loaded
  from the cache alone when the hub is offline or cannot be reached, and normally otherwise;
- a hub id that is not cached fails at once with :class:`~vlagent.errors.ModelLoadError` when
  the hub is offline (``HF_HUB_OFFLINE``, ``TRANSFORMERS_OFFLINE``), or when the hub
  (``HF_ENDPOINT``) does not answer a single HEAD request within ``PROBE_TIMEOUT_S``; the
  message says how to get the weights.

The settings are huggingface_hub's own (``huggingface_hub.constants``), which are what
``from_pretrained`` uses. This module imports huggingface_hub only when called, and never
torch or transformers.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vlagent.errors import ModelLoadError

__all__ = ["PROBE_TIMEOUT_S", "Weights", "hub_offline", "load_error", "locate_weights", "looks_like_path"]

log = logging.getLogger(__name__)

#: Longest wait for the hub to answer one HEAD request (DNS included) before it counts as unreachable.
PROBE_TIMEOUT_S = 3.0
_TRUE = ("1", "true", "yes", "on")


@dataclass(frozen=True)
class Weights:
    """What to hand ``from_pretrained``: a directory or a hub id, and whether to stay off the network."""

    source: str
    local_files_only: bool
    where: str
    """``directory``, ``cache`` or ``hub`` (to be downloaded)."""


def looks_like_path(model: str) -> bool:
    """Whether ``model`` is meant as a directory rather than a hub id (``org/name``)."""
    return model.startswith(("/", "./", "../", "~")) or model.count("/") > 1 or "\\" in model


def _constants() -> Any:
    try:
        import huggingface_hub.constants as constants
    except ImportError:  # pragma: no cover - transformers depends on it
        return None
    return constants


def hub_offline() -> bool:
    """Whether the hub must not be asked (``HF_HUB_OFFLINE`` or ``TRANSFORMERS_OFFLINE``)."""
    if any(os.environ.get(name, "").lower() in _TRUE for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")):
        return True
    constants = _constants()
    return bool(getattr(constants, "HF_HUB_OFFLINE", False))


def _cache_dir() -> str:
    constants = _constants()
    return str(getattr(constants, "HF_HUB_CACHE", "") or Path("~/.cache/huggingface/hub").expanduser())


def _endpoint() -> str:
    constants = _constants()
    return str(getattr(constants, "ENDPOINT", "") or "https://huggingface.co").rstrip("/")


def _cached(model: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - transformers depends on it
        return False
    try:
        found = try_to_load_from_cache(model, "config.json", cache_dir=_cache_dir())
    except ValueError:  # not a valid repo id ('a b', 'x/y/z')
        return False
    return isinstance(found, str)


def _probe(url: str, timeout_s: float) -> str | None:
    """None when the hub answers ``url`` (any HTTP status), else why it does not.

    Runs in a daemon thread so that a DNS lookup, which no socket timeout covers, cannot hold
    the caller past ``timeout_s``.
    """
    outcome: list[str | None] = []

    def ask() -> None:
        try:
            from huggingface_hub.utils import get_session

            get_session().head(url, timeout=timeout_s)
            outcome.append(None)
        except Exception as exc:  # whatever the HTTP stack raises, the hub did not answer
            outcome.append(f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}")

    thread = threading.Thread(target=ask, name="vlagent-hub-probe", daemon=True)
    thread.start()
    thread.join(timeout_s + 0.5)
    if not outcome:
        return f"no answer within {timeout_s:g} s"
    return outcome[0]


def _how_to_get(model: str) -> str:
    return (
        f"Download them once where there is network with `hf download {model}` (older hubs: "
        f"`huggingface-cli download {model}`) into this machine's cache, or pass a local directory with "
        "--model /path/to/weights."
    )


def locate_weights(model: str, *, probe_timeout_s: float = PROBE_TIMEOUT_S) -> Weights:
    """Where ``model`` (a directory or a hub id) loads from; ModelLoadError within seconds when nowhere."""
    path = Path(model).expanduser()
    if path.is_dir():
        return Weights(str(path), local_files_only=True, where="directory")
    if looks_like_path(model):
        raise ModelLoadError(
            f"cannot load model '{model}': no directory {path}. It must be a directory with config.json, the "
            "weights (*.safetensors) and the processor files (preprocessor_config.json, tokenizer.json, "
            "chat_template)."
        )
    cache = _cache_dir()
    cached = _cached(model)
    if hub_offline():
        if cached:
            return Weights(model, local_files_only=True, where="cache")
        raise ModelLoadError(
            f"cannot load model '{model}': its weights are not in the local cache ({cache}) and the hub is "
            f"offline (HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE is set). {_how_to_get(model)}"
        )
    endpoint = _endpoint()
    problem = _probe(f"{endpoint}/api/models/{model}", probe_timeout_s)
    if problem is None:
        return Weights(model, local_files_only=False, where="cache" if cached else "hub")
    if cached:
        log.warning("the hub at %s cannot be reached (%s); loading %s from the local cache", endpoint, problem, model)
        return Weights(model, local_files_only=True, where="cache")
    raise ModelLoadError(
        f"cannot load model '{model}': its weights are not in the local cache ({cache}) and the hub at "
        f"{endpoint} cannot be reached ({problem}). {_how_to_get(model)} Set HF_HUB_OFFLINE=1 to skip the "
        "hub entirely."
    )


def load_error(model: str, exc: BaseException | None) -> ModelLoadError:
    """The error for weights that were found but did not load (``exc``: why), saying how to get them."""
    reason = f": {exc}" if exc is not None else ""
    if looks_like_path(model) or Path(model).expanduser().exists():
        hint = (
            f"'{model}' must be a directory with config.json, the weights (*.safetensors) and the processor files "
            "(preprocessor_config.json, tokenizer.json, chat_template)."
        )
    else:
        hint = (
            f"download the weights once with `hf download {model}` (older hubs: `huggingface-cli download {model}`), "
            "or pass a local directory with --model /path/to/weights."
        )
        if hub_offline():
            hint += " HF_HUB_OFFLINE is set, so only the local cache is searched."
    return ModelLoadError(f"cannot load model '{model}'{reason.splitlines()[0] if reason else ''}. {hint}")
