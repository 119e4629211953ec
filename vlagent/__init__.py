"""vlagent: let a vision-language model drive real screens.

The public API is re-exported here; heavy libraries (torch, transformers, adbutils,
pyautogui, mss) are imported only when a component that needs them is used.
"""

from vlagent.actions import (
    Action,
    Click,
    Done,
    Key,
    LongPress,
    OpenApp,
    Scroll,
    Step,
    Swipe,
    Type,
    Wait,
    describe_action,
)
from vlagent.agent import EndReason, Episode, StepRecord, Verdict, run_episode
from vlagent.coords import codec_by_name, smart_resize, visual_tokens
from vlagent.drivers import (
    BaseDriver,
    Capabilities,
    Driver,
    available_drivers,
    check_driver,
    open_driver,
)
from vlagent.errors import (
    DeviceError,
    InvalidModelOutput,
    ModelError,
    UserError,
    VlagentError,
)
from vlagent.frames import Frame
from vlagent.memory import MemoryConfig, TrajectoryMemory
from vlagent.parsing import parse_step
from vlagent.policies import Decision, HistoryEntry, Observation, Policy, ScriptedPolicy
from vlagent.policies.registry import available_policies, open_policy
from vlagent.recorder import Recorder, load_trajectory
from vlagent.schema import describe_actions, step_schema

__version__ = "0.1.0"

__all__ = [
    "Action",
    "BaseDriver",
    "Capabilities",
    "Click",
    "Decision",
    "DeviceError",
    "Done",
    "Driver",
    "EndReason",
    "Episode",
    "Frame",
    "HistoryEntry",
    "InvalidModelOutput",
    "Key",
    "LongPress",
    "MemoryConfig",
    "ModelError",
    "Observation",
    "OpenApp",
    "Policy",
    "Recorder",
    "ScriptedPolicy",
    "Scroll",
    "Step",
    "StepRecord",
    "Swipe",
    "TrajectoryMemory",
    "Type",
    "UserError",
    "Verdict",
    "VlagentError",
    "Wait",
    "__version__",
    "available_drivers",
    "available_policies",
    "check_driver",
    "codec_by_name",
    "describe_action",
    "describe_actions",
    "load_trajectory",
    "open_driver",
    "open_policy",
    "parse_step",
    "run_episode",
    "smart_resize",
    "step_schema",
    "visual_tokens",
]
