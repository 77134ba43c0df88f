"""The shared library of the book: data, models, losses, training, evaluation, reporting, plotting.

Each chapter imports what it needs from the sub-modules; nothing runs at import time.
"""

__version__ = "0.1.0"
