// Live parts of console pages: an element with data-live="<url>" data-every="<ms>" gets its
// content from that URL again and again. A refresh waits while focus is inside the element,
// so a keyboard user's place is never lost.
"use strict";
(function () {
  function refresh(element) {
    if (element.contains(document.activeElement)) return;
    fetch(element.dataset.live, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (answer) {
        if (answer.redirected || !answer.ok) return null;
        return answer.text();
      })
      .then(function (html) {
        if (html !== null && !element.contains(document.activeElement)) {
          element.innerHTML = html;
          element.dataset.refreshedAt = new Date().toISOString();
        }
      })
      .catch(function () { /* the next round tries again */ });
  }
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-live]").forEach(function (element) {
      var every = parseInt(element.dataset.every || "2000", 10);
      window.setInterval(function () { refresh(element); }, Math.max(every, 500));
    });
  });
})();
