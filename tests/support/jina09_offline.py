"""Keeps jina 0.9.33 from reaching beyond this machine, and runs its CLI that way.

jina looks up the public IP from public web services at every Flow start, and its command
line asks api.jina.ai for the latest version before every command. Tests must send nothing
off 127.0.0.1, so both are replaced with no-ops. Pods are forked, so patching the parent
before a Flow starts covers them.

    python -m tests.support.jina09_offline pod --uses config.yml --port-in 55555 --port-out 55556
"""


def disable_phone_home():
    """Switch jina 0.9 offline where it is installed (the jina 3 run has none to switch)."""
    from vseimageencoder.jina09.offline import jina09_installed as _jina09_installed
    if not _jina09_installed():
        return
    from vseimageencoder.jina09.offline import disable_phone_home as package_switch
    package_switch()


def main(argv=None):
    # the package's own offline `jina`, so the tests that run pods exercise it
    from vseimageencoder.jina09.cli import main as offline_jina
    offline_jina(argv)


if __name__ == '__main__':
    main()
