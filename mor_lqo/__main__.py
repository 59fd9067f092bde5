"""``python -m mor_lqo``: the ``mor-lqo`` command line (:mod:`mor_lqo.cli`)."""

import sys

from .cli import main

sys.exit(main())
