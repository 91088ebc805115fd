// The dashboard in a real browser: Chromium from the OS packages (.ci/run installs it when missing),
// driven by playwright-core. Signs in, creates a key and uses it on the sample app (200), revokes it in
// the dashboard and sees the app refuse it (401) at once, and sees that refusal in the live events
// panel; fixes an audit finding; defines a role and creates an identity holding it, which a read-only
// sign-in sees without change buttons; works by keyboard and at phone width. Screenshots go to
// test/artifacts (two of them are in the README).
import { existsSync, mkdirSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type BrowserContext, chromium, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Harness, startHarness } from './harness.js';

const CHROMIUM = '/usr/bin/chromium';
const ARTIFACTS = fileURLToPath(new URL('./artifacts/', import.meta.url));

let h: Harness;
let context: BrowserContext;
let page: Page;
let profile: string;
/** The key the dashboard created, used on the app and then revoked. */
let created = '';

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: install Chromium from the OS packages (apt-get install chromium), as .ci/run does`);
  if (!existsSync(fileURLToPath(new URL('../dist/dashboard/app.js', import.meta.url))))
    throw new Error('the dashboard is built with the package: run `pnpm build` first');
  mkdirSync(ARTIFACTS, { recursive: true });
  h = await startHarness();
  // Something for the findings page to find: a key that never expires.
  await h.till.keys.create({ name: 'forever key', scopes: ['orders:read'] });
  // An identity and a role for the create dialog to give the new key.
  await h.till.roles.define('support', ['tickets:read']);
  await h.till.identities.create({ id: 'acme-browser', name: 'Acme' });
  profile = await mkdtemp(join(tmpdir(), 'till-console-chromium-'));
  context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
    viewport: { width: 1280, height: 800 },
  });
  await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: h.base });
  page = context.pages()[0] ?? (await context.newPage());
}, 60_000);

afterAll(async () => {
  await context?.close();
  if (profile) await rm(profile, { recursive: true, force: true });
  await h?.close();
});

/** Every request the page makes, to check that the key never leaves in a URL or a cookie. */
const sent: Array<{ url: string; cookie?: string }> = [];

describe('the dashboard in Chromium', () => {
  it('signs in by keyboard with an admin key kept in sessionStorage only', async () => {
    page.on('request', (r) => sent.push({ url: r.url(), ...(r.headers().cookie !== undefined && { cookie: r.headers().cookie }) }));
    const problems: string[] = [];
    page.on('console', (m) => m.type() === 'error' && problems.push(m.text()));
    await page.goto(`${h.base}/console`);
    expect(page.url()).toBe(`${h.base}/console/`);
    await page.locator('#key').waitFor();
    expect(await page.evaluate<string | undefined>('document.activeElement?.id')).toBe('key');
    await page.keyboard.type(h.admin);
    await page.keyboard.press('Enter');
    await page.locator('table.keys tbody tr[data-key]').first().waitFor();
    expect(await page.evaluate('({ session: sessionStorage.length, local: localStorage.length, cookie: document.cookie })')).toEqual({
      session: 1,
      local: 0,
      cookie: '',
    });
    // The CSP held: nothing was refused (a refusal is reported on the console).
    expect(problems.filter((p) => /Content Security Policy/i.test(p))).toEqual([]);
  });

  it('creates a key shown once with a copy button; the key works on the app (200)', async () => {
    // By keyboard: Tab reaches "Create key", Enter opens the dialog with the focus in it.
    await page.locator('#search').focus();
    for (let i = 0; i < 10 && (await page.evaluate<string | undefined>('document.activeElement?.id')) !== 'create'; i++) await page.keyboard.press('Tab');
    expect(await page.evaluate<string | undefined>('document.activeElement?.id')).toBe('create');
    await page.keyboard.press('Enter');
    await page.locator('dialog.create').waitFor();
    expect(await page.evaluate<string | undefined>('document.activeElement?.id')).toBe('new-name');
    await page.keyboard.press('Escape');
    await page.locator('dialog.create').waitFor({ state: 'detached' });

    await page.locator('#create').click();
    await page.locator('#new-name').fill('browser test key');
    await page.locator('#new-scopes').fill('orders:read');
    await page.locator('#new-owner').fill('team-browser');
    await page.locator('#new-identity').fill('acme-browser');
    await page.locator('#new-roles').fill('support');
    await page.locator('#new-ips').fill('127.0.0.1 ::1');
    await page.locator('dialog.create button[value="create"]').click();
    const field = page.locator('#new-key');
    await field.waitFor();
    const key = await field.inputValue();
    expect(key).toMatch(/^till_[0-9A-Za-z]{44}$/);
    await page.locator('dialog.key-once button', { hasText: 'Copy' }).click();
    await page.locator('dialog.key-once .copied', { hasText: 'Copied.' }).waitFor();
    expect(await page.evaluate<string>('navigator.clipboard.readText()')).toBe(key);
    await page.screenshot({ path: join(ARTIFACTS, 'create-key-once.png') });
    await page.locator('dialog.key-once button', { hasText: 'Done' }).click();
    await page.locator('h1', { hasText: 'browser test key' }).waitFor();
    // The key's page shows its identity, roles and networks.
    const fields = (await page.locator('dl.fields').textContent()) ?? '';
    for (const shown of ['acme-browser', 'support', '127.0.0.1/32', '::1/128']) expect(fields).toContain(shown);
    // The key is gone from the page once the dialog closed.
    expect(await page.content()).not.toContain(key);
    expect((await h.call('GET', '/orders', { key })).status).toBe(200);
    created = key;
  });

  it('revokes the key after a confirmation: the app refuses it at once (401), and the live events panel shows the refusal', async () => {
    const key = created;
    const id = key.slice(5, 21);
    await page.locator('.actions button', { hasText: 'Revoke' }).click();
    const dialog = page.locator('dialog.confirm');
    await dialog.waitFor();
    // Cancelled first: nothing changes.
    await dialog.locator('button', { hasText: 'Cancel' }).click();
    expect((await h.till.keys.get(id))?.revokedAt).toBeNull();
    await page.locator('.actions button', { hasText: 'Revoke' }).click();
    await dialog.locator('input[name="reason"]').fill('browser test');
    await dialog.locator('button[data-confirm="Revoke"]').click();
    await page.locator('.fields .badge', { hasText: 'revoked' }).waitFor();
    // The first request after the dashboard said "revoked" is refused: no second of grace.
    const refused = await h.call('GET', '/orders', { key });
    expect(refused.status).toBe(401);
    expect(refused.json.code).toBe('REVOKED');
    const event = page.locator(`.events li[data-key="${id}"]`, { hasText: 'REVOKED' });
    await event.first().waitFor({ timeout: 15_000 });
    expect(await event.first().textContent()).toContain('key.misused');
    // The audit trail on the key's page names the acting admin key.
    await page.reload();
    await page.locator('section[aria-labelledby="trail-title"] td', { hasText: 'key.revoked' }).waitFor();
    expect(await page.locator('section[aria-labelledby="trail-title"]').textContent()).toContain(`console:${h.admin.slice(5, 21)}`);
    await page.locator('svg.chart').waitFor();
    await page.screenshot({ path: join(ARTIFACTS, 'key-page.png') });
  });

  it('lists, searches and pages the keys table', async () => {
    for (let i = 0; i < 30; i++) await h.till.keys.create({ name: `paged ${i}`, scopes: ['p'] });
    await page.goto(`${h.base}/console/#/keys`);
    await page.locator('table.keys tbody tr[data-key]').first().waitFor();
    expect(await page.locator('table.keys tbody tr').count()).toBe(25);
    await page.locator('.pager button', { hasText: 'Next' }).click();
    await page.locator('.pager button:not([disabled])', { hasText: 'Previous' }).waitFor();
    await page.locator('#search').fill('team-browser');
    await page.keyboard.press('Enter');
    // Polled from here: waitForFunction with a string is eval'd in the page, which the console's CSP refuses.
    await expect.poll(() => page.locator('table.keys tbody tr').count(), { timeout: 10_000 }).toBe(1);
    expect(await page.locator('table.keys tbody').textContent()).toContain('browser test key');
    await page.locator('#search').fill('');
    await page.keyboard.press('Enter');
    await expect.poll(() => page.locator('table.keys tbody tr').count(), { timeout: 10_000 }).toBe(25);
    await page.screenshot({ path: join(ARTIFACTS, 'keys-table.png') });
  });

  it('shows the audit findings and fixes one with a click and a confirmation', async () => {
    await page.goto(`${h.base}/console/#/findings`);
    const finding = page.locator('li.finding', { hasText: 'forever key' }).filter({ hasText: 'no-expiry' });
    await finding.waitFor();
    await finding.locator('button', { hasText: 'Expire in 90 days' }).click();
    await page.locator('dialog.confirm button[data-confirm]').click();
    await page.locator('.notice', { hasText: 'done' }).waitFor();
    await finding.waitFor({ state: 'detached' });
    const forever = (await h.till.keys.list({ limit: 1000 })).keys.find((k) => k.name === 'forever key')!;
    expect(forever.expiresAt).not.toBeNull();
    await page.screenshot({ path: join(ARTIFACTS, 'findings.png') });
  });

  it('defines a role and creates an identity holding it; a read-only sign-in sees them without change buttons', async () => {
    await page.goto(`${h.base}/console/#/roles`);
    await page.locator('#define-role').click();
    await page.locator('dialog.role').waitFor();
    await page.locator('#role-name').fill('auditors');
    await page.locator('#role-scopes').fill('audit:read reports:read');
    await page.locator('dialog.role button[value="ok"]').click();
    const role = page.locator('table.roles tr[data-role="auditors"]');
    await role.waitFor();
    expect(await role.textContent()).toContain('audit:read reports:read');
    expect((await h.till.roles.get('auditors'))?.scopes).toEqual(['audit:read', 'reports:read']);

    await page.locator('nav a', { hasText: 'Identities' }).click();
    await page.locator('#create-identity').click();
    await page.locator('dialog.identity').waitFor();
    expect(await page.evaluate<string | undefined>('document.activeElement?.id')).toBe('identity-name');
    await page.locator('#identity-name').fill('Globex');
    await page.locator('#identity-id').fill('globex-browser');
    await page.locator('#identity-roles').fill('auditors');
    await page.locator('dialog.identity button[value="ok"]').click();
    await page.locator('h1', { hasText: 'Globex' }).waitFor();
    expect(await page.locator('dl.fields').textContent()).toContain('auditors');
    await page.locator('nav a', { hasText: 'Identities' }).click();
    const identity = page.locator('table.identities tr[data-identity="globex-browser"]');
    await identity.waitFor();
    expect(await identity.textContent()).toContain('auditors');

    // Deleting the role it holds is refused (409 ROLE_IN_USE), said plainly; the forced delete is cancelled.
    await page.locator('nav a', { hasText: 'Roles' }).click();
    await role.locator('button', { hasText: 'Delete' }).click();
    await page.locator('dialog.confirm button[data-confirm="Delete"]').click();
    await page.locator('.notice.error', { hasText: 'still in use' }).waitFor();
    await page.locator('dialog.confirm button[data-confirm="Delete anyway"]').waitFor();
    await page.locator('dialog.confirm button', { hasText: 'Cancel' }).click();
    await page.locator('dialog.confirm').waitFor({ state: 'detached' });
    expect(await h.till.roles.get('auditors')).not.toBeNull();
    await page.screenshot({ path: join(ARTIFACTS, 'roles.png') });

    // Read only: the same tables, no change buttons.
    await page.locator('header button', { hasText: 'Sign out' }).click();
    await page.locator('#key').fill(h.reader);
    await page.keyboard.press('Enter');
    await page.locator('.who', { hasText: 'read only' }).waitFor();
    await page.goto(`${h.base}/console/#/roles`);
    await role.waitFor();
    expect(await page.locator('#define-role, table.roles button:not(.secondary)').count()).toBe(0);
    await page.goto(`${h.base}/console/#/identities`);
    await identity.waitFor();
    expect(await page.locator('#create-identity').count()).toBe(0);
    await identity.locator('a').click();
    await page.locator('h1', { hasText: 'Globex' }).waitFor();
    expect(await page.locator('main .actions, main button').count()).toBe(0);
    // An identity's page links to its keys: the keys table filtered by identityId.
    await page.goto(`${h.base}/console/#/identities/acme-browser`);
    await page.locator('dl.fields a', { hasText: '1 keys' }).click();
    await page.locator('p.filter', { hasText: 'acme-browser' }).waitFor();
    await expect.poll(() => page.locator('table.keys tbody tr').count(), { timeout: 10_000 }).toBe(1);
    expect(await page.locator('table.keys tbody').textContent()).toContain('browser test key');
  });

  it('fits a phone screen without sideways scrolling', async () => {
    await page.setViewportSize({ width: 390, height: 844 });
    await page.goto(`${h.base}/console/#/keys`);
    await page.locator('table.keys tbody tr[data-key]').first().waitFor();
    expect(await page.evaluate('document.documentElement.scrollWidth <= window.innerWidth')).toBe(true);
    await page.screenshot({ path: join(ARTIFACTS, 'phone.png'), fullPage: true });
    for (const [hash, row] of [
      ['#/identities', 'table.identities tr[data-identity]'],
      ['#/roles', 'table.roles tr[data-role]'],
    ] as const) {
      await page.goto(`${h.base}/console/${hash}`);
      await page.locator(row).first().waitFor();
      expect(await page.evaluate('document.documentElement.scrollWidth <= window.innerWidth')).toBe(true);
    }
    await page.setViewportSize({ width: 1280, height: 800 });
  });

  it('never put a key in a URL or a cookie', () => {
    expect(sent.length).toBeGreaterThan(10);
    for (const r of sent) {
      expect(r.url).not.toMatch(/till_[0-9A-Za-z]{44}/);
      expect(r.cookie).toBeUndefined();
    }
  });
});
