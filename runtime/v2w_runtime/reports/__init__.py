"""HTML pages for best-of-N: a report per video and an index, rendered from templates, escaped, no scripts."""

from .html import data_uri, rank, render_index, render_report

__all__ = ["data_uri", "rank", "render_index", "render_report"]
