"""KEMI entry script loaded by Kamailio's app_python3 (``modparam("app_python3", "load", ...)``).

It only puts the byoc-edge code and its virtualenv on ``sys.path`` (paths
from ``routing.json``, located by ``$BYOC_EDGE_RUNTIME``) and hands over to
:func:`routing.kamailio.mod_init`.  Kamailio runs it with Debian's
``/usr/bin/python3``, so the venv must be built from that interpreter.
"""

import json
import os
import site
import sys

_runtime = os.environ.get("BYOC_EDGE_RUNTIME")
if _runtime:
    with open(_runtime, encoding="utf-8") as _handle:
        for _path in json.load(_handle).get("python_paths", []):
            if _path not in sys.path:
                site.addsitedir(_path)
else:
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from routing.kamailio import mod_init  # noqa: E402,F401  (app_python3 calls mod_init())
