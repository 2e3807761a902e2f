"""``python -m superres.cli``, the same command as ``superres``."""

from . import main

main()
