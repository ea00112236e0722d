// Box editor of the review page: an SVG laid over the frame, working in the frame's own pixel coordinates.
// The model's boxes are SUGGESTIONS (dashed, translucent, with their score) until a person changes them; a box that
// is drawn, moved, resized or given a class is a LABEL (solid). Boxes FOUND by a "find the ..." query (phrase
// grounding) have no class (dashed white, with the phrase) until a person gives them one; moved or resized they stay
// found. Every change can be undone.
// Mouse, pen and touch share one path (pointer events): drag on the frame draws, drag a box moves it, drag one of
// the selected box's corner handles resizes it.

const MIN_BOX_PX = 6;  // screen pixels: a shorter drag is a click, not a box
const DRAG_START_PX = 3;  // screen pixels a press must travel before it moves or resizes anything
const HISTORY_LIMIT = 200;
const CORNERS = ["nw", "ne", "sw", "se"];
const FOUND_COLOR = "#ffffff";
export const PALETTE = ["#ff9f1c", "#2ec4b6", "#ff4d6d", "#b388ff", "#4cc9f0", "#ffd60a", "#80ed99", "#f72585",
  "#adb5bd"];

let svgNamespace = null;  // taken from the editor's <svg>, so no namespace URI needs spelling out here

function svgElement(name, attributes) {
  const element = document.createElementNS(svgNamespace, name);
  for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, String(value));
  return element;
}

function clamp(value, low, high) {
  return Math.min(Math.max(value, low), high);
}

// Moving or resizing a box a person has not given a class (a found one) keeps it unclassified.
function kindAfterEdit(box) {
  return box.label === null ? "found" : "label";
}

function copyBoxes(boxes) {
  return boxes.map((box) => ({ ...box }));
}

export class BoxEditor {
  constructor(svg, onChange) {
    svgNamespace = svg.namespaceURI;
    this.svg = svg;
    this.onChange = onChange;
    this.image = svg.querySelector(".frame-image");
    this.layer = svg.querySelector(".boxes-layer");
    this.draft = svg.querySelector(".draft");
    this.classes = [];
    this.boxes = [];
    this.history = [];
    this.selected = null;
    this.drawMode = false;
    this.currentClass = null;
    this.width = 1;
    this.height = 1;
    this.gesture = null;
    this.listen();
  }

  listen() {
    this.svg.addEventListener("pointerdown", (event) => this.pointerDown(event));
    this.svg.addEventListener("pointermove", (event) => this.pointerMove(event));
    this.svg.addEventListener("pointerup", (event) => this.pointerUp(event));
    this.svg.addEventListener("pointercancel", () => this.cancelGesture());
    new ResizeObserver(() => this.render()).observe(this.svg);  // handles and tags keep their on-screen size
  }

  // ----- state ------------------------------------------------------------------------------------------------------
  load({ width, height, image, classes, boxes, history = [] }) {
    this.width = width;
    this.height = height;
    this.classes = classes;
    this.boxes = copyBoxes(boxes);
    this.history = history.map((step) => ({ boxes: copyBoxes(step.boxes), selected: step.selected }));
    this.selected = null;
    this.gesture = null;
    this.currentClass = boxes.length && boxes[0].label ? boxes[0].label : classes[0];
    this.svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
    this.image.setAttribute("width", width);
    this.image.setAttribute("height", height);
    this.image.setAttribute("href", image);
    this.setDrawMode(false);
  }

  clear() {
    this.boxes = [];
    this.history = [];
    this.selected = null;
    this.gesture = null;
    this.setDrawMode(false);
  }

  draftState() {
    return { boxes: copyBoxes(this.boxes), history: this.history };
  }

  get edited() {
    return this.history.length > 0;
  }

  get found() {
    return this.boxes.filter((box) => box.kind === "found").length;
  }

  // Boxes of a "find the ..." query replace the previous query's unclassified ones (one undo step).
  addFound(regions) {
    if (!regions.length && !this.found) return;
    this.remember();
    this.boxes = this.boxes.filter((box) => box.kind !== "found");
    this.boxes.push(...regions.map(({ phrase, score, x1, y1, x2, y2 }) => ({ label: null, kind: "found", phrase,
      score, x1, y1, x2, y2 })));
    this.selected = null;
    this.commit();
  }

  remember() {
    this.history.push({ boxes: copyBoxes(this.boxes), selected: this.selected });
    if (this.history.length > HISTORY_LIMIT) this.history.shift();
  }

  commit() {
    this.render();
    this.onChange();
  }

  // ----- commands (keyboard and buttons) ----------------------------------------------------------------------------
  select(index) {
    this.selected = index === null || !this.boxes.length ? null : clamp(index, 0, this.boxes.length - 1);
    if (this.selected !== null && this.boxes[this.selected].label) this.currentClass = this.boxes[this.selected].label;
    this.commit();
  }

  selectNext(step) {
    if (!this.boxes.length) return;
    const from = this.selected === null ? (step > 0 ? -1 : 0) : this.selected;
    this.select((from + step + this.boxes.length) % this.boxes.length);
  }

  setDrawMode(on) {
    this.drawMode = on;
    this.svg.classList.toggle("drawing", on);
    this.commit();
  }

  setClassIndex(position) {
    const label = this.classes[position];
    if (label === undefined) return false;
    this.currentClass = label;
    if (this.selected !== null) {
      this.remember();
      Object.assign(this.boxes[this.selected], { label, kind: "label" });
    }
    this.commit();
    return true;
  }

  nudge(dx, dy, resize) {
    if (this.selected === null) return false;
    this.remember();
    const box = this.boxes[this.selected];
    if (resize) {
      box.x2 = clamp(box.x2 + dx, box.x1 + 1, this.width);
      box.y2 = clamp(box.y2 + dy, box.y1 + 1, this.height);
    } else {
      Object.assign(box, this.shifted(box, dx, dy));
    }
    box.kind = kindAfterEdit(box);
    this.commit();
    return true;
  }

  step() {
    return Math.max(1, Math.round(Math.min(this.width, this.height) / 200));  // ~0.5 % of the frame per key press
  }

  deleteSelected() {
    if (this.selected === null) return false;
    this.remember();
    this.boxes.splice(this.selected, 1);
    this.selected = null;
    this.commit();
    return true;
  }

  undo() {
    const previous = this.history.pop();
    if (!previous) return false;
    this.boxes = previous.boxes;
    this.selected = previous.selected;
    this.commit();
    return true;
  }

  shifted(box, dx, dy) {
    const x = clamp(dx, -box.x1, this.width - box.x2);
    const y = clamp(dy, -box.y1, this.height - box.y2);
    return { x1: box.x1 + x, y1: box.y1 + y, x2: box.x2 + x, y2: box.y2 + y };
  }

  // ----- pointer gestures -------------------------------------------------------------------------------------------
  toFrame(event) {
    const point = new DOMPoint(event.clientX, event.clientY).matrixTransform(this.svg.getScreenCTM().inverse());
    return { x: clamp(point.x, 0, this.width), y: clamp(point.y, 0, this.height) };
  }

  pointerDown(event) {
    if (event.pointerType === "mouse" && event.button !== 0) return;
    if (document.activeElement instanceof HTMLElement) document.activeElement.blur();  // keys go to the editor again
    const handle = event.target.closest(".handle");
    const boxElement = event.target.closest(".box");
    let gesture = { type: "draw" };
    if (handle && this.selected !== null) {
      gesture = { type: "resize", corner: handle.dataset.corner, index: this.selected };
    } else if (boxElement && !this.drawMode) {
      gesture = { type: "move", index: Number(boxElement.dataset.index) };
      this.select(gesture.index);
    }
    const original = gesture.index === undefined ? null : { ...this.boxes[gesture.index] };
    this.gesture = { ...gesture, original, start: this.toFrame(event), screen: [event.clientX, event.clientY] };
    this.svg.setPointerCapture(event.pointerId);
    event.preventDefault();
  }

  pointerMove(event) {
    const gesture = this.gesture;
    if (!gesture) return;
    if (!gesture.changed) {
      if (Math.hypot(event.clientX - gesture.screen[0], event.clientY - gesture.screen[1]) < DRAG_START_PX) return;
      gesture.changed = true;
      if (gesture.type !== "draw") this.remember();
    }
    const point = this.toFrame(event);
    if (gesture.type === "draw") this.showDraft(gesture.start, point);
    else this.boxes[gesture.index] = this.dragged(gesture, point);
    if (gesture.type !== "draw") this.render();
  }

  dragged(gesture, point) {
    const box = { ...gesture.original, kind: kindAfterEdit(gesture.original) };
    if (gesture.type === "move") return Object.assign(box, this.shifted(box, point.x - gesture.start.x,
      point.y - gesture.start.y));
    if (gesture.corner.includes("w")) box.x1 = Math.min(point.x, box.x2 - 1);
    if (gesture.corner.includes("e")) box.x2 = Math.max(point.x, box.x1 + 1);
    if (gesture.corner.includes("n")) box.y1 = Math.min(point.y, box.y2 - 1);
    if (gesture.corner.includes("s")) box.y2 = Math.max(point.y, box.y1 + 1);
    return box;
  }

  pointerUp(event) {
    const gesture = this.gesture;
    if (!gesture) return;
    this.gesture = null;
    if (gesture.type === "draw") this.finishDraw(gesture, event);
    else if (gesture.changed) this.commit();
  }

  cancelGesture() {
    if (this.gesture && this.gesture.changed && this.gesture.type !== "draw") this.undo();
    this.gesture = null;
    this.draft.setAttribute("visibility", "hidden");
  }

  finishDraw(gesture, event) {
    this.draft.setAttribute("visibility", "hidden");
    const wide = Math.abs(event.clientX - gesture.screen[0]) >= MIN_BOX_PX;
    const tall = Math.abs(event.clientY - gesture.screen[1]) >= MIN_BOX_PX;
    if (!wide || !tall) {
      this.select(null);  // a click on the frame: nothing selected
      return;
    }
    const end = this.toFrame(event);
    this.remember();
    this.boxes.push({ label: this.currentClass, kind: "label", score: null, ...this.spanned(gesture.start, end) });
    this.selected = this.boxes.length - 1;
    this.setDrawMode(false);  // W draws one box
  }

  spanned(a, b) {
    return { x1: Math.min(a.x, b.x), y1: Math.min(a.y, b.y), x2: Math.max(a.x, b.x), y2: Math.max(a.y, b.y) };
  }

  showDraft(a, b) {
    const box = this.spanned(a, b);
    const size = { x: box.x1, y: box.y1, width: box.x2 - box.x1, height: box.y2 - box.y1 };
    for (const [key, value] of Object.entries(size)) this.draft.setAttribute(key, value);
    this.draft.setAttribute("visibility", "visible");
  }

  // ----- drawing ----------------------------------------------------------------------------------------------------
  unit() {
    const matrix = this.svg.getScreenCTM();
    return matrix && matrix.a > 0 ? 1 / matrix.a : 1;  // frame pixels per screen pixel
  }

  colorOf(label) {
    if (label === null) return FOUND_COLOR;
    const index = this.classes.indexOf(label);
    return PALETTE[(index < 0 ? 0 : index) % PALETTE.length];
  }

  render() {
    const unit = this.unit();
    const groups = this.boxes.map((box, index) => this.boxGroup(box, index, unit));
    if (this.selected !== null && groups[this.selected]) groups.push(groups.splice(this.selected, 1)[0]);
    this.layer.replaceChildren(...groups);
    this.draft.setAttribute("stroke-width", 2 * unit);
    this.svg.dataset.selected = this.selected === null ? "" : String(this.selected);
    this.svg.dataset.drawMode = String(this.drawMode);
  }

  boxGroup(box, index, unit) {
    const selected = index === this.selected;
    const group = svgElement("g", { class: `box ${box.kind}${selected ? " selected" : ""}`, "data-index": index,
      "data-label": box.label ?? "" });
    group.style.setProperty("--c", this.colorOf(box.label));  // CSSOM, not a style attribute: the CSP allows it
    const body = svgElement("rect", { class: "box-body", x: box.x1, y: box.y1, width: box.x2 - box.x1,
      height: box.y2 - box.y1, "stroke-width": (selected ? 3 : 2) * unit });
    if (box.kind !== "label") body.setAttribute("stroke-dasharray", `${7 * unit} ${5 * unit}`);
    group.append(body);
    group.append(this.tag(box, unit));
    if (selected) CORNERS.forEach((corner) => group.append(this.handle(box, corner, unit)));
    return group;
  }

  tag(box, unit) {
    const size = 13 * unit;
    const below = box.y1 - 4 * unit < size;  // no room above the box: write the tag inside it
    const text = svgElement("text", { class: "box-tag", x: box.x1 + 2 * unit, y: below ? box.y1 + size : box.y1 - 4 * unit,
      "font-size": size, "stroke-width": 3 * unit });
    text.textContent = box.kind === "label" ? box.label : `${box.label ?? `find: ${box.phrase}`} ${box.score.toFixed(2)}?`;
    return text;
  }

  handle(box, corner, unit) {
    const size = (window.matchMedia("(pointer: coarse)").matches ? 22 : 12) * unit;
    const x = corner.includes("w") ? box.x1 : box.x2;
    const y = corner.includes("n") ? box.y1 : box.y2;
    return svgElement("rect", { class: "handle", "data-corner": corner, x: x - size / 2, y: y - size / 2,
      width: size, height: size, "stroke-width": 1.5 * unit });
  }
}
