// Numbers, money and times for people. Every function returns a string (rendered as text).

const integer = new Intl.NumberFormat("en-US");
const compact = new Intl.NumberFormat("en-US", { notation: "compact", maximumFractionDigits: 1 });

export function count(n) {
  return integer.format(Number(n || 0));
}

export function short(n) {
  return compact.format(Number(n || 0));
}

export function usd(value) {
  if (value === undefined || value === null) return "—";
  const v = Number(value);
  if (v === 0) return "$0.00";
  if (Math.abs(v) < 0.01) return `$${v.toFixed(4)}`;
  return `$${v.toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 })}`;
}

export function percent(part, whole) {
  if (!whole) return "0%";
  const p = (100 * part) / whole;
  return `${p < 10 ? p.toFixed(1) : Math.round(p)}%`;
}

export function when(ts) {
  if (!ts) return "—";
  const d = new Date(Number(ts) * 1000);
  return d.toLocaleString("en-GB", { year: "numeric", month: "short", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

export function ago(ts) {
  if (!ts) return "—";
  const s = Date.now() / 1000 - Number(ts);
  if (s < 0) return when(ts);
  if (s < 60) return `${Math.floor(s)}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

export function ms(value) {
  const v = Number(value || 0);
  return v < 1000 ? `${v} ms` : `${(v / 1000).toFixed(2)} s`;
}

export const RANGES = [
  ["1h", "1 h", 3600],
  ["24h", "24 h", 86400],
  ["7d", "7 d", 7 * 86400],
  ["30d", "30 d", 30 * 86400],
];

export function rangeSeconds(name) {
  const found = RANGES.find(([n]) => n === name);
  return found ? found[2] : 86400;
}

export function statusKind(status) {
  if (status >= 500) return "bad";
  if (status >= 400) return "warn";
  return "ok";
}
