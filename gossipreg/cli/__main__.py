"""``python -m gossipreg.cli``: the ``gossipreg`` command."""

from .main import main

main()
