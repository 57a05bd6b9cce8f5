"""Run the command line: `python -m sparseflow`."""

from sparseflow.cli import main

raise SystemExit(main())
