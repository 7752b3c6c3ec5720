"""The generator's page in headless Chromium (Debian's chromium and chromium-driver, driven by
selenium): a person sets the parameters, generates, the song plays and its piano roll and
download links appear."""

from __future__ import annotations

import os
import shutil
import threading
import time

import pytest
import uvicorn

from gbsynth.common.broker import free_port
from gbsynth.generator.app import create_app
from gbsynth.generator.models import ModelHolder
from gbsynth.generator.service import Limits
from gbsynth.trainer.testing import make_tiny_checkpoint

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


@pytest.fixture
def server(tmp_path):
    make_tiny_checkpoint(tmp_path / "ckpt", step=6)
    holder = ModelHolder(tmp_path / "ckpt")
    assert holder.refresh()
    port = free_port()
    config = uvicorn.Config(
        create_app(holder, Limits(max_seconds=60)), host="127.0.0.1", port=port,
        log_level="warning",
    )  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=15)


@pytest.fixture
def browser(tmp_path):
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        pytest.fail("chromium and chromium-driver are needed (scripts/bootstrap.sh installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--disable-dev-shm-usage", "--mute-audio",
        "--autoplay-policy=no-user-gesture-required", "--window-size=1200,1000",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def wait_until(driver, script: str, seconds: float = 60.0):
    """Poll a JavaScript expression until it is truthy; return its value."""
    deadline = time.monotonic() + seconds
    while True:
        value = driver.execute_script(f"return ({script});")
        if value:
            return value
        if time.monotonic() > deadline:
            status = driver.execute_script("return document.getElementById('status').textContent")
            raise AssertionError(f"timed out waiting for {script!r}; page status: {status!r}")
        time.sleep(0.1)


def test_the_page_generates_a_song_that_plays(server, browser, tmp_path):
    browser.get(server + "/")
    wait_until(browser, "document.getElementById('model').textContent.includes('step 6')")
    # Set the parameters as a person would: an 8 s song, seed 12345.
    browser.execute_script(
        """
        const set = (id, v) => { const e = document.getElementById(id); e.value = v;
                                 e.dispatchEvent(new Event('input')); };
        set('seconds', 8); set('seed', 12345); set('temperature', 0.9);
        """
    )
    assert browser.find_element("id", "seconds-out").text == "0:08"
    browser.find_element("id", "generate").click()
    # The audio element plays: its time advances.
    wait_until(browser, "document.getElementById('player').currentTime > 0.3")
    first = browser.execute_script("return document.getElementById('player').currentTime")
    time.sleep(0.6)
    later = browser.execute_script("return document.getElementById('player').currentTime")
    assert later > first
    assert browser.execute_script("return document.getElementById('player').duration") == (
        pytest.approx(8.0, abs=0.05)
    )
    # The piano roll and the song's description arrive, the download links point at the song.
    wait_until(browser, "document.getElementById('status').textContent.startsWith('done')")
    about = browser.find_element("id", "about").text
    assert "model step 6" in about
    painted = browser.execute_script(
        """
        const c = document.getElementById('roll');
        const data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let lit = 0;
        for (let i = 3; i < data.length; i += 4) if (data[i] > 0) lit++;
        return lit;
        """
    )
    assert painted > 200
    wav = browser.find_element("id", "dl-wav").get_attribute("href")
    assert "/v1/songs/12345.wav" in wav and "seconds=8" in wav
    browser.save_screenshot(str(tmp_path / "page.png"))


def test_the_page_continues_an_uploaded_song(server, browser, tmp_path):
    """Upload a recording to continue: the page POSTs it as the prime, plays the result and
    offers the files it made."""
    from gbsynth.generator.models import load_model
    from gbsynth.generator.songs import SongParams, avro_bytes, generate

    opening = generate(
        load_model(next((tmp_path / "ckpt").glob("step-*.pt"))), SongParams(seconds=2.0, seed=1)
    )
    upload = tmp_path / "opening.avro"
    upload.write_bytes(avro_bytes(opening))
    browser.get(server + "/")
    wait_until(browser, "document.getElementById('model').textContent.includes('step 6')")
    browser.execute_script(
        "const e = document.getElementById('seconds'); e.value = 5;"
        "e.dispatchEvent(new Event('input'));"
    )
    browser.find_element("id", "prime").send_keys(str(upload))
    browser.find_element("id", "generate").click()
    wait_until(browser, "document.getElementById('status').textContent.startsWith('done')")
    wait_until(browser, "document.getElementById('player').currentTime > 0.3")
    assert browser.execute_script("return document.getElementById('player').duration") == (
        pytest.approx(5.0, abs=0.05)
    )
    for name in ("dl-wav", "dl-vgm", "dl-avro"):
        assert browser.find_element("id", name).get_attribute("href").startswith("blob:")
    assert "continued" in browser.find_element("id", "dl-vgm").get_attribute("download")
