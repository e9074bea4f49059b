"""Safety checks around generation: prompt blocklist and LLM classifier, video classifier, face pixelation."""
