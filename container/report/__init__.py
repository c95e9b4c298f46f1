"""The HTML report of an evaluation (``page.render_report``), built from its status document."""

from container.report.page import render_report

__all__ = ["render_report"]
