"""``python -m torchebm.cuda``: backend report and kernel self-check."""

import sys

from torchebm.cuda._selfcheck import main

sys.exit(main(sys.argv[1:]))
