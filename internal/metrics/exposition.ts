// Reading a Prometheus text exposition back: the tests check series by their labels,
// and the benchmark reads what Orchestration's store holds (hello_state_bytes).

/** Each sample of the metric `name`: its labels as `key="value"` strings, and its value. */
function* samples(text: string, name: string): Generator<{ labels: string[]; value: number }> {
  for (const line of text.split("\n")) {
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (match && match[1] === name) yield { labels: (match[2] ?? "").split(/,(?=[a-zA-Z_]+=")/).filter(Boolean), value: Number(match[3]) };
  }
}

const asPairs = (labels: Record<string, string>) => Object.entries(labels).map(([k, v]) => `${k}="${v}"`);

/** The value of the one series named `name` with exactly these labels, or undefined. */
export function seriesValue(text: string, name: string, labels: Record<string, string>): number | undefined {
  const wanted = asPairs(labels);
  for (const s of samples(text, name)) if (s.labels.length === wanted.length && wanted.every((w) => s.labels.includes(w))) return s.value;
  return undefined;
}

/** The sum of every series named `name` whose labels include these (others allowed). */
export function seriesSum(text: string, name: string, labels: Record<string, string> = {}): number {
  const wanted = asPairs(labels);
  let sum = 0;
  for (const s of samples(text, name)) if (wanted.every((w) => s.labels.includes(w))) sum += s.value;
  return sum;
}
