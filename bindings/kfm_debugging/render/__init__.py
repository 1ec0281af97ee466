"""Rendering: result types (model/) to text or bytes, with no engine access.

- ``text``: the show_* reports (one function per report).
- ``json``: the timing export and any result as JSON.

Markdown, HTML and PNG renderers (generate_performance_summary,
generate_performance_report, visualize_*) belong here too; heavy libraries
(matplotlib) are imported inside them, never at package import.
"""

from . import json, text

__all__ = ["json", "text"]
