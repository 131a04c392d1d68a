"""iamsign service: FastAPI app, sandbox server and the ``iamsign`` command line."""

import signing  # noqa: F401 - first: its warning filter and pyHanko reader apply before anything imports pyHanko
