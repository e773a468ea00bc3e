// etl console: refreshes the parts of a page marked data-poll, and sends the forms marked
// data-async without leaving the page. Served as a file: the Content-Security-Policy allows
// no inline script.
"use strict";

(function () {
  function signedOut(response) {
    return response.redirected && new URL(response.url).pathname === "/sign-in";
  }

  function flash(text, bad) {
    var box = document.getElementById("flash");
    if (!box) return;
    box.textContent = text;
    box.className = bad ? "flash shown bad" : "flash shown";
    window.clearTimeout(box._timer);
    box._timer = window.setTimeout(function () { box.className = "flash"; }, 6000);
  }

  function refresh(element) {
    var url = element.getAttribute("data-poll");
    return fetch(url, { credentials: "same-origin", headers: { "x-console": "fragment" } })
      .then(function (response) {
        if (signedOut(response)) { window.location.assign("/sign-in"); return; }
        if (!response.ok) { element.setAttribute("data-stale", "true"); return; }
        return response.text().then(function (html) {
          // Server-rendered and escaped by the console's templates.
          element.innerHTML = html;
          element.removeAttribute("data-stale");
          bind(element);
        });
      })
      .catch(function () { element.setAttribute("data-stale", "true"); });
  }

  function refreshAll() {
    document.querySelectorAll("[data-poll]").forEach(refresh);
  }

  function errorText(html, status) {
    var doc = new DOMParser().parseFromString(html, "text/html");
    var message = doc.getElementById("error-message");
    return message ? message.textContent : "failed (HTTP " + status + ")";
  }

  function submit(event) {
    var form = event.currentTarget;
    event.preventDefault();
    var question = form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) return;
    var button = form.querySelector("button");
    if (button) button.disabled = true;
    fetch(form.action, {
      method: "POST",
      credentials: "same-origin",
      headers: { "x-console": "action" },
      body: new URLSearchParams(new FormData(form)),
    })
      .then(function (response) {
        if (signedOut(response)) { window.location.assign("/sign-in"); return; }
        if (response.ok) {
          flash((button ? button.textContent : "Action") + ": done", false);
          return refreshAll();
        }
        return response.text().then(function (html) { flash(errorText(html, response.status), true); });
      })
      .catch(function () { flash("the console cannot be reached", true); })
      .finally(function () { if (button) button.disabled = false; });
  }

  function bind(root) {
    root.querySelectorAll("form[data-async]").forEach(function (form) {
      if (form._bound) return;
      form._bound = true;
      form.addEventListener("submit", submit);
    });
  }

  function kindSwitch() {
    var select = document.querySelector("select[data-kind-switch]");
    if (!select) return;
    function show() {
      document.querySelectorAll("fieldset[data-kind]").forEach(function (set) {
        set.hidden = set.getAttribute("data-kind") !== select.value;
      });
    }
    select.addEventListener("change", show);
    show();
  }

  document.addEventListener("DOMContentLoaded", function () {
    bind(document);
    kindSwitch();
    var polled = document.querySelectorAll("[data-poll]");
    if (polled.length) {
      var every = parseInt(polled[0].getAttribute("data-interval") || "3000", 10);
      window.setInterval(refreshAll, Math.max(every, 1000));
    }
  });
})();
