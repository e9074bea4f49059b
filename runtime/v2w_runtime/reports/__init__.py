"""HTML reports for best-of-N: one page per video and an index, self-contained and escaped."""

from .html import data_uri, rank, render_index, render_report

__all__ = ["data_uri", "rank", "render_index", "render_report"]
