// Live page: one card per camera, kept current by the /api/live event stream (no reloads).
// A frame's JPEG comes inside the stream's event (a data: URI; fetched by URL only if an event lacks it), one picture
// at a time per camera, and the card's verdict, boxes and counters change when that picture has loaded, so text and
// picture always match.
"use strict";

const cards = new Map();  // camera name -> {root, img, loading, wanted, requested, shownSeq, recentId}
let csrfToken = null;

function goToLogin() {
  window.location.assign("/login");
}

async function getJson(url) {
  const response = await fetch(url, { credentials: "same-origin" });
  if (response.status === 401) {
    goToLogin();
    throw new Error("login required");
  }
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  return response.json();
}

function setText(root, selector, value) {
  root.querySelector(selector).textContent = String(value);
}

function cardFor(name) {
  let card = cards.get(name);
  if (card) return card;
  const root = document.getElementById("camera-template").content.firstElementChild.cloneNode(true);
  root.dataset.camera = name;
  setText(root, ".camera-name", name);
  const img = root.querySelector(".frame-img");
  img.alt = `Latest frame of ${name}`;
  card = { root, img, loading: false, wanted: null, requested: null, shownSeq: 0, recentId: null };
  img.addEventListener("load", () => frameLoaded(name, true));
  img.addEventListener("error", () => frameLoaded(name, false));
  cards.set(name, card);
  document.getElementById("empty").hidden = true;
  document.getElementById("cameras").appendChild(root);
  return card;
}

function loadFrame(name) {
  const card = cards.get(name);
  if (!card || card.loading || !card.wanted || card.wanted.seq === card.shownSeq) return;
  card.loading = true;
  card.requested = card.wanted;
  card.img.src = card.requested.jpeg || `/api/cameras/${encodeURIComponent(name)}/frame.jpg?seq=${card.requested.seq}`;
}

function frameLoaded(name, ok) {
  const card = cards.get(name);
  const live = card.requested;
  card.loading = false;
  card.shownSeq = live.seq;
  if (ok) {
    card.img.hidden = false;
    card.root.querySelector(".placeholder").hidden = true;
  }
  renderLive(card, name, live);
  card.root.dataset.shownSeq = String(live.seq);
  loadFrame(name);  // a newer frame may have been announced meanwhile
}

function renderStatus(card, camera) {
  const status = card.root.querySelector(".status");
  status.textContent = camera.status;
  status.dataset.status = camera.status;
  status.title = camera.reason || "";
  setText(card.root, ".stat-dropped", camera.counters.dropped ?? 0);
}

function renderBoxes(card, boxes) {
  const list = card.root.querySelector(".boxes");
  list.replaceChildren(...boxes.map((box) => {
    const item = document.createElement("li");
    item.textContent = `${box.label} ${box.score.toFixed(2)}`;
    return item;
  }));
}

function renderLive(card, name, live) {
  const verdict = card.root.querySelector(".verdict");
  verdict.textContent = live.verdict;
  verdict.dataset.verdict = live.verdict;
  setText(card.root, ".stat-fps", live.fps.toFixed(1));
  setText(card.root, ".stat-frame", live.frame_id);
  for (const key of ["pass", "fail", "uncertain"]) setText(card.root, `.stat-${key}`, live.counts[key] ?? 0);
  renderBoxes(card, live.boxes);
  if (live.newest_recent !== card.recentId) {
    card.recentId = live.newest_recent;
    refreshRecent(name).catch(() => {});
  }
}

function renderCamera(camera) {
  const card = cardFor(camera.name);
  renderStatus(card, camera);
  if (camera.live) {
    card.wanted = camera.live;
    loadFrame(camera.name);
  }
}

function recentThumb(frame) {
  const figure = document.createElement("figure");
  figure.className = "thumb";
  figure.dataset.verdict = frame.verdict;
  const img = document.createElement("img");
  img.src = frame.thumbnail || frame.image;  // the thumbnail comes inline with the list: no request per frame
  img.alt = `${frame.verdict} frame ${frame.frame_id}`;
  const link = document.createElement("a");  // the full-size picture, on demand
  link.href = frame.image;
  link.target = "_blank";
  link.rel = "noopener";
  link.append(img);
  const caption = document.createElement("figcaption");
  const labels = frame.boxes.map((b) => b.label).join(", ") || "no boxes";
  caption.textContent = `${frame.verdict} · #${frame.frame_id} · ${labels}`;
  figure.append(link, caption);
  return figure;
}

async function refreshRecent(name) {
  const data = await getJson(`/api/cameras/${encodeURIComponent(name)}/recent`);
  const card = cards.get(name);
  if (!data.frames.length) return;
  const old = card.thumbs || new Map();  // frame id -> figure: a thumbnail already shown is reused as it is
  card.thumbs = new Map(data.frames.map((f) => [f.id, old.get(f.id) || recentThumb(f)]));
  card.root.querySelector(".recent").replaceChildren(...card.thumbs.values());
}

function setConnection(state, text) {
  const conn = document.getElementById("conn");
  conn.dataset.state = state;
  conn.textContent = text;
}

function applyUpdate(update) {
  setText(document, "#model", `model ${update.model}`);
  update.cameras.forEach(renderCamera);
}

function openStream() {
  const stream = new EventSource("/api/live");
  stream.addEventListener("open", () => setConnection("live", "live"));
  stream.addEventListener("live", (event) => {
    setConnection("live", "live");
    applyUpdate(JSON.parse(event.data));
  });
  stream.addEventListener("logout", () => {
    stream.close();
    goToLogin();
  });
  stream.addEventListener("error", () => setConnection("lost", "reconnecting…"));
}

async function logout() {
  await fetch("/api/logout", { method: "POST", credentials: "same-origin", headers: { "X-CSRF-Token": csrfToken } });
  goToLogin();
}

async function start() {
  const me = await getJson("/api/me");
  csrfToken = me.csrf_token;
  setText(document, "#user", `${me.user} (${me.role})`);
  document.getElementById("review-tab").hidden = me.role !== "technician";  // viewers may not review
  document.getElementById("runs-tab").hidden = me.role !== "technician";  // nor recalibrate
  document.getElementById("logout").addEventListener("click", () => logout().catch(goToLogin));
  openStream();  // its first event describes every camera, pictures included
}

start().catch((err) => setConnection("lost", `error: ${err.message}`));
