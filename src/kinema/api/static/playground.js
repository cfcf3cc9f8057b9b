// kinema playground: plain JavaScript, no dependencies, nothing fetched from outside this origin.
// The API key, the job being followed and the form's values live in this tab's sessionStorage
// only. User content is always inserted with textContent / properties, never as HTML.
"use strict";

(() => {
  const KEY_STORAGE = "kinema.apiKey";
  const JOB_STORAGE = "kinema.currentJob";
  const FORM_STORAGE = "kinema.form";
  const FINAL = new Set(["completed", "failed", "canceled"]);
  const PENDING = new Set(["queued", "generating"]);
  const STATUS_LABELS = {
    queued: "Queued",
    generating: "Generating",
    completed: "Completed",
    failed: "Failed",
    canceled: "Canceled",
  };
  // The worker's timing keys, in pipeline order, as people would name them.
  const STAGE_NAMES = [
    ["text_encode", "Prompt encoding"],
    ["stage1", "Denoising"],
    ["upsample", "Upsampling"],
    ["refine", "Refinement"],
    ["video_decode", "Video decoding"],
    ["audio_decode", "Audio decoding"],
    ["encode", "MP4 encoding"],
    ["store", "Saving"],
  ];
  const TIMING_SUMMARIES = new Set(["generate", "stage1_per_step"]);
  const POLL_MS = 750;
  const PENDING_REFRESH_MS = 3000;
  const MODELS_REFRESH_MS = 10000;
  const WAITING = "no live worker: its jobs wait until one starts";
  const GALLERY_PAGE = 12;
  const KEY_CHECK_ID = "playground-key-check";
  // The image types the API takes, by the bytes that start each file.
  const IMAGE_TYPES = {
    "image/jpeg": (b) => b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff,
    "image/png": (b) => [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a].every((v, i) => b[i] === v),
    "image/webp": (b) => String.fromCharCode(...b.slice(0, 4)) === "RIFF"
      && String.fromCharCode(...b.slice(8, 12)) === "WEBP",
  };
  const FRAME_SLOTS = { first: "image_url", last: "tail_image_url" };
  const PREVIEW_SIDE = 480; // the preview canvas's longest side, in pixels

  const $ = (id) => document.getElementById(id);
  const limit = Number(document.body.dataset.promptLimit) || 2500;
  const imageLimit = Number(document.body.dataset.imageLimit) || 20_000_000;
  const form = $("generate-form");
  // Per served model: {min_seconds, max_seconds, fps, sizes: [{width, height, aspect_ratio,
  // native}], images}, as the server rendered them.
  const modelLimits = (() => {
    try {
      return JSON.parse(form.dataset.models || "{}");
    } catch {
      return {};
    }
  })();
  const state = {
    key: null,
    follow: null, // AbortController of the generation being followed
    jobId: null,
    startedAt: 0,
    clock: 0,
    galleryAfter: null,
    gallerySeq: 0,
    pendingTimer: 0,
    details: null, // the video object shown in the details dialog
    detailsOpener: null, // what gets the focus back when the dialog closes
    frames: { first: null, last: null }, // {dataUri, name, width, height, size} per picked image
    frameSeq: { first: 0, last: 0 }, // the latest pick per slot: an older read is dropped
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
      else if (name.startsWith("data-") || name.startsWith("aria-")) node.setAttribute(name, value);
      else node[name] = value;
    }
    node.append(...children);
    return node;
  }

  const codePoints = (text) => [...text].length;

  function duration(secs) {
    const value = Number(secs);
    if (!Number.isFinite(value) || value < 0) return "";
    if (value < 0.001) return "under 1 ms";
    if (value < 1) return `${Math.round(value * 1000)} ms`;
    if (value < 60) {
      const whole = Number.isInteger(value) || value >= 10;
      return `${whole ? Math.round(value) : value.toFixed(1)} s`;
    }
    const minutes = Math.floor(value / 60);
    return `${minutes} min ${Math.round(value - minutes * 60)} s`;
  }

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

  // File sizes against the server's limit, which is counted in decimal units.
  function decimalBytes(value) {
    if (value >= 1_000_000) return `${Number((value / 1_000_000).toPrecision(3))} MB`;
    if (value >= 1000) return `${Number((value / 1000).toPrecision(3))} kB`;
    return `${value} B`;
  }

  function dateTime(epochSeconds) {
    if (!epochSeconds) return "";
    return new Date(epochSeconds * 1000).toLocaleString([], { dateStyle: "medium", timeStyle: "short" });
  }

  // Today's cards show the time only.
  function shortDate(epochSeconds) {
    if (!epochSeconds) return "";
    const date = new Date(epochSeconds * 1000);
    const today = date.toDateString() === new Date().toDateString();
    return today
      ? date.toLocaleTimeString([], { timeStyle: "short" })
      : date.toLocaleDateString([], { dateStyle: "medium" });
  }

  // A key is shown by its kin_ prefix and at most a quarter of the rest (4 characters at most),
  // so a short key reveals little of itself.
  function maskKey(key) {
    const prefix = key.startsWith("kin_") ? "kin_" : "";
    const rest = key.slice(prefix.length);
    const shown = Math.min(4, Math.floor(rest.length / 4));
    if (!shown) return `${prefix}${"•".repeat(Math.max(rest.length, 1))}`;
    return `${prefix}…${rest.slice(-shown)}`;
  }

  // The panel follows /v2 bodies (generating / error + error.name) and the gallery lists /v1 video
  // objects (in_progress / failed + error.code); both are shown in one vocabulary.
  function statusKey(item) {
    const status = item.status;
    if (status === "in_progress") return "generating";
    if (status === "error" || status === "failed") {
      const error = item.error || {};
      return error.name === "Canceled" || error.code === "canceled" ? "canceled" : "failed";
    }
    return STATUS_LABELS[status] ? status : "queued";
  }

  function setBadge(node, key) {
    node.textContent = STATUS_LABELS[key];
    node.className = `badge ${key}`;
  }

  function queueText(position) {
    if (position == null) return "";
    return position === 0 ? "next in queue" : `${position} ahead in queue`;
  }

  function readJson(name) {
    try {
      return JSON.parse(sessionStorage.getItem(name) || "null");
    } catch {
      return null;
    }
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
  const cancelPath = (id) => `/v2/video/generations/cancel?generation_id=${encodeURIComponent(id)}`;
  const videoPath = (id) => `/v1/videos/${encodeURIComponent(id)}`;

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

  function showSigninError(message) {
    const input = $("api-key");
    const error = $("signin-error");
    error.textContent = message || "";
    error.hidden = !message;
    if (message) {
      input.setAttribute("aria-invalid", "true");
      input.setAttribute("aria-describedby", "signin-error signin-hint");
    } else {
      input.removeAttribute("aria-invalid");
      input.setAttribute("aria-describedby", "signin-hint");
    }
  }

  async function signIn(key) {
    showSigninError(null);
    let problem;
    try {
      problem = await checkKey(key);
    } catch (error) {
      problem = `The server could not be reached (${error.message}).`;
    }
    if (problem) {
      sessionStorage.removeItem(KEY_STORAGE);
      showSigninError(problem);
      $("api-key").focus();
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
    loadModels();
    resumeJob();
  }

  function submitSignin(event) {
    event.preventDefault();
    const key = $("api-key").value.trim();
    if (!key) {
      showSigninError("Enter your API key to sign in.");
      $("api-key").focus();
      return;
    }
    signIn(key);
  }

  function signOut(message) {
    state.follow?.abort();
    state.follow = null;
    state.jobId = null;
    stopClock();
    clearTimeout(state.pendingTimer);
    for (const name of [KEY_STORAGE, JOB_STORAGE, FORM_STORAGE]) sessionStorage.removeItem(name);
    state.key = null;
    state.gallerySeq += 1;
    closeDetails();
    $("gallery").replaceChildren();
    resetPanel();
    form.reset();
    for (const slot of Object.keys(FRAME_SLOTS)) removeFrame(slot);
    applyModelLimits();
    updateCounters();
    $("app").hidden = true;
    $("account").hidden = true;
    $("signin").hidden = false;
    showSigninError(message);
    $("api-key").focus();
  }

  // ---------------------------------------------------------------- models

  function showModelDescription() {
    const option = $("model").selectedOptions[0];
    $("model-description").textContent = option ? option.title : "";
    $("model-workers").textContent = option && option.dataset.waiting ? WAITING : "";
  }

  // How many workers make the model's jobs now ("" where the server could not say).
  function workersText(entry) {
    const live = entry.live_workers;
    if (typeof live !== "number") return "";
    return live === 0 ? "no live worker" : `${live} live worker${live === 1 ? "" : "s"}`;
  }

  function modelOption(entry) {
    const workers = workersText(entry);
    const text = workers ? `${entry.id} · ${workers}` : entry.id;
    const option = el("option", { value: entry.id, text, title: entry.description || "" });
    if (entry.live_workers === 0) option.dataset.waiting = "1";
    return option;
  }

  function fillModels(entries) {
    const served = entries.filter((entry) => !entry.alias_of);
    if (!served.length) return;
    const select = $("model");
    const previous = select.value;
    const listed = [...select.options].map((option) => option.value);
    if (listed.join("\n") === served.map((entry) => entry.id).join("\n")) {
      // The same models: only their live workers change, the form stays as it is.
      served.forEach((entry, index) => select.options[index].replaceWith(modelOption(entry)));
      select.value = previous;
      showModelDescription();
      return;
    }
    select.replaceChildren(...served.map(modelOption));
    select.value = served.some((e) => e.id === previous) ? previous : served[0].id;
    showModelDescription();
    applyModelLimits();
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
      duration: Number($("seconds").value),
      cfg_scale: Number($("cfg-scale").value),
      generate_audio: $("generate-audio").checked,
      enhance_prompt: $("enhance-prompt").checked,
    };
    const size = parseSize($("size").value);
    if (size) Object.assign(body, size);
    const negative = $("negative-prompt").value.trim();
    if (negative) body.negative_prompt = negative;
    const seed = $("seed").value.trim();
    if (seed) body.seed = Number(seed);
    if (!$("frames").hidden) {
      for (const [slot, field] of Object.entries(FRAME_SLOTS)) {
        if (state.frames[slot]) body[field] = state.frames[slot].dataUri;
      }
    }
    const loras = chosenLoras();
    if (loras.length) body.loras = loras;
    return body;
  }

  // The form's values in the shape of a /v1 video object, which fillForm takes.
  function formValues() {
    return {
      prompt: $("prompt").value,
      negative_prompt: $("negative-prompt").value,
      aspect_ratio: form.elements.aspect_ratio.value,
      seconds: $("seconds").value,
      size: $("size").value,
      cfg_scale: Number($("cfg-scale").value),
      generate_audio: $("generate-audio").checked,
      enhance_prompt: $("enhance-prompt").checked,
      seed: $("seed").value,
      model: $("model").value,
      loras: chosenLoras(),
    };
  }

  function saveForm() {
    sessionStorage.setItem(FORM_STORAGE, JSON.stringify(formValues()));
  }

  function restoreForm() {
    const saved = readJson(FORM_STORAGE);
    if (saved && typeof saved === "object") fillForm(saved);
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
    for (const [slot, field] of Object.entries(FRAME_SLOTS)) {
      if ($(`${slot}-frame`).classList.contains("reading")) {
        problems.push({ field, message: "the image is still being read; try again in a moment" });
      }
    }
    return problems;
  }

  // The API's field names whose input has another name (or none) in the form.
  const FIELD_INPUTS = {
    duration: "seconds",
    width: "size",
    height: "size",
    size: "size",
    image_url: "first-frame-file",
    tail_image_url: "last-frame-file",
    loras: "loras",
  };

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
      const input = FIELD_INPUTS[name] ? $(FIELD_INPUTS[name]) : form.elements.namedItem(name);
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
      startJob(created, $("prompt").value);
    } catch (error) {
      if (error instanceof ApiError) showFormError(error.message, error.fields);
      else showFormError(`The request failed: ${error.message}`);
    } finally {
      button.disabled = false;
      button.textContent = "Generate";
    }
  }

  function checkValue(name, value) {
    const input = form.querySelector(`input[name="${name}"][value="${CSS.escape(String(value))}"]`);
    if (input) input.checked = true;
  }

  function fillForm(item) {
    $("prompt").value = item.prompt || "";
    $("negative-prompt").value = item.negative_prompt || "";
    checkValue("aspect_ratio", item.aspect_ratio || "16:9");
    $("cfg-scale").value = item.cfg_scale ?? 0.5;
    $("generate-audio").checked = item.generate_audio !== false;
    $("enhance-prompt").checked = item.enhance_prompt === true;
    $("seed").value = item.seed ?? "";
    const select = $("model");
    if (item.model && ![...select.options].some((o) => o.value === item.model)) {
      select.append(el("option", { value: item.model, text: item.model }));
    }
    if (item.model) select.value = item.model;
    showModelDescription();
    applyModelLimits(item.size);
    pickLoras(item.loras);
    setSeconds(Math.round(Number(item.seconds)) || 5);
    updateCounters();
    saveForm();
  }

  // ---------------------------------------------------------------- length and size

  const limitsOf = (model) => modelLimits[model] || null;
  const sizeValue = (size) => `${size.width}x${size.height}`;

  function parseSize(value) {
    const match = /^(\d+)x(\d+)$/.exec(value || "");
    return match ? { width: Number(match[1]), height: Number(match[2]) } : null;
  }

  function sizeOption(size) {
    const label = `${size.width}×${size.height} · ${size.aspect_ratio}${size.native ? " (native)" : ""}`;
    const data = { "data-ratio": size.aspect_ratio, "data-native": size.native ? "1" : null };
    return el("option", { value: sizeValue(size), text: label, ...data });
  }

  // The chosen seconds, within what the model makes; the 5 s / 10 s chips follow the slider.
  function setSeconds(value) {
    const slider = $("seconds");
    const low = Number(slider.min) || 1;
    const high = Number(slider.max) || low;
    slider.value = String(Math.min(high, Math.max(low, Math.round(Number(value)) || low)));
    showSeconds();
  }

  function showSeconds() {
    const value = $("seconds").value;
    $("seconds-value").textContent = `${value} s`;
    for (const chip of form.querySelectorAll('input[name="duration"]')) chip.checked = chip.value === value;
  }

  // The length, size and image controls for the chosen model; `wantedSize` ("WxH") is kept
  // where the model makes it, else the native size of the checked aspect ratio is chosen.
  function applyModelLimits(wantedSize) {
    const model = $("model").value;
    const limits = limitsOf(model);
    const slider = $("seconds");
    const previous = Number(slider.value);
    const low = limits ? limits.min_seconds : 1;
    const high = limits ? limits.max_seconds : Math.max(low, 10);
    slider.min = String(low);
    slider.max = String(high);
    for (const chip of form.querySelectorAll('input[name="duration"]')) {
      const value = Number(chip.value);
      chip.closest(".chip").hidden = value < low || value > high;
    }
    setSeconds(previous);
    $("seconds-hint").textContent = limits
      ? `${model} makes ${low} to ${high} s at ${limits.fps} fps.`
      : "";

    const select = $("size");
    const keep = wantedSize ?? select.value;
    const sizes = limits ? limits.sizes : [];
    select.replaceChildren(...(sizes.length
      ? sizes.map(sizeOption)
      : [el("option", { value: "", text: "the model's size" })]));
    if (sizes.some((size) => sizeValue(size) === keep)) {
      select.value = keep;
      followSize();
    } else {
      followRatio();
    }
    const frames = $("frames");
    frames.hidden = Boolean(limits && !limits.images);
    showLoras(limits ? limits.loras || [] : []);
  }

  // The LoRAs the deployment offers the chosen model: a box to pick each, and its scale.
  function showLoras(names) {
    const picked = new Map(chosenLoras().map((lora) => [lora.name, lora.scale]));
    const fieldset = $("loras");
    $("lora-list").replaceChildren(...names.map((name) => loraRow(name, picked.get(name))));
    fieldset.hidden = !names.length;
  }

  function loraRow(name, scale) {
    const box = el("input", { type: "checkbox", className: "lora-pick", value: name });
    box.checked = scale !== undefined;
    const fieldset = $("loras");
    const number = el("input", {
      type: "number",
      className: "lora-scale",
      value: String(scale ?? 1),
      step: "0.1",
      min: fieldset.dataset.minScale,
      max: fieldset.dataset.maxScale,
      "aria-label": `${name} scale`,
    });
    return el("div", { className: "lora" }, [el("label", {}, [box, ` ${name}`]), number]);
  }

  function chosenLoras() {
    return [...$("lora-list").querySelectorAll(".lora")]
      .filter((row) => row.querySelector(".lora-pick").checked)
      .map((row) => ({
        name: row.querySelector(".lora-pick").value,
        scale: Number(row.querySelector(".lora-scale").value),
      }));
  }

  function pickLoras(loras) {
    const wanted = new Map((Array.isArray(loras) ? loras : []).map((l) => [l.name, l.scale]));
    for (const row of $("lora-list").querySelectorAll(".lora")) {
      const name = row.querySelector(".lora-pick").value;
      row.querySelector(".lora-pick").checked = wanted.has(name);
      if (wanted.has(name)) row.querySelector(".lora-scale").value = String(wanted.get(name));
    }
  }

  // A size sets the aspect ratio it is nearest to ...
  function followSize() {
    const option = $("size").selectedOptions[0];
    if (option?.dataset.ratio) checkValue("aspect_ratio", option.dataset.ratio);
  }

  // ... and an aspect ratio whose shape the size does not have picks the ratio's native size.
  function followRatio() {
    const select = $("size");
    const ratio = form.elements.aspect_ratio.value;
    if (select.selectedOptions[0]?.dataset.ratio === ratio) return;
    const options = [...select.options];
    const native = options.find((o) => o.dataset.ratio === ratio && o.dataset.native);
    const match = native || options.find((o) => o.dataset.ratio === ratio);
    if (match) select.value = match.value;
  }

  // ---------------------------------------------------------------- first and last frames

  function showFrameError(slot, message) {
    const error = $(`${slot}-frame-error`);
    error.textContent = message || "";
    error.hidden = !message;
    const input = $(`${slot}-frame-file`);
    if (message) input.setAttribute("aria-invalid", "true");
    else input.removeAttribute("aria-invalid");
  }

  async function sniffType(file) {
    const head = new Uint8Array(await file.slice(0, 12).arrayBuffer());
    return Object.keys(IMAGE_TYPES).find((type) => IMAGE_TYPES[type](head)) || null;
  }

  function readDataUri(file, type) {
    return new Promise((resolve, reject) => {
      const reader = new FileReader();
      reader.addEventListener("load", () => {
        // The media type is the one the bytes show, whatever the file's name or type claims.
        const text = String(reader.result);
        resolve(`data:${type};base64,${text.slice(text.indexOf(",") + 1)}`);
      });
      reader.addEventListener("error", () => reject(reader.error || new Error("unreadable")));
      reader.readAsDataURL(file);
    });
  }

  function drawPreview(slot, bitmap) {
    const canvas = $(`${slot}-frame-canvas`);
    const scale = Math.min(1, PREVIEW_SIDE / Math.max(bitmap.width, bitmap.height));
    canvas.width = Math.max(1, Math.round(bitmap.width * scale));
    canvas.height = Math.max(1, Math.round(bitmap.height * scale));
    canvas.getContext("2d").drawImage(bitmap, 0, 0, canvas.width, canvas.height);
  }

  // A picked or dropped file: checked here (type by its bytes, size, that it decodes), shown,
  // and kept as a data URI for the request.
  async function pickFrame(slot, file) {
    if (!file) return;
    const seq = ++state.frameSeq[slot];
    const current = () => seq === state.frameSeq[slot]; // no newer pick or removal since
    const frame = $(`${slot}-frame`);
    const name = file.name || "the image";
    const refuse = (message) => current() && showFrameError(slot, message);
    showFrameError(slot, null);
    if (file.size > imageLimit) {
      refuse(`“${name}” is ${decimalBytes(file.size)}; images may be at most ${decimalBytes(imageLimit)}.`);
      return;
    }
    frame.classList.add("reading");
    let bitmap = null;
    try {
      const type = await sniffType(file);
      if (!type) return refuse(`“${name}” is not a JPEG, PNG or WebP image.`);
      try {
        bitmap = await createImageBitmap(file);
      } catch {
        return refuse(`“${name}” could not be read as an image.`);
      }
      const dataUri = await readDataUri(file, type);
      if (!current()) return;
      const { width, height } = bitmap;
      state.frames[slot] = { dataUri, name, width, height, size: file.size };
      drawPreview(slot, bitmap);
      // The name gives way (with an ellipsis) to the size, which always shows.
      const facts = `\u00a0· ${width}×${height} · ${decimalBytes(file.size)}`; // a flex item keeps a no-break space
      const caption = $(`${slot}-frame-name`);
      caption.replaceChildren(el("span", { className: "file", text: name }), el("span", { className: "facts", text: facts }));
      caption.title = `${name} ${facts.trim()}`;
      const title = slot === "first" ? "First frame" : "Last frame";
      $(`${slot}-frame-canvas`).setAttribute("aria-label", `${title}: ${name}`);
      $(`${slot}-frame-preview`).hidden = false;
      $(`${slot}-frame-drop`).hidden = true;
      $(`${slot}-frame-file`).hidden = true; // out of the tab order; a drop still replaces it
      frame.classList.add("filled");
    } catch (error) {
      refuse(`“${name}” could not be read (${error.message}).`);
    } finally {
      bitmap?.close();
      if (current()) frame.classList.remove("reading");
    }
  }

  function removeFrame(slot) {
    state.frameSeq[slot] += 1;
    state.frames[slot] = null;
    const frame = $(`${slot}-frame`);
    frame.classList.remove("filled", "reading", "dragging");
    $(`${slot}-frame-preview`).hidden = true;
    $(`${slot}-frame-drop`).hidden = false;
    $(`${slot}-frame-file`).hidden = false;
    $(`${slot}-frame-file`).value = "";
    $(`${slot}-frame-name`).replaceChildren();
    const canvas = $(`${slot}-frame-canvas`);
    canvas.width = canvas.height = 0;
    showFrameError(slot, null);
  }

  function wireFrame(slot) {
    const frame = $(`${slot}-frame`);
    const input = $(`${slot}-frame-file`);
    input.addEventListener("change", () => {
      pickFrame(slot, input.files[0]);
      input.value = ""; // the same file again is a new pick
    });
    $(`${slot}-frame-remove`).addEventListener("click", () => {
      removeFrame(slot);
      input.focus();
    });
    const hasFiles = (event) => [...(event.dataTransfer?.types || [])].includes("Files");
    frame.addEventListener("dragenter", (event) => {
      if (!hasFiles(event)) return;
      event.preventDefault();
      frame.classList.add("dragging");
    });
    frame.addEventListener("dragover", (event) => {
      if (!hasFiles(event)) return;
      event.preventDefault();
      event.dataTransfer.dropEffect = "copy";
      frame.classList.add("dragging");
    });
    frame.addEventListener("dragleave", (event) => {
      if (!frame.contains(event.relatedTarget)) frame.classList.remove("dragging");
    });
    frame.addEventListener("drop", (event) => {
      event.preventDefault();
      frame.classList.remove("dragging");
      const files = [...(event.dataTransfer?.files || [])];
      if (files.length > 1) {
        showFrameError(slot, "Drop one image here.");
        return;
      }
      pickFrame(slot, files[0]);
    });
  }

  async function rerun(item) {
    state.detailsOpener = null; // the form gets the focus, not the card that opened the details
    closeDetails();
    fillForm(item);
    window.scrollTo({ top: 0, behavior: "smooth" });
    $("prompt").focus({ preventScroll: true });
    try {
      await restoreFrames(item.input_images || []);
    } catch (error) {
      showFormError(`Not run again: ${error.message}.`);
      return;
    }
    form.requestSubmit();
  }

  // The images a video was made from, fetched back into the frame pickers as if picked again.
  async function restoreFrames(images) {
    for (const slot of Object.keys(FRAME_SLOTS)) removeFrame(slot);
    for (const image of images) {
      const slot = image.frame === 0 ? "first" : "last";
      const response = await fetch(image.url).catch(() => null);
      if (!response || !response.ok) throw new Error(`its ${slot} frame could not be fetched`);
      const blob = await response.blob();
      await pickFrame(slot, new File([blob], `${slot} frame`, { type: blob.type }));
    }
  }

  // ---------------------------------------------------------------- the current generation

  function startClock(startedAt) {
    stopClock();
    state.startedAt = startedAt;
    const tick = () => {
      $("job-elapsed").textContent = `${((Date.now() - state.startedAt) / 1000).toFixed(1)} s`;
    };
    tick();
    state.clock = setInterval(tick, 100);
  }

  function stopClock() {
    clearInterval(state.clock);
    state.clock = 0;
  }

  // After a reload the tab's clock is gone; the server's timestamps (whole seconds) remain.
  function showTook(body) {
    if (body.created_at && body.completed_at) {
      $("job-elapsed").textContent = `took ${duration(Math.max(1, body.completed_at - body.created_at))}`;
    }
  }

  function stageText(body, key) {
    if (FINAL.has(key)) return "";
    if (key === "queued") return queueText(body.queue_position) || "waiting for a worker";
    return (body.meta && body.meta.stage) || "starting";
  }

  function renderJob(body) {
    const key = statusKey(body);
    setBadge($("job-status"), key);
    $("job-stage").textContent = stageText(body, key);
    const progress = Math.max(0, Math.min(100, Number(body.progress) || 0));
    $("job-progress-bar").value = progress;
    $("job-progress").textContent = `${progress.toFixed(0)}%`;
    $("job-id").textContent = body.id;
    const cancel = $("job-cancel");
    cancel.hidden = !PENDING.has(key);
    if (cancel.hidden) resetButton(cancel);
    const ended = key === "failed" || key === "canceled";
    $("job-error").hidden = !ended;
    if (ended) {
      const error = body.error || {};
      $("job-error").className = key === "canceled" ? "note" : "error";
      $("job-error").textContent = key === "canceled"
        ? "This generation was canceled."
        : `${error.name || "Error"}: ${error.message || "the generation failed"}`;
    }
    if (key === "completed" && body.video) renderResult(body);
    syncCard(body, key);
  }

  function renderResult(body) {
    const video = body.video;
    const player = $("result-video");
    if (player.getAttribute("src") !== video.url) player.src = video.url;
    $("result-download").href = video.url;
    $("result-download").setAttribute("download", video.file_name || `${body.id}.mp4`);
    const meta = body.meta || {};
    const processing = processingSeconds(meta.timings);
    const extended = meta.extended_from
      ? `${meta.extended_from} (${duration(meta.continued_seconds)} + ${duration(video.duration - meta.continued_seconds)})`
      : null;
    const rows = [
      ["Size", `${video.width}×${video.height}`],
      ["Duration", duration(video.duration)],
      ["Extends", extended],
      ["File", bytes(video.file_size)],
      ["Audio", video.has_audio ? "yes" : "no"],
      ["Model", meta.model],
      ["Seed", meta.seed],
      ["Prompt used", meta.prompt_used],
      ["LoRAs", loraText(meta.loras)],
      ["Processing", processing == null ? null : duration(processing)],
    ];
    $("result-meta").replaceChildren(...definitions(rows));
    allowExtension($("extend-seconds"), meta.model);
    $("job-result").hidden = false;
  }

  function resetPanel() {
    $("current-job").hidden = true;
    $("current-empty").hidden = false;
    $("job-result").hidden = true;
    $("result-video").removeAttribute("src");
    $("result-video").load();
  }

  function showPanel(id, prompt, origin) {
    $("current-empty").hidden = true;
    $("current-job").hidden = false;
    $("job-result").hidden = true;
    $("result-video").removeAttribute("src");
    $("result-video").load();
    $("job-prompt").textContent = prompt || "";
    $("job-id").textContent = id;
    $("extend-error").hidden = true;
    showOrigin(origin);
  }

  // An extension says which clip it continues, and by how much.
  function showOrigin(origin) {
    const line = $("job-origin");
    line.hidden = !origin;
    line.textContent = origin ? `Extends ${origin.id} by ${origin.seconds} s` : "";
  }

  function rememberJob(id, prompt, startedAt, origin) {
    state.jobId = id;
    sessionStorage.setItem(JOB_STORAGE, JSON.stringify({ id, prompt, startedAt, origin }));
  }

  function forgetJob() {
    state.follow?.abort();
    state.follow = null;
    state.jobId = null;
    stopClock();
    sessionStorage.removeItem(JOB_STORAGE);
    resetPanel();
  }

  function startJob(created, prompt, origin = null) {
    const startedAt = Date.now();
    rememberJob(created.id, prompt, startedAt, origin);
    showPanel(created.id, prompt, origin);
    startClock(startedAt);
    renderJob(created);
    loadGallery(true);
    follow(created.id);
  }

  // After a reload: show the tab's last generation again and, while it runs, follow it.
  async function resumeJob() {
    const saved = readJson(JOB_STORAGE);
    if (!saved || typeof saved.id !== "string") return;
    state.jobId = saved.id;
    const origin = saved.origin && typeof saved.origin.id === "string" ? saved.origin : null;
    showPanel(saved.id, saved.prompt, origin);
    let body;
    try {
      body = await api(pollPath(saved.id));
    } catch (error) {
      if (error instanceof ApiError && error.status === 404) forgetJob();
      else if (state.key) showJobFailure(error);
      return;
    }
    if (state.jobId !== saved.id) return;
    renderJob(body);
    if (FINAL.has(statusKey(body))) {
      $("job-transport").textContent = "finished";
      stopClock();
      showTook(body);
      return;
    }
    startClock(Number(saved.startedAt) || Date.now());
    follow(saved.id);
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
    loadModels();  // a worker just made (or failed) a clip: its count is news
  }

  function showJobFailure(error) {
    stopClock();
    $("job-error").className = "error";
    $("job-error").textContent = `Lost track of this generation: ${error.message}`;
    $("job-error").hidden = false;
  }

  async function poll(id, signal, onBody) {
    let failures = 0;
    for (;;) {
      try {
        const body = await api(pollPath(id), { signal });
        onBody(body);
        if (FINAL.has(statusKey(body))) return body;
        failures = 0;
      } catch (error) {
        const transient = !(error instanceof ApiError) || error.status >= 500 || error.status === 429;
        if (signal.aborted || !transient || ++failures > 20) throw error;
      }
      await sleep(POLL_MS, signal);
    }
  }

  // A running job stops at its next denoising step: the button says so until then.
  async function cancelJob(id, button) {
    button.disabled = true;
    button.textContent = "Canceling…";
    try {
      const body = await api(cancelPath(id), { method: "POST" });
      if (id === state.jobId) renderJob(body);
      return body;
    } catch (error) {
      resetButton(button);
      throw error;
    }
  }

  function resetButton(button) {
    button.disabled = false;
    button.textContent = button.dataset.label;
  }

  async function cancelCurrent() {
    if (!state.jobId) return;
    try {
      await cancelJob(state.jobId, $("job-cancel"));
    } catch (error) {
      $("job-error").className = "error";
      $("job-error").textContent = `Could not cancel: ${error.message}`;
      $("job-error").hidden = false;
    }
  }

  // ---------------------------------------------------------------- extend a finished clip

  // An extension adds at most as many seconds as the clip's model makes in one go.
  function allowExtension(input, model) {
    const limits = limitsOf(model) || limitsOf($("model").value);
    if (limits) input.max = String(limits.max_seconds);
  }

  // Whole seconds the served model makes, or a message saying what would do.
  function extensionSeconds(input) {
    const text = input.value.trim();
    const low = Number(input.min) || 1;
    const high = Number(input.max) || low;
    const value = Number(text);
    if (!/^\d+$/.test(text) || value < low || value > high) {
      return { problem: `Enter whole seconds from ${low} to ${high}.` };
    }
    return { seconds: value };
  }

  // POST /v1/videos/extensions: a new job (the clip and `seconds` more, as one clip) that the
  // panel follows like any generation. `report` shows a refusal where the person asked.
  async function extendClip(id, prompt, input, button, report) {
    const { seconds, problem } = extensionSeconds(input);
    if (problem) {
      input.setAttribute("aria-invalid", "true");
      report(problem);
      input.focus();
      return false;
    }
    input.removeAttribute("aria-invalid");
    report(null);
    button.disabled = true;
    button.textContent = "Extending…";
    try {
      const created = await api("/v1/videos/extensions", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ prompt: prompt || "", seconds, video: { id } }),
      });
      startJob(created, prompt, { id, seconds });
      return true;
    } catch (error) {
      report(`Could not extend: ${error.message}`);
      return false;
    } finally {
      resetButton(button);
    }
  }

  function showExtendError(message) {
    $("extend-error").textContent = message || "";
    $("extend-error").hidden = !message;
  }

  function extendCurrent(event) {
    event.preventDefault();
    if (!state.jobId) return;
    extendClip(state.jobId, $("job-prompt").textContent, $("extend-seconds"), $("extend"), showExtendError);
  }

  async function extendShown(event) {
    event.preventDefault();
    const item = state.details;
    if (!item) return;
    const report = (message) => {
      if (message) showDetailsMessage(message);
      else $("details-message").hidden = true;
    };
    const input = $("details-extend-seconds");
    if (!(await extendClip(item.id, item.prompt, input, $("details-extend"), report))) return;
    state.detailsOpener = null; // the panel shows the new job; the focus goes nowhere else
    closeDetails();
    $("current").scrollIntoView({ behavior: "smooth", block: "start" });
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

  // Events that end a stream with an error envelope instead of a poll body: the key was revoked
  // (401) or the job deleted (404) while it was followed.
  const STREAM_ENDINGS = new Set(["unauthorized", "not_found"]);

  function streamEnded(envelope) {
    if (envelope.statusCode === 401) signOut("The server no longer accepts this key; sign in again.");
    return new ApiError(envelope.statusCode, envelope.message, []);
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
          if (STREAM_ENDINGS.has(event.event)) throw streamEnded(body);
          onBody(body);
          if (event.event === "completed" || event.event === "error") return body;
        }
      }
    } finally {
      reader.cancel().catch(() => {});
    }
  }

  // ---------------------------------------------------------------- timings and params

  function definitions(rows) {
    return rows
      .filter(([, value]) => value !== undefined && value !== null && value !== "")
      .flatMap(([name, value]) => [el("dt", { text: name }), el("dd", { text: String(value) })]);
  }

  const humanize = (name) => name.charAt(0).toUpperCase() + name.slice(1).replace(/_/g, " ");

  // The worker's time on the clip: the pipeline plus the mp4 encode and the upload.
  function processingSeconds(timings) {
    if (!timings || typeof timings.generate !== "number") return null;
    return ["generate", "encode", "store"].reduce((sum, name) => sum + (Number(timings[name]) || 0), 0);
  }

  function timingRows(item) {
    const timings = item.timings && typeof item.timings === "object" ? item.timings : {};
    const rows = [];
    if (item.started_at && item.created_at) {
      rows.push(["Waiting in queue", duration(Math.max(0, item.started_at - item.created_at))]);
    }
    const named = new Map(STAGE_NAMES);
    const known = STAGE_NAMES.map(([name]) => name).filter((name) => name in timings);
    const others = Object.keys(timings).filter((name) => !named.has(name) && !TIMING_SUMMARIES.has(name));
    for (const name of [...known, ...others]) {
      let text = duration(timings[name]);
      if (name === "stage1" && timings.stage1_per_step) {
        text += ` (${duration(timings.stage1_per_step)} per step)`;
      }
      rows.push([named.get(name) || humanize(name), text]);
    }
    const processing = processingSeconds(timings);
    if (processing != null) rows.push(["Processing in all", duration(processing)]);
    return rows;
  }

  // "glow at 0.5, grain at 1", or null (no row) when none ran.
  function loraText(loras) {
    if (!Array.isArray(loras) || !loras.length) return null;
    return loras.map((lora) => `${lora.name} at ${lora.scale}`).join(", ");
  }

  function paramRows(item) {
    const clip = item.duration ? duration(item.duration) : item.seconds ? `${item.seconds} s` : "";
    return [
      ["Model", item.model],
      ["Aspect ratio", item.aspect_ratio],
      ["Size", item.size ? item.size.replace("x", "×") : null],
      ["Duration", clip],
      ["Audio", item.generate_audio === false ? "off" : "on"],
      ["CFG scale", item.cfg_scale != null ? Number(item.cfg_scale).toFixed(2) : null],
      ["Seed", item.seed],
      ["Negative prompt", item.negative_prompt],
      ["Prompt used", item.prompt_used],
      ["LoRAs", loraText(item.loras)],
      ["File", item.file_size ? bytes(item.file_size) : null],
      ["Created", dateTime(item.created_at)],
      ["Finished", dateTime(item.completed_at)],
      ["ID", item.id],
    ];
  }

  // ---------------------------------------------------------------- the gallery (/v1/videos)

  // [what a card without a still says, its detail line]
  function pendingText(item, key) {
    if (key === "queued") return [STATUS_LABELS.queued, queueText(item.queue_position)];
    if (key === "generating") {
      return [`${STATUS_LABELS.generating} ${item.progress || 0}%`, item.stage || "starting"];
    }
    if (key === "failed") return [STATUS_LABELS.failed, (item.error && item.error.message) || ""];
    return [STATUS_LABELS[key], ""];
  }

  function placeholder(item, key) {
    const [title, detail] = pendingText(item, key);
    const children = [el("span", { className: "state", text: title })];
    if (detail) children.push(el("span", { className: "detail", text: detail }));
    return el("span", { className: `placeholder ${key}` }, children);
  }

  function thumbnail(item, key) {
    const frame = el("span", { className: "thumb" });
    if (key === "completed" && item.thumbnail_url) {
      frame.append(el("img", { src: item.thumbnail_url, alt: "", loading: "lazy", decoding: "async" }));
    } else {
      frame.append(placeholder(item, key));
    }
    const seconds = item.duration ? Math.round(item.duration) : Number(item.seconds) || 0;
    if (seconds) frame.append(el("span", { className: "length", text: `${seconds} s` }));
    return frame;
  }

  function galleryCard(item) {
    const key = statusKey(item);
    const facts = [item.aspect_ratio, item.model, shortDate(item.created_at)].filter(Boolean).join(" · ");
    const badge = el("span", { className: "badge" });
    setBadge(badge, key);
    const open = el("button", { type: "button", className: "open", title: "Show details" }, [
      thumbnail(item, key),
      el("span", { className: "prompt", text: item.prompt || "" }),
      el("span", { className: "facts" }, [badge, el("span", { className: "muted", text: facts })]),
    ]);
    open.addEventListener("click", () => openDetails(item.id, open));
    return el("article", { className: "item", "data-id": item.id, "data-status": key }, [open]);
  }

  // Live progress of the followed job shows in its card too, between gallery refreshes.
  function syncCard(body, key) {
    const card = findCard(body.id);
    if (!card || !PENDING.has(key)) return;
    card.dataset.status = key;
    setBadge(card.querySelector(".badge"), key);
    const item = {
      progress: Math.round(Number(body.progress) || 0),
      stage: body.meta?.stage,
      queue_position: body.queue_position,
    };
    card.querySelector(".placeholder")?.replaceWith(placeholder(item, key));
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
    const selector = '.item[data-status="queued"], .item[data-status="generating"]';
    const pending = [...$("gallery").querySelectorAll(selector)];
    if (!pending.length) return;
    state.pendingTimer = setTimeout(() => refreshPending(pending), PENDING_REFRESH_MS);
  }

  async function refreshPending(cards) {
    for (const card of cards) {
      if (!card.isConnected || !state.key) continue;
      try {
        const item = await api(videoPath(card.dataset.id));
        replaceCard(item);
        if (state.details?.id === item.id) renderDetails(item);
      } catch (error) {
        if (error instanceof ApiError && error.status === 404) removeCard(card.dataset.id);
      }
    }
    schedulePendingRefresh();
  }

  function findCard(id) {
    return $("gallery").querySelector(`.item[data-id="${CSS.escape(id)}"]`);
  }

  function replaceCard(item) {
    findCard(item.id)?.replaceWith(galleryCard(item));
  }

  function removeCard(id) {
    findCard(id)?.remove();
    if (!$("gallery").children.length) $("gallery-status").textContent = "No generations yet.";
  }

  // ---------------------------------------------------------------- the details dialog

  function renderDetails(item) {
    const refresh = state.details?.id === item.id; // the same video again, not a new one
    state.details = item;
    const key = statusKey(item);
    setBadge($("details-status"), key);
    $("details-stage").textContent = PENDING.has(key) ? pendingText(item, key)[1] : "";
    $("details-prompt").textContent = item.prompt || "";
    const failed = key === "failed" && item.error;
    $("details-error").hidden = !failed;
    if (failed) $("details-error").textContent = item.error.message || "The generation failed.";
    const player = $("details-video");
    const playable = key === "completed" && item.video_url;
    player.hidden = !playable;
    if (playable && player.getAttribute("src") !== item.video_url) {
      player.poster = item.thumbnail_url || "";
      player.src = item.video_url;
    }
    const still = $("details-placeholder");
    still.hidden = Boolean(playable);
    if (!playable) {
      const fresh = placeholder(item, key);
      still.className = fresh.className;
      still.replaceChildren(...fresh.childNodes);
    }
    $("details-params").replaceChildren(...definitions(paramRows(item)));
    const timings = definitions(timingRows(item));
    $("details-timings").replaceChildren(...timings);
    $("details-timings").hidden = $("details-timings-title").hidden = !timings.length;
    const download = $("details-download");
    download.hidden = !playable;
    if (playable) {
      download.href = item.video_url;
      download.setAttribute("download", `${item.id}.mp4`);
    }
    $("details-cancel").hidden = !PENDING.has(key);
    if (!refresh || !PENDING.has(key)) resetButton($("details-cancel"));
    $("details-extend-form").hidden = !playable;
    allowExtension($("details-extend-seconds"), item.model);
    if (!refresh) $("details-extend-seconds").removeAttribute("aria-invalid");
  }

  async function openDetails(id, opener) {
    let item;
    try {
      item = await api(videoPath(id));
    } catch (error) {
      if (error instanceof ApiError && error.status === 404) removeCard(id);
      $("gallery-status").textContent = `The details could not be loaded: ${error.message}`;
      return;
    }
    state.detailsOpener = { node: opener, id };
    hideConfirm();
    $("details-message").hidden = true;
    renderDetails(item);
    const dialog = $("details");
    if (!dialog.open) dialog.showModal();
    $("details-close").focus();
  }

  function closeDetails() {
    const dialog = $("details");
    const player = $("details-video");
    player.pause();
    player.removeAttribute("src");
    player.load();
    state.details = null;
    if (dialog.open) dialog.close();
  }

  // Back to what opened the dialog, or to its card if a refresh has replaced that since.
  function restoreFocus() {
    const opener = state.detailsOpener;
    state.detailsOpener = null;
    if (!opener) return;
    const target = opener.node?.isConnected ? opener.node : findCard(opener.id)?.querySelector(".open");
    target?.focus();
  }

  function showDetailsMessage(message) {
    $("details-message").textContent = message;
    $("details-message").hidden = false;
  }

  function hideConfirm() {
    $("details-confirm").hidden = true;
    $("details-delete").hidden = false;
  }

  function askDelete() {
    $("details-delete").hidden = true;
    $("details-confirm").hidden = false;
    $("details-delete-keep").focus();
  }

  async function deleteShown() {
    const item = state.details;
    if (!item) return;
    const button = $("details-delete-confirm");
    button.disabled = true;
    try {
      await api(videoPath(item.id), { method: "DELETE" });
    } catch (error) {
      if (!(error instanceof ApiError && error.status === 404)) {
        showDetailsMessage(`Could not delete: ${error.message}`);
        return;
      }
    } finally {
      button.disabled = false;
    }
    closeDetails();
    removeCard(item.id);
    if (item.id === state.jobId) forgetJob();
    $("gallery-status").textContent = "Deleted.";
    $("gallery-refresh").focus();
  }

  async function cancelShown() {
    const item = state.details;
    if (!item) return;
    try {
      await cancelJob(item.id, $("details-cancel"));
      const fresh = await api(videoPath(item.id));
      if (state.details?.id === item.id) renderDetails(fresh);
      replaceCard(fresh);
    } catch (error) {
      showDetailsMessage(`Could not cancel: ${error.message}`);
    }
  }

  // ---------------------------------------------------------------- start

  function wireDetails() {
    const dialog = $("details");
    $("details-close").addEventListener("click", closeDetails);
    dialog.addEventListener("close", () => {
      closeDetails();
      restoreFocus();
    });
    // A click on the backdrop lands on the dialog element itself, outside its box.
    dialog.addEventListener("click", (event) => {
      if (event.target !== dialog) return;
      const box = dialog.getBoundingClientRect();
      const inside = event.clientX >= box.left && event.clientX <= box.right
        && event.clientY >= box.top && event.clientY <= box.bottom;
      if (!inside) closeDetails();
    });
    $("details-rerun").addEventListener("click", () => state.details && rerun(state.details));
    $("details-cancel").addEventListener("click", cancelShown);
    $("details-delete").addEventListener("click", askDelete);
    $("details-delete-keep").addEventListener("click", () => {
      hideConfirm();
      $("details-delete").focus();
    });
    $("details-delete-confirm").addEventListener("click", deleteShown);
  }

  function init() {
    $("signin-form").addEventListener("submit", submitSignin);
    $("api-key").addEventListener("input", () => showSigninError(null));
    $("sign-out").addEventListener("click", () => signOut());
    form.addEventListener("submit", submit);
    form.addEventListener("input", saveForm);
    form.addEventListener("change", saveForm);
    for (const id of ["prompt", "negative-prompt", "cfg-scale"]) {
      $(id).addEventListener("input", updateCounters);
    }
    $("model").addEventListener("change", () => {
      showModelDescription();
      applyModelLimits();
      saveForm();
    });
    $("seconds").addEventListener("input", showSeconds);
    for (const chip of form.querySelectorAll('input[name="duration"]')) {
      chip.addEventListener("change", () => setSeconds(chip.value));
    }
    $("size").addEventListener("change", followSize);
    for (const radio of form.querySelectorAll('input[name="aspect_ratio"]')) {
      radio.addEventListener("change", followRatio);
    }
    for (const slot of Object.keys(FRAME_SLOTS)) wireFrame(slot);
    // A file dropped beside a drop zone must not replace the page with the file.
    for (const type of ["dragover", "drop"]) {
      window.addEventListener(type, (event) => {
        if (!event.defaultPrevented && [...(event.dataTransfer?.types || [])].includes("Files")) {
          event.preventDefault();
          if (type === "dragover") event.dataTransfer.dropEffect = "none";
        }
      });
    }
    $("extend-form").addEventListener("submit", extendCurrent);
    $("details-extend-form").addEventListener("submit", extendShown);
    const buttons = [$("job-cancel"), $("details-cancel"), $("extend"), $("details-extend")];
    for (const button of buttons) button.dataset.label = button.textContent;
    $("job-cancel").addEventListener("click", cancelCurrent);
    $("result-details").addEventListener("click", (event) => {
      if (state.jobId) openDetails(state.jobId, event.currentTarget);
    });
    $("gallery-refresh").addEventListener("click", () => loadGallery(true));
    $("gallery-more").addEventListener("click", () => loadGallery(false));
    wireDetails();
    applyModelLimits();
    restoreForm();
    updateCounters();
    loadModels();
    // The live workers change as workers start and stop: refresh the list now and then, never
    // under the pointer of someone choosing from it.
    setInterval(() => {
      if (!document.hidden && document.activeElement !== $("model")) loadModels();
    }, MODELS_REFRESH_MS);
    const saved = sessionStorage.getItem(KEY_STORAGE);
    if (saved) signIn(saved);
  }

  init();
})();
