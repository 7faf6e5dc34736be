// What each user service's screen shows: the fields of docs/services.md with the manual's options.
// Read-only fields (set by the administrator) are shown but cannot be changed.

import { formatNumber, t } from "./i18n.js";

const PHONE = { type: "phone" };
const whenNumber = (draft) => draft.active || draft.destination;

export const GROUPS = {
  incoming: [
    "call-forwarding-always",
    "call-forwarding-always-secondary",
    "remote-office",
    "fixed-mobile-rings",
    "personal-assistant",
    "simultaneous-ring",
    "call-forwarding-busy",
    "call-forwarding-no-answer",
    "call-forwarding-not-reachable",
    "do-not-disturb",
    "call-waiting",
    "night-forwarding",
    "anywhere",
  ],
  outgoing: ["anonymous", "outgoing-identity", "call-method"],
};

export const SERVICES = {
  "call-forwarding-always": {
    fields: [
      { name: "active", type: "toggle" },
      { name: "to_voicemail", type: "toggle" },
      { name: "destination", ...PHONE, when: (d) => !d.to_voicemail },
      { name: "ring_splash", type: "toggle" },
    ],
  },
  "call-forwarding-always-secondary": {
    fields: [
      { name: "active", type: "toggle" },
      { name: "to_voicemail", type: "toggle" },
      { name: "destination", ...PHONE, when: (d) => !d.to_voicemail },
    ],
  },
  "call-forwarding-busy": { fields: [{ name: "active", type: "toggle" }, { name: "destination", ...PHONE, when: whenNumber }] },
  "call-forwarding-no-answer": {
    fields: [
      { name: "active", type: "toggle" },
      { name: "destination", ...PHONE, when: whenNumber },
      { name: "rings", type: "rings" },
    ],
  },
  "call-forwarding-not-reachable": {
    fields: [{ name: "active", type: "toggle" }, { name: "destination", ...PHONE, when: whenNumber }],
  },
  "remote-office": { fields: [{ name: "active", type: "toggle" }, { name: "destination", ...PHONE }] },
  "personal-assistant": {
    fields: [
      { name: "active", type: "toggle" },
      {
        name: "presence",
        type: "choice",
        options: [
          "business_trip",
          "gone_for_the_day",
          "lunch",
          "meeting",
          "out_of_office",
          "temporarily_out",
          "training",
          "unavailable",
          "vacation",
        ],
      },
      { name: "until", type: "until" },
      { name: "transfer_to", ...PHONE },
      { name: "alert_tone", type: "toggle" },
      {
        name: "exceptions",
        type: "list",
        max: 20,
        item: [
          { name: "name", type: "text", blank: "" },
          { name: "number", ...PHONE },
        ],
        title: (item) => item.name || item.number,
      },
    ],
  },
  "simultaneous-ring": {
    fields: [
      { name: "active", type: "toggle" },
      {
        name: "targets",
        type: "list",
        max: 10,
        item: [
          { name: "number", ...PHONE },
          { name: "answer_confirmation", type: "toggle", blank: false },
        ],
        title: (item) => item.number,
      },
      { name: "do_not_ring_when_busy", type: "toggle" },
    ],
  },
  "do-not-disturb": { fields: [{ name: "active", type: "toggle" }, { name: "ring_splash", type: "toggle" }] },
  "call-waiting": { fields: [{ name: "active", type: "toggle" }] },
  "night-forwarding": {
    readOnly: true,
    fields: [
      { name: "night_mode", type: "toggle" },
      { name: "destination", ...PHONE },
    ],
  },
  anywhere: {
    fields: [
      { name: "click_to_dial_rings_locations", type: "toggle" },
      {
        name: "locations",
        type: "list",
        max: 10,
        item: [
          { name: "active", type: "toggle", blank: true },
          { name: "name", type: "text", blank: "" },
          { name: "number", ...PHONE },
          { name: "call_control", type: "toggle", blank: false },
          { name: "block_diversion", type: "toggle", blank: false },
          { name: "answer_confirmation", type: "toggle", blank: false },
        ],
        // The card names the location and its number (and whether it rings), not only the name.
        title: (item) => [item.name, item.number && formatNumber(item.number), item.active === false ? `(${t("state.off").toLowerCase()})` : null].filter(Boolean).join(" · "),
      },
    ],
  },
  "fixed-mobile": {
    fields: [
      { name: "enabled", type: "toggle", readOnly: true },
      { name: "call_control_mode", type: "text", readOnly: true },
      { name: "fixed_rings", type: "choice", options: ["desk", "mobile", "both"] },
      { name: "mobile_rings", type: "choice", options: ["desk", "mobile", "both"] },
      { name: "group_calls_to_mobile", type: "toggle" },
      { name: "click_to_dial_to_mobile", type: "toggle" },
    ],
  },
  // The manual's §7.2.4/7.2.5 screens are the ringing part of the fixed-mobile document.
  "fixed-mobile-rings": {
    document: "fixed-mobile",
    fields: [
      { name: "fixed_rings", type: "choice", options: ["desk", "mobile", "both"] },
      { name: "mobile_rings", type: "choice", options: ["desk", "mobile", "both"] },
    ],
  },
  anonymous: {
    fields: [
      { name: "desk", type: "toggle" },
      { name: "mobile", type: "toggle", licence: "fixed-mobile" },
    ],
  },
  "outgoing-identity": {
    fields: [
      {
        name: "fixed",
        type: "choice",
        options: ["company", "direct", "department", "call_center"],
        // Only numbers the user has; the call-center number needs the top call-center licence (§7.3.2).
        offer: (value, ctx) =>
          (value !== "call_center" || ctx.licences.has("call-center-premium")) &&
          (ctx.numbers[value] !== undefined || ctx.current === value),
        detail: (value, ctx) => ctx.numbers[value],
      },
      { name: "mobile", type: "choice", options: ["same_as_fixed", "mobile"], licence: "fixed-mobile" },
      { name: "ask_each_call", type: "toggle" },
    ],
  },
  "call-method": {
    fields: [
      { name: "method", type: "choice", options: ["via_exchange", "callback", "via_mobile", "ask"], explain: true },
      {
        name: "callback_device",
        type: "choice",
        options: ["desk", "mobile", "remote_office"],
        when: (d) => d.method === "callback",
      },
    ],
  },
  voicemail: {
    fields: [
      { name: "active", type: "toggle" },
      { name: "all_calls_to_voicemail", type: "toggle" },
      { name: "on_busy", type: "toggle", hint: true },
      { name: "on_no_answer", type: "toggle" },
      { name: "rings", type: "rings" },
      { name: "email_notification", type: "toggle" },
      { name: "email_address", type: "email", when: (d) => d.email_notification || d.email_address },
    ],
  },
  // The user chooses (SPEC I, manual §7.5) among the modes the administrator allows.
  "call-recording": {
    fields: [
      {
        name: "mode",
        type: "choice",
        options: ["always", "always_pause_resume", "on_demand", "on_demand_user_start", "never"],
        offer: (value, ctx) => !ctx.draft.allowed_modes || ctx.draft.allowed_modes.includes(value),
        explain: true,
      },
    ],
  },
  "call-center-agent": {
    fields: [
      {
        name: "state",
        type: "choice",
        options: ["signed_in_unavailable", "signed_out", "available", "unavailable", "wrap_up"],
        explain: true,
        // Wrap-up follows a call-center call by itself; the agent cannot choose it (the exchange says 422).
        locked: (option, current) => option === "wrap_up" && current !== "wrap_up",
      },
      { name: "calls_to_mobile", type: "toggle", licence: "fixed-mobile" },
      {
        name: "call_centers",
        type: "list",
        fixed: true,
        item: [{ name: "joined", type: "toggle" }],
        title: (item) => `${item.name}${item.number ? ` · ${item.number}` : ""}`,
      },
      { name: "wrap_up_seconds", type: "text", readOnly: true },
    ],
  },
};

// The service document behind a screen (one screen may show part of another document).
export function documentOf(screen) {
  return (SERVICES[screen] && SERVICES[screen].document) || screen;
}

// Toggles that can appear under "Snel instellen" on the overview, with the field they flip.
export const QUICK_SETTINGS = {
  "do-not-disturb": "active",
  "call-forwarding-always": "active",
  "personal-assistant": "active",
  "call-waiting": "active",
  "remote-office": "active",
  "simultaneous-ring": "active",
  "call-forwarding-busy": "active",
  "call-forwarding-no-answer": "active",
  "call-forwarding-not-reachable": "active",
  voicemail: "active",
  anonymous: "desk",
};

// The exchange's default too (hipper.domain.app_settings.DEFAULT_QUICK_SETTINGS): a first visit prefetches these.
export const DEFAULT_QUICK = ["do-not-disturb", "call-forwarding-always", "voicemail"];
