"""Identifiers the local backend makes, and the patterns that recognise them: an id read from
outside (a request, a directory listing) becomes a path only if it matches."""

from __future__ import annotations

import re
import secrets

CACHE_ID = re.compile(r"imc-[0-9a-f]{20}")
SNAPSHOT_ID = re.compile(r"snap-[0-9a-f]{20}")
GROUP_ID = re.compile(r"eci-[0-9a-f]{20}")


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(10)}"
