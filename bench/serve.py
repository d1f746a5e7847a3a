"""Load on `mimika serve`: N concurrent clients (1, 8, 32) posting one 640x480 photo with one face
to /v1/predict for a fixed time; requests/s, p50/p99 latency, errors, the server's memory (all
its processes) at the start and end of each run; and the same photo predicted in-process by the
same number of worker processes, before and after the runs (their mean is the reference). Optionally the live page's frame rate in
headless Chromium with a fake camera (--page-seconds).

    python bench/serve.py [--workers 2] [--threads 1] [--cpu-threads 0] [--clients 1,8,32] [--seconds 20]
                          [--long 60] [--page-seconds 10] [--hostile 4]

--hostile N runs each setting again with N more clients posting hostile uploads in turn (a PNG
whose data chunk claims 4 GiB, a PNG of 48 MP of one colour: `hostile_uploads`), mixed into the
load: the normal requests' p50 / p99 beside those of the run alone, what the hostile uploads were
answered, and the server's peak memory (all its processes, sampled every 0.25 s).

The clients run on this machine too (a thread each, keep-alive HTTP/1.1, http.client: little CPU),
so they share the 2 cores with the server, as a page on a laptop does. The machine's load average
is printed before and after: other jobs on it slow every figure here, except the CPU time each
request costs the server (all its processes), compared with the CPU time of an image predicted
in-process: the server's own overhead, whatever else runs.
"errors": answers other than 200, failed connections, and answers without exactly one face.
"""

from __future__ import annotations

import argparse
import http.client
import multiprocessing as mp
import os
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import cv2
import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PHOTO = ROOT / "mimika" / "samples" / "astronaut.jpg"


def photo_640x480_jpeg() -> bytes:
    """The astronaut on a 640x480 canvas (as bench/detection.py's photo, in color), JPEG."""
    bgr = cv2.imread(str(PHOTO))
    canvas = np.full((480, 640, 3), np.median(bgr, axis=(0, 1)), np.uint8)
    canvas[:, 80:560] = cv2.resize(bgr, (480, 480), interpolation=cv2.INTER_AREA)
    return cv2.imencode(".jpg", canvas, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()


# --- in process -----------------------------------------------------------------------------------

def _in_process_worker(jpeg: bytes, seconds: float, threads: int, start, out) -> None:
    """A worker like the server's: the default model and detector, `threads` CPU threads each."""
    import mimika
    from mimika.prepare.detection import DEFAULT_DETECTOR, PRESETS
    cv2.setNumThreads(threads)
    detector = mimika.get_detector(DEFAULT_DETECTOR, **({"threads": threads} if hasattr(PRESETS[DEFAULT_DETECTOR],
                                                                                        "threads") else {}))
    rec = mimika.Recognizer(mimika.load_predictor(None, threads=threads), detector)
    for _ in range(5):
        rec.get(jpeg)
    start.wait()
    n, t0, c0 = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - t0 < seconds:
        rec.get(jpeg)
        n += 1
    out.put((n, time.perf_counter() - t0, time.process_time() - c0))


def in_process(jpeg: bytes, workers: int, threads: int, seconds: float) -> tuple[float, float]:
    """Images/s of `workers` processes each running Recognizer.get on the photo, and the CPU
    milliseconds each image cost."""
    ctx = mp.get_context("spawn")
    start, out = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_in_process_worker, args=(jpeg, seconds, threads, start, out)) for _ in range(workers)]
    for p in procs:
        p.start()
    time.sleep(3)  # all loaded
    start.set()
    results = [out.get(timeout=seconds + 120) for _ in procs]
    for p in procs:
        p.join()
    return sum(n / t for n, t, _ in results), 1e3 * sum(c for *_, c in results) / sum(n for n, *_ in results)


# --- load -------------------------------------------------------------------------------------------

def multipart(data: bytes, media: str = "image/jpeg") -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"photo\"\r\n"
            f"Content-Type: {media}\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def hostile_uploads() -> list[tuple[str, bytes]]:
    """The uploads that cost a server most, by what they do to a decoder: a 640x480 PNG whose data
    chunk claims 4 GiB (issue #31: 4.2 GiB and 10 s in the worker itself), and a PNG of 8000 x 6000
    pixels of one colour (148 kB; the most pixels the server takes, 144 MB and over a second to
    decode)."""
    import struct
    bomb = bytearray(cv2.imencode(".png", np.full((480, 640, 3), 128, np.uint8))[1].tobytes())
    struct.pack_into(">I", bomb, bomb.find(b"IDAT") - 4, 0xFFFFFFF0)
    return [("png-claims-4GiB", bytes(bomb)),
            ("png-48MP", cv2.imencode(".png", np.zeros((6000, 8000, 3), np.uint8))[1].tobytes())]


def load(port: int, body: bytes, ctype: str, clients: int, seconds: float, hostile: int = 0,
         server_pid: int | None = None, kinds: tuple[str, ...] = ()) -> dict:
    """`clients` threads posting the photo back to back for `seconds`; beside them `hostile` threads
    posting `hostile_uploads` in turn (their answers counted apart); the server's memory (all its
    processes) sampled meanwhile."""
    latencies: list[float] = []
    errors: list[str] = []
    wrong = [0]
    hostile_answers: list[tuple[str, str, float]] = []  # (upload, status, seconds)
    lock = threading.Lock()
    stop = time.perf_counter() + seconds
    ready = threading.Barrier(clients + hostile + 1)
    uploads = [(name, *multipart(data, "image/png")) for name, data in hostile_uploads() if name in kinds]

    def post(conn, data: bytes, kind: str):
        conn.request("POST", "/v1/predict", data, {"Content-Type": kind})
        r = conn.getresponse()
        return r.status, r.read()

    def client():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        ready.wait()
        while time.perf_counter() < stop:
            t = time.perf_counter()
            try:
                status, data = post(conn, body, ctype)
                dt = time.perf_counter() - t
                with lock:
                    if status != 200:
                        errors.append(f"{status} {data[:100]!r}")
                    else:
                        latencies.append(dt)
                        wrong[0] += data.count(b'"box"') != 1
            except (OSError, http.client.HTTPException) as e:
                with lock:
                    errors.append(f"{type(e).__name__}: {e}")
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.close()

    def hostile_client(first: int):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        ready.wait()
        i = first
        while time.perf_counter() < stop:
            name, data, kind = uploads[i % len(uploads)]
            i += 1
            t = time.perf_counter()
            try:
                status, _ = post(conn, data, kind)
                outcome = str(status)
            except (OSError, http.client.HTTPException) as e:
                outcome = type(e).__name__
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            with lock:
                hostile_answers.append((name, outcome, time.perf_counter() - t))
        conn.close()

    peak = [tree_rss_mib(server_pid) if server_pid else 0.0]

    def sample_memory():
        while time.perf_counter() < stop:
            peak[0] = max(peak[0], tree_rss_mib(server_pid))
            time.sleep(0.25)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    threads += [threading.Thread(target=hostile_client, args=(i,)) for i in range(hostile)]
    for t in threads:
        t.start()
    ready.wait()
    t0 = time.perf_counter()
    sampler = threading.Thread(target=sample_memory) if server_pid else None
    if sampler:
        sampler.start()
    for t in threads + ([sampler] if sampler else []):
        t.join()
    wall = time.perf_counter() - t0
    lat = sorted(latencies)
    pct = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1e3 if lat else float("nan")
    return {"clients": clients, "seconds": wall, "requests": len(lat), "rps": len(lat) / wall, "p50": pct(0.50),
            "p99": pct(0.99), "errors": len(errors), "wrong": wrong[0], "error_examples": errors[:3],
            "hostile": hostile, "hostile_answers": hostile_answers, "rss_peak": peak[0]}


def hostile_summary(answers: list[tuple[str, str, float]]) -> str:
    """Per hostile upload: how many were answered, with which status, and the median time."""
    out = []
    for name in dict.fromkeys(a[0] for a in answers):
        mine = [a for a in answers if a[0] == name]
        statuses = Counter(a[1] for a in mine)
        median = sorted(a[2] for a in mine)[len(mine) // 2] * 1e3
        out.append(f"{name}: {len(mine)} ({', '.join(f'{k} x{v}' for k, v in sorted(statuses.items()))}; "
                   f"median {median:.0f} ms)")
    return "; ".join(out) or "none answered"


def tree_rss_mib(pid: int) -> float:
    """Resident memory of a process and all its descendants (uvicorn's workers), MiB."""
    return sum(_status_kib(p, "VmRSS") for p in _tree(pid)) / 1024


def tree_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) used so far by a process and all its descendants."""
    total = 0
    for p in _tree(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, ValueError, IndexError):
            pass
    return total / os.sysconf("SC_CLK_TCK")


def _status_kib(pid: int, key: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith(key + ":"))
    except (OSError, StopIteration):
        return 0


def _tree(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry))
            except (OSError, ValueError, IndexError):
                pass
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo.extend(children.get(p, []))
    return found


# --- the page --------------------------------------------------------------------------------------

def page_fps(url: str, seconds: float, caps: list[int]) -> dict[int, float]:
    """Frames answered per second in the page's webcam mode (Chromium's fake camera playing a clip
    of the astronaut), for each frame-rate cap the page offers."""
    import tempfile
    sys.path.insert(0, str(ROOT / "tests"))
    from test_browser import chromium, fake_camera_clip  # the browser test's own helpers
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        clip = fake_camera_clip(Path(tmp) / "clip.y4m", PHOTO)
        driver = chromium(Path(tmp) / "profile", clip)
        try:
            driver.get(url + "/")
            for cap in caps:
                driver.execute_script("document.getElementById('tab-camera').click();"
                                      "document.getElementById('max-fps').value = String(arguments[0]);", cap)
                driver.execute_script("document.getElementById('camera-start').click()")
                deadline = time.monotonic() + 30
                while not driver.execute_script("return window.mimikaLive.frames >= 3") and time.monotonic() < deadline:
                    time.sleep(0.1)
                n0, t0 = driver.execute_script("return [window.mimikaLive.frames, performance.now()]")
                time.sleep(seconds)
                n1, t1 = driver.execute_script("return [window.mimikaLive.frames, performance.now()]")
                errors = driver.execute_script("return window.mimikaLive.errors")
                out[cap] = (n1 - n0) * 1000 / (t1 - t0)
                print(f"  page, at most {cap}/s: {out[cap]:.1f} frames/s over {seconds:.0f} s ({errors} errors)",
                      flush=True)
                driver.execute_script("document.getElementById('camera-stop').click()")
        finally:
            driver.quit()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1, help="recognitions at once per worker (mimika serve --threads)")
    ap.add_argument("--cpu-threads", type=int, default=0, help="mimika serve --cpu-threads (0: its default)")
    ap.add_argument("--clients", default="1,8,32")
    ap.add_argument("--seconds", type=float, default=20, help="each run's length")
    ap.add_argument("--long", type=float, default=60, help="the length of the run with the most clients")
    ap.add_argument("--in-process-seconds", type=float, default=15, help="0: no in-process reference")
    ap.add_argument("--page-seconds", type=float, default=0, help="also measure the page's frame rate (Chromium)")
    ap.add_argument("--hostile", type=int, default=0, metavar="N", help="run each setting again with N more clients "
                    "posting hostile uploads (hostile_uploads), mixed into the load")
    ap.add_argument("--hostile-kinds", default="png-claims-4GiB,png-48MP", help="which of hostile_uploads, in turn")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from mimika.serve.local import LocalServer

    jpeg = photo_640x480_jpeg()
    import mimika
    assert len(mimika.Recognizer().get(jpeg)) == 1, "the photo should hold one face"
    clients = [int(c) for c in args.clients.split(",")]
    from mimika.serve.settings import ServeSettings
    cpu_threads = ServeSettings(workers=args.workers, threads=args.threads,
                                cpu_threads=args.cpu_threads).threads_per_recognition
    print(f"load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())} ({os.cpu_count()} cores)", flush=True)

    reference = (lambda: in_process(jpeg, args.workers, cpu_threads, args.in_process_seconds)) \
        if args.in_process_seconds > 0 else (lambda: (float("nan"), float("nan")))
    before, cpu_before = reference()
    print(f"in-process: {args.workers} processes running Recognizer.get: {before:.1f} images/s, "
          f"{cpu_before:.1f} CPU ms per image", flush=True)

    body, ctype = multipart(jpeg)
    env = {k: v for k, v in os.environ.items() if k != "MIMIKA_TOKEN"}
    rows, mixed = [], []
    with LocalServer(["--workers", str(args.workers), "--threads", str(args.threads), "--cpu-threads",
                      str(cpu_threads)], env=env) as server:
        idle = tree_rss_mib(server.proc.pid)
        load(server.port, body, ctype, max(clients), 10)  # warm-up: every worker has answered, its buffers grown
        warm = tree_rss_mib(server.proc.pid)
        for n in clients:
            start_rss, start_cpu = tree_rss_mib(server.proc.pid), tree_cpu_s(server.proc.pid)
            r = load(server.port, body, ctype, n, args.long if n == max(clients) else args.seconds,
                     server_pid=server.proc.pid)
            r.update(rss_start=start_rss, rss_end=tree_rss_mib(server.proc.pid),
                     cpu_ms=1e3 * (tree_cpu_s(server.proc.pid) - start_cpu) / max(1, r["requests"] + r["errors"]))
            rows.append(r)
            print(f"  {n} clients: {r['rps']:.1f} req/s, p50 {r['p50']:.1f} ms, p99 {r['p99']:.1f} ms, "
                  f"{r['errors']} errors {r['error_examples'] or ''} (load average {os.getloadavg()[0]:.2f})", flush=True)
            if args.hostile:
                m = load(server.port, body, ctype, n, r["seconds"], hostile=args.hostile, server_pid=server.proc.pid,
                         kinds=tuple(args.hostile_kinds.split(",")))
                mixed.append((r, m))
                print(f"  {n} clients + {args.hostile} hostile: {m['rps']:.1f} req/s, p50 {m['p50']:.1f} ms, "
                      f"p99 {m['p99']:.1f} ms, {m['errors']} errors {m['error_examples'] or ''}; hostile: "
                      f"{hostile_summary(m['hostile_answers'])}; memory peak {m['rss_peak']:.0f} MiB "
                      f"(load average {os.getloadavg()[0]:.2f})", flush=True)
        fps = page_fps(server.url, args.page_seconds, [10, 30]) if args.page_seconds else {}
        log = server.log()
    # again: the machine's load drifts
    after, cpu_after = reference()
    print(f"in-process again: {after:.1f} images/s, {cpu_after:.1f} CPU ms per image", flush=True)
    base, base_cpu = (before + after) / 2, (cpu_before + cpu_after) / 2
    print(f"load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    tracebacks = log.count("Traceback")

    print(f"\nmimika serve --workers {args.workers} --threads {args.threads} --cpu-threads {cpu_threads} (the same "
          f"threads in-process); one 640x480 JPEG ({len(jpeg):,} bytes), "
          f"one face; server memory (all processes) after start-up {idle:.0f} MiB, after 10 s of warm-up at "
          f"{max(clients)} clients {warm:.0f} MiB\n")
    print("| clients | seconds | requests | req/s | vs in-process | p50 ms | p99 ms | errors | server CPU ms per request "
          "(vs in-process) | memory start -> end MiB (growth) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        growth = 100 * (r["rss_end"] - r["rss_start"]) / r["rss_start"]
        print(f"| {r['clients']} | {r['seconds']:.0f} | {r['requests']} | {r['rps']:.1f} | {100 * r['rps'] / base:.0f}% | "
              f"{r['p50']:.1f} | {r['p99']:.1f} | {r['errors'] + r['wrong']} | {r['cpu_ms']:.1f} "
              f"({100 * base_cpu / r['cpu_ms']:.0f}%) | {r['rss_start']:.0f} -> {r['rss_end']:.0f} ({growth:+.1f}%) |")
    print(f"| in-process ({args.workers} processes; before {before:.1f}, after {after:.1f}) | "
          f"{args.in_process_seconds:.0f} + {args.in_process_seconds:.0f} | | {base:.1f} | 100% | | | | {base_cpu:.1f} | |")
    if mixed:
        print(f"\nthe same with {args.hostile} more clients posting hostile uploads in turn ({args.hostile_kinds}: "
              "bench/serve.py hostile_uploads), each setting run alone then mixed:\n")
        print("| clients | hostile clients | seconds | req/s | p50 ms | p99 ms | errors | hostile uploads answered "
              "| server memory peak MiB |")
        print("|---|---|---|---|---|---|---|---|---|")
        for r, m in mixed:
            for row in (r, m):
                answered = hostile_summary(row["hostile_answers"]) if row["hostile"] else ""
                print(f"| {row['clients']} | {row['hostile']} | {row['seconds']:.0f} | {row['rps']:.1f} | "
                      f"{row['p50']:.1f} | {row['p99']:.1f} | {row['errors'] + row['wrong']} | {answered} | "
                      f"{row['rss_peak']:.0f} |")
    for cap, v in fps.items():
        print(f"page, webcam mode (fake camera), at most {cap} frames/s: {v:.1f} frames/s")
    print(f"tracebacks in the server's log: {tracebacks}")


if __name__ == "__main__":
    main()
