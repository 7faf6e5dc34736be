// The screens of the manual: login, PIN setup, overview, quick settings, profile, the settings menus and
// every service screen. Calls, voicemail and contacts live in lists.js; the app settings in settings.js.

import { afterLogin, go, syncPrefs } from "./app.js";
import { ApiError, Cancelled, api, session } from "./api.js";
import { h, icon } from "./dom.js";
import { serviceScreen, toggle } from "./forms.js";
import { formatNumber, formatUntil, plural, t } from "./i18n.js";
import { listRoutes } from "./lists.js";
import { GROUPS, QUICK_SETTINGS, SERVICES, documentOf } from "./services.js";
import { settingsRoutes } from "./settings.js";
import { context, loadUser, savePrefs, store } from "./state.js";
import { errorText, modal, pinInput, stepUpReason, toast } from "./ui.js";

const available = (screen) => store.services.has(documentOf(screen)) && (screen !== "fixed-mobile-rings" || store.services.has("fixed-mobile"));

function field(id, label, attributes) {
  return [h("label", { for: id }, label), h("input", { id, name: id, ...attributes })];
}

function loginScreen(main) {
  const error = h("p", { class: "error", role: "alert", hidden: true });
  const form = h(
    "form",
    {
      class: "login",
      onSubmit: async (event) => {
        event.preventDefault();
        error.hidden = true;
        const button = form.querySelector("button");
        button.disabled = true;
        try {
          const result = await api.post("/auth/login", {
            username: form.username.value.trim(),
            password: form.password.value,
            device_name: navigator.userAgent.slice(0, 200),
          });
          session.token = result.token;
          await loadUser();
          await syncPrefs();
          afterLogin();
          go(result.pin_required ? "pin-setup" : "overview");
        } catch (failure) {
          error.hidden = false;
          error.textContent =
            failure instanceof ApiError && failure.status === 429
              ? t("login.locked")
              : failure instanceof ApiError && failure.status === 401
                ? t("login.wrong")
                : t("error.offline");
          button.disabled = false;
        }
      },
    },
    h("img", { class: "brand", src: "/icons/icon.svg", alt: "", width: 72, height: 72 }),
    h("p", {}, t("login.intro")),
    ...field("username", t("field.username"), { type: "text", autocomplete: "username", autocapitalize: "none", required: true }),
    ...field("password", t("field.password"), { type: "password", autocomplete: "current-password", required: true }),
    error,
    h("button", { type: "submit", class: "primary wide" }, t("login.submit")),
  );
  main.append(form);
}

function pinSetupScreen(main) {
  const error = h("p", { class: "error", role: "alert", hidden: true });
  const form = h(
    "form",
    {
      class: "login",
      onSubmit: async (event) => {
        event.preventDefault();
        const pin = form.querySelector("#new-pin").value;
        const again = form.querySelector("#new-pin-again").value;
        error.hidden = false;
        if (!/^[0-9]{4,8}$/.test(pin)) {
          error.textContent = t("pin.format");
          return;
        }
        if (pin !== again) {
          error.textContent = t("pin.mismatch");
          return;
        }
        try {
          await api.put("/auth/pin", { pin });
          store.profile.pin_set = true;
          toast(t("pin.saved"));
          go("overview");
        } catch (failure) {
          error.textContent = errorText(failure);
        }
      },
    },
    h("p", {}, t("pin.intro")),
    ...pinInput("new-pin", t("field.new_pin"), "new-password"),
    ...pinInput("new-pin-again", t("field.new_pin_again"), "new-password"),
    error,
    h("button", { type: "submit", class: "primary wide" }, t("pin.submit")),
  );
  main.append(form);
}

const quickDocument = (name) => api.get(`/me/services/${name}`).catch((error) => (error instanceof ApiError && error.unavailable ? null : Promise.reject(error)));
const prefetched = new Map();

// At boot, before the profile is in: the overview's switches as this device last saw them chosen, so their
// documents arrive together with the profile instead of one round trip later (bench/web/first_load.py).
export function prefetchOverview() {
  for (const name of store.prefs.quick_settings || []) {
    if (!(name in QUICK_SETTINGS)) continue;
    const pending = quickDocument(name);
    pending.catch(() => {}); // judged when used
    prefetched.set(name, { token: session.token, pending });
  }
}

async function quickToggles(container) {
  const chosen = (store.prefs.quick_settings || []).filter((name) => name in QUICK_SETTINGS && available(name));
  if (chosen.length === 0) {
    container.append(h("p", { class: "muted" }, t("quick.none")));
    return;
  }
  // A prefetched document is used once, by the first overview; later ones read afresh.
  // Only what was asked with this login: a token that turned out stale (logged out elsewhere) answered 401.
  const early = (name) => prefetched.has(name) && prefetched.get(name).token === session.token && prefetched.get(name).pending;
  const documents = await Promise.all(chosen.map((name) => early(name) || quickDocument(name)));
  prefetched.clear();
  chosen.forEach((name, index) => {
    const doc = documents[index];
    if (!doc) return;
    const fieldName = QUICK_SETTINGS[name];
    // State at a glance: where it forwards to, until when (more than the switch's on/off says).
    const detail = doc[fieldName] ? summary(name, doc) : "";
    const detailId = `quick-${name}-detail`;
    const glance = Array.isArray(detail) || (detail && detail !== t("state.on")) ? h("small", { class: "muted glance", id: detailId }, detail) : null;
    container.append(
      toggle(t(`service.${name}`), doc[fieldName], async (value) => {
        try {
          const saved = await api.put(`/me/services/${name}`, { ...doc, [fieldName]: value });
          Object.assign(doc, saved);
          toast(t(value ? "toast.on" : "toast.off", { name: t(`service.${name}`) }));
        } catch (error) {
          if (error instanceof ApiError && error.status === 422) {
            // Switching on needs more (a destination, a reason): finish it on the service's own screen.
            toast(t("quick.needs_more"));
            go(`service/${name}`);
            return;
          }
          if (!(error instanceof Cancelled)) toast(errorText(error));
          go("overview");
        }
      }, { id: `quick-${name}`, describedBy: glance ? detailId : undefined }),
      ...(glance ? [glance] : []),
    );
  });
}

async function overviewScreen(main) {
  const profile = store.profile;
  if (profile.new_voicemails > 0) {
    main.append(
      h(
        "a",
        { class: "banner", href: "#/voicemails" },
        icon("voicemail"),
        t(profile.new_voicemails === 1 ? "overview.voicemail_one" : "overview.voicemail_many", { count: profile.new_voicemails }),
      ),
    );
  }
  main.append(
    h(
      "div",
      { class: "tiles" },
      ["profile", "outgoing", "incoming"].map((path) => h("a", { class: "tile", href: `#/${path}` }, icon(path), h("span", {}, t(`screen.${path}`)))),
    ),
  );
  const quick = h("section", { class: "card quick", "aria-labelledby": "quick-title" });
  quick.append(
    h(
      "div",
      { class: "section-head" },
      h("h2", { id: "quick-title" }, t("quick.title")),
      h("a", { class: "icon-button", href: "#/quick-settings", "aria-label": t("quick.edit") }, icon("edit")),
    ),
  );
  main.append(quick);
  await quickToggles(quick);
}

// Choose and order the quick settings (§3.5): checkboxes, and a handle that drags or moves with the arrow keys.
function quickSettingsScreen(main) {
  const all = Object.keys(QUICK_SETTINGS).filter(available);
  const chosen = (store.prefs.quick_settings || []).filter((name) => all.includes(name));
  let order = [...chosen, ...all.filter((name) => !chosen.includes(name))];
  const shown = new Set(chosen);
  const live = h("p", { class: "sr-only", "aria-live": "polite" });
  const list = h("ul", { class: "reorder", "aria-label": t("quick.title") });
  const move = (name, delta, focus = true) => {
    const index = order.indexOf(name);
    const target = index + delta;
    if (target < 0 || target >= order.length) return;
    order.splice(index, 1);
    order.splice(target, 0, name);
    draw();
    live.textContent = t("quick.moved", { name: t(`service.${name}`), position: target + 1, total: order.length });
    if (focus) list.querySelector(`[data-name="${name}"] .handle`).focus();
  };
  const startDrag = (event, name) => {
    event.preventDefault();
    const handle = event.currentTarget;
    handle.setPointerCapture(event.pointerId);
    const onMove = (moveEvent) => {
      const rows = [...list.children];
      const over = rows.find((row) => {
        const box = row.getBoundingClientRect();
        return moveEvent.clientY >= box.top && moveEvent.clientY < box.bottom;
      });
      if (!over || over.dataset.name === name) return;
      const delta = order.indexOf(over.dataset.name) - order.indexOf(name);
      move(name, delta, false);
      list.querySelector(`[data-name="${name}"]`).classList.add("dragging");
    };
    const onUp = () => {
      handle.removeEventListener("pointermove", onMove);
      list.querySelectorAll(".dragging").forEach((row) => row.classList.remove("dragging"));
      list.querySelector(`[data-name="${name}"] .handle`).focus();
    };
    // Re-rendering replaces the handle, so listen on the list while the pointer is down.
    list.addEventListener("pointermove", onMove);
    window.addEventListener(
      "pointerup",
      () => {
        list.removeEventListener("pointermove", onMove);
        onUp();
      },
      { once: true },
    );
  };
  const draw = () => {
    list.replaceChildren(
      ...order.map((name) => {
        const id = `quick-${name}`;
        return h(
          "li",
          { class: "reorder-row", "data-name": name },
          h("input", {
            type: "checkbox",
            id,
            checked: shown.has(name),
            onChange: (event) => (event.target.checked ? shown.add(name) : shown.delete(name)),
          }),
          h("label", { for: id }, t(`service.${name}`)),
          h(
            "button",
            {
              type: "button",
              class: "handle",
              "aria-label": t("quick.move", { name: t(`service.${name}`) }),
              "aria-keyshortcuts": "ArrowUp ArrowDown",
              onKeydown: (event) => {
                if (event.key === "ArrowUp") {
                  event.preventDefault();
                  move(name, -1);
                } else if (event.key === "ArrowDown") {
                  event.preventDefault();
                  move(name, 1);
                }
              },
              onPointerdown: (event) => startDrag(event, name),
            },
            icon("drag"),
          ),
        );
      }),
    );
  };
  draw();
  main.append(
    h("p", { class: "muted" }, t("quick.help")),
    list,
    live,
    h(
      "div",
      { class: "actions sticky" },
      h(
        "button",
        {
          type: "button",
          class: "primary",
          onClick: async () => {
            try {
              await savePrefs({ quick_settings: order.filter((name) => shown.has(name)) });
              toast(t("toast.saved"));
              go("overview");
            } catch (error) {
              toast(errorText(error));
            }
          },
        },
        t("action.save"),
      ),
    ),
  );
  if (!store.prefsOnServer) main.append(h("p", { class: "muted small" }, t("prefs.local_only")));
}

const NUMBER_KINDS = ["company", "direct", "department", "mobile", "call_center"];

// Biometric step-up (SPEC A3): switching it on registers this device's passkey (after the PIN), off removes it.
async function passkeyCard() {
  const { localPasskey, passkeysSupported, registerPasskey, removePasskey } = await import("./passkeys.js");
  const card = h("section", { class: "card" });
  if (!passkeysSupported()) {
    card.append(toggle(t("profile.passkey"), false, () => {}, { id: "passkey-switch", disabled: true, describedBy: "passkey-note" }));
    card.append(h("small", { id: "passkey-note", class: "muted pad" }, t("profile.passkey_unsupported")));
    return card;
  }
  // A passkey this device remembers but the exchange no longer has (removed elsewhere) counts as off.
  let on = Boolean(localPasskey());
  if (on) {
    try {
      const listed = await api.get("/me/passkeys");
      on = listed.credentials.some((item) => item.id === localPasskey().id);
      if (!on) await removePasskey();
    } catch (error) {
      if (!(error instanceof ApiError && error.unavailable)) throw error;
      on = false;
    }
  }
  card.append(
    toggle(
      t("profile.passkey"),
      on,
      async (value) => {
        const input = card.querySelector("#passkey-switch");
        try {
          if (value) {
            stepUpReason.key = "passkey";
            try {
              await registerPasskey();
            } finally {
              stepUpReason.key = "number";
            }
            toast(t("profile.passkey_on"));
          } else {
            await removePasskey();
            toast(t("profile.passkey_off"));
          }
        } catch (error) {
          input.checked = !value;
          if (!(error instanceof Cancelled)) toast(error instanceof ApiError ? errorText(error) : t("profile.passkey_failed"));
        }
      },
      { id: "passkey-switch", describedBy: "passkey-note" },
    ),
    h("small", { id: "passkey-note", class: "muted pad" }, t("profile.passkey_help")),
  );
  return card;
}

// Name, extension and numbers (as a Dutch user reads them, never broken inside one): Mijn profiel, and the
// offline start screen from this device's copy.
export function profileFacts(profile) {
  const name = `${profile.first_name || ""} ${profile.last_name || ""}`.trim();
  const numbers = profile.numbers || {};
  return h(
    "section",
    { class: "card" },
    h("h2", {}, name || profile.username),
    h("dl", { class: "facts" }, [
      h("dt", {}, t("field.username")),
      h("dd", {}, profile.username),
      h("dt", {}, t("field.extension")),
      h("dd", {}, profile.extension || "—"),
      ...NUMBER_KINDS.filter((kind) => numbers[kind]).flatMap((kind) => [
        h("dt", {}, t(`number.${kind}`)),
        h("dd", {}, h("a", { class: "number", href: `tel:${numbers[kind]}` }, formatNumber(numbers[kind]))),
      ]),
    ]),
  );
}

async function profileScreen(main) {
  const profile = store.profile;
  const passkeySection = await passkeyCard();
  main.append(
    profileFacts(profile),
    h(
      "section",
      { class: "card menu" },
      h("button", { type: "button", class: "menu-item", onClick: changePassword }, t("profile.change_password")),
      h("button", { type: "button", class: "menu-item", onClick: changePin }, t("profile.change_pin")),
    ),
    passkeySection,
    h(
      "section",
      { class: "card", "aria-labelledby": "privacy-title" },
      h("h2", { id: "privacy-title" }, t("profile.privacy")),
      h("p", { class: "muted" }, t("profile.privacy_text")),
      h("a", { href: "/terms.html#nl-privacy" }, t("app.privacy_statement")),
    ),
    h("button", { type: "button", class: "danger wide", onClick: () => import("./app.js").then((m) => m.logOut()) }, t("action.logout")),
  );
}

function formDialog(title, fields, submit) {
  return modal(title, (close) => {
    const error = h("p", { class: "error", role: "alert", hidden: true });
    const form = h(
      "form",
      {
        onSubmit: async (event) => {
          event.preventDefault();
          try {
            await submit(form);
            close(true);
          } catch (failure) {
            error.hidden = false;
            error.textContent = failure instanceof ApiError || failure instanceof Cancelled ? errorText(failure) : failure.message;
          }
        },
      },
      ...fields,
      error,
      h(
        "div",
        { class: "actions" },
        h("button", { type: "button", class: "secondary", onClick: () => close(false) }, t("action.cancel")),
        h("button", { type: "submit", class: "primary" }, t("action.save")),
      ),
    );
    return form;
  });
}

async function changePassword() {
  const done = await formDialog(
    t("profile.change_password"),
    [
      ...field("current-password", t("field.current_password"), { type: "password", autocomplete: "current-password", required: true }),
      ...field("new-password", t("field.new_password"), { type: "password", autocomplete: "new-password", required: true }),
    ],
    (form) =>
      api.put("/auth/password", {
        current_password: form.querySelector("#current-password").value,
        new_password: form.querySelector("#new-password").value,
      }),
  );
  if (done) toast(t("toast.saved"));
}

async function changePin() {
  const done = await formDialog(
    t("profile.change_pin"),
    [
      ...pinInput("current-pin", t("field.current_pin")),
      ...pinInput("changed-pin", t("field.new_pin"), "new-password"),
      ...pinInput("changed-pin-again", t("field.changed_pin_again"), "new-password"),
    ],
    (form) => {
      const pin = form.querySelector("#changed-pin").value;
      if (pin !== form.querySelector("#changed-pin-again").value) throw new Error(t("pin.mismatch"));
      return api.put("/auth/pin", { current_pin: form.querySelector("#current-pin").value, pin });
    },
  );
  if (done) toast(t("pin.saved"));
}

// Night mode as it is in effect: the user's own (set by the administrator for this user) or the company's.
export function nightState(doc) {
  if (doc && doc.night_mode) return t("night.on_user");
  if (store.profile && store.profile.company_night_mode) return t("night.on_company");
  return t("state.off");
}

// The current value of a service at a glance ("Aan · 06 1234 5678", "Vakantie tot 23:59"), not only Aan/Uit.
export function summary(screen, doc) {
  if (!doc) return "";
  const on = (...detail) => (detail.length ? [t("state.on"), " · ", ...detail] : t("state.on"));
  const number = (value) => h("span", { class: "number" }, formatNumber(value));
  if (screen === "fixed-mobile-rings") return `${t(`opt.fixed_rings.${doc.fixed_rings}`)}`;
  if (screen === "outgoing-identity") {
    const own = (store.profile && store.profile.numbers[doc.fixed]) || null;
    return own ? [t(`opt.fixed.${doc.fixed}`), " · ", number(own)] : t(`opt.fixed.${doc.fixed}`);
  }
  if (screen === "call-method") return t(`opt.method.${doc.method}`);
  if (screen === "anonymous") return t(doc.desk ? "state.on" : "state.off");
  if (screen === "night-forwarding") return nightState(doc);
  if (screen === "anywhere") return plural("summary.locations", doc.locations.length);
  if (screen === "personal-assistant" && doc.active) {
    const presence = t(`opt.presence.${doc.presence}`);
    return doc.until ? t("summary.until", { what: presence, when: formatUntil(doc.until) }) : presence;
  }
  if (screen === "simultaneous-ring" && doc.active) return on(plural("summary.numbers", doc.targets.length));
  if (screen === "call-center-agent") return t(`opt.state.${doc.state}`);
  if (screen === "call-recording") return t(`opt.mode.${doc.mode}`);
  if ("active" in doc && doc.active && doc.to_voicemail) return on(t("summary.to_voicemail"));
  if ("active" in doc && doc.active && doc.destination) return on(number(doc.destination));
  if ("active" in doc) return t(doc.active ? "state.on" : "state.off");
  return "";
}

async function serviceMenu(main, group) {
  const screens = GROUPS[group].filter(available);
  if (screens.length === 0) {
    main.append(h("p", { class: "empty" }, t("menu.nothing")));
    return;
  }
  const documents = await Promise.all(screens.map((screen) => api.get(`/me/services/${documentOf(screen)}`).catch(() => null)));
  if (group === "incoming") {
    main.append(h("a", { class: "card explain-link", href: "#/explain" }, t("screen.explain")));
  }
  main.append(
    h(
      "ul",
      { class: "card menu" },
      screens.map((screen, index) =>
        h(
          "li",
          {},
          h(
            "a",
            { class: "menu-item", href: `#/service/${screen}` },
            h("span", {}, t(`service.${screen}`)),
            h("span", { class: "muted state" }, documents[index] ? summary(screen, documents[index]) : t("state.unavailable")),
          ),
        ),
      ),
    ),
  );
}

// The exchange's routing plan (its steps, not its English sentences) as a nested list in the user's language.
function planList(steps) {
  const via = (step) => (step.service ? ` (${t(`service.${step.service}`)})` : "");
  const number = (value) => h("span", { class: "number" }, formatNumber(value));
  const item = (step) => {
    if (step.action === "forward") return h("li", {}, t("plan.forward"), " ", number(step.destination), via(step));
    if (step.action === "voicemail") return h("li", {}, t("plan.voicemail", { cause: t(`plan.cause.${step.cause}`) }));
    if (step.action === "reject") return h("li", {}, t("plan.reject"), via(step));
    if (step.action === "hangup") return h("li", {}, t("plan.hangup"), via(step));
    if (step.action === "ring_splash") return h("li", {}, t("plan.ring_splash"), via(step));
    if (step.action === "personal_assistant") {
      const presence = t(`opt.presence.${step.presence}`);
      return h(
        "li",
        {},
        step.until ? t("summary.until", { what: `${t("service.personal-assistant")}: ${presence}`, when: formatUntil(step.until) }) : `${t("service.personal-assistant")}: ${presence}`,
        planList([...(step.on_zero ? [step.on_zero] : []), step.afterwards]),
      );
    }
    if (step.action === "ring") {
      const branches = [["on_busy", "plan.if_busy"], ["on_no_answer", "plan.if_no_answer"], ["on_not_reachable", "plan.if_not_reachable"]]
        .filter(([name]) => step[name] && step[name].length)
        .map(([name, key]) => h("li", {}, t(key), planList(step[name])));
      return h(
        "li",
        {},
        step.timeout_seconds ? t("plan.ring_for", { seconds: step.timeout_seconds }) : t("plan.ring"),
        h("ul", {}, step.targets.map((target) => h("li", {}, t(`plan.target.${target.kind}`), target.number ? [" ", number(target.number)] : null))),
        branches.length ? h("ul", { class: "branches" }, branches) : null,
      );
    }
    return h("li", {}, step.action);
  };
  return h("ol", { class: "plan" }, steps.map(item));
}

// "What happens when I am called?": the exchange's own routing plan for a test call, shown from its steps.
function explainScreen(main) {
  const output = h("section", { class: "card", "aria-live": "polite", hidden: true });
  const fixedMobile = store.services.has("fixed-mobile") && store.profile.numbers.mobile;
  const form = h(
    "form",
    {
      class: "service-form",
      onSubmit: async (event) => {
        event.preventDefault();
        const query = new URLSearchParams();
        const caller = form.querySelector("#explain-caller").value.trim();
        if (caller) query.set("caller", caller);
        if (form.querySelector("#explain-busy").checked) query.set("on_call", "true");
        const called = form.querySelector("input[name=called]:checked");
        if (called) query.set("called", called.value);
        output.hidden = false;
        try {
          const result = await api.get(`/me/routing/explain?${query}`);
          output.replaceChildren(
            h("h2", {}, t("explain.result")),
            planList(result.plan.steps),
          );
          output.scrollIntoView({ block: "start" });
        } catch (error) {
          if (error instanceof ApiError && error.unavailable) output.replaceChildren(h("p", {}, t("not_available")));
          else output.replaceChildren(h("p", { class: "error", role: "alert" }, errorText(error)));
        }
      },
    },
    h("p", { class: "muted" }, t("explain.intro")),
    h("div", { "data-field": "caller" }, h("div", { class: "field" }, h("label", { for: "explain-caller" }, t("explain.caller")), h("input", { id: "explain-caller", type: "tel", inputmode: "tel", placeholder: "+31 6 12345678" }))),
    h("div", { "data-field": "on_call" }, toggle(t("explain.on_call"), false, () => {}, { id: "explain-busy" })),
    fixedMobile
      ? h(
          "fieldset",
          { class: "field", "data-field": "called" },
          h("legend", {}, t("explain.called")),
          ["fixed", "mobile"].map((value) =>
            h("div", { class: "radio-row" }, h("input", { type: "radio", name: "called", id: `called-${value}`, value, checked: value === "fixed" }), h("label", { for: `called-${value}` }, t(`explain.called.${value}`))),
          ),
        )
      : null,
    h("div", { class: "actions" }, h("button", { type: "submit", class: "primary wide" }, t("explain.run"))),
  );
  main.append(form, output);
}

async function settingsMenu(main) {
  const items = [
    ["profile", true],
    ["incoming", GROUPS.incoming.some(available)],
    ["outgoing", GROUPS.outgoing.some(available)],
    ["service/voicemail", available("voicemail")],
    ["service/call-recording", available("call-recording")],
    ["service/call-center-agent", available("call-center-agent")],
    ["service/fixed-mobile", available("fixed-mobile")],
    ["app-settings", true],
    ["help", true],
  ];
  const shown = items.filter(([, on]) => on).map(([path]) => path);
  // The services' current values at a glance ("Beschikbaar", "Aan"), read together.
  const services = shown.filter((path) => path.startsWith("service/")).map((path) => path.slice("service/".length));
  const documents = await Promise.all(services.map((name) => api.get(`/me/services/${name}`).catch(() => null)));
  const value = (path) => {
    const index = services.indexOf(path.replace("service/", ""));
    return index >= 0 && documents[index] ? summary(services[index], documents[index]) : null;
  };
  main.append(
    h(
      "ul",
      { class: "card menu" },
      shown.map((path) =>
        h(
          "li",
          {},
          h(
            "a",
            { class: "menu-item", href: `#/${path}` },
            h("span", {}, t(`screen.${path.replace("service/", "")}`)),
            value(path) ? h("span", { class: "muted state" }, value(path)) : null,
          ),
        ),
      ),
    ),
  );
}

const BACK = {};
for (const [group, screens] of Object.entries(GROUPS)) for (const screen of screens) BACK[screen] = group;

export const routes = {
  login: { title: "screen.login", bare: true, render: loginScreen },
  "pin-setup": { title: "screen.pin-setup", bare: true, render: pinSetupScreen },
  overview: { title: "screen.overview", live: true, render: overviewScreen },
  "quick-settings": { title: "screen.quick-settings", back: "overview", tab: "overview", render: quickSettingsScreen },
  profile: { title: "screen.profile", back: "settings", tab: "settings", render: profileScreen },
  incoming: { title: "screen.incoming", back: "settings", tab: "settings", live: true, render: (main) => serviceMenu(main, "incoming") },
  outgoing: { title: "screen.outgoing", back: "settings", tab: "settings", live: true, render: (main) => serviceMenu(main, "outgoing") },
  settings: { title: "screen.settings", render: settingsMenu },
  explain: { title: "screen.explain", back: "incoming", tab: "settings", render: explainScreen },
  service: {
    title: (screen) => t(`service.${screen}`),
    // The agent's state changes by itself (wrap-up after a call-center call): that screen follows live events.
    live: (screen) => screen === "call-center-agent",
    back: "settings",
    tab: "settings",
    render: async (main, screen) => {
      if (!SERVICES[screen] || !available(screen)) {
        const { notAvailable } = await import("./forms.js");
        main.append(notAvailable());
        return;
      }
      const back = document.querySelector(".topbar .back");
      if (back && BACK[screen] && !back.getAttribute("href").endsWith("overview")) back.setAttribute("href", `#/${BACK[screen]}`);
      const intro = t(`intro.${screen}`);
      if (intro !== `intro.${screen}`) main.append(h("p", { class: "muted" }, intro));
      // The user's own night switch may be off while the company's is on: say what is in effect, and who set it.
      if (screen === "night-forwarding" && store.profile.company_night_mode) main.append(h("p", { class: "notice" }, t("night.company_notice")));
      await serviceScreen(main, screen, context());
      if (screen === "voicemail") {
        const { greetingsSection } = await import("./lists.js");
        await greetingsSection(main);
      }
    },
  },
  ...listRoutes,
  ...settingsRoutes,
};
