// App settings (§7.8): notifications, theme, language, contact display, privacy, app information; help (§7.9).

import { applyLanguage, applyTheme, go, logOut, VERSION } from "./app.js";
import { h, uid } from "./dom.js";
import { toggle } from "./forms.js";
import { t } from "./i18n.js";
import { chooseLanguage, languagePreference, loadUser, savePrefs, store } from "./state.js";
import { errorText, toast } from "./ui.js";

function radios(legend, name, options, value, onChange) {
  return h(
    "fieldset",
    { class: "field" },
    h("legend", {}, legend),
    options.map((option) => {
      const id = uid(name);
      return h(
        "div",
        { class: "radio-row" },
        h("input", { type: "radio", id, name, value: option, checked: value === option, onChange: () => onChange(option) }),
        h("label", { for: id }, t(`opt.${name}.${option}`)),
      );
    }),
  );
}

async function save(changes) {
  try {
    await savePrefs(changes);
    toast(t("toast.saved"));
  } catch (error) {
    toast(errorText(error));
  }
}

// Whether this device gets the notifications: the toggles are the user's (every device), the subscription is
// this browser's.
async function showDeviceStatus(status) {
  const { currentSubscription, permission } = await import("./push.js");
  const state = permission();
  let key = state === "unsupported" ? "unsupported" : state === "denied" ? "denied" : "off";
  if (key === "off" && (await currentSubscription().catch(() => null))) key = "on";
  const wanted = store.prefs.push.missed_calls || store.prefs.push.voicemail;
  status.replaceChildren(
    h("span", {}, t(`push.device_${key}`)),
    key === "off" && wanted
      ? h("button", { type: "button", class: "secondary", onClick: () => subscribeDevice(status) }, t("push.enable_here"))
      : null,
  );
}

async function subscribeDevice(status) {
  const { subscribe } = await import("./push.js");
  try {
    await subscribe();
    await showDeviceStatus(status);
  } catch (error) {
    await showDeviceStatus(status);
    status.prepend(h("span", { class: "error" }, t(`push.failed_${error.step || "other"}`), " "));
  }
}

async function saveNotification(change, status) {
  await save({ push: change });
  const { unsubscribe } = await import("./push.js");
  if (store.prefs.push.missed_calls || store.prefs.push.voicemail) await subscribeDevice(status);
  else {
    await unsubscribe().catch(() => {});
    await showDeviceStatus(status);
  }
}

async function appSettingsScreen(main) {
  const prefs = store.prefs;
  const deviceStatus = h("p", { class: "muted push-status", id: "push-status", role: "status" });
  await showDeviceStatus(deviceStatus);
  const contacts = { ...prefs.contacts };
  const push = { ...prefs.push };
  main.append(
    h(
      "section",
      { class: "card", "aria-labelledby": "s-notifications" },
      h("h2", { id: "s-notifications" }, t("app.notifications")),
      toggle(t("app.notify_missed"), push.missed_calls, (value) => saveNotification({ missed_calls: value }, deviceStatus)),
      toggle(t("app.notify_voicemail"), push.voicemail, (value) => saveNotification({ voicemail: value }, deviceStatus)),
      deviceStatus,
    ),
    h(
      "section",
      { class: "card", "aria-labelledby": "s-display" },
      h("h2", { id: "s-display" }, t("app.display")),
      radios(t("app.theme"), "theme", ["system", "light", "dark"], prefs.theme, async (theme) => {
        applyTheme(theme);
        await save({ theme });
      }),
      radios(t("app.language"), "language", ["system", "nl", "en"], languagePreference(), async (language) => {
        if (language === "system") localStorage.removeItem("hipper.language-chosen");
        else {
          try {
            await chooseLanguage(language);
          } catch (error) {
            toast(errorText(error));
          }
        }
        await applyLanguage(languagePreference());
        toast(t("toast.saved"));
      }),
    ),
    h(
      "section",
      { class: "card", "aria-labelledby": "s-contacts" },
      h("h2", { id: "s-contacts" }, t("app.contacts")),
      ["personal", "group", "enterprise"].map((list) =>
        toggle(t(`app.list.${list}`), contacts.lists.includes(list), (value) => {
          const lists = new Set(store.prefs.contacts.lists);
          if (value) lists.add(list);
          else lists.delete(list);
          save({ contacts: { lists: [...lists] } });
        }),
      ),
      radios(t("app.sort"), "sort", ["first_name", "last_name"], contacts.sort, (sort) => save({ contacts: { sort } })),
      toggle(t("app.whatsapp"), contacts.whatsapp_button, (value) => save({ contacts: { whatsapp_button: value } })),
    ),
    h(
      "section",
      { class: "card", "aria-labelledby": "s-privacy" },
      h("h2", { id: "s-privacy" }, t("app.privacy")),
      h("p", { class: "muted" }, t("app.privacy_text")),
      toggle(t("app.analytics"), prefs.privacy.analytics, (analytics) => save({ privacy: { analytics } })),
    ),
    h(
      "section",
      { class: "card menu", "aria-labelledby": "s-info" },
      h("h2", { id: "s-info" }, t("app.info")),
      h("div", { class: "row pad-row" }, h("span", {}, t("app.version")), h("span", { class: "value" }, VERSION)),
      h("a", { class: "menu-item", href: "#/help" }, t("screen.help")),
      h("a", { class: "menu-item", href: "/terms.html" }, t("app.terms")),
      h("a", { class: "menu-item", href: "/terms.html#nl-privacy" }, t("app.privacy_statement")),
      h(
        "button",
        {
          type: "button",
          class: "menu-item",
          onClick: async () => {
            await loadUser();
            applyTheme(store.prefs.theme);
            await applyLanguage(languagePreference());
            toast(t("app.restarted"));
            go("overview");
          },
        },
        t("app.restart"),
      ),
      h("button", { type: "button", class: "menu-item danger", onClick: logOut }, t("action.logout")),
    ),
  );
  if (!store.prefsOnServer) main.append(h("p", { class: "muted small" }, t("prefs.local_only")));
}

function helpScreen(main) {
  const faq = Number(t("help.count")) || 0;
  for (let i = 1; i <= faq; i += 1) {
    main.append(h("details", { class: "card faq" }, h("summary", {}, t(`help.q${i}`)), h("p", {}, t(`help.a${i}`))));
  }
}

export const settingsRoutes = {
  "app-settings": { title: "screen.app-settings", back: "settings", tab: "settings", render: appSettingsScreen },
  help: { title: "screen.help", back: "settings", tab: "settings", render: helpScreen },
};
