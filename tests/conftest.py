"""Shared fixtures: trials written with smdebug's own writer (the independent reference)."""

from __future__ import annotations

import os

os.environ.setdefault("SMDEBUG_LOG_LEVEL", "warning")
