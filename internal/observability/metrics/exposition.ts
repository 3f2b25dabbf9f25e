// Reading a Prometheus text exposition back: the tests check series by their labels,
// the leak test reads every label, and the benchmark reads what Orchestration's store
// holds (hello_state_bytes).

export interface Sample {
  readonly name: string;
  /** Label values as they appear in the text (escapes left as written). */
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

/** Every sample line of an exposition; a line that is neither a sample nor a comment is an error. */
export function parseExposition(text: string): Sample[] {
  return text.split("\n").filter((l) => l && !l.startsWith("#")).map((line) => {
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!match) throw new Error(`not an exposition line: ${line}`);
    const labels: Record<string, string> = {};
    for (const pair of (match[2] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[pair[1]!] = pair[2]!;
    return { name: match[1]!, labels, value: Number(match[3]) };
  });
}

const has = (sample: Sample, labels: Record<string, string>) => Object.entries(labels).every(([k, v]) => sample.labels[k] === v);

/** The value of the one series named `name` with exactly these labels, or undefined. */
export function seriesValue(text: string, name: string, labels: Record<string, string>): number | undefined {
  const size = Object.keys(labels).length;
  return parseExposition(text).find((s) => s.name === name && Object.keys(s.labels).length === size && has(s, labels))?.value;
}

/** The sum of every series named `name` whose labels include these (others allowed). */
export function seriesSum(text: string, name: string, labels: Record<string, string> = {}): number {
  return parseExposition(text).filter((s) => s.name === name && has(s, labels)).reduce((n, s) => n + s.value, 0);
}
