// regd dashboard. A plain client of the public API, written to be read as an example:
// one long poll per page on GET /consumer with details=true and index= (docs/protocol.md B1, B7),
// so no change is missed and nothing is polled busily; change requests with
// PUT /consumer (A8). Untrusted names, values and metadata only ever reach the page as
// textContent: this file never parses a string as HTML.
'use strict';
(() => {
  const POLL_WAIT = '30s'; // how long regd may hold the long poll
  const GONE_MS = 4000; // an expired or removed row stays marked this long
  const EXPIRING_MS = 3000; // rows with less time left are marked "expiring"
  const APPLY_MS = 5000; // a change request not applied by then is "not applied"
  const BACKOFF_MIN = 500;
  const BACKOFF_MAX = 15000;

  // Access control (docs/protocol.md B5). When regd answers 401 the page asks for a token and
  // keeps it in sessionStorage: this tab only, gone when it closes; never localStorage,
  // a cookie or the URL. Every request goes through api(), which sends it here.
  const TOKEN_KEY = 'regd.token';
  let token = '';
  try {
    token = sessionStorage.getItem(TOKEN_KEY) || '';
  } catch (_) {
    // storage disabled: ask again after each reload
  }
  function authHeaders() {
    return token ? { Authorization: 'Bearer ' + token } : {};
  }
  function keepToken(value) {
    token = value;
    try {
      if (value) sessionStorage.setItem(TOKEN_KEY, value);
      else sessionStorage.removeItem(TOKEN_KEY);
    } catch (_) {
      // kept in memory only
    }
  }

  async function api(method, path, body) {
    const init = { method, cache: 'no-store', headers: authHeaders() };
    if (body !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    const sent = token;
    const res = await fetch(path, init);
    if (!res.ok) {
      let message = 'HTTP ' + res.status;
      try {
        message = (await res.json()).error || message;
      } catch (_) {
        // not a JSON error; keep the status
      }
      throw Object.assign(new Error(message), { status: res.status, sent });
    }
    return res;
  }

  const $ = (id) => document.getElementById(id);
  const el = (tag, cls, text) => {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  };
  const now = () => performance.now();
  const collator = new Intl.Collator(undefined, { numeric: true });

  const rows = $('rows');
  const filterInput = $('filter');
  const groupInput = $('group');
  const sortButton = $('sort');

  // name -> register as the page knows it (see apply()).
  const regs = new Map();
  // group prefix -> its header row, reused between renders.
  const groupRows = new Map();
  let descending = false;
  let online = null;
  let lastRev = 0; // revision of the newest snapshot applied
  let uid = 0;

  // ---- receiving snapshots -------------------------------------------------------

  function apply(snapshot) {
    const at = now();
    const present = new Set(Object.keys(snapshot));
    for (const name of present) {
      const entry = snapshot[name] || {};
      let r = regs.get(name);
      if (!r) {
        r = { name, id: 'r' + ++uid, value: undefined, pending: null, note: '', editing: false };
        regs.set(name, r);
      }
      const text = JSON.stringify(entry.value === undefined ? null : entry.value);
      const changed = r.value !== undefined && r.value !== text;
      r.raw = entry.value;
      r.value = text;
      r.meta = entry.metadata ? JSON.stringify(entry.metadata) : '';
      r.ttl = typeof entry.ttl === 'string' ? entry.ttl : '';
      r.expiresAt = typeof entry.expires_in_ms === 'number' ? at + entry.expires_in_ms : null;
      r.gone = 0;
      if (r.pending && r.value !== r.pending.before) settle(r, true);
      updateRow(r);
      if (changed) flash(r);
    }
    for (const r of regs.values()) {
      if (!present.has(r.name) && !r.gone) markGone(r, at);
    }
    render();
  }

  function markGone(r, at) {
    const stamp = at;
    r.gone = stamp;
    r.goneWhy = r.expiresAt !== null && r.expiresAt - at < 1000 ? 'expired' : 'removed';
    r.editing = false;
    updateRow(r);
    setTimeout(() => {
      if (r.gone === stamp) {
        regs.delete(r.name);
        render();
      }
    }, GONE_MS);
  }

  // The one long poll of this page. Without an index (first load, after an error) it
  // asks for the snapshot at once; then it passes back X-Reg-Index, so regd answers as
  // soon as anything changed after it, including between two polls.
  async function pollLoop() {
    let index = null;
    let backoff = BACKOFF_MIN;
    for (;;) {
      const query = index === null ? '' : '&wait=' + POLL_WAIT + '&index=' + index;
      try {
        const res = await api('GET', '/consumer?details=true' + query);
        const rev = res.headers.get('X-Reg-Index') || '';
        const body = await res.json();
        if (!/^\d+$/.test(rev) || !body || typeof body.registers !== 'object') {
          throw new Error('unexpected answer from regd');
        }
        index = rev;
        lastRev = Number(rev);
        backoff = BACKOFF_MIN;
        showAuth(false);
        setOnline(true);
        apply(body.registers || {});
      } catch (error) {
        index = null;
        if (error.status === 401 || error.status === 403) {
          await askToken(error);
          continue;
        }
        const delay = backoff * (0.8 + 0.4 * Math.random());
        backoff = Math.min(backoff * 2, BACKOFF_MAX);
        setOnline(false, error, delay);
        await pause(delay);
      }
    }
  }

  let wakeRetry = null;
  function pause(ms) {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        wakeRetry = null;
        resolve();
      }
      wakeRetry = done;
    });
  }

  // Shows the token form and resolves once a token is entered: the poll waits here, so
  // a refused token costs one request, not a retry storm.
  let tokenEntered = null;
  function askToken(error) {
    if (error.sent !== token) return Promise.resolve(); // a new token came meanwhile
    keepToken('');
    $('auth-err').textContent =
      error.status === 403
        ? 'This token’s role cannot read registers: a consumer or admin token is needed (' +
          error.message + ').'
        : error.sent
          ? 'Token refused (' + error.message + '). Check it and try again.'
          : '';
    $('token').setAttribute('aria-invalid', String(!!error.sent));
    showAuth(true);
    updateStatus();
    $('token').focus();
    return new Promise((resolve) => (tokenEntered = resolve));
  }

  function showAuth(on) {
    $('auth').hidden = !on;
    document.body.classList.toggle('locked', on);
    $('forget').hidden = on || !token;
    if (on) $('banner').hidden = true;
  }

  function submitToken(event) {
    event.preventDefault();
    const value = $('token').value.trim();
    if (!/^[\x21-\x7e]+$/.test(value)) {
      $('auth-err').textContent = 'A token is printable ASCII without spaces.';
      return;
    }
    $('token').value = '';
    $('auth-err').textContent = '';
    keepToken(value);
    $('status').textContent = 'checking token…';
    if (tokenEntered) tokenEntered();
    tokenEntered = null;
  }

  // A refresh that changes nothing wakes no poll (A4), so when a countdown runs out
  // and the register is still there, its provider refreshed it: one plain read (at
  // most one a second) brings the new expiry.
  let syncTimer = 0;
  let lastSync = -Infinity;
  function requestSync() {
    if (syncTimer || !online) return;
    syncTimer = setTimeout(async () => {
      lastSync = now();
      try {
        const res = await api('GET', '/consumer?details=true');
        const rev = Number(res.headers.get('X-Reg-Index'));
        const body = await res.json();
        // Never let an older snapshot overwrite a newer one from the poll.
        if (rev >= lastRev && body && body.registers) {
          lastRev = rev;
          apply(body.registers);
        }
      } catch (_) {
        // the poll loop notices and reports outages
      }
      syncTimer = 0;
    }, Math.max(0, lastSync + 1000 - now()));
  }

  function setOnline(up, error, retryIn) {
    const changed = online !== up;
    online = up;
    document.body.classList.toggle('offline', !up);
    $('banner').hidden = up;
    if (!up) {
      const why = error && error.message ? ' (' + error.message + ')' : '';
      $('banner-text').textContent =
        'regd is unreachable' + why + '. Retrying in ' + Math.ceil(retryIn / 1000) + ' s…';
    }
    if (changed || up) updateStatus();
  }

  function updateStatus() {
    const live = [...regs.values()].filter((r) => !r.gone).length;
    $('status').textContent = !$('auth').hidden
      ? 'token needed'
      : online === null
        ? 'connecting…'
        : online
          ? 'live · ' + live + (live === 1 ? ' register' : ' registers')
          : 'offline';
  }

  // ---- change requests ------------------------------------------------------------

  async function requestChange(r, value) {
    if (r.pending) clearTimeout(r.pending.timer);
    const sent = JSON.stringify(value);
    if (sent === r.value) {
      r.pending = null;
      setNote(r, 'sent (same value)', 'muted', 3000);
    } else {
      r.pending = { before: r.value, timer: setTimeout(() => settle(r, false), APPLY_MS) };
      setNote(r, 'requested…', 'pending');
    }
    try {
      await api('PUT', '/consumer', { registers: { [r.name]: { value } } });
    } catch (error) {
      if (r.pending) clearTimeout(r.pending.timer);
      r.pending = null;
      setNote(
        r,
        error.status === 403
          ? 'refused: this token may not request changes (needs a consumer or admin token)'
          : 'request failed: ' + error.message,
        'bad',
      );
      announce(r.name + ': request failed');
    }
  }

  function settle(r, applied) {
    clearTimeout(r.pending.timer);
    r.pending = null;
    if (applied) {
      setNote(r, 'applied', 'ok', 3000);
      announce(r.name + ' is now ' + r.value);
    } else {
      setNote(r, 'not applied', 'bad', 10000);
      announce(r.name + ': change not applied');
    }
  }

  function setNote(r, text, kind, clearAfter) {
    r.note = text;
    r.noteKind = kind;
    const stamp = (r.noteStamp = (r.noteStamp || 0) + 1);
    if (clearAfter) {
      setTimeout(() => {
        if (r.noteStamp === stamp) setNote(r, '', '');
      }, clearAfter);
    }
    if (r.el) updateNote(r);
  }

  function announce(text) {
    $('announce').textContent = text;
  }

  // ---- rows -----------------------------------------------------------------------

  function makeRow(r) {
    // Explicit roles keep the table semantics when the phone layout makes rows blocks.
    const tr = el('tr');
    tr.setAttribute('role', 'row');
    const name = el('th');
    name.setAttribute('role', 'rowheader');
    name.scope = 'row';
    name.className = 'name';
    const value = el('td', 'value');
    const meta = el('td', 'meta');
    const ttl = el('td', 'ttl');
    value.dataset.label = 'Value';
    meta.dataset.label = 'Metadata';
    ttl.dataset.label = 'Expires in';
    for (const cell of [value, meta, ttl]) cell.setAttribute('role', 'cell');
    const slot = el('div', 'slot');
    const note = el('span', 'note');
    value.append(slot, note);
    tr.append(name, value, meta, ttl);
    r.el = { tr, name, slot, note, meta, ttl, mode: '' };
  }

  function updateRow(r) {
    if (!r.el) makeRow(r);
    const e = r.el;
    e.tr.classList.toggle('gone', !!r.gone);
    e.tr.dataset.name = r.name;
    const mode = r.editing ? 'edit' : typeof r.raw === 'boolean' ? 'switch' : 'button';
    if (e.mode !== mode) {
      e.slot.replaceChildren();
      e.mode = mode;
      if (mode === 'edit') buildEditor(r);
      if (mode === 'switch') {
        e.control = el('button', 'switch');
        e.control.type = 'button';
        e.control.setAttribute('role', 'switch');
        e.control.append(el('span', 'knob'), el('span', 'label'));
        e.control.addEventListener('click', () => requestChange(r, !r.raw));
        e.slot.append(e.control);
      }
      if (mode === 'button') {
        e.control = el('button', 'val');
        e.control.type = 'button';
        e.control.addEventListener('click', () => startEdit(r));
        e.slot.append(e.control);
      }
    }
    if (mode === 'switch') {
      e.control.setAttribute('aria-checked', String(r.raw));
      e.control.setAttribute('aria-label', r.name);
      e.control.lastChild.textContent = r.value;
    } else if (mode === 'button') {
      e.control.textContent = r.value;
      e.control.title = 'Edit ' + r.name;
      e.control.setAttribute('aria-label', 'Edit ' + r.name + ', value ' + r.value.slice(0, 200));
    }
    if (e.control) e.control.disabled = !!r.gone;
    e.meta.replaceChildren();
    if (r.meta) e.meta.append(el('code', '', r.meta));
    e.ttl.title = r.ttl ? 'ttl ' + r.ttl : '';
    updateNote(r);
    tick1(r, now());
  }

  function updateNote(r) {
    const text = r.gone ? r.goneWhy : r.note;
    const kind = r.gone ? 'bad' : r.noteKind;
    r.el.note.textContent = text;
    r.el.note.className = 'note' + (kind ? ' ' + kind : '');
    r.el.tr.classList.toggle('pending', !!r.pending);
  }

  function flash(r) {
    const tr = r.el.tr;
    tr.classList.remove('changed');
    void tr.offsetWidth; // restart the animation
    tr.classList.add('changed');
  }

  function startEdit(r) {
    r.editing = true;
    updateRow(r);
    r.el.input.focus();
    r.el.input.select();
  }

  function stopEdit(r) {
    r.editing = false;
    updateRow(r);
    if (r.el.control) r.el.control.focus();
  }

  function buildEditor(r) {
    const form = el('form', 'edit');
    const id = r.id + '-edit';
    const label = el('label', 'vh', 'New JSON value for ' + r.name);
    label.htmlFor = id;
    const input = el('textarea');
    input.id = id;
    input.rows = Math.min(6, Math.max(1, Math.ceil(r.value.length / 40)));
    input.spellcheck = false;
    input.value = r.value;
    const error = el('span', 'err');
    error.id = id + '-err';
    input.setAttribute('aria-describedby', error.id);
    const send = el('button', 'primary', 'Send');
    send.type = 'submit';
    const cancel = el('button', '', 'Cancel');
    cancel.type = 'button';
    form.append(label, input, send, cancel, error);
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      let value;
      try {
        value = JSON.parse(input.value);
      } catch (parseError) {
        input.setAttribute('aria-invalid', 'true');
        error.textContent = 'Not valid JSON: ' + parseError.message;
        return;
      }
      stopEdit(r);
      requestChange(r, value);
    });
    cancel.addEventListener('click', () => stopEdit(r));
    input.addEventListener('keydown', (event) => {
      if (event.key === 'Escape') {
        event.preventDefault();
        stopEdit(r);
      } else if (event.key === 'Enter' && !event.shiftKey) {
        event.preventDefault();
        form.requestSubmit();
      }
    });
    r.el.input = input;
    r.el.control = null;
    r.el.slot.append(form);
  }

  // ---- ordering, filtering, grouping ---------------------------------------------

  function compareNames(a, b) {
    const pa = a.split('.');
    const pb = b.split('.');
    for (let i = 0; i < Math.min(pa.length, pb.length); i++) {
      const c = collator.compare(pa[i], pb[i]) || (pa[i] < pb[i] ? -1 : pa[i] > pb[i] ? 1 : 0);
      if (c) return c;
    }
    return pa.length - pb.length;
  }

  function render() {
    const needle = filterInput.value.trim().toLowerCase();
    const grouped = groupInput.checked;
    const visible = [...regs.values()]
      .filter((r) => !needle || r.name.toLowerCase().includes(needle))
      .sort((a, b) => (descending ? -1 : 1) * compareNames(a.name, b.name));
    const wanted = [];
    const usedGroups = new Set();
    let open = [];
    for (const r of visible) {
      const parts = r.name.split('.');
      let depth = 0;
      if (grouped && parts.length > 1) {
        const prefixes = parts.slice(0, -1);
        depth = Math.min(prefixes.length, 6);
        for (let i = 0; i < prefixes.length; i++) {
          const key = prefixes.slice(0, i + 1).join('.');
          if (open[i] === key) continue;
          open = open.slice(0, i);
          open[i] = key;
          usedGroups.add(key);
          wanted.push(groupRow(key, prefixes[i], i));
        }
        open = open.slice(0, prefixes.length);
      } else {
        open = [];
      }
      r.el.name.textContent = grouped && depth ? parts[parts.length - 1] : r.name;
      r.el.name.className = 'name d' + depth;
      r.el.name.title = r.name;
      if (grouped && depth) r.el.name.setAttribute('aria-label', r.name);
      else r.el.name.removeAttribute('aria-label');
      wanted.push(r.el.tr);
    }
    for (const key of groupRows.keys()) if (!usedGroups.has(key)) groupRows.delete(key);
    // Move rows only where the order changed, so focus and open editors survive.
    for (let i = 0; i < wanted.length; i++) {
      if (rows.children[i] !== wanted[i]) rows.insertBefore(wanted[i], rows.children[i] || null);
    }
    while (rows.children.length > wanted.length) rows.lastChild.remove();
    const empty = $('empty');
    empty.hidden = wanted.length > 0;
    empty.textContent = regs.size ? 'No register matches “' + filterInput.value.trim() + '”.' : 'No registers.';
    updateStatus();
  }

  function groupRow(key, label, depth) {
    let tr = groupRows.get(key);
    if (!tr) {
      tr = el('tr', 'group');
      tr.setAttribute('role', 'row');
      const th = el('th');
      th.setAttribute('role', 'rowheader');
      th.colSpan = 4;
      th.scope = 'rowgroup';
      th.className = 'd' + Math.min(depth, 6);
      th.textContent = label + '.';
      th.title = key;
      tr.append(th);
      groupRows.set(key, tr);
    }
    return tr;
  }

  // ---- countdowns -------------------------------------------------------------------

  function fmt(ms) {
    const s = Math.max(0, Math.ceil(ms / 1000));
    if (s < 60) return s + ' s';
    if (s < 3600) return Math.floor(s / 60) + ' min ' + (s % 60) + ' s';
    return Math.floor(s / 3600) + ' h ' + Math.floor((s % 3600) / 60) + ' min';
  }

  function tick1(r, at) {
    let text = '—';
    let expiring = false;
    if (r.gone) {
      text = r.goneWhy;
    } else if (r.expiresAt !== null) {
      const left = r.expiresAt - at;
      text = fmt(left);
      expiring = left < EXPIRING_MS;
      if (left < -500) requestSync();
    }
    if (r.el.ttl.textContent !== text) r.el.ttl.textContent = text;
    r.el.tr.classList.toggle('expiring', expiring);
  }

  function tick() {
    const at = now();
    for (const r of regs.values()) tick1(r, at);
  }

  // ---- wiring -------------------------------------------------------------------------

  function init() {
    $('tools').addEventListener('submit', (event) => event.preventDefault());
    filterInput.addEventListener('input', render);
    filterInput.addEventListener('keydown', (event) => {
      if (event.key === 'Escape' && filterInput.value) {
        filterInput.value = '';
        render();
      }
    });
    groupInput.addEventListener('change', render);
    sortButton.addEventListener('click', () => {
      descending = !descending;
      sortButton.parentElement.setAttribute('aria-sort', descending ? 'descending' : 'ascending');
      $('sort-arrow').textContent = descending ? '▼' : '▲';
      render();
    });
    $('retry').addEventListener('click', () => wakeRetry && wakeRetry());
    $('auth').addEventListener('submit', submitToken);
    $('forget').addEventListener('click', () => {
      keepToken('');
      location.reload(); // drops the registers shown with it; the page asks again
    });
    document.addEventListener('keydown', (event) => {
      const typing = /^(INPUT|TEXTAREA|SELECT)$/.test(document.activeElement.tagName);
      if (event.key === '/' && !typing && !event.ctrlKey && !event.metaKey) {
        event.preventDefault();
        filterInput.focus();
      }
    });
    setInterval(tick, 250);
    render();
    pollLoop();
  }

  init();
})();
