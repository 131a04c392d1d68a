"""iamsign core: deferred PAdES signing for remote signers (iAM Smart+), verification, the sandbox PKI.

No web framework and no database in here: ``api`` builds on this package, never the other way round.
"""
