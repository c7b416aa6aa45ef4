// pgdag dashboard: plain JavaScript, no build step, nothing loaded from elsewhere.
//
// Views (the part of the URL after #): #/workflows, #/workflows/<id>, #/jobs,
// #/jobs/<id>. Every API call sends the token kept in sessionStorage as
// "Authorization: Bearer"; the token arrives in the fragment (#token=..., which
// browsers never send to a server, and which is removed from the address bar at
// once) or through the login dialog shown after a 401.
"use strict";

const TOKEN_KEY = "pgdag.token";
const REFRESH_MS = 2000;
const LIVE_MS = 1000; // a workflow that is still running
const SVG_NS = "http://www.w3.org/2000/svg";
// exactly the colours of WorkflowPlugin.generate_dot
const COLOURS = {
  pending: "lightblue",
  running: "yellow",
  succeeded: "lightgreen",
  failed: "lightpink",
};
const WORKFLOW_STATES = ["pending", "running", "completed", "failed"];
const JOB_STATES = ["pending", "running", "retrying", "succeeded", "failed", "cancelled"];
const NODE = { width: 160, height: 46, gapX: 28, gapY: 56, pad: 24, title: 48 };

const state = {
  timer: null,
  generation: 0, // bumps on every refresh: a late answer to an older one is dropped
  filters: { workflows: {}, jobs: {} },
  cursors: { workflows: [], jobs: [] }, // stacks: [] is the first page
  selectedStep: null,
  drawn: null, // {signature, nodes: Map(step_id -> {group, rect, label})}
};

// -- helpers -------------------------------------------------------------------

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function svg(tag, attrs, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "text") node.textContent = value;
    else node.setAttribute(key, String(value));
  }
  for (const child of children.flat(Infinity)) if (child) node.append(child);
  return node;
}

function colour(stepState) {
  return COLOURS[stepState] || "lightgray";
}

function age(from, now) {
  if (!from) return "-";
  const seconds = Math.max(0, (new Date(now) - new Date(from)) / 1000);
  if (seconds < 60) return `${Math.floor(seconds)} s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)} h`;
  return `${Math.floor(seconds / 86400)} d`;
}

function when(value) {
  if (!value) return "-";
  const date = new Date(value);
  return `${date.toLocaleDateString()} ${date.toLocaleTimeString()}`;
}

function took(start, end) {
  if (!start || !end) return "-";
  const ms = new Date(end) - new Date(start);
  return ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(2)} s`;
}

function badge(value) {
  return el("span", { class: `badge state-${value}`, "data-state": value, text: value });
}

function setStatus(text, isError) {
  const status = document.getElementById("status");
  status.textContent = text;
  status.classList.toggle("error", Boolean(isError));
}

// -- the token and the API -----------------------------------------------------

class Unauthorised extends Error {}

function takeTokenFromFragment() {
  const match = location.hash.match(/(?:^#|&)token=([^&]*)/);
  if (!match) return;
  sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(match[1]));
  history.replaceState(null, "", `${location.pathname}${location.search}#/workflows`);
}

async function api(path) {
  const headers = { Accept: "application/json" };
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.Authorization = `Bearer ${token}`;
  const response = await fetch(path, { headers, cache: "no-store" });
  if (response.status === 401) throw new Unauthorised((await response.json()).error);
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || `${response.status} ${response.statusText}`);
  return body;
}

function askForToken(message) {
  const dialog = document.getElementById("login");
  const error = document.getElementById("login-error");
  const hadToken = Boolean(sessionStorage.getItem(TOKEN_KEY));
  error.hidden = !hadToken;
  error.textContent = hadToken ? message : "";
  if (!dialog.open) dialog.showModal();
  document.getElementById("login-token").focus();
}

// -- navigation and refresh ------------------------------------------------------

function route() {
  const parts = location.hash.replace(/^#\/?/, "").split("/").filter(Boolean);
  const [section, id] = parts;
  if (section === "jobs" && id) return { name: "job", id: decodeURIComponent(id) };
  if (section === "jobs") return { name: "jobs" };
  if (section === "workflows" && id) return { name: "workflow", id: decodeURIComponent(id) };
  return { name: "workflows" };
}

function navigate() {
  takeTokenFromFragment();
  state.drawn = null;
  state.selectedStep = null;
  const where = route();
  for (const link of document.querySelectorAll("[data-nav]")) {
    link.classList.toggle("active", where.name.startsWith(link.dataset.nav.slice(0, -1)));
  }
  const view = document.getElementById("view");
  view.replaceChildren();
  delete view.dataset.frame;
  refresh();
}

async function refresh() {
  clearTimeout(state.timer);
  if (document.hidden) return; // visibilitychange starts it again
  state.generation += 1;
  const generation = state.generation;
  const where = route();
  let delay = REFRESH_MS;
  try {
    if (where.name === "workflows") await showWorkflows(generation);
    else if (where.name === "workflow") delay = await showWorkflow(generation, where.id);
    else if (where.name === "jobs") await showJobs(generation);
    else if (where.name === "job") await showJob(generation, where.id);
    if (generation === state.generation) {
      setStatus(`updated ${new Date().toLocaleTimeString()}`);
      document.getElementById("logout").hidden = !sessionStorage.getItem(TOKEN_KEY);
    }
  } catch (error) {
    if (generation !== state.generation) return;
    if (error instanceof Unauthorised) {
      setStatus("token needed", true);
      askForToken(error.message);
      return; // the login form refreshes again
    }
    setStatus(error.message, true);
  }
  if (generation === state.generation) {
    clearTimeout(state.timer);
    state.timer = setTimeout(refresh, delay);
  }
}

function current(generation) {
  return generation === state.generation;
}

// Build a view's frame once, then only update its parts.
function frame(key, build) {
  const view = document.getElementById("view");
  if (view.dataset.frame !== key) {
    view.replaceChildren(build());
    view.dataset.frame = key;
  }
  return view;
}

function filterBar(kind, fields) {
  const form = el("form", { class: "filters", onsubmit: (event) => event.preventDefault() });
  for (const field of fields) {
    let input;
    if (field.choices) {
      input = el(
        "select",
        { name: field.name, "aria-label": field.label },
        el("option", { value: "", text: `any ${field.label}` }),
        field.choices.map((choice) => el("option", { value: choice, text: choice })),
      );
    } else {
      input = el("input", {
        name: field.name,
        placeholder: field.label,
        "aria-label": field.label,
      });
    }
    input.value = state.filters[kind][field.name] || "";
    input.addEventListener("change", () => {
      state.filters[kind][field.name] = input.value.trim();
      state.cursors[kind] = [];
      refresh();
    });
    form.append(input);
  }
  return form;
}

function pager(kind, nextCursor) {
  const stack = state.cursors[kind];
  const newer = el("button", {
    type: "button",
    disabled: stack.length === 0,
    text: "\u2190 newer",
    onclick: () => {
      stack.pop();
      refresh();
    },
  });
  const older = el("button", {
    type: "button",
    disabled: !nextCursor,
    text: "older \u2192",
    onclick: () => {
      stack.push(nextCursor);
      refresh();
    },
  });
  return el("div", { class: "pager" }, newer, el("span", { text: `page ${stack.length + 1}` }), older);
}

function query(kind) {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(state.filters[kind])) if (value) params.set(key, value);
  const stack = state.cursors[kind];
  if (stack.length) params.set("cursor", stack[stack.length - 1]);
  const text = params.toString();
  return text ? `?${text}` : "";
}

// -- workflows ---------------------------------------------------------------------

async function showWorkflows(generation) {
  const data = await api(`/api/v1/workflows${query("workflows")}`);
  if (!current(generation)) return;
  const view = frame("workflows", () =>
    el(
      "section",
      {},
      el("h1", { text: "Workflows" }),
      filterBar("workflows", [
        { name: "state", label: "state", choices: WORKFLOW_STATES },
        { name: "name", label: "name" },
      ]),
      el("div", { id: "workflows-table" }),
      el("div", { id: "workflows-pager" }),
    ),
  );
  const rows = data.workflows.map((workflow) =>
    el(
      "tr",
      { "data-workflow-id": workflow.id, "data-workflow-state": workflow.state },
      el("td", {}, el("a", { href: `#/workflows/${workflow.id}`, text: workflow.name })),
      el("td", {}, badge(workflow.state)),
      el("td", {}, progress(workflow.steps_succeeded, workflow.steps_total)),
      el("td", { text: age(workflow.created_at, data.now), title: when(workflow.created_at) }),
      el("td", { class: "mono", text: workflow.id }),
    ),
  );
  const table = rows.length
    ? el(
        "table",
        {},
        el("thead", {}, el("tr", {}, ["name", "state", "steps done", "age", "id"].map((h) => el("th", { text: h })))),
        el("tbody", {}, rows),
      )
    : el("p", { class: "empty", text: "No workflows (yet)." });
  view.querySelector("#workflows-table").replaceChildren(table);
  view.querySelector("#workflows-pager").replaceChildren(pager("workflows", data.next_cursor));
}

function progress(done, total) {
  const bar = el("span", { class: "bar" });
  const fill = el("span", { class: "fill" });
  fill.style.width = `${total ? Math.round((100 * done) / total) : 0}%`;
  bar.append(fill);
  return el("span", { class: "progress" }, bar, ` ${done}/${total}`);
}

async function showWorkflow(generation, id) {
  const workflow = await api(`/api/v1/workflows/${encodeURIComponent(id)}`);
  if (!current(generation)) return REFRESH_MS;
  const view = frame(`workflow:${id}`, () =>
    el(
      "section",
      {},
      el("p", {}, el("a", { href: "#/workflows", text: "\u2190 all workflows" })),
      el("div", { id: "workflow-head" }),
      el(
        "div",
        { class: "split" },
        el("div", { id: "graph", class: "graph" }),
        el("aside", { id: "step", class: "panel" }, el("p", { class: "hint", text: "Click a step for its details." })),
      ),
      legend(),
    ),
  );
  const finished = workflow.state === "completed" || workflow.state === "failed";
  view.querySelector("#workflow-head").replaceChildren(
    el("h1", {}, `${workflow.name} `, el("span", { id: "workflow-state", "data-workflow-state": workflow.state }, badge(workflow.state))),
    el(
      "p",
      { class: "meta" },
      `${workflow.steps_succeeded}/${workflow.steps_total} steps succeeded \u00b7 created ${when(workflow.created_at)} (${age(workflow.created_at, workflow.now)} ago)`,
      workflow.completed_at ? ` \u00b7 finished after ${took(workflow.created_at, workflow.completed_at)}` : "",
      finished ? "" : " \u00b7 live",
    ),
    el("p", { class: "mono" }, workflow.id),
  );
  drawGraph(view.querySelector("#graph"), workflow);
  const selected = workflow.steps.find((step) => step.step_id === state.selectedStep);
  if (selected) showStep(selected);
  return finished ? REFRESH_MS : LIVE_MS;
}

function legend() {
  const items = [...Object.entries(COLOURS), ["other", "lightgray"]].map(([name, fill]) => {
    const swatch = el("span", { class: "swatch" });
    swatch.style.background = fill;
    return el("span", { class: "legend-item" }, swatch, name);
  });
  return el("p", { class: "legend" }, items);
}

// The DAG as SVG, from the layer and order the API computed for each step.
function drawGraph(container, workflow) {
  const signature = JSON.stringify(workflow.steps.map((s) => [s.step_id, s.dependencies, s.layer, s.order]));
  if (state.drawn && state.drawn.signature === signature && container.firstChild) {
    for (const step of workflow.steps) paintNode(state.drawn.nodes.get(step.step_id), step);
    state.drawn.title.textContent = `State: ${workflow.state}`;
    return;
  }
  const layers = [];
  for (const step of workflow.steps) (layers[step.layer] ||= []).push(step);
  const widest = Math.max(1, ...layers.map((layer) => (layer ? layer.length : 0)));
  const width = NODE.pad * 2 + widest * NODE.width + (widest - 1) * NODE.gapX;
  const height = NODE.pad * 2 + NODE.title + layers.length * NODE.height + Math.max(0, layers.length - 1) * NODE.gapY;
  const place = new Map();
  layers.forEach((layer, index) => {
    if (!layer) return;
    const span = layer.length * NODE.width + (layer.length - 1) * NODE.gapX;
    const left = (width - span) / 2;
    for (const step of layer) {
      place.set(step.step_id, {
        x: left + step.order * (NODE.width + NODE.gapX),
        y: NODE.pad + NODE.title + index * (NODE.height + NODE.gapY),
      });
    }
  });
  const root = svg("svg", {
    xmlns: SVG_NS,
    width,
    height,
    viewBox: `0 0 ${width} ${height}`,
    role: "img",
    "aria-label": `DAG of workflow ${workflow.name}`,
  });
  root.append(
    svg(
      "defs",
      {},
      svg(
        "marker",
        { id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 8, markerHeight: 8, orient: "auto-start-reverse" },
        svg("path", { d: "M 0 0 L 10 5 L 0 10 z", fill: "#555" }),
      ),
    ),
  );
  root.append(svg("text", { x: width / 2, y: NODE.pad + 14, "text-anchor": "middle", class: "graph-title", text: `Workflow: ${workflow.name}` }));
  const title = svg("text", { x: width / 2, y: NODE.pad + 32, "text-anchor": "middle", class: "graph-title", text: `State: ${workflow.state}` });
  root.append(title);
  const edges = svg("g", { class: "edges" });
  for (const step of workflow.steps) {
    const to = place.get(step.step_id);
    for (const dependency of step.dependencies) {
      const from = place.get(dependency);
      if (!from) continue;
      const x1 = from.x + NODE.width / 2;
      const y1 = from.y + NODE.height;
      const x2 = to.x + NODE.width / 2;
      const y2 = to.y;
      const bend = (y2 - y1) / 2;
      edges.append(
        svg("path", {
          d: `M ${x1} ${y1} C ${x1} ${y1 + bend}, ${x2} ${y2 - bend}, ${x2} ${y2}`,
          class: "edge",
          "marker-end": "url(#arrow)",
          "data-from": dependency,
          "data-to": step.step_id,
        }),
      );
    }
  }
  root.append(edges);
  const nodes = new Map();
  for (const step of workflow.steps) {
    const at = place.get(step.step_id);
    const rect = svg("rect", { x: at.x, y: at.y, width: NODE.width, height: NODE.height, rx: 8, ry: 8 });
    const name = svg("text", { x: at.x + NODE.width / 2, y: at.y + 19, "text-anchor": "middle", class: "node-name", text: shorten(step.step_id, 22) });
    const label = svg("text", { x: at.x + NODE.width / 2, y: at.y + 36, "text-anchor": "middle", class: "node-state" });
    const tooltip = svg("title", { text: step.step_id });
    const group = svg("g", { class: "node", tabindex: 0, role: "button", "data-step-id": step.step_id }, tooltip, rect, name, label);
    const open = () => {
      state.selectedStep = step.step_id;
      const latest = state.drawn.steps.get(step.step_id);
      showStep(latest);
    };
    group.addEventListener("click", open);
    group.addEventListener("keydown", (event) => {
      if (event.key === "Enter" || event.key === " ") open();
    });
    nodes.set(step.step_id, { group, rect, label });
    paintNode(nodes.get(step.step_id), step);
    root.append(group);
  }
  container.replaceChildren(root);
  state.drawn = { signature, nodes, title, steps: new Map() };
  for (const step of workflow.steps) state.drawn.steps.set(step.step_id, step);
}

function paintNode(node, step) {
  node.rect.setAttribute("fill", colour(step.state));
  node.label.textContent = `(${step.state})`;
  node.group.setAttribute("data-state", step.state);
  node.group.classList.toggle("selected", step.step_id === state.selectedStep);
  if (state.drawn) state.drawn.steps.set(step.step_id, step);
}

function shorten(text, length) {
  return text.length > length ? `${text.slice(0, length - 1)}\u2026` : text;
}

function showStep(step) {
  if (state.drawn) {
    for (const [id, node] of state.drawn.nodes) node.group.classList.toggle("selected", id === step.step_id);
  }
  const panel = document.getElementById("step");
  const signature = JSON.stringify(step);
  if (panel.dataset.signature === signature) return; // keeps an opened traceback open
  panel.dataset.signature = signature;
  const rows = [
    ["step", step.step_id],
    ["state", badge(step.state)],
    ["function", step.func],
    ["queue", step.queue],
    ["job", step.job_id ? el("a", { href: `#/jobs/${step.job_id}`, class: "mono", text: step.job_id }) : "not created yet"],
    ["attempts", `${step.attempts} of ${step.max_attempts}`],
    ["depends on", step.dependencies.length ? step.dependencies.join(", ") : "-"],
    ["started", when(step.started_at)],
    ["finished", when(step.completed_at)],
    ["took", took(step.started_at, step.completed_at)],
  ];
  panel.replaceChildren(
    el("h2", { text: `Step ${step.step_id}` }),
    details(rows),
    errorList(step.errors),
  );
  panel.dataset.stepId = step.step_id;
  panel.dataset.stepState = step.state;
}

function details(rows) {
  return el(
    "dl",
    { class: "details" },
    rows.map(([term, value]) => [el("dt", { text: term }), el("dd", {}, value)]),
  );
}

function errorList(errors) {
  if (!errors || !errors.length) return document.createDocumentFragment();
  return el(
    "div",
    { class: "errors" },
    el("h3", { text: `Errors (${errors.length})` }),
    errors.map((error) =>
      el(
        "details",
        {},
        el("summary", {}, `attempt ${error.attempt ?? "?"}: ${error.type ?? "error"}: ${error.message ?? ""}`),
        el("pre", { text: error.traceback || "(no traceback)" }),
      ),
    ),
  );
}

// -- jobs ----------------------------------------------------------------------------

async function showJobs(generation) {
  const [summary, data] = await Promise.all([api("/api/v1/jobs/summary"), api(`/api/v1/jobs${query("jobs")}`)]);
  if (!current(generation)) return;
  const view = frame("jobs", () =>
    el(
      "section",
      {},
      el("h1", { text: "Jobs" }),
      el("div", { id: "jobs-summary" }),
      filterBar("jobs", [
        { name: "state", label: "state", choices: JOB_STATES },
        { name: "queue", label: "queue" },
      ]),
      el("div", { id: "jobs-table" }),
      el("div", { id: "jobs-pager" }),
    ),
  );
  view.querySelector("#jobs-summary").replaceChildren(summaryTable(summary));
  const rows = data.jobs.map((job) =>
    el(
      "tr",
      { "data-job-id": job.id, "data-job-state": job.state },
      el("td", {}, el("a", { href: `#/jobs/${job.id}`, text: job.func })),
      el("td", { text: job.queue }),
      el("td", {}, badge(job.state)),
      el("td", { text: `${job.attempts}/${job.max_attempts}` }),
      el("td", { text: age(job.created_at, data.now), title: when(job.created_at) }),
      el("td", { text: took(job.started_at, job.completed_at) }),
      el(
        "td",
        {},
        job.workflow_id ? el("a", { href: `#/workflows/${job.workflow_id}`, text: job.step_id }) : "-",
      ),
    ),
  );
  const table = rows.length
    ? el(
        "table",
        {},
        el("thead", {}, el("tr", {}, ["function", "queue", "state", "attempts", "age", "took", "workflow step"].map((h) => el("th", { text: h })))),
        el("tbody", {}, rows),
      )
    : el("p", { class: "empty", text: "No jobs match." });
  view.querySelector("#jobs-table").replaceChildren(table);
  view.querySelector("#jobs-pager").replaceChildren(pager("jobs", data.next_cursor));
}

function summaryTable(summary) {
  const queues = Object.keys(summary.queues).sort();
  if (!queues.length) return el("p", { class: "empty", text: "No jobs (yet)." });
  const head = el("tr", {}, el("th", { text: "queue" }), JOB_STATES.map((s) => el("th", { text: s })), el("th", { text: "total" }));
  const body = queues.map((queue) => {
    const counts = summary.queues[queue];
    const total = Object.values(counts).reduce((a, b) => a + b, 0);
    return el(
      "tr",
      { "data-queue": queue },
      el("td", { text: queue }),
      JOB_STATES.map((s) => el("td", { class: "number", text: counts[s] || 0 })),
      el("td", { class: "number", text: total }),
    );
  });
  return el("table", { class: "summary" }, el("thead", {}, head), el("tbody", {}, body));
}

async function showJob(generation, id) {
  const job = await api(`/api/v1/jobs/${encodeURIComponent(id)}`);
  if (!current(generation)) return;
  const view = frame(`job:${id}`, () => el("section", {}, el("p", {}, el("a", { href: "#/jobs", text: "\u2190 all jobs" })), el("div", { id: "job" })));
  const rows = [
    ["id", el("span", { class: "mono", text: job.id })],
    ["function", job.func],
    ["state", badge(job.state)],
    ["queue", job.queue],
    ["priority", job.priority],
    ["attempts", `${job.attempts} of ${job.max_attempts}`],
    ["created", when(job.created_at)],
    ["scheduled", when(job.scheduled_at)],
    ["started", when(job.started_at)],
    ["finished", when(job.completed_at)],
    ["took", took(job.started_at, job.completed_at)],
    ["worker", job.worker_id || "-"],
    ["workflow", job.workflow_id ? el("a", { href: `#/workflows/${job.workflow_id}`, text: `${job.workflow_id} (step ${job.step_id})` }) : "-"],
    ["kwargs", el("pre", { text: JSON.stringify(job.kwargs, null, 2) })],
    ["result", el("pre", { text: job.result === null ? "-" : JSON.stringify(job.result, null, 2) })],
  ];
  view.querySelector("#job").replaceChildren(el("h1", { text: `Job ${job.func}` }), details(rows), errorList(job.errors));
}

// -- start ---------------------------------------------------------------------------

function start() {
  document.getElementById("login-form").addEventListener("submit", () => {
    sessionStorage.setItem(TOKEN_KEY, document.getElementById("login-token").value.trim());
    document.getElementById("login-token").value = "";
    refresh();
  });
  document.getElementById("logout").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    location.reload();
  });
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden) refresh();
  });
  window.addEventListener("hashchange", navigate);
  navigate();
}

start();
