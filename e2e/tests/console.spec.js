// The operator console in a real browser against a live sessiond (started by e2e/run.sh,
// which also creates the operators, the tenant and its users named by the E2E_* variables).
const { test, expect } = require('@playwright/test');
const { randomUUID } = require('node:crypto');
const path = require('node:path');
const fs = require('node:fs');

const env = (name, fallback) => {
  const v = process.env[name] || fallback;
  if (!v) throw new Error(`${name} is not set: run the tests with e2e/run.sh`);
  return v;
};
const TENANT = env('E2E_TENANT', 'acme');
const USER_PASSWORD = env('E2E_USER_PASSWORD');
const ADMIN = { username: env('E2E_ADMIN_USER', 'e2e-admin'), password: env('E2E_ADMIN_PASSWORD') };
const OPERATOR = { username: env('E2E_OPERATOR_USER', 'e2e-operator'), password: env('E2E_OPERATOR_PASSWORD') };
const VIEWER = { username: env('E2E_VIEWER_USER', 'e2e-viewer'), password: env('E2E_VIEWER_PASSWORD') };

const SHOTS = path.resolve(__dirname, '..', '..', 'docs', 'console');
fs.mkdirSync(SHOTS, { recursive: true });
const shot = (page, name) => page.screenshot({ path: path.join(SHOTS, name), fullPage: false });

// Every page must run under the server's CSP (Trusted Types, no inline code) without a
// violation or an uncaught error.
test.beforeEach(async ({ page }, testInfo) => {
  const problems = [];
  testInfo.problems = problems;
  page.on('pageerror', (e) => problems.push(`uncaught: ${e.message}`));
  page.on('console', (m) => {
    const text = m.text();
    if (/Content Security Policy|Trusted ?Type|TrustedHTML|TrustedScript|Refused to/i.test(text)) problems.push(`console: ${text}`);
  });
});

test.afterEach(async ({}, testInfo) => {
  expect(testInfo.problems, 'CSP violations or uncaught errors in the page').toEqual([]);
});

/** An end-user login through the API (not the console): the session and its token. */
async function apiLogin(request, username, { password = USER_PASSWORD, activityId = randomUUID(), expectStatus = 200, userAgent = `e2e-device/${username}` } = {}) {
  const res = await request.post('/api/v2/auth/login', {
    headers: { 'X-Tenant-ID': TENANT, 'X-Activity-ID': activityId, 'User-Agent': userAgent },
    data: { username, password },
  });
  expect(res.status(), await res.text()).toBe(expectStatus);
  return expectStatus === 200 ? { ...(await res.json()), activityId } : null;
}

/** The admin API as the signed-in operator of `page` (its cookies and CSRF token). */
function adminCall(page, method, apiPath, body) {
  return page.evaluate(async ({ m, p, b }) => {
    const csrf = (document.cookie.split('; ').find((c) => c.startsWith('__Host-sessiond-csrf=')) || '=').split('=')[1];
    const res = await fetch(`/admin/v1${p}`, {
      method: m,
      headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': csrf, 'X-Activity-ID': crypto.randomUUID() },
      body: b === undefined ? undefined : JSON.stringify(b),
    });
    return { status: res.status, body: await res.json().catch(() => null) };
  }, { m: method, p: apiPath, b: body });
}

/** Whether the text of each element fits on one line (no wrapped line boxes). */
function oneLine(locator) {
  return locator.evaluateAll((els) => els.map((el) => {
    const range = document.createRange();
    range.selectNodeContents(el);
    const tops = [...range.getClientRects()].filter((r) => r.width > 0 && r.height > 0).map((r) => r.top);
    return tops.length === 0 || Math.max(...tops) - Math.min(...tops) < 8;
  }));
}

function whoami(request, token) {
  return request.get('/api/v2/session', {
    headers: { Authorization: `Bearer ${token}`, 'X-Tenant-ID': TENANT, 'X-Activity-ID': randomUUID() },
  });
}

/** Elements reaching past the viewport's right edge outside any scrolling box. */
function overflowing(page) {
  return page.evaluate(() => {
    const scrolls = (el) => {
      for (let p = el.parentElement; p; p = p.parentElement) {
        if (['auto', 'scroll', 'hidden'].includes(getComputedStyle(p).overflowX)) return true;
      }
      return false;
    };
    return [...document.body.querySelectorAll('*')]
      .filter((el) => el.getClientRects().length && el.getBoundingClientRect().right > window.innerWidth + 1 && !scrolls(el))
      .map((el) => `${el.tagName.toLowerCase()}#${el.id}.${el.getAttribute('class') || ''}: ${(el.textContent || '').slice(0, 40)}`);
  });
}

async function signIn(page, who, { screenshot } = {}) {
  await page.goto('/console#/signin');
  await expect(page.getByRole('heading', { name: 'Sign in' })).toBeVisible();
  await page.getByLabel('Username').fill(who.username);
  await page.getByLabel('Password').fill(who.password);
  if (screenshot) await shot(page, screenshot);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await expect(page.locator('#who')).toContainText(who.username);
}

async function openUser(page, username) {
  await page.goto(`/console#/t/${TENANT}/users`);
  await expect(page.getByRole('heading', { name: 'Users', level: 2 })).toBeVisible();
  await page.getByLabel('Search users').fill(username.slice(0, 3));
  await page.getByRole('button', { name: 'Search', exact: true }).click();
  const link = page.getByRole('link', { name: username, exact: true });
  await expect(link).toBeVisible();
  return link;
}

const BROWSER_UA = 'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0';

test('an operator signs in, finds a user and revokes the session made through the API', async ({ page, request }) => {
  const login = await apiLogin(request, 'alice');
  expect((await whoami(request, login.userSessionToken)).status()).toBe(200);
  // a second session from a real browser's long user agent: the column that wraps is Device
  const browserLogin = await apiLogin(request, 'alice', { userAgent: BROWSER_UA });

  await signIn(page, OPERATOR, { screenshot: 'signin.png' });
  await expect(page.locator('#role')).toHaveText('operator');
  // the CSRF and session cookies are __Host- and Secure on http://127.0.0.1 (a secure context)
  const cookies = await page.context().cookies();
  const names = cookies.map((c) => c.name);
  expect(names).toEqual(expect.arrayContaining(['__Host-sessiond-session', '__Host-sessiond-csrf']));
  expect(cookies.find((c) => c.name === '__Host-sessiond-session').httpOnly).toBe(true);

  const link = await openUser(page, 'alice');
  await expect(page.getByRole('link', { name: 'bob', exact: true })).toHaveCount(0);
  // the search box's hint is whole and the count is announced
  const box = page.getByLabel('Search users');
  await expect(box).toHaveAttribute('placeholder', 'username or id');
  expect(await box.evaluate((el) => {
    const probe = document.createElement('span');
    probe.textContent = el.placeholder;
    probe.style.font = getComputedStyle(el).font;
    document.body.append(probe);
    const fits = probe.getBoundingClientRect().width <= el.clientWidth;
    probe.remove();
    return fits;
  })).toBe(true);
  await expect(page.locator('#status')).toContainText('1 user found');
  await shot(page, 'users.png');
  await link.click();

  const row = page.locator(`tr[data-session="${login.sessionId}"]`);
  await expect(row).toHaveAttribute('data-state', 'active');
  await expect(page.locator(`tr[data-session="${browserLogin.sessionId}"]`)).toHaveAttribute('data-state', 'active');
  // at 1280 px: address, times, state and the button on one line each
  const rows = page.locator('tr[data-session]');
  for (const label of ['Address', 'Created', 'Last seen', 'Expires', 'State']) {
    expect(await oneLine(rows.locator(`td[data-label="${label}"]`)), label).not.toContain(false);
  }
  expect(await oneLine(rows.getByRole('button', { name: /^Revoke session/ })), 'Revoke').not.toContain(false);
  await shot(page, 'sessions.png');
  await row.getByRole('button', { name: `Revoke session ${login.sessionId}` }).click();
  await expect(page.locator('#confirm')).toBeVisible();
  await page.locator('#confirm-ok').click();
  await expect(page.locator('#status')).toContainText('Session revoked');
  await expect(row).toHaveAttribute('data-state', 'revoked');
  await expect(row).toContainText('admin');
  // an ended session has no expiry any more
  await expect(row.locator('td[data-label="Expires"]')).toHaveText('—');

  const after = await whoami(request, login.userSessionToken);
  expect(after.status()).toBe(401);
});

test('the timeline follows one activity and one session', async ({ page, request }) => {
  const login = await apiLogin(request, 'bob');
  await signIn(page, OPERATOR);
  await page.goto(`/console#/t/${TENANT}/activity?range=1h`);
  const group = page.locator(`#timeline > li[data-activity="${login.activityId}"]`);
  await expect(group).toBeVisible();

  await group.locator('a.activity-link').click();
  await expect(page).toHaveURL(new RegExp(`activityId=${login.activityId}`));
  await expect(page.getByLabel('Activity id')).toHaveValue(login.activityId);
  await expect(page.locator('#timeline > li')).toHaveCount(1);
  await expect(group.locator('li[data-type="login_succeeded"]')).toHaveCount(1);
  await expect(group.locator('li[data-type="session_created"]')).toHaveCount(1);

  // the session's link filters by session id: the same events, and nothing of other sessions
  await group.locator('li[data-type="session_created"] a.session-link').click();
  await expect(page).toHaveURL(new RegExp(`sessionId=${login.sessionId}`));
  await expect(page.getByLabel('Session id')).toHaveValue(login.sessionId);
  await expect(page.locator(`#timeline > li[data-activity="${login.activityId}"] li[data-type="session_created"]`)).toHaveCount(1);
  const others = await page.locator('#timeline li[data-type]').evaluateAll(
    (items, sid) => items.filter((li) => !li.querySelector('a.session-link') || !li.textContent.includes(sid.slice(0, 12))).length,
    login.sessionId,
  );
  expect(others).toBe(0);

  // the session refreshed and signed out: listed oldest first, login to logout, and said so
  const headers = (token) => ({ 'X-Tenant-ID': TENANT, 'X-Activity-ID': randomUUID(), ...(token ? { Authorization: `Bearer ${token}` } : {}) });
  const refreshed = await request.post('/api/v2/auth/refresh', { headers: headers(), data: { refreshToken: login.refreshToken } });
  expect(refreshed.status(), await refreshed.text()).toBe(200);
  const out = await request.post('/api/v2/auth/logout', { headers: headers((await refreshed.json()).userSessionToken) });
  expect(out.status(), await out.text()).toBe(204);
  await page.getByRole('button', { name: 'Refresh' }).click();
  await expect(page.locator('#timeline-title')).toHaveText(/oldest first/);
  await expect(page.locator('#timeline-order')).toContainText('Oldest first');
  await expect(page.locator('#timeline li[data-type="session_revoked"]')).toHaveCount(1);
  const types = await page.locator('#timeline li[data-type]').evaluateAll((items) => items.map((li) => li.dataset.type));
  const first = (type) => types.indexOf(type);
  expect(Math.min(first('login_succeeded'), first('session_created')), types.join(' ')).toBe(0);
  expect(first('session_refreshed')).toBeGreaterThan(first('login_succeeded'));
  expect(first('session_refreshed')).toBeGreaterThan(first('session_created'));
  expect(first('session_revoked')).toBeGreaterThan(first('session_refreshed'));
  expect(first('session_revoked')).toBe(types.length - 1);
  await page.locator('#timeline-title').evaluate((el) => el.scrollIntoView());
  await shot(page, 'timeline-session.png');
});

test('a burst of failed logins shows on the chart', async ({ page, request }) => {
  await signIn(page, ADMIN);
  // the default range is the last hour in 1-minute buckets
  await page.getByRole('link', { name: 'Activity' }).click();
  await expect(page.getByLabel('Time range')).toHaveValue('1h');
  const chart = page.locator('#activity-chart');
  await expect(chart).toHaveAttribute('data-bucket', '60');
  await page.goto(`/console#/t/${TENANT}/activity?range=1h`);
  await expect(chart).toBeVisible();
  const before = Number(await chart.getAttribute('data-total-failures'));
  const latestBefore = Number(await chart.getAttribute('data-latest-failures'));
  expect(Number.isFinite(before)).toBe(true);

  const burst = 4;
  for (let i = 0; i < burst; i += 1) {
    await apiLogin(request, 'carol', { password: `wrong password ${i}`, expectStatus: 401 });
  }
  await page.getByRole('button', { name: 'Refresh' }).click();
  await expect.poll(async () => Number(await page.locator('#activity-chart').getAttribute('data-total-failures')))
    .toBeGreaterThanOrEqual(before + burst);
  // the latest bucket has them (unless the bucket turned over between the two reads)
  const latest = page.locator('#activity-chart g[data-series="failures"] circle[data-latest="true"]');
  const latestNow = Number(await latest.getAttribute('data-value'));
  expect(latestNow).toBeGreaterThanOrEqual(Math.min(burst, latestBefore + 1));
  await expect(latest.locator('title')).toHaveText(new RegExp(`failures: ${latestNow}$`));
  await expect(page.locator('.legend')).toContainText(`Failures (${before + burst})`);
  // counts: whole-number ticks; the time axis labelled at round times (every 10 minutes)
  const yTicks = await chart.locator('text.y-tick').allTextContents();
  expect(yTicks.length).toBeGreaterThanOrEqual(2);
  for (const t of yTicks) expect(t).toMatch(/^\d+$/);
  const xAt = await chart.locator('text.x-tick').evaluateAll((els) => els.map((el) => new Date(Number(el.dataset.at) * 1000).getMinutes()));
  expect(xAt.length).toBeGreaterThanOrEqual(4);
  for (const minutes of xAt) expect(minutes % 10).toBe(0);
  // the 24-hour and 7-day ranges: 15-minute and 2-hour buckets
  for (const [range, bucket] of [['24h', '900'], ['7d', '7200']]) {
    await page.getByLabel('Time range').selectOption(range);
    await page.getByRole('button', { name: 'Apply filters' }).click();
    await expect(page.locator('#activity-chart')).toHaveAttribute('data-bucket', bucket);
    for (const t of await page.locator('#activity-chart text.y-tick').allTextContents()) expect(t).toMatch(/^\d+$/);
  }
  await page.goto(`/console#/t/${TENANT}/activity?range=1h`);
  await expect(page.locator('#activity-chart')).toHaveAttribute('data-bucket', '60');
  await shot(page, 'activity.png');

  await page.setViewportSize({ width: 375, height: 800 });
  await page.getByRole('button', { name: 'Refresh' }).click();
  await expect(page.locator('#activity-chart')).toBeVisible();
  // nothing sticks out of the page: wide tables and the chart scroll inside their own boxes
  expect(await overflowing(page)).toEqual([]);
  // on a phone the alerts come before the timeline
  const alertsTop = (await page.locator('#alerts-title').boundingBox()).y;
  const timelineTop = (await page.locator('#timeline-title').boundingBox()).y;
  expect(alertsTop).toBeLessThan(timelineTop);
  await page.locator('#chart-title').evaluate((el) => el.scrollIntoView());
  await shot(page, 'activity-narrow.png');
});

test('an admin edits the policy and sees the keyring', async ({ page }) => {
  await signIn(page, ADMIN);
  await expect(page.locator('#role')).toHaveText('admin');

  await page.goto(`/console#/t/${TENANT}/overview`);
  const policy = page.getByRole('table', { name: /^Policy of / });
  const row = policy.locator('tr', { has: page.locator('code', { hasText: /^maxSessionsPerUser$/ }) });
  await expect(row).toContainText('no'); // not overridden
  // time fields show their unit; onLimit offers the server's values; requiredHeaders is whole
  const ttl = policy.locator('tr', { has: page.locator('code', { hasText: /^sessionTokenTtl$/ }) });
  await expect(ttl.locator('.unit')).toHaveText('s');
  await expect(ttl.getByLabel('sessionTokenTtl value in seconds')).toBeVisible();
  const onLimit = policy.locator('tr', { has: page.locator('code', { hasText: /^onLimit$/ }) }).getByRole('combobox');
  expect(await onLimit.locator('option').allTextContents()).toEqual(['evict_oldest', 'reject']);
  const headersBox = policy.locator('tr', { has: page.locator('code', { hasText: /^requiredHeaders$/ }) }).getByRole('textbox');
  expect(await headersBox.evaluate((el) => el.scrollWidth <= el.clientWidth && el.scrollHeight <= el.clientHeight + 2)).toBe(true);
  await policy.evaluate((el) => el.scrollIntoView());
  await shot(page, 'policy.png');
  await row.getByRole('spinbutton').fill('7');
  await page.getByRole('button', { name: 'Save policy' }).click();
  await expect(page.locator('#status')).toContainText('Policy saved (maxSessionsPerUser)');
  await expect(row.locator('td').nth(3)).toHaveText('yes');
  await expect(row.getByRole('spinbutton')).toHaveValue('7');
  await row.getByRole('button', { name: 'Restore the default of maxSessionsPerUser' }).click();
  await expect(page.locator('#status')).toContainText('maxSessionsPerUser restored');
  await expect(row.locator('td').nth(3)).toHaveText('no');
  await onLimit.selectOption('reject');
  await page.getByRole('button', { name: 'Save policy' }).click();
  await expect(page.locator('#status')).toContainText('Policy saved (onLimit)');
  const onLimitRow = policy.locator('tr', { has: page.locator('code', { hasText: /^onLimit$/ }) });
  await expect(onLimitRow.getByRole('combobox')).toHaveValue('reject');
  await onLimitRow.getByRole('button', { name: 'Restore the default of onLimit' }).click();
  await expect(page.locator('#status')).toContainText('onLimit restored');
  await expect(onLimitRow.getByRole('combobox')).toHaveValue('evict_oldest');

  await page.getByRole('link', { name: 'Keys' }).click();
  await expect(page.getByRole('heading', { name: 'Signing keys' })).toBeVisible();
  await expect(page.getByRole('table', { name: 'Keyring' }).locator('tbody tr')).not.toHaveCount(0);
  await expect(page.getByRole('table', { name: 'Keyring' })).toContainText('signing');
  await expect(page.getByRole('button', { name: 'Rotate keys' })).toBeEnabled();
  await shot(page, 'keys.png');
  await expect(page.getByRole('link', { name: 'Operators' })).toBeVisible();
});

test('a viewer cannot revoke, not even by forcing the call, and signs out', async ({ page, request }) => {
  const login = await apiLogin(request, 'bob');
  await signIn(page, VIEWER);
  await expect(page.locator('#role')).toHaveText('viewer');
  await expect(page.getByRole('link', { name: 'Operators' })).toHaveCount(0);

  const link = await openUser(page, 'bob');
  await link.click();
  const row = page.locator(`tr[data-session="${login.sessionId}"]`);
  await expect(row).toHaveAttribute('data-state', 'active');
  const usable = page.getByRole('button', { name: /revoke/i });
  await expect(usable.and(page.locator(':enabled'))).toHaveCount(0);
  await expect(page.getByRole('button', { name: 'Disable user' })).toHaveCount(0);

  const forced = await page.evaluate(async ({ tenant, sessionId }) => {
    const csrf = document.cookie.split('; ').find((c) => c.startsWith('__Host-sessiond-csrf='));
    const res = await fetch(`/admin/v1/tenants/${tenant}/sessions/${sessionId}`, {
      method: 'DELETE',
      headers: { 'X-CSRF-Token': csrf ? csrf.split('=')[1] : '', 'X-Activity-ID': crypto.randomUUID() },
    });
    return { status: res.status, csrf: Boolean(csrf), body: await res.json().catch(() => null) };
  }, { tenant: TENANT, sessionId: login.sessionId });
  expect(forced.csrf).toBe(true);
  expect(forced.status).toBe(403);
  expect(forced.body && forced.body.code).toBe('forbidden');
  expect((await whoami(request, login.userSessionToken)).status()).toBe(200);

  await page.getByRole('link', { name: 'Keys' }).click();
  await expect(page.getByRole('heading', { name: 'Signing keys' })).toBeVisible();
  await expect(page.getByRole('button', { name: 'Rotate keys' })).toHaveCount(0);

  await page.getByRole('button', { name: 'Sign out' }).click();
  await expect(page.getByRole('heading', { name: 'Sign in' })).toBeVisible();
  await expect(page.locator('#status')).toContainText('Signed out');
  const me = await page.evaluate(() => fetch('/admin/v1/me').then((r) => r.status));
  expect(me).toBe(401);
  await page.goto(`/console#/t/${TENANT}/users`);
  await expect(page.getByRole('heading', { name: 'Sign in' })).toBeVisible();
});

test('a role taken away while signed in: the server\'s 403 is shown', async ({ page, browser, request }) => {
  const login = await apiLogin(request, 'bob');
  const temp = { username: `e2e-temp-${Date.now()}`, password: `temp password ${randomUUID()}` };

  // an admin creates an operator in the console
  await signIn(page, ADMIN);
  await page.getByRole('link', { name: 'Operators' }).click();
  await expect(page.getByRole('heading', { name: 'Operators', level: 2 })).toBeVisible();
  const form = page.locator('form', { has: page.getByRole('button', { name: 'Create operator' }) });
  await form.getByLabel('Username').fill(temp.username);
  await form.getByLabel('Password').fill(temp.password);
  await form.getByLabel('Role').selectOption('operator');
  await form.getByRole('button', { name: 'Create operator' }).click();
  await expect(page.locator('#status')).toContainText(`Operator ${temp.username} created`);

  // who signs in elsewhere and opens a user's sessions: Revoke is offered
  const other = await browser.newContext();
  const tab = await other.newPage();
  await signIn(tab, temp);
  await expect(tab.locator('#role')).toHaveText('operator');
  await (await openUser(tab, 'bob')).click();
  const revoke = tab.getByRole('button', { name: `Revoke session ${login.sessionId}` });
  await expect(revoke).toBeEnabled();

  // the admin makes them a viewer
  await page.getByLabel(`Role of ${temp.username}`).selectOption('viewer');
  await page.getByRole('button', { name: `Change role for ${temp.username}` }).click();
  await page.locator('#confirm-ok').click();
  await expect(page.locator('#status')).toContainText(`${temp.username} is now viewer`);

  // the stale button is used anyway: the server refuses, the console says so
  await revoke.click();
  await tab.locator('#confirm-ok').click();
  await expect(tab.locator('#status')).toHaveAttribute('data-kind', 'error');
  await expect(tab.locator('#status')).not.toBeEmpty();
  expect((await whoami(request, login.userSessionToken)).status()).toBe(200);
  await other.close();
});

test('an expired session token is refreshed once and the page still loads', async ({ page, browser }) => {
  // a 2-second session token for operators, set by the admin through the console's own API
  await signIn(page, ADMIN);
  const patch = (body) => page.evaluate(async (b) => {
    const csrf = document.cookie.split('; ').find((c) => c.startsWith('__Host-sessiond-csrf=')).split('=')[1];
    const res = await fetch('/admin/v1/tenants/_operators/policy', {
      method: 'PATCH',
      headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': csrf, 'X-Activity-ID': crypto.randomUUID() },
      body: JSON.stringify(b),
    });
    return res.status;
  }, body);
  expect(await patch({ sessionTokenTtl: 2 })).toBe(200);
  try {
    const other = await browser.newContext();
    const tab = await other.newPage();
    const refreshes = [];
    const logins = [];
    tab.on('response', async (r) => {
      if (r.url().endsWith('/api/v2/auth/refresh')) refreshes.push(r.status());
      if (r.url().endsWith('/api/v2/auth/login')) { const b = await r.json(); logins.push(b.expires_in ?? b.expiresIn); }
    });
    await signIn(tab, OPERATOR);
    await tab.waitForTimeout(3000);
    await tab.getByRole('link', { name: 'Keys' }).click();
    await expect(tab.getByRole('heading', { name: 'Signing keys' })).toBeVisible();
    await expect(tab.getByRole('table', { name: 'Keyring' })).toContainText('signing');
    await expect(tab.locator('#who')).toContainText(OPERATOR.username);
    expect(logins).toEqual([2]);
    expect(refreshes).toEqual([200]);
    await other.close();
  } finally {
    expect(await patch({ sessionTokenTtl: null })).toBe(200);
  }
});

test('an operator creates a partner secret, sees it once, and revokes it', async ({ page }) => {
  await signIn(page, OPERATOR);
  await page.getByRole('link', { name: 'Secrets & clients' }).click();
  await expect(page.getByRole('heading', { name: 'Secrets & clients', level: 2 })).toBeVisible();
  const secrets = page.getByRole('table', { name: 'Partner secrets' });
  const before = await secrets.getByRole('button', { name: /^Revoke partner secret/ }).count();
  await page.getByRole('button', { name: 'Create partner secret' }).click();
  const once = page.locator('#shown-once');
  await expect(once).toContainText('shown only once');
  expect((await page.locator('#once-value').textContent()).length).toBeGreaterThanOrEqual(16);
  await expect(secrets.getByRole('button', { name: /^Revoke partner secret/ })).toHaveCount(before + 1);
  await once.getByRole('button', { name: 'Dismiss' }).click();
  await expect(page.locator('#once-value')).toHaveCount(0);

  await secrets.getByRole('button', { name: /^Revoke partner secret/ }).last().click();
  await page.locator('#confirm-ok').click();
  await expect(page.locator('#status')).toContainText('Partner secret revoked');
  await expect(page.getByRole('table', { name: 'Partner secrets' }).getByRole('button', { name: /^Revoke partner secret/ })).toHaveCount(before);
});

test('moving an operator\'s role select changes nothing until Change role is confirmed', async ({ page }) => {
  await signIn(page, ADMIN);
  const temp = { username: `e2e-role-${Date.now()}`, password: `temp password ${randomUUID()}`, role: 'viewer' };
  const created = await adminCall(page, 'POST', '/operators', temp);
  expect(created.status).toBe(201);
  const roleOnServer = async () => {
    const list = await adminCall(page, 'GET', '/operators?limit=1000');
    return list.body.operators.find((o) => o.username === temp.username).role;
  };
  const puts = [];
  page.on('request', (r) => { if (r.method() === 'PUT') puts.push(r.url()); });

  await page.getByRole('link', { name: 'Operators' }).click();
  const sel = page.getByLabel(`Role of ${temp.username}`);
  await expect(sel).toHaveValue('viewer');
  await sel.focus();
  await page.keyboard.press('ArrowDown');
  await expect(sel).toHaveValue('operator');
  await page.keyboard.press('ArrowDown');
  await expect(sel).toHaveValue('admin');
  expect(puts).toEqual([]);
  expect(await roleOnServer()).toBe('viewer');

  // the button asks first; cancelling changes nothing and puts the select back
  await page.keyboard.press('Tab');
  const change = page.getByRole('button', { name: `Change role for ${temp.username}` });
  await expect(change).toBeFocused();
  await page.keyboard.press('Enter');
  await expect(page.locator('#confirm')).toBeVisible();
  await expect(page.locator('#confirm-text')).toContainText(`from viewer to admin`);
  await page.locator('#confirm').getByRole('button', { name: 'Cancel' }).click();
  await expect(page.locator('#confirm')).toBeHidden();
  await expect(sel).toHaveValue('viewer');
  expect(puts).toEqual([]);
  expect(await roleOnServer()).toBe('viewer');

  // confirmed: one PUT, and the server has the new role
  await sel.selectOption('operator');
  await change.click();
  await page.locator('#confirm-ok').click();
  await expect(page.locator('#status')).toContainText(`${temp.username} is now operator`);
  expect(puts.length).toBe(1);
  expect(await roleOnServer()).toBe('operator');
  await shot(page, 'operators.png');
  expect((await adminCall(page, 'POST', `/operators/${created.body.userId}/disable`)).status).toBe(204);
});

test('a user\'s page opened by its URL names the user and shows their status', async ({ page, request }) => {
  await apiLogin(request, 'alice');
  await signIn(page, VIEWER);
  // alice has sessions; carol has none (only failed logins)
  for (const name of ['alice', 'carol']) {
    const found = await adminCall(page, 'GET', `/tenants/${TENANT}/users?username=${name}`);
    expect(found.status).toBe(200);
    await page.goto(`/console#/t/${TENANT}/users/${found.body.userId}`);
    await page.reload(); // a fresh page: nothing cached from a list
    const heading = page.getByRole('heading', { level: 2 });
    await expect(heading).toHaveText(`Sessions of ${name}`);
    await expect(heading).toHaveAttribute('data-user', 'found');
    await expect(page.locator('#user-status')).toHaveText('active');
    await expect(page).toHaveTitle(`Sessions of ${name} \u2014 sessiond console`);
  }
});
