"""pathgen: a histopathology foundation-model toolkit (tile → learn → generate → benchmark).

Importing pathgen imports no torch; each stage imports what it needs inside its command.
"""

__version__ = "0.1.0"
