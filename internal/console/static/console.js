// Live updates for the pages of `kubectl webhook ui`. The server renders every page; this script only
// re-reads the current page every few seconds (body data-refresh) and swaps in its live part (#live),
// showing how old what is on screen is. It runs from this file only: the Content-Security-Policy
// forbids inline script. The new part is parsed by DOMParser, which runs no script, and its text was
// escaped by the server's templates.
(function () {
  "use strict";
  var seconds = parseInt(document.body.getAttribute("data-refresh") || "0", 10);
  var updated = document.getElementById("updated");
  if (!seconds || !updated) {
    return;
  }
  var last = Date.now();
  var paused = "";
  var submitting = false;

  function show() {
    if (paused) {
      updated.textContent = "updates paused: " + paused;
      updated.className = "stale";
      return;
    }
    updated.textContent = "updated " + Math.round((Date.now() - last) / 1000) + "s ago";
    updated.className = "";
  }

  function refresh() {
    if (submitting) {
      return; // the page is being left for the answer of a form
    }
    fetch(window.location.href, { credentials: "same-origin", cache: "no-store" })
      .then(function (response) {
        return response.text().then(function (html) {
          var fresh = new DOMParser().parseFromString(html, "text/html").getElementById("live");
          var live = document.getElementById("live");
          if (!fresh || !live) {
            // 401 after the console restarted with a new token, or another answer without a page.
            throw new Error("HTTP " + response.status + ": " + html.slice(0, 200));
          }
          live.replaceWith(document.importNode(fresh, true));
          last = Date.now();
          paused = "";
        });
      })
      .catch(function (err) {
        paused = err.message;
      })
      .then(function () {
        show();
        window.setTimeout(refresh, seconds * 1000);
      });
  }

  document.addEventListener("submit", function () {
    submitting = true;
  });
  show();
  window.setInterval(show, 1000);
  window.setTimeout(refresh, seconds * 1000);
})();
