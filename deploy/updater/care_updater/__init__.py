"""care-terminal updater: activates staged releases with an atomic ``current``
switch, checks health, and rolls back. Standard library only; imports nothing
from the application (it must work when the application release is broken)."""

__version__ = "1.0.0"
