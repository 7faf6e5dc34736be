// Renders a service's settings document as a form: one control per field, saved as a whole document.

import { ApiError, Cancelled, api } from "./api.js";
import { h, icon, uid } from "./dom.js";
import { formatDateTime, t } from "./i18n.js";
import { SERVICES, documentOf } from "./services.js";
import { errorText, fieldText, stepUpReason, toast } from "./ui.js";

const clone = (value) => JSON.parse(JSON.stringify(value));

export function toggle(label, checked, onChange, { disabled = false, id = uid("t"), describedBy } = {}) {
  return h(
    "div",
    { class: "row switch-row" },
    h("label", { for: id }, label),
    h("input", {
      id,
      type: "checkbox",
      role: "switch",
      class: "switch",
      checked: Boolean(checked),
      disabled,
      "aria-describedby": describedBy,
      onChange: (event) => onChange(event.target.checked),
    }),
  );
}

function fieldLabel(screen, name) {
  return t(`field.${screen}.${name}`) !== `field.${screen}.${name}` ? t(`field.${screen}.${name}`) : t(`field.${name}`);
}

// "Until" of the Personal Assistant: the manual's choices 1 h, 2 h, 4 h, 1 day, end of day, a date, always.
export function untilFromChoice(choice, now = new Date()) {
  const hours = { h1: 1, h2: 2, h4: 4, d1: 24 }[choice];
  if (hours) return new Date(now.getTime() + hours * 3600 * 1000).toISOString();
  if (choice === "end_of_day") {
    const end = new Date(now);
    end.setHours(23, 59, 0, 0);
    return end.toISOString();
  }
  return null;
}

function localInputValue(iso) {
  const date = iso ? new Date(iso) : new Date(Date.now() + 3600 * 1000);
  const pad = (n) => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T${pad(date.getHours())}:${pad(date.getMinutes())}`;
}

// `mode` outlives the form's redraws (a choice redraws the whole form): whether the date input is shown.
function untilControl(value, set, disabled, mode, error) {
  const id = uid("until");
  const choices = ["always", "h1", "h2", "h4", "d1", "end_of_day", "date"];
  const summary = h("p", { class: "until-summary", id: `${id}-summary`, "aria-live": "polite" }, value ? t("until.at", { when: formatDateTime(value) }) : t("until.always"));
  const pick = (choice) => {
    mode.date = choice === "date";
    mode.focus = mode.date;
    set(mode.date ? new Date(dateInput.value).toISOString() : untilFromChoice(choice));
  };
  const dateInput = h("input", {
    type: "datetime-local",
    id: "until-date",
    "aria-label": t("until.date"),
    value: localInputValue(value),
    hidden: !mode.date,
    disabled,
    "aria-invalid": error ? "true" : undefined,
    "aria-describedby": error ? `${id}-error` : undefined,
    onChange: (event) => {
      if (!event.target.value) return;
      mode.focus = true;
      set(new Date(event.target.value).toISOString());
    },
  });
  return h(
    "fieldset",
    { class: "field" },
    h("legend", {}, t("field.until")),
    summary,
    error ? h("p", { class: "error", id: `${id}-error` }, error) : null,
    h(
      "div",
      { class: "chips", role: "group", "aria-describedby": `${id}-summary` },
      choices.map((choice) =>
        h("button", { type: "button", class: "chip", disabled, onClick: () => pick(choice) }, t(`until.${choice === "always" ? "always_short" : choice}`)),
      ),
    ),
    dateInput,
  );
}

function choiceControl(screen, field, value, set, ctx, disabled) {
  const name = uid("choice");
  const options = field.options.filter((option) => !field.offer || field.offer(option, { ...ctx, current: value }));
  return h(
    "fieldset",
    { class: "field" },
    h("legend", {}, fieldLabel(screen, field.name)),
    options.map((option) => {
      const id = uid("opt");
      const detail = field.detail && field.detail(option, ctx);
      const explain = field.explain ? t(`explain.${field.name}.${option}`) : null;
      return h(
        "div",
        { class: "radio-row" },
        h("input", {
          type: "radio",
          id,
          name,
          value: option,
          checked: value === option,
          disabled: disabled || Boolean(field.locked && field.locked(option, value)),
          onChange: () => set(option),
        }),
        h(
          "label",
          { for: id },
          h("span", {}, t(`opt.${field.name}.${option}`)),
          detail ? h("span", { class: "muted" }, ` ${detail}`) : null,
          explain && explain !== `explain.${field.name}.${option}` ? h("small", { class: "explain" }, explain) : null,
        ),
      );
    }),
  );
}

// The exchange's bounds (DisplayName: 100, e-mail: 254 by RFC 5321, a number: 32 characters as typed).
const MAX_LENGTH = { text: 100, email: 254, phone: 32 };

function inputControl(label, type, value, set, { disabled, error, hint } = {}) {
  const id = uid("in");
  const errorId = `${id}-error`;
  const attributes = {
    id,
    value: value ?? "",
    disabled,
    "aria-invalid": error ? "true" : undefined,
    "aria-describedby": error ? errorId : undefined,
    maxlength: MAX_LENGTH[type] || MAX_LENGTH.text,
    onInput: (event) => set(event.target.value.trim() === "" ? null : event.target.value.trim()),
  };
  if (type === "phone") Object.assign(attributes, { type: "tel", inputmode: "tel", autocomplete: "tel" });
  else if (type === "email") Object.assign(attributes, { type: "email", autocomplete: "email" });
  else attributes.type = "text";
  return h(
    "div",
    { class: "field" },
    h("label", { for: id }, label),
    h("input", attributes),
    hint ? h("small", { class: "muted" }, hint) : null,
    error ? h("p", { class: "error", id: errorId }, error) : null,
  );
}

function ringsControl(label, value, set, disabled) {
  const id = uid("rings");
  const out = h("output", { for: id }, t("rings.value", { rings: value, seconds: value * 5 }));
  return h(
    "div",
    { class: "field" },
    h("label", { for: id }, label),
    h("input", {
      id,
      type: "range",
      min: 1,
      max: 20,
      value,
      disabled,
      "aria-valuetext": t("rings.value", { rings: value, seconds: value * 5 }),
      onInput: (event) => {
        const rings = Number(event.target.value);
        out.textContent = t("rings.value", { rings, seconds: rings * 5 });
        event.target.setAttribute("aria-valuetext", out.textContent);
        set(rings);
      },
    }),
    out,
  );
}

function listControl(screen, field, items, set, rerender, disabled, errors) {
  const section = h("section", { class: "field list-field", "aria-label": fieldLabel(screen, field.name) });
  section.append(h("h2", {}, fieldLabel(screen, field.name)));
  if (items.length === 0) section.append(h("p", { class: "muted" }, t(field.fixed ? `list.none.${field.name}` : "list.empty")));
  items.forEach((item, index) => {
    const card = h("div", { class: "card" });
    const title = field.title(item) || t("list.new");
    // A new item, or one the exchange refused, stays open so its fields and their errors can be seen.
    const invalid = Object.keys(errors).some((key) => key.startsWith(`${field.name}.${index}.`));
    const details = h("details", { open: (!item.number || invalid) && !field.fixed ? true : undefined }, h("summary", {}, title));
    for (const sub of field.item) {
      const label = fieldLabel(screen, `${field.name}.${sub.name}`);
      const update = (value) => {
        items[index] = { ...items[index], [sub.name]: value };
        set(items);
      };
      const failed = errors[`${field.name}.${index}.${sub.name}`];
      const error = failed ? fieldText(failed) : undefined;
      if (sub.type === "toggle") details.append(toggle(label, item[sub.name], update, { disabled }));
      else details.append(inputControl(label, sub.type, item[sub.name], update, { disabled, error }));
    }
    if (!field.fixed && !disabled) {
      details.append(
        h(
          "button",
          {
            type: "button",
            class: "danger",
            onClick: () => {
              items.splice(index, 1);
              set(items);
              rerender();
            },
          },
          t("list.remove", { name: title }),
        ),
      );
    }
    if (field.fixed) {
      card.append(h("span", {}, title), ...field.item.map((sub) => toggle(fieldLabel(screen, `${field.name}.${sub.name}`), item[sub.name], (value) => {
        items[index] = { ...items[index], [sub.name]: value };
        set(items);
      }, { disabled })));
    } else card.append(details);
    section.append(card);
  });
  if (!field.fixed && !disabled && items.length < (field.max || 10)) {
    section.append(
      h(
        "button",
        {
          type: "button",
          class: "secondary",
          onClick: () => {
            const blank = {};
            for (const sub of field.item) blank[sub.name] = sub.blank === undefined ? null : sub.blank;
            items.push(blank);
            set(items);
            rerender(`${field.name}.${items.length - 1}`);
          },
        },
        icon("plus"),
        t(`list.add.${field.name}`),
      ),
    );
  }
  return section;
}

// Load, show and save one service screen. `ctx` holds the profile's numbers and licences.
export async function serviceScreen(container, screen, ctx) {
  const definition = SERVICES[screen];
  const path = `/me/services/${documentOf(screen)}`;
  let saved;
  try {
    saved = await api.get(path);
  } catch (error) {
    if (error instanceof ApiError && error.unavailable) {
      container.append(notAvailable());
      return;
    }
    throw error;
  }
  let draft = clone(saved);
  let errors = {};
  const untilMode = { date: false, focus: false };
  let generalError = null;
  const form = h("form", { class: "service-form", novalidate: true });
  container.append(form);
  const readOnly = Boolean(definition.readOnly);

  const render = (focusField) => {
    form.replaceChildren();
    if (readOnly) form.append(h("p", { class: "notice" }, t("service.read_only")));
    for (const field of definition.fields) {
      if (field.licence && !ctx.licences.has(field.licence)) continue;
      if (field.when && !field.when(draft)) continue;
      if (!(field.name in draft)) continue;
      const disabled = readOnly || Boolean(field.readOnly);
      const set = (value) => {
        draft[field.name] = value;
        // Unsaved changes: a live event must not redraw the form from the exchange's copy (app.js checks this).
        document.body.dataset.editing = "true";
        if (field.type === "toggle" || field.type === "choice") render();
      };
      const label = fieldLabel(screen, field.name);
      const value = draft[field.name];
      const wrap = h("div", { "data-field": field.name });
      if (field.type === "toggle") {
        const hintId = field.hint ? uid("hint") : undefined;
        wrap.append(toggle(label, value, set, { disabled, describedBy: hintId }));
        if (hintId) wrap.append(h("small", { class: "muted", id: hintId }, t(`hint.${screen}.${field.name}`)));
      }
      else if (field.type === "choice") wrap.append(choiceControl(screen, field, value, set, { ...ctx, draft }, disabled));
      else if (field.type === "until") {
        wrap.append(
          untilControl(value, (next) => {
            draft.until = next;
            render();
          }, disabled, untilMode, errors.until ? fieldText(errors.until) : undefined),
        );
      } else if (field.type === "rings") wrap.append(ringsControl(label, value, set, disabled));
      else if (field.type === "list") wrap.append(listControl(screen, field, draft[field.name], (items) => (draft[field.name] = items), render, disabled, errors));
      else if (disabled) {
        const shown = t(`opt.${field.name}.${value}`);
        wrap.append(h("div", { class: "row" }, h("span", {}, label), h("span", { class: "value" }, value === null || value === undefined ? "—" : shown.startsWith("opt.") ? value : shown)));
      }
      else {
        const hint = field.hint ? t(`hint.${screen}.${field.name}`) : undefined;
        wrap.append(inputControl(label, field.type, value, set, { disabled, error: errors[field.name] && fieldText(errors[field.name]), hint }));
      }
      if (field.readOnly && !readOnly) wrap.append(h("small", { class: "muted" }, t("service.admin_field")));
      form.append(wrap);
    }
    if (generalError) form.append(h("p", { class: "error", role: "alert" }, generalError));
    if (!readOnly) {
      form.append(
        h(
          "div",
          { class: "actions sticky" },
          h("button", { type: "submit", class: "primary" }, t("action.save")),
        ),
      );
    }
    if (untilMode.focus) {
      untilMode.focus = false;
      form.querySelector("#until-date")?.focus();
    }
    if (focusField) {
      const target = form.querySelectorAll(".list-field details");
      const last = target[target.length - 1];
      if (last) last.querySelector("input")?.focus();
    }
  };

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      // The voicemail screen's only guarded field is the e-mail address; every other screen's is a phone number.
      stepUpReason.key = path.endsWith("/voicemail") ? "email" : "number";
      try {
        saved = await api.put(path, draft);
      } finally {
        stepUpReason.key = "number";
      }
      delete document.body.dataset.editing;
      draft = clone(saved);
      errors = {};
      generalError = null;
      render();
      toast(t("toast.saved"));
    } catch (error) {
      if (error instanceof Cancelled) {
        generalError = t("stepup.cancelled");
      } else if (error instanceof ApiError && error.status === 422) {
        errors = error.fields;
        // Errors shown at their field (a list item's at the item); the rest below the form, by name.
        const placed = (key) => key !== "_" && form.querySelector(`[data-field="${key.split(".")[0]}"]`);
        const unplaced = Object.entries(errors).filter(([key]) => !placed(key));
        generalError = unplaced.length ? unplaced.map(([key, item]) => `${key === "_" ? "" : `${fieldLabel(screen, key)}: `}${fieldText(item)}`).join(" ") : null;
      } else if (error instanceof ApiError) {
        generalError = error.code === "read_only" ? t("service.read_only") : errorText(error);
      } else throw error;
      render();
      form.querySelector("[aria-invalid=true]")?.focus();
    } finally {
      const again = form.querySelector("button[type=submit]");
      if (again) again.disabled = false;
    }
  });
  render();
}

export function notAvailable() {
  return h("div", { class: "empty", role: "status" }, h("p", { class: "big" }, icon("info")), h("p", {}, t("not_available")));
}
