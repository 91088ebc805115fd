// The Till console's dashboard: sign-in with an admin key (kept in sessionStorage only, sent in a
// header), a page per hash route (#/keys, #/keys?identityId=<id>, #/keys/<id>, #/identities,
// #/identities/<id>, #/roles, #/findings) and the live events panel.
import { api, ApiError, type AuditEntry, follow, session, whenSignedOut } from './api.js';
import { clear, h, when } from './dom.js';
import { identitiesPage, identityPage, rolesPage } from './directory.js';
import { findingsPage, keyPage, keysPage, type View } from './views.js';

interface Session {
  keyId: string;
  name: string;
  scopes: string[];
  canChange: boolean;
}

const root = document.getElementById('app') as HTMLElement;
let events: AbortController | null = null;

function signIn(message?: string): void {
  events?.abort();
  events = null;
  session.clear();
  clear(root);
  const input = h('input', {
    type: 'password',
    id: 'key',
    name: 'key',
    required: true,
    autocomplete: 'off',
    spellcheck: 'false',
    'aria-describedby': 'key-help',
  });
  const error = h('p', { class: 'error', role: 'alert' }, message ?? '');
  const form = h(
    'form',
    {
      class: 'signin',
      onsubmit: (e: Event) => {
        e.preventDefault();
        const key = input.value.trim();
        api<Session>('GET', 'session', undefined, key).then(
          (s) => {
            session.set(key);
            input.value = '';
            start(s);
          },
          (err: unknown) => {
            error.textContent =
              err instanceof ApiError
                ? err.status === 403
                  ? 'This key holds neither till:admin nor till:read.'
                  : err.message
                : 'The console could not be reached.';
            input.select();
          },
        );
      },
    },
    h('h1', {}, 'Till console'),
    h('label', { for: 'key' }, 'Admin key'),
    input,
    h(
      'p',
      { id: 'key-help', class: 'help' },
      'A key holding till:admin (changes) or till:read (looks only). It stays in this tab (sessionStorage) and goes only in request headers.',
    ),
    error,
    h('button', { type: 'submit', class: 'primary' }, 'Sign in'),
  );
  root.append(h('main', { class: 'signin-page' }, form));
  input.focus();
}

function start(s: Session): void {
  clear(root);
  const main = h('main', { id: 'main', tabindex: '-1' });
  const notice = h('p', { class: 'notice', role: 'status', 'aria-live': 'polite' });
  const nav = h(
    'nav',
    { 'aria-label': 'Console' },
    h('a', { href: '#/keys', 'data-nav': 'keys' }, 'Keys'),
    h('a', { href: '#/identities', 'data-nav': 'identities' }, 'Identities'),
    h('a', { href: '#/roles', 'data-nav': 'roles' }, 'Roles'),
    h('a', { href: '#/findings', 'data-nav': 'findings' }, 'Findings'),
  );
  const header = h(
    'header',
    {},
    h('a', { href: '#main', class: 'skip' }, 'Skip to content'),
    h('strong', { class: 'brand' }, 'Till console'),
    nav,
    h('span', { class: 'who' }, `${s.name} (${s.canChange ? 'admin' : 'read only'})`),
    h('button', { type: 'button', class: 'secondary', onclick: () => signIn() }, 'Sign out'),
  );
  const panel = eventsPanel();
  root.append(header, notice, h('div', { class: 'layout' }, main, panel));
  const view: View = {
    canChange: s.canChange,
    main,
    go: (hash) => {
      if (location.hash === hash) void route();
      else location.hash = hash;
    },
    say: (text, error = false) => {
      notice.textContent = text;
      notice.className = error ? 'notice error' : 'notice';
    },
  };
  const route = async (): Promise<void> => {
    view.say('');
    const hash = location.hash || '#/keys';
    for (const a of nav.querySelectorAll('a')) a.toggleAttribute('aria-current', hash.startsWith(`#/${a.dataset.nav}`));
    const key = /^#\/keys\/([0-9A-Za-z]{16})$/.exec(hash);
    const ofIdentity = /^#\/keys\?identityId=([^&]+)$/.exec(hash);
    const identity = /^#\/identities\/([^/]+)$/.exec(hash);
    // A hand-typed hash may hold a broken escape: shown as typed, and the API answers 400 or 404.
    const decode = (s: string) => {
      try {
        return decodeURIComponent(s);
      } catch {
        return s;
      }
    };
    if (key) await keyPage(view, key[1]!);
    else if (ofIdentity) await keysPage(view, decode(ofIdentity[1]!));
    else if (identity) await identityPage(view, decode(identity[1]!));
    else if (hash === '#/identities') await identitiesPage(view);
    else if (hash === '#/roles') await rolesPage(view);
    else if (hash === '#/findings') await findingsPage(view);
    else await keysPage(view);
  };
  window.onhashchange = () => void route().then(() => main.focus({ preventScroll: true }));
  void route();
}

/** The live events panel: security events (refusals, blocked clients, refused limits) as they happen. */
function eventsPanel(): HTMLElement {
  const list = h('ol', { class: 'events', 'aria-live': 'polite', 'aria-relevant': 'additions' });
  const state = h('span', { class: 'state' }, 'connecting');
  const panel = h('aside', { class: 'events-panel', 'aria-labelledby': 'events-title' }, h('h2', { id: 'events-title' }, 'Live events ', state), list);
  events = new AbortController();
  const add = (e: AuditEntry) => {
    const what = [e.code, e.detail, e.count && e.count > 1 ? `x${e.count}` : null].filter(Boolean).join(' ');
    list.prepend(
      h(
        'li',
        { class: `event t-${e.type.replace('.', '-')}`, 'data-key': e.keyId ?? '' },
        h('time', {}, when(e.at).slice(11, 16)),
        ' ',
        h('strong', {}, e.type),
        ' ',
        e.keyId ? h('a', { href: `#/keys/${e.keyId}` }, e.keyId) : 'no key',
        what ? ` ${what}` : '',
        e.ip ? ` from ${e.ip}` : '',
      ),
    );
    while (list.children.length > 100) list.lastElementChild?.remove();
  };
  // The last 15 minutes first, then what comes.
  void follow(`?since=${Date.now() - 15 * 60_000}`, add, (s) => (state.textContent = s), events.signal);
  return panel;
}

whenSignedOut(() => signIn('The key no longer works (revoked, disabled or expired?). Sign in again.'));
const stored = session.key();
if (stored === null) signIn();
else
  api<Session>('GET', 'session').then(
    (s) => start(s),
    () => signIn(),
  );
