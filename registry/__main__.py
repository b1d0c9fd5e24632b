"""``python -m registry`` runs the ``cfreg`` command line."""

from .cli import main

main()
