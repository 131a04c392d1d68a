"""iamsign core: deferred PAdES signing for remote signers (iAM Smart+), verification, the sandbox PKI.

No web framework and no database in here: ``api`` builds on this package, never the other way round.
"""

import warnings

from cryptography.utils import CryptographyDeprecationWarning

# pyHanko imports cryptography's DSA types, which cryptography 51 deprecates: a warning for pyHanko's
# maintainers, not for the people running iamsign (it would open every command's output); set before
# anything here imports pyHanko
warnings.filterwarnings("ignore", category=CryptographyDeprecationWarning, module=r"pyhanko(\.|$)")

from .hexstrings import install as _install_hex_strings

_install_hex_strings()  # every pyHanko read of a signed file parses /Contents in blocks, not byte by byte
