"""The web page of `clipworks serve` in real headless Chromium (Debian's chromium + chromium-driver, via Selenium):
a typed query shows the expected image first; an uploaded image shows the right label on top of the bars.

Not skippable: without /usr/bin/chromium the test fails and says how to install it (`make test` does, as root).
"""

import shutil
from pathlib import Path

import pytest

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
# The sandbox needs user namespaces that containers and root lack; the network is closed here, and without the
# background-networking flags Chromium waits on lookups that never answer.
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1200,900")


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if not CHROMIUM.exists() or not CHROMEDRIVER.exists():
        pytest.fail(f"{CHROMIUM} or {CHROMEDRIVER} is missing: run `make browser-deps` (apt-get install -y chromium "
                    "chromium-driver, as root) or `make test`, which does it", pytrace=False)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in FLAGS:
        options.add_argument(flag)
    profile = tmp_path_factory.mktemp("chromium-profile")
    options.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _wait(driver, css: str):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, css))
    return driver.find_elements(By.CSS_SELECTOR, css)


def test_typed_query_shows_the_expected_image_first(browser, search_server, search_collection):
    from selenium.webdriver.common.by import By

    browser.get(search_server.url + "/")
    _wait_text(browser, "#status", "42 images indexed (flat index)")
    box = browser.find_element(By.ID, "query")
    box.clear()
    box.send_keys(search_collection.blue_query)
    browser.find_element(By.ID, "search-button").click()
    results = _wait(browser, "#results .result")
    assert len(results) == 12  # the page asks for k=12
    assert results[0].get_attribute("data-path") == str(search_collection.blue.resolve())
    # The thumbnail really loaded (an <img> that failed to load has naturalWidth 0).
    image = results[0].find_element(By.TAG_NAME, "img")
    assert browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", image) == 64
    assert results[0].find_element(By.TAG_NAME, "figcaption").text.startswith("0.")


def test_uploaded_image_shows_the_right_top_label(browser, search_server, search_collection):
    from selenium.webdriver.common.by import By

    browser.get(search_server.url + "/")
    browser.find_element(By.ID, "file").send_keys(str(search_collection.red))
    browser.find_element(By.ID, "labels").send_keys("green, blue, red, yellow, purple, orange, white, black")
    browser.find_element(By.ID, "classify-button").click()
    rows = _wait(browser, "#label-results .label-row")
    assert [row.get_attribute("data-label") for row in rows][0] == "red"
    assert len(rows) == 8
    top_bar = rows[0].find_element(By.CLASS_NAME, "bar")
    width = float(top_bar.value_of_css_property("width").removesuffix("px"))
    track = float(rows[0].find_element(By.CLASS_NAME, "bar-track").value_of_css_property("width").removesuffix("px"))
    assert width / track == pytest.approx(float(rows[0].get_attribute("data-prob")), abs=0.01)

    browser.find_element(By.ID, "image-search-button").click()  # the same upload, as an image query
    first = _wait(browser, "#results .result")[0]
    assert first.get_attribute("data-path") == str(search_collection.red.resolve())
    # itself: 1.000 in fp32; where `auto` embeds in bf16, batch shapes round differently (~0.999)
    assert float(first.get_attribute("data-score")) >= 0.995


def test_errors_are_shown_on_the_page(browser, search_server, tmp_path):
    from selenium.webdriver.common.by import By

    browser.get(search_server.url + "/")
    text = tmp_path / "notes.jpg"
    text.write_text("not a picture")
    browser.find_element(By.ID, "file").send_keys(str(text))
    browser.find_element(By.ID, "labels").send_keys("a, b")
    browser.find_element(By.ID, "classify-button").click()
    _wait_text(browser, "#error", "not an image in a format Pillow reads")


def _wait_text(driver, css: str, text: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 30).until(
        lambda d: any(text in e.text for e in d.find_elements(By.CSS_SELECTOR, css)),
        message=f"{css} never showed {text!r}")
