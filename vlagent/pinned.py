"""The configuration that decides an evaluation's numbers, written next to them.

Published numbers of phone agents are hard to reproduce because some detail that decides
them went unrecorded: the prompt, the coordinate convention, the resize, the matching rule.
:func:`pinned_config` gathers every such detail of an evaluation into one JSON-able mapping,
written as ``config`` in results.json; ``vlagent eval --config-from results.json`` runs the
same configuration again (:func:`eval_options_from`).

- the policy and its options (credentials removed), and the policy's full settings where it
  keeps them in a dataclass (pixels, grammar on/off, sampling, token limits...);
- the model family, its coordinate convention and the SHA-256 of its system prompt for a
  phone (a changed prompt changes the hash);
- the model's revision: the hub commit of a cached hub id, or, for a local folder, the
  SHA-256 of its config and weight files (read once; a 2B model's 4.4 GB take seconds);
- the scoring conventions, the layout seed, repeats, device override, and the versions of
  vlagent, Python, torch and transformers.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import json
import logging
import platform
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vlagent.errors import ConfigError
from vlagent.policies.base import Policy
from vlagent.scoring import CONVENTIONS
from vlagent.secrets import scrub

if TYPE_CHECKING:
    from vlagent.evaluate import EvalConfig

__all__ = ["eval_options_from", "model_revision", "pinned_config"]

log = logging.getLogger(__name__)

_SECRET_KEYS = ("api_key", "token", "password", "secret")
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".json", ".model", ".txt", ".jinja")


def _jsonable(value: object) -> object:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return scrub(value) if isinstance(value, str) else value
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items() if not _is_secret_key(str(k))}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return scrub(str(value))


def _is_secret_key(key: str) -> bool:
    return any(word in key.lower() for word in _SECRET_KEYS)


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def model_revision(model: str) -> dict[str, object]:
    """What identifies ``model``'s weights: a local folder's file hashes, or a cached hub id's commit."""
    path = Path(model)
    if path.is_dir():
        files: dict[str, str] = {}
        for file in sorted(p for p in path.iterdir() if p.is_file() and p.name.endswith(_WEIGHT_SUFFIXES)):
            digest = hashlib.sha256()
            with file.open("rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 22), b""):
                    digest.update(chunk)
            files[file.name] = digest.hexdigest()
        return {"source": "local folder", "sha256": files}
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return {"source": "hub", "revision": None}
    found = try_to_load_from_cache(model, "config.json")
    if isinstance(found, str) and "/snapshots/" in found:
        return {"source": "hub", "revision": found.split("/snapshots/", 1)[1].split("/", 1)[0]}
    return {"source": "hub", "revision": None}


def _prompt_pin(policy: object, settings: Mapping[str, object]) -> dict[str, object]:
    from vlagent.capabilities import PHONE_CAPABILITIES
    from vlagent.policies.families import ModelFamily
    from vlagent.policies.prompt import system_prompt

    family = getattr(policy, "family", None)
    if not isinstance(family, ModelFamily):
        return {}
    with_thought = bool(settings.get("with_thought", True))
    text = system_prompt("{task}", PHONE_CAPABILITIES, family, (1092, 2408), with_thought=with_thought)
    return {
        "family": family.name,
        "coords": family.coords,
        "prompt_sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
        "prompt_probe": "phone capabilities, a 1092x2408 image, task '{task}'",
    }


def pinned_config(config: EvalConfig, policy: Policy | None) -> dict[str, object]:
    """Everything of ``config`` and the loaded ``policy`` that decides the numbers, JSON-able."""
    inner: object = getattr(policy, "inner", policy)
    settings_obj = getattr(inner, "config", None)
    settings: dict[str, object] = {}
    if dataclasses.is_dataclass(settings_obj) and not isinstance(settings_obj, type):
        settings = {f.name: getattr(settings_obj, f.name) for f in dataclasses.fields(settings_obj)}
    pin: dict[str, object] = {
        "vlagent": _version("vlagent"),
        "python": platform.python_version(),
        "torch": _version("torch"),
        "transformers": _version("transformers"),
        "policy": config.policy if config.policy_factory is None else "custom",
        "policy_options": _jsonable(config.policy_options),
        "policy_settings": _jsonable(settings),
        "layout_seed": config.layout_seed,
        "sampling_seed": config.sampling_seed,
        "repeats": config.repeats,
        "device": config.device,
        "devices": list(config.devices),
        "scoring": list(CONVENTIONS),
    }
    if inner is not None:
        pin.update(_prompt_pin(inner, settings))
        model = settings.get("model") or config.policy_options.get("model")
        if isinstance(model, str) and config.policy != "openai":
            pin["model"] = scrub(model)
            pin["model_revision"] = model_revision(model)
    return pin


def eval_options_from(path: Path | str) -> dict[str, Any]:
    """The ``config`` of an earlier results.json as evaluation options (policy, options, seed, repeats, device)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        pin = data["config"]
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"--config-from {path}: cannot read it as results.json ({exc})") from exc
    except (KeyError, TypeError) as exc:
        raise ConfigError(f"--config-from {path}: it holds no pinned configuration (written before 'config')") from exc
    if not isinstance(pin, dict) or not isinstance(pin.get("policy_options", {}), dict):
        raise ConfigError(f"--config-from {path}: 'config' is not a mapping")
    if pin.get("policy") == "custom":
        raise ConfigError(f"--config-from {path}: that evaluation used a policy built in Python, not by name")
    return {
        "policy": pin.get("policy", "scripted"),
        "policy_options": dict(pin.get("policy_options") or {}),
        "layout_seed": pin.get("layout_seed"),
        "sampling_seed": int(pin.get("sampling_seed") or 0),
        "repeats": int(pin.get("repeats") or 1),
        "device": pin.get("device"),
        "devices": [str(d) for d in pin.get("devices") or ([pin["device"]] if pin.get("device") else [])],
        "revision": pin.get("model_revision"),
    }
