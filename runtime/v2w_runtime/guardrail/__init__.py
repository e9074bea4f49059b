"""Safety checks around generation: keyword blocklist and LLM classifier for prompts, a SigLIP-based
classifier for videos, and face pixelation of every written frame.

    guardrail = load_guardrail("pvc://models/guardrail", extra_blocklist=["..."], device="cuda")
    guardrail.check_text(prompt)      # Verdict; blocklist first, then the LLM guard
    guardrail.check_video(frames)     # Verdict on uint8 (T, H, W, 3)
    guardrail.postprocess(frames)     # faces pixelated

A block is a Verdict; a model that cannot load or run raises GuardrailError (fail closed). The checkpoint
layout is described in checker.py; `v2w_runtime.tiny.guardrail` writes a small random one.
"""

from v2w_runtime.interfaces import GuardrailError, Verdict

from .adapter import DiffusersSafetyChecker
from .blocklist import Blocklist, load_blocklist
from .checker import Guardrail, load_guardrail

__all__ = ["Blocklist", "DiffusersSafetyChecker", "Guardrail", "GuardrailError", "Verdict", "load_blocklist", "load_guardrail"]
