"""The web explorer in a real browser (Debian's chromium driven by playwright; no browser download)."""
import shutil

import pytest

from live import make_run, start_server

sync_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    if not shutil.which("chromium"):
        pytest.skip("chromium is not installed (apt-get install chromium)")
    # a wider model than the API tests' so a 100-token answer takes long enough to press Stop in
    run = make_run(tmp_path_factory.mktemp("run"), d_model=256, n_heads=4, n_layers=6)
    proc, url = start_server(run, "--name", "explorer")
    with sync_api.sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(str(tmp_path_factory.mktemp("profile")), executable_path=CHROMIUM,
                                                   headless=True, args=FLAGS, viewport={"width": 1200, "height": 760})
        pg = ctx.new_page()
        pg.set_default_timeout(30000)
        pg.goto(url + "/")
        yield pg
        ctx.close()
    proc.terminate()
    proc.wait(10)


def test_type_stream_click_bars_sliders_stop(page):
    page.fill("#prompt", "And God said")
    page.fill("#max_tokens", "20")
    page.click("#generate")
    page.wait_for_function("document.querySelectorAll('#output .tok').length == 20")
    page.wait_for_selector("#status:has-text('finished: length')")
    assert page.inner_text("#output .prompt") == "And God said"

    # click a token: bars of the distribution it was drawn from, the chosen one marked
    page.click("#output .tok[data-i='3']")
    page.wait_for_selector("#bars .bar")
    assert page.locator("#bars .bar").count() == 12
    chosen = page.eval_on_selector("#output .tok[data-i='3']", "e => e.textContent")
    assert page.locator("#bars .bar.chosen").count() == 1
    widths = page.eval_on_selector_all("#bars .final", "els => els.map(e => parseFloat(e.style.width))")
    raws = page.eval_on_selector_all("#bars .raw", "els => els.map(e => parseFloat(e.style.width))")
    assert widths[0] > 0 and raws == sorted(raws, reverse=True)
    assert chosen in page.inner_text("#dist-title")

    # top-k = 2 on the slider: only two bars keep a processed probability
    page.eval_on_selector("#top_k", "e => { e.value = 2; e.dispatchEvent(new Event('input')); }")
    page.wait_for_function("document.querySelectorAll('#bars .bar.removed').length == 10")
    widths2 = page.eval_on_selector_all("#bars .final", "els => els.map(e => parseFloat(e.style.width))")
    assert all(w > 0 for w in widths2[:2]) and all(w == 0 for w in widths2[2:]) and widths2 != widths
    assert page.get_attribute("#bars .bar.removed >> nth=0", "title").endswith("(removed by top_k)")

    # a long answer, stopped after the first tokens: the stream ends early and the server frees the row
    page.eval_on_selector("#top_k", "e => { e.value = 0; e.dispatchEvent(new Event('input')); }")
    page.fill("#max_tokens", "100")
    page.click("#generate")
    page.wait_for_selector("#output .tok")
    page.click("#stop")
    page.wait_for_selector("#status:has-text('stopped after')")
    n = page.locator("#output .tok").count()
    assert 1 <= n < 100
    assert page.is_enabled("#generate") and page.is_enabled("#regenerate")
