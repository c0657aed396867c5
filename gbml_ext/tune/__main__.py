"""`python -m gbml_ext.tune` is `gbml-tune`."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
