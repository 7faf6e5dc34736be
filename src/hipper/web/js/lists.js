// Recent calls, voicemail (list, player, greetings) and contacts (§4, §6, §7.4.2).

import { ApiError, api } from "./api.js";
import { callLink } from "./calls.js";
import { append, h, icon } from "./dom.js";
import { notAvailable } from "./forms.js";
import { formatDateTime, formatNumber, plural, t } from "./i18n.js";
import { store } from "./state.js";
import { audioPlayer, confirmDialog, errorText, modal, promptDialog, toast } from "./ui.js";

const API_PREFIX = "/api/v1";

async function fetchPage(path, main) {
  try {
    return await api.get(path);
  } catch (error) {
    if (error instanceof ApiError && error.unavailable) {
      main.append(notAvailable());
      return null;
    }
    throw error;
  }
}

export function callTabs(current) {
  return h(
    "nav",
    { class: "segmented", "aria-label": t("screen.calls") },
    ["calls", "voicemails", "dialpad"].map((path) =>
      h("a", { href: `#/${path}`, "aria-current": current === path ? "page" : undefined }, t(`tab.${path}`)),
    ),
  );
}

const whatsappLink = (number, name) =>
  h("a", { class: "icon-button whatsapp", href: `https://wa.me/${number.replace(/[^0-9]/g, "").replace(/^0(?=6)/, "31")}`, target: "_blank", rel: "noopener", "aria-label": t("contacts.whatsapp", { name }) }, icon("whatsapp"));

// A list with the manual's "Wijzigen" mode: tick several rows, delete them at once (not undoable).
function editableList(main, items, { row, remove, empty, label }) {
  let editing = false;
  const selected = new Set();
  const list = h("ul", { class: "card list", "aria-label": label });
  const bar = h("div", { class: "actions sticky", hidden: true });
  const editButton = h("button", { type: "button", class: "link", "aria-pressed": "false" }, t("action.edit"));
  document.getElementById("topbar-actions").append(editButton);
  const draw = () => {
    // While rows are ticked, live events must not redraw the list (app.js checks this flag).
    if (editing) document.body.dataset.editing = "true";
    else delete document.body.dataset.editing;
    editButton.textContent = editing ? t("action.done") : t("action.edit");
    editButton.setAttribute("aria-pressed", String(editing));
    editButton.hidden = items.length === 0;
    list.replaceChildren(
      ...items.map((item) =>
        h(
          "li",
          { class: "list-row" },
          editing
            ? h("input", {
                type: "checkbox",
                id: `sel-${item.id}`,
                checked: selected.has(item.id),
                "aria-labelledby": `name-${item.id}`,
                onChange: (event) => {
                  if (event.target.checked) selected.add(item.id);
                  else selected.delete(item.id);
                  draw();
                  list.querySelector(`#sel-${item.id}`).focus();
                },
              })
            : null,
          row(item, editing),
        ),
      ),
    );
    if (items.length === 0) list.replaceChildren(h("li", { class: "empty" }, empty));
    bar.hidden = !editing;
    bar.replaceChildren(
      h(
        "button",
        {
          type: "button",
          class: "primary danger-bg",
          disabled: selected.size === 0,
          onClick: async () => {
            const sure = await confirmDialog(t("delete.title"), plural("delete.text", selected.size), t("action.delete"));
            if (!sure) return;
            await remove([...selected]);
            items = items.filter((item) => !selected.has(item.id));
            selected.clear();
            editing = false;
            draw();
            toast(t("toast.deleted"));
          },
        },
        t("delete.button", { count: selected.size }),
      ),
    );
  };
  editButton.addEventListener("click", () => {
    editing = !editing;
    selected.clear();
    draw();
  });
  draw();
  main.append(list, bar);
}


async function recentScreen(main) {
  main.append(callTabs("calls"));
  const page = await fetchPage("/me/call-logs", main);
  if (!page) return;
  editableList(main, page.calls, {
    label: t("tab.calls"),
    empty: t("calls.empty"),
    remove: (ids) => api.post("/me/call-logs/delete", { ids }),
    row: (call, editing) => {
      const name = call.remote_name || call.remote_number || t("calls.anonymous");
      const body = [
        h("span", { class: `call-icon ${call.kind}`, "aria-hidden": "true" }, icon(call.kind in { placed: 1, received: 1, missed: 1 } ? call.kind : "calls")),
        h("span", { class: "grow" }, h("strong", { id: `name-${call.id}` }, name), h("small", { class: "muted" }, `${t(`calls.${call.kind}`)} · ${formatDateTime(call.started_at)}`)),
      ];
      const callable = !editing && call.remote_number;
      return h(
        "div",
        { class: "row-body" },
        // The visible text is the link's name (WCAG 2.5.3 label in name), with "Call" before it for screen readers.
        callable ? callLink(call.remote_number, { class: "row-body" }, h("span", { class: "sr-only" }, `${t("action.call")} `), body) : body,
        callable && call.whatsapp && store.prefs.contacts.whatsapp_button ? whatsappLink(call.remote_number, name) : null,
      );
    },
  });
}

async function voicemailsScreen(main) {
  main.append(callTabs("voicemails"));
  const page = await fetchPage("/me/voicemails", main);
  if (!page) return;
  editableList(main, page.messages, {
    label: t("tab.voicemails"),
    empty: t("voicemail.empty"),
    remove: async (ids) => {
      await api.post("/me/voicemails/delete", { ids });
    },
    row: (message, editing) => {
      const name = message.caller_name || message.caller_number || t("calls.anonymous");
      const body = [
        message.heard ? h("span", { class: "dot-space", "aria-hidden": "true" }) : h("span", { class: "dot", role: "img", "aria-label": t("voicemail.new") }),
        h("span", { class: "grow" }, h("strong", { id: `name-${message.id}` }, name), h("small", { class: "muted" }, formatDateTime(message.received_at))),
        h("small", { class: "muted" }, `${Math.round(message.duration_ms / 1000)} s`),
      ];
      return editing ? h("div", { class: "row-body" }, body) : h("a", { class: "row-body", href: `#/voicemail/${message.id}` }, body);
    },
  });
}

async function audioBlob(url) {
  return api.get(url.startsWith(API_PREFIX) ? url.slice(API_PREFIX.length) : url, { blob: true });
}

async function voicemailScreen(main, id) {
  const page = await fetchPage("/me/voicemails", main);
  if (!page) return;
  const message = page.messages.find((item) => String(item.id) === String(id));
  if (!message) {
    main.append(h("p", { class: "empty" }, t("voicemail.gone")));
    return;
  }
  const number = message.caller_number;
  const name = message.caller_name || number || t("calls.anonymous");
  main.append(
    h("section", { class: "card" }, h("h2", {}, name), h("p", { class: "muted" }, `${formatDateTime(message.received_at)} · ${Math.round(message.duration_ms / 1000)} s`)),
  );
  try {
    const blob = await audioBlob(message.audio_url);
    const url = URL.createObjectURL(blob);
    const file = new File([blob], `voicemail-${id}.wav`, { type: blob.type || "audio/wav" });
    main.append(
      audioPlayer(url, t("voicemail.player")),
      h(
        "div",
        { class: "actions" },
        navigator.canShare && navigator.canShare({ files: [file] })
          ? h("button", { type: "button", class: "secondary", onClick: () => navigator.share({ files: [file], title: t("voicemail.share_title") }).catch(() => {}) }, t("action.share"))
          : h("a", { class: "button secondary", href: url, download: file.name }, t("action.download")),
        number ? callLink(number, { class: "button primary" }, t("action.call_back")) : null,
      ),
    );
  } catch (error) {
    if (!(error instanceof ApiError)) throw error;
    main.append(h("p", { class: "error" }, t("voicemail.no_audio")));
  }
  if (!message.heard) {
    try {
      await api.patch(`/me/voicemails/${encodeURIComponent(id)}`, { heard: true });
      store.profile.new_voicemails = Math.max(0, (store.profile.new_voicemails || 0) - 1);
    } catch {
      /* marking as heard is best effort: the list shows it as new again */
    }
  }
}

// 16-bit PCM WAV from decoded audio: the exchange takes WAV, and Chromium records only WebM, so the recording
// is decoded by the browser and written out here (44 header bytes + samples; no library needed for that).
function wavFromAudioBuffer(buffer) {
  const samples = buffer.getChannelData(0);
  const data = new DataView(new ArrayBuffer(44 + samples.length * 2));
  const text = (offset, value) => [...value].forEach((char, i) => data.setUint8(offset + i, char.charCodeAt(0)));
  text(0, "RIFF");
  data.setUint32(4, 36 + samples.length * 2, true);
  text(8, "WAVE");
  text(12, "fmt ");
  data.setUint32(16, 16, true);
  data.setUint16(20, 1, true);
  data.setUint16(22, 1, true);
  data.setUint32(24, buffer.sampleRate, true);
  data.setUint32(28, buffer.sampleRate * 2, true);
  data.setUint16(32, 2, true);
  data.setUint16(34, 16, true);
  text(36, "data");
  data.setUint32(40, samples.length * 2, true);
  samples.forEach((sample, i) => data.setInt16(44 + i * 2, Math.max(-1, Math.min(1, sample)) * 0x7fff, true));
  return new Blob([data], { type: "audio/wav" });
}

// Record a new greeting (§7.4.2): record, stop, listen, then save or record again.
async function recordGreeting() {
  if (!navigator.mediaDevices || !window.MediaRecorder) {
    toast(t("greetings.no_microphone"));
    return false;
  }
  return modal(t("greetings.record_title"), (close) => {
    let recorder = null;
    let wav = null;
    const status = h("p", { role: "status" }, t("greetings.record_help"));
    const player = audioPlayer("", t("greetings.listen"));
    player.hidden = true;
    const nameInput = h("input", { id: "greeting-name", type: "text", maxlength: 100, value: t("greetings.default_name") });
    const recordButton = h("button", { type: "button", class: "record", "aria-pressed": "false" }, t("greetings.record"));
    const saveButton = h("button", { type: "button", class: "primary", disabled: true }, t("action.save"));
    recordButton.addEventListener("click", async () => {
      if (recorder && recorder.state === "recording") {
        recorder.stop();
        return;
      }
      try {
        const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
        const chunks = [];
        recorder = new MediaRecorder(stream);
        recorder.ondataavailable = (event) => chunks.push(event.data);
        recorder.onstop = async () => {
          stream.getTracks().forEach((track) => track.stop());
          const context = new AudioContext();
          const decoded = await context.decodeAudioData(await new Blob(chunks).arrayBuffer());
          context.close();
          wav = wavFromAudioBuffer(decoded);
          player.audio.src = URL.createObjectURL(wav);
          player.hidden = false;
          saveButton.disabled = false;
          recordButton.textContent = t("greetings.record_again");
          recordButton.setAttribute("aria-pressed", "false");
          status.textContent = t("greetings.recorded");
        };
        recorder.start();
        recordButton.textContent = t("greetings.stop");
        recordButton.setAttribute("aria-pressed", "true");
        status.textContent = t("greetings.recording");
      } catch {
        status.textContent = t("greetings.no_microphone");
      }
    });
    saveButton.addEventListener("click", async () => {
      const form = new FormData();
      form.append("file", wav, "greeting.wav");
      form.append("name", nameInput.value.trim() || t("greetings.default_name"));
      try {
        await api.upload("/me/greetings", form);
        close(true);
      } catch (error) {
        status.textContent = errorText(error);
      }
    });
    return h(
      "div",
      { class: "recorder" },
      h("label", { for: "greeting-name" }, t("greetings.name")),
      nameInput,
      status,
      recordButton,
      player,
      h("div", { class: "actions" }, h("button", { type: "button", class: "secondary", onClick: () => close(false) }, t("action.cancel")), saveButton),
    );
  });
}

// Greetings (§7.4.2): play, rename, delete, record a new one; choose which one callers hear when you do not
// answer and which when you are busy (without a busy greeting they hear the no-answer one).
const GREETING_CASES = [
  { field: "active", key: "no_answer", none: "greetings.system" },
  { field: "active_busy", key: "busy", none: "greetings.same_as_no_answer" },
];

export async function greetingsSection(main) {
  const section = h("section", { class: "card", "aria-labelledby": "greetings-title" });
  main.append(section);
  let greetings;
  try {
    greetings = (await api.get("/me/greetings")).greetings;
  } catch (error) {
    if (error instanceof ApiError && error.unavailable) {
      section.append(h("h2", { id: "greetings-title" }, t("greetings.title")), h("p", { class: "muted" }, t("not_available")));
      return;
    }
    throw error;
  }
  const list = h("ul", { class: "list plain" });
  const choices = h("div");
  // One radio group per case: "none" (the system greeting, or for busy: the same as no answer), then each one.
  const choose = async (field, chosen) => {
    const current = greetings.find((item) => item[field]);
    if (current?.id === chosen?.id) return;
    try {
      if (chosen) await api.patch(`/me/greetings/${chosen.id}`, { [field]: true });
      else await api.patch(`/me/greetings/${current.id}`, { [field]: false });
    } catch (error) {
      toast(errorText(error));
      greetings = (await api.get("/me/greetings")).greetings;
      draw();
      return;
    }
    greetings.forEach((item) => (item[field] = item.id === chosen?.id));
    draw();
    toast(t("toast.saved"));
  };
  const group = ({ field, key, none }) => {
    const name = `greeting-${key}`;
    const option = (greeting, label) => {
      const id = `${name}-${greeting ? greeting.id : "none"}`;
      const checked = greeting ? greeting[field] : !greetings.some((item) => item[field]);
      return h(
        "div",
        { class: "radio-row" },
        h("input", { type: "radio", id, name, checked, onChange: () => choose(field, greeting) }),
        h("label", { for: id }, label),
      );
    };
    return h(
      "fieldset",
      { class: "field" },
      h("legend", {}, t(`greetings.${key}`)),
      h("p", { class: "muted small" }, t(`greetings.${key}_help`)),
      option(null, t(none)),
      greetings.map((greeting) => option(greeting, greeting.name)),
    );
  };
  const usedFor = (greeting) =>
    GREETING_CASES.filter(({ field }) => greeting[field]).map(({ key }) => t(`greetings.used_${key}`));
  const draw = () => {
    list.replaceChildren(
      ...greetings.map((greeting) =>
        h(
          "li",
          { class: "list-row" },
          h("span", { class: "grow" }, greeting.name, h("small", { class: "muted" }, [`${Math.round(greeting.duration_ms / 1000)} s`, ...usedFor(greeting)].join(" · "))),
          h("button", { type: "button", class: "icon-button", "aria-label": t("greetings.play", { name: greeting.name }), onClick: async (event) => {
            const row = event.currentTarget.closest("li");
            const player = audioPlayer(URL.createObjectURL(await audioBlob(greeting.audio_url)), t("greetings.play", { name: greeting.name }));
            row.nextElementSibling?.classList.contains("player") ? row.nextElementSibling.replaceWith(player) : row.after(player);
            player.audio.play().catch(() => {});
          } }, icon("play")),
          h("button", { type: "button", class: "icon-button", "aria-label": t("greetings.rename", { name: greeting.name }), onClick: async () => {
            const name = await promptDialog(t("greetings.rename", { name: greeting.name }), t("greetings.name"), greeting.name);
            if (!name || name === greeting.name) return;
            Object.assign(greeting, await api.patch(`/me/greetings/${greeting.id}`, { name }));
            draw();
          } }, icon("edit")),
          h("button", { type: "button", class: "icon-button", "aria-label": t("greetings.delete", { name: greeting.name }), onClick: async () => {
            if (!(await confirmDialog(t("delete.title"), t("greetings.delete", { name: greeting.name }), t("action.delete")))) return;
            await api.del(`/me/greetings/${greeting.id}`);
            greetings = greetings.filter((item) => item.id !== greeting.id);
            draw();
          } }, icon("close")),
        ),
      ),
    );
    if (greetings.length === 0) list.replaceChildren(h("li", { class: "muted" }, t("greetings.empty")));
    choices.replaceChildren(...(greetings.length ? GREETING_CASES.map(group) : []));
  };
  draw();
  section.append(
    h(
      "div",
      { class: "section-head" },
      h("h2", { id: "greetings-title" }, t("greetings.title")),
      h("button", { type: "button", class: "icon-button", "aria-label": t("greetings.record_title"), onClick: async () => {
        if (await recordGreeting()) {
          greetings = (await api.get("/me/greetings")).greetings;
          draw();
          toast(t("toast.saved"));
        }
      } }, "+"),
    ),
    list,
    choices,
  );
}

// Add a personal contact, or change one (`id`: PATCH with what the form holds).
export function personalDialog(prefill = {}, id = null) {
  return modal(t(id ? "contacts.edit" : "contacts.add"), (close) => {
    const error = h("p", { class: "error", role: "alert", hidden: true });
    const bounds = { first_name: 100, last_name: 100, company_name: 200, number: 32, email: 254 };
    const input = (name, type, autocomplete) => [h("label", { for: name }, t(`contacts.field.${name}`)), h("input", { id: name, type, autocomplete, maxlength: bounds[name], value: prefill[name] || "" })];
    const form = h(
      "form",
      {
        onSubmit: async (event) => {
          event.preventDefault();
          const value = (id) => form.querySelector(`#${id}`).value.trim();
          const entry = { first_name: value("first_name"), last_name: value("last_name"), company_name: value("company_name"), number: value("number") };
          if (value("email") || id) entry.email = value("email") || null;
          try {
            if (id) await api.patch(`/me/contacts/personal/${id}`, entry);
            else await api.post("/me/contacts/personal", entry);
            close(true);
          } catch (failure) {
            error.hidden = false;
            error.textContent = errorText(failure);
          }
        },
      },
      ...input("first_name", "text", "given-name"),
      ...input("last_name", "text", "family-name"),
      ...input("company_name", "text", "organization"),
      ...input("number", "tel", "tel"),
      ...input("email", "email", "email"),
      error,
      h("div", { class: "actions" }, h("button", { type: "button", class: "secondary", onClick: () => close(false) }, t("action.cancel")), h("button", { type: "submit", class: "primary" }, t("action.save"))),
    );
    return form;
  });
}

// The device's own contacts (§6 "Lokaal"): the Contact Picker API where the browser has it, a vCard file
// otherwise; either way they land in the personal phone list on the exchange.
async function importContacts(file) {
  let result;
  if (file) {
    result = await api.upload("/me/contacts/personal/import", file, "text/vcard");
  } else {
    const picked = await navigator.contacts.select(["name", "tel"], { multiple: true });
    const cards = picked.flatMap((contact) => (contact.tel || []).map((tel) => `BEGIN:VCARD\r\nVERSION:3.0\r\nFN:${(contact.name || [""])[0]}\r\nTEL:${tel}\r\nEND:VCARD`));
    if (cards.length === 0) return;
    result = await api.upload("/me/contacts/personal/import", new Blob([cards.join("\r\n")]), "text/vcard");
  }
  toast(t("contacts.imported", { count: result.imported, skipped: result.skipped.length }));
}

// Pull to refresh (§6): pulling down from the top of the list reloads it; the ⟳ button does the same.
function pullToRefresh(main, reload) {
  const hint = h("p", { class: "pull-hint", "aria-hidden": "true", hidden: true }, t("contacts.pull"));
  main.prepend(hint);
  let startY = null;
  main.addEventListener("touchstart", (event) => {
    startY = window.scrollY === 0 ? event.touches[0].clientY : null;
  }, { passive: true });
  main.addEventListener("touchmove", (event) => {
    if (startY !== null) hint.hidden = event.touches[0].clientY - startY < 80;
  }, { passive: true });
  main.addEventListener("touchend", () => {
    if (startY !== null && !hint.hidden) reload();
    hint.hidden = true;
    startY = null;
  });
}

function contactTabs(current) {
  return h(
    "nav",
    { class: "segmented", "aria-label": t("screen.contacts") },
    ["contacts", "contacts-local"].map((path) => h("a", { href: `#/${path}`, "aria-current": current === path ? "page" : undefined }, t(`tab.${path}`))),
  );
}

// Surnames sort without their Dutch particles ("de Vries" under V), and read "Vries, Anna de" when sorted so.
const PARTICLES = /^((van|von|de|den|der|het|'t|te|ter|ten|in|op|aan|uit|bij|la|le|du|d')\s+)+/i;
export function surnameLabel(contact) {
  const particle = (contact.last_name.match(PARTICLES) || [""])[0].trim();
  const surname = contact.last_name.slice(particle.length).trim() || contact.last_name;
  return `${surname}, ${[contact.first_name, particle].filter(Boolean).join(" ")}`.replace(/, $/, "");
}

async function contactsScreen(main) {
  main.append(contactTabs("contacts"));
  const page = await fetchPage("/me/contacts", main);
  if (!page) return;
  const reload = () => import("./app.js").then((app) => app.render());
  const fileInput = h("input", {
    type: "file",
    accept: ".vcf,text/vcard,text/x-vcard",
    hidden: true,
    id: "vcard-file",
    onChange: async (event) => {
      const [file] = event.target.files;
      if (!file) return;
      try {
        await importContacts(file);
        reload();
      } catch (error) {
        toast(errorText(error));
      }
    },
  });
  const actions = document.getElementById("topbar-actions");
  actions.append(
    h("button", { type: "button", class: "icon-button", "aria-label": t("contacts.refresh"), onClick: reload }, "⟳"),
    h("button", { type: "button", class: "icon-button", "aria-label": t("contacts.import"), onClick: async () => {
      if ("contacts" in navigator && "select" in navigator.contacts) {
        try {
          await importContacts(null);
          reload();
        } catch (error) {
          toast(errorText(error));
        }
      } else fileInput.click();
    } }, "⇩"),
    h("button", { type: "button", class: "icon-button", "aria-label": t("contacts.add"), onClick: async () => {
      if (await personalDialog()) {
        toast(t("toast.saved"));
        reload();
      }
    } }, "+"),
  );
  main.append(fileInput);
  pullToRefresh(main, reload);
  const contacts = page.contacts;
  const prefs = store.prefs.contacts;
  const search = h("input", { type: "search", id: "contact-search", placeholder: t("contacts.search"), "aria-label": t("contacts.search"), autocomplete: "off" });
  const count = h("p", { class: "sr-only", "aria-live": "polite" });
  const list = h("ul", { class: "card list", "aria-label": t("screen.contacts") });
  // The exchange already sorts and filters by the app settings; the search runs here, on what was loaded.
  const label = (contact) => (prefs.sort === "last_name" && contact.last_name ? surnameLabel(contact) : contact.display_name);
  const draw = () => {
    const words = search.value.trim().toLowerCase().split(/\s+/).filter(Boolean);
    const shown = contacts.filter((contact) => {
      const haystack = [contact.display_name, contact.company_name, contact.extension, ...contact.numbers.map((n) => n.number)].join(" ").toLowerCase();
      return words.every((word) => haystack.includes(word));
    });
    count.textContent = plural("contacts.count", shown.length);
    list.replaceChildren(
      ...shown.map((contact) => {
        const name = label(contact);
        const whatsapp = prefs.whatsapp_button && contact.numbers.find((n) => n.whatsapp);
        // A tap opens the contact (every number of it, to call or message); the row does not call by itself.
        return h(
          "li",
          { class: "list-row" },
          h(
            "a",
            { class: "row-body", href: `#/contact/${contact.list}/${contact.id}` },
            h("span", { class: "avatar", "aria-hidden": "true" }, (name || "?").slice(0, 1).toUpperCase()),
            h("span", { class: "grow" }, h("strong", {}, name), h("small", { class: "muted" }, t(`contacts.list.${contact.list}`), contact.numbers.length ? " · " : "", contact.numbers.map((n, i) => [i ? " · " : "", h("span", { class: "number" }, formatNumber(n.number))]))),
          ),
          whatsapp ? whatsappLink(whatsapp.number, name) : null,
          contact.list === "personal"
            ? h("button", { type: "button", class: "icon-button", "aria-label": t("contacts.delete", { name }), onClick: async () => {
                if (!(await confirmDialog(t("delete.title"), t("contacts.delete", { name }), t("action.delete")))) return;
                await api.del(`/me/contacts/personal/${contact.id}`);
                contacts.splice(contacts.indexOf(contact), 1);
                draw();
                toast(t("toast.deleted"));
              } }, icon("close"))
            : null,
        );
      }),
    );
    if (shown.length === 0) list.replaceChildren(h("li", { class: "empty" }, t("contacts.empty")));
  };
  search.addEventListener("input", draw);
  main.append(h("div", { class: "search" }, search), count, list);
  draw();
}

// One contact (§6): every number with its kind, each called on its own; WhatsApp for Dutch mobiles; a personal
// contact is changed or removed here.
async function contactScreen(main, list, id) {
  const page = await fetchPage("/me/contacts", main);
  if (!page) return;
  const contact = page.contacts.find((item) => item.list === list && String(item.id) === String(id));
  if (!contact) {
    main.append(h("p", { class: "empty" }, t("contacts.gone")));
    return;
  }
  const name = contact.display_name;
  document.querySelector(".topbar h1").textContent = name;
  document.title = `${name} · Hipper+`;
  const numbers = contact.numbers.map((entry) =>
    h(
      "li",
      { class: "list-row" },
      callLink(entry.number, { class: "row-body" }, h("span", { class: "grow" }, h("small", { class: "muted" }, t(`contacts.kind.${entry.kind}`)), h("strong", { class: "number" }, formatNumber(entry.number))), h("span", { class: "call-icon", "aria-hidden": "true" }, icon("calls"))),
      entry.whatsapp && store.prefs.contacts.whatsapp_button ? whatsappLink(entry.number, `${name} ${formatNumber(entry.number)}`) : null,
    ),
  );
  append(main, [
    h(
      "section",
      { class: "card contact-head" },
      h("span", { class: "avatar big", "aria-hidden": "true" }, (name || "?").slice(0, 1).toUpperCase()),
      h("h2", {}, name),
      contact.company_name && contact.company_name !== name ? h("p", { class: "muted" }, contact.company_name) : null,
      h("p", { class: "muted small" }, t(`contacts.list.${contact.list}`)),
    ),
    h("ul", { class: "card list", "aria-label": t("contacts.numbers") }, numbers.length ? numbers : h("li", { class: "empty" }, t("contacts.no_numbers"))),
    contact.email ? h("p", {}, h("a", { class: "button secondary wide", href: `mailto:${contact.email}` }, contact.email)) : null,
  ]);
  if (contact.list === "personal") {
    main.append(
      h(
        "div",
        { class: "actions" },
        h("button", { type: "button", class: "secondary", onClick: async () => {
          const prefill = { first_name: contact.first_name, last_name: contact.last_name, company_name: contact.company_name, number: contact.numbers[0]?.number, email: contact.email };
          if (await personalDialog(prefill, contact.id)) {
            toast(t("toast.saved"));
            import("./app.js").then((app) => app.render());
          }
        } }, icon("edit"), t("action.edit")),
        h("button", { type: "button", class: "danger", onClick: async () => {
          if (!(await confirmDialog(t("delete.title"), t("contacts.delete", { name }), t("action.delete")))) return;
          await api.del(`/me/contacts/personal/${contact.id}`);
          toast(t("toast.deleted"));
          location.hash = "#/contacts";
        } }, t("action.delete")),
      ),
    );
  }
}

// "Lokaal" (§6): the device's own contacts. Where the browser offers the Contact Picker API the user picks them;
// elsewhere a vCard file exported from the phone's contacts app is imported. Both land in the personal list.
function localContactsScreen(main) {
  main.append(contactTabs("contacts-local"));
  const picker = "contacts" in navigator && "select" in navigator.contacts;
  const fileInput = h("input", {
    type: "file",
    accept: ".vcf,text/vcard,text/x-vcard",
    id: "local-vcard-file",
    class: "sr-only",
    onChange: async (event) => {
      const [file] = event.target.files;
      if (!file) return;
      try {
        await importContacts(file);
        location.hash = "#/contacts";
      } catch (error) {
        toast(errorText(error));
      }
    },
  });
  main.append(
    h(
      "section",
      { class: "card local" },
      h("p", {}, t(picker ? "contacts.local_picker" : "contacts.local_file")),
      picker
        ? h("button", { type: "button", class: "primary wide", onClick: async () => {
            try {
              await importContacts(null);
              location.hash = "#/contacts";
            } catch (error) {
              toast(errorText(error));
            }
          } }, t("contacts.local_pick"))
        : [fileInput, h("label", { for: "local-vcard-file", class: "button primary wide" }, t("contacts.local_choose_file"))],
    ),
  );
}

export const listRoutes = {
  calls: { title: "screen.calls", live: true, render: recentScreen },
  // The in-call screen (manual 5.2) keeps itself current from the call events: no redraw of the whole screen.
  call: { title: "screen.call", back: "calls", tab: "calls", render: (main, id) => import("./incall.js").then((calls) => calls.inCallScreen(main, id)) },
  voicemails: { title: "screen.calls", tab: "calls", live: true, render: voicemailsScreen },
  dialpad: { title: "screen.calls", tab: "calls", render: (main) => import("./calls.js").then((calls) => calls.dialpadScreen(main)) },
  voicemail: { title: "screen.voicemail-message", back: "voicemails", tab: "calls", render: voicemailScreen },
  contacts: { title: "screen.contacts", render: contactsScreen },
  "contacts-local": { title: "screen.contacts", tab: "contacts", render: localContactsScreen },
  contact: { title: "screen.contact", back: "contacts", tab: "contacts", render: contactScreen },
};
