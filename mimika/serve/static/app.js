// mimika's page: a photo (POST /v1/predict for the scores, /v1/annotate for the picture) or the
// webcam (frames over the WebSocket /v1/stream, one in flight, at most N per second). No
// libraries, nothing fetched from elsewhere: it works offline.
"use strict";

const $ = (id) => document.getElementById(id);
const COLORS = {
  neutral: "#8a94a0", anger: "#d6342c", contempt: "#8e5bb5", disgust: "#5f8f2f", fear: "#7b6fd6",
  happiness: "#2e9d46", sadness: "#2f6fbf", surprise: "#e39a1c",
};
const PALETTE = ["#d6342c", "#2e9d46", "#2f6fbf", "#e39a1c", "#8e5bb5", "#5f8f2f", "#7b6fd6", "#8a94a0", "#c2417f"];
const BOX_COLOR = document.querySelector('meta[name="mimika-box-color"]').content;  // annotate.py's, from the server
const page = { token: sessionStorage.getItem("mimika-token") || "", labels: [] };

// what the webcam mode has done, for a person (the fps line) and for the browser test
const live = window.mimikaLive = { running: false, frames: 0, fps: 0, last: null, frameSize: null, errors: 0 };

function setMessage(text, isError = false) {
  $("message").textContent = text;
  $("message").className = isError ? "error" : "";
}

function colorOf(label) {
  if (COLORS[label]) return COLORS[label];
  const i = page.labels.indexOf(label);
  return PALETTE[(i < 0 ? 0 : i) % PALETTE.length];
}

async function api(path, init = {}) {
  const headers = new Headers(init.headers || {});
  if (page.token) headers.set("Authorization", "Bearer " + page.token);
  const response = await fetch(path, { ...init, headers });
  if (response.status === 401) {
    $("token-box").hidden = false;
    throw new Error("This server needs a token: enter it above (it is kept for this tab only).");
  }
  if (!response.ok) {
    let text = "";
    try { text = (await response.json()).error; } catch (e) { text = response.statusText; }
    throw new Error(text || `the server answered ${response.status}`);
  }
  return response;
}

function options() {
  const o = {};
  if ($("model").value) o.model = $("model").value;
  if ($("detector").value) o.detector = $("detector").value;
  if ($("prior").value) o.prior = $("prior").value;
  return o;
}

async function loadModels() {
  try {
    const info = await (await api("/v1/models")).json();
    const keep = (id, values, chosen) => {
      const select = $(id), current = select.value;
      select.replaceChildren(...values.map((v) => new Option(v, v)));
      select.value = values.includes(current) ? current : chosen;
    };
    keep("model", info.models.map((m) => m.name), info.default);
    keep("detector", info.detectors, info.default_detector);
    const model = info.models.find((m) => m.name === $("model").value);
    keep("prior", model ? model.priors : ["training"], model ? model.prior : "training");
    page.labels = model ? model.labels : [];
    drawLegend();
    setMessage("");
  } catch (e) {
    setMessage(e.message, true);
  }
}

// ---- scores as bars -----------------------------------------------------------------------
function renderFaces(container, faces) {
  container.replaceChildren();
  if (!faces.length) {
    const p = document.createElement("p");
    p.className = "muted";
    p.textContent = "No face found.";
    container.append(p);
    return;
  }
  faces.forEach((face, i) => {
    const card = document.createElement("div");
    card.className = "face";
    const title = document.createElement("h3");
    title.textContent = `Face ${i + 1}: ${face.label} `;
    const where = document.createElement("span");
    where.className = "muted";
    where.textContent = `(box ${face.box.join(", ")})`;
    title.append(where);
    card.append(title);
    for (const [label, p] of Object.entries(face.scores)) {
      const row = document.createElement("div");
      row.className = "bar";
      const name = document.createElement("span");
      name.textContent = label;
      const track = document.createElement("span");
      track.className = "track";
      const fill = document.createElement("span");
      fill.className = "fill";
      fill.style.display = "block";
      fill.style.width = `${(100 * p).toFixed(1)}%`;
      fill.style.background = colorOf(label);
      track.append(fill);
      const value = document.createElement("span");
      value.className = "value";
      value.textContent = p.toFixed(2);
      row.append(name, track, value);
      card.append(row);
    }
    container.append(card);
  });
}

// ---- photo ----------------------------------------------------------------------------------
let photoUrl = null;

async function analysePhoto(file) {
  if (!file) return;
  const form = () => {
    const f = new FormData();
    f.append("image", file, file.name || "photo");
    for (const [k, v] of Object.entries(options())) f.append(k, v);
    return f;
  };
  setMessage(`Reading the faces in ${file.name}…`);
  try {
    const result = await (await api("/v1/predict", { method: "POST", body: form() })).json();
    const blob = await (await api("/v1/annotate", { method: "POST", body: form() })).blob();
    if (photoUrl) URL.revokeObjectURL(photoUrl);
    photoUrl = URL.createObjectURL(blob);
    $("annotated").src = photoUrl;
    renderFaces($("photo-faces"), result.faces);
    $("photo-result").hidden = false;
    const n = result.faces.length;
    setMessage(`${file.name}: ${n} face${n === 1 ? "" : "s"} (${result.timing.predict_ms.toFixed(0)} ms on the server)`);
  } catch (e) {
    setMessage(`${file.name}: ${e.message}`, true);
  }
}

// ---- webcam ---------------------------------------------------------------------------------
let stream = null, socket = null, inFlight = false, lastSent = 0, timer = null;
const grab = document.createElement("canvas");
const history = [];  // scores of the largest face per answered frame (null: no face)
const HISTORY = 150;

function cameraProblem(e) {
  switch (e && e.name) {
    case "NotAllowedError":
    case "SecurityError":
      return "The camera was refused. Allow it for this page in the browser's site settings, then start again.";
    case "NotFoundError":
    case "OverconstrainedError":
      return "No camera was found. Connect one and start again, or use a photo.";
    case "NotReadableError":
    case "AbortError":
      return "The camera could not be started: another program may be using it.";
    default:
      return `The camera could not be started (${e && e.name}: ${e && e.message}).`;
  }
}

async function startCamera() {
  if (live.running) return;
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    setMessage("This browser offers no camera to this page: open it as http://localhost:PORT or over https.", true);
    return;
  }
  setMessage("Asking for the camera…");
  try {
    stream = await navigator.mediaDevices.getUserMedia({ video: { width: { ideal: 640 }, height: { ideal: 480 } }, audio: false });
  } catch (e) {
    stream = null;
    setMessage(cameraProblem(e), true);
    return;
  }
  $("video").srcObject = stream;
  try { await $("video").play(); } catch (e) { /* autoplay of a muted video is allowed; ignore */ }
  $("camera-start").disabled = true;
  $("camera-stop").disabled = false;
  history.length = 0;
  openSocket();
}

function openSocket() {
  const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/v1/stream";
  socket = new WebSocket(url);
  const own = socket;
  socket.onopen = () => own.send(JSON.stringify({ ...options(), ...(page.token ? { token: page.token } : {}) }));
  socket.onmessage = (event) => {
    if (own !== socket) return;
    const msg = JSON.parse(event.data);
    if ("options" in msg) {  // the answer to options, not to a frame
      if (msg.error) { setMessage(msg.error, true); return; }
      if (!live.running) {  // accepted: start sending frames
        live.running = true;
        setMessage("Live: the boxes and labels follow the faces.");
        schedule();
      }
      return;
    }
    inFlight = false;
    if (msg.error) {
      live.errors += 1;
      setMessage(msg.error, true);
    } else {
      onResult(msg);
    }
    schedule();
  };
  socket.onclose = (event) => {
    if (own !== socket) return;
    const why = event.code === 1008 ? `The server refused the stream: ${event.reason}.` :
      live.running ? "The connection to the server was lost." : "Could not connect to the server.";
    stopCamera();
    setMessage(why, true);
    if (event.code === 1008) $("token-box").hidden = false;
  };
}

function schedule() {
  clearTimeout(timer);
  const gap = 1000 / Number($("max-fps").value);
  timer = setTimeout(sendFrame, Math.max(0, lastSent + gap - performance.now()));
}

function sendFrame() {
  const video = $("video");
  if (!live.running || inFlight || !socket || socket.readyState !== WebSocket.OPEN) return;
  if (!video.videoWidth) { timer = setTimeout(sendFrame, 50); return; }
  const scale = Math.min(1, 640 / video.videoWidth);
  grab.width = Math.round(video.videoWidth * scale);
  grab.height = Math.round(video.videoHeight * scale);
  grab.getContext("2d").drawImage(video, 0, 0, grab.width, grab.height);
  const size = { width: grab.width, height: grab.height };
  inFlight = true;
  lastSent = performance.now();
  grab.toBlob((blob) => {
    if (!blob || !socket || socket.readyState !== WebSocket.OPEN) { inFlight = false; schedule(); return; }
    live.frameSize = size;
    socket.send(blob);
  }, "image/jpeg", 0.8);
}

function onResult(msg) {
  const now = performance.now();
  live.frames += 1;
  live.last = msg;
  (live.times = live.times || []).push(now);
  while (live.times.length > 2 && now - live.times[0] > 3000) live.times.shift();
  const span = now - live.times[0];
  live.fps = live.times.length > 1 && span > 0 ? (live.times.length - 1) * 1000 / span : 0;
  drawOverlay(msg.faces);
  renderFaces($("live-faces"), msg.faces);
  const biggest = msg.faces.reduce((a, f) => (!a || f.box[2] * f.box[3] > a.box[2] * a.box[3] ? f : a), null);
  history.push(biggest ? biggest.scores : null);
  if (history.length > HISTORY) history.shift();
  drawChart();
  $("fps").textContent = `${live.fps.toFixed(1)} frames/s, ${msg.timing.predict_ms.toFixed(0)} ms per frame on the server`;
}

function drawOverlay(faces) {
  const canvas = $("overlay"), video = $("video");
  const w = video.clientWidth, h = video.clientHeight;
  if (canvas.width !== w || canvas.height !== h) { canvas.width = w; canvas.height = h; }
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, w, h);
  if (!live.frameSize) return;
  const s = w / live.frameSize.width;
  ctx.lineWidth = 3;
  ctx.font = "600 15px system-ui, sans-serif";
  ctx.textBaseline = "top";
  for (const face of faces) {
    const [x, y, bw, bh] = face.box.map((v) => v * s);
    ctx.strokeStyle = BOX_COLOR;
    ctx.strokeRect(x, y, bw, bh);
    const text = `${face.label} ${Object.values(face.scores)[0].toFixed(2)}`;
    const tw = ctx.measureText(text).width + 8, th = 20;
    const ty = y - th - 2 >= 0 ? y - th - 2 : Math.min(y + bh + 2, h - th);
    ctx.fillStyle = BOX_COLOR;
    ctx.fillRect(x - 1.5, ty, tw, th);
    ctx.fillStyle = "#000";
    ctx.fillText(text, x + 2.5, ty + 3);
    for (const [lx, ly] of face.landmarks || []) {  // eyes, nose tip, mouth corners (CNN detectors)
      ctx.beginPath();
      ctx.arc(lx * s, ly * s, 2.5, 0, 2 * Math.PI);
      ctx.fillStyle = BOX_COLOR;
      ctx.fill();
    }
  }
}

function drawChart() {
  const canvas = $("chart"), ctx = canvas.getContext("2d");
  const W = canvas.width, H = canvas.height, left = 34, top = 10, bottom = 22;
  const plotH = H - top - bottom, plotW = W - left - 8;
  ctx.clearRect(0, 0, W, H);
  ctx.strokeStyle = "#e3e7ec";
  ctx.fillStyle = "#6b7480";
  ctx.font = "11px system-ui, sans-serif";
  ctx.lineWidth = 1;
  ctx.textBaseline = "middle";
  for (const v of [0, 0.5, 1]) {
    const y = top + plotH * (1 - v);
    ctx.beginPath(); ctx.moveTo(left, y); ctx.lineTo(W - 8, y); ctx.stroke();
    ctx.fillText(v.toFixed(1), 6, y);
  }
  ctx.textBaseline = "alphabetic";
  ctx.fillText(`the last ${HISTORY} frames answered; newest on the right`, left, H - 5);
  const labels = page.labels.length ? page.labels : Object.keys(history.find((h) => h) || {});
  const step = plotW / (HISTORY - 1), x0 = left + plotW - (history.length - 1) * step;
  ctx.lineWidth = 2;
  for (const label of labels) {
    ctx.strokeStyle = colorOf(label);
    ctx.beginPath();
    let pen = false;
    history.forEach((scores, i) => {
      if (!scores) { pen = false; return; }
      const x = x0 + i * step, y = top + plotH * (1 - (scores[label] || 0));
      if (pen) ctx.lineTo(x, y); else ctx.moveTo(x, y);
      pen = true;
    });
    ctx.stroke();
  }
}

function drawLegend() {
  $("legend").replaceChildren(...page.labels.map((label) => {
    const span = document.createElement("span");
    span.style.setProperty("--swatch", colorOf(label));
    span.textContent = label;
    return span;
  }));
}

function stopCamera() {
  live.running = false;
  inFlight = false;
  clearTimeout(timer);
  if (socket) { const s = socket; socket = null; s.close(); }
  if (stream) { stream.getTracks().forEach((t) => t.stop()); stream = null; }
  $("video").srcObject = null;
  const overlay = $("overlay");
  overlay.getContext("2d").clearRect(0, 0, overlay.width, overlay.height);
  $("camera-start").disabled = false;
  $("camera-stop").disabled = true;
}

// ---- wiring ---------------------------------------------------------------------------------
function showTab(name) {
  const camera = name === "camera";
  $("tab-photo").classList.toggle("active", !camera);
  $("tab-camera").classList.toggle("active", camera);
  $("photo-panel").hidden = camera;
  $("camera-panel").hidden = !camera;
  if (!camera && live.running) { stopCamera(); setMessage(""); }
}

$("tab-photo").onclick = () => showTab("photo");
$("tab-camera").onclick = () => showTab("camera");
$("file").onchange = () => analysePhoto($("file").files[0]);
const drop = $("drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault();
  drop.classList.remove("over");
  analysePhoto(e.dataTransfer.files[0]);
});
$("camera-start").onclick = startCamera;
$("camera-stop").onclick = () => { stopCamera(); setMessage("Camera stopped."); };
$("model").onchange = $("detector").onchange = $("prior").onchange = async () => {
  await loadModels();  // first the new model's priors, so the options sent are ones it has
  if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(options()));
};
$("token").value = page.token;
$("token").onchange = () => {
  page.token = $("token").value.trim();
  sessionStorage.setItem("mimika-token", page.token);
  loadModels();
};

fetch("/version").then((r) => r.json()).then((v) => { $("version").textContent = `version ${v.mimika}`; }).catch(() => {});
loadModels();
drawChart();
