"""`python -m bot` is the same as `nexus-bot`."""

from bot.cli import main

raise SystemExit(main())
