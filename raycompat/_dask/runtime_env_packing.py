"""Packing a ``working_dir``/``py_modules`` directory into a zip as Ray does (its
``excludes`` and ``.gitignore`` rules, size limits). See ``runtime_env.py``."""

from __future__ import annotations

import hashlib
import io
import logging
import re
import zipfile
from pathlib import Path


from raycompat._dask.runtime_env_records import FILE_SIZE_WARNING, mib

logger = logging.getLogger("raycompat")


# ---------------------------------------------------------------------------- packing


def _glob_regex(pattern: str):
    """One ``.gitignore`` line as ``(regex, negate)`` (gitwildmatch, as Ray's pathspec)."""
    line = pattern.rstrip("\n")
    if not line.strip() or line.startswith("#"):
        return None
    line = line.rstrip()
    negate = line.startswith("!")
    if negate:
        line = line[1:]
    if line.startswith("\\"):
        line = line[1:]
    dir_only = line.endswith("/")
    anchored = "/" in line.rstrip("/")
    parts = [p for p in line.strip("/").split("/") if p]
    if not parts:
        return None
    rx = "^" + ("" if anchored else "(?:.+/)?")
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if part == "**":
            rx += ".*" if last else "(?:.+/)?"
            continue
        j, out = 0, ""
        while j < len(part):
            c = part[j]
            if c == "*":
                out += "[^/]*"
            elif c == "?":
                out += "[^/]"
            elif c == "[" and "]" in part[j + 1:]:
                end = part.index("]", j + 1)
                body = part[j + 1:end]
                out += "[" + ("^" + body[1:] if body.startswith("!") else body) + "]"
                j = end
            else:
                out += re.escape(c)
            j += 1
        rx += out + ("" if last else "/")
    if parts[-1] != "**":
        rx += "/.*" if dir_only else "(?:/.*)?"
    return re.compile(rx + "$"), negate


def _rules(lines) -> list:
    return [r for r in map(_glob_regex, lines) if r is not None]


def _excluded(rules, rel: str, is_dir: bool) -> bool:
    target = rel + "/" if is_dir else rel
    hit = False
    for rx, negate in rules:
        if rx.match(target):
            hit = not negate
    return hit


def pack_directory(path: Path, excludes, include_gitignore: bool, include_parent_dir: bool):
    """Zip a directory (or one file) as Ray does; returns ``(bytes, content hash)``.

    The hash covers each packed path and its contents, so it names the package whatever
    the files' timestamps."""
    path = path.absolute()
    root = path.parent if path.is_file() else path
    digest = hashlib.sha1()
    buf = io.BytesIO()

    def arcname(p: Path) -> str:
        rel = p.relative_to(root).as_posix()
        return f"{root.name}/{rel}" if include_parent_dir else rel

    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        def add_file(p: Path):
            size = p.stat().st_size
            if size >= FILE_SIZE_WARNING:
                logger.warning(
                    "File %s is very large (%s). Consider adding this file to the 'excludes' "
                    "list to skip uploading it: `ray.init(..., runtime_env={'excludes': ['%s']})`",
                    p, mib(size), p,
                )
            name = arcname(p)
            data = p.read_bytes()
            digest.update(f"{name}\0{len(data)}\0".encode())
            digest.update(data)
            info = zipfile.ZipInfo.from_file(p, name, strict_timestamps=False)
            zf.writestr(info, data, zipfile.ZIP_DEFLATED)

        def visit(d: Path, rules: list):
            rules = list(rules)
            for ignore in ((".gitignore",) if include_gitignore else ()) + (".rayignore",):
                f = d / ignore
                if f.is_file():
                    rules.append((d, _rules(f.read_text().splitlines())))
            entries = sorted(d.iterdir())
            if not entries and d != root:
                name = arcname(d) + "/"
                digest.update(f"{name}\0".encode())
                zf.writestr(name, b"")
            for e in entries:
                is_dir = e.is_dir()
                if any(_excluded(r, e.relative_to(base).as_posix(), is_dir) for base, r in rules):
                    continue
                if is_dir:
                    visit(e, rules)
                else:
                    add_file(e)

        if path.is_file():
            add_file(path)
        else:
            visit(path, [(path, _rules(excludes))])
    return buf.getvalue(), digest.hexdigest()[:32]
