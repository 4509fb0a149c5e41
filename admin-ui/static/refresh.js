// genset console: optional live refresh. Pages work without it. On a page whose <main> has
// data-refresh="N", every N seconds fetch the same URL and swap in the elements marked
// data-live. Vendored with the console; no third-party code.
(function () {
  "use strict";
  var main = document.querySelector("main[data-refresh]");
  if (!main || !window.fetch || !window.DOMParser) return;
  var every = Math.max(5, parseInt(main.getAttribute("data-refresh"), 10) || 0) * 1000;
  function tick() {
    if (document.hidden) return;
    fetch(window.location.href, { credentials: "same-origin", headers: { "X-Genset-Refresh": "1" } })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (!html) return;
        var doc = new DOMParser().parseFromString(html, "text/html");
        document.querySelectorAll("[data-live]").forEach(function (el) {
          var fresh = doc.querySelector('[data-live="' + el.getAttribute("data-live") + '"]');
          if (fresh) el.replaceWith(document.importNode(fresh, true));
        });
      })
      .catch(function () {});
  }
  window.setInterval(tick, every);
})();
