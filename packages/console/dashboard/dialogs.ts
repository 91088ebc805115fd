// Dialogs: a confirmation before every change that takes access away, and the one-time display of a
// new key. Native <dialog>: focus moves into it, Escape closes it, the page behind is inert.
import { h } from './dom.js';

/** Asks before a change; resolves with the reason typed (possibly empty), or null when cancelled. */
export function confirmChange(title: string, text: string, action: string, withReason: boolean): Promise<string | null> {
  return new Promise((resolve) => {
    const reason = h('input', {
      type: 'text',
      name: 'reason',
      maxlength: '200',
      'aria-label': 'Reason (kept in the audit trail)',
      placeholder: 'Reason (kept in the audit trail)',
    });
    const dialog = h(
      'dialog',
      { class: 'confirm', 'aria-labelledby': 'confirm-title' },
      h(
        'form',
        { method: 'dialog' },
        h('h2', { id: 'confirm-title' }, title),
        h('p', {}, text),
        withReason ? reason : null,
        h(
          'div',
          { class: 'buttons' },
          h('button', { value: 'cancel', type: 'submit', class: 'secondary' }, 'Cancel'),
          h('button', { value: 'ok', type: 'submit', class: 'danger', 'data-confirm': action }, action),
        ),
      ),
    );
    dialog.addEventListener('close', () => {
      dialog.remove();
      resolve(dialog.returnValue === 'ok' ? reason.value.trim() : null);
    });
    document.body.appendChild(dialog);
    dialog.showModal();
    (withReason ? reason : dialog.querySelector<HTMLButtonElement>('button.secondary'))?.focus();
  });
}

/** Shows a full key once, with a copy button; it is dropped from the page when the dialog closes. */
export function showKeyOnce(title: string, key: string): Promise<void> {
  return new Promise((resolve) => {
    const field = h('input', { type: 'text', readonly: true, value: key, class: 'secret', 'aria-label': 'The new key', id: 'new-key' });
    const status = h('span', { role: 'status', class: 'copied' });
    const copy = h(
      'button',
      {
        type: 'button',
        onclick: () => {
          field.select();
          navigator.clipboard.writeText(key).then(
            () => (status.textContent = 'Copied.'),
            () => (status.textContent = 'Copy failed: select the key and copy it by hand.'),
          );
        },
      },
      'Copy',
    );
    const dialog = h(
      'dialog',
      { class: 'key-once', 'aria-labelledby': 'key-title' },
      h(
        'form',
        { method: 'dialog' },
        h('h2', { id: 'key-title' }, title),
        h('p', {}, 'This is the only time the key is shown: Till keeps only its hash. Copy it now and hand it to its holder.'),
        h('div', { class: 'copy-row' }, field, copy),
        status,
        h('div', { class: 'buttons' }, h('button', { type: 'submit', value: 'done' }, 'Done')),
      ),
    );
    dialog.addEventListener('close', () => {
      field.value = '';
      dialog.remove();
      resolve();
    });
    document.body.appendChild(dialog);
    dialog.showModal();
    field.select();
    copy.focus();
  });
}
