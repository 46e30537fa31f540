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
async function apiLogin(request, username, { password = USER_PASSWORD, activityId = randomUUID(), expectStatus = 200 } = {}) {
  const res = await request.post('/api/v2/auth/login', {
    headers: { 'X-Tenant-ID': TENANT, 'X-Activity-ID': activityId, 'User-Agent': `e2e-device/${username}` },
    data: { username, password },
  });
  expect(res.status(), await res.text()).toBe(expectStatus);
  return expectStatus === 200 ? { ...(await res.json()), activityId } : null;
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

test('an operator signs in, finds a user and revokes the session made through the API', async ({ page, request }) => {
  const login = await apiLogin(request, 'alice');
  expect((await whoami(request, login.userSessionToken)).status()).toBe(200);

  await signIn(page, OPERATOR, { screenshot: 'signin.png' });
  await expect(page.locator('#role')).toHaveText('operator');
  // the CSRF and session cookies are __Host- and Secure on http://127.0.0.1 (a secure context)
  const cookies = await page.context().cookies();
  const names = cookies.map((c) => c.name);
  expect(names).toEqual(expect.arrayContaining(['__Host-sessiond-session', '__Host-sessiond-csrf']));
  expect(cookies.find((c) => c.name === '__Host-sessiond-session').httpOnly).toBe(true);

  const link = await openUser(page, 'alice');
  await expect(page.getByRole('link', { name: 'bob', exact: true })).toHaveCount(0);
  await shot(page, 'users.png');
  await link.click();

  const row = page.locator(`tr[data-session="${login.sessionId}"]`);
  await expect(row).toHaveAttribute('data-state', 'active');
  await shot(page, 'sessions.png');
  await row.getByRole('button', { name: `Revoke session ${login.sessionId}` }).click();
  await expect(page.locator('#confirm')).toBeVisible();
  await page.locator('#confirm-ok').click();
  await expect(page.locator('#status')).toContainText('Session revoked');
  await expect(row).toHaveAttribute('data-state', 'revoked');
  await expect(row).toContainText('admin');

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
});

test('a burst of failed logins shows on the chart', async ({ page, request }) => {
  await signIn(page, ADMIN);
  await page.goto(`/console#/t/${TENANT}/activity?range=1h`);
  const chart = page.locator('#activity-chart');
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
  await shot(page, 'activity.png');

  await page.setViewportSize({ width: 375, height: 800 });
  await page.getByRole('button', { name: 'Refresh' }).click();
  await expect(page.locator('#activity-chart')).toBeVisible();
  // nothing sticks out of the page: wide tables and the chart scroll inside their own boxes
  expect(await overflowing(page)).toEqual([]);
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
  await row.getByRole('spinbutton').fill('7');
  await page.getByRole('button', { name: 'Save policy' }).click();
  await expect(page.locator('#status')).toContainText('Policy saved (maxSessionsPerUser)');
  await expect(row.locator('td').nth(3)).toHaveText('yes');
  await expect(row.getByRole('spinbutton')).toHaveValue('7');
  await row.getByRole('button', { name: 'Restore the default of maxSessionsPerUser' }).click();
  await expect(page.locator('#status')).toContainText('maxSessionsPerUser restored');
  await expect(row.locator('td').nth(3)).toHaveText('no');

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
