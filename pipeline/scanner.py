"""The scanner: which files an input names (globs, excludes, symbolic links).

Like Filebeat's filestream scanner, it only finds paths; what a file *is* (its identity) and what
it holds (its lines) are the identifier's and the reader's business.
"""

from __future__ import annotations

import fnmatch
import glob
import os
import stat
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


@dataclass(frozen=True)
class Candidate:
    """A path the scanner checked: the regular file it found there (``real``, links resolved, and
    its device and inode). The tailer opens ``real`` and reads only if the file it opened is this
    one: a writer of the folder who swaps the file for a link, a FIFO or another file between the
    check and the open gets a refusal, not a read."""

    path: str  # as the glob matched it (what documents name)
    real: str  # every link resolved: what was checked and what is opened
    device: int
    inode: int
    inside: str | None  # the input's folder the file must stay in (None: links are followed)

    @property
    def key(self) -> tuple[int, int]:
        return (self.device, self.inode)


def path_text(path: str) -> str:
    """A path as documents carry it: valid UTF-8 always. A file name is bytes; those that are not
    UTF-8 (Python keeps them as lone surrogates) are written ``\\xNN``, so a hostile file name
    can neither stop the encoder nor reach Elasticsearch as invalid text."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def through_link(pattern: str, path: str) -> bool:
    """True when ``path`` leads out of the input's folder (the pattern's part without wildcards)
    through a symbolic link: the file itself, or a folder a wildcard matched, links elsewhere. A
    link that stays inside the folder (``current.log -> access.log.3``) is fine."""
    return not within(folder_of(pattern), os.path.realpath(path))


def folder_of(pattern: str) -> str:
    """The input's folder: the pattern's part without wildcards, links resolved."""
    fixed = pattern
    while glob.has_magic(fixed):
        fixed = os.path.dirname(fixed)
    if fixed == pattern:
        fixed = os.path.dirname(pattern)
    return os.path.realpath(fixed or ".")


def within(folder: str, real: str) -> bool:
    return real.startswith(folder.rstrip(os.sep) + os.sep)


class Scanner:
    """Expands an input's globs to regular files, sorted, without excluded names or links out,
    each with the identity it was checked under (:class:`Candidate`)."""

    def __init__(self) -> None:
        self._links_seen: set[str] = set()  # warned once each

    def expand(self, spec: InputSpec) -> list[Candidate]:
        found: list[Candidate] = []
        for pattern in spec.paths:
            folder = None if spec.follow_symlinks else folder_of(pattern)
            for path in sorted(glob.glob(pattern)):
                name = os.path.basename(path)
                if any(fnmatch.fnmatch(name, ex) for ex in spec.exclude):
                    continue
                real = os.path.realpath(path)
                if folder is not None and not within(folder, real):
                    if path not in self._links_seen:
                        self._links_seen.add(path)
                        log.warning("symlink_skipped", path=path_text(path), target=path_text(real),
                                    hint="set follow_symlinks: true on the input to read it")
                    continue
                try:
                    st = os.lstat(real)
                except OSError:
                    continue
                if stat.S_ISREG(st.st_mode):  # not a FIFO, a device, a folder (or a link swapped in)
                    found.append(Candidate(path, real, st.st_dev, st.st_ino, folder))
        return found
