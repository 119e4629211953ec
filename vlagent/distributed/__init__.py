"""Evaluation across machines: episodes as Ray tasks (``vlagent eval --ray ADDRESS``).

Ray is an optional extra (``pip install 'vlagent[ray]'``) and is imported only when a
:class:`RayExecutor` runs, never by ``import vlagent`` or ``vlagent --help``.
"""

from __future__ import annotations

from vlagent.distributed.ray_executor import RayExecutor, device_resource

__all__ = ["RayExecutor", "device_resource"]
