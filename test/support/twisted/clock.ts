// TEST SUPPORT ONLY: a component process's clock, shifted by the control file's
// clockOffsetMs, so a test can let minutes pass (an Error Token expire, a provider's
// authentication grow old) without waiting. Every `Date.now()` and `new Date()` in the
// process reads it; timers, deadlines and `performance.now()` keep real time.

export function installShiftedClock(offsetMs: () => number): void {
  const RealDate = globalThis.Date;
  const Shifted = function (this: unknown, ...args: unknown[]) {
    if (new.target === undefined) return new RealDate(RealDate.now() + offsetMs()).toString();
    return args.length === 0 ? new RealDate(RealDate.now() + offsetMs()) : Reflect.construct(RealDate, args);
  } as unknown as DateConstructor & { prototype: Date };
  Object.setPrototypeOf(Shifted, RealDate); // Date.parse, Date.UTC
  Object.defineProperty(Shifted, "prototype", { value: RealDate.prototype });
  Object.defineProperty(Shifted, "now", { value: () => RealDate.now() + offsetMs() });
  globalThis.Date = Shifted;
}
