"""iamsign core: deferred PAdES signing for remote signers (iAM Smart+), verification, the sandbox PKI.

No web framework and no database in here: ``api`` builds on this package, never the other way round.
"""

from .hexstrings import install as _install_hex_strings

_install_hex_strings()  # every pyHanko read of a signed file parses /Contents in blocks, not byte by byte
