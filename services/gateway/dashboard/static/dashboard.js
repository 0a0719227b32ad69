// The dashboard's only script: no framework, no build step, nothing from another origin.
//
// - Live parts: an element with data-live="<url>" is fetched again every second and
//   replaced by the fresh copy the server rendered, until a copy says data-final.
// - The submit page: creates a template and submits a CSV through /dashboard/api, which is
//   the API itself with the session's key (the key never reaches this script).
// - Unsafe requests carry the page's CSRF token (meta csrf-token) in x-csrftoken.
"use strict";

const POLL_MS = 1000;

function csrfToken() {
  const meta = document.querySelector('meta[name="csrf-token"]');
  return meta ? meta.content : "";
}

async function refresh(element) {
  const url = element.dataset.live;
  let response;
  try {
    response = await fetch(url, {
      headers: { "x-dashboard-fragment": "1" },
      credentials: "same-origin",
      cache: "no-store",
    });
  } catch (err) {
    setTimeout(() => refresh(element), POLL_MS * 3); // the gateway restarts: try again
    return;
  }
  if (response.status === 401) {
    window.location.reload(); // the session ended: the page sends us to log in
    return;
  }
  if (!response.ok) {
    setTimeout(() => refresh(element), POLL_MS * 3);
    return;
  }
  const holder = document.createElement("template");
  holder.innerHTML = (await response.text()).trim();
  const fresh = holder.content.querySelector("[data-live]");
  if (!fresh) return;
  element.replaceWith(fresh);
  if (!fresh.dataset.final) {
    setTimeout(() => refresh(fresh), POLL_MS);
  }
}

function watchLiveParts() {
  for (const element of document.querySelectorAll("[data-live]")) {
    if (!element.dataset.final) {
      setTimeout(() => refresh(element), POLL_MS);
    }
  }
}

async function callApi(url, options) {
  const response = await fetch(url, {
    ...options,
    credentials: "same-origin",
    headers: { ...(options.headers || {}), "x-csrftoken": csrfToken(), accept: "application/json" },
  });
  let body = null;
  try {
    body = await response.json();
  } catch (err) {
    body = null;
  }
  if (!response.ok) {
    const message = body && body.error ? `${body.error.code}: ${body.error.message}` : `HTTP ${response.status}`;
    throw new Error(message);
  }
  return body;
}

function show(element, text, ok) {
  element.textContent = text;
  element.className = ok ? "result ok" : "result problem";
}

function wireTemplateForm() {
  const form = document.getElementById("template-form");
  if (!form) return;
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const result = document.getElementById("template-result");
    const fields = Object.fromEntries(new FormData(form).entries());
    for (const name of ["html", "text"]) {
      if (!fields[name]) delete fields[name];
    }
    try {
      const created = await callApi(form.dataset.api, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(fields),
      });
      document.getElementById("template_id").value = created.id;
      show(result, `Template ${created.id} (placeholders: ${created.placeholders.join(", ") || "none"})`, true);
    } catch (err) {
      show(result, err.message, false);
    }
  });
}

function wireSubmitForm() {
  const form = document.getElementById("submit-form");
  if (!form) return;
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const result = document.getElementById("submit-result");
    const data = new FormData();
    // The API wants the text fields before the file; empty optional fields are left out.
    for (const name of ["template_id", "send_at", "callback_url"]) {
      const value = form.elements[name].value.trim();
      if (value) data.append(name, value);
    }
    data.append("file", form.elements.file.files[0]);
    show(result, "Uploading…", true);
    try {
      const accepted = await callApi(form.dataset.api, { method: "POST", body: data });
      show(result, `Transaction ${accepted.transaction_id} accepted`, true);
      window.location.assign(form.dataset.done + encodeURIComponent(accepted.transaction_id));
    } catch (err) {
      show(result, err.message, false);
    }
  });
}

function wireConfirmations() {
  for (const form of document.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  }
}

document.addEventListener("DOMContentLoaded", () => {
  watchLiveParts();
  wireTemplateForm();
  wireSubmitForm();
  wireConfirmations();
});
