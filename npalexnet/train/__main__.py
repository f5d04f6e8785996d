"""``python -m npalexnet.train``: the training program (:mod:`npalexnet.train.cli`)."""

import sys

from npalexnet.train.cli import main

sys.exit(main())
