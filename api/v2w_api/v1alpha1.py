"""The kinds of group video2world.io, version v1alpha1 (two jobs and the pool of warm workers that can run them),
and the names the API server knows them by."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field

from .base import API_VERSION, GROUP, VERSION, APIModel
from .pool import Video2WorldPool
from .spec import BestOfNJobSpec, Video2WorldJobSpec
from .status import BestOfNJobStatus, Video2WorldJobStatus


@dataclass(frozen=True)
class KindNames:
    kind: str
    plural: str
    singular: str
    short_names: tuple[str, ...]
    categories: tuple[str, ...] = ("video2world",)

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{GROUP}"


VIDEO2WORLD_JOB = KindNames("Video2WorldJob", "video2worldjobs", "video2worldjob", ("v2wjob", "v2wjobs"))
BEST_OF_N_JOB = KindNames("BestOfNJob", "bestofnjobs", "bestofnjob", ("bonjob", "bonjobs"))
VIDEO2WORLD_POOL = KindNames("Video2WorldPool", "video2worldpools", "video2worldpool", ("v2wpool", "v2wpools"))


class Video2WorldJob(APIModel):
    """Generates one video from an image or video and a prompt, or one video per batch entry."""

    api_version: Literal["video2world.io/v1alpha1"] = Field(API_VERSION, alias="apiVersion")
    kind: Literal["Video2WorldJob"] = "Video2WorldJob"
    metadata: dict[str, Any] = Field(default_factory=dict)
    spec: Video2WorldJobSpec
    status: Video2WorldJobStatus | None = None


class BestOfNJob(APIModel):
    """Generates N videos from one input, scores each with the critic and names the best."""

    api_version: Literal["video2world.io/v1alpha1"] = Field(API_VERSION, alias="apiVersion")
    kind: Literal["BestOfNJob"] = "BestOfNJob"
    metadata: dict[str, Any] = Field(default_factory=dict)
    spec: BestOfNJobSpec
    status: BestOfNJobStatus | None = None


# The job kinds (what the job handlers serve).
KINDS: dict[str, tuple[KindNames, type[APIModel]]] = {
    VIDEO2WORLD_JOB.kind: (VIDEO2WORLD_JOB, Video2WorldJob),
    BEST_OF_N_JOB.kind: (BEST_OF_N_JOB, BestOfNJob),
}
# Every kind of the group: the jobs and the pool.
ALL_KINDS: dict[str, tuple[KindNames, type[APIModel]]] = {
    **KINDS,
    VIDEO2WORLD_POOL.kind: (VIDEO2WORLD_POOL, Video2WorldPool),
}

__all__ = [
    "ALL_KINDS",
    "API_VERSION",
    "BEST_OF_N_JOB",
    "GROUP",
    "KINDS",
    "VERSION",
    "VIDEO2WORLD_JOB",
    "VIDEO2WORLD_POOL",
    "BestOfNJob",
    "KindNames",
    "Video2WorldJob",
    "Video2WorldPool",
]
