"""One way to open a path, whatever it is: a ``Location`` on a pyarrow filesystem.

Accepted wherever the package takes a path:

* a local path (``str`` or ``os.PathLike``, ``~`` expanded) or a ``file://`` URL;
* a URL string with another scheme (``s3://``, ``gs://``, ``hdfs://``, ``abfs://``...): opened
  by ``pyarrow.fs.FileSystem.from_uri``, with the credentials pyarrow finds in the
  environment (a notebook, a script);
* an fsspec path object: Airflow's ``ObjectStoragePath`` or a ``universal_pathlib`` ``UPath``.
  It keeps its own filesystem (in Airflow: the credentials of its connection), adapted with
  ``pyarrow.fs.FSSpecHandler``. The Airflow layer builds the ``ObjectStoragePath`` from a
  ``conn_id``; nothing below it does.

Every reader and writer of files (Parquet sources, shards, the Parquet writer, the rejects
file) goes through ``locate``, so there is one storage stack, not one per direction.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

import pyarrow.fs as pafs

from ..client.errors import InstasentConfigError

__all__ = ["Location", "is_path_like", "locate"]

_WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:[\\/]")


def _is_url(text: str) -> bool:
    head, sep, _ = text.partition("://")
    return bool(sep) and len(head) > 1 and head.replace("+", "").replace("-", "").isalnum() \
        and not _WINDOWS_DRIVE.match(text)


def _is_fsspec_path(value: Any) -> bool:
    """An ``ObjectStoragePath`` / ``UPath``: it carries an fsspec filesystem and a path in it."""
    return not isinstance(value, (str, bytes)) and hasattr(value, "fs") and hasattr(value, "path") \
        and hasattr(value, "protocol")


def is_path_like(value: Any) -> bool:
    """True for anything ``locate`` takes (a str, an ``os.PathLike``, an fsspec path)."""
    return isinstance(value, (str, os.PathLike, Location)) or _is_fsspec_path(value)


@dataclass(frozen=True)
class Location:
    """A file or directory: ``path`` inside ``fs``; ``prefix + path`` is how to name it.

    ``local`` locations are absolute paths on this machine's filesystem.
    """

    fs: pafs.FileSystem
    path: str
    prefix: str = ""
    local: bool = False

    @property
    def uri(self) -> str:
        """The name to show, and to store in a shard descriptor (absolute for local paths)."""
        return self.prefix + self.path

    def __str__(self) -> str:
        return self.uri

    @property
    def name(self) -> str:
        return self.path.rstrip("/").rsplit("/", 1)[-1]

    def at(self, path: str) -> Location:
        """Another path on the same filesystem (e.g. a file found below a directory)."""
        return Location(self.fs, path, self.prefix, self.local)

    @property
    def parent(self) -> Location:
        head = self.path.rstrip("/").rsplit("/", 1)[0] if "/" in self.path.rstrip("/") else ""
        return self.at(head or ("/" if self.path.startswith("/") else ""))

    def info(self) -> pafs.FileInfo:
        return self.fs.get_file_info(self.path)

    def is_file(self) -> bool:
        return self.info().type == pafs.FileType.File

    def is_dir(self) -> bool:
        return self.info().type == pafs.FileType.Directory

    def size(self) -> int | None:
        info = self.info()
        return info.size if info.type == pafs.FileType.File else None

    def open_input(self) -> Any:
        """A seekable native file (what ``pyarrow.parquet`` reads fastest)."""
        return self.fs.open_input_file(self.path)

    def open_output(self) -> Any:
        return self.fs.open_output_stream(self.path)

    def make_parent(self) -> None:
        """Create the parent directory of a local path (object stores have no directories, and
        creating one there could create a bucket)."""
        parent = self.parent.path
        if self.local and parent and parent != "/":
            self.fs.create_dir(parent, recursive=True)

    def delete(self) -> None:
        try:
            self.fs.delete_file(self.path)
        except (OSError, FileNotFoundError):
            pass

    def move_to(self, other: Location) -> None:
        self.fs.move(self.path, other.path)


def locate(value: Any) -> Location:
    """A ``Location`` for a local path, a URL string, an fsspec path or a Location.

    Raises:
        InstasentConfigError: an empty path, or a value that is not a path.
    """
    if isinstance(value, Location):
        return value
    if _is_fsspec_path(value):
        protocol = value.protocol if isinstance(value.protocol, str) else value.protocol[0]
        path = str(value.path)
        if protocol in ("file", "local"):
            return Location(pafs.LocalFileSystem(), os.path.abspath(path), "file://", True)
        return Location(pafs.PyFileSystem(pafs.FSSpecHandler(value.fs)), path, f"{protocol}://")
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str):
        raise InstasentConfigError(
            f"a path must be a str, an os.PathLike or an ObjectStoragePath; got {type(value).__name__}")
    if not value:
        raise InstasentConfigError("a path must not be empty")
    if value.startswith("file://"):
        return Location(pafs.LocalFileSystem(), os.path.abspath(value[len("file://"):]), "file://", True)
    if _is_url(value):
        try:
            fs, inner = pafs.FileSystem.from_uri(value)
        except (ValueError, OSError) as exc:  # pyarrow.ArrowInvalid is a ValueError
            raise InstasentConfigError(f"cannot open {value!r}: {exc}") from exc
        return Location(fs, inner, value.split("://", 1)[0] + "://")
    return Location(pafs.LocalFileSystem(), os.path.abspath(os.path.expanduser(value)), "", True)
