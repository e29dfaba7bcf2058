"""``python -m automl``: the ``automl`` command."""

import sys

from automl.cli import main

sys.exit(main())
