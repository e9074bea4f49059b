"""Safety checks around generation, from NVIDIA's guardrail release (nvidia/Cosmos-Guardrail1 with
meta-llama/Llama-Guard-3-8B), run as upstream runs them: keyword blocklist and Llama Guard 3 for prompts,
the video content safety filter (SigLIP + MLP) for videos, and RetinaFace face pixelation of every
written frame.

    guardrail = load_guardrail("pvc://models/checkpoints", extra_blocklist=["..."], device="cuda")
    guardrail.check_text(prompt)      # Verdict; blocklists first, then Llama Guard
    guardrail.check_video(frames)     # Verdict on uint8 (T, H, W, 3)
    guardrail.postprocess(frames)     # faces pixelated

A block is a Verdict; a model that cannot load or run raises GuardrailError (fail closed). Where the
checkpoints are looked for is described in release.py; `v2w_runtime.tiny.guardrail` writes small ones in
exactly the release's layout.
"""

from v2w_runtime.interfaces import GuardrailError, Verdict

from .adapter import DiffusersSafetyChecker
from .blocklist import Blocklist, load_blocklist
from .checker import COMPONENTS, Guardrail, load_guardrail

__all__ = ["COMPONENTS", "Blocklist", "DiffusersSafetyChecker", "Guardrail", "GuardrailError", "Verdict",
           "load_blocklist", "load_guardrail"]
