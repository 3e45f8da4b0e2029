"""``python -m torchebm.cli``."""

from torchebm.cli import main

raise SystemExit(main())
