// The host client: log in, watch the host and its VMs, start and stop them, use a console.
// Plain JavaScript, no framework, same-origin requests only. The session token is kept in
// sessionStorage (it ends with the tab).
'use strict';

(function () {
  var TOKEN_KEY = 'hv-token';
  var REFRESH_MS = 2000;
  var CONSOLE_MS = 1000;
  // The console keeps at most this many characters on the page.
  var CONSOLE_KEEP = 256 * 1024;
  var ACTIONS = ['start', 'shutdown', 'stop', 'reset'];
  var ACTION_LABELS = { start: 'Start', shutdown: 'Shut down', stop: 'Power off', reset: 'Reset' };
  // Which actions make sense in which state (the host refuses the others with 409 anyway).
  var ENABLED = {
    running: { shutdown: true, stop: true, reset: true },
    stopped: { start: true },
    'shutting-down': { stop: true }
  };

  var token = sessionStorage.getItem(TOKEN_KEY);
  var refreshTimer = null;
  var consoleTimer = null;
  var consoleVm = null;
  var consoleNext = 0;
  var consoleBusy = false;
  var refreshBusy = false;

  function $(id) { return document.getElementById(id); }

  function showMessage(text, info) {
    var m = $('message');
    m.textContent = text;
    m.className = info ? 'message info' : 'message';
    m.hidden = !text;
  }

  function clearMessage() { showMessage(''); }

  // An API call. Resolves with the parsed JSON answer; rejects with an Error whose
  // `status` is the HTTP status (0 if the host could not be reached).
  function api(method, path, body, contentType) {
    var headers = {};
    if (token) { headers.Authorization = 'Bearer ' + token; }
    var init = { method: method, headers: headers, cache: 'no-store' };
    if (body !== undefined) {
      init.body = body;
      headers['Content-Type'] = contentType || 'application/json';
    }
    return fetch(path, init).then(function (r) {
      return r.text().then(function (text) {
        var data = null;
        try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
        if (r.ok) { return data; }
        var err = new Error(data && data.error ? data.error : 'HTTP ' + r.status);
        err.status = r.status;
        err.data = data;
        err.retryAfter = r.headers.get('Retry-After');
        if (r.status === 401 && path !== '/api/login') { sessionEnded(); }
        throw err;
      });
    }, function () {
      var err = new Error('the host cannot be reached');
      err.status = 0;
      throw err;
    });
  }

  // ---- Login and logout -------------------------------------------------------------

  function showLogin() {
    stopTimers();
    closeConsole();
    $('main-view').hidden = true;
    $('login-view').hidden = false;
    $('logout').hidden = true;
    $('who').textContent = '';
    $('password').value = '';
    $('password').focus();
  }

  function showMain() {
    $('login-view').hidden = true;
    $('main-view').hidden = false;
    $('logout').hidden = false;
    $('who').textContent = sessionStorage.getItem(TOKEN_KEY + '-user') || '';
    refresh();
    stopTimers();
    refreshTimer = setInterval(refresh, REFRESH_MS);
  }

  function sessionEnded() {
    if (!token) { return; }
    token = null;
    sessionStorage.removeItem(TOKEN_KEY);
    showLogin();
    showMessage('The session has ended: log in again.');
  }

  function login(ev) {
    ev.preventDefault();
    clearMessage();
    var user = $('user').value;
    var body = JSON.stringify({ user: user, password: $('password').value });
    $('login').disabled = true;
    api('POST', '/api/login', body).then(function (data) {
      token = data.token;
      sessionStorage.setItem(TOKEN_KEY, token);
      sessionStorage.setItem(TOKEN_KEY + '-user', user);
      $('password').value = '';
      showMain();
    }, function (err) {
      if (err.status === 429) {
        showMessage('Too many failed logins: try again in ' + (err.retryAfter || '?') + ' s.');
      } else if (err.status === 401) {
        showMessage('Wrong user name or password.');
      } else {
        showMessage('Login failed: ' + err.message);
      }
    }).then(function () { $('login').disabled = false; });
  }

  function logout() {
    var done = function () {
      token = null;
      sessionStorage.removeItem(TOKEN_KEY);
      showLogin();
      showMessage('Logged out.', true);
    };
    api('POST', '/api/logout').then(done, done);
  }

  function stopTimers() {
    if (refreshTimer !== null) { clearInterval(refreshTimer); refreshTimer = null; }
  }

  // ---- Host summary and VM table ----------------------------------------------------

  function uptime(s) {
    var d = Math.floor(s / 86400);
    var h = Math.floor(s % 86400 / 3600);
    var m = Math.floor(s % 3600 / 60);
    var parts = [];
    if (d) { parts.push(d + ' d'); }
    if (d || h) { parts.push(h + ' h'); }
    parts.push(m + ' min');
    return parts.join(' ');
  }

  function mib(n) {
    return n >= 1024 ? (n / 1024).toFixed(1) + ' GiB' : n + ' MiB';
  }

  function showHost(h) {
    $('host-board').textContent = h.board;
    $('host-support').textContent = h.support;
    $('host-cpus').textContent = String(h.cpus);
    $('host-memory').textContent = mib(h.memory_mib) + ' (' + mib(h.memory_free_mib) + ' free)';
    $('host-uptime').textContent = uptime(h.uptime_s);
    var ev = h.evaluation;
    var evalNodes = document.querySelectorAll('#host .eval');
    for (var i = 0; i < evalNodes.length; i++) { evalNodes[i].hidden = !ev; }
    if (ev) {
      $('host-evaluation').textContent = ev.expired
        ? 'expired: VMs cannot be started'
        : ev.days_left + ' days left';
    }
  }

  function vmRow(name) {
    var rows = $('vms').tBodies[0].rows;
    for (var i = 0; i < rows.length; i++) {
      if (rows[i].getAttribute('data-vm') === name) { return rows[i]; }
    }
    return null;
  }

  function newRow(name) {
    var tr = document.createElement('tr');
    tr.setAttribute('data-vm', name);
    var nameCell = document.createElement('td');
    var link = document.createElement('a');
    link.href = '#';
    link.className = 'vm-name';
    link.textContent = name;
    link.addEventListener('click', function (ev) { ev.preventDefault(); openConsole(name); });
    nameCell.appendChild(link);
    tr.appendChild(nameCell);
    var state = document.createElement('td');
    state.className = 'state';
    tr.appendChild(state);
    for (var i = 0; i < 3; i++) { tr.appendChild(document.createElement('td')); }
    var actions = document.createElement('td');
    actions.className = 'actions';
    ACTIONS.forEach(function (action) {
      var b = document.createElement('button');
      b.type = 'button';
      b.setAttribute('data-action', action);
      b.textContent = ACTION_LABELS[action];
      b.addEventListener('click', function () { vmAction(name, action); });
      actions.appendChild(b);
    });
    tr.appendChild(actions);
    return tr;
  }

  // Updates the table in place (rows keep their buttons between refreshes).
  function showVms(vms) {
    var body = $('vms').tBodies[0];
    var seen = {};
    vms.forEach(function (vm, index) {
      seen[vm.name] = true;
      var tr = vmRow(vm.name) || newRow(vm.name);
      if (body.rows[index] !== tr) { body.insertBefore(tr, body.rows[index] || null); }
      var cells = tr.cells;
      cells[1].textContent = vm.state;
      cells[1].className = 'state state-' + vm.state;
      cells[2].textContent = String(vm.vcpus);
      cells[3].textContent = mib(vm.memory_mib);
      cells[4].textContent = vm.autostart ? 'yes' : 'no';
      var enabled = ENABLED[vm.state] || {};
      var buttons = cells[5].querySelectorAll('button');
      for (var i = 0; i < buttons.length; i++) {
        buttons[i].disabled = !enabled[buttons[i].getAttribute('data-action')];
      }
    });
    for (var i = body.rows.length - 1; i >= 0; i--) {
      if (!seen[body.rows[i].getAttribute('data-vm')]) { body.deleteRow(i); }
    }
  }

  function refresh() {
    if (!token || refreshBusy) { return Promise.resolve(); }
    refreshBusy = true;
    return Promise.all([api('GET', '/api/host'), api('GET', '/api/vms')]).then(function (r) {
      showHost(r[0]);
      showVms(r[1]);
    }, function (err) {
      if (err.status !== 401) { showMessage('Cannot refresh: ' + err.message); }
    }).then(function () { refreshBusy = false; });
  }

  function vmAction(name, action) {
    clearMessage();
    api('POST', '/api/vms/' + encodeURIComponent(name) + '/' + action).then(function () {
      showMessage(ACTION_LABELS[action] + ' ' + name + ': done.', true);
    }, function (err) {
      if (err.status !== 401) {
        showMessage(ACTION_LABELS[action] + ' ' + name + ' failed: ' + err.message);
      }
    }).then(refresh);
  }

  // ---- Console ------------------------------------------------------------------------

  function openConsole(name) {
    closeConsole();
    consoleVm = name;
    consoleNext = 0;
    $('console-vm').textContent = name;
    $('console-output').textContent = '';
    $('console').hidden = false;
    pollConsole();
    consoleTimer = setInterval(pollConsole, CONSOLE_MS);
    $('console-input').focus();
  }

  function closeConsole() {
    if (consoleTimer !== null) { clearInterval(consoleTimer); consoleTimer = null; }
    consoleVm = null;
    $('console').hidden = true;
  }

  function pollConsole() {
    if (!consoleVm || consoleBusy) { return; }
    var vm = consoleVm;
    consoleBusy = true;
    var path = '/api/vms/' + encodeURIComponent(vm) + '/console?since=' + consoleNext;
    api('GET', path).then(function (data) {
      if (vm !== consoleVm) { return; }
      consoleNext = data.next;
      if (data.data) {
        var out = $('console-output');
        var atBottom = out.scrollTop + out.clientHeight >= out.scrollHeight - 4;
        out.appendChild(document.createTextNode(plain(data.data)));
        if (out.textContent.length > CONSOLE_KEEP) {
          out.textContent = out.textContent.slice(-CONSOLE_KEEP);
        }
        if (atBottom) { out.scrollTop = out.scrollHeight; }
      }
    }, function (err) {
      if (err.status !== 401 && vm === consoleVm) {
        showMessage('Console of ' + vm + ': ' + err.message);
        if (err.status === 404) { closeConsole(); }
      }
    }).then(function () { consoleBusy = false; });
  }

  // Serial output as text: terminal escape sequences (colours, cursor moves) and carriage
  // returns are dropped; a character that was not UTF-8 arrives as U+FFFD.
  function plain(text) {
    return text.replace(/\u001b\[[0-9;?]*[ -\/]*[@-~]/g, '').replace(/\u001b[()][0-9A-Za-z]/g, '')
      .replace(/\r/g, '');
  }

  function sendConsole(ev) {
    ev.preventDefault();
    if (!consoleVm) { return; }
    var input = $('console-input');
    var line = input.value + '\n';
    input.value = '';
    var vm = consoleVm;
    api('POST', '/api/vms/' + encodeURIComponent(vm) + '/console', line, 'text/plain; charset=utf-8')
      .then(function () { pollConsole(); }, function (err) {
        if (err.status !== 401) { showMessage('Console of ' + vm + ': ' + err.message); }
      });
  }

  // ---- Start --------------------------------------------------------------------------

  function start() {
    $('login-form').addEventListener('submit', login);
    $('logout').addEventListener('click', logout);
    $('console-close').addEventListener('click', closeConsole);
    $('console-form').addEventListener('submit', sendConsole);
    if (token) { showMain(); } else { showLogin(); }
  }

  if (document.readyState === 'loading') {
    document.addEventListener('DOMContentLoaded', start);
  } else {
    start();
  }
})();
