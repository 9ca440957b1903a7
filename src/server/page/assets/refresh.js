// continuity-agent status page: keeps the page current. Every few seconds it
// fetches "/" again and swaps in the regions marked data-live; the action
// forms are outside them, so a refresh never wipes what is being typed. The
// page reads the same without this script (reload to update).
(function () {
  'use strict';
  var PERIOD_MS = 5000;

  // After a form was posted, the address bar shows the action's route:
  // point it back at "/" so a reload reads instead of posting again.
  if (window.location.pathname !== '/') {
    window.history.replaceState(null, '', '/');
  }

  // The sign-in and error pages have nothing live to refresh.
  if (!document.querySelector('[data-live]')) {
    return;
  }

  function say(text, stale) {
    var el = document.getElementById('refresh-state');
    if (!el) { return; }
    el.textContent = text;
    el.className = stale ? 'stale' : '';
  }

  function typing() {
    var el = document.activeElement;
    return !!(el && el.form);
  }

  function swap(html) {
    var fresh = new DOMParser().parseFromString(html, 'text/html');
    var regions = document.querySelectorAll('[data-live]');
    for (var i = 0; i < regions.length; i++) {
      var next = fresh.getElementById(regions[i].id);
      if (next) {
        regions[i].replaceWith(document.adoptNode(next));
      }
    }
  }

  function refresh() {
    if (document.hidden || typing()) {
      window.setTimeout(refresh, PERIOD_MS);
      return;
    }
    window.fetch('/', { credentials: 'same-origin', cache: 'no-store' })
      .then(function (r) {
        if (r.status === 401 || r.status === 403) {
          // Signed out (expired, restarted, token changed): show the login page.
          window.location.assign('/');
          throw new Error('signed out');
        }
        if (!r.ok) { throw new Error('HTTP ' + r.status); }
        return r.text();
      })
      .then(function (html) {
        swap(html);
        say(' · live, every ' + PERIOD_MS / 1000 + ' s', false);
      })
      .catch(function (e) {
        say(' · not updated: ' + e.message + '; showing older data', true);
      })
      .then(function () { window.setTimeout(refresh, PERIOD_MS); });
  }

  say(' · live, every ' + PERIOD_MS / 1000 + ' s', false);
  window.setTimeout(refresh, PERIOD_MS);
})();
