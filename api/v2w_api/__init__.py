"""The API of group video2world.io: spec, status and the runtime manifests, as pydantic models.

Light on purpose: pydantic only, so both images import it and the operator image carries no torch.
"""

from .base import API_VERSION, GROUP, VERSION
from .manifest import ProgressManifest, ResultManifest, Stage, VideoResult
from .spec import DEFAULT_NEGATIVE_PROMPT, BestOfNJobSpec, Video2WorldJobSpec
from .status import BestOfNJobStatus, Condition, ConditionType, Phase, Reason, Video2WorldJobStatus
from .v1alpha1 import (ALL_KINDS, BEST_OF_N_JOB, KINDS, VIDEO2WORLD_JOB, VIDEO2WORLD_POOL, BestOfNJob, KindNames,
                       Video2WorldJob, Video2WorldPool)

__all__ = [
    "ALL_KINDS",
    "API_VERSION",
    "BEST_OF_N_JOB",
    "DEFAULT_NEGATIVE_PROMPT",
    "GROUP",
    "KINDS",
    "VERSION",
    "VIDEO2WORLD_JOB",
    "VIDEO2WORLD_POOL",
    "BestOfNJob",
    "BestOfNJobSpec",
    "BestOfNJobStatus",
    "Condition",
    "ConditionType",
    "KindNames",
    "Phase",
    "ProgressManifest",
    "Reason",
    "ResultManifest",
    "Stage",
    "Video2WorldJob",
    "Video2WorldJobSpec",
    "Video2WorldJobStatus",
    "Video2WorldPool",
    "VideoResult",
]
