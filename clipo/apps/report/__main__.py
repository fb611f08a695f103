"""``python -m clipo.apps.report RUN_DIR [--out DIR]``: the same as ``clipo report``."""
from clipo.apps.report import main

raise SystemExit(main())
