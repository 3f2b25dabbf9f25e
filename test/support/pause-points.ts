// Races at injected pause points (docs/transactions.md): a login driver whose `pause`
// seam (LoginDriverDeps.pause) a test steers, so that it can hold one sign-in or
// transaction at a named point, run another meanwhile, and let the first go on, or stop
// it there as a crash would. Never a sleep.

import { LoginDriver, type PausePoint } from "../../internal/components/orchestration/login-driver.js";
import { APPS, type ProtocolMesh } from "./protocol-mesh.js";

export class PausePoints {
  #at: (point: PausePoint) => Promise<void> = async () => {};

  /** For LoginDriverDeps.pause. */
  readonly pause = (point: PausePoint): Promise<void> => this.#at(point);

  /** Holds the driver the first time it reaches `point`: `reached` resolves then, and `go()` lets it on. */
  hold(point: PausePoint): { reached: Promise<void>; go(): void } {
    let go!: () => void;
    const held = new Promise<void>((resolve) => (go = resolve));
    const reached = new Promise<void>((resolve) => {
      this.on(point, async () => {
        resolve();
        await held;
      });
    });
    return { reached, go };
  }

  /** Runs `then` the first time the driver reaches `point`, before it goes on; when `then` throws, the driver stops there, as a crash would. */
  on(point: PausePoint, then: () => Promise<void>): void {
    this.#at = async (p) => {
      if (p !== point) return;
      this.clear();
      await then();
    };
  }

  /** No pause any more. */
  clear(): void {
    this.#at = async () => {};
  }
}

/** A login driver over `mesh`'s Token and Encryption (as the running Orchestration, serving every app), paused at `points`. */
export function pausableDriver(mesh: ProtocolMesh, points: PausePoints): LoginDriver {
  return new LoginDriver({
    issuer: mesh.issuer, token: mesh.token(), encryption: mesh.encryption(), lookupKey: mesh.lookupKey, tokenKeys: mesh.tokenKeys,
    clientIds: Object.values(APPS).map((a) => a.client_id), pause: points.pause,
  });
}
