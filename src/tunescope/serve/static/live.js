// tunescope serve: a training run's progress. Asks the server every second for the metrics records written
// since the last answer and draws the step counter, elapsed time, ETA and the loss and task-accuracy curves
// as inline SVG. No library, nothing from another origin.
(function () {
  "use strict";
  var root = document.getElementById("live");
  if (!root) { return; }
  var url = root.getAttribute("data-progress-url");
  var POLL_MS = 1000;
  var RETRY_MS = 2000;
  var MAX_POINTS = 600;
  var SVG = "http://www.w3.org/2000/svg";
  var W = 560, H = 260, PAD = {left: 52, right: 12, top: 14, bottom: 30};
  var state = fresh();

  function fresh() { return {offset: 0, total: null, train: [], val: [], tasks: {}}; }

  function ingest(r) {
    if (r.kind === "setup" || r.kind === "summary") {
      if (r.total_steps_planned) { state.total = r.total_steps_planned; }
    } else if (r.kind === "train") {
      state.train.push(r);
    } else if (r.kind === "val") {
      state.val.push(r);
    } else if (r.kind === "task_eval" && r.value !== null) {
      var key = r.task + " · " + r.metric;
      (state.tasks[key] = state.tasks[key] || []).push(r);
    }
  }

  function duration(s) {
    if (s === null || !isFinite(s) || s < 0) { return "—"; }
    s = Math.round(s);
    var h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
    return (h ? h + " h " : "") + (h || m ? m + " min " : "") + sec + " s";
  }

  function setText(id, value) {
    var el = document.getElementById(id);
    if (el) { el.textContent = value; }
  }

  function el(name, attrs, text) {
    var node = document.createElementNS(SVG, name);
    Object.keys(attrs).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (text !== undefined) { node.textContent = text; }
    return node;
  }

  function thin(points) {
    if (points.length <= MAX_POINTS) { return points; }
    var stride = Math.ceil(points.length / MAX_POINTS), out = [];
    for (var i = 0; i < points.length; i += stride) { out.push(points[i]); }
    if (out[out.length - 1] !== points[points.length - 1]) { out.push(points[points.length - 1]); }
    return out;
  }

  // series: [{name, points: [[x, y], ...], dots: bool}]; format: how y values are written on the axis.
  function draw(svg, series, xMax, format) {
    while (svg.firstChild) { svg.removeChild(svg.firstChild); }
    var all = [];
    series.forEach(function (s) { s.points.forEach(function (p) { all.push(p); }); });
    svg.setAttribute("data-points", String(all.length));
    if (!all.length) {
      svg.appendChild(el("text", {x: W / 2, y: H / 2, "text-anchor": "middle"}, "no records yet"));
      return;
    }
    var ys = all.map(function (p) { return p[1]; });
    var lo = Math.min.apply(null, ys), hi = Math.max.apply(null, ys);
    if (hi - lo < 1e-9) { lo -= 0.5 * (Math.abs(lo) || 1) * 0.1; hi += 0.5 * (Math.abs(hi) || 1) * 0.1; }
    var span = hi - lo; lo -= span * 0.05; hi += span * 0.05;
    var xHi = Math.max(xMax || 0, Math.max.apply(null, all.map(function (p) { return p[0]; })), 1);
    var iw = W - PAD.left - PAD.right, ih = H - PAD.top - PAD.bottom;
    function X(v) { return PAD.left + iw * v / xHi; }
    function Y(v) { return PAD.top + ih * (1 - (v - lo) / (hi - lo)); }
    for (var t = 0; t <= 4; t++) {
      var v = lo + (hi - lo) * t / 4, y = Y(v);
      svg.appendChild(el("line", {x1: PAD.left, x2: W - PAD.right, y1: y, y2: y, "class": "grid"}));
      svg.appendChild(el("text", {x: PAD.left - 4, y: y + 4, "text-anchor": "end"}, format(v)));
    }
    svg.appendChild(el("line", {x1: PAD.left, x2: PAD.left, y1: PAD.top, y2: H - PAD.bottom, "class": "axis"}));
    svg.appendChild(el("line", {x1: PAD.left, x2: W - PAD.right, y1: H - PAD.bottom, y2: H - PAD.bottom, "class": "axis"}));
    svg.appendChild(el("text", {x: PAD.left, y: H - 10}, "0"));
    svg.appendChild(el("text", {x: W - PAD.right, y: H - 10, "text-anchor": "end"}, "step " + xHi));
    series.forEach(function (s, i) {
      var cls = "s" + (i % 6);
      var pts = thin(s.points);
      if (pts.length) {
        svg.appendChild(el("polyline", {"class": "series " + cls,
          points: pts.map(function (p) { return X(p[0]).toFixed(1) + "," + Y(p[1]).toFixed(1); }).join(" ")}));
      }
      if (s.dots) {
        pts.forEach(function (p) { svg.appendChild(el("circle", {cx: X(p[0]), cy: Y(p[1]), r: 2.5, "class": "dot " + cls})); });
      }
      svg.appendChild(el("text", {x: W - PAD.right - 4, y: PAD.top + 12 + 13 * i, "text-anchor": "end",
        "class": "legend " + cls}, s.name));
    });
  }

  function render(d) {
    var last = state.train.length ? state.train[state.train.length - 1] : null;
    var step = last ? last.step : 0;
    setText("live-step", String(step));
    setText("live-total", state.total ? String(state.total) : "?");
    // Running: time since the run started. Stopped: the training time its last record gives.
    var elapsed = d.status === "running" && d.started ? (Date.parse(d.now) - Date.parse(d.started)) / 1000
      : (last ? last.elapsed_s : null);
    setText("live-elapsed", duration(elapsed));
    var eta = (last && state.total && last.elapsed_s !== null && step > 0)
      ? last.elapsed_s / step * (state.total - step) : null;
    setText("live-eta", d.status === "running" ? duration(eta) : "—");
    setText("live-loss", last && last.loss !== null ? last.loss.toFixed(4) : "—");
    var badge = document.getElementById("live-status");
    badge.textContent = d.status;
    badge.setAttribute("class", "badge status-" + d.status);
    var bar = document.getElementById("live-bar");
    if (state.total) { bar.setAttribute("value", String(Math.min(1, step / state.total))); }
    var loss = [
      {name: "train loss", points: state.train.filter(function (r) { return r.loss !== null; })
        .map(function (r) { return [r.step, r.loss]; })},
      {name: "validation loss", points: state.val.filter(function (r) { return r.val_loss !== null; })
        .map(function (r) { return [r.step, r.val_loss]; }), dots: true}
    ];
    draw(document.getElementById("loss-chart"), loss, state.total, function (v) { return v.toFixed(2); });
    var tasks = Object.keys(state.tasks).sort().map(function (k) {
      return {name: k, points: state.tasks[k].map(function (r) { return [r.step, r.value]; }), dots: true};
    });
    draw(document.getElementById("task-chart"), tasks, state.total,
      function (v) { return (v * 100).toFixed(1) + "%"; });
  }

  function say(message, href, label) {
    var box = document.getElementById("live-message");
    box.textContent = message;
    if (href) {
      var a = document.createElement("a");
      a.setAttribute("href", href);
      a.setAttribute("id", "live-final");
      a.textContent = label;
      box.appendChild(document.createTextNode(" "));
      box.appendChild(a);
    }
  }

  function answered(d) {
    if (d.reset) { state = fresh(); }
    d.records.forEach(ingest);
    state.offset = d.offset;
    if (d.status === "gone") {
      say("The run's folder no longer exists: it was deleted or moved while this page was open.");
      setText("live-status", "gone");
      return false;
    }
    render(d);
    if (d.status === "finished") {
      say("The run finished.", d.final_url, "Open its report");
      return false;
    }
    if (d.status !== "running") {
      say("The run stopped (" + d.status + "); these are the records it wrote.");
      return false;
    }
    return true;
  }

  function poll() {
    fetch(url + "?offset=" + state.offset, {cache: "no-store", credentials: "same-origin"})
      .then(function (response) {
        if (response.status === 404) {
          say("The dashboard no longer lists this run (its folder was deleted, moved or renamed).");
          return null;
        }
        return response.ok ? response.json() : {retry: true};
      })
      .then(function (d) {
        if (d === null) { return; }
        if (d.retry) { window.setTimeout(poll, RETRY_MS); return; }
        if (answered(d)) { window.setTimeout(poll, POLL_MS); }
      })
      .catch(function () { window.setTimeout(poll, RETRY_MS); });  // the server restarting: ask again
  }

  poll();
}());
