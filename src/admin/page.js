// The approval page's script (served by the sidecar as /page.js; the page's CSP allows no inline script).
'use strict';
const $ = (s) => document.querySelector(s);
const api = '/api/v1';
let token = sessionStorage.getItem('idprov-token') || '';
let eventCursor = 0;
// The first answer of the feed is the history: it moves the cursor but needs no refresh.
let feedPrimed = false;
// Refreshes can overlap (a button, an event); only the newest one may draw, or a slow older answer
// would overwrite newer data.
let refreshGen = 0;

function say(text, isError) {
  const m = $('#message');
  m.textContent = text;
  m.className = isError ? 'error' : '';
}

async function call(method, path, body) {
  const res = await fetch(api + path, {
    method,
    headers: Object.assign({ authorization: 'Bearer ' + token }, body ? { 'content-type': 'application/json' } : {}),
    body: body ? JSON.stringify(body) : undefined,
  });
  if (res.status === 204) return null;
  const data = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error((data.error && data.error.message) || res.statusText);
  return data;
}

/**
 * The API path of a record with an action: the ID percent-encoded as a path segment, or, for "." and
 * "..", which the browser collapses even percent-encoded, in the query (docs/admin-api.md).
 */
function recordPath(collection, id, action) {
  if (id === '.' || id === '..') return '/' + collection + '/~/' + action + '?id=' + encodeURIComponent(id);
  return '/' + collection + '/' + encodeURIComponent(id) + '/' + action;
}

function cell(tr, text, cls) {
  const td = document.createElement('td');
  if (cls === 'code') {
    const c = document.createElement('code');
    c.textContent = text || '';
    td.appendChild(c);
  } else td.textContent = text == null ? '' : String(text);
  if (cls && cls !== 'code') td.className = cls;
  tr.appendChild(td);
  return td;
}

/** Local time as YYYY-MM-DD hh:mm:ss (short, sortable, the same in every browser locale). */
function when(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  const p = (n) => String(n).padStart(2, '0');
  return d.getFullYear() + '-' + p(d.getMonth() + 1) + '-' + p(d.getDate()) + ' ' + p(d.getHours()) + ':' + p(d.getMinutes()) + ':' + p(d.getSeconds());
}

function button(td, label, cls, onClick) {
  const b = document.createElement('button');
  b.textContent = label;
  b.className = cls;
  b.addEventListener('click', async () => {
    b.disabled = true;
    try {
      await onClick();
    } catch (e) {
      say(e.message, true);
    } finally {
      b.disabled = false;
      refresh();
    }
  });
  td.appendChild(b);
  td.appendChild(document.createTextNode(' '));
}

async function refresh() {
  if (!token) {
    say('Paste an admin token to start.', false);
    return;
  }
  const gen = ++refreshGen;
  try {
    const [prov, pending, devices, flags] = await Promise.all([call('GET', '/provisioning'), call('GET', '/pending?limit=1000'), call('GET', '/devices?limit=1000'), call('GET', '/flags?limit=1000')]);
    if (gen !== refreshGen) return;
    $('#prov-state').textContent = prov.enabled ? 'accepted' : 'refused (5.03)';
    $('#prov-state').className = prov.enabled ? 'state-on' : 'state-off';
    $('#prov-reason').textContent = prov.enabled ? '' : prov.reason || '';
    $('#prov-toggle').textContent = prov.enabled ? 'Disable provisioning' : 'Enable provisioning';
    $('#prov-toggle').dataset.enabled = String(prov.enabled);

    const pb = $('#pending tbody');
    pb.replaceChildren();
    $('#pending-count').textContent = '(' + pending.items.length + ')';
    for (const p of pending.items) {
      const tr = document.createElement('tr');
      tr.dataset.id = p.id;
      cell(tr, p.id, 'code');
      cell(tr, p.fingerprint, 'code');
      cell(tr, p.type);
      cell(tr, p.mac, 'code');
      cell(tr, p.source, 'code');
      cell(tr, when(p.firstSeen), 'nowrap');
      cell(tr, when(p.lastSeen), 'nowrap');
      cell(tr, p.count);
      const td = cell(tr, '', 'actions');
      button(td, 'Approve', 'ok approve', async () => {
        await call('POST', recordPath('pending', p.id, 'approve'), { fingerprint: p.fingerprint });
        say('Approved ' + p.id + ' (key ' + p.fingerprint + '). It gets its token at its next poll.');
      });
      button(td, 'Reject', 'bad reject', async () => {
        await call('POST', recordPath('pending', p.id, 'reject'), { reason: 'rejected in the web page' });
        say('Rejected ' + p.id + '.');
      });
      pb.appendChild(tr);
    }
    if (!pending.items.length) {
      const tr = document.createElement('tr');
      const td = cell(tr, 'No device is waiting.');
      td.colSpan = 9;
      td.className = 'muted';
      pb.appendChild(tr);
    }

    const fb = $('#flags tbody');
    fb.replaceChildren();
    $('#flag-count').textContent = '(' + flags.items.length + ' open)';
    for (const f of flags.items) {
      const tr = document.createElement('tr');
      tr.dataset.id = f.id;
      cell(tr, f.kind, 'nowrap');
      cell(tr, f.deviceIds.join(', '), 'code');
      cell(tr, Object.entries(f.evidence || {}).map(([k, v]) => k + '=' + v).join(' '));
      cell(tr, when(f.firstSeen), 'nowrap');
      cell(tr, when(f.lastSeen), 'nowrap');
      cell(tr, f.count);
      const td = cell(tr, '', 'actions');
      button(td, 'Clear', 'ok clear', async () => {
        await call('POST', recordPath('flags', f.id, 'clear'), { note: 'cleared in the web page' });
        say('Cleared the ' + f.kind + ' flag of ' + f.deviceIds.join(', ') + '.');
      });
      fb.appendChild(tr);
    }
    if (!flags.items.length) {
      const tr = document.createElement('tr');
      const td = cell(tr, 'No open flags.');
      td.colSpan = 7;
      td.className = 'muted';
      fb.appendChild(tr);
    }

    const db = $('#devices tbody');
    db.replaceChildren();
    $('#device-count').textContent = '(' + devices.items.length + ')';
    for (const d of devices.items) {
      const tr = document.createElement('tr');
      tr.dataset.id = d.id;
      cell(tr, d.id, 'code');
      cell(tr, d.fingerprint, 'code');
      cell(tr, d.type);
      cell(tr, d.via);
      cell(tr, when(d.lastSeen), 'nowrap');
      cell(tr, when(d.tokenExp), 'nowrap');
      cell(tr, d.revoked ? 'revoked by ' + d.revoked.by : 'active');
      const td = cell(tr, '', 'actions');
      if (d.revoked) button(td, 'Re-enable', 'ok enable', async () => call('POST', recordPath('devices', d.id, 'enable')));
      else
        button(td, 'Revoke', 'bad revoke', async () => {
          await call('POST', recordPath('devices', d.id, 'revoke'), { reason: 'revoked in the web page' });
          say('Revoked ' + d.id + '; its refreshes stop now.');
        });
      db.appendChild(tr);
    }
  } catch (e) {
    if (gen === refreshGen) say(e.message, true);
  }
}

// Follow the event feed (long poll) and refresh the tables when something happens.
async function follow() {
  for (;;) {
    if (!token) {
      await new Promise((r) => setTimeout(r, 1000));
      continue;
    }
    try {
      if (!feedPrimed) {
        // Skip the history quickly, then draw once: something may have happened since the first draw.
        const h = await call('GET', '/events?limit=1000&after=' + eventCursor);
        eventCursor = h.next;
        if (h.events.length < 1000) {
          feedPrimed = true;
          refresh();
        }
        continue;
      }
      const r = await call('GET', '/events?wait=25&after=' + eventCursor);
      eventCursor = r.next;
      if (r.events.length > 0) refresh();
    } catch (e) {
      await new Promise((r) => setTimeout(r, 3000));
    }
  }
}

$('#save-token').addEventListener('click', () => {
  token = $('#token').value.trim();
  sessionStorage.setItem('idprov-token', token);
  say('');
  refresh();
});
$('#prov-toggle').addEventListener('click', async () => {
  const enabled = $('#prov-toggle').dataset.enabled === 'true';
  try {
    await call('PUT', '/provisioning', enabled ? { enabled: false, reason: $('#prov-why').value || 'disabled in the web page' } : { enabled: true });
    $('#prov-why').value = '';
  } catch (e) {
    say(e.message, true);
  }
  refresh();
});
if (token) $('#token').value = token;
refresh();
follow();
