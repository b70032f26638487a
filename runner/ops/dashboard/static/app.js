// Galley dashboard: polls the server's JSON API and draws it. Plain DOM, no framework, no
// build step, nothing fetched from elsewhere. Text from the stack (task names, ids, reasons)
// is only ever set as textContent, never parsed as HTML.
"use strict";

(() => {
  const meta = (name) => document.querySelector(`meta[name="${name}"]`).content;
  const CSRF = meta("galley-csrf");
  const INTERVAL = Math.max(200, Number(meta("galley-interval")) * 1000 || 2000);
  //: The dead-letter queues are read again after this long even if their depth did not change.
  const DLQ_EVERY = 15000;
  const READY = new Set(["SUCCESS", "FAILURE", "REVOKED"]);
  const COLORS = { "jobs": "#4f46e5", "jobs DLQ": "#dc2626", "long": "#0d9488", "long DLQ": "#ea580c" };
  const $ = (id) => document.getElementById(id);

  // --- small helpers ---

  function el(tag, props = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props)) {
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key === "data") Object.assign(node.dataset, value);
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value);
    }
    for (const child of children) {
      if (child !== null && child !== undefined) node.append(child);
    }
    return node;
  }

  function svg(tag, attrs = {}) {
    const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
    return node;
  }

  function duration(seconds) {
    const whole = Math.max(0, Math.floor(seconds));
    const pad = (n) => String(n).padStart(2, "0");
    if (whole >= 3600) return `${Math.floor(whole / 3600)}h${pad(Math.floor((whole % 3600) / 60))}m`;
    if (whole >= 60) return `${Math.floor(whole / 60)}m${pad(whole % 60)}s`;
    return `${whole}s`;
  }

  const clock = (epoch) => new Date(epoch * 1000).toISOString().slice(11, 19) + " UTC";
  const when = (iso) => (iso ? iso.replace("T", " ").slice(0, 19) + " UTC" : "–");
  const count = (progress) =>
    `${+progress.done.toFixed(2)}/${+progress.total.toFixed(2)} (${Math.round(progress.fraction * 100)}%)`;

  //: A read the server has not answered in this long is given up, and the page says so: a
  //: hanging AWS endpoint holds a refresh for minutes, and the page looked current meanwhile.
  //: An action (POST) is waited for: it goes on in the server either way.
  const PATIENCE = Math.max(5000, 10 * INTERVAL);

  async function api(path, options = {}) {
    let response;
    let data = null;
    // the CSRF token on every request: a POST and the dead letters' listing need it
    const headers = { "X-Galley-CSRF": CSRF, ...(options.headers || {}) };
    const signal = options.method ? undefined : AbortSignal.timeout(PATIENCE);
    try {
      response = await fetch(path, { credentials: "same-origin", ...options, headers, signal });
      data = await response.json();
    } catch (error) {
      if (error.name === "TimeoutError") {
        throw new Error(`the dashboard server did not answer in ${PATIENCE / 1000}s (AWS slow or out of reach?)`);
      }
      if (!response) throw new Error("the dashboard server does not answer (is galley dashboard still running?)");
      throw new Error(`HTTP ${response.status} without a JSON answer`);
    }
    if (!response.ok) {
      const failure = new Error(data && data.error ? data.error : `HTTP ${response.status}`);
      failure.status = response.status;
      throw failure;
    }
    return data;
  }

  function post(path, body) {
    return api(path, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
  }

  function fill(tbody, rows) {
    tbody.replaceChildren(...rows);
  }

  function bar(progress) {
    const box = el("div", { class: progress ? "bar" : "bar indeterminate" }, el("div", { class: "fill" }));
    if (progress) box.firstChild.style.width = `${(progress.fraction * 100).toFixed(1)}%`;
    return el(
      "div",
      { class: "progress" },
      box,
      el("span", { class: "progress-text", text: progress ? count(progress) : "no progress reported" })
    );
  }

  function idButton(id) {
    return el("button", { class: "id", type: "button", text: id, title: "look this job up", onclick: () => lookup(id) });
  }

  // --- the overview: queues, chart, workers, jobs, tasks ---

  function renderQueues(data) {
    fill(
      $("queues").tBodies[0],
      data.queues.map((q) => {
        const name = el("td", {}, el("span", { class: "swatch" }), q.name);
        name.firstChild.style.background = COLORS[q.name] || "#94a3b8";
        if (q.problem) {
          const unset = q.problem.startsWith("not set");
          return el("tr", { data: { queue: q.name } }, name, el("td", { colspan: "3", class: unset ? "unset" : "problem", text: q.problem }));
        }
        return el(
          "tr",
          { data: { queue: q.name } },
          name,
          el("td", { class: "num", text: q.visible }),
          el("td", { class: "num", text: q.in_flight }),
          el("td", { class: "num", text: q.delayed })
        );
      })
    );
  }

  function renderChart(history, now) {
    const chart = $("chart");
    const W = 640, H = 180, left = 34, bottom = 18, top = 8;
    const series = Object.entries(history.queues).filter(([, points]) => points.length);
    // the span shown grows with the samples there are: at least half a minute, at most the window
    const first = Math.min(now, ...series.map(([, points]) => points[0][0]));
    const span = Math.min(history.window, Math.max(30, now - first));
    let peak = 1;
    for (const [, points] of series) for (const p of points) peak = Math.max(peak, p[1] + p[2] + p[3]);
    const step = niceStep(peak);
    const ceiling = Math.ceil(peak / step) * step;
    const x = (t) => left + ((t - (now - span)) / span) * (W - left - 4);
    const y = (v) => top + (1 - v / ceiling) * (H - top - bottom);
    const nodes = [];
    for (let v = 0; v <= ceiling; v += step) {
      nodes.push(svg("line", { x1: left, x2: W, y1: y(v), y2: y(v), class: "grid-line" }));
      const label = svg("text", { x: left - 6, y: y(v) + 3, "text-anchor": "end", class: "axis" });
      label.textContent = v;
      nodes.push(label);
    }
    for (const ago of [span, span / 2, 0]) {
      const anchor = ago === span ? "start" : ago ? "middle" : "end";
      const label = svg("text", { x: x(now - ago), y: H - 4, "text-anchor": anchor, class: "axis" });
      label.textContent = ago ? `−${duration(ago)}` : "now";
      nodes.push(label);
    }
    for (const [name, points] of series) {
      const color = COLORS[name] || "#94a3b8";
      const shown = points.filter((p) => p[0] >= now - span);
      const coords = shown.map((p) => `${x(p[0]).toFixed(1)},${y(p[1] + p[2] + p[3]).toFixed(1)}`);
      if (!coords.length) continue;
      if (coords.length === 1) coords.push(`${x(now).toFixed(1)},${coords[0].split(",")[1]}`);
      if (name === "jobs") {
        const start = coords[0].split(",")[0], end = coords[coords.length - 1].split(",")[0];
        nodes.push(svg("polygon", { points: `${start},${y(0)} ${coords.join(" ")} ${end},${y(0)}`, class: "area", fill: color }));
      }
      nodes.push(svg("polyline", { points: coords.join(" "), class: "series", stroke: color, "data-queue": name }));
    }
    chart.replaceChildren(...nodes);
    $("legend").replaceChildren(
      ...series.map(([name]) => {
        const item = el("span", {}, el("span", { class: "swatch" }), name);
        item.firstChild.style.background = COLORS[name] || "#94a3b8";
        return item;
      }),
      el("span", { class: "hint", text: "messages: visible + in flight + delayed" })
    );
  }

  function niceStep(peak) {
    const raw = peak / 4;
    const power = 10 ** Math.floor(Math.log10(raw));
    for (const factor of [1, 2, 5, 10]) if (raw <= factor * power) return Math.max(1, factor * power);
    return Math.max(1, 10 * power);
  }

  function renderWorkers(data) {
    const now = data.at;
    fill(
      $("workers").tBodies[0],
      data.workers.map((w) =>
        el(
          "tr",
          {},
          el("td", { class: "mono", text: w.name, title: `galley ${w.version}` }),
          el("td", { text: w.queue }),
          el("td", {}, el("span", { class: `badge ${w.state}`, text: w.state })),
          el("td", { class: "num", text: `${w.running.length}/${w.concurrency}` }),
          el("td", { class: "num", text: w.waiting }),
          el("td", { class: "num", text: w.totals.succeeded }),
          el("td", { class: "num", text: w.totals.failed }),
          el("td", { class: "num", text: w.totals.retried }),
          el("td", { class: "num", text: duration(now - w.started) })
        )
      )
    );
    $("workers-count").textContent = data.workers.length;
    const notes = [];
    if (!data.workers.length) notes.push("No worker in the registry.");
    if (data.registry_problem) notes.push(`Worker registry: ${data.registry_problem}`);
    if (data.gone) notes.push(`${data.gone} stopped or gone.`);
    notes.push(...data.notes);
    $("workers-note").textContent = notes.join(" ");
  }

  function renderJobs(data) {
    $("running").replaceChildren(
      ...data.jobs.map((job) =>
        el(
          "li",
          { data: { jobId: job.id } },
          el(
            "div",
            { class: "job-line" },
            el("span", { class: "task", text: job.task }),
            el("span", { class: "age", text: job.age === null ? "starting" : `running ${duration(job.age)}` })
          ),
          el("div", { class: "job-meta" }, idButton(job.id), ` on ${job.worker}`),
          bar(job.progress)
        )
      )
    );
    $("running-count").textContent = data.jobs.length;
    $("running-note").hidden = data.jobs.length > 0;
  }

  function renderTasks(data) {
    const rows = Object.entries(data.tasks).map(([name, c]) =>
      el(
        "tr",
        {},
        el("td", { class: "mono", text: name }),
        el("td", { class: "num", text: c.running }),
        el("td", { class: "num", text: c.succeeded }),
        el("td", { class: "num", text: c.failed }),
        el("td", { class: "num", text: c.retried })
      )
    );
    fill($("tasks").tBodies[0], rows);
    $("tasks-note").hidden = rows.length > 0;
  }

  // --- errors and freshness ---

  function showError(message) {
    const banner = $("error");
    banner.textContent = `Cannot refresh: ${message} — trying again every ${INTERVAL / 1000}s.`;
    banner.hidden = false;
    $("live").className = "live stale";
  }

  function clearError(at) {
    $("error").hidden = true;
    $("live").className = "live ok";
    $("updated").textContent = `updated ${clock(at)}`;
  }

  let toastTimer = null;
  function toast(text, bad = false) {
    const box = $("toast");
    box.textContent = text;
    box.className = bad ? "toast bad" : "toast";
    box.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => (box.hidden = true), 8000);
  }

  // --- dead letters ---

  let dlqDepth = null;
  let dlqReadAt = 0;
  // One listing at a time: each receives every message and the server runs them in turn, so a
  // listing asked for at each refresh while failures arrive piled up behind each other (and
  // took the browser's connections from the refreshes). One asked for meanwhile runs after it.
  let dlqLoading = null;
  let dlqAgain = false;

  function loadDeadLetters() {
    if (dlqLoading) {
      dlqAgain = true;
      return dlqLoading;
    }
    dlqReadAt = Date.now();
    dlqLoading = (async () => {
      try {
        renderDeadLetters(await api("/api/dlq"));
      } catch (error) {
        $("dlq").replaceChildren(el("p", { class: "problem", text: `Cannot read the dead-letter queues: ${error.message}` }));
      } finally {
        dlqLoading = null;
        if (dlqAgain) {
          dlqAgain = false;
          loadDeadLetters();
        }
      }
    })();
    return dlqLoading;
  }

  function renderDeadLetters(data) {
    $("dlq").replaceChildren(
      ...data.queues.map((queue) => {
        const box = el("div", { class: "dlq", data: { role: queue.role } });
        const n = queue.letters.length;
        const head = el(
          "div",
          { class: "dlq-head" },
          el("h3", { text: queue.name }),
          el("span", { class: "pill", text: n >= data.limit ? `${n}+` : n }),
          el("span", { class: "spacer" })
        );
        if (!queue.problem && n) {
          head.append(
            el("button", {
              class: "button small", type: "button", text: "Redrive all",
              onclick: () => confirmThen(
                "Redrive every message?",
                `Send all ${n} messages of the ${queue.name} back to the queue each failed on, with its retries reset.`,
                "Redrive all", false,
                () => act({ action: "redrive", queue: queue.role })
              ),
            }),
            el("button", {
              class: "button small danger", type: "button", text: "Purge",
              onclick: () => confirmThen(
                "Purge the dead-letter queue?",
                `Delete every message in the ${queue.name}. This cannot be undone.`,
                "Purge", true,
                () => act({ action: "purge", queue: queue.role })
              ),
            })
          );
        }
        box.append(head);
        if (queue.problem) {
          box.append(el("p", { class: queue.problem.startsWith("not set") ? "note" : "problem", text: queue.problem }));
          return box;
        }
        if (!n) {
          box.append(el("p", { class: "note", text: "Empty: nothing has failed for good." }));
          return box;
        }
        const rows = queue.letters.map((letter) => {
          const id = letter.task_id || letter.message_id;
          return el(
            "tr",
            { data: { letter: id } },
            el("td", { class: "mono", text: letter.task || "(undecodable)" }),
            el("td", {}, letter.task_id ? idButton(letter.task_id) : el("span", { class: "mono", text: letter.message_id })),
            el("td", { class: "when", text: when(letter.failed_at) + (letter.failed_at_source === "SentTimestamp" ? " *" : "") }),
            el("td", { class: "num", text: letter.receive_count }),
            el("td", { class: "reason", text: letter.reason, title: letter.reason }),
            el(
              "td",
              {},
              el("button", {
                class: "button small", type: "button", text: "Redrive",
                onclick: () => confirmThen(
                  "Redrive this job?",
                  `Send ${letter.task || "message"} ${id} back to ${letter.source_queue || "its queue"}, with its retries reset.`,
                  "Redrive", false,
                  () => act({ action: "redrive", queue: queue.role, ids: [id] })
                ),
              })
            )
          );
        });
        box.append(
          el(
            "table",
            { class: "table" },
            el(
              "thead",
              {},
              el("tr", {}, ...["Task", "Job id", "Failed at", "Receives", "Reason", ""].map((h) =>
                el("th", { class: h === "Receives" ? "num" : "", text: h })))
            ),
            el("tbody", {}, ...rows)
          )
        );
        return box;
      })
    );
  }

  function confirmThen(title, text, label, danger, action) {
    const dialog = $("confirm");
    $("confirm-title").textContent = title;
    $("confirm-text").textContent = text;
    const ok = $("confirm-ok");
    ok.textContent = label;
    ok.className = danger ? "button primary danger" : "button primary";
    ok.onclick = () => {
      dialog.close();
      action();
    };
    $("confirm-cancel").onclick = () => dialog.close();
    dialog.showModal();
  }

  async function act(body) {
    try {
      const done = await post("/api/dlq", body);
      toast([done.message, ...(done.lines || [])].join("\n"), Boolean(done.not_moved && done.not_moved.length));
    } catch (error) {
      toast(error.message, true);
    }
    await loadDeadLetters();
  }

  // --- job lookup ---

  let lookedUp = null;
  //: Lookups not answered yet: a refresh asks again for the job shown only when none is (with
  //: S3 slow, one a refresh piled up like the dead-letter listings did).
  let lookups = 0;

  // A quiet lookup is the refresh of the job shown: it must not touch the field, where the
  // person may be typing the next id.
  async function lookup(id, quiet = false) {
    const wanted = id.trim();
    if (!quiet) $("job-id").value = wanted;
    if (!wanted) return;
    lookedUp = wanted;
    let data;
    lookups += 1;
    try {
      data = await api(`/api/job?id=${encodeURIComponent(wanted)}`);
    } catch (error) {
      if (lookedUp !== wanted) return;
      const cls = error.status === 404 ? "notfound" : "problem";
      $("job").replaceChildren(el("p", { class: cls, text: error.message }));
      if (error.status === 400) lookedUp = null;
      return;
    } finally {
      lookups -= 1;
    }
    if (lookedUp !== wanted) return;
    renderJob(data.job);
    if (READY.has(data.job.state)) lookedUp = null;
    if (!quiet) $("job").scrollIntoView({ block: "nearest" });
  }

  function renderJob(job) {
    const rows = [
      ["Id", job.id],
      ["Args", job.args],
      ["Kwargs", job.kwargs],
      ["Worker", job.worker],
      ["Queue", job.queue],
      ["Retries", job.retries],
      ["Done at", job.date_done ? when(job.date_done) : null],
    ].filter(([, value]) => value !== null && value !== undefined);
    const parts = [
      el("div", { class: "head" }, el("span", { class: `badge ${job.state}`, text: job.state }), el("span", { class: "task", text: job.task || "(task not recorded)" })),
      el("dl", {}, ...rows.flatMap(([name, value]) => [el("dt", { text: name }), el("dd", { class: name === "Id" || name === "Args" || name === "Kwargs" ? "mono" : "", text: String(value) })])),
    ];
    if (job.progress) parts.push(bar(job.progress));
    if (job.error) parts.push(el("div", { class: "error", text: job.error }));
    if (job.traceback) {
      parts.push(el("details", {}, el("summary", { text: "Traceback" }), el("pre", { class: "traceback", text: job.traceback })));
    }
    if (job.result !== null) parts.push(el("div", { class: "note", text: "Result" }), el("pre", { class: "result", text: job.result }));
    $("job").replaceChildren(...parts);
  }

  // --- the loop ---

  async function refresh() {
    try {
      const data = await api("/api/overview");
      $("source").textContent = data.source;
      $("bucket").textContent = data.bucket || "–";
      $("rate").textContent = data.rate === null ? "–" : data.rate.toFixed(2);
      renderQueues(data);
      renderChart(data.history, data.at);
      renderWorkers(data);
      renderJobs(data);
      renderTasks(data);
      clearError(data.at);
      const depth = data.queues
        .filter((q) => q.kind === "dead-letter")
        .map((q) => q.visible + q.in_flight + q.delayed) // a listing moves them in flight
        .join(",");
      if (depth !== dlqDepth || Date.now() - dlqReadAt > DLQ_EVERY) {
        dlqDepth = depth;
        loadDeadLetters();
      }
      if (lookedUp && !lookups) lookup(lookedUp, true);
    } catch (error) {
      showError(error.message);
    } finally {
      setTimeout(refresh, INTERVAL);
    }
  }

  $("lookup").addEventListener("submit", (event) => {
    event.preventDefault();
    lookup($("job-id").value);
  });
  refresh();
})();
