"""``python -m quantlab`` is the ``quantlab`` command."""
import sys

from quantlab.cli import main

sys.exit(main())
