"""``python -m tastebud``: the command line, for environments without the console script on PATH."""

from tastebud.cli import main

main()
