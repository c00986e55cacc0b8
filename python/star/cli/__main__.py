"""``python -m star.cli`` (e.g. under torchrun) runs the ``star`` command."""

import sys

from star.cli import main

if __name__ == "__main__":  # importing the module (as the layering test does) runs nothing
    sys.exit(main())
