"""The song page in headless Chromium (as tests/test_generator_browser.py): the piano roll is
drawn while the song plays and its cursor moves, the served model's facts show, the song
joins this browser's list and plays again to the same song, and each download button saves
a file of its type (WAV, VGM, Game Boy ROM, Avro)."""

from __future__ import annotations

import time

from test_generator_browser import browser, server, wait_until  # noqa: F401 (fixtures)

from gbsynth.emulator.core.cartridge.header import NINTENDO_LOGO
from gbsynth.trainer.song_plan import SongPlan

MAGIC = {
    "wav": (0, b"RIFF"),
    "vgm": (0, b"Vgm "),
    "gb": (0x104, NINTENDO_LOGO),
    "avro": (0, b"Obj\x01"),
}

LIT_PIXELS = """
const c = document.getElementById('roll');
const data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
let lit = 0;
for (let i = 3; i < data.length; i += 4) if (data[i] > 0) lit++;
return [lit, c.toDataURL()];
"""


def _set_song(driver, seconds: int, seed: int) -> None:
    driver.execute_script(
        """
        const set = (id, v) => { const e = document.getElementById(id); e.value = v;
                                 e.dispatchEvent(new Event('input')); };
        set('seconds', arguments[0]); set('seed', arguments[1]);
        """,
        seconds,
        seed,
    )


def test_the_roll_plays_the_song_is_listed_and_every_download_is_its_file(
    server,  # noqa: F811
    browser,  # noqa: F811
    tmp_path,
):
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    browser.execute_cdp_cmd(
        "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
    )
    browser.get(server + "/")
    wait_until(browser, "document.getElementById('model-facts').textContent.includes('trained')")
    facts = browser.find_element("id", "model-facts").text
    assert "made" in facts and "ago" in facts and "parameters" in facts
    assert browser.find_element("css selector", "a[href='/dashboard']")
    _set_song(browser, 12, 4242)
    browser.find_element("id", "generate").click()

    # While it plays: the roll is drawn, and the cursor moves (the canvas changes).
    wait_until(browser, "!!document.getElementById('about').textContent")
    wait_until(browser, "document.getElementById('player').currentTime > 0.5")
    playing = "(p => !p.paused && !p.ended)(document.getElementById('player'))"
    assert browser.execute_script(f"return {playing};")
    lit, first = browser.execute_script(LIT_PIXELS)
    assert lit > 200, "the piano roll is blank while the song plays"
    time.sleep(0.5)
    assert browser.execute_script(f"return {playing};")
    lit_later, later = browser.execute_script(LIT_PIXELS)
    assert lit_later > 200 and later != first, "the cursor does not move"
    browser.save_screenshot(str(tmp_path / "song-page.png"))

    # The song is in this browser's list; "Play again" makes the same song.
    wait_until(browser, "document.getElementById('status').textContent.startsWith('done')")
    about = browser.find_element("id", "about").text
    entries = browser.find_elements("css selector", "#songs li")
    assert len(entries) == 1 and "seed 4242" in entries[0].text and "12 s" in entries[0].text
    plan = str(SongPlan.for_seed(4242))  # no plan asked: the seed's own, named on the page
    assert f"plan {plan}" in about and f"plan {plan}" in entries[0].text
    _set_song(browser, 5, 1)
    browser.find_element("css selector", "#songs li button.replay").click()
    wait_until(browser, "document.getElementById('status').textContent.startsWith('done')")
    assert browser.find_element("id", "seed").get_attribute("value") == "4242"
    assert browser.find_element("id", "about").text == about  # same song key, same writes
    assert len(browser.find_elements("css selector", "#songs li")) == 1

    # Each download button saves its file.
    for fmt, (offset, magic) in MAGIC.items():
        browser.find_element("id", f"dl-{fmt}").click()
        name = f"gbsynth-seed4242-12s.{fmt}"
        deadline = time.monotonic() + 60
        while not (downloads / name).is_file():
            assert time.monotonic() < deadline, f"{name} was not downloaded"
            time.sleep(0.2)
        data = (downloads / name).read_bytes()
        assert data[offset : offset + len(magic)] == magic, fmt
    wav = (downloads / "gbsynth-seed4242-12s.wav").read_bytes()
    assert len(wav) == 44 + 12 * 44_100 * 4
