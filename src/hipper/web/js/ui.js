// Shared pieces of the screens: toasts, modal dialogs (step-up, confirm) with focus kept inside.

import { ApiError, Cancelled, api } from "./api.js";
import { h, icon, uid } from "./dom.js";
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

const clock = (seconds) => (Number.isFinite(seconds) ? `${Math.floor(seconds / 60)}:${String(Math.floor(seconds % 60)).padStart(2, "0")}` : "0:00");

// An audio player in the app's own look (the browser's controls differ per platform): play/pause, a position
// slider and the time. The <audio> element does the playing; `.audio` gives it to callers (share, play()).
export function audioPlayer(src, label) {
  const audio = h("audio", { src, preload: "metadata" });
  const button = h("button", { type: "button", class: "icon-button play", "aria-label": t("player.play") }, icon("play"));
  const slider = h("input", { type: "range", min: 0, max: 100, step: 0.1, value: 0, class: "seek", "aria-label": t("player.position") });
  const time = h("span", { class: "muted small time" }, "0:00");
  const show = () => {
    const playing = !audio.paused;
    button.replaceChildren(icon(playing ? "pause" : "play"));
    button.setAttribute("aria-label", t(playing ? "player.pause" : "player.play"));
    slider.max = Number.isFinite(audio.duration) ? audio.duration : 100;
    slider.value = audio.currentTime;
    slider.setAttribute("aria-valuetext", `${clock(audio.currentTime)} / ${clock(audio.duration)}`);
    time.textContent = `${clock(audio.currentTime)} / ${clock(audio.duration)}`;
  };
  for (const event of ["play", "pause", "timeupdate", "loadedmetadata", "ended"]) audio.addEventListener(event, show);
  button.addEventListener("click", () => (audio.paused ? audio.play().catch(() => {}) : audio.pause()));
  slider.addEventListener("input", () => (audio.currentTime = Number(slider.value)));
  const player = h("div", { class: "player", role: "group", "aria-label": label }, audio, button, slider, time);
  player.audio = audio;
  return player;
}

// A bottom sheet asking for one line of text (instead of the browser's prompt()): the text, or null.
export function promptDialog(title, label, value = "", maxlength = 100) {
  return modal(title, (close) => {
    const form = h(
      "form",
      { onSubmit: (event) => { event.preventDefault(); close(form.querySelector("input").value.trim() || null); } },
      h("label", { for: "prompt-input" }, label),
      h("input", { id: "prompt-input", type: "text", value, maxlength, required: true }),
      h(
        "div",
        { class: "actions" },
        h("button", { type: "button", class: "secondary", onClick: () => close(null) }, t("action.cancel")),
        h("button", { type: "submit", class: "primary" }, t("action.save")),
      ),
    );
    return form;
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

// Why the step-up is asked: a phone number is being changed (the default), or a passkey is being added.
export const stepUpReason = { key: "number" };

// What the step-up protects, in the dialog's words: a phone number, the voicemail e-mail address, a new passkey.
function stepUpText(passkeyToo) {
  if (stepUpReason.key === "passkey") return "stepup.text_passkey";
  const base = stepUpReason.key === "email" ? "stepup.text_email" : "stepup.text";
  return passkeyToo ? (base === "stepup.text" ? "stepup.text_any" : `${base}_any`) : base;
}

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
      h("p", {}, t(stepUpText(methods.length > 0))),
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
