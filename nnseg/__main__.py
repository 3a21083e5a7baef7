"""``python -m nnseg`` runs the command line."""

from nnseg.cli.main import main

raise SystemExit(main())
