"""``python -m npalexnet.gradcheck``: every layer checked, as a table (:mod:`npalexnet.gradcheck.report`)."""

import sys

from .report import main

sys.exit(main())
