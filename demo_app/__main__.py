"""``python -m demo_app`` (what ``make demo`` runs): see :mod:`demo_app.runner`."""
import sys

from .runner import main

sys.exit(main())
