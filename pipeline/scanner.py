"""The scanner: which files an input names (globs, excludes, symbolic links).

Like Filebeat's filestream scanner, it only finds paths; what a file *is* (its identity) and what
it holds (its lines) are the identifier's and the reader's business.
"""

from __future__ import annotations

import fnmatch
import glob
import os
from dataclasses import dataclass

import structlog

log = structlog.get_logger(__name__)

DEFAULT_EXCLUDE = ("*.gz", "*.bz2", "*.xz", "*.zst", "*.zip")


@dataclass(frozen=True)
class InputSpec:
    index: int
    paths: tuple[str, ...]
    exclude: tuple[str, ...] = DEFAULT_EXCLUDE
    start_at: str = "beginning"
    follow_symlinks: bool = False


def path_text(path: str) -> str:
    """A path as documents carry it: valid UTF-8 always. A file name is bytes; those that are not
    UTF-8 (Python keeps them as lone surrogates) are written ``\\xNN``, so a hostile file name
    can neither stop the encoder nor reach Elasticsearch as invalid text."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def through_link(pattern: str, path: str) -> bool:
    """True when ``path`` leads out of the input's folder (the pattern's part without wildcards)
    through a symbolic link: the file itself, or a folder a wildcard matched, links elsewhere. A
    link that stays inside the folder (``current.log -> access.log.3``) is fine."""
    fixed = pattern
    while glob.has_magic(fixed):
        fixed = os.path.dirname(fixed)
    if fixed == pattern:
        fixed = os.path.dirname(pattern)
    base = os.path.realpath(fixed or ".")
    return not os.path.realpath(path).startswith(base.rstrip(os.sep) + os.sep)


class Scanner:
    """Expands an input's globs to regular files, sorted, without excluded names or links out."""

    def __init__(self) -> None:
        self._links_seen: set[str] = set()  # warned once each

    def expand(self, spec: InputSpec) -> list[str]:
        paths: list[str] = []
        for pattern in spec.paths:
            for path in sorted(glob.glob(pattern)):
                name = os.path.basename(path)
                if any(fnmatch.fnmatch(name, ex) for ex in spec.exclude):
                    continue
                if not spec.follow_symlinks and through_link(pattern, path):
                    if path not in self._links_seen:
                        self._links_seen.add(path)
                        log.warning("symlink_skipped", path=path, target=os.path.realpath(path),
                                    hint="set follow_symlinks: true on the input to read it")
                    continue
                if os.path.isfile(path):
                    paths.append(path)
        return paths
