"""The value labels in ``--help``: ``TEXT``, ``PATH``, ``INTEGER`` or the option's own metavar
(``LEVEL``, ``RULE``), never Python's type names.

Typer 0.29 labels every value by its annotation (``<str>``, ``<path>``, ``<list[Path]>``, even
``<bool>`` beside a flag that takes no value), and labels arguments that way whatever their
metavar (typer issue #1410). A user reads click's labels, so the two typer methods that build the
label (``display_type_rich``, which both the rich and the plain help call) and an argument's usage
piece are replaced here, once, by :func:`use_readable_labels`. Nothing else of typer changes.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from pathlib import PurePath
from typing import Any, get_args

from typer import _click
from typer.core import TyperArgument, TyperOption
from typer.models import FileBinaryRead, FileBinaryWrite, FileText, FileTextWrite

_SCALARS: dict[Any, str] = {str: "TEXT", int: "INTEGER", float: "FLOAT", bool: "BOOLEAN", uuid.UUID: "UUID",
                            datetime: "DATETIME"}
_FILES = (FileText, FileTextWrite, FileBinaryRead, FileBinaryWrite)
_PATHS = {"file": "FILE", "dir": "DIRECTORY"}
_DATETIME_FORMATS = ("%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S")


def _scalar(annotation: Any) -> str:
    if isinstance(annotation, type) and issubclass(annotation, _FILES):
        return "FILENAME"
    if isinstance(annotation, type) and issubclass(annotation, PurePath):
        return "PATH"
    if annotation in _SCALARS:
        return _SCALARS[annotation]
    return getattr(annotation, "__name__", "VALUE").upper()


def type_label(param: TyperArgument | TyperOption, ctx: _click.Context) -> str:
    """What a value of ``param`` is, as click names it: ``TEXT``, ``[a|b]`` for a choice."""
    desc = param.type_descriptor
    if desc.is_choice:  # typer's own list of the choices, "<a|b>" or "<list[a|b]>"
        choices = param.display_type(ctx)[1:-1]
        return f"[{choices.removeprefix('list[').removesuffix(']') if desc.is_list else choices}]"
    if desc.is_datetime:
        return f"[{'|'.join(desc.parameter_info.formats or _DATETIME_FORMATS)}]"
    if desc.is_file:
        return "FILENAME"
    if desc.is_path:
        return _PATHS.get(desc.path_type, "PATH")
    if desc.is_tuple:
        return " ".join(_scalar(arg) for arg in get_args(desc.annotation))
    annotation = get_args(desc.annotation)[0] if desc.is_list else desc.annotation
    label = _scalar(annotation)
    return f"{label} RANGE" if desc.is_ranged else label


def _option_label(self: TyperOption, ctx: _click.Context) -> str | None:
    """A flag takes no value: no label (typer shows ``<bool>``); an explicit metavar wins."""
    if self.is_flag or self.count:
        return None
    label = self.metavar if self.metavar is not None else type_label(self, ctx)
    return f"{label}..." if self.nargs != 1 and self.metavar is None else label


def _argument_label(self: TyperArgument, ctx: _click.Context) -> str | None:
    return type_label(self, ctx)


def _argument_usage(self: TyperArgument, ctx: _click.Context) -> list[str]:
    """``RULE_NAME``, ``[FOLDER]``, ``FILES...`` as click writes them (typer: ``{rule_name}``)."""
    name = self.metavar or (self.name or "").upper()
    if not self.required:
        name = f"[{name}]"
    return [f"{name}..." if self.nargs != 1 else name]


_REPLACED = ((TyperOption, "display_type_rich", _option_label), (TyperArgument, "display_type_rich", _argument_label),
             (TyperArgument, "get_usage_pieces", _argument_usage))


def use_readable_labels() -> None:
    """Install the labels; idempotent. A typer without these methods is one this was not made
    for: fail here (tests/test_cli_help.py says so) rather than show a help nobody checked."""
    for cls, method, replacement in _REPLACED:
        if not callable(getattr(cls, method, None)):
            raise RuntimeError(f"typer's {cls.__name__}.{method} is gone: regwatch.cli.help_labels needs a look")
        setattr(cls, method, replacement)
