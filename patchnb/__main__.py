"""``python -m patchnb ...`` (and ``torchrun -m patchnb ...``) is the ``patchnb`` command."""

import sys

from .cli import main

sys.exit(main())
