import sys

from vseimageencoder.cli import main

sys.exit(main())
