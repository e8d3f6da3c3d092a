"""jina 0.9.33's own command line (``python -m vseimageencoder.jina09.cli pod ...``) with its
version check and public-IP lookups switched off; the pod image's entrypoint.
"""
import sys
from typing import List, Optional


def main(argv: Optional[List[str]] = None) -> int:
    from vseimageencoder.jina09.offline import disable_phone_home

    disable_phone_home()
    import cli  # jina 0.9.33's command line ships as a top-level package of that name

    sys.argv = ['jina'] + list(sys.argv[1:] if argv is None else argv)
    cli.main()
    return 0


if __name__ == '__main__':
    sys.exit(main())
