// The page that tries POST /resolution: plain JavaScript, no framework, nothing loaded from elsewhere.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const form = $("form");
  const drop = $("drop");
  const fileInput = $("file");
  const urlInput = $("url");
  const chosen = $("chosen");
  const submit = $("submit");
  const cancel = $("cancel");
  const spinner = $("spinner");
  const statusText = $("status-text");
  const errorBox = $("error");
  const result = $("result");
  const frame = $("frame");
  const resultImage = $("result-image");
  const beforeImage = $("before-image");
  const compare = $("compare");
  const actual = $("actual");
  const download = $("download");

  const MIME = { jpeg: "image/jpeg", png: "image/png", webp: "image/webp" };
  const EXTENSION = { jpeg: "jpg", png: "png", webp: "webp" };

  let file = null; // the chosen File, or null when the URL is used
  let objectUrls = []; // revoked when the next request starts
  let controller = null; // AbortController of the request in flight
  let timer = null;

  // --- input: picker, drag and drop, URL (choosing one clears the other) ------------------------

  function chooseFile(picked) {
    file = picked || null;
    if (file) {
      urlInput.value = "";
      chosen.textContent = `${file.name} (${formatBytes(file.size)})`;
    } else {
      chosen.textContent = "";
    }
  }

  fileInput.addEventListener("change", () => chooseFile(fileInput.files[0]));
  urlInput.addEventListener("input", () => {
    if (urlInput.value.trim()) {
      fileInput.value = "";
      chooseFile(null);
    }
  });

  for (const type of ["dragenter", "dragover"]) {
    drop.addEventListener(type, (event) => {
      event.preventDefault();
      drop.classList.add("dragging");
    });
  }
  for (const type of ["dragleave", "drop"]) {
    drop.addEventListener(type, () => drop.classList.remove("dragging"));
  }
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    const dropped = event.dataTransfer && event.dataTransfer.files[0];
    if (dropped) {
      fileInput.value = "";
      chooseFile(dropped);
    }
  });
  // A file dropped beside the zone must not make the browser navigate away from the page.
  window.addEventListener("dragover", (event) => event.preventDefault());
  window.addEventListener("drop", (event) => event.preventDefault());

  // --- request ----------------------------------------------------------------------------------

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const url = urlInput.value.trim();
    if (!file && !url) {
      showError("Nothing to upscale", "Choose or drop an image file, or give an image URL.");
      return;
    }
    const scale = Number(form.querySelector("input[name=scale]:checked").value);
    const payload = { scale, face: $("face").checked };
    let source; // what the "before" image shows
    let stem;
    try {
      if (url) {
        payload.url = url;
        source = /^https?:\/\//i.test(url) ? url : null;
        stem = stemOf(url.split(/[?#]/)[0].split("/").pop());
      } else {
        payload.img = await readBase64(file);
        source = remember(URL.createObjectURL(file));
        stem = stemOf(file.name);
      }
    } catch (error) {
      showError("Cannot read the file", String(error && error.message ? error.message : error));
      return;
    }
    await send(payload, source, stem, scale);
  });

  cancel.addEventListener("click", () => controller && controller.abort());

  async function send(payload, source, stem, scale) {
    releaseObjectUrls(source);
    const endpoint = endpointUrl();
    const headers = { "content-type": "application/json" };
    const key = $("api-key").value.trim();
    if (key) headers["x-api-key"] = key;

    controller = new AbortController();
    const started = performance.now();
    startProgress(started);
    let response;
    let text;
    try {
      response = await fetch(endpoint, {
        method: "POST",
        headers,
        body: JSON.stringify(payload),
        signal: controller.signal,
        credentials: "omit",
      });
      text = await response.text();
    } catch (error) {
      stopProgress();
      if (error && error.name === "AbortError") {
        showError("Cancelled", "The request was cancelled; the server may still finish it.");
      } else {
        showError(
          `Could not reach ${endpoint}`,
          "Network error: the server is down or unreachable, or (for an endpoint on another origin) " +
            "it does not allow this page by CORS. The browser's console has the details.",
        );
      }
      return;
    }
    const elapsed = (performance.now() - started) / 1000;
    stopProgress();

    const body = parseJson(text);
    if (!response.ok) {
      showFailure(response, body, text);
      return;
    }
    if (!body || typeof body.result !== "string") {
      showError(
        `HTTP ${response.status}: not the expected answer`,
        `The endpoint answered ${response.status} without a JSON result. ${snippet(text)}`,
      );
      return;
    }
    await showResult(body, source, stem, scale, elapsed);
  }

  function endpointUrl() {
    const given = $("endpoint").value.trim();
    return new URL(given || "resolution", window.location.href).href;
  }

  // --- answers ----------------------------------------------------------------------------------

  function showFailure(response, body, text) {
    const status = `HTTP ${response.status}${response.statusText ? " " + response.statusText : ""}`;
    if (body && typeof body === "object" && typeof body.message === "string") {
      // The API's error shape {message, code}; API Gateway's own errors carry a message too.
      showError(body.code ? `${status} (${body.code})` : status, body.message);
    } else {
      showError(status, `The answer was not the API's JSON error. ${snippet(text)}`);
    }
  }

  async function showResult(body, source, stem, scale, elapsed) {
    const format = MIME[body.format] ? body.format : "png";
    let blob;
    try {
      blob = base64ToBlob(body.result, MIME[format]);
    } catch (error) {
      showError("The result is not valid base64", String(error));
      return;
    }
    const href = remember(URL.createObjectURL(blob));
    try {
      await loadImage(resultImage, href);
    } catch (error) {
      showError("The browser cannot show the result", `${format} image of ${formatBytes(blob.size)}.`);
      return;
    }
    const width = body.width || resultImage.naturalWidth;
    const height = body.height || resultImage.naturalHeight;
    frame.style.setProperty("--w", String(width));
    frame.style.setProperty("--h", String(height));

    let inputSize = `${Math.round(width / scale)} × ${Math.round(height / scale)}`;
    frame.classList.toggle("no-before", !source);
    if (source) {
      try {
        await loadImage(beforeImage, source);
        inputSize = `${beforeImage.naturalWidth} × ${beforeImage.naturalHeight}`;
      } catch (error) {
        frame.classList.add("no-before"); // e.g. a URL the browser may not load; the API could
      }
    } else {
      beforeImage.removeAttribute("src");
    }

    $("fact-input").textContent = inputSize;
    $("fact-output").textContent = `${width} × ${height} (${body.scale || scale}×, ${format}, ${formatBytes(blob.size)})`;
    $("fact-model").textContent = body.model || "–";
    $("fact-faces").textContent = body.faces === undefined ? "–" : String(body.faces);
    $("fact-time").textContent =
      typeof body.seconds === "number"
        ? `${body.seconds.toFixed(2)} s computing, ${elapsed.toFixed(2)} s in all`
        : `${elapsed.toFixed(2)} s in all`;

    const filename = `${stem}_x${body.scale || scale}.${EXTENSION[format]}`;
    download.href = href;
    download.download = filename;
    download.textContent = `Download ${filename}`;

    errorBox.hidden = true;
    result.hidden = false;
    setStatus(`Done: ${width} × ${height} in ${elapsed.toFixed(1)} s.`);
  }

  // --- comparison -------------------------------------------------------------------------------

  function setPosition() {
    frame.style.setProperty("--pos", `${compare.value}%`);
    compare.setAttribute("aria-valuetext", `${compare.value}% before, ${100 - compare.value}% after`);
  }
  compare.addEventListener("input", setPosition);
  actual.addEventListener("change", () => frame.classList.toggle("actual", actual.checked));
  setPosition();

  // --- progress and messages --------------------------------------------------------------------

  function startProgress(started) {
    errorBox.hidden = true;
    result.hidden = true;
    submit.disabled = true;
    cancel.hidden = false;
    spinner.hidden = false;
    $("output").setAttribute("aria-busy", "true");
    // With the form scrolled down (or on a narrow screen), bring the progress into view.
    if ($("output").getBoundingClientRect().top < 0 || $("status").getBoundingClientRect().bottom > window.innerHeight) {
      $("output").scrollIntoView({ block: "start" });
    }
    const tick = () => {
      statusText.textContent = `Upscaling… ${((performance.now() - started) / 1000).toFixed(1)} s`;
    };
    tick();
    timer = window.setInterval(tick, 100);
  }

  function stopProgress() {
    window.clearInterval(timer);
    timer = null;
    controller = null;
    submit.disabled = false;
    cancel.hidden = true;
    spinner.hidden = true;
    $("output").removeAttribute("aria-busy");
  }

  function setStatus(text) {
    statusText.textContent = text;
  }

  function showError(title, message) {
    result.hidden = true;
    $("error-title").textContent = title;
    $("error-message").textContent = message;
    errorBox.hidden = false;
    setStatus("Failed.");
  }

  // --- helpers ----------------------------------------------------------------------------------

  function readBase64(blob) {
    return new Promise((resolve, reject) => {
      const reader = new FileReader();
      // The data: URL's own type may be empty or wrong (a renamed file): send the bare base64.
      reader.onload = () => resolve(String(reader.result).replace(/^data:[^,]*,/, ""));
      reader.onerror = () => reject(reader.error || new Error("the file could not be read"));
      reader.readAsDataURL(blob);
    });
  }

  function base64ToBlob(text, type) {
    const binary = atob(text);
    const bytes = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i += 1) bytes[i] = binary.charCodeAt(i);
    return new Blob([bytes], { type });
  }

  function loadImage(img, src) {
    return new Promise((resolve, reject) => {
      img.onload = () => resolve(img);
      img.onerror = () => reject(new Error(`cannot load ${src}`));
      img.src = src;
    });
  }

  function parseJson(text) {
    try {
      return JSON.parse(text);
    } catch (error) {
      return null;
    }
  }

  function snippet(text) {
    // An HTML error page (a proxy, API Gateway) shown as its text, briefly.
    const plain = String(text || "").replace(/<(script|style)[\s\S]*?<\/\1>/gi, " ").replace(/<[^>]*>/g, " ");
    const squeezed = plain.replace(/\s+/g, " ").trim();
    if (!squeezed) return "The body was empty.";
    return `It said: “${squeezed.length > 300 ? squeezed.slice(0, 300) + "…" : squeezed}”`;
  }

  function stemOf(name) {
    let decoded = name || "";
    try {
      decoded = decodeURIComponent(decoded);
    } catch (error) {
      // keep it as it is
    }
    const stem = decoded.replace(/\.[^.]*$/, "").replace(/[^\w.-]+/g, "_").replace(/^[._]+/, "");
    return stem || "image";
  }

  function remember(objectUrl) {
    objectUrls.push(objectUrl);
    return objectUrl;
  }

  function releaseObjectUrls(keep) {
    for (const objectUrl of objectUrls) if (objectUrl !== keep) URL.revokeObjectURL(objectUrl);
    objectUrls = objectUrls.filter((objectUrl) => objectUrl === keep);
  }

  function formatBytes(bytes) {
    if (bytes < 1024) return `${bytes} B`;
    if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KB`;
    return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
  }
})();
