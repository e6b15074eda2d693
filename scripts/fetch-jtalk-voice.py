"""Fetch the Open JTalk "Mei" HTS voice (CC BY 3.0) from the pyopenjtalk source package on
PyPI and unpack it into a directory. The archive is pinned by SHA-256, so what lands on
disk is exactly the reviewed file. Usage: fetch-jtalk-voice.py DEST_DIR
"""

from __future__ import annotations

import hashlib
import io
import re
import sys
import tarfile
import urllib.request
from pathlib import Path

PACKAGE = "pyopenjtalk-0.4.1.tar.gz"
SHA256 = "d5ada46f7fc2b52c1c79c273eb9668ff6ad7ab276a8db9d8be119ef93440f0dc"
INDEX = "https://pypi.org/simple/pyopenjtalk/"
MEMBER = re.compile(r"^pyopenjtalk-0\.4\.1/pyopenjtalk/htsvoice/[^/]+$")


def main(dest: Path) -> int:
    page = urllib.request.urlopen(INDEX, timeout=60).read().decode()
    links = re.findall(rf'href="([^"#]+/{re.escape(PACKAGE)})#', page)
    if not links:
        print(f"{PACKAGE} not found on {INDEX}", file=sys.stderr)
        return 1
    data = urllib.request.urlopen(links[0], timeout=120).read()  # noqa: S310 - from the index
    if hashlib.sha256(data).hexdigest() != SHA256:
        print(f"{PACKAGE}: checksum mismatch, refusing it", file=sys.stderr)
        return 1
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        for member in archive.getmembers():
            if member.isfile() and MEMBER.match(member.name):
                source = archive.extractfile(member)
                assert source is not None
                (dest / Path(member.name).name).write_bytes(source.read())
    return 0


if __name__ == "__main__":
    raise SystemExit(main(Path(sys.argv[1])))
