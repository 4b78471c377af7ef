"""Public home of the nubes error tree; see :mod:`nubes.core.errors` for the drawing."""

from nubes.core.errors import *  # noqa: F403
from nubes.core.errors import __all__ as __all__  # noqa: F401
