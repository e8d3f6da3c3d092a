"""Take docs/serve.png: the serve page over a generated collection, in headless Chromium.

    .venv/bin/python scripts/serve_screenshot.py [--out docs/serve.png] [--caption TEXT]

The same tooling as the browser test (tests/serve/test_app_browser.py): a
random-weight checkpoint in the release layout, generated photos (tests/support/photos.py), the
index built by ``vseimageencoder index``, ``vseimageencoder serve`` on 127.0.0.1, Debian's
Chromium driven by selenium. The photos are synthetic and the weights random, so the
ranking shows the page, not the model's quality.
"""
import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.support.serving_web import (chromium, chromium_missing, serving, write_model,  # noqa: E402
                               write_photos)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--out', default=str(REPO / 'docs' / 'serve.png'))
    ap.add_argument('--caption', default='two dogs playing with a red ball on the beach')
    ap.add_argument('--width', type=int, default=1280)
    ap.add_argument('--height', type=int, default=680)
    args = ap.parse_args()
    missing = chromium_missing()
    if missing:
        sys.stderr.write('cannot take the screenshot: %s\n' % missing)
        return 2
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    with tempfile.TemporaryDirectory(prefix='serve-shot-') as tmp:
        tmp = Path(tmp)
        model = write_model(tmp / 'model')
        write_photos(tmp / 'photos', copies=3)  # 24 photos
        subprocess.run([sys.executable, '-m', 'vseimageencoder', 'index', str(tmp / 'index'),
                        str(tmp / 'photos'), '--model-path', str(model)], cwd=str(REPO), check=True)
        with serving(tmp / 'index', model, log_dir=tmp) as server:
            driver = chromium(tmp / 'profile', args.width, args.height)
            try:
                driver.get(server.url + '/')
                box = driver.find_element(By.ID, 'k')
                box.clear()
                box.send_keys('12')
                driver.find_element(By.ID, 'caption').send_keys(args.caption + Keys.ENTER)
                WebDriverWait(driver, 120, 0.2).until(lambda d: d.execute_script(
                    "const imgs = [...document.querySelectorAll('#results img')];"
                    "return imgs.length === 12 && imgs.every((i) => i.complete && i.naturalWidth > 0);"))
                Path(args.out).parent.mkdir(parents=True, exist_ok=True)
                driver.save_screenshot(args.out)
            finally:
                driver.quit()
    sys.stderr.write('wrote %s\n' % args.out)
    return 0


if __name__ == '__main__':
    sys.exit(main())
