"""One exception tree for vlagent, grouped by who must act.

- ``UserError``: the person running vlagent must fix something (configuration, a missing
  extra, an unknown driver name). The CLI prints these without a traceback, exit code 2.
- ``DeviceError``: the device misbehaved (lost, timed out, refused an action). The loop
  retries these and then ends the episode with reason ``error``.
- ``ModelError``: the model produced something unusable. ``InvalidModelOutput`` carries a
  message written for the model; the loop feeds it back and asks again.
- Everything else is a bug and should surface as-is.

Third-party exceptions are translated at the boundary with the cause chained.
"""

from __future__ import annotations

__all__ = [
    "ActionNotSupportedError",
    "ActionRefusedError",
    "ConfigError",
    "DeviceError",
    "DeviceLockedError",
    "DeviceNotFoundError",
    "DeviceTimeoutError",
    "DriverConformanceError",
    "InvalidModelOutput",
    "MissingExtraError",
    "ModelError",
    "ModelLoadError",
    "OutputError",
    "PolicyBackendError",
    "PolicyConformanceError",
    "PoolEmptyError",
    "UnknownDriverError",
    "UnknownNameError",
    "UnknownPolicyError",
    "UserError",
    "VlagentError",
]


class VlagentError(Exception):
    """Base of every error raised on purpose by vlagent."""


# --- the user must act --------------------------------------------------------------


class UserError(VlagentError):
    """Something the user must fix; shown without a traceback."""


class ConfigError(UserError):
    """Invalid configuration: a flag, environment variable or config file value."""


class OutputError(UserError):
    """A run or its results cannot be written where asked (taken, not writable, not a directory)."""


class MissingExtraError(UserError):
    """An optional dependency group is not installed."""

    def __init__(self, extra: str, module: str, purpose: str) -> None:
        self.extra = extra
        self.module = module
        super().__init__(
            f"{purpose} needs the '{module}' package, which is not installed. "
            f"Install it with: pip install 'vlagent[{extra}]'"
        )


class UnknownNameError(ConfigError):
    """A registry was given a name nothing is registered under; the message lists the known ones."""

    kind, plural = "plugin", "plugins"
    example = ""

    def __init__(self, name: str, known: list[str]) -> None:
        self.name = name
        self.known = known
        example = f" ({self.example})" if self.example else ""
        super().__init__(f"unknown {self.kind} '{name}'. Known {self.plural}: {', '.join(sorted(known))}{example}.")


class UnknownDriverError(UnknownNameError):
    """``open_driver`` was given a name that no driver is registered under."""

    kind, plural = "device", "devices"
    example = "e.g. 'sim', 'desktop', 'adb:SERIAL', 'replay:PATH'"


class UnknownPolicyError(UnknownNameError):
    """``open_policy`` was given a name that no policy is registered under."""

    kind, plural = "policy", "policies"


class ModelLoadError(UserError):
    """Model weights could not be found or loaded."""


# --- the device must act (retried, then reported) -----------------------------------


class DeviceError(VlagentError):
    """The device failed, disconnected or refused an operation."""


class DeviceLockedError(DeviceError):
    """The phone is locked with a PIN, pattern or password; a person must unlock it (never retried)."""


class DeviceNotFoundError(DeviceError):
    """No device matches the requested name or serial."""


class DeviceTimeoutError(DeviceError):
    """A device call did not finish in time."""


class PoolEmptyError(DeviceError):
    """Every device of a device pool has dropped off: no scenario can take one."""


class ActionNotSupportedError(DeviceError):
    """The driver cannot perform this action (see its capabilities)."""


class ActionRefusedError(ActionNotSupportedError):
    """A safety rule of the driver (allowed screen regions, allowed windows) forbids this action.

    Like every ActionNotSupportedError it is not retried: repeating it would be refused again.
    """


class DriverConformanceError(VlagentError):
    """``check_driver`` found problems; ``problems`` lists each one."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("driver does not conform:\n- " + "\n- ".join(problems))


class PolicyConformanceError(VlagentError):
    """``check_policy`` found problems; ``problems`` lists each one."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("policy does not conform:\n- " + "\n- ".join(problems))


# --- the model must act (fed back and retried) --------------------------------------


class ModelError(VlagentError):
    """The model or its backend failed."""


class InvalidModelOutput(ModelError):
    """The model's text is not a valid step. ``feedback`` is written for the model."""

    def __init__(self, feedback: str, raw: str = "") -> None:
        self.feedback = feedback
        self.raw = raw
        super().__init__(feedback)


class PolicyBackendError(ModelError):
    """The model backend (a server, a library) failed in a way that is not the output."""
