"""The one root of every error byoc-edge raises on purpose: :class:`EdgeError`.

The CLI (:func:`routing.cli.handle_errors`) and the call path catch this one class; anything
else that escapes is a bug.  Each concern keeps its own subclass next to the code that raises
it, and some also subclass ``ValueError`` or ``RuntimeError`` where callers rely on that:

* :class:`routing.tables.model.DataError` (``ValueError``): a routing-table value is invalid;
  :class:`routing.tables.admin.ConflictError` (a name or CIDR is taken, or still referenced)
  and ``routing.tables.tableset._NothingToDo`` (an ``apply`` without change) below it.
* :class:`routing.tables.store.StoreUnavailable` (``RuntimeError``): redis did not answer.
* :class:`routing.tables.store.StaleTopology`: the cached topology moved while routing.
* :class:`routing.call.numbers.NumberError` (``ValueError``): not a telephone number.
* :class:`routing.call.dtmf.DtmfError` (``ValueError``): not a DTMF mode.
* :class:`routing.ops.settings.SettingsError` (``ValueError``): the settings file is invalid.
* :class:`routing.ops.secrets.SecretError` (``RuntimeError``): the secret key is missing or wrong.
* :class:`routing.ops.services.ServiceError` (``RuntimeError``): a process did not start or stop.
* :class:`routing.ops.sipp.SippError` (``RuntimeError``): SIPp is missing or did not finish.
* :class:`routing.ngclient.NgError` (``RuntimeError``): rtpengine's ng protocol failed.
"""

from __future__ import annotations

__all__ = ["EdgeError"]


class EdgeError(Exception):
    """Root of byoc-edge's own errors; its message is one line, fit for an operator."""
