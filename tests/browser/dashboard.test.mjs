// The web dashboard in a real browser: Debian's Chromium, driven by playwright-core,
// against the real regd. run.sh starts the shared regd (REGD_URL); the restart and
// screenshot tests start their own (REGD_BIN). Nothing here sleeps to wait: every wait
// is Playwright's auto-waiting (waitFor, waitForFunction) with a deadline.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { chmodSync, mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import { chromium } from 'playwright-core';

const REGD_URL = process.env.REGD_URL;
const REGD_BIN = process.env.REGD_BIN;
const PATIENCE = 20_000;
assert.ok(REGD_URL && REGD_BIN, 'run me through tests/browser/run.sh');

let context;
let profile;

before(async () => {
  profile = mkdtempSync(join(tmpdir(), 'regd-chromium-'));
  context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    viewport: { width: 1280, height: 800 },
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  context.setDefaultTimeout(PATIENCE);
});

after(async () => {
  await context?.close();
  rmSync(profile, { recursive: true, force: true });
});

// ---- talking to regd ----------------------------------------------------------------

async function call(base, method, path, body, token) {
  const res = await fetch(base + path, {
    method,
    headers: token ? { Authorization: 'Bearer ' + token } : {},
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  assert.ok(res.status < 300, `${method} ${path}: ${res.status} ${await res.clone().text()}`);
  return res;
}
const publish = (base, registers, token) =>
  call(base, 'PUT', '/provider', { registers }, token);
const remove = (base, name) =>
  call(base, 'DELETE', '/provider?name=' + encodeURIComponent(name));

// A provider for `name`, as a device would run it: long-poll GET /provider for change
// requests and publish each requested value. `gate` (a promise) holds the first
// publish back until the test has seen the page say "requested…".
function runProvider(base, name, { metadata, gate } = {}) {
  let running = true;
  const done = (async () => {
    while (running) {
      const res = await fetch(
        `${base}/provider?name=${encodeURIComponent(name)}&wait=2s`,
      );
      const { registers } = await res.json();
      if (Object.hasOwn(registers, name)) {
        if (gate) await gate;
        await publish(base, { [name]: { value: registers[name].value, metadata, ttl: '60s' } });
      }
    }
  })();
  return {
    stop: async () => {
      running = false;
      await done;
    },
  };
}

// Starts a regd of this test's own; `addr` fixes the address (for a restart).
// `args` are more options (e.g. --token-file).
async function startRegd(addr = '127.0.0.1:0', args = []) {
  const child = spawn(REGD_BIN, ['--addr', addr, '--log-level', 'warn', ...args], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const lines = createInterface({ input: child.stdout });
  const line = await new Promise((resolve, reject) => {
    lines.once('line', resolve);
    child.once('exit', (code) => reject(new Error(`regd exited with ${code}`)));
  });
  assert.match(line, /^listening on http:\/\//);
  const address = line.replace('listening on http://', '');
  const exited = new Promise((resolve) => child.once('exit', resolve));
  return {
    url: 'http://' + address,
    address,
    stop: async () => {
      child.kill('SIGTERM');
      await exited;
    },
  };
}

// ---- the page -----------------------------------------------------------------------

async function openPage(
  base,
  { width = 1280, height = 800, colorScheme = 'light', live = true, setup } = {},
) {
  const page = await context.newPage();
  if (setup) await setup(page);
  const dialogs = [];
  const problems = [];
  page.on('dialog', (dialog) => {
    dialogs.push(dialog.message());
    dialog.dismiss().catch(() => {});
  });
  page.on('pageerror', (error) => problems.push(String(error)));
  page.on('console', (message) => {
    // A CSP violation is reported as a console error; so is any script failure.
    if (message.type() === 'error' && !/Failed to load resource|ERR_CONNECTION_REFUSED/.test(message.text())) {
      problems.push(message.text());
    }
  });
  await page.setViewportSize({ width, height });
  await page.emulateMedia({ colorScheme });
  await page.goto(base + '/');
  if (live) await page.locator('#status', { hasText: 'live' }).waitFor();
  return { page, dialogs, problems };
}

const row = (page, name) =>
  page
    .locator('#rows tr')
    .filter({ has: page.getByRole('rowheader', { name, exact: true }) });

const noteOf = (page, name) => row(page, name).locator('.note');

async function waitForText(locator, text) {
  await locator.filter({ hasText: text }).waitFor();
}

// ---- scenarios ------------------------------------------------------------------------

test('the page lists every register with value, metadata and a countdown', async () => {
  await publish(REGD_URL, {
    'list.temp': { value: 21.5, metadata: { unit: '°C' }, ttl: '5m' },
    'list.door': { value: false, ttl: '5m' },
    'list.mode': { value: { auto: true, level: 3 }, ttl: '5m' },
  });
  const { page, dialogs, problems } = await openPage(REGD_URL);
  await row(page, 'list.temp').waitFor();
  assert.equal(await row(page, 'list.temp').locator('button.val').textContent(), '21.5');
  assert.equal(await row(page, 'list.temp').locator('td.meta').textContent(), '{"unit":"°C"}');
  assert.equal(
    await row(page, 'list.mode').locator('button.val').textContent(),
    '{"auto":true,"level":3}',
  );
  const toggle = row(page, 'list.door').getByRole('switch', { name: 'list.door' });
  assert.equal(await toggle.getAttribute('aria-checked'), 'false');
  assert.match(await row(page, 'list.temp').locator('td.ttl').textContent(), /^[45] min \d+ s$/);
  // Table semantics and labels for screen readers.
  assert.equal(await page.getByRole('table').count(), 1);
  assert.equal(await page.getByRole('columnheader').count(), 4);
  assert.equal(await page.getByLabel('Filter by name').count(), 1);
  assert.equal(await page.getByRole('alert').count(), 0, 'no banner while connected');
  // The countdown runs between updates, on the page's own clock.
  const before = await row(page, 'list.temp').locator('td.ttl').textContent();
  await page.waitForFunction(
    ([text]) =>
      [...document.querySelectorAll('#rows th.name')].find((th) => th.textContent === 'list.temp')
        ?.parentElement.querySelector('td.ttl').textContent !== text,
    [before],
  );
  assert.deepEqual(dialogs, []);
  assert.deepEqual(problems, []);
  await page.close();
});

test('registers created, changed and removed elsewhere show up without a reload', async () => {
  const { page, problems } = await openPage(REGD_URL);
  await publish(REGD_URL, { 'live.a': { value: 1, ttl: '5m' } });
  await row(page, 'live.a').waitFor();
  await publish(REGD_URL, { 'live.a': { value: 2, ttl: '5m' } });
  await waitForText(row(page, 'live.a').locator('button.val'), '2');
  // Several changes in a burst: none is lost (index= carries over between polls).
  for (let i = 0; i < 5; i++) await publish(REGD_URL, { [`live.burst${i}`]: { value: i, ttl: '5m' } });
  for (let i = 0; i < 5; i++) await row(page, `live.burst${i}`).waitFor();
  await remove(REGD_URL, 'live.a');
  await waitForText(noteOf(page, 'live.a'), 'removed');
  await row(page, 'live.a').waitFor({ state: 'detached' });
  assert.deepEqual(problems, []);
  await page.close();
});

test('one long poll at a time, carrying index=; nothing polls busily', async () => {
  const page = await context.newPage();
  const reads = [];
  page.on('request', (request) => {
    if (new URL(request.url()).pathname === '/consumer') reads.push(request.url());
  });
  await page.goto(REGD_URL + '/');
  // The first read answers at once; every read after it is a long poll from the index
  // of the previous answer.
  await page.waitForRequest((request) => request.url().includes('index='));
  await publish(REGD_URL, { 'poll.a': { value: 1, ttl: '5m' } });
  await row(page, 'poll.a').waitFor();
  await publish(REGD_URL, { 'poll.a': { value: 2, ttl: '5m' } });
  await waitForText(row(page, 'poll.a').locator('button.val'), '2');
  const polls = reads.slice(1);
  assert.match(reads[0], /\/consumer\?details=true$/);
  for (const url of polls) assert.match(url, /\/consumer\?details=true&wait=30s&index=\d+$/);
  // Initial read, the poll answered by the first publish, the one answered by the
  // second, and the one now held (other tests' registers may add a wake-up or two).
  assert.ok(reads.length <= 6, `too many reads: ${reads.length}\n${reads.join('\n')}`);
  await page.close();
});

test('the filter narrows rows by name and Escape clears it; sort and grouping', async () => {
  await publish(REGD_URL, {
    'flt.kitchen.temp': { value: 20, ttl: '5m' },
    'flt.kitchen.light': { value: true, ttl: '5m' },
    'flt.garage.door': { value: 'open', ttl: '5m' },
  });
  const { page } = await openPage(REGD_URL);
  await row(page, 'flt.garage.door').waitFor();
  await page.keyboard.press('/'); // the shortcut focuses the filter
  await page.keyboard.type('KITCHEN');
  await row(page, 'flt.garage.door').waitFor({ state: 'detached' });
  assert.equal(await page.locator('#rows tr').count(), 2);
  await page.keyboard.type('.nothing');
  await page.locator('#empty', { hasText: 'No register matches' }).waitFor();
  await page.keyboard.press('Escape');
  await row(page, 'flt.garage.door').waitFor();

  await page.getByLabel('Filter by name').fill('flt.');
  const names = () => page.locator('#rows th.name').allTextContents();
  assert.deepEqual(await names(), ['flt.garage.door', 'flt.kitchen.light', 'flt.kitchen.temp']);
  await page.getByRole('button', { name: /^Name/ }).click();
  assert.deepEqual(await names(), ['flt.kitchen.temp', 'flt.kitchen.light', 'flt.garage.door']);
  assert.equal(await page.locator('th[aria-sort]').getAttribute('aria-sort'), 'descending');
  await page.getByRole('button', { name: /^Name/ }).click();

  await page.getByLabel('Group by dots').check();
  const groups = await page.locator('#rows tr.group th').allTextContents();
  assert.deepEqual(groups, ['flt.', 'garage.', 'kitchen.']);
  assert.deepEqual(await names(), ['door', 'light', 'temp']);
  await row(page, 'flt.kitchen.temp').waitFor(); // still found by its full name
  await page.close();
});

test('editing a value sends a change request; the provider applies it', async () => {
  const name = 'edit.setpoint';
  await publish(REGD_URL, { [name]: { value: 18, ttl: '60s' } });
  let open;
  const gate = new Promise((resolve) => (open = resolve));
  const provider = runProvider(REGD_URL, name, { gate });
  const { page, problems } = await openPage(REGD_URL);
  try {
    // Keyboard only: focus the value, Enter opens the editor, Enter sends.
    await row(page, name).getByRole('button', { name: `Edit ${name}, value 18` }).focus();
    await page.keyboard.press('Enter');
    const editor = page.getByLabel(`New JSON value for ${name}`);
    await editor.waitFor();
    await editor.fill('{"c": 21');
    await page.keyboard.press('Enter');
    await waitForText(row(page, name).locator('.err'), 'Not valid JSON');
    assert.equal(await editor.getAttribute('aria-invalid'), 'true');
    await editor.fill('21.5');
    await page.keyboard.press('Enter');
    await waitForText(noteOf(page, name), 'requested…');
    open();
    await waitForText(row(page, name).locator('button.val'), '21.5');
    await waitForText(noteOf(page, name), /^applied$/);
    assert.equal(
      await page.evaluate(() => document.activeElement.className),
      'val',
      'focus returns to the value',
    );
  } finally {
    open();
    await provider.stop();
  }
  assert.deepEqual(problems, []);
  await page.close();
});

test('a boolean is a switch; a request nobody applies shows "not applied"', async () => {
  await publish(REGD_URL, {
    'sw.heater': { value: false, ttl: '60s' },
    'sw.orphan': { value: false, ttl: '60s' },
  });
  const provider = runProvider(REGD_URL, 'sw.heater');
  const { page } = await openPage(REGD_URL);
  try {
    const heater = row(page, 'sw.heater').getByRole('switch', { name: 'sw.heater' });
    await heater.click();
    await page.locator('#rows tr:has(button[aria-label="sw.heater"][aria-checked="true"])').waitFor();
    await waitForText(noteOf(page, 'sw.heater'), /^applied$/);

    await row(page, 'sw.orphan').getByRole('switch').click();
    await waitForText(noteOf(page, 'sw.orphan'), 'requested…');
    await waitForText(noteOf(page, 'sw.orphan'), 'not applied');
    assert.equal(await row(page, 'sw.orphan').getByRole('switch').getAttribute('aria-checked'), 'false');
    // The request itself reached regd and waits for a provider.
    const pending = await (await call(REGD_URL, 'GET', '/provider?name=sw.orphan')).json();
    assert.deepEqual(pending, { registers: { 'sw.orphan': { value: true } } });
  } finally {
    await provider.stop();
  }
  await page.close();
});

test('an expiring register is marked, then shown expired, then removed', async () => {
  const { page } = await openPage(REGD_URL);
  await publish(REGD_URL, { 'exp.short': { value: 'soon gone', ttl: '2500ms' } });
  await page.locator('#rows tr.expiring').filter({ hasText: 'soon gone' }).waitFor();
  await page.locator('#rows tr.gone').filter({ hasText: 'soon gone' }).waitFor();
  await waitForText(row(page, 'exp.short').locator('td.ttl'), 'expired');
  await row(page, 'exp.short').waitFor({ state: 'detached' });
  await page.close();
});

test('a register refreshed without a change gets its new expiry when the countdown runs out', async () => {
  const { page } = await openPage(REGD_URL);
  await publish(REGD_URL, { 'sync.kept': { value: 'same', ttl: '2s' } });
  await row(page, 'sync.kept').waitFor();
  // Same value, longer ttl: this wakes no poll (docs/protocol.md A4), so the page still counts
  // down from 2 s; when that runs out it reads once and learns the new expiry.
  await publish(REGD_URL, { 'sync.kept': { value: 'same', ttl: '5m' } });
  await waitForText(row(page, 'sync.kept').locator('td.ttl'), /^4 min \d+ s$/);
  assert.equal(await row(page, 'sync.kept').locator('.note').textContent(), '');
  assert.equal(await page.locator('#rows tr.gone').count(), 0);
  await page.close();
});

test('untrusted names, values and metadata render as text and run nothing', async () => {
  const name = '<img src=x onerror=alert(1)>';
  const value = '<script>alert(1)</script>';
  await publish(REGD_URL, {
    [name]: { value, metadata: { note: '<b onmouseover=alert(2)>x</b>' }, ttl: '5m' },
    ['__proto__']: { value: '"><svg onload=alert(3)>', ttl: '5m' }, // computed: a real key
  });
  const { page, dialogs, problems } = await openPage(REGD_URL);
  await row(page, name).waitFor();
  await row(page, '__proto__').waitFor();
  assert.equal(await row(page, name).locator('button.val').textContent(), JSON.stringify(value));
  assert.equal(
    await row(page, name).locator('td.meta').textContent(),
    '{"note":"<b onmouseover=alert(2)>x</b>"}',
  );
  assert.equal(await page.locator('#rows img, #rows script, #rows svg, #rows b').count(), 0);
  await row(page, name).locator('button.val').hover();
  await row(page, name).locator('button.val').click(); // the editor shows the text too
  assert.equal(
    await page.getByLabel(`New JSON value for ${name}`).inputValue(),
    JSON.stringify(value),
  );
  await page.keyboard.press('Escape');
  assert.deepEqual(dialogs, []);
  assert.deepEqual(problems, []);
  await page.close();
});

test('the page survives a regd restart: banner, then reconnects by itself', async () => {
  let regd = await startRegd();
  try {
    await publish(regd.url, { 'restart.before': { value: 1, ttl: '5m' } });
    const { page } = await openPage(regd.url);
    await row(page, 'restart.before').waitFor();
    await regd.stop();
    const banner = page.getByRole('alert');
    await waitForText(banner, 'regd is unreachable');
    await page.locator('#status', { hasText: 'offline' }).waitFor();
    regd = await startRegd(regd.address);
    await publish(regd.url, { 'restart.after': { value: 2, ttl: '5m' } });
    await row(page, 'restart.after').waitFor();
    await banner.waitFor({ state: 'hidden' });
    // The new regd does not know the old register: it goes away.
    await row(page, 'restart.before').waitFor({ state: 'detached' });
    await page.close();
  } finally {
    await regd.stop();
  }
});

// ---- access control (docs/protocol.md B5) ------------------------------------------------------

const TOKENS = Object.fromEntries(
  ['consumer', 'provider', 'admin'].map((role) => [role, role + '-' + randomBytes(12).toString('hex')]),
);

// A regd of the test's own with a token file, mode 600 as regd insists.
async function startGuardedRegd() {
  const dir = mkdtempSync(join(tmpdir(), 'regd-tokens-'));
  const file = join(dir, 'tokens');
  const lines = Object.entries(TOKENS).map(([role, token]) => `${token} ${role} browser ${role}\n`);
  writeFileSync(file, lines.join(''), { mode: 0o600 });
  chmodSync(file, 0o600);
  const regd = await startRegd('127.0.0.1:0', ['--token-file', file]);
  return {
    ...regd,
    stop: async () => {
      await regd.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

const focused = (page, id) => page.waitForFunction((id) => document.activeElement?.id === id, id);

test('with tokens the page asks for one, refuses a wrong one, keeps a good one for this tab only', async () => {
  const regd = await startGuardedRegd();
  try {
    await publish(regd.url, { 'auth.temp': { value: 20, ttl: '5m' } }, TOKENS.provider);
    const polls = [];
    const { page, dialogs, problems } = await openPage(regd.url, {
      live: false,
      setup: async (page) => {
        await page.clock.install(); // to skip a minute below
        page.on('request', (request) => {
          if (new URL(request.url()).pathname === '/consumer') polls.push(request);
        });
      },
    });
    const input = page.getByLabel('Access token');
    await input.waitFor();
    await page.getByText('This regd needs an access token').waitFor();
    await focused(page, 'token');
    await page.locator('#status', { hasText: 'token needed' }).waitFor();
    assert.equal(await input.getAttribute('type'), 'password');
    assert.ok(await page.locator('#banner').isHidden(), 'a missing token is no outage');
    assert.ok(await page.locator('#registers').isHidden());
    assert.equal(polls[0].headers().authorization, undefined);

    // The poll waits for a token: a minute on the page's clock retries nothing. Requests
    // are reported in order, so any retry would be counted before the next one.
    await page.clock.fastForward('01:00');
    await input.fill('not-a-valid-token-000000');
    await input.press('Enter');
    await waitForText(page.locator('#auth-err'), 'Token refused');
    assert.equal(polls.length, 2, 'one request per token entered');
    assert.equal(polls[1].headers().authorization, 'Bearer not-a-valid-token-000000');
    assert.equal(await input.getAttribute('aria-invalid'), 'true');
    await focused(page, 'token');

    // By keyboard: focus is already in the field.
    await page.keyboard.type(TOKENS.consumer);
    await page.keyboard.press('Enter');
    await page.locator('#status', { hasText: 'live' }).waitFor();
    await row(page, 'auth.temp').waitFor();
    assert.ok(await page.locator('#auth').isHidden());
    await publish(regd.url, { 'auth.temp': { value: 21, ttl: '5m' } }, TOKENS.provider);
    await waitForText(row(page, 'auth.temp').locator('button.val'), '21');
    assert.equal(polls.at(-1).headers().authorization, 'Bearer ' + TOKENS.consumer);

    // Kept in sessionStorage only: not in the URL, localStorage or a cookie.
    const kept = await page.evaluate(() => ({
      url: location.href,
      session: sessionStorage.getItem('regd.token'),
      local: localStorage.length,
      cookie: document.cookie,
    }));
    assert.deepEqual(kept, { url: regd.url + '/', session: TOKENS.consumer, local: 0, cookie: '' });
    assert.deepEqual(await context.cookies(), []);
    for (const request of polls) assert.ok(!request.url().includes(TOKENS.consumer));

    // A reload in the same tab keeps working.
    await page.reload();
    await page.locator('#status', { hasText: 'live' }).waitFor();
    await row(page, 'auth.temp').waitFor();
    assert.ok(await page.locator('#auth').isHidden());

    // Another tab of the same browser profile (which shares localStorage and cookies,
    // not sessionStorage) asks again; at phone width in dark mode the form fits.
    const other = await openPage(regd.url, { live: false, width: 390, height: 844, colorScheme: 'dark' });
    await other.page.getByLabel('Access token').waitFor();
    assert.ok(await other.page.evaluate(() => document.documentElement.scrollWidth <= innerWidth));
    assert.deepEqual(other.problems, []);
    await other.page.close();

    // "Forget token" clears it and drops what it showed.
    await page.getByRole('button', { name: 'Forget token' }).click();
    await input.waitFor();
    assert.equal(await page.evaluate(() => sessionStorage.length), 0);
    assert.equal(await row(page, 'auth.temp').count(), 0);
    assert.deepEqual(dialogs, []);
    assert.deepEqual(problems, []);
    await page.close();
  } finally {
    await regd.stop();
  }
});

test('a token whose role cannot read gets a clear 403; so does a refused change request', async () => {
  const regd = await startGuardedRegd();
  try {
    await publish(regd.url, { 'auth.switch': { value: false, ttl: '5m' } }, TOKENS.provider);
    const { page, problems } = await openPage(regd.url, { live: false });
    const input = page.getByLabel('Access token');
    await input.fill(TOKENS.provider);
    await input.press('Enter');
    await waitForText(page.locator('#auth-err'), 'role cannot read registers');
    assert.match(await page.locator('#auth-err').textContent(), /consumer or admin token/);
    assert.equal(await page.evaluate(() => sessionStorage.length), 0, 'a useless token is not kept');
    await focused(page, 'token');

    await input.fill(TOKENS.admin);
    await input.press('Enter');
    const toggle = row(page, 'auth.switch').getByRole('switch');
    await toggle.click();
    await waitForText(noteOf(page, 'auth.switch'), 'requested…');
    const pending = await call(regd.url, 'GET', '/provider?name=auth.switch', undefined, TOKENS.provider);
    assert.deepEqual(await pending.json(), { registers: { 'auth.switch': { value: true } } });

    // A token that reads may request changes too, so regd refuses one only after its
    // tokens changed under the page; the test stands in for that answer.
    await page.route('**/consumer', (route) =>
      route.request().method() === 'PUT'
        ? route.fulfill({
            status: 403,
            contentType: 'application/json',
            body: '{"error":"a provider token (test) may not use /consumer"}',
          })
        : route.fallback(),
    );
    await toggle.click();
    await waitForText(noteOf(page, 'auth.switch'), 'refused: this token may not request changes');
    assert.deepEqual(problems, []);
    await page.close();
  } finally {
    await regd.stop();
  }
});

test('screenshots for docs/ (only with SCREENSHOTS=DIR)', { skip: !process.env.SCREENSHOTS }, async () => {
  const dir = resolve(process.env.SCREENSHOTS);
  mkdirSync(dir, { recursive: true });
  const regd = await startRegd();
  try {
    await publish(regd.url, {
      'kitchen.temp': { value: 21.5, metadata: { unit: '°C' }, ttl: '1h' },
      'kitchen.humidity': { value: 48, metadata: { unit: '%' }, ttl: '1h' },
      'kitchen.heater': { value: true, ttl: '10m' },
      'garage.door': { value: 'closed', metadata: { source: 'zigbee' }, ttl: '90s' },
      'garage.light': { value: false, ttl: '10m' },
      'hall.motion': { value: { active: false, since_s: 340 }, ttl: '30m' },
      'pump.setpoint': { value: 2.5, metadata: { unit: 'bar', min: 1, max: 4 }, ttl: '1h' },
      'sensor.battery': { value: 17, metadata: { unit: '%' }, ttl: '3s' },
    });
    const shots = [
      ['dashboard-desktop.png', { width: 1100, height: 560, colorScheme: 'light' }],
      ['dashboard-phone.png', { width: 390, height: 844, colorScheme: 'dark' }],
    ];
    for (const [file, view] of shots) {
      const { page } = await openPage(regd.url, view);
      await row(page, 'sensor.battery').waitFor();
      await page.locator('#rows tr.expiring').waitFor();
      await page.screenshot({ path: join(dir, file), fullPage: true, animations: 'disabled' });
      await page.close();
    }
  } finally {
    await regd.stop();
  }
});
