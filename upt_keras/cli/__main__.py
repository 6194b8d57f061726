"""`python -m upt_keras.cli ...` is `upt-keras ...`."""

import sys

from upt_keras.cli.commands import main

sys.exit(main())
