// The admin page's script (index.html loads the compiled app.js as a module): the instance
// inventory, live, with one-click keep/drop of an instance or a whole service through the same
// admin API that scripts use. What lists decide is always the server's answer (the dry-run
// endpoint runs the filter's own matcher); the page matches nothing itself. Browser code: compiled
// by this folder's tsconfig.json (ES2020, DOM), no imports, no bundler.
// test/e2e/admin-page.test.ts runs it in headless Chromium.

const POLL_MS = 2000;
const TOKEN_KEY = 'spansieve.adminToken';
const ID = 'service.instance.id';
const SERVICE = 'service.name';
const COLUMNS = 11;

// ---- the admin API's shapes (src/component/component.ts: InstanceView, FilterLists) ----

type Selector = Record<string, unknown>;

/** A filter processor's lists as GET /api/v1/filters answers them (keep absent: no keep list). */
interface Lists {
  keep?: Selector[];
  drop?: Selector[];
}

interface Instance {
  id: string;
  service: string | null;
  host: string | null;
  pid: number | null;
  kept: boolean | null;
  selector: string | null;
  firstSeen: string;
  lastSeen: string;
  spansPerSecond: number;
  metricPointsPerSecond: number;
  attributes: Record<string, unknown>;
  omittedAttributes: number;
}

/** GET /api/v1/sampling (src/component/component.ts: SamplingView). */
interface Sampling {
  services: { service: string | null; seen: number; keptByFilter: number | null; keptBySampling: number | null; samplers: { processor: string; seen: number; kept: number }[] }[];
  policies: { processor: string; policy: string | null; sampled: number; notSampled: number }[];
  recentDropped: { traceId: string; service: string | null; processor: string; policy: string | null; reason: string; at: string }[];
  maxRecentDropped: number;
}

interface ApiResult {
  ok: boolean;
  status: number;
  data: unknown;
}

/** New lists computed for a click, and what they add and remove (for the status line). */
interface Change {
  keep: Selector[] | undefined;
  drop: Selector[];
  added: Selector | null;
  list: 'keep' | 'drop';
  removed: Selector[];
  from: 'keep' | 'drop';
}

/** What the page shows in the Kept and Selector columns of one instance. */
interface Effective {
  kept: boolean | null;
  selectorText: string | null;
  note: string;
  how: string;
}

type SortKey = 'id' | 'service' | 'host' | 'pid' | 'kept' | 'selector' | 'spans' | 'points' | 'firstSeen' | 'lastSeen';
type Action = 'keep-instance' | 'drop-instance' | 'keep-service' | 'drop-service' | 'remove-keep' | 'remove-drop';
type CellName = 'id' | 'service' | 'host' | 'pid' | 'kept' | 'sel' | 'spans' | 'points' | 'first' | 'last' | 'actions';
const CELL_NAMES: readonly CellName[] = ['id', 'service', 'host', 'pid', 'kept', 'sel', 'spans', 'points', 'first', 'last', 'actions'];

interface Row {
  tr: HTMLTableRowElement;
  cells: Record<CellName, HTMLTableCellElement>;
  keep: HTMLButtonElement;
  drop: HTMLButtonElement;
  /** The text last written per cell, so a refresh touches only what changed. */
  text: Partial<Record<CellName, string>>;
}

interface Group {
  tbody: HTMLTableSectionElement;
  header: HTMLTableRowElement;
  counts: HTMLSpanElement;
  keep: HTMLButtonElement;
  drop: HTMLButtonElement;
}

const state = {
  instances: [] as Instance[],
  /** null until the server answered (an older server has no /api/v1/sampling: the section stays empty). */
  sampling: null as Sampling | null,
  filters: {} as Record<string, Lists>,
  filterId: null as string | null,
  sortKey: 'id' as SortKey,
  sortDir: 1,
  needsToken: false,
  lastUpdate: null as Date | null,
  busy: false,
};
/** Counts the changes this page made, so that a poll started before one does not undo it on screen. */
let changesMade = 0;
const rows = new Map<string, Row>();
const groups = new Map<string, Group>();

// ---- the DOM ----

function el<T extends HTMLElement = HTMLElement>(id: string): T {
  const node = document.getElementById(id);
  if (!node) throw new Error(`the page has no element #${id}`);
  return node as T;
}
const input = (id: string): HTMLInputElement => el<HTMLInputElement>(id);

function make<K extends keyof HTMLElementTagNameMap>(tag: K, attrs?: Record<string, string> | null, text?: string | null): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  if (attrs) for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined && text !== null) node.textContent = text;
  return node;
}

function clone<T>(value: T): T {
  return value === undefined ? value : (JSON.parse(JSON.stringify(value)) as T);
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

// ---- lists as data: equality and display (matching is the server's: see the dry runs below) ----

function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  if (isRecord(value)) {
    return `{${Object.keys(value)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonical(value[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(value) ?? 'undefined';
}
function same(a: unknown, b: unknown): boolean {
  return canonical(a) === canonical(b);
}
/** A selector as the server writes it in an instance's `selector` (key="value", ...). */
function selectorText(selector: Selector): string {
  return Object.keys(selector)
    .map((k) => `${k}=${JSON.stringify(selector[k])}`)
    .join(', ');
}

// ---- what lists decide: asked of the server (POST .../dry-run), never computed here ----

/** One instance as a dry run decides it; kept null: the server cannot tell (attributes not all kept). */
interface Decision {
  id: string;
  kept: boolean | null;
  selector: string | null;
  /** What a resource-level decision leaves open (OTTL span conditions), e.g. `spans may be dropped by 2 span conditions`. */
  note?: string;
}

/** The selector the server names when an OTTL resource condition (not editable here) dropped an instance that the lists keep. */
const OTTL_SELECTOR = 'OTTL condition';
/** Whether the lists of a dry run keep the instance (an OTTL condition may still drop it). */
function listsKeep(decision: Decision | undefined): boolean {
  return decision?.kept === true || decision?.selector === OTTL_SELECTOR;
}

/** The decisions of the selected filter processor's running lists, for the lists they were asked for. */
let preview: { key: string; decisions: Map<string, Decision> } | null = null;

function previewKey(id: string, lists: Lists): string {
  return `${id}|${canonical(body(lists))}`;
}

/** What `lists` would decide for every known instance, or the refused answer. */
async function dryRun(id: string, lists: unknown): Promise<Map<string, Decision> | ApiResult> {
  const result = await api('POST', filterPath(id, '/dry-run'), lists);
  if (!result.ok || !isRecord(result.data) || !Array.isArray(result.data.instances)) return result;
  return new Map((result.data.instances as Decision[]).map((d) => [d.id, d]));
}

/** dryRun for an action: a refusal ends the action with the server's answer. */
async function mustDryRun(id: string, lists: Lists): Promise<Map<string, Decision>> {
  const answer = await dryRun(id, body(lists));
  if (answer instanceof Map) return answer;
  throw new Error(`the dry run of ${id} was refused: ${failure(answer).title}`);
}

/** Asks the server what the selected lists decide now; without an answer the page shows the inventory's decisions. */
async function refreshPreview(): Promise<void> {
  chooseFilter();
  const id = state.filterId;
  const lists = currentLists();
  if (!id || !lists) {
    preview = null;
    return;
  }
  const key = previewKey(id, lists);
  const answer = await dryRun(id, body(lists));
  // The lists changed meanwhile (a click, another poll): this answer is about lists no longer shown.
  const now = currentLists();
  if (state.filterId !== id || !now || previewKey(id, now) !== key) return;
  preview = answer instanceof Map ? { key, decisions: answer } : null;
}

/** The server's decision for an instance under the lists the page shows, if it gave one for exactly those lists. */
function decisionFor(instance: Instance): Decision | undefined {
  const id = state.filterId;
  const lists = currentLists();
  if (!id || !lists || !preview || preview.key !== previewKey(id, lists)) return undefined;
  const decision = preview.decisions.get(instance.id);
  return decision && decision.kept !== null ? decision : undefined;
}

/**
 * For each selector, whether it matches any of the instances: a drop list of that selector alone
 * drops the instance. One dry run per selector, all at once.
 */
async function matchesAny(id: string, selectors: readonly Selector[], instanceIds: readonly string[]): Promise<boolean[]> {
  return Promise.all(
    selectors.map(async (selector) => {
      const decisions = await mustDryRun(id, { drop: [selector] });
      return instanceIds.some((i) => !listsKeep(decisions.get(i)) && decisions.get(i)?.kept === false);
    }),
  );
}

// ---- one-click actions: the new lists for the selected filter processor ----

function droppedByServer(instance: Instance, selector: Selector): boolean {
  return instance.kept === false && instance.selector !== null && instance.selector === selectorText(selector);
}
/** Keep: remove the drop selectors that match the instance; add it to a keep list that does not keep it. */
async function keepInstance(id: string, instance: Instance, lists: Lists): Promise<Change> {
  const exact: Selector = { [ID]: instance.id };
  const hits = await matchesAny(id, lists.drop || [], [instance.id]);
  const removed: Selector[] = [];
  const drop = (lists.drop || []).filter((s, i) => {
    const hit = hits[i] === true || droppedByServer(instance, s);
    if (hit) removed.push(s);
    return !hit;
  });
  const keep = clone(lists.keep);
  let added: Selector | null = null;
  if (keep && !listsKeep((await mustDryRun(id, { keep, drop: [] })).get(instance.id))) {
    keep.push(exact);
    added = exact;
  }
  return { keep, drop, added, list: 'keep', removed, from: 'drop' };
}
// Removes the keep selectors equal to 'exact', unless that would leave the keep list empty: the
// server refuses an empty keep list (it would drop everything), and the drop entry suffices.
function withoutKeep(lists: Lists, exact: Selector, removed: Selector[]): Selector[] | undefined {
  if (!lists.keep) return undefined;
  const rest = lists.keep.filter((s) => !same(s, exact));
  if (!rest.length) return clone(lists.keep);
  for (const s of lists.keep) if (same(s, exact)) removed.push(s);
  return rest;
}
function dropExact(lists: Lists, exact: Selector): Change {
  const removed: Selector[] = [];
  const keep = withoutKeep(lists, exact, removed);
  const drop = clone(lists.drop || []);
  let added: Selector | null = null;
  if (!drop.some((s) => same(s, exact))) {
    drop.push(exact);
    added = exact;
  }
  return { keep, drop, added, list: 'drop', removed, from: 'keep' };
}
function dropInstance(instance: Instance, lists: Lists): Change {
  return dropExact(lists, { [ID]: instance.id });
}
/** Keep service: remove the drop selectors equal to the service's or matching any of its instances; add the service to a keep list. */
async function keepService(id: string, name: string, members: readonly Instance[], lists: Lists): Promise<Change> {
  const exact: Selector = { [SERVICE]: name };
  const hits = await matchesAny(
    id,
    lists.drop || [],
    members.map((m) => m.id),
  );
  const removed: Selector[] = [];
  const drop = (lists.drop || []).filter((s, i) => {
    const hit = same(s, exact) || hits[i] === true || members.some((m) => droppedByServer(m, s));
    if (hit) removed.push(s);
    return !hit;
  });
  const keep = clone(lists.keep);
  let added: Selector | null = null;
  if (keep && !keep.some((s) => same(s, exact))) {
    keep.push(exact);
    added = exact;
  }
  return { keep, drop, added, list: 'keep', removed, from: 'drop' };
}
function dropService(name: string, lists: Lists): Change {
  return dropExact(lists, { [SERVICE]: name });
}
// Whether Keep / Keep service would change the lists, from the dry run of the lists shown: Keep
// changes nothing exactly when the lists keep the instance (no drop selector matches it, the keep
// list does or is absent). Without the server's answer the button stays enabled.
function keepChanges(instance: Instance, lists: Lists): boolean {
  return !listsKeep(decisionFor(instance)) || (lists.drop || []).some((s) => droppedByServer(instance, s));
}
function keepServiceChanges(name: string, members: readonly Instance[], lists: Lists): boolean {
  const exact: Selector = { [SERVICE]: name };
  if (lists.keep && !lists.keep.some((s) => same(s, exact))) return true;
  return (lists.drop || []).some((s) => same(s, exact)) || members.some((m) => keepChanges(m, lists));
}
function unchanged(change: Change, lists: Lists): boolean {
  return same(change.keep === undefined ? null : change.keep, lists.keep === undefined ? null : lists.keep) && same(change.drop, lists.drop || []);
}
/** The PUT body for lists: keep only when there is a keep list. */
function body(lists: Lists | Change): Lists {
  const out: Lists = {};
  if (lists.keep !== undefined) out.keep = lists.keep;
  out.drop = lists.drop || [];
  return out;
}

// ---- the admin API ----

function token(): string {
  try {
    return sessionStorage.getItem(TOKEN_KEY) || '';
  } catch {
    return '';
  }
}
function filterPath(id: string, suffix?: string): string {
  return `/api/v1/filters/${encodeURIComponent(id)}${suffix || ''}`;
}

async function api(method: string, path: string, payload?: unknown): Promise<ApiResult> {
  const headers: Record<string, string> = {};
  const t = token();
  if (t) headers.authorization = `Bearer ${t}`;
  if (payload !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(path, { method, headers, body: payload === undefined ? undefined : JSON.stringify(payload), cache: 'no-store' });
  const text = await res.text();
  let data: unknown;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = { error: text };
  }
  if (res.status === 401) askForToken(isRecord(data) && typeof data.error === 'string' ? data.error : undefined);
  else if (res.ok && state.needsToken) tokenAccepted();
  return { ok: res.ok, status: res.status, data };
}

function askForToken(reason: string | undefined): void {
  const field = input('token');
  field.setAttribute('aria-invalid', 'true');
  if (!state.needsToken) {
    state.needsToken = true;
    setStatus(`${hasToken() ? 'The token was refused: ' : 'The admin API needs a token: '}${reason || 'HTTP 401'}. Enter it in "Admin token".`, true);
    field.focus();
  }
}
function hasToken(): boolean {
  return token() !== '';
}
function tokenAccepted(): void {
  state.needsToken = false;
  input('token').removeAttribute('aria-invalid');
  setStatus('Token accepted.');
}

function setStatus(text: string, isError?: boolean): void {
  const s = el('status');
  s.textContent = text;
  s.className = isError ? 'error' : '';
}
function showErrors(title: string | null, errors?: readonly string[]): void {
  const box = el('errors');
  box.textContent = '';
  if (!title) {
    box.hidden = true;
    return;
  }
  box.appendChild(make('strong', null, title));
  if (errors && errors.length) {
    const ul = make('ul');
    for (const e of errors) ul.appendChild(make('li', null, String(e)));
    box.appendChild(ul);
  }
  box.hidden = false;
}
function errorText(data: unknown): string | undefined {
  return isRecord(data) && typeof data.error === 'string' ? data.error : undefined;
}
function failure(result: ApiResult): { title: string; errors: string[] } {
  const data = isRecord(result.data) ? result.data : {};
  return {
    title: `HTTP ${result.status}: ${errorText(data) || 'request failed'}`,
    errors: Array.isArray(data.errors) ? data.errors.map(String) : [],
  };
}

// ---- polling ----

async function refresh(): Promise<void> {
  const status = el('status');
  try {
    const changes = changesMade;
    const [inst, filt, samp] = await Promise.all([api('GET', '/api/v1/instances'), api('GET', '/api/v1/filters'), api('GET', '/api/v1/sampling')]);
    if (inst.ok && Array.isArray(inst.data)) state.instances = inst.data as Instance[];
    if (samp.ok && isRecord(samp.data) && Array.isArray(samp.data.services)) state.sampling = samp.data as unknown as Sampling;
    // Lists read before a change this page made since are older than what it holds.
    if (filt.ok && isRecord(filt.data) && changes === changesMade) state.filters = filt.data as Record<string, Lists>;
    if (inst.ok && filt.ok) {
      await refreshPreview();
      // New instances or decisions: the editor's preview follows them.
      if (el('lists-json').dataset.edited) scheduleEditPreview();
      if (!state.lastUpdate) setStatus(`Live: refreshed every ${POLL_MS / 1000} s.`);
      state.lastUpdate = new Date();
      if (status.dataset.offline) {
        delete status.dataset.offline;
        setStatus('Connected again.');
      }
    } else if (!state.needsToken) {
      const f = failure(inst.ok ? filt : inst);
      setStatus(`The admin API answered ${f.title}`, true);
    }
  } catch (err) {
    status.dataset.offline = '1';
    setStatus(`Cannot reach spansieve (${message(err)}); retrying every ${POLL_MS / 1000} s.`, true);
  }
  render();
  renderSampling();
}
async function loop(): Promise<void> {
  try {
    await refresh();
  } finally {
    setTimeout(() => void loop(), POLL_MS);
  }
}

// ---- rendering ----

function currentLists(): Lists | undefined {
  return state.filterId ? state.filters[state.filterId] : undefined;
}

/** The selected filter processor, the first one when none (or one that is gone) was. */
function chooseFilter(): string[] {
  const ids = Object.keys(state.filters);
  if (!state.filterId || !ids.includes(state.filterId)) state.filterId = ids[0] ?? null;
  return ids;
}

function renderFilterSelect(): void {
  const select = el<HTMLSelectElement>('filter');
  const ids = chooseFilter();
  const existing = Array.from(select.options).map((o) => o.value);
  if (existing.join('|') !== ids.join('|')) {
    select.textContent = '';
    for (const id of ids) select.appendChild(make('option', { value: id }, id));
  }
  if (!ids.length && select.options.length === 0) select.appendChild(make('option', { value: '' }, '(no filter processor runs)'));
  select.disabled = ids.length < 2;
  if (state.filterId) select.value = state.filterId;
}

/** The Kept and Selector columns: the server's dry run of the lists shown, else the inventory's last decision. */
function effective(instance: Instance): Effective {
  if (instance.kept === null || instance.kept === undefined) {
    return { kept: null, selectorText: null, note: 'no filter decision yet', how: '' };
  }
  const decision = decisionFor(instance);
  const lists = currentLists();
  if (!decision || !lists) {
    return { kept: instance.kept, selectorText: instance.selector, note: '', how: instance.kept ? 'kept by' : instance.selector ? 'dropped by' : 'matches no keep selector' };
  }
  const pending = decision.kept !== instance.kept;
  const notes = [pending ? `from the next request (last data: ${instance.kept ? 'kept' : 'dropped'})` : '', decision.note ?? ''];
  return {
    kept: decision.kept,
    selectorText: decision.selector,
    note: notes.filter((n) => n !== '').join('; '),
    how: decision.kept ? (lists.keep ? 'kept by' : 'no keep list: kept') : decision.selector ? 'dropped by' : 'matches no keep selector',
  };
}

function fmtRate(n: unknown): string {
  return typeof n === 'number' ? n.toFixed(1) : '';
}
function fmtTime(iso: string): string {
  const d = new Date(iso);
  if (isNaN(d.getTime())) return '';
  const ago = Math.max(0, Math.round((Date.now() - d.getTime()) / 1000));
  const clock = d.toLocaleTimeString([], { hour12: false });
  return clock + (ago < 3600 ? ` (${ago < 60 ? `${ago} s` : `${Math.floor(ago / 60)} min`} ago)` : '');
}

// Numbers and times sort largest/newest first by default; text A to Z.
const DESCENDING_FIRST: readonly string[] = ['spans', 'points', 'firstSeen', 'lastSeen'];
function sortValue(instance: Instance, key: SortKey, eff: Effective): string | number {
  switch (key) {
    case 'pid':
      return instance.pid === null ? -1 : instance.pid;
    case 'kept':
      return eff.kept === null ? 2 : eff.kept ? 0 : 1;
    case 'selector':
      return eff.selectorText || '';
    case 'spans':
      return instance.spansPerSecond;
    case 'points':
      return instance.metricPointsPerSecond;
    case 'firstSeen':
      return Date.parse(instance.firstSeen);
    case 'lastSeen':
      return Date.parse(instance.lastSeen);
    default:
      return String(instance[key] ?? '');
  }
}

function rowFor(instance: Instance): Row {
  const existing = rows.get(instance.id);
  if (existing) return existing;
  const tr = make('tr', { class: 'instance', 'data-instance': instance.id });
  const cells = {} as Record<CellName, HTMLTableCellElement>;
  for (const name of CELL_NAMES) {
    const cell = make(name === 'id' ? 'th' : 'td', { class: name === 'pid' || name === 'spans' || name === 'points' ? 'num' : name });
    if (name === 'id') cell.setAttribute('scope', 'row');
    cells[name] = cell;
    tr.appendChild(cell);
  }
  const label = instance.id || '(no service.instance.id)';
  const keepButton = make('button', { type: 'button', class: 'keep', 'aria-label': `Keep ${label}` }, 'Keep');
  const dropButton = make('button', { type: 'button', class: 'drop', 'aria-label': `Drop ${label}` }, 'Drop');
  keepButton.addEventListener('click', () => void act('keep-instance', instance.id));
  dropButton.addEventListener('click', () => void act('drop-instance', instance.id));
  cells.actions.appendChild(keepButton);
  cells.actions.appendChild(dropButton);
  const row: Row = { tr, cells, keep: keepButton, drop: dropButton, text: {} };
  rows.set(instance.id, row);
  return row;
}
function setText(row: Row, name: CellName, value: string): void {
  if (row.text[name] === value) return;
  row.text[name] = value;
  row.cells[name].textContent = value;
}
function updateRow(row: Row, instance: Instance, eff: Effective, lists: Lists | undefined): void {
  setText(row, 'id', instance.id || '(no service.instance.id)');
  setText(row, 'service', instance.service === null ? '' : instance.service);
  setText(row, 'host', instance.host === null ? '' : instance.host);
  setText(row, 'pid', instance.pid === null ? '' : String(instance.pid));
  const word = eff.kept === null ? 'not filtered' : eff.kept ? 'kept' : 'dropped';
  const keptKey = `${word}|${eff.note}`;
  if (row.text.kept !== keptKey) {
    row.text.kept = keptKey;
    const cell = row.cells.kept;
    cell.textContent = '';
    cell.appendChild(make('span', { class: `badge ${eff.kept === null ? 'unknown' : eff.kept ? 'yes' : 'no'}` }, (eff.kept === null ? '? ' : eff.kept ? '✓ ' : '✕ ') + word));
    if (eff.note) cell.appendChild(make('span', { class: 'note' }, eff.note));
  }
  row.tr.setAttribute('data-kept', eff.kept === null ? 'unknown' : eff.kept ? 'yes' : 'no');
  row.tr.className = `instance${eff.kept === false ? ' dropped' : ''}`;
  setText(row, 'sel', eff.selectorText ? `${eff.how}: ${eff.selectorText}` : eff.how);
  setText(row, 'spans', fmtRate(instance.spansPerSecond));
  setText(row, 'points', fmtRate(instance.metricPointsPerSecond));
  setText(row, 'first', fmtTime(instance.firstSeen));
  setText(row, 'last', fmtTime(instance.lastSeen));
  row.cells.first.title = instance.firstSeen;
  row.cells.last.title = instance.lastSeen;
  const canAct = !!lists && !!instance.id && !state.busy;
  row.keep.disabled = !canAct || !lists || !keepChanges(instance, lists);
  row.drop.disabled = !canAct || !lists || unchanged(dropInstance(instance, lists), lists);
  row.keep.title = !row.keep.disabled || !canAct ? '' : decisionFor(instance)?.kept === false ? 'kept by these lists; an OTTL condition in the config file drops it' : 'already kept by these lists';
  row.drop.title = row.drop.disabled && canAct ? 'already in the drop list' : '';
}

function groupFor(key: string): Group {
  const existing = groups.get(key);
  if (existing) return existing;
  const tbody = make('tbody', { 'data-service': key });
  const header = make('tr', { class: 'group-row' });
  const th = make('th', { scope: 'rowgroup', colspan: String(COLUMNS - 1) });
  const name = make('span', { class: 'name' });
  const counts = make('span', { class: 'counts' });
  th.appendChild(name);
  th.appendChild(counts);
  const actions = make('td', { class: 'actions' });
  const label = key === '' ? '(no service.name)' : key;
  const keepButton = make('button', { type: 'button', class: 'keep', 'aria-label': `Keep service ${label}` }, 'Keep service');
  const dropButton = make('button', { type: 'button', class: 'drop', 'aria-label': `Drop service ${label}` }, 'Drop service');
  keepButton.addEventListener('click', () => void act('keep-service', key));
  dropButton.addEventListener('click', () => void act('drop-service', key));
  actions.appendChild(keepButton);
  actions.appendChild(dropButton);
  header.appendChild(th);
  header.appendChild(actions);
  name.textContent = label;
  const group: Group = { tbody, header, counts, keep: keepButton, drop: dropButton };
  groups.set(key, group);
  return group;
}

function matchesSearch(instance: Instance, query: string): boolean {
  if (!query) return true;
  return [instance.id, instance.service, instance.host, instance.pid === null ? '' : String(instance.pid)].some(
    (v) => v !== null && v !== undefined && String(v).toLowerCase().includes(query),
  );
}

function render(): void {
  renderFilterSelect();
  const lists = currentLists();
  const grouped = input('group').checked;
  const query = input('search').value.trim().toLowerCase();
  const table = el<HTMLTableElement>('instances');
  const shown = state.instances.filter((i) => matchesSearch(i, query));
  const effs = new Map<string, Effective>();
  for (const i of shown) effs.set(i.id, effective(i));
  const effOf = (i: Instance): Effective => effs.get(i.id) ?? effective(i);
  const key = state.sortKey;
  const dir = state.sortDir;
  shown.sort((a, b) => {
    const va = sortValue(a, key, effOf(a));
    const vb = sortValue(b, key, effOf(b));
    if (va < vb) return -dir;
    if (va > vb) return dir;
    return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
  });

  const buckets = new Map<string, Instance[]>();
  for (const i of shown) {
    const k = grouped ? (i.service === null ? '' : i.service) : '*';
    const bucket = buckets.get(k);
    if (bucket) bucket.push(i);
    else buckets.set(k, [i]);
  }
  const order = Array.from(buckets.keys()).sort();
  const liveGroups = new Set<string>();
  const liveRows = new Set<string>();
  for (const k of order) {
    const members = buckets.get(k) ?? [];
    const group = groupFor(grouped ? k : '*');
    liveGroups.add(grouped ? k : '*');
    table.appendChild(group.tbody);
    if (grouped) {
      group.tbody.appendChild(group.header);
      const keptCount = members.filter((m) => effOf(m).kept === true).length;
      const countText = `${members.length}${members.length === 1 ? ' instance, ' : ' instances, '}${keptCount} kept`;
      if (group.counts.textContent !== countText) group.counts.textContent = countText;
      const all = state.instances.filter((i) => (i.service === null ? '' : i.service) === k);
      const canAct = !!lists && k !== '' && !state.busy;
      group.keep.disabled = !canAct || !lists || !keepServiceChanges(k, all, lists);
      group.drop.disabled = !canAct || !lists || unchanged(dropService(k, lists), lists);
    } else if (group.header.parentNode) {
      group.header.remove();
    }
    for (const i of members) {
      const row = rowFor(i);
      updateRow(row, i, effOf(i), lists);
      group.tbody.appendChild(row.tr);
      liveRows.add(i.id);
    }
  }
  rows.forEach((row, id) => {
    if (liveRows.has(id)) return;
    row.tr.remove();
    if (!state.instances.some((i) => i.id === id)) rows.delete(id);
  });
  groups.forEach((group, k) => {
    if (!liveGroups.has(k)) group.tbody.remove();
  });

  for (const th of Array.from(table.tHead?.rows[0]?.cells ?? [])) {
    if (th.dataset.sort === key) th.setAttribute('aria-sort', dir > 0 ? 'ascending' : 'descending');
    else th.removeAttribute('aria-sort');
  }

  const kept = state.instances.filter((i) => (effs.has(i.id) ? effOf(i).kept === true : i.kept === true)).length;
  el('summary').textContent =
    `${state.instances.length} instances, ${kept} kept, ${state.instances.length - kept} not kept` +
    (shown.length !== state.instances.length ? ` (${shown.length} shown)` : '') +
    (state.lastUpdate ? `; updated ${state.lastUpdate.toLocaleTimeString([], { hour12: false })}` : '');
  el('no-instances').hidden = state.instances.length > 0;
  renderLists(lists);
}

/** The Sampling section: small tables (at most 100 recent rows), rebuilt at each refresh. */
function renderSampling(): void {
  const s = state.sampling;
  const fill = (tableId: string, rowsOf: (string | number | null)[][], classes: readonly string[]): void => {
    const tbody = el<HTMLTableElement>(tableId).tBodies[0]!;
    const fresh = document.createElement('tbody');
    for (const cells of rowsOf) {
      const tr = make('tr');
      cells.forEach((value, i) => {
        const cell = make(i === 0 ? 'th' : 'td', classes[i] ? { class: classes[i] } : null, value === null ? '—' : String(value));
        if (i === 0) cell.setAttribute('scope', 'row');
        tr.append(cell);
      });
      fresh.append(tr);
    }
    tbody.replaceWith(fresh);
  };
  const services = s?.services ?? [];
  fill(
    'sampling-services',
    services.map((x) => [x.service ?? '(no service.name)', x.seen, x.keptByFilter, x.keptBySampling, x.samplers.map((p) => `${p.processor}: ${p.kept} / ${p.seen}`).join(', ') || null]),
    ['', 'num', 'num', 'num', 'mono'],
  );
  fill(
    'sampling-policies',
    (s?.policies ?? []).map((p) => [p.processor, p.policy ?? '(no policy sampled)', p.sampled, p.notSampled]),
    ['mono', 'mono', 'num', 'num'],
  );
  fill(
    'sampling-dropped',
    (s?.recentDropped ?? []).map((d) => [fmtTime(d.at), d.traceId, d.service, d.processor, d.policy, d.reason]),
    ['', 'mono', '', 'mono', 'mono', ''],
  );
  el('dropped-bound').textContent = s ? `(last ${s.maxRecentDropped}, newest first)` : '';
  el('no-sampling').hidden = services.length > 0;
}

function renderList(container: HTMLElement, list: Selector[] | undefined, name: 'keep' | 'drop'): void {
  const signature = `${name}|${state.filterId}|${canonical(list === undefined ? null : list)}|${state.busy}`;
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
  const ol = make('ol', { 'aria-label': `${name} selectors` });
  list.forEach((selector, index) => {
    const li = make('li');
    li.appendChild(make('code', null, JSON.stringify(selector)));
    const remove = make('button', { type: 'button', 'aria-label': `Remove ${name} selector ${index + 1}: ${selectorText(selector)}` }, 'Remove');
    const last = name === 'keep' && list.length === 1;
    remove.disabled = state.busy || last;
    if (last) remove.title = 'an empty keep list is refused (it would drop everything): edit the lists as JSON and leave out "keep" to keep everything';
    remove.addEventListener('click', () => void act(name === 'keep' ? 'remove-keep' : 'remove-drop', index));
    li.appendChild(remove);
    ol.appendChild(li);
  });
  container.appendChild(ol);
}

function renderLists(lists: Lists | undefined): void {
  el('lists-filter').textContent = state.filterId ? `(${state.filterId})` : '';
  renderList(el('keep-list'), lists ? lists.keep : [], 'keep');
  renderList(el('drop-list'), lists ? lists.drop || [] : [], 'drop');
  el<HTMLButtonElement>('save').disabled = !lists || state.busy;
  el<HTMLButtonElement>('apply-json').disabled = !lists || state.busy;
  const textarea = el<HTMLTextAreaElement>('lists-json');
  if (lists && !textarea.dataset.edited) {
    const text = JSON.stringify(body(lists), null, 2);
    if (textarea.value !== text) textarea.value = text;
  }
}

// ---- the JSON editor's preview: what the edited lists would do, before Apply ----

const MAX_PREVIEW_LINES = 50;
let editTimer: ReturnType<typeof setTimeout> | undefined;
let editSeq = 0;

function scheduleEditPreview(): void {
  clearTimeout(editTimer);
  editTimer = setTimeout(() => void previewEdit().catch(() => undefined), 300);
}

/** Dry-runs the editor's text as it would be sent (the same body as Apply) and lists what would change. */
async function previewEdit(): Promise<void> {
  const seq = ++editSeq;
  const box = el('json-preview');
  const textarea = el<HTMLTextAreaElement>('lists-json');
  const id = state.filterId;
  const text = textarea.value;
  if (!textarea.dataset.edited || !id) {
    box.hidden = true;
    box.textContent = '';
    delete box.dataset.for;
    delete box.dataset.signature;
    return;
  }
  let payload: unknown;
  try {
    payload = JSON.parse(text);
  } catch (err) {
    showPreview(box, text, `Not valid JSON yet: ${message(err)}`, true);
    return;
  }
  const answer = await dryRun(id, payload);
  if (seq !== editSeq) return; // a newer edit is on its way
  if (!(answer instanceof Map)) {
    const f = failure(answer);
    showPreview(box, text, `Apply would be refused: ${f.title}`, true, f.errors);
    return;
  }
  const changes: { instance: Instance; now: boolean | null; decision: Decision }[] = [];
  let kept = 0;
  for (const instance of state.instances) {
    const decision = answer.get(instance.id);
    if (!decision) continue;
    if (decision.kept) kept++;
    const now = effective(instance).kept;
    if (decision.kept !== now) changes.push({ instance, now, decision });
  }
  const word = (k: boolean | null): string => (k === null ? 'cannot tell' : k ? 'kept' : 'dropped');
  const lines = changes.slice(0, MAX_PREVIEW_LINES).map(({ instance, now, decision }) => ({
    text: `${instance.id}: ${word(now)} → ${word(decision.kept)}${decision.selector ? ` (${decision.kept ? 'kept by' : 'dropped by'}: ${decision.selector})` : ''}`,
    attrs: { 'data-instance': instance.id, 'data-kept': decision.kept === null ? 'unknown' : decision.kept ? 'yes' : 'no' },
  }));
  if (changes.length > MAX_PREVIEW_LINES) lines.push({ text: `… and ${changes.length - MAX_PREVIEW_LINES} more`, attrs: { 'data-instance': '', 'data-kept': '' } });
  const summary =
    `If applied: ${kept} of ${state.instances.length} instances kept; ` +
    (changes.length === 0 ? 'no instance would change.' : `${changes.length} would change:`);
  showPreview(box, text, summary, false, [], lines);
}

function showPreview(box: HTMLElement, forText: string, summary: string, isError: boolean, errors: readonly string[] = [], lines: { text: string; attrs: Record<string, string> }[] = []): void {
  // Polls recompute it: rewrite (and so announce) it only when it says something new.
  const signature = JSON.stringify([forText, summary, isError, errors, lines]);
  if (box.dataset.signature === signature && !box.hidden) return;
  box.dataset.signature = signature;
  box.textContent = '';
  box.className = isError ? 'error' : '';
  box.appendChild(make('p', null, summary));
  if (errors.length || lines.length) {
    const ul = make('ul');
    for (const e of errors) ul.appendChild(make('li', null, e));
    for (const line of lines) ul.appendChild(make('li', line.attrs, line.text));
    box.appendChild(ul);
  }
  box.dataset.for = forText;
  box.hidden = false;
}

// ---- actions ----

function describeChange(change: Change): string {
  const parts: string[] = [];
  if (change.added) parts.push(`added ${JSON.stringify(change.added)} to ${change.list}`);
  if (change.removed.length) parts.push(`removed ${change.removed.map((s) => JSON.stringify(s)).join(', ')} from ${change.from}`);
  return parts.join('; ');
}

async function act(kind: Action, target: string | number): Promise<void> {
  const id = state.filterId;
  if (!id || state.busy) return;
  state.busy = true;
  render();
  showErrors(null);
  try {
    // Start from the lists as they are now, not as of the last poll.
    const fresh = await api('GET', filterPath(id));
    if (!fresh.ok || !isRecord(fresh.data)) {
      const f = failure(fresh);
      showErrors(f.title, f.errors);
      setStatus(`Could not read the lists of ${id}: ${f.title}`, true);
      return;
    }
    const lists = fresh.data as Lists;
    state.filters[id] = lists;
    let change: Change;
    let what: string;
    if (kind === 'keep-instance' || kind === 'drop-instance') {
      const instance = state.instances.find((i) => i.id === target);
      if (!instance) {
        setStatus(`Instance ${target} is no longer listed.`, true);
        return;
      }
      change = kind === 'keep-instance' ? await keepInstance(id, instance, lists) : dropInstance(instance, lists);
      what = `${kind === 'keep-instance' ? 'Keep' : 'Drop'} instance ${target}`;
    } else if (kind === 'keep-service' || kind === 'drop-service') {
      const name = String(target);
      const members = state.instances.filter((i) => i.service === name);
      change = kind === 'keep-service' ? await keepService(id, name, members, lists) : dropService(name, lists);
      what = `${kind === 'keep-service' ? 'Keep' : 'Drop'} service ${name}`;
    } else {
      const listName = kind === 'remove-keep' ? 'keep' : 'drop';
      const list = clone(lists[listName] || []);
      const gone = list.splice(Number(target), 1);
      change = {
        keep: listName === 'keep' ? list : clone(lists.keep),
        drop: listName === 'drop' ? list : clone(lists.drop || []),
        added: null,
        list: listName,
        removed: gone,
        from: listName,
      };
      what = `Remove a ${listName} selector`;
    }
    if (unchanged(change, lists)) {
      setStatus(`${what}: nothing to change in ${id}.`);
      return;
    }
    await put(id, body(change), `${what} (${id}): ${describeChange(change)}.`);
  } catch (err) {
    setStatus(`Request failed: ${message(err)}`, true);
  } finally {
    state.busy = false;
    render();
  }
}

async function put(id: string, payload: unknown, success: string): Promise<boolean> {
  const result = await api('PUT', filterPath(id), payload);
  if (!result.ok) {
    const f = failure(result);
    showErrors(f.title, f.errors);
    setStatus('The change was refused; the running lists are unchanged.', true);
    return false;
  }
  changesMade++;
  state.filters[id] = result.data as Lists;
  delete el('lists-json').dataset.edited;
  void previewEdit();
  setStatus(`${success} Applies from the next request.`);
  // What the new lists decide, before data arrives under them.
  await refreshPreview().catch(() => undefined);
  return true;
}

async function applyJson(): Promise<void> {
  const id = state.filterId;
  if (!id || state.busy) return;
  let payload: unknown;
  try {
    payload = JSON.parse(el<HTMLTextAreaElement>('lists-json').value);
  } catch (err) {
    showErrors(`The text is not valid JSON: ${message(err)}`);
    setStatus('Nothing was sent.', true);
    return;
  }
  state.busy = true;
  render();
  showErrors(null);
  try {
    await put(id, payload, `Replaced the lists of ${id}.`);
  } catch (err) {
    setStatus(`Request failed: ${message(err)}`, true);
  } finally {
    state.busy = false;
    render();
  }
}

async function save(): Promise<void> {
  const id = state.filterId;
  if (!id || state.busy) return;
  state.busy = true;
  render();
  showErrors(null);
  try {
    const result = await api('POST', filterPath(id, '/save'));
    if (result.ok) setStatus(`Saved the lists of ${id} to the config file.`);
    else {
      const f = failure(result);
      showErrors(f.title, f.errors);
      setStatus(`Not saved: ${errorText(result.data) || `HTTP ${result.status}`}`, true);
    }
  } catch (err) {
    setStatus(`Request failed: ${message(err)}`, true);
  } finally {
    state.busy = false;
    render();
  }
}

// ---- wiring ----

input('token').value = token();
el('token-form').addEventListener('submit', (event) => {
  event.preventDefault();
  try {
    sessionStorage.setItem(TOKEN_KEY, input('token').value.trim());
  } catch {
    // storage disabled: the token lasts until reload
  }
  state.needsToken = false;
  input('token').removeAttribute('aria-invalid');
  setStatus('Using the new token.');
  void refresh();
});
el('filter').addEventListener('change', () => {
  state.filterId = el<HTMLSelectElement>('filter').value;
  delete el('lists-json').dataset.edited;
  void previewEdit();
  render();
  refreshPreview().then(render, () => undefined);
});
el('search').addEventListener('input', render);
el('group').addEventListener('change', render);
for (const th of Array.from(el<HTMLTableElement>('instances').tHead?.rows[0]?.cells ?? [])) {
  const button = th.querySelector('button');
  if (!button) continue;
  button.addEventListener('click', () => {
    const k = th.dataset.sort as SortKey;
    if (state.sortKey === k) state.sortDir = -state.sortDir;
    else {
      state.sortKey = k;
      state.sortDir = DESCENDING_FIRST.includes(k) ? -1 : 1;
    }
    render();
  });
}
el('save').addEventListener('click', () => void save());
el('apply-json').addEventListener('click', () => void applyJson());
el('reset-json').addEventListener('click', () => {
  delete el('lists-json').dataset.edited;
  el<HTMLTextAreaElement>('lists-json').value = '';
  void previewEdit();
  render();
});
el('lists-json').addEventListener('input', () => {
  el('lists-json').dataset.edited = '1';
  scheduleEditPreview();
});

void loop();

export {};
