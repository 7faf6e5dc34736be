// Live call control (manual 5.2, SPEC D3–D8): the user's calls going on now, with their state and a running
// duration, and per call Ophangen, Wachtstand/Hervatten, Toevoegen, Doorverbinden (blind or met ruggespraak),
// Samenvoegen, Wisselen, Opnemen/pauzeren/hervatten and Gesprek overnemen — each one request to
// /api/v1/me/calls/{id}/… (docs/api.md). The list follows the exchange's `call.*` events, so every device of the
// user shows the same calls; the answer of the user's own request is shown at once.

import { ApiError, Cancelled, api } from "./api.js";
import { h, icon } from "./dom.js";
import { formatNumber, t } from "./i18n.js";
import { store } from "./state.js";
import { errorText, modal, toast } from "./ui.js";

// -- the live calls, shared by the in-call screen and the call bar every screen shows ---------------------------

export const live = {
  calls: [],
  // False where the exchange reports no live calls (an API-only node): the screen says so.
  available: true,
};
const listeners = new Set();
// Bumped by every change this device made or heard of: a list read that started before it is stale.
let generation = 0;
let reading = null;
let readAgain = false;

export function onCallsChanged(listener) {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

function changed() {
  for (const listener of [...listeners]) listener(live.calls);
}

// The contacts (GET /me/contacts): to pick from, and to name the other party of a call. Read when the first call
// shows, and again each time the in-call screen opens.
let contactsRead = null;
const names = new Map();
function contacts() {
  if (!contactsRead) {
    contactsRead = api.get("/me/contacts").then((page) => page.contacts || [], () => []);
    contactsRead.then((found) => {
      names.clear();
      for (const contact of found) {
        for (const entry of contact.numbers || []) names.set(entry.number, contact.display_name);
        if (contact.extension) names.set(contact.extension, contact.display_name);
      }
      if (live.calls.length) changed();
    });
  }
  return contactsRead;
}

function upsert(call) {
  generation += 1;
  const index = live.calls.findIndex((item) => item.id === call.id);
  if (index >= 0) live.calls[index] = { ...live.calls[index], ...call };
  else live.calls.push(call);
  changed();
}

function drop(id) {
  generation += 1;
  live.calls = live.calls.filter((call) => call.id !== id);
  changed();
}

async function readCalls() {
  const started = generation;
  let calls;
  try {
    calls = (await api.get("/me/calls")).calls;
    live.available = true;
  } catch (error) {
    if (error instanceof ApiError && (error.unavailable || error.status === 503)) {
      live.available = false;
      calls = [];
    } else throw error;
  }
  // A change arrived while the list was on its way: the list may predate it, so read again.
  if (started !== generation) return readCalls();
  live.calls = calls;
  if (calls.length) contacts();
  changed();
  watchRinging();
  return calls;
}

// A ringing call turns into an answered one by itself, and the exchange does not announce every such answer (a
// consultation's far end answering sends no event yet): while a call rings, the list is read again now and then.
// Events stay the source of every other change.
const RING_RECHECK_MS = 2000;
let ringTimer = null;
function watchRinging() {
  clearTimeout(ringTimer);
  ringTimer = null;
  if (live.calls.some((call) => call.state === "ringing")) ringTimer = setTimeout(() => refreshCalls().catch(() => {}), RING_RECHECK_MS);
}

// Logged out: this device forgets the calls (the next user's are read at their login).
export function forgetCalls() {
  clearTimeout(ringTimer);
  ringTimer = null;
  generation += 1;
  live.calls = [];
  contactsRead = null;
  names.clear();
  changed();
}

// GET /me/calls; calls arriving meanwhile share the read, and one more read follows if asked for during it.
export function refreshCalls() {
  if (reading) {
    readAgain = true;
    return reading;
  }
  reading = readCalls().finally(() => {
    reading = null;
    if (readAgain) {
      readAgain = false;
      refreshCalls().catch(() => {});
    }
  });
  return reading;
}

// A `call.ringing`, `call.started`, `call.updated` or `call.ended` from /api/v1/events: `call.updated` carries the call's new
// state (api/docs), shown at once; the list is then read again for what an event does not carry (a new call's
// number and name).
export function callEvent(type, payload) {
  const id = payload && typeof payload === "object" ? payload.id : null;
  if (id && (type === "call.ended" || payload.state === "ended")) drop(id);
  else if (id && type === "call.updated" && live.calls.some((call) => call.id === id)) upsert(payload);
  else generation += 1;
  return refreshCalls().catch(() => {});
}

// -- how a call is shown ---------------------------------------------------------------------------------------

// The other party's name: as the exchange gives it, else the contact with that number (a colleague's extension).
export function callName(call) {
  return call.remote_name || names.get(call.remote_number) || formatNumber(call.remote_number) || t("calls.anonymous");
}

export function callState(call) {
  if (call.state === "ringing") return "ringing";
  if (call.merged) return "merged";
  if (call.held || call.state === "held") return "held";
  return "active";
}

function stateText(call) {
  const parts = [t(`incall.state.${callState(call)}`)];
  if (call.consultation_of && !call.merged) parts.push(t("incall.consultation"));
  if (call.recording === "on" || call.recording === "paused") parts.push(t(`incall.recording.${call.recording}`));
  return parts.join(" · ");
}

const clock = (seconds) => {
  const hours = Math.floor(seconds / 3600);
  const minutes = String(Math.floor((seconds % 3600) / 60));
  const rest = String(seconds % 60).padStart(2, "0");
  return hours ? `${hours}:${minutes.padStart(2, "0")}:${rest}` : `${minutes}:${rest}`;
};

function elapsed(since) {
  const seconds = Math.max(0, Math.floor((Date.now() - new Date(since).getTime()) / 1000));
  return Number.isFinite(seconds) ? clock(seconds) : "";
}

// One timer for every running duration on the screen; it stops itself when none is shown.
let ticker = null;
function tick() {
  const shown = document.querySelectorAll("[data-since]");
  for (const element of shown) element.textContent = elapsed(element.dataset.since);
  if (shown.length === 0) {
    clearInterval(ticker);
    ticker = null;
  }
}

function duration(call) {
  if (!ticker) ticker = setInterval(tick, 1000);
  return h("span", { class: "duration", "data-since": call.started_at, role: "timer", "aria-label": t("incall.duration") }, elapsed(call.started_at));
}

// The bar above every other screen while a call goes on: tapping it opens the in-call screen.
export function callBar(bar) {
  const draw = () => {
    if (!bar.isConnected && bar.dataset.drawn) return false;
    bar.dataset.drawn = "true";
    const calls = live.calls;
    bar.hidden = calls.length === 0;
    if (calls.length === 0) return bar.replaceChildren();
    const first = calls.find((call) => callState(call) === "active") || calls[0];
    const label = calls.length === 1 ? `${callName(first)} · ${stateText(first)}` : t("incall.bar_many", { count: calls.length });
    bar.replaceChildren(h("a", { href: "#/call", class: "callbar-link" }, h("span", { class: `state-dot ${callState(first)}`, "aria-hidden": "true" }), h("span", { class: "grow" }, h("strong", {}, t("incall.bar")), h("small", {}, label)), duration(first)));
  };
  const stop = onCallsChanged(() => {
    if (draw() === false) stop();
  });
  draw();
}

// -- requests ---------------------------------------------------------------------------------------------------

const path = (call, action = "") => `/me/calls/${encodeURIComponent(call.id)}${action}`;

// What went wrong, in the user's words: a 404 means the call is no longer there (or this exchange cannot do
// this yet: the route is missing); the call-control `code`s of a 409 have their own texts (i18n error.code.*).
function failureText(error) {
  if (error instanceof ApiError && error.status === 404) return t("incall.gone");
  if (error instanceof ApiError && error.status === 405) return t("incall.unsupported");
  return errorText(error);
}


// "Kies het contact of nummer": a number typed in, or one of a contact's numbers. Resolves {number, name} or null.
function pickTarget(title) {
  return modal(title, (close) => {
    const input = h("input", { id: "pick-number", type: "tel", inputmode: "tel", autocomplete: "off", "aria-describedby": "pick-hint" });
    const search = h("input", { id: "pick-search", type: "search", autocomplete: "off", placeholder: t("contacts.search"), "aria-label": t("contacts.search") });
    const list = h("ul", { class: "card list pick-list", "aria-label": t("screen.contacts") });
    let all = [];
    const draw = () => {
      const words = search.value.trim().toLowerCase().split(/\s+/).filter(Boolean);
      const rows = [];
      for (const contact of all) {
        const haystack = [contact.display_name, contact.company_name, contact.extension, ...contact.numbers.map((n) => n.number)].join(" ").toLowerCase();
        if (!words.every((word) => haystack.includes(word))) continue;
        for (const entry of contact.numbers) {
          rows.push(
            h(
              "li",
              { class: "list-row" },
              h(
                "button",
                { type: "button", class: "row-body pick", onClick: () => close({ number: entry.number, name: contact.display_name }) },
                h("span", { class: "grow" }, h("strong", {}, contact.display_name), h("small", { class: "muted" }, `${t(`contacts.kind.${entry.kind}`)} · `, h("span", { class: "number" }, formatNumber(entry.number)))),
              ),
            ),
          );
        }
      }
      list.replaceChildren(...(rows.length ? rows.slice(0, 50) : [h("li", { class: "empty" }, t("contacts.empty"))]));
    };
    search.addEventListener("input", draw);
    contacts().then((found) => {
      all = found.filter((contact) => contact.numbers && contact.numbers.length);
      draw();
    });
    return h(
      "form",
      {
        class: "picker",
        onSubmit: (event) => {
          event.preventDefault();
          const number = input.value.trim();
          if (number) close({ number, name: number });
          else input.focus();
        },
      },
      h("label", { for: "pick-number" }, t("incall.pick_number")),
      h("div", { class: "dial-display" }, input, h("button", { type: "submit", class: "primary" }, t("incall.pick_use"))),
      h("small", { id: "pick-hint", class: "muted" }, t("incall.pick_hint")),
      h("div", { class: "search" }, search),
      list,
      h("div", { class: "actions" }, h("button", { type: "button", class: "secondary", onClick: () => close(null) }, t("action.cancel"))),
    );
  });
}

// A short list of choices in a dialog (each `[value, label]`), with Annuleren. Resolves the value or null.
function choose(title, choices) {
  return modal(title, (close) =>
    h(
      "div",
      { class: "card menu" },
      choices.map(([value, label]) => h("button", { type: "button", class: "menu-item", onClick: () => close(value) }, label)),
      h("button", { type: "button", class: "menu-item", onClick: () => close(null) }, t("action.cancel")),
    ),
  );
}

// -- the in-call screen -----------------------------------------------------------------------------------------

// The other answered call a two-call action works with (the consultation and the call it consults for, or any
// second call), or null.
function partnerOf(call) {
  const others = live.calls.filter((other) => other.id !== call.id && other.state !== "ringing");
  return others.find((other) => other.consultation_of === call.id || call.consultation_of === other.id) || (others.length === 1 ? others[0] : null);
}

export async function inCallScreen(main, wanted) {
  let selected = wanted || null;
  let pending = null; // the id of the call an operation is under way on
  let waiting = ""; // what the user is waiting for meanwhile
  const errors = new Map();
  const section = h("section", { class: "incall", "aria-label": t("incall.list") });
  main.append(section);

  // Run one operation on `call`: buttons wait, the exchange's answer (a LiveCall) is shown at once, an error
  // stays under the call until the next operation; the list is read again either way.
  const run = async (call, work, done, meanwhile = t("incall.pending")) => {
    errors.delete(call.id);
    pending = call.id;
    waiting = meanwhile;
    draw();
    try {
      const answer = await work();
      if (answer && answer.id === call.id && answer.state) upsert(answer);
      if (done) toast(done);
    } catch (error) {
      if (!(error instanceof Cancelled)) errors.set(call.id, failureText(error));
    } finally {
      pending = null;
      draw();
      refreshCalls().catch(() => {});
    }
  };

  const hangUp = (call) =>
    run(call, async () => {
      await api.del(path(call));
      drop(call.id);
    }, t("call.hung_up"));

  const add = async (call) => {
    const target = await pickTarget(t("incall.add_title"));
    if (target) run(call, () => api.post(path(call, "/consultations"), { to: target.number }), t("incall.consulting", { name: target.name }));
  };

  const transfer = async (call) => {
    const partner = partnerOf(call);
    if (partner) {
      // Two calls: complete the transfer (connect the two other parties), or transfer to someone else.
      const choice = await choose(t("incall.transfer_title"), [
        ["partner", t("incall.transfer_to", { name: callName(partner) })],
        ["other", t("incall.transfer_other")],
      ]);
      if (choice === "partner") {
        // The call that waits is transferred; the consultation is the one it is connected with.
        const [held, consultation] = call.consultation_of === partner.id ? [partner, call] : [call, partner];
        return run(call, () => api.post(path(held, "/transfer"), { mode: "attended", consultation: consultation.id }), t("incall.transferred", { name: callName(partner) }));
      }
      if (choice !== "other") return;
    }
    const target = await pickTarget(t("incall.transfer_title"));
    if (!target) return;
    const how = await choose(t("incall.transfer_title"), [
      ["blind", t("incall.transfer_blind", { name: target.name })],
      ["attended", t("incall.transfer_attended", { name: target.name })],
    ]);
    if (how === "blind") run(call, () => api.post(path(call, "/transfer"), { mode: "blind", to: target.number }), t("incall.transferred", { name: target.name }));
    else if (how === "attended") run(call, () => api.post(path(call, "/consultations"), { to: target.number }), t("incall.consulting", { name: target.name }));
  };

  const RECORDING_NEXT = { off: "start", on: "pause", paused: "resume" };

  const actionsOf = (call) => {
    const id = call.id;
    const button = (name, label, onClick, extra = {}) =>
      h("button", { type: "button", id: `call-${id}-${name}`, class: `action ${extra.class || ""}`.trim(), disabled: pending === id, onClick: () => onClick(call) }, extra.icon ? icon(extra.icon) : null, h("span", {}, label));
    const state = callState(call);
    const list = [];
    if (state !== "ringing") {
      const partner = partnerOf(call);
      // A three-way call is only left (Ophangen) or recorded: the exchange refuses hold, transfer and pull there.
      if (!call.merged) {
        list.push(
          state === "held"
            ? button("resume", t("incall.resume"), (c) => run(c, () => api.post(path(c, "/resume")), t("incall.resumed")), { icon: "play" })
            : button("hold", t("incall.hold"), (c) => run(c, () => api.post(path(c, "/hold")), t("incall.held")), { icon: "pause" }),
        );
        list.push(button("add", t("incall.add"), add, { icon: "plus" }));
        list.push(button("transfer", t("incall.transfer"), transfer, { icon: "outgoing" }));
      }
      if (partner && !call.merged && !partner.merged) {
        list.push(button("merge", t("incall.merge"), (c) => run(c, () => api.post(path(c, "/merge"), { with: partner.id }), t("incall.merged")), { icon: "contacts" }));
        // Wisselen: the waiting call is taken back, which puts the other one on hold (the exchange does both).
        const waiting = state === "held" ? call : callState(partner) === "held" ? partner : null;
        if (waiting) list.push(button("swap", t("incall.swap"), () => run(call, () => api.post(path(waiting, "/resume")), t("incall.swapped")), { icon: "calls" }));
      }
      if (call.recording !== null && call.recording !== undefined && RECORDING_NEXT[call.recording]) {
        const action = RECORDING_NEXT[call.recording];
        list.push(button("recording", t(`incall.recording_${action}`), (c) => run(c, () => api.post(path(c, "/recording"), { action }), t(`incall.recording_done_${action}`)), { icon: action === "pause" ? "pause" : "mic" }));
      }
      if (!call.merged) {
        const device = store.profile && store.profile.numbers && store.profile.numbers.mobile ? "mobile" : "desk";
        // The exchange answers once the device took the call (up to 30 s): meanwhile the user is told to answer it.
        list.push(button("pull", t("incall.pull"), (c) => run(c, () => api.post(path(c, "/pull"), { device }), t(`incall.pulled_${device}`), t(`incall.pulling_${device}`)), { icon: "received" }));
      }
    }
    list.push(button("hang-up", t("call.hang_up"), hangUp, { class: "danger", icon: "close" }));
    return list;
  };

  const draw = () => {
    const focused = document.activeElement && section.contains(document.activeElement) ? document.activeElement.id : null;
    const calls = live.calls;
    if (selected && !calls.some((call) => call.id === selected)) selected = null;
    // One call: its actions show without a tap (the manual's screen); with more, the tapped one.
    const open = selected || (calls.length === 1 ? calls[0].id : null);
    if (calls.length === 0) {
      section.replaceChildren(h("div", { class: "card empty" }, h("p", {}, t(live.available ? "incall.none" : "incall.unavailable")), h("a", { href: "#/dialpad", class: "button secondary" }, t("tab.dialpad"))));
    } else {
      section.replaceChildren(
        h(
          "ul",
          { class: "call-list", "aria-label": t("incall.list") },
          calls.map((call) => {
            const state = callState(call);
            const expanded = call.id === open;
            const panel = `call-${call.id}-actions`;
            return h(
              "li",
              { class: `card call-card ${expanded ? "open" : ""}`, "data-call": call.id, "data-state": state },
              h(
                "button",
                {
                  type: "button",
                  class: "call-head",
                  id: `call-${call.id}`,
                  "aria-expanded": String(expanded),
                  "aria-controls": panel,
                  onClick: () => {
                    selected = expanded && calls.length > 1 ? null : call.id;
                    draw();
                  },
                },
                h("span", { class: "avatar", "aria-hidden": "true" }, /^[0-9+]/.test(callName(call)) ? icon("calls") : callName(call).slice(0, 1).toUpperCase()),
                h("span", { class: "grow" }, h("strong", { class: "call-name" }, callName(call)), h("small", { class: "call-state" }, h("span", { class: `state-dot ${state}`, "aria-hidden": "true" }), stateText(call))),
                duration(call),
              ),
              expanded
                ? h(
                    "div",
                    { id: panel, class: "call-actions", role: "group", "aria-label": t("incall.actions", { name: callName(call) }) },
                    call.remote_name && call.remote_number ? h("p", { class: "muted small number" }, formatNumber(call.remote_number)) : null,
                    h("div", { class: "action-grid", "aria-busy": String(pending === call.id) }, actionsOf(call)),
                    pending === call.id ? h("p", { class: "muted small", role: "status" }, waiting) : null,
                    errors.has(call.id) ? h("p", { class: "error", role: "alert" }, errors.get(call.id)) : null,
                  )
                : null,
            );
          }),
        ),
      );
    }
    const again = focused && document.getElementById(focused);
    if (again) again.focus({ preventScroll: true });
  };

  const stop = onCallsChanged(() => {
    if (!section.isConnected) return stop();
    draw();
  });
  contactsRead = null;
  try {
    await refreshCalls();
  } finally {
    draw();
  }
}
