// kinema playground: plain JavaScript, no dependencies, nothing fetched from outside this origin.
// The API key lives in this tab's sessionStorage only. User content is always inserted with
// textContent / properties, never as HTML.
"use strict";

(() => {
  const KEY_STORAGE = "kinema.apiKey";
  const FINAL = new Set(["completed", "error"]);
  const POLL_MS = 750;
  const PENDING_REFRESH_MS = 3000;
  const GALLERY_PAGE = 12;
  const KEY_CHECK_ID = "playground-key-check";

  const $ = (id) => document.getElementById(id);
  const limit = Number(document.body.dataset.promptLimit) || 2500;
  const form = $("generate-form");
  const state = {
    key: null,
    follow: null, // AbortController of the generation being followed
    startedAt: 0,
    clock: 0,
    galleryAfter: null,
    gallerySeq: 0,
    pendingTimer: 0,
  };

  // ---------------------------------------------------------------- helpers

  class ApiError extends Error {
    constructor(status, message, fields) {
      super(message);
      this.status = status;
      this.fields = fields;
    }
  }

  const sleep = (ms, signal) =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(resolve, ms);
      signal?.addEventListener("abort", () => {
        clearTimeout(timer);
        reject(signal.reason);
      }, { once: true });
    });

  function el(tag, props = {}, children = []) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(props)) {
      if (value === undefined || value === null) continue;
      if (name === "text") node.textContent = value;
      else if (name === "className") node.className = value;
      else if (name.startsWith("data-")) node.setAttribute(name, value);
      else node[name] = value;
    }
    node.append(...children);
    return node;
  }

  const codePoints = (text) => [...text].length;
  const seconds = (value) => `${Number(value).toFixed(value < 10 ? 2 : 1)}\u00a0s`;

  function bytes(value) {
    if (value == null) return "";
    const units = ["B", "KB", "MB", "GB"];
    let size = Number(value);
    let unit = 0;
    while (size >= 1024 && unit < units.length - 1) {
      size /= 1024;
      unit += 1;
    }
    return `${size.toFixed(unit === 0 ? 0 : 1)} ${units[unit]}`;
  }

  function timings(value) {
    if (!value || typeof value !== "object") return "";
    return Object.entries(value).map(([stage, secs]) => `${stage} ${seconds(secs)}`).join(" · ");
  }

  function maskKey(key) {
    return key.length > 10 ? `${key.slice(0, 4)}…${key.slice(-4)}` : "…";
  }

  // ---------------------------------------------------------------- API

  async function errorFrom(response) {
    let body = null;
    try {
      body = await response.json();
    } catch {
      // not JSON
    }
    if (body && typeof body.message === "string") {
      // The AI/ML API envelope: {statusCode, message, errors: [{field, message}]}.
      return new ApiError(response.status, body.message, Array.isArray(body.errors) ? body.errors : []);
    }
    if (body && body.error && typeof body.error.message === "string") {
      // The OpenAI shape of /v1: {error: {message, param}}.
      const fields = body.error.param ? [{ field: body.error.param, message: body.error.message }] : [];
      return new ApiError(response.status, body.error.message, fields);
    }
    return new ApiError(response.status, `HTTP ${response.status} ${response.statusText}`.trim(), []);
  }

  async function request(path, options = {}, key = state.key) {
    const headers = { Accept: "application/json", ...options.headers };
    if (key) headers.Authorization = `Bearer ${key}`;
    return fetch(path, { cache: "no-store", ...options, headers });
  }

  async function api(path, options = {}) {
    const response = await request(path, options);
    if (!response.ok) {
      const error = await errorFrom(response);
      if (response.status === 401) signOut("The server no longer accepts this key; sign in again.");
      throw error;
    }
    return response.json();
  }

  const pollPath = (id) => `/v2/video/generations?generation_id=${encodeURIComponent(id)}`;
  const eventsPath = (id) => `/v2/video/generations/events?generation_id=${encodeURIComponent(id)}`;

  // ---------------------------------------------------------------- sign in / out

  async function checkKey(key) {
    let response = await request("/v1/videos?limit=1", {}, key);
    if (response.status === 404) {
      // A server without the /v1 list: an unknown id is 404 for a valid key, 401 for a wrong one.
      response = await request(pollPath(KEY_CHECK_ID), {}, key);
    }
    if (response.status === 401) return "This API key is not valid.";
    if (response.ok || response.status === 404) return null;
    return (await errorFrom(response)).message;
  }

  async function signIn(key) {
    const signinError = $("signin-error");
    signinError.hidden = true;
    let problem;
    try {
      problem = await checkKey(key);
    } catch (error) {
      problem = `The server could not be reached (${error.message}).`;
    }
    if (problem) {
      sessionStorage.removeItem(KEY_STORAGE);
      signinError.textContent = problem;
      signinError.hidden = false;
      return;
    }
    sessionStorage.setItem(KEY_STORAGE, key);
    state.key = key;
    $("api-key").value = "";
    $("account-key").textContent = maskKey(key);
    $("signin").hidden = true;
    $("account").hidden = false;
    $("app").hidden = false;
    loadGallery(true);
  }

  function signOut(message) {
    state.follow?.abort();
    state.follow = null;
    stopClock();
    clearTimeout(state.pendingTimer);
    sessionStorage.removeItem(KEY_STORAGE);
    state.key = null;
    state.gallerySeq += 1;
    $("gallery").replaceChildren();
    $("current-job").hidden = true;
    $("current-empty").hidden = false;
    $("result-video").removeAttribute("src");
    $("app").hidden = true;
    $("account").hidden = true;
    $("signin").hidden = false;
    const signinError = $("signin-error");
    signinError.textContent = message || "";
    signinError.hidden = !message;
    $("api-key").focus();
  }

  // ---------------------------------------------------------------- models

  function fillModels(entries) {
    const select = $("model");
    const previous = select.value;
    const options = entries.map((entry) => {
      const label = entry.alias_of ? `${entry.id} → ${entry.alias_of}` : entry.id;
      return el("option", { value: entry.id, text: label, title: entry.description || "" });
    });
    if (!options.length) return;
    select.replaceChildren(...options);
    select.value = entries.some((e) => e.id === previous) ? previous : entries[0].id;
  }

  async function loadModels() {
    try {
      const response = await fetch("/v1/models", { cache: "no-store" });
      if (response.ok) fillModels((await response.json()).data || []);
    } catch {
      // keep the list the server rendered into the page
    }
  }

  // ---------------------------------------------------------------- the form

  function updateCounter(input, counter) {
    const count = codePoints(input.value);
    counter.textContent = `${count} / ${limit}`;
    counter.classList.toggle("over", count > limit);
  }

  function updateCounters() {
    updateCounter($("prompt"), $("prompt-counter"));
    updateCounter($("negative-prompt"), $("negative-counter"));
    $("cfg-value").textContent = Number($("cfg-scale").value).toFixed(2);
  }

  function formBody() {
    const body = {
      model: $("model").value,
      prompt: $("prompt").value,
      aspect_ratio: form.elements.aspect_ratio.value,
      duration: Number(form.elements.duration.value),
      cfg_scale: Number($("cfg-scale").value),
      generate_audio: $("generate-audio").checked,
    };
    const negative = $("negative-prompt").value.trim();
    if (negative) body.negative_prompt = negative;
    const seed = $("seed").value.trim();
    if (seed) body.seed = Number(seed);
    return body;
  }

  function localProblems() {
    const problems = [];
    const prompt = $("prompt").value.trim();
    if (!prompt) problems.push({ field: "prompt", message: "enter a prompt" });
    if (codePoints(prompt) > limit) problems.push({ field: "prompt", message: `at most ${limit} characters` });
    if (codePoints($("negative-prompt").value.trim()) > limit) {
      problems.push({ field: "negative_prompt", message: `at most ${limit} characters` });
    }
    const seed = $("seed");
    if (seed.validity.badInput || (seed.value && !/^\d+$/.test(seed.value.trim()))) {
      problems.push({ field: "seed", message: "must be a whole number from 0 to 4294967295" });
    }
    return problems;
  }

  function clearFormError() {
    $("form-error").hidden = true;
    for (const node of form.querySelectorAll("[aria-invalid]")) node.removeAttribute("aria-invalid");
  }

  function showFormError(message, fields = []) {
    $("form-error-message").textContent = message;
    $("form-error-fields").replaceChildren(
      ...fields.map((f) => el("li", { text: `${f.field}: ${f.message}` })),
    );
    for (const field of fields) {
      const name = String(field.field || "").split(".").pop();
      const input = form.elements.namedItem(name);
      if (input instanceof HTMLElement) input.setAttribute("aria-invalid", "true");
    }
    $("form-error").hidden = false;
  }

  async function submit(event) {
    event.preventDefault();
    clearFormError();
    const problems = localProblems();
    if (problems.length) {
      showFormError("Please fix the form:", problems);
      return;
    }
    const button = $("generate");
    button.disabled = true;
    button.textContent = "Submitting…";
    try {
      const created = await api("/v2/video/generations", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(formBody()),
      });
      startJob(created);
    } catch (error) {
      if (error instanceof ApiError) showFormError(error.message, error.fields);
      else showFormError(`The request failed: ${error.message}`);
    } finally {
      button.disabled = false;
      button.textContent = "Generate";
    }
  }

  function fillForm(item) {
    $("prompt").value = item.prompt || "";
    $("negative-prompt").value = item.negative_prompt || "";
    const ratio = form.querySelector(`input[name="aspect_ratio"][value="${CSS.escape(item.aspect_ratio || "16:9")}"]`);
    if (ratio) ratio.checked = true;
    const duration = form.querySelector(`input[name="duration"][value="${CSS.escape(String(item.seconds || 5))}"]`);
    if (duration) duration.checked = true;
    $("cfg-scale").value = item.cfg_scale ?? 0.5;
    $("generate-audio").checked = item.generate_audio !== false;
    $("seed").value = item.seed ?? "";
    const select = $("model");
    if (item.model && ![...select.options].some((o) => o.value === item.model)) {
      select.append(el("option", { value: item.model, text: item.model }));
    }
    if (item.model) select.value = item.model;
    updateCounters();
  }

  function rerun(item) {
    fillForm(item);
    window.scrollTo({ top: 0, behavior: "smooth" });
    form.requestSubmit();
  }

  // ---------------------------------------------------------------- the current generation

  function startClock() {
    stopClock();
    state.startedAt = performance.now();
    const tick = () => {
      $("job-elapsed").textContent = `${((performance.now() - state.startedAt) / 1000).toFixed(1)} s`;
    };
    tick();
    state.clock = setInterval(tick, 100);
  }

  function stopClock() {
    clearInterval(state.clock);
    state.clock = 0;
  }

  function queueText(body) {
    if (body.status !== "queued" || body.queue_position == null) return "";
    return body.queue_position === 0 ? "next in queue" : `${body.queue_position} ahead in queue`;
  }

  function stageText(body) {
    if (FINAL.has(body.status)) return "";
    if (body.meta && body.meta.stage) return body.meta.stage;
    return body.status === "queued" ? "waiting for a worker" : "starting";
  }

  function renderJob(body) {
    const status = $("job-status");
    status.textContent = body.status;
    status.className = `badge ${body.status}`;
    $("job-stage").textContent = stageText(body);
    $("job-queue").textContent = queueText(body);
    const progress = Math.max(0, Math.min(100, Number(body.progress) || 0));
    $("job-progress-bar").value = progress;
    $("job-progress").textContent = `${progress.toFixed(0)}%`;
    $("job-id").textContent = body.id;
    const failed = body.status === "error";
    $("job-error").hidden = !failed;
    if (failed) {
      const error = body.error || {};
      $("job-error").textContent = `${error.name || "Error"}: ${error.message || "the generation failed"}`;
    }
    if (body.status === "completed" && body.video) renderResult(body);
  }

  function renderResult(body) {
    const video = body.video;
    const player = $("result-video");
    if (player.getAttribute("src") !== video.url) player.src = video.url;
    $("result-download").href = video.url;
    $("result-download").setAttribute("download", video.file_name || `${body.id}.mp4`);
    const meta = body.meta || {};
    const rows = [
      ["Size", `${video.width}×${video.height}`],
      ["Duration", seconds(video.duration)],
      ["File", bytes(video.file_size)],
      ["Audio", video.has_audio ? "yes" : "no"],
      ["Model", meta.model],
      ["Seed", meta.seed],
      ["Timings", timings(meta.timings)],
    ].filter(([, value]) => value !== undefined && value !== null && value !== "");
    $("result-meta").replaceChildren(
      ...rows.flatMap(([name, value]) => [el("dt", { text: name }), el("dd", { text: String(value) })]),
    );
    $("job-result").hidden = false;
  }

  function startJob(created) {
    $("current-empty").hidden = true;
    $("current-job").hidden = false;
    $("job-result").hidden = true;
    $("result-video").removeAttribute("src");
    $("result-video").load();
    startClock();
    renderJob(created);
    follow(created.id);
  }

  async function follow(id) {
    state.follow?.abort();
    const controller = new AbortController();
    state.follow = controller;
    let final;
    try {
      $("job-transport").textContent = "live";
      final = await streamEvents(id, controller.signal, renderJob);
    } catch (error) {
      if (controller.signal.aborted) return;
      if (error instanceof ApiError && error.status < 500) return showJobFailure(error);
      $("job-transport").textContent = "polling";
      try {
        final = await poll(id, controller.signal, renderJob);
      } catch (pollError) {
        if (!controller.signal.aborted) showJobFailure(pollError);
        return;
      }
    }
    if (controller.signal.aborted) return;
    stopClock();
    renderJob(final);
    loadGallery(true);
  }

  function showJobFailure(error) {
    stopClock();
    $("job-error").textContent = `Lost track of this generation: ${error.message}`;
    $("job-error").hidden = false;
  }

  async function poll(id, signal, onBody) {
    let failures = 0;
    for (;;) {
      try {
        const body = await api(pollPath(id), { signal });
        onBody(body);
        if (FINAL.has(body.status)) return body;
        failures = 0;
      } catch (error) {
        const transient = !(error instanceof ApiError) || error.status >= 500 || error.status === 429;
        if (signal.aborted || !transient || ++failures > 20) throw error;
      }
      await sleep(POLL_MS, signal);
    }
  }

  // ---------------------------------------------------------------- Server-Sent Events over fetch
  // EventSource cannot send an Authorization header, so this reads the stream itself.

  function parseEvent(block) {
    const event = { event: "message", data: [] };
    for (const line of block.split("\n")) {
      if (!line || line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? "" : line.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "event") event.event = value;
      else if (field === "data") event.data.push(value);
    }
    return event.data.length ? { event: event.event, data: event.data.join("\n") } : null;
  }

  function splitEvents(buffer) {
    // Normalise CR LF / CR to LF, holding back a trailing CR whose LF may be in the next chunk.
    const held = buffer.endsWith("\r") ? "\r" : "";
    const text = (held ? buffer.slice(0, -1) : buffer).replace(/\r\n?/g, "\n");
    const blocks = text.split("\n\n");
    const rest = blocks.pop();
    return { blocks, rest: rest + held };
  }

  async function streamEvents(id, signal, onBody) {
    const response = await request(eventsPath(id), {
      signal,
      headers: { Accept: "text/event-stream" },
    });
    if (!response.ok) throw await errorFrom(response);
    if (!response.body) throw new Error("this browser cannot read a response stream");
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) throw new Error("the event stream ended before the generation did");
        const { blocks, rest } = splitEvents(buffer + value);
        buffer = rest;
        for (const block of blocks) {
          const event = parseEvent(block);
          if (!event) continue;
          const body = JSON.parse(event.data);
          onBody(body);
          if (event.event === "completed" || event.event === "error") return body;
        }
      }
    } finally {
      reader.cancel().catch(() => {});
    }
  }

  // ---------------------------------------------------------------- the gallery (/v1/videos)

  function paramsText(item) {
    const parts = [
      item.model,
      item.aspect_ratio,
      item.seconds ? `${item.seconds} s` : null,
      item.cfg_scale != null ? `cfg ${Number(item.cfg_scale).toFixed(2)}` : null,
      item.seed != null ? `seed ${item.seed}` : null,
      item.generate_audio === false ? "no audio" : "audio",
      item.file_size ? bytes(item.file_size) : null,
    ];
    return parts.filter(Boolean).join(" · ");
  }

  function pendingText(item) {
    if (item.status === "failed") {
      return `Failed: ${(item.error && item.error.message) || "the generation failed"}`;
    }
    const where = item.status === "queued" && item.queue_position != null
      ? (item.queue_position === 0 ? "next in queue" : `${item.queue_position} ahead`)
      : item.stage || "";
    return [`${item.status.replace("_", " ")} ${item.progress || 0}%`, where].filter(Boolean).join(" · ");
  }

  function galleryMedia(item) {
    if (item.status === "completed" && item.video_url) {
      return el("video", {
        src: item.video_url,
        poster: item.thumbnail_url || undefined,
        controls: true,
        playsInline: true,
        preload: item.thumbnail_url ? "none" : "metadata",
      });
    }
    return el("div", { className: "placeholder", text: pendingText(item) });
  }

  function galleryCard(item) {
    const created = item.created_at
      ? new Date(item.created_at * 1000).toLocaleString([], { dateStyle: "short", timeStyle: "short" })
      : "";
    const children = [
      el("div", { className: "head" }, [
        el("span", { className: `badge ${item.status}`, text: item.status.replace("_", " ") }),
        el("time", { className: "muted", text: created }),
      ]),
      galleryMedia(item),
      el("p", { className: "prompt", text: item.prompt || "", title: item.prompt || "" }),
      el("p", { className: "params", text: paramsText(item) }),
    ];
    if (item.negative_prompt) {
      children.push(el("p", { className: "params", text: `negative: ${item.negative_prompt}` }));
    }
    const timing = timings(item.timings);
    if (timing) children.push(el("p", { className: "timings", text: timing }));
    const actions = el("div", { className: "actions" });
    if (item.status === "completed" && item.video_url) {
      actions.append(el("a", {
        className: "button small",
        href: item.video_url,
        download: `${item.id}.mp4`,
        text: "Download",
      }));
    }
    const again = el("button", { type: "button", className: "small", text: "Re-run" });
    again.addEventListener("click", () => rerun(item));
    actions.append(again);
    children.push(actions);
    return el("article", { className: "item", "data-id": item.id, "data-status": item.status }, children);
  }

  async function loadGallery(reset) {
    const seq = ++state.gallerySeq;
    const params = new URLSearchParams({ limit: String(GALLERY_PAGE), order: "desc" });
    if (!reset && state.galleryAfter) params.set("after", state.galleryAfter);
    const status = $("gallery-status");
    try {
      const page = await api(`/v1/videos?${params}`);
      if (seq !== state.gallerySeq) return;
      const cards = (page.data || []).map(galleryCard);
      if (reset) $("gallery").replaceChildren(...cards);
      else $("gallery").append(...cards);
      state.galleryAfter = page.last_id || null;
      $("gallery-more").hidden = !page.has_more;
      status.textContent = $("gallery").children.length ? "" : "No generations yet.";
      schedulePendingRefresh();
    } catch (error) {
      if (seq !== state.gallerySeq || !state.key) return;
      status.textContent = `The gallery could not be loaded: ${error.message}`;
    }
  }

  function schedulePendingRefresh() {
    clearTimeout(state.pendingTimer);
    const pending = [...$("gallery").querySelectorAll('.item[data-status="queued"], .item[data-status="in_progress"]')];
    if (!pending.length) return;
    state.pendingTimer = setTimeout(() => refreshPending(pending), PENDING_REFRESH_MS);
  }

  async function refreshPending(cards) {
    for (const card of cards) {
      if (!card.isConnected || !state.key) continue;
      try {
        const item = await api(`/v1/videos/${encodeURIComponent(card.dataset.id)}`);
        if (card.isConnected) card.replaceWith(galleryCard(item));
      } catch (error) {
        if (error instanceof ApiError && error.status === 404 && card.isConnected) card.remove();
      }
    }
    schedulePendingRefresh();
  }

  // ---------------------------------------------------------------- start

  function init() {
    $("signin-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const key = $("api-key").value.trim();
      if (key) signIn(key);
    });
    $("sign-out").addEventListener("click", () => signOut());
    form.addEventListener("submit", submit);
    for (const id of ["prompt", "negative-prompt", "cfg-scale"]) {
      $(id).addEventListener("input", updateCounters);
    }
    $("gallery-refresh").addEventListener("click", () => loadGallery(true));
    $("gallery-more").addEventListener("click", () => loadGallery(false));
    updateCounters();
    loadModels();
    const saved = sessionStorage.getItem(KEY_STORAGE);
    if (saved) signIn(saved);
  }

  init();
})();
