"""``python -m vseimageencoder.jina09_cli``, the original name of
``python -m vseimageencoder.jina09.cli``: jina 0.9.33's command line, kept offline."""
import sys

from vseimageencoder.jina09.cli import main

if __name__ == '__main__':
    sys.exit(main())
