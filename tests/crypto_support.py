"""Helpers of the crypto tests: a ZKX1 handshake between the server and the simulator."""

from __future__ import annotations

from typing import Optional

from pushd.crypto.transports import ZKX1Transport
from pushd.sim_zkx1 import ZKX1Client

NOW = 1_700_000_000.0
SN = "CQUJ230160042"


def handshake(
    transport: ZKX1Transport,
    client: ZKX1Client,
    state: Optional[bytes] = None,
    now: float = NOW,
    sn: str = SN,
) -> bytes:
    """Run both exchange steps in memory; :returns: the server state afterwards."""
    reply, state = transport.exchange(sn, "publickey", client.publickey_request(), state, now)
    client.publickey_reply(reply)
    reply, state = transport.exchange(sn, "factors", client.factors_request(), state, now)
    client.factors_reply(reply)
    return state
