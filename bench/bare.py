"""
A bare twisted.web server: one leaf Resource answering ``OK`` to every
request.  It is the ceiling ``bench/run.py`` compares pushd with, run by the
same interpreter on the same kind of listening endpoint.

Usage::

    python bench/bare.py --listen tcp:8080:interface=127.0.0.1
"""

from __future__ import annotations

import argparse
from typing import Optional, Sequence

from twisted.internet import endpoints, reactor
from twisted.web import resource, server


class OK(resource.Resource):
    """Answers every GET and POST with ``OK``."""

    isLeaf = True

    def render_GET(self, request: server.Request) -> bytes:
        return b"OK"

    render_POST = render_GET


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--listen", default="tcp:8080:interface=127.0.0.1")
    args = parser.parse_args(argv)
    endpoint = endpoints.serverFromString(reactor, args.listen)
    endpoint.listen(server.Site(OK()))
    reactor.run()


if __name__ == "__main__":
    main()
