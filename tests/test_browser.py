"""The page in a real browser: headless Chromium (Debian's chromium + chromium-driver, driven by
Selenium) opens the page served by `mimika serve` on a free local port. Its fake camera plays a
clip made from the astronaut photo; the test checks that the page draws a box and a label on her
face over the video, that an uploaded photo comes back annotated with her scores as bars, and
that a refused or missing camera is said so. It saves a screenshot (the README's picture when
MIMIKA_SCREENSHOT names a file: MIMIKA_SCREENSHOT=docs/serve.png pytest tests/test_browser.py).

Without Chromium, its driver or Selenium the test is skipped, saying which is missing (.ci/run
installs them with apt where it can)."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from mimika.recognition.annotate import COLOR

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
BOX_GREEN = COLOR[::-1]  # RGB of the boxes the page draws (annotate.py's colour, BGR)


def _missing() -> str | None:
    for module in ("fastapi", "uvicorn", "websockets"):
        try:
            __import__(module)
        except ImportError:
            return f"the serve extra is not installed ({module} missing): pip install -e '.[serve]'"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install selenium)"
    if not CHROMIUM or not DRIVER:
        return "Chromium or its driver is not installed (apt-get install chromium chromium-driver)"
    return None


pytestmark = pytest.mark.skipif(_missing() is not None, reason=f"browser test skipped: {_missing()}")


def fake_camera_clip(path: Path, photo: Path, frames: int = 20, fps: int = 10) -> Path:
    """A Y4M clip (what Chromium's fake camera plays, looped): the photo on a 640x480 frame,
    drifting a few pixels from frame to frame like a hand-held camera."""
    bgr = cv2.imread(str(photo))
    canvas = np.full((480, 640, 3), np.median(bgr, axis=(0, 1)), np.uint8)
    canvas[:, 80:560] = cv2.resize(bgr, (480, 480), interpolation=cv2.INTER_AREA)
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W640 H480 F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for i in range(frames):
            shift = round(6 * np.sin(2 * np.pi * i / frames))
            frame = np.roll(canvas, shift, axis=1)
            f.write(b"FRAME\n" + cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_I420).tobytes())
    return path


def chromium(user_dir: Path, clip: Path | None = None, width: int = 1280, height: int = 1000):
    """Headless Chromium under Selenium, with a fake camera playing `clip` (allowed without asking)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={user_dir}", f"--window-size={width},{height}",
                 "--autoplay-policy=no-user-gesture-required"):
        opts.add_argument(flag)
    if clip is not None:
        opts.add_argument("--use-fake-ui-for-media-stream")
        opts.add_argument("--use-fake-device-for-media-stream")
        opts.add_argument(f"--use-file-for-fake-video-capture={clip}")
    return webdriver.Chrome(options=opts, service=Service(executable_path=DRIVER))


def wait_for(driver, script: str, timeout: float = 20, what: str = ""):
    """Poll a JavaScript expression until it is truthy; its value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = driver.execute_script(f"return ({script});")
        if value:
            return value
        time.sleep(0.1)
    said = driver.execute_script("return document.getElementById('message').textContent")
    raise AssertionError(f"timed out waiting for {what or script}; the page says {said!r}")


def pixel(driver, element_id: str, x: float, y: float) -> tuple[int, int, int, int]:
    """RGBA of a canvas pixel, or of an <img> drawn on a canvas, at (x, y) in its own pixels."""
    return tuple(driver.execute_script("""
        const el = document.getElementById(arguments[0]);
        let ctx = el.getContext ? el.getContext('2d') : null;
        if (!ctx) { const c = document.createElement('canvas'); c.width = el.naturalWidth; c.height = el.naturalHeight;
                    ctx = c.getContext('2d'); ctx.drawImage(el, 0, 0); }
        return Array.from(ctx.getImageData(Math.round(arguments[1]), Math.round(arguments[2]), 1, 1).data);
    """, element_id, x, y))


def is_green(rgba, tolerance: int = 40) -> bool:
    return rgba[3] > 200 and all(abs(a - b) <= tolerance for a, b in zip(rgba[:3], BOX_GREEN))


@pytest.fixture(scope="module")
def server():
    from mimika.serve.local import LocalServer
    env = {k: v for k, v in os.environ.items() if k != "MIMIKA_TOKEN"}
    with LocalServer(env=env) as s:
        yield s


def test_page_reads_the_webcam_and_a_dropped_photo(server, astronaut_path, tmp_path):
    import httpx2 as httpx
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    expected = httpx.post(server.url + "/v1/predict", files={"image": ("a.jpg", astronaut_path.read_bytes())},
                          timeout=30).json()["faces"]
    assert len(expected) == 1
    clip = fake_camera_clip(tmp_path / "clip.y4m", astronaut_path)
    driver = chromium(tmp_path / "profile", clip)
    try:
        driver.get(server.url + "/")
        wait_for(driver, "document.getElementById('model').options.length > 0", what="the model list")

        # a photo: chosen with the file input, answered with the annotated photo and the scores as bars
        driver.find_element(By.ID, "file").send_keys(str(astronaut_path))
        wait_for(driver, "document.getElementById('annotated').complete && "
                         "document.getElementById('annotated').naturalWidth > 0 && "
                         "!document.getElementById('photo-result').hidden", what="the annotated photo")
        assert driver.execute_script("return document.getElementById('annotated').naturalWidth") == 512
        x, y, w, h = expected[0]["box"]
        assert is_green(pixel(driver, "annotated", x, y + h / 2)), "no box on the annotated photo"
        cards = driver.find_elements(By.CSS_SELECTOR, "#photo-faces .face")
        assert len(cards) == 1 and cards[0].find_element(By.TAG_NAME, "h3").text.startswith(
            f"Face 1: {expected[0]['label']}")
        bars = cards[0].find_elements(By.CSS_SELECTOR, ".bar")
        assert [b.find_element(By.TAG_NAME, "span").text for b in bars] == list(expected[0]["scores"])
        widths = [float(b.find_element(By.CSS_SELECTOR, ".fill").get_attribute("style").split("width:")[1]
                        .split("%")[0]) for b in bars]
        assert widths[0] == pytest.approx(100 * max(expected[0]["scores"].values()), abs=0.1)
        driver.save_screenshot(str(tmp_path / "photo.png"))

        # the webcam: frames over the WebSocket, a box and a label drawn over the video
        driver.find_element(By.ID, "tab-camera").click()
        driver.find_element(By.ID, "camera-start").click()
        wait_for(driver, "window.mimikaLive.frames >= 5 && window.mimikaLive.last.faces.length >= 1",
                 what="answered frames with a face")
        time.sleep(3)  # a few seconds of frames: the frame rate settles and the chart fills
        # the answer and the overlay's pixels read in one script: no frame is drawn in between
        live, drawn = driver.execute_script("""
            const live = window.mimikaLive, overlay = document.getElementById('overlay');
            const ctx = overlay.getContext('2d'), s = overlay.width / live.frameSize.width;
            const at = (x, y) => Array.from(ctx.getImageData(Math.round(x * s), Math.round(y * s), 1, 1).data);
            const [x, y, w, h] = live.last.faces[0].box;
            return [live, {box: at(x, y + h / 2), label: at(x, y - 12 / s),
                           landmarks: (live.last.faces[0].landmarks || []).map(([a, b]) => at(a, b))}];
        """)
        faces, frame = live["last"]["faces"], live["frameSize"]
        assert frame == {"width": 640, "height": 480}
        assert len(faces) == 1 and faces[0]["label"] == expected[0]["label"]
        fx = faces[0]["box"][0]  # her face: where the clip put the photo's face
        assert 80 + 480 * x / 512 - 30 < fx < 80 + 480 * x / 512 + 30, (faces, expected)
        assert is_green(drawn["box"]), "no box drawn on the video"
        assert is_green(drawn["label"]), "no label drawn above the box"
        assert len(drawn["landmarks"]) == len(expected[0].get("landmarks", [])), "landmarks not passed through"
        assert all(is_green(p) for p in drawn["landmarks"]), "landmarks not drawn"
        live_label = driver.execute_script(  # read in one go: the list is redrawn with every frame
            "return document.querySelector('#live-faces .face h3').textContent")
        assert live_label.startswith(f"Face 1: {faces[0]['label']}")
        default = next(m for m in httpx.get(server.url + "/v1/models").json()["models"] if m["default"])
        assert driver.find_element(By.ID, "legend").text.split() == default["labels"]  # the chart's lines
        print(f"\nlive page: {live['frames']} frames answered, {live['fps']:.1f} frames/s (the page sends at most "
              f"10/s), {live['errors']} errors; {live['last']['timing']['predict_ms']:.1f} ms per frame on the server")
        assert live["errors"] == 0
        shot = tmp_path / "serve.png"
        driver.save_screenshot(str(shot))
        if os.environ.get("MIMIKA_SCREENSHOT"):
            shutil.copyfile(shot, os.environ["MIMIKA_SCREENSHOT"])
        print(f"screenshots: {shot} and {tmp_path / 'photo.png'}")

        # the prior menu: the default model offers both; "balanced" reaches the live answers at once
        prior = Select(driver.find_element(By.ID, "prior"))
        assert [o.text for o in prior.options] == ["training", "balanced"] and prior.first_selected_option.text == "training"
        contempt = faces[0]["scores"]["contempt"]
        prior.select_by_visible_text("balanced")
        wait_for(driver, "window.mimikaLive.last.faces.length >= 1 && "
                         f"window.mimikaLive.last.faces[0].scores.contempt > {10 * contempt}", what="balanced answers")
        assert driver.execute_script("return window.mimikaLive.errors") == 0
        driver.find_element(By.ID, "camera-stop").click()

        # a refused or missing camera is said so
        for name, says in (("NotAllowedError", "The camera was refused"), ("NotFoundError", "No camera was found")):
            driver.execute_script("navigator.mediaDevices.getUserMedia = () => Promise.reject("
                                  "new DOMException('no', arguments[0]));", name)
            driver.find_element(By.ID, "camera-start").click()
            wait_for(driver, f"document.getElementById('message').textContent.startsWith({json.dumps(says)})",
                     timeout=5, what=says)
            assert "error" in driver.find_element(By.ID, "message").get_attribute("class")
    finally:
        driver.quit()
