"""The web page in a real headless Chromium (Debian's ``chromium`` + ``chromium-driver``, driven by
Selenium): choose a model, upload a real PNG and a real DICOM, read the probabilities off the page
and check them against `medpeft predict`; the heatmap is shown with its colour scale; the model card;
an error after an answer leaves no stale result; a 1x1 image is flagged. A screenshot is saved with the
test's files (its path is printed). Without Chromium the test skips, except under CI=true."""
from __future__ import annotations

import csv
import os
import shutil

import pytest

from medpeft.inference import predict_files

from ..conftest import in_ci
from ..runs import write_dicom, write_png

CHROMIUM = ("chromium", "chromium-browser", "google-chrome")


def chromium_paths() -> tuple[str, str]:
    browser = next((path for path in map(shutil.which, CHROMIUM) if path), None)
    driver = shutil.which("chromedriver")
    if browser and driver:
        return browser, driver
    message = ("no headless browser: the page test needs Chromium and its WebDriver "
               "(Debian: apt-get install chromium chromium-driver)")
    if in_ci():
        pytest.fail(message + "; CI=true, so it must run", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")  # session, as the server: so a missing browser skips before the server starts
def browser():
    binary, driver_path = chromium_paths()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--window-size=1280,900", "--disable-extensions", "--no-first-run"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def upload_and_read(browser, model: str, path) -> dict[str, float]:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.select import Select
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 60)
    wait.until(lambda b: b.find_element(By.TAG_NAME, "body").get_attribute("data-state") in ("ready", "done"))
    Select(browser.find_element(By.ID, "model")).select_by_value(model)
    browser.find_element(By.ID, "file").send_keys(str(path))
    wait.until(lambda b: b.find_element(By.TAG_NAME, "body").get_attribute("data-state") in ("done", "error")
               and path.name in b.find_element(By.ID, "status").text)
    status = browser.find_element(By.ID, "status").text
    assert browser.find_element(By.TAG_NAME, "body").get_attribute("data-state") == "done", status
    rows = browser.find_elements(By.CSS_SELECTOR, "#probabilities tbody tr")
    return {row.get_attribute("data-label"): float(row.get_attribute("data-probability")) for row in rows}


def test_the_page_shows_probabilities_and_the_heatmap(browser, live_server, served_runs, xray_images, tmp_path):
    from selenium.webdriver.common.by import By

    png = write_png(tmp_path / "chest.png", xray_images[3])
    dicom = write_dicom(tmp_path / "chest.dcm", xray_images[5])
    browser.get(live_server.url + "/")
    for model, path in (("breast-lora", dicom), ("pneu-lora", png)):
        shown = upload_and_read(browser, model, path)
        predict_files(served_runs[model], [path], tmp_path / f"{model}.csv")
        with open(tmp_path / f"{model}.csv", newline="") as handle:
            row = next(csv.DictReader(handle))
        assert shown == pytest.approx({label: float(row[f"prob_{label}"]) for label in shown}, abs=1e-6)
        assert browser.find_element(By.ID, "prediction").text == row["prediction"]
    overlay = browser.find_element(By.ID, "overlay")
    assert overlay.get_attribute("src").startswith("data:image/png;base64,")
    assert browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", overlay) >= 28
    assert "attention rollout" in browser.find_element(By.ID, "overlay-caption").text
    screenshot = tmp_path / "serve-page.png"
    assert browser.save_screenshot(str(screenshot)) and screenshot.stat().st_size > 10_000
    if os.environ.get("MEDPEFT_SCREENSHOT"):  # e.g. docs/img/serve-page.png for the README
        shutil.copy(screenshot, os.environ["MEDPEFT_SCREENSHOT"])
    print(f"screenshot: {screenshot}")


def test_the_page_clears_the_last_result_on_an_error_and_shows_the_card_and_scale(browser, live_server, xray_images,
                                                                                   tmp_path):
    """The issue's case: a DICOM answered, then a corrupt PNG: the 422 stands alone, no stale
    "normal / 77.9%" or heatmap under it; the model's card and the heatmap's colour scale show."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    good = write_dicom(tmp_path / "good.dcm", xray_images[2])
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(write_png(tmp_path / "whole.png", xray_images[2]).read_bytes()[:60])
    browser.get(live_server.url + "/")
    assert upload_and_read(browser, "pneu-lora", good)
    card = browser.find_element(By.ID, "card").text
    assert "test AUROC" in card and "medmnist:pneumoniamnist" in card and "binary: pneumonia" in card
    assert browser.find_element(By.ID, "scale").is_displayed()
    assert "DICOM window" in browser.find_element(By.ID, "scaling").text
    browser.find_element(By.ID, "file").send_keys(str(corrupt))
    WebDriverWait(browser, 60).until(lambda b: b.find_element(By.TAG_NAME, "body").get_attribute("data-state") == "error")
    status = browser.find_element(By.ID, "status").text
    assert "corrupt.png" in status and "422" in status
    assert browser.find_element(By.ID, "prediction").text == ""
    assert not browser.find_elements(By.CSS_SELECTOR, "#probabilities tbody tr")
    assert not browser.find_element(By.ID, "probabilities").is_displayed()
    assert not browser.find_element(By.ID, "pictures").is_displayed()
    assert browser.find_element(By.ID, "scaling").text == ""
    one_pixel = write_png(tmp_path / "dot.png", xray_images[2][:1, :1])
    browser.get(live_server.url + "/")  # upload_and_read starts from a ready page
    upload_and_read(browser, "pneu-lora", one_pixel)
    assert "1x1 pixels" in browser.find_element(By.ID, "warnings").text
