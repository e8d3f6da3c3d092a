"""jina 0.9.33's own command line, kept on this machine.

``jina`` (jina 0.9.33's ``cli`` package) asks api.jina.ai for the latest version before
every command, and its Flows and pods look up the machine's public IP from public web
services; jina 0.9.33 has no setting to stop either. This runs the same command line with
both switched off (:func:`vseimageencoder.jina09.offline.disable_phone_home`) and is otherwise
``jina`` itself, arguments and exit status included::

    python -m vseimageencoder.jina09.cli pod --uses config.yml --port-in 55555 --port-out 55556

The jina 0.9.33 pod image's entrypoint runs it.
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
