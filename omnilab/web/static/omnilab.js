// omnilab's web UI: enhancements only. Every page reads without this file.
// - a running run's log follows live (server-sent events), appended as text;
// - the status word changes in place, and when the run ends the page's result sections
//   are refreshed from the server's own rendering;
// - "select all" on the runs table.
"use strict";

(function () {
  function followRun() {
    var run = document.getElementById("run");
    var log = document.getElementById("log");
    if (!run || !log || run.dataset.live !== "true" || !window.EventSource) return;
    var status = document.getElementById("run-status");
    var state = document.getElementById("log-state");
    var url = log.dataset.stream + "?offset=" + encodeURIComponent(log.dataset.offset || "0");
    var source = new EventSource(url);
    // Follow the end unless the reader scrolled up.
    var stick = true;
    log.addEventListener("scroll", function () {
      stick = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
    });
    log.scrollTop = log.scrollHeight;
    function setStatus(word) {
      if (!status || !word) return;
      status.textContent = word;
      status.className = "status status-" + word;
      // "waiting for capacity" is over once a worker took the run.
      var waiting = document.getElementById("waiting");
      if (waiting && word !== "queued") waiting.remove();
    }
    source.addEventListener("log", function (event) {
      var text = (log.textContent && !log.textContent.endsWith("\n") ? "\n" : "") + event.data + "\n";
      log.appendChild(document.createTextNode(text));
      if (stick) log.scrollTop = log.scrollHeight;
    });
    source.addEventListener("status", function (event) {
      try { setStatus(JSON.parse(event.data).status); } catch (e) { /* ignore */ }
    });
    source.addEventListener("end", function (event) {
      source.close();
      try { setStatus(JSON.parse(event.data).status); } catch (e) { /* ignore */ }
      if (state) state.textContent = "complete";
      run.dataset.live = "false";
      refresh();
    });
  }

  // Replace the sections marked data-refresh (and the buttons) with the server's newer
  // rendering of this page: parsed as a document, moved in as nodes.
  function refresh() {
    fetch(window.location.pathname, { credentials: "same-origin" })
      .then(function (response) { return response.ok ? response.text() : null; })
      .then(function (html) {
        if (!html) return;
        var fresh = new DOMParser().parseFromString(html, "text/html");
        var ids = ["run-actions"];
        document.querySelectorAll("[data-refresh]").forEach(function (el) { if (el.id) ids.push(el.id); });
        ids.forEach(function (id) {
          var old = document.getElementById(id);
          var now = fresh.getElementById(id);
          if (old && now) old.replaceWith(document.importNode(now, true));
        });
        // Lines the worker wrote after the run's status changed (the stream ended on the
        // status) are in the server's log: append what the live log lacks.
        var log = document.getElementById("log");
        var full = fresh.getElementById("log");
        if (log && full) {
          var have = log.textContent, now = full.textContent;
          if (now.length > have.length && now.startsWith(have)) {
            log.appendChild(document.createTextNode(now.slice(have.length)));
          }
        }
        var error = fresh.getElementById("error");
        if (error && !document.getElementById("error")) {
          var facts = document.getElementById("facts");
          if (facts) facts.after(document.importNode(error, true));
        }
      })
      .catch(function () { /* the page stays as it is */ });
  }

  function selectAll() {
    var table = document.getElementById("runs");
    if (!table) return;
    var head = table.querySelector("thead th .sr");
    if (!head) return;
    var box = document.createElement("input");
    box.type = "checkbox";
    box.setAttribute("aria-label", "select all");
    box.addEventListener("change", function () {
      table.querySelectorAll("tbody input[name=run]").forEach(function (c) { c.checked = box.checked; });
    });
    head.parentNode.appendChild(box);
  }

  document.addEventListener("DOMContentLoaded", function () {
    followRun();
    selectAll();
  });
})();
