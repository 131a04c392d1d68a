"""The web face of the built-in iAM Smart sandbox (its protocol routes, the simulated phone, PKI downloads).
The engine itself lives in ``signing.sandbox``; this package only serves it over HTTP."""
