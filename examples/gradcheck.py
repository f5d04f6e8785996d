"""The gradient-check run: every layer type against finite differences and PyTorch, as a table.

    python examples/gradcheck.py                 # CPU (and GPU when CuPy sees one)
    python examples/gradcheck.py --layer Conv2d  # one layer type
    python examples/gradcheck.py --no-torch      # finite differences only

The same as ``python -m npalexnet.gradcheck``; exits non-zero if any check fails.
"""

import sys

from npalexnet.gradcheck.report import main

if __name__ == "__main__":
    sys.exit(main())
