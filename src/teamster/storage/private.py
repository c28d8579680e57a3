"""The data directory and the files teamster keeps in it are its owner's alone: 0700 and 0600.

They hold what workers stored (state, streams, queue messages, runs) and provider credentials.
Modes are set with chmod after creating, so the process umask cannot loosen (or oddly narrow)
them. teamster tightens its own files even when they exist already (an older teamster made the
database 0644), but leaves an existing directory's mode alone and warns: it may be shared on
purpose, and the files in it are private either way.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from pathlib import Path

log = logging.getLogger("teamster.storage")

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: Path) -> None:
    """Create `path` 0700 (missing parents with the usual modes) unless it exists; warn if it exists
    and others may enter it."""
    try:
        path.mkdir(mode=DIR_MODE, parents=True)
    except FileExistsError:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            log.warning("data directory %s is open to others (mode %o); chmod 700 it to keep them out", path, mode)
        return
    os.chmod(path, DIR_MODE)


def private_file(path: Path) -> None:
    """Create `path` empty and 0600 if missing; make it 0600 if it exists."""
    fd = os.open(path, os.O_RDONLY | os.O_CREAT, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)


def tighten(path: Path) -> None:
    """Make `path` 0600 if it exists."""
    with contextlib.suppress(FileNotFoundError):
        os.chmod(path, FILE_MODE)
