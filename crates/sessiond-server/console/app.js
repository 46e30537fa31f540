// sessiond operator console: vanilla JS, no build step. The DOM is built with createElement
// and textContent only (Trusted Types are enforced by the CSP: never innerHTML), the chart
// with createElementNS. The server contract is the admin API under /admin/v1 with the
// operator signed in through the end-user cookie mode on the reserved tenant `_operators`.

const OPERATORS_TENANT = '_operators';
const CSRF_COOKIE = '__Host-sessiond-csrf';
const SVG_NS = 'http://www.w3.org/2000/svg';
const RANK = { viewer: 0, operator: 1, admin: 2 };
const EVENT_TYPES = [
  'login_succeeded', 'login_failed', 'session_created', 'session_refreshed',
  'refresh_token_reused', 'session_revoked', 'session_expired', 'suspicious_activity',
  'session_event_delivered', 'session_event_failed', 'session_reauthenticated', 'admin_action',
];
const BAD_TYPES = new Set(['login_failed', 'refresh_token_reused', 'suspicious_activity', 'session_event_failed']);
const SERIES = [
  ['logins', 'Logins'],
  ['failures', 'Failures'],
  ['rateLimited', 'Rate-limited'],
  ['refreshes', 'Refreshes'],
  ['reuseDetections', 'Reuse detections'],
  ['revocations', 'Revocations'],
  ['alerts', 'Alerts'],
];
const RANGES = {
  '1h': { label: 'Last hour', seconds: 3600, bucket: 60 },
  '24h': { label: 'Last 24 hours', seconds: 86400, bucket: 900 },
  '7d': { label: 'Last 7 days', seconds: 7 * 86400, bucket: 7200 },
};
const DEFAULT_RANGE = '1h';
/** Where the x axis may put its labels: multiples of these (seconds, local time), the first
 *  one leaving few enough labels. */
const LABEL_STEPS = [300, 600, 900, 1800, 3600, 7200, 10800, 14400, 21600, 43200, 86400, 172800];
/** Policy fields counted in seconds: shown with their unit. */
const SECONDS_FIELDS = new Set([
  'sessionTokenTtl', 'refreshTokenTtl', 'absoluteTtl', 'idleTtl', 'refreshGraceSeconds', 'reauthMaxAge',
]);
/** Policy fields with a fixed set of values (the server's enums, see openapi.json). */
const CHOICE_FIELDS = { onLimit: ['evict_oldest', 'reject'] };
/** Events of one activity or session, oldest first: at most this many pages of 1000. */
const FOLLOW_PAGES = 5;
const PAGE_SIZE = 25;

const state = {
  me: null, // {actor, username, role, userId, sessionId}
  csrf: null,
  tenants: [],
  tenant: null,
  users: { tenant: null, search: '', cursors: [null], index: 0 },
  userCache: new Map(), // userId -> User, from the lists seen
  renderSeq: 0,
  flash: null, // a message that outlives the next page change (e.g. "Signed out.")
};

// ---------------------------------------------------------------- DOM helpers

/** h('tag', {attr: v, onclick: fn, dataset: {...}}, ...children): an element. */
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

/** The same in the SVG namespace. */
function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

function setAttrs(el, attrs) {
  if (!attrs) return;
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') {
      el.addEventListener(k.slice(2), v);
    } else if (k === 'dataset') {
      for (const [dk, dv] of Object.entries(v)) el.dataset[dk] = String(dv);
    } else if (k === 'value' && 'value' in el && el.namespaceURI !== SVG_NS) {
      el.value = v;
    } else if (k === 'checked' || k === 'selected' || k === 'disabled' || k === 'hidden') {
      el[k] = Boolean(v);
    } else {
      el.setAttribute(k, v === true ? '' : String(v));
    }
  }
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

function clear(el) {
  while (el.firstChild) el.firstChild.remove();
}

const $ = (id) => document.getElementById(id);

let idSeq = 0;
function uid(prefix) {
  idSeq += 1;
  return `${prefix}-${idSeq}`;
}

/** A labelled input (or select) in a .field wrapper. */
function field(label, control) {
  if (!control.id) control.id = uid('f');
  return h('div', { class: 'field' }, h('label', { for: control.id }, label), control);
}

function select(name, options, value) {
  return h('select', { name },
    options.map(([v, l]) => h('option', { value: v, selected: v === value }, l)));
}

/** A table that scrolls sideways in a labelled region and stacks into cards below 700 px. */
function table(caption, headers, rows, opts = {}) {
  const t = h('table', { class: opts.stack === false ? '' : 'stack' },
    caption ? h('caption', null, caption) : null,
    h('thead', null, h('tr', null, headers.map((x) => h('th', { scope: 'col' }, x)))),
    h('tbody', null, rows.length === 0
      ? h('tr', null, h('td', { colspan: headers.length, class: 'muted' }, opts.empty || 'Nothing here.'))
      : rows.map((cells) => {
        const tr = cells.row || h('tr');
        (cells.row ? cells.cells : cells).forEach((c, i) => {
          tr.append(c instanceof HTMLTableCellElement ? labelCell(c, headers[i]) : h('td', { 'data-label': headers[i] }, c));
        });
        return tr;
      })));
  return h('div', { class: 'table-wrap', role: 'region', tabindex: '0', 'aria-label': caption || opts.label || 'Table' }, t);
}

function labelCell(td, header) {
  td.dataset.label = header;
  return td;
}

function time(secs) {
  if (secs === undefined || secs === null) return h('span', { class: 'muted' }, '—');
  const d = new Date(secs * 1000);
  return h('time', { datetime: d.toISOString() }, d.toLocaleString());
}

function stateBadge(value) {
  return h('span', { class: `state state-${value}` }, value);
}

function can(role) {
  return state.me !== null && (RANK[state.me.role] ?? -1) >= RANK[role];
}

// ---------------------------------------------------------------- status (aria-live)

function say(text, kind = 'info') {
  const el = $('status');
  el.dataset.kind = kind;
  el.textContent = text;
}

function clearStatus() {
  const el = $('status');
  delete el.dataset.kind;
  el.textContent = '';
}

function showError(err) {
  if (err instanceof SignedOut) return;
  const text = err instanceof ApiError
    ? (err.detail || err.title || `Request failed (${err.status})`)
    : `Request failed: ${err && err.message ? err.message : String(err)}`;
  say(text, 'error');
}

// ---------------------------------------------------------------- API

class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.code = problem.code;
    this.title = problem.title;
    this.detail = problem.detail;
  }
}

class SignedOut extends Error {}

function csrfToken() {
  if (state.csrf) return state.csrf;
  for (const part of document.cookie.split(';')) {
    const [name, ...rest] = part.trim().split('=');
    if (name === CSRF_COOKIE) {
      state.csrf = decodeURIComponent(rest.join('='));
      return state.csrf;
    }
  }
  return '';
}

async function problemOf(res) {
  try {
    const body = await res.json();
    if (body && typeof body === 'object') return body;
  } catch {
    // not JSON
  }
  return { status: res.status, title: res.statusText || `HTTP ${res.status}` };
}

async function rawFetch(method, path, body, extra = {}) {
  const headers = { 'X-Activity-ID': crypto.randomUUID(), Accept: 'application/json', ...extra };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (method !== 'GET') {
    const t = csrfToken();
    if (t) headers['X-CSRF-Token'] = t;
  }
  return fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: 'same-origin',
    cache: 'no-store',
  });
}

let refreshing = null;

/** One refresh at a time; true when the session's token was renewed. */
function refreshSession() {
  if (!refreshing) {
    refreshing = rawFetch('POST', '/api/v2/auth/refresh', {}, { 'X-Tenant-ID': OPERATORS_TENANT })
      .then(async (res) => {
        if (!res.ok) return false;
        const body = await res.json().catch(() => ({}));
        if (body && body.csrfToken) state.csrf = body.csrfToken;
        return true;
      })
      .catch(() => false)
      .finally(() => { refreshing = null; });
  }
  return refreshing;
}

/** An admin API call: JSON in and out, problem+json errors thrown as ApiError. An expired
 *  session token is refreshed once and the call repeated; a session that is gone sends the
 *  operator back to the sign-in page. */
async function api(method, path, body) {
  let res = await rawFetch(method, `/admin/v1${path}`, body);
  if (res.status === 401) {
    const problem = await problemOf(res);
    if (problem.code === 'token_expired' && await refreshSession()) {
      res = await rawFetch(method, `/admin/v1${path}`, body);
    } else {
      signedOut();
      throw new SignedOut(problem.detail || 'signed out');
    }
    if (res.status === 401) {
      signedOut();
      throw new SignedOut('signed out');
    }
  }
  if (!res.ok) throw new ApiError(res.status, await problemOf(res));
  if (res.status === 204) return null;
  const text = await res.text();
  return text ? JSON.parse(text) : null;
}

function qs(params) {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== '') p.set(k, String(v));
  }
  const str = p.toString();
  return str ? `?${str}` : '';
}

const enc = encodeURIComponent;

// ---------------------------------------------------------------- session lifecycle

function signedOut(message) {
  state.me = null;
  state.csrf = null;
  state.tenants = [];
  renderChrome();
  if (message) say(message, 'info');
  if (!location.hash.startsWith('#/signin')) {
    if (message) state.flash = { text: message, kind: 'info' };
    location.hash = '#/signin';
  }
}

async function loadMe(retried = false) {
  const res = await rawFetch('GET', '/admin/v1/me');
  if (res.status === 401) {
    const problem = await problemOf(res);
    if (!retried && problem.code === 'token_expired' && await refreshSession()) return loadMe(true);
    return null;
  }
  if (!res.ok) throw new ApiError(res.status, await problemOf(res));
  return res.json();
}

async function loadTenants() {
  const all = [];
  let cursor = null;
  for (let i = 0; i < 20; i += 1) {
    const page = await api('GET', `/tenants${qs({ cursor, limit: 1000 })}`);
    all.push(...(page.tenants || []));
    cursor = page.nextCursor;
    if (!cursor) break;
  }
  state.tenants = all;
}

async function signIn(username, password) {
  const res = await rawFetch('POST', '/api/v2/auth/login', { username, password, mode: 'cookie' },
    { 'X-Tenant-ID': OPERATORS_TENANT });
  if (!res.ok) {
    const problem = await problemOf(res);
    if (res.status === 429) {
      const after = res.headers.get('Retry-After');
      problem.detail = `${problem.detail || 'Too many attempts.'}${after ? ` Try again in ${after} s.` : ''}`;
    }
    throw new ApiError(res.status, problem);
  }
  const body = await res.json();
  state.csrf = body.csrfToken || null;
  state.me = await loadMe();
  if (!state.me) throw new ApiError(401, { detail: 'Signed in, but the console could not read who you are.' });
  await loadTenants();
}

async function signOut() {
  try {
    await rawFetch('POST', '/api/v2/auth/logout', {}, { 'X-Tenant-ID': OPERATORS_TENANT });
  } catch {
    // the cookies are cleared by the server; locally we forget either way
  }
  signedOut('Signed out.');
}

// ---------------------------------------------------------------- chrome: header and nav

/** The tenant in view: the route's, else the first one that is not the operators' own. */
function currentTenant() {
  if (state.tenant) return state.tenant;
  const first = state.tenants.find((t) => t.id !== OPERATORS_TENANT) || state.tenants[0];
  return first ? first.id : null;
}

function renderChrome(route) {
  const bar = $('session-bar');
  const nav = $('nav');
  clear(bar);
  clear(nav);
  if (!state.me) {
    bar.hidden = true;
    nav.hidden = true;
    return;
  }
  bar.hidden = false;
  nav.hidden = false;
  const tenant = currentTenant();
  const options = state.tenants.map((t) => [t.id, t.name && t.name !== t.id ? `${t.name} (${t.id})` : t.id]);
  if (tenant && !options.some(([id]) => id === tenant)) options.unshift([tenant, tenant]);
  const picker = select('tenant', options, tenant);
  picker.id = 'tenant-picker';
  picker.addEventListener('change', () => {
    const page = route && route.tenant ? route.page : 'overview';
    location.hash = `#/t/${enc(picker.value)}/${page === 'user' ? 'users' : page}`;
  });
  bar.append(
    h('div', { class: 'field-inline' }, h('label', { for: 'tenant-picker' }, 'Tenant '), picker),
    h('span', { class: 'who', id: 'who' }, 'Signed in as ', h('strong', null, state.me.username || state.me.actor), ' ',
      h('span', { class: 'role-badge', id: 'role' }, state.me.role)),
    h('button', { type: 'button', class: 'secondary', id: 'sign-out', onclick: () => signOut() }, 'Sign out'),
  );
  const page = route ? route.page : '';
  const link = (href, label, key) => h('a', { href, 'aria-current': page === key ? 'page' : null }, label);
  const t = tenant ? enc(tenant) : null;
  append(nav, [
    t ? link(`#/t/${t}/overview`, 'Overview', 'overview') : null,
    t ? link(`#/t/${t}/users`, 'Users', 'users') : null,
    t ? link(`#/t/${t}/activity`, 'Activity', 'activity') : null,
    t ? link(`#/t/${t}/secrets`, 'Secrets & clients', 'secrets') : null,
    link('#/keys', 'Keys', 'keys'),
    can('admin') ? link('#/operators', 'Operators', 'operators') : null,
  ]);
}

// ---------------------------------------------------------------- routing

function parseRoute() {
  const raw = location.hash.replace(/^#/, '') || '/';
  const [pathPart, query = ''] = raw.split('?');
  const parts = pathPart.split('/').filter(Boolean).map((p) => decodeURIComponent(p));
  const params = Object.fromEntries(new URLSearchParams(query));
  if (parts[0] === 'signin') return { page: 'signin', params };
  if (parts[0] === 'keys') return { page: 'keys', params };
  if (parts[0] === 'operators') return { page: 'operators', params };
  if (parts[0] === 't' && parts[1]) {
    const tenant = parts[1];
    if (parts[2] === 'users' && parts[3]) return { page: 'user', tenant, userId: parts[3], params };
    if (['overview', 'users', 'activity', 'secrets'].includes(parts[2])) return { page: parts[2], tenant, params };
    return { page: 'overview', tenant, params };
  }
  return { page: 'home', params };
}

/** A fresh page: the main region emptied, a heading focused (announced), the chrome updated. */
function page(route, title) {
  const main = $('main');
  clear(main);
  document.title = `${title} — sessiond console`;
  const heading = h('h2', { tabindex: '-1', id: 'page-title' }, title);
  main.append(heading);
  return { main, heading };
}

async function render() {
  const seq = ++state.renderSeq;
  const route = parseRoute();
  clearStatus();
  if (state.flash) {
    say(state.flash.text, state.flash.kind);
    state.flash = null;
  }
  if (route.page !== 'signin' && !state.me) {
    try {
      state.me = await loadMe();
      if (state.me) await loadTenants();
    } catch (err) {
      showError(err);
    }
    if (seq !== state.renderSeq) return;
    if (!state.me) {
      location.hash = '#/signin';
      return;
    }
  }
  if (route.tenant) state.tenant = route.tenant;
  if (route.page === 'home' || (route.page === 'signin' && state.me)) {
    const t = currentTenant();
    location.hash = t ? `#/t/${enc(t)}/overview` : '#/keys';
    return;
  }
  renderChrome(route);
  const pages = {
    signin: signinPage,
    overview: overviewPage,
    users: usersPage,
    user: userPage,
    activity: activityPage,
    secrets: secretsPage,
    keys: keysPage,
    operators: operatorsPage,
  };
  try {
    await pages[route.page](route, () => seq === state.renderSeq);
  } catch (err) {
    if (seq === state.renderSeq) showError(err);
  }
}

function focusHeading() {
  const heading = $('page-title');
  if (heading && document.activeElement === document.body) heading.focus();
}

/** Runs an action from a button: disables it meanwhile, shows errors (a 403 included). */
async function act(button, fn) {
  if (button) button.disabled = true;
  try {
    await fn();
  } catch (err) {
    showError(err);
  } finally {
    if (button && button.isConnected) button.disabled = false;
  }
}

/** A modal confirmation (<dialog>), resolving true when confirmed. */
function confirmAction(text, okLabel = 'Confirm') {
  const dialog = $('confirm');
  $('confirm-text').textContent = text;
  $('confirm-ok').textContent = okLabel;
  dialog.returnValue = '';
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => resolve(dialog.returnValue === 'ok'), { once: true });
    dialog.showModal();
  });
}

// ---------------------------------------------------------------- sign-in

function signinPage(route) {
  const { main } = page(route, 'Sign in');
  const user = h('input', { name: 'username', autocomplete: 'username', required: true, id: 'signin-username' });
  const pass = h('input', { name: 'password', type: 'password', autocomplete: 'current-password', required: true, id: 'signin-password' });
  const submit = h('button', { type: 'submit' }, 'Sign in');
  const form = h('form', { class: 'form signin', novalidate: true },
    field('Username', user), field('Password', pass), h('div', { class: 'actions' }, submit));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    if (!user.value || !pass.value) {
      say('Enter your username and password.', 'error');
      return;
    }
    act(submit, async () => {
      await signIn(user.value, pass.value);
      pass.value = '';
      const t = currentTenant();
      location.hash = t ? `#/t/${enc(t)}/users` : '#/keys';
    });
  });
  main.append(h('p', null, 'Operators sign in with their console account.'), form);
  user.focus();
}

// ---------------------------------------------------------------- overview: profile and policy

function policyInput(key, value, def) {
  const sample = value ?? def;
  let input;
  if (CHOICE_FIELDS[key]) {
    const choices = CHOICE_FIELDS[key];
    const options = value === null || value === undefined || choices.includes(value) ? choices : [value, ...choices];
    input = h('select', { name: key },
      value === null || value === undefined ? h('option', { value: '', selected: true }, 'none') : null,
      options.map((v) => h('option', { value: v, selected: v === value }, v)));
    input.dataset.kind = 'string';
  } else if (typeof sample === 'boolean') {
    input = h('select', { name: key }, h('option', { value: 'true', selected: value === true }, 'yes'),
      h('option', { value: 'false', selected: value === false }, 'no'));
    input.dataset.kind = 'boolean';
  } else if (typeof sample === 'number') {
    input = h('input', { name: key, type: 'number', inputmode: 'numeric', value: value ?? '' });
    input.dataset.kind = 'number';
  } else if (Array.isArray(sample)) {
    // a textarea wraps a long list instead of cutting it off
    const text = (value || []).join(', ');
    input = h('textarea', { name: key, rows: Math.max(1, Math.min(6, Math.ceil(text.length / 40))), spellcheck: 'false' });
    input.value = text;
    input.dataset.kind = 'list';
  } else {
    input = h('input', { name: key, value: value ?? '' });
    input.dataset.kind = 'string';
  }
  input.id = uid(`policy-${key}`);
  input.dataset.original = JSON.stringify(value ?? null);
  return input;
}

function readPolicyInput(input) {
  const v = input.value.trim();
  switch (input.dataset.kind) {
    case 'boolean': return v === 'true';
    case 'number': return v === '' ? null : Number(v);
    case 'list': return v === '' ? [] : v.split(/[,\n]/).map((x) => x.trim()).filter(Boolean);
    default: // a field whose value and default are both unset: a number if it reads as one
      if (v === '') return null;
      return /^\d+$/.test(v) ? Number(v) : v;
  }
}

function show(value, key) {
  if (value === null || value === undefined) return h('span', { class: 'muted' }, 'none');
  if (Array.isArray(value)) return value.join(', ') || '—';
  if (typeof value === 'boolean') return value ? 'yes' : 'no';
  if (SECONDS_FIELDS.has(key) && typeof value === 'number') return h('span', { class: 'nowrap' }, `${value} s`);
  return String(value);
}

async function overviewPage(route, live) {
  const { main } = page(route, 'Overview');
  const tenant = await api('GET', `/tenants/${enc(route.tenant)}`);
  if (!live()) return;
  main.append(
    h('dl', { class: 'facts' },
      h('dt', null, 'Tenant'), h('dd', null, h('code', null, tenant.id)),
      h('dt', null, 'Name'), h('dd', null, tenant.name || '—'),
      h('dt', null, 'Profile'), h('dd', null, tenant.profile),
      h('dt', null, 'Created'), h('dd', null, time(tenant.createdAt))),
  );
  const policy = tenant.policy || {};
  const defaults = tenant.defaults || {};
  const overrides = tenant.overrides || {};
  const keys = [...new Set([...Object.keys(defaults), ...Object.keys(policy)])];
  const editable = can('admin');
  const inputs = [];
  const rows = keys.map((key) => {
    const overridden = Object.prototype.hasOwnProperty.call(overrides, key);
    let effective;
    if (editable) {
      const input = policyInput(key, policy[key], defaults[key]);
      inputs.push(input);
      const seconds = SECONDS_FIELDS.has(key);
      effective = h('td', null, h('label', { for: input.id, class: 'sr-only' }, seconds ? `${key} value in seconds` : `${key} value`),
        seconds ? h('span', { class: 'with-unit' }, input, h('span', { class: 'unit', 'aria-hidden': 'true' }, 's')) : input);
    } else {
      effective = show(policy[key], key);
    }
    const cells = [h('code', null, key), effective, show(defaults[key], key), overridden ? 'yes' : 'no'];
    if (editable) {
      cells.push(overridden
        ? h('button', {
          type: 'button',
          class: 'secondary',
          'aria-label': `Restore the default of ${key}`,
          onclick: (e) => act(e.currentTarget, async () => {
            await api('PATCH', `/tenants/${enc(route.tenant)}/policy`, { [key]: null });
            await render();
            say(`${key} restored to the profile default.`);
          }),
        }, 'Use default')
        : '');
    }
    return { row: h('tr', { class: overridden ? 'overridden' : null }), cells };
  });
  const headers = ['Field', 'Effective value', 'Profile default', 'Overridden?'];
  if (editable) headers.push('Action');
  main.append(h('h3', null, 'Policy'));
  const tableEl = table(`Policy of ${tenant.id} (${tenant.profile} profile)`, headers, rows);
  if (editable) {
    const save = h('button', { type: 'submit' }, 'Save policy');
    const form = h('form', { class: 'policy-form' }, tableEl, h('div', { class: 'actions' }, save));
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      const patch = {};
      for (const input of inputs) {
        const value = readPolicyInput(input);
        if (input.dataset.kind === 'number' && value !== null && Number.isNaN(value)) {
          say(`${input.name} must be a number.`, 'error');
          return;
        }
        if (JSON.stringify(value) !== input.dataset.original) patch[input.name] = value;
      }
      if (Object.keys(patch).length === 0) {
        say('Nothing changed.');
        return;
      }
      act(save, async () => {
        await api('PATCH', `/tenants/${enc(route.tenant)}/policy`, patch);
        await render();
        say(`Policy saved (${Object.keys(patch).join(', ')}).`);
      });
    });
    main.append(form);
  } else {
    main.append(tableEl, h('p', { class: 'muted' }, 'Only admins change a tenant\u2019s policy.'));
  }
  if (editable) main.append(createTenantForm());
  focusHeading();
}

function createTenantForm() {
  const id = h('input', { name: 'id', required: true });
  const name = h('input', { name: 'name' });
  const profile = select('profile', [['playground', 'playground'], ['integration', 'integration'], ['production', 'production']], 'integration');
  const submit = h('button', { type: 'submit' }, 'Create tenant');
  const form = h('form', { class: 'form' }, field('Tenant id', id), field('Name', name), field('Profile', profile), submit);
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    act(submit, async () => {
      const body = { id: id.value.trim(), profile: profile.value };
      if (name.value.trim()) body.name = name.value.trim();
      const t = await api('POST', '/tenants', body);
      await loadTenants();
      location.hash = `#/t/${enc(t.id)}/overview`;
      say(`Tenant ${t.id} created.`);
    });
  });
  return h('section', { 'aria-labelledby': 'new-tenant' }, h('h3', { id: 'new-tenant' }, 'New tenant'), form);
}

// ---------------------------------------------------------------- users

async function usersPage(route, live) {
  const { main } = page(route, 'Users');
  const us = state.users;
  if (us.tenant !== route.tenant) {
    state.users = { tenant: route.tenant, search: '', cursors: [null], index: 0 };
  }
  const st = state.users;
  const search = h('input', { type: 'search', name: 'search', id: 'user-search', value: st.search, placeholder: 'username or id' });
  const go = h('button', { type: 'submit' }, 'Search');
  const form = h('form', { class: 'form', role: 'search' }, field('Search users', search), go);
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    state.users = { tenant: route.tenant, search: search.value.trim(), cursors: [null], index: 0, announce: true };
    render();
  });
  main.append(form);
  if (can('operator')) main.append(createUserForm(route.tenant));
  const cursor = st.cursors[st.index];
  const list = await api('GET', `/tenants/${enc(route.tenant)}/users${qs({ search: st.search, cursor, limit: PAGE_SIZE })}`);
  if (!live()) return;
  const users = list.users || [];
  for (const u of users) state.userCache.set(u.userId, u);
  if (st.announce) {
    // the count of a search, read out by the status live region
    st.announce = false;
    const n = `${users.length}${list.nextCursor ? '+' : ''}`;
    say(`${n} ${users.length === 1 && !list.nextCursor ? 'user' : 'users'} found${st.search ? ` for \u201c${st.search}\u201d` : ''}.`);
  }
  const rows = users.map((u) => [
    h('a', { href: `#/t/${enc(route.tenant)}/users/${enc(u.userId)}`, class: 'user-link' }, u.username || u.externalId || u.userId),
    u.externalId || '—',
    h('code', null, u.userId),
    stateBadge(u.status),
    time(u.createdAt),
  ]);
  main.append(table(st.search ? `Users matching \u201c${st.search}\u201d` : 'Users', ['User', 'External id', 'User id', 'Status', 'Created'], rows,
    { empty: st.search ? 'No user matches.' : 'No users yet.' }));
  const prev = h('button', { type: 'button', class: 'secondary', disabled: st.index === 0 }, 'Previous');
  const next = h('button', { type: 'button', class: 'secondary', disabled: !list.nextCursor }, 'Next');
  prev.addEventListener('click', () => {
    st.index = Math.max(0, st.index - 1);
    render();
  });
  next.addEventListener('click', () => {
    st.cursors = st.cursors.slice(0, st.index + 1);
    st.cursors.push(list.nextCursor);
    st.index += 1;
    render();
  });
  main.append(h('nav', { class: 'pager', 'aria-label': 'Pages of users' }, prev, h('span', null, `Page ${st.index + 1}`), next));
  focusHeading();
}

function createUserForm(tenant) {
  const username = h('input', { name: 'username', autocomplete: 'off', required: true });
  const password = h('input', { name: 'password', type: 'password', autocomplete: 'new-password', required: true });
  const submit = h('button', { type: 'submit' }, 'Create user');
  const form = h('form', { class: 'form' }, field('New user\u2019s username', username), field('Password', password), submit);
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    act(submit, async () => {
      const u = await api('POST', `/tenants/${enc(tenant)}/users`, { username: username.value.trim(), password: password.value });
      password.value = '';
      state.userCache.set(u.userId, u);
      location.hash = `#/t/${enc(tenant)}/users/${enc(u.userId)}`;
      say(`User ${u.username || u.userId} created.`);
    });
  });
  return h('details', { class: 'create' }, h('summary', null, 'Create a user'), form);
}

function deviceOf(session) {
  const d = session.device || {};
  return d.label || d.userAgent || h('span', { class: 'muted' }, 'unknown');
}

function expiresOf(session) {
  const times = [session.idleExpiresAt, session.absoluteExpiresAt].filter((x) => typeof x === 'number');
  return times.length ? Math.min(...times) : null;
}

/** The Expires cell: when an active session expires; when an expired one did (the end
 *  state's time); a dash for a revoked one (the listing has no revocation time). */
function endOf(session) {
  if (session.state === 'active') return time(expiresOf(session));
  if (session.state === 'expired' && expiresOf(session) !== null) {
    return h('span', { class: 'muted' }, 'ended ', time(expiresOf(session)));
  }
  return h('span', { class: 'muted' }, '—');
}

/** The user with this id, or null when there is none. */
async function lookupUser(tenant, userId) {
  try {
    return await api('GET', `/tenants/${enc(tenant)}/users/${enc(userId)}`);
  } catch (e) {
    if (e && e.status === 404) return null;
    throw e;
  }
}

const nameOf = (u) => u.username || u.externalId || u.userId;

async function userPage(route, live) {
  // The heading names the user once a lookup says who they are: from the list just seen
  // (cached) at once, else the user id until the lookup answers. The lookup always runs, so
  // a stale cache (a user disabled elsewhere) is corrected too.
  let known = state.userCache.get(route.userId) || null;
  let who = known ? nameOf(known) : route.userId;
  const { main, heading } = page(route, `Sessions of ${who}`);
  const t = enc(route.tenant);
  const statusSlot = h('span', { id: 'user-status' },
    known ? stateBadge(known.status) : h('span', { class: 'muted' }, 'status: looking up\u2026'));
  main.append(h('p', null, h('a', { href: `#/t/${t}/users` }, '\u2190 All users'), ' · user id ',
    h('code', null, route.userId), ' · ', statusSlot, ' · ',
    h('a', { href: `#/t/${t}/activity?userId=${enc(route.userId)}` }, 'Activity of this user')));
  const list = await api('GET', `/tenants/${t}/sessions${qs({ userId: route.userId, limit: 200 })}`);
  if (!live()) return;
  const sessions = list.sessions || [];
  const lookup = lookupUser(route.tenant, route.userId).then((user) => {
    if (!live()) return;
    clear(statusSlot);
    if (user) {
      state.userCache.set(user.userId, user);
      known = user;
      who = nameOf(user);
      heading.textContent = `Sessions of ${who}`;
      document.title = `${heading.textContent} \u2014 sessiond console`;
      heading.dataset.user = 'found';
      statusSlot.append(stateBadge(user.status));
    } else {
      heading.dataset.user = user === null ? 'missing' : 'unknown';
      statusSlot.append(h('span', { class: 'muted' }, user === null ? 'no such user in this tenant' : 'status unknown'));
    }
  }, (err) => {
    if (!live() || err instanceof SignedOut) return;
    clear(statusSlot);
    statusSlot.append(h('span', { class: 'muted' }, `status unknown (${err && err.message ? err.message : 'lookup failed'})`));
  });
  const operator = can('operator');
  if (operator) {
    const revokeAll = h('button', { type: 'button', class: 'danger', id: 'revoke-all' }, 'Revoke all sessions');
    revokeAll.addEventListener('click', async () => {
      if (!await confirmAction(`Revoke every session of ${who}? They are signed out on all devices.`, 'Revoke all')) return;
      act(revokeAll, async () => {
        const r = await api('DELETE', `/tenants/${t}/users/${enc(route.userId)}/sessions`);
        await render();
        say(`Revoked ${r && typeof r.revoked === 'number' ? r.revoked : 'all'} session(s) of ${who}.`);
      });
    });
    const disable = h('button', { type: 'button', class: 'danger', id: 'disable-user' }, 'Disable user');
    disable.addEventListener('click', async () => {
      if (!await confirmAction(`Disable ${who}? They cannot sign in again and all their sessions end.`, 'Disable')) return;
      act(disable, async () => {
        await api('POST', `/tenants/${t}/users/${enc(route.userId)}/disable`);
        if (known) known.status = 'disabled';
        await render();
        say(`${who} disabled; their sessions were revoked.`);
      });
    });
    main.append(h('div', { class: 'actions' }, revokeAll, disable));
  }
  const rows = sessions.map((sess) => {
    const stateCell = h('td', { class: 'nowrap' }, stateBadge(sess.state), sess.revokedReason ? ` (${sess.revokedReason})` : '');
    const cells = [
      deviceOf(sess),
      h('td', { class: 'nowrap' }, (sess.device && sess.device.ip) || '—'),
      h('td', { class: 'nowrap' }, time(sess.createdAt)),
      h('td', { class: 'nowrap' }, time(sess.lastSeenAt)),
      h('td', { class: 'nowrap expires' }, endOf(sess)),
      stateCell,
      h('a', { href: `#/t/${t}/activity?sessionId=${enc(sess.sessionId)}`, class: 'session-link' }, h('code', null, sess.sessionId)),
    ];
    if (operator) {
      cells.push(sess.state === 'active'
        ? h('button', {
          type: 'button',
          'aria-label': `Revoke session ${sess.sessionId}`,
          class: 'danger nowrap',
          dataset: { session: sess.sessionId },
          onclick: (e) => {
            const b = e.currentTarget;
            const device = deviceOf(sess);
            confirmAction(`Revoke the session on ${typeof device === 'string' ? device : 'an unknown device'}? That device is signed out.`, 'Revoke').then((ok) => {
              if (!ok) return;
              act(b, async () => {
                await api('DELETE', `/tenants/${t}/sessions/${enc(sess.sessionId)}`);
                await render();
                say('Session revoked.');
              });
            });
          },
        }, 'Revoke')
        : '');
    }
    return { row: h('tr', { dataset: { session: sess.sessionId, state: sess.state } }), cells };
  });
  const headers = ['Device', 'Address', 'Created', 'Last seen', 'Expires', 'State', 'Session'];
  if (operator) headers.push('Action');
  main.append(table('Sessions', headers, rows, { empty: 'This user has no sessions.' }));
  focusHeading();
  await lookup;
}

// ---------------------------------------------------------------- activity: chart, timeline, alerts

async function activityPage(route, live) {
  const { main } = page(route, 'Activity');
  const t = enc(route.tenant);
  const p = route.params;
  const range = RANGES[p.range] ? p.range : DEFAULT_RANGE;
  const f = {
    userId: h('input', { name: 'userId', value: p.userId || '', autocomplete: 'off', class: 'mono' }),
    sessionId: h('input', { name: 'sessionId', value: p.sessionId || '', autocomplete: 'off', class: 'mono' }),
    activityId: h('input', { name: 'activityId', value: p.activityId || '', autocomplete: 'off', class: 'mono' }),
    type: select('type', [['', 'any type'], ...EVENT_TYPES.map((x) => [x, x])], p.type || ''),
    range: select('range', Object.entries(RANGES).map(([k, v]) => [k, v.label]), range),
  };
  f.userId.id = 'filter-user';
  f.sessionId.id = 'filter-session';
  f.activityId.id = 'filter-activity';
  f.type.id = 'filter-type';
  f.range.id = 'filter-range';
  const apply = h('button', { type: 'submit' }, 'Apply filters');
  const reset = h('a', { href: `#/t/${t}/activity`, class: 'reset' }, 'Clear filters');
  const form = h('form', { class: 'form', 'aria-label': 'Activity filters' },
    field('User id', f.userId), field('Session id', f.sessionId), field('Activity id', f.activityId),
    field('Type', f.type), field('Time range', f.range), apply, reset);
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const params = {};
    for (const [k, el] of Object.entries(f)) if (el.value.trim()) params[k] = el.value.trim();
    const next = `#/t/${t}/activity${qs(params)}`;
    if (location.hash === next) render();
    else location.hash = next;
  });
  main.append(form);

  const now = Math.floor(Date.now() / 1000);
  const r = RANGES[range];
  // whole buckets, the last one being the current (until is exclusive)
  const until = (Math.floor(now / r.bucket) + 1) * r.bucket;
  const since = until - r.seconds;
  const filters = { userId: p.userId, sessionId: p.sessionId, activityId: p.activityId, type: p.type };
  const filtered = Object.values(filters).some(Boolean);
  // Following one activity or session: its whole story (not cut at the range), oldest first.
  const follow = p.activityId ? 'activity' : (p.sessionId ? 'session' : null);

  const chartPanel = h('section', { class: 'panel', 'aria-labelledby': 'chart-title' }, h('h3', { id: 'chart-title' }, `Events over time (${r.label.toLowerCase()})`));
  const refresh = h('button', { type: 'button', class: 'secondary', id: 'refresh-activity', onclick: () => render() }, 'Refresh');
  chartPanel.append(h('div', { class: 'actions' }, refresh));
  let timelineTitle = filtered ? 'Timeline (filtered)' : 'Timeline';
  if (follow) timelineTitle = `Timeline of this ${follow}, oldest first`;
  const timelinePanel = h('section', { class: 'panel timeline-panel', 'aria-labelledby': 'timeline-title' },
    h('h3', { id: 'timeline-title' }, timelineTitle));
  if (follow) {
    timelinePanel.append(h('p', { class: 'muted', id: 'timeline-order' },
      `Oldest first (login \u2192 refreshes \u2192 logout): every event of this ${follow}, whatever the time range.`));
  }
  const alertsPanel = h('section', { class: 'panel alerts-panel', 'aria-labelledby': 'alerts-title' }, h('h3', { id: 'alerts-title' }, 'Alerts'));
  // alerts first in the page's order (first on a phone), beside the timeline when there is room
  main.append(chartPanel, h('div', { class: 'panels' }, alertsPanel, timelinePanel));

  const [counts, events, alerts] = await Promise.allSettled([
    api('GET', `/tenants/${t}/audit/counts${qs({ since, until, bucket: r.bucket })}`),
    follow ? followed(t, filters) : api('GET', `/tenants/${t}/audit${qs({ ...filters, since, limit: 100 })}`),
    api('GET', `/tenants/${t}/audit${qs({ type: 'suspicious_activity', since, limit: 20 })}`),
  ]);
  if (!live()) return;
  if (counts.status === 'fulfilled') chartPanel.append(chart(counts.value, r));
  else chartPanel.append(failure(counts.reason));
  if (events.status === 'fulfilled') renderTimeline(timelinePanel, route, events.value, { ...filters, since });
  else timelinePanel.append(failure(events.reason));
  if (alerts.status === 'fulfilled') renderAlerts(alertsPanel, route, alerts.value.events || []);
  else alertsPanel.append(failure(alerts.reason));
  const firstError = [counts, events, alerts].find((x) => x.status === 'rejected');
  if (firstError) showError(firstError.reason);
  focusHeading();
}

function failure(err) {
  if (err instanceof SignedOut) return document.createTextNode('');
  return h('p', { class: 'muted' }, `Not available: ${err && err.message ? err.message : String(err)}`);
}

/** An x axis label: the date alone at whole days, the date and time when the range spans
 *  days, else the time. */
function clock(at, bucket, step) {
  const d = new Date(at * 1000);
  if (step >= 86400) return d.toLocaleDateString(undefined, { month: 'short', day: 'numeric' });
  return bucket >= 3600
    ? d.toLocaleString(undefined, { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' })
    : d.toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit' });
}

/** Seconds since the Unix epoch in local time (so that 'a multiple of 10 minutes' or 'a whole
 *  day' means what the clock on the wall says). */
function localSeconds(at) {
  return at - new Date(at * 1000).getTimezoneOffset() * 60;
}

/** Indexes of the buckets to label: those starting at round local times, multiples of the
 *  first step (a multiple of the bucket) that leaves at most `most` labels. The buckets are
 *  aligned in UTC: where the time zone's offset is not a multiple of the bucket (2-hour
 *  buckets at UTC+1), multiples of the step in UTC (still evenly spaced whole buckets);
 *  failing both, evenly spread. */
function xLabels(buckets, bucket, most) {
  for (const clockOf of [localSeconds, (at) => at]) {
    for (const step of LABEL_STEPS) {
      if (step <= bucket || step % bucket !== 0) continue;
      const at = [];
      buckets.forEach((b, i) => { if (clockOf(b.at) % step === 0) at.push(i); });
      if (at.length >= 2 && at.length <= most) return { step: clockOf === localSeconds ? step : bucket, at };
    }
  }
  const n = Math.min(most, buckets.length);
  const at = [];
  for (let j = 0; j < n; j += 1) at.push(n <= 1 ? 0 : Math.round((j * (buckets.length - 1)) / (n - 1)));
  return { step: bucket, at };
}

/** A y axis for counts: whole-number ticks, 0 to a round top in at most 5 steps of 1, 2 or
 *  5 times a power of ten (0 to 4 in steps of 1 for small counts). */
function yTicks(max) {
  if (!(max > 4)) return { step: 1, steps: 4, top: 4 };
  for (let p = 1; p < 1e15; p *= 10) {
    for (const f of [1, 2, 5]) {
      const step = f * p;
      const steps = Math.ceil(max / step);
      if (steps <= 5) return { step, steps, top: step * steps };
    }
  }
  return { step: max, steps: 1, top: max };
}

/** A line chart of the counts, one series per kind, with a <title> per point for hover and
 *  the latest bucket's values as data attributes (data-latest-failures, ...). */
function chart(data, range) {
  const buckets = data.buckets || [];
  const bucket = data.bucket || range.bucket;
  // drawn at the width it is shown at, so its text stays legible on a phone
  const room = ($('main').clientWidth || 1000) - 60;
  const W = Math.round(Math.max(300, Math.min(1000, room)));
  const H = W < 600 ? 240 : 270;
  const m = { top: 16, right: 16, bottom: 48, left: 56 };
  const iw = W - m.left - m.right;
  const ih = H - m.top - m.bottom;
  const max = Math.max(1, ...buckets.flatMap((b) => SERIES.map(([k]) => b[k] || 0)));
  const yAxis = yTicks(max);
  const niceMax = yAxis.top;
  const x = (i) => m.left + (buckets.length <= 1 ? iw / 2 : (i * iw) / (buckets.length - 1));
  const y = (v) => m.top + ih - (v / niceMax) * ih;
  const totals = Object.fromEntries(SERIES.map(([k]) => [k, buckets.reduce((a, b) => a + (b[k] || 0), 0)]));
  const latest = buckets[buckets.length - 1] || {};

  const svg = s('svg', {
    class: 'chart',
    id: 'activity-chart',
    viewBox: `0 0 ${W} ${H}`,
    role: 'img',
    'aria-labelledby': 'chart-svg-title chart-svg-desc',
    'data-bucket': bucket,
    'data-buckets': buckets.length,
    'data-latest-at': latest.at ?? '',
  });
  for (const [k] of SERIES) {
    svg.setAttribute(`data-latest-${k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`, String(latest[k] || 0));
    svg.setAttribute(`data-total-${k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`, String(totals[k]));
  }
  svg.append(
    s('title', { id: 'chart-svg-title' }, 'Audit events per bucket'),
    s('desc', { id: 'chart-svg-desc' },
      `${buckets.length} buckets of ${bucket} s. Totals: ${SERIES.map(([k, l]) => `${l} ${totals[k]}`).join(', ')}.`),
  );
  // grid and y axis ticks: counts, so whole numbers only
  for (let i = 0; i <= yAxis.steps; i += 1) {
    const v = yAxis.step * i;
    svg.append(
      s('line', { class: 'grid', x1: m.left, x2: m.left + iw, y1: y(v), y2: y(v) }),
      s('text', { class: 'y-tick', x: m.left - 6, y: y(v) + 4, 'text-anchor': 'end', 'data-value': v }, String(v)),
    );
  }
  svg.append(
    s('line', { class: 'axis', x1: m.left, x2: m.left, y1: m.top, y2: m.top + ih }),
    s('line', { class: 'axis', x1: m.left, x2: m.left + iw, y1: m.top + ih, y2: m.top + ih }),
    s('text', { class: 'axis-title', x: 14, y: m.top + ih / 2, transform: `rotate(-90 14 ${m.top + ih / 2})`, 'text-anchor': 'middle' }, 'Events per bucket'),
    s('text', { class: 'axis-title', x: m.left + iw / 2, y: H - 6, 'text-anchor': 'middle' }, `Time (local, ${bucket >= 3600 ? `${bucket / 3600} h` : `${bucket / 60} min`} buckets)`),
  );
  // x axis labels at round times (multiples of a step that is a multiple of the bucket)
  const labels = xLabels(buckets, bucket, W < 600 ? 4 : 8);
  const half = labels.step >= 86400 ? 24 : (bucket >= 3600 ? 50 : 28); // about half a label's width
  for (const i of labels.at) {
    let anchor = 'middle';
    if (x(i) + half > W - 2) anchor = 'end';
    else if (x(i) - half < 2) anchor = 'start';
    svg.append(
      s('line', { class: 'axis', x1: x(i), x2: x(i), y1: m.top + ih, y2: m.top + ih + 4 }),
      s('text', { class: 'x-tick', x: x(i), y: m.top + ih + 18, 'text-anchor': anchor, 'data-at': buckets[i].at },
        clock(buckets[i].at, bucket, labels.step)),
    );
  }
  // series
  for (const [k, label] of SERIES) {
    const g = s('g', { class: `s-${k}`, 'data-series': k });
    if (buckets.length > 1) {
      const d = buckets.map((b, i) => `${i === 0 ? 'M' : 'L'}${x(i).toFixed(1)},${y(b[k] || 0).toFixed(1)}`).join(' ');
      g.append(s('path', { class: `series s-${k}`, d }));
    }
    buckets.forEach((b, i) => {
      const v = b[k] || 0;
      g.append(s('circle', {
        cx: x(i).toFixed(1),
        cy: y(v).toFixed(1),
        r: v > 0 ? 3.5 : 2,
        class: `s-${k}`,
        'data-at': b.at,
        'data-value': v,
        'data-latest': i === buckets.length - 1 ? 'true' : null,
      }, s('title', null, `${new Date(b.at * 1000).toLocaleString()} — ${label.toLowerCase()}: ${v}`)));
    });
    svg.append(g);
  }
  const legend = h('ul', { class: 'legend', 'aria-label': 'Legend' },
    SERIES.map(([k, label]) => h('li', null, h('span', { class: `swatch s-${k}`, 'aria-hidden': 'true' }), `${label} (${totals[k]})`)));
  const details = h('details', null, h('summary', null, 'Chart data as a table'),
    table('Events per bucket', ['Bucket start', ...SERIES.map(([, l]) => l)],
      buckets.filter((b) => SERIES.some(([k]) => b[k])).map((b) => [time(b.at), ...SERIES.map(([k]) => String(b[k] || 0))]),
      { empty: 'No events in this range.', stack: false }));
  return h('div', null, h('div', { class: 'chart-wrap' }, svg), legend, details);
}

/** Every event of one activity or session (at most FOLLOW_PAGES pages), oldest first; the
 *  API lists newest first. `truncated` when older events were left out. */
async function followed(t, filters) {
  const events = [];
  let cursor = null;
  for (let i = 0; i < FOLLOW_PAGES; i += 1) {
    const page2 = await api('GET', `/tenants/${t}/audit${qs({ ...filters, cursor, limit: 1000 })}`);
    events.push(...(page2.events || []));
    cursor = page2.nextCursor;
    if (!cursor) break;
  }
  events.reverse();
  return { events, nextCursor: null, oldestFirst: true, truncated: Boolean(cursor) };
}

function renderTimeline(panel, route, first, query) {
  const t = enc(route.tenant);
  const list = h('ol', { class: 'timeline', id: 'timeline' });
  const groups = new Map();
  const addEvents = (events) => {
    for (const ev of events) {
      let g = groups.get(ev.activityId);
      if (!g) {
        const items = h('ol', { class: 'events' });
        const head = h('div', { class: 'group-head' }, 'Activity ',
          h('a', { href: `#/t/${t}/activity${qs({ activityId: ev.activityId, range: route.params.range })}`, class: 'activity-link' },
            h('code', null, ev.activityId)));
        const li = h('li', { dataset: { activity: ev.activityId } }, head, items);
        g = { li, items };
        groups.set(ev.activityId, g);
        list.append(li);
      }
      g.items.append(eventItem(ev, route));
    }
  };
  if (first.truncated) {
    panel.append(h('p', { class: 'muted' }, `Only the latest ${(first.events || []).length} events are shown.`));
  }
  addEvents(first.events || []);
  list.dataset.order = first.oldestFirst ? 'oldest-first' : 'newest-first';
  panel.append(list);
  if ((first.events || []).length === 0) panel.append(h('p', { class: 'muted', id: 'timeline-empty' }, 'No events match.'));
  let cursor = first.nextCursor;
  if (cursor) {
    const more = h('button', { type: 'button', class: 'secondary' }, 'Load older events');
    more.addEventListener('click', () => act(more, async () => {
      const page2 = await api('GET', `/tenants/${t}/audit${qs({ ...query, cursor, limit: 100 })}`);
      addEvents(page2.events || []);
      cursor = page2.nextCursor;
      if (!cursor) more.remove();
    }));
    panel.append(more);
  }
}

function eventItem(ev, route) {
  const t = enc(route.tenant);
  return h('li', { dataset: { type: ev.type, id: ev.id } },
    time(ev.at),
    h('span', { class: `ev-type${BAD_TYPES.has(ev.type) ? ' bad' : ''}` }, ev.type),
    ev.reason ? h('span', null, `reason: ${ev.reason}`) : null,
    ev.userId ? h('span', null, 'user ', h('a', { href: `#/t/${t}/users/${enc(ev.userId)}` }, h('code', null, ev.userId.slice(0, 8)))) : null,
    ev.sessionId ? h('span', null, 'session ', h('a', { href: `#/t/${t}/activity${qs({ sessionId: ev.sessionId, range: route.params.range })}`, class: 'session-link' }, h('code', null, ev.sessionId.slice(0, 12)))) : null,
    ev.ip ? h('span', null, ev.ip) : null,
    ev.actor ? h('span', null, `by ${ev.actor}`) : null);
}

function renderAlerts(panel, route, events) {
  if (events.length === 0) {
    panel.append(h('p', { class: 'muted' }, 'No suspicious activity in this range.'));
    return;
  }
  panel.append(h('ul', { class: 'alerts', id: 'alerts' }, events.map((ev) => h('li', null,
    time(ev.at), ' ', h('strong', null, ev.reason || 'suspicious activity'),
    ev.sessionId ? [' · ', h('a', { href: `#/t/${enc(route.tenant)}/activity${qs({ sessionId: ev.sessionId })}` }, 'follow session')] : null,
    ev.ip ? ` · ${ev.ip}` : null))));
}

// ---------------------------------------------------------------- secrets and clients

function shownOnce(container, label, value) {
  clear(container);
  const code = h('code', { id: 'once-value' }, value);
  const copy = h('button', { type: 'button', class: 'secondary' }, 'Copy');
  copy.addEventListener('click', async () => {
    try {
      await navigator.clipboard.writeText(value);
      say('Copied to the clipboard.');
    } catch {
      const range = document.createRange();
      range.selectNodeContents(code);
      const sel = window.getSelection();
      sel.removeAllRanges();
      sel.addRange(range);
      say('Copying is not allowed here: the value is selected, copy it with the keyboard.', 'error');
    }
  });
  const dismiss = h('button', { type: 'button', class: 'secondary', onclick: () => clear(container) }, 'Dismiss');
  container.append(h('div', { class: 'once', role: 'group', 'aria-labelledby': 'once-title' },
    h('h3', { id: 'once-title' }, label),
    h('p', null, 'Copy it now: it is shown only once and cannot be read again.'),
    code, h('div', { class: 'actions' }, copy, dismiss)));
  copy.focus();
}

async function secretsPage(route, live) {
  const { main } = page(route, 'Secrets & clients');
  const t = enc(route.tenant);
  const operator = can('operator');
  const onceBox = h('div', { id: 'shown-once' });
  main.append(onceBox);
  const [secrets, clients] = await Promise.allSettled([
    api('GET', `/tenants/${t}/partner-secrets`),
    api('GET', `/tenants/${t}/clients`),
  ]);
  if (!live()) return;

  main.append(h('h3', null, 'Partner secrets'));
  if (operator) {
    const create = h('button', { type: 'button', id: 'create-secret' }, 'Create partner secret');
    create.addEventListener('click', () => act(create, async () => {
      const r = await api('POST', `/tenants/${t}/partner-secrets`);
      await secretsPage(route, live);
      shownOnce($('shown-once'), `New partner secret ${r.secretId}`, r.secret);
    }));
    main.append(h('div', { class: 'actions' }, create));
  }
  if (secrets.status === 'fulfilled') {
    const rows = (secrets.value.secrets || []).map((x) => {
      const cells = [h('code', null, x.secretId), time(x.createdAt)];
      if (operator) {
        cells.push(h('button', {
          type: 'button',
          class: 'danger',
          'aria-label': `Revoke partner secret ${x.secretId}`,
          onclick: async (e) => {
            const b = e.currentTarget;
            if (!await confirmAction(`Revoke partner secret ${x.secretId}? Partner calls with it are refused at once.`, 'Revoke')) return;
            act(b, async () => {
              await api('DELETE', `/tenants/${t}/partner-secrets/${enc(x.secretId)}`);
              await render();
              say('Partner secret revoked.');
            });
          },
        }, 'Revoke'));
      }
      return cells;
    });
    const headers = ['Secret id', 'Created'];
    if (operator) headers.push('Action');
    main.append(table('Partner secrets', headers, rows, { empty: 'No partner secrets.' }));
  } else {
    main.append(failure(secrets.reason));
    showError(secrets.reason);
  }

  main.append(h('h3', null, 'Service clients'));
  if (operator) {
    const clientId = h('input', { name: 'clientId', autocomplete: 'off' });
    const audience = h('input', { name: 'audience', autocomplete: 'off' });
    const submit = h('button', { type: 'submit' }, 'Create client');
    const form = h('form', { class: 'form' }, field('Client id', clientId), field('Audience', audience), submit);
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      act(submit, async () => {
        const body = {};
        if (clientId.value.trim()) body.clientId = clientId.value.trim();
        if (audience.value.trim()) body.audience = audience.value.trim();
        const r = await api('POST', `/tenants/${t}/clients`, body);
        await secretsPage(route, live);
        shownOnce($('shown-once'), `Secret of client ${r.clientId}`, r.clientSecret);
      });
    });
    main.append(form);
  }
  if (clients.status === 'fulfilled') {
    const rows = (clients.value.clients || []).map((c) => [
      h('code', null, c.clientId), c.audience || '—', c.backchannelLogoutUri || '—', time(c.createdAt),
    ]);
    main.append(table('Service clients', ['Client id', 'Audience', 'Back-channel logout', 'Created'], rows, { empty: 'No service clients.' }));
  } else {
    main.append(failure(clients.reason));
    showError(clients.reason);
  }
  focusHeading();
}

// ---------------------------------------------------------------- keys

async function keysPage(route, live) {
  const { main } = page(route, 'Signing keys');
  const admin = can('admin');
  const data = await api('GET', '/keys');
  if (!live()) return;
  if (admin) {
    const rotate = h('button', { type: 'button', id: 'rotate-keys' }, 'Rotate keys');
    rotate.addEventListener('click', async () => {
      if (!await confirmAction('Rotate the signing keys? The next key starts signing; the current one retires.', 'Rotate')) return;
      act(rotate, async () => {
        await api('POST', '/keys/rotate');
        await render();
        say('Keys rotated.');
      });
    });
    main.append(h('div', { class: 'actions' }, rotate));
  }
  const rows = (data.keys || []).map((k) => {
    const cells = [h('code', null, k.kid), k.alg, h('span', { class: 'state' }, k.state), time(k.createdAt), time(k.retireAt)];
    if (admin) {
      cells.push(h('button', {
        type: 'button',
        class: 'danger',
        'aria-label': `Revoke key ${k.kid}`,
        onclick: async (e) => {
          const b = e.currentTarget;
          if (!await confirmAction(`Revoke key ${k.kid}? It leaves the JWKS and every token it signed is refused at once.`, 'Revoke key')) return;
          act(b, async () => {
            await api('POST', `/keys/${enc(k.kid)}/revoke`);
            await render();
            say(`Key ${k.kid} revoked.`);
          });
        },
      }, 'Revoke'));
    }
    return cells;
  });
  const headers = ['Key id', 'Algorithm', 'State', 'Created', 'Retire at'];
  if (admin) headers.push('Action');
  main.append(table('Keyring', headers, rows, { empty: 'No keys.' }));
  if (!admin) main.append(h('p', { class: 'muted' }, 'Only admins rotate or revoke keys.'));
  focusHeading();
}

// ---------------------------------------------------------------- operators

const ROLES = [['viewer', 'viewer'], ['operator', 'operator'], ['admin', 'admin']];

async function operatorsPage(route, live) {
  const { main } = page(route, 'Operators');
  if (!can('admin')) {
    main.append(h('p', null, 'Only admins manage operators.'));
    focusHeading();
    return;
  }
  const username = h('input', { name: 'username', autocomplete: 'off', required: true });
  const password = h('input', { name: 'password', type: 'password', autocomplete: 'new-password', required: true });
  const role = select('role', ROLES, 'viewer');
  const submit = h('button', { type: 'submit' }, 'Create operator');
  const form = h('form', { class: 'form' }, field('Username', username), field('Password', password), field('Role', role), submit);
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    act(submit, async () => {
      const op = await api('POST', '/operators', { username: username.value.trim(), password: password.value, role: role.value });
      password.value = '';
      await render();
      say(`Operator ${op.username} created (${op.role}).`);
    });
  });
  main.append(h('h3', null, 'New operator'), form);

  const all = [];
  let cursor = null;
  for (let i = 0; i < 20; i += 1) {
    const page2 = await api('GET', `/operators${qs({ cursor, limit: 1000 })}`);
    all.push(...(page2.operators || []));
    cursor = page2.nextCursor;
    if (!cursor) break;
  }
  if (!live()) return;
  const rows = all.map((op) => {
    const roleSel = select('role', ROLES, op.role);
    roleSel.id = uid('role');
    roleSel.setAttribute('aria-label', `Role of ${op.username}`);
    // Moving the select (one arrow key does) changes nothing: the button, once confirmed, does.
    const change = h('button', {
      type: 'button',
      class: 'secondary nowrap',
      'aria-label': `Change role for ${op.username}`,
      onclick: async (e) => {
        const b = e.currentTarget;
        const wanted = roleSel.value;
        if (wanted === op.role) {
          say(`${op.username} is already ${op.role}: choose another role first.`);
          return;
        }
        if (!await confirmAction(`Change the role of operator ${op.username} from ${op.role} to ${wanted}? It applies to their next request.`, 'Change role')) {
          roleSel.value = op.role;
          return;
        }
        act(b, async () => {
          try {
            const updated = await api('PUT', `/operators/${enc(op.userId)}/role`, { role: wanted });
            op.role = updated && updated.role ? updated.role : wanted;
            roleSel.value = op.role;
            say(`${op.username} is now ${op.role}.`);
          } catch (err) {
            roleSel.value = op.role;
            throw err;
          }
        });
      },
    }, 'Change role');
    const self = state.me && state.me.userId === op.userId;
    const disable = op.status === 'active' && !self
      ? h('button', {
        type: 'button',
        class: 'danger',
        'aria-label': `Disable operator ${op.username}`,
        onclick: async (e) => {
          const b = e.currentTarget;
          if (!await confirmAction(`Disable operator ${op.username}? Their console sessions end.`, 'Disable')) return;
          act(b, async () => {
            await api('POST', `/operators/${enc(op.userId)}/disable`);
            await render();
            say(`Operator ${op.username} disabled.`);
          });
        },
      }, 'Disable')
      : '';
    const roleCell = op.status === 'active' && !self ? h('span', { class: 'role-change' }, roleSel, change) : op.role;
    return [op.username, roleCell, stateBadge(op.status), time(op.createdAt), disable];
  });
  main.append(h('h3', null, 'All operators'), table('Operators', ['Username', 'Role', 'Status', 'Created', 'Action'], rows, { empty: 'No operators.' }));
  focusHeading();
}

// ---------------------------------------------------------------- start

document.addEventListener('click', (e) => {
  const skip = e.target.closest && e.target.closest('a.skip');
  if (skip) {
    e.preventDefault();
    $('main').focus();
  }
});
window.addEventListener('hashchange', () => { render(); });
render();
