"""Print the pod image's tag exactly as jina 0.9.33's hub computes it from manifest.yml
(``jina hub build --dry-run``): jinahub/<type>.<kind>.<name>:<version>-<jina version>."""
import sys
from pathlib import Path

root = Path(__file__).resolve().parent.parent
try:
    from jina.docker.hubio import HubIO
    from jina.parsers.hub import set_hub_build_parser
except ImportError:
    sys.exit('image_tag: jina is not importable; run scripts/setup.sh and use .venv/bin/python')

hub = HubIO(set_hub_build_parser().parse_args([str(root), '--dry-run']))
summary = hub.dry_run()
if not summary.get('is_build_success'):
    sys.exit('image_tag: jina hub validation failed: %s' % summary.get('exception'))
print(hub.tag)
