// Placing calls (SPEC D1, D2, D9): which of the user's numbers the callee sees, how the call is set up, and the
// dialpad. The exchange places the call (POST /me/calls); where it does not offer that, the phone's own dialer
// takes over through a tel: link, which is also what "call via the mobile" means on a phone.

import { ApiError, Cancelled, api } from "./api.js";
import { h, icon, uid } from "./dom.js";
import { t } from "./i18n.js";
import { store } from "./state.js";
import { errorText, modal, toast } from "./ui.js";

const KINDS = ["company", "direct", "department", "mobile", "call_center"];
const FIXED = new Set(["company", "direct", "department", "call_center"]);
const METHODS = ["via_exchange", "callback", "via_mobile"];

// The identities the user may call with (D2): the mobile number only with fixed-mobile, the call-center number
// only with the top call-center licence.
export function identities() {
  const numbers = (store.profile && store.profile.numbers) || {};
  const licences = new Set((store.profile && store.profile.licences) || []);
  return KINDS.filter(
    (kind) =>
      numbers[kind] &&
      (kind !== "mobile" || store.services.has("fixed-mobile")) &&
      (kind !== "call_center" || licences.has("call-center-premium")),
  ).map((kind) => ({ kind, number: numbers[kind] }));
}

async function serviceDocument(name) {
  if (!store.services.has(name)) return null;
  try {
    return await api.get(`/me/services/${name}`);
  } catch (error) {
    if (error instanceof ApiError && error.unavailable) return null;
    throw error;
  }
}

// The identity calls go out with now: the fixed choice, or the mobile number when the user set that.
export function identityInUse(doc) {
  const choices = identities();
  const wanted = doc && doc.mobile === "mobile" && store.services.has("fixed-mobile") ? "mobile" : doc && doc.fixed;
  return choices.find((choice) => choice.kind === wanted) || choices.find((choice) => choice.kind === "direct") || choices[0] || null;
}

// What "don't ask again" and the dialpad's menu store: the fixed identity, or "always the mobile number".
function identityChange(doc, kind) {
  return kind === "mobile" ? { ...doc, mobile: "mobile" } : { ...doc, fixed: kind, mobile: doc.mobile === "mobile" ? "same_as_fixed" : doc.mobile };
}

function radioGroup(legend, name, options, selected) {
  return h(
    "fieldset",
    { class: "field" },
    h("legend", {}, legend),
    options.map((option) => {
      const id = uid(name);
      return h(
        "div",
        { class: "radio-row" },
        h("input", { type: "radio", id, name, value: option.value, checked: option.value === selected }),
        h("label", { for: id }, option.label, option.detail ? h("small", { class: "muted" }, option.detail) : null),
      );
    }),
  );
}

const identityOptions = () => identities().map((choice) => ({ value: choice.kind, label: t(`number.${choice.kind}`), detail: choice.number }));
const methodOptions = () =>
  METHODS.filter((method) => method !== "via_mobile" || (store.profile.numbers || {}).mobile).map((method) => ({ value: method, label: t(`opt.method.${method}`) }));

// The D2 question: which number, and (with "always ask") which call method. Resolves {identity, method, remember}.
function askHowToCall(number, { identity, method, askIdentity, askMethod }) {
  return modal(t("call.choose_title"), (close) => {
    const form = h(
      "form",
      {
        onSubmit: (event) => {
          event.preventDefault();
          const value = (name) => (form.querySelector(`input[name=${name}]:checked`) || {}).value;
          close({
            identity: askIdentity ? value("call-identity") : identity,
            method: askMethod ? value("call-method") : method,
            remember: askIdentity && form.querySelector("#call-remember").checked,
          });
        },
      },
      h("p", {}, t("call.choose_text", { number })),
      askIdentity ? radioGroup(t("call.identity"), "call-identity", identityOptions(), identity) : null,
      askIdentity ? h("div", { class: "radio-row" }, h("input", { type: "checkbox", id: "call-remember" }), h("label", { for: "call-remember" }, t("call.dont_ask"))) : null,
      askMethod ? radioGroup(t("call.method"), "call-method", methodOptions(), "via_exchange") : null,
      h(
        "div",
        { class: "actions" },
        h("button", { type: "button", class: "secondary", onClick: () => close(null) }, t("action.cancel")),
        h("button", { type: "submit", class: "primary" }, t("action.call")),
      ),
    );
    return form;
  });
}

// The phone's dialer: a real link click, so the browser hands tel: to the dialer as it does for any link.
function dialLocally(number) {
  const link = h("a", { href: `tel:${number.replace(/[^0-9+*#]/g, "")}`, hidden: true });
  document.body.append(link);
  link.click();
  link.remove();
}

// POST /me/calls answers that the exchange does not place calls: no such endpoint (404/405), an older
// exchange's 503, or a 409 whose `code` says this node runs no call processing or has no access number for "via
// the exchange". Other 409 codes are for the user to act on (nothing_to_call_back, callback_under_way,
// no_mobile_number): those are shown, not dialled around.
const CANNOT_PLACE = new Set(["no_call_processing", "no_access_number"]);
function exchangeCannotPlace(error) {
  if (!(error instanceof ApiError)) return false;
  if (error.unavailable || error.status === 503) return true;
  return error.status === 409 && CANNOT_PLACE.has(error.code);
}

// The exchange cannot place the call as asked: say why and what calling from the mobile means, and let the user
// choose (the mobile's dialer, a callback where the exchange can do that, or not at all).
function askFallback(error, method) {
  const callbackPossible = error.code === "no_access_number" && method !== "callback";
  return modal(t("call.fallback_title"), (close) =>
    h(
      "div",
      {},
      h("p", {}, errorText(error)),
      h("p", {}, t("call.fallback_text")),
      h(
        "div",
        { class: "actions stacked" },
        h("button", { type: "button", class: "primary", onClick: () => close("mobile") }, t("call.fallback_mobile")),
        callbackPossible ? h("button", { type: "button", class: "secondary", onClick: () => close("callback") }, t("call.fallback_callback")) : null,
        h("button", { type: "button", class: "secondary", onClick: () => close(null) }, t("action.cancel")),
      ),
    ),
  );
}

// Call `number`. From recents, contacts and voicemail the user is asked for the identity (unless they said not
// to); from the dialpad (`ask: false`) the identity shown there is used.
export async function placeCall(number, { ask = true } = {}) {
  try {
    const [identityDoc, methodDoc] = await Promise.all([serviceDocument("outgoing-identity"), serviceDocument("call-method")]);
    let identity = identityInUse(identityDoc);
    identity = identity && identity.kind;
    let method = methodDoc ? methodDoc.method : "via_exchange";
    const askIdentity = ask && Boolean(identityDoc && identityDoc.ask_each_call) && identities().length > 1;
    const askMethod = method === "ask";
    if (askIdentity || askMethod) {
      const answer = await askHowToCall(number, { identity, method, askIdentity, askMethod });
      if (!answer) return;
      ({ identity, method } = answer);
      if (answer.remember) {
        await api.put("/me/services/outgoing-identity", { ...identityChange(identityDoc, identity), ask_each_call: false });
        toast(t("call.remembered"));
      }
    }
    if (method === "via_mobile") {
      dialLocally(number);
      return;
    }
    let placed;
    try {
      placed = await api.post("/me/calls", { to: number, identity, method });
    } catch (error) {
      // An exchange that cannot place this call at all: the phone's dialer could (the callee then sees the
      // mobile number, not the chosen one), so the user is told and chooses; nothing is dialled behind their back.
      if (exchangeCannotPlace(error)) {
        const choice = await askFallback(error, method);
        if (choice === "mobile") dialLocally(number);
        else if (choice === "callback") {
          await api.post("/me/calls", { to: number, identity, method: "callback" });
          toast(t("call.calling_back"));
        }
        return;
      }
      throw error; // e.g. 409 "nothing to call you back on", "a callback is already under way": the toast says why
    }
    if (placed && placed.access_number) {
      // Via the exchange: the mobile dials the exchange's access number, which connects to the armed number
      // with the chosen identity.
      dialLocally(placed.access_number);
      toast(t("call.via_access", { number: placed.to }));
    } else {
      toast(t("call.calling_back")); // the call shows under Recent once the exchange reports it (call.started)
    }
  } catch (error) {
    if (!(error instanceof Cancelled)) toast(errorText(error));
  }
}

// A link that calls: a tel: link without JavaScript, the exchange with it.
export function callLink(number, attributes, ...children) {
  return h(
    "a",
    {
      ...attributes,
      href: `tel:${number}`,
      onClick: (event) => {
        event.preventDefault();
        placeCall(number);
      },
    },
    ...children,
  );
}

const KEYS = [
  ["1", ""],
  ["2", "ABC"],
  ["3", "DEF"],
  ["4", "GHI"],
  ["5", "JKL"],
  ["6", "MNO"],
  ["7", "PQRS"],
  ["8", "TUV"],
  ["9", "WXYZ"],
  ["*", ""],
  ["0", "+"],
  ["#", ""],
];

// D1: the dialpad, with the identity in use; its menu changes the identity or adds the number to the personal list.
export async function dialpadScreen(main) {
  const { callTabs } = await import("./lists.js");
  main.append(callTabs("dialpad"));
  let doc = await serviceDocument("outgoing-identity");
  const shown = h("p", { class: "identity", id: "dial-identity", "aria-live": "polite" });
  const drawIdentity = () => {
    const current = identityInUse(doc);
    shown.replaceChildren(
      h("span", { class: "muted" }, t("dialpad.calling_as")),
      " ",
      current ? h("strong", {}, `${t(`number.${current.kind}`)} ${current.number}`) : h("strong", {}, "—"),
    );
  };
  drawIdentity();
  const input = h("input", { id: "dial-number", type: "tel", inputmode: "tel", autocomplete: "tel", class: "dial-number", "aria-label": t("dialpad.number") });
  const press = (digit) => {
    input.value += digit;
    input.dispatchEvent(new Event("input"));
  };
  const menuButton = h(
    "button",
    {
      type: "button",
      class: "icon-button",
      "aria-label": t("dialpad.menu"),
      "aria-haspopup": "dialog",
      onClick: async () => {
        const choice = await modal(t("dialpad.menu"), (close) =>
          h(
            "div",
            { class: "card menu" },
            doc && identities().length > 1 ? h("button", { type: "button", class: "menu-item", onClick: () => close("identity") }, t("dialpad.change_identity")) : null,
            h("button", { type: "button", class: "menu-item", onClick: () => close("add") }, t("dialpad.add_number")),
            h("button", { type: "button", class: "menu-item", onClick: () => close(null) }, t("action.cancel")),
          ),
        );
        if (choice === "identity") {
          const picked = await modal(t("dialpad.change_identity"), (close) => {
            const form = h(
              "form",
              { onSubmit: (event) => (event.preventDefault(), close(form.querySelector("input[name=dial-identity]:checked").value)) },
              radioGroup(t("call.identity"), "dial-identity", identityOptions(), (identityInUse(doc) || {}).kind),
              h("div", { class: "actions" }, h("button", { type: "button", class: "secondary", onClick: () => close(null) }, t("action.cancel")), h("button", { type: "submit", class: "primary" }, t("action.save"))),
            );
            return form;
          });
          if (!picked) return;
          try {
            doc = await api.put("/me/services/outgoing-identity", identityChange(doc, picked));
            drawIdentity();
            toast(t("toast.saved"));
          } catch (error) {
            if (!(error instanceof Cancelled)) toast(errorText(error));
          }
        } else if (choice === "add") {
          const { personalDialog } = await import("./lists.js");
          if (await personalDialog({ number: input.value.trim() })) toast(t("toast.saved"));
        }
      },
    },
    "⋮",
  );
  document.getElementById("topbar-actions").append(menuButton);
  const call = h("button", { type: "submit", class: "primary call-button", "aria-label": t("action.call") }, icon("calls"));
  const form = h(
    "form",
    {
      class: "dialpad",
      onSubmit: (event) => {
        event.preventDefault();
        const number = input.value.trim();
        if (!number) {
          input.focus();
          return;
        }
        placeCall(number, { ask: false });
      },
    },
    shown,
    h("div", { class: "dial-display" }, input, h("button", { type: "button", class: "icon-button", "aria-label": t("dialpad.erase"), onClick: () => (input.value = input.value.slice(0, -1)) }, "⌫")),
    h(
      "div",
      { class: "keys" },
      KEYS.map(([digit, letters]) =>
        h("button", { type: "button", class: "key", onClick: () => press(digit) }, h("span", {}, digit), h("small", { "aria-hidden": "true" }, letters || " ")),
      ),
    ),
    h("div", { class: "dial-actions" }, call),
  );
  main.append(form);
}
