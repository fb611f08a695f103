"""``python -m clipo …`` is the ``clipo`` command (useful under ``torchrun`` and ``accelerate launch``)."""
from clipo.apps.cli import main

raise SystemExit(main())
