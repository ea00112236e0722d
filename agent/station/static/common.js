// What every page of the station shares: element lookup, JSON calls to the API (CSRF header on every state change,
// back to the login page when the session is gone) and the toast line for what just happened.
export const $ = (id) => document.getElementById(id);

// `csrf()` returns the session's CSRF token (pages keep it in their own state after /api/me).
export function apiClient(csrf) {
  return async function api(url, options = {}) {
    const headers = { ...(options.body ? { "Content-Type": "application/json" } : {}),
      ...(options.method && options.method !== "GET" ? { "X-CSRF-Token": csrf() } : {}) };
    const response = await fetch(url, { credentials: "same-origin", ...options, headers });
    if (response.status === 401) {
      window.location.assign("/login");
      throw new Error("login required");
    }
    const body = await response.json().catch(() => null);
    if (!response.ok) throw new Error((body && body.detail) || `HTTP ${response.status}`);
    return body;
  };
}

// Errors stay longer than news: they have to be read.
export function toast(text, kind = "info", { infoMs = 3000, errorMs = 8000 } = {}) {
  const box = $("toast");
  box.textContent = text;
  box.dataset.kind = kind;
  box.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { box.hidden = true; }, kind === "error" ? errorMs : infoMs);
}

// Fills `state.csrf` and the header's user from /api/me, and wires the header's Log out button (the session ends on
// the server even when the page is about to leave).
export async function signIn(api, state) {
  const me = await api("/api/me");
  state.csrf = me.csrf_token;
  $("user").textContent = `${me.user} (${me.role})`;
  $("logout").addEventListener("click", async () => {
    await fetch("/api/logout", { method: "POST", credentials: "same-origin", headers: { "X-CSRF-Token": state.csrf } })
      .catch(() => null);
    window.location.assign("/login");
  });
  return me;
}
