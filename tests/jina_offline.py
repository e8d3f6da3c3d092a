"""Keeps jina 0.9.33 from reaching beyond this machine, and runs its CLI that way.

jina looks up the public IP from public web services at every Flow start, and its command
line asks api.jina.ai for the latest version before every command. Tests must send nothing
off 127.0.0.1, so both are replaced with no-ops. Pods are forked, so patching the parent
before a Flow starts covers them.

    python -m tests.jina_offline pod --uses config.yml --port-in 55555 --port-out 55556
"""
import sys


def disable_phone_home():
    import jina.helper
    import jina.flow.base
    import jina.peapods.pods.helper

    def no_public_ip():
        return None

    for mod in (jina.helper, jina.flow.base, jina.peapods.pods.helper):
        mod.get_public_ip = no_public_ip
    try:
        import cli
    except ImportError:
        return
    cli._is_latest_version = lambda *a, **k: None


def main(argv=None):
    disable_phone_home()
    import cli
    sys.argv = ['jina'] + list(sys.argv[1:] if argv is None else argv)
    cli.main()


if __name__ == '__main__':
    main()
