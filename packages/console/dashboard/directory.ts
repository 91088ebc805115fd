// The identities and roles pages: an identities table (paged), an identity's page with its key count,
// live credits and a link to its keys, and the roles table. Changes go through a dialog, deletions
// through a confirmation; a deletion the API refuses because something still uses the identity or
// role (409) is said plainly and can be forced after a second confirmation.
import { api, ApiError } from './api.js';
import { confirmChange } from './dialogs.js';
import { clear, h, pagerButtons, when } from './dom.js';
import type { View } from './views.js';

interface Identity {
  id: string;
  name: string;
  metadata: Record<string, unknown>;
  limits: Array<{ name: string; limit: number; window: number }>;
  credits: { remaining: number; refill: { amount: number; interval: number } | null } | null;
  allowedIps: string[];
  roles: string[];
  createdAt: number;
  updatedAt: number;
  keyCount?: number;
  creditsLeft?: number | null;
}

interface Role {
  name: string;
  scopes: string[];
  createdAt: number;
  updatedAt: number;
}

const words = (input: HTMLInputElement) => input.value.split(/[\s,]+/).filter(Boolean);
const limitsText = (i: Identity) => i.limits.map((l) => `${l.name} ${l.limit}/${l.window / 1000}s`).join(', ') || 'none';
const creditsText = (i: Identity) =>
  i.credits === null
    ? 'unlimited'
    : `${i.credits.remaining}${i.credits.refill ? ` (refill to ${i.credits.refill.amount} every ${i.credits.refill.interval / 1000}s)` : ''}`;
const identityLink = (id: string, text: string = id) => h('a', { href: `#/identities/${encodeURIComponent(id)}` }, text);

function failed(view: View, error: unknown): void {
  view.say(error instanceof ApiError ? `${error.message} (${error.code})` : 'The console could not be reached.', true);
}

function table(cls: string, heads: string[], body: HTMLElement): HTMLElement {
  return h('div', { class: 'table-wrap' }, h('table', { class: cls }, h('thead', {}, h('tr', {}, ...heads.map((t) => h('th', { scope: 'col' }, t)))), body));
}

/**
 * A dialog of text fields; `submit` gets the inputs by name and resolves when done (the dialog then
 * closes) or throws (its message shown in the dialog).
 */
function formDialog(
  cls: string,
  title: string,
  fields: Array<{ name: string; label: string; value?: string; required?: boolean; placeholder?: string; readonly?: boolean }>,
  action: string,
  submit: (values: Record<string, HTMLInputElement>) => Promise<void>,
): void {
  const inputs: Record<string, HTMLInputElement> = {};
  const error = h('p', { class: 'error', role: 'alert' });
  const rows = fields.map((f) => {
    const input = h('input', {
      type: 'text',
      name: f.name,
      id: `${cls}-${f.name}`,
      value: f.value ?? '',
      required: f.required === true,
      readonly: f.readonly === true,
      placeholder: f.placeholder,
      maxlength: '200',
    });
    inputs[f.name] = input;
    return h('label', {}, h('span', {}, f.label), input);
  });
  const dialog = h(
    'dialog',
    { class: `create ${cls}`, 'aria-labelledby': `${cls}-title` },
    h(
      'form',
      { method: 'dialog' },
      h('h2', { id: `${cls}-title` }, title),
      ...rows,
      error,
      h(
        'div',
        { class: 'buttons' },
        h('button', { type: 'submit', value: 'cancel', class: 'secondary', formnovalidate: true }, 'Cancel'),
        h('button', { type: 'submit', value: 'ok', class: 'primary' }, action),
      ),
    ),
  );
  dialog.addEventListener('submit', (e) => {
    const submitter = (e as SubmitEvent).submitter as HTMLButtonElement | null;
    if (submitter?.value !== 'ok') return;
    e.preventDefault();
    submit(inputs).then(
      () => dialog.close(),
      (err: unknown) => (error.textContent = err instanceof ApiError ? err.message : 'The console could not be reached.'),
    );
  });
  dialog.addEventListener('close', () => dialog.remove());
  document.body.appendChild(dialog);
  dialog.showModal();
  rows
    .map((r) => r.querySelector('input'))
    .find((i) => i !== null && !i.readOnly)
    ?.focus();
}

/**
 * Deletes after a confirmation; a 409 `inUse` is said plainly and, after a second confirmation,
 * the deletion is made with `force`.
 */
async function deleteWithForce(view: View, path: string, what: string, inUse: string, forceText: string, done: () => void): Promise<void> {
  const reason = await confirmChange(`Delete ${what}?`, `${what} is deleted. This cannot be undone.`, 'Delete', true);
  if (reason === null) return;
  const body = (force: boolean) => ({ force, ...(reason === '' ? {} : { reason }) });
  try {
    await api('DELETE', path, body(false));
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 409 && error.code === inUse)) return failed(view, error);
    view.say(`${what} is still in use: ${error.message}`, true);
    if ((await confirmChange(`Delete ${what} anyway?`, `${error.message} ${forceText}`, 'Delete anyway', false)) === null) return;
    try {
      await api('DELETE', path, body(true));
    } catch (again) {
      return failed(view, again);
    }
  }
  view.say(`${what}: deleted.`);
  done();
}

// ---------------------------------------------------------------- identities

const pages: { back: Array<string | null>; cursor: string | null } = { back: [], cursor: null };

export async function identitiesPage(view: View): Promise<void> {
  const { main } = view;
  const body = h('tbody');
  const pager = h('div', { class: 'pager' });
  clear(main);
  main.append(
    h('h1', {}, 'Identities'),
    view.canChange
      ? h(
          'div',
          { class: 'toolbar' },
          h('button', { type: 'button', id: 'create-identity', class: 'primary', onclick: () => createIdentity(view) }, 'Create identity'),
        )
      : '',
    table('identities', ['Id', 'Name', 'Limits', 'Credits', 'Allowed IPs', 'Roles'], body),
    pager,
  );
  async function load(): Promise<void> {
    const params = new URLSearchParams({ limit: '25' });
    if (pages.cursor) params.set('cursor', pages.cursor);
    try {
      const page = await api<{ identities: Identity[]; cursor?: string }>('GET', `identities?${params}`);
      clear(body);
      if (page.identities.length === 0) body.append(h('tr', {}, h('td', { colspan: '6', class: 'empty' }, 'No identities yet.')));
      for (const i of page.identities)
        body.append(
          h(
            'tr',
            { 'data-identity': i.id },
            h('td', { class: 'mono' }, identityLink(i.id)),
            h('td', {}, i.name),
            h('td', {}, limitsText(i)),
            h('td', {}, creditsText(i)),
            h('td', { class: 'scopes' }, i.allowedIps.join(' ') || 'anywhere'),
            h('td', { class: 'scopes' }, i.roles.join(' ') || '-'),
          ),
        );
      pagerButtons(pager, pages, page.cursor, () => void load());
    } catch (error) {
      failed(view, error);
    }
  }
  await load();
}

function createIdentity(view: View): void {
  formDialog(
    'identity',
    'Create an identity',
    [
      { name: 'name', label: 'Name', required: true },
      { name: 'id', label: 'Id (optional, drawn when empty)' },
      { name: 'roles', label: 'Roles (optional, space separated)', placeholder: 'support billing' },
      { name: 'allowedIps', label: 'Allowed IPs (optional, space separated)', placeholder: '203.0.113.0/24' },
    ],
    'Create',
    async (f) => {
      const body: Record<string, unknown> = { name: f.name!.value.trim() };
      if (f.id!.value.trim()) body.id = f.id!.value.trim();
      if (words(f.roles!).length > 0) body.roles = words(f.roles!);
      if (words(f.allowedIps!).length > 0) body.allowedIps = words(f.allowedIps!);
      const created = await api<Identity>('POST', 'identities', body);
      view.go(`#/identities/${encodeURIComponent(created.id)}`);
    },
  );
}

export async function identityPage(view: View, id: string): Promise<void> {
  const { main } = view;
  clear(main);
  let identity: Identity;
  try {
    identity = await api<Identity>('GET', `identities/${encodeURIComponent(id)}`);
  } catch (error) {
    failed(view, error);
    main.append(h('p', {}, h('a', { href: '#/identities' }, 'Back to the identities')));
    return;
  }
  const fields: Array<[string, string | Node]> = [
    ['Id', h('span', { class: 'mono' }, identity.id)],
    ['Name', identity.name],
    ['Keys', h('a', { href: `#/keys?identityId=${encodeURIComponent(identity.id)}` }, `${identity.keyCount ?? 0} keys`)],
    ['Limits', limitsText(identity)],
    ['Credits', creditsText(identity)],
    ['Allowed IPs', identity.allowedIps.join(' ') || 'anywhere'],
    ['Roles', identity.roles.join(' ') || '(none)'],
    ['Created', when(identity.createdAt)],
    ['Updated', when(identity.updatedAt)],
  ];
  if (identity.creditsLeft !== undefined && identity.creditsLeft !== null) fields.push(['Credits left', String(identity.creditsLeft)]);
  const path = `identities/${encodeURIComponent(id)}`;
  const actions = view.canChange
    ? h(
        'div',
        { class: 'actions' },
        h(
          'button',
          {
            type: 'button',
            onclick: () =>
              formDialog(
                'identity-edit',
                `Edit "${identity.name}"`,
                [
                  { name: 'name', label: 'Name', required: true, value: identity.name },
                  { name: 'allowedIps', label: 'Allowed IPs (space separated; empty for anywhere)', value: identity.allowedIps.join(' ') },
                  { name: 'roles', label: 'Roles (space separated)', value: identity.roles.join(' ') },
                  { name: 'reason', label: 'Reason (kept in the audit trail)' },
                ],
                'Save',
                async (f) => {
                  const body: Record<string, unknown> = { name: f.name!.value.trim(), allowedIps: words(f.allowedIps!), roles: words(f.roles!) };
                  if (f.reason!.value.trim()) body.reason = f.reason!.value.trim();
                  await api('PATCH', path, body);
                  view.say('Saved.');
                  await identityPage(view, id);
                },
              ),
          },
          'Edit',
        ),
        h(
          'button',
          {
            type: 'button',
            class: 'danger',
            onclick: () =>
              void deleteWithForce(
                view,
                path,
                `Identity "${identity.name}"`,
                'IDENTITY_IN_USE',
                'Deleting it anyway leaves its keys refused as disabled.',
                () => view.go('#/identities'),
              ),
          },
          'Delete',
        ),
      )
    : null;
  main.append(
    h('p', {}, h('a', { href: '#/identities' }, '← Identities')),
    h('h1', {}, identity.name),
    actions ?? '',
    h('dl', { class: 'fields' }, ...fields.flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v)])),
  );
}

// ---------------------------------------------------------------- roles

export async function rolesPage(view: View): Promise<void> {
  const { main } = view;
  const body = h('tbody');
  const define = (role?: Role) =>
    formDialog(
      'role',
      role ? `Replace the scopes of "${role.name}"` : 'Define a role',
      [
        { name: 'name', label: 'Name', required: true, value: role?.name ?? '', readonly: role !== undefined, placeholder: 'billing.read-only' },
        { name: 'scopes', label: 'Scopes (space separated)', value: role?.scopes.join(' ') ?? '', placeholder: 'invoices:read' },
        { name: 'reason', label: 'Reason (kept in the audit trail)' },
      ],
      role ? 'Replace' : 'Define',
      async (f) => {
        const name = f.name!.value.trim();
        const b: Record<string, unknown> = { scopes: words(f.scopes!) };
        if (f.reason!.value.trim()) b.reason = f.reason!.value.trim();
        await api('PUT', `roles/${encodeURIComponent(name)}`, b);
        view.say(`Role "${name}": saved.`);
        await rolesPage(view);
      },
    );
  clear(main);
  main.append(
    h('h1', {}, 'Roles'),
    view.canChange
      ? h('div', { class: 'toolbar' }, h('button', { type: 'button', id: 'define-role', class: 'primary', onclick: () => define() }, 'Define role'))
      : '',
    table('roles', ['Name', 'Scopes', 'Holders', 'Updated', view.canChange ? 'Change' : ''], body),
  );
  let roles: Role[];
  try {
    roles = (await api<{ roles: Role[] }>('GET', 'roles')).roles;
  } catch (error) {
    return failed(view, error);
  }
  if (roles.length === 0) body.append(h('tr', {}, h('td', { colspan: '5', class: 'empty' }, 'No roles yet.')));
  for (const r of roles) {
    const holders = h('td', {});
    holders.append(
      h(
        'button',
        {
          type: 'button',
          class: 'secondary',
          onclick: async () => {
            try {
              const got = await api<{ holders: { keys: string[]; identities: string[] } }>('GET', `roles/${encodeURIComponent(r.name)}`);
              clear(holders);
              holders.append(
                `${got.holders.keys.length} keys, ${got.holders.identities.length} identities`,
                ...got.holders.identities.flatMap((i) => [' ', identityLink(i)]),
              );
            } catch (error) {
              failed(view, error);
            }
          },
        },
        'Show',
      ),
    );
    body.append(
      h(
        'tr',
        { 'data-role': r.name },
        h('td', { class: 'mono' }, r.name),
        h('td', { class: 'scopes' }, r.scopes.join(' ') || '(none)'),
        holders,
        h('td', {}, when(r.updatedAt)),
        h(
          'td',
          {},
          view.canChange
            ? h(
                'div',
                { class: 'row-actions' },
                h('button', { type: 'button', onclick: () => define(r) }, 'Replace'),
                ' ',
                h(
                  'button',
                  {
                    type: 'button',
                    class: 'danger',
                    onclick: () =>
                      void deleteWithForce(
                        view,
                        `roles/${encodeURIComponent(r.name)}`,
                        `Role "${r.name}"`,
                        'ROLE_IN_USE',
                        'Deleting it anyway takes its scopes from them at once.',
                        () => void rolesPage(view),
                      ),
                  },
                  'Delete',
                ),
              )
            : null,
        ),
      ),
    );
  }
}
