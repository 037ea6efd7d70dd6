#!/usr/bin/env python3
"""Pack the byoc-edge sources that the edge role deploys into a reproducible tar.

Runs on the Ansible controller. The same files give the same bytes (sorted entries, fixed
mtime, owner and modes; no __pycache__, *.pyc or *.egg-info), so Ansible's copy of the tar
reports a change only when a deployed file really changed. The tar is rewritten only when its
content differs. Prints one JSON line: {"changed": bool, "path": ..., "sha256": ..., "files": n}.

    pack_source.py --source REPO --output FILE PATH [PATH ...]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import sys
import tarfile
from pathlib import Path

MTIME = 946684800  # 2000-01-01: any fixed time; zip-based tools refuse times before 1980
SKIP_DIRS = {"__pycache__", ".pytest_cache", ".mypy_cache", ".hypothesis"}
SKIP_SUFFIXES = (".pyc", ".pyo", ".tmp")


def walk(root: Path, paths: list[str]):
    for rel in paths:
        top = root / rel
        if not top.exists():
            raise SystemExit(f"pack_source: {top} is missing from the source tree")
        if not top.is_dir():
            yield top
            continue
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and not d.endswith(".egg-info"))
            yield Path(dirpath)
            for name in sorted(filenames):
                if not name.endswith(SKIP_SUFFIXES):
                    yield Path(dirpath) / name


def pack(root: Path, paths: list[str]) -> tuple[bytes, int]:
    buf = io.BytesIO()
    count = 0
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for path in walk(root, paths):
            info = tarfile.TarInfo(path.relative_to(root).as_posix())
            info.mtime = MTIME
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            if path.is_symlink():
                info.type = tarfile.SYMTYPE
                info.linkname = os.readlink(path)
                info.mode = 0o777
                tar.addfile(info)
            elif path.is_dir():
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                tar.addfile(info)
            else:
                data = path.read_bytes()
                info.size = len(data)
                info.mode = 0o755 if path.stat().st_mode & 0o111 else 0o644
                tar.addfile(info, io.BytesIO(data))
                count += 1
    return buf.getvalue(), count


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", required=True, type=Path)
    parser.add_argument("--output", required=True, type=Path)
    parser.add_argument("paths", nargs="+")
    args = parser.parse_args()
    data, count = pack(args.source.resolve(), args.paths)
    out: Path = args.output
    changed = not out.exists() or out.read_bytes() != data
    if changed:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, out)
    print(json.dumps({"changed": changed, "path": str(out), "sha256": hashlib.sha256(data).hexdigest(), "files": count}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
