"""The ``iamsign`` command line: serve, worker, keys, verify, batch, sandbox (``main.py`` is the entry point).

May import the client SDK and, to run the service in-process, the app and what it is built from."""
