"""`python -m clipworks.cli`: the same as the `clipworks` command."""

import sys

from . import main

sys.exit(main())
