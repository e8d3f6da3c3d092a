"""The serve page in a real browser: Debian's Chromium, headless, driven by selenium, against
a real server over a real index. Skipped, saying why, where Chromium or its driver is missing."""
import sys
import urllib.parse

import pytest

from tests.support.serving_web import (chromium, chromium_missing, cli, get_json, requested_urls, serving,
                               write_model, write_photos)

MISSING = chromium_missing()
pytestmark = pytest.mark.skipif(MISSING is not None, reason=MISSING or '')

WAIT = 60


@pytest.fixture(scope='module')
def page(tmp_path_factory):
    """(driver, server, photos), the page open."""
    root = tmp_path_factory.mktemp('serve-browser')
    model = write_model(root / 'model')
    photos = write_photos(root / 'photos')
    r = cli(sys.executable, 'index', str(root / 'idx'), str(root / 'photos'), '--model-path', str(model))
    assert r.returncode == 0, r.stderr
    with serving(root / 'idx', model) as server:
        driver = chromium(root / 'profile')
        try:
            driver.get(server.url + '/')
            yield driver, server, photos
        finally:
            driver.quit()


def _wait(driver, condition, what):
    from selenium.webdriver.support.ui import WebDriverWait
    return WebDriverWait(driver, WAIT, poll_frequency=0.1).until(lambda d: condition(d), message=what)


def _shown(driver):
    """The result cards on the page, in order, once every thumbnail has loaded:
    [(id, score text, name)]; None while any is still loading."""
    return driver.execute_script("""
        const figs = [...document.querySelectorAll('#results figure')];
        if (!figs.every((f) => { const i = f.querySelector('img'); return i.complete && i.naturalWidth > 0; }))
            return null;
        return figs.map((f) => [Number(f.dataset.id), f.querySelector('.score').textContent,
                                f.querySelector('.name').textContent]);
    """)


def _until_results(driver, expected_ids, what):
    return _wait(driver, lambda d: (lambda s: s if s and [i for i, _, _ in s] == expected_ids else None)(_shown(d)),
                 what)


def _search(driver, caption, k=None):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    if k is not None:
        box = driver.find_element(By.ID, 'k')
        box.clear()
        box.send_keys(str(k))
    box = driver.find_element(By.ID, 'caption')
    box.clear()
    box.send_keys(caption + Keys.ENTER)


def test_caption_then_more_like_this_then_photo_then_an_error(page):
    from selenium.webdriver.common.by import By

    driver, server, photos = page
    origin = server.url

    # 1. A caption: the thumbnails in the API's order, each loaded, score and name shown.
    caption = 'two women playing with a red ball'
    _search(driver, caption)
    status, api = get_json(origin + '/api/search?' + urllib.parse.urlencode({'q': caption, 'k': 20}))
    assert status == 200 and len(api['results']) == len(photos)  # 8 rows, k defaults to 20
    shown = _until_results(driver, [r['id'] for r in api['results']], 'caption results')
    assert [(s, n) for _, s, n in shown] == [('%.4f' % r['score'], r['file'].rsplit('/', 1)[-1])
                                             for r in api['results']]
    assert driver.find_element(By.ID, 'error').is_displayed() is False

    # The number of results can be changed.
    _search(driver, caption, k=3)
    _until_results(driver, [r['id'] for r in api['results'][:3]], 'three results')

    # 2. Clicking a result shows it larger and searches by it.
    third = driver.find_elements(By.CSS_SELECTOR, '#results figure')[2]
    clicked = int(third.get_attribute('data-id'))
    third.click()
    similar = get_json(origin + '/api/similar/%d?k=3' % clicked)[1]
    _until_results(driver, [r['id'] for r in similar['results']], 'more like this')
    assert similar['results'][0]['id'] == clicked
    _wait(driver, lambda d: d.execute_script(
        "const i = document.getElementById('viewer-image');"
        "return !document.getElementById('viewer').hidden && i.complete && i.naturalWidth > 0"),
        'the larger view')

    # 3. Choosing a photo searches by it: itself first.
    chosen = next(p for p in photos if p.name == 'portrait-600x900.jpg')
    driver.find_element(By.ID, 'upload').send_keys(str(chosen))
    shown = _wait(driver, lambda d: (lambda s: s if s and s[0][2] == chosen.name and len(s) == 3 else None)(
        _shown(d)), 'photo results')
    assert shown[0][1] == '1.0000'

    # 4. An empty caption: the server's error on the page.
    _search(driver, '   ', k=20)
    error = _wait(driver, lambda d: (lambda e: e if e.is_displayed() and e.text else None)(
        d.find_element(By.ID, 'error')), 'the error')
    assert 'the caption is empty' in error.text

    # Every network request the browser made went to the page's own server (chrome://
    # pages of the browser's start-up tab are not network requests).
    network = [u for u in requested_urls(driver) if u.split(':', 1)[0] in ('http', 'https', 'ws', 'wss')]
    assert len(network) > 10
    assert all(u.startswith(origin + '/') for u in network), [u for u in network if not u.startswith(origin)]
