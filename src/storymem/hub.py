"""Hub ids, offline first: the local Hugging Face cache, then (only if the hub answers) a download.

huggingface_hub retries an unreachable hub for tens of seconds before it gives up; a user
without network, or with HF_HUB_OFFLINE set, gets one line at once instead.
"""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path
from urllib.parse import urlparse

from .errors import StoryMemError, WeightsNotFoundError

HUB_ID = re.compile(r"[\w.-]+/[\w.-]+")


def is_hub_id(source: str | Path) -> bool:
    """ "org/name" that is not a local path. "models/Wan2.2-I2V" whose folder `models/` exists is a
    local folder that is missing, never a repo to download."""
    text = str(source)
    if not HUB_ID.fullmatch(text) or text.startswith("."):
        return False
    return not Path(text).exists() and not Path(text.split("/")[0]).is_dir()


def offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE) or os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")


def hub_reachable(timeout: float = 3.0) -> bool:
    from huggingface_hub.constants import ENDPOINT

    host = urlparse(ENDPOINT).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def snapshot(
    repo: str,
    what: str,
    hint: str,
    allow_patterns: list[str] | None = None,
    error: type[StoryMemError] = WeightsNotFoundError,
) -> Path:
    """The local folder of hub repo `repo`: from the cache, else downloaded. `what` names the
    weights in the message, `hint` says how to get them by hand."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.constants import HF_HUB_CACHE

    try:
        return Path(snapshot_download(repo, allow_patterns=allow_patterns, local_files_only=True))
    except Exception:
        pass
    why = None
    if offline():
        why = "HF_HUB_OFFLINE is set"
    elif not hub_reachable():
        why = "the hub cannot be reached (no network?)"
    if why:
        raise error(f"{what} not found: {repo} is not in the Hugging Face cache {HF_HUB_CACHE} and {why}; {hint}")
    try:
        return Path(snapshot_download(repo, allow_patterns=allow_patterns))
    except Exception as e:
        raise error(f"{what}: downloading {repo} failed ({type(e).__name__}); {hint}") from None
