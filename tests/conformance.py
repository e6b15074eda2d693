"""The RFC 4475 torture corpus and what MANIFEST.md expects of each message.

The corpus lives outside the repository (``../shared/conformance``) on development machines;
a copy is vendored in ``tests/data/rfc4475`` so a fresh clone on a bare machine has it.
"""

from __future__ import annotations

from pathlib import Path

CORPUS = Path(__file__).parent / "data" / "rfc4475"

#: file -> expected: "parse", "parse-response", "drop" (a response the server drops), or the
#: status the server must answer with.
EXPECTED: dict[str, str | int] = {
    "wsinv.dat": "parse",
    "intmeth.dat": "parse",
    "esc01.dat": "parse",
    "escnull.dat": "parse",
    "esc02.dat": "parse",
    "lwsdisp.dat": "parse",
    "longreq.dat": "parse",
    "dblreq.dat": "parse",
    "semiuri.dat": "parse",
    "transports.dat": "parse",
    "mpart01.dat": "parse",
    "unreason.dat": "parse-response",
    "noreason.dat": "parse-response",
    "badinv01.dat": 400,
    "clerr.dat": 400,
    "ncl.dat": 400,
    "scalar02.dat": 400,
    "scalarlg.dat": "drop",
    "quotbal.dat": 400,
    "ltgtruri.dat": 400,
    "lwsruri.dat": 400,
    "lwsstart.dat": 400,
    "trws.dat": 400,
    "escruri.dat": 400,
    "baddate.dat": "parse",
    "regbadct.dat": 400,
    "badaspec.dat": 400,
    "baddn.dat": 400,
    "badvers.dat": 505,
    "mismatch01.dat": 400,
    "mismatch02.dat": 400,
    "bigcode.dat": "drop",
    "badbranch.dat": "parse",
    "insuf.dat": 400,
    "unkscm.dat": "parse",
    "novelsc.dat": "parse",
    "unksm2.dat": "parse",
    "bext01.dat": "parse",
    "invut.dat": "parse",
    "regaut01.dat": "parse",
    "multi01.dat": 400,
    "mcl01.dat": 400,
    "bcast.dat": "parse-response",
    "zeromf.dat": "parse",
    "cparam01.dat": "parse",
    "cparam02.dat": "parse",
    "regescrt.dat": "parse",
    "sdp01.dat": "parse",
    "inv2543.dat": "parse",
}

#: What the whole server answers (status) or ``None`` for silence, per file.
SERVER_ANSWER: dict[str, int | None] = {
    "wsinv.dat": 481,  # its To has a tag: a request inside a dialog we do not know (§12.2.2)
    "intmeth.dat": 501,
    "esc01.dat": 401,
    "escnull.dat": 401,
    "esc02.dat": 501,
    "lwsdisp.dat": 200,
    "longreq.dat": 401,
    "dblreq.dat": 401,
    "semiuri.dat": 200,
    "transports.dat": 200,
    "mpart01.dat": 405,
    "unreason.dat": None,
    "noreason.dat": None,
    "badinv01.dat": 400,
    "clerr.dat": 400,
    "ncl.dat": 400,
    "scalar02.dat": 400,
    "scalarlg.dat": None,
    "quotbal.dat": 400,
    "ltgtruri.dat": 400,
    "lwsruri.dat": 400,
    "lwsstart.dat": 400,
    "trws.dat": 400,
    "escruri.dat": 400,
    "baddate.dat": 401,
    "regbadct.dat": 400,
    "badaspec.dat": 400,
    "baddn.dat": 400,
    "badvers.dat": 505,
    "mismatch01.dat": 400,
    "mismatch02.dat": 400,
    "bigcode.dat": None,
    "badbranch.dat": 200,
    "insuf.dat": 400,
    "unkscm.dat": 416,
    "novelsc.dat": 416,
    "unksm2.dat": 401,
    "bext01.dat": 420,
    "invut.dat": 415,
    "regaut01.dat": 401,
    "multi01.dat": 400,
    "mcl01.dat": 400,
    "bcast.dat": None,
    "zeromf.dat": 483,
    "cparam01.dat": 401,
    "cparam02.dat": 401,
    "regescrt.dat": 401,
    "sdp01.dat": 406,
    "inv2543.dat": 401,
}


def corpus_files() -> list[Path]:
    return sorted(CORPUS.glob("*.dat"))
