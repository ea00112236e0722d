// Recalibration page: start a run and watch it (polling its progress once a second), read its report, promote,
// override or roll back, and see every stored model version. The body's data-run / data-state / data-outcome
// attributes say what is shown (tests wait on them).
import { $, apiClient, signIn, toast } from "./common.js";

const STAGES = ["snapshot", "replay", "train", "evaluate", "thresholds", "gate", "promote", "notify", "report"];
const POLL_RUNNING_MS = 1000;
const POLL_IDLE_MS = 5000;
const state = { csrf: null, selected: null, active: null, detail: null, timer: null, busy: false };

// ----- talking to the API -------------------------------------------------------------------------------------------
const api = apiClient(() => state.csrf);

const runUrl = (id, tail = "") => `/api/runs/${encodeURIComponent(id)}${tail}`;


// ----- formatting ---------------------------------------------------------------------------------------------------
const num = (v, digits = 3) => (typeof v === "number" && Number.isFinite(v) ? v.toFixed(digits) : "–");
const plural = (n, noun) => `${n} ${noun}${n === 1 ? "" : "s"}`;
const judged = (report) => Object.keys(report.evaluation || {}).length > 0;  // a run that stopped early writes {}

function delta(before, after) {
  const cell = document.createElement("td");
  if (typeof before !== "number" || typeof after !== "number") return Object.assign(cell, { textContent: "–" });
  const change = after - before;
  cell.textContent = `${change >= 0 ? "+" : ""}${change.toFixed(3)}`;
  if (Math.abs(change) >= 0.0005) cell.className = change > 0 ? "up" : "down";
  return cell;
}

function eta(seconds) {
  if (typeof seconds !== "number" || !Number.isFinite(seconds)) return "–";
  const s = Math.max(0, Math.round(seconds));
  return s >= 60 ? `${Math.floor(s / 60)} min ${s % 60} s` : `${s} s`;
}

function runTime(id) {  // 20250131T120501123456Z -> 2025-01-31 12:05:01 UTC
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})/.exec(id);
  return m ? `${m[1]}-${m[2]}-${m[3]} ${m[4]}:${m[5]}:${m[6]} UTC` : id;
}

const servingAdapter = (version) => (version && version.includes("+") ? version.split("+")[1] : null);
const words = (text) => String(text || "").replaceAll("_", " ");

function el(tag, props = {}, ...children) {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children);
  return node;
}

// ----- the run going now --------------------------------------------------------------------------------------------
function stagesShown(stage) {  // "export" runs on onnx lines only, after training; "starting" is before all
  if (STAGES.includes(stage) || stage === "starting") return STAGES;
  const after = stage === "export" ? STAGES.indexOf("train") + 1 : STAGES.length - 1;
  return [...STAGES.slice(0, after), stage, ...STAGES.slice(after)];
}

function renderStages(stage, running) {
  const known = stagesShown(stage);
  const at = known.indexOf(stage);
  $("stages").replaceChildren(...known.map((name, i) => el("li", {
    textContent: name, className: i === at && running ? "now" : (i < at || (!running && i <= at) ? "done" : "") })));
}

function renderProgress(run) {
  const running = run.state === "running";
  $("running-id").textContent = `run ${run.run_id} · started ${runTime(run.run_id)}`;
  renderStages(run.stage, running);
  const total = run.total_steps || 0;
  const fraction = total ? Math.min(1, run.step / total) : 0;
  $("bar-fill").style.width = `${Math.round(fraction * 100)}%`;
  $("bar").setAttribute("aria-valuemax", String(total));
  $("bar").setAttribute("aria-valuenow", String(run.step || 0));
  $("stage").textContent = run.stage || "—";
  $("step").textContent = total ? `${run.step} / ${total}` : "—";
  $("loss").textContent = num(run.loss, 4);
  $("eta").textContent = eta(run.eta_s);
  $("run-note").textContent = run.message || "";
}

function renderRunPanel(list) {
  const running = Boolean(list.active);
  $("idle").hidden = running;
  $("running").hidden = !running;
  $("run-state").textContent = running ? "running" : "idle";
  $("run-state").dataset.state = running ? "running" : "idle";
  $("start-run").disabled = !list.can_start || state.busy;
  $("start-run").title = list.can_start ? "" : list.cannot_start || "";
  const detail = state.detail;
  if (running && detail && detail.run_id === list.active) renderProgress(detail);
}

// ----- the report ---------------------------------------------------------------------------------------------------
function scoreRows(report) {
  const ev = report.evaluation || {};
  const gate = report.gate || {};
  const pick = (key) => [ev.current?.[key] ?? gate[key]?.current, ev.candidate?.[key] ?? gate[key]?.candidate];
  return [["mAP", ...pick("map")], ["mAP50", ...pick("map50")]];
}

function classRows(report) {
  const perClass = report.gate?.per_class;
  if (perClass) return Object.entries(perClass).map(([name, row]) => [name, row.current, row.candidate]);
  const before = report.evaluation?.current?.per_class || {};
  const after = report.evaluation?.candidate?.per_class || {};
  return Object.keys({ ...before, ...after }).map((name) => [name, before[name], after[name]]);
}

function fillTable(id, rows) {
  $(id).tBodies[0].replaceChildren(...rows.map(([name, before, after]) => el("tr", {},
    el("td", { textContent: name }), el("td", { textContent: num(before) }), el("td", { textContent: num(after) }),
    delta(before, after))));
  $(id).hidden = rows.length === 0;
}

function renderGate(report) {
  const gate = report.gate || {};
  const decided = "passed" in gate;
  $("gate").dataset.passed = decided ? String(gate.passed) : "";
  const rule = gate.rule ? ` (${words(gate.rule)})` : "";
  $("gate-decision").textContent = !decided ? "The run did not reach the gate."
    : gate.passed ? `Passed${rule}: the candidate is better on the golden set.`
      : `Rejected${rule}: the current model keeps serving.`;
  const reasons = gate.reasons || gate.failures || [];
  $("gate-reasons").replaceChildren(...reasons.map((r) => el("li", { textContent: String(r) })));
  const i = gate.interval;
  $("gate-interval").textContent = i ? `mAP50 change ${signed(i.delta)}, ${Math.round(i.confidence * 100)}% `
    + `bootstrap interval [${signed(i.low)}, ${signed(i.high)}] over ${i.resamples} resamples of the golden frames` : "";
}

function signed(value) {
  return typeof value === "number" ? `${value >= 0 ? "+" : ""}${value.toFixed(3)}` : "–";
}

function runSummary(report) {  // what was trained on and what judged it; a run that stopped early says so
  const data = report.data || {};
  const steps = report.training?.steps;
  const parts = [];
  if (data.training_frames !== undefined || steps !== undefined) {
    const verified = data.training_frames ?? data.labelled_frames ?? 0;
    const frames = plural(verified, "verified frame");
    const replay = data.replay_frames ? ` + ${data.replay_frames} replay` : "";
    const loss = typeof report.training?.final_loss === "number" ? `, final loss ${num(report.training.final_loss, 4)}` : "";
    const ready = `${frames} ${verified === 1 ? "was" : "were"} ready`;
    parts.push(steps === undefined ? `Not trained: the run stopped before training (${ready})`
      : `Trained on ${frames}${replay}, ${steps} steps${loss}`);
  }
  const golden = data.golden;
  if (golden) {
    const boxes = Object.entries(golden.boxes || {}).map(([name, n]) => `${name} ${n}`).join(", ");
    const backend = report.evaluation?.backend ? ` on the ${report.evaluation.backend} backend` : "";
    const on = `${plural(golden.frames, "golden frame")} (boxes: ${boxes})`;
    parts.push(judged(report) ? `judged on ${on}${backend}` : `not judged: ${on}`);
  }
  return parts.join(" · ");
}

function imageUrl(runId, path) {
  return runUrl(runId, `/files/${path.split("/").map(encodeURIComponent).join("/")}`);
}

const PLOT_NAMES = { pr_curves: "PR curves", confusion_matrix: "Confusion matrix", training_plot: "Training loss" };
const WHOSE = { current: "current model", candidate: "candidate" };

function plotLabel(key) {  // "candidate_pr_curves" -> "PR curves · candidate"
  const [who, ...rest] = key.split("_");
  const what = rest.join("_");
  return WHOSE[who] ? `${PLOT_NAMES[what] || words(what)} · ${WHOSE[who]}` : PLOT_NAMES[key] || words(key);
}

function plotOrder([key]) {  // PR curves first, then the rest; before/after of the same plot side by side
  const [who, ...rest] = key.split("_");
  const what = rest.join("_");
  if (!WHOSE[who]) return `9:${key}`;
  return `${what === "pr_curves" ? 0 : what === "confusion_matrix" ? 1 : 2}:${what}:${who === "current" ? 0 : 1}`;
}

function renderPlots(runId, report) {
  const files = Object.entries(report.files || {}).filter(([, path]) => /\.(png|jpe?g)$/i.test(String(path)));
  files.sort((a, b) => plotOrder(a).localeCompare(plotOrder(b)));
  const figures = files.map(([key, path]) => el("figure", {},  // a plot opens full size in a tab of its own
    el("a", { href: imageUrl(runId, path), target: "_blank", rel: "noopener", title: "Open full size" },
      el("img", { src: imageUrl(runId, path), alt: plotLabel(key), loading: "lazy" })),
    el("figcaption", { textContent: plotLabel(key) })));
  const none = judged(report) ? "No plots in this report." : "No plots: the run stopped before it evaluated anything.";
  $("plots").replaceChildren(...(figures.length ? figures : [el("p", { className: "none", textContent: none })]));
}

function verdictTag(verdict) {
  const tag = el("span", { className: "verdict-tag", textContent: verdict || "?" });
  tag.dataset.verdict = verdict || "";
  return tag;
}

function frameSource(runId, frame) {  // the run folder's copy, else the queue's frame (by entry id)
  const image = String(frame.image || "");
  if (image && !image.startsWith("/")) return imageUrl(runId, image);
  return frame.entry_id ? `/api/review/entries/${encodeURIComponent(frame.entry_id)}/frame.png` : "";
}

function changedFigure(runId, frame) {
  const name = frame.entry_id ? `queue entry ${frame.entry_id}` : String(frame.image || "frame").split("/").pop();
  const tags = [verdictTag(frame.current), el("span", { textContent: "→" }), verdictTag(frame.candidate)];
  if (frame.change) {
    const change = el("span", { className: "change", textContent: frame.change });
    change.dataset.change = frame.change;
    tags.push(change);
  }
  const src = frameSource(runId, frame);
  const truth = frame.truth ? ` · truth ${frame.truth}` : "";
  return el("figure", {}, src ? el("img", { src, alt: name, loading: "lazy" }) : "",
    el("div", { className: "verdicts" }, ...tags), el("figcaption", { textContent: name + truth }));
}

function renderChanged(runId, report) {
  const verdicts = report.verdicts || {};
  const frames = verdicts.frames_changed || [];
  $("changed-summary").textContent = verdicts.frames === undefined ? "" : `${verdicts.changed} of ${verdicts.frames} `
    + `golden frames change verdict: ${verdicts.fixed} fixed, ${verdicts.broken} broken.`;
  const figures = frames.map((frame) => changedFigure(runId, frame));
  const none = judged(report) ? "No frame changed its verdict."
    : "No verdicts: the run stopped before it judged the golden frames.";
  $("changed").replaceChildren(...(figures.length ? figures : [el("p", { className: "none", textContent: none })]));
}

function renderDecision(detail) {
  const serving = servingAdapter(detail.serving);
  const live = detail.candidate_version && detail.candidate_version === serving;
  const stored = detail.candidate_version && !live && detail.can_promote;
  $("serving-note").hidden = !live && !stored;
  $("serving-note").dataset.kind = live ? "live" : "stored";
  $("serving-note").textContent = live ? `The candidate is serving now as ${detail.candidate_version}.`
    : stored ? `The run stored the candidate as ${detail.candidate_version}; the line serves it once you promote it.`
      : "";
  $("promote").hidden = !detail.can_promote || live;
  $("override").hidden = !detail.can_override || live;
  $("phrase").textContent = detail.override_phrase;
  $("override-confirm").placeholder = detail.override_phrase;
}

function renderReport(detail) {
  const report = detail.report;
  const show = Boolean(report) || detail.state === "failed" || detail.state === "cancelled";
  $("report").hidden = !show;
  document.body.dataset.outcome = "";
  if (!show) return;
  const outcome = report?.outcome || detail.state;
  $("report-title").firstChild.textContent = `Report · ${runTime(detail.run_id)} `;
  $("outcome").textContent = words(outcome);
  $("outcome").dataset.state = outcome;
  const rejected = report?.gate && report.gate.passed === false;  // the gate box below says why, rule by rule
  $("reason").textContent = rejected ? "" : report?.reason || detail.message || "";
  $("run-summary").textContent = report ? runSummary(report) : "";
  document.body.dataset.outcome = outcome;
  for (const part of ["gate", "decide"]) $(part).hidden = !report;
  if (!report) return;
  renderGate(report);
  fillTable("scores", scoreRows(report).filter(([, a, b]) => a !== undefined || b !== undefined));
  fillTable("per-class", classRows(report));
  renderPlots(detail.run_id, report);
  renderChanged(detail.run_id, report);
  renderDecision(detail);
}

// ----- models and runs ----------------------------------------------------------------------------------------------
function modelRow(row) {
  const marks = ["serving", "current", "previous"].filter((k) => row[k]).map((k) => el("span", { className: `mark ${k}`, textContent: k }));
  if (row.override) marks.push(el("span", { className: "mark override", textContent: "override" }));
  const name = el("td", { textContent: row.version, title: row.run ? `run ${row.run}` : row.error || "" });
  return el("tr", {}, name, el("td", { textContent: num(row.map) }), el("td", { textContent: num(row.map50) }),
    el("td", { className: "marks" }, ...marks));
}

async function loadModels() {
  const data = await api("/api/models");
  const base = el("tr", { className: "base" }, el("td", { textContent: "base model" }), el("td", { textContent: "–" }),
    el("td", { textContent: "–" }), el("td", { className: "marks" },
      ...(servingAdapter(data.serving) ? [] : [el("span", { className: "mark serving", textContent: "serving" })])));
  $("history").tBodies[0].replaceChildren(...data.versions.map(modelRow), base);
  const canRollBack = Boolean(data.previous || data.current);  // after the first promote, back to the base model
  $("rollback").disabled = !canRollBack || state.busy;
  $("rollback").textContent = data.previous ? `Roll back to ${data.previous}`
    : data.current ? "Roll back to the base model" : "Nothing to roll back to";
  $("model").textContent = `model ${data.serving}`;
}

function renderList(runs) {
  const items = runs.map((run) => {
    const shown = run.state === "running" ? "running" : run.outcome || run.state;
    const when = runTime(run.run_id).replace(/:\d\d UTC$/, "");  // minutes are enough to tell runs apart here
    const button = el("button", { type: "button", title: `run ${run.run_id}` },
      el("span", { className: "run-time", textContent: when }),
      el("span", { className: "badge", textContent: words(shown) }));
    button.querySelector(".badge").dataset.state = shown;
    button.setAttribute("aria-current", String(run.run_id === state.selected));
    button.addEventListener("click", () => select(run.run_id));
    return el("li", {}, button);
  });
  $("run-list").replaceChildren(...(items.length ? items : [el("li", { className: "none", textContent: "No run yet." })]));
}

// ----- refreshing ---------------------------------------------------------------------------------------------------
async function loadDetail() {
  if (!state.selected) return;
  state.detail = await api(runUrl(state.selected));
  document.body.dataset.run = state.selected;
  document.body.dataset.state = state.detail.state;
  renderReport(state.detail);
}

async function refresh() {
  const list = await api("/api/runs");
  const ended = state.active && !list.active;
  if (list.active && list.active !== state.active) state.selected = list.active;  // follow a new run
  state.active = list.active;
  if (!state.selected && list.runs.length) state.selected = list.runs[0].run_id;
  await loadDetail();
  renderRunPanel(list);
  renderList(list.runs);
  $("model").textContent = `model ${list.serving}`;
  if (ended || !state.active) await loadModels();
}

function schedule() {
  clearTimeout(state.timer);
  state.timer = setTimeout(async () => {
    try {
      await refresh();
    } catch (err) {
      toast(err.message, "error");
    }
    schedule();
  }, state.active ? POLL_RUNNING_MS : POLL_IDLE_MS);
}

async function select(runId) {
  state.selected = runId;
  await refresh().catch((err) => toast(err.message, "error"));
}

// ----- actions ------------------------------------------------------------------------------------------------------
async function act(button, work) {
  state.busy = true;
  button.disabled = true;
  $("run-error").hidden = true;
  try {
    const message = await work();
    if (message) toast(message);
  } catch (err) {
    $("run-error").textContent = err.message;
    $("run-error").hidden = false;
  } finally {
    state.busy = false;
    button.disabled = false;
    await refresh().catch(() => {});
    schedule();
  }
}

const switched = (result) => `${result.current || "the base model"} is serving now (${result.serving}).`;

function bindActions() {
  $("start-run").addEventListener("click", () => act($("start-run"), async () => {
    const run = await api("/api/runs", { method: "POST" });
    state.selected = run.run_id;
    return `Run ${run.run_id} started.`;
  }));
  $("cancel-run").addEventListener("click", () => {
    if (!window.confirm("Cancel this run? It stops at its next safe point and promotes nothing.")) return;
    act($("cancel-run"), async () => {
      await api(runUrl(state.active, "/cancel"), { method: "POST" });
      return "Cancelling the run…";
    });
  });
  $("promote").addEventListener("click", () => act($("promote"), async () =>
    switched(await api(runUrl(state.selected, "/promote"), { method: "POST" }))));
  $("rollback").addEventListener("click", () => {
    if (!window.confirm(`${$("rollback").textContent}? The line serves it as soon as it has loaded.`)) return;
    act($("rollback"), async () => switched(await api("/api/models/rollback", { method: "POST" })));
  });
  $("override").addEventListener("submit", (event) => {
    event.preventDefault();
    const body = JSON.stringify({ confirm: $("override-confirm").value, reason: $("override-reason").value });
    act($("override-button"), async () => switched(await api(runUrl(state.selected, "/override"), { method: "POST", body })));
  });
}

async function start() {
  await signIn(api, state);
  bindActions();
  await refresh();
  await loadModels();
  document.body.dataset.ready = "true";  // the buttons work from here on
  schedule();
}

start().catch((err) => toast(err.message, "error"));
