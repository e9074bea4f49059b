"""Run under torchrun with 2 ranks (gloo): rank 1 is another data-parallel group making 2 videos slowly;
rank 0, its own videos made, follows them into progress.json. Writes what rank 0 reported to argv[1]."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from v2w_runtime.manifests import ProgressReporter
from v2w_runtime.outputs import OutputTarget
from v2w_runtime.parallel import init_parallel
from v2w_runtime.video2world import VIDEOS_MADE, follow_other_groups


def main(out: Path) -> None:
    ctx = init_parallel(2, num_heads=2, guidance=False, num_videos=3, context_parallel_size=1, cfg_parallel=False,
                        device="cpu")
    assert ctx.layout.num_groups == 2, ctx.layout
    reporter = ProgressReporter(OutputTarget(out.parent / f"rank{ctx.layout.rank}"), videos_total=3, total_steps=2,
                                enabled=ctx.layout.is_global_leader)
    ctx.barrier()
    if ctx.layout.rank == 1:
        for _ in range(2):
            time.sleep(1.5)
            ctx.add(VIDEOS_MADE)
    else:
        made = ctx.add(VIDEOS_MADE)  # rank 0's one video
        reporter.video_done(made)
        seen = []
        write = reporter.write

        def record() -> None:
            seen.append(reporter.state.videos_done)
            write()

        reporter.write = record
        follow_other_groups(ctx, reporter, already=0, remaining=3, every_s=0.2)
        out.write_text(json.dumps({"seen": seen, "final": ctx.add(VIDEOS_MADE, 0)}))
    ctx.barrier()
    ctx.close()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
