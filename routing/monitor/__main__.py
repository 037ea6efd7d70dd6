"""``python -m routing.monitor <monitor.json>``: run the monitor process (:mod:`routing.monitor.process`)."""

import sys

from routing.monitor.process import main

sys.exit(main())
