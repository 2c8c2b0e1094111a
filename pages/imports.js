// The imports page (pages/imports.py): the chosen or dropped file is sent as the body of
// one POST, so the browser streams it from disk (a form post would work too, but shows
// no progress); the upload's progress comes from the request, the import's from polling
// the server. The answer's texts are shown as text, never as markup.
(function () {
  "use strict";
  var form = document.getElementById("import-form");
  if (!form) return;
  var file = document.getElementById("import-file");
  var drop = document.getElementById("import-drop");
  var box = document.getElementById("import-progress");
  var bar = document.getElementById("import-bar");
  var text = document.getElementById("import-progress-text");
  var error = document.getElementById("import-error");
  var button = document.getElementById("import-submit");
  var timer = null;

  ["dragenter", "dragover"].forEach(function (name) {
    drop.addEventListener(name, function (ev) {
      ev.preventDefault();
      drop.classList.add("over");
    });
  });
  ["dragleave", "drop"].forEach(function (name) {
    drop.addEventListener(name, function () {
      drop.classList.remove("over");
    });
  });
  drop.addEventListener("drop", function (ev) {
    ev.preventDefault();
    if (ev.dataTransfer && ev.dataTransfer.files.length) {
      file.files = ev.dataTransfer.files;
    }
  });

  function say(message) {
    error.textContent = message;
    box.hidden = true;
    button.disabled = false;
  }

  function poll() {
    timer = window.setInterval(function () {
      fetch(form.action + "/progress", { headers: { Accept: "application/json" }, credentials: "same-origin" })
        .then(function (r) { return r.json(); })
        .then(function (p) {
          if (!p.mine || p.rows === null || p.rows === undefined) return;
          text.textContent = "Importing · 导入中: " + p.rows.toLocaleString() +
            (p.total ? " / " + p.total.toLocaleString() : "") + " rows";
          if (p.total) {
            bar.max = p.total;
            bar.value = p.rows;
          }
        })
        .catch(function () { /* the next poll tries again */ });
    }, 500);
  }

  form.addEventListener("submit", function (ev) {
    ev.preventDefault();
    var chosen = file.files[0];
    if (!chosen) {
      say("Choose a CSV or Parquet file · 请选择文件");
      return;
    }
    var query = new URLSearchParams({ name: chosen.name, kind: form.elements.kind.value });
    var xhr = new XMLHttpRequest();
    xhr.open("POST", form.action + "?" + query.toString());
    xhr.setRequestHeader("X-CSRF-Token", form.elements.csrf.value);
    xhr.setRequestHeader("Content-Type", "application/octet-stream");
    xhr.setRequestHeader("Accept", "application/json");
    xhr.upload.onprogress = function (e) {
      if (!e.lengthComputable) return;
      bar.max = e.total;
      bar.value = e.loaded;
      text.textContent = "Uploading · 上传中: " + Math.floor((100 * e.loaded) / e.total) + " %";
    };
    xhr.upload.onload = function () {
      bar.removeAttribute("value");
      text.textContent = "Importing · 导入中…";
      if (timer === null) poll();
    };
    xhr.onload = function () {
      if (timer !== null) window.clearInterval(timer);
      timer = null;
      var body = {};
      try { body = JSON.parse(xhr.responseText || "{}"); } catch (e) { body = {}; }
      if (xhr.status === 200 && body.page) {
        window.location.assign(body.page);
      } else {
        say(body.error || "The import failed (HTTP " + xhr.status + ") · 导入失败");
      }
    };
    xhr.onerror = function () {
      if (timer !== null) window.clearInterval(timer);
      timer = null;
      say("The upload failed: the connection was lost · 上传失败");
    };
    error.textContent = "";
    button.disabled = true;
    box.hidden = false;
    text.textContent = "Uploading · 上传中…";
    xhr.send(chosen);
  });
})();
