"""The Kamailio adapter: the only package whose modules import ``KSR`` (``callstate`` excepted: it
only names the state and its codecs, so the renderer can import it).

Modules: ``entry`` (the object app_python3 calls, :func:`mod_init`), ``worker`` (per-process
state, KSR helpers), ``callstate`` (names and value codecs of the per-call state), ``mediaflags``
(rtpengine flags), then one module per stage of a call's life: ``screening``, ``invite``,
``failure``, ``replies``, ``indialog``, ``onbehalf``, ``dialogs``, ``records``, ``timers``,
``registration``.
"""

__all__ = ["mod_init"]


def mod_init() -> object:
    """``app_python3``'s entry (:func:`routing.kamailio.entry.mod_init`), imported only when
    Kamailio calls it: importing this package needs no ``KSR``."""
    from .entry import mod_init as build

    return build()
