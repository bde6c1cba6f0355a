import sys

from apinet.cli import main

sys.exit(main())
