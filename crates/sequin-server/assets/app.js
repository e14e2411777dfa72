// Sequin web UI: plain ES2020, no framework, no build step. ECharts is the only dependency
// (vendored under /assets/vendor). The contract with the server is docs/ui.md.
'use strict';

// ---------------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------------

const $ = (sel, root = document) => root.querySelector(sel);

// el('div', {class: 'x', onclick: f}, child, 'text', [more children])
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else if (k === 'class') node.className = v;
    else if (k === 'text') node.textContent = v;
    else if (k === 'dataset') Object.assign(node.dataset, v);
    else if (k === 'value') node.value = v;
    else node.setAttribute(k, v === true ? '' : v);
  }
  append(node, children);
  return node;
}

// Like replaceChildren, but skips null/false children (conditional parts of a view).
function fill(node, ...children) {
  node.replaceChildren();
  return append(node, children);
}

function append(node, children) {
  for (const c of children.flat(Infinity)) {
    if (c == null || c === false) continue;
    node.append(c instanceof Node ? c : String(c));
  }
  return node;
}

const nf = new Intl.NumberFormat('en-US');
const fmtInt = (n) => (n == null || Number.isNaN(n) ? '–' : nf.format(Math.round(n)));
const fmtPct = (x, digits = 1) => (x == null || Number.isNaN(x) ? '–' : `${(x * 100).toFixed(digits)}%`);
const fmtNum = (x, digits = 2) => (x == null || Number.isNaN(x) ? '–'
  : Number(x).toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits }));

function fmtP(p) {
  if (p == null) return '–';
  if (p < 0.0001) return '< 0.0001';
  return p < 0.01 ? p.toExponential(1) : p.toFixed(3);
}

// Durations the way people say them: 12 s, 3 min 5 s, 2 h 10 min, 3 d 4 h.
function fmtDuration(seconds) {
  if (seconds == null || Number.isNaN(seconds)) return '–';
  const s = Math.max(0, seconds);
  if (s < 10) return `${Math.round(s * 10) / 10} s`;
  if (s < 59.5) return `${Math.round(s)} s`;
  const parts = (big, bigU, small, smallU) => (small ? `${big} ${bigU} ${small} ${smallU}` : `${big} ${bigU}`);
  const t = Math.round(s);
  if (t < 3600) return parts(Math.floor(t / 60), 'min', t % 60, 's');
  if (t < 86400) return parts(Math.floor(t / 3600), 'h', Math.floor((t % 3600) / 60), 'min');
  return parts(Math.floor(t / 86400), 'd', Math.floor((t % 86400) / 3600), 'h');
}

// The API gives times as RFC 3339 text; the insight JSON uses epoch microseconds.
function toDate(v) {
  if (v == null) return null;
  if (typeof v === 'number') return new Date(v > 1e14 ? v / 1000 : v);
  return new Date(v);
}

function fmtTime(v) {
  const d = toDate(v);
  if (!d || Number.isNaN(d.getTime())) return String(v ?? '–');
  return d.toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' UTC').replace(/Z$/, ' UTC');
}

const isoDay = (d) => d.toISOString().slice(0, 10);

function debounce(fn, ms) {
  let timer = null;
  return (...args) => { clearTimeout(timer); timer = setTimeout(() => fn(...args), ms); };
}

// ---------------------------------------------------------------------------------------
// Key and API calls
// ---------------------------------------------------------------------------------------

const KEY_STORAGE = 'sequin.key';
const getKey = () => localStorage.getItem(KEY_STORAGE) || '';

function setKey(key) {
  if (key) localStorage.setItem(KEY_STORAGE, key);
  else localStorage.removeItem(KEY_STORAGE);
  $('#key-change').hidden = !key;
}

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

// Every call sends the key; a 401 means the key is missing or wrong, so ask for it again.
async function api(path, { method = 'GET', body, as = 'json' } = {}) {
  const headers = { Authorization: `Bearer ${getKey()}` };
  if (body != null) headers['Content-Type'] = 'text/plain; charset=utf-8';
  let res;
  try {
    res = await fetch(path, { method, headers, body });
  } catch (e) {
    throw new ApiError(0, `Cannot reach the server: ${e.message}`);
  }
  if (!res.ok) {
    let message = `${res.status} ${res.statusText}`;
    const text = await res.text().catch(() => '');
    try { message = JSON.parse(text).error || message; } catch { if (text) message = text; }
    if (res.status === 401) { stopChanges(); showKeyForm(message); }
    throw new ApiError(res.status, message);
  }
  if (as === 'blob') return res.blob();
  if (as === 'text') return res.text();
  return res.json();
}

const enc = encodeURIComponent;

// Uncaught errors and unhandled rejections are kept where a test (or a curious user) can
// read them: window.__sequinErrors.
window.__sequinErrors = [];
window.addEventListener('error', (e) => window.__sequinErrors.push(String(e.message)));
window.addEventListener('unhandledrejection', (e) => window.__sequinErrors.push(String(e.reason && e.reason.message || e.reason)));

// Errors may be multi-line rustc-style diagnostics, so they go in a <pre>.
function errorBox(err) {
  const msg = err instanceof Error ? err.message : String(err);
  return el('div', { class: 'error-box' }, el('pre', { text: msg }));
}

function showError(container, err) {
  if (err instanceof ApiError && err.status === 401) return; // the key form is shown
  fill(container, errorBox(err));
}

// The segment list is needed by several views (outcome pickers); one fetch per view visit.
async function loadSegments() {
  const data = await api('/api/segments');
  state.segments = data.segments || [];
  state.watermark = data.watermark;
  // Counts in this answer include every change up to last_change: later stream events
  // with a seq at or below it must not be applied again.
  state.countsAsOf = data.last_change || 0;
  startChanges(data.last_change || 0);
  return data;
}

const outcomes = () => state.segments.filter((s) => s.kind === 'outcome');
const plainSegments = () => state.segments.filter((s) => s.kind !== 'outcome');

// ---------------------------------------------------------------------------------------
// State, charts and routing
// ---------------------------------------------------------------------------------------

const state = {
  segments: [],
  watermark: null,
  countsAsOf: 0,
  pendingEditorText: null, // set by "Save as segment", consumed by the Segments view
};

// Charts and timers belong to the view that made them; leaving the view disposes them.
let viewCharts = [];
let viewCleanups = [];
let viewToken = 0;

function makeChart(node) {
  // Charts whose node was replaced (a report run again) are disposed here.
  viewCharts = viewCharts.filter((c) => document.contains(c.getDom()) || (c.dispose(), false));
  const chart = echarts.init(node, null, { renderer: 'canvas' });
  viewCharts.push(chart);
  return chart;
}

function onLeave(fn) { viewCleanups.push(fn); }

function leaveView() {
  for (const fn of viewCleanups) { try { fn(); } catch (e) { console.error(e); } }
  for (const c of viewCharts) c.dispose();
  viewCharts = [];
  viewCleanups = [];
  viewToken += 1;
}

// A debounced resize can land after its chart was disposed (view left, chart replaced).
window.addEventListener('resize', debounce(() => viewCharts.forEach((c) => c.isDisposed() || c.resize()), 100));

const routes = {
  segments: () => viewSegments(),
  segment: (name) => viewSegment(name),
  replay: (name) => viewReplay(name),
  discover: () => viewDiscover(),
  explain: () => viewExplain(),
  agents: () => viewAgents(),
};

function route() {
  const hash = location.hash || '';
  // #key=KEY stores the key, then opens the segment list.
  const keyMatch = hash.match(/^#key=(.*)$/);
  if (keyMatch) {
    setKey(decodeURIComponent(keyMatch[1]));
    history.replaceState(null, '', '#/segments');
  }
  leaveView();
  if (!getKey()) { showKeyForm(); return; }
  const [, view = 'segments', arg] = (location.hash.match(/^#\/([^/]*)\/?(.*)$/) || []);
  const render = routes[view] ? routes[view] : routes.segments;
  document.querySelectorAll('#nav a').forEach((a) => {
    const nav = a.dataset.nav;
    a.classList.toggle('active', nav === view || (nav === 'segments' && ['segment', 'replay'].includes(view)));
  });
  window.scrollTo(0, 0);
  render(arg ? decodeURIComponent(arg) : undefined);
}

const main = () => $('#app');
// True while the view that started an async call is still the one shown.
const stillHere = (token) => token === viewToken;

function showKeyForm(message) {
  leaveView();
  const input = el('input', { id: 'key-input', type: 'password', placeholder: 'read or admin key', autocomplete: 'off' });
  const save = () => {
    const key = input.value.trim();
    if (!key) return;
    setKey(key);
    // Changing the hash routes by itself; otherwise render the current view again.
    if (!location.hash.startsWith('#/')) location.hash = '#/segments';
    else route();
  };
  fill(main(), el('form', { class: 'card key-card', onsubmit: (e) => { e.preventDefault(); save(); } },
    el('h2', { text: 'Sign in' }),
    el('p', { class: 'muted' }, 'Enter the read key to look around, or the admin key to save definitions. ',
      'It is kept in this browser\u2019s local storage.'),
    message ? el('p', { class: 'error-text', text: message }) : null,
    el('div', { class: 'row' }, input, el('button', { id: 'key-save', class: 'primary', type: 'submit' }, 'Save key'))));
  input.focus();
}

// ---------------------------------------------------------------------------------------
// Live change stream: fetch + ReadableStream, because EventSource cannot send the key.
// ---------------------------------------------------------------------------------------

const changes = { controller: null, lastId: 0, backoff: 1000, timer: null, running: false };

function startChanges(after) {
  if (changes.running) return; // one stream at a time; it resumes by itself
  changes.running = true;
  changes.lastId = after;
  connectChanges();
}

function stopChanges() {
  changes.running = false;
  clearTimeout(changes.timer);
  if (changes.controller) changes.controller.abort();
  changes.controller = null;
  setStreamStatus('');
}

function setStreamStatus(s) {
  const node = $('#stream-status');
  node.className = `stream-status ${s}`;
  node.textContent = s === 'live' ? '● live' : s === 'retrying' ? '● reconnecting' : '';
}

async function connectChanges() {
  if (!changes.running) return;
  const controller = new AbortController();
  changes.controller = controller;
  try {
    const res = await fetch(`/api/changes?after=${changes.lastId}`, {
      headers: { Authorization: `Bearer ${getKey()}`, Accept: 'text/event-stream' },
      signal: controller.signal,
    });
    if (res.status === 401) { stopChanges(); showKeyForm('The key was refused.'); return; }
    if (!res.ok || !res.body) throw new Error(`changes: ${res.status}`);
    setStreamStatus('live');
    changes.backoff = 1000;
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    let buffer = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true }).replace(/\r\n?/g, '\n');
      let cut;
      while ((cut = buffer.indexOf('\n\n')) >= 0) {
        handleSseBlock(buffer.slice(0, cut));
        buffer = buffer.slice(cut + 2);
      }
    }
  } catch (e) {
    if (controller.signal.aborted) return;
  }
  if (!changes.running || controller.signal.aborted) return;
  // The stream ended or failed: retry with backoff, resuming after the last seen id.
  setStreamStatus('retrying');
  changes.timer = setTimeout(connectChanges, changes.backoff);
  changes.backoff = Math.min(changes.backoff * 2, 30000);
}

function handleSseBlock(block) {
  let id = null; let event = 'message'; const data = [];
  for (const line of block.split('\n')) {
    if (!line || line.startsWith(':')) continue; // keep-alive comments
    const i = line.indexOf(':');
    const field = i < 0 ? line : line.slice(0, i);
    const value = i < 0 ? '' : line.slice(i + 1).replace(/^ /, '');
    if (field === 'id') id = value;
    else if (field === 'event') event = value;
    else if (field === 'data') data.push(value);
  }
  if (id != null && /^\d+$/.test(id)) changes.lastId = Math.max(changes.lastId, Number(id));
  if (event !== 'enter' && event !== 'exit') return;
  let change;
  try { change = JSON.parse(data.join('\n')); } catch { return; }
  const seq = change.seq ?? Number(id);
  if (seq <= state.countsAsOf) return;
  queueChange(seq, change.segment, event === 'enter' ? 1 : -1);
}

// A backfill can stream a million changes: they are summed per segment and drawn once per
// animation frame, not one DOM update each. The check against the counts' own "as of" is
// made again when drawing: a list reloaded meanwhile already includes them.
let pendingChanges = [];
let flushScheduled = false;
function queueChange(seq, segment, delta) {
  pendingChanges.push([seq, segment, delta]);
  if (flushScheduled) return;
  flushScheduled = true;
  const flush = () => {
    flushScheduled = false;
    const sums = new Map();
    for (const [q, seg, d] of pendingChanges) {
      if (q > state.countsAsOf) sums.set(seg, (sums.get(seg) || 0) + d);
    }
    pendingChanges = [];
    for (const [seg, d] of sums) if (d !== 0) applyChange(seg, d);
  };
  // Hidden tabs get no animation frames: fall back to a timer there.
  if (document.hidden) setTimeout(flush, 250); else requestAnimationFrame(flush);
}

function applyChange(segment, delta) {
  const seg = state.segments.find((s) => s.name === segment);
  if (seg) seg.members = Math.max(0, (seg.members || 0) + delta);
  const targets = document.querySelectorAll(
    `tr[data-segment="${CSS.escape(segment)}"] .member-count, .live-count[data-segment="${CSS.escape(segment)}"]`);
  for (const node of targets) {
    const count = seg ? seg.members : Math.max(0, (Number(node.dataset.count) || 0) + delta);
    node.textContent = fmtInt(count);
    node.dataset.count = String(count);
    // Restart the highlight animation even if it is still running.
    node.classList.remove('flash-enter', 'flash-exit');
    void node.offsetWidth;
    node.classList.add(delta > 0 ? 'flash-enter' : 'flash-exit');
  }
}

// ---------------------------------------------------------------------------------------
// Segments view: list and editor
// ---------------------------------------------------------------------------------------

const EDITOR_PLACEHOLDER = `segment pricing_no_trial during last 30d {
    "Visited pricing three times but did not start a trial"
    count(page_view where page == "pricing") >= 3 and not did trial_start
}`;

const LANGUAGE_HELP = [
  ['segment NAME [of users|sessions|conversations] [during last 30d] { "description" CRITERION }', 'who is in a group now'],
  ['outcome NAME { did purchase within 7d }', 'what happens after an anchor time'],
  ['did P · not did P · count(P) >= 3 · count distinct(prop of P) > 2', 'counting'],
  ['sum(purchase.amount) > 100 · avg / min / max', 'aggregates'],
  ['P where page == "pricing" and os.name starts_with "iOS"', 'predicates'],
  ['sequence within 1h { page_view; add_to_cart as a; purchase within 10m of a }', 'ordered steps'],
  ['sequence { payment_step_view as v; not payment_submit; session_end after 8s of v }', 'absence, session end'],
  ['stopped purchase for 14d · first did P within 7d · regularly P in 3 of 4 weeks', 'recency, frequency'],
  ['device.type == "mobile" · in segment other · did signal.rage_click', 'attributes, segments, signals'],
];

async function viewSegments() {
  const token = viewToken;
  const listBody = el('tbody', {}, el('tr', {}, el('td', { colspan: 6, class: 'muted', text: 'Loading…' })));
  const editor = el('textarea', { id: 'editor', spellcheck: 'false', placeholder: EDITOR_PLACEHOLDER, rows: 12 });
  const diagnostics = el('div', { id: 'diagnostics' });
  const previewResult = el('div', { id: 'preview-result', class: 'result-line' });
  const saveResult = el('div', { id: 'save-result', class: 'result-line' });

  fill(main(), el('div', { class: 'grid-2' },
    el('section', { class: 'card' },
      el('div', { class: 'card-head' }, el('h2', { text: 'Segments' }),
        el('span', { class: 'muted small', id: 'watermark' })),
      el('div', { class: 'table-wrap' }, el('table', { id: 'segment-list', class: 'data' },
        el('thead', {}, el('tr', {}, ['Name', 'Kind', 'Unit', 'Description'].map((h) => el('th', { text: h })),
          el('th', { class: 'num', text: 'Members' }), el('th', {}))),
        listBody))),
    el('section', { class: 'card editor-card' },
      el('h2', { text: 'Editor' }),
      el('p', { class: 'muted small' }, 'One definition; it is checked as you type against the live ones. ',
        'See docs/language.md for the whole language.'),
      editor, diagnostics,
      el('div', { class: 'row' },
        el('button', { id: 'preview-button', type: 'button', onclick: () => preview() }, 'Preview'),
        el('button', { id: 'save-button', class: 'primary', type: 'button', onclick: () => save() }, 'Save')),
      previewResult, saveResult,
      el('details', { class: 'help' }, el('summary', { text: 'Language cheat sheet' }),
        el('table', { class: 'help-table' }, LANGUAGE_HELP.map(([code, what]) =>
          el('tr', {}, el('td', {}, el('code', { text: code })), el('td', { class: 'muted', text: what }))))))));

  // Check as you type; answers to older texts are dropped.
  let checkSeq = 0;
  let lastCheck = null;
  async function runCheck() {
    const text = editor.value;
    const seq = ++checkSeq;
    if (!text.trim()) { fill(diagnostics); lastCheck = null; return null; }
    try {
      const res = await api('/api/check', { method: 'POST', body: text });
      if (seq !== checkSeq || !stillHere(token)) return res;
      lastCheck = { text, res };
      renderDiagnostics(diagnostics, res);
      return res;
    } catch (e) {
      if (seq === checkSeq && stillHere(token)) showError(diagnostics, e);
      return null;
    }
  }
  const checkSoon = debounce(runCheck, 300);
  editor.addEventListener('input', () => { fill(previewResult); fill(saveResult); checkSoon(); });
  // Tab indents (definitions use four spaces) instead of leaving the editor.
  editor.addEventListener('keydown', (e) => {
    if (e.key !== 'Tab' || e.shiftKey) return;
    e.preventDefault();
    editor.setRangeText('    ', editor.selectionStart, editor.selectionEnd, 'end');
    checkSoon();
  });

  async function preview() {
    if (!editor.value.trim()) { previewResult.textContent = 'Write a definition first.'; return; }
    fill(previewResult, el('span', { class: 'muted', text: 'Evaluating over history…' }));
    try {
      const r = await api('/api/preview', { method: 'POST', body: editor.value });
      if (!stillHere(token)) return;
      const sample = (r.sample || []).slice(0, 8);
      fill(previewResult,
        el('div', {}, el('strong', { text: `${fmtInt(r.members)} ${r.unit || 'units'}` }),
          ` would be in ${r.name || 'this definition'}`, r.as_of ? ` as of ${fmtTime(r.as_of)}` : '', '.'),
        sample.length ? el('div', { class: 'muted small' }, 'For example: ',
          sample.map((u, i) => [i ? ', ' : '', el('code', { text: u })])) : null);
    } catch (e) { if (stillHere(token)) showError(previewResult, e); }
  }

  async function save() {
    if (!editor.value.trim()) { saveResult.textContent = 'Write a definition first.'; return; }
    // The name comes from the checker, so that it matches the parser's reading.
    const check = lastCheck && lastCheck.text === editor.value ? lastCheck.res : await runCheck();
    const name = check && check.names && check.names[0];
    if (!name) {
      fill(saveResult, errorBox('Cannot tell the definition\u2019s name: fix the errors above first.'));
      return;
    }
    // Saving under an existing name replaces that definition: say so first.
    if (state.segments.some((x) => x.name === name)
      && !window.confirm(`Replace the live definition ${name}? Its members are recomputed from history.`)) {
      fill(saveResult, el('span', { class: 'muted', text: 'Not saved.' }));
      return;
    }
    fill(saveResult, el('span', { class: 'muted', text: `Saving ${name}: backfilling from history…` }));
    try {
      const r = await api(`/api/segments/${enc(name)}`, { method: 'PUT', body: editor.value });
      if (!stillHere(token)) return;
      fill(saveResult, el('div', { class: 'ok-text' },
        `Saved ${r.name || name}: ${fmtInt(r.members)} members (backfilled, now live)`));
      await refreshList();
    } catch (e) { if (stillHere(token)) showError(saveResult, e); }
  }

  async function refreshList() {
    try {
      const data = await loadSegments();
      if (!stillHere(token)) return;
      $('#watermark').textContent = data.watermark ? `data up to ${fmtTime(data.watermark)}` : '';
      renderSegmentRows(listBody, state.segments);
    } catch (e) {
      if (stillHere(token)) fill(listBody, el('tr', {}, el('td', { colspan: 6 }, errorBox(e))));
    }
  }

  if (state.pendingEditorText) {
    editor.value = state.pendingEditorText;
    state.pendingEditorText = null;
    editor.focus();
    runCheck();
  }
  refreshList();
}

function renderSegmentRows(tbody, segments) {
  if (!segments.length) {
    fill(tbody, el('tr', {}, el('td', { colspan: 6, class: 'muted', text: 'No definitions yet: write one in the editor.' })));
    return;
  }
  fill(tbody, ...segments.map((s) => el('tr', { dataset: { segment: s.name } },
    el('td', {}, el('a', { href: `#/segment/${enc(s.name)}`, text: s.name })),
    el('td', { class: 'kind' }, el('span', { class: `tag ${s.kind === 'outcome' ? 'tag-outcome' : ''}`, text: s.kind || 'segment' }),
      s.sequence ? el('span', { class: 'tag tag-seq', title: 'has a sequence (funnel available)', text: 'sequence' }) : null),
    el('td', { text: s.unit || '' }),
    el('td', { class: 'desc', text: s.description || '' }),
    el('td', { class: 'num member-count', dataset: { count: s.members ?? 0 }, text: fmtInt(s.members) }),
    el('td', {}, s.kind === 'outcome' ? null
      : el('a', { class: 'replay-link', href: `#/replay/${enc(s.name)}`, text: 'Replay' })))));
}

function renderDiagnostics(container, res) {
  const diags = res.diagnostics || [];
  if (!diags.length) {
    fill(container, res.ok ? el('div', { id: 'diagnostics-ok', text: 'No problems' }) : null);
    return;
  }
  fill(container, ...diags.map((d) => {
    const severity = d.severity === 'warning' ? 'warning' : 'error';
    const text = d.rendered
      || `${d.line}:${d.column}: ${d.message}${d.hint ? `\n  = hint: ${d.hint}` : ''}`;
    return el('div', { class: `diagnostic ${severity}` }, el('pre', { text }));
  }));
}

// "Save as segment" from Discover/Explain: open the editor with the text filled in.
function openInEditor(text) {
  state.pendingEditorText = text;
  if (location.hash === '#/segments') route();
  else location.hash = '#/segments';
}

// ---------------------------------------------------------------------------------------
// Segment page
// ---------------------------------------------------------------------------------------

async function viewSegment(name) {
  const token = viewToken;
  const head = el('section', { class: 'card' }, el('p', { class: 'muted', text: 'Loading…' }));
  const historyChart = el('div', { id: 'history-chart', class: 'chart' });
  const reportOutcome = el('select', { id: 'report-outcome' });
  const reportValue = el('input', { id: 'report-value', type: 'text', placeholder: 'sum(purchase.amount)' });
  const reportRun = el('button', { id: 'report-run', class: 'primary', type: 'button' }, 'Run report');
  const reportResult = el('div', { id: 'report-result' });
  const funnelSection = el('section', { class: 'card', id: 'funnel-section' },
    el('h3', { text: 'Funnel' }), el('div', { id: 'funnel-chart', class: 'chart' }), el('div', { id: 'funnel-breakdown' }));
  const membersBody = el('tbody');
  const membersMore = el('button', { id: 'members-more', type: 'button', hidden: true }, 'More');
  const membersTotal = el('span', { class: 'muted small' });
  const csv = el('a', { id: 'members-csv', class: 'button', href: `/api/segments/${enc(name)}/members.csv`, download: `${name}.csv` }, 'Download CSV');

  const sections = el('div', { hidden: true },
    el('section', { class: 'card' }, el('h3', { text: 'Size over time' }), historyChart),
    el('section', { class: 'card' },
      el('h3', { text: 'Outcome report' }),
      el('div', { class: 'row form-row' },
        el('label', {}, 'Outcome ', reportOutcome),
        el('label', {}, 'Value (optional) ', reportValue), reportRun),
      reportResult),
    funnelSection,
    el('section', { class: 'card' },
      el('div', { class: 'card-head' }, el('h3', { text: 'Members' }), membersTotal, el('span', { class: 'spacer' }), csv),
      el('div', { class: 'table-wrap members-wrap' }, el('table', { id: 'members-table', class: 'data' },
        el('thead', {}, el('tr', {}, el('th', { text: 'Unit' }), el('th', { text: 'Entered at' }))), membersBody)),
      membersMore));
  fill(main(), el('div', { class: 'crumbs' }, el('a', { href: '#/segments', text: 'Segments' }), ' / ', name), head, sections);

  // The CSV needs the key header, so fetch it and hand the browser a Blob URL.
  csv.addEventListener('click', async (e) => {
    e.preventDefault();
    try {
      const blob = await api(`/api/segments/${enc(name)}/members.csv`, { as: 'blob' });
      const url = URL.createObjectURL(blob);
      const a = el('a', { href: url, download: `${name}.csv` });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10000);
    } catch (err) { if (stillHere(token)) membersTotal.textContent = `CSV failed: ${err.message}`; }
  });

  // Header: definition and source.
  Promise.all([loadSegments(), api(`/api/segments/${enc(name)}`)]).then(([, seg]) => {
    if (!stillHere(token)) return;
    const info = state.segments.find((s) => s.name === name) || {};
    const isOutcome = info.kind === 'outcome';
    fill(head,
      el('div', { class: 'card-head' },
        el('h2', { text: name }),
        el('span', { class: 'tag', text: info.kind || 'segment' }),
        info.unit ? el('span', { class: 'tag', text: `of ${info.unit}` }) : null,
        el('span', { class: 'spacer' }),
        isOutcome ? null : el('a', { class: 'button', href: `#/replay/${enc(name)}` }, 'Cohort Replay'),
        el('button', { type: 'button', onclick: () => openInEditor(seg.source || '') }, 'Edit')),
      info.description ? el('p', { class: 'lead', text: info.description }) : null,
      isOutcome ? el('p', { class: 'muted' }, 'An outcome has no members of its own: it is judged after an anchor time. ',
        'Use it in a segment\u2019s outcome report, in Discover or in Explain.')
        : el('div', { class: 'big-number' },
          el('span', { class: 'live-count', dataset: { segment: name, count: seg.members }, text: fmtInt(seg.members) }),
          el('span', { class: 'muted', text: ` ${info.unit || 'units'} now` })),
      el('pre', { class: 'source', text: seg.source || '' }));
    if (isOutcome) return;
    sections.hidden = false;
    fillOutcomes(reportOutcome, info.unit);
    loadHistory();
    loadMembers();
    // Ask for a funnel only when the list says there is a sequence (or does not say).
    if (info.sequence !== false) { funnelSection.hidden = false; loadFunnel(); }
  }).catch((e) => {
    if (!stillHere(token)) return;
    if (e.status === 404) {
      leaveView(); // the other sections' calls fail the same way: one message is enough
      fill(main(), el('div', { class: 'crumbs' }, el('a', { href: '#/segments', text: 'Segments' }), ' / ', name), errorBox(e));
    } else showError(head, e);
  });

  const loadHistory = () => api(`/api/segments/${enc(name)}/history?buckets=30`).then((h) => {
    if (stillHere(token)) drawHistory(makeChart(historyChart), h.points || []);
  }).catch((e) => { if (stillHere(token)) showError(historyChart, e); });

  // Report on demand: it evaluates the outcome over history.
  const runReport = async () => {
    const outcome = reportOutcome.value;
    if (!outcome) { fill(reportResult, errorBox('No outcome defined: add one in the editor (e.g. outcome converted { did purchase within 7d }).')); return; }
    const value = reportValue.value.trim();
    reportRun.disabled = true;
    fill(reportResult, el('p', { class: 'muted', text: 'Computing the report…' }));
    try {
      const q = `outcome=${enc(outcome)}${value ? `&value=${enc(value)}` : ''}`;
      const r = await api(`/api/segments/${enc(name)}/report?${q}`);
      if (stillHere(token)) renderReport(reportResult, r);
    } catch (e) { if (stillHere(token)) showError(reportResult, e); }
    reportRun.disabled = false;
  };
  reportRun.addEventListener('click', runReport);
  reportValue.addEventListener('keydown', (e) => { if (e.key === 'Enter') runReport(); });

  // Funnel: only sequence segments have one; a 400 hides the section quietly.
  const loadFunnel = () => api(`/api/segments/${enc(name)}/funnel`).then((f) => {
    if (!stillHere(token)) return;
    if (!f.steps || !f.steps.length) { funnelSection.hidden = true; return; }
    drawFunnel(makeChart($('#funnel-chart', funnelSection)), f.steps);
    renderBreakdown($('#funnel-breakdown', funnelSection), f);
  }).catch((e) => {
    if (!stillHere(token)) return;
    if (e.status === 400 || e.status === 404) funnelSection.hidden = true;
    else showError($('#funnel-chart', funnelSection), e);
  });
  funnelSection.hidden = true;

  // Members, paged by unit key.
  let next = null;
  const loadMembers = async () => {
    membersMore.disabled = true;
    try {
      const page = await api(`/api/segments/${enc(name)}/members?limit=100${next ? `&after=${enc(next)}` : ''}`);
      if (!stillHere(token)) return;
      membersTotal.textContent = `${fmtInt(page.total)} in total`;
      append(membersBody, (page.members || []).map((m) =>
        el('tr', {}, el('td', {}, el('code', { text: m.unit })), el('td', { text: fmtTime(m.entered_at) }))));
      next = page.next || null;
      membersMore.hidden = !next;
    } catch (e) { if (stillHere(token)) showError(membersTotal, e); }
    membersMore.disabled = false;
  };
  membersMore.addEventListener('click', loadMembers);
}

// Outcomes of the same unit kind first; all outcomes when none match.
function fillOutcomes(select, unit, keepEmpty) {
  const all = outcomes();
  const same = all.filter((o) => o.unit === unit);
  const list = unit && same.length ? same : all;
  fill(select,
    keepEmpty ? el('option', { value: '', text: keepEmpty }) : null,
    ...list.map((o) => el('option', { value: o.name, text: o.unit ? `${o.name} (${o.unit})` : o.name })));
  if (!list.length && !keepEmpty) select.append(el('option', { value: '', text: '(no outcomes defined)' }));
}

const COLORS = { accent: '#2f6fdf', accentSoft: '#9db9ee', grey: '#98a2b3', red: '#d1453b', green: '#2e8b57', orange: '#e08a1e', text: '#1f2328', muted: '#667085' };
const baseChart = { textStyle: { fontFamily: 'inherit' }, animationDuration: 400 };

function drawHistory(chart, points) {
  if (!points.length) { chart.dispose(); return; }
  const x = points.map((p) => toDate(p.time));
  // Entries and exits share an axis scaled so that their bars stay in the lower part,
  // under the size line.
  const maxChange = Math.max(1, ...points.map((p) => Math.max(p.entries || 0, p.exits || 0)));
  chart.setOption({
    ...baseChart,
    tooltip: { trigger: 'axis', valueFormatter: (v) => fmtInt(Math.abs(v)) },
    legend: { data: ['Members', 'Entries', 'Exits'], top: 0 },
    grid: { left: 56, right: 56, top: 36, bottom: 32 },
    xAxis: { type: 'time' },
    yAxis: [
      { type: 'value', name: 'members', axisLabel: { formatter: (v) => fmtInt(v) } },
      { type: 'value', name: 'changes', splitLine: { show: false }, min: -maxChange * 1.2, max: maxChange * 3,
        axisLabel: { showMinLabel: false, showMaxLabel: false, formatter: (v) => (Math.abs(v) <= maxChange * 1.2 ? fmtInt(Math.abs(v)) : '') } },
    ],
    series: [
      { name: 'Members', type: 'line', z: 3, showSymbol: false, smooth: false, lineStyle: { width: 2 }, color: COLORS.accent,
        data: points.map((p, i) => [x[i], p.size]) },
      // Exits are drawn below zero so that the two kinds of change read as a flow.
      { name: 'Entries', type: 'bar', yAxisIndex: 1, stack: 'chg', color: COLORS.green, barMaxWidth: 10, itemStyle: { opacity: 0.7 },
        data: points.map((p, i) => [x[i], p.entries]) },
      { name: 'Exits', type: 'bar', yAxisIndex: 1, stack: 'chg', color: COLORS.red, barMaxWidth: 10, itemStyle: { opacity: 0.7 },
        data: points.map((p, i) => [x[i], -p.exits]) },
    ],
  });
}

function rateText(r) {
  return `${fmtPct(r.rate)} (95% CI ${fmtPct(r.low)}–${fmtPct(r.high)}, ${fmtInt(r.hits)} of ${fmtInt(r.total)})`;
}

function reportSentence(r) {
  const c = r.comparison;
  const unit = r.unit || 'units';
  const who = `${fmtInt(r.members.units)} ${unit} (${fmtPct(r.share_of_population)} of the population)`;
  const rr = c.relative_risk;
  if (!rr) {
    return `${who} reach ${r.outcome} at ${fmtPct(c.members.rate)}, non-members at ${fmtPct(c.non_members.rate)}.`;
  }
  const sig = c.p_value < 0.05 ? '' : ' (not statistically significant)';
  const rates = `${fmtPct(c.members.rate)} against ${fmtPct(c.non_members.rate)}${sig}`;
  if (rr.value == null) {
    // JSON has no infinity: no non-member reached it.
    return `${who} reach ${r.outcome} at ${fmtPct(c.members.rate)}; no non-member did (relative risk unbounded): ${rates}.`;
  }
  if (rr.value >= 2) {
    return `${who} are ${fmtNum(rr.value, 1)} times as likely to reach ${r.outcome} as the rest ` +
      `(95% CI ${fmtNum(rr.low, 1)}–${fmtNum(rr.high, 1)}×): ${rates}.`;
  }
  const less = rr.value < 1;
  // The interval of "x% less likely" is the relative risk's interval read the same way.
  const lo = less ? 1 - rr.high : rr.low - 1;
  const hi = less ? 1 - rr.low : rr.high - 1;
  return `${who} are ${fmtPct(Math.abs(1 - rr.value))} ${less ? 'less' : 'more'} likely to reach ${r.outcome} than the rest ` +
    `(95% CI ${fmtPct(lo)}–${fmtPct(hi)}): ${rates}.`;
}

function renderReport(container, r) {
  const c = r.comparison;
  const chartNode = el('div', { id: 'report-chart', class: 'chart chart-small' });
  const rr = c.relative_risk;
  const pending = (r.members.pending || 0) + (r.non_members.pending || 0);
  const stats = el('table', { class: 'kv' },
    el('tr', {}, el('th', { text: 'Members\u2019 rate' }), el('td', { text: rateText(c.members) })),
    el('tr', {}, el('th', { text: 'Non-members\u2019 rate' }), el('td', { text: rateText(c.non_members) })),
    el('tr', {}, el('th', { text: 'Relative risk' }), el('td', {
      text: rr ? `${fmtNum(rr.value)} (95% CI ${fmtNum(rr.low)}–${fmtNum(rr.high)})${c.relative_risk_corrected ? ', 0.5 added to every cell' : ''}` : 'undefined (a group is empty or both rates are 0)',
    })),
    el('tr', {}, el('th', { text: 'Difference' }), el('td', {
      text: `${fmtNum(c.difference.value * 100, 1)} points (95% CI ${fmtNum(c.difference.low * 100, 1)} to ${fmtNum(c.difference.high * 100, 1)})`,
    })),
    el('tr', {}, el('th', { text: 'p-value' }), el('td', { text: `${fmtP(c.p_value)} (${String(c.test || '').replace(/_/g, ' ')})` })),
    el('tr', {}, el('th', { text: 'Population' }), el('td', {
      text: `${r.population}: ${fmtInt(r.population_units)} ${r.unit || 'units'}${pending ? `, ${fmtInt(pending)} still pending (left out of the rates)` : ''}`,
    })));
  const vas = r.value_at_stake;
  fill(container,
    el('p', { class: 'sentence', text: reportSentence(r) }),
    el('div', { class: 'grid-2 tight' }, chartNode, stats),
    vas ? el('div', { class: 'value-at-stake' },
      el('h4', {}, 'Value at stake: ', el('strong', { text: `${fmtNum(vas.per_quarter, 0)} per quarter` }),
        el('span', { class: 'muted', text: ` (${vas.measure})` })),
      vas.formula ? el('pre', { class: 'source', text: vas.formula }) : null) : null);
  drawRateChart(makeChart(chartNode), [
    { label: 'Members', ...c.members, color: COLORS.accent },
    { label: 'Non-members', ...c.non_members, color: COLORS.grey },
  ], r.outcome);
}

// Bars for rates, plus a custom series drawing the 95% interval whiskers.
function drawRateChart(chart, groups, outcome) {
  chart.setOption({
    ...baseChart,
    title: { text: `Rate of ${outcome}`, left: 'center', textStyle: { fontSize: 13, fontWeight: 500 } },
    tooltip: {
      trigger: 'item',
      formatter: (p) => { const g = groups[p.dataIndex]; return `${g.label}: ${fmtPct(g.rate)}<br>95% CI ${fmtPct(g.low)}–${fmtPct(g.high)}<br>${fmtInt(g.hits)} of ${fmtInt(g.total)}`; },
    },
    grid: { left: 48, right: 16, top: 40, bottom: 28 },
    xAxis: { type: 'category', data: groups.map((g) => g.label) },
    yAxis: { type: 'value', axisLabel: { formatter: (v) => `${v}%` }, max: (v) => Math.min(100, Math.ceil(v.max * 1.15)) },
    series: [
      { type: 'bar', barWidth: '45%', data: groups.map((g) => ({ value: g.rate * 100, itemStyle: { color: g.color } })),
        label: { show: true, position: 'insideBottom', distance: 8, color: '#fff', fontWeight: 600, formatter: (p) => `${p.value.toFixed(1)}%` } },
      { type: 'custom', z: 10, tooltip: { show: false },
        data: groups.map((g, i) => [i, g.low * 100, g.high * 100]),
        renderItem: (params, apiX) => {
          const lo = apiX.coord([apiX.value(0), apiX.value(1)]);
          const hi = apiX.coord([apiX.value(0), apiX.value(2)]);
          const w = apiX.size([1, 0])[0] * 0.12;
          const style = { stroke: COLORS.text, lineWidth: 1.5 };
          return { type: 'group', children: [
            { type: 'line', shape: { x1: lo[0], y1: lo[1], x2: hi[0], y2: hi[1] }, style },
            { type: 'line', shape: { x1: lo[0] - w, y1: lo[1], x2: lo[0] + w, y2: lo[1] }, style },
            { type: 'line', shape: { x1: hi[0] - w, y1: hi[1], x2: hi[0] + w, y2: hi[1] }, style },
          ] };
        } },
    ],
  });
}

function drawFunnel(chart, steps) {
  const median = (s) => (s.median_from_previous_micros == null ? '' : `median ${fmtDuration(s.median_from_previous_micros / 1e6)}`);
  chart.setOption({
    ...baseChart,
    tooltip: {
      trigger: 'item',
      formatter: (p) => { const s = steps[p.dataIndex]; return `<b>${escapeHtml(s.step)}</b><br>${fmtInt(s.units)} units<br>${fmtPct(s.conversion_from_previous)} of the previous step, ${fmtPct(s.conversion_from_start)} of the first${median(s) ? `<br>${median(s)} from the previous step` : ''}`; },
    },
    grid: { left: 56, right: 16, top: 48, bottom: 56 },
    xAxis: { type: 'category', data: steps.map((s, i) => `${i + 1}. ${s.step}`),
      axisLabel: { interval: 0, width: 150, overflow: 'truncate' } },
    yAxis: { type: 'value', axisLabel: { formatter: (v) => fmtInt(v) } },
    series: [{
      type: 'bar', barWidth: '50%', color: COLORS.accent,
      data: steps.map((s) => s.units),
      label: { show: true, position: 'top', lineHeight: 15,
        formatter: (p) => { const s = steps[p.dataIndex]; return p.dataIndex === 0 ? fmtInt(s.units) : `${fmtInt(s.units)} · ${fmtPct(s.conversion_from_previous)}\n${median(s)}`; } },
    }],
  });
}

function renderBreakdown(container, f) {
  if (!f.breakdown || !f.breakdown.length) return;
  fill(container, el('h4', { text: `By ${f.by || 'attribute'}` }),
    el('div', { class: 'table-wrap' }, el('table', { class: 'data' },
      el('thead', {}, el('tr', {}, el('th', { text: f.by || 'value' }), f.steps.map((s, i) => el('th', { class: 'num', text: `${i + 1}. ${s.step}` })))),
      el('tbody', {}, f.breakdown.map((b) => el('tr', {}, el('td', { text: b.value }),
        b.steps.map((s, i) => el('td', { class: 'num' }, fmtInt(s.units),
          i ? el('span', { class: 'muted small', text: ` ${fmtPct(s.conversion_from_start)}` }) : null))))))));
}

function escapeHtml(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]));
}

// ---------------------------------------------------------------------------------------
// Cohort Replay
// ---------------------------------------------------------------------------------------

const REPLAY_FRAMES = 240;
// Signals that mark a good turn, not friction (no ⚠ for them).
const GOOD_SIGNALS = new Set(['resolution']);
const REPLAY_FPS = 12;
const REPLAY_K = 4; // curvature of the frame → time map: early seconds get frames too

function viewReplay(name) {
  const token = viewToken;
  const startSel = el('select', { id: 'replay-start' },
    el('option', { value: 'session', text: 'session start' }), el('option', { value: 'entry', text: 'segment entry' }));
  // Steps shown before the rest folds into "(more)": long sessions need more.
  const stepsSel = el('select', { id: 'replay-steps' },
    ['6', '10', '15', '20', '30'].map((n) => el('option', { value: n, text: `${n} steps`, selected: n === '10' })));
  const body = el('div', {}, el('p', { class: 'muted', text: 'Loading journeys…' }));
  fill(main(),
    el('div', { class: 'crumbs' }, el('a', { href: '#/segments', text: 'Segments' }), ' / ',
      el('a', { href: `#/segment/${enc(name)}`, text: name }), ' / Cohort Replay'),
    el('section', { class: 'card' },
      el('div', { class: 'card-head' }, el('h2', { text: `Cohort Replay: ${name}` }), el('span', { class: 'spacer' }),
        el('label', {}, 'Journeys from ', startSel), el('label', {}, ' showing ', stepsSel)),
      body));

  let player = null;
  let loads = 0; // only the latest answer is drawn when the start is switched quickly
  onLeave(() => player && player.stop());
  const load = async () => {
    const mine = ++loads;
    if (player) player.stop();
    fill(body, el('p', { class: 'muted', text: 'Loading journeys…' }));
    try {
      const r = await api(`/api/segments/${enc(name)}/replay?start=${enc(startSel.value)}&steps=${enc(stepsSel.value)}&sample=400`);
      if (!stillHere(token) || mine !== loads) return;
      // The chart of an earlier load is replaced: dispose it.
      if (player) player.dispose();
      player = buildReplay(body, r);
    } catch (e) { if (stillHere(token)) showError(body, e); }
  };
  startSel.addEventListener('change', load);
  stepsSel.addEventListener('change', load);
  load();
}

function buildReplay(container, r) {
  const nodes = r.nodes || [];
  const links = r.links || [];
  // Each journey keeps its end (the time of its last event): it stands at its last step
  // until then, which is where a cohort that abandons stalls.
  const ends = r.journey_ends || [];
  const journeys = (r.journeys || [])
    .map((j, i) => { if (Array.isArray(j)) j.end = ends[i]; return j; })
    .filter((j) => Array.isArray(j) && j.length);
  const H = Math.max(1, r.horizon_seconds || 0);
  const F = REPLAY_FRAMES;
  const frameTime = (f) => (H * (Math.exp((REPLAY_K * f) / (F - 1)) - 1)) / (Math.exp(REPLAY_K) - 1);

  if (!nodes.length) {
    fill(container, el('p', { class: 'muted', text: 'No members to replay.' }));
    return { stop() {}, dispose() {} };
  }

  // Layout: a column per depth, biggest node on top.
  const byId = new Map(nodes.map((n) => [n.id, n]));
  const columns = new Map();
  for (const n of nodes) {
    if (!columns.has(n.depth)) columns.set(n.depth, []);
    columns.get(n.depth).push(n);
  }
  let maxRows = 1;
  for (const list of columns.values()) {
    list.sort((a, b) => b.units - a.units);
    list.forEach((n, i) => { n.rank = i; });
    maxRows = Math.max(maxRows, list.length);
  }
  const maxDepth = Math.max(...nodes.map((n) => n.depth));
  const cohort = Math.max(1, r.units || columns.get(0)?.reduce((a, n) => a + n.units, 0) || 1);
  const sample = Math.max(1, journeys.length);
  const maxLink = Math.max(1, ...links.map((l) => l.units));
  // Only the main links carry a label (all have a tooltip): the biggest few, a tenth of the cohort at least.
  const labelled = new Set([...links].sort((a, b) => b.units - a.units).slice(0, 8).filter((l) => l.units >= 0.1 * cohort));

  const chartNode = el('div', { id: 'replay-chart', class: 'chart chart-replay' });
  // Labels need about 105 px a column; narrower windows scroll the chart sideways.
  chartNode.style.minWidth = `${maxDepth * 105 + 200}px`;
  chartNode.style.height = `${Math.max(440, Math.min(760, 140 + maxRows * 100))}px`;
  const play = el('button', { id: 'replay-play', class: 'primary', type: 'button' }, '▶ Play');
  const pause = el('button', { id: 'replay-pause', type: 'button', disabled: true }, '❚❚ Pause');
  const scrub = el('input', { id: 'replay-scrub', type: 'range', min: 0, max: F - 1, step: 1, value: 0 });
  const speed = el('select', { id: 'replay-speed' },
    ['0.5', '1', '2', '4'].map((s) => el('option', { value: s, text: `${s}×`, selected: s === '1' })));
  const frameLabel = el('span', { id: 'replay-frame', dataset: { frame: 0 }, text: '0' });
  const timeLabel = el('span', { id: 'replay-time', text: fmtDuration(0) });
  const status = el('div', { id: 'replay-status' });
  const sampleNote = journeys.length < cohort
    ? `${fmtInt(cohort)} ${r.unit || 'members'} replayed; the player moves a sample of ${fmtInt(journeys.length)}.`
    : `${fmtInt(cohort)} ${r.unit || 'members'} replayed.`;

  // Stall colours: how long the members standing at a step have waited there, on
  // average. Thresholds follow the horizon, so minutes-long sessions and weeks-long user
  // journeys both use the whole scale.
  const stallLimits = [Math.max(5, H / 100), Math.max(30, H / 20), Math.max(120, H / 5)];
  const STALL_COLORS = ['#2f6fdf', '#e3b23c', '#e07b24', '#d1453b'];
  const stallColor = (wait) => STALL_COLORS[stallLimits.filter((l) => wait >= l).length];
  const stallLegend = el('span', { class: 'stall-legend' }, 'Waiting: ',
    STALL_COLORS.map((c, i) => el('span', { class: 'swatch-item' }, el('i', { class: 'swatch', style: `background:${c}` }),
      i < stallLimits.length ? `< ${fmtDuration(stallLimits[i])}` : 'longer')));

  fill(container,
    el('p', { class: 'muted small' }, `${sampleNote} Time runs from 0 to ${fmtDuration(H)} after the start, `,
      'faster as it goes so that the first seconds get frames too. ',
      'A dot is the members standing at that step now (grey ring: all who ever reached it); its colour, how long they have waited there. ',
      el('span', { class: 'legend-red', text: 'Red stubs and ✕' }), ': members whose journey ended there (drop-offs); ',
      el('span', { class: 'legend-orange', text: '⚠' }), ': friction signals at the step.'),
    el('div', { class: 'player' }, play, pause, scrub,
      el('label', {}, 'Speed ', speed),
      el('span', { class: 'player-clock' }, 'frame ', frameLabel, ` / ${F - 1} · `, timeLabel),
      status),
    el('div', { class: 'replay-scroll' }, chartNode),
    el('div', { class: 'replay-legend muted small' }, stallLegend));

  const chart = makeChart(chartNode);
  const GRID = { left: 60, right: 90, top: 48, bottom: 64 };

  // Pixel positions inside the chart's plot box. Two invisible anchors pin the box's
  // corners, so that ECharts (which fits the data's bounding box, keeping its aspect)
  // draws the layout 1:1 whatever the number of columns and rows.
  const box = () => ({
    w: Math.max(200, chart.getWidth() - GRID.left - GRID.right),
    h: Math.max(120, chart.getHeight() - GRID.top - GRID.bottom),
  });
  const STUB = { dx: 40, dy: 30 }; // room kept for the drop-off stubs
  const position = (n, b) => {
    const w = b.w - STUB.dx;
    const h = b.h - STUB.dy - 30;
    return {
      x: maxDepth ? (n.depth * w) / maxDepth : w / 2,
      // Odd columns sit a little lower, so that labels of neighbouring links do not line up.
      y: maxRows > 1 ? ((n.rank * h) / (maxRows - 1)) * 0.93 + (n.depth % 2) * h * 0.07 : h / 2,
    };
  };
  // Drop-offs worth a word in the label: a tenth of the step's members or 3% of the cohort.
  const bigDrop = (n) => n.ended > 0 && (n.ended >= 0.1 * n.units || n.ended >= 0.03 * cohort);
  const anchors = (prefix, b) => [
    { id: `${prefix}-a0`, x: 0, y: 0, symbolSize: 0, label: { show: false }, tooltip: { show: false }, silent: true },
    { id: `${prefix}-a1`, x: b.w, y: b.h, symbolSize: 0, label: { show: false }, tooltip: { show: false }, silent: true },
  ];

  // Friction only: a resolution is a good sign, not a warning.
  const signalsOf = (n) => Object.entries(n.signals || {})
    .filter(([k]) => !GOOD_SIGNALS.has(k))
    .sort((a, b) => b[1] - a[1]);
  // ECharts rich text takes {style|text}: braces and bars in a step's name would break it.
  const plainName = (n) => String(n.name).replace(/[{}|]/g, ' ');
  const ghostSize = (n) => 12 + 48 * Math.sqrt(n.units / cohort);
  const liveSize = (here) => (here ? 6 + 48 * Math.sqrt(here / sample) : 0);

  // Static label under each step: its name, drop-offs and its main friction signal.
  const staticLabel = (n) => {
    const sig = signalsOf(n);
    const lines = [`{name|${plainName(n)}}`, `{muted|${fmtInt(n.units)}}${bigDrop(n) ? ` {ended|✕ ${fmtInt(n.ended)} ended}` : ''}`];
    if (sig.length) lines.push(`{signal|⚠ ${sig[0][0]} ${fmtInt(sig[0][1])}${sig.length > 1 ? ` +${sig.length - 1}` : ''}}`);
    return lines.join('\n');
  };
  const rich = {
    name: { color: COLORS.text, fontSize: 11, fontWeight: 600, lineHeight: 15 },
    muted: { color: COLORS.muted, fontSize: 10, lineHeight: 14 },
    ended: { color: COLORS.red, fontSize: 10, fontWeight: 600, lineHeight: 14 },
    signal: { color: COLORS.orange, fontSize: 10, fontWeight: 600, lineHeight: 14 },
    occ: { color: COLORS.text, fontSize: 11, fontWeight: 700 },
  };

  // Where a journey is at time t: the node of its last step at or before t (its first node
  // before that); past its last step it has ended there.
  const locate = (j, t) => {
    let i = 0;
    while (i + 1 < j.length && j[i + 1][0] <= t) i += 1;
    const leaves = Math.max(j[i][0], j.end ?? j[i][0]);
    return { node: j[i][1], since: Math.min(t, j[i][0]), ended: i === j.length - 1 && t > leaves };
  };

  let frame = 0;
  let prevT = 0;
  let snap = null;
  const snapshot = (t) => {
    const occ = new Map(nodes.map((n) => [n.id, { here: 0, ended: 0, wait: 0 }]));
    const moved = new Map();
    let inFlow = 0;
    let ended = 0;
    for (const j of journeys) {
      const at = locate(j, t);
      const o = occ.get(at.node);
      if (!o) continue;
      if (at.ended) { o.ended += 1; ended += 1; } else { o.here += 1; o.wait += t - at.since; inFlow += 1; }
      // Links traversed since the previous frame (forward play only).
      for (let i = 1; i < j.length && t > prevT; i += 1) {
        if (j[i][0] > prevT && j[i][0] <= t) {
          const key = `${j[i - 1][1]}>${j[i][1]}`;
          moved.set(key, (moved.get(key) || 0) + 1);
        }
      }
    }
    return { t, occ, moved, inFlow, ended };
  };

  const nodeTooltip = (n) => {
    const o = snap && snap.occ.get(n.id);
    return [`<b>${escapeHtml(n.name)}</b> · step ${n.depth + 1}`,
      `${fmtInt(n.units)} reached this step`,
      n.ended ? `<span style="color:${COLORS.red}">✕ ${fmtInt(n.ended)} ended here</span>` : null,
      n.median_dwell_seconds != null ? `median dwell ${fmtDuration(n.median_dwell_seconds)}` : null,
      ...signalsOf(n).map(([k, v]) => `<span style="color:${COLORS.orange}">⚠ ${escapeHtml(k)}: ${fmtInt(v)}</span>`),
      o ? `<i>now (sample): ${fmtInt(o.here)} here${o.here ? `, waiting ${fmtDuration(o.wait / o.here)} on average` : ''}${o.ended ? `, ${fmtInt(o.ended)} ended here` : ''}</i>` : null,
    ].filter(Boolean).join('<br>');
  };
  const linkTooltip = (l) => {
    const hot = snap ? snap.moved.get(`${l.source}>${l.target}`) || 0 : 0;
    return `${escapeHtml(byId.get(l.source)?.name)} → ${escapeHtml(byId.get(l.target)?.name)}<br>` +
      `${fmtInt(l.units)} units · median ${fmtDuration(l.median_seconds)}${hot ? `<br>${fmtInt(hot)} moved just now` : ''}`;
  };

  const render = (f, duration) => {
    const t = frameTime(f);
    snap = snapshot(t);
    prevT = t;
    const b = box();
    const ghost = nodes.map((n) => ({
      id: `g${n.id}`, name: n.name, node: n.id, ...position(n, b), symbolSize: ghostSize(n),
      itemStyle: { color: '#f1f3f6', borderColor: bigDrop(n) ? '#e8a39d' : '#c3c9d2', borderWidth: 1.5 },
      label: { show: true, position: 'bottom', distance: 5, formatter: staticLabel(n), rich },
    }));
    // A drop-off is a red stub from the step to nowhere, as wide as a link of that many.
    const dropEnds = nodes.filter((n) => n.ended > 0).map((n) => {
      const p = position(n, b);
      const len = ghostSize(n) / 2 + 16;
      return { id: `d${n.id}`, x: p.x + len * 0.8, y: p.y + len * 0.6, symbolSize: 0, label: { show: false }, silent: true };
    });
    const dropLinks = nodes.filter((n) => n.ended > 0).map((n) => ({
      source: `g${n.id}`, target: `d${n.id}`, drop: n.id,
      symbol: ['none', 'none'],
      lineStyle: { width: 1 + 13 * (n.ended / maxLink), color: COLORS.red, opacity: 0.35, curveness: 0 },
      label: { show: false },
    }));
    const live = nodes.map((n) => {
      const o = snap.occ.get(n.id);
      const size = liveSize(o.here);
      return {
        id: `l${n.id}`, name: n.name, node: n.id, ...position(n, b), symbolSize: size,
        itemStyle: { color: stallColor(o.here ? o.wait / o.here : 0), opacity: 0.92 },
        // The occupancy sits above the grey ring, clear of the static label below.
        label: { show: o.here > 0 || o.ended > 0, position: 'top', distance: (ghostSize(n) - size) / 2 + 3,
          formatter: `${o.here ? `{occ|${fmtInt(o.here)}}` : ''}${o.ended ? ` {ended|✕ ${fmtInt(o.ended)}}` : ''}`, rich },
      };
    });
    const edges = links.map((l) => {
      const hot = snap.moved.get(`${l.source}>${l.target}`) || 0;
      return {
        source: `g${l.source}`, target: `g${l.target}`, link: l,
        lineStyle: { width: 1 + 13 * (l.units / maxLink), color: hot ? COLORS.accent : '#c9d0da', opacity: hot ? 0.85 : 0.5, curveness: 0 },
        label: { show: labelled.has(l), formatter: `${fmtInt(l.units)} · ${fmtDuration(l.median_seconds)}` },
      };
    });
    chart.setOption({
      animationDurationUpdate: duration,
      animationEasingUpdate: 'linear',
      series: [
        { id: 'flow', data: [...ghost, ...dropEnds, ...anchors('g', b)], links: [...dropLinks, ...edges] },
        { id: 'cohort', data: [...live, ...anchors('l', b)] },
      ],
    });
    frameLabel.textContent = String(f);
    frameLabel.dataset.frame = String(f);
    timeLabel.textContent = fmtDuration(t);
    scrub.value = String(f);
    fill(status,
      el('span', { class: 'pill' }, el('strong', { text: fmtInt(snap.inFlow) }), ' in flow'),
      el('span', { class: 'pill pill-red' }, el('strong', { text: fmtInt(snap.ended) }), ' ended'));
  };

  // Both series share the same box and positions, so the live dots sit on the rings.
  const common = { type: 'graph', layout: 'none', roam: false, ...GRID, animation: true };
  chart.setOption({
    ...baseChart,
    tooltip: {
      trigger: 'item', confine: true,
      formatter: (p) => {
        if (p.dataType === 'edge') {
          if (p.data.link) return linkTooltip(p.data.link);
          const n = byId.get(p.data.drop);
          return n ? `<span style="color:${COLORS.red}">✕ ${fmtInt(n.ended)} of ${fmtInt(n.units)} ended at ${escapeHtml(n.name)}</span>` : '';
        }
        const n = p.data && byId.get(p.data.node);
        return n ? nodeTooltip(n) : '';
      },
    },
    series: [
      { ...common, id: 'flow', z: 1, edgeSymbol: ['none', 'arrow'], edgeSymbolSize: [0, 7],
        edgeLabel: { show: false, fontSize: 10, color: COLORS.muted, backgroundColor: 'rgba(255,255,255,0.8)', padding: [1, 3] },
        emphasis: { disabled: true }, data: [], links: [] },
      { ...common, id: 'cohort', z: 2, emphasis: { disabled: true }, data: [], links: [] },
    ],
  });
  render(0, 0);

  // Player: ~12 frames/s times the speed, from the wall clock, so that a slow machine
  // skips frames instead of slowing the replay down; it stops at the last frame.
  let timer = null;
  let clock = null; // { at: ms, frame } when playing started or the speed changed
  const fps = () => REPLAY_FPS * Number(speed.value);
  const setPlaying = (on) => { play.disabled = on; pause.disabled = !on; };
  const stop = () => { clearInterval(timer); timer = null; setPlaying(false); };
  const tick = () => {
    const target = Math.min(F - 1, clock.frame + Math.floor(((performance.now() - clock.at) * fps()) / 1000));
    if (target !== frame) {
      frame = target;
      render(frame, 1000 / fps());
    }
    if (frame >= F - 1) stop();
  };
  const start = () => {
    if (frame >= F - 1) { frame = 0; prevT = 0; render(0, 0); }
    clock = { at: performance.now(), frame };
    clearInterval(timer);
    timer = setInterval(tick, 1000 / fps());
    setPlaying(true);
  };
  play.addEventListener('click', start);
  pause.addEventListener('click', stop);
  speed.addEventListener('change', () => { if (timer) start(); });
  scrub.addEventListener('input', () => {
    frame = Number(scrub.value);
    prevT = frameTime(frame); // a jump traverses nothing
    if (timer) clock = { at: performance.now(), frame };
    render(frame, 0);
  });
  // The layout is in pixels: lay it out again when the chart changes size.
  const relayout = debounce(() => {
    if (chart.isDisposed()) return;
    chart.resize(); prevT = frameTime(frame); render(frame, 0);
  }, 150);
  window.addEventListener('resize', relayout);
  const dispose = () => {
    stop();
    window.removeEventListener('resize', relayout);
    viewCharts = viewCharts.filter((c) => c !== chart);
    chart.dispose();
  };
  // Leaving the view stops the clock too: a tick must never draw on a disposed chart.
  onLeave(() => { stop(); window.removeEventListener('resize', relayout); });
  return { stop, dispose };
}

// ---------------------------------------------------------------------------------------
// Discover
// ---------------------------------------------------------------------------------------

// A "running…" note with elapsed seconds, since these calls can take a while.
function runningNote(text) {
  const started = Date.now();
  const span = el('span', { class: 'muted' });
  const note = el('p', { class: 'running' }, el('span', { class: 'spinner' }), ` ${text} `, span);
  const timer = setInterval(() => { span.textContent = `(${Math.round((Date.now() - started) / 1000)} s)`; }, 1000);
  onLeave(() => clearInterval(timer));
  return { note, done: () => clearInterval(timer) };
}

// The run button of an insight view: needs an outcome, shows a running note (they can take
// tens of seconds), then draws the answer if the view is still shown.
function onRun(run, results, outcome, token, label, render, url) {
  run.addEventListener('click', async () => {
    if (!outcome.value) { fill(results, errorBox('No outcome defined: add one in the editor first.')); return; }
    const running = runningNote(label);
    fill(results, el('section', { class: 'card' }, running.note));
    run.disabled = true;
    try {
      const answer = await api(url());
      if (stillHere(token)) render(results, answer);
    } catch (e) { if (stillHere(token)) showError(results, e); }
    running.done();
    run.disabled = false;
  });
}

async function viewDiscover() {
  const token = viewToken;
  const outcome = el('select', { id: 'discover-outcome' });
  const base = el('select', { id: 'discover-base' });
  const top = el('input', { id: 'discover-top', type: 'number', min: 1, max: 100, value: 10 });
  const exclude = el('input', { id: 'discover-exclude', type: 'text', placeholder: 'e.g. payment_submit, click',
    title: 'Event names never offered as steps, comma-separated: steps of the outcome itself (the payment_submit before every purchase) only restate it.' });
  const run = el('button', { id: 'discover-run', class: 'primary', type: 'button' }, 'Discover');
  const results = el('div', { id: 'discover-results' });
  fill(main(), el('section', { class: 'card' },
    el('h2', { text: 'Discover' }),
    el('p', { class: 'muted' }, 'Searches behaviour patterns (events, property values, signals, attributes, in order) whose members reach an outcome at a different rate, verified with the engine and controlled for false discoveries.'),
    el('div', { class: 'row form-row' },
      el('label', {}, 'Outcome ', outcome), el('label', {}, 'Population ', base),
      el('label', {}, 'Findings ', top), el('label', {}, 'Exclude events ', exclude), run)),
  results);

  // A base population is a segment of the outcome's unit kind.
  const fillBases = () => {
    const unit = (outcomes().find((o) => o.name === outcome.value) || {}).unit;
    const same = plainSegments().filter((s) => !unit || s.unit === unit);
    fill(base, el('option', { value: '', text: '(all units)' }),
      ...(same.length ? same : plainSegments()).map((s) => el('option', { value: s.name, text: `${s.name} (${s.unit})` })));
  };
  outcome.addEventListener('change', fillBases);
  onRun(run, results, outcome, token, 'Running discovery…', renderDiscovery, () =>
    `/api/discover?outcome=${enc(outcome.value)}${base.value ? `&base=${enc(base.value)}` : ''}&top=${enc(top.value || 10)}${exclude.value.trim() ? `&exclude=${enc(exclude.value)}` : ''}`);

  try {
    await loadSegments();
    if (!stillHere(token)) return;
    fillOutcomes(outcome);
    fillBases();
  } catch (e) { if (stillHere(token)) showError(results, e); }
}

function relativeRiskText(rr) {
  if (!rr) return '–';
  // JSON has no infinity: a null value with an interval is a ratio over a zero rate.
  const value = rr.value == null ? '∞' : fmtNum(rr.value);
  return `${value} (${fmtNum(rr.low)}–${rr.high == null ? '∞' : fmtNum(rr.high)})`;
}

function renderDiscovery(container, d) {
  const summary = el('section', { class: 'card' },
    el('p', { class: 'sentence' },
      `${d.population}: ${fmtInt(d.population_units)} ${d.unit}, ${fmtPct(d.population_rate)} reach ${d.outcome}. `,
      `${fmtInt((d.findings || []).length)} finding${(d.findings || []).length === 1 ? '' : 's'}`,
      d.candidates_scored != null ? ` from ${fmtInt(d.candidates_scored)} candidates scored` : '', '.'));
  if (!d.findings || !d.findings.length) {
    fill(container, summary, el('section', { class: 'card muted', text: 'No pattern passed the false-discovery control.' }));
    return;
  }
  fill(container, summary, ...d.findings.map((f) => {
    const c = f.comparison;
    const higher = c.members.rate > c.non_members.rate;
    return el('section', { class: 'card finding', dataset: { rank: f.rank } },
      el('div', { class: 'card-head' },
        el('span', { class: 'rank', text: `#${f.rank}` }), el('h3', { text: f.name }), el('span', { class: 'spacer' }),
        el('button', { class: 'save-as-segment', type: 'button', onclick: () => openInEditor(f.definition) }, 'Save as segment')),
      el('pre', { class: 'source', text: f.definition }),
      el('table', { class: 'data metrics' },
        el('thead', {}, el('tr', {}, ['Members', 'Share', 'Members\u2019 rate', 'Others\u2019 rate', 'Relative risk (95% CI)', 'q-value', 'Impact']
          .map((h) => el('th', { class: 'num', text: h })))),
        el('tbody', {}, el('tr', {},
          el('td', { class: 'num', text: fmtInt(f.members) }),
          el('td', { class: 'num', text: fmtPct(f.share) }),
          el('td', { class: `num ${higher ? 'up' : 'down'}`, text: fmtPct(c.members.rate) }),
          el('td', { class: 'num', text: fmtPct(c.non_members.rate) }),
          el('td', { class: 'num', text: relativeRiskText(c.relative_risk) }),
          el('td', { class: 'num', text: fmtP(f.q_value) }),
          el('td', { class: 'num', text: fmtNum(f.impact, 1) })))));
  }));
}

// ---------------------------------------------------------------------------------------
// Explain
// ---------------------------------------------------------------------------------------

async function viewExplain() {
  const token = viewToken;
  const outcome = el('select', { id: 'explain-outcome' });
  const baseline = el('input', { id: 'explain-baseline', type: 'text', placeholder: 'YYYY-MM-DD..YYYY-MM-DD', size: 24 });
  const current = el('input', { id: 'explain-current', type: 'text', placeholder: 'YYYY-MM-DD..YYYY-MM-DD', size: 24 });
  const run = el('button', { id: 'explain-run', class: 'primary', type: 'button' }, 'Explain');
  const results = el('div', { id: 'explain-results' });
  fill(main(), el('section', { class: 'card' },
    el('h2', { text: 'Explain' }),
    el('p', { class: 'muted' }, 'Which attributes and segments account for the change of an outcome\u2019s rate between two periods (each period is start..end, end excluded).'),
    el('div', { class: 'row form-row' },
      el('label', {}, 'Outcome ', outcome), el('label', {}, 'Baseline ', baseline),
      el('label', {}, 'Current ', current), run)),
  results);

  onRun(run, results, outcome, token, 'Explaining the change…', renderExplanation, () =>
    `/api/explain?outcome=${enc(outcome.value)}&baseline=${enc(baseline.value.trim())}&current=${enc(current.value.trim())}`);

  try {
    await loadSegments();
    if (!stillHere(token)) return;
    fillOutcomes(outcome);
    // Default periods: the seven full days before the watermark's day, against the seven
    // days before those.
    const end = toDate(state.watermark);
    if (end && !Number.isNaN(end.getTime()) && !current.value && !baseline.value) {
      const day = 86400000;
      const e = new Date(Date.UTC(end.getUTCFullYear(), end.getUTCMonth(), end.getUTCDate()));
      current.value = `${isoDay(new Date(e - 7 * day))}..${isoDay(e)}`;
      baseline.value = `${isoDay(new Date(e - 14 * day))}..${isoDay(new Date(e - 7 * day))}`;
    }
  } catch (e) { if (stillHere(token)) showError(results, e); }
}

function renderExplanation(container, x) {
  const change = x.change ?? (x.current.rate - x.baseline.rate);
  const elements = x.elements || [];
  const chartNode = el('div', { id: 'explain-chart', class: 'chart chart-small' });
  const countsText = (c) => `${fmtPct(c.rate)} (${fmtInt(c.reached)} of ${fmtInt(c.decided)})`;
  fill(container,
    el('section', { class: 'card' },
      el('p', { class: 'headline' },
        `${x.outcome}: `, el('strong', { text: fmtPct(x.baseline.rate) }), ' → ', el('strong', { text: fmtPct(x.current.rate) }), ' ',
        el('span', { class: change < 0 ? 'down' : 'up', text: `(${change >= 0 ? '+' : '−'}${fmtNum(Math.abs(change) * 100, 1)} points)` })),
      el('p', { class: 'muted small', text: `Baseline ${countsText(x.baseline)}; current ${countsText(x.current)} ${x.unit || ''}. Dimensions looked at: ${(x.dimensions || []).length}.` }),
      elements.length ? chartNode : el('p', { class: 'muted', text: 'No element carries a large enough share of the change.' })),
    elements.length ? el('section', { class: 'card' }, el('div', { class: 'table-wrap' }, el('table', { class: 'data' },
      el('thead', {}, el('tr', {}, ['Dimension', 'Value'].map((h) => el('th', { text: h })),
        ['Baseline', 'Current', 'Contribution', 'Share of change', 'Surprise'].map((h) => el('th', { class: 'num', text: h })), el('th', {}))),
      el('tbody', {}, elements.map((e) => el('tr', {},
        el('td', { text: e.dimension }), el('td', {}, el('code', { text: e.value })),
        el('td', { class: 'num', text: countsText(e.baseline) }),
        el('td', { class: 'num', text: countsText(e.current) }),
        el('td', { class: `num ${e.contribution < 0 ? 'down' : 'up'}`, text: `${e.contribution >= 0 ? '+' : '−'}${fmtNum(Math.abs(e.contribution) * 100, 2)} pts` }),
        el('td', { class: 'num', text: fmtPct(e.share) }),
        el('td', { class: 'num', text: fmtNum(e.surprise, 3) }),
        el('td', {}, e.definition ? el('button', { class: 'save-as-segment', type: 'button', onclick: () => openInEditor(e.definition) }, 'Save as segment') : null))))))) : null);
  if (elements.length) {
    const labels = elements.map((e) => `${e.dimension} = ${e.value}`);
    chartNode.style.height = `${Math.max(180, 60 + elements.length * 30)}px`;
    makeChart(chartNode).setOption({
      ...baseChart,
      title: { text: 'Share of the change', textStyle: { fontSize: 13, fontWeight: 500 } },
      tooltip: { trigger: 'item', formatter: (p) => `${escapeHtml(labels[p.dataIndex])}<br>${fmtPct(elements[p.dataIndex].share)} of the change` },
      grid: { left: 16, right: 48, top: 36, bottom: 24, containLabel: true },
      xAxis: { type: 'value', axisLabel: { formatter: (v) => `${Math.round(v)}%` } },
      yAxis: { type: 'category', inverse: true, data: labels, axisLabel: { width: 260, overflow: 'truncate' } },
      series: [{ type: 'bar', barMaxWidth: 18, data: elements.map((e) => ({ value: e.share * 100, itemStyle: { color: e.contribution < 0 ? COLORS.red : COLORS.green } })),
        label: { show: true, position: 'right', formatter: (p) => `${p.value.toFixed(1)}%` } }],
    });
  }
}

// ---------------------------------------------------------------------------------------
// Agents
// ---------------------------------------------------------------------------------------

async function viewAgents() {
  const token = viewToken;
  const view = el('div', { id: 'agents-view' }, el('p', { class: 'muted', text: 'Loading…' }));
  fill(main(), view);
  try {
    const a = await api('/api/agents');
    if (!stillHere(token)) return;
    const chartNode = el('div', { id: 'agent-signal-chart', class: 'chart chart-small' });
    const signals = a.signals || [];
    chartNode.style.height = `${Math.max(200, 60 + signals.length * 28)}px`;
    fill(view,
      el('section', { class: 'card' }, el('h2', { text: 'Agents' }),
        el('div', { class: 'big-number' }, el('span', { id: 'agents-conversations', text: fmtInt(a.conversations) }),
          el('span', { class: 'muted', text: ' conversations' }))),
      el('div', { class: 'grid-2' },
        el('section', { class: 'card' }, el('h3', { text: 'Conversation segments' }),
          (a.segments || []).length ? el('table', { class: 'data', id: 'agent-segments' },
            el('thead', {}, el('tr', {}, el('th', { text: 'Segment' }), el('th', { class: 'num', text: 'Members' }), el('th', { class: 'num', text: 'Share' }))),
            el('tbody', {}, a.segments.map((s) => el('tr', { dataset: { segment: s.name } },
              el('td', {}, el('a', { href: `#/segment/${enc(s.name)}`, text: s.name })),
              el('td', { class: 'num member-count', text: fmtInt(s.members) }),
              el('td', { class: 'num muted', text: a.conversations ? fmtPct(s.members / a.conversations) : '–' })))))
            : el('p', { class: 'muted', text: 'No segment of conversations is defined.' })),
        el('section', { class: 'card' }, el('h3', { text: 'Signals over conversations' }),
          signals.length ? chartNode : el('p', { class: 'muted', text: 'No agent signals detected.' }))),
      el('section', { class: 'card' }, el('h3', { text: 'Example conversations' }),
        (a.examples || []).length ? el('div', { class: 'transcripts' }, a.examples.map(renderTranscript))
          : el('p', { class: 'muted', text: 'No conversations yet.' })));
    if (signals.length) {
      makeChart(chartNode).setOption({
        ...baseChart,
        tooltip: { trigger: 'item', formatter: (p) => { const s = signals[p.dataIndex]; return `${escapeHtml(s.signal)}<br>${fmtInt(s.conversations)} conversations (${fmtPct(s.rate)})`; } },
        grid: { left: 16, right: 56, top: 8, bottom: 24, containLabel: true },
        xAxis: { type: 'value', axisLabel: { formatter: (v) => `${v}%` } },
        yAxis: { type: 'category', inverse: true, data: signals.map((s) => s.signal) },
        series: [{ type: 'bar', barMaxWidth: 18, color: COLORS.orange, data: signals.map((s) => s.rate * 100),
          label: { show: true, position: 'right', formatter: (p) => `${p.value.toFixed(1)}%` } }],
      });
    }
  } catch (e) { if (stillHere(token)) showError(view, e); }
}

function renderTranscript(x) {
  const events = [...(x.events || [])].sort((a, b) => String(a.time).localeCompare(String(b.time)));
  const t0 = toDate(events[0]?.time);
  const offset = (t) => { const d = toDate(t); return d && t0 ? `+${fmtDuration((d - t0) / 1000)}` : ''; };
  return el('article', { class: 'transcript' },
    el('header', {}, el('strong', {}, el('code', { text: x.conversation })),
      x.user ? el('span', { class: 'muted small', text: ` · ${x.user}` }) : null,
      el('div', { class: 'tags' }, (x.signals || []).map((s) => el('span', { class: 'tag tag-signal', text: s })))),
    el('div', { class: 'messages' }, events.map((e) => {
      const when = el('span', { class: 'when', text: offset(e.time), title: fmtTime(e.time) });
      if (e.name === 'user_message' || e.name === 'agent_message') {
        const who = e.name === 'user_message' ? 'user' : 'agent';
        return el('div', { class: `bubble-row ${who}` },
          el('div', { class: `bubble ${who}` }, el('div', { class: 'who', text: who === 'user' ? 'User' : 'Agent' }), e.text || '', when));
      }
      const status = e.status ? el('span', { class: `status status-${String(e.status).replace(/\W/g, '')}`, text: e.status }) : null;
      return el('div', { class: `system-line ${e.name === 'escalation' ? 'escalation' : ''}` },
        el('code', { text: e.name }), e.text ? ` ${e.text} ` : ' ', status, ' ', when);
    })));
}

// ---------------------------------------------------------------------------------------
// Start
// ---------------------------------------------------------------------------------------

function boot() {
  if (typeof echarts === 'undefined') {
    fill(main(), errorBox('The chart library did not load (/assets/vendor/echarts.min.js).'));
    return;
  }
  $('#key-change').hidden = !getKey();
  $('#key-change').addEventListener('click', () => { stopChanges(); setKey(''); showKeyForm(); });
  window.addEventListener('hashchange', route);
  route();
}

boot();
