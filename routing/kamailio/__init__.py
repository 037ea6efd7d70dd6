"""The Kamailio adapter: the only package whose modules import ``KSR`` (``callstate`` excepted: it
only names the state, so the renderer can import it)."""
