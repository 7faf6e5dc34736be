// Hipper+: boot, theme, hash routing and the screen frame (header with back button, bottom navigation).

import { ApiError, BASE, listenToEvents, session, setStepUpHandler, setUnauthorizedHandler } from "./api.js";
import { append, clear, h, icon } from "./dom.js";
import { language, loadLanguage, resolveLanguage, t } from "./i18n.js";
import { prefetchOverview, profileFacts, routes } from "./screens.js";
import { cachedProfile, forget, languagePreference, loadUser, store } from "./state.js";
import { errorText, stepUp } from "./ui.js";

export const VERSION = "0.1.0";

const NAV = ["overview", "calls", "contacts", "settings"];

let events = null;
// Live call control (incall.js) is loaded after the first screen, so it does not weigh on the first load.
let inCallModule = null;
const inCall = () => (inCallModule ||= import("./incall.js"));

export function applyTheme(theme) {
  const root = document.documentElement;
  if (theme === "light" || theme === "dark") root.dataset.theme = theme;
  else delete root.dataset.theme;
  const dark = theme === "dark" || (theme !== "light" && matchMedia("(prefers-color-scheme: dark)").matches);
  document.querySelector('meta[name="theme-color"]').setAttribute("content", dark ? "#121821" : "#0b57d0");
}

export async function applyLanguage(preference) {
  await loadLanguage(preference);
  render();
}

export function go(path) {
  if (location.hash === `#/${path}`) render();
  else location.hash = `#/${path}`;
}

function stopEvents() {
  if (events) events.abort();
  events = null;
  if (inCallModule) inCallModule.then((module) => module.forgetCalls()).catch(() => {});
}

export async function logOut() {
  stopEvents();
  // Forget the token on this device first: whatever happens next (a reload, no network), it is gone here.
  const token = session.token;
  forget();
  go("login");
  try {
    await fetch(`${BASE}/auth/logout`, { method: "POST", headers: { Authorization: `Bearer ${token}` } });
  } catch {
    /* offline: the session ends on the exchange when it expires */
  }
}

// An event whose re-read failed (the device lost its connection just then) is caught up with once it is back.
let missedEvent = null;
window.addEventListener("online", () => {
  if (missedEvent !== null && session.token) onLiveEvent(missedEvent);
});

function startEvents() {
  if (events) events.abort();
  events = new AbortController();
  listenToEvents(onLiveEvent, events.signal);
  // The calls going on now (the call bar and the in-call screen); events keep them current from here on.
  inCall().then((module) => module.refreshCalls()).catch(() => {});
}

async function onLiveEvent(type, payload) {
  // A call's state (call.ringing / call.started / call.updated / call.ended): the call list follows it at once. A
  // call ringing or changing state alone changes nothing else, so it re-reads no profile and redraws no screen.
  if (type.startsWith("call.")) {
    inCall().then((module) => module.callEvent(type, payload)).catch(() => {});
    if (type === "call.updated" || type === "call.ringing") return;
  }
  // Any change to this user's data: re-read the profile (voicemail count, licences, app settings such as a
  // theme chosen on another device) and redraw the screen unless the user is typing in it.
  try {
    await loadUser();
    await syncPrefs();
    missedEvent = null;
  } catch {
    missedEvent = type;
    return;
  }
  window.dispatchEvent(new CustomEvent("hipper:event", { detail: type }));
  const active = document.activeElement;
  const typing = active && (active.tagName === "INPUT" || active.tagName === "TEXTAREA") && active.type !== "checkbox";
  const busy = typing || document.querySelector("dialog[open]") || document.body.dataset.editing;
  const live = currentRoute && (typeof currentRoute.live === "function" ? currentRoute.live(...currentParams) : currentRoute.live);
  if (!busy && live) {
    // Redraw in place: keep the keyboard focus on the same control (ids of live controls are stable).
    const focused = document.activeElement && document.activeElement.id;
    await render();
    const again = focused && document.getElementById(focused);
    if (again) again.focus({ preventScroll: true });
  }
}

// The app settings kept by the exchange may differ from this device's copy: apply theme and language.
export async function syncPrefs() {
  applyTheme(store.prefs.theme);
  if (resolveLanguage(languagePreference()) !== language()) await loadLanguage(languagePreference());
}

let currentRoute = null;
let renderCount = 0;
// The tab-level screen the user came from: a screen reached from the overview's tiles goes back there.
let cameFrom = "overview";
let currentParams = [];

export async function render() {
  const [name, ...params] = (location.hash.replace(/^#\/?/, "") || "overview").split("/").map(decodeURIComponent);
  const app = document.getElementById("app");
  if (!session.token && name !== "login") return go("login");
  if (session.token && !store.profile && name !== "login") {
    try {
      await loadUser();
    } catch (error) {
      if (error instanceof ApiError && error.status === 401) {
        forget();
        return go("login");
      }
      return offlineScreen(app);
    }
  }
  stopRetrying();
  // Logged in with the profile in (however it came: a login, boot's early load, a reload): this device follows
  // the app settings the exchange keeps, and the live updates run (started below, once the screen is drawn, so
  // the long-lived stream does not compete with the screen's own requests). Checked on every render, because
  // boot may have loaded the profile before the first one.
  const startLive = session.token && store.profile && !events;
  if (startLive) await syncPrefs();
  if (store.profile && !store.profile.pin_set && name !== "pin-setup" && name !== "login") return go("pin-setup");
  const route = routes[name] || routes.overview;
  currentRoute = route;
  currentParams = params;
  if (!route.back) cameFrom = name;
  const count = ++renderCount;
  delete document.body.dataset.editing;
  // Marks the screen as loading until its data arrived (tests and screenshots wait for this).
  document.documentElement.dataset.busy = "true";
  const title = typeof route.title === "function" ? route.title(...params) : t(route.title);
  const { main, heading, callbar } = frame(app, route, name, title);
  try {
    await route.render(main, ...params);
  } catch (error) {
    if (count !== renderCount) return;
    if (error instanceof ApiError && error.status === 401) return;
    main.append(h("p", { class: "error", role: "alert" }, errorText(error)));
  }
  if (startLive && session.token && !events) startEvents();
  // Filled once the screen is drawn: the call module is not part of the first load.
  if (callbar) inCall().then((module) => module.callBar(callbar)).catch(() => {});
  if (count !== renderCount) return;
  delete document.documentElement.dataset.busy;
  if (!main.contains(document.activeElement)) heading.focus({ preventScroll: true });
}

// The screen frame: the top bar (back or logo, the title) and, unless the route is bare, the tab bar.
function frame(app, route, name, title) {
  document.title = `${title} · Hipper+`;
  const heading = h("h1", { tabindex: "-1" }, title);
  const header = h(
    "header",
    { class: "topbar" },
    route.back
      ? h("a", { class: "back", href: `#/${route.back === "settings" && cameFrom === "overview" ? "overview" : route.back}`, "aria-label": t("action.back") }, icon("back"))
      : h("span", { class: "logo", "aria-hidden": "true" }, "H+"),
    heading,
    h("div", { class: "topbar-actions", id: "topbar-actions" }),
  );
  const main = h("main", { class: "content", id: "main" });
  // While a call goes on, a bar on every other screen leads back to it (manual 5.2: the call shows in the app).
  const callbar = session.token && !route.bare && name !== "call" ? h("aside", { class: "callbar", id: "callbar", "aria-label": t("incall.bar"), hidden: true }) : null;
  const nav = route.bare
    ? null
    : h(
        "nav",
        { class: "tabbar", "aria-label": t("nav.label") },
        NAV.map((path) =>
          h(
            "a",
            {
              href: `#/${path}`,
              "aria-current": (route.tab || name) === path ? "page" : undefined,
            },
            h("span", { class: "tab-icon" }, icon(path)),
            h("span", {}, t(`nav.${path}`)),
          ),
        ),
      );
  const shell = h("div", { class: route.bare ? "shell bare" : "shell" }, header, callbar, main, nav);
  clear(app).append(shell);
  return { main, heading, callbar };
}

// Started without a connection to the exchange: the overview as this device last saw it, a retry, and a
// retry by itself when the browser says the network is back and every few seconds meanwhile (the exchange may
// be unreachable while the network is up).
let retryTimer = null;
const RETRY_SECONDS = 5;

function stopRetrying() {
  clearInterval(retryTimer);
  retryTimer = null;
}

async function retry() {
  try {
    await loadUser();
  } catch {
    return;
  }
  stopRetrying();
  render();
}

function offlineScreen(app) {
  const { main, heading } = frame(app, { tab: "overview" }, "overview", t("offline.title"));
  const cached = cachedProfile();
  append(main, [
    h(
      "section",
      { class: "card offline", role: "alert" },
      h("p", {}, t("error.offline")),
      h("p", { class: "muted small" }, t("offline.auto")),
      h("button", { type: "button", class: "primary wide", onClick: retry }, t("offline.retry")),
    ),
    cached ? profileFacts(cached) : null,
  ]);
  if (!retryTimer) retryTimer = setInterval(retry, RETRY_SECONDS * 1000);
  delete document.documentElement.dataset.busy;
  heading.focus({ preventScroll: true });
}

window.addEventListener("online", () => {
  if (retryTimer) retry();
});

async function boot() {
  // Logged in on this device: ask for the user's data now, in parallel with the language file (render() waits
  // for the same load). Failures are handled by render().
  if (session.token) {
    loadUser().catch(() => {});
    if (/^(#\/?(overview)?)?$/.test(location.hash)) prefetchOverview();
  }
  applyTheme(store.prefs.theme);
  matchMedia("(prefers-color-scheme: dark)").addEventListener("change", () => applyTheme(store.prefs.theme));
  await loadLanguage(languagePreference());
  setStepUpHandler(stepUp);
  setUnauthorizedHandler(() => {
    stopEvents();
    forget();
    go("login");
  });
  window.addEventListener("hashchange", render);
  await render();
  document.documentElement.dataset.ready = "true";
  // The first screen is drawn with its data and its controls work: bench/web/first_load.py reads this mark.
  performance.mark("hipper:usable", { detail: location.hash });
  // Only now: installing the worker downloads the whole shell, which must not compete with the first screen.
  if ("serviceWorker" in navigator && location.protocol !== "file:") {
    navigator.serviceWorker.register("/sw.js").catch(() => {});
  }
}

export function afterLogin() {
  startEvents();
}

boot();
