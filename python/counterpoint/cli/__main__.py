"""``python -m counterpoint.cli``."""

from . import main

raise SystemExit(main())
