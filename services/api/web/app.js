// The caseworkers' web inbox: a small application over the JSON API (/v1) and its live
// stream (/v1/stream). Plain JavaScript, no build step; every text a caseworker reads is
// Danish, in the words of the KP guide (Exception, Opgave, Notifikation; Behandlet, Lukket;
// Forfaldsdato; Markér som fuldført, Luk opgave, Tildel, Del, Gem). Pages (hash routes): #/login, #/ (overblik), #/list, #/f/<id>, #/new,
// #/notifications, #/subscriptions. Data is always put into the page as text, never as HTML.
'use strict';

const KIND = { exception: 'Exception', task: 'Opgave', notification: 'Notifikation' };
const STATUS = { open: 'Åben', completed: 'Behandlet', closed: 'Lukket' };
const REASON = {
  not_started: 'Ikke startet', in_progress: 'I gang', waiting: 'Afventer', deferred: 'Udskudt',
  handled: 'Håndteret', resolved_by_job: 'Løst af job', not_needed: 'Ikke nødvendig',
};
const OPEN_REASONS = ['not_started', 'in_progress', 'waiting', 'deferred'];
const PRIORITY = { low: 'Lav', normal: 'Normal', high: 'Høj' };
// The ESAS records a follow-up may be about, in Danish.
const REGARDING = {
  application: 'Ansøgning', applicant: 'Ansøger', student: 'Studerende', guest_student: 'Gæstestuderende',
  education_structure: 'Uddannelsesstruktur', job_run: 'Jobkørsel',
};
const ACCESS = { read: 'Læse', write: 'Skrive' };
const INBOX = { unread: 'Ulæst', read: 'Læst', dismissed: 'Afvist' };
const EVENT = {
  created: 'Oprettet', edited: 'Redigeret', assigned: 'Tildelt', shared: 'Delt',
  unshared: 'Deling fjernet', completed: 'Markeret som fuldført', closed: 'Lukket',
  recurred: 'Opstået igen', reopened: 'Genåbnet', marked_overdue: 'Forfaldsdato overskredet',
  read: 'Læst', dismissed: 'Afvist', erased: 'Personoplysninger slettet',
  legal_hold_placed: 'Retligt tilbageholdt', legal_hold_released: 'Tilbageholdelse ophævet',
  note_added: 'Note tilføjet',
};
const TOPICS = {
  'education_structure.dates_changed': {
    title: 'Ændrede datoer for uddannelsesstrukturer', filters: { education: 'Uddannelse', structure_id: 'Struktur-id' },
  },
  'guest_student.data_share_requested': {
    title: 'Anmodninger om deling af gæstestuderendes data',
    filters: { requesting_institution: 'Anmodende institution', home_institution: 'Hjeminstitution' },
  },
};

const session = { token: null, claims: null, config: { dev_login: false }, source: null };

// ---- small helpers -------------------------------------------------------------------

/** An element with attributes (`on*` are listeners) and children (strings become text). */
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith('on')) node.addEventListener(name.slice(2), value);
    else if (value === true) node.setAttribute(name, '');
    else node.setAttribute(name, value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function field(label, id, control, hint) {
  control.id = id;
  control.setAttribute('aria-describedby', `err-${id}`);
  return el('div', {}, el('label', { for: id }, label), control.wrapper || control, hint ? el('div', { class: 'hint' }, hint) : null,
    el('div', { class: 'error', id: `err-${id}`, role: 'alert' }));
}

function select(options, selected) {
  return el('select', {}, Object.entries(options).map(([value, text]) =>
    el('option', { value, selected: value === selected }, text)));
}

function danishDate(iso) {
  if (!iso) return '–';
  return new Date(iso).toLocaleString('da-DK', { timeZone: 'Europe/Copenhagen', dateStyle: 'long', timeStyle: 'short' });
}

// Display names of users and teams, from the directory (GET /v1/directory/names), by
// `user:<id>` / `team:<id>`; a principal the directory has no name for shows its id.
const names = new Map();

/** Fetches the names of the principals not asked for yet (owners, shares, actors of a page). */
async function loadNames(principals) {
  const wanted = [...new Set(principals.filter((p) => p && (p.type === 'user' || p.type === 'team'))
    .map((p) => `${p.type}:${p.id}`))].filter((key) => !names.has(key) && !key.includes(','));
  for (let i = 0; i < wanted.length; i += 200) {
    const batch = wanted.slice(i, i + 200);
    const { ok, data } = await api('GET', `/v1/directory/names?principals=${encodeURIComponent(batch.join(','))}`);
    for (const key of batch) names.set(key, ok ? data.names[key] || null : null);
  }
}

function principalText(p) {
  if (!p) return '–';
  const name = names.get(`${p.type}:${p.id}`);
  if (name && name !== p.id) return p.type === 'team' ? `${name} (team)` : name;
  return p.type === 'team' ? `Team ${p.id}` : `Bruger ${p.id}`;
}

function actorText(a) {
  if (!a) return 'ukendt';
  switch (a.type) {
    case 'user':
    case 'team': return principalText(a);
    case 'rule': return `Regel ${a.id}`;
    case 'scheduler': return `Planlagt job ${a.job}`;
    default: return 'Systemet';
  }
}

function main() { return document.getElementById('main'); }

function show(title, ...content) {
  const m = main();
  m.replaceChildren(el('h1', {}, title), ...content);
  document.title = `${title} – ESAS Opfølgninger`;
}

function toast(text, href) {
  const node = el('div', { class: 'toast', role: 'status' }, href ? el('a', { href }, text) : text);
  // On a phone a message may cover a button: it can be put away at once.
  const close = el('button', { type: 'button', class: 'toast-close', 'aria-label': 'Luk beskeden' }, '×');
  close.addEventListener('click', () => node.remove());
  node.append(close);
  document.getElementById('live').append(node);
  setTimeout(() => node.remove(), 20000);
}

/** Shows a problem document: next to its field when it names one on this form, else on top. */
// Problems whose codes the page says in its own words.
const PROBLEM = {
  unknown_principal: 'Findes ikke i institutionens katalog: vælg en bruger eller et team fra forslagene.',
};

function showProblem(form, problem) {
  for (const node of form.querySelectorAll('.error')) node.textContent = '';
  const text = PROBLEM[problem.code] || problem.detail || problem.title || 'Noget gik galt.';
  const target = problem.field && form.querySelector(`#err-${CSS.escape(problem.field)}`);
  const node = target || form.querySelector('.form-error');
  if (node) {
    node.textContent = text;
    const control = problem.field && form.querySelector(`#${CSS.escape(problem.field)}`);
    if (control) { control.setAttribute('aria-invalid', 'true'); control.focus(); }
  } else {
    toast(text);
  }
}

async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${session.token}` };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  if (response.status === 401) {
    // Expired (or revoked): through the provider again, back to this page; else sign in anew.
    if (sessionStorage.getItem('followups.provider') && oidcReady()) providerSignIn(location.hash || '#/');
    else signOut();
    throw new Error('Log ind igen.');
  }
  const text = await response.text();
  const data = text ? JSON.parse(text) : null;
  return { ok: response.ok, status: response.status, data };
}

function claimsOf(token) {
  try {
    const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    return JSON.parse(decodeURIComponent(escape(atob(part))));
  } catch { return null; }
}

function isMine(principal) {
  const c = session.claims;
  return principal.type === 'user' ? principal.id === c.sub : (c.teams || []).includes(principal.id);
}

function canWrite(f) {
  if ((session.claims.roles || []).includes('admin') || isMine(f.owner)) return true;
  return (f.shares || []).some((s) => s.access === 'write' && isMine(s.principal));
}

// ---- sign-in -------------------------------------------------------------------------
// With an identity provider (config.oidc): the authorization code flow with PKCE, as a public
// client. The tokens live in this tab (sessionStorage); a new tab, or a deep link opened
// signed out, goes through the provider again, which answers at once while its own session
// lasts, and comes back to the page it was opened on. Before the access token expires it is
// renewed with the refresh token, or the page offers a new sign-in.

const PENDING = 'followups.oidc.pending';
const renewal = { timer: null };

function base64url(bytes) {
  return btoa(String.fromCharCode(...new Uint8Array(bytes))).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

function randomText() { return base64url(crypto.getRandomValues(new Uint8Array(32))); }

function redirectUri() { return `${location.origin}/app/`; }

function oidcReady() { return Boolean(session.config.oidc && session.config.oidc.authorization_endpoint); }

/** Sends the browser to the provider; it comes back to `returnTo` (a hash route). */
async function providerSignIn(returnTo) {
  const oidc = session.config.oidc;
  const verifier = randomText();
  const state = randomText();
  const challenge = base64url(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(verifier)));
  const pending = JSON.parse(localStorage.getItem(PENDING) || '{}');
  for (const [key, begun] of Object.entries(pending)) if (Date.now() - begun.at > 10 * 60 * 1000) delete pending[key];
  pending[state] = { verifier, returnTo, at: Date.now() };
  localStorage.setItem(PENDING, JSON.stringify(pending));
  sessionStorage.removeItem('followups.signed_out');
  const url = new URL(oidc.authorization_endpoint);
  url.search = new URLSearchParams({
    response_type: 'code', client_id: oidc.client_id, redirect_uri: redirectUri(), scope: oidc.scopes,
    state, code_challenge: challenge, code_challenge_method: 'S256',
  }).toString();
  location.assign(url.toString());
}

async function tokenRequest(fields) {
  const response = await fetch(session.config.oidc.token_endpoint, {
    method: 'POST', headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ client_id: session.config.oidc.client_id, ...fields }),
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok || !data.access_token) throw new Error(data.error_description || data.error || `svar ${response.status}`);
  return data;
}

/** Finishes a sign-in when the provider has sent the browser back (`?code=…&state=…`). */
async function finishProviderSignIn() {
  const params = new URLSearchParams(location.search);
  const state = params.get('state');
  if (!state || !(params.has('code') || params.has('error'))) return;
  const pending = JSON.parse(localStorage.getItem(PENDING) || '{}');
  const begun = pending[state];
  delete pending[state];
  localStorage.setItem(PENDING, JSON.stringify(pending));
  history.replaceState(null, '', `/app/${begun ? begun.returnTo : '#/'}`);
  if (params.has('error')) {
    session.signInError = `Institutionens login afviste: ${params.get('error_description') || params.get('error')}`;
  } else if (!begun || !oidcReady()) {
    session.signInError = 'Login kunne ikke gøres færdigt (ukendt eller for gammel anmodning). Prøv igen.';
  } else {
    try {
      const tokens = await tokenRequest({
        grant_type: 'authorization_code', code: params.get('code'), redirect_uri: redirectUri(), code_verifier: begun.verifier,
      });
      await signIn(tokens.access_token, tokens);
    } catch (error) {
      session.signInError = `Login kunne ikke gøres færdigt: ${error.message}`;
    }
  }
}

/** Renews the access token a minute before it expires, or offers a new sign-in. */
function scheduleRenewal() {
  clearTimeout(renewal.timer);
  const exp = session.claims && session.claims.exp;
  if (!exp) return;
  const wait = Math.max(0, exp * 1000 - Date.now() - 60 * 1000);
  renewal.timer = setTimeout(async () => {
    const refresh = sessionStorage.getItem('followups.refresh');
    if (refresh && oidcReady()) {
      try {
        const tokens = await tokenRequest({ grant_type: 'refresh_token', refresh_token: refresh });
        await signIn(tokens.access_token, tokens);
        return;
      } catch { /* offer a new sign-in below */ }
    }
    expiryNotice(exp);
  }, Math.min(wait, 2 ** 31 - 1));
}

function expiryNotice(exp) {
  const notice = document.getElementById('session-notice');
  const at = new Date(exp * 1000).toLocaleTimeString('da-DK', { hour: '2-digit', minute: '2-digit' });
  const again = el('button', { type: 'button', onclick: () => (oidcReady() ? providerSignIn(location.hash || '#/') : signOut()) }, 'Log ind igen');
  notice.replaceChildren(`Dit login udløber kl. ${at}. `, again);
  notice.hidden = false;
  const left = exp * 1000 - Date.now();
  setTimeout(() => { if (session.claims && session.claims.exp === exp) signOut(); }, Math.max(0, left));
}

/** Signs in with `token`; `tokens`, when it came from the provider, with its refresh and ID token. */
async function signIn(token, tokens = null) {
  const payload = claimsOf(token);
  const response = await fetch('/v1/me', { headers: { Authorization: `Bearer ${token}` } });
  const me = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(me.detail || 'Tokenet blev afvist.');
  session.token = token;
  session.claims = { sub: me.user, inst: me.institution, teams: me.teams, roles: me.admin ? ['admin'] : [], exp: payload && payload.exp };
  sessionStorage.setItem('followups.token', token);
  if (tokens) {
    sessionStorage.setItem('followups.provider', '1');
    if (tokens.refresh_token) sessionStorage.setItem('followups.refresh', tokens.refresh_token);
    if (tokens.id_token) sessionStorage.setItem('followups.id_token', tokens.id_token);
  }
  document.getElementById('session-notice').hidden = true;
  document.getElementById('nav').hidden = false;
  document.getElementById('logout').hidden = false;
  document.getElementById('who').textContent = `${session.claims.sub} · ${session.claims.inst}`;
  scheduleRenewal();
  connectLive();
  refreshUnread();
}

function signOut() {
  const idToken = sessionStorage.getItem('followups.id_token');
  const viaProvider = session.token && oidcReady() && session.config.oidc.end_session_endpoint && sessionStorage.getItem('followups.provider');
  session.token = null;
  session.claims = null;
  clearTimeout(renewal.timer);
  for (const key of ['followups.token', 'followups.refresh', 'followups.id_token', 'followups.provider']) sessionStorage.removeItem(key);
  sessionStorage.setItem('followups.signed_out', '1');
  if (session.source) { session.source.close(); session.source = null; }
  document.getElementById('nav').hidden = true;
  document.getElementById('logout').hidden = true;
  document.getElementById('session-notice').hidden = true;
  document.getElementById('who').textContent = '';
  if (viaProvider) {
    // Signs out at the provider too, which sends the browser back to the sign-in page.
    const url = new URL(session.config.oidc.end_session_endpoint);
    url.search = new URLSearchParams({
      client_id: session.config.oidc.client_id, post_logout_redirect_uri: redirectUri(),
      ...(idToken ? { id_token_hint: idToken } : {}),
    }).toString();
    location.assign(url.toString());
    return;
  }
  location.hash = '#/login';
}

function loginView() {
  const form = el('form', {});
  const error = el('p', { class: 'error form-error', role: 'alert' }, session.signInError || '');
  session.signInError = null;
  const provider = oidcReady()
    ? el('div', { class: 'provider-login' },
      el('button', { type: 'button', id: 'login-provider', onclick: () => providerSignIn(session.returnTo || '#/') }, 'Log ind med institutionens login'))
    : session.config.oidc && session.config.oidc.error
      ? el('p', { class: 'error', role: 'alert' }, 'Institutionens login kan ikke nås lige nu. Prøv igen om lidt.')
      : null;
  if (session.config.dev_login) {
    const user = el('input', { value: 'demo', required: true, autocomplete: 'username' });
    const inst = el('input', { value: 'KP', required: true });
    const teams = el('input', { value: 'admissions, studieadministration' });
    const role = select({ caseworker: 'Sagsbehandler', admin: 'Administrator' }, 'caseworker');
    form.append(
      el('p', { class: 'notice' }, 'Udviklings-login: vælg bruger, institution og teams. Siden udsteder selv et token.'),
      field('Bruger-id', 'login-sub', user),
      field('Institution', 'login-inst', inst),
      field('Teams (adskilt med komma)', 'login-teams', teams),
      field('Rolle', 'login-role', role),
      error,
      el('button', { type: 'submit' }, 'Log ind'));
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      const response = await fetch('/app/dev-token', {
        method: 'POST', headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ sub: user.value, inst: inst.value, teams: teams.value.split(',').map((t) => t.trim()).filter(Boolean), roles: [role.value] }),
      });
      const data = await response.json();
      if (!response.ok) { error.textContent = data.detail; return; }
      await signIn(data.token);
      location.hash = session.returnTo || '#/';
    });
  } else if (!oidcReady()) {
    const token = el('textarea', { required: true, spellcheck: 'false' });
    form.append(field('Adgangstoken (JWT fra jeres login)', 'login-token', token), error,
      el('button', { type: 'submit' }, 'Log ind'));
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      if (!claimsOf(token.value.trim())) { error.textContent = 'Det er ikke et gyldigt token.'; return; }
      try { await signIn(token.value.trim()); } catch (failure) { error.textContent = failure.message; return; }
      location.hash = session.returnTo || '#/';
    });
  } else {
    form.append(error);
  }
  show('Log ind', provider, form);
}

// ---- dashboard -----------------------------------------------------------------------

async function dashboardView() {
  const { data } = await api('GET', '/v1/dashboard');
  const card = (label, n, href, cls) => el('a', { class: 'card', href }, el('div', { class: `n ${cls || ''}` }, String(n)), label);
  const teams = el('ul', {});
  show('Mine opfølgninger',
    el('div', { class: 'cards' },
      // Each card opens the list of exactly what it counts: open, owned by me or my teams.
      card('Åbne exceptions', data.open_by_kind.exception, '#/list?kind=exception&status=open&owner=mine'),
      card('Åbne opgaver', data.open_by_kind.task, '#/list?kind=task&status=open&owner=mine'),
      card('Åbne notifikationer', data.open_by_kind.notification, '#/list?kind=notification&status=open&owner=mine'),
      card('Overskredne', data.overdue, '#/list?status=open&owner=mine&overdue=true', data.overdue ? 'overdue' : ''),
      card('Forfalder i denne uge', data.due_this_week,
        `#/list?status=open&owner=mine&overdue=false&due_before=${encodeURIComponent(new Date(Date.now() + 7 * 86400000).toISOString())}`),
      card('Ulæste notifikationer', data.unread_notifications, '#/notifications')),
    el('h2', {}, 'Mine teams’ køer'), teams);
  await loadNames((session.claims.teams || []).map((id) => ({ type: 'team', id })));
  for (const team of session.claims.teams || []) {
    const page = await api('GET', `/v1/followups?owner=team:${encodeURIComponent(team)}&status=open&limit=200`);
    const n = page.ok ? page.data.items.length : 0;
    teams.append(el('li', {}, el('a', { href: `#/list?owner=team:${team}&status=open` }, principalText({ type: 'team', id: team })),
      `: ${n === 200 ? '200+' : n} åbne`));
  }
  if (!(session.claims.teams || []).length) teams.append(el('li', {}, 'Du er ikke med i nogen teams.'));
}

// ---- lists ---------------------------------------------------------------------------

async function listView(params) {
  await loadNames((session.claims.teams || []).map((id) => ({ type: 'team', id })));
  const kind = select({ '': 'Alle', exception: 'Exceptions', task: 'Opgaver', notification: 'Notifikationer' }, params.get('kind') || '');
  // The list opens on the open follow-ups; `status=` (empty) asks for all.
  if (!params.has('status')) params.set('status', 'open');
  const status = select({ open: 'Åbne', '': 'Alle', completed: 'Behandlede', closed: 'Lukkede' }, params.get('status'));
  const owners = { '': 'Alle jeg kan se', mine: 'Mig og mine teams', me: 'Mig' };
  for (const t of session.claims.teams || []) owners[`team:${t}`] = principalText({ type: 'team', id: t });
  const owner = select(owners, params.get('owner') || '');
  const overdue = el('input', { type: 'checkbox', checked: params.get('overdue') === 'true' });
  overdue.style.width = 'auto';
  const q = el('input', { type: 'search', value: params.get('q') || '' });
  const form = el('form', { class: 'row', role: 'search' },
    field('Type', 'f-kind', kind), field('Status', 'f-status', status), field('Ejer', 'f-owner', owner),
    field('Søg i emne og beskrivelse', 'f-q', q),
    el('div', {}, el('label', { for: 'f-overdue' }, 'Kun overskredne'), overdue),
    el('div', {}, el('button', { type: 'submit' }, 'Filtrér')));
  overdue.id = 'f-overdue';
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const next = new URLSearchParams();
    if (kind.value) next.set('kind', kind.value);
    next.set('status', status.value);
    if (owner.value) next.set('owner', owner.value);
    if (overdue.checked) next.set('overdue', 'true');
    for (const kept of ['due_before', 'regarding']) if (params.get(kept)) next.set(kept, params.get(kept));
    if (q.value.trim()) next.set('q', q.value.trim());
    location.hash = `#/list?${next}`;
  });
  const body = el('tbody', {});
  const more = el('button', { type: 'button', class: 'secondary', hidden: true }, 'Vis flere');
  const count = el('p', { role: 'status' });
  const table = el('table', { class: 'stack' }, el('caption', { class: 'skip' }, 'Opfølgninger sorteret efter forfaldsdato'),
    el('thead', {}, el('tr', {}, ['Emne', 'Type', 'Status', 'Prioritet', 'Ejer', 'Forfaldsdato', 'Oprettet'].map((h) => el('th', { scope: 'col' }, h)))), body);
  const empty = el('p', { class: 'empty', hidden: true }, 'Ingen opfølgninger matcher filteret. Vælg ',
    el('a', { href: '#/list?status=' }, 'alle opfølgninger'), ' eller ret filteret.');
  show('Opfølgninger', form, count, el('div', { class: 'table-scroll' }, table), empty, more);
  const items = [];
  let cursor = null;
  const load = async () => {
    const query = new URLSearchParams();
    for (const [key, value] of params) if (value) query.set(key, value);
    query.set('limit', '50');
    if (cursor) query.set('cursor', cursor);
    const { ok, data } = await api('GET', `/v1/followups?${query}`);
    if (!ok) { count.textContent = data.detail; return; }
    items.push(...data.items);
    await loadNames(data.items.map((f) => f.owner));
    cursor = data.next_cursor;
    more.hidden = !cursor;
    // By due date (none last), then newest.
    items.sort((a, b) => (a.due ? Date.parse(a.due) : Infinity) - (b.due ? Date.parse(b.due) : Infinity)
      || Date.parse(b.created_at) - Date.parse(a.created_at));
    body.replaceChildren(...items.map((f) => el('tr', {},
      el('td', {}, el('a', { href: `#/f/${f.id}` }, f.subject)),
      el('td', { 'data-label': 'Type' }, KIND[f.kind]), el('td', { 'data-label': 'Status' }, STATUS[f.status]),
      el('td', { 'data-label': 'Prioritet' }, PRIORITY[f.priority]), el('td', { 'data-label': 'Ejer' }, principalText(f.owner)),
      dueCell(f), el('td', { 'data-label': 'Oprettet' }, danishDate(f.created_at)))));
    table.hidden = !items.length;
    empty.hidden = Boolean(items.length);
    count.textContent = `${items.length} opfølgning${items.length === 1 ? '' : 'er'}${cursor ? ' (flere findes)' : ''}`;
  };
  more.addEventListener('click', load);
  return load();
}

/** What a follow-up is about, in Danish, linked to the record in ESAS where a link is configured. */
function regardingNode(r) {
  if (!r) return '–';
  const text = `${REGARDING[r.type] || r.type} ${r.id}`;
  const template = (session.config.esas_links || {})[r.type];
  if (!template || r.id === '[slettet]') return text;
  return el('a', { href: template.replace('{id}', encodeURIComponent(r.id)), target: '_blank', rel: 'noopener noreferrer' },
    `${text} (åbner ESAS)`);
}

/** An open follow-up past its due date says so in words and with an icon, not by colour alone. */
function isOverdue(f) { return f.status === 'open' && f.due && Date.parse(f.due) < Date.now(); }

function dueCell(f) {
  if (!isOverdue(f)) return el('td', { 'data-label': 'Forfaldsdato' }, danishDate(f.due));
  return el('td', { class: 'overdue', 'data-label': 'Forfaldsdato' }, el('span', { 'aria-hidden': 'true' }, '⚠ '), `Overskredet: ${danishDate(f.due)}`);
}

// ---- one follow-up -------------------------------------------------------------------

async function detailView(id, goneMessage) {
  const [one, history] = await Promise.all([api('GET', `/v1/followups/${id}`), api('GET', `/v1/followups/${id}/history`)]);
  if (!one.ok && goneMessage) { show('Tildelt', el('p', { role: 'status' }, goneMessage), el('p', {}, el('a', { href: '#/list' }, 'Til listen'))); return; }
  if (!one.ok) { show('Ikke fundet', el('p', {}, 'Opfølgningen findes ikke, eller du har ikke adgang til den.')); return; }
  const f = one.data;
  if (f.kind === 'notification') {
    // Opening a notification reads it (for this user only).
    api('POST', `/v1/notifications/${f.id}/read`).then(refreshUnread).catch(() => {});
  }
  await loadNames([f.owner, ...(f.shares || []).map((s) => s.principal), ...(f.notes || []).map((n) => n.author),
    ...(history.ok ? history.data.items.flatMap((e) => [e.actor, ...(e.changes || []).flatMap((c) =>
      (c.field === 'owner' ? [c.from, c.to] : [c.principal]))]) : [])]);
  const pairs = [['Type', KIND[f.kind]], ['Status', ['handled', 'not_needed'].includes(f.status_reason) ? STATUS[f.status] : `${STATUS[f.status]} (${REASON[f.status_reason]})`],
    ['Prioritet', PRIORITY[f.priority]], ['Ejer', principalText(f.owner)],
    ['Delt med', (f.shares || []).map((s) => `${principalText(s.principal)} (${ACCESS[s.access]})`).join(', ') || 'Ingen'],
    ['Forfaldsdato', isOverdue(f) ? `⚠ Overskredet: ${danishDate(f.due)}` : danishDate(f.due)], ['Vedrører', regardingNode(f.regarding)],
    ['Oprettet', danishDate(f.created_at)], ['Senest ændret', danishDate(f.updated_at)],
    ['Beskrivelse', f.description || '–']];
  const facts = el('dl', {}, pairs.flatMap(([t, v]) => [el('dt', {}, t), el('dd', { 'data-field': t }, v)]));
  const timeline = el('ol', { class: 'timeline' }, (history.ok ? history.data.items : []).map((e) =>
    el('li', {}, el('strong', {}, EVENT[e.type] || e.type), ` af ${actorText(e.actor)}, ${danishDate(e.at)}`,
      e.type === 'note_added' && e.data && e.data.text ? el('p', { class: 'note-text' }, e.data.text) : null,
      (e.changes || []).length ? el('ul', { class: 'changes' }, e.changes.map((c) => el('li', {}, changeText(c)))) : null)));
  const sections = [facts];
  if (f.erased_at) {
    sections.push(el('p', { class: 'notice', role: 'note' },
      `Personoplysningerne i denne opfølgning er slettet (${danishDate(f.erased_at)}). Den tælles stadig med i lister og overblik.`));
  }
  if (f.legal_hold) {
    sections.push(el('p', { class: 'notice', role: 'note' }, `Retligt tilbageholdt: ${f.legal_hold}. Den slettes ikke, før tilbageholdelsen ophæves.`));
  }
  if (f.status !== 'open') {
    sections.push(el('p', { class: 'notice', role: 'note' }, 'Denne opfølgning er afsluttet og kan ikke ændres.'));
  } else if (!canWrite(f)) {
    sections.push(el('p', { class: 'notice', role: 'note' }, 'Du kan se denne opfølgning, men ikke ændre den.'));
  } else {
    sections.push(actions(f));
  }
  sections.push(notesSection(f, f.status === 'open' && canWrite(f) && !f.erased_at));
  sections.push(el('h2', {}, 'Historik'), timeline);
  show(f.subject, ...sections);
}

/**
 * A text field that suggests users or teams (per `typeSelect`) from the directory as one
 * types: a suggestion fills in the id, and shows the name.
 */
function picker(id, typeSelect) {
  const input = el('input', { required: true, autocomplete: 'off', list: `${id}-options`, spellcheck: 'false' });
  const options = el('datalist', { id: `${id}-options` });
  let asked = 0;
  const suggest = async () => {
    const mine = ++asked;
    const { ok, data } = await api('GET', `/v1/directory/${typeSelect.value}s?q=${encodeURIComponent(input.value.trim())}&limit=20`);
    if (!ok || mine !== asked) return;
    for (const item of data.items) names.set(`${item.principal.type}:${item.principal.id}`, item.display_name);
    options.replaceChildren(...data.items.map((item) => el('option', { value: item.principal.id }, item.display_name)));
  };
  input.addEventListener('input', suggest);
  input.addEventListener('focus', suggest);
  typeSelect.addEventListener('change', () => { input.value = ''; suggest(); });
  const wrapper = document.createDocumentFragment();
  wrapper.append(input, options);
  input.wrapper = wrapper;
  return input;
}

/**
 * True when `principal` is in the directory, or the caseworker confirmed it by submitting
 * again: a follow-up given to a mistyped id would be lost to everyone.
 */
async function confirmPrincipal(form, principal) {
  const message = form.querySelector('.form-error');
  if (!principal.id) return false;
  const { ok, data } = await api('GET', `/v1/directory/${principal.type}s?q=${encodeURIComponent(principal.id)}&limit=100`);
  const known = ok && data.items.some((item) => item.principal.id.toLowerCase() === principal.id.toLowerCase());
  if (known || form.dataset.confirmed === `${principal.type}:${principal.id}`) return true;
  form.dataset.confirmed = `${principal.type}:${principal.id}`;
  message.textContent = `${principal.type === 'team' ? 'Teamet' : 'Brugeren'} "${principal.id}" findes ikke i kataloget. Tjek stavningen, eller tryk igen for at gøre det alligevel.`;
  return false;
}

/** The notes of `f`, newest last, and (when `writable`) a form that adds one. */
function notesSection(f, writable) {
  const list = el('ul', { class: 'notes' }, (f.notes || []).map((n) =>
    el('li', {}, el('p', { class: 'note-text' }, n.text), el('div', { class: 'hint' }, `${actorText(n.author)}, ${danishDate(n.at)}`))));
  if (!(f.notes || []).length) list.append(el('li', { class: 'hint' }, 'Ingen noter endnu.'));
  const section = el('section', { 'aria-labelledby': 'notes-heading' }, el('h2', { id: 'notes-heading' }, 'Noter'), list);
  if (writable) {
    const text = el('textarea', { required: true, rows: 3, maxlength: 2000 });
    const form = el('form', {}, field('Ny note', 'text', text, 'Ingen CPR-numre eller helbredsoplysninger: de hører til i Sag og Dokument.'),
      el('p', { class: 'error form-error', role: 'alert' }), el('button', { type: 'submit' }, 'Tilføj note'));
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      const { ok, data } = await api('POST', `/v1/followups/${f.id}/notes`, { text: text.value });
      if (!ok) { showProblem(form, data); return; }
      toast('Note tilføjet.');
      detailView(f.id);
    });
    section.append(form);
  }
  return section;
}

const FIELD = {
  subject: 'Emne', description: 'Beskrivelse', due: 'Forfaldsdato', priority: 'Prioritet', status: 'Status',
  status_reason: 'Statusårsag', owner: 'Ejer', legal_hold: 'Retligt tilbageholdt',
};

/** One change of the history in words: old → new, from → to, whom and which access. */
function changeText(c) {
  if (c.field === 'share') {
    const who = principalText(c.principal);
    if (c.from === null) return `Delt med ${who} (${ACCESS[c.to] || c.to})`;
    if (c.to === null) return `Deling med ${who} fjernet`;
    return `${who}: ${ACCESS[c.from] || c.from} → ${ACCESS[c.to] || c.to}`;
  }
  const value = (v) => {
    if (v === null || v === undefined || v === '') return 'ingen';
    switch (c.field) {
      case 'due': return danishDate(v);
      case 'priority': return PRIORITY[v] || v;
      case 'status': return STATUS[v] || v;
      case 'status_reason': return REASON[v] || v;
      case 'owner': return principalText(v);
      default: return `»${v}«`;
    }
  };
  if (c.field === 'description') return c.to ? `Beskrivelse ændret: ${value(c.to)}` : 'Beskrivelse fjernet';
  return `${FIELD[c.field] || c.field}: ${value(c.from)} → ${value(c.to)}`;
}

function actions(f) {
  const run = (form, method, path, body) => async () => {
    const { ok, data } = await api(method, path, body());
    if (!ok) { showProblem(form, data); return; }
    toast('Gemt.');
    detailView(f.id);
  };
  const buttons = el('form', { 'aria-label': 'Handlinger' }, el('p', { class: 'error form-error', role: 'alert' }));
  const complete = el('button', { type: 'button' }, 'Markér som fuldført');
  const close = el('button', { type: 'button', class: 'secondary' }, 'Luk opgave');
  complete.addEventListener('click', run(buttons, 'POST', `/v1/followups/${f.id}/complete`, () => undefined));
  close.addEventListener('click', run(buttons, 'POST', `/v1/followups/${f.id}/close`, () => undefined));
  // A notification is read and done with, not closed as a task is.
  buttons.append(el('div', { class: 'row' }, complete, f.kind === 'notification' ? null : close));

  const assignType = select({ team: 'Team', user: 'Bruger' }, 'team');
  const assignId = picker('owner', assignType);
  const assign = el('form', {}, el('fieldset', {}, el('legend', {}, 'Tildel'),
    el('div', { class: 'row' }, field('Type', 'assign-type', assignType), field('Hvem (søg på navn)', 'owner', assignId),
      el('div', {}, el('button', { type: 'submit' }, 'Tildel'))), el('p', { class: 'error form-error', role: 'alert' })));
  assign.addEventListener('submit', async (e) => {
    e.preventDefault();
    const owner = { type: assignType.value, id: assignId.value.trim() };
    if (!(await confirmPrincipal(assign, owner))) return;
    const { ok, data } = await api('POST', `/v1/followups/${f.id}/assign`, { owner });
    if (!ok) { showProblem(assign, data); return; }
    toast(`Tildelt ${principalText(owner)}.`);
    detailView(f.id, `Tildelt ${principalText(owner)}. Du har ikke længere adgang til opfølgningen.`);
  });

  const shareType = select({ user: 'Bruger', team: 'Team' }, 'user');
  const shareId = picker('principal', shareType);
  const shareAccess = select(ACCESS, 'read');
  const share = el('form', {}, el('fieldset', {}, el('legend', {}, 'Del'),
    el('div', { class: 'row' }, field('Type', 'share-type', shareType), field('Med hvem (søg på navn)', 'principal', shareId),
      field('Adgang', 'access', shareAccess), el('div', {}, el('button', { type: 'submit' }, 'Del'))),
    el('p', { class: 'error form-error', role: 'alert' })));
  share.addEventListener('submit', async (e) => {
    e.preventDefault();
    const principal = { type: shareType.value, id: shareId.value.trim() };
    if (!(await confirmPrincipal(share, principal))) return;
    run(share, 'POST', `/v1/followups/${f.id}/shares`, () => ({ principal, access: shareAccess.value }))();
  });

  const due = el('input', { type: 'datetime-local', value: f.due ? toLocalInput(f.due) : '' });
  const priority = select(PRIORITY, f.priority);
  const reason = select(Object.fromEntries(OPEN_REASONS.map((r) => [r, REASON[r]])), f.status_reason);
  const edit = el('form', {}, el('fieldset', {}, el('legend', {}, 'Redigér'),
    el('div', { class: 'row' }, field('Forfaldsdato', 'due', due), field('Prioritet', 'priority', priority),
      field('Statusårsag', 'status_reason', reason), el('div', {}, el('button', { type: 'submit' }, 'Gem'))),
    el('p', { class: 'error form-error', role: 'alert' })));
  const dueShown = due.value;
  edit.addEventListener('submit', (e) => {
    e.preventDefault();
    // Only what the caseworker changed: the field shows the due date to the minute, and
    // sending it back unchanged would move a due date that has seconds.
    run(edit, 'PATCH', `/v1/followups/${f.id}`, () => {
      const body = {};
      if (due.value !== dueShown) body.due = due.value ? new Date(due.value).toISOString() : null;
      if (priority.value !== f.priority) body.priority = priority.value;
      if (reason.value !== f.status_reason) body.status_reason = reason.value;
      return body;
    })();
  });
  return el('section', { 'aria-label': 'Handlinger' }, el('h2', {}, 'Handlinger'), buttons, assign, share, edit);
}

function toLocalInput(iso) {
  const d = new Date(iso);
  const pad = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

// ---- create --------------------------------------------------------------------------

function createView() {
  const subject = el('input', { required: true, maxlength: 200 });
  const description = el('textarea', { maxlength: 2000 });
  const due = el('input', { type: 'datetime-local' });
  const priority = select(PRIORITY, 'normal');
  const regardingType = select({ '': 'Intet', student: 'Studerende', application: 'Ansøgning', guest_student: 'Gæstestuderende' }, '');
  const regardingId = el('input', {});
  const form = el('form', {},
    el('p', {}, 'Skriv aldrig CPR-numre eller følsomme personoplysninger i en opfølgning.'),
    field('Emne', 'subject', subject), field('Beskrivelse', 'description', description),
    el('div', { class: 'row' }, field('Forfaldsdato', 'due', due), field('Prioritet', 'priority', priority)),
    el('div', { class: 'row' }, field('Vedrører (type)', 'regarding-type', regardingType), field('Vedrører (id)', 'regarding', regardingId)),
    el('p', { class: 'error form-error', role: 'alert' }),
    el('button', { type: 'submit' }, 'Gem'));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const body = { kind: 'task', subject: subject.value, description: description.value, priority: priority.value };
    if (due.value) body.due = new Date(due.value).toISOString();
    if (regardingType.value && regardingId.value.trim()) body.regarding = { type: regardingType.value, id: regardingId.value.trim() };
    const { ok, data } = await api('POST', '/v1/followups', body);
    if (!ok) { showProblem(form, data); return; }
    location.hash = `#/f/${data.id}`;
  });
  show('Opret opgave', form);
  subject.focus();
}

// ---- notifications -------------------------------------------------------------------

async function notificationsView(params) {
  const state = params.get('state') || 'unread,read';
  const choice = select({ 'unread,read': 'Ulæste og læste', unread: 'Ulæste', dismissed: 'Afviste' }, state);
  choice.addEventListener('change', () => { location.hash = `#/notifications?state=${choice.value}`; });
  const { data } = await api('GET', `/v1/notifications?state=${encodeURIComponent(state)}&limit=100`);
  const list = el('ul', { class: 'inbox' }, data.items.map((n) => {
    const read = el('button', { type: 'button', class: 'secondary', disabled: n.state !== 'unread' }, 'Markér som læst');
    const dismiss = el('button', { type: 'button', class: 'secondary', disabled: n.state === 'dismissed' }, 'Afvis');
    read.addEventListener('click', async () => { await api('POST', `/v1/notifications/${n.id}/read`); notificationsView(params); refreshUnread(); });
    dismiss.addEventListener('click', async () => { await api('POST', `/v1/notifications/${n.id}/dismiss`); notificationsView(params); refreshUnread(); });
    return el('li', { class: `state-${n.state}` },
      el('a', { href: `#/f/${n.id}` }, n.subject), ` (${INBOX[n.state]}, ${danishDate(n.created_at)}) `, read, ' ', dismiss);
  }));
  if (!data.items.length) list.append(el('li', {}, 'Ingen notifikationer.'));
  const all = el('button', { type: 'button', id: 'read-all' }, 'Markér alle som læst');
  all.addEventListener('click', async () => {
    all.disabled = true;
    // Every unread notification, page by page (each user's read state is its own).
    for (;;) {
      const page = await api('GET', '/v1/notifications?state=unread&limit=200');
      if (!page.ok || !page.data.items.length) break;
      for (const n of page.data.items) await api('POST', `/v1/notifications/${n.id}/read`);
    }
    toast('Alle notifikationer er markeret som læst.');
    notificationsView(params);
    refreshUnread();
  });
  show('Notifikationer', el('div', { class: 'row' }, field('Vis', 'inbox-state', choice), el('div', {}, all)), list);
}

// ---- subscriptions -------------------------------------------------------------------

async function subscriptionsView() {
  const { data } = await api('GET', '/v1/subscriptions');
  await loadNames([...data.items.map((s) => s.subscriber), ...(session.claims.teams || []).map((id) => ({ type: 'team', id }))]);
  const rows = data.items.map((s) => {
    const remove = el('button', { type: 'button', class: 'secondary' }, 'Afmeld');
    remove.addEventListener('click', async () => { await api('DELETE', `/v1/subscriptions/${s.id}`); subscriptionsView(); });
    const filter = Object.entries(s.filter).map(([k, v]) => `${(TOPICS[s.topic]?.filters || {})[k] || k} = ${v}`).join(', ') || 'Alle';
    return el('tr', {}, el('td', {}, TOPICS[s.topic]?.title || s.topic), el('td', { 'data-label': 'Filter' }, filter),
      el('td', { 'data-label': 'Levering' }, s.delivery === 'immediate' ? 'Straks' : 'Dagligt overblik'),
      el('td', { 'data-label': 'Abonnent' }, principalText(s.subscriber)), el('td', {}, remove));
  });
  const topic = select(Object.fromEntries(Object.entries(TOPICS).map(([k, v]) => [k, v.title])), 'education_structure.dates_changed');
  const filterField = el('select', {});
  const fillFilters = () => filterField.replaceChildren(el('option', { value: '' }, 'Intet filter'),
    ...Object.entries(TOPICS[topic.value].filters).map(([k, v]) => el('option', { value: k }, v)));
  fillFilters();
  topic.addEventListener('change', fillFilters);
  const filterValue = el('input', {});
  const delivery = select({ immediate: 'Straks', daily_digest: 'Dagligt overblik' }, 'immediate');
  const who = { me: 'Mig selv' };
  for (const t of session.claims.teams || []) who[`team:${t}`] = principalText({ type: 'team', id: t });
  const subscriber = select(who, 'me');
  const form = el('form', {}, el('fieldset', {}, el('legend', {}, 'Nyt abonnement'),
    field('Emne', 'topic', topic), el('div', { class: 'row' }, field('Filtrér på', 'filter-field', filterField), field('Værdi', 'filter', filterValue)),
    el('div', { class: 'row' }, field('Levering', 'delivery', delivery), field('Abonnent', 'subscriber', subscriber)),
    el('p', { class: 'error form-error', role: 'alert' }), el('button', { type: 'submit' }, 'Abonnér')));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const body = { topic: topic.value, delivery: delivery.value };
    if (filterField.value && filterValue.value.trim()) body.filter = { [filterField.value]: filterValue.value.trim() };
    if (subscriber.value !== 'me') body.subscriber = { type: 'team', id: subscriber.value.slice(5) };
    const { ok, data: made } = await api('POST', '/v1/subscriptions', body);
    if (!ok) { showProblem(form, made); return; }
    toast('Abonnementet er oprettet.');
    subscriptionsView();
  });
  show('Abonnementer',
    el('table', { class: 'stack' }, el('thead', {}, el('tr', {}, ['Emne', 'Filter', 'Levering', 'Abonnent', ''].map((h) => el('th', { scope: 'col' }, h)))),
      el('tbody', {}, rows.length ? rows : el('tr', {}, el('td', { colspan: 5 }, 'Ingen abonnementer.')))),
    form);
}

// ---- live updates --------------------------------------------------------------------

let refreshTimer = null;

function connectLive() {
  if (session.source) session.source.close();
  const source = new EventSource(`/v1/stream?access_token=${encodeURIComponent(session.token)}`);
  session.source = source;
  for (const type of Object.keys(EVENT)) {
    source.addEventListener(type, (message) => {
      const event = JSON.parse(message.data);
      const data = event.data || {};
      if (type === 'created') {
        const subject = (data.event && data.event.subject) || '';
        const what = { exception: 'Ny exception', task: 'Ny opgave', notification: 'Ny notifikation' }[data.kind] || 'Ny';
        const id = (event.subject || '').replace(/^followup\//, '');
        toast(`${what}: ${subject}`, id ? `#/f/${id}` : undefined);
      }
      clearTimeout(refreshTimer);
      refreshTimer = setTimeout(() => { refreshUnread(); refreshLiveView(); }, 300);
    });
  }
}

async function refreshUnread() {
  if (!session.token) return;
  const { ok, data } = await api('GET', '/v1/dashboard');
  if (ok) document.getElementById('unread').textContent = data.unread_notifications ? String(data.unread_notifications) : '';
}

/** Views that show many follow-ups are drawn again when something changes. */
function refreshLiveView() {
  const path = location.hash.replace(/^#/, '').split('?')[0] || '/';
  if (['/', '/list', '/notifications'].includes(path)) route();
}

// ---- routing -------------------------------------------------------------------------

async function route() {
  const [path, query] = location.hash.replace(/^#/, '').split('?');
  const params = new URLSearchParams(query || '');
  if (!session.token && path !== '/login') { session.returnTo = location.hash; location.hash = '#/login'; return; }
  for (const link of document.querySelectorAll('nav a')) {
    const target = link.getAttribute('href').slice(1);
    if (target === (path || '/') || (target !== '/' && (path || '').startsWith(target))) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  try {
    if (path === '/login') loginView();
    else if (!path || path === '/') await dashboardView();
    else if (path === '/list') await listView(params);
    else if (path.startsWith('/f/')) await detailView(path.slice(3));
    else if (path === '/new') createView();
    else if (path === '/notifications') await notificationsView(params);
    else if (path === '/subscriptions') await subscriptionsView();
    else show('Ikke fundet', el('p', {}, 'Siden findes ikke.'));
  } catch (error) {
    show('Noget gik galt', el('p', { class: 'error' }, error.message));
  }
}

async function start() {
  try { session.config = await (await fetch('/app/config.json')).json(); } catch { /* defaults */ }
  document.getElementById('dev-banner').hidden = !session.config.dev_login;
  document.getElementById('logout').addEventListener('click', signOut);
  await finishProviderSignIn();
  const saved = sessionStorage.getItem('followups.token');
  if (!session.token && saved && claimsOf(saved) && claimsOf(saved).exp * 1000 > Date.now()) {
    try { await signIn(saved); } catch { sessionStorage.removeItem('followups.token'); }
  }
  const wanted = location.hash && location.hash !== '#/login' ? location.hash : '#/';
  // A deep link opened signed out (a new tab, a bookmark) goes through the provider and
  // comes back to it; after a sign-out or a failed sign-in the page waits for a click.
  if (!session.token && oidcReady() && !session.signInError && !sessionStorage.getItem('followups.signed_out')) {
    await providerSignIn(wanted);
    return;
  }
  session.returnTo = wanted;
  window.addEventListener('hashchange', route);
  if (!location.hash) location.hash = session.token ? '#/' : '#/login';
  else route();
}

start();
