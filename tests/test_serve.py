"""`mimika serve`: every endpoint, every bad request, the token, CORS and the WebSocket, through
FastAPI's test client; then one real server process (uvicorn) for what only a socket shows: a
body over the limit refused before it is sent, and the WebSocket over the wire."""

from __future__ import annotations

import argparse
import base64
import concurrent.futures
import json
import os
import signal
import socket
import subprocess
import sys

import cv2
import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install -e '.[serve]'")
pytest.importorskip("httpx2", reason="FastAPI's test client needs httpx2 (the test extra)")

from fastapi.testclient import TestClient  # noqa: E402
from starlette.websockets import WebSocketDisconnect  # noqa: E402

import mimika  # noqa: E402
from mimika import cli  # noqa: E402
from mimika.prepare.detection import DEFAULT_DETECTOR, PRESETS, HaarDetector  # noqa: E402
from mimika.serve import add_arguments, main, settings_from_args  # noqa: E402
from mimika.serve.app import create_app  # noqa: E402
from mimika.serve.local import LocalServer  # noqa: E402
from mimika.serve.settings import ServeSettings  # noqa: E402

LIMIT_MB = 1  # the upload limit of the test servers


@pytest.fixture(scope="module")
def client():
    with TestClient(create_app(ServeSettings(max_upload_mb=LIMIT_MB))) as c:
        yield c


@pytest.fixture(scope="module")
def jpeg(astronaut_path) -> bytes:
    return astronaut_path.read_bytes()


@pytest.fixture(scope="module")
def png(astronaut_bgr) -> bytes:
    return cv2.imencode(".png", astronaut_bgr)[1].tobytes()


def post(client, data: bytes, path="/v1/predict", filename="astronaut.jpg", **fields):
    return client.post(path, files={"image": (filename, data, "application/octet-stream")},
                       data={k: str(v) for k, v in fields.items()})


def without_timing(doc: dict) -> dict:
    assert set(doc["timing"]) == {"read_ms", "decode_ms", "wait_ms", "predict_ms", "total_ms"}
    assert all(v >= 0 for v in doc["timing"].values())
    return {k: v for k, v in doc.items() if k != "timing"}


def error_of(response, status: int) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"} and isinstance(body["error"], str) and body["error"]
    assert "Traceback" not in body["error"] and "\n" not in body["error"]
    return body["error"]


# --- the endpoints ------------------------------------------------------------------------------

def test_predict_answers_the_object_of_predict_json(client, jpeg, astronaut_path, capsys):
    assert cli.main(["predict", str(astronaut_path), "--json"]) == 0
    expected = json.loads(capsys.readouterr().out)[0]
    r = post(client, jpeg)
    assert r.status_code == 200, r.text
    got = without_timing(r.json())
    assert got == {**expected, "file": "astronaut.jpg"}
    assert len(got["faces"]) == 1 and got["faces"][0]["label"] == expected["faces"][0]["label"]
    assert "predict;dur=" in r.headers["server-timing"]


def test_json_base64_and_data_uri_give_the_same_faces(client, jpeg):
    multipart = without_timing(post(client, jpeg).json())["faces"]
    b64 = base64.b64encode(jpeg).decode()
    for image in (b64, "data:image/jpeg;base64," + b64, base64.urlsafe_b64encode(jpeg).decode().rstrip("=")):
        r = client.post("/v1/predict", json={"image": image})
        assert r.status_code == 200, r.text
        assert r.json()["faces"] == multipart and r.json()["file"] == "upload"


def test_options_choose_model_detector_tta(client, png):
    default = post(client, png, filename="a.png").json()["faces"][0]
    seed = post(client, png, filename="a.png", model="seed").json()["faces"][0]
    assert set(seed["scores"]) == set(mimika.load_predictor("seed").labels) != set(default["scores"])
    no_flip = post(client, png, filename="a.png", tta="none").json()["faces"][0]
    assert no_flip["box"] == default["box"] and no_flip["scores"] != default["scores"]
    shifted = post(client, png, filename="a.png", tta="shift").json()["faces"][0]
    assert shifted["box"] == default["box"] and shifted["scores"] not in (default["scores"], no_flip["scores"])
    again = post(client, png, filename="a.png").json()["faces"][0]  # the shared model was not changed
    assert again == default
    haar = next(name for name, d in PRESETS.items() if isinstance(d, HaarDetector))  # the locked kind
    r = client.post("/v1/predict", json={"image": base64.b64encode(png).decode(), "detector": haar, "tta": "flip"})
    assert r.status_code == 200 and len(r.json()["faces"]) == 1
    assert r.json()["faces"][0]["box"] != default["box"]  # another detector frames her a little differently


def test_the_prior_option_answers_balanced_where_the_model_can(client, png):
    """prior=balanced: the default model's scores move toward the emotions rare in training (its
    own copy: the shared model answers as before); a model without class shares says why (400)."""
    default = post(client, png, filename="a.png").json()["faces"][0]
    balanced = post(client, png, filename="a.png", prior="balanced").json()["faces"][0]
    assert balanced["box"] == default["box"] and balanced["scores"]["contempt"] > default["scores"]["contempt"]
    assert post(client, png, filename="a.png").json()["faces"][0] == default
    assert "training class shares" in error_of(post(client, png, model="seed", prior="balanced"), 400)
    assert "'prior'" in error_of(post(client, png, prior="uniform"), 400)
    models = {m["name"]: m for m in client.get("/v1/models").json()["models"]}
    assert models["ferplus"]["priors"] == ["training", "balanced"] and models["seed"]["priors"] == ["training"]


def test_landmarks_pass_through_or_are_left_out(client, png):
    cnn = next(name for name, d in PRESETS.items() if not isinstance(d, HaarDetector))  # finds landmarks
    with_marks = post(client, png, filename="a.png", detector=cnn).json()["faces"][0]
    assert len(with_marks["landmarks"]) == 5 and all(len(p) == 2 for p in with_marks["landmarks"])
    without = post(client, png, filename="a.png", detector=cnn, landmarks="false").json()["faces"][0]
    assert without == {k: v for k, v in with_marks.items() if k != "landmarks"}
    annotated = post(client, png, "/v1/annotate", detector=cnn, landmarks="false")
    assert annotated.status_code == 200 and annotated.headers["x-mimika-faces"] == "1"


def test_annotate_answers_the_annotated_image(client, jpeg, astronaut_bgr):
    faces = post(client, jpeg).json()["faces"]
    for fmt, media in (("jpeg", "image/jpeg"), ("png", "image/png"), (None, "image/jpeg")):
        r = post(client, jpeg, "/v1/annotate", **({"format": fmt} if fmt else {}))
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == media and r.headers["x-mimika-faces"] == "1"
        img = cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_COLOR)
        assert img.shape == astronaut_bgr.shape
        x, y, w, h = faces[0]["box"]
        edge = img[y + h // 2, x].astype(int)  # the box's left edge, drawn in green
        assert edge[1] > 150 and edge[0] < 120 and edge[2] < 120, edge
        assert np.abs(img[5, 5].astype(int) - astronaut_bgr[5, 5]).max() < 30  # far from the face: the photo


def test_models_health_version_docs(client):
    info = client.get("/v1/models").json()
    names = {m["name"]: m for m in info["models"]}
    assert set(names) == set(mimika.shipped_models()) and info["default"] == "ferplus"
    assert names["ferplus"]["default"] and names["ferplus"]["labels"] == mimika.load_predictor("ferplus").labels
    assert names["ferplus"]["card"].startswith("# Model card: `ferplus`")
    assert names["ferplus.float"]["card"] == names["ferplus"]["card"]
    assert info["detectors"] == list(PRESETS) and info["default_detector"] == DEFAULT_DETECTOR
    assert client.get("/healthz").json() == {"status": "ready", "model": "ferplus", "detector": DEFAULT_DETECTOR}
    assert client.get("/version").json() == {"mimika": mimika.__version__, "api": "v1"}
    assert client.get("/docs").status_code == 200
    spec = client.get("/openapi.json").json()
    body = spec["paths"]["/v1/predict"]["post"]["requestBody"]["content"]
    assert {"multipart/form-data", "application/json"} <= set(body)
    assert "/v1/annotate" in spec["paths"] and "/v1/models" in spec["paths"]


def test_page_and_its_files_are_served_from_the_package(client):
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    for src in ("/static/app.js", "/static/style.css"):
        assert src in page.text
        assert client.get(src).status_code == 200
    for text in (page.text, client.get("/static/app.js").text, client.get("/static/style.css").text):
        assert "http://" not in text.replace("http://localhost:PORT", "") and "https://" not in text  # no CDN


def test_the_page_draws_live_boxes_in_the_colour_of_annotated_images(client):
    """One colour for a box, written once (annotate.COLOR): the server puts it in the page, whose
    script reads it from there."""
    from mimika.recognition.annotate import COLOR
    b, g, r = COLOR
    assert f'<meta name="mimika-box-color" content="rgb({r}, {g}, {b})">' in client.get("/").text
    script = client.get("/static/app.js").text
    assert "const BOX_COLOR = document.querySelector('meta[name=\"mimika-box-color\"]').content;" in script

def test_healthz_says_not_ready_while_loading():
    c = TestClient(create_app(ServeSettings()))  # no lifespan: nothing loaded, as in a worker's first moment
    r = c.get("/healthz")
    assert r.status_code == 503 and r.json()["status"] == "loading"


# --- bad requests -----------------------------------------------------------------------------

def test_not_an_image_corrupt_empty_and_wrong_fields_are_400(client, jpeg, png):
    assert "notes.txt: not a readable image" in error_of(post(client, b"just some text\n" * 40,
                                                              filename="notes.txt"), 400)
    assert "broken.png: not a readable image" in error_of(post(client, png[: len(png) // 2], filename="broken.png"), 400)
    assert "empty" in error_of(post(client, b""), 400)
    assert "empty body" in error_of(client.post("/v1/predict"), 400)
    assert "empty body" in error_of(client.post("/v1/predict", content=b"", headers={"content-type": "application/json"}), 400)
    files = {"photo": ("a.jpg", jpeg, "image/jpeg")}
    assert "unknown field 'photo'" in error_of(client.post("/v1/predict", files=files), 400)
    assert "missing field 'image'" in error_of(client.post("/v1/predict", data={"model": "seed"}, files={}), 400)
    assert "missing field 'image'" in error_of(client.post("/v1/predict", json={"model": "seed"}), 400)
    assert "unknown field 'img'" in error_of(client.post("/v1/predict", json={"img": "x"}), 400)
    assert "'tta'" in error_of(post(client, jpeg, tta="maybe"), 400)
    assert "'landmarks'" in error_of(post(client, jpeg, landmarks="perhaps"), 400)
    assert "'format'" in error_of(post(client, jpeg, "/v1/annotate", format="gif"), 400)
    assert "'format'" in error_of(post(client, jpeg, format="png"), 400)  # predict has no format: unknown field
    assert "unknown detector" in error_of(post(client, jpeg, detector="best"), 400)
    assert "not base64" in error_of(client.post("/v1/predict", json={"image": "not base64!"}), 400)
    assert "must be a string" in error_of(client.post("/v1/predict", json={"image": 12}), 400)
    assert "must be an object" in error_of(client.post("/v1/predict", json=["x"]), 400)
    assert "not valid JSON" in error_of(client.post("/v1/predict", content=b"{", headers={"content-type": "application/json"}), 400)
    assert "must be a file" in error_of(client.post("/v1/predict", data={"image": "abc"}), 400)
    assert "more than once" in error_of(client.post("/v1/predict", files=[("image", ("a.jpg", jpeg)), ("image", ("b.jpg", jpeg))]), 400)
    assert "Content-Type" in error_of(client.post("/v1/predict", content=jpeg, headers={"content-type": "image/jpeg"}), 415)
    assert "not allowed" in error_of(client.get("/v1/predict"), 405)
    assert "/nowhere" in error_of(client.get("/nowhere"), 404)


def test_json_nested_too_deeply_is_one_line_400_on_predict_and_the_stream(client, jpeg):
    """Python's JSON parser raises RecursionError past ~1,000 levels: a 400 like any bad JSON,
    not a 500 (the request) or a dropped socket (the stream)."""
    deep = "[" * 100_000 + "]" * 100_000
    for depth in (1_000, 100_000):
        text = "[" * depth + "]" * depth
        r = client.post("/v1/predict", content=text, headers={"content-type": "application/json"})
        assert "nested too deeply" in error_of(r, 400)
    with client.websocket_connect("/v1/stream") as ws:
        ws.send_text(deep)
        refused = ws.receive_json()
        assert refused["status"] == 400 and "nested too deeply" in refused["error"]
        ws.send_bytes(jpeg)  # the stream goes on
        assert len(ws.receive_json()["faces"]) == 1


def test_a_file_given_for_an_option_names_that_field(client, jpeg):
    files = [("image", ("a.jpg", jpeg)), ("model", ("m.onnx", b"not a name"))]
    message = error_of(client.post("/v1/predict", files=files), 400)
    assert "'model' must be a value, not a file" in message and "'image'" not in message.split("(")[0]
    files = [("image", ("a.jpg", jpeg)), ("format", ("f.txt", b"png"))]
    assert "'format' must be a value" in error_of(client.post("/v1/annotate", files=files), 400)
    assert "too many fields" in error_of(client.post("/v1/predict", files=[("image", ("a.jpg", jpeg))] * 9), 400)


def test_unknown_model_is_404_and_client_paths_are_never_read(client, jpeg):
    assert "unknown model 'nope'" in error_of(post(client, jpeg, model="nope"), 404)
    assert "unknown model" in error_of(post(client, jpeg, "/v1/annotate", model="nope"), 404)
    path = str(mimika.shipped_models()["seed"][".onnx"])  # a real model file, named by its path
    assert "unknown model" in error_of(post(client, jpeg, model=path), 404)
    for image in ("/etc/hostname", "file:///etc/hostname", "http://127.0.0.1:9/a.jpg", str(mimika.__file__)):
        assert error_of(client.post("/v1/predict", json={"image": image}), 400)


def test_uploads_over_the_limit_are_413(client, jpeg):
    big = jpeg + b"\0" * (LIMIT_MB * 1_000_000)
    assert "too large" in error_of(post(client, big), 413)
    assert "too large" in error_of(client.post("/v1/predict", json={"image": base64.b64encode(big).decode()}), 413)

    def chunks():  # no Content-Length: counted as it streams in
        for _ in range(30):
            yield b"\0" * 100_000
    assert "too large" in error_of(client.post("/v1/predict", content=chunks(), headers={"content-type": "application/json"}), 413)
    # at the limit it is read (and found not to be an image)
    assert "not a readable image" in error_of(post(client, b"\1" * (LIMIT_MB * 1_000_000)), 400)


def test_images_over_the_pixel_limit_are_400(jpeg):
    from mimika.prepare import images
    before = images.settings.max_pixels
    with TestClient(create_app(ServeSettings(max_pixels=100_000))) as c:
        assert "image too large (512 x 512 = 262,144 pixels; the limit is 100,000" in error_of(post(c, jpeg), 400)
        assert "too large" in error_of(post(c, jpeg, "/v1/annotate"), 400)
    assert images.settings.max_pixels == before  # restored when the app stops
    assert ServeSettings().max_pixels < images.DEFAULT_MAX_PIXELS


def test_one_bad_request_never_disturbs_the_others(client, jpeg, png, monkeypatch):
    good = without_timing(post(client, jpeg).json())
    bad = [b"", b"GIF89a" + b"\0" * 50, png[:300], b"\xff\xd8\xff" + os.urandom(2000)]

    def one(i):
        return post(client, jpeg) if i % 2 == 0 else post(client, bad[(i // 2) % len(bad)], filename="bad")
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(one, range(24)))
    for i, r in enumerate(answers):
        if i % 2 == 0:
            assert r.status_code == 200 and without_timing(r.json()) == good
        else:
            error_of(r, 400)
    # an unexpected failure is a 500 with one line, logged, and the next request is served
    state = client.app.state.mimika
    real = state.engine.predict
    monkeypatch.setattr(state.engine, "predict", lambda *a: (_ for _ in ()).throw(RuntimeError("boom")))
    c500 = TestClient(client.app, raise_server_exceptions=False)
    assert error_of(post(c500, jpeg), 500) == "internal error (logged on the server)"
    monkeypatch.setattr(state.engine, "predict", real)
    assert without_timing(post(client, jpeg).json()) == good


def test_concurrent_recognitions_in_one_worker(jpeg):
    """--threads 2: Haar detectors (not thread-safe) take turns, the CNN and the models run at once."""
    haar = next(name for name, d in PRESETS.items() if isinstance(d, HaarDetector))
    with TestClient(create_app(ServeSettings(threads=2))) as c:
        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            answers = list(pool.map(lambda i: post(c, jpeg, detector=haar if i % 2 else DEFAULT_DETECTOR), range(18)))
        engine = c.app.state.mimika.engine
        assert hasattr(engine.detector(haar), "lock") and not hasattr(engine.detector(DEFAULT_DETECTOR), "lock")
    assert all(r.status_code == 200 for r in answers)
    for parity in (0, 1):
        faces = [r.json()["faces"] for i, r in enumerate(answers) if i % 2 == parity]
        assert len(faces[0]) == 1 and all(f == faces[0] for f in faces)


# --- decoding in bounded processes -----------------------------------------------------------------

def test_a_decode_over_the_memory_bound_is_refused_and_the_next_is_served(jpeg):
    """Each upload is decoded in a decoder process bounded in memory (--max-decode-mb): a 12 MP
    PNG needs 12 MB gray and 36 MB in colour, over a bound of 8 MB; the worker answers 400 in one
    line and the same decoder serves the next upload. The decoders end with the app."""
    heavy = cv2.imencode(".png", np.zeros((3000, 4000, 3), np.uint8))[1].tobytes()
    with TestClient(create_app(ServeSettings(max_decode_mb=8))) as c:
        for path in ("/v1/predict", "/v1/annotate"):
            message = error_of(post(c, heavy, path, filename="heavy.png"), 400)
            assert message.startswith("heavy.png: ") and "--max-decode-mb" in message, message
            assert post(c, jpeg, path).status_code == 200
        decoders = [d.proc for d in c.app.state.mimika.decoders._idle.queue]
        assert len(decoders) == 2  # threads + 1
    assert all(proc.poll() is not None for proc in decoders)


def test_a_decode_over_the_time_bound_is_cancelled_and_its_decoder_replaced(jpeg):
    """A decoder that does not answer within --max-decode-seconds (here: stopped, as one stuck in a
    hostile file would be) is killed and replaced, and the upload answered 400; a decoder that died
    while idle is replaced before the next upload, which it does not fail."""
    with TestClient(create_app(ServeSettings(max_decode_seconds=1))) as c:
        assert post(c, jpeg).status_code == 200  # loaded
        pool = c.app.state.mimika.decoders
        stopped = [d.proc for d in pool._idle.queue]
        for proc in stopped:
            os.kill(proc.pid, signal.SIGSTOP)
        message = error_of(post(c, jpeg, filename="stuck.jpg"), 400)
        assert message == "stuck.jpg: not decoded within 1 s (the server's limit, --max-decode-seconds)"
        assert any(proc.poll() is not None for proc in stopped)  # killed
        for proc in stopped:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)  # died while idle
                proc.wait()
        for _ in range(3):
            assert post(c, jpeg).status_code == 200
        assert not {d.proc.pid for d in pool._idle.queue} & {proc.pid for proc in stopped}


# --- token, CORS ------------------------------------------------------------------------------

def test_token_is_required_on_the_api_only():
    with TestClient(create_app(ServeSettings(token="s3cret"))) as c:
        for path in ("/v1/predict", "/v1/annotate"):
            r = c.post(path, files={"image": ("a.jpg", b"x")})
            assert "token" in error_of(r, 401) and r.headers["www-authenticate"] == "Bearer"
        assert c.get("/v1/models").status_code == 401
        assert c.get("/v1/models", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert c.get("/v1/models", headers={"Authorization": "Basic s3cret"}).status_code == 401
        assert c.get("/v1/models", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        for open_path in ("/", "/healthz", "/version", "/static/app.js", "/docs"):
            assert c.get(open_path).status_code == 200, open_path


def test_cors_is_closed_unless_allowed(client):
    r = client.get("/version", headers={"Origin": "http://elsewhere.example"})
    assert "access-control-allow-origin" not in r.headers
    with TestClient(create_app(ServeSettings(cors=["http://app.example"]))) as c:
        pre = c.options("/v1/predict", headers={"Origin": "http://app.example", "Access-Control-Request-Method": "POST",
                                                 "Access-Control-Request-Headers": "authorization"})
        assert pre.status_code == 200 and pre.headers["access-control-allow-origin"] == "http://app.example"
        other = c.options("/v1/predict", headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"})
        assert "access-control-allow-origin" not in other.headers


# --- the WebSocket ------------------------------------------------------------------------------

def test_stream_answers_each_frame_and_survives_a_bad_one(client, jpeg):
    expected = without_timing(post(client, jpeg, landmarks="false").json())["faces"]
    with client.websocket_connect("/v1/stream") as ws:
        ws.send_text(json.dumps({"landmarks": False}))
        assert ws.receive_json()["options"]["landmarks"] is False
        ws.send_bytes(jpeg)
        first = ws.receive_json()
        assert first["faces"] == expected and first["file"] == "frame" and first["timing"]["predict_ms"] > 0
        ws.send_bytes(b"not an image")
        assert ws.receive_json()["status"] == 400
        ws.send_text(json.dumps({"model": "nope"}))
        refused = ws.receive_json()
        assert refused["status"] == 404 and refused["error"].startswith("unknown model 'nope'; models: fer2013")
        assert refused["options"]["model"] is None  # unchanged
        ws.send_text(json.dumps({"tta": "sometimes"}))
        assert ws.receive_json()["status"] == 400
        ws.send_text("{")
        assert ws.receive_json()["status"] == 400
        ws.send_bytes(b"\0" * (LIMIT_MB * 1_000_000 + 1))
        assert ws.receive_json()["status"] == 413
        ws.send_text(json.dumps({"model": "seed"}))
        assert ws.receive_json()["options"]["model"] == "seed"
        ws.send_bytes(jpeg)
        assert set(ws.receive_json()["faces"][0]["scores"]) == set(mimika.load_predictor("seed").labels)


def test_stream_checks_the_token_and_the_origin(jpeg):
    with TestClient(create_app(ServeSettings(token="s3cret"))) as c:
        with c.websocket_connect("/v1/stream") as ws:
            ws.send_bytes(jpeg)
            with pytest.raises(WebSocketDisconnect) as closed:
                ws.receive_json()
            assert closed.value.code == 1008
        with c.websocket_connect("/v1/stream") as ws:
            ws.send_text(json.dumps({"token": "wrong"}))
            with pytest.raises(WebSocketDisconnect):
                ws.receive_json()
        with c.websocket_connect("/v1/stream") as ws:
            ws.send_text(json.dumps({"token": "s3cret"}))
            ws.receive_json()
            ws.send_bytes(jpeg)
            assert len(ws.receive_json()["faces"]) == 1
        with c.websocket_connect("/v1/stream", headers={"Authorization": "Bearer s3cret"}) as ws:
            ws.send_bytes(jpeg)
            assert len(ws.receive_json()["faces"]) == 1
        # a page from another site may not use the stream (browsers apply no CORS to WebSockets)
        with pytest.raises(WebSocketDisconnect):
            with c.websocket_connect("/v1/stream", headers={"Origin": "http://evil.example"}) as ws:
                ws.receive_json()
        with c.websocket_connect("/v1/stream", headers={"Origin": "http://testserver",
                                                         "Authorization": "Bearer s3cret"}) as ws:
            ws.send_bytes(jpeg)
            assert len(ws.receive_json()["faces"]) == 1


# --- the command --------------------------------------------------------------------------------

def _args(*argv):
    p = argparse.ArgumentParser()
    add_arguments(p)
    return p.parse_args(list(argv))


def test_command_settings_warning_and_bad_arguments(monkeypatch, capsys):
    from mimika.serve import server
    runs = []
    monkeypatch.setattr(server, "run", runs.append)  # nothing listens in this test
    monkeypatch.delenv("MIMIKA_TOKEN", raising=False)
    assert main(_args("--port", "8123", "--workers", "2", "--cors", "http://a.example")) == 0
    assert (runs[-1].host, runs[-1].port, runs[-1].workers) == ("127.0.0.1", 8123, 2)
    assert "warning" not in capsys.readouterr().err
    assert ServeSettings.from_env().cors == ["http://a.example"]  # what the workers will read
    assert main(_args("--host", "0.0.0.0")) == 0
    assert "without a token" in capsys.readouterr().err
    assert main(_args("--host", "0.0.0.0", "--token", "t")) == 0
    assert "warning" not in capsys.readouterr().err
    assert ServeSettings.from_env().token == "t"
    monkeypatch.setenv("MIMIKA_TOKEN", "from-env")
    assert settings_from_args(_args()).token == "from-env"
    for bad in (["--model", "nope"], ["--detector", "best"], ["--workers", "0"], ["--max-upload-mb", "0"]):
        with pytest.raises(mimika.MimikaError):
            main(_args(*bad))


def test_threads_follow_the_cpu_affinity_not_the_machine(monkeypatch):
    """As the rest of mimika (`common.devices.cores`): a server pinned to 1 core of 8 runs
    recognitions with 1 thread each."""
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    assert ServeSettings().threads_per_recognition == 1
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    assert ServeSettings(workers=2).threads_per_recognition == 2


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_port_in_use_is_one_line_on_stderr(workers):
    from mimika.serve.local import serve_command
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = subprocess.run(serve_command() + ["--port", str(port), "--workers", workers], capture_output=True,
                             text=True, timeout=120)
    assert out.returncode == 2, out
    assert out.stderr == f"mimika: error: cannot listen on 127.0.0.1:{port}: Address already in use\n", out.stderr
    assert "Traceback" not in out.stdout


def test_listening_socket_gets_tcp_nodelay_on_accepted_connections():
    """uvicorn's own socket (--workers > 1) leaves Nagle on: 40 ms per keep-alive answer."""
    import asyncio

    from mimika.serve.server import APP, Config
    listener = Config(APP, host="127.0.0.1", port=0).bind_socket()
    assert listener.proto == socket.IPPROTO_TCP

    async def accepted_nodelay() -> int:
        got = asyncio.get_running_loop().create_future()
        server = await asyncio.get_running_loop().create_server(
            lambda: type("P", (asyncio.Protocol,), {"connection_made": lambda self, t: got.set_result(
                t.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))})(), sock=listener)
        _, writer = await asyncio.open_connection(*listener.getsockname())
        value = await asyncio.wait_for(got, 10)
        writer.close()
        server.close()
        return value
    assert asyncio.run(accepted_nodelay()) != 0


# --- a real server ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def server():
    """`mimika serve` (or `python -m mimika.serve`, the same code) on a free local port."""
    env = {k: v for k, v in os.environ.items() if k != "MIMIKA_TOKEN"}
    with LocalServer(["--max-upload-mb", str(LIMIT_MB)], env=env) as s:
        _SERVERS[s.port] = s
        yield s.url, s.port
        del _SERVERS[s.port]


_SERVERS: dict[int, LocalServer] = {}  # port -> the server, for its log and process


def test_real_server_refuses_a_large_body_before_reading_it(server):
    _, port = server
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                  b"Content-Length: 50000000\r\n\r\n--b\r\n")  # 50 MB announced, a few bytes sent
        answer = b""
        while chunk := s.recv(65536):  # the server answers and closes
            answer += chunk
        answer = answer.decode(errors="replace")
    assert answer.startswith("HTTP/1.1 413"), answer
    assert '"error":"upload too large' in answer


def test_real_server_answers_a_large_body_sent_whole_with_413(server):
    """Most clients (Python's urllib) send the whole body before reading: the server reads and
    drops the rest (lingering close, bounded), so they read the JSON 413, not a reset."""
    import urllib.error
    import urllib.request
    url, _ = server
    request = urllib.request.Request(url + "/v1/predict", data=b"\0" * (25 * LIMIT_MB * 1_000_000),
                                     headers={"Content-Type": "application/octet-stream"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    assert refused.value.code == 413
    assert json.loads(refused.value.read())["error"].startswith("upload too large")


def _exchange(port: int, data: bytes) -> bytes:
    """Send everything, then read the answer until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(data)
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    return answer


def test_real_server_answers_headers_over_the_bound_with_json_431(server):
    _, port = server
    answer = _exchange(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 1_000_000 + b"\r\n\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 431 ") and b"application/json" in head, answer[:300]
    assert json.loads(body)["error"].startswith("request headers too large")
    head, _, body = _exchange(port, b"NOT HTTP AT ALL\r\n\r\n").partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ") and json.loads(body)["error"].startswith("malformed HTTP request")


def test_real_server_stream_refuses_bad_text_in_one_line(server, jpeg):
    """Text that is no UTF-8 closes the stream with 1007 and one log line (no traceback); JSON
    nested too deeply is a 400 answer, and the stream goes on."""
    ws_client = pytest.importorskip("websockets.sync.client", reason="websockets (the serve extra) is not installed")
    from websockets.exceptions import ConnectionClosed
    url, port = server
    with ws_client.connect(f"ws://127.0.0.1:{port}/v1/stream", open_timeout=10, max_size=None) as ws:
        ws.send("[" * 5_000 + "]" * 5_000)
        refused = json.loads(ws.recv(timeout=10))
        assert refused["status"] == 400 and "nested too deeply" in refused["error"]
        ws.send(jpeg)
        assert len(json.loads(ws.recv(timeout=30))["faces"]) == 1
    with ws_client.connect(f"ws://127.0.0.1:{port}/v1/stream", open_timeout=10) as ws:
        ws.send(b'{"tta": "\xff\xfe"}', text=True)
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
        assert closed.value.rcvd.code == 1007
    log = _server_log(server)
    assert "Invalid UTF-8" in log and "Traceback" not in log and "UnicodeDecodeError" not in log


def _server_log(server) -> str:
    import httpx2 as httpx
    httpx.get(server[0] + "/healthz", timeout=10)  # the log is written before this answer
    return _SERVERS[server[1]].log()


def test_serving_never_imports_pytorch(astronaut_path):
    code = ("import sys; from fastapi.testclient import TestClient; from mimika.serve.app import create_app\n"
            "with TestClient(create_app()) as c:\n"
            f"    assert c.post('/v1/predict', files={{'image': open({str(astronaut_path)!r}, 'rb')}}).status_code == 200\n"
            "    assert c.get('/v1/models').status_code == 200\n"
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-W", "ignore", "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "False", out.stderr


def test_real_server_predicts_and_streams(server, jpeg):
    import httpx2 as httpx
    url, port = server
    r = httpx.post(url + "/v1/predict", files={"image": ("a.jpg", jpeg)}, data={"landmarks": "false"}, timeout=30)
    assert r.status_code == 200 and len(r.json()["faces"]) == 1
    ws_client = pytest.importorskip("websockets.sync.client", reason="websockets (the serve extra) is not installed")
    with ws_client.connect(f"ws://127.0.0.1:{port}/v1/stream", open_timeout=10) as ws:
        ws.send(json.dumps({"landmarks": False}))
        assert "options" in json.loads(ws.recv(timeout=10))
        for _ in range(3):
            ws.send(jpeg)
            assert json.loads(ws.recv(timeout=30))["faces"] == r.json()["faces"]
