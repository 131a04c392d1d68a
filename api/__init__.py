"""iamsign service: FastAPI app, sandbox server and the ``iamsign`` command line."""
