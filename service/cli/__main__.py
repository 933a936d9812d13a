"""``python -m spamgate.service.cli``: the ``spamgate`` command."""

import sys

from spamgate.service.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
