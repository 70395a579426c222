// The admin page, served at `/` by the admin extension: the instance inventory, live, with one-click
// keep/drop of an instance or a whole service through the same admin API that scripts use.
//
// Self-contained (inline CSS and vanilla JS, no external assets, no build step). The page is one
// template literal, so its text must not contain a backtick, a dollar sign followed by an opening
// brace, or a backslash (the literal would interpret it): the script below builds strings with
// '+' and single quotes and uses no escape sequences. test/e2e/admin-page.test.ts compiles the
// script and runs the page in headless Chromium.
export const ADMIN_PAGE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>spansieve: instances and filters</title>
<link rel="icon" href="data:,">
<style>
  :root {
    --fg: #1f2328; --muted: #59636e; --bg: #ffffff; --panel: #f6f8fa; --line: #d1d9e0;
    --kept: #116329; --kept-bg: #dafbe1; --dropped: #a40e26; --dropped-bg: #ffebe9;
    --unknown-bg: #eaeef2; --accent: #0550ae; --focus: #0969da;
  }
  * { box-sizing: border-box; }
  body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; color: var(--fg); background: var(--bg); }
  header { display: flex; flex-wrap: wrap; gap: 12px 24px; align-items: center; padding: 10px 20px; background: var(--panel); border-bottom: 1px solid var(--line); }
  header h1 { font-size: 18px; margin: 0; }
  header h1 span { font-weight: normal; color: var(--muted); }
  main { padding: 12px 20px 40px; }
  h2 { font-size: 16px; margin: 20px 0 8px; }
  label { font-weight: 600; margin-right: 6px; }
  input, select, button, textarea { font: inherit; }
  input[type=text], input[type=password], input[type=search], select { padding: 3px 6px; border: 1px solid var(--line); border-radius: 4px; background: #fff; color: var(--fg); }
  input[aria-invalid=true] { border-color: var(--dropped); outline: 2px solid var(--dropped); }
  button { padding: 2px 10px; border: 1px solid var(--line); border-radius: 4px; background: #fff; color: var(--fg); cursor: pointer; }
  button:hover:not(:disabled) { background: var(--panel); border-color: var(--muted); }
  button:disabled { color: #8c959f; cursor: default; }
  button.keep:not(:disabled) { color: var(--kept); border-color: #4ac26b; }
  button.drop:not(:disabled) { color: var(--dropped); border-color: #ff8182; }
  button.primary { background: var(--accent); border-color: var(--accent); color: #fff; }
  button.primary:hover:not(:disabled) { background: #0a3069; }
  button.link { border: none; background: none; padding: 0; font-weight: 600; color: inherit; }
  :focus-visible { outline: 2px solid var(--focus); outline-offset: 1px; }
  .toolbar { display: flex; flex-wrap: wrap; gap: 8px 20px; align-items: center; margin: 8px 0; }
  #status { min-height: 1.45em; margin: 8px 0; color: var(--muted); }
  #status.error { color: var(--dropped); font-weight: 600; }
  #errors { border: 1px solid #ff8182; background: var(--dropped-bg); color: #82071e; border-radius: 6px; padding: 8px 12px; margin: 8px 0; }
  #errors ul { margin: 4px 0 0 18px; padding: 0; }
  #errors li { white-space: pre-wrap; font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 13px; }
  #summary { color: var(--muted); }
  table { border-collapse: collapse; width: 100%; }
  th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
  thead th { position: sticky; top: 0; background: var(--panel); z-index: 1; white-space: nowrap; }
  thead th[aria-sort=ascending] button::after { content: " ▲"; }
  thead th[aria-sort=descending] button::after { content: " ▼"; }
  td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
  .id, td.sel, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 13px; }
  td.actions, td.host, td.pid, td.first, td.last, td.kept .badge { white-space: nowrap; }
  td.actions button + button { margin-left: 4px; }
  tr.group-row th, tr.group-row td { background: #eef1f4; border-top: 2px solid var(--line); }
  tr.group-row th { font-weight: 600; }
  tr.group-row .counts { font-weight: normal; color: var(--muted); margin-left: 8px; }
  tr.instance.dropped td, tr.instance.dropped th { color: var(--muted); }
  tr.instance.dropped .id { text-decoration: line-through; text-decoration-color: #ff8182; }
  .badge { display: inline-block; min-width: 5.5em; padding: 0 8px; border-radius: 10px; font-weight: 600; font-size: 12px; text-align: center; }
  .badge.yes { color: var(--kept); background: var(--kept-bg); border: 1px solid #4ac26b; }
  .badge.no { color: var(--dropped); background: var(--dropped-bg); border: 1px solid #ff8182; }
  .badge.unknown { color: var(--muted); background: var(--unknown-bg); border: 1px solid var(--line); }
  .note { display: block; font-size: 12px; color: var(--muted); }
  .empty { color: var(--muted); padding: 12px 8px; }
  .lists { display: grid; grid-template-columns: repeat(auto-fit, minmax(320px, 1fr)); gap: 12px 24px; }
  .lists section { background: var(--panel); border: 1px solid var(--line); border-radius: 6px; padding: 8px 12px; }
  .lists h3 { font-size: 14px; margin: 0 0 6px; }
  .lists ol { margin: 0; padding-left: 22px; }
  .lists li { margin: 2px 0; }
  .lists li code { margin-right: 8px; }
  .lists p { margin: 4px 0; color: var(--muted); }
  details { margin-top: 12px; }
  textarea { width: 100%; min-height: 10em; font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 13px; border: 1px solid var(--line); border-radius: 4px; padding: 6px; }
  .hint { color: var(--muted); font-size: 12px; }
</style>
</head>
<body>
<header>
  <h1>spansieve <span>instances and filters</span></h1>
  <div>
    <label for="filter">Filter processor</label>
    <select id="filter" aria-describedby="filter-hint"></select>
    <span id="filter-hint" class="hint">the lists that Keep/Drop change</span>
  </div>
  <form id="token-form" autocomplete="off">
    <label for="token">Admin token</label>
    <input id="token" type="password" size="24" placeholder="only when required">
    <button type="submit">Use token</button>
  </form>
</header>
<main>
  <p id="status" role="status" aria-live="polite">Loading the inventory…</p>
  <div id="errors" role="alert" hidden></div>

  <h2 id="instances-heading">Instances</h2>
  <div class="toolbar">
    <div><label for="search">Show only</label><input id="search" type="search" placeholder="instance, service or host" size="28"></div>
    <div><input id="group" type="checkbox" checked> <label for="group">Group by service</label></div>
    <span id="summary" aria-live="off"></span>
  </div>
  <table id="instances" aria-labelledby="instances-heading">
    <thead>
      <tr>
        <th scope="col" data-sort="id"><button type="button" class="link">Instance</button></th>
        <th scope="col" data-sort="service"><button type="button" class="link">Service</button></th>
        <th scope="col" data-sort="host"><button type="button" class="link">Host</button></th>
        <th scope="col" data-sort="pid" class="num"><button type="button" class="link">PID</button></th>
        <th scope="col" data-sort="kept"><button type="button" class="link">Kept</button></th>
        <th scope="col" data-sort="selector"><button type="button" class="link">Selector</button></th>
        <th scope="col" data-sort="spans" class="num"><button type="button" class="link">Spans/s</button></th>
        <th scope="col" data-sort="points" class="num"><button type="button" class="link">Points/s</button></th>
        <th scope="col" data-sort="firstSeen"><button type="button" class="link">First seen</button></th>
        <th scope="col" data-sort="lastSeen"><button type="button" class="link">Last seen</button></th>
        <th scope="col">Actions</th>
      </tr>
    </thead>
  </table>
  <p id="no-instances" class="empty">Waiting for data: no instance has sent anything yet.</p>

  <h2 id="lists-heading">Filter lists <span id="lists-filter" class="mono"></span></h2>
  <div class="lists">
    <section aria-labelledby="keep-heading"><h3 id="keep-heading">keep</h3><div id="keep-list"></div></section>
    <section aria-labelledby="drop-heading"><h3 id="drop-heading">drop</h3><div id="drop-list"></div></section>
  </div>
  <p class="hint">A resource is kept when a keep selector matches it (or there is no keep list), then dropped when a
    drop selector matches it. Changes apply from the next request; receivers and queues are untouched.</p>
  <div class="toolbar">
    <button id="save" type="button" class="primary">Save to config file</button>
    <span class="hint">writes the running lists of this filter processor into spansieve's config file</span>
  </div>
  <details id="editor">
    <summary>Edit the lists as JSON</summary>
    <p class="hint">Replaces both lists (PUT). Leave out "keep" to keep everything (an empty keep list is refused).</p>
    <label for="lists-json" class="hint">Lists of the selected filter processor</label>
    <textarea id="lists-json" spellcheck="false"></textarea>
    <div class="toolbar"><button id="apply-json" type="button">Apply</button><button id="reset-json" type="button">Reset to the running lists</button></div>
  </details>
</main>
<script>
'use strict';
(function () {
  var POLL_MS = 2000;
  var TOKEN_KEY = 'spansieve.adminToken';
  var ID = 'service.instance.id';
  var SERVICE = 'service.name';
  var COLUMNS = 11;

  var state = {
    instances: [],
    filters: {},
    filterId: null,
    sortKey: 'id',
    sortDir: 1,
    needsToken: false,
    lastUpdate: null,
    busy: false,
  };
  var rows = new Map();
  var groups = new Map();

  function el(id) { return document.getElementById(id); }
  function make(tag, attrs, text) {
    var node = document.createElement(tag);
    if (attrs) Object.keys(attrs).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }
  function clone(value) { return value === undefined ? undefined : JSON.parse(JSON.stringify(value)); }

  // ---- the server's selector semantics (src/processors/filter/selectors.ts), for predictions ----

  function canonical(value) {
    if (Array.isArray(value)) return '[' + value.map(canonical).join(',') + ']';
    if (value && typeof value === 'object') {
      return '{' + Object.keys(value).sort().map(function (k) { return JSON.stringify(k) + ':' + canonical(value[k]); }).join(',') + '}';
    }
    return JSON.stringify(value);
  }
  function same(a, b) { return canonical(a) === canonical(b); }
  function selectorText(selector) {
    return Object.keys(selector).map(function (k) { return k + '=' + JSON.stringify(selector[k]); }).join(', ');
  }
  function pidOf(instanceId) {
    var colon = instanceId.lastIndexOf(':');
    if (colon < 0) return undefined;
    var pid = instanceId.slice(colon + 1);
    return /^[0-9]+$/.test(pid) ? pid : undefined;
  }
  function attrString(value) {
    if (value === null) return '';
    if (typeof value === 'string') return value;
    if (typeof value === 'number' || typeof value === 'boolean') return String(value);
    return JSON.stringify(value);
  }
  function globMatch(pattern, text) {
    var p = Array.from(pattern), t = Array.from(text);
    var pi = 0, ti = 0, star = -1, mark = 0;
    while (ti < t.length) {
      if (pi < p.length && (p[pi] === '?' || (p[pi] !== '*' && p[pi] === t[ti]))) { pi++; ti++; }
      else if (pi < p.length && p[pi] === '*') { star = pi++; mark = ti; }
      else if (star >= 0) { pi = star + 1; ti = ++mark; }
      else return false;
    }
    while (pi < p.length && p[pi] === '*') pi++;
    return pi === p.length;
  }
  // The server matches regexes with RE2 (linear time, docs/filter-processor.md); the browser's
  // engine backtracks, and a sender's value must not hang this tab. So the page predicts a regex
  // only when both engines agree and the browser's cost is bounded: with the u flag (RE2 is always
  // Unicode), no quantified group holding a quantifier or '|', at most two unbounded quantifiers,
  // no backreference, lookaround or named group, values up to 256 characters. Else: null.
  var BACKSLASH = String.fromCharCode(92);
  function regexIsTame(source) {
    var groups = [], last = null, unbounded = 0;
    for (var i = 0; i < source.length; i++) {
      var c = source.charAt(i);
      if (c === BACKSLASH) {
        if (/[1-9k]/.test(source.charAt(i + 1))) return false;
        i++; last = 'atom';
      } else if (c === '[') {
        for (i++; i < source.length && source.charAt(i) !== ']'; i++) if (source.charAt(i) === BACKSLASH) i++;
        last = 'atom';
      } else if (c === '(') {
        if (source.charAt(i + 1) === '?') {
          if (source.charAt(i + 2) !== ':') return false;
          i += 2;
        }
        groups.push(false); last = null;
      } else if (c === ')') {
        if (!groups.length) return false;
        var risky = groups.pop();
        if (risky && groups.length) groups[groups.length - 1] = true;
        last = risky ? 'risky' : 'atom';
      } else if (c === '|') {
        if (groups.length) groups[groups.length - 1] = true;
        last = null;
      } else if (c === '*' || c === '+' || c === '?' || c === '{') {
        if (last === 'quantifier' && c === '?') continue;
        if (last === 'risky') return false;
        if (groups.length) groups[groups.length - 1] = true;
        var close = c === '{' ? source.indexOf('}', i) : -1;
        var range = close > 0 ? source.slice(i + 1, close) : '';
        if (c === '*' || c === '+' || /,$/.test(range)) unbounded++;
        if (close > 0) i = close;
        last = 'quantifier';
      } else {
        last = 'atom';
      }
    }
    return unbounded <= 2;
  }
  function regexPrediction(source, flags, value) {
    if (value.length > 256 || !/^[imsgyud]*$/.test(flags) || !regexIsTame(source)) return null;
    try { return new RegExp(source, flags.replace(/[gyud]/g, '') + 'u').test(value); } catch (e) { return null; }
  }
  // true, false, or null when the page cannot tell (process selectors need the host's /proc).
  function conditionMatches(key, want, instance) {
    if (key === 'process') return null;
    if (key === 'pid') {
      var pid = pidOf(instance.id);
      var wanted = typeof want === 'number' ? String(want) : /^[0-9]+$/.test(String(want)) ? String(Number(want)) : null;
      return pid !== undefined && wanted !== null && pid === wanted;
    }
    var attributes = instance.attributes || {};
    if (!Object.prototype.hasOwnProperty.call(attributes, key)) return false;
    var value = attrString(attributes[key]);
    if (typeof want === 'number' || typeof want === 'boolean') return value === String(want);
    if (typeof want !== 'string') return null;
    var slash = want.lastIndexOf('/');
    if (want.charAt(0) === '/' && slash > 0 && /^[a-z]*$/.test(want.slice(slash + 1))) {
      return regexPrediction(want.slice(1, slash), want.slice(slash + 1), value);
    }
    if (want.indexOf('*') >= 0 || want.indexOf('?') >= 0) return globMatch(want, value);
    return value === want;
  }
  function selectorMatches(selector, instance) {
    var unknown = false;
    var keys = Object.keys(selector);
    for (var i = 0; i < keys.length; i++) {
      var r = conditionMatches(keys[i], selector[keys[i]], instance);
      if (r === false) return false;
      if (r === null) unknown = true;
    }
    return unknown ? null : true;
  }
  // { matched: true|false|null, selector }: the first matching selector in written order.
  function firstMatch(list, instance) {
    var unknown = false;
    for (var i = 0; i < list.length; i++) {
      var r = selectorMatches(list[i], instance);
      if (r === true) return { matched: true, selector: unknown ? null : list[i] };
      if (r === null) unknown = true;
    }
    return { matched: unknown ? null : false, selector: null };
  }
  // What the lists decide for an instance, or null when the page cannot tell.
  function predict(instance, lists) {
    if (!lists) return null;
    var keptBy = null;
    if (lists.keep) {
      var k = firstMatch(lists.keep, instance);
      if (k.matched === null) return null;
      if (!k.matched) return { kept: false, selector: null, why: 'matches no keep selector' };
      keptBy = k.selector;
    }
    var d = firstMatch(lists.drop || [], instance);
    if (d.matched === null) return null;
    if (d.matched) return { kept: false, selector: d.selector, why: 'dropped by' };
    return { kept: true, selector: keptBy, why: lists.keep ? 'kept by' : 'no keep list: kept' };
  }

  // ---- one-click actions: the new lists for the selected filter processor ----

  function droppedByServer(instance, selector) {
    return instance.kept === false && instance.selector !== null && instance.selector === selectorText(selector);
  }
  function keepInstance(instance, lists) {
    var exact = {}; exact[ID] = instance.id;
    var removed = [];
    var drop = (lists.drop || []).filter(function (s) {
      var hit = selectorMatches(s, instance) === true || droppedByServer(instance, s);
      if (hit) removed.push(s);
      return !hit;
    });
    var keep = clone(lists.keep);
    var added = null;
    if (keep && firstMatch(keep, instance).matched !== true) { keep.push(exact); added = exact; }
    return { keep: keep, drop: drop, added: added, list: 'keep', removed: removed, from: 'drop' };
  }
  // Removes the keep selectors equal to 'exact', unless that would leave the keep list empty: the
  // server refuses an empty keep list (it would drop everything), and the drop entry suffices.
  function withoutKeep(lists, exact, removed) {
    if (!lists.keep) return undefined;
    var rest = lists.keep.filter(function (s) { return !same(s, exact); });
    if (!rest.length) return clone(lists.keep);
    lists.keep.forEach(function (s) { if (same(s, exact)) removed.push(s); });
    return rest;
  }
  function dropInstance(instance, lists) {
    var exact = {}; exact[ID] = instance.id;
    var removed = [];
    var keep = withoutKeep(lists, exact, removed);
    var drop = clone(lists.drop || []);
    var added = null;
    if (!drop.some(function (s) { return same(s, exact); })) { drop.push(exact); added = exact; }
    return { keep: keep, drop: drop, added: added, list: 'drop', removed: removed, from: 'keep' };
  }
  function keepService(name, members, lists) {
    var exact = {}; exact[SERVICE] = name;
    var removed = [];
    var drop = (lists.drop || []).filter(function (s) {
      var hit = same(s, exact) || members.some(function (m) { return selectorMatches(s, m) === true || droppedByServer(m, s); });
      if (hit) removed.push(s);
      return !hit;
    });
    var keep = clone(lists.keep);
    var added = null;
    if (keep && !keep.some(function (s) { return same(s, exact); })) { keep.push(exact); added = exact; }
    return { keep: keep, drop: drop, added: added, list: 'keep', removed: removed, from: 'drop' };
  }
  function dropService(name, lists) {
    var exact = {}; exact[SERVICE] = name;
    var removed = [];
    var keep = withoutKeep(lists, exact, removed);
    var drop = clone(lists.drop || []);
    var added = null;
    if (!drop.some(function (s) { return same(s, exact); })) { drop.push(exact); added = exact; }
    return { keep: keep, drop: drop, added: added, list: 'drop', removed: removed, from: 'keep' };
  }
  function unchanged(change, lists) {
    return same(change.keep === undefined ? null : change.keep, lists.keep === undefined ? null : lists.keep) && same(change.drop, lists.drop || []);
  }
  function body(lists) {
    var out = {};
    if (lists.keep !== undefined) out.keep = lists.keep;
    out.drop = lists.drop || [];
    return out;
  }

  // ---- the admin API ----

  function token() { try { return sessionStorage.getItem(TOKEN_KEY) || ''; } catch (e) { return ''; } }
  function filterPath(id, suffix) { return '/api/v1/filters/' + encodeURIComponent(id) + (suffix || ''); }

  async function api(method, path, payload) {
    var headers = {};
    var t = token();
    if (t) headers.authorization = 'Bearer ' + t;
    if (payload !== undefined) headers['content-type'] = 'application/json';
    var res = await fetch(path, { method: method, headers: headers, body: payload === undefined ? undefined : JSON.stringify(payload), cache: 'no-store' });
    var text = await res.text();
    var data = null;
    try { data = text ? JSON.parse(text) : null; } catch (e) { data = { error: text }; }
    if (res.status === 401) askForToken(data && data.error);
    else if (res.ok && state.needsToken) tokenAccepted();
    return { ok: res.ok, status: res.status, data: data };
  }

  function askForToken(message) {
    var input = el('token');
    input.setAttribute('aria-invalid', 'true');
    if (!state.needsToken) {
      state.needsToken = true;
      setStatus((hasToken() ? 'The token was refused: ' : 'The admin API needs a token: ') + (message || 'HTTP 401') + '. Enter it in "Admin token".', true);
      input.focus();
    }
  }
  function hasToken() { return token() !== ''; }
  function tokenAccepted() {
    state.needsToken = false;
    el('token').removeAttribute('aria-invalid');
    setStatus('Token accepted.');
  }

  function setStatus(message, isError) {
    var s = el('status');
    s.textContent = message;
    s.className = isError ? 'error' : '';
  }
  function showErrors(title, errors) {
    var box = el('errors');
    box.textContent = '';
    if (!title) { box.hidden = true; return; }
    box.appendChild(make('strong', null, title));
    if (errors && errors.length) {
      var ul = make('ul');
      errors.forEach(function (e) { ul.appendChild(make('li', null, String(e))); });
      box.appendChild(ul);
    }
    box.hidden = false;
  }
  function failure(result) {
    var data = result.data || {};
    return { title: 'HTTP ' + result.status + ': ' + (data.error || 'request failed'), errors: Array.isArray(data.errors) ? data.errors : [] };
  }

  // ---- polling ----

  async function refresh() {
    try {
      var results = await Promise.all([api('GET', '/api/v1/instances'), api('GET', '/api/v1/filters')]);
      var inst = results[0], filt = results[1];
      if (inst.ok && Array.isArray(inst.data)) state.instances = inst.data;
      if (filt.ok && filt.data && typeof filt.data === 'object') state.filters = filt.data;
      if (inst.ok && filt.ok) {
        if (!state.lastUpdate) setStatus('Live: refreshed every ' + POLL_MS / 1000 + ' s.');
        state.lastUpdate = new Date();
        if (el('status').dataset.offline) { delete el('status').dataset.offline; setStatus('Connected again.'); }
      } else if (!state.needsToken) {
        var f = failure(inst.ok ? filt : inst);
        setStatus('The admin API answered ' + f.title, true);
      }
    } catch (err) {
      el('status').dataset.offline = '1';
      setStatus('Cannot reach spansieve (' + (err && err.message ? err.message : err) + '); retrying every ' + POLL_MS / 1000 + ' s.', true);
    }
    render();
  }
  async function loop() {
    try { await refresh(); } finally { setTimeout(loop, POLL_MS); }
  }

  // ---- rendering ----

  function currentLists() { return state.filterId ? state.filters[state.filterId] : undefined; }

  function renderFilterSelect() {
    var select = el('filter');
    var ids = Object.keys(state.filters);
    if (!state.filterId || ids.indexOf(state.filterId) < 0) state.filterId = ids.length ? ids[0] : null;
    var existing = Array.from(select.options).map(function (o) { return o.value; });
    if (existing.join('|') !== ids.join('|')) {
      select.textContent = '';
      ids.forEach(function (id) { select.appendChild(make('option', { value: id }, id)); });
    }
    if (!ids.length && select.options.length === 0) select.appendChild(make('option', { value: '' }, '(no filter processor runs)'));
    select.disabled = ids.length < 2;
    if (state.filterId) select.value = state.filterId;
  }

  function effective(instance) {
    var prediction = predict(instance, currentLists());
    if (instance.kept === null || instance.kept === undefined) {
      return { kept: null, selectorText: null, note: 'no filter decision yet', how: '' };
    }
    if (!prediction) {
      return { kept: instance.kept, selectorText: instance.selector, note: '', how: instance.kept ? 'kept by' : (instance.selector ? 'dropped by' : 'matches no keep selector') };
    }
    var pending = prediction.kept !== instance.kept;
    return {
      kept: prediction.kept,
      selectorText: prediction.selector ? selectorText(prediction.selector) : (pending ? null : instance.selector),
      note: pending ? 'from the next request (last data: ' + (instance.kept ? 'kept' : 'dropped') + ')' : '',
      how: prediction.why,
    };
  }

  function fmtRate(n) { return typeof n === 'number' ? n.toFixed(1) : ''; }
  function fmtTime(iso) {
    var d = new Date(iso);
    if (isNaN(d.getTime())) return '';
    var ago = Math.max(0, Math.round((Date.now() - d.getTime()) / 1000));
    var clock = d.toLocaleTimeString([], { hour12: false });
    return clock + (ago < 3600 ? ' (' + (ago < 60 ? ago + ' s' : Math.floor(ago / 60) + ' min') + ' ago)' : '');
  }

  // Numbers and times sort largest/newest first by default; text A to Z.
  var DESCENDING_FIRST = ['spans', 'points', 'firstSeen', 'lastSeen'];
  function sortValue(instance, key, eff) {
    switch (key) {
      case 'pid': return instance.pid === null ? -1 : instance.pid;
      case 'kept': return eff.kept === null ? 2 : eff.kept ? 0 : 1;
      case 'selector': return eff.selectorText || '';
      case 'spans': return instance.spansPerSecond;
      case 'points': return instance.metricPointsPerSecond;
      case 'firstSeen': return Date.parse(instance.firstSeen);
      case 'lastSeen': return Date.parse(instance.lastSeen);
      default: return String(instance[key] === null || instance[key] === undefined ? '' : instance[key]);
    }
  }

  function rowFor(instance) {
    var row = rows.get(instance.id);
    if (row) return row;
    var tr = make('tr', { 'class': 'instance', 'data-instance': instance.id });
    var cells = {};
    ['id', 'service', 'host', 'pid', 'kept', 'sel', 'spans', 'points', 'first', 'last', 'actions'].forEach(function (name) {
      var cell = make(name === 'id' ? 'th' : 'td', { 'class': name === 'pid' || name === 'spans' || name === 'points' ? 'num' : name });
      if (name === 'id') cell.setAttribute('scope', 'row');
      cells[name] = cell;
      tr.appendChild(cell);
    });
    var label = instance.id || '(no service.instance.id)';
    var keepButton = make('button', { type: 'button', 'class': 'keep', 'aria-label': 'Keep ' + label }, 'Keep');
    var dropButton = make('button', { type: 'button', 'class': 'drop', 'aria-label': 'Drop ' + label }, 'Drop');
    keepButton.addEventListener('click', function () { act('keep-instance', instance.id); });
    dropButton.addEventListener('click', function () { act('drop-instance', instance.id); });
    cells.actions.appendChild(keepButton);
    cells.actions.appendChild(dropButton);
    row = { tr: tr, cells: cells, keep: keepButton, drop: dropButton, text: {} };
    rows.set(instance.id, row);
    return row;
  }
  function setText(row, name, value) {
    if (row.text[name] === value) return;
    row.text[name] = value;
    row.cells[name].textContent = value;
  }
  function updateRow(row, instance, eff, lists) {
    setText(row, 'id', instance.id || '(no service.instance.id)');
    setText(row, 'service', instance.service === null ? '' : instance.service);
    setText(row, 'host', instance.host === null ? '' : instance.host);
    setText(row, 'pid', instance.pid === null ? '' : String(instance.pid));
    var word = eff.kept === null ? 'not filtered' : eff.kept ? 'kept' : 'dropped';
    var keptKey = word + '|' + eff.note;
    if (row.text.kept !== keptKey) {
      row.text.kept = keptKey;
      var cell = row.cells.kept;
      cell.textContent = '';
      cell.appendChild(make('span', { 'class': 'badge ' + (eff.kept === null ? 'unknown' : eff.kept ? 'yes' : 'no') }, (eff.kept === null ? '? ' : eff.kept ? '✓ ' : '✕ ') + word));
      if (eff.note) cell.appendChild(make('span', { 'class': 'note' }, eff.note));
    }
    row.tr.setAttribute('data-kept', eff.kept === null ? 'unknown' : eff.kept ? 'yes' : 'no');
    row.tr.className = 'instance' + (eff.kept === false ? ' dropped' : '');
    setText(row, 'sel', eff.selectorText ? eff.how + ': ' + eff.selectorText : eff.how);
    setText(row, 'spans', fmtRate(instance.spansPerSecond));
    setText(row, 'points', fmtRate(instance.metricPointsPerSecond));
    setText(row, 'first', fmtTime(instance.firstSeen));
    setText(row, 'last', fmtTime(instance.lastSeen));
    row.cells.first.title = instance.firstSeen;
    row.cells.last.title = instance.lastSeen;
    var canAct = !!lists && !!instance.id && !state.busy;
    row.keep.disabled = !canAct || unchanged(keepInstance(instance, lists), lists);
    row.drop.disabled = !canAct || unchanged(dropInstance(instance, lists), lists);
    row.keep.title = row.keep.disabled && canAct ? 'already kept by these lists' : '';
    row.drop.title = row.drop.disabled && canAct ? 'already in the drop list' : '';
  }

  function groupFor(key) {
    var group = groups.get(key);
    if (group) return group;
    var tbody = make('tbody', { 'data-service': key });
    var header = make('tr', { 'class': 'group-row' });
    var th = make('th', { scope: 'rowgroup', colspan: String(COLUMNS - 1) });
    var name = make('span', { 'class': 'name' });
    var counts = make('span', { 'class': 'counts' });
    th.appendChild(name);
    th.appendChild(counts);
    var actions = make('td', { 'class': 'actions' });
    var label = key === '' ? '(no service.name)' : key;
    var keepButton = make('button', { type: 'button', 'class': 'keep', 'aria-label': 'Keep service ' + label }, 'Keep service');
    var dropButton = make('button', { type: 'button', 'class': 'drop', 'aria-label': 'Drop service ' + label }, 'Drop service');
    keepButton.addEventListener('click', function () { act('keep-service', key); });
    dropButton.addEventListener('click', function () { act('drop-service', key); });
    actions.appendChild(keepButton);
    actions.appendChild(dropButton);
    header.appendChild(th);
    header.appendChild(actions);
    name.textContent = label;
    group = { tbody: tbody, header: header, counts: counts, keep: keepButton, drop: dropButton };
    groups.set(key, group);
    return group;
  }

  function matchesSearch(instance, query) {
    if (!query) return true;
    return [instance.id, instance.service, instance.host, instance.pid === null ? '' : String(instance.pid)].some(function (v) {
      return v !== null && v !== undefined && String(v).toLowerCase().indexOf(query) >= 0;
    });
  }

  function render() {
    renderFilterSelect();
    var lists = currentLists();
    var grouped = el('group').checked;
    var query = el('search').value.trim().toLowerCase();
    var table = el('instances');
    var shown = state.instances.filter(function (i) { return matchesSearch(i, query); });
    var effs = new Map();
    shown.forEach(function (i) { effs.set(i.id, effective(i)); });
    var key = state.sortKey, dir = state.sortDir;
    shown.sort(function (a, b) {
      var va = sortValue(a, key, effs.get(a.id)), vb = sortValue(b, key, effs.get(b.id));
      if (va < vb) return -dir;
      if (va > vb) return dir;
      return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
    });

    var buckets = new Map();
    shown.forEach(function (i) {
      var k = grouped ? (i.service === null ? '' : i.service) : '*';
      if (!buckets.has(k)) buckets.set(k, []);
      buckets.get(k).push(i);
    });
    var order = Array.from(buckets.keys()).sort();
    var liveGroups = new Set();
    var liveRows = new Set();
    order.forEach(function (k) {
      var members = buckets.get(k);
      var group = groupFor(grouped ? k : '*');
      liveGroups.add(grouped ? k : '*');
      table.appendChild(group.tbody);
      if (grouped) {
        group.tbody.appendChild(group.header);
        var keptCount = members.filter(function (m) { return effs.get(m.id).kept === true; }).length;
        var countText = members.length + (members.length === 1 ? ' instance, ' : ' instances, ') + keptCount + ' kept';
        if (group.counts.textContent !== countText) group.counts.textContent = countText;
        var all = state.instances.filter(function (i) { return (i.service === null ? '' : i.service) === k; });
        var canAct = !!lists && k !== '' && !state.busy;
        group.keep.disabled = !canAct || unchanged(keepService(k, all, lists), lists);
        group.drop.disabled = !canAct || unchanged(dropService(k, lists), lists);
      } else if (group.header.parentNode) {
        group.header.remove();
      }
      members.forEach(function (i) {
        var row = rowFor(i);
        updateRow(row, i, effs.get(i.id), lists);
        group.tbody.appendChild(row.tr);
        liveRows.add(i.id);
      });
    });
    rows.forEach(function (row, id) { if (!liveRows.has(id)) { row.tr.remove(); if (!state.instances.some(function (i) { return i.id === id; })) rows.delete(id); } });
    groups.forEach(function (group, k) { if (!liveGroups.has(k)) group.tbody.remove(); });

    Array.from(table.tHead.rows[0].cells).forEach(function (th) {
      if (th.dataset.sort === key) th.setAttribute('aria-sort', dir > 0 ? 'ascending' : 'descending');
      else th.removeAttribute('aria-sort');
    });

    var kept = state.instances.filter(function (i) { return effs.has(i.id) ? effs.get(i.id).kept === true : i.kept === true; }).length;
    el('summary').textContent = state.instances.length + ' instances, ' + kept + ' kept, ' + (state.instances.length - kept) + ' not kept' +
      (shown.length !== state.instances.length ? ' (' + shown.length + ' shown)' : '') +
      (state.lastUpdate ? '; updated ' + state.lastUpdate.toLocaleTimeString([], { hour12: false }) : '');
    el('no-instances').hidden = state.instances.length > 0;
    renderLists(lists);
  }

  function renderList(container, list, name) {
    var signature = name + '|' + state.filterId + '|' + canonical(list === undefined ? null : list) + '|' + state.busy;
    if (container.dataset.signature === signature) return;
    container.dataset.signature = signature;
    container.textContent = '';
    if (list === undefined) {
      container.appendChild(make('p', null, 'absent: every resource is kept unless a drop selector matches it'));
      return;
    }
    if (!list.length) {
      container.appendChild(make('p', null, name === 'keep' ? 'empty: nothing is kept' : 'empty: nothing is dropped'));
      return;
    }
    var ol = make('ol', { 'aria-label': name + ' selectors' });
    list.forEach(function (selector, index) {
      var li = make('li');
      li.appendChild(make('code', null, JSON.stringify(selector)));
      var remove = make('button', { type: 'button', 'aria-label': 'Remove ' + name + ' selector ' + (index + 1) + ': ' + selectorText(selector) }, 'Remove');
      var last = name === 'keep' && list.length === 1;
      remove.disabled = state.busy || last;
      if (last) remove.title = 'an empty keep list is refused (it would drop everything): edit the lists as JSON and leave out "keep" to keep everything';
      remove.addEventListener('click', function () { act('remove-' + name, index); });
      li.appendChild(remove);
      ol.appendChild(li);
    });
    container.appendChild(ol);
  }

  function renderLists(lists) {
    el('lists-filter').textContent = state.filterId ? '(' + state.filterId + ')' : '';
    renderList(el('keep-list'), lists ? lists.keep : [], 'keep');
    renderList(el('drop-list'), lists ? lists.drop || [] : [], 'drop');
    el('save').disabled = !lists || state.busy;
    el('apply-json').disabled = !lists || state.busy;
    var textarea = el('lists-json');
    if (lists && !textarea.dataset.edited) {
      var text = JSON.stringify(body(lists), null, 2);
      if (textarea.value !== text) textarea.value = text;
    }
  }

  // ---- actions ----

  function describeChange(change) {
    var parts = [];
    if (change.added) parts.push('added ' + JSON.stringify(change.added) + ' to ' + change.list);
    if (change.removed.length) parts.push('removed ' + change.removed.map(function (s) { return JSON.stringify(s); }).join(', ') + ' from ' + change.from);
    return parts.join('; ');
  }

  async function act(kind, target) {
    var id = state.filterId;
    if (!id || state.busy) return;
    state.busy = true;
    render();
    showErrors(null);
    try {
      // Start from the lists as they are now, not as of the last poll.
      var fresh = await api('GET', filterPath(id));
      if (!fresh.ok) { var f0 = failure(fresh); showErrors(f0.title, f0.errors); setStatus('Could not read the lists of ' + id + ': ' + f0.title, true); return; }
      var lists = fresh.data;
      state.filters[id] = lists;
      var change;
      var what;
      if (kind === 'keep-instance' || kind === 'drop-instance') {
        var instance = state.instances.find(function (i) { return i.id === target; });
        if (!instance) { setStatus('Instance ' + target + ' is no longer listed.', true); return; }
        change = kind === 'keep-instance' ? keepInstance(instance, lists) : dropInstance(instance, lists);
        what = (kind === 'keep-instance' ? 'Keep ' : 'Drop ') + 'instance ' + target;
      } else if (kind === 'keep-service' || kind === 'drop-service') {
        var members = state.instances.filter(function (i) { return i.service === target; });
        change = kind === 'keep-service' ? keepService(target, members, lists) : dropService(target, lists);
        what = (kind === 'keep-service' ? 'Keep ' : 'Drop ') + 'service ' + target;
      } else {
        var listName = kind === 'remove-keep' ? 'keep' : 'drop';
        var list = clone(lists[listName] || []);
        var gone = list.splice(target, 1);
        change = { keep: listName === 'keep' ? list : clone(lists.keep), drop: listName === 'drop' ? list : clone(lists.drop || []), added: null, list: listName, removed: gone, from: listName };
        what = 'Remove a ' + listName + ' selector';
      }
      if (unchanged(change, lists)) { setStatus(what + ': nothing to change in ' + id + '.'); return; }
      await put(id, body(change), what + ' (' + id + '): ' + describeChange(change) + '.');
    } catch (err) {
      setStatus('Request failed: ' + (err && err.message ? err.message : err), true);
    } finally {
      state.busy = false;
      render();
    }
  }

  async function put(id, payload, success) {
    var result = await api('PUT', filterPath(id), payload);
    if (!result.ok) {
      var f = failure(result);
      showErrors(f.title, f.errors);
      setStatus('The change was refused; the running lists are unchanged.', true);
      return false;
    }
    state.filters[id] = result.data;
    delete el('lists-json').dataset.edited;
    setStatus(success + ' Applies from the next request.');
    return true;
  }

  async function applyJson() {
    var id = state.filterId;
    if (!id || state.busy) return;
    var payload;
    try { payload = JSON.parse(el('lists-json').value); } catch (err) {
      showErrors('The text is not valid JSON: ' + err.message);
      setStatus('Nothing was sent.', true);
      return;
    }
    state.busy = true;
    render();
    showErrors(null);
    try { await put(id, payload, 'Replaced the lists of ' + id + '.'); }
    catch (err) { setStatus('Request failed: ' + (err && err.message ? err.message : err), true); }
    finally { state.busy = false; render(); }
  }

  async function save() {
    var id = state.filterId;
    if (!id || state.busy) return;
    state.busy = true;
    render();
    showErrors(null);
    try {
      var result = await api('POST', filterPath(id, '/save'));
      if (result.ok) setStatus('Saved the lists of ' + id + ' to the config file.');
      else {
        var f = failure(result);
        showErrors(f.title, f.errors);
        setStatus('Not saved: ' + ((result.data && result.data.error) || 'HTTP ' + result.status), true);
      }
    } catch (err) {
      setStatus('Request failed: ' + (err && err.message ? err.message : err), true);
    } finally {
      state.busy = false;
      render();
    }
  }

  // ---- wiring ----

  el('token').value = token();
  el('token-form').addEventListener('submit', function (event) {
    event.preventDefault();
    try { sessionStorage.setItem(TOKEN_KEY, el('token').value.trim()); } catch (e) { /* storage disabled: token lasts until reload */ }
    state.needsToken = false;
    el('token').removeAttribute('aria-invalid');
    setStatus('Using the new token.');
    refresh();
  });
  el('filter').addEventListener('change', function () {
    state.filterId = el('filter').value;
    delete el('lists-json').dataset.edited;
    render();
  });
  el('search').addEventListener('input', render);
  el('group').addEventListener('change', render);
  Array.from(el('instances').tHead.rows[0].cells).forEach(function (th) {
    var button = th.querySelector('button');
    if (!button) return;
    button.addEventListener('click', function () {
      var k = th.dataset.sort;
      if (state.sortKey === k) state.sortDir = -state.sortDir;
      else { state.sortKey = k; state.sortDir = DESCENDING_FIRST.indexOf(k) >= 0 ? -1 : 1; }
      render();
    });
  });
  el('save').addEventListener('click', save);
  el('apply-json').addEventListener('click', applyJson);
  el('reset-json').addEventListener('click', function () { delete el('lists-json').dataset.edited; el('lists-json').value = ''; render(); });
  el('lists-json').addEventListener('input', function () { el('lists-json').dataset.edited = '1'; });

  loop();
})();
</script>
</body>
</html>
`;
