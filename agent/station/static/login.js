// Login page: post the form as JSON to /api/login, then go to the live page.
"use strict";

const form = document.getElementById("login-form");
const errorBox = document.getElementById("login-error");
const button = document.getElementById("login-button");

function showError(text) {
  errorBox.textContent = text;
  errorBox.hidden = false;
}

function loginErrorText(response, body) {
  if (response.status === 429) {
    const wait = response.headers.get("Retry-After") || "a few";
    return `Too many failed attempts. Try again in ${wait} s.`;
  }
  if (response.status === 401) return "Wrong user name or password.";
  if (response.status === 422) return "Please enter your user name and password.";
  return (body && typeof body.detail === "string") ? body.detail : `Login failed (HTTP ${response.status}).`;
}

async function submitLogin(event) {
  event.preventDefault();
  errorBox.hidden = true;
  button.disabled = true;
  const payload = { name: form.elements.name.value.trim(), password: form.elements.password.value };
  try {
    const response = await fetch("/api/login", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(payload),
      credentials: "same-origin",
    });
    if (response.ok) {
      window.location.assign("/");
      return;
    }
    const body = await response.json().catch(() => null);
    showError(loginErrorText(response, body));
    form.elements.password.select();
  } catch (err) {
    showError("The station cannot be reached. Check the network and try again.");
  } finally {
    button.disabled = false;
  }
}

form.addEventListener("submit", submitLogin);
