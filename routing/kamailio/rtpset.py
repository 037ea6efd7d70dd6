"""An rtpengine set (settings ``rtpengine.nodes``, docs/media.md#rtpengine-sets) in the call path.

Kamailio's rtpengine module chooses each call's node at the offer (weighted, the next node when one
does not answer), keeps the call on it (its Call-ID table) and names it in ``$avp(edge_rtpinst)``;
the branch route keeps that in the ``rtpnode`` htable by Call-ID.  This module:

* :func:`client`: the plugin's own ng commands of a call (delete with final statistics, query, block
  DTMF, play media) go to that call's node;
* :func:`note`: keeps the node of an offer the plugin made the module send outside the branch route
  (a delayed offer answered in the 2xx);
* :func:`answer_facts`: the call's node for its live hash in redis at the answer (``rtp_node``): the
  other edge nodes ask it whether the call's media still flows when this node dies
  (:mod:`routing.monitor.nodeloss`);
* :func:`watch` (call clock, once a second): pings every node; after
  :data:`routing.call.rtpset.DOWN_AFTER` failed pings in a row the node is dead: marked in the
  ``rtpdown`` htable, disabled in the module (RPC ``rtpengine.enable URL 0``: no new offer goes to
  it) and each answered call of it returned for the clock to end (``media_end_reason:
  rtpengine_lost``); its first answer enables it again.

Without nodes every function returns at once (the local rtpengine, :meth:`Worker.ng`).
"""

from __future__ import annotations

import json

import KSR  # type: ignore[import-not-found]

from ..call import rtpset
from ..ngclient import NgClient, NgError
from ..ops.rtpnodes import node_url
from . import callstate as cs
from .callstate import Deadline
from .worker import Worker, pv

__all__ = ["client", "note", "forget", "choose", "watch", "answer_facts", "LOST_REASON"]

#: the call record's ``media_end_reason`` of a call whose rtpengine died
LOST_REASON = "rtpengine_lost"
NODE_ITERATOR = "edgertpnode"


def _nodes(w: Worker) -> list[tuple[str, int]]:
    """``(url, weight)`` of each node of the set, in settings order."""
    return [(node_url(host, port), weight) for host, port, weight in w.settings.rtpengine_nodes]


def _down() -> set[str]:
    """URLs of the nodes the call clock found dead (the ``rtpdown`` htable, shared by every process)."""
    down = set()
    if KSR.htable.sht_iterator_start(NODE_ITERATOR, cs.RTP_DOWN_TABLE) < 0:
        return down
    while KSR.htable.sht_iterator_next(NODE_ITERATOR) > 0:
        down.add(pv(f"$shtitkey({NODE_ITERATOR})"))
    KSR.htable.sht_iterator_end(NODE_ITERATOR)
    return down


def _at(w: Worker, url: str) -> NgClient | None:
    where = rtpset.parse_url(url)
    return w.ng_at(*where) if where else None


def choose(w: Worker, call_id: str) -> str:
    """The node of a media session the plugin starts itself (an announcement, whose session the
    module deletes later without knowing it): the module's own choice for a Call-ID it has no entry
    for, mirrored (:func:`routing.call.rtpset.pick`: CRC-32 of the Call-ID over the weights of the
    nodes up, Kamailio 5.6 rtpengine.c ``select_rtpp_node_new`` with ``hash_algo`` 2, as the set is
    rendered), kept as the call's node; "" without a set or with every node down."""
    if not w.settings.rtpengine_nodes:
        return ""
    url = rtpset.pick(_nodes(w), _down(), call_id) or ""
    if url:
        KSR.htable.sht_sets(cs.RTP_NODE_TABLE, call_id, url)
    return url


def client(w: Worker, call_id: str) -> NgClient:
    """The ng client of ``call_id``'s rtpengine: the local one without a set; with one, the call's
    node (``rtpnode``), or for a call without one a node up by weight (a command that then meets no
    session is answered ``Unknown call-id``, as from the local rtpengine)."""
    if not w.settings.rtpengine_nodes:
        return w.ng()
    url = pv(f"$sht({cs.RTP_NODE_TABLE}=>{call_id})") or rtpset.pick(_nodes(w), _down(), call_id) or ""
    found = _at(w, url) if url else None
    return found if found is not None else w.ng_at(*w.settings.rtpengine_nodes[0][:2])


def note(w: Worker, call_id: str) -> None:
    """Keep the node of the module's last command (``$avp(edge_rtpinst)``) as ``call_id``'s node;
    nothing without a set."""
    if w.settings.rtpengine_nodes:
        url = pv(cs.RTP_INST_AVP)
        if url:
            KSR.htable.sht_sets(cs.RTP_NODE_TABLE, call_id, url)


def answer_facts(w: Worker, call_id: str) -> dict[str, str]:
    """``{"rtp_node": URL}`` of ``call_id``'s node (``rtpnode``) for its live hash, written with the
    answer (docs/redis-schema.md); {} without a set or without a node kept."""
    if not w.settings.rtpengine_nodes:
        return {}
    url = pv(f"$sht({cs.RTP_NODE_TABLE}=>{call_id})")
    return {"rtp_node": url} if url else {}


def down_nodes(w: Worker) -> set[str]:
    """URLs of the set's nodes the call clock found dead (empty without a set)."""
    return _down() if w.settings.rtpengine_nodes else set()


def on_dead_node(w: Worker, call_id: str, down: set[str]) -> bool:
    """Whether ``call_id``'s node is among ``down`` (:func:`down_nodes`): its media session died with
    the node, so no ng command need wait for it (the call-end drain skips its ``delete``)."""
    return bool(down) and pv(f"$sht({cs.RTP_NODE_TABLE}=>{call_id})") in down


def forget(w: Worker, call_id: str) -> None:
    """The call's media session is gone: its node no longer kept (nothing without a set)."""
    if w.settings.rtpengine_nodes:
        KSR.htable.sht_rm(cs.RTP_NODE_TABLE, call_id)


def _enable(url: str, on: bool) -> None:
    """The module's own state of a node (RPC ``rtpengine.enable``; disabled this way it stays so until
    enabled again, Kamailio 5.6 README.rtpengine 7.2)."""
    KSR.jsonrpcs.exec(json.dumps({"jsonrpc": "2.0", "method": "rtpengine.enable", "params": [url, 1 if on else 0],
                                  "id": 1}))


def watch(w: Worker, now: float) -> list[str]:
    """Call clock, once a second: ping each node of the set (ng ``ping``, 0.5 s at most per node),
    mark a node dead after :data:`routing.call.rtpset.DOWN_AFTER` failures in a row (no new call; its
    answered calls returned) and alive again at its first answer.

    Returns:
        Call-IDs of answered calls whose node is dead, for the clock to end (BYE both ways, slots
        released); [] without a set, and while every node answers (no htable walk).
    """
    if not w.settings.rtpengine_nodes:
        return []
    down = _down()
    for url, _ in _nodes(w):
        try:
            _at(w, url).command("ping")  # type: ignore[union-attr]
            answered = True
        except NgError:
            answered = False
        failures, dead = rtpset.health(w.rtp_failures.get(url, 0), answered, url in down)
        w.rtp_failures[url] = failures
        if dead and url not in down:
            KSR.err(f"edge: rtpengine {url} did not answer {failures} pings: no new calls, its calls end\n")
            KSR.htable.sht_sets(cs.RTP_DOWN_TABLE, url, str(int(now)))
            _enable(url, False)
            down.add(url)
        elif not dead and url in down:
            KSR.notice(f"edge: rtpengine {url} answers again: back in the set\n")
            KSR.htable.sht_rm(cs.RTP_DOWN_TABLE, url)
            _enable(url, True)
            down.discard(url)
    if not down:
        return []
    lost = []
    if KSR.htable.sht_iterator_start(NODE_ITERATOR, cs.RTP_NODE_TABLE) < 0:
        return []
    while KSR.htable.sht_iterator_next(NODE_ITERATOR) > 0:
        if pv(f"$shtitval({NODE_ITERATOR})") in down:
            lost.append(pv(f"$shtitkey({NODE_ITERATOR})"))
    KSR.htable.sht_iterator_end(NODE_ITERATOR)
    ending = []
    for call_id in lost:
        clock = Deadline.decode(pv(f"$sht({cs.DEADLINE_TABLE}=>{call_id})"))
        if clock is not None and not clock.cleanup and not clock.awaiting_ack:
            KSR.htable.sht_rm(cs.RTP_NODE_TABLE, call_id)  # ended once
            ending.append(call_id)
    return ending
