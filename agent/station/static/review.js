// Review page: the learning queue in the API's order (most unsure first), one frame at a time in the box editor.
// A decision is saved to the API (Space / N / X) and the next frame opens; unsaved edits of a frame are kept while
// moving between frames. "Find the ..." asks the served model to ground a phrase on the frame (one query at a time,
// off the inspection thread) and pre-draws what it finds as unclassified suggestions. The body's data-entry,
// data-busy and data-finding attributes say what is shown (tests wait on them).
import { $, apiClient, signIn, toast as showToast } from "./common.js";
import { BoxEditor, PALETTE } from "./editor.js";

const state = { items: [], index: 0, entry: null, drafts: new Map(), csrf: null, busy: false, finding: false };
const editor = new BoxEditor($("canvas"), () => renderBoxes());

// ----- talking to the API -------------------------------------------------------------------------------------------
const api = apiClient(() => state.csrf);

function toast(text, kind = "info") {
  showToast(text, kind, { infoMs: 2500, errorMs: 6000 });
}

function setBusy(busy) {
  state.busy = busy;
  document.body.dataset.busy = String(busy);
}

// ----- the list and the frame shown ---------------------------------------------------------------------------------
async function loadList() {
  stashDraft();
  $("toast").hidden = true;  // what it said was about the list being left
  const data = await api(`/api/review/entries?status=${encodeURIComponent($("filter").value)}`);
  state.items = data.entries;
  await show(0);
}

function boxesOf(entry) {
  if (entry.labels) return entry.labels.map((b) => ({ label: b.label, kind: "label", score: null, ...corners(b.box) }));
  return entry.suggestions.map((b) => ({ label: b.label, kind: "suggestion", score: b.score, ...corners(b.box) }));
}

function corners([x1, y1, x2, y2]) {
  return { x1, y1, x2, y2 };
}

function stashDraft() {
  if (!state.entry) return;
  if (editor.edited) state.drafts.set(state.entry.id, editor.draftState());
  else state.drafts.delete(state.entry.id);  // every edit undone: nothing to keep
}

function endOfList() {
  const open = state.items.filter((item) => item.status === "new").length;
  if (!state.items.length) return "Nothing here. \"Show\" picks another list.";
  if (!open) return "Every frame of this list is reviewed. ◀ goes back; \"Show\" picks another list.";
  return `End of the list: ${open} frame(s) not reviewed yet. ◀ goes back.`;
}

async function show(index) {
  stashDraft();
  state.index = Math.max(0, Math.min(index, state.items.length));
  if (state.index >= state.items.length) {
    showMessage(endOfList());
    return;
  }
  setBusy(true);
  try {
    openEntry(await api(`/api/review/entries/${state.items[state.index].id}`));
  } finally {
    setBusy(false);
  }
}

function openEntry(entry) {
  state.entry = entry;
  const draft = state.drafts.get(entry.id);
  $("stage").style.setProperty("--ratio", `${entry.width} / ${entry.height}`);
  $("stage-message").hidden = true;
  $("canvas").hidden = false;
  editor.load({ width: entry.width, height: entry.height, image: entry.image, classes: entry.class_names,
    boxes: draft ? draft.boxes : boxesOf(entry), history: draft ? draft.history : [] });
  renderEntry();
  showFindStatus("");
  document.body.dataset.entry = String(entry.id);
}

function showMessage(text) {
  state.entry = null;
  editor.clear();
  $("canvas").hidden = true;
  $("stage-message").textContent = text;
  $("stage-message").hidden = false;
  document.body.dataset.entry = "";
  renderEntry();
}

// ----- saving decisions ---------------------------------------------------------------------------------------------
function decisionBody(action) {
  if (action !== "save") return { action };
  if (!editor.edited && !state.entry.labels) return { action: "accept" };
  const boxes = editor.boxes.map(({ label, x1, y1, x2, y2 }) => ({ label, x1, y1, x2, y2 }));
  return { action: "boxes", boxes };
}

async function decide(action) {
  if (state.busy || !state.entry) return;
  if (action === "save" && editor.found) {
    toast(`Not saved: ${editor.found} found box(es) have no class yet. Select each, press 1–9 for its class, or ` +
      "Delete it.", "error");
    return;
  }
  const entry = state.entry;
  setBusy(true);
  let saved;
  try {
    saved = await api(`/api/review/entries/${entry.id}`, { method: "POST", body: JSON.stringify(decisionBody(action)) });
  } catch (err) {
    toast(`Not saved: ${err.message}`, "error");
    return;
  } finally {
    setBusy(false);
  }
  state.drafts.delete(entry.id);
  state.items[state.index] = { ...state.items[state.index], status: saved.status, verified: true };
  state.entry = null;  // saved: nothing to stash
  const what = saved.status === "labelled" && !saved.labels.length ? "no defect" : saved.status;
  toast(`#${entry.id} saved: ${what}${saved.labels ? `, ${saved.labels.length} box(es)` : ""}`);
  refreshSummary();
  go(1);
}

function go(step) {
  if (state.busy) return;
  show(state.index + step).catch((err) => toast(`Could not open the frame: ${err.message}`, "error"));
}

async function setGolden(value) {
  if (!state.entry) return;
  try {
    const saved = await api(`/api/review/entries/${state.entry.id}/golden`, { method: "PUT",
      body: JSON.stringify({ golden: value }) });
    Object.assign(state.entry, { golden: saved.golden, golden_manual: saved.golden_manual });
    renderEntry();
    refreshSummary();
  } catch (err) {
    toast(`Golden set not changed: ${err.message}`, "error");
    renderEntry();
  }
}

// ----- "find the ..." (phrase grounding with the served model) ------------------------------------------------------
function showFindStatus(text, kind = "info") {
  $("find-status").textContent = text;
  $("find-status").dataset.kind = kind;
}

function setFinding(finding) {
  state.finding = finding;
  document.body.dataset.finding = String(finding);
  $("find-button").disabled = finding;
}

async function find(event) {
  event.preventDefault();
  $("find-phrase").blur();  // the editor's keys work again at once
  const phrase = $("find-phrase").value.trim();
  if (!state.entry || state.finding || !phrase) return;
  const entry = state.entry;
  setFinding(true);
  showFindStatus(`Finding "${phrase}"…`);
  try {
    const answer = await api(`/api/review/entries/${entry.id}/ground`, { method: "POST", body: JSON.stringify({ phrase }) });
    if (state.entry !== entry) return;  // moved on to another frame meanwhile: these boxes are not its
    editor.addFound(answer.regions.map((r) => ({ phrase: answer.phrase, score: r.score, ...corners(r.box) })));
    const n = answer.regions.length;
    showFindStatus(n ? `${n} "${answer.phrase}" found (dashed white, suggestions): select one, press 1–9 for its class`
      : `No "${answer.phrase}" found on this frame.`);
  } catch (err) {
    if (state.entry === entry) showFindStatus(`Find failed: ${err.message}`, "error");
  } finally {
    setFinding(false);
  }
}

// ----- rendering the side panel -------------------------------------------------------------------------------------
function renderEntry() {
  const entry = state.entry;
  $("position").textContent = state.items.length ? `${Math.min(state.index + 1, state.items.length)} / ${state.items.length}` : "0 / 0";
  $("entry-status").textContent = entry ? entry.status : "";
  $("entry-status").dataset.status = entry ? entry.status : "";
  $("entry-meta").textContent = entry ? `#${entry.id} · ${entry.camera} · frame ${entry.frame_id} · margin ${entry.margin.toFixed(2)}` : "";
  renderFacts(entry);
  renderClassKeys(entry ? entry.class_names : []);
  renderBoxes();
}

function renderFacts(entry) {
  const facts = entry ? [["reason", entry.reason], ["model", entry.model], ["captured", entry.captured_at],
    ["reviewed", entry.review.verified ? `${entry.review.reviewer}, ${entry.review.reviewed_at}` : "not yet"]] : [];
  $("facts").replaceChildren(...facts.flatMap(([term, value]) => {
    const dt = document.createElement("dt");
    const dd = document.createElement("dd");
    dt.textContent = term;
    dd.textContent = value;
    return [dt, dd];
  }));
  $("golden").checked = Boolean(entry && entry.golden);
  $("golden").disabled = !entry;
  $("golden-how").textContent = entry ? (entry.golden_manual ? "(set by hand)" : "(automatic, by frame hash)") : "";
  $("golden-auto").hidden = !(entry && entry.golden_manual);
}

function renderClassKeys(classes) {
  $("class-keys").replaceChildren(...classes.slice(0, 9).map((name, i) => {
    const button = document.createElement("button");
    button.type = "button";
    button.className = `secondary small class-key${name === editor.currentClass ? " current" : ""}`;
    button.style.setProperty("--c", PALETTE[i % PALETTE.length]);
    const key = document.createElement("kbd");
    const label = document.createElement("span");
    key.textContent = String(i + 1);
    label.textContent = name;
    button.append(key, label);
    button.addEventListener("click", () => { editor.setClassIndex(i); button.blur(); });
    return button;
  }));
}

function renderBoxes() {
  const items = editor.boxes.map((box, index) => {
    const item = document.createElement("li");
    item.className = `${box.kind}${index === editor.selected ? " selected" : ""}`;
    item.style.setProperty("--c", editor.colorOf(box.label));
    const kind = box.kind === "label" ? "label" : `${box.kind} ${box.score.toFixed(2)}`;
    const name = box.label ?? `"${box.phrase}": press 1–9 for its class`;
    item.textContent = `${name} · ${kind} · ${Math.round(box.x2 - box.x1)}×${Math.round(box.y2 - box.y1)} px`;
    item.addEventListener("click", () => editor.select(index));
    return item;
  });
  if (!items.length) {
    const none = document.createElement("li");
    none.className = "none";
    none.textContent = state.entry ? "No boxes: Space saves this frame as defect-free." : "";
    items.push(none);
  }
  $("box-list").replaceChildren(...items);
  document.querySelectorAll(".class-key").forEach((b) => b.classList.toggle("current",
    b.querySelector("span").textContent === editor.currentClass));
  $("draw").classList.toggle("active", editor.drawMode);
}

async function refreshSummary() {
  const summary = await api("/api/review/summary").catch(() => null);
  if (!summary) return;
  const s = summary.statuses;
  $("counts").textContent = `${s.new} to review · ${s.labelled} labelled · ${s.rejected} rejected · ` +
    `golden share ${Math.round(summary.golden_fraction * 100)} %`;
  const classes = Object.keys(summary.training.frames_with);
  const rows = [["", "training", "golden"], ["frames", summary.training.frames, summary.golden.frames],
    ...classes.map((name) => [name, summary.training.frames_with[name], summary.golden.frames_with[name]])];
  $("sets").replaceChildren(...rows.map((cells, r) => {
    const row = document.createElement("tr");
    row.append(...cells.map((cell, c) => {
      const td = document.createElement(r === 0 || c === 0 ? "th" : "td");
      td.textContent = String(cell);
      return td;
    }));
    return row;
  }));
}

// ----- keyboard -----------------------------------------------------------------------------------------------------
const ARROWS = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] };

function toggleHelp(open = $("help").hidden) {
  $("help").hidden = !open;
  if (open) $("help-close").focus();
}

function arrowKey(event) {
  const [dx, dy] = ARROWS[event.key];
  if (editor.nudge(dx * editor.step(), dy * editor.step(), event.shiftKey)) return true;
  if (dx && !event.shiftKey) {
    go(dx);
    return true;
  }
  return false;
}

function editorKey(event) {
  const key = event.key.length === 1 ? event.key.toLowerCase() : event.key;
  if ((event.ctrlKey || event.metaKey) && key === "z") return editor.undo() || true;
  if (event.ctrlKey || event.metaKey || event.altKey) return false;
  if (key === " ") decide("save");
  else if (key === "n") decide("no_defect");
  else if (key === "x") decide("reject");
  else if (key === "w") editor.setDrawMode(!editor.drawMode);
  else if (/^[1-9]$/.test(key)) editor.setClassIndex(Number(key) - 1);
  else if (key === "Tab") editor.selectNext(event.shiftKey ? -1 : 1);
  else if (key === "Delete" || key === "Backspace") editor.deleteSelected();
  else if (key === "Escape" && editor.drawMode) editor.setDrawMode(false);
  else if (key === "Escape") editor.select(null);
  else if (key in ARROWS) return arrowKey(event);
  else return false;
  return true;
}

function onKey(event) {
  if (event.key === "?") {
    toggleHelp();
    event.preventDefault();
    return;
  }
  if (!$("help").hidden) {
    if (event.key === "Escape") toggleHelp(false);
    return;
  }
  if (event.target.closest("select, input") || state.busy) return;
  if (state.entry || event.key in ARROWS) {
    if (editorKey(event)) event.preventDefault();
  }
}

// ----- wiring -------------------------------------------------------------------------------------------------------
function onClick(id, action) {
  $(id).addEventListener("click", (event) => {
    event.currentTarget.blur();  // Space must never click a focused button as well
    action();
  });
}

function wire() {
  document.addEventListener("keydown", onKey);
  onClick("accept", () => decide("save"));
  onClick("no-defect", () => decide("no_defect"));
  onClick("reject", () => decide("reject"));
  onClick("draw", () => editor.setDrawMode(!editor.drawMode));
  onClick("prev", () => go(-1));
  onClick("next", () => go(1));
  onClick("undo", () => editor.undo());
  onClick("delete", () => editor.deleteSelected());
  onClick("help-button", () => toggleHelp(true));
  onClick("help-close", () => toggleHelp(false));
  onClick("golden-auto", () => setGolden(null));
  $("golden").addEventListener("change", (event) => { event.target.blur(); setGolden(event.target.checked); });
  $("find-form").addEventListener("submit", (event) => { find(event); });
  $("filter").addEventListener("change", (event) => {
    event.target.blur();
    loadList().catch((err) => toast(`Could not load the list: ${err.message}`, "error"));
  });
}

async function start() {
  setFinding(false);
  await signIn(api, state);
  wire();
  await Promise.all([loadList(), refreshSummary()]);
}

start().catch((err) => toast(`Review page failed to start: ${err.message}`, "error"));
