// Shared pieces of the screens: toasts, modal dialogs (step-up, confirm) with focus kept inside.

import { ApiError, Cancelled, api } from "./api.js";
import { h, uid } from "./dom.js";
import { t } from "./i18n.js";

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

// Step-up methods, tried in order. A passkey (WebAuthn) method slots in before the PIN later:
// { available: async () => bool, run: async () => void } — run resolves once the server granted the step-up.
export const stepUpMethods = [];

async function pinStepUp() {
  const done = await modal(t("stepup.title"), (close) => {
    const error = h("p", { class: "error", role: "alert", hidden: true });
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
            error.hidden = false;
            error.textContent =
              failure instanceof ApiError && failure.status === 429 ? t("stepup.locked") : t("stepup.wrong");
            form.querySelector("input").select();
          }
        },
      },
      h("p", {}, t("stepup.text")),
      ...pinInput("stepup-pin", t("field.pin")),
      error,
      h(
        "div",
        { class: "actions" },
        h("button", { type: "button", class: "secondary", onClick: () => close(false) }, t("action.cancel")),
        h("button", { type: "submit", class: "primary" }, t("action.confirm")),
      ),
    );
    return form;
  });
  if (!done) throw new Cancelled("step-up cancelled");
}

export async function stepUp() {
  for (const method of stepUpMethods) {
    if (await method.available()) {
      try {
        await method.run();
        return;
      } catch {
        /* fall back to the PIN */
      }
    }
  }
  await pinStepUp();
}

export { pinInput };
