// The admin console's script (docs/console.md; served by the sidecar as /page.js — the page's CSP allows
// no inline script). Over 500 lines because it is the whole console in one file with no build step:
// lists with search and cursor paging, the dialogs of the actions, the allowlist forms, the event stream.
'use strict';
const $ = (s, root) => (root || document).querySelector(s);
const api = '/api/v1';
const TOKEN_KEY = 'idprov-token';
/** Rows per page of every list. */
const PAGE = 50;
let token = sessionStorage.getItem(TOKEN_KEY) || '';
let reachable = true;
/** Set when the server refused the token, until a new one is pasted: the message says so. */
let tokenWasRefused = false;
const REFUSED = 'The server refused the admin token: it expired, was revoked or is mistyped. Paste a new one.';

// ---------------------------------------------------------------------------------------------
// Messages, errors, the API

function say(text, isError) {
  const m = $('#message');
  m.textContent = text || '';
  m.className = isError ? 'error' : '';
}

class ApiError extends Error {
  constructor(kind, status, code, message) {
    super(message);
    this.kind = kind;
    this.status = status;
    this.code = code;
  }
}

function setReachable(ok) {
  if (ok === reachable) return;
  reachable = ok;
  if (ok) {
    say('Connected to the server again.');
    refresh();
  }
}

function setLive(state) {
  const l = $('#live');
  l.textContent = state === 'live' ? 'live' : state === 'connecting' ? 'connecting…' : 'not connected';
  l.className = 'live ' + (state === 'live' ? 'on' : 'off');
}

/** The token was refused (expired, revoked, mistyped): forget it and ask for a new one. */
function tokenRefused() {
  token = '';
  sessionStorage.removeItem(TOKEN_KEY);
  $('#token').value = '';
  tokenWasRefused = true;
  setLive('off');
  say(REFUSED, true);
  $('#token').focus();
}

async function call(method, path, body) {
  if (!token) throw new ApiError('no-token', 0, '', 'Paste an admin token first.');
  let res;
  try {
    res = await fetch(api + path, {
      method,
      headers: Object.assign({ authorization: 'Bearer ' + token }, body ? { 'content-type': 'application/json' } : {}),
      body: body ? JSON.stringify(body) : undefined,
    });
  } catch (e) {
    setReachable(false);
    throw new ApiError('unreachable', 0, '', 'Cannot reach the idprov server at ' + location.host + ': is it running? The page keeps trying.');
  }
  setReachable(true);
  if (res.status === 204) return null;
  const data = await res.json().catch(() => ({}));
  if (res.status === 401) {
    tokenRefused();
    throw new ApiError('unauthenticated', 401, 'unauthenticated', REFUSED);
  }
  if (!res.ok) {
    const code = (data.error && data.error.code) || String(res.status);
    let msg = (data.error && data.error.message) || res.statusText;
    if (res.status === 403) msg = 'This token may not do that (' + msg + ').';
    if (res.status === 404 && code === 'not-found' && msg === 'no such route') msg = 'The server does not offer this yet (' + method + ' ' + path.split('?')[0] + '): is it an older version?';
    throw new ApiError('refused', res.status, code, msg);
  }
  return data;
}

/**
 * The API path of a record (with an action): the ID percent-encoded as a path segment, or, for "." and
 * "..", which the browser collapses even percent-encoded, in the query (docs/admin-api.md).
 */
function recordPath(collection, id, action) {
  const tail = action ? '/' + action : '';
  if (id === '.' || id === '..') return '/' + collection + '/~' + tail + '?id=' + encodeURIComponent(id);
  return '/' + collection + '/' + encodeURIComponent(id) + tail;
}

// ---------------------------------------------------------------------------------------------
// Formatting

/** A time (ISO string or epoch seconds) as local YYYY-MM-DD hh:mm:ss: short, sortable, the same in every locale. */
function when(t) {
  if (t === undefined || t === null || t === '') return '';
  const d = typeof t === 'number' ? new Date(t * 1000) : new Date(t);
  if (isNaN(d.getTime())) return String(t);
  const p = (n) => String(n).padStart(2, '0');
  return d.getFullYear() + '-' + p(d.getMonth() + 1) + '-' + p(d.getDate()) + ' ' + p(d.getHours()) + ':' + p(d.getMinutes()) + ':' + p(d.getSeconds());
}
const isoOf = (t) => (t === undefined || t === null || t === '' ? '' : (typeof t === 'number' ? new Date(t * 1000) : new Date(t)).toISOString());
const plural = (n, one, many) => n + ' ' + (n === 1 ? one : many || one + 's');

/** Crockford base32, the fingerprint alphabet (docs/spec/idprov-coap-v1.md §5). */
const FP_ALPHABET = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
/** A typed fingerprint in canonical form (any case, spaces, O for 0, I/L for 1), or null. */
function canonicalFingerprint(typed) {
  const s = typed.toUpperCase().replace(/[\s-]+/g, '').replace(/O/g, '0').replace(/[IL]/g, '1');
  if (s.length !== 16 || [...s].some((c) => !FP_ALPHABET.includes(c))) return null;
  return s.slice(0, 4) + '-' + s.slice(4, 8) + '-' + s.slice(8, 12) + '-' + s.slice(12, 16);
}

function el(tag, props, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (k in e && typeof v !== 'string') e[k] = v;
    else e.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children) if (c !== undefined && c !== null) e.append(c);
  return e;
}

// ---------------------------------------------------------------------------------------------
// Dialogs: a modal <dialog> (focus stays inside, Escape cancels), focus back where it was after.

let dialogOpener = null;
/** Tab and Shift+Tab go round the dialog's controls: the focus never leaves an open dialog. */
function trapTab(ev) {
  if (ev.key !== 'Tab') return;
  const all = [...$('#dialog').querySelectorAll('button, input, select, textarea, [tabindex]:not([tabindex="-1"])')].filter((c) => !c.disabled && c.getClientRects().length);
  if (!all.length) return;
  const first = all[0];
  const last = all[all.length - 1];
  if (ev.shiftKey && (document.activeElement === first || !$('#dialog').contains(document.activeElement))) {
    ev.preventDefault();
    last.focus();
  } else if (!ev.shiftKey && (document.activeElement === last || !$('#dialog').contains(document.activeElement))) {
    ev.preventDefault();
    first.focus();
  }
}
/**
 * Ask in the dialog. `body`: nodes; `validate()`: an error text or ''; `submit()`: the action (its error
 * is shown in the dialog, which stays open). Resolves true when the action ran.
 */
function ask({ title, body, ok, okClass, validate, submit, focus }) {
  const d = $('#dialog');
  $('#dialog-title').textContent = title;
  $('#dialog-body').replaceChildren(...body);
  $('#dialog-error').textContent = '';
  const okB = $('#dialog-ok');
  okB.textContent = ok;
  okB.className = okClass || '';
  okB.disabled = false;
  dialogOpener = document.activeElement;
  return new Promise((resolve) => {
    let done = false;
    const finish = (v) => {
      if (done) return;
      done = true;
      $('#dialog-form').removeEventListener('submit', onSubmit);
      $('#dialog-cancel').removeEventListener('click', onCancel);
      d.removeEventListener('close', onClose);
      d.removeEventListener('cancel', onClose);
      d.removeEventListener('keydown', trapTab);
      d.removeEventListener('keydown', onKey);
      if (d.open) d.close();
      resolve(v);
    };
    const onSubmit = async (ev) => {
      ev.preventDefault();
      const why = validate ? validate() : '';
      if (why) {
        $('#dialog-error').textContent = why;
        return;
      }
      okB.disabled = true;
      try {
        await submit();
        finish(true);
      } catch (e) {
        $('#dialog-error').textContent = e.message;
        okB.disabled = false;
        if (e.kind === 'unauthenticated') finish(false);
      }
    };
    const onCancel = () => finish(false);
    const onClose = () => finish(false);
    // Escape ends the dialog in the key's own turn: the browser's 'close' comes a turn later (and its
    // 'cancel' not always), and the opening button must be ready for the next key at once.
    const onKey = (ev) => {
      if (ev.key !== 'Escape') return;
      ev.preventDefault();
      finish(false);
    };
    $('#dialog-form').addEventListener('submit', onSubmit);
    $('#dialog-cancel').addEventListener('click', onCancel);
    d.addEventListener('close', onClose);
    d.addEventListener('cancel', onClose);
    d.addEventListener('keydown', trapTab);
    d.addEventListener('keydown', onKey);
    d.showModal();
    const f = focus ? $(focus, d) : null;
    (f || $('#dialog-cancel')).focus();
  }).finally(() => {
    // Back to the control that opened the dialog, or (when a redraw replaced it) the view's heading.
    const o = dialogOpener;
    dialogOpener = null;
    if (o && o.isConnected && !o.disabled) o.focus();
    else {
      const h = $('.view:not([hidden]) h2');
      if (h) h.focus();
    }
  });
}

function field(id, label, input) {
  return el('div', { class: 'field' }, el('label', { for: id, text: label }), input);
}

function approveDialog(p) {
  const typed = el('input', { id: 'dlg-typed', type: 'text', autocomplete: 'off', spellcheck: 'false', placeholder: 'e.g. ' + p.fingerprint });
  const check = el('input', { id: 'dlg-match', type: 'checkbox' });
  return ask({
    title: 'Approve ' + p.id + '?',
    body: [
      el('p', { text: 'Approve this key only if it is the one the device shows on its label or display.' }),
      el('div', { class: 'fp-box' }, el('span', { class: 'muted', text: 'Key fingerprint' }), el('output', { id: 'dlg-fp', class: 'fp', text: p.fingerprint })),
      el('p', { class: 'muted', text: 'Type: ' + (p.type || '-') + (p.mac ? ', MAC ' + p.mac : '') + (p.source ? ', from ' + p.source : '') + ', ' + plural(p.count || 0, 'request') }),
      el('div', { class: 'field check' }, check, el('label', { for: 'dlg-match', text: 'The fingerprint on the device matches' })),
      field('dlg-typed', 'Or type the fingerprint from the label to have it checked', typed),
    ],
    ok: 'Approve',
    okClass: 'ok',
    focus: '#dlg-match',
    validate: () => {
      const t = typed.value.trim();
      if (t) {
        const c = canonicalFingerprint(t);
        // An old-format fingerprint (base64url) is checked by the server.
        if (c && c !== p.fingerprint) return 'The typed fingerprint ' + c + ' is not this key\'s (' + p.fingerprint + '): do not approve.';
        return '';
      }
      return check.checked ? '' : 'Compare the fingerprint with the device\'s label first, then tick the box (or type it).';
    },
    submit: async () => {
      const t = typed.value.trim();
      const pin = t && canonicalFingerprint(t) ? p.fingerprint : t || p.fingerprint;
      try {
        await call('POST', recordPath('pending', p.id, 'approve'), { fingerprint: pin });
      } catch (e) {
        if (e.status === 409 && t) throw new Error('The server says the fingerprint does not match the key of ' + p.id + ': do not approve. (' + e.message + ')');
        throw e;
      }
      say('Approved ' + p.id + ' (key ' + p.fingerprint + '). It gets its token at its next poll.');
    },
  });
}

function reasonDialog({ title, text, label, ok, submit, required }) {
  const r = el('textarea', { id: 'dlg-reason', rows: '3', maxlength: '500' });
  return ask({
    title,
    body: [el('p', { text }), field('dlg-reason', label, r)],
    ok,
    okClass: 'bad',
    focus: '#dlg-reason',
    validate: () => (required && !r.value.trim() ? 'Give a reason: it is kept in the event log.' : ''),
    submit: () => submit(r.value.trim()),
  });
}

// ---------------------------------------------------------------------------------------------
// Lists: search, cursor paging ("next") of PAGE rows, a table that becomes cards on a narrow screen.

const evidenceText = (f) =>
  Object.entries(f.evidence || {})
    .map(([k, v]) => k + '=' + ((f.fingerprints && f.fingerprints[k]) || (/^[0-9a-f]{64}$/i.test(v) ? 'key ' + v.slice(0, 8) + '…' : v)))
    .join(' ');
const deviceState = (d) => (d.revoked ? 'revoked by ' + (d.revoked.by || '?') + (d.revoked.reason ? ' (' + d.revoked.reason + ')' : '') : 'active');
const allowHow = (a) => [a.fingerprint ? 'key' : '', a.mac ? 'MAC' : '', a.hasSecret ? 'secret' : ''].filter(Boolean).join(', ');

const LISTS = {
  pending: {
    path: '/pending',
    params: { status: 'pending' },
    search: 'part of a device ID',
    empty: 'No device is waiting.',
    cols: [
      ['Device ID', (p) => p.id, 'code id'],
      ['Key fingerprint', (p) => p.fingerprint, 'code fp'],
      ['Type', (p) => p.type],
      ['MAC', (p) => p.mac, 'code'],
      ['Source', (p) => p.source, 'code'],
      ['Last seen', (p) => p.lastSeen, 'time'],
      ['Requests', (p) => p.count, 'num'],
    ],
    actions: (p) => [
      ['Approve', 'ok approve', () => approveDialog(p)],
      [
        'Reject',
        'bad reject',
        () =>
          reasonDialog({
            title: 'Reject ' + p.id + '?',
            text: 'Its requests are refused (4.03) from now on, even with an allowlist entry. The Rejected view can re-admit it.',
            label: 'Reason (kept in the event log)',
            ok: 'Reject',
            required: true,
            submit: async (reason) => {
              await call('POST', recordPath('pending', p.id, 'reject'), { reason });
              say('Rejected ' + p.id + '.');
            },
          }),
      ],
    ],
  },
  devices: {
    path: '/devices',
    search: 'part of a device ID',
    empty: 'No device is provisioned.',
    cols: [
      ['Device ID', (d) => d.id, 'code id'],
      ['Key fingerprint', (d) => d.fingerprint, 'code fp'],
      ['Type', (d) => d.type],
      ['Via', (d) => d.via],
      ['Last seen', (d) => d.lastSeen, 'time'],
      ['Token expires', (d) => d.tokenExp, 'time'],
      ['State', deviceState],
    ],
    actions: (d) =>
      d.revoked
        ? [
            [
              'Re-enable',
              'ok enable',
              async () => {
                await call('POST', recordPath('devices', d.id, 'enable'));
                say(d.id + ' is enabled again.');
              },
            ],
          ]
        : [
            [
              'Revoke',
              'bad revoke',
              () =>
                reasonDialog({
                  title: 'Revoke ' + d.id + '?',
                  text: 'Its token stops working at once: refreshes and verifications fail.',
                  label: 'Reason (kept with the revocation)',
                  ok: 'Revoke',
                  required: true,
                  submit: async (reason) => {
                    await call('POST', recordPath('devices', d.id, 'revoke'), { reason });
                    say('Revoked ' + d.id + '; its refreshes stop now.');
                  },
                }),
            ],
          ],
  },
  allowlist: {
    path: '/allowlist',
    search: 'part of a device ID',
    empty: 'The allowlist is empty.',
    cols: [
      ['Device ID', (a) => a.id, 'code id'],
      ['Key fingerprint', (a) => a.fingerprint, 'code fp'],
      ['MAC', (a) => a.mac, 'code'],
      ['Admitted by', allowHow],
      ['Type', (a) => a.type],
      ['Expires', (a) => a.expires, 'time'],
      ['Used', (a) => a.consumedAt, 'time'],
    ],
    actions: (a) => [
      [
        'Delete',
        'bad delete',
        () =>
          ask({
            title: 'Delete the allowlist entry of ' + a.id + '?',
            body: [el('p', { text: 'A device already provisioned keeps its token; a new request of this ID then waits for approval.' })],
            ok: 'Delete',
            okClass: 'bad',
            submit: async () => {
              await call('DELETE', recordPath('allowlist', a.id));
              say('Deleted the allowlist entry of ' + a.id + '.');
            },
          }),
      ],
    ],
  },
  rejected: {
    path: '/pending',
    params: { status: 'rejected' },
    search: 'part of a device ID',
    empty: 'No ID is rejected.',
    cols: [
      ['Device ID', (p) => p.id, 'code id'],
      ['Key fingerprint', (p) => p.fingerprint, 'code fp'],
      ['Source', (p) => p.source, 'code'],
      ['Rejected', (p) => p.decidedAt, 'time'],
      ['By', (p) => p.decidedBy],
      ['Reason', (p) => p.decidedReason],
    ],
    actions: (p) => [
      [
        'Re-admit',
        'ok unreject',
        async () => {
          await call('POST', recordPath('pending', p.id, 'unreject'));
          say(p.id + ' is no longer rejected; its next request waits for approval.');
        },
      ],
    ],
  },
  flags: {
    path: '/flags',
    params: { status: 'open' },
    filter: { name: 'status', label: 'Show', options: [['open', 'open flags'], ['cleared', 'cleared flags'], ['all', 'all flags']] },
    search: 'part of a flag or device ID',
    empty: 'No flags.',
    cols: [
      ['Kind', (f) => f.kind, 'nowrap'],
      ['Devices', (f) => f.deviceIds.join(', '), 'code id'],
      ['Evidence', evidenceText, 'wrap'],
      ['Last seen', (f) => f.lastSeen, 'time'],
      ['Count', (f) => f.count, 'num'],
      ['State', (f) => (f.status === 'cleared' ? 'cleared by ' + (f.clearedBy || '?') : 'open')],
    ],
    actions: (f) =>
      f.status === 'cleared'
        ? []
        : [
            [
              'Clear',
              'ok clear',
              () =>
                ask({
                  title: 'Clear the ' + f.kind + ' flag of ' + f.deviceIds.join(', ') + '?',
                  body: [el('p', { text: 'Clear it once you have looked into it.' }), field('dlg-note', 'What you found (optional, kept in the event log)', el('textarea', { id: 'dlg-note', rows: '2', maxlength: '500' }))],
                  ok: 'Clear',
                  okClass: 'ok',
                  focus: '#dlg-note',
                  submit: async () => {
                    await call('POST', recordPath('flags', f.id, 'clear'), { note: $('#dlg-note').value.trim() || 'cleared in the console' });
                    say('Cleared the ' + f.kind + ' flag of ' + f.deviceIds.join(', ') + '.');
                  },
                }),
            ],
          ],
  },
  events: {
    local: () => events.items,
    search: 'kind, device, actor or detail',
    empty: 'No events yet.',
    key: (e) => String(e.seq),
    more: { label: 'Load older events', run: () => loadOlderEvents() },
    cols: [
      ['#', (e) => e.seq, 'num'],
      ['Time', (e) => e.at, 'time'],
      ['Kind', (e) => e.kind, 'nowrap'],
      ['Device', (e) => e.deviceId, 'code id'],
      ['By', (e) => e.actor],
      ['From', (e) => e.source, 'code'],
      ['Detail', (e) => Object.entries(e.detail || {}).map(([k, v]) => k + '=' + (k === 'exp' && typeof v === 'number' ? isoOf(v).replace(/\.000Z$/, 'Z') : typeof v === 'string' ? v : JSON.stringify(v))).join(' '), 'wrap'],
    ],
  },
  tokens: {
    path: '/tokens',
    search: 'part of a name or token ID',
    empty: 'No token in the registry.',
    key: (t) => t.jti,
    cols: [
      ['Name', (t) => t.name + (t.jti === ownJti() ? ' (this tab)' : ''), 'id'],
      ['Role', (t) => t.role],
      ['State', (t) => (t.state === 'revoked' ? 'revoked by ' + (t.revokedBy || '?') + (t.revokedReason ? ' (' + t.revokedReason + ')' : '') : t.state)],
      ['Token ID', (t) => t.jti, 'code'],
      ['Issued', (t) => t.issuedAt, 'time'],
      ['Expires', (t) => t.expiresAt, 'time'],
    ],
    actions: (t) =>
      t.state !== 'valid'
        ? []
        : [
            [
              'Revoke',
              'bad revoke-token',
              () =>
                reasonDialog({
                  title: 'Revoke the token ' + t.name + ' (' + t.role + ')?',
                  text: t.jti === ownJti() ? 'This is the token this tab uses: the console will ask for another one.' : 'Whoever holds it is refused from the next request on.',
                  label: 'Reason (kept in the registry and the event log)',
                  ok: 'Revoke',
                  required: true,
                  submit: async (reason) => {
                    await call('POST', '/tokens/' + encodeURIComponent(t.jti) + '/revoke', { reason });
                    say('Revoked the token ' + t.name + ' (' + t.jti + ').');
                  },
                }),
            ],
          ],
  },
  instances: {
    local: () => instances,
    search: 'name, host or version',
    empty: 'One instance (SQLite store): nothing is shared.',
    key: (i) => i.name + '@' + i.host + ':' + i.adminPort,
    cols: [
      ['Name', (i) => i.name || '(no mDNS name)', 'code id'],
      ['Host', (i) => i.host, 'code'],
      ['CoAP', (i) => i.coapPort, 'num'],
      ['CoAPs', (i) => i.coapsPort, 'num'],
      ['Admin', (i) => i.adminPort, 'num'],
      ['Version', (i) => i.version],
      ['Started', (i) => i.startedAt, 'time'],
      ['Seen', (i) => i.seenAt, 'time'],
    ],
  },
};

/** Per list: the search text, the filter, the cursors of the pages seen (stack[pos] is this page's). */
const state = {};
for (const name of Object.keys(LISTS)) state[name] = { q: '', filter: LISTS[name].filter ? LISTS[name].params[LISTS[name].filter.name] : '', stack: [''], pos: 0, next: '', gen: 0, built: false };

let events = { items: [], cursor: 0, oldest: 0 };
let instances = [];

function buildList(name) {
  const spec = LISTS[name];
  const host = $('.list-host[data-list="' + name + '"]');
  const sid = 'search-' + name;
  const search = el(
    'form',
    { class: 'search row-form', role: 'search' },
    el('label', { for: sid, text: 'Search' }),
    el('input', { id: sid, type: 'search', name: 'q', placeholder: spec.search, autocomplete: 'off', spellcheck: 'false' }),
    el('button', { type: 'submit', class: 'search-go', text: 'Search' }),
  );
  if (spec.filter) {
    const fid = 'filter-' + name;
    const sel = el('select', { id: fid, name: 'filter' }, ...spec.filter.options.map(([v, t]) => el('option', { value: v, text: t })));
    sel.value = state[name].filter;
    sel.addEventListener('change', () => {
      state[name].filter = sel.value;
      resetPaging(name);
      load(name);
    });
    search.prepend(el('label', { for: fid, text: spec.filter.label }), sel);
  }
  search.addEventListener('submit', (ev) => {
    ev.preventDefault();
    state[name].q = $('#' + sid).value.trim();
    resetPaging(name);
    load(name);
  });
  const head = el('tr', {}, ...spec.cols.map(([label]) => el('th', { scope: 'col', text: label })));
  if (spec.actions) head.append(el('th', { scope: 'col', class: 'actions' }, el('span', { class: 'visually-hidden', text: 'Actions' })));
  const table = el('table', { id: name, class: 'list' }, el('thead', {}, head), el('tbody'));
  const pager = el(
    'div',
    { class: 'pager' },
    el('button', { type: 'button', class: 'prev', text: '← Previous', onclick: () => page(name, -1) }),
    el('span', { class: 'range', 'aria-live': 'polite' }),
    el('button', { type: 'button', class: 'next', text: 'Next →', onclick: () => page(name, 1) }),
  );
  if (spec.more) pager.append(el('button', { type: 'button', class: 'more', text: spec.more.label, onclick: () => spec.more.run() }));
  host.replaceChildren(search, el('div', { class: 'scroll' }, table), pager);
  state[name].built = true;
}

function resetPaging(name) {
  const s = state[name];
  s.stack = [''];
  s.pos = 0;
  s.next = '';
}

function page(name, dir) {
  const s = state[name];
  if (dir > 0) {
    if (!s.next) return;
    s.stack[s.pos + 1] = s.next;
    s.pos++;
  } else if (s.pos > 0) s.pos--;
  load(name).then(() => {
    const b = $('.list-host[data-list="' + name + '"] .pager ' + (dir > 0 ? '.next' : '.prev'));
    if (b && !b.disabled) b.focus();
    else $('#' + name + ' tbody').closest('.view').querySelector('h2').focus();
  });
}

const matches = (spec, item, q) => !q || spec.cols.some(([, get]) => String(get(item) ?? '').toLowerCase().includes(q.toLowerCase()));

async function load(name) {
  const spec = LISTS[name];
  const s = state[name];
  if (!s.built) buildList(name);
  const gen = ++s.gen;
  let items;
  let next = '';
  let first = s.pos * PAGE;
  if (spec.local) {
    const all = spec.local().filter((it) => matches(spec, it, s.q));
    items = all.slice(first, first + PAGE);
    next = all.length > first + PAGE ? 'more' : '';
  } else {
    const qs = new URLSearchParams(Object.assign({}, spec.params || {}, { limit: String(PAGE) }));
    if (spec.filter) qs.set(spec.filter.name, s.filter);
    if (s.q) qs.set('q', s.q);
    if (s.stack[s.pos]) qs.set('after', s.stack[s.pos]);
    const r = await call('GET', spec.path + '?' + qs);
    if (gen !== s.gen) return;
    items = r.items;
    next = r.next || '';
  }
  s.next = next;
  render(name, items, first);
}

function render(name, items, first) {
  const spec = LISTS[name];
  const s = state[name];
  const table = $('#' + name);
  const tb = $('tbody', table);
  const rows = items.map((it) => {
    const tr = el('tr', { 'data-id': spec.key ? spec.key(it) : it.id });
    for (const [label, get, cls] of spec.cols) {
      const v = get(it);
      const td = el('td', { 'data-label': label, class: cls || '' });
      if (cls && cls.includes('time')) {
        td.textContent = when(v);
        if (v) td.title = isoOf(v);
      } else if (cls && cls.includes('code')) td.append(el('code', { text: v == null ? '' : String(v) }));
      else td.textContent = v == null ? '' : String(v);
      tr.append(td);
    }
    if (spec.actions) {
      const td = el('td', { class: 'actions', 'data-label': 'Actions' });
      for (const [label, cls, run] of spec.actions(it)) td.append(actionButton(name, label, cls, run, it));
      tr.append(td);
    }
    return tr;
  });
  // A redraw replaces the buttons: keep the focus on the same button of the same row, or, when the row
  // is gone (approved, deleted), on the view's heading.
  const a = document.activeElement;
  const keep = a && a.tagName === 'BUTTON' && tb.contains(a) ? [a.closest('tr').dataset.id, a.className] : null;
  if (!rows.length) rows.push(el('tr', { class: 'empty' }, el('td', { colspan: String(spec.cols.length + (spec.actions ? 1 : 0)), class: 'muted', text: s.q ? 'Nothing matches "' + s.q + '".' : spec.empty })));
  tb.replaceChildren(...rows);
  // What the rows are the answer to (tests wait for it after a search).
  table.dataset.q = s.q;
  table.dataset.page = String(s.pos);
  if (keep) {
    const tr = [...tb.children].find((r) => r.dataset.id === keep[0]);
    const b = tr && [...tr.querySelectorAll('button')].find((x) => x.className === keep[1]);
    if (b) b.focus();
    else table.closest('.view').querySelector('h2').focus();
  }
  const host = $('.list-host[data-list="' + name + '"]');
  $('.prev', host).disabled = s.pos === 0;
  $('.next', host).disabled = !s.next;
  $('.range', host).textContent = items.length ? 'rows ' + (first + 1) + '–' + (first + items.length) + (s.next ? ', more on the next page' : '') : '';
}

function actionButton(list, label, cls, run, item) {
  const b = el('button', { type: 'button', class: cls, text: label, 'aria-label': label + ' ' + (item.id || '') });
  // Busy rather than disabled while it runs: a disabled button loses the focus, and the focus must come
  // back to it when its dialog closes.
  let busy = false;
  b.addEventListener('click', async () => {
    if (busy) return;
    busy = true;
    b.setAttribute('aria-busy', 'true');
    try {
      await run();
    } catch (e) {
      say(e.message, true);
    } finally {
      busy = false;
      b.removeAttribute('aria-busy');
      // The list may have scrolled sideways on a narrow window: back to its start after an action.
      const sc = $('#' + list).closest('.scroll');
      if (sc) sc.scrollLeft = 0;
      refresh();
    }
  });
  return b;
}

// ---------------------------------------------------------------------------------------------
// Views, refresh, the provisioning switch

const VIEWS = ['pending', 'devices', 'allowlist', 'rejected', 'flags', 'events', 'instances', 'tokens'];

/** The ID (jti) of this tab's token, read from its payload (a JWT), or '' when it has none. */
function ownJti() {
  try {
    const p = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    return JSON.parse(atob(p + '='.repeat((4 - (p.length % 4)) % 4))).jti || '';
  } catch (e) {
    return '';
  }
}
let current = 'pending';

function showView(name, focus) {
  if (!VIEWS.includes(name)) name = 'pending';
  current = name;
  for (const v of VIEWS) {
    $('#view-' + v).hidden = v !== name;
    const t = $('#tab-' + v);
    if (v === name) t.setAttribute('aria-current', 'page');
    else t.removeAttribute('aria-current');
  }
  if (location.hash !== '#view=' + name) history.replaceState(null, '', '#view=' + name);
  if (focus) $('#view-' + name + ' h2').focus();
  refresh();
}

let refreshTimer = null;
/**
 * Redraw the current view and the badges; several calls in a row draw once. After an action (the
 * default) it draws at once; for events (`EVENT_REDRAW_MS`) at most that often, however many arrive.
 */
function refresh(delay) {
  const ms = delay || 30;
  if (refreshTimer && ms > 30) return;
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(() => {
    refreshTimer = null;
    refreshNow();
  }, ms);
}
const EVENT_REDRAW_MS = 400;

async function refreshNow() {
  if (!token) {
    if (tokenWasRefused) say(REFUSED, true);
    else say('Paste an admin token to start.', false);
    return;
  }
  try {
    if (current === 'instances') {
      const r = await call('GET', '/instances');
      instances = r.shared ? r.instances : [];
    }
    const [prov, pend, flags] = await Promise.all([call('GET', '/provisioning'), call('GET', '/pending?limit=100'), call('GET', '/flags?limit=100'), load(current)]);
    $('#prov-state').textContent = prov.enabled ? 'accepted' : 'refused (5.03)';
    $('#prov-state').className = prov.enabled ? 'state-on' : 'state-off';
    $('#prov-reason').textContent = prov.enabled ? '' : prov.reason || '';
    $('#prov-toggle').textContent = prov.enabled ? 'Disable provisioning' : 'Enable provisioning';
    $('#prov-toggle').dataset.enabled = String(prov.enabled);
    $('#prov-why').hidden = !prov.enabled;
    $('#badge-pending').textContent = pend.items.length ? (pend.next ? '100+' : String(pend.items.length)) : '';
    $('#badge-flags').textContent = flags.items.length ? (flags.next ? '100+' : String(flags.items.length)) : '';
    if ($('#message').className === 'error' && reachable && /reach|token/.test($('#message').textContent)) say('');
  } catch (e) {
    say(e.message, true);
  }
}

// ---------------------------------------------------------------------------------------------
// The event log: history, then the live stream (server-sent events read with fetch, since EventSource
// cannot send the Authorization header and the token never goes in a URL).

const HISTORY = 200;

async function loadHistory() {
  let after = 0;
  let last = [];
  for (;;) {
    const r = await call('GET', '/events?limit=1000&after=' + after);
    last = last.concat(r.events).slice(-HISTORY);
    after = r.next;
    if (r.events.length < 1000) break;
  }
  events.items = last.reverse();
  events.cursor = after;
  events.oldest = events.items.length ? events.items[events.items.length - 1].seq : 0;
}

async function loadOlderEvents() {
  if (events.oldest <= 1) return say('No older events.');
  const from = Math.max(0, events.oldest - 1 - PAGE * 2);
  const r = await call('GET', '/events?limit=' + PAGE * 2 + '&after=' + from).catch((e) => (say(e.message, true), null));
  if (!r) return;
  const older = r.events.filter((e) => e.seq < events.oldest).reverse();
  events.items = events.items.concat(older);
  events.oldest = older.length ? older[older.length - 1].seq : from;
  say(older.length ? 'Loaded ' + plural(older.length, 'older event') + '.' : 'No older events.');
  if (current === 'events') load('events');
}

function onEvent(e) {
  if (e.seq <= events.cursor && events.items.some((x) => x.seq === e.seq)) return;
  events.cursor = Math.max(events.cursor, e.seq);
  events.items.unshift(e);
  if (events.items.length > 5000) events.items.length = 5000;
  refresh(EVENT_REDRAW_MS);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function stream() {
  let primed = false;
  for (;;) {
    if (!token) {
      primed = false;
      setLive('off');
      await sleep(500);
      continue;
    }
    let delay = 2000;
    try {
      setLive('connecting');
      if (!primed) {
        await loadHistory();
        primed = true;
        refresh();
      }
      const res = await fetch(api + '/events/stream?after=' + events.cursor, { headers: { authorization: 'Bearer ' + token, accept: 'text/event-stream' }, cache: 'no-store' });
      setReachable(true);
      if (res.status === 401) {
        tokenRefused();
        continue;
      }
      if (!res.ok) throw new Error('event stream: HTTP ' + res.status);
      setLive('live');
      const reader = res.body.getReader();
      const dec = new TextDecoder();
      let buf = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += dec.decode(value, { stream: true }).replace(/\r\n?/g, '\n');
        let i;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          let data = '';
          for (const line of block.split('\n')) {
            if (line.startsWith('data:')) data += line.slice(5).trimStart();
            else if (line.startsWith('retry:')) delay = Number(line.slice(6)) || delay;
          }
          if (data) onEvent(JSON.parse(data));
        }
      }
    } catch (e) {
      if (e instanceof TypeError) setReachable(false);
      if (e.kind === 'unreachable' || e instanceof TypeError) say('Cannot reach the idprov server at ' + location.host + ': is it running? The page keeps trying.', true);
      delay = 3000;
    }
    setLive(token ? 'connecting' : 'off');
    await sleep(delay);
  }
}

// ---------------------------------------------------------------------------------------------
// The allowlist forms: one entry (PUT /allowlist/{id}), a file (POST /allowlist, with progress)

const HOW = {
  pk: ['Public key (hex)', '64 hex digits (device-sim keygen prints it as pk)'],
  mac: ['MAC address', 'aa:bb:cc:dd:ee:ff'],
  secret: ['Secret', 'the out-of-band secret on its label'],
};
function updateHow() {
  const h = HOW[$('#allow-how').value];
  $('#allow-value-label').textContent = h[0];
  $('#allow-value').placeholder = h[1];
  $('#allow-value').type = $('#allow-how').value === 'secret' ? 'password' : 'text';
}

async function addAllow(ev) {
  ev.preventDefault();
  const id = $('#allow-id').value.trim();
  const how = $('#allow-how').value;
  const value = $('#allow-value').value.trim();
  if (!id || !value) return say('Give the device ID and its ' + HOW[how][0].toLowerCase() + '.', true);
  if (how === 'pk' && !/^[0-9a-fA-F]{64}$/.test(value)) return say('The public key is 64 hex digits (32 bytes); this has ' + plural(value.length, 'character') + '.', true);
  const body = { [how]: value, type: $('#allow-type').value };
  if ($('#allow-expires').value) body.expires = $('#allow-expires').value;
  const b = $('#allow-add');
  b.disabled = true;
  try {
    const r = await call('PUT', recordPath('allowlist', id), body);
    say('Added ' + id + ' to the allowlist' + (r && r.fingerprint ? ' (key ' + r.fingerprint + ')' : '') + '; its next request is provisioned.');
    $('#allow-form').reset();
    updateHow();
    $('#allow-id').focus();
  } catch (e) {
    say(e.message, true);
  } finally {
    b.disabled = false;
    refresh();
  }
}

const size = (n) => (n < 1024 ? n + ' B' : n < 1048576 ? (n / 1024).toFixed(1) + ' KiB' : (n / 1048576).toFixed(1) + ' MiB');

function importFile(ev) {
  ev.preventDefault();
  const file = $('#import-file').files[0];
  if (!file) return say('Choose a CSV or JSON file first.', true);
  if (!token) return say('Paste an admin token first.', true);
  const json = /\.json$/i.test(file.name) || file.type === 'application/json';
  const prog = $('#import-progress');
  const status = $('#import-status');
  const errors = $('#import-errors');
  const start = $('#import-start');
  errors.replaceChildren();
  prog.hidden = false;
  prog.value = 0;
  start.disabled = true;
  status.textContent = 'Uploading ' + file.name + ' (' + size(file.size) + ')…';
  // XMLHttpRequest, not fetch: it reports the upload's progress.
  const xhr = new XMLHttpRequest();
  xhr.open('POST', api + '/allowlist' + ($('#import-valid').checked ? '?mode=valid' : ''));
  xhr.setRequestHeader('authorization', 'Bearer ' + token);
  xhr.setRequestHeader('content-type', json ? 'application/json' : 'text/csv; charset=utf-8');
  xhr.upload.onprogress = (e) => {
    if (!e.lengthComputable) return;
    prog.value = Math.round((e.loaded / e.total) * 100);
    status.textContent = 'Uploading ' + file.name + ': ' + prog.value + ' % (' + size(e.loaded) + ' of ' + size(e.total) + ')';
  };
  xhr.upload.onload = () => {
    prog.value = 100;
    status.textContent = 'Sent ' + file.name + '; the server is checking and importing the rows…';
  };
  const done = () => {
    start.disabled = false;
    refresh();
  };
  xhr.onerror = () => {
    status.textContent = 'The upload failed: cannot reach the server at ' + location.host + '.';
    done();
  };
  xhr.onload = () => {
    let r = {};
    try {
      r = JSON.parse(xhr.responseText);
    } catch (e) {
      r = {};
    }
    if (xhr.status === 401) {
      status.textContent = 'Not imported: the token was refused.';
      tokenRefused();
    } else if (xhr.status === 200 || xhr.status === 422) {
      status.textContent = r.imported
        ? file.name + ': ' + plural(r.rows, 'row') + ' — ' + r.added + ' added, ' + r.updated + ' updated, ' + r.invalid + ' invalid.'
        : r.invalid
          ? file.name + ': ' + plural(r.rows, 'row') + ', ' + r.invalid + ' invalid — nothing imported (all or nothing: fix the rows below, or tick "Import the valid rows").'
          : file.name + ': no entries — nothing imported.';
      for (const p of (r.errors || []).slice(0, 50)) errors.append(el('li', { text: 'line ' + p.line + (p.id ? ' (' + p.id + ')' : '') + ': ' + p.message }));
      if (r.invalid > 50) errors.append(el('li', { text: '… and ' + plural(r.invalid - Math.min(50, (r.errors || []).length), 'more invalid row') }));
    } else status.textContent = 'Not imported: ' + ((r.error && r.error.message) || 'HTTP ' + xhr.status) + '.';
    done();
  };
  xhr.send(file);
}

// ---------------------------------------------------------------------------------------------
// Wiring

$('#login-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  token = $('#token').value.trim();
  tokenWasRefused = false;
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
  say('');
  refresh();
});
$('#forget-token').addEventListener('click', () => {
  token = '';
  sessionStorage.removeItem(TOKEN_KEY);
  $('#token').value = '';
  say('The token is forgotten. Paste one to go on.');
  $('#token').focus();
});
$('#prov-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const enabled = $('#prov-toggle').dataset.enabled === 'true';
  try {
    await call('PUT', '/provisioning', enabled ? { enabled: false, reason: $('#prov-why').value || 'disabled in the console' } : { enabled: true });
    $('#prov-why').value = '';
  } catch (e) {
    say(e.message, true);
  }
  refresh();
});
for (const v of VIEWS)
  $('#tab-' + v).addEventListener('click', () => {
    // The last action's message belongs to the view it was made in; errors stay until they are over.
    if ($('#message').className !== 'error') say('');
    showView(v, true);
  });
window.addEventListener('hashchange', () => showView(location.hash.replace(/^#view=/, ''), false));
$('#allow-how').addEventListener('change', updateHow);
$('#allow-form').addEventListener('submit', addAllow);
$('#import-form').addEventListener('submit', importFile);
updateHow();
for (const name of Object.keys(LISTS)) buildList(name);
if (token) $('#token').value = token;
showView(location.hash.replace(/^#view=/, ''), false);
stream();
