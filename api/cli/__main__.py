"""``python -m api.cli``: the same as the ``iamsign`` console script."""

from api.cli.main import main

main()
