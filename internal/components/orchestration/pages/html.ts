// A tiny HTML tagged template: every interpolation is escaped unless it is
// markup that `html` itself produced, so pages can be composed from fragments
// without any path by which a caller's string becomes markup.

const ESCAPES: Record<string, string> = {
  "&": "&amp;",
  "<": "&lt;",
  ">": "&gt;",
  '"': "&quot;",
  "'": "&#39;",
};

/** Escapes text for use in element content and in quoted attribute values. */
export function escapeHtml(value: string): string {
  return value.replace(/[&<>"']/g, (c) => ESCAPES[c]!);
}

// Only this module holds the key, so no other code can mint trusted markup.
const minted = Symbol("SafeHtml");

/** Markup produced by `html`; interpolated verbatim by `html`. */
export class SafeHtml {
  readonly #markup: string;
  constructor(key: symbol, markup: string) {
    if (key !== minted) throw new TypeError("SafeHtml is made only by the html template");
    this.#markup = markup;
  }
  toString(): string {
    return this.#markup;
  }
}

/** What `html` accepts: text (escaped), fragments (kept), lists of either; false/null/undefined render nothing. */
export type Interpolation = SafeHtml | string | number | false | null | undefined | readonly Interpolation[];

function interpolate(value: Interpolation): string {
  if (value instanceof SafeHtml) return value.toString();
  if (Array.isArray(value)) return value.map(interpolate).join("");
  if (value === false || value === null || value === undefined) return "";
  return escapeHtml(String(value));
}

export function html(strings: TemplateStringsArray, ...values: Interpolation[]): SafeHtml {
  let out = strings[0]!;
  values.forEach((value, i) => {
    out += interpolate(value) + strings[i + 1]!;
  });
  return new SafeHtml(minted, out);
}

export function render(page: SafeHtml): string {
  return page.toString();
}
