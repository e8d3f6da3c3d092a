"""The guard in front of the jina 0.9.33 front end (an ImportError that says what to install),
and the switch that keeps jina 0.9.33 from calling out to public services.
"""
import sys

REQUIRED = '0.9.33'


def jina09_installed() -> bool:
    # Asks the installed metadata, not jina itself: importing jina 3 here would be slow and
    # wrong, and a missing jina must cost nothing.
    try:
        from importlib.metadata import PackageNotFoundError, version
    except ImportError:  # Python 3.7
        return False
    try:
        return version('jina').startswith('0.9.')
    except PackageNotFoundError:
        return False


def _message(found: str) -> str:
    here = 'Python %d.%d.%d' % sys.version_info[:3]
    return (
        'vseimageencoder.jina09.executor is the jina 0.9.33 front end and needs jina==%s, which '
        'installs on Python 3.8 or 3.9 only; this is %s with %s. For it: a Python 3.9 '
        'environment made by `scripts/setup.sh` (or `pip install jina==0.9.33 -e .` there). '
        'On Python 3.10+: the jina 3 Executors, `from vseimageencoder.jina3 import '
        'VSEImageEncoder, VSETextEncoder` (environment: `scripts/setup.sh --jina3`), or the '
        'jina-free core, `from vseimageencoder.encoders import ImageEncoder`.'
        % (REQUIRED, here, found))


def require_jina09() -> None:
    """Return if jina 0.9.x is importable; otherwise raise :class:`ImportError` saying what
    to install and on which Python."""
    try:
        import jina
    except ImportError as e:
        raise ImportError(_message('no jina installed (%s)' % e), name='jina') from e
    version = str(getattr(jina, '__version__', 'unknown'))
    if not version.startswith('0.9.'):
        raise ImportError(_message('jina %s installed' % version), name='jina')


def disable_phone_home() -> None:
    """Keep jina 0.9.33 on this machine: it looks up the public IP from public web services
    at every Flow start (shown in its start-up banner only), and its command line asks
    api.jina.ai for the latest version before every command. Both become no-ops. Pods are
    forked from the calling process, so calling this before a Flow starts covers them."""
    require_jina09()
    import jina.flow.base
    import jina.helper
    import jina.peapods.pods.helper

    def no_public_ip():
        return None

    for mod in (jina.helper, jina.flow.base, jina.peapods.pods.helper):
        mod.get_public_ip = no_public_ip
    try:
        import cli  # jina 0.9.33's command line ships as a top-level package of that name
    except ImportError:
        return
    cli._is_latest_version = lambda *a, **k: None
