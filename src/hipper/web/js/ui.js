// Shared pieces of the screens: toasts, modal dialogs (step-up, confirm) with focus kept inside.

import { ApiError, Cancelled, api } from "./api.js";
import { h, uid } from "./dom.js";
import { t } from "./i18n.js";

// One field's error in the user's language, from its code (docs/api.md), e.g. "too_long" with its bound.
export function fieldText(item) {
  const key = `error.code.${item.code}`;
  const text = t(key, item.limits);
  return text === key ? t("error.code.invalid") : text;
}

// What went wrong, in the user's language: never the exchange's English `detail`.
export function errorText(error) {
  if (error instanceof Cancelled) return t("stepup.cancelled");
  if (!(error instanceof ApiError)) return t("error.generic");
  if (error.status === 0) return t("error.offline");
  const fields = Object.values(error.fields);
  if (fields.length) return fields.map(fieldText).join(" ");
  const key = `error.code.${error.code}`;
  if (error.code && t(key) !== key) return t(key);
  return t("error.generic");
}

export function toast(message) {
  const region = document.getElementById("toast");
  region.textContent = message;
  region.classList.add("show");
  clearTimeout(region._timer);
  region._timer = setTimeout(() => region.classList.remove("show"), 2500);
}

// A modal <dialog>: showModal() traps focus and Escape closes it; focus returns to the opener.
export function modal(title, build) {
  return new Promise((resolve) => {
    const opener = document.activeElement;
    const titleId = uid("dlg");
    const dialog = h("dialog", { "aria-labelledby": titleId, class: "dialog" });
    const close = (value) => {
      dialog.close();
      dialog.remove();
      if (opener && opener.focus) opener.focus();
      resolve(value);
    };
    dialog.addEventListener("cancel", (event) => {
      event.preventDefault();
      close(undefined);
    });
    dialog.append(h("h2", { id: titleId }, title), build(close));
    document.body.append(dialog);
    dialog.showModal();
    const first = dialog.querySelector("input, button.primary");
    if (first) first.focus();
  });
}

export function confirmDialog(title, text, confirmLabel) {
  return modal(title, (close) =>
    h(
      "div",
      {},
      h("p", {}, text),
      h(
        "div",
        { class: "actions" },
        h("button", { type: "button", class: "secondary", onClick: () => close(false) }, t("action.cancel")),
        h("button", { type: "button", class: "primary danger-bg", onClick: () => close(true) }, confirmLabel),
      ),
    ),
  );
}

function pinInput(id, label, autocomplete = "off") {
  return [
    h("label", { for: id }, label),
    h("input", {
      id,
      name: id,
      type: "password",
      inputmode: "numeric",
      pattern: "[0-9]*",
      autocomplete,
      minlength: 4,
      maxlength: 8,
      required: true,
    }),
  ];
}

// Step-up methods offered before the PIN: { label, available: async () => bool, run: async () => void }, where
// run resolves once the server granted the step-up. The passkey (fingerprint / Face ID) is the first.
export const stepUpMethods = [
  {
    label: () => t("stepup.passkey"),
    available: async () => {
      const { localPasskey, passkeysSupported } = await import("./passkeys.js");
      return passkeysSupported() && Boolean(localPasskey());
    },
    run: async () => (await import("./passkeys.js")).passkeyStepUp(),
  },
];

// One dialog: the other methods as buttons first, the PIN below as the fallback.
async function stepUpDialog(methods) {
  const done = await modal(t(methods.length ? "stepup.title_any" : "stepup.title"), (close) => {
    const error = h("p", { class: "error", role: "alert", hidden: true });
    const fail = (message) => {
      error.hidden = false;
      error.textContent = message;
    };
    const form = h(
      "form",
      {
        onSubmit: async (event) => {
          event.preventDefault();
          const pin = form.querySelector("input").value;
          try {
            await api.post("/auth/step-up", { pin });
            close(true);
          } catch (failure) {
            fail(failure instanceof ApiError && failure.status === 429 ? t("stepup.locked") : t("stepup.wrong"));
            form.querySelector("input").select();
          }
        },
      },
      h("p", {}, t(methods.length ? "stepup.text_any" : "stepup.text")),
      methods.map((method) =>
        h(
          "button",
          {
            type: "button",
            class: "primary wide",
            onClick: async (event) => {
              const button = event.currentTarget;
              button.disabled = true;
              try {
                await method.run();
                close(true);
              } catch {
                fail(t("stepup.passkey_failed"));
                form.querySelector("input").focus();
              } finally {
                button.disabled = false;
              }
            },
          },
          method.label(),
        ),
      ),
      ...pinInput("stepup-pin", t(methods.length ? "stepup.or_pin" : "field.pin")),
      error,
      h(
        "div",
        { class: "actions" },
        h("button", { type: "button", class: "secondary", onClick: () => close(false) }, t("action.cancel")),
        h("button", { type: "submit", class: methods.length ? "secondary" : "primary" }, t("action.confirm")),
      ),
    );
    return form;
  });
  if (!done) throw new Cancelled("step-up cancelled");
}

export async function stepUp() {
  const offered = [];
  for (const method of stepUpMethods) {
    try {
      if (await method.available()) offered.push(method);
    } catch {
      /* a method that cannot tell is not offered */
    }
  }
  await stepUpDialog(offered);
}

export { pinInput };
