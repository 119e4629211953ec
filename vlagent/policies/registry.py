"""Policy registry: ``open_policy("scripted" | "qwen2vl" | "openai" | "tiny", **options)``.

Like drivers, policies are found through an entry-point group (``vlagent.policies``) with
the built-ins listed here. A factory takes keyword options and returns a Policy; heavy
libraries are imported only inside the factory.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

from vlagent.errors import UnknownPolicyError
from vlagent.plugins import discover, load_target
from vlagent.policies.base import Policy

__all__ = ["available_policies", "open_policy"]

BUILTIN_POLICIES: dict[str, str] = {
    "scripted": "vlagent.policies.scripted:create_policy",
    "qwen2vl": "vlagent.policies.qwen2vl:create_policy",
    "openai": "vlagent.policies.openai_compat:create_policy",
    "tiny": "vlagent.policies.tiny:create_policy",
}


def available_policies() -> dict[str, str]:
    """Name -> 'module:factory' for built-in and entry-point policies."""
    return discover("vlagent.policies", BUILTIN_POLICIES)


def open_policy(name: str, **options: object) -> Policy:
    """Create the policy registered as ``name``; unknown names list the known ones."""
    policies = available_policies()
    if name not in policies:
        raise UnknownPolicyError(name, list(policies))
    factory = cast(Callable[..., Policy], load_target(policies[name]))
    return factory(**options)
