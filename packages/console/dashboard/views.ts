// The pages: the keys table, a key's page, the audit findings. Each renders into `main` and reads
// what it shows from the API; changes go through a confirmation first.
import { api, ApiError, type AuditEntry } from './api.js';
import { legendOutcomes, usageChart, type UsageDay } from './chart.js';
import { confirmChange, showKeyOnce } from './dialogs.js';
import { ago, clear, h, pagerButtons, when } from './dom.js';

export interface Key {
  id: string;
  name: string;
  ownerId: string | null;
  scopes: string[];
  status: string;
  createdAt: number;
  expiresAt: number | null;
  lastUsedAt: number | null;
  revokedAt: number | null;
  revokedReason: string | null;
  rotatedFrom: string | null;
  rotatedTo: string | null;
  disabled: boolean;
  metadata: Record<string, unknown>;
  identityId: string | null;
  roles: string[];
  allowedIps: string[];
  creditsLeft?: number | null;
}

export interface View {
  canChange: boolean;
  main: HTMLElement;
  go(hash: string): void;
  say(text: string, error?: boolean): void;
}

const badge = (status: string) => h('span', { class: `badge s-${status}` }, status.replace(/_/g, ' '));
const keyLink = (id: string, text: string = id) => h('a', { href: `#/keys/${id}` }, text);

function failed(view: View, error: unknown): void {
  view.say(error instanceof ApiError ? `${error.message} (${error.code})` : 'The console could not be reached.', true);
}

// ---------------------------------------------------------------- keys table

interface ListState {
  q: string;
  status: string;
  /** Only the keys of this identity (from an identity's page), or null for all. */
  identityId: string | null;
  /** Cursors of the pages before this one (null: the first page). */
  back: Array<string | null>;
  cursor: string | null;
}

const list: ListState = { q: '', status: '', identityId: null, back: [], cursor: null };

export async function keysPage(view: View, identityId: string | null = null): Promise<void> {
  const { main } = view;
  if (identityId !== list.identityId) Object.assign(list, { identityId, back: [], cursor: null });
  const search = h('input', { type: 'search', id: 'search', value: list.q, placeholder: 'Search name, id, owner, scope', 'aria-label': 'Search keys' });
  const status = h(
    'select',
    { id: 'status', 'aria-label': 'Status' },
    ...['', 'active', 'disabled', 'expired', 'revoked', 'not_yet_valid'].map((s) =>
      h('option', { value: s, selected: s === list.status }, s === '' ? 'any status' : s.replace(/_/g, ' ')),
    ),
  );
  const body = h('tbody');
  const pager = h('div', { class: 'pager' });
  const form = h(
    'form',
    {
      class: 'toolbar',
      role: 'search',
      onsubmit: (e: Event) => {
        e.preventDefault();
        list.q = search.value.trim();
        list.status = status.value;
        list.back = [];
        list.cursor = null;
        void load();
      },
    },
    search,
    status,
    h('button', { type: 'submit' }, 'Search'),
    view.canChange ? h('button', { type: 'button', id: 'create', class: 'primary', onclick: () => void createDialog(view) }, 'Create key') : null,
  );
  clear(main);
  main.append(
    h('h1', {}, 'Keys'),
    list.identityId === null
      ? ''
      : h(
          'p',
          { class: 'filter' },
          'Only the keys of identity ',
          h('a', { href: `#/identities/${encodeURIComponent(list.identityId)}` }, list.identityId),
          '. ',
          h('a', { href: '#/keys' }, 'All keys'),
        ),
    form,
    h(
      'div',
      { class: 'table-wrap' },
      h(
        'table',
        { class: 'keys' },
        h('thead', {}, h('tr', {}, ...['Name', 'Status', 'Scopes', 'Owner', 'Last use', 'Expires', 'Id'].map((t) => h('th', { scope: 'col' }, t)))),
        body,
      ),
    ),
    pager,
  );

  async function load(): Promise<void> {
    const params = new URLSearchParams({ limit: '25' });
    if (list.q) params.set('q', list.q);
    if (list.status) params.set('status', list.status);
    if (list.identityId !== null) params.set('identityId', list.identityId);
    if (list.cursor) params.set('cursor', list.cursor);
    try {
      const page = await api<{ keys: Key[]; cursor?: string }>('GET', `keys?${params}`);
      clear(body);
      if (page.keys.length === 0) body.append(h('tr', {}, h('td', { colspan: '7', class: 'empty' }, 'No keys match.')));
      for (const k of page.keys) {
        body.append(
          h(
            'tr',
            { 'data-key': k.id },
            h('td', {}, keyLink(k.id, k.name)),
            h('td', {}, badge(k.status)),
            h('td', { class: 'scopes' }, k.scopes.join(' ')),
            h('td', {}, k.ownerId ?? '-'),
            h('td', { title: when(k.lastUsedAt) }, ago(k.lastUsedAt)),
            h('td', {}, k.expiresAt === null ? 'never' : when(k.expiresAt)),
            h('td', { class: 'mono' }, k.id),
          ),
        );
      }
      pagerButtons(pager, list, page.cursor, () => void load());
    } catch (error) {
      failed(view, error);
    }
  }
  await load();
}

async function createDialog(view: View): Promise<void> {
  const field = (label: string, input: HTMLElement) => h('label', {}, h('span', {}, label), input);
  const name = h('input', { type: 'text', name: 'name', required: true, maxlength: '200', id: 'new-name' });
  const scopes = h('input', { type: 'text', name: 'scopes', placeholder: 'orders:read invoices:*', id: 'new-scopes' });
  const owner = h('input', { type: 'text', name: 'owner', maxlength: '200', id: 'new-owner' });
  const expires = h('input', { type: 'text', name: 'expires', value: '90d', id: 'new-expires', 'aria-describedby': 'expires-help' });
  const identity = h('input', { type: 'text', name: 'identity', maxlength: '64', id: 'new-identity' });
  const roles = h('input', { type: 'text', name: 'roles', placeholder: 'support billing', id: 'new-roles' });
  const ips = h('input', { type: 'text', name: 'ips', placeholder: '203.0.113.0/24 2001:db8::/32', id: 'new-ips', 'aria-describedby': 'ips-help' });
  const error = h('p', { class: 'error', role: 'alert' });
  const dialog = h(
    'dialog',
    { class: 'create', 'aria-labelledby': 'create-title' },
    h(
      'form',
      { method: 'dialog', id: 'create-form' },
      h('h2', { id: 'create-title' }, 'Create a key'),
      field('Name', name),
      field('Scopes (space separated)', scopes),
      field('Owner (optional)', owner),
      field('Expires in', expires),
      h('small', { id: 'expires-help' }, 'A duration like 30d or 12h; empty for no expiry (the audit flags such keys).'),
      field('Identity (optional)', identity),
      field('Roles (optional, space separated)', roles),
      field('Allowed IPs (optional, space separated)', ips),
      h('small', { id: 'ips-help' }, 'Addresses or CIDR ranges the key may be used from; empty for anywhere.'),
      error,
      h(
        'div',
        { class: 'buttons' },
        h('button', { type: 'submit', value: 'cancel', class: 'secondary', formnovalidate: true }, 'Cancel'),
        h('button', { type: 'submit', value: 'create', class: 'primary' }, 'Create'),
      ),
    ),
  );
  dialog.addEventListener('submit', (e) => {
    const submitter = (e as SubmitEvent).submitter as HTMLButtonElement | null;
    if (submitter?.value !== 'create') return;
    e.preventDefault();
    const body: Record<string, unknown> = { name: name.value.trim(), scopes: scopes.value.split(/[\s,]+/).filter(Boolean) };
    if (owner.value.trim()) body.ownerId = owner.value.trim();
    if (expires.value.trim()) body.expiresIn = expires.value.trim();
    if (identity.value.trim()) body.identityId = identity.value.trim();
    const list = (input: HTMLInputElement) => input.value.split(/[\s,]+/).filter(Boolean);
    if (list(roles).length > 0) body.roles = list(roles);
    if (list(ips).length > 0) body.allowedIps = list(ips);
    api<{ key: string; record: Key }>('POST', 'keys', body).then(
      async (created) => {
        dialog.close();
        await showKeyOnce(`Key "${created.record.name}" created`, created.key);
        view.go(`#/keys/${created.record.id}`);
      },
      (err: unknown) => (error.textContent = err instanceof ApiError ? err.message : 'The console could not be reached.'),
    );
  });
  dialog.addEventListener('close', () => dialog.remove());
  document.body.appendChild(dialog);
  dialog.showModal();
  name.focus();
}

// ---------------------------------------------------------------- a key's page

export async function keyPage(view: View, id: string): Promise<void> {
  const { main } = view;
  clear(main);
  let key: Key;
  try {
    key = await api<Key>('GET', `keys/${id}`);
  } catch (error) {
    failed(view, error);
    main.append(h('p', {}, h('a', { href: '#/keys' }, 'Back to the keys')));
    return;
  }
  const fields: Array<[string, string | Node]> = [
    ['Id', h('span', { class: 'mono' }, key.id)],
    ['Status', badge(key.status)],
    ['Scopes', key.scopes.join(' ') || '(none)'],
    ['Owner', key.ownerId ?? '-'],
    ['Identity', key.identityId ?? '-'],
    ['Roles', (key.roles ?? []).join(' ') || '(none)'],
    ['Allowed IPs', (key.allowedIps ?? []).join(' ') || 'anywhere'],
    ['Created', when(key.createdAt)],
    ['Expires', key.expiresAt === null ? 'never' : when(key.expiresAt)],
    ['Last use', `${ago(key.lastUsedAt)} (${when(key.lastUsedAt)})`],
  ];
  if (key.creditsLeft !== undefined && key.creditsLeft !== null) fields.push(['Credits left', String(key.creditsLeft)]);
  if (key.revokedAt !== null) fields.push(['Revoked', `${when(key.revokedAt)}${key.revokedReason ? ` (${key.revokedReason})` : ''}`]);
  if (key.rotatedFrom) fields.push(['Replaced', keyLink(key.rotatedFrom)]);
  if (key.rotatedTo) fields.push(['Replaced by', keyLink(key.rotatedTo)]);

  const act = async (action: string, title: string, text: string, label: string, reason: boolean, body: (r: string) => Record<string, unknown>) => {
    const given = await confirmChange(title, text, label, reason);
    if (given === null) return;
    try {
      const answer = await api<{ key?: string; record?: Key }>('POST', `keys/${id}/${action}`, body(given));
      if (answer.key !== undefined && answer.record !== undefined) {
        await showKeyOnce(`Key "${key.name}" rotated`, answer.key);
        return view.go(`#/keys/${answer.record.id}`);
      }
      view.say(`${label}: done.`);
      await keyPage(view, id);
    } catch (error) {
      failed(view, error);
    }
  };
  const withReason = (r: string) => (r === '' ? {} : { reason: r });
  const live = key.status !== 'revoked' && key.rotatedTo === null;
  const actions =
    view.canChange && live
      ? h(
          'div',
          { class: 'actions' },
          key.disabled
            ? h(
                'button',
                { type: 'button', onclick: () => void act('enable', 'Enable this key?', `"${key.name}" will work again.`, 'Enable', true, withReason) },
                'Enable',
              )
            : h(
                'button',
                {
                  type: 'button',
                  onclick: () =>
                    void act('disable', 'Disable this key?', `Requests with "${key.name}" are refused until it is enabled again.`, 'Disable', true, withReason),
                },
                'Disable',
              ),
          key.disabled
            ? null
            : h(
                'button',
                {
                  type: 'button',
                  onclick: () =>
                    void act(
                      'rotate',
                      'Rotate this key?',
                      `A new key replaces "${key.name}"; this one keeps working for 24 hours, then expires.`,
                      'Rotate',
                      true,
                      (r) => ({ grace: '24h', ...withReason(r) }),
                    ),
                },
                'Rotate',
              ),
          h(
            'button',
            {
              type: 'button',
              class: 'danger',
              onclick: () =>
                void act(
                  'revoke',
                  'Revoke this key?',
                  `Requests with "${key.name}" (and the keys of its rotation chain) are refused from now on. This cannot be undone.`,
                  'Revoke',
                  true,
                  withReason,
                ),
            },
            'Revoke',
          ),
        )
      : null;

  const usage = h('section', { 'aria-labelledby': 'usage-title' }, h('h2', { id: 'usage-title' }, 'Verifications per day'));
  const trail = h('section', { 'aria-labelledby': 'trail-title' }, h('h2', { id: 'trail-title' }, 'Audit trail'));
  main.append(
    h('p', {}, h('a', { href: '#/keys' }, '← Keys')),
    h('h1', {}, key.name),
    actions ?? '',
    h('dl', { class: 'fields' }, ...fields.flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v)])),
    usage,
    trail,
  );

  try {
    const u = await api<{ days: UsageDay[] }>('GET', `keys/${id}/usage?days=30`);
    usage.append(
      usageChart(u.days),
      h('ul', { class: 'legend' }, ...legendOutcomes(u.days).map((o) => h('li', { class: `o-${o.toLowerCase().replace(/_/g, '-')}` }, o))),
    );
  } catch (error) {
    failed(view, error);
  }
  try {
    const a = await api<{ entries: AuditEntry[] }>('GET', `audit?keyId=${id}&limit=200`);
    const rows = a.entries
      .reverse()
      .map((e) =>
        h(
          'tr',
          {},
          h('td', {}, when(e.at)),
          h('td', {}, e.type),
          h('td', {}, e.actor ?? e.ip ?? '-'),
          h('td', {}, [e.code, e.reason, e.detail, e.count && e.count > 1 ? `x${e.count}` : null].filter(Boolean).join('; ') || '-'),
        ),
      );
    trail.append(
      h(
        'div',
        { class: 'table-wrap' },
        h('table', {}, h('thead', {}, h('tr', {}, ...['When', 'What', 'Who', 'Detail'].map((t) => h('th', { scope: 'col' }, t)))), h('tbody', {}, ...rows)),
      ),
    );
  } catch (error) {
    failed(view, error);
  }
}

// ---------------------------------------------------------------- findings

interface Finding {
  keyId: string;
  name: string;
  ownerId: string | null;
  kind: string;
  why: string;
  action: string;
  docs: string;
}

/** The fix each kind of finding gets, one click (and a confirmation) away. */
const FIXES: Record<string, { label: string; title: string; call: (id: string) => [string, string, Record<string, unknown>] } | undefined> = {
  'never-used': { label: 'Revoke', title: 'Revoke this unused key?', call: (id) => ['POST', `keys/${id}/revoke`, { reason: 'never used (audit)' }] },
  unused: { label: 'Revoke', title: 'Revoke this unused key?', call: (id) => ['POST', `keys/${id}/revoke`, { reason: 'unused (audit)' }] },
  'no-expiry': {
    label: 'Expire in 90 days',
    title: 'Give this key an expiry of 90 days?',
    call: (id) => ['PATCH', `keys/${id}`, { expiresIn: '90d', reason: 'no expiry (audit)' }],
  },
  'rotation-due': {
    label: 'Rotate',
    title: 'Rotate this key (24 h grace)?',
    call: (id) => ['POST', `keys/${id}/rotate`, { grace: '24h', reason: 'rotation due (audit)' }],
  },
  failures: { label: 'Disable', title: 'Disable this failing key?', call: (id) => ['POST', `keys/${id}/disable`, { reason: 'many failures (audit)' }] },
};

export async function findingsPage(view: View): Promise<void> {
  const { main } = view;
  clear(main);
  main.append(h('h1', {}, 'Audit findings'), h('p', {}, 'Keys that should not exist any more, or not like this, each with why and what to do.'));
  let report: { findings: Finding[]; keysChecked: number };
  try {
    report = await api('GET', 'report');
  } catch (error) {
    return failed(view, error);
  }
  main.append(h('p', {}, `${report.keysChecked} keys checked, ${report.findings.length} findings.`));
  const items = report.findings.map((f) => {
    const fix = FIXES[f.kind];
    return h(
      'li',
      { class: 'finding' },
      h('h3', {}, keyLink(f.keyId, f.name), ' ', h('span', { class: 'kind' }, f.kind)),
      h('p', {}, f.why),
      h('p', {}, h('strong', {}, 'Fix: '), f.action, ' ', h('a', { href: f.docs, target: '_blank', rel: 'noopener noreferrer' }, 'Why')),
      view.canChange && fix
        ? h(
            'button',
            {
              type: 'button',
              onclick: async () => {
                if ((await confirmChange(fix.title, `${f.name} (${f.keyId}): ${f.why}`, fix.label, false)) === null) return;
                const [method, path, body] = fix.call(f.keyId);
                try {
                  const answer = await api<{ key?: string }>(method, path, body);
                  if (answer.key !== undefined) await showKeyOnce(`Key "${f.name}" rotated`, answer.key);
                  view.say(`${fix.label}: done.`);
                  await findingsPage(view);
                } catch (error) {
                  failed(view, error);
                }
              },
            },
            fix.label,
          )
        : null,
    );
  });
  main.append(items.length === 0 ? h('p', {}, 'Nothing to fix.') : h('ul', { class: 'findings' }, ...items));
}
