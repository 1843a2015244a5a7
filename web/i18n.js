// i18n.js — the waiting room page's words and formats, in English and Korean.
//
// Every sentence the page shows is in a message catalogue, web/i18n/<lang>.json:
// a flat object of keys to strings with `{name}` placeholders, or to plural
// forms (`{"one": …, "other": …}`, chosen by the `count` parameter with
// Intl.PluralRules). Numbers, clock times, dates, durations and "N s ago" are
// formatted with Intl for the language, never by hand.
//
// The language: the one the fan chose with the switcher (kept in
// localStorage), else the browser's first preference we have, else English.

export const LANGUAGES = ['en', 'ko'];
const FALLBACK = 'en';
const CHOICE_KEY = 'anteroom.lang';

let lang = FALLBACK;
let messages = {};
let fallback = {};

/** The language the page should start in. */
export function preferredLanguage() {
  const chosen = safeStorage()?.getItem(CHOICE_KEY);
  if (LANGUAGES.includes(chosen)) return chosen;
  for (const tag of navigator.languages ?? [navigator.language]) {
    const base = String(tag).toLowerCase().split('-')[0];
    if (LANGUAGES.includes(base)) return base;
  }
  return FALLBACK;
}

function safeStorage() {
  try {
    return globalThis.localStorage ?? null;
  } catch {
    return null; // storage disabled: the choice lasts for this page only
  }
}

async function catalogue(code) {
  const res = await fetch(new URL(`i18n/${code}.json`, import.meta.url));
  if (!res.ok) throw new Error(`cannot load the ${code} messages: ${res.status}`);
  return res.json();
}

/**
 * Loads `code`'s catalogue (and English for any key it lacks) and makes it
 * the page's language. `remember`: the fan chose it, keep it for next time.
 */
export async function setLanguage(code, { remember = false } = {}) {
  const next = LANGUAGES.includes(code) ? code : FALLBACK;
  const [msgs, base] = await Promise.all([
    catalogue(next), Object.keys(fallback).length ? fallback : catalogue(FALLBACK),
  ]);
  fallback = base;
  messages = msgs;
  lang = next;
  if (remember) safeStorage()?.setItem(CHOICE_KEY, next);
  document.documentElement.lang = next;
  translateStatic();
}

export function language() {
  return lang;
}

/** Whether the catalogue has `key` (for codes that may have no sentence). */
export function has(key) {
  return key in messages || key in fallback;
}

/**
 * The sentence for `key` with `params` filled in. A number parameter is
 * formatted for the language; `count` picks the plural form.
 */
export function t(key, params = {}) {
  let text = messages[key] ?? fallback[key] ?? key;
  if (typeof text === 'object') {
    const form = new Intl.PluralRules(lang).select(params.count ?? 0);
    text = text[form] ?? text.other;
  }
  return text.replace(/\{(\w+)\}/g, (whole, name) => {
    const value = params[name];
    if (value === undefined || value === null) return whole;
    return typeof value === 'number' ? number(value) : String(value);
  });
}

/** Fills every element marked `data-i18n="key"` (its text) and `data-i18n-<attr>="key"`. */
export function translateStatic(root = document) {
  for (const el of root.querySelectorAll('[data-i18n]')) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll('[data-i18n-attrs]')) {
    for (const pair of el.dataset.i18nAttrs.split(';')) {
      const [attr, key] = pair.split('=');
      el.setAttribute(attr.trim(), t(key.trim()));
    }
  }
  document.title = t('page.title');
}

export function number(n) {
  return new Intl.NumberFormat(lang).format(n);
}

/** A clock time: `10:42` / `오전 10:42`. */
export function clock(date) {
  return new Intl.DateTimeFormat(lang, { hour: 'numeric', minute: '2-digit' }).format(date);
}

/** A day: `Friday, 4 December` / `12월 4일 금요일`. */
export function day(date) {
  return new Intl.DateTimeFormat(lang, { weekday: 'long', day: 'numeric', month: 'long' }).format(date);
}

/**
 * A moment in the fan's words: its clock time today, else with the day
 * (`when.today` / `when.other_day` in the catalogue).
 */
export function when(iso) {
  const at = new Date(iso);
  if (at.toDateString() === new Date().toDateString()) return t('when.today', { time: clock(at) });
  return t('when.other_day', { day: day(at), time: clock(at) });
}

/** A length of time, rounded to its largest unit: `10 minutes`, `1 hour`, `45 seconds`; `10분`. */
export function duration(seconds) {
  const [value, unit] = seconds >= 5400 ? [Math.round(seconds / 3600), 'hour']
    : seconds >= 60 ? [Math.round(seconds / 60), 'minute']
      : [Math.max(0, Math.round(seconds)), 'second'];
  return new Intl.NumberFormat(lang, { style: 'unit', unit, unitDisplay: 'long' }).format(value);
}

/** How long ago, in words: `now`, `3 seconds ago`, `2 minutes ago`; `지금`, `3초 전`. */
export function ago(seconds) {
  const rtf = new Intl.RelativeTimeFormat(lang, { numeric: 'auto' });
  return seconds < 60 ? rtf.format(-Math.max(0, Math.round(seconds)), 'second')
    : rtf.format(-Math.round(seconds / 60), 'minute');
}
